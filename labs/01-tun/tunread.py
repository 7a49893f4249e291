#!/usr/bin/env python3
"""Lab 01: a TUN reader. Fill in open_tun() and describe(), about 20 lines in all.

    python3 tunread.py tun1                              # as root, e.g. in the stack container
    python3 -m stack.labkit test 01 --impl tunread.py    # the step-by-step tests

A TUN device is a network interface whose other end is a file descriptor: every IP
packet the kernel routes to the interface can be read() from the fd, one packet per
read(), and whatever you write() to the fd arrives at the kernel as if it came in on
that interface.
"""

from __future__ import annotations

import fcntl  # noqa: F401  (you will need these)
import os
import socket  # noqa: F401
import struct  # noqa: F401
import sys

# From <linux/if_tun.h> (x86 and ARM): the ioctl that attaches the fd to a device.
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001  # IP packets (IFF_TAP would give Ethernet frames)
IFF_NO_PI = 0x1000  # no 4-byte "packet information" prefix before every packet


def open_tun(name: str) -> int:
    """Create TUN device ``name`` (or attach to it) and return the file descriptor.

    1. open /dev/net/tun for reading and writing (os.open, os.O_RDWR);
    2. ioctl(fd, TUNSETIFF, ifreq) where ifreq is a ``struct ifreq``: the name as 16
       bytes, then a short with the flags IFF_TUN | IFF_NO_PI, padded to 40 bytes.
       struct.pack("16sH22x", ...) builds exactly that.
    Close the fd again if the ioctl fails (then let the error propagate).
    """
    raise NotImplementedError


def describe(packet: bytes) -> str:
    """One line about an IP packet, exactly like these:

        10.0.0.1 > 10.0.0.2 ICMP len 84
        10.0.0.1:40000 > 10.0.0.2:80 TCP len 60
        10.0.0.1:5353 > 10.0.0.2:7 UDP len 33
        192.168.1.1 > 192.168.1.2 proto 47 len 40
        not IPv4 (version 6, 48 bytes)

    * version: the high 4 bits of byte 0; anything but 4 (or fewer than 20 bytes) gives
      the "not IPv4" line with the version and the packet's length;
    * IHL: the low 4 bits of byte 0, in 32-bit words -- the header is IHL * 4 bytes;
    * "len" is the Total Length field (bytes 2-3, big-endian);
    * the protocol is byte 9 (1 ICMP, 6 TCP, 17 UDP; others as "proto N");
    * source and destination addresses are bytes 12-15 and 16-19 (socket.inet_ntoa);
    * TCP and UDP both start with the source and destination port (2 bytes each) right
      after the IP header. (A later fragment carries no ports: its fragment offset, the
      low 13 bits of bytes 6-7, is not zero. Print it without ports:
      "10.0.0.1 > 10.0.0.2 UDP len 1500".)

    RFC 791 section 3.1 has the picture of the header.
    """
    raise NotImplementedError


def main(argv: list[str]) -> int:
    name = argv[1] if len(argv) > 1 else "tun1"
    fd = open_tun(name)
    print(f"reading packets from {name} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            packet = os.read(fd, 65536)  # one read = one packet
            print(describe(packet), flush=True)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
