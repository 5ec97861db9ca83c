"""Markdown tables of bench/gpu/run.sh's raw JSON records, and the projected wall time of the official
experiment. usage: python bench/gpu/summarize.py RAW_DIR SAMPLING_STEPS smoke|gpu"""
import csv
import json
import sys
import tomllib
from pathlib import Path

raw, steps, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


def record(name):
    path = raw / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {"error": "not run"}


def cell(value, unit=""):
    return "—" if value is None else f"{value:,.0f}{unit}" if value >= 100 else f"{value:.2f}{unit}"


def ratio(ours, theirs):
    return "—" if ours is None or not theirs else f"{ours / theirs:.2f}"


def failed(r):
    return r.get("error")


print("## Loading the U-Net\n")
print("| | ours | diffusers | ratio |\n|---|---|---|---|")
ours, torch = record("load-ours"), record("load-torch")
for label, key in [("seconds", "load_ms"), ("peak host memory (MiB)", "peak_rss_mib")]:
    o = None if failed(ours) else ours[key] / (1000 if key == "load_ms" else 1)
    t = None if failed(torch) else torch[key] / (1000 if key == "load_ms" else 1)
    print(f"| {label} | {failed(ours) or cell(o)} | {failed(torch) or cell(t)} | {ratio(o, t)} |")
if not failed(ours):
    print(f"\nParameters: ours {ours['params']:,}, diffusers {torch.get('params', 0):,}.")

memory = "peak GPU memory, MiB (nvidia-smi)" if mode == "gpu" else "peak RSS, MiB"
print(f"\n## U-Net training step ({'bf16, 1024 px' if mode == 'gpu' else 'f32, tiny fixture'})\n")
print(f"| case | ours s/step | diffusers s/step | ratio | ours {memory} | diffusers {memory} | "
      "torch allocator peak, MiB |\n|---|---|---|---|---|---|---|")
steps_by_case = {}
for case in ["lora8-b1", "lora8-b1-ckpt", "lora8-b4-ckpt", "full-b1-ckpt"]:
    o, t = record(f"train-{case}-ours"), record(f"train-{case}-torch")
    os_, ts = (None if failed(r) else r["train_step_ms"] / 1000 for r in (o, t))
    steps_by_case[case] = os_
    mem = (lambda r: r.get("peak_gpu_mib")) if mode == "gpu" else (lambda r: r.get("peak_rss_mib"))
    print(f"| {case} | {failed(o) or cell(os_)} | {failed(t) or cell(ts)} | {ratio(os_, ts)} | "
          f"{cell(mem(o))} | {cell(mem(t))} | {cell(t.get('peak_cuda_allocated_mib'))} |")
    if not failed(o) and not failed(t) and o.get("param_tensors_with_grad") != t.get("param_tensors_with_grad"):
        print(f"\n**{case}: ours trains {o.get('param_tensors_with_grad')} tensors, diffusers "
              f"{t.get('param_tensors_with_grad')}.**\n")

print(f"\n## Sampling ({steps} Euler steps, guidance 5)\n")
o_n, o_1, t = record(f"sample-ours-{steps}"), record("sample-ours-1"), record("sample-torch")
ours_step = None if failed(o_n) or failed(o_1) else (o_n["wall_s"] - o_1["wall_s"]) / max(steps - 1, 1)
torch_step = None if failed(t) else t["per_step_s"]
print("| | ours (f32) | diffusers (f32) | ratio |\n|---|---|---|---|")
print(f"| seconds per step | {cell(ours_step)} | {cell(torch_step)} | {ratio(ours_step, torch_step)} |")
print(f"| one image, wall | {failed(o_n) or cell(o_n['wall_s'])} (process, load included) | "
      f"{failed(t) or cell(t['image_s'])} (after load) | |")

print("\n## Projected wall time of the official experiment\n")
recipe = tomllib.loads(Path("data/recipes/popalign-sdxl.toml").read_text())
rows = {}
for name in ["neutral", "specific", "evaluation"]:
    path = raw / "run" / "prompts" / f"{name}.csv"
    rows[name] = sum(1 for _ in csv.DictReader(path.open())) if path.exists() else None
g, tr = recipe["generate"], recipe["train"]
if None in rows.values() or ours_step is None or steps_by_case.get("full-b1-ckpt") is None:
    print("Not computed: a measurement above or the prompt sets are missing.")
else:
    images = (rows["neutral"] * g["neutral_images"] + rows["specific"] * g["specific_images"]
              + 2 * rows["evaluation"] * g["eval_images"])
    generate_h = images * g["steps"] * ours_step / 3600
    # A PopAlign step at global batch B trains on B pairs: 2B U-Net samples, counted here as 2B batch-1 steps
    # (an upper bound: batching is faster); full fine-tuning's reference forward passes are not counted.
    train_h = tr["steps"] * 2 * tr["batch_size"] * steps_by_case["full-b1-ckpt"] / 3600
    print(f"Images: {images:,} ({rows['neutral']} neutral × {g['neutral_images']}, {rows['specific']} specific × "
          f"{g['specific_images']}, 2 × {rows['evaluation']} evaluation × {g['eval_images']}) at {g['steps']} steps: "
          f"**{generate_h:.1f} h** of sampling on one GPU. Training: {tr['steps']} steps × {2 * tr['batch_size']} "
          f"samples at the full fine-tuning step above: **{train_h:.1f} h** (an upper bound; see the script). "
          f"Classification and scoring are not counted.")
