//! Runs one async form on its healthy path N times, for valgrind's
//! callgrind to count instructions per call (`scripts/async-cost.sh`), as
//! `telemetry_count` does for the telemetry features: a count does not
//! depend on what else the machine runs, as the times of
//! `benches/async_layers.rs` do.
//!
//! `async_count CASE N`, CASE one of `limiter` (`RateLimiter::acquire_async(1)`),
//! `governor` (`until_ready`), `retry` (`Retry::execute_async`, the first
//! attempt succeeds) and `backon` (backon's async retry on tokio's sleep),
//! with the options of `benches/async_layers.rs`. Each future is polled
//! once with a no-op waker inside a tokio runtime's context; one that is
//! not ready at once fails the run.

use core::convert::Infallible;
use core::future::Future;
use core::hint::black_box;
use core::num::NonZeroU32;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::process::ExitCode;

use backon::{ExponentialBuilder, Retryable};
use stockade::blocking::{RateLimiter, Retry, RetryConfig};
use stockade::clock::MonotonicClock;
use stockade::limiter::RateLimiterConfig;

/// Permits per second of the limiters: every call is granted.
const RATE: u32 = 1_000_000_000;

/// Polls `future` once; `false` if it was not ready or failed. Inlined
/// into each `run_*`, as the benches' polling is.
#[inline(always)]
fn ready_ok<T, E>(future: impl Future<Output = Result<T, E>>) -> bool {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    matches!(future.as_mut().poll(&mut cx), Poll::Ready(Ok(_)))
}

/// Polls `future` once; `false` if it was not ready (governor's
/// `until_ready`, which has no error). Inlined as [`ready_ok`] is.
#[inline(always)]
fn ready(future: impl Future<Output = ()>) -> bool {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    future.as_mut().poll(&mut cx).is_ready()
}

/// The healthy call: ready at once with a one-register result.
#[inline(never)]
fn healthy() -> core::future::Ready<Result<u32, Infallible>> {
    core::future::ready(Ok(black_box(42)))
}

// Each `run_*` is out of line, so that callgrind counts only it
// (`--toggle-collect`), not the setup.

#[inline(never)]
fn run_limiter(limiter: &RateLimiter, n: u64) -> u64 {
    (0..n)
        .filter(|_| !ready_ok(black_box(limiter).acquire_async(1)))
        .count() as u64
}

#[inline(never)]
fn run_governor(limiter: &governor::DefaultDirectRateLimiter, n: u64) -> u64 {
    (0..n)
        .filter(|_| !ready(black_box(limiter).until_ready()))
        .count() as u64
}

#[inline(never)]
fn run_retry(retry: &Retry, n: u64) -> u64 {
    (0..n)
        .filter(|_| !ready_ok(black_box(retry).execute_async(healthy)))
        .count() as u64
}

#[inline(never)]
fn run_backon(backoff: ExponentialBuilder, n: u64) -> u64 {
    (0..n)
        .filter(|_| !ready_ok(healthy.retry(black_box(backoff)).sleep(tokio::time::sleep)))
        .count() as u64
}

fn main() -> ExitCode {
    // `cargo bench` adds `--bench`; only the positional arguments count.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(case), Some(n)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: async_count limiter|governor|retry|backon N");
        return ExitCode::from(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let _context = runtime.enter();
    let missed = match case.as_str() {
        "limiter" => {
            let config = RateLimiterConfig::DEFAULT
                .with_requests_per_period(RATE)
                .with_period(Duration::from_secs(1))
                .with_burst(RATE);
            let limiter = RateLimiter::with_timer("count", config, MonotonicClock::new())
                .expect("valid config");
            // The clock's one-time calibration outside the count.
            assert!(ready_ok(limiter.acquire_async(1)));
            run_limiter(&limiter, n)
        }
        "governor" => {
            let limiter = governor::RateLimiter::direct(governor::Quota::per_second(
                NonZeroU32::new(RATE).expect("non-zero"),
            ));
            assert!(ready(limiter.until_ready()));
            run_governor(&limiter, n)
        }
        "retry" => {
            let config = RetryConfig::DEFAULT
                .with_max_attempts(3)
                .with_initial_delay(Duration::from_secs(1));
            let retry =
                Retry::with_timer("count", config, MonotonicClock::new()).expect("valid config");
            assert!(ready_ok(retry.execute_async(healthy)));
            run_retry(&retry, n)
        }
        "backon" => {
            let backoff = ExponentialBuilder::default()
                .with_max_times(2)
                .with_min_delay(Duration::from_secs(1));
            assert!(ready_ok(healthy.retry(backoff).sleep(tokio::time::sleep)));
            run_backon(backoff, n)
        }
        other => {
            eprintln!("async_count: unknown case {other:?}");
            return ExitCode::from(2);
        }
    };
    if missed > 0 {
        eprintln!("async_count {case}: {missed} of {n} calls were not ready and Ok at once");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
