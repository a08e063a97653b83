//! [`stockade_status`]: what every fallible function returns.

use core::ffi::c_char;

/// The result of every fallible `stockade_` function.
///
/// The numbers are part of the ABI: a number is never reused for another
/// meaning, and new statuses get new numbers. `stockade_status_str` gives
/// each one's message. Ranges: 0–9 calling errors common to every
/// function, 10–19 circuit breaker, 20–29 rate limiter, 30–39 bulkhead,
/// 40–49 retry and timeout, 50–59 handles and registries, 60–69 objects
/// shared between processes (`_new_shared`, `stockade_shared_unlink`;
/// `stockade_shared_last_error` gives the full message of their last
/// failure on the calling thread), 70–79 objects a fleet shares through
/// Redis (`_new_redis`, and calls on their handles;
/// `stockade_redis_last_error` gives the full message).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum stockade_status {
    /// Success: the out-parameters hold the results.
    Ok = 0,
    /// A pointer argument that must not be NULL was NULL. Nothing was done.
    NullArgument = 1,
    /// A config value is invalid; the optional `stockade_config_error`
    /// out-parameter names the option. Nothing was created.
    InvalidConfig = 2,
    /// A non-pointer argument is out of range (e.g. an unknown enum
    /// number). Nothing was done.
    InvalidArgument = 3,
    /// Caller-provided storage is smaller than the type's `_SIZE` constant.
    StorageTooSmall = 4,
    /// Caller-provided storage is not aligned to the type's `_ALIGN`
    /// constant.
    StorageMisaligned = 5,
    /// A bug inside Stockade was caught at the boundary (a Rust panic);
    /// the handle is still usable. Please report it.
    InternalError = 6,
    /// A caller-provided buffer is too small for the result; the size
    /// out-parameter holds the number of bytes needed (the one status on
    /// which an out-parameter is written). Nothing was written to the
    /// buffer.
    BufferTooSmall = 7,
    /// The circuit breaker is open (or forced open): the call was not made.
    BreakerOpen = 10,
    /// The circuit breaker is half-open and all its probes are taken.
    BreakerHalfOpenFull = 11,
    /// The permit token was already reported (or released, or cancelled);
    /// the second report changed nothing.
    TokenAlreadyUsed = 12,
    /// The circuit breaker changed state since the token's call was
    /// admitted: the verdict was not counted.
    TokenStale = 13,
    /// The rate limiter has no permit now (and the caller chose not to
    /// wait, or the wait would exceed the queue timeout).
    RateLimited = 20,
    /// The waiting queue is full.
    QueueFull = 21,
    /// The caller waited in the queue for `queue_timeout` without getting
    /// a permit.
    QueueTimeout = 22,
    /// More permits were asked for at once than the limiter can ever grant
    /// (above its burst).
    PermitsExceedBurst = 23,
    /// A reservation cannot be cancelled: it did not wait, its time has
    /// come, or a later booking came after it. The permits stay booked.
    NotCancellable = 24,
    /// The bulkhead is full: `max_concurrent` calls are running.
    BulkheadFull = 30,
    /// The operation did not finish within its timeout.
    TimedOut = 40,
    /// Every attempt allowed by the retry policy failed (or its time
    /// budget ran out); for a backoff schedule: no further delay.
    RetriesExhausted = 41,
    /// The retry budget has no token for another retry.
    BudgetExhausted = 42,
    /// The callback reported failure (and no retry or fallback applied).
    CallbackFailed = 43,
    /// The handle was disposed: it rejects every call.
    Disposed = 50,
    /// No handle of that name is registered.
    NotFound = 51,
    /// A live handle of that name is already registered.
    NameTaken = 52,
    /// Objects shared between processes are not available in this build
    /// (a platform other than Linux, or a library built without the
    /// `shared-memory` feature). Nothing was done.
    SharedUnsupported = 60,
    /// The shared object exists with another config than the one given
    /// (the message shows both); use the same config, or set
    /// `adopt_stored_config`. Nothing was opened.
    SharedConfigMismatch = 61,
    /// The file at the shared object's path was not used: a symbolic link,
    /// not a regular file, owned by another user (or group, with
    /// `group_access`), or shorter than its header says. Nothing was
    /// opened.
    SharedRefused = 62,
    /// The shared object's file was written by an incompatible build or
    /// layout, or in another time namespace (the message names the field
    /// and both values). Nothing was opened.
    SharedIncompatible = 63,
    /// A system call on the shared object's file failed (open, map, lock,
    /// remove; the message names the call, the path and the system's
    /// error).
    SharedIo = 64,
    /// Every owner slot of a shared bulkhead is held by a live process
    /// (raise `max_processes`).
    SharedNoOwnerSlot = 65,
    /// Another process kept the shared object's file locked (rebuilding
    /// it) for longer than `open_timeout_ms`.
    SharedBusy = 66,
    /// Redis did not answer (a timeout, a refused or dropped connection, a
    /// server error, or the connection's guard breaker open) and the
    /// object's fallback is `STOCKADE_REDIS_FALLBACK_CLOSED`: the call was
    /// refused without running.
    RedisUnavailable = 70,
    /// The config stored in Redis for this object differs from the one
    /// given (the message shows the key and both); use the same config,
    /// delete the key, or set `adopt_stored_config`. The call was not made.
    RedisConfigMismatch = 71,
    /// The Redis URL cannot be used (the message says why; a password in
    /// it is shown as `***`). Nothing was created.
    RedisInvalidUrl = 72,
    /// A `stockade_redis_options` value is out of range (the message names
    /// the field, the value and the rule). Nothing was created.
    RedisInvalidOption = 73,
    /// Objects shared through Redis are not available in this build (a
    /// library built without the `redis` feature). Nothing was done.
    RedisUnsupported = 74,
}

impl stockade_status {
    /// The message, NUL-terminated, static.
    pub const fn message(self) -> &'static core::ffi::CStr {
        match self {
            stockade_status::Ok => c"ok",
            stockade_status::NullArgument => c"a required pointer argument was NULL",
            stockade_status::InvalidConfig => c"invalid configuration",
            stockade_status::InvalidArgument => c"an argument is out of range",
            stockade_status::StorageTooSmall => c"storage is smaller than the type's _SIZE",
            stockade_status::StorageMisaligned => c"storage is not aligned to the type's _ALIGN",
            stockade_status::InternalError => {
                c"internal error (a bug in stockade; please report it)"
            }
            stockade_status::BufferTooSmall => {
                c"the buffer is too small (the size out-parameter says how many bytes are needed)"
            }
            stockade_status::BreakerOpen => c"circuit breaker is open",
            stockade_status::BreakerHalfOpenFull => {
                c"circuit breaker is half-open and all probes are taken"
            }
            stockade_status::TokenAlreadyUsed => c"permit token was already reported",
            stockade_status::TokenStale => {
                c"permit token is stale: the breaker changed state since the call was admitted"
            }
            stockade_status::RateLimited => c"rate limit reached",
            stockade_status::QueueFull => c"waiting queue is full",
            stockade_status::QueueTimeout => c"timed out waiting in the queue",
            stockade_status::PermitsExceedBurst => {
                c"more permits asked for at once than the burst allows"
            }
            stockade_status::NotCancellable => {
                c"reservation cannot be cancelled: it is ready, did not wait, or a later booking came after it"
            }
            stockade_status::BulkheadFull => c"bulkhead is full",
            stockade_status::TimedOut => c"operation timed out",
            stockade_status::RetriesExhausted => c"retries exhausted",
            stockade_status::BudgetExhausted => c"retry budget exhausted",
            stockade_status::CallbackFailed => c"callback reported failure",
            stockade_status::Disposed => c"handle was disposed",
            stockade_status::NotFound => c"no handle of that name is registered",
            stockade_status::NameTaken => c"a live handle of that name is already registered",
            stockade_status::SharedUnsupported => {
                c"objects shared between processes are not supported in this build"
            }
            stockade_status::SharedConfigMismatch => {
                c"the shared object exists with another config"
            }
            stockade_status::SharedRefused => {
                c"the shared object's file was refused (symbolic link, not a regular file, wrong owner or truncated)"
            }
            stockade_status::SharedIncompatible => {
                c"the shared object's file was written by an incompatible build or in another time namespace"
            }
            stockade_status::SharedIo => c"a system call on the shared object's file failed",
            stockade_status::SharedNoOwnerSlot => {
                c"every owner slot of the shared bulkhead is held by a live process"
            }
            stockade_status::SharedBusy => {
                c"the shared object's file stayed locked by another process past the open timeout"
            }
            stockade_status::RedisUnavailable => {
                c"Redis did not answer and the fallback is closed: the call was refused"
            }
            stockade_status::RedisConfigMismatch => c"the object in Redis has another config",
            stockade_status::RedisInvalidUrl => c"the Redis URL cannot be used",
            stockade_status::RedisInvalidOption => c"a Redis option is out of range",
            stockade_status::RedisUnsupported => {
                c"objects shared through Redis are not supported in this build"
            }
        }
    }

    /// Every status, in number order (tests and `stockade_status_str`).
    pub(crate) const ALL: [stockade_status; 37] = [
        stockade_status::Ok,
        stockade_status::NullArgument,
        stockade_status::InvalidConfig,
        stockade_status::InvalidArgument,
        stockade_status::StorageTooSmall,
        stockade_status::StorageMisaligned,
        stockade_status::InternalError,
        stockade_status::BufferTooSmall,
        stockade_status::BreakerOpen,
        stockade_status::BreakerHalfOpenFull,
        stockade_status::TokenAlreadyUsed,
        stockade_status::TokenStale,
        stockade_status::RateLimited,
        stockade_status::QueueFull,
        stockade_status::QueueTimeout,
        stockade_status::PermitsExceedBurst,
        stockade_status::NotCancellable,
        stockade_status::BulkheadFull,
        stockade_status::TimedOut,
        stockade_status::RetriesExhausted,
        stockade_status::BudgetExhausted,
        stockade_status::CallbackFailed,
        stockade_status::Disposed,
        stockade_status::NotFound,
        stockade_status::NameTaken,
        stockade_status::SharedUnsupported,
        stockade_status::SharedConfigMismatch,
        stockade_status::SharedRefused,
        stockade_status::SharedIncompatible,
        stockade_status::SharedIo,
        stockade_status::SharedNoOwnerSlot,
        stockade_status::SharedBusy,
        stockade_status::RedisUnavailable,
        stockade_status::RedisConfigMismatch,
        stockade_status::RedisInvalidUrl,
        stockade_status::RedisInvalidOption,
        stockade_status::RedisUnsupported,
    ];

    /// The status numbered `n`, if there is one.
    pub const fn from_u32(n: u32) -> Option<stockade_status> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i] as u32 == n {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }
}

/// The message of a status: a static NUL-terminated English string
/// ("circuit breaker is open"); `"unknown status"` for a number that is no
/// status.
///
/// - Ownership: the string is static; do not free it.
/// - Thread safety: safe from any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_status_str(status: u32) -> *const c_char {
    match stockade_status::from_u32(status) {
        Some(s) => s.message().as_ptr(),
        None => c"unknown status".as_ptr(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_and_every_status_has_a_message() {
        assert_eq!(stockade_status::Ok as u32, 0);
        assert_eq!(stockade_status::NullArgument as u32, 1);
        assert_eq!(stockade_status::InvalidConfig as u32, 2);
        assert_eq!(stockade_status::BreakerOpen as u32, 10);
        assert_eq!(stockade_status::NotFound as u32, 51);
        assert_eq!(stockade_status::SharedUnsupported as u32, 60);
        assert_eq!(stockade_status::SharedBusy as u32, 66);
        assert_eq!(stockade_status::RedisUnavailable as u32, 70);
        assert_eq!(stockade_status::RedisUnsupported as u32, 74);
        let mut last = None;
        for s in stockade_status::ALL {
            assert!(last < Some(s as u32), "ALL is in number order");
            last = Some(s as u32);
            assert_eq!(stockade_status::from_u32(s as u32), Some(s));
            assert!(!s.message().to_bytes().is_empty());
        }
        assert_eq!(stockade_status::BufferTooSmall as u32, 7);
        assert_eq!(stockade_status::from_u32(8), None);
        assert_eq!(stockade_status::from_u32(u32::MAX), None);
    }
}
