//! Calling the protected function, and telling whether it was an `async
//! def` (its result is awaitable: the pattern then hands the rest of the
//! call to a coroutine of `stockade._aio`).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

/// `true` if `obj` can be awaited (its type has `__await__`): a coroutine,
/// a `Future`, a `Task`, any object with `__await__`. One pointer chase.
#[inline]
pub(crate) fn is_awaitable(obj: &Bound<'_, PyAny>) -> bool {
    let tp = obj.get_type_ptr();
    // SAFETY: `tp` is the type of a live object we hold a reference
    // to, so it points to a valid `PyTypeObject`; `tp_as_async` is
    // either null or points to the type's (static or heap-allocated,
    // type-lifetime) async slots.
    unsafe {
        let slots = (*tp).tp_as_async;
        !slots.is_null() && (*slots).am_await.is_some()
    }
}

/// A function and its arguments, borrowed.
pub(crate) type CallArgs<'a, 'py> = (
    &'a Bound<'py, PyAny>,
    &'a Bound<'py, PyTuple>,
    Option<&'a Bound<'py, PyDict>>,
);

/// `fn(*args, **kwargs)`.
#[inline]
pub(crate) fn call<'py>(
    func: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    match kwargs {
        Some(k) if !k.is_empty() => func.call(args, Some(k)),
        _ => func.call1(args),
    }
}

/// A function of `stockade._aio`.
pub(crate) fn aio<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.import(py, "stockade._aio", name)
}
