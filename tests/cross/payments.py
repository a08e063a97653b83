"""The Python side of the cross-language test (tests/cross/run.sh): workers
of a pre-forked app on the limiter "payments" that a C program shares.

Usage: python payments.py <dir> <n> <period_s> <start_ns> <end_ns> <workers>
prints the permits all workers got; with start_ns = 0 it only opens the
limiter and prints "ok" or the ConfigError's message."""

import multiprocessing
import sys
import time

import stockade


def open_limiter(directory, n, period):
    return stockade.RateLimiter("payments", requests_per_period=n, period=period,
                                mode="strict", shared=directory)


def worker(directory, n, period, start, end, out):
    limiter = open_limiter(directory, n, period)
    while time.monotonic_ns() < start:
        pass
    grants = 0
    while True:
        limiter.acquire()  # books a slot host-wide and sleeps until it
        if time.monotonic_ns() >= end:
            break
        grants += 1
    out.put(grants)


def main():
    directory, n, period = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    start, end, workers = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    if start == 0:
        try:
            open_limiter(directory, n, period)
            print("ok")
        except stockade.ConfigError as e:
            print(f"ConfigError: {e}")
        return
    fork = multiprocessing.get_context("fork")
    out = fork.Queue()
    procs = [fork.Process(target=worker, args=(directory, n, period, start, end, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(60)
        if p.is_alive():
            p.kill()
            sys.exit("a worker hangs")
    print(total)


if __name__ == "__main__":
    main()
