//! The blocking bulkhead: options and defaults, FIFO queueing of parked
//! threads, bounded depth, queue timeouts on virtual time, dispose,
//! panics, registry, composition, and a randomized multi-threaded stress
//! test for permit leaks and the concurrency bound.
//!
//! Time is a `VirtualClock`; "a thread is parked" is observed through
//! `VirtualClock::waiting()` and the queue depth, never through sleeps.
#![cfg(all(feature = "std", not(stockade_loom)))]

mod common;
#[allow(unused_imports)]
use common::{unique, wait_for, wait_until, within};

use core::convert::Infallible;
use core::panic::AssertUnwindSafe;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use core::time::Duration;
use std::panic::catch_unwind;
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use stockade::blocking::{
    Bulkhead, Error, Event, EventKind, Metrics, PatternKind, Pipeline, Policy, RateLimiter,
    VirtualClock,
};
use stockade::bulkhead::BulkheadConfig;
use stockade::clock::{Clock, Timestamp};
use stockade::{ConfigError, ConfigOption, ConfigValue};

type Result<T, E = ()> = core::result::Result<T, Error<E>>;

/// Unsticks parked threads when a test fails inside `thread::scope`: the
/// scope joins its threads before the panic propagates, so threads parked on
/// the virtual clock would otherwise hang the test instead of failing it.
/// Create it first thing in the scope; on unwinding it moves time past every
/// deadline.
struct Unstick<'a>(&'a VirtualClock);

impl Drop for Unstick<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.advance(Duration::from_secs(1 << 40));
        }
    }
}

/// Joins a scoped thread, failing (instead of hanging) if it does not finish.
fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    wait_until("a thread finishes", || handle.is_finished());
    handle.join().expect("the thread panicked")
}

fn config(max_concurrent: u32, max_queue: u32, queue_timeout: Duration) -> BulkheadConfig {
    BulkheadConfig {
        max_concurrent,
        max_queue,
        queue_timeout,
    }
}

/// Records every event.
fn record(bulkhead: &Bulkhead<impl stockade::blocking::Timer>) -> Arc<Mutex<Vec<Event>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    bulkhead.subscribe(move |e: &Event| sink.lock().unwrap().push(e.clone()));
    log
}

fn kinds(log: &Mutex<Vec<Event>>) -> Vec<EventKind> {
    log.lock().unwrap().iter().map(|e| e.kind.clone()).collect()
}

/// A closure holder: runs `execute` on another thread and blocks inside the
/// closure until the returned sender is used (or dropped).
fn hold<'s, T: stockade::blocking::Timer>(
    scope: &'s thread::Scope<'s, '_>,
    bulkhead: &'s Bulkhead<T>,
) -> (mpsc::Sender<()>, thread::ScopedJoinHandle<'s, Result<()>>) {
    let (tx, rx) = mpsc::channel::<()>();
    let before = bulkhead.metrics().in_flight;
    let handle = scope.spawn(move || {
        bulkhead.execute(|| {
            let _ = rx.recv();
            Ok(())
        })
    });
    wait_until("the holder runs", || bulkhead.metrics().in_flight > before);
    (tx, handle)
}

/// Spawns a queued `execute` and waits until it is parked in the queue at
/// position `position` (0-based): the queue depth and the clock's sleepers
/// both show it.
fn queue_waiter<'s, T, F, R>(
    scope: &'s thread::Scope<'s, '_>,
    bulkhead: &'s Bulkhead<T>,
    clock: &VirtualClock,
    position: usize,
    f: F,
) -> thread::ScopedJoinHandle<'s, Result<R>>
where
    T: stockade::blocking::Timer,
    F: FnOnce() -> core::result::Result<R, ()> + Send + 's,
    R: Send + 's,
{
    let handle = scope.spawn(move || bulkhead.execute(f));
    wait_until("the waiter is parked", || {
        bulkhead.metrics().queue_depth == position as u64 + 1 && clock.waiting() == position + 1
    });
    handle
}

#[test]
fn defaults_are_the_spec_values() {
    assert_eq!(
        BulkheadConfig::default(),
        config(10, 100, Duration::from_secs(30))
    );
    let clock = VirtualClock::new();
    let bulkhead = Bulkhead::with_timer("defaults", BulkheadConfig::default(), &clock).unwrap();
    assert_eq!(bulkhead.name(), "defaults");
    assert_eq!(*bulkhead.config(), BulkheadConfig::DEFAULT);
    assert_eq!(bulkhead.metrics(), Metrics::default());

    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        // max_concurrent 10: ten closures run at once...
        let holders: Vec<_> = (0..10).map(|_| hold(s, &bulkhead)).collect();
        assert_eq!(bulkhead.metrics().in_flight, 10);
        assert!(matches!(
            bulkhead.try_execute(|| Ok::<_, &str>(())),
            Err(Error::BulkheadFull)
        ));
        // ...max_queue 100: a hundred wait...
        let waiters: Vec<_> = (0..100)
            .map(|i| queue_waiter(s, &bulkhead, &clock, i, || Ok(())))
            .collect();
        // ...and the 101st is refused at once.
        assert!(matches!(
            bulkhead.execute(|| Ok::<_, &str>(())),
            Err(Error::BulkheadFull)
        ));
        // queue_timeout 30 s: nobody gives up a nanosecond before...
        clock.advance(Duration::from_secs(30) - Duration::from_nanos(1));
        assert_eq!(bulkhead.metrics().timeouts, 0);
        assert_eq!(bulkhead.metrics().queue_depth, 100);
        // ...everyone does at 30 s.
        clock.advance(Duration::from_nanos(1));
        for w in waiters {
            match join(w) {
                Err(Error::QueueTimeout { waited }) => {
                    assert_eq!(waited, Duration::from_secs(30))
                }
                other => panic!("expected a queue timeout, got {other:?}"),
            }
        }
        for (tx, h) in holders {
            tx.send(()).unwrap();
            join(h).unwrap();
        }
    });
    let m = bulkhead.metrics();
    assert_eq!(
        (m.calls, m.successes, m.rejections, m.timeouts),
        (10 + 1 + 100 + 1, 10, 2, 100)
    );
    assert_eq!((m.in_flight, m.queue_depth), (0, 0));
}

#[test]
fn invalid_options_name_the_option() {
    let bad = |c: BulkheadConfig| match Bulkhead::unregistered("bad", c) {
        Err(Error::InvalidConfig(e)) => e,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    let d = BulkheadConfig::DEFAULT;
    assert_eq!(
        bad(d.with_max_concurrent(0)),
        ConfigError::zero(ConfigOption::MaxConcurrent, ConfigValue::Count(0))
    );
    // A zero queue timeout is valid, with the rate limiter's meaning: never wait.
    assert!(Bulkhead::unregistered("no-wait", d.with_queue_timeout(Duration::ZERO)).is_ok());
    // A zero queue is valid: a full bulkhead refuses at once.
    let clock = VirtualClock::new();
    let b = Bulkhead::with_timer(
        "no-queue",
        d.with_max_concurrent(1).with_max_queue(0),
        &clock,
    )
    .unwrap();
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let (tx, h) = hold(s, &b);
        assert!(matches!(
            b.execute(|| Ok::<_, &str>(())),
            Err(Error::BulkheadFull)
        ));
        assert_eq!(clock.waiting(), 0);
        tx.send(()).unwrap();
        join(h).unwrap();
    });
}

#[test]
fn execute_counts_outcomes_and_keeps_the_inner_error() {
    let b = Bulkhead::unregistered("outcomes", config(2, 0, Duration::from_secs(1))).unwrap();
    let in_flight = b.execute(|| Ok::<_, &str>(b.metrics().in_flight)).unwrap();
    assert_eq!(in_flight, 1);
    match b.execute(|| Err::<(), _>("boom")) {
        Err(Error::Inner("boom")) => {}
        other => panic!("{other:?}"),
    }
    // try_execute runs when a permit is free.
    assert_eq!(b.try_execute(|| Ok::<_, &str>(7)).unwrap(), 7);
    let m = b.metrics();
    assert_eq!(
        (m.calls, m.successes, m.failures, m.rejections, m.timeouts),
        (3, 2, 1, 0, 0)
    );
    assert_eq!(
        (m.in_flight, m.queue_depth, m.retries, m.state),
        (0, 0, 0, None)
    );
    // Nested: two permits, the third concurrent call is refused.
    let r = b.execute(|| {
        b.execute(|| Ok::<_, &str>(b.try_execute(|| Ok::<_, &str>(()))))
            .map_err(|_| ())
    });
    assert!(matches!(r, Ok(Err(Error::BulkheadFull))));
    assert_eq!(b.metrics().in_flight, 0);
}

#[test]
fn a_panicking_closure_releases_its_permit_and_the_panic_continues() {
    let clock = VirtualClock::new();
    let b = Bulkhead::with_timer("panics", config(1, 4, Duration::from_secs(10)), &clock).unwrap();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        b.execute(|| -> core::result::Result<(), ()> { panic!("closure bug") })
    }));
    assert!(caught.is_err(), "the panic must reach the caller");
    let m = b.metrics();
    assert_eq!((m.failures, m.in_flight), (1, 0));

    // A holder that panics hands its permit to the waiter.
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let (tx, rx) = mpsc::channel::<()>();
        let bh = &b;
        let holder = s.spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                bh.execute(|| -> core::result::Result<(), ()> {
                    let _ = rx.recv();
                    panic!("holder bug")
                })
            }))
        });
        wait_until("the holder runs", || b.metrics().in_flight == 1);
        let waiter = queue_waiter(s, &b, &clock, 0, || Ok(5));
        tx.send(()).unwrap();
        assert!(join(holder).is_err());
        assert_eq!(join(waiter).unwrap(), 5);
    });
    let m = b.metrics();
    assert_eq!(
        (m.failures, m.successes, m.in_flight, m.queue_depth),
        (2, 1, 0, 0)
    );
}

#[test]
fn waiters_are_served_in_fifo_order() {
    const N: usize = 8;
    let clock = VirtualClock::new();
    let b =
        Bulkhead::with_timer("fifo", config(1, N as u32, Duration::from_secs(60)), &clock).unwrap();
    let order = Mutex::new(Vec::new());
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let (tx, holder) = hold(s, &b);
        let waiters: Vec<_> = (0..N)
            .map(|i| {
                let order = &order;
                queue_waiter(s, &b, &clock, i, move || {
                    order.lock().unwrap().push(i);
                    Ok(i)
                })
            })
            .collect();
        // Spurious wake-ups admit nobody: each waiter re-checks and parks
        // again. (Correct code never runs a closure here; the spin only
        // gives a wrong one the chance to show itself.)
        for w in &waiters {
            w.thread().unpark();
        }
        for _ in 0..10_000 {
            thread::yield_now();
        }
        wait_until("the waiters park again", || clock.waiting() == N);
        assert!(
            order.lock().unwrap().is_empty(),
            "admitted without a permit"
        );
        // Nobody jumps the queue while it is non-empty, even try_execute.
        assert!(matches!(
            b.try_execute(|| Ok::<_, &str>(())),
            Err(Error::BulkheadFull)
        ));
        tx.send(()).unwrap();
        join(holder).unwrap();
        for (i, w) in waiters.into_iter().enumerate() {
            assert_eq!(join(w).unwrap(), i);
        }
    });
    assert_eq!(*order.lock().unwrap(), (0..N).collect::<Vec<_>>());
    let m = b.metrics();
    assert_eq!(
        (m.successes, m.rejections, m.in_flight, m.queue_depth),
        (N as u64 + 1, 1, 0, 0)
    );
}

#[test]
fn fifo_order_with_several_permits() {
    // Two permits: each release hands its permit to the current front.
    let clock = VirtualClock::new();
    let b = Bulkhead::with_timer("fifo2", config(2, 4, Duration::from_secs(60)), &clock).unwrap();
    let order = Mutex::new(Vec::new());
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let (tx1, h1) = hold(s, &b);
        let (tx2, h2) = hold(s, &b);
        // Each waiter blocks in its closure until told to finish, so that
        // the grants can be observed one by one.
        let gates: Vec<_> = (0..4).map(|_| mpsc::channel::<()>()).collect();
        let mut releases = Vec::new();
        let mut waiters = Vec::new();
        for (i, (tx, rx)) in gates.into_iter().enumerate() {
            releases.push(tx);
            let order = &order;
            waiters.push(queue_waiter(s, &b, &clock, i, move || {
                order.lock().unwrap().push(i);
                let _ = rx.recv();
                Ok(())
            }));
        }
        tx2.send(()).unwrap();
        join(h2).unwrap();
        wait_until("waiter 0 runs", || order.lock().unwrap().len() == 1);
        tx1.send(()).unwrap();
        join(h1).unwrap();
        wait_until("waiter 1 runs", || order.lock().unwrap().len() == 2);
        assert_eq!(b.metrics().queue_depth, 2);
        releases[1].send(()).unwrap();
        wait_until("waiter 2 runs", || order.lock().unwrap().len() == 3);
        releases[0].send(()).unwrap();
        wait_until("waiter 3 runs", || order.lock().unwrap().len() == 4);
        for tx in releases {
            let _ = tx.send(());
        }
        for w in waiters {
            join(w).unwrap();
        }
    });
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
    assert_eq!(b.metrics().in_flight, 0);
}

#[test]
fn a_full_queue_refuses_at_once() {
    let clock = VirtualClock::new();
    let b = Bulkhead::with_timer("bounded", config(1, 2, Duration::from_secs(5)), &clock).unwrap();
    let log = record(&b);
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let (tx, holder) = hold(s, &b);
        let w0 = queue_waiter(s, &b, &clock, 0, || Ok(0));
        let w1 = queue_waiter(s, &b, &clock, 1, || Ok(1));
        // The third waiter would be max_queue + 1: refused without waiting,
        // on this thread, with virtual time standing still.
        assert!(matches!(
            b.execute(|| Ok::<_, &str>(9)),
            Err(Error::BulkheadFull)
        ));
        assert_eq!(clock.now(), Timestamp::ZERO);
        assert_eq!(b.metrics().queue_depth, 2);
        tx.send(()).unwrap();
        join(holder).unwrap();
        assert_eq!(join(w0).unwrap(), 0);
        assert_eq!(join(w1).unwrap(), 1);
    });
    let events = log.lock().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].pattern, PatternKind::Bulkhead);
    assert_eq!(&*events[0].name, "bounded");
    assert_eq!(events[0].kind, EventKind::Rejected { retry_after: None });
    let m = b.metrics();
    assert_eq!((m.calls, m.successes, m.rejections), (4, 3, 1));
}

/// `queue_timeout = 0` means "never wait": a full bulkhead refuses at
/// once as full (not as a queue timeout), even with room in the queue, and
/// `try_execute` means the same as `execute` then.
#[test]
fn zero_queue_timeout_rejects_at_once_as_full() {
    let clock = VirtualClock::new();
    let b = Bulkhead::with_timer("no-wait", config(1, 5, Duration::ZERO), &clock).unwrap();
    let log = record(&b);
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let (tx, holder) = hold(s, &b);
        assert!(matches!(
            b.execute(|| Ok::<_, &str>(9)),
            Err(Error::BulkheadFull)
        ));
        assert!(matches!(
            b.try_execute(|| Ok::<_, &str>(9)),
            Err(Error::BulkheadFull)
        ));
        assert_eq!((clock.now(), clock.waiting()), (Timestamp::ZERO, 0));
        assert_eq!(b.metrics().queue_depth, 0);
        tx.send(()).unwrap();
        join(holder).unwrap();
    });
    assert_eq!(b.execute(|| Ok::<_, &str>(1)).unwrap(), 1);
    let m = b.metrics();
    assert_eq!(
        (m.calls, m.successes, m.rejections, m.timeouts),
        (4, 2, 2, 0)
    );
    assert!(
        kinds(&log)
            .iter()
            .all(|k| *k == EventKind::Rejected { retry_after: None })
    );
}

#[test]
fn queue_timeouts_run_on_virtual_time_and_leave_no_trace() {
    let clock = VirtualClock::new();
    let timeout = Duration::from_secs(10);
    let b = Bulkhead::with_timer("timeouts", config(1, 3, timeout), &clock).unwrap();
    let log = record(&b);
    let order = Mutex::new(Vec::new());
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let (tx, holder) = hold(s, &b);
        let push = |name: &'static str| {
            let order = &order;
            move || {
                order.lock().unwrap().push(name);
                Ok(name)
            }
        };
        let a = queue_waiter(s, &b, &clock, 0, push("a")); // queued at 0 s
        clock.advance(Duration::from_secs(4));
        let bw = queue_waiter(s, &b, &clock, 1, push("b")); // at 4 s
        clock.advance(Duration::from_secs(4));
        let c = queue_waiter(s, &b, &clock, 2, push("c")); // at 8 s
        // At 10 s the front waiter gives up, exactly after queue_timeout.
        clock.advance(Duration::from_secs(2));
        match join(a) {
            Err(Error::QueueTimeout { waited }) => assert_eq!(waited, timeout),
            other => panic!("expected a timeout, got {other:?}"),
        }
        // The others keep their places; the queue can take one more.
        assert_eq!(b.metrics().queue_depth, 2);
        let d = queue_waiter(s, &b, &clock, 2, push("d"));
        tx.send(()).unwrap();
        join(holder).unwrap();
        assert_eq!(join(bw).unwrap(), "b");
        assert_eq!(join(c).unwrap(), "c");
        assert_eq!(join(d).unwrap(), "d");
    });
    assert_eq!(*order.lock().unwrap(), vec!["b", "c", "d"]);
    let m = b.metrics();
    assert_eq!(
        (m.calls, m.successes, m.timeouts, m.rejections),
        (5, 4, 1, 0)
    );
    assert_eq!((m.in_flight, m.queue_depth), (0, 0));
    assert_eq!(
        kinds(&log),
        vec![EventKind::QueueTimeout { waited: timeout }]
    );
    assert_eq!(
        log.lock().unwrap()[0].at,
        Timestamp::from_nanos(10_000_000_000)
    );
    // The fast path works again: nothing leaked.
    assert_eq!(b.try_execute(|| Ok::<_, &str>(1)).unwrap(), 1);
}

#[test]
fn waiters_timing_out_together_leave_the_rest_in_place() {
    // Everyone shares the timeout, so the front always times out first;
    // two queued at the same moment time out together, the later one stays.
    let clock = VirtualClock::new();
    let b =
        Bulkhead::with_timer("together", config(1, 3, Duration::from_secs(10)), &clock).unwrap();
    let order = Mutex::new(Vec::new());
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let (tx, holder) = hold(s, &b);
        let order = &order;
        let push = move |i: usize| {
            move || {
                order.lock().unwrap().push(i);
                Ok(())
            }
        };
        clock.advance(Duration::from_secs(1));
        let w0 = queue_waiter(s, &b, &clock, 0, push(0)); // at 1 s
        let w1 = queue_waiter(s, &b, &clock, 1, push(1)); // at 1 s
        clock.advance(Duration::from_secs(4));
        let w2 = queue_waiter(s, &b, &clock, 2, push(2)); // at 5 s
        clock.advance(Duration::from_secs(6)); // 11 s
        assert!(matches!(join(w0), Err(Error::QueueTimeout { .. })));
        assert!(matches!(join(w1), Err(Error::QueueTimeout { .. })));
        assert_eq!(b.metrics().queue_depth, 1);
        tx.send(()).unwrap();
        join(holder).unwrap();
        join(w2).unwrap();
    });
    assert_eq!(*order.lock().unwrap(), vec![2]);
    let m = b.metrics();
    assert_eq!(
        (m.timeouts, m.successes, m.in_flight, m.queue_depth),
        (2, 2, 0, 0)
    );
}

#[test]
fn dispose_wakes_every_waiter_and_fails_later_calls() {
    let clock = VirtualClock::new();
    let b = Bulkhead::with_timer("dispose", config(1, 5, Duration::from_secs(30)), &clock).unwrap();
    let log = record(&b);
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let (tx, holder) = hold(s, &b);
        let waiters: Vec<_> = (0..3)
            .map(|i| queue_waiter(s, &b, &clock, i, || Ok(())))
            .collect();
        b.dispose();
        assert!(b.is_disposed());
        for w in waiters {
            assert!(matches!(join(w), Err(Error::Disposed)));
        }
        assert_eq!(
            clock.now(),
            Timestamp::ZERO,
            "woken by dispose, not by time"
        );
        assert_eq!(b.metrics().queue_depth, 0);
        // Later calls fail, waiting or not.
        assert!(matches!(
            b.execute(|| Ok::<_, &str>(())),
            Err(Error::Disposed)
        ));
        assert!(matches!(
            b.try_execute(|| Ok::<_, &str>(())),
            Err(Error::Disposed)
        ));
        let wrapped = b.wrap(|x: u8| Ok::<_, &str>(x));
        assert!(matches!(wrapped(1), Err(Error::Disposed)));
        // The running closure finishes normally and returns its permit.
        tx.send(()).unwrap();
        join(holder).unwrap();
    });
    let m = b.metrics();
    assert_eq!((m.in_flight, m.queue_depth, m.successes), (0, 0, 1));
    // Disposed was emitted once, then the listeners were removed.
    assert_eq!(kinds(&log), vec![EventKind::Disposed]);
    b.dispose();
    assert_eq!(kinds(&log), vec![EventKind::Disposed]);
}

#[test]
fn listeners_can_be_removed() {
    let b = Bulkhead::unregistered("listeners", config(1, 0, Duration::from_secs(1))).unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&seen);
    let id = b.subscribe(move |_| {
        count.fetch_add(1, SeqCst);
    });
    let full = || b.execute(|| Ok::<_, &str>(b.execute(|| Ok::<_, &str>(()))));
    assert!(matches!(full(), Ok(Err(Error::BulkheadFull))));
    assert_eq!(seen.load(SeqCst), 1);
    assert!(b.unsubscribe(id));
    assert!(!b.unsubscribe(id));
    assert!(matches!(full(), Ok(Err(Error::BulkheadFull))));
    assert_eq!(seen.load(SeqCst), 1);
}

#[test]
fn registry_shares_instances_by_name() {
    let options = config(3, 7, Duration::from_secs(2));
    let a = Bulkhead::get_or_create("registry-bulkhead", options).unwrap();
    let b = Bulkhead::get_or_create("registry-bulkhead", options).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert!(Arc::ptr_eq(
        &a,
        &Bulkhead::get("registry-bulkhead").unwrap()
    ));
    match Bulkhead::get_or_create("registry-bulkhead", BulkheadConfig::DEFAULT) {
        Err(Error::NameTaken { name }) => assert_eq!(&*name, "registry-bulkhead"),
        other => panic!("expected NameTaken, got {other:?}"),
    }
    assert!(matches!(
        Bulkhead::get_or_create(
            "registry-bad",
            BulkheadConfig::DEFAULT.with_max_concurrent(0)
        ),
        Err(Error::InvalidConfig(_))
    ));
    assert!(Bulkhead::get("registry-bad").is_none());
    assert!(Bulkhead::get("registry-unknown").is_none());
    a.dispose();
    assert!(Bulkhead::get("registry-bulkhead").is_none());
    let fresh = Bulkhead::get_or_create("registry-bulkhead", BulkheadConfig::DEFAULT).unwrap();
    assert!(!Arc::ptr_eq(&a, &fresh));
    assert!(!fresh.is_disposed());
    // An instance made with `new` is not registered, and disposing it does
    // not touch the registered one of the same name.
    let local = Bulkhead::unregistered("registry-bulkhead", BulkheadConfig::DEFAULT).unwrap();
    local.dispose();
    assert!(Arc::ptr_eq(
        &fresh,
        &Bulkhead::get("registry-bulkhead").unwrap()
    ));
    fresh.dispose();
}

#[test]
fn wrap_and_policy_composition() {
    let b = Bulkhead::unregistered("compose", config(1, 0, Duration::from_secs(1))).unwrap();
    let parse = b.wrap(|s: &str| s.parse::<u32>());
    assert_eq!(parse("42").unwrap(), 42);
    assert!(parse("x").unwrap_err().inner().is_some());

    // As a policy: the inner policy's errors pass through unchanged.
    let limiter = RateLimiter::with_timer(
        "compose",
        stockade::limiter::RateLimiterConfig::DEFAULT.with_max_queue_size(0),
        VirtualClock::new(),
    )
    .unwrap();
    let pipeline = Pipeline::new().then(&b).then(&limiter);
    for _ in 0..10 {
        let in_flight = pipeline
            .execute(|| Ok::<_, &str>(b.metrics().in_flight))
            .unwrap();
        assert_eq!(in_flight, 1);
    }
    // The limiter's burst is spent: its refusal comes through the bulkhead
    // (which counts it as a failed call) unchanged.
    assert!(matches!(
        pipeline.execute(|| Ok::<_, &str>(())),
        Err(Error::RateLimited { .. })
    ));
    assert_eq!(b.metrics().failures, 1 + 1);
    // Policy::run directly, and through an Arc.
    let shared = Arc::new(&b);
    let r: Result<u8, &str> = shared.run(|| Err(Error::Inner("inner")));
    assert!(matches!(r, Err(Error::Inner("inner"))));
    assert_eq!(shared.metrics().in_flight, 0);
}

#[test]
fn on_the_real_clock_waiters_are_handed_permits_time_out_and_are_disposed() {
    // The default timer (MonotonicClock) parks with a real timeout; these
    // checks have no upper time bounds.
    let b = Bulkhead::unregistered("real-clock", config(1, 2, Duration::from_millis(2))).unwrap();
    thread::scope(|s| {
        let (tx, holder) = {
            let (tx, rx) = mpsc::channel::<()>();
            let b = &b;
            let h = s.spawn(move || {
                b.execute(|| {
                    let _ = rx.recv();
                    Ok::<_, &str>(())
                })
            });
            wait_until("the holder runs", || b.metrics().in_flight == 1);
            (tx, h)
        };
        // Times out after at least queue_timeout of real time.
        match b.execute(|| Ok::<_, &str>(())) {
            Err(Error::QueueTimeout { waited }) => assert!(waited >= Duration::from_millis(2)),
            other => panic!("expected a timeout, got {other:?}"),
        }
        tx.send(()).unwrap();
        join(holder).unwrap();
    });
    let long =
        Bulkhead::unregistered("real-clock-long", config(1, 2, Duration::from_secs(3600))).unwrap();
    thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<()>();
        let (tx2, rx2) = mpsc::channel::<()>();
        let l = &long;
        let holder = s.spawn(move || {
            l.execute(|| {
                let _ = rx.recv();
                Ok::<_, &str>(())
            })
        });
        wait_until("the holder runs", || long.metrics().in_flight == 1);
        // Handed the permit by the release (an hour-long timeout).
        let waiter = s.spawn(move || l.execute(|| Ok::<_, &str>(rx2.recv().is_ok())));
        wait_until("the waiter queues", || long.metrics().queue_depth == 1);
        tx.send(()).unwrap();
        join(holder).unwrap();
        wait_until("the waiter runs", || long.metrics().queue_depth == 0);
        // Woken by dispose.
        let late = s.spawn(move || l.execute(|| Ok::<_, &str>(false)));
        wait_until("the late waiter queues", || long.metrics().queue_depth == 1);
        long.dispose();
        assert!(matches!(join(late), Err(Error::Disposed)));
        tx2.send(()).unwrap();
        assert!(join(waiter).unwrap());
    });
    assert_eq!(long.metrics().in_flight, 0);
}

/// A tiny deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    inner: AtomicU64,
    full: AtomicU64,
    timeout: AtomicU64,
    disposed: AtomicU64,
}

impl Tally {
    fn add<R: core::fmt::Debug>(&self, r: &Result<R>) {
        let counter = match r {
            Ok(_) => &self.ok,
            Err(Error::Inner(())) => &self.inner,
            Err(Error::BulkheadFull) => &self.full,
            Err(Error::QueueTimeout { .. }) => &self.timeout,
            Err(Error::Disposed) => &self.disposed,
            Err(other) => panic!("unexpected {other:?}"),
        };
        counter.fetch_add(1, SeqCst);
    }
}

/// Several threads × thousands of random operations (execute with short
/// closures that sometimes fail, try_execute, nested calls), a ticker that
/// moves virtual time so that waiters time out, and dispose while the
/// workers are still busy. Afterwards no permit or queue place may be left
/// and the concurrency bound must never have been exceeded.
#[test]
fn stress_no_leaks_and_never_above_max_concurrent() {
    const THREADS: u64 = 4;
    const OPS: u64 = 5_000;
    const MAX: usize = 2;
    for round in 0..3u64 {
        let clock = VirtualClock::new();
        let b = Bulkhead::with_timer(
            "stress",
            config(MAX as u32, 3, Duration::from_millis(5)),
            &clock,
        )
        .unwrap();
        let holders = AtomicUsize::new(0);
        let max_seen = AtomicUsize::new(0);
        let progress = AtomicU64::new(0);
        let workers_done = AtomicBool::new(false);
        // Each worker stops at nine tenths of its operations until dispose
        // was called, so dispose always lands while calls remain (and, as
        // the workers reach the gate at different times, while some still
        // run): no luck in the scheduling needed.
        let dispose_called = AtomicBool::new(false);
        let tally = Tally::default();
        let ran = AtomicU64::new(0);
        let nested_outer = AtomicU64::new(0);
        let critical = |rng: &mut Rng| {
            let now = holders.fetch_add(1, SeqCst) + 1;
            assert!(now <= MAX, "{now} holders, max {MAX}");
            max_seen.fetch_max(now, SeqCst);
            ran.fetch_add(1, SeqCst);
            for _ in 0..rng.below(3) {
                thread::yield_now();
            }
            holders.fetch_sub(1, SeqCst);
            if rng.below(10) == 0 { Err(()) } else { Ok(()) }
        };
        thread::scope(|s| {
            let _unstick = Unstick(&clock);
            let ticker = s.spawn(|| {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ round);
                while !workers_done.load(SeqCst) {
                    if clock.waiting() > 0 {
                        clock.advance(Duration::from_micros(rng.below(3_000)));
                    }
                    thread::yield_now();
                }
            });
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (b, tally, progress, critical) = (&b, &tally, &progress, &critical);
                    let (nested_outer, dispose_called) = (&nested_outer, &dispose_called);
                    s.spawn(move || {
                        let mut rng = Rng((t + 1) * 0x2545_f491 + round);
                        for op in 0..OPS {
                            if op == OPS * 9 / 10 {
                                wait_until("dispose is called", || dispose_called.load(SeqCst));
                            }
                            match rng.below(10) {
                                0..=5 => tally.add(&b.execute(|| critical(&mut rng))),
                                6..=8 => tally.add(&b.try_execute(|| critical(&mut rng))),
                                _ => {
                                    // A nested call: holds one permit while
                                    // asking (without waiting) for another.
                                    let r = b.execute(|| {
                                        nested_outer.fetch_add(1, SeqCst);
                                        let inner = b.try_execute(|| critical(&mut rng));
                                        tally.add(&inner);
                                        Ok(())
                                    });
                                    tally.add(&r);
                                }
                            }
                            progress.fetch_add(1, SeqCst);
                        }
                    })
                })
                .collect();
            // Dispose while the workers are busy (nine tenths through).
            wait_until("the workers are nine tenths through", || {
                progress.load(SeqCst) >= THREADS * OPS * 9 / 10
            });
            b.dispose();
            dispose_called.store(true, SeqCst);
            for w in workers {
                join(w);
            }
            workers_done.store(true, SeqCst);
            join(ticker);
        });
        let m = b.metrics();
        assert_eq!(m.in_flight, 0, "a permit leaked");
        assert_eq!(m.queue_depth, 0, "a queue place leaked");
        assert_eq!(holders.load(SeqCst), 0);
        assert!(max_seen.load(SeqCst) <= MAX);
        let get = |c: &AtomicU64| c.load(SeqCst);
        // Every outcome the callers saw is in the metrics, and vice versa.
        assert_eq!(m.successes, get(&tally.ok));
        assert_eq!(m.failures, get(&tally.inner));
        assert_eq!(m.rejections, get(&tally.full));
        assert_eq!(m.timeouts, get(&tally.timeout));
        let disposed_after_call = m.calls - m.successes - m.failures - m.rejections - m.timeouts;
        assert!(disposed_after_call <= get(&tally.disposed));
        // Every admitted closure ran (outer nested closures run no
        // critical section of their own).
        assert_eq!(get(&ran) + get(&nested_outer), m.successes + m.failures);
        assert!(
            get(&tally.disposed) > 0,
            "dispose happened while workers were busy"
        );
        println!(
            "round {round}: {m:?}, max holders {}, disposed {}",
            max_seen.load(SeqCst),
            get(&tally.disposed)
        );
        // After dispose nothing gets in, and nothing is left behind.
        assert!(matches!(
            b.execute(|| Ok::<_, &str>(())),
            Err(Error::Disposed)
        ));
    }
}

// --- Permits held across calls: acquire / guards / tokens ------------------

/// Spawns a thread that takes a permit with `take` (a guard), records `i`
/// once admitted and releases at once; waits until it is parked at
/// `position` (0-based) in the queue.
fn queue_acquirer<'s, T: stockade::blocking::Timer>(
    scope: &'s thread::Scope<'s, '_>,
    bulkhead: &'s Bulkhead<T>,
    clock: &VirtualClock,
    position: usize,
    order: &'s Mutex<Vec<usize>>,
    take: impl FnOnce(&'s Bulkhead<T>) -> Result<stockade::blocking::BulkheadGuard<'s, T>, Infallible>
    + Send
    + 's,
) -> thread::ScopedJoinHandle<'s, Result<(), Infallible>> {
    let handle = scope.spawn(move || {
        let guard = take(bulkhead)?;
        order.lock().unwrap().push(position);
        drop(guard);
        Ok(())
    });
    wait_until("the acquirer is parked", || {
        bulkhead.metrics().queue_depth == position as u64 + 1 && clock.waiting() == position + 1
    });
    handle
}

#[test]
fn guards_are_granted_in_fifo_order_and_counted_at_release() {
    const N: usize = 5;
    let clock = VirtualClock::new();
    let b = Bulkhead::with_timer(
        "guard-fifo",
        config(1, N as u32, Duration::from_secs(60)),
        &clock,
    )
    .unwrap();
    let order = Mutex::new(Vec::new());
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let held = b.acquire().unwrap();
        assert_eq!(b.metrics().in_flight, 1);
        assert_eq!(b.metrics().calls, 0, "counted at release, not before");
        let waiters: Vec<_> = (0..N)
            .map(|i| {
                // Both waiting forms share one FIFO.
                queue_acquirer(s, &b, &clock, i, &order, move |b| {
                    if i % 2 == 0 {
                        b.acquire()
                    } else {
                        b.acquire_timeout(Duration::from_secs(30))
                    }
                })
            })
            .collect();
        // Nobody barges while the queue is non-empty.
        assert!(matches!(b.try_acquire(), Err(Error::BulkheadFull)));
        assert!(matches!(
            b.acquire_timeout(Duration::ZERO),
            Err(Error::BulkheadFull)
        ));
        // The release goes through the blocking path: the front is granted.
        held.success();
        for w in waiters {
            join(w).unwrap();
        }
    });
    assert_eq!(order.into_inner().unwrap(), (0..N).collect::<Vec<_>>());
    let m = b.metrics();
    assert_eq!(
        (
            m.successes,
            m.failures,
            m.rejections,
            m.in_flight,
            m.queue_depth
        ),
        (N as u64 + 1, 0, 2, 0, 0)
    );
}

#[test]
fn acquire_timeout_waits_the_shorter_of_its_timeout_and_the_config() {
    let clock = VirtualClock::new();
    let b = Bulkhead::with_timer(
        "guard-timeout",
        config(1, 4, Duration::from_secs(20)),
        &clock,
    )
    .unwrap();
    let log = record(&b);
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let held = b.acquire().unwrap();
        let short = s.spawn(|| b.acquire_timeout(Duration::from_secs(5)).map(drop));
        wait_until("parked", || clock.waiting() == 1);
        // Asking for longer than the config allows is capped at 20 s.
        let long = s.spawn(|| b.acquire_timeout(Duration::from_secs(3600)).map(drop));
        wait_until("parked", || clock.waiting() == 2);
        clock.advance(Duration::from_secs(5));
        match join(short) {
            Err(Error::QueueTimeout { waited }) => assert_eq!(waited, Duration::from_secs(5)),
            other => panic!("expected a queue timeout, got {other:?}"),
        }
        assert_eq!(
            b.metrics().queue_depth,
            1,
            "the later waiter keeps its place"
        );
        clock.advance(Duration::from_secs(15));
        match join(long) {
            Err(Error::QueueTimeout { waited }) => assert_eq!(waited, Duration::from_secs(20)),
            other => panic!("expected a queue timeout, got {other:?}"),
        }
        drop(held);
    });
    let m = b.metrics();
    assert_eq!(
        (m.calls, m.successes, m.timeouts, m.in_flight, m.queue_depth),
        (3, 1, 2, 0, 0)
    );
    assert_eq!(
        kinds(&log),
        vec![
            EventKind::QueueTimeout {
                waited: Duration::from_secs(5)
            },
            EventKind::QueueTimeout {
                waited: Duration::from_secs(20)
            },
        ]
    );
    // Nothing leaked: the whole bulkhead is free again.
    b.try_acquire().unwrap().success();
}

#[test]
fn dispose_wakes_acquirers_and_refuses_later_ones() {
    let clock = VirtualClock::new();
    let b = Bulkhead::with_timer(
        "guard-dispose",
        config(1, 4, Duration::from_secs(30)),
        &clock,
    )
    .unwrap();
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let held = b.acquire().unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|i| {
                let w = s.spawn(|| b.acquire().map(drop));
                wait_until("parked", || clock.waiting() == i + 1);
                w
            })
            .collect();
        b.dispose();
        for w in waiters {
            assert!(matches!(join(w), Err(Error::Disposed)));
        }
        assert_eq!(
            clock.now(),
            Timestamp::ZERO,
            "woken by dispose, not by time"
        );
        assert!(matches!(b.acquire(), Err(Error::Disposed)));
        assert!(matches!(b.try_acquire(), Err(Error::Disposed)));
        assert!(matches!(
            b.acquire_timeout(Duration::from_secs(1)),
            Err(Error::Disposed)
        ));
        // A guard held across dispose still releases normally.
        held.failure();
    });
    let m = b.metrics();
    assert_eq!(
        (m.in_flight, m.queue_depth, m.failures, m.calls),
        (0, 0, 1, 1)
    );
}

#[test]
fn a_panic_while_a_guard_is_held_counts_a_failure_and_releases() {
    let b = Bulkhead::unregistered("guard-panic", config(1, 0, Duration::ZERO)).unwrap();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        let _guard = b.acquire().unwrap();
        panic!("boom");
    }));
    assert!(panicked.is_err());
    let m = b.metrics();
    assert_eq!((m.failures, m.successes, m.in_flight), (1, 0, 0));
    b.acquire().unwrap().success();
    assert_eq!(b.metrics().successes, 1);
}

#[test]
fn tokens_release_through_the_blocking_path_and_a_double_release_is_refused() {
    use stockade::bulkhead::NotHeld;
    let clock = VirtualClock::new();
    let b =
        Bulkhead::with_timer("guard-token", config(1, 2, Duration::from_secs(30)), &clock).unwrap();
    let token = b.acquire().unwrap().into_token();
    assert_eq!(b.metrics().in_flight, 1);
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let waiter = s.spawn(|| b.acquire().map(|g| g.into_token()));
        wait_until("parked", || clock.waiting() == 1);
        // The release grants the parked waiter (no time passes).
        assert_eq!(b.release_token(token), Ok(()));
        let second = join(waiter).unwrap();
        assert_eq!(clock.now(), Timestamp::ZERO);
        assert_eq!(b.metrics().in_flight, 1);
        assert_eq!(b.release_token(second), Ok(()));
    });
    let before = b.metrics();
    assert_eq!((before.successes, before.in_flight), (2, 0));
    // Released twice with no permit in use: refused, nothing moves.
    assert_eq!(b.release_token(token), Err(NotHeld));
    let after = b.metrics();
    assert_eq!(
        (
            after.calls,
            after.successes,
            after.failures,
            after.in_flight,
            after.queue_depth
        ),
        (before.calls, before.successes, before.failures, 0, 0)
    );
    // The whole bulkhead still works: exactly one permit.
    let g = b.try_acquire().unwrap();
    assert!(matches!(b.try_acquire(), Err(Error::BulkheadFull)));
    drop(g);
}

#[test]
fn guards_and_tokens_lose_no_permits_under_contention() {
    const THREADS: usize = 4;
    const OPS: usize = 2_000;
    const MAX: usize = 2;
    let b = Arc::new(
        Bulkhead::unregistered(
            "guard-stress",
            config(MAX as u32, 8, Duration::from_secs(30)),
        )
        .unwrap(),
    );
    let holders = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    within(Duration::from_secs(120), {
        let (b, holders, failures, rejected) = (
            b.clone(),
            holders.clone(),
            failures.clone(),
            rejected.clone(),
        );
        move || {
            thread::scope(|s| {
                for t in 0..THREADS {
                    let (b, holders, failures, rejected) = (&b, &holders, &failures, &rejected);
                    s.spawn(move || {
                        for i in 0..OPS {
                            let critical = || {
                                let now = holders.fetch_add(1, SeqCst) + 1;
                                assert!(now <= MAX, "{now} holders, max {MAX}");
                                thread::yield_now();
                                holders.fetch_sub(1, SeqCst);
                            };
                            match (t + i) % 4 {
                                0 => {
                                    let g = b.acquire().unwrap();
                                    critical();
                                    drop(g);
                                }
                                1 => match b.try_acquire() {
                                    Ok(g) => {
                                        critical();
                                        failures.fetch_add(1, SeqCst);
                                        g.failure();
                                    }
                                    Err(Error::BulkheadFull) => {
                                        rejected.fetch_add(1, SeqCst);
                                    }
                                    Err(e) => panic!("{e}"),
                                },
                                2 => {
                                    let token = b
                                        .acquire_timeout(Duration::from_secs(30))
                                        .unwrap()
                                        .into_token();
                                    critical();
                                    b.release_token(token).unwrap();
                                }
                                _ => b
                                    .execute(|| {
                                        critical();
                                        Ok::<_, ()>(())
                                    })
                                    .unwrap(),
                            }
                        }
                    });
                }
            });
        }
    });
    let m = b.metrics();
    assert_eq!(
        (m.in_flight, m.queue_depth),
        (0, 0),
        "a permit or a place leaked"
    );
    let total = (THREADS * OPS) as u64;
    assert_eq!(m.failures, failures.load(SeqCst));
    assert_eq!(m.rejections, rejected.load(SeqCst));
    assert_eq!(m.successes + m.failures + m.rejections, total);
    assert_eq!(m.calls, total);
    // Exactly MAX permits remain.
    let g1 = b.try_acquire().unwrap();
    let g2 = b.try_acquire().unwrap();
    assert!(matches!(b.try_acquire(), Err(Error::BulkheadFull)));
    drop((g1, g2));
}
