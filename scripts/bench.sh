#!/usr/bin/env bash
# Runs Stockade's benchmarks against its peers and prints the Markdown table.
# Not part of the test suite. On an idle machine, ~5 minutes.
# Usage: scripts/bench.sh                 (every bench)
#        scripts/bench.sh --bench limiter (one bench target; any `cargo bench` options)
#        scripts/bench.sh -- --measurement-time 10   (criterion options after --)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench -p stockade-bench "$@"
python3 scripts/bench-table.py
