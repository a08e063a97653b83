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
