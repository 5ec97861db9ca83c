#!/usr/bin/env bash
# Manual CPU benchmark (not run by CI): peak memory (max RSS, /usr/bin/time -v) of one AlignProp optimiser
# step for K = 1, 2, 4 gradient-carrying steps and S = 4, 8, 16 DDIM sampling steps, on fixtures/tiny-sdxl
# at RESOLUTION px (latents RESOLUTION/8 a side) with the pixel-mean reward. AlignProp's point: the steps
# before the last K run off the autodiff tape, so peak memory grows with K and not with S. See bench/NOTES.md.
#
#   bash bench/alignprop_memory.sh [RESOLUTION] [BATCH]     (defaults 256 px, batch 2)
#
# Environment: POPALIGN (the binary; default target/release/popalign, built if missing).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
resolution="${1:-256}"
batch="${2:-2}"
popalign="${POPALIGN:-target/release/popalign}"
[[ -x "$popalign" ]] || cargo build --release -p popalign-trainer
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf 'a photo of a doctor\na photo of a nurse\n' > "$work/prompts.txt"
echo "resolution $resolution, batch $batch, load average before: $(cut -d' ' -f1 /proc/loadavg)"
echo "| K | S | max RSS (MiB) | wall (s) |"
echo "|---|---|---|---|"
for k in 1 2 4; do
  for s in 4 8 16; do
    run="$work/k$k-s$s"
    mkdir -p "$run"
    cat > "$run/train.toml" <<EOF
model = "$repo/fixtures/tiny-sdxl"
output = "out"
objective = "alignprop"
resolution = $resolution
batch_size = $batch
steps = 1
learning_rate = 1e-3
[lora]
rank = 4
alpha = 4.0
[alignprop]
prompts = "$work/prompts.txt"
sampling_steps = $s
k = $k
guidance_scale = 7.5
[[alignprop.rewards]]
name = "pixel-mean"
loss = "neg"
EOF
    start=$(date +%s.%N)
    /usr/bin/time -v "$popalign" train --config "$run/train.toml" 2> "$run/time.txt" > /dev/null
    end=$(date +%s.%N)
    rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$run/time.txt")
    echo "| $k | $s | $((rss_kb / 1024)) | $(echo "$end - $start" | bc | cut -c1-5) |"
  done
done
