//! The firmware footprint probe: the smallest honest program that uses
//! Stockade on a Cortex-M4F, so that `.text` counts what a real firmware
//! links for a breaker and a limiter (see `scripts/firmware-size.sh`).
//!
//! Built for a bare-metal target (`target_os = "none"`) it is a `no_std`,
//! `no_main` ELF whose entry point `_start` is the only root the linker's
//! `--gc-sections` keeps: everything else in `.text` is there because the
//! loop below reaches it. No runtime crate, no vector table, no linker
//! script: their size does not depend on Stockade. The empty program (no
//! feature) measures what is left (the loop and the panic handler).
//!
//! The loop is what a firmware does with each machine: a static circuit
//! breaker guarding a device call (admit, report success or failure, and
//! on rejection wait `retry_after`), a static strict rate limiter in front
//! of a send (on rejection, wait `retry_after`), both on a [`TickClock`]
//! over a free-running 32-bit 1 MHz timer. The "device" is memory-mapped
//! I/O read and written with volatile accesses, so nothing is optimised
//! away.
//!
//! Features `breaker` and `limiter` select the machines. On any other
//! target (the host, in `cargo test --workspace`) the program is an empty
//! `main`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod firmware {
    use core::panic::PanicInfo;
    use core::ptr;
    #[cfg(any(feature = "breaker", feature = "limiter"))]
    use core::time::Duration;

    #[cfg(feature = "breaker")]
    use stockade::breaker::{BreakerConfig, CircuitBreaker};
    #[cfg(any(feature = "breaker", feature = "limiter"))]
    use stockade::clock::TickClock;
    #[cfg(feature = "limiter")]
    use stockade::limiter::{Mode, RateLimiter, RateLimiterConfig};

    /// A free-running 32-bit up-counter at 1 MHz (e.g. a TIM2 `CNT`).
    const TIMER_COUNT: *const u32 = 0x4000_0024 as *const u32;
    /// The device: reading it makes the guarded call (non-zero = it failed).
    #[cfg(feature = "breaker")]
    const DEVICE: *const u32 = 0x4000_4400 as *const u32;
    /// Where the firmware sends what it decided (a UART data register).
    const OUT: *mut u32 = 0x4000_4404 as *mut u32;

    fn read_timer() -> u32 {
        // SAFETY: a memory-mapped timer register, always readable.
        unsafe { ptr::read_volatile(TIMER_COUNT) }
    }

    #[cfg(any(feature = "breaker", feature = "limiter"))]
    static CLOCK: TickClock<fn() -> u32> = TickClock::new(read_timer, 1_000_000);

    #[cfg(feature = "breaker")]
    static BREAKER: CircuitBreaker = match CircuitBreaker::new(
        BreakerConfig::DEFAULT
            .with_failure_threshold(5)
            .with_reset_timeout(Duration::from_secs(10)),
    ) {
        Ok(breaker) => breaker,
        Err(_) => panic!("invalid breaker configuration"),
    };

    #[cfg(feature = "limiter")]
    static LIMITER: RateLimiter = match RateLimiter::new(
        RateLimiterConfig::DEFAULT
            .with_mode(Mode::Strict)
            .with_requests_per_period(30)
            .with_period(Duration::from_secs(1)),
    ) {
        Ok(limiter) => limiter,
        Err(_) => panic!("invalid rate limiter configuration"),
    };

    #[cfg(feature = "breaker")]
    fn device_call_failed() -> bool {
        // SAFETY: a memory-mapped device register, always readable.
        unsafe { ptr::read_volatile(DEVICE) != 0 }
    }

    fn send(word: u32) {
        // SAFETY: a memory-mapped data register, always writable.
        unsafe { ptr::write_volatile(OUT, word) }
    }

    /// "Wait this long": what a firmware hands its scheduler.
    #[cfg(any(feature = "breaker", feature = "limiter"))]
    fn wait(retry_after: Option<Duration>) {
        match retry_after {
            Some(d) => {
                send(d.as_secs() as u32);
                send(d.subsec_nanos());
            }
            None => send(u32::MAX),
        }
    }

    /// The entry point (the linker's default entry symbol).
    #[unsafe(no_mangle)]
    extern "C" fn _start() -> ! {
        loop {
            #[cfg(feature = "breaker")]
            match BREAKER.try_acquire(&CLOCK) {
                Ok(permit) => {
                    let changed = if device_call_failed() {
                        permit.failure(&CLOCK)
                    } else {
                        permit.success(&CLOCK)
                    };
                    send(changed.is_some() as u32);
                }
                Err(rejected) => wait(rejected.retry_after()),
            }
            #[cfg(feature = "limiter")]
            match LIMITER.try_acquire(&CLOCK) {
                Ok(()) => send(1),
                Err(limited) => wait(limited.retry_after()),
            }
            #[cfg(not(any(feature = "breaker", feature = "limiter")))]
            send(read_timer());
        }
    }

    #[panic_handler]
    fn panic(_: &PanicInfo<'_>) -> ! {
        // No message: formatting it would link `core::fmt`.
        loop {}
    }
}
