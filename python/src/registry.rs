//! Named instances, by the blocking layer's rules: constructing a named
//! pattern registers it under its kind and name, and fails with
//! `NameTakenError` while a live instance holds the name; `get_*(name)`
//! returns the registered instance (creating one with the default options
//! if there is none); `dispose()` removes it and frees the name. A
//! registered instance lives until it is disposed.

use std::collections::HashMap;
use std::sync::LazyLock;

use parking_lot::Mutex;
use pyo3::prelude::*;

type Key = (&'static str, String);

static REGISTRY: LazyLock<Mutex<HashMap<Key, Py<PyAny>>>> = LazyLock::new(Default::default);

/// Registers `obj` as `name` of `kind`, or raises `NameTakenError`.
pub(crate) fn register(kind: &'static str, name: &str, obj: Py<PyAny>) -> PyResult<()> {
    let refused = {
        let mut map = REGISTRY.lock();
        match map.entry((kind, name.to_owned())) {
            std::collections::hash_map::Entry::Occupied(_) => Some(obj),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(obj);
                None
            }
        }
    };
    match refused {
        None => Ok(()),
        // Dropped outside the lock: a finaliser may run Python code.
        Some(obj) => Python::attach(|py| {
            drop(obj);
            Err(crate::errors::Exc::NameTaken.err(
                py,
                (
                    format!(
                        "a {} named '{name}' is already registered (dispose it first, or fetch it by name)",
                        kind.replace('_', " ")
                    ),
                    name.to_owned(),
                ),
            ))
        }),
    }
}

/// The instance registered as `name` of `kind`.
pub(crate) fn get(py: Python<'_>, kind: &'static str, name: &str) -> Option<Py<PyAny>> {
    REGISTRY
        .lock()
        .get(&(kind, name.to_owned()))
        .map(|o| o.clone_ref(py))
}

/// Removes `name` of `kind` if `obj` is the instance registered there.
pub(crate) fn unregister(kind: &'static str, name: &str, obj: &Bound<'_, PyAny>) {
    let old = {
        let mut map = REGISTRY.lock();
        let key = (kind, name.to_owned());
        match map.get(&key) {
            Some(o) if o.as_ptr() == obj.as_ptr() => map.remove(&key),
            _ => None,
        }
    };
    drop(old);
}

// The registry and helpers for the patterns written in Python
// (`stockade._request_response`, `stockade._fallback`).

static KINDS: &[&str] = &["request_response", "fallback", "hedging"];

fn kind(name: &str) -> PyResult<&'static str> {
    KINDS.iter().find(|k| **k == name).copied().ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!("unknown pattern kind {name:?}"))
    })
}

/// Registers `obj` as `name` of `kind`.
#[pyfunction]
#[pyo3(name = "_register")]
pub(crate) fn py_register(kind_name: &str, name: &str, obj: Py<PyAny>) -> PyResult<()> {
    register(kind(kind_name)?, name, obj)
}

/// The instance registered as `name` of `kind`, or `None`.
#[pyfunction]
#[pyo3(name = "_registered")]
pub(crate) fn py_registered(
    py: Python<'_>,
    kind_name: &str,
    name: &str,
) -> PyResult<Option<Py<PyAny>>> {
    Ok(get(py, kind(kind_name)?, name))
}

/// Every registered instance as `(kind, name, instance)`, for
/// `stockade.prometheus` (in no particular order).
#[pyfunction]
#[pyo3(name = "_registered_instances")]
pub(crate) fn py_registered_instances(py: Python<'_>) -> Vec<(&'static str, String, Py<PyAny>)> {
    REGISTRY
        .lock()
        .iter()
        .map(|((kind, name), obj)| (*kind, name.clone(), obj.clone_ref(py)))
        .collect()
}

/// Removes `name` of `kind` if `obj` is registered there.
#[pyfunction]
#[pyo3(name = "_unregister")]
pub(crate) fn py_unregister(kind_name: &str, name: &str, obj: &Bound<'_, PyAny>) -> PyResult<()> {
    unregister(kind(kind_name)?, name, obj);
    Ok(())
}

/// A `Timeout` that is not registered.
#[pyfunction]
#[pyo3(name = "_adhoc_timeout", signature = (name, timeout, max_workers = 16))]
pub(crate) fn adhoc_timeout(
    py: Python<'_>,
    name: String,
    timeout: &Bound<'_, PyAny>,
    #[pyo3(from_py_with = crate::convert::arg_max_workers)] max_workers: usize,
) -> PyResult<Py<crate::timeout::Timeout>> {
    crate::timeout::Timeout::unregistered(py, name, Some(timeout), max_workers)
}

/// `value` (seconds or a `timedelta`) as float seconds, validated as the
/// option `option`.
#[pyfunction]
#[pyo3(name = "_seconds")]
pub(crate) fn seconds(value: &Bound<'_, PyAny>, option: &str) -> PyResult<f64> {
    Ok(crate::convert::duration(value, option)?.as_secs_f64())
}
