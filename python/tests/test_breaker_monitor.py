"""The circuit breaker's monitor events: `Event(kind="monitor", metrics=...)`
every `monitor_interval` while anyone listens, from a monitor thread."""

import subprocess
import sys
import textwrap
import threading
import time

import pytest

import stockade

INTERVAL = 0.05
WAIT = 10.0  # the bound of every wait; a pass takes a few intervals


class Recorder:
    """A listener that keeps the monitor events and lets a test wait for them."""

    def __init__(self):
        self.events = []
        self.threads = set()
        self.cond = threading.Condition()

    def __call__(self, event):
        if event.kind != "monitor":
            return
        with self.cond:
            self.events.append(event)
            self.threads.add(threading.get_ident())
            self.cond.notify_all()

    def count(self):
        with self.cond:
            return len(self.events)

    def wait_for(self, predicate, timeout=WAIT):
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self.events), timeout), "no such monitor event in time"
            return list(self.events)

    def wait_count(self, n):
        return self.wait_for(lambda events: len(events) >= n)


def boom():
    raise ConnectionError("down")


def intervals_pass(n):
    """Waits until `n` monitor intervals have certainly passed: a fresh
    breaker of the same interval emits its n-th event (no sleeping)."""
    clock = stockade.CircuitBreaker(f"monitor-clock-{time.monotonic_ns()}", monitor_interval=INTERVAL)
    tick = Recorder()
    clock.add_listener(tick)
    try:
        tick.wait_count(n)
    finally:
        clock.dispose()
        assert clock._wait_monitor_stopped(WAIT)


def test_listener_receives_monitor_events_with_current_metrics():
    b = stockade.CircuitBreaker("monitor-metrics", monitor_interval=INTERVAL)
    rec = Recorder()
    try:
        assert not b._monitor_running
        b.add_listener(rec)
        assert b._monitor_running
        first = rec.wait_count(1)[0]
        assert (first.pattern, first.name, first.kind) == ("circuit_breaker", "monitor-metrics", "monitor")
        assert first.metrics.keys() == b.metrics().keys()
        calls_before = first.metrics["calls"]

        for _ in range(3):
            assert b.execute(lambda: 7) == 7
        with pytest.raises(ConnectionError):
            b.execute(boom)

        events = rec.wait_for(lambda evs: evs[-1].metrics["calls"] == calls_before + 4)
        assert len(events) >= 2
        last = events[-1].metrics
        assert (last["successes"], last["failures"], last["state"]) == (3, 1, "closed")
        assert last == b.metrics()
        # From the monitor thread, not the caller's.
        assert threading.get_ident() not in rec.threads
    finally:
        b.dispose()
    assert b._wait_monitor_stopped(WAIT)


def test_removing_the_last_listener_stops_the_thread():
    b = stockade.CircuitBreaker("monitor-remove", monitor_interval=INTERVAL)
    kept, removed = Recorder(), Recorder()
    try:
        b.add_listener(kept)
        b.add_listener(removed)
        removed.wait_count(2)
        assert b.remove_listener(removed)
        # One tick may have been under way; every later one leaves `removed` out.
        n = kept.count()
        kept.wait_count(n + 2)
        frozen = removed.count()
        kept.wait_count(n + 4)
        assert removed.count() == frozen
        assert b._monitor_running

        assert b.remove_listener(kept)
        assert b._wait_monitor_stopped(WAIT)
        assert not b._monitor_running
        n = kept.count()
        intervals_pass(3)
        assert kept.count() == n

        # A new listener starts a new thread.
        again = Recorder()
        b.add_listener(again)
        assert b._monitor_running
        again.wait_count(2)
    finally:
        b.dispose()
    assert b._wait_monitor_stopped(WAIT)


def test_dispose_stops_the_thread():
    b = stockade.CircuitBreaker("monitor-dispose", monitor_interval=INTERVAL)
    rec = Recorder()
    b.add_listener(rec)
    rec.wait_count(1)
    b.dispose()
    assert b._wait_monitor_stopped(WAIT)
    n = rec.count()
    # A listener added after dispose starts nothing.
    b.add_listener(rec)
    assert not b._monitor_running
    intervals_pass(3)
    assert rec.count() == n


def test_a_listener_that_raises_goes_to_unraisablehook(monkeypatch):
    seen = []
    reported = threading.Event()

    def hook(u):
        seen.append(u)
        reported.set()

    monkeypatch.setattr(sys, "unraisablehook", hook)

    def bad(event):
        if event.kind == "monitor":
            raise RuntimeError("listener bug")

    b = stockade.CircuitBreaker("monitor-raises", monitor_interval=INTERVAL)
    good = Recorder()
    try:
        b.add_listener(bad)
        b.add_listener(good)
        assert reported.wait(WAIT)
        good.wait_count(2)  # the listener after it is still called, and ticks go on
    finally:
        b.dispose()
    assert b._wait_monitor_stopped(WAIT)
    assert isinstance(seen[0].exc_value, RuntimeError)
    assert seen[0].object is bad


def test_the_thread_holds_no_strong_reference():
    b = stockade.CircuitBreaker("monitor-weak", monitor_interval=60)
    before = sys.getrefcount(b)
    try:
        b.add_listener(lambda event: None)
        assert b._monitor_running
        assert sys.getrefcount(b) == before
    finally:
        b.dispose()
    assert b._wait_monitor_stopped(WAIT)


EXIT_SCRIPT = textwrap.dedent(
    """
    import threading
    import stockade

    seen = threading.Event()

    def listener(event):
        if event.kind == "monitor":
            sum(range(1000))
            seen.set()

    busy = stockade.CircuitBreaker("exit-busy", monitor_interval=0.001)
    busy.add_listener(listener)
    assert seen.wait(10)
    asleep = stockade.CircuitBreaker("exit-asleep")  # 5 s between events
    asleep.add_listener(listener)
    assert busy._monitor_running and asleep._monitor_running
    print("ok", flush=True)
    """
)


@pytest.mark.parametrize("run", range(3))
def test_interpreter_exit_with_live_listeners_is_prompt(run):
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=30
    )
    elapsed = time.monotonic() - start
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "ok", "")
    # Not held up by the sleeping thread's 5 s interval.
    assert elapsed < 4.5, elapsed
