#!/bin/sh
# Healthcheck of the stack container: healthy once the Python stack answers a ping.
# After the first answer it only checks that the daemon's socket is still there, so
# the capture you study (out/stack.pcap) is not littered with a ping every few seconds.
# (The daemon is the container's main process: if it dies, the container stops.)
set -u
marker=/tmp/.tcplab-healthy
sock="${TCPLAB_SOCKET:-/run/tcplab/stack.sock}"
if [ -e "$marker" ]; then
    [ -S "$sock" ] || { echo "no daemon socket $sock"; exit 1; }
    exit 0
fi
ping -c1 -W1 -q "${TCPLAB_ADDRESS:-10.0.0.2}" >/dev/null || { echo "10.0.0.2 does not answer ping yet"; exit 1; }
touch "$marker"
