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
//! machines treat it as "no time passed".

use core::time::Duration;

use crate::sync::{AtomicU32, AtomicU64, Ordering, const_fn_unless_loom};

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
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
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
/// time passing), but it should not.
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
/// no `Arc` is needed. On targets without native 64-bit atomics its counter
/// uses portable-atomic's fallback, so do not drive it from an interrupt
/// handler there.
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
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

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
/// locks, safe to call from interrupt handlers), so time stays monotonic
/// across the wrap (a 1 kHz counter wraps after 49.7 days).
///
/// **Requirement:** `now()` must be called at least once per half wrap
/// period (24.8 days for a 1 kHz counter, 35.8 minutes for a 1 MHz
/// counter), since a wrap is detected by watching the counter's top bit. A
/// firmware that may idle longer calls `now()` from a periodic task.
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
    nanos_per_tick: u64,
    /// `(wraps << 1) | top bit of the last observed raw count`.
    epoch: AtomicU32,
}

impl<F: Fn() -> u32> TickClock<F> {
    const_fn_unless_loom! {
        /// A clock over a counter that ticks `hz` times a second.
        ///
        /// `hz` of zero is treated as one (the counter is read as seconds);
        /// frequencies above 1 GHz are treated as 1 GHz.
        pub fn new(read: F, hz: u32) -> TickClock<F> {
            let hz = if hz == 0 { 1 } else if hz > 1_000_000_000 { 1_000_000_000 } else { hz };
            TickClock { read, nanos_per_tick: 1_000_000_000 / hz as u64, epoch: AtomicU32::new(0) }
        }
    }

    /// The extended 64-bit tick count.
    pub fn ticks(&self) -> u64 {
        // Read the epoch first, then the counter: the counter is then at
        // least as new as the epoch's observation, so a top bit that went
        // 1 -> 0 means exactly one wrap happened in between.
        let mut epoch = self.epoch.load(Ordering::Acquire);
        loop {
            let raw = (self.read)();
            let top = raw >> 31;
            let last_top = epoch & 1;
            let mut wraps = epoch >> 1;
            if last_top == 1 && top == 0 {
                wraps = wraps.wrapping_add(1) & (u32::MAX >> 1);
            }
            let next = (wraps << 1) | top;
            if next == epoch {
                return ((wraps as u64) << 32) | raw as u64;
            }
            match self
                .epoch
                .compare_exchange(epoch, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return ((wraps as u64) << 32) | raw as u64,
                Err(actual) => epoch = actual,
            }
        }
    }
}

impl<F: Fn() -> u32> Clock for TickClock<F> {
    #[inline]
    fn now(&self) -> Timestamp {
        Timestamp(self.ticks().saturating_mul(self.nanos_per_tick))
    }
}

#[cfg(feature = "std")]
pub use self::monotonic::MonotonicClock;

#[cfg(feature = "std")]
mod monotonic {
    use super::{Clock, Timestamp};

    /// The operating system's monotonic clock.
    ///
    /// On Linux this reads `CLOCK_MONOTONIC` through the vDSO via
    /// [`std::time::Instant`], measured as the fastest monotonic source
    /// (see the README's clock table). Timestamps count from the first use
    /// of any `MonotonicClock` in the process.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct MonotonicClock;

    fn epoch() -> std::time::Instant {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        *EPOCH.get_or_init(std::time::Instant::now)
    }

    impl MonotonicClock {
        /// The clock.
        pub const fn new() -> MonotonicClock {
            MonotonicClock
        }

        /// Converts a timestamp of this clock back to a [`std::time::Instant`].
        pub fn to_instant(self, timestamp: Timestamp) -> std::time::Instant {
            epoch() + core::time::Duration::from_nanos(timestamp.as_nanos())
        }
    }

    impl Clock for MonotonicClock {
        #[inline]
        fn now(&self) -> Timestamp {
            let epoch = epoch();
            Timestamp::from_nanos(super::duration_to_nanos_saturating(
                std::time::Instant::now().duration_since(epoch),
            ))
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

    #[cfg(feature = "std")]
    #[test]
    fn monotonic_clock_moves_forward() {
        let clock = MonotonicClock::new();
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(2));
        let b = clock.now();
        assert!(b.saturating_duration_since(a) >= Duration::from_millis(2));
        let back = clock.to_instant(b);
        assert!(back <= std::time::Instant::now());
    }
}
