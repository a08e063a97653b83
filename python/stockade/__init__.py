"""Stockade: resilience patterns for Python programs, threads and asyncio.

Circuit breaker, rate limiter, bulkhead, timeout, retry with backoff,
request-response, fallback and hedging, on Stockade's lock-free Rust state
machines. Every pattern
protects plain functions and ``async def`` functions alike::

    import stockade

    retry = stockade.Retry("api", max_attempts=3, initial_delay=0.2,
                           retryable_errors=["network error", ConnectionError])
    data = retry.execute(fetch, "/users")          # threads
    data = await retry.execute(afetch, "/users")   # asyncio

    @retry
    async def get_user(user_id): ...

Durations are seconds (``float``) or :class:`datetime.timedelta`; options are
keyword-only with the spec's defaults. A pattern's own refusals are
:class:`StockadeError` subclasses; the protected function's exceptions
propagate unchanged.

Interruptions: a ``BaseException`` that is not an ``Exception``
(``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``,
``asyncio.CancelledError``, or any other) ending a call — raised by the
function, or reaching a caller while it waits in a queue, for a worker or in
a back-off sleep — *interrupts* it, in every pattern alike. It propagates
unchanged; every permit the call held or was granted is given back (a
bulkhead place, a limiter booking still waiting, a breaker's half-open
probe, a timeout's worker once the function returns); it is neither a
success nor a failure (a circuit breaker's health does not see it, a retry
never retries it); and it is not counted in ``calls``. So ``metrics()`` add
up once no call is in progress: ``calls`` is ``successes + failures +
rejections`` for a circuit breaker (an excluded exception is likewise no
outcome; ``failures`` and ``rejections`` are the core's counters, which
also count slow successes as failures, leave out a failure reported after
the breaker changed state meanwhile (a stale verdict), and wrap at 2**32),
``successes + failures + rejections + timeouts`` for a bulkhead
and a timeout, ``successes + failures`` for a retry and a hedging,
``successes + failures + fallbacks`` for a fallback. A rate limiter's
outcome is the booking: ``calls`` counts bookings granted or refused
(``rejections``), whatever the function did afterwards; a booking given up
while waiting is not counted. A call that ``dispose()`` wakes from a wait
(``DisposedError``) is likewise no outcome.

``shared=True`` (or a directory) on :class:`CircuitBreaker`,
:class:`RateLimiter` and :class:`Bulkhead` makes one machine for every
process on the host (Linux): the workers of a pre-forked server share one
limit, one breaker state and one concurrency bound::

    limiter = stockade.RateLimiter("payments", requests_per_period=10, period=1,
                                   mode="strict", shared=True)

The state lives in ``/dev/shm/stockade-<uid>-<kind>-<name>``; a config that
differs from the stored one raises :class:`ConfigError` naming both; events
and call counters are per process.

``redis="redis://host:6379/0"`` (or a :class:`RedisOptions`) on the same
three classes makes one object for every process, on any host, that uses
the same Redis server, name and config: a fleet-wide rate limit, concurrency
limit or breaker::

    limiter = stockade.RateLimiter("payments", requests_per_period=10, period=1,
                                   mode="strict", redis="redis://127.0.0.1:6379/0")

Redis is never a hard dependency: every command is bounded by the options'
timeouts, and while the server cannot answer the ``fallback`` decides
(``"local"`` by default: a local pattern at the limit divided by
``expected_instances``; ``"open"``; or ``"closed"``, which raises
:class:`RedisUnavailableError`). Listeners get ``"store_unavailable"`` and
``"store_recovered"`` events; ``metrics()["fallback_decisions"]`` counts the
decisions taken under the fallback. Round trips run with the GIL released,
and asyncio callers run them on the loop's default executor, never on the
loop's thread.

:mod:`stockade.prometheus` (``pip install "stockade[prometheus]"``) exposes
every registered pattern's metrics to a ``prometheus_client`` scrape, under
the names of ``docs/telemetry.md``.
"""

from __future__ import annotations

from ._errors import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigError,
    DisposedError,
    NameTakenError,
    QueueTimeoutError,
    RateLimitedError,
    RedisConfigMismatchError,
    RedisError,
    RedisUnavailableError,
    StockadeError,
    TimeoutError,
)
from ._fallback import Fallback, Hedging
from ._request_response import Request, RequestResponsePattern, Response
from ._stockade import (
    Bulkhead,
    CircuitBreaker,
    Event,
    Pipeline,
    Protected,
    RateLimiter,
    RedisOptions,
    Retry,
    Timeout,
    __version__,
)

pipeline = Pipeline
"""``pipeline(*patterns)``: the patterns composed at run time, the first
outermost; ``.execute(fn, ...)``, or a decorator."""

__all__ = [
    "Bulkhead",
    "CircuitBreaker",
    "RateLimiter",
    "Retry",
    "Request",
    "Response",
    "RequestResponsePattern",
    "Timeout",
    "Fallback",
    "Hedging",
    "Event",
    "Pipeline",
    "pipeline",
    "Protected",
    "StockadeError",
    "ConfigError",
    "CircuitOpenError",
    "BulkheadFullError",
    "RateLimitedError",
    "TimeoutError",
    "QueueTimeoutError",
    "DisposedError",
    "NameTakenError",
    "RedisOptions",
    "RedisError",
    "RedisUnavailableError",
    "RedisConfigMismatchError",
    "__version__",
]
