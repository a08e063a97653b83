#!/usr/bin/env bash
# The C ABI's tests: header drift, C99/C++ compile checks, the C tests under
# AddressSanitizer+UBSan and under valgrind, the no-malloc core tier, the
# firmware (thumbv7em, no_std) static library and its .text size, the
# install script with pkg-config (and CMake when present), the README's C
# example, and the C++ wrappers. Called by scripts/test.sh.
#
# Usage: tests/c/run.sh                       (everything)
#        STOCKADE_UPDATE_HEADER=1 tests/c/run.sh   (rewrite include/stockade.h)
#        STOCKADE_SKIP_VALGRIND=1 ...          (skip the valgrind runs)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

step() { printf '\n==> c: %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

# System tools the tests need, installed with apt when missing (root only).
need() {
    local tool=$1 pkg=$2
    command -v "$tool" >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -qq "$pkg" >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null && apt-get install -y -qq "$pkg" >/dev/null; } || true
    fi
    command -v "$tool" >/dev/null || fail "$tool not installed (apt-get install $pkg)"
}
need cc gcc
need c++ g++
need pkg-config pkg-config
[ "${STOCKADE_SKIP_VALGRIND:-0}" = 1 ] || need valgrind valgrind
need redis-server redis-server
need python3 python3

CC=${CC:-cc}
CXX=${CXX:-c++}
CBINDGEN_VERSION=0.29.4
build=target/c-tests
mkdir -p "$build"

# Warnings are errors for every C and C++ file we compile.
CWARN=(-Wall -Wextra -Wpedantic -Werror)
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
# What a Rust staticlib with std needs from the system.
RUST_SYS_LIBS=(-lpthread -ldl -lm)

# ---------------------------------------------------------------------------
step "the library (debug, std: both tiers)"
cargo build -p stockade-ffi --locked
lib_a=target/debug/libstockade.a
lib_dir=target/debug

# ---------------------------------------------------------------------------
step "include/stockade.h matches cbindgen $CBINDGEN_VERSION's output"
tools=target/tools
cbindgen=$tools/bin/cbindgen
if ! [ -x "$cbindgen" ] || ! "$cbindgen" --version | grep -qx "cbindgen $CBINDGEN_VERSION"; then
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --root "$tools"
fi
"$cbindgen" --quiet --config ffi/cbindgen.toml --crate stockade-ffi --output "$build/stockade.h" ffi
if [ "${STOCKADE_UPDATE_HEADER:-0}" = 1 ]; then
    cp "$build/stockade.h" include/stockade.h
    echo "include/stockade.h rewritten"
fi
diff -u include/stockade.h "$build/stockade.h" ||
    fail "include/stockade.h is stale: run STOCKADE_UPDATE_HEADER=1 tests/c/run.sh and commit it"

# ---------------------------------------------------------------------------
step "the headers compile cleanly as C99, C11 and C++"
printf '#include "stockade.h"\nint main(void) { return stockade_status_str(0)[0] == 0; }\n' >"$build/hdr.c"
$CC -std=c99 "${CWARN[@]}" -Iinclude -c "$build/hdr.c" -o "$build/hdr99.o"
$CC -std=c11 "${CWARN[@]}" -Iinclude -c "$build/hdr.c" -o "$build/hdr11.o"
$CC -std=c99 "${CWARN[@]}" -DSTOCKADE_CORE_ONLY -Iinclude -c "$build/hdr.c" -o "$build/hdr_core.o"
cp "$build/hdr.c" "$build/hdr.cpp"
$CXX -std=c++11 "${CWARN[@]}" -Iinclude -c "$build/hdr.cpp" -o "$build/hdrxx.o"
if [ -f include/stockade.hpp ]; then
    printf '#include "stockade.hpp"\nint main() { return 0; }\n' >"$build/hpp.cpp"
    $CXX -std=c++17 "${CWARN[@]}" -Iinclude -c "$build/hpp.cpp" -o "$build/hpp.o"
fi

# ---------------------------------------------------------------------------
# Every exported function is called by some test (names from the header).
step "every exported function is exercised by a C test"
missing=0
for fn in $(grep -oE '\bstockade_[a-z0-9_]+\(' include/stockade.h | tr -d '(' | sort -u); do
    if ! grep -qE "\\b$fn\\b" tests/c/*.c tests/c/*.cpp 2>/dev/null; then
        echo "not exercised: $fn"
        missing=1
    fi
done
[ "$missing" = 0 ] || fail "some exported functions have no C test"

# run_c_test NAME COMMAND...: runs one C test. test_redis gets a
# redis-server of its own (it kills it): on a free loopback port, without
# persistence, its URL and pid in STOCKADE_TEST_REDIS_URL and
# STOCKADE_TEST_REDIS_PID, killed afterwards whatever happened. The server
# daemonizes (a pid file), so the shell reports nothing when the test
# kills it.
run_c_test() {
    local name=$1
    shift
    if [ "$name" != test_redis ]; then
        "$@"
        return
    fi
    local port pid="" rc=0 pidfile
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    pidfile=$PWD/$build/redis-$port.pid
    rm -f "$pidfile"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
        --pidfile "$pidfile" --logfile '' --loglevel warning >/dev/null
    for _ in $(seq 1 1000); do
        if [ -s "$pidfile" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            pid=$(cat "$pidfile")
            break
        fi
        sleep 0.01
    done
    if [ -n "$pid" ]; then
        STOCKADE_TEST_REDIS_URL="redis://127.0.0.1:$port/0" STOCKADE_TEST_REDIS_PID=$pid "$@" || rc=$?
        kill -9 "$pid" 2>/dev/null || true
    else
        echo "redis-server did not listen on port $port within 10 s" >&2
        [ -s "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null
        rc=1
    fi
    rm -f "$pidfile"
    return "$rc"
}

# ---------------------------------------------------------------------------
c_tests=()
for f in tests/c/test_*.c; do
    name=$(basename "$f" .c)
    [ "$name" = test_nomalloc ] && continue
    c_tests+=("$name")
done

step "C tests under AddressSanitizer + UBSan (static library)"
# LeakSanitizer needs ptrace, which some sandboxes forbid; where it cannot
# run, leaks are left to valgrind below.
asan_opts="detect_leaks=1:abort_on_error=1"
printf 'int main(void) { return 0; }\n' >"$build/lsan_probe.c"
$CC "${SAN[@]}" "$build/lsan_probe.c" -o "$build/lsan_probe"
if ! ASAN_OPTIONS=$asan_opts "$build/lsan_probe" >/dev/null 2>&1; then
    echo "LeakSanitizer cannot run here: ASAN_OPTIONS=detect_leaks=0 (valgrind checks leaks)"
    asan_opts="detect_leaks=0:abort_on_error=1"
fi
for t in "${c_tests[@]}"; do
    $CC -std=c99 "${CWARN[@]}" -g "${SAN[@]}" -Iinclude "tests/c/$t.c" "$lib_a" \
        "${RUST_SYS_LIBS[@]}" -o "$build/$t.asan"
    ASAN_OPTIONS=$asan_opts UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 run_c_test "$t" "$build/$t.asan"
done

if [ "${STOCKADE_SKIP_VALGRIND:-0}" != 1 ]; then
    step "C tests under valgrind (shared library): no errors, no leaks"
    for t in "${c_tests[@]}"; do
        $CC -std=c99 "${CWARN[@]}" -g -Iinclude "tests/c/$t.c" -L"$lib_dir" -lstockade \
            -Wl,-rpath,"$root/$lib_dir" "${RUST_SYS_LIBS[@]}" -o "$build/$t.vg"
        # Leaks: definite and indirect fail the run. The blocking layer's
        # process-wide registry (a static hash map, reached through an
        # interior pointer: "possibly lost") and per-thread event stripes
        # ("still reachable") live until exit by design and are not leaks.
        run_c_test "$t" valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
            --errors-for-leak-kinds=definite,indirect "$build/$t.vg"
    done
fi

step "C++ wrappers (include/stockade.hpp), C++17, under ASan + UBSan"
for t in tests/c/test_*.cpp; do
    name=$(basename "$t" .cpp)
    $CXX -std=c++17 "${CWARN[@]}" -g "${SAN[@]}" -Iinclude "$t" "$lib_a" "${RUST_SYS_LIBS[@]}" \
        -o "$build/$name.asan"
    ASAN_OPTIONS=$asan_opts "$build/$name.asan"
    # The result-based API without exceptions (game engines, firmware).
    $CXX -std=c++17 -fno-exceptions "${CWARN[@]}" -g "${SAN[@]}" -Iinclude "$t" "$lib_a" "${RUST_SYS_LIBS[@]}" \
        -o "$build/$name.noexc"
    ASAN_OPTIONS=$asan_opts "$build/$name.noexc"
done

# ---------------------------------------------------------------------------
step "cross-language LTO (tests/c/lto.sh: rustc and clang on one LLVM, C inlines the core)"
if why=$(tests/c/lto.sh --check); then
    tests/c/lto.sh
else
    echo "not tested: $why"
fi

# ---------------------------------------------------------------------------
step "core tier without malloc (no_std libstockade.a, --wrap=malloc aborts)"
# The core tier alone, as firmware links it: no_std, panic = abort.
CARGO_PROFILE_RELEASE_PANIC=abort cargo rustc -p stockade-ffi --release --no-default-features \
    --crate-type staticlib --target-dir target/c-nostd --locked
nostd_a=target/c-nostd/release/libstockade.a
if nm -u "$nostd_a" 2>/dev/null | grep -qwE 'malloc|calloc|realloc|free|pthread_[a-z_]+'; then
    nm -u "$nostd_a" | grep -wE 'malloc|calloc|realloc|free|pthread_[a-z_]+' | sort -u
    fail "the core tier references malloc or threads"
fi
$CC -std=c99 "${CWARN[@]}" -g -Iinclude tests/c/test_nomalloc.c "$nostd_a" \
    -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free -o "$build/test_nomalloc"
# The wrapper does catch an allocation (so the test above can fail).
printf '#include <stdlib.h>\nvoid *__wrap_malloc(size_t n);\nvoid *__wrap_malloc(size_t n) { (void)n; abort(); }\nint main(void) { return malloc(1) == 0; }\n' \
    >"$build/wrap_probe.c"
$CC -std=c99 "$build/wrap_probe.c" -Wl,--wrap=malloc -o "$build/wrap_probe"
if sh -c '"$1"; exit $?' _ "$build/wrap_probe" 2>/dev/null; then fail "--wrap=malloc did not intercept malloc"; fi
"$build/test_nomalloc"

# ---------------------------------------------------------------------------
# The README's blocks between <!-- NAME:begin --> and <!-- NAME:end -->:
# readme_block NAME LANG prints the fenced LANG block(s) inside.
readme_block() {
    awk -v b="<!-- $1:begin -->" -v e="<!-- $1:end -->" '$0==b{on=1; next} $0==e{on=0} on' README.md |
        sed -n "/^\`\`\`$2\$/,/^\`\`\`\$/p" | sed '/^```/d'
}

step "the README's sharing example opens a shared limiter"
# The block runs inside main(), with its default options pointed at a
# fresh directory (so it cannot meet another run's "payments").
shared_c=$build/readme_shared.c
{
    printf '#define _XOPEN_SOURCE 700\n#include <stdio.h>\n#include <stdlib.h>\n#include <unistd.h>\n#include "stockade.h"\n'
    printf 'static char dir[] = "/tmp/stockade-readme-XXXXXX";\n'
    printf 'static stockade_shared_options test_options(void) {\n'
    printf '    stockade_shared_options o = (stockade_shared_options_default)();\n'
    printf '    o.directory = dir;\n    return o;\n}\n'
    printf '#define stockade_shared_options_default() test_options()\n'
    printf 'int main(void) {\n    if (mkdtemp(dir) == NULL) return 2;\n    {\n'
    readme_block c-shared-example c | sed 's/^/        /'
    printf '        if (payments == NULL) return 1;\n'
    printf '        if (stockade_limiter_handle_try_acquire(payments, 1) != STOCKADE_STATUS_OK) return 1;\n'
    printf '        stockade_limiter_handle_free(payments);\n'
    printf '        if (stockade_shared_unlink(STOCKADE_SHARED_KIND_LIMITER, "payments", &shared) != STOCKADE_STATUS_OK) return 1;\n'
    printf '    }\n    return rmdir(dir) == 0 ? 0 : 1;\n}\n'
} >"$shared_c"
grep -q stockade_limiter_handle_new_shared "$shared_c" || fail "README.md has no sharing example between c-shared-example markers"
$CC -std=c99 "${CWARN[@]}" -g "${SAN[@]}" -Iinclude "$shared_c" "$lib_a" "${RUST_SYS_LIBS[@]}" -o "$build/readme_shared"
ASAN_OPTIONS=$asan_opts "$build/readme_shared" || fail "the README's sharing example did not open a shared limiter"

step "firmware: the README's commands (thumbv7em-none-eabihf, arm-none-eabi-gcc)"
# Debian's cross toolchain and newlib (for --specs=nano.specs/nosys.specs),
# installed when we can (root with apt).
if ! command -v arm-none-eabi-gcc >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    pkgs="gcc-arm-none-eabi libnewlib-arm-none-eabi"
    apt-get install -y -qq $pkgs >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null && apt-get install -y -qq $pkgs >/dev/null; } ||
        echo "could not install $pkgs"
fi
fw=$build/firmware-readme
rm -rf "$fw" && mkdir -p "$fw"
readme_block firmware-example c >"$fw/main.c"
readme_block firmware-example sh >"$fw/build.sh"
[ -s "$fw/main.c" ] && [ -s "$fw/build.sh" ] || fail "README.md has no firmware example between firmware-example markers"
grep -q 'rustup target add thumbv7em-none-eabihf' "$fw/build.sh" || fail "the README's firmware commands do not add the target"
# Run as written, from a directory laid out like the repository (its
# include/ and cargo's target directory) holding the README's main.c.
ln -s "$root/include" "$fw/include"
cargo_target=$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
[ -d "$cargo_target" ] || fail "cargo metadata gave no target directory"
ln -s "$cargo_target" "$fw/target"
if command -v arm-none-eabi-gcc >/dev/null; then
    (cd "$fw" && bash -euo pipefail build.sh)
    [ -s "$fw/firmware.elf" ] || fail "the README's firmware commands made no firmware.elf"
    arm-none-eabi-size "$fw/firmware.elf"
    fw_a=$fw/target/thumbv7em-none-eabihf/release/libstockade.a
else
    echo "arm-none-eabi-gcc not available: the README's firmware link is not tested; building the library only"
    rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || true
    # Optimised for size, as firmware is built.
    CARGO_PROFILE_RELEASE_PANIC=abort CARGO_PROFILE_RELEASE_OPT_LEVEL=s cargo rustc -p stockade-ffi \
        --release --no-default-features --target thumbv7em-none-eabihf --crate-type staticlib \
        --target-dir target/c-firmware --locked
    fw_a=target/c-firmware/thumbv7em-none-eabihf/release/libstockade.a
fi
# Stockade's flash in that firmware, against its budget.
tests/c/firmware-size.sh "$fw_a" "$fw/main.c"
# The README's table of what each function costs is the script's output.
tests/c/firmware-size.sh --table "$fw_a" "$fw/main.c" >"$build/firmware-cost.md"
if [ "${STOCKADE_UPDATE_README:-0}" = 1 ]; then
    awk -v b="<!-- firmware-cost:begin -->" -v e="<!-- firmware-cost:end -->" -v f="$build/firmware-cost.md" '
        $0==b {print; while ((getline l < f) > 0) print l; skip=1; next}
        $0==e {skip=0} !skip' README.md >"$build/README.md"
    cp "$build/README.md" README.md
    echo "README.md's firmware cost table rewritten"
fi
awk -v b="<!-- firmware-cost:begin -->" -v e="<!-- firmware-cost:end -->" '$0==b{on=1; next} $0==e{on=0} on' README.md |
    diff -u - "$build/firmware-cost.md" ||
    fail "README.md's firmware cost table is stale: run STOCKADE_UPDATE_README=1 tests/c/run.sh and commit it"

# ---------------------------------------------------------------------------
step "install (scripts/install-c.sh) and consume with pkg-config"
prefix=$PWD/$build/prefix
rm -rf "$prefix"
scripts/install-c.sh "$prefix"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
readme_c=$build/readme_example.c
# The README's C example, built and run with the commands the README shows
# (no LD_LIBRARY_PATH: the installed stockade.pc must make it run).
readme_block c-example c >"$readme_c"
[ -s "$readme_c" ] || fail "README.md has no C example between c-example markers"
readme_block c-example sh >"$build/readme_example.sh"
grep -qE '^cc ' "$build/readme_example.sh" || fail "README.md's C example has no cc command"
grep -qx './example' "$build/readme_example.sh" || fail "README.md's C example does not run ./example"
rm -f "$build/example"
(cd "$build" && cp readme_example.c example.c && env -u LD_LIBRARY_PATH bash -euo pipefail readme_example.sh) ||
    fail "the README's C example did not build and run as written"
# Static linking through pkg-config --static.
$CC -std=c99 "${CWARN[@]}" "$readme_c" -o "$build/example_static" \
    $(pkg-config --cflags stockade) "$prefix/lib/libstockade.a" $(pkg-config --libs-only-l --static stockade | sed 's/-lstockade//')
"$build/example_static"

step "install: consume with CMake find_package(stockade)"
if ! command -v cmake >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get install -y -qq cmake >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq cmake >/dev/null; }) ||
        echo "cmake could not be installed"
fi
if command -v cmake >/dev/null; then
    cm=$build/cmake-consumer
    rm -rf "$cm" && mkdir -p "$cm"
    cp "$readme_c" "$cm/example.c"
    cat >"$cm/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(stockade_consumer C)
find_package(stockade 0.1 REQUIRED)
add_executable(example_shared example.c)
target_link_libraries(example_shared PRIVATE stockade::stockade)
add_executable(example_static example.c)
target_link_libraries(example_static PRIVATE stockade::static)
CMAKE
    cmake -S "$cm" -B "$cm/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$cm/build" >/dev/null
    env -u LD_LIBRARY_PATH "$cm/build/example_shared"
    "$cm/build/example_static"
else
    echo "cmake not available: find_package(stockade) not tested"
fi

echo
echo "c: all C ABI checks passed"
