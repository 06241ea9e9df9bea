#!/usr/bin/env bash
# The main job on embedded defaults: builds ToolOps and runs the example
# multi-agent run (in-memory store, no server), printing what was saved.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release agent_demo
./build/agent_demo
