//! The blocking rate limiter: callers that find no permit wait in a bounded
//! FIFO queue, or are refused at once when they could not be served within
//! `queue_timeout`.

use core::fmt;
use core::time::Duration;
use std::sync::Arc;

use super::events::{Counter, Listeners};
use super::registry::{self, Registered};
use super::wait::{DisposeFlag, WaitList};
use super::{Error, Event, EventKind, ListenerId, Metrics, PatternKind, Policy, Timer};
use crate::clock::MonotonicClock;
use crate::limiter::{RateLimitError, RateLimiter as Core, RateLimiterConfig, Reservation};

/// Why a call was not admitted.
enum Refusal {
    Limited(Duration),
    Disposed,
}

impl Refusal {
    fn into_error<E>(self) -> Error<E> {
        match self {
            Refusal::Limited(retry_after) => Error::RateLimited { retry_after },
            Refusal::Disposed => Error::Disposed,
        }
    }
}

/// Controls the rate of operations: at most `requests_per_period` per
/// `period` on average, bursts of up to `burst`; callers beyond that wait
/// their turn in a FIFO queue of at most `max_queue_size` for at most
/// `queue_timeout`, and are refused at once with [`Error::RateLimited`]
/// when the queue is full or their wait would be longer.
///
/// Options are the core's [`RateLimiterConfig`] (10 per 1 s, burst =
/// requests per period, `max_queue_size` 100, `queue_timeout` 30 s,
/// [`Mode::Bursty`](crate::limiter::Mode::Bursty)); see
/// [`crate::limiter`] for the algorithm and the modes. Waiting happens on
/// the [`Timer`]; see [How it waits](#how-it-waits).
///
/// # Examples
///
/// The spec's usage:
///
/// ```
/// use std::time::Duration;
/// use stockade::blocking::{Error, RateLimiter};
/// use stockade::limiter::RateLimiterConfig;
///
/// # struct Api;
/// # impl Api { fn make_request(&self) -> Result<u16, std::io::Error> { Ok(200) } }
/// # let api = Api;
/// // Create a rate limiter
/// let rate_limiter = RateLimiter::new(
///     "apiRequests",
///     RateLimiterConfig {
///         requests_per_period: 100,
///         period: Duration::from_secs(60), // 1 minute
///         max_queue_size: 50,
///         ..Default::default()
///     },
/// )?;
///
/// // Execute with rate limiting
/// let result = rate_limiter.execute(|| api.make_request());
/// assert_eq!(result.unwrap(), 200);
/// # Ok::<(), Error>(())
/// ```
///
/// # How it waits
///
/// The queue is the core's: [`crate::limiter::RateLimiter::reserve`] books
/// the next free slot in one CAS and says when it is ready. Bookings are
/// made in arrival order and each one's `ready_at` is at least one emission
/// interval after the previous one's, so sleeping until `ready_at` serves
/// callers in FIFO order without any list of waiters. The core refuses a
/// booking — nothing is consumed — when more than `max_queue_size` permits
/// would be waiting or the wait would exceed `queue_timeout`; the caller
/// gets [`Error::RateLimited`] with the exact `retry_after` at once. So a
/// caller never waits in vain: once booked, it runs at `ready_at`.
///
/// A booked caller sleeps until `ready_at` with
/// [`Timer::interruptible_sleep_until`] in a loop: it parks on a real or
/// manually advanced clock, while an auto-advancing
/// [`VirtualClock`](super::VirtualClock) just moves to `ready_at`. It is
/// listed (its [`Thread`](std::thread::Thread) handle, under a mutex, slow path only) so that
/// [`dispose`](RateLimiter::dispose) can unpark it: it then returns
/// [`Error::Disposed`] and hands its booking back to the core
/// ([`cancel`](crate::limiter::RateLimiter::cancel), which succeeds for the
/// latest booking; earlier ones stay used, which is conservative).
pub struct RateLimiter<T: Timer = MonotonicClock> {
    name: Arc<str>,
    core: Core,
    options: RateLimiterConfig,
    timer: T,
    /// Threads parked on a booking, for `dispose` to wake. Slow path only.
    sleepers: WaitList,
    listeners: Listeners,
    calls: Counter,
    successes: Counter,
    failures: Counter,
    rejections: Counter,
    /// 0 = live, 1 = disposed.
    disposed: DisposeFlag,
    /// Removes a registered instance from the registry on dispose.
    forget: Option<fn(&RateLimiter<T>)>,
}

impl RateLimiter<MonotonicClock> {
    /// A rate limiter on the system's monotonic clock.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first invalid option (see
    /// [`crate::limiter::RateLimiter::new`]).
    pub fn new(name: impl Into<Arc<str>>, options: RateLimiterConfig) -> Result<Self, Error> {
        Self::with_timer(name, options, MonotonicClock)
    }

    /// The rate limiter registered as `name`, or a new one with the default
    /// options registered under that name (the spec's
    /// `RateLimiter.getLimiter('requests')`). An existing instance is
    /// returned whatever its options.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use stockade::blocking::RateLimiter;
    /// use stockade::limiter::RateLimiterConfig;
    ///
    /// let limiter = RateLimiter::get_limiter("doc-requests");
    /// assert_eq!(*limiter.options(), RateLimiterConfig::DEFAULT);
    /// assert!(Arc::ptr_eq(&limiter, &RateLimiter::get_limiter("doc-requests")));
    /// ```
    pub fn get_limiter(name: &str) -> Arc<Self> {
        loop {
            if let Some(limiter) = Self::get(name) {
                return limiter;
            }
            // Fails only if someone registered `name` with other options
            // since `get`: take theirs on the next round.
            if let Ok(limiter) = Self::get_or_create(name, RateLimiterConfig::DEFAULT) {
                return limiter;
            }
        }
    }

    /// The rate limiter registered as `name`, or a new one with `options`
    /// registered under that name.
    ///
    /// # Errors
    ///
    /// [`Error::NameTaken`] if `name` is registered with other options;
    /// [`Error::InvalidConfig`] as for [`new`](Self::new).
    pub fn get_or_create(name: &str, options: RateLimiterConfig) -> Result<Arc<Self>, Error> {
        registry::get_or_create(name, &options, || {
            let mut limiter = Self::new(name, options)?;
            limiter.forget = Some(Self::forget_registered);
            Ok(limiter)
        })
    }

    /// The live rate limiter registered as `name`, if any.
    pub fn get(name: &str) -> Option<Arc<Self>> {
        registry::get(name)
    }

    fn forget_registered(&self) {
        registry::forget(&self.name, self);
    }
}

impl Registered for RateLimiter<MonotonicClock> {
    type Options = RateLimiterConfig;

    fn options(&self) -> &RateLimiterConfig {
        &self.options
    }

    fn is_disposed(&self) -> bool {
        RateLimiter::is_disposed(self)
    }
}

impl<T: Timer> RateLimiter<T> {
    /// A rate limiter that waits on `timer` (for example a
    /// [`VirtualClock`](super::VirtualClock) in tests).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] as for [`RateLimiter::new`].
    pub fn with_timer(
        name: impl Into<Arc<str>>,
        options: RateLimiterConfig,
        timer: T,
    ) -> Result<Self, Error> {
        let core = Core::new(options)?;
        Ok(RateLimiter {
            name: name.into(),
            core,
            options,
            timer,
            sleepers: WaitList::default(),
            listeners: Listeners::default(),
            calls: Counter::default(),
            successes: Counter::default(),
            failures: Counter::default(),
            rejections: Counter::default(),
            disposed: DisposeFlag::default(),
            forget: None,
        })
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The options it was created with.
    pub fn options(&self) -> &RateLimiterConfig {
        &self.options
    }

    /// The timer it waits on.
    pub fn timer(&self) -> &T {
        &self.timer
    }

    /// The core state machine, for its read-only figures
    /// ([`emission_interval`](Core::emission_interval),
    /// [`burst`](Core::burst), [`available`](Core::available)...).
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Runs `f` once a permit is available, waiting in the FIFO queue if
    /// the bucket is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Inner`] with `f`'s own error; [`Error::RateLimited`] at once
    /// (with the exact `retry_after`) when the queue already holds
    /// `max_queue_size` permits or the wait would exceed `queue_timeout`;
    /// [`Error::Disposed`] after [`dispose`](Self::dispose), also for callers
    /// waiting when it happens.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stockade::blocking::{Error, RateLimiter, Timer, VirtualClock};
    /// use stockade::clock::Clock;
    /// use stockade::limiter::RateLimiterConfig;
    ///
    /// // Simulated time: waiting moves the clock (one permit per second).
    /// let options = RateLimiterConfig::DEFAULT
    ///     .with_requests_per_period(1)
    ///     .with_period(Duration::from_secs(1));
    /// let limiter = RateLimiter::with_timer("doc-execute", options, VirtualClock::auto_advance())?;
    /// for _ in 0..3 {
    ///     limiter.execute(|| Ok::<_, ()>(())).unwrap();
    /// }
    /// // The first ran at once, the next two waited a second each.
    /// assert_eq!(limiter.timer().now().as_nanos(), 2_000_000_000);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn execute<R, E>(&self, f: impl FnOnce() -> Result<R, E>) -> Result<R, Error<E>> {
        self.guarded(|| f().map_err(Error::Inner))
    }

    /// Runs `f` only if a permit is available now (it never waits).
    ///
    /// # Errors
    ///
    /// [`Error::RateLimited`] with the exact `retry_after` if no permit is
    /// available; otherwise as [`execute`](Self::execute).
    pub fn try_execute<R, E>(&self, f: impl FnOnce() -> Result<R, E>) -> Result<R, Error<E>> {
        self.try_admit(1).map_err(Refusal::into_error)?;
        self.run_counted(|| f().map_err(Error::Inner))
    }

    /// A reusable protected function (the spec's `wrap`): each call of the
    /// returned function runs `f` through [`execute`](Self::execute).
    pub fn wrap<'a, A, R, E>(
        &'a self,
        f: impl Fn(A) -> Result<R, E> + 'a,
    ) -> impl Fn(A) -> Result<R, Error<E>> + 'a {
        move |arg: A| self.execute(|| f(arg))
    }

    /// Takes `n` permits, waiting in the FIFO queue for them if needed
    /// (`n = 0` returns at once). Counted as one call, and as a success when
    /// granted.
    ///
    /// # Errors
    ///
    /// [`Error::RateLimited`] at once if the queue is full or the wait
    /// would exceed `queue_timeout`, with `retry_after: Duration::MAX` when
    /// `n` exceeds the burst (it never can succeed); [`Error::Disposed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{Error, RateLimiter, VirtualClock};
    /// use stockade::limiter::RateLimiterConfig;
    ///
    /// let limiter = RateLimiter::with_timer("doc-acquire", RateLimiterConfig::DEFAULT, VirtualClock::auto_advance())?;
    /// limiter.acquire(10)?; // the whole burst
    /// limiter.acquire(2)?; // waits 200 ms of simulated time
    /// assert!(matches!(limiter.acquire(11), Err(Error::RateLimited { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn acquire(&self, n: u32) -> Result<(), Error> {
        self.admit(n).map_err(Refusal::into_error)?;
        self.successes.incr();
        Ok(())
    }

    /// Takes `n` permits if they are available now (all or nothing; never
    /// waits). Counted as one call, and as a success when granted.
    ///
    /// # Errors
    ///
    /// [`Error::RateLimited`] with the exact `retry_after`
    /// (`Duration::MAX` when `n` exceeds the burst); [`Error::Disposed`].
    pub fn try_acquire(&self, n: u32) -> Result<(), Error> {
        self.try_admit(n).map_err(Refusal::into_error)?;
        self.successes.incr();
        Ok(())
    }

    /// Calls `listener` for every event: `Rejected` (with `retry_after`) and
    /// `Disposed`. (Booked callers never time out, so there is no
    /// `QueueTimeout` event.)
    pub fn subscribe(&self, listener: impl Fn(&Event) + Send + Sync + 'static) -> ListenerId {
        self.listeners.add(Arc::new(listener))
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.listeners.remove(id)
    }

    /// A snapshot of the counters.
    ///
    /// `calls` counts the executions and acquisitions made while the limiter
    /// was live; each ends as one of `successes`, `failures` (the closure
    /// returned an error or panicked), `rejections`
    /// ([`Error::RateLimited`]), or [`Error::Disposed`] for callers waiting
    /// when it was disposed (not counted separately). `queue_depth` is the
    /// core's: permits booked but not yet ready.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            calls: self.calls.get(),
            successes: self.successes.get(),
            failures: self.failures.get(),
            rejections: self.rejections.get(),
            queue_depth: u64::from(self.core.queue_depth(&self.timer)),
            ..Metrics::default()
        }
    }

    /// `true` once [`dispose`](Self::dispose) was called.
    pub fn is_disposed(&self) -> bool {
        self.disposed.get()
    }

    /// Shuts the limiter down: callers waiting for their turn wake with
    /// [`Error::Disposed`] (handing their bookings back where the core
    /// allows), later calls fail with `Disposed`, a `Disposed` event is
    /// emitted, listeners are removed and the registry forgets the
    /// instance. Calling it again does nothing.
    pub fn dispose(&self) {
        if self.disposed.set() {
            return;
        }
        self.sleepers.wake_all();
        self.listeners.emit(|| self.event(EventKind::Disposed));
        self.listeners.clear();
        if let Some(forget) = self.forget {
            forget(self);
        }
    }

    // --- Admission ----------------------------------------------------------

    #[inline]
    fn guarded<R, E>(&self, call: impl FnOnce() -> Result<R, Error<E>>) -> Result<R, Error<E>> {
        self.admit(1).map_err(Refusal::into_error)?;
        self.run_counted(call)
    }

    /// Runs an admitted call and counts its outcome (a panic counts as a
    /// failure and continues).
    #[inline]
    fn run_counted<R, E>(&self, call: impl FnOnce() -> Result<R, Error<E>>) -> Result<R, Error<E>> {
        let running = Running {
            failures: &self.failures,
            finished: false,
        };
        let result = call();
        running.finish();
        if result.is_ok() {
            self.successes.incr();
        } else {
            self.failures.incr();
        }
        result
    }

    /// Books `n` permits and waits until they are ready.
    #[inline]
    fn admit(&self, n: u32) -> Result<(), Refusal> {
        if self.is_disposed() {
            return Err(Refusal::Disposed);
        }
        self.calls.incr();
        match self
            .core
            .reserve(n, self.options.queue_timeout, &self.timer)
        {
            Ok(booked) if booked.is_immediate() => Ok(()),
            Ok(booked) => self.wait_for(booked),
            Err(e) => Err(self.reject(e)),
        }
    }

    #[inline]
    fn try_admit(&self, n: u32) -> Result<(), Refusal> {
        if self.is_disposed() {
            return Err(Refusal::Disposed);
        }
        self.calls.incr();
        self.core
            .try_acquire_n(n, &self.timer)
            .map_err(|e| self.reject(e))
    }

    /// Parks until `booked` is ready, or until disposed.
    #[cold]
    fn wait_for(&self, booked: Reservation) -> Result<(), Refusal> {
        // Registered before the first check: `dispose` sets the flag, then
        // wakes the registered threads, so either this thread sees the flag
        // or it is unparked.
        let sleeping = self.sleepers.register();
        let ready_at = booked.ready_at();
        let outcome = loop {
            if self.is_disposed() {
                break Err(Refusal::Disposed);
            }
            if self.timer.now() >= ready_at {
                break Ok(());
            }
            self.timer.interruptible_sleep_until(ready_at);
        };
        drop(sleeping);
        if outcome.is_err() {
            // The latest booking can be handed back; others stay used.
            let _ = self.core.cancel(booked.into_token(), &self.timer);
        }
        outcome
    }

    fn reject(&self, e: RateLimitError) -> Refusal {
        let retry_after = e.retry_after().unwrap_or(Duration::MAX);
        self.rejections.incr();
        self.listeners.emit(|| {
            self.event(EventKind::Rejected {
                retry_after: Some(retry_after),
            })
        });
        Refusal::Limited(retry_after)
    }

    fn event(&self, kind: EventKind) -> Event {
        Event {
            pattern: PatternKind::RateLimiter,
            name: Arc::clone(&self.name),
            at: self.timer.now(),
            kind,
        }
    }
}

/// Counts a failure if the closure panics (unwinds past it).
struct Running<'a> {
    failures: &'a Counter,
    finished: bool,
}

impl Running<'_> {
    #[inline]
    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Running<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.finished {
            self.failures.incr();
        }
    }
}

impl<T: Timer> Policy for RateLimiter<T> {
    /// Runs `call` once a permit is available, as
    /// [`execute`](RateLimiter::execute) does; `call`'s errors pass through
    /// unchanged.
    #[inline]
    fn run<R, E: core::fmt::Display, F>(&self, call: F) -> Result<R, Error<E>>
    where
        F: FnMut() -> Result<R, Error<E>>,
    {
        self.guarded(call)
    }
}

impl<T: Timer> fmt::Debug for RateLimiter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.name)
            .field("options", &self.options)
            .field("disposed", &self.is_disposed())
            .finish_non_exhaustive()
    }
}
