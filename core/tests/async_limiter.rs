//! The rate limiter's async form (feature `async`, tokio with paused
//! time): a task sleeps its reservation on tokio's time, a dropped future
//! cancels its reservation, dispose wakes a sleeping task; booking at the
//! first poll, `acquire_timeout_async`.
#![cfg(not(stockade_loom))]

mod async_util;
use async_util::{poll_once, until};

use core::pin::pin;
use core::task::Poll;
use core::time::Duration;
use std::sync::Arc;

use stockade::blocking::{Error, RateLimiter, TokioClock};
use stockade::limiter::RateLimiterConfig;

/// 10 per second, burst 1: one permit every 100 ms.
fn limiter() -> RateLimiter<TokioClock> {
    let config = RateLimiterConfig::DEFAULT
        .with_requests_per_period(10)
        .with_burst(1);
    RateLimiter::with_timer("async", config, TokioClock::new()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_task_sleeps_its_reservation() {
    let l = limiter();
    let start = tokio::time::Instant::now();
    for _ in 0..3 {
        l.execute_async(async { Ok::<_, ()>(()) }).await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    // A blocking caller of the same limiter is refused: the queue time is
    // the limiter's, shared.
    assert!(matches!(l.try_acquire(1), Err(Error::RateLimited { .. })));
    assert_eq!(l.metrics().successes, 3);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_future_cancels_its_reservation() {
    let l = limiter();
    let start = tokio::time::Instant::now();
    l.acquire_async(1).await.unwrap();
    {
        let mut waiting = pin!(l.acquire_async(1));
        assert!(poll_once(waiting.as_mut()).is_pending());
        assert_eq!(l.metrics().queue_depth, 1);
    }
    assert_eq!(
        l.metrics().queue_depth,
        0,
        "the reservation was not handed back"
    );
    // The next caller gets the cancelled slot (100 ms), not the one after.
    l.acquire_async(1).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn beyond_the_queue_timeout_is_refused_at_once() {
    let config = RateLimiterConfig::DEFAULT
        .with_requests_per_period(1)
        .with_burst(1)
        .with_queue_timeout(Duration::from_millis(500));
    let l = RateLimiter::with_timer("async-refuse", config, TokioClock::new()).unwrap();
    l.acquire_async(1).await.unwrap();
    let start = tokio::time::Instant::now();
    let out = l.execute_async(async { Ok::<_, ()>(()) }).await;
    assert!(matches!(out, Err(Error::RateLimited { .. })), "{out:?}");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(l.metrics().rejections, 1);
}

#[tokio::test(start_paused = true)]
async fn dispose_wakes_a_sleeping_task() {
    let config = RateLimiterConfig::DEFAULT
        .with_requests_per_period(1)
        .with_period(Duration::from_secs(3600))
        .with_burst(1)
        .with_queue_timeout(Duration::from_secs(7200));
    let l = Arc::new(RateLimiter::with_timer("async-dispose", config, TokioClock::new()).unwrap());
    l.acquire_async(1).await.unwrap();
    let task = {
        let l = Arc::clone(&l);
        tokio::spawn(async move { l.acquire_async(1).await })
    };
    until("the task reserved", || l.metrics().queue_depth == 1).await;
    let start = tokio::time::Instant::now();
    l.dispose();
    assert!(matches!(task.await.unwrap(), Err(Error::Disposed)));
    assert!(
        start.elapsed() < Duration::from_secs(3600),
        "woke only at its reservation"
    );
}

/// An acquisition books at its first poll, not before; a permit free then
/// is taken in that poll and counted once.
#[tokio::test(start_paused = true)]
async fn an_acquisition_books_at_its_first_poll() {
    let l = limiter();
    let mut acquiring = pin!(async_util::assert_send(l.acquire_async(1)));
    assert_eq!(
        l.core().available(l.timer()),
        1,
        "booked before the first poll"
    );
    assert!(matches!(poll_once(acquiring.as_mut()), Poll::Ready(Ok(()))));
    assert_eq!(l.core().available(l.timer()), 0);
    let m = l.metrics();
    assert_eq!((m.calls, m.successes, m.queue_depth), (1, 1, 0));
    // Polling it again is the caller's bug: a panic, not a second permit.
    let again = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
        poll_once(acquiring.as_mut())
    }));
    assert!(again.is_err());
    assert_eq!(l.metrics().successes, 1);
}

/// `acquire_timeout_async` waits at most its timeout: a longer wait is
/// refused at the first poll (booking nothing, one rejection counted), a
/// shorter one sleeps its reservation and is counted when it is ready.
#[tokio::test(start_paused = true)]
async fn acquire_timeout_async_refuses_or_waits() {
    let l = limiter();
    l.acquire_async(1).await.unwrap();
    let mut refused = pin!(l.acquire_timeout_async(1, Duration::from_millis(50)));
    assert!(matches!(
        poll_once(refused.as_mut()),
        Poll::Ready(Err(Error::RateLimited { .. }))
    ));
    let m = l.metrics();
    assert_eq!((m.rejections, m.queue_depth), (1, 0));
    let start = tokio::time::Instant::now();
    l.acquire_timeout_async(1, Duration::from_millis(150))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(l.metrics().successes, 2);
}
