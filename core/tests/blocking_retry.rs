//! The blocking Retry on virtual time: options and defaults, the exact
//! back-off schedule, error matching, the retry budget, deadlines, nested
//! protections, dispose, registry, metrics and events.
#![cfg(all(feature = "std", not(stockade_loom)))]

mod common;
#[allow(unused_imports)]
use common::{unique, wait_for, wait_until, within};

use core::time::Duration;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use stockade::backoff::{BackoffConfig, Jitter};
use stockade::blocking::{
    Error, ErrorMatcher, Event, EventKind, Pipeline, Policy, Retry, RetryConfig, Timeout, Timer,
    VirtualClock, with_deadline,
};
use stockade::breaker::BreakerState;
use stockade::budget::{RetryBudget, RetryBudgetConfig};
use stockade::clock::{Clock, Timestamp};
use stockade::deadline::{Deadline, TimeoutConfig};
use stockade::error::{ConfigError, ConfigOption, ConfigProblem, ConfigValue};

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

/// A retry on an auto-advancing virtual clock.
fn sim(name: &str, config: RetryConfig) -> (Arc<VirtualClock>, Retry<Arc<VirtualClock>>) {
    let clock = Arc::new(VirtualClock::auto_advance());
    let retry = Retry::with_timer(name, config, Arc::clone(&clock)).expect("valid config");
    (clock, retry)
}

/// Runs a call that always fails with `error` and returns the times (since
/// the clock's epoch) at which the attempts started, and the outcome.
fn attempt_times<T: Timer>(
    retry: &Retry<T>,
    clock: &VirtualClock,
    error: &'static str,
) -> (Vec<Duration>, Result<(), Error<&'static str>>) {
    let mut times = Vec::new();
    let out = retry.execute(|| {
        times.push(Duration::from_nanos(clock.now().as_nanos()));
        Err(error)
    });
    (times, out)
}

fn exhausted(out: Result<(), Error<&'static str>>) -> (u32, Error<&'static str>) {
    match out {
        Err(Error::RetriesExhausted { attempts, last }) => (attempts, *last),
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
}

fn record_events<T: Timer>(retry: &Retry<T>) -> Arc<Mutex<Vec<Event>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    retry.subscribe(move |e: &Event| sink.lock().unwrap().push(e.clone()));
    events
}

#[test]
fn defaults_are_the_spec_values() {
    let c = RetryConfig::default();
    assert_eq!(c.backoff, BackoffConfig::DEFAULT);
    assert_eq!(c.backoff.max_attempts, 3);
    assert_eq!(c.backoff.initial_delay, MS(1000));
    assert_eq!(c.backoff.max_delay, MS(30_000));
    assert_eq!(c.backoff.backoff_factor, 2.0);
    assert_eq!(c.backoff.jitter, Jitter::None);
    assert_eq!(c.backoff.max_elapsed, None);
    assert!(c.retryable_errors.is_empty());
    assert_eq!(c.seed, None);
    assert!(c.budget.is_none());
}

#[test]
fn default_schedule_is_0_1_3_seconds() {
    let (clock, retry) = sim("defaults", RetryConfig::default());
    let (times, out) = attempt_times(&retry, &clock, "boom");
    assert_eq!(times, [S(0), S(1), S(3)]);
    let (attempts, last) = exhausted(out);
    assert_eq!(attempts, 3);
    assert!(matches!(last, Error::Inner("boom")));
    // Nothing sleeps after the last attempt.
    assert_eq!(clock.now(), Timestamp::from_nanos(3_000_000_000));
}

/// The retrying thread really waits on the clock: it stays parked until
/// the clock reaches each delay, to the nanosecond.
#[test]
fn back_off_waits_for_the_clock() {
    let clock = Arc::new(VirtualClock::new());
    let retry = Retry::with_timer("waits", RetryConfig::default(), Arc::clone(&clock)).unwrap();
    let (tx, rx) = mpsc::channel();
    thread::scope(|s| {
        let worker = s.spawn(|| {
            retry.execute(|| {
                tx.send(clock.now()).unwrap();
                Err::<(), _>("down")
            })
        });
        let wait_parked = || {
            while clock.waiting() == 0 {
                thread::yield_now();
            }
        };
        assert_eq!(rx.recv().unwrap(), Timestamp::ZERO);
        wait_parked();
        clock.advance(S(1) - Duration::from_nanos(1));
        assert_eq!(clock.waiting(), 1, "woke before its delay");
        assert!(rx.try_recv().is_err());
        clock.advance(Duration::from_nanos(1));
        assert_eq!(rx.recv().unwrap(), Timestamp::from_nanos(1_000_000_000));
        wait_parked();
        clock.advance(S(2));
        assert_eq!(rx.recv().unwrap(), Timestamp::from_nanos(3_000_000_000));
        let (attempts, _) = exhausted(worker.join().unwrap());
        assert_eq!(attempts, 3);
    });
}

#[test]
fn max_attempts_initial_delay_and_factor() {
    let config = RetryConfig::default()
        .with_max_attempts(5)
        .with_initial_delay(MS(100))
        .with_backoff_factor(3.0);
    let (clock, retry) = sim("options", config);
    let (times, out) = attempt_times(&retry, &clock, "x");
    // Delays 100, 300, 900, 2700 ms.
    assert_eq!(times, [MS(0), MS(100), MS(400), MS(1300), MS(4000)]);
    assert_eq!(exhausted(out).0, 5);

    let (clock, retry) = sim("one", RetryConfig::default().with_max_attempts(1));
    let (times, out) = attempt_times(&retry, &clock, "x");
    assert_eq!(times, [S(0)]);
    assert_eq!(exhausted(out).0, 1);

    let (clock, retry) = sim(
        "constant",
        RetryConfig::default()
            .with_backoff_factor(1.0)
            .with_max_attempts(4),
    );
    assert_eq!(
        attempt_times(&retry, &clock, "x").0,
        [S(0), S(1), S(2), S(3)]
    );

    let (clock, retry) = sim(
        "zero",
        RetryConfig::default().with_initial_delay(Duration::ZERO),
    );
    assert_eq!(attempt_times(&retry, &clock, "x").0, [S(0), S(0), S(0)]);
}

#[test]
fn max_delay_caps_every_delay() {
    let config = RetryConfig::default()
        .with_max_attempts(5)
        .with_backoff_factor(10.0)
        .with_max_delay(S(5));
    let (clock, retry) = sim("cap", config);
    let events = record_events(&retry);
    let (times, _) = attempt_times(&retry, &clock, "x");
    assert_eq!(times, [S(0), S(1), S(6), S(11), S(16)]);
    let delays: Vec<(u32, Duration)> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| match e.kind {
            EventKind::Retry { attempt, delay } => (attempt, delay),
            ref k => panic!("unexpected {k:?}"),
        })
        .collect();
    assert_eq!(delays, [(1, S(1)), (2, S(5)), (3, S(5)), (4, S(5))]);
}

#[test]
fn max_elapsed_stops_before_a_delay_that_would_overrun() {
    let config = RetryConfig::default()
        .with_max_attempts(10)
        .with_max_elapsed(Some(S(4)));
    let (clock, retry) = sim("elapsed", config);
    // 0 + 1 fits, 1 + 2 = 3 fits, 3 + 4 = 7 > 4: stop after the third attempt.
    let (times, out) = attempt_times(&retry, &clock, "x");
    assert_eq!(times, [S(0), S(1), S(3)]);
    assert_eq!(exhausted(out).0, 3);
}

#[test]
fn jitter_is_bounded_and_deterministic_per_seed() {
    let jittered = |name: &str, seed: Option<u64>| {
        let mut config = RetryConfig::default()
            .with_max_attempts(6)
            .with_jitter(Jitter::Full);
        config.seed = seed;
        let (clock, retry) = sim(name, config);
        attempt_times(&retry, &clock, "x").0
    };
    let a = jittered("j", Some(7));
    assert_eq!(a, jittered("other name", Some(7)), "same seed, same delays");
    assert_ne!(a, jittered("j", Some(8)));
    // The default seed comes from the name.
    assert_eq!(jittered("svc", None), jittered("svc", None));
    assert_ne!(jittered("svc", None), jittered("svc2", None));
    // Full jitter: each delay within [0, base].
    for pair in a.windows(2).enumerate() {
        let (i, w) = pair;
        let base = S(1) * 2u32.pow(i as u32);
        assert!(w[1] - w[0] <= base, "delay {i}: {:?}", w[1] - w[0]);
    }
    // Each call draws its own sequence from the seed.
    let (clock, retry) = sim(
        "calls",
        RetryConfig::default()
            .with_jitter(Jitter::Full)
            .with_seed(1),
    );
    let first = attempt_times(&retry, &clock, "x").0;
    let second = attempt_times(&retry, &clock, "x").0;
    let gaps = |t: &[Duration]| t.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>();
    assert_ne!(gaps(&first), gaps(&second));
}

#[test]
fn invalid_options_are_refused() {
    let err = |c: RetryConfig| match Retry::unregistered("bad", c) {
        Err(Error::InvalidConfig(e)) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        err(RetryConfig::default().with_max_attempts(0)),
        ConfigError::zero(ConfigOption::MaxAttempts, ConfigValue::Count(0))
    );
    assert_eq!(
        err(RetryConfig::default().with_backoff_factor(0.5)).to_string(),
        "invalid backoff_factor = 0.5: must be at least 1"
    );
    assert_eq!(
        err(RetryConfig::default().with_max_delay(MS(10))),
        ConfigError::new(
            ConfigOption::InitialDelay,
            ConfigValue::Duration(MS(1000)),
            ConfigProblem::Exceeds {
                other: ConfigOption::MaxDelay,
                limit: ConfigValue::Duration(MS(10)),
            }
        )
    );
    assert!(RetryConfig::default().retry_on_regex("(unclosed").is_err());
}

#[test]
fn substring_and_regex_matchers() {
    let config = RetryConfig::default()
        .retry_on("network error")
        .retry_on("timeout")
        .retry_on_regex(r"5\d\d")
        .unwrap();
    let (clock, retry) = sim("matchers", config);
    for retried in [
        "network error: connection reset",
        "read timeout",
        "HTTP 503",
    ] {
        let (times, out) = attempt_times(&retry, &clock, retried);
        assert_eq!(times.len(), 3, "{retried}");
        assert_eq!(exhausted(out).0, 3);
    }
    for not_retried in ["HTTP 404", "Network Error", "time out", "bad request"] {
        let (times, out) = attempt_times(&retry, &clock, not_retried);
        assert_eq!(times.len(), 1, "{not_retried}");
        assert!(matches!(out, Err(Error::Inner(e)) if e == not_retried));
    }
    assert!(retry.is_retryable(&"HTTP 500"));
    assert!(!retry.is_retryable(&"HTTP 400"));
}

#[test]
fn empty_matcher_list_retries_everything() {
    let (clock, retry) = sim("all", RetryConfig::default());
    for e in ["anything", "", "HTTP 404"] {
        assert_eq!(attempt_times(&retry, &clock, e).0.len(), 3);
        assert!(retry.is_retryable(&e));
    }
}

#[test]
fn matchers_compare_by_kind_and_pattern() {
    let a = ErrorMatcher::regex(r"5\d\d").unwrap();
    assert_eq!(a, ErrorMatcher::regex(r"5\d\d").unwrap());
    assert_ne!(a, ErrorMatcher::from(r"5\d\d"));
    assert_ne!(a, ErrorMatcher::regex(r"5\d{2}").unwrap());
    assert_eq!(
        ErrorMatcher::from("x"),
        ErrorMatcher::from(String::from("x"))
    );
    assert_eq!(a.pattern(), r"5\d\d");
    let c1 = RetryConfig::default().retry_on_regex(r"5\d\d").unwrap();
    let c2 = RetryConfig::default().retry_on_matcher(a);
    assert_eq!(c1, c2);
    assert_ne!(c1, RetryConfig::default());
}

#[test]
fn predicate_replaces_the_matchers() {
    #[derive(Debug, PartialEq)]
    enum E {
        Transient(u32),
        Fatal,
    }
    // Matchers that would match nothing are ignored by execute_if.
    let (_clock, retry) = sim(
        "pred",
        RetryConfig::default()
            .retry_on("never")
            .with_max_attempts(10),
    );
    let mut n = 0;
    let out: Result<(), _> = retry.execute_if(
        |e: &E| matches!(e, E::Transient(_)),
        || {
            n += 1;
            Err(if n < 3 { E::Transient(n) } else { E::Fatal })
        },
    );
    // Two transient failures retried; the fatal one returns at once as itself.
    assert!(matches!(out, Err(Error::Inner(E::Fatal))), "{out:?}");
    assert_eq!(n, 3);
    // Retryable to the end: exhausted, with the last error.
    let mut n = 0;
    let out: Result<(), _> = retry.execute_if(
        |e: &E| matches!(e, E::Transient(_)),
        || {
            n += 1;
            Err(E::Transient(n))
        },
    );
    match out {
        Err(Error::RetriesExhausted { attempts, last }) => {
            assert_eq!(attempts, 10);
            assert_eq!(last.into_inner(), Some(E::Transient(10)));
        }
        other => panic!("{other:?}"),
    }
    // A predicate that refuses everything: one attempt.
    let mut n = 0;
    let out: Result<(), _> = retry.execute_if(
        |_: &E| false,
        || {
            n += 1;
            Err(E::Transient(0))
        },
    );
    assert!(matches!(out, Err(Error::Inner(E::Transient(0)))));
    assert_eq!(n, 1);
}

#[test]
fn exhausted_carries_attempts_and_the_last_error() {
    let (_clock, retry) = sim("last", RetryConfig::default().with_max_attempts(4));
    let mut n = 0;
    let out: Result<(), _> = retry.execute(|| {
        n += 1;
        Err(format!("failure #{n}"))
    });
    match out {
        Err(Error::RetriesExhausted { attempts, last }) => {
            assert_eq!(attempts, 4);
            assert_eq!(last.into_inner().as_deref(), Some("failure #4"));
        }
        other => panic!("{other:?}"),
    }
    // Success on a later attempt returns the value.
    let mut n = 0;
    let out = retry.execute(|| {
        n += 1;
        if n < 3 { Err("flaky") } else { Ok(n) }
    });
    assert_eq!(out.unwrap(), 3);
}

#[test]
fn retry_budget_stops_a_retry_storm() {
    let budget = Arc::new(
        RetryBudget::new(
            RetryBudgetConfig::DEFAULT
                .with_ratio(0.5)
                .with_min_retries_per_second(0)
                .with_max_tokens(1),
        )
        .unwrap(),
    );
    let config = RetryConfig::default()
        .with_max_attempts(5)
        .with_budget(Arc::clone(&budget));
    let (clock, a) = sim("budget-a", config.clone());
    let b = Retry::with_timer("budget-b", config, Arc::clone(&clock)).unwrap();
    let events = record_events(&a);
    // The one banked token (plus this call's half) pays for one retry.
    let (times, out) = attempt_times(&a, &clock, "down");
    assert_eq!(times, [S(0), S(1)]);
    assert_eq!(exhausted(out).0, 2);
    assert_eq!(a.metrics().rejections, 1);
    assert_eq!(a.metrics().retries, 1);
    let kinds: Vec<EventKind> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.kind.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::Retry {
                attempt: 1,
                delay: S(1)
            },
            EventKind::Rejected { retry_after: None },
        ]
    );
    // The budget is shared: the other retry's call deposits half a token,
    // not enough for a retry; the next call of either completes a token.
    assert_eq!(attempt_times(&b, &clock, "down").0.len(), 1);
    assert_eq!(attempt_times(&a, &clock, "down").0.len(), 2);
    assert_eq!(attempt_times(&b, &clock, "down").0.len(), 1);
    assert_eq!(b.metrics().rejections, 2);
    // Successes deposit too, so healthy traffic refills the budget.
    for _ in 0..4 {
        a.execute(|| Ok::<_, &str>(())).unwrap();
    }
    assert_eq!(budget.available(&*clock), 1);
}

#[test]
fn current_deadline_bounds_the_back_off() {
    let (clock, retry) = sim("deadline", RetryConfig::default().with_max_attempts(10));
    // Attempts at 0, 1, 3, 7; the next delay (8 s) would end at 15 s.
    let deadline = Deadline::at(Timestamp::from_nanos(15_000_000_000));
    let (times, out) = with_deadline(deadline, || attempt_times(&retry, &clock, "x"));
    assert_eq!(times, [S(0), S(1), S(3), S(7)]);
    assert_eq!(exhausted(out).0, 4);
    // One nanosecond more and the fifth attempt fits (at 15 s).
    let (clock, retry) = sim("deadline2", RetryConfig::default().with_max_attempts(5));
    let deadline = Deadline::at(Timestamp::from_nanos(15_000_000_001));
    let (times, _) = with_deadline(deadline, || attempt_times(&retry, &clock, "x"));
    assert_eq!(times, [S(0), S(1), S(3), S(7), S(15)]);
}

#[test]
fn an_enclosing_timeout_bounds_the_retries() {
    let clock = Arc::new(VirtualClock::auto_advance());
    let retry = Retry::with_timer(
        "in-timeout",
        RetryConfig::default().with_max_attempts(10),
        Arc::clone(&clock),
    )
    .unwrap();
    let timeout = Timeout::with_timer(
        "outer",
        TimeoutConfig::new(S(5)).unwrap(),
        Arc::clone(&clock),
    )
    .unwrap();
    let pipeline = Pipeline::new().then(timeout.cooperative()).then(&retry);
    let mut times = Vec::new();
    let out: Result<(), Error<&str>> = pipeline.execute(|| {
        times.push(clock.now().as_nanos() / 1_000_000_000);
        Err("down")
    });
    // Attempts at 0, 1, 3; sleeping 4 s more would pass the 5 s deadline.
    assert_eq!(times, [0, 1, 3]);
    assert!(
        matches!(out, Err(Error::RetriesExhausted { attempts: 3, .. })),
        "{out:?}"
    );
}

#[test]
fn per_attempt_timeouts_are_retried() {
    let clock = Arc::new(VirtualClock::auto_advance());
    let retry =
        Retry::with_timer("per-attempt", RetryConfig::default(), Arc::clone(&clock)).unwrap();
    let timeout = Timeout::with_timer(
        "attempt",
        TimeoutConfig::new(MS(500)).unwrap(),
        Arc::clone(&clock),
    )
    .unwrap();
    let pipeline = Pipeline::new().then(&retry).then(timeout.cooperative());
    let mut n = 0;
    let out: Result<u32, Error<&str>> = pipeline.execute(|| {
        n += 1;
        if n < 3 {
            clock.sleep(S(1)); // too slow
        }
        Ok(n)
    });
    assert_eq!(out.unwrap(), 3);
    assert_eq!(timeout.metrics().timeouts, 2);
    assert_eq!(retry.metrics().retries, 2);
}

/// Errors of nested patterns, seen through the `Policy` impl.
#[test]
fn nested_rejections() {
    let (clock, retry) = sim("nested", RetryConfig::default());
    // A rate limiter's refusal with a longer wait than the back-off: the
    // retry waits for it.
    let mut times = Vec::new();
    let mut n = 0;
    let out: Result<(), Error<&str>> = retry.run(|| {
        times.push(clock.now());
        n += 1;
        if n == 1 {
            Err(Error::RateLimited { retry_after: S(5) })
        } else {
            Ok(())
        }
    });
    assert!(out.is_ok());
    assert_eq!(times[1], Timestamp::from_nanos(5_000_000_000));
    // A shorter one: the back-off delay wins.
    let start = clock.now();
    let mut times = Vec::new();
    let _ = retry.run(|| {
        times.push(clock.now());
        if times.len() == 1 {
            Err::<(), Error<&str>>(Error::BreakerOpen {
                state: BreakerState::Open,
                retry_after: MS(10),
            })
        } else {
            Ok(())
        }
    });
    assert_eq!(times[1], start.saturating_add(S(1)));
    // A refusal longer than max_delay comes back at once, as itself.
    let mut n = 0;
    let out: Result<(), Error<&str>> = retry.run(|| {
        n += 1;
        Err(Error::BreakerOpen {
            state: BreakerState::Open,
            retry_after: S(60),
        })
    });
    assert!(matches!(out, Err(Error::BreakerOpen { retry_after, .. }) if retry_after == S(60)));
    assert_eq!(n, 1);
    // Bulkhead and queue refusals, nested retries, disposal: at once.
    let at_once: [fn() -> Error<&'static str>; 4] = [
        || Error::BulkheadFull,
        || Error::QueueTimeout { waited: S(1) },
        || Error::RetriesExhausted {
            attempts: 3,
            last: Box::new(Error::Inner("last")),
        },
        || Error::Disposed,
    ];
    for make in at_once {
        let mut n = 0;
        let out: Result<(), Error<&str>> = retry.run(|| {
            n += 1;
            Err(make())
        });
        assert_eq!(n, 1, "{:?}", out);
    }
    // A nested timeout's TimedOut is retried.
    let mut n = 0;
    let out: Result<(), Error<&str>> = retry.run(|| {
        n += 1;
        Err(Error::TimedOut { after: S(1) })
    });
    assert_eq!(n, 3);
    assert!(matches!(
        out,
        Err(Error::RetriesExhausted { attempts: 3, .. })
    ));
}

#[test]
fn matchers_apply_inside_a_pipeline() {
    let (_clock, retry) = sim("pipe", RetryConfig::default().retry_on("503"));
    let pipeline = Pipeline::new().then(&retry);
    // A matching error is retried until the attempts run out.
    let mut n = 0;
    let out: Result<(), Error<&str>> = pipeline.execute(|| {
        n += 1;
        Err("HTTP 503")
    });
    assert!(matches!(
        out,
        Err(Error::RetriesExhausted { attempts: 3, .. })
    ));
    assert_eq!(n, 3);
    // A non-matching error comes back at once as itself.
    let mut n = 0;
    let out: Result<(), Error<&str>> = pipeline.execute(|| {
        n += 1;
        Err("HTTP 400")
    });
    assert!(matches!(out, Err(Error::Inner("HTTP 400"))));
    assert_eq!(n, 1);
    // Without matchers every error of the call is retried in a pipeline.
    let (_clock, all) = sim("pipe-all", RetryConfig::default());
    let mut n = 0;
    let _: Result<(), Error<&str>> = Pipeline::new().then(&all).execute(|| {
        n += 1;
        Err("anything")
    });
    assert_eq!(n, 3);
}

#[test]
fn a_late_attempt_is_retried_after_its_timeout() {
    let clock = Arc::new(VirtualClock::auto_advance());
    let config = RetryConfig::default().retry_on("503");
    let retry = Retry::with_timer("stale", config, Arc::clone(&clock)).unwrap();
    let timeout = Timeout::with_timer(
        "stale-t",
        TimeoutConfig::new(S(1)).unwrap(),
        Arc::clone(&clock),
    )
    .unwrap();
    let pipeline = Pipeline::new().then(&retry).then(timeout.cooperative());
    // The first attempt fails late: the retry sees the timeout's TimedOut
    // (always retryable) and the second attempt succeeds.
    let mut n = 0;
    let out: Result<u32, Error<&str>> = pipeline.execute(|| {
        n += 1;
        if n == 1 {
            clock.sleep(S(2));
            Err("HTTP 503")
        } else {
            Ok(n)
        }
    });
    assert_eq!(out.unwrap(), 2);
}

#[test]
fn dispose_wakes_a_retry_in_back_off() {
    let clock = Arc::new(VirtualClock::new());
    let retry = Retry::with_timer("dispose", RetryConfig::default(), Arc::clone(&clock)).unwrap();
    let events = record_events(&retry);
    let attempts = Mutex::new(0);
    thread::scope(|s| {
        let worker = s.spawn(|| {
            retry.execute(|| {
                *attempts.lock().unwrap() += 1;
                Err::<(), _>("down")
            })
        });
        while clock.waiting() == 0 {
            thread::yield_now();
        }
        retry.dispose();
        let out = worker.join().unwrap();
        assert!(matches!(out, Err(Error::Disposed)), "{out:?}");
    });
    assert_eq!(*attempts.lock().unwrap(), 1);
    // The clock never moved: the sleeper was woken by dispose.
    assert_eq!(clock.now(), Timestamp::ZERO);
    assert_eq!(clock.waiting(), 0);
    let kinds: Vec<EventKind> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.kind.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::Retry {
                attempt: 1,
                delay: S(1)
            },
            EventKind::Disposed
        ]
    );
    // Later calls fail at once without running; listeners were removed.
    let mut ran = false;
    let out: Result<(), Error<&str>> = retry.execute(|| {
        ran = true;
        Ok(())
    });
    assert!(matches!(out, Err(Error::Disposed)) && !ran);
    retry.dispose(); // idempotent
    assert_eq!(events.lock().unwrap().len(), 2);
    assert_eq!(retry.metrics().failures, 1);
}

#[test]
fn registry() {
    let config = RetryConfig::default().retry_on_regex(r"5\d\d").unwrap();
    let a = Retry::get_or_create("reg-api", config.clone()).unwrap();
    // The same options (a regex recompiled from the same pattern) give the
    // same instance.
    let same = RetryConfig::default().retry_on_regex(r"5\d\d").unwrap();
    assert!(Arc::ptr_eq(
        &a,
        &Retry::get_or_create("reg-api", same).unwrap()
    ));
    assert!(Arc::ptr_eq(&a, &Retry::get("reg-api").unwrap()));
    assert!(Arc::ptr_eq(&a, &Retry::get_retrier("reg-api")));
    match Retry::get_or_create("reg-api", RetryConfig::default()) {
        Err(Error::NameTaken { name }) => assert_eq!(&*name, "reg-api"),
        other => panic!("{other:?}"),
    }
    // Budgets compare by identity.
    let budget = Arc::new(RetryBudget::new(RetryBudgetConfig::DEFAULT).unwrap());
    let with_budget = RetryConfig::default().with_budget(Arc::clone(&budget));
    let b = Retry::get_or_create("reg-budget", with_budget.clone()).unwrap();
    assert!(Arc::ptr_eq(
        &b,
        &Retry::get_or_create("reg-budget", with_budget).unwrap()
    ));
    let other_budget = RetryConfig::default().with_budget(Arc::new(
        RetryBudget::new(RetryBudgetConfig::DEFAULT).unwrap(),
    ));
    assert!(matches!(
        Retry::get_or_create("reg-budget", other_budget),
        Err(Error::NameTaken { .. })
    ));
    // get_retrier creates with the defaults.
    let fresh = Retry::get_retrier("reg-fresh");
    assert_eq!(*fresh.config(), RetryConfig::default());
    // Disposed instances are forgotten and can be replaced.
    a.dispose();
    assert!(Retry::get("reg-api").is_none());
    let replaced = Retry::get_or_create("reg-api", RetryConfig::default()).unwrap();
    assert!(!Arc::ptr_eq(&a, &replaced));
    assert!(Retry::get("reg-never").is_none());
}

#[test]
fn metrics_count_calls_successes_failures_retries() {
    let (clock, retry) = sim("metrics", RetryConfig::default().retry_on("transient"));
    retry.execute(|| Ok::<_, &str>(1)).unwrap();
    let mut n = 0;
    retry
        .execute(|| {
            n += 1;
            if n < 2 { Err("transient") } else { Ok(2) }
        })
        .unwrap();
    let _ = attempt_times(&retry, &clock, "transient");
    let _ = attempt_times(&retry, &clock, "fatal");
    let m = retry.metrics();
    assert_eq!((m.calls, m.successes, m.failures, m.retries), (4, 2, 2, 3));
    assert_eq!(
        (m.rejections, m.timeouts, m.queue_depth, m.in_flight),
        (0, 0, 0, 0)
    );
    assert_eq!(m.state, None);
}

#[test]
fn events_carry_the_pattern_name_and_time() {
    let (clock, retry) = sim("events", RetryConfig::default());
    let events = record_events(&retry);
    let _ = attempt_times(&retry, &clock, "x");
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2);
    for e in events.iter() {
        assert_eq!(e.pattern, stockade::blocking::PatternKind::Retry);
        assert_eq!(&*e.name, "events");
    }
    // Emitted before each back-off: at the failure times.
    assert_eq!(events[0].at, Timestamp::ZERO);
    assert_eq!(events[1].at, Timestamp::from_nanos(1_000_000_000));
    assert_eq!(
        events[1].kind,
        EventKind::Retry {
            attempt: 2,
            delay: S(2)
        }
    );
}

#[test]
fn unsubscribe_stops_events() {
    let (clock, retry) = sim("unsub", RetryConfig::default());
    let seen = Arc::new(Mutex::new(0));
    let s = Arc::clone(&seen);
    let id = retry.subscribe(move |_| *s.lock().unwrap() += 1);
    let _ = attempt_times(&retry, &clock, "x");
    assert_eq!(*seen.lock().unwrap(), 2);
    assert!(retry.unsubscribe(id));
    assert!(!retry.unsubscribe(id));
    let _ = attempt_times(&retry, &clock, "x");
    assert_eq!(*seen.lock().unwrap(), 2);
}

#[test]
fn wrap_retries_a_reusable_function() {
    let (_clock, retry) = sim("wrap", RetryConfig::default());
    let calls = Mutex::new(Vec::new());
    let fetch = retry.wrap(|id: String| {
        let mut calls = calls.lock().unwrap();
        calls.push(id.clone());
        if calls.len() % 2 == 1 {
            Err("flaky")
        } else {
            Ok(id.len())
        }
    });
    assert_eq!(fetch(String::from("abc")).unwrap(), 3);
    assert_eq!(fetch(String::from("hello")).unwrap(), 5);
    assert_eq!(*calls.lock().unwrap(), ["abc", "abc", "hello", "hello"]);
}

#[test]
fn name_and_accessors() {
    let (clock, retry) = sim("acc", RetryConfig::default().with_seed(3));
    assert_eq!(retry.name(), "acc");
    assert_eq!(retry.config().seed, Some(3));
    assert!(Arc::ptr_eq(retry.timer(), &clock));
    assert!(!retry.is_disposed());
}
