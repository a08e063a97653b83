//! A booked slot: [`Reservation`].

use core::time::Duration;

use crate::clock::Timestamp;
use crate::sync::Word;

/// A booked slot: the permits are the caller's from [`ready_at`](Self::ready_at) on.
///
/// The blocking layer sleeps for [`wait`](Self::wait) and then proceeds
/// without asking the limiter again. A caller that gives up earlier may
/// hand the booking back with [`RateLimiter::cancel`].
///
/// A reservation is deliberately neither `Copy` nor `Clone`: cancelling
/// consumes it, so the same booking cannot be handed back twice (a second
/// cancel could otherwise free a slot that someone else booked since).
#[derive(Debug, PartialEq, Eq, Hash)]
#[must_use = "a reservation books permits: wait until `ready_at`, or cancel it"]
pub struct Reservation {
    pub(super) permits: u32,
    pub(super) wait: Duration,
    pub(super) ready_at: Timestamp,
    /// The TAT this booking wrote.
    pub(super) tat: Word,
    /// The TAT it replaced.
    pub(super) prev: Word,
}

impl Reservation {
    /// Permits booked.
    pub const fn permits(&self) -> u32 {
        self.permits
    }

    /// How long to wait from the moment of booking (zero if the permits
    /// were available at once).
    pub const fn wait(&self) -> Duration {
        self.wait
    }

    /// When the permits may be used: the booking time plus [`wait`](Self::wait).
    pub const fn ready_at(&self) -> Timestamp {
        self.ready_at
    }

    /// `true` if the permits were available at once.
    pub const fn is_immediate(&self) -> bool {
        self.wait.is_zero()
    }
}
