//! The blocking Timeout on virtual time: the cooperative form and its
//! thread-local deadline (nesting), the detached form and its bounded pool
//! (exhaustion, panics, idle exit), dispose, registry, metrics and events.
#![cfg(all(feature = "std", not(stockade_loom)))]

mod common;
#[allow(unused_imports)]
use common::{unique, wait_for, wait_until, within};

use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use stockade::blocking::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_WORKERS, Error, Event, EventKind, PatternKind, Pipeline,
    Timeout, Timer, VirtualClock, current_deadline, with_deadline,
};
use stockade::clock::{Clock, Timestamp};
use stockade::deadline::{Deadline, TimeoutConfig};
use stockade::error::{ConfigOption, ConfigProblem};

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

fn at(d: Duration) -> Timestamp {
    Timestamp::from_nanos(d.as_nanos() as u64)
}

fn timeout(name: &str, limit: Duration) -> (Arc<VirtualClock>, Timeout<Arc<VirtualClock>>) {
    let clock = Arc::new(VirtualClock::new());
    let t = Timeout::with_timer(name, TimeoutConfig::new(limit).unwrap(), Arc::clone(&clock))
        .expect("valid config");
    (clock, t)
}

fn record_events<T: Timer>(t: &Timeout<T>) -> Arc<Mutex<Vec<Event>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    t.subscribe(move |e: &Event| sink.lock().unwrap().push(e.clone()));
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

/// Counts drops, to see that late results are dropped.
struct Tracked(Arc<AtomicUsize>);
impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn defaults() {
    assert_eq!(TimeoutConfig::default().timeout, MS(5000));
    let t = Timeout::unregistered("defaults", TimeoutConfig::default()).unwrap();
    assert_eq!(*t.config(), TimeoutConfig::DEFAULT);
    assert_eq!(t.max_workers(), DEFAULT_MAX_WORKERS);
    assert_eq!(DEFAULT_MAX_WORKERS, 16);
    assert_eq!(DEFAULT_IDLE_TIMEOUT, S(60));
    assert_eq!(t.workers(), 0, "no thread before the first detached call");
    assert_eq!(t.name(), "defaults");
}

#[test]
fn invalid_options_are_refused() {
    let zero = TimeoutConfig {
        timeout: Duration::ZERO,
    };
    assert!(matches!(
        Timeout::unregistered("bad", zero),
        Err(Error::InvalidConfig(e)) if e.option == ConfigOption::Timeout && e.problem == ConfigProblem::Zero
    ));
    let t = || Timeout::unregistered("bad-pool", TimeoutConfig::DEFAULT).unwrap();
    assert!(matches!(
        t().with_pool(0, S(1)),
        Err(Error::InvalidConfig(e)) if e.option == ConfigOption::MaxWorkers && e.problem == ConfigProblem::Zero
    ));
    assert!(matches!(
        t().with_pool(1, Duration::ZERO),
        Err(Error::InvalidConfig(e)) if e.option == ConfigOption::IdleTimeout && e.problem == ConfigProblem::Zero
    ));
}

#[test]
fn cooperative_call_gets_its_deadline() {
    let (clock, t) = timeout("coop", S(5));
    clock.advance(S(10));
    assert_eq!(current_deadline(), None);
    let out = t.execute_cooperative(|deadline| {
        assert_eq!(deadline, Deadline::at(at(S(15))));
        assert_eq!(current_deadline(), Some(deadline));
        assert_eq!(deadline.remaining(&*clock), S(5));
        clock.advance(S(4));
        Ok::<_, &str>(deadline.remaining(&*clock))
    });
    assert_eq!(out.unwrap(), S(1));
    assert_eq!(current_deadline(), None, "restored after the call");
    let out: Result<(), _> = t.execute_cooperative(|_| Err("failed in time"));
    assert!(matches!(out, Err(Error::Inner("failed in time"))));
}

#[test]
fn a_late_cooperative_result_is_dropped() {
    let (clock, t) = timeout("late", S(2));
    let events = record_events(&t);
    let dropped = Arc::new(AtomicUsize::new(0));
    let out = t.execute_cooperative(|deadline| {
        clock.advance(S(3));
        assert!(deadline.is_expired(&*clock));
        Ok::<_, ()>(Tracked(Arc::clone(&dropped)))
    });
    assert!(matches!(out, Err(Error::TimedOut { after }) if after == S(2)));
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the late value was dropped"
    );
    // Exactly at the deadline is too late; one nanosecond before is in time.
    let out = t.execute_cooperative(|_| {
        clock.advance(S(2));
        Ok::<_, ()>(())
    });
    assert!(matches!(out, Err(Error::TimedOut { .. })));
    let out = t.execute_cooperative(|_| {
        clock.advance(S(2) - Duration::from_nanos(1));
        Ok::<_, ()>(7)
    });
    assert_eq!(out.unwrap(), 7);
    // A late error is a timeout too.
    let out: Result<(), _> = t.execute_cooperative(|_| {
        clock.advance(S(5));
        Err("slow failure")
    });
    assert!(matches!(out, Err(Error::TimedOut { .. })));
    assert_eq!(
        kinds(&events),
        [
            EventKind::TimedOut { after: S(2) },
            EventKind::TimedOut { after: S(2) },
            EventKind::TimedOut { after: S(2) },
        ]
    );
    let m = t.metrics();
    assert_eq!((m.calls, m.successes, m.failures, m.timeouts), (4, 1, 0, 3));
}

#[test]
fn nested_timeouts_keep_the_earlier_deadline() {
    let clock = Arc::new(VirtualClock::new());
    let outer = Timeout::with_timer(
        "outer",
        TimeoutConfig::new(S(5)).unwrap(),
        Arc::clone(&clock),
    )
    .unwrap();
    let long = Timeout::with_timer(
        "long",
        TimeoutConfig::new(S(10)).unwrap(),
        Arc::clone(&clock),
    )
    .unwrap();
    let short = Timeout::with_timer(
        "short",
        TimeoutConfig::new(S(2)).unwrap(),
        Arc::clone(&clock),
    )
    .unwrap();
    let out = outer.execute_cooperative(|outer_deadline| {
        assert_eq!(outer_deadline.expires_at(), at(S(5)));
        clock.advance(S(1));
        // A longer inner timeout is bounded by the outer deadline...
        let inner = long.execute_cooperative(|d| {
            assert_eq!(d, outer_deadline);
            assert_eq!(current_deadline(), Some(outer_deadline));
            Ok::<_, ()>(())
        });
        assert!(inner.is_ok());
        // ...a shorter one keeps its own...
        let inner = short.execute_cooperative(|d| {
            assert_eq!(d.expires_at(), at(S(3)));
            assert_eq!(current_deadline(), Some(d));
            Ok::<_, ()>(())
        });
        assert!(inner.is_ok());
        assert_eq!(current_deadline(), Some(outer_deadline), "restored");
        // ...and a longer one that overruns the outer deadline times out
        // after the time it was allowed (4 s left of the outer 5 s).
        let inner = long.execute_cooperative(|_| {
            clock.advance(S(4));
            Ok::<_, ()>(())
        });
        assert!(
            matches!(inner, Err(Error::TimedOut { after }) if after == S(4)),
            "{inner:?}"
        );
        Ok::<_, ()>(())
    });
    // The outer call returned at its deadline exactly: too late.
    assert!(matches!(out, Err(Error::TimedOut { after }) if after == S(5)));
    assert_eq!(current_deadline(), None);
}

#[test]
fn an_expired_deadline_does_not_run_the_call() {
    let (clock, t) = timeout("expired", S(5));
    clock.advance(S(10));
    let ran = AtomicUsize::new(0);
    let out = with_deadline(Deadline::at(at(S(9))), || {
        t.execute_cooperative(|_| {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(())
        })
    });
    assert!(matches!(out, Err(Error::TimedOut { after }) if after == Duration::ZERO));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    let out = with_deadline(Deadline::at(at(S(9))), || t.execute(|| Ok::<_, ()>(())));
    assert!(matches!(out, Err(Error::TimedOut { .. })));
    assert_eq!(t.workers(), 0);
}

#[test]
fn a_panic_restores_the_current_deadline() {
    let (_clock, t) = timeout("panic-coop", S(5));
    let outer = Deadline::at(at(S(100)));
    with_deadline(outer, || {
        let caught = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
            let _ = t.execute_cooperative(|_| -> Result<(), ()> { panic!("in the call") });
        }));
        assert!(caught.is_err());
        assert_eq!(current_deadline(), Some(outer));
        assert_eq!(t.metrics().in_flight, 0);
    });
    assert_eq!(current_deadline(), None);
}

#[test]
fn policy_in_a_pipeline_sets_the_current_deadline() {
    let (clock, t) = timeout("policy", S(3));
    let pipeline = Pipeline::new().then(t.cooperative());
    let seen = pipeline.execute(|| Ok::<_, &str>(current_deadline()));
    assert_eq!(seen.unwrap(), Some(Deadline::at(at(S(3)))));
    // Errors of the call pass through unchanged; late ones become TimedOut.
    let out: Result<(), Error<&str>> = pipeline.execute(|| Err("inner"));
    assert!(matches!(out, Err(Error::Inner("inner"))));
    let out: Result<(), Error<&str>> = pipeline.execute(|| {
        clock.advance(S(3));
        Ok(())
    });
    assert!(matches!(out, Err(Error::TimedOut { .. })));
}

/// The worker blocks on a channel the test controls; the caller gets
/// `TimedOut` when the clock passes its deadline; then the worker is
/// released and finishes (its result dropped), and the pool is reusable.
#[test]
fn detached_caller_times_out_while_the_work_goes_on() {
    let (clock, t) = timeout("detached", S(2));
    let events = record_events(&t);
    let (release, blocked) = mpsc::channel::<()>();
    let finished = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    thread::scope(|s| {
        let caller = s.spawn(|| {
            let finished = Arc::clone(&finished);
            let dropped = Arc::clone(&dropped);
            t.execute(move || {
                blocked.recv().unwrap();
                finished.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(Tracked(dropped))
            })
        });
        // The caller parks on the clock; the worker is blocked on the channel.
        wait_for(|| clock.waiting() == 1 && t.busy_workers() == 1);
        clock.advance(S(2) - Duration::from_nanos(1));
        assert_eq!(clock.waiting(), 1, "caller woke before its deadline");
        clock.advance(Duration::from_nanos(1));
        let out = caller.join().unwrap();
        assert!(matches!(out, Err(Error::TimedOut { after }) if after == S(2)));
    });
    // The caller returned at the deadline, the work is still running.
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    assert_eq!(t.busy_workers(), 1);
    assert_eq!(t.metrics().in_flight, 0);
    release.send(()).unwrap();
    // The late result is dropped on the worker.
    wait_for(|| dropped.load(Ordering::SeqCst) == 1);
    assert_eq!(finished.load(Ordering::SeqCst), 1);
    wait_for(|| t.busy_workers() == 0);
    // The idle worker is reused.
    assert_eq!(t.workers(), 1);
    assert_eq!(t.execute(|| Ok::<_, ()>(5)).unwrap(), 5);
    assert_eq!(t.workers(), 1);
    assert_eq!(kinds(&events), [EventKind::TimedOut { after: S(2) }]);
    let m = t.metrics();
    assert_eq!((m.calls, m.successes, m.failures, m.timeouts), (2, 1, 0, 1));
}

#[test]
fn detached_results_and_errors_come_back() {
    let (_clock, t) = timeout("detached-ok", S(2));
    let on_worker = t.execute(|| Ok::<_, ()>(thread::current().name().map(String::from)));
    assert_eq!(
        on_worker.unwrap().as_deref(),
        Some("stockade-timeout:detached-ok")
    );
    let out: Result<(), _> = t.execute(|| Err("worker failed"));
    assert!(matches!(out, Err(Error::Inner("worker failed"))));
    let m = t.metrics();
    assert_eq!((m.calls, m.successes, m.failures), (2, 1, 1));
}

#[test]
fn an_exhausted_pool_refuses_at_once() {
    let (clock, t) = timeout("exhausted", S(10));
    let t = t.with_pool(2, S(60)).unwrap();
    let events = record_events(&t);
    let (release, blocked) = mpsc::channel::<()>();
    let blocked = Arc::new(Mutex::new(blocked));
    thread::scope(|s| {
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let blocked = Arc::clone(&blocked);
                let t = &t;
                s.spawn(move || {
                    t.execute(move || {
                        blocked.lock().unwrap().recv().unwrap();
                        Ok::<_, ()>(1)
                    })
                })
            })
            .collect();
        wait_for(|| t.busy_workers() == 2 && clock.waiting() == 2);
        // No third worker, no queue: refused at once, without waiting.
        let out = t.execute(|| Ok::<_, ()>(3));
        assert!(matches!(out, Err(Error::PoolFull)), "{out:?}");
        assert_eq!(t.workers(), 2);
        release.send(()).unwrap();
        release.send(()).unwrap();
        for c in callers {
            assert_eq!(c.join().unwrap().unwrap(), 1);
        }
    });
    assert_eq!(kinds(&events), [EventKind::Rejected { retry_after: None }]);
    let m = t.metrics();
    assert_eq!((m.calls, m.successes, m.rejections), (3, 2, 1));
    wait_for(|| t.busy_workers() == 0);
    assert_eq!(t.execute(|| Ok::<_, ()>(4)).unwrap(), 4);
}

#[test]
fn a_panicking_detached_call_is_an_error_and_the_pool_survives() {
    let (_clock, t) = timeout("panics", S(10));
    let t = t.with_pool(1, S(60)).unwrap();
    let out = t.execute(|| -> Result<(), ()> { panic!("worker bug") });
    match out {
        Err(Error::Panicked { message }) => assert_eq!(&*message, "worker bug"),
        other => panic!("{other:?}"),
    }
    let out = t.execute(|| -> Result<(), ()> { panic!("formatted {}", 42) });
    assert!(matches!(out, Err(Error::Panicked { message }) if &*message == "formatted 42"));
    // The one worker is still there and serves the next call.
    wait_for(|| t.busy_workers() == 0);
    assert_eq!(t.workers(), 1);
    assert_eq!(t.execute(|| Ok::<_, ()>("alive")).unwrap(), "alive");
    assert_eq!(t.workers(), 1);
    assert_eq!(t.metrics().failures, 2);
}

#[test]
fn idle_workers_exit_after_the_idle_timeout() {
    let (clock, t) = timeout("idle", S(10));
    let t = t.with_pool(4, S(30)).unwrap();
    assert_eq!(t.execute(|| Ok::<_, ()>(1)).unwrap(), 1);
    // The worker waits idle on the clock.
    wait_for(|| clock.waiting() == 1);
    assert_eq!(t.workers(), 1);
    clock.advance(S(30) - Duration::from_nanos(1));
    assert_eq!(t.workers(), 1);
    clock.advance(Duration::from_nanos(1));
    wait_for(|| t.workers() == 0);
    assert_eq!(clock.waiting(), 0);
    // A new call starts a new worker.
    assert_eq!(t.execute(|| Ok::<_, ()>(2)).unwrap(), 2);
    assert_eq!(t.workers(), 1);
}

#[test]
fn dispose_wakes_detached_callers() {
    let (clock, t) = timeout("dispose", S(10));
    let events = record_events(&t);
    let (release, blocked) = mpsc::channel::<()>();
    thread::scope(|s| {
        let caller = s.spawn(|| t.execute(move || blocked.recv().map_err(|_| ())));
        wait_for(|| clock.waiting() == 1 && t.busy_workers() == 1);
        t.dispose();
        assert!(matches!(caller.join().unwrap(), Err(Error::Disposed)));
    });
    assert_eq!(
        clock.now(),
        Timestamp::ZERO,
        "woken by dispose, not by time"
    );
    // Later calls of either form fail without running.
    let ran = AtomicUsize::new(0);
    let out = t.execute_cooperative(|_| {
        ran.fetch_add(1, Ordering::SeqCst);
        Ok::<_, ()>(())
    });
    assert!(matches!(out, Err(Error::Disposed)));
    assert!(matches!(
        t.execute(|| Ok::<_, ()>(())),
        Err(Error::Disposed)
    ));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(t.is_disposed());
    // The busy worker finishes its job, then exits.
    release.send(()).unwrap();
    wait_for(|| t.workers() == 0);
    t.dispose(); // idempotent
    assert_eq!(kinds(&events), [EventKind::Disposed]);
    let e = &events.lock().unwrap()[0];
    assert_eq!((e.pattern, &*e.name), (PatternKind::Timeout, "dispose"));
}

#[test]
fn dropping_the_timeout_stops_idle_workers() {
    let clock = Arc::new(VirtualClock::new());
    let t = Timeout::with_timer("drop", TimeoutConfig::DEFAULT, Arc::clone(&clock)).unwrap();
    t.execute(|| Ok::<_, ()>(())).unwrap();
    wait_for(|| clock.waiting() == 1);
    drop(t);
    // The idle worker leaves the clock without any time passing.
    wait_for(|| clock.waiting() == 0);
    assert_eq!(clock.now(), Timestamp::ZERO);
}

#[test]
fn registry() {
    let config = TimeoutConfig::new(S(3)).unwrap();
    let a = Timeout::get_or_create("reg-timeout", config).unwrap();
    assert!(Arc::ptr_eq(
        &a,
        &Timeout::get_or_create("reg-timeout", config).unwrap()
    ));
    assert!(Arc::ptr_eq(&a, &Timeout::get("reg-timeout").unwrap()));
    match Timeout::get_or_create("reg-timeout", TimeoutConfig::DEFAULT) {
        Err(Error::NameTaken { name }) => assert_eq!(&*name, "reg-timeout"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Timeout::get_or_create(
            "reg-bad",
            TimeoutConfig {
                timeout: Duration::ZERO
            }
        ),
        Err(Error::InvalidConfig(_))
    ));
    a.dispose();
    assert!(Timeout::get("reg-timeout").is_none());
    let b = Timeout::get_or_create("reg-timeout", TimeoutConfig::DEFAULT).unwrap();
    assert!(!Arc::ptr_eq(&a, &b));
}

#[test]
fn wrap_and_wrap_cooperative() {
    let (clock, t) = timeout("wrap", S(1));
    let parse = t.wrap(|s: &str| s.parse::<u32>().map_err(|_| "not a number"));
    assert_eq!(parse("42").unwrap(), 42);
    assert!(matches!(parse("x"), Err(Error::Inner("not a number"))));
    let slow = t.wrap_cooperative(|d: Duration| {
        assert!(current_deadline().is_some());
        clock.advance(d);
        Ok::<_, ()>(())
    });
    assert!(slow(MS(10)).is_ok());
    assert!(matches!(slow(S(2)), Err(Error::TimedOut { .. })));
    let double = t.wrap(|x: u64| Ok::<_, ()>(x * 2));
    assert_eq!(double(21).unwrap(), 42);
}

#[test]
fn metrics_track_in_flight_callers() {
    let (clock, t) = timeout("in-flight", S(10));
    thread::scope(|s| {
        let (go, wait) = mpsc::channel::<()>();
        let caller = s.spawn(|| t.execute_cooperative(move |_| wait.recv().map_err(|_| ())));
        wait_for(|| t.metrics().in_flight == 1);
        go.send(()).unwrap();
        caller.join().unwrap().unwrap();
    });
    assert_eq!(t.metrics().in_flight, 0);
    assert_eq!(clock.now(), Timestamp::ZERO);
    let m = t.metrics();
    assert_eq!((m.retries, m.queue_depth, m.state), (0, 0, None));
}
