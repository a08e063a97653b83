"""Stockade: resilience patterns for Python programs, threads and asyncio.

Circuit breaker, rate limiter, bulkhead, timeout, retry with backoff and
request-response, on Stockade's lock-free Rust state machines. Every pattern
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

``shared=True`` (or a directory) on :class:`CircuitBreaker`,
:class:`RateLimiter` and :class:`Bulkhead` makes one machine for every
process on the host (Linux): the workers of a pre-forked server share one
limit, one breaker state and one concurrency bound::

    limiter = stockade.RateLimiter("payments", requests_per_period=10, period=1,
                                   mode="strict", shared=True)

The state lives in ``/dev/shm/stockade-<uid>-<kind>-<name>``; a config that
differs from the stored one raises :class:`ConfigError` naming both; events
and call counters are per process.
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
    StockadeError,
    TimeoutError,
)
from ._request_response import Request, RequestResponsePattern, Response
from ._stockade import Bulkhead, CircuitBreaker, Event, Pipeline, Protected, RateLimiter, Retry, Timeout, __version__

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
    "__version__",
]
