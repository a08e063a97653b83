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
# A Markdown table: each operation through C beside the same call in Rust,
# the ratio, and the target (core tier within 1.5x, blocking within 2x).
printf '| operation | C ns | Rust ns | C ÷ Rust | target | met |\n|---|---:|---:|---:|---|---|\n'
join <(sort "$build/bench-c.txt") <(sort "$build/bench-rust.txt") |
    awk '{
        ratio = ($3 > 0 ? $2 / $3 : 0)
        limit = ($1 ~ /blocking|execute/ ? 2.0 : 1.5)
        printf "| `%s` | %.1f | %.1f | %.2f | ≤ %.1f× | %s |\n", $1, $2, $3, ratio, limit, (ratio <= limit ? "yes" : "**no**")
    }'
