"""One rule for every pattern: a BaseException that is not an Exception
(KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError, or
any other) interrupts a call. It propagates unchanged, every permit is given
back, it is neither a success nor a failure (a breaker's health does not see
it), and it is not counted in `calls`, so that `calls` is always the sum of
the outcomes once no call is in progress."""

import asyncio
import itertools
import threading
import time

import pytest

import stockade
from conftest import run

_names = itertools.count()


def name(prefix):
    return f"interrupt-{prefix}-{next(_names)}"


class Custom(BaseException):
    pass


INTERRUPTIONS = [KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError, Custom]


def raiser(exc_type):
    exc = exc_type()

    def f():
        raise exc

    return exc, f


def async_raiser(exc_type):
    exc = exc_type()

    async def f():
        raise exc

    return exc, f


def sums(m, *keys):
    return sum(m[k] for k in keys)


def check_breaker(b):
    m = b.metrics()
    assert m["calls"] == sums(m, "successes", "failures", "rejections"), m
    return m


def check_bulkhead(b):
    m = b.metrics()
    assert m["calls"] == sums(m, "successes", "failures", "rejections", "timeouts"), m
    assert b.in_flight == 0 and b.queue_depth == 0
    return m


def check_timeout(t):
    m = t.metrics()
    assert m["calls"] == sums(m, "successes", "failures", "timeouts", "rejections"), m
    return m


def check_retry(r):
    m = r.metrics()
    assert m["calls"] == sums(m, "successes", "failures"), m
    return m


def call_and_expect(call, exc):
    with pytest.raises(type(exc)) as raised:
        call()
    assert raised.value is exc  # unchanged


@pytest.mark.parametrize("exc_type", INTERRUPTIONS)
@pytest.mark.parametrize("mode", ["sync", "async", "with"])
def test_breaker(exc_type, mode):
    b = stockade.CircuitBreaker(name("b"), failure_threshold=1)
    assert b.execute(lambda: 1) == 1
    if mode == "sync":
        exc, f = raiser(exc_type)
        call_and_expect(lambda: b.execute(f), exc)
    elif mode == "async":
        exc, f = async_raiser(exc_type)
        call_and_expect(lambda: run(b.execute(f)), exc)
    else:
        exc = exc_type()

        def block():
            with b:
                raise exc

        call_and_expect(block, exc)
    # Not a failure: one failure would have opened it.
    assert b.state == "closed"
    m = check_breaker(b)
    assert (m["calls"], m["successes"], m["failures"]) == (1, 1, 0)


@pytest.mark.parametrize("exc_type", INTERRUPTIONS)
def test_breaker_half_open_probe_is_handed_back(exc_type):
    b = stockade.CircuitBreaker(name("b"), reset_timeout=0.05, half_open_max_probes=1, half_open_timeout=30)
    b.trip()
    time.sleep(0.06)
    exc, f = raiser(exc_type)
    call_and_expect(lambda: b.execute(f), exc)
    # The only probe slot is free again: the next call is admitted.
    assert b.execute(lambda: "probe") == "probe"
    check_breaker(b)


@pytest.mark.parametrize("exc_type", INTERRUPTIONS)
@pytest.mark.parametrize("mode", ["sync", "async", "with", "async with", "queued sync"])
def test_bulkhead(exc_type, mode):
    b = stockade.Bulkhead(name("bh"), max_concurrent=1, max_queue=1)
    assert b.execute(lambda: 1) == 1
    if mode == "sync":
        exc, f = raiser(exc_type)
        call_and_expect(lambda: b.execute(f), exc)
    elif mode == "async":
        exc, f = async_raiser(exc_type)
        call_and_expect(lambda: run(b.execute(f)), exc)
    elif mode == "with":
        exc = exc_type()

        def block():
            with b:
                raise exc

        call_and_expect(block, exc)
    elif mode == "async with":
        exc = exc_type()

        async def block():
            async with b:
                raise exc

        call_and_expect(lambda: run(block()), exc)
    else:
        # The slow path (the queue is consulted): hold the permit with
        # `with`, then a nested call must queue... and would wait; instead
        # free the permit first and take the queue path via `__enter__`.
        exc = exc_type()

        def block():
            with b:
                pass
            with b:
                raise exc

        call_and_expect(block, exc)
    m = check_bulkhead(b)
    assert m["failures"] == 0
    assert b.execute(lambda: 2) == 2


@pytest.mark.parametrize("exc_type", INTERRUPTIONS)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_timeout(exc_type, mode):
    t = stockade.Timeout(name("t"), timeout=10, max_workers=1)
    assert t.execute(lambda: 1) == 1
    if mode == "sync":
        exc, f = raiser(exc_type)
        call_and_expect(lambda: t.execute(f), exc)
    else:
        exc, f = async_raiser(exc_type)
        call_and_expect(lambda: run(t.execute(f)), exc)
    m = check_timeout(t)
    assert (m["calls"], m["successes"], m["failures"]) == (1, 1, 0)
    assert t.execute(lambda: 2) == 2  # the worker is free again
    t.dispose()


def test_timeout_pool_full_is_a_rejection():
    t = stockade.Timeout(name("t"), timeout=10, max_workers=1)
    started, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=lambda: t.execute(lambda: (started.set(), release.wait(10))), daemon=True)
    holder.start()
    assert started.wait(10)
    with pytest.raises(stockade.BulkheadFullError):
        t.execute(lambda: 0)
    release.set()
    holder.join(10)
    assert not holder.is_alive()
    m = check_timeout(t)
    assert (m["calls"], m["successes"], m["rejections"]) == (2, 1, 1)
    t.dispose()


@pytest.mark.parametrize("exc_type", INTERRUPTIONS)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_retry(exc_type, mode):
    r = stockade.Retry(name("r"), max_attempts=3, initial_delay=0)
    assert r.execute(lambda: 1) == 1
    attempts = []
    exc = exc_type()
    if mode == "sync":

        def f():
            attempts.append(1)
            raise exc

        call_and_expect(lambda: r.execute(f), exc)
    else:

        async def f():
            attempts.append(1)
            raise exc

        call_and_expect(lambda: run(r.execute(f)), exc)
    assert attempts == [1]  # never retried
    m = check_retry(r)
    assert (m["calls"], m["successes"], m["failures"], m["retries"]) == (1, 1, 0, 0)


def test_retry_cancelled_in_its_async_backoff_is_no_outcome():
    r = stockade.Retry(name("r"), max_attempts=3, initial_delay=30)

    async def fail():
        raise ConnectionError("down")

    async def main():
        task = asyncio.ensure_future(r.execute(fail))
        deadline = asyncio.get_running_loop().time() + 10
        while r.metrics()["retries"] == 0:
            assert asyncio.get_running_loop().time() < deadline, "never retried"
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)

    run(main())
    m = check_retry(r)
    assert (m["calls"], m["retries"]) == (0, 1)


@pytest.mark.parametrize("exc_type", INTERRUPTIONS)
def test_limiter_counts_the_granted_booking_whatever_the_function_raises(exc_type):
    # The limiter's outcome is the booking: granted (the call started)
    # before the function was interrupted.
    lim = stockade.RateLimiter(name("l"), requests_per_period=5, period=60)
    exc, f = raiser(exc_type)
    call_and_expect(lambda: lim.execute(f), exc)
    assert (lim.metrics()["calls"], lim.metrics()["rejections"]) == (1, 0)


def test_limiter_booking_cancelled_while_waiting_is_no_call():
    lim = stockade.RateLimiter(name("l"), requests_per_period=1, period=30, burst=1, queue_timeout=60)
    lim.acquire()

    async def main():
        async def work():
            return 1

        task = asyncio.ensure_future(lim.execute(work))
        deadline = asyncio.get_running_loop().time() + 10
        while lim.queue_depth == 0:
            assert asyncio.get_running_loop().time() < deadline, "never queued"
            await asyncio.sleep(0.001)
        # Let the task run up to its sleep (its first step was scheduled
        # before this one), so it is cancelled while waiting.
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)

    run(main())
    assert lim.queue_depth == 0
    assert (lim.metrics()["calls"], lim.metrics()["rejections"]) == (1, 0)
