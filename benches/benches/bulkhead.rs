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
//! Target: Stockade at that two-atomic floor (≤ 1.25× of it).

use core::hint::black_box;
use core::sync::atomic::{AtomicU32, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use stockade::bulkhead::{Bulkhead, BulkheadConfig, BulkheadPermit};
use stockade_bench::{CondvarSemaphore, assert_no_rejections, bench_threads, note_rejection};

/// Permits of every semaphore: more than there are threads.
const PERMITS: u32 = 64;

fn bulkhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("bulkhead");
    bench_threads(
        &mut group,
        "stockade",
        || Bulkhead::new(BulkheadConfig::DEFAULT.with_max_concurrent(PERMITS)),
        |bulkhead| {
            let Ok(bulkhead) = bulkhead else {
                return note_rejection();
            };
            let permit = bulkhead.try_acquire();
            if black_box(&permit).is_err() {
                note_rejection();
            }
        },
    );
    // The token API a binding uses: `try_acquire` + `into_token`, then
    // `Bulkhead::release` (a compare-and-swap each way; the guard's release
    // above is one `fetch_sub`).
    bench_threads(
        &mut group,
        "stockade-raw",
        || Bulkhead::new(BulkheadConfig::DEFAULT.with_max_concurrent(PERMITS)),
        |bulkhead| {
            let Ok(bulkhead) = bulkhead else {
                return note_rejection();
            };
            let Ok(token) = black_box(bulkhead.try_acquire().map(BulkheadPermit::into_token))
            else {
                return note_rejection();
            };
            if black_box(bulkhead.release(token)).is_err() {
                note_rejection();
            }
        },
    );
    bench_threads(
        &mut group,
        "floor-two-atomics",
        || AtomicU32::new(0),
        |in_use| {
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
        },
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
    assert_no_rejections("bulkhead");
}

criterion_group! {
    name = benches;
    config = stockade_bench::criterion();
    targets = bulkhead
}
criterion_main!(benches);
