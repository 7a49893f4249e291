"""IPv4 header parsing and building (RFC 791 section 3.1, RFC 1122 section 3.2.1)."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from stack.wire.checksum import BytesLike, byte_view, ones_complement_sum
from stack.wire.errors import WireError

__all__ = [
    "DEFAULT_TTL",
    "IPPROTO_ICMP",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "IPV4_MIN_HEADER_LEN",
    "IPv4Header",
    "build_ipv4_header",
    "parse_ipv4",
]

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
DEFAULT_TTL = 64  # what Linux sends (net.ipv4.ip_default_ttl); RFC 1700's recommended value

IPV4_MIN_HEADER_LEN = 20
IPV4_MAX_TOTAL_LEN = 0xFFFF

# RFC 791 section 3.1: version/IHL, type of service, total length, identification,
# flags/fragment offset, time to live, protocol, header checksum, source, destination.
_IPV4_HDR = struct.Struct("!BBHHHBBH4s4s")
_CHECKSUM_OFFSET = 10

# RFC 791 section 3.1 "Flags": bit 0 reserved, bit 1 DF, bit 2 MF; the remaining
# 13 bits are the fragment offset in units of 8 octets.
_FLAG_DF = 0x4000
_FLAG_MF = 0x2000
_FRAG_MASK = 0x1FFF


@dataclass(slots=True)
class IPv4Header:
    """A parsed IPv4 header.  ``frag_offset`` is in bytes (already multiplied by 8)."""

    version: int
    ihl: int
    tos: int
    total_length: int
    ident: int
    dont_fragment: bool
    more_fragments: bool
    frag_offset: int
    ttl: int
    proto: int
    checksum: int
    src: str
    dst: str
    options: bytes = b""

    @property
    def header_length(self) -> int:
        """Header length in bytes (IHL counts 32-bit words)."""
        return self.ihl * 4

    @property
    def is_fragment(self) -> bool:
        """True for any fragment of a fragmented datagram (MF set or offset != 0)."""
        return self.more_fragments or self.frag_offset != 0


def parse_ipv4(packet: BytesLike) -> tuple[IPv4Header, memoryview]:
    """Parse and validate an IPv4 packet.

    Returns the header and a memoryview of the payload (``total_length`` minus the
    header; bytes after ``total_length``, e.g. link-layer padding, are ignored).
    Raises :class:`WireError` for a malformed header.  IP options are returned
    raw and not interpreted (RFC 1122 section 3.2.1.8: unknown options are ignored).
    """
    view = byte_view(packet)
    size = len(view)
    # RFC 791 section 3.1: the fixed part of the header is 20 octets.
    if size < IPV4_MIN_HEADER_LEN:
        raise WireError("truncated_ip_header", f"{size} bytes")
    (ver_ihl, tos, total_length, ident, flags_frag, ttl, proto, checksum, src, dst) = (
        _IPV4_HDR.unpack_from(view)
    )
    version = ver_ihl >> 4
    ihl = ver_ihl & 0x0F
    # RFC 1122 section 3.2.1.1: a datagram whose version is not 4 MUST be silently discarded.
    if version != 4:
        raise WireError("bad_ip_version", str(version))
    # RFC 791 section 3.1 "IHL": the minimum value for a correct header is 5.
    if ihl < 5:
        raise WireError("bad_ip_ihl", str(ihl))
    header_length = ihl * 4
    # RFC 791 section 3.1 "IHL": the header (with options) must be present.
    if header_length > size:
        raise WireError("truncated_ip_header", f"IHL {ihl} but {size} bytes")
    # RFC 1122 section 3.2.1.2: a host MUST verify the header checksum and silently
    # discard a datagram with a bad checksum (RFC 791 section 3.1 "Header Checksum").
    # (A correct header's words sum to 0xFFFF in one's complement, i.e. to a multiple
    # of 0xFFFF as an integer: 2**16 = 1 mod 0xFFFF, so the big-endian integer of the
    # header is congruent to the sum of its 16-bit words. Version 4 rules out zero.)
    if int.from_bytes(view[:header_length], "big") % 0xFFFF != 0:
        raise WireError("bad_ip_checksum", f"0x{checksum:04x}")
    # RFC 791 section 3.1 "Total Length": header plus data, so never below the header.
    if total_length < header_length:
        raise WireError("bad_ip_total_length", f"{total_length} < header {header_length}")
    # RFC 791 section 3.1 "Total Length": the datagram must be complete in the buffer.
    if total_length > size:
        raise WireError("truncated_ip_packet", f"total length {total_length} > {size} bytes")
    # RFC 791 section 3.1 "Flags": bit 0 is reserved (must be zero when sent); it is
    # ignored on receipt (RFC 1122 section 1.2.2, robustness principle).
    header = IPv4Header(
        version=version,
        ihl=ihl,
        tos=tos,
        total_length=total_length,
        ident=ident,
        dont_fragment=bool(flags_frag & _FLAG_DF),
        more_fragments=bool(flags_frag & _FLAG_MF),
        # RFC 791 section 3.1 "Fragment Offset": measured in units of 8 octets.
        frag_offset=(flags_frag & _FRAG_MASK) * 8,
        ttl=ttl,
        proto=proto,
        checksum=checksum,
        src=socket.inet_ntoa(src),
        dst=socket.inet_ntoa(dst),
        options=bytes(view[IPV4_MIN_HEADER_LEN:header_length]),
    )
    return header, view[header_length:total_length]


def build_ipv4_header(
    src: str,
    dst: str,
    proto: int,
    payload_len: int,
    ident: int,
    ttl: int = DEFAULT_TTL,
    df: bool = True,
    tos: int = 0,
    mf: bool = False,
    frag_offset: int = 0,
) -> bytes:
    """Build a 20-byte IPv4 header (no options) with its checksum filled in.

    ``frag_offset`` is in bytes and must be a multiple of 8.  Raises
    :class:`ValueError` for arguments that do not fit the header fields.
    """
    total_length = IPV4_MIN_HEADER_LEN + payload_len
    # RFC 791 section 3.1 "Total Length": a 16-bit field.
    if payload_len < 0 or total_length > IPV4_MAX_TOTAL_LEN:
        raise ValueError(f"IPv4 payload length {payload_len} out of range")
    # RFC 791 section 3.1 "Fragment Offset": 13 bits in units of 8 octets.
    if frag_offset % 8 or not 0 <= frag_offset // 8 <= _FRAG_MASK:
        raise ValueError(f"fragment offset {frag_offset} is not a multiple of 8 in range")
    flags_frag = (_FLAG_DF if df else 0) | (_FLAG_MF if mf else 0) | (frag_offset // 8)
    try:
        header = bytearray(
            _IPV4_HDR.pack(
                0x45,  # version 4, IHL 5
                tos,
                total_length,
                ident,
                flags_frag,
                ttl,
                proto,
                0,  # checksum computed below
                socket.inet_aton(src),
                socket.inet_aton(dst),
            )
        )
    except struct.error as exc:
        raise ValueError(f"IPv4 header field out of range: {exc}") from exc
    # RFC 791 section 3.1 "Header Checksum": one's complement of the one's complement
    # sum of the header's 16-bit words, computed with the checksum field zero.
    struct.pack_into("!H", header, _CHECKSUM_OFFSET, ~ones_complement_sum(header) & 0xFFFF)
    return bytes(header)
