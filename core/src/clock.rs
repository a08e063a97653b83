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
#[cfg_attr(
    docsrs,
    doc(cfg(any(target_has_atomic = "64", feature = "fallback")))
)]
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
        loop {
            // Epoch, counter, epoch again: if the epoch is the same on both
            // sides of the counter read, it was the epoch *at* that read
            // (it only ever moves forward, one half wrap at a time), so the
            // counter's top bit differs from the epoch's by at most one half
            // wrap and the 64-bit value below is exact. If it moved, this
            // call was held up while others read the clock: start over with
            // a fresh epoch and a fresh counter read.
            let epoch = self.epoch.load(Ordering::Acquire);
            let raw = (self.read)();
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
    use core::time::Duration;
    use std::sync::OnceLock;
    use std::time::Instant;

    use super::{Clock, Timestamp, duration_to_nanos_saturating};

    /// The operating system's monotonic clock, read the cheapest way that
    /// stays monotonic.
    ///
    /// Timestamps count from the first use of any `MonotonicClock` in the
    /// process; [`to_instant`](Self::to_instant) converts them back.
    ///
    /// # How it reads time
    ///
    /// On x86_64 Linux, when the CPU has an invariant TSC (`constant_tsc`
    /// and `nonstop_tsc`: one rate in every power state) **and** the kernel
    /// itself uses the TSC as its clocksource (so it has checked that the
    /// cores' counters are synchronised), `now()` is one `RDTSC` scaled to
    /// nanoseconds with a fixed-point multiply: about 60 % of the cost of
    /// [`Instant::now`] (see the clock table in `benches/`). The scale is
    /// calibrated against `Instant` without blocking: for the first 10 ms
    /// after the first use the clock reads `Instant`, and the first read
    /// after that measures the TSC rate over the whole span (accurate to
    /// 50 ppm or better, else it waits longer) and switches every thread to
    /// the TSC. The scale never changes afterwards.
    ///
    /// Everywhere else — other CPUs and systems, a TSC that is not
    /// invariant, a kernel on another clocksource (a VM on `kvm-clock`), no
    /// readable `/sys` — it reads [`Instant`] (`CLOCK_MONOTONIC` through the
    /// vDSO on Linux).
    ///
    /// Within a thread the time never goes backwards, also across the
    /// switch to the TSC (the conversion is fixed and monotone, and the
    /// kernel keeps the TSC as its clocksource only while the cores'
    /// counters are synchronised, so a thread that migrates does not step
    /// back). Between threads, a read may come out a few
    /// nanoseconds before a read that another thread made just earlier
    /// (an unordered `RDTSC`); the state machines treat that as "no time
    /// passed". The TSC scale is not slewed by NTP as `CLOCK_MONOTONIC` is,
    /// so over hours the two may drift apart by the clock's frequency
    /// error (typically a few ppm).
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
    static SOURCE: Source = Source::new(CALIBRATION_WINDOW_NANOS);

    /// How long the TSC rate is measured at least before it is used.
    const CALIBRATION_WINDOW_NANOS: u64 = 10_000_000;

    impl MonotonicClock {
        /// The clock.
        pub const fn new() -> MonotonicClock {
            MonotonicClock
        }

        /// Converts a timestamp of this clock back to a [`std::time::Instant`].
        pub fn to_instant(self, timestamp: Timestamp) -> Instant {
            add_saturating(SOURCE.start().instant, timestamp.as_nanos())
        }
    }

    impl Clock for MonotonicClock {
        #[inline]
        fn now(&self) -> Timestamp {
            Timestamp::from_nanos(SOURCE.now())
        }
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

    fn nanos_since(start: Instant) -> u64 {
        duration_to_nanos_saturating(Instant::now().saturating_duration_since(start))
    }

    /// The epoch: the first use in the process.
    #[derive(Debug)]
    struct Start {
        instant: Instant,
        /// The TSC at `instant`, if the TSC is usable.
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        tsc: Option<tsc::Pair>,
    }

    /// A time source: `Instant` since the epoch, switched to the scaled
    /// TSC once calibrated where that is usable.
    #[derive(Debug)]
    struct Source {
        start: OnceLock<Start>,
        /// Set once: `Some` after calibration, `None` if the TSC is not
        /// usable.
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        scale: OnceLock<Option<tsc::Scale>>,
        /// The latest time handed out from `Instant`, before and while the
        /// source switched to the TSC: TSC readings never go below it, so
        /// no thread sees time go backwards across the switch.
        ///
        /// Not a `crate::sync` atomic: this process-wide static is no
        /// state machine, and loom's model atomics cannot live in it.
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        floor: portable_atomic::AtomicU64,
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        window_nanos: u64,
    }

    impl Source {
        #[cfg_attr(
            not(all(target_arch = "x86_64", target_os = "linux")),
            allow(unused_variables)
        )]
        const fn new(window_nanos: u64) -> Source {
            Source {
                start: OnceLock::new(),
                #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
                scale: OnceLock::new(),
                #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
                floor: portable_atomic::AtomicU64::new(0),
                #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
                window_nanos,
            }
        }

        fn start(&self) -> &Start {
            self.start.get_or_init(|| {
                #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
                if tsc::usable() {
                    let pair = tsc::Pair::read();
                    return Start {
                        instant: pair.instant,
                        tsc: Some(pair),
                    };
                }
                Start {
                    instant: Instant::now(),
                    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
                    tsc: None,
                }
            })
        }

        /// Nanoseconds since the epoch.
        #[inline]
        fn now(&self) -> u64 {
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            if let Some(Some(scale)) = self.scale.get() {
                let floor = self.floor.load(portable_atomic::Ordering::Relaxed);
                return scale.nanos(tsc::read()).max(floor);
            }
            self.now_from_instant()
        }

        fn now_from_instant(&self) -> u64 {
            let start = self.start();
            let nanos = nanos_since(start.instant);
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            match self.scale.get() {
                // The TSC is not usable: plain `Instant` from now on.
                Some(None) => {}
                // Published since this call checked: the floor still has to
                // cover this `Instant` reading.
                Some(Some(_)) => {
                    self.floor
                        .fetch_max(nanos, portable_atomic::Ordering::Relaxed);
                }
                None => {
                    self.floor
                        .fetch_max(nanos, portable_atomic::Ordering::Relaxed);
                    self.calibrate(start, nanos);
                }
            }
            nanos
        }

        /// Decides the TSC question once the calibration window has passed
        /// (or at once if the TSC is not usable).
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        fn calibrate(&self, start: &Start, nanos: u64) {
            let Some(first) = start.tsc else {
                let _ = self.scale.set(None);
                return;
            };
            if nanos < self.window_nanos {
                return;
            }
            let last = tsc::Pair::read();
            let span_nanos =
                duration_to_nanos_saturating(last.instant.saturating_duration_since(start.instant));
            match tsc::Scale::calibrate(&first, &last, span_nanos) {
                Ok(scale) => {
                    let _ = self.scale.set(Some(scale));
                }
                Err(tsc::Retry::Later) => {}
                Err(tsc::Retry::Never) => {
                    let _ = self.scale.set(None);
                }
            }
        }

        /// Whether the TSC path is in use.
        #[cfg(all(test, not(stockade_loom)))]
        fn uses_tsc(&self) -> bool {
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            {
                matches!(self.scale.get(), Some(Some(_)))
            }
            #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
            {
                false
            }
        }
    }

    /// The x86_64 time-stamp counter as a clock.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    mod tsc {
        use core::arch::x86_64::{__cpuid, _rdtsc};
        use std::time::Instant;

        /// Fractional bits of [`Scale::mult`].
        const SHIFT: u32 = 32;
        /// The calibration's error bound: 1 / 20 000 = 50 ppm.
        const MAX_ERROR_INVERSE: u64 = 20_000;
        /// Reads per [`Pair::read`]; the tightest pair wins.
        const PAIR_TRIES: u32 = 5;

        /// The raw TSC.
        #[inline(always)]
        pub(super) fn read() -> u64 {
            // SAFETY: RDTSC exists on every x86_64 CPU. It faults only if
            // the kernel set CR4.TSD, and `usable()` has checked that the
            // kernel uses the TSC as its own clocksource, which it then
            // also exposes to user space through the vDSO.
            unsafe { _rdtsc() }
        }

        /// Whether the TSC can serve as a monotonic clock: invariant on
        /// this CPU and trusted by the kernel.
        pub(super) fn usable() -> bool {
            invariant_tsc() && kernel_uses_tsc()
        }

        /// CPUID.80000007H:EDX[8], "invariant TSC" (Linux shows it as the
        /// `constant_tsc` and `nonstop_tsc` flags).
        fn invariant_tsc() -> bool {
            let max_extended = __cpuid(0x8000_0000).eax;
            max_extended >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
        }

        /// The kernel keeps the TSC as its clocksource only while it finds
        /// the cores' counters synchronised and stable; under a hypervisor
        /// that cannot promise that, it uses `kvm-clock`, `hyperv_clocksource`
        /// and the like instead.
        fn kernel_uses_tsc() -> bool {
            std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .is_ok_and(|s| s.trim() == "tsc")
        }

        /// One `Instant` and the TSC read just before it.
        #[derive(Clone, Copy, Debug)]
        pub(super) struct Pair {
            pub(super) instant: Instant,
            /// The TSC read just before `instant`.
            tsc: u64,
            /// TSC ticks between the reads before and after `instant`: the
            /// uncertainty of the pairing.
            width: u64,
        }

        impl Pair {
            /// The tightest of a few pairs.
            pub(super) fn read() -> Pair {
                let mut best = Pair::read_once();
                for _ in 1..PAIR_TRIES {
                    let pair = Pair::read_once();
                    if pair.width < best.width {
                        best = pair;
                    }
                }
                best
            }

            fn read_once() -> Pair {
                let before = read();
                let instant = Instant::now();
                let after = read();
                Pair {
                    instant,
                    tsc: before,
                    width: after.saturating_sub(before),
                }
            }

            /// The best estimate of the TSC at `instant`.
            fn middle(&self) -> u64 {
                self.tsc.saturating_add(self.width / 2)
            }
        }

        /// Why a calibration did not produce a scale.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(super) enum Retry {
            /// Not precise enough yet: measure over a longer span.
            Later,
            /// The TSC does not behave like a clock.
            Never,
        }

        /// TSC ticks to nanoseconds since the epoch:
        /// `base_nanos + (tsc - base_tsc) * mult >> SHIFT`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(super) struct Scale {
            base_tsc: u64,
            base_nanos: u64,
            /// Nanoseconds per tick, times `2^SHIFT`.
            mult: u64,
        }

        impl Scale {
            /// The scale measured between `first` (the epoch) and `last`,
            /// `span_nanos` later by `Instant`, anchored at `last`.
            ///
            /// Anchoring at the TSC read *before* `last.instant` makes the
            /// TSC time at least the `Instant` time at the switch (by up to
            /// the pair's width), never less.
            pub(super) fn calibrate(
                first: &Pair,
                last: &Pair,
                span_nanos: u64,
            ) -> Result<Scale, Retry> {
                let span_ticks = last.middle().saturating_sub(first.middle());
                if span_ticks == 0 || span_nanos == 0 {
                    return Err(Retry::Never);
                }
                let uncertainty = first.width.saturating_add(last.width);
                if uncertainty.saturating_mul(MAX_ERROR_INVERSE) > span_ticks {
                    return Err(Retry::Later);
                }
                let mult = (u128::from(span_nanos) << SHIFT) / u128::from(span_ticks);
                // A TSC between 1 MHz and 100 GHz; anything else is no clock.
                let min = (1u128 << SHIFT) / 100;
                let max = 1000u128 << SHIFT;
                if mult < min || mult > max {
                    return Err(Retry::Never);
                }
                Ok(Scale {
                    base_tsc: last.tsc,
                    base_nanos: span_nanos,
                    mult: mult as u64,
                })
            }

            /// Nanoseconds since the epoch at TSC value `tsc`; a value
            /// before the anchor (another core's counter a hair behind)
            /// counts as the anchor.
            #[inline(always)]
            pub(super) fn nanos(&self, tsc: u64) -> u64 {
                let ticks = tsc.saturating_sub(self.base_tsc);
                let scaled = (u128::from(ticks) * u128::from(self.mult)) >> SHIFT;
                let scaled = u64::try_from(scaled).unwrap_or(u64::MAX);
                self.base_nanos.saturating_add(scaled)
            }
        }

        #[cfg(all(test, not(stockade_loom)))]
        mod tests {
            use super::*;

            fn pair(tsc: u64, width: u64) -> Pair {
                Pair {
                    instant: Instant::now(),
                    tsc,
                    width,
                }
            }

            #[test]
            fn scale_converts_with_fixed_point() {
                // 2 GHz: 20 000 000 ticks in 10 ms.
                let scale = Scale::calibrate(&pair(1_000, 0), &pair(20_001_000, 0), 10_000_000)
                    .expect("precise");
                assert_eq!(scale.nanos(20_001_000), 10_000_000);
                assert_eq!(scale.nanos(22_001_000), 11_000_000);
                // Before the anchor: the anchor.
                assert_eq!(scale.nanos(0), 10_000_000);
                // No overflow at the end of the counter.
                assert!(scale.nanos(u64::MAX) > 9_000_000_000_000_000_000);
            }

            #[test]
            fn calibration_waits_for_precision_and_rejects_nonsense() {
                // 200 ticks of uncertainty over 2M ticks = 100 ppm: later.
                assert_eq!(
                    Scale::calibrate(&pair(0, 100), &pair(2_000_000, 100), 1_000_000),
                    Err(Retry::Later)
                );
                // A counter that did not move, or moved at 1 THz.
                assert_eq!(
                    Scale::calibrate(&pair(5, 0), &pair(5, 0), 1_000_000),
                    Err(Retry::Never)
                );
                assert_eq!(
                    Scale::calibrate(&pair(0, 0), &pair(1_000_000_000_000, 0), 1_000_000),
                    Err(Retry::Never)
                );
            }
        }
    }

    #[cfg(all(test, not(stockade_loom)))]
    mod tests {
        use super::*;
        use std::sync::Barrier;

        /// Reads `reads` times on each of two threads (through the switch
        /// to the TSC when `source` starts fresh) and checks that each
        /// thread's readings never decrease.
        fn assert_monotonic(source: &Source, reads: usize) {
            let barrier = Barrier::new(2);
            std::thread::scope(|scope| {
                for _ in 0..2 {
                    scope.spawn(|| {
                        barrier.wait();
                        let mut last = source.now();
                        for _ in 0..reads {
                            let now = source.now();
                            assert!(now >= last, "went back from {last} to {now}");
                            last = now;
                        }
                    });
                }
            });
        }

        #[test]
        fn monotonic_across_threads_and_the_switch() {
            // A fresh source with a 1 ms window, so the switch to the TSC
            // (where usable) happens during the reads.
            let source = Source::new(1_000_000);
            assert_monotonic(&source, 500_000);
            // The global clock, calibrated or not by now.
            let clock = MonotonicClock::new();
            let _ = clock.now();
            assert_monotonic(&SOURCE, 500_000);
        }

        #[test]
        fn matches_instant_within_one_percent() {
            let clock = MonotonicClock::new();
            // Let the calibration window pass, so the TSC path (where
            // usable) is the one measured.
            let _ = clock.now();
            std::thread::sleep(Duration::from_millis(15));
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
        fn uses_the_tsc_where_the_kernel_does() {
            let source = Source::new(1_000_000);
            let _ = source.now();
            std::thread::sleep(Duration::from_millis(2));
            let _ = source.now();
            let kernel_tsc = std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .is_ok_and(|s| s.trim() == "tsc");
            if cfg!(all(target_arch = "x86_64", target_os = "linux")) && kernel_tsc {
                // Calibration may wait for a tighter pair under heavy load.
                for _ in 0..100 {
                    if source.uses_tsc() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    let _ = source.now();
                }
                assert!(source.uses_tsc());
            } else {
                assert!(!source.uses_tsc());
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
        for _ in 0..20_000 {
            call();
        }
        let (truth, calls) = SIM.with(|s| (s.borrow().truth, s.borrow().calls));
        assert!(truth > 100 * (1u64 << 32), "only {truth:#x} ticks");
        assert!(calls > 40_000);
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
