"""A real ``redis-server`` on a free loopback port for the Redis tests.

The binary is ``$STOCKADE_REDIS_SERVER`` or ``redis-server`` on the PATH
(``scripts/test.sh`` installs Debian's package when it is missing). A missing
binary fails the tests that need it: they never pass by skipping.
"""

import os
import socket
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """Started on construction; ``stop()`` (or the fixture) kills it."""

    def __init__(self):
        self.port = free_port()
        self.proc = None
        self.start()

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self):
        binary = os.environ.get("STOCKADE_REDIS_SERVER", "redis-server")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--loglevel", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("redis-server did not answer PING within 10 s")
            time.sleep(0.01)

    def kill(self):
        """``kill -9``."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart(self):
        assert self.proc is None, "restart a killed server only"
        self.start()

    def command(self, *args):
        """One command; the reply as text (arrays as lists)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            out = ["*%d\r\n" % len(args)]
            for a in args:
                a = str(a)
                out.append("$%d\r\n%s\r\n" % (len(a.encode()), a))
            s.sendall("".join(out).encode())
            return _read(s.makefile("rb"))


def _read(f):
    line = f.readline().rstrip(b"\r\n").decode()
    kind, rest = line[:1], line[1:]
    if kind == "+":
        return rest
    if kind == "-":
        raise RuntimeError(rest)
    if kind == ":":
        return int(rest)
    if kind == "$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:n]
        return data.decode()
    if kind == "*":
        n = int(rest)
        return None if n < 0 else [_read(f) for _ in range(n)]
    raise RuntimeError("unexpected reply %r" % line)
