//! The registry rules, for every pattern: `new` registers, the spec's
//! getters find that same instance (or create one with the defaults), a
//! taken name is an error, `dispose` unregisters, `unregistered` and
//! `with_timer` stay out of the registry.
#![cfg(all(feature = "std", not(stockade_loom)))]

mod common;
use common::unique;

use core::time::Duration;
use std::sync::Arc;

use stockade::blocking::VirtualClock;
use stockade::prelude::*;

fn taken<T: core::fmt::Debug>(out: Result<T, Error>, name: &str) {
    match out {
        Err(Error::NameTaken { name: n }) => {
            assert_eq!(&*n, name);
            assert!(
                Error::<String>::NameTaken { name: n }
                    .to_string()
                    .contains(name)
            );
        }
        other => panic!("expected NameTaken for {name}: {other:?}"),
    }
}

#[test]
fn the_spec_breaker_is_the_registered_one() {
    let name = unique("databaseConnection");
    let config = BreakerConfig::DEFAULT.with_failure_threshold(3);
    let breaker = CircuitBreaker::new(&name, config).unwrap();
    let found = CircuitBreaker::get_breaker(&name);
    assert!(Arc::ptr_eq(&breaker, &found));
    assert_eq!(found.config().failure_threshold, 3);
    // A second instance under the taken name: an error, also with the same
    // config.
    taken(CircuitBreaker::new(&name, BreakerConfig::DEFAULT), &name);
    taken(CircuitBreaker::new(&name, config), &name);
    // get_or_create shares it with the same config, refuses another.
    assert!(Arc::ptr_eq(
        &CircuitBreaker::get_or_create(&name, config).unwrap(),
        &breaker
    ));
    taken(
        CircuitBreaker::get_or_create(&name, BreakerConfig::DEFAULT),
        &name,
    );
    // dispose unregisters: the name is free again.
    breaker.dispose();
    assert!(CircuitBreaker::get(&name).is_none());
    let again = CircuitBreaker::new(&name, BreakerConfig::DEFAULT).unwrap();
    assert!(!Arc::ptr_eq(&again, &breaker));
    again.dispose();
}

#[test]
fn an_unknown_name_gets_the_defaults() {
    let name = unique("fresh");
    assert_eq!(
        CircuitBreaker::get_breaker(&name).config(),
        &BreakerConfig::DEFAULT
    );
    assert_eq!(
        RateLimiter::get_limiter(&name).config(),
        &RateLimiterConfig::DEFAULT
    );
    assert_eq!(
        Bulkhead::get_bulkhead(&name).config(),
        &BulkheadConfig::DEFAULT
    );
    assert_eq!(Retry::get_retrier(&name).config(), &RetryConfig::DEFAULT);
    assert_eq!(
        Timeout::get_timeout(&name).config(),
        &TimeoutConfig::DEFAULT
    );
    assert!(RequestResponsePattern::<u32, u32>::get_request_response(&name).is_none());
    // Each getter returns the same instance the next time.
    assert!(Arc::ptr_eq(
        &Bulkhead::get_bulkhead(&name),
        &Bulkhead::get_bulkhead(&name)
    ));
    // Registries are per pattern type: one name, six instances.
    CircuitBreaker::get_breaker(&name).dispose();
    assert!(RateLimiter::get(&name).is_some());
}

#[test]
fn every_pattern_follows_the_rules() {
    let name = unique("svc");

    let limiter =
        RateLimiter::new(&name, RateLimiterConfig::DEFAULT.with_max_queue_size(5)).unwrap();
    assert!(Arc::ptr_eq(&limiter, &RateLimiter::get_limiter(&name)));
    taken(RateLimiter::new(&name, RateLimiterConfig::DEFAULT), &name);
    limiter.dispose();
    assert!(RateLimiter::get(&name).is_none());

    let bulkhead = Bulkhead::new(&name, BulkheadConfig::DEFAULT.with_max_concurrent(2)).unwrap();
    assert!(Arc::ptr_eq(&bulkhead, &Bulkhead::get_bulkhead(&name)));
    taken(Bulkhead::new(&name, BulkheadConfig::DEFAULT), &name);
    bulkhead.dispose();
    assert!(Bulkhead::get(&name).is_none());

    let retry = Retry::new(&name, RetryConfig::DEFAULT.with_max_attempts(5)).unwrap();
    assert!(Arc::ptr_eq(&retry, &Retry::get_retrier(&name)));
    taken(Retry::new(&name, RetryConfig::DEFAULT), &name);
    retry.dispose();
    assert!(Retry::get(&name).is_none());

    let config = TimeoutConfig::new(Duration::from_secs(1)).unwrap();
    let timeout = Timeout::new(&name, config).unwrap();
    assert!(Arc::ptr_eq(&timeout, &Timeout::get_timeout(&name)));
    taken(Timeout::new(&name, config), &name);
    timeout.dispose();
    assert!(Timeout::get(&name).is_none());

    let echo = |r: &Request<u32>| Ok::<_, String>(Response::ok(r.data));
    let service = RequestResponsePattern::new(&name, echo).unwrap();
    let found = RequestResponsePattern::<u32, u32>::get_request_response(&name).unwrap();
    assert!(Arc::ptr_eq(&service, &found));
    taken(RequestResponsePattern::new(&name, echo), &name);
    service.dispose();
    assert!(RequestResponsePattern::<u32, u32>::get(&name).is_none());
}

#[test]
fn unregistered_instances_stay_out_of_the_registry() {
    let name = unique("private");
    let a = CircuitBreaker::unregistered(&*name, BreakerConfig::DEFAULT).unwrap();
    let b = CircuitBreaker::unregistered(&*name, BreakerConfig::DEFAULT).unwrap();
    assert!(CircuitBreaker::get(&name).is_none());
    let clock = Arc::new(VirtualClock::new());
    let _c =
        CircuitBreaker::with_timer(&*name, BreakerConfig::DEFAULT, Arc::clone(&clock)).unwrap();
    assert!(CircuitBreaker::get(&name).is_none());
    // The name is still free for a registered one; disposing an
    // unregistered namesake does not unregister it.
    let registered = CircuitBreaker::new(&name, BreakerConfig::DEFAULT).unwrap();
    a.dispose();
    assert!(Arc::ptr_eq(
        &CircuitBreaker::get(&name).unwrap(),
        &registered
    ));
    drop(b);
    registered.dispose();

    let rr = RequestResponsePattern::unregistered(
        &*name,
        RequestResponseConfig::DEFAULT,
        |r: &Request<u8>| Ok::<_, String>(Response::ok(r.data)),
    )
    .unwrap();
    assert!(RequestResponsePattern::<u8, u8>::get(&name).is_none());
    // A protected pattern can be registered afterwards (its own type).
    let breaker = CircuitBreaker::unregistered("rr-guard", BreakerConfig::DEFAULT).unwrap();
    let rr = rr.protected_by(Arc::new(breaker)).register().unwrap();
    assert_eq!(rr.execute(Request::new(3)).data, Some(3));
    rr.dispose();
}
