#!/usr/bin/env bash
# Reports the flash a firmware pays for the core tier: links the no_std
# libstockade.a for thumbv7em with --gc-sections, keeping every exported
# stockade_ function (what a program calling all of them links), and prints
# the ELF's .text/.rodata sizes. Also lists the archive's own members.
# Usage: tests/c/firmware-size.sh path/to/libstockade.a
set -euo pipefail
lib=$1
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
lld=$sysroot/lib/rustlib/$host/bin/rust-lld
size_tool=$(command -v llvm-size || command -v size || true)
nm_tool=$(command -v llvm-nm || command -v nm)
[ -x "$lld" ] || { echo "rust-lld not found at $lld"; exit 1; }
[ -n "$size_tool" ] || { echo "no llvm-size or size: apt-get install llvm (or binutils)"; exit 1; }
out=$(dirname "$lib")/stockade-firmware.elf
keep=$({ "$nm_tool" --defined-only "$lib" 2>/dev/null || true; } | awk '$2=="T" && $3 ~ /^stockade_/ {print "--undefined=" $3}' | sort -u)
n=$(echo "$keep" | grep -c . || true)
"$lld" -flavor gnu --gc-sections --entry=0 $keep "$lib" -o "$out"
text=$("$size_tool" -A "$out" | awk '$1==".text" {print $2}')
rodata=$("$size_tool" -A "$out" | awk '$1==".rodata" {print $2}')
echo "firmware (thumbv7em-none-eabihf, no_std, all $n core-tier functions kept, --gc-sections):"
echo "  .text   $text bytes"
echo "  .rodata $rodata bytes"

# A typical firmware: a circuit breaker and a rate limiter on a tick clock,
# with the status strings (what tests/c/test_nomalloc.c-like code calls).
typical=$(echo "$keep" | grep -E -- '--undefined=stockade_(breaker|limiter|tick_clock|status_str|config_option_str|config_problem_str)' || true)
m=$(echo "$typical" | grep -c . || true)
"$lld" -flavor gnu --gc-sections --entry=0 $typical "$lib" -o "$out.typical"
text_t=$("$size_tool" -A "$out.typical" | awk '$1==".text" {print $2}')
rodata_t=$("$size_tool" -A "$out.typical" | awk '$1==".rodata" {print $2}')
echo "firmware, typical use (breaker + limiter + tick clock + status strings: $m functions):"
echo "  .text   $text_t bytes"
echo "  .rodata $rodata_t bytes"
# No formatting machinery in firmware: config errors carry numbers, not text.
if "$nm_tool" -C "$out" 2>/dev/null | grep -q 'core::fmt::Formatter'; then
    "$nm_tool" -C --size-sort -S "$out" | grep 'core::fmt' | tail -5
    echo "core::fmt is linked into the firmware build"; exit 1
fi
# Budget: guards against regressions (the rest is the core's machines).
[ "${text_t:-0}" -le $((18 * 1024)) ] || { echo "typical firmware .text above 18 KiB"; exit 1; }
