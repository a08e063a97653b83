"""A rate limiter shared by every process of a host: Stockade's
``RateLimiter(..., shared=...)`` against pyrate-limiter's
``MultiprocessBucket``, N processes (default 8, forked) each calling
``try_acquire`` as fast as it can for a fixed time. Not a test: prints a
Markdown table.

Run with ``python/bench/run.sh --shared`` (which installs pyrate-limiter into
the bench virtualenv). Every limiter has a limit the run never reaches, so
every call is granted (a refused call fails the run): this is the grant
path, where the limiter's own cost is all there is.

- ``stockade shared``: ``stockade.RateLimiter(name, requests_per_period=10**9,
  period=1, shared=<directory>)``, opened by name in each process (a
  memory-mapped region, one compare-and-swap per grant);
- ``stockade local``: the same without ``shared=``, one limiter per process
  (the cost of not sharing; not a shared limit);
- ``pyrate-limiter MultiprocessBucket``: ``MultiprocessBucket.init([Rate(10**9,
  Duration.SECOND)])`` made before the fork, as its documentation shows, and a
  ``Limiter`` on it in each process, ``try_acquire("bench")`` (a
  ``multiprocessing.Manager`` list and a ``multiprocessing.RLock``). With the
  default ``blocking=True``, which its documentation recommends for this
  bucket: the limit is never reached, so the call waits only for the lock.
  With ``blocking=False`` it returns ``False`` whenever another process, or
  its own background leak thread, holds the lock (in pyrate-limiter 4.6.0,
  most calls even in one process), which is no rate decision.

Each run forks the processes, waits until all have built their limiter and
warmed up, starts them together and lets each call for ``--seconds``; runs
of the implementations are interleaved (``--runs`` rounds, order rotating),
and each number is the median over the runs. *calls/s*: all processes
together; *µs/call per process*: a process's wall time ÷ its calls (the
median of the processes; with more processes than cores it includes
waiting for a core).
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import queue
import statistics
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import stockade

BIG_RATE = 10**9
# Calls between two reads of the clock.
CHUNK = 50
WARM_UP_SECONDS = 0.05
WATCHDOG_SECONDS = 60.0
TARGET = 10.0  # stockade shared at least this many times pyrate-limiter's calls/s

# A limiter factory runs in the worker, after the fork, and returns the
# try-acquire call (True when granted).
Factory = Callable[[], Callable[[], bool]]


def stockade_shared(directory: str) -> Factory:
    def make() -> Callable[[], bool]:
        limiter = stockade.RateLimiter(
            "bench-shared", requests_per_period=BIG_RATE, period=1, shared=directory
        )
        return limiter.try_acquire

    return make


def stockade_local() -> Factory:
    def make() -> Callable[[], bool]:
        limiter = stockade.RateLimiter("bench-local", requests_per_period=BIG_RATE, period=1)
        return limiter.try_acquire

    return make


def pyrate_multiprocess() -> Optional[Factory]:
    try:
        import pyrate_limiter as pl
    except ImportError:
        return None
    if not hasattr(pl, "MultiprocessBucket"):
        return None
    # Made before the fork: the Manager's list and the lock are what the
    # processes share.
    bucket = pl.MultiprocessBucket.init([pl.Rate(BIG_RATE, pl.Duration.SECOND)])

    def make() -> Callable[[], bool]:
        limiter = pl.Limiter(bucket)

        def call() -> bool:
            return bool(limiter.try_acquire("bench"))

        return call

    return make


def worker(make: Factory, seconds: float, ready, start, results, index: int) -> None:
    try:
        call = make()
        refused = 0
        warm_until = time.perf_counter() + WARM_UP_SECONDS
        while time.perf_counter() < warm_until:
            if not call():
                refused += 1
        ready.wait(WATCHDOG_SECONDS)
        start.wait(WATCHDOG_SECONDS)
        calls = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while True:
            for _ in range(CHUNK):
                if not call():
                    refused += 1
            calls += CHUNK
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - t0
        results.put((index, calls, elapsed, refused, None))
    except BaseException as e:  # reported by the parent
        results.put((index, 0, 0.0, 0, f"{type(e).__name__}: {e}"))
        ready.abort()  # a failure before the start ends the parent's wait at once


def run_once(ctx, make: Factory, processes: int, seconds: float) -> Tuple[float, float]:
    """(calls per second of all processes, median µs per call of a process)."""
    ready = ctx.Barrier(processes + 1)
    start = ctx.Event()
    results = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(make, seconds, ready, start, results, i), daemon=True)
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    try:
        try:
            ready.wait(WATCHDOG_SECONDS)
        except threading.BrokenBarrierError:
            # A worker failed (its error is on the queue) or none got ready in time.
            try:
                _, _, _, _, error = results.get(timeout=5)
            except queue.Empty:
                error = f"workers not ready within {WATCHDOG_SECONDS} s"
            raise RuntimeError(f"a worker failed: {error}") from None
        start.set()
        got = [results.get(timeout=seconds + WATCHDOG_SECONDS) for _ in procs]
    except BaseException:
        for p in procs:
            p.kill()
        raise
    finally:
        for p in procs:
            p.join(WATCHDOG_SECONDS)
    errors = [e for (_, _, _, _, e) in got if e]
    if errors:
        raise RuntimeError(f"a worker failed: {errors[0]}")
    refused = sum(r for (_, _, _, r, _) in got)
    if refused:
        raise RuntimeError(f"{refused} calls refused: the bench must measure the grant path")
    rate = sum(c / t for (_, c, t, _, _) in got)
    per_call = statistics.median(t / c * 1e6 for (_, c, t, _, _) in got)
    return rate, per_call


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu} ({os.cpu_count()} cores visible), {platform.system()} {platform.release()}"


def version(dist: str) -> str:
    try:
        from importlib.metadata import version as v

        return v(dist)
    except Exception:
        return "not installed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0, help="wall time of one run")
    parser.add_argument("--runs", type=int, default=3, help="runs of each implementation")
    parser.add_argument("--quick", action="store_true", help="one short run each (a smoke check)")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.runs = 0.2, 1
    if args.processes < 1 or args.seconds <= 0 or args.runs < 1:
        parser.error("--processes, --seconds and --runs must be positive")
    if sys.platform != "linux":
        print("shared limiters exist on Linux only; nothing measured")
        return 0
    ctx = multiprocessing.get_context("fork")

    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="stockade-bench-", dir=base) as directory:
        cases: Dict[str, Factory] = {
            "stockade shared (`shared=`)": stockade_shared(directory),
            "stockade local (one per process, not shared)": stockade_local(),
        }
        pyrate = pyrate_multiprocess()
        if pyrate is not None:
            cases["pyrate-limiter `MultiprocessBucket`"] = pyrate
        names = list(cases)
        runs: Dict[str, List[Tuple[float, float]]] = {n: [] for n in names}
        for rep in range(args.runs):
            for k in range(len(names)):
                name = names[(k + rep) % len(names)]
                runs[name].append(run_once(ctx, cases[name], args.processes, args.seconds))
    results = {
        n: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v))
        for n, v in runs.items()
    }
    for n, (rate, per_call) in results.items():
        print(f"  {n:48} {rate:14,.0f} calls/s {per_call:10.2f} µs/call", file=sys.stderr)

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"- date: {now}")
    print(f"- machine: {machine()}")
    print(
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"stockade {stockade.__version__}, pyrate-limiter {version('pyrate-limiter')}"
    )
    print(
        f"- {args.processes} processes (fork), each `try_acquire` in a loop for {args.seconds} s; "
        f"median of {args.runs} interleaved runs; every call granted"
    )
    print()
    print("| implementation | calls/s, all processes | µs/call per process | host ns/call | ÷ stockade shared |")
    print("|---|---:|---:|---:|---:|")
    ours_rate = results[names[0]][0]
    for n, (rate, per_call) in results.items():
        vs = "" if n == names[0] else f"{ours_rate / rate:.1f}× slower" if rate < ours_rate else f"{rate / ours_rate:.1f}× faster"
        print(f"| {n} | {rate:,.0f} | {per_call:,.2f} | {1e9 / rate:,.0f} | {vs} |")
    print()
    print("| target | stockade calls/s | reference calls/s | ratio | target | met |")
    print("|---|---:|---:|---:|---:|---|")
    ref = "pyrate-limiter `MultiprocessBucket`"
    desc = f"shared limiter ≥ {TARGET:g}× the calls/s of MultiprocessBucket, {args.processes} processes"
    if ref in results:
        ratio = ours_rate / results[ref][0]
        met = "yes" if ratio >= TARGET else "**no**"
        print(f"| {desc} | {ours_rate:,.0f} | {results[ref][0]:,.0f} | {ratio:.1f} | ≥ {TARGET:g} | {met} |")
    else:
        print(f"| {desc} | {ours_rate:,.0f} | — | — | ≥ {TARGET:g} | not measured (pyrate-limiter missing) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
