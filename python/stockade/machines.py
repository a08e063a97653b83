"""The core's state machines with explicit time: deterministic decisions.

``stockade.CircuitBreaker`` and the other patterns run on the process's
monotonic clock, wait, register names and emit events. The classes here
are the bare machines underneath, driven by the time you pass: nothing
reads a real clock, sleeps, blocks, registers or emits, so the same calls
with the same times always give the same decisions. Use them for
simulations, for tests that never sleep, and to drive a machine from a
clock or event loop of your own::

    from stockade import machines

    breaker = machines.CircuitBreaker(failure_threshold=1, reset_timeout=1.0)
    d = breaker.try_acquire(now=0)
    assert d.admitted
    breaker.report(d.token, "failure", now=0)      # the Transition closed -> open
    d = breaker.try_acquire(now=5_000_000)         # 5 ms later
    if not d:
        print(d.reason, d.retry_after)             # open 995000000 (ns)

**Units.** Every time passed to or returned by a method -- ``now``,
``elapsed``, ``max_wait``, ``retry_after``, a reservation's ``wait`` and
``ready_at``, a backoff delay -- is an ``int`` of nanoseconds on a clock
of your choosing (any origin, e.g. ``time.monotonic_ns()``), exact like
the core's arithmetic. Constructor options are seconds (``float``/``int``)
or ``datetime.timedelta``, as everywhere in the package. A clock that goes
back is read as "no time passed": nothing is admitted early.

**Decisions, not exceptions.** ``try_acquire``, ``reserve`` and
``try_withdraw`` return a :class:`Decision` (true when admitted; else
``reason`` and ``retry_after``). Invalid options and arguments raise
``stockade.ConfigError`` (a ``ValueError`` naming the option) or
``TypeError``; a token the machine cannot take back raises
:class:`TokenError`.

Tokens are plain data, as in the core: the rules for a token reported,
released or cancelled twice are the core's (``CircuitBreaker::report``,
``RateLimiter::cancel``, ``Bulkhead::release`` in the Rust docs). The
machines are safe to share between threads.

The scenario files of ``tests/scenarios`` are replayed through this module,
through the Rust core and through the C ABI with the same decisions.
"""

from __future__ import annotations

from ._stockade import machines as _native


class TokenError(ValueError):
    """A token was not taken back; ``reason`` says why: ``"stale"`` or
    ``"already_reported"`` (breaker report), ``"immediate"``, ``"ready"`` or
    ``"superseded"`` (limiter cancel), ``"not_held"`` (bulkhead release).
    Nothing changed."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


Decision = _native.Decision
Transition = _native.Transition
BreakerToken = _native.BreakerToken
CircuitBreaker = _native.CircuitBreaker
Reservation = _native.Reservation
RateLimiter = _native.RateLimiter
BulkheadToken = _native.BulkheadToken
Bulkhead = _native.Bulkhead
RetryBudget = _native.RetryBudget
Backoff = _native.Backoff
BackoffSchedule = _native.BackoffSchedule

__all__ = [
    "Backoff",
    "BackoffSchedule",
    "BreakerToken",
    "Bulkhead",
    "BulkheadToken",
    "CircuitBreaker",
    "Decision",
    "RateLimiter",
    "Reservation",
    "RetryBudget",
    "TokenError",
    "Transition",
]
