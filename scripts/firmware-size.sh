#!/usr/bin/env bash
# The firmware footprint: builds the size probe (`firmware/size-probe`) for a
# Cortex-M4F (thumbv7em-none-eabihf) with the `firmware` profile (opt-level
# "s", fat LTO, panic = abort, one codegen unit) in four variants and prints
# a Markdown table of its sections. The README's "Firmware footprint"
# section is this script's output.
#
# Usage: scripts/firmware-size.sh            (print the table)
#        scripts/firmware-size.sh --check    (also fail if the pair's .text
#                                             exceeds the budget below)
set -euo pipefail
cd "$(dirname "$0")/.."

# The budget for breaker + limiter (bytes of .text, the empty program's
# included): 3.5 KiB.
BUDGET=3584
TARGET=thumbv7em-none-eabihf

rustup target add "$TARGET" >/dev/null 2>&1 || true
# llvm-size reads ARM ELF whatever the host: Debian's `llvm` package, or
# rustup's llvm-tools (`rust-size` via cargo-binutils is the same program).
size_tool=""
for candidate in llvm-size arm-none-eabi-size; do
    if command -v "$candidate" >/dev/null; then size_tool=$candidate; break; fi
done
if [ -z "$size_tool" ]; then
    sysroot=$(rustc --print sysroot)
    rustup component add llvm-tools >/dev/null 2>&1 || rustup component add llvm-tools-preview >/dev/null 2>&1 || true
    found=$(find "$sysroot/lib/rustlib" -name llvm-size -type f 2>/dev/null | head -n 1)
    if [ -n "$found" ]; then
        size_tool=$found
    elif command -v apt-get >/dev/null && { apt-get install -y llvm >/dev/null 2>&1 || apt-get install -y binutils-arm-none-eabi >/dev/null 2>&1; }; then
        size_tool=$(command -v llvm-size || command -v arm-none-eabi-size)
    else
        echo "error: no llvm-size or arm-none-eabi-size (install llvm, binutils-arm-none-eabi, or rustup's llvm-tools)" >&2
        exit 1
    fi
fi

elf=${CARGO_TARGET_DIR:-target}/$TARGET/firmware/stockade-size-probe
out=target/firmware-size
mkdir -p "$out"

# section NAME FILE: the section's size in bytes (0 if absent).
section() {
    "$size_tool" -A "$2" | awk -v s="$1" '$1 == s { print $2; found = 1 } END { if (!found) print 0 }'
}

declare -A text data bss
for variant in empty breaker limiter pair; do
    case $variant in
        empty) features="" ;;
        pair) features="breaker,limiter" ;;
        *) features=$variant ;;
    esac
    cargo build -q -p stockade-size-probe --target "$TARGET" --profile firmware \
        --locked --features "$features" >&2
    cp "$elf" "$out/$variant.elf"
    # .text holds code and (with lld's default layout) the read-only data
    # next to it; .rodata is counted with it if the linker emits one.
    text[$variant]=$(( $(section .text "$out/$variant.elf") + $(section .rodata "$out/$variant.elf") ))
    data[$variant]=$(section .data "$out/$variant.elf")
    bss[$variant]=$(section .bss "$out/$variant.elf")
done

kib() { awk -v b="$1" 'BEGIN { printf "%.2f KiB", b / 1024 }'; }
row() {
    printf '| %s | %d (%s) | %d | %d | %d |\n' "$1" "${text[$2]}" "$(kib "${text[$2]}")" \
        "$(( ${text[$2]} - ${text[empty]} ))" "${data[$2]}" "${bss[$2]}"
}
echo "| firmware (\`$TARGET\`, profile \`firmware\`) | \`.text\` bytes | minus the empty program | \`.data\` | \`.bss\` |"
echo "| --- | ---: | ---: | ---: | ---: |"
row "empty program (its loop; the panic handler is never reached)" empty
row "one \`CircuitBreaker\`" breaker
row "one strict \`RateLimiter\`" limiter
row "breaker + limiter" pair
echo
echo "Budget for breaker + limiter: $BUDGET bytes of \`.text\` ($(kib $BUDGET)); measured with $(basename "$size_tool")."

# What the firmware must not link: 64-bit division routines, formatting,
# panic messages.
nm_tool=$(dirname "$(command -v "$size_tool")")/llvm-nm
[ -x "$nm_tool" ] || nm_tool=$(command -v llvm-nm || command -v arm-none-eabi-nm || true)
forbidden='__aeabi_uldivmod|__udivmoddi4|__udivti3|__aeabi_ldivmod|core::fmt|panic_fmt|panic_bounds_check|panic_const'
if [ -n "$nm_tool" ]; then
    linked=$("$nm_tool" --demangle "$out/pair.elf" | grep -E "$forbidden" || true)
    if [ -n "$linked" ]; then
        echo "error: the pair links 64-bit division, formatting or panic machinery:" >&2
        echo "$linked" >&2
        [ "${1:-}" = --check ] && exit 1
    fi
fi

if [ "${1:-}" = --check ] && [ "${text[pair]}" -gt "$BUDGET" ]; then
    echo "error: breaker + limiter take ${text[pair]} bytes of .text, over the $BUDGET-byte budget" >&2
    exit 1
fi
