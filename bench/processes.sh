#!/usr/bin/env bash
# Data-parallel scaling across processes on this machine: the tiny SDXL fixture trains LoRA (64×64, batch 2
# per worker) as one process on one thread, as one process on every thread, and as two processes of one
# thread each, launched with torchrun's variables (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT). Prints the
# median images/s of each (the trainer's own metrics.jsonl, first steps dropped) and the efficiency
# 2-process images/s ÷ (2 × 1-process images/s). Manual; never in CI.
#
#   bash bench/processes.sh [steps]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
steps="${1:-40}"
# The workspace's dev profile optimises (dependencies at opt-level 3, ours at 2): no separate release build.
popalign="$repo/target/debug/popalign"
cargo build -p popalign-trainer --bin popalign --manifest-path "$repo/Cargo.toml" >&2

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
faces="$repo/fixtures/fairface"
for i in 0 1 2 3 4 5 6 7; do
  echo "{\"caption\": \"a photo of a doctor\", \"preferred\": \"$faces/chip_0.png\", \"dispreferred\": \"$faces/chip_1.png\"}"
done > "$work/pairs.jsonl"
config() { # folder
  mkdir -p "$work/$1"
  cat > "$work/$1/train.toml" <<TOML
model = "$repo/fixtures/tiny-sdxl"
preferences = "$work/pairs.jsonl"
output = "$work/$1/out"
resolution = 64
batch_size = 2
steps = $steps
checkpoint_every = $steps
learning_rate = 1e-4
[lora]
rank = 4
alpha = 4.0
TOML
}
# Median images/s over the steps after the first five.
rate() {
  python3 -c 'import json,sys,statistics
r=[json.loads(l)["images_per_s"] for l in open(sys.argv[1]) if "images_per_s" in l][5:]
print(f"{statistics.median(r):.2f}")' "$work/$1/out/metrics.jsonl"
}

config one; "$popalign" --threads 1 train --config "$work/one/train.toml" 2>/dev/null
config both; "$popalign" train --config "$work/both/train.toml" 2>/dev/null
config two
port=$((29600 + RANDOM % 1000))
for rank in 0 1; do
  WORLD_SIZE=2 RANK=$rank MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$popalign" --threads 1 train --config "$work/two/train.toml" 2>/dev/null &
done
wait
one=$(rate one); both=$(rate both); two=$(rate two)
echo "cores: $(nproc); steps: $steps"
echo "1 process, 1 thread:           $one images/s"
echo "1 process, $(nproc) threads:          $both images/s"
echo "2 processes, 1 thread each:    $two images/s"
python3 -c "import sys; print(f'efficiency 2 processes vs 1: {float(sys.argv[2]) / (2 * float(sys.argv[1])):.2f}')" "$one" "$two"
