#!/usr/bin/env python3
"""A dual-stack server of your own, for `tcplab run`: one AF_INET6 socket on [::]:PORT
with IPV6_V6ONLY off (RFC 3493 section 5.3; Linux's default, bindv6only=0), so that it
hears IPv4 and IPv6 clients alike. For each client it prints the address family and
the peer's address as accept() gives it -- an IPv4 client shows as a v4-mapped address,
::ffff:a.b.c.d (RFC 4291 section 2.5.5.2) -- and answers one line.

    tcplab lab exec client tcplab run -- python3 /opt/tcplab/labs/11-ipv6/dualserver.py
    python3 dualserver.py --port 8080 --clients 2

Under `tcplab run` the socket lives on the stack: the listener is the stack's [::]:8080,
reached at 10.0.0.2 and at fd00:0:0:1::2. Standard library only.
"""

from __future__ import annotations

import argparse
import socket


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--clients", type=int, default=2, help="serve this many, then exit")
    args = ap.parse_args()
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind(("::", args.port))
    srv.listen(8)
    v6only = srv.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    print(f"listening on [::]:{args.port} (IPV6_V6ONLY={v6only})", flush=True)
    for _ in range(args.clients):
        conn, peer = srv.accept()
        with conn:
            host, port = peer[0], peer[1]
            kind = "IPv4, v4-mapped" if host.startswith("::ffff:") else "IPv6"
            local = conn.getsockname()[0]
            print(f"accepted {host} port {port} ({kind}) on {local}", flush=True)
            line = conn.recv(1024).decode(errors="replace").strip()
            conn.sendall(f"you are {host}, you said {line!r}\n".encode())
    srv.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
