#!/usr/bin/env bash
# Installs Stockade's C library: include/stockade.h and stockade.hpp,
# lib/libstockade.a and lib/libstockade.so, lib/pkgconfig/stockade.pc and
# lib/cmake/stockade/stockadeConfig*.cmake.
#
# Usage: scripts/install-c.sh PREFIX        (e.g. /usr/local; honours DESTDIR)
#
# Builds the release library first (into cargo's target directory: it
# honours CARGO_TARGET_DIR and .cargo/config) and installs the files that
# build produced, as cargo reports them: never a library left over from
# another build. STOCKADE_LIB_DIR=DIR installs DIR's libstockade.a and
# libstockade.so instead, without building (both must exist).
#
# The pkg-config file links the shared library with an rpath to PREFIX/lib,
# so programs built with `pkg-config --libs stockade` run without
# LD_LIBRARY_PATH or ldconfig.
set -euo pipefail
fail() { printf 'install-c.sh: %s\n' "$*" >&2; exit 1; }
prefix=${1:?usage: scripts/install-c.sh PREFIX}
case $prefix in /*) ;; *) prefix=$(cd "$prefix" 2>/dev/null && pwd || echo "$PWD/$prefix") ;; esac
# A relative CARGO_TARGET_DIR means the caller's directory, not the repo's.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    case $CARGO_TARGET_DIR in /*) ;; *) CARGO_TARGET_DIR=$PWD/$CARGO_TARGET_DIR ;; esac
    export CARGO_TARGET_DIR
fi
cd "$(dirname "$0")/.."

if [ -n "${STOCKADE_LIB_DIR:-}" ]; then
    lib_a=$STOCKADE_LIB_DIR/libstockade.a
    lib_so=$STOCKADE_LIB_DIR/libstockade.so
else
    # The artifacts of this build, by cargo's own account (JSON messages):
    # wherever the target directory is, these are the files just built.
    json=$(cargo build --release -p stockade-ffi --locked --message-format=json-render-diagnostics) ||
        fail "cargo build failed"
    artifacts=$(printf '%s\n' "$json" | grep '"reason":"compiler-artifact"' | grep 'stockade-ffi' |
        grep -o '"[^"]*/libstockade\.\(a\|so\)"' | tr -d '"' || true)
    lib_a=$(printf '%s\n' "$artifacts" | grep '\.a$' | head -n1 || true)
    lib_so=$(printf '%s\n' "$artifacts" | grep '\.so$' | head -n1 || true)
    [ -n "$lib_a" ] && [ -n "$lib_so" ] ||
        fail "cargo reported no libstockade.a/libstockade.so for stockade-ffi (artifacts: ${artifacts:-none})"
fi
[ -f "$lib_a" ] || fail "$lib_a does not exist"
[ -f "$lib_so" ] || fail "$lib_so does not exist"
version=$(sed -n 's/^version = "\([^"]*\)"/\1/p' Cargo.toml | head -n1)
major_minor=${version%.*}
dest=${DESTDIR:-}$prefix

install -d "$dest/include" "$dest/lib/pkgconfig" "$dest/lib/cmake/stockade"
install -m 644 include/stockade.h include/stockade.hpp "$dest/include/"
install -m 644 "$lib_a" "$dest/lib/"
install -m 755 "$lib_so" "$dest/lib/"
subst() { sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" -e "s|@VERSION_MAJOR_MINOR@|$major_minor|g" "$1"; }
subst ffi/pkg/stockade.pc.in >"$dest/lib/pkgconfig/stockade.pc"
subst ffi/pkg/stockadeConfig.cmake.in >"$dest/lib/cmake/stockade/stockadeConfig.cmake"
subst ffi/pkg/stockadeConfigVersion.cmake.in >"$dest/lib/cmake/stockade/stockadeConfigVersion.cmake"
echo "installed stockade $version into $dest (from $lib_so and $lib_a)"
