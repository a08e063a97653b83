#!/usr/bin/env bash
# The flash a C firmware pays for the core tier: links the no_std
# libstockade.a for thumbv7em with rust-lld and --gc-sections, keeping only
# the exported functions a program calls (what a firmware's own link pulls
# out of the archive), and prints the ELF's .text/.rodata sizes.
#
# Usage: tests/c/firmware-size.sh LIB FIRMWARE.c
#            Everything kept, then the C firmware FIRMWARE.c (the README's
#            firmware example: breaker + strict limiter + tick clock):
#            Stockade's .text for the functions it calls, failing over
#            BUDGET bytes or if core::fmt, f64 or 64-bit division routines
#            are linked anywhere in it.
#        tests/c/firmware-size.sh --table LIB FIRMWARE.c
#            A Markdown table of what each exported function costs alone,
#            and the C firmware's total (the README's "Firmware cost" table
#            is this output; tests/c/run.sh checks that it is current).
set -euo pipefail

# Stockade's .text in the C firmware, at most: 6 KiB (the README's
# example: the lean breaker constructor, the limiter planned at compile
# time; see the README's "Firmware cost").
BUDGET=6144

table=0
if [ "${1:-}" = --table ]; then table=1; shift; fi
lib=$1
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
lld=$sysroot/lib/rustlib/$host/bin/rust-lld
size_tool=$(command -v llvm-size || command -v size || true)
nm_tool=$(command -v llvm-nm || command -v nm)
[ -x "$lld" ] || { echo "rust-lld not found at $lld"; exit 1; }
[ -n "$size_tool" ] || { echo "no llvm-size or size: apt-get install llvm (or binutils)"; exit 1; }
out=$(dirname "$lib")/stockade-firmware.elf

# link OUT FUNCTION...: an ELF of what those functions reach.
link() {
    local elf=$1
    shift
    "$lld" -flavor gnu --gc-sections --entry=0 $(printf -- '--undefined=%s ' "$@") "$lib" -o "$elf"
}
section() { "$size_tool" -A "$2" | awk -v s="$1" '$1 == s { print $2; f = 1 } END { if (!f) print 0 }'; }

firmware_c=$2
# The C firmware: the functions its source calls.
called=$(grep -oE '\bstockade_[a-z0-9_]+\(' "$firmware_c" | tr -d '(' | sort -u)
[ -n "$called" ] || { echo "$firmware_c calls no stockade_ function"; exit 1; }

exported=$({ "$nm_tool" --defined-only "$lib" 2>/dev/null || true; } | awk '$2=="T" && $3 ~ /^stockade_/ {print $3}' | sort -u)

if [ "$table" = 1 ]; then
    echo "| function | \`.text\` bytes | \`.rodata\` bytes |"
    echo "| --- | ---: | ---: |"
    for fn in $exported; do
        link "$out.one" "$fn"
        printf '| `%s` | %d | %d |\n' "$fn" "$(section .text "$out.one")" "$(section .rodata "$out.one")"
    done
    link "$out.firmware" $called
    printf '| **the firmware example above** (%d functions) | %d | %d |\n' "$(echo "$called" | grep -c .)" \
        "$(section .text "$out.firmware")" "$(section .rodata "$out.firmware")"
    exit 0
fi

n=$(echo "$exported" | grep -c . || true)
link "$out" $exported
echo "firmware (thumbv7em-none-eabihf, no_std, all $n core-tier functions kept, --gc-sections):"
echo "  .text   $(section .text "$out") bytes"
echo "  .rodata $(section .rodata "$out") bytes"

for fn in $called; do
    echo "$exported" | grep -qx "$fn" || { echo "$firmware_c calls $fn, not in $lib"; exit 1; }
done
link "$out.firmware" $called
text=$(section .text "$out.firmware")
rodata=$(section .rodata "$out.firmware")
echo "C firmware ($(basename "$firmware_c"): $(echo "$called" | tr '\n' ' '))"
echo "  .text   $text bytes (budget $BUDGET)"
echo "  .rodata $rodata bytes"

# The per-call part: the firmware minus its set-up functions (_init, _init_lean, _init_planned,
# _config_default), what runs in its loop.
calls=$(echo "$called" | grep -vE '_(init|init_lean|init_planned|config_default)$' || true)
if [ -n "$calls" ]; then
    link "$out.calls" $calls
    echo "  of which per call ($(echo "$calls" | tr '\n' ' ')): .text $(section .text "$out.calls") bytes"
fi

# What the firmware must not link: formatting, double-precision floating
# point or 64-bit division, anywhere (each is a kilobyte or more of library
# code on Cortex-M, and slow); building the machines divides 64-bit numbers
# with the core's own shift-and-subtract loop.
fail=0
linked=$("$nm_tool" -C "$out.firmware" 2>/dev/null |
    grep -E 'core::fmt|__aeabi_d[a-z]+|__aeabi_f2d|__aeabi_[ul]2d|__aeabi_uldivmod|__aeabi_ldivmod|__udivmoddi4|__udivti3|u64_div_rem' || true)
if [ -n "$linked" ]; then
    echo "$linked"
    echo "the C firmware links formatting, double-precision floating point or 64-bit division"
    fail=1
fi
if [ "$text" -gt "$BUDGET" ]; then
    "$nm_tool" -C --size-sort -S "$out.firmware" | tail -15
    echo "the C firmware's Stockade .text ($text bytes) is over the $BUDGET-byte budget"
    fail=1
fi
exit "$fail"
