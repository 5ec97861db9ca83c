#!/usr/bin/env bash
# The project's full check (the README's test command): the main test suite, the trainer's GPU backends
# (compiled, not run: no GPU needed), the browser app, and its end-to-end test in headless Chromium. Stops at the first failure; prints each step's
# wall time and a summary at the end. Logs to stdout.
#
#   bash tools/test-all.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

summary=()
step() {
  local name="$1"; shift
  echo
  echo "==> [$name] $*"
  local t0=$SECONDS rc=0
  "$@" || rc=$?
  local dt=$((SECONDS - t0))
  if [[ $rc -ne 0 ]]; then
    echo "==> [$name] FAILED (exit $rc) after ${dt}s"
    summary+=("$(printf '%-14s FAILED %5ds' "$name" "$dt")")
    printf '%s\n' "" "test-all summary:" "${summary[@]}"
    exit "$rc"
  fi
  echo "==> [$name] ok in ${dt}s (target/: $(du -sh target 2>/dev/null | cut -f1), free: $(df -h . | awk 'NR==2{print $4}'))"
  summary+=("$(printf '%-14s ok     %5ds' "$name" "$dt")")
}

# Incremental caches only help repeated local builds; on a clean CI clone they cost gigabytes of disk.
export CARGO_INCREMENTAL=0

t_all=$SECONDS
# The browser app first: the `popalign` binary the tests build then embeds it (native-trainer/build.rs), and
# the end-to-end step reuses that binary instead of building one with other features.
step build-web   bash tools/build-web.sh
step test        cargo test --workspace
# bf16 mixed precision needs a backend with bf16 tensors: the trainer on burn-flex (CPU).
step test-flex   cargo test -p popalign-trainer --features flex --test train --test dense --test alignprop bf16
step build-cuda  cargo build --profile build-check -p popalign-trainer --features cuda
step build-wgpu  cargo build --profile build-check -p popalign-trainer --features wgpu
step web-e2e     bash tools/web-e2e.sh

printf '%s\n' "" "test-all summary:" "${summary[@]}"
echo "test-all: all steps passed in $((SECONDS - t_all))s"
