#!/usr/bin/env bash
# Manual CPU benchmark (not run by CI): ImageReward throughput at its real size (BLIP ViT-L/16 + BERT-base with
# cross-attention, random weights), ours (`popalign evaluate --metrics imagereward`) against image-reward 1.5's
# `score` (bench/torch_imagereward.py) on this machine, in the same run. See bench/NOTES.md ("ImageReward").
#
#   bash bench/imagereward.sh [N]      (default 16 images: copies of the photos of fixtures/mtcnn, several sizes)
#
# Ours is timed on N images and on 1 image; the difference divided by N − 1 leaves model loading out, as the
# PyTorch side does. Environment: PYTHON (default /work/venv-imagereward/bin/python, the venv of
# tools/fixtures/imagereward/requirements.txt), POPALIGN (default target/release/popalign, built if missing), WORK
# (default a fresh temporary folder).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
n="${1:-16}"
python="${PYTHON:-/work/venv-imagereward/bin/python}"
popalign="${POPALIGN:-target/release/popalign}"
[[ -x "$popalign" ]] || cargo build --release -p popalign-trainer
work="${WORK:-$(mktemp -d)}"
[[ -d "$work/imagereward" ]] || "$python" bench/torch_imagereward.py setup "$work" "$n"
echo "images: $n (load average before: $(cut -d' ' -f1 /proc/loadavg))"

seconds() {  # seconds SET: wall time of one evaluate run
  local start end
  start=$(date +%s.%N)
  "$popalign" evaluate --attributes "$work/run/attributes/$1.csv" --out "$work/out-$1/summary.json" \
    --bootstrap 0 --metrics imagereward --imagereward "$work/imagereward" > /dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}
t_all=$(seconds set)
t_one=$(seconds one)
echo "ours imagereward: $(echo "($n - 1) / ($t_all - $t_one)" | bc -l | cut -c1-5) images/s ($t_all s for $n, $t_one s for 1)"
for threads in 1 "$(nproc)"; do
  "$python" bench/torch_imagereward.py time "$work" "$threads"
done
[[ -n "${WORK:-}" ]] || rm -rf "$work"
