"""Stockade's exceptions.

Every refusal by a pattern is a :class:`StockadeError`; the protected
function's own exceptions are never wrapped: they propagate unchanged (the
same object, traceback intact).
"""

from __future__ import annotations

import builtins
from typing import Optional

__all__ = [
    "StockadeError",
    "ConfigError",
    "CircuitOpenError",
    "BulkheadFullError",
    "RateLimitedError",
    "TimeoutError",
    "QueueTimeoutError",
    "DisposedError",
    "NameTakenError",
    "RedisError",
    "RedisUnavailableError",
    "RedisConfigMismatchError",
]


class StockadeError(Exception):
    """Base class of every error a Stockade pattern raises by itself.

    ``name`` is the name of the pattern that raised it (``None`` when no
    single pattern did).
    """

    name: Optional[str]

    def __init__(self, message: str, name: Optional[str] = None) -> None:
        super().__init__(message)
        self.name = name


class ConfigError(StockadeError, ValueError):
    """An invalid option: ``option`` names it, the message says the value
    given and the rule it broke (the core's ``ConfigError`` message)."""

    option: str

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


class CircuitOpenError(StockadeError):
    """The circuit breaker refused the call (open, forced open, or all
    half-open probes taken). ``retry_after``: seconds until it may admit a
    call again (``None`` if unknown, e.g. forced open)."""

    retry_after: Optional[float]

    def __init__(self, message: str, name: Optional[str] = None, retry_after: Optional[float] = None) -> None:
        super().__init__(message, name)
        self.retry_after = retry_after


class BulkheadFullError(StockadeError):
    """The bulkhead is running ``max_concurrent`` calls and its queue holds
    ``max_queue`` callers."""


class RateLimitedError(StockadeError):
    """The rate limiter refused the call: the wait would exceed
    ``queue_timeout`` or the queue is full. ``retry_after``: seconds until
    the permits could be granted (``None`` if they never can, e.g. more
    than the limiter's burst)."""

    retry_after: Optional[float]

    def __init__(self, message: str, name: Optional[str] = None, retry_after: Optional[float] = None) -> None:
        super().__init__(message, name)
        self.retry_after = retry_after


class TimeoutError(StockadeError, builtins.TimeoutError):  # noqa: A001 - the spec's name
    """The call ran out of time. Also a built-in :class:`TimeoutError`, so
    ``except TimeoutError`` catches it. ``timeout``: the limit in seconds."""

    timeout: Optional[float]

    def __init__(self, message: str, name: Optional[str] = None, timeout: Optional[float] = None) -> None:
        super().__init__(message, name)
        self.timeout = timeout


class QueueTimeoutError(StockadeError):
    """A caller waited ``queue_timeout`` in a bulkhead's queue without
    getting a slot. ``waited``: seconds it waited."""

    waited: Optional[float]

    def __init__(self, message: str, name: Optional[str] = None, waited: Optional[float] = None) -> None:
        super().__init__(message, name)
        self.waited = waited


class DisposedError(StockadeError):
    """The pattern was disposed: it refuses every call, and wakes callers
    that were waiting in its queue or sleeping in its back-off."""


class NameTakenError(StockadeError, ValueError):
    """A pattern of this type is already registered under this name:
    constructing one registers it, and a name holds one live instance (the
    core's rule). Dispose the old one first, or fetch it with
    ``get_breaker(name)`` and the like."""


class RedisError(StockadeError):
    """A pattern shared through Redis (``redis=``) could not decide a call
    because of Redis. Invalid Redis options, URLs and names are
    :class:`ConfigError` instead (raised when the pattern or the
    :class:`stockade.RedisOptions` is made)."""


class RedisUnavailableError(RedisError):
    """Redis did not answer (a timeout, a refused or dropped connection, a
    server error, or the connection's guard breaker open) and the
    pattern's fallback is ``"closed"``: the call was refused without
    running. ``cause``: ``"timeout"``, ``"connection"``, ``"server"``,
    ``"protocol"``, ``"pool_exhausted"`` or ``"guard_open"``;
    ``retry_after``: seconds until the guard breaker lets a command through
    again (``None`` if unknown)."""

    cause: Optional[str]
    retry_after: Optional[float]

    def __init__(self, message: str, name: Optional[str] = None, cause: Optional[str] = None,
                 retry_after: Optional[float] = None) -> None:
        super().__init__(message, name)
        self.cause = cause
        self.retry_after = retry_after


class RedisConfigMismatchError(RedisError):
    """The config stored in Redis for this pattern differs from the one it
    was made with (another deployment, or a changed config). ``key`` is
    the Redis key; ``stored`` and ``ours`` the two configs in canonical
    form. Delete the key, use the same config, or make the pattern with
    ``RedisOptions(..., adopt_stored_config=True)``."""

    key: Optional[str]
    stored: Optional[str]
    ours: Optional[str]

    def __init__(self, message: str, name: Optional[str] = None, key: Optional[str] = None,
                 stored: Optional[str] = None, ours: Optional[str] = None) -> None:
        super().__init__(message, name)
        self.key = key
        self.stored = stored
        self.ours = ours
