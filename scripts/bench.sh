#!/usr/bin/env bash
# Runs Stockade's benchmarks against its peers and prints the README's
# performance tables, all from one run: the Rust core and blocking API
# (criterion, beside governor, failsafe, recloser, tokio, backon), the C ABI
# (each call through C beside the same call in Rust), the Python package
# (beside pybreaker, circuitbreaker, tenacity, pyrate-limiter, limits,
# aiobreaker, aiolimiter) and the shared-memory machines across processes
# (`benches/benches/shared.rs`, and in Python against pyrate-limiter's
# MultiprocessBucket). Not part of the test suite; on an idle 2-core machine
# about 10 minutes.
#
# Usage: scripts/bench.sh                          (everything)
#        STOCKADE_BENCH=rust scripts/bench.sh       (one part: rust, c, python, shared or redis)
#
# The redis part starts its own redis-server; redis_rate's script is measured
# when STOCKADE_REDIS_RATE_LUA names its file (benches/benches/redis.rs).
#        scripts/bench.sh --bench limiter           (Rust: one bench target; any `cargo bench` options)
#        scripts/bench.sh -- --measurement-time 10  (Rust: criterion options after --)
set -euo pipefail
cd "$(dirname "$0")/.."

part=${STOCKADE_BENCH:-all}
want() { [ "$part" = all ] || [ "$part" = "$1" ]; }

out=target/bench-report.md
mkdir -p target
# The shared bench's table counts only if written by this run.
stamp=target/.bench-start
touch "$stamp"
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
criterion_home=${CRITERION_HOME:-$target_dir/criterion}
shared_report=$criterion_home/shared/report.md
{
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) cores visible)"
    echo "- kernel clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown)"
    echo "- $(rustc --version); $(python3 --version 2>&1); $(${CC:-cc} --version | head -1)"
    echo
} >"$out"

if want rust; then
    # Every bench target, `shared` included (see below); `telemetry` also
    # in its instrumented build when run without arguments (the telemetry
    # cost table compares both builds).
    cargo bench -p stockade-bench "$@"
    if [ $# = 0 ]; then
        cargo bench -p stockade-bench --features telemetry --bench telemetry
    fi
    python3 scripts/bench-table.py >>"$out"
    echo >>"$out"
    # The same comparison in instructions (independent of the machine's
    # load): the README's telemetry table.
    if command -v valgrind >/dev/null; then
        scripts/telemetry-cost.sh >>"$out"
        echo >>"$out"
    fi
fi
if [ "$part" = shared ]; then
    cargo bench -p stockade-bench --bench shared
fi
if want shared || [ "$part" = rust ]; then
    # Written by the `shared` bench target: by the rust part's `cargo bench`
    # (unless it was limited to other targets) or by the line above.
    if [ -f "$shared_report" ] && [ "$shared_report" -nt "$stamp" ]; then
        cat "$shared_report" >>"$out"
    else
        echo "(the shared-memory bench did not run: \`cargo bench -p stockade-bench --bench shared\`)" >>"$out"
        echo >>"$out"
    fi
fi
if want c; then
    echo "#### C ABI: a call through the header beside the same call in Rust (\`tests/c/bench.sh\`)" >>"$out"
    echo >>"$out"
    tests/c/bench.sh >>"$out"
    echo >>"$out"
    echo "Instructions per call (callgrind: repeatable, blind to cache and branch effects):" >>"$out"
    echo >>"$out"
    tests/c/bench.sh --instructions >>"$out"
    echo >>"$out"
    if tests/c/lto.sh --check >/dev/null; then
        echo "With cross-language LTO (\`tests/c/lto.sh\`), ns and instructions:" >>"$out"
        echo >>"$out"
        tests/c/bench.sh --lto >>"$out"
        echo >>"$out"
        tests/c/bench.sh --lto --instructions >>"$out"
        echo >>"$out"
    else
        echo "Cross-language LTO not measured: $(tests/c/lto.sh --check)" >>"$out"
        echo >>"$out"
    fi
fi
if want python; then
    echo "#### Python (\`python/bench/run.sh\`)" >>"$out"
    echo >>"$out"
    python/bench/run.sh >>"$out"
fi
if want shared || [ "$part" = python ]; then
    echo "#### Python, shared between processes (\`python/bench/shared.py\`)" >>"$out"
    echo >>"$out"
    python/bench/run.sh --shared >>"$out"
fi
if want redis; then
    # The rust part's `cargo bench` already ran every target, redis included.
    [ "$part" = redis ] && cargo bench -p stockade-bench --bench redis
    cat "$criterion_home/redis/report.md" >>"$out"
    echo >>"$out"
    echo "#### Python across a fleet (\`python/bench/fleet.py\`)" >>"$out"
    echo >>"$out"
    python/bench/run.sh --redis >>"$out"
    echo >>"$out"
fi
cat "$out"
echo
echo "(also written to $out)"
