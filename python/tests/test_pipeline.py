import asyncio
import inspect

import pytest

import stockade
from conftest import run


class Recorder:
    """A pattern written in Python: anything with execute(fn, *a, **kw)."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def execute(self, fn, *args, **kwargs):
        self.log.append(f"enter {self.name}")
        try:
            return fn(*args, **kwargs)
        finally:
            self.log.append(f"exit {self.name}")


def test_outermost_first():
    log = []
    p = stockade.pipeline(Recorder("a", log), Recorder("b", log))
    assert p.execute(lambda x: log.append(f"call {x}") or x, 7) == 7
    assert log == ["enter a", "enter b", "call 7", "exit b", "exit a"]
    assert len(p) == 2


def test_retry_around_a_failing_call():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("network error")
        return "ok"

    retry = stockade.Retry("p-retry", initial_delay=0.001)
    p = stockade.pipeline(retry)

    @p
    def protected():
        return flaky()

    assert protected() == "ok"
    assert len(calls) == 3
    assert protected.__name__ == "protected"


def test_async_retry_around_a_timeout_per_attempt():
    attempts = []

    async def slow_then_fast():
        attempts.append(1)
        await asyncio.sleep(10 if len(attempts) == 1 else 0)
        return "done"

    retry = stockade.Retry("p-aretry", initial_delay=0.001)
    timeout = stockade.Timeout("p-atimeout", timeout=0.05)
    p = stockade.pipeline(retry, timeout)

    @p
    async def call():
        return await slow_then_fast()

    assert inspect.iscoroutinefunction(call)
    assert run(call()) == "done"
    assert len(attempts) == 2
    assert timeout.metrics()["timeouts"] == 1


def test_empty_pipeline_just_calls():
    assert stockade.pipeline().execute(lambda a, b=0: a + b, 1, b=2) == 3


def test_pipelines_nest():
    log = []
    inner = stockade.pipeline(Recorder("b", log))
    outer = stockade.pipeline(Recorder("a", log), inner)
    outer.execute(lambda: None)
    assert log == ["enter a", "enter b", "exit b", "exit a"]
    assert outer.patterns[1] is inner


def test_not_a_pattern():
    with pytest.raises(TypeError, match="not a pattern"):
        stockade.pipeline(object())
