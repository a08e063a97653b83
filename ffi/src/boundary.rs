//! The one place where C meets Rust: the panic boundary, NULL checks and
//! caller-storage checks.
//!
//! Every exported function body runs in [`run`] (or [`run_value`]), so a
//! panic never unwinds into C. Bodies return `Result<(), stockade_status>`
//! and use `?` on the helpers here: [`arg`] / [`arg_mut`] for a pointer that
//! must not be NULL, [`storage`] for caller-provided memory.

use core::ffi::c_void;

use crate::status::stockade_status;

/// Runs `body`, turning `Err(status)` into `status`, `Ok(())` into
/// `STOCKADE_STATUS_OK`, and (under `std`) a panic into
/// `STOCKADE_STATUS_INTERNAL_ERROR`. Without `std` there is no unwinding:
/// the core does not panic on any input, and the firmware panic handler
/// traps.
#[inline(always)]
pub(crate) fn run(body: impl FnOnce() -> Result<(), stockade_status>) -> stockade_status {
    let result = run_value(Err(stockade_status::InternalError), body);
    match result {
        Ok(()) => stockade_status::Ok,
        Err(status) => status,
    }
}

/// Runs `body`, returning `on_panic` if it panics (under `std`).
#[inline(always)]
pub(crate) fn run_value<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    #[cfg(feature = "std")]
    {
        match std::panic::catch_unwind(core::panic::AssertUnwindSafe(body)) {
            Ok(value) => value,
            Err(_) => on_panic,
        }
    }
    #[cfg(not(feature = "std"))]
    {
        let _ = on_panic;
        body()
    }
}

/// The body of an exported function split in two for speed: a fast path
/// that **cannot panic** (pointer checks, loads, compares, stores of
/// values already computed: no arithmetic that may overflow, no indexing,
/// no call into code that may panic), run here without [`run`]'s panic
/// boundary, and an out-of-line general path that runs inside [`run`]
/// itself. Without a landing pad the exported function needs no stack
/// frame on its fast path, and stays small enough for a C compiler to
/// inline under cross-language LTO. The body returns the status: `Ok` the
/// status to return (the general path's, or `stockade_status::Ok`), `Err`
/// a check's refusal, so that `?` works.
#[inline(always)]
pub(crate) fn no_unwind(
    body: impl FnOnce() -> Result<stockade_status, stockade_status>,
) -> stockade_status {
    match body() {
        Ok(status) | Err(status) => status,
    }
}

/// `ffi_boundary!({ body })`: the exported function's body, run by [`run`].
macro_rules! ffi_boundary {
    ($body:block) => {
        $crate::boundary::run(
            || -> ::core::result::Result<(), $crate::status::stockade_status> { $body },
        )
    };
}

/// The object behind a pointer argument that must not be NULL.
///
/// # Safety
///
/// A non-NULL `ptr` must point to a valid `T` for `'a`.
#[inline(always)]
pub(crate) unsafe fn arg<'a, T>(ptr: *const T) -> Result<&'a T, stockade_status> {
    // SAFETY: the caller guarantees a non-NULL `ptr` is valid for 'a.
    unsafe { ptr.as_ref() }.ok_or(stockade_status::NullArgument)
}

/// The writable object behind a pointer argument that must not be NULL.
///
/// # Safety
///
/// A non-NULL `ptr` must point to a valid `T`, not aliased, for `'a`.
#[inline(always)]
pub(crate) unsafe fn arg_mut<'a, T>(ptr: *mut T) -> Result<&'a mut T, stockade_status> {
    // SAFETY: the caller guarantees a non-NULL `ptr` is valid and unique for 'a.
    unsafe { ptr.as_mut() }.ok_or(stockade_status::NullArgument)
}

/// An out-parameter that must not be NULL, checked before any work is done
/// (its target may be uninitialised: write it with [`Out::write`]).
/// Transparent: an `extern "C"` helper may take it as the pointer it is.
#[repr(transparent)]
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// Checks `ptr` for NULL.
    #[inline(always)]
    pub(crate) fn new(ptr: *mut T) -> Result<Out<T>, stockade_status> {
        if ptr.is_null() {
            Err(stockade_status::NullArgument)
        } else {
            Ok(Out(ptr))
        }
    }

    /// Writes the result (without reading or dropping the old contents).
    ///
    /// # Safety
    ///
    /// The pointer given to [`Out::new`] must be valid for a write of `T`.
    #[inline(always)]
    pub(crate) unsafe fn write(self, value: T) {
        // SAFETY: non-NULL (checked in `new`); valid for writes per the
        // caller's contract. `write` does not drop the old contents, which
        // may be uninitialised.
        unsafe { self.0.write(value) }
    }
}

/// Checks caller-provided storage for a `T`: not NULL, at least
/// `size_of::<T>()` bytes, aligned to `align_of::<T>()`.
#[inline(always)]
pub(crate) fn storage<T>(
    ptr: *mut c_void,
    size: usize,
    header_size: usize,
) -> Result<*mut T, stockade_status> {
    if ptr.is_null() {
        return Err(stockade_status::NullArgument);
    }
    // The header's `_SIZE` is the contract (it covers every target's
    // layout), so a buffer that happens to suffice here is still refused.
    if size < header_size.max(core::mem::size_of::<T>()) {
        return Err(stockade_status::StorageTooSmall);
    }
    if (ptr as usize) % core::mem::align_of::<T>() != 0 {
        return Err(stockade_status::StorageMisaligned);
    }
    Ok(ptr.cast())
}

/// Asserts at compile time that the header constants `size`/`align` can
/// hold a `T`: the C caller provides `size` bytes aligned to `align`.
/// The constants may be larger than this target needs (they cover every
/// supported target's layout), never smaller.
macro_rules! assert_storage_fits {
    ($t:ty, $size:expr, $align:expr) => {
        const _: () = {
            assert!(
                core::mem::size_of::<$t>() <= $size,
                "header _SIZE too small"
            );
            assert!(
                core::mem::align_of::<$t>() <= $align,
                "header _ALIGN too small"
            );
            assert!(($align as usize).is_power_of_two());
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_checks_null_size_and_alignment() {
        let mut buf = [0u64; 4];
        let p = buf.as_mut_ptr().cast::<c_void>();
        assert_eq!(
            storage::<u64>(core::ptr::null_mut(), 8, 8).unwrap_err(),
            stockade_status::NullArgument
        );
        assert_eq!(
            storage::<u64>(p, 7, 8).unwrap_err(),
            stockade_status::StorageTooSmall
        );
        let odd = p.cast::<u8>().wrapping_add(1).cast::<c_void>();
        assert_eq!(
            storage::<u64>(odd, 16, 8).unwrap_err(),
            stockade_status::StorageMisaligned
        );
        assert!(storage::<u64>(p, 8, 8).is_ok());
        assert_eq!(
            storage::<u64>(p, 8, 16).unwrap_err(),
            stockade_status::StorageTooSmall
        );
    }

    #[cfg(feature = "std")]
    #[test]
    fn a_panic_becomes_internal_error() {
        let status = run(|| panic!("boom"));
        assert_eq!(status, stockade_status::InternalError);
        assert_eq!(
            run(|| Err(stockade_status::QueueFull)),
            stockade_status::QueueFull
        );
        assert_eq!(run(|| Ok(())), stockade_status::Ok);
    }
}
