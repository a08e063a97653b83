//! `stockade.RateLimiter`: the core's GCRA limiter, shared by threads and
//! event loops. A call books its slot with the core's reservation (FIFO by
//! booking order), then waits the reservation's `wait`: a thread sleeps
//! with the GIL released (in slices: Ctrl-C, `dispose()`), a coroutine
//! with asyncio. A caller that gives up hands its booking back.
//!
//! With `redis=`, the fleet's limiter in Redis decides instead (the
//! engine of `blocking::RateLimiter::redis`): a call books its slot in
//! Redis with one script call (the GIL released; for a coroutine on the
//! loop's default executor), then waits here exactly as a local booking
//! does (a thread in slices, a coroutine with asyncio), and a caller that
//! gives up hands its booking back (a round trip, off the loop).

use core::time::Duration;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use stockade::HumanDuration;
use stockade::limiter::{
    Mode, RateLimitError, RateLimiter as Core, RateLimiterConfig, Reservation, ReservationToken,
};
use stockade::redis::{RedisLimitError, RedisReservation};

use crate::call::{CallArgs, aio, call};
use crate::convert::{arg_n, count_u32, duration};
use crate::errors::{Exc, disposed, option_error, secs};
use crate::events::{Event, Listeners, MetricsSnapshot};
use crate::redis::{forward_store_events, open_error, other_error, redis_error};
use crate::registry;
use crate::retry::Counter;
use crate::shared::{Held, PatternClock};
use crate::wait::{AsyncWaiters, DisposeFlag};
use crate::wrap::{Target, is_async_callable, wrap};

const KIND: &str = "rate_limiter";

/// A rate limiter.
#[pyclass(module = "stockade", frozen, subclass, weakref)]
pub(crate) struct RateLimiter {
    name: String,
    config: RateLimiterConfig,
    core: Held<Core>,
    /// The host's clock for a shared limiter, the process's otherwise.
    clock: PatternClock,
    /// The fleet's limiter in Redis (`redis=`), which then decides instead
    /// of `core` (kept for the config's figures, such as `burst`).
    fleet: Option<Arc<stockade::blocking::RateLimiter>>,
    pub(crate) listeners: Arc<Listeners>,
    calls: Counter,
    rejections: Counter,
    pub(crate) disposed: DisposeFlag,
    waiters: AsyncWaiters,
}

/// A booking held by a coroutine while it sleeps.
#[pyclass(module = "stockade._stockade", frozen)]
pub(crate) struct LimiterBooking {
    limiter: Py<RateLimiter>,
    reservation: Mutex<Option<ReservationToken>>,
}

#[pymethods]
impl LimiterBooking {
    /// The coroutine gave up (cancelled): hand the booking back if the
    /// core can. No outcome: the call is taken back out of `calls`.
    fn cancel(&self) {
        if let Some(r) = self.reservation.lock().take() {
            let limiter = self.limiter.get();
            let _ = limiter.core.cancel(r, &limiter.clock);
            limiter.calls.dec();
        }
    }

    /// The wait is over: the permits are the caller's (unless disposed
    /// meanwhile).
    fn ready(&self, py: Python<'_>) -> PyResult<()> {
        self.reservation.lock().take();
        let limiter = self.limiter.get();
        limiter
            .check_disposed(py)
            .inspect_err(|_| limiter.calls.dec())
    }
}

impl Drop for LimiterBooking {
    /// A coroutine that never ran its first step (a task cancelled before
    /// it started, or a coroutine never awaited) still holds the booking
    /// taken when `execute` was called: hand it back as `cancel` does.
    fn drop(&mut self) {
        if let Some(r) = self.reservation.get_mut().take() {
            let limiter = self.limiter.get();
            let _ = limiter.core.cancel(r, &limiter.clock);
            limiter.calls.dec();
        }
    }
}

/// A booking in a Redis-backed limiter, held by a coroutine while it
/// sleeps (`stockade._aio.fleet_limiter_call`).
#[pyclass(module = "stockade._stockade", frozen)]
pub(crate) struct FleetBooking {
    limiter: Py<RateLimiter>,
    reservation: Mutex<Option<RedisReservation>>,
    /// Seconds to wait from the decision on.
    #[pyo3(get)]
    wait: f64,
}

#[pymethods]
impl FleetBooking {
    /// The coroutine gave up (cancelled, disposed): hand the booking back
    /// if Redis can (a round trip, the GIL released; call it off the
    /// loop). No outcome: the call is taken back out of `calls`.
    fn cancel(&self, py: Python<'_>) {
        if let Some(r) = self.reservation.lock().take() {
            let limiter = self.limiter.get();
            limiter.fleet_cancel(py, r);
            limiter.calls.dec();
        }
    }

    /// The wait is over: the permits are the caller's (unless disposed
    /// meanwhile).
    fn ready(&self, py: Python<'_>) -> PyResult<()> {
        let _ = self.reservation.lock().take();
        let limiter = self.limiter.get();
        limiter
            .check_disposed(py)
            .inspect_err(|_| limiter.calls.dec())
    }
}

impl RateLimiter {
    fn check_disposed(&self, py: Python<'_>) -> PyResult<()> {
        if self.disposed.get() {
            Err(disposed(py, "RateLimiter", &self.name))
        } else {
            Ok(())
        }
    }

    fn refused(&self, py: Python<'_>, e: RateLimitError) -> PyErr {
        self.rejections.inc();
        let retry_after = e.retry_after().filter(|d| *d != Duration::MAX);
        self.listeners.emit(py, || {
            let mut ev = Event::new(KIND, &self.name, "rejected");
            ev.retry_after = retry_after.map(secs);
            ev
        });
        let why = match e {
            RateLimitError::QueueFull { .. } => "the queue is full".to_owned(),
            RateLimitError::WaitTooLong { wait, .. } => format!(
                "the wait ({}) would exceed queue_timeout ({})",
                HumanDuration(wait),
                HumanDuration(self.config.queue_timeout)
            ),
            RateLimitError::ExceedsCapacity {
                requested,
                capacity,
            } => {
                format!("{requested} permits can never be granted at once (burst {capacity})")
            }
            _ => "no permit is available".to_owned(),
        };
        let message = match retry_after {
            Some(d) => format!(
                "RateLimiter '{}': {why}; retry after {}",
                self.name,
                HumanDuration(d)
            ),
            None => format!("RateLimiter '{}': {why}", self.name),
        };
        Exc::RateLimited.err(py, (message, self.name.clone(), retry_after.map(secs)))
    }

    /// Books `n` permits in the fleet's queue in Redis (one script call,
    /// the GIL released), or raises `RateLimitedError` (or the Redis or
    /// dispose error) at once.
    fn fleet_reserve(
        &self,
        py: Python<'_>,
        fleet: &Arc<stockade::blocking::RateLimiter>,
        n: u32,
    ) -> PyResult<RedisReservation> {
        self.check_disposed(py)?;
        self.calls.inc();
        let fleet = Arc::clone(fleet);
        let max_wait = self.config.queue_timeout;
        let booked = py.detach(move || {
            fleet
                .redis_limiter()
                .map(|engine| engine.reserve(n, max_wait))
        });
        match booked {
            Some(Ok(r)) => Ok(r),
            Some(Err(RedisLimitError::Limited(e))) => Err(self.refused(py, e)),
            Some(Err(RedisLimitError::Redis(e))) => {
                // Refused by Redis (fallback closed, config mismatch): a
                // rejection, as the blocking layer counts it.
                self.rejections.inc();
                Err(redis_error(py, &e, Some(&self.name)))
            }
            Some(Err(other)) => {
                self.calls.dec();
                Err(Exc::Redis.err(py, (other.to_string(), Some(self.name.clone()))))
            }
            None => {
                self.calls.dec();
                Err(Exc::Redis.err(
                    py,
                    (
                        format!("RateLimiter '{}' has no Redis engine", self.name),
                        Some(self.name.clone()),
                    ),
                ))
            }
        }
    }

    /// Hands a booking back to Redis if it can be (a round trip, the GIL
    /// released); a booking that cannot stays used.
    fn fleet_cancel(&self, py: Python<'_>, r: RedisReservation) {
        if let Some(fleet) = &self.fleet {
            let fleet = Arc::clone(fleet);
            py.detach(move || {
                if let Some(engine) = fleet.redis_limiter() {
                    let _ = engine.cancel(r);
                }
            });
        }
    }

    /// Takes `n` permits of a Redis-backed limiter: books them in Redis,
    /// then sleeps as a local booking does (the GIL released, in slices:
    /// Ctrl-C, `dispose()`); a caller that gives up hands its booking back.
    fn fleet_acquire(
        &self,
        py: Python<'_>,
        fleet: &Arc<stockade::blocking::RateLimiter>,
        n: u32,
    ) -> PyResult<()> {
        let r = self.fleet_reserve(py, fleet, n)?;
        if r.is_immediate() {
            return Ok(());
        }
        match self.disposed.sleep(py, r.wait()) {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.fleet_cancel(py, r);
                self.calls.dec();
                Err(disposed(py, "RateLimiter", &self.name))
            }
            Err(e) => {
                self.fleet_cancel(py, r);
                self.calls.dec();
                Err(e)
            }
        }
    }

    /// Books `n` permits (FIFO), or raises `RateLimitedError` at once.
    fn book(&self, py: Python<'_>, n: u32) -> PyResult<Reservation> {
        self.check_disposed(py)?;
        self.calls.inc();
        self.core
            .reserve(n, self.config.queue_timeout, &self.clock)
            .map_err(|e| self.refused(py, e))
    }

    /// Sleeps a thread until its booking is ready.
    fn wait_thread(&self, py: Python<'_>, r: Reservation) -> PyResult<()> {
        let wait = r.wait();
        let r = r.into_token();
        match self.disposed.sleep(py, wait) {
            Ok(true) => Ok(()),
            // Disposed or interrupted (Ctrl-C) while waiting: the booking
            // goes back, and the call is taken back out of `calls`.
            Ok(false) => {
                let _ = self.core.cancel(r, &self.clock);
                self.calls.dec();
                Err(disposed(py, "RateLimiter", &self.name))
            }
            Err(e) => {
                let _ = self.core.cancel(r, &self.clock);
                self.calls.dec();
                Err(e)
            }
        }
    }

    /// The coroutine that sleeps a booking with asyncio, then returns
    /// `then()`'s awaited result (or `value` when `then` is `None`).
    fn wait_async<'py>(
        slf: &Bound<'py, RateLimiter>,
        r: Reservation,
        then: Option<CallArgs<'_, 'py>>,
        value: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let wait = secs(r.wait());
        let booking = Bound::new(
            py,
            LimiterBooking {
                limiter: slf.clone().unbind(),
                reservation: Mutex::new(Some(r.into_token())),
            },
        )?;
        let waiters = slf.get().waiters.get(py);
        static LIMITER_CALL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        match then {
            Some((func, args, kwargs)) => aio(py, &LIMITER_CALL, "limiter_call")?
                .call1((booking, waiters, wait, func, args, kwargs, value)),
            None => aio(py, &LIMITER_CALL, "limiter_call")?.call1((
                booking,
                waiters,
                wait,
                py.None(),
                py.None(),
                py.None(),
                value,
            )),
        }
    }

    /// The coroutine that books a permit of a Redis-backed limiter on the
    /// loop's default executor (`_fleet_book`), sleeps the booking with
    /// asyncio, then returns `then()`'s awaited result (or `value`).
    fn fleet_async<'py>(
        slf: &Bound<'py, RateLimiter>,
        then: Option<CallArgs<'_, 'py>>,
        value: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        slf.get().check_disposed(py)?;
        let waiters = slf.get().waiters.get(py);
        static OFF_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let (f, a, k) = match then {
            Some((f, a, k)) => (
                f.clone(),
                a.clone().into_any(),
                k.map(|k| k.clone().into_any()),
            ),
            None => (py.None().into_bound(py), py.None().into_bound(py), None),
        };
        aio(py, &OFF_LOOP, "fleet_limiter_call")?.call1((slf, waiters, f, a, k, value))
    }

    pub(crate) fn run<'py>(
        slf: &Bound<'py, RateLimiter>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let py = slf.py();
        if let Some(fleet) = &this.fleet {
            if is_async_callable(func)? {
                return RateLimiter::fleet_async(
                    slf,
                    Some((func, args, kwargs)),
                    py.None().into_bound(py),
                );
            }
            this.fleet_acquire(py, fleet, 1)?;
            return call(func, args, kwargs);
        }
        let r = this.book(py, 1)?;
        if r.is_immediate() {
            // An `async def` function's coroutine is returned as it is.
            return call(func, args, kwargs);
        }
        if is_async_callable(func)? {
            return RateLimiter::wait_async(
                slf,
                r,
                Some((func, args, kwargs)),
                py.None().into_bound(py),
            );
        }
        this.wait_thread(py, r)?;
        call(func, args, kwargs)
    }
}

fn mode_from_str(py: Python<'_>, s: &str) -> PyResult<Mode> {
    match s {
        "bursty" => Ok(Mode::Bursty),
        "strict" => Ok(Mode::Strict),
        _ => Err(option_error(
            py,
            "mode",
            format!("invalid mode = {s:?}: must be \"bursty\" or \"strict\""),
        )),
    }
}

#[pymethods]
impl RateLimiter {
    #[new]
    #[pyo3(signature = (
        name, *, requests_per_period = None, period = None, max_queue_size = None,
        queue_timeout = None, burst = None, mode = None, shared = None, redis = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: String,
        requests_per_period: Option<&Bound<'_, PyAny>>,
        period: Option<&Bound<'_, PyAny>>,
        max_queue_size: Option<&Bound<'_, PyAny>>,
        queue_timeout: Option<&Bound<'_, PyAny>>,
        burst: Option<&Bound<'_, PyAny>>,
        mode: Option<&Bound<'_, PyAny>>,
        shared: Option<&Bound<'_, PyAny>>,
        redis: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<RateLimiter>> {
        let mut c = RateLimiterConfig::DEFAULT;
        if let Some(v) = requests_per_period {
            c.requests_per_period = count_u32(v, "requests_per_period")?;
        }
        if let Some(v) = period {
            c.period = duration(v, "period")?;
        }
        if let Some(v) = max_queue_size {
            c.max_queue_size = count_u32(v, "max_queue_size")?;
        }
        if let Some(v) = queue_timeout {
            c.queue_timeout = duration(v, "queue_timeout")?;
        }
        if let Some(v) = burst.filter(|v| !v.is_none()) {
            c.burst = Some(count_u32(v, "burst")?);
        }
        if let Some(v) = mode.filter(|v| !v.is_none()) {
            c.mode = mode_from_str(py, crate::convert::text(v, "mode")?)?;
        }
        let redis = crate::redis::options(py, redis, shared)?;
        let shared = crate::shared::options(shared)?;
        let (core, c) = Held::<Core>::open(py, &name, c, shared)?;
        let listeners = Arc::new(Listeners::default());
        let fleet = match redis {
            None => None,
            Some(options) => {
                // No round trip: Redis is contacted by the first call.
                let fleet = py
                    .detach(|| stockade::blocking::RateLimiter::redis(&name, c, &options))
                    .map_err(|e| open_error(py, e, "rate limiter", &name))?;
                fleet.subscribe(forward_store_events(&listeners, KIND, &name));
                Some(fleet)
            }
        };
        let l = Py::new(
            py,
            RateLimiter {
                name,
                config: c,
                clock: core.clock(),
                core,
                fleet,
                listeners,
                calls: Counter::default(),
                rejections: Counter::default(),
                disposed: DisposeFlag::default(),
                waiters: AsyncWaiters::new(py)?,
            },
        )?;
        if let Err(e) = registry::register(KIND, &l.get().name, l.clone_ref(py).into_any()) {
            if let Some(fleet) = &l.get().fleet {
                fleet.dispose();
            }
            return Err(e);
        }
        Ok(l)
    }

    /// The limiter registered as `name`, or a new one with the default
    /// options (registered under that name).
    #[classmethod]
    fn get_limiter(cls: &Bound<'_, PyType>, name: &str) -> PyResult<Py<PyAny>> {
        if let Some(found) = registry::get(cls.py(), KIND, name) {
            return Ok(found);
        }
        Ok(cls.call1((name,))?.unbind())
    }

    /// Books one permit of a Redis-backed limiter (one script call, the
    /// GIL released): what `stockade._aio` runs on the loop's default
    /// executor.
    fn _fleet_book(slf: &Bound<'_, Self>) -> PyResult<FleetBooking> {
        let this = slf.get();
        let py = slf.py();
        let Some(fleet) = &this.fleet else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "not a Redis-backed limiter",
            ));
        };
        let r = this.fleet_reserve(py, fleet, 1)?;
        Ok(FleetBooking {
            limiter: slf.clone().unbind(),
            wait: secs(r.wait()),
            reservation: Mutex::new(Some(r)),
        })
    }

    /// Takes `n` permits if they are available now; never waits. `n = 0`
    /// takes none and returns `True` (as the core's `try_acquire_n(0)`).
    #[pyo3(signature = (n = 1))]
    fn try_acquire(&self, py: Python<'_>, #[pyo3(from_py_with = arg_n)] n: u32) -> PyResult<bool> {
        self.check_disposed(py)?;
        if let Some(fleet) = &self.fleet {
            let fleet = Arc::clone(fleet);
            return match py.detach(move || fleet.try_acquire(n)) {
                Ok(()) => Ok(true),
                Err(stockade::blocking::Error::RateLimited { .. }) => {
                    self.rejections.inc();
                    Ok(false)
                }
                Err(e) => {
                    if matches!(e, stockade::blocking::Error::Redis(_)) {
                        self.rejections.inc();
                    }
                    Err(other_error(py, e, "RateLimiter", &self.name))
                }
            };
        }
        let granted = if n == 1 {
            self.core.try_acquire(&self.clock).is_ok()
        } else {
            self.core.try_acquire_n(n, &self.clock).is_ok()
        };
        if !granted {
            self.rejections.inc();
        }
        Ok(granted)
    }

    /// Takes `n` permits, waiting in the FIFO queue (the GIL released);
    /// raises `RateLimitedError` at once if the wait would exceed
    /// `queue_timeout` or the queue is full. `n = 0` takes none and
    /// returns at once (as the core's `acquire(0)`).
    #[pyo3(signature = (n = 1))]
    fn acquire(&self, py: Python<'_>, #[pyo3(from_py_with = arg_n)] n: u32) -> PyResult<()> {
        if let Some(fleet) = &self.fleet {
            return self.fleet_acquire(py, fleet, n);
        }
        let r = self.book(py, n)?;
        if r.is_immediate() {
            return Ok(());
        }
        self.wait_thread(py, r)
    }

    /// Runs `func(*args, **kwargs)` once a permit is granted (waiting in
    /// the queue as `acquire`). With an `async def` function, returns an
    /// awaitable that waits with asyncio.
    #[pyo3(signature = (func, /, *args, **kwargs))]
    fn execute<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        RateLimiter::run(slf, func, args, kwargs)
    }

    /// `func` protected by this limiter (a decorator).
    fn wrap<'py>(slf: &Bound<'py, Self>, func: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        wrap(Target::Limiter(slf.clone().unbind()), func)
    }

    /// `@limiter` as a decorator: the same as `wrap`.
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        wrap(Target::Limiter(slf.clone().unbind()), func)
    }

    /// `with limiter:` takes one permit (waiting as `acquire`).
    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<Py<RateLimiter>> {
        slf.get().acquire(slf.py(), 1)?;
        Ok(slf.clone().unbind())
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> bool {
        false
    }

    /// `async with limiter:` takes one permit, waiting with asyncio.
    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        if slf.get().fleet.is_some() {
            return RateLimiter::fleet_async(slf, None, slf.clone().into_any());
        }
        let r = slf.get().book(py, 1)?;
        if r.is_immediate() {
            static READY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            return aio(py, &READY, "ready")?.call1((slf,));
        }
        RateLimiter::wait_async(slf, r, None, slf.clone().into_any())
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        static READY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        aio(py, &READY, "ready")?.call1((false,))
    }

    /// The file of the region this limiter shares with other processes
    /// (`shared=`), or `None` for a limiter of this process alone.
    #[getter]
    fn shared_path(&self) -> Option<String> {
        self.core.path()
    }

    /// `True` for a limiter shared through Redis (`redis=`).
    #[getter]
    fn is_redis(&self) -> bool {
        self.fleet.is_some()
    }

    /// Permits `try_acquire` could take right now; `None` for a limiter
    /// shared through Redis (the fleet's bucket is only known by asking).
    #[getter]
    fn available(&self) -> Option<u32> {
        match self.fleet {
            Some(_) => None,
            None => Some(self.core.available(&self.clock)),
        }
    }

    /// Permits booked and still waiting (for a limiter shared through
    /// Redis: as this process last learnt it from Redis, a lower bound).
    #[getter]
    fn queue_depth(&self) -> u32 {
        match &self.fleet {
            Some(fleet) => u32::try_from(fleet.metrics().queue_depth).unwrap_or(u32::MAX),
            None => self.core.queue_depth(&self.clock),
        }
    }

    /// Counters: `calls` (bookings asked for by `acquire`, `execute`,
    /// `with`), `rejections` (refused bookings and `try_acquire`s that
    /// returned `False`; for a limiter shared through Redis also the calls
    /// Redis refused: `RedisUnavailableError`, `RedisConfigMismatchError`),
    /// `queue_depth`, and `fallback_decisions` (decisions a limiter shared
    /// through Redis took under its fallback because Redis did not
    /// answer).
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let fallback_decisions = self
            .fleet
            .as_ref()
            .map_or(0, |f| f.metrics().fallback_decisions);
        MetricsSnapshot {
            calls: self.calls.get(),
            rejections: self.rejections.get(),
            queue_depth: u64::from(self.queue_depth()),
            fallback_decisions,
            ..MetricsSnapshot::default()
        }
        .to_dict(py, &self.name)
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }
    #[getter]
    fn requests_per_period(&self) -> u32 {
        self.config.requests_per_period
    }
    #[getter]
    fn period(&self) -> f64 {
        secs(self.config.period)
    }
    #[getter]
    fn max_queue_size(&self) -> u32 {
        self.config.max_queue_size
    }
    #[getter]
    fn queue_timeout(&self) -> f64 {
        secs(self.config.queue_timeout)
    }
    /// The permits that may be taken at once.
    #[getter]
    fn burst(&self) -> u32 {
        self.core.burst()
    }
    #[getter]
    fn mode(&self) -> &'static str {
        match self.config.mode {
            Mode::Strict => "strict",
            _ => "bursty",
        }
    }

    /// Calls `callback(event)` on rejections (and on `dispose`; with
    /// `redis=` also `"store_unavailable"` and `"store_recovered"`);
    /// returns `callback`.
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

    /// Refuses every later call with `DisposedError`, wakes every waiting
    /// caller (threads and coroutines raise `DisposedError`), and
    /// unregisters the name.
    fn dispose(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        let py = slf.py();
        if this.disposed.set() {
            if let Some(fleet) = &this.fleet {
                // Wakes the threads waiting in it (`DisposedError`).
                fleet.dispose();
            }
            this.waiters
                .wake_all(py, disposed(py, "RateLimiter", &this.name))?;
            this.listeners.close(py, KIND, &this.name);
        }
        registry::unregister(KIND, &this.name, slf.as_any());
        Ok(())
    }

    #[getter]
    fn disposed(&self) -> bool {
        self.disposed.get()
    }

    fn __repr__(&self) -> String {
        format!(
            "RateLimiter({:?}, requests_per_period={}, period={})",
            self.name,
            self.config.requests_per_period,
            secs(self.config.period)
        )
    }
}
