#!/bin/sh
# Healthcheck of the stack container: healthy once the Python stack answers a ping.
# After the first answer it only checks that the daemon's socket is still there (if it
# was there then), so the capture you study (out/stack.pcap) is not littered with a
# ping every few seconds. The daemon is the container's main process: if it dies, the
# container stops anyway.
set -u
marker=/tmp/.tcplab-healthy
sock="${TCPLAB_SOCKET:-/run/tcplab/stack.sock}"
if [ -e "$marker" ]; then
    if [ "$(cat "$marker")" = socket ] && [ ! -S "$sock" ]; then
        echo "the daemon's socket $sock is gone"
        exit 1
    fi
    exit 0
fi
if ! ping -c1 -W1 -q "${TCPLAB_ADDRESS:-10.0.0.2}" >/dev/null; then
    echo "10.0.0.2 does not answer ping yet"
    exit 1
fi
if [ -S "$sock" ]; then echo socket >"$marker"; else echo ping >"$marker"; fi
