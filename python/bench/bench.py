"""Per-call cost of Stockade's Python patterns against the libraries people
would otherwise pick, and against the floors (a bare call, a call under a
``threading.Lock``), in one run. Not a test: prints a Markdown table.

Run with ``python/bench/run.sh`` (which installs the peers into a virtualenv
of its own). Every measurement protects the same no-op function (or no-op
coroutine), so the numbers are each library's own overhead plus the call.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import os
import platform
import sys
import threading
import time
from functools import partial
from typing import Callable, Dict, List, Optional, Tuple

import stockade


def noop() -> int:
    return 1


async def anoop() -> int:
    return 1


# --------------------------------------------------------------------------
# Measurement


def calibrate(step: Callable[[int], None], target_s: float) -> int:
    """Calls per run so that one run takes about `target_s`."""
    n = 1000
    while True:
        t0 = time.perf_counter()
        step(n)
        dt = time.perf_counter() - t0
        if dt >= target_s / 4 or n >= 50_000_000:
            break
        n *= 4
    return max(1000, int(n * target_s / max(dt, 1e-9)))


def measure_all(steps: "Dict[Tuple[str, str], Callable[[int], None]]", *, target_s: float, repeats: int) -> "Dict[Tuple[str, str], float]":
    """ns per call for every case: the fastest of `repeats` runs, the cases
    interleaved round-robin so that other load on the machine hits them
    alike (the minimum is the run least disturbed by it)."""
    sizes = {key: calibrate(step, target_s) for key, step in steps.items()}
    best: Dict[Tuple[str, str], float] = {key: float("inf") for key in steps}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for key, step in steps.items():
                n = sizes[key]
                t0 = time.perf_counter()
                step(n)
                best[key] = min(best[key], (time.perf_counter() - t0) / n * 1e9)
    finally:
        if gc_was:
            gc.enable()
    return best


def sync_loop(call: Callable[[], object]) -> Callable[[int], None]:
    def step(n: int) -> None:
        for _ in range(n):
            call()

    return step


def async_loop(make: Callable[[], object], setup: Optional[Callable[[], Callable[[], object]]] = None) -> Callable[[int], None]:
    """`await make()` n times inside one event loop; with `setup`, `make`
    is what `setup()` returns inside that loop (for objects bound to a
    loop)."""

    def step(n: int) -> None:
        async def body() -> None:
            call = setup() if setup is not None else make
            for _ in range(n):
                await call()

        asyncio.run(body())

    return step


# --------------------------------------------------------------------------
# Cases: (group, implementation, step factory). A factory returns None when
# its library is not installed or the pattern is not there yet.

Case = Tuple[str, str, Callable[[], Optional[Callable[[int], None]]]]
CASES: List[Case] = []


def case(group: str, name: str):
    def register(factory):
        CASES.append((group, name, factory))
        return factory

    return register


# Floors
@case("floor", "bare call `f()`")
def _():
    return sync_loop(noop)


@case("floor", "`with threading.Lock(): pass` (inline)")
def _():
    lock = threading.Lock()

    def step(n: int) -> None:
        for _ in range(n):
            with lock:
                pass

    return step


@case("floor", "`with threading.Lock(): f()`")
def _():
    lock = threading.Lock()

    def call():
        with lock:
            return noop()

    return sync_loop(call)


@case("floor-async", "bare `await f()`")
def _():
    return async_loop(anoop)


# Retry, healthy call
@case("retry", "stockade `execute`")
def _():
    ex = stockade.Retry("bench-retry").execute
    return sync_loop(partial(ex, noop))


@case("retry", "stockade decorator")
def _():
    return sync_loop(stockade.Retry("bench-retry-deco")(noop))


@case("retry", "tenacity decorator")
def _():
    try:
        import tenacity
    except ImportError:
        return None
    return sync_loop(tenacity.retry(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_exponential())(noop))


@case("retry-async", "stockade `await execute`")
def _():
    ex = stockade.Retry("bench-retry-async").execute
    return async_loop(partial(ex, anoop))


@case("retry-async", "stockade async decorator")
def _():
    return async_loop(stockade.Retry("bench-retry-async-deco")(anoop))


@case("retry-async", "tenacity async decorator")
def _():
    try:
        import tenacity
    except ImportError:
        return None
    return async_loop(tenacity.retry(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_exponential())(anoop))


# Timeout (asyncio)
@case("timeout-async", "stockade `await execute`")
def _():
    ex = stockade.Timeout("bench-timeout-async", timeout=5).execute
    return async_loop(partial(ex, anoop))


@case("timeout-async", "`asyncio.wait_for`")
def _():
    return async_loop(lambda: asyncio.wait_for(anoop(), 5))


# Breaker, closed (healthy) path
@case("breaker", "stockade `execute`")
def _():
    if not hasattr(stockade, "CircuitBreaker"):
        return None
    ex = stockade.CircuitBreaker("bench-breaker").execute
    return sync_loop(partial(ex, noop))


@case("breaker", "stockade decorator")
def _():
    if not hasattr(stockade, "CircuitBreaker"):
        return None
    return sync_loop(stockade.CircuitBreaker("bench-breaker-deco")(noop))


@case("breaker", "pybreaker `call`")
def _():
    try:
        import pybreaker
    except ImportError:
        return None
    b = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    return sync_loop(partial(b.call, noop))


@case("breaker", "circuitbreaker decorator")
def _():
    try:
        import circuitbreaker
    except ImportError:
        return None
    return sync_loop(circuitbreaker.circuit(failure_threshold=5, recovery_timeout=60)(noop))


@case("breaker-async", "stockade `await execute`")
def _():
    if not hasattr(stockade, "CircuitBreaker"):
        return None
    ex = stockade.CircuitBreaker("bench-breaker-async").execute
    return async_loop(partial(ex, anoop))


@case("breaker-async", "aiobreaker `call_async`")
def _():
    try:
        import aiobreaker
    except ImportError:
        return None
    b = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=datetime.timedelta(seconds=60))
    return async_loop(partial(b.call_async, anoop))


# Rate limiter, grant path (a limit the loop never reaches)
BIG_RATE = 10**9


@case("limiter", "stockade `try_acquire`")
def _():
    if not hasattr(stockade, "RateLimiter"):
        return None
    acquire = stockade.RateLimiter("bench-limiter", requests_per_period=BIG_RATE, period=1).try_acquire
    return sync_loop(acquire)


@case("limiter", "pyrate-limiter `try_acquire`")
def _():
    try:
        import pyrate_limiter as pl
    except ImportError:
        return None
    limiter = pl.Limiter(pl.Rate(BIG_RATE, pl.Duration.SECOND))
    return sync_loop(partial(limiter.try_acquire, "bench"))


@case("limiter", "limits `hit` (fixed window, memory)")
def _():
    try:
        import limits
        import limits.storage
        import limits.strategies
    except ImportError:
        return None
    window = limits.strategies.FixedWindowRateLimiter(limits.storage.MemoryStorage())
    item = limits.RateLimitItemPerSecond(BIG_RATE)
    return sync_loop(partial(window.hit, item))


@case("limiter", "limits `hit` (moving window, memory)")
def _():
    try:
        import limits
        import limits.storage
        import limits.strategies
    except ImportError:
        return None
    window = limits.strategies.MovingWindowRateLimiter(limits.storage.MemoryStorage())
    item = limits.RateLimitItemPerSecond(BIG_RATE)
    return sync_loop(partial(window.hit, item))


@case("limiter-async", "stockade `await execute`")
def _():
    if not hasattr(stockade, "RateLimiter"):
        return None
    ex = stockade.RateLimiter("bench-limiter-async", requests_per_period=BIG_RATE, period=1).execute
    return async_loop(partial(ex, anoop))


@case("limiter-async", "aiolimiter `async with` + call")
def _():
    try:
        import aiolimiter
    except ImportError:
        return None
    def setup():
        limiter = aiolimiter.AsyncLimiter(BIG_RATE, 1)  # one per event loop

        async def call():
            async with limiter:
                return await anoop()

        return call

    return async_loop(None, setup)


# --------------------------------------------------------------------------
# Targets: (description, numerator case, denominator case, max ratio)
LOCK = ("floor", "`with threading.Lock(): pass` (inline)")
TARGETS = [
    ("breaker call ≤ 2× a Lock round trip", ("breaker", "stockade `execute`"), LOCK, 2.0),
    ("limiter `try_acquire` ≤ 1.5× a Lock round trip", ("limiter", "stockade `try_acquire`"), LOCK, 1.5),
    ("healthy retry ≤ 3× a Lock round trip", ("retry", "stockade `execute`"), LOCK, 3.0),
    ("async breaker ≥ 4× faster than aiobreaker", ("breaker-async", "stockade `await execute`"), ("breaker-async", "aiobreaker `call_async`"), 1 / 4),
    ("async limiter ≥ 4× faster than aiolimiter", ("limiter-async", "stockade `await execute`"), ("limiter-async", "aiolimiter `async with` + call"), 1 / 4),
    ("async retry ≥ 30× faster than tenacity async", ("retry-async", "stockade `await execute`"), ("retry-async", "tenacity async decorator"), 1 / 30),
]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke check, noisy numbers)")
    parser.add_argument("--only", help="only groups whose name contains this")
    args = parser.parse_args()
    target_s, repeats = (0.02, 3) if args.quick else (0.05, 25)

    steps: Dict[Tuple[str, str], Callable[[int], None]] = {}
    for group, name, factory in CASES:
        if args.only and args.only not in group:
            continue
        step = factory()
        if step is not None:
            steps[(group, name)] = step
    results = measure_all(steps, target_s=target_s, repeats=repeats)
    for (group, name), ns in results.items():
        print(f"  {group:14} {name:45} {ns:10.1f} ns", file=sys.stderr)

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"- date: {now}")
    print(f"- machine: {machine()}")
    print(f"- Python {platform.python_version()} ({platform.python_implementation()}), stockade {stockade.__version__}")
    print(f"- fastest of {repeats} runs of ~{target_s}s each, cases interleaved; ns per protected no-op call, one thread")
    print()
    print("| group | implementation | ns/call | × floor | ÷ stockade |")
    print("|---|---|---:|---:|---:|")
    lock_floor = results.get(("floor", "`with threading.Lock(): f()`"))
    async_floor = results.get(("floor-async", "bare `await f()`"))
    for (group, name), ns in results.items():
        floor = async_floor if group.endswith("-async") else lock_floor
        x_floor = f"{ns / floor:.2f}" if floor else ""
        ours = next((v for (g, n), v in results.items() if g == group and n.startswith("stockade")), None)
        vs = "" if ours is None or name.startswith("stockade") or group.startswith("floor") else f"{ns / ours:.1f}"
        print(f"| {group} | {name} | {ns:,.1f} | {x_floor} | {vs} |")
    print()
    print("`× floor`: against a call under a lock, `with threading.Lock(): f()` in a function as the loop calls it (sync),")
    print("or a bare `await f()` (async); the targets compare with the lock round trip alone, inline in the loop;")
    print("`÷ stockade`: how many times slower than stockade's first row in that group.")
    print()
    print("| target | stockade ns | reference ns | ratio | target | met |")
    print("|---|---:|---:|---:|---:|---|")
    for desc, num, den, limit in TARGETS:
        if num not in results or den not in results:
            print(f"| {desc} | — | — | — | {limit:.3g} | not measured |")
            continue
        ratio = results[num] / results[den]
        met = "yes" if ratio <= limit else "**no**"
        print(f"| {desc} | {results[num]:,.1f} | {results[den]:,.1f} | {ratio:.3f} | ≤ {limit:.3g} | {met} |")


if __name__ == "__main__":
    main()
