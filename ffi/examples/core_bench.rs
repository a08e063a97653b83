//! The Rust side of `tests/c/bench.sh`: the same core operations as
//! `tests/c/bench.c`, called directly on the core crate, timed the same way
//! (N calls per run, median of 7 runs, ns per call).
//!
//! The clock is a plain function reading a static, as in the C bench (one
//! indirect call per clock read there; here it may be inlined, which is
//! part of what the C boundary costs).

use core::hint::black_box;
use core::time::Duration;
use std::time::Instant;

use stockade_core::backoff::Backoff;
use stockade_core::breaker::{BreakerConfig, CircuitBreaker};
use stockade_core::budget::{RetryBudget, RetryBudgetConfig};
use stockade_core::clock::{Clock, Timestamp};
use stockade_core::deadline::Deadline;

const N: u32 = 2_000_000;
const RUNS: usize = 7;

struct FakeClock;
impl Clock for FakeClock {
    #[inline(never)]
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(black_box(0))
    }
}

fn median_ns_per_call(mut op: impl FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            op();
            t.elapsed().as_nanos() as f64 / f64::from(N)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[RUNS / 2]
}

fn main() {
    let clock = FakeClock;
    let deadline = Deadline::after(&clock, Duration::from_millis(5000));
    let backoff = Backoff::default();
    let budget = RetryBudget::new(RetryBudgetConfig::DEFAULT.with_ratio(1.0)).expect("valid");

    let d = median_ns_per_call(|| {
        for _ in 0..N {
            black_box(black_box(&deadline).is_expired(&clock));
        }
    });
    println!("deadline_is_expired {d:.2}");
    let b = median_ns_per_call(|| {
        for i in 0..N {
            black_box(black_box(&backoff).delay((i & 15) + 1));
        }
    });
    println!("backoff_delay {b:.2}");
    let r = median_ns_per_call(|| {
        for _ in 0..N {
            let budget = black_box(&budget);
            budget.deposit(&clock);
            black_box(budget.try_withdraw(&clock).is_ok());
        }
    });
    println!("budget_deposit_withdraw {r:.2}");
    let breaker = CircuitBreaker::new(BreakerConfig::DEFAULT).expect("valid");
    let br = median_ns_per_call(|| {
        for _ in 0..N {
            if let Ok(permit) = black_box(&breaker).try_acquire(&clock) {
                black_box(permit.success(&clock));
            }
        }
    });
    println!("breaker_acquire_report {br:.2}");
    let blocking =
        stockade_core::blocking::CircuitBreaker::unregistered("", BreakerConfig::DEFAULT)
            .expect("valid");
    let ex = median_ns_per_call(|| {
        for _ in 0..N {
            black_box(
                black_box(&blocking)
                    .execute(|| black_box(Ok::<(), ()>(())))
                    .is_ok(),
            );
        }
    });
    println!("breaker_execute_blocking {ex:.2}");
}
