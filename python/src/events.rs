//! Listeners and the events they receive, and the metrics dict.
//!
//! A pattern with no listener pays one relaxed load per event site; with
//! listeners, each is called in the thread (or event loop) that caused the
//! event, outside every lock. A listener that raises is reported through
//! `sys.unraisablehook` and does not disturb the call.
//!
//! While a `stockade.prometheus.StockadeCollector` is alive, every event a
//! listener would see is also counted here (the Rust crate's
//! `stockade.events` and `stockade.retry.delay`): [`EventCounting`],
//! [`event_counts`], [`retry_delays`].

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::collections::HashMap;
use std::sync::LazyLock;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Something a pattern did, as the blocking layer's `Event`: `pattern`
/// (`"circuit_breaker"`, `"bulkhead"`, `"rate_limiter"`, `"retry"`,
/// `"timeout"`, `"request_response"`, `"fallback"`, `"hedging"`), `name`,
/// `kind` and the fields that kind has (others are `None`):
///
/// | kind | fields |
/// | --- | --- |
/// | `"state_changed"` | `from_state`, `to_state` |
/// | `"rejected"` | `retry_after` (seconds or `None`) |
/// | `"retry"` | `attempt` (the failed attempt, 1-based), `delay` (seconds), `error` |
/// | `"timed_out"` | `timeout` (seconds) |
/// | `"queue_timeout"` | `waited` (seconds) |
/// | `"monitor"` | `metrics` |
/// | `"fallback_used"` | `error` (the exception the fallback replaced) |
/// | `"hedge_launched"` | `attempt` (2 for the first hedge) |
/// | `"hedge_won"` | `attempt` (the winning attempt, 2 or more) |
/// | `"disposed"` | — |
/// | `"store_unavailable"` | `cause` (a Redis-backed pattern's server stopped answering: `"timeout"`, `"connection"`, `"server"`, `"protocol"`, `"pool_exhausted"`, `"guard_open"`) |
/// | `"store_recovered"` | — (it answers again) |
#[pyclass(module = "stockade", frozen, get_all)]
pub(crate) struct Event {
    pub(crate) pattern: &'static str,
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) from_state: Option<&'static str>,
    pub(crate) to_state: Option<&'static str>,
    pub(crate) retry_after: Option<f64>,
    pub(crate) attempt: Option<u32>,
    pub(crate) delay: Option<f64>,
    pub(crate) error: Option<Py<PyAny>>,
    pub(crate) timeout: Option<f64>,
    pub(crate) waited: Option<f64>,
    pub(crate) metrics: Option<Py<PyDict>>,
    pub(crate) cause: Option<&'static str>,
}

impl Event {
    pub(crate) fn new(pattern: &'static str, name: &str, kind: &'static str) -> Event {
        Event {
            pattern,
            name: name.to_owned(),
            kind,
            from_state: None,
            to_state: None,
            retry_after: None,
            attempt: None,
            delay: None,
            error: None,
            timeout: None,
            waited: None,
            metrics: None,
            cause: None,
        }
    }
}

#[pymethods]
impl Event {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut s = format!(
            "Event(pattern={:?}, name={:?}, kind={:?}",
            self.pattern, self.name, self.kind
        );
        let mut field = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                s.push_str(&format!(", {k}={v}"));
            }
        };
        field("from_state", self.from_state.map(|v| format!("{v:?}")));
        field("to_state", self.to_state.map(|v| format!("{v:?}")));
        field("retry_after", self.retry_after.map(|v| v.to_string()));
        field("attempt", self.attempt.map(|v| v.to_string()));
        field("delay", self.delay.map(|v| v.to_string()));
        field(
            "error",
            match &self.error {
                Some(e) => Some(e.bind(py).repr()?.to_string()),
                None => None,
            },
        );
        field("timeout", self.timeout.map(|v| v.to_string()));
        field("waited", self.waited.map(|v| v.to_string()));
        field("cause", self.cause.map(|v| format!("{v:?}")));
        field(
            "metrics",
            match &self.metrics {
                Some(m) => Some(m.bind(py).repr()?.to_string()),
                None => None,
            },
        );
        s.push(')');
        Ok(s)
    }
}

/// The argument of `add_listener` (for `#[pyo3(from_py_with)]`): a
/// callable, else `TypeError` at once (not when an event comes).
pub(crate) fn listener(value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    if value.is_callable() {
        Ok(value.clone().unbind())
    } else {
        Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "add_listener: callback must be callable, not {}",
            value.get_type().name()?
        )))
    }
}

/// The listeners of one pattern.
#[derive(Default)]
pub(crate) struct Listeners {
    count: AtomicUsize,
    list: Mutex<Vec<Py<PyAny>>>,
}

impl Listeners {
    pub(crate) fn add(&self, callback: Py<PyAny>) {
        let mut list = self.list.lock();
        list.push(callback);
        self.count.store(list.len(), Ordering::Release);
    }

    /// Removes the first listener that is `callback` (or equal to it, so
    /// bound methods match); `true` if there was one.
    pub(crate) fn remove(&self, callback: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = callback.py();
        // Compare outside the lock: `__eq__` is Python code.
        let snapshot: Vec<Py<PyAny>> = self.list.lock().iter().map(|l| l.clone_ref(py)).collect();
        let mut target = None;
        for l in &snapshot {
            if l.bind(py).is(callback) || l.bind(py).eq(callback)? {
                target = Some(l.as_ptr());
                break;
            }
        }
        let Some(target) = target else {
            return Ok(false);
        };
        let mut list = self.list.lock();
        let removed = match list.iter().position(|l| l.as_ptr() == target) {
            Some(i) => {
                list.remove(i);
                true
            }
            None => false,
        };
        self.count.store(list.len(), Ordering::Release);
        Ok(removed)
    }

    /// On `dispose`: the one `"disposed"` event, then every listener is
    /// forgotten.
    pub(crate) fn close(&self, py: Python<'_>, pattern: &'static str, name: &str) {
        self.emit(py, || Event::new(pattern, name, "disposed"));
        self.clear();
    }

    pub(crate) fn clear(&self) {
        let old = core::mem::take(&mut *self.list.lock());
        self.count.store(0, Ordering::Release);
        drop(old);
    }

    /// `true` if anyone listens: one relaxed load.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) != 0
    }

    /// Builds the event only if someone listens or a `stockade.prometheus`
    /// collector counts events ([`counting`]), counts it, and calls each
    /// listener.
    #[inline]
    pub(crate) fn emit(&self, py: Python<'_>, make: impl FnOnce() -> Event) {
        if self.any() || counting() {
            self.emit_slow(py, make());
        }
    }

    #[cold]
    fn emit_slow(&self, py: Python<'_>, event: Event) {
        count(&event);
        self.deliver(py, event);
    }

    /// Calls each listener with `event` (already counted).
    #[cold]
    pub(crate) fn deliver(&self, py: Python<'_>, event: Event) {
        if !self.any() {
            return;
        }
        let listeners: Vec<Py<PyAny>> = self.list.lock().iter().map(|l| l.clone_ref(py)).collect();
        let event = match Py::new(py, event) {
            Ok(e) => e,
            Err(e) => {
                e.write_unraisable(py, None);
                return;
            }
        };
        for listener in listeners {
            let listener = listener.bind(py);
            if let Err(e) = listener.call1((event.clone_ref(py),)) {
                e.write_unraisable(py, Some(listener));
            }
        }
    }
}

/// The metrics dict every pattern returns: the blocking layer's `Metrics`
/// fields (zero where a pattern does not use one) plus `name`.
/// `fallback_decisions` counts the decisions a Redis-backed pattern
/// (`redis=`) took under its fallback because Redis did not answer (0 for
/// other patterns).
#[derive(Default)]
pub(crate) struct MetricsSnapshot {
    pub(crate) calls: u64,
    pub(crate) successes: u64,
    pub(crate) failures: u64,
    pub(crate) rejections: u64,
    pub(crate) timeouts: u64,
    pub(crate) retries: u64,
    pub(crate) queue_depth: u64,
    pub(crate) in_flight: u64,
    pub(crate) fallback_decisions: u64,
}

impl MetricsSnapshot {
    pub(crate) fn to_dict<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("name", name)?;
        d.set_item("calls", self.calls)?;
        d.set_item("successes", self.successes)?;
        d.set_item("failures", self.failures)?;
        d.set_item("rejections", self.rejections)?;
        d.set_item("timeouts", self.timeouts)?;
        d.set_item("retries", self.retries)?;
        d.set_item("queue_depth", self.queue_depth)?;
        d.set_item("in_flight", self.in_flight)?;
        d.set_item("fallback_decisions", self.fallback_decisions)?;
        Ok(d)
    }
}

// ---------------------------------------------------------------------------
// Event counting for `stockade.prometheus` (the Rust crate's
// `telemetry::metrics::Collector` counts the same events the same way).

/// Live [`EventCounting`] tokens: while nonzero, events are counted.
static COUNTING: AtomicUsize = AtomicUsize::new(0);

/// The counts so far: events by `(pattern type, event kind)` then name,
/// and the retry delays by name (`(count, sum of seconds)`). Nested so
/// that counting an event of a series that exists allocates nothing.
#[derive(Default)]
struct Tally {
    events: HashMap<(&'static str, &'static str), HashMap<String, u64>>,
    retry_delays: HashMap<String, (u64, f64)>,
}

static TALLY: LazyLock<Mutex<Tally>> = LazyLock::new(Default::default);

/// `true` while a collector counts events: one relaxed load.
#[inline]
pub(crate) fn counting() -> bool {
    COUNTING.load(Ordering::Relaxed) != 0
}

/// Counts `event` if a collector counts events: `stockade.events` by
/// pattern type, name and kind, and for a `"retry"` event its delay
/// (`stockade.retry.delay`). Takes no Python object: callable without the
/// GIL (a Redis-backed pattern's forwarded events).
pub(crate) fn count(event: &Event) {
    if !counting() {
        return;
    }
    count_parts(event.pattern, &event.name, event.kind, event.delay);
}

fn count_parts(pattern: &'static str, name: &str, kind: &'static str, delay: Option<f64>) {
    let mut guard = TALLY.lock();
    let tally = &mut *guard;
    let by_name = tally.events.entry((pattern, kind)).or_default();
    match by_name.get_mut(name) {
        Some(n) => *n = n.wrapping_add(1),
        None => {
            by_name.insert(name.to_owned(), 1);
        }
    }
    if kind == "retry" {
        if let Some(delay) = delay {
            if !tally.retry_delays.contains_key(name) {
                tally.retry_delays.insert(name.to_owned(), (0, 0.0));
            }
            if let Some(entry) = tally.retry_delays.get_mut(name) {
                entry.0 = entry.0.wrapping_add(1);
                entry.1 += delay;
            }
        }
    }
}

/// What makes events counted: while at least one is open (made and
/// neither closed nor garbage-collected), every event of every pattern in
/// the process is counted. `stockade.prometheus.StockadeCollector` holds
/// one.
#[pyclass(module = "stockade._stockade", name = "_EventCounting", frozen)]
pub(crate) struct EventCounting {
    open: AtomicBool,
}

#[pymethods]
impl EventCounting {
    #[new]
    fn new() -> EventCounting {
        COUNTING.fetch_add(1, Ordering::Relaxed);
        EventCounting {
            open: AtomicBool::new(true),
        }
    }

    /// Stops this token's counting (idempotent; the counts stay).
    fn close(&self) {
        if self.open.swap(false, Ordering::Relaxed) {
            COUNTING.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// `True` until `close()`.
    #[getter]
    fn open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for EventCounting {
    fn drop(&mut self) {
        self.close();
    }
}

/// `True` while any `_EventCounting` is open.
#[pyfunction]
#[pyo3(name = "_counting_events")]
pub(crate) fn counting_events() -> bool {
    counting()
}

/// Every event counted so far, as `(pattern type, name, kind, count)` (in
/// no particular order).
#[pyfunction]
#[pyo3(name = "_event_counts")]
pub(crate) fn event_counts() -> Vec<(&'static str, String, &'static str, u64)> {
    let tally = TALLY.lock();
    let mut out = Vec::new();
    for ((pattern, kind), by_name) in &tally.events {
        for (name, n) in by_name {
            out.push((*pattern, name.clone(), *kind, *n));
        }
    }
    out
}

/// Every retry delay counted so far, as `(name, count, sum in seconds)`.
#[pyfunction]
#[pyo3(name = "_retry_delays")]
pub(crate) fn retry_delays() -> Vec<(String, u64, f64)> {
    TALLY
        .lock()
        .retry_delays
        .iter()
        .map(|(name, (n, sum))| (name.clone(), *n, *sum))
        .collect()
}

/// Counts an event of a pattern written in Python (`stockade.Fallback`,
/// `stockade.Hedging`) if a collector counts events; `ValueError` for a
/// pattern or kind those patterns do not have.
#[pyfunction]
#[pyo3(name = "_count_event")]
pub(crate) fn count_event(pattern: &str, name: &str, kind: &str) -> PyResult<()> {
    let (pattern, kind) = crate::hedging::python_event_names(pattern, kind)?;
    if counting() {
        count_parts(pattern, name, kind, None);
    }
    Ok(())
}
