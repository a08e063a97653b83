//! Retry of a call that succeeds the first time: the overhead a retry
//! policy adds to a healthy call.
//!
//! Group `retry`:
//! - `stockade`: until the blocking `Retry` lands, the loop a blocking
//!   retry runs over the core ([`retry_over_core`]): start a
//!   `Backoff::schedule(seed)`, make the call, return on success.
//! - `stockade-execute`: the blocking `Retry::execute`.
//! - `backon`: `BlockingRetryable::retry(ExponentialBuilder::default()).call()`.
//!
//! Both policies have the same settings (3 attempts, 1 s initial delay,
//! factor 2, no jitter); nothing sleeps, since nothing fails. Measured at
//! 1 and 2 threads sharing one policy. Target: `stockade-execute` ≤ 1.0×
//! backon, checked on the interleaved comparison
//! ([`stockade_bench::paired`]) after the group.

use core::cell::Cell;
use core::hint::black_box;

use backon::{BlockingRetryable, ExponentialBuilder};
use criterion::{Criterion, criterion_group, criterion_main};
use stockade::backoff::{Backoff, BackoffConfig};
use stockade::blocking::RetryConfig;
use stockade::clock::{Clock, MonotonicClock};
use stockade_bench::bench_threads;

/// The call being retried: succeeds at once. Its result fits one register
/// (see the breaker bench: a 16-byte result adds a store-forwarding stall
/// to every implementation alike).
#[inline(never)]
fn healthy_call() -> Result<u32, u32> {
    Ok(black_box(42))
}

/// The loop a blocking retry runs over the core `Backoff`: the clock is
/// read only once an attempt has failed.
fn retry_over_core<T, E>(
    backoff: &Backoff,
    seed: u64,
    mut call: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let clock = MonotonicClock::new();
    let mut schedule = backoff.schedule(seed);
    let mut started = None;
    loop {
        match call() {
            Ok(value) => return Ok(value),
            Err(error) => {
                let start = *started.get_or_insert_with(|| clock.now());
                let elapsed = clock.now().saturating_duration_since(start);
                match schedule.next_delay(elapsed) {
                    Some(delay) => std::thread::sleep(delay),
                    None => return Err(error),
                }
            }
        }
    }
}

/// A per-call jitter seed, as a real retry draws one (per thread, so the
/// two-thread runs share no counter).
fn next_seed() -> u64 {
    thread_local! { static SEED: Cell<u64> = const { Cell::new(0) }; }
    SEED.with(|s| {
        let seed = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(seed);
        seed
    })
}

fn retry(c: &mut Criterion) {
    let mut group = c.benchmark_group("retry");
    bench_threads(
        &mut group,
        "stockade",
        || Backoff::new(BackoffConfig::DEFAULT).unwrap_or_default(),
        |backoff| {
            black_box(retry_over_core(backoff, next_seed(), healthy_call).ok());
        },
    );
    // The blocking layer's `Retry::execute`, as a program calls it.
    bench_threads(
        &mut group,
        "stockade-execute",
        || {
            stockade::blocking::Retry::unregistered("bench", RetryConfig::DEFAULT)
                .expect("valid config")
        },
        |retry| {
            black_box(retry.execute(healthy_call).ok());
        },
    );
    bench_threads(
        &mut group,
        "backon",
        ExponentialBuilder::default,
        |builder| {
            black_box(healthy_call.retry(*builder).call().ok());
        },
    );
    group.finish();
    let retry = stockade::blocking::Retry::unregistered("paired", RetryConfig::DEFAULT)
        .expect("valid config");
    let builder = ExponentialBuilder::default();
    stockade_bench::paired(
        "retry",
        "stockade-execute",
        || {
            black_box(retry.execute(healthy_call).ok());
        },
        "backon",
        || {
            black_box(healthy_call.retry(builder).call().ok());
        },
    );
}

criterion_group! {
    name = benches;
    config = stockade_bench::criterion();
    targets = retry
}
criterion_main!(benches);
