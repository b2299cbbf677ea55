#!/usr/bin/env bash
# Install NVRTC (the CUDA runtime compiler) from the PyPI wheel
# `nvidia-cuda-nvrtc-cu12` into a cached directory, without any CUDA toolkit,
# and print the directory that holds `libnvrtc.so.12`.
#
# Usage (CI):
#   NVRTC_LIB_DIR="$(bash .ci/install-nvrtc.sh)"
#   export LD_LIBRARY_PATH="$NVRTC_LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
#   cargo test -p kvtier-cuda
#
# cudarc (dynamic loading) looks NVRTC up by bare library names only
# (libnvrtc.so, libnvrtc.so.12, ...), so LD_LIBRARY_PATH must be set before the
# test process starts. The wheel ships `libnvrtc.so.12` (one of cudarc's
# candidate names) and `libnvrtc-builtins.so.12.*`, which NVRTC dlopen()s from
# the same search path. A `libnvrtc.so` symlink is created too, for tools that
# want the unversioned name.
#
# Everything goes to stderr except the final line (the lib dir).
set -euo pipefail

CACHE_DIR="${KVTIER_NVRTC_DIR:-${HOME:-/root}/.cache/kvtier-nvrtc}"
PKG="${KVTIER_NVRTC_PKG:-nvidia-cuda-nvrtc-cu12}"

find_lib() {
    find "$CACHE_DIR" -name 'libnvrtc.so.12' -print -quit 2>/dev/null || true
}

lib="$(find_lib)"
if [ -z "$lib" ]; then
    PY="$(command -v python3 || command -v python || true)"
    if [ -z "$PY" ]; then
        echo "install-nvrtc: no python3 found; cannot pip-install $PKG" >&2
        exit 1
    fi
    mkdir -p "$CACHE_DIR"
    echo "install-nvrtc: installing $PKG into $CACHE_DIR" >&2
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps \
        --target "$CACHE_DIR" "$PKG" >&2
    lib="$(find_lib)"
fi

if [ -z "$lib" ]; then
    echo "install-nvrtc: libnvrtc.so.12 not found under $CACHE_DIR after install" >&2
    exit 1
fi

dir="$(dirname "$lib")"
if [ ! -e "$dir/libnvrtc.so" ]; then
    ln -s libnvrtc.so.12 "$dir/libnvrtc.so"
fi
echo "$dir"
