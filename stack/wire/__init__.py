"""Pure wire-format functions: parse and build IPv4, TCP, UDP and ICMP packets.

See ``docs/architecture.md``.  Nothing here performs I/O or reads a clock.
"""

from stack.wire.checksum import internet_checksum, ones_complement_sum, pseudo_header_sum
from stack.wire.errors import WireError
from stack.wire.icmp import ICMPMessage, build_icmp, parse_icmp
from stack.wire.ipv4 import (
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPv4Header,
    build_ipv4_header,
    parse_ipv4,
)
from stack.wire.tcp import (
    TCPOptions,
    TCPSegment,
    build_tcp,
    build_tcp_header,
    encode_options,
    parse_tcp,
)
from stack.wire.udp import UDPDatagram, build_udp, parse_udp

__all__ = [
    "IPPROTO_ICMP",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "ICMPMessage",
    "IPv4Header",
    "TCPOptions",
    "TCPSegment",
    "UDPDatagram",
    "WireError",
    "build_icmp",
    "build_ipv4_header",
    "build_tcp",
    "build_tcp_header",
    "build_udp",
    "encode_options",
    "internet_checksum",
    "ones_complement_sum",
    "parse_icmp",
    "parse_ipv4",
    "parse_tcp",
    "parse_udp",
    "pseudo_header_sum",
]
