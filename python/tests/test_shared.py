"""shared=: one breaker, limiter and bulkhead for every process on the host.

Real processes (fork, multiprocessing with the fork start method, kill -9),
each wait bounded by a watchdog."""

import asyncio
import multiprocessing
import os
import signal
import sys
import time

import pytest

import stockade

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="shared memory is Linux-only")

WATCHDOG = 60.0
FORK = multiprocessing.get_context("fork")


@pytest.fixture
def shm(tmp_path):
    return str(tmp_path)


def _join(procs):
    deadline = time.monotonic() + WATCHDOG
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            pytest.fail("watchdog: a worker process hangs")
        assert p.exitcode == 0, f"worker exited with {p.exitcode}"


def _limiter_worker(shm, name, start, end, out):
    limiter = stockade.RateLimiter(name, requests_per_period=20, period=0.1, mode="strict", shared=shm)
    grants = 0
    while time.monotonic() < start:
        pass
    while True:
        limiter.acquire()  # books the next slot host-wide, sleeps until it
        if time.monotonic() >= end:
            break
        grants += 1
    out.put(grants)


def test_eight_forked_workers_share_one_strict_limit(shm):
    name = "payments"
    stockade.RateLimiter(name, requests_per_period=20, period=0.1, mode="strict", shared=shm).dispose()
    start = time.monotonic() + 0.5
    end = start + 1.5
    out = FORK.Queue()
    procs = [FORK.Process(target=_limiter_worker, args=(shm, name, start, end, out)) for _ in range(8)]
    for p in procs:
        p.start()
    _join(procs)
    total = sum(out.get(timeout=WATCHDOG) for _ in procs)
    ideal = 1.5 / 0.005  # strict, burst 1: one permit per 5 ms, host-wide
    # One limit for all: 8 local limiters would grant up to 8x this. A
    # grant at `start` and one whose slot falls just before `end` make
    # the 2. Bookings chain slot after slot, so throughput does not depend
    # on a worker being on a CPU when a slot comes due.
    assert total <= ideal + 2, total
    assert total >= 0.95 * ideal, total


def _breaker_trip(shm):
    # The object the parent opened before the fork (gunicorn --preload).
    b = stockade.CircuitBreaker.get_breaker("upstream")
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            b.execute(lambda: 1 / 0)
    os._exit(0 if b.state == "open" else 1)


def test_a_trip_in_one_worker_rejects_in_the_others(shm):
    b = stockade.CircuitBreaker("upstream", failure_threshold=2, reset_timeout=30, shared=shm)
    assert b.state == "closed"
    p = FORK.Process(target=_breaker_trip, args=(shm,))
    p.start()
    _join([p])
    assert b.state == "open"
    with pytest.raises(stockade.CircuitOpenError) as e:
        b.execute(lambda: "never runs")
    assert 0 < e.value.retry_after <= 30
    assert b.shared_path is not None and b.shared_path.startswith(shm)


def _hold(shm, ready):
    bh = stockade.Bulkhead.get_bulkhead("db")  # the parent's, inherited
    held = [bh.__enter__(), bh.__enter__()]
    ready.put(len(held))
    time.sleep(WATCHDOG)


def test_kill_9_of_a_holder_gives_its_permits_back(shm):
    bh = stockade.Bulkhead("db", max_concurrent=3, queue_timeout=0, shared=shm)
    ready = FORK.Queue()
    p = FORK.Process(target=_hold, args=(shm, ready))
    p.start()
    try:
        assert ready.get(timeout=WATCHDOG) == 2
        assert bh.in_flight == 2
        os.kill(p.pid, signal.SIGKILL)
        p.join(WATCHDOG)
        assert p.exitcode == -signal.SIGKILL
        # Found full -> the dead holder's permits are reaped -> granted.
        with bh, bh, bh:
            assert bh.in_flight == 3
            with pytest.raises(stockade.BulkheadFullError):
                bh.execute(lambda: None)
        assert bh.in_flight == 0
    finally:
        if p.is_alive():
            p.kill()


def test_a_child_forked_with_a_permit_held_takes_its_own(shm):
    bh = stockade.Bulkhead("forked", max_concurrent=2, queue_timeout=0, shared=shm)
    with bh:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                with bh:
                    code = 0 if bh.in_flight == 2 else 2
                    try:
                        bh.execute(lambda: None)
                        code = 3  # a third permit: over the limit
                    except stockade.BulkheadFullError:
                        pass
            finally:
                os._exit(code)
        deadline = time.monotonic() + WATCHDOG
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                pytest.fail("watchdog: forked child hangs")
            time.sleep(0.002)
        assert os.waitstatus_to_exitcode(status) == 0
        assert bh.in_flight == 1  # the parent's permit, still held
    assert bh.in_flight == 0


def _release_later(shm, delay):
    bh = stockade.Bulkhead.get_bulkhead("pool")  # the parent's, inherited
    with bh:
        time.sleep(delay)


def test_waiters_see_a_permit_freed_by_another_process(shm):
    bh = stockade.Bulkhead("pool", max_concurrent=1, queue_timeout=5, shared=shm)
    p = FORK.Process(target=_release_later, args=(shm, 0.3))
    p.start()
    try:
        deadline = time.monotonic() + WATCHDOG
        while bh.in_flight == 0:
            assert time.monotonic() < deadline, "watchdog: the child never took its permit"
            time.sleep(0.001)
        # A thread waits (polling), then a coroutine.
        assert bh.execute(lambda: "ran") == "ran"

        async def coro():
            return "async ran"

        p2 = FORK.Process(target=_release_later, args=(shm, 0.2))
        p2.start()
        while bh.in_flight == 0:
            assert time.monotonic() < deadline, "watchdog: the child never took its permit"
            time.sleep(0.001)
        assert asyncio.run(asyncio.wait_for(bh.execute(coro), WATCHDOG)) == "async ran"
        _join([p, p2])
    finally:
        p.kill()


def test_queue_timeout_and_full_queue_across_processes(shm):
    bh = stockade.Bulkhead("tight", max_concurrent=1, max_queue=1, queue_timeout=0.2, shared=shm)
    with bh:
        started = time.monotonic()
        with pytest.raises(stockade.QueueTimeoutError):
            bh.execute(lambda: None)
        assert time.monotonic() - started >= 0.2
        assert bh.metrics()["timeouts"] == 1


def test_a_config_that_differs_from_the_stored_one_is_a_config_error(shm):
    stockade.RateLimiter("rl", requests_per_period=10, shared=shm).dispose()
    with pytest.raises(stockade.ConfigError) as e:
        stockade.RateLimiter("rl", requests_per_period=11, shared=shm)
    text = str(e.value)
    assert "requests_per_period: 10" in text and "requests_per_period: 11" in text


def test_shared_values(shm):
    with pytest.raises(TypeError, match="shared"):
        stockade.RateLimiter("t1", shared=3)
    with pytest.raises(OSError):
        stockade.RateLimiter("t2", shared=os.path.join(shm, "no", "such", "dir"))
    b = stockade.CircuitBreaker("t3", shared=False)
    assert b.shared_path is None
    import pathlib

    limiter = stockade.RateLimiter("t4", shared=pathlib.Path(shm))
    assert limiter.shared_path.startswith(shm)
    assert oct(os.stat(limiter.shared_path).st_mode & 0o777) == "0o600"
    with pytest.raises(stockade.ConfigError) as e:
        stockade.RateLimiter("t5", requests_per_period=0, shared=shm)
    assert e.value.option == "requests_per_period"
