#!/usr/bin/env bash
# The GPU benchmark: ours (burn-cuda) against PyTorch + diffusers (+ peft) on the same GPU in the same run.
# Writes RESULTS.md and raw.tgz (the raw JSON and logs of every measurement) to $OUT, else bench/gpu/.
#
#   bash bench/gpu/prepare.sh          # here, once: release CUDA builds and the diffusers wheel into .gpu/
#   device run, carry [".gpu"]:  bash bench/gpu/run.sh
#   bash bench/gpu/run.sh --smoke      # every step on the tiny SDXL fixture, on this CPU (ndarray), in minutes
#
# Steps, each bounded by a timeout so one that hangs or runs out of memory costs its own row only:
#   1. a full-size SDXL base with random weights (tools/fixtures/make_full_sdxl.py; smoke: the tiny fixture);
#   2. parity of every component on the tiny fixtures against the committed diffusers/transformers goldens;
#   3. U-Net loading: seconds and peak host memory, ours against diffusers' from_pretrained;
#   4. U-Net training step at 1024 px: LoRA rank 8, bf16, batch 1 and 4, with and without gradient
#      checkpointing, and full fine-tuning at batch 1: seconds per step and peak GPU memory (nvidia-smi, the
#      same measure for both; torch's own allocator peak beside it);
#   5. sampling: 30 Euler steps at 1024 px with guidance 5, seconds per step and per image;
#   6. the projected wall time of the official experiment (data/recipes/popalign-sdxl.toml's image counts and
#      750 steps at global batch 8) from 4 and 5.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
smoke=false
[[ "${1:-}" == "--smoke" ]] && smoke=true
# Results go to $OUT on the device machine (what comes back: RESULTS.md and raw.tgz), else bench/gpu/ (GPU) or
# bench/gpu/smoke/ (smoke; git-ignored, so a smoke run never overwrites measured figures).
out="${OUT:-$repo/bench/gpu$($smoke && echo /smoke)}"
raw="$(mktemp -d)/raw"
mkdir -p "$raw" "$out"
results="$out/RESULTS.md"
log() { echo "[$(date +%T)] $*" >&2; }

if $smoke; then
  python="${PYTHON:-$([[ -x /work/pyvenv/bin/python ]] && echo /work/pyvenv/bin/python || echo python3)}"
  cargo build --release -q -p popalign-trainer --bin popalign --example bench_unet || exit 1
  bin="$repo/target/release"
  popalign="$bin/popalign"
  bench_unet="$bin/examples/bench_unet"
  device=cpu precision=f32 size=64 sample_size=64
  model="$(mktemp -d)/tiny-sdxl"
  cp -r fixtures/tiny-sdxl "$model"
  "$python" tools/fixtures/make_full_sdxl.py --inputs-only "$model" || exit 1
  memory() { echo "rss"; }
else
  python="${PYTHON:-python3}"
  [[ -f .gpu/bins.tar.xz ]] || { echo "no .gpu/bins.tar.xz: run bash bench/gpu/prepare.sh here and carry .gpu" >&2; exit 2; }
  mkdir -p /tmp/popalign-bins && tar xJf .gpu/bins.tar.xz -C /tmp/popalign-bins || exit 2
  popalign=/tmp/popalign-bins/popalign
  bench_unet=/tmp/popalign-bins/bench_unet
  # diffusers is not in the device image: install the carried wheel (peft, transformers and torch are there).
  "$python" -m pip install -q --no-index --no-deps --target /tmp/site .gpu/wheels/*.whl && export PYTHONPATH=/tmp/site
  device=cuda precision=bf16 size=1024 sample_size=1024
  model=/tmp/full-sdxl
  memory() { echo "gpu"; }
fi
log "ours: $popalign; python: $python ($("$python" -c 'import torch; print(torch.__version__)'))"

{
  echo "# GPU benchmark results"
  echo
  echo "\`bash bench/gpu/run.sh$($smoke && echo ' --smoke')\` at $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%FT%TZ)."
  if $smoke; then
    echo "Smoke run on this CPU with the tiny SDXL fixture: it checks that every step works; its numbers mean nothing."
  else
    echo
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/GPU: /'
  fi
  echo
} > "$results"

# Runs a command under a timeout, polling the GPU's used memory (every 100 ms) while it runs; prints the
# command's stdout (one JSON line) with "peak_gpu_mib" added, or a JSON error record.
measure() {
  local name="$1" limit="$2"; shift 2
  local poll=""
  if [[ "$(memory)" == gpu ]]; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$raw/$name.gpu" &
    poll=$!
  fi
  local started=$SECONDS
  timeout "$limit" "$@" > "$raw/$name.json" 2> "$raw/$name.err"
  local rc=$?
  [[ -n "$poll" ]] && kill "$poll" 2>/dev/null
  local peak=null
  [[ -s "$raw/$name.gpu" ]] && peak="$(sort -n "$raw/$name.gpu" | tail -1)"
  if [[ $rc -ne 0 || ! -s "$raw/$name.json" ]]; then
    local why="exit $rc"
    [[ $rc -eq 124 ]] && why="timed out after ${limit}s"
    grep -qi "out of memory\|OutOfMemory" "$raw/$name.err" && why="out of memory"
    echo "{\"error\": \"$why\", \"seconds\": $((SECONDS - started)), \"peak_gpu_mib\": $peak}" > "$raw/$name.json"
    log "$name: $why (see raw/$name.err)"
  else
    "$python" - "$raw/$name.json" "$peak" <<'PY'
import json, sys
path, peak = sys.argv[1], sys.argv[2]
record = json.loads(open(path).read().strip().splitlines()[-1])
record["peak_gpu_mib"] = None if peak == "null" else float(peak)
open(path, "w").write(json.dumps(record) + "\n")
PY
    log "$name: done in $((SECONDS - started)) s"
  fi
}

# 1. The full-size model (made on the device's CPU: about 21 GB written).
if ! $smoke && [[ ! -f "$model/model_index.json" ]]; then
  log "making the full-size SDXL in $model"
  timeout 300 "$python" tools/fixtures/make_full_sdxl.py "$model" >&2 || echo "- making the full-size SDXL failed" >> "$results"
fi

# 2. Parity on the tiny fixtures.
log "parity"
echo "## Parity on the tiny fixtures ($device)" >> "$results"
echo >> "$results"
echo "| component | max abs error vs diffusers/transformers |" >> "$results"
echo "|---|---|" >> "$results"
for pair in unet:unet_sdxl vae-encode:vae_encode vae-decode:vae_decode text-encoder:text_encoder text-encoder-2:text_encoder_2; do
  component="${pair%%:*}" io="${pair##*:}"
  if timeout 120 "$popalign" run-module --component "$component" --model fixtures/tiny-sdxl \
      --inputs "fixtures/io/${io}_inputs.safetensors" --out "$raw/parity-$io.safetensors" 2> "$raw/parity-$io.err"; then
    error="$("$python" bench/gpu/compare.py "$raw/parity-$io.safetensors" "fixtures/io/${io}_outputs.safetensors")"
  else
    error="failed (raw/parity-$io.err)"
  fi
  echo "| $component | $error |" >> "$results"
done
if [[ -f "$model/parity/unet_inputs.safetensors" ]]; then
  timeout 300 "$popalign" run-module --component unet --model "$model" --inputs "$model/parity/unet_inputs.safetensors" \
    --out "$raw/parity-full-unet.safetensors" 2> "$raw/parity-full-unet.err" &&
    echo "| full-size SDXL U-Net, 32×32 latent | $("$python" bench/gpu/compare.py "$raw/parity-full-unet.safetensors" "$model/parity/unet_outputs.safetensors") |" >> "$results"
fi
echo >> "$results"

# 3. Loading the U-Net.
log "loading"
measure load-ours 300 "$bench_unet" "$model" --what load
measure load-torch 300 "$python" bench/torch_unet.py "$model" --what load --device "$device"

# 4. Training steps (ours, then diffusers + peft, each in its own process).
iters=3
train_cases=("lora8-b1:--lora 8 --batch 1" "lora8-b1-ckpt:--lora 8 --batch 1 --checkpointing"
             "lora8-b4-ckpt:--lora 8 --batch 4 --checkpointing" "full-b1-ckpt:--batch 1 --checkpointing")
for case in "${train_cases[@]}"; do
  name="${case%%:*}"; read -r -a flags <<< "${case#*:}"
  log "training step $name"
  measure "train-$name-ours" 240 "$bench_unet" "$model" --what train --train-iters $iters --precision "$precision" "${flags[@]}"
  measure "train-$name-torch" 240 "$python" bench/torch_unet.py "$model" --what train --train-iters $iters \
    --device "$device" --precision "$precision" "${flags[@]}"
done

# 5. Sampling: ours through `popalign generate` at 30 steps and at 1 (the difference is 29 steps), diffusers
# in one process after a warm-up.
log "sampling"
steps=30
$smoke && steps=4
wall='import json, subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=sys.stderr)
print(json.dumps({"wall_s": time.perf_counter() - t}))'
for n in "$steps" 1; do
  measure "sample-ours-$n" 300 "$python" -c "$wall" "$popalign" generate --model "$model" --prompt "a photo of a doctor" \
    --steps "$n" --guidance 5 --scheduler euler --width "$sample_size" --height "$sample_size" --out "$raw/sample-$n"
done
measure sample-torch 300 "$python" bench/torch_sample.py "$model" --steps "$steps" --size "$sample_size" --device "$device"

# 6. The table and the projection, from the prompt sets the official recipe makes.
timeout 120 "$popalign" init --model "$model" --out "$raw/run" --force >&2 &&
  timeout 120 "$popalign" run --config "$raw/run/run.toml" --stage prompts >&2 || log "the recipe's prompt sets failed"
"$python" bench/gpu/summarize.py "$raw" "$steps" "$($smoke && echo smoke || echo gpu)" >> "$results"
tar czf "$out/raw.tgz" -C "$(dirname "$raw")" raw
log "wrote $results and $out/raw.tgz"
cat "$results"
