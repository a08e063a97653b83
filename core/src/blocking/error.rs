//! The blocking layer's one error type.

use core::fmt;
use core::time::Duration;
use std::boxed::Box;
use std::sync::Arc;

use crate::breaker::BreakerState;
use crate::error::{ConfigError, HumanDuration};

/// Why a protected call did not produce its value.
///
/// `E` is the protected closure's own error type; it is preserved in
/// [`Error::Inner`] (and inside [`Error::RetriesExhausted`]). Patterns that
/// run infallible closures use the default `E = Infallible`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E = core::convert::Infallible> {
    /// The closure ran and returned this error.
    Inner(E),
    /// The circuit breaker refused the call.
    BreakerOpen {
        /// The breaker's state when it refused.
        state: BreakerState,
        /// How long until a trial call may be admitted. `Duration::MAX`
        /// when forced open (no time is meaningful: [`Error::retry_after`]
        /// is `None` and the message names no time).
        retry_after: Duration,
    },
    /// The bulkhead had no free slot and no room in its queue.
    BulkheadFull,
    /// Every worker of a [`Timeout`](super::Timeout)'s or
    /// [`RequestResponsePattern`](super::RequestResponsePattern)'s bounded
    /// pool was busy (and its queue full): the call was refused at once.
    PoolFull,
    /// The caller waited in a queue (bulkhead or rate limiter) for its
    /// whole `queue_timeout` without being admitted.
    QueueTimeout {
        /// How long it waited.
        waited: Duration,
    },
    /// The rate limiter refused the call (its queue was full, or the wait
    /// would exceed `queue_timeout`).
    RateLimited {
        /// How long until the call would be admitted.
        retry_after: Duration,
    },
    /// The call did not finish within its timeout.
    TimedOut {
        /// The timeout that was exceeded.
        after: Duration,
    },
    /// Every attempt failed.
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        last: Box<Error<E>>,
    },
    /// The pattern was disposed.
    Disposed,
    /// The closure panicked on a worker thread (a [`Timeout`](super::Timeout)'s
    /// pool); the pattern carries on.
    Panicked {
        /// The panic message, when the payload was a string.
        message: Arc<str>,
    },
    /// A configuration value was invalid.
    InvalidConfig(ConfigError),
    /// A registry already holds a live instance of that name (see
    /// [`CircuitBreaker::new`](super::CircuitBreaker::new) and
    /// `get_or_create` for the rules).
    NameTaken {
        /// The name.
        name: Arc<str>,
    },
    /// A pattern shared between processes could not open its region
    /// (feature `shared-memory`; see [`crate::shared`]).
    #[cfg(feature = "shared-memory")]
    Shared(crate::shared::SharedError),
    /// A Redis-backed pattern could not be made, found another config in
    /// Redis, or refused a call because Redis did not answer and its
    /// fallback is `FailClosed` (feature `redis`; see [`crate::redis`]).
    #[cfg(feature = "redis")]
    Redis(crate::redis::RedisError),
}

/// Which variant an [`Error`] is, without its data (see [`Error::kind`]):
/// what a [`Fallback`](super::Fallback) chooses its errors by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::Inner`]: the call's own error.
    Inner,
    /// [`Error::BreakerOpen`].
    BreakerOpen,
    /// [`Error::BulkheadFull`].
    BulkheadFull,
    /// [`Error::PoolFull`].
    PoolFull,
    /// [`Error::QueueTimeout`].
    QueueTimeout,
    /// [`Error::RateLimited`].
    RateLimited,
    /// [`Error::TimedOut`].
    TimedOut,
    /// [`Error::RetriesExhausted`].
    RetriesExhausted,
    /// [`Error::Disposed`].
    Disposed,
    /// [`Error::Panicked`].
    Panicked,
    /// Any other variant: [`Error::InvalidConfig`], [`Error::NameTaken`]
    /// and the errors of the shared-memory and Redis features.
    Other,
}

impl<E> Error<E> {
    /// Which variant this is.
    ///
    /// ```
    /// use stockade::blocking::{Error, ErrorKind};
    ///
    /// assert_eq!(Error::Inner("boom").kind(), ErrorKind::Inner);
    /// assert_eq!(Error::<()>::BulkheadFull.kind(), ErrorKind::BulkheadFull);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Inner(_) => ErrorKind::Inner,
            Error::BreakerOpen { .. } => ErrorKind::BreakerOpen,
            Error::BulkheadFull => ErrorKind::BulkheadFull,
            Error::PoolFull => ErrorKind::PoolFull,
            Error::QueueTimeout { .. } => ErrorKind::QueueTimeout,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::TimedOut { .. } => ErrorKind::TimedOut,
            Error::RetriesExhausted { .. } => ErrorKind::RetriesExhausted,
            Error::Disposed => ErrorKind::Disposed,
            Error::Panicked { .. } => ErrorKind::Panicked,
            _ => ErrorKind::Other,
        }
    }

    /// The closure's own error, if this is one (looking through
    /// [`Error::RetriesExhausted`]).
    pub fn inner(&self) -> Option<&E> {
        match self {
            Error::Inner(e) => Some(e),
            Error::RetriesExhausted { last, .. } => last.inner(),
            _ => None,
        }
    }

    /// The closure's own error, if this is one (looking through
    /// [`Error::RetriesExhausted`]).
    pub fn into_inner(self) -> Option<E> {
        match self {
            Error::Inner(e) => Some(e),
            Error::RetriesExhausted { last, .. } => last.into_inner(),
            _ => None,
        }
    }

    /// `true` if a protection layer refused or stopped the call, rather than
    /// the call failing by itself.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Error::BreakerOpen { .. }
                | Error::BulkheadFull
                | Error::PoolFull
                | Error::QueueTimeout { .. }
                | Error::RateLimited { .. }
        )
    }

    /// When a new attempt may succeed, if the refusal says.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            // Forced open: open until reset, no time is meaningful.
            Error::BreakerOpen {
                state: BreakerState::ForcedOpen,
                ..
            } => None,
            Error::BreakerOpen { retry_after, .. } | Error::RateLimited { retry_after } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    /// How a [`Retry`](super::Retry) treats this error when a pattern
    /// nested inside it returned it: the least wait before the next
    /// attempt, or `None` if the retry returns it at once.
    ///
    /// * [`Error::TimedOut`] (a timeout per attempt): retried,
    ///   `Some(Duration::ZERO)`.
    /// * A refusal that says when to come back ([`Error::BreakerOpen`],
    ///   [`Error::RateLimited`]; see [`retry_after`](Self::retry_after)):
    ///   retried no sooner than `retry_after`, if that is at most
    ///   `max_delay`.
    /// * Everything else (a full bulkhead or queue, a nested retry that
    ///   already gave up, a forced-open breaker, a disposed pattern, …):
    ///   `None`. The closure's own error ([`Error::Inner`]) is also `None`
    ///   here: whether it is retried is the retry's matchers' call.
    ///
    /// The retry's schedule then waits `max(its own delay, this floor)`
    /// ([`BackoffSchedule::next_delay_at_least`](crate::backoff::BackoffSchedule::next_delay_at_least)).
    /// The Python module applies the same rule to its exceptions.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use stockade::blocking::Error;
    ///
    /// let max_delay = Duration::from_secs(30);
    /// let limited: Error = Error::RateLimited { retry_after: Duration::from_secs(2) };
    /// assert_eq!(limited.retry_floor(max_delay), Some(Duration::from_secs(2)));
    /// let too_long: Error = Error::RateLimited { retry_after: Duration::from_secs(60) };
    /// assert_eq!(too_long.retry_floor(max_delay), None);
    /// assert_eq!(Error::<()>::BulkheadFull.retry_floor(max_delay), None);
    /// ```
    pub fn retry_floor(&self, max_delay: Duration) -> Option<Duration> {
        match self {
            Error::TimedOut { .. } => Some(Duration::ZERO),
            _ => self.retry_after().filter(|after| *after <= max_delay),
        }
    }

    /// The HTTP status this error answers with: the one mapping the
    /// request-response pattern (a handler's own error status aside) and
    /// the `tower` layers' users share.
    ///
    /// | error | status |
    /// |---|---|
    /// | [`Error::RateLimited`] | 429 Too Many Requests |
    /// | [`Error::BreakerOpen`], [`Error::BulkheadFull`], [`Error::PoolFull`], [`Error::QueueTimeout`], [`Error::Disposed`] | 503 Service Unavailable |
    /// | [`Error::TimedOut`] | 504 Gateway Timeout |
    /// | [`Error::RetriesExhausted`] | the last attempt's status |
    /// | [`Error::Inner`], [`Error::Panicked`], [`Error::InvalidConfig`], [`Error::NameTaken`] | 500 Internal Server Error |
    /// | `Error::Shared` (feature `shared-memory`) | 500 |
    /// | `Error::Redis`: Redis did not answer and the pattern fails closed (feature `redis`) | 503 |
    /// | `Error::Redis`: any other (feature `redis`) | 500 |
    ///
    /// The status line only: a refusal's [`retry_after`](Self::retry_after)
    /// is the `Retry-After` value to send with a 429 or 503.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use stockade::blocking::Error;
    ///
    /// let limited: Error<&str> = Error::RateLimited { retry_after: Duration::from_secs(1) };
    /// assert_eq!(limited.http_status(), 429);
    /// assert_eq!(Error::<&str>::TimedOut { after: Duration::from_secs(2) }.http_status(), 504);
    /// let gave_up = Error::RetriesExhausted { attempts: 3, last: Box::new(Error::<&str>::BulkheadFull) };
    /// assert_eq!(gave_up.http_status(), 503);
    /// assert_eq!(Error::Inner("boom").http_status(), 500);
    /// ```
    pub fn http_status(&self) -> u16 {
        match self {
            Error::RateLimited { .. } => 429,
            Error::BreakerOpen { .. }
            | Error::BulkheadFull
            | Error::PoolFull
            | Error::QueueTimeout { .. }
            | Error::Disposed => 503,
            Error::TimedOut { .. } => 504,
            Error::RetriesExhausted { last, .. } => last.http_status(),
            Error::Inner(_)
            | Error::Panicked { .. }
            | Error::InvalidConfig(_)
            | Error::NameTaken { .. } => 500,
            #[cfg(feature = "shared-memory")]
            Error::Shared(_) => 500,
            #[cfg(feature = "redis")]
            Error::Redis(crate::redis::RedisError::Unavailable { .. }) => 503,
            #[cfg(feature = "redis")]
            Error::Redis(_) => 500,
        }
    }

    /// Maps the closure's error type, keeping every other variant.
    pub fn map_inner<F>(self, f: impl FnOnce(E) -> F) -> Error<F> {
        match self {
            Error::Inner(e) => Error::Inner(f(e)),
            Error::BreakerOpen { state, retry_after } => Error::BreakerOpen { state, retry_after },
            Error::BulkheadFull => Error::BulkheadFull,
            Error::PoolFull => Error::PoolFull,
            Error::QueueTimeout { waited } => Error::QueueTimeout { waited },
            Error::RateLimited { retry_after } => Error::RateLimited { retry_after },
            Error::TimedOut { after } => Error::TimedOut { after },
            Error::RetriesExhausted { attempts, last } => Error::RetriesExhausted {
                attempts,
                last: Box::new(last.map_inner(f)),
            },
            Error::Disposed => Error::Disposed,
            Error::Panicked { message } => Error::Panicked { message },
            Error::InvalidConfig(c) => Error::InvalidConfig(c),
            Error::NameTaken { name } => Error::NameTaken { name },
            #[cfg(feature = "shared-memory")]
            Error::Shared(e) => Error::Shared(e),
            #[cfg(feature = "redis")]
            Error::Redis(e) => Error::Redis(e),
        }
    }
}

impl<E> From<ConfigError> for Error<E> {
    fn from(e: ConfigError) -> Self {
        Error::InvalidConfig(e)
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Inner(e) => e.fmt(f),
            Error::BreakerOpen { state, retry_after } => {
                write!(f, "circuit breaker is {}", state.as_words())?;
                if *state == BreakerState::ForcedOpen {
                    Ok(())
                } else {
                    write!(f, "; retry after {}", HumanDuration(*retry_after))
                }
            }
            Error::BulkheadFull => f.write_str("bulkhead is full"),
            Error::PoolFull => f.write_str("every worker is busy"),
            Error::QueueTimeout { waited } => {
                write!(
                    f,
                    "gave up after waiting {} in the queue",
                    HumanDuration(*waited)
                )
            }
            Error::RateLimited { retry_after } => {
                if *retry_after == Duration::MAX {
                    f.write_str("rate limited; more permits than the burst were asked for")
                } else {
                    write!(
                        f,
                        "rate limited; retry after {}",
                        HumanDuration(*retry_after)
                    )
                }
            }
            Error::TimedOut { after } => write!(f, "timed out after {}", HumanDuration(*after)),
            Error::RetriesExhausted { attempts, last } => {
                write!(f, "gave up after {attempts} attempts: {last}")
            }
            Error::Disposed => f.write_str("the pattern was disposed"),
            Error::Panicked { message } => write!(f, "the call panicked: {message}"),
            Error::InvalidConfig(e) => e.fmt(f),
            #[cfg(feature = "shared-memory")]
            Error::Shared(e) => e.fmt(f),
            #[cfg(feature = "redis")]
            Error::Redis(e) => e.fmt(f),
            Error::NameTaken { name } => {
                write!(
                    f,
                    "a pattern named `{name}` is already registered (dispose it first, \
                     or share it with `get_or_create` and the same config)"
                )
            }
        }
    }
}

/// Implemented for any closure error that is `Debug + Display` (a `&str`,
/// a `String`, any error type), so `?` turns an `Error<E>` into a
/// `Box<dyn std::error::Error>`. The closure's own error is shown by
/// `Display`; reach it with [`Error::inner`].
impl<E: fmt::Debug + fmt::Display> core::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::InvalidConfig(e) => Some(e),
            #[cfg(feature = "shared-memory")]
            Error::Shared(e) => Some(e),
            #[cfg(feature = "redis")]
            Error::Redis(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(feature = "shared-memory")]
impl<E> From<crate::shared::SharedError> for Error<E> {
    /// An invalid config stays [`Error::InvalidConfig`]; everything else is
    /// [`Error::Shared`].
    fn from(e: crate::shared::SharedError) -> Self {
        match e {
            crate::shared::SharedError::InvalidConfig(c) => Error::InvalidConfig(c),
            other => Error::Shared(other),
        }
    }
}

#[cfg(feature = "redis")]
impl<E> From<crate::redis::RedisError> for Error<E> {
    /// An invalid config stays [`Error::InvalidConfig`]; everything else is
    /// [`Error::Redis`].
    fn from(e: crate::redis::RedisError) -> Self {
        match e {
            crate::redis::RedisError::InvalidConfig(c) => Error::InvalidConfig(c),
            other => Error::Redis(other),
        }
    }
}
