//! Rate-limiter check on the grant path.
//!
//! Group `limiter`, at 1 and 2 threads on one shared limiter:
//! - `stockade-monotonic`: core `RateLimiter::try_acquire(&MonotonicClock)`;
//! - `stockade-manual`: the same with a `ManualClock` (no clock cost);
//! - `stockade-coarse`: the same with a `CoarseClock` kept fresh by its
//!   upkeep thread at 1 ms (one atomic load per read; the thread runs only
//!   during this implementation's measurements);
//! - `governor-default`: `governor::RateLimiter::direct(quota).check()` with
//!   governor's default clock (quanta's TSC clock);
//! - `governor-fake`: the same with governor's `FakeRelativeClock`.
//!
//! The quota (10^9 per second, burst 10^9) grants every call, and each
//! criterion sample gets a fresh limiter, so the frozen clocks never run
//! out of burst: this measures the grant path. A check before the
//! measurements and a count of refusals during them assert that.
//!
//! Target (issue): `stockade-monotonic` ≤ 1.0 × `governor-default`, checked
//! on the interleaved comparison ([`stockade_bench::paired`]) that runs
//! after the criterion group.

use core::hint::black_box;
use core::num::NonZeroU32;
use core::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter as Governor};
use stockade::clock::{CoarseClock, ManualClock, MonotonicClock};
use stockade::limiter::{RateLimiter, RateLimiterConfig};
use stockade_bench::{assert_no_rejections, bench_threads, note_rejection};

/// Permits per second (and burst): every call is granted.
const RATE: u32 = 1_000_000_000;

fn stockade_limiter() -> RateLimiter {
    RateLimiter::new(
        RateLimiterConfig::DEFAULT
            .with_requests_per_period(RATE)
            .with_period(Duration::from_secs(1)),
    )
    .expect("valid limiter config")
}

/// The coarse clock's resolution.
const COARSE_INTERVAL: Duration = Duration::from_millis(1);

fn quota() -> Quota {
    Quota::per_second(NonZeroU32::new(RATE).expect("non-zero"))
}

/// Every implementation grants a million calls in a row.
fn assert_grant_path() {
    const CALLS: usize = 1_000_000;
    let limiter = stockade_limiter();
    let clock = MonotonicClock::new();
    assert!((0..CALLS).all(|_| limiter.try_acquire(&clock).is_ok()));
    let limiter = stockade_limiter();
    let clock = ManualClock::new();
    assert!((0..CALLS).all(|_| limiter.try_acquire(&clock).is_ok()));
    let upkeep = CoarseClock::start_upkeep(COARSE_INTERVAL).expect("upkeep thread");
    let limiter = stockade_limiter();
    let clock = CoarseClock::new();
    assert!((0..CALLS).all(|_| limiter.try_acquire(&clock).is_ok()));
    drop(upkeep);
    let governor = Governor::direct(quota());
    assert!((0..CALLS).all(|_| governor.check().is_ok()));
    let governor = Governor::direct_with_clock(quota(), FakeRelativeClock::default());
    assert!((0..CALLS).all(|_| governor.check().is_ok()));
}

fn limiter(c: &mut Criterion) {
    assert_grant_path();
    let mut group = c.benchmark_group("limiter");
    bench_threads(
        &mut group,
        "stockade-monotonic",
        || (stockade_limiter(), MonotonicClock::new()),
        |(limiter, clock)| {
            if black_box(limiter.try_acquire(clock)).is_err() {
                note_rejection();
            }
        },
    );
    bench_threads(
        &mut group,
        "stockade-manual",
        || (stockade_limiter(), ManualClock::new()),
        |(limiter, clock)| {
            if black_box(limiter.try_acquire(clock)).is_err() {
                note_rejection();
            }
        },
    );
    let upkeep = CoarseClock::start_upkeep(COARSE_INTERVAL).expect("upkeep thread");
    bench_threads(
        &mut group,
        "stockade-coarse",
        || (stockade_limiter(), CoarseClock::new()),
        |(limiter, clock)| {
            if black_box(limiter.try_acquire(clock)).is_err() {
                note_rejection();
            }
        },
    );
    drop(upkeep);
    bench_threads(
        &mut group,
        "governor-default",
        || Governor::direct(quota()),
        |governor| {
            if black_box(governor.check()).is_err() {
                note_rejection();
            }
        },
    );
    bench_threads(
        &mut group,
        "governor-fake",
        || Governor::direct_with_clock(quota(), FakeRelativeClock::default()),
        |governor| {
            if black_box(governor.check()).is_err() {
                note_rejection();
            }
        },
    );
    group.finish();
    let (ours, clock) = (stockade_limiter(), MonotonicClock::new());
    let governor = Governor::direct(quota());
    stockade_bench::paired(
        "limiter",
        "stockade-monotonic",
        || {
            if black_box(ours.try_acquire(&clock)).is_err() {
                note_rejection();
            }
        },
        "governor-default",
        || {
            if black_box(governor.check()).is_err() {
                note_rejection();
            }
        },
    );
    assert_no_rejections("limiter");
}

criterion_group! {
    name = benches;
    config = stockade_bench::criterion();
    targets = limiter
}
criterion_main!(benches);
