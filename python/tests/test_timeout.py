import asyncio
import builtins
import datetime
import inspect
import time

import pytest

import stockade
from conftest import run


def test_defaults_are_the_specs():
    t = stockade.Timeout("defaults")
    assert t.name == "defaults"
    assert t.timeout == 5.0


def test_timeout_takes_seconds_or_timedelta():
    assert stockade.Timeout("a", timeout=0.25).timeout == 0.25
    assert stockade.Timeout("b", timeout=datetime.timedelta(milliseconds=1500)).timeout == 1.5


@pytest.mark.parametrize("value", [0, -1, float("nan")])
def test_invalid_timeout_names_the_option(value):
    with pytest.raises(ValueError, match="timeout") as info:
        stockade.Timeout("bad", timeout=value)
    assert info.value.option == "timeout"


def test_async_in_time_returns_the_value():
    t = stockade.Timeout("fast", timeout=1)

    async def work(x, *, y):
        await asyncio.sleep(0.001)
        return x + y

    assert run(t.execute(work, 1, y=2)) == 3
    m = t.metrics()
    assert (m["calls"], m["successes"], m["timeouts"]) == (1, 1, 0)


def test_async_too_slow_raises_on_time_and_cancels_the_work():
    t = stockade.Timeout("slow", timeout=0.05)
    events = []
    t.add_listener(events.append)
    cancelled = []

    async def work():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main():
        start = time.monotonic()
        with pytest.raises(stockade.TimeoutError) as info:
            await t.execute(work)
        return time.monotonic() - start, info.value

    elapsed, exc = run(main())
    assert 0.04 <= elapsed < 1.0
    assert isinstance(exc, builtins.TimeoutError)
    assert exc.name == "slow" and exc.timeout == 0.05
    assert str(exc) == "Timeout 'slow' timed out after 50ms"
    assert cancelled == [True]
    assert [(e.kind, e.timeout) for e in events] == [("timed_out", 0.05)]
    assert t.metrics()["timeouts"] == 1


def test_the_functions_own_timeout_error_propagates_unchanged():
    t = stockade.Timeout("own", timeout=1)
    mine = builtins.TimeoutError("my own")

    async def work():
        raise mine

    async def main():
        with pytest.raises(builtins.TimeoutError) as info:
            await t.execute(work)
        return info.value

    assert run(main()) is mine
    assert t.metrics()["failures"] == 1


def test_async_decorator():
    t = stockade.Timeout("deco", timeout=0.05)

    @t
    async def slow():
        await asyncio.sleep(10)

    assert inspect.iscoroutinefunction(slow)
    with pytest.raises(stockade.TimeoutError):
        run(slow())


def test_registry_and_dispose():
    t = stockade.Timeout("registered-timeout", timeout=2)
    assert stockade.Timeout.get_timeout("registered-timeout") is t
    t.dispose()
    with pytest.raises(stockade.DisposedError):
        run(t.execute(asyncio.sleep, 0))
    other = stockade.Timeout.get_timeout("registered-timeout")
    assert other is not t and other.timeout == 5.0
    other.dispose()


# Plain functions: a worker thread, the caller returns on time.

import _thread  # noqa: E402
import contextvars  # noqa: E402
import threading  # noqa: E402

from conftest import join_all, start_thread  # noqa: E402

VAR = contextvars.ContextVar("stockade-test-var", default="unset")


def test_plain_function_runs_on_a_worker_in_the_callers_context():
    t = stockade.Timeout("worker", timeout=2)
    VAR.set("caller's")
    me = threading.get_ident()
    ident, seen = t.execute(lambda x: (threading.get_ident(), VAR.get() + x), "!")
    assert ident != me
    assert seen == "caller's!"
    assert t.metrics()["successes"] == 1


def test_plain_function_too_slow_raises_on_time_and_goes_on():
    t = stockade.Timeout("slow-sync", timeout=0.05)
    finished = threading.Event()

    def slow():
        time.sleep(0.3)
        finished.set()
        return "late"

    start = time.monotonic()
    with pytest.raises(stockade.TimeoutError) as info:
        t.execute(slow)
    assert 0.04 <= time.monotonic() - start < 0.25
    assert not finished.is_set()  # still running on its worker...
    assert finished.wait(5)  # ...until it is done
    assert info.value.timeout == 0.05


def test_plain_functions_exception_is_the_same_object():
    t = stockade.Timeout("raise-sync", timeout=2)
    mine = KeyError("mine")

    def boom():
        raise mine

    with pytest.raises(KeyError) as info:
        t.execute(boom)
    assert info.value is mine


def test_busy_workers_refuse():
    t = stockade.Timeout("busy", timeout=0.05, max_workers=1)
    release = threading.Event()
    with pytest.raises(stockade.TimeoutError):
        t.execute(release.wait, 5)
    with pytest.raises(stockade.BulkheadFullError, match="worker"):
        t.execute(lambda: None)
    release.set()
    deadline = time.monotonic() + 5
    while t.workers[1] and time.monotonic() < deadline:
        time.sleep(0.005)
    assert t.execute(lambda: "free again") == "free again"


@pytest.mark.usefixtures("sigint_raises")
def test_keyboard_interrupt_reaches_a_caller_waiting_for_a_worker():
    t = stockade.Timeout("ctrl-c", timeout=30)
    started = threading.Event()
    release = threading.Event()

    def interrupter():
        assert started.wait(5)
        _thread.interrupt_main()

    h = start_thread(interrupter)
    begin = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        t.execute(lambda: (started.set(), release.wait(10)))
    assert time.monotonic() - begin < 2.0
    release.set()
    join_all([h])
    m = t.metrics()
    assert (m["calls"], m["successes"], m["failures"], m["timeouts"], m["rejections"]) == (0, 0, 0, 0, 0)


def test_sync_decorator():
    t = stockade.Timeout("sync-deco", timeout=1)

    @t
    def add(a, b):
        return a + b

    assert add(1, 2) == 3 and add.__name__ == "add"


def test_invalid_max_workers():
    with pytest.raises(ValueError, match="max_workers"):
        stockade.Timeout("bad", max_workers=0)
