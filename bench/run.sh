#!/usr/bin/env bash
# Manual CPU benchmark (not run by CI or tools/test-all.sh: it takes minutes): the SDXL-shaped U-Net of
# bench/make_unet.py on burn's ndarray backend (native-trainer/examples/bench_unet.rs) against PyTorch/diffusers
# (bench/torch_unet.py) on this machine, in the same run, as ratios ours/torch. See bench/NOTES.md.
#
#   bash bench/run.sh [MODEL_DIR]          (default bench/.cache/unet-modest, made if missing)
#
# Environment: PYTHON (a Python with torch + diffusers; default /work/venv/bin/python if present, else python3),
# ITERS (timed forward passes, default 5), TRAIN_ITERS (timed training steps, default 3),
# BENCH_FEATURES (extra cargo features for the example, e.g. "burn/default" for ndarray's simd + rayon kernels).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
model="${1:-bench/.cache/unet-modest}"
python="${PYTHON:-$([[ -x /work/venv/bin/python ]] && echo /work/venv/bin/python || echo python3)}"
iters="${ITERS:-5}"
train_iters="${TRAIN_ITERS:-3}"
# A target dir of its own, so the benchmark's features do not invalidate the everyday build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target-bench}"

cargo build --release -p popalign-trainer --example bench_unet ${BENCH_FEATURES:+--features "$BENCH_FEATURES"}
[[ -f "$model/inputs.safetensors" ]] || "$python" bench/make_unet.py "$model"

out="$(mktemp -d)"
# One process per measurement, so each peak RSS belongs to one measurement (model load included).
for what in forward train; do
  args=("$model" --what "$what" --iters "$iters" --train-iters "$train_iters")
  echo "running ours ($what)..." >&2
  "$CARGO_TARGET_DIR/release/examples/bench_unet" "${args[@]}" > "$out/ours-$what.json"
  echo "running torch ($what)..." >&2
  "$python" bench/torch_unet.py "${args[@]}" > "$out/torch-$what.json"
done

"$python" - "$out" "$model" <<'PY'
import json, os, sys
out, model = sys.argv[1:]
r = {f"{who}-{what}": json.load(open(f"{out}/{who}-{what}.json")) for who in ("ours", "torch") for what in ("forward", "train")}
print(f"\nmodel {model} ({r['torch-train']['params'] / 1e6:.1f}M params), {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
print(f"ours: {r['ours-forward']['impl']}; torch: {r['torch-forward']['impl']}, {r['torch-forward']['threads']} threads\n")
print(f"| {'measurement':<34} | {'ours':>10} | {'torch':>10} | {'ours/torch':>10} |")
print(f"|{'-' * 36}|{'-' * 12}|{'-' * 12}|{'-' * 12}|")
rows = [("forward, median wall ms", "forward", "forward_ms"), ("forward, median CPU ms", "forward", "forward_cpu_ms"),
        ("train step, median wall ms", "train", "train_step_ms"), ("train step, median CPU ms", "train", "train_step_cpu_ms"),
        ("forward process, peak RSS MiB", "forward", "peak_rss_mib"), ("train process, peak RSS MiB", "train", "peak_rss_mib")]
for label, what, key in rows:
    ours, torch = r[f"ours-{what}"][key], r[f"torch-{what}"][key]
    print(f"| {label:<34} | {ours:>10.0f} | {torch:>10.0f} | {ours / torch:>10.2f} |")
for what in ("forward", "train"):
    for who in ("ours", "torch"):
        print(f"{who}-{what}: {json.dumps(r[f'{who}-{what}'])}", file=sys.stderr)
PY
