#!/usr/bin/env bash
# What the telemetry features cost a closed breaker's `execute`, in
# instructions per call counted by valgrind's callgrind (independent of the
# machine's load, unlike criterion's times): the bench binary
# `telemetry_count` built plainly and with `--features telemetry`
# (`stockade`'s `metrics` and `tracing`), each configuration run for 10 000
# and 110 000 calls, counting inside its loop only, the difference divided
# by 100 000. Prints a Markdown
# table (the README's "Telemetry" section). Needs valgrind.
#
# Usage: scripts/telemetry-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind not installed (apt-get install valgrind)" >&2; exit 1; }

# binary [cargo args...]: the path of the built `telemetry_count` bench.
binary() {
    cargo bench -p stockade-bench --bench telemetry_count --no-run --locked --message-format=json "$@" |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "telemetry_count" and m.get("executable"):
        print(m["executable"])'
}

# per_call BINARY CONFIG: instructions per call.
per_call() {
    local small large
    # Only inside `run` (the calls), not the configuration's setup.
    small=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='telemetry_count::run' "$1" "$2" 10000 2>&1 | awk '/Collected :/ {print $NF}')
    large=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='telemetry_count::run' "$1" "$2" 110000 2>&1 | awk '/Collected :/ {print $NF}')
    awk -v s="$small" -v l="$large" 'BEGIN { printf "%.1f\n", (l - s) / 100000 }'
}

plain=$(binary)
instrumented=$(binary --features telemetry)
[ -x "$plain" ] && [ -x "$instrumented" ] || { echo "telemetry_count was not built" >&2; exit 1; }
base=$(per_call "$plain" idle)
printf '| build and listeners | instructions per `execute` | ÷ plain |\n|---|---:|---:|\n'
row() { awk -v n="$2" -v b="$base" -v label="$1" 'BEGIN { printf "| %s | %.1f | %.2f |\n", label, n, n / b }'; }
row 'plain build (`metrics` and `tracing` not compiled)' "$base"
row '`metrics` + `tracing` compiled in, nobody listening' "$(per_call "$instrumented" idle)"
row 'a Prometheus recorder installed and a `Collector` alive' "$(per_call "$instrumented" metrics-collector)"
row 'a `tracing` subscriber wanting every span (a bare `Registry`)' "$(per_call "$instrumented" tracing-subscriber)"
