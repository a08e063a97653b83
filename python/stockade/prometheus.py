"""Stockade's metrics for a Prometheus scrape, through ``prometheus_client``.

``prometheus_client`` is optional: ``pip install prometheus-client``. The
collector follows its custom-collector protocol (``collect()`` yields metric
families, read from the patterns' ``metrics()`` at scrape time, so a pattern
nobody scrapes costs nothing)::

    from prometheus_client import REGISTRY, generate_latest
    from stockade.prometheus import StockadeCollector

    REGISTRY.register(StockadeCollector())   # every registered pattern
    print(generate_latest().decode())

The names are those of the Rust crate's ``metrics`` feature (the table in
``docs/telemetry.md``), in Prometheus form: dots become underscores and a
counter's samples end in ``_total``:

==========================================  =======  ==========================================
metric                                      type     labels
==========================================  =======  ==========================================
``stockade_<pattern>_calls_total``          counter  ``stockade_pattern_name``, ``stockade_outcome``
``stockade_<pattern>_retries_total``        counter  ``stockade_pattern_name``
``stockade_<pattern>_in_flight``            gauge    ``stockade_pattern_name``
``stockade_<pattern>_queue_depth``          gauge    ``stockade_pattern_name``
``stockade_<pattern>_fallback_decisions_total``  counter  ``stockade_pattern_name``
``stockade_circuit_breaker_state``          gauge    ``stockade_pattern_name``, ``stockade_circuit_breaker_state``
``stockade_events_total``                   counter  ``stockade_pattern_type``, ``stockade_pattern_name``, ``stockade_event_kind``
``stockade_retry_delay``                    summary  ``stockade_pattern_name`` (``_count``, and ``_sum`` in seconds)
==========================================  =======  ==========================================

``<pattern>`` is the pattern's kind (``circuit_breaker``, ``rate_limiter``,
``bulkhead``, ``retry``, ``timeout``, ``request_response``);
``stockade_outcome`` is ``success``, ``failure``, ``rejected``, ``timeout``
or ``ignored`` (whatever ``calls`` holds beyond the other four: a
breaker's excluded exceptions, and a rate limiter's granted bookings, since
its ``metrics()`` count bookings rather than the function's outcome), so
the outcomes add up to the pattern's ``calls``. Fields a pattern's
``metrics()`` does not have are reported as 0. The state gauge is 1 for
the breaker's current state (``closed``, ``open``, ``half_open``,
``forced_open``, ``disabled``) and 0 for the others.

Events are counted as the Rust crate's ``telemetry::metrics::Collector``
counts them: from the moment a ``StockadeCollector`` is made until it is
closed (:meth:`StockadeCollector.close`) or garbage-collected, every event
a listener would see (``Event.kind``: ``state_changed``, ``rejected``,
``retry``, ...), of every pattern in the process (registered or not, made
before or after the collector), adds one to ``stockade_events_total``, and
each ``retry`` event's ``delay`` goes into ``stockade_retry_delay`` (a
summary of count and sum, the type Rust's ``metrics-exporter-prometheus``
gives the histogram by default, without quantiles). With no collector
alive nothing is counted and no event is built for counting. Counting
adds no listener to any pattern and calls no Python code: it runs in the
thread that caused the event, which already holds the GIL (a Redis-backed
pattern's store events are counted without attaching to the interpreter),
under a lock of its own held for one map update. ``"monitor"`` events
exist only while a breaker has a listener, as in Rust. The counts live as
long as the process (a disposed pattern's series keep their last values,
as a Rust exporter's do) and are shared by every collector. They are per
process: a forked worker starts with its parent's counts.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Dict, Iterable, Iterator, List, Tuple

from . import _stockade

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        SummaryMetricFamily,
    )
except ImportError as _missing:  # pragma: no cover - exercised without the package
    raise ImportError(
        "stockade.prometheus needs the prometheus_client package: "
        "pip install prometheus-client"
    ) from _missing

__all__ = ["StockadeCollector", "BREAKER_STATES", "OUTCOMES"]

#: The breaker states the state gauge reports, as ``stockade_circuit_breaker_state``.
BREAKER_STATES: Tuple[str, ...] = ("closed", "open", "half_open", "forced_open", "disabled")
#: The ``stockade_outcome`` label values of ``stockade_<pattern>_calls_total``.
OUTCOMES: Tuple[str, ...] = ("success", "failure", "rejected", "timeout", "ignored")

_NAME = "stockade_pattern_name"
_OUTCOME = "stockade_outcome"
_STATE = "stockade_circuit_breaker_state"
_TYPE = "stockade_pattern_type"
_KIND = "stockade_event_kind"


class StockadeCollector:
    """A ``prometheus_client`` collector of Stockade patterns.

    ``registered=True`` (the default) reports every registered pattern (every
    named pattern that is not disposed) as it is at each scrape; ``watch``
    adds patterns no registry knows (a disposed one keeps reporting its last
    counts until it is collected). A pattern registered and watched is
    reported once; two patterns of one kind with the same name share their
    series, and the one read last wins.

    Events of every pattern in the process are counted while the collector
    is alive (see the module's docs); the scrape shows every pattern's
    event series with ``registered=True``, only the watched patterns' with
    ``registered=False``.
    """

    def __init__(self, *, registered: bool = True) -> None:
        if not isinstance(registered, bool):
            raise TypeError(
                f"StockadeCollector: registered must be a bool, not {type(registered).__name__}"
            )
        self._registered = registered
        self._lock = threading.Lock()
        self._watched: List[Tuple[str, "weakref.ref[Any]"]] = []
        # Events are counted while this is open: closed by close(), or when
        # the collector is garbage-collected (it holds the only reference).
        self._counting = _stockade._EventCounting()

    def close(self) -> None:
        """Stops counting events for this collector (at once; idempotent).
        The counts so far stay, and ``collect`` still reports them and the
        snapshots; other live collectors keep counting."""
        self._counting.close()

    def watch(self, kind: str, pattern: Any) -> None:
        """Reports ``pattern`` (of kind ``kind``, e.g. ``"circuit_breaker"``)
        too, until it is garbage-collected. ``pattern`` needs a
        ``metrics()`` method returning the patterns' dict."""
        if not isinstance(kind, str) or not kind or not kind.replace("_", "").isalnum():
            raise ValueError(
                f"StockadeCollector.watch: kind must be a pattern kind such as "
                f"'circuit_breaker', not {kind!r}"
            )
        if not callable(getattr(pattern, "metrics", None)):
            raise TypeError(
                f"StockadeCollector.watch: {type(pattern).__name__} has no metrics() method"
            )
        with self._lock:
            self._watched.append((kind, weakref.ref(pattern)))

    def _instances(self) -> Iterator[Tuple[str, Any]]:
        seen = set()
        found: List[Tuple[str, Any]] = []
        if self._registered:
            for kind, _name, obj in _stockade._registered_instances():
                found.append((kind, obj))
        with self._lock:
            self._watched = [(k, ref) for k, ref in self._watched if ref() is not None]
            found.extend((k, ref()) for k, ref in self._watched)
        for kind, obj in found:
            if obj is None or id(obj) in seen:
                continue
            seen.add(id(obj))
            yield kind, obj

    def collect(self) -> Iterable[Any]:
        """The metric families, read from each pattern's ``metrics()`` now."""
        families: Dict[Tuple[str, str], Any] = {}

        def family(kind: str, suffix: str, make: Any, doc: str, labels: List[str]) -> Any:
            key = (kind, suffix)
            if key not in families:
                families[key] = make(f"stockade_{kind}_{suffix}", doc, labels=labels)
            return families[key]

        reported = set()
        for kind, obj in self._instances():
            m = obj.metrics()
            name = str(m.get("name", getattr(obj, "name", "")))
            reported.add((kind, name))

            def field(key: str, m: Dict[str, Any] = m) -> int:
                value = m.get(key, 0)
                return int(value) if isinstance(value, (int, float)) else 0

            known = field("successes") + field("failures") + field("rejections") + field("timeouts")
            calls = family(
                kind, "calls", CounterMetricFamily,
                f"Calls of a {kind} that finished, by outcome", [_NAME, _OUTCOME],
            )
            for outcome, value in zip(
                OUTCOMES,
                (
                    field("successes"),
                    field("failures"),
                    field("rejections"),
                    field("timeouts"),
                    max(field("calls") - known, 0),
                ),
            ):
                calls.add_metric([name, outcome], value)
            family(kind, "retries", CounterMetricFamily,
                   f"Retries a {kind} performed", [_NAME]).add_metric([name], field("retries"))
            family(kind, "in_flight", GaugeMetricFamily,
                   f"Calls a {kind} is running now", [_NAME]).add_metric([name], field("in_flight"))
            family(kind, "queue_depth", GaugeMetricFamily,
                   f"Callers waiting in a {kind}'s queue now",
                   [_NAME]).add_metric([name], field("queue_depth"))
            family(kind, "fallback_decisions", CounterMetricFamily,
                   f"Decisions a Redis-backed {kind} took under its fallback",
                   [_NAME]).add_metric([name], field("fallback_decisions"))
            state = m.get("state")
            if kind == "circuit_breaker" and isinstance(state, str):
                gauge = family(
                    kind, "state", GaugeMetricFamily,
                    "1 for the circuit breaker's current state, 0 for the others", [_NAME, _STATE],
                )
                for s in BREAKER_STATES:
                    gauge.add_metric([name, s], 1 if s == state else 0)

        def shown(kind: str, name: str) -> bool:
            return self._registered or (kind, name) in reported

        events = CounterMetricFamily(
            "stockade_events", "Events the patterns emitted, by kind", labels=[_TYPE, _NAME, _KIND]
        )
        for pattern, name, kind, count in sorted(_stockade._event_counts()):
            if shown(pattern, name):
                events.add_metric([pattern, name, kind], count)
        delays = SummaryMetricFamily(
            "stockade_retry_delay", "The back-off before each retry", labels=[_NAME]
        )
        for name, count, total in sorted(_stockade._retry_delays()):
            if shown("retry", name):
                delays.add_metric([name], count_value=count, sum_value=total)
        return [*families.values(), events, delays]

    def describe(self) -> Iterable[Any]:
        """Nothing: the families depend on the patterns alive at scrape time
        (``prometheus_client`` then calls ``collect`` only when scraped)."""
        return []
