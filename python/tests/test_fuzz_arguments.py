"""Argument conversion under Hypothesis: any value for any option of any
pattern, and for the numbers the methods take, either works or raises a
typed error (``stockade.ConfigError``, or ``TypeError`` for a wrong type)
that names the argument. Never ``OverflowError``, ``SystemError``, another
exception, or a crash.

The constructors' options are read from their signatures, so a new option
is fuzzed without editing this file. ``shared=`` and ``redis=`` are left
out: they open files and connections, and have their own tests."""

import datetime
import inspect
import itertools

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stockade

_names = itertools.count()
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)


def fresh(prefix):
    return "fuzz-%s-%d" % (prefix, next(_names))


# Anything a caller might pass: every numeric edge, wrong types, containers.
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 1, 2**31, 2**32, 2**63, 2**64, -(2**63), 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), -0.0, 5e-324, 1e308]),
    st.text(max_size=6),
    st.binary(max_size=4),
    st.timedeltas(),
    st.lists(st.integers(), max_size=2),
    st.builds(object),
)

TYPED = (stockade.ConfigError, TypeError)
SKIPPED = {"name", "handler", "shared", "redis"}


def options(cls):
    return [p for p in inspect.signature(cls).parameters if p not in SKIPPED]


def construct(cls, **kwargs):
    if cls is stockade.RequestResponsePattern:
        return cls(fresh(cls.__name__), lambda request: request, **kwargs)
    return cls(fresh(cls.__name__), **kwargs)


def dispose(obj):
    close = getattr(obj, "dispose", None)
    if close is not None:
        close()


PATTERNS = [
    stockade.CircuitBreaker,
    stockade.RateLimiter,
    stockade.Bulkhead,
    stockade.Retry,
    stockade.Timeout,
    stockade.RequestResponsePattern,
    stockade.Fallback,
    stockade.Hedging,
]
CASES = [(cls, option) for cls in PATTERNS for option in options(cls)]


def test_every_pattern_has_options_to_fuzz():
    # The signature is how options are found; an empty list would make the
    # fuzz test below pass without testing anything.
    for cls in PATTERNS:
        assert options(cls), cls.__name__
    assert len(CASES) >= 30


def _check(what, option, call):
    try:
        result = call()
    except TYPED as error:
        message = str(error)
        assert option in message, "%s: %s does not name %r" % (what, type(error).__name__, option)
        return None
    except BaseException as error:  # noqa: BLE001 - the point of the test
        pytest.fail("%s: %s escaped: %r" % (what, type(error).__name__, error))
    return result


@pytest.mark.parametrize("cls, option", CASES, ids=["%s.%s" % (c.__name__, o) for c, o in CASES])
@SETTINGS
@given(value=VALUES)
def test_any_option_value_works_or_raises_a_typed_error(cls, option, value):
    obj = _check("%s(%s=%r)" % (cls.__name__, option, value), option,
                 lambda: construct(cls, **{option: value}))
    if obj is not None:
        dispose(obj)


NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**32 - 1, 2**32, 2**64]),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.text(max_size=3),
)


@SETTINGS
@given(n=NUMBERS)
def test_permit_counts_work_or_raise_a_typed_error(n):
    limiter = stockade.RateLimiter(fresh("limiter"), requests_per_period=1000, period=1, max_queue_size=0)
    try:
        _check("try_acquire(%r)" % (n,), "n", lambda: limiter.try_acquire(n))
    finally:
        limiter.dispose()


@SETTINGS
@given(n=NUMBERS)
def test_retry_delays_work_or_raise_a_typed_error(n):
    retry = stockade.Retry(fresh("retry"))
    try:
        delay = _check("delay(%r)" % (n,), "n", lambda: retry.delay(n))
        if delay is not None:
            assert delay >= 0
    finally:
        retry.dispose()


@SETTINGS
@given(value=VALUES)
def test_listeners_must_be_callable(value):
    breaker = stockade.CircuitBreaker(fresh("breaker"))
    try:
        if callable(value):
            return
        _check("add_listener(%r)" % (value,), "callback", lambda: breaker.add_listener(value))
    finally:
        breaker.dispose()


def test_a_timedelta_is_a_duration():
    # The happy path the strategies above also reach: a sanity check that
    # the fuzzed conversions are the ones users rely on.
    breaker = stockade.CircuitBreaker(fresh("breaker"), reset_timeout=datetime.timedelta(seconds=2))
    breaker.dispose()
