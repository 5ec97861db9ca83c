"""Trains the toy world's U-Net with PyTorch/diffusers on the dataset `popalign toy-model --dump-dataset`
wrote, and saves it into the model folder (diffusers layout, safetensors).

Why PyTorch: on this project's 2-core CPU machines our burn-ndarray trainer needs about a second per step of
this model, PyTorch about 30 ms (bench/NOTES.md); the toy model is pretrained once and committed, so the
one-off step uses the faster tool. Everything downstream (generation, PopAlign, evaluation) is ours, and the
saved U-Net loads in popalign-rs like any diffusers checkpoint (its parity is tested in core/tests/suite/models.rs).

    cargo run -p popalign-trainer -- toy-model --out /tmp/toy/model --dump-dataset 60000 --batch-size 32
    python tools/toy/pretrain_unet.py /tmp/toy/model --steps 4000
    cp -r /tmp/toy/model data/toy/model

Versions: tools/fixtures/requirements.txt (torch 2.15.0, diffusers 0.42.1). Deterministic for a seed on CPU.
"""

import argparse
import json
import math
import pathlib
import time

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from safetensors.torch import load_file


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=pathlib.Path, help="model folder written by --dump-dataset")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    data = load_file(str(args.model.with_suffix(".dataset.safetensors")))
    pixels, index = data["pixels"].float(), data["caption_index"].long()
    hidden, pooled = data["hidden"].float(), data["pooled"][:, 0, :].float()
    config = json.loads((args.model / "unet" / "config.json").read_text())
    unet = UNet2DConditionModel.from_config(config)
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02
    )
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate, weight_decay=0.01)
    warmup = 100

    def lr_at(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    time_ids = torch.tensor([16.0, 16.0, 0.0, 0.0, 16.0, 16.0]).repeat(args.batch_size, 1)
    started, smoothed = time.time(), None
    for step in range(args.steps):
        rows = torch.randint(0, pixels.shape[0], (args.batch_size,))
        clean, captions = pixels[rows], index[rows]
        noise = torch.randn_like(clean)
        t = torch.randint(0, 1000, (args.batch_size,))
        noisy = scheduler.add_noise(clean, noise, t)
        out = unet(
            noisy,
            t,
            encoder_hidden_states=hidden[captions],
            added_cond_kwargs={"text_embeds": pooled[captions], "time_ids": time_ids},
        ).sample
        loss = torch.nn.functional.mse_loss(out, noise)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()
        if step % 200 == 0 or step == args.steps - 1:
            print(f"step {step} loss {smoothed:.4f} ({time.time() - started:.0f} s)", flush=True)
    unet.save_pretrained(args.model / "unet", safe_serialization=True)
    print(f"saved {args.model / 'unet'}")


if __name__ == "__main__":
    main()
