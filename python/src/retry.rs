//! `stockade.Retry`: the core's `Backoff` schedule driven from Python.
//!
//! The healthy path is one call and two relaxed counter increments. A
//! failure is classified (`retryable_errors`, and the blocking layer's
//! rules for Stockade's own refusals), the schedule gives the next delay,
//! and the thread sleeps with the GIL released (in slices, for Ctrl-C and
//! `dispose()`), or an `async def` call sleeps with `asyncio.sleep` in
//! `stockade._aio.retry_call`.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};
use stockade::backoff::{Backoff, BackoffConfig, BackoffSchedule, Jitter};

use crate::call::{aio, call, is_awaitable};
use crate::convert::{arg_n, arg_seed, count_u32, duration, factor, opt_duration};
use crate::errors::{config_error, core_error, disposed, secs};
use crate::events::{Event, Listeners, MetricsSnapshot};
use crate::registry;
use crate::wait::DisposeFlag;
use crate::wrap::{Target, wrap};

const KIND: &str = "retry";

/// A relaxed event counter.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Takes back an `inc` (a call that ended in no outcome: an
    /// interruption, see `stockade`'s docs).
    #[inline]
    pub(crate) fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// `True` for a `BaseException` that is not an `Exception`
/// (`KeyboardInterrupt`, `SystemExit`, `GeneratorExit`,
/// `asyncio.CancelledError`): it interrupts a call, which then counts as
/// no outcome and is taken back out of `calls`.
pub(crate) fn interrupts(exc: &Bound<'_, PyAny>) -> bool {
    !exc.is_instance_of::<pyo3::exceptions::PyException>()
}

/// `retryable_errors`, sorted by kind.
struct Matchers {
    /// Empty: every exception is retryable.
    any: bool,
    classes: Option<Py<PyTuple>>,
    substrings: Vec<String>,
    regexes: Vec<Py<PyAny>>,
}

static RE_PATTERN: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static CORE_EXC: PyOnceLock<Py<PyType>> = PyOnceLock::new();

impl Matchers {
    fn new(items: &Bound<'_, PyAny>) -> PyResult<(Matchers, Py<PyTuple>)> {
        let py = items.py();
        let items: Vec<Bound<'_, PyAny>> = if items.is_instance_of::<PyString>() {
            // A lone string is one matcher, not its characters.
            vec![items.clone()]
        } else {
            crate::convert::items(
                items,
                "retryable_errors",
                "a str, re.Pattern or exception class, or an iterable of them",
            )?
        };
        let pattern_type = RE_PATTERN.import(py, "re", "Pattern")?;
        let base_exception = py.get_type::<pyo3::exceptions::PyBaseException>();
        let mut classes = Vec::new();
        let mut substrings = Vec::new();
        let mut regexes = Vec::new();
        for item in &items {
            if let Ok(s) = item.cast::<PyString>() {
                substrings.push(s.to_str()?.to_owned());
            } else if item.is_instance(pattern_type)? {
                regexes.push(item.clone().unbind());
            } else if let Ok(t) = item.cast::<PyType>()
                && t.is_subclass(&base_exception)?
            {
                classes.push(t.clone());
            } else {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "retryable_errors: each item must be a str (substring of the message), \
                     a compiled re.Pattern or an exception class, not {}",
                    item.repr()?
                )));
            }
        }
        let given = PyTuple::new(py, &items)?.unbind();
        Ok((
            Matchers {
                any: items.is_empty(),
                classes: if classes.is_empty() {
                    None
                } else {
                    Some(PyTuple::new(py, classes)?.unbind())
                },
                substrings,
                regexes,
            },
            given,
        ))
    }

    fn matches(&self, exc: &Bound<'_, PyAny>) -> PyResult<bool> {
        if self.any {
            return Ok(true);
        }
        let py = exc.py();
        if let Some(classes) = &self.classes
            && exc.is_instance(classes.bind(py))?
        {
            return Ok(true);
        }
        if self.substrings.is_empty() && self.regexes.is_empty() {
            return Ok(false);
        }
        let text = exc.str()?;
        let text_str = text.to_str()?;
        if self
            .substrings
            .iter()
            .any(|s| text_str.contains(s.as_str()))
        {
            return Ok(true);
        }
        for r in &self.regexes {
            if !r
                .bind(py)
                .call_method1(pyo3::intern!(py, "search"), (&text,))?
                .is_none()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// What to do after a failed attempt.
enum Verdict {
    /// Sleep, then try again.
    Sleep(Duration),
    /// Out of attempts or time: re-raise the exception with a note.
    GiveUp,
    /// Not retryable: re-raise the exception as it is.
    Raise,
}

/// The state of one call: its schedule and when it began (read only with
/// a `max_elapsed` budget, the one rule that needs it: the healthy path
/// reads no clock).
pub(crate) struct CallState {
    schedule: Option<BackoffSchedule>,
    start: Option<Instant>,
    attempt: u32,
}

impl CallState {
    #[inline]
    fn new(timed: bool) -> CallState {
        CallState {
            schedule: None,
            start: timed.then(Instant::now),
            attempt: 1,
        }
    }
}

/// Retries a failing call with exponential backoff.
///
/// `Retry(name, *, max_attempts=3, initial_delay=1.0, max_delay=30.0,
/// backoff_factor=2.0, retryable_errors=(), jitter="none",
/// max_elapsed=None, seed=None)`.
#[pyclass(module = "stockade", frozen, subclass, weakref)]
pub(crate) struct Retry {
    name: String,
    config: BackoffConfig,
    backoff: Backoff,
    matchers: Matchers,
    retryable_errors: Py<PyTuple>,
    seed: u64,
    seed_given: Option<u64>,
    next_call: AtomicU64,
    pub(crate) listeners: Listeners,
    calls: Counter,
    successes: Counter,
    failures: Counter,
    retries: Counter,
    pub(crate) disposed: DisposeFlag,
}

/// FNV-1a of the name: the default jitter seed (as the blocking layer's).
fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn jitter_from_str(py: Python<'_>, s: &str) -> PyResult<Jitter> {
    Ok(match s {
        "none" => Jitter::None,
        "full" => Jitter::Full,
        "equal" => Jitter::Equal,
        "decorrelated" => Jitter::Decorrelated,
        _ => {
            return Err(crate::errors::option_error(
                py,
                "jitter",
                format!(
                    "invalid jitter = {s:?}: must be one of \"none\", \"full\", \"equal\", \"decorrelated\""
                ),
            ));
        }
    })
}

fn jitter_str(j: Jitter) -> &'static str {
    match j {
        Jitter::None => "none",
        Jitter::Full => "full",
        Jitter::Equal => "equal",
        Jitter::Decorrelated => "decorrelated",
    }
}

impl Retry {
    fn call_seed(&self) -> u64 {
        let n = self.next_call.fetch_add(1, Ordering::Relaxed);
        self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn check_disposed(&self, py: Python<'_>) -> PyResult<()> {
        if self.disposed.get() {
            Err(disposed(py, "Retry", &self.name))
        } else {
            Ok(())
        }
    }

    /// Classifies a failed attempt and, if it is to be retried, takes the
    /// next delay from the schedule.
    fn judge(&self, exc: &Bound<'_, PyAny>, state: &mut CallState) -> PyResult<Verdict> {
        let py = exc.py();
        // KeyboardInterrupt, SystemExit, CancelledError, GeneratorExit: never.
        if !exc.is_instance_of::<pyo3::exceptions::PyException>() {
            return Ok(Verdict::Raise);
        }
        let core_base = CORE_EXC.import(py, "stockade._errors", "StockadeError")?;
        let at_least = if exc.is_instance(core_base)? {
            // A nested pattern's error: the core's rule decides
            // (`Error::retry_floor`).
            let floor =
                core_error(exc)?.and_then(|nested| nested.retry_floor(self.config.max_delay));
            match floor {
                Some(floor) => floor,
                None => return Ok(Verdict::Raise),
            }
        } else if self.matchers.matches(exc)? {
            Duration::ZERO
        } else {
            return Ok(Verdict::Raise);
        };
        let schedule = state
            .schedule
            .get_or_insert_with(|| self.backoff.schedule(self.call_seed()));
        let elapsed = state.start.map_or(Duration::ZERO, |s| s.elapsed());
        // The floor counts against `max_elapsed` too (the schedule's budget).
        let Some(delay) = schedule.next_delay_at_least(elapsed, at_least) else {
            return Ok(Verdict::GiveUp);
        };
        Ok(Verdict::Sleep(delay))
    }

    /// After a failed attempt: `Some(delay)` to retry (the event is
    /// emitted), `None` to re-raise (with the note when giving up).
    fn failed(&self, exc: &Bound<'_, PyAny>, state: &mut CallState) -> PyResult<Option<Duration>> {
        let py = exc.py();
        if interrupts(exc) {
            // Never retried, and no outcome.
            self.calls.dec();
            return Ok(None);
        }
        match self.judge(exc, state)? {
            Verdict::Sleep(delay) => {
                self.retries.inc();
                self.listeners.emit(py, || {
                    let mut e = Event::new(KIND, &self.name, "retry");
                    e.attempt = Some(state.attempt);
                    e.delay = Some(secs(delay));
                    e.error = Some(exc.clone().unbind());
                    e
                });
                state.attempt += 1;
                Ok(Some(delay))
            }
            Verdict::GiveUp => {
                self.failures.inc();
                attach_note(exc, &self.name, state.attempt)?;
                Ok(None)
            }
            Verdict::Raise => {
                self.failures.inc();
                Ok(None)
            }
        }
    }

    /// Runs `func` until it succeeds or retrying stops (threads).
    pub(crate) fn run<'py>(
        slf: &Bound<'py, Retry>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let py = slf.py();
        this.check_disposed(py)?;
        this.calls.inc();
        let mut state = CallState::new(this.config.max_elapsed.is_some());
        loop {
            match call(func, args, kwargs) {
                Ok(value) => {
                    if is_awaitable(&value) {
                        return this.go_async(slf, state, value, func, args, kwargs);
                    }
                    this.successes.inc();
                    return Ok(value);
                }
                Err(err) => {
                    let exc = err.value(py).clone();
                    match this.failed(&exc, &mut state)? {
                        None => return Err(err),
                        Some(delay) => {
                            drop(err);
                            // Interrupted (Ctrl-C) or disposed in the
                            // back-off: the call ends with no outcome.
                            match this.disposed.sleep(py, delay) {
                                Ok(true) => {}
                                Ok(false) => {
                                    this.calls.dec();
                                    return Err(disposed(py, "Retry", &this.name));
                                }
                                Err(e) => {
                                    this.calls.dec();
                                    return Err(e);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn go_async<'py>(
        &self,
        slf: &Bound<'py, Retry>,
        state: CallState,
        first: Bound<'py, PyAny>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        static RETRY_CALL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let py = slf.py();
        let call = Bound::new(
            py,
            RetryCall {
                retry: slf.clone().unbind(),
                state,
            },
        )?;
        aio(py, &RETRY_CALL, "retry_call")?.call1((call, first, func, args, kwargs))
    }
}

/// Adds the attempt count to an exception that ran out of retries: a note
/// (`add_note`, shown under the traceback on 3.11+; appended to `__notes__`
/// on 3.9/3.10) and the attribute `stockade_attempts`.
fn attach_note(exc: &Bound<'_, PyAny>, name: &str, attempts: u32) -> PyResult<()> {
    let py = exc.py();
    let plural = if attempts == 1 { "" } else { "s" };
    let note = format!("stockade: Retry '{name}' gave up after {attempts} attempt{plural}");
    // Exceptions that refuse attributes (slots, C types) keep only the note.
    let _ = exc.setattr("stockade_attempts", attempts);
    if exc.hasattr("add_note")? {
        exc.call_method1("add_note", (note,))?;
    } else {
        let notes = match exc.getattr("__notes__") {
            Ok(n) => n,
            Err(_) => {
                let n = pyo3::types::PyList::empty(py).into_any();
                if exc.setattr("__notes__", &n).is_err() {
                    return Ok(());
                }
                n
            }
        };
        let _ = notes.call_method1("append", (note,));
    }
    Ok(())
}

/// One `async def` call in progress: `stockade._aio.retry_call` reports
/// each attempt's outcome here.
#[pyclass(module = "stockade._stockade")]
pub(crate) struct RetryCall {
    retry: Py<Retry>,
    state: CallState,
}

#[pymethods]
impl RetryCall {
    /// The attempt succeeded.
    fn succeeded(&self) {
        self.retry.get().successes.inc();
    }

    /// The attempt raised `exc`: seconds to sleep before the next one, or
    /// `None` to re-raise it.
    fn failed(&mut self, exc: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        let retry = self.retry.get();
        Ok(retry.failed(exc, &mut self.state)?.map(secs))
    }

    /// Before the next attempt: raises `DisposedError` if disposed (the
    /// call then ends with no outcome).
    fn resume(&self, py: Python<'_>) -> PyResult<()> {
        let retry = self.retry.get();
        retry.check_disposed(py).inspect_err(|_| retry.calls.dec())
    }

    /// The call was interrupted between attempts (cancelled in its
    /// back-off sleep): no outcome.
    fn interrupted(&self) {
        self.retry.get().calls.dec();
    }
}

#[pymethods]
impl Retry {
    #[new]
    #[pyo3(signature = (
        name, *, max_attempts = None, initial_delay = None, max_delay = None,
        backoff_factor = None, retryable_errors = None, jitter = None,
        max_elapsed = None, seed = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: String,
        max_attempts: Option<&Bound<'_, PyAny>>,
        initial_delay: Option<&Bound<'_, PyAny>>,
        max_delay: Option<&Bound<'_, PyAny>>,
        backoff_factor: Option<&Bound<'_, PyAny>>,
        retryable_errors: Option<&Bound<'_, PyAny>>,
        jitter: Option<&Bound<'_, PyAny>>,
        max_elapsed: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = arg_seed)] seed: Option<u64>,
    ) -> PyResult<Py<Retry>> {
        let mut config = BackoffConfig::DEFAULT;
        if let Some(v) = max_attempts {
            config.max_attempts = count_u32(v, "max_attempts")?;
        }
        if let Some(v) = initial_delay {
            config.initial_delay = duration(v, "initial_delay")?;
        }
        if let Some(v) = max_delay {
            config.max_delay = duration(v, "max_delay")?;
        }
        if let Some(v) = backoff_factor {
            config.backoff_factor = factor(v, "backoff_factor")?;
        }
        config.max_elapsed = opt_duration(max_elapsed, "max_elapsed")?;
        if let Some(v) = jitter.filter(|v| !v.is_none()) {
            config.jitter = jitter_from_str(py, crate::convert::text(v, "jitter")?)?;
        }
        let backoff = Backoff::new(config).map_err(|e| config_error(py, e))?;
        let empty = PyTuple::empty(py);
        let (matchers, given) = Matchers::new(retryable_errors.unwrap_or(&empty))?;
        let retry = Py::new(
            py,
            Retry {
                seed: seed.unwrap_or_else(|| name_seed(&name)),
                seed_given: seed,
                name,
                config,
                backoff,
                matchers,
                retryable_errors: given,
                next_call: AtomicU64::new(0),
                listeners: Listeners::default(),
                calls: Counter::default(),
                successes: Counter::default(),
                failures: Counter::default(),
                retries: Counter::default(),
                disposed: DisposeFlag::default(),
            },
        )?;
        registry::register(KIND, &retry.get().name, retry.clone_ref(py).into_any())?;
        Ok(retry)
    }

    /// The retry registered as `name`, or a new one with the default
    /// options (registered under that name).
    #[classmethod]
    fn get_retrier(cls: &Bound<'_, PyType>, name: &str) -> PyResult<Py<PyAny>> {
        let py = cls.py();
        if let Some(found) = registry::get(py, KIND, name) {
            return Ok(found);
        }
        Ok(cls.call1((name,))?.unbind())
    }

    /// Runs `func(*args, **kwargs)`, retrying it as configured. With an
    /// `async def` function, returns an awaitable.
    #[pyo3(signature = (func, /, *args, **kwargs))]
    fn execute<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Retry::run(slf, func, args, kwargs)
    }

    /// `func` protected by this retry (a decorator).
    fn wrap<'py>(slf: &Bound<'py, Self>, func: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        wrap(Target::Retry(slf.clone().unbind()), func)
    }

    /// `@retry` as a decorator: the same as `wrap`.
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        wrap(Target::Retry(slf.clone().unbind()), func)
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }
    #[getter]
    fn max_attempts(&self) -> u32 {
        self.config.max_attempts
    }
    #[getter]
    fn initial_delay(&self) -> f64 {
        secs(self.config.initial_delay)
    }
    #[getter]
    fn max_delay(&self) -> f64 {
        secs(self.config.max_delay)
    }
    #[getter]
    fn backoff_factor(&self) -> f64 {
        self.config.backoff_factor
    }
    #[getter]
    fn retryable_errors(&self, py: Python<'_>) -> Py<PyTuple> {
        self.retryable_errors.clone_ref(py)
    }
    #[getter]
    fn jitter(&self) -> &'static str {
        jitter_str(self.config.jitter)
    }
    #[getter]
    fn max_elapsed(&self) -> Option<f64> {
        self.config.max_elapsed.map(secs)
    }
    #[getter]
    fn seed(&self) -> Option<u64> {
        self.seed_given
    }

    /// The base delay (no jitter) before retry number `n` (1-based), in
    /// seconds: the core's `Backoff::delay`.
    fn delay(&self, #[pyo3(from_py_with = arg_n)] n: u32) -> f64 {
        secs(self.backoff.delay(n))
    }

    /// Counters: `calls`, `successes`, `failures` (calls that ended in an
    /// exception), `retries`.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        MetricsSnapshot {
            calls: self.calls.get(),
            successes: self.successes.get(),
            failures: self.failures.get(),
            retries: self.retries.get(),
            ..MetricsSnapshot::default()
        }
        .to_dict(py, &self.name)
    }

    /// Calls `callback(event)` on every retry (and on `dispose`); returns
    /// `callback`, so it works as a decorator.
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

    /// Refuses every later call with `DisposedError`, wakes calls sleeping
    /// in back-off (they raise `DisposedError`), and unregisters the name.
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

    fn __repr__(&self) -> String {
        format!(
            "Retry({:?}, max_attempts={}, initial_delay={}, max_delay={}, backoff_factor={})",
            self.name,
            self.config.max_attempts,
            secs(self.config.initial_delay),
            secs(self.config.max_delay),
            self.config.backoff_factor
        )
    }
}
