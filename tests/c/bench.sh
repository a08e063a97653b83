#!/usr/bin/env bash
# The C call's overhead: each operation through the C ABI (tests/c/bench.c,
# linked to the release libstockade.a) beside the same call made directly
# in Rust (ffi/examples/core_bench.rs), and the ratio, in a Markdown table.
#
# Usage: tests/c/bench.sh [--instructions] [--lto]
#   (default)       nanoseconds per call, median of 7 runs of 2,000,000
#                   calls: wall-clock time, noisy on a shared machine.
#   --instructions  instructions per call, counted by valgrind's callgrind
#                   (the difference between runs of 10,000 and 110,000
#                   calls, so set-up is not counted): repeatable to the
#                   instruction, blind to cache misses and branch
#                   mispredictions.
#   --lto           the C side built with cross-language LTO by
#                   tests/c/lto.sh (rustc and clang on the same LLVM), so
#                   the C compiler can inline the core-tier calls.
# Targets: a core-tier call at most 2x the Rust call (1.25x with --lto); a
# blocking-tier call at most 1.5x.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=target/c-tests
mkdir -p "$build"

mode=time lto=0
for arg in "$@"; do
    case $arg in
        --instructions) mode=instructions ;;
        --lto) lto=1 ;;
        *) echo "usage: tests/c/bench.sh [--instructions] [--lto]" >&2; exit 2 ;;
    esac
done

cargo build --release -p stockade-ffi --locked
cargo build --release -p stockade-ffi --example core_bench --locked
rust_bench=target/release/examples/core_bench
if [ "$lto" = 1 ]; then
    c_bench=$(tests/c/lto.sh | tail -n 1)
else
    c_bench=$build/bench
    ${CC:-cc} -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -Iinclude tests/c/bench.c target/release/libstockade.a \
        -lpthread -ldl -lm -o "$c_bench"
fi

ops="deadline_is_expired backoff_delay budget_deposit_withdraw breaker_acquire_report breaker_call breaker_execute_blocking"

# instructions BINARY OP: instructions per call of OP.
instructions() {
    local small large
    small=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" "$2" 10000 2>&1 | awk '/Collected :/ {print $NF}')
    large=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" "$2" 110000 2>&1 | awk '/Collected :/ {print $NF}')
    awk -v s="$small" -v l="$large" 'BEGIN { printf "%.1f\n", (l - s) / 100000 }'
}

if [ "$mode" = instructions ]; then
    command -v valgrind >/dev/null || { echo "valgrind not installed (apt-get install valgrind)" >&2; exit 1; }
    unit="instructions"
    : >"$build/bench-c.txt"
    : >"$build/bench-rust.txt"
    for op in $ops; do
        echo "$op $(instructions "$c_bench" "$op")" >>"$build/bench-c.txt"
        echo "$op $(instructions "$rust_bench" "$op")" >>"$build/bench-rust.txt"
    done
else
    unit="ns"
    "$c_bench" >"$build/bench-c.txt"
    "$rust_bench" >"$build/bench-rust.txt"
fi

core_limit=2.0
[ "$lto" = 1 ] && core_limit=1.25
printf '| operation | C %s | Rust %s | C ÷ Rust | target | met |\n|---|---:|---:|---:|---|---|\n' "$unit" "$unit"
join <(sort "$build/bench-c.txt") <(sort "$build/bench-rust.txt") |
    awk -v core="$core_limit" '{
        ratio = ($3 > 0 ? $2 / $3 : 0)
        limit = ($1 ~ /blocking/ ? 1.5 : core)
        printf "| `%s` | %.1f | %.1f | %.2f | ≤ %.2f× | %s |\n", $1, $2, $3, ratio, limit, (ratio <= limit ? "yes" : "**no**")
    }'
