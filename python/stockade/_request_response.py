"""The request-response pattern: a named handler that always answers with a
:class:`Response`, as the Rust ``blocking::RequestResponsePattern``.

It composes the other patterns: the request's timeout is a
:class:`stockade.Timeout` (the handler runs on a worker thread, or as a task
for an ``async def`` handler), and ``protection`` (any pattern or pipeline)
runs around each attempt. Every failure becomes a response with the status
an HTTP caller expects.
"""

from __future__ import annotations

import datetime
import itertools
import threading
from typing import Any, Callable, Dict, Mapping, Optional, Union

from . import _errors
from . import _stockade

__all__ = ["Request", "Response", "RequestResponsePattern"]

_KIND = "request_response"


class Request:
    """``data`` for the handler and ``metadata``: a dict with the optional
    keys ``timeout`` (seconds or ``timedelta``), ``correlation_id`` and
    ``headers``."""

    __slots__ = ("data", "metadata")

    def __init__(self, data: Any = None, metadata: Optional[Mapping[str, Any]] = None, *, timeout: Any = None) -> None:
        self.data = data
        self.metadata: Dict[str, Any] = dict(metadata or {})
        if timeout is not None:
            self.metadata["timeout"] = timeout

    @classmethod
    def from_any(cls, request: Union["Request", Mapping[str, Any]]) -> "Request":
        if isinstance(request, Request):
            return request
        if isinstance(request, Mapping):
            unknown = set(request) - {"data", "metadata"}
            if unknown:
                raise TypeError(f"a request dict has the keys 'data' and 'metadata', not {sorted(unknown)}")
            return cls(request.get("data"), request.get("metadata"))
        raise TypeError(f"expected a stockade.Request or a dict, got {type(request).__name__}")

    @property
    def timeout(self) -> Optional[float]:
        t = self.metadata.get("timeout")
        if isinstance(t, datetime.timedelta):
            return t.total_seconds()
        return None if t is None else float(t)

    @property
    def correlation_id(self) -> Optional[str]:
        return self.metadata.get("correlation_id")

    def __repr__(self) -> str:
        return f"Request(data={self.data!r}, metadata={self.metadata!r})"


class Response:
    """What the handler returned (``data``, ``status`` 200 by default), or
    what the pattern made of a failure (``error`` set, ``retry_after`` in
    seconds for 429 and 503 when known)."""

    __slots__ = ("data", "status", "error", "correlation_id", "retry_after")

    def __init__(
        self,
        data: Any = None,
        status: int = 200,
        *,
        error: Optional[str] = None,
        correlation_id: str = "",
        retry_after: Optional[float] = None,
    ) -> None:
        self.data = data
        self.status = status
        self.error = error
        self.correlation_id = correlation_id
        self.retry_after = retry_after

    @property
    def ok(self) -> bool:
        """``True`` for a 2xx status."""
        return 200 <= self.status < 300

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in ("error", "correlation_id", "retry_after") if getattr(self, k))
        return f"Response(data={self.data!r}, status={self.status}{extra})"


class _ServerError(Exception):
    """A handler's own 5xx response, raised inside the protection so that a
    breaker counts it and a retry repeats it; unwrapped at the end."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.error or f"status {response.status}")
        self.response = response


def _response_for(exc: BaseException) -> "tuple[Response, str]":
    """A failure as the response callers get, and how it is counted."""
    if isinstance(exc, _ServerError):
        src = exc.response
        r, kind = Response(src.data, src.status, error=src.error, retry_after=src.retry_after), "failures"
    elif isinstance(exc, _errors.RateLimitedError):
        r, kind = Response(None, 429, error=str(exc), retry_after=exc.retry_after), "rejections"
    elif isinstance(exc, _errors.CircuitOpenError):
        r, kind = Response(None, 503, error=str(exc), retry_after=exc.retry_after), "rejections"
    elif isinstance(exc, (_errors.BulkheadFullError, _errors.QueueTimeoutError)):
        r, kind = Response(None, 503, error=str(exc)), "rejections"
    elif isinstance(exc, _errors.TimeoutError):
        r, kind = Response(None, 504, error=str(exc)), "timeouts"
    elif isinstance(exc, _errors.DisposedError):
        r, kind = Response(None, 503, error="the pattern was disposed"), "rejections"
    else:
        r, kind = Response(None, 500, error=str(exc) or type(exc).__name__), "failures"
    attempts = getattr(exc, "stockade_attempts", None)
    if attempts is not None:
        r.error = f"gave up after {attempts} attempts: {r.error or f'status {r.status}'}"
    return r, kind


class RequestResponsePattern:
    """``RequestResponsePattern(name, handler, *, default_timeout=None,
    protection=None, max_workers=8)``.

    ``handler(request)`` gets a :class:`Request` and returns a
    :class:`Response` (any other value is the data of a 200 response); an
    ``async def`` handler makes :meth:`execute` awaitable. A request's
    ``metadata["timeout"]`` (else ``default_timeout``) bounds the whole
    request, every attempt included: a plain handler then runs on one of
    ``max_workers`` worker threads and the caller gets its 504 on time
    while the handler goes on; an ``async def`` handler is cancelled.
    ``protection`` (a pattern or :func:`stockade.pipeline`) runs around
    each attempt. :meth:`execute` always answers:

    ==========================================  =======================================
    what happened                               status
    ==========================================  =======================================
    the handler answered                        its status (a 5xx counts as a failure
                                                for the protection: a breaker counts it,
                                                a retry repeats it)
    the handler raised                          500, ``error`` = its message
    a rate limiter refused                      429, with ``retry_after``
    a breaker refused                           503, with ``retry_after``
    a bulkhead was full or its queue timed out  503
    the deadline passed                         504
    retries ran out                             the last attempt's, ``error`` starts
                                                ``gave up after <n> attempts:``
    disposed                                    503, ``the pattern was disposed``
    ==========================================  =======================================
    """

    def __init__(
        self,
        name: str,
        handler: Callable[[Request], Any],
        *,
        default_timeout: Any = None,
        protection: Any = None,
        max_workers: int = 8,
    ) -> None:
        if not callable(handler):
            raise TypeError("handler must be callable")
        self.name = name
        self.handler = handler
        self.default_timeout = None if default_timeout is None else _stockade._seconds(default_timeout, "default_timeout")
        if self.default_timeout == 0:
            raise _errors.ConfigError("invalid default_timeout = 0s: must be greater than zero", "default_timeout")
        self.protection = protection
        self._async = _is_async(handler)
        self._deadlines = _stockade._adhoc_timeout(name, 1.0, max_workers)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._counts = {"calls": 0, "successes": 0, "failures": 0, "rejections": 0, "timeouts": 0}
        self._disposed = False
        _stockade._register(_KIND, name, self)

    @classmethod
    def get_request_response(cls, name: str) -> "RequestResponsePattern":
        """The pattern registered as ``name`` (``KeyError`` if none: a
        pattern needs its handler)."""
        found = _stockade._registered(_KIND, name)
        if found is None:
            raise KeyError(f"no RequestResponsePattern named {name!r}")
        return found

    def _prepare(self, request: Any) -> "tuple[Request, str, Any]":
        req = Request.from_any(request)
        cid = req.correlation_id or f"{self.name}-{next(self._ids)}"
        req.metadata["correlation_id"] = cid
        timeout = req.metadata.get("timeout")
        return req, cid, self.default_timeout if timeout is None else timeout

    @staticmethod
    def _as_response(out: Any) -> Response:
        response = out if isinstance(out, Response) else Response(out)
        if response.status >= 500:
            raise _ServerError(response)
        return response

    def _finish(self, response: Response, kind: str, cid: str) -> Response:
        response.correlation_id = cid
        with self._lock:
            self._counts["calls"] += 1
            self._counts[kind] += 1
        return response

    def execute(self, request: Union[Request, Mapping[str, Any]]) -> Any:
        """Handles ``request`` (a :class:`Request` or a dict ``{"data": ...,
        "metadata": {"timeout": seconds}}``) and always answers with a
        :class:`Response` (an awaitable of one for an ``async def``
        handler)."""
        req, cid, timeout = self._prepare(request)
        if self._async:
            return self._execute_async(req, cid, timeout)
        if self._disposed:
            return self._finish(Response(None, 503, error="the pattern was disposed"), "rejections", cid)

        def attempt() -> Response:
            return self._as_response(self.handler(req))

        def call() -> Response:
            if self.protection is not None:
                return self.protection.execute(attempt)
            return attempt()

        try:
            response = call() if timeout is None else self._deadlines._execute_within(timeout, call)
        except Exception as exc:
            return self._finish(*_response_for(exc), cid)
        return self._finish(response, "successes", cid)

    async def _execute_async(self, req: Request, cid: str, timeout: Any) -> Response:
        if self._disposed:
            return self._finish(Response(None, 503, error="the pattern was disposed"), "rejections", cid)

        async def attempt() -> Response:
            return self._as_response(await self.handler(req))

        async def call() -> Response:
            if self.protection is not None:
                return await self.protection.execute(attempt)
            return await attempt()

        try:
            response = await (call() if timeout is None else self._deadlines._execute_within(timeout, call))
        except Exception as exc:
            return self._finish(*_response_for(exc), cid)
        return self._finish(response, "successes", cid)

    def metrics(self) -> Dict[str, Any]:
        """Counters: ``calls``, ``successes`` (the handler answered below
        500), ``failures``, ``rejections`` (429/503 from protection),
        ``timeouts`` (504)."""
        with self._lock:
            return {"name": self.name, **self._counts}

    def dispose(self) -> None:
        """Answers every later request with a 503 and unregisters the name."""
        self._disposed = True
        _stockade._unregister(_KIND, self.name, self)

    @property
    def disposed(self) -> bool:
        return self._disposed

    def __repr__(self) -> str:
        return f"RequestResponsePattern({self.name!r}, {self.handler!r})"


def _is_async(func: Any) -> bool:
    from ._aio import is_async_callable

    return is_async_callable(func)
