#!/usr/bin/env bash
# Here, before a GPU session: the release CUDA builds of `popalign` and `bench_unet` (stripped, in one xz tarball)
# and the diffusers wheel (not in the device image), into .gpu/ (git-ignored), which the device run carries:
#   device run: command "bash bench/gpu/run.sh", carry [".gpu"], timeout_s 600
# The device tool carries at most 64 MiB (the tracked tree included); this prints what the carry will weigh.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target-gpu}"
cargo build --release -p popalign-trainer --features cuda --bin popalign --example bench_unet
rm -rf .gpu && mkdir -p .gpu/wheels
staging="$(mktemp -d)"
strip -o "$staging/popalign" "$CARGO_TARGET_DIR/release/popalign"
strip -o "$staging/bench_unet" "$CARGO_TARGET_DIR/release/examples/bench_unet"
tar cJf .gpu/bins.tar.xz -C "$staging" popalign bench_unet
python3 -m pip download -q --no-deps --only-binary=:all: -d .gpu/wheels diffusers==0.42.1
tracked="$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)"
carried="$(du -sb .gpu | cut -f1)"
echo "tracked tree $((tracked / 1048576)) MiB + .gpu $((carried / 1048576)) MiB = $(((tracked + carried) / 1048576)) MiB of the 64 MiB carry limit"
(( tracked + carried < 64 * 1048576 )) || { echo "over the device tool's carry limit" >&2; exit 1; }
