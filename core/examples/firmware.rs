//! Firmware-style use of the core: `static` state machines driven by a
//! wrapping 32-bit tick counter, no heap, no std in the logic.
//!
//! The `firmware` module below is what would run on a Cortex-M: a sensor
//! task sends readings to a flaky modem through a rate limiter (the
//! network's quota: 5 uplinks per second) and a circuit breaker (stop
//! hammering a modem that keeps failing). On a real chip `read_systick`
//! reads the SysTick/timer counter; here the host simulates it, starting
//! just before the 32-bit counter wraps to show that time stays monotonic.
//!
//! Run: `cargo run -p stockade --example firmware`

#[cfg(not(stockade_loom))] // loom's atomics have no `const` constructors: no statics
use core::sync::atomic::{AtomicU32, Ordering};

/// The simulated hardware: a 1 kHz tick counter and a modem that fails
/// between t = 2 s and t = 4 s.
#[cfg(not(stockade_loom))] // loom's atomics have no `const` constructors: no statics
mod hardware {
    use super::*;

    /// The raw 32-bit tick counter; starts 1.5 s before it wraps.
    pub(crate) static SYSTICK: AtomicU32 = AtomicU32::new(u32::MAX - 1_500);
    static START: AtomicU32 = AtomicU32::new(u32::MAX - 1_500);

    pub(crate) fn read_systick() -> u32 {
        SYSTICK.load(Ordering::Relaxed)
    }

    /// Milliseconds since boot, for the log.
    pub(crate) fn uptime_ms() -> u32 {
        read_systick().wrapping_sub(START.load(Ordering::Relaxed))
    }

    pub(crate) fn modem_send(reading: u32) -> Result<(), ()> {
        let t = uptime_ms();
        if (2_000..4_000).contains(&t) || reading == 0 {
            Err(())
        } else {
            Ok(())
        }
    }
}

/// The firmware: only `core` and `stockade`, everything in `static`s.
#[cfg(not(stockade_loom))] // loom's atomics have no `const` constructors: no statics
mod firmware {
    use core::time::Duration;

    use stockade::breaker::{BreakerConfig, CircuitBreaker};
    use stockade::clock::TickClock;
    use stockade::limiter::{Mode, RateLimiter, RateLimiterConfig};

    use super::hardware;

    /// The monotonic clock over the wrapping 1 kHz counter.
    pub(crate) static CLOCK: TickClock<fn() -> u32> = TickClock::new(hardware::read_systick, 1_000);

    /// Open after 3 consecutive modem failures; probe again after 1 s;
    /// close after a 500 ms half-open round with a successful probe.
    pub(crate) static BREAKER: CircuitBreaker = match CircuitBreaker::new(
        BreakerConfig::DEFAULT
            .with_failure_threshold(3)
            .with_reset_timeout(Duration::from_secs(1))
            .with_half_open_timeout(Duration::from_millis(500)),
    ) {
        Ok(b) => b,
        Err(_) => panic!("invalid breaker configuration"), // a compile-time error
    };

    /// The network's quota: never more than 5 uplinks in any 1 s window.
    pub(crate) static LIMITER: RateLimiter = match RateLimiter::new(
        RateLimiterConfig::DEFAULT
            .with_requests_per_period(5)
            .with_period(Duration::from_secs(1))
            .with_mode(Mode::Strict),
    ) {
        Ok(l) => l,
        Err(_) => panic!("invalid limiter configuration"),
    };

    /// What the sensor task did with one reading.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Uplink {
        Sent,
        ModemFailed,
        BreakerOpen { retry_in_ms: u64 },
        OverQuota { retry_in_ms: u64 },
    }

    /// Called by the sensor task (or an interrupt handler) for each reading.
    pub(crate) fn send_reading(reading: u32) -> Uplink {
        if let Err(e) = LIMITER.try_acquire(&CLOCK) {
            let retry = e.retry_after().unwrap_or_default();
            return Uplink::OverQuota {
                retry_in_ms: retry.as_millis() as u64,
            };
        }
        let permit = match BREAKER.try_acquire(&CLOCK) {
            Ok(permit) => permit,
            Err(rejected) => {
                return Uplink::BreakerOpen {
                    retry_in_ms: rejected.retry_after().unwrap_or(Duration::MAX).as_millis() as u64,
                };
            }
        };
        match hardware::modem_send(reading) {
            Ok(()) => {
                permit.success(&CLOCK);
                Uplink::Sent
            }
            Err(()) => {
                permit.failure(&CLOCK);
                Uplink::ModemFailed
            }
        }
    }
}

/// Under `--cfg stockade_loom` (clippy of every target) there is nothing to run.
#[cfg(stockade_loom)]
fn main() {}

#[cfg(not(stockade_loom))] // loom's atomics have no `const` constructors: no statics
fn main() {
    use firmware::Uplink;
    use stockade::clock::Clock;

    println!("RAM per state machine (this build's layout):");
    let sizes = [
        (
            "CircuitBreaker",
            size_of::<stockade::breaker::CircuitBreaker>(),
        ),
        ("RateLimiter", size_of::<stockade::limiter::RateLimiter>()),
        ("Bulkhead", size_of::<stockade::bulkhead::Bulkhead>()),
        ("Backoff", size_of::<stockade::backoff::Backoff>()),
        (
            "BackoffSchedule",
            size_of::<stockade::backoff::BackoffSchedule>(),
        ),
        ("Deadline", size_of::<stockade::deadline::Deadline>()),
        ("RetryBudget", size_of::<stockade::budget::RetryBudget>()),
        (
            "TickClock",
            size_of::<stockade::clock::TickClock<fn() -> u32>>(),
        ),
    ];
    for (name, bytes) in sizes {
        println!("  {name:<16}{bytes:>4} bytes");
    }
    println!();

    let mut counts = [0u32; 4];
    let mut last_state = firmware::BREAKER.state();
    // A reading every 100 ms for 6 s; the counter wraps at t = 1.5 s.
    for step in 1..=60u32 {
        hardware::SYSTICK.fetch_add(100, Ordering::Relaxed);
        let outcome = firmware::send_reading(step);
        let slot = match outcome {
            Uplink::Sent => 0,
            Uplink::ModemFailed => 1,
            Uplink::BreakerOpen { .. } => 2,
            Uplink::OverQuota { .. } => 3,
        };
        counts[slot] += 1;
        let state = firmware::BREAKER.state();
        if state != last_state || slot == 1 || slot == 2 || step == 15 || step == 16 {
            println!(
                "t={:>5} ms raw={:>10} clock={:>5} ms  {:<36} breaker {:?}",
                hardware::uptime_ms(),
                hardware::read_systick(),
                firmware::CLOCK.now().as_nanos() / 1_000_000 - (u32::MAX as u64 - 1_500),
                format!("{outcome:?}"),
                state
            );
            last_state = state;
        }
    }
    println!();
    println!(
        "sent {}, modem failures {}, refused by the breaker {}, held back by the quota {}",
        counts[0], counts[1], counts[2], counts[3]
    );
}
