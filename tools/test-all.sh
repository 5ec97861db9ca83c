#!/usr/bin/env bash
# The project's full check (the README's test command): the main test suite, the trainer's GPU backends
# (type-checked, not run: no GPU needed), the browser app, and its end-to-end test in headless Chromium. Stops at the first failure; prints each step's
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
  { cat "$logs"/test.log "$logs"/flex.log "$logs"/wgpu.log 2>/dev/null || true; } \
    | awk '/^ +PASS \[/ { sub(/^ +PASS \[ */, ""); sub(/s\] \([^)]*\) /, " "); print }' \
    | sort -rn | awk 'NR <= 10 {printf "  %8.1fs  %s %s\n", $1, $2, $3}'
}

# The CUDA build, type-checked with its examples (no GPU here to run it; bench/gpu/run.sh does where one is lent).
check_gpu() {
  cargo check -p popalign-trainer --features cuda --bins --examples
}
# burn-cubecl's kernels (the ones burn-cuda runs too) executing our models: the `popalign` binary built on wgpu,
# over Mesa's lavapipe (Vulkan on the CPU), runs the component parity test (every U-Net, VAE and text encoder
# against the diffusers/transformers goldens, 1e-4), a LoRA forward against peft's, and a LoRA training run
# killed and resumed to bitwise the same weights. It builds the main step's packages with the trainer's `wgpu`
# feature added, so only the trainer recompiles (core's tests already put burn/wgpu in the build). Last,
# because it rebuilds target/debug/popalign, which the browser step reuses.
wgpu_tests=("${suites[@]}" --features popalign-trainer/wgpu)
wgpu_filter='test(run_module_matches) | test(run_module_applies) | test(a_killed_run_resumed)'
run_wgpu() {
  [[ -n "$(ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null)" ]] ||
    { echo "no lavapipe Vulkan driver (apt-get install mesa-vulkan-drivers)" >&2; return 1; }
  if have_nextest; then nextest wgpu "${wgpu_tests[@]}" -E "package(popalign-trainer) & ($wgpu_filter)"
  else cargo test "${wgpu_tests[@]}" -- run_module_matches run_module_applies a_killed_run_resumed; fi
}

t_all=$SECONDS
# The browser app first: the `popalign` binary the tests build then embeds it (native-trainer/build.rs), and
# the end-to-end step reuses that binary instead of building one with other features.
step build-web   bash tools/build-web.sh
step test        run_suite
step test-flex   run_flex
step check-gpu   check_gpu
step web-e2e     bash tools/web-e2e.sh
step test-wgpu   run_wgpu

printf '%s\n' "" "test-all summary:" "${summary[@]}"
if have_nextest; then printf '%s\n' "" "the ten slowest tests:"; slowest; fi
echo "test-all: all steps passed in $((SECONDS - t_all))s"
