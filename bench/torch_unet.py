"""PyTorch/diffusers side of the U-Net benchmark (bench/run.sh on the CPU, bench/gpu/run.sh on a GPU): median
forward and training-step times, JSON on stdout.

usage: python bench/torch_unet.py MODEL_DIR [--what forward|train|both] [--iters N] [--train-iters N] [--threads N]
       [--device cpu|cuda] [--batch N] [--precision f32|bf16] [--lora RANK] [--checkpointing]
MODEL_DIR holds unet/ and inputs.safetensors (batch 1, repeated --batch times) from bench/make_unet.py or
tools/fixtures/make_full_sdxl.py. As diffusers' training scripts run them: `--precision bf16` is autocast to bf16
with f32 trained weights (a LoRA run's frozen base stored in bf16, as train_text_to_image_lora_sdxl.py does);
`--lora` adds a peft adapter on to_q/k/v/out.0 (rank = alpha) and trains only it; `--checkpointing` is
`unet.enable_gradient_checkpointing()`. Attention is PyTorch's SDPA (diffusers' default).
"""
import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

import diffusers
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file


def timed(fn, iters):
    """One warm-up run, then `iters` timed ones: (wall ms, process CPU ms) of each."""
    fn()
    wall, cpu = [], []
    for _ in range(iters):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - w) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return wall, cpu


def record(report, name, times):
    wall, cpu = times
    report[f"{name}_ms"] = statistics.median(wall)
    report[f"{name}_min_ms"] = min(wall)
    report[f"{name}_cpu_ms"] = statistics.median(cpu)
    report[f"{name}_all_ms"] = wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--what", choices=["load", "forward", "train", "both"], default="both")
    ap.add_argument("--inputs", type=Path, default=None, help="default: MODEL_DIR/inputs.safetensors")
    ap.add_argument("--variant", default=None)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--train-iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="default: all cores")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--lora", type=int, default=None)
    ap.add_argument("--checkpointing", action="store_true")
    args = ap.parse_args()

    threads = args.threads
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    started = time.perf_counter()
    unet = UNet2DConditionModel.from_pretrained(args.model_dir / "unet", torch_dtype=torch.float32,
                                                variant=args.variant).to(device)
    if args.what == "load":
        # from_pretrained maps the file and reads pages on first use; touch every weight so that the time and
        # the peak memory include reading them all, as ours does.
        with torch.no_grad():
            sum(float(p.sum()) for p in unet.parameters())
        if device.type == "cuda":
            torch.cuda.synchronize()
        print(json.dumps({"impl": f"torch {torch.__version__} diffusers {diffusers.__version__}",
                          "variant": args.variant, "load_ms": (time.perf_counter() - started) * 1e3,
                          "params": sum(p.numel() for p in unet.parameters()),
                          "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return
    if args.lora:
        from peft import LoraConfig
        unet.requires_grad_(False)
        if args.precision == "bf16":
            unet.to(dtype=torch.bfloat16)
        unet.add_adapter(LoraConfig(r=args.lora, lora_alpha=args.lora, init_lora_weights="gaussian",
                                    target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
        for p in unet.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    if args.checkpointing:
        unet.enable_gradient_checkpointing()
    inputs = args.inputs or args.model_dir / "inputs.safetensors"
    x = {k: torch.cat([v] * args.batch).to(device) for k, v in load_file(inputs).items()}
    cond = dict(encoder_hidden_states=x["encoder_hidden_states"],
                added_cond_kwargs={"text_embeds": x["text_embeds"], "time_ids": x["time_ids"]})
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def forward():
        with autocast:
            return unet(x["sample"], x["timestep"], **cond).sample.float()

    report = {"impl": f"torch {torch.__version__} diffusers {diffusers.__version__}", "threads": threads,
              "device": args.device, "batch": args.batch, "precision": args.precision, "lora": args.lora,
              "checkpointing": args.checkpointing}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if args.what in ("forward", "both"):
        unet.eval()
        with torch.no_grad():
            record(report, "forward", timed(lambda: (forward(), sync()), args.iters))
    if args.what in ("train", "both"):
        unet.train()  # dropout is 0.0 in this config, so train mode changes nothing numerically
        trained = [p for p in unet.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trained, lr=1e-5)

        def step():
            loss = torch.mean((forward() - x["target"]) ** 2)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync()

        record(report, "train_step", timed(step, args.train_iters))
        report["param_tensors_with_grad"] = len(trained)
        report["params"] = sum(p.numel() for p in unet.parameters())
    if device.type == "cuda":
        report["peak_cuda_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        report["peak_cuda_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    # Peak RSS of the whole process (load + warm-up + timed runs); ru_maxrss is in KiB on Linux.
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(report))


if __name__ == "__main__":
    main()
