//! Retry's async form (feature `async`, tokio with paused time): back-off
//! sleeps on tokio's time, matching, dispose during a back-off.
#![cfg(not(stockade_loom))]

mod async_util;
use async_util::until;

use core::sync::atomic::{AtomicU32, Ordering::SeqCst};
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
