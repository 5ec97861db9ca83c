#!/usr/bin/env bash
# Manual CPU benchmark (not run by CI): quality-scorer throughput, ours (`popalign evaluate --metrics hps` and
# `--metrics aesthetic`) against open_clip / transformers (bench/torch_scorers.py) on this machine, in the same run,
# on the real architectures with random weights: HPSv2's open_clip ViT-H/14 (PickScore has the same ViT-H/14 in the
# transformers layout) and the aesthetic predictor over CLIP ViT-L/14. See bench/NOTES.md ("Quality scorers").
#
#   bash bench/scorers.sh [N]      (default 16 images: copies of the photos of fixtures/mtcnn, several sizes)
#
# Ours is timed on N images and on 1 image; the difference divided by N − 1 leaves model loading out, as the
# PyTorch side does. Needs about 12 GB of disk under WORK. Environment: PYTHON (default /work/venv/bin/python),
# POPALIGN (default target/release/popalign, built if missing), WORK (default a fresh temporary folder).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
n="${1:-16}"
python="${PYTHON:-$([[ -x /work/venv/bin/python ]] && echo /work/venv/bin/python || echo python3)}"
popalign="${POPALIGN:-target/release/popalign}"
[[ -x "$popalign" ]] || cargo build --release -p popalign-trainer
work="${WORK:-$(mktemp -d)}"
[[ -d "$work/hps" ]] || "$python" bench/torch_scorers.py setup "$work" "$n"
echo "images: $n (load average before: $(cut -d' ' -f1 /proc/loadavg))"

seconds() {  # seconds SET METRIC-ARGS...: wall time of one evaluate run
  local set="$1"; shift
  local start end
  start=$(date +%s.%N)
  "$popalign" evaluate --attributes "$work/run/attributes/$set.csv" --out "$work/out-$set/summary.json" \
    --bootstrap 0 "$@" > /dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}
for metric in hps aesthetic; do
  case "$metric" in
    hps) args=(--metrics hps --hps "$work/hps") ;;
    aesthetic) args=(--metrics aesthetic --aesthetic "$work/aesthetic.safetensors" --aesthetic-clip "$work/clip-l14") ;;
  esac
  t_all=$(seconds set "${args[@]}")
  t_one=$(seconds one "${args[@]}")
  echo "ours $metric: $(echo "($n - 1) / ($t_all - $t_one)" | bc -l | cut -c1-5) images/s ($t_all s for $n, $t_one s for 1)"
done
for threads in 1 "$(nproc)"; do
  "$python" bench/torch_scorers.py time "$work" "$threads"
done
[[ -n "${WORK:-}" ]] || rm -rf "$work"
