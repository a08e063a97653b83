//! A booked slot: [`Reservation`], its plain form [`ReservationToken`],
//! and why a cancel was refused ([`CancelError`]).

// `Word` is `u64` or `u32` by layout.
#![allow(clippy::unnecessary_cast)]

use core::fmt;
use core::time::Duration;

use crate::clock::Timestamp;
use crate::sync::Word;

/// A booked slot: the permits are the caller's from [`ready_at`](Self::ready_at) on.
///
/// The blocking layer sleeps for [`wait`](Self::wait) and then proceeds
/// without asking the limiter again. A caller that gives up earlier may
/// hand the booking back with [`RateLimiter::cancel`](crate::limiter::RateLimiter::cancel).
///
/// A reservation is deliberately neither `Copy` nor `Clone`: cancelling
/// consumes it (through [`into_token`](Self::into_token)), so a Rust caller
/// cannot hand the same booking back twice. Bindings hold the plain
/// [`ReservationToken`] instead, whose contract covers that case.
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

impl Reservation {
    /// The plain form, for bindings that hold the booking across a
    /// boundary (C, Python), and for [`RateLimiter::cancel`](super::RateLimiter::cancel).
    pub const fn into_token(self) -> ReservationToken {
        ReservationToken {
            tat: self.tat as u64,
            prev: self.prev as u64,
            ready_at_nanos: self.ready_at.as_nanos(),
            wait_nanos: crate::clock::duration_to_nanos_saturating(self.wait),
            permits: self.permits,
        }
    }

    /// The reservation a token came from.
    pub const fn from_token(token: ReservationToken) -> Reservation {
        Reservation {
            permits: token.permits,
            wait: Duration::from_nanos(token.wait_nanos),
            ready_at: Timestamp::from_nanos(token.ready_at_nanos),
            tat: token.tat as Word,
            prev: token.prev as Word,
        }
    }
}

/// A [`Reservation`] as plain integers (`#[repr(C)]`, `Copy`), for
/// bindings: made by [`Reservation::into_token`], handed back with
/// [`RateLimiter::cancel`](super::RateLimiter::cancel), or turned back into
/// a reservation with [`Reservation::from_token`].
///
/// It records the limiter word the booking wrote and the one it replaced.
/// The limiter keeps no per-booking state, so:
///
/// * **Never cancelled:** the normal case. The permits are simply used at
///   `ready_at` (or wasted, if the caller went away): nothing leaks, the
///   limiter is time-based.
/// * **Cancelled twice:** the second cancel is refused with
///   [`CancelError::Superseded`] (the word no longer holds what the
///   booking wrote), *unless* in between another booking of the same
///   limiter happened to write exactly the same word (the same number of
///   permits booked from the same state, e.g. the caller re-booked the
///   slot it just gave back). Then the second cancel undoes that booking,
///   whose caller still proceeds at its `ready_at`: up to `permits` extra
///   permits are granted, once. A token is only meaningful for the limiter
///   that booked it; on another limiter a cancel is refused, or (if the
///   words happen to match) moves that limiter's TAT back by at most the
///   booking's cost.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReservationToken {
    /// The word (theoretical arrival time, in ticks) the booking wrote.
    tat: u64,
    /// The word it replaced.
    prev: u64,
    /// `ready_at` in clock nanoseconds.
    ready_at_nanos: u64,
    /// The wait, in nanoseconds.
    wait_nanos: u64,
    /// Permits booked.
    permits: u32,
}

impl ReservationToken {
    /// Permits booked.
    pub const fn permits(self) -> u32 {
        self.permits
    }

    /// When the permits may be used.
    pub const fn ready_at(self) -> Timestamp {
        Timestamp::from_nanos(self.ready_at_nanos)
    }

    /// How long the booking had to wait from the moment it was made.
    pub const fn wait(self) -> Duration {
        Duration::from_nanos(self.wait_nanos)
    }
}

/// Why [`RateLimiter::cancel`](super::RateLimiter::cancel) did not hand a
/// booking back. Nothing changed; the caller may still use the permits at
/// `ready_at`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CancelError {
    /// The permits were available at once: nothing is waiting to cancel.
    Immediate = 1,
    /// `ready_at` has passed: the permits are the caller's now.
    Ready = 2,
    /// Someone booked after it (or it was already cancelled): only the
    /// latest booking can be undone exactly.
    Superseded = 3,
}

impl CancelError {
    /// Never: retrying a cancel does not help (uniform with every other
    /// rejection).
    pub const fn retry_after(&self) -> Option<Duration> {
        None
    }
}

impl fmt::Display for CancelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelError::Immediate => "reservation not cancelled: it did not wait",
            CancelError::Ready => "reservation not cancelled: it is ready",
            CancelError::Superseded => {
                "reservation not cancelled: a later booking (or cancel) came after it"
            }
        })
    }
}

impl core::error::Error for CancelError {}
