//! The Rust side of `tests/c/bench.sh`: the same core operations as
//! `tests/c/bench.c`, called directly on the core crate, timed the same way
//! (N calls per run, median of 7 runs, ns per call).
//!
//! The clock has the shape of the C bench's `stockade_clock`: a function
//! pointer called with a user-data pointer, opaque to the optimiser. Both
//! sides then pay the same indirect call per clock read, and the ratio is
//! what the C boundary itself costs: the exported call, its pointer checks
//! and its out-parameters.
//!
//! `core_bench OP CALLS` instead runs operation OP CALLS times, once,
//! untimed: `tests/c/bench.sh --instructions` counts its instructions
//! under callgrind.

use core::ffi::{c_int, c_void};
use core::hint::black_box;
use core::time::Duration;
use std::time::Instant;

use stockade_core::backoff::Backoff;
use stockade_core::breaker::{BreakerConfig, CircuitBreaker};
use stockade_core::budget::{RetryBudget, RetryBudgetConfig};
use stockade_core::clock::{Clock, Timestamp};
use stockade_core::deadline::Deadline;

/// Calls per timed run.
const N_TIMED: u32 = 2_000_000;
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

/// One benchmarked operation: runs it the given number of times.
type Op<'a> = Box<dyn FnMut(u32) + 'a>;

/// The protected call of `breaker_call`: succeeds.
extern "C" fn ok_call(_user_data: *mut c_void) -> c_int {
    0
}

fn median_ns_per_call(op: &mut dyn FnMut(u32), n: u32) -> f64 {
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            op(n);
            t.elapsed().as_nanos() as f64 / f64::from(n)
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

    let breaker = CircuitBreaker::new(BreakerConfig::DEFAULT).expect("valid");
    let call = black_box(ok_call as extern "C" fn(*mut c_void) -> c_int);
    let blocking =
        stockade_core::blocking::CircuitBreaker::unregistered("", BreakerConfig::DEFAULT)
            .expect("valid");
    let mut ops: Vec<(&str, Op<'_>)> = vec![
        (
            "deadline_is_expired",
            Box::new(|n| {
                for _ in 0..n {
                    black_box(black_box(&deadline).is_expired(&clock));
                }
            }),
        ),
        (
            "backoff_delay",
            Box::new(|n| {
                for i in 0..n {
                    black_box(black_box(&backoff).delay((i & 15) + 1));
                }
            }),
        ),
        (
            "budget_deposit_withdraw",
            Box::new(|n| {
                for _ in 0..n {
                    let budget = black_box(&budget);
                    budget.deposit(&clock);
                    black_box(budget.try_withdraw(&clock).is_ok());
                }
            }),
        ),
        (
            "breaker_acquire_report",
            Box::new(|n| {
                for _ in 0..n {
                    if let Ok(permit) = black_box(&breaker).try_acquire(&clock) {
                        black_box(permit.success(&clock));
                    }
                }
            }),
        ),
        (
            "breaker_call",
            Box::new(|n| {
                for _ in 0..n {
                    if let Ok(permit) = black_box(&breaker).try_acquire(&clock) {
                        let result = call(core::ptr::null_mut());
                        if result == 0 {
                            black_box(permit.success(&clock));
                        } else {
                            black_box(permit.failure(&clock));
                        }
                        black_box(result);
                    }
                }
            }),
        ),
        (
            "breaker_execute_blocking",
            Box::new(|n| {
                for _ in 0..n {
                    black_box(
                        black_box(&blocking)
                            .execute(|| black_box(Ok::<(), ()>(())))
                            .is_ok(),
                    );
                }
            }),
        ),
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [op, calls] = args.as_slice() {
        let n: u32 = calls.parse().expect("CALLS is a number");
        let (_, run) = ops
            .iter_mut()
            .find(|(name, _)| name == op)
            .expect("a known operation");
        run(n);
        return;
    }
    for (name, run) in &mut ops {
        println!("{name} {:.2}", median_ns_per_call(run.as_mut(), N_TIMED));
    }
}
