//! Circuit breaker, closed path: a healthy call through a closed breaker.
//!
//! Group `breaker`, at 1 and 2 threads on one shared breaker:
//! - `stockade`: the core state machine driven directly:
//!   `try_acquire(&clock)`, the call, `permit.success(&clock)` (a closed
//!   breaker reads no clock) — what firmware and the bindings pay;
//! - `stockade-execute`: the blocking `CircuitBreaker::execute` (adds the
//!   metrics counter and the transition detection);
//! - `failsafe`: `StateMachine::call` with failsafe's default config;
//! - `recloser`: `Recloser::call` with the default config.
//!
//! The call is a trivial closure returning `Ok`.
//!
//! Target: Stockade ≤ 1/4 of recloser, checked on the interleaved
//! comparisons ([`stockade_bench::paired`]) that run after the group.

use core::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::CircuitBreaker as _;
use recloser::Recloser;
use stockade::breaker::{BreakerConfig, CircuitBreaker};
use stockade::clock::MonotonicClock;
use stockade_bench::{assert_no_rejections, bench_threads, note_rejection};

/// The protected call: succeeds at once.
///
/// Out of line, so no implementation can fold it away, and with a result
/// that fits one register: a 16-byte result (say `Result<u64, &str>`)
/// comes back through memory in two 8-byte stores, and the harness's copy
/// of it into the returned `Option` then reads 16 bytes at once, a
/// store-forwarding stall of about 4 ns on this machine that would be
/// added to every implementation alike and belongs to none of them.
#[inline(never)]
fn healthy_call() -> Result<u32, u32> {
    Ok(black_box(42))
}

/// A call through the core breaker.
fn call_through_core<T, E>(
    breaker: &CircuitBreaker,
    clock: &MonotonicClock,
    call: impl FnOnce() -> Result<T, E>,
) -> Option<Result<T, E>> {
    let permit = breaker.try_acquire(clock).ok()?;
    let result = call();
    let _transition = match &result {
        Ok(_) => permit.success(clock),
        Err(_) => permit.failure(clock),
    };
    Some(result)
}

fn breaker(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker");
    bench_threads(
        &mut group,
        "stockade",
        || {
            let breaker = CircuitBreaker::new(BreakerConfig::DEFAULT).expect("valid config");
            (breaker, MonotonicClock::new())
        },
        |(breaker, clock)| {
            if black_box(call_through_core(breaker, clock, healthy_call)).is_none() {
                note_rejection();
            }
        },
    );
    // The blocking layer's `CircuitBreaker::execute`, as a program calls it.
    bench_threads(
        &mut group,
        "stockade-execute",
        || {
            stockade::blocking::CircuitBreaker::unregistered("bench", BreakerConfig::DEFAULT)
                .expect("valid config")
        },
        |breaker| {
            if black_box(breaker.execute(healthy_call)).is_err() {
                note_rejection();
            }
        },
    );
    bench_threads(
        &mut group,
        "failsafe",
        || failsafe::Config::new().build(),
        |breaker| {
            if black_box(breaker.call(healthy_call)).is_err() {
                note_rejection();
            }
        },
    );
    bench_threads(&mut group, "recloser", Recloser::default, |breaker| {
        if black_box(breaker.call(healthy_call)).is_err() {
            note_rejection();
        }
    });
    group.finish();
    let (core, clock) = (
        CircuitBreaker::new(BreakerConfig::DEFAULT).expect("valid config"),
        MonotonicClock::new(),
    );
    let blocking =
        stockade::blocking::CircuitBreaker::unregistered("paired", BreakerConfig::DEFAULT)
            .expect("valid config");
    let recloser = Recloser::default();
    let through_recloser = || {
        if black_box(recloser.call(healthy_call)).is_err() {
            note_rejection();
        }
    };
    stockade_bench::paired(
        "breaker",
        "stockade",
        || {
            if black_box(call_through_core(&core, &clock, healthy_call)).is_none() {
                note_rejection();
            }
        },
        "recloser",
        through_recloser,
    );
    stockade_bench::paired(
        "breaker",
        "stockade-execute",
        || {
            if black_box(blocking.execute(healthy_call)).is_err() {
                note_rejection();
            }
        },
        "recloser",
        through_recloser,
    );
    assert_no_rejections("breaker");
}

criterion_group! {
    name = benches;
    config = stockade_bench::criterion();
    targets = breaker
}
criterion_main!(benches);
