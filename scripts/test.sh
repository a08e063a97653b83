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
RUSTDOCFLAGS="-D warnings" cargo doc -p stockade --no-deps --features shared-memory --locked

step "tests, 64-bit state layout (shared memory across real processes included)"
cargo test --workspace --exclude stockade-demo --features stockade/shared-memory --locked

step "demo: deterministic, every number adds up, the picture is drawn"
cargo test -p stockade-demo --locked

step "tests, 32-bit state layout forced on this host"
# Unit, property and integration tests; the doc examples show the host's
# 64-bit layout (exact nanoseconds), while the 32-bit layout's coarser ticks
# are documented and asserted by the tests themselves.
RUSTFLAGS="--cfg stockade_force_32bit" CARGO_TARGET_DIR=target/layout32 \
    cargo test -p stockade --lib --tests --features shared-memory --locked

step "Python package: pip install ./python into its own virtualenv, then pytest"
# Needs python3 >= 3.9 with venv; the virtualenv and the build are cached
# under target/ (python/run-tests.sh).
python/run-tests.sh -q

step "no_std builds for firmware targets"
# Cortex-M4F: native 32-bit CAS, no 64-bit atomics -> the 32-bit layout.
cargo build -p stockade --no-default-features --target thumbv7em-none-eabihf --locked
# Cortex-M0 and RV32IMC have no CAS at all: the firmware picks portable-atomic's backend.
cargo build -p stockade --no-default-features --features critical-section --target thumbv6m-none-eabi --locked
cargo build -p stockade --no-default-features --features critical-section --target riscv32imc-unknown-none-elf --locked
# The library never switches on portable-atomic's lock-based fallback by itself.
pa_features=$(cargo tree -p stockade --no-default-features --target thumbv7em-none-eabihf \
    -e normal,features -i portable-atomic --locked)
if grep -q 'portable-atomic feature "fallback"' <<<"$pa_features"; then
    echo "error: a plain no_std build enables portable-atomic/fallback:" >&2
    echo "$pa_features" >&2
    exit 1
fi

step "firmware footprint: breaker + limiter within the budget"
# Prints the README's "Firmware footprint" table and fails over budget or
# if formatting, panic messages or 64-bit division get linked.
scripts/firmware-size.sh --check

step "MSRV: the library builds on the declared rust-version"
# The library only (any features); tests, examples and benches may use newer Rust.
msrv=$(sed -n 's/^rust-version = "\([0-9.]*\)"$/\1/p' Cargo.toml)
[[ $msrv =~ ^[0-9]+\.[0-9]+$ ]] && msrv="$msrv.0"
rustup toolchain install "$msrv" --profile minimal >/dev/null
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" build -p stockade --locked
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" build -p stockade --features shared-memory --locked
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" build -p stockade --no-default-features --locked

step "the crate package has its README, licences and changelog"
package_files=$(cargo package -p stockade --list --locked --allow-dirty)
for f in README.md LICENSE-MIT LICENSE-APACHE CHANGELOG.md; do
    if ! grep -qx "$f" <<<"$package_files"; then
        echo "error: $f is missing from the stockade package" >&2
        exit 1
    fi
done

step "C ABI (ffi/): header drift, C and C++ tests under sanitizers and valgrind, no-malloc core tier, firmware size, install + pkg-config/CMake"
tests/c/run.sh

step "across languages: a Python app's forked workers and a C program share one limit"
tests/cross/run.sh

if [ "${STOCKADE_SKIP_LOOM:-0}" != 1 ]; then
    step "loom model checking (bounded preemptions)"
    loom_tests=()
    for f in core/tests/loom_*.rs; do loom_tests+=(--test "$(basename "$f" .rs)"); done
    RUSTFLAGS="--cfg stockade_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
        cargo test -p stockade --profile loom --locked "${loom_tests[@]}"
    # The owner ledger's models live beside its private steps (an owner
    # stopped after each step of an acquire or a release).
    RUSTFLAGS="--cfg stockade_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
        cargo test -p stockade --profile loom --locked --lib owners::loom_models
fi

step "all tests passed"
