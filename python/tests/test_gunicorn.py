"""A real prefork server: a WSGI app under gunicorn with 4 workers calls its
"upstream" only when a strict rate limiter allows. With shared=, the
upstream sees at most N calls in any window of one period, host-wide; with
a limiter per worker it sees up to 4 times that (the check fails, which
shows the check can fail).

The load is a bounded loopback generator (8 threads, 2 s)."""

import http.client
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="shared memory is Linux-only"),
    pytest.mark.skipif(shutil.which("gunicorn", path=os.path.dirname(sys.executable)) is None,
                       reason="gunicorn is not installed in this environment"),
]

N = 10
PERIOD = 0.2
WORKERS = 4
LOAD_SECONDS = 2.0
WATCHDOG = 60.0

APP = '''
import os, time, stockade

shared = os.environ["STOCKADE_TEST_SHARED"] or False
# Built before the fork (--preload): every worker inherits this object.
LIMIT = stockade.RateLimiter("upstream-quota", requests_per_period={n}, period={period},
                             mode="strict", queue_timeout=0, shared=shared)
LOG = os.environ["STOCKADE_TEST_LOG"]

def app(environ, start_response):
    before = time.monotonic_ns()
    if LIMIT.try_acquire():
        after = time.monotonic_ns()
        # The upstream call: one line per call, appended atomically.
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{{before}} {{after}}\\n".encode())
        finally:
            os.close(fd)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    start_response("429 Too Many Requests", [("Content-Type", "text/plain")])
    return [b"limited"]
'''.format(n=N, period=PERIOD)


def _serve(tmp_path, shared):
    (tmp_path / "app.py").write_text(APP)
    log = tmp_path / "upstream.log"
    env = dict(os.environ, STOCKADE_TEST_SHARED=shared, STOCKADE_TEST_LOG=str(log))
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    server = subprocess.Popen(
        [gunicorn, "--preload", "-w", str(WORKERS), "-b", "127.0.0.1:0", "--chdir", str(tmp_path),
         "--log-level", "info", "app:app"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    return server, log


def _port(server):
    """The port gunicorn bound, from its log ("Listening at: http://...")."""
    found = {}

    def read():
        for line in server.stderr:
            if "Listening at:" in line and "port" not in found:
                found["port"] = int(line.rsplit(":", 1)[1].split()[0].strip(" )"))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    deadline = time.monotonic() + WATCHDOG
    while "port" not in found:
        assert server.poll() is None, "gunicorn exited"
        assert time.monotonic() < deadline, "watchdog: gunicorn did not start"
        time.sleep(0.01)
    return found["port"], t


def _load(port):
    stop = time.monotonic() + LOAD_SECONDS
    counts = {"200": 0, "429": 0, "other": 0}
    lock = threading.Lock()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop:
            try:
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                key = str(r.status) if str(r.status) in counts else "other"
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                key = "other"
            with lock:
                counts[key] += 1
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WATCHDOG)
        assert not t.is_alive(), "watchdog: a load thread hangs"
    return counts


def _most_in_a_period(log):
    """The most upstream calls certainly inside one window of length PERIOD:
    each call's decision lies between its `before` and `after` stamps."""
    calls = sorted(tuple(map(int, line.split())) for line in log.read_text().splitlines())
    period = int(PERIOD * 1e9)
    most = 0
    for before, _ in calls:
        inside = sum(1 for b, a in calls if b >= before and a < before + period)
        most = max(most, inside)
    return most, len(calls)


def _run(tmp_path, shared):
    server, log = _serve(tmp_path, shared)
    reader = None
    try:
        port, reader = _port(server)
        # Wait for a worker to answer.
        deadline = time.monotonic() + WATCHDOG
        while True:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                probe.connect()
                break
            except OSError:
                assert time.monotonic() < deadline, "watchdog: no worker answers"
                time.sleep(0.01)
            finally:
                probe.close()
        counts = _load(port)
    finally:
        server.terminate()
        try:
            server.wait(WATCHDOG)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(WATCHDOG)
        if reader is not None:
            reader.join(WATCHDOG)  # gunicorn's stderr ends as it exits
        server.stderr.close()
    return counts, *_most_in_a_period(log)


def test_gunicorn_workers_share_one_limit(tmp_path):
    shm = tmp_path / "shm"
    shm.mkdir()
    counts, most, calls = _run(tmp_path, str(shm))
    assert counts["other"] == 0, counts
    assert counts["429"] > 0, counts  # the load exceeded the limit
    assert most <= N, f"{most} upstream calls in one period (limit {N})"
    ideal = LOAD_SECONDS / (PERIOD / N)
    assert calls >= 0.8 * ideal, f"{calls} upstream calls, ideal {ideal:.0f}"
    assert calls <= ideal + N, calls


def test_without_sharing_each_worker_has_its_own_limit(tmp_path):
    counts, most, calls = _run(tmp_path, "")
    assert counts["other"] == 0, counts
    # 4 workers, 4 limits: the upstream sees more than N in a period.
    assert most > N, f"only {most} in a period: the check could not tell"
