#!/usr/bin/env bash
# Runs every test: the C++ suite in a normal build, the Python package's
# suite (pytest, in a fresh virtual environment with the package installed by
# pip), then the C++ suite again under ThreadSanitizer and AddressSanitizer
# (+UBSan). Installs what it needs first.
#   scripts/test.sh            everything
#   scripts/test.sh quick      the normal build and the Python suite
#   scripts/test.sh python     the Python suite only
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

run_python() {
  echo "=== Python tests"
  # A virtual environment made anew, so that the run proves a clean install.
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  # The package, pytest, and the real frameworks the adapters are tested on.
  .venv/bin/pip install --quiet ".[test,frameworks]"
  # Run from outside the tree so that the installed package is the one tested.
  local rc=0
  (cd python/tests && ../../.venv/bin/python -m pytest -q -p no:cacheprovider .) || rc=$?
  # pytest's 5 means no test ran: a failure here, never a pass.
  if [ "$rc" -ne 0 ]; then
    echo "Python tests failed (pytest exit $rc)" >&2
    exit 1
  fi
}

if [ "${1:-}" = "python" ]; then
  run_python
  echo "=== all tests passed"
  exit 0
fi

run_suite release build
run_python
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
