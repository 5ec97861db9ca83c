#!/usr/bin/env bash
# Here, before a GPU session: the release CUDA builds of `popalign` and `bench_unet` and the diffusers wheel
# (not in the device image), into .gpu/ (git-ignored), which the device run carries:
#   device run: command "bash bench/gpu/run.sh", carry [".gpu"], timeout 600
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target-gpu}"
cargo build --release -p popalign-trainer --features cuda --bin popalign --example bench_unet
mkdir -p .gpu/wheels
for bin in popalign examples/bench_unet; do
  strip -o ".gpu/$(basename "$bin")" "$CARGO_TARGET_DIR/release/$bin"
done
python3 -m pip download -q --no-deps --only-binary=:all: -d .gpu/wheels diffusers==0.42.1
du -sh .gpu/* .gpu/wheels/*
