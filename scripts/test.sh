#!/usr/bin/env bash
# Runs every test: the C++ suite in a normal build, then again under
# ThreadSanitizer and AddressSanitizer (+UBSan). Installs what it needs first.
#   scripts/test.sh            everything
#   scripts/test.sh quick      the normal build only
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

run_suite() {
  local flavour="$1" dir="$2"
  shift 2
  echo "=== C++ tests ($flavour)"
  scripts/build.sh "$flavour" toolops_tests
  # --no-tests=error: a build that discovered no test must fail, not pass.
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$(nproc)" --timeout 600 "$@"
}

run_suite release build
if [ "${1:-}" != "quick" ]; then
  tsan="halt_on_error=1 second_deadlock_stack=1"
  TSAN_OPTIONS="$tsan" run_suite tsan build-tsan -E '^VectorIndexTest[.]'
  # hnswlib's addPoint holds one node's lock while it takes a neighbour's, in
  # no fixed order, which TSan's deadlock detector reports (with unusable
  # stacks, so no suppression can match it). VectorIndex never runs two graph
  # writers at once (each partition's graph changes under its exclusive lock),
  # so no cycle can form: these tests run with the deadlock detector off and
  # every data-race check on.
  echo "=== C++ tests (tsan, vector index)"
  TSAN_OPTIONS="$tsan detect_deadlocks=0" \
    ctest --test-dir build-tsan --output-on-failure --no-tests=error -j "$(nproc)" --timeout 600 \
    -R '^VectorIndexTest[.]'
  ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1" \
    run_suite asan build-asan
fi
echo "=== all tests passed"
