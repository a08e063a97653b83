import _thread
import asyncio
import datetime
import inspect
import threading
import time

import pytest

import stockade
from conftest import join_all, run, start_thread


def wait_until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


def hold(b):
    """Occupies one permit of `b` from a helper thread until released."""
    release = threading.Event()
    entered = threading.Event()

    def holder():
        b.execute(lambda: (entered.set(), release.wait(10)))

    t = start_thread(holder)
    assert entered.wait(5)
    return release, t


def test_defaults_are_the_specs():
    b = stockade.Bulkhead("defaults")
    assert (b.max_concurrent, b.max_queue, b.queue_timeout) == (10, 100, 30.0)
    assert (b.in_flight, b.queue_depth) == (0, 0)


def test_every_option():
    b = stockade.Bulkhead("options", max_concurrent=2, max_queue=0, queue_timeout=datetime.timedelta(milliseconds=500))
    assert (b.max_concurrent, b.max_queue, b.queue_timeout) == (2, 0, 0.5)


@pytest.mark.parametrize(
    "options, option",
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": -1}, "max_concurrent"),
        ({"max_queue": -1}, "max_queue"),
        ({"queue_timeout": -0.5}, "queue_timeout"),
    ],
)
def test_invalid_options_name_the_option(options, option):
    with pytest.raises(ValueError, match=option) as info:
        stockade.Bulkhead("bad", **options)
    assert info.value.option == option


def test_passes_results_and_exceptions_unchanged():
    b = stockade.Bulkhead("pass")
    assert b.execute(lambda a, b=0: a + b, 1, b=2) == 3
    mine = KeyError("mine")

    def boom():
        raise mine

    with pytest.raises(KeyError) as info:
        b.execute(boom)
    assert info.value is mine
    assert b.in_flight == 0


def test_never_exceeds_max_concurrent_among_threads():
    b = stockade.Bulkhead("max", max_concurrent=3, max_queue=100)
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def work():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1

    def caller():
        for _ in range(5):
            b.execute(work)

    join_all([start_thread(caller) for _ in range(10)])
    assert peak[0] == 3
    m = b.metrics()
    assert (m["calls"], m["successes"], m["in_flight"], m["queue_depth"]) == (50, 50, 0, 0)


def test_queue_is_fifo():
    b = stockade.Bulkhead("fifo", max_concurrent=1, max_queue=10)
    release, holder = hold(b)
    order = []
    threads = []
    for i in range(5):
        threads.append(start_thread(b.execute, order.append, i))
        wait_until(lambda: b.queue_depth == i + 1)
    release.set()
    join_all(threads + [holder])
    assert order == [0, 1, 2, 3, 4]


def test_full_queue_raises_bulkhead_full():
    b = stockade.Bulkhead("full", max_concurrent=1, max_queue=1, queue_timeout=10)
    events = []
    b.add_listener(events.append)
    release, holder = hold(b)
    waiter = start_thread(b.execute, lambda: None)
    wait_until(lambda: b.queue_depth == 1)
    start = time.monotonic()
    with pytest.raises(stockade.BulkheadFullError) as info:
        b.execute(lambda: None)
    assert time.monotonic() - start < 0.5
    assert info.value.name == "full"
    assert [e.kind for e in events] == ["rejected"]
    release.set()
    join_all([holder, waiter])


def test_queue_timeout():
    b = stockade.Bulkhead("qt", max_concurrent=1, queue_timeout=0.05)
    events = []
    b.add_listener(events.append)
    release, holder = hold(b)
    start = time.monotonic()
    with pytest.raises(stockade.QueueTimeoutError) as info:
        b.execute(lambda: None)
    assert 0.04 <= time.monotonic() - start < 1.0
    assert isinstance(info.value, stockade.StockadeError)
    assert info.value.waited >= 0.04
    assert b.queue_depth == 0
    assert [e.kind for e in events] == ["queue_timeout"] and events[0].waited >= 0.04
    release.set()
    join_all([holder])
    assert b.metrics()["timeouts"] == 1


def test_queue_timeout_zero_never_waits():
    b = stockade.Bulkhead("nowait", max_concurrent=1, queue_timeout=0)
    release, holder = hold(b)
    with pytest.raises(stockade.BulkheadFullError):
        b.execute(lambda: None)
    release.set()
    join_all([holder])


@pytest.mark.usefixtures("sigint_raises")
def test_keyboard_interrupt_while_queued_leaks_no_permit():
    b = stockade.Bulkhead("ctrl-c", max_concurrent=1, queue_timeout=60)
    release, holder = hold(b)

    def interrupter():
        wait_until(lambda: b.queue_depth == 1)
        _thread.interrupt_main()

    t = start_thread(interrupter)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        b.execute(lambda: None)
    assert time.monotonic() - start < 2.0
    join_all([t])
    assert b.queue_depth == 0
    release.set()
    join_all([holder])
    assert b.in_flight == 0
    assert b.execute(lambda: "again") == "again"
    # The interrupted call is no outcome and not a call: the rest add up.
    m = b.metrics()
    assert (m["calls"], m["successes"], m["failures"]) == (2, 2, 0)
    assert m["calls"] == m["successes"] + m["failures"] + m["rejections"] + m["timeouts"]


def test_with_block_holds_a_permit():
    b = stockade.Bulkhead("with", max_concurrent=1, queue_timeout=0)
    with b:
        assert b.in_flight == 1
        with pytest.raises(stockade.BulkheadFullError):
            b.execute(lambda: None)
    assert b.in_flight == 0
    with pytest.raises(ValueError):
        with b:
            raise ValueError("x")
    assert b.in_flight == 0
    assert b.metrics()["failures"] == 1


def test_decorators():
    b = stockade.Bulkhead("deco", max_concurrent=1)

    @b
    def f(x):
        return x

    @b
    async def g(x):
        assert b.in_flight == 1
        return x

    assert f(2) == 2 and f.__name__ == "f"
    assert inspect.iscoroutinefunction(g)
    assert run(g(3)) == 3
    assert b.in_flight == 0


def test_tasks_never_exceed_max_concurrent_and_queue_fifo():
    b = stockade.Bulkhead("tasks", max_concurrent=2, max_queue=100)

    async def main():
        running, peak, order = [0], [0], []

        async def work(i):
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            order.append(i)
            await asyncio.sleep(0.005)
            running[0] -= 1
            return i

        results = await asyncio.gather(*(b.execute(work, i) for i in range(12)))
        return results, peak[0], order

    results, peak, order = run(main())
    assert results == list(range(12))
    assert peak == 2
    assert order == list(range(12))
    assert (b.in_flight, b.queue_depth) == (0, 0)


def test_async_with_and_queue_timeout():
    b = stockade.Bulkhead("async-with", max_concurrent=1, queue_timeout=0.05)

    async def main():
        async with b as entered:
            assert entered is b and b.in_flight == 1
            with pytest.raises(stockade.QueueTimeoutError):
                async with b:
                    pytest.fail("must not run")
            assert b.queue_depth == 0
        assert b.in_flight == 0

    run(main())


def test_cancelled_while_queued_leaks_nothing():
    b = stockade.Bulkhead("cancel", max_concurrent=1, queue_timeout=60)

    async def main():
        gate = asyncio.Event()

        async def holder():
            await gate.wait()

        first = asyncio.ensure_future(b.execute(holder))
        await asyncio.sleep(0.01)
        assert b.in_flight == 1
        waiting = asyncio.ensure_future(b.execute(asyncio.sleep, 0))
        await asyncio.sleep(0.01)
        assert b.queue_depth == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert b.queue_depth == 0
        gate.set()
        await first
        assert b.in_flight == 0
        # Every permit is still there.
        assert await b.execute(asyncio.sleep, 0, "ok") == "ok"

    run(main())


def test_cancelled_just_after_being_granted_gives_the_permit_back():
    b = stockade.Bulkhead("cancel-granted", max_concurrent=1, queue_timeout=60)

    async def main():
        gate = asyncio.Event()

        async def holder():
            await gate.wait()

        first = asyncio.ensure_future(b.execute(holder))
        await asyncio.sleep(0.01)
        waiting = asyncio.ensure_future(b.execute(asyncio.sleep, 0))
        await asyncio.sleep(0.01)
        gate.set()
        await first  # the permit is handed to `waiting`...
        waiting.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (b.in_flight, b.queue_depth) == (0, 0)

    run(main())


def test_threads_and_tasks_share_one_fifo():
    b = stockade.Bulkhead("mixed", max_concurrent=1, queue_timeout=10)
    release, holder = hold(b)
    order = []
    loop_ready = threading.Event()
    box = {}

    def loop_thread():
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        loop_ready.set()
        loop.run_forever()
        loop.close()

    lt = start_thread(loop_thread)
    assert loop_ready.wait(5)
    loop = box["loop"]

    async def task_work(i):
        order.append(i)

    threads, futures = [], []
    for i in range(6):
        if i % 2:
            futures.append(asyncio.run_coroutine_threadsafe(b.execute(task_work, i), loop))
        else:
            threads.append(start_thread(b.execute, order.append, i))
        wait_until(lambda: b.queue_depth == i + 1)
    release.set()
    join_all(threads + [holder])
    for f in futures:
        f.result(5)
    loop.call_soon_threadsafe(loop.stop)
    join_all([lt])
    assert order == [0, 1, 2, 3, 4, 5]


def test_dispose_wakes_queued_threads_and_tasks():
    b = stockade.Bulkhead("dispose", max_concurrent=1, queue_timeout=60)
    release, holder = hold(b)
    errors = []

    def waiter():
        try:
            b.execute(lambda: None)
        except BaseException as e:  # noqa: B902
            errors.append(e)

    t = start_thread(waiter)
    wait_until(lambda: b.queue_depth == 1)

    async def main():
        task = asyncio.ensure_future(b.execute(asyncio.sleep, 0))
        await asyncio.sleep(0.01)
        assert b.queue_depth == 2
        threading.Thread(target=b.dispose).start()
        with pytest.raises(stockade.DisposedError):
            await asyncio.wait_for(task, 5)

    run(main())
    join_all([t])
    assert isinstance(errors[0], stockade.DisposedError)
    release.set()
    join_all([holder])
    with pytest.raises(stockade.DisposedError):
        b.execute(lambda: None)


def test_registry():
    b = stockade.Bulkhead("registered-bulkhead", max_concurrent=3)
    assert stockade.Bulkhead.get_bulkhead("registered-bulkhead") is b
    b.dispose()
    other = stockade.Bulkhead.get_bulkhead("registered-bulkhead")
    assert other is not b and other.max_concurrent == 10
    other.dispose()
