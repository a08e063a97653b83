//! Waiting with the GIL released, in slices, so that Ctrl-C reaches a
//! caller blocked on the main thread promptly and `dispose()` wakes it.

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;

/// The longest a waiting thread goes without checking for signals.
pub(crate) const SIGNAL_SLICE: Duration = Duration::from_millis(20);

/// A pattern's disposed flag and the condition its sleepers wait on.
#[derive(Default)]
pub(crate) struct DisposeFlag {
    disposed: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl DisposeFlag {
    /// `true` once disposed: one relaxed load.
    #[inline]
    pub(crate) fn get(&self) -> bool {
        self.disposed.load(Ordering::Relaxed)
    }

    /// Sets the flag and wakes every sleeper; `true` if this call set it.
    pub(crate) fn set(&self) -> bool {
        let _guard = self.lock.lock();
        let first = !self.disposed.swap(true, Ordering::AcqRel);
        self.cv.notify_all();
        first
    }

    /// Sleeps `duration` with the GIL released. `Ok(true)` when the time
    /// is up, `Ok(false)` as soon as the pattern is disposed, `Err` with
    /// the exception a signal handler raised (`KeyboardInterrupt`).
    pub(crate) fn sleep(&self, py: Python<'_>, duration: Duration) -> PyResult<bool> {
        let deadline = Instant::now().checked_add(duration);
        loop {
            let now = Instant::now();
            let left = match deadline {
                Some(d) if d <= now => return Ok(!self.get()),
                Some(d) => d - now,
                None => Duration::MAX,
            };
            let slice = left.min(SIGNAL_SLICE);
            let disposed = py.detach(|| {
                let mut guard = self.lock.lock();
                if !self.disposed.load(Ordering::Acquire) {
                    self.cv.wait_for(&mut guard, slice);
                }
                self.disposed.load(Ordering::Acquire)
            });
            if disposed {
                return Ok(false);
            }
            py.check_signals()?;
        }
    }
}

/// Coroutines waiting on a pattern (`stockade._aio.Waiters`): `dispose()`
/// fails their futures from any thread, through their own event loops.
pub(crate) struct AsyncWaiters {
    waiters: Py<PyAny>,
}

impl AsyncWaiters {
    pub(crate) fn new(py: Python<'_>) -> PyResult<AsyncWaiters> {
        static WAITERS: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
        let waiters = crate::call::aio(py, &WAITERS, "Waiters")?.call0()?;
        Ok(AsyncWaiters {
            waiters: waiters.unbind(),
        })
    }

    pub(crate) fn get<'py>(&self, py: Python<'py>) -> &Bound<'py, PyAny> {
        self.waiters.bind(py)
    }

    /// Fails every waiting future with `err`.
    pub(crate) fn wake_all(&self, py: Python<'_>, err: PyErr) -> PyResult<()> {
        self.waiters
            .bind(py)
            .call_method1("wake_all", (err.into_value(py),))?;
        Ok(())
    }
}
