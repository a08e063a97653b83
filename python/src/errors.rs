//! The Python exception classes (defined in `stockade/_errors.py`, so that
//! `stockade.TimeoutError` can also be a built-in `TimeoutError`) and the
//! translation of the core's errors into them.

use core::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use stockade::ConfigError;

/// One of the classes of `stockade._errors`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Exc {
    Config,
    CircuitOpen,
    BulkheadFull,
    RateLimited,
    Timeout,
    QueueTimeout,
    Disposed,
    NameTaken,
    Redis,
    RedisUnavailable,
    RedisConfigMismatch,
}

static CLASSES: [PyOnceLock<Py<PyType>>; 11] = [
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
];

impl Exc {
    fn class_name(self) -> &'static str {
        match self {
            Exc::Config => "ConfigError",
            Exc::CircuitOpen => "CircuitOpenError",
            Exc::BulkheadFull => "BulkheadFullError",
            Exc::RateLimited => "RateLimitedError",
            Exc::Timeout => "TimeoutError",
            Exc::QueueTimeout => "QueueTimeoutError",
            Exc::Disposed => "DisposedError",
            Exc::NameTaken => "NameTakenError",
            Exc::Redis => "RedisError",
            Exc::RedisUnavailable => "RedisUnavailableError",
            Exc::RedisConfigMismatch => "RedisConfigMismatchError",
        }
    }

    /// The class object.
    pub(crate) fn class(self, py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
        CLASSES[self as usize].import(py, "stockade._errors", self.class_name())
    }

    /// An exception of this class built from `args` (its constructor's
    /// positional arguments).
    pub(crate) fn err<'py, A>(self, py: Python<'py>, args: A) -> PyErr
    where
        A: pyo3::call::PyCallArgs<'py>,
    {
        match self.class(py).and_then(|cls| cls.call1(args)) {
            Ok(instance) => PyErr::from_value(instance),
            Err(e) => e,
        }
    }
}

/// Seconds as a Python float.
pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// `stockade.ConfigError` (a `ValueError`) with the core's message.
pub(crate) fn config_error(py: Python<'_>, e: ConfigError) -> PyErr {
    Exc::Config.err(py, (e.to_string(), e.option.as_str()))
}

/// `stockade.ConfigError` for an option the core never saw (a negative or
/// out-of-range number, a value of the wrong kind).
pub(crate) fn option_error(py: Python<'_>, option: &str, message: String) -> PyErr {
    Exc::Config.err(py, (message, option.to_owned()))
}

/// `stockade.DisposedError` for pattern `name`.
pub(crate) fn disposed(py: Python<'_>, kind: &str, name: &str) -> PyErr {
    Exc::Disposed.err(
        py,
        (
            format!("{kind} '{name}' has been disposed"),
            name.to_owned(),
        ),
    )
}

/// The core's [`stockade::blocking::Error`] a Stockade exception stands
/// for, so that rules over the errors of nested patterns (such as
/// `Error::retry_floor`) are the core's, not restated here. `None` for an
/// exception the core has no variant for (the caller's own, a config or
/// name error). Times in seconds that are missing, negative or not finite
/// become the core's "no time" (`Duration::MAX` for a `retry_after`).
pub(crate) fn core_error(exc: &Bound<'_, PyAny>) -> PyResult<Option<stockade::blocking::Error>> {
    use stockade::blocking::Error;
    use stockade::breaker::BreakerState;
    let py = exc.py();
    let seconds = |attr: &str| -> PyResult<Option<Duration>> {
        let value: Option<f64> = exc.getattr(attr)?.extract()?;
        Ok(value.and_then(|s| Duration::try_from_secs_f64(s).ok()))
    };
    let is = |class: Exc| -> PyResult<bool> { exc.is_instance(class.class(py)?) };
    Ok(Some(if is(Exc::Timeout)? {
        Error::TimedOut {
            after: seconds("timeout")?.unwrap_or(Duration::ZERO),
        }
    } else if is(Exc::CircuitOpen)? {
        match seconds("retry_after")? {
            Some(retry_after) => Error::BreakerOpen {
                state: BreakerState::Open,
                retry_after,
            },
            // No time: forced open.
            None => Error::BreakerOpen {
                state: BreakerState::ForcedOpen,
                retry_after: Duration::MAX,
            },
        }
    } else if is(Exc::RateLimited)? {
        Error::RateLimited {
            retry_after: seconds("retry_after")?.unwrap_or(Duration::MAX),
        }
    } else if is(Exc::BulkheadFull)? {
        Error::BulkheadFull
    } else if is(Exc::QueueTimeout)? {
        Error::QueueTimeout {
            waited: seconds("waited")?.unwrap_or(Duration::ZERO),
        }
    } else if is(Exc::Disposed)? {
        Error::Disposed
    } else {
        return Ok(None);
    }))
}
