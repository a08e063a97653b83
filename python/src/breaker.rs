//! `stockade.CircuitBreaker`: the core's lock-free breaker, shared by
//! threads and event loops. It never waits, so threads and asyncio use the
//! same path: take a token, call, report the outcome.
//!
//! With `redis=`, the blocking layer's Redis-backed breaker decides
//! instead (`blocking::CircuitBreaker::redis`), through its `execute`: a
//! plain call runs inside it with the GIL released around the breaker's
//! own work (admission may need a round trip for a half-open probe,
//! reporting a failure needs one). A `with` block and an `async def` call
//! cannot run inside one closure call, so a *gate* does: a thread of its
//! own runs `execute`, whose closure tells the caller it was admitted and
//! waits for the caller's verdict ([`FleetGate`]). Coroutines open and
//! close the gate on the loop's default executor, never on the loop's
//! thread.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use stockade::breaker::{
    BreakerConfig, BreakerRejected, BreakerState, BreakerToken as PermitToken,
    CircuitBreaker as Core, FailureRateConfig, Outcome, Transition,
};

use crate::call::{aio, call, is_awaitable};
use crate::context::ContextStack;
use crate::convert::{count_u32, duration, opt_duration};
use crate::errors::{Exc, disposed, secs};
use crate::events::{Event, Listeners};
use crate::guarded::{Finish, Guarded};
use crate::monitor::Monitor;
use crate::redis::{finite, forward_events, open_error, other_error};
use crate::registry;
use crate::retry::Counter;
use crate::shared::{Held, PatternClock};
use crate::wait::DisposeFlag;
use crate::wrap::{Target, wrap};

const KIND: &str = "circuit_breaker";

/// An admitted call's token, held by an `async def` call or a `with` block
/// until its outcome is reported.
#[pyclass(module = "stockade._stockade", frozen)]
pub(crate) struct BreakerToken {
    token: PermitToken,
}

/// A circuit breaker.
#[pyclass(module = "stockade", frozen, subclass, weakref)]
pub(crate) struct CircuitBreaker {
    name: String,
    core: Held<Core>,
    /// The host's clock for a shared breaker, the process's otherwise.
    clock: PatternClock,
    /// The fleet's breaker in Redis (`redis=`), which then decides instead
    /// of `core` (kept for the config's figures).
    fleet: Option<Arc<stockade::blocking::CircuitBreaker>>,
    exclude: Option<Py<PyTuple>>,
    exclude_given: Py<PyTuple>,
    pub(crate) listeners: Arc<Listeners>,
    calls: Counter,
    successes: Counter,
    pub(crate) disposed: DisposeFlag,
    entered: ContextStack,
    /// The thread that emits `"monitor"` events while anyone listens.
    pub(crate) monitor: Monitor,
}

impl CircuitBreaker {
    pub(crate) fn monitor_interval_duration(&self) -> core::time::Duration {
        self.core.config().monitor_interval
    }

    /// Emits `Event(kind="monitor", metrics=...)` (the monitor thread's
    /// tick).
    pub(crate) fn emit_monitor(&self, py: Python<'_>) {
        if !self.listeners.any() {
            return;
        }
        match self.metrics(py) {
            Ok(metrics) => self.listeners.emit(py, || {
                let mut e = Event::new(KIND, &self.name, "monitor");
                e.metrics = Some(metrics.unbind());
                e
            }),
            Err(e) => e.write_unraisable(py, None),
        }
    }

    fn rejected(&self, py: Python<'_>, r: BreakerRejected) -> PyErr {
        let retry_after = r.retry_after().map(secs);
        self.listeners.emit(py, || {
            let mut e = Event::new(KIND, &self.name, "rejected");
            e.retry_after = retry_after;
            e
        });
        let message = match (r.state(), r.retry_after()) {
            (BreakerState::ForcedOpen, _) | (_, None) => {
                format!("CircuitBreaker '{}' is {}", self.name, r.state().as_words())
            }
            (state, Some(after)) => format!(
                "CircuitBreaker '{}' is {}; retry after {}",
                self.name,
                state.as_words(),
                stockade::HumanDuration(after)
            ),
        };
        Exc::CircuitOpen.err(py, (message, self.name.clone(), retry_after))
    }

    /// Takes a token, or raises `CircuitOpenError`.
    #[inline]
    fn admit(&self, py: Python<'_>) -> PyResult<PermitToken> {
        if self.disposed.get() {
            return Err(disposed(py, "CircuitBreaker", &self.name));
        }
        self.calls.inc();
        let permit = self
            .core
            .try_acquire(&self.clock)
            .map_err(|r| self.rejected(py, r))?;
        self.changed(py, permit.transition());
        Ok(permit.into_token())
    }

    /// Tells the listeners about a transition the core performed.
    #[inline]
    fn changed(&self, py: Python<'_>, transition: Option<Transition>) {
        if let Some(t) = transition.filter(|t| t.changes_state()) {
            self.listeners.emit(py, || {
                let mut e = Event::new(KIND, &self.name, "state_changed");
                e.from_state = Some(t.from.as_str());
                e.to_state = Some(t.to.as_str());
                e
            });
        }
    }

    /// Reports the verdict. A call that is neither a success nor a
    /// failure (an interruption, an excluded exception, a coroutine closed
    /// before its end) is taken back out of `calls`: `calls` counts the
    /// calls with an outcome (successes, failures, rejections) and those
    /// in progress.
    #[inline]
    fn report(&self, py: Python<'_>, token: PermitToken, outcome: Outcome) {
        match outcome {
            Outcome::Success => self.successes.inc(),
            Outcome::Ignored => self.calls.dec(),
            _ => {}
        }
        // A stale or repeated verdict changes nothing (the core counts it).
        if let Ok(transition) = self.core.report(token, outcome, &self.clock) {
            self.changed(py, transition);
        }
    }

    /// The verdict on an exception: excluded types and `BaseException`s
    /// that are not `Exception`s (cancellation, Ctrl-C, exit) do not count.
    ///
    /// The `exclude` check runs Python code (a metaclass's
    /// `__instancecheck__`), which may raise: then the verdict is a
    /// failure, and the check's exception comes back too, for the caller
    /// to raise once the outcome is reported (a probe is never lost).
    fn outcome_of(&self, exc: &Bound<'_, PyAny>) -> (Outcome, Option<PyErr>) {
        if !exc.is_instance_of::<pyo3::exceptions::PyException>() {
            return (Outcome::Ignored, None);
        }
        if let Some(ex) = &self.exclude {
            match exc.is_instance(ex.bind(exc.py())) {
                Ok(true) => return (Outcome::Ignored, None),
                Ok(false) => {}
                Err(raised) => {
                    // Raised while handling `exc`: chained as Python would.
                    let _ = raised.value(exc.py()).setattr("__context__", exc);
                    return (Outcome::Failure, Some(raised));
                }
            }
        }
        (Outcome::Failure, None)
    }

    /// A Redis-backed breaker's refusal as `CircuitOpenError` (its
    /// `"rejected"` event comes from the blocking layer), or the Redis or
    /// dispose error.
    fn fleet_refused<E>(&self, py: Python<'_>, e: stockade::blocking::Error<E>) -> PyErr {
        match e {
            stockade::blocking::Error::BreakerOpen { state, retry_after } => {
                let retry_after = finite(retry_after);
                let message = match (state, retry_after) {
                    (BreakerState::ForcedOpen, _) | (_, None) => {
                        format!("CircuitBreaker '{}' is {}", self.name, state.as_words())
                    }
                    (state, Some(after)) => format!(
                        "CircuitBreaker '{}' is {}; retry after {}",
                        self.name,
                        state.as_words(),
                        stockade::HumanDuration(after)
                    ),
                };
                Exc::CircuitOpen.err(py, (message, self.name.clone(), retry_after.map(secs)))
            }
            other => other_error(py, other, "CircuitBreaker", &self.name),
        }
    }

    /// Opens a gate: a thread of its own asks the Redis-backed breaker to
    /// admit a call; returns once it is admitted (the GIL released while
    /// waiting), or raises its refusal.
    fn open_gate(&self, py: Python<'_>) -> PyResult<FleetGate> {
        let Some(fleet) = &self.fleet else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "not a Redis-backed breaker",
            ));
        };
        if self.disposed.get() {
            return Err(disposed(py, "CircuitBreaker", &self.name));
        }
        let inner = Arc::new(GateInner {
            state: Mutex::new(GateState::Pending),
            cv: Condvar::new(),
        });
        let fleet = Arc::clone(fleet);
        let worker = Arc::clone(&inner);
        let spawned = std::thread::Builder::new()
            .name("stockade-gate".into())
            .spawn(move || {
                let gate = Arc::clone(&worker);
                let result = fleet.execute_classified(
                    |r: &Result<Outcome, core::convert::Infallible>| match r {
                        Ok(outcome) => *outcome,
                        Err(_) => Outcome::Failure,
                    },
                    move || {
                        let mut state = gate.state.lock();
                        *state = GateState::Admitted;
                        gate.cv.notify_all();
                        loop {
                            if let GateState::Verdict(outcome) = *state {
                                return Ok(outcome);
                            }
                            gate.cv.wait(&mut state);
                        }
                    },
                );
                match result {
                    Err(e) if matches!(*worker.state.lock(), GateState::Pending) => {
                        worker.set(GateState::Refused(Some(e)));
                    }
                    _ => worker.set(GateState::Done),
                }
            });
        if let Err(e) = spawned {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
                "CircuitBreaker '{}': cannot start the thread of a Redis-backed call: {e}",
                self.name
            )));
        }
        let waiting = Arc::clone(&inner);
        let refused = py.detach(move || {
            let mut state = waiting.state.lock();
            loop {
                match &mut *state {
                    GateState::Pending => waiting.cv.wait(&mut state),
                    GateState::Refused(e) => return e.take(),
                    _ => return None,
                }
            }
        });
        match refused {
            Some(e) => Err(self.fleet_refused(py, e)),
            None => Ok(FleetGate { inner }),
        }
    }

    /// `run` for a Redis-backed breaker: a plain call runs inside the
    /// blocking breaker's `execute` (the GIL released around the breaker's
    /// work, held while `func` runs); an `async def` call goes through a
    /// gate opened on the loop's default executor.
    fn run_fleet<'py>(
        slf: &Bound<'py, CircuitBreaker>,
        fleet: &Arc<stockade::blocking::CircuitBreaker>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let py = slf.py();
        if this.disposed.get() {
            return Err(disposed(py, "CircuitBreaker", &this.name));
        }
        static OFF_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        if crate::wrap::is_async_callable(func)? {
            return aio(py, &OFF_LOOP, "breaker_off_loop")?.call1((slf, func, args, kwargs));
        }
        type Ran = Result<(Py<PyAny>, bool), Box<(PyErr, Outcome, Option<PyErr>)>>;
        let (f, a, k) = (
            func.clone().unbind(),
            args.clone().unbind(),
            kwargs.map(|k| k.clone().unbind()),
        );
        let fleet = Arc::clone(fleet);
        let result = py.detach(move || {
            fleet.execute_classified(
                |r: &Ran| match r {
                    Ok((_, true)) => Outcome::Ignored,
                    Ok(_) => Outcome::Success,
                    Err(failed) => failed.1,
                },
                move || -> Ran {
                    Python::attach(|py| {
                        match call(f.bind(py), a.bind(py), k.as_ref().map(|k| k.bind(py))) {
                            // A coroutine from a plain function: it runs
                            // (and is judged) when awaited, below.
                            Ok(v) if is_awaitable(&v) => Ok((v.unbind(), true)),
                            Ok(v) => Ok((v.unbind(), false)),
                            Err(err) => {
                                let (outcome, raised) = this.outcome_of(err.value(py));
                                Err(Box::new((err, outcome, raised)))
                            }
                        }
                    })
                },
            )
        });
        match result {
            Ok((value, false)) => {
                this.successes.inc();
                Ok(value.into_bound(py))
            }
            Ok((awaitable, true)) => aio(py, &OFF_LOOP, "breaker_off_loop")?.call1((
                slf,
                awaitable,
                py.None(),
                py.None(),
            )),
            Err(stockade::blocking::Error::Inner(failed)) => {
                let (err, _, raised) = *failed;
                Err(raised.unwrap_or(err))
            }
            Err(e) => Err(this.fleet_refused(py, e)),
        }
    }

    pub(crate) fn run<'py>(
        slf: &Bound<'py, CircuitBreaker>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let py = slf.py();
        if let Some(fleet) = &this.fleet {
            return CircuitBreaker::run_fleet(slf, fleet, func, args, kwargs);
        }
        let token = this.admit(py)?;
        match call(func, args, kwargs) {
            Ok(value) => {
                if is_awaitable(&value) {
                    // The outcome is reported when the coroutine ends.
                    let finish = Finish::Breaker(slf.clone().unbind(), token);
                    return Ok(Bound::new(py, Guarded::new(value, finish)?)?.into_any());
                }
                this.report(py, token, Outcome::Success);
                Ok(value)
            }
            Err(err) => {
                let (outcome, raised) = this.outcome_of(err.value(py));
                this.report(py, token, outcome);
                Err(raised.unwrap_or(err))
            }
        }
    }

    /// The end of an `async def` call (`Guarded`): a return is a success,
    /// an exception the usual verdict, a close before the end ignored.
    pub(crate) fn finish(
        &self,
        py: Python<'_>,
        token: PermitToken,
        exc: Option<&Bound<'_, PyAny>>,
        closed: bool,
    ) {
        let (outcome, raised) = match exc {
            _ if closed => (Outcome::Ignored, None),
            None => (Outcome::Success, None),
            Some(e) => self.outcome_of(e),
        };
        self.report(py, token, outcome);
        // The coroutine's own exception goes on to the awaiting code; the
        // `exclude` check's cannot replace it here.
        if let Some(raised) = raised {
            raised.write_unraisable(py, None);
        }
    }

    fn exit(
        &self,
        py: Python<'_>,
        token: PermitToken,
        exc: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let (outcome, raised) = match exc {
            Some(e) if !e.is_none() => self.outcome_of(e),
            _ => (Outcome::Success, None),
        };
        self.report(py, token, outcome);
        raised.map_or(Ok(()), Err)
    }
}

/// Where a gate's call is: waiting for the breaker, admitted (the caller
/// runs it), refused, given its verdict, or reported.
enum GateState {
    Pending,
    Admitted,
    Refused(Option<stockade::blocking::Error>),
    Verdict(Outcome),
    Done,
}

struct GateInner {
    state: Mutex<GateState>,
    cv: Condvar,
}

/// One call of a Redis-backed breaker that is not one closure call (a
/// `with` block, an `async def` call): a thread of its own runs the
/// blocking breaker's `execute_classified`, whose closure marks the call
/// admitted and waits for [`finish`](FleetGate::finish)'s verdict, which
/// the breaker then reports. A gate dropped without a verdict reports
/// none (`Outcome::Ignored`), so its thread always ends.
#[pyclass(module = "stockade._stockade", frozen)]
pub(crate) struct FleetGate {
    inner: Arc<GateInner>,
}

impl GateInner {
    fn set(&self, state: GateState) {
        *self.state.lock() = state;
        self.cv.notify_all();
    }

    /// The verdict, once (later ones change nothing).
    fn verdict(&self, outcome: Outcome) {
        let mut state = self.state.lock();
        if matches!(*state, GateState::Admitted) {
            *state = GateState::Verdict(outcome);
            self.cv.notify_all();
        }
    }

    fn wait_done(&self) {
        let mut state = self.state.lock();
        while !matches!(*state, GateState::Done | GateState::Refused(_)) {
            self.cv.wait(&mut state);
        }
    }
}

impl Drop for FleetGate {
    fn drop(&mut self) {
        self.inner.verdict(Outcome::Ignored);
    }
}

#[pymethods]
impl FleetGate {
    /// Reports the call's outcome (`True` success, `False` failure, `None`
    /// none) and waits, with the GIL released, until the breaker has
    /// counted it (a round trip for a failure). Once only.
    fn finish(&self, py: Python<'_>, outcome: Option<bool>) {
        let outcome = match outcome {
            Some(true) => Outcome::Success,
            Some(false) => Outcome::Failure,
            None => Outcome::Ignored,
        };
        self.inner.verdict(outcome);
        let inner = Arc::clone(&self.inner);
        py.detach(move || inner.wait_done());
    }
}

fn core_config(py: Python<'_>, options: &BreakerOptions<'_, '_>) -> PyResult<BreakerConfig> {
    let mut c = BreakerConfig::DEFAULT;
    if let Some(v) = options.failure_threshold {
        c.failure_threshold = count_u32(v, "failure_threshold")?;
    }
    if let Some(v) = options.reset_timeout {
        c.reset_timeout = duration(v, "reset_timeout")?;
    }
    if let Some(v) = options.half_open_timeout {
        c.half_open_timeout = duration(v, "half_open_timeout")?;
    }
    if let Some(v) = options.monitor_interval {
        c.monitor_interval = duration(v, "monitor_interval")?;
    }
    if let Some(v) = options.half_open_max_probes {
        c.half_open_max_probes = count_u32(v, "half_open_max_probes")?;
    }
    if let Some(v) = options
        .half_open_successes_to_close
        .filter(|v| !v.is_none())
    {
        c.half_open_successes_to_close = Some(count_u32(v, "half_open_successes_to_close")?);
    }
    if let Some(v) = options.failure_rate_threshold.filter(|v| !v.is_none()) {
        let mut fr = FailureRateConfig::DEFAULT;
        fr.threshold_percent = count_u32(v, "failure_rate_threshold")?;
        if let Some(w) = options.failure_rate_window_size {
            fr.window_size = count_u32(w, "failure_rate_window_size")?;
        }
        match options.failure_rate_minimum_calls {
            Some(m) => fr.minimum_calls = count_u32(m, "failure_rate_minimum_calls")?,
            None => fr.minimum_calls = fr.minimum_calls.min(fr.window_size),
        }
        c.failure_rate = Some(fr);
    } else if options.failure_rate_window_size.is_some()
        || options.failure_rate_minimum_calls.is_some()
    {
        return Err(crate::errors::option_error(
            py,
            "failure_rate_threshold",
            "failure_rate_window_size and failure_rate_minimum_calls need failure_rate_threshold"
                .into(),
        ));
    }
    c.slow_call_threshold = opt_duration(options.slow_call_threshold, "slow_call_threshold")?;
    Ok(c)
}

struct BreakerOptions<'a, 'py> {
    failure_threshold: Option<&'a Bound<'py, PyAny>>,
    reset_timeout: Option<&'a Bound<'py, PyAny>>,
    half_open_timeout: Option<&'a Bound<'py, PyAny>>,
    monitor_interval: Option<&'a Bound<'py, PyAny>>,
    half_open_max_probes: Option<&'a Bound<'py, PyAny>>,
    half_open_successes_to_close: Option<&'a Bound<'py, PyAny>>,
    failure_rate_threshold: Option<&'a Bound<'py, PyAny>>,
    failure_rate_window_size: Option<&'a Bound<'py, PyAny>>,
    failure_rate_minimum_calls: Option<&'a Bound<'py, PyAny>>,
    slow_call_threshold: Option<&'a Bound<'py, PyAny>>,
}

fn exception_classes(
    py: Python<'_>,
    given: Option<&Bound<'_, PyAny>>,
) -> PyResult<(Option<Py<PyTuple>>, Py<PyTuple>)> {
    let Some(given) = given.filter(|g| !g.is_none()) else {
        return Ok((None, PyTuple::empty(py).unbind()));
    };
    let items: Vec<Bound<'_, PyAny>> = if given.is_instance_of::<PyType>() {
        vec![given.clone()]
    } else {
        crate::convert::items(
            given,
            "exclude",
            "an exception class or an iterable of them",
        )?
    };
    let base = py.get_type::<pyo3::exceptions::PyBaseException>();
    for item in &items {
        let ok = item
            .cast::<PyType>()
            .map(|t| t.is_subclass(&base))
            .unwrap_or(Ok(false))?;
        if !ok {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "exclude: each item must be an exception class, not {}",
                item.repr()?
            )));
        }
    }
    let tuple = PyTuple::new(py, &items)?.unbind();
    Ok(((!items.is_empty()).then(|| tuple.clone_ref(py)), tuple))
}

#[pymethods]
impl CircuitBreaker {
    #[new]
    #[pyo3(signature = (
        name, *, failure_threshold = None, reset_timeout = None, half_open_timeout = None,
        monitor_interval = None, half_open_max_probes = None, half_open_successes_to_close = None,
        failure_rate_threshold = None, failure_rate_window_size = None,
        failure_rate_minimum_calls = None, slow_call_threshold = None, exclude = None,
        shared = None, redis = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: String,
        failure_threshold: Option<&Bound<'_, PyAny>>,
        reset_timeout: Option<&Bound<'_, PyAny>>,
        half_open_timeout: Option<&Bound<'_, PyAny>>,
        monitor_interval: Option<&Bound<'_, PyAny>>,
        half_open_max_probes: Option<&Bound<'_, PyAny>>,
        half_open_successes_to_close: Option<&Bound<'_, PyAny>>,
        failure_rate_threshold: Option<&Bound<'_, PyAny>>,
        failure_rate_window_size: Option<&Bound<'_, PyAny>>,
        failure_rate_minimum_calls: Option<&Bound<'_, PyAny>>,
        slow_call_threshold: Option<&Bound<'_, PyAny>>,
        exclude: Option<&Bound<'_, PyAny>>,
        shared: Option<&Bound<'_, PyAny>>,
        redis: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<CircuitBreaker>> {
        let config = core_config(
            py,
            &BreakerOptions {
                failure_threshold,
                reset_timeout,
                half_open_timeout,
                monitor_interval,
                half_open_max_probes,
                half_open_successes_to_close,
                failure_rate_threshold,
                failure_rate_window_size,
                failure_rate_minimum_calls,
                slow_call_threshold,
            },
        )?;
        let (exclude, exclude_given) = exception_classes(py, exclude)?;
        let redis = crate::redis::options(py, redis, shared)?;
        let shared = crate::shared::options(shared)?;
        let (core, _) = Held::<Core>::open(py, &name, config, shared)?;
        let listeners = Arc::new(Listeners::default());
        let fleet = match redis {
            None => None,
            Some(options) => {
                // No round trip: Redis is contacted by the first call.
                let fleet = py
                    .detach(|| stockade::blocking::CircuitBreaker::redis(&name, config, &options))
                    .map_err(|e| open_error(py, e, "circuit breaker", &name))?;
                fleet.subscribe(forward_events(&listeners, KIND, &name, true));
                Some(fleet)
            }
        };
        let b = Py::new(
            py,
            CircuitBreaker {
                entered: ContextStack::new(py, &name)?,
                name,
                clock: core.clock(),
                core,
                fleet,
                exclude,
                exclude_given,
                listeners,
                calls: Counter::default(),
                successes: Counter::default(),
                disposed: DisposeFlag::default(),
                monitor: Monitor::default(),
            },
        )?;
        if let Err(e) = registry::register(KIND, &b.get().name, b.clone_ref(py).into_any()) {
            if let Some(fleet) = &b.get().fleet {
                fleet.dispose();
            }
            return Err(e);
        }
        Ok(b)
    }

    /// The breaker registered as `name`, or a new one with the default
    /// options (registered under that name).
    #[classmethod]
    fn get_breaker(cls: &Bound<'_, PyType>, name: &str) -> PyResult<Py<PyAny>> {
        if let Some(found) = registry::get(cls.py(), KIND, name) {
            return Ok(found);
        }
        Ok(cls.call1((name,))?.unbind())
    }

    /// Runs `func(*args, **kwargs)` if the circuit admits it, else raises
    /// `CircuitOpenError`. An exception from `func` counts as a failure
    /// (unless excluded) and propagates unchanged. With an `async def`
    /// function, returns an awaitable.
    #[pyo3(signature = (func, /, *args, **kwargs))]
    fn execute<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        CircuitBreaker::run(slf, func, args, kwargs)
    }

    /// `func` protected by this breaker (a decorator).
    fn wrap<'py>(slf: &Bound<'py, Self>, func: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        wrap(Target::Breaker(slf.clone().unbind()), func)
    }

    /// `@breaker` as a decorator: the same as `wrap`.
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        wrap(Target::Breaker(slf.clone().unbind()), func)
    }

    /// `with breaker:` — admits the block or raises `CircuitOpenError`; an
    /// exception leaving the block counts as a failure.
    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<Py<CircuitBreaker>> {
        let this = slf.get();
        let py = slf.py();
        if this.fleet.is_some() {
            let gate = Bound::new(py, this.open_gate(py)?)?;
            this.entered.push(py, gate.into_any())?;
            return Ok(slf.clone().unbind());
        }
        let token = this.admit(py)?;
        this.entered
            .push(py, Bound::new(py, BreakerToken { token })?.into_any())?;
        Ok(slf.clone().unbind())
    }

    #[pyo3(signature = (exc_type = None, exc = None, traceback = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = (exc_type, traceback);
        let token = self.entered.pop(py)?;
        if let Ok(gate) = token.cast::<FleetGate>() {
            let (outcome, raised) = match exc {
                Some(e) if !e.is_none() => self.outcome_of(e),
                _ => (Outcome::Success, None),
            };
            if outcome == Outcome::Success {
                self.successes.inc();
            }
            gate.get().finish(py, verdict_of(outcome));
            return raised.map_or(Ok(false), Err);
        }
        let token = token.cast::<BreakerToken>()?.get().token;
        self.exit(py, token, exc)?;
        Ok(false)
    }

    /// `async with breaker:` — as `with` (a breaker never waits).
    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        if slf.get().fleet.is_some() {
            static ENTER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            return aio(py, &ENTER, "breaker_enter_off_loop")?.call1((slf,));
        }
        let me = CircuitBreaker::__enter__(slf)?;
        static READY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        aio(py, &READY, "ready")?.call1((me,))
    }

    #[pyo3(signature = (exc_type = None, exc = None, traceback = None))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        exc_type: Option<&Bound<'py, PyAny>>,
        exc: Option<&Bound<'py, PyAny>>,
        traceback: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if self.fleet.is_some() {
            // Reporting is a round trip for a failure: on the executor.
            let gate = self.entered.pop(py)?;
            let (outcome, raised) = match exc {
                Some(e) if !e.is_none() => self.outcome_of(e),
                _ => (Outcome::Success, None),
            };
            if outcome == Outcome::Success {
                self.successes.inc();
            }
            if let Some(raised) = raised {
                gate.cast::<FleetGate>()?.get().inner.verdict(outcome);
                return Err(raised);
            }
            static FINISH: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            return aio(py, &FINISH, "gate_finish_off_loop")?.call1((gate, verdict_of(outcome)));
        }
        let suppress = self.__exit__(py, exc_type, exc, traceback)?;
        static READY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        aio(py, &READY, "ready")?.call1((suppress,))
    }

    /// `"closed"`, `"open"`, `"half_open"`, `"forced_open"` or
    /// `"disabled"`. An open breaker whose `reset_timeout` has passed says
    /// `"open"` until the next call moves it to half-open.
    /// The file of the region this breaker shares with other processes
    /// (`shared=`), or `None` for a breaker of this process alone.
    #[getter]
    fn shared_path(&self) -> Option<String> {
        self.core.path()
    }

    /// `True` for a breaker shared through Redis (`redis=`).
    #[getter]
    fn is_redis(&self) -> bool {
        self.fleet.is_some()
    }

    #[getter]
    fn state(&self) -> &'static str {
        match &self.fleet {
            Some(fleet) => fleet.state().as_str(),
            None => self.core.state().as_str(),
        }
    }

    /// Opens the circuit now (half-open after `reset_timeout`).
    fn trip(&self, py: Python<'_>) -> PyResult<()> {
        if self.fleet.is_some() {
            return self.fleet_manual(py, |f| f.trip());
        }
        let transition = self.core.trip(&self.clock);
        self.changed(py, Some(transition));
        Ok(())
    }

    /// Closes the circuit, clearing its counters (also ends forced-open
    /// and disabled).
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        if self.fleet.is_some() {
            return self.fleet_manual(py, |f| f.reset());
        }
        let transition = self.core.reset(&self.clock);
        self.changed(py, Some(transition));
        Ok(())
    }

    /// Opens the circuit until `reset()`.
    fn force_open(&self, py: Python<'_>) -> PyResult<()> {
        if self.fleet.is_some() {
            return self.fleet_manual(py, |f| f.force_open());
        }
        let transition = self.core.force_open(&self.clock);
        self.changed(py, Some(transition));
        Ok(())
    }

    /// Admits every call and records nothing until `reset()`.
    fn disable(&self, py: Python<'_>) -> PyResult<()> {
        if self.fleet.is_some() {
            return self.fleet_manual(py, |f| f.disable());
        }
        let transition = self.core.disable(&self.clock);
        self.changed(py, Some(transition));
        Ok(())
    }

    // The protocol of `stockade._aio.breaker_off_loop`.

    /// Opens a gate (waiting with the GIL released): what `stockade._aio`
    /// runs on the loop's default executor.
    fn _open_gate(&self, py: Python<'_>) -> PyResult<FleetGate> {
        self.open_gate(py)
    }

    /// The verdict on an exception, as `finish` takes it (`False` a
    /// failure, `None` none); raises the `exclude` check's own error.
    fn _verdict_of(&self, exc: &Bound<'_, PyAny>) -> PyResult<Option<bool>> {
        let (outcome, raised) = self.outcome_of(exc);
        if let Some(raised) = raised {
            return Err(raised);
        }
        Ok(verdict_of(outcome))
    }

    /// Counts a success of a gate's call.
    fn _succeeded(&self) {
        self.successes.inc();
    }

    /// `async with`: the gate the block holds until `__aexit__`.
    fn _enter_gate(&self, py: Python<'_>, gate: &Bound<'_, FleetGate>) -> PyResult<()> {
        self.entered.push(py, gate.clone().into_any())
    }

    /// A snapshot: `state`, `calls`, `successes`, `failures`,
    /// `rejections`, `consecutive_failures`, `probes_in_flight`,
    /// `probe_successes`, `slow_calls`, `transitions`, and with a
    /// failure-rate rule `window_calls`, `window_failures`.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        if let Some(fleet) = &self.fleet {
            let m = fleet.metrics();
            let d = PyDict::new(py);
            d.set_item("name", &self.name)?;
            d.set_item("state", fleet.state().as_str())?;
            d.set_item("calls", m.calls)?;
            d.set_item("successes", m.successes)?;
            d.set_item("failures", m.failures)?;
            d.set_item("rejections", m.rejections)?;
            d.set_item("fallback_decisions", m.fallback_decisions)?;
            return Ok(d);
        }
        let m = self.core.metrics(&self.clock);
        let d = PyDict::new(py);
        d.set_item("name", &self.name)?;
        d.set_item("state", m.state.as_str())?;
        d.set_item("calls", self.calls.get())?;
        d.set_item("successes", self.successes.get())?;
        d.set_item("failures", m.failures)?;
        d.set_item("rejections", m.rejections)?;
        d.set_item("consecutive_failures", m.consecutive_failures)?;
        d.set_item("probes_in_flight", m.probes_in_flight)?;
        d.set_item("probe_successes", m.probe_successes)?;
        d.set_item("slow_calls", m.slow_calls)?;
        d.set_item("transitions", m.transitions)?;
        if let Some(w) = m.window {
            d.set_item("window_calls", w.calls)?;
            d.set_item("window_failures", w.failures)?;
        }
        Ok(d)
    }

    #[getter]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
    #[getter]
    fn failure_threshold(&self) -> u32 {
        self.core.config().failure_threshold
    }
    #[getter]
    fn reset_timeout(&self) -> f64 {
        secs(self.core.config().reset_timeout)
    }
    #[getter]
    fn half_open_timeout(&self) -> f64 {
        secs(self.core.config().half_open_timeout)
    }
    #[getter]
    fn monitor_interval(&self) -> f64 {
        secs(self.core.config().monitor_interval)
    }
    #[getter]
    fn half_open_max_probes(&self) -> u32 {
        self.core.config().half_open_max_probes
    }
    #[getter]
    fn half_open_successes_to_close(&self) -> Option<u32> {
        self.core.config().half_open_successes_to_close
    }
    #[getter]
    fn failure_rate_threshold(&self) -> Option<u32> {
        self.core.config().failure_rate.map(|f| f.threshold_percent)
    }
    #[getter]
    fn failure_rate_window_size(&self) -> Option<u32> {
        self.core.config().failure_rate.map(|f| f.window_size)
    }
    #[getter]
    fn failure_rate_minimum_calls(&self) -> Option<u32> {
        self.core.config().failure_rate.map(|f| f.minimum_calls)
    }
    #[getter]
    fn slow_call_threshold(&self) -> Option<f64> {
        self.core.config().slow_call_threshold.map(secs)
    }
    #[getter]
    fn exclude(&self, py: Python<'_>) -> Py<PyTuple> {
        self.exclude_given.clone_ref(py)
    }

    /// Calls `callback(event)` on state changes and rejections (and on
    /// `dispose`; with `redis=` also `"store_unavailable"` and
    /// `"store_recovered"`), and with `kind="monitor"` every `monitor_interval` from
    /// a monitor thread while anyone listens; returns `callback`.
    fn add_listener(
        slf: &Bound<'_, Self>,
        #[pyo3(from_py_with = crate::events::listener)] callback: Py<PyAny>,
    ) -> PyResult<Py<PyAny>> {
        slf.get().listeners.add(callback.clone_ref(slf.py()));
        Monitor::update(slf)?;
        Ok(callback)
    }

    /// Removes a listener; `True` if it was there. Removing the last one
    /// stops the monitor thread.
    fn remove_listener(slf: &Bound<'_, Self>, callback: &Bound<'_, PyAny>) -> PyResult<bool> {
        let removed = slf.get().listeners.remove(callback)?;
        Monitor::update(slf)?;
        Ok(removed)
    }

    /// `True` while a monitor thread of this breaker is alive (for tests).
    #[getter]
    fn _monitor_running(&self) -> bool {
        self.monitor.running()
    }

    /// Waits, at most `timeout` seconds, until no monitor thread of this
    /// breaker is alive; `True` if none is (for tests).
    fn _wait_monitor_stopped(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = core::time::Duration::try_from_secs_f64(timeout)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        Ok(self.monitor.wait_stopped(py, timeout))
    }

    /// Refuses every later call with `DisposedError`, stops the monitor
    /// thread and unregisters the name.
    fn dispose(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        if this.disposed.set() {
            if let Some(fleet) = &this.fleet {
                fleet.dispose();
            }
            this.listeners.close(slf.py(), KIND, &this.name);
        }
        registry::unregister(KIND, &this.name, slf.as_any());
        Monitor::update(slf)
    }

    #[getter]
    fn disposed(&self) -> bool {
        self.disposed.get()
    }

    fn __repr__(&self) -> String {
        format!("CircuitBreaker({:?}, state={:?})", self.name, self.state())
    }
}

/// `finish`'s argument for an outcome.
fn verdict_of(outcome: Outcome) -> Option<bool> {
    match outcome {
        Outcome::Success => Some(true),
        Outcome::Failure => Some(false),
        _ => None,
    }
}

impl CircuitBreaker {
    /// A manual operation on the Redis-backed breaker (a round trip: the
    /// GIL released); its `"state_changed"` event comes from the blocking
    /// layer.
    fn fleet_manual(
        &self,
        py: Python<'_>,
        op: impl FnOnce(
            &stockade::blocking::CircuitBreaker,
        ) -> Result<BreakerState, stockade::blocking::Error>
        + Send,
    ) -> PyResult<()> {
        let Some(fleet) = &self.fleet else {
            return Ok(());
        };
        let fleet = Arc::clone(fleet);
        py.detach(move || op(&fleet))
            .map(drop)
            .map_err(|e| other_error(py, e, "CircuitBreaker", &self.name))
    }
}
