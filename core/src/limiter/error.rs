//! Rejections: [`RateLimitError`].

use core::fmt;
use core::time::Duration;

use crate::HumanDuration;

/// Why a permit was not granted or a reservation not booked.
///
/// Nothing is consumed by a rejection. Every `retry_after` is exact: as
/// long as nobody else takes permits meanwhile, the same call succeeds
/// that much later and fails one nanosecond earlier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateLimitError {
    /// No permit is available now ([`RateLimiter::try_acquire`](crate::limiter::RateLimiter::try_acquire),
    /// [`RateLimiter::try_acquire_n`](crate::limiter::RateLimiter::try_acquire_n)).
    RateLimited {
        /// When the requested permits will be available.
        retry_after: Duration,
    },
    /// Booking would put more than `max_queue_size` permits in the queue
    /// ([`RateLimiter::reserve`](crate::limiter::RateLimiter::reserve)).
    QueueFull {
        /// When the queue will have room for this reservation.
        retry_after: Duration,
    },
    /// The reservation would have to wait longer than the caller's
    /// `max_wait` or the configured `queue_timeout`
    /// ([`RateLimiter::reserve`](crate::limiter::RateLimiter::reserve)).
    WaitTooLong {
        /// How long it would have had to wait.
        wait: Duration,
        /// When its wait will fit the limit.
        retry_after: Duration,
    },
    /// More permits were requested than the burst capacity: this can never
    /// succeed.
    ExceedsCapacity {
        /// Permits requested.
        requested: u32,
        /// The burst capacity.
        capacity: u32,
    },
}

/// The kind of a [`RateLimitError`], as a stable number for C and Python.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateLimitErrorKind {
    /// [`RateLimitError::RateLimited`].
    RateLimited = 1,
    /// [`RateLimitError::QueueFull`].
    QueueFull = 2,
    /// [`RateLimitError::WaitTooLong`].
    WaitTooLong = 3,
    /// [`RateLimitError::ExceedsCapacity`].
    ExceedsCapacity = 4,
}

impl RateLimitError {
    /// The kind, as a stable number (numbers are never reused).
    pub const fn kind(&self) -> RateLimitErrorKind {
        match self {
            RateLimitError::RateLimited { .. } => RateLimitErrorKind::RateLimited,
            RateLimitError::QueueFull { .. } => RateLimitErrorKind::QueueFull,
            RateLimitError::WaitTooLong { .. } => RateLimitErrorKind::WaitTooLong,
            RateLimitError::ExceedsCapacity { .. } => RateLimitErrorKind::ExceedsCapacity,
        }
    }

    /// When retrying makes sense, or `None` if it never does.
    pub const fn retry_after(&self) -> Option<Duration> {
        match *self {
            RateLimitError::RateLimited { retry_after }
            | RateLimitError::QueueFull { retry_after }
            | RateLimitError::WaitTooLong { retry_after, .. } => Some(retry_after),
            RateLimitError::ExceedsCapacity { .. } => None,
        }
    }
}

impl fmt::Display for RateLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RateLimitError::RateLimited { retry_after } => {
                write!(
                    f,
                    "rate limited: retry after {}",
                    HumanDuration(retry_after)
                )
            }
            RateLimitError::QueueFull { retry_after } => {
                write!(
                    f,
                    "rate limiter queue is full: retry after {}",
                    HumanDuration(retry_after)
                )
            }
            RateLimitError::WaitTooLong { wait, retry_after } => write!(
                f,
                "rate limiter wait of {} is too long: retry after {}",
                HumanDuration(wait),
                HumanDuration(retry_after)
            ),
            RateLimitError::ExceedsCapacity {
                requested,
                capacity,
            } => write!(
                f,
                "{requested} permits exceed the rate limiter's burst capacity of {capacity}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl core::error::Error for RateLimitError {}

#[cfg(all(test, not(stockade_loom)))]
#[allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn errors_display_and_retry_after() {
        use std::string::ToString;
        let cases = [
            (
                RateLimitError::RateLimited {
                    retry_after: Duration::from_millis(5),
                },
                "rate limited: retry after 5ms",
                Some(Duration::from_millis(5)),
            ),
            (
                RateLimitError::QueueFull { retry_after: SEC },
                "rate limiter queue is full: retry after 1s",
                Some(SEC),
            ),
            (
                RateLimitError::WaitTooLong {
                    wait: SEC * 3,
                    retry_after: SEC,
                },
                "rate limiter wait of 3s is too long: retry after 1s",
                Some(SEC),
            ),
            (
                RateLimitError::ExceedsCapacity {
                    requested: 11,
                    capacity: 10,
                },
                "11 permits exceed the rate limiter's burst capacity of 10",
                None,
            ),
        ];
        for (error, text, retry) in cases {
            assert_eq!(error.to_string(), text);
            assert_eq!(error.retry_after(), retry);
        }
        #[cfg(feature = "std")]
        {
            let boxed: std::boxed::Box<dyn std::error::Error> = std::boxed::Box::new(cases[0].0);
            assert!(boxed.to_string().contains("rate limited"));
        }
    }
}
