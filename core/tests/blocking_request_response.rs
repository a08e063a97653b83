//! The request-response pattern through its public API, on virtual time.
#![cfg(not(stockade_loom))]

mod common;
#[allow(unused_imports)]
use common::{unique, wait_for, wait_until, within};

use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use std::collections::HashSet;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use stockade::blocking::{
    CircuitBreaker, Error, Event, EventKind, PatternKind, Policy, Request, RequestResponseConfig,
    RequestResponsePattern, Response, VirtualClock,
};
use stockade::breaker::{BreakerConfig, BreakerState};
use stockade::clock::Timestamp;

const SEC: Duration = Duration::from_secs(1);

type Virtual<P = stockade::blocking::Unprotected> =
    RequestResponsePattern<u32, String, P, Arc<VirtualClock>>;

fn virtual_pattern<H>(
    name: &str,
    options: RequestResponseConfig,
    handler: H,
) -> (Virtual, Arc<VirtualClock>)
where
    H: Fn(&Request<u32>) -> Result<Response<String>, String> + Send + Sync + 'static,
{
    let clock = Arc::new(VirtualClock::new());
    let pattern =
        RequestResponsePattern::with_timer(name, options, Arc::clone(&clock), handler).unwrap();
    (pattern, clock)
}

fn echo(request: &Request<u32>) -> Result<Response<String>, String> {
    Ok(Response::ok(request.data.to_string()))
}

fn collect<P: Policy>(p: &Virtual<P>) -> Arc<Mutex<Vec<Event>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    p.subscribe(move |e| sink.lock().unwrap().push(e.clone()));
    events
}

/// A handler that blocks until released, announcing each start.
struct Gate {
    started: Mutex<Sender<u32>>,
    release: Mutex<Receiver<()>>,
}

fn gate() -> (Arc<Gate>, Receiver<u32>, Sender<()>) {
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let gate = Arc::new(Gate {
        started: Mutex::new(started_tx),
        release: Mutex::new(release_rx),
    });
    (gate, started_rx, release_tx)
}

fn gated(
    gate: Arc<Gate>,
) -> impl Fn(&Request<u32>) -> Result<Response<String>, String> + Send + Sync + 'static {
    move |request: &Request<u32>| {
        gate.started.lock().unwrap().send(request.data).unwrap();
        gate.release
            .lock()
            .unwrap()
            .recv()
            .map_err(|e| e.to_string())?;
        Ok(Response::ok(std::format!("done {}", request.data)))
    }
}

#[test]
fn the_spec_usage() {
    let pattern = RequestResponsePattern::new("rr-spec", |request: &Request<u32>| {
        Ok::<_, String>(Response::ok(std::format!("Success: {}", request.data)))
    })
    .unwrap();
    let response = pattern.execute(Request::new(123).with_timeout(Duration::from_millis(5000)));
    assert_eq!(response.status, 200);
    assert!(response.is_success());
    assert_eq!(response.data.as_deref(), Some("Success: 123"));
    assert_eq!(response.error, None);
    assert_eq!(response.correlation_id, "rr-spec-1");
    let response = pattern.execute(Request::new(4));
    assert_eq!(response.correlation_id, "rr-spec-2");
}

#[test]
fn correlation_ids() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let (pattern, _clock) = virtual_pattern("rr-ids", RequestResponseConfig::DEFAULT, move |r| {
        log.lock()
            .unwrap()
            .push(r.correlation_id().map(String::from));
        echo(r)
    });
    let given = pattern.execute(Request::new(1).with_correlation_id("trace-9"));
    assert_eq!(given.correlation_id, "trace-9");
    let timed = pattern.execute(Request::new(2).with_timeout(SEC));
    assert_eq!(timed.status, 200);
    assert_eq!(timed.correlation_id, "rr-ids-1");
    // The handler's own correlation id is replaced.
    let ids: HashSet<String> = (0..100)
        .map(|i| pattern.execute(Request::new(i)).correlation_id)
        .collect();
    assert_eq!(ids.len(), 100);
    assert!(ids.contains("rr-ids-2") && ids.contains("rr-ids-101"));
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].as_deref(), Some("trace-9"));
    assert_eq!(
        seen[1].as_deref(),
        Some("rr-ids-1"),
        "the handler sees the id"
    );
}

#[test]
fn handler_errors_and_panics_are_500s() {
    let (pattern, _clock) =
        virtual_pattern("rr-errors", RequestResponseConfig::DEFAULT, |r| {
            match r.data {
                0 => Err(String::from("database unreachable")),
                1 => panic!("handler bug"),
                2 => Ok(Response::error(404, "no such user")),
                3 => Ok(Response::error(503, "upstream busy")),
                _ => echo(r),
            }
        });
    for timeout in [None, Some(SEC)] {
        let request = |data| {
            let r = Request::new(data);
            match timeout {
                Some(t) => r.with_timeout(t),
                None => r,
            }
        };
        let failed = pattern.execute(request(0));
        assert_eq!(failed.status, 500);
        assert_eq!(failed.error.as_deref(), Some("database unreachable"));
        assert_eq!(failed.data, None);
        let panicked = pattern.execute(request(1));
        assert_eq!(panicked.status, 500);
        assert_eq!(
            panicked.error.as_deref(),
            Some("handler panicked: handler bug")
        );
        // The handler's own statuses are kept.
        assert_eq!(pattern.execute(request(2)).status, 404);
        let busy = pattern.execute(request(3));
        assert_eq!(
            (busy.status, busy.error.as_deref()),
            (503, Some("upstream busy"))
        );
        assert_eq!(pattern.execute(request(7)).status, 200);
    }
    let m = pattern.metrics();
    assert_eq!(m.calls, 10);
    assert_eq!(m.successes, 4, "the 404s and 200s");
    assert_eq!(m.failures, 6, "errors, panics and 5xx answers");
    assert_eq!((m.rejections, m.timeouts, m.in_flight), (0, 0, 0));
}

/// A policy that refuses with a fixed error, or wraps the last of a few
/// attempts as `RetriesExhausted`.
enum Fixed {
    RateLimited,
    BreakerOpen(BreakerState),
    BulkheadFull,
    QueueTimeout,
    TimedOut,
    Disposed,
    InvalidConfig,
    Retry(u32),
}

impl Policy for Fixed {
    fn run<R, E: core::fmt::Display, F>(&self, mut call: F) -> Result<R, Error<E>>
    where
        F: FnMut() -> Result<R, Error<E>>,
    {
        Err(match self {
            Fixed::RateLimited => Error::RateLimited {
                retry_after: 2 * SEC,
            },
            Fixed::BreakerOpen(state) => Error::BreakerOpen {
                state: *state,
                retry_after: if *state == BreakerState::ForcedOpen {
                    Duration::MAX
                } else {
                    3 * SEC
                },
            },
            Fixed::BulkheadFull => Error::BulkheadFull,
            Fixed::QueueTimeout => Error::QueueTimeout { waited: SEC },
            Fixed::TimedOut => Error::TimedOut { after: SEC },
            Fixed::Disposed => Error::Disposed,
            Fixed::InvalidConfig => Error::InvalidConfig(stockade::ConfigError::zero(
                stockade::ConfigOption::MaxWorkers,
                stockade::ConfigValue::Count(0),
            )),
            Fixed::Retry(attempts) => {
                let mut last = None;
                for _ in 0..*attempts {
                    match call() {
                        Ok(r) => return Ok(r),
                        Err(e) => last = Some(e),
                    }
                }
                Error::RetriesExhausted {
                    attempts: *attempts,
                    last: Box::new(last.expect("at least one attempt")),
                }
            }
        })
    }
}

#[test]
fn protection_errors_map_to_http_statuses() {
    let cases: Vec<(Fixed, u16, Option<Duration>)> = vec![
        (Fixed::RateLimited, 429, Some(2 * SEC)),
        (Fixed::BreakerOpen(BreakerState::Open), 503, Some(3 * SEC)),
        (
            Fixed::BreakerOpen(BreakerState::HalfOpen),
            503,
            Some(3 * SEC),
        ),
        (Fixed::BreakerOpen(BreakerState::ForcedOpen), 503, None),
        (Fixed::BulkheadFull, 503, None),
        (Fixed::QueueTimeout, 503, None),
        (Fixed::TimedOut, 504, None),
        (Fixed::Disposed, 503, None),
        (Fixed::InvalidConfig, 500, None),
    ];
    for (policy, status, retry_after) in cases {
        let (pattern, _clock) = virtual_pattern("rr-status", RequestResponseConfig::DEFAULT, echo);
        let pattern = pattern.protected_by(policy);
        let events = collect(&pattern);
        let response = pattern.execute(Request::new(1).with_correlation_id("c"));
        assert_eq!(response.status, status, "{:?}", response.error);
        assert_eq!(response.retry_after, retry_after);
        assert_eq!(response.correlation_id, "c");
        assert!(response.error.is_some());
        let m = pattern.metrics();
        let kinds: Vec<_> = events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.kind.clone())
            .collect();
        match status {
            504 => {
                assert_eq!(m.timeouts, 1);
                assert_eq!(kinds, [EventKind::TimedOut { after: SEC }]);
            }
            500 => assert_eq!((m.failures, kinds.len()), (1, 0)),
            _ => {
                assert_eq!(m.rejections, 1);
                assert_eq!(kinds, [EventKind::Rejected { retry_after }]);
            }
        }
    }
}

#[test]
fn exhausted_retries_keep_the_last_attempts_status() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let (pattern, _clock) = virtual_pattern("rr-retry", RequestResponseConfig::DEFAULT, move |r| {
        counter.fetch_add(1, Ordering::SeqCst);
        match r.data {
            0 => Err(String::from("flaky")),
            1 => Ok(Response::error(502, "bad gateway")),
            _ => echo(r),
        }
    });
    let pattern = pattern.protected_by(Fixed::Retry(3));
    let r = pattern.execute(Request::new(0));
    assert_eq!(r.status, 500);
    assert_eq!(r.error.as_deref(), Some("gave up after 3 attempts: flaky"));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // A 5xx answer is a failure for the policy (retried), kept as is.
    let r = pattern.execute(Request::new(1));
    assert_eq!(r.status, 502);
    assert_eq!(
        r.error.as_deref(),
        Some("gave up after 3 attempts: bad gateway")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    // A success is not retried.
    assert_eq!(pattern.execute(Request::new(5)).status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 7);
}

#[test]
fn a_circuit_breaker_protects_the_handler() {
    let clock = Arc::new(VirtualClock::new());
    let breaker = Arc::new(
        CircuitBreaker::with_timer(
            "rr-breaker-db",
            BreakerConfig::DEFAULT.with_failure_threshold(2),
            Arc::clone(&clock),
        )
        .unwrap(),
    );
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let pattern = RequestResponsePattern::with_timer(
        "rr-breaker",
        RequestResponseConfig::DEFAULT,
        Arc::clone(&clock),
        move |r: &Request<u32>| {
            counter.fetch_add(1, Ordering::SeqCst);
            if r.data == 0 {
                Ok(Response::error(500, "broken"))
            } else {
                echo(r)
            }
        },
    )
    .unwrap()
    .protected_by(Arc::clone(&breaker));
    assert_eq!(pattern.execute(Request::new(1)).status, 200);
    // 5xx answers count as failures for the breaker.
    assert_eq!(pattern.execute(Request::new(0)).status, 500);
    assert_eq!(pattern.execute(Request::new(0)).status, 500);
    assert_eq!(breaker.state(), BreakerState::Open);
    let refused = pattern.execute(Request::new(1));
    assert_eq!(refused.status, 503);
    let retry_after = refused.retry_after.unwrap();
    assert!(retry_after >= Duration::from_secs(60) && retry_after <= Duration::from_secs(61));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "refused without calling the handler"
    );
    clock.advance(retry_after);
    assert_eq!(pattern.execute(Request::new(1)).status, 200);
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
}

#[test]
fn a_blocked_handler_gets_a_504_on_virtual_time() {
    let (gate, started, release) = gate();
    let (pattern, clock) = virtual_pattern("rr-504", RequestResponseConfig::DEFAULT, gated(gate));
    let pattern = Arc::new(pattern);
    let events = collect(&pattern);
    let caller = {
        let pattern = Arc::clone(&pattern);
        thread::spawn(move || pattern.execute(Request::new(1).with_timeout(Duration::from_secs(5))))
    };
    assert_eq!(started.recv().unwrap(), 1, "the handler runs on a worker");
    wait_for(|| clock.waiting() == 1); // the caller waits on the clock
    clock.advance(Duration::from_secs(4));
    wait_for(|| clock.waiting() == 1);
    assert_eq!(pattern.metrics().in_flight, 1);
    clock.advance(SEC);
    let response = caller.join().unwrap();
    assert_eq!(response.status, 504);
    assert_eq!(response.error.as_deref(), Some("timed out after 5s"));
    assert_eq!(response.correlation_id, "rr-504-1");
    let m = pattern.metrics();
    assert_eq!((m.timeouts, m.in_flight, m.calls), (1, 0, 1));
    let kinds: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.kind.clone())
        .collect();
    assert_eq!(
        kinds,
        [EventKind::TimedOut {
            after: Duration::from_secs(5)
        }]
    );
    let event = &events.lock().unwrap()[0];
    assert_eq!(event.pattern, PatternKind::RequestResponse);
    assert_eq!(event.at, Timestamp::from_nanos(5_000_000_000));

    // The handler is still running (its work goes on); once it returns,
    // its worker serves the next request.
    release.send(()).unwrap();
    let caller = {
        let pattern = Arc::clone(&pattern);
        thread::spawn(move || pattern.execute(Request::new(2).with_timeout(Duration::from_secs(5))))
    };
    assert_eq!(started.recv().unwrap(), 2);
    release.send(()).unwrap();
    let response = caller.join().unwrap();
    assert_eq!(
        (response.status, response.data.as_deref()),
        (200, Some("done 2"))
    );
}

#[test]
fn the_deadline_covers_every_attempt() {
    let (gate, started, release) = gate();
    let (pattern, clock) =
        virtual_pattern("rr-deadline", RequestResponseConfig::DEFAULT, gated(gate));
    let pattern = Arc::new(pattern.protected_by(Fixed::Retry(3)));
    let caller = {
        let pattern = Arc::clone(&pattern);
        thread::spawn(move || pattern.execute(Request::new(1).with_timeout(SEC)))
    };
    started.recv().unwrap();
    wait_for(|| clock.waiting() == 1);
    clock.advance(SEC);
    let response = caller.join().unwrap();
    // The retries found no time left and did not call the handler again.
    assert_eq!(response.status, 504);
    assert_eq!(
        response.error.as_deref(),
        Some("gave up after 3 attempts: timed out after 1s")
    );
    assert!(started.try_recv().is_err());
    release.send(()).unwrap();
}

#[test]
fn default_timeout_and_invalid_options() {
    let (gate, started, release) = gate();
    let (pattern, clock) = virtual_pattern(
        "rr-default-timeout",
        RequestResponseConfig::DEFAULT.with_default_timeout(Duration::from_secs(2)),
        gated(gate),
    );
    let pattern = Arc::new(pattern);
    let caller = {
        let pattern = Arc::clone(&pattern);
        thread::spawn(move || pattern.execute(Request::new(1)))
    };
    started.recv().unwrap();
    wait_for(|| clock.waiting() == 1);
    clock.advance(Duration::from_secs(2));
    assert_eq!(caller.join().unwrap().status, 504);
    release.send(()).unwrap();

    let zero = RequestResponsePattern::unregistered(
        "rr-invalid",
        RequestResponseConfig::DEFAULT.with_max_workers(0),
        echo,
    );
    assert!(
        matches!(zero, Err(Error::InvalidConfig(e)) if e.option == stockade::ConfigOption::MaxWorkers)
    );
    let zero = RequestResponsePattern::unregistered(
        "rr-invalid",
        RequestResponseConfig::DEFAULT.with_default_timeout(Duration::ZERO),
        echo,
    );
    assert!(
        matches!(zero, Err(Error::InvalidConfig(e)) if e.option == stockade::ConfigOption::DefaultTimeout)
    );
    // A zero timeout on a request: 504 without calling the handler.
    let (pattern, _clock) = virtual_pattern("rr-zero", RequestResponseConfig::DEFAULT, |_| {
        panic!("must not run")
    });
    assert_eq!(
        pattern
            .execute(Request::new(1).with_timeout(Duration::ZERO))
            .status,
        504
    );
}

#[test]
fn a_full_worker_pool_refuses_with_503() {
    let (gate, started, release) = gate();
    let (pattern, clock) = virtual_pattern(
        "rr-pool",
        RequestResponseConfig::DEFAULT
            .with_max_workers(1)
            .with_max_queue(1),
        gated(gate),
    );
    let pattern = Arc::new(pattern);
    let events = collect(&pattern);
    let spawn = |data: u32| {
        let pattern = Arc::clone(&pattern);
        thread::spawn(move || {
            pattern.execute(Request::new(data).with_timeout(Duration::from_secs(60)))
        })
    };
    let first = spawn(1);
    assert_eq!(started.recv().unwrap(), 1); // the only worker is busy
    let second = spawn(2);
    wait_for(|| clock.waiting() == 2 && pattern.metrics().queue_depth == 1);
    // Worker busy, queue full: refused at once, without waiting.
    let third = pattern.execute(Request::new(3).with_timeout(Duration::from_secs(60)));
    assert_eq!(third.status, 503);
    assert_eq!(third.error.as_deref(), Some("every worker is busy"));
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.kind == EventKind::Rejected { retry_after: None })
    );
    // Requests without a timeout run on the caller's thread: not refused.
    let (plain, _) = virtual_pattern("rr-pool-plain", RequestResponseConfig::DEFAULT, echo);
    assert_eq!(plain.execute(Request::new(4)).status, 200);

    release.send(()).unwrap();
    assert_eq!(first.join().unwrap().status, 200);
    assert_eq!(started.recv().unwrap(), 2);
    release.send(()).unwrap();
    assert_eq!(second.join().unwrap().status, 200);
    assert_eq!(pattern.metrics().rejections, 1);
}

#[test]
fn a_request_whose_caller_gave_up_is_skipped() {
    let (gate, started, release) = gate();
    let (pattern, clock) = virtual_pattern(
        "rr-skip",
        RequestResponseConfig::DEFAULT.with_max_workers(1),
        gated(gate),
    );
    let pattern = Arc::new(pattern);
    let spawn = |data: u32, timeout: Duration| {
        let pattern = Arc::clone(&pattern);
        thread::spawn(move || pattern.execute(Request::new(data).with_timeout(timeout)))
    };
    let first = spawn(1, Duration::from_secs(60));
    assert_eq!(started.recv().unwrap(), 1);
    let second = spawn(2, Duration::from_secs(5));
    wait_for(|| clock.waiting() == 2);
    clock.advance(Duration::from_secs(5));
    assert_eq!(second.join().unwrap().status, 504);
    release.send(()).unwrap();
    assert_eq!(first.join().unwrap().status, 200);
    // The worker skipped request 2; the next one runs.
    let third = spawn(3, Duration::from_secs(60));
    assert_eq!(started.recv().unwrap(), 3);
    release.send(()).unwrap();
    assert_eq!(third.join().unwrap().status, 200);
}

#[test]
fn dispose() {
    let (gate, started, release) = gate();
    let (pattern, clock) = virtual_pattern(
        "rr-dispose",
        RequestResponseConfig::DEFAULT.with_max_workers(1),
        gated(gate),
    );
    let pattern = Arc::new(pattern);
    let events = collect(&pattern);
    let spawn = |data: u32| {
        let pattern = Arc::clone(&pattern);
        thread::spawn(move || {
            pattern.execute(Request::new(data).with_timeout(Duration::from_secs(60)))
        })
    };
    let running = spawn(1);
    assert_eq!(started.recv().unwrap(), 1);
    let queued = spawn(2);
    wait_for(|| clock.waiting() == 2 && pattern.metrics().queue_depth == 1);
    pattern.dispose();
    pattern.dispose();
    // The queued request wakes with a 503; the running one finishes.
    wait_for(|| queued.is_finished());
    let response = queued.join().unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.error.as_deref(), Some("the pattern was disposed"));
    release.send(()).unwrap();
    assert_eq!(running.join().unwrap().status, 200);
    let later = pattern.execute(Request::new(3));
    assert_eq!(
        (later.status, later.correlation_id.as_str()),
        (503, "rr-dispose-3")
    );
    assert!(started.try_recv().is_err());
    let kinds: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.kind.clone())
        .collect();
    assert_eq!(kinds, [EventKind::Disposed], "one event, then no listeners");
}

#[test]
fn registry() {
    let options = RequestResponseConfig::DEFAULT.with_max_workers(2);
    let a = RequestResponsePattern::get_or_create("rr-registry", options, echo).unwrap();
    let b = RequestResponsePattern::get_or_create("rr-registry", options, |_: &Request<u32>| {
        Err::<Response<String>, _>("the first handler serves")
    })
    .unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(b.execute(Request::new(8)).data.as_deref(), Some("8"));
    assert!(Arc::ptr_eq(
        &a,
        &RequestResponsePattern::get("rr-registry").unwrap()
    ));
    match RequestResponsePattern::get_or_create("rr-registry", RequestResponseConfig::DEFAULT, echo)
    {
        Err(Error::NameTaken { name }) => assert_eq!(&*name, "rr-registry"),
        other => panic!("expected NameTaken, got {other:?}"),
    }
    // Other payload types are another registry entry.
    assert!(RequestResponsePattern::<u64, String>::get("rr-registry").is_none());
    a.dispose();
    assert!(RequestResponsePattern::<u32, String>::get("rr-registry").is_none());
    let c =
        RequestResponsePattern::get_or_create("rr-registry", RequestResponseConfig::DEFAULT, echo)
            .unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!(c.execute(Request::new(1)).status, 200);
}

#[test]
fn a_panicking_listener_is_harmless() {
    let (pattern, _clock) = virtual_pattern("rr-listener", RequestResponseConfig::DEFAULT, echo);
    let pattern = pattern.protected_by(Fixed::BulkheadFull);
    pattern.subscribe(|_| panic!("listener bug"));
    let events = collect(&pattern);
    assert_eq!(pattern.execute(Request::new(1)).status, 503);
    assert_eq!(pattern.execute(Request::new(1)).status, 503);
    assert_eq!(events.lock().unwrap().len(), 2);
}

#[test]
fn concurrent_timed_requests() {
    let (pattern, _clock) = virtual_pattern(
        "rr-concurrent",
        RequestResponseConfig::DEFAULT
            .with_max_workers(4)
            .with_max_queue(64),
        echo,
    );
    let pattern = Arc::new(pattern);
    let ids = Arc::new(Mutex::new(HashSet::new()));
    thread::scope(|s| {
        for t in 0..4u32 {
            let pattern = Arc::clone(&pattern);
            let ids = Arc::clone(&ids);
            s.spawn(move || {
                for i in 0..50 {
                    let r = pattern
                        .execute(Request::new(t * 100 + i).with_timeout(Duration::from_secs(60)));
                    assert_eq!(r.status, 200);
                    assert_eq!(r.data, Some((t * 100 + i).to_string()));
                    ids.lock().unwrap().insert(r.correlation_id);
                }
            });
        }
    });
    assert_eq!(ids.lock().unwrap().len(), 200);
    let m = pattern.metrics();
    assert_eq!((m.calls, m.successes, m.in_flight), (200, 200, 0));
}

#[test]
fn shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<RequestResponsePattern<u32, String>>();
}
