#!/bin/sh
# The peer: a plain Linux host (the kernel's TCP) on the lab wire (lab0, 10.0.1.20),
# routing the stack's subnet 10.0.0.0/24 via the stack container (10.0.1.1).
# Starts iperf3 -s (5201) and an echo server (7, socat), and serves HTTP on 80
# (peer-httpd.py: index.html, 20M.bin, /bytes/N) in the foreground.
set -eu
/opt/tcplab/docker/wire.sh peer
iperf3 -s -D --logfile /var/log/iperf3.log
socat TCP-LISTEN:7,fork,reuseaddr PIPE &
exec python3 /opt/tcplab/docker/peer-httpd.py --port 80 --root /srv/www --make-files "$@"
