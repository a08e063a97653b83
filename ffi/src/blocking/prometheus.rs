//! `stockade_prometheus_write`: the Prometheus text exposition of every
//! registered pattern, for a C server with no metrics library.
//!
//! Why the registry, and one call: a C server (a prefork one included)
//! serves `/metrics` from the process that got the request, and that
//! process's registry already knows every named handle it made or
//! inherited across `fork` (`_new` with a name, `_get`, `_new_redis` with
//! a name). One call renders them all as one valid exposition, each
//! metric family once, so the handler needs no list of handles of its
//! own; per-handle writers would leave it to concatenate texts, which
//! repeats `# TYPE` lines that Prometheus refuses.
//!
//! The names are the core's ([`stockade_core::telemetry`]), so they are
//! those of `docs/telemetry.md` and of the Rust `Collector` by
//! construction; a unit test below compares the two renderings sample by
//! sample.

use core::ffi::c_char;
use core::fmt::Write as _;
use std::string::String;
use std::sync::Arc;
use std::vec::Vec;

use stockade_core::blocking::{Metrics, Observed, PatternKind, registered_instances};
use stockade_core::breaker::BreakerState;
use stockade_core::telemetry::{breaker_state, metric, names, pattern_type};

use crate::boundary::Out;
use crate::status::stockade_status;

/// Every breaker state, in the order the state gauge lists them.
const BREAKER_STATES: [BreakerState; 5] = [
    BreakerState::Closed,
    BreakerState::Open,
    BreakerState::HalfOpen,
    BreakerState::ForcedOpen,
    BreakerState::Disabled,
];

/// The outcomes of `calls`, in the order they are written.
const OUTCOMES: [&str; 5] = ["success", "failure", "rejected", "timeout", "ignored"];

/// A metric's Prometheus type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
}

/// An OpenTelemetry name in Prometheus form: dots become underscores and a
/// counter's samples end in `_total` (as `prometheus_client` and
/// OpenTelemetry's Prometheus exporter write them).
fn prometheus_name(otel: &str, ty: Type) -> String {
    let mut name = otel.replace('.', "_");
    if ty == Type::Counter {
        name.push_str("_total");
    }
    name
}

/// Writes `# HELP` and `# TYPE` of the family `name`.
fn header(out: &mut String, name: &str, ty: Type, help: &str) {
    let ty = match ty {
        Type::Counter => "counter",
        Type::Gauge => "gauge",
    };
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {ty}");
}

/// Writes a label value escaped as the exposition format asks (`\\`,
/// `\"`, `\n`).
fn push_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes one sample: `name{label="value",...} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    out.push('{');
    for (i, (label, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&label.replace('.', "_"));
        out.push_str("=\"");
        push_label_value(out, v);
        out.push('"');
    }
    let _ = writeln!(out, "}} {value}");
}

/// One instance to report.
struct Row {
    ty: String,
    kind: PatternKind,
    name: String,
    metrics: Metrics,
}

/// The `calls` by outcome, as the Rust `Collector` reports them:
/// `ignored` is what `calls` holds beyond the other four.
fn outcomes(m: &Metrics) -> [u64; 5] {
    let known = m
        .successes
        .wrapping_add(m.failures)
        .wrapping_add(m.rejections)
        .wrapping_add(m.timeouts);
    [
        m.successes,
        m.failures,
        m.rejections,
        m.timeouts,
        m.calls.saturating_sub(known),
    ]
}

/// The exposition of `instances`: one group of families per pattern type
/// (types and names in byte order), each family once. Two instances of
/// one type with the same name (possible only for instances of different
/// clocks or stores) are reported once, by the first in that order.
pub(crate) fn render(instances: &[Arc<dyn Observed>]) -> String {
    let mut rows: Vec<Row> = instances
        .iter()
        .map(|o| Row {
            ty: pattern_type(o.kind()),
            kind: o.kind(),
            name: String::from(o.name()),
            metrics: o.metrics(),
        })
        .collect();
    rows.sort_by(|a, b| (&a.ty, &a.name).cmp(&(&b.ty, &b.name)));
    rows.dedup_by(|later, first| later.ty == first.ty && later.name == first.name);

    let mut out = String::new();
    for group in rows.chunk_by(|a, b| a.ty == b.ty) {
        let kind = group[0].kind;
        let t = &group[0].ty;

        let name = prometheus_name(&metric(kind, names::CALLS), Type::Counter);
        header(
            &mut out,
            &name,
            Type::Counter,
            &std::format!("Calls of a {t} that finished, by outcome"),
        );
        for row in group {
            for (outcome, value) in OUTCOMES.iter().zip(outcomes(&row.metrics)) {
                sample(
                    &mut out,
                    &name,
                    &[(names::PATTERN_NAME, &row.name), (names::OUTCOME, outcome)],
                    value,
                );
            }
        }

        type Field = fn(&Metrics) -> u64;
        let mut simple: Vec<(&str, Type, String, Field)> = std::vec![
            (
                names::RETRIES,
                Type::Counter,
                std::format!("Retries a {t} performed"),
                (|m: &Metrics| m.retries) as Field,
            ),
            (
                names::IN_FLIGHT,
                Type::Gauge,
                std::format!("Calls a {t} is running now"),
                (|m: &Metrics| m.in_flight) as Field,
            ),
            (
                names::QUEUE_DEPTH,
                Type::Gauge,
                std::format!("Callers waiting in a {t}'s queue now"),
                (|m: &Metrics| m.queue_depth) as Field,
            ),
        ];
        // As the Rust `Collector`: with the core's `redis` feature only.
        if cfg!(feature = "redis") {
            simple.push((
                names::FALLBACK_DECISIONS,
                Type::Counter,
                std::format!("Decisions a Redis-backed {t} took under its fallback"),
                (|m: &Metrics| m.fallback_decisions) as Field,
            ));
        }
        for (suffix, ty, help, field) in simple {
            let name = prometheus_name(&metric(kind, suffix), ty);
            header(&mut out, &name, ty, &help);
            for row in group {
                sample(
                    &mut out,
                    &name,
                    &[(names::PATTERN_NAME, &row.name)],
                    field(&row.metrics),
                );
            }
        }

        if group.iter().any(|row| row.metrics.state.is_some()) {
            let name = prometheus_name(names::BREAKER_STATE_METRIC, Type::Gauge);
            header(
                &mut out,
                &name,
                Type::Gauge,
                "1 for the circuit breaker's current state, 0 for the others",
            );
            for row in group {
                let Some(current) = row.metrics.state else {
                    continue;
                };
                for state in BREAKER_STATES {
                    sample(
                        &mut out,
                        &name,
                        &[
                            (names::PATTERN_NAME, &row.name),
                            (names::BREAKER_STATE, breaker_state(state)),
                        ],
                        u64::from(state == current),
                    );
                }
            }
        }
    }
    out
}

/// Writes the Prometheus text exposition (format 0.0.4, what a
/// `/metrics` endpoint serves as `text/plain; version=0.0.4`) of every
/// registered pattern of this process into `buf`, NUL-terminated, and its
/// length (without the NUL) to `*written`.
///
/// Which patterns: every live handle made with a name (`_new`, `_get`,
/// `_new_redis` with a name), and patterns registered by Rust code in the
/// same process, read now (the `stockade_*_metrics` snapshots). Anonymous
/// handles (NULL name) and `_new_shared` handles are in no registry and
/// are not written (read them with their `_metrics`). A disposed pattern
/// leaves the registry and the text. In a prefork server each worker
/// writes its own process's patterns (its own counts, unless a pattern is
/// shared), so each worker is its own scrape target.
///
/// The names are those of `docs/telemetry.md` in Prometheus form, as
/// `prometheus_client` writes them: dots become underscores and a
/// counter's samples end in `_total`, e.g.
/// `stockade_circuit_breaker_calls_total{stockade_pattern_name="db",stockade_outcome="success"} 3`.
/// Per pattern type: `stockade_<type>_calls_total` by `stockade_outcome`
/// (`success`, `failure`, `rejected`, `timeout`, `ignored`),
/// `_retries_total`, `_in_flight`, `_queue_depth`,
/// `_fallback_decisions_total` (in a library built with `redis`, the
/// default) and, for breakers, `stockade_circuit_breaker_state` (1 for the
/// current state, 0 for the others). Each family is written once with its
/// `# HELP` and `# TYPE`, types and names in byte order; label values are
/// escaped (`\\`, `\"`, `\n`; a NUL, possible only in a name given from
/// Rust, is written as is). Events are not counted in C (subscribe with
/// `stockade_*_subscribe` to count them): `stockade_events_total` is not
/// written.
///
/// Sizes: `buf` may be NULL with `len` 0 (a size query). If `len` is less
/// than the text's length plus 1, nothing is written to `buf`, `*written`
/// is the number of bytes needed (the length plus 1) and the status is
/// `BUFFER_TOO_SMALL`: the one status on which an out-parameter is
/// written. The registry may change between two calls, so a caller that
/// queries the size first retries on `BUFFER_TOO_SMALL` (or passes a
/// buffer with room to spare).
///
/// - Statuses: `OK`; `BUFFER_TOO_SMALL`; `NULL_ARGUMENT` (`written`, or
///   `buf` with `len` > 0).
/// - Ownership: `buf` stays the caller's; the library keeps nothing.
/// - Thread safety: any thread, concurrently with calls on the patterns.
///   Blocks: no (holds the registry's lock while it lists the patterns,
///   and allocates the text before copying it).
///
/// # Safety
///
/// `buf` NULL or valid for writes of `len` bytes; `written` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_prometheus_write(
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> stockade_status {
    ffi_boundary!({
        let written = Out::new(written)?;
        if buf.is_null() && len != 0 {
            return Err(stockade_status::NullArgument);
        }
        let text = render(&registered_instances());
        // A `String`'s length is at most `isize::MAX`: no overflow.
        let needed = text.len() + 1;
        if len < needed {
            // SAFETY: `written` checked, valid for writes (contract).
            unsafe { written.write(needed) };
            return Err(stockade_status::BufferTooSmall);
        }
        // SAFETY: `len >= needed > 0`, so `buf` is not NULL (checked above)
        // and valid for `len` bytes (contract); the text is ours, so the
        // regions do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
            buf.cast::<u8>().add(text.len()).write(0);
        }
        // SAFETY: as above.
        unsafe { written.write(text.len()) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };
    use stockade_core::blocking::{Bulkhead, CircuitBreaker, RateLimiter};
    use stockade_core::breaker::BreakerConfig;
    use stockade_core::bulkhead::BulkheadConfig;
    use stockade_core::limiter::RateLimiterConfig;
    use stockade_core::telemetry::metrics::Collector;

    /// `(Prometheus sample name, sorted labels)` → value.
    type Samples = BTreeMap<(String, Vec<(String, String)>), u64>;

    /// A `metrics` recorder that keeps the last value of every counter
    /// and gauge, under the name and labels Prometheus shows.
    #[derive(Default)]
    struct Capture(Arc<Mutex<Samples>>);

    struct Slot {
        key: (String, Vec<(String, String)>),
        samples: Arc<Mutex<Samples>>,
    }

    impl Slot {
        fn set(&self, value: u64) {
            self.samples.lock().unwrap().insert(self.key.clone(), value);
        }
    }

    impl CounterFn for Slot {
        fn increment(&self, value: u64) {
            let mut samples = self.samples.lock().unwrap();
            *samples.entry(self.key.clone()).or_default() += value;
        }
        fn absolute(&self, value: u64) {
            self.set(value);
        }
    }

    impl GaugeFn for Slot {
        fn increment(&self, _: f64) {
            unreachable!("the Collector only sets gauges");
        }
        fn decrement(&self, _: f64) {
            unreachable!("the Collector only sets gauges");
        }
        fn set(&self, value: f64) {
            assert!(value >= 0.0 && value.fract() == 0.0, "gauge {value}");
            Slot::set(self, value as u64);
        }
    }

    impl Capture {
        fn slot(&self, key: &Key, ty: Type) -> Arc<Slot> {
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().replace('.', "_"), String::from(l.value())))
                .collect();
            labels.sort();
            Arc::new(Slot {
                key: (prometheus_name(key.name(), ty), labels),
                samples: Arc::clone(&self.0),
            })
        }
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.slot(key, Type::Counter))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.slot(key, Type::Gauge))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    /// The samples of a text exposition, checking its structure: every
    /// sample's family has one `# TYPE` line, before its samples, and the
    /// samples of a family are together.
    fn parse(text: &str) -> Samples {
        let mut samples = Samples::new();
        let mut typed: Vec<String> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!typed.iter().any(|t| t == name), "two TYPE lines: {name}");
                typed.push(String::from(name));
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = series.split_once('{').unwrap();
            assert_eq!(typed.last().map(String::as_str), Some(name), "{line}");
            let mut parsed: Vec<(String, String)> = labels
                .strip_suffix('}')
                .unwrap()
                .split("\",")
                .map(|pair| {
                    let (k, v) = pair.split_once("=\"").unwrap();
                    (String::from(k), String::from(v.trim_end_matches('"')))
                })
                .collect();
            parsed.sort();
            let old = samples.insert((String::from(name), parsed), value.parse().unwrap());
            assert!(old.is_none(), "a series twice: {line}");
        }
        samples
    }

    fn instances_named(prefix: &str) -> Vec<Arc<dyn Observed>> {
        registered_instances()
            .into_iter()
            .filter(|o| o.name().starts_with(prefix))
            .collect()
    }

    #[test]
    fn the_text_has_the_rust_collectors_names_labels_and_values() {
        let breaker = CircuitBreaker::new(
            "prom-ffi-breaker",
            BreakerConfig::DEFAULT.with_failure_threshold(2),
        )
        .unwrap();
        let limiter = RateLimiter::new(
            "prom-ffi-limiter",
            RateLimiterConfig::DEFAULT
                .with_requests_per_period(1)
                .with_period(core::time::Duration::from_secs(3600)),
        )
        .unwrap();
        let bulkhead = Bulkhead::new("prom-ffi-bulkhead", BulkheadConfig::DEFAULT).unwrap();
        breaker.execute(|| Ok::<_, ()>(())).unwrap();
        for _ in 0..2 {
            breaker.execute(|| Err::<(), _>(())).unwrap_err();
        }
        breaker.execute(|| Ok::<_, ()>(())).unwrap_err(); // refused: open
        limiter.execute(|| Ok::<_, ()>(())).unwrap();
        limiter.execute(|| Ok::<_, ()>(())).unwrap_err(); // rate limited
        bulkhead.execute(|| Ok::<_, ()>(())).unwrap();

        let ours = instances_named("prom-ffi-");
        assert_eq!(ours.len(), 3);
        let text = render(&ours);
        let c_samples = parse(&text);

        let capture = Capture::default();
        let rust = Arc::clone(&capture.0);
        metrics::with_local_recorder(&capture, || {
            let collector = Collector::new();
            // Every registered pattern: those of other tests are filtered
            // out below.
            collector.collect();
        });
        let rust_samples: Samples = rust
            .lock()
            .unwrap()
            .iter()
            .filter(|((_, labels), _)| {
                labels
                    .iter()
                    .any(|(k, v)| k == "stockade_pattern_name" && v.starts_with("prom-ffi-"))
            })
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        // The Rust Collector's events (`stockade.events`) are counted as
        // they happen, not by collect(): none here.
        assert_eq!(c_samples, rust_samples, "C text:\n{text}");

        // And the values are the patterns' (not only equal to each other).
        let calls = |name: &str, outcome: &str| {
            let key = (
                String::from("stockade_circuit_breaker_calls_total"),
                std::vec![
                    (String::from("stockade_outcome"), String::from(outcome)),
                    (String::from("stockade_pattern_name"), String::from(name)),
                ],
            );
            c_samples[&key]
        };
        assert_eq!(calls("prom-ffi-breaker", "success"), 1);
        assert_eq!(calls("prom-ffi-breaker", "failure"), 2);
        assert_eq!(calls("prom-ffi-breaker", "rejected"), 1);
        assert!(text.contains(
            "stockade_circuit_breaker_state{stockade_pattern_name=\"prom-ffi-breaker\",\
             stockade_circuit_breaker_state=\"open\"} 1\n"
        ));
        assert!(text.contains(
            "stockade_rate_limiter_calls_total{stockade_pattern_name=\"prom-ffi-limiter\",\
             stockade_outcome=\"rejected\"} 1\n"
        ));
        assert!(text.contains("# TYPE stockade_bulkhead_in_flight gauge\n"));
        assert!(text.contains("# TYPE stockade_bulkhead_calls_total counter\n"));
        breaker.dispose();
        limiter.dispose();
        bulkhead.dispose();
        assert!(instances_named("prom-ffi-").is_empty());
    }

    #[test]
    fn label_values_are_escaped_and_each_series_is_written_once() {
        let odd = "prom-esc \"quoted\" back\\slash\nnewline";
        let a = Bulkhead::new(odd, BulkheadConfig::DEFAULT).unwrap();
        let b = Bulkhead::unregistered(odd, BulkheadConfig::DEFAULT).unwrap();
        let b: Arc<dyn Observed> = Arc::new(b);
        let mut both = instances_named("prom-esc ");
        both.push(b);
        let text = render(&both);
        let series = "stockade_bulkhead_in_flight{stockade_pattern_name=\
                      \"prom-esc \\\"quoted\\\" back\\\\slash\\nnewline\"} 0\n";
        assert_eq!(text.matches(series).count(), 1, "{text}");
        assert_eq!(
            text.matches("# TYPE stockade_bulkhead_in_flight gauge\n")
                .count(),
            1
        );
        assert!(!text.contains("stockade_circuit_breaker_state"));
        a.dispose();
    }

    #[test]
    fn write_reports_the_size_needed_and_checks_pointers() {
        let mut written = 0usize;
        // SAFETY: a NULL buffer of length 0 is a size query; `written` valid.
        let status = unsafe { stockade_prometheus_write(core::ptr::null_mut(), 0, &mut written) };
        assert_eq!(status, stockade_status::BufferTooSmall);
        assert!(written >= 1);
        // SAFETY: NULL `written` is refused before any write.
        let status =
            unsafe { stockade_prometheus_write(core::ptr::null_mut(), 0, core::ptr::null_mut()) };
        assert_eq!(status, stockade_status::NullArgument);
        // SAFETY: NULL `buf` with a length is refused.
        let status = unsafe { stockade_prometheus_write(core::ptr::null_mut(), 8, &mut written) };
        assert_eq!(status, stockade_status::NullArgument);
        let mut buf = std::vec![0x55u8; 1 << 16];
        let mut len = 0usize;
        // SAFETY: `buf` valid for its length.
        let status =
            unsafe { stockade_prometheus_write(buf.as_mut_ptr().cast(), buf.len(), &mut len) };
        assert_eq!(status, stockade_status::Ok);
        assert_eq!(buf[len], 0);
        assert!(!buf[..len].contains(&0));
    }
}
