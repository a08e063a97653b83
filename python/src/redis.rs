//! The `redis=` keyword: a pattern that a whole fleet shares through a
//! Redis server (`stockade::redis`), its options (`stockade.RedisOptions`),
//! its errors (`RedisError` and subclasses) and its store events.
//!
//! A Redis-backed pattern is the blocking layer's Redis-backed pattern
//! (`blocking::RateLimiter::redis` and the like), which the Python class
//! drives instead of its own core machine. Every call that may make a
//! round trip to Redis runs with the GIL released; the asyncio paths run
//! those calls on the loop's default executor (`stockade._aio`), never on
//! the loop's thread.

use core::time::Duration;
use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString};
use stockade::blocking::{Error, Event as CoreEvent, EventKind};
use stockade::redis::{Fallback, RedisError, RedisOptions, TimeSource};

use crate::convert::{count_u32, duration};
use crate::errors::{Exc, config_error, disposed, secs};
use crate::events::{Event, Listeners};

/// How a Redis-backed pattern reaches its server and what it decides when
/// the server cannot answer: `stockade.RedisOptions(url, *, prefix=...)`,
/// given as `redis=` (a plain URL string takes every default).
#[pyclass(module = "stockade", name = "RedisOptions", frozen)]
pub(crate) struct PyRedisOptions {
    pub(crate) inner: RedisOptions,
}

fn text(value: &Bound<'_, PyAny>, option: &str) -> PyResult<String> {
    if value.is_instance_of::<PyString>() {
        value.extract()
    } else {
        Err(PyTypeError::new_err(format!(
            "{option} must be a str, not {}",
            value.get_type().name()?
        )))
    }
}

/// The options' own rules, as `ConfigError` naming the option.
fn validated(py: Python<'_>, options: RedisOptions) -> PyResult<RedisOptions> {
    options.validate().map_err(|e| redis_error(py, &e, None))?;
    Ok(options)
}

#[pymethods]
impl PyRedisOptions {
    #[new]
    #[pyo3(signature = (
        url, *, prefix = None, connect_timeout = None, command_timeout = None,
        max_connections = None, time = None, fallback = None, expected_instances = None,
        guard_failures = None, guard_reset_timeout = None, adopt_stored_config = None,
        lease_permits = None, lease_ttl = None, sync_interval = None, failure_window = None,
        quorum = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        url: &Bound<'_, PyAny>,
        prefix: Option<&Bound<'_, PyAny>>,
        connect_timeout: Option<&Bound<'_, PyAny>>,
        command_timeout: Option<&Bound<'_, PyAny>>,
        max_connections: Option<&Bound<'_, PyAny>>,
        time: Option<&Bound<'_, PyAny>>,
        fallback: Option<&Bound<'_, PyAny>>,
        expected_instances: Option<&Bound<'_, PyAny>>,
        guard_failures: Option<&Bound<'_, PyAny>>,
        guard_reset_timeout: Option<&Bound<'_, PyAny>>,
        adopt_stored_config: Option<&Bound<'_, PyAny>>,
        lease_permits: Option<&Bound<'_, PyAny>>,
        lease_ttl: Option<&Bound<'_, PyAny>>,
        sync_interval: Option<&Bound<'_, PyAny>>,
        failure_window: Option<&Bound<'_, PyAny>>,
        quorum: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyRedisOptions> {
        let mut o = RedisOptions::new(text(url, "url")?);
        if let Some(v) = prefix {
            o = o.prefix(text(v, "prefix")?);
        }
        if let Some(v) = connect_timeout {
            o = o.connect_timeout(duration(v, "connect_timeout")?);
        }
        if let Some(v) = command_timeout {
            o = o.command_timeout(duration(v, "command_timeout")?);
        }
        if let Some(v) = max_connections {
            o = o.max_connections(count_u32(v, "max_connections")?);
        }
        if let Some(v) = time {
            o = o.time(match text(v, "time")?.as_str() {
                "server" => TimeSource::Server,
                "client" => TimeSource::Client,
                other => {
                    return Err(crate::errors::option_error(
                        py,
                        "time",
                        format!("invalid time = {other:?}: must be \"server\" or \"client\""),
                    ));
                }
            });
        }
        if let Some(v) = fallback {
            let name = text(v, "fallback")?;
            o = o.fallback(Fallback::from_name(&name).ok_or_else(|| {
                crate::errors::option_error(
                    py,
                    "fallback",
                    format!(
                        "invalid fallback = {name:?}: must be \"local\", \"open\" or \"closed\""
                    ),
                )
            })?);
        }
        if let Some(v) = expected_instances {
            o = o.expected_instances(count_u32(v, "expected_instances")?);
        }
        if let Some(v) = guard_failures {
            o = o.guard_failures(count_u32(v, "guard_failures")?);
        }
        if let Some(v) = guard_reset_timeout {
            o = o.guard_reset_timeout(duration(v, "guard_reset_timeout")?);
        }
        if let Some(v) = adopt_stored_config {
            if !v.is_instance_of::<PyBool>() {
                return Err(PyTypeError::new_err(format!(
                    "adopt_stored_config must be a bool, not {}",
                    v.get_type().name()?
                )));
            }
            o = o.adopt_stored_config(v.is_truthy()?);
        }
        if let Some(v) = lease_permits {
            o = o.lease_permits(count_u32(v, "lease_permits")?);
        }
        if let Some(v) = lease_ttl.filter(|v| !v.is_none()) {
            o = o.lease_ttl(duration(v, "lease_ttl")?);
        }
        if let Some(v) = sync_interval {
            o = o.sync_interval(duration(v, "sync_interval")?);
        }
        if let Some(v) = failure_window {
            o = o.failure_window(duration(v, "failure_window")?);
        }
        if let Some(v) = quorum {
            o = o.quorum(count_u32(v, "quorum")?);
        }
        Ok(PyRedisOptions {
            inner: validated(py, o)?,
        })
    }

    /// The server's URL, as given.
    #[getter]
    fn url(&self) -> &str {
        self.inner.url()
    }
    #[getter]
    fn prefix(&self) -> &str {
        self.inner.prefix_value()
    }
    #[getter]
    fn connect_timeout(&self) -> f64 {
        secs(self.inner.connect_timeout_value())
    }
    #[getter]
    fn command_timeout(&self) -> f64 {
        secs(self.inner.command_timeout_value())
    }
    #[getter]
    fn max_connections(&self) -> u32 {
        self.inner.max_connections_value()
    }
    /// `"server"` or `"client"`.
    #[getter]
    fn time(&self) -> &'static str {
        match self.inner.time_value() {
            TimeSource::Client => "client",
            _ => "server",
        }
    }
    /// `"local"`, `"open"` or `"closed"`.
    #[getter]
    fn fallback(&self) -> &'static str {
        self.inner.fallback_value().name()
    }
    #[getter]
    fn expected_instances(&self) -> u32 {
        self.inner.expected_instances_value()
    }
    #[getter]
    fn guard_failures(&self) -> u32 {
        self.inner.guard_failures_value()
    }
    #[getter]
    fn guard_reset_timeout(&self) -> f64 {
        secs(self.inner.guard_reset_timeout_value())
    }
    #[getter]
    fn adopt_stored_config(&self) -> bool {
        self.inner.adopt_stored_config_value()
    }
    #[getter]
    fn lease_permits(&self) -> u32 {
        self.inner.lease_permits_value()
    }
    /// Seconds, or `None` for the pattern's default.
    #[getter]
    fn lease_ttl(&self) -> Option<f64> {
        self.inner.lease_ttl_value().map(secs)
    }
    #[getter]
    fn sync_interval(&self) -> f64 {
        secs(self.inner.sync_interval_value())
    }
    #[getter]
    fn failure_window(&self) -> f64 {
        secs(self.inner.failure_window_value())
    }
    #[getter]
    fn quorum(&self) -> u32 {
        self.inner.quorum_value()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyRedisOptions>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "RedisOptions({:?}, prefix={:?}, fallback={:?}, time={:?})",
            redact(self.inner.url()),
            self.inner.prefix_value(),
            self.fallback(),
            self.time()
        )
    }
}

/// `url` with a password replaced by `***`.
fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        if let Some(at) = rest.find('@') {
            if let Some(colon) = rest[..at].find(':') {
                return format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &rest[..colon],
                    &rest[at..]
                );
            }
        }
    }
    url.to_owned()
}

/// `redis=`: `None` is no Redis; a `str` is a URL with every default; a
/// `RedisOptions` is used as it is. Anything else is a `TypeError` naming
/// `redis`; `redis=` with `shared=` is a `ConfigError`.
pub(crate) fn options(
    py: Python<'_>,
    redis: Option<&Bound<'_, PyAny>>,
    shared: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<RedisOptions>> {
    let Some(v) = redis.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    let options = if let Ok(o) = v.cast::<PyRedisOptions>() {
        o.get().inner.clone()
    } else if v.is_instance_of::<PyString>() {
        validated(py, RedisOptions::new(v.extract::<String>()?))?
    } else {
        return Err(PyTypeError::new_err(format!(
            "redis must be a URL (str) or a stockade.RedisOptions, not {}",
            v.get_type().name()?
        )));
    };
    let shared_given = match shared {
        None => false,
        Some(s) if s.is_none() => false,
        Some(s) => match s.cast::<PyBool>() {
            Ok(b) => b.is_true(),
            Err(_) => true,
        },
    };
    if shared_given {
        return Err(crate::errors::option_error(
            py,
            "redis",
            "redis= and shared= cannot be combined: a pattern is shared by the processes of \
             one host (shared=) or by a fleet through Redis (redis=)"
                .to_owned(),
        ));
    }
    Ok(Some(options))
}

/// The Python exception for a Redis error of pattern `name` (`None` for
/// the options themselves): `ConfigError` naming the option for invalid
/// options, URL, name or config; `RedisConfigMismatchError`;
/// `RedisUnavailableError`.
pub(crate) fn redis_error(py: Python<'_>, e: &RedisError, name: Option<&str>) -> PyErr {
    let message = e.to_string();
    let name = name.map(str::to_owned);
    match e {
        RedisError::InvalidConfig(c) => config_error(py, *c),
        RedisError::InvalidOption { option, .. } => Exc::Config.err(py, (message, *option)),
        RedisError::InvalidUrl { .. } => Exc::Config.err(py, (message, "url")),
        RedisError::InvalidName { .. } => Exc::Config.err(py, (message, "name")),
        RedisError::ConfigMismatch { key, stored, ours } => Exc::RedisConfigMismatch.err(
            py,
            (message, name, key.clone(), stored.clone(), ours.clone()),
        ),
        RedisError::Unavailable { cause, retry_after } => {
            Exc::RedisUnavailable.err(py, (message, name, cause.name(), retry_after.map(secs)))
        }
        _ => Exc::Redis.err(py, (message, name)),
    }
}

/// The Python exception for a blocking-layer constructor's error.
pub(crate) fn open_error(py: Python<'_>, e: Error, kind: &str, name: &str) -> PyErr {
    match e {
        Error::InvalidConfig(c) => config_error(py, c),
        Error::Redis(e) => redis_error(py, &e, Some(name)),
        Error::NameTaken { .. } => Exc::NameTaken.err(
            py,
            (
                format!(
                    "a {kind} named '{name}' is already registered (dispose it first, or fetch it by name)"
                ),
                name.to_owned(),
            ),
        ),
        other => Exc::Redis.err(py, (other.to_string(), Some(name.to_owned()))),
    }
}

/// A listener for the Redis-backed pattern that hands its store events to
/// the Python listeners as `Event(kind="store_unavailable", cause=...)`
/// and `Event(kind="store_recovered")` (and, with `transitions`, its
/// `"state_changed"` and `"rejected"` events: a breaker's state is the
/// fleet's, changed by the blocking layer), in the thread that met the
/// change (attaching to the interpreter for the listeners; nothing is
/// delivered while it shuts down). Each event is counted for
/// `stockade.prometheus` (`crate::events::count`) without attaching.
pub(crate) fn forward_store_events(
    listeners: &Arc<Listeners>,
    pattern: &'static str,
    name: &str,
) -> impl Fn(&CoreEvent) + Send + Sync + 'static {
    forward_events(listeners, pattern, name, false)
}

/// As [`forward_store_events`], optionally with state changes and
/// rejections.
pub(crate) fn forward_events(
    listeners: &Arc<Listeners>,
    pattern: &'static str,
    name: &str,
    transitions: bool,
) -> impl Fn(&CoreEvent) + Send + Sync + 'static {
    let listeners = Arc::clone(listeners);
    let name = name.to_owned();
    move |e: &CoreEvent| {
        if !listeners.any() && !crate::events::counting() {
            return;
        }
        let event = match &e.kind {
            EventKind::StoreUnavailable { cause } => {
                let mut event = Event::new(pattern, &name, "store_unavailable");
                event.cause = Some(cause.name());
                event
            }
            EventKind::StoreRecovered => Event::new(pattern, &name, "store_recovered"),
            EventKind::StateChanged { from, to, .. } if transitions => {
                let mut event = Event::new(pattern, &name, "state_changed");
                event.from_state = Some(from.as_str());
                event.to_state = Some(to.as_str());
                event
            }
            EventKind::Rejected { retry_after } if transitions => {
                let mut event = Event::new(pattern, &name, "rejected");
                event.retry_after = retry_after.and_then(finite).map(secs);
                event
            }
            _ => return,
        };
        // Counted without the interpreter; attached only for listeners.
        crate::events::count(&event);
        if !listeners.any() {
            return;
        }
        let listeners = &listeners;
        let _ = Python::try_attach(move |py| listeners.deliver(py, event));
    }
}

/// `DisposedError`, or the Redis error, for a refusal that is neither the
/// pattern's own (rate limited, full, open) nor the caller's.
pub(crate) fn other_error<E>(py: Python<'_>, e: Error<E>, kind: &str, name: &str) -> PyErr {
    match e {
        Error::Disposed => disposed(py, kind, name),
        Error::Redis(e) => redis_error(py, &e, Some(name)),
        Error::Panicked { message } => Exc::Redis.err(
            py,
            (
                format!("{kind} '{name}': a panic inside the Redis-backed pattern: {message}"),
                Some(name.to_owned()),
            ),
        ),
        _ => Exc::Redis.err(
            py,
            (
                format!("{kind} '{name}' refused the call"),
                Some(name.to_owned()),
            ),
        ),
    }
}

/// A `retry_after` the core reports as "never" (`Duration::MAX`) is `None`.
pub(crate) fn finite(d: Duration) -> Option<Duration> {
    (d != Duration::MAX).then_some(d)
}
