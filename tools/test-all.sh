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

# The suites run under cargo-nextest where it is installed (it is on this project's machines): it keeps both
# cores busy across the two test binaries and times every test, so the summary can name the slowest.
# Without it, plain `cargo test` runs the same tests (there are no doctests) and the slowest are not listed.
logs="$repo/target/ci-logs"
mkdir -p "$logs"
have_nextest() { cargo nextest --version >/dev/null 2>&1; }
nextest() {
  local log="$logs/$1.log"; shift
  cargo nextest run --status-level pass --final-status-level slow "$@" 2>&1 | tee "$log"
  return "${PIPESTATUS[0]}"
}
# What the suites build: every crate but the browser app, whose four native unit tests would otherwise pull
# burn-wgpu, wgpu and leptos into this optimised build (they run in the wgpu step, unoptimised), and no
# examples (bench_unet is checked in the cuda step). tools/web-e2e.sh reuses this build's `popalign`.
suites=(--workspace --exclude popalign-web --lib --bins --tests)
# The feature set of the main step plus the trainer's `flex` backend: burn's features are unchanged (core's
# tests already enable burn/flex), so only the trainer and its tests are rebuilt, not burn.
flex=("${suites[@]}" --features popalign-trainer/flex)
run_suite() {
  if have_nextest; then nextest test "${suites[@]}"; else cargo test "${suites[@]}"; fi
}
# bf16 mixed precision needs a backend with bf16 tensors: the trainer on burn-flex (CPU).
run_flex() {
  if have_nextest; then nextest flex "${flex[@]}" -E 'package(popalign-trainer) & test(bf16)'
  else cargo test "${flex[@]}" --test suite bf16; fi
}
# "PASS [  12.345s] (n/N) crate::binary test" lines of the nextest logs, slowest first. Every stage reads its
# whole input: under `pipefail`, a `head` that exits early kills `sort` with SIGPIPE and the script with 141.
slowest() {
  { cat "$logs"/test.log "$logs"/flex.log 2>/dev/null || true; } \
    | awk '/^ +PASS \[/ { sub(/^ +PASS \[ */, ""); sub(/s\] \([^)]*\) /, " "); print }' \
    | sort -rn | awk 'NR <= 10 {printf "  %8.1fs  %s %s\n", $1, $2, $3}'
}

# The wgpu backend compiled and linked (profile build-check: unoptimised), and the browser app's native
# unit tests on the same unoptimised burn-wgpu.
build_wgpu() {
  cargo test --profile build-check -p popalign-web &&
    cargo build --profile build-check -p popalign-trainer --features wgpu
}

t_all=$SECONDS
# The browser app first: the `popalign` binary the tests build then embeds it (native-trainer/build.rs), and
# the end-to-end step reuses that binary instead of building one with other features.
step build-web   bash tools/build-web.sh
step test        run_suite
step test-flex   run_flex
step check-cuda  cargo check -p popalign-trainer --features cuda --bins --examples
step build-wgpu  build_wgpu
step web-e2e     bash tools/web-e2e.sh

printf '%s\n' "" "test-all summary:" "${summary[@]}"
if have_nextest; then printf '%s\n' "" "the ten slowest tests:"; slowest; fi
echo "test-all: all steps passed in $((SECONDS - t_all))s"
