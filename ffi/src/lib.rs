//! # Stockade's C ABI
//!
//! `libstockade.so` / `libstockade.a` and `include/stockade.h` (generated
//! from this crate by cbindgen, `ffi/cbindgen.toml`). Every exported symbol
//! starts with `stockade_`. This crate is a thin translation of the core
//! crate `stockade`: each function converts C arguments, calls the core,
//! and converts the result back.
//!
//! Two tiers:
//!
//! - **Core tier** (always built, `no_std`, no heap, no threads): the
//!   backoff calculator, deadlines, the clock adapters — and, after the
//!   core's refactor lands, breaker, limiter and bulkhead — on storage the
//!   caller provides (`_init` into a buffer of at least `STOCKADE_X_SIZE`
//!   bytes aligned to `STOCKADE_X_ALIGN`).
//! - **Blocking tier** (feature `std`, the default): heap handles with
//!   `_new`/`_free`, callbacks, waiting, registries, events; and, with
//!   feature `shared-memory` (default; Linux), `_new_shared` for a limiter,
//!   breaker or bulkhead that every process on the host shares
//!   ([`blocking::shared`]); and with feature `redis` (default; hosted
//!   tier only), `_new_redis` for one that a fleet shares through a Redis
//!   server ([`blocking::redis`]).
//!
//! # Conventions (the header repeats them)
//!
//! - Every fallible function returns a [`stockade_status`]; results go
//!   through out-parameters, written only on success (and the size needed
//!   on `STOCKADE_STATUS_BUFFER_TOO_SMALL`). Exception: the
//!   deadline queries ([`deadline::stockade_deadline_is_expired`],
//!   [`deadline::stockade_deadline_remaining_ms`]) return a small struct
//!   of the answer and its status, in registers where the C ABI allows.
//! - A NULL pointer argument returns `STOCKADE_STATUS_NULL_ARGUMENT`
//!   (optional arguments say so); `_free(NULL)` is a no-op.
//! - An invalid config returns `STOCKADE_STATUS_INVALID_CONFIG` and, if the
//!   caller passed a [`stockade_config_error`], fills it with the option's
//!   number and the problem (hosted builds: also its name and a message).
//! - No panic crosses the boundary: every exported function runs inside
//!   one boundary (`boundary::run`), which turns a panic into
//!   `STOCKADE_STATUS_INTERNAL_ERROR` under `std`; without `std` the core
//!   does not panic on any input and the firmware build's panic handler
//!   traps. (The breaker's acquire, report and call run a fast path that
//!   cannot panic outside it, and everything else inside it:
//!   `boundary::no_unwind`; `stockade_deadline_is_expired` is only such a
//!   fast path.)
//!
//! # Safety (common to every function)
//!
//! Every non-NULL pointer argument must point to a valid, initialised
//! object of the named type for the duration of the call (storage
//! arguments: to writable memory of the given size); handles must come
//! from the matching `_init`/`_new` and not have been freed.
#![cfg_attr(all(not(feature = "std"), not(test)), no_std)]
#![allow(non_camel_case_types)]

#[macro_use]
mod boundary;

pub mod backoff;
#[cfg(feature = "std")]
pub mod blocking;
pub mod breaker;
pub mod budget;
pub mod bulkhead;
pub mod clock;
pub mod config_error;
pub mod deadline;
pub mod limiter;
pub mod status;
mod time;
pub mod version;

pub use config_error::stockade_config_error;
pub use status::stockade_status;

/// The core-tier build's panic handler (`--no-default-features`, built with
/// `panic = "abort"`: libstockade.a for firmware, or for a host program
/// that wants no Rust runtime). The core does not panic on any input, so
/// this is unreachable in practice; if it is reached it traps (`udf` on
/// Arm, which raises a HardFault the firmware handles), or spins elsewhere.
/// This crate builds no rlib, so no Rust program links a second handler.
#[cfg(all(not(feature = "std"), not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    #[cfg(target_arch = "arm")]
    // SAFETY: `udf` raises an undefined-instruction exception and does not
    // return; it touches no memory.
    unsafe {
        core::arch::asm!("udf #0", options(noreturn, nomem, nostack));
    }
    #[cfg(not(target_arch = "arm"))]
    loop {
        core::hint::spin_loop();
    }
}
