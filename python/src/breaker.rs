//! `stockade.CircuitBreaker`: the core's lock-free breaker, shared by
//! threads and event loops. It never waits, so threads and asyncio use the
//! same path: take a token, call, report the outcome.
//!
//! With `redis=`, the blocking layer's Redis-backed breaker decides
//! instead (`blocking::CircuitBreaker::redis`), through its permit API:
//! every call (plain, `with`, `async with`, `async def`) takes a permit
//! with `try_acquire` and holds it as a [`FleetCall`] until its verdict,
//! in the thread (or coroutine) that runs it; no thread is started per
//! call. Admitting on a closed breaker and reporting a success make no
//! round trip and run where the call is; a probe request (admitting an
//! open breaker whose wait is over) and a failure's or probe's report are
//! a round trip (bounded by `command_timeout`): threads make it with the
//! GIL released, coroutines on the loop's default executor, never on the
//! loop's thread.

use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use stockade::blocking::{BreakerGuard, BreakerGuardToken};
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

    /// Admits a call of the Redis-backed breaker without a round trip:
    /// `None` when admitting would need one (a probe request, or nothing
    /// heard from Redis yet), or raises its refusal.
    fn fleet_admit_now(
        &self,
        py: Python<'_>,
        fleet: &Arc<stockade::blocking::CircuitBreaker>,
    ) -> PyResult<Option<FleetCall>> {
        if self.disposed.get() {
            return Err(disposed(py, "CircuitBreaker", &self.name));
        }
        match fleet.try_acquire_without_round_trip() {
            None => Ok(None),
            Some(Ok(guard)) => Ok(Some(FleetCall::new(fleet, guard.into_token()))),
            Some(Err(e)) => Err(self.fleet_refused(py, e)),
        }
    }

    /// Admits a call of the Redis-backed breaker, the GIL released while
    /// a round trip is needed, or raises its refusal.
    fn fleet_admit(
        &self,
        py: Python<'_>,
        fleet: &Arc<stockade::blocking::CircuitBreaker>,
    ) -> PyResult<FleetCall> {
        if let Some(call) = self.fleet_admit_now(py, fleet)? {
            return Ok(call);
        }
        let asking = Arc::clone(fleet);
        match py.detach(move || asking.try_acquire().map(BreakerGuard::into_token)) {
            Ok(token) => Ok(FleetCall::new(fleet, token)),
            Err(e) => Err(self.fleet_refused(py, e)),
        }
    }

    /// The fleet's breaker, or a `RuntimeError` for a local one.
    fn fleet(&self) -> PyResult<&Arc<stockade::blocking::CircuitBreaker>> {
        self.fleet
            .as_ref()
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("not a Redis-backed breaker"))
    }

    /// `run` for a Redis-backed breaker: a plain call is admitted and
    /// reported here (the GIL released only for a round trip), `func` runs
    /// in between with the GIL held; an `async def` call is admitted and
    /// reported by `stockade._aio.breaker_off_loop` (round trips on the
    /// loop's default executor).
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
        // The closed path first: admitted from this process's cache, no
        // round trip, so nothing to take off an event loop. Only an
        // admission that must ask Redis looks at what `func` is: a
        // coroutine function then asks from the loop's executor.
        if let Some(admitted) = fleet.try_acquire_without_round_trip() {
            // Held as a plain token (no call object) unless the call turns
            // out to be a coroutine.
            let token = admitted
                .map_err(|e| this.fleet_refused(py, e))?
                .into_token();
            return match call(func, args, kwargs) {
                Ok(v) if is_awaitable(&v) => aio(py, &OFF_LOOP, "breaker_off_loop")?.call1((
                    slf,
                    v,
                    py.None(),
                    py.None(),
                    Bound::new(py, FleetCall::new(fleet, token))?,
                )),
                Ok(v) => {
                    this.successes.inc();
                    report_token(py, fleet, token, Outcome::Success);
                    Ok(v)
                }
                Err(err) => {
                    let (outcome, raised) = this.outcome_of(err.value(py));
                    report_token(py, fleet, token, outcome);
                    Err(raised.unwrap_or(err))
                }
            };
        }
        let admitted = {
            if crate::wrap::is_async_callable(func)? {
                return aio(py, &OFF_LOOP, "breaker_off_loop")?.call1((slf, func, args, kwargs));
            }
            this.fleet_admit(py, fleet)?
        };
        match call(func, args, kwargs) {
            // A coroutine from a plain function: it runs (and is judged)
            // when awaited, holding this admission.
            Ok(v) if is_awaitable(&v) => aio(py, &OFF_LOOP, "breaker_off_loop")?.call1((
                slf,
                v,
                py.None(),
                py.None(),
                Bound::new(py, admitted)?,
            )),
            Ok(v) => {
                this.successes.inc();
                admitted.report(py, Outcome::Success);
                Ok(v)
            }
            Err(err) => {
                let (outcome, raised) = this.outcome_of(err.value(py));
                admitted.report(py, outcome);
                Err(raised.unwrap_or(err))
            }
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

/// One admitted call of a Redis-backed breaker, held while Python code
/// runs (a `with` block, an `async def` call): the blocking breaker's
/// permit as a [`BreakerGuardToken`], given its verdict once. Dropped
/// without one, the call is ignored (as a dropped `BreakerGuard`).
#[pyclass(module = "stockade._stockade", frozen)]
pub(crate) struct FleetCall {
    fleet: Arc<stockade::blocking::CircuitBreaker>,
    /// `None` once reported.
    token: Mutex<Option<BreakerGuardToken>>,
}

/// A Redis-backed breaker's verdict on a call held as a plain token, the
/// GIL released only if it needs a round trip.
fn report_token(
    py: Python<'_>,
    fleet: &Arc<stockade::blocking::CircuitBreaker>,
    token: BreakerGuardToken,
    outcome: Outcome,
) {
    if let Err(guard) = BreakerGuard::from_token(fleet, token).report_without_round_trip(outcome) {
        let token = guard.into_token();
        let fleet = Arc::clone(fleet);
        py.detach(move || BreakerGuard::from_token(&fleet, token).report(outcome));
    }
}

impl FleetCall {
    fn new(fleet: &Arc<stockade::blocking::CircuitBreaker>, token: BreakerGuardToken) -> Self {
        FleetCall {
            fleet: Arc::clone(fleet),
            token: Mutex::new(Some(token)),
        }
    }

    /// Gives the verdict if it needs no round trip; `true` once the call
    /// is reported (now or before), `false` if the verdict needs a round
    /// trip (nothing reported: use [`report`](Self::report) where it may
    /// block).
    fn report_now(&self, outcome: Outcome) -> bool {
        let mut held = self.token.lock();
        let Some(token) = held.take() else {
            return true;
        };
        match BreakerGuard::from_token(&self.fleet, token).report_without_round_trip(outcome) {
            Ok(()) => true,
            Err(guard) => {
                *held = Some(guard.into_token());
                false
            }
        }
    }

    /// Gives the verdict (once; later ones change nothing), the GIL
    /// released if it needs a round trip.
    fn report(&self, py: Python<'_>, outcome: Outcome) {
        if self.report_now(outcome) {
            return;
        }
        let Some(token) = self.token.lock().take() else {
            return;
        };
        let fleet = Arc::clone(&self.fleet);
        py.detach(move || BreakerGuard::from_token(&fleet, token).report(outcome));
    }
}

impl Drop for FleetCall {
    fn drop(&mut self) {
        if self.token.get_mut().is_some() {
            Python::attach(|py| self.report(py, Outcome::Ignored));
        }
    }
}

/// The outcome `verdict_of` describes.
fn outcome_of_verdict(verdict: Option<bool>) -> Outcome {
    match verdict {
        Some(true) => Outcome::Success,
        Some(false) => Outcome::Failure,
        None => Outcome::Ignored,
    }
}

#[pymethods]
impl FleetCall {
    /// Reports the call's outcome (`True` success, `False` failure, `None`
    /// none), waiting with the GIL released while a round trip is needed
    /// (what `stockade._aio` runs on the loop's default executor). Once:
    /// later calls change nothing.
    fn finish(&self, py: Python<'_>, verdict: Option<bool>) {
        self.report(py, outcome_of_verdict(verdict));
    }

    /// Reports the outcome if that needs no round trip: `True` once
    /// reported, `False` if `finish` must do it (off the event loop).
    fn _finish_now(&self, verdict: Option<bool>) -> bool {
        self.report_now(outcome_of_verdict(verdict))
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
        if let Some(fleet) = &this.fleet {
            let admitted = Bound::new(py, this.fleet_admit(py, fleet)?)?;
            this.entered.push(py, admitted.into_any())?;
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
        if let Ok(admitted) = token.cast::<FleetCall>() {
            let (outcome, raised) = match exc {
                Some(e) if !e.is_none() => self.outcome_of(e),
                _ => (Outcome::Success, None),
            };
            if outcome == Outcome::Success {
                self.successes.inc();
            }
            admitted.get().report(py, outcome);
            return raised.map_or(Ok(false), Err);
        }
        let token = token.cast::<BreakerToken>()?.get().token;
        self.exit(py, token, exc)?;
        Ok(false)
    }

    /// `async with breaker:` — as `with` (a breaker never waits).
    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if let Some(fleet) = &this.fleet {
            // Closed: admitted here, no round trip; a probe request is
            // made on the loop's default executor.
            let Some(admitted) = this.fleet_admit_now(py, fleet)? else {
                static ENTER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
                return aio(py, &ENTER, "breaker_enter_off_loop")?.call1((slf,));
            };
            this.entered
                .push(py, Bound::new(py, admitted)?.into_any())?;
            static ENTERED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            return aio(py, &ENTERED, "ready")?.call1((slf,));
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
            // Reported here unless that is a round trip (a failure, a
            // probe's verdict): then on the loop's default executor.
            let admitted = self.entered.pop(py)?;
            let (outcome, raised) = match exc {
                Some(e) if !e.is_none() => self.outcome_of(e),
                _ => (Outcome::Success, None),
            };
            if outcome == Outcome::Success {
                self.successes.inc();
            }
            let call = admitted.cast::<FleetCall>()?;
            if !call.get().report_now(outcome) {
                static FINISH: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
                let raised = raised.map(|e| e.into_value(py));
                return aio(py, &FINISH, "breaker_finish_off_loop")?.call1((
                    call,
                    verdict_of(outcome),
                    raised,
                ));
            }
            if let Some(raised) = raised {
                return Err(raised);
            }
            static READY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            return aio(py, &READY, "ready")?.call1((false,));
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

    /// Admits a call of the Redis-backed breaker without a round trip;
    /// `None` when admitting needs one (then `_admit_blocking`, off the
    /// loop). Raises its refusal.
    fn _admit_now(&self, py: Python<'_>) -> PyResult<Option<FleetCall>> {
        self.fleet_admit_now(py, self.fleet()?)
    }

    /// Admits a call of the Redis-backed breaker, waiting for a round trip
    /// with the GIL released: what `stockade._aio` runs on the loop's
    /// default executor.
    fn _admit_blocking(&self, py: Python<'_>) -> PyResult<FleetCall> {
        self.fleet_admit(py, self.fleet()?)
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

    /// Counts a success of a Redis-backed call.
    fn _succeeded(&self) {
        self.successes.inc();
    }

    /// `async with`: the admitted call the block holds until
    /// `__aexit__`.
    fn _enter_call(&self, py: Python<'_>, call: &Bound<'_, FleetCall>) -> PyResult<()> {
        self.entered.push(py, call.clone().into_any())
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
