//! A native awaitable that drives a coroutine and, when it ends, gives a
//! pattern its outcome: what a circuit breaker returns for an `async def`
//! function. It costs one small object per call instead of a Python
//! coroutine frame, so protecting an `async def` call adds little to
//! awaiting it.
//!
//! It follows the iterator-based awaitable protocol: `__await__` returns
//! itself; `__next__`/`send` step the inner coroutine, `throw` and `close`
//! are passed on (asyncio cancels through `throw`). The outcome is
//! reported exactly once: a return is a success, an exception the
//! pattern's verdict on it, `close()` before the end is ignored.

use core::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyBaseException, PyStopIteration};
use pyo3::prelude::*;

use crate::breaker::CircuitBreaker;

/// What to do when the coroutine ends.
pub(crate) enum Finish {
    Breaker(Py<CircuitBreaker>, stockade::breaker::BreakerToken),
}

impl Finish {
    /// `exc`: `None` for a return, the exception otherwise; `closed` when
    /// the coroutine was closed before it ended.
    fn run(&self, py: Python<'_>, exc: Option<&Bound<'_, PyAny>>, closed: bool) {
        match self {
            Finish::Breaker(b, token) => b.get().finish(py, *token, exc, closed),
        }
    }
}

/// An awaitable wrapping a coroutine.
#[pyclass(module = "stockade._stockade", frozen)]
pub(crate) struct Guarded {
    inner: Py<PyAny>,
    finish: Finish,
    done: AtomicBool,
}

/// One step of the inner coroutine.
enum Step {
    Yielded(Py<PyAny>),
    Returned(Py<PyAny>),
}

impl Guarded {
    /// Wraps `awaitable`: a coroutine is driven directly, any other
    /// awaitable (a `Future`) through the iterator its `__await__` gives.
    pub(crate) fn new(awaitable: Bound<'_, PyAny>, finish: Finish) -> PyResult<Guarded> {
        // SAFETY: `awaitable` is a live object; the check reads its type.
        let is_coroutine = unsafe { pyo3::ffi::PyCoro_CheckExact(awaitable.as_ptr()) } != 0;
        let inner = if is_coroutine {
            awaitable
        } else {
            awaitable.call_method0(pyo3::intern!(awaitable.py(), "__await__"))?
        };
        Ok(Guarded {
            inner: inner.unbind(),
            finish,
            done: AtomicBool::new(false),
        })
    }

    fn end(&self, py: Python<'_>, exc: Option<&Bound<'_, PyAny>>, closed: bool) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.finish.run(py, exc, closed);
        }
    }

    /// Handles a step's outcome: a yield passes through, a return ends
    /// with success (raising `StopIteration(value)` to the awaiter), an
    /// exception ends with it.
    fn after(&self, py: Python<'_>, step: PyResult<Step>) -> PyResult<Py<PyAny>> {
        match step {
            Ok(Step::Yielded(v)) => Ok(v),
            Ok(Step::Returned(v)) => {
                self.end(py, None, false);
                Err(stop_iteration(py, v))
            }
            Err(e) => {
                self.end(py, Some(e.value(py).as_any()), false);
                Err(e)
            }
        }
    }

    #[cfg(Py_3_10)]
    fn send_value(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Step> {
        let mut result: *mut pyo3::ffi::PyObject = core::ptr::null_mut();
        // SAFETY: `inner` and `value` are live objects we hold references
        // to while attached; `PyIter_Send` writes a new (owned) reference
        // to `result` for PYGEN_RETURN and PYGEN_NEXT, and sets an
        // exception (leaving `result` null) for PYGEN_ERROR.
        let status =
            unsafe { pyo3::ffi::PyIter_Send(self.inner.as_ptr(), value.as_ptr(), &mut result) };
        match status {
            pyo3::ffi::PySendResult::PYGEN_ERROR => Err(PyErr::fetch(py)),
            status => {
                // SAFETY: an owned, non-null reference (see above).
                let obj = unsafe { Bound::from_owned_ptr(py, result) }.unbind();
                Ok(if status == pyo3::ffi::PySendResult::PYGEN_RETURN {
                    Step::Returned(obj)
                } else {
                    Step::Yielded(obj)
                })
            }
        }
    }

    #[cfg(not(Py_3_10))]
    fn send_value(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Step> {
        // A coroutine is not an iterator: `send(None)` is its first step.
        let r = self
            .inner
            .bind(py)
            .call_method1(pyo3::intern!(py, "send"), (value,));
        returned(py, r)
    }
}

/// `StopIteration(value)`, built at once (normalized): the awaiting frame
/// reads its `value` without building it from an argument tuple.
fn stop_iteration(py: Python<'_>, value: Py<PyAny>) -> PyErr {
    // SAFETY: `PyExc_StopIteration` is a static type object; `value` is a
    // live object; the call returns a new reference or null with an
    // exception set.
    let made = unsafe {
        let exc = pyo3::ffi::PyObject_CallOneArg(pyo3::ffi::PyExc_StopIteration, value.as_ptr());
        Bound::from_owned_ptr_or_err(py, exc)
    };
    match made {
        Ok(instance) => PyErr::from_value(instance),
        Err(e) => e,
    }
}

/// A `StopIteration` from the inner coroutine is its return.
fn returned(py: Python<'_>, r: PyResult<Bound<'_, PyAny>>) -> PyResult<Step> {
    match r {
        Ok(v) => Ok(Step::Yielded(v.unbind())),
        Err(e) if e.is_instance_of::<PyStopIteration>(py) => {
            let value = e.value(py).getattr(pyo3::intern!(py, "value"))?;
            Ok(Step::Returned(value.unbind()))
        }
        Err(e) => Err(e),
    }
}

#[pymethods]
impl Guarded {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let step = self.send_value(py, &py.None().into_bound(py));
        self.after(py, step)
    }

    fn send(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let step = self.send_value(py, value);
        self.after(py, step)
    }

    /// Passes an exception (asyncio's cancellation) into the coroutine.
    #[pyo3(signature = (typ, val = None, tb = None))]
    fn throw(
        &self,
        py: Python<'_>,
        typ: &Bound<'_, PyAny>,
        val: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let inner = self.inner.bind(py);
        let throw = pyo3::intern!(py, "throw");
        // The one-argument form when an instance is given (the three-
        // argument form is deprecated since 3.12).
        let r = match val.filter(|v| !v.is_none()) {
            Some(v) if v.is_instance_of::<PyBaseException>() && tb.is_none_or(|t| t.is_none()) => {
                inner.call_method1(throw, (v,))
            }
            Some(v) => inner.call_method1(throw, (typ, v, tb)),
            None => inner.call_method1(throw, (typ,)),
        };
        let step = returned(py, r);
        self.after(py, step)
    }

    /// Closes the coroutine; a call closed before its end is not counted.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let r = self.inner.bind(py).call_method0(pyo3::intern!(py, "close"));
        self.end(py, None, true);
        r.map(drop)
    }
}

/// On 3.10 and 3.11 `await` drives an awaitable through its `am_send`
/// slot when it has one (`PyIter_Send`), so a return needs no
/// `StopIteration` at all. PyO3 has no attribute for that slot: it is set
/// on the class once, at module initialisation. (From 3.12 on, `await`
/// calls `tp_iternext`/`send` again, which `__next__`/`send` serve.)
#[cfg(all(Py_3_10, not(Py_3_12)))]
pub(crate) fn install_am_send(py: Python<'_>) {
    let tp = py.get_type::<Guarded>().as_type_ptr();
    // SAFETY: `tp` is the class PyO3 just created, a heap type whose
    // `tp_as_async` points to its own (non-null, because the class has an
    // `__await__`) async slots; nobody has used the class yet. Setting a
    // slot and a flag on a type we own, then `PyType_Modified`, is how the
    // C API lets extensions adjust their own types.
    unsafe {
        let slots = (*tp).tp_as_async;
        if !slots.is_null() {
            (*slots).am_send = Some(am_send);
            (*tp).tp_flags |= 1 << 21; // Py_TPFLAGS_HAVE_AM_SEND
            pyo3::ffi::PyType_Modified(tp);
        }
    }
}

#[cfg(not(all(Py_3_10, not(Py_3_12))))]
pub(crate) fn install_am_send(_py: Python<'_>) {}

#[cfg(all(Py_3_10, not(Py_3_12)))]
unsafe extern "C" fn am_send(
    iter: *mut pyo3::ffi::PyObject,
    arg: *mut pyo3::ffi::PyObject,
    presult: *mut *mut pyo3::ffi::PyObject,
) -> pyo3::ffi::PySendResult {
    use pyo3::ffi::PySendResult::{PYGEN_ERROR, PYGEN_NEXT, PYGEN_RETURN};
    // SAFETY: CPython calls the slot attached to the interpreter, with
    // live `iter` (an instance of `Guarded`, the only type with this slot)
    // and `arg`, and a valid `presult` to write a new reference to.
    let py = unsafe { Python::assume_attached() };
    let run = || -> (pyo3::ffi::PySendResult, *mut pyo3::ffi::PyObject) {
        // SAFETY: borrowed references, valid for this call (see above).
        let (this, arg) = unsafe {
            (
                Bound::from_borrowed_ptr(py, iter),
                Bound::from_borrowed_ptr(py, arg),
            )
        };
        let Ok(this) = this.cast::<Guarded>() else {
            pyo3::exceptions::PyTypeError::new_err("am_send on a foreign type").restore(py);
            return (PYGEN_ERROR, core::ptr::null_mut());
        };
        let g = this.get();
        match g.send_value(py, &arg) {
            Ok(Step::Yielded(v)) => (PYGEN_NEXT, v.into_ptr()),
            Ok(Step::Returned(v)) => {
                g.end(py, None, false);
                (PYGEN_RETURN, v.into_ptr())
            }
            Err(e) => {
                g.end(py, Some(e.value(py).as_any()), false);
                e.restore(py);
                (PYGEN_ERROR, core::ptr::null_mut())
            }
        }
    };
    match std::panic::catch_unwind(core::panic::AssertUnwindSafe(run)) {
        Ok((status, result)) => {
            // SAFETY: `presult` is valid to write (see above).
            unsafe { *presult = result };
            status
        }
        Err(_) => {
            pyo3::exceptions::PyRuntimeError::new_err("stockade: panic while awaiting").restore(py);
            // SAFETY: as above.
            unsafe { *presult = core::ptr::null_mut() };
            PYGEN_ERROR
        }
    }
}
