"""Lab 01 reference: a TUN device is a file; print every packet read from it.

    python3 -m stack.labkit.reference.tunread tun1
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import sys

TUNSETIFF = 0x400454CA  # _IOW('T', 202, int) on x86 and ARM (<linux/if_tun.h>)
IFF_TUN = 0x0001  # IP packets, no Ethernet header
IFF_NO_PI = 0x1000  # no 4-byte "packet information" prefix
PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP"}


def open_tun(name: str) -> int:
    """Create (or attach to) TUN device ``name``; return the file descriptor."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        ifreq = struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifreq)
    except OSError:
        os.close(fd)
        raise
    return fd


def describe(packet: bytes) -> str:
    """One line about an IP packet, e.g. ``10.0.0.1:40000 > 10.0.0.2:80 TCP len 60``."""
    version = packet[0] >> 4 if packet else 0
    if version != 4 or len(packet) < 20:
        return f"not IPv4 (version {version}, {len(packet)} bytes)"
    ihl = (packet[0] & 0x0F) * 4
    total_length, fragment = struct.unpack_from("!H2xH", packet, 2)
    proto = packet[9]
    src, dst = socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20])
    name = PROTOCOLS.get(proto, f"proto {proto}")
    first_fragment = fragment & 0x1FFF == 0
    if proto in (6, 17) and first_fragment and len(packet) >= ihl + 4:
        sport, dport = struct.unpack_from("!HH", packet, ihl)
        return f"{src}:{sport} > {dst}:{dport} {name} len {total_length}"
    return f"{src} > {dst} {name} len {total_length}"


def main(argv: list[str]) -> int:
    name = argv[1] if len(argv) > 1 else "tun1"
    fd = open_tun(name)
    print(f"reading packets from {name} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            print(describe(os.read(fd, 65536)), flush=True)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
