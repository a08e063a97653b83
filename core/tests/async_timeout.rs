//! The timeout's async form (feature `async`, tokio with paused time): the
//! future is dropped at the deadline, on time, with `TimedOut`.
#![cfg(not(stockade_loom))]

mod async_util;
use async_util::{DropFlag, until};

use core::future::Future;
use core::sync::atomic::Ordering::SeqCst;
use core::time::Duration;
use std::sync::{Arc, Mutex};

use stockade::blocking::{AsyncPolicy, Error, Timeout, TokioClock};
use stockade::deadline::TimeoutConfig;

fn timeout(after: Duration) -> Timeout<TokioClock> {
    Timeout::with_timer(
        "async",
        TimeoutConfig::new(after).unwrap(),
        TokioClock::new(),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_future_is_dropped_at_the_deadline() {
    let t = timeout(Duration::from_secs(2));
    let start = tokio::time::Instant::now();
    let dropped_at = Arc::new(Mutex::new(None));
    let (guard, dropped) = DropFlag::new();
    let out = {
        let dropped_at = Arc::clone(&dropped_at);
        t.execute_async(async move {
            struct Stamp(Arc<Mutex<Option<tokio::time::Instant>>>);
            impl Drop for Stamp {
                fn drop(&mut self) {
                    *self.0.lock().unwrap() = Some(tokio::time::Instant::now());
                }
            }
            let _stamp = Stamp(dropped_at);
            let _guard = guard;
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, ()>("late")
        })
        .await
    };
    assert!(
        matches!(out, Err(Error::TimedOut { after }) if after == Duration::from_secs(2)),
        "{out:?}"
    );
    assert!(dropped.load(SeqCst), "the future outlived its timeout");
    let at = dropped_at.lock().unwrap().expect("dropped");
    assert_eq!(at - start, Duration::from_secs(2));
    let m = t.metrics();
    assert_eq!((m.timeouts, m.in_flight), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_prompt_future_passes() {
    let t = timeout(Duration::from_secs(2));
    let ok = t
        .execute_async(async {
            tokio::time::sleep(Duration::from_millis(1999)).await;
            Ok::<_, &str>(7)
        })
        .await;
    assert_eq!(ok.unwrap(), 7);
    let failed = t.execute_async(async { Err::<(), _>("boom") }).await;
    assert_eq!(failed.unwrap_err().into_inner(), Some("boom"));
    let m = t.metrics();
    assert_eq!((m.successes, m.failures, m.timeouts), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn dispose_wakes_a_call_in_flight() {
    let t = Arc::new(timeout(Duration::from_secs(3600)));
    let (guard, dropped) = DropFlag::new();
    let task = {
        let t = Arc::clone(&t);
        tokio::spawn(async move {
            t.execute_async(async move {
                let _guard = guard;
                core::future::pending::<()>().await;
                Ok::<_, ()>(())
            })
            .await
        })
    };
    until("the call is in flight", || t.metrics().in_flight == 1).await;
    t.dispose();
    assert!(matches!(task.await.unwrap(), Err(Error::Disposed)));
    assert!(dropped.load(SeqCst));
}

#[tokio::test(start_paused = true)]
async fn as_a_policy_it_bounds_each_attempt() {
    let t = timeout(Duration::from_secs(1));
    let out: Result<(), Error<&str>> = t
        .run_async(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        })
        .await;
    assert!(matches!(out, Err(Error::TimedOut { .. })));
}

#[tokio::test(start_paused = true)]
async fn the_future_is_dropped_before_timed_out_is_returned() {
    // Polled by hand: the late call must be gone when `TimedOut` comes
    // back, not only once the timeout's own future is dropped.
    let t = timeout(Duration::from_secs(1));
    let (guard, dropped) = DropFlag::new();
    let mut call = core::pin::pin!(t.execute_async(async move {
        let _guard = guard;
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, ()>("late")
    }));
    let out = core::future::poll_fn(|cx| call.as_mut().poll(cx)).await;
    assert!(matches!(out, Err(Error::TimedOut { .. })), "{out:?}");
    assert!(dropped.load(SeqCst), "the call outlived its deadline");
    assert_eq!(t.metrics().in_flight, 0);
}
