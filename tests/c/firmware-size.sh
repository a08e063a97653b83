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
