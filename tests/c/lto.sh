#!/usr/bin/env bash
# Cross-language LTO: libstockade.a built as LLVM bitcode
# (-Clinker-plugin-lto) and linked into a C program by clang with
# -flto=thin and lld, so that LLVM inlines the core-tier calls into the C
# caller. Needs a rustc and a clang built on the same LLVM major version
# (the bitcode formats must match): this script picks, in order,
# $STOCKADE_LTO_TOOLCHAIN or the default toolchain, then any installed
# rustup toolchain, whose `rustc -vV` LLVM major has a clang-NN and
# ld.lld-NN (or clang/ld.lld of that version) on PATH.
#
# It builds the C core-tier tests and runs them (results must not change
# under LTO), builds tests/c/bench.c, and fails unless the calls that
# should inline did (stockade_deadline_is_expired,
# stockade_backoff_delay_ms and stockade_breaker_call leave no call in the
# benchmark's loops).
#
# Usage: tests/c/lto.sh            (build, test; prints the bench binary)
#        tests/c/lto.sh --check    (exit 0 if a matching pair exists, 1 if not, saying why)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=target/c-tests
mkdir -p "$build"
target=$(rustc -vV | sed -n 's/^host: //p')

llvm_major() { rustc "+$1" -vV 2>/dev/null | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p'; }
clang_for() {
    local v=$1 c
    for c in "clang-$v" clang; do
        command -v "$c" >/dev/null || continue
        "$c" --version | grep -qE "clang version $v\." || continue
        if command -v "ld.lld-$v" >/dev/null || "$c" -fuse-ld=lld -Wl,--version -x c /dev/null -o /dev/null 2>/dev/null | grep -q LLD; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

toolchain="" clang=""
candidates="${STOCKADE_LTO_TOOLCHAIN:-} $(rustup show active-toolchain 2>/dev/null | awk '{print $1}') $(rustup toolchain list 2>/dev/null | awk '{print $1}')"
tried=""
for t in $candidates; do
    v=$(llvm_major "$t")
    [ -n "$v" ] || continue
    tried="$tried $t (LLVM $v)"
    if c=$(clang_for "$v"); then
        toolchain=$t clang=$c
        break
    fi
done
if [ -z "$toolchain" ]; then
    echo "no rustc/clang pair on the same LLVM major: rustc toolchains:$tried; install the matching clang-NN and lld-NN (Debian: apt-get install clang-NN lld-NN), or a rustup toolchain whose LLVM matches an installed clang"
    exit 1
fi
if [ "${1:-}" = --check ]; then
    echo "cross-language LTO: rustc +$toolchain (LLVM $(llvm_major "$toolchain")) with $clang"
    exit 0
fi
echo "cross-language LTO: rustc +$toolchain (LLVM $(llvm_major "$toolchain")) with $clang"

# The library as bitcode. --target keeps RUSTFLAGS off build scripts; only
# the static library (a cdylib would need the system linker to read bitcode).
RUSTFLAGS="-Clinker-plugin-lto" cargo "+$toolchain" rustc --release -p stockade-ffi --locked \
    --crate-type staticlib --target "$target" --target-dir target/c-lto
lib=target/c-lto/$target/release/libstockade.a

# ThinLTO on both sides: rustc's bitcode carries ThinLTO summaries, and lld
# merges a full-LTO module (-flto) with them only at the ThinLTO step, too
# late to inline across the languages.
# ThinLTO imports only functions below 100 IR instructions into another
# module by default; some exported functions are larger (their fast path
# is small, their out-of-line slow path is not imported).
LTO_CFLAGS=(-O2 -flto=thin --target="$target" -fuse-ld=lld -Wl,-mllvm,-import-instr-limit=400)
for t in test_breaker test_core test_limiter_bulkhead; do
    "$clang" -std=c99 -Wall -Wextra -Wpedantic -Werror "${LTO_CFLAGS[@]}" -Iinclude "tests/c/$t.c" "$lib" \
        -lpthread -ldl -lm -o "$build/$t.lto"
    "$build/$t.lto"
done
"$clang" -std=c99 -Wall -Wextra -Wpedantic -Werror "${LTO_CFLAGS[@]}" -Iinclude tests/c/bench.c "$lib" \
    -lpthread -ldl -lm -o "$build/bench-lto"

# The inlining happened: these loops call no stockade_ function.
objdump_tool=$(command -v objdump || command -v llvm-objdump)
for op in op_deadline op_backoff op_breaker_call; do
    calls=$("$objdump_tool" -d --no-show-raw-insn "$build/bench-lto" |
        awk -v f="<$op>:" '$2==f{on=1; next} on && /^$/{on=0} on' | grep -E 'call.*<stockade_' || true)
    if [ -n "$calls" ]; then
        echo "$calls"
        echo "cross-language LTO did not inline the core-tier call in $op"
        exit 1
    fi
done
echo "$build/bench-lto"
