//! Named instances: constructing a named pattern registers it under its
//! kind and name (the newest construction wins); `get_*(name)` returns the
//! registered instance (creating one with the default options if there is
//! none); `dispose()` removes it.

use std::collections::HashMap;
use std::sync::LazyLock;

use parking_lot::Mutex;
use pyo3::prelude::*;

type Key = (&'static str, String);

static REGISTRY: LazyLock<Mutex<HashMap<Key, Py<PyAny>>>> = LazyLock::new(Default::default);

/// Registers `obj` as `name` of `kind`, replacing any earlier instance.
pub(crate) fn register(kind: &'static str, name: &str, obj: Py<PyAny>) {
    let old = REGISTRY.lock().insert((kind, name.to_owned()), obj);
    // Dropped outside the lock: a finaliser may run Python code.
    drop(old);
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
