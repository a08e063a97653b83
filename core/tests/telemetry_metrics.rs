//! Feature `metrics`: pattern snapshots and events reach a real Prometheus
//! scrape (metrics-exporter-prometheus's text rendering), parsed back.

#![cfg(feature = "metrics")]

use core::time::Duration;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use stockade::prelude::*;
use stockade::telemetry::metrics::Collector;

/// The process-wide recorder (one per test binary).
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("no other recorder in this test binary")
    })
}

/// One sample of a scrape: metric name and labels.
type Series = (String, BTreeMap<String, String>);

/// Parses the Prometheus text format: samples, and `# TYPE` lines.
fn parse(text: &str) -> (BTreeMap<Series, f64>, BTreeMap<String, String>) {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("`# TYPE name kind`");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value.parse().expect("a number");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                // Our label values contain no `,` or `"`.
                for pair in body.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                    labels.insert(k.to_owned(), v.expect("quoted value").to_owned());
                }
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        assert!(
            samples.insert((name, labels), value).is_none(),
            "a series appears twice: {line}"
        );
    }
    (samples, types)
}

fn value(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let key: Series = (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    *samples
        .get(&key)
        .unwrap_or_else(|| panic!("no series {key:?} in the scrape"))
}

#[test]
fn breaker_limiter_and_bulkhead_reach_a_prometheus_scrape() {
    let handle = handle();
    let collector = Collector::new();

    // A registered breaker: 3 successes, 2 failures (it opens), 1 rejection.
    let breaker = CircuitBreaker::new(
        "tel-breaker",
        BreakerConfig::DEFAULT.with_failure_threshold(2),
    )
    .unwrap();
    for _ in 0..3 {
        breaker.execute(|| Ok::<_, &str>(())).unwrap();
    }
    for _ in 0..2 {
        let _ = breaker.execute(|| Err::<(), _>("down"));
    }
    assert!(breaker.execute(|| Ok::<_, &str>(())).is_err());

    // An unregistered limiter, watched: 2 grants in a long period, then a
    // refusal.
    let limiter = Arc::new(
        RateLimiter::unregistered(
            "tel-limiter",
            RateLimiterConfig::DEFAULT
                .with_requests_per_period(2)
                .with_period(Duration::from_secs(3600)),
        )
        .unwrap(),
    );
    collector.watch(&limiter);
    for _ in 0..2 {
        limiter.try_execute(|| Ok::<_, &str>(())).unwrap();
    }
    assert!(limiter.try_execute(|| Ok::<_, &str>(())).is_err());

    // A registered bulkhead of one, held while collected: one call in
    // flight, one refused.
    let bulkhead = Bulkhead::new(
        "tel-bulkhead",
        BulkheadConfig::DEFAULT
            .with_max_concurrent(1)
            .with_max_queue(0),
    )
    .unwrap();
    let held = bulkhead.try_acquire().unwrap();
    assert!(bulkhead.try_execute(|| Ok::<_, &str>(())).is_err());
    assert_eq!(bulkhead.metrics().in_flight, 1);

    collector.collect();
    drop(held);
    let (samples, types) = parse(&handle.render());

    let b = |outcome| {
        value(
            &samples,
            "stockade_circuit_breaker_calls",
            &[
                ("stockade_pattern_name", "tel-breaker"),
                ("stockade_outcome", outcome),
            ],
        )
    };
    assert_eq!(b("success"), 3.0);
    assert_eq!(b("failure"), 2.0);
    assert_eq!(b("rejected"), 1.0);
    assert_eq!(b("ignored"), 0.0);
    assert_eq!(
        types
            .get("stockade_circuit_breaker_calls")
            .map(String::as_str),
        Some("counter")
    );
    let state = |s| {
        value(
            &samples,
            "stockade_circuit_breaker_state",
            &[
                ("stockade_pattern_name", "tel-breaker"),
                ("stockade_circuit_breaker_state", s),
            ],
        )
    };
    assert_eq!(state("open"), 1.0);
    assert_eq!(state("closed"), 0.0);
    assert_eq!(state("half_open"), 0.0);
    assert_eq!(
        types
            .get("stockade_circuit_breaker_state")
            .map(String::as_str),
        Some("gauge")
    );

    // Events, counted as they happened (the collector existed).
    let events = |kind| {
        value(
            &samples,
            "stockade_events",
            &[
                ("stockade_pattern_type", "circuit_breaker"),
                ("stockade_pattern_name", "tel-breaker"),
                ("stockade_event_kind", kind),
            ],
        )
    };
    assert_eq!(events("state_changed"), 1.0);
    assert_eq!(events("rejected"), 1.0);

    let l = |outcome| {
        value(
            &samples,
            "stockade_rate_limiter_calls",
            &[
                ("stockade_pattern_name", "tel-limiter"),
                ("stockade_outcome", outcome),
            ],
        )
    };
    assert_eq!(l("success"), 2.0);
    assert_eq!(l("rejected"), 1.0);

    let bulkhead_name = [("stockade_pattern_name", "tel-bulkhead")];
    assert_eq!(
        value(&samples, "stockade_bulkhead_in_flight", &bulkhead_name),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "stockade_bulkhead_calls",
            &[
                ("stockade_pattern_name", "tel-bulkhead"),
                ("stockade_outcome", "rejected"),
            ],
        ),
        1.0
    );

    // The next collection follows the instances: the permit is back, and
    // a disposed instance is no longer reported (its last values stay).
    collector.collect();
    let (samples, _) = parse(&handle.render());
    assert_eq!(
        value(&samples, "stockade_bulkhead_in_flight", &bulkhead_name),
        0.0
    );
    breaker.dispose();
    bulkhead.dispose();
}

#[test]
fn retry_delays_are_a_histogram_in_seconds() {
    let handle = handle();
    let collector = Collector::new();
    let retry = Retry::new(
        "tel-retry",
        RetryConfig::DEFAULT
            .with_max_attempts(3)
            .with_initial_delay(Duration::from_millis(1))
            .with_max_delay(Duration::from_millis(1)),
    )
    .unwrap();
    let mut attempts = 0;
    let out = retry.execute_if(
        |_: &&str| true,
        || {
            attempts += 1;
            if attempts < 3 {
                Err("flaky")
            } else {
                Ok(attempts)
            }
        },
    );
    assert_eq!(out.unwrap(), 3);
    collector.collect();
    let (samples, _) = parse(&handle.render());
    let name = [("stockade_pattern_name", "tel-retry")];
    assert_eq!(value(&samples, "stockade_retry_retries", &name), 2.0);
    assert_eq!(value(&samples, "stockade_retry_delay_count", &name), 2.0);
    let sum = value(&samples, "stockade_retry_delay_sum", &name);
    assert!(
        sum > 0.0 && sum < 0.1,
        "two delays of about 1 ms, in seconds: {sum}"
    );
    retry.dispose();
}
