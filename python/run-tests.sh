#!/usr/bin/env bash
# Tests the Python package the way a user gets it: `pip install ./python`
# into a virtualenv of its own, then pytest.
#
# Usage: python/run-tests.sh [pytest args]
#   PYTHON=python3.9 python/run-tests.sh     another interpreter (>= 3.9)
#   STOCKADE_PY_PROFILE=release ...          optimised build (default: dev)
#
# The virtualenv (target/py-venv-X.Y) and the Rust build (target/, shared
# with the workspace) are kept, so a rerun only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv=target/py-venv-$version
if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
fi
# pytest, gunicorn for the prefork-server test (test_gunicorn.py),
# Hypothesis for the argument fuzzing (test_fuzz_arguments.py) and
# prometheus_client for stockade.prometheus (test_prometheus.py): a no-op
# when they are already there.
"$venv/bin/python" -m pip install -q "pytest>=7" "gunicorn>=21" "hypothesis>=6" "prometheus-client>=0.17"
# The PEP 517 build, as `pip install ./python` does it (maturin in an
# isolated build environment), with the Cargo profile chosen here.
MATURIN_PEP517_ARGS="--profile ${STOCKADE_PY_PROFILE:-dev}" \
    "$venv/bin/python" -m pip install -q --force-reinstall --no-deps ./python
exec "$venv/bin/python" -m pytest python/tests "$@"
