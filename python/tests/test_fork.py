"""Process-local objects after a real fork (`os.fork`, and `multiprocessing`
with the fork start method): the child gets working objects.

Every test that forks has a watchdog: the parent waits for the child with
a deadline and kills it (failing the test) if it hangs. A forked child
leaves with `os._exit`, never returning into pytest, except in the
`sys.exit` test, which forks inside a separate interpreter.
"""

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback

import pytest

import stockade

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

WATCHDOG = 20.0


def wait_child(pid, timeout=WATCHDOG):
    """Waits for child `pid`; kills it and fails if it is not done in time.
    Returns its exit code."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            assert os.WIFEXITED(status), f"the child did not exit normally (status {status:#x})"
            return os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child hung (killed after {timeout} s)")
        time.sleep(0.01)


def in_child(body):
    """Runs `body()` in a forked child; fails unless it returned in time."""
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            body()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    assert wait_child(pid) == 0, "the child's checks failed (its traceback is in the captured stderr)"


def test_a_timeout_used_before_the_fork_runs_calls_in_the_child():
    t = stockade.Timeout("fork-timeout", timeout=5.0, max_workers=1)
    assert t.execute(lambda: 1) == 1  # a worker exists now, parked idle

    def child():
        # Before the fix: TimeoutError after 5 s, then BulkheadFullError.
        assert t.execute(lambda: 42) == 42
        assert t.execute(lambda: 43) == 43

    in_child(child)
    assert t.execute(lambda: 2) == 2  # the parent's pool is untouched
    t.dispose()


def test_a_timeout_whose_worker_is_busy_in_the_parent_runs_calls_in_the_child():
    t = stockade.Timeout("fork-timeout-busy", timeout=10.0, max_workers=1)
    release = threading.Event()
    started = threading.Event()

    def blocked():
        started.set()
        release.wait(WATCHDOG)
        return 1

    results = []
    caller = threading.Thread(target=lambda: results.append(t.execute(blocked)), daemon=True)
    caller.start()
    assert started.wait(WATCHDOG)
    with pytest.raises(stockade.BulkheadFullError):
        t.execute(lambda: 0)  # the parent's only worker is busy

    def child():
        assert t.execute(lambda: 42) == 42

    in_child(child)
    release.set()
    caller.join(WATCHDOG)
    assert results == [1]
    t.dispose()


def _pool_child(queue):
    t = stockade.Timeout.get_timeout("fork-mp-timeout")
    queue.put([t.execute(lambda: 40 + i) for i in range(3)])


def test_multiprocessing_fork_children_use_a_timeout_of_the_parent():
    t = stockade.Timeout("fork-mp-timeout", timeout=5.0, max_workers=1)
    assert t.execute(lambda: 1) == 1
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_pool_child, args=(queue,)) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        got = [queue.get(timeout=WATCHDOG) for _ in procs]
    finally:
        for p in procs:
            p.join(WATCHDOG)
            if p.is_alive():
                p.kill()
                p.join()
    assert got == [[40, 41, 42]] * 2
    assert [p.exitcode for p in procs] == [0, 0]
    t.dispose()


class MonitorEvents:
    def __init__(self):
        self.cond = threading.Condition()
        self.count = 0

    def __call__(self, event):
        if event.kind == "monitor":
            with self.cond:
                self.count += 1
                self.cond.notify_all()

    def wait_for_more(self, than, timeout=WATCHDOG):
        with self.cond:
            return self.cond.wait_for(lambda: self.count > than, timeout)


def test_a_listened_breaker_emits_monitor_events_in_the_child():
    b = stockade.CircuitBreaker("fork-monitor", monitor_interval=0.02)
    events = MonitorEvents()
    b.add_listener(events)
    assert events.wait_for_more(0)

    def child():
        assert b._monitor_running, "the child's monitor did not start again"
        seen = events.count
        assert events.wait_for_more(seen), "no monitor event in the child"
        b.remove_listener(events)
        assert b._wait_monitor_stopped(WATCHDOG)

    in_child(child)
    assert b._monitor_running  # the parent's thread goes on
    b.dispose()
    assert b._wait_monitor_stopped(WATCHDOG)


def test_a_breaker_listened_to_first_in_the_child_starts_its_monitor_there():
    b = stockade.CircuitBreaker("fork-monitor-late", monitor_interval=0.02)
    first = MonitorEvents()
    b.add_listener(first)
    assert first.wait_for_more(0)
    b.remove_listener(first)
    assert b._wait_monitor_stopped(WATCHDOG)

    def child():
        events = MonitorEvents()
        b.add_listener(events)
        assert events.wait_for_more(0), "no monitor event in the child"

    in_child(child)
    b.dispose()


CHILD_EXITS_THROUGH_SYS_EXIT = textwrap.dedent(
    """
    import os, signal, sys, time
    import stockade

    b = stockade.CircuitBreaker("b", monitor_interval=0.05)
    b.add_listener(lambda e: None)
    deadline = time.monotonic() + 10
    while not b._monitor_running and time.monotonic() < deadline:
        time.sleep(0.01)
    t = stockade.Timeout("t", timeout=5.0, max_workers=1)
    t.execute(lambda: 1)
    pid = os.fork()
    if pid == 0:
        assert t.execute(lambda: 42) == 42
        sys.exit(7)  # atexit hooks run: stockade's stops the monitor threads
    deadline = time.monotonic() + float(sys.argv[1])
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            print("child exit", os.WEXITSTATUS(status) if os.WIFEXITED(status) else status)
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            print("child hung")
            break
        time.sleep(0.01)
    """
)


def test_a_forked_child_exits_through_sys_exit_with_a_monitor_running():
    out = subprocess.run(
        [sys.executable, "-c", CHILD_EXITS_THROUGH_SYS_EXIT, "10"],
        capture_output=True,
        text=True,
        timeout=WATCHDOG + 10,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "child exit 7", out.stdout + out.stderr


def test_registries_listeners_and_patterns_work_in_the_child():
    limiter = stockade.RateLimiter("fork-limiter", requests_per_period=5, period=60.0)
    bulkhead = stockade.Bulkhead("fork-bulkhead", max_concurrent=2, max_queue=0)
    seen = []
    bulkhead.add_listener(lambda e: seen.append(e.kind))
    assert limiter.try_acquire()
    with bulkhead:
        pass

    def child():
        assert stockade.RateLimiter.get_limiter("fork-limiter") is limiter
        assert limiter.try_acquire(4)
        assert not limiter.try_acquire()
        before = len(seen)
        with bulkhead:
            with bulkhead:
                assert bulkhead.in_flight == 2
                with pytest.raises(stockade.BulkheadFullError):
                    bulkhead.execute(lambda: None)
        assert bulkhead.in_flight == 0
        assert len(seen) > before, "the inherited listener was not called in the child"
        fresh = stockade.CircuitBreaker("fork-new-in-child")
        assert stockade.CircuitBreaker.get_breaker("fork-new-in-child") is fresh

    in_child(child)
    limiter.dispose()
    bulkhead.dispose()


FORKS_WHILE_A_MONITOR_TICKS = textwrap.dedent(
    """
    import os, sys
    import stockade

    # A monitor ticking every millisecond and the GIL handed over every
    # microsecond: the monitor thread gets the GIL between the at-fork
    # hook that takes the monitors' lock and the fork itself.
    sys.setswitchinterval(1e-6)
    b = stockade.CircuitBreaker("b", monitor_interval=0.001)
    b.add_listener(lambda e: None)
    for _ in range(int(sys.argv[1])):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    print("forked")
    """
)


def test_forking_while_a_monitor_ticks_never_deadlocks():
    # Before the fix a monitor thread blocked on the monitors' lock while
    # holding the GIL, which the forking thread (holding that lock) needed:
    # this hung within a few hundred forks. The watchdog turns a hang into
    # a failure.
    out = subprocess.run(
        [sys.executable, "-c", FORKS_WHILE_A_MONITOR_TICKS, "300"],
        capture_output=True,
        text=True,
        timeout=WATCHDOG + 30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "forked", out.stdout + out.stderr
