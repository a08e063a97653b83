"""Bad input raises a typed error naming the option, never OverflowError or
a silent acceptance."""

import itertools

import pytest

import stockade

_names = itertools.count()


def name(prefix):
    return f"input-{prefix}-{next(_names)}"


HUGE = 10**400  # beyond a float's range
UNPRINTABLE = 10**5000  # beyond sys.get_int_max_str_digits() (3.11+) as well


def limiter():
    return stockade.RateLimiter(name("limiter"), requests_per_period=5, period=60)


def retry():
    return stockade.Retry(name("retry"))


CASES = [
    # integer durations beyond float range
    ("reset_timeout=10**400", lambda: stockade.CircuitBreaker(name("b"), reset_timeout=HUGE), stockade.ConfigError, "reset_timeout"),
    ("timeout=10**400", lambda: stockade.Timeout(name("t"), timeout=HUGE), stockade.ConfigError, "timeout"),
    ("timeout=10**5000", lambda: stockade.Timeout(name("t"), timeout=UNPRINTABLE), stockade.ConfigError, "timeout"),
    ("queue_timeout=-10**400", lambda: stockade.Bulkhead(name("bh"), queue_timeout=-HUGE), stockade.ConfigError, "queue_timeout"),
    ("initial_delay=10**400", lambda: stockade.Retry(name("r"), initial_delay=HUGE), stockade.ConfigError, "initial_delay"),
    ("period=10**400", lambda: stockade.RateLimiter(name("l"), period=HUGE), stockade.ConfigError, "period"),
    # Timeout(max_workers)
    ("max_workers=-1", lambda: stockade.Timeout(name("t"), max_workers=-1), stockade.ConfigError, "max_workers"),
    ("max_workers=2**64", lambda: stockade.Timeout(name("t"), max_workers=2**64), stockade.ConfigError, "max_workers"),
    ("max_workers=True", lambda: stockade.Timeout(name("t"), max_workers=True), TypeError, "max_workers"),
    ("max_workers=1.0", lambda: stockade.Timeout(name("t"), max_workers=1.0), TypeError, "max_workers"),
    ("RequestResponsePattern(max_workers=-1)", lambda: stockade.RequestResponsePattern(name("rr"), lambda r: r, max_workers=-1), stockade.ConfigError, "max_workers"),
    ("RequestResponsePattern(max_workers=2**64)", lambda: stockade.RequestResponsePattern(name("rr"), lambda r: r, max_workers=2**64), stockade.ConfigError, "max_workers"),
    ("RequestResponsePattern(max_workers=True)", lambda: stockade.RequestResponsePattern(name("rr"), lambda r: r, max_workers=True), TypeError, "max_workers"),
    # Retry(seed)
    ("seed=-1", lambda: stockade.Retry(name("r"), seed=-1), stockade.ConfigError, "seed"),
    ("seed=2**64", lambda: stockade.Retry(name("r"), seed=2**64), stockade.ConfigError, "seed"),
    ("seed=True", lambda: stockade.Retry(name("r"), seed=True), TypeError, "seed"),
    # n of try_acquire / acquire / delay
    ("try_acquire(-1)", lambda: limiter().try_acquire(-1), stockade.ConfigError, "n"),
    ("try_acquire(2**32)", lambda: limiter().try_acquire(2**32), stockade.ConfigError, "n"),
    ("acquire(-1)", lambda: limiter().acquire(-1), stockade.ConfigError, "n"),
    ("acquire(2**32)", lambda: limiter().acquire(2**32), stockade.ConfigError, "n"),
    ("acquire(True)", lambda: limiter().acquire(True), TypeError, "n"),
    ("delay(-1)", lambda: retry().delay(-1), stockade.ConfigError, "n"),
    ("delay(2**32)", lambda: retry().delay(2**32), stockade.ConfigError, "n"),
    # add_listener(None), for every pattern
    ("breaker.add_listener(None)", lambda: stockade.CircuitBreaker(name("b")).add_listener(None), TypeError, "callback"),
    ("bulkhead.add_listener(None)", lambda: stockade.Bulkhead(name("bh")).add_listener(None), TypeError, "callback"),
    ("limiter.add_listener(None)", lambda: limiter().add_listener(None), TypeError, "callback"),
    ("retry.add_listener(None)", lambda: retry().add_listener(None), TypeError, "callback"),
    ("timeout.add_listener(None)", lambda: stockade.Timeout(name("t")).add_listener(None), TypeError, "callback"),
    ("timeout.add_listener(3)", lambda: stockade.Timeout(name("t")).add_listener(3), TypeError, "callback"),
]


@pytest.mark.parametrize("case, make, exc_type, option", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_typed_error_naming_the_option(case, make, exc_type, option):
    with pytest.raises(exc_type) as raised:
        make()
    assert not isinstance(raised.value, OverflowError), f"{case}: OverflowError escaped"
    message = str(raised.value)
    assert (f"{option} " in message or f"'{option}'" in message or f"{option}=" in message or message.startswith(f"{option} ")), (
        f"{case}: the message does not name {option!r}: {message}"
    )


def test_a_config_error_names_the_option_attribute():
    with pytest.raises(stockade.ConfigError) as raised:
        stockade.Timeout(name("t"), max_workers=-1)
    assert "invalid max_workers = -1: must not be negative" in str(raised.value)


def test_zero_permits_are_granted_at_once_as_in_the_core():
    # The Rust core's `acquire(0)` / `try_acquire_n(0)` take nothing and
    # return at once; Python matches it.
    lim = limiter()
    before = lim.available
    assert lim.try_acquire(0) is True
    assert lim.acquire(0) is None
    assert lim.available == before
    lim.dispose()


def test_a_listener_given_by_keyword_is_checked_too():
    t = stockade.Timeout(name("t"))
    with pytest.raises(TypeError, match="callback"):
        t.add_listener(callback=None)
    t.dispose()
