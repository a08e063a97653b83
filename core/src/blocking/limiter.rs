//! The blocking rate limiter: callers that find no permit wait in a bounded
//! FIFO queue, or are refused at once when they could not be served within
//! `queue_timeout`.

use core::fmt;
use core::time::Duration;
use std::sync::Arc;

use super::home::Home;
use super::registry::{self, registered};
use super::shell::Shell;
use super::wait::WaitList;
use super::{Error, Event, EventKind, ListenerId, Metrics, PatternKind, Policy, Timer};
use crate::clock::MonotonicClock;
use crate::limiter::{RateLimitError, RateLimiter as Core, RateLimiterConfig, Reservation};
#[cfg(feature = "async")]
use core::{pin::Pin, task::Poll};

#[cfg(feature = "async")]
use super::async_call::{Admission, FirstLook, Keep, Lift, Wait, Wrap, counted};
#[cfg(feature = "async")]
use super::hooks::Traced;

/// Why a call was not admitted.
enum Refusal {
    Limited(Duration),
    Disposed,
    /// A Redis-backed limiter could not decide (a config mismatch, or
    /// Redis down under `FailClosed`).
    #[cfg(feature = "redis")]
    Redis(crate::redis::RedisError),
}

impl Refusal {
    fn into_error<E>(self) -> Error<E> {
        match self {
            Refusal::Limited(retry_after) => Error::RateLimited { retry_after },
            Refusal::Disposed => Error::Disposed,
            #[cfg(feature = "redis")]
            Refusal::Redis(e) => Error::Redis(e),
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
///
/// **After `fork`** the child has a copy of the limiter as it was
/// (bookings, counters, listeners) and only the forking thread. A booking
/// that another thread was waiting on at the fork stays booked in the
/// child's copy (it is a slot of the rate, which in the child nobody uses):
/// later bookings in the child queue after it as they would have in the
/// parent.
pub struct RateLimiter<T: Timer = MonotonicClock> {
    core: Home<Core>,
    /// Name, config, timer, listeners, dispose flag, registry entry,
    /// counters.
    shell: Shell<RateLimiterConfig, T>,
    /// Threads parked on a booking, for `dispose` to wake. Slow path only.
    sleepers: WaitList,
    /// The fleet's limiter in Redis, which then decides instead of `core`
    /// ([`RateLimiter::redis`]).
    #[cfg(feature = "redis")]
    redis: Option<Arc<crate::redis::RedisRateLimiter>>,
}

impl RateLimiter<MonotonicClock> {
    /// A rate limiter on the system's monotonic clock, registered as `name`
    /// (found again with [`get_limiter`](Self::get_limiter); the registry rules
    /// are those of [`CircuitBreaker::new`](super::CircuitBreaker::new)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first invalid option (see
    /// [`crate::limiter::RateLimiter::new`]); [`Error::NameTaken`] if a live
    /// rate limiter is registered as `name`.
    pub fn new(name: &str, config: RateLimiterConfig) -> Result<Arc<Self>, Error> {
        registry::register(name, || Self::unregistered(name, config))
    }

    fn shell(&self) -> &Shell<RateLimiterConfig, MonotonicClock> {
        &self.shell
    }
}

registered!(
    RateLimiter,
    RateLimiterConfig,
    "rate limiter",
    get_limiter,
    "RateLimiter.getLimiter"
);

#[cfg(feature = "shared-memory")]
impl RateLimiter<crate::shared::HostClock> {
    /// A rate limiter that every process on the host that opens `name`
    /// shares (feature `shared-memory`, Linux; see [`crate::shared`]): one
    /// limit for all of a pre-forked server's workers. Everything else is
    /// as for a local one (pipelines, `execute`, the FIFO queue of booked
    /// callers, which is the core's and so host-wide); events are this
    /// process's own. Not registered: the registry is per process.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an invalid config; [`Error::Shared`]
    /// when the region cannot be opened (a config that differs from the
    /// stored one, an incompatible file, a path that is not ours...).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use stockade::blocking::{Error, RateLimiter};
    /// use stockade::limiter::{Mode, RateLimiterConfig};
    /// use stockade::shared::SharedOptions;
    ///
    /// let config = RateLimiterConfig::DEFAULT.with_mode(Mode::Strict);
    /// let payments = RateLimiter::shared("payments", config, &SharedOptions::new())?;
    /// let charged = payments.execute(|| Ok::<_, ()>("charged"));
    /// assert!(matches!(charged, Ok("charged") | Err(Error::RateLimited { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn shared(
        name: &str,
        config: RateLimiterConfig,
        options: &crate::shared::SharedOptions,
    ) -> Result<Self, Error> {
        let region = crate::shared::Shared::<Core>::open(name, config, options)?;
        let config = *region.config();
        Ok(RateLimiter {
            core: Home::shared(region),
            shell: Shell::new(
                PatternKind::RateLimiter,
                name.into(),
                config,
                crate::shared::HostClock,
            ),
            sleepers: WaitList::default(),
            #[cfg(feature = "redis")]
            redis: None,
        })
    }
}

#[cfg(feature = "redis")]
impl RateLimiter<MonotonicClock> {
    /// A rate limiter that a whole fleet shares through the Redis server of
    /// `options` (feature `redis`; see [`crate::redis`] for what is exact,
    /// what the local fast paths cost, leasing and the fallback). Each
    /// decision is one script call on the key `<prefix>:v1:{limiter:<name>}`
    /// running the core's arithmetic in integer microseconds; queued
    /// callers book a slot in the fleet's queue and sleep here until it is
    /// ready (a caller woken by [`dispose`](Self::dispose) hands its
    /// booking back). Everything else is as for [`new`](Self::new): the
    /// same type on the same clock, registered as `name`, composing in
    /// pipelines, with events (also `StoreUnavailable` and `StoreRecovered`)
    /// and metrics (also `fallback_decisions`; `queue_depth` as this
    /// process last learnt it from Redis).
    ///
    /// Redis is not contacted here: it need not be up. A config that
    /// differs from the one stored in Redis is reported by the first call
    /// as [`Error::Redis`] with [`RedisError::ConfigMismatch`](crate::redis::RedisError::ConfigMismatch)
    /// (unless [`adopt_stored_config`](crate::redis::RedisOptions::adopt_stored_config)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an invalid config (or a lead beyond
    /// [`MAX_LEAD_MICROS`](crate::redis::MAX_LEAD_MICROS)); [`Error::Redis`]
    /// for invalid options, URL or name; [`Error::NameTaken`] as for `new`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use stockade::blocking::{Error, RateLimiter};
    /// use stockade::limiter::{Mode, RateLimiterConfig};
    /// use stockade::redis::{Fallback, RedisOptions};
    ///
    /// // 100 calls per minute for the whole fleet, never more in any minute.
    /// let config = RateLimiterConfig::DEFAULT
    ///     .with_requests_per_period(100)
    ///     .with_period(Duration::from_secs(60))
    ///     .with_mode(Mode::Strict);
    /// let options = RedisOptions::new("redis://127.0.0.1:6379/0")
    ///     .fallback(Fallback::Local)
    ///     .expected_instances(4); // 25 per minute each while Redis is down
    /// let partner = RateLimiter::redis("partner-api", config, &options)?;
    /// let answer = partner.execute(|| Ok::<_, std::io::Error>("called"));
    /// assert!(matches!(answer, Ok("called") | Err(Error::RateLimited { .. })));
    /// println!("{} decisions under the fallback", partner.metrics().fallback_decisions);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn redis(
        name: &str,
        config: RateLimiterConfig,
        options: &crate::redis::RedisOptions,
    ) -> Result<Arc<Self>, Error> {
        let limiter = registry::register(name, || {
            let engine = crate::redis::RedisRateLimiter::new(name, config, options)?;
            Ok(RateLimiter {
                core: Home::Local(Core::new(config)?),
                shell: Shell::new(
                    PatternKind::RateLimiter,
                    name.into(),
                    config,
                    MonotonicClock::new(),
                ),
                sleepers: WaitList::default(),
                redis: Some(Arc::new(engine)),
            })
        })?;
        if let Some(engine) = &limiter.redis {
            let weak = Arc::downgrade(&limiter);
            engine.set_listener(move |event| {
                if let Some(limiter) = weak.upgrade() {
                    limiter.shell.emit(match event {
                        crate::redis::StoreEvent::Unavailable(cause) => {
                            EventKind::StoreUnavailable { cause }
                        }
                        crate::redis::StoreEvent::Recovered => EventKind::StoreRecovered,
                    });
                }
            });
        }
        Ok(limiter)
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
        config: RateLimiterConfig,
        timer: T,
    ) -> Result<Self, Error> {
        let core = Core::new(config)?;
        Ok(RateLimiter {
            core: Home::Local(core),
            shell: Shell::new(PatternKind::RateLimiter, name.into(), config, timer),
            sleepers: WaitList::default(),
            #[cfg(feature = "redis")]
            redis: None,
        })
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        self.shell.name()
    }

    /// The config it was created with.
    pub fn config(&self) -> &RateLimiterConfig {
        self.shell.config()
    }

    /// The timer it waits on.
    pub fn timer(&self) -> &T {
        self.shell.timer()
    }

    /// `true` when the limiter is shared between processes
    /// ([`RateLimiter::shared`]).
    pub fn is_shared(&self) -> bool {
        self.core.is_shared()
    }

    /// The core state machine, for its read-only figures
    /// ([`emission_interval`](Core::emission_interval),
    /// [`burst`](Core::burst), [`available`](Core::available)...). For a
    /// Redis-backed limiter it is a local machine of the same config that
    /// takes no decisions (its figures of state, such as `available`, say
    /// nothing); ask `redis_limiter` (feature `redis`) instead.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The fleet's limiter in Redis, for a limiter made by
    /// [`RateLimiter::redis`] (feature `redis`).
    #[cfg(feature = "redis")]
    pub fn redis_limiter(&self) -> Option<&crate::redis::RedisRateLimiter> {
        self.redis.as_deref()
    }

    /// `true` for a limiter made by `RateLimiter::redis` (feature `redis`).
    pub fn is_redis(&self) -> bool {
        #[cfg(feature = "redis")]
        {
            self.redis.is_some()
        }
        #[cfg(not(feature = "redis"))]
        {
            false
        }
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
        self.shell.counters.successes.incr();
        Ok(())
    }

    /// Takes `n` permits as [`acquire`](Self::acquire) does, waiting at
    /// most `timeout` — and never longer than the config's `queue_timeout`
    /// (the config bounds every wait). A booking that would wait longer is
    /// refused at once and takes nothing; its exact `retry_after` is the
    /// wait it would have needed minus the wait it was allowed: after that
    /// long the same call is admitted (if nobody books meanwhile). `Duration::ZERO` never waits. Counted as one call, and as a
    /// success when granted.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire), with the shorter wait.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stockade::blocking::{Error, RateLimiter, VirtualClock};
    /// use stockade::limiter::RateLimiterConfig;
    ///
    /// // 10 per second: one permit every 100 ms once the burst is spent.
    /// let limiter = RateLimiter::with_timer("doc-acquire-timeout", RateLimiterConfig::DEFAULT, VirtualClock::auto_advance())?;
    /// limiter.acquire(10)?; // the whole burst
    /// // The next permit is 100 ms away: not within 30 ms; try again in 70.
    /// let refused = limiter.acquire_timeout(1, Duration::from_millis(30)).unwrap_err();
    /// assert!(matches!(refused, Error::RateLimited { retry_after } if retry_after == Duration::from_millis(70)));
    /// limiter.acquire_timeout(1, Duration::from_millis(100))?; // waits 100 ms
    /// # Ok::<(), Error>(())
    /// ```
    pub fn acquire_timeout(&self, n: u32, timeout: Duration) -> Result<(), Error> {
        self.admit_within(n, timeout).map_err(Refusal::into_error)?;
        self.shell.counters.successes.incr();
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
        self.shell.counters.successes.incr();
        Ok(())
    }

    /// Calls `listener` for every event: `Rejected` (with `retry_after`) and
    /// `Disposed`. (Booked callers never time out, so there is no
    /// `QueueTimeout` event.)
    pub fn subscribe(&self, listener: impl Fn(&Event) + Send + Sync + 'static) -> ListenerId {
        self.shell.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shell.unsubscribe(id)
    }

    /// A snapshot of the counters.
    ///
    /// `calls` counts the executions and acquisitions that finished: each
    /// is one of `successes`, `failures` (the closure returned an error or
    /// panicked) and `rejections` ([`Error::RateLimited`]). Calls refused
    /// because the limiter was disposed are not counted. `queue_depth` is the
    /// core's: permits booked but not yet ready.
    ///
    /// A Redis-backed limiter (`RateLimiter::redis`, feature `redis`)
    /// reports the `queue_depth` this process last learnt from Redis (other
    /// hosts may have booked since), counts `fallback_decisions`, and
    /// counts its refusals for Redis's sake ([`Error::Redis`]: a config
    /// mismatch, or Redis down under `FailClosed`) as `rejections` too.
    pub fn metrics(&self) -> Metrics {
        #[cfg(feature = "redis")]
        if let Some(engine) = &self.redis {
            return Metrics {
                queue_depth: u64::from(engine.queue_depth()),
                fallback_decisions: engine.fallback_decisions(),
                ..self.shell.counters.metrics()
            };
        }
        Metrics {
            queue_depth: u64::from(self.core.queue_depth(self.timer())),
            ..self.shell.counters.metrics()
        }
    }

    /// `true` once [`dispose`](Self::dispose) was called.
    pub fn is_disposed(&self) -> bool {
        self.shell.is_disposed()
    }

    /// Shuts the limiter down: callers waiting for their turn wake with
    /// [`Error::Disposed`] (handing their bookings back where the core
    /// allows), later calls fail with `Disposed`, a `Disposed` event is
    /// emitted, listeners are removed and the registry forgets the
    /// instance. Calling it again does nothing.
    pub fn dispose(&self) {
        if !self.shell.begin_dispose() {
            return;
        }
        self.sleepers.wake_all();
        self.shell.finish_dispose();
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
        let running = self.shell.running();
        let result = call();
        running.finish(&result);
        result
    }

    /// Books `n` permits and waits until they are ready.
    #[inline]
    fn admit(&self, n: u32) -> Result<(), Refusal> {
        self.admit_within(n, self.config().queue_timeout)
    }

    /// Books `n` permits if they are ready within `max_wait` (the core caps
    /// it at `queue_timeout`) and waits until they are.
    #[inline]
    fn admit_within(&self, n: u32, max_wait: Duration) -> Result<(), Refusal> {
        if self.is_disposed() {
            return Err(Refusal::Disposed);
        }
        #[cfg(feature = "redis")]
        if let Some(engine) = &self.redis {
            return self.redis_admit(engine, n, max_wait);
        }
        match self.core.reserve(n, max_wait, self.timer()) {
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
        #[cfg(feature = "redis")]
        if let Some(engine) = &self.redis {
            return engine
                .try_acquire(n)
                .map(drop)
                .map_err(|e| self.refuse_redis(e));
        }
        self.core
            .try_acquire_n(n, self.timer())
            .map_err(|e| self.reject(e))
    }

    /// Books `n` permits in the fleet's queue and waits until they are
    /// ready; a caller woken by `dispose` hands its booking back.
    #[cfg(feature = "redis")]
    #[inline(never)]
    fn redis_admit(
        &self,
        engine: &crate::redis::RedisRateLimiter,
        n: u32,
        max_wait: Duration,
    ) -> Result<(), Refusal> {
        match engine.reserve(n, max_wait) {
            Ok(booked) if booked.is_immediate() => Ok(()),
            Ok(booked) => {
                let outcome = self.sleep_until_ready(booked.ready_at());
                if outcome.is_err() {
                    // The latest booking can be handed back; others stay used.
                    let _ = engine.cancel(booked);
                }
                outcome
            }
            Err(e) => Err(self.refuse_redis(e)),
        }
    }

    /// A Redis-backed refusal: the limit's (counted as usual), or Redis's
    /// (a config mismatch; Redis down under `FailClosed`), counted as a
    /// rejection too.
    #[cfg(feature = "redis")]
    #[cold]
    fn refuse_redis(&self, e: crate::redis::RedisLimitError) -> Refusal {
        match e {
            crate::redis::RedisLimitError::Limited(e) => self.reject(e),
            crate::redis::RedisLimitError::Redis(e) => {
                let retry_after = match &e {
                    crate::redis::RedisError::Unavailable { retry_after, .. } => *retry_after,
                    _ => None,
                };
                self.shell.counters.rejections.incr();
                self.shell.emit(EventKind::Rejected { retry_after });
                Refusal::Redis(e)
            }
        }
    }

    /// Parks until `booked` is ready, or until disposed.
    #[cold]
    fn wait_for(&self, booked: Reservation) -> Result<(), Refusal> {
        let outcome = self.sleep_until_ready(booked.ready_at());
        if outcome.is_err() {
            // The latest booking can be handed back; others stay used.
            let _ = self.core.cancel(booked.into_token(), self.timer());
        }
        outcome
    }

    /// Parks until the timer reaches `ready_at`, or until disposed.
    fn sleep_until_ready(&self, ready_at: crate::clock::Timestamp) -> Result<(), Refusal> {
        // Registered before the first check: `dispose` sets the flag, then
        // wakes the registered threads, so either this thread sees the flag
        // or it is unparked.
        let sleeping = self.sleepers.register();
        let outcome = loop {
            if self.is_disposed() {
                break Err(Refusal::Disposed);
            }
            if self.timer().now() >= ready_at {
                break Ok(());
            }
            self.timer().interruptible_sleep_until(ready_at);
        };
        drop(sleeping);
        outcome
    }

    fn reject(&self, e: RateLimitError) -> Refusal {
        let retry_after = e.retry_after().unwrap_or(Duration::MAX);
        self.shell.counters.rejections.incr();
        self.shell.emit(EventKind::Rejected {
            retry_after: Some(retry_after),
        });
        Refusal::Limited(retry_after)
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

// --- Async (feature `async`) ------------------------------------------------

#[cfg(feature = "async")]
impl<T: super::AsyncTimer> RateLimiter<T> {
    /// Awaits `call` once a permit is available: [`execute`](Self::execute)
    /// for a future, on the same limiter (permits, events and metrics
    /// shared with blocking callers). The reservation is made at once
    /// without blocking; if it is for later, the task sleeps on the
    /// [`AsyncTimer`](super::AsyncTimer) until it is ready (no thread is
    /// held). A call that could not be served within `queue_timeout` is
    /// refused at once, as in the blocking form.
    ///
    /// **Dropping the returned future** while it sleeps cancels its
    /// reservation, exactly as a blocking waiter that gives up does: the
    /// latest reservation is handed back (the next caller may use its
    /// slot); an earlier one, with later reservations booked behind it,
    /// stays used. A dropped call is not counted.
    /// [`dispose`](Self::dispose) wakes sleeping tasks with
    /// [`Error::Disposed`].
    ///
    /// A limiter made by [`redis`](Self::redis) books its reservation in
    /// Redis without blocking the thread that polls: a decision that needs
    /// no round trip (a leased permit, a refusal this process's last view
    /// of the fleet implies) is taken at once; otherwise the round trip
    /// runs on one of the Redis store's I/O threads (at most the options'
    /// `max_connections` per server and settings, started on demand, each
    /// exiting after 60 s idle; callers beyond them wait their turn in
    /// FIFO order, and that wait is not bounded by `command_timeout`) and
    /// the task is woken when it lands. Then the task sleeps here until the
    /// booking is ready. **Dropped while the round trip is in flight**, the
    /// call does not stop it: when it lands, a booking that has to wait is
    /// handed back on an I/O thread as above (latest booking: freed; an
    /// earlier one stays used), and a grant of permits available at once
    /// is spent, as a blocking call that returned it. Handing back is also
    /// done on an I/O thread when the future is dropped while it sleeps.
    /// Should the OS refuse to start any I/O thread, the round trip runs on
    /// the thread that polls (blocking it for up to `command_timeout`) and
    /// a hand-back is skipped (the slot stays used, as when Redis does not
    /// answer). A shared-memory limiter decides in its region without
    /// blocking.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use std::time::Duration;
    /// use stockade::blocking::{Error, RateLimiter, TokioClock};
    /// use stockade::limiter::RateLimiterConfig;
    ///
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    /// # runtime.block_on(async {
    /// // 10 per second, no burst: the second call waits 100 ms (paused time).
    /// let config = RateLimiterConfig::DEFAULT.with_requests_per_period(10).with_burst(1);
    /// let limiter = RateLimiter::with_timer("doc-limiter-async", config, TokioClock::new())?;
    /// let start = tokio::time::Instant::now();
    /// for _ in 0..2 {
    ///     limiter.execute_async(async { Ok::<_, ()>(()) }).await.unwrap();
    /// }
    /// assert_eq!(start.elapsed(), Duration::from_millis(100));
    /// # Ok::<(), Error>(())
    /// # }).unwrap();
    /// # }
    /// ```
    pub fn execute_async<R, E>(
        &self,
        call: impl core::future::Future<Output = Result<R, E>>,
    ) -> impl core::future::Future<Output = Result<R, Error<E>>> {
        self.limited_async::<_, Wrap>(call)
    }

    /// Awaits `call` once a permit is booked (see [`LimitedCall`]); `L`
    /// turns the call's error into the result's.
    #[inline]
    pub(crate) fn limited_async<F, L>(&self, call: F) -> Traced<'_, LimitedCall<'_, T, F, L>> {
        Traced::new(
            PatternKind::RateLimiter,
            self.name(),
            LimitedCall {
                limiter: self,
                stage: Admission::Start,
                lift: core::marker::PhantomData,
                call,
            },
        )
    }

    /// [`acquire`](Self::acquire) for a task: takes `n` permits, sleeping
    /// without blocking until they are ready (at most `queue_timeout`);
    /// dropping the future cancels the reservation as
    /// [`execute_async`](Self::execute_async) says.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn acquire_async(&self, n: u32) -> impl core::future::Future<Output = Result<(), Error>> {
        self.acquire_within_async(n, self.config().queue_timeout)
    }

    /// [`acquire_timeout`](Self::acquire_timeout) for a task: as
    /// [`acquire_async`](Self::acquire_async), waiting at most
    /// `min(timeout, queue_timeout)`.
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Self::acquire_timeout).
    pub fn acquire_timeout_async(
        &self,
        n: u32,
        timeout: Duration,
    ) -> impl core::future::Future<Output = Result<(), Error>> {
        self.acquire_within_async(n, timeout.min(self.config().queue_timeout))
    }

    /// The future of the async acquisitions ([`Acquire`]).
    #[inline]
    fn acquire_within_async(
        &self,
        n: u32,
        max_wait: Duration,
    ) -> impl core::future::Future<Output = Result<(), Error>> {
        Acquire {
            limiter: self,
            n,
            max_wait,
            booked: false,
            waiting: None,
        }
    }

    /// Books `n` permits without waiting: ready now, ready later, refused
    /// (or, for a Redis-backed limiter, left to [`wait_booked`](Self::wait_booked)).
    #[inline(always)]
    fn book(&self, n: u32, max_wait: Duration) -> Booked {
        if self.is_disposed() {
            return Booked::Refused(Refusal::Disposed);
        }
        #[cfg(feature = "redis")]
        if self.redis.is_some() {
            return Booked::Fleet(n, max_wait);
        }
        // Permits free now are taken by the plain check-and-set (the
        // grant a reservation would make, without its bookkeeping); only
        // a caller who finds none books a place in the queue.
        match self.core.try_acquire_n(n, self.timer()) {
            Ok(()) => Booked::Now,
            Err(_) => self.book_later(n, max_wait),
        }
    }

    /// [`book`](Self::book) when no permit was free at the first look:
    /// books through the core's queue (which grants at once if permits
    /// became free meanwhile). Out of line: not the healthy path.
    #[cold]
    #[inline(never)]
    fn book_later(&self, n: u32, max_wait: Duration) -> Booked {
        match self.core.reserve(n, max_wait, self.timer()) {
            Ok(booked) if booked.is_immediate() => Booked::Now,
            Ok(booked) => Booked::Later(booked.ready_at(), booked.into_token()),
            Err(e) => Booked::Refused(self.reject(e)),
        }
    }

    /// Waits for a booking that is not ready now; a dropped future cancels
    /// the reservation.
    async fn wait_booked(&self, booked: Booked) -> Result<(), Refusal> {
        match booked {
            Booked::Now => Ok(()),
            Booked::Refused(refusal) => Err(refusal),
            Booked::Later(ready_at, token) => {
                let owed = CancelOnDrop(Some(move || {
                    let _ = self.core.cancel(token, self.timer());
                }));
                self.sleep_async(ready_at, owed).await
            }
            #[cfg(feature = "redis")]
            Booked::Fleet(n, max_wait) => {
                let Some(engine) = &self.redis else {
                    unreachable!("a fleet booking comes from a Redis-backed limiter")
                };
                // The round trip runs on the store's I/O threads.
                match engine.reserve_async(n, max_wait).await {
                    Ok(booked) if booked.is_immediate() => Ok(()),
                    Ok(booked) => {
                        let ready_at = booked.ready_at();
                        let owed = CancelOnDrop(Some(move || engine.cancel_off_thread(booked)));
                        self.sleep_async(ready_at, owed).await
                    }
                    Err(e) => Err(self.refuse_redis(e)),
                }
            }
        }
    }

    /// Sleeps until `ready_at`; `owed` cancels the reservation unless the
    /// sleep reached it (a dispose, or the future dropped).
    async fn sleep_async(
        &self,
        ready_at: crate::clock::Timestamp,
        mut owed: CancelOnDrop<impl FnOnce()>,
    ) -> Result<(), Refusal> {
        let ready = super::async_timer::sleep_until_or_disposed(
            self.timer(),
            &self.sleepers,
            ready_at,
            || self.is_disposed(),
        )
        .await;
        if ready {
            owed.0 = None;
            Ok(())
        } else {
            Err(Refusal::Disposed)
        }
    }
}

/// A booking made without waiting (feature `async`).
#[cfg(feature = "async")]
enum Booked {
    /// The permits are taken.
    Now,
    /// Ready at this time: the reservation's token, to cancel it.
    Later(crate::clock::Timestamp, crate::limiter::ReservationToken),
    /// Refused (counted, with its event).
    Refused(Refusal),
    /// A Redis-backed limiter: `n` permits within `max_wait`, to book in
    /// Redis ([`RateLimiter::wait_booked`], off the polling thread).
    #[cfg(feature = "redis")]
    Fleet(u32, Duration),
}

/// Cancels a reservation on drop unless disarmed (set to `None`).
#[cfg(feature = "async")]
struct CancelOnDrop<F: FnOnce()>(Option<F>);

#[cfg(feature = "async")]
impl<F: FnOnce()> Drop for CancelOnDrop<F> {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            cancel();
        }
    }
}

/// An async acquisition (`acquire_async`, `acquire_timeout_async`),
/// written by hand (feature `async`): `n` permits booked at its first
/// poll, taken at once when free (a check-and-set, counted as a success);
/// only a booking that must wait makes its (boxed) sleep, whose drop hands
/// the reservation back as [`RateLimiter::execute_async`] says. Kept to a
/// few words and no drop work on the healthy path: the bare acquisition is
/// measured against governor's.
#[cfg(feature = "async")]
struct Acquire<'a, T: Timer> {
    limiter: &'a RateLimiter<T>,
    n: u32,
    max_wait: Duration,
    /// Booked (at the first poll).
    booked: bool,
    /// The sleep of a booking that must wait; `None` when there is none,
    /// or once it ended.
    waiting: Option<Wait<'a, Result<(), Refusal>>>,
}

#[cfg(feature = "async")]
impl<T: super::AsyncTimer> core::future::Future for Acquire<'_, T> {
    type Output = Result<(), Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> Poll<Self::Output> {
        // No field is pinned: the waiting future is boxed.
        let this = self.get_mut();
        if !this.booked {
            this.booked = true;
            let limiter = this.limiter;
            match limiter.book(this.n, this.max_wait) {
                Booked::Now => {
                    limiter.shell.counters.successes.incr();
                    return Poll::Ready(Ok(()));
                }
                Booked::Refused(refusal) => return Poll::Ready(Err(refusal.into_error())),
                booked => this.waiting = Some(std::boxed::Box::pin(limiter.wait_booked(booked))),
            }
        }
        this.poll_waiting(cx)
    }
}

#[cfg(feature = "async")]
impl<T: super::AsyncTimer> Acquire<'_, T> {
    /// An acquisition that must wait. Out of line: one admitted at once
    /// never runs it.
    #[inline(never)]
    fn poll_waiting(&mut self, cx: &mut core::task::Context<'_>) -> Poll<Result<(), Error>> {
        let Some(waiting) = self.waiting.as_mut() else {
            panic!("a rate limiter's acquisition polled after it completed")
        };
        let waited = core::task::ready!(waiting.as_mut().poll(cx));
        // Ended (a refused wait handed its booking back as it ended).
        self.waiting = None;
        Poll::Ready(match waited {
            Ok(()) => {
                self.limiter.shell.counters.successes.incr();
                Ok(())
            }
            Err(refusal) => Err(refusal.into_error()),
        })
    }
}

#[cfg(feature = "async")]
impl<T: super::AsyncTimer> super::AsyncPolicy for RateLimiter<T> {
    /// Awaits `call` once a permit is available, as
    /// [`execute_async`](RateLimiter::execute_async) does; `call`'s errors
    /// pass through unchanged.
    fn run_async<R, E, F, Fut>(
        &self,
        call: F,
    ) -> impl core::future::Future<Output = Result<R, Error<E>>>
    where
        E: core::fmt::Display,
        F: Fn() -> Fut + Clone,
        Fut: core::future::Future<Output = Result<R, Error<E>>>,
    {
        self.limited_async::<_, Keep>(call())
    }
}

#[cfg(feature = "async")]
pin_project_lite::pin_project! {
    /// A future run once a limiter's permit is booked (`execute_async`, the
    /// async policy's and the tower layer's): booked at its first poll,
    /// sleeping (boxed) only for a reservation that is not ready at once;
    /// dropping that sleep cancels the reservation. Dropped while running
    /// it counts nothing (a failure only while a panic unwinds).
    pub(crate) struct LimitedCall<'a, T: Timer, F, L> {
        limiter: &'a RateLimiter<T>,
        stage: Admission<'a, (), Refusal>,
        lift: core::marker::PhantomData<fn() -> L>,
        #[pin]
        call: F,
    }
    impl<'a, T: Timer, F, L> PinnedDrop for LimitedCall<'a, T, F, L> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if this.stage.finish().is_some() && std::thread::panicking() {
                this.limiter.shell.counters.failures.incr();
            }
        }
    }
}

#[cfg(feature = "async")]
impl<T, F, R, X, L> core::future::Future for LimitedCall<'_, T, F, L>
where
    T: super::AsyncTimer,
    F: core::future::Future<Output = Result<R, X>>,
    L: Lift<X>,
{
    type Output = Result<R, Error<L::Caller>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let limiter: &RateLimiter<T> = this.limiter;
        let first_look = || match limiter.book(1, limiter.config().queue_timeout) {
            Booked::Now => FirstLook::Admitted(()),
            Booked::Refused(refusal) => FirstLook::Refused(refusal),
            booked => FirstLook::Wait(std::boxed::Box::pin(limiter.wait_booked(booked))),
        };
        if let Err(refusal) =
            core::task::ready!(this.stage.poll_admitted(cx, first_look, "a rate limiter"))
        {
            return Poll::Ready(Err(refusal.into_error()));
        }
        let out = core::task::ready!(this.call.poll(cx));
        this.stage.finish();
        Poll::Ready(counted::<R, X, L>(&limiter.shell.counters, out))
    }
}

impl<T: Timer> fmt::Debug for RateLimiter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shell.debug(f, "RateLimiter", |_| {})
    }
}
