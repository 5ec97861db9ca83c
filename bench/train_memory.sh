#!/usr/bin/env bash
# Manual CPU benchmark (not run by CI): peak memory (max RSS, /usr/bin/time -v) and wall time of a short
# preference-training run (`objective = "popalign"`, LoRA rank 4, 2 optimiser steps of 2 pairs) on
# fixtures/tiny-sdxl, with and without `gradient_checkpointing`, at 256 and 512 px. See bench/NOTES.md.
#
#   bash bench/train_memory.sh
#
# Environment: POPALIGN (the binary; default target/release/popalign, built if missing).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
popalign="${POPALIGN:-target/release/popalign}"
[[ -x "$popalign" ]] || cargo build --release -p popalign-trainer
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Random 512×512 PNGs with the standard library only (zlib + the PNG chunk layout).
python3 - "$work" <<'PY'
import json, os, random, struct, sys, zlib
work = sys.argv[1]
random.seed(0)
def png(path, size=512):
    rows = b"".join(b"\0" + bytes(random.getrandbits(8) for _ in range(3 * size)) for _ in range(size))
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
lines = []
for i in range(4):
    for side in "wl":
        png(os.path.join(work, f"{i}{side}.png"))
    lines.append(json.dumps({"caption": "a photo of a doctor", "preferred": f"{i}w.png", "dispreferred": f"{i}l.png"}))
open(os.path.join(work, "pairs.jsonl"), "w").write("\n".join(lines) + "\n")
PY
echo "load average before: $(cut -d' ' -f1 /proc/loadavg)"
echo "| resolution | gradient_checkpointing | max RSS (MiB) | wall (s) |"
echo "|---|---|---|---|"
for resolution in 256 512; do
  for checkpointing in false true; do
    run="$work/r$resolution-$checkpointing"
    mkdir -p "$run"
    cat > "$run/train.toml" <<TOML
gradient_checkpointing = $checkpointing
model = "$repo/fixtures/tiny-sdxl"
preferences = "$work/pairs.jsonl"
output = "out"
resolution = $resolution
batch_size = 2
steps = 2
learning_rate = 1e-4
checkpoint_every = 100
[lora]
rank = 4
alpha = 4.0
TOML
    start=$(date +%s.%N)
    /usr/bin/time -v "$popalign" train --config "$run/train.toml" 2> "$run/time.txt" > /dev/null
    end=$(date +%s.%N)
    rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$run/time.txt")
    echo "| $resolution | $checkpointing | $((rss_kb / 1024)) | $(echo "$end - $start" | bc | cut -c1-5) |"
  done
done
