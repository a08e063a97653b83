//! Fallback's and Hedging's async forms (feature `async`, tokio with
//! paused time): which errors a fallback replaces, when hedges launch, who
//! wins, that losers' futures are dropped, the cap, and a dropped call.
#![cfg(not(stockade_loom))]

mod async_util;
use async_util::{DropFlag, assert_send, poll_once};

use core::future::{pending, ready};
use core::sync::atomic::AtomicBool;
use core::sync::atomic::Ordering::SeqCst;
use core::time::Duration;
use std::sync::{Arc, Mutex};

use stockade::blocking::{
    Error, ErrorKind, EventKind, Fallback, FallbackConfig, Hedging, Pipeline, TokioClock,
};
use stockade::hedging::HedgingConfig;
use tokio::time::{Instant, sleep};

const MS: fn(u64) -> Duration = Duration::from_millis;

fn hedging(delay: Duration, attempts: u32, workers: usize) -> Hedging<TokioClock> {
    let config = HedgingConfig::DEFAULT
        .with_delay(delay)
        .with_max_attempts(attempts)
        .with_max_workers(workers);
    Hedging::with_timer("async-hedging", config, TokioClock::new()).unwrap()
}

/// Every event kind a pattern emits, in order.
fn record(
    subscribe: impl FnOnce(Box<dyn Fn(&stockade::blocking::Event) + Send + Sync>),
) -> Arc<Mutex<Vec<EventKind>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    subscribe(Box::new(move |e| sink.lock().unwrap().push(e.kind.clone())));
    events
}

/// What each attempt does: after how long, with what outcome (`Ok` with
/// the attempt's number, `Err` with a text), and the drop flag it holds.
struct Script {
    steps: Vec<(Duration, Result<(), &'static str>)>,
    launched: Mutex<Vec<Duration>>,
    flags: Vec<Arc<AtomicBool>>,
    guards: Mutex<Vec<Option<DropFlag>>>,
    start: Instant,
}

impl Script {
    fn new(steps: Vec<(Duration, Result<(), &'static str>)>) -> Script {
        let (guards, flags) = steps
            .iter()
            .map(|_| DropFlag::new())
            .map(|(g, f)| (Some(g), f))
            .unzip();
        Script {
            steps,
            launched: Mutex::new(Vec::new()),
            flags,
            guards: Mutex::new(guards),
            start: Instant::now(),
        }
    }

    /// The next attempt's future.
    fn attempt(&self) -> impl Future<Output = Result<usize, &'static str>> + Send + 'static {
        let mut launched = self.launched.lock().unwrap();
        let n = launched.len();
        launched.push(self.start.elapsed());
        let (after, outcome) = self.steps[n];
        let guard = self.guards.lock().unwrap()[n].take().unwrap();
        async move {
            let _guard = guard;
            sleep(after).await;
            outcome.map(|()| n + 1)
        }
    }

    fn launched(&self) -> Vec<Duration> {
        self.launched.lock().unwrap().clone()
    }

    fn dropped(&self, attempt: usize) -> bool {
        self.flags[attempt - 1].load(SeqCst)
    }
}

const FOREVER: Duration = Duration::from_secs(3600);

// --- Fallback ----------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn fallback_replaces_the_chosen_errors_only() {
    let f = Fallback::with_timer(
        "async-fallback",
        FallbackConfig::DEFAULT
            .on_kind(ErrorKind::Inner)
            .on_kind(ErrorKind::BulkheadFull)
            .on_error("soft"),
        TokioClock::new(),
    )
    .unwrap();
    let events = record(|l| {
        f.subscribe(l);
    });
    assert_eq!(
        f.execute_or_async(0, async { Ok::<_, &str>(5) })
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        f.execute_or_async(0, async { Err("soft") }).await.unwrap(),
        0
    );
    assert!(matches!(
        f.execute_or_async(0, async { Err("hard") }).await,
        Err(Error::Inner("hard"))
    ));
    // An async fallback, awaited; it may fail in turn.
    let slow = f
        .execute_or_else_async(
            |e| async move {
                sleep(MS(30)).await;
                Ok(format!("late, after {e}"))
            },
            async { Err("soft") },
        )
        .await;
    assert_eq!(slow.unwrap(), "late, after soft");
    let refused: Result<String, _> = f
        .execute_or_else_async(|_| ready(Err(Error::Inner("still soft"))), async {
            Err("soft")
        })
        .await;
    assert!(matches!(refused, Err(Error::Inner("still soft"))));
    // A predicate instead of the config.
    let chosen = f
        .execute_if_async(|e| matches!(e, Error::Inner(7)), |_| ready(Ok(1)), async {
            Err(7)
        })
        .await;
    assert_eq!(chosen.unwrap(), 1);
    let not_chosen = f
        .execute_if_async(|e| matches!(e, Error::Inner(7)), |_| ready(Ok(1)), async {
            Err(8)
        })
        .await;
    assert!(matches!(not_chosen, Err(Error::Inner(8))));
    // Stockade's own errors, around an already-lifted call.
    let kinds = f
        .run_or_else_async(async { Err::<u8, _>(Error::<&str>::BulkheadFull) }, |_| {
            ready(Ok(2))
        })
        .await;
    assert_eq!(kinds.unwrap(), 2);
    let timed_out = f
        .run_or_else_async(
            async { Err::<u8, _>(Error::<&str>::TimedOut { after: MS(1) }) },
            |_| ready(Ok(2)),
        )
        .await;
    assert!(matches!(timed_out, Err(Error::TimedOut { .. })));
    let m = f.metrics();
    assert_eq!(
        (m.calls, m.successes, m.failures, m.fallbacks),
        (9, 1, 3, 5)
    );
    let used = events
        .lock()
        .unwrap()
        .iter()
        .filter(|k| **k == EventKind::FallbackUsed)
        .count();
    assert_eq!(used, 5);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_fallback_call_drops_its_future_and_counts_nothing() {
    let f = Fallback::with_timer(
        "async-fallback-drop",
        FallbackConfig::DEFAULT,
        TokioClock::new(),
    )
    .unwrap();
    let (guard, dropped) = DropFlag::new();
    let out = tokio::time::timeout(
        MS(10),
        f.execute_or_async(0, async move {
            let _guard = guard;
            pending::<Result<u8, &str>>().await
        }),
    )
    .await;
    assert!(out.is_err());
    assert!(dropped.load(SeqCst));
    assert_eq!(f.metrics().calls, 0);
    f.dispose();
    let mut ran = false;
    let disposed = f
        .execute_or_async(0, async {
            ran = true;
            Ok::<_, &str>(1)
        })
        .await;
    assert!(matches!(disposed, Err(Error::Disposed)));
    assert!(!ran);
}

// --- Hedging -----------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_hedge_launches_exactly_after_the_delay_and_wins() {
    let h = hedging(MS(100), 2, 16);
    let events = record(|l| {
        h.subscribe(l);
    });
    let script = Script::new(vec![(FOREVER, Ok(())), (MS(10), Ok(()))]);
    let out = h.execute_async(|| script.attempt()).await;
    assert_eq!(out.unwrap(), 2);
    assert_eq!(script.launched(), [MS(0), MS(100)]);
    assert_eq!(script.start.elapsed(), MS(110));
    // The loser was dropped before the result came back.
    assert!(script.dropped(1));
    let m = h.metrics();
    assert_eq!(
        (m.calls, m.successes, m.hedges, m.hedges_won, m.in_flight),
        (1, 1, 1, 1, 0)
    );
    assert_eq!(
        *events.lock().unwrap(),
        [
            EventKind::HedgeLaunched { attempt: 2 },
            EventKind::HedgeWon { attempt: 2 }
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_first_success_wins_and_the_loser_is_dropped() {
    let h = hedging(MS(100), 3, 16);
    let script = Script::new(vec![
        (MS(150), Ok(())),
        (FOREVER, Ok(())),
        (FOREVER, Ok(())),
    ]);
    let out = h.execute_async(|| script.attempt()).await;
    assert_eq!(out.unwrap(), 1);
    assert_eq!(script.launched(), [MS(0), MS(100)]);
    assert!(script.dropped(2));
    let m = h.metrics();
    assert_eq!(
        (m.successes, m.hedges, m.hedges_won, m.in_flight),
        (1, 1, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_launches_the_next_attempt_at_once() {
    let h = hedging(Duration::from_secs(10), 2, 16);
    let script = Script::new(vec![(MS(5), Err("one")), (MS(1), Ok(()))]);
    let out = h.execute_async(|| script.attempt()).await;
    assert_eq!(out.unwrap(), 2);
    assert_eq!(script.launched(), [MS(0), MS(5)]);
    assert_eq!(h.metrics().hedges_won, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failure_the_filter_rejects_is_final_and_drops_the_attempts_in_flight() {
    let h = hedging(MS(100), 3, 16);
    // Attempt 1 hangs; attempt 2 (at 100 ms) fails with an error the
    // filter rejects at 110 ms: the call ends there, attempt 3 is never made.
    let script = Script::new(vec![
        (FOREVER, Ok(())),
        (MS(10), Err("fatal")),
        (MS(1), Ok(())),
    ]);
    let seen = Mutex::new(Vec::new());
    let out = h
        .execute_if_async(
            |e| {
                seen.lock().unwrap().push(format!("{e}"));
                !matches!(e, Error::Inner("fatal"))
            },
            || script.attempt(),
        )
        .await;
    assert!(matches!(out, Err(Error::Inner("fatal"))), "{out:?}");
    assert_eq!(script.launched(), [MS(0), MS(100)]);
    assert_eq!(script.start.elapsed(), MS(110));
    assert!(script.dropped(1), "the attempt in flight is cancelled");
    assert_eq!(*seen.lock().unwrap(), ["fatal"]);
    let m = h.metrics();
    assert_eq!(
        (m.calls, m.failures, m.hedges, m.hedges_won, m.in_flight),
        (1, 1, 1, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_the_filter_accepts_launches_the_next_attempt_at_once() {
    let h = hedging(Duration::from_secs(10), 3, 16);
    let script = Script::new(vec![
        (MS(5), Err("busy")),
        (MS(5), Err("busy")),
        (MS(1), Ok(())),
    ]);
    let out = h
        .execute_if_async(|e| matches!(e, Error::Inner("busy")), || script.attempt())
        .await;
    assert_eq!(out.unwrap(), 3);
    assert_eq!(script.launched(), [MS(0), MS(5), MS(10)]);
    let m = h.metrics();
    assert_eq!((m.successes, m.hedges, m.hedges_won), (1, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn accepted_failures_to_the_last_attempt_return_the_last_one() {
    let h = hedging(Duration::from_secs(10), 2, 16);
    let script = Script::new(vec![(MS(5), Err("busy")), (MS(5), Err("busy again"))]);
    let out = h
        .execute_if_async(|e| matches!(e, Error::Inner(_)), || script.attempt())
        .await;
    assert!(matches!(out, Err(Error::Inner("busy again"))), "{out:?}");
    assert_eq!(h.metrics().failures, 1);
}

#[tokio::test(start_paused = true)]
async fn when_every_attempt_fails_the_last_to_finish_is_returned() {
    let h = hedging(MS(100), 3, 16);
    // Attempt 1 finishes last, after 2 and 3 failed.
    let script = Script::new(vec![
        (MS(300), Err("one")),
        (MS(10), Err("two")),
        (MS(10), Err("three")),
    ]);
    let out = h.execute_async(|| script.attempt()).await;
    assert!(matches!(out, Err(Error::Inner("one"))), "{out:?}");
    assert_eq!(script.launched(), [MS(0), MS(100), MS(110)]);
    assert_eq!(script.start.elapsed(), MS(300));
    let m = h.metrics();
    assert_eq!(
        (m.calls, m.failures, m.hedges, m.hedges_won, m.in_flight),
        (1, 1, 2, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn the_cap_refuses_hedges_and_counts_them() {
    let h = hedging(MS(10), 3, 2);
    let events = record(|l| {
        h.subscribe(l);
    });
    let script = Script::new(vec![(FOREVER, Ok(())), (MS(30), Ok(())), (MS(1), Ok(()))]);
    let mut call = Box::pin(h.execute_async(|| script.attempt()));
    assert!(poll_once(call.as_mut()).is_pending());
    for _ in 0..2 {
        tokio::time::advance(MS(10)).await;
        assert!(poll_once(call.as_mut()).is_pending());
    }
    // Attempts 1 and 2 hold the two places; attempt 3, due at 20 ms, was refused.
    assert_eq!(script.launched(), [MS(0), MS(10)]);
    assert_eq!(h.metrics().in_flight, 2);
    assert_eq!(h.metrics().rejections, 1);
    // The call goes on with what it has: attempt 2 wins at 40 ms.
    assert_eq!(call.await.unwrap(), 2);
    assert_eq!(script.start.elapsed(), MS(40));
    assert_eq!(script.launched().len(), 2);
    let m = h.metrics();
    assert_eq!(
        (m.hedges, m.hedges_won, m.rejections, m.in_flight),
        (1, 1, 1, 0)
    );
    assert_eq!(
        *events.lock().unwrap(),
        [
            EventKind::HedgeLaunched { attempt: 2 },
            EventKind::Rejected { retry_after: None },
            EventKind::HedgeWon { attempt: 2 },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_first_attempt_refused_at_the_cap_runs_unhedged() {
    let h = hedging(MS(10), 2, 1);
    let holder = Script::new(vec![(FOREVER, Ok(()))]);
    let mut held = Box::pin(h.execute_async(|| holder.attempt()));
    assert!(poll_once(held.as_mut()).is_pending());
    assert_eq!(h.metrics().in_flight, 1);
    let script = Script::new(vec![(MS(50), Ok(())), (MS(1), Ok(()))]);
    assert_eq!(h.execute_async(|| script.attempt()).await.unwrap(), 1);
    // No hedge at 10 ms: the call ran without a place, unhedged.
    assert_eq!(script.launched(), [MS(0)]);
    let m = h.metrics();
    assert_eq!(
        (m.successes, m.hedges, m.rejections, m.in_flight),
        (1, 0, 1, 1)
    );
    drop(held);
    assert!(holder.dropped(1));
    assert_eq!(h.metrics().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_drops_every_attempt() {
    let h = hedging(MS(10), 3, 16);
    let script = Script::new(vec![(FOREVER, Ok(())); 3]);
    let mut call = Box::pin(h.execute_async(|| script.attempt()));
    assert!(poll_once(call.as_mut()).is_pending());
    for _ in 0..2 {
        tokio::time::advance(MS(10)).await;
        assert!(poll_once(call.as_mut()).is_pending());
    }
    assert_eq!(script.launched(), [MS(0), MS(10), MS(20)]);
    assert_eq!(h.metrics().in_flight, 3);
    assert!(!(1..=3).any(|n| script.dropped(n)));
    drop(call);
    assert!((1..=3).all(|n| script.dropped(n)));
    let m = h.metrics();
    assert_eq!((m.in_flight, m.calls), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn dispose_wakes_a_call_in_flight() {
    let h = hedging(MS(10), 2, 16);
    let script = Script::new(vec![(FOREVER, Ok(())); 2]);
    // Without the wake-up the call would sleep until its attempts finish.
    let (out, ()) = tokio::join!(h.execute_async(|| script.attempt()), async {
        sleep(MS(15)).await;
        h.dispose();
    });
    assert!(matches!(out, Err(Error::Disposed)), "{out:?}");
    assert_eq!(script.start.elapsed(), MS(15));
    assert!(script.dropped(1) && script.dropped(2));
    assert_eq!(h.metrics().in_flight, 0);
    assert!(matches!(
        h.execute_async(|| ready(Ok::<_, &str>(1))).await,
        Err(Error::Disposed)
    ));
}

#[tokio::test(start_paused = true)]
async fn hedging_and_fallback_compose_in_an_async_pipeline() {
    let h = hedging(MS(100), 2, 16);
    let f = Fallback::with_timer(
        "async-pipeline-fallback",
        FallbackConfig::DEFAULT,
        TokioClock::new(),
    )
    .unwrap();
    let pipeline = Pipeline::new().then_async(&h);
    // The hedge wins inside the pipeline; the future is `Send`.
    let script = Script::new(vec![(FOREVER, Ok(())), (MS(10), Ok(()))]);
    let won = assert_send(pipeline.execute_async(|| script.attempt())).await;
    assert_eq!(won.unwrap(), 2);
    assert!(script.dropped(1));
    // Every attempt fails: the last failure reaches the fallback outside.
    let script = Script::new(vec![(MS(150), Err("slow down")), (MS(10), Err("down"))]);
    let seen = Arc::new(Mutex::new(None));
    let out = {
        let seen = Arc::clone(&seen);
        let call = pipeline.execute_async(|| script.attempt());
        assert_send(f.run_or_else_async(call, move |e| {
            *seen.lock().unwrap() = Some(e.to_string());
            ready(Ok(0))
        }))
        .await
    };
    assert_eq!(out.unwrap(), 0);
    assert_eq!(seen.lock().unwrap().as_deref(), Some("slow down"));
    let m = h.metrics();
    assert_eq!(
        (m.calls, m.successes, m.failures, m.hedges, m.hedges_won),
        (2, 1, 1, 2, 1)
    );
    assert_eq!(f.metrics().fallbacks, 1);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_attempt_drops_the_others_and_counts_a_failure() {
    let h = Arc::new(hedging(MS(10), 2, 16));
    let (guard, dropped) = DropFlag::new();
    let task = {
        let h = Arc::clone(&h);
        let made = Arc::new(core::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(async move {
            let guard = Arc::new(Mutex::new(Some(guard)));
            h.execute_async(|| {
                let n = made.fetch_add(1, SeqCst);
                let guard = guard.lock().unwrap().take();
                async move {
                    let _guard = guard;
                    if n == 0 {
                        sleep(FOREVER).await;
                    } else {
                        sleep(MS(5)).await;
                        panic!("attempt 2 panics");
                    }
                    Ok::<_, &str>(n)
                }
            })
            .await
        })
    };
    let out = task.await;
    assert!(out.is_err_and(|e| e.is_panic()));
    assert!(dropped.load(SeqCst));
    let m = h.metrics();
    assert_eq!((m.calls, m.failures, m.hedges, m.in_flight), (1, 1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_fallback_call_counts_a_failure() {
    let f = Arc::new(
        Fallback::with_timer(
            "async-fallback-panic",
            FallbackConfig::DEFAULT,
            TokioClock::new(),
        )
        .unwrap(),
    );
    let task = {
        let f = Arc::clone(&f);
        tokio::spawn(async move {
            f.execute_or_async(0, async {
                sleep(MS(5)).await;
                panic!("the call panics");
                #[allow(unreachable_code)]
                Ok::<u8, &str>(1)
            })
            .await
        })
    };
    assert!(task.await.is_err_and(|e| e.is_panic()));
    let m = f.metrics();
    assert_eq!((m.calls, m.failures, m.fallbacks), (1, 1, 0));
}
