//! The Rust side of `tests/c/bench.sh`: the same core operations as
//! `tests/c/bench.c`, called directly on the core crate, timed the same way
//! (N calls per run, median of 7 runs, ns per call).
//!
//! The clock has the shape of the C bench's `stockade_clock`: a function
//! pointer called with a user-data pointer, opaque to the optimiser. Both
//! sides then pay the same indirect call per clock read, and the ratio is
//! what the C boundary itself costs: the exported call, its pointer checks
//! and its out-parameters.

use core::ffi::c_void;
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

/// The C bench's `now_ns`: returns a fixed time.
extern "C" fn fixed_now(_user_data: *mut c_void) -> u64 {
    0
}

/// A clock called through a function pointer with user data, like
/// `stockade_clock`.
struct FakeClock {
    now_ns: extern "C" fn(*mut c_void) -> u64,
    user_data: *mut c_void,
}

impl Clock for FakeClock {
    #[inline]
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos((self.now_ns)(self.user_data))
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
    // Through `black_box`, so the call stays indirect as in C.
    let clock = FakeClock {
        now_ns: black_box(fixed_now as extern "C" fn(*mut c_void) -> u64),
        user_data: core::ptr::null_mut(),
    };
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
