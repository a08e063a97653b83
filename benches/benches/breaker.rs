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
//! Targets (issue): Stockade ≤ 1/3 of recloser and ≤ 1/20 of failsafe.

use core::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::CircuitBreaker as _;
use recloser::Recloser;
use stockade::breaker::{BreakerConfig, CircuitBreaker};
use stockade::clock::MonotonicClock;
use stockade_bench::{assert_no_rejections, bench_threads, note_rejection};

/// The protected call: succeeds at once.
#[inline(never)]
fn healthy_call() -> Result<u64, &'static str> {
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
    assert_no_rejections("breaker");
}

criterion_group! {
    name = benches;
    config = stockade_bench::criterion();
    targets = breaker
}
criterion_main!(benches);
