#!/usr/bin/env bash
# Manual CPU benchmark (not run by CI): face detection plus attribute classification over a folder, ours
# (`popalign classify --classifier faces` and `--classifier fairface`) against facenet-pytorch + torchvision
# (bench/torch_faces.py) on this machine, in the same run. See bench/NOTES.md ("Face classification").
#
#   bash bench/faces.sh [COPIES]      (default 10 copies of the 6 photos of fixtures/mtcnn, 60 images)
#
# FairFace's real checkpoint cannot be fetched here, so both sides load the same random resnet34 with its
# 18-output head (same compute). Environment: PYTHON (default /work/venv/bin/python), POPALIGN (the binary;
# default target/release/popalign, built if missing).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
copies="${1:-10}"
python="${PYTHON:-$([[ -x /work/venv/bin/python ]] && echo /work/venv/bin/python || echo python3)}"
popalign="${POPALIGN:-target/release/popalign}"
[[ -x "$popalign" ]] || cargo build --release -p popalign-trainer
work="$(mktemp -d)"
mkdir -p "$work/images" "$work/weights"
for i in $(seq 1 "$copies"); do
  for photo in fixtures/mtcnn/*.png; do cp "$photo" "$work/images/$i-$(basename "$photo")"; done
done
cp fixtures/mtcnn/mtcnn.safetensors fixtures/age-gender/gender.safetensors "$work/weights/"
"$python" - "$work/weights/fairface.safetensors" <<'PY'
import sys, torch, torchvision
from safetensors.torch import save_file
torch.manual_seed(0)
save_file(torchvision.models.resnet34(num_classes=18).state_dict(), sys.argv[1])
PY
n="$(ls "$work/images" | wc -l)"
echo "images: $n (load average before: $(cut -d' ' -f1 /proc/loadavg))"
for classifier in faces fairface; do
  start=$(date +%s.%N)
  "$popalign" classify --classifier "$classifier" --images "$work/images" --weights "$work/weights" \
    --out "$work/$classifier.csv" > /dev/null
  end=$(date +%s.%N)
  echo "ours $classifier: $(echo "$n / ($end - $start)" | bc -l | cut -c1-5) images/s ($(echo "$end - $start" | bc) s)"
done
for threads in 1 "$(nproc)"; do
  echo "torch fairface ($threads threads): $("$python" bench/torch_faces.py "$work/images" "$work/weights" --threads "$threads")"
done
rm -rf "$work"
