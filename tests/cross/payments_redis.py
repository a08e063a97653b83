"""The Python side of the cross-language Redis test (tests/cross/run.sh):
processes on the limiter "payments" that a C program shares through one
Redis server.

Usage: python payments_redis.py <url> <n> <tries> <workers>
A bursty limiter of <n> per hour (nothing refills during the test): each of
<workers> forked processes tries <tries> times to take one permit, never
waiting; prints the permits they got together. With <workers> = 0 it tries
once and prints "ok" or the RedisConfigMismatchError's message."""

import multiprocessing
import sys

import stockade


def open_limiter(url, n):
    options = stockade.RedisOptions(url, connect_timeout=2, command_timeout=2, fallback="closed")
    return stockade.RateLimiter("payments", requests_per_period=n, burst=n, period=3600,
                                queue_timeout=0, redis=options)


def worker(url, n, tries, out):
    try:
        limiter = open_limiter(url, n)
        out.put(sum(limiter.try_acquire() for _ in range(tries)))
    except BaseException as e:  # reported, so the parent does not wait for it
        out.put(f"{type(e).__name__}: {e}")
        raise


def main():
    url, n, tries, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if workers == 0:
        try:
            open_limiter(url, n).try_acquire()
            print("ok")
        except stockade.RedisConfigMismatchError as e:
            print(f"RedisConfigMismatchError: {e}")
        return
    # Forked before this process makes any Redis object.
    fork = multiprocessing.get_context("fork")
    out = fork.Queue()
    procs = [fork.Process(target=worker, args=(url, n, tries, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
        if p.is_alive():
            p.kill()
            sys.exit("a worker hangs")
    failed = [r for r in results if not isinstance(r, int)]
    if failed:
        sys.exit("a worker failed: %s" % failed[0])
    print(sum(results))


if __name__ == "__main__":
    main()
