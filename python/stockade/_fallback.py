"""Fallback and Hedging, as the Rust ``blocking::Fallback`` and
``blocking::Hedging``: named and registered like the other patterns, with
events (:class:`stockade.Event`) and metrics, usable with threads and
asyncio, as decorators and in :func:`stockade.pipeline`.

Hedging's decisions (when the next attempt is due, whether every attempt
failed) are the core's ``stockade::hedging::HedgeRound``, the same as in
Rust and C; this module runs the attempts: on threads for a plain
function, as tasks for an ``async def`` one.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import sys
import threading
import time
import types
from typing import Any, Callable, Dict, List, NoReturn, Optional, Tuple, Type, Union

from . import _errors
from . import _stockade

__all__ = ["Fallback", "Hedging"]

ExceptionTypes = Union[Type[BaseException], Tuple[Type[BaseException], ...]]

# How long a waiting thread sleeps at most between checks for Ctrl-C.
_SLICE = 0.1


class _Pattern:
    """What the patterns written here share: the registry, listeners,
    dispose, decorators."""

    _KIND = ""
    _TITLE = ""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        self._name = name
        self._lock = threading.Lock()
        self._listeners: List[Callable[[Any], Any]] = []
        self._disposed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def disposed(self) -> bool:
        return self._disposed

    def _register(self) -> None:
        _stockade._register(self._KIND, self._name, self)

    def add_listener(self, callback: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Calls ``callback(event)`` on every event; returns ``callback``."""
        if not callable(callback):
            raise TypeError(f"add_listener: callback must be callable, not {type(callback).__name__}")
        with self._lock:
            self._listeners.append(callback)
        return callback

    def remove_listener(self, callback: Callable[[Any], Any]) -> bool:
        """Removes a listener; ``True`` if it was there."""
        with self._lock:
            for i, listener in enumerate(self._listeners):
                if listener is callback or listener == callback:
                    del self._listeners[i]
                    return True
        return False

    def _emit(self, kind: str, attempt: Optional[int] = None, error: Any = None) -> None:
        # Counted for stockade.prometheus (a no-op unless a collector is alive).
        _stockade._count_event(self._KIND, self._name, kind)
        listeners = self._listeners
        if not listeners:
            return
        event = _stockade._event(self._KIND, self._name, kind, attempt, error)
        for listener in list(listeners):
            try:
                listener(event)
            except Exception:  # a listener's bug must not disturb the call
                sys.unraisablehook(_unraisable(listener))

    def _disposed_error(self) -> BaseException:
        return _errors.DisposedError(f"{self._TITLE} '{self._name}' has been disposed", self._name)

    def dispose(self) -> None:
        """Refuses every later call with ``DisposedError``, emits
        ``"disposed"``, forgets the listeners and unregisters the name."""
        with self._lock:
            first = not self._disposed
            self._disposed = True
        if first:
            self._on_dispose()
            self._emit("disposed")
            with self._lock:
                self._listeners = []
        _stockade._unregister(self._KIND, self._name, self)

    def _on_dispose(self) -> None:
        pass

    def execute(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def wrap(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func`` protected by this pattern (a decorator)."""
        if not callable(func):
            raise TypeError(f"expected a callable to protect, got {func!r}")
        if _stockade._is_async(func):
            from ._aio import wrap_async

            return wrap_async(self.execute, func)
        execute = self.execute

        @functools.wraps(func)
        def protected(*args: Any, **kwargs: Any) -> Any:
            return execute(func, *args, **kwargs)

        return protected

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``@pattern`` as a decorator: the same as :meth:`wrap`."""
        return self.wrap(func)


def _unraisable(obj: Any) -> Any:
    """What ``sys.unraisablehook`` gets for a listener that raised (the
    attributes of ``sys.UnraisableHookArgs``)."""
    exc_type, exc, tb = sys.exc_info()
    return types.SimpleNamespace(
        exc_type=exc_type,
        exc_value=exc,
        exc_traceback=tb,
        err_msg="Exception ignored in a stockade listener",
        object=obj,
    )


def _chooser(on: Any) -> Callable[[BaseException], bool]:
    """``on`` as a predicate over an exception."""
    if isinstance(on, type) and issubclass(on, BaseException):
        return lambda exc: isinstance(exc, on)
    if isinstance(on, tuple):
        if not on or not all(isinstance(t, type) and issubclass(t, BaseException) for t in on):
            raise TypeError("on must be an exception class, a non-empty tuple of them, or a predicate")
        return lambda exc: isinstance(exc, on)
    if callable(on):
        return lambda exc: bool(on(exc))
    raise TypeError(f"on must be an exception class, a tuple of them, or a predicate, not {type(on).__name__}")


class Fallback(_Pattern):
    """``Fallback(name, *, fallback=None, on=Exception)``: when a call
    raises an exception ``on`` chooses, the fallback gives the result
    instead.

    ``fallback`` is the value to return, or a callable: then it is called
    with the exception and what it returns is the result (awaited, if it
    returns an awaitable, on the ``async`` path); it may raise. To return a
    callable as the value, pass ``lambda exc: value``. ``on`` is an
    exception class, a tuple of them, or a predicate ``on(exc) -> bool``;
    Stockade's own refusals are exceptions like any other
    (``stockade.CircuitOpenError``, ``RateLimitedError``,
    ``BulkheadFullError``, ``TimeoutError``), so ``on=stockade.StockadeError``
    replaces only refusals. An interruption (a ``BaseException`` that is not
    an ``Exception``) is never replaced.

    Metrics: ``calls`` = ``successes`` + ``failures`` (raised, not
    replaced) + ``fallbacks`` (replaced). Events: ``"fallback_used"``
    (``error`` = the exception), ``"disposed"``."""

    _KIND = "fallback"
    _TITLE = "Fallback"

    def __init__(self, name: str, *, fallback: Any = None, on: Any = Exception) -> None:
        super().__init__(name)
        self._fallback = fallback
        self._handles = _chooser(on)
        self._counts = {"successes": 0, "failures": 0, "fallbacks": 0}
        self._register()

    @classmethod
    def get_fallback(cls, name: str) -> "Fallback":
        """The fallback registered as ``name``, or a new one with the
        defaults (registered under that name)."""
        found = _stockade._registered(cls._KIND, name)
        return found if found is not None else cls(name)

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _replaces(self, exc: BaseException) -> bool:
        return isinstance(exc, Exception) and self._handles(exc)

    def _value(self, exc: BaseException) -> Any:
        self._count("fallbacks")
        self._emit("fallback_used", error=exc)
        if callable(self._fallback):
            return self._fallback(exc)
        return self._fallback

    def execute(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Runs ``func(*args, **kwargs)``; an exception ``on`` chooses gives
        the fallback's result. With an ``async def`` function, returns an
        awaitable."""
        if self._disposed:
            raise self._disposed_error()
        if _stockade._is_async(func):
            return self._execute_async(func(*args, **kwargs))
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            if not self._replaces(exc):
                if isinstance(exc, Exception):
                    self._count("failures")
                raise
            return self._value(exc)
        if inspect.isawaitable(result):
            return self._execute_async(result)
        self._count("successes")
        return result

    async def _execute_async(self, awaitable: Any) -> Any:
        try:
            result = await awaitable
        except BaseException as exc:
            if not self._replaces(exc):
                if isinstance(exc, Exception):
                    self._count("failures")
                raise
            value = self._value(exc)
            if inspect.isawaitable(value):
                value = await value
            return value
        self._count("successes")
        return result

    def metrics(self) -> Dict[str, Any]:
        """Counters: ``calls``, ``successes``, ``failures``, ``fallbacks``
        (the others of every pattern's dict are 0)."""
        with self._lock:
            c = dict(self._counts)
        return _metrics(self._name, calls=c["successes"] + c["failures"] + c["fallbacks"], **c)

    def __repr__(self) -> str:
        return f"Fallback({self._name!r}, fallback={self._fallback!r})"


def _metrics(name: str, **counts: int) -> Dict[str, Any]:
    d: Dict[str, Any] = {"name": name}
    for key in ("calls", "successes", "failures", "rejections", "timeouts", "retries",
                "queue_depth", "in_flight", "fallback_decisions", "fallbacks", "hedges", "hedges_won"):
        d[key] = counts.get(key, 0)
    return d


class _Race:
    """A threaded call's attempts report here; the caller waits on it."""

    __slots__ = ("cond", "outcomes", "open")

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.outcomes: List[Tuple[int, bool, Any]] = []
        self.open = True


class Hedging(_Pattern):
    """``Hedging(name, *, delay=2.0, max_attempts=2, max_workers=16,
    on=None)``: runs extra attempts of a slow call and takes the first
    success.

    The first attempt starts at once; when ``delay`` (seconds or
    ``timedelta``) passes without a success — or at once when an attempt
    raises an exception ``on`` chooses — another starts, up to
    ``max_attempts`` (1 to 64) in all. The first attempt to **return**
    wins; if every attempt raises, the exception of the one that finished
    last is raised.

    ``on`` (Polly's ``ShouldHandle``) is ``None`` (the default: every
    exception launches the next attempt), an exception class, a tuple of
    them, or a predicate ``on(exc) -> bool``, as for :class:`Fallback`; it
    is checked on the caller's thread (in the caller's task) for each
    attempt that raised, in the order the outcomes arrive (tasks done at
    the same wake-up of the caller: in the order they started). An exception it
    does not choose is **final**: it is raised at once, no more attempts
    start, and the attempts still running are losers (detached or
    cancelled, below); an attempt still running wins over it only if its
    result arrived first. ``on`` is not consulted for a first attempt run
    unhedged (a full ``max_workers``, below): its outcome is the call's. If
    ``on`` itself raises, that exception propagates (the attempts still
    running are losers; the call counts in neither ``successes`` nor
    ``failures``). A plain function's
    attempts run on the hedging's pool of at most ``max_workers`` threads
    (the core's worker pool, as for the Rust hedging: threads started on
    demand and reused, an idle one exiting after a minute or once the
    hedging is garbage-collected), each in a copy of the caller's
    ``contextvars`` context; the losers are **detached**: they run on to
    the end and their results are dropped. An ``async def`` function's attempts are
    tasks on the caller's loop; the losers are **cancelled**. Hedge only
    calls that are safe to make twice.

    ``max_workers`` bounds the attempts running at once over every call
    (threads and tasks, losers still running included): a hedge that finds
    them all taken is not launched (no more hedges for that call), and a
    first attempt that does runs on the caller's thread (awaited in the
    caller's task), unhedged; both count in ``rejections`` and emit
    ``"rejected"``. That is no error.

    Metrics: ``calls`` = ``successes`` + ``failures``; ``hedges`` (extra
    attempts launched), ``hedges_won``, ``rejections``, ``in_flight``
    (attempts running now). Events: ``"hedge_launched"`` and
    ``"hedge_won"`` (``attempt``), ``"rejected"``, ``"disposed"``."""

    _KIND = "hedging"
    _TITLE = "Hedging"

    def __init__(
        self, name: str, *, delay: Any = 2.0, max_attempts: Any = 2, max_workers: Any = 16, on: Any = None
    ) -> None:
        super().__init__(name)
        self._delay, self._max_attempts, self._max_workers = _stockade._hedging_config(delay, max_attempts, max_workers)
        self._hedges_on: Optional[Callable[[BaseException], bool]] = None if on is None else _chooser(on)
        self._running = 0
        self._counts = {"successes": 0, "failures": 0, "rejections": 0, "hedges": 0, "hedges_won": 0}
        self._races: "set[_Race]" = set()
        # The threads of plain-function attempts: the core's worker pool.
        self._pool = _stockade._AttemptPool(name, self._max_workers)
        from ._aio import Waiters

        self._waiters = Waiters()
        self._register()

    @classmethod
    def get_hedging(cls, name: str) -> "Hedging":
        """The hedging registered as ``name``, or a new one with the
        defaults (registered under that name)."""
        found = _stockade._registered(cls._KIND, name)
        return found if found is not None else cls(name)

    @property
    def delay(self) -> float:
        return self._delay

    @property
    def max_attempts(self) -> int:
        return self._max_attempts

    @property
    def max_workers(self) -> int:
        return self._max_workers

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _take_slot(self) -> bool:
        with self._lock:
            taken = self._running < self._max_workers
            if taken:
                self._running += 1
        if not taken:
            self._refused()
        return taken

    def _refused(self) -> None:
        self._count("rejections")
        self._emit("rejected")

    def _give_slot(self) -> None:
        with self._lock:
            self._running -= 1

    def _launched(self, attempt: int) -> None:
        if attempt > 1:
            self._count("hedges")
            self._emit("hedge_launched", attempt=attempt)

    def _won(self, attempt: int) -> None:
        self._count("successes")
        if attempt > 1:
            self._count("hedges_won")
            self._emit("hedge_won", attempt=attempt)

    def execute(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Runs ``func(*args, **kwargs)`` hedged. With an ``async def``
        function, returns an awaitable."""
        if self._disposed:
            raise self._disposed_error()
        if _stockade._is_async(func):
            return self._execute_async(func, args, kwargs)
        return self._execute_threads(func, args, kwargs)

    # -- threads ---------------------------------------------------------

    def _attempt(self, race: _Race, attempt: int, context: contextvars.Context, func: Any, args: Any, kwargs: Any) -> None:
        try:
            outcome = (attempt, True, context.run(func, *args, **kwargs))
        except BaseException as exc:  # reported to the caller, never lost here
            outcome = (attempt, False, exc)
        finally:
            self._give_slot()
        with race.cond:
            if race.open:
                race.outcomes.append(outcome)
                race.cond.notify_all()

    def _execute_threads(self, func: Any, args: Any, kwargs: Any) -> Any:
        race = _Race()
        rounds = _stockade._HedgeRound(self._delay, self._max_attempts)
        last: Optional[BaseException] = None
        with self._lock:
            self._races.add(race)
        try:
            while True:
                with race.cond:
                    taken, race.outcomes = race.outcomes, []
                for attempt, ok, value in taken:
                    if ok:
                        self._won(attempt)
                        return value
                    if self._hedges_on is not None and not self._hedges_on(value):
                        self._final(value)
                    last = value
                    rounds.failed(time.monotonic())
                if self._disposed:
                    raise self._disposed_error()
                now = time.monotonic()
                step, value = rounds.next_step(now)
                if step == "launch":
                    if not self._take_slot():
                        if value == 1:
                            return self._unhedged(func, args, kwargs)
                        rounds.refused()
                        continue
                    job = functools.partial(
                        self._attempt, race, value, contextvars.copy_context(), func, args, kwargs
                    )
                    try:
                        submitted = self._pool.submit(job)
                    except BaseException:
                        self._give_slot()
                        raise
                    if not submitted:  # the pool could start no thread
                        self._give_slot()
                        self._refused()
                        if value == 1:
                            return self._unhedged(func, args, kwargs)
                        rounds.refused()
                        continue
                    rounds.launched(now)
                    self._launched(value)
                elif step == "failed":
                    assert last is not None
                    self._final(last)
                else:
                    wait = _SLICE if step == "wait" else min(_SLICE, max(0.0, value - now))
                    with race.cond:
                        if not race.outcomes and not self._disposed:
                            race.cond.wait(wait)
        finally:
            with race.cond:
                race.open = False
                race.outcomes = []
            with self._lock:
                self._races.discard(race)

    def _final(self, failure: BaseException) -> "NoReturn":
        """Ends the call with ``failure`` (counted unless an interruption)."""
        if isinstance(failure, Exception):  # else an interruption: no outcome
            self._count("failures")
        raise failure

    def _unhedged(self, func: Any, args: Any, kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
        except Exception:
            self._count("failures")
            raise
        self._count("successes")
        return result

    # -- asyncio ---------------------------------------------------------

    async def _execute_async(self, func: Any, args: Any, kwargs: Any) -> Any:
        rounds = _stockade._HedgeRound(self._delay, self._max_attempts)
        tasks: Dict["asyncio.Future[Any]", int] = {}
        last: Optional[BaseException] = None
        disposed = self._waiters.future()
        try:
            while True:
                if self._disposed:
                    raise self._disposed_error()
                now = time.monotonic()
                step, value = rounds.next_step(now)
                if step == "launch":
                    if not self._take_slot():
                        if value == 1:
                            return await self._unhedged_async(func, args, kwargs)
                        rounds.refused()
                        continue
                    try:
                        task = asyncio.ensure_future(func(*args, **kwargs))
                    except BaseException:
                        self._give_slot()
                        raise
                    task.add_done_callback(lambda _t: self._give_slot())
                    tasks[task] = value
                    rounds.launched(now)
                    self._launched(value)
                    continue
                if step == "failed":
                    assert last is not None
                    self._final(last)
                timeout = None if step == "wait" else max(0.0, value - now)
                done, _ = await asyncio.wait([*tasks, disposed], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if disposed in done:
                    disposed.exception()  # retrieved: no "never retrieved" warning
                    raise self._disposed_error()
                # Attempts done at the same wake-up: in the order they started.
                for task in sorted(done, key=tasks.__getitem__):
                    attempt = tasks.pop(task)
                    if task.cancelled():
                        failure: BaseException = asyncio.CancelledError()
                    elif task.exception() is None:
                        self._won(attempt)
                        return task.result()
                    else:
                        failure = task.exception()  # type: ignore[assignment]
                    if self._hedges_on is not None and not self._hedges_on(failure):
                        self._final(failure)
                    last = failure
                    rounds.failed(time.monotonic())
        finally:
            self._waiters.discard(disposed)
            if not disposed.done():
                disposed.cancel()
            for task in tasks:
                task.cancel()

    async def _unhedged_async(self, func: Any, args: Any, kwargs: Any) -> Any:
        try:
            result = await func(*args, **kwargs)
        except Exception:
            self._count("failures")
            raise
        self._count("successes")
        return result

    def _on_dispose(self) -> None:
        with self._lock:
            races = list(self._races)
        for race in races:
            with race.cond:
                race.cond.notify_all()
        self._waiters.wake_all(self._disposed_error())

    def metrics(self) -> Dict[str, Any]:
        """Counters: ``calls``, ``successes``, ``failures``, ``hedges``,
        ``hedges_won``, ``rejections``, ``in_flight`` (the others of every
        pattern's dict are 0)."""
        with self._lock:
            c = dict(self._counts)
            running = self._running
        return _metrics(self._name, calls=c["successes"] + c["failures"], in_flight=running, **c)

    def __repr__(self) -> str:
        return f"Hedging({self._name!r}, delay={self._delay}, max_attempts={self._max_attempts})"
