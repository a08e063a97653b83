//! The blocking bulkhead: at most `max_concurrent` closures at once, a
//! bounded FIFO of parked callers behind them.

use core::fmt;
use core::time::Duration;
use std::collections::VecDeque;
use std::sync::Arc;

use super::registry::{self, registered};
use super::shell::Shell;
use super::{Error, Event, EventKind, ListenerId, Metrics, PatternKind, Policy, Timer};
use crate::bulkhead::{
    Bulkhead as Core, BulkheadConfig, BulkheadCounts, BulkheadPermit, BulkheadToken, LeaveQueue,
    NotHeld, QueuedAcquire, RawAdmission,
};
use crate::clock::MonotonicClock;
use crate::sync::thread::{self, Thread};
use crate::sync::{self, AtomicU32, AtomicU64, Mutex, Ordering};
#[cfg(feature = "async")]
use core::{pin::Pin, task::Poll};

#[cfg(feature = "async")]
use super::async_call::{Admission, FirstLook, Keep, Lift, Wrap, counted};
#[cfg(feature = "async")]
use super::hooks::Traced;

/// A waiter is parked, not yet admitted.
const WAITING: u32 = 0;
/// A releaser took a permit for the waiter: it holds it now.
const GRANTED: u32 = 1;
/// The bulkhead was disposed while the waiter was queued.
const DISPOSED: u32 = 2;

/// How a waiter is woken: a parked thread, or a task (feature `async`).
enum Wake {
    Thread(Thread),
    /// The task's latest waker, set under the queue lock at each poll.
    #[cfg(feature = "async")]
    Task(Mutex<Option<core::task::Waker>>),
}

impl Wake {
    /// Wakes the waiter. Call under the queue lock, after its state moved.
    fn wake(&self) {
        match self {
            Wake::Thread(thread) => thread.unpark(),
            #[cfg(feature = "async")]
            Wake::Task(waker) => {
                if let Some(waker) = waker.lock().take() {
                    waker.wake();
                }
            }
        }
    }
}

/// A queued caller (a parked thread or a waiting task, in one FIFO).
/// `state` and `granted` are written only under the queue lock.
struct Waiter {
    wake: Wake,
    state: AtomicU32,
    /// The granted permit's counts (`in_use | queued << 32`), written
    /// before `state` becomes [`GRANTED`].
    granted: AtomicU64,
}

impl Waiter {
    /// Hands the waiter a permit taken on its behalf. Call under the queue
    /// lock.
    fn grant(&self, token: BulkheadToken) {
        let c = token.granted();
        self.granted.store(
            u64::from(c.in_use) | u64::from(c.queued) << 32,
            Ordering::Relaxed,
        );
        self.state.store(GRANTED, Ordering::Release);
        self.wake.wake();
    }

    /// The permit a releaser granted (after `state` read [`GRANTED`] with
    /// `Acquire`), as the core's guard.
    fn permit<'a>(&self, core: &'a Core) -> BulkheadPermit<'a> {
        let g = self.granted.load(Ordering::Relaxed);
        BulkheadPermit::from_token(
            core,
            BulkheadToken::from_counts(BulkheadCounts {
                in_use: g as u32,
                queued: (g >> 32) as u32,
            }),
        )
    }
}

/// Why a call was not admitted.
enum Refusal {
    Full,
    Timeout(Duration),
    Disposed,
    /// A shared bulkhead's owner slot could not be taken (a forked child).
    #[cfg(feature = "shared-memory")]
    Owner(crate::shared::SharedError),
    /// A Redis bulkhead's config differs from the stored one, or Redis did
    /// not answer and the fallback is `FailClosed`.
    /// Boxed: the local path's result stays as small as before.
    #[cfg(feature = "redis")]
    Redis(std::boxed::Box<crate::redis::RedisError>),
}

impl Refusal {
    fn into_error<E>(self) -> Error<E> {
        match self {
            Refusal::Full => Error::BulkheadFull,
            Refusal::Timeout(waited) => Error::QueueTimeout { waited },
            Refusal::Disposed => Error::Disposed,
            #[cfg(feature = "shared-memory")]
            Refusal::Owner(e) => Error::Shared(e),
            #[cfg(feature = "redis")]
            Refusal::Redis(e) => Error::Redis(*e),
        }
    }
}

/// A permit held for a caller: of the bulkhead's own machine, or of one
/// shared between processes.
enum Held<'a> {
    Local(BulkheadPermit<'a>),
    #[cfg(feature = "shared-memory")]
    Shared(crate::shared::SharedPermit<'a>),
    /// A fleet-wide lease in Redis.
    /// Of a bulkhead on Redis. Boxed: the local path's permit stays as
    /// small as before (16 bytes).
    #[cfg(feature = "redis")]
    Redis(std::boxed::Box<RedisHeld<'a>>),
}

/// What a bulkhead on Redis holds for a caller.
#[cfg(feature = "redis")]
enum RedisHeld<'a> {
    /// A fleet-wide lease in Redis.
    Lease(crate::redis::RedisLease<'a>),
    /// Admitted without a permit: Redis did not answer and the fallback is
    /// `FailOpen` (counted in the backend's `open`).
    Open,
}

impl Held<'_> {
    fn into_token(self) -> BulkheadToken {
        match self {
            Held::Local(p) => p.into_token(),
            #[cfg(feature = "shared-memory")]
            Held::Shared(p) => BulkheadToken::from_counts(p.into_token().granted()),
            #[cfg(feature = "redis")]
            Held::Redis(held) => match *held {
                RedisHeld::Lease(lease) => BulkheadToken::from_counts(lease.into_token()),
                RedisHeld::Open => BulkheadToken::from_counts(BulkheadCounts::default()),
            },
        }
    }
}

/// Isolates a resource: at most `max_concurrent` closures run at once, up
/// to `max_queue` callers wait for a turn in FIFO order, each for at most
/// `queue_timeout`; beyond that callers are refused at once with
/// [`Error::BulkheadFull`].
///
/// Options are the core's [`BulkheadConfig`] (`max_concurrent` 10,
/// `max_queue` 100, `queue_timeout` 30 s). A waiter parks on the
/// [`Timer`] (no spinning) and is handed a permit directly by the caller
/// that releases it; see [How it waits](#how-it-waits).
///
/// A closure that panics still returns its permit; the panic continues to
/// the caller.
///
/// # Examples
///
/// The spec's usage:
///
/// ```
/// use stockade::blocking::{Bulkhead, Error};
/// use stockade::bulkhead::BulkheadConfig;
///
/// # struct Api;
/// # impl Api { fn fetch_data(&self) -> Result<&'static str, std::io::Error> { Ok("data") } }
/// # let api = Api;
/// // Create a bulkhead
/// let bulkhead = Bulkhead::new(
///     "apiRequests",
///     BulkheadConfig { max_concurrent: 10, max_queue: 20, ..Default::default() },
/// )?;
///
/// // Execute with bulkhead protection
/// let result = bulkhead.execute(|| api.fetch_data());
/// assert_eq!(result.unwrap(), "data");
/// # Ok::<(), Error>(())
/// ```
///
/// # How it waits
///
/// The counts live in the lock-free core [`crate::bulkhead::Bulkhead`]
/// (permits in use and callers queued, in one atomic word). This layer adds
/// the FIFO of parked threads, a `Mutex<VecDeque<Arc<Waiter>>>`
/// that only the slow path touches:
///
/// * **Fast path** — a permit is free and nobody is queued: one CAS in the
///   core, no lock, no clock read, no allocation. A release that finds
///   nobody queued is one CAS too.
/// * **Slow path** — under the queue lock the caller asks the core to
///   [`enqueue`](crate::bulkhead::Bulkhead::enqueue_raw) it (which still
///   hands out a free permit when nobody is queued, and refuses when the
///   queue holds `max_queue` callers), pushes itself to the back of the FIFO
///   and parks on the [`Timer`] until its deadline (`queue_timeout` after it
///   queued).
/// * **Hand-off** — a release that finds callers queued takes the lock and
///   *grants* permits to the front of the FIFO: for each front waiter it
///   takes a permit from the core on the waiter's behalf
///   ([`acquire_queued_raw`](crate::bulkhead::Bulkhead::acquire_queued_raw),
///   which also removes it from the core's queue count), pops it, marks it
///   granted and unparks it. The core refuses newcomers while anyone is
///   queued, so a freed permit cannot be stolen between the release and the
///   grant (no barging), and FIFO order holds.
/// * **Timeout** — a waiter whose deadline passed takes the lock: if it was
///   granted meanwhile it runs (the grant came first and it holds the
///   permit); otherwise it removes itself from the FIFO and the core's
///   count and, if a permit is free, grants it to the next waiter, so no
///   wake-up is lost and no permit leaks.
/// * **Dispose** — under the lock, every queued waiter leaves the core's
///   queue, is marked disposed and unparked; it returns
///   [`Error::Disposed`].
/// * **Tasks** (feature `async`, `execute_async`) join the same FIFO as
///   threads. A waiting task records its `Waker` under the queue lock at
///   each poll, so a grant or a dispose (made under that lock) always
///   wakes its latest waker. Its future, dropped while queued, takes the
///   lock and leaves as a timed-out waiter does (granting a free permit to
///   the next); dropped after a grant it was not polled for since, it
///   releases that permit through the usual path, which grants it to the
///   next waiter.
///
/// Because every change of the core's queue count happens under the queue
/// lock together with the matching FIFO change, the FIFO length equals the
/// core's `queued` whenever the lock is free. Releases happen outside the
/// lock; one that sees waiters always takes the lock and grants, so a free
/// permit never sits next to a parked waiter.
///
/// **After `fork`** the child has a copy of the bulkhead as it was (counts,
/// queue, counters, listeners) and only the forking thread. Permits and
/// queue places of the forking thread are its own and are given back in
/// the child as usual. A permit or queue place that *another* thread held
/// at the fork stays taken in the child's copy, as that thread does not
/// exist there to give it back: fork while no other thread is inside the
/// bulkhead, or create the bulkhead after forking.
pub struct Bulkhead<T: Timer = MonotonicClock> {
    core: Core,
    /// A bulkhead shared between processes ([`Bulkhead::shared`]): every
    /// permit is its, waiters poll it, and `core` and `waiters` are unused.
    #[cfg(feature = "shared-memory")]
    shared: Option<crate::shared::SharedBulkhead>,
    /// A bulkhead shared by a fleet through Redis ([`Bulkhead::redis`]):
    /// its permits are leases in Redis; `core` is the local fallback.
    #[cfg(feature = "redis")]
    redis: Option<std::boxed::Box<RedisBackend>>,
    /// `true` when `shared` or `redis` is set: the local path's one test.
    #[cfg(any(feature = "shared-memory", feature = "redis"))]
    external: bool,
    /// Name, config, timer, listeners, dispose flag, registry entry,
    /// counters.
    shell: Shell<BulkheadConfig, T>,
    /// Parked callers, front first. Touched only on the slow path.
    waiters: Mutex<VecDeque<sync::Arc<Waiter>>>,
}

impl Bulkhead<MonotonicClock> {
    /// A bulkhead on the system's monotonic clock, registered as `name`
    /// (found again with [`get_bulkhead`](Self::get_bulkhead); the registry rules
    /// are those of [`CircuitBreaker::new`](super::CircuitBreaker::new)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first invalid option (see
    /// [`crate::bulkhead::Bulkhead::new`]); [`Error::NameTaken`] if a live
    /// bulkhead is registered as `name`.
    pub fn new(name: &str, config: BulkheadConfig) -> Result<Arc<Self>, Error> {
        registry::register(name, || Self::unregistered(name, config))
    }

    fn shell(&self) -> &Shell<BulkheadConfig, MonotonicClock> {
        &self.shell
    }
}

registered!(
    Bulkhead,
    BulkheadConfig,
    "bulkhead",
    get_bulkhead,
    "Bulkhead.getBulkhead"
);

#[cfg(feature = "shared-memory")]
impl Bulkhead<crate::shared::HostClock> {
    /// A bulkhead that every process on the host that opens `name` shares
    /// (feature `shared-memory`, Linux): at most `max_concurrent` calls run
    /// at once host-wide, and the permits of a process that dies come back
    /// (see [`SharedBulkhead`](crate::shared::SharedBulkhead) for how, and
    /// for the bound). Everything else is as for a local bulkhead, except
    /// waiting: a caller that finds every permit held polls (50 µs doubling
    /// to 1 ms) for up to `queue_timeout`, with no FIFO across processes;
    /// `max_queue` bounds the waiters host-wide. `in_flight` and
    /// `queue_depth` are host-wide; the other counters and the events are
    /// this process's. A token ([`BulkheadGuard::into_token`]) given to
    /// [`release_token`](Bulkhead::release_token) returns one of the
    /// permits this process holds ([`NotHeld`] when it holds none). Not
    /// registered: the registry is per process.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an invalid config; [`Error::Shared`]
    /// when the region cannot be opened or every owner slot is taken.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use stockade::blocking::{Bulkhead, Error};
    /// use stockade::bulkhead::BulkheadConfig;
    /// use stockade::shared::SharedOptions;
    ///
    /// let config = BulkheadConfig::DEFAULT.with_max_concurrent(4);
    /// let database = Bulkhead::shared("database", config, &SharedOptions::new())?;
    /// let rows = database.execute(|| Ok::<_, ()>(7));
    /// # let _ = rows;
    /// # Ok::<(), Error>(())
    /// ```
    pub fn shared(
        name: &str,
        config: BulkheadConfig,
        options: &crate::shared::SharedOptions,
    ) -> Result<Self, Error> {
        let shared = crate::shared::SharedBulkhead::open(name, config, options)?;
        let config = *shared.config();
        let core = Core::new(config)?;
        Ok(Bulkhead {
            core,
            shared: Some(shared),
            #[cfg(feature = "redis")]
            redis: None,
            external: true,
            shell: Shell::new(
                PatternKind::Bulkhead,
                name.into(),
                config,
                crate::shared::HostClock,
            ),
            waiters: Mutex::new(VecDeque::new()),
        })
    }
}

/// A Redis bulkhead's parts beside the local machine (which is its
/// fallback).
#[cfg(feature = "redis")]
struct RedisBackend {
    engine: crate::redis::RedisBulkhead,
    fallback: crate::redis::Fallback,
    availability: crate::redis::store::Availability,
    fallback_decisions: super::events::Counter,
    /// Calls admitted by `FailOpen` and not yet released.
    open: core::sync::atomic::AtomicU32,
    /// This process's callers waiting in the fleet's queue.
    waiting: core::sync::atomic::AtomicU32,
}

#[cfg(feature = "redis")]
impl RedisBackend {
    /// Counts one fail-open admission released; `false` if none is left.
    fn take_open(&self) -> bool {
        use core::sync::atomic::Ordering::Relaxed;
        self.open
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

#[cfg(feature = "redis")]
impl Bulkhead<MonotonicClock> {
    /// A bulkhead that every process using the same Redis server, key
    /// prefix and `name` shares (feature `redis`): at most
    /// `max_concurrent` calls run at once **fleet-wide**. Permits are
    /// leases in Redis with an expiry judged by Redis's clock, renewed by
    /// this process while its calls run, so a host that dies returns its
    /// permits within `lease_ttl` (default 30 s); see
    /// [`RedisBulkhead`](crate::redis::RedisBulkhead) for how it counts,
    /// what a failed renewal allows, and the keys.
    ///
    /// It is the same type as [`new`](Self::new) returns, registered the
    /// same way, and composes in pipelines; these differ:
    ///
    /// * **Waiting:** a caller that finds no permit joins the fleet's queue
    ///   if fewer than `max_queue` callers wait fleet-wide, and polls Redis
    ///   (1 ms doubling to 50 ms) for up to `queue_timeout`; the queue is
    ///   FIFO across hosts by join time on Redis's clock. A waiter that
    ///   times out or is disposed leaves the queue (one script call). A
    ///   caller may return after its `queue_timeout` by the time of its
    ///   last poll and of that call (each bounded like every command:
    ///   `connect_timeout + 2 × command_timeout`), and a dispose is seen by
    ///   waiters at their next poll (within 50 ms).
    /// * **When Redis does not answer** ([`RedisOptions`](crate::redis::RedisOptions)
    ///   bound every command), the call is decided by the fallback:
    ///   [`Fallback::Local`](crate::redis::Fallback::Local) (the default)
    ///   with this bulkhead's local machine at `max_concurrent /
    ///   expected_instances` (at least 1) with `max_queue` and
    ///   `queue_timeout` as given (FIFO, as [`new`](Self::new)'s);
    ///   `FailOpen` admits; `FailClosed` refuses with
    ///   [`Error::Redis`]`(`[`RedisError::Unavailable`](crate::redis::RedisError::Unavailable)`)`.
    ///   Each such decision counts in `fallback_decisions` (a `FailClosed`
    ///   refusal also counts as a rejection); the first
    ///   failure and the first answer after failures emit
    ///   `StoreUnavailable` and `StoreRecovered`. Calls admitted under the
    ///   fallback hold no lease: when Redis answers again, the fleet may run
    ///   up to `max_concurrent` plus those calls until they finish.
    /// * **Metrics:** `in_flight` and `queue_depth` are this process's
    ///   (leases held, fallback permits, fail-open admissions; callers
    ///   waiting); [`redis_bulkhead`](Self::redis_bulkhead)`().fleet_counts()`
    ///   reads the fleet's. `fallback_decisions` counts the fallback's
    ///   decisions.
    /// * **Tokens:** [`release_token`](Self::release_token) gives back one
    ///   of the permits this process turned into tokens (a lease first,
    ///   else a fallback permit, else a fail-open admission).
    ///
    /// Construction does not contact Redis: it succeeds while Redis is
    /// down. A config that differs from the one stored in Redis is
    /// [`Error::Redis`]`(`[`RedisError::ConfigMismatch`](crate::redis::RedisError::ConfigMismatch)`)`
    /// on the call that finds it (unless the options adopt the stored one).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an invalid config; [`Error::Redis`]
    /// for invalid options or a name that cannot be a key;
    /// [`Error::NameTaken`] if a live bulkhead is registered as `name`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use stockade::blocking::{Bulkhead, Error};
    /// use stockade::bulkhead::BulkheadConfig;
    /// use stockade::redis::{Fallback, RedisOptions};
    ///
    /// // At most 20 queries at once across every host of the fleet.
    /// let config = BulkheadConfig::DEFAULT
    ///     .with_max_concurrent(20)
    ///     .with_queue_timeout(Duration::from_secs(2));
    /// let options = RedisOptions::new("redis://127.0.0.1:6379/0")
    ///     .lease_ttl(Duration::from_secs(10))
    ///     .fallback(Fallback::Local)
    ///     .expected_instances(4); // 5 at once per host while Redis is down
    /// let database = Bulkhead::redis("database", config, &options)?;
    /// let rows = database.execute(|| Ok::<_, ()>(7));
    /// # let _ = rows;
    /// # Ok::<(), Error>(())
    /// ```
    pub fn redis(
        name: &str,
        config: BulkheadConfig,
        options: &crate::redis::RedisOptions,
    ) -> Result<Arc<Self>, Error> {
        registry::register(name, || Self::redis_unregistered(name, config, options))
    }

    /// [`redis`](Self::redis) without the registry (tests, libraries
    /// embedding Stockade).
    ///
    /// # Errors
    ///
    /// As [`redis`](Self::redis), without `NameTaken`.
    pub fn redis_unregistered(
        name: &str,
        config: BulkheadConfig,
        options: &crate::redis::RedisOptions,
    ) -> Result<Self, Error> {
        let engine = crate::redis::RedisBulkhead::new(name, config, options)?;
        let local = BulkheadConfig {
            max_concurrent: (config.max_concurrent / options.expected_instances_value()).max(1),
            ..config
        };
        let core = Core::new(local)?;
        Ok(Bulkhead {
            core,
            #[cfg(feature = "shared-memory")]
            shared: None,
            redis: Some(std::boxed::Box::new(RedisBackend {
                engine,
                fallback: options.fallback_value(),
                availability: crate::redis::store::Availability::default(),
                fallback_decisions: super::events::Counter::default(),
                open: core::sync::atomic::AtomicU32::new(0),
                waiting: core::sync::atomic::AtomicU32::new(0),
            })),
            external: true,
            shell: Shell::new(
                PatternKind::Bulkhead,
                name.into(),
                config,
                MonotonicClock::new(),
            ),
            waiters: Mutex::new(VecDeque::new()),
        })
    }
}

impl<T: Timer> Bulkhead<T> {
    /// A bulkhead that waits on `timer` (for example a
    /// [`VirtualClock`](super::VirtualClock) in tests).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] as for [`Bulkhead::new`].
    pub fn with_timer(
        name: impl Into<Arc<str>>,
        config: BulkheadConfig,
        timer: T,
    ) -> Result<Self, Error> {
        let core = Core::new(config)?;
        Ok(Bulkhead {
            core,
            #[cfg(feature = "shared-memory")]
            shared: None,
            #[cfg(feature = "redis")]
            redis: None,
            #[cfg(any(feature = "shared-memory", feature = "redis"))]
            external: false,
            shell: Shell::new(PatternKind::Bulkhead, name.into(), config, timer),
            waiters: Mutex::new(VecDeque::new()),
        })
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        self.shell.name()
    }

    /// The config it was created with.
    pub fn config(&self) -> &BulkheadConfig {
        self.shell.config()
    }

    /// The timer it waits on.
    pub fn timer(&self) -> &T {
        self.shell.timer()
    }

    /// `true` when the bulkhead is shared by a fleet through Redis
    /// ([`Bulkhead::redis`]).
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

    /// The Redis engine of a bulkhead made by [`Bulkhead::redis`] (for the
    /// fleet's counts, this process's leases, lost leases, the config in
    /// force); `None` otherwise (or without feature `redis`).
    #[cfg(feature = "redis")]
    pub fn redis_bulkhead(&self) -> Option<&crate::redis::RedisBulkhead> {
        self.redis.as_ref().map(|r| &r.engine)
    }

    /// `true` when the bulkhead is shared between processes
    /// ([`Bulkhead::shared`]).
    pub fn is_shared(&self) -> bool {
        #[cfg(feature = "shared-memory")]
        {
            self.shared.is_some()
        }
        #[cfg(not(feature = "shared-memory"))]
        {
            false
        }
    }

    /// Permits held: here, or host-wide when shared.
    fn in_use(&self) -> u32 {
        #[cfg(feature = "shared-memory")]
        if let Some(shared) = &self.shared {
            return shared.in_use();
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis {
            return r
                .engine
                .held()
                .saturating_add(self.core.in_use())
                .saturating_add(r.open.load(Ordering::Relaxed));
        }
        self.core.in_use()
    }

    /// Callers waiting: here, or host-wide when shared.
    fn queued(&self) -> u32 {
        #[cfg(feature = "shared-memory")]
        if let Some(shared) = &self.shared {
            return shared.waiting();
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis {
            return r
                .waiting
                .load(Ordering::Relaxed)
                .saturating_add(self.core.queued());
        }
        self.core.queued()
    }

    /// Runs `f` when a permit is free, waiting in the FIFO queue for at most
    /// `queue_timeout` if all are held.
    ///
    /// # Errors
    ///
    /// [`Error::Inner`] with `f`'s own error; [`Error::BulkheadFull`] at
    /// once when all permits are held and `max_queue` callers are queued;
    /// [`Error::QueueTimeout`] after waiting `queue_timeout`;
    /// [`Error::Disposed`] after [`dispose`](Self::dispose) (also for
    /// callers queued when it happens).
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{Bulkhead, Error};
    /// use stockade::bulkhead::BulkheadConfig;
    ///
    /// let bulkhead = Bulkhead::new("doc-execute", BulkheadConfig::default())?;
    /// assert_eq!(bulkhead.execute(|| Ok::<_, &str>(2 + 2)).unwrap(), 4);
    /// let failed = bulkhead.execute(|| Err::<u32, _>("boom")).unwrap_err();
    /// assert_eq!(failed.into_inner(), Some("boom"));
    /// assert_eq!(bulkhead.metrics().successes, 1);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn execute<R, E>(&self, f: impl FnOnce() -> Result<R, E>) -> Result<R, Error<E>> {
        self.guarded(|| f().map_err(Error::Inner))
    }

    /// Runs `f` only if a permit is free now and nobody is queued (it never
    /// waits, and never jumps the queue).
    ///
    /// # Errors
    ///
    /// [`Error::BulkheadFull`] if it would have to wait; otherwise as
    /// [`execute`](Self::execute).
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{Bulkhead, Error};
    /// use stockade::bulkhead::BulkheadConfig;
    ///
    /// let bulkhead = Bulkhead::new("doc-try", BulkheadConfig::DEFAULT.with_max_concurrent(1))?;
    /// let nested = bulkhead.try_execute(|| {
    ///     // The only permit is held by this closure.
    ///     Ok::<_, ()>(bulkhead.try_execute(|| Ok::<_, ()>(())))
    /// });
    /// assert!(matches!(nested, Ok(Err(Error::BulkheadFull))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn try_execute<R, E>(&self, f: impl FnOnce() -> Result<R, E>) -> Result<R, Error<E>> {
        let permit = self.try_admit().map_err(Refusal::into_error)?;
        self.run(permit, || f().map_err(Error::Inner))
    }

    /// A reusable protected function (the spec's `wrap`): each call of the
    /// returned function runs `f` through [`execute`](Self::execute).
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{Bulkhead, Error};
    /// use stockade::bulkhead::BulkheadConfig;
    ///
    /// let bulkhead = Bulkhead::new("doc-wrap", BulkheadConfig::default())?;
    /// let double = bulkhead.wrap(|x: u32| x.checked_mul(2).ok_or("overflow"));
    /// assert_eq!(double(21).unwrap(), 42);
    /// assert_eq!(double(u32::MAX).unwrap_err().into_inner(), Some("overflow"));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn wrap<'a, A, R, E>(
        &'a self,
        f: impl Fn(A) -> Result<R, E> + 'a,
    ) -> impl Fn(A) -> Result<R, Error<E>> + 'a {
        move |arg: A| self.execute(|| f(arg))
    }

    // --- Permits held across calls ------------------------------------------

    /// Takes a permit, waiting in the FIFO queue for at most
    /// `queue_timeout` if all are held, and returns it as a guard: the
    /// acquire-then-release form of [`execute`](Self::execute), for work
    /// that is not one closure (a connection checked out and returned
    /// later, a binding's `with` block).
    ///
    /// Dropping the guard releases the permit exactly as `execute` does
    /// when its closure returns: if callers are queued, the front one is
    /// granted it. The held permit counts as one call, whose outcome is
    /// counted at the release: a success, unless [`failure`](BulkheadGuard::failure)
    /// released it or the thread is panicking when it drops (a failure).
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute) (without `Inner`):
    /// [`Error::BulkheadFull`], [`Error::QueueTimeout`], [`Error::Disposed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{Bulkhead, Error};
    /// use stockade::bulkhead::BulkheadConfig;
    ///
    /// let bulkhead = Bulkhead::new("doc-acquire", BulkheadConfig::DEFAULT.with_max_concurrent(1))?;
    /// let permit = bulkhead.acquire()?;
    /// assert_eq!(bulkhead.metrics().in_flight, 1);
    /// assert!(matches!(bulkhead.try_acquire(), Err(Error::BulkheadFull)));
    /// drop(permit); // released: a success
    /// bulkhead.acquire()?.failure(); // released: a failure
    /// let m = bulkhead.metrics();
    /// assert_eq!((m.in_flight, m.successes, m.failures, m.rejections), (0, 1, 1, 1));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn acquire(&self) -> Result<BulkheadGuard<'_, T>, Error> {
        self.acquire_timeout(self.config().queue_timeout)
    }

    /// Takes a permit only if one is free now and nobody is queued (never
    /// waits, never jumps the queue); see [`acquire`](Self::acquire).
    ///
    /// # Errors
    ///
    /// [`Error::BulkheadFull`] if it would have to wait;
    /// [`Error::Disposed`].
    pub fn try_acquire(&self) -> Result<BulkheadGuard<'_, T>, Error> {
        let permit = self.try_admit().map_err(Refusal::into_error)?;
        Ok(BulkheadGuard::new(self, permit))
    }

    /// Takes a permit as [`acquire`](Self::acquire) does, waiting in the
    /// queue for at most `min(timeout, queue_timeout)`: a caller can wait
    /// less than the config allows, never more (the config bounds every
    /// wait, as the rate limiter's `acquire_timeout` does).
    /// `Duration::ZERO` never waits: it is [`try_acquire`](Self::try_acquire).
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire); [`Error::QueueTimeout`] after the
    /// shorter wait.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<BulkheadGuard<'_, T>, Error> {
        let wait = timeout.min(self.config().queue_timeout);
        let permit = self.admit_within(wait).map_err(Refusal::into_error)?;
        Ok(BulkheadGuard::new(self, permit))
    }

    /// Releases the permit of a token from [`BulkheadGuard::into_token`]
    /// through the blocking path (the front waiter, if any, is granted it)
    /// and counts the call as a success.
    ///
    /// A token must be released exactly once. The core cannot tell tokens
    /// apart (see [`BulkheadToken`]): releasing one twice while no permit
    /// is in use is refused with [`NotHeld`] and changes nothing (no count
    /// moves, no outcome is counted); while other permits are held it
    /// returns one of theirs, with the bounded consequences
    /// [`BulkheadToken`] documents. Counters never underflow.
    ///
    /// # Errors
    ///
    /// [`NotHeld`] when no permit is in use (a token released twice).
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{Bulkhead, Error};
    /// use stockade::bulkhead::{BulkheadConfig, NotHeld};
    ///
    /// let bulkhead = Bulkhead::new("doc-token", BulkheadConfig::default())?;
    /// let token = bulkhead.acquire()?.into_token(); // e.g. kept by a C caller
    /// assert_eq!(bulkhead.metrics().in_flight, 1);
    /// assert_eq!(bulkhead.release_token(token), Ok(()));
    /// assert_eq!(bulkhead.release_token(token), Err(NotHeld)); // twice: refused
    /// assert_eq!(bulkhead.metrics().successes, 1);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn release_token(&self, token: BulkheadToken) -> Result<(), NotHeld> {
        #[cfg(feature = "shared-memory")]
        if let Some(shared) = &self.shared {
            shared.release_held()?;
            self.shell.counters.successes.incr();
            return Ok(());
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis {
            // A lease first, else a fallback permit, else a fail-open
            // admission: one of this process's tokens each time.
            match r.engine.release_token() {
                Ok(true) => self.store_answered(r),
                Err(crate::redis::RedisError::Unavailable { cause, .. }) => {
                    self.store_failed(r, cause);
                }
                Err(_) => {}
                Ok(false) => {
                    if self.core.in_use() == 0 && r.take_open() {
                        self.shell.counters.successes.incr();
                        return Ok(());
                    }
                    let counts = self.core.release(token)?;
                    if counts.has_waiters() {
                        self.wake_waiters();
                    }
                }
            }
            self.shell.counters.successes.incr();
            return Ok(());
        }
        let counts = self.core.release(token)?;
        if counts.has_waiters() {
            self.wake_waiters();
        }
        self.shell.counters.successes.incr();
        Ok(())
    }

    /// Calls `listener` for every event: `Rejected` (bulkhead full),
    /// `QueueTimeout`, `Disposed`; for a bulkhead on Redis also
    /// `StoreUnavailable` and `StoreRecovered`.
    pub fn subscribe(&self, listener: impl Fn(&Event) + Send + Sync + 'static) -> ListenerId {
        self.shell.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shell.unsubscribe(id)
    }

    /// A snapshot of the counters.
    ///
    /// `calls` counts the calls that finished: each is one of `successes`,
    /// `failures` (the closure returned an error or panicked, or a
    /// [`BulkheadGuard`] was released as a failure), `rejections`
    /// ([`Error::BulkheadFull`]) and `timeouts` ([`Error::QueueTimeout`]).
    /// Calls still queued (`queue_depth`) or running (`in_flight`) are not
    /// counted yet (a permit held by a guard or a token counts when it is
    /// released); calls refused because the bulkhead was disposed are not
    /// counted.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            queue_depth: u64::from(self.queued()),
            in_flight: u64::from(self.in_use()),
            #[cfg(feature = "redis")]
            fallback_decisions: self
                .redis
                .as_ref()
                .map_or(0, |r| r.fallback_decisions.get()),
            ..self.shell.counters.metrics()
        }
    }

    /// `true` once [`dispose`](Self::dispose) was called.
    pub fn is_disposed(&self) -> bool {
        self.shell.is_disposed()
    }

    /// Shuts the bulkhead down: callers waiting in the queue wake with
    /// [`Error::Disposed`], later calls fail with `Disposed`, a `Disposed`
    /// event is emitted, listeners are removed and the registry forgets the
    /// instance. Closures already running finish normally. Calling it again
    /// does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{Bulkhead, Error};
    /// use stockade::bulkhead::BulkheadConfig;
    ///
    /// let bulkhead = Bulkhead::new("doc-dispose", BulkheadConfig::default())?;
    /// bulkhead.dispose();
    /// assert!(matches!(bulkhead.execute(|| Ok::<_, ()>(())), Err(Error::Disposed)));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn dispose(&self) {
        if !self.shell.begin_dispose() {
            return;
        }
        {
            let mut waiters = self.waiters.lock();
            for waiter in waiters.drain(..) {
                // Everyone leaves: whom `wake_next` would name leaves too.
                let _ = self.core.leave_queue_raw();
                waiter.state.store(DISPOSED, Ordering::Release);
                waiter.wake.wake();
            }
        }
        self.shell.finish_dispose();
    }

    // --- Admission ----------------------------------------------------------

    /// Admits the call (waiting if needed), runs it, counts the outcome.
    #[inline]
    fn guarded<R, E>(&self, call: impl FnOnce() -> Result<R, Error<E>>) -> Result<R, Error<E>> {
        let permit = self.admit().map_err(Refusal::into_error)?;
        self.run(permit, call)
    }

    /// Runs `call` holding `permit`, counts the outcome (a panic counts as
    /// a failure and continues to the caller), then releases the permit,
    /// granting it to the front waiter if callers are queued.
    #[inline]
    fn run<R, E>(
        &self,
        permit: Held<'_>,
        call: impl FnOnce() -> Result<R, Error<E>>,
    ) -> Result<R, Error<E>> {
        let running = self.shell.running();
        // Caught so that a panicking call's permit still goes to the front
        // waiter (the permit's own drop only returns it to the core).
        let result = std::panic::catch_unwind(core::panic::AssertUnwindSafe(call));
        self.release(permit);
        match result {
            Ok(result) => {
                running.finish(&result);
                result
            }
            // `running` counts the failure as it drops.
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    #[inline]
    fn admit(&self) -> Result<Held<'_>, Refusal> {
        self.admit_within(self.config().queue_timeout)
    }

    /// Admits the call, waiting in the queue for at most `wait`.
    #[inline]
    fn admit_within(&self, wait: Duration) -> Result<Held<'_>, Refusal> {
        if self.is_disposed() {
            return Err(Refusal::Disposed);
        }
        #[cfg(any(feature = "shared-memory", feature = "redis"))]
        if self.external {
            return self.admit_external(wait);
        }
        if let Ok(permit) = self.core.try_acquire() {
            return Ok(Held::Local(permit));
        }
        if wait.is_zero() {
            // Zero queue timeout: never wait, so full is full.
            return Err(self.reject());
        }
        self.admit_slow(wait).map(Held::Local)
    }

    #[inline]
    fn try_admit(&self) -> Result<Held<'_>, Refusal> {
        if self.is_disposed() {
            return Err(Refusal::Disposed);
        }
        #[cfg(any(feature = "shared-memory", feature = "redis"))]
        if self.external {
            return self.admit_external(Duration::ZERO);
        }
        match self.core.try_acquire() {
            Ok(permit) => Ok(Held::Local(permit)),
            Err(_) => Err(self.reject()),
        }
    }

    /// Admission through a shared or Redis bulkhead.
    #[cfg(any(feature = "shared-memory", feature = "redis"))]
    #[cold]
    fn admit_external(&self, wait: Duration) -> Result<Held<'_>, Refusal> {
        #[cfg(feature = "shared-memory")]
        if let Some(shared) = &self.shared {
            return self.admit_shared(shared, wait);
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis {
            return self.admit_redis(r, wait);
        }
        unreachable!("`external` is set with a shared or Redis bulkhead only")
    }

    /// A shared bulkhead's first look, for a thread and a task alike: a
    /// permit now, a refusal (full with no `wait`, the queue full, no
    /// owner slot) as `Err(decided)`, or a place among the host's waiters
    /// to poll.
    #[cfg(feature = "shared-memory")]
    fn join_shared<'a>(
        &'a self,
        shared: &'a crate::shared::SharedBulkhead,
        wait: Duration,
    ) -> Result<crate::shared::QueuePlace<'a>, Result<Held<'a>, Refusal>> {
        use crate::shared::SharedBulkheadError;
        match shared.try_acquire() {
            Ok(permit) => return Err(Ok(Held::Shared(permit))),
            Err(SharedBulkheadError::Owner(e)) => return Err(Err(Refusal::Owner(e))),
            Err(_) if wait.is_zero() => return Err(Err(self.reject())),
            Err(_) => {}
        }
        match shared.join_queue() {
            Ok(place) => Ok(place),
            Err(SharedBulkheadError::Owner(e)) => Err(Err(Refusal::Owner(e))),
            Err(_) => Err(Err(self.reject())),
        }
    }

    /// A shared bulkhead's admission: a permit now, or a place among the
    /// host's waiters polled (50 µs doubling to 1 ms) for at most `wait`.
    #[cfg(feature = "shared-memory")]
    fn admit_shared<'a>(
        &'a self,
        shared: &'a crate::shared::SharedBulkhead,
        wait: Duration,
    ) -> Result<Held<'a>, Refusal> {
        use crate::shared::QueuePlace;
        let place = match self.join_shared(shared, wait) {
            Ok(place) => place,
            Err(decided) => return decided,
        };
        let start = self.timer().now();
        let mut poll = QueuePlace::FIRST_POLL;
        loop {
            if let Ok(permit) = place.try_acquire() {
                return Ok(Held::Shared(permit));
            }
            self.timer().sleep(self.keep_polling(start, wait, poll)?);
            poll = place.next_poll(poll);
        }
    }

    /// A Redis bulkhead's admission: a lease now, or a place in the
    /// fleet's queue polled for at most `wait`; the fallback when Redis
    /// does not answer.
    /// A Redis bulkhead's answer to a try without waiting (blocking or
    /// async): the lease, the fallback while Redis is unavailable, or the
    /// refusal.
    #[cfg(feature = "redis")]
    fn first_try<'a>(
        &'a self,
        r: &'a RedisBackend,
        reply: Result<crate::redis::RedisLease<'a>, crate::redis::RedisBulkheadError>,
    ) -> Result<Held<'a>, Refusal> {
        use crate::redis::{RedisBulkheadError as Denied, RedisError};
        match reply {
            Ok(lease) => {
                self.store_answered(r);
                Ok(Held::Redis(std::boxed::Box::new(RedisHeld::Lease(lease))))
            }
            Err(Denied::Redis(RedisError::Unavailable { cause, retry_after })) => {
                self.fall_back(r, cause, retry_after, Duration::ZERO)
            }
            Err(Denied::Redis(e)) => {
                self.store_answered(r);
                Err(Refusal::Redis(std::boxed::Box::new(e)))
            }
            Err(_) => {
                self.store_answered(r);
                Err(self.reject())
            }
        }
    }

    #[cfg(feature = "redis")]
    fn admit_redis<'a>(&'a self, r: &'a RedisBackend, wait: Duration) -> Result<Held<'a>, Refusal> {
        use crate::redis::{RedisBulkheadError as Denied, RedisError, RedisWaiter};
        use core::sync::atomic::Ordering::Relaxed;
        if wait.is_zero() {
            return self.first_try(r, r.engine.try_acquire());
        }
        /// How the wait in Redis ended.
        enum Ended<'a> {
            Decided(Result<Held<'a>, Refusal>),
            Unavailable(crate::redis::StoreFailure, Option<Duration>),
        }
        let start = self.timer().now();
        let mut waiter = r.engine.waiter();
        let mut poll = crate::redis::FIRST_POLL;
        let mut counted = false;
        let ended = loop {
            match waiter.poll() {
                Ok(Some(lease)) => {
                    self.store_answered(r);
                    break Ended::Decided(Ok(Held::Redis(std::boxed::Box::new(RedisHeld::Lease(
                        lease,
                    )))));
                }
                Ok(None) => {
                    self.store_answered(r);
                    if !counted {
                        counted = true;
                        r.waiting.fetch_add(1, Relaxed);
                    }
                }
                Err(Denied::Redis(RedisError::Unavailable { cause, retry_after })) => {
                    break Ended::Unavailable(cause, retry_after);
                }
                Err(Denied::Redis(e)) => {
                    self.store_answered(r);
                    break Ended::Decided(Err(Refusal::Redis(std::boxed::Box::new(e))));
                }
                Err(_) => {
                    self.store_answered(r);
                    break Ended::Decided(Err(self.reject()));
                }
            }
            match self.keep_polling(start, wait, poll) {
                Ok(sleep) => self.timer().sleep(sleep),
                Err(refusal) => break Ended::Decided(Err(refusal)),
            }
            poll = RedisWaiter::next_poll(poll);
        };
        // Leaves the fleet's queue unless admitted.
        drop(waiter);
        if counted {
            r.waiting.fetch_sub(1, Relaxed);
        }
        match ended {
            Ended::Decided(result) => result,
            Ended::Unavailable(cause, retry_after) => {
                let waited = self.timer().now().saturating_duration_since(start);
                self.fall_back(r, cause, retry_after, wait.saturating_sub(waited))
            }
        }
    }

    /// Decides under the fallback (Redis did not answer), waiting at most
    /// `wait` for the local machine.
    #[cfg(feature = "redis")]
    fn fall_back(
        &self,
        r: &RedisBackend,
        cause: crate::redis::StoreFailure,
        retry_after: Option<Duration>,
        wait: Duration,
    ) -> Result<Held<'_>, Refusal> {
        use crate::redis::Fallback;
        self.store_failed(r, cause);
        r.fallback_decisions.incr();
        match r.fallback {
            Fallback::Local => match self.core.try_acquire() {
                Ok(permit) => Ok(Held::Local(permit)),
                Err(_) if wait.is_zero() => Err(self.reject()),
                Err(_) => self.admit_slow(wait).map(Held::Local),
            },
            Fallback::FailOpen => {
                r.open.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                Ok(Held::Redis(std::boxed::Box::new(RedisHeld::Open)))
            }
            Fallback::FailClosed => {
                self.shell.counters.rejections.incr();
                Err(Refusal::Redis(std::boxed::Box::new(
                    crate::redis::RedisError::Unavailable { cause, retry_after },
                )))
            }
        }
    }

    /// Redis answered: `StoreRecovered` if it had not.
    #[cfg(feature = "redis")]
    fn store_answered(&self, r: &RedisBackend) {
        if r.availability.record(true).is_some() {
            self.shell.emit(EventKind::StoreRecovered);
        }
    }

    /// Redis did not answer: `StoreUnavailable` if it had.
    #[cfg(feature = "redis")]
    fn store_failed(&self, r: &RedisBackend, cause: crate::redis::StoreFailure) {
        if r.availability.record(false).is_some() {
            self.shell.emit(EventKind::StoreUnavailable { cause });
        }
    }

    /// Queues the caller and parks it until it is granted a permit, times
    /// out, or the bulkhead is disposed.
    #[cold]
    fn admit_slow(&self, wait: Duration) -> Result<BulkheadPermit<'_>, Refusal> {
        let start = self.timer().now();
        let waiter = {
            let mut waiters = self.waiters.lock();
            // Checked under the lock: `dispose` sets the flag before it
            // drains the queue under the same lock, so nobody queues after
            // the drain.
            if self.is_disposed() {
                return Err(Refusal::Disposed);
            }
            match self.core.enqueue_raw() {
                RawAdmission::Acquired(token) => {
                    return Ok(BulkheadPermit::from_token(&self.core, token));
                }
                RawAdmission::Full(_) => {
                    drop(waiters);
                    return Err(self.reject());
                }
                RawAdmission::Enqueued => {
                    let waiter = sync::Arc::new(Waiter {
                        wake: Wake::Thread(thread::current()),
                        state: AtomicU32::new(WAITING),
                        granted: AtomicU64::new(0),
                    });
                    waiters.push_back(sync::Arc::clone(&waiter));
                    waiter
                }
            }
        };
        let deadline = start.saturating_add(wait);
        loop {
            match waiter.state.load(Ordering::Acquire) {
                GRANTED => return Ok(waiter.permit(&self.core)),
                DISPOSED => return Err(Refusal::Disposed),
                _ => {}
            }
            let now = self.timer().now();
            if now >= deadline {
                let mut waiters = self.waiters.lock();
                // A grant or dispose may have come first: it wins.
                match waiter.state.load(Ordering::Acquire) {
                    GRANTED => return Ok(waiter.permit(&self.core)),
                    DISPOSED => return Err(Refusal::Disposed),
                    _ => {}
                }
                self.leave_locked(&mut waiters, &waiter);
                drop(waiters);
                return Err(self.queue_timed_out(now.saturating_duration_since(start)));
            }
            self.timer().park_until(deadline);
        }
    }

    /// Takes a waiting `waiter` out of the FIFO and the core's queue
    /// count; if a permit is free, grants it to the next in line. Call
    /// with the queue lock held, the waiter's state read `WAITING`.
    fn leave_locked(&self, waiters: &mut VecDeque<sync::Arc<Waiter>>, waiter: &sync::Arc<Waiter>) {
        if let Some(at) = waiters.iter().position(|w| sync::Arc::ptr_eq(w, waiter)) {
            waiters.remove(at);
        }
        if let LeaveQueue::Left { wake_next: true } = self.core.leave_queue_raw() {
            // A permit is free: it goes to the next in line.
            self.grant_locked(waiters);
        }
    }

    /// Hands free permits to the front of the queue. Call with the queue
    /// lock held.
    fn grant_locked(&self, waiters: &mut VecDeque<sync::Arc<Waiter>>) {
        while !waiters.is_empty() {
            match self.core.acquire_queued_raw() {
                QueuedAcquire::Acquired { token, .. } => {
                    if let Some(waiter) = waiters.pop_front() {
                        waiter.grant(token);
                    }
                }
                // No permit free (another release already granted it), or —
                // impossible while the lock pairs every count change with a
                // queue change — nobody counted as queued.
                QueuedAcquire::Wait | QueuedAcquire::NotQueued => break,
            }
        }
    }

    /// An admitted async call dropped before it finished (cancelled, or a
    /// panic unwinding): its permit is released through the blocking path
    /// (so the front waiter is granted it; a Redis lease from one of the
    /// store's I/O threads, not awaited); counted as a failure only while
    /// panicking. Out of line: the healthy path never runs it.
    #[cfg(feature = "async")]
    #[cold]
    #[inline(never)]
    fn abandon(&self, permit: Held<'_>) {
        match permit {
            // Not awaited: released from one of the store's I/O threads.
            #[cfg(feature = "redis")]
            Held::Redis(held) => match *held {
                RedisHeld::Lease(lease) => lease.release_off_thread(),
                open => self.release(Held::Redis(std::boxed::Box::new(open))),
            },
            permit => self.release(permit),
        }
        if std::thread::panicking() {
            self.shell.counters.failures.incr();
        }
    }

    /// Returns a permit; if callers are queued, grants it to the front one.
    #[inline]
    fn release(&self, permit: Held<'_>) {
        match permit {
            Held::Local(permit) => {
                if permit.release().is_ok_and(BulkheadCounts::has_waiters) {
                    self.wake_waiters();
                }
            }
            // Its drop returns it; waiters elsewhere see it at their poll.
            #[cfg(feature = "shared-memory")]
            Held::Shared(permit) => drop(permit),
            #[cfg(feature = "redis")]
            Held::Redis(held) => {
                if let Some(r) = &self.redis {
                    match *held {
                        RedisHeld::Lease(lease) => match lease.release() {
                            Err(crate::redis::RedisError::Unavailable { cause, .. }) => {
                                self.store_failed(r, cause);
                            }
                            _ => self.store_answered(r),
                        },
                        RedisHeld::Open => {
                            r.take_open();
                        }
                    }
                }
            }
        }
    }

    #[cold]
    fn wake_waiters(&self) {
        let mut waiters = self.waiters.lock();
        self.grant_locked(&mut waiters);
    }

    fn reject(&self) -> Refusal {
        self.shell.counters.rejections.incr();
        self.shell.emit(EventKind::Rejected { retry_after: None });
        Refusal::Full
    }

    /// A wait in the queue that ended after `waited` without a permit:
    /// counted and announced (`QueueTimeout`).
    fn queue_timed_out(&self, waited: Duration) -> Refusal {
        self.shell.counters.timeouts.incr();
        self.shell.emit(EventKind::QueueTimeout { waited });
        Refusal::Timeout(waited)
    }

    /// After a look that found no permit, in an admission polled across
    /// processes or hosts (shared memory, Redis) that started at `start`
    /// and may wait `wait`: how long to sleep before the next look (at most
    /// `poll`), or why it ends (disposed; the queue timeout, counted). The
    /// same for a thread, which sleeps, and a task, which awaits.
    #[cfg(any(feature = "shared-memory", feature = "redis"))]
    fn keep_polling(
        &self,
        start: crate::clock::Timestamp,
        wait: Duration,
        poll: Duration,
    ) -> Result<Duration, Refusal> {
        if self.is_disposed() {
            return Err(Refusal::Disposed);
        }
        let waited = self.timer().now().saturating_duration_since(start);
        if waited >= wait {
            return Err(self.queue_timed_out(waited));
        }
        Ok(poll.min(wait - waited))
    }
}

/// A held permit of a blocking [`Bulkhead`], from
/// [`acquire`](Bulkhead::acquire), [`try_acquire`](Bulkhead::try_acquire)
/// or [`acquire_timeout`](Bulkhead::acquire_timeout).
///
/// Dropping it releases the permit through the blocking path (the front
/// waiter is granted it) and counts the call as a success, or as a failure
/// when the thread is panicking; [`failure`](Self::failure) releases it as
/// a failure. [`into_token`](Self::into_token) turns it into a plain value
/// for bindings that cannot hold a borrow.
#[must_use = "dropping the guard releases the permit at once"]
pub struct BulkheadGuard<'a, T: Timer = MonotonicClock> {
    bulkhead: &'a Bulkhead<T>,
    /// `None` once released or turned into a token.
    permit: Option<Held<'a>>,
}

impl<'a, T: Timer> BulkheadGuard<'a, T> {
    fn new(bulkhead: &'a Bulkhead<T>, permit: Held<'a>) -> Self {
        BulkheadGuard {
            bulkhead,
            permit: Some(permit),
        }
    }

    /// The bulkhead the permit belongs to.
    pub fn bulkhead(&self) -> &'a Bulkhead<T> {
        self.bulkhead
    }

    /// Releases the permit and counts the call as a success (what dropping
    /// the guard does outside a panic).
    pub fn success(mut self) {
        self.finish(false);
    }

    /// Releases the permit and counts the call as a failure.
    pub fn failure(mut self) {
        self.finish(true);
    }

    /// Gives up the guard without releasing: the caller now owes exactly
    /// one [`Bulkhead::release_token`] (which counts the outcome). See
    /// [`BulkheadToken`] for a token released twice or never.
    pub fn into_token(mut self) -> BulkheadToken {
        match self.permit.take() {
            Some(permit) => permit.into_token(),
            None => unreachable!("a guard holds its permit until it is consumed"),
        }
    }

    fn finish(&mut self, failed: bool) {
        if let Some(permit) = self.permit.take() {
            self.bulkhead.release(permit);
            let counters = &self.bulkhead.shell.counters;
            if failed {
                counters.failures.incr();
            } else {
                counters.successes.incr();
            }
        }
    }
}

impl<T: Timer> Drop for BulkheadGuard<'_, T> {
    fn drop(&mut self) {
        self.finish(std::thread::panicking());
    }
}

impl<T: Timer> fmt::Debug for BulkheadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadGuard")
            .field("bulkhead", &self.bulkhead.name())
            .finish_non_exhaustive()
    }
}

impl<T: Timer> Policy for Bulkhead<T> {
    /// Runs `call` once a permit is held, as [`execute`](Bulkhead::execute)
    /// does; `call`'s errors pass through unchanged.
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
impl<T: super::AsyncTimer> Bulkhead<T> {
    /// Awaits `call` once a permit is held: [`execute`](Self::execute) for
    /// a future, on the same bulkhead. A task that finds every permit held
    /// joins **the same FIFO queue as blocking callers** (at most
    /// `max_queue` in all, each waiting at most `queue_timeout`) and is
    /// woken through its [`Waker`](core::task::Waker) when a release grants
    /// it a permit; no thread is held while it waits.
    ///
    /// Cancellation-safe: **dropping the returned future** while it waits
    /// leaves the queue (and if a permit is free, grants it to the next
    /// waiter); if a permit was granted to it in the meantime, it is handed
    /// to the next waiter (or returned); after admission, it releases the
    /// permit. A permit is never lost and no waiter misses its wake-up. A
    /// dropped call is not counted in the metrics; a panic while polling
    /// `call` releases the permit, counts as a failure and continues.
    ///
    /// A bulkhead made by [`shared`](Self::shared) or [`redis`](Self::redis)
    /// waits as its blocking calls do (polling, see those), but sleeps
    /// between polls on the [`AsyncTimer`](super::AsyncTimer); under
    /// `Fallback::Local` the local queue is this one. A Redis bulkhead's
    /// script calls (the admission's polls, leaving the queue, the
    /// release) never run on the thread that polls: each runs on one of
    /// the Redis store's I/O threads (at most the options'
    /// `max_connections` per server and settings, started on demand, each
    /// exiting after 60 s idle; calls beyond them wait their turn in FIFO
    /// order, a wait not bounded by `command_timeout`) while the task
    /// awaits it. The release at the end of the call is awaited (the
    /// returned future completes once the lease is back in Redis), and so
    /// is leaving the fleet's queue when a wait ends unadmitted.
    /// **Dropped while a script call is in flight**, the future does not
    /// stop it; what it takes is given back from the I/O thread when it
    /// lands: a lease granted to the dropped admission is released, a
    /// place in the fleet's queue is left, and a release goes on. A task
    /// dropped between polls leaves the queue, and one dropped while its
    /// call runs releases its lease, from an I/O thread too (not awaited).
    /// Should the OS refuse to start any I/O thread, the script calls run
    /// on the thread that polls, as the blocking form's. A guard from
    /// [`acquire_async`](Self::acquire_async) is the blocking guard: when
    /// dropped it releases a Redis lease with one round trip on the thread
    /// that drops it; its [`success_async`](BulkheadGuard::success_async)
    /// and [`failure_async`](BulkheadGuard::failure_async) release from the
    /// I/O threads.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use stockade::blocking::{Bulkhead, Error};
    /// use stockade::bulkhead::BulkheadConfig;
    ///
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// # runtime.block_on(async {
    /// let bulkhead = Bulkhead::new("doc-execute-async", BulkheadConfig::DEFAULT.with_max_concurrent(2))?;
    /// let fetch = bulkhead.execute_async(async { Ok::<_, std::io::Error>("data") });
    /// assert_eq!(fetch.await.unwrap(), "data");
    /// assert_eq!(bulkhead.metrics().successes, 1);
    /// # Ok::<(), Error>(())
    /// # }).unwrap();
    /// # }
    /// ```
    pub fn execute_async<R, E>(
        &self,
        call: impl core::future::Future<Output = Result<R, E>>,
    ) -> impl core::future::Future<Output = Result<R, Error<E>>> {
        self.guarded_async::<_, Wrap>(call)
    }

    /// [`acquire`](Self::acquire) for a task: a permit as a
    /// [`BulkheadGuard`], waiting in the shared FIFO without blocking (see
    /// [`execute_async`](Self::execute_async) for cancellation; a Redis
    /// bulkhead's admission runs on the store's I/O threads). The guard
    /// releases the permit when dropped, as the blocking form's does (for
    /// a Redis bulkhead, one round trip on the thread that drops it);
    /// [`BulkheadGuard::success_async`] and
    /// [`failure_async`](BulkheadGuard::failure_async) release it from the
    /// store's I/O threads instead.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_async(&self) -> Result<BulkheadGuard<'_, T>, Error> {
        self.acquire_timeout_async(self.config().queue_timeout)
            .await
    }

    /// [`acquire_timeout`](Self::acquire_timeout) for a task: waits at most
    /// `min(timeout, queue_timeout)`; `Duration::ZERO` never waits.
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Self::acquire_timeout).
    pub async fn acquire_timeout_async(
        &self,
        timeout: Duration,
    ) -> Result<BulkheadGuard<'_, T>, Error> {
        let wait = timeout.min(self.config().queue_timeout);
        let permit = self.admit_async(wait).await.map_err(Refusal::into_error)?;
        Ok(BulkheadGuard::new(self, permit))
    }

    /// Admits the call (waiting without blocking), awaits it, counts the
    /// outcome, releases the permit (also when the future is dropped); `L`
    /// turns the call's error into the result's.
    #[inline]
    pub(crate) fn guarded_async<F: core::future::Future, L>(
        &self,
        call: F,
    ) -> Traced<'_, GuardedCall<'_, T, F, L>> {
        Traced::new(
            PatternKind::Bulkhead,
            self.name(),
            GuardedCall {
                bulkhead: self,
                stage: Admission::Start,
                lift: core::marker::PhantomData,
                settling: Default::default(),
                call,
            },
        )
    }

    /// A permit at once when one is free and nobody is queued (a local
    /// bulkhead not disposed); `None` leaves the decision to
    /// [`admit_async`](Self::admit_async).
    #[inline]
    fn admit_now(&self) -> Option<Held<'_>> {
        #[cfg(any(feature = "shared-memory", feature = "redis"))]
        if self.external {
            return None;
        }
        if self.is_disposed() {
            return None;
        }
        self.core.try_acquire().ok().map(Held::Local)
    }

    /// Admits the call, waiting in the queue for at most `wait`.
    async fn admit_async(&self, wait: Duration) -> Result<Held<'_>, Refusal> {
        if self.is_disposed() {
            return Err(Refusal::Disposed);
        }
        #[cfg(any(feature = "shared-memory", feature = "redis"))]
        if self.external {
            return self.admit_external_async(wait).await;
        }
        if let Ok(permit) = self.core.try_acquire() {
            return Ok(Held::Local(permit));
        }
        if wait.is_zero() {
            return Err(self.reject());
        }
        self.admit_slow_async(wait).await.map(Held::Local)
    }

    /// Returns a permit at the end of an async call, as
    /// [`release`](Self::release) does; a Redis lease is released from one
    /// of the store's I/O threads, by the returned future (`None`: done).
    #[inline]
    fn release_awaitable<'a>(
        &'a self,
        permit: Held<'a>,
    ) -> Option<super::async_call::Wait<'a, ()>> {
        #[cfg(feature = "redis")]
        if let Held::Redis(held) = permit {
            return self.release_redis_async(held);
        }
        self.release(permit);
        None
    }

    /// [`release_awaitable`](Self::release_awaitable) of a Redis bulkhead's
    /// permit: the release's outcome reports the store's availability.
    #[cfg(feature = "redis")]
    #[cold]
    fn release_redis_async<'a>(
        &'a self,
        held: std::boxed::Box<RedisHeld<'a>>,
    ) -> Option<super::async_call::Wait<'a, ()>> {
        let Some(r) = &self.redis else {
            self.release(Held::Redis(held));
            return None;
        };
        match *held {
            RedisHeld::Lease(lease) => Some(std::boxed::Box::pin(async move {
                match lease.release_async().await {
                    Err(crate::redis::RedisError::Unavailable { cause, .. }) => {
                        self.store_failed(r, cause);
                    }
                    _ => self.store_answered(r),
                }
            })),
            RedisHeld::Open => {
                r.take_open();
                None
            }
        }
    }

    /// Queues the task in the FIFO and waits until it is granted a
    /// permit, times out, or the bulkhead is disposed.
    #[cold]
    async fn admit_slow_async(&self, wait: Duration) -> Result<BulkheadPermit<'_>, Refusal> {
        use core::future::poll_fn;
        use core::pin::pin;
        use core::task::Poll;
        let start = self.timer().now();
        let waiter = {
            let mut waiters = self.waiters.lock();
            if self.is_disposed() {
                return Err(Refusal::Disposed);
            }
            match self.core.enqueue_raw() {
                RawAdmission::Acquired(token) => {
                    return Ok(BulkheadPermit::from_token(&self.core, token));
                }
                RawAdmission::Full(_) => {
                    drop(waiters);
                    return Err(self.reject());
                }
                RawAdmission::Enqueued => {
                    let waiter = sync::Arc::new(Waiter {
                        wake: Wake::Task(Mutex::new(None)),
                        state: AtomicU32::new(WAITING),
                        granted: AtomicU64::new(0),
                    });
                    waiters.push_back(sync::Arc::clone(&waiter));
                    waiter
                }
            }
        };
        let deadline = start.saturating_add(wait);
        // From here the place is owed back: `queued` gives it back (or
        // hands on a permit granted to it) if this future is dropped.
        let mut queued = Queued {
            bulkhead: self,
            waiter: Some(waiter),
        };
        let mut sleep = pin!(self.timer().sleep_until_async(deadline));
        poll_fn(|cx| {
            match queued.poll_state(cx.waker()) {
                GRANTED => return Poll::Ready(Ok(queued.take_permit())),
                DISPOSED => {
                    queued.waiter = None;
                    return Poll::Ready(Err(Refusal::Disposed));
                }
                _ => {}
            }
            if super::async_timer::poll_deadline(self.timer(), deadline, &mut sleep, cx)
                .is_pending()
            {
                return Poll::Pending;
            }
            Poll::Ready(queued.time_out(start))
        })
        .await
    }

    /// Admission through a shared or Redis bulkhead: as the blocking
    /// form's, sleeping between polls on the async timer.
    #[cfg(any(feature = "shared-memory", feature = "redis"))]
    #[cold]
    async fn admit_external_async(&self, wait: Duration) -> Result<Held<'_>, Refusal> {
        #[cfg(feature = "shared-memory")]
        if let Some(shared) = &self.shared {
            return self.admit_shared_async(shared, wait).await;
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis {
            return self.admit_redis_async(r, wait).await;
        }
        unreachable!("`external` is set with a shared or Redis bulkhead only")
    }

    /// [`admit_shared`](Self::admit_shared) with async sleeps.
    #[cfg(feature = "shared-memory")]
    async fn admit_shared_async<'a>(
        &'a self,
        shared: &'a crate::shared::SharedBulkhead,
        wait: Duration,
    ) -> Result<Held<'a>, Refusal> {
        use crate::shared::QueuePlace;
        let place = match self.join_shared(shared, wait) {
            Ok(place) => place,
            Err(decided) => return decided,
        };
        let start = self.timer().now();
        let mut poll = QueuePlace::FIRST_POLL;
        loop {
            if let Ok(permit) = place.try_acquire() {
                return Ok(Held::Shared(permit));
            }
            self.timer()
                .sleep_async(self.keep_polling(start, wait, poll)?)
                .await;
            poll = place.next_poll(poll);
        }
    }

    /// [`admit_redis`](Self::admit_redis) with async sleeps, its script
    /// calls on the Redis store's I/O threads.
    #[cfg(feature = "redis")]
    async fn admit_redis_async<'a>(
        &'a self,
        r: &'a RedisBackend,
        wait: Duration,
    ) -> Result<Held<'a>, Refusal> {
        use crate::redis::{RedisBulkheadError as Denied, RedisError, RedisWaiter};
        use core::sync::atomic::Ordering::Relaxed;
        if wait.is_zero() {
            return self.first_try(r, r.engine.try_acquire_async().await);
        }
        /// How the wait in Redis ended.
        enum Ended<'a> {
            Decided(Result<Held<'a>, Refusal>),
            Unavailable(crate::redis::StoreFailure, Option<Duration>),
        }
        /// Takes this process's count of fleet waiters back on drop.
        struct Counted<'a>(&'a RedisBackend, bool);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                if self.1 {
                    self.0.waiting.fetch_sub(1, Relaxed);
                }
            }
        }
        let start = self.timer().now();
        // Leaves the fleet's queue unless admitted before the fallback
        // decides (awaited), or when this future is dropped (not awaited);
        // its polls and its leave run on the store's I/O threads.
        let mut waiter = r.engine.waiter_async();
        let mut counted = Counted(r, false);
        let mut poll = crate::redis::FIRST_POLL;
        let ended = loop {
            match waiter.poll().await {
                Ok(Some(lease)) => {
                    self.store_answered(r);
                    break Ended::Decided(Ok(Held::Redis(std::boxed::Box::new(RedisHeld::Lease(
                        lease,
                    )))));
                }
                Ok(None) => {
                    self.store_answered(r);
                    if !counted.1 {
                        counted.1 = true;
                        r.waiting.fetch_add(1, Relaxed);
                    }
                }
                Err(Denied::Redis(RedisError::Unavailable { cause, retry_after })) => {
                    break Ended::Unavailable(cause, retry_after);
                }
                Err(Denied::Redis(e)) => {
                    self.store_answered(r);
                    break Ended::Decided(Err(Refusal::Redis(std::boxed::Box::new(e))));
                }
                Err(_) => {
                    self.store_answered(r);
                    break Ended::Decided(Err(self.reject()));
                }
            }
            match self.keep_polling(start, wait, poll) {
                Ok(sleep) => self.timer().sleep_async(sleep).await,
                Err(refusal) => break Ended::Decided(Err(refusal)),
            }
            poll = RedisWaiter::next_poll(poll);
        };
        // Leaves the fleet's queue unless admitted (awaited, off-thread).
        waiter.leave().await;
        drop(counted);
        match ended {
            Ended::Decided(result) => result,
            Ended::Unavailable(cause, retry_after) => {
                use crate::redis::Fallback;
                let waited = self.timer().now().saturating_duration_since(start);
                let left = wait.saturating_sub(waited);
                if r.fallback == Fallback::Local && !left.is_zero() {
                    // The fallback's local queue, waited on without blocking.
                    self.store_failed(r, cause);
                    r.fallback_decisions.incr();
                    return match self.core.try_acquire() {
                        Ok(permit) => Ok(Held::Local(permit)),
                        Err(_) => self.admit_slow_async(left).await.map(Held::Local),
                    };
                }
                self.fall_back(r, cause, retry_after, left)
            }
        }
    }
}

#[cfg(feature = "async")]
impl<T: super::AsyncTimer> BulkheadGuard<'_, T> {
    /// [`success`](Self::success) for a task: releases the permit and
    /// counts the call as a success; a Redis bulkhead's lease is released
    /// from one of its store's I/O threads while the task awaits it (the
    /// thread that polls never blocks), any other permit at once. Dropped
    /// while the release is in flight, the release goes on (uncounted);
    /// dropped before its first poll, it is the guard's drop.
    pub async fn success_async(self) {
        self.finish_async(false).await;
    }

    /// [`failure`](Self::failure) for a task: as
    /// [`success_async`](Self::success_async), counting a failure.
    pub async fn failure_async(self) {
        self.finish_async(true).await;
    }

    async fn finish_async(mut self, failed: bool) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let bulkhead = self.bulkhead;
        if let Some(release) = bulkhead.release_awaitable(permit) {
            release.await;
        }
        let counters = &bulkhead.shell.counters;
        if failed {
            counters.failures.incr();
        } else {
            counters.successes.incr();
        }
    }
}

/// A task's place in the FIFO, owed back if the future is dropped.
#[cfg(feature = "async")]
struct Queued<'a, T: Timer> {
    bulkhead: &'a Bulkhead<T>,
    /// `None` once admitted, refused or disposed: nothing owed.
    waiter: Option<sync::Arc<Waiter>>,
}

#[cfg(feature = "async")]
impl<'a, T: Timer> Queued<'a, T> {
    /// The waiter's state; while still waiting, `waker` is recorded for the
    /// grant (under the queue lock, as grants are made: no wake-up lost).
    fn poll_state(&self, waker: &core::task::Waker) -> u32 {
        let Some(waiter) = &self.waiter else {
            return DISPOSED;
        };
        let state = waiter.state.load(Ordering::Acquire);
        if state != WAITING {
            return state;
        }
        let _waiters = self.bulkhead.waiters.lock();
        let state = waiter.state.load(Ordering::Acquire);
        if state == WAITING {
            if let Wake::Task(slot) = &waiter.wake {
                let mut slot = slot.lock();
                match &mut *slot {
                    Some(known) => known.clone_from(waker),
                    None => *slot = Some(waker.clone()),
                }
            }
        }
        state
    }

    /// The permit granted to the waiter (its state read [`GRANTED`]).
    fn take_permit(&mut self) -> BulkheadPermit<'a> {
        match self.waiter.take() {
            Some(waiter) => waiter.permit(&self.bulkhead.core),
            None => unreachable!("a granted waiter is taken once"),
        }
    }

    /// The deadline passed: leaves the queue as a blocking waiter does,
    /// unless a grant or a dispose came first (it wins).
    fn time_out(&mut self, start: crate::clock::Timestamp) -> Result<BulkheadPermit<'a>, Refusal> {
        let bulkhead = self.bulkhead;
        let Some(waiter) = self.waiter.take() else {
            return Err(Refusal::Disposed);
        };
        let mut waiters = bulkhead.waiters.lock();
        match waiter.state.load(Ordering::Acquire) {
            GRANTED => return Ok(waiter.permit(&bulkhead.core)),
            DISPOSED => return Err(Refusal::Disposed),
            _ => {}
        }
        bulkhead.leave_locked(&mut waiters, &waiter);
        drop(waiters);
        Err(bulkhead.queue_timed_out(bulkhead.timer().now().saturating_duration_since(start)))
    }
}

#[cfg(feature = "async")]
impl<T: Timer> Drop for Queued<'_, T> {
    /// The future was dropped while queued: leave the queue, or hand on a
    /// permit granted meanwhile.
    fn drop(&mut self) {
        let Some(waiter) = self.waiter.take() else {
            return;
        };
        let bulkhead = self.bulkhead;
        let mut waiters = bulkhead.waiters.lock();
        match waiter.state.load(Ordering::Acquire) {
            GRANTED => {
                drop(waiters);
                // Released as any permit is: to the front waiter, if any.
                bulkhead.release(Held::Local(waiter.permit(&bulkhead.core)));
            }
            DISPOSED => {}
            _ => bulkhead.leave_locked(&mut waiters, &waiter),
        }
    }
}

/// A [`GuardedCall`]'s Redis release in flight and the call's output it
/// holds back (feature `redis`).
#[cfg(all(feature = "async", feature = "redis"))]
type Settling<'a, O> = Option<std::boxed::Box<(super::async_call::Wait<'a, ()>, O)>>;

/// Without feature `redis` a release never waits: nothing to hold.
#[cfg(all(feature = "async", not(feature = "redis")))]
type Settling<'a, O> = core::marker::PhantomData<fn() -> (&'a (), O)>;

#[cfg(feature = "async")]
pin_project_lite::pin_project! {
    /// A future run under a bulkhead's permit (`execute_async`, and the
    /// tower layer's): admitted at its first poll, at once when a permit is
    /// free and nobody is queued, otherwise through a boxed wait in the
    /// FIFO. Dropped while running it releases the permit (counting a
    /// failure only while a panic unwinds); dropped while waiting, its wait
    /// leaves the queue or hands on a permit granted to it.
    pub(crate) struct GuardedCall<'a, T: Timer, F: core::future::Future, L> {
        bulkhead: &'a Bulkhead<T>,
        stage: Admission<'a, Held<'a>, Refusal>,
        lift: core::marker::PhantomData<fn() -> L>,
        // A Redis lease's release in flight (on the store's I/O threads),
        // and the call's output, held back until it lands (boxed, and
        // nothing at all without feature `redis`: the local path's future
        // stays small).
        settling: Settling<'a, F::Output>,
        #[pin]
        call: F,
    }
    impl<'a, T: Timer, F: core::future::Future, L> PinnedDrop for GuardedCall<'a, T, F, L> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(permit) = this.stage.finish() {
                this.bulkhead.abandon(permit);
            }
        }
    }
}

#[cfg(feature = "async")]
impl<T, F, R, X, L> core::future::Future for GuardedCall<'_, T, F, L>
where
    T: super::AsyncTimer,
    F: core::future::Future<Output = Result<R, X>>,
    L: Lift<X>,
{
    type Output = Result<R, Error<L::Caller>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let bulkhead: &Bulkhead<T> = this.bulkhead;
        #[cfg(feature = "redis")]
        if let Some(settling) = this.settling {
            core::task::ready!(settling.0.as_mut().poll(cx));
            if let Some(settled) = this.settling.take() {
                return Poll::Ready(counted::<R, X, L>(&bulkhead.shell.counters, settled.1));
            }
        }
        let first_look = || match bulkhead.admit_now() {
            Some(permit) => FirstLook::Admitted(permit),
            None => FirstLook::Wait(std::boxed::Box::pin(
                bulkhead.admit_async(bulkhead.config().queue_timeout),
            )),
        };
        if let Err(refusal) =
            core::task::ready!(this.stage.poll_admitted(cx, first_look, "a bulkhead"))
        {
            return Poll::Ready(Err(refusal.into_error()));
        }
        // A panic in `call` unwinds through here: the drop releases the
        // permit and counts the failure.
        let out = core::task::ready!(this.call.poll(cx));
        if let Some(permit) = this.stage.finish() {
            #[cfg(feature = "redis")]
            if let Some(mut release) = bulkhead.release_awaitable(permit) {
                if release.as_mut().poll(cx).is_pending() {
                    *this.settling = Some(std::boxed::Box::new((release, out)));
                    return Poll::Pending;
                }
            }
            #[cfg(not(feature = "redis"))]
            bulkhead.release(permit);
        }
        Poll::Ready(counted::<R, X, L>(&bulkhead.shell.counters, out))
    }
}

#[cfg(feature = "async")]
impl<T: super::AsyncTimer> super::AsyncPolicy for Bulkhead<T> {
    /// Awaits `call` once a permit is held, as
    /// [`execute_async`](Bulkhead::execute_async) does; `call`'s errors
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
        self.guarded_async::<_, Keep>(call())
    }
}

impl<T: Timer> fmt::Debug for Bulkhead<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shell.debug(f, "Bulkhead", |s| {
            s.field("in_use", &self.in_use());
            s.field("queued", &self.queued());
        })
    }
}
