//! The async forms of patterns shared between processes (features
//! `tokio` and `shared-memory`): they decide in the shared region, and a
//! shared bulkhead's waiting task polls it sleeping on the runtime's
//! timer. Time is the host's (`HostClock`), so the runtime's is real too.
#![cfg(not(stockade_loom))]

mod async_util;
use async_util::until;

use core::time::Duration;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use stockade::blocking::{Bulkhead, CircuitBreaker, Error, RateLimiter};
use stockade::breaker::{BreakerConfig, BreakerState};
use stockade::bulkhead::BulkheadConfig;
use stockade::limiter::RateLimiterConfig;
use stockade::shared::SharedOptions;

/// A private directory for the regions, removed at the end.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        let dir =
            std::env::temp_dir().join(format!("stockade-async-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        TestDir(dir)
    }

    fn options(&self) -> SharedOptions {
        SharedOptions::new().directory(&self.0)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn a_shared_bulkhead_admits_a_waiting_task_when_a_permit_returns() {
    let dir = TestDir::new("bulkhead");
    let config = BulkheadConfig::DEFAULT
        .with_max_concurrent(1)
        .with_queue_timeout(Duration::from_secs(30));
    let b = Arc::new(Bulkhead::shared("b", config, &dir.options()).unwrap());
    let held = b.acquire().unwrap();
    let task = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.execute_async(async { Ok::<_, ()>("ran") }).await })
    };
    until("the task waits", || b.metrics().queue_depth == 1).await;
    drop(held);
    assert_eq!(task.await.unwrap().unwrap(), "ran");
    let m = b.metrics();
    assert_eq!((m.in_flight, m.queue_depth, m.successes), (0, 0, 2));
}

#[tokio::test]
async fn a_shared_bulkhead_times_a_waiting_task_out() {
    let dir = TestDir::new("bulkhead-timeout");
    let config = BulkheadConfig::DEFAULT
        .with_max_concurrent(1)
        .with_queue_timeout(Duration::from_millis(20));
    let b = Bulkhead::shared("b", config, &dir.options()).unwrap();
    let _held = b.acquire().unwrap();
    let out = b.execute_async(async { Ok::<_, ()>(()) }).await;
    assert!(
        matches!(out, Err(Error::QueueTimeout { waited }) if waited >= Duration::from_millis(20)),
        "{out:?}"
    );
    assert_eq!(b.metrics().queue_depth, 0);
}

#[tokio::test]
async fn a_shared_limiter_and_breaker_decide_in_their_regions() {
    let dir = TestDir::new("limiter-breaker");
    let config = RateLimiterConfig::DEFAULT
        .with_requests_per_period(1)
        .with_period(Duration::from_secs(3600))
        .with_burst(1)
        .with_queue_timeout(Duration::ZERO);
    let limiter = RateLimiter::shared("l", config, &dir.options()).unwrap();
    limiter
        .execute_async(async { Ok::<_, ()>(()) })
        .await
        .unwrap();
    // The same region, opened again: the permit is spent for everyone.
    let other = RateLimiter::shared("l", config, &dir.options()).unwrap();
    assert!(matches!(
        other.acquire_async(1).await,
        Err(Error::RateLimited { .. })
    ));

    let breaker = CircuitBreaker::shared(
        "c",
        BreakerConfig::DEFAULT.with_failure_threshold(1),
        &dir.options(),
    )
    .unwrap();
    let _ = breaker.execute_async(async { Err::<(), _>("down") }).await;
    let other = CircuitBreaker::shared(
        "c",
        BreakerConfig::DEFAULT.with_failure_threshold(1),
        &dir.options(),
    )
    .unwrap();
    assert_eq!(other.state(), BreakerState::Open);
    assert!(matches!(
        other.execute_async(async { Ok::<_, ()>(()) }).await,
        Err(Error::BreakerOpen { .. })
    ));
}
