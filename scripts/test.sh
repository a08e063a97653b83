#!/usr/bin/env bash
# Runs every test Stockade has, on a fresh machine: installs what it needs first.
# Usage: scripts/test.sh            (everything; what CI runs)
#        STOCKADE_SKIP_LOOM=1 scripts/test.sh   (skip the loom models)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components and embedded targets"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf >/dev/null

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTFLAGS="--cfg stockade_force_32bit" CARGO_TARGET_DIR=target/layout32 \
    cargo clippy -p stockade --all-targets --locked -- -D warnings

step "docs build without warnings"
RUSTDOCFLAGS="-D warnings" cargo doc -p stockade --no-deps --locked

step "tests, 64-bit state layout"
cargo test --workspace --exclude stockade-demo --locked

step "demo: deterministic, every number adds up, the picture is drawn"
cargo test -p stockade-demo --locked

step "tests, 32-bit state layout forced on this host"
# Unit, property and integration tests; the doc examples show the host's
# 64-bit layout (exact nanoseconds), while the 32-bit layout's coarser ticks
# are documented and asserted by the tests themselves.
RUSTFLAGS="--cfg stockade_force_32bit" CARGO_TARGET_DIR=target/layout32 \
    cargo test -p stockade --lib --tests --locked

step "no_std builds for firmware targets"
# Cortex-M4F: native 32-bit CAS, no 64-bit atomics -> the 32-bit layout.
cargo build -p stockade --no-default-features --target thumbv7em-none-eabihf --locked
# Cortex-M0 and RV32IMC have no CAS at all: the firmware picks portable-atomic's backend.
cargo build -p stockade --no-default-features --features critical-section --target thumbv6m-none-eabi --locked
cargo build -p stockade --no-default-features --features critical-section --target riscv32imc-unknown-none-elf --locked

step "C ABI (ffi/): header drift, C and C++ tests under sanitizers and valgrind, no-malloc core tier, firmware size, install + pkg-config/CMake"
tests/c/run.sh

if [ "${STOCKADE_SKIP_LOOM:-0}" != 1 ]; then
    step "loom model checking (bounded preemptions)"
    loom_tests=()
    for f in core/tests/loom_*.rs; do loom_tests+=(--test "$(basename "$f" .rs)"); done
    RUSTFLAGS="--cfg stockade_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
        cargo test -p stockade --profile loom --locked "${loom_tests[@]}"
fi

step "all tests passed"
