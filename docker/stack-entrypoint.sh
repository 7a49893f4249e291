#!/bin/sh
# The stack container: (re)build the shim if its sources changed, prepare the output
# folder, then run the daemon (the command, normally `tcplab stack ...`) as PID 1's child.
# `tcplab stack` creates mytun (10.0.0.1/24 on the kernel side, 10.0.0.2 for the stack);
# the kernel here routes between the lab wire (lab0, 10.0.1.1) and mytun
# (net.ipv4.ip_forward=1).
set -eu
rm -f /tmp/.tcplab-healthy
/opt/tcplab/docker/wire.sh stack
/opt/tcplab/docker/build-shim.sh || echo "stack: building the shim failed; continuing with the image's" >&2

# Output files owned by whoever owns the output folder (you, on the host), so you can
# open, move and delete them without root.
if [ -d /out ]; then
    owner="$(stat -c %u:%g /out)"
    for f in stack.pcap events.jsonl; do
        : >"/out/$f"
        chown "$owner" "/out/$f" 2>/dev/null || true
    done
fi
mkdir -p /run/tcplab
rm -f /run/tcplab/stack.sock
exec "$@"
