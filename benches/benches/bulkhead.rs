//! Bulkhead admission: take a permit and give it back.
//!
//! Group `bulkhead`: Stockade's lock-free core `Bulkhead::try_acquire` +
//! drop (`stockade`) and a token + `Bulkhead::release` (`stockade-raw`,
//! the bindings' path), tokio's `Semaphore::try_acquire` + drop, and a
//! `Mutex` + `Condvar` counting semaphore ([`stockade_bench::CondvarSemaphore`]), each at 1 and
//! 2 threads on one shared instance. There are more permits than threads,
//! so every call is granted: this is the uncontended-admission path.
//!
//! `floor-two-atomics` is the least any counting semaphore can do: one
//! compare-and-swap loop bounded by the limit to take a permit and one
//! `fetch_sub` to give it back, with nothing else.
//!
//! Target: Stockade at that two-atomic floor (≤ 1.25× of it), checked on
//! the interleaved comparisons ([`stockade_bench::paired`]) after the group.

use core::hint::black_box;
use core::sync::atomic::{AtomicU32, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use stockade::bulkhead::{Bulkhead, BulkheadConfig, BulkheadPermit};
use stockade_bench::{CondvarSemaphore, assert_no_rejections, bench_threads, note_rejection};

/// Permits of every semaphore: more than there are threads.
const PERMITS: u32 = 64;

/// Stockade's bulkhead with [`PERMITS`] permits.
fn stockade_bulkhead() -> Bulkhead {
    Bulkhead::new(BulkheadConfig::DEFAULT.with_max_concurrent(PERMITS)).expect("valid config")
}

/// The two-atomic floor: a compare-and-swap loop bounded by the limit to
/// take a permit, one `fetch_sub` to give it back.
#[inline]
fn two_atomics(in_use: &AtomicU32) {
    let mut current = in_use.load(Ordering::Relaxed);
    loop {
        if current >= PERMITS {
            return note_rejection();
        }
        match in_use.compare_exchange_weak(
            current,
            current + 1,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => break,
            Err(now) => current = now,
        }
    }
    black_box(&in_use);
    in_use.fetch_sub(1, Ordering::Release);
}

fn bulkhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("bulkhead");
    bench_threads(&mut group, "stockade", stockade_bulkhead, |bulkhead| {
        let permit = bulkhead.try_acquire();
        if black_box(&permit).is_err() {
            note_rejection();
        }
    });
    // The token API a binding uses: `try_acquire` + `into_token`, then
    // `Bulkhead::release` (a compare-and-swap each way; the guard's release
    // above is one `fetch_sub`).
    bench_threads(&mut group, "stockade-raw", stockade_bulkhead, |bulkhead| {
        let Ok(token) = black_box(bulkhead.try_acquire().map(BulkheadPermit::into_token)) else {
            return note_rejection();
        };
        if black_box(bulkhead.release(token)).is_err() {
            note_rejection();
        }
    });
    bench_threads(
        &mut group,
        "floor-two-atomics",
        || AtomicU32::new(0),
        two_atomics,
    );
    bench_threads(
        &mut group,
        "tokio",
        || tokio::sync::Semaphore::new(PERMITS as usize),
        |semaphore| {
            let permit = semaphore.try_acquire();
            if black_box(&permit).is_err() {
                note_rejection();
            }
        },
    );
    bench_threads(
        &mut group,
        "condvar",
        || CondvarSemaphore::new(PERMITS),
        |semaphore| {
            let permit = semaphore.try_acquire();
            if black_box(&permit).is_none() {
                note_rejection();
            }
        },
    );
    group.finish();
    let ours =
        Bulkhead::new(BulkheadConfig::DEFAULT.with_max_concurrent(PERMITS)).expect("valid config");
    let through_stockade = || {
        let permit = ours.try_acquire();
        if black_box(&permit).is_err() {
            note_rejection();
        }
    };
    let in_use = AtomicU32::new(0);
    stockade_bench::paired(
        "bulkhead",
        "stockade",
        through_stockade,
        "floor-two-atomics",
        || two_atomics(&in_use),
    );
    let semaphore = tokio::sync::Semaphore::new(PERMITS as usize);
    stockade_bench::paired("bulkhead", "stockade", through_stockade, "tokio", || {
        let permit = semaphore.try_acquire();
        if black_box(&permit).is_err() {
            note_rejection();
        }
    });
    assert_no_rejections("bulkhead");
}

criterion_group! {
    name = benches;
    config = stockade_bench::criterion();
    targets = bulkhead
}
criterion_main!(benches);
