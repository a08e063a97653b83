//! The backoff calculator (core tier): retry delays for event-loop and
//! firmware programs that do their own waiting.
//!
//! A [`stockade_backoff`] (the core's `Backoff`) is a validated policy; a
//! [`stockade_backoff_schedule`] (the core's `BackoffSchedule`) hands out
//! the delays of one operation. Both live in caller storage.

use core::ffi::c_void;
use core::time::Duration;

use stockade_core::backoff::{Backoff, BackoffConfig, BackoffSchedule, RawBackoffConfig};

use crate::boundary::{Out, arg, arg_mut, storage};
use crate::config_error::{self, stockade_config_error};
use crate::status::stockade_status;
use crate::time::millis;

/// How delays are randomised (`stockade_backoff_config.jitter`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum stockade_jitter {
    /// No randomness: the base exponential delay.
    None = 0,
    /// Uniform in `[0, base]`.
    Full = 1,
    /// Uniform in `[base/2, base]`.
    Equal = 2,
    /// `min(max_delay, uniform in [initial_delay, 3 * previous delay])`.
    Decorrelated = 3,
}

/// Backoff options (the core's `RawBackoffConfig`): start from
/// `stockade_backoff_config_default()` and change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct stockade_backoff_config {
    /// Delay before the first retry, ms (default 1000). 0 = retry at once.
    pub initial_delay_ms: u64,
    /// Cap on every delay, ms (default 30000); not less than
    /// `initial_delay_ms`.
    pub max_delay_ms: u64,
    /// Total time budget, sleeps included, ms; 0 = none (the default).
    pub max_elapsed_ms: u64,
    /// Multiplier between consecutive delays (default 2.0); finite, >= 1.
    pub backoff_factor: f64,
    /// Attempts in all, the first included (default 3); at least 1.
    pub max_attempts: u32,
    /// A `stockade_jitter` number (default `STOCKADE_JITTER_NONE`).
    pub jitter: u8,
}

impl From<stockade_backoff_config> for RawBackoffConfig {
    fn from(c: stockade_backoff_config) -> RawBackoffConfig {
        RawBackoffConfig {
            initial_delay_ms: c.initial_delay_ms,
            max_delay_ms: c.max_delay_ms,
            max_elapsed_ms: c.max_elapsed_ms,
            backoff_factor: c.backoff_factor,
            max_attempts: c.max_attempts,
            jitter: c.jitter,
        }
    }
}

impl From<RawBackoffConfig> for stockade_backoff_config {
    fn from(c: RawBackoffConfig) -> stockade_backoff_config {
        stockade_backoff_config {
            initial_delay_ms: c.initial_delay_ms,
            max_delay_ms: c.max_delay_ms,
            max_elapsed_ms: c.max_elapsed_ms,
            backoff_factor: c.backoff_factor,
            max_attempts: c.max_attempts,
            jitter: c.jitter,
        }
    }
}

/// Bytes of storage a `stockade_backoff` needs (every supported target).
pub const STOCKADE_BACKOFF_SIZE: usize = 40;
/// Alignment a `stockade_backoff`'s storage needs.
pub const STOCKADE_BACKOFF_ALIGN: usize = 8;
/// Bytes of storage a `stockade_backoff_schedule` needs.
pub const STOCKADE_BACKOFF_SCHEDULE_SIZE: usize = 64;
/// Alignment a `stockade_backoff_schedule`'s storage needs.
pub const STOCKADE_BACKOFF_SCHEDULE_ALIGN: usize = 8;

assert_storage_fits!(Backoff, STOCKADE_BACKOFF_SIZE, STOCKADE_BACKOFF_ALIGN);
assert_storage_fits!(
    BackoffSchedule,
    STOCKADE_BACKOFF_SCHEDULE_SIZE,
    STOCKADE_BACKOFF_SCHEDULE_ALIGN
);
const _: () =
    assert!(Backoff::SIZE <= STOCKADE_BACKOFF_SIZE && Backoff::ALIGN <= STOCKADE_BACKOFF_ALIGN);

/// A validated backoff policy (the core's `Backoff`) in caller storage:
/// a pure calculator, read-only after `stockade_backoff_init`, so any
/// number of threads may use one at once.
pub struct stockade_backoff {
    _opaque: [u8; 0],
}

/// The delays of one operation (the core's `BackoffSchedule`) in caller
/// storage. A value, not a shared handle: it changes on every
/// `stockade_backoff_schedule_next`, so one operation (one thread at a
/// time) uses it; copy the storage bytes to fork it.
pub struct stockade_backoff_schedule {
    _opaque: [u8; 0],
}

/// The spec's defaults: 1000 ms initial delay, factor 2.0, 30000 ms cap,
/// 3 attempts, no time budget, no jitter.
///
/// - Thread safety: any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_backoff_config_default() -> stockade_backoff_config {
    RawBackoffConfig::DEFAULT.into()
}

/// Validates `config` and makes a policy in `storage`
/// (`STOCKADE_BACKOFF_SIZE` bytes aligned to `STOCKADE_BACKOFF_ALIGN`);
/// `*out` = the policy (the address of `storage`).
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`storage`, `config`, `out`);
///   `INVALID_CONFIG` (`*error` filled if `error` is not NULL):
///   `backoff_factor` not finite or below 1, `initial_delay_ms` above
///   `max_delay_ms`, `max_attempts` 0, `jitter` unknown;
///   `STORAGE_TOO_SMALL`; `STORAGE_MISALIGNED`.
/// - Ownership: the caller owns the storage; no cleanup is needed.
/// - Thread safety: the policy is read-only; share it freely. Blocks: no.
///
/// # Safety
///
/// `storage` must be writable for `storage_size` bytes; other pointers
/// valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_backoff_init(
    storage: *mut c_void,
    storage_size: usize,
    config: *const stockade_backoff_config,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_backoff,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let config = *unsafe { arg(config) }?;
        let out = Out::new(out)?;
        let slot = self::storage::<Backoff>(storage, storage_size, STOCKADE_BACKOFF_SIZE)?;
        let result = BackoffConfig::try_from(RawBackoffConfig::from(config)).and_then(Backoff::new);
        // SAFETY: `error` valid or NULL (function contract).
        let backoff = unsafe { config_error::check(result, error) }?;
        // SAFETY: `slot` checked for size and alignment, writable per the
        // contract; `out` valid for writes.
        unsafe {
            slot.write(backoff);
            out.write(slot.cast());
        }
        Ok(())
    })
}

/// # Safety
///
/// A non-NULL `b` must come from `stockade_backoff_init`.
unsafe fn backoff<'a>(b: *const stockade_backoff) -> Result<&'a Backoff, stockade_status> {
    // SAFETY: function contract.
    unsafe { arg(b.cast::<Backoff>()) }
}

/// `*out` = the policy's config (as validated; delays in whole ms).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`.
/// - Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `backoff` must come from `stockade_backoff_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_backoff_config_get(
    backoff: *const stockade_backoff,
    out: *mut stockade_backoff_config,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { self::backoff(backoff) }?;
        let out = Out::new(out)?;
        // SAFETY: `out` valid for writes.
        unsafe { out.write(b.config().to_raw().into()) };
        Ok(())
    })
}

/// `*out_ms` = the base delay (no jitter) before retry number `retry`
/// (1-based; 0 is read as 1): `min(initial * factor^(retry-1), max)`, in
/// whole ms (truncated).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`.
/// - Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `backoff` must come from `stockade_backoff_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_backoff_delay_ms(
    backoff: *const stockade_backoff,
    retry: u32,
    out_ms: *mut u64,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { self::backoff(backoff) }?;
        let out = Out::new(out_ms)?;
        // SAFETY: `out_ms` valid for writes.
        unsafe { out.write(millis(b.delay(retry))) };
        Ok(())
    })
}

/// Starts the delays of one operation in `storage`
/// (`STOCKADE_BACKOFF_SCHEDULE_SIZE` bytes aligned to
/// `STOCKADE_BACKOFF_SCHEDULE_ALIGN`); `seed` drives the jitter (the same
/// seed gives the same delays). `*out` = the schedule. The schedule copies
/// the policy: `backoff` may be discarded afterwards.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`; `STORAGE_TOO_SMALL`;
///   `STORAGE_MISALIGNED`.
/// - Thread safety: one thread at a time per schedule. Blocks: no.
///
/// # Safety
///
/// `backoff` must come from `stockade_backoff_init`; `storage` writable
/// for `storage_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_backoff_schedule_init(
    storage: *mut c_void,
    storage_size: usize,
    backoff: *const stockade_backoff,
    seed: u64,
    out: *mut *mut stockade_backoff_schedule,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { self::backoff(backoff) }?;
        let out = Out::new(out)?;
        let slot = self::storage::<BackoffSchedule>(
            storage,
            storage_size,
            STOCKADE_BACKOFF_SCHEDULE_SIZE,
        )?;
        // SAFETY: `slot` checked, writable; `out` valid for writes.
        unsafe {
            slot.write(b.schedule(seed));
            out.write(slot.cast());
        }
        Ok(())
    })
}

/// Records that an attempt failed `elapsed_ms` after the operation began,
/// and sets `*out_delay_ms` to how long to wait before the next attempt.
///
/// - Statuses: `OK` (wait `*out_delay_ms`, then retry);
///   `RETRIES_EXHAUSTED` (give up: `max_attempts` made, or the delay would
///   end past `max_elapsed_ms`; `*out_delay_ms` untouched, and every later
///   call says the same); `NULL_ARGUMENT`.
/// - Thread safety: one thread at a time per schedule. Blocks: no.
///
/// # Safety
///
/// `schedule` must come from `stockade_backoff_schedule_init` and not be
/// in use by another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_backoff_schedule_next(
    schedule: *mut stockade_backoff_schedule,
    elapsed_ms: u64,
    out_delay_ms: *mut u64,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let s = unsafe { arg_mut(schedule.cast::<BackoffSchedule>()) }?;
        let out = Out::new(out_delay_ms)?;
        let delay = s
            .next_delay(Duration::from_millis(elapsed_ms))
            .ok_or(stockade_status::RetriesExhausted)?;
        // SAFETY: `out_delay_ms` valid for writes.
        unsafe { out.write(millis(delay)) };
        Ok(())
    })
}

/// `*out_attempts` = failed attempts recorded so far.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Blocks: no.
///
/// # Safety
///
/// `schedule` must come from `stockade_backoff_schedule_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_backoff_schedule_attempts(
    schedule: *const stockade_backoff_schedule,
    out_attempts: *mut u32,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let s = unsafe { arg(schedule.cast::<BackoffSchedule>()) }?;
        let out = Out::new(out_attempts)?;
        // SAFETY: `out_attempts` valid for writes.
        unsafe { out.write(s.attempts_made()) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(8))]
    struct Buf([u8; 64]);

    #[test]
    fn default_config_is_the_spec_and_round_trips() {
        let c = stockade_backoff_config_default();
        assert_eq!(
            (
                c.initial_delay_ms,
                c.max_delay_ms,
                c.max_elapsed_ms,
                c.max_attempts,
                c.jitter
            ),
            (1000, 30_000, 0, 3, 0)
        );
        assert_eq!(stockade_backoff_config::from(RawBackoffConfig::from(c)), c);
        assert_eq!(
            stockade_jitter::Decorrelated as u8,
            stockade_core::backoff::Jitter::Decorrelated as u8
        );
    }

    #[test]
    fn schedule_hands_out_the_default_delays_then_exhausts() {
        let mut b_buf = Buf([0; 64]);
        let mut s_buf = Buf([0; 64]);
        let mut b = core::ptr::null_mut();
        let mut s = core::ptr::null_mut();
        let config = stockade_backoff_config_default();
        // SAFETY: valid buffers and pointers.
        unsafe {
            assert_eq!(
                stockade_backoff_init(
                    b_buf.0.as_mut_ptr().cast(),
                    64,
                    &config,
                    core::ptr::null_mut(),
                    &mut b
                ),
                stockade_status::Ok
            );
            assert_eq!(
                stockade_backoff_schedule_init(s_buf.0.as_mut_ptr().cast(), 64, b, 1, &mut s),
                stockade_status::Ok
            );
            let mut d = 0;
            assert_eq!(
                stockade_backoff_schedule_next(s, 0, &mut d),
                stockade_status::Ok
            );
            assert_eq!(d, 1000);
            assert_eq!(
                stockade_backoff_schedule_next(s, 1000, &mut d),
                stockade_status::Ok
            );
            assert_eq!(d, 2000);
            d = 7;
            assert_eq!(
                stockade_backoff_schedule_next(s, 3000, &mut d),
                stockade_status::RetriesExhausted
            );
            assert_eq!(d, 7, "no partial success: out untouched");
        }
    }
}
