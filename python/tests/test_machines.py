"""stockade.machines: the core machines with explicit time. The decisions
themselves are replayed from tests/scenarios (test_scenarios.py); these
tests cover the Python surface: units, values, errors, stubs."""

from __future__ import annotations

import ast
import datetime
import pathlib
import textwrap
import threading

import pytest

import stockade
from stockade import machines

MS = 1_000_000
SEC = 1_000_000_000


def test_import_styles():
    import stockade.machines as m

    assert m is machines
    assert machines.CircuitBreaker.__module__ == "stockade.machines"
    assert set(machines.__all__) <= set(dir(machines))


def test_breaker_decisions_are_values_in_nanoseconds():
    b = machines.CircuitBreaker(failure_threshold=1, reset_timeout=1.5, half_open_timeout=0.5)
    d = b.try_acquire(0)
    assert d and d.admitted and d.reason is None and d.retry_after is None and d.transition is None
    assert isinstance(d.token, machines.BreakerToken) and d.token.started_at is None
    t = b.report(d.token, "failure", 0)
    assert (t.from_state, t.to_state, t.generation) == ("closed", "open", 1)
    assert t == machines.CircuitBreaker(failure_threshold=1).trip(0)
    assert repr(t) == "Transition(from_state='closed', to_state='open', generation=1)"
    d = b.try_acquire(250 * MS)
    assert not d and d.reason == "open" and d.retry_after == 1250 * MS and d.token is None
    assert repr(d) == "Decision(admitted=False, reason='open', retry_after=1250000000)"
    d = b.try_acquire(1500 * MS)
    assert d.transition.to_state == "half_open" and b.state == "half_open"
    b.force_open(1500 * MS)
    d = b.try_acquire(10 * SEC)
    assert d.reason == "forced_open" and d.retry_after is None


def test_breaker_token_errors_name_their_reason():
    b = machines.CircuitBreaker(failure_threshold=1, reset_timeout=1)
    token = b.try_acquire(0).token
    b.trip(0)
    with pytest.raises(machines.TokenError) as e:
        b.report(token, "failure", 0)
    assert e.value.reason == "stale" and isinstance(e.value, ValueError)
    assert b.state == "open"
    probe = b.try_acquire(SEC).token
    assert b.report(probe, "ignored", SEC) is None
    with pytest.raises(machines.TokenError) as e:
        b.report(probe, "success", SEC)
    assert e.value.reason == "already_reported"
    with pytest.raises(ValueError, match="outcome"):
        b.report(probe, "maybe", SEC)
    with pytest.raises(TypeError):
        b.report("not a token", "success", SEC)


def test_breaker_metrics_at_a_given_time():
    b = machines.CircuitBreaker(failure_threshold=1, reset_timeout=1)
    b.report(b.try_acquire(0).token, "failure", 7 * MS)
    assert not b.try_acquire(8 * MS)
    m = b.metrics(9 * MS)
    assert m["state"] == "open" and m["last_transition"] == 7 * MS
    assert (m["failures"], m["rejections"], m["transitions"], m["window_calls"]) == (1, 1, 1, None)
    windowed = machines.CircuitBreaker(failure_rate_threshold=50, failure_rate_window_size=4)
    windowed.report(windowed.try_acquire(0).token, "success", 0)
    assert (windowed.metrics(0)["window_calls"], windowed.metrics(0)["window_failures"]) == (1, 0)


def test_slow_call_threshold_measures_with_the_times_given():
    b = machines.CircuitBreaker(failure_threshold=1, slow_call_threshold=datetime.timedelta(milliseconds=100))
    token = b.try_acquire(5 * MS).token
    assert token.started_at == 5 * MS
    assert b.report(token, "success", 106 * MS).to_state == "open"


def test_limiter_reserve_and_cancel():
    lim = machines.RateLimiter(requests_per_period=10, period=1, burst=1, max_queue_size=5)
    assert lim.try_acquire(0)
    d = lim.try_acquire(0)
    assert d.reason == "rate_limited" and d.retry_after == 100 * MS
    d = lim.try_acquire(0, 2)
    assert d.reason == "exceeds_capacity" and d.retry_after is None
    r = lim.reserve(0, max_wait=SEC).token
    assert (r.permits, r.wait, r.ready_at) == (1, 100 * MS, 100 * MS)
    assert lim.queue_depth(0) == 1 and lim.available(0) == 0
    assert lim.reserve(0, max_wait=50 * MS).reason == "wait_too_long"
    assert lim.cancel(r, 10 * MS) == 1
    with pytest.raises(machines.TokenError) as e:
        lim.cancel(r, 10 * MS)
    assert e.value.reason == "superseded"


def test_bulkhead_budget_and_backoff():
    bh = machines.Bulkhead(max_concurrent=1)
    d = bh.try_acquire()
    assert d and d.token.in_use == 1 and bh.in_use == 1 and bh.available == 0
    assert bh.try_acquire().reason == "full"
    bh.release(d.token)
    with pytest.raises(machines.TokenError) as e:
        bh.release(d.token)
    assert e.value.reason == "not_held" and bh.in_use == 0

    budget = machines.RetryBudget(ratio=0, min_retries_per_second=10, max_tokens=1)
    assert budget.try_withdraw(0)
    d = budget.try_withdraw(0)
    assert d.reason == "exhausted" and d.retry_after == 100 * MS
    assert budget.available(100 * MS) == 1
    budget.reset()
    assert budget.available(0) == 1

    backoff = machines.Backoff(initial_delay=0.1, max_delay=1, max_attempts=3)
    assert [backoff.delay(n) for n in (1, 2, 5)] == [100 * MS, 200 * MS, SEC]
    s = backoff.schedule()
    assert s.next_delay(0) == 100 * MS and s.next_delay(SEC) == 200 * MS
    assert s.next_delay(2 * SEC) is None and s.is_exhausted and s.attempts_made == 3
    jittered = machines.Backoff(initial_delay=0.1, max_delay=1, max_attempts=5, jitter="full")
    first = [jittered.schedule(seed=9).next_delay(0) for _ in range(2)]
    assert first[0] == first[1] and 0 <= first[0] <= 100 * MS


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: machines.CircuitBreaker().try_acquire(-1), stockade.ConfigError, "now"),
        (lambda: machines.CircuitBreaker().try_acquire(2**64), stockade.ConfigError, "now"),
        (lambda: machines.CircuitBreaker().try_acquire(1.5), TypeError, "now"),
        (lambda: machines.CircuitBreaker().try_acquire(True), TypeError, "now"),
        (lambda: machines.CircuitBreaker(failure_threshold=0), stockade.ConfigError, "failure_threshold"),
        (lambda: machines.CircuitBreaker(reset_timeout=-1), stockade.ConfigError, "reset_timeout"),
        (lambda: machines.CircuitBreaker(failure_rate_window_size=4), stockade.ConfigError, "failure_rate"),
        (lambda: machines.RateLimiter(mode="fast"), stockade.ConfigError, "mode"),
        (lambda: machines.RateLimiter().try_acquire(0, -1), stockade.ConfigError, "n"),
        (lambda: machines.RateLimiter().reserve(0, max_wait=-5), stockade.ConfigError, "max_wait"),
        (lambda: machines.RateLimiter().reserve(0, max_wait=0.5), TypeError, "max_wait"),
        (lambda: machines.Bulkhead(max_concurrent=0), stockade.ConfigError, "max_concurrent"),
        (lambda: machines.RetryBudget(ratio=float("nan")), stockade.ConfigError, "ratio"),
        (lambda: machines.Backoff(backoff_factor=0.5), stockade.ConfigError, "backoff_factor"),
        (lambda: machines.Backoff(jitter="some"), stockade.ConfigError, "jitter"),
        (lambda: machines.Backoff().delay(-1), stockade.ConfigError, "retry"),
        (lambda: machines.Backoff().schedule(seed=-1), stockade.ConfigError, "seed"),
        (lambda: machines.Backoff().schedule().next_delay(-1), stockade.ConfigError, "elapsed"),
    ],
)
def test_bad_input_raises_a_typed_error_naming_it(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


def test_machines_are_shared_between_threads():
    lim = machines.RateLimiter(requests_per_period=100, period=1)
    granted = []

    def take():
        granted.append(sum(bool(lim.try_acquire(0)) for _ in range(50)))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert sum(granted) == 100  # exactly the burst on a frozen clock


def test_the_stub_names_what_the_module_has():
    stub = pathlib.Path(machines.__file__).with_suffix(".pyi")
    tree = ast.parse(stub.read_text())
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    assert set(classes) == set(machines.__all__)
    for name, node in classes.items():
        cls = getattr(machines, name)
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                assert hasattr(cls, item.name), f"{name}.{item.name} is in the stub only"
        public = {a for a in dir(cls) if not a.startswith("_")} - {"args", "with_traceback", "add_note"}
        stubbed = {i.name for i in node.body if isinstance(i, ast.FunctionDef)} | {
            i.target.id for i in node.body if isinstance(i, ast.AnnAssign)
        }
        assert public <= stubbed, f"{name}: {sorted(public - stubbed)} missing from the stub"


def _python_blocks(text: str):
    """The README's fenced python blocks and a docstring's indented
    literal blocks (after a line ending in '::') that use ``machines``."""
    blocks, block, fenced = [], None, False
    for line in text.splitlines():
        if block is None:
            if line.strip() == "```python":
                block, fenced = [], True
            elif line.rstrip().endswith("::"):
                block, fenced = [], False
        elif fenced and line.strip() == "```":
            blocks.append(block)
            block = None
        elif not fenced and line.strip() and not line.startswith(" "):
            blocks.append(block)
            block = None
        else:
            block.append(line)
    if block is not None:
        blocks.append(block)
    return ["\n".join(b) for b in blocks if any("machines." in line for line in b)]


def test_the_readme_and_module_examples_run(capsys):
    readme = pathlib.Path(__file__).resolve().parents[2] / "README.md"
    examples = _python_blocks(readme.read_text()) + _python_blocks(machines.__doc__)
    assert len(examples) == 2
    for code in examples:
        exec(compile(textwrap.dedent(code), "<example>", "exec"), {})
    assert capsys.readouterr().out == "open 995000000\n"
