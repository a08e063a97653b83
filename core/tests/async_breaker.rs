//! The breaker's async form (feature `async`, tokio with paused time): one
//! breaker for tasks and threads, a dropped call in half-open frees its
//! probe, a panic counts as a failure, the policy's classification.
#![cfg(not(stockade_loom))]

mod async_util;
use async_util::{DropFlag, poll_once};

use core::panic::AssertUnwindSafe;
use core::pin::pin;
use core::sync::atomic::Ordering::SeqCst;
use core::time::Duration;

use stockade::blocking::{AsyncPolicy, CircuitBreaker, Error, TokioClock};
use stockade::breaker::{BreakerConfig, BreakerState, Outcome};

fn breaker(config: BreakerConfig) -> CircuitBreaker<TokioClock> {
    CircuitBreaker::with_timer("async", config, TokioClock::new()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn tasks_and_threads_share_one_breaker() {
    let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(2));
    assert_eq!(
        b.execute_async(async { Ok::<_, &str>(1) }).await.unwrap(),
        1
    );
    let _ = b.execute(|| Err::<(), _>("sync failure"));
    let failed = b
        .execute_async(async { Err::<(), _>("async failure") })
        .await;
    assert_eq!(failed.unwrap_err().into_inner(), Some("async failure"));
    assert_eq!(b.state(), BreakerState::Open);
    let refused = b.execute_async(async { Ok::<_, &str>(2) }).await;
    assert!(matches!(
        refused,
        Err(Error::BreakerOpen {
            state: BreakerState::Open,
            ..
        })
    ));
    let m = b.metrics();
    assert_eq!((m.successes, m.failures, m.rejections), (1, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_slot() {
    let b = breaker(
        BreakerConfig::DEFAULT
            .with_failure_threshold(1)
            .with_reset_timeout(Duration::from_secs(1))
            .with_half_open_max_probes(1)
            .with_half_open_successes_to_close(1),
    );
    let _ = b.execute_async(async { Err::<(), _>("down") }).await;
    assert_eq!(b.state(), BreakerState::Open);
    // Past `reset_timeout` by more than the 32-bit layout's coarser tick.
    tokio::time::advance(Duration::from_millis(1100)).await;
    let (guard, dropped) = DropFlag::new();
    {
        let mut probe = pin!(b.execute_async(async move {
            let _guard = guard;
            core::future::pending::<()>().await;
            Ok::<_, &str>(())
        }));
        assert!(poll_once(probe.as_mut()).is_pending());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // The only probe slot is taken.
        let refused = b.execute_async(async { Ok::<_, &str>(()) }).await;
        assert!(matches!(
            refused,
            Err(Error::BreakerOpen {
                state: BreakerState::HalfOpen,
                ..
            })
        ));
    }
    assert!(dropped.load(SeqCst));
    // The failure, the refusal, and the dropped probe as an ignored
    // outcome (in `calls` only), as a dropped `BreakerGuard` is.
    let m = b.metrics();
    assert_eq!(
        (m.calls, m.successes, m.failures, m.rejections),
        (3, 0, 1, 1)
    );
    // The slot is free at once: the next probe runs and closes the breaker.
    b.execute_async(async { Ok::<_, &str>(()) }).await.unwrap();
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_panic_counts_as_a_failure() {
    let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(1));
    let mut call = pin!(b.execute_async(async { panic!("in the call") }));
    let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let _: core::task::Poll<Result<(), Error<()>>> = poll_once(call.as_mut());
    }));
    assert!(caught.is_err());
    assert_eq!(b.metrics().failures, 1);
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn classified_outcomes() {
    let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(1));
    let classify = |r: &Result<u32, &str>| match r {
        Err(e) if *e == "not found" => Outcome::Ignored,
        Err(_) => Outcome::Failure,
        Ok(_) => Outcome::Success,
    };
    let _ = b
        .execute_classified_async(classify, async { Err("not found") })
        .await;
    assert_eq!(b.state(), BreakerState::Closed);
    let _ = b
        .execute_classified_async(classify, async { Err("down") })
        .await;
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.metrics().failures, 1);
}

#[tokio::test(start_paused = true)]
async fn as_a_policy_a_nested_refusal_is_ignored() {
    let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(1));
    let out: Result<(), Error<&str>> = b.run_async(|| async { Err(Error::BulkheadFull) }).await;
    assert!(matches!(out, Err(Error::BulkheadFull)));
    assert_eq!(b.state(), BreakerState::Closed);
    let out: Result<(), Error<&str>> = b
        .run_async(|| async {
            Err(Error::TimedOut {
                after: Duration::from_secs(1),
            })
        })
        .await;
    assert!(matches!(out, Err(Error::TimedOut { .. })));
    assert_eq!(b.state(), BreakerState::Open);
}
