//! Feature `tracing`: events as `tracing` events and a span around each
//! execution, seen by a capturing layer.

#![cfg(feature = "tracing")]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use core::time::Duration;
use stockade::prelude::*;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

type Fields = BTreeMap<String, String>;

#[derive(Debug, Clone)]
struct SeenEvent {
    target: String,
    level: Level,
    fields: Fields,
    /// The names of the spans it happened in, innermost first.
    scope: Vec<String>,
}

#[derive(Debug, Clone)]
struct SeenSpan {
    name: String,
    target: String,
    fields: Fields,
}

#[derive(Default)]
struct Seen {
    events: Vec<SeenEvent>,
    spans: Vec<SeenSpan>,
}

struct Capture(Arc<Mutex<Seen>>);

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn core::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// The index of a span in `Seen::spans`, kept in the span's extensions.
struct Index(usize);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut Collect(&mut fields));
        let mut seen = self.0.lock().unwrap();
        seen.spans.push(SeenSpan {
            name: attrs.metadata().name().to_owned(),
            target: attrs.metadata().target().to_owned(),
            fields,
        });
        let index = seen.spans.len() - 1;
        ctx.span(id).unwrap().extensions_mut().insert(Index(index));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let index = span.extensions().get::<Index>().unwrap().0;
        let mut seen = self.0.lock().unwrap();
        values.record(&mut Collect(&mut seen.spans[index].fields));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut Collect(&mut fields));
        let scope = ctx
            .event_scope(event)
            .map(|scope| scope.map(|s| s.name().to_owned()).collect())
            .unwrap_or_default();
        self.0.lock().unwrap().events.push(SeenEvent {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
            scope,
        });
    }
}

fn capture(level: LevelFilter, f: impl FnOnce()) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let subscriber =
        tracing_subscriber::registry().with(Capture(Arc::clone(&seen)).with_filter(level));
    tracing::subscriber::with_default(subscriber, f);
    core::mem::take(&mut *seen.lock().unwrap())
}

fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields
        .get(name)
        .unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
}

#[test]
fn executions_are_spans_with_their_outcome() {
    let seen = capture(LevelFilter::TRACE, || {
        let breaker =
            CircuitBreaker::unregistered("trace-breaker", BreakerConfig::DEFAULT).unwrap();
        breaker
            .execute(|| {
                tracing::info!("inside the call");
                Ok::<_, &str>(())
            })
            .unwrap();
        let _ = breaker.execute(|| Err::<(), _>("down"));
        let bulkhead = Bulkhead::unregistered("trace-bulkhead", BulkheadConfig::DEFAULT).unwrap();
        bulkhead.execute(|| Ok::<_, &str>(())).unwrap();
    });
    let spans: Vec<&SeenSpan> = seen
        .spans
        .iter()
        .filter(|s| s.name == "stockade.execute")
        .collect();
    assert_eq!(spans.len(), 3, "{:?}", seen.spans);
    for span in &spans {
        assert_eq!(span.target, "stockade");
    }
    let summary: Vec<(&str, &str, &str)> = spans
        .iter()
        .map(|s| {
            (
                field(&s.fields, "stockade.pattern.type"),
                field(&s.fields, "stockade.pattern.name"),
                field(&s.fields, "stockade.outcome"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("circuit_breaker", "trace-breaker", "success"),
            ("circuit_breaker", "trace-breaker", "failure"),
            ("bulkhead", "trace-bulkhead", "success"),
        ]
    );
    // The protected call runs inside its span.
    let inside = seen
        .events
        .iter()
        .find(|e| e.fields.get("message").map(String::as_str) == Some("inside the call"))
        .expect("the call's own event");
    assert_eq!(inside.scope, ["stockade.execute"]);
}

#[test]
fn events_are_tracing_events_with_the_documented_fields() {
    let seen = capture(LevelFilter::TRACE, || {
        let breaker = CircuitBreaker::unregistered(
            "trace-events",
            BreakerConfig::DEFAULT.with_failure_threshold(1),
        )
        .unwrap();
        let _ = breaker.execute(|| Err::<(), _>("down"));
        assert!(breaker.execute(|| Ok::<_, &str>(())).is_err());
        let retry = Retry::unregistered(
            "trace-retry",
            RetryConfig::DEFAULT
                .with_max_attempts(2)
                .with_initial_delay(Duration::from_millis(1)),
        )
        .unwrap();
        let _ = retry.execute_if(|_: &&str| true, || Err::<(), _>("flaky"));
    });
    let stockade: Vec<&SeenEvent> = seen
        .events
        .iter()
        .filter(|e| e.target == "stockade")
        .collect();
    let kinds: Vec<&str> = stockade
        .iter()
        .map(|e| field(&e.fields, "stockade.event.kind"))
        .collect();
    assert_eq!(kinds, ["state_changed", "rejected", "retry"]);

    let changed = stockade[0];
    assert_eq!(changed.level, Level::INFO);
    assert_eq!(
        field(&changed.fields, "stockade.pattern.type"),
        "circuit_breaker"
    );
    assert_eq!(
        field(&changed.fields, "stockade.pattern.name"),
        "trace-events"
    );
    assert_eq!(
        field(&changed.fields, "stockade.circuit_breaker.previous_state"),
        "closed"
    );
    assert_eq!(
        field(&changed.fields, "stockade.circuit_breaker.state"),
        "open"
    );

    let rejected = stockade[1];
    assert_eq!(rejected.level, Level::DEBUG);
    let retry_after: f64 = field(&rejected.fields, "stockade.retry_after")
        .trim_start_matches("Some(")
        .trim_end_matches(')')
        .parse()
        .unwrap();
    // The default reset_timeout (60 s) less the moment since the trip.
    assert!(
        retry_after > 59.0 && retry_after <= 60.0,
        "retry_after in seconds: {retry_after}"
    );

    let retried = stockade[2];
    assert_eq!(field(&retried.fields, "stockade.pattern.type"), "retry");
    assert_eq!(field(&retried.fields, "stockade.retry.attempt"), "1");
    assert_eq!(field(&retried.fields, "stockade.retry.delay"), "0.001");
}

#[test]
fn nothing_is_recorded_below_the_subscribers_level() {
    let seen = capture(LevelFilter::WARN, || {
        let breaker = CircuitBreaker::unregistered(
            "trace-quiet",
            BreakerConfig::DEFAULT.with_failure_threshold(1),
        )
        .unwrap();
        let _ = breaker.execute(|| Err::<(), _>("down"));
        assert_eq!(breaker.state(), BreakerState::Open);
    });
    assert!(seen.spans.is_empty(), "{:?}", seen.spans);
    assert!(seen.events.is_empty(), "{:?}", seen.events);
}

/// Fails to compile unless `T` is `Send`.
#[cfg(feature = "tokio")]
fn assert_send<T: Send>(value: T) -> T {
    value
}

#[cfg(feature = "tokio")]
#[test]
fn async_executions_are_spans_entered_at_each_poll() {
    use stockade::blocking::TokioClock;
    let seen = capture(LevelFilter::TRACE, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let breaker =
                CircuitBreaker::unregistered("trace-async-breaker", BreakerConfig::DEFAULT)
                    .unwrap();
            // The span is entered again at the poll after the yield.
            let call = assert_send(breaker.execute_async(async {
                tokio::task::yield_now().await;
                tracing::info!("inside the async call");
                Ok::<_, &str>(())
            }));
            call.await.unwrap();
            let timeout = Timeout::with_timer(
                "trace-async-timeout",
                TimeoutConfig::new(Duration::from_millis(10)).unwrap(),
                TokioClock::new(),
            )
            .unwrap();
            let late = timeout
                .execute_async(async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok::<_, &str>(())
                })
                .await;
            assert!(late.is_err());
            let bulkhead =
                Bulkhead::unregistered("trace-async-bulkhead", BulkheadConfig::DEFAULT).unwrap();
            let failed = bulkhead.execute_async(async { Err::<(), _>("down") }).await;
            assert!(failed.is_err());
            // A pipeline's stages nest their spans.
            let limiter =
                RateLimiter::unregistered("trace-async-limiter", RateLimiterConfig::DEFAULT)
                    .unwrap();
            Pipeline::new()
                .then_async(&limiter)
                .then_async(&breaker)
                .execute_async(|| async {
                    tracing::info!("inside the pipeline");
                    Ok::<_, &str>(())
                })
                .await
                .unwrap();
        });
    });
    let summary: Vec<(&str, &str, &str)> = seen
        .spans
        .iter()
        .filter(|s| s.name == "stockade.execute")
        .map(|s| {
            (
                field(&s.fields, "stockade.pattern.type"),
                field(&s.fields, "stockade.pattern.name"),
                field(&s.fields, "stockade.outcome"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("circuit_breaker", "trace-async-breaker", "success"),
            ("timeout", "trace-async-timeout", "timeout"),
            ("bulkhead", "trace-async-bulkhead", "failure"),
            ("rate_limiter", "trace-async-limiter", "success"),
            ("circuit_breaker", "trace-async-breaker", "success"),
        ]
    );
    let scope_of = |message: &str| {
        seen.events
            .iter()
            .find(|e| e.fields.get("message").map(String::as_str) == Some(message))
            .unwrap_or_else(|| panic!("no event {message:?}"))
            .scope
            .clone()
    };
    assert_eq!(scope_of("inside the async call"), ["stockade.execute"]);
    assert_eq!(
        scope_of("inside the pipeline"),
        ["stockade.execute", "stockade.execute"]
    );
}
