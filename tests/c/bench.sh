#!/usr/bin/env bash
# The C call's overhead: each operation timed through the C ABI
# (tests/c/bench.c, linked to the release libstockade.a) and called
# directly in Rust (ffi/examples/core_bench.rs); prints both and the ratio.
# Usage: tests/c/bench.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
build=target/c-tests
mkdir -p "$build"
cargo build --release -p stockade-ffi --locked
cargo build --release -p stockade-ffi --example core_bench --locked
${CC:-cc} -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -Iinclude tests/c/bench.c target/release/libstockade.a \
    -lpthread -ldl -lm -o "$build/bench"
"$build/bench" >"$build/bench-c.txt"
target/release/examples/core_bench >"$build/bench-rust.txt"
printf '%-28s %10s %10s %7s\n' operation "C ns" "Rust ns" ratio
join <(sort "$build/bench-c.txt") <(sort "$build/bench-rust.txt") |
    awk '{ printf "%-28s %10.2f %10.2f %6.2fx\n", $1, $2, $3, ($3 > 0 ? $2 / $3 : 0) }'
