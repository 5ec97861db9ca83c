#!/usr/bin/env bash
# The browser explorer end to end: builds www/pkg (if missing) and a `popalign` that embeds it, runs a small
# toy pipeline (tools/e2e-run.toml) whose report folder then carries the explorer, and tests that folder in
# headless Chromium (tools/web-e2e.py). Screenshots go to $CI_LOG_DIR/screenshots (default target/ci-logs).
#
#   bash tools/web-e2e.sh          # needs chromium and the wasm-bindgen CLI (see .ci/run)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
[[ -f www/pkg/popalign_web_bg.wasm ]] || bash tools/build-web.sh
# The binary as tools/test-all.sh's test step builds it (same packages and features, so right after that step
# this compiles nothing; `cargo build -p popalign-trainer` would rebuild core and burn with other features).
# tools/test-all.sh has done this already when it sets POPALIGN_E2E_BUILT=1 (its type checks hold cargo's lock).
[[ "${POPALIGN_E2E_BUILT:-}" == 1 ]] || cargo test --workspace --lib --test suite --no-run
run="$target_dir/e2e-run"
rm -rf "$run"
mkdir -p "$run"
cp tools/e2e-run.toml "$run/run.toml"
t=$SECONDS
"$target_dir/debug/popalign" run --config "$run/run.toml"
echo "web-e2e: toy run in $((SECONDS - t))s"
# The report again, now carrying the face classifier (MTCNN and the real dlib gender network) and CLIP
# zero-shot (the tiny random CLIP with its 1000-token tokenizer), and the native classifications of the
# MTCNN test photos that the browser's must reproduce.
faces="$run/face-weights"
mkdir -p "$faces"
cp fixtures/mtcnn/mtcnn.safetensors fixtures/age-gender/gender.safetensors "$faces/"
clip="$run/clip-weights"
mkdir -p "$clip"
cp fixtures/clip-tiny/* "$clip/"
cp -r fixtures/tiny-sdxl/tokenizer "$clip/tokenizer"
"$target_dir/debug/popalign" report --runs "$run" --out "$run/report" --face-weights "$faces" \
  --clip-weights "$clip" > /dev/null
for kind in faces clip; do
  weights="$faces"
  [[ $kind == clip ]] && weights="$clip"
  "$target_dir/debug/popalign" classify --images fixtures/mtcnn --classifier "$kind" --weights "$weights" \
    --out "$run/$kind.csv" > /dev/null
done
python3 tools/web-e2e.py "$run/report" "${CI_LOG_DIR:-$target_dir/ci-logs}/screenshots" \
  --faces "$run/faces.csv" fixtures/mtcnn --clip "$run/clip.csv" fixtures/mtcnn
