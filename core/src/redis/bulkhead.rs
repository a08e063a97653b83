//! [`RedisBulkhead`]: a fleet-wide concurrency limit whose permits are
//! leases with an expiry judged by one clock.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use core::time::Duration;
use std::format;
use std::string::{String, ToString};
use std::sync::{Arc, LazyLock, Weak};
use std::vec::Vec;

use redis::Value;

use super::keys;
use super::store::{Failure, Store};
use super::{RedisError, RedisOptions, StoreFailure, TimeSource};
use crate::bulkhead::{BulkheadConfig, BulkheadCounts};

/// The script: every decision is one call of it.
static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("bulkhead.lua")));

/// How long an unrenewed lease lives when [`RedisOptions::lease_ttl`] is
/// not set: 30 s.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// The first interval between a waiter's polls (1 ms); it doubles up to
/// [`LONGEST_POLL`].
pub const FIRST_POLL: Duration = Duration::from_millis(1);

/// The longest interval between a waiter's polls (50 ms).
pub const LONGEST_POLL: Duration = Duration::from_millis(50);

/// A lock owned by a process: held by another process's id, it was held
/// at a `fork` by a thread of the parent that the child does not have,
/// and the child takes it over. Held only for bookkeeping (list edits, no
/// I/O), so waiting for it spins.
struct PidLock<T> {
    /// The holder's process id, 0 when free.
    owner: AtomicU32,
    value: core::cell::UnsafeCell<T>,
}

// SAFETY: `value` is reached only through a `PidGuard`, and a guard exists
// for one holder at a time (the `owner` word, taken with a
// compare-and-swap, says who); `T: Send` lets it move between threads.
unsafe impl<T: Send> Sync for PidLock<T> {}

impl<T> PidLock<T> {
    fn new(value: T) -> PidLock<T> {
        PidLock {
            owner: AtomicU32::new(0),
            value: core::cell::UnsafeCell::new(value),
        }
    }

    fn lock(&self) -> PidGuard<'_, T> {
        let me = std::process::id();
        let mut spins = 0u32;
        loop {
            let owner = self.owner.load(Ordering::Relaxed);
            // Free, or held by another process: in this copy of the
            // memory (a forked child) no thread of that process exists.
            if owner != me
                && self
                    .owner
                    .compare_exchange_weak(owner, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return PidGuard { lock: self };
            }
            spins = spins.saturating_add(1);
            if spins < 64 {
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

struct PidGuard<'a, T> {
    lock: &'a PidLock<T>,
}

impl<T> core::ops::Deref for PidGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only holder (see `PidLock`'s `Sync`).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for PidGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`, and `&mut self` makes it unique here.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for PidGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.owner.store(0, Ordering::Release);
    }
}

/// Why a [`RedisBulkhead`] gave no permit.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RedisBulkheadError {
    /// Every permit is held fleet-wide (or owed to the callers waiting):
    /// the fleet's counts when Redis decided.
    Full(BulkheadCounts),
    /// Every permit is held and `max_queue` callers wait fleet-wide.
    QueueFull(BulkheadCounts),
    /// Redis did not answer ([`RedisError::Unavailable`]: the caller
    /// applies its fallback), or holds another config
    /// ([`RedisError::ConfigMismatch`]).
    Redis(RedisError),
}

impl fmt::Display for RedisBulkheadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisBulkheadError::Full(c) => write!(
                f,
                "fleet-wide bulkhead full ({} in use, {} waiting)",
                c.in_use, c.queued
            ),
            RedisBulkheadError::QueueFull(c) => write!(
                f,
                "fleet-wide bulkhead full and its queue too ({} in use, {} waiting)",
                c.in_use, c.queued
            ),
            RedisBulkheadError::Redis(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for RedisBulkheadError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            RedisBulkheadError::Redis(e) => Some(e),
            _ => None,
        }
    }
}

/// One decision's reply.
struct Reply {
    status: i64,
    counts: BulkheadCounts,
    text: String,
    ids: Vec<String>,
}

impl Reply {
    fn parse(value: Value) -> Option<Reply> {
        let Value::Array(items) = value else {
            return None;
        };
        let int = |v: &Value| match v {
            Value::Int(i) => Some(*i),
            _ => None,
        };
        let text = |v: &Value| match v {
            Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        };
        if items.len() < 4 {
            return None;
        }
        let count = |v: &Value| int(v).and_then(|i| u32::try_from(i).ok());
        Some(Reply {
            status: int(&items[0])?,
            counts: BulkheadCounts {
                in_use: count(&items[1])?,
                queued: count(&items[2])?,
            },
            text: text(&items[3])?,
            ids: items[4..].iter().filter_map(text).collect(),
        })
    }
}

/// What this process holds, and owes to Redis.
struct Local {
    /// The process these lists belong to (a forked child starts afresh).
    pid: u32,
    /// This process's part of every lease and waiter id.
    instance: String,
    next: u64,
    /// Leases of live [`RedisLease`]s: renewed by the keeper.
    held: Vec<String>,
    /// Leases turned into tokens ([`RedisLease::into_token`]): renewed
    /// until [`RedisBulkhead::release_token`].
    tokens: Vec<String>,
    /// Leases to remove once more (a release that failed, an acquire whose
    /// outcome is unknown); after that one try they are left to expire.
    pending: Vec<String>,
    /// Waiters (lease id, waiter id) to cancel once more.
    pending_waits: Vec<(String, String)>,
    /// The keeper thread, while one runs.
    keeper: Option<std::thread::Thread>,
}

impl Local {
    fn new(pid: u32) -> Local {
        Local {
            pid,
            instance: instance_id(pid),
            next: 0,
            held: Vec::new(),
            tokens: Vec::new(),
            pending: Vec::new(),
            pending_waits: Vec::new(),
            keeper: None,
        }
    }

    fn next_id(&mut self, kind: &str) -> String {
        self.next += 1;
        format!("{}:{kind}{}", self.instance, self.next)
    }

    /// Forgets `id` (held or token); `true` if it was this process's.
    fn forget(&mut self, id: &str) -> bool {
        for list in [&mut self.held, &mut self.tokens] {
            if let Some(at) = list.iter().position(|h| h == id) {
                list.swap_remove(at);
                return true;
            }
        }
        false
    }
}

/// `<pid>-<64 random bits>`: unique per process, also across hosts and
/// across a `fork` (the child's pid differs).
fn instance_id(pid: u32) -> String {
    use core::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(pid);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    let stack_marker = 0u8;
    hasher.write_usize(core::ptr::from_ref(&stack_marker) as usize);
    format!("{pid:x}-{:016x}", hasher.finish())
}

struct Inner {
    store: Arc<Store>,
    /// Config, leases, queue (join order), queue expiries.
    keys: [String; 4],
    config: BulkheadConfig,
    canonical: String,
    adopt: bool,
    time: TimeSource,
    lease_ttl: Duration,
    waiter_ttl: Duration,
    local: PidLock<Local>,
    /// Leases found expired when renewing them.
    lost: AtomicU64,
    /// The stored config adopted (`max_concurrent << 32 | max_queue`), 0
    /// while ours is in force.
    adopted: AtomicU64,
    closed: AtomicBool,
}

impl Inner {
    /// This process's lists (reset on the first use in a forked child: the
    /// parent's leases are the parent's to release and renew).
    fn local(&self) -> PidGuard<'_, Local> {
        let me = std::process::id();
        let mut local = self.local.lock();
        if local.pid != me {
            // A forked child: a parent's thread may have been editing the
            // lists at the fork, so they are left as they are (leaked, not
            // dropped) and this process starts afresh.
            core::mem::forget(core::mem::replace(&mut *local, Local::new(me)));
        }
        local
    }

    fn lease_micros(&self) -> i64 {
        i64::try_from(self.lease_ttl.as_micros()).unwrap_or(i64::MAX)
    }

    /// One script call.
    fn call(&self, op: &str, ids: &[&str]) -> Result<Reply, Failure> {
        let now = Store::now_argument(self.time);
        let waiter_micros = i64::try_from(self.waiter_ttl.as_micros()).unwrap_or(i64::MAX);
        let value: Value = self.store.run(|connection| {
            let mut invocation = SCRIPT.prepare_invoke();
            for key in &self.keys {
                invocation.key(key.as_str());
            }
            invocation
                .arg(op)
                .arg(now)
                .arg(self.canonical.as_str())
                .arg(i64::from(self.adopt))
                .arg(self.config.max_concurrent)
                .arg(self.config.max_queue)
                .arg(self.lease_micros())
                .arg(waiter_micros);
            for id in ids {
                invocation.arg(*id);
            }
            invocation.invoke(connection)
        })?;
        Reply::parse(value).ok_or(Failure {
            cause: StoreFailure::Protocol,
            retry_after: None,
        })
    }

    /// Notes the config in force from a reply.
    fn note_config(&self, text: &str) {
        if text == self.canonical {
            self.adopted.store(0, Ordering::Relaxed);
        } else if let Some(config) = parse_canonical(text) {
            self.adopted.store(
                u64::from(config.0) << 32 | u64::from(config.1),
                Ordering::Relaxed,
            );
        }
    }

    fn mismatch(&self, stored: String) -> RedisError {
        RedisError::ConfigMismatch {
            key: self.keys[0].clone(),
            stored,
            ours: self.canonical.clone(),
        }
    }

    /// Starts the keeper if none runs. Call with `local` locked.
    fn ensure_keeper(self: &Arc<Self>, local: &mut Local) {
        if local.keeper.is_some() {
            return;
        }
        let weak = Arc::downgrade(self);
        let interval = renew_interval(self.lease_ttl);
        let pid = local.pid;
        // A process that cannot start a thread does not renew: its leases
        // then last `lease_ttl`, and the next lease tries again.
        if let Ok(handle) = std::thread::Builder::new()
            .name("stockade-redis-bulkhead".to_string())
            .spawn(move || keeper(&weak, interval, pid))
        {
            local.keeper = Some(handle.thread().clone());
        }
    }

    /// Lists lease `id`, just granted, as held (renewed by the keeper).
    fn hold(self: &Arc<Self>, id: &str, pid: u32) {
        let mut local = self.local();
        if local.pid == pid {
            local.held.push(String::from(id));
            self.ensure_keeper(&mut local);
        }
    }

    /// One acquire: the lease id granted (listed as held), its process
    /// and the fleet's counts.
    fn try_acquire(self: &Arc<Self>) -> Result<(String, u32, BulkheadCounts), RedisBulkheadError> {
        let (id, pid) = {
            let mut local = self.local();
            (local.next_id("l"), local.pid)
        };
        match self.call("acquire", &[&id]) {
            Ok(reply) => match reply.status {
                1 => {
                    self.note_config(&reply.text);
                    self.hold(&id, pid);
                    Ok((id, pid, reply.counts))
                }
                -1 => Err(RedisBulkheadError::Redis(self.mismatch(reply.text))),
                _ => {
                    self.note_config(&reply.text);
                    Err(RedisBulkheadError::Full(reply.counts))
                }
            },
            Err(failure) => {
                if maybe_applied(failure.cause) {
                    self.owe(id, None, pid);
                }
                Err(RedisBulkheadError::Redis(failure.into_error()))
            }
        }
    }

    /// A lease or waiter whose removal must be tried once more later.
    fn owe(self: &Arc<Self>, lease: String, waiter: Option<String>, pid: u32) {
        let mut local = self.local();
        if local.pid != pid {
            return;
        }
        match waiter {
            Some(waiter) => local.pending_waits.push((lease, waiter)),
            None => local.pending.push(lease),
        }
        self.ensure_keeper(&mut local);
    }

    /// Releases `id` if this process holds it: one call; if it fails, the
    /// keeper tries once more, then the lease expires.
    fn release(self: &Arc<Self>, id: String, pid: u32) -> Result<(), RedisError> {
        if pid != std::process::id() {
            // The parent's lease (this is a forked child): the parent
            // releases it.
            return Ok(());
        }
        if !self.local().forget(&id) {
            // Lost (it expired unrenewed) or forgotten at a fork.
            return Ok(());
        }
        match self.call("release", &[&id]) {
            Ok(_) => Ok(()),
            Err(failure) => {
                self.owe(id, None, pid);
                Err(failure.into_error())
            }
        }
    }

    /// One round of the keeper: the owed removals, then one renewal of
    /// every lease this process holds. `false` when nothing is left to do.
    fn keep(&self, pid: u32) -> bool {
        let (ids, pending, waits) = {
            let mut local = self.local();
            if local.pid != pid {
                return false;
            }
            if local.held.is_empty()
                && local.tokens.is_empty()
                && local.pending.is_empty()
                && local.pending_waits.is_empty()
            {
                local.keeper = None;
                return false;
            }
            let ids: Vec<String> = local.held.iter().chain(&local.tokens).cloned().collect();
            (
                ids,
                core::mem::take(&mut local.pending),
                core::mem::take(&mut local.pending_waits),
            )
        };
        if !pending.is_empty() {
            let refs: Vec<&str> = pending.iter().map(String::as_str).collect();
            // The one retry: on failure the leases expire on their own.
            let _ = self.call("release", &refs);
        }
        for (lease, waiter) in &waits {
            let _ = self.call("cancel", &[lease, waiter]);
        }
        if !ids.is_empty() {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            if let Ok(reply) = self.call("renew", &refs) {
                let mut local = self.local();
                for gone in &reply.ids {
                    if local.forget(gone) {
                        self.lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        true
    }
}

/// Renew every third of the lease time.
fn renew_interval(lease_ttl: Duration) -> Duration {
    lease_ttl / 3
}

/// The keeper thread: renews this process's leases every `interval` and
/// retries owed removals once, until nothing is held or the bulkhead is
/// dropped.
fn keeper(inner: &Weak<Inner>, interval: Duration, pid: u32) {
    loop {
        let deadline = std::time::Instant::now() + interval;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::park_timeout(left);
            match inner.upgrade() {
                Some(i) if !i.closed.load(Ordering::Relaxed) => {}
                _ => return,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if !inner.keep(pid) {
            return;
        }
    }
}

fn canonical(max_concurrent: u32, max_queue: u32) -> String {
    format!("max_concurrent={max_concurrent},max_queue={max_queue}")
}

fn parse_canonical(text: &str) -> Option<(u32, u32)> {
    let rest = text.strip_prefix("max_concurrent=")?;
    let (mc, mq) = rest.split_once(",max_queue=")?;
    Some((mc.parse().ok()?, mq.parse().ok()?))
}

/// A concurrency limit for a whole fleet, kept in Redis in the style of
/// Stripe's concurrent-requests limiter: at most `max_concurrent` permits
/// are held at once across every process that uses the same server,
/// prefix and name.
///
/// This is the non-blocking engine: each method is at most one script
/// call. [`blocking::Bulkhead::redis`](crate::blocking::Bulkhead::redis)
/// adds waiting, the fallback, events and metrics.
///
/// # How it counts
///
/// * **Permits are leases.** A permit is a member of a sorted set
///   (`<base>:leases`) whose score is its expiry in microseconds on the
///   fleet's clock (Redis `TIME` by default); the member is a lease id
///   unique to the process (`<pid in hex>-<64 random bits in
///   hex>:l<counter>`). One script call drops the expired leases, counts
///   the rest and adds a lease if fewer
///   than `max_concurrent` are held (and none is owed to a waiter, below);
///   a release is one call removing it.
/// * **Renewal.** While this process holds leases, a keeper thread renews
///   all of them in one script call every `lease_ttl / 3` (lease_ttl from
///   [`RedisOptions::lease_ttl`], default 30 s). A call may run for as long
///   as it needs and keeps its permit; a process that dies (or stops
///   renewing) returns its permits at most `lease_ttl` after its last
///   renewal.
/// * **When renewal fails** (Redis unreachable or slower than
///   `command_timeout` for `2 × lease_ttl / 3` and more), this process's
///   leases expire while its calls still run: Redis then admits others in
///   their place, and until those calls finish the fleet may run up to
///   `max_concurrent` plus the number of such calls. Leases found expired
///   at the next renewal are counted ([`lost_leases`](Self::lost_leases))
///   and forgotten. A Redis restart without persistence loses every lease
///   with the same effect.
/// * **Releases are never counted twice.** A permit is removed from this
///   process's list before its release is sent; a release that fails is
///   retried once by the keeper (within `lease_ttl / 3`), then the lease
///   is left to expire. A lease id is used for one permit only, so a
///   retried call (or one whose reply was lost) never takes two permits.
///   An acquire whose outcome is unknown (timeout, dropped connection)
///   removes its lease the same way.
///
/// # Waiting
///
/// A caller that finds no permit may join the fleet's queue
/// ([`waiter`](Self::waiter)) when fewer than `max_queue` callers wait
/// fleet-wide. Waiters are kept in Redis with their join time and an
/// expiry (`waiter_ttl = 1 s + 2 × connect_timeout + 4 ×
/// command_timeout` after their last poll), so the place of a waiter that
/// died vanishes on its own (until then it keeps its place, and a permit
/// it is owed stays unused). A waiter polls (one script call, [`FIRST_POLL`]
/// doubling to [`LONGEST_POLL`]); it is admitted when fewer leases are
/// held than `max_concurrent` minus the waiters ahead of it. A newcomer
/// counts every waiter as ahead of it, so it never takes a permit a
/// waiter is owed.
///
/// **Order: FIFO across hosts by join time** on the fleet's clock (ties by
/// id), among waiters that keep polling: a permit freed while waiters wait
/// is taken by the first of them at its next poll (up to [`LONGEST_POLL`]
/// later), never by a newcomer or a later waiter. A waiter that stops
/// polling for longer than `waiter_ttl` loses its place and joins again at
/// the back.
///
/// # Keys
///
/// `<prefix>:v1:{bulkhead:<name>}` holds the canonical config
/// (`max_concurrent=N,max_queue=M`), `…:leases` the leases, `…:queue` and
/// `…:queue_exp` the waiters. The sets expire with their last member (and
/// are absent when nothing is held: an absent key means no permit taken);
/// the config key lives `lease_ttl` past the last acquire or wait. A
/// different config stored by a process that used the bulkhead within
/// `lease_ttl`, or that still holds or waits for a permit, is
/// [`RedisError::ConfigMismatch`] (or adopted, with
/// [`RedisOptions::adopt_stored_config`]: [`effective_config`](Self::effective_config)
/// then tells the limits in force). `queue_timeout` is each caller's own
/// and not compared.
///
/// # Fork
///
/// A forked child starts with no leases: it never renews or releases the
/// parent's (the parent still does), and its own leases and ids are new.
pub struct RedisBulkhead {
    inner: Arc<Inner>,
}

impl RedisBulkhead {
    /// The bulkhead `name` on `options`' server. Redis is not contacted:
    /// construction succeeds while it is down.
    ///
    /// # Errors
    ///
    /// [`RedisError::InvalidConfig`] for an invalid config;
    /// [`RedisError::InvalidOption`] / [`RedisError::InvalidUrl`] for bad
    /// options (also a `lease_ttl` shorter than `3 × command_timeout`:
    /// a renewal must fit well inside a lease);
    /// [`RedisError::InvalidName`] for a name that cannot be a key.
    pub fn new(
        name: &str,
        config: BulkheadConfig,
        options: &RedisOptions,
    ) -> Result<RedisBulkhead, RedisError> {
        config.validate()?;
        let store = Store::for_options(options)?;
        let base = keys::object_key(&options.prefix, "bulkhead", name)?;
        let lease_ttl = options.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL);
        if lease_ttl < options.command_timeout * 3 {
            return Err(RedisError::InvalidOption {
                option: "lease_ttl",
                value: format!("{} ms", lease_ttl.as_secs_f64() * 1e3),
                problem: "must be at least 3 × command_timeout for a bulkhead \
                          (a renewal must fit well inside a lease)",
            });
        }
        let waiter_ttl =
            Duration::from_secs(1) + options.connect_timeout * 2 + options.command_timeout * 4;
        let me = std::process::id();
        Ok(RedisBulkhead {
            inner: Arc::new(Inner {
                store,
                keys: [
                    base.clone(),
                    keys::part_key(&base, "leases"),
                    keys::part_key(&base, "queue"),
                    keys::part_key(&base, "queue_exp"),
                ],
                config,
                canonical: canonical(config.max_concurrent, config.max_queue),
                adopt: options.adopt_stored_config,
                time: options.time,
                lease_ttl,
                waiter_ttl,
                local: PidLock::new(Local::new(me)),
                lost: AtomicU64::new(0),
                adopted: AtomicU64::new(0),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// The caller's config.
    pub fn config(&self) -> &BulkheadConfig {
        &self.inner.config
    }

    /// The limits in force: the caller's config, or the stored one when
    /// [`RedisOptions::adopt_stored_config`] adopted it (as of the last
    /// reply).
    pub fn effective_config(&self) -> BulkheadConfig {
        match self.inner.adopted.load(Ordering::Relaxed) {
            0 => self.inner.config,
            packed => BulkheadConfig {
                max_concurrent: (packed >> 32) as u32,
                max_queue: packed as u32,
                ..self.inner.config
            },
        }
    }

    /// How long an unrenewed lease lives.
    pub fn lease_ttl(&self) -> Duration {
        self.inner.lease_ttl
    }

    /// How long a waiter's place lives after its last poll.
    pub fn waiter_ttl(&self) -> Duration {
        self.inner.waiter_ttl
    }

    /// The bulkhead's keys: the config key first, then the leases, the
    /// queue and the queue's expiries (one Cluster slot).
    pub fn keys(&self) -> [&str; 4] {
        let k = &self.inner.keys;
        [&k[0], &k[1], &k[2], &k[3]]
    }

    /// Permits this process holds (leases of live [`RedisLease`]s and of
    /// unreleased tokens).
    pub fn held(&self) -> u32 {
        let local = self.inner.local();
        u32::try_from(local.held.len() + local.tokens.len()).unwrap_or(u32::MAX)
    }

    /// Leases of this process found expired when renewing them (renewal
    /// failed for too long, or Redis lost its data): each is a call that
    /// ran without a fleet-wide permit for part of its time.
    pub fn lost_leases(&self) -> u64 {
        self.inner.lost.load(Ordering::Relaxed)
    }

    /// The fleet's counts now: leases held and callers waiting (one script
    /// call; expired leases and waiters are dropped first).
    ///
    /// # Errors
    ///
    /// [`RedisError::Unavailable`] when Redis does not answer.
    pub fn fleet_counts(&self) -> Result<BulkheadCounts, RedisError> {
        self.inner
            .call("read", &[])
            .map(|r| r.counts)
            .map_err(Failure::into_error)
    }

    /// Takes a permit if one is free fleet-wide and none is owed to a
    /// waiter (one script call).
    ///
    /// # Errors
    ///
    /// [`RedisBulkheadError::Full`] when every permit is held or owed;
    /// [`RedisBulkheadError::Redis`] with [`RedisError::Unavailable`] when
    /// Redis did not answer, or [`RedisError::ConfigMismatch`].
    pub fn try_acquire(&self) -> Result<RedisLease<'_>, RedisBulkheadError> {
        self.inner
            .try_acquire()
            .map(|(id, pid, counts)| self.lease(id, pid, counts))
    }

    /// A place to wait from: its first [`poll`](RedisWaiter::poll) takes a
    /// free permit or joins the fleet's queue; later polls keep the place
    /// and take the permit when it is this waiter's turn. Nothing is sent
    /// until the first poll.
    pub fn waiter(&self) -> RedisWaiter<'_> {
        RedisWaiter {
            bulkhead: self,
            place: Place::new(&self.inner),
        }
    }

    /// Releases one permit this process turned into a token
    /// ([`RedisLease::into_token`]); `Ok(false)` when it holds none.
    ///
    /// # Errors
    ///
    /// [`RedisError::Unavailable`] when the release could not be sent: the
    /// permit is no longer this process's (never renewed again), the keeper
    /// retries the removal once, then the lease expires.
    pub fn release_token(&self) -> Result<bool, RedisError> {
        let (id, pid) = {
            let mut local = self.inner.local();
            match local.tokens.pop() {
                Some(id) => {
                    // `release` forgets it again: keep it listed until then.
                    local.tokens.push(id.clone());
                    (id, local.pid)
                }
                None => return Ok(false),
            }
        };
        self.inner.release(id, pid).map(|()| true)
    }

    /// The lease of `id` (granted and listed as held).
    fn lease(&self, id: String, pid: u32, counts: BulkheadCounts) -> RedisLease<'_> {
        RedisLease {
            bulkhead: self,
            id: Some(id),
            pid,
            granted: counts,
        }
    }
}

impl Drop for RedisBulkhead {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        let (ids, keeper) = {
            let mut local = self.inner.local();
            let mut ids = core::mem::take(&mut local.tokens);
            ids.append(&mut local.held);
            ids.append(&mut local.pending);
            (ids, local.keeper.take())
        };
        if let Some(keeper) = keeper {
            keeper.unpark();
        }
        if !ids.is_empty() {
            // Unreleased tokens: given back now, or they expire.
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let _ = self.inner.call("release", &refs);
        }
    }
}

impl fmt::Debug for RedisBulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBulkhead")
            .field("key", &self.inner.keys[0])
            .field("config", &self.inner.config)
            .field("lease_ttl", &self.inner.lease_ttl)
            .field("held", &self.held())
            .finish_non_exhaustive()
    }
}

/// `true` when a failed command may still have run on the server.
fn maybe_applied(cause: StoreFailure) -> bool {
    matches!(
        cause,
        StoreFailure::Timeout | StoreFailure::Connection | StoreFailure::Protocol
    )
}

/// A fleet-wide permit held by this process. Dropping it releases it (one
/// script call; see [`RedisBulkhead`] for a release that fails).
#[must_use = "dropping a lease releases it at once"]
pub struct RedisLease<'a> {
    bulkhead: &'a RedisBulkhead,
    /// `None` once released or turned into a token.
    id: Option<String>,
    pid: u32,
    granted: BulkheadCounts,
}

impl RedisLease<'_> {
    /// The fleet's counts right after the grant.
    pub fn granted(&self) -> BulkheadCounts {
        self.granted
    }

    /// The lease id (the member of the leases set).
    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or("")
    }

    /// Releases the permit (one script call).
    ///
    /// # Errors
    ///
    /// [`RedisError::Unavailable`] when Redis did not answer: the permit is
    /// no longer renewed, the keeper retries the removal once, then the
    /// lease expires within `lease_ttl`.
    pub fn release(mut self) -> Result<(), RedisError> {
        match self.id.take() {
            Some(id) => self.bulkhead.inner.release(id, self.pid),
            None => Ok(()),
        }
    }

    /// Keeps the permit past this borrow: it stays this process's (and is
    /// renewed) until one [`RedisBulkhead::release_token`] gives it back.
    pub fn into_token(mut self) -> BulkheadCounts {
        if let Some(id) = self.id.take() {
            let mut local = self.bulkhead.inner.local();
            if local.pid == self.pid {
                if let Some(at) = local.held.iter().position(|h| *h == id) {
                    local.held.swap_remove(at);
                    local.tokens.push(id);
                }
            }
        }
        self.granted
    }
}

impl Drop for RedisLease<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = self.bulkhead.inner.release(id, self.pid);
        }
    }
}

impl fmt::Debug for RedisLease<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLease")
            .field("id", &self.id)
            .field("granted", &self.granted)
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum WaiterState {
    /// Nothing sent yet.
    Fresh,
    /// In the queue (or maybe: the last poll failed).
    Waiting { last_failed: bool },
    /// Admitted or refused: not in the queue.
    Done,
}

/// A caller waiting for a fleet-wide permit ([`RedisBulkhead::waiter`]).
/// Dropping it before it is admitted leaves the queue (one script call
/// that also removes a lease a lost reply may have granted; if Redis does
/// not answer, the keeper tries once more, then the place expires within
/// `waiter_ttl` and the lease within `lease_ttl`).
pub struct RedisWaiter<'a> {
    bulkhead: &'a RedisBulkhead,
    place: Place,
}

impl<'a> RedisWaiter<'a> {
    /// One script call: `Some(lease)` when admitted (a free permit, or this
    /// waiter's turn), `None` while it waits in the fleet's queue. Once it
    /// was admitted or refused, a waiter is spent: later polls send
    /// nothing and return [`RedisBulkheadError::QueueFull`] with zero
    /// counts.
    ///
    /// # Errors
    ///
    /// [`RedisBulkheadError::QueueFull`] (no permit, `max_queue` waiting;
    /// the caller is not queued); [`RedisBulkheadError::Redis`] when Redis
    /// did not answer (the place is kept for the next poll, or left when
    /// this is dropped) or holds another config.
    pub fn poll(&mut self) -> Result<Option<RedisLease<'a>>, RedisBulkheadError> {
        let pid = self.place.pid;
        let bulkhead = self.bulkhead;
        self.place
            .poll()
            .map(|granted| granted.map(|(id, counts)| bulkhead.lease(id, pid, counts)))
    }

    /// The interval before the next poll after one of `last`: doubled,
    /// from [`FIRST_POLL`] up to [`LONGEST_POLL`].
    pub fn next_poll(last: Duration) -> Duration {
        (last * 2).clamp(FIRST_POLL, LONGEST_POLL)
    }
}

impl fmt::Debug for RedisWaiter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisWaiter")
            .field("waiter", &self.place.waiter)
            .field("state", &self.place.state)
            .finish()
    }
}

/// A waiter's place in the fleet's queue, owned (so that an I/O thread can
/// poll it for a task); dropped while in the queue, it leaves it.
struct Place {
    inner: Arc<Inner>,
    lease: String,
    waiter: String,
    pid: u32,
    state: WaiterState,
}

impl Place {
    fn new(inner: &Arc<Inner>) -> Place {
        let mut local = inner.local();
        Place {
            inner: Arc::clone(inner),
            lease: local.next_id("l"),
            waiter: local.next_id("w"),
            pid: local.pid,
            state: WaiterState::Fresh,
        }
    }

    /// [`RedisWaiter::poll`]: the granted lease's id (listed as held) and
    /// the fleet's counts.
    fn poll(&mut self) -> Result<Option<(String, BulkheadCounts)>, RedisBulkheadError> {
        if self.state == WaiterState::Done {
            return Err(RedisBulkheadError::QueueFull(BulkheadCounts::default()));
        }
        let inner = &self.inner;
        match inner.call("wait", &[&self.lease, &self.waiter]) {
            Ok(reply) => match reply.status {
                1 => {
                    inner.note_config(&reply.text);
                    self.state = WaiterState::Done;
                    let id = core::mem::take(&mut self.lease);
                    inner.hold(&id, self.pid);
                    Ok(Some((id, reply.counts)))
                }
                2 => {
                    inner.note_config(&reply.text);
                    self.state = WaiterState::Waiting { last_failed: false };
                    Ok(None)
                }
                -1 => {
                    self.state = WaiterState::Done;
                    Err(RedisBulkheadError::Redis(inner.mismatch(reply.text)))
                }
                _ => {
                    inner.note_config(&reply.text);
                    self.state = WaiterState::Done;
                    Err(RedisBulkheadError::QueueFull(reply.counts))
                }
            },
            Err(failure) => {
                if maybe_applied(failure.cause) || self.state != WaiterState::Fresh {
                    self.state = WaiterState::Waiting { last_failed: true };
                }
                Err(RedisBulkheadError::Redis(failure.into_error()))
            }
        }
    }

    /// `true` while dropping it sends (or owes) a leave.
    #[cfg(feature = "async")]
    fn must_leave(&self) -> bool {
        matches!(self.state, WaiterState::Waiting { .. }) && self.pid == std::process::id()
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let WaiterState::Waiting { last_failed } = self.state else {
            return;
        };
        if self.pid != std::process::id() {
            return;
        }
        let inner = &self.inner;
        let lease = core::mem::take(&mut self.lease);
        let waiter = core::mem::take(&mut self.waiter);
        // After a failed poll the server is likely still away: the keeper
        // tries (once), so that giving up costs the caller no timeout.
        if !last_failed && inner.call("cancel", &[&lease, &waiter]).is_ok() {
            return;
        }
        inner.owe(lease, Some(waiter), self.pid);
    }
}

// --- for tasks (feature `async`) -------------------------------------------

/// A lease granted on an I/O thread, owned until a task claims it; dropped
/// unclaimed (its task gave up while the round trip was in flight), it is
/// released (one script call, on the thread that drops it: an I/O thread).
#[cfg(feature = "async")]
struct Granted {
    inner: Arc<Inner>,
    id: Option<String>,
    pid: u32,
    counts: BulkheadCounts,
}

#[cfg(feature = "async")]
impl Drop for Granted {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = self.inner.release(id, self.pid);
        }
    }
}

/// A task's place in the fleet's queue ([`RedisBulkhead::waiter_async`]):
/// each poll is one script call on one of the store's I/O threads.
/// Dropped while in the queue, it leaves it from an I/O thread.
#[cfg(feature = "async")]
pub(crate) struct AsyncWaiter<'a> {
    bulkhead: &'a RedisBulkhead,
    /// `None` while a poll holds it on an I/O thread, or once dropped
    /// there.
    place: Option<Place>,
}

#[cfg(feature = "async")]
impl<'a> AsyncWaiter<'a> {
    /// [`RedisWaiter::poll`] for a task: the script call runs on an I/O
    /// thread. Dropped while it runs, the place is left and a lease it
    /// granted released, on that thread.
    ///
    /// # Errors
    ///
    /// As [`RedisWaiter::poll`].
    pub(crate) async fn poll(&mut self) -> Result<Option<RedisLease<'a>>, RedisBulkheadError> {
        let Some(mut place) = self.place.take() else {
            return Err(RedisBulkheadError::QueueFull(BulkheadCounts::default()));
        };
        let (place, outcome) = self
            .bulkhead
            .inner
            .store
            .off_thread(move || {
                let outcome = place.poll().map(|granted| {
                    granted.map(|(id, counts)| Granted {
                        inner: Arc::clone(&place.inner),
                        id: Some(id),
                        pid: place.pid,
                        counts,
                    })
                });
                (place, outcome)
            })
            .await;
        self.place = Some(place);
        outcome.map(|granted| granted.map(|g| self.bulkhead.claim(g)))
    }
}

#[cfg(feature = "async")]
impl AsyncWaiter<'_> {
    /// Leaves the fleet's queue unless admitted or refused (as dropping a
    /// [`RedisWaiter`] does), the script call on an I/O thread, awaited.
    /// Dropped while it runs, the leave goes on there.
    pub(crate) async fn leave(mut self) {
        if let Some(place) = self.place.take() {
            if place.must_leave() {
                self.bulkhead
                    .inner
                    .store
                    .off_thread(move || drop(place))
                    .await;
            }
        }
    }
}

#[cfg(feature = "async")]
impl Drop for AsyncWaiter<'_> {
    fn drop(&mut self) {
        if let Some(place) = self.place.take() {
            if place.must_leave() {
                self.bulkhead
                    .inner
                    .store
                    .spawn_off_thread(move || drop(place));
            }
        }
    }
}

#[cfg(feature = "async")]
impl RedisBulkhead {
    /// [`try_acquire`](Self::try_acquire) for a task: the script call runs
    /// on one of the store's I/O threads. Dropped while it runs, a lease
    /// it granted is released on that thread.
    pub(crate) async fn try_acquire_async(&self) -> Result<RedisLease<'_>, RedisBulkheadError> {
        let inner = Arc::clone(&self.inner);
        self.inner
            .store
            .off_thread(move || {
                inner.try_acquire().map(|(id, pid, counts)| Granted {
                    inner: Arc::clone(&inner),
                    id: Some(id),
                    pid,
                    counts,
                })
            })
            .await
            .map(|granted| self.claim(granted))
    }

    /// [`waiter`](Self::waiter) for a task (see [`AsyncWaiter`]).
    pub(crate) fn waiter_async(&self) -> AsyncWaiter<'_> {
        AsyncWaiter {
            bulkhead: self,
            place: Some(Place::new(&self.inner)),
        }
    }

    /// The lease of a grant made on an I/O thread.
    fn claim(&self, mut granted: Granted) -> RedisLease<'_> {
        RedisLease {
            bulkhead: self,
            id: granted.id.take(),
            pid: granted.pid,
            granted: granted.counts,
        }
    }
}

#[cfg(feature = "async")]
impl RedisLease<'_> {
    /// [`release`](Self::release) for a task: the script call runs on one
    /// of the store's I/O threads. Dropped before it ran, the release
    /// still runs there (the lease is never kept).
    ///
    /// # Errors
    ///
    /// As [`release`](Self::release).
    pub(crate) async fn release_async(mut self) -> Result<(), RedisError> {
        let Some(owned) = self.owned() else {
            return Ok(());
        };
        let store = Arc::clone(&owned.inner.store);
        store
            .off_thread(move || {
                let mut owned = owned;
                match owned.id.take() {
                    Some(id) => owned.inner.release(id, owned.pid),
                    None => Ok(()),
                }
            })
            .await
    }

    /// Releases the lease from one of the store's I/O threads, not
    /// awaited (a task dropped while it held it).
    pub(crate) fn release_off_thread(mut self) {
        if let Some(owned) = self.owned() {
            let store = Arc::clone(&owned.inner.store);
            store.spawn_off_thread(move || drop(owned));
        }
    }

    /// The lease, owned (released when dropped); `None` once released.
    fn owned(&mut self) -> Option<Granted> {
        let id = self.id.take()?;
        Some(Granted {
            inner: Arc::clone(&self.bulkhead.inner),
            id: Some(id),
            pid: self.pid,
            counts: self.granted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another process's id than ours (as a forked child sees its
    /// parent's).
    fn other_pid() -> u32 {
        std::process::id().wrapping_add(1).max(1)
    }

    #[test]
    fn a_lock_held_by_another_process_is_taken_over() {
        let lock = PidLock::new(5u32);
        // Held by a thread of "the parent" at the fork.
        lock.owner.store(other_pid(), Ordering::Relaxed);
        *lock.lock() += 1;
        assert_eq!(lock.owner.load(Ordering::Relaxed), 0, "released");
        assert_eq!(*lock.lock(), 6);
    }

    #[test]
    fn a_forked_child_never_renews_or_releases_the_parents_leases() {
        // Nothing listens on port 1: any command sent would fail.
        let options = RedisOptions::new("redis://127.0.0.1:1/0");
        let b = RedisBulkhead::new("fork", BulkheadConfig::DEFAULT, &options).unwrap();
        let parent = other_pid();
        {
            // The lists as the parent left them.
            let mut local = b.inner.local.lock();
            local.pid = parent;
            local.held.push("parent:l1".into());
            local.tokens.push("parent:l2".into());
            local.pending.push("parent:l3".into());
        }
        // This process's first use starts afresh: nothing held, nothing
        // owed, nothing for a keeper to renew.
        assert_eq!(b.held(), 0);
        {
            let local = b.inner.local();
            assert!(local.pending.is_empty() && local.keeper.is_none());
            assert!(!local.instance.starts_with(&format!("{parent:x}-")));
        }
        // A parent's lease dropped or released here sends nothing (a
        // command to port 1 would be an error).
        let lease = RedisLease {
            bulkhead: &b,
            id: Some("parent:l1".into()),
            pid: parent,
            granted: BulkheadCounts::default(),
        };
        assert_eq!(lease.release(), Ok(()));
        assert_eq!(b.release_token(), Ok(false), "the parent's tokens");
        assert!(!b.inner.keep(std::process::id()), "nothing to renew");
    }
}
