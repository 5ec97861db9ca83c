#!/usr/bin/env bash
# Manual CPU benchmark (not run by CI or tools/test-all.sh: it takes minutes): the SDXL-shaped U-Net of
# bench/make_unet.py on burn's ndarray backend (native-trainer/examples/bench_unet.rs) against PyTorch/diffusers
# (bench/torch_unet.py) on this machine, in the same run, as ratios ours/torch. See bench/NOTES.md.
#
#   bash bench/run.sh [MODEL_DIR]          (default bench/.cache/unet-modest, made if missing)
#
# Environment: PYTHON (a Python with torch + diffusers; default /work/venv/bin/python if present, else python3),
# ITERS (timed forward passes, default 5), TRAIN_ITERS (timed training steps, default 3),
# TORCH_THREADS (default: all cores; ours uses every core too, in rayon's pool: RAYON_NUM_THREADS limits it),
# BENCH_FEATURES (extra cargo features for the example, e.g. "burn/default" for ndarray's simd kernels,
# or "flex" for burn-flex), PRECISION (ours only: "bf16" on the flex build; torch stays fp32).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
model="${1:-bench/.cache/unet-modest}"
python="${PYTHON:-$([[ -x /work/venv/bin/python ]] && echo /work/venv/bin/python || echo python3)}"
iters="${ITERS:-5}"
train_iters="${TRAIN_ITERS:-3}"
torch_threads="${TORCH_THREADS:-$(nproc)}"
# A target dir of its own, so the benchmark's features do not invalidate the everyday build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target-bench}"

cargo build --release -p popalign-trainer --example bench_unet ${BENCH_FEATURES:+--features "$BENCH_FEATURES"}
[[ -f "$model/inputs.safetensors" ]] || "$python" bench/make_unet.py "$model"

out="$(mktemp -d)"
load_before="$(cut -d' ' -f1 /proc/loadavg)"
echo "raw JSON results go to $out" >&2
# One process per measurement, so each peak RSS belongs to one measurement (model load included). Torch runs
# twice: on all cores as asked, and on one thread.
for what in forward train; do
  args=("$model" --what "$what" --iters "$iters" --train-iters "$train_iters")
  echo "running ours ($what)..." >&2
  "$CARGO_TARGET_DIR/release/examples/bench_unet" "${args[@]}" ${PRECISION:+--precision "$PRECISION"} \
    > "$out/ours-$what.json"
  for threads in "$torch_threads" 1; do
    echo "running torch ($what, $threads threads)..." >&2
    "$python" bench/torch_unet.py "${args[@]}" --threads "$threads" > "$out/torch$threads-$what.json"
  done
done

"$python" - "$out" "$model" "$load_before" "${BENCH_FEATURES:-}" "$torch_threads" <<'PY'
import json, os, sys
out, model, load_before, features, n = sys.argv[1:]
who = ("ours", f"torch{n}", "torch1")
r = {f"{w}-{what}": json.load(open(f"{out}/{w}-{what}.json")) for w in who for what in ("forward", "train")}
print(f"\nmodel {model} ({r['torch1-train']['params'] / 1e6:.1f}M params), {os.cpu_count()} cores, "
      f"load average {load_before} before, {os.getloadavg()[0]:.2f} after (other work on the box skews the timings)")
print(f"ours: {r['ours-forward']['impl']} (extra cargo features: {features or 'none'}); "
      f"torch: {r['torch1-forward']['impl']}\n")
print(f"| {'measurement':<31} | {'ours':>8} | {f'torch {n} thr':>11} | {'ratio':>6} | {'torch 1 thr':>11} | {'ratio':>6} |")
print(f"|{'-' * 33}|{'-' * 10}|{'-' * 13}|{'-' * 8}|{'-' * 13}|{'-' * 8}|")
rows = [("forward, median wall ms", "forward", "forward_ms"), ("forward, min wall ms", "forward", "forward_min_ms"),
        ("forward, median CPU ms", "forward", "forward_cpu_ms"),
        ("train step, median wall ms", "train", "train_step_ms"), ("train step, min wall ms", "train", "train_step_min_ms"),
        ("train step, median CPU ms", "train", "train_step_cpu_ms"),
        ("forward process, peak RSS MiB", "forward", "peak_rss_mib"), ("train process, peak RSS MiB", "train", "peak_rss_mib")]
for label, what, key in rows:
    ours, tn, t1 = (r[f"{w}-{what}"][key] for w in who)
    print(f"| {label:<31} | {ours:>8.0f} | {tn:>11.0f} | {ours / tn:>6.2f} | {t1:>11.0f} | {ours / t1:>6.2f} |")
print("ratio = ours / torch (above 1: we are slower or bigger)")
for what in ("forward", "train"):
    for w in who:
        print(f"{w}-{what}: {json.dumps(r[f'{w}-{what}'])}", file=sys.stderr)
PY
