//! The bulkhead (core tier): the core's lock-free `Bulkhead` (a
//! concurrency limit) in caller storage, with plain-data permit tokens.

use core::ffi::c_void;

use stockade_core::bulkhead::{
    Bulkhead, BulkheadConfig, BulkheadCounts, BulkheadToken, RawBulkheadConfig,
};

use crate::boundary::{Out, arg, arg_mut, storage};
use crate::config_error::{self, stockade_config_error};
use crate::status::stockade_status;

/// Bulkhead options (the core's `RawBulkheadConfig`): start from
/// `stockade_bulkhead_config_default()` and change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct stockade_bulkhead_config {
    /// The longest a caller waits in the queue, ms (default 30000; blocking
    /// tier); 0 = never wait.
    pub queue_timeout_ms: u64,
    /// Calls running at once (default 10); at least 1.
    pub max_concurrent: u32,
    /// Callers that may wait for a permit (default 100; blocking tier); 0 =
    /// no queue.
    pub max_queue: u32,
}

impl From<stockade_bulkhead_config> for RawBulkheadConfig {
    fn from(c: stockade_bulkhead_config) -> Self {
        RawBulkheadConfig {
            queue_timeout_ms: c.queue_timeout_ms,
            max_concurrent: c.max_concurrent,
            max_queue: c.max_queue,
        }
    }
}

impl stockade_bulkhead_config {
    /// The validated core config.
    pub(crate) fn to_core(self) -> Result<BulkheadConfig, stockade_core::ConfigError> {
        BulkheadConfig::try_from(RawBulkheadConfig::from(self))
    }
}

/// A held permit (the core's `BulkheadToken`): plain data owned by the
/// caller (one thread at a time). Release it once with
/// `stockade_bulkhead_release`; a permit never released is lost for good.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct stockade_bulkhead_token {
    /// Permits in use right after the grant (this one included).
    pub in_use: u32,
    /// Callers queued right after the grant.
    pub queued: u32,
    /// 1 once released through this token (a second release is refused).
    pub used: u32,
}

/// Bytes of storage a `stockade_bulkhead` needs (every supported target).
pub const STOCKADE_BULKHEAD_SIZE: usize = 24;
/// Alignment a `stockade_bulkhead`'s storage needs.
pub const STOCKADE_BULKHEAD_ALIGN: usize = 8;

assert_storage_fits!(Bulkhead, STOCKADE_BULKHEAD_SIZE, STOCKADE_BULKHEAD_ALIGN);
const _: () =
    assert!(Bulkhead::SIZE <= STOCKADE_BULKHEAD_SIZE && Bulkhead::ALIGN <= STOCKADE_BULKHEAD_ALIGN);

/// A lock-free bulkhead (the core's `Bulkhead`) in caller storage. Any
/// number of threads (and interrupt handlers) may use it at once.
pub struct stockade_bulkhead {
    _opaque: [u8; 0],
}

/// The spec's defaults: 10 concurrent, a queue of 100, 30000 ms queue
/// timeout.
///
/// - Thread safety: any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_bulkhead_config_default() -> stockade_bulkhead_config {
    let d = RawBulkheadConfig::DEFAULT;
    stockade_bulkhead_config {
        queue_timeout_ms: d.queue_timeout_ms,
        max_concurrent: d.max_concurrent,
        max_queue: d.max_queue,
    }
}

/// Validates `config` and makes an empty bulkhead in `storage`
/// (`STOCKADE_BULKHEAD_SIZE` bytes aligned to `STOCKADE_BULKHEAD_ALIGN`);
/// `*out` = the bulkhead.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`storage`, `config`, `out`);
///   `INVALID_CONFIG` (`max_concurrent` 0, or counts above the layout's
///   range; `*error` names it if not NULL); `STORAGE_TOO_SMALL`;
///   `STORAGE_MISALIGNED`.
/// - Ownership: the caller owns the storage; no cleanup is needed.
/// - Thread safety: share the bulkhead freely. Blocks: no.
///
/// # Safety
///
/// `storage` writable for `storage_size` bytes; other pointers valid or
/// NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_init(
    storage: *mut c_void,
    storage_size: usize,
    config: *const stockade_bulkhead_config,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_bulkhead,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let config = *unsafe { arg(config) }?;
        let out = Out::new(out)?;
        let slot = self::storage::<Bulkhead>(storage, storage_size, STOCKADE_BULKHEAD_SIZE)?;
        let result = config.to_core().and_then(Bulkhead::new);
        // SAFETY: `error` valid or NULL.
        let bulkhead = unsafe { config_error::check(result, error) }?;
        // SAFETY: `slot` checked, writable; `out` valid for writes.
        unsafe {
            slot.write(bulkhead);
            out.write(slot.cast());
        }
        Ok(())
    })
}

/// # Safety
///
/// A non-NULL `b` must come from `stockade_bulkhead_init`.
unsafe fn bulkhead<'a>(b: *const stockade_bulkhead) -> Result<&'a Bulkhead, stockade_status> {
    // SAFETY: function contract.
    unsafe { arg(b.cast::<Bulkhead>()) }
}

/// Takes a permit if one is free (never waits; the blocking tier's
/// `stockade_bulkhead_handle_acquire` waits in a FIFO queue).
///
/// - Statuses: `OK` (`*out_token` holds the permit: release it once);
///   `BULKHEAD_FULL` (all permits held, or callers queued ahead);
///   `NULL_ARGUMENT`.
/// - Thread safety: any thread; lock-free (one compare-and-swap).
///   Blocks: no.
///
/// # Safety
///
/// `bulkhead` from `stockade_bulkhead_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_try_acquire(
    bulkhead: *const stockade_bulkhead,
    out_token: *mut stockade_bulkhead_token,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { self::bulkhead(bulkhead) }?;
        let out = Out::new(out_token)?;
        let permit = b.try_acquire().map_err(|_| stockade_status::BulkheadFull)?;
        let granted = permit.into_token().granted();
        // SAFETY: valid for writes.
        unsafe {
            out.write(stockade_bulkhead_token {
                in_use: granted.in_use,
                queued: granted.queued,
                used: 0,
            })
        };
        Ok(())
    })
}

/// Returns the permit of `token` and marks the token used.
///
/// - Statuses: `OK`; `TOKEN_ALREADY_USED` (released through this token
///   already, or no permit is in use at all: nothing changed);
///   `NULL_ARGUMENT`. A copy of a token released twice while other permits
///   are held cannot be told apart (the core keeps no per-permit state):
///   it returns another holder's permit; the counts never underflow.
/// - Thread safety: any thread for the bulkhead; the token is the
///   caller's. Blocks: no.
///
/// # Safety
///
/// `bulkhead` from `stockade_bulkhead_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_release(
    bulkhead: *const stockade_bulkhead,
    token: *mut stockade_bulkhead_token,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { self::bulkhead(bulkhead) }?;
        // SAFETY: function contract.
        let token = unsafe { arg_mut(token) }?;
        if token.used != 0 {
            return Err(stockade_status::TokenAlreadyUsed);
        }
        let core = BulkheadToken::from_counts(BulkheadCounts {
            in_use: token.in_use,
            queued: token.queued,
        });
        b.release(core)
            .map_err(|_| stockade_status::TokenAlreadyUsed)?;
        token.used = 1;
        Ok(())
    })
}

/// `*out_in_use`, `*out_queued`, `*out_available` (each optional) =
/// permits held, callers queued, permits free now.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`bulkhead`). Thread safety: any
///   thread (each count is one load). Blocks: no.
///
/// # Safety
///
/// `bulkhead` from `stockade_bulkhead_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_counts(
    bulkhead: *const stockade_bulkhead,
    out_in_use: *mut u32,
    out_queued: *mut u32,
    out_available: *mut u32,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { self::bulkhead(bulkhead) }?;
        for (ptr, value) in [
            (out_in_use, b.in_use()),
            (out_queued, b.queued()),
            (out_available, b.available()),
        ] {
            if let Ok(out) = Out::new(ptr) {
                // SAFETY: non-NULL, valid for writes.
                unsafe { out.write(value) };
            }
        }
        Ok(())
    })
}
