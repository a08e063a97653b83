import asyncio
import signal
import sys
import threading

import pytest


def run(coro):
    """Runs a coroutine on a fresh event loop (no plugin needed)."""
    return asyncio.run(coro)


def start_thread(target, *args):
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def join_all(threads, timeout=10.0):
    """Joins threads; fails (rather than hanging) if one is still running."""
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "thread did not finish in time"


@pytest.fixture
def unraisable(monkeypatch):
    """Collects what reaches sys.unraisablehook (e.g. a listener that raised)."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u))
    return seen


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt during the test, whatever the test
    process inherited: started as a background job of a non-interactive
    shell it inherits SIGINT ignored, Python then installs no handler and
    `_thread.interrupt_main()` does nothing. Restored afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def redis_server():
    """A fresh redis-server on a free loopback port, killed afterwards."""
    from redis_server import RedisServer

    server = RedisServer()
    try:
        yield server
    finally:
        server.kill()
