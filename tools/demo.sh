#!/usr/bin/env bash
# The README's first command: the whole PopAlign pipeline on the toy world, into runs/demo/, with the full
# report (the static page and the interactive explorer). The explorer is wasm that the `popalign` binary
# embeds, so this builds it first (tools/build-web.sh), adding the wasm32 target and wasm-bindgen-cli 0.2.130
# when they are missing, then runs `popalign demo`. Arguments go to `popalign demo` (e.g. --seed 1).
# If the explorer cannot be built, the demo still runs and its report has the static page only.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
wb_version=0.2.130

explorer_tools() {
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  if [[ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wb_version" ]]; then
    cargo install wasm-bindgen-cli --version "$wb_version"
  fi
}

if explorer_tools && bash tools/build-web.sh; then
  echo "demo: explorer built into www/pkg/"
else
  echo "demo: could not build the explorer (see above); the report will have the static page only" >&2
fi
exec cargo run -p popalign-trainer -- demo "$@"
