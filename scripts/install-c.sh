#!/usr/bin/env bash
# Installs Stockade's C library: include/stockade.h and stockade.hpp,
# lib/libstockade.a and lib/libstockade.so, lib/pkgconfig/stockade.pc and
# lib/cmake/stockade/stockadeConfig*.cmake.
#
# Usage: scripts/install-c.sh PREFIX        (e.g. /usr/local; honours DESTDIR)
# Builds the release library first unless STOCKADE_LIB_DIR names a folder
# that already holds libstockade.a and libstockade.so.
set -euo pipefail
prefix=${1:?usage: scripts/install-c.sh PREFIX}
case $prefix in /*) ;; *) prefix=$(cd "$prefix" 2>/dev/null && pwd || echo "$PWD/$prefix") ;; esac
cd "$(dirname "$0")/.."

lib_dir=${STOCKADE_LIB_DIR:-}
if [ -z "$lib_dir" ]; then
    cargo build --release -p stockade-ffi --locked
    lib_dir=target/release
fi
version=$(sed -n 's/^version = "\([^"]*\)"/\1/p' Cargo.toml | head -n1)
major_minor=${version%.*}
dest=${DESTDIR:-}$prefix

install -d "$dest/include" "$dest/lib/pkgconfig" "$dest/lib/cmake/stockade"
install -m 644 include/stockade.h include/stockade.hpp "$dest/include/"
install -m 644 "$lib_dir/libstockade.a" "$dest/lib/"
install -m 755 "$lib_dir/libstockade.so" "$dest/lib/"
subst() { sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" -e "s|@VERSION_MAJOR_MINOR@|$major_minor|g" "$1"; }
subst ffi/pkg/stockade.pc.in >"$dest/lib/pkgconfig/stockade.pc"
subst ffi/pkg/stockadeConfig.cmake.in >"$dest/lib/cmake/stockade/stockadeConfig.cmake"
subst ffi/pkg/stockadeConfigVersion.cmake.in >"$dest/lib/cmake/stockade/stockadeConfigVersion.cmake"
echo "installed stockade $version into $dest"
