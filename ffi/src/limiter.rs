//! The rate limiter (core tier): the core's lock-free GCRA `RateLimiter`
//! in caller storage; reservations as plain-data tokens.

use core::ffi::c_void;
use core::mem::MaybeUninit;
use core::time::Duration;

use stockade_core::limiter::{
    CancelError, RateLimitError, RateLimiter, RateLimiterConfig, RawRateLimiterConfig, Reservation,
    ReservationToken, TickPlan,
};

use crate::boundary::{Out, arg, arg_mut, storage};
use crate::clock::{CClock, stockade_clock};
use crate::config_error::{self, stockade_config_error};
use crate::status::stockade_status;
use crate::time::millis;

/// How a limiter trades bursts against window guarantees
/// (`stockade_limiter_config.mode`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum stockade_limiter_mode {
    /// Token bucket: `burst` permits at once (default
    /// `requests_per_period`); a full bucket followed by a period of
    /// sustained traffic lets up to `burst + requests_per_period` permits
    /// through within one period (at most `burst + floor(W / T)` in any
    /// window of length `W`, `T` = `period_ms / requests_per_period`).
    Bursty = 0,
    /// Never more than `requests_per_period` (N) permits in any window of
    /// `period_ms` (P). For third-party quotas. The price of a burst B is
    /// sustained rate: a strict limiter sustains `N - B + 1` permits per
    /// period (permits are spaced `P / (N - B + 1)` apart once the burst is
    /// spent). The default `burst` is therefore 1: pure pacing at N per
    /// P, the full quota as throughput; `burst` = N admits N at once and
    /// then 1 per period.
    Strict = 1,
}

/// Rate limiter options (the core's `RawRateLimiterConfig`): start from
/// `stockade_limiter_config_default()` and change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct stockade_limiter_config {
    /// The period, ms (default 1000).
    pub period_ms: u64,
    /// The longest a reservation may wait, ms (default 30000); 0 = never
    /// wait.
    pub queue_timeout_ms: u64,
    /// Permits per period (default 10).
    pub requests_per_period: u32,
    /// Permits that may be taken at once; 0 = the mode's default
    /// (`BURSTY`: `requests_per_period`; `STRICT`: 1). `STRICT` allows 1 to
    /// `requests_per_period` and then sustains `requests_per_period - burst
    /// + 1` permits per period (see `stockade_limiter_mode`).
    pub burst: u32,
    /// Permits that may be booked ahead, waiting (default 100); 0 =
    /// reservations never wait.
    pub max_queue_size: u32,
    /// A `stockade_limiter_mode` (default `BURSTY`).
    pub mode: u8,
}

impl From<stockade_limiter_config> for RawRateLimiterConfig {
    fn from(c: stockade_limiter_config) -> Self {
        RawRateLimiterConfig {
            period_ms: c.period_ms,
            queue_timeout_ms: c.queue_timeout_ms,
            requests_per_period: c.requests_per_period,
            burst: c.burst,
            max_queue_size: c.max_queue_size,
            mode: c.mode,
        }
    }
}

impl From<RawRateLimiterConfig> for stockade_limiter_config {
    fn from(c: RawRateLimiterConfig) -> Self {
        stockade_limiter_config {
            period_ms: c.period_ms,
            queue_timeout_ms: c.queue_timeout_ms,
            requests_per_period: c.requests_per_period,
            burst: c.burst,
            max_queue_size: c.max_queue_size,
            mode: c.mode,
        }
    }
}

impl stockade_limiter_config {
    /// The validated core config.
    pub(crate) fn to_core(self) -> Result<RateLimiterConfig, stockade_core::ConfigError> {
        RateLimiterConfig::try_from(RawRateLimiterConfig::from(self))
    }
}

/// A reservation (the core's `ReservationToken`): permits booked for
/// `ready_at_ns`. Plain data owned by the caller; one thread at a time.
/// Wait `wait_ns`, then use the permits, or give them back with
/// `stockade_limiter_cancel`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct stockade_limiter_token {
    /// Permits booked.
    pub permits: u32,
    /// 1 once cancelled through this token (a second cancel is refused).
    pub used: u32,
    /// When the permits may be used, in the clock's nanoseconds.
    pub ready_at_ns: u64,
    /// How long to wait from the booking, ns (0: use them now).
    pub wait_ns: u64,
    /// The core's token, opaque.
    pub _private: [MaybeUninit<u64>; 5],
}

const _: () = assert!(
    core::mem::size_of::<ReservationToken>() <= 40
        && core::mem::align_of::<ReservationToken>() <= 8
);

impl stockade_limiter_token {
    fn new(token: ReservationToken) -> Self {
        let mut out = stockade_limiter_token {
            permits: token.permits(),
            used: 0,
            ready_at_ns: token.ready_at().as_nanos(),
            wait_ns: u64::try_from(token.wait().as_nanos()).unwrap_or(u64::MAX),
            _private: [MaybeUninit::zeroed(); 5],
        };
        // SAFETY: `_private` is 40 bytes aligned to 8, which holds a
        // `ReservationToken` (asserted above).
        unsafe {
            out._private
                .as_mut_ptr()
                .cast::<ReservationToken>()
                .write(token)
        };
        out
    }

    fn core(&self) -> ReservationToken {
        // SAFETY: `_private` holds the bytes of a `ReservationToken` (written
        // by `new`, or copied by C). Its fields are plain integers, so any
        // initialised bytes are a valid (possibly forged) token; bytes C
        // zeroed or changed are still integers. `new` zero-fills first, so
        // no byte is uninitialised.
        unsafe { self._private.as_ptr().cast::<ReservationToken>().read() }
    }
}

/// Bytes of storage a `stockade_limiter` needs (every supported target).
pub const STOCKADE_LIMITER_SIZE: usize = 56;
/// Alignment a `stockade_limiter`'s storage needs.
pub const STOCKADE_LIMITER_ALIGN: usize = 8;

assert_storage_fits!(RateLimiter, STOCKADE_LIMITER_SIZE, STOCKADE_LIMITER_ALIGN);
const _: () = assert!(
    RateLimiter::SIZE <= STOCKADE_LIMITER_SIZE && RateLimiter::ALIGN <= STOCKADE_LIMITER_ALIGN
);

/// A lock-free rate limiter (the core's `RateLimiter`, GCRA) in caller
/// storage. Any number of threads (and interrupt handlers) may use it at
/// once.
pub struct stockade_limiter {
    _opaque: [u8; 0],
}

/// The spec's defaults: 10 per 1000 ms, bursty, queue of 100, 30000 ms
/// queue timeout.
///
/// - Thread safety: any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_limiter_config_default() -> stockade_limiter_config {
    RawRateLimiterConfig::DEFAULT.into()
}

/// Validates `config` and makes a full limiter in `storage`
/// (`STOCKADE_LIMITER_SIZE` bytes aligned to `STOCKADE_LIMITER_ALIGN`);
/// `*out` = the limiter.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`storage`, `config`, `out`);
///   `INVALID_CONFIG` (`requests_per_period` or `period_ms` 0, more than
///   one permit per ns, `burst` above `requests_per_period` in strict
///   mode, unknown `mode`, values above the layout's range; `*error` names
///   it if not NULL); `STORAGE_TOO_SMALL`; `STORAGE_MISALIGNED`.
/// - Ownership: the caller owns the storage; no cleanup is needed.
/// - Thread safety: share the limiter freely. Blocks: no.
///
/// # Safety
///
/// `storage` writable for `storage_size` bytes; other pointers valid or
/// NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_init(
    storage: *mut c_void,
    storage_size: usize,
    config: *const stockade_limiter_config,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_limiter,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let config = *unsafe { arg(config) }?;
        let out = Out::new(out)?;
        let slot = self::storage::<RateLimiter>(storage, storage_size, STOCKADE_LIMITER_SIZE)?;
        let result = config.to_core().and_then(RateLimiter::new);
        // SAFETY: `error` valid or NULL.
        let limiter = unsafe { config_error::check(result, error) }?;
        // SAFETY: `slot` checked, writable; `out` valid for writes.
        unsafe {
            slot.write(limiter);
            out.write(slot.cast());
        }
        Ok(())
    })
}

/// `stockade_limiter_init` without the error description: the same
/// checks and the same limiter, but a refused config is `INVALID_CONFIG`
/// alone, with no `stockade_config_error` to say why. For firmware: the
/// code that describes a refusal is most of `stockade_limiter_init`'s
/// flash, and a firmware that never calls `stockade_limiter_init` links
/// none of it (the README's "Firmware cost" table). Test a config with
/// `stockade_limiter_init` on the host to learn what is wrong with it.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`storage`, `config`, `out`);
///   `INVALID_CONFIG` (every config `stockade_limiter_init` refuses);
///   `STORAGE_TOO_SMALL`; `STORAGE_MISALIGNED`.
/// - Ownership: the caller owns the storage; no cleanup is needed.
/// - Thread safety: share the limiter freely. Blocks: no.
///
/// # Safety
///
/// `storage` writable for `storage_size` bytes; other pointers valid or
/// NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_init_lean(
    storage: *mut c_void,
    storage_size: usize,
    config: *const stockade_limiter_config,
    out: *mut *mut stockade_limiter,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let config = *unsafe { arg(config) }?;
        let out = Out::new(out)?;
        let slot = self::storage::<RateLimiter>(storage, storage_size, STOCKADE_LIMITER_SIZE)?;
        let limiter =
            RateLimiter::from_raw_lean(&config.into()).ok_or(stockade_status::InvalidConfig)?;
        // SAFETY: `slot` checked, writable; `out` valid for writes.
        unsafe {
            slot.write(limiter);
            out.write(slot.cast());
        }
        Ok(())
    })
}

/// A rate limiter's numbers worked out at compile time: make it with the
/// `STOCKADE_LIMITER_PLAN(...)` macro (an initializer of integer constant
/// expressions), never by hand, and give it to
/// `stockade_limiter_init_planned`. Ticks are `tick_ns` nanoseconds.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct stockade_limiter_plan {
    /// Nanoseconds per tick; 0 marks a config the macro refused.
    pub tick_ns: u32,
    /// The emission interval (the time one permit costs), in ticks.
    pub interval_ticks: u32,
    /// The burst capacity, in permits.
    pub burst: u32,
    /// The queue bound, in permits.
    pub max_queue_size: u32,
    /// The effective queue timeout, in ticks.
    pub queue_timeout_ticks: u32,
    /// `STOCKADE_LIMITER_PLAN_CHECK` of the fields above: a plan the macro
    /// did not make (hand-written, zeroed, corrupted) is refused.
    pub check: u32,
}

/// The check word of a `stockade_limiter_plan` (the header's
/// `STOCKADE_LIMITER_PLAN_CHECK` computes the same).
const fn plan_check(p: &stockade_limiter_plan) -> u32 {
    0x5354_4b50u32
        .wrapping_sub(p.tick_ns.wrapping_mul(3))
        .wrapping_sub(p.interval_ticks.wrapping_mul(5))
        .wrapping_sub(p.burst.wrapping_mul(7))
        .wrapping_sub(p.max_queue_size.wrapping_mul(11))
        .wrapping_sub(p.queue_timeout_ticks.wrapping_mul(13))
}

/// Makes a full limiter in `storage` from `plan`, worked out at compile
/// time by `STOCKADE_LIMITER_PLAN(requests_per_period, period_ms, burst,
/// max_queue_size, queue_timeout_ms, mode)` (the arguments of a
/// `stockade_limiter_config`): the firmware links no planning code, only
/// checks that the machine can run on the plan (the smallest limiter
/// constructor, see the README's "Firmware cost"). `*out` = the limiter.
///
/// The macro plans for the 32-bit state layout (every 32-bit
/// microcontroller) and refuses, as a plan with `tick_ns` 0, exactly the
/// configs `stockade_limiter_init` refuses there; on a 64-bit target the
/// limiter runs on the plan's nanoseconds (ticks times `tick_ns`), and
/// counts above 2^19 stay refused. The plan is `stockade_limiter_init`'s
/// except, sometimes, for the tick: `stockade_limiter_init` searches every
/// cut of the emission interval into between half the cap and the cap (1024
/// ticks; more for intervals over 73 minutes, fewer for bursts and queues
/// near 2^19) for an exact one, the macro tries two, the cap and 1000
/// ticks. So an interval of whole
/// microseconds (e.g. 10 per 1000 ms: 100 ms) is cut exactly by both
/// (possibly into different ticks); one that neither cut divides but
/// another would is cut exactly by `stockade_limiter_init` and rounded up
/// by less than one tick by the macro (a tick is about 1/512 of the
/// interval at most), never shortened.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`storage`, `plan`, `out`);
///   `INVALID_CONFIG` (a refused config, or a plan the macro did not make:
///   its check word does not match, or the machine cannot run on it);
///   `STORAGE_TOO_SMALL`; `STORAGE_MISALIGNED`.
/// - Ownership: the caller owns the storage; no cleanup is needed.
/// - Thread safety: share the limiter freely. Blocks: no.
///
/// # Safety
///
/// `storage` writable for `storage_size` bytes; other pointers valid or
/// NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_init_planned(
    storage: *mut c_void,
    storage_size: usize,
    plan: *const stockade_limiter_plan,
    out: *mut *mut stockade_limiter,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let plan = *unsafe { arg(plan) }?;
        let out = Out::new(out)?;
        let slot = self::storage::<RateLimiter>(storage, storage_size, STOCKADE_LIMITER_SIZE)?;
        if plan.check != plan_check(&plan) {
            return Err(stockade_status::InvalidConfig);
        }
        let limiter = RateLimiter::from_tick_plan(&TickPlan {
            tick_nanos: plan.tick_ns,
            interval_ticks: plan.interval_ticks,
            burst: plan.burst,
            max_queue_size: plan.max_queue_size,
            queue_timeout_ticks: plan.queue_timeout_ticks,
        })
        .ok_or(stockade_status::InvalidConfig)?;
        // SAFETY: `slot` checked, writable; `out` valid for writes.
        unsafe {
            slot.write(limiter);
            out.write(slot.cast());
        }
        Ok(())
    })
}

/// # Safety
///
/// A non-NULL `l` must come from `stockade_limiter_init`.
pub(crate) unsafe fn limiter<'a>(
    l: *const stockade_limiter,
) -> Result<&'a RateLimiter, stockade_status> {
    // SAFETY: function contract.
    unsafe { arg(l.cast::<RateLimiter>()) }
}

/// The status of a limiter rejection.
pub(crate) fn rejection_status(e: &RateLimitError) -> stockade_status {
    match e {
        RateLimitError::QueueFull { .. } => stockade_status::QueueFull,
        RateLimitError::WaitTooLong { .. } => stockade_status::QueueTimeout,
        RateLimitError::ExceedsCapacity { .. } => stockade_status::PermitsExceedBurst,
        _ => stockade_status::RateLimited,
    }
}

/// Writes the optional `retry_after_ms` of a rejection (`UINT64_MAX`:
/// never).
///
/// # Safety
///
/// A non-NULL `out` must be valid for writes.
unsafe fn write_retry_after(out: *mut u64, e: &RateLimitError) {
    if let Ok(out) = Out::new(out) {
        // SAFETY: non-NULL, valid for writes (caller's contract).
        unsafe { out.write(e.retry_after().map_or(u64::MAX, millis)) };
    }
}

/// Takes `permits` permits now, all or nothing (0 always succeeds).
///
/// - Statuses: `OK`; `RATE_LIMITED` (`*retry_after_ms`, if not NULL, =
///   exactly when they will be available); `PERMITS_EXCEED_BURST` (never
///   possible; `*retry_after_ms` = `UINT64_MAX`); `NULL_ARGUMENT`.
/// - Thread safety: any thread; lock-free. Blocks: no.
///
/// # Safety
///
/// `limiter` from `stockade_limiter_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_try_acquire(
    limiter: *const stockade_limiter,
    clock: *const stockade_clock,
    permits: u32,
    retry_after_ms: *mut u64,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let l = unsafe { self::limiter(limiter) }?;
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        l.try_acquire_n(permits, &clock).map_err(|e| {
            // SAFETY: valid or NULL.
            unsafe { write_retry_after(retry_after_ms, &e) };
            rejection_status(&e)
        })
    })
}

/// Books `permits` permits at the earliest time they are free, if that is
/// within `max_wait_ms` and the queue timeout; `*out_token` says when
/// (`wait_ns`, `ready_at_ns`). The caller waits, then uses them (or
/// cancels). This is how an event loop queues without threads.
///
/// - Statuses: `OK`; `QUEUE_FULL` (more than `max_queue_size` permits
///   would wait); `QUEUE_TIMEOUT` (the wait would exceed `max_wait_ms` or
///   `queue_timeout_ms`); `PERMITS_EXCEED_BURST`; `RATE_LIMITED` (only at
///   the end of the clock's range); `NULL_ARGUMENT`. On a rejection
///   `*retry_after_ms` (optional) says when booking would succeed.
/// - Thread safety: any thread; lock-free. Blocks: no.
///
/// # Safety
///
/// `limiter` from `stockade_limiter_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_reserve(
    limiter: *const stockade_limiter,
    clock: *const stockade_clock,
    permits: u32,
    max_wait_ms: u64,
    out_token: *mut stockade_limiter_token,
    retry_after_ms: *mut u64,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let l = unsafe { self::limiter(limiter) }?;
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        let out = Out::new(out_token)?;
        match l.reserve(permits, Duration::from_millis(max_wait_ms), &clock) {
            Ok(r) => {
                // SAFETY: valid for writes.
                unsafe { out.write(stockade_limiter_token::new(r.into_token())) };
                Ok(())
            }
            Err(e) => {
                // SAFETY: valid or NULL.
                unsafe { write_retry_after(retry_after_ms, &e) };
                Err(rejection_status(&e))
            }
        }
    })
}

/// Gives a waiting reservation's permits back (the caller gave up);
/// `*out_returned` (optional) = permits returned. Marks the token used.
///
/// - Statuses: `OK`; `TOKEN_ALREADY_USED` (this token was cancelled
///   already: nothing changed); `NOT_CANCELLABLE` (it did not wait, its
///   time has come, or someone booked after it: the permits stay booked,
///   and the caller may still use them at `ready_at_ns`); `NULL_ARGUMENT`.
/// - Thread safety: any thread for the limiter; the token is the
///   caller's (one thread). Blocks: no.
///
/// # Safety
///
/// `limiter` from `stockade_limiter_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_cancel(
    limiter: *const stockade_limiter,
    token: *mut stockade_limiter_token,
    clock: *const stockade_clock,
    out_returned: *mut u32,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let l = unsafe { self::limiter(limiter) }?;
        // SAFETY: function contract.
        let token = unsafe { arg_mut(token) }?;
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        if token.used != 0 {
            return Err(stockade_status::TokenAlreadyUsed);
        }
        let reservation = Reservation::from_token(token.core());
        match l.cancel(reservation.into_token(), &clock) {
            Ok(n) => {
                token.used = 1;
                if let Ok(out) = Out::new(out_returned) {
                    // SAFETY: non-NULL, valid for writes.
                    unsafe { out.write(n) };
                }
                Ok(())
            }
            Err(CancelError::Superseded | CancelError::Immediate | CancelError::Ready) => {
                Err(stockade_status::NotCancellable)
            }
        }
    })
}

/// `*out_permits` = permits `stockade_limiter_try_acquire` could take now
/// (0 to the burst).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `limiter` from `stockade_limiter_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_available(
    limiter: *const stockade_limiter,
    clock: *const stockade_clock,
    out_permits: *mut u32,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let l = unsafe { self::limiter(limiter) }?;
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        let out = Out::new(out_permits)?;
        // SAFETY: valid for writes.
        unsafe { out.write(l.available(&clock)) };
        Ok(())
    })
}

/// `*out_permits` = permits booked but not yet ready (waiting).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `limiter` from `stockade_limiter_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_queue_depth(
    limiter: *const stockade_limiter,
    clock: *const stockade_clock,
    out_permits: *mut u32,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let l = unsafe { self::limiter(limiter) }?;
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        let out = Out::new(out_permits)?;
        // SAFETY: valid for writes.
        unsafe { out.write(l.queue_depth(&clock)) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_round_trips_and_mode_numbers_match() {
        let c = stockade_limiter_config_default();
        assert_eq!(RawRateLimiterConfig::from(c), RawRateLimiterConfig::DEFAULT);
        assert_eq!(
            stockade_limiter_mode::Strict as u8,
            stockade_core::limiter::Mode::Strict as u8
        );
    }
}
