"""stockade.prometheus: the patterns' metrics in a real prometheus_client
scrape (generate_latest's text, parsed back)."""

import gc
import importlib
import pathlib
import re
import sys
import threading

import pytest

import stockade
from conftest import join_all, start_thread

# Installed by python/run-tests.sh: a missing package fails here, it is
# not skipped.
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stockade import _stockade
from stockade.prometheus import StockadeCollector


def scrape(collector):
    """{(sample name, frozenset of labels): value} and {family name: type}."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    samples, types = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"a series appears twice: {key}"
            samples[key] = s.value
    return samples, types


def value(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no series {key} in the scrape"
    return samples[key]


def test_breaker_counts_and_state_reach_the_scrape():
    b = stockade.CircuitBreaker("prom-breaker", failure_threshold=2)
    try:
        for _ in range(3):
            b.execute(lambda: None)
        for _ in range(2):
            with pytest.raises(ZeroDivisionError):
                b.execute(lambda: 1 / 0)
        with pytest.raises(stockade.CircuitOpenError):
            b.execute(lambda: None)
        samples, types = scrape(StockadeCollector())
        calls = "stockade_circuit_breaker_calls_total"

        def outcome(o):
            return value(samples, calls, stockade_pattern_name="prom-breaker", stockade_outcome=o)

        assert (outcome("success"), outcome("failure"), outcome("rejected")) == (3, 2, 1)
        assert outcome("ignored") == 0
        assert types["stockade_circuit_breaker_calls"] == "counter"

        def state(s):
            return value(
                samples,
                "stockade_circuit_breaker_state",
                stockade_pattern_name="prom-breaker",
                stockade_circuit_breaker_state=s,
            )

        assert state("open") == 1
        assert state("closed") == state("half_open") == 0
        assert types["stockade_circuit_breaker_state"] == "gauge"
    finally:
        b.dispose()
    # A disposed pattern leaves the registry, and the scrape.
    samples, _ = scrape(StockadeCollector())
    assert not any(
        dict(labels).get("stockade_pattern_name") == "prom-breaker" for _, labels in samples
    )


def test_limiter_and_bulkhead_gauges_follow_the_patterns():
    limiter = stockade.RateLimiter("prom-limiter", requests_per_period=2, period=3600)
    bulkhead = stockade.Bulkhead("prom-bulkhead", max_concurrent=1, max_queue=0)
    release = threading.Event()
    entered = threading.Event()
    t = start_thread(lambda: bulkhead.execute(lambda: (entered.set(), release.wait(10))))
    try:
        for _ in range(2):
            limiter.execute(lambda: None)
        with pytest.raises(stockade.RateLimitedError):
            limiter.execute(lambda: None)
        assert entered.wait(5)
        with pytest.raises(stockade.BulkheadFullError):
            bulkhead.execute(lambda: None)

        collector = StockadeCollector()
        samples, _ = scrape(collector)
        lim = dict(stockade_pattern_name="prom-limiter")
        # A Python limiter counts bookings, not the function's outcome: the
        # two granted ones are neither successes nor failures ("ignored").
        limiter_calls = "stockade_rate_limiter_calls_total"
        assert value(samples, limiter_calls, stockade_outcome="ignored", **lim) == 2
        assert value(samples, limiter_calls, stockade_outcome="success", **lim) == 0
        assert value(samples, limiter_calls, stockade_outcome="rejected", **lim) == 1
        bh = dict(stockade_pattern_name="prom-bulkhead")
        assert value(samples, "stockade_bulkhead_in_flight", **bh) == 1
        assert value(samples, "stockade_bulkhead_calls_total", stockade_outcome="rejected", **bh) == 1

        release.set()
        join_all([t])
        samples, _ = scrape(collector)
        assert value(samples, "stockade_bulkhead_in_flight", **bh) == 0
        assert value(samples, "stockade_bulkhead_calls_total", stockade_outcome="success", **bh) == 1
    finally:
        release.set()
        join_all([t])
        limiter.dispose()
        bulkhead.dispose()


def test_watch_reports_a_pattern_once_and_only_watched_ones_without_the_registry():
    retry = stockade.Retry("prom-retry", max_attempts=3, initial_delay=0.001)
    other = stockade.Retry("prom-other", max_attempts=1)
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("flaky")
        return "ok"

    try:
        assert retry.execute(flaky) == "ok"
        collector = StockadeCollector(registered=False)
        collector.watch("retry", retry)
        collector.watch("retry", retry)  # once in the scrape all the same
        samples, _ = scrape(collector)
        assert value(samples, "stockade_retry_retries_total", stockade_pattern_name="prom-retry") == 2
        names = {dict(labels).get("stockade_pattern_name") for _, labels in samples}
        assert names == {"prom-retry"}

        with pytest.raises(ValueError, match="kind"):
            collector.watch("circuit breaker", retry)
        with pytest.raises(TypeError, match="metrics"):
            collector.watch("retry", object())
        with pytest.raises(TypeError, match="registered"):
            StockadeCollector(registered="yes")
    finally:
        retry.dispose()
        other.dispose()


def events_of(samples, name):
    """{(pattern type, kind): count} of the pattern `name` in a scrape."""
    out = {}
    for (sample, labels), v in samples.items():
        labels = dict(labels)
        if sample == "stockade_events_total" and labels["stockade_pattern_name"] == name:
            out[(labels["stockade_pattern_type"], labels["stockade_event_kind"])] = v
    return out


def test_events_are_counted_as_rust_counts_them_for_patterns_made_after_the_collector():
    collector = StockadeCollector()
    # Made after the collector; no listener is added to any of them.
    b = stockade.CircuitBreaker("prom-ev-breaker", failure_threshold=1)
    retry = stockade.Retry("prom-ev-retry", max_attempts=3, initial_delay=0.001)
    fallback = stockade.Fallback("prom-ev-fallback", fallback="cached")
    delays = []
    retry.add_listener(lambda e: delays.append(e.delay) if e.kind == "retry" else None)
    try:
        with pytest.raises(ZeroDivisionError):
            b.execute(lambda: 1 / 0)
        for _ in range(2):
            with pytest.raises(stockade.CircuitOpenError):
                b.execute(lambda: None)
        attempts = []

        def flaky():
            attempts.append(1)
            if len(attempts) < 3:
                raise ConnectionError("flaky")
            return "ok"

        assert retry.execute(flaky) == "ok"
        assert fallback.execute(lambda: 1 / 0) == "cached"

        samples, types = scrape(collector)
        assert types["stockade_events"] == "counter"
        assert events_of(samples, "prom-ev-breaker") == {
            ("circuit_breaker", "state_changed"): 1,
            ("circuit_breaker", "rejected"): 2,
        }
        assert events_of(samples, "prom-ev-retry") == {("retry", "retry"): 2}
        assert events_of(samples, "prom-ev-fallback") == {("fallback", "fallback_used"): 1}
        # The retry delays, as the listener saw them.
        assert types["stockade_retry_delay"] == "summary"
        assert len(delays) == 2
        name = dict(stockade_pattern_name="prom-ev-retry")
        assert value(samples, "stockade_retry_delay_count", **name) == 2
        assert value(samples, "stockade_retry_delay_sum", **name) == pytest.approx(sum(delays))
    finally:
        b.dispose()
        retry.dispose()
        fallback.dispose()
    # Disposing is an event too; the series stay after the patterns left.
    samples, _ = scrape(collector)
    assert events_of(samples, "prom-ev-breaker")[("circuit_breaker", "disposed")] == 1
    assert events_of(samples, "prom-ev-retry")[("retry", "disposed")] == 1
    assert events_of(samples, "prom-ev-fallback")[("fallback", "disposed")] == 1


def test_events_are_counted_only_while_a_collector_is_alive():
    # No collector of another test is left alive (none leaks).
    gc.collect()
    assert not _stockade._counting_events()
    limiter = stockade.RateLimiter("prom-ev-alive", requests_per_period=1, period=3600)

    def rejected_once():
        with pytest.raises(stockade.RateLimitedError):
            limiter.execute(lambda: None)

    try:
        limiter.execute(lambda: None)
        first = StockadeCollector()
        assert _stockade._counting_events()
        rejected_once()  # counted
        del first  # garbage: counting stops
        gc.collect()
        assert not _stockade._counting_events()
        rejected_once()  # not counted
        second = StockadeCollector()
        rejected_once()  # counted
        second.close()
        second.close()  # idempotent
        assert not _stockade._counting_events()
        rejected_once()  # not counted
        samples, _ = scrape(second)  # a closed collector still reports
        assert events_of(samples, "prom-ev-alive") == {("rate_limiter", "rejected"): 2}
        assert value(
            samples,
            "stockade_rate_limiter_calls_total",
            stockade_pattern_name="prom-ev-alive",
            stockade_outcome="rejected",
        ) == 4
        # Two collectors: counting goes on until the last one goes.
        a, b = StockadeCollector(), StockadeCollector()
        a.close()
        rejected_once()  # counted (b is alive)
        del b
        gc.collect()
        rejected_once()  # not counted
        samples, _ = scrape(a)
        assert events_of(samples, "prom-ev-alive") == {("rate_limiter", "rejected"): 3}
    finally:
        limiter.dispose()


def test_events_from_many_threads_are_all_counted():
    collector = StockadeCollector()
    limiter = stockade.RateLimiter("prom-ev-threads", requests_per_period=1, period=3600)
    threads_n, each = 8, 200
    start = threading.Barrier(threads_n)
    refused = []

    def hammer():
        start.wait(10)
        n = 0
        for _ in range(each):
            try:
                limiter.execute(lambda: None)
            except stockade.RateLimitedError:
                n += 1
        refused.append(n)

    try:
        join_all([start_thread(hammer) for _ in range(threads_n)], timeout=60)
        assert sum(refused) == threads_n * each - 1  # one booking was granted
        samples, _ = scrape(collector)
        assert events_of(samples, "prom-ev-threads") == {
            ("rate_limiter", "rejected"): threads_n * each - 1
        }
    finally:
        limiter.dispose()


def test_without_the_registry_only_watched_patterns_events_show():
    collector = StockadeCollector(registered=False)
    watched = stockade.Bulkhead("prom-ev-watched", max_concurrent=1, max_queue=0)
    other = stockade.Bulkhead("prom-ev-other", max_concurrent=1, max_queue=0)
    collector.watch("bulkhead", watched)
    try:
        for b in (watched, other):
            b.dispose()  # one "disposed" event each
        samples, _ = scrape(collector)
        assert events_of(samples, "prom-ev-watched") == {("bulkhead", "disposed"): 1}
        assert events_of(samples, "prom-ev-other") == {}
        # The registry-wide collector shows both.
        samples, _ = scrape(StockadeCollector())
        assert events_of(samples, "prom-ev-other") == {("bulkhead", "disposed"): 1}
    finally:
        watched.dispose()
        other.dispose()


DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "telemetry.md"


def documented_metrics():
    """The rows of docs/telemetry.md's metrics table that Python reports:
    (name, type, attribute names)."""
    rows, header = [], None
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if line.startswith("| metric | type |"):
            header = [c.strip() for c in line.strip("|").split("|")]
            continue
        if header is None:
            continue
        if not line.startswith("|"):
            break
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        if set(cells["metric"]) <= {"-", " "}:
            continue
        if not cells["Python"].startswith("yes"):
            continue
        attributes = re.findall(r"`([a-z_.]+)`", cells["attributes"])
        rows.append((cells["metric"].strip("`"), cells["type"], attributes))
    return rows


def test_the_scrape_has_every_metric_of_the_documented_table():
    rows = documented_metrics()
    assert len(rows) == 8, rows  # the table was found and read whole
    collector = StockadeCollector()
    b = stockade.CircuitBreaker("prom-docs", failure_threshold=1)
    retry = stockade.Retry("prom-docs", max_attempts=2, initial_delay=0.001)
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 2:
            raise ConnectionError("flaky")

    try:
        with pytest.raises(ZeroDivisionError):
            b.execute(lambda: 1 / 0)
        retry.execute(flaky)
        registry = CollectorRegistry()
        registry.register(collector)
        families = {
            f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
        }
        # Prometheus types: a histogram is a summary here (count and sum).
        types = {"counter": "counter", "gauge": "gauge", "histogram": "summary"}
        for name, kind, attributes in rows:
            pattern = "retry" if "retry" in name else "circuit_breaker"
            family = families[name.replace("<type>", pattern).replace(".", "_")]
            assert family.type == types[kind], name
            labels = {a.replace(".", "_") for a in attributes}
            ours = [s for s in family.samples if s.labels.get("stockade_pattern_name") == "prom-docs"]
            assert ours, f"no prom-docs sample of {name}"
            for sample in ours:
                assert set(sample.labels) == labels, (name, sample)
    finally:
        b.dispose()
        retry.dispose()


def test_count_event_refuses_unknown_names():
    with pytest.raises(ValueError, match="unknown event kind"):
        _stockade._count_event("fallback", "x", "no_such_kind")
    with pytest.raises(ValueError, match="unknown pattern"):
        _stockade._count_event("no_such_pattern", "x", "disposed")


def test_a_missing_prometheus_client_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "prometheus_client.core", None)
    monkeypatch.delitem(sys.modules, "stockade.prometheus")
    with pytest.raises(ImportError, match="pip install prometheus-client"):
        importlib.import_module("stockade.prometheus")
    # `import stockade` itself never needs it.
    assert "stockade" in sys.modules
