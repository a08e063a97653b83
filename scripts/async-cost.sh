#!/usr/bin/env bash
# What the bare async forms cost on their healthy path beside their peers,
# in instructions per call counted by valgrind's callgrind (independent of
# the machine's load, unlike the times of `benches/async_layers.rs`): the
# bench binary `async_count` runs each case for 10 000 and 110 000 calls,
# counting inside its loop only, the difference divided by 100 000.
# Prints a Markdown table. Needs valgrind.
#
# Usage: scripts/async-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind not installed (apt-get install valgrind)" >&2; exit 1; }

bin=$(cargo bench -p stockade-bench --bench async_count --no-run --locked --message-format=json |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "async_count" and m.get("executable"):
        print(m["executable"])')
[ -x "$bin" ] || { echo "async_count was not built" >&2; exit 1; }

# per_call CASE: instructions per call of `async_count CASE`.
per_call() {
    local small large
    # Only inside `run_CASE` (the calls), not the setup.
    small=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect="async_count::run_$1" "$bin" "$1" 10000 2>&1 | awk '/Collected :/ {print $NF}')
    large=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect="async_count::run_$1" "$bin" "$1" 110000 2>&1 | awk '/Collected :/ {print $NF}')
    awk -v s="$small" -v l="$large" 'BEGIN { printf "%.1f\n", (l - s) / 100000 }'
}

printf '| form | instructions per call | peer | peer instructions per call | ÷ peer |\n|---|---:|---|---:|---:|\n'
row() {
    local ours theirs
    ours=$(per_call "$2")
    theirs=$(per_call "$4")
    awk -v a="$1" -v o="$ours" -v b="$3" -v t="$theirs" 'BEGIN { printf "| %s | %.1f | %s | %.1f | %.2f |\n", a, o, b, t, o / t }'
}
row '`RateLimiter::acquire_async(1)`, a permit free' limiter "governor \`until_ready\`" governor
row '`Retry::execute_async`, the first attempt succeeds' retry 'backon async retry' backon
