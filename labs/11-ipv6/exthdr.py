#!/usr/bin/env python3
"""Send ICMPv6 echo requests with an extension header in front, and say what came back.

    python3 exthdr.py --header dst --option 0x1e        # Destination Options, one option
    python3 exthdr.py --header hop --option 0x9e        # Hop-by-Hop Options
    python3 exthdr.py --header dst --option 0x1e --option 0x9e --count 3

Every packet is built here byte by byte -- the 40-octet IPv6 header (RFC 8200 section 3),
one Hop-by-Hop or Destination Options header (section 4.3, 4.6) holding the options you
name (type, a length of 4, four zero octets each; padded with PadN to a multiple of 8),
and an ICMPv6 echo request (RFC 4443 section 4.1) -- and sent on a raw socket
(IPPROTO_RAW: the kernel adds nothing, CAP_NET_RAW needed). It listens on an ICMPv6
socket for the echo reply or an error that quotes the packet, and prints it; nothing
within --timeout seconds means the packet was discarded silently.

Standard library only: it runs in the lab's peer container as it is.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import struct
import sys
import time

HEADERS = {"hop": (0, "Hop-by-Hop Options"), "dst": (60, "Destination Options")}
ACTIONS = {0: "00: skip it", 1: "01: discard silently",
           2: "10: discard, send Parameter Problem (even to multicast)",
           3: "11: discard, send Parameter Problem unless to multicast"}
PP_CODES = {0: "erroneous header field", 1: "unrecognized Next Header",
            2: "unrecognized IPv6 option", 3: "first fragment has incomplete header chain"}
ERRORS = {1: "Destination Unreachable", 2: "Packet Too Big", 3: "Time Exceeded",
          4: "Parameter Problem"}


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def options_header(next_header: int, types: list[int]) -> bytes:
    """RFC 8200 section 4.2: TLV options, padded to a multiple of 8 octets."""
    body = b"".join(struct.pack("!BB", t, 4) + bytes(4) for t in types)
    pad = (-(2 + len(body))) % 8
    if pad == 1:
        body += b"\x00"  # Pad1
    elif pad:
        body += struct.pack("!BB", 1, pad - 2) + bytes(pad - 2)  # PadN
    return struct.pack("!BB", next_header, (2 + len(body)) // 8 - 1) + body


def packet(src: str, dst: str, header: int, types: list[int], ident: int, seq: int,
           hop_limit: int) -> bytes:
    echo = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + b"tcplab lab 11 exthdr.py"
    s, d = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    pseudo = s + d + struct.pack("!I3xB", len(echo), 58)  # RFC 8200 section 8.1
    echo = echo[:2] + struct.pack("!H", checksum(pseudo + echo)) + echo[4:]
    ext = options_header(58, types)
    payload = ext + echo
    fixed = struct.pack("!IHBB", 6 << 28, len(payload), header, hop_limit) + s + d
    return fixed + payload


def source_for(dst: str) -> str:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        probe.connect((dst, 9))
        return str(probe.getsockname()[0])


def answer(listener: socket.socket, ident: int, seq: int, deadline: float) -> str | None:
    """The echo reply, or an ICMPv6 error quoting our request, until ``deadline``."""
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([listener], [], [], left)
        if not ready:
            return None
        data, (who, *_rest) = listener.recvfrom(65535)
        if len(data) < 8:
            continue
        kind, code = data[0], data[1]
        if kind == 129 and struct.unpack_from("!HH", data, 4) == (ident, seq):
            return f"echo reply from {who}: the options were skipped"
        if kind in ERRORS:
            quoted = data[8:]
            # our request inside: find the echo header after the quoted extension header
            if len(quoted) < 48 or quoted[6] not in (0, 60):
                continue
            at = 40 + (quoted[41] + 1) * 8
            if len(quoted) >= at + 8 and quoted[at] == 128 and \
                    struct.unpack_from("!HH", quoted, at + 4) == (ident, seq):
                (field,) = struct.unpack_from("!I", data, 4)
                text = f"{ERRORS[kind]} from {who}, code {code}"
                if kind == 4:
                    text += (f" ({PP_CODES.get(code, '?')}), pointer {field}: octet {field} of "
                             f"the packet we sent is 0x{quoted[field]:02x}"
                             if field < len(quoted) else f", pointer {field}")
                elif kind == 2:
                    text += f", MTU {field}"
                return text
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dst", default="fd00:0:0:1::2", help="the destination (the stack)")
    p.add_argument("--header", choices=sorted(HEADERS), default="dst",
                   help="hop: Hop-by-Hop Options (Next Header 0), dst: Destination "
                        "Options (60)")
    p.add_argument("--option", action="append", default=[], metavar="TYPE",
                   type=lambda t: int(t, 0) & 0xFF,
                   help="an option type, e.g. 0x1e (repeatable; default: none, just padding)")
    p.add_argument("--count", type=int, default=1, help="how many packets (default 1)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for an answer")
    p.add_argument("--hop-limit", type=int, default=64)
    args = p.parse_args(argv)

    src = source_for(args.dst)
    header, name = HEADERS[args.header]
    ident = os.getpid() & 0xFFFF
    try:
        sender = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        listener = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    except PermissionError:
        print("exthdr.py: raw sockets need CAP_NET_RAW (run it in the lab's peer)",
              file=sys.stderr)
        return 1
    described = ", ".join(f"0x{t:02x} (bits {ACTIONS[t >> 6]})" for t in args.option) or "none"
    answered = 0
    for seq in range(1, args.count + 1):
        raw = packet(src, args.dst, header, args.option, ident, seq, args.hop_limit)
        sender.sendto(raw, (args.dst, 0))
        print(f"{src} > {args.dst}: echo request {seq} ({len(raw)} octets) behind a {name} "
              f"header, options: {described}", flush=True)
        got = answer(listener, ident, seq, time.monotonic() + args.timeout)
        answered += got is not None
        print(f"  {got}" if got else f"  no answer within {args.timeout:g} s: discarded silently",
              flush=True)
    print(f"{answered} of {args.count} answered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
