//! [`RedisCircuitBreaker`]: one circuit breaker for a fleet, kept in
//! Redis, with a closed path that costs no round trip.
//!
//! The design, the guarantees and their limits are documented on the type
//! and in the [module docs](super#the-circuit-breaker).

use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use core::time::Duration;
use std::boxed::Box;
use std::string::String;
use std::sync::{Arc, LazyLock, OnceLock, Weak};
use std::time::Instant;
use std::vec::Vec;

use parking_lot::Mutex;
use redis::Value;

use super::keys::{object_key, part_key};
use super::store::{Availability, Failure, Store};
use super::{RedisError, RedisOptions, StoreFailure};
use crate::breaker::{BreakerConfig, BreakerState, CircuitBreaker as Machine, Outcome, Transition};

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("breaker.lua")));

const OP_SYNC: i64 = 0;
const OP_FAILURE: i64 = 1;
const OP_ACQUIRE: i64 = 2;
const OP_VERDICT: i64 = 3;
const OP_MANUAL: i64 = 4;

const CODE_STATE: i64 = 0;
const CODE_GRANTED: i64 = 1;
const CODE_REFUSED: i64 = 2;
// 3: a stale verdict or failure; 5: a probe not in flight.
const CODE_ADMIT: i64 = 4;
const CODE_ABSENT: i64 = 6;
const CODE_MISMATCH: i64 = -1;

/// The cache word: state in bits 0-2, "Redis down" in bit 3, "Redis holds
/// another config" in bit 4, "never heard from Redis" in bit 5, "forked
/// child" in bit 6, the fleet's generation above. A closed breaker with
/// Redis answering is exactly `generation << 7`: the closed path tests
/// the low seven bits.
const STATE_MASK: u64 = 0b111;
const DOWN: u64 = 0b1000;
const MISMATCH: u64 = 0b1_0000;
const UNSYNCED: u64 = 0b10_0000;
/// Set in a forked child's copy: the background thread was the parent's.
const FORKED: u64 = 0b100_0000;
const FLAGS: u64 = STATE_MASK | DOWN | MISMATCH | UNSYNCED | FORKED;
const GEN_SHIFT: u32 = 7;

fn state_code(state: BreakerState) -> u64 {
    state as u8 as u64
}

fn state_of(code: u64) -> BreakerState {
    match code {
        0 => BreakerState::Closed,
        1 => BreakerState::Open,
        2 => BreakerState::HalfOpen,
        3 => BreakerState::ForcedOpen,
        _ => BreakerState::Disabled,
    }
}

/// A random host number (63 bits), different in every process and every
/// breaker.
fn new_host() -> i64 {
    use core::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(local_us());
    (h.finish() >> 1) as i64
}

/// Microseconds on this process's monotonic clock.
fn local_us() -> u64 {
    static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);
    BASE.elapsed().as_micros() as u64
}

/// What the fleet decided for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetAdmission {
    /// Admitted while the fleet's breaker is closed, in `generation`.
    /// Report a failure with [`RedisCircuitBreaker::failure`]; a success
    /// needs no report.
    Closed {
        /// The fleet generation the call was admitted in.
        generation: u64,
    },
    /// Admitted as one of the `half_open_max_probes` probes of the
    /// half-open round `generation`; report its verdict with
    /// [`RedisCircuitBreaker::verdict`].
    Probe {
        /// The round's generation.
        generation: u64,
        /// The probe's lease number.
        lease: u64,
    },
    /// Admitted because the fleet's breaker is disabled: report nothing.
    Disabled,
    /// Refused: the fleet's breaker is open, half-open with every probe
    /// lease taken, or forced open.
    Refused {
        /// The state that refused.
        state: BreakerState,
        /// When asking again may help (`None` when forced open).
        retry_after: Option<Duration>,
    },
}

/// Something this process observed about the fleet's breaker, handed to
/// the listener set with [`RedisCircuitBreaker::on_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetEvent {
    /// The fleet's state changed (from this process's script calls, a
    /// pub/sub message or a sync). `generation` numbers the changes this
    /// process observed, 1, 2, 3, … (modulo
    /// [`CircuitBreaker::GENERATIONS`](crate::breaker::CircuitBreaker::GENERATIONS)):
    /// the fleet's own generation is [`RedisCircuitBreaker::generation`].
    Transition(Transition),
    /// A command to Redis failed after the last one answered.
    Unavailable(StoreFailure),
    /// A command answered after one failed.
    Recovered,
}

type Listener = Box<dyn Fn(FleetEvent) + Send + Sync>;

/// One script reply.
enum Reply {
    Mismatch { stored: String, ours: String },
    State(StateReply),
}

#[derive(Clone, Copy)]
struct StateReply {
    code: i64,
    state: u64,
    generation: u64,
    since: i64,
    now: i64,
    a: i64,
}

impl Reply {
    fn parse(values: &[Value]) -> Option<Reply> {
        fn int(v: &Value) -> Option<i64> {
            match v {
                Value::Int(i) => Some(*i),
                _ => None,
            }
        }
        fn text(v: &Value) -> Option<String> {
            match v {
                Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                Value::SimpleString(s) => Some(s.clone()),
                _ => None,
            }
        }
        let code = int(values.first()?)?;
        if code == CODE_MISMATCH {
            return Some(Reply::Mismatch {
                stored: text(values.get(1)?)?,
                ours: text(values.get(2)?)?,
            });
        }
        let field = |i: usize| values.get(i).and_then(int);
        let state = field(1)?;
        let generation = field(2)?;
        if !(0..=4).contains(&state) || generation < 0 {
            return None;
        }
        Some(Reply::State(StateReply {
            code,
            state: state as u64,
            generation: generation as u64,
            since: field(3)?,
            now: field(4)?,
            a: field(5)?,
        }))
    }
}

/// What the cache lock guards: the last fleet transition's time and the
/// count of observed state changes.
struct Observed {
    /// Redis µs at which the cached generation began.
    since: i64,
    /// State changes observed, for [`FleetEvent::Transition`].
    changes: u32,
}

/// One circuit breaker shared by every process, on every host, that
/// opens the same name on the same Redis server (feature `redis`).
///
/// The engine under [`blocking::CircuitBreaker::redis`](crate::blocking::CircuitBreaker::redis),
/// for callers that build their own layer; it never runs the protected
/// call and never blocks beyond one bounded command. The semantics, the
/// bounds and what happens while Redis is down are documented in the
/// [module docs](super#the-circuit-breaker).
///
/// * [`admit`](Self::admit) decides one call: in the closed state from
///   this process's cached copy of the fleet's state (one atomic load, no
///   round trip); in the open state locally until the open time is over
///   by Redis's clock as estimated here, then by one script call that
///   grants at most `half_open_max_probes` probe leases fleet-wide.
/// * [`failure`](Self::failure) records a closed-state failure (one
///   script call; a success in the closed state sends nothing);
///   [`verdict`](Self::verdict) reports a probe.
/// * A background thread per breaker keeps the cache fresh: a pub/sub
///   subscription to `<base>:events` and a sync every `sync_interval`.
pub struct RedisCircuitBreaker {
    store: Arc<Store>,
    /// Base key, failures, failing hosts, probe leases.
    keys: [String; 4],
    channel: String,
    config: BreakerConfig,
    /// The script's config arguments (7-15).
    config_args: [i64; 9],
    time: super::TimeSource,
    sync_interval: Duration,
    /// This breaker's host number in the failing-hosts set (a forked
    /// child takes a new one).
    host: AtomicI64,
    word: AtomicU64,
    /// Redis µs minus local µs, from the latest script reply.
    offset: AtomicI64,
    /// Local µs before which an open or half-open breaker refuses without
    /// asking Redis.
    ask_after: AtomicU64,
    observed: Mutex<Observed>,
    availability: Availability,
    /// The last failure's cause ([`StoreFailure`] as its index).
    last_cause: AtomicU8,
    last_retry_after: Mutex<Option<Duration>>,
    /// The mismatch last met, while the word's mismatch bit is set.
    mismatch: Mutex<Option<RedisError>>,
    listener: OnceLock<Listener>,
    stop: Arc<AtomicBool>,
    /// Itself, to start a background thread again in a forked child.
    this: OnceLock<Weak<RedisCircuitBreaker>>,
    /// Its entry in the fork list.
    #[cfg(unix)]
    fork_node: &'static forks::Node,
}

impl core::fmt::Debug for RedisCircuitBreaker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RedisCircuitBreaker")
            .field("key", &self.keys[0])
            .field("state", &self.state())
            .field("generation", &self.generation())
            .field("available", &self.is_available())
            .finish()
    }
}

const CAUSES: [StoreFailure; 6] = [
    StoreFailure::Timeout,
    StoreFailure::Connection,
    StoreFailure::Server,
    StoreFailure::Protocol,
    StoreFailure::PoolExhausted,
    StoreFailure::GuardOpen,
];

impl RedisCircuitBreaker {
    /// The breaker `name` on `options`' server. Contacts nothing: Redis
    /// need not be up (the first sync happens in the background).
    ///
    /// # Errors
    ///
    /// [`RedisError::InvalidConfig`] for an invalid config;
    /// [`RedisError::InvalidOption`] for an invalid option, or for a
    /// config with a `failure_rate` window (the fleet counts failures in
    /// a time window instead, [`RedisOptions::failure_window`]: a window
    /// over calls would cost a round trip per call);
    /// [`RedisError::InvalidName`]; [`RedisError::InvalidUrl`].
    pub fn new(
        name: &str,
        config: BreakerConfig,
        options: &RedisOptions,
    ) -> Result<Arc<RedisCircuitBreaker>, RedisError> {
        config.validate()?;
        if let Some(rate) = config.failure_rate {
            return Err(RedisError::InvalidOption {
                option: "failure_rate",
                value: std::format!(
                    "{}% of {} calls (at least {})",
                    rate.threshold_percent,
                    rate.window_size,
                    rate.minimum_calls
                ),
                problem: "not supported on Redis: the fleet counts failures in a time window \
                          (RedisOptions::failure_window), since a window over calls would cost \
                          a round trip per call",
            });
        }
        let store = Store::for_options(options)?;
        let base = object_key(options.prefix_value(), "breaker", name)?;
        let us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let lease = options
            .lease_ttl_value()
            .unwrap_or(config.half_open_timeout);
        let config_args = [
            i64::from(config.failure_threshold),
            us(config.reset_timeout).max(1),
            us(config.half_open_timeout).max(1),
            i64::from(config.half_open_max_probes),
            i64::from(config.half_open_successes_to_close.unwrap_or(0)),
            us(options.failure_window_value()),
            i64::from(options.quorum_value()),
            us(lease).max(1),
            i64::from(options.adopt_stored_config_value()),
        ];
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let engine = Arc::new(RedisCircuitBreaker {
            store,
            keys: [
                base.clone(),
                part_key(&base, "failures"),
                part_key(&base, "hosts"),
                part_key(&base, "probes"),
            ],
            channel: part_key(&base, "events"),
            config,
            config_args,
            time: options.time_value(),
            sync_interval: options.sync_interval_value(),
            host: AtomicI64::new(new_host()),
            // Until the first reply the state is unknown: the first call
            // asks (a process joining a fleet whose breaker is open must
            // not run calls as if it were closed).
            word: AtomicU64::new(UNSYNCED),
            // A first estimate: this host's wall clock; every reply
            // replaces it with Redis's.
            offset: AtomicI64::new(wall - local_us() as i64),
            ask_after: AtomicU64::new(0),
            observed: Mutex::new(Observed {
                since: 0,
                changes: 0,
            }),
            availability: Availability::default(),
            last_cause: AtomicU8::new(0),
            last_retry_after: Mutex::new(None),
            mismatch: Mutex::new(None),
            listener: OnceLock::new(),
            stop: Arc::new(AtomicBool::new(false)),
            this: OnceLock::new(),
            #[cfg(unix)]
            fork_node: forks::node(),
        });
        let _ = engine.this.set(Arc::downgrade(&engine));
        #[cfg(unix)]
        engine.fork_node.word.store(
            core::ptr::from_ref(&engine.word).cast_mut(),
            Ordering::Release,
        );
        spawn_subscriber(&engine);
        Ok(engine)
    }

    /// Sets the listener for [`FleetEvent`]s, once. It is called outside
    /// every lock of the engine, on the thread that observed the event (a
    /// caller's, or the background thread). Returns the state changes
    /// observed before it was set and the state then (the first
    /// [`FleetEvent::Transition`] it hears is numbered one more, or later
    /// when two threads race to deliver), or `None` if a listener was
    /// set already.
    pub fn on_event(
        &self,
        listener: impl Fn(FleetEvent) + Send + Sync + 'static,
    ) -> Option<(u32, BreakerState)> {
        let observed = self.observed.lock();
        self.listener.set(Box::new(listener)).ok()?;
        Some((observed.changes, self.state()))
    }

    /// The config.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The base key (`<prefix>:v1:{breaker:<name>}`); the other keys are
    /// `<base>:failures`, `<base>:hosts`, `<base>:probes`, and the pub/sub
    /// channel `<base>:events`.
    pub fn key(&self) -> &str {
        &self.keys[0]
    }

    /// The fleet's state as this process last saw it (one load).
    #[inline]
    pub fn state(&self) -> BreakerState {
        state_of(self.word.load(Ordering::Acquire) & STATE_MASK)
    }

    /// The fleet's generation as this process last saw it: it grows by
    /// one with every fleet transition, and keeps growing when the keys
    /// expire and are made again (a new key starts at Redis's time in µs).
    /// 0 until this process has heard from Redis.
    pub fn generation(&self) -> u64 {
        self.word.load(Ordering::Acquire) >> GEN_SHIFT
    }

    /// `false` while the last command to Redis failed (decisions then
    /// follow the fallback).
    pub fn is_available(&self) -> bool {
        !self.availability.is_down()
    }

    /// How long after a trip elsewhere this process may still admit
    /// closed calls, when the trip's pub/sub message is lost and Redis
    /// answers: `sync_interval + 2 × command_timeout` (the next sync's
    /// wait for a free connection and its reply). Messages normally arrive
    /// within one network delay.
    pub fn propagation_bound(&self) -> Duration {
        self.sync_interval
            .saturating_add(self.store.command_timeout().saturating_mul(2))
    }

    /// Why the last failed command failed, and the guard's retry time:
    /// the error a fail-closed caller returns.
    pub fn unavailable_error(&self) -> RedisError {
        RedisError::Unavailable {
            cause: CAUSES[usize::from(self.last_cause.load(Ordering::Relaxed)) % CAUSES.len()],
            retry_after: *self.last_retry_after.lock(),
        }
    }

    /// Decides one call. The closed path (the fleet's breaker closed as
    /// last seen, Redis answering) is one atomic load and no round trip.
    ///
    /// # Errors
    ///
    /// [`RedisError::Unavailable`] when Redis did not answer (or did not
    /// answer the last command): the caller applies its fallback;
    /// [`RedisError::ConfigMismatch`] when Redis holds another config.
    #[inline]
    pub fn admit(&self) -> Result<FleetAdmission, RedisError> {
        let w = self.word.load(Ordering::Acquire);
        if w & FLAGS == 0 {
            return Ok(FleetAdmission::Closed {
                generation: w >> GEN_SHIFT,
            });
        }
        // Asking is allowed: always `Some`.
        self.admit_slow(w, true)
            .unwrap_or_else(|| Err(self.unavailable_error()))
    }

    /// [`admit`](Self::admit) when this process's cache decides, with no
    /// round trip: the closed path, a refusal while the wait is not over,
    /// forced open, disabled, or Redis known to be down (`Err`, for the
    /// fallback). `None` when `admit` would ask Redis (nothing heard from
    /// it yet, or an open or half-open breaker whose wait is over: a probe
    /// request); `None` is not a refusal: call `admit` where a round trip
    /// may block (for example off an event loop's thread).
    ///
    /// # Errors
    ///
    /// As [`admit`](Self::admit), inside the `Some`.
    #[inline]
    pub fn admit_without_round_trip(&self) -> Option<Result<FleetAdmission, RedisError>> {
        let w = self.word.load(Ordering::Acquire);
        if w & FLAGS == 0 {
            return Some(Ok(FleetAdmission::Closed {
                generation: w >> GEN_SHIFT,
            }));
        }
        self.admit_slow(w, false)
    }

    /// Asks Redis to decide, if `ask`; `None` otherwise.
    fn ask(&self, ask: bool) -> Option<Result<FleetAdmission, RedisError>> {
        ask.then(|| {
            self.call(OP_ACQUIRE, 0, 0, 0)
                .map(|reply| self.admission_from(reply))
        })
    }

    #[cold]
    #[inline(never)]
    fn admit_slow(&self, w: u64, ask: bool) -> Option<Result<FleetAdmission, RedisError>> {
        if w & FORKED != 0 {
            self.after_fork();
            return self.admit_slow(self.word.load(Ordering::Acquire), ask);
        }
        if w & MISMATCH != 0 {
            if let Some(mismatch) = self.mismatch.lock().clone() {
                return Some(Err(mismatch));
            }
        }
        if w & DOWN != 0 {
            return Some(Err(self.unavailable_error()));
        }
        if w & UNSYNCED != 0 {
            // Never heard from Redis (or forked): ask, in the one script
            // call that also decides (closed: admitted, writing nothing).
            return self.ask(ask);
        }
        match state_of(w & STATE_MASK) {
            BreakerState::Closed => Some(Ok(FleetAdmission::Closed {
                generation: w >> GEN_SHIFT,
            })),
            BreakerState::Disabled => Some(Ok(FleetAdmission::Disabled)),
            BreakerState::ForcedOpen => Some(Ok(FleetAdmission::Refused {
                state: BreakerState::ForcedOpen,
                retry_after: None,
            })),
            state => {
                let now = local_us();
                let after = self.ask_after.load(Ordering::Acquire);
                if now < after {
                    return Some(Ok(FleetAdmission::Refused {
                        state,
                        retry_after: Some(Duration::from_micros(after - now)),
                    }));
                }
                self.ask(ask)
            }
        }
    }

    /// In a forked child, once: a host number and a background thread of
    /// its own (the cache is the parent's, of unknown age: `UNSYNCED`
    /// makes the next decision ask Redis).
    #[cold]
    fn after_fork(&self) {
        if self.word.fetch_and(!FORKED, Ordering::AcqRel) & FORKED != 0 {
            self.host.store(new_host(), Ordering::Relaxed);
            if let Some(this) = self.this.get().and_then(Weak::upgrade) {
                spawn_subscriber(&this);
            }
        }
    }

    fn admission_from(&self, r: StateReply) -> FleetAdmission {
        match r.code {
            CODE_GRANTED => FleetAdmission::Probe {
                generation: r.generation,
                lease: r.a as u64,
            },
            CODE_REFUSED if r.a < 0 => FleetAdmission::Refused {
                state: BreakerState::ForcedOpen,
                retry_after: None,
            },
            CODE_REFUSED => {
                let state = state_of(r.state);
                let mut wait = Duration::from_micros(r.a as u64);
                if state == BreakerState::HalfOpen {
                    wait = wait.min(self.sync_interval);
                }
                self.ask_after.store(
                    local_us().saturating_add(wait.as_micros() as u64),
                    Ordering::Release,
                );
                FleetAdmission::Refused {
                    state,
                    retry_after: Some(Duration::from_micros(r.a as u64)),
                }
            }
            CODE_ADMIT if r.state == state_code(BreakerState::Disabled) => FleetAdmission::Disabled,
            // CODE_ADMIT: the round closed, or the breaker is closed;
            // CODE_ABSENT: nothing stored, closed.
            _ => FleetAdmission::Closed {
                generation: r.generation,
            },
        }
    }

    /// Records the failure of a call admitted as
    /// [`FleetAdmission::Closed`] in `generation`: one script call that
    /// adds it to the fleet's failure window and opens the fleet's breaker
    /// when `failure_threshold` failures lie in the window (and, with a
    /// quorum `Q`, at least `Q` distinct hosts failed in it). A failure of
    /// an earlier closed period (the breaker opened and closed since) is
    /// ignored.
    ///
    /// # Errors
    ///
    /// [`RedisError::Unavailable`] (the failure was not recorded
    /// fleet-wide); [`RedisError::ConfigMismatch`].
    pub fn failure(&self, generation: u64) -> Result<(), RedisError> {
        self.call(OP_FAILURE, generation, 0, 0).map(drop)
    }

    /// Reports the verdict of a probe ([`FleetAdmission::Probe`]): a
    /// failure re-opens the fleet's breaker, a success counts towards
    /// closing it (the core's half-open rule), an ignored outcome frees the
    /// lease. A verdict of another generation, or of a lease that expired
    /// or was reported, changes nothing (`Ok(false)`).
    ///
    /// # Errors
    ///
    /// As [`failure`](Self::failure).
    pub fn verdict(
        &self,
        generation: u64,
        lease: u64,
        outcome: Outcome,
    ) -> Result<bool, RedisError> {
        let code = match outcome {
            Outcome::Success => 1,
            Outcome::Failure => 2,
            Outcome::Ignored => 3,
        };
        let reply = self.call(OP_VERDICT, generation, code, lease)?;
        Ok(reply.code == CODE_STATE)
    }

    /// Moves the fleet's breaker to `state` now, from any state, in a new
    /// generation (the core's `trip`, `reset`, `force_open`, `disable`),
    /// and announces it to the fleet. Returns the state before.
    ///
    /// # Errors
    ///
    /// As [`failure`](Self::failure).
    pub fn set_state(&self, state: BreakerState) -> Result<BreakerState, RedisError> {
        let before = self.state();
        self.call(OP_MANUAL, 0, state_code(state) as i64, 0)?;
        Ok(before)
    }

    /// Reads the fleet's state from Redis now (what the background thread
    /// does every `sync_interval`).
    ///
    /// # Errors
    ///
    /// As [`failure`](Self::failure).
    pub fn sync(&self) -> Result<BreakerState, RedisError> {
        self.call(OP_SYNC, 0, 0, 0)?;
        Ok(self.state())
    }

    /// One script call; the reply updates the cache and the availability.
    fn call(
        &self,
        op: i64,
        generation: u64,
        arg: i64,
        lease: u64,
    ) -> Result<StateReply, RedisError> {
        if self.word.load(Ordering::Relaxed) & FORKED != 0 {
            self.after_fork();
        }
        let mut args = Vec::with_capacity(15);
        args.extend_from_slice(&[
            op,
            super::store::Store::now_argument(self.time),
            self.host.load(Ordering::Relaxed),
            generation as i64,
            arg,
            lease as i64,
        ]);
        args.extend_from_slice(&self.config_args);
        let keys = [
            self.keys[0].as_str(),
            self.keys[1].as_str(),
            self.keys[2].as_str(),
            self.keys[3].as_str(),
        ];
        let result: Result<Vec<Value>, Failure> = self.store.eval(&SCRIPT, &keys, &args);
        let parsed = match result {
            Ok(values) => Reply::parse(&values).ok_or(Failure {
                cause: StoreFailure::Protocol,
                retry_after: None,
            }),
            Err(failure) => Err(failure),
        };
        match parsed {
            Ok(Reply::State(reply)) => {
                self.answered();
                if self.word.load(Ordering::Relaxed) & MISMATCH != 0 {
                    self.word.fetch_and(!MISMATCH, Ordering::AcqRel);
                }
                let now = local_us() as i64;
                self.offset.store(reply.now - now, Ordering::Relaxed);
                let mut reply = reply;
                if reply.code == CODE_ABSENT {
                    // Nothing stored: closed, in a generation below any key
                    // made from now on and above any that expired.
                    reply.generation = (reply.now - 1).max(1) as u64;
                    reply.since = reply.now - 1;
                }
                self.observe(reply.state, reply.generation, reply.since);
                // Heard from Redis (also when the generation was known).
                if self.word.load(Ordering::Relaxed) & UNSYNCED != 0 {
                    self.word.fetch_and(!UNSYNCED, Ordering::AcqRel);
                }
                Ok(reply)
            }
            Ok(Reply::Mismatch { stored, ours }) => {
                self.answered();
                let error = RedisError::ConfigMismatch {
                    key: self.keys[0].clone(),
                    stored,
                    ours,
                };
                *self.mismatch.lock() = Some(error.clone());
                self.word.fetch_or(MISMATCH, Ordering::AcqRel);
                Err(error)
            }
            Err(failure) => {
                self.failed(failure);
                Err(failure.into_error())
            }
        }
    }

    fn emit(&self, event: FleetEvent) {
        if let Some(listener) = self.listener.get() {
            listener(event);
        }
    }

    fn answered(&self) {
        if self.word.load(Ordering::Relaxed) & DOWN != 0 {
            self.word.fetch_and(!DOWN, Ordering::AcqRel);
        }
        if self.availability.record(true) == Some(true) {
            self.emit(FleetEvent::Recovered);
        }
    }

    fn failed(&self, failure: Failure) {
        let index = CAUSES.iter().position(|c| *c == failure.cause).unwrap_or(0);
        self.last_cause.store(index as u8, Ordering::Relaxed);
        *self.last_retry_after.lock() = failure.retry_after;
        self.word.fetch_or(DOWN, Ordering::AcqRel);
        if self.availability.record(false) == Some(false) {
            self.emit(FleetEvent::Unavailable(failure.cause));
        }
    }

    /// Takes the fleet's `state` in `generation` (begun at Redis µs
    /// `since`) if it is newer than the cached one.
    fn observe(&self, state: u64, generation: u64, since: i64) {
        let transition = {
            let mut observed = self.observed.lock();
            let current = self.word.load(Ordering::Acquire);
            let cached_gen = current >> GEN_SHIFT;
            if generation <= cached_gen {
                return;
            }
            let before = current & STATE_MASK;
            // Under the lock no other thread changes the state or the
            // generation; the flags may change: keep them (but
            // `UNSYNCED`, which `call` clears after this).
            let _ = self
                .word
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                    Some((generation << GEN_SHIFT) | (w & (DOWN | MISMATCH | FORKED)) | state)
                });
            observed.since = since;
            let after_us = match state_of(state) {
                BreakerState::Open => {
                    let reset = self.config_args[1];
                    let local = since
                        .saturating_add(reset)
                        .saturating_sub(self.offset.load(Ordering::Relaxed));
                    local.max(0) as u64
                }
                _ => 0,
            };
            self.ask_after.store(after_us, Ordering::Release);
            if before == state {
                None
            } else {
                observed.changes = observed.changes.wrapping_add(1);
                Some(Transition {
                    from: state_of(before),
                    to: state_of(state),
                    generation: observed.changes & (Machine::GENERATIONS - 1),
                })
            }
        };
        if let Some(t) = transition {
            self.emit(FleetEvent::Transition(t));
        }
    }

    /// A pub/sub message `st:g:since`.
    fn message(&self, payload: &[u8]) {
        let text = String::from_utf8_lossy(payload);
        let mut parts = text.split(':').map(|p| p.parse::<i64>().ok());
        if let (Some(Some(st)), Some(Some(g)), Some(Some(since))) =
            (parts.next(), parts.next(), parts.next())
        {
            if (0..=4).contains(&st) && g >= 0 {
                self.observe(st as u64, g as u64, since);
            }
        }
    }

    /// Stops the background thread (at its next wake-up, within
    /// `sync_interval`). The engine keeps deciding from its cache and its
    /// own script calls.
    pub fn stop_background(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Redis µs at which the cached generation began (for an open
    /// breaker: when it opened); 0 before this process heard from Redis.
    pub fn since(&self) -> i64 {
        self.observed.lock().since
    }
}

/// What a call owes the fleet after its verdict: one script call
/// ([`RedisCircuitBreaker::failure`] or [`RedisCircuitBreaker::verdict`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FleetReport {
    /// A closed call failed in this generation.
    Failure(u64),
    /// A probe's verdict: generation, lease, outcome.
    Verdict(u64, u64, Outcome),
}

impl FleetReport {
    /// Sends the report (one round trip on this thread). A report Redis
    /// did not take is not retried: the engine marked Redis unavailable.
    pub(crate) fn send(self, engine: &RedisCircuitBreaker) {
        let _ = match self {
            FleetReport::Failure(generation) => engine.failure(generation),
            FleetReport::Verdict(generation, lease, outcome) => {
                engine.verdict(generation, lease, outcome).map(drop)
            }
        };
    }
}

// --- for tasks (feature `async`) -------------------------------------------

/// A report on its way to an I/O thread: sent when dropped unsent (its job
/// dropped unrun because its task gave up), so it is never lost.
#[cfg(feature = "async")]
struct Sending {
    engine: Arc<RedisCircuitBreaker>,
    report: Option<FleetReport>,
}

#[cfg(feature = "async")]
impl Sending {
    fn send(&mut self) {
        if let Some(report) = self.report.take() {
            report.send(&self.engine);
        }
    }
}

#[cfg(feature = "async")]
impl Drop for Sending {
    fn drop(&mut self) {
        self.send();
    }
}

/// An admission back from an I/O thread; dropped unwanted (its task gave
/// up while the round trip was in flight), a probe it was granted is
/// reported ignored, freeing its lease.
#[cfg(feature = "async")]
struct AdmissionLanded {
    engine: Arc<RedisCircuitBreaker>,
    admission: Option<Result<FleetAdmission, RedisError>>,
}

#[cfg(feature = "async")]
impl Drop for AdmissionLanded {
    fn drop(&mut self) {
        if let Some(Ok(FleetAdmission::Probe { generation, lease })) = self.admission.take() {
            let _ = self.engine.verdict(generation, lease, Outcome::Ignored);
        }
    }
}

#[cfg(feature = "async")]
impl RedisCircuitBreaker {
    /// [`admit`](Self::admit) for a task: decided here when this process's
    /// cache can ([`admit_without_round_trip`](Self::admit_without_round_trip));
    /// otherwise the round trip runs on one of the store's I/O threads
    /// while the task awaits it. Dropped while it runs, a probe it is
    /// granted is reported ignored from that thread.
    pub(crate) async fn admit_async(self: &Arc<Self>) -> Result<FleetAdmission, RedisError> {
        if let Some(decided) = self.admit_without_round_trip() {
            return decided;
        }
        let engine = Arc::clone(self);
        let mut landed = self
            .store
            .off_thread(move || {
                let admission = engine.admit();
                AdmissionLanded {
                    engine,
                    admission: Some(admission),
                }
            })
            .await;
        landed
            .admission
            .take()
            .unwrap_or_else(|| Err(self.unavailable_error()))
    }

    /// Sends `report` from one of the store's I/O threads while the task
    /// awaits it; dropped before it is sent, it is still sent from there.
    pub(crate) async fn report_async(self: &Arc<Self>, report: FleetReport) {
        let sending = Sending {
            engine: Arc::clone(self),
            report: Some(report),
        };
        self.store
            .off_thread(move || {
                let mut sending = sending;
                sending.send();
            })
            .await;
    }

    /// Sends `report` from one of the store's I/O threads, not awaited
    /// (a task dropped while its call ran). Should no I/O thread start,
    /// it is sent from this thread.
    pub(crate) fn report_off_thread(self: &Arc<Self>, report: FleetReport) {
        let sending = Sending {
            engine: Arc::clone(self),
            report: Some(report),
        };
        self.store.spawn_off_thread(move || drop(sending));
    }
}

impl Drop for RedisCircuitBreaker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        #[cfg(unix)]
        forks::release(self.fork_node);
    }
}

/// The engines of this process, for the `fork` handler: a lock-free list
/// of nodes (never freed, reused) pointing at each live engine's cache
/// word. In the child the handler marks every word `FORKED | UNSYNCED`,
/// so each engine's next decision starts a background thread of the
/// child's own and asks Redis before admitting anything.
#[cfg(unix)]
mod forks {
    use core::ptr;
    use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
    use std::boxed::Box;
    use std::sync::Once;

    pub(super) struct Node {
        /// The engine's word; null while the node is free.
        pub(super) word: AtomicPtr<AtomicU64>,
        /// Taken by an engine (between `node` and `release`).
        taken: AtomicBool,
        next: AtomicPtr<Node>,
    }

    static HEAD: AtomicPtr<Node> = AtomicPtr::new(ptr::null_mut());

    /// A free node (reused, or new and linked at the head).
    pub(super) fn node() -> &'static Node {
        register();
        let mut at = HEAD.load(Ordering::Acquire);
        while !at.is_null() {
            // SAFETY: nodes are leaked boxes, never freed.
            let node = unsafe { &*at };
            if node
                .taken
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return node;
            }
            at = node.next.load(Ordering::Acquire);
        }
        let node: &'static Node = Box::leak(Box::new(Node {
            word: AtomicPtr::new(ptr::null_mut()),
            taken: AtomicBool::new(true),
            next: AtomicPtr::new(ptr::null_mut()),
        }));
        let mut head = HEAD.load(Ordering::Acquire);
        loop {
            node.next.store(head, Ordering::Relaxed);
            match HEAD.compare_exchange_weak(
                head,
                ptr::from_ref(node).cast_mut(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return node,
                Err(actual) => head = actual,
            }
        }
    }

    /// The engine is going away: its word is no longer marked.
    pub(super) fn release(node: &Node) {
        node.word.store(ptr::null_mut(), Ordering::Release);
        node.taken.store(false, Ordering::Release);
    }

    fn register() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            // SAFETY: `in_child` is an `extern "C" fn()` that never
            // unwinds and only touches lock-free atomics (async-signal-
            // safe, as a fork handler must be). A failure (ENOMEM) leaves
            // forked children to the parent's cache, refreshed by their
            // own script calls only.
            let _ = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        });
    }

    /// Runs in the child right after `fork`, on its only thread.
    extern "C" fn in_child() {
        let mut at = HEAD.load(Ordering::Acquire);
        while !at.is_null() {
            // SAFETY: nodes are never freed.
            let node = unsafe { &*at };
            let word = node.word.load(Ordering::Acquire);
            if !word.is_null() {
                // SAFETY: a non-null `word` points into a live engine: the
                // engine nulls it in `drop` before its memory is freed, and
                // the child's memory is the parent's at the fork.
                unsafe { &*word }.fetch_or(super::FORKED | super::UNSYNCED, Ordering::AcqRel);
            }
            at = node.next.load(Ordering::Acquire);
        }
    }
}

/// The background thread: subscribes to the channel (reconnecting with
/// back-off) and syncs every `sync_interval`. It holds the engine weakly
/// and ends when the engine is dropped or stopped.
fn spawn_subscriber(engine: &Arc<RedisCircuitBreaker>) {
    let weak = Arc::downgrade(engine);
    let store = Arc::clone(&engine.store);
    let channel = engine.channel.clone();
    let stop = Arc::clone(&engine.stop);
    let interval = engine.sync_interval;
    let name = std::format!("stockade-redis-breaker:{}", engine.keys[0]);
    // Without a thread the cache is refreshed by this process's own
    // script calls only; `spawn` fails only when the system is out of
    // threads.
    let _ = std::thread::Builder::new()
        .name(name)
        .spawn(move || subscriber_loop(&weak, &store, &channel, &stop, interval));
}

fn subscriber_loop(
    weak: &Weak<RedisCircuitBreaker>,
    store: &Store,
    channel: &str,
    stop: &AtomicBool,
    interval: Duration,
) {
    let sync = || -> bool {
        match weak.upgrade() {
            Some(engine) => {
                let _ = engine.sync();
                true
            }
            None => false,
        }
    };
    let mut pause = Duration::from_millis(10);
    loop {
        if stop.load(Ordering::Acquire) || !sync() {
            return;
        }
        let mut last_sync = Instant::now();
        // While the guard is open no connection is attempted (each would
        // cost up to connect_timeout); the guarded sync above probes.
        if !store.guard_closed() {
            std::thread::sleep(pause.min(interval));
            pause = (pause * 2).min(interval);
            continue;
        }
        let Ok(mut connection) = store.dedicated(interval) else {
            std::thread::sleep(pause.min(interval));
            pause = (pause * 2).min(interval);
            continue;
        };
        let mut pubsub = connection.as_pubsub();
        if pubsub.subscribe(channel).is_err() {
            std::thread::sleep(pause.min(interval));
            pause = (pause * 2).min(interval);
            continue;
        }
        pause = Duration::from_millis(10);
        // Subscribed: a trip from now on arrives as a message; one sync
        // covers what happened before.
        if !sync() {
            return;
        }
        last_sync = last_sync.max(Instant::now());
        loop {
            if stop.load(Ordering::Acquire) {
                return;
            }
            match pubsub.get_message() {
                Ok(message) => match weak.upgrade() {
                    Some(engine) => engine.message(message.get_payload_bytes()),
                    None => return,
                },
                Err(e) if e.is_timeout() => {}
                // The connection broke: subscribe again.
                Err(_) => break,
            }
            if last_sync.elapsed() >= interval {
                if !sync() {
                    return;
                }
                last_sync = Instant::now();
            }
        }
    }
}
