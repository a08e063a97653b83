import asyncio
import datetime
import inspect
import threading
import time

import pytest

import stockade
from conftest import join_all, run, start_thread


def boom():
    raise ConnectionError("down")


def fail_n(b, n):
    for _ in range(n):
        with pytest.raises(ConnectionError):
            b.execute(boom)


def test_defaults_are_the_specs():
    b = stockade.CircuitBreaker("defaults")
    assert (b.failure_threshold, b.reset_timeout, b.half_open_timeout, b.monitor_interval) == (5, 60.0, 30.0, 5.0)
    assert (b.half_open_max_probes, b.half_open_successes_to_close) == (1, None)
    assert (b.failure_rate_threshold, b.failure_rate_window_size, b.failure_rate_minimum_calls) == (None, None, None)
    assert (b.slow_call_threshold, b.exclude, b.state) == (None, (), "closed")


def test_every_option():
    b = stockade.CircuitBreaker(
        "options",
        failure_threshold=3,
        reset_timeout=datetime.timedelta(seconds=30),
        half_open_timeout=5,
        monitor_interval=1.5,
        half_open_max_probes=2,
        half_open_successes_to_close=2,
        failure_rate_threshold=50,
        failure_rate_window_size=20,
        failure_rate_minimum_calls=10,
        slow_call_threshold=0.5,
        exclude=[KeyError],
    )
    assert (b.failure_threshold, b.reset_timeout, b.half_open_timeout, b.monitor_interval) == (3, 30.0, 5.0, 1.5)
    assert (b.half_open_max_probes, b.half_open_successes_to_close) == (2, 2)
    assert (b.failure_rate_threshold, b.failure_rate_window_size, b.failure_rate_minimum_calls) == (50, 20, 10)
    assert (b.slow_call_threshold, b.exclude) == (0.5, (KeyError,))


@pytest.mark.parametrize(
    "options, option",
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_threshold": -2}, "failure_threshold"),
        ({"reset_timeout": 0}, "reset_timeout"),
        ({"half_open_timeout": -1}, "half_open_timeout"),
        ({"monitor_interval": 0}, "monitor_interval"),
        ({"half_open_max_probes": 0}, "half_open_max_probes"),
        ({"failure_rate_threshold": 101}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 50, "failure_rate_window_size": 0}, "failure_rate_window_size"),
        ({"failure_rate_window_size": 10}, "failure_rate_threshold"),
        ({"slow_call_threshold": 0}, "slow_call_threshold"),
    ],
)
def test_invalid_options_name_the_option(options, option):
    with pytest.raises(ValueError, match=option) as info:
        stockade.CircuitBreaker("bad", **options)
    assert info.value.option == option


def test_exclude_must_be_exception_classes():
    with pytest.raises(TypeError):
        stockade.CircuitBreaker("bad", exclude=["KeyError"])


def test_closed_passes_calls_and_exceptions_unchanged():
    b = stockade.CircuitBreaker("closed")
    assert b.execute(lambda a, b=1: a + b, 1, b=2) == 3
    mine = ValueError("mine")

    def raise_mine():
        raise mine

    with pytest.raises(ValueError) as info:
        b.execute(raise_mine)
    assert info.value is mine
    assert info.value.__traceback__.tb_next is not None  # still reaches raise_mine


def test_opens_after_failure_threshold_and_rejects():
    b = stockade.CircuitBreaker("opens", failure_threshold=3, reset_timeout=30)
    fail_n(b, 3)
    assert b.state == "open"
    called = []
    with pytest.raises(stockade.CircuitOpenError) as info:
        b.execute(called.append, 1)
    assert called == []
    assert info.value.name == "opens"
    assert 29 < info.value.retry_after <= 30
    m = b.metrics()
    assert (m["state"], m["failures"], m["rejections"], m["calls"]) == ("open", 3, 1, 4)


def test_success_resets_consecutive_failures():
    b = stockade.CircuitBreaker("resets", failure_threshold=2)
    fail_n(b, 1)
    b.execute(lambda: None)
    fail_n(b, 1)
    assert b.state == "closed"


def test_excluded_exceptions_do_not_count():
    b = stockade.CircuitBreaker("exclude", failure_threshold=1, exclude=KeyError)
    for _ in range(3):
        with pytest.raises(KeyError):
            b.execute(lambda: {}["missing"])
    assert b.state == "closed"
    fail_n(b, 1)
    assert b.state == "open"


def test_half_open_probe_closes_on_success():
    # The round closes early after one successful probe (else at its end).
    b = stockade.CircuitBreaker("probe", failure_threshold=1, reset_timeout=0.05, half_open_successes_to_close=1)
    events = []
    b.add_listener(events.append)
    fail_n(b, 1)
    time.sleep(0.06)
    assert b.execute(lambda: "probe ok") == "probe ok"
    assert b.state == "closed"
    changes = [(e.from_state, e.to_state) for e in events if e.kind == "state_changed"]
    assert changes[0] == ("closed", "open")
    assert changes[-1][1] == "closed"


def test_half_open_round_without_early_close_stays_half_open():
    b = stockade.CircuitBreaker("round", failure_threshold=1, reset_timeout=0.05, half_open_timeout=30)
    fail_n(b, 1)
    time.sleep(0.06)
    b.execute(lambda: None)
    assert b.state == "half_open"


def test_half_open_probe_failure_reopens():
    b = stockade.CircuitBreaker("reprobe", failure_threshold=1, reset_timeout=0.05)
    fail_n(b, 1)
    time.sleep(0.06)
    fail_n(b, 1)
    assert b.state == "open"


def _trip_and_wait(b):
    b.trip()
    assert b.state == "open"
    time.sleep(b.reset_timeout + 0.01)


@pytest.mark.parametrize("probes", [1, 3])
def test_half_open_admits_exactly_the_probes_among_threads(probes):
    b = stockade.CircuitBreaker(
        f"probes-threads-{probes}", reset_timeout=0.05, half_open_max_probes=probes, half_open_successes_to_close=probes
    )
    _trip_and_wait(b)
    release = threading.Event()
    admitted, rejected = [], []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def caller():
        start.wait(5)
        try:
            b.execute(lambda: (admitted.append(1), release.wait(5)))
        except stockade.CircuitOpenError:
            with lock:
                rejected.append(1)

    threads = [start_thread(caller) for _ in range(16)]
    deadline = time.monotonic() + 5
    while len(admitted) + len(rejected) < 16 and time.monotonic() < deadline:
        if len(rejected) == 16 - probes and len(admitted) == probes:
            break
        time.sleep(0.005)
    assert (len(admitted), len(rejected)) == (probes, 16 - probes)
    release.set()
    join_all(threads)
    assert b.state == "closed"


def test_half_open_admits_exactly_the_probes_among_tasks():
    b = stockade.CircuitBreaker("probes-tasks", reset_timeout=0.05, half_open_max_probes=2)
    _trip_and_wait(b)

    async def main():
        release = asyncio.Event()
        admitted = []

        async def probe():
            admitted.append(1)
            await release.wait()

        async def caller():
            try:
                await b.execute(probe)
                return "ok"
            except stockade.CircuitOpenError:
                return "rejected"

        tasks = [asyncio.ensure_future(caller()) for _ in range(20)]
        await asyncio.sleep(0.05)
        assert len(admitted) == 2
        release.set()
        return await asyncio.gather(*tasks)

    outcomes = run(main())
    assert outcomes.count("ok") == 2 and outcomes.count("rejected") == 18


def test_threads_doing_io_through_a_closed_breaker_run_in_parallel():
    b = stockade.CircuitBreaker("parallel")
    threads = [start_thread(b.execute, time.sleep, 0.2) for _ in range(8)]
    start = time.monotonic()
    join_all(threads)
    assert time.monotonic() - start < 0.6  # about one sleep, not eight


def test_manual_states():
    b = stockade.CircuitBreaker("manual")
    b.force_open()
    assert b.state == "forced_open"
    with pytest.raises(stockade.CircuitOpenError) as info:
        b.execute(lambda: None)
    assert info.value.retry_after is None
    b.disable()
    assert b.state == "disabled"
    fail_n(b, 10)
    assert b.state == "disabled"
    b.reset()
    assert b.state == "closed"
    b.trip()
    assert b.state == "open"


def test_context_manager_counts_exceptions():
    b = stockade.CircuitBreaker("with", failure_threshold=2)
    with b:
        pass
    for _ in range(2):
        with pytest.raises(ConnectionError):
            with b:
                raise ConnectionError("down")
    assert b.state == "open"
    with pytest.raises(stockade.CircuitOpenError):
        with b:
            pytest.fail("must not run")


def test_context_manager_nests_and_is_per_thread():
    b = stockade.CircuitBreaker("with-nested", half_open_max_probes=1)
    with b:
        with b:
            pass
    errors = []

    def worker():
        try:
            for _ in range(100):
                with b:
                    pass
        except BaseException as e:  # noqa: B902
            errors.append(e)

    join_all([start_thread(worker) for _ in range(4)])
    assert errors == []
    assert b.metrics()["successes"] == 402


def test_async_with():
    b = stockade.CircuitBreaker("async-with", failure_threshold=1)

    async def main():
        async with b:
            await asyncio.sleep(0)
        with pytest.raises(ConnectionError):
            async with b:
                raise ConnectionError("down")
        with pytest.raises(stockade.CircuitOpenError):
            async with b:
                pass

    run(main())
    assert b.state == "open"


def test_async_execute_reports_when_the_coroutine_ends():
    b = stockade.CircuitBreaker("async-exec", failure_threshold=1)

    async def ok(x):
        await asyncio.sleep(0)
        return x

    async def fail():
        await asyncio.sleep(0)
        raise ConnectionError("down")

    async def main():
        assert await b.execute(ok, 5) == 5
        assert b.state == "closed"
        with pytest.raises(ConnectionError):
            await b.execute(fail)
        assert b.state == "open"

    run(main())


def test_cancelled_task_does_not_count_and_frees_the_probe():
    b = stockade.CircuitBreaker("cancel", failure_threshold=1, reset_timeout=0.05, half_open_successes_to_close=1)

    async def main():
        b.trip()
        await asyncio.sleep(0.06)
        task = asyncio.ensure_future(b.execute(asyncio.sleep, 10))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The probe slot is free again: the next call is admitted.
        assert await b.execute(asyncio.sleep, 0, "ok") == "ok"

    run(main())
    assert b.state == "closed"


def test_decorators_sync_and_async():
    b = stockade.CircuitBreaker("deco", failure_threshold=1)

    @b
    def f(x):
        """Doc."""
        return x + 1

    @b
    async def g(x):
        return x * 2

    assert f(1) == 2 and f.__name__ == "f" and f.__doc__ == "Doc."
    assert inspect.iscoroutinefunction(g)
    assert run(g(4)) == 8
    assert b.wrap(f).pattern is b


def test_listeners_see_rejections():
    b = stockade.CircuitBreaker("listen", failure_threshold=1)
    events = []
    b.add_listener(events.append)
    fail_n(b, 1)
    with pytest.raises(stockade.CircuitOpenError):
        b.execute(lambda: None)
    kinds = [e.kind for e in events]
    assert kinds == ["state_changed", "rejected"]
    assert events[1].retry_after > 59
    assert b.remove_listener(events.append)


def test_failure_rate_rule_opens():
    b = stockade.CircuitBreaker(
        "rate", failure_threshold=1000, failure_rate_threshold=50, failure_rate_window_size=10, failure_rate_minimum_calls=10
    )
    for i in range(10):
        if i % 2:
            with pytest.raises(ConnectionError):
                b.execute(boom)
        else:
            b.execute(lambda: None)
    assert b.state == "open"


def test_slow_calls_count_as_failures():
    b = stockade.CircuitBreaker("slow", failure_threshold=1, slow_call_threshold=0.01)
    b.execute(time.sleep, 0.02)
    assert b.state == "open"


def test_registry_and_dispose():
    b = stockade.CircuitBreaker("registered-breaker", failure_threshold=2)
    assert stockade.CircuitBreaker.get_breaker("registered-breaker") is b
    b.dispose()
    with pytest.raises(stockade.DisposedError):
        b.execute(lambda: None)
    other = stockade.CircuitBreaker.get_breaker("registered-breaker")
    assert other is not b and other.failure_threshold == 5
    other.dispose()


def test_async_exception_keeps_its_traceback_and_close_is_not_counted():
    b = stockade.CircuitBreaker("async-tb", failure_threshold=1)
    mine = ConnectionError("mine")

    async def fail():
        await asyncio.sleep(0)
        raise mine

    async def main():
        with pytest.raises(ConnectionError) as info:
            await b.execute(fail)
        return info.value

    exc = run(main())
    assert exc is mine
    names = []
    tb = exc.__traceback__
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert names[-1] == "fail"
    b.reset()
    before = b.metrics()["failures"]
    aw = b.execute(fail)
    aw.close()  # never awaited: closed, not counted
    assert b.state == "closed" and b.metrics()["failures"] == before


def test_async_send_and_throw_pass_through():
    b = stockade.CircuitBreaker("async-gen")

    async def echo():
        got = await asyncio.sleep(0, "x")
        return got

    # Driven by hand, as an event loop would.
    aw = b.execute(echo).__await__()
    aw.send(None)
    with pytest.raises(StopIteration) as info:
        aw.send(None)
    assert info.value.value == "x"


def test_async_function_returning_a_future():
    b = stockade.CircuitBreaker("future", failure_threshold=1)

    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.call_later(0.01, fut.set_result, "from a future")
        assert await b.execute(lambda: fut) == "from a future"
        bad = loop.create_future()
        loop.call_later(0.01, bad.set_exception, ConnectionError("down"))
        with pytest.raises(ConnectionError):
            await b.execute(lambda: bad)

    run(main())
    assert b.state == "open"


class _RaisingCheck(type):
    def __instancecheck__(cls, obj):
        raise RuntimeError("exclude check failed")


class Unmatchable(Exception, metaclass=_RaisingCheck):
    pass


def _half_open_with_broken_exclude(name):
    b = stockade.CircuitBreaker(
        name, failure_threshold=1, reset_timeout=0.05, half_open_timeout=30, half_open_max_probes=1, exclude=Unmatchable
    )
    b.trip()
    time.sleep(0.06)
    return b


def test_a_probe_whose_exclude_check_raises_is_reported_as_a_failure():
    b = _half_open_with_broken_exclude("exclude-raises")
    with pytest.raises(RuntimeError, match="exclude check failed") as raised:
        b.execute(boom)
    assert isinstance(raised.value.__context__, ConnectionError)
    # The probe was reported (a failure): the circuit opened again, rather
    # than staying half-open with its only probe lost until half_open_timeout.
    assert b.state == "open"
    assert b.metrics()["failures"] >= 1
    time.sleep(0.06)
    assert b.execute(lambda: "probe ok") == "probe ok"


def test_a_block_whose_exclude_check_raises_is_reported_as_a_failure():
    b = _half_open_with_broken_exclude("exclude-raises-with")
    with pytest.raises(RuntimeError, match="exclude check failed"):
        with b:
            raise ConnectionError("down")
    assert b.state == "open"
    time.sleep(0.06)
    with b:
        pass
    assert b.state in ("half_open", "closed")


def test_an_async_probe_whose_exclude_check_raises_is_reported_as_a_failure(unraisable):
    b = _half_open_with_broken_exclude("exclude-raises-async")

    async def aboom():
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        run(b.execute(aboom))
    assert b.state == "open"
    assert any(isinstance(u.exc_value, RuntimeError) for u in unraisable)
