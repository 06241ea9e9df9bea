#!/usr/bin/env bash
# Configures and builds one flavour of the tree.
#   scripts/build.sh [release|tsan|asan] [targets...]
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-release}"
shift || true
case "$flavour" in
  release) dir=build; extra=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  tsan) dir=build-tsan; extra=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DTOOLOPS_SANITIZE=thread -DTOOLOPS_BUILD_BENCH=OFF -DTOOLOPS_BUILD_EXAMPLES=OFF) ;;
  asan) dir=build-asan; extra=(-DCMAKE_BUILD_TYPE=Debug -DTOOLOPS_SANITIZE=address -DTOOLOPS_BUILD_BENCH=OFF -DTOOLOPS_BUILD_EXAMPLES=OFF) ;;
  *) echo "usage: scripts/build.sh [release|tsan|asan] [targets...]" >&2; exit 2 ;;
esac
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$dir" -G Ninja "${extra[@]}" "${launcher[@]}" >/dev/null
jobs="${TOOLOPS_JOBS:-$(nproc)}"
if [ $# -gt 0 ]; then
  cmake --build "$dir" -j "$jobs" --target "$@"
else
  cmake --build "$dir" -j "$jobs"
fi
