#!/usr/bin/env python3
"""A receiver that stops reading, so that its window closes (lab 07).

    python3 slowreader.py [HOST] [--path /bytes/2000000] [--rcvbuf 16384] [--pause 5] [--rate 0]

Connects to HOST's HTTP service with a small receive buffer, sends one GET, then does
not read for --pause seconds: the kernel's buffer fills, it advertises a zero window,
and the sender must wait and probe (RFC 9293 3.8.6.1). Then it reads everything (at
--rate bytes per second if given, else as fast as it can) and checks the body: /bytes/N
is random.Random(N).randbytes(N).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import socket
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("host", nargs="?", default="10.0.0.2")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--path", default="/bytes/2000000")
    p.add_argument("--rcvbuf", type=int, default=16384, help="SO_RCVBUF (Linux doubles it)")
    p.add_argument("--pause", type=float, default=5.0, help="seconds without reading")
    p.add_argument("--rate", type=int, default=0, help="bytes per second after the pause (0: all)")
    args = p.parse_args()

    sock = socket.socket()
    # Before connect(): the window scale is chosen from the buffer size in the SYN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    sock.connect((args.host, args.port))
    local = sock.getsockname()
    print(f"connected {local[0]}:{local[1]} -> {args.host}:{args.port}; receive buffer "
          f"{sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)} bytes", flush=True)
    sock.sendall(f"GET {args.path} HTTP/1.1\r\nHost: {args.host}\r\nConnection: close\r\n\r\n"
                 .encode())
    print(f"not reading for {args.pause} s: watch the window close "
          f"(tcpdump: 'win 0'; the stack: tcplab ss, retransmit events with reason probe)",
          flush=True)
    time.sleep(args.pause)
    print("reading again", flush=True)
    data = bytearray()
    started = time.monotonic()
    while True:
        chunk = sock.recv(4096 if args.rate else 65536)
        if not chunk:
            break
        data += chunk
        if args.rate:
            ahead = len(data) / args.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    sock.close()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    print(f"got {len(body)} bytes of body in {time.monotonic() - started:.2f} s after the pause")
    if args.path.startswith("/bytes/") and args.path[7:].isdigit():
        n = int(args.path[7:])
        ok = hashlib.sha256(body).digest() == hashlib.sha256(random.Random(n).randbytes(n)).digest()
        print("body is byte-exact" if ok else "body is WRONG")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
