//! The lean constructors (`CircuitBreaker::from_raw_lean`,
//! `RateLimiter::from_raw_lean`) against the describing ones: for random
//! plain configs, edge values included, the lean constructor refuses
//! exactly what `new(raw.to_config()?)` refuses and otherwise builds the
//! same machine, field for field (compared through `Debug`, which prints
//! every field, atomics included).
#![cfg(not(stockade_loom))]

use proptest::prelude::*;
use stockade::breaker::{CircuitBreaker, RawBreakerConfig};
use stockade::limiter::{RateLimiter, RawRateLimiterConfig};

/// A `u32` near the edges the checks care about, or anything.
fn count() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(100),
        Just(101),
        Just(255),
        Just(256),
        Just(65_535),
        Just(65_536),
        Just((1 << 19) - 1),
        Just(1 << 19),
        Just((1 << 19) + 1),
        Just(u32::MAX),
        1u32..=20,
        any::<u32>(),
    ]
}

/// Milliseconds near the edges (zero, the 32-bit breaker's ≈ 9.77 h
/// timeout, the 64-bit ≈ 417 days, nanosecond overflow), or anything.
fn millis() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(100),
        Just(1_000),
        Just(60_000),
        Just(35_184_372),
        Just(35_184_373),
        Just(36_028_797_018),
        Just(36_028_797_019),
        Just(u64::MAX / 1_000_000),
        Just(u64::MAX / 1_000_000 + 1),
        Just(u64::MAX),
        1u64..=100_000,
        any::<u64>(),
    ]
}

fn breaker_config() -> impl Strategy<Value = RawBreakerConfig> {
    (
        (count(), count(), prop_oneof![Just(0u32), count()]),
        (prop_oneof![Just(0u32), count()], count(), count()),
        (
            millis(),
            millis(),
            millis(),
            prop_oneof![Just(0u64), millis()],
        ),
    )
        .prop_map(
            |((ft, probes, to_close), (rate, window, minimum), (reset, half, monitor, slow))| {
                RawBreakerConfig {
                    failure_threshold: ft,
                    half_open_max_probes: probes,
                    half_open_successes_to_close: to_close,
                    failure_rate_threshold: rate,
                    failure_rate_window_size: window,
                    failure_rate_minimum_calls: minimum,
                    reset_timeout: reset,
                    half_open_timeout: half,
                    monitor_interval: monitor,
                    slow_call_threshold: slow,
                }
            },
        )
}

fn limiter_config() -> impl Strategy<Value = RawRateLimiterConfig> {
    (
        (millis(), millis()),
        (count(), prop_oneof![Just(0u32), count()], count()),
        prop_oneof![Just(0u8), Just(1), Just(2), any::<u8>()],
    )
        .prop_map(
            |((period, timeout), (requests, burst, queue), mode)| RawRateLimiterConfig {
                period_ms: period,
                queue_timeout_ms: timeout,
                requests_per_period: requests,
                burst,
                max_queue_size: queue,
                mode,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn the_lean_breaker_is_the_breaker(raw in breaker_config()) {
        let lean = CircuitBreaker::from_raw_lean(&raw);
        let described = raw.to_config().and_then(CircuitBreaker::new);
        match (lean, described) {
            (Some(lean), Ok(described)) => {
                prop_assert_eq!(format!("{lean:?}"), format!("{described:?}"));
            }
            (None, Err(_)) => {}
            (lean, described) => {
                prop_assert!(false, "{raw:?}: lean {:?}, new {:?}", lean.is_some(), described.err());
            }
        }
    }

    #[test]
    fn the_lean_limiter_is_the_limiter(raw in limiter_config()) {
        let lean = RateLimiter::from_raw_lean(&raw);
        let described = raw.to_config().and_then(RateLimiter::new);
        match (lean, described) {
            (Some(lean), Ok(described)) => {
                prop_assert_eq!(format!("{lean:?}"), format!("{described:?}"));
            }
            (None, Err(_)) => {}
            (lean, described) => {
                prop_assert!(false, "{raw:?}: lean {:?}, new {:?}", lean.is_some(), described.err());
            }
        }
    }
}

/// The edge cases spelled out: the defaults are accepted, and each kind
/// of refusal is refused by both.
#[test]
fn defaults_pass_and_refusals_are_refused() {
    let b = RawBreakerConfig::DEFAULT;
    assert!(CircuitBreaker::from_raw_lean(&b).is_some());
    for bad in [
        RawBreakerConfig {
            failure_threshold: 0,
            ..b
        },
        RawBreakerConfig {
            half_open_max_probes: 0,
            ..b
        },
        RawBreakerConfig {
            failure_threshold: u32::MAX,
            ..b
        },
        RawBreakerConfig {
            reset_timeout: 0,
            ..b
        },
        RawBreakerConfig {
            half_open_timeout: u64::MAX,
            ..b
        },
        RawBreakerConfig {
            monitor_interval: 0,
            ..b
        },
        RawBreakerConfig {
            failure_rate_threshold: 101,
            ..b
        },
    ] {
        assert!(CircuitBreaker::from_raw_lean(&bad).is_none(), "{bad:?}");
        assert!(
            bad.to_config().and_then(CircuitBreaker::new).is_err(),
            "{bad:?}"
        );
    }
    let l = RawRateLimiterConfig::DEFAULT;
    assert!(RateLimiter::from_raw_lean(&l).is_some());
    for bad in [
        RawRateLimiterConfig {
            requests_per_period: 0,
            ..l
        },
        RawRateLimiterConfig { period_ms: 0, ..l },
        RawRateLimiterConfig { mode: 2, ..l },
        RawRateLimiterConfig {
            mode: 1,
            burst: 11,
            ..l
        },
        RawRateLimiterConfig {
            max_queue_size: u32::MAX,
            queue_timeout_ms: u64::MAX,
            ..l
        },
    ] {
        if bad.max_queue_size == u32::MAX
            && RateLimiter::new(l.to_config().unwrap())
                .unwrap()
                .wrap_period()
                .as_nanos()
                == 1 << 64
        {
            // The 64-bit layout takes any queue.
            continue;
        }
        assert!(RateLimiter::from_raw_lean(&bad).is_none(), "{bad:?}");
        assert!(
            bad.to_config().and_then(RateLimiter::new).is_err(),
            "{bad:?}"
        );
    }
}
