//! The async forms on async-io's timer (feature `async-io`), outside any
//! tokio runtime: the default `MonotonicClock` waits with
//! `async_io::Timer`, driven here by `async_io::block_on`. Real time, short
//! waits; each check is an outcome that needs the wait to have ended at
//! its deadline (never an upper bound on time).
#![cfg(not(stockade_loom))]

use core::sync::atomic::{AtomicU32, Ordering::SeqCst};
use core::time::Duration;
use std::time::Instant;

use stockade::blocking::{Bulkhead, Error, RateLimiter, Retry, RetryConfig, Timeout};
use stockade::bulkhead::BulkheadConfig;
use stockade::clock::MonotonicClock;
use stockade::deadline::TimeoutConfig;
use stockade::limiter::RateLimiterConfig;

#[test]
fn every_wait_ends_on_async_io() {
    async_io::block_on(async {
        let clock = MonotonicClock::new();

        // A bulkhead's queue timeout.
        let config = BulkheadConfig::DEFAULT
            .with_max_concurrent(1)
            .with_queue_timeout(Duration::from_millis(20));
        let bulkhead = Bulkhead::with_timer("io", config, clock).unwrap();
        let held = bulkhead.acquire().unwrap();
        let out = bulkhead.execute_async(async { Ok::<_, ()>(()) }).await;
        assert!(
            matches!(out, Err(Error::QueueTimeout { waited }) if waited >= Duration::from_millis(20)),
            "{out:?}"
        );
        drop(held);

        // A limiter's reservation: 100 per second, no burst.
        let config = RateLimiterConfig::DEFAULT
            .with_requests_per_period(100)
            .with_burst(1);
        let limiter = RateLimiter::with_timer("io", config, clock).unwrap();
        let start = Instant::now();
        limiter.acquire_async(1).await.unwrap();
        limiter.acquire_async(1).await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(9),
            "the second permit came early"
        );

        // A retry's back-off.
        let retry = Retry::with_timer(
            "io",
            RetryConfig::DEFAULT.with_initial_delay(Duration::from_millis(5)),
            clock,
        )
        .unwrap();
        let attempts = AtomicU32::new(0);
        let start = Instant::now();
        let out = retry
            .execute_async(|| async {
                if attempts.fetch_add(1, SeqCst) == 0 {
                    Err("flaky")
                } else {
                    Ok(())
                }
            })
            .await;
        assert!(out.is_ok());
        assert!(start.elapsed() >= Duration::from_millis(5), "no back-off");

        // A timeout drops a future that never ends.
        let timeout = Timeout::with_timer(
            "io",
            TimeoutConfig::new(Duration::from_millis(20)).unwrap(),
            clock,
        )
        .unwrap();
        let out = timeout
            .execute_async(async {
                core::future::pending::<()>().await;
                Ok::<_, ()>(())
            })
            .await;
        assert!(matches!(out, Err(Error::TimedOut { .. })), "{out:?}");
    });
}
