import asyncio
import threading
import time

import pytest

import stockade
from stockade import Request, RequestResponsePattern, Response
from conftest import run


def test_the_specs_usage():
    pattern = RequestResponsePattern("myService", lambda request: Response(data=f"Success: {request.data['id']}", status=200))
    response = pattern.execute({"data": {"id": "123"}, "metadata": {"timeout": 5}})
    assert (response.status, response.data, response.ok) == (200, "Success: 123", True)
    assert response.correlation_id == "myService-1"
    assert pattern.execute(Request({"id": "7"})).correlation_id == "myService-2"


def test_plain_values_are_200_and_ids_are_kept():
    pattern = RequestResponsePattern("plain", lambda r: r.data * 2)
    r = pattern.execute(Request(21, {"correlation_id": "trace-7"}))
    assert (r.status, r.data, r.correlation_id) == (200, 42, "trace-7")


def test_handler_exception_is_a_500():
    def handler(r):
        raise ValueError("bad input")

    r = RequestResponsePattern("raises", handler).execute(Request(1))
    assert (r.status, r.error, r.data) == (500, "bad input", None)


def test_deadline_gives_504_on_time_while_the_handler_goes_on():
    done = threading.Event()

    def slow(r):
        time.sleep(0.3)
        done.set()
        return "late"

    pattern = RequestResponsePattern("slow-rr", slow)
    start = time.monotonic()
    r = pattern.execute({"data": None, "metadata": {"timeout": 0.05}})
    assert r.status == 504
    assert time.monotonic() - start < 0.25
    assert done.wait(5)
    assert pattern.metrics()["timeouts"] == 1


def test_default_timeout():
    pattern = RequestResponsePattern("default-t", lambda r: time.sleep(0.3), default_timeout=0.05)
    assert pattern.default_timeout == 0.05
    assert pattern.execute(Request()).status == 504
    with pytest.raises(ValueError, match="default_timeout"):
        RequestResponsePattern("bad", lambda r: None, default_timeout=-1)


def test_protection_statuses():
    breaker = stockade.CircuitBreaker("rr-breaker", failure_threshold=2)
    pattern = RequestResponsePattern("rr-protected", lambda r: Response(None, 503, error="upstream down"), protection=breaker)
    first = pattern.execute(Request())
    assert (first.status, first.error) == (503, "upstream down")  # the handler's own 5xx, counted by the breaker
    pattern.execute(Request())
    assert breaker.state == "open"
    refused = pattern.execute(Request())
    assert refused.status == 503 and refused.retry_after > 59

    limiter = stockade.RateLimiter("rr-limiter", requests_per_period=1, period=60, queue_timeout=0)
    limited = RequestResponsePattern("rr-limited", lambda r: "ok", protection=limiter)
    assert limited.execute(Request()).status == 200
    r = limited.execute(Request())
    assert r.status == 429 and r.retry_after > 59
    m = limited.metrics()
    assert (m["calls"], m["successes"], m["rejections"]) == (2, 1, 1)


def test_retries_that_run_out_keep_the_last_status():
    retry = stockade.Retry("rr-retry", initial_delay=0.001)
    pattern = RequestResponsePattern("rr-retried", lambda r: Response(None, 502, error="bad gateway"), protection=retry)
    r = pattern.execute(Request())
    assert r.status == 502
    assert r.error == "gave up after 3 attempts: bad gateway"


def test_async_handler():
    async def handler(r):
        await asyncio.sleep(0.001)
        return Response(r.data + 1, 201)

    pattern = RequestResponsePattern("async-rr", handler)

    async def main():
        ok = await pattern.execute(Request(1, timeout=1))
        async def sleepy(r):
            await asyncio.sleep(1)

        slow = RequestResponsePattern("async-slow", sleepy)
        late = await slow.execute({"data": None, "metadata": {"timeout": 0.02}})
        return ok, late

    ok, late = run(main())
    assert (ok.status, ok.data) == (201, 2)
    assert late.status == 504


def test_registry_and_dispose():
    pattern = RequestResponsePattern("registered-rr", lambda r: "ok")
    assert RequestResponsePattern.get_request_response("registered-rr") is pattern
    pattern.dispose()
    r = pattern.execute(Request())
    assert (r.status, r.error) == (503, "the pattern was disposed")
    with pytest.raises(KeyError):
        RequestResponsePattern.get_request_response("registered-rr")


def test_bad_requests():
    pattern = RequestResponsePattern("bad-req", lambda r: "ok")
    with pytest.raises(TypeError):
        pattern.execute(42)
    with pytest.raises(TypeError):
        pattern.execute({"payload": 1})


def test_busy_workers_give_503():
    release = threading.Event()
    pattern = RequestResponsePattern("rr-workers", lambda r: release.wait(5), max_workers=1)
    assert pattern.execute(Request(timeout=0.02)).status == 504  # still running on the one worker
    busy = pattern.execute(Request(timeout=0.02))
    assert busy.status == 503 and "busy" in busy.error
    release.set()
