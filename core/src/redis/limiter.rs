//! [`RedisRateLimiter`]: the core's GCRA limiter for a whole fleet, one
//! script call per decision (see the [module docs](super#the-rate-limiter)).

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::boxed::Box;
use std::format;
use std::string::String;
use std::sync::{Arc, LazyLock, OnceLock};
use std::vec::Vec;

use parking_lot::{Mutex, RwLock};

use super::store::{Availability, Failure, Store};
use super::{Fallback, RedisError, RedisOptions, StoreFailure};
use crate::clock::{Clock, MonotonicClock, Timestamp};
use crate::error::{ConfigError, ConfigOption};
use crate::limiter::{
    CancelError, Mode, RateLimitError, RateLimiter, RateLimiterConfig, Reservation,
};

/// The script, loaded once per server (`EVALSHA`, reloaded on `NOSCRIPT`).
static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("limiter.lua")));

/// The longest lead (`B·T` plus the longest wait) a Redis limiter accepts,
/// in microseconds (2^51 µs, 71 years): the script's sums of now and a
/// lead stay below 2^53, exact in Lua's doubles, until the year 2184.
pub const MAX_LEAD_MICROS: u64 = 1 << 51;

const OP_ACQUIRE: i64 = 1;
const OP_RESERVE: i64 = 2;
const OP_CANCEL: i64 = 3;

/// Why a [`RedisRateLimiter`] did not grant.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RedisLimitError {
    /// The limit refused, exactly as the core's
    /// [`RateLimiter`](crate::limiter::RateLimiter) would (with the exact
    /// `retry_after`).
    Limited(RateLimitError),
    /// Redis was not used: the stored config differs
    /// ([`RedisError::ConfigMismatch`]), or Redis did not answer and the
    /// fallback is [`Fallback::FailClosed`] ([`RedisError::Unavailable`]).
    Redis(RedisError),
}

impl fmt::Display for RedisLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisLimitError::Limited(e) => e.fmt(f),
            RedisLimitError::Redis(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for RedisLimitError {}

impl From<RateLimitError> for RedisLimitError {
    fn from(e: RateLimitError) -> Self {
        RedisLimitError::Limited(e)
    }
}

impl From<RedisError> for RedisLimitError {
    fn from(e: RedisError) -> Self {
        RedisLimitError::Redis(e)
    }
}

/// Who took a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Via {
    /// The script, in Redis.
    Redis,
    /// This process, from what Redis said before: a leased permit, or a
    /// refusal known from the last reply. No round trip.
    Local,
    /// The fallback, because Redis did not answer.
    Fallback,
}

/// A change of a store's availability, reported to the listener given to
/// [`RedisRateLimiter::set_listener`] once per change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreEvent {
    /// Redis stopped answering: decisions follow the fallback.
    Unavailable(StoreFailure),
    /// Redis answers again.
    Recovered,
}

/// A grant of [`RedisRateLimiter::try_acquire`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Grant {
    /// Who decided.
    pub via: Via,
    /// Redis's time of the grant, microseconds since 1970 (or the client
    /// time passed, with [`TimeSource::Client`](super::TimeSource::Client)),
    /// when the script decided.
    pub server_time_us: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Booking {
    /// Nothing to hand back: granted at once (or admitted by the
    /// fail-open fallback).
    Immediate,
    /// Booked in Redis: what a cancel needs.
    Redis { tat: u64, prev: u64, ready_us: u64 },
    /// Booked in the local fallback machine.
    Local(crate::limiter::ReservationToken),
}

/// Permits booked by [`RedisRateLimiter::reserve`]: the caller's from
/// [`ready_at`](Self::ready_at) on, or handed back with
/// [`RedisRateLimiter::cancel`].
#[derive(Debug, PartialEq, Eq, Hash)]
#[must_use = "a reservation books permits: wait until `ready_at`, or cancel it"]
pub struct RedisReservation {
    permits: u32,
    wait: Duration,
    ready_at: Timestamp,
    server_ready_us: Option<u64>,
    via: Via,
    booking: Booking,
}

impl RedisReservation {
    /// Permits booked.
    pub const fn permits(&self) -> u32 {
        self.permits
    }

    /// How long the caller must wait, from the decision on.
    pub const fn wait(&self) -> Duration {
        self.wait
    }

    /// `true` if the permits were available at once.
    pub const fn is_immediate(&self) -> bool {
        self.wait.is_zero()
    }

    /// When the permits may be used, on [`MonotonicClock`]: the moment this
    /// process received the decision plus [`wait`](Self::wait), so never
    /// before the time Redis booked (the round trip only delays it).
    pub const fn ready_at(&self) -> Timestamp {
        self.ready_at
    }

    /// Redis's time at which the permits are ready (microseconds since
    /// 1970) when the script booked them.
    pub const fn server_ready_at_us(&self) -> Option<u64> {
        self.server_ready_us
    }

    /// Who decided.
    pub const fn via(&self) -> Via {
        self.via
    }
}

/// The numbers the script runs on, derived from a config.
#[derive(Clone, Copy, Debug)]
struct Params {
    config: RateLimiterConfig,
    /// `T` in whole microseconds: the core's `T` rounded up.
    interval_us: u64,
    burst: u32,
    /// `B·T` in µs.
    limit_us: u64,
    /// `Q·T` in µs.
    room_us: u64,
    /// The effective queue timeout: `min(queue_timeout, Q·T)`.
    queue_timeout: Duration,
    /// The canonical config, as stored.
    canonical: [i64; 6],
    /// `canonical` as the script stores and compares it: the fields in
    /// decimal, comma-separated (one argument; equal strings compare in
    /// O(1) in Lua, where strings are interned).
    stored: ConfigText,
}

/// The canonical config's text, inline so that [`Params`] stays `Copy`
/// (six decimal numbers and five commas: at most 74 bytes).
#[derive(Clone, Copy)]
struct ConfigText {
    bytes: [u8; 80],
    len: u8,
}

impl ConfigText {
    fn of(canonical: &[i64; 6]) -> ConfigText {
        let text = canonical.map(|v| format!("{v}")).join(",");
        let mut bytes = [0u8; 80];
        let len = text.len().min(bytes.len());
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        ConfigText {
            bytes,
            len: len as u8,
        }
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Debug for ConfigText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Params {
    fn of(config: RateLimiterConfig) -> Result<Params, RedisError> {
        let core = RateLimiter::new(config)?;
        let interval_ns = core.emission_interval().as_nanos();
        let interval_us = interval_ns.div_ceil(1000) as u64;
        let burst = core.burst();
        let limit_us = u64::from(burst).saturating_mul(interval_us);
        let room_us = u64::from(config.max_queue_size).saturating_mul(interval_us);
        let room = Duration::from_micros(room_us);
        let queue_timeout = config.queue_timeout.min(room);
        let lead = u128::from(limit_us) + queue_timeout.as_micros();
        if u128::from(limit_us) > u128::from(MAX_LEAD_MICROS) {
            return Err(ConfigError::count_above(
                ConfigOption::Burst,
                u64::from(burst),
                MAX_LEAD_MICROS / interval_us,
            )
            .into());
        }
        if lead > u128::from(MAX_LEAD_MICROS) {
            return Err(ConfigError::duration_above(
                ConfigOption::QueueTimeout,
                config.queue_timeout,
                Duration::from_micros(MAX_LEAD_MICROS - limit_us),
            )
            .into());
        }
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let canonical = [
            nanos(config.period),
            i64::from(config.requests_per_period),
            i64::from(config.burst.unwrap_or(0)),
            i64::from(config.max_queue_size),
            nanos(config.queue_timeout),
            config.mode as i64,
        ];
        Ok(Params {
            config,
            interval_us,
            burst,
            limit_us,
            room_us,
            queue_timeout,
            canonical,
            stored: ConfigText::of(&canonical),
        })
    }
}

/// The canonical config as text, for [`RedisError::ConfigMismatch`].
fn canonical_text(fields: &[String; 6]) -> String {
    let burst = if fields[2] == "0" {
        "default"
    } else {
        &fields[2]
    };
    let mode = match fields[5].as_str() {
        "0" => "bursty",
        "1" => "strict",
        other => other,
    };
    format!(
        "period={}ns requests_per_period={} burst={} max_queue_size={} queue_timeout={}ns mode={}",
        fields[0], fields[1], burst, fields[3], fields[4], mode
    )
}

/// A stored canonical config back to a config, if it is one.
fn config_from_fields(fields: &[String; 6]) -> Option<RateLimiterConfig> {
    let num = |i: usize| fields[i].parse::<u64>().ok();
    let count = |i: usize| num(i).and_then(|v| u32::try_from(v).ok());
    Some(RateLimiterConfig {
        period: Duration::from_nanos(num(0)?),
        requests_per_period: count(1)?,
        burst: match count(2)? {
            0 => None,
            b => Some(b),
        },
        max_queue_size: count(3)?,
        queue_timeout: Duration::from_nanos(num(4)?),
        mode: match num(5)? {
            0 => Mode::Bursty,
            1 => Mode::Strict,
            _ => return None,
        },
    })
}

/// Permits leased from Redis and not yet handed out.
#[derive(Debug)]
struct Lease {
    remaining: u32,
    expires: Timestamp,
}

/// One reply of the script.
#[derive(Debug)]
enum Reply {
    Granted {
        now: u64,
        lead: u64,
        leased: u64,
    },
    Limited {
        now: u64,
        lead: u64,
        retry_us: u64,
    },
    QueueFull {
        now: u64,
        lead: u64,
        retry_us: u64,
    },
    WaitTooLong {
        now: u64,
        lead: u64,
        wait_us: u64,
    },
    Booked {
        now: u64,
        lead: u64,
        wait_us: u64,
        tat: u64,
        prev: u64,
    },
    Cancelled {
        lead: u64,
    },
    Superseded,
    Ready,
    Mismatch([String; 6]),
}

impl Reply {
    fn parse(values: &[redis::Value]) -> Option<Reply> {
        let int = |i: usize| -> Option<u64> {
            match values.get(i)? {
                redis::Value::Int(v) => u64::try_from(*v).ok(),
                _ => None,
            }
        };
        let text = |i: usize| -> String {
            match values.get(i) {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(redis::Value::Int(v)) => format!("{v}"),
                _ => String::new(),
            }
        };
        Some(match int(0)? {
            0 => Reply::Granted {
                now: int(1)?,
                lead: int(2)?,
                leased: int(3)?,
            },
            1 => Reply::Limited {
                now: int(1)?,
                lead: int(2)?,
                retry_us: int(3)?,
            },
            2 => Reply::QueueFull {
                now: int(1)?,
                lead: int(2)?,
                retry_us: int(3)?,
            },
            3 => Reply::WaitTooLong {
                now: int(1)?,
                lead: int(2)?,
                wait_us: int(3)?,
            },
            4 => Reply::Booked {
                now: int(1)?,
                lead: int(2)?,
                wait_us: int(3)?,
                tat: int(4)?,
                prev: int(5)?,
            },
            5 => Reply::Cancelled { lead: int(2)? },
            6 => Reply::Superseded,
            7 => Reply::Ready,
            9 => Reply::Mismatch([text(1), text(2), text(3), text(4), text(5), text(6)]),
            _ => return None,
        })
    }

    /// The lead after the call, if the reply says it.
    fn lead(&self) -> Option<(u64, u64)> {
        match *self {
            Reply::Granted { now, lead, .. }
            | Reply::Limited { now, lead, .. }
            | Reply::QueueFull { now, lead, .. }
            | Reply::WaitTooLong { now, lead, .. }
            | Reply::Booked { now, lead, .. } => Some((now, lead)),
            _ => None,
        }
    }
}

/// The limiter's fleet-wide state in Redis, with this process's local
/// fast paths and fallback: the non-blocking engine behind
/// [`blocking::RateLimiter::redis`](crate::blocking::RateLimiter::redis).
///
/// Every decision that needs the fleet's state is **one script call**
/// on one key (`<prefix>:v1:{limiter:<name>}`), running the core's
/// arithmetic on integer microseconds; see the
/// [module docs](super#the-rate-limiter) for what is exact, the local fast
/// paths and the fallback. Creating one does not contact Redis.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use stockade::limiter::{Mode, RateLimiterConfig};
/// use stockade::redis::{RedisOptions, RedisRateLimiter};
///
/// let config = RateLimiterConfig::DEFAULT
///     .with_requests_per_period(100)
///     .with_period(Duration::from_secs(60))
///     .with_mode(Mode::Strict);
/// let options = RedisOptions::new("redis://127.0.0.1:6379/0");
/// let limiter = RedisRateLimiter::new("partner-api", config, &options)?;
/// match limiter.try_acquire(1) {
///     Ok(_) => { /* call the partner */ }
///     Err(refused) => eprintln!("not now: {refused}"),
/// }
/// # Ok::<(), stockade::redis::RedisError>(())
/// ```
pub struct RedisRateLimiter {
    store: Arc<Store>,
    key: String,
    options: RedisOptions,
    /// The config in use (replaced once if a stored one is adopted).
    params: RwLock<Params>,
    /// The local machine of [`Fallback::Local`].
    fallback: Option<RateLimiter>,
    clock: MonotonicClock,
    /// A lower bound on the TAT, in this process's clock (nanoseconds of
    /// [`MonotonicClock`] + 1; 0 = unknown): refusals it implies cost no
    /// round trip.
    known_tat: AtomicU64,
    lease: Mutex<Lease>,
    lease_ttl: Duration,
    availability: Availability,
    fallback_decisions: AtomicU64,
    listener: OnceLock<Box<dyn Fn(StoreEvent) + Send + Sync>>,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("key", &self.key)
            .field("config", &self.config())
            .field("fallback", &self.options.fallback)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// The limiter `name` on the server of `options`. Validates the config
    /// and the options and builds the connection pool; Redis is contacted
    /// on the first decision, not here.
    ///
    /// # Errors
    ///
    /// [`RedisError::InvalidConfig`] for a config the core refuses, or one
    /// whose longest lead (`burst · T` plus the longest wait) exceeds
    /// [`MAX_LEAD_MICROS`]; [`RedisError::InvalidOption`] /
    /// [`RedisError::InvalidUrl`] for bad options;
    /// [`RedisError::InvalidName`] for a name that cannot be part of a key.
    pub fn new(
        name: &str,
        config: RateLimiterConfig,
        options: &RedisOptions,
    ) -> Result<RedisRateLimiter, RedisError> {
        let params = Params::of(config)?;
        let key = super::keys::object_key(&options.prefix, "limiter", name)?;
        let store = Store::for_options(options)?;
        let fallback = match options.fallback {
            Fallback::Local => Some(RateLimiter::new(local_share(
                config,
                options.expected_instances,
            ))?),
            _ => None,
        };
        Ok(RedisRateLimiter {
            store,
            key,
            options: options.clone(),
            params: RwLock::new(params),
            fallback,
            clock: MonotonicClock::new(),
            known_tat: AtomicU64::new(0),
            lease: Mutex::new(Lease {
                remaining: 0,
                expires: Timestamp::from_nanos(0),
            }),
            lease_ttl: options.lease_ttl.unwrap_or(Duration::from_millis(100)),
            availability: Availability::default(),
            fallback_decisions: AtomicU64::new(0),
            listener: OnceLock::new(),
        })
    }

    /// The key holding the state and the config.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The config in use: the caller's, or the stored one once adopted
    /// ([`RedisOptions::adopt_stored_config`]).
    pub fn config(&self) -> RateLimiterConfig {
        self.params.read().config
    }

    /// The emission interval the script uses: the core's
    /// [`emission_interval`](RateLimiter::emission_interval) rounded **up**
    /// to whole microseconds (equal to it when it is a whole number of
    /// microseconds).
    pub fn emission_interval(&self) -> Duration {
        Duration::from_micros(self.params.read().interval_us)
    }

    /// The burst `B`.
    pub fn burst(&self) -> u32 {
        self.params.read().burst
    }

    /// Decisions taken under the fallback because Redis did not answer.
    pub fn fallback_decisions(&self) -> u64 {
        self.fallback_decisions.load(Ordering::Relaxed)
    }

    /// `false` while the last command to Redis failed.
    pub fn is_available(&self) -> bool {
        !self.availability.is_down()
    }

    /// The local machine of [`Fallback::Local`], if that is the fallback.
    pub fn fallback_limiter(&self) -> Option<&RateLimiter> {
        self.fallback.as_ref()
    }

    /// Calls `listener` once each time Redis stops answering or answers
    /// again. Only the first listener set is kept; `false` if one was set.
    pub fn set_listener(&self, listener: impl Fn(StoreEvent) + Send + Sync + 'static) -> bool {
        self.listener.set(Box::new(listener)).is_ok()
    }

    /// Permits booked and not yet ready, as this process last learnt from
    /// Redis (no round trip): a lower bound, as other hosts may have booked
    /// since.
    pub fn queue_depth(&self) -> u32 {
        let p = *self.params.read();
        let lead = self.known_lead();
        let over = lead.saturating_sub(p.limit_us.saturating_mul(1000));
        let depth = over.div_ceil(p.interval_us.saturating_mul(1000).max(1));
        u32::try_from(depth).unwrap_or(u32::MAX)
    }

    /// Takes `n` permits now (all or nothing), or says exactly when to
    /// retry. With leasing on, a leased permit is handed out locally.
    ///
    /// # Errors
    ///
    /// [`RedisLimitError::Limited`] with the core's
    /// [`RateLimitError::RateLimited`] (exact `retry_after`) or
    /// `ExceedsCapacity` for `n` above the burst;
    /// [`RedisLimitError::Redis`] with `ConfigMismatch`, or `Unavailable`
    /// under [`Fallback::FailClosed`].
    pub fn try_acquire(&self, n: u32) -> Result<Grant, RedisLimitError> {
        self.acquire_with(n, None)
    }

    /// Books `n` permits at the next free slot in the fleet's queue and
    /// says how long to wait; refuses, booking nothing, as the core's
    /// [`reserve`](RateLimiter::reserve) does (`QueueFull` first, then
    /// `WaitTooLong` beyond `min(max_wait, queue_timeout)`).
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire), with `QueueFull` and
    /// `WaitTooLong` in place of `RateLimited`.
    pub fn reserve(&self, n: u32, max_wait: Duration) -> Result<RedisReservation, RedisLimitError> {
        self.reserve_with(n, max_wait, None)
    }

    /// Hands a waiting booking back, so the next caller can have its slot.
    /// Succeeds only for a reservation that had to wait, before it is ready,
    /// and while nobody booked after it (the core's rule); `false`
    /// otherwise, and when Redis does not answer (the slot then stays used:
    /// conservative).
    pub fn cancel(&self, reservation: RedisReservation) -> bool {
        if self.clock.now() >= reservation.ready_at {
            return false;
        }
        self.cancel_with(reservation, None).is_ok()
    }

    /// Unstable test support (not part of the API; may change in any
    /// release): [`try_acquire`](Self::try_acquire) decided by the script
    /// at `now_us` (µs since 1970), without the local fast paths.
    #[doc(hidden)]
    pub fn try_acquire_at(&self, n: u32, now_us: u64) -> Result<Grant, RedisLimitError> {
        self.acquire_with(n, Some(now_us))
    }

    /// Unstable test support: [`reserve`](Self::reserve) decided by the
    /// script at `now_us`, without the local fast paths.
    #[doc(hidden)]
    pub fn reserve_at(
        &self,
        n: u32,
        max_wait: Duration,
        now_us: u64,
    ) -> Result<RedisReservation, RedisLimitError> {
        self.reserve_with(n, max_wait, Some(now_us))
    }

    /// Unstable test support: a cancel decided by the script at `now_us`,
    /// with the core's [`CancelError`] reasons.
    ///
    /// # Errors
    ///
    /// The core's reasons; `Superseded` also when Redis did not answer.
    #[doc(hidden)]
    pub fn cancel_at(
        &self,
        reservation: RedisReservation,
        now_us: u64,
    ) -> Result<u32, CancelError> {
        self.cancel_with(reservation, Some(now_us))
    }

    // --- the calls ---------------------------------------------------------

    fn now_argument(&self, at: Option<u64>) -> i64 {
        match at {
            Some(us) => i64::try_from(us).unwrap_or(i64::MAX),
            None => Store::now_argument(self.options.time),
        }
    }

    /// Runs the script; reports availability changes.
    fn call(&self, args: &[i64], config: Option<&str>) -> Result<Reply, Failure> {
        let result = self
            .store
            .eval_with_text::<Vec<redis::Value>>(&SCRIPT, &[self.key.as_str()], args, config)
            .and_then(|values| {
                Reply::parse(&values).ok_or(Failure {
                    cause: StoreFailure::Protocol,
                    retry_after: None,
                })
            });
        let change = self.availability.record(result.is_ok());
        if let (Some(change), Some(listener)) = (change, self.listener.get()) {
            match (change, &result) {
                (false, Err(failure)) => listener(StoreEvent::Unavailable(failure.cause)),
                (true, _) => listener(StoreEvent::Recovered),
                _ => {}
            }
        }
        result
    }

    /// The arguments of an acquire or reserve.
    fn decision_args(
        p: &Params,
        now: i64,
        op: i64,
        n: u32,
        max_wait_us: u64,
        extra: u32,
    ) -> [i64; 8] {
        let cost = u64::from(n) * p.interval_us;
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        [
            now,
            op,
            as_i64(cost),
            as_i64(p.limit_us),
            as_i64(p.room_us),
            as_i64(max_wait_us),
            i64::from(extra),
            as_i64(p.interval_us),
        ]
    }

    /// The mismatch error, or the stored config adopted (`Ok`: call again;
    /// only once per call, should the stored config change meanwhile).
    fn mismatch(
        &self,
        stored: &[String; 6],
        ours: &Params,
        may_adopt: bool,
    ) -> Result<(), RedisLimitError> {
        let ours_text = canonical_text(&ours.canonical.map(|v| format!("{v}")));
        let error = || {
            RedisLimitError::Redis(RedisError::ConfigMismatch {
                key: self.key.clone(),
                stored: canonical_text(stored),
                ours: ours_text.clone(),
            })
        };
        if !(self.options.adopt_stored_config && may_adopt) {
            return Err(error());
        }
        let adopted = config_from_fields(stored)
            .and_then(|c| Params::of(c).ok())
            .ok_or_else(error)?;
        *self.params.write() = adopted;
        Ok(())
    }

    /// Records what a reply says about the TAT, in local time.
    fn learn(&self, sent: Timestamp, reply: &Reply) {
        if let Some((_, lead)) = reply.lead() {
            let tat = sent
                .as_nanos()
                .saturating_add(lead.saturating_mul(1000))
                .saturating_add(1);
            self.known_tat.fetch_max(tat, Ordering::Relaxed);
        }
    }

    /// How far the known TAT is ahead of now, in nanoseconds.
    fn known_lead(&self) -> u64 {
        let known = self.known_tat.load(Ordering::Relaxed);
        if known == 0 {
            return 0;
        }
        (known - 1).saturating_sub(self.clock.now().as_nanos())
    }

    /// A refusal the known TAT implies (no round trip), as the script
    /// would decide it: `None` when only Redis can tell.
    fn known_refusal(
        &self,
        p: &Params,
        n: u32,
        max_wait: Option<Duration>,
    ) -> Option<RateLimitError> {
        let lead = self.known_lead();
        if lead == 0 {
            return None;
        }
        let cost = u64::from(n) * p.interval_us * 1000;
        let over = lead.saturating_add(cost).saturating_sub(p.limit_us * 1000);
        if over == 0 {
            return None;
        }
        let Some(max_wait) = max_wait else {
            return Some(RateLimitError::RateLimited {
                retry_after: Duration::from_nanos(over),
            });
        };
        let room = p.room_us * 1000;
        if over > room {
            return Some(RateLimitError::QueueFull {
                retry_after: Duration::from_nanos(over - room),
            });
        }
        let wait = Duration::from_nanos(over);
        let max_wait = max_wait.min(p.queue_timeout);
        (wait > max_wait).then(|| RateLimitError::WaitTooLong {
            wait,
            retry_after: wait - max_wait,
        })
    }

    /// Takes `n` leased permits, if the lease holds them and is alive.
    fn take_leased(&self, n: u32) -> bool {
        let mut lease = self.lease.lock();
        if lease.remaining >= n && self.clock.now() < lease.expires {
            lease.remaining -= n;
            true
        } else {
            false
        }
    }

    fn extra_wanted(&self, n: u32, at: Option<u64>) -> u32 {
        if at.is_some() {
            return 0;
        }
        self.options.lease_permits.saturating_sub(n)
    }

    fn store_lease(&self, sent: Timestamp, leased: u64) {
        if leased > 0 {
            let mut lease = self.lease.lock();
            lease.remaining = u32::try_from(leased).unwrap_or(u32::MAX);
            lease.expires = sent.saturating_add(self.lease_ttl);
        }
    }

    fn fallback_decision(&self) {
        self.fallback_decisions.fetch_add(1, Ordering::Relaxed);
    }

    fn acquire_with(&self, n: u32, at: Option<u64>) -> Result<Grant, RedisLimitError> {
        let mut p = *self.params.read();
        let local = at.is_none();
        for attempt in 0..2 {
            check_capacity(&p, n)?;
            if n == 0 {
                return Ok(Grant {
                    via: Via::Local,
                    server_time_us: None,
                });
            }
            if local {
                if self.options.lease_permits > 0 && self.take_leased(n) {
                    return Ok(Grant {
                        via: Via::Local,
                        server_time_us: None,
                    });
                }
                if let Some(refusal) = self.known_refusal(&p, n, None) {
                    return Err(refusal.into());
                }
            }
            let sent = self.clock.now();
            let extra = self.extra_wanted(n, at);
            let args = Self::decision_args(&p, self.now_argument(at), OP_ACQUIRE, n, 0, extra);
            match self.call(&args, Some(p.stored.as_str())) {
                Ok(reply) => {
                    self.learn(sent, &reply);
                    match reply {
                        Reply::Granted { now, leased, .. } => {
                            self.store_lease(sent, leased);
                            return Ok(Grant {
                                via: Via::Redis,
                                server_time_us: Some(now),
                            });
                        }
                        Reply::Limited { retry_us, .. } => {
                            return Err(RateLimitError::RateLimited {
                                retry_after: Duration::from_micros(retry_us),
                            }
                            .into());
                        }
                        Reply::Mismatch(stored) => {
                            self.mismatch(&stored, &p, attempt == 0)?;
                            p = *self.params.read();
                        }
                        _ => return Err(self.unexpected()),
                    }
                }
                Err(failure) => return self.fallback_acquire(n, failure),
            }
        }
        Err(self.unexpected())
    }

    fn unexpected(&self) -> RedisLimitError {
        RedisLimitError::Redis(RedisError::Unavailable {
            cause: StoreFailure::Protocol,
            retry_after: None,
        })
    }

    fn fallback_acquire(&self, n: u32, failure: Failure) -> Result<Grant, RedisLimitError> {
        self.fallback_decision();
        let grant = Grant {
            via: Via::Fallback,
            server_time_us: None,
        };
        match self.options.fallback {
            Fallback::FailOpen => Ok(grant),
            Fallback::FailClosed => Err(failure.into_error().into()),
            _ => match &self.fallback {
                Some(local) => local
                    .try_acquire_n(n, &self.clock)
                    .map(|()| grant)
                    .map_err(Into::into),
                None => Err(failure.into_error().into()),
            },
        }
    }

    fn reserve_with(
        &self,
        n: u32,
        max_wait: Duration,
        at: Option<u64>,
    ) -> Result<RedisReservation, RedisLimitError> {
        let mut p = *self.params.read();
        let local = at.is_none();
        for attempt in 0..2 {
            check_capacity(&p, n)?;
            let immediate = |via, server_ready_us| RedisReservation {
                permits: n,
                wait: Duration::ZERO,
                ready_at: self.clock.now(),
                server_ready_us,
                via,
                booking: Booking::Immediate,
            };
            if n == 0 {
                return Ok(immediate(Via::Local, None));
            }
            if local {
                if self.options.lease_permits > 0 && self.take_leased(n) {
                    return Ok(immediate(Via::Local, None));
                }
                if let Some(refusal) = self.known_refusal(&p, n, Some(max_wait)) {
                    return Err(refusal.into());
                }
            }
            // Waits are whole microseconds: `wait > max_wait` exactly when
            // `wait_us > floor(max_wait in µs)`.
            let longest = max_wait.min(p.queue_timeout);
            let longest_us = u64::try_from(longest.as_micros()).unwrap_or(u64::MAX);
            let sent = self.clock.now();
            let extra = self.extra_wanted(n, at);
            let args =
                Self::decision_args(&p, self.now_argument(at), OP_RESERVE, n, longest_us, extra);
            match self.call(&args, Some(p.stored.as_str())) {
                Ok(reply) => {
                    self.learn(sent, &reply);
                    match reply {
                        Reply::Granted { now, leased, .. } => {
                            self.store_lease(sent, leased);
                            return Ok(immediate(Via::Redis, Some(now)));
                        }
                        Reply::QueueFull { retry_us, .. } => {
                            return Err(RateLimitError::QueueFull {
                                retry_after: Duration::from_micros(retry_us),
                            }
                            .into());
                        }
                        Reply::WaitTooLong { wait_us, .. } => {
                            let wait = Duration::from_micros(wait_us);
                            return Err(RateLimitError::WaitTooLong {
                                wait,
                                retry_after: wait.saturating_sub(longest),
                            }
                            .into());
                        }
                        Reply::Booked {
                            now,
                            wait_us,
                            tat,
                            prev,
                            ..
                        } => {
                            let wait = Duration::from_micros(wait_us);
                            let ready_us = now + wait_us;
                            return Ok(RedisReservation {
                                permits: n,
                                wait,
                                ready_at: self.clock.now().saturating_add(wait),
                                server_ready_us: Some(ready_us),
                                via: Via::Redis,
                                booking: Booking::Redis {
                                    tat,
                                    prev,
                                    ready_us,
                                },
                            });
                        }
                        Reply::Mismatch(stored) => {
                            self.mismatch(&stored, &p, attempt == 0)?;
                            p = *self.params.read();
                        }
                        _ => return Err(self.unexpected()),
                    }
                }
                Err(failure) => return self.fallback_reserve(n, max_wait, failure),
            }
        }
        Err(self.unexpected())
    }

    fn fallback_reserve(
        &self,
        n: u32,
        max_wait: Duration,
        failure: Failure,
    ) -> Result<RedisReservation, RedisLimitError> {
        self.fallback_decision();
        let open = RedisReservation {
            permits: n,
            wait: Duration::ZERO,
            ready_at: self.clock.now(),
            server_ready_us: None,
            via: Via::Fallback,
            booking: Booking::Immediate,
        };
        match (self.options.fallback, &self.fallback) {
            (Fallback::FailOpen, _) => Ok(open),
            (Fallback::Local, Some(local)) => {
                let booked: Reservation = local.reserve(n, max_wait, &self.clock)?;
                Ok(RedisReservation {
                    permits: n,
                    wait: booked.wait(),
                    ready_at: booked.ready_at(),
                    server_ready_us: None,
                    via: Via::Fallback,
                    booking: if booked.is_immediate() {
                        Booking::Immediate
                    } else {
                        Booking::Local(booked.into_token())
                    },
                })
            }
            _ => Err(failure.into_error().into()),
        }
    }

    fn cancel_with(&self, r: RedisReservation, at: Option<u64>) -> Result<u32, CancelError> {
        match r.booking {
            Booking::Immediate => Err(CancelError::Immediate),
            Booking::Local(token) => match &self.fallback {
                Some(local) => local.cancel(token, &self.clock).map(|_| r.permits),
                None => Err(CancelError::Superseded),
            },
            Booking::Redis {
                tat,
                prev,
                ready_us,
            } => {
                let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                let args = [
                    self.now_argument(at),
                    OP_CANCEL,
                    as_i64(tat),
                    as_i64(prev),
                    as_i64(ready_us),
                ];
                let sent = self.clock.now();
                match self.call(&args, None) {
                    Ok(Reply::Cancelled { lead, .. }) => {
                        // The TAT moved back: what we knew is too high.
                        let known = sent
                            .as_nanos()
                            .saturating_add(lead.saturating_mul(1000))
                            .saturating_add(1);
                        self.known_tat.store(known, Ordering::Relaxed);
                        Ok(r.permits)
                    }
                    Ok(Reply::Ready) => Err(CancelError::Ready),
                    _ => Err(CancelError::Superseded),
                }
            }
        }
    }
}

// --- for tasks (feature `async`) -------------------------------------------

/// A reservation's outcome back from an I/O thread; dropped unwanted (its
/// task gave up while the round trip was in flight), it cancels what it
/// booked.
#[cfg(feature = "async")]
struct Landed {
    engine: Arc<RedisRateLimiter>,
    outcome: Option<Result<RedisReservation, RedisLimitError>>,
}

#[cfg(feature = "async")]
impl Drop for Landed {
    fn drop(&mut self) {
        if let Some(Ok(reservation)) = self.outcome.take() {
            self.engine.cancel_off_thread(reservation);
        }
    }
}

#[cfg(feature = "async")]
impl RedisRateLimiter {
    /// [`reserve`](Self::reserve) for a task: decided here when no round
    /// trip is needed (`n` above the burst or zero, a leased permit, a
    /// refusal the known TAT implies); otherwise the round trip runs on
    /// one of the store's I/O threads (`Store::off_thread`) while the task
    /// awaits it. Dropped while the round trip is in flight, the booking it
    /// makes is handed to [`cancel`](Self::cancel) on an I/O thread when it
    /// lands (an immediate grant is spent, as a blocking `reserve` that
    /// returned it).
    pub(crate) async fn reserve_async(
        self: &Arc<Self>,
        n: u32,
        max_wait: Duration,
    ) -> Result<RedisReservation, RedisLimitError> {
        if let Some(decided) = self.reserve_locally(n, max_wait) {
            return decided;
        }
        let engine = Arc::clone(self);
        let mut landed = self
            .store
            .off_thread(move || {
                let outcome = engine.reserve(n, max_wait);
                Landed {
                    engine,
                    outcome: Some(outcome),
                }
            })
            .await;
        landed
            .outcome
            .take()
            .unwrap_or_else(|| Err(self.unexpected()))
    }

    /// Hands `reservation` back ([`cancel`](Self::cancel)) on one of the
    /// store's I/O threads, when it may still be handed back (booked to
    /// wait and not ready yet). Should no I/O thread start, it is not
    /// handed back (the slot stays used, as when Redis does not answer).
    pub(crate) fn cancel_off_thread(self: &Arc<Self>, reservation: RedisReservation) {
        if matches!(reservation.booking, Booking::Immediate)
            || self.clock.now() >= reservation.ready_at
        {
            return;
        }
        let engine = Arc::clone(self);
        self.store.spawn_off_thread(move || {
            let _ = engine.cancel(reservation);
        });
    }

    /// The decisions of [`reserve`](Self::reserve) that need no round
    /// trip; `None` when only Redis can tell.
    fn reserve_locally(
        &self,
        n: u32,
        max_wait: Duration,
    ) -> Option<Result<RedisReservation, RedisLimitError>> {
        let p = *self.params.read();
        if let Err(e) = check_capacity(&p, n) {
            return Some(Err(e.into()));
        }
        if n == 0 || (self.options.lease_permits > 0 && self.take_leased(n)) {
            return Some(Ok(RedisReservation {
                permits: n,
                wait: Duration::ZERO,
                ready_at: self.clock.now(),
                server_ready_us: None,
                via: Via::Local,
                booking: Booking::Immediate,
            }));
        }
        self.known_refusal(&p, n, Some(max_wait))
            .map(|refusal| Err(refusal.into()))
    }
}

fn check_capacity(p: &Params, n: u32) -> Result<(), RateLimitError> {
    if n > p.burst {
        Err(RateLimitError::ExceedsCapacity {
            requested: n,
            capacity: p.burst,
        })
    } else {
        Ok(())
    }
}

/// This process's share of the fleet's limit for [`Fallback::Local`]:
/// `requests_per_period`, an explicit `burst` and `max_queue_size` divided
/// by `instances` (each at least 1; a zero queue stays zero); the period,
/// the mode and the queue timeout unchanged.
pub fn local_share(config: RateLimiterConfig, instances: u32) -> RateLimiterConfig {
    let instances = instances.max(1);
    let share = |v: u32| (v / instances).max(1);
    RateLimiterConfig {
        requests_per_period: share(config.requests_per_period),
        burst: config.burst.map(share),
        max_queue_size: if config.max_queue_size == 0 {
            0
        } else {
            share(config.max_queue_size)
        },
        ..config
    }
}
