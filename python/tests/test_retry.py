import asyncio
import datetime
import inspect
import re
import sys
import threading
import time
import traceback

import pytest

import stockade
from conftest import join_all, run, start_thread


class Flaky:
    """Fails `failures` times with `exc`, then returns `value`."""

    def __init__(self, failures, exc=lambda: ConnectionError("network error"), value="ok"):
        self.failures = failures
        self.exc = exc
        self.value = value
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        self.args = (args, kwargs)
        if self.calls <= self.failures:
            raise self.exc()
        return self.value


_names = iter(range(10**6))


def fast(name=None, **options):
    """A quick retry; a fresh name each time (a name holds one instance)."""
    if name is None:
        name = f"r{next(_names)}"
    options.setdefault("initial_delay", 0.001)
    options.setdefault("max_delay", 0.01)
    return stockade.Retry(name, **options)


def test_defaults_are_the_specs():
    r = stockade.Retry("defaults")
    assert r.name == "defaults"
    assert r.max_attempts == 3
    assert r.initial_delay == 1.0
    assert r.max_delay == 30.0
    assert r.backoff_factor == 2.0
    assert r.retryable_errors == ()
    assert r.jitter == "none"
    assert r.max_elapsed is None
    assert r.seed is None
    assert [r.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_options_take_seconds_or_timedelta():
    r = stockade.Retry(
        "td",
        max_attempts=5,
        initial_delay=datetime.timedelta(milliseconds=250),
        max_delay=datetime.timedelta(seconds=2),
        backoff_factor=3,
        max_elapsed=10,
        jitter="full",
        seed=7,
    )
    assert (r.max_attempts, r.initial_delay, r.max_delay, r.backoff_factor) == (5, 0.25, 2.0, 3.0)
    assert (r.max_elapsed, r.jitter, r.seed) == (10.0, "full", 7)


@pytest.mark.parametrize(
    "options, option",
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": -1}, "max_attempts"),
        ({"max_attempts": 2**40}, "max_attempts"),
        ({"backoff_factor": 0.5}, "backoff_factor"),
        ({"backoff_factor": float("nan")}, "backoff_factor"),
        ({"initial_delay": 5, "max_delay": 1}, "initial_delay"),
        ({"initial_delay": -1}, "initial_delay"),
        ({"max_delay": float("nan")}, "max_delay"),
        ({"max_delay": datetime.timedelta(seconds=-1)}, "max_delay"),
        ({"max_elapsed": 0}, "max_elapsed"),
        ({"jitter": "sometimes"}, "jitter"),
    ],
)
def test_invalid_options_raise_value_error_naming_the_option(options, option):
    with pytest.raises(ValueError, match=option) as info:
        stockade.Retry("bad", **options)
    assert isinstance(info.value, stockade.ConfigError)
    assert info.value.option == option


def test_core_message_is_used():
    with pytest.raises(ValueError) as info:
        stockade.Retry("bad", backoff_factor=0.5)
    assert str(info.value) == "invalid backoff_factor = 0.5: must be at least 1"


@pytest.mark.parametrize(
    "options",
    [{"initial_delay": "1s"}, {"max_attempts": 2.0}, {"max_attempts": True}, {"retryable_errors": [42]}],
)
def test_options_of_the_wrong_type_raise_type_error(options):
    with pytest.raises(TypeError):
        stockade.Retry("bad", **options)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        stockade.Retry("bad", 3)


def test_success_passes_arguments_and_returns_the_value():
    f = Flaky(0)
    assert fast().execute(f, 1, 2, key="v") == "ok"
    assert f.args == ((1, 2), {"key": "v"})
    assert f.calls == 1


def test_retries_until_success():
    f = Flaky(2)
    r = fast("until-success")
    assert r.execute(f) == "ok"
    assert f.calls == 3
    m = r.metrics()
    assert (m["calls"], m["successes"], m["failures"], m["retries"]) == (1, 1, 0, 2)
    assert m["name"] == "until-success"


def test_exhausted_reraises_the_last_exception_unchanged_with_a_note():
    raised = []

    def fail():
        e = ConnectionError(f"network error {len(raised)}")
        raised.append(e)
        raise e

    r = fast("exhaust")
    with pytest.raises(ConnectionError) as info:
        r.execute(fail)
    assert info.value is raised[-1]
    assert len(raised) == 3
    assert info.value.stockade_attempts == 3
    assert info.value.__notes__ == ["stockade: Retry 'exhaust' gave up after 3 attempts"]
    # The traceback still reaches the line that raised it.
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-1] == "fail"
    assert r.metrics()["failures"] == 1


def test_one_attempt_gets_the_note_too():
    with pytest.raises(ValueError) as info:
        fast(max_attempts=1).execute(Flaky(5, lambda: ValueError("x")))
    assert info.value.stockade_attempts == 1
    assert "after 1 attempt" in info.value.__notes__[0]


def test_retryable_errors_by_substring():
    r = fast(retryable_errors=["network error", "timeout"])
    f = Flaky(1, lambda: OSError("GET /x: network error (reset)"))
    assert r.execute(f) == "ok" and f.calls == 2
    g = Flaky(1, lambda: OSError("permission denied"))
    with pytest.raises(OSError, match="permission"):
        r.execute(g)
    assert g.calls == 1


def test_a_lone_string_is_one_matcher():
    r = fast(retryable_errors="HTTP 503")
    assert r.retryable_errors == ("HTTP 503",)
    f = Flaky(1, lambda: RuntimeError("HTTP 503"))
    assert r.execute(f) == "ok"


def test_retryable_errors_by_regex_uses_pythons_re():
    # (?i) and \d: Python's re syntax, searched anywhere in str(exc).
    r = fast(retryable_errors=[re.compile(r"(?i)http 5\d\d")])
    f = Flaky(2, lambda: RuntimeError("upstream said HTTP 503"))
    assert r.execute(f) == "ok" and f.calls == 3
    g = Flaky(1, lambda: RuntimeError("HTTP 404"))
    with pytest.raises(RuntimeError, match="404"):
        r.execute(g)
    assert g.calls == 1


def test_retryable_errors_by_class_uses_isinstance():
    r = fast(retryable_errors=[ConnectionError])
    f = Flaky(2, lambda: ConnectionResetError("reset"))  # a subclass
    assert r.execute(f) == "ok" and f.calls == 3
    g = Flaky(1, lambda: KeyError("k"))
    with pytest.raises(KeyError):
        r.execute(g)
    assert g.calls == 1


def test_non_retryable_error_is_raised_at_once_without_note():
    r = fast(retryable_errors=[ConnectionError])
    g = Flaky(1, lambda: KeyError("k"))
    with pytest.raises(KeyError) as info:
        r.execute(g)
    assert not hasattr(info.value, "stockade_attempts")
    assert r.metrics()["failures"] == 1


def test_base_exceptions_are_never_retried():
    f = Flaky(1, lambda: SystemExit(3))
    with pytest.raises(SystemExit):
        fast().execute(f)
    assert f.calls == 1


def test_delays_follow_the_backoff():
    events = []
    r = stockade.Retry("delays", max_attempts=4, initial_delay=0.01, max_delay=0.025, backoff_factor=2)
    r.add_listener(events.append)
    with pytest.raises(ConnectionError):
        r.execute(Flaky(9))
    assert [(e.kind, e.attempt, e.delay) for e in events] == [
        ("retry", 1, 0.01),
        ("retry", 2, 0.02),
        ("retry", 3, 0.025),
    ]
    assert all(e.pattern == "retry" and e.name == "delays" for e in events)
    assert isinstance(events[0].error, ConnectionError)


def test_sleeps_between_attempts():
    r = stockade.Retry("sleepy", max_attempts=3, initial_delay=0.05, backoff_factor=2)
    start = time.monotonic()
    with pytest.raises(ConnectionError):
        r.execute(Flaky(9))
    assert 0.15 <= time.monotonic() - start < 2.0


def test_jitter_is_seeded():
    def delays(seed):
        events = []
        r = fast(max_attempts=5, max_delay=0.004, jitter="full", seed=seed)
        r.add_listener(events.append)
        with pytest.raises(ConnectionError):
            r.execute(Flaky(9))
        return [e.delay for e in events]

    a, b = delays(42), delays(42)
    assert a == b
    assert all(0 <= d <= 0.004 for d in a)


def test_max_elapsed_stops_retrying():
    r = stockade.Retry("budget", max_attempts=10, initial_delay=0.05, backoff_factor=2, max_elapsed=0.1)
    f = Flaky(9)
    with pytest.raises(ConnectionError) as info:
        r.execute(f)
    # 0.05 fits; then 0.05 + 0.1 > 0.1 does not.
    assert f.calls == 2
    assert info.value.stockade_attempts == 2


def test_stockade_refusals_follow_the_blocking_layers_rules():
    r = fast(max_delay=1, retryable_errors=["never matches"])
    # A breaker that will admit again within max_delay: retried anyway.
    f = Flaky(1, lambda: stockade.CircuitOpenError("open", "db", 0.001))
    assert r.execute(f) == "ok"
    # Too far away: raised as it is.
    g = Flaky(1, lambda: stockade.RateLimitedError("limited", "api", 60.0))
    with pytest.raises(stockade.RateLimitedError):
        r.execute(g)
    assert g.calls == 1
    # A nested timeout: always retried.
    h = Flaky(1, lambda: stockade.TimeoutError("slow", "t", 1.0))
    assert r.execute(h) == "ok"
    # A full bulkhead: never (retrying only adds load).
    k = Flaky(1, lambda: stockade.BulkheadFullError("full", "b"))
    with pytest.raises(stockade.BulkheadFullError):
        r.execute(k)
    assert k.calls == 1
    # A forced-open breaker says no time: never.
    m = Flaky(1, lambda: stockade.CircuitOpenError("forced open", "db", None))
    with pytest.raises(stockade.CircuitOpenError):
        r.execute(m)
    assert m.calls == 1


def test_decorator_keeps_the_functions_identity():
    r = fast()
    f = Flaky(1)

    @r
    def fetch(x):
        """Docs."""
        return f(x)

    assert fetch(1) == "ok"
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Docs."
    assert fetch.__wrapped__ is not None
    assert fetch.pattern is r
    assert not inspect.iscoroutinefunction(fetch)


def test_decorated_method_gets_self():
    r = fast()

    class Client:
        def __init__(self):
            self.calls = 0

        @r.wrap
        def get(self, x):
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("network error")
            return (self, x)

    c = Client()
    assert c.get(5) == (c, 5)
    assert c.calls == 2


def test_async_retries_with_asyncio_sleep():
    r = fast("async")
    calls = []

    async def flaky(x):
        calls.append(x)
        await asyncio.sleep(0)
        if len(calls) < 3:
            raise ConnectionError("network error")
        return x * 2

    assert run(r.execute(flaky, 21)) == 42
    assert len(calls) == 3
    assert r.metrics()["successes"] == 1


def test_async_retry_does_not_block_the_loop():
    r = stockade.Retry("nonblocking", max_attempts=2, initial_delay=0.2)
    ticks = []

    async def fail():
        raise ConnectionError("network error")

    async def ticker():
        for _ in range(10):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def main():
        t = asyncio.ensure_future(ticker())
        with pytest.raises(ConnectionError):
            await r.execute(fail)
        await t

    run(main())
    assert len(ticks) == 10


def test_async_exhaustion_reraises_the_same_exception():
    raised = []

    async def fail():
        raised.append(ValueError("boom"))
        raise raised[-1]

    async def main():
        with pytest.raises(ValueError) as info:
            await fast("aexhaust").execute(fail)
        return info.value

    exc = run(main())
    assert exc is raised[-1] and len(raised) == 3
    assert exc.stockade_attempts == 3
    assert exc.__context__ is None


def test_async_decorator_stays_a_coroutine_function():
    r = fast()
    n = []

    @r
    async def get():
        n.append(1)
        if len(n) == 1:
            raise ConnectionError("network error")
        return "ok"

    assert inspect.iscoroutinefunction(get)
    assert get.__name__ == "get"
    assert run(get()) == "ok"


def test_async_cancellation_is_not_retried():
    r = stockade.Retry("cancel", max_attempts=5, initial_delay=0.001)
    started = []

    async def slow():
        started.append(1)
        await asyncio.sleep(10)

    async def main():
        task = asyncio.ensure_future(r.execute(slow))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert started == [1]


def test_listeners_can_be_removed_and_may_raise(unraisable):
    r = fast()
    seen = []

    def bad(event):
        raise RuntimeError("listener bug")

    r.add_listener(seen.append)
    r.add_listener(bad)
    assert r.execute(Flaky(1)) == "ok"
    assert len(seen) == 1
    assert len(unraisable) == 1 and isinstance(unraisable[0].exc_value, RuntimeError)
    assert r.remove_listener(seen.append)  # an equal bound method
    assert r.remove_listener(bad)
    assert not r.remove_listener(bad)
    r.execute(Flaky(1))
    assert len(seen) == 1


def test_a_name_holds_one_instance():
    r = stockade.Retry("taken-retry")
    with pytest.raises(stockade.NameTakenError, match="taken-retry") as info:
        stockade.Retry("taken-retry", max_attempts=5)
    assert isinstance(info.value, ValueError)
    assert stockade.Retry.get_retrier("taken-retry") is r
    r.dispose()  # frees the name
    again = stockade.Retry("taken-retry", max_attempts=5)
    assert again.max_attempts == 5
    again.dispose()


def test_registry_returns_the_constructed_instance():
    r = stockade.Retry("registered-retry", max_attempts=7)
    assert stockade.Retry.get_retrier("registered-retry") is r
    r.dispose()
    fresh = stockade.Retry.get_retrier("registered-retry")
    assert fresh is not r and fresh.max_attempts == 3
    assert stockade.Retry.get_retrier("registered-retry") is fresh
    fresh.dispose()


def test_disposed_refuses_calls():
    r = fast("gone")
    events = []
    r.add_listener(events.append)
    r.dispose()
    assert r.disposed
    assert [e.kind for e in events] == ["disposed"]
    with pytest.raises(stockade.DisposedError) as info:
        r.execute(Flaky(0))
    assert info.value.name == "gone"
    with pytest.raises(stockade.DisposedError):
        run(r.execute(asyncio.sleep, 0))


def test_dispose_wakes_a_retry_sleeping_in_backoff():
    r = stockade.Retry("wake", max_attempts=3, initial_delay=30)
    failed = threading.Event()
    out = []

    def fail():
        failed.set()
        raise ConnectionError("network error")

    def caller():
        try:
            r.execute(fail)
        except BaseException as e:  # noqa: B902 - recorded for the assertion
            out.append(e)

    t = start_thread(caller)
    assert failed.wait(5)
    start = time.monotonic()
    r.dispose()
    join_all([t], timeout=5)
    assert time.monotonic() - start < 1.0
    assert isinstance(out[0], stockade.DisposedError)


@pytest.mark.usefixtures("sigint_raises")
def test_keyboard_interrupt_reaches_a_caller_sleeping_in_backoff():
    import _thread

    r = stockade.Retry("ctrl-c", max_attempts=3, initial_delay=30)
    failed = threading.Event()

    def fail():
        failed.set()
        raise ConnectionError("network error")

    def interrupter():
        assert failed.wait(5)
        time.sleep(0.05)
        _thread.interrupt_main()

    t = start_thread(interrupter)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        r.execute(fail)
    assert time.monotonic() - start < 2.0
    join_all([t])
    m = r.metrics()
    # Interrupted: no outcome, not a call (the retry it scheduled happened).
    assert (m["calls"], m["successes"], m["failures"], m["retries"]) == (0, 0, 0, 1)


def test_threads_share_one_retry():
    r = fast("shared")
    results = []

    def worker():
        for _ in range(50):
            results.append(r.execute(Flaky(1)))

    threads = [start_thread(worker) for _ in range(4)]
    join_all(threads)
    assert results == ["ok"] * 200
    m = r.metrics()
    assert (m["calls"], m["successes"], m["retries"]) == (200, 200, 200)


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="the fallback for 3.9/3.10")
def test_notes_fallback_before_311():
    with pytest.raises(ValueError) as info:
        fast(max_attempts=1).execute(Flaky(5, lambda: ValueError("x")))
    assert info.value.__notes__[0].endswith("gave up after 1 attempt")
