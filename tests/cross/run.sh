#!/usr/bin/env bash
# Across languages: a Python app's 8 forked workers (`shared=`) and a C
# program (`stockade_limiter_handle_new_shared`) share one strict limit, and
# each side refuses the other's different config, naming both. Then the
# same through Redis: Python processes (`redis=`) and a C program
# (`stockade_limiter_handle_new_redis`) share one limit through one URL, of
# a redis-server this script starts on a free loopback port and kills.
# Called by scripts/test.sh after the Python package and the C library are
# built.
#
# Usage: tests/cross/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

python=$(ls target/py-venv-*/bin/python 2>/dev/null | head -n 1 || true)
[ -x "$python" ] || { echo "no Python virtualenv: run python/run-tests.sh first" >&2; exit 1; }
cargo build -p stockade-ffi --locked >/dev/null
build=target/cross-tests
mkdir -p "$build"
${CC:-cc} -std=c99 -Wall -Wextra -Werror -Iinclude tests/cross/payments.c -Ltarget/debug -lstockade \
    -Wl,-rpath,"$PWD/target/debug" -o "$build/payments"
${CC:-cc} -std=c99 -Wall -Wextra -Werror -Iinclude tests/cross/payments_redis.c -Ltarget/debug -lstockade \
    -Wl,-rpath,"$PWD/target/debug" -o "$build/payments_redis"

dir=$(mktemp -d /dev/shm/stockade-cross.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$dir"' EXIT
passed=0 failed=0
# expect <name> <what was seen> <command...>: counts the command's verdict.
expect() {
    local name=$1 seen=$2
    shift 2
    if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAILED: $name: $seen"; fi
}
now_ns() { "$python" -c 'import time; print(time.monotonic_ns())'; }

# 20 per 100 ms, strict: one permit per 5 ms host-wide.
n=20 period_ms=100 run_s=2
start=$(( $(now_ns) + 700000000 ))
end=$(( start + run_s * 1000000000 ))
timeout 60 "$build/payments" "$dir" $n $period_ms $start $end >"$build/c.out" &
c_pid=$!
timeout 60 "$python" tests/cross/payments.py "$dir" $n 0.1 $start $end 8 >"$build/py.out"
wait $c_pid
c=$(cat "$build/c.out") py=$(cat "$build/py.out")
ideal=$(( run_s * 1000 * n / period_ms ))
total=$(( c + py ))
echo "C got $c, 8 Python workers got $py: $total of an ideal $ideal"
expect "both languages get permits" "C $c, Python $py" test "$c" -gt 0 -a "$py" -gt 0
expect "one limit for both (at most $ideal + 2)" "$total" test "$total" -le $(( ideal + 2 ))
expect "the limit is used (at least 90 %)" "$total" test $(( total * 100 )) -ge $(( ideal * 90 ))

# Another config: refused on both sides, naming both.
names_both() { [[ $1 == $2*"requests_per_period: 20"*"requests_per_period: $3"* ]]; }
out=$("$build/payments" "$dir" 21 $period_ms 0 0)
expect "C refuses the shared limiter with another config, naming both" "$out" names_both "$out" CONFIG_MISMATCH 21
out=$("$python" tests/cross/payments.py "$dir" 22 0.1 0 0 0)
expect "Python refuses it too" "$out" names_both "$out" ConfigError: 22

# Through Redis: a limit of 40 per hour (nothing refills during the test).
# C tries 20 times, 3 Python processes 10 times each, all at once: 50 tries
# for 40 permits, so a shared limit grants exactly 40 (separate limits
# would grant all 50), C at least 10 and Python at least 20.
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pidfile=$PWD/$build/redis.pid
rm -f "$pidfile"
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$pidfile" --logfile '' --loglevel warning >/dev/null
trap '[ -s "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null; rm -rf "$dir" "$pidfile"' EXIT
up=0
for _ in $(seq 1 1000); do
    if [ -s "$pidfile" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
    sleep 0.01
done
[ "$up" = 1 ] || { echo "redis-server did not listen on port $port within 10 s" >&2; exit 1; }
url=redis://127.0.0.1:$port/0
timeout 60 "$build/payments_redis" "$url" 40 20 >"$build/c_redis.out" &
c_pid=$!
timeout 60 "$python" tests/cross/payments_redis.py "$url" 40 10 3 >"$build/py_redis.out"
wait $c_pid
c=$(cat "$build/c_redis.out") py=$(cat "$build/py_redis.out")
echo "through Redis: C got $c, 3 Python processes got $py, of 40"
expect "through Redis, C gets at least the 10 Python cannot take" "C $c" test "$c" -ge 10
expect "through Redis, Python gets at least the 20 C cannot take" "Python $py" test "$py" -ge 20
expect "through Redis, one limit for both (exactly 40)" "$((c + py))" test $((c + py)) -eq 40
names_both_redis() { [[ $1 == $2*"requests_per_period=40"*"requests_per_period=$3"* ]]; }
out=$("$build/payments_redis" "$url" 41 1)
expect "C refuses the Redis limiter with another config, naming both" "$out" names_both_redis "$out" CONFIG_MISMATCH 41
out=$("$python" tests/cross/payments_redis.py "$url" 42 1 0)
expect "Python refuses it too" "$out" names_both_redis "$out" RedisConfigMismatchError: 42

echo "cross-language: $passed passed, $failed failed"
[ "$failed" = 0 ]
