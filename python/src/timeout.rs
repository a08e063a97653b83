//! `stockade.Timeout`. The `async def` path is asyncio's own
//! (`asyncio.timeout` on 3.11+, `asyncio.wait_for` before): the task is
//! cancelled where it waits. The threaded path (a worker that returns on
//! time) runs on the core's worker pool (`stockade::blocking::WorkerPool`,
//! the one `blocking::Timeout` uses): the caller waits for its
//! `DetachedCall` with the GIL released, in slices of [`SIGNAL_SLICE`] so
//! that Ctrl-C reaches it. A call that outlives its deadline goes on
//! running on its worker; its result is dropped there.

use core::time::Duration;
use std::sync::Arc;

use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use stockade::HumanDuration;
use stockade::blocking::{WaitError, WorkerPool, panic_message};
use stockade::clock::{Clock, MonotonicClock};
use stockade::deadline::TimeoutConfig;

use crate::call::{aio, call};
use crate::convert::{arg_max_workers, duration};
use crate::errors::{Exc, config_error, disposed, secs};
use crate::events::{Event, Listeners, MetricsSnapshot};
use crate::registry;
use crate::retry::{Counter, interrupts};
use crate::wait::{DisposeFlag, SIGNAL_SLICE};
use crate::wrap::{Target, is_async_callable, wrap};

const KIND: &str = "timeout";

/// Real time for deadlines and for the workers' idle timeout.
static CLOCK: MonotonicClock = MonotonicClock::new();

/// How long a worker waits idle for another call before it exits.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bounds how long a call may take.
///
/// `Timeout(name, *, timeout=5.0)`.
#[pyclass(module = "stockade", frozen, subclass, weakref)]
pub(crate) struct Timeout {
    name: String,
    timeout: Duration,
    /// The time allowed, in seconds.
    #[pyo3(get, name = "timeout")]
    timeout_secs: f64,
    pool: Arc<WorkerPool>,
    pub(crate) listeners: Listeners,
    calls: Counter,
    successes: Counter,
    failures: Counter,
    timeouts: Counter,
    /// Refused: every worker busy.
    rejections: Counter,
    pub(crate) disposed: DisposeFlag,
}

impl Timeout {
    /// A timeout that is not registered (the request-response pattern's
    /// per-request deadlines).
    pub(crate) fn unregistered(
        py: Python<'_>,
        name: String,
        timeout: Option<&Bound<'_, PyAny>>,
        max_workers: usize,
    ) -> PyResult<Py<Timeout>> {
        let config = match timeout {
            None => TimeoutConfig::DEFAULT,
            Some(t) => {
                TimeoutConfig::new(duration(t, "timeout")?).map_err(|e| config_error(py, e))?
            }
        };
        if max_workers == 0 {
            return Err(crate::errors::config_error(
                py,
                stockade::ConfigError::zero(
                    stockade::ConfigOption::MaxWorkers,
                    stockade::ConfigValue::Count(0),
                ),
            ));
        }
        Py::new(
            py,
            Timeout {
                name,
                timeout: config.timeout,
                timeout_secs: secs(config.timeout),
                // Never queues: a call runs now or is refused.
                pool: Arc::new(WorkerPool::new(
                    "stockade-timeout",
                    max_workers,
                    0,
                    IDLE_TIMEOUT,
                )),
                listeners: Listeners::default(),
                calls: Counter::default(),
                successes: Counter::default(),
                failures: Counter::default(),
                timeouts: Counter::default(),
                rejections: Counter::default(),
                disposed: DisposeFlag::default(),
            },
        )
    }

    fn timed_out_error(&self, py: Python<'_>, after: Duration) -> PyErr {
        Exc::Timeout.err(
            py,
            (
                format!(
                    "Timeout '{}' timed out after {}",
                    self.name,
                    HumanDuration(after)
                ),
                self.name.clone(),
                secs(after),
            ),
        )
    }

    /// Runs `func` within the time allowed.
    pub(crate) fn run<'py>(
        slf: &Bound<'py, Timeout>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let py = slf.py();
        if this.disposed.get() {
            return Err(disposed(py, "Timeout", &this.name));
        }
        this.calls.inc();
        if is_async_callable(func)? {
            let value = call(func, args, kwargs).inspect_err(|e| this.count_error(e))?;
            static TIMEOUT_CALL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            return aio(py, &TIMEOUT_CALL, "timeout_call")?.call1((slf, value, secs(this.timeout)));
        }
        this.run_thread(py, func, args, kwargs, this.timeout)
    }

    /// Runs a plain function on a worker and waits for it until the
    /// deadline (the GIL released, in slices for Ctrl-C). The function runs
    /// in a copy of the caller's `contextvars` context.
    fn run_thread<'py>(
        &self,
        py: Python<'py>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
        timeout: Duration,
    ) -> PyResult<Bound<'py, PyAny>> {
        static COPY_CONTEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let context = COPY_CONTEXT
            .import(py, "contextvars", "copy_context")?
            .call0()?;
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(func.clone());
        all.extend(args.iter());
        let job_args = PyTuple::new(py, all)?.unbind();
        let job_kwargs = kwargs.map(|k| k.clone().unbind());
        let runner = context.getattr("run")?.unbind();
        let deadline = CLOCK.now().saturating_add(timeout);
        let mut detached = self
            .pool
            .submit(&CLOCK, move || {
                Python::attach(|py| {
                    let out = runner
                        .bind(py)
                        .call(job_args.bind(py), job_kwargs.as_ref().map(|k| k.bind(py)))
                        .map(Bound::unbind);
                    drop((runner, job_args, job_kwargs));
                    out
                })
            })
            .map_err(|_| {
                self.rejections.inc();
                let workers = self.pool.counts().workers;
                Exc::BulkheadFull.err(
                    py,
                    (
                        format!(
                            "Timeout '{}': all {workers} worker threads are busy (max_workers = {})",
                            self.name,
                            self.pool.max_workers()
                        ),
                        self.name.clone(),
                    ),
                )
            })?;
        // Dropping `detached` (the deadline, Ctrl-C) abandons the call: its
        // late result is dropped on the worker.
        let outcome = loop {
            let waited = py.detach(|| {
                let slice_end = CLOCK.now().saturating_add(SIGNAL_SLICE).min(deadline);
                detached.wait_until(&CLOCK, slice_end)
            });
            match waited {
                Ok(outcome) => break Some(outcome),
                Err(WaitError::TimedOut) if CLOCK.now() < deadline => {
                    // Interrupted (Ctrl-C) while waiting: no outcome.
                    py.check_signals().inspect_err(|_| self.calls.dec())?;
                }
                // `Cancelled` needs a shutdown, which this pool never has.
                Err(_) => break None,
            }
        };
        match outcome {
            Some(Ok(Ok(value))) => {
                self.successes.inc();
                Ok(value.into_bound(py))
            }
            Some(Ok(Err(e))) => {
                self.count_error(&e);
                Err(e)
            }
            Some(Err(payload)) => {
                self.failures.inc();
                Err(PanicException::new_err(
                    panic_message(payload.as_ref()).to_string(),
                ))
            }
            None => Err(PyErr::from_value(self._timed_out(py, Some(secs(timeout))))),
        }
    }
}

impl Timeout {
    /// The function raised `e`: a failure, or no outcome if `e` is an
    /// interruption (a `BaseException` that is not an `Exception`).
    fn count_error(&self, e: &PyErr) {
        if Python::attach(|py| interrupts(e.value(py))) {
            self.calls.dec();
        } else {
            self.failures.inc();
        }
    }
}

impl Drop for Timeout {
    /// Idle workers exit now instead of after their idle timeout; busy ones
    /// after their call.
    fn drop(&mut self) {
        self.pool.shutdown();
    }
}

#[pymethods]
impl Timeout {
    #[new]
    #[pyo3(signature = (name, *, timeout = None, max_workers = 16))]
    fn new(
        py: Python<'_>,
        name: String,
        timeout: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = arg_max_workers)] max_workers: usize,
    ) -> PyResult<Py<Timeout>> {
        let t = Timeout::unregistered(py, name, timeout, max_workers)?;
        registry::register(KIND, &t.get().name, t.clone_ref(py).into_any())?;
        Ok(t)
    }

    /// The timeout registered as `name`, or a new one with the default
    /// options (registered under that name).
    #[classmethod]
    #[pyo3(name = "get_timeout")]
    fn registered(cls: &Bound<'_, PyType>, name: &str) -> PyResult<Py<PyAny>> {
        if let Some(found) = registry::get(cls.py(), KIND, name) {
            return Ok(found);
        }
        Ok(cls.call1((name,))?.unbind())
    }

    /// Runs `func(*args, **kwargs)` and raises `stockade.TimeoutError` if it
    /// takes longer than `timeout`.
    #[pyo3(signature = (func, /, *args, **kwargs))]
    fn execute<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Timeout::run(slf, func, args, kwargs)
    }

    /// `func` protected by this timeout (a decorator).
    fn wrap<'py>(slf: &Bound<'py, Self>, func: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        wrap(Target::Timeout(slf.clone().unbind()), func)
    }

    /// `@timeout` as a decorator: the same as `wrap`.
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        wrap(Target::Timeout(slf.clone().unbind()), func)
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Counters: `calls`, `successes`, `failures` (the function raised),
    /// `timeouts`, `rejections` (every worker busy).
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        MetricsSnapshot {
            calls: self.calls.get(),
            successes: self.successes.get(),
            failures: self.failures.get(),
            timeouts: self.timeouts.get(),
            rejections: self.rejections.get(),
            ..MetricsSnapshot::default()
        }
        .to_dict(py, &self.name)
    }

    /// Calls `callback(event)` on every timeout (and on `dispose`); returns
    /// `callback`.
    fn add_listener(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = crate::events::listener)] callback: Py<PyAny>,
    ) -> Py<PyAny> {
        self.listeners.add(callback.clone_ref(py));
        callback
    }

    /// Removes a listener; `True` if it was there.
    fn remove_listener(&self, callback: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.listeners.remove(callback)
    }

    /// Refuses every later call with `DisposedError` and unregisters the
    /// name.
    fn dispose(slf: &Bound<'_, Self>) {
        let this = slf.get();
        if this.disposed.set() {
            this.listeners.close(slf.py(), KIND, &this.name);
        }
        registry::unregister(KIND, &this.name, slf.as_any());
    }

    #[getter]
    fn disposed(&self) -> bool {
        self.disposed.get()
    }

    // Reports from `stockade._aio.timeout_call`.
    fn _succeeded(&self) {
        self.successes.inc();
    }

    /// The call was interrupted (a `BaseException` that is not an
    /// `Exception`): no outcome.
    fn _interrupted(&self) {
        self.calls.dec();
    }

    fn _failed(&self) {
        self.failures.inc();
    }

    /// Counts the timeout, tells the listeners, returns the exception.
    #[pyo3(signature = (after = None))]
    fn _timed_out<'py>(&self, py: Python<'py>, after: Option<f64>) -> Bound<'py, PyAny> {
        let after = after.map_or(self.timeout, Duration::from_secs_f64);
        self.timeouts.inc();
        self.listeners.emit(py, || {
            let mut e = Event::new(KIND, &self.name, "timed_out");
            e.timeout = Some(secs(after));
            e
        });
        self.timed_out_error(py, after)
            .into_value(py)
            .into_bound(py)
            .into_any()
    }

    /// `func()` within `seconds` instead of the configured timeout (the
    /// request-response pattern's per-request deadlines).
    fn _execute_within<'py>(
        slf: &Bound<'py, Self>,
        seconds: &Bound<'py, PyAny>,
        func: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let limit = TimeoutConfig::new(duration(seconds, "timeout")?)
            .map_err(|e| config_error(py, e))?
            .timeout;
        this.calls.inc();
        if is_async_callable(func)? {
            let value = func.call0().inspect_err(|e| this.count_error(e))?;
            static TIMEOUT_CALL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            return aio(py, &TIMEOUT_CALL, "timeout_call")?.call1((slf, value, secs(limit)));
        }
        this.run_thread(py, func, &PyTuple::empty(py), None, limit)
    }

    /// Worker threads alive and busy now.
    #[getter]
    fn workers(&self) -> (usize, usize) {
        let counts = self.pool.counts();
        (counts.workers, counts.busy)
    }

    /// The most worker threads for plain functions.
    #[getter]
    fn max_workers(&self) -> usize {
        self.pool.max_workers()
    }

    fn __repr__(&self) -> String {
        format!("Timeout({:?}, timeout={})", self.name, secs(self.timeout))
    }
}
