//! The protection of a C request-response pattern: any `stockade_policy`
//! (a pattern's view or a pipeline) as the core's [`Policy`], so that the
//! core's `RequestResponsePattern` runs its attempts under it and maps its
//! refusals to 429/503/504 exactly as it does for Rust.
//!
//! A `stockade_policy` is a [`DynPolicy`]: it runs a `'static` call,
//! possibly on another thread (a timeout stage). The pattern's attempt
//! borrows the pattern and the request, so it is lent to the dyn pipeline
//! for the duration of [`Policy::run`] only: through a [`Scope`] that
//! `run` closes before it returns, waiting for an attempt that is running
//! and turning later calls away. A timeout stage in the policy therefore
//! behaves as Rust's cooperative timeout stage: a late attempt's result
//! becomes a 504, but the request returns only once that attempt returned.

use core::fmt;
use std::boxed::Box;
use std::string::{String, ToString};
use std::sync::{Arc, Mutex, PoisonError};
use std::vec;
use std::vec::Vec;

use stockade_core::blocking::{
    BoxError, DynCall, DynPipeline, DynPolicy, DynResult, DynValue, Error, Next, Policy,
};

/// The policy of a C request-response pattern: the one from its config, or
/// none (every request runs one attempt).
#[derive(Clone, Default)]
pub(crate) struct CProtection(pub(crate) Option<Arc<dyn DynPolicy>>);

/// One attempt, type-erased: runs the pattern's attempt and keeps its
/// result, handing the dyn pipeline an index to it.
trait Attempt {
    fn attempt(&mut self) -> DynResult;
}

/// The pattern's attempt and the results of its runs, by index.
struct Attempts<R, E, F> {
    call: F,
    results: Vec<Option<Result<R, E>>>,
}

/// An attempt's own failure as the dyn pipeline sees it: its message (what
/// a retry's `retryable_errors` match) and where its value is kept.
#[derive(Debug)]
struct AttemptFailed {
    index: usize,
    message: String,
}

impl fmt::Display for AttemptFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl core::error::Error for AttemptFailed {}

impl<R, E: fmt::Display, F: FnMut() -> Result<R, Error<E>>> Attempt for Attempts<R, E, F> {
    fn attempt(&mut self) -> DynResult {
        let index = self.results.len();
        match (self.call)() {
            Ok(value) => {
                self.results.push(Some(Ok(value)));
                Ok(Box::new(index) as DynValue)
            }
            // The pattern's other errors (its deadline, a full pool, a
            // disposed pattern) keep their type: the policy's stages treat
            // them as they do in Rust.
            Err(error) => Err(error.map_inner(|inner| {
                let message = inner.to_string();
                self.results.push(Some(Err(inner)));
                Box::new(AttemptFailed { index, message }) as BoxError
            })),
        }
    }
}

/// A lent attempt: `*mut dyn Attempt` with its lifetime erased. Only used
/// while the [`Scope`] holding it is open (see there).
struct Lent(*mut (dyn Attempt + 'static));

// SAFETY: a `Lent` is only dereferenced under its scope's lock, while
// `CProtection::run` (which owns the attempt) waits for the lock before it
// returns. The attempt may then run on a timeout stage's worker: that is
// sound for the only call this crate passes, the request-response pattern's
// attempt over byte payloads, which borrows only `Sync` data (the pattern,
// the shared request) and yields `Send` values (a `Response<Vec<u8>>`, its
// failure). `CProtection` is private to this crate.
unsafe impl Send for Lent {}

/// Where the dyn pipeline finds the attempt: `Some` while `run` is
/// running, `None` once it returned.
struct Scope {
    lent: Mutex<Option<Lent>>,
}

/// The last stage of the per-request dyn pipeline: runs the lent attempt
/// (never `next`: the attempt is the call).
struct AttemptStage(Arc<Scope>);

impl DynPolicy for AttemptStage {
    fn run_dyn(&self, _next: &Next) -> DynResult {
        let mut lent = self.0.lent.lock().unwrap_or_else(PoisonError::into_inner);
        match lent.as_mut() {
            // SAFETY: the scope is open, so the attempt is alive (its
            // owner's `run` has not returned: it waits for this lock), and
            // the lock makes this the only access to it.
            Some(Lent(attempt)) => unsafe { (**attempt).attempt() },
            // A late call (a timeout stage's abandoned work) after the
            // request got its response: nothing runs.
            None => Err(Error::Disposed),
        }
    }
}

/// Closes the scope when dropped (also on unwind): waits for a running
/// attempt, then turns later calls away.
struct Close(Arc<Scope>);

impl Drop for Close {
    fn drop(&mut self) {
        *self.0.lent.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Why the dyn pipeline's answer cannot be mapped back (not expected: only
/// the attempt stage makes values and inner errors).
fn lost<E>() -> Error<E> {
    Error::Panicked {
        message: Arc::from("the protection policy lost the attempt's result"),
    }
}

/// The attempt's own failure behind a dyn pipeline's inner error.
fn failure<R, E>(error: BoxError, results: &mut [Option<Result<R, E>>]) -> Error<E> {
    let Ok(failed) = error.downcast::<AttemptFailed>() else {
        return lost();
    };
    match results.get_mut(failed.index).and_then(Option::take) {
        Some(Err(inner)) => Error::Inner(inner),
        _ => lost(),
    }
}

/// The dyn pipeline's error as the pattern's error type.
fn map_back<R, E>(error: Error<BoxError>, results: &mut [Option<Result<R, E>>]) -> Error<E> {
    match error {
        Error::Inner(e) => failure(e, results),
        Error::RetriesExhausted { attempts, last } => Error::RetriesExhausted {
            attempts,
            last: Box::new(map_back(*last, results)),
        },
        Error::BreakerOpen { state, retry_after } => Error::BreakerOpen { state, retry_after },
        Error::BulkheadFull => Error::BulkheadFull,
        Error::PoolFull => Error::PoolFull,
        Error::QueueTimeout { waited } => Error::QueueTimeout { waited },
        Error::RateLimited { retry_after } => Error::RateLimited { retry_after },
        Error::TimedOut { after } => Error::TimedOut { after },
        Error::Disposed => Error::Disposed,
        Error::Panicked { message } => Error::Panicked { message },
        Error::InvalidConfig(c) => Error::InvalidConfig(c),
        Error::NameTaken { name } => Error::NameTaken { name },
        other => Error::Panicked {
            message: Arc::from(other.to_string()),
        },
    }
}

impl Policy for CProtection {
    fn run<R, E: fmt::Display, F>(&self, mut call: F) -> Result<R, Error<E>>
    where
        F: FnMut() -> Result<R, Error<E>>,
    {
        let Some(policy) = &self.0 else {
            return call();
        };
        let mut attempts = Attempts {
            call,
            results: Vec::new(),
        };
        let out = {
            let borrowed: *mut (dyn Attempt + '_) = &mut attempts;
            // SAFETY: only the lifetime bound changes (same pointer, same
            // vtable). The pointer is used only while the scope is open;
            // `Close` shuts it (waiting for a running attempt) before
            // `attempts` is used again or dropped, on every path out of
            // this block, unwinding included.
            let lent = unsafe {
                core::mem::transmute::<*mut (dyn Attempt + '_), *mut (dyn Attempt + 'static)>(
                    borrowed,
                )
            };
            let scope = Arc::new(Scope {
                lent: Mutex::new(Some(Lent(lent))),
            });
            let _close = Close(Arc::clone(&scope));
            let stages: Vec<Arc<dyn DynPolicy>> =
                vec![Arc::clone(policy), Arc::new(AttemptStage(scope))];
            // The attempt stage never calls on: this call is never made.
            let unused: DynCall = Arc::new(|| Ok(Box::new(()) as DynValue));
            DynPipeline::new(stages).execute_dyn(unused)
        };
        match out {
            Ok(value) => match value.downcast::<usize>() {
                Ok(index) => match attempts.results.get_mut(*index).and_then(Option::take) {
                    Some(Ok(value)) => Ok(value),
                    _ => Err(lost()),
                },
                Err(_) => Err(lost()),
            },
            Err(error) => Err(map_back(error, &mut attempts.results)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;
    use stockade_core::blocking::{CircuitBreaker, RateLimiter, Retry, RetryConfig};
    use stockade_core::breaker::BreakerConfig;
    use stockade_core::limiter::RateLimiterConfig;

    fn protection(policy: Arc<dyn DynPolicy>) -> CProtection {
        CProtection(Some(policy))
    }

    #[test]
    fn values_and_own_errors_come_back_typed() {
        let breaker =
            CircuitBreaker::unregistered("t", BreakerConfig::DEFAULT.with_failure_threshold(1))
                .unwrap();
        let p = protection(Arc::new(breaker));
        let ok: Result<u32, Error<&str>> = p.run(|| Ok(7));
        assert_eq!(ok.unwrap(), 7);
        let failed: Result<u32, Error<&str>> = p.run(|| Err(Error::Inner("down")));
        assert!(matches!(failed, Err(Error::Inner("down"))));
        // The breaker counted it and is open now: the call does not run.
        let mut ran = false;
        let refused: Result<u32, Error<&str>> = p.run(|| {
            ran = true;
            Ok(1)
        });
        assert!(matches!(refused, Err(Error::BreakerOpen { .. })));
        assert!(!ran);
    }

    #[test]
    fn a_retry_sees_each_attempt_and_returns_the_last() {
        let retry = Retry::unregistered(
            "t",
            RetryConfig::DEFAULT
                .with_max_attempts(3)
                .with_initial_delay(Duration::ZERO),
        )
        .unwrap();
        let p = protection(Arc::new(retry));
        let mut n = 0;
        let out: Result<u32, Error<String>> = p.run(|| {
            n += 1;
            Err(Error::Inner(format!("attempt {n}")))
        });
        assert_eq!(n, 3);
        match out {
            Err(Error::RetriesExhausted { attempts, last }) => {
                assert_eq!(attempts, 3);
                assert!(matches!(*last, Error::Inner(ref m) if m == "attempt 3"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_limiter_refusal_is_rate_limited() {
        let limiter = RateLimiter::unregistered(
            "t",
            RateLimiterConfig::DEFAULT
                .with_requests_per_period(1)
                .with_period(Duration::from_secs(3600))
                .with_queue_timeout(Duration::ZERO),
        )
        .unwrap();
        let p = protection(Arc::new(limiter));
        let first: Result<u32, Error<&str>> = p.run(|| Ok(1));
        assert_eq!(first.unwrap(), 1);
        let second: Result<u32, Error<&str>> = p.run(|| Ok(2));
        assert!(matches!(second, Err(Error::RateLimited { .. })));
    }

    #[test]
    fn without_a_policy_the_call_runs_once() {
        let mut n = 0;
        let out: Result<u32, Error<&str>> = CProtection(None).run(|| {
            n += 1;
            Ok(n)
        });
        assert_eq!((out.unwrap(), n), (1, 1));
    }
}
