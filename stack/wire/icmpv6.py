"""ICMPv6 messages (RFC 4443), with the IPv6 pseudo-header checksum.

Error messages (types below 128): Destination Unreachable (section 3.1), Packet Too
Big (3.2), Time Exceeded (3.3), Parameter Problem (3.4). Informational: Echo
Request and Echo Reply (4.1, 4.2). Neighbor Discovery (RFC 4861) and MLD are not
spoken: on a TUN, a layer-3 link, there are no link-layer addresses to resolve, so
those messages, like every informational type not known here, are silently
discarded (section 2.4 (b)).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from stack.wire.checksum import BytesLike, byte_view, ones_complement_sum, pseudo_header_sum
from stack.wire.errors import WireError
from stack.wire.ipv6 import (
    IPPROTO_ICMPV6,
    IPV6_HEADER_LEN,
    IPV6_MIN_MTU,
    IPv6Header,
    is_multicast,
    skip_headers,
)

__all__ = [
    "DEST_UNREACH",
    "ECHO_REPLY",
    "ECHO_REQUEST",
    "ICMPV6_HEADER_LEN",
    "MAX_ERROR_QUOTE",
    "PACKET_TOO_BIG",
    "PARAMETER_PROBLEM",
    "TIME_EXCEEDED",
    "TIME_EXCEEDED_HOP_LIMIT",
    "TIME_EXCEEDED_REASSEMBLY",
    "UNREACH_ADDRESS",
    "UNREACH_ADMIN",
    "UNREACH_BEYOND_SCOPE",
    "UNREACH_NO_ROUTE",
    "UNREACH_POLICY",
    "UNREACH_PORT",
    "UNREACH_REJECT_ROUTE",
    "ICMPv6Message",
    "QuotedPacket",
    "build_icmpv6",
    "echo_id_seq",
    "echo_rest",
    "error_quote",
    "is_error",
    "is_icmpv6_error_packet",
    "may_send_error",
    "mtu_rest",
    "packet_too_big_mtu",
    "parse_icmpv6",
    "parse_quote",
    "pointer_rest",
    "problem_pointer",
]

# RFC 4443 section 2.1: message types.
DEST_UNREACH = 1
PACKET_TOO_BIG = 2
TIME_EXCEEDED = 3
PARAMETER_PROBLEM = 4
ECHO_REQUEST = 128
ECHO_REPLY = 129

# RFC 4443 section 3.1: Destination Unreachable codes.
UNREACH_NO_ROUTE = 0
UNREACH_ADMIN = 1
UNREACH_BEYOND_SCOPE = 2
UNREACH_ADDRESS = 3
UNREACH_PORT = 4
UNREACH_POLICY = 5
UNREACH_REJECT_ROUTE = 6

# RFC 4443 section 3.3: Time Exceeded codes.
TIME_EXCEEDED_HOP_LIMIT = 0
TIME_EXCEEDED_REASSEMBLY = 1

ICMPV6_HEADER_LEN = 8
#: RFC 4443 section 2.4 (c): an error quotes as much of the invoking packet as fits
#: without the error exceeding the minimum IPv6 MTU (1280 - 40 - 8 octets).
MAX_ERROR_QUOTE = IPV6_MIN_MTU - IPV6_HEADER_LEN - ICMPV6_HEADER_LEN

# RFC 4443 section 2.1: type, code, checksum, then the message body; every message
# defined here has 4 more octets of fixed fields ("rest": identifier/sequence, MTU,
# pointer, or unused).
_HDR = struct.Struct("!BBH4s")
_CHECKSUM_OFFSET = 2
_ID_SEQ = struct.Struct("!HH")
_U32 = struct.Struct("!I")


@dataclass(slots=True)
class ICMPv6Message:
    """A parsed ICMPv6 message. ``rest`` is the 4 octets after the checksum;
    ``payload`` what follows (the echo data, or the quoted invoking packet)."""

    type: int
    code: int
    checksum: int
    rest: bytes
    payload: bytes | memoryview


def is_error(icmp_type: int) -> bool:
    """RFC 4443 section 2.1: types 0-127 are errors, 128-255 informational."""
    return icmp_type < 128


def parse_icmpv6(buf: BytesLike, src: str, dst: str, verify_checksum: bool = True) -> ICMPv6Message:
    """Parse an ICMPv6 message (the upper-layer payload) sent from ``src`` to ``dst``.

    Raises :class:`WireError` for a truncated message or a bad checksum.
    """
    view = byte_view(buf)
    # RFC 4443 section 2.1: type, code and checksum; every type handled here has 4
    # more octets. A shorter message is of no use to anyone.
    if len(view) < ICMPV6_HEADER_LEN:
        raise WireError("truncated_icmpv6", f"{len(view)} bytes")
    icmp_type, code, checksum, rest = _HDR.unpack_from(view)
    # RFC 4443 section 2.3: the checksum covers the IPv6 pseudo-header (RFC 8200
    # section 8.1, Next Header 58) and the whole message; section 2.4: a message
    # with a bad checksum is discarded.
    if verify_checksum:
        pseudo = pseudo_header_sum(src, dst, IPPROTO_ICMPV6, len(view))
        if ones_complement_sum(view, pseudo) != 0xFFFF:
            raise WireError("bad_icmpv6_checksum", f"0x{checksum:04x}")
    return ICMPv6Message(icmp_type, code, checksum, rest, view[ICMPV6_HEADER_LEN:])


def build_icmpv6(icmp_type: int, code: int, rest: bytes, payload: BytesLike,
                 src: str, dst: str) -> bytes:
    """Build an ICMPv6 message from ``src`` to ``dst`` with its checksum.

    ``rest`` is the 4 octets after the checksum (:func:`echo_rest`, :func:`mtu_rest`,
    :func:`pointer_rest`, or ``bytes(4)``). Raises :class:`ValueError` for bad
    arguments.
    """
    if len(rest) != 4:
        raise ValueError(f"ICMPv6 rest-of-header must be 4 bytes, got {len(rest)}")
    try:
        header = bytearray(_HDR.pack(icmp_type, code, 0, bytes(rest)))
    except struct.error as exc:
        raise ValueError(f"ICMPv6 header field out of range: {exc}") from exc
    length = ICMPV6_HEADER_LEN + len(payload)
    # RFC 4443 section 2.3: computed with the checksum field zero, over the
    # pseudo-header and the message.
    pseudo = pseudo_header_sum(src, dst, IPPROTO_ICMPV6, length)
    checksum = ~ones_complement_sum(payload, ones_complement_sum(header, pseudo)) & 0xFFFF
    struct.pack_into("!H", header, _CHECKSUM_OFFSET, checksum)
    return bytes(header) + bytes(payload)


def echo_rest(ident: int, seq: int) -> bytes:
    """The identifier and sequence number of an echo message (RFC 4443 section 4.1)."""
    return _ID_SEQ.pack(ident, seq)


def mtu_rest(mtu: int) -> bytes:
    """The 32-bit MTU of a Packet Too Big message (RFC 4443 section 3.2)."""
    return _U32.pack(mtu)


def pointer_rest(pointer: int) -> bytes:
    """The 32-bit pointer of a Parameter Problem message (RFC 4443 section 3.4)."""
    return _U32.pack(pointer)


def echo_id_seq(msg: ICMPv6Message) -> tuple[int, int]:
    """``(identifier, sequence)`` of an echo request or reply; ValueError otherwise."""
    if msg.type not in (ECHO_REQUEST, ECHO_REPLY):
        raise ValueError(f"ICMPv6 type {msg.type} is not an echo message")
    ident, seq = _ID_SEQ.unpack(msg.rest)
    return ident, seq


def packet_too_big_mtu(msg: ICMPv6Message) -> int:
    """The MTU of the next-hop link a Packet Too Big reports (RFC 4443 section 3.2)."""
    if msg.type != PACKET_TOO_BIG:
        raise ValueError(f"ICMPv6 type {msg.type} is not Packet Too Big")
    mtu: int = _U32.unpack(msg.rest)[0]
    return mtu


def problem_pointer(msg: ICMPv6Message) -> int:
    """The pointer of a Parameter Problem message (RFC 4443 section 3.4)."""
    if msg.type != PARAMETER_PROBLEM:
        raise ValueError(f"ICMPv6 type {msg.type} is not Parameter Problem")
    pointer: int = _U32.unpack(msg.rest)[0]
    return pointer


def error_quote(packet: BytesLike) -> bytes:
    """What an error message carries of its invoking packet (RFC 4443 section 2.4 (c))."""
    return bytes(byte_view(packet)[:MAX_ERROR_QUOTE])


def may_send_error(invoking: IPv6Header, *, invoking_is_error: bool,
                   to_multicast_allowed: bool = False) -> bool:
    """Whether an ICMPv6 error may answer the packet whose header is ``invoking``
    (RFC 4443 section 2.4 (e); the rate limit (f) is the caller's).

    ``invoking_is_error``: the invoking packet is itself an ICMPv6 error (e.1).
    ``to_multicast_allowed``: the error is one of the two exceptions to (e.2), a
    Packet Too Big or a Parameter Problem code 2 for an option type starting 10.
    """
    if invoking_is_error:
        return False  # (e.1)
    if is_multicast(invoking.dst) and not to_multicast_allowed:
        return False  # (e.2); on a TUN there is no link-layer multicast (e.3, e.4)
    # (e.5): a source that does not identify a single node. (No anycast address is
    # configured here, so none is known to be one.)
    src = invoking.src
    return not (src == "::" or is_multicast(src))


@dataclass(slots=True)
class QuotedPacket:
    """What an ICMPv6 error says about the packet it answers: its addresses, the
    upper-layer protocol and the first octets of its upper-layer header."""

    src: str
    dst: str
    next_header: int
    transport: memoryview


def parse_quote(quote: BytesLike) -> QuotedPacket | None:
    """Find the upper-layer header in the invoking packet an error quotes
    (RFC 4443 section 2.4 (d)).

    The quote is truncated, so its Payload Length is not checked against its size.
    Returns None when the upper-layer header is not in the quote (then the error
    is dropped after the IP layer, section 2.4 (d)) or the quote is not IPv6.
    """
    view = byte_view(quote)
    if len(view) < IPV6_HEADER_LEN or view[0] >> 4 != 6:
        return None
    found = skip_headers(view)
    if found is None:
        return None
    next_header, at = found
    src = socket.inet_ntop(socket.AF_INET6, bytes(view[8:24]))
    dst = socket.inet_ntop(socket.AF_INET6, bytes(view[24:40]))
    return QuotedPacket(src, dst, next_header, view[at:])


def is_icmpv6_error_packet(packet: BytesLike) -> bool:
    """Whether an IPv6 packet carries an ICMPv6 error message (section 2.4 (e.1))."""
    found = skip_headers(packet)
    if found is None:
        return False
    next_header, at = found
    view = byte_view(packet)
    return next_header == IPPROTO_ICMPV6 and at < len(view) and is_error(view[at])
