"""IPv6 header and extension headers (RFC 8200), flow labels (RFC 6437).

Pure functions, no I/O:

* :func:`parse_ipv6` validates the fixed 40-byte header (section 3) and returns it
  with the payload (``Payload Length`` bytes after the header);
* :func:`walk_headers` walks the extension header chain the way a destination host
  must (section 4): Hop-by-Hop Options only right after the IPv6 header, options
  handled by the two high-order bits of their type (section 4.2), Routing headers
  (section 4.4, type 0 treated as unknown per RFC 5095), Destination Options, and
  it stops at a Fragment header (section 4.5) or at the first header that is not an
  extension header (the upper-layer header, or an unknown Next Header value, which
  the caller turns into Parameter Problem code 1 when it does not know the protocol);
* builders for the fixed header and the extension headers;
* :func:`flow_label`, a per-flow label as RFC 6437 section 3 recommends.

A problem the RFC answers with an ICMPv6 Parameter Problem raises
:class:`ParameterProblem` (a :class:`WireError` that carries the code and pointer);
one it answers with a silent discard raises a plain :class:`WireError`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from stack.wire.checksum import BytesLike, byte_view
from stack.wire.errors import WireError

__all__ = [
    "IPPROTO_DSTOPTS",
    "IPPROTO_FRAGMENT",
    "IPPROTO_HOPOPTS",
    "IPPROTO_ICMPV6",
    "IPPROTO_NONE",
    "IPPROTO_ROUTING",
    "IPV6_HEADER_LEN",
    "IPV6_MIN_MTU",
    "MAX_EXTENSION_HEADERS",
    "MAX_OPTIONS_PER_HEADER",
    "PP_BAD_HEADER_FIELD",
    "PP_FIRST_FRAGMENT_INCOMPLETE",
    "PP_UNKNOWN_NEXT_HEADER",
    "PP_UNKNOWN_OPTION",
    "Chain",
    "FRAGMENT_HEADER_LEN",
    "FragmentHeader",
    "IPv6Header",
    "ParameterProblem",
    "build_fragment_header",
    "build_ipv6_header",
    "build_options_header",
    "build_routing_header",
    "flow_label",
    "is_multicast",
    "is_unspecified_or_loopback",
    "parse_ipv6",
    "process_options",
    "skip_headers",
    "walk_headers",
]

# IANA protocol numbers used as Next Header values (RFC 8200 section 4.1 lists the
# extension headers; 58 is ICMPv6, RFC 4443).
IPPROTO_HOPOPTS = 0
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60

IPV6_HEADER_LEN = 40
#: RFC 8200 section 5: every link has an MTU of at least 1280 octets.
IPV6_MIN_MTU = 1280

# ICMPv6 Parameter Problem codes (RFC 4443 section 3.4; code 3 is RFC 7112 section 6).
PP_BAD_HEADER_FIELD = 0
PP_UNKNOWN_NEXT_HEADER = 1
PP_UNKNOWN_OPTION = 2
PP_FIRST_FRAGMENT_INCOMPLETE = 3

# Processing limits. RFC 8200 sets none, but RFC 8504 section 5.3 lets a host bound
# what it walks (Linux: net.ipv6.max_{hbh,dst}_opts_cnt = 8): without a bound a 64 KiB
# packet of 8-byte headers or one-byte options costs thousands of Python steps.
MAX_EXTENSION_HEADERS = 16
MAX_OPTIONS_PER_HEADER = 8
MAX_PADDING_RUN = 7  # RFC 8504 section 5.3: more than 7 padding octets in a row: discard

_OPT_PAD1 = 0
_OPT_PADN = 1

# RFC 8200 section 3: version (4 bits), traffic class (8), flow label (20); payload
# length (16); next header (8); hop limit (8); source and destination (128 each).
_IPV6_HDR = struct.Struct("!IHBB16s16s")
_FLOW_MASK = 0xFFFFF
# RFC 8200 section 4.5: next header, reserved, offset (13 bits) / res (2) / M (1), id.
_FRAG_HDR = struct.Struct("!BBHI")
FRAGMENT_HEADER_LEN = 8

_MULTICAST_FIRST_BYTE = 0xFF  # RFC 4291 section 2.7: ff00::/8
V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96, RFC 4291 section 2.5.5.2
_inet_ntop = socket.inet_ntop
_inet_pton = socket.inet_pton
_AF_INET6 = socket.AF_INET6


class ParameterProblem(WireError):
    """A packet to discard with an ICMPv6 Parameter Problem (RFC 4443 section 3.4).

    ``code`` is one of the ``PP_*`` codes, ``pointer`` the offset in the invoking
    packet (from the start of its IPv6 header) of the octet where the problem was
    found.  ``to_multicast`` is True when the error may be sent even though the
    packet went to a multicast address (RFC 4443 section 2.4 (e.2): only for an
    unknown option whose type starts with the bits 10).
    """

    code: int
    pointer: int
    to_multicast: bool

    def __init__(self, reason: str, code: int, pointer: int, to_multicast: bool = False) -> None:
        super().__init__(reason, f"code {code} pointer {pointer}")
        self.code = code
        self.pointer = pointer
        self.to_multicast = to_multicast

    def __reduce__(self) -> tuple[type[ParameterProblem], tuple[str, int, int, bool]]:  # type: ignore[override]
        return (type(self), (self.reason, self.code, self.pointer, self.to_multicast))


@dataclass(slots=True)
class IPv6Header:
    """The fixed IPv6 header (RFC 8200 section 3); addresses in compressed text form."""

    traffic_class: int
    flow_label: int
    payload_length: int
    next_header: int
    hop_limit: int
    src: str
    dst: str

    @property
    def version(self) -> int:
        return 6

    @property
    def dscp(self) -> int:
        """Differentiated Services field: the upper 6 bits of the traffic class (RFC 2474)."""
        return self.traffic_class >> 2

    @property
    def ecn(self) -> int:
        """ECN field: the lower 2 bits of the traffic class (RFC 3168 section 5)."""
        return self.traffic_class & 3


def is_multicast(address: str) -> bool:
    """True for an IPv6 multicast address (ff00::/8, RFC 4291 section 2.7).

    ``address`` is IPv6 text; only a first group of four digits starting "ff" counts
    ("ff::1" is 00ff::1, a unicast address).
    """
    head = address.split(":", 1)[0]
    return len(head) == 4 and head[:2].lower() == "ff"


def parse_ipv6(packet: BytesLike) -> tuple[IPv6Header, memoryview]:
    """Parse and validate the fixed IPv6 header.

    Returns the header and a memoryview of the payload (``Payload Length`` octets
    after the 40-byte header; bytes beyond it, such as link padding, are ignored).
    Raises :class:`WireError` for a short packet, a version other than 6 or a payload
    length beyond the buffer.  The hop limit is returned, not judged: RFC 8200
    section 3 discards a packet whose hop limit runs out only when *forwarding* it,
    and a destination host delivers it whatever the value (as Linux does).
    """
    view = byte_view(packet)
    size = len(view)
    # RFC 8200 section 3: the header is 40 octets.
    if size < IPV6_HEADER_LEN:
        raise WireError("truncated_ipv6_header", f"{size} bytes")
    word, payload_length, next_header, hop_limit, src, dst = _IPV6_HDR.unpack_from(view)
    # RFC 8200 section 3 "Version": 4-bit Internet Protocol version number = 6.
    version = word >> 28
    if version != 6:
        raise WireError("bad_ipv6_version", str(version))
    # RFC 8200 section 3 "Payload Length": the rest of the packet after this header,
    # extension headers included. A Jumbo Payload (RFC 2675) has 0 here: its payload
    # is then empty and the walk finds no room for the Hop-by-Hop header that was to
    # carry the length (jumbograms are not supported: a TUN's MTU is at most 65535).
    if IPV6_HEADER_LEN + payload_length > size:
        raise WireError("truncated_ipv6_packet", f"payload length {payload_length}, {size} bytes")
    pair = _ADDRESS_TEXT.get(src + dst)
    if pair is None:
        pair = _address_text(src, dst)
    header = IPv6Header(
        traffic_class=(word >> 20) & 0xFF,
        flow_label=word & _FLOW_MASK,
        payload_length=payload_length,
        next_header=next_header,
        hop_limit=hop_limit,
        src=pair[0],
        dst=pair[1],
    )
    return header, view[IPV6_HEADER_LEN : IPV6_HEADER_LEN + payload_length]


# The text of the address pairs seen: the same few recur on every packet of a flow, and
# inet_ntop twice per packet costs more than the rest of the header.
_ADDRESS_TEXT: dict[bytes, tuple[str, str]] = {}


def _address_text(src: bytes, dst: bytes) -> tuple[str, str]:
    if len(_ADDRESS_TEXT) > 4096:
        _ADDRESS_TEXT.clear()
    pair = _ADDRESS_TEXT[src + dst] = (_inet_ntop(_AF_INET6, src), _inet_ntop(_AF_INET6, dst))
    return pair


def build_ipv6_header(
    src: str,
    dst: str,
    next_header: int,
    payload_len: int,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    """Build the 40-byte IPv6 header. Raises :class:`ValueError` for bad arguments."""
    # RFC 8200 section 3: payload length is 16 bits, the flow label 20, the rest 8.
    if not 0 <= payload_len <= 0xFFFF:
        raise ValueError(f"IPv6 payload length {payload_len} out of range")
    if not 0 <= flow_label <= _FLOW_MASK:
        raise ValueError(f"flow label {flow_label} is not 20 bits")
    if not 0 <= traffic_class <= 0xFF:
        raise ValueError(f"traffic class {traffic_class} is not 8 bits")
    try:
        return _IPV6_HDR.pack(
            (6 << 28) | (traffic_class << 20) | flow_label,
            payload_len,
            next_header,
            hop_limit,
            _inet_pton(_AF_INET6, src),
            _inet_pton(_AF_INET6, dst),
        )
    except OSError as exc:
        raise ValueError(f"not an IPv6 address: {src!r} or {dst!r}") from exc
    except struct.error as exc:
        raise ValueError(f"IPv6 header field out of range: {exc}") from exc


# ------------------------------------------------------------------ extension headers
@dataclass(slots=True)
class FragmentHeader:
    """A Fragment header met on the chain (RFC 8200 section 4.5).

    ``offset`` is in octets (the field counts 8-octet units); ``header_at`` is where
    the Fragment header starts in the packet and ``data_at`` where the fragment's
    data (the fragmentable part) starts; the unfragmentable part is
    ``packet[:header_at]``.  ``next_header_at`` is the offset of the Next Header field
    that named the Fragment header (its value is replaced on reassembly).
    """

    next_header: int
    offset: int
    more: bool
    ident: int
    header_at: int
    data_at: int
    next_header_at: int

    @property
    def atomic(self) -> bool:
        """An "atomic fragment": offset 0 and M clear, a whole packet (RFC 6946)."""
        return self.offset == 0 and not self.more


@dataclass(slots=True)
class Chain:
    """Where the extension header chain ended.

    ``next_header`` is the first value that is not an extension header this walk
    handles (an upper-layer protocol, 59 "No Next Header", or something unknown)
    and ``at`` the offset of that header; ``next_header_at`` is the offset of the
    Next Header field holding the value (the Parameter Problem pointer for an unknown
    one).  ``fragment`` is set when the walk stopped at a Fragment header that is not
    atomic: the rest is known only after reassembly.  ``atomic_fragment`` tells that
    an atomic fragment header was passed over (RFC 6946 section 4).
    """

    next_header: int
    at: int
    next_header_at: int
    fragment: FragmentHeader | None = None
    atomic_fragment: bool = False


def walk_headers(
    packet: BytesLike,
    *,
    next_header: int | None = None,
    at: int = IPV6_HEADER_LEN,
    next_header_at: int = 6,
    to_multicast: bool = False,
) -> Chain:
    """Walk the extension headers of an IPv6 ``packet`` (header included, trimmed to
    40 + Payload Length octets) as its destination (RFC 8200 section 4).

    By default the walk starts after the fixed header with its Next Header value;
    ``next_header``/``at``/``next_header_at`` continue a walk elsewhere (after
    reassembly). ``to_multicast`` says the packet went to a multicast address (it
    selects the option action "discard, ICMP unless multicast", section 4.2).
    Raises :class:`ParameterProblem` or :class:`WireError`, see the module docstring.
    """
    view = byte_view(packet)
    end = len(view)
    nh = view[6] if next_header is None else next_header
    headers = 0
    atomic = False
    while True:
        if nh == IPPROTO_HOPOPTS:
            # RFC 8200 section 4.1: Hop-by-Hop Options may only follow the IPv6 header
            # itself. Elsewhere the value is treated as unrecognized (code 1), as
            # Linux does.
            if at != IPV6_HEADER_LEN:
                raise ParameterProblem("ipv6_misplaced_hop_by_hop", PP_UNKNOWN_NEXT_HEADER,
                                       next_header_at)
        elif nh not in (IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_DSTOPTS):
            return Chain(nh, at, next_header_at, None, atomic)
        headers += 1
        if headers > MAX_EXTENSION_HEADERS:
            raise WireError("ipv6_extension_header_limit", f"more than {MAX_EXTENSION_HEADERS}")
        if nh == IPPROTO_FRAGMENT:
            frag = _fragment_header(view, at, end, next_header_at)
            if not frag.atomic:
                return Chain(IPPROTO_FRAGMENT, at, next_header_at, frag, atomic)
            # RFC 6946 section 4: an atomic fragment is processed in isolation, as the
            # packet it is, never matched against fragments under reassembly.
            atomic = True
            nh, next_header_at, at = frag.next_header, at, frag.data_at
            continue
        # RFC 8200 sections 4.3, 4.4, 4.6: Next Header, Hdr Ext Len (8-octet units
        # not counting the first 8), then the header's data.
        if at + 2 > end:
            raise ParameterProblem("truncated_ipv6_extension_header", PP_BAD_HEADER_FIELD,
                                   next_header_at)
        length = (view[at + 1] + 1) * 8
        if at + length > end:
            # The header runs past the payload: point at its length field (section 4:
            # a field the node cannot process, Parameter Problem code 0).
            raise ParameterProblem("truncated_ipv6_extension_header", PP_BAD_HEADER_FIELD, at + 1)
        if nh == IPPROTO_ROUTING:
            _routing_header(view, at)
        else:
            process_options(view, at + 2, at + length, to_multicast)
        next_header_at = at
        nh = view[at]
        at += length


def _fragment_header(view: memoryview, at: int, end: int, next_header_at: int) -> FragmentHeader:
    if at + FRAGMENT_HEADER_LEN > end:
        raise ParameterProblem("truncated_ipv6_extension_header", PP_BAD_HEADER_FIELD,
                               next_header_at)
    # RFC 8200 section 4.5: the two reserved fields are ignored on receipt.
    nh, _reserved, offset_flags, ident = _FRAG_HDR.unpack_from(view, at)
    return FragmentHeader(
        next_header=nh,
        offset=offset_flags & 0xFFF8,  # 13 bits of 8-octet units: (value >> 3) * 8
        more=bool(offset_flags & 1),
        ident=ident,
        header_at=at,
        data_at=at + FRAGMENT_HEADER_LEN,
        next_header_at=next_header_at,
    )


def _routing_header(view: memoryview, at: int) -> None:
    """RFC 8200 section 4.4 at the destination: no routing type is implemented here
    (type 0 is deprecated, RFC 5095 section 3; the others belong to Mobile IPv6,
    RPL and segment routing nodes), so every one is "unrecognized"."""
    routing_type = view[at + 2]
    segments_left = view[at + 3]
    # RFC 8200 section 4.4: with Segments Left zero the node ignores the header and
    # proceeds to the next one; otherwise it discards the packet and sends Parameter
    # Problem code 0 pointing at the Routing Type. RFC 5095 section 3: the same for
    # type 0, whose processing a node MUST NOT perform.
    if segments_left:
        raise ParameterProblem(f"ipv6_routing_type_{routing_type}", PP_BAD_HEADER_FIELD, at + 2)


def process_options(view: memoryview, i: int, end: int, to_multicast: bool) -> None:
    """The TLV-encoded options of a Hop-by-Hop or Destination Options header
    (RFC 8200 section 4.2): ``view[i:end]``, the header after its Next Header and Hdr
    Ext Len octets, offsets counted from the start of the packet's IPv6 header (so an
    offset is a Parameter Problem pointer as it is). Only Pad1 and PadN are known; the
    action for any other option type is in its two high-order bits. Returns None when
    the packet may go on; raises :class:`ParameterProblem` or :class:`WireError`.

    Lab 11's swap-in slot ``options`` (labs/11-ipv6/options.py): `walk_headers` calls
    it by this module-global name."""
    options = 0
    padding = 0
    while i < end:
        kind = view[i]
        if kind == _OPT_PAD1:
            # RFC 8200 section 4.2: Pad1 is a single octet with no length field.
            length = 1
        else:
            if i + 2 > end:
                raise ParameterProblem("bad_ipv6_option", PP_BAD_HEADER_FIELD, i)
            length = 2 + view[i + 1]
            if i + length > end:
                # The option overruns its header: point at its length octet.
                raise ParameterProblem("bad_ipv6_option", PP_BAD_HEADER_FIELD, i + 1)
        if kind in (_OPT_PAD1, _OPT_PADN):
            padding += length
            if padding > MAX_PADDING_RUN:
                raise WireError("ipv6_option_limit", f"{padding} octets of padding in a row")
        else:
            padding = 0
            options += 1
            if options > MAX_OPTIONS_PER_HEADER:
                raise WireError("ipv6_option_limit", f"more than {MAX_OPTIONS_PER_HEADER} options")
            action = kind >> 6
            # RFC 8200 section 4.2, the two high-order bits of an unrecognized type:
            # 00 skip it; 01 discard the packet; 10 discard and send Parameter Problem
            # code 2 pointing at the type, even to a multicast destination; 11 the
            # same, but only if the destination was not multicast.
            if action == 1:
                raise WireError("ipv6_unknown_option_discard", f"type 0x{kind:02x}")
            if action == 2:
                raise ParameterProblem("ipv6_unknown_option", PP_UNKNOWN_OPTION, i, True)
            if action == 3:
                if to_multicast:
                    raise WireError("ipv6_unknown_option_discard", f"type 0x{kind:02x}")
                raise ParameterProblem("ipv6_unknown_option", PP_UNKNOWN_OPTION, i)
        i += length


def skip_headers(packet: BytesLike) -> tuple[int, int] | None:
    """Follow the extension header chain by its lengths only, judging nothing:
    ``(next header, offset)`` of the first header that is not Hop-by-Hop, Routing,
    Destination Options or a first fragment's Fragment header, or None when the
    chain leaves the buffer or reaches a later fragment (no upper-layer header in it).

    For packets that are not to be processed but looked into: the invoking packet an
    ICMPv6 error quotes (RFC 4443 section 2.4 (d)), or whether a packet is itself an
    ICMPv6 error before answering it with one (section 2.4 (e.1)).
    """
    view = byte_view(packet)
    end = len(view)
    if end < IPV6_HEADER_LEN:
        return None
    nh, at = view[6], IPV6_HEADER_LEN
    for _ in range(MAX_EXTENSION_HEADERS + 1):
        if nh == IPPROTO_FRAGMENT:
            if at + FRAGMENT_HEADER_LEN > end or int.from_bytes(view[at + 2 : at + 4], "big") & 0xFFF8:
                return None
            nh, at = view[at], at + FRAGMENT_HEADER_LEN
        elif nh in (IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS):
            if at + 2 > end:
                return None
            nh, at = view[at], at + (view[at + 1] + 1) * 8
        else:
            return (nh, at) if at <= end else None
    return None


# -------------------------------------------------------------------------- builders
def build_options_header(next_header: int, options: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """A Hop-by-Hop or Destination Options header holding ``options``
    (``(type, data)`` pairs), padded with Pad1/PadN to a multiple of 8 octets
    (RFC 8200 section 4.2)."""
    body = bytearray((next_header, 0))
    for kind, data in options:
        if kind == _OPT_PAD1:
            body.append(0)
            continue
        if len(data) > 255:
            raise ValueError(f"option data of {len(data)} bytes")
        body += bytes((kind, len(data))) + data
    pad = -len(body) % 8
    if pad == 1:
        body.append(_OPT_PAD1)
    elif pad:
        body += bytes((_OPT_PADN, pad - 2)) + bytes(pad - 2)
    if len(body) > 256 * 8:
        raise ValueError("options header longer than 2048 octets")
    body[1] = len(body) // 8 - 1
    return bytes(body)


def build_routing_header(next_header: int, routing_type: int, segments_left: int,
                         data: bytes = bytes(4)) -> bytes:
    """A Routing header (RFC 8200 section 4.4); ``data`` is the type-specific part
    after Segments Left (4 octets at least), zero-padded to a multiple of 8."""
    body = bytes((next_header, 0, routing_type, segments_left)) + data
    body += bytes(-len(body) % 8)
    return bytes((next_header, len(body) // 8 - 1)) + body[2:]


def build_fragment_header(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    """A Fragment header (RFC 8200 section 4.5); ``offset`` in octets, a multiple of 8."""
    if offset % 8 or not 0 <= offset <= 0xFFF8:
        raise ValueError(f"fragment offset {offset} is not a multiple of 8 below 65536")
    return _FRAG_HDR.pack(next_header, 0, offset | int(more), ident & 0xFFFFFFFF)


# ------------------------------------------------------------------------ flow label
def flow_label(secret: bytes, src: str, dst: str, proto: int, sport: int, dport: int) -> int:
    """A 20-bit flow label for one transport flow (RFC 6437 section 3).

    RFC 6437 section 3 asks source nodes to label flows with values that are
    uniformly distributed and hard to guess, recommending a hash of the 5-tuple
    with a secret; the label stays the same for the life of the flow (so compute
    it once per connection, this costs a keyed hash). Zero means "not labeled",
    so a hash of zero becomes 1.
    """
    key = secret[:32]
    h = hashlib.blake2s(key=key, digest_size=4)
    h.update(_inet_pton(_AF_INET6, src) + _inet_pton(_AF_INET6, dst))
    h.update(struct.pack("!BHH", proto, sport, dport))
    return (int.from_bytes(h.digest(), "big") & _FLOW_MASK) or 1


def unmapped(address: str) -> str:
    """An address as the stack holds it: a v4-mapped IPv6 address (RFC 4291 section
    2.5.5.2) is the IPv4 address it stands for, other IPv6 text is in inet_ntop form;
    IPv4 text, and text that is no address, come back as they are."""
    if ":" not in address:
        return address
    try:
        packed = _inet_pton(_AF_INET6, address)
    except OSError:
        return address
    if packed[:12] == V4_MAPPED_PREFIX:
        return socket.inet_ntoa(packed[12:])
    return _inet_ntop(_AF_INET6, packed)


def is_unspecified_or_loopback(address: str) -> bool:
    """``::`` or ``::1``: never a valid source of a packet from the wire
    (RFC 4291 sections 2.5.2 and 2.5.3)."""
    ip = ipaddress.IPv6Address(address)
    return ip.is_unspecified or ip.is_loopback
