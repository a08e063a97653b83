//! [`Store`]: one process's connections to one Redis server, bounded in
//! time and guarded by a circuit breaker.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use core::time::Duration;
use std::boxed::Box;
use std::string::{String, ToString};
use std::sync::{Arc, Weak};
use std::vec::Vec;

use parking_lot::Mutex;
use redis::{Connection, FromRedisValue, RedisError as ClientError, RedisResult};

use super::{RedisError, RedisOptions, StoreFailure, TimeSource};
use crate::breaker::{BreakerConfig, CircuitBreaker};
use crate::clock::MonotonicClock;

/// Why one command did not give an answer, and when to try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) cause: StoreFailure,
    /// The guard breaker's `retry_after` when it refused.
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    fn new(cause: StoreFailure) -> Failure {
        Failure {
            cause,
            retry_after: None,
        }
    }

    /// The error a fail-closed object returns.
    pub(crate) fn into_error(self) -> RedisError {
        RedisError::Unavailable {
            cause: self.cause,
            retry_after: self.retry_after,
        }
    }
}

/// A pooled connection and the process that opened it: a connection
/// inherited through `fork` shares its socket with the parent and is never
/// used by the child.
struct Pooled {
    connection: Connection,
    pid: u32,
}

/// How long an I/O thread of a store (see `Store::off_thread`) waits
/// idle before it exits.
#[cfg(feature = "async")]
pub(crate) const IO_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What identifies a store: objects with equal settings share one.
#[derive(Clone, PartialEq, Eq)]
struct StoreKey {
    url: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    max_connections: u32,
    guard_failures: u32,
    guard_reset_timeout: Duration,
}

impl StoreKey {
    fn of(options: &RedisOptions) -> StoreKey {
        StoreKey {
            url: options.url.clone(),
            connect_timeout: options.connect_timeout,
            command_timeout: options.command_timeout,
            max_connections: options.max_connections,
            guard_failures: options.guard_failures,
            guard_reset_timeout: options.guard_reset_timeout,
        }
    }
}

/// The stores of this process, by settings.
static STORES: Mutex<Vec<(StoreKey, Weak<Store>)>> = Mutex::new(Vec::new());

/// One process's connections to one server.
///
/// * **Bounded:** a new connection waits at most `connect_timeout`, a
///   command `command_timeout` (read and write timeouts on the socket), a
///   caller finding every connection busy `command_timeout`.
/// * **Guarded:** a core [`CircuitBreaker`] counts failed commands
///   (timeouts, refused or dropped connections, error replies such as
///   `BUSY` or `LOADING`; a reply of an unexpected shape proves the server
///   alive and counts as a success). After `guard_failures` in
///   a row it opens, and commands fail with
///   [`StoreFailure::GuardOpen`] without touching the network until
///   `guard_reset_timeout` has passed; then one command probes, and its
///   success closes the guard.
/// * **Fork-safe:** connections opened by another process (the parent,
///   before a `fork`) are dropped unused; the child opens its own.
/// * **Lock-free pool:** idle connections sit in `max_connections` slots
///   taken with one swap and returned with one compare-and-swap, so a
///   `fork` while another thread holds the pool cannot wedge the child.
pub(crate) struct Store {
    client: redis::Client,
    key: StoreKey,
    /// Idle connections (null = empty slot).
    idle: Box<[AtomicPtr<Pooled>]>,
    /// Connections open (idle or in use) in the process in the high 32
    /// bits, their number in the low 32: a child starts from 0.
    open: AtomicU64,
    guard: CircuitBreaker,
    clock: MonotonicClock,
    /// The I/O threads that run async callers' round trips (feature
    /// `async`), started on first use.
    #[cfg(feature = "async")]
    io: std::sync::OnceLock<Arc<crate::blocking::WorkerPool>>,
}

impl Store {
    /// The store for `options`' server and settings, shared by every
    /// object of this process that uses the same ones.
    pub(crate) fn for_options(options: &RedisOptions) -> Result<Arc<Store>, RedisError> {
        options.validate()?;
        let key = StoreKey::of(options);
        let mut stores = STORES.lock();
        stores.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(store) = stores
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(store);
        }
        let client =
            redis::Client::open(options.url.as_str()).map_err(|e| RedisError::InvalidUrl {
                url: super::error::redact(&options.url),
                reason: e.to_string(),
            })?;
        let guard_config = BreakerConfig::DEFAULT
            .with_failure_threshold(options.guard_failures)
            .with_reset_timeout(options.guard_reset_timeout)
            .with_half_open_max_probes(1)
            .with_half_open_successes_to_close(1);
        let guard = CircuitBreaker::new(guard_config)?;
        let store = Arc::new(Store {
            client,
            idle: (0..options.max_connections)
                .map(|_| AtomicPtr::new(core::ptr::null_mut()))
                .collect(),
            open: AtomicU64::new(0),
            guard,
            clock: MonotonicClock::new(),
            key: key.clone(),
            #[cfg(feature = "async")]
            io: std::sync::OnceLock::new(),
        });
        stores.push((key, Arc::downgrade(&store)));
        Ok(store)
    }

    /// Runs `job` (blocking round trips) on one of this store's I/O
    /// threads and awaits its outcome through the task's waker: the thread
    /// that polls never blocks on the network.
    ///
    /// The I/O threads: at most `max_connections` (each round trip holds a
    /// connection, so more threads could only wait for one), started on
    /// demand, each exiting after [`IO_IDLE_TIMEOUT`] idle; jobs beyond
    /// them wait in FIFO order, one per awaiting task (the queue is not
    /// bounded by `command_timeout`: only each round trip is). Should no
    /// thread start at all (the OS refuses one), `job` runs on the thread
    /// that polls, as before.
    ///
    /// Dropping the future abandons `job` as `WorkerPool::submit_async`
    /// says: not started, it is dropped unrun on an I/O thread; running, it
    /// finishes on its I/O thread and its outcome is dropped there. So the
    /// `Drop` of what a job owns or returns (handing back what the round
    /// trip took) runs off the task's thread.
    #[cfg(feature = "async")]
    pub(crate) async fn off_thread<O, F>(&self, job: F) -> O
    where
        F: FnOnce() -> O + Send + 'static,
        O: Send + 'static,
    {
        let unrun = match self.io().submit_async(job) {
            Ok(call) => match call.await {
                Ok(outcome) => return outcome,
                // The pool shut down before a worker took it (the store
                // is going away).
                Err(job) => job,
            },
            Err(job) => job,
        };
        unrun()
    }

    /// The I/O threads (see [`off_thread`](Self::off_thread)).
    #[cfg(feature = "async")]
    fn io(&self) -> &Arc<crate::blocking::WorkerPool> {
        self.io.get_or_init(|| {
            Arc::new(crate::blocking::WorkerPool::new(
                "stockade-redis-io",
                self.key.max_connections as usize,
                usize::MAX,
                IO_IDLE_TIMEOUT,
            ))
        })
    }

    /// Hands `job` (a round trip nobody awaits: handing back what a
    /// dropped task took) to an I/O thread. Should no thread start, `job`
    /// is dropped unrun: what it would hand back stays taken until it
    /// expires, as when Redis does not answer.
    #[cfg(feature = "async")]
    pub(crate) fn spawn_off_thread(&self, job: impl FnOnce() + Send + 'static) {
        let _ = self.io().spawn(job);
    }

    /// The command timeout.
    pub(crate) fn command_timeout(&self) -> Duration {
        self.key.command_timeout
    }

    /// `true` while the guard breaker lets commands through.
    pub(crate) fn guard_closed(&self) -> bool {
        self.guard.state() == crate::breaker::BreakerState::Closed
    }

    /// The `now` argument the scripts take: `-1` (read Redis's `TIME`) or
    /// this host's wall clock in microseconds since 1970.
    pub(crate) fn now_argument(time: TimeSource) -> i64 {
        match time {
            TimeSource::Server => -1,
            TimeSource::Client => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64),
        }
    }

    /// Runs `command` on a pooled connection, under the guard.
    pub(crate) fn run<T>(
        &self,
        command: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, Failure> {
        let permit = match self.guard.try_acquire(&self.clock) {
            Ok(permit) => permit,
            Err(refused) => {
                return Err(Failure {
                    cause: StoreFailure::GuardOpen,
                    retry_after: refused.retry_after(),
                });
            }
        };
        let mut pooled = match self.checkout() {
            Ok(pooled) => pooled,
            Err(failure) => {
                if failure.cause == StoreFailure::PoolExhausted {
                    permit.ignore();
                } else {
                    permit.failure(&self.clock);
                }
                return Err(failure);
            }
        };
        match command(&mut pooled.connection) {
            Ok(value) => {
                permit.success(&self.clock);
                self.checkin(pooled);
                Ok(value)
            }
            Err(error) => {
                let cause = classify(&error);
                match cause {
                    // An error reply (busy, loading, read-only, out of
                    // memory): the server cannot serve, but the connection
                    // is in step (one request, one reply).
                    StoreFailure::Server => {
                        permit.failure(&self.clock);
                        self.checkin(pooled);
                    }
                    // A reply of another shape: the server is alive.
                    StoreFailure::Protocol => {
                        permit.success(&self.clock);
                        self.checkin(pooled);
                    }
                    // A timeout may leave a reply in flight: never reuse.
                    _ => {
                        permit.failure(&self.clock);
                        self.discard(pooled);
                    }
                }
                Err(Failure::new(cause))
            }
        }
    }

    /// Runs `script` with `keys` and `args` (EVALSHA, and on `NOSCRIPT`
    /// SCRIPT LOAD then EVALSHA again).
    pub(crate) fn eval<T: FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[i64],
    ) -> Result<T, Failure> {
        self.eval_with_text(script, keys, args, None)
    }

    /// [`eval`](Self::eval) with one more argument, a string, after the
    /// numbers (a script's canonical config: one argument instead of one
    /// per field, since Redis makes a Lua string of every argument).
    pub(crate) fn eval_with_text<T: FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[i64],
        text: Option<&str>,
    ) -> Result<T, Failure> {
        self.run(|connection| {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(*key);
            }
            for arg in args {
                invocation.arg(*arg);
            }
            if let Some(text) = text {
                invocation.arg(text);
            }
            invocation.invoke(connection)
        })
    }

    /// A connection of its own (for pub/sub), with the connect timeout and
    /// `read_timeout` for replies; not pooled and not guarded.
    pub(crate) fn dedicated(&self, read_timeout: Duration) -> Result<Connection, Failure> {
        let connection = self
            .client
            .get_connection_with_timeout(self.key.connect_timeout)
            .map_err(|e| Failure::new(classify(&e)))?;
        connection
            .set_read_timeout(Some(read_timeout))
            .and_then(|()| connection.set_write_timeout(Some(self.key.command_timeout)))
            .map_err(|e| Failure::new(classify(&e)))?;
        Ok(connection)
    }

    fn checkout(&self) -> Result<Pooled, Failure> {
        let me = std::process::id();
        let deadline = std::time::Instant::now() + self.key.command_timeout;
        let mut pause = Duration::from_micros(20);
        loop {
            for slot in self.idle.iter() {
                if slot.load(Ordering::Relaxed).is_null() {
                    continue;
                }
                let taken = slot.swap(core::ptr::null_mut(), Ordering::Acquire);
                if taken.is_null() {
                    continue;
                }
                // SAFETY: every non-null slot value came from
                // `Box::into_raw` in `checkin`, and the swap gave it to
                // this thread alone.
                let pooled = unsafe { Box::from_raw(taken) };
                if pooled.pid == me {
                    return Ok(*pooled);
                }
                // The parent's connection: its socket is the parent's too.
                drop(pooled);
            }
            if self.reserve_new(me) {
                return self.connect(me).inspect_err(|_| self.release_count(me));
            }
            if std::time::Instant::now() >= deadline {
                return Err(Failure::new(StoreFailure::PoolExhausted));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    fn connect(&self, pid: u32) -> Result<Pooled, Failure> {
        let connection = self.dedicated(self.key.command_timeout)?;
        Ok(Pooled { connection, pid })
    }

    fn checkin(&self, pooled: Pooled) {
        if pooled.pid != std::process::id() {
            return;
        }
        let raw = Box::into_raw(Box::new(pooled));
        for slot in self.idle.iter() {
            if slot
                .compare_exchange(
                    core::ptr::null_mut(),
                    raw,
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return;
            }
        }
        // No free slot (cannot happen while at most `max_connections` are
        // open, but never leak): close it.
        // SAFETY: `raw` came from `Box::into_raw` above and was not stored.
        let pooled = unsafe { Box::from_raw(raw) };
        self.discard(*pooled);
    }

    fn discard(&self, pooled: Pooled) {
        let pid = pooled.pid;
        drop(pooled);
        self.release_count(pid);
    }

    /// Counts one more open connection of process `me`, if under the cap.
    fn reserve_new(&self, me: u32) -> bool {
        let max = u64::from(self.key.max_connections);
        let mut current = self.open.load(Ordering::Relaxed);
        loop {
            let count = if (current >> 32) as u32 == me {
                current & 0xffff_ffff
            } else {
                0
            };
            if count >= max {
                return false;
            }
            let next = (u64::from(me) << 32) | (count + 1);
            match self.open.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Counts one connection of process `pid` closed.
    fn release_count(&self, pid: u32) {
        let _ = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
                ((current >> 32) as u32 == pid && current & 0xffff_ffff > 0).then(|| current - 1)
            });
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        #[cfg(feature = "async")]
        if let Some(io) = self.io.get() {
            io.shutdown();
        }
        for slot in self.idle.iter() {
            let taken = slot.swap(core::ptr::null_mut(), Ordering::Acquire);
            if !taken.is_null() {
                // SAFETY: as in `checkout`.
                drop(unsafe { Box::from_raw(taken) });
            }
        }
    }
}

/// What kind of failure a client error is.
fn classify(error: &ClientError) -> StoreFailure {
    if error.is_timeout() {
        StoreFailure::Timeout
    } else if error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
    {
        StoreFailure::Connection
    } else if error.kind() == redis::ErrorKind::Parse {
        // The stream is out of step: the connection is dropped.
        StoreFailure::Connection
    } else if error.kind() == redis::ErrorKind::UnexpectedReturnType {
        StoreFailure::Protocol
    } else {
        StoreFailure::Server
    }
}

/// Whether an object's store is answering, so that each change is
/// reported exactly once (`StoreUnavailable`, then `StoreRecovered`).
#[derive(Debug, Default)]
pub(crate) struct Availability {
    down: AtomicBool,
}

impl Availability {
    /// Records one command's outcome; returns `Some(available)` when this
    /// call changed the state.
    pub(crate) fn record(&self, answered: bool) -> Option<bool> {
        if answered {
            (self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::AcqRel))
                .then_some(true)
        } else {
            (!self.down.load(Ordering::Relaxed) && !self.down.swap(true, Ordering::AcqRel))
                .then_some(false)
        }
    }

    /// `true` while the last command failed.
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}

// SAFETY: the raw pointers in `idle` are owned boxes handed between
// threads only through the atomics; `Connection` is `Send`.
unsafe impl Send for Store {}
// SAFETY: as for `Send`: all shared access goes through atomics.
unsafe impl Sync for Store {}
