#!/usr/bin/env bash
# Builds the browser app (web/, crate popalign-web) for wasm32-unknown-unknown in release mode, then, if
# `wasm-bindgen` is on PATH, writes the `--target no-modules` glue (a classic script), the wasm module, and the
# module as base64 in a classic script (for pages opened from file://) into www/pkg/ (ignored by git).
#
#   bash tools/build-web.sh
#
# Honours CARGO_TARGET_DIR (default: <repo>/target). The wasm-bindgen CLI must have the exact version of the
# `wasm-bindgen` crate in Cargo.lock (pinned =0.2.130 in web/Cargo.toml): cargo install wasm-bindgen-cli --version 0.2.130
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
wasm="$target_dir/wasm32-unknown-unknown/wasm/popalign_web.wasm"
out="$repo/www/pkg"

echo "build-web: cargo build -p popalign-web --target wasm32-unknown-unknown --profile wasm"
cargo build -p popalign-web --target wasm32-unknown-unknown --profile wasm

if ! command -v wasm-bindgen >/dev/null 2>&1; then
  echo "build-web: wasm-bindgen not on PATH; skipped the bindgen step (built $wasm only)"
  exit 0
fi

want="$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"$/\1/p;}' Cargo.lock | head -n1)"
have="$(wasm-bindgen --version | awk '{print $2}')"
if [[ -n "$want" && "$want" != "$have" ]]; then
  echo "build-web: wasm-bindgen CLI is $have but Cargo.lock has wasm-bindgen $want; install the matching CLI" >&2
  exit 1
fi

rm -rf "$out"
mkdir -p "$out"
echo "build-web: wasm-bindgen --target no-modules --no-typescript --out-dir www/pkg"
wasm-bindgen --target no-modules --no-typescript --out-dir "$out" "$wasm"
# file:// pages may run classic scripts from their folder but not fetch files: the module as a script.
{
  printf 'window.POPALIGN_WASM_BASE64 = "'
  base64 -w0 "$out/popalign_web_bg.wasm"
  printf '";\n'
} > "$out/popalign_web_wasm.js"

raw=$(stat -c %s "$out/popalign_web_bg.wasm")
gz=$(gzip -9 -c "$out/popalign_web_bg.wasm" | wc -c)
echo "build-web: www/pkg/popalign_web_bg.wasm: $raw bytes raw, $gz bytes gzip -9"
