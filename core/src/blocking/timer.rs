//! Clocks the blocking layer can wait on.
//!
//! A [`Timer`] is a [`Clock`] that can also put the calling thread to sleep
//! on its own time. [`MonotonicClock`] sleeps in real time;
//! [`VirtualClock`] is simulated time for tests and simulations: a thread
//! waiting on it sleeps until another thread advances it, or — in
//! auto-advance mode — a sleep simply moves the clock forward, so a
//! simulation of hours finishes in milliseconds.

use core::time::Duration;
use std::sync::Arc;
use std::vec::Vec;

use crate::clock::{Clock, ManualClock, MonotonicClock, Timestamp};
use crate::sync::Mutex;
use crate::sync::thread::{self, Thread};

/// A [`Clock`] whose time the calling thread can wait on.
///
/// The blocking patterns use it for every wait: retry back-off, rate-limiter
/// reservations, queue timeouts, timeouts.
pub trait Timer: Clock + Send + Sync {
    /// Blocks the calling thread until this clock reaches `deadline`.
    fn sleep_until(&self, deadline: Timestamp);

    /// Parks the calling thread until `deadline` or until it is unparked
    /// ([`Thread::unpark`]), whichever comes first. May return early
    /// (spuriously): callers re-check their condition in a loop.
    fn park_until(&self, deadline: Timestamp);

    /// Blocks the calling thread for `duration` of this clock's time.
    fn sleep(&self, duration: Duration) {
        self.sleep_until(self.now().saturating_add(duration));
    }

    /// A sleep that can be interrupted: waits like
    /// [`sleep_until`](Self::sleep_until) (so an auto-advancing
    /// [`VirtualClock`] moves to `deadline` at once), but like
    /// [`park_until`](Self::park_until) returns early when the thread is
    /// unparked, or spuriously: callers re-check their condition in a loop.
    /// Retry back-off and the rate limiter's queue use it so that `dispose`
    /// can wake a sleeper.
    /// The default is `park_until`.
    fn interruptible_sleep_until(&self, deadline: Timestamp) {
        self.park_until(deadline)
    }
}

impl<T: Timer + ?Sized> Timer for &T {
    fn sleep_until(&self, deadline: Timestamp) {
        (**self).sleep_until(deadline)
    }
    fn park_until(&self, deadline: Timestamp) {
        (**self).park_until(deadline)
    }
    fn interruptible_sleep_until(&self, deadline: Timestamp) {
        (**self).interruptible_sleep_until(deadline)
    }
}

impl<T: Timer + ?Sized> Timer for Arc<T> {
    fn sleep_until(&self, deadline: Timestamp) {
        (**self).sleep_until(deadline)
    }
    fn park_until(&self, deadline: Timestamp) {
        (**self).park_until(deadline)
    }
    fn interruptible_sleep_until(&self, deadline: Timestamp) {
        (**self).interruptible_sleep_until(deadline)
    }
}

impl<T: Clock + ?Sized> Clock for Arc<T> {
    #[inline]
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl Timer for MonotonicClock {
    fn sleep_until(&self, deadline: Timestamp) {
        loop {
            let left = deadline.saturating_duration_since(self.now());
            if left.is_zero() {
                return;
            }
            thread::sleep(left);
        }
    }

    fn park_until(&self, deadline: Timestamp) {
        let left = deadline.saturating_duration_since(self.now());
        if !left.is_zero() {
            thread::park_timeout(left);
        }
    }
}

/// Simulated time that threads can wait on.
///
/// Threads waiting on a `VirtualClock` sleep until another thread calls
/// [`advance`](VirtualClock::advance) or [`set`](VirtualClock::set) past
/// their deadline. In [auto-advance](VirtualClock::auto_advance) mode a
/// `sleep_until` moves the clock to its deadline at once instead, which lets
/// a single-threaded simulation run hours of retries and rate limits in
/// milliseconds. Share it between patterns with an `Arc`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stockade::blocking::{Timer, VirtualClock};
/// use stockade::clock::Clock;
///
/// let clock = VirtualClock::auto_advance();
/// clock.sleep(Duration::from_secs(3600)); // returns at once
/// assert_eq!(clock.now().as_nanos(), 3_600_000_000_000);
/// ```
#[derive(Debug, Default)]
pub struct VirtualClock {
    time: ManualClock,
    auto_advance: bool,
    sleepers: Mutex<Vec<(Timestamp, Thread)>>,
}

impl VirtualClock {
    /// A clock at zero that moves only when advanced.
    pub fn new() -> VirtualClock {
        VirtualClock::default()
    }

    /// A clock at zero whose `sleep_until` advances it to the deadline.
    pub fn auto_advance() -> VirtualClock {
        VirtualClock {
            auto_advance: true,
            ..VirtualClock::default()
        }
    }

    /// Moves the clock forward by `duration` and wakes the threads whose
    /// deadline has come.
    pub fn advance(&self, duration: Duration) {
        self.time.advance(duration);
        self.wake_due();
    }

    /// Moves the clock forward to `time`; never moves it back.
    pub fn advance_to(&self, time: Timestamp) {
        let now = self.time.now();
        if time > now {
            self.advance(time.saturating_duration_since(now));
        }
    }

    /// Sets the clock to `time`, which may be earlier than now (to test
    /// clocks that step backwards), and wakes the threads now due.
    pub fn set(&self, time: Timestamp) {
        self.time.set(time);
        self.wake_due();
    }

    /// Threads currently waiting on this clock.
    pub fn waiting(&self) -> usize {
        self.sleepers.lock().len()
    }

    fn wake_due(&self) {
        let now = self.time.now();
        let mut sleepers = self.sleepers.lock();
        sleepers.retain(|(deadline, thread)| {
            if *deadline <= now {
                thread.unpark();
                false
            } else {
                true
            }
        });
    }

    /// Registers the calling thread until `deadline` and parks it once; the
    /// caller loops on its own condition.
    fn park_once(&self, deadline: Timestamp) {
        let me = thread::current();
        {
            let mut sleepers = self.sleepers.lock();
            if self.time.now() >= deadline {
                return;
            }
            sleepers.push((deadline, me.clone()));
        }
        thread::park();
        // Unregister if woken by someone else (a grant) before the deadline.
        self.sleepers
            .lock()
            .retain(|(d, t)| !(t.id() == me.id() && *d == deadline));
    }
}

impl Clock for VirtualClock {
    #[inline]
    fn now(&self) -> Timestamp {
        self.time.now()
    }
}

impl Timer for VirtualClock {
    fn sleep_until(&self, deadline: Timestamp) {
        if self.auto_advance {
            self.advance_to(deadline);
            return;
        }
        while self.now() < deadline {
            self.park_once(deadline);
        }
    }

    fn park_until(&self, deadline: Timestamp) {
        if self.now() < deadline {
            self.park_once(deadline);
        }
    }

    fn interruptible_sleep_until(&self, deadline: Timestamp) {
        if self.auto_advance {
            self.advance_to(deadline);
        } else {
            self.park_until(deadline);
        }
    }
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread;

    #[test]
    fn virtual_sleep_waits_for_advance() {
        let clock = Arc::new(VirtualClock::new());
        let (tx, rx) = mpsc::channel();
        let sleeper = {
            let clock = Arc::clone(&clock);
            thread::spawn(move || {
                clock.sleep(Duration::from_secs(10));
                tx.send(clock.now()).unwrap();
            })
        };
        // Wait until the sleeper is registered, then advance in two steps.
        while clock.waiting() == 0 {
            thread::yield_now();
        }
        clock.advance(Duration::from_secs(5));
        assert!(rx.try_recv().is_err(), "woke before its deadline");
        clock.advance(Duration::from_secs(5));
        let woke_at = rx.recv().unwrap();
        assert_eq!(woke_at, Timestamp::from_nanos(10_000_000_000));
        sleeper.join().unwrap();
    }

    #[test]
    fn auto_advance_moves_time_forward_only() {
        let clock = VirtualClock::auto_advance();
        clock.sleep(Duration::from_millis(250));
        assert_eq!(clock.now(), Timestamp::from_nanos(250_000_000));
        clock.sleep_until(Timestamp::from_nanos(1));
        assert_eq!(clock.now(), Timestamp::from_nanos(250_000_000));
    }
}
