//! The blocking Fallback and Hedging: which errors a fallback replaces
//! (Stockade's own refusals included), its stage in a dyn pipeline, and
//! hedging's races on virtual time, driven by gates (no sleeps): who wins,
//! what a failure does, the full pool, dispose, events, metrics, registry.
#![cfg(all(feature = "std", not(stockade_loom)))]

mod common;
#[allow(unused_imports)]
use common::{PATIENCE, unique, wait_until};

use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;

use stockade::blocking::{
    BoxError, DynPipeline, DynPolicy, DynValue, Error, ErrorKind, Event, EventKind, Fallback,
    FallbackConfig, Hedging, PatternKind, Pipeline, VirtualClock,
};
use stockade::breaker::BreakerConfig;
use stockade::bulkhead::BulkheadConfig;
use stockade::error::ConfigOption;
use stockade::hedging::{HedgingConfig, MAX_HEDGED_ATTEMPTS};

const MS: fn(u64) -> Duration = Duration::from_millis;

/// A gate an attempt waits at until the test opens it; a wait longer than
/// the watchdog panics (the attempt then fails as `Panicked`).
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cond: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cond.notify_all();
    }

    fn wait(&self) {
        let guard = self.open.lock().unwrap();
        let (_guard, timeout) = self
            .cond
            .wait_timeout_while(guard, PATIENCE, |open| !*open)
            .unwrap();
        assert!(!timeout.timed_out(), "watchdog: the gate was never opened");
    }
}

type VHedging = Hedging<Arc<VirtualClock>>;

fn hedging(config: HedgingConfig) -> (Arc<VirtualClock>, Arc<VHedging>) {
    let clock = Arc::new(VirtualClock::new());
    let h = Hedging::with_timer(unique("hedging"), config, Arc::clone(&clock)).unwrap();
    (clock, Arc::new(h))
}

fn record(h: &VHedging) -> Arc<Mutex<Vec<Event>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    h.subscribe(move |e| sink.lock().unwrap().push(e.clone()));
    events
}

fn kinds(events: &Mutex<Vec<Event>>) -> Vec<EventKind> {
    events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.kind.clone())
        .collect()
}

/// Runs `f` on a thread; the handle's `join` fails on the watchdog.
struct Caller<R>(mpsc::Receiver<R>);

impl<R: Send + 'static> Caller<R> {
    fn spawn(f: impl FnOnce() -> R + Send + 'static) -> Caller<R> {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(f());
        });
        Caller(rx)
    }

    fn join(self) -> R {
        self.0
            .recv_timeout(PATIENCE)
            .expect("watchdog: the call did not return")
    }
}

/// A value that counts its drops: the losers' results are dropped.
struct Counted(u32, Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_hedge_launched_after_the_delay_wins_and_the_loser_is_detached() {
    let (clock, h) = hedging(HedgingConfig::DEFAULT.with_delay(MS(100)));
    let events = record(&h);
    let gate = Arc::new(Gate::default());
    let started = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let caller = {
        let (h, gate, started, dropped) = (
            Arc::clone(&h),
            Arc::clone(&gate),
            Arc::clone(&started),
            Arc::clone(&dropped),
        );
        Caller::spawn(move || {
            h.execute(move || {
                let n = started.fetch_add(1, Ordering::SeqCst) as u32 + 1;
                if n == 1 {
                    gate.wait();
                }
                Ok::<_, &str>(Counted(n, Arc::clone(&dropped)))
            })
        })
    };
    // The caller waits for the hedge's due time; attempt 1 is blocked.
    wait_until("the caller waits on the clock", || {
        clock.waiting() == 1 && started.load(Ordering::SeqCst) == 1
    });
    clock.advance(MS(100));
    let won = caller.join().unwrap();
    assert_eq!(won.0, 2);
    assert_eq!(started.load(Ordering::SeqCst), 2);
    let m = h.metrics();
    assert_eq!((m.calls, m.successes, m.failures), (1, 1, 0));
    assert_eq!((m.hedges, m.hedges_won, m.rejections), (1, 1, 0));
    assert_eq!(
        kinds(&events),
        [
            EventKind::HedgeLaunched { attempt: 2 },
            EventKind::HedgeWon { attempt: 2 }
        ]
    );
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .all(|e| e.pattern == PatternKind::Hedging)
    );
    // The loser runs on after the call returned; its result is dropped.
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
    gate.open();
    wait_until("the loser's result is dropped", || {
        dropped.load(Ordering::SeqCst) == 1
    });
    drop(won);
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
    wait_until("the loser's worker is free", || h.metrics().in_flight == 0);
}

#[test]
fn a_fast_first_attempt_launches_no_hedge() {
    let (_clock, h) = hedging(HedgingConfig::DEFAULT.with_max_attempts(5));
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    let out = h.execute(move || Ok::<_, &str>(r.fetch_add(1, Ordering::SeqCst)));
    assert_eq!(out.unwrap(), 0);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let m = h.metrics();
    assert_eq!((m.successes, m.hedges, m.hedges_won), (1, 0, 0));
}

#[test]
fn a_failure_launches_the_next_attempt_without_waiting_for_the_delay() {
    // The clock never moves: only the failure can launch attempt 2.
    let (_clock, h) = hedging(HedgingConfig::DEFAULT.with_delay(Duration::from_secs(3600)));
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    let out = Caller::spawn({
        let h = Arc::clone(&h);
        move || {
            h.execute(move || match r.fetch_add(1, Ordering::SeqCst) {
                0 => Err("flaky"),
                n => Ok(n),
            })
        }
    })
    .join();
    assert_eq!(out.unwrap(), 1);
    let m = h.metrics();
    assert_eq!((m.successes, m.hedges, m.hedges_won), (1, 1, 1));
}

#[test]
fn a_failure_the_filter_rejects_is_final_and_launches_nothing() {
    // The clock never moves: without the filter the failure would launch
    // attempt 2 at once.
    let (_clock, h) = hedging(
        HedgingConfig::DEFAULT
            .with_delay(Duration::from_secs(3600))
            .with_max_attempts(3),
    );
    let events = record(&h);
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let out = Caller::spawn({
        let h = Arc::clone(&h);
        move || {
            h.execute_if(
                move |e: &Error<&str>| {
                    s.lock().unwrap().push(e.to_string());
                    !matches!(e, Error::Inner("not found"))
                },
                move || {
                    r.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>("not found")
                },
            )
        }
    })
    .join();
    assert!(matches!(out, Err(Error::Inner("not found"))), "{out:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(*seen.lock().unwrap(), ["not found"]);
    let m = h.metrics();
    assert_eq!((m.calls, m.failures, m.hedges), (1, 1, 0));
    assert!(kinds(&events).is_empty(), "{:?}", kinds(&events));
}

#[test]
fn a_failure_the_filter_accepts_launches_the_next_attempt_at_once() {
    let (_clock, h) = hedging(
        HedgingConfig::DEFAULT
            .with_delay(Duration::from_secs(3600))
            .with_max_attempts(3),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    let out = Caller::spawn({
        let h = Arc::clone(&h);
        move || {
            h.execute_if(
                |e: &Error<&str>| matches!(e, Error::Inner("busy")),
                move || match r.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err("busy"),
                    n => Ok(n),
                },
            )
        }
    })
    .join();
    assert_eq!(out.unwrap(), 2);
    let m = h.metrics();
    assert_eq!((m.successes, m.hedges, m.hedges_won), (1, 2, 1));
}

#[test]
fn a_rejected_failure_ends_the_call_while_an_attempt_is_in_flight() {
    let (clock, h) = hedging(
        HedgingConfig::DEFAULT
            .with_delay(MS(100))
            .with_max_attempts(3),
    );
    let gate = Arc::new(Gate::default());
    let started = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let caller = {
        let (h, gate, started, dropped) = (
            Arc::clone(&h),
            Arc::clone(&gate),
            Arc::clone(&started),
            Arc::clone(&dropped),
        );
        Caller::spawn(move || {
            h.execute_if(
                |e: &Error<&str>| !matches!(e, Error::Inner("fatal")),
                move || {
                    let n = started.fetch_add(1, Ordering::SeqCst) as u32 + 1;
                    if n == 1 {
                        // In flight when attempt 2 fails; it then succeeds.
                        gate.wait();
                        return Ok(Counted(n, Arc::clone(&dropped)));
                    }
                    Err("fatal")
                },
            )
        })
    };
    wait_until("the caller waits on the clock", || {
        clock.waiting() == 1 && started.load(Ordering::SeqCst) == 1
    });
    clock.advance(MS(100));
    // Attempt 2's rejected failure is the result although attempt 1 is
    // still running; attempt 3 is never launched.
    let out = caller.join();
    assert!(matches!(out, Err(Error::Inner("fatal"))), "{:?}", out.err());
    assert_eq!(started.load(Ordering::SeqCst), 2);
    let m = h.metrics();
    assert_eq!((m.calls, m.failures, m.hedges, m.hedges_won), (1, 1, 1, 0));
    // Attempt 1 runs on, detached (attempt 2's worker frees itself soon).
    wait_until("only attempt 1 runs", || h.metrics().in_flight == 1);
    gate.open();
    wait_until("the loser's success is dropped", || {
        dropped.load(Ordering::SeqCst) == 1
    });
    wait_until("the loser's worker is free", || h.metrics().in_flight == 0);
    assert_eq!(h.metrics().successes, 0);
}

#[test]
fn a_panic_reaches_the_filter_as_panicked() {
    let (_clock, h) = hedging(
        HedgingConfig::DEFAULT
            .with_delay(Duration::from_secs(3600))
            .with_max_attempts(2),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    let out = Caller::spawn({
        let h = Arc::clone(&h);
        move || {
            h.execute_if(
                |e: &Error<&str>| e.kind() != ErrorKind::Panicked,
                move || -> Result<(), &str> {
                    r.fetch_add(1, Ordering::SeqCst);
                    panic!("attempt exploded")
                },
            )
        }
    })
    .join();
    match out {
        Err(Error::Panicked { message }) => assert!(message.contains("attempt exploded")),
        other => panic!("expected Panicked, got {:?}", other.err()),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn a_panicking_filter_unwinds_to_the_caller_and_counts_a_failure() {
    let (_clock, h) = hedging(HedgingConfig::DEFAULT.with_delay(Duration::from_secs(3600)));
    let out = Caller::spawn({
        let h = Arc::clone(&h);
        move || {
            std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
                h.execute_if(
                    |_: &Error<&str>| panic!("filter exploded"),
                    || Err::<(), _>("busy"),
                )
            }))
        }
    })
    .join();
    assert!(out.is_err(), "the filter's panic reaches the caller");
    let m = h.metrics();
    assert_eq!((m.calls, m.failures, m.hedges), (1, 1, 0));
    wait_until("the worker is free", || h.metrics().in_flight == 0);
}

#[test]
fn a_failing_hedge_launches_the_next_while_the_first_still_runs() {
    let (clock, h) = hedging(
        HedgingConfig::DEFAULT
            .with_delay(MS(100))
            .with_max_attempts(3),
    );
    let gate = Arc::new(Gate::default());
    let started = Arc::new(AtomicUsize::new(0));
    let caller = Caller::spawn({
        let (h, gate, started) = (Arc::clone(&h), Arc::clone(&gate), Arc::clone(&started));
        move || {
            h.execute(move || match started.fetch_add(1, Ordering::SeqCst) + 1 {
                1 => {
                    gate.wait();
                    Ok(1)
                }
                2 => Err("hedge failed"),
                n => Ok(n),
            })
        }
    });
    wait_until("the caller waits for the first hedge", || {
        clock.waiting() == 1 && started.load(Ordering::SeqCst) == 1
    });
    // One delay: attempt 2 starts and fails; attempt 3 starts at once,
    // with no second delay (the clock is not advanced again).
    clock.advance(MS(100));
    assert_eq!(caller.join().unwrap(), 3);
    let m = h.metrics();
    assert_eq!((m.hedges, m.hedges_won), (2, 1));
    gate.open();
}

#[test]
fn when_every_attempt_fails_the_last_to_finish_is_returned() {
    let (_clock, h) = hedging(
        HedgingConfig::DEFAULT
            .with_delay(Duration::ZERO)
            .with_max_attempts(3),
    );
    let gates: Arc<Vec<Gate>> = Arc::new((0..3).map(|_| Gate::default()).collect());
    let started = Arc::new(AtomicUsize::new(0));
    let caller = Caller::spawn({
        let (h, gates, started) = (Arc::clone(&h), Arc::clone(&gates), Arc::clone(&started));
        move || {
            h.execute(move || -> Result<(), String> {
                let n = started.fetch_add(1, Ordering::SeqCst);
                gates[n].wait();
                Err(format!("attempt {}", n + 1))
            })
        }
    });
    wait_until("every attempt runs", || h.metrics().in_flight == 3);
    gates[1].open();
    gates[2].open();
    wait_until("attempts 2 and 3 delivered", || h.metrics().in_flight == 1);
    gates[0].open();
    let out = caller.join();
    assert_eq!(out.unwrap_err().into_inner().unwrap(), "attempt 1");
    let m = h.metrics();
    assert_eq!((m.calls, m.failures, m.hedges, m.hedges_won), (1, 1, 2, 0));
}

#[test]
fn a_full_pool_means_no_hedge_and_is_counted() {
    let (clock, h) = hedging(
        HedgingConfig::DEFAULT
            .with_delay(MS(10))
            .with_max_workers(1),
    );
    let events = record(&h);
    let gate = Arc::new(Gate::default());
    let caller = Caller::spawn({
        let (h, gate) = (Arc::clone(&h), Arc::clone(&gate));
        move || {
            h.execute(move || {
                gate.wait();
                Ok::<_, &str>("first")
            })
        }
    });
    wait_until("the caller waits for the hedge", || {
        clock.waiting() == 1 && h.metrics().in_flight == 1
    });
    clock.advance(MS(10));
    wait_until("the hedge was refused", || h.metrics().rejections == 1);
    gate.open();
    assert_eq!(caller.join().unwrap(), "first");
    let m = h.metrics();
    assert_eq!((m.successes, m.hedges, m.rejections), (1, 0, 1));
    assert_eq!(kinds(&events), [EventKind::Rejected { retry_after: None }]);
}

#[test]
fn a_first_attempt_that_finds_the_pool_full_runs_on_the_caller_unhedged() {
    let (_clock, h) = hedging(HedgingConfig::DEFAULT.with_max_workers(1));
    let gate = Arc::new(Gate::default());
    let busy = Caller::spawn({
        let (h, gate) = (Arc::clone(&h), Arc::clone(&gate));
        move || {
            h.execute(move || {
                gate.wait();
                Ok::<_, &str>(thread::current().id())
            })
        }
    });
    wait_until("the only worker is busy", || h.metrics().in_flight == 1);
    let me = thread::current().id();
    let inline = h.execute(|| Ok::<_, &str>(thread::current().id()));
    assert_eq!(inline.unwrap(), me);
    assert_eq!(h.metrics().rejections, 1);
    gate.open();
    assert_ne!(busy.join().unwrap(), me);
}

#[test]
fn a_panicking_attempt_fails_as_panicked() {
    let (_clock, h) = hedging(HedgingConfig::DEFAULT.with_max_attempts(1));
    let out: Result<(), Error<&str>> = h.execute(|| panic!("attempt bug"));
    assert!(matches!(out, Err(Error::Panicked { ref message }) if &**message == "attempt bug"));
    assert_eq!(h.metrics().failures, 1);
}

#[test]
fn dispose_wakes_a_waiting_caller() {
    let (clock, h) = hedging(HedgingConfig::DEFAULT);
    let events = record(&h);
    let gate = Arc::new(Gate::default());
    let caller = Caller::spawn({
        let (h, gate) = (Arc::clone(&h), Arc::clone(&gate));
        move || {
            h.execute(move || {
                gate.wait();
                Ok::<_, &str>(())
            })
        }
    });
    wait_until("the caller waits", || clock.waiting() == 1);
    h.dispose();
    assert!(matches!(caller.join(), Err(Error::Disposed)));
    assert!(matches!(
        h.execute(|| Ok::<_, &str>(())),
        Err(Error::Disposed)
    ));
    assert_eq!(kinds(&events), [EventKind::Disposed]);
    gate.open();
}

#[test]
fn invalid_configs_name_the_option() {
    let option = |c: HedgingConfig| match Hedging::unregistered("bad", c) {
        Err(Error::InvalidConfig(e)) => e.option,
        other => panic!("accepted: {other:?}"),
    };
    assert_eq!(
        option(HedgingConfig::DEFAULT.with_max_attempts(0)),
        ConfigOption::MaxAttempts
    );
    assert_eq!(
        option(HedgingConfig::DEFAULT.with_max_attempts(MAX_HEDGED_ATTEMPTS + 1)),
        ConfigOption::MaxAttempts
    );
    assert_eq!(
        option(HedgingConfig::DEFAULT.with_max_workers(0)),
        ConfigOption::MaxWorkers
    );
}

#[test]
fn both_patterns_are_registered_by_name() {
    let name = unique("registered");
    let h = Hedging::new(&name, HedgingConfig::DEFAULT).unwrap();
    assert!(matches!(
        Hedging::new(&name, HedgingConfig::DEFAULT),
        Err(Error::NameTaken { .. })
    ));
    assert!(Arc::ptr_eq(&h, &Hedging::get(&name).unwrap()));
    h.dispose();
    assert!(Hedging::get(&name).is_none());

    let f = Fallback::new(&name, FallbackConfig::DEFAULT).unwrap();
    assert!(matches!(
        Fallback::new(&name, FallbackConfig::DEFAULT),
        Err(Error::NameTaken { .. })
    ));
    assert!(Arc::ptr_eq(&f, &Fallback::get_fallback(&name)));
    f.dispose();
    assert!(Fallback::get(&name).is_none());
}

#[test]
fn a_fallback_replaces_stockades_own_refusals() {
    let bulkhead = stockade::blocking::Bulkhead::unregistered(
        "fb",
        BulkheadConfig::DEFAULT
            .with_max_concurrent(1)
            .with_max_queue(0),
    )
    .unwrap();
    let fallback = Fallback::unregistered(
        "fb",
        FallbackConfig::DEFAULT.on_kind(ErrorKind::BulkheadFull),
    )
    .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    fallback.subscribe(move |e| sink.lock().unwrap().push(e.kind.clone()));
    let pipeline = Pipeline::new().then(&bulkhead);
    let _held = bulkhead.try_acquire().unwrap();
    let out = fallback.run_or_else(
        || pipeline.execute(|| Ok::<_, &str>("live")),
        |_| Ok("cached"),
    );
    assert_eq!(out.unwrap(), "cached");
    drop(_held);
    let out = fallback.run_or_else(
        || pipeline.execute(|| Err::<&str, _>("down")),
        |_| Ok("cached"),
    );
    assert!(matches!(out, Err(Error::Inner("down"))));
    let m = fallback.metrics();
    assert_eq!((m.calls, m.fallbacks, m.failures), (2, 1, 1));
    assert_eq!(*events.lock().unwrap(), [EventKind::FallbackUsed]);
}

#[test]
fn fallback_and_hedging_compose_in_a_dyn_pipeline() {
    let breaker = Arc::new(
        stockade::blocking::CircuitBreaker::unregistered(
            "dyn",
            BreakerConfig::DEFAULT.with_failure_threshold(1),
        )
        .unwrap(),
    );
    let fallback = Arc::new(Fallback::unregistered("dyn", FallbackConfig::DEFAULT).unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stage = {
        let seen = Arc::clone(&seen);
        fallback.stage_if(
            |e: &Error<BoxError>| e.kind() == ErrorKind::BreakerOpen,
            move |e| {
                seen.lock().unwrap().push(e.kind());
                Ok(Box::new(0u32) as DynValue)
            },
        )
    };
    let (_clock, h) = hedging(HedgingConfig::DEFAULT.with_max_attempts(2));
    let stages: Vec<Arc<dyn DynPolicy>> = vec![Arc::new(stage), breaker, h.clone()];
    let pipeline = DynPipeline::new(stages);
    // Both attempts fail (a failure launches the hedge at once): the
    // breaker opens; the error is not the fallback's.
    let failed = pipeline.execute(|| Err::<u32, _>("down"));
    assert_eq!(failed.unwrap_err().to_string(), "down");
    assert_eq!(h.metrics().hedges, 1);
    // Now the breaker refuses: the fallback's value comes back.
    assert_eq!(pipeline.execute(|| Ok::<u32, &str>(7)).unwrap(), 0);
    assert_eq!(*seen.lock().unwrap(), [ErrorKind::BreakerOpen]);
    assert_eq!(fallback.metrics().fallbacks, 1);
}

#[test]
fn many_callers_racing_hedges_all_get_their_answer() {
    const CALLERS: usize = 8;
    const CALLS: usize = 50;
    // Delay 0: every call launches all its attempts at once; a small pool
    // makes some of them find it full.
    let h = Arc::new(
        Hedging::unregistered(
            "stress",
            HedgingConfig::DEFAULT
                .with_delay(Duration::ZERO)
                .with_max_attempts(3)
                .with_max_workers(4),
        )
        .unwrap(),
    );
    let callers: Vec<Caller<usize>> = (0..CALLERS)
        .map(|c| {
            let h = Arc::clone(&h);
            Caller::spawn(move || {
                (0..CALLS)
                    .filter(|i| {
                        let want = c * CALLS + i;
                        h.execute(move || Ok::<_, &str>(want)).ok() == Some(want)
                    })
                    .count()
            })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.join(), CALLS);
    }
    let m = h.metrics();
    assert_eq!(
        (m.calls, m.successes),
        ((CALLERS * CALLS) as u64, (CALLERS * CALLS) as u64)
    );
    assert!(m.hedges_won <= m.hedges);
    wait_until("every attempt is done", || h.metrics().in_flight == 0);
}
