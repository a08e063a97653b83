//! Retry's async form (feature `async`, tokio with paused time): back-off
//! sleeps on tokio's time, matching, dispose during a back-off; the first
//! attempt at the first poll, what is counted when a call is cancelled or
//! panics.
#![cfg(not(stockade_loom))]

mod async_util;
use async_util::{poll_once, until};

use core::sync::atomic::{AtomicU32, Ordering::SeqCst};
use core::task::Poll;
use core::time::Duration;
use std::sync::Arc;

use stockade::blocking::{Error, Retry, RetryConfig, TokioClock};

fn retry(config: RetryConfig) -> Retry<TokioClock> {
    Retry::with_timer("async", config, TokioClock::new()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn backs_off_on_tokio_time() {
    let r = retry(
        RetryConfig::DEFAULT
            .with_initial_delay(Duration::from_millis(100))
            .with_max_attempts(3),
    );
    let attempts = AtomicU32::new(0);
    let start = tokio::time::Instant::now();
    let out = r
        .execute_async(|| async {
            let n = attempts.fetch_add(1, SeqCst) + 1;
            if n < 3 {
                Err(format!("attempt {n}"))
            } else {
                Ok(n)
            }
        })
        .await;
    assert_eq!(out.unwrap(), 3);
    // 100 ms, then 200 ms (factor 2, no jitter).
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    let m = r.metrics();
    assert_eq!((m.retries, m.successes), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn gives_up_as_the_blocking_form_does() {
    let r = retry(
        RetryConfig::DEFAULT
            .with_initial_delay(Duration::from_millis(10))
            .with_max_attempts(2)
            .retry_on("flaky"),
    );
    let attempts = AtomicU32::new(0);
    let out = r
        .execute_async(|| async {
            attempts.fetch_add(1, SeqCst);
            Err::<(), _>("fatal")
        })
        .await;
    assert_eq!(out.unwrap_err().into_inner(), Some("fatal"));
    assert_eq!(attempts.load(SeqCst), 1, "a non-matching error was retried");
    let out = r.execute_async(|| async { Err::<(), _>("flaky") }).await;
    assert!(
        matches!(out, Err(Error::RetriesExhausted { attempts: 2, .. })),
        "{out:?}"
    );
    let out = r
        .execute_if_async(|e: &&str| *e == "fatal", || async { Err::<(), _>("fatal") })
        .await;
    assert!(
        matches!(out, Err(Error::RetriesExhausted { attempts: 2, .. })),
        "{out:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn dispose_wakes_a_back_off() {
    let r = Arc::new(retry(
        RetryConfig::DEFAULT
            .with_initial_delay(Duration::from_secs(3600))
            .with_max_delay(Duration::from_secs(3600)),
    ));
    let task = {
        let r = Arc::clone(&r);
        tokio::spawn(async move { r.execute_async(|| async { Err::<(), _>("down") }).await })
    };
    until("the task backs off", || r.metrics().retries == 1).await;
    let start = tokio::time::Instant::now();
    r.dispose();
    assert!(matches!(task.await.unwrap(), Err(Error::Disposed)));
    assert!(start.elapsed() < Duration::from_secs(3600));
}

/// The call's first attempt is made at the first poll, not before, and a
/// success there is counted once, with no retry.
#[tokio::test(start_paused = true)]
async fn the_first_attempt_is_made_at_the_first_poll() {
    let r = retry(RetryConfig::DEFAULT);
    let attempts = AtomicU32::new(0);
    let mut call = core::pin::pin!(async_util::assert_send(r.execute_async(|| {
        attempts.fetch_add(1, SeqCst);
        async { Ok::<_, String>(7) }
    })));
    assert_eq!(
        attempts.load(SeqCst),
        0,
        "an attempt was made before the first poll"
    );
    assert!(matches!(poll_once(call.as_mut()), Poll::Ready(Ok(7))));
    assert_eq!(attempts.load(SeqCst), 1);
    let m = r.metrics();
    assert_eq!((m.calls, m.successes, m.failures, m.retries), (1, 1, 0, 0));
}

/// A call dropped in its first attempt or in a back-off (cancelled) is not
/// counted; a panic in an attempt is one failure, counted as it unwinds.
#[tokio::test(start_paused = true)]
async fn a_cancelled_call_is_not_counted_and_a_panic_is_a_failure() {
    let r = retry(
        RetryConfig::DEFAULT
            .with_initial_delay(Duration::from_secs(20))
            .with_max_attempts(3),
    );
    {
        let mut call =
            core::pin::pin!(r.execute_async(core::future::pending::<Result<(), String>>));
        assert!(poll_once(call.as_mut()).is_pending());
    }
    {
        let mut call = core::pin::pin!(r.execute_async(|| async { Err::<(), _>("down") }));
        assert!(poll_once(call.as_mut()).is_pending(), "not backing off");
        assert_eq!(r.metrics().retries, 1);
    }
    let m = r.metrics();
    assert_eq!(
        (m.calls, m.failures),
        (0, 0),
        "a cancelled call was counted"
    );

    // A panic in the attempt's future, and one in the closure making it.
    let mut panicking = Box::pin(r.execute_async(|| async {
        panic!("attempt bug");
        #[allow(unreachable_code)]
        Ok::<(), String>(())
    }));
    let unwound = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
        poll_once(panicking.as_mut())
    }));
    assert!(unwound.is_err());
    drop(panicking);
    let unwound =
        std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
            let mut call = Box::pin(r.execute_async(
                || -> core::future::Ready<Result<(), String>> { panic!("closure bug") },
            ));
            poll_once(call.as_mut())
        }));
    assert!(unwound.is_err());
    // A panic in a later attempt, after a back-off.
    let attempts = AtomicU32::new(0);
    let mut later = Box::pin(r.execute_async(|| {
        let n = attempts.fetch_add(1, SeqCst);
        async move {
            assert!(n == 0, "second attempt bug");
            Err::<(), _>("first attempt failed")
        }
    }));
    assert!(poll_once(later.as_mut()).is_pending());
    tokio::time::advance(Duration::from_secs(20)).await;
    let unwound =
        std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| poll_once(later.as_mut())));
    assert!(unwound.is_err());
    drop(later);
    let m = r.metrics();
    assert_eq!((m.calls, m.successes, m.failures), (3, 0, 3), "{m:?}");
}

/// A disposed retry refuses at the first poll without an attempt, and
/// does not count the call.
#[tokio::test(start_paused = true)]
async fn a_disposed_retry_makes_no_attempt() {
    let r = retry(RetryConfig::DEFAULT);
    r.dispose();
    let attempts = AtomicU32::new(0);
    let out = r
        .execute_async(|| {
            attempts.fetch_add(1, SeqCst);
            async { Ok::<_, String>(()) }
        })
        .await;
    assert!(matches!(out, Err(Error::Disposed)), "{out:?}");
    assert_eq!(attempts.load(SeqCst), 0);
    assert_eq!(r.metrics().calls, 0);
}

/// Polling a finished call is a bug of the caller's, reported as a panic
/// (as an `async fn`'s future does), not a second call.
#[tokio::test(start_paused = true)]
async fn a_finished_call_polled_again_panics() {
    let r = retry(RetryConfig::DEFAULT);
    let mut call = Box::pin(r.execute_async(|| async { Ok::<_, String>(1) }));
    assert!(poll_once(call.as_mut()).is_ready());
    let again =
        std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| poll_once(call.as_mut())));
    assert!(again.is_err());
    let m = r.metrics();
    assert_eq!((m.calls, m.failures), (1, 0), "{m:?}");
}
