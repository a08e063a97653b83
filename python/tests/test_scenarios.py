"""Replays the cross-language scenario files (tests/scenarios/*.txt, format in
tests/scenarios/README.md) through ``stockade.machines``: every step's
decision must be the one the file states, as in the Rust replay
(core/tests/scenarios.rs) and the C one (tests/c/test_scenarios.c).

A mismatch fails with ``FILE:LINE: expected '...', got '...'``; every
mismatch of a file is listed."""

from __future__ import annotations

import datetime
import pathlib

import pytest

from stockade import machines

SCENARIOS = pathlib.Path(__file__).resolve().parents[2] / "tests" / "scenarios"
NS_PER_MS = 1_000_000

# Config keys that are not plain ints: milliseconds become timedeltas
# (exact), a few are floats or words.
FLOATS = {"ratio", "backoff_factor"}
WORDS = {"mode", "jitter"}


def options(config: dict) -> dict:
    out = {}
    for key, value in config.items():
        if key.endswith("_ms"):
            out[key[: -len("_ms")]] = datetime.timedelta(milliseconds=int(value))
        elif key in FLOATS:
            out[key] = float(value)
        elif key in WORDS:
            out[key] = value
        else:
            out[key] = int(value)
    return out


def build(pattern: str, config: dict):
    classes = {
        "breaker": machines.CircuitBreaker,
        "limiter": machines.RateLimiter,
        "bulkhead": machines.Bulkhead,
        "budget": machines.RetryBudget,
        "backoff": machines.Backoff,
    }
    if pattern not in classes:
        raise ValueError(f"unknown pattern {pattern!r}")
    return classes[pattern](**options(config))


def ms(ns):
    return "none" if ns is None else str(ns // NS_PER_MS)


def with_transition(word: str, t) -> str:
    return word if t is None else f"{word} transition={t.from_state}>{t.to_state}"


class Malformed(Exception):
    """The step itself is wrong (not a mismatch)."""


class Replay:
    def __init__(self, pattern: str, machine) -> None:
        self.pattern = pattern
        self.m = machine
        self.names: dict = {}

    def token(self, args):
        if not args or args[0] not in self.names:
            raise Malformed("wants a known token name")
        return self.names[args[0]]

    def step(self, now_ms: int, op: str, args: list, kv: dict) -> str:
        now = now_ms * NS_PER_MS
        m = self.m
        n = int(kv.get("n", 1))
        if self.pattern == "breaker":
            if op == "acquire":
                d = m.try_acquire(now)
                if d:
                    self.names[args[0]] = d.token
                    return with_transition("admitted", d.transition)
                return f"rejected {d.reason} retry_after_ms={ms(d.retry_after)}"
            if op == "report":
                token = self.token(args)
                try:
                    return with_transition("ok", m.report(token, args[1], now))
                except machines.TokenError as e:
                    return e.reason
            if op in ("trip", "reset", "force_open", "disable"):
                t = getattr(m, op)(now)
                return f"transition={t.from_state}>{t.to_state}"
            if op == "state":
                return m.state
            if op == "metrics":
                mt = m.metrics(now)
                keys = [
                    "generation",
                    "consecutive_failures",
                    "probes_in_flight",
                    "probe_successes",
                    "failures",
                    "slow_calls",
                    "rejections",
                    "transitions",
                    "state_changes",
                    "stale_verdicts",
                ]
                if mt["window_calls"] is not None:
                    keys += ["window_calls", "window_failures"]
                return " ".join(f"{k}={mt[k]}" for k in keys)
        elif self.pattern == "limiter":
            if op == "acquire":
                d = m.try_acquire(now, n)
                return "admitted" if d else _limiter_refusal(d)
            if op == "reserve":
                d = m.reserve(now, n, max_wait=int(kv["max_wait_ms"]) * NS_PER_MS)
                if d:
                    self.names[args[0]] = d.token
                    return f"booked wait_ms={ms(d.token.wait)}"
                return _limiter_refusal(d)
            if op == "cancel":
                try:
                    return f"cancelled {m.cancel(self.token(args), now)}"
                except machines.TokenError:
                    return "not_cancellable"
            if op == "available":
                return str(m.available(now))
            if op == "queue_depth":
                return str(m.queue_depth(now))
        elif self.pattern == "bulkhead":
            if op == "acquire":
                d = m.try_acquire()
                if d:
                    self.names[args[0]] = d.token
                    return "admitted"
                return d.reason
            if op == "release":
                try:
                    m.release(self.token(args))
                    return "ok"
                except machines.TokenError as e:
                    return e.reason
            if op == "counts":
                return f"in_use={m.in_use} available={m.available}"
        elif self.pattern == "budget":
            if op == "deposit":
                m.deposit(now)
                return "ok"
            if op == "withdraw":
                d = m.try_withdraw(now)
                return "admitted" if d else f"{d.reason} retry_after_ms={ms(d.retry_after)}"
            if op == "available":
                return str(m.available(now))
            if op == "reset":
                m.reset()
                return "ok"
        elif self.pattern == "backoff":
            if op == "delay":
                return ms(m.delay(int(kv["retry"])))
            if op == "schedule":
                self.names[args[0]] = (m.schedule(int(kv.get("seed", 0))), now_ms)
                return "ok"
            if op == "next":
                schedule, start_ms = self.token(args)
                delay = schedule.next_delay(max(now_ms - start_ms, 0) * NS_PER_MS)
                return "exhausted" if delay is None else f"delay_ms={ms(delay)}"
            if op == "attempts":
                schedule, _ = self.token(args)
                return str(schedule.attempts_made)
        raise Malformed(f"unknown {self.pattern} step {op!r}")


def _limiter_refusal(d) -> str:
    if d.reason == "exceeds_capacity":
        return "exceeds_capacity"
    return f"{d.reason} retry_after_ms={ms(d.retry_after)}"


def replay(name: str, text: str) -> list:
    """Replays one file; returns its mismatches (empty when it passes)."""
    pattern, pattern_line, config, steps = None, 0, {}, []
    failures = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "pattern" and len(words) == 2:
            pattern, pattern_line = words[1], lineno
        elif words[0] == "config":
            for w in words[1:]:
                key, sep, value = w.partition("=")
                if not sep:
                    failures.append(f"{name}:{lineno}: config wants key=value, got {w!r}")
                config[key] = value
        elif words[0] == "at" and "->" in words:
            arrow = words.index("->")
            if arrow < 3 or arrow + 1 == len(words) or not words[1].isdigit():
                failures.append(f"{name}:{lineno}: want 'at MS OP [ARGS] -> EXPECTED'")
                continue
            args = [w for w in words[3:arrow] if "=" not in w]
            kv = dict(w.split("=", 1) for w in words[3:arrow] if "=" in w)
            steps.append((lineno, int(words[1]), words[2], args, kv, " ".join(words[arrow + 1 :])))
        else:
            failures.append(f"{name}:{lineno}: unknown line")
    if pattern is None:
        return failures + [f"{name}: no 'pattern' line"]
    try:
        machine = build(pattern, config)
    except (TypeError, ValueError) as e:
        return failures + [f"{name}:{pattern_line}: {e}"]
    r = Replay(pattern, machine)
    for lineno, at_ms, op, args, kv, expected in steps:
        try:
            actual = r.step(at_ms, op, args, kv)
        except (Malformed, KeyError, IndexError) as e:
            failures.append(f"{name}:{lineno}: malformed step: {e!r}")
            continue
        if actual != expected:
            failures.append(f"{name}:{lineno}: expected {expected!r}, got {actual!r}")
    return failures


FILES = sorted(SCENARIOS.glob("*.txt"))


def test_the_scenario_files_are_there():
    assert len(FILES) >= 10, f"expected at least 10 scenario files in {SCENARIOS}"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_scenario_replays_with_the_stated_decisions(path):
    name = f"tests/scenarios/{path.name}"
    failures = replay(name, path.read_text())
    assert not failures, "\n".join(failures)


def test_a_wrong_expectation_is_reported_with_file_and_line():
    text = (
        "pattern breaker\nconfig failure_threshold=1 reset_timeout_ms=1000\n"
        "at 0 acquire p1 -> admitted\n"
        "at 0 report p1 failure -> ok\n"
    )
    assert replay("t.txt", text) == ["t.txt:4: expected 'ok', got 'ok transition=closed>open'"]
    failures = replay("c.txt", "pattern bulkhead\nconfig max_concurent=2\n")
    assert len(failures) == 1 and failures[0].startswith("c.txt:1: ") and "max_concurent" in failures[0]
