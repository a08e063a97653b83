//! `stockade.machines`: the core's state machines with explicit time.
//!
//! Each class holds one core machine (`stockade::breaker::CircuitBreaker`,
//! `limiter::RateLimiter`, `bulkhead::Bulkhead`, `budget::RetryBudget`,
//! `backoff::Backoff`) and passes it a clock that reads the `now` the
//! caller gave: nothing reads a real clock, sleeps, blocks, registers a
//! name or emits an event, so the same calls with the same times give the
//! same decisions (deterministic simulations and tests that never sleep;
//! `tests/scenarios` replays the same files here, in Rust and in C).
//!
//! Units: a time passed to or returned by a method (`now`, `elapsed`,
//! `max_wait`, `retry_after`, `wait`, `ready_at`, a delay) is an `int` of
//! nanoseconds, exact like the core; constructor options are seconds or
//! `timedelta` as everywhere in the package. A decision is a `Decision`,
//! never an exception; misuse of a token raises `TokenError` (a
//! `ValueError`, defined in `stockade/machines.py`).

use core::time::Duration;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};
use stockade::backoff::{Backoff as CoreBackoff, BackoffConfig, BackoffSchedule, Jitter};
use stockade::breaker::{
    BreakerConfig, BreakerToken as CoreBreakerToken, CircuitBreaker as CoreBreaker,
    FailureRateConfig, Outcome, TokenError as CoreTokenError, Transition as CoreTransition,
};
use stockade::budget::{RetryBudget as CoreBudget, RetryBudgetConfig};
use stockade::bulkhead::{
    Bulkhead as CoreBulkhead, BulkheadConfig, BulkheadToken as CoreBulkheadToken,
};
use stockade::clock::{Clock, Timestamp};
use stockade::limiter::{
    CancelError, Mode, RateLimitError, RateLimiter as CoreLimiter, RateLimiterConfig,
    ReservationToken,
};

use crate::convert::{count_u32, count_u64, duration, factor, opt_duration};
use crate::errors::{config_error, option_error};

const MODULE: &str = "stockade.machines";

/// The clock of one call: always `now`.
struct At(Timestamp);

impl Clock for At {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// `now` (or another instant or duration argument) as nanoseconds.
fn nanos(value: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    count_u64(value, what)
}

fn at(value: &Bound<'_, PyAny>) -> PyResult<At> {
    Ok(At(Timestamp::from_nanos(nanos(value, "now")?)))
}

/// Nanoseconds of a duration, saturating at `u64::MAX`.
fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `stockade.machines.TokenError(message, reason)`.
fn token_error(py: Python<'_>, reason: &'static str, message: String) -> PyErr {
    static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    match CLASS
        .import(py, MODULE, "TokenError")
        .and_then(|cls| cls.call1((message, reason)))
    {
        Ok(instance) => PyErr::from_value(instance),
        Err(e) => e,
    }
}

/// A state change of a `CircuitBreaker`, returned to the one call that
/// made it.
#[pyclass(module = "stockade.machines", name = "Transition", frozen, eq)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    inner: CoreTransition,
}

#[pymethods]
impl Transition {
    /// The state before (`"closed"`, `"open"`, `"half_open"`,
    /// `"forced_open"`, `"disabled"`).
    #[getter(from_state)]
    fn before(&self) -> &'static str {
        self.inner.from.as_str()
    }

    /// The state after.
    #[getter(to_state)]
    fn after(&self) -> &'static str {
        self.inner.to.as_str()
    }

    /// The generation the transition began (one more per transition).
    #[getter]
    fn generation(&self) -> u32 {
        self.inner.generation
    }

    fn __repr__(&self) -> String {
        format!(
            "Transition(from_state='{}', to_state='{}', generation={})",
            self.inner.from.as_str(),
            self.inner.to.as_str(),
            self.inner.generation
        )
    }
}

fn transition(py: Python<'_>, t: Option<CoreTransition>) -> PyResult<Option<Py<Transition>>> {
    t.map(|inner| Py::new(py, Transition { inner })).transpose()
}

/// What a machine decided: admitted or not, why not, and when to retry.
#[pyclass(module = "stockade.machines", name = "Decision", frozen)]
pub(crate) struct Decision {
    admitted: bool,
    reason: Option<&'static str>,
    retry_after: Option<u64>,
    transition: Option<Py<Transition>>,
    token: Option<Py<PyAny>>,
}

impl Decision {
    fn grant(
        py: Python<'_>,
        token: Option<Py<PyAny>>,
        t: Option<CoreTransition>,
    ) -> PyResult<Decision> {
        Ok(Decision {
            admitted: true,
            reason: None,
            retry_after: None,
            transition: transition(py, t)?,
            token,
        })
    }

    /// Admitted, with nothing to hand back.
    fn yes() -> Decision {
        Decision {
            admitted: true,
            reason: None,
            retry_after: None,
            transition: None,
            token: None,
        }
    }

    fn refused(reason: &'static str, retry_after: Option<Duration>) -> Decision {
        Decision {
            admitted: false,
            reason: Some(reason),
            retry_after: retry_after.filter(|d| *d != Duration::MAX).map(ns),
            transition: None,
            token: None,
        }
    }
}

#[pymethods]
impl Decision {
    /// Whether the call may go ahead.
    #[getter]
    fn admitted(&self) -> bool {
        self.admitted
    }

    /// Why not, or `None` when admitted.
    #[getter]
    fn reason(&self) -> Option<&'static str> {
        self.reason
    }

    /// Nanoseconds until the same call may succeed, or `None` (admitted,
    /// or no time is meaningful).
    #[getter]
    fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// The breaker transition this admission performed, or `None`.
    #[getter]
    fn transition(&self, py: Python<'_>) -> Option<Py<Transition>> {
        self.transition.as_ref().map(|t| t.clone_ref(py))
    }

    /// What to report, release or cancel later: a `BreakerToken`, a
    /// `Reservation` or a `BulkheadToken`; `None` when refused (and for a
    /// rate limiter's `try_acquire` and a retry budget).
    #[getter]
    fn token(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.token.as_ref().map(|t| t.clone_ref(py))
    }

    fn __bool__(&self) -> bool {
        self.admitted
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        if self.admitted {
            let mut s = "Decision(admitted=True".to_owned();
            if let Some(t) = &self.transition {
                s += &format!(", transition={}", t.bind(py).repr()?);
            }
            if let Some(t) = &self.token {
                s += &format!(", token={}", t.bind(py).repr()?);
            }
            Ok(s + ")")
        } else {
            let retry = self
                .retry_after
                .map_or_else(|| "None".to_owned(), |n| n.to_string());
            Ok(format!(
                "Decision(admitted=False, reason='{}', retry_after={retry})",
                self.reason.unwrap_or("")
            ))
        }
    }
}

// -- circuit breaker ---------------------------------------------------------

/// An admitted breaker call: report it once with `CircuitBreaker.report`.
#[pyclass(module = "stockade.machines", name = "BreakerToken", frozen)]
pub(crate) struct BreakerToken {
    inner: CoreBreakerToken,
}

#[pymethods]
impl BreakerToken {
    /// The generation the call was admitted in.
    #[getter]
    fn generation(&self) -> u32 {
        self.inner.generation()
    }

    /// When the call was admitted (ns), recorded only with a
    /// `slow_call_threshold`.
    #[getter]
    fn started_at(&self) -> Option<u64> {
        self.inner.started_at().map(Timestamp::as_nanos)
    }

    fn __repr__(&self) -> String {
        format!("BreakerToken(generation={})", self.inner.generation())
    }
}

/// A circuit breaker driven by explicit time.
#[pyclass(module = "stockade.machines", name = "CircuitBreaker", frozen)]
pub(crate) struct CircuitBreaker {
    core: CoreBreaker,
}

#[pymethods]
impl CircuitBreaker {
    #[new]
    #[pyo3(signature = (
        *, failure_threshold = None, reset_timeout = None, half_open_timeout = None,
        half_open_max_probes = None, half_open_successes_to_close = None,
        failure_rate_threshold = None, failure_rate_window_size = None,
        failure_rate_minimum_calls = None, slow_call_threshold = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        failure_threshold: Option<&Bound<'_, PyAny>>,
        reset_timeout: Option<&Bound<'_, PyAny>>,
        half_open_timeout: Option<&Bound<'_, PyAny>>,
        half_open_max_probes: Option<&Bound<'_, PyAny>>,
        half_open_successes_to_close: Option<&Bound<'_, PyAny>>,
        failure_rate_threshold: Option<&Bound<'_, PyAny>>,
        failure_rate_window_size: Option<&Bound<'_, PyAny>>,
        failure_rate_minimum_calls: Option<&Bound<'_, PyAny>>,
        slow_call_threshold: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<CircuitBreaker> {
        let mut c = BreakerConfig::DEFAULT;
        if let Some(v) = failure_threshold {
            c.failure_threshold = count_u32(v, "failure_threshold")?;
        }
        if let Some(v) = reset_timeout {
            c.reset_timeout = duration(v, "reset_timeout")?;
        }
        if let Some(v) = half_open_timeout {
            c.half_open_timeout = duration(v, "half_open_timeout")?;
        }
        if let Some(v) = half_open_max_probes {
            c.half_open_max_probes = count_u32(v, "half_open_max_probes")?;
        }
        if let Some(v) = half_open_successes_to_close.filter(|v| !v.is_none()) {
            c.half_open_successes_to_close = Some(count_u32(v, "half_open_successes_to_close")?);
        }
        if let Some(v) = failure_rate_threshold.filter(|v| !v.is_none()) {
            let mut fr = FailureRateConfig::DEFAULT;
            fr.threshold_percent = count_u32(v, "failure_rate_threshold")?;
            if let Some(w) = failure_rate_window_size {
                fr.window_size = count_u32(w, "failure_rate_window_size")?;
            }
            match failure_rate_minimum_calls {
                Some(m) => fr.minimum_calls = count_u32(m, "failure_rate_minimum_calls")?,
                None => fr.minimum_calls = fr.minimum_calls.min(fr.window_size),
            }
            c.failure_rate = Some(fr);
        } else if failure_rate_window_size.is_some() || failure_rate_minimum_calls.is_some() {
            return Err(option_error(
                py,
                "failure_rate_threshold",
                "failure_rate_window_size and failure_rate_minimum_calls need failure_rate_threshold"
                    .into(),
            ));
        }
        c.slow_call_threshold = opt_duration(slow_call_threshold, "slow_call_threshold")?;
        let core = CoreBreaker::new(c).map_err(|e| config_error(py, e))?;
        Ok(CircuitBreaker { core })
    }

    /// The state (`"closed"`, `"open"`, `"half_open"`, `"forced_open"`,
    /// `"disabled"`); an open breaker whose `reset_timeout` has passed
    /// reads `"open"` until the next `try_acquire` moves it.
    #[getter]
    fn state(&self) -> &'static str {
        self.core.state().as_str()
    }

    /// Asks to make a call at `now`. Admitted: `token` to report, and the
    /// `transition` this admission made (open to half-open, or the end of
    /// a half-open round). Refused: `reason` is the state that refused
    /// (`"open"`, `"half_open"` with every probe taken, `"forced_open"`)
    /// and `retry_after` the nanoseconds until a call may be admitted
    /// (`None` when forced open).
    fn try_acquire(&self, py: Python<'_>, now: &Bound<'_, PyAny>) -> PyResult<Decision> {
        let clock = at(now)?;
        match self.core.try_acquire(&clock) {
            Ok(permit) => {
                let t = permit.transition();
                let token = Py::new(
                    py,
                    BreakerToken {
                        inner: permit.into_token(),
                    },
                )?;
                Decision::grant(py, Some(token.into_any()), t)
            }
            Err(r) => Ok(Decision::refused(r.state().as_str(), r.retry_after())),
        }
    }

    /// Reports the outcome (`"success"`, `"failure"` or `"ignored"`) of the
    /// call `token` was admitted for, at `now`; returns the transition the
    /// verdict made, or `None`. A token is plain data: the rules for a
    /// token reported twice are the core's (`CircuitBreaker::report`).
    ///
    /// Raises `TokenError` with `reason` `"stale"` (the breaker changed
    /// state since the call was admitted: nothing counted) or
    /// `"already_reported"` (a half-open probe's token reported again
    /// with no probe in flight).
    fn report(
        &self,
        py: Python<'_>,
        token: &Bound<'_, BreakerToken>,
        outcome: &str,
        now: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<Transition>>> {
        let outcome = match outcome {
            "success" => Outcome::Success,
            "failure" => Outcome::Failure,
            "ignored" => Outcome::Ignored,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "outcome must be \"success\", \"failure\" or \"ignored\", not {other:?}"
                )));
            }
        };
        let clock = at(now)?;
        match self.core.report(token.get().inner, outcome, &clock) {
            Ok(t) => transition(py, t),
            Err(e @ CoreTokenError::Stale) => Err(token_error(py, "stale", e.to_string())),
            Err(e @ CoreTokenError::AlreadyReported) => {
                Err(token_error(py, "already_reported", e.to_string()))
            }
        }
    }

    /// A snapshot at `now`, as a dict: `state`, `generation`,
    /// `consecutive_failures`, `probes_in_flight`, `probe_successes`,
    /// `window_calls` and `window_failures` (`None` without a failure-rate
    /// rule), and the lifetime totals `failures` (slow calls included),
    /// `slow_calls`, `rejections`, `transitions`, `state_changes`,
    /// `stale_verdicts` (each wrapping at 2**32), and `last_transition`
    /// (ns: when the current generation began). Fields are read one after
    /// another, not atomically together.
    fn metrics<'py>(
        &self,
        py: Python<'py>,
        now: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let m = self.core.metrics(&at(now)?);
        let d = PyDict::new(py);
        d.set_item("state", m.state.as_str())?;
        d.set_item("generation", m.generation)?;
        d.set_item("consecutive_failures", m.consecutive_failures)?;
        d.set_item("probes_in_flight", m.probes_in_flight)?;
        d.set_item("probe_successes", m.probe_successes)?;
        d.set_item("window_calls", m.window.map(|w| w.calls))?;
        d.set_item("window_failures", m.window.map(|w| w.failures))?;
        d.set_item("failures", m.failures)?;
        d.set_item("slow_calls", m.slow_calls)?;
        d.set_item("rejections", m.rejections)?;
        d.set_item("transitions", m.transitions)?;
        d.set_item("state_changes", m.state_changes)?;
        d.set_item("stale_verdicts", m.stale_verdicts)?;
        d.set_item("last_transition", m.last_transition.as_nanos())?;
        Ok(d)
    }

    /// Opens the circuit at `now` (half-open after `reset_timeout`).
    fn trip(&self, py: Python<'_>, now: &Bound<'_, PyAny>) -> PyResult<Py<Transition>> {
        let inner = self.core.trip(&at(now)?);
        Py::new(py, Transition { inner })
    }

    /// Closes the circuit at `now`, clearing its counts.
    fn reset(&self, py: Python<'_>, now: &Bound<'_, PyAny>) -> PyResult<Py<Transition>> {
        let inner = self.core.reset(&at(now)?);
        Py::new(py, Transition { inner })
    }

    /// Holds the circuit open until `reset`.
    fn force_open(&self, py: Python<'_>, now: &Bound<'_, PyAny>) -> PyResult<Py<Transition>> {
        let inner = self.core.force_open(&at(now)?);
        Py::new(py, Transition { inner })
    }

    /// Admits every call and records nothing until `reset`.
    fn disable(&self, py: Python<'_>, now: &Bound<'_, PyAny>) -> PyResult<Py<Transition>> {
        let inner = self.core.disable(&at(now)?);
        Py::new(py, Transition { inner })
    }
}

// -- rate limiter ------------------------------------------------------------

/// Permits booked by `RateLimiter.reserve`: wait until `ready_at`, then use
/// them, or give them back with `RateLimiter.cancel`.
#[pyclass(module = "stockade.machines", name = "Reservation", frozen)]
pub(crate) struct Reservation {
    inner: ReservationToken,
}

#[pymethods]
impl Reservation {
    /// Permits booked.
    #[getter]
    fn permits(&self) -> u32 {
        self.inner.permits()
    }

    /// Nanoseconds to wait from the booking (0: use them now).
    #[getter]
    fn wait(&self) -> u64 {
        ns(self.inner.wait())
    }

    /// When the permits may be used (ns, on the caller's clock).
    #[getter]
    fn ready_at(&self) -> u64 {
        self.inner.ready_at().as_nanos()
    }

    fn __repr__(&self) -> String {
        format!(
            "Reservation(permits={}, wait={}, ready_at={})",
            self.inner.permits(),
            ns(self.inner.wait()),
            self.inner.ready_at().as_nanos()
        )
    }
}

fn limiter_refusal(e: RateLimitError) -> Decision {
    let reason = match e {
        RateLimitError::RateLimited { .. } => "rate_limited",
        RateLimitError::QueueFull { .. } => "queue_full",
        RateLimitError::WaitTooLong { .. } => "wait_too_long",
        _ => "exceeds_capacity",
    };
    Decision::refused(reason, e.retry_after())
}

/// A GCRA rate limiter driven by explicit time.
#[pyclass(module = "stockade.machines", name = "RateLimiter", frozen)]
pub(crate) struct RateLimiter {
    core: CoreLimiter,
}

#[pymethods]
impl RateLimiter {
    #[new]
    #[pyo3(signature = (
        *, requests_per_period = None, period = None, burst = None, max_queue_size = None,
        queue_timeout = None, mode = "bursty",
    ))]
    fn new(
        py: Python<'_>,
        requests_per_period: Option<&Bound<'_, PyAny>>,
        period: Option<&Bound<'_, PyAny>>,
        burst: Option<&Bound<'_, PyAny>>,
        max_queue_size: Option<&Bound<'_, PyAny>>,
        queue_timeout: Option<&Bound<'_, PyAny>>,
        mode: &str,
    ) -> PyResult<RateLimiter> {
        let mut c = RateLimiterConfig::DEFAULT;
        if let Some(v) = requests_per_period {
            c.requests_per_period = count_u32(v, "requests_per_period")?;
        }
        if let Some(v) = period {
            c.period = duration(v, "period")?;
        }
        if let Some(v) = burst.filter(|v| !v.is_none()) {
            c.burst = Some(count_u32(v, "burst")?);
        }
        if let Some(v) = max_queue_size {
            c.max_queue_size = count_u32(v, "max_queue_size")?;
        }
        if let Some(v) = queue_timeout {
            c.queue_timeout = duration(v, "queue_timeout")?;
        }
        c.mode = match mode {
            "bursty" => Mode::Bursty,
            "strict" => Mode::Strict,
            _ => {
                return Err(option_error(
                    py,
                    "mode",
                    format!("invalid mode = {mode:?}: must be \"bursty\" or \"strict\""),
                ));
            }
        };
        let core = CoreLimiter::new(c).map_err(|e| config_error(py, e))?;
        Ok(RateLimiter { core })
    }

    /// Takes `n` permits at `now`, all or nothing (`n = 0` always
    /// succeeds). Refused: `reason` `"rate_limited"` with the exact
    /// `retry_after`, or `"exceeds_capacity"` (more than the burst: never
    /// possible; `retry_after` is `None`).
    #[pyo3(signature = (now, n = None))]
    fn try_acquire(
        &self,
        now: &Bound<'_, PyAny>,
        n: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Decision> {
        let n = n.map_or(Ok(1), |n| count_u32(n, "n"))?;
        let clock = at(now)?;
        Ok(match self.core.try_acquire_n(n, &clock) {
            Ok(()) => Decision::yes(),
            Err(e) => limiter_refusal(e),
        })
    }

    /// Books `n` permits at the earliest free time if the wait is at most
    /// `max_wait` nanoseconds (and the queue timeout): `token` is the
    /// `Reservation`. Refused (nothing booked): `"queue_full"`,
    /// `"wait_too_long"` or `"exceeds_capacity"` (or `"rate_limited"` at
    /// the end of the 64-bit clock range), with `retry_after` when booking
    /// would succeed.
    #[pyo3(signature = (now, n = None, *, max_wait))]
    fn reserve(
        &self,
        py: Python<'_>,
        now: &Bound<'_, PyAny>,
        n: Option<&Bound<'_, PyAny>>,
        max_wait: &Bound<'_, PyAny>,
    ) -> PyResult<Decision> {
        let n = n.map_or(Ok(1), |n| count_u32(n, "n"))?;
        let max_wait = Duration::from_nanos(nanos(max_wait, "max_wait")?);
        let clock = at(now)?;
        match self.core.reserve(n, max_wait, &clock) {
            Ok(r) => {
                let token = Py::new(
                    py,
                    Reservation {
                        inner: r.into_token(),
                    },
                )?;
                Decision::grant(py, Some(token.into_any()), None)
            }
            Err(e) => Ok(limiter_refusal(e)),
        }
    }

    /// Gives a waiting reservation's permits back at `now`; returns how
    /// many. Only the latest booking, still waiting, can be cancelled: else
    /// `TokenError` with `reason` `"immediate"` (it never waited),
    /// `"ready"` (its time has come) or `"superseded"` (booked after, or
    /// cancelled already), and the permits stay booked.
    fn cancel(
        &self,
        py: Python<'_>,
        reservation: &Bound<'_, Reservation>,
        now: &Bound<'_, PyAny>,
    ) -> PyResult<u32> {
        let clock = at(now)?;
        self.core
            .cancel(reservation.get().inner, &clock)
            .map_err(|e| {
                let reason = match e {
                    CancelError::Immediate => "immediate",
                    CancelError::Ready => "ready",
                    CancelError::Superseded => "superseded",
                };
                token_error(py, reason, format!("reservation not cancelled: {e}"))
            })
    }

    /// Permits `try_acquire` could take at `now` (0 to the burst).
    fn available(&self, now: &Bound<'_, PyAny>) -> PyResult<u32> {
        Ok(self.core.available(&at(now)?))
    }

    /// Permits booked but not yet ready at `now`.
    fn queue_depth(&self, now: &Bound<'_, PyAny>) -> PyResult<u32> {
        Ok(self.core.queue_depth(&at(now)?))
    }
}

// -- bulkhead ----------------------------------------------------------------

/// A held bulkhead permit: release it once with `Bulkhead.release`.
#[pyclass(module = "stockade.machines", name = "BulkheadToken", frozen)]
pub(crate) struct BulkheadToken {
    inner: CoreBulkheadToken,
}

#[pymethods]
impl BulkheadToken {
    /// Permits in use right after the grant (this one included).
    #[getter]
    fn in_use(&self) -> u32 {
        self.inner.granted().in_use
    }

    fn __repr__(&self) -> String {
        format!("BulkheadToken(in_use={})", self.inner.granted().in_use)
    }
}

/// A bulkhead's counting machine: at most `max_concurrent` permits held.
/// It keeps no time and never queues (`try_acquire` only).
#[pyclass(module = "stockade.machines", name = "Bulkhead", frozen)]
pub(crate) struct Bulkhead {
    core: CoreBulkhead,
}

#[pymethods]
impl Bulkhead {
    #[new]
    #[pyo3(signature = (*, max_concurrent = None))]
    fn new(py: Python<'_>, max_concurrent: Option<&Bound<'_, PyAny>>) -> PyResult<Bulkhead> {
        let mut c = BulkheadConfig::DEFAULT;
        if let Some(v) = max_concurrent {
            c = c.with_max_concurrent(count_u32(v, "max_concurrent")?);
        }
        let core = CoreBulkhead::new(c).map_err(|e| config_error(py, e))?;
        Ok(Bulkhead { core })
    }

    /// Takes a permit if one is free; refused with `reason` `"full"`.
    fn try_acquire(&self, py: Python<'_>) -> PyResult<Decision> {
        match self.core.try_acquire() {
            Ok(permit) => {
                let token = Py::new(
                    py,
                    BulkheadToken {
                        inner: permit.into_token(),
                    },
                )?;
                Decision::grant(py, Some(token.into_any()), None)
            }
            Err(_) => Ok(Decision::refused("full", None)),
        }
    }

    /// Returns a permit. The machine keeps no per-permit state (the
    /// core's rule): with no permit in use it raises `TokenError` with
    /// `reason` `"not_held"` and changes nothing; a token released twice
    /// while other permits are held returns another holder's permit.
    fn release(&self, py: Python<'_>, token: &Bound<'_, BulkheadToken>) -> PyResult<()> {
        self.core
            .release(token.get().inner)
            .map(|_| ())
            .map_err(|e| token_error(py, "not_held", e.to_string()))
    }

    /// Permits held.
    #[getter]
    fn in_use(&self) -> u32 {
        self.core.in_use()
    }

    /// Permits free.
    #[getter]
    fn available(&self) -> u32 {
        self.core.available()
    }
}

// -- retry budget --------------------------------------------------------------

/// A retry budget (token bucket of retries) driven by explicit time.
#[pyclass(module = "stockade.machines", name = "RetryBudget", frozen)]
pub(crate) struct RetryBudget {
    core: CoreBudget,
}

#[pymethods]
impl RetryBudget {
    #[new]
    #[pyo3(signature = (*, ratio = None, min_retries_per_second = None, max_tokens = None))]
    fn new(
        py: Python<'_>,
        ratio: Option<&Bound<'_, PyAny>>,
        min_retries_per_second: Option<&Bound<'_, PyAny>>,
        max_tokens: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<RetryBudget> {
        let mut c = RetryBudgetConfig::DEFAULT;
        if let Some(v) = ratio {
            c = c.with_ratio(factor(v, "ratio")?);
        }
        if let Some(v) = min_retries_per_second {
            c = c.with_min_retries_per_second(count_u32(v, "min_retries_per_second")?);
        }
        if let Some(v) = max_tokens {
            c = c.with_max_tokens(count_u32(v, "max_tokens")?);
        }
        let core = CoreBudget::new(c).map_err(|e| config_error(py, e))?;
        Ok(RetryBudget { core })
    }

    /// Records a call (a first attempt) at `now`: deposits `ratio` tokens.
    fn deposit(&self, now: &Bound<'_, PyAny>) -> PyResult<()> {
        self.core.deposit(&at(now)?);
        Ok(())
    }

    /// Asks for one retry at `now`. Refused with `reason` `"exhausted"`
    /// and `retry_after` the nanoseconds until the per-second floor alone
    /// earns a token (`None` without a floor).
    fn try_withdraw(&self, now: &Bound<'_, PyAny>) -> PyResult<Decision> {
        Ok(match self.core.try_withdraw(&at(now)?) {
            Ok(()) => Decision::yes(),
            Err(e) => Decision::refused("exhausted", e.retry_after()),
        })
    }

    /// Whole retries available at `now`.
    fn available(&self, now: &Bound<'_, PyAny>) -> PyResult<u32> {
        Ok(self.core.available(&at(now)?))
    }

    /// Fills the budget again, as new.
    fn reset(&self) {
        self.core.reset();
    }
}

// -- backoff -------------------------------------------------------------------

/// An exponential backoff policy.
#[pyclass(module = "stockade.machines", name = "Backoff", frozen)]
pub(crate) struct Backoff {
    core: CoreBackoff,
}

#[pymethods]
impl Backoff {
    #[new]
    #[pyo3(signature = (
        *, initial_delay = None, backoff_factor = None, max_delay = None, max_attempts = None,
        max_elapsed = None, jitter = "none",
    ))]
    fn new(
        py: Python<'_>,
        initial_delay: Option<&Bound<'_, PyAny>>,
        backoff_factor: Option<&Bound<'_, PyAny>>,
        max_delay: Option<&Bound<'_, PyAny>>,
        max_attempts: Option<&Bound<'_, PyAny>>,
        max_elapsed: Option<&Bound<'_, PyAny>>,
        jitter: &str,
    ) -> PyResult<Backoff> {
        let mut c = BackoffConfig::DEFAULT;
        if let Some(v) = initial_delay {
            c.initial_delay = duration(v, "initial_delay")?;
        }
        if let Some(v) = backoff_factor {
            c.backoff_factor = factor(v, "backoff_factor")?;
        }
        if let Some(v) = max_delay {
            c.max_delay = duration(v, "max_delay")?;
        }
        if let Some(v) = max_attempts {
            c.max_attempts = count_u32(v, "max_attempts")?;
        }
        c.max_elapsed = opt_duration(max_elapsed, "max_elapsed")?;
        c.jitter = match jitter {
            "none" => Jitter::None,
            "full" => Jitter::Full,
            "equal" => Jitter::Equal,
            "decorrelated" => Jitter::Decorrelated,
            _ => {
                return Err(option_error(
                    py,
                    "jitter",
                    format!(
                        "invalid jitter = {jitter:?}: must be one of \"none\", \"full\", \"equal\", \"decorrelated\""
                    ),
                ));
            }
        };
        let core = CoreBackoff::new(c).map_err(|e| config_error(py, e))?;
        Ok(Backoff { core })
    }

    /// The base delay (no jitter) before retry number `retry` (1-based; 0
    /// is read as 1), in nanoseconds: `min(initial_delay *
    /// backoff_factor ** (retry - 1), max_delay)`.
    fn delay(&self, retry: &Bound<'_, PyAny>) -> PyResult<u64> {
        Ok(ns(self.core.delay(count_u32(retry, "retry")?)))
    }

    /// The delays of one operation; `seed` drives the jitter (the same
    /// seed gives the same delays, in every language).
    #[pyo3(signature = (seed = None))]
    fn schedule(&self, seed: Option<&Bound<'_, PyAny>>) -> PyResult<Schedule> {
        let seed = seed.map_or(Ok(0), |s| count_u64(s, "seed"))?;
        Ok(Schedule {
            inner: Mutex::new(self.core.schedule(seed)),
        })
    }
}

/// The delays of one operation under a `Backoff` (`Backoff.schedule`).
#[pyclass(module = "stockade.machines", name = "BackoffSchedule", frozen)]
pub(crate) struct Schedule {
    inner: Mutex<BackoffSchedule>,
}

#[pymethods]
impl Schedule {
    /// Records that an attempt failed `elapsed` nanoseconds after the
    /// operation began; returns the nanoseconds to wait before the next
    /// attempt, or `None` to give up (`max_attempts` made, or the delay
    /// would end past `max_elapsed`; `None` from then on).
    fn next_delay(&self, elapsed: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
        let elapsed = Duration::from_nanos(nanos(elapsed, "elapsed")?);
        Ok(self.inner.lock().next_delay(elapsed).map(ns))
    }

    /// Failed attempts recorded so far.
    #[getter]
    fn attempts_made(&self) -> u32 {
        self.inner.lock().attempts_made()
    }

    /// Whether `next_delay` has returned `None`.
    #[getter]
    fn is_exhausted(&self) -> bool {
        self.inner.lock().is_exhausted()
    }
}

/// Adds the submodule `machines` to the native module (re-exported by
/// `stockade/machines.py`).
pub(crate) fn register(parent: &Bound<'_, PyModule>) -> PyResult<()> {
    let m = PyModule::new(parent.py(), "machines")?;
    m.add_class::<Decision>()?;
    m.add_class::<Transition>()?;
    m.add_class::<BreakerToken>()?;
    m.add_class::<CircuitBreaker>()?;
    m.add_class::<Reservation>()?;
    m.add_class::<RateLimiter>()?;
    m.add_class::<BulkheadToken>()?;
    m.add_class::<Bulkhead>()?;
    m.add_class::<RetryBudget>()?;
    m.add_class::<Backoff>()?;
    m.add_class::<Schedule>()?;
    parent.add_submodule(&m)
}
