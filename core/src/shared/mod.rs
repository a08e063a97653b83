//! One machine for every process on the host: breakers, limiters,
//! bulkheads and retry budgets in shared memory (feature `shared-memory`,
//! Linux).
//!
//! The core machines keep their whole state in `#[repr(C)]` words of
//! plain integers and atomics, with no pointers, so a machine placed in a
//! file that several processes map works across them at the cost of the
//! same atomic operations: a pre-forked server's workers (gunicorn, uwsgi,
//! a prefork C server) then share *one* limit of "10 requests per second to
//! the payment provider" instead of each worker having its own.
//!
//! ```no_run
//! use stockade::clock::Clock;
//! use stockade::limiter::{Mode, RateLimiter, RateLimiterConfig};
//! use stockade::shared::{HostClock, Shared, SharedOptions};
//!
//! let config = RateLimiterConfig::DEFAULT.with_mode(Mode::Strict); // 10 per second
//! // Every process that opens "payments" gets the same limiter.
//! let limiter = Shared::<RateLimiter>::open("payments", config, &SharedOptions::new())?;
//! if limiter.try_acquire(&HostClock).is_ok() {
//!     // call the payment provider
//! }
//! # Ok::<(), stockade::shared::SharedError>(())
//! ```
//!
//! # Where the state lives
//!
//! One file per shared object, named `stockade-<uid>-<kind>-<name>` in
//! `/dev/shm` (memory, cleared at boot) or in a directory you choose
//! ([`SharedOptions::directory`], e.g. systemd's `RuntimeDirectory=`).
//! `<kind>` is `breaker`, `limiter`, `bulkhead` or `budget`, so a breaker
//! and a limiter may share a name; bytes of the name outside
//! `[A-Za-z0-9._-]` are written as `%XX`.
//!
//! * **Creating:** the first process builds the whole file under a
//!   temporary name (mode `0600`, or `0660` with
//!   [`group_access`](SharedOptions::group_access)) and `link(2)`s it into
//!   place, which fails if another process got there first; that process
//!   then opens the winner's file. So exactly one process initialises, and
//!   a file visible under the name is always complete: nobody waits for a
//!   ready marker.
//! * **Opening:** without following a symbolic link (`O_NOFOLLOW`), and
//!   only a regular file owned by the caller's user (by its group with
//!   `group_access`) whose size is the one its header states. Anything else
//!   is refused with [`SharedError::Refused`].
//! * **The header** records the format version, the kind, the state word's
//!   width (the 64- or 32-bit layout), the machine's size and alignment,
//!   the byte order, the clock (`CLOCK_MONOTONIC`), the boot id, the time
//!   namespace and the canonical bytes of the config. A file written by an
//!   incompatible build is refused with [`SharedError::Incompatible`],
//!   naming the field and both values; a different config with
//!   [`SharedError::ConfigMismatch`], showing both configs, unless
//!   [`adopt_stored_config`](SharedOptions::adopt_stored_config) is set. A
//!   file left from an earlier boot (possible in a directory that survives
//!   reboots) is rebuilt in place.
//! * **Removing:** nothing removes the file by itself: it outlives the
//!   processes, so a restarted worker finds the state its predecessors left
//!   (an open breaker stays open). [`Shared::unlink`] (or
//!   [`SharedBulkhead::unlink`], or deleting the file) removes the name;
//!   processes that have it open keep using the old region, and the next
//!   open creates a fresh one. `/dev/shm` is cleared at boot.
//!
//! # Time
//!
//! Shared machines read [`HostClock`], `CLOCK_MONOTONIC`: one time line for
//! every process on the host. (The process-local `MonotonicClock` counts
//! from each process's first use, so its readings cannot be compared across
//! processes.) A process in another time namespace sees another
//! `CLOCK_MONOTONIC`, so opening a region created in another time
//! namespace is refused ([`SharedError::OtherTimeNamespace`]).
//!
//! # Guarantees
//!
//! | machine | across processes | a process killed at any instruction |
//! | --- | --- | --- |
//! | rate limiter | exactly the local limiter's decisions, one compare-and-swap per grant on one word (never more than `N` per period in strict mode) | changes nothing: the state is a time, written in one step |
//! | retry budget | exactly the local budget's | changes nothing, as for the limiter |
//! | circuit breaker | one state for all: a trip in one process rejects in every other on its next call; `half_open_max_probes` probes in total | a probe it held expires at the end of the half-open round (`half_open_timeout`); a transition is one compare-and-swap on the control word, and the time stamp written after it is repaired by the next caller if the process died in between (the open period then counts from that call: longer, never an early admission) |
//! | bulkhead | at most `max_concurrent` permits held host-wide | its permits come back before any caller is refused for lack of them (see [`SharedBulkhead`]) |
//!
//! Events (listeners) are per process: each process hears its own
//! transitions and refusals. What the machine itself counts (the breaker's
//! [`metrics`](crate::breaker::CircuitBreaker::metrics): failures,
//! rejections, transitions; the bulkhead's permits in use) is read from the
//! shared words, so it is host-wide; the blocking layer's call counters
//! are per process.
//!
//! # Memory safety
//!
//! Only native atomics may live in shared memory: portable-atomic's
//! lock-based fallback keeps its lock in process memory, which other
//! processes cannot see. This module exists only where the state words'
//! atomics are native and lock-free (a compile-time check), and a mapped
//! machine is reached only as `&Machine` whose every shared field is an
//! atomic; its other fields are written once, before the file is
//! published, and every bit pattern of them is a value, so even a corrupted
//! file cannot cause undefined behaviour. The file's permissions are the
//! security boundary: a process that can write the file can change the
//! decisions, as with any shared state.
//!
//! # Fork
//!
//! A mapping survives `fork`, so a child keeps using the limiter, breaker
//! and budget its parent opened. A bulkhead's ownership is per process: the
//! child notices the fork on its next call and takes its own owner slot
//! (see [`SharedBulkhead`]).

#[cfg(not(all(target_has_atomic = "64", target_has_atomic = "32")))]
compile_error!(
    "feature `shared-memory` needs native 32- and 64-bit atomics: portable-atomic's \
     lock-based fallback would keep its lock in process memory, unseen by other processes"
);

mod bulkhead;
mod clock;
mod codec;
mod error;
mod options;
#[cfg(target_os = "linux")]
mod region;
#[cfg(target_os = "linux")]
mod sys;

pub use bulkhead::{
    QueuePlace, QueueToken, SharedBulkhead, SharedBulkheadError, SharedPermit, SharedToken,
};
pub use clock::HostClock;
pub use error::{Refusal, SharedError};
pub use options::SharedOptions;

use core::fmt;
use core::ops::Deref;
use core::ptr::NonNull;
use std::path::Path;

use crate::ConfigError;

/// What kind of machine a region holds (a header field, and part of the
/// file name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// [`crate::breaker::CircuitBreaker`].
    Breaker = 1,
    /// [`crate::limiter::RateLimiter`].
    Limiter = 2,
    /// [`crate::bulkhead::Bulkhead`], with owner slots.
    Bulkhead = 3,
    /// [`crate::budget::RetryBudget`].
    Budget = 4,
}

impl Kind {
    /// The word in the file name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Breaker => "breaker",
            Kind::Limiter => "limiter",
            Kind::Bulkhead => "bulkhead",
            Kind::Budget => "budget",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A core machine that can live in a shared region: `#[repr(C)]`, atomics
/// and plain integers only (every bit pattern a value), no pointers, no
/// `Drop`. Implemented by the four machines; sealed.
pub trait Machine: Sized + Send + Sync + sealed::Sealed + 'static {
    /// The region kind.
    const KIND: Kind;
    /// The machine's config.
    type Config: Copy + PartialEq + fmt::Debug + Send + Sync + 'static;

    /// A fresh machine (the core's `new`).
    ///
    /// # Errors
    ///
    /// The core's [`ConfigError`].
    fn build(config: &Self::Config) -> Result<Self, ConfigError>;

    /// The config's canonical bytes (little-endian, fixed field order).
    #[doc(hidden)]
    fn encode(config: &Self::Config, out: &mut codec::Encoder);

    /// The config back from its canonical bytes; `None` if they are not a
    /// config of this kind.
    #[doc(hidden)]
    fn decode(input: &mut codec::Decoder<'_>) -> Option<Self::Config>;

    /// The machine's settings as numbers (not its state): two machines
    /// built from one config agree on them.
    #[doc(hidden)]
    fn settings(&self) -> [u64; 6];
}

impl sealed::Sealed for crate::limiter::RateLimiter {}
impl sealed::Sealed for crate::breaker::CircuitBreaker {}
impl sealed::Sealed for crate::budget::RetryBudget {}
impl sealed::Sealed for crate::bulkhead::Bulkhead {}

impl Machine for crate::limiter::RateLimiter {
    const KIND: Kind = Kind::Limiter;
    type Config = crate::limiter::RateLimiterConfig;

    fn build(config: &Self::Config) -> Result<Self, ConfigError> {
        Self::new(*config)
    }

    fn encode(c: &Self::Config, out: &mut codec::Encoder) {
        out.u32(c.requests_per_period);
        out.duration(c.period);
        out.option_u32(c.burst);
        out.u32(c.max_queue_size);
        out.duration(c.queue_timeout);
        out.u32(c.mode as u32);
    }

    fn decode(d: &mut codec::Decoder<'_>) -> Option<Self::Config> {
        use crate::limiter::Mode;
        Some(crate::limiter::RateLimiterConfig {
            requests_per_period: d.u32()?,
            period: d.duration()?,
            burst: d.option_u32()?,
            max_queue_size: d.u32()?,
            queue_timeout: d.duration()?,
            mode: match d.u32()? {
                0 => Mode::Bursty,
                1 => Mode::Strict,
                _ => return None,
            },
        })
    }

    fn settings(&self) -> [u64; 6] {
        [
            self.emission_interval().as_nanos() as u64,
            u64::from(self.burst()),
            u64::from(self.max_queue_size()),
            self.queue_timeout().as_nanos() as u64,
            self.resolution().as_nanos() as u64,
            0,
        ]
    }
}

impl Machine for crate::breaker::CircuitBreaker {
    const KIND: Kind = Kind::Breaker;
    type Config = crate::breaker::BreakerConfig;

    fn build(config: &Self::Config) -> Result<Self, ConfigError> {
        Self::new(*config)
    }

    fn encode(c: &Self::Config, out: &mut codec::Encoder) {
        out.u32(c.failure_threshold);
        out.duration(c.reset_timeout);
        out.duration(c.half_open_timeout);
        out.duration(c.monitor_interval);
        out.u32(c.half_open_max_probes);
        out.option_u32(c.half_open_successes_to_close);
        match c.failure_rate {
            Some(fr) => {
                out.u32(1);
                out.u32(fr.threshold_percent);
                out.u32(fr.window_size);
                out.u32(fr.minimum_calls);
            }
            None => {
                out.u32(0);
                out.u32(0);
                out.u32(0);
                out.u32(0);
            }
        }
        match c.slow_call_threshold {
            Some(d) => {
                out.u32(1);
                out.duration(d);
            }
            None => {
                out.u32(0);
                out.duration(core::time::Duration::ZERO);
            }
        }
    }

    fn decode(d: &mut codec::Decoder<'_>) -> Option<Self::Config> {
        use crate::breaker::{BreakerConfig, FailureRateConfig};
        let failure_threshold = d.u32()?;
        let reset_timeout = d.duration()?;
        let half_open_timeout = d.duration()?;
        let monitor_interval = d.duration()?;
        let half_open_max_probes = d.u32()?;
        let half_open_successes_to_close = d.option_u32()?;
        let has_rate = d.flag()?;
        let (t, w, m) = (d.u32()?, d.u32()?, d.u32()?);
        let has_slow = d.flag()?;
        let slow = d.duration()?;
        Some(BreakerConfig {
            failure_threshold,
            reset_timeout,
            half_open_timeout,
            monitor_interval,
            half_open_max_probes,
            half_open_successes_to_close,
            failure_rate: has_rate.then(|| FailureRateConfig::new(t, w, m)),
            slow_call_threshold: has_slow.then_some(slow),
        })
    }

    fn settings(&self) -> [u64; 6] {
        let c = self.config();
        let rate = c.failure_rate.map_or(0, |f| {
            u64::from(f.threshold_percent) << 40
                | u64::from(f.window_size) << 20
                | u64::from(f.minimum_calls)
        });
        [
            u64::from(c.failure_threshold) << 32 | u64::from(c.half_open_max_probes),
            c.reset_timeout.as_nanos() as u64,
            c.half_open_timeout.as_nanos() as u64,
            u64::from(c.half_open_successes_to_close.unwrap_or(0)),
            rate,
            c.slow_call_threshold.map_or(0, |d| d.as_nanos() as u64),
        ]
    }
}

impl Machine for crate::budget::RetryBudget {
    const KIND: Kind = Kind::Budget;
    type Config = crate::budget::RetryBudgetConfig;

    fn build(config: &Self::Config) -> Result<Self, ConfigError> {
        Self::new(*config)
    }

    fn encode(c: &Self::Config, out: &mut codec::Encoder) {
        out.u64(c.ratio.to_bits());
        out.u32(c.min_retries_per_second);
        out.u32(c.max_tokens);
    }

    fn decode(d: &mut codec::Decoder<'_>) -> Option<Self::Config> {
        Some(crate::budget::RetryBudgetConfig {
            ratio: f64::from_bits(d.u64()?),
            min_retries_per_second: d.u32()?,
            max_tokens: d.u32()?,
        })
    }

    fn settings(&self) -> [u64; 6] {
        [
            self.token_units(),
            self.deposit_units(),
            self.capacity_units(),
            self.resolution().map_or(0, |d| d.as_nanos() as u64),
            self.config().ratio.to_bits(),
            0,
        ]
    }
}

impl Machine for crate::bulkhead::Bulkhead {
    const KIND: Kind = Kind::Bulkhead;
    type Config = crate::bulkhead::BulkheadConfig;

    fn build(config: &Self::Config) -> Result<Self, ConfigError> {
        Self::new(*config)
    }

    fn encode(c: &Self::Config, out: &mut codec::Encoder) {
        out.u32(c.max_concurrent);
        out.u32(c.max_queue);
        out.duration(c.queue_timeout);
    }

    fn decode(d: &mut codec::Decoder<'_>) -> Option<Self::Config> {
        Some(crate::bulkhead::BulkheadConfig {
            max_concurrent: d.u32()?,
            max_queue: d.u32()?,
            queue_timeout: d.duration()?,
        })
    }

    fn settings(&self) -> [u64; 6] {
        let c = self.config();
        [
            u64::from(c.max_concurrent),
            u64::from(c.max_queue),
            c.queue_timeout.as_nanos() as u64,
            0,
            0,
            0,
        ]
    }
}

/// A core machine in a shared region: every process that opens the same
/// kind and name gets the same machine. Dereferences to the machine, so
/// its whole API is there; read time from [`HostClock`].
///
/// For the bulkhead use [`SharedBulkhead`], which also tracks which process
/// holds each permit: `Shared::<Bulkhead>::open` does not compile.
///
/// ```compile_fail
/// use stockade::bulkhead::{Bulkhead, BulkheadConfig};
/// use stockade::shared::{Shared, SharedOptions};
///
/// let _ = Shared::<Bulkhead>::open("db", BulkheadConfig::DEFAULT, &SharedOptions::new());
/// ```
///
/// # Examples
///
/// ```no_run
/// use stockade::breaker::{BreakerConfig, CircuitBreaker};
/// use stockade::shared::{HostClock, Shared, SharedOptions};
///
/// let breaker = Shared::<CircuitBreaker>::open("inventory", BreakerConfig::DEFAULT, &SharedOptions::new())?;
/// match breaker.try_acquire(&HostClock) {
///     Ok(permit) => {
///         // call the inventory service, then:
///         permit.success(&HostClock);
///     }
///     Err(open) => println!("inventory is down: {open}"),
/// }
/// # Ok::<(), stockade::shared::SharedError>(())
/// ```
pub struct Shared<M: Machine> {
    #[cfg(target_os = "linux")]
    region: region::Region,
    machine: NonNull<M>,
    config: M::Config,
    created: bool,
}

// SAFETY: `machine` points into the mapping that `region` owns for as long
// as `self` lives; `M: Sync`, and the mapping is plain shared memory.
unsafe impl<M: Machine> Send for Shared<M> {}
// SAFETY: as for `Send`; `&Shared<M>` only hands out `&M`.
unsafe impl<M: Machine> Sync for Shared<M> {}

impl<M: Machine> Shared<M> {
    /// Opens the shared machine `name`, creating it with `config` if it does
    /// not exist.
    ///
    /// # Errors
    ///
    /// [`SharedError::InvalidConfig`] for an invalid `config`;
    /// [`SharedError::ConfigMismatch`] if the stored config differs (unless
    /// [`SharedOptions::adopt_stored_config`]); the other
    /// [`SharedError`]s for a name, path, file or build that cannot be
    /// used; [`SharedError::Unsupported`] off Linux.
    pub fn open(
        name: &str,
        config: M::Config,
        options: &SharedOptions,
    ) -> Result<Self, SharedError> {
        const {
            // A bulkhead's permits must be tracked per process, or a dead
            // process's would be lost (and a reaper would return permits
            // that untracked callers hold): that is `SharedBulkhead`.
            assert!(
                !matches!(M::KIND, Kind::Bulkhead),
                "a shared bulkhead is `SharedBulkhead`, which tracks each process's permits"
            );
        }
        #[cfg(target_os = "linux")]
        {
            let opened = region::open::<M>(name, config, options, 0)?;
            Ok(Shared {
                machine: opened.machine,
                config: opened.config,
                created: opened.created,
                region: opened.region,
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (name, config, options);
            Err(SharedError::Unsupported(
                "shared memory regions are implemented for Linux only",
            ))
        }
    }

    /// The config in force: the caller's, or the stored one when it was
    /// adopted.
    pub fn config(&self) -> &M::Config {
        &self.config
    }

    /// Whether this open created the region (`false`: it existed).
    pub fn created(&self) -> bool {
        self.created
    }

    /// The region's file.
    pub fn path(&self) -> &Path {
        #[cfg(target_os = "linux")]
        {
            self.region.path()
        }
        #[cfg(not(target_os = "linux"))]
        {
            unreachable!("no Shared exists off Linux")
        }
    }

    /// Removes the region's name (see the [module docs](self)): this
    /// object and every process that has the region open keep using it;
    /// the next [`open`](Self::open) of the name creates a fresh one.
    ///
    /// # Errors
    ///
    /// [`SharedError::Io`] if the file cannot be removed; removing a name
    /// that is already gone is not an error.
    pub fn unlink(&self) -> Result<(), SharedError> {
        #[cfg(target_os = "linux")]
        {
            self.region.unlink()
        }
        #[cfg(not(target_os = "linux"))]
        {
            unreachable!("no Shared exists off Linux")
        }
    }
}

impl<M: Machine> Deref for Shared<M> {
    type Target = M;

    #[inline]
    fn deref(&self) -> &M {
        // SAFETY: `machine` points at an initialised, suitably aligned `M`
        // inside the mapping `region` keeps alive; other processes change
        // it only through its atomics, and its plain fields were written
        // before the file was published (see the module docs).
        unsafe { self.machine.as_ref() }
    }
}

impl<M: Machine + fmt::Debug> fmt::Debug for Shared<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Shared");
        #[cfg(target_os = "linux")]
        d.field("path", &self.region.path());
        d.field("machine", &**self).finish()
    }
}

/// Removes the name of the shared object `name` of machine kind `M` (see
/// [`Shared::unlink`]), without opening it.
///
/// # Errors
///
/// [`SharedError::InvalidName`] for a name that cannot be a file name,
/// [`SharedError::Io`] if the file cannot be removed; an absent file is
/// not an error.
pub fn unlink<M: Machine>(name: &str, options: &SharedOptions) -> Result<(), SharedError> {
    let path = options.path_for(M::KIND, name)?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SharedError::Io {
            path,
            action: "remove",
            source,
        }),
    }
}
