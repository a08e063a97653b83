import _thread
import asyncio
import datetime
import gc
import inspect
import threading
import time

import pytest

import stockade
from conftest import join_all, run, start_thread


def test_defaults_are_the_specs():
    r = stockade.RateLimiter("defaults")
    assert (r.requests_per_period, r.period, r.max_queue_size, r.queue_timeout) == (10, 1.0, 100, 30.0)
    assert (r.burst, r.mode) == (10, "bursty")


def test_every_option():
    r = stockade.RateLimiter(
        "options",
        requests_per_period=100,
        period=datetime.timedelta(minutes=1),
        max_queue_size=50,
        queue_timeout=0,
        burst=5,
        mode="strict",
    )
    assert (r.requests_per_period, r.period, r.max_queue_size, r.queue_timeout) == (100, 60.0, 50, 0.0)
    assert (r.burst, r.mode) == (5, "strict")


@pytest.mark.parametrize(
    "options, option",
    [
        ({"requests_per_period": 0}, "requests_per_period"),
        ({"requests_per_period": -5}, "requests_per_period"),
        ({"period": 0}, "period"),
        ({"period": -1.0}, "period"),
        ({"burst": 0}, "burst"),
        ({"queue_timeout": float("nan")}, "queue_timeout"),
        ({"max_queue_size": -1}, "max_queue_size"),
        ({"mode": "greedy"}, "mode"),
    ],
)
def test_invalid_options_name_the_option(options, option):
    with pytest.raises(ValueError, match=option) as info:
        stockade.RateLimiter("bad", **options)
    assert info.value.option == option


def test_try_acquire_never_waits():
    r = stockade.RateLimiter("try", requests_per_period=10, period=60)
    assert [r.try_acquire() for _ in range(11)] == [True] * 10 + [False]
    assert not r.try_acquire(n=2)
    assert r.metrics()["rejections"] == 2


def test_try_acquire_n():
    r = stockade.RateLimiter("try-n", requests_per_period=10, period=60)
    assert r.try_acquire(n=7)
    assert not r.try_acquire(n=4)
    assert r.try_acquire(n=3)
    assert r.available == 0


def test_acquire_waits_its_turn():
    r = stockade.RateLimiter("wait", requests_per_period=1, period=0.05, burst=1)
    r.acquire()
    start = time.monotonic()
    r.acquire()
    r.acquire()
    assert 0.09 <= time.monotonic() - start < 1.0


def test_waiting_is_fifo_across_threads():
    r = stockade.RateLimiter("fifo", requests_per_period=1, period=0.03, burst=1, queue_timeout=10)
    assert r.try_acquire()
    order = []
    threads = []
    for i in range(5):
        threads.append(start_thread(lambda i=i: r.execute(order.append, i)))
        deadline = time.monotonic() + 5
        while r.queue_depth < i + 1 and time.monotonic() < deadline:  # booked before the next starts
            time.sleep(0.001)
    join_all(threads)
    assert order == [0, 1, 2, 3, 4]


def test_wait_beyond_queue_timeout_raises_at_once():
    r = stockade.RateLimiter("too-long", requests_per_period=1, period=1, burst=1, queue_timeout=0.5)
    r.acquire()
    start = time.monotonic()
    with pytest.raises(stockade.RateLimitedError) as info:
        r.execute(lambda: None)
    assert time.monotonic() - start < 0.2
    assert 0.4 < info.value.retry_after <= 0.5
    assert info.value.name == "too-long"


def test_queue_timeout_zero_means_never_wait():
    r = stockade.RateLimiter("no-wait", requests_per_period=1, period=1, burst=1, queue_timeout=0)
    r.acquire()
    with pytest.raises(stockade.RateLimitedError):
        r.acquire()


def test_queue_bound_raises_at_once_and_dispose_wakes_the_queue():
    r = stockade.RateLimiter("bound", requests_per_period=1, period=10, burst=1, max_queue_size=2, queue_timeout=100)
    r.acquire()
    errors = []

    def waiter():
        try:
            r.acquire()
        except BaseException as e:  # noqa: B902
            errors.append(e)

    threads = [start_thread(waiter) for _ in range(2)]
    deadline = time.monotonic() + 5
    while r.queue_depth < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert r.queue_depth == 2
    with pytest.raises(stockade.RateLimitedError) as info:
        r.acquire()
    assert info.value.retry_after > 0
    r.dispose()
    join_all(threads, timeout=5)
    assert len(errors) == 2 and all(isinstance(e, stockade.DisposedError) for e in errors)


@pytest.mark.usefixtures("sigint_raises")
def test_keyboard_interrupt_reaches_a_caller_waiting_in_the_queue():
    r = stockade.RateLimiter("ctrl-c", requests_per_period=1, period=30, burst=1, queue_timeout=60)
    r.acquire()

    def interrupter():
        deadline = time.monotonic() + 5
        while r.queue_depth < 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.02)
        _thread.interrupt_main()

    t = start_thread(interrupter)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        r.acquire()
    assert time.monotonic() - start < 2.0
    join_all([t])
    assert r.queue_depth == 0  # the booking was handed back
    # The interrupted booking is not counted: only the first acquire is.
    assert (r.metrics()["calls"], r.metrics()["rejections"]) == (1, 0)


def test_with_and_decorator():
    r = stockade.RateLimiter("with", requests_per_period=2, period=60, queue_timeout=0)
    with r:
        pass

    @r
    def f(x):
        return x

    assert f(3) == 3 and f.__name__ == "f"
    with pytest.raises(stockade.RateLimitedError):
        with r:
            pytest.fail("must not run")


def test_async_waits_without_blocking_the_loop():
    r = stockade.RateLimiter("async", requests_per_period=1, period=0.1, burst=1)

    async def work(x):
        return x

    async def main():
        ticks = []

        async def ticker():
            for _ in range(5):
                ticks.append(1)
                await asyncio.sleep(0.01)

        t = asyncio.ensure_future(ticker())
        start = time.monotonic()
        assert await r.execute(work, 1) == 1
        assert await r.execute(work, 2) == 2
        elapsed = time.monotonic() - start
        await t
        return elapsed, ticks

    elapsed, ticks = run(main())
    assert 0.08 <= elapsed < 1.0
    assert len(ticks) == 5


def test_async_with_and_decorator():
    r = stockade.RateLimiter("async-with", requests_per_period=1, period=0.05, burst=1)

    @r
    async def g():
        return "g"

    async def main():
        async with r:
            pass
        async with r as entered:
            assert entered is r
        return await g()

    assert inspect.iscoroutinefunction(g)
    assert run(main()) == "g"


def test_cancelled_while_waiting_leaks_nothing():
    r = stockade.RateLimiter("cancel", requests_per_period=1, period=10, burst=1, queue_timeout=60)

    async def main():
        assert r.try_acquire()
        task = asyncio.ensure_future(r.execute(asyncio.sleep, 0))
        await asyncio.sleep(0.02)
        assert r.queue_depth == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert r.queue_depth == 0

    run(main())


def test_a_coroutine_cancelled_or_closed_before_its_first_step_hands_its_booking_back():
    # The booking is taken when `execute` is called, before the coroutine
    # runs: a task cancelled before it starts, or a coroutine never awaited,
    # must still hand it back (and take the call back out of `calls`).
    r = stockade.RateLimiter("cancel-early", requests_per_period=1, period=10, burst=1, queue_timeout=60)
    assert r.try_acquire()
    calls = r.metrics()["calls"]

    never_awaited = r.execute(asyncio.sleep, 0)
    assert r.queue_depth == 1
    never_awaited.close()
    del never_awaited
    assert r.queue_depth == 0
    assert r.metrics()["calls"] == calls

    async def main():
        task = asyncio.ensure_future(r.execute(asyncio.sleep, 0))
        assert r.queue_depth == 1
        task.cancel()  # before its first step
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    # The cancelled task keeps its CancelledError, whose traceback holds the
    # never-started coroutine's frame (and so the booking) until the task is
    # freed: here when the loop is gone and the collector has run.
    gc.collect()
    assert r.queue_depth == 0
    assert r.metrics()["calls"] == calls


def test_dispose_wakes_waiting_tasks():
    r = stockade.RateLimiter("dispose-async", requests_per_period=1, period=10, burst=1, queue_timeout=60)

    async def main():
        assert r.try_acquire()
        task = asyncio.ensure_future(r.execute(asyncio.sleep, 0))
        await asyncio.sleep(0.02)
        # From another thread, as a real program might.
        t = threading.Thread(target=r.dispose)
        t.start()
        t.join(5)
        with pytest.raises(stockade.DisposedError):
            await asyncio.wait_for(task, 5)

    run(main())


def test_listeners_see_rejections():
    r = stockade.RateLimiter("listen", requests_per_period=1, period=10, burst=1, queue_timeout=0)
    events = []
    r.add_listener(events.append)
    r.acquire()
    with pytest.raises(stockade.RateLimitedError):
        r.acquire()
    assert [e.kind for e in events] == ["rejected"]
    assert events[0].retry_after > 9


def test_registry_and_dispose():
    r = stockade.RateLimiter("registered-limiter", requests_per_period=3)
    assert stockade.RateLimiter.get_limiter("registered-limiter") is r
    r.dispose()
    with pytest.raises(stockade.DisposedError):
        r.try_acquire()
    other = stockade.RateLimiter.get_limiter("registered-limiter")
    assert other is not r and other.requests_per_period == 10
    other.dispose()
