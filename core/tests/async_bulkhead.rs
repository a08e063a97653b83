//! The bulkhead's async form (feature `async`, on tokio with paused
//! time): tasks and blocking threads share one FIFO, a dropped waiter
//! leaks nothing and hands on a permit granted to it, queue timeouts run
//! on tokio's time, dispose wakes waiting tasks.
#![cfg(not(stockade_loom))]

mod async_util;
use async_util::{DropFlag, poll_once, until};

use core::pin::pin;
use core::sync::atomic::Ordering::SeqCst;
use core::task::Poll;
use core::time::Duration;
use std::sync::{Arc, Mutex};

use stockade::blocking::{Bulkhead, Error, TokioClock};
use stockade::bulkhead::BulkheadConfig;

type Result<T, E = ()> = core::result::Result<T, Error<E>>;

fn bulkhead(max_concurrent: u32, max_queue: u32) -> Arc<Bulkhead<TokioClock>> {
    let config = BulkheadConfig::DEFAULT
        .with_max_concurrent(max_concurrent)
        .with_max_queue(max_queue)
        .with_queue_timeout(Duration::from_secs(30));
    Arc::new(Bulkhead::with_timer("async", config, TokioClock::new()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn runs_the_future_and_counts_it() {
    let b = bulkhead(2, 2);
    assert_eq!(b.execute_async(async { Ok::<_, ()>(7) }).await.unwrap(), 7);
    let failed: Result<u32, &str> = b.execute_async(async { Err("boom") }).await;
    assert_eq!(failed.unwrap_err().into_inner(), Some("boom"));
    let m = b.metrics();
    assert_eq!((m.successes, m.failures, m.in_flight), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_task_and_a_thread_share_one_fifo() {
    for async_first in [false, true] {
        let b = bulkhead(1, 4);
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = b.acquire().unwrap();
        let spawn_thread = |b: &Arc<Bulkhead<TokioClock>>| {
            let (b, order) = (Arc::clone(b), Arc::clone(&order));
            // `spawn_blocking` keeps the paused clock from auto-advancing
            // while the thread waits.
            tokio::task::spawn_blocking(move || {
                b.execute(|| {
                    order.lock().unwrap().push("thread");
                    Ok::<_, ()>(())
                })
            })
        };
        let spawn_task = |b: &Arc<Bulkhead<TokioClock>>| {
            let (b, order) = (Arc::clone(b), Arc::clone(&order));
            tokio::spawn(async move {
                b.execute_async(async {
                    order.lock().unwrap().push("task");
                    Ok::<_, ()>(())
                })
                .await
            })
        };
        let (thread, task) = if async_first {
            let task = spawn_task(&b);
            until("the task is queued", || b.metrics().queue_depth == 1).await;
            let thread = spawn_thread(&b);
            until("the thread is queued", || b.metrics().queue_depth == 2).await;
            (thread, task)
        } else {
            let thread = spawn_thread(&b);
            until("the thread is queued", || b.metrics().queue_depth == 1).await;
            let task = spawn_task(&b);
            until("the task is queued", || b.metrics().queue_depth == 2).await;
            (thread, task)
        };
        drop(held);
        thread.await.unwrap().unwrap();
        task.await.unwrap().unwrap();
        let expected = if async_first {
            ["task", "thread"]
        } else {
            ["thread", "task"]
        };
        assert_eq!(
            *order.lock().unwrap(),
            expected,
            "async first: {async_first}"
        );
        let m = b.metrics();
        assert_eq!((m.successes, m.in_flight, m.queue_depth), (3, 0, 0));
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_leaves_the_queue() {
    let b = bulkhead(1, 1);
    let held = b.acquire().unwrap();
    {
        let mut waiting = pin!(b.execute_async(async { Ok::<_, ()>(()) }));
        assert!(poll_once(waiting.as_mut()).is_pending());
        assert_eq!(b.metrics().queue_depth, 1);
        // The only queue place is taken.
        assert!(matches!(
            b.acquire_timeout(Duration::from_secs(1)),
            Err(Error::BulkheadFull)
        ));
    }
    assert_eq!(
        b.metrics().queue_depth,
        0,
        "the dropped waiter kept its place"
    );
    drop(held);
    let m = b.metrics();
    assert_eq!((m.in_flight, m.queue_depth), (0, 0));
    // The permit and the queue place are both usable again.
    let again = b.acquire().unwrap();
    let mut queued = pin!(b.acquire_async());
    assert!(poll_once(queued.as_mut()).is_pending());
    drop(again);
    assert!(matches!(poll_once(queued.as_mut()), Poll::Ready(Ok(_))));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_hands_its_granted_permit_to_the_next() {
    let b = bulkhead(1, 2);
    let held = b.acquire().unwrap();
    let mut first = Box::pin(b.execute_async(async { Ok::<_, ()>("first") }));
    let mut second = pin!(b.execute_async(async { Ok::<_, ()>("second") }));
    assert!(poll_once(first.as_mut()).is_pending());
    assert!(poll_once(second.as_mut()).is_pending());
    assert_eq!(b.metrics().queue_depth, 2);
    drop(held); // granted to `first`, which is never polled again
    assert_eq!((b.metrics().in_flight, b.metrics().queue_depth), (1, 1));
    drop(first);
    // The permit went on to `second`: it holds it now, and runs.
    assert_eq!((b.metrics().in_flight, b.metrics().queue_depth), (1, 0));
    assert!(matches!(
        poll_once(second.as_mut()),
        Poll::Ready(Ok("second"))
    ));
    let m = b.metrics();
    assert_eq!((m.in_flight, m.queue_depth, m.successes), (0, 0, 2));
}

#[tokio::test(start_paused = true)]
async fn a_future_dropped_while_running_releases_its_permit_uncounted() {
    let b = bulkhead(1, 1);
    let (guard, dropped) = DropFlag::new();
    {
        let mut running = pin!(b.execute_async(async move {
            let _guard = guard;
            core::future::pending::<()>().await;
            Ok::<_, ()>(())
        }));
        assert!(poll_once(running.as_mut()).is_pending());
        assert_eq!(b.metrics().in_flight, 1);
    }
    assert!(dropped.load(SeqCst));
    let m = b.metrics();
    assert_eq!((m.in_flight, m.calls, m.failures), (0, 0, 0));
    assert!(b.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_waiting_task_times_out_on_tokio_time() {
    let config = BulkheadConfig::DEFAULT
        .with_max_concurrent(1)
        .with_queue_timeout(Duration::from_millis(1500));
    let b = Bulkhead::with_timer("async-timeout", config, TokioClock::new()).unwrap();
    let held = b.acquire().unwrap();
    let start = tokio::time::Instant::now();
    let out = b.execute_async(async { Ok::<_, ()>(()) }).await;
    assert!(
        matches!(out, Err(Error::QueueTimeout { waited }) if waited == Duration::from_millis(1500)),
        "{out:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
    // A shorter wait than the config's, for a guard.
    let out = b.acquire_timeout_async(Duration::from_millis(200)).await;
    assert!(
        matches!(out, Err(Error::QueueTimeout { waited }) if waited == Duration::from_millis(200))
    );
    drop(held);
    let m = b.metrics();
    assert_eq!((m.timeouts, m.queue_depth, m.in_flight), (2, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn full_is_refused_at_once() {
    let b = bulkhead(1, 0);
    let _held = b.acquire().unwrap();
    let out = b.execute_async(async { Ok::<_, ()>(()) }).await;
    assert!(matches!(out, Err(Error::BulkheadFull)));
    assert_eq!(b.metrics().rejections, 1);
}

#[tokio::test(start_paused = true)]
async fn dispose_wakes_a_waiting_task() {
    let b = bulkhead(1, 1);
    let _held = b.acquire().unwrap();
    let task = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.execute_async(async { Ok::<_, ()>(()) }).await })
    };
    until("the task is queued", || b.metrics().queue_depth == 1).await;
    b.dispose();
    assert!(matches!(task.await.unwrap(), Err(Error::Disposed)));
    assert_eq!(b.metrics().queue_depth, 0);
}

#[tokio::test(start_paused = true)]
async fn the_default_clock_waits_on_tokio() {
    // `MonotonicClock` (the registered default) sleeps with tokio inside a
    // runtime: a full bulkhead with a short queue timeout times out.
    let name = format!("async-default-{}", std::process::id());
    let config = BulkheadConfig::DEFAULT
        .with_max_concurrent(1)
        .with_queue_timeout(Duration::from_millis(5));
    let b = Bulkhead::new(&name, config).unwrap();
    let _held = b.acquire().unwrap();
    let out = b.execute_async(async { Ok::<_, ()>(()) }).await;
    assert!(matches!(out, Err(Error::QueueTimeout { .. })), "{out:?}");
}
