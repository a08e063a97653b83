//! [`HostClock`]: one time line for every process on the host.

use crate::clock::{Clock, Timestamp};

/// `CLOCK_MONOTONIC`: nanoseconds since boot (not counting suspend), the
/// same reading in every process of one time namespace. Shared machines
/// read it, because the process-local `MonotonicClock` counts from each
/// process's own first use.
///
/// A reading is one `clock_gettime` through the vDSO (no system call):
/// about 15–25 ns on x86-64, against `MonotonicClock`'s calibrated counter
/// read. It never goes backwards, on one thread or across threads and
/// processes: a reading taken after another (one that happens after it, as
/// through an atomic hand-over) is never smaller, as the kernel guarantees
/// for `CLOCK_MONOTONIC` (it orders the counter read, and gives up a
/// counter whose CPUs disagree). Off Linux it
/// reads `std::time::Instant` from a process-wide origin, so it is then
/// monotonic but only process-wide, and no shared region exists there.
///
/// # Examples
///
/// ```
/// use stockade::clock::Clock;
/// use stockade::shared::HostClock;
///
/// let a = HostClock.now();
/// let b = HostClock.now();
/// assert!(b >= a);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostClock;

impl Clock for HostClock {
    #[inline]
    fn now(&self) -> Timestamp {
        #[cfg(target_os = "linux")]
        {
            Timestamp::from_nanos(super::sys::monotonic_nanos())
        }
        #[cfg(not(target_os = "linux"))]
        {
            use std::sync::OnceLock;
            use std::time::Instant;
            static ORIGIN: OnceLock<Instant> = OnceLock::new();
            let origin = *ORIGIN.get_or_init(Instant::now);
            Timestamp::from_nanos(origin.elapsed().as_nanos() as u64)
        }
    }
}

impl crate::blocking::Timer for HostClock {
    fn sleep_until(&self, deadline: Timestamp) {
        loop {
            let left = deadline.saturating_duration_since(self.now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left);
        }
    }

    fn park_until(&self, deadline: Timestamp) {
        let left = deadline.saturating_duration_since(self.now());
        if !left.is_zero() {
            std::thread::park_timeout(left);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU64, Ordering};
    use core::time::Duration;
    use std::sync::Arc;
    use std::time::Instant;

    /// A reading handed from one thread to another is never ahead of the
    /// receiver's next reading (the two threads run on different CPUs when
    /// the scheduler places them so; many hand-overs make that likely).
    #[test]
    fn readings_handed_across_threads_never_go_back() {
        let slot = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicU64::new(0));
        let writer = {
            let (slot, stop) = (Arc::clone(&slot), Arc::clone(&stop));
            std::thread::spawn(move || {
                while stop.load(Ordering::SeqCst) == 0 {
                    slot.store(HostClock.now().as_nanos(), Ordering::SeqCst);
                }
            })
        };
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut checked = 0u64;
        while Instant::now() < deadline {
            let handed = slot.load(Ordering::SeqCst);
            let mine = HostClock.now().as_nanos();
            assert!(mine >= handed, "{mine} read after {handed} was handed over");
            checked += 1;
        }
        stop.store(1, Ordering::SeqCst);
        writer.join().unwrap();
        assert!(checked > 1000, "only {checked} comparisons");
    }
}
