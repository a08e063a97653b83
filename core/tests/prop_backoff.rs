//! Backoff properties over random configurations and seeds: delays never
//! exceed `max_delay`, the base sequence never decreases and follows a
//! naive reference, jitter stays in its bounds, schedules are deterministic,
//! hand out at most `max_attempts - 1` delays and respect the time budget.
#![cfg(not(stockade_loom))]

use core::time::Duration;

use proptest::prelude::*;
use stockade::backoff::{Backoff, BackoffConfig, Jitter};

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
    ]
}

fn factor() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(1.0),
        Just(2.0),
        1.0f64..1.000_001,
        1.0f64..4.0,
        1.0f64..1e6,
        Just(f64::MAX),
    ]
}

fn nanos() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        0u64..1_000_000,
        0u64..100_000_000_000,
        any::<u64>(),
    ]
}

fn config() -> impl Strategy<Value = BackoffConfig> {
    (
        nanos(),
        nanos(),
        factor(),
        1u32..40,
        prop::option::of(1u64..200_000_000_000),
        jitter(),
    )
        .prop_map(|(a, b, factor, attempts, budget, jitter)| {
            let (initial, max) = if a <= b { (a, b) } else { (b, a) };
            BackoffConfig {
                initial_delay: Duration::from_nanos(initial),
                backoff_factor: factor,
                max_delay: Duration::from_nanos(max),
                max_attempts: attempts,
                max_elapsed: budget.map(Duration::from_nanos),
                jitter,
            }
        })
}

fn retry() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..70, any::<u32>(), Just(u32::MAX)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn base_delays_are_capped_and_monotone(config in config(), n in retry()) {
        let b = Backoff::new(config).expect("valid config");
        let d = b.delay(n);
        prop_assert!(d <= config.max_delay);
        prop_assert!(d >= config.initial_delay);
        prop_assert!(d <= b.delay(n.saturating_add(1)), "delay({}) > delay({})", n, n.saturating_add(1));
        prop_assert!(b.delay(n.saturating_sub(1)) <= d);
    }

    /// Against a naive reference: repeated multiplication in f64 for small
    /// retry numbers (agrees up to float rounding).
    #[test]
    fn base_delays_follow_the_formula(config in config(), n in 1u32..64) {
        let b = Backoff::new(config).expect("valid config");
        let init = config.initial_delay.as_nanos() as f64;
        let max = config.max_delay.as_nanos() as f64;
        let mut want = init;
        for _ in 1..n {
            want *= config.backoff_factor;
        }
        let want = want.min(max);
        let got = b.delay(n).as_nanos() as f64;
        let tolerance = want * 1e-12 + 1.0;
        prop_assert!((got - want).abs() <= tolerance, "delay({}) = {}, want {}", n, got, want);
    }

    #[test]
    fn schedules_stay_in_bounds(config in config(), seed in any::<u64>(), steps in prop::collection::vec(0u64..20_000_000_000, 40)) {
        let b = Backoff::new(config).expect("valid config");
        let mut schedule = b.schedule(seed);
        let mut replay = b.schedule(seed);
        let mut elapsed = Duration::ZERO;
        let mut delays = Vec::new();
        let mut prev = config.initial_delay;
        for step in steps {
            let next = schedule.next_delay(elapsed);
            prop_assert_eq!(next, replay.next_delay(elapsed), "not deterministic");
            let Some(d) = next else { break };
            let retry = delays.len() as u32 + 1;
            let base = b.delay(retry);
            prop_assert!(d <= config.max_delay);
            match config.jitter {
                Jitter::None => prop_assert_eq!(d, base),
                Jitter::Full => prop_assert!(d <= base),
                Jitter::Equal => prop_assert!(d <= base && d >= base / 2, "{:?} vs {:?}", d, base),
                Jitter::Decorrelated => {
                    prop_assert!(d >= config.initial_delay);
                    prop_assert!(d.as_nanos() <= prev.as_nanos() * 3);
                    prev = d;
                }
            }
            if let Some(budget) = config.max_elapsed {
                prop_assert!(elapsed + d <= budget, "{:?} + {:?} > {:?}", elapsed, d, budget);
            }
            delays.push(d);
            prop_assert_eq!(schedule.attempts_made() as usize, delays.len());
            // The caller sleeps `d`, then the attempt takes `step`.
            elapsed = elapsed.saturating_add(d).saturating_add(Duration::from_nanos(step));
        }
        prop_assert!(delays.len() < config.max_attempts as usize);
        // Without a budget every attempt gets its delay.
        if config.max_elapsed.is_none() {
            prop_assert_eq!(delays.len(), config.max_attempts as usize - 1);
            prop_assert_eq!(schedule.attempts_made(), config.max_attempts);
        }
        // 40 steps outlast any schedule here (at most 39 attempts).
        prop_assert!(schedule.is_exhausted());
        prop_assert_eq!(schedule.next_delay(Duration::ZERO), None);
    }

    /// Invalid configurations are rejected, never accepted half-way.
    #[test]
    fn invalid_factors_are_rejected(f in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), -1e9f64..0.999_999]) {
        let r = Backoff::new(BackoffConfig::DEFAULT.with_backoff_factor(f));
        prop_assert_eq!(r.map_err(|e| e.option.as_str()), Err("backoff_factor"));
    }
}
