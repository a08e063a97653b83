//! The retry budget (core tier): a shared token bucket that caps how many
//! retries a client adds (the core's `RetryBudget`), in caller storage.

use core::ffi::c_void;

use stockade_core::budget::{RetryBudget, RetryBudgetConfig};

use crate::boundary::{Out, arg, storage};
use crate::clock::{CClock, stockade_clock};
use crate::config_error::{self, stockade_config_error};
use crate::status::stockade_status;
use crate::time::millis;

/// Retry budget options: start from `stockade_retry_budget_config_default()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct stockade_retry_budget_config {
    /// Tokens each call deposits: the share of calls that may be retried
    /// (default 0.2). Finite, not negative.
    pub ratio: f64,
    /// Retries per second allowed whatever the traffic (default 10); 0 =
    /// none (the budget then never reads the clock). At most 1000000.
    pub min_retries_per_second: u32,
    /// Most tokens the bucket holds, and its initial balance (default
    /// 100); at least 1.
    pub max_tokens: u32,
}

impl From<stockade_retry_budget_config> for RetryBudgetConfig {
    fn from(c: stockade_retry_budget_config) -> Self {
        RetryBudgetConfig {
            ratio: c.ratio,
            min_retries_per_second: c.min_retries_per_second,
            max_tokens: c.max_tokens,
        }
    }
}

/// Bytes of storage a `stockade_retry_budget` needs (every supported target).
pub const STOCKADE_RETRY_BUDGET_SIZE: usize = 56;
/// Alignment a `stockade_retry_budget`'s storage needs.
pub const STOCKADE_RETRY_BUDGET_ALIGN: usize = 8;

assert_storage_fits!(
    RetryBudget,
    STOCKADE_RETRY_BUDGET_SIZE,
    STOCKADE_RETRY_BUDGET_ALIGN
);
const _: () = assert!(
    RetryBudget::SIZE <= STOCKADE_RETRY_BUDGET_SIZE
        && RetryBudget::ALIGN <= STOCKADE_RETRY_BUDGET_ALIGN
);

/// A retry budget (the core's `RetryBudget`) in caller storage: one atomic
/// word, lock-free; share it between every thread (and interrupt handler)
/// that retries calls to the same dependency.
pub struct stockade_retry_budget {
    _opaque: [u8; 0],
}

/// The defaults: ratio 0.2, 10 retries a second, 100 tokens.
///
/// - Thread safety: any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_retry_budget_config_default() -> stockade_retry_budget_config {
    let d = RetryBudgetConfig::DEFAULT;
    stockade_retry_budget_config {
        ratio: d.ratio,
        min_retries_per_second: d.min_retries_per_second,
        max_tokens: d.max_tokens,
    }
}

/// Validates `config` and makes a full budget in `storage`
/// (`STOCKADE_RETRY_BUDGET_SIZE` bytes aligned to
/// `STOCKADE_RETRY_BUDGET_ALIGN`); `*out` = the budget.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`storage`, `config`, `out`);
///   `INVALID_CONFIG` (`ratio` negative or not finite, `max_tokens` 0 or
///   too large, `min_retries_per_second` too large; `*error` filled if not
///   NULL); `STORAGE_TOO_SMALL`; `STORAGE_MISALIGNED`.
/// - Ownership: the caller owns the storage; no cleanup is needed.
/// - Thread safety: share the budget freely. Blocks: no.
///
/// # Safety
///
/// `storage` writable for `storage_size` bytes; other pointers valid or
/// NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_retry_budget_init(
    storage: *mut c_void,
    storage_size: usize,
    config: *const stockade_retry_budget_config,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_retry_budget,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let config = *unsafe { arg(config) }?;
        let out = Out::new(out)?;
        let slot = self::storage::<RetryBudget>(storage, storage_size, STOCKADE_RETRY_BUDGET_SIZE)?;
        // SAFETY: `error` valid or NULL.
        let budget = unsafe { config_error::check(RetryBudget::new(config.into()), error) }?;
        // SAFETY: `slot` checked for size and alignment, writable; `out`
        // valid for writes.
        unsafe {
            slot.write(budget);
            out.write(slot.cast());
        }
        Ok(())
    })
}

/// # Safety
///
/// A non-NULL `b` must come from `stockade_retry_budget_init`.
unsafe fn budget<'a>(b: *const stockade_retry_budget) -> Result<&'a RetryBudget, stockade_status> {
    // SAFETY: function contract.
    unsafe { arg(b.cast::<RetryBudget>()) }
}

/// Records a call (a first attempt): deposits `ratio` tokens.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`budget`, `clock` or its `now_ns`).
/// - Thread safety: any thread; lock-free. Blocks: no.
///
/// # Safety
///
/// `budget` from `stockade_retry_budget_init`; `clock` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_retry_budget_deposit(
    budget: *const stockade_retry_budget,
    clock: *const stockade_clock,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { self::budget(budget) }?;
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        b.deposit(&clock);
        Ok(())
    })
}

/// Asks for one retry: withdraws a token if there is one.
///
/// - Statuses: `OK` (retry); `BUDGET_EXHAUSTED` (do not retry; if
///   `retry_after_ms` is not NULL it is set to the time until the
///   per-second floor alone earns a token, or `UINT64_MAX` without a
///   floor); `NULL_ARGUMENT`.
/// - Thread safety: any thread; lock-free. Blocks: no.
///
/// # Safety
///
/// `budget` from `stockade_retry_budget_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_retry_budget_try_withdraw(
    budget: *const stockade_retry_budget,
    clock: *const stockade_clock,
    retry_after_ms: *mut u64,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { self::budget(budget) }?;
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        b.try_withdraw(&clock).map_err(|e| {
            if let Ok(out) = Out::new(retry_after_ms) {
                let ms = e.retry_after().map_or(u64::MAX, millis);
                // SAFETY: non-NULL, valid for writes (function contract).
                unsafe { out.write(ms) };
            }
            stockade_status::BudgetExhausted
        })
    })
}

/// `*out_tokens` = whole retries available now.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`.
/// - Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `budget` from `stockade_retry_budget_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_retry_budget_available(
    budget: *const stockade_retry_budget,
    clock: *const stockade_clock,
    out_tokens: *mut u32,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { self::budget(budget) }?;
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        let out = Out::new(out_tokens)?;
        // SAFETY: valid for writes.
        unsafe { out.write(b.available(&clock)) };
        Ok(())
    })
}

/// Fills the budget again, as new.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`.
/// - Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `budget` from `stockade_retry_budget_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_retry_budget_reset(
    budget: *const stockade_retry_budget,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        unsafe { self::budget(budget) }?.reset();
        Ok(())
    })
}
