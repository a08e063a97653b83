//! The `shared=` keyword: a pattern whose core machine every process on
//! the host shares (`stockade::shared`), and the clock that goes with it.

use core::ops::Deref;

use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString};
use stockade::clock::{Clock, MonotonicClock, Timestamp};
use stockade::shared::{HostClock, Machine, Shared, SharedError, SharedOptions};

use crate::errors::{Exc, config_error};

static PROCESS_CLOCK: MonotonicClock = MonotonicClock::new();

/// A pattern's core machine: its own, or one in a shared region.
pub(crate) enum Held<M: Machine> {
    Local(M),
    Shared(Box<Shared<M>>),
}

impl<M: Machine> Deref for Held<M> {
    type Target = M;

    #[inline]
    fn deref(&self) -> &M {
        match self {
            Held::Local(m) => m,
            Held::Shared(s) => s,
        }
    }
}

impl<M: Machine> Held<M> {
    /// The clock that goes with the machine: the host's for a shared one
    /// (every process must read the same time line).
    pub(crate) fn clock(&self) -> PatternClock {
        match self {
            Held::Local(_) => PatternClock::Process,
            Held::Shared(_) => PatternClock::Host,
        }
    }

    /// The region's file, for a shared machine.
    pub(crate) fn path(&self) -> Option<String> {
        match self {
            Held::Local(_) => None,
            Held::Shared(s) => Some(s.path().display().to_string()),
        }
    }

    /// A local machine, or the shared one named `name` (with the stored
    /// config if `adopt` and it differs: returned beside it).
    pub(crate) fn open(
        py: Python<'_>,
        name: &str,
        config: M::Config,
        options: Option<SharedOptions>,
    ) -> PyResult<(Held<M>, M::Config)> {
        match options {
            None => Ok((
                Held::Local(M::build(&config).map_err(|e| config_error(py, e))?),
                config,
            )),
            Some(options) => {
                let shared = py
                    .detach(|| Shared::<M>::open(name, config, &options))
                    .map_err(|e| shared_error(py, e))?;
                let in_force = *shared.config();
                Ok((Held::Shared(Box::new(shared)), in_force))
            }
        }
    }
}

/// The clock a pattern reads: the process's calibrated one, or the host's
/// `CLOCK_MONOTONIC` for a shared pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatternClock {
    Process,
    Host,
}

impl Clock for PatternClock {
    #[inline]
    fn now(&self) -> Timestamp {
        match self {
            PatternClock::Process => PROCESS_CLOCK.now(),
            PatternClock::Host => HostClock.now(),
        }
    }
}

/// `shared=`: `None`/`False` is local; `True` the default directory
/// (`/dev/shm`); a `str` or `os.PathLike` a directory. Anything else is a
/// `TypeError` naming `shared`.
pub(crate) fn options(shared: Option<&Bound<'_, PyAny>>) -> PyResult<Option<SharedOptions>> {
    let Some(v) = shared.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(b.is_true().then(SharedOptions::new));
    }
    let path = if v.is_instance_of::<PyString>() {
        v.extract::<String>()?
    } else {
        let os = v.py().import("os")?;
        match os.call_method1("fspath", (v,)) {
            Ok(p) if p.is_instance_of::<PyString>() => p.extract::<String>()?,
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "shared must be True, False, None or a directory path, not {}",
                    v.get_type().name()?
                )));
            }
        }
    };
    Ok(Some(SharedOptions::new().directory(path)))
}

/// A region that cannot be opened: `ConfigError` for a config or layout
/// that does not match (both sides in the message) and for a bad name;
/// `OSError` for the file itself (missing directory, permissions, a path
/// that is not ours).
pub(crate) fn shared_error(py: Python<'_>, e: SharedError) -> PyErr {
    match e {
        SharedError::InvalidConfig(c) => config_error(py, c),
        SharedError::ConfigMismatch { .. }
        | SharedError::Incompatible { .. }
        | SharedError::OtherTimeNamespace { .. } => {
            Exc::Config.err(py, (e.to_string(), "shared".to_owned()))
        }
        SharedError::InvalidName { .. } => Exc::Config.err(py, (e.to_string(), "name".to_owned())),
        SharedError::InvalidOption { option, .. } => {
            Exc::Config.err(py, (e.to_string(), option.to_owned()))
        }
        other => PyOSError::new_err(other.to_string()),
    }
}
