"""UDP datagrams (RFC 768, RFC 1122 section 4.1.3; over IPv6, RFC 8200 section 8.1)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stack.wire.checksum import BytesLike, byte_view, ones_complement_sum, pseudo_header_sum
from stack.wire.errors import WireError
from stack.wire.ipv4 import IPPROTO_UDP

__all__ = ["UDP_HEADER_LEN", "UDPDatagram", "build_udp", "parse_udp"]

UDP_HEADER_LEN = 8

# RFC 768 "Format": source port, destination port, length, checksum.
_UDP_HDR = struct.Struct("!HHHH")
_CHECKSUM_OFFSET = 6


@dataclass(slots=True)
class UDPDatagram:
    """A parsed UDP datagram; ``payload`` is a memoryview after :func:`parse_udp`.

    ``checksum`` is the received field; 0 means the sender computed none.
    """

    src_port: int
    dst_port: int
    length: int
    checksum: int
    payload: bytes | memoryview


def parse_udp(buf: BytesLike, src: str, dst: str, verify_checksum: bool = True) -> UDPDatagram:
    """Parse a UDP datagram (the IP payload) sent from ``src`` to ``dst``.

    Bytes beyond the UDP length field are ignored.  Raises :class:`WireError`
    for a truncated header, a bad length or a bad checksum.
    """
    view = byte_view(buf)
    size = len(view)
    # RFC 768 "Format": the header is 8 octets.
    if size < UDP_HEADER_LEN:
        raise WireError("truncated_udp_header", f"{size} bytes")
    src_port, dst_port, length, checksum = _UDP_HDR.unpack_from(view)
    # RFC 768 "Length": counts header and data, so the minimum value is 8.
    if length < UDP_HEADER_LEN:
        raise WireError("bad_udp_length", str(length))
    # RFC 768 "Length": the datagram must be complete in the IP payload.
    if length > size:
        raise WireError("truncated_udp_datagram", f"length {length} > {size} bytes")
    datagram = view[:length]
    # RFC 768 "Checksum": an all-zero field means no checksum was computed (IPv4 only).
    # RFC 1122 section 4.1.3.4: a non-zero checksum MUST be verified and a datagram
    # with a bad checksum silently discarded.
    if verify_checksum:
        if checksum != 0:
            pseudo = pseudo_header_sum(src, dst, IPPROTO_UDP, length)
            if ones_complement_sum(datagram, pseudo) != 0xFFFF:
                raise WireError("bad_udp_checksum", f"0x{checksum:04x}")
        elif ":" in src:
            # RFC 8200 section 8.1: over IPv6 the UDP checksum is not optional, and a
            # receiver must discard a datagram whose checksum field is zero.
            raise WireError("zero_udp_checksum", "a UDP/IPv6 datagram must have a checksum")
    return UDPDatagram(src_port, dst_port, length, checksum, datagram[UDP_HEADER_LEN:])


def build_udp(src: str, dst: str, sport: int, dport: int, payload: BytesLike) -> bytes:
    """Build a UDP datagram from ``src``:``sport`` to ``dst``:``dport`` with its checksum.

    The addresses are IPv4 or IPv6 text (the pseudo-header follows the family).

    Raises :class:`ValueError` for out-of-range ports or an oversized payload.
    """
    length = UDP_HEADER_LEN + len(payload)
    # RFC 768 "Length": a 16-bit field.
    if length > 0xFFFF:
        raise ValueError(f"UDP payload of {len(payload)} bytes is too large")
    try:
        header = bytearray(_UDP_HDR.pack(sport, dport, length, 0))
    except struct.error as exc:
        raise ValueError(f"UDP header field out of range: {exc}") from exc
    # RFC 768 "Checksum": over pseudo-header, header and data (padded to even length).
    total = ones_complement_sum(
        payload, ones_complement_sum(header, pseudo_header_sum(src, dst, IPPROTO_UDP, length))
    )
    # RFC 768 "Checksum": a computed checksum of zero is transmitted as all ones,
    # because zero means "no checksum".
    checksum = (~total & 0xFFFF) or 0xFFFF
    struct.pack_into("!H", header, _CHECKSUM_OFFSET, checksum)
    return bytes(header) + payload
