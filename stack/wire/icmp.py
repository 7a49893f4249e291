"""ICMP messages (RFC 792; RFC 1191 for the next-hop MTU)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stack.wire.checksum import BytesLike, byte_view, internet_checksum, ones_complement_sum
from stack.wire.errors import WireError

__all__ = [
    "DEST_UNREACH",
    "ECHO_REPLY",
    "ECHO_REQUEST",
    "ICMP_HEADER_LEN",
    "TIME_EXCEEDED",
    "TIME_EXCEEDED_REASSEMBLY",
    "TIME_EXCEEDED_TTL",
    "UNREACH_FRAG_NEEDED",
    "UNREACH_HOST",
    "UNREACH_NET",
    "UNREACH_PORT",
    "UNREACH_PROTO",
    "ICMPMessage",
    "build_icmp",
    "echo_id_seq",
    "echo_rest",
    "frag_needed_rest",
    "next_hop_mtu",
    "parse_icmp",
]

# RFC 792 message types.
ECHO_REPLY = 0
DEST_UNREACH = 3
ECHO_REQUEST = 8
TIME_EXCEEDED = 11

# RFC 792 "Destination Unreachable Message" codes.
UNREACH_NET = 0
UNREACH_HOST = 1
UNREACH_PROTO = 2
UNREACH_PORT = 3
UNREACH_FRAG_NEEDED = 4  # fragmentation needed and DF set (RFC 1191 section 4)

# RFC 792 "Time Exceeded Message" codes.
TIME_EXCEEDED_TTL = 0
TIME_EXCEEDED_REASSEMBLY = 1

ICMP_HEADER_LEN = 8

# RFC 792: type, code, checksum, then 4 type-specific octets ("rest of header").
_ICMP_HDR = struct.Struct("!BBH4s")
_CHECKSUM_OFFSET = 2
_ID_SEQ = struct.Struct("!HH")
# RFC 1191 section 4: 16 unused bits, then the 16-bit Next-Hop MTU.
_NEXT_HOP_MTU = struct.Struct("!HH")


@dataclass(slots=True)
class ICMPMessage:
    """A parsed ICMP message.

    ``rest`` is the 4 type-specific header bytes (identifier/sequence for echo,
    unused/next-hop MTU for frag-needed).  For error messages ``payload`` holds the
    original IP header and at least 8 bytes of its data (RFC 792).
    """

    type: int
    code: int
    checksum: int
    rest: bytes
    payload: bytes | memoryview


def parse_icmp(buf: BytesLike) -> ICMPMessage:
    """Parse an ICMP message (the IP payload) and verify its checksum.

    Raises :class:`WireError` for a truncated message or a bad checksum.
    """
    view = byte_view(buf)
    # RFC 792: every message starts with an 8-octet header.
    if len(view) < ICMP_HEADER_LEN:
        raise WireError("truncated_icmp", f"{len(view)} bytes")
    icmp_type, code, checksum, rest = _ICMP_HDR.unpack_from(view)
    # RFC 792 "Checksum": the one's complement sum over the whole ICMP message
    # (RFC 1122 section 3.2.2: messages with a bad checksum are discarded).
    if internet_checksum(view) != 0:
        raise WireError("bad_icmp_checksum", f"0x{checksum:04x}")
    return ICMPMessage(icmp_type, code, checksum, rest, view[ICMP_HEADER_LEN:])


def build_icmp(type: int, code: int, rest: bytes, payload: BytesLike) -> bytes:
    """Build an ICMP message with its checksum.

    ``rest`` must be exactly the 4 type-specific header bytes (see
    :func:`echo_rest`, :func:`frag_needed_rest`).  Raises :class:`ValueError`
    for bad arguments.
    """
    if len(rest) != 4:
        raise ValueError(f"ICMP rest-of-header must be 4 bytes, got {len(rest)}")
    try:
        header = bytearray(_ICMP_HDR.pack(type, code, 0, bytes(rest)))
    except struct.error as exc:
        raise ValueError(f"ICMP header field out of range: {exc}") from exc
    # RFC 792 "Checksum": computed with the checksum field zero, over header and data.
    checksum = ~ones_complement_sum(payload, ones_complement_sum(header)) & 0xFFFF
    struct.pack_into("!H", header, _CHECKSUM_OFFSET, checksum)
    return bytes(header) + payload


def echo_rest(ident: int, seq: int) -> bytes:
    """The 4 rest-of-header bytes of an echo request/reply (RFC 792 "Echo")."""
    return _ID_SEQ.pack(ident, seq)


def frag_needed_rest(mtu: int) -> bytes:
    """The 4 rest-of-header bytes of a frag-needed message (RFC 1191 section 4)."""
    return _NEXT_HOP_MTU.pack(0, mtu)


def echo_id_seq(msg: ICMPMessage) -> tuple[int, int]:
    """Return ``(identifier, sequence number)`` of an echo request or reply.

    Raises :class:`ValueError` for other message types.
    """
    # RFC 792 "Echo or Echo Reply Message": identifier and sequence number follow
    # the checksum.
    if msg.type not in (ECHO_REQUEST, ECHO_REPLY):
        raise ValueError(f"ICMP type {msg.type} is not an echo message")
    ident, seq = _ID_SEQ.unpack(msg.rest)
    return ident, seq


def next_hop_mtu(msg: ICMPMessage) -> int:
    """Return the Next-Hop MTU of a "fragmentation needed and DF set" message.

    RFC 1191 section 4: the low-order 16 bits of the rest-of-header; 0 means a
    router that predates RFC 1191, and the host must estimate (section 5).
    Raises :class:`ValueError` for other message types.
    """
    if msg.type != DEST_UNREACH or msg.code != UNREACH_FRAG_NEEDED:
        raise ValueError(f"ICMP type {msg.type} code {msg.code} is not frag-needed")
    mtu: int = _NEXT_HOP_MTU.unpack(msg.rest)[1]
    return mtu
