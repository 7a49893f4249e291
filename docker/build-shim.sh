#!/bin/sh
# Build the LD_PRELOAD shim from /opt/tcplab/shim and install it where `tcplab run`
# and $TCPLAB_SHIM expect it. Runs at image build time and again when the stack
# container starts: make rebuilds only when the sources are newer (a bind-mounted
# shim/ you are editing), so the second run costs nothing otherwise.
set -eu
SRC="${TCPLAB_SRC:-/opt/tcplab}/shim"
DEST="${TCPLAB_SHIM:-/usr/local/lib/tcplab/libsocketoverride.so}"

if [ ! -f "$SRC/Makefile" ]; then
    echo "build-shim: no $SRC/Makefile yet; skipping the shim" >&2
    exit 0
fi
make -s -C "$SRC" >&2
built="$(find "$SRC" -name libsocketoverride.so -type f -newer "$SRC/Makefile" -print -quit 2>/dev/null || true)"
[ -n "$built" ] || built="$(find "$SRC" -name libsocketoverride.so -type f -print -quit)"
if [ -z "$built" ]; then
    echo "build-shim: make ran but produced no libsocketoverride.so" >&2
    exit 1
fi
mkdir -p "$(dirname "$DEST")"
if ! cmp -s "$built" "$DEST" 2>/dev/null; then
    install -m 0755 "$built" "$DEST"
    echo "build-shim: installed $DEST" >&2
fi
