//! Time from C: [`stockade_clock`] (a callback plus user data) implements
//! the core's `Clock`; [`stockade_tick_clock`] extends a wrapping 32-bit
//! hardware counter (the core's `TickClock`) on caller storage.

use core::ffi::c_void;

use stockade_core::clock::{Clock, TickClock, TickSource, Timestamp};

use crate::boundary::{Out, arg};
use crate::status::stockade_status;

/// A clock: `now_ns(user_data)` returns monotonic nanoseconds since any
/// fixed epoch. Every function that needs time takes a
/// `const stockade_clock *` and calls `now_ns` (at most a few times per
/// call, only when the decision needs time), on the calling thread.
///
/// Plain data, caller-owned. `now_ns` must not be NULL (functions return
/// `STOCKADE_STATUS_NULL_ARGUMENT` if it is) and must be safe to call from
/// every thread that uses the clock. A clock that steps backwards is
/// treated as "no time passed"; it never corrupts state.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct stockade_clock {
    /// Returns the current time in nanoseconds.
    pub now_ns: Option<unsafe extern "C" fn(user_data: *mut c_void) -> u64>,
    /// Passed to `now_ns` unchanged; may be NULL.
    pub user_data: *mut c_void,
}

/// A checked [`stockade_clock`]: the core's `Clock`.
#[derive(Clone, Copy)]
pub(crate) struct CClock {
    now_ns: unsafe extern "C" fn(*mut c_void) -> u64,
    user_data: *mut c_void,
}

impl CClock {
    /// Checks `clock` and its callback for NULL.
    ///
    /// # Safety
    ///
    /// A non-NULL `clock` must point to a valid `stockade_clock` whose
    /// callback may be called with its user data.
    #[inline(always)]
    pub(crate) unsafe fn from_ptr(clock: *const stockade_clock) -> Result<CClock, stockade_status> {
        // SAFETY: forwarded contract.
        let clock = unsafe { arg(clock) }?;
        let now_ns = clock.now_ns.ok_or(stockade_status::NullArgument)?;
        Ok(CClock {
            now_ns,
            user_data: clock.user_data,
        })
    }
}

impl Clock for CClock {
    #[inline(always)]
    fn now(&self) -> Timestamp {
        // SAFETY: the C caller promised (`from_ptr`) that the callback may be
        // called with its user data.
        Timestamp::from_nanos(unsafe { (self.now_ns)(self.user_data) })
    }
}

/// Reads `clock` once: `*out_ns` = its current time in nanoseconds.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`clock`, its `now_ns`, or `out_ns`).
/// - Blocks: only as long as the callback does. Thread safety: as the
///   callback.
///
/// # Safety
///
/// See the crate-level conventions: pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_clock_now_ns(
    clock: *const stockade_clock,
    out_ns: *mut u64,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: pointers valid or NULL (function contract).
        let clock = unsafe { CClock::from_ptr(clock) }?;
        let out = Out::new(out_ns)?;
        // SAFETY: `out_ns` is valid for writes (function contract).
        unsafe { out.write(clock.now().as_nanos()) };
        Ok(())
    })
}

/// The operating system's monotonic clock (the core's `MonotonicClock`) as
/// a `stockade_clock`; its `user_data` is NULL. Hosted builds only.
///
/// - Thread safety: safe from any thread. Blocks: no. Never fails.
#[cfg(feature = "std")]
#[unsafe(no_mangle)]
pub extern "C" fn stockade_clock_monotonic() -> stockade_clock {
    stockade_clock {
        now_ns: Some(monotonic_now_ns),
        user_data: core::ptr::null_mut(),
    }
}

#[cfg(feature = "std")]
unsafe extern "C" fn monotonic_now_ns(_user_data: *mut c_void) -> u64 {
    crate::boundary::run_value(0, || {
        stockade_core::clock::MonotonicClock::new().now().as_nanos()
    })
}

// ---------------------------------------------------------------------------
// Tick clock on caller storage.

/// Reads a raw 32-bit hardware counter that wraps to zero after
/// `UINT32_MAX`.
pub type stockade_tick_read_fn = unsafe extern "C" fn(user_data: *mut c_void) -> u32;

/// The counter callback and its data: the core's `TickSource` for a C
/// function pointer plus `void *user_data`.
#[derive(Clone, Copy)]
struct CTickSource {
    read: stockade_tick_read_fn,
    user_data: *mut c_void,
}

impl TickSource for CTickSource {
    #[inline(always)]
    fn read(&self) -> u32 {
        // SAFETY: `stockade_tick_clock_init`'s caller promised the callback
        // may be called with its user data from any thread using the clock.
        unsafe { (self.read)(self.user_data) }
    }
}

/// The core's tick clock over a C counter: what the caller's storage holds.
type CTickClock = TickClock<CTickSource>;

/// Bytes of storage a `stockade_tick_clock` needs (every supported target).
pub const STOCKADE_TICK_CLOCK_SIZE: usize = 32;
/// Alignment a `stockade_tick_clock`'s storage needs.
pub const STOCKADE_TICK_CLOCK_ALIGN: usize = 8;

assert_storage_fits!(
    CTickClock,
    STOCKADE_TICK_CLOCK_SIZE,
    STOCKADE_TICK_CLOCK_ALIGN
);

/// A clock over a wrapping 32-bit hardware counter (the core's
/// `TickClock`): extended to 64 bits with one 32-bit atomic word, no
/// locks, safe to read from interrupt handlers. Lives in caller storage
/// (`STOCKADE_TICK_CLOCK_SIZE` bytes aligned to
/// `STOCKADE_TICK_CLOCK_ALIGN`), made by `stockade_tick_clock_init`.
///
/// Must be read (any function taking it or its `stockade_clock`) at least
/// once per half wrap period of the counter (24.8 days at 1 kHz, 35.8
/// minutes at 1 MHz).
pub struct stockade_tick_clock {
    _opaque: [u8; 0],
}

/// Makes a tick clock in `storage`: `read(user_data)` returns the raw
/// counter, which ticks `hz` times a second (0 is read as 1; above 1 GHz
/// as 1 GHz). `*out` = the clock (the same address as `storage`).
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`storage`, `read`, `out`);
///   `STORAGE_TOO_SMALL`; `STORAGE_MISALIGNED`.
/// - Ownership: the caller owns the storage; the clock needs no cleanup
///   (stop using it, then reuse or discard the storage).
/// - Thread safety: the clock may be read from any thread and from
///   interrupt handlers, if `read` may. Blocks: no.
///
/// # Safety
///
/// `storage` must be writable for `storage_size` bytes and outlive every
/// use of the clock; `read` must be callable with `user_data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_tick_clock_init(
    storage: *mut c_void,
    storage_size: usize,
    read: Option<unsafe extern "C" fn(user_data: *mut c_void) -> u32>,
    user_data: *mut c_void,
    hz: u32,
    out: *mut *mut stockade_tick_clock,
) -> stockade_status {
    ffi_boundary!({
        let read = read.ok_or(stockade_status::NullArgument)?;
        let out = Out::new(out)?;
        let slot = crate::boundary::storage::<CTickClock>(
            storage,
            storage_size,
            STOCKADE_TICK_CLOCK_SIZE,
        )?;
        let clock = TickClock::new(CTickSource { read, user_data }, hz);
        // SAFETY: `slot` is non-NULL, large and aligned enough (checked),
        // writable (function contract); `out` is valid for writes.
        unsafe {
            slot.write(clock);
            out.write(slot.cast());
        }
        Ok(())
    })
}

/// # Safety
///
/// `tick` must come from `stockade_tick_clock_init`.
unsafe fn tick_clock<'a>(
    tick: *const stockade_tick_clock,
) -> Result<&'a CTickClock, stockade_status> {
    // SAFETY: a non-NULL `tick` points to an initialised clock.
    unsafe { arg(tick.cast::<CTickClock>()) }
}

/// `*out_ticks` = the extended 64-bit tick count (wraps of the raw
/// counter counted).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`.
/// - Thread safety: any thread, interrupt handlers included. Blocks: no.
///
/// # Safety
///
/// `tick` must come from `stockade_tick_clock_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_tick_clock_ticks(
    tick: *const stockade_tick_clock,
    out_ticks: *mut u64,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let tick = unsafe { tick_clock(tick) }?;
        let out = Out::new(out_ticks)?;
        // SAFETY: `out_ticks` is valid for writes (function contract).
        unsafe { out.write(tick.ticks()) };
        Ok(())
    })
}

/// `*out` = a `stockade_clock` reading `tick` (its `user_data` is `tick`),
/// to pass to every function that takes a clock.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`.
/// - Ownership: `*out` borrows `tick`: use it only while `tick` lives.
/// - Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `tick` must come from `stockade_tick_clock_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_tick_clock_as_clock(
    tick: *const stockade_tick_clock,
    out: *mut stockade_clock,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        unsafe { tick_clock(tick) }?;
        let out = Out::new(out)?;
        // SAFETY: `out` is valid for writes (function contract).
        unsafe {
            out.write(stockade_clock {
                now_ns: Some(tick_clock_now_ns),
                user_data: tick.cast_mut().cast(),
            })
        };
        Ok(())
    })
}

unsafe extern "C" fn tick_clock_now_ns(user_data: *mut c_void) -> u64 {
    crate::boundary::run_value(0, || {
        // SAFETY: `user_data` is the tick clock `stockade_tick_clock_as_clock`
        // checked; the caller keeps it alive while using this clock.
        match unsafe { tick_clock(user_data.cast_const().cast()) } {
            Ok(tick) => tick.now().as_nanos(),
            Err(_) => 0,
        }
    })
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU32, Ordering};

    unsafe extern "C" fn read_counter(user_data: *mut c_void) -> u32 {
        // SAFETY: the tests pass a pointer to a live AtomicU32.
        unsafe { &*(user_data as *const AtomicU32) }.load(Ordering::Relaxed)
    }

    #[repr(C, align(8))]
    struct Storage([u8; STOCKADE_TICK_CLOCK_SIZE]);

    #[test]
    fn tick_clock_on_storage_extends_the_counter_across_a_wrap() {
        let counter = AtomicU32::new(u32::MAX - 1);
        let mut buf = Storage([0; STOCKADE_TICK_CLOCK_SIZE]);
        let mut tick = core::ptr::null_mut();
        // SAFETY: valid storage and out-pointer; the counter outlives the clock.
        let status = unsafe {
            stockade_tick_clock_init(
                buf.0.as_mut_ptr().cast(),
                STOCKADE_TICK_CLOCK_SIZE,
                Some(read_counter),
                (&counter as *const AtomicU32).cast_mut().cast(),
                1_000,
                &mut tick,
            )
        };
        assert_eq!(status, stockade_status::Ok);
        let mut clock = stockade_clock {
            now_ns: None,
            user_data: core::ptr::null_mut(),
        };
        let mut ns = 0;
        let mut ticks = 0;
        // SAFETY: `tick` was initialised above; valid out-pointers.
        unsafe {
            assert_eq!(
                stockade_tick_clock_as_clock(tick, &mut clock),
                stockade_status::Ok
            );
            assert_eq!(stockade_clock_now_ns(&clock, &mut ns), stockade_status::Ok);
            assert_eq!(ns, u64::from(u32::MAX - 1) * 1_000_000);
            counter.store(5, Ordering::Relaxed); // wrapped
            assert_eq!(
                stockade_tick_clock_ticks(tick, &mut ticks),
                stockade_status::Ok
            );
        }
        assert_eq!(ticks, (1u64 << 32) + 5);
    }

    #[test]
    fn null_clock_callback_is_a_null_argument() {
        let clock = stockade_clock {
            now_ns: None,
            user_data: core::ptr::null_mut(),
        };
        let mut ns = 0;
        // SAFETY: valid pointers; the NULL callback is what is tested.
        let status = unsafe { stockade_clock_now_ns(&clock, &mut ns) };
        assert_eq!(status, stockade_status::NullArgument);
        // SAFETY: NULL clock is allowed (returns a status).
        let status = unsafe { stockade_clock_now_ns(core::ptr::null(), &mut ns) };
        assert_eq!(status, stockade_status::NullArgument);
    }
}
