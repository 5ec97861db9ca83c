#!/usr/bin/env bash
# Manual benchmark (not run by CI): how big a report folder gets per image with real photographs, and what
# that makes of a 10,000-image report. Takes an evaluated toy run (default: target/e2e-run, which
# tools/web-e2e.sh leaves behind), replaces its evaluation images by 1024×1024 crops of scikit-image's sample
# photographs (SDXL's output size), writes the report, and measures thumbnails, report.json/report.js and pkg/.
#
#   bash bench/report_size.sh [RUN]
#
# Environment: POPALIGN (default target/debug/popalign), PYTHON (a python with Pillow and scikit-image;
# default /work/venv/bin/python, as tools/fixtures/requirements.txt installs).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
source_run="${1:-target/e2e-run}"
popalign="${POPALIGN:-target/debug/popalign}"
python="${PYTHON:-/work/venv/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$source_run" "$work/run"
rm -rf "$work/run/report"
"$python" - "$work/run" <<'PY'
import glob, sys
import numpy as np
from PIL import Image
import skimage.data as data
photos = []
for name in ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "cat"]:
    a = getattr(data, name)()
    a = a[0] if isinstance(a, tuple) else a
    a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
    photos.append(Image.fromarray(a.astype(np.uint8)))
files = sorted(glob.glob(f"{sys.argv[1]}/eval/*/images/*.png"))
for i, path in enumerate(files):
    photo = photos[i % len(photos)]
    scale = 1024 / min(photo.size)
    big = photo.resize((round(photo.size[0] * scale), round(photo.size[1] * scale)), Image.LANCZOS)
    left, top = (big.size[0] - 1024) // 2, (big.size[1] - 1024) // 2
    big.crop((left, top, left + 1024, top + 1024)).save(path)
print(f"{len(files)} evaluation images replaced by 1024x1024 photographs")
PY
"$popalign" report --runs "$work/run" --out "$work/report" > /dev/null
n=$(find "$work/report/images" -type f | wc -l)
thumbs=$(du -cb "$work/report/images"/*/* | tail -1 | cut -f1)
data=$(( $(stat -c %s "$work/report/report.json") + $(stat -c %s "$work/report/report.js") ))
pkg=$(du -sb "$work/report/pkg" | cut -f1)
echo "images: $n; thumbnails $((thumbs / n)) bytes each; report.json + report.js $((data / n)) bytes per image; pkg/ $pkg bytes"
echo "a 10,000-image report: about $(( (10000 * (thumbs + data) / n + pkg) / 1000000 )) MB"
