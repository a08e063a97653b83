//! Deadlines (core tier): the timeout pattern's core, for programs that
//! check time themselves between steps.
//!
//! A [`stockade_deadline`] is a plain value (the core's `Deadline`: one
//! timestamp, 8 bytes): copy it, store it anywhere, compare it.

use stockade_core::clock::Timestamp;
use stockade_core::deadline::{Deadline, TimeoutConfig};

use crate::boundary::{Out, arg};
use crate::clock::{CClock, stockade_clock};
use crate::config_error::{self, stockade_config_error};
use crate::status::stockade_status;

use core::time::Duration;

/// A point in time after which an operation has timed out: nanoseconds on
/// the clock it was made from. `UINT64_MAX` never expires
/// (`stockade_deadline_never()`). Plain data; only meaningful with the
/// clock that made it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct stockade_deadline {
    /// When it expires, in the clock's nanoseconds.
    pub expires_at_ns: u64,
}

const _: () = assert!(core::mem::size_of::<stockade_deadline>() == Deadline::SIZE);
const _: () = assert!(core::mem::align_of::<stockade_deadline>() >= Deadline::ALIGN);

impl From<Deadline> for stockade_deadline {
    fn from(d: Deadline) -> Self {
        stockade_deadline {
            expires_at_ns: d.expires_at().as_nanos(),
        }
    }
}

impl From<stockade_deadline> for Deadline {
    fn from(d: stockade_deadline) -> Self {
        Deadline::at(Timestamp::from_nanos(d.expires_at_ns))
    }
}

/// Timeout options (the spec's `timeoutMs`): start from
/// `stockade_timeout_config_default()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct stockade_timeout_config {
    /// The time allowed, ms (default 5000); must be greater than 0.
    pub timeout_ms: u64,
}

impl stockade_timeout_config {
    pub(crate) fn to_core(self) -> Result<TimeoutConfig, stockade_core::ConfigError> {
        TimeoutConfig::new(Duration::from_millis(self.timeout_ms))
    }
}

/// The spec's default: `timeout_ms` = 5000.
///
/// - Thread safety: any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_timeout_config_default() -> stockade_timeout_config {
    stockade_timeout_config {
        timeout_ms: crate::time::millis(TimeoutConfig::DEFAULT.timeout),
    }
}

/// `*out` = the deadline of an operation starting now on `clock`, under
/// `config` (validated).
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`config`, `clock` or its `now_ns`,
///   `out`); `INVALID_CONFIG` (`timeout_ms` 0; `*error` filled if not
///   NULL).
/// - Thread safety: any thread. Blocks: no (reads the clock once).
///
/// # Safety
///
/// Pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_timeout_config_deadline(
    config: *const stockade_timeout_config,
    clock: *const stockade_clock,
    error: *mut stockade_config_error,
    out: *mut stockade_deadline,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let config = *unsafe { arg(config) }?;
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        let out = Out::new(out)?;
        // SAFETY: `error` valid or NULL.
        let config = unsafe { config_error::check(config.to_core(), error) }?;
        // SAFETY: `out` valid for writes.
        unsafe { out.write(config.deadline(&clock).into()) };
        Ok(())
    })
}

/// `*out` = `timeout_ms` from now on `clock`, saturating at "never". A
/// `timeout_ms` of 0 gives a deadline that has already expired.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`.
/// - Thread safety: any thread. Blocks: no (reads the clock once).
///
/// # Safety
///
/// Pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_deadline_after(
    clock: *const stockade_clock,
    timeout_ms: u64,
    out: *mut stockade_deadline,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        let out = Out::new(out)?;
        let d = Deadline::after(&clock, Duration::from_millis(timeout_ms));
        // SAFETY: `out` valid for writes.
        unsafe { out.write(d.into()) };
        Ok(())
    })
}

/// A deadline that never expires (`expires_at_ns` = `UINT64_MAX`).
///
/// - Thread safety: any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_deadline_never() -> stockade_deadline {
    Deadline::NEVER.into()
}

/// The earlier (tighter) of two deadlines.
///
/// - Thread safety: any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_deadline_min(
    a: stockade_deadline,
    b: stockade_deadline,
) -> stockade_deadline {
    Deadline::from(a).min(Deadline::from(b)).into()
}

/// `*out_ms` = whole milliseconds left before `deadline` on `clock` (0 once
/// expired; `UINT64_MAX` for a deadline that never expires).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`.
/// - Thread safety: any thread. Blocks: no (reads the clock once).
///
/// # Safety
///
/// Pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_deadline_remaining_ms(
    deadline: *const stockade_deadline,
    clock: *const stockade_clock,
    out_ms: *mut u64,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let d = Deadline::from(*unsafe { arg(deadline) }?);
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        let out = Out::new(out_ms)?;
        let ms = if d.is_never() {
            u64::MAX
        } else {
            crate::time::millis(d.remaining(&clock))
        };
        // SAFETY: `out_ms` valid for writes.
        unsafe { out.write(ms) };
        Ok(())
    })
}

/// `*out_expired` = whether `deadline` has passed on `clock`.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`.
/// - Thread safety: any thread. Blocks: no (reads the clock once).
///
/// # Safety
///
/// Pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_deadline_is_expired(
    deadline: *const stockade_deadline,
    clock: *const stockade_clock,
    out_expired: *mut bool,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let d = Deadline::from(*unsafe { arg(deadline) }?);
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        let out = Out::new(out_expired)?;
        // SAFETY: `out_expired` valid for writes.
        unsafe { out.write(d.is_expired(&clock)) };
        Ok(())
    })
}
