"""The asyncio halves of Stockade's patterns.

The native module decides (from what the protected function returned) that
a call is ``async def`` and hands the rest of it to a coroutine here. These
coroutines only ever wait with asyncio primitives (``asyncio.sleep``,
futures), never by blocking the event loop; every decision comes from the
same lock-free core objects the threaded paths use.

Patterns shared through Redis (``redis=``) decide with a round trip to the
server, which must not run on the loop's thread: their coroutines run the
blocking calls (which release the GIL) on the loop's default executor
(``loop.run_in_executor(None, ...)``) and await them there. A call that is
already running in the executor when its coroutine is cancelled finishes
there, and what it was granted (a rate limiter's booking, a bulkhead's
permit, a breaker's admission) is given back there. A Redis-backed
breaker's closed calls need no round trip: they are admitted and reported
on the loop's thread; only a probe request and a failure's or probe's
report go to the executor.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
import threading
from typing import Any, Awaitable, Callable, Optional

_HAS_TIMEOUT_CM = sys.version_info >= (3, 11)


def is_async_callable(func: Any) -> bool:
    """``True`` for an ``async def`` function, including one wrapped in
    :func:`functools.partial`, a bound method, or an object whose
    ``__call__`` is ``async def``."""
    while isinstance(func, functools.partial):
        func = func.func
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(type(func), "__call__", None)
    return call is not None and not inspect.isfunction(func) and inspect.iscoroutinefunction(call)


def wrap_async(execute: Callable[..., Awaitable[Any]], func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``func`` (an ``async def`` function) protected by a pattern whose
    ``execute`` is given: still an ``async def`` function."""

    @functools.wraps(func)
    async def protected(*args: Any, **kwargs: Any) -> Any:
        return await execute(func, *args, **kwargs)

    return protected


async def retry_call(call: Any, awaitable: Any, func: Any, args: tuple, kwargs: Any) -> Any:
    """The rest of a ``Retry.execute`` whose first attempt returned
    ``awaitable``: sleeps between attempts with ``asyncio.sleep``."""
    if kwargs is None:
        kwargs = {}
    while True:
        try:
            if awaitable is None:
                awaitable = func(*args, **kwargs)
            result = await awaitable
        except BaseException as exc:
            # An interruption (not an `Exception`) is never retried and
            # `failed` counts it as no outcome.
            delay = call.failed(exc)
            if delay is None:
                raise
        else:
            call.succeeded()
            return result
        # Outside the handler: a later failure is not chained to this one.
        awaitable = None
        try:
            await asyncio.sleep(delay)
        except BaseException:
            call.interrupted()
            raise
        call.resume()


async def timeout_call(timeout: Any, awaitable: Any, seconds: float) -> Any:
    """Awaits ``awaitable`` for at most ``seconds``; on time, the task is
    cancelled where it waits and ``stockade.TimeoutError`` is raised (the
    cancellation is not leaked to the caller)."""
    if _HAS_TIMEOUT_CM:
        scope = asyncio.timeout(seconds)
        try:
            async with scope:
                result = await awaitable
        except TimeoutError:
            if scope.expired():
                raise timeout._timed_out(seconds) from None
            timeout._failed()
            raise
        except BaseException as e:
            if _outcome_of(e) is None:
                timeout._interrupted()
            else:
                timeout._failed()
            raise
    else:  # 3.9, 3.10: wait_for runs it in a task of its own
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            result = await asyncio.wait_for(awaitable, seconds)
        except asyncio.TimeoutError:
            if loop.time() >= deadline:
                raise timeout._timed_out(seconds) from None
            timeout._failed()
            raise
        except BaseException as e:
            if _outcome_of(e) is None:
                timeout._interrupted()
            else:
                timeout._failed()
            raise
    timeout._succeeded()
    return result


async def ready(value: Any) -> Any:
    """An awaitable that is already done (``__aenter__``/``__aexit__`` of
    patterns that never wait)."""
    return value


class Waiters:
    """The futures of coroutines waiting on one pattern, so that
    ``dispose()`` (from any thread) can wake them through their loops."""

    __slots__ = ("_lock", "_futures")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: "set[asyncio.Future[Any]]" = set()

    def future(self) -> "asyncio.Future[Any]":
        fut = asyncio.get_running_loop().create_future()
        with self._lock:
            self._futures.add(fut)
        return fut

    def discard(self, fut: "asyncio.Future[Any]") -> None:
        with self._lock:
            self._futures.discard(fut)

    def wake_all(self, exc: BaseException) -> None:
        with self._lock:
            futures, self._futures = self._futures, set()
        for fut in futures:
            try:
                fut.get_loop().call_soon_threadsafe(_fail, fut, exc)
            except RuntimeError:  # its loop is closed
                pass


def _fail(fut: "asyncio.Future[Any]", exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def _succeed(fut: "asyncio.Future[Any]") -> None:
    if not fut.done():
        fut.set_result(None)


async def _sleep(waiters: Waiters, seconds: float) -> None:
    """``asyncio.sleep(seconds)`` that ``dispose()`` can interrupt."""
    fut = waiters.future()
    handle = fut.get_loop().call_later(seconds, _succeed, fut)
    try:
        await fut
    finally:
        handle.cancel()
        waiters.discard(fut)


async def limiter_call(booking: Any, waiters: Waiters, wait: float, func: Any, args: Any, kwargs: Any, value: Any) -> Any:
    """Sleeps a rate limiter's booking with asyncio, then calls ``func``
    (or returns ``value``). Cancelled or disposed while sleeping: the
    booking is handed back."""
    try:
        await _sleep(waiters, wait)
    except BaseException:
        booking.cancel()
        raise
    booking.ready()
    if func is None:
        return value
    return await func(*args, **(kwargs or {}))


def new_future() -> "asyncio.Future[Any]":
    return asyncio.get_running_loop().create_future()


def resolve(fut: "asyncio.Future[Any]", exc: Any) -> bool:
    """From any thread: completes ``fut`` in its own loop (with ``exc`` if
    given); ``False`` if that loop is closed."""
    try:
        if exc is None:
            fut.get_loop().call_soon_threadsafe(_succeed, fut)
        else:
            fut.get_loop().call_soon_threadsafe(_fail, fut, exc)
        return True
    except RuntimeError:
        return False


class _QueueTimedOut(Exception):
    pass


async def _bulkhead_poll(bulkhead: Any, timeout: float, place: Any) -> Any:
    """Takes a permit of a bulkhead shared between processes: polls every
    50 µs, doubling to 1 ms (a permit freed in another process wakes no
    future here), holding a place among the host's waiters."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    delay = 0.00005
    try:
        while True:
            permit = bulkhead._poll(place)
            if permit is not None:
                return permit
            waited = loop.time() - start
            if waited >= timeout:
                bulkhead._poll_timed_out(waited)  # raises QueueTimeoutError
            await asyncio.sleep(min(delay, timeout - waited))
            delay = min(delay * 2, 0.001)
    finally:
        bulkhead._leave(place)


def _outcome_of(exc: BaseException) -> Optional[bool]:
    """A failure (``False``) for an ``Exception``; ``None`` (no outcome: an
    interruption) for any other ``BaseException``."""
    return False if isinstance(exc, Exception) else None


async def _bulkhead_permit(bulkhead: Any, timeout: float) -> Any:
    """Takes a bulkhead permit, waiting in its FIFO on a future."""
    got = bulkhead._acquire()
    if getattr(got, "polls", False):
        return await _bulkhead_poll(bulkhead, timeout, got)
    future = getattr(got, "future", None)
    if future is None:  # a permit at once
        return got
    loop = future.get_loop()
    start = loop.time()
    handle = loop.call_later(timeout, _fail, future, _QueueTimedOut())
    timed_out = False
    try:
        await future
    except _QueueTimedOut:
        timed_out = True
    except BaseException:  # cancelled, or disposed
        bulkhead._abandon(got)
        raise
    finally:
        handle.cancel()
    if timed_out:
        return bulkhead._timed_out(got, loop.time() - start)
    return bulkhead._granted(got)


async def bulkhead_call(bulkhead: Any, timeout: float, func: Any, args: Any, kwargs: Any, value: Any) -> Any:
    """A bulkhead call of an ``async def`` function that had to queue (or
    ``async with``: ``func`` is ``None``, the permit stays held until
    ``__aexit__`` and ``value`` is returned)."""
    permit = await _bulkhead_permit(bulkhead, timeout)
    if func is None:
        bulkhead._enter(permit)
        return value
    outcome: Optional[bool] = False
    try:
        result = await func(*args, **(kwargs or {}))
        outcome = True
        return result
    except BaseException as e:
        outcome = _outcome_of(e)
        raise
    finally:
        bulkhead._release(permit, outcome)


async def bulkhead_hold(bulkhead: Any, timeout: float, awaitable: Any) -> Any:
    """A bulkhead call of an ``async def`` function whose coroutine exists
    already: takes the permit when it starts, gives it back when it ends."""
    try:
        permit = await _bulkhead_permit(bulkhead, timeout)
    except BaseException:
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()
        raise
    outcome: Optional[bool] = False
    try:
        result = await awaitable
        outcome = True
        return result
    except BaseException as e:
        outcome = _outcome_of(e)
        raise
    finally:
        bulkhead._release(permit, outcome)


async def _taken_off_loop(take: Any, give_back: Any) -> Any:
    """``take()`` on the loop's default executor, awaited. If the awaiting
    coroutine is cancelled first, whatever ``take()`` returns later is
    handed to ``give_back`` in that executor thread (or, when it arrived
    just before the cancellation, in a thread of its own): never on the
    loop's thread, never lost."""
    lock = threading.Lock()
    state: "dict[str, Any]" = {"abandoned": False, "got": None}

    def run() -> Any:
        got = take()
        with lock:
            abandoned = state["abandoned"]
            if not abandoned:
                state["got"] = got
        if abandoned:
            give_back(got)
            return None
        return got

    fut = asyncio.get_running_loop().run_in_executor(None, run)
    try:
        return await asyncio.shield(fut)
    except BaseException:
        with lock:
            state["abandoned"] = True
            got, state["got"] = state["got"], None
        if got is not None:
            threading.Thread(target=give_back, args=(got,), daemon=True).start()
        raise


async def _permit_off_loop(bulkhead: Any) -> Any:
    """A Redis-backed bulkhead's permit, waited for on the loop's default
    executor; a permit granted after the coroutine gave up is given back."""
    return await _taken_off_loop(bulkhead._acquire_blocking, lambda permit: bulkhead._release(permit, None))


async def release_off_loop(bulkhead: Any, permit: Any, outcome: Optional[bool], value: Any = False) -> Any:
    """Gives a Redis-backed bulkhead's permit back on the loop's default
    executor (a round trip). Cancelled meanwhile: the release still
    completes there."""
    fut = asyncio.get_running_loop().run_in_executor(None, bulkhead._release, permit, outcome)
    await asyncio.shield(fut)
    return value


async def bulkhead_off_loop(bulkhead: Any, func: Any, args: Any, kwargs: Any, value: Any) -> Any:
    """A Redis-backed bulkhead's call of an ``async def`` function (or
    ``async with``: ``func`` is ``None``, the permit stays held until
    ``__aexit__`` and ``value`` is returned). ``func`` may also be an
    awaitable that exists already (its coroutine is closed if no permit
    comes)."""
    try:
        permit = await _permit_off_loop(bulkhead)
    except BaseException:
        close = getattr(func, "close", None)
        if close is not None and inspect.isawaitable(func):
            close()
        raise
    if func is None:
        bulkhead._enter(permit)
        return value
    outcome: Optional[bool] = False
    try:
        if inspect.isawaitable(func):
            result = await func
        else:
            result = await func(*args, **(kwargs or {}))
        outcome = True
        return result
    except BaseException as e:
        outcome = _outcome_of(e)
        raise
    finally:
        await release_off_loop(bulkhead, permit, outcome)


def _ignore(call: Any) -> None:
    """Reports no outcome for an admitted breaker call (a probe's is a
    round trip: never on the loop's thread)."""
    call.finish(None)


async def _breaker_admit(breaker: Any) -> Any:
    """Admits a call of a Redis-backed breaker: here when that needs no
    round trip (a closed breaker), else on the loop's default executor (a
    probe request); a call admitted after the coroutine gave up reports no
    outcome."""
    call = breaker._admit_now()
    if call is None:
        call = await _taken_off_loop(breaker._admit_blocking, _ignore)
    return call


async def breaker_finish_off_loop(call: Any, verdict: Optional[bool], exc: Optional[BaseException] = None) -> bool:
    """Gives a Redis-backed breaker's call its verdict on the loop's
    default executor (a failure's or a probe's report is a round trip);
    cancelled meanwhile, it still completes there. Then raises ``exc`` if
    given (``async with``'s ``exclude`` check failed)."""
    fut = asyncio.get_running_loop().run_in_executor(None, call.finish, verdict)
    await asyncio.shield(fut)
    if exc is not None:
        raise exc
    return False


async def _breaker_finish(call: Any, verdict: Optional[bool]) -> None:
    """The verdict: here when that needs no round trip, else off the loop."""
    if not call._finish_now(verdict):
        await breaker_finish_off_loop(call, verdict)


async def breaker_enter_off_loop(breaker: Any) -> Any:
    """``async with`` a Redis-backed breaker whose admission is a round
    trip: the call stays admitted until ``__aexit__``."""
    call = await _taken_off_loop(breaker._admit_blocking, _ignore)
    breaker._enter_call(call)
    return breaker


async def breaker_off_loop(breaker: Any, func: Any, args: Any, kwargs: Any, call: Any = None) -> Any:
    """A Redis-backed breaker's call of an ``async def`` function (or of an
    awaitable that exists already: ``args`` is ``None``; ``call`` is its
    admission when it was admitted already). Cancelled: no outcome."""
    if call is None:
        try:
            call = await _breaker_admit(breaker)
        except BaseException:
            if args is None and inspect.iscoroutine(func):
                func.close()
            raise
    verdict: Optional[bool] = None
    try:
        if args is None:
            result = await func
        else:
            result = await func(*args, **(kwargs or {}))
        verdict = True
        breaker._succeeded()
        return result
    except BaseException as e:
        # A failure if the `exclude` check itself raises (as with `with`).
        verdict = _outcome_of(e)
        verdict = breaker._verdict_of(e)
        raise
    finally:
        await _breaker_finish(call, verdict)


def _hand_back(booking: Any) -> None:
    """Hands a rate limiter's booking back (a round trip), in a thread of
    its own: never on the loop's thread, whatever the executor's state."""
    threading.Thread(target=booking.cancel, daemon=True).start()


async def fleet_limiter_call(limiter: Any, waiters: Waiters, func: Any, args: Any, kwargs: Any, value: Any) -> Any:
    """A Redis-backed rate limiter's call: books a slot in Redis on the
    loop's default executor, sleeps it with asyncio, then awaits
    ``func(*args, **kwargs)`` (or returns ``value``: ``async with``).
    Cancelled or disposed meanwhile: the booking is handed back (off the
    loop)."""
    booking = await _taken_off_loop(limiter._fleet_book, lambda b: b.cancel())
    if booking.wait > 0:
        try:
            await _sleep(waiters, booking.wait)
        except BaseException:
            _hand_back(booking)
            raise
    booking.ready()
    if func is None:
        return value
    return await func(*args, **(kwargs or {}))
