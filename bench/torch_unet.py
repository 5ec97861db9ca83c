"""PyTorch/diffusers side of the CPU benchmark: median forward and training-step times, JSON on stdout.

usage: python bench/torch_unet.py MODEL_DIR [--what forward|train|both] [--iters N] [--train-iters N] [--threads N]
MODEL_DIR holds unet/ and inputs.safetensors from bench/make_unet.py.
"""
import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

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
    ap.add_argument("--what", choices=["forward", "train", "both"], default="both")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--train-iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="default: all cores")
    args = ap.parse_args()

    threads = args.threads
    torch.set_num_threads(threads)
    unet = UNet2DConditionModel.from_pretrained(args.model_dir / "unet", torch_dtype=torch.float32)
    x = load_file(args.model_dir / "inputs.safetensors")
    cond = dict(encoder_hidden_states=x["encoder_hidden_states"],
                added_cond_kwargs={"text_embeds": x["text_embeds"], "time_ids": x["time_ids"]})

    def forward():
        return unet(x["sample"], x["timestep"], **cond).sample

    report = {"impl": f"torch {torch.__version__} diffusers", "threads": threads}
    if args.what in ("forward", "both"):
        unet.eval()
        with torch.no_grad():
            record(report, "forward", timed(forward, args.iters))
    if args.what in ("train", "both"):
        unet.train()  # dropout is 0.0 in this config, so train mode changes nothing numerically
        opt = torch.optim.AdamW(unet.parameters(), lr=1e-5)

        def step():
            loss = torch.mean((forward() - x["target"]) ** 2)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        record(report, "train_step", timed(step, args.train_iters))
        report["param_tensors_with_grad"] = sum(p.requires_grad for p in unet.parameters())
        report["params"] = sum(p.numel() for p in unet.parameters())
    # Peak RSS of the whole process (load + warm-up + timed runs); ru_maxrss is in KiB on Linux.
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(report))


if __name__ == "__main__":
    main()
