"""TCP header and options (RFC 9293 sections 3.1-3.2, RFC 7323, RFC 2018)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from stack.wire.checksum import (
    BytesLike,
    byte_view,
    ones_complement_sum,
    pseudo_header_sum,
)
from stack.wire.errors import WireError
from stack.wire.ipv4 import IPPROTO_TCP

__all__ = [
    "ACK",
    "CWR",
    "ECE",
    "FIN",
    "MAX_OPTIONS_LEN",
    "MAX_SACK_BLOCKS",
    "MAX_WSCALE",
    "OPT_EOL",
    "OPT_EXP",
    "OPT_FASTOPEN",
    "OPT_MSS",
    "OPT_NOP",
    "OPT_SACK",
    "OPT_SACK_PERMITTED",
    "OPT_TIMESTAMP",
    "OPT_WSCALE",
    "PSH",
    "RST",
    "SYN",
    "TCP_MIN_HEADER_LEN",
    "URG",
    "TCPOptions",
    "TCPSegment",
    "build_tcp",
    "build_tcp_header",
    "encode_options",
    "parse_options",
    "parse_tcp",
]

# RFC 9293 section 3.1 "Control bits" (ECE/CWR from RFC 3168 section 6.1).
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

# flags_str() letter order: F S R P A U E C.
_FLAG_LETTERS = (
    (FIN, "F"),
    (SYN, "S"),
    (RST, "R"),
    (PSH, "P"),
    (ACK, "A"),
    (URG, "U"),
    (ECE, "E"),
    (CWR, "C"),
)

# RFC 9293 section 3.2 option kinds; RFC 7323 (window scale, timestamps);
# RFC 2018 (SACK-permitted, SACK).
OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8
# RFC 7413 section 4.1.1: TCP Fast Open Cookie, kind 34; before that code point was
# assigned, the experimental kind 254 with ExID 0xF989 (RFC 6994), which Linux still
# understands (and sends with TCP_FASTOPEN_CONNECT when asked to).
OPT_FASTOPEN = 34
OPT_EXP = 254
FASTOPEN_EXID = 0xF989
# RFC 7413 section 4.1.1: a cookie is 4 to 16 bytes, an even number; none is a request.
FASTOPEN_COOKIE_MIN = 4
FASTOPEN_COOKIE_MAX = 16

TCP_MIN_HEADER_LEN = 20
# RFC 9293 section 3.1 "Data Offset": at most 15 words, i.e. 40 bytes of options.
MAX_OPTIONS_LEN = 40
# RFC 7323 section 2.3: the shift count is limited to 14.
MAX_WSCALE = 14
# RFC 2018 section 3: at most 4 SACK blocks fit in the option space.
MAX_SACK_BLOCKS = 4

# RFC 9293 section 3.1: ports, sequence number, acknowledgment number,
# data offset/reserved, control bits, window, checksum, urgent pointer.
_TCP_HDR = struct.Struct("!HHIIBBHHH")
_CHECKSUM_OFFSET = 16
_U16 = struct.Struct("!H")
_TS_VALUES = struct.Struct("!II")
_MSS_OPT = struct.Struct("!BBH")
_TS_OPT = struct.Struct("!BBII")
_SACK_EDGES = tuple(struct.Struct(f"!{2 * n}I") for n in range(MAX_SACK_BLOCKS + 1))

# Fixed option encodings (layout as Linux sends it, RFC 7323 Appendix A).
_NOP_NOP = bytes((OPT_NOP, OPT_NOP))
_SACK_PERM_OPT = bytes((OPT_SACK_PERMITTED, 2))

_CHECKSUM_MODES = ("full", "partial", "none")


@dataclass(slots=True)
class TCPOptions:
    """The TCP options this stack understands.

    ``wscale`` is the shift count (already limited to 14 by the parser),
    ``sack_blocks`` are ``(left_edge, right_edge)`` sequence numbers and
    ``timestamp`` is ``(TSval, TSecr)``. ``fastopen`` is the Fast Open cookie
    (RFC 7413): None when the option is absent, ``b""`` for a cookie request;
    ``fastopen_exp`` says it came (or is to go) in the experimental form, kind 254.
    ``fastopen_malformed``: a Fast Open option was there with a cookie length RFC 7413
    4.1.1 does not allow (it is ignored: ``fastopen`` stays None).
    """

    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: list[tuple[int, int]] = field(default_factory=list)
    timestamp: tuple[int, int] | None = None
    fastopen: bytes | None = None
    fastopen_exp: bool = False
    fastopen_malformed: bool = False


@dataclass(slots=True)
class TCPSegment:
    """A TCP segment: header fields, parsed options and payload.

    ``window`` is the raw 16-bit field (unscaled).  After :func:`parse_tcp`,
    ``payload`` is a memoryview into the received buffer.  ``ecn`` is not a TCP
    field: it is the IP header's ECN codepoint (RFC 3168 section 5) that the segment
    arrived with or is to be sent with, carried beside it by the host (IPv4 TOS or
    IPv6 traffic class, whichever family). ``dscp`` and ``ttl``, on the way out only,
    are the other IP header fields the connection asks for (IP_TOS, IP_TTL).
    """

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    urgent: int = 0
    options: TCPOptions = field(default_factory=TCPOptions)
    payload: bytes | memoryview = b""
    ecn: int = 0
    dscp: int = 0  # the rest of the IP TOS / Traffic Class byte (ECN bits zero)
    ttl: int = 0  # the IP TTL / Hop Limit to send with; 0: the host's default

    @property
    def syn(self) -> bool:
        """SYN control bit."""
        return bool(self.flags & SYN)

    @property
    def fin(self) -> bool:
        """FIN control bit."""
        return bool(self.flags & FIN)

    @property
    def rst(self) -> bool:
        """RST control bit."""
        return bool(self.flags & RST)

    @property
    def psh(self) -> bool:
        """PSH control bit."""
        return bool(self.flags & PSH)

    @property
    def ack_flag(self) -> bool:
        """ACK control bit (``ack`` is the acknowledgment number)."""
        return bool(self.flags & ACK)

    @property
    def seg_len(self) -> int:
        """Sequence space consumed: payload length plus one each for SYN and FIN
        (RFC 9293 section 3.4 "SEG.LEN")."""
        return len(self.payload) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)

    def flags_str(self) -> str:
        """Set flags as letters in the order F S R P A U E C, e.g. ``"SA"``, ``"FA"``."""
        return "".join(letter for bit, letter in _FLAG_LETTERS if self.flags & bit)


def _bad_option(detail: str) -> WireError:
    return WireError("bad_tcp_option", detail)


_NOP_NOP_TS = bytes((1, 1, 8, 10))


def parse_options(data: BytesLike) -> TCPOptions:
    """Parse the option bytes of a TCP header (everything after the fixed 20 bytes).

    Unknown options are skipped using their length byte; a malformed option list
    raises :class:`WireError` with reason ``"bad_tcp_option"``.
    """
    view = byte_view(data)
    end = len(view)
    # Fast path: what nearly every segment of an established connection carries,
    # NOP NOP Timestamps (RFC 7323 appendix A layout).
    if end == 12 and view[:4] == _NOP_NOP_TS:
        return TCPOptions(timestamp=_TS_VALUES.unpack_from(view, 4))
    opts = TCPOptions()
    i = 0
    while i < end:
        kind = view[i]
        # RFC 9293 section 3.2: End of Option List ends the list; the rest is padding.
        if kind == OPT_EOL:
            break
        # RFC 9293 section 3.2: No-Operation is a single octet.
        if kind == OPT_NOP:
            i += 1
            continue
        # RFC 9293 section 3.2: every other option has a length octet that counts
        # the kind and length octets, so it is at least 2 ...
        if i + 1 >= end:
            raise _bad_option(f"kind {kind} at offset {i} has no length octet")
        length = view[i + 1]
        if length < 2:
            raise _bad_option(f"kind {kind} at offset {i} has length {length}")
        # ... and the option must lie within the header (RFC 9293 section 3.2: be
        # prepared for illegal option lengths; RFC 1122 section 4.2.2.5).
        if i + length > end:
            raise _bad_option(f"kind {kind} at offset {i} length {length} runs past header")
        if kind == OPT_MSS:
            # RFC 9293 section 3.2: Maximum Segment Size, kind 2, length 4.
            if length != 4:
                raise _bad_option(f"MSS length {length}")
            opts.mss = _U16.unpack_from(view, i + 2)[0]
        elif kind == OPT_WSCALE:
            # RFC 7323 section 2.2: Window Scale, kind 3, length 3.
            if length != 3:
                raise _bad_option(f"window scale length {length}")
            # RFC 7323 section 2.3: a shift count above 14 MUST be treated as 14.
            opts.wscale = min(view[i + 2], MAX_WSCALE)
        elif kind == OPT_SACK_PERMITTED:
            # RFC 2018 section 2: SACK-Permitted, kind 4, length 2.
            if length != 2:
                raise _bad_option(f"SACK-permitted length {length}")
            opts.sack_permitted = True
        elif kind == OPT_SACK:
            # RFC 2018 section 3: SACK, kind 5, length 2 + 8n; n is 1..4 because of
            # the 40-byte option space.
            nblocks, rest = divmod(length - 2, 8)
            if rest or not 1 <= nblocks <= MAX_SACK_BLOCKS:
                raise _bad_option(f"SACK length {length}")
            edges = _SACK_EDGES[nblocks].unpack_from(view, i + 2)
            opts.sack_blocks = list(zip(edges[0::2], edges[1::2], strict=True))
        elif kind == OPT_TIMESTAMP:
            # RFC 7323 section 3.2: Timestamps, kind 8, length 10 (TSval, TSecr).
            if length != 10:
                raise _bad_option(f"timestamps length {length}")
            tsval, tsecr = _TS_VALUES.unpack_from(view, i + 2)
            opts.timestamp = (tsval, tsecr)
        elif kind == OPT_FASTOPEN:
            cookie = _fastopen_cookie(view, i + 2, i + length)
            if cookie is not None:
                opts.fastopen = cookie
                opts.fastopen_exp = False
                opts.fastopen_malformed = False
            elif opts.fastopen is None:
                opts.fastopen_malformed = True
        elif kind == OPT_EXP and length >= 4 and _U16.unpack_from(view, i + 2)[0] == FASTOPEN_EXID:
            # RFC 6994 section 3: kind 254, length, the 16-bit ExID, then the data.
            if opts.fastopen is None:  # the standard form wins if both are there
                opts.fastopen = _fastopen_cookie(view, i + 4, i + length)
                opts.fastopen_exp = True
                opts.fastopen_malformed = opts.fastopen is None
        # RFC 9293 section 3.2 / RFC 1122 section 4.2.2.5: unknown options are
        # ignored, skipped using their length.
        i += length
    return opts


def _fastopen_cookie(view: memoryview, start: int, end: int) -> bytes | None:
    """RFC 7413 section 4.1.1: the cookie of a Fast Open option (b"" = a request).
    A cookie length other than 0 or an even 4..16 makes the option meaningless: it is
    ignored (None), as Linux does, and the segment is not dropped for it."""
    n = end - start
    if n and (n % 2 or not FASTOPEN_COOKIE_MIN <= n <= FASTOPEN_COOKIE_MAX):
        return None
    return bytes(view[start:end])


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{name} {value} is not a 32-bit unsigned value")


def encode_options(options: TCPOptions) -> bytes:
    """Encode ``options`` the way Linux lays them out, padded to a 4-byte multiple.

    A SYN's options come out as ``MSS, SACK_PERM, TS, NOP, WS``; other segments as
    ``NOP, NOP, TS`` then ``NOP, NOP, SACK``.  Without timestamps SACK-permitted is
    sent as ``NOP, NOP, SACK_PERM``.  SACK blocks that do not fit in the 40-byte
    option space are dropped from the end (the first block is the most recent,
    RFC 2018 section 4).  Out-of-range values raise :class:`ValueError`.
    """
    ts = options.timestamp
    if (
        ts is not None
        and options.mss is None
        and options.wscale is None
        and not options.sack_permitted
        and not options.sack_blocks
        and options.fastopen is None
    ):
        # Fast path: the NOP NOP TS of nearly every established-connection segment.
        # (struct.error, a ValueError, reports TSval/TSecr outside 32 bits.)
        try:
            return _NOP_NOP_TS + _TS_VALUES.pack(ts[0], ts[1])
        except struct.error:
            _check_u32("TSval", ts[0])
            _check_u32("TSecr", ts[1])
            raise
    parts: list[bytes] = []
    if options.mss is not None:
        # RFC 9293 section 3.2: MSS is a 16-bit value.
        if not 0 <= options.mss <= 0xFFFF:
            raise ValueError(f"MSS {options.mss} out of range")
        parts.append(_MSS_OPT.pack(OPT_MSS, 4, options.mss))
    if options.timestamp is not None:
        tsval, tsecr = options.timestamp
        _check_u32("TSval", tsval)
        _check_u32("TSecr", tsecr)
        # RFC 7323 Appendix A: NOP, NOP, TS keeps the timestamps 4-byte aligned;
        # on a SYN, SACK_PERM takes the place of the two NOPs.
        parts.append(_SACK_PERM_OPT if options.sack_permitted else _NOP_NOP)
        parts.append(_TS_OPT.pack(OPT_TIMESTAMP, 10, tsval, tsecr))
    elif options.sack_permitted:
        parts.append(_NOP_NOP + _SACK_PERM_OPT)
    if options.wscale is not None:
        # RFC 7323 section 2.3: the shift count is 0..14.
        if not 0 <= options.wscale <= MAX_WSCALE:
            raise ValueError(f"window scale {options.wscale} out of range")
        parts.append(bytes((OPT_NOP, OPT_WSCALE, 3, options.wscale)))
    if options.sack_blocks:
        used = sum(map(len, parts))
        # RFC 2018 section 3: NOP, NOP, kind, length, then 8 bytes per block; keep
        # within the 40-byte option space (RFC 9293 section 3.1 "Data Offset").
        room = (MAX_OPTIONS_LEN - used - 4) // 8
        nblocks = min(len(options.sack_blocks), MAX_SACK_BLOCKS, room)
        if nblocks > 0:
            edges: list[int] = []
            for left, right in options.sack_blocks[:nblocks]:
                _check_u32("SACK left edge", left)
                _check_u32("SACK right edge", right)
                edges += (left, right)
            parts.append(bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * nblocks)))
            parts.append(_SACK_EDGES[nblocks].pack(*edges))
    cookie = options.fastopen
    if cookie is not None:
        n = len(cookie)
        if n and (n % 2 or not FASTOPEN_COOKIE_MIN <= n <= FASTOPEN_COOKIE_MAX):
            raise ValueError(f"Fast Open cookie length {n}")
        if options.fastopen_exp:  # RFC 6994 section 3 (the form Linux sends as well)
            option = bytes((OPT_EXP, 4 + n)) + _U16.pack(FASTOPEN_EXID) + cookie
        else:  # RFC 7413 section 4.1.1
            option = bytes((OPT_FASTOPEN, 2 + n)) + cookie
        parts.append(option + bytes((OPT_NOP,)) * (-len(option) % 4))
    encoded = b"".join(parts)
    # RFC 9293 section 3.1 "Padding": zeros up to a 32-bit boundary.
    return encoded + bytes(-len(encoded) % 4)


def parse_tcp(buf: BytesLike, src: str, dst: str, verify_checksum: bool = True) -> TCPSegment:
    """Parse a TCP segment (the IP payload) sent from ``src`` to ``dst``.

    The payload is returned as a memoryview slice of ``buf``.  Raises
    :class:`WireError` for a truncated header, bad data offset, bad checksum
    (when ``verify_checksum``) or malformed options.
    """
    view = byte_view(buf)
    size = len(view)
    # RFC 9293 section 3.1: the fixed header is 20 octets.
    if size < TCP_MIN_HEADER_LEN:
        raise WireError("truncated_tcp_header", f"{size} bytes")
    (src_port, dst_port, seq, ack, offset_byte, flags, window, checksum, urgent) = (
        _TCP_HDR.unpack_from(view)
    )
    # RFC 9293 section 3.1 "Data Offset": header length in 32-bit words, at least 5.
    # The 4 reserved bits after it are ignored on receipt (RFC 9293 section 3.1 "Rsrvd").
    data_offset = offset_byte >> 4
    if data_offset < 5:
        raise WireError("bad_tcp_data_offset", str(data_offset))
    header_length = data_offset * 4
    if header_length > size:
        raise WireError("truncated_tcp_header", f"data offset {data_offset} but {size} bytes")
    # RFC 9293 section 3.1 "Checksum" covers pseudo-header, header and data;
    # RFC 1122 section 4.2.2.7: a segment with a bad checksum is silently discarded.
    if verify_checksum:
        pseudo = pseudo_header_sum(src, dst, IPPROTO_TCP, size)
        if ones_complement_sum(view, pseudo) != 0xFFFF:
            raise WireError("bad_tcp_checksum", f"0x{checksum:04x}")
    if header_length > TCP_MIN_HEADER_LEN:
        options = parse_options(view[TCP_MIN_HEADER_LEN:header_length])
    else:
        options = TCPOptions()
    return TCPSegment(
        src_port=src_port,
        dst_port=dst_port,
        seq=seq,
        ack=ack,
        flags=flags,
        window=window,
        urgent=urgent,
        options=options,
        payload=view[header_length:],
    )


def build_tcp_header(seg: TCPSegment, src: str, dst: str, checksum: str = "full") -> bytes:
    """Build the TCP header (with options) for ``seg`` sent from ``src`` to ``dst``.

    ``checksum`` selects the checksum field: ``"full"`` covers the pseudo-header,
    header and ``seg.payload``; ``"partial"`` stores only the folded pseudo-header
    sum (not inverted) for the kernel to finish (virtio ``NEEDS_CSUM``); ``"none"``
    leaves it zero.  Raises :class:`ValueError` for out-of-range fields.
    """
    if checksum not in _CHECKSUM_MODES:
        raise ValueError(f"checksum mode {checksum!r} not one of {_CHECKSUM_MODES}")
    opts = encode_options(seg.options)
    header_length = TCP_MIN_HEADER_LEN + len(opts)
    try:
        fixed = _TCP_HDR.pack(
            seg.src_port,
            seg.dst_port,
            seg.seq,
            seg.ack,
            (header_length // 4) << 4,  # data offset; reserved bits zero (RFC 9293 3.1)
            seg.flags,
            seg.window,
            0,  # checksum filled in below
            seg.urgent,
        )
    except struct.error as exc:
        raise ValueError(f"TCP header field out of range: {exc}") from exc
    header = bytearray(fixed + opts)
    if checksum == "none":
        return bytes(header)
    # RFC 9293 section 3.1 "Checksum": the TCP length in the pseudo-header is
    # header plus data.
    pseudo = pseudo_header_sum(src, dst, IPPROTO_TCP, header_length + len(seg.payload))
    if checksum == "partial":
        value = pseudo
    else:
        # The header length is a multiple of 4, so the payload's words continue
        # on a 16-bit boundary and the sums can be chained.
        value = ~ones_complement_sum(seg.payload, ones_complement_sum(header, pseudo)) & 0xFFFF
    _U16.pack_into(header, _CHECKSUM_OFFSET, value)
    return bytes(header)


def build_tcp(seg: TCPSegment, src: str, dst: str, checksum: str = "full") -> bytes:
    """Build a complete TCP segment (header, options and payload)."""
    return build_tcp_header(seg, src, dst, checksum) + seg.payload
