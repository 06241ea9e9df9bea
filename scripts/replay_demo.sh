#!/usr/bin/env bash
# What would ToolOps save on a multi-agent workload? Builds the toolops
# command and replays the bundled sample trace (generated from the paraphrase
# data in ../shared/data) through the middleware on embedded defaults (memory
# store, bundled embedder, no server), comparing exact caching with semantic
# caching at two thresholds. Prints the report; writes build/replay.html.
#
#   scripts/replay_demo.sh [CALLS] [more toolops replay options]
set -euo pipefail
cd "$(dirname "$0")/.."
calls="${1:-100000}"
shift || true
scripts/deps.sh
scripts/build.sh release toolops_cli >/dev/null
./build/toolops replay --generate "$calls" --compare exact,semantic,semantic:0.95 \
  --html build/replay.html "$@"
