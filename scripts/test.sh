#!/usr/bin/env bash
# Runs every test Stockade has, on a fresh machine: installs what it needs first.
# Usage: scripts/test.sh            (everything; what CI runs)
#        STOCKADE_SKIP_LOOM=1 scripts/test.sh   (skip the loom models)
#        STOCKADE_SLOW=1 scripts/test.sh        (the nightly tools' slow tiers)
#
# The nightly tools (the last steps; they install the nightly toolchain's
# miri and rust-src components and cargo-fuzz under target/tools themselves)
# run in two tiers:
#   fast (default)   Miri with strict provenance over the C ABI crate's unit
#                    tests and a subset of the core's (MIRI_CORE_FILTERS
#                    below); ThreadSanitizer over the blocking layer's queue,
#                    timeout and dispose tests and the worker pool's unit
#                    tests; each fuzz target for 5 s.
#   STOCKADE_SLOW=1  Miri over every core and C ABI unit test;
#                    ThreadSanitizer over every core test (unit and
#                    integration) but tests/fork.rs; each fuzz target for
#                    10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

slow=${STOCKADE_SLOW:-0}

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components and embedded targets"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf >/dev/null

step "redis-server for the Redis tests (Debian's package, installed if missing)"
# The tests start their own servers on free loopback ports, without
# persistence, and kill them afterwards (core/tests/common/redis_server.rs,
# python/tests/redis_server.py).
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi
redis-server --version

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Every optional part together (telemetry, the async forms with both
# timers, the tower layers), each of `metrics`, `tracing` and `async` alone, and the bench
# crate's instrumented build.
cargo clippy -p stockade --all-targets --features shared-memory,redis,metrics,tracing,tokio,async-io,tower --locked -- -D warnings
cargo clippy -p stockade --features metrics --locked -- -D warnings
cargo clippy -p stockade --features tracing --locked -- -D warnings
cargo clippy -p stockade --features async --locked -- -D warnings
cargo clippy -p stockade-bench --all-targets --features telemetry --locked -- -D warnings
RUSTFLAGS="--cfg stockade_force_32bit" CARGO_TARGET_DIR=target/layout32 \
    cargo clippy -p stockade --all-targets --locked -- -D warnings

step "docs build without warnings"
RUSTDOCFLAGS="-D warnings" cargo doc -p stockade --no-deps --features shared-memory,redis,metrics,tracing,tokio,async-io,tower --locked

step "tests, 64-bit state layout (shared memory across real processes, Redis, telemetry, the async forms on tokio, and the tower layers with the axum example's loopback load test included)"
cargo test --workspace --exclude stockade-demo \
    --features stockade/shared-memory,stockade/redis,stockade/metrics,stockade/tracing,stockade/tokio,stockade/async-io,stockade/tower --locked

step "demo: deterministic, every number adds up, the picture is drawn"
cargo test -p stockade-demo --locked

step "no_std core without its optional parts (the breaker's failure-rate window off)"
cargo test -p stockade --no-default-features --lib --locked

step "tests, 32-bit state layout forced on this host"
# Unit, property and integration tests; the doc examples show the host's
# 64-bit layout (exact nanoseconds), while the 32-bit layout's coarser ticks
# are documented and asserted by the tests themselves.
RUSTFLAGS="--cfg stockade_force_32bit" CARGO_TARGET_DIR=target/layout32 \
    cargo test -p stockade --lib --tests --features shared-memory,tokio --locked

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
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" build -p stockade --features redis --locked
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" build -p stockade --features async --locked
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" build -p stockade --features tokio --locked
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" build -p stockade --features async-io --locked
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" build -p stockade --features tower --locked
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" build -p stockade \
    --features shared-memory,redis,metrics,tracing,tokio,async-io,tower --locked
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

step "across languages: a Python app's forked workers and a C program share one limit (shared memory, then Redis)"
tests/cross/run.sh

if [ "${STOCKADE_SKIP_LOOM:-0}" != 1 ]; then
    step "loom model checking (bounded preemptions)"
    loom_tests=()
    for f in core/tests/loom_*.rs; do loom_tests+=(--test "$(basename "$f" .rs)"); done
    RUSTFLAGS="--cfg stockade_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
        cargo test -p stockade --profile loom --features async --locked "${loom_tests[@]}"
    # The owner ledger's models live beside its private steps (an owner
    # stopped after each step of an acquire or a release).
    RUSTFLAGS="--cfg stockade_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
        cargo test -p stockade --profile loom --locked --lib owners::loom_models
fi

step "nightly tools: Miri, ThreadSanitizer's rust-src, cargo-fuzz"
# The nightly the machine has (installed only if missing: an existing one
# is not updated, so caches stay valid).
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
rustup component add --toolchain nightly miri rust-src >/dev/null 2>&1
cargo install cargo-fuzz --version 0.13.2 --locked --root target/tools --quiet

step "Miri, strict provenance: C ABI unit tests and the core's (STOCKADE_SLOW=1: all of the core's)"
# No -Zmiri-disable-isolation: under Miri the clock reads Instant, which
# isolation emulates. The core's fast-tier subset (48 of its 177 unit
# tests, under a minute once built): the clock's tick-clock and
# Instant-conversion tests (not the nested-interrupt simulation, nor the
# ones reading the clock thousands of times or across threads), the
# blocking layer's unit tests (threads, the worker pool, the timer) and
# the bulkhead's (owners' ledger, permits). The slow tier runs every core
# unit test (smaller counts under cfg(miri) where a test loops; one
# ignored, coarse_clock_ticks_with_upkeep_and_is_precise_without: its
# upkeep thread's 20 ms ticks against real sleeps are timing, which Miri's
# emulated clock does not reproduce): about 3 minutes once built.
MIRI_CORE_FILTERS=(clock::tests:: clock::monotonic::tests::to_instant
    clock::monotonic::tests::uses_the_counter blocking:: bulkhead::
    --skip clock::tests::tick_clock_exact_under_random_nested_interrupts)
export MIRIFLAGS="-Zmiri-strict-provenance"
cargo +nightly miri test -p stockade-ffi --lib --locked
if [ "$slow" = 1 ]; then
    cargo +nightly miri test -p stockade --lib --locked
else
    cargo +nightly miri test -p stockade --lib --locked -- "${MIRI_CORE_FILTERS[@]}"
fi
unset MIRIFLAGS

step "ThreadSanitizer: the blocking layer's queues, timeouts, hedging races, dispose and worker pool (STOCKADE_SLOW=1: every core test)"
# TSan needs the standard library instrumented too: -Zbuild-std, with an
# explicit target so RUSTFLAGS does not reach build scripts. RUST_BACKTRACE=0:
# symbolising a panic's backtrace under TSan takes longer (about 15 s) than
# the tests' 10 s watchdogs, and some tests panic on purpose.
tsan=(env RUSTFLAGS="-Zsanitizer=thread" TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" RUST_BACKTRACE=0
    CARGO_TARGET_DIR=target/tsan cargo +nightly test -Zbuild-std
    --target x86_64-unknown-linux-gnu -p stockade --locked)
if [ "$slow" = 1 ]; then
    # Every core test but tests/fork.rs and tests/redis_breaker.rs (their
    # children start threads after a fork of a multi-threaded parent, which
    # TSan does not support) and the loom models (empty without --cfg
    # stockade_loom); shared memory across real processes included.
    tsan_tests=(--features shared-memory,tokio --lib)
    for f in core/tests/*.rs; do
        name=$(basename "$f" .rs)
        [[ $name == fork || $name == redis_breaker || $name == loom_* ]] || tsan_tests+=(--test "$name")
    done
    "${tsan[@]}" "${tsan_tests[@]}"
else
    "${tsan[@]}" --test blocking_bulkhead --test blocking_limiter --test blocking_timeout --test blocking_hedging
    # Tasks and threads in one bulkhead queue.
    "${tsan[@]}" --features tokio --test async_bulkhead
    "${tsan[@]}" --lib -- blocking::
fi

step "fuzzing (cargo-fuzz): the C ABI core tier's operations, every pattern's config validation, Fallback and Hedging"
# fuzz/ is its own workspace (libFuzzer, nightly). Corpora and crash
# artifacts stay under fuzz/ (git-ignored); a crash fails this step.
fuzz_secs=5
[ "$slow" = 1 ] && fuzz_secs=600
for target in ffi_core_ops ffi_config ffi_fallback_hedging; do
    PATH="$PWD/target/tools/bin:$PATH" cargo +nightly fuzz run --target-dir target/fuzz "$target" -- \
        -max_total_time="$fuzz_secs"
done

step "all tests passed"
