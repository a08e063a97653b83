#!/usr/bin/env bash
# Benchmarks the Python package against the libraries people would otherwise
# pick. Not a test: prints a Markdown table (python/bench/bench.py).
#
# Usage: python/bench/run.sh [bench.py args]     e.g. --quick
#        python/bench/run.sh --shared [shared.py args]
#            (one limiter shared by 8 processes against pyrate-limiter's
#            MultiprocessBucket; e.g. --quick, --processes 4)
#        python/bench/run.sh --redis [fleet.py args]
#            (the Redis-backed limiter and breaker against limits'
#            Redis strategies, pyrate-limiter's RedisBucket and pybreaker's
#            CircuitRedisStorage, on a redis-server the bench starts)
# The peers go into a virtualenv of their own (target/py-bench-venv-X.Y),
# never into the test one; stockade is installed with `pip install ./python`
# (maturin's default: the release profile).
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv=target/py-bench-venv-$version
if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
fi
"$venv/bin/python" -m pip install -q \
    pybreaker circuitbreaker tenacity pyrate-limiter "limits[redis]" aiobreaker aiolimiter redis
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps ./python
if [ "${1:-}" = --redis ]; then
    shift
    exec "$venv/bin/python" python/bench/fleet.py "$@"
fi
if [ "${1:-}" = --shared ]; then
    shift
    exec "$venv/bin/python" python/bench/shared.py "$@"
fi
exec "$venv/bin/python" python/bench/bench.py "$@"
