"""Stockade's Redis-backed limiter and breaker from Python against the
libraries people would otherwise pick, on one redis-server, in one run. Not a
test: prints Markdown tables.

(Named ``fleet.py``: a ``redis.py`` here would shadow the ``redis`` package.)
Run with ``python/bench/run.sh --redis`` (which installs the peers into the
bench virtualenv). The bench starts its own ``redis-server`` (or
``$STOCKADE_REDIS_SERVER``) on a free loopback port, without persistence.

Limiter, one decision per call, on the grant path (a limit of 10**6 per
minute, never reached; a refused call fails the run):

- ``stockade``: ``stockade.RateLimiter(name, requests_per_period=10**6,
  period=60, redis=url).try_acquire()`` (one script call, Redis's clock);
- ``limits`` fixed, moving and sliding window: ``limits.strategies.
  FixedWindowRateLimiter`` / ``MovingWindowRateLimiter`` /
  ``SlidingWindowCounterRateLimiter`` on ``limits.storage.RedisStorage(url)``,
  ``hit(RateLimitItemPerMinute(10**6), "bench")``;
- ``pyrate-limiter RedisBucket``: ``Limiter(RedisBucket.init([Rate(10**6,
  Duration.MINUTE)], redis.Redis(...), key))``, ``try_acquire("bench",
  blocking=False)``.

Breaker, a closed call of a function that returns at once:

- ``stockade local`` / ``stockade redis``: ``CircuitBreaker(name)`` and
  ``CircuitBreaker(name, redis=url)``, ``execute(f)`` (the Redis-backed one
  makes no round trip while closed);
- ``pybreaker CircuitRedisStorage``: ``pybreaker.CircuitBreaker(
  state_storage=CircuitRedisStorage(STATE_CLOSED, redis.Redis(...)))``,
  ``call(f)``.

Runs of the implementations are interleaved (``--runs`` rounds, order
rotating); each number is the median over the runs of µs per call on one
thread (``--seconds`` per run).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

import stockade

LIMIT = 10**6
TARGET_MOVING = 3.0  # stockade at least this many times faster than limits' moving window
TARGET_BREAKER = 1.2  # a closed Redis-backed breaker call at most this many times local


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> Tuple[subprocess.Popen, int]:
    port = free_port()
    binary = os.environ.get("STOCKADE_REDIS_SERVER", "redis-server")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("redis-server did not start")
        time.sleep(0.01)


def limiters(url: str, port: int) -> Dict[str, Callable[[], object]]:
    import limits
    import limits.storage
    import limits.strategies
    import redis
    from pyrate_limiter import Duration, Limiter, Rate, RedisBucket

    ours = stockade.RateLimiter("bench-redis", requests_per_period=LIMIT, period=60, redis=url)

    def stockade_call():
        if not ours.try_acquire():
            raise SystemExit("stockade refused: the limit must never be reached")

    storage = limits.storage.RedisStorage(url)
    item = limits.RateLimitItemPerMinute(LIMIT)
    calls = {"stockade": stockade_call}
    for label, strategy in (
        ("limits fixed window", limits.strategies.FixedWindowRateLimiter),
        ("limits moving window", limits.strategies.MovingWindowRateLimiter),
        ("limits sliding window", limits.strategies.SlidingWindowCounterRateLimiter),
    ):
        limiter = strategy(storage)
        key = label.replace(" ", "-")

        def call(limiter=limiter, key=key):
            if not limiter.hit(item, key):
                raise SystemExit(label + " refused")

        calls[label] = call
    client = redis.Redis(host="127.0.0.1", port=port)
    bucket = RedisBucket.init([Rate(LIMIT, Duration.MINUTE)], client, "bench-pyrate")
    pyrate = Limiter(bucket)

    def pyrate_call():
        if not pyrate.try_acquire("bench", blocking=False):
            raise SystemExit("pyrate-limiter refused")

    calls["pyrate-limiter RedisBucket"] = pyrate_call
    return calls


def breakers(url: str, port: int) -> Dict[str, Callable[[], object]]:
    import pybreaker
    import redis

    local = stockade.CircuitBreaker("bench-local")
    fleet = stockade.CircuitBreaker("bench-fleet", redis=url)
    client = redis.Redis(host="127.0.0.1", port=port)
    theirs = pybreaker.CircuitBreaker(
        state_storage=pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client))

    def work():
        return 1

    return {
        "stockade local": lambda: local.execute(work),
        "stockade redis": lambda: fleet.execute(work),
        "pybreaker CircuitRedisStorage": lambda: theirs.call(work),
    }


def measure(calls: Dict[str, Callable[[], object]], runs: int, seconds: float) -> Dict[str, float]:
    """Median µs per call over interleaved runs."""
    names = list(calls)
    samples: Dict[str, List[float]] = {n: [] for n in names}
    for name in names:  # warm up: connections, scripts loaded
        for _ in range(200):
            calls[name]()
    for r in range(runs):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            f = calls[name]
            n = 0
            start = time.perf_counter()
            deadline = start + seconds
            while True:
                for _ in range(20):
                    f()
                n += 20
                now = time.perf_counter()
                if now >= deadline:
                    break
            samples[name].append((now - start) / n * 1e6)
    return {n: statistics.median(v) for n, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.seconds = 2, 0.2
    proc, port = start_server()
    url = "redis://127.0.0.1:%d/0" % port
    try:
        lim = measure(limiters(url, port), args.runs, args.seconds)
        brk = measure(breakers(url, port), args.runs, args.seconds)
    finally:
        proc.kill()
        proc.wait()
    versions = []
    for mod in ("limits", "pyrate_limiter", "pybreaker", "redis"):
        try:
            from importlib.metadata import version
            versions.append("%s %s" % (mod.replace("_", "-"), version(mod.replace("_", "-"))))
        except Exception:  # noqa: BLE001
            pass
    print("- %s, Python %s, %s; medians of %d interleaved runs of %.1f s, one thread"
          % (datetime.date.today(), platform.python_version(), ", ".join(versions),
             args.runs, args.seconds))
    print()
    print("| limiter (Redis) | µs/call | stockade's speed-up |")
    print("| --- | ---: | ---: |")
    for name, us in lim.items():
        print("| %s | %.1f | %.2f× |" % (name, us, us / lim["stockade"]))
    print()
    print("| breaker, closed call | µs/call | ÷ stockade local |")
    print("| --- | ---: | ---: |")
    for name, us in brk.items():
        print("| %s | %.2f | %.2f× |" % (name, us, us / brk["stockade local"]))
    moving = lim["limits moving window"] / lim["stockade"]
    ratio = brk["stockade redis"] / brk["stockade local"]
    print()
    print("Targets: stockade ≥ %.0f× faster than limits' moving window: %.2f× (%s); "
          "closed Redis-backed breaker ≤ %.1f× local: %.2f× (%s)."
          % (TARGET_MOVING, moving, "met" if moving >= TARGET_MOVING else "MISSED",
             TARGET_BREAKER, ratio, "met" if ratio <= TARGET_BREAKER else "MISSED"))


if __name__ == "__main__":
    sys.exit(main())
