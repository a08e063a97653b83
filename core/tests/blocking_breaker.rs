//! The blocking circuit breaker through its public API, on virtual time.
#![cfg(not(stockade_loom))]

mod common;
#[allow(unused_imports)]
use common::{unique, wait_for, wait_until, within};

use core::panic::AssertUnwindSafe;
use core::time::Duration;
use std::panic::catch_unwind;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;

use stockade::blocking::{
    CircuitBreaker, Error, Event, EventKind, PatternKind, Pipeline, Policy, Timer, VirtualClock,
};
use stockade::breaker::{BreakerConfig, BreakerState, Outcome};
use stockade::clock::{Clock, Timestamp};

type Breaker = CircuitBreaker<Arc<VirtualClock>>;

const SEC: Duration = Duration::from_secs(1);
/// How late the core's timers may end: two ticks (1 ns each with the 64-bit
/// state layout, about 1 ms with the 32-bit one).
const SLACK: Duration =
    Duration::from_nanos(2 * stockade::breaker::CircuitBreaker::TICK.as_nanos() as u64);

/// `d` and the core's rounding slack: a timeout of `d` has surely ended.
fn late(d: Duration) -> Duration {
    d + SLACK
}

#[track_caller]
fn assert_about(actual: Duration, expected: Duration) {
    assert!(
        actual >= expected && actual <= expected + SLACK,
        "{actual:?} is not {expected:?} (+ {SLACK:?})"
    );
}
/// Long enough that no monitor event fires in tests about other events.
const NO_MONITOR: Duration = Duration::from_secs(1_000_000);

fn config() -> BreakerConfig {
    BreakerConfig::DEFAULT
        .with_failure_threshold(3)
        .with_reset_timeout(Duration::from_secs(30))
        .with_half_open_timeout(Duration::from_secs(5))
        .with_monitor_interval(NO_MONITOR)
}

fn breaker(name: &str, config: BreakerConfig) -> (Breaker, Arc<VirtualClock>) {
    let clock = Arc::new(VirtualClock::new());
    let breaker = CircuitBreaker::with_timer(name, config, Arc::clone(&clock)).expect("valid");
    (breaker, clock)
}

fn succeed(b: &Breaker) -> Result<u32, Error<&'static str>> {
    b.execute(|| Ok(1))
}

fn fail(b: &Breaker) -> Result<u32, Error<&'static str>> {
    b.execute(|| Err("boom"))
}

#[track_caller]
fn assert_refused(result: Result<u32, Error<&'static str>>, state: BreakerState) -> Duration {
    match result {
        Err(Error::BreakerOpen {
            state: s,
            retry_after,
        }) => {
            assert_eq!(s, state);
            retry_after
        }
        other => panic!("expected a refusal in {state:?}, got {other:?}"),
    }
}

/// Collects every event; filtered views below.
fn collect(b: &Breaker) -> Arc<Mutex<Vec<Event>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    b.subscribe(move |e| sink.lock().unwrap().push(e.clone()));
    events
}

fn changes(events: &Mutex<Vec<Event>>) -> Vec<(BreakerState, BreakerState)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::StateChanged { from, to, .. } => Some((from, to)),
            _ => None,
        })
        .collect()
}

fn recv(rx: &Receiver<Event>) -> Event {
    // A guard against hanging, not a timing assertion.
    rx.recv_timeout(Duration::from_secs(120))
        .expect("an event should arrive")
}

#[test]
fn every_transition_through_execute() {
    let (b, clock) = breaker("t-cycle", config());
    let runs = core::cell::Cell::new(0);
    let counted = |b: &Breaker| {
        b.execute(|| {
            runs.set(runs.get() + 1);
            Err::<u32, _>("boom")
        })
    };

    // Closed: failures are consecutive; a success resets the count.
    assert!(matches!(counted(&b), Err(Error::Inner("boom"))));
    assert!(matches!(counted(&b), Err(Error::Inner("boom"))));
    assert_eq!(succeed(&b).unwrap(), 1);
    counted(&b).unwrap_err();
    counted(&b).unwrap_err();
    assert_eq!(b.state(), BreakerState::Closed);
    counted(&b).unwrap_err();
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(runs.get(), 5);

    // Open: refused without running, until reset_timeout.
    let retry_after = assert_refused(counted(&b), BreakerState::Open);
    assert_about(retry_after, Duration::from_secs(30));
    assert_eq!(runs.get(), 5, "the closure must not run while open");
    clock.advance(Duration::from_secs(29));
    assert_about(assert_refused(succeed(&b), BreakerState::Open), SEC);
    clock.advance(late(SEC));

    // Half-open: one probe; others are refused while it runs.
    let inside = b.execute(|| {
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let nested = succeed(&b);
        assert_refused(nested, BreakerState::HalfOpen);
        Ok::<_, &str>(7)
    });
    assert_eq!(inside.unwrap(), 7);
    // A failed probe re-opens.
    fail(&b).unwrap_err();
    assert_eq!(b.state(), BreakerState::Open);
    clock.advance(late(Duration::from_secs(30)));
    succeed(&b).unwrap();
    assert_eq!(b.state(), BreakerState::HalfOpen);
    // The round lasts half_open_timeout; the next call after it closes.
    clock.advance(late(Duration::from_secs(5)));
    succeed(&b).unwrap();
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn half_open_successes_to_close_and_probe_slots() {
    let (b, clock) = breaker(
        "t-probes",
        config()
            .with_half_open_max_probes(2)
            .with_half_open_successes_to_close(2),
    );
    b.trip().unwrap();
    clock.advance(late(Duration::from_secs(30)));
    // Two probes at once; a third is refused.
    b.execute(|| {
        b.execute(|| {
            assert_refused(succeed(&b), BreakerState::HalfOpen);
            Ok::<_, &str>(())
        })
        .map_err(|_| "inner")
    })
    .unwrap();
    assert_eq!(b.state(), BreakerState::Closed, "two successes close early");
}

#[test]
fn manual_operations() {
    let (b, clock) = breaker("t-manual", config());
    assert_eq!(b.trip().unwrap(), BreakerState::Closed);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.force_open().unwrap(), BreakerState::Open);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(
        assert_refused(succeed(&b), BreakerState::ForcedOpen),
        Duration::MAX
    );
    assert_eq!(b.disable().unwrap(), BreakerState::ForcedOpen);
    for _ in 0..10 {
        fail(&b).unwrap_err();
    }
    assert_eq!(b.state(), BreakerState::Disabled);
    assert_eq!(b.reset().unwrap(), BreakerState::Disabled);
    assert_eq!(b.state(), BreakerState::Closed);
    // Outcomes under `disable` still count in the metrics.
    assert_eq!(b.metrics().failures, 10);
}

#[test]
fn classification_decides_what_counts() {
    #[derive(Debug, PartialEq)]
    enum E {
        NotFound,
        Down,
    }
    let (b, _clock) = breaker("t-classify", config().with_failure_threshold(1));
    let classify = |r: &Result<u32, E>| match r {
        Ok(0) => Outcome::Failure, // an `Ok` can be a failure
        Ok(_) => Outcome::Success,
        Err(E::NotFound) => Outcome::Ignored,
        Err(E::Down) => Outcome::Failure,
    };
    for _ in 0..5 {
        let r = b.execute_classified(classify, || Err(E::NotFound));
        assert!(matches!(r, Err(Error::Inner(E::NotFound))));
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.execute_classified(classify, || Ok(5)).unwrap(), 5);
    assert_eq!(b.execute_classified(classify, || Ok(0)).unwrap(), 0);
    assert_eq!(b.state(), BreakerState::Open, "Ok(0) was a failure");

    b.reset().unwrap();
    let _ = b.execute_classified(classify, || Err(E::Down));
    assert_eq!(b.state(), BreakerState::Open);

    let m = b.metrics();
    assert_eq!((m.successes, m.failures, m.rejections), (1, 2, 0));
    assert_eq!(m.calls, 8, "ignored calls count as calls only");
}

#[test]
fn a_panic_counts_as_a_failure_and_propagates() {
    let (b, clock) = breaker("t-panic", config().with_failure_threshold(1));
    let caught = catch_unwind(AssertUnwindSafe(|| {
        let _ = b.execute(|| -> Result<(), ()> { panic!("kaboom") });
    }))
    .expect_err("the panic continues");
    assert_eq!(caught.downcast_ref::<&str>(), Some(&"kaboom"));
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.metrics().failures, 1);

    // A panicking probe re-opens the circuit and frees its slot.
    clock.advance(late(Duration::from_secs(30)));
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let _ = b.execute(|| -> Result<(), ()> { panic!("probe") });
    }));
    assert_eq!(b.state(), BreakerState::Open);
    clock.advance(late(Duration::from_secs(30)));
    succeed(&b).unwrap();
    assert_eq!(b.state(), BreakerState::HalfOpen);

    // A panicking classifier counts as a failure too.
    clock.advance(late(Duration::from_secs(5)));
    succeed(&b).unwrap();
    assert_eq!(b.state(), BreakerState::Closed);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let _ = b.execute_classified(|_: &Result<(), ()>| panic!("classifier"), || Ok(()));
    }));
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn a_call_from_before_a_trip_does_not_close_the_circuit() {
    let (b, clock) = breaker("t-stale", config().with_failure_threshold(1));
    // A slow call admitted while closed; meanwhile another call fails and
    // opens the circuit. Its late success must not close it.
    let slow = b.execute(|| {
        fail(&b).unwrap_err();
        assert_eq!(b.state(), BreakerState::Open);
        Ok::<_, &str>("late")
    });
    assert_eq!(slow.unwrap(), "late");
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.breaker_metrics().stale_verdicts, 1);

    // Nor does it count as a probe of a later half-open round.
    let slow = b.execute(|| Ok::<_, &str>(()));
    assert!(slow.is_err());
    b.reset().unwrap();
    let slow = b.execute(|| {
        b.trip().unwrap();
        clock.advance(late(Duration::from_secs(30)));
        // A probe is admitted and fails; the old call then succeeds.
        fail(&b).unwrap_err();
        clock.advance(late(Duration::from_secs(30)));
        let probe = b.execute(|| {
            assert_eq!(b.state(), BreakerState::HalfOpen);
            Ok::<_, &str>(())
        });
        probe.unwrap();
        Ok::<_, &str>(())
    });
    slow.unwrap();
    assert_eq!(
        b.breaker_metrics().probe_successes,
        1,
        "only the real probe"
    );
    // A late failure from the closed generation does not re-open it either.
    let late_failure = b.execute(|| {
        b.reset().unwrap();
        Err::<(), _>("late")
    });
    late_failure.unwrap_err();
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn slow_calls_count_as_failures() {
    let (b, clock) = breaker(
        "t-slow",
        config()
            .with_failure_threshold(2)
            .with_slow_call_threshold(SEC),
    );
    let slow = || {
        b.execute(|| {
            clock.advance(2 * SEC);
            Ok::<_, &str>(())
        })
    };
    slow().unwrap();
    assert_eq!(b.state(), BreakerState::Closed);
    b.execute(|| Ok::<_, &str>(())).unwrap();
    // Exactly at the threshold is not slow (for the core and the metrics).
    b.execute(|| {
        clock.advance(SEC);
        Ok::<_, &str>(())
    })
    .unwrap();
    slow().unwrap();
    slow().unwrap();
    assert_eq!(b.state(), BreakerState::Open);
    let m = b.metrics();
    assert_eq!((m.successes, m.failures), (2, 3));
    assert_eq!(b.breaker_metrics().slow_calls, 3);
}

#[test]
fn metrics_count_every_call_once() {
    let (b, _clock) = breaker("t-metrics", config());
    for _ in 0..4 {
        succeed(&b).unwrap();
    }
    for _ in 0..3 {
        fail(&b).unwrap_err();
    }
    for _ in 0..2 {
        succeed(&b).unwrap_err();
    }
    let m = b.metrics();
    assert_eq!(m.calls, 9);
    assert_eq!(m.successes, 4);
    assert_eq!(m.failures, 3);
    assert_eq!(m.rejections, 2);
    assert_eq!(m.state, Some(BreakerState::Open));
    assert_eq!(
        (m.timeouts, m.retries, m.in_flight, m.queue_depth),
        (0, 0, 0, 0)
    );
}

#[test]
fn many_threads_count_exactly() {
    // More threads than the success counter has stripes.
    let b = Arc::new(CircuitBreaker::unregistered("t-threads", BreakerConfig::DEFAULT).unwrap());
    let threads: Vec<_> = (0..12)
        .map(|_| {
            let b = Arc::clone(&b);
            thread::spawn(move || {
                for _ in 0..10_000 {
                    b.execute(|| Ok::<_, ()>(())).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // And again with fresh threads (stripes are handed back and reused).
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1_000 {
                    b.execute(|| Ok::<_, ()>(())).unwrap();
                }
            });
        }
    });
    let m = b.metrics();
    assert_eq!(m.successes, 124_000);
    assert_eq!(m.calls, 124_000);
}

#[test]
fn state_changes_are_reported_in_order() {
    let (b, clock) = breaker("t-events", config().with_failure_threshold(2));
    let events = collect(&b);
    use BreakerState::*;

    fail(&b).unwrap_err();
    fail(&b).unwrap_err(); // Closed -> Open
    assert_refused(succeed(&b), Open);
    clock.advance(late(Duration::from_secs(30)));
    let first_probe_at = clock.now();
    fail(&b).unwrap_err(); // Open -> HalfOpen -> Open
    clock.advance(late(Duration::from_secs(30)));
    succeed(&b).unwrap(); // Open -> HalfOpen
    clock.advance(late(Duration::from_secs(5)));
    succeed(&b).unwrap(); // HalfOpen -> Closed
    b.force_open().unwrap();
    b.disable().unwrap();
    b.trip().unwrap();
    b.trip().unwrap(); // Open -> Open: no event
    b.reset().unwrap();
    b.reset().unwrap(); // Closed -> Closed: no event

    assert_eq!(
        changes(&events),
        [
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed),
            (Closed, ForcedOpen),
            (ForcedOpen, Disabled),
            (Disabled, Open),
            (Open, Closed),
        ]
    );
    let events = events.lock().unwrap();
    let rejected: Vec<_> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Rejected { retry_after } => Some(retry_after),
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 1);
    assert_about(rejected[0].unwrap(), Duration::from_secs(30));
    assert!(
        events
            .iter()
            .all(|e| e.pattern == PatternKind::CircuitBreaker)
    );
    assert!(events.iter().all(|e| &*e.name == "t-events"));
    // Stamped on the virtual clock.
    let first_probe = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::StateChanged { to: HalfOpen, .. }))
        .unwrap();
    assert_eq!(first_probe.at, first_probe_at);
}

#[test]
fn a_new_half_open_round_is_not_a_state_change() {
    let (b, clock) = breaker("t-rounds", config());
    let events = collect(&b);
    b.trip().unwrap();
    clock.advance(late(Duration::from_secs(30)));
    // The probe is abandoned (ignored): the round ends without success and
    // a new one starts.
    let _ = b.execute_classified(|_: &Result<(), ()>| Outcome::Ignored, || Err(()));
    clock.advance(late(Duration::from_secs(5)));
    succeed(&b).unwrap();
    assert_eq!(b.state(), BreakerState::HalfOpen);
    clock.advance(late(Duration::from_secs(5)));
    succeed(&b).unwrap();
    use BreakerState::*;
    assert_eq!(
        changes(&events),
        [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
    );
}

#[test]
fn listeners_that_panic_or_call_back_are_harmless() {
    let (b, _clock) = breaker("t-listeners", config().with_failure_threshold(1));
    let b = Arc::new(b);
    b.subscribe(|_| panic!("listener bug"));
    // A listener that closes the circuit whenever it opens.
    let weak = Arc::downgrade(&b);
    b.subscribe(move |e| {
        if let EventKind::StateChanged {
            to: BreakerState::Open,
            ..
        } = e.kind
        {
            if let Some(b) = weak.upgrade() {
                b.reset().unwrap();
            }
        }
    });
    let events = collect(&b);
    fail(&b).unwrap_err();
    use BreakerState::*;
    assert_eq!(changes(&events), [(Closed, Open), (Open, Closed)]);
    assert_eq!(b.state(), Closed);
    succeed(&b).unwrap();
}

#[test]
fn unsubscribe_stops_delivery() {
    let (b, _clock) = breaker("t-unsubscribe", config());
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let id = b.subscribe(move |e| sink.lock().unwrap().push(e.clone()));
    b.trip().unwrap();
    assert!(b.unsubscribe(id));
    assert!(!b.unsubscribe(id));
    b.reset().unwrap();
    assert_eq!(changes(&events).len(), 1);
}

#[test]
fn monitor_events_follow_the_virtual_clock() {
    let (b, clock) = breaker(
        "t-monitor",
        config().with_monitor_interval(Duration::from_secs(5)),
    );
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let id = b.subscribe(move |e| {
        if let EventKind::Monitor(_) = e.kind {
            tx.lock().unwrap().send(e.clone()).unwrap();
        }
    });
    succeed(&b).unwrap();
    fail(&b).unwrap_err();
    wait_for(|| clock.waiting() == 1);
    clock.advance(Duration::from_secs(5));
    let e = recv(&rx);
    assert_eq!(e.at, Timestamp::from_nanos(5_000_000_000));
    let EventKind::Monitor(m) = e.kind else {
        unreachable!()
    };
    assert_eq!((m.calls, m.successes, m.failures), (2, 1, 1));
    assert_eq!(m.state, Some(BreakerState::Closed));

    // Not before the interval has passed again.
    wait_for(|| clock.waiting() == 1);
    clock.advance(Duration::from_secs(4));
    wait_for(|| clock.waiting() == 1);
    assert!(rx.try_recv().is_err());
    succeed(&b).unwrap();
    clock.advance(SEC);
    let EventKind::Monitor(m) = recv(&rx).kind else {
        unreachable!()
    };
    assert_eq!(m.successes, 2);

    // Unsubscribing the last listener stops the thread: nobody waits on
    // the clock any more, and nothing is sent.
    assert!(b.unsubscribe(id));
    wait_for(|| clock.waiting() == 0);
    clock.advance(Duration::from_secs(60));
    assert!(rx.try_recv().is_err());

    // A new listener starts a new thread (exactly one).
    let (tx2, rx2) = mpsc::channel();
    let tx2 = Mutex::new(tx2);
    b.subscribe(move |e| {
        if let EventKind::Monitor(_) = e.kind {
            tx2.lock().unwrap().send(e.clone()).unwrap();
        }
    });
    wait_for(|| clock.waiting() == 1);
    clock.advance(Duration::from_secs(5));
    let e = recv(&rx2);
    assert_eq!(e.at, Timestamp::from_nanos(75_000_000_000));
    wait_for(|| clock.waiting() == 1);
    assert!(rx2.try_recv().is_err(), "one thread, one event");
}

#[test]
fn the_monitor_stops_when_the_breaker_is_dropped_or_disposed() {
    let (b, clock) = breaker("t-monitor-drop", config().with_monitor_interval(SEC));
    b.subscribe(|_| {});
    wait_for(|| clock.waiting() == 1);
    assert_eq!(Arc::strong_count(&clock), 2);
    drop(b);
    // The monitor thread held only a weak reference to the breaker and a
    // handle to its timer: both are gone once it has exited.
    wait_for(|| Arc::strong_count(&clock) == 1);
    assert_eq!(clock.waiting(), 0);

    let (b, clock) = breaker("t-monitor-dispose", config().with_monitor_interval(SEC));
    let events = collect(&b);
    wait_for(|| clock.waiting() == 1);
    b.dispose();
    wait_for(|| clock.waiting() == 0);
    clock.advance(Duration::from_secs(10));
    let kinds: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.kind.clone())
        .collect();
    assert_eq!(kinds, [EventKind::Disposed]);
}

#[test]
fn dispose() {
    let (b, _clock) = breaker("t-dispose", config());
    let events = collect(&b);
    b.dispose();
    b.dispose();
    assert!(b.is_disposed());
    assert!(matches!(succeed(&b), Err(Error::Disposed)));
    assert!(matches!(b.trip(), Err(Error::Disposed)));
    assert!(matches!(b.reset(), Err(Error::Disposed)));
    assert!(matches!(b.disable(), Err(Error::Disposed)));
    assert!(matches!(succeed(&b), Err(Error::Disposed)));
    let kinds: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.kind.clone())
        .collect();
    assert_eq!(kinds, [EventKind::Disposed], "one event, then no listeners");
    assert_eq!(
        b.metrics().rejections,
        0,
        "disposed refusals are not rejections"
    );
    // A listener added later is never called.
    let late = collect(&b);
    assert!(matches!(succeed(&b), Err(Error::Disposed)));
    assert!(late.lock().unwrap().is_empty());
}

#[test]
fn a_call_running_during_dispose_finishes() {
    let (b, _clock) = breaker("t-dispose-running", config().with_failure_threshold(1));
    let r = b.execute(|| {
        b.dispose();
        Err::<(), _>("after dispose")
    });
    assert!(matches!(r, Err(Error::Inner("after dispose"))));
    assert!(matches!(succeed(&b), Err(Error::Disposed)));
}

#[test]
fn registry() {
    let options = BreakerConfig::DEFAULT.with_failure_threshold(2);
    let a = CircuitBreaker::get_or_create("t-registry", options).unwrap();
    let b = CircuitBreaker::get_or_create("t-registry", options).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert!(Arc::ptr_eq(&a, &CircuitBreaker::get("t-registry").unwrap()));
    // The spec's getBreaker returns the registered one, whatever its options.
    assert!(Arc::ptr_eq(&a, &CircuitBreaker::get_breaker("t-registry")));
    match CircuitBreaker::get_or_create("t-registry", BreakerConfig::DEFAULT) {
        Err(Error::NameTaken { name }) => assert_eq!(&*name, "t-registry"),
        other => panic!("expected NameTaken, got {other:?}"),
    }
    // Dispose: forgotten; the name can be registered again.
    a.dispose();
    assert!(CircuitBreaker::get("t-registry").is_none());
    let c = CircuitBreaker::get_or_create("t-registry", BreakerConfig::DEFAULT).unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    assert!(!c.is_disposed());

    let d = CircuitBreaker::get_breaker("t-registry-default");
    assert_eq!(*d.config(), BreakerConfig::DEFAULT);
    assert_eq!(d.name(), "t-registry-default");

    // A breaker that is not registered does not remove the registered one.
    let unregistered = CircuitBreaker::unregistered("t-registry", BreakerConfig::DEFAULT).unwrap();
    unregistered.dispose();
    assert!(Arc::ptr_eq(&c, &CircuitBreaker::get("t-registry").unwrap()));
}

#[test]
fn invalid_options_are_refused() {
    let r = CircuitBreaker::unregistered(
        "t-invalid",
        BreakerConfig::DEFAULT.with_failure_threshold(0),
    );
    match r {
        Err(Error::InvalidConfig(e)) => assert_eq!(e.option.as_str(), "failure_threshold"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    assert!(matches!(
        CircuitBreaker::get_or_create(
            "t-invalid",
            BreakerConfig::DEFAULT.with_monitor_interval(Duration::ZERO)
        ),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn as_a_policy() {
    let (b, _clock) = breaker("t-policy", config().with_failure_threshold(2));
    // Refusals of policies nested inside the breaker are not failures.
    for _ in 0..5 {
        let r: Result<(), Error<&str>> = b.run(|| Err(Error::BulkheadFull));
        assert!(matches!(r, Err(Error::BulkheadFull)));
        let r: Result<(), Error<&str>> = b.run(|| Err(Error::RateLimited { retry_after: SEC }));
        assert!(r.is_err());
    }
    assert_eq!(b.state(), BreakerState::Closed);
    // Timeouts and inner errors are.
    let r: Result<(), Error<&str>> = b.run(|| Err(Error::TimedOut { after: SEC }));
    assert!(matches!(r, Err(Error::TimedOut { .. })));
    let pipeline = Pipeline::new().then(&b);
    let r = pipeline.execute(|| Err::<(), _>("down"));
    assert!(matches!(r, Err(Error::Inner("down"))));
    assert_eq!(b.state(), BreakerState::Open);
    assert!(matches!(
        pipeline.execute(|| Ok::<_, &str>(())),
        Err(Error::BreakerOpen { .. })
    ));
}

#[test]
fn wrap_makes_a_reusable_protected_function() {
    let (b, _clock) = breaker("t-wrap", config().with_failure_threshold(2));
    let find_user = b.wrap(|id: u32| {
        if id == 0 {
            Err("no such user")
        } else {
            Ok(id * 10)
        }
    });
    assert_eq!(find_user(4).unwrap(), 40);
    assert!(matches!(find_user(0), Err(Error::Inner("no such user"))));
    assert!(matches!(find_user(0), Err(Error::Inner(_))));
    assert!(matches!(find_user(4), Err(Error::BreakerOpen { .. })));
}

#[test]
fn the_clock_is_read_only_when_a_decision_needs_it() {
    // A counting timer: the closed path's success must not read it.
    #[derive(Default)]
    struct Counting {
        inner: VirtualClock,
        reads: core::sync::atomic::AtomicU64,
    }
    impl Clock for Counting {
        fn now(&self) -> Timestamp {
            self.reads
                .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            self.inner.now()
        }
    }
    impl Timer for Counting {
        fn sleep_until(&self, deadline: Timestamp) {
            self.inner.sleep_until(deadline)
        }
        fn park_until(&self, deadline: Timestamp) {
            self.inner.park_until(deadline)
        }
    }
    let clock = Arc::new(Counting::default());
    let b = CircuitBreaker::with_timer("t-reads", config(), Arc::clone(&clock)).unwrap();
    for _ in 0..100 {
        b.execute(|| Ok::<_, ()>(())).unwrap();
    }
    assert_eq!(clock.reads.load(core::sync::atomic::Ordering::Relaxed), 0);
    let _ = b.execute(|| Err::<(), _>(()));
    assert_eq!(clock.reads.load(core::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<CircuitBreaker>();
}

#[test]
fn racing_transitions_still_form_a_chain() {
    let (b, clock) = breaker("t-chain", config().with_failure_threshold(2));
    let events = collect(&b);
    thread::scope(|s| {
        for t in 0..4u32 {
            let (b, clock) = (&b, &clock);
            s.spawn(move || {
                for i in 0..2_000u32 {
                    match (i * 7 + t * 3) % 11 {
                        0 => {
                            b.trip().unwrap();
                        }
                        1 => {
                            b.reset().unwrap();
                        }
                        2 | 3 => clock.advance(late(Duration::from_secs(30))),
                        4..=6 => {
                            let _ = fail(b);
                        }
                        _ => {
                            let _ = succeed(b);
                        }
                    }
                }
            });
        }
    });
    let changes = changes(&events);
    assert!(changes.len() > 10, "the workload should change states");
    assert_eq!(changes[0].0, BreakerState::Closed);
    for pair in changes.windows(2) {
        assert_eq!(
            pair[0].1, pair[1].0,
            "each event starts where the last ended"
        );
    }
    for (from, to) in &changes {
        assert_ne!(from, to);
    }
    assert_eq!(
        changes.last().unwrap().1,
        b.state(),
        "the last event names the state"
    );
}

/// Many transitions from several threads while the monitor thread runs
/// (default `monitor_interval`, so the virtual clock the workers advance
/// fires it often): the listener sees every state change exactly once, in
/// order. A regression test for a lost `HalfOpen -> Closed` event: the
/// events used to be re-derived from the core's generation after the fact.
#[test]
fn a_listener_sees_every_state_change_in_order_under_stress() {
    let config = BreakerConfig::DEFAULT
        .with_failure_threshold(2)
        .with_reset_timeout(Duration::from_secs(30))
        .with_half_open_timeout(Duration::from_secs(5))
        .with_half_open_max_probes(2);
    assert_eq!(config.monitor_interval, Duration::from_secs(5));
    let (b, clock) = breaker("t-stress", config);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let monitors = Arc::new(core::sync::atomic::AtomicUsize::new(0));
    {
        let (seen, monitors) = (Arc::clone(&seen), Arc::clone(&monitors));
        b.subscribe(move |e| match e.kind {
            EventKind::StateChanged {
                from,
                to,
                generation,
            } => seen.lock().unwrap().push((from, to, generation)),
            EventKind::Monitor(_) => {
                monitors.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            }
            _ => {}
        });
    }
    // The watchdog: the workload runs on its own thread; the test fails
    // instead of hanging if it does not finish.
    let (done_tx, done_rx) = mpsc::channel();
    let worker = {
        let (b, clock) = (Arc::new(b), Arc::clone(&clock));
        let shared = Arc::clone(&b);
        let handle = thread::spawn(move || {
            thread::scope(|s| {
                for t in 0..4u32 {
                    let (b, clock) = (&*shared, &*clock);
                    s.spawn(move || {
                        for i in 0..3_000u32 {
                            match (i.wrapping_mul(7) + t * 5) % 23 {
                                0 => {
                                    b.trip().unwrap();
                                }
                                1 => {
                                    b.reset().unwrap();
                                }
                                2 if i % 5 == 0 => {
                                    b.disable().unwrap();
                                }
                                3 if i % 7 == 0 => {
                                    b.force_open().unwrap();
                                }
                                4..=6 => clock.advance(late(Duration::from_secs(30))),
                                7 | 8 => clock.advance(late(Duration::from_secs(5))),
                                9..=13 => {
                                    let _ = fail(b);
                                }
                                14 => {
                                    let _ = b.execute_classified(
                                        |_: &Result<(), ()>| Outcome::Ignored,
                                        || Ok(()),
                                    );
                                }
                                _ => {
                                    let _ = succeed(b);
                                }
                            }
                        }
                    });
                }
            });
            done_tx.send(()).unwrap();
        });
        (b, handle)
    };
    done_rx
        .recv_timeout(Duration::from_secs(300))
        .expect("the workload finished (watchdog)");
    let (b, handle) = worker;
    handle.join().unwrap();
    let expected = b.breaker_metrics().state_changes as usize;
    // Every call returned; an event may still be on its way through the
    // thread delivering the queue (the monitor thread, say).
    wait_for(|| seen.lock().unwrap().len() >= expected);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), expected, "one event per state change");
    assert!(expected > 100, "the workload should change states");
    assert_eq!(seen[0].0, BreakerState::Closed);
    let generations = stockade::breaker::CircuitBreaker::GENERATIONS;
    for pair in seen.windows(2) {
        assert_eq!(
            pair[0].1, pair[1].0,
            "each event starts where the last ended"
        );
        let ahead = pair[1].2.wrapping_sub(pair[0].2) & (generations - 1);
        assert!(
            ahead > 0 && ahead < generations / 2,
            "generations increase: {pair:?}"
        );
    }
    for (from, to, _) in &seen {
        assert_ne!(from, to);
    }
    let last = seen.last().unwrap();
    assert_eq!(last.1, b.state(), "the last event names the state");
    assert_eq!(last.2, b.breaker_metrics().generation);
    assert!(monitors.load(core::sync::atomic::Ordering::Relaxed) > 0);
}

#[test]
fn refusals_read_well() {
    let (b, clock) = breaker("t-messages", config().with_failure_threshold(1));
    fail(&b).unwrap_err();
    clock.advance(Duration::from_nanos(4_421)); // an odd remainder
    let open = fail(&b).unwrap_err();
    // Up to two ticks late with the 32-bit layout's ~1 ms ticks.
    let message = open.to_string();
    if SLACK < Duration::from_micros(1) {
        assert_eq!(message, "circuit breaker is open; retry after 30s");
    } else {
        assert!(
            message.starts_with("circuit breaker is open; retry after 30.00"),
            "{message}"
        );
    }
    assert!(open.retry_after().is_some());
    b.force_open().unwrap();
    let forced = fail(&b).unwrap_err();
    assert_eq!(forced.to_string(), "circuit breaker is forced open");
    assert_eq!(forced.retry_after(), None);
    fn is_error<E: core::error::Error>(_: &E) {}
    is_error(&forced.map_inner(std::io::Error::other));
    is_error(&stockade::breaker::TokenError::Stale);
}

// --- The permit API: try_acquire and its guard --------------------------

#[test]
fn a_guards_verdicts_count_as_executes_do() {
    let (b, _clock) = breaker("t-guard-verdicts", config());
    let events = collect(&b);
    b.try_acquire().unwrap().success();
    b.try_acquire().unwrap().failure();
    b.try_acquire().unwrap().report(Outcome::Failure);
    // Neither a dropped guard nor an ignored one resets the consecutive
    // failures (a success would) or adds one.
    drop(b.try_acquire().unwrap());
    b.try_acquire().unwrap().ignore();
    b.try_acquire().unwrap().report(Outcome::Ignored);
    // A local breaker never needs a round trip.
    let decided = b.try_acquire_without_round_trip().expect("local: decided");
    assert!(
        decided
            .unwrap()
            .report_without_round_trip(Outcome::Ignored)
            .is_ok()
    );
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.breaker_metrics().consecutive_failures, 2);
    b.try_acquire().unwrap().failure(); // the third in a row opens it
    assert_eq!(b.state(), BreakerState::Open);
    let refused = b.try_acquire().unwrap_err();
    assert!(
        matches!(
            refused,
            Error::BreakerOpen {
                state: BreakerState::Open,
                ..
            }
        ),
        "{refused:?}"
    );
    let m = b.metrics();
    // Ignored calls count in `calls` only.
    assert_eq!(
        (m.calls, m.successes, m.failures, m.rejections),
        (9, 1, 3, 1)
    );
    assert_eq!(
        changes(&events),
        [(BreakerState::Closed, BreakerState::Open)]
    );
    let rejected = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Rejected { .. }))
        .count();
    assert_eq!(rejected, 1);
}

#[test]
fn a_guard_and_execute_give_the_same_decisions_metrics_and_events() {
    // One script of calls, run once through `execute` and once through
    // guards: the same states, metrics and events at every step.
    #[derive(Clone, Copy)]
    enum Step {
        Call(Outcome),
        Advance(Duration),
    }
    use Step::{Advance, Call};
    let script = [
        Call(Outcome::Success),
        Call(Outcome::Failure),
        Call(Outcome::Ignored),
        Call(Outcome::Failure),
        Call(Outcome::Failure),
        Call(Outcome::Success), // refused: open
        Advance(late(Duration::from_secs(30))),
        Call(Outcome::Failure), // a failed probe re-opens
        Call(Outcome::Success), // refused
        Advance(late(Duration::from_secs(30))),
        Call(Outcome::Ignored), // a probe that says nothing
        Call(Outcome::Success), // the next probe succeeds
        Advance(late(Duration::from_secs(5))),
        Call(Outcome::Success), // the round is over: closed
        Call(Outcome::Success),
    ];
    let cfg = config().with_slow_call_threshold(Duration::from_secs(10));
    let (by_execute, clock_e) = breaker("t-guard-same-e", cfg);
    let (by_guard, clock_g) = breaker("t-guard-same-g", cfg);
    let (events_e, events_g) = (collect(&by_execute), collect(&by_guard));
    for (i, step) in script.iter().enumerate() {
        let (admitted_e, admitted_g) = match *step {
            Advance(d) => {
                clock_e.advance(d);
                clock_g.advance(d);
                continue;
            }
            Call(outcome) => (
                by_execute
                    .execute_classified(|_: &Result<(), &str>| outcome, || Ok(()))
                    .map_err(|e| e.to_string()),
                by_guard
                    .try_acquire()
                    .map(|guard| guard.report(outcome))
                    .map_err(|e| e.to_string()),
            ),
        };
        assert_eq!(admitted_e, admitted_g, "step {i}");
        assert_eq!(by_execute.state(), by_guard.state(), "step {i}");
        assert_eq!(
            (by_execute.metrics(), by_execute.breaker_metrics()),
            (by_guard.metrics(), by_guard.breaker_metrics()),
            "step {i}"
        );
    }
    assert_eq!(by_guard.state(), BreakerState::Closed);
    let kinds = |events: &Mutex<Vec<Event>>| -> Vec<String> {
        let events = events.lock().unwrap();
        events.iter().map(|e| format!("{:?}", e.kind)).collect()
    };
    assert_eq!(kinds(&events_e), kinds(&events_g));
    assert_eq!(
        changes(&events_g),
        [
            (BreakerState::Closed, BreakerState::Open),
            (BreakerState::Open, BreakerState::HalfOpen),
            (BreakerState::HalfOpen, BreakerState::Open),
            (BreakerState::Open, BreakerState::HalfOpen),
            (BreakerState::HalfOpen, BreakerState::Closed),
        ]
    );
}

#[test]
fn a_half_open_guard_holds_its_probe_slot_until_its_verdict_or_drop() {
    let (b, clock) = breaker(
        "t-guard-probe",
        config().with_half_open_successes_to_close(1),
    );
    let events = collect(&b);
    b.trip().unwrap();
    clock.advance(late(Duration::from_secs(30)));
    let probe = b.try_acquire().unwrap();
    // The admission's transition is announced before its verdict.
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert_eq!(
        changes(&events).last(),
        Some(&(BreakerState::Open, BreakerState::HalfOpen))
    );
    assert!(matches!(
        b.try_acquire(),
        Err(Error::BreakerOpen {
            state: BreakerState::HalfOpen,
            ..
        })
    ));
    drop(probe); // no verdict: the slot is freed, nothing changes
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert_eq!(b.breaker_metrics().probes_in_flight, 0);
    // Through a token and back: the verdict still counts.
    let token = b.try_acquire().unwrap().into_token();
    assert_eq!(b.breaker_metrics().probes_in_flight, 1);
    CircuitBreaker::try_acquire(&b).unwrap_err();
    stockade::blocking::BreakerGuard::from_token(&b, token).success();
    assert_eq!(b.state(), BreakerState::Closed);
    let m = b.metrics();
    assert_eq!((m.successes, m.rejections), (1, 2));
}

#[test]
fn a_guard_measures_slow_calls_from_its_admission() {
    let (b, clock) = breaker(
        "t-guard-slow",
        config()
            .with_failure_threshold(1)
            .with_slow_call_threshold(SEC),
    );
    let quick = b.try_acquire().unwrap();
    clock.advance(SEC); // at the threshold: not slow
    quick.success();
    assert_eq!(b.state(), BreakerState::Closed);
    let slow = b.try_acquire().unwrap();
    clock.advance(2 * SEC);
    slow.success();
    assert_eq!(b.state(), BreakerState::Open);
    let m = b.metrics();
    assert_eq!((m.successes, m.failures), (1, 1));
    assert_eq!(b.breaker_metrics().slow_calls, 1);
}

#[test]
fn a_guard_of_a_disposed_breaker_is_refused_and_a_held_one_changes_nothing() {
    let (b, _clock) = breaker("t-guard-dispose", config().with_failure_threshold(1));
    let held = b.try_acquire().unwrap();
    b.dispose();
    held.failure(); // counted as given, stale for the machine
    assert_eq!(b.state(), BreakerState::ForcedOpen);
    assert!(matches!(b.try_acquire(), Err(Error::Disposed)));
    let m = b.metrics();
    assert_eq!((m.failures, m.rejections), (1, 0));
    assert_eq!(b.breaker_metrics().stale_verdicts, 1);
}
