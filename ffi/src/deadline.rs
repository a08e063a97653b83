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

/// What `stockade_deadline_is_expired` returns: the answer and the
/// status in one 8-byte value, returned in a register where the C ABI
/// allows (`rax` on x86-64, `x0` on AArch64), through memory where it
/// returns a struct of this size that way (32-bit Arm's AAPCS, i386).
/// `expired` comes first, so that it is the low byte of the register.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct stockade_deadline_expiry {
    /// Whether the deadline has passed (on `OK`; true otherwise, so that a
    /// caller reading only `expired` stops rather than runs on unchecked).
    pub expired: bool,
    /// `OK`, or why `expired` is not an answer.
    pub status: stockade_status,
}

/// What `stockade_deadline_remaining_ms` returns: the answer and the
/// status in one 16-byte value, returned in registers where the C ABI
/// allows (`rax:rdx` on x86-64 System V, `x0:x1` on AArch64), through
/// memory where it returns a struct of this size that way (Windows x64,
/// 32-bit Arm's AAPCS, i386).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct stockade_deadline_remaining {
    /// Whole milliseconds left (on `OK`; 0 otherwise): 0 once expired,
    /// `UINT64_MAX` for a deadline that never expires.
    pub ms: u64,
    /// `OK`, or why `ms` is not an answer.
    pub status: stockade_status,
}

/// The whole milliseconds left before `deadline` on `clock` (0 once
/// expired; `UINT64_MAX` for a deadline that never expires), with the
/// status, both returned by value: the deadline is passed by value and
/// nothing is written through a pointer.
///
/// - Statuses (`.status`): `OK`; `NULL_ARGUMENT` (`clock` or its
///   `now_ns`; `.ms` is then 0).
/// - Thread safety: any thread. Blocks: no (reads the clock once).
///
/// # Safety
///
/// `clock` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_deadline_remaining_ms(
    deadline: stockade_deadline,
    clock: *const stockade_clock,
) -> stockade_deadline_remaining {
    let internal = stockade_deadline_remaining {
        ms: 0,
        status: stockade_status::InternalError,
    };
    crate::boundary::run_value(internal, || {
        // SAFETY: function contract.
        let clock = match unsafe { CClock::from_ptr(clock) } {
            Ok(clock) => clock,
            Err(status) => return stockade_deadline_remaining { ms: 0, status },
        };
        let d = Deadline::from(deadline);
        let ms = if d.is_never() {
            u64::MAX
        } else {
            crate::time::millis(d.remaining(&clock))
        };
        stockade_deadline_remaining {
            ms,
            status: stockade_status::Ok,
        }
    })
}

/// Whether `deadline` has passed on `clock`, with the status, both
/// returned by value: the deadline is passed by value and nothing is
/// written through a pointer, so the call costs the clock's NULL checks,
/// the clock read and a compare.
///
/// ```c
/// stockade_deadline_expiry e = stockade_deadline_is_expired(deadline, &clock);
/// if (e.status != STOCKADE_STATUS_OK || e.expired) { /* give up */ }
/// ```
///
/// - Statuses (`.status`): `OK`; `NULL_ARGUMENT` (`clock` or its
///   `now_ns`; `.expired` is then true: a deadline that cannot be checked
///   reads as passed).
/// - Thread safety: any thread. Blocks: no (reads the clock once).
///
/// # Safety
///
/// `clock` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_deadline_is_expired(
    deadline: stockade_deadline,
    clock: *const stockade_clock,
) -> stockade_deadline_expiry {
    // No panic boundary: nothing here can panic (a NULL check, the C
    // callback, which cannot unwind into Rust, and a compare).
    // SAFETY: function contract.
    match unsafe { CClock::from_ptr(clock) } {
        Ok(clock) => stockade_deadline_expiry {
            expired: Deadline::from(deadline).is_expired(&clock),
            status: stockade_status::Ok,
        },
        Err(status) => stockade_deadline_expiry {
            expired: true,
            status,
        },
    }
}
