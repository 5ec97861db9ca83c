"""diffusers side of the sampling benchmark (bench/gpu/run.sh): one image with StableDiffusionXLPipeline, Euler, at
the given steps and size, after one warm-up image. JSON on stdout.

usage: python bench/torch_sample.py MODEL_ROOT --steps 30 --size 1024 [--device cuda] [--dtype f16|bf16|f32]
"""
import argparse
import json
import time

import diffusers
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", choices=["f16", "bf16", "f32"], default="f32")
    args = ap.parse_args()
    dtype = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[args.dtype]
    started = time.perf_counter()
    pipe = StableDiffusionXLPipeline.from_pretrained(args.root, torch_dtype=dtype).to(args.device)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - started
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def one(steps):
        sync()
        t = time.perf_counter()
        pipe("a photo of a doctor", num_inference_steps=steps, guidance_scale=args.guidance,
             width=args.size, height=args.size, generator=torch.Generator(args.device).manual_seed(0))
        sync()
        return time.perf_counter() - t

    one(2)  # warm-up
    image_s, one_step_s = one(args.steps), one(1)
    print(json.dumps({"impl": f"torch {torch.__version__} diffusers {diffusers.__version__}", "dtype": args.dtype,
                      "steps": args.steps, "size": args.size, "load_s": load_s, "image_s": image_s,
                      "one_step_image_s": one_step_s,
                      "per_step_s": (image_s - one_step_s) / max(args.steps - 1, 1)}))


if __name__ == "__main__":
    main()
