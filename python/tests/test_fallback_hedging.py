"""stockade.Fallback and stockade.Hedging, threads and asyncio: which
exceptions a fallback replaces (Stockade's refusals included), hedging's
races driven by gates (who wins, what a failure does, a full pool, the
loser detached or cancelled), events, metrics, the registry, dispose and
bad options. Every wait on another thread has a watchdog."""

import asyncio
import contextvars
import itertools
import sys
import threading
import time

import pytest

import stockade

WATCHDOG = 20.0
_names = itertools.count()


def fresh(prefix):
    return "%s-%d" % (prefix, next(_names))


def wait_until(what, cond):
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < WATCHDOG, "watchdog: " + what
        time.sleep(0.001)


def within(func):
    """``func()`` on another thread, failing on the watchdog instead of
    hanging; its exception is raised here."""
    out = {}

    def run():
        try:
            out["value"] = func()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WATCHDOG)
    assert not thread.is_alive(), "watchdog: the call did not return"
    if "error" in out:
        raise out["error"]
    return out["value"]


def run_async(main):
    """``asyncio.run(main())`` that fails on the watchdog."""
    return asyncio.run(asyncio.wait_for(main(), WATCHDOG))


class Numbered:
    """Numbers the attempts in the order they start."""

    def __init__(self):
        self._lock = threading.Lock()
        self._next = 0

    def next(self):
        with self._lock:
            self._next += 1
            return self._next

    @property
    def started(self):
        with self._lock:
            return self._next


def recorder(pattern):
    events = []
    pattern.add_listener(events.append)
    return events


# ---- Fallback ----------------------------------------------------------


def test_a_value_or_a_function_of_the_exception_replaces_a_failure():
    value = stockade.Fallback(fresh("fb"), fallback="cached")
    assert value.execute(lambda: "live") == "live"

    def boom():
        raise ConnectionError("down")

    assert value.execute(boom) == "cached"
    seen = []
    func = stockade.Fallback(fresh("fb"), fallback=lambda exc: seen.append(exc) or "from %s" % exc)
    assert func.execute(boom) == "from down"
    assert isinstance(seen[0], ConnectionError)
    m = value.metrics()
    assert (m["calls"], m["successes"], m["failures"], m["fallbacks"]) == (2, 1, 0, 1)


def test_on_chooses_the_exceptions():
    by_type = stockade.Fallback(fresh("fb"), fallback=0, on=(KeyError, ConnectionError))
    by_predicate = stockade.Fallback(fresh("fb"), fallback=0, on=lambda exc: "retryable" in str(exc))

    def raise_(exc):
        raise exc

    assert by_type.execute(raise_, KeyError("k")) == 0
    with pytest.raises(ValueError):
        by_type.execute(raise_, ValueError("v"))
    assert by_predicate.execute(raise_, RuntimeError("retryable error")) == 0
    with pytest.raises(RuntimeError):
        by_predicate.execute(raise_, RuntimeError("fatal"))
    assert by_type.metrics()["failures"] == 1
    # An interruption is never replaced, and is no outcome.
    catch_all = stockade.Fallback(fresh("fb"), fallback=0, on=BaseException)
    with pytest.raises(KeyboardInterrupt):
        catch_all.execute(raise_, KeyboardInterrupt())
    assert catch_all.metrics()["calls"] == 0


def test_a_breakers_refusal_is_replaced_in_a_pipeline():
    breaker = stockade.CircuitBreaker(fresh("br"), failure_threshold=1)
    fallback = stockade.Fallback(fresh("fb"), fallback="cached", on=stockade.CircuitOpenError)
    events = recorder(fallback)
    protected = stockade.pipeline(fallback, breaker)

    def down():
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        protected.execute(down)
    calls = []
    assert protected.execute(lambda: calls.append(1) or "live") == "cached"
    assert calls == []
    assert [e.kind for e in events] == ["fallback_used"]
    assert events[0].pattern == "fallback"
    assert isinstance(events[0].error, stockade.CircuitOpenError)


def test_async_calls_and_async_fallbacks():
    async def fail():
        raise ConnectionError("down")

    async def cached(exc):
        return "cached after %s" % exc

    fallback = stockade.Fallback(fresh("fb"), fallback=cached)

    @fallback
    async def decorated():
        return await fail()

    async def main():
        assert await fallback.execute(fail) == "cached after down"
        assert await decorated() == "cached after down"

    run_async(main)
    assert fallback.metrics()["fallbacks"] == 2


def test_fallback_registry_dispose_and_bad_options():
    name = fresh("fb")
    fallback = stockade.Fallback(name)
    with pytest.raises(stockade.NameTakenError):
        stockade.Fallback(name)
    assert stockade.Fallback.get_fallback(name) is fallback
    events = recorder(fallback)
    fallback.dispose()
    assert [e.kind for e in events] == ["disposed"]
    with pytest.raises(stockade.DisposedError):
        fallback.execute(lambda: 1)
    assert stockade.Fallback.get_fallback(name) is not fallback
    stockade.Fallback.get_fallback(name).dispose()
    for bad in (1, "x", (), (ValueError, 3)):
        with pytest.raises(TypeError, match="on"):
            stockade.Fallback(fresh("fb"), on=bad)


# ---- Hedging, threads ---------------------------------------------------


def test_a_hedge_wins_over_a_slow_first_attempt_which_is_detached():
    hedging = stockade.Hedging(fresh("h"), delay=0.01)
    events = recorder(hedging)
    gate = threading.Event()
    finished = []
    numbers = Numbered()

    def call():
        n = numbers.next()
        if n == 1:
            assert gate.wait(WATCHDOG), "watchdog: the gate was never opened"
        finished.append(n)
        return n

    assert within(lambda: hedging.execute(call)) == 2
    assert finished == [2]  # the loser still runs
    gate.set()
    wait_until("the loser finishes", lambda: finished == [2, 1])
    wait_until("its slot is free", lambda: hedging.metrics()["in_flight"] == 0)
    m = hedging.metrics()
    assert (m["calls"], m["successes"], m["hedges"], m["hedges_won"]) == (1, 1, 1, 1)
    assert [(e.kind, e.attempt) for e in events] == [("hedge_launched", 2), ("hedge_won", 2)]
    assert {e.pattern for e in events} == {"hedging"}


def test_a_failure_launches_the_next_attempt_at_once():
    hedging = stockade.Hedging(fresh("h"), delay=3600, max_attempts=3)
    numbers = Numbered()

    def call():
        n = numbers.next()
        if n == 1:
            raise ConnectionError("flaky")
        return n

    assert within(lambda: hedging.execute(call)) == 2
    m = hedging.metrics()
    assert (m["successes"], m["hedges"], m["hedges_won"]) == (1, 1, 1)


def test_on_chooses_the_exceptions_that_launch_the_next_attempt():
    hedging = stockade.Hedging(fresh("h"), delay=3600, max_attempts=3, on=ConnectionError)
    numbers = Numbered()

    def busy_then_ok():
        n = numbers.next()
        if n < 3:
            raise ConnectionError("busy %d" % n)
        return n

    assert within(lambda: hedging.execute(busy_then_ok)) == 3
    m = hedging.metrics()
    assert (m["successes"], m["hedges"], m["hedges_won"]) == (1, 2, 1)

    # A KeyError is not chosen: final at once, no hedge launched.
    numbers = Numbered()

    def missing():
        numbers.next()
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        within(lambda: hedging.execute(missing))
    assert numbers.started == 1
    m = hedging.metrics()
    assert (m["calls"], m["failures"], m["hedges"]) == (2, 1, 2)


def test_on_as_a_predicate_and_a_tuple():
    seen = []

    def only_busy(exc):
        seen.append(str(exc))
        return "busy" in str(exc)

    hedging = stockade.Hedging(fresh("h"), delay=3600, max_attempts=3, on=only_busy)
    numbers = Numbered()

    def call():
        n = numbers.next()
        raise ValueError("busy" if n == 1 else "fatal %d" % n)

    with pytest.raises(ValueError, match="fatal 2"):
        within(lambda: hedging.execute(call))
    assert seen == ["busy", "fatal 2"] and numbers.started == 2

    tupled = stockade.Hedging(fresh("h"), delay=3600, max_attempts=2, on=(KeyError, ValueError))
    numbers = Numbered()

    def value_then_ok():
        if numbers.next() == 1:
            raise ValueError("x")
        return "ok"

    assert within(lambda: tupled.execute(value_then_ok)) == "ok"
    for bad in (42, (), (int,)):
        with pytest.raises(TypeError, match="on must be"):
            stockade.Hedging(fresh("h"), on=bad)


def test_an_on_predicate_that_raises_propagates_uncounted():
    def broken(exc):
        raise RuntimeError("broken predicate")

    hedging = stockade.Hedging(fresh("h"), delay=3600, max_attempts=3, on=broken)
    numbers = Numbered()

    def call():
        numbers.next()
        raise ValueError("failed")

    with pytest.raises(RuntimeError, match="broken predicate"):
        within(lambda: hedging.execute(call))

    async def acall():
        numbers.next()
        raise ValueError("failed")

    async def main():
        with pytest.raises(RuntimeError, match="broken predicate"):
            await hedging.execute(acall)

    run_async(main)
    assert numbers.started == 2
    m = hedging.metrics()
    assert (m["calls"], m["successes"], m["failures"], m["hedges"]) == (0, 0, 0, 0)
    wait_until("the slots are back", lambda: hedging.metrics()["in_flight"] == 0)


def test_a_final_failure_leaves_the_attempt_in_flight_detached():
    hedging = stockade.Hedging(fresh("h"), delay=0.01, max_attempts=3, on=ConnectionError)
    gate = threading.Event()
    finished = []
    numbers = Numbered()

    def call():
        n = numbers.next()
        if n == 1:
            assert gate.wait(WATCHDOG), "watchdog: the gate was never opened"
            finished.append(n)
            return "late success"
        finished.append(n)
        raise PermissionError("denied")

    with pytest.raises(PermissionError, match="denied"):
        within(lambda: hedging.execute(call))
    assert numbers.started == 2 and finished == [2]  # attempt 1 still runs
    m = hedging.metrics()
    assert (m["calls"], m["failures"], m["successes"], m["hedges"]) == (1, 1, 0, 1)
    gate.set()
    wait_until("the loser finishes", lambda: finished == [2, 1])
    wait_until("its slot is free", lambda: hedging.metrics()["in_flight"] == 0)
    m = hedging.metrics()
    assert (m["calls"], m["successes"], m["hedges_won"]) == (1, 0, 0)


def test_an_async_final_failure_cancels_the_attempts_in_flight():
    hedging = stockade.Hedging(fresh("h"), delay=0.01, max_attempts=3, on=ConnectionError)
    numbers = Numbered()
    cancelled = []

    async def call():
        n = numbers.next()
        if n == 1:
            try:
                await asyncio.sleep(WATCHDOG)
            except asyncio.CancelledError:
                cancelled.append(n)
                raise
            return "watchdog"
        raise PermissionError("denied %d" % n)

    async def main():
        with pytest.raises(PermissionError, match="denied 2"):
            await hedging.execute(call)
        await asyncio.sleep(0)  # the cancellation reaches the loser
        assert cancelled == [1]
        assert numbers.started == 2

    run_async(main)
    m = hedging.metrics()
    assert (m["calls"], m["failures"], m["hedges"], m["in_flight"]) == (1, 1, 1, 0)


def test_async_attempts_done_together_are_taken_in_launch_order(monkeypatch):
    # delay=0: both attempts start at once and finish at the same wake-up
    # of the caller: attempt 1 with an exception ``on`` does not choose,
    # attempt 2 with a value. asyncio.wait's done set has no order; here it
    # comes back latest-started first, and attempt 1 must still decide.
    real_wait = asyncio.wait

    async def wait_latest_first(fs, **kwargs):
        fs = list(fs)
        done, pending = await real_wait(fs, **kwargs)
        return [f for f in reversed(fs) if f in done], pending

    monkeypatch.setattr(asyncio, "wait", wait_latest_first)
    hedging = stockade.Hedging(fresh("h"), delay=0, max_attempts=2, on=ConnectionError)
    numbers = Numbered()

    async def call():
        if numbers.next() == 1:
            raise KeyError("first")
        return "second"

    async def main():
        with pytest.raises(KeyError, match="first"):
            await hedging.execute(call)

    run_async(main)
    assert numbers.started == 2
    m = hedging.metrics()
    assert (m["failures"], m["successes"]) == (1, 0)


def test_when_every_attempt_fails_the_last_to_finish_is_raised():
    hedging = stockade.Hedging(fresh("h"), delay=0, max_attempts=3)
    gates = {n: threading.Event() for n in (1, 2, 3)}
    numbers = Numbered()
    out = {}

    def call():
        n = numbers.next()
        assert gates[n].wait(WATCHDOG), "watchdog"
        raise ValueError("attempt %d" % n)

    def caller():
        try:
            hedging.execute(call)
        except ValueError as exc:
            out["error"] = str(exc)

    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    wait_until("every attempt runs", lambda: hedging.metrics()["in_flight"] == 3)
    gates[2].set()
    gates[3].set()
    wait_until("attempts 2 and 3 are done", lambda: hedging.metrics()["in_flight"] == 1)
    gates[1].set()
    thread.join(WATCHDOG)
    assert not thread.is_alive()
    assert out == {"error": "attempt 1"}
    m = hedging.metrics()
    assert (m["calls"], m["failures"], m["hedges"], m["hedges_won"]) == (1, 1, 2, 0)


def test_a_full_pool_means_no_hedge():
    hedging = stockade.Hedging(fresh("h"), delay=0, max_workers=1)
    events = recorder(hedging)
    gate = threading.Event()

    def call():
        assert gate.wait(WATCHDOG), "watchdog"
        return threading.get_ident()

    opener = threading.Thread(
        daemon=True,
        target=lambda: (wait_until("the hedge is refused", lambda: hedging.metrics()["rejections"] == 1), gate.set())
    )
    opener.start()
    worker = within(lambda: hedging.execute(call))
    opener.join(WATCHDOG)
    assert worker != threading.get_ident()
    m = hedging.metrics()
    assert (m["successes"], m["hedges"], m["rejections"]) == (1, 0, 1)
    assert [e.kind for e in events] == ["rejected"]
    # A first attempt that finds the pool full runs here, unhedged (the
    # busy call's hedge is never due).
    slow = stockade.Hedging(fresh("h"), delay=3600, max_workers=1)
    gate.clear()
    busy = threading.Thread(target=slow.execute, args=(call,), daemon=True)
    busy.start()
    wait_until("the only slot is taken", lambda: slow.metrics()["in_flight"] == 1)
    assert slow.execute(threading.get_ident) == threading.get_ident()
    gate.set()
    busy.join(WATCHDOG)
    assert not busy.is_alive()
    m = slow.metrics()
    assert (m["successes"], m["rejections"], m["hedges"]) == (2, 1, 0)


def _os_thread():
    """This thread's kernel id and name (Linux)."""
    tid = threading.get_native_id()
    with open("/proc/self/task/%d/comm" % tid) as f:
        return tid, f.read().strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_attempts_run_on_the_cores_worker_pool_and_reuse_its_threads():
    hedging = stockade.Hedging(fresh("h"), delay=3600, max_attempts=2)
    first_tid, name = within(lambda: hedging.execute(_os_thread))
    # The core's pool names its threads (the kernel keeps 15 bytes).
    assert name == "stockade-hedging:"[:15]
    assert first_tid != threading.get_native_id()
    wait_until("the worker is idle", lambda: hedging._pool.busy() == 0)
    for _ in range(3):
        tid, _name = within(lambda: hedging.execute(_os_thread))
        assert tid == first_tid  # the idle worker, not a new thread
        wait_until("the worker is idle", lambda: hedging._pool.busy() == 0)
    assert hedging.metrics()["in_flight"] == 0


def test_attempts_see_the_callers_context():
    var = contextvars.ContextVar("var")
    hedging = stockade.Hedging(fresh("h"))

    def caller():
        var.set("caller's")
        return hedging.execute(var.get)

    assert within(caller) == "caller's"


def test_dispose_wakes_a_waiting_thread():
    hedging = stockade.Hedging(fresh("h"), delay=3600)
    gate = threading.Event()
    out = {}

    def caller():
        try:
            hedging.execute(lambda: gate.wait(WATCHDOG))
        except stockade.DisposedError as exc:
            out["error"] = exc

    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    wait_until("the attempt runs", lambda: hedging.metrics()["in_flight"] == 1)
    hedging.dispose()
    thread.join(WATCHDOG)
    gate.set()
    assert not thread.is_alive()
    assert isinstance(out.get("error"), stockade.DisposedError)


# ---- Hedging, asyncio --------------------------------------------------


def test_an_async_hedge_wins_and_the_loser_is_cancelled():
    hedging = stockade.Hedging(fresh("h"), delay=0.01)
    numbers = Numbered()
    cancelled = []

    async def call():
        n = numbers.next()
        if n == 1:
            try:
                await asyncio.sleep(WATCHDOG)
            except asyncio.CancelledError:
                cancelled.append(n)
                raise
            return "watchdog"
        return n

    async def main():
        assert await hedging.execute(call) == 2
        await asyncio.sleep(0)  # the cancellation reaches the loser
        assert cancelled == [1]

    run_async(main)
    m = hedging.metrics()
    assert (m["successes"], m["hedges_won"], m["in_flight"]) == (1, 1, 0)


def test_an_async_failure_launches_the_next_attempt_and_all_failing_raises():
    hedging = stockade.Hedging(fresh("h"), delay=3600, max_attempts=2)
    numbers = Numbered()

    async def flaky():
        n = numbers.next()
        if n == 1:
            raise ConnectionError("flaky")
        return n

    async def always():
        raise ValueError("attempt %d" % numbers.next())

    @hedging
    async def decorated():
        return await flaky()

    async def main():
        assert await hedging.execute(flaky) == 2
        with pytest.raises(ValueError, match="attempt 4"):
            await hedging.execute(always)
        assert await decorated() == 5

    run_async(main)
    m = hedging.metrics()
    assert (m["calls"], m["successes"], m["failures"], m["hedges"]) == (3, 2, 1, 2)


def test_fallback_and_hedging_in_an_async_pipeline():
    fallback = stockade.Fallback(fresh("fb"), fallback="cached")
    hedging = stockade.Hedging(fresh("h"), delay=3600)

    async def down():
        raise ConnectionError("down")

    async def main():
        return await stockade.pipeline(fallback, hedging).execute(down)

    assert run_async(main) == "cached"
    assert hedging.metrics()["hedges"] == 1
    assert fallback.metrics()["fallbacks"] == 1


# ---- options and the registry -------------------------------------------


@pytest.mark.parametrize(
    "option, value",
    [("max_attempts", 0), ("max_attempts", 65), ("max_workers", 0), ("delay", -1), ("delay", float("nan"))],
)
def test_bad_hedging_options_name_the_option(option, value):
    with pytest.raises(stockade.ConfigError, match=option):
        stockade.Hedging(fresh("h"), **{option: value})


def test_hedging_registry():
    name = fresh("h")
    hedging = stockade.Hedging(name, delay=0.5, max_attempts=3, max_workers=4)
    assert (hedging.delay, hedging.max_attempts, hedging.max_workers) == (0.5, 3, 4)
    with pytest.raises(stockade.NameTakenError):
        stockade.Hedging(name)
    assert stockade.Hedging.get_hedging(name) is hedging
    hedging.dispose()
    with pytest.raises(stockade.DisposedError):
        hedging.execute(lambda: 1)
    again = stockade.Hedging.get_hedging(name)
    assert again is not hedging
    again.dispose()


def test_a_listener_that_raises_does_not_disturb_the_call(monkeypatch):
    reported = []
    monkeypatch.setattr("sys.unraisablehook", reported.append)
    fallback = stockade.Fallback(fresh("fb"), fallback=0)

    def broken(event):
        raise RuntimeError("listener bug")

    fallback.add_listener(broken)
    assert fallback.execute(lambda: 1 / 0) == 0
    assert len(reported) == 1 and isinstance(reported[0].exc_value, RuntimeError)
    assert fallback.remove_listener(broken) is True
    assert fallback.remove_listener(broken) is False
    with pytest.raises(TypeError, match="callback"):
        fallback.add_listener(3)


def test_dispose_wakes_an_async_caller_and_cancels_its_attempts():
    hedging = stockade.Hedging(fresh("h"), delay=3600)
    cancelled = []

    async def slow():
        try:
            await asyncio.sleep(WATCHDOG)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main():
        task = asyncio.ensure_future(hedging.execute(slow))
        while hedging.metrics()["in_flight"] != 1:
            await asyncio.sleep(0)  # bounded by run_async's watchdog
        hedging.dispose()
        with pytest.raises(stockade.DisposedError):
            await task
        await asyncio.sleep(0)
        assert cancelled == [True]

    run_async(main)


def test_fallback_and_hedging_in_a_threaded_pipeline():
    fallback = stockade.Fallback(fresh("fb"), fallback="cached")
    hedging = stockade.Hedging(fresh("h"), delay=3600)
    threads = []

    def down():
        threads.append(threading.get_ident())
        raise ConnectionError("down")

    protected = stockade.pipeline(fallback, hedging)
    assert within(lambda: protected.execute(down)) == "cached"
    # Both attempts ran, each on a worker thread of its own.
    assert len(threads) == 2 and threading.get_ident() not in threads
    assert hedging.metrics()["hedges"] == 1 and hedging.metrics()["failures"] == 1
    assert fallback.metrics()["fallbacks"] == 1
