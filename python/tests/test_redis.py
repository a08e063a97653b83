"""redis=: one rate limiter, bulkhead and circuit breaker for a fleet of
processes that share a Redis server, against a real redis-server on a free
loopback port (the ``redis_server`` fixture, killed afterwards).

Other processes are fresh interpreters (subprocess), so no process forks
after the connection pool's threads exist. Every wait on a process, a
thread or a coroutine is bounded by a watchdog; nothing asserts speed."""

import asyncio
import concurrent.futures
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import stockade

from conftest import join_all, run, start_thread

WATCHDOG = 60.0


def _options(server, **kw):
    kw.setdefault("connect_timeout", 2.0)
    kw.setdefault("command_timeout", 2.0)
    return stockade.RedisOptions(server.url, **kw)


def _child(code, *args):
    """A fresh interpreter running ``code`` (``ARGS`` holds ``args``), with
    pipes to talk to it."""
    prelude = "import sys, stockade\nARGS = sys.argv[1:]\n"
    return subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc):
    try:
        out, err = proc.communicate(timeout=WATCHDOG)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("watchdog: a child process hangs")
    assert proc.returncode == 0, f"child exited with {proc.returncode}: {err}"
    return out


def _read_line(proc):
    """The child's next stdout line, or a failure after the watchdog."""
    got = []
    t = start_thread(lambda: got.append(proc.stdout.readline()))
    t.join(WATCHDOG)
    if t.is_alive() or not got or not got[0]:
        proc.kill()
        pytest.fail("watchdog: the child did not answer: %s" % proc.stderr.read())
    return got[0].strip()


def _wait_until(check, what):
    deadline = time.monotonic() + WATCHDOG
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("watchdog: " + what)
        time.sleep(0.005)


# --- options and errors -------------------------------------------------------


def test_options_have_the_documented_defaults():
    o = stockade.RedisOptions("redis://127.0.0.1:6379/0")
    assert o.url == "redis://127.0.0.1:6379/0"
    assert (o.prefix, o.connect_timeout, o.command_timeout, o.max_connections) == ("stockade", 0.25, 0.1, 16)
    assert (o.time, o.fallback, o.expected_instances) == ("server", "local", 1)
    assert (o.guard_failures, o.guard_reset_timeout, o.adopt_stored_config) == (3, 1.0, False)
    assert (o.lease_permits, o.lease_ttl, o.sync_interval, o.failure_window, o.quorum) == (0, None, 1.0, 60.0, 1)
    from datetime import timedelta

    o = stockade.RedisOptions(
        "redis://h/1", prefix="app", connect_timeout=timedelta(milliseconds=30), command_timeout=1,
        max_connections=4, time="client", fallback="closed", expected_instances=3, guard_failures=5,
        guard_reset_timeout=2.5, adopt_stored_config=True, lease_permits=7, lease_ttl=0.5,
        sync_interval=0.2, failure_window=30, quorum=2,
    )
    assert (o.prefix, o.connect_timeout, o.command_timeout, o.max_connections) == ("app", 0.03, 1.0, 4)
    assert (o.time, o.fallback, o.expected_instances, o.guard_failures) == ("client", "closed", 3, 5)
    assert (o.guard_reset_timeout, o.adopt_stored_config, o.lease_permits, o.lease_ttl) == (2.5, True, 7, 0.5)
    assert (o.sync_interval, o.failure_window, o.quorum) == (0.2, 30.0, 2)
    assert o == stockade.RedisOptions(
        "redis://h/1", prefix="app", connect_timeout=0.03, command_timeout=1.0, max_connections=4,
        time="client", fallback="closed", expected_instances=3, guard_failures=5,
        guard_reset_timeout=2.5, adopt_stored_config=True, lease_permits=7, lease_ttl=0.5,
        sync_interval=0.2, failure_window=30, quorum=2,
    )
    assert o != stockade.RedisOptions("redis://h/1")


@pytest.mark.parametrize(
    "kw, option",
    [
        ({"prefix": "has space"}, "prefix"),
        ({"prefix": ""}, "prefix"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"command_timeout": 61}, "command_timeout"),
        ({"command_timeout": -1}, "command_timeout"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections": 5000}, "max_connections"),
        ({"expected_instances": 0}, "expected_instances"),
        ({"guard_failures": 0}, "guard_failures"),
        ({"guard_reset_timeout": float("inf")}, "guard_reset_timeout"),
        ({"lease_permits": 2_000_000}, "lease_permits"),
        ({"lease_ttl": 0}, "lease_ttl"),
        ({"sync_interval": 0}, "sync_interval"),
        ({"failure_window": 0}, "failure_window"),
        ({"quorum": 0}, "quorum"),
        ({"quorum": -1}, "quorum"),
        ({"time": "sundial"}, "time"),
        ({"fallback": "maybe"}, "fallback"),
    ],
)
def test_an_option_out_of_range_is_a_config_error_naming_it(kw, option):
    with pytest.raises(stockade.ConfigError) as e:
        stockade.RedisOptions("redis://127.0.0.1:6379/0", **kw)
    assert e.value.option == option
    assert option in str(e.value)


@pytest.mark.parametrize(
    "kw, argument",
    [
        ({"prefix": 1}, "prefix"),
        ({"connect_timeout": "1"}, "connect_timeout"),
        ({"max_connections": 1.5}, "max_connections"),
        ({"time": 1}, "time"),
        ({"fallback": 0}, "fallback"),
        ({"adopt_stored_config": 1}, "adopt_stored_config"),
        ({"quorum": True}, "quorum"),
    ],
)
def test_a_wrong_type_is_a_type_error_naming_the_argument(kw, argument):
    with pytest.raises(TypeError, match=argument):
        stockade.RedisOptions("redis://127.0.0.1:6379/0", **kw)


def test_urls_and_the_redis_keyword_are_checked():
    with pytest.raises(TypeError, match="url"):
        stockade.RedisOptions(b"redis://127.0.0.1")
    for bad in ("http://127.0.0.1:6379", "redis://127.0.0.1:notaport", ""):
        with pytest.raises(stockade.ConfigError) as e:
            stockade.RedisOptions(bad)
        assert e.value.option == "url"
        with pytest.raises(stockade.ConfigError) as e:
            stockade.RateLimiter("bad-url", redis=bad)
        assert e.value.option == "url"
    # A password is never shown.
    with pytest.raises(stockade.ConfigError) as e:
        stockade.RedisOptions("redis://:hunter2@127.0.0.1:notaport/0")
    assert "hunter2" not in str(e.value)
    assert "hunter2" not in repr(stockade.RedisOptions("redis://:hunter2@127.0.0.1:6379/0"))
    for cls in (stockade.RateLimiter, stockade.Bulkhead, stockade.CircuitBreaker):
        with pytest.raises(TypeError, match="redis"):
            cls("bad-type", redis=6379)
        with pytest.raises(stockade.ConfigError) as e:
            cls("with-shared", redis="redis://127.0.0.1:6379/0", shared=True)
        assert e.value.option == "redis"
    for cls in (stockade.RateLimiter, stockade.Bulkhead, stockade.CircuitBreaker):
        made = cls("with-shared", redis=None, shared=False)
        assert not made.is_redis
        made.dispose()


def test_an_invalid_name_or_config_is_a_config_error(redis_server):
    with pytest.raises(stockade.ConfigError) as e:
        stockade.RateLimiter("a name with {braces}", redis=redis_server.url)
    assert e.value.option == "name"
    with pytest.raises(stockade.ConfigError) as e:
        stockade.RateLimiter("zero", requests_per_period=0, redis=redis_server.url)
    assert e.value.option == "requests_per_period"


def test_the_error_hierarchy():
    assert issubclass(stockade.RedisError, stockade.StockadeError)
    assert issubclass(stockade.RedisUnavailableError, stockade.RedisError)
    assert issubclass(stockade.RedisConfigMismatchError, stockade.RedisError)
    e = stockade.RedisUnavailableError("m", "n", "timeout", 1.5)
    assert (e.name, e.cause, e.retry_after) == ("n", "timeout", 1.5)
    e = stockade.RedisConfigMismatchError("m", "n", "k", "a", "b")
    assert (e.key, e.stored, e.ours) == ("k", "a", "b")


def test_construction_needs_no_server():
    # Nothing listens on port 1: made anyway, Redis is contacted lazily.
    o = stockade.RedisOptions("redis://127.0.0.1:1/0", fallback="open", connect_timeout=0.05,
                              command_timeout=0.05)
    for cls in (stockade.RateLimiter, stockade.Bulkhead, stockade.CircuitBreaker):
        made = cls("no-server", redis=o)
        assert made.is_redis
        made.dispose()


def test_names_are_registered_and_freed_by_dispose(redis_server):
    limiter = stockade.RateLimiter("registered", redis=redis_server.url)
    assert stockade.RateLimiter.get_limiter("registered") is limiter
    with pytest.raises(stockade.NameTakenError):
        stockade.RateLimiter("registered", redis=redis_server.url)
    limiter.dispose()
    again = stockade.RateLimiter("registered", redis=redis_server.url)
    again.dispose()
    with pytest.raises(stockade.DisposedError):
        again.try_acquire()


# --- one object for the fleet ---------------------------------------------------


def test_a_limiter_is_shared_by_processes(redis_server):
    """5 per minute: another process takes 3, this one gets exactly 2."""
    child = _child(
        """
        l = stockade.RateLimiter("fleet-limit", requests_per_period=5, period=60, burst=5,
                                 queue_timeout=0, redis=ARGS[0])
        print(sum(l.try_acquire() for _ in range(3)))
        """,
        redis_server.url,
    )
    assert _finish(child).strip() == "3"
    limiter = stockade.RateLimiter("fleet-limit", requests_per_period=5, period=60, burst=5,
                                   queue_timeout=0, redis=redis_server.url)
    assert limiter.try_acquire()
    limiter.acquire()
    assert not limiter.try_acquire()
    with pytest.raises(stockade.RateLimitedError) as e:
        limiter.acquire()
    assert e.value.retry_after is not None and 0 < e.value.retry_after <= 12.0
    m = limiter.metrics()
    assert (m["calls"], m["rejections"], m["fallback_decisions"]) == (2, 2, 0)
    assert limiter.available is None
    limiter.dispose()


def test_a_bulkhead_is_shared_by_processes(redis_server):
    """While another process holds the one permit, this one is refused."""
    child = _child(
        """
        b = stockade.Bulkhead("fleet-bulk", max_concurrent=1, max_queue=0, redis=ARGS[0])
        with b:
            print("held", flush=True)
            sys.stdin.readline()
        print("released", flush=True)
        """,
        redis_server.url,
    )
    assert _read_line(child) == "held"
    bulkhead = stockade.Bulkhead("fleet-bulk", max_concurrent=1, max_queue=0, redis=redis_server.url)
    with pytest.raises(stockade.BulkheadFullError):
        bulkhead.execute(lambda: None)
    child.stdin.write("go\n")
    child.stdin.flush()
    assert _finish(child).strip() == "released"
    assert bulkhead.execute(lambda: "ran") == "ran"
    m = bulkhead.metrics()
    assert (m["successes"], m["rejections"], m["in_flight"]) == (1, 1, 0)
    bulkhead.dispose()


def test_a_breaker_tripped_elsewhere_refuses_here(redis_server):
    child = _child(
        """
        b = stockade.CircuitBreaker("fleet-break", failure_threshold=1, reset_timeout=60, redis=ARGS[0])
        try:
            b.execute(lambda: 1 / 0)
        except ZeroDivisionError:
            print("failed")
        """,
        redis_server.url,
    )
    assert _finish(child).strip() == "failed"
    breaker = stockade.CircuitBreaker("fleet-break", failure_threshold=1, reset_timeout=60,
                                      redis=_options(redis_server, sync_interval=0.02))
    deadline = time.monotonic() + WATCHDOG
    while True:
        try:
            breaker.execute(lambda: None)
        except stockade.CircuitOpenError as e:
            assert e.name == "fleet-break"
            break
        assert time.monotonic() < deadline, "watchdog: the trip was never seen"
        time.sleep(0.005)
    assert breaker.state == "open"
    breaker.dispose()


def test_a_breaker_counts_outcomes_of_calls_and_blocks(redis_server):
    breaker = stockade.CircuitBreaker("fleet-break-2", failure_threshold=2, reset_timeout=60,
                                      exclude=[KeyError], redis=_options(redis_server))
    changes = []
    breaker.add_listener(lambda e: changes.append((e.kind, e.from_state, e.to_state)))
    assert breaker.execute(lambda: 42) == 42
    with pytest.raises(KeyError):
        with breaker:
            raise KeyError("excluded: no failure")
    assert breaker.state == "closed"
    with pytest.raises(ValueError):
        with breaker:
            raise ValueError("one")
    with pytest.raises(ValueError):
        breaker.execute(lambda: (_ for _ in ()).throw(ValueError("two")))
    assert breaker.state == "open"
    with pytest.raises(stockade.CircuitOpenError):
        breaker.execute(lambda: None)
    # The thread that observes the fleet's transition first emits it: the
    # caller from its reply, or the subscriber from the message, which may
    # come just after the call returned.
    _wait_until(lambda: ("state_changed", "closed", "open") in changes, "the trip's event")
    assert any(kind == "rejected" for kind, _, _ in changes)
    breaker.reset()
    assert breaker.state == "closed"
    m = breaker.metrics()
    assert m["successes"] >= 1 and m["rejections"] >= 1 and m["fallback_decisions"] == 0
    breaker.dispose()


def test_a_config_mismatch_is_a_typed_error(redis_server):
    first = stockade.RateLimiter("mismatch", requests_per_period=5, period=60, redis=redis_server.url)
    assert first.try_acquire()
    first.dispose()
    other = stockade.RateLimiter("mismatch", requests_per_period=6, period=60, redis=redis_server.url)
    with pytest.raises(stockade.RedisConfigMismatchError) as e:
        other.try_acquire()
    assert e.value.name == "mismatch"
    assert "mismatch" in e.value.key
    assert e.value.stored and e.value.ours and e.value.stored != e.value.ours
    other.dispose()
    adopted = stockade.RateLimiter("mismatch", requests_per_period=6, period=60,
                                   redis=stockade.RedisOptions(redis_server.url, adopt_stored_config=True))
    assert adopted.try_acquire()
    adopted.dispose()


# --- when Redis fails ------------------------------------------------------------


def test_fallbacks_and_events_when_the_server_is_killed(redis_server):
    fast = dict(connect_timeout=0.2, command_timeout=0.2, guard_reset_timeout=0.1)
    closed = stockade.RateLimiter("killed-closed", requests_per_period=1000,
                                  redis=_options(redis_server, fallback="closed", **fast))
    local = stockade.Bulkhead("killed-local", max_concurrent=2, redis=_options(redis_server, **fast))
    opened = stockade.CircuitBreaker("killed-open", failure_threshold=1,
                                     redis=_options(redis_server, fallback="open", **fast))
    events = []
    for pattern in (closed, local, opened):
        pattern.add_listener(lambda e: events.append((e.pattern, e.kind, e.cause)))
    assert closed.try_acquire()
    assert local.execute(lambda: 1) == 1
    assert opened.execute(lambda: 2) == 2

    redis_server.kill()
    for _ in range(4):
        with pytest.raises(stockade.RedisUnavailableError) as e:
            closed.try_acquire()
        assert e.value.cause in ("timeout", "connection", "server", "protocol", "pool_exhausted", "guard_open")
        assert e.value.name == "killed-closed"
    with pytest.raises(stockade.RedisUnavailableError):
        closed.acquire()
    m = closed.metrics()
    assert (m["fallback_decisions"], m["rejections"]) == (5, 5)
    assert local.execute(lambda: 3) == 3  # the local fallback admits
    assert local.metrics()["fallback_decisions"] >= 1
    with pytest.raises(ZeroDivisionError):  # fail open: runs, even failing
        opened.execute(lambda: 1 / 0)
    assert opened.execute(lambda: 4) == 4
    assert opened.metrics()["fallback_decisions"] >= 1
    # The limiter and the bulkhead announce the outage on the calling
    # thread; the breaker hears of it from its engine, whose callback may
    # run on the engine's own thread: wait for all three (watchdog), then
    # check that each came exactly once.
    deadline = time.monotonic() + WATCHDOG
    while {p for p, k, _ in events if k == "store_unavailable"} != {"bulkhead", "circuit_breaker", "rate_limiter"}:
        assert time.monotonic() < deadline, f"watchdog: store_unavailable events so far: {events}"
        time.sleep(0.01)
    unavailable = [(p, c) for p, k, c in events if k == "store_unavailable"]
    assert sorted(p for p, _ in unavailable) == ["bulkhead", "circuit_breaker", "rate_limiter"]
    assert all(c is not None for _, c in unavailable)

    redis_server.restart()
    deadline = time.monotonic() + WATCHDOG
    while True:
        try:
            if closed.try_acquire():
                break
        except stockade.RedisUnavailableError:
            pass
        assert time.monotonic() < deadline, "watchdog: never recovered"
        time.sleep(0.01)
    assert ("rate_limiter", "store_recovered", None) in events
    for pattern in (closed, local, opened):
        pattern.dispose()


def test_a_thread_waiting_on_redis_releases_the_gil(redis_server):
    limiter = stockade.RateLimiter("gil", redis=_options(redis_server))
    assert limiter.try_acquire()  # connected, script loaded
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.005)

    redis_server.command("CLIENT", "PAUSE", "500", "ALL")
    t = start_thread(ticker)
    before = len(ticks)
    assert limiter.try_acquire()  # waits for the pause to end
    during = len(ticks) - before
    stop.set()
    join_all([t])
    assert during >= 2, "the ticker thread did not run while a call waited on Redis"
    limiter.dispose()


def _async_check(make_call, server):
    """``await make_call()`` while the server is paused: a ticker task must
    keep running meanwhile (the loop is not blocked)."""

    async def main():
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        server.command("CLIENT", "PAUSE", "500", "ALL")
        before = ticks
        result = await asyncio.wait_for(make_call(), WATCHDOG)
        during = ticks - before
        stop.set()
        await asyncio.wait_for(task, WATCHDOG)
        return result, during

    return run(main())


def test_asyncio_callers_do_not_block_the_loop(redis_server):
    opts = _options(redis_server)
    limiter = stockade.RateLimiter("aio-limit", redis=opts)
    bulkhead = stockade.Bulkhead("aio-bulk", redis=opts)
    breaker = stockade.CircuitBreaker("aio-break", failure_threshold=5, redis=opts)
    for pattern in (limiter, bulkhead, breaker):
        pattern.execute(lambda: None)  # connected, scripts loaded

    async def value():
        return "v"

    async def boom():
        raise ValueError("counted as a failure: a round trip")

    result, during = _async_check(lambda: limiter.execute(value), redis_server)
    assert result == "v" and during >= 2

    result, during = _async_check(lambda: bulkhead.execute(value), redis_server)
    assert result == "v" and during >= 2

    async def failing_call():
        with pytest.raises(ValueError):
            await breaker.execute(boom)
        return "raised"

    result, during = _async_check(failing_call, redis_server)
    assert result == "raised" and during >= 2

    async def blocks():
        async with limiter:
            pass
        async with bulkhead:
            assert bulkhead.in_flight == 1
        async with breaker:
            pass
        return "blocks"

    result, during = _async_check(blocks, redis_server)
    assert result == "blocks" and during >= 2
    assert bulkhead.in_flight == 0
    assert breaker.metrics()["failures"] == 1
    for pattern in (limiter, bulkhead, breaker):
        pattern.dispose()


def test_a_cancelled_coroutine_gives_its_bulkhead_permit_back(redis_server):
    bulkhead = stockade.Bulkhead("aio-cancel", max_concurrent=1, queue_timeout=30, redis=_options(redis_server))

    async def main():
        started = asyncio.Event()
        release = asyncio.Event()

        async def hold():
            started.set()
            await release.wait()

        holder = asyncio.ensure_future(bulkhead.execute(hold))
        await asyncio.wait_for(started.wait(), WATCHDOG)
        waiter = asyncio.ensure_future(bulkhead.execute(hold))
        await asyncio.sleep(0.05)
        waiter.cancel()
        release.set()
        await asyncio.wait_for(holder, WATCHDOG)
        with pytest.raises(asyncio.CancelledError):
            await waiter

    run(main())
    # The cancelled waiter's permit (granted in the executor after the
    # cancellation, or never) comes back: one permit is free again.
    _wait_until(lambda: bulkhead.in_flight == 0, "the permit never came back")
    assert bulkhead.execute(lambda: "free") == "free"
    bulkhead.dispose()


def test_a_cancelled_coroutine_hands_its_limiter_booking_back(redis_server):
    """1 per 10 s: a coroutine books the next slot, is cancelled while it
    sleeps, and the slot is free again (the next booking waits one period,
    not two)."""
    limiter = stockade.RateLimiter("aio-booking", requests_per_period=1, period=10, burst=1,
                                   queue_timeout=60, redis=_options(redis_server))
    assert limiter.try_acquire()

    async def main():
        async def never_runs():
            raise AssertionError("ran after cancellation")

        task = asyncio.ensure_future(limiter.execute(never_runs))
        deadline = time.monotonic() + WATCHDOG
        while limiter.queue_depth == 0:  # booked in Redis, now sleeping
            assert time.monotonic() < deadline, "watchdog: never booked"
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    _wait_until(lambda: limiter.metrics()["calls"] == 0, "the booking was never handed back")
    booking = limiter._fleet_book()
    assert 0 < booking.wait <= 10.0
    booking.cancel()
    limiter.dispose()


def test_dispose_wakes_a_thread_waiting_for_its_booking(redis_server):
    limiter = stockade.RateLimiter("dispose-wakes", requests_per_period=1, period=60, burst=1,
                                   queue_timeout=120, redis=_options(redis_server))
    assert limiter.try_acquire()
    raised = []

    def waiter():
        try:
            limiter.acquire()  # the next slot is a minute away
        except BaseException as e:
            raised.append(e)

    t = start_thread(waiter)
    _wait_until(lambda: limiter.queue_depth == 1, "the waiter never booked")
    limiter.dispose()
    join_all([t], timeout=30)
    assert len(raised) == 1 and isinstance(raised[0], stockade.DisposedError)


class _CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    def __init__(self):
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, *args, **kwargs):
        self.submitted += 1
        return super().submit(*args, **kwargs)


def _os_threads():
    """Every thread of this process, Python's or not (a thread started by
    the native module is not in ``threading.enumerate()``)."""
    import os

    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/task")
def test_a_redis_breaker_starts_no_thread_per_call(redis_server):
    """Every kind of call of a Redis-backed breaker runs in the caller's
    thread (or coroutine): while one is admitted, the process has exactly
    the threads it had before, and after many calls too."""
    breaker = stockade.CircuitBreaker("no-threads", failure_threshold=1000, redis=_options(redis_server))
    assert breaker.execute(lambda: 1) == 1  # Redis contacted, its threads started
    os_before, py_before = _os_threads(), threading.active_count()

    # The loop's default executor: its threads are not per call (one at
    # most here); `submitted` counts what coroutines hand to it.
    executor = _CountingExecutor()

    def same_threads():
        pool = len(executor._threads)
        assert (_os_threads(), threading.active_count()) == (os_before + pool, py_before + pool)

    def plain():
        same_threads()
        return 2

    protected = breaker(plain)
    for _ in range(50):
        with breaker:
            same_threads()
        with pytest.raises(KeyError):
            with breaker:
                same_threads()
                raise KeyError("a failure")
        assert breaker.execute(plain) == 2
        assert protected() == 2

    async def main():
        asyncio.get_running_loop().set_default_executor(executor)

        async def value():
            same_threads()
            return 3

        aprotected = breaker(value)
        for _ in range(50):
            assert await breaker.execute(value) == 3
            assert await aprotected() == 3
            async with breaker:
                same_threads()
            with pytest.raises(KeyError):
                async with breaker:
                    same_threads()
                    raise KeyError("a failure")

    run(main())
    # Closed: admissions and successes stay on the loop's thread; only a
    # failure's report (a round trip) goes to the executor.
    assert executor.submitted == 50
    assert threading.active_count() == py_before
    # The executor's thread, joined, may take a moment to leave the OS.
    _wait_until(lambda: _os_threads() == os_before, "a thread is left over")
    m = breaker.metrics()
    assert (m["successes"], m["failures"]) == (1 + 50 * 6, 50 * 2)
    breaker.dispose()


def test_a_cancelled_call_of_a_redis_breaker_holds_nothing(redis_server):
    """A coroutine cancelled while admitted reports no outcome and gives its
    admission back: on a closed breaker the call counts as ignored; a
    half-open probe's single slot is free again at once (a leaked one would
    stay taken for half_open_timeout, longer than the watchdog)."""
    breaker = stockade.CircuitBreaker("cancelled", failure_threshold=1, reset_timeout=0.2,
                                      half_open_timeout=600, half_open_max_probes=1,
                                      redis=_options(redis_server))
    assert breaker.execute(lambda: 1) == 1

    async def cancel_while_admitted(enter):
        admitted = asyncio.Event()

        async def forever():
            admitted.set()
            await asyncio.Event().wait()

        async def in_block():
            async with breaker:
                await forever()

        task = asyncio.ensure_future(breaker.execute(forever) if enter == "execute" else in_block())
        waiter = asyncio.ensure_future(admitted.wait())
        done, _ = await asyncio.wait({task, waiter}, timeout=WATCHDOG, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        assert done, "watchdog: neither admitted nor refused"
        if task in done:
            task.result()  # refused: raises CircuitOpenError
            raise AssertionError("the call ended without being cancelled")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def closed():
        for enter in ("execute", "with"):
            await cancel_while_admitted(enter)

    run(closed())
    m = breaker.metrics()
    # Counted as ignored: in `calls`, neither a success nor a failure.
    assert (m["calls"], m["successes"], m["failures"]) == (3, 1, 0)

    with pytest.raises(ValueError):
        breaker.execute(lambda: (_ for _ in ()).throw(ValueError("open")))
    assert breaker.state == "open"
    for enter in ("execute", "with"):
        # Half-open after reset_timeout: the next call is the one probe.
        run(asyncio.wait_for(_until_admitted(breaker, enter, cancel_while_admitted), WATCHDOG))
        # The slot is free again: another probe is admitted, and its
        # failure re-opens the breaker.
        _wait_until(lambda: _probe_admitted(breaker), "the cancelled probe's slot is still taken")
    breaker.dispose()


async def _until_admitted(breaker, enter, cancel_while_admitted):
    while True:
        try:
            await cancel_while_admitted(enter)
            return
        except stockade.CircuitOpenError:
            await asyncio.sleep(0.01)


def _probe_admitted(breaker):
    try:
        breaker.execute(lambda: (_ for _ in ()).throw(ValueError("still down")))
    except stockade.CircuitOpenError:
        return False
    except ValueError:
        return True
    raise AssertionError("a probe that raised should have failed")
