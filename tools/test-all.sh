#!/usr/bin/env bash
# The project's full check (the README's test command): the main test suite (with our models on burn-cubecl's
# kernels over lavapipe), the trainer on burn-flex, the trainer's GPU builds (type-checked, not run: no GPU
# needed), the browser app, and its end-to-end test in headless Chromium. Stops at the first failure; prints
# each step's wall time and a summary at the end. Logs to stdout.
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
# Tests run two at a time, and each test's `popalign` already runs two workers or two sampling threads on this
# 2-core box: rayon's and matrixmultiply's kernel threads on top of that only wait and yield. One kernel thread
# per process ran the main step's tests in 373 s against 427 s and 408 s (bench/NOTES.md). Results do not
# depend on it: the kernels split outputs, not sums, between threads. Tests that pass `--threads` still get it.
export RAYON_NUM_THREADS=1 MATMUL_NUM_THREADS=1
# What the main step builds: the library unit tests and the two integration suites (with the `popalign` binary
# they run). Not the unit tests inside the `popalign` binary: the flex step builds and runs those, so the
# trainer compiles once here, not twice. No examples (bench_unet is type-checked in the GPU step). The browser
# app builds natively as its pure helpers only (web/src/lib.rs), so Leptos stays out of this optimised build.
# tools/web-e2e.sh reuses this build's `popalign`.
suites=(--workspace --lib --test suite)
# The trainer on burn-flex, its CPU backend with bf16 tensors: the bf16 tests of the suite, and the unit tests
# inside the `popalign` binary. burn's features are those of the main step (core's tests enable burn/flex and
# burn/wgpu), so only the trainer is rebuilt.
flex=(--workspace --bins --tests --features popalign-trainer/flex)
run_suite() {
  if have_nextest; then nextest test "${suites[@]}"; else cargo test "${suites[@]}"; fi
}
run_flex() {
  if have_nextest; then nextest flex "${flex[@]}" -E 'package(popalign-trainer) & (kind(bin) | test(bf16))'
  else cargo test "${flex[@]}" -p popalign-trainer --bins && cargo test "${flex[@]}" --test suite bf16; fi
}
# "PASS [  12.345s] (n/N) crate::binary test" lines of the nextest logs, slowest first. Every stage reads its
# whole input: under `pipefail`, a `head` that exits early kills `sort` with SIGPIPE and the script with 141.
slowest() {
  { cat "$logs"/test.log "$logs"/flex.log 2>/dev/null || true; } \
    | awk '/^ +PASS \[/ { sub(/^ +PASS \[ */, ""); sub(/s\] \([^)]*\) /, " "); print }' \
    | sort -rn | awk 'NR <= 10 {printf "  %8.1fs  %s %s\n", $1, $2, $3}'
}

# The GPU builds of the trainer, type-checked (no GPU here to run them; bench/gpu/run.sh does where one is
# lent). Their kernels, burn-cubecl's, do run in the main step: core's suite runs our models on burn-wgpu over
# Mesa's lavapipe (core/tests/suite/cubecl.rs), so the trainer is not built on wgpu.
check_gpu() {
  cargo check -p popalign-trainer --features cuda --bins --examples &&
    cargo check -p popalign-trainer --features wgpu --bins
}
# The browser test beside the GPU type checks: the test runs `popalign` and Chromium while cargo checks, so each
# fills the cores the other leaves idle (the checks' last minutes are one rustc each). The test's `popalign` is
# the main step's, re-linked first (the flex step left its own there); the checks then hold cargo's lock.
e2e_beside_gpu_checks() {
  cargo test "${suites[@]}" --no-run || return
  local check_log="$logs/check-gpu.log" check rc=0
  check_gpu > "$check_log" 2>&1 &
  check=$!
  POPALIGN_E2E_BUILT=1 bash tools/web-e2e.sh || rc=$?
  wait "$check" || { echo "GPU type checks failed:"; rc=1; }
  sed 's/^/check-gpu: /' "$check_log"
  return "$rc"
}
# core/tests/suite/cubecl.rs needs a Vulkan adapter: lavapipe, Vulkan on the CPU, where there is no GPU.
need_vulkan() {
  [[ -n "$(ls /usr/share/vulkan/icd.d/*.json 2>/dev/null)" ]] ||
    { echo "no Vulkan driver for core's cubecl tests (apt-get install mesa-vulkan-drivers)" >&2; return 1; }
}

t_all=$SECONDS
# The browser app first: the `popalign` binary the tests build then embeds it (native-trainer/build.rs), and
# the end-to-end step reuses that binary instead of building one with other features.
step build-web   bash tools/build-web.sh
step vulkan      need_vulkan
step test        run_suite
step test-flex   run_flex
step e2e+checks  e2e_beside_gpu_checks

printf '%s\n' "" "test-all summary:" "${summary[@]}"
if have_nextest; then printf '%s\n' "" "the ten slowest tests:"; slowest; fi
echo "test-all: all steps passed in $((SECONDS - t_all))s"
