//! Time, injected: the [`Clock`] trait and the clocks Stockade ships.
//!
//! The core never reads time by itself. Every operation that needs time
//! takes a `&impl Clock`, and reads it only when the decision needs it
//! (a closed breaker's success path never does). So firmware brings its own
//! timer ([`TickClock`]), tests and simulations bring a [`ManualClock`], and
//! under `std` [`MonotonicClock`] reads the operating system's monotonic
//! clock.
//!
//! A clock that steps backwards never panics and never corrupts state: the
//! machines treat it as "no time passed", for any step back shorter than
//! the machine's horizon. The machines store time in wrapping words, so a
//! step back longer than half a wrap reads as time passing: for the
//! breaker that is [`CircuitBreaker::BACKWARD_HORIZON`](crate::breaker::CircuitBreaker::BACKWARD_HORIZON)
//! (≈ 9.77 h with the 32-bit layout, ≈ 417 days with the 64-bit one). The
//! rate limiter and the retry budget are exact for any step with the 64-bit
//! layout; with the 32-bit layout their horizon is `max_lead` and the
//! budget's capacity (see their module docs), and a larger step may grant
//! at most one extra burst.

use core::time::Duration;

#[cfg(any(target_has_atomic = "64", feature = "fallback"))]
use crate::sync::AtomicU64;
use crate::sync::{AtomicU32, Ordering, const_fn_unless_loom, fence};

/// A point in time: nanoseconds since the clock's own epoch.
///
/// Only differences between timestamps of the same clock mean anything.
/// Arithmetic saturates instead of overflowing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The clock's epoch.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Timestamp {
        Timestamp(nanos)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later
    /// (a clock that stepped backwards).
    pub const fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        crate::time::duration_from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + duration`, saturating at the end of time.
    pub const fn saturating_add(self, duration: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(duration_to_nanos_saturating(duration)),
        )
    }

    /// `self + duration`, or `None` if it does not fit in 64 bits of
    /// nanoseconds (about 584 years).
    pub const fn checked_add(self, duration: Duration) -> Option<Timestamp> {
        let nanos = duration.as_nanos();
        if nanos > u64::MAX as u128 {
            return None;
        }
        match self.0.checked_add(nanos as u64) {
            Some(n) => Some(Timestamp(n)),
            None => None,
        }
    }
}

/// A duration in whole nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) const fn duration_to_nanos_saturating(duration: Duration) -> u64 {
    let nanos = duration.as_nanos();
    if nanos > u64::MAX as u128 {
        u64::MAX
    } else {
        nanos as u64
    }
}

/// A source of monotonic time.
///
/// Implementations should be cheap: a rate limiter's check is dominated by
/// reading the clock. A clock may have any resolution; it reports
/// nanoseconds. A clock that goes backwards is tolerated (treated as no
/// time passing, within each machine's horizon: see the [module
/// docs](self)), but it should not.
///
/// # Examples
///
/// A firmware clock over a 1 kHz tick counter:
///
/// ```
/// use stockade::clock::{Clock, Timestamp};
///
/// struct SysTick;
/// impl Clock for SysTick {
///     fn now(&self) -> Timestamp {
///         let ticks: u64 = 42; // read the hardware counter here
///         Timestamp::from_nanos(ticks * 1_000_000)
///     }
/// }
/// assert_eq!(SysTick.now().as_nanos(), 42_000_000);
/// ```
pub trait Clock {
    /// The current time.
    fn now(&self) -> Timestamp;
}

impl<C: Clock + ?Sized> Clock for &C {
    #[inline]
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// A clock that moves only when told to: for tests and simulations.
///
/// It can be shared between threads by reference and placed in a `static`;
/// no `Arc` is needed. Its counter is one 64-bit atomic, lock-free, so it
/// exists where the target has native 64-bit atomics (every 64-bit host,
/// and 32-bit ones such as i686 and armv7 Linux), or with the `fallback`
/// feature (implied by `std`), which takes portable-atomic's lock-based
/// 64-bit atomics on targets without them: do not drive it from an
/// interrupt handler there. Firmware tests its logic with `ManualClock` on
/// the host and runs on a [`TickClock`] (no 64-bit atomics needed).
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use stockade::clock::{Clock, ManualClock};
///
/// static CLOCK: ManualClock = ManualClock::new();
/// CLOCK.advance(Duration::from_millis(1500));
/// assert_eq!(CLOCK.now().as_nanos(), 1_500_000_000);
/// ```
#[cfg(any(target_has_atomic = "64", feature = "fallback"))]
#[cfg_attr(docsrs, doc(cfg(any(target_has_atomic = "64", feature = "fallback"))))]
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

#[cfg(any(target_has_atomic = "64", feature = "fallback"))]
impl ManualClock {
    const_fn_unless_loom! {
        /// A clock at its epoch, [`Timestamp::ZERO`].
        pub fn new() -> ManualClock {
            ManualClock { nanos: AtomicU64::new(0) }
        }
    }

    const_fn_unless_loom! {
        /// A clock at `start`.
        pub fn starting_at(start: Timestamp) -> ManualClock {
            ManualClock { nanos: AtomicU64::new(start.as_nanos()) }
        }
    }

    /// Moves the clock forward by `duration` (saturating).
    pub fn advance(&self, duration: Duration) {
        let delta = duration_to_nanos_saturating(duration);
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(delta))
            });
    }

    /// Sets the clock to `time`, which may be earlier than now: a clock that
    /// steps backwards, for testing that nothing breaks.
    pub fn set(&self, time: Timestamp) {
        self.nanos.store(time.as_nanos(), Ordering::Release);
    }
}

#[cfg(any(target_has_atomic = "64", feature = "fallback"))]
impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> Timestamp {
        Timestamp(self.nanos.load(Ordering::Acquire))
    }
}

/// Turns a wrapping 32-bit hardware tick counter into a [`Clock`].
///
/// `read` returns the raw counter (e.g. a 1 kHz SysTick count or a 32-bit
/// timer register), which wraps to zero after `u32::MAX`. `TickClock`
/// extends it to 64 bits with one 32-bit atomic word (no 64-bit atomics, no
/// locks), so time stays monotonic across the wrap (a 1 kHz counter wraps
/// after 49.7 days).
///
/// **Requirement:** some `now()` (or [`ticks`](Self::ticks)) call must
/// *complete* at least once per half wrap period (24.8 days for a 1 kHz
/// counter, 35.8 minutes for a 1 MHz counter), since a wrap is detected by
/// watching the counter's top bit. A firmware that may idle longer calls
/// `now()` from a periodic task. A call that is itself held up for longer
/// (preempted, interrupted) does not count towards this, and needs nothing:
/// it notices that the epoch moved while it was held up and reads again.
///
/// Under that requirement every call returns the exact 64-bit count of its
/// counter read, so the clock never goes back, under any interleaving of
/// threads and interrupt handlers (a call's counter read that happens after
/// another call returned gives a value at least as large).
///
/// **Interrupt handlers:** `now()` may be called from interrupt handlers at
/// any nesting depth. It never waits for another caller: it retries only
/// when another call moved the epoch on while it was running (by a
/// successful compare-and-swap, after which that call returns), which
/// happens at most once per half wrap elapsed plus once, so a handler that
/// preempts a thread (which cannot make progress meanwhile) never spins on
/// it. On chips without CAS (Cortex-M0, RV32IMC) the one
/// compare-and-swap comes from portable-atomic's backend that the firmware
/// chose (`critical-section` or single-core).
///
/// # Examples
///
/// ```
/// use stockade::clock::{Clock, TickClock};
///
/// fn read_systick() -> u32 { 7 }
/// static CLOCK: TickClock<fn() -> u32> = TickClock::new(read_systick, 1_000);
/// assert_eq!(CLOCK.now().as_nanos(), 7_000_000);
/// ```
#[derive(Debug)]
pub struct TickClock<F> {
    read: F,
    /// At most 10^9: a `u32` (a 64×32-bit multiply per reading).
    nanos_per_tick: u32,
    /// `(wraps << 1) | top bit of the last observed raw count`.
    epoch: AtomicU32,
}

/// Where a [`TickClock`] reads its raw 32-bit counter.
///
/// Every `Fn() -> u32` is one (a function reading a timer register, a
/// closure); a binding implements it for a callback that carries its own
/// context (C: a function pointer plus `void *user_data`).
///
/// # Examples
///
/// ```
/// use stockade::clock::{Clock, TickClock, TickSource};
///
/// /// A counter read through a callback with its own context.
/// struct Callback {
///     read: fn(&u32) -> u32,
///     context: u32,
/// }
///
/// impl TickSource for Callback {
///     fn read(&self) -> u32 {
///         (self.read)(&self.context)
///     }
/// }
///
/// let clock = TickClock::new(Callback { read: |c| *c * 2, context: 21 }, 1_000);
/// assert_eq!(clock.now().as_nanos(), 42_000_000);
/// ```
pub trait TickSource {
    /// The counter's current raw value; it wraps at `u32::MAX`.
    fn read(&self) -> u32;
}

impl<F: Fn() -> u32> TickSource for F {
    #[inline]
    fn read(&self) -> u32 {
        self()
    }
}

impl<F: TickSource> TickClock<F> {
    const_fn_unless_loom! {
        /// A clock over a counter that ticks `hz` times a second.
        ///
        /// `hz` of zero is treated as one (the counter is read as seconds);
        /// frequencies above 1 GHz are treated as 1 GHz.
        pub fn new(read: F, hz: u32) -> TickClock<F> {
            let hz = if hz == 0 { 1 } else if hz > 1_000_000_000 { 1_000_000_000 } else { hz };
            TickClock { read, nanos_per_tick: 1_000_000_000 / hz, epoch: AtomicU32::new(0) }
        }
    }

    /// The extended 64-bit tick count.
    pub fn ticks(&self) -> u64 {
        loop {
            // Epoch, counter, epoch again: if the epoch is the same on both
            // sides of the counter read, it was the epoch *at* that read
            // (it only ever moves forward, one half wrap at a time), so the
            // counter's top bit differs from the epoch's by at most one half
            // wrap and the 64-bit value below is exact. If it moved, this
            // call was held up while others read the clock: start over with
            // a fresh epoch and a fresh counter read.
            let epoch = self.epoch.load(Ordering::Acquire);
            let raw = self.read.read();
            // The counter read stays before the re-check (also on hardware
            // that reorders loads).
            fence(Ordering::Acquire);
            let top = raw >> 31;
            let mut wraps = epoch >> 1;
            if epoch & 1 == 1 && top == 0 {
                wraps = wraps.wrapping_add(1) & (u32::MAX >> 1);
            }
            let next = (wraps << 1) | top;
            let current = if next == epoch {
                self.epoch.load(Ordering::Acquire) == epoch
            } else {
                // Publishes the next half wrap only if nobody else has moved
                // the epoch since this call loaded it.
                self.epoch
                    .compare_exchange(epoch, next, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            };
            if current {
                return ((wraps as u64) << 32) | raw as u64;
            }
            // Another caller moved the epoch on meanwhile (only a call that
            // ran while this one was held up can: a handler that interrupts
            // this call never waits for it), so each retry means the clock
            // advanced by half a wrap: the loop ends.
        }
    }
}

impl<F: TickSource> Clock for TickClock<F> {
    // Out of line: a machine reads the clock from several places, and on a
    // microcontroller one copy of this loop is worth more than a call.
    #[inline(never)]
    fn now(&self) -> Timestamp {
        Timestamp(self.ticks().saturating_mul(self.nanos_per_tick as u64))
    }
}

#[cfg(feature = "std")]
pub use self::monotonic::{CoarseClock, CoarseUpkeep, MonotonicClock};

#[cfg(feature = "std")]
mod monotonic {
    use core::sync::atomic::AtomicBool;
    use core::time::Duration;
    use std::io;
    use std::string::String;
    use std::sync::{Arc, OnceLock};
    use std::time::Instant;

    // Not `crate::sync` atomics: these process-wide statics are no state
    // machine, and loom's model atomics cannot live in a `static`.
    use portable_atomic::{AtomicU64, Ordering};

    use super::{Clock, Timestamp, duration_to_nanos_saturating};
    use crate::sync::unmodelled::thread::{self, JoinHandle};

    /// The operating system's monotonic clock, read the cheapest way that
    /// stays monotonic.
    ///
    /// Timestamps count from the first use of any `MonotonicClock` (or
    /// [`CoarseClock`]) in the process; [`to_instant`](Self::to_instant)
    /// converts them back.
    ///
    /// # How it reads time
    ///
    /// Through [quanta](https://docs.rs/quanta): where the CPU has a
    /// counter that ticks at one rate in every power state (x86 with an
    /// invariant TSC and `RDTSCP`, aarch64's `CNTVCT_EL0`), `now()` is one
    /// counter read scaled to nanoseconds with a multiply and a shift; on
    /// x86_64 that is about 60 % of the cost of [`Instant::now`] (see the
    /// clock table in `benches/`). Elsewhere quanta reads the operating
    /// system's monotonic clock. Under Miri, `now()` reads [`Instant`].
    ///
    /// On x86 Linux there is one more condition: the kernel itself must use
    /// the TSC as its clocksource (`/sys/devices/system/clocksource/
    /// clocksource0/current_clocksource` reads `tsc`), else `now()` reads
    /// [`Instant`] (`CLOCK_MONOTONIC` through the vDSO). quanta trusts the
    /// CPUID flags, but under a hypervisor those can promise an invariant
    /// TSC while the virtual CPUs' counters are not synchronised; the
    /// kernel's clocksource watchdog is what actually checks, and it falls
    /// back to `kvm-clock`, `hpet` and the like when they are not. Both
    /// checks happen once, at the first use.
    ///
    /// The first use also calibrates the counter against the operating
    /// system's clock, blocking the calling thread for typically 10–20 ms
    /// (at most 200 ms, once per process). A latency-sensitive program
    /// calls `MonotonicClock::new().now()` once at startup.
    ///
    /// # Across threads
    ///
    /// Within a thread the time never goes backwards (the conversion is
    /// fixed and monotone). Between threads it can: a read that happens
    /// after another thread's read (ordered by any synchronisation, even
    /// the hand-off of that very reading) may come out *earlier* than it,
    /// by at most the skew between the two CPUs' counters plus how far an
    /// unfenced counter read runs ahead of the instructions before it (the
    /// out-of-order window, well under a microsecond). On bare metal the
    /// kernel keeps the TSC as its clocksource only if it found the CPUs'
    /// counters in step, so what is left is the out-of-order window. Under
    /// a hypervisor that declares the TSC reliable, nobody checks the
    /// virtual CPUs' skew: on a shared 2-vCPU VM we measured steps back of
    /// up to 0.8 µs. Stockade states no bound for such machines; its test
    /// suite hands readings between two threads and fails if one steps
    /// back by more than 5 µs (`LIMIT` in the test).
    ///
    /// The read is deliberately not fenced (`lfence; rdtsc` or `rdtscp`
    /// would remove only the out-of-order part, not the skew, and cost
    /// twice as much: 24.8 ns against 12.4 ns in the clock table). Every
    /// state machine treats a reading earlier than one it stored as "no
    /// time passed", so such a step never makes a breaker, limiter or
    /// bulkhead admit early; it only makes a duration measured across
    /// threads come out short by the step.
    ///
    /// The scaled counter runs at the rate quanta's calibration measured
    /// over about a millisecond, fixed for the life of the process and not
    /// slewed by NTP as `CLOCK_MONOTONIC` is. Its rate error is typically
    /// tens of ppm; on a busy shared VM we measured −23 to +204 ppm
    /// (0.02 %) between runs: a 60 s breaker timeout ends up to 12 ms early
    /// or late, a 1 s limiter period is off by 0.2 ms. Where that matters,
    /// use a clock over [`Instant`] (implement [`Clock`] in three lines).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use stockade::clock::{Clock, MonotonicClock};
    ///
    /// let clock = MonotonicClock::new();
    /// let a = clock.now();
    /// let b = clock.now();
    /// assert!(b >= a);
    /// assert!(clock.to_instant(b) <= Instant::now());
    /// ```
    #[derive(Clone, Copy, Debug, Default)]
    pub struct MonotonicClock;

    /// The process-wide time source behind every `MonotonicClock`.
    static SOURCE: OnceLock<Source> = OnceLock::new();

    impl MonotonicClock {
        /// The clock.
        pub const fn new() -> MonotonicClock {
            MonotonicClock
        }

        /// Converts a timestamp of this clock (or of [`CoarseClock`]) back
        /// to a [`std::time::Instant`]: exact when the clock reads `Instant`,
        /// otherwise off by the scaled counter's drift from it (see
        /// [How it reads time](Self#how-it-reads-time)) times the time
        /// since the epoch.
        pub fn to_instant(self, timestamp: Timestamp) -> Instant {
            add_saturating(source().start, timestamp.as_nanos())
        }
    }

    impl Clock for MonotonicClock {
        #[inline]
        fn now(&self) -> Timestamp {
            Timestamp::from_nanos(source().now())
        }
    }

    #[inline]
    fn source() -> &'static Source {
        SOURCE.get_or_init(Source::new)
    }

    /// `instant + nanos`, or the latest instant the platform can represent
    /// on the way there (never panics).
    fn add_saturating(instant: Instant, nanos: u64) -> Instant {
        let mut at = instant;
        let mut left = Duration::from_nanos(nanos);
        let mut step = left;
        // Add as much as fits: halve the step whenever it overflows.
        while !step.is_zero() {
            match at.checked_add(step) {
                Some(later) => {
                    at = later;
                    left -= step;
                    step = step.min(left);
                }
                None => step /= 2,
            }
        }
        at
    }

    /// The epoch and the way to read time since it.
    #[derive(Debug)]
    struct Source {
        /// `None` where the kernel does not trust the TSC: plain `Instant`.
        counter: Option<quanta::Clock>,
        /// `counter`'s raw reading at the epoch.
        start_raw: u64,
        /// The epoch as an `Instant`, read just before `start_raw`.
        start: Instant,
    }

    impl Source {
        fn new() -> Source {
            // Calibrates (once per process) before the epoch is taken.
            let counter = kernel_agrees().then(quanta::Clock::new);
            // `Instant` first: a timestamp converted back is then never
            // later than the `Instant` it was read at (up to drift).
            let start = Instant::now();
            let start_raw = counter.as_ref().map_or(0, quanta::Clock::raw);
            Source {
                counter,
                start_raw,
                start,
            }
        }

        /// Nanoseconds since the epoch.
        #[inline]
        fn now(&self) -> u64 {
            match &self.counter {
                // Zero for a reading at or before the epoch's.
                Some(clock) => clock.delta_as_nanos(self.start_raw, clock.raw()),
                None => duration_to_nanos_saturating(
                    Instant::now().saturating_duration_since(self.start),
                ),
            }
        }
    }

    /// Whether the kernel lets quanta read the TSC: on x86 Linux only while
    /// it uses the TSC as its own clocksource; elsewhere quanta's own
    /// checks decide.
    /// Under Miri: never (it reads [`Instant`], Miri's own clock). Miri
    /// isolates the program from the file system, so `/sys` cannot be
    /// read, and it cannot run quanta's counter read and calibration.
    fn kernel_agrees() -> bool {
        if cfg!(miri) {
            false
        } else if cfg!(all(
            any(target_arch = "x86_64", target_arch = "x86"),
            any(target_os = "linux", target_os = "android")
        )) {
            kernel_clocksource().is_some_and(|s| s == "tsc")
        } else {
            true
        }
    }

    fn kernel_clocksource() -> Option<String> {
        let path = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
        std::fs::read_to_string(path).ok().map(|s| s.trim().into())
    }

    /// [`MonotonicClock`] read ahead of time: one atomic load, at the
    /// resolution of an upkeep thread's interval (e.g. 1 ms).
    ///
    /// While a [`CoarseUpkeep`] is alive ([`CoarseClock::start_upkeep`]),
    /// its thread publishes [`MonotonicClock::now`] every `interval`, and
    /// `now()` returns the last published time: about 1 ns instead of
    /// 15–30 ns, and no counter read at all. The timestamps are
    /// `MonotonicClock`'s (same epoch), behind it by up to one interval
    /// plus however long the upkeep thread waits for a CPU. They never go
    /// backwards, also when upkeep starts or stops. They are never ahead
    /// of `MonotonicClock` *as read on the thread that published them*;
    /// the time was read on another thread (the upkeep thread, or another
    /// reader without upkeep), so against a later `MonotonicClock` read on
    /// this thread a coarse reading can be ahead by the cross-thread step
    /// of [`MonotonicClock`] ("Across threads": the CPUs' skew plus the
    /// out-of-order window; up to 2.3 µs measured on a shared VM).
    ///
    /// **Without a running upkeep** (never started, or its handle dropped)
    /// `now()` reads [`MonotonicClock`] and publishes that reading (a
    /// compare-and-swap on a shared word, skipped when it holds a later
    /// time): precise, correct, and
    /// somewhat *slower* than `MonotonicClock` itself. Time never freezes
    /// because an upkeep stopped.
    ///
    /// # When not to use it
    ///
    /// Every duration measured on it is off by up to one interval (plus
    /// scheduling delay), so use it only where that is a small fraction of
    /// every duration the machines compare. With a 1 ms interval, not for:
    ///
    /// - strict-mode rate limiters with a short period: their guarantee
    ///   (at most N in *any* window of one period) holds in coarse time,
    ///   so in real time only for windows one interval shorter than the
    ///   period (5 ms period: 20 % off); at 1 s, 0.1 %;
    /// - limiters whose emission interval (period ÷ N) is below the
    ///   interval: permits come in bursts at each tick instead of evenly;
    /// - breaker `reset_timeout` / `half_open_timeout`, deadlines, queue
    ///   timeouts or back-off delays near or below the interval: they end
    ///   up to one interval late or early;
    /// - the breaker's slow-call threshold and any latency measurement:
    ///   calls shorter than the interval measure as 0 or one interval;
    /// - a program that can be starved of CPU (overloaded, cgroup-throttled,
    ///   stopped in a debugger): coarse time stands still while the upkeep
    ///   thread does not run;
    ///
    /// # After `fork`
    ///
    /// A child process has none of the parent's threads, so not its upkeep
    /// thread. On Unix (with 64-bit atomics) a `pthread_atfork` handler,
    /// registered by the first [`start_upkeep`](Self::start_upkeep), makes
    /// the child forget the parent's upkeep at once: its `now()` reads the
    /// precise time as without upkeep (never the frozen last publication),
    /// [`upkeep_running`](Self::upkeep_running) is `false`, and the child
    /// may start an upkeep of its own. The child's copy of the parent's
    /// [`CoarseUpkeep`] handle does nothing when dropped (it neither waits
    /// for the parent's thread nor stops the child's upkeep). Elsewhere, a
    /// child's coarse time would stand still until it starts an upkeep.
    ///
    /// One upkeep serves the whole process; a second
    /// [`start_upkeep`](Self::start_upkeep) while one is alive fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stockade::clock::{Clock, CoarseClock};
    /// use stockade::limiter::{RateLimiter, RateLimiterConfig};
    ///
    /// let _upkeep = CoarseClock::start_upkeep(Duration::from_millis(1))?; // for the program's life
    /// let limiter = RateLimiter::new(RateLimiterConfig::DEFAULT.with_requests_per_period(1_000))?;
    /// let clock = CoarseClock::new();
    /// assert!(limiter.try_acquire(&clock).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[derive(Clone, Copy, Debug, Default)]
    pub struct CoarseClock;

    /// The latest published [`MonotonicClock`] time, with [`RUNNING`] set
    /// while an upkeep thread publishes. It only moves forward.
    static RECENT: AtomicU64 = AtomicU64::new(0);
    /// Bit 0 of [`RECENT`]: an upkeep thread keeps it fresh. (Time is kept
    /// to even nanoseconds.)
    const RUNNING: u64 = 1;
    /// Whether a [`CoarseUpkeep`] is alive.
    static UPKEEP_ALIVE: AtomicBool = AtomicBool::new(false);

    impl CoarseClock {
        /// The clock.
        pub const fn new() -> CoarseClock {
            CoarseClock
        }

        /// Starts the upkeep thread that refreshes the time every
        /// `interval` (at least 1 µs) until the returned handle is dropped.
        ///
        /// # Errors
        ///
        /// [`io::ErrorKind::AlreadyExists`] if another upkeep is alive, or
        /// the error of spawning the thread.
        pub fn start_upkeep(interval: Duration) -> io::Result<CoarseUpkeep> {
            after_fork::register();
            if UPKEEP_ALIVE.swap(true, Ordering::AcqRel) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a CoarseClock upkeep is already running",
                ));
            }
            let interval = interval.max(Duration::from_micros(1));
            let stop = Arc::new(AtomicBool::new(false));
            let stopped = Arc::clone(&stop);
            // Calibrate (and publish) before returning, so the first
            // coarse reads are fresh.
            publish(MonotonicClock.now().as_nanos(), RUNNING);
            let spawned = thread::Builder::new()
                .name("stockade-coarse-clock".into())
                .spawn(move || {
                    while !stopped.load(Ordering::Acquire) {
                        publish(MonotonicClock.now().as_nanos(), RUNNING);
                        thread::park_timeout(interval);
                    }
                });
            match spawned {
                Ok(thread) => Ok(CoarseUpkeep {
                    stop,
                    thread: Some(thread),
                    forks: after_fork::forks(),
                }),
                Err(error) => {
                    stop_publishing();
                    UPKEEP_ALIVE.store(false, Ordering::Release);
                    Err(error)
                }
            }
        }

        /// Whether an upkeep thread is publishing the time (else `now()`
        /// reads [`MonotonicClock`]).
        pub fn upkeep_running() -> bool {
            RECENT.load(Ordering::Relaxed) & RUNNING != 0
        }
    }

    impl Clock for CoarseClock {
        #[inline]
        fn now(&self) -> Timestamp {
            let recent = RECENT.load(Ordering::Relaxed);
            if recent & RUNNING != 0 {
                Timestamp::from_nanos(recent & !RUNNING)
            } else {
                now_without_upkeep()
            }
        }
    }

    /// The precise time, published so that no later coarse read returns
    /// less. The [`RUNNING`] flag is kept as found: an upkeep that started
    /// since this thread looked (and set it) must not lose it to a plain
    /// `fetch_max`, whose larger even time would clear bit 0.
    #[cold]
    fn now_without_upkeep() -> Timestamp {
        let now = MonotonicClock.now().as_nanos() & !RUNNING;
        let before = RECENT
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |recent| {
                let latest = (recent & !RUNNING).max(now) | (recent & RUNNING);
                (latest != recent).then_some(latest)
            })
            .unwrap_or_else(|recent| recent);
        Timestamp::from_nanos(now.max(before & !RUNNING))
    }

    /// Publishes `nanos` (never below what is there) with `flags`.
    fn publish(nanos: u64, flags: u64) {
        let _ = RECENT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |recent| {
            Some((recent & !RUNNING).max(nanos & !RUNNING) | flags)
        });
    }

    fn stop_publishing() {
        RECENT.fetch_and(!RUNNING, Ordering::Relaxed);
    }

    /// Forgetting a parent's upkeep in a forked child.
    #[cfg(all(unix, target_has_atomic = "64", not(miri)))]
    mod after_fork {
        use core::sync::atomic::{AtomicU32, Ordering};
        use std::sync::Once;

        /// Forks this process descends from since the handler was
        /// registered (incremented in each child).
        static FORKS: AtomicU32 = AtomicU32::new(0);

        pub(super) fn forks() -> u32 {
            FORKS.load(Ordering::Acquire)
        }

        /// Registers [`in_child`] once per process (a child inherits the
        /// registration).
        pub(super) fn register() {
            static ONCE: Once = Once::new();
            ONCE.call_once(|| {
                // SAFETY: `in_child` is an `extern "C" fn()` that never
                // unwinds and only touches lock-free atomics, which is
                // async-signal-safe as a fork handler must be. A failure
                // (ENOMEM) leaves the documented behaviour without it.
                let _ = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
            });
        }

        /// Runs in the child right after `fork`: the upkeep thread was
        /// the parent's, so coarse reads go precise and a new upkeep may
        /// start.
        extern "C" fn in_child() {
            FORKS.fetch_add(1, Ordering::AcqRel);
            super::RECENT.fetch_and(!super::RUNNING, Ordering::Relaxed);
            super::UPKEEP_ALIVE.store(false, Ordering::Release);
        }
    }

    /// No fork handler on this platform: see `CoarseClock`, "After fork".
    #[cfg(not(all(unix, target_has_atomic = "64", not(miri))))]
    mod after_fork {
        pub(super) fn forks() -> u32 {
            0
        }

        pub(super) fn register() {}
    }

    /// The running upkeep of [`CoarseClock`]; dropping it stops the thread
    /// (waiting for it) and `CoarseClock` reads precise time again.
    #[derive(Debug)]
    #[must_use = "dropping the handle stops the upkeep thread"]
    pub struct CoarseUpkeep {
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
        /// [`after_fork::forks`] when started: another value means this is
        /// a forked child's copy of a parent's handle.
        forks: u32,
    }

    impl Drop for CoarseUpkeep {
        fn drop(&mut self) {
            if self.forks != after_fork::forks() {
                // A parent's upkeep, copied by `fork`: its thread is not
                // in this process (joining it would never return), and
                // the child's handler already forgot it.
                core::mem::forget(self.thread.take());
                return;
            }
            self.stop.store(true, Ordering::Release);
            if let Some(thread) = self.thread.take() {
                thread.thread().unpark();
                let _ = thread.join();
            }
            stop_publishing();
            UPKEEP_ALIVE.store(false, Ordering::Release);
        }
    }

    #[cfg(all(test, not(stockade_loom)))]
    mod tests {
        use super::*;
        use std::sync::{Barrier, Mutex};

        /// The upkeep is process-wide: the tests that start it take turns.
        static UPKEEP_TESTS: Mutex<()> = Mutex::new(());

        /// Reads `reads` times on each of two threads and checks that each
        /// thread's readings never decrease.
        fn assert_monotonic(clock: &(impl Clock + Sync), reads: usize) {
            // Fewer under Miri, which interprets every read.
            let reads = if cfg!(miri) { reads.min(2_000) } else { reads };
            let barrier = Barrier::new(2);
            std::thread::scope(|scope| {
                for _ in 0..2 {
                    scope.spawn(|| {
                        barrier.wait();
                        let mut last = clock.now();
                        for _ in 0..reads {
                            let now = clock.now();
                            assert!(now >= last, "went back from {last:?} to {now:?}");
                            last = now;
                        }
                    });
                }
            });
        }

        /// Half a million reads per thread (2 000 under Miri).
        #[test]
        fn monotonic_across_threads() {
            assert_monotonic(&MonotonicClock::new(), 500_000);
        }

        /// Two threads hand a reading back and forth through an atomic,
        /// `rounds` times; after receiving one, a thread reads `clock`,
        /// which may be earlier than the reading it received by at most the
        /// documented cross-thread step (see `MonotonicClock`, "Across
        /// threads"), then [`MonotonicClock`], which `clock`'s reading may
        /// be ahead of by at most the same, and hands its own reading on.
        /// Fails on a watchdog, not a hang.
        fn assert_ordered_across_threads(clock: &(impl Clock + Sync), rounds: u64) {
            let watchdog = Instant::now() + Duration::from_secs(120);
            // Bit 0: whose turn; the rest: the reading handed over.
            let ball = AtomicU64::new(0);
            let worst_back = AtomicU64::new(0);
            let worst_ahead = AtomicU64::new(0);
            std::thread::scope(|scope| {
                for me in 0..2u64 {
                    let (ball, worst_back, worst_ahead) = (&ball, &worst_back, &worst_ahead);
                    scope.spawn(move || {
                        for _ in 0..rounds {
                            let mut spins = 0u32;
                            let received = loop {
                                let b = ball.load(Ordering::Acquire);
                                if b & 1 == me {
                                    break b >> 1;
                                }
                                spins += 1;
                                if spins % 64 == 0 {
                                    assert!(Instant::now() < watchdog, "hand-off stalled");
                                    std::thread::yield_now();
                                }
                            };
                            let t = clock.now().as_nanos();
                            let precise = MonotonicClock.now().as_nanos();
                            worst_back.fetch_max(received.saturating_sub(t), Ordering::Relaxed);
                            worst_ahead.fetch_max(t.saturating_sub(precise), Ordering::Relaxed);
                            ball.store((t << 1) | (1 - me), Ordering::Release);
                        }
                    });
                }
            });
            let (back, ahead) = (worst_back.into_inner(), worst_ahead.into_inner());
            // The bound `MonotonicClock`'s docs ("Across threads") state.
            const LIMIT: u64 = 5_000;
            assert!(
                back <= LIMIT,
                "a reading went back by {back} ns across threads"
            );
            assert!(
                ahead <= LIMIT,
                "ahead of a later MonotonicClock reading by {ahead} ns"
            );
        }

        /// Hand-offs per test: fewer under Miri, which interprets them.
        const ROUNDS: u64 = if cfg!(miri) { 200 } else { 200_000 };

        #[test]
        fn monotonic_clock_is_ordered_across_threads() {
            assert_ordered_across_threads(&MonotonicClock::new(), ROUNDS);
        }

        #[test]
        fn coarse_clock_without_upkeep_is_ordered_across_threads_and_never_ahead() {
            let _turn = UPKEEP_TESTS.lock().unwrap_or_else(|e| e.into_inner());
            assert_ordered_across_threads(&CoarseClock::new(), ROUNDS);
        }

        #[test]
        fn coarse_clock_with_upkeep_is_ordered_across_threads_and_never_ahead() {
            let _turn = UPKEEP_TESTS.lock().unwrap_or_else(|e| e.into_inner());
            let _upkeep = CoarseClock::start_upkeep(Duration::from_micros(50)).expect("upkeep");
            assert_ordered_across_threads(&CoarseClock::new(), ROUNDS);
        }

        #[test]
        fn matches_instant_within_one_percent() {
            let clock = MonotonicClock::new();
            let _ = clock.now();
            for _ in 0..3 {
                let (a, i0) = (clock.now(), Instant::now());
                std::thread::sleep(Duration::from_millis(50));
                let (b, i1) = (clock.now(), Instant::now());
                let ours = b.saturating_duration_since(a).as_nanos() as f64;
                let real = i1.duration_since(i0).as_nanos() as f64;
                if (ours - real).abs() <= real / 100.0 {
                    return;
                }
                // Preempted between the two reads of a pair: try again.
            }
            panic!("MonotonicClock drifted from Instant by over 1% in 50 ms");
        }

        #[test]
        fn uses_the_counter_only_where_the_kernel_does() {
            let source = source();
            if cfg!(miri) {
                assert!(source.counter.is_none(), "Miri reads Instant");
                return;
            }
            let x86_linux = cfg!(all(
                any(target_arch = "x86_64", target_arch = "x86"),
                target_os = "linux"
            ));
            if x86_linux && kernel_clocksource().as_deref() != Some("tsc") {
                assert!(source.counter.is_none());
            } else {
                assert!(source.counter.is_some());
            }
        }

        #[test]
        fn to_instant_round_trips_and_saturates() {
            let clock = MonotonicClock::new();
            let now = clock.now();
            let instant = clock.to_instant(now);
            let back = clock.to_instant(Timestamp::from_nanos(now.as_nanos() + 1_000));
            assert_eq!(back.duration_since(instant), Duration::from_micros(1));
            // Far future: no panic.
            let _ = clock.to_instant(Timestamp::from_nanos(u64::MAX));
        }

        /// One test for all of the process-wide upkeep's life cycle.
        #[test]
        // Timing: an upkeep thread ticking every 20 ms against real sleeps.
        // Miri's emulated clock advances with interpreted steps, not with
        // the sleeps' schedule, so "stands still between ticks" is not
        // something it reproduces.
        #[cfg_attr(miri, ignore = "an upkeep thread's 20 ms ticks against real sleeps")]
        fn coarse_clock_ticks_with_upkeep_and_is_precise_without() {
            let _turn = UPKEEP_TESTS.lock().unwrap_or_else(|e| e.into_inner());
            let coarse = CoarseClock::new();
            let precise = MonotonicClock::new();
            // Without upkeep: precise, moving, never behind an earlier read.
            assert!(!CoarseClock::upkeep_running());
            let a = coarse.now();
            std::thread::sleep(Duration::from_millis(1));
            let b = coarse.now();
            assert!(b.saturating_duration_since(a) >= Duration::from_millis(1));
            assert!(coarse.now() <= precise.now());
            assert_monotonic(&coarse, 20_000);

            // With upkeep at 20 ms: reads stand still between ticks, then move.
            let upkeep = CoarseClock::start_upkeep(Duration::from_millis(20)).expect("spawn");
            assert!(CoarseClock::upkeep_running());
            let second = CoarseClock::start_upkeep(Duration::from_millis(1)).unwrap_err();
            assert_eq!(second.kind(), io::ErrorKind::AlreadyExists);
            let mut last = coarse.now();
            assert!(last >= b);
            let mut distinct = 0;
            let mut equal = 0;
            let until = Instant::now() + Duration::from_millis(200);
            while Instant::now() < until {
                let now = coarse.now();
                assert!(now >= last);
                // Published on the upkeep thread: at most the documented
                // cross-thread step ahead of this thread's reading.
                assert!(
                    now.saturating_duration_since(precise.now()) <= Duration::from_micros(5),
                    "ahead of MonotonicClock"
                );
                if now == last {
                    equal += 1;
                } else {
                    distinct += 1;
                }
                last = now;
                std::thread::sleep(Duration::from_micros(500));
            }
            assert!(distinct >= 2, "did not tick: {distinct}");
            assert!(
                equal > distinct,
                "finer than its interval: {equal} vs {distinct}"
            );
            assert_monotonic(&coarse, 200_000);

            // Stopped: precise again, and no step back.
            let before_stop = coarse.now();
            drop(upkeep);
            assert!(!CoarseClock::upkeep_running());
            let after = coarse.now();
            assert!(after >= before_stop);
            assert!(precise.now().saturating_duration_since(after) < Duration::from_millis(5));
            // And it can start again.
            drop(CoarseClock::start_upkeep(Duration::from_millis(1)).expect("restart"));
        }

        /// Sets a flag when dropped (also on unwind), so spinning threads
        /// stop even if the test fails.
        struct SetOnDrop<'a>(&'a AtomicBool);

        impl Drop for SetOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }

        /// Readers without upkeep publish the precise time; one racing
        /// `start_upkeep` must never wipe out the flag it set (a reader's
        /// `fetch_max` with a larger, even time once did, and coarse reads
        /// fell back to the precise clock until the thread published).
        #[test]
        fn readers_racing_start_upkeep_never_clear_its_flag() {
            let _turn = UPKEEP_TESTS.lock().unwrap_or_else(|e| e.into_inner());
            // Bounds the readers' spinning should the main thread stall.
            let watchdog = Instant::now() + Duration::from_secs(60);
            let done = AtomicBool::new(false);
            let started = AtomicU64::new(0);
            let lost = AtomicBool::new(false);
            std::thread::scope(|scope| {
                let _stop = SetOnDrop(&done);
                for _ in 0..2 {
                    scope.spawn(|| {
                        let coarse = CoarseClock::new();
                        while !done.load(Ordering::SeqCst) && Instant::now() < watchdog {
                            let _ = coarse.now();
                            // `started` is odd from just after `start_upkeep`
                            // returned until just before the handle is
                            // dropped. The flag counts as lost only if it was
                            // read false inside one such stretch: the same odd
                            // value before and after the read (a stretch that
                            // ended meanwhile is no loss).
                            let before = started.load(Ordering::SeqCst);
                            if before % 2 == 1 {
                                let running = CoarseClock::upkeep_running();
                                core::sync::atomic::fence(Ordering::SeqCst);
                                if !running && started.load(Ordering::SeqCst) == before {
                                    lost.store(true, Ordering::SeqCst);
                                }
                            }
                        }
                    });
                }
                for round in 0..if cfg!(miri) { 5 } else { 1000 } {
                    // A long interval: the thread publishes once on start,
                    // then sleeps; the flag must hold on its own.
                    let upkeep =
                        CoarseClock::start_upkeep(Duration::from_secs(3600)).expect("start upkeep");
                    assert!(
                        CoarseClock::upkeep_running(),
                        "round {round}: flag lost right after start_upkeep"
                    );
                    started.fetch_add(1, Ordering::SeqCst); // odd: running
                    for _ in 0..200 {
                        assert!(CoarseClock::upkeep_running(), "round {round}: flag lost");
                        core::hint::spin_loop();
                    }
                    started.fetch_add(1, Ordering::SeqCst); // even: stopping
                    drop(upkeep);
                    assert!(!CoarseClock::upkeep_running());
                    assert!(Instant::now() < watchdog, "watchdog: took over 60 s");
                }
            });
            assert!(!lost.load(Ordering::SeqCst), "a reader saw the flag lost");
        }
    }
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use core::cell::Cell;

    #[test]
    fn manual_clock_advances_and_steps_back() {
        let clock = ManualClock::new();
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now(), Timestamp::from_nanos(2_000_000_000));
        clock.set(Timestamp::from_nanos(5));
        assert_eq!(clock.now(), Timestamp::from_nanos(5));
        clock.advance(Duration::MAX);
        assert_eq!(clock.now(), Timestamp::from_nanos(u64::MAX));
    }

    #[test]
    fn timestamp_arithmetic_saturates() {
        let t = Timestamp::from_nanos(10);
        assert_eq!(
            t.saturating_duration_since(Timestamp::from_nanos(20)),
            Duration::ZERO
        );
        assert_eq!(t.saturating_add(Duration::MAX).as_nanos(), u64::MAX);
        assert_eq!(t.checked_add(Duration::MAX), None);
        assert_eq!(
            t.checked_add(Duration::from_nanos(5)),
            Some(Timestamp::from_nanos(15))
        );
    }

    #[test]
    fn tick_clock_is_monotonic_across_wraps() {
        std::thread_local! { static RAW: Cell<u32> = const { Cell::new(0) }; }
        fn read() -> u32 {
            RAW.with(Cell::get)
        }
        let clock = TickClock::new(read as fn() -> u32, 1_000);
        let mut last = 0u64;
        let mut expected = 0u64;
        // Walk four full wraps in steps just under a quarter period.
        let step: u32 = (1 << 30) - 12_345;
        for _ in 0..20 {
            let ticks = clock.ticks();
            assert_eq!(ticks, expected);
            assert!(ticks >= last);
            last = ticks;
            RAW.with(|r| r.set(r.get().wrapping_add(step)));
            expected += step as u64;
        }
        assert!(last > 4 * (1u64 << 32));
        assert_eq!(clock.now().as_nanos(), clock.ticks() * 1_000_000);
    }

    /// The simulated hardware for the preemption tests: a raw counter and a
    /// script of "interrupts" that run inside the next counter read, i.e.
    /// between a `ticks()` call's epoch load and its counter read.
    mod preempted {
        use super::*;
        use std::vec::Vec;

        std::thread_local! {
            pub(super) static RAW: Cell<u32> = const { Cell::new(0) };
            /// Counter advances, one nested `ticks()` call after each,
            /// run by the next counter read.
            pub(super) static INTERRUPTS: core::cell::RefCell<Vec<u32>> =
                const { core::cell::RefCell::new(Vec::new()) };
            /// What the nested calls returned, in order.
            pub(super) static SEEN: core::cell::RefCell<Vec<u64>> =
                const { core::cell::RefCell::new(Vec::new()) };
        }

        /// One clock per test (the epoch is shared by every thread).
        pub(super) fn read_a() -> u32 {
            read(&CLOCK_A)
        }
        pub(super) fn read_b() -> u32 {
            read(&CLOCK_B)
        }
        pub(super) static CLOCK_A: TickClock<fn() -> u32> = TickClock::new(read_a, 1_000);
        pub(super) static CLOCK_B: TickClock<fn() -> u32> = TickClock::new(read_b, 1_000);

        fn read(clock: &TickClock<fn() -> u32>) -> u32 {
            let script = INTERRUPTS.with(|i| core::mem::take(&mut *i.borrow_mut()));
            for advance in script {
                RAW.with(|r| r.set(r.get().wrapping_add(advance)));
                let seen = clock.ticks();
                SEEN.with(|s| s.borrow_mut().push(seen));
            }
            RAW.with(Cell::get)
        }
    }

    /// Regression: a call held up between loading the epoch and reading
    /// the counter while other callers (here: interrupt handlers that
    /// preempt it, each 0.45 wrap apart, as the docs require) move the
    /// epoch on by a whole wrap must not return a value one wrap low.
    #[test]
    fn tick_clock_call_held_up_for_a_wrap_does_not_go_back() {
        use preempted::*;
        const WRAP: u64 = 1 << 32;
        let step = (WRAP * 45 / 100) as u32;
        for (clock, start) in [(&CLOCK_A, 3u32 << 30), (&CLOCK_B, 1u32 << 30)] {
            RAW.with(|r| r.set(start));
            assert_eq!(clock.ticks(), u64::from(start));
            // The next call is interrupted right after its epoch load.
            INTERRUPTS.with(|i| *i.borrow_mut() = std::vec![step, step]);
            let held_up = clock.ticks();
            let seen = SEEN.with(|s| core::mem::take(&mut *s.borrow_mut()));
            let truth = u64::from(start) + 2 * u64::from(step);
            assert_eq!(
                seen,
                [u64::from(start) + u64::from(step), truth],
                "the handlers' own calls"
            );
            assert_eq!(held_up, truth, "one wrap low: {held_up:#x} < {truth:#x}");
            assert_eq!(clock.ticks(), truth);
        }
    }

    /// Random nesting of "interrupt handlers" (up to 4 deep) inside
    /// counter reads, with the counter advancing by under 0.45 wrap between
    /// completed calls: every call returns the exact extended count of its
    /// (last) counter read, so values never go back in completion order.
    #[test]
    fn tick_clock_exact_under_random_nested_interrupts() {
        struct Sim {
            truth: u64,
            since_completion: u64,
            rng: u64,
            depth: usize,
            last_read: [u64; 8],
            last_returned: u64,
            calls: u64,
        }
        std::thread_local! {
            static SIM: core::cell::RefCell<Sim> = const {
                core::cell::RefCell::new(Sim {
                    truth: 0,
                    since_completion: 0,
                    rng: 0x9E37_79B9_7F4A_7C15,
                    depth: 0,
                    last_read: [0; 8],
                    last_returned: 0,
                    calls: 0,
                })
            };
        }
        const BUDGET: u64 = (1u64 << 32) * 45 / 100;
        fn random(below: u64) -> u64 {
            SIM.with(|s| {
                let mut s = s.borrow_mut();
                s.rng ^= s.rng << 13;
                s.rng ^= s.rng >> 7;
                s.rng ^= s.rng << 17;
                if below == 0 { 0 } else { s.rng % below }
            })
        }
        /// Advances the counter (within the budget), then one call.
        fn call() {
            let left = SIM.with(|s| BUDGET - s.borrow().since_completion);
            let step = random(left);
            SIM.with(|s| {
                let mut s = s.borrow_mut();
                s.truth += step;
                s.since_completion += step;
                s.depth += 1;
            });
            let value = CLOCK.ticks();
            SIM.with(|s| {
                let mut s = s.borrow_mut();
                s.depth -= 1;
                let depth = s.depth;
                assert_eq!(value, s.last_read[depth], "inexact at depth {depth}");
                assert!(value >= s.last_returned, "went back");
                s.last_returned = value;
                s.since_completion = 0;
                s.calls += 1;
            });
        }
        fn read() -> u32 {
            let depth = SIM.with(|s| s.borrow().depth);
            if depth < 5 {
                for _ in 0..random(3) {
                    call();
                }
            }
            SIM.with(|s| {
                let mut s = s.borrow_mut();
                s.last_read[depth - 1] = s.truth;
                s.truth as u32
            })
        }
        static CLOCK: TickClock<fn() -> u32> = TickClock::new(read, 1_000);
        // Fewer under Miri, which interprets every call (minutes otherwise).
        const ROUNDS: u64 = if cfg!(miri) { 50 } else { 20_000 };
        for _ in 0..ROUNDS {
            call();
        }
        let (truth, calls) = SIM.with(|s| (s.borrow().truth, s.borrow().calls));
        // At least one wrap per 200 rounds, and one wrap at all.
        assert!(
            truth > ROUNDS.div_ceil(200) * (1u64 << 32),
            "only {truth:#x} ticks"
        );
        assert!(calls > 2 * ROUNDS);
    }

    #[cfg(feature = "std")]
    #[test]
    fn monotonic_clock_moves_forward() {
        let clock = MonotonicClock::new();
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(2));
        let b = clock.now();
        assert!(b.saturating_duration_since(a) >= Duration::from_millis(2));
        // Up to the counter's drift from `Instant` (quanta's calibration:
        // well within 0.1 %).
        let back = clock.to_instant(b);
        let slack = Duration::from_nanos(b.as_nanos() / 1_000) + Duration::from_millis(1);
        assert!(back <= std::time::Instant::now() + slack);
    }
}
