"""The wire side of the runner: build the script's inbound packets, decode the stack's.

Sequence spaces, as packetdrill numbers them:
- the remote peer's (the script's) sequence numbers, and the acknowledgments the stack
  sends, are literal;
- the stack's sequence numbers are relative to its ISS (learnt from its SYN or SYN-ACK),
  and so are the acknowledgments, SACK blocks and ICMP quotes the script sends;
- the stack's TSval are relative to the first one it sent (the script's TS val in that
  segment); the script's TSecr is mapped with the same offset.

TCP over UDP (`/udp(S > D)`, FreeBSD's encapsulation, stack/tcp_over_udp.py): the TCP
segment follows a UDP header from port S to port D, as packetdrill builds it (a TCP
checksum over the TCP pseudo-header, and the UDP checksum over the whole datagram).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from stack.drill.model import IcmpPacket, TcpOpt, TcpPacket, Unsupported
from stack.wire.checksum import internet_checksum, pseudo_header_sum
from stack.wire.icmp import build_icmp
from stack.wire.icmpv6 import build_icmpv6, mtu_rest
from stack.wire.ipv4 import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, build_ipv4_header
from stack.wire.ipv6 import (
    IPPROTO_ICMPV6,
    IPV6_HEADER_LEN,
    build_ipv6_header,
    parse_ipv6,
    skip_headers,
)
from stack.wire.udp import build_udp

MASK32 = 0xFFFFFFFF

FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, ".": 0x10, "U": 0x20, "E": 0x40, "W": 0x80}
_PRINT_ORDER = "SFRPUEW."

ICMP_TYPES: dict[str, tuple[int, dict[str, int]]] = {
    "unreachable": (3, {
        "net_unreachable": 0, "host_unreachable": 1, "protocol_unreachable": 2,
        "port_unreachable": 3, "frag_needed": 4, "source_route_failed": 5,
        "net_unknown": 6, "host_unknown": 7, "source_host_isolated": 8,
        "net_prohibited": 9, "host_prohibited": 10, "net_unreachable_for_tos": 11,
        "host_unreachable_for_tos": 12, "packet_filtered": 13,
        "precedence_violation": 14, "precedence_cutoff": 15,
    }),
    "source_quench": (4, {}),
    "redirect": (5, {"net": 0, "host": 1, "tos_net": 2, "tos_host": 3}),
    "time_exceeded": (11, {"ttl_exceeded_in_transit": 0, "frag_reass_exceeded": 1}),
    "parameter_problem": (12, {}),
}  # fmt: skip

# ICMPv6 (RFC 4443 sections 3.1-3.4), with packetdrill's names for IPv6 scripts.
# "net_unreachable" is packetdrill's alias of code 0 (no route).
ICMPV6_TYPES: dict[str, tuple[int, dict[str, int]]] = {
    "unreachable": (1, {
        "net_unreachable": 0, "no_route": 0, "admin_prohibited": 1, "not_neighbour": 2,
        "beyond_scope": 2, "address_unreachable": 3, "port_unreachable": 4,
        "policy_failed": 5, "reject_route": 6,
    }),
    "packet_too_big": (2, {}),
    "time_exceeded": (3, {"exceeded_hop_limit": 0, "exceeded_frag_time": 1}),
    "parameter_problem": (4, {"header_field": 0, "unknown_next_header": 1, "unknown_option": 2}),
}  # fmt: skip


# RFC 3168 section 5: the ECN field a script names as [noecn] [ect1] [ect0] [ce].
ECN_CODEPOINTS = {"noecn": 0, "ect1": 1, "ect0": 2, "ce": 3}


def flags_value(letters: str) -> int:
    value = 0
    for c in letters:
        value |= FLAG_BITS[c]
    return value


def flags_text(value: int) -> str:
    return "".join(c for c in _PRINT_ORDER if value & FLAG_BITS[c]) or "-"


@dataclass
class Mapping:
    """What the runner has learnt about the connection under test."""

    local_addr: str
    remote_addr: str
    local_port: int
    remote_port: int
    local_iss: int = 0  # the stack's ISS (0 until its SYN is seen)
    ts_offset: int | None = None  # actual TSval - script TS val, from its first TS

    @property
    def ipv6(self) -> bool:
        """An IPv6 script (--ip_version=ipv6): the addresses are IPv6 text."""
        return ":" in self.local_addr


@dataclass
class Decoded:
    """A segment the stack sent, in the script's numbering (see the module doc)."""

    time: float
    flags: int
    seq: int  # relative
    ack: int
    win: int
    length: int
    options: list[TcpOpt] = field(default_factory=list)  # TS val relative, as on the wire
    raw_seq: int = 0
    raw_ts_val: int | None = None
    ttl: int = 0
    tos: int = 0
    sport: int = 0
    dport: int = 0
    icmp: tuple[int, int] | None = None  # (type, code) for an ICMP message instead
    udp: tuple[int, int] | None = None  # TCP over UDP: the UDP (source, destination) ports

    def text(self) -> str:
        if self.icmp is not None:
            return f"icmp type {self.icmp[0]} code {self.icmp[1]}"
        out = f"{flags_text(self.flags)} {self.seq}:{(self.seq + self.length) & MASK32}({self.length})"
        if self.flags & FLAG_BITS["."]:
            out += f" ack {self.ack}"
        out += f" win {self.win}"
        if self.options:
            out += " <" + ",".join(str(o) for o in self.options) + ">"
        return out + udp_text(self.udp)


def udp_text(udp: tuple[int, int] | None) -> str:
    """`/udp(S > D)` for a TCP-over-UDP segment, nothing for a plain one."""
    return f"/udp({udp[0]} > {udp[1]})" if udp is not None else ""


def packet_text(pkt: TcpPacket) -> str:
    """The script's packet, normalized (for the failure report)."""
    seq = "..." if pkt.seq is None else f"{pkt.seq}:{pkt.end}"
    out = f"{pkt.flags} {seq}({pkt.length}){'!' if pkt.absolute_seq else ''}"
    if pkt.ack is not None:
        out += f" ack {pkt.ack}"
    if pkt.win is not None:
        out += f" win {pkt.win}"
    if pkt.any_options:
        out += " <...>"
    elif pkt.options:
        out += " <" + ",".join(str(o) for o in pkt.options) + ">"
    return out + udp_text(pkt.udp)


# ------------------------------------------------------------------ building


def _encode_options(opts: list[TcpOpt], m: Mapping) -> bytes:
    out = bytearray()
    for o in opts:
        if o.kind == "nop":
            out.append(1)
        elif o.kind == "eol":
            out.append(0)
        elif o.kind == "mss":
            out += struct.pack("!BBH", 2, 4, o.value)
        elif o.kind == "wscale":
            out += struct.pack("!BBB", 3, 3, o.value)
        elif o.kind == "sackOK":
            out += b"\x04\x02"
        elif o.kind == "sack":
            out += struct.pack("!BB", 5, 2 + 8 * len(o.value))
            for left, right in o.value:  # blocks of the stack's data: relative to its ISS
                out += struct.pack("!II", (left + m.local_iss) & MASK32, (right + m.local_iss) & MASK32)
        elif o.kind == "TS":
            val, ecr = o.value
            if ecr and m.ts_offset is not None:
                ecr = (ecr + m.ts_offset) & MASK32
            out += struct.pack("!BBII", 8, 10, val & MASK32, ecr)
        elif o.kind == "FO":  # RFC 7413 4.1.1: kind 34, the cookie (or none: a request)
            cookie = bytes(o.value or b"")
            out += struct.pack("!BB", 34, 2 + len(cookie)) + cookie
        elif o.kind == "md5":
            raise Unsupported("TCP MD5 signature option (RFC 2385)")
        else:  # pragma: no cover - the parser knows no other kinds
            raise Unsupported(f"TCP option {o.kind}")
    if len(out) > 40:
        raise Unsupported(f"{len(out)} bytes of TCP options (at most 40)")
    while len(out) % 4:
        out.append(0)  # pad with EOL (RFC 9293 3.1)
    return bytes(out)


def _tcp_checksum(src: str, dst: str, segment: bytes) -> int:
    return internet_checksum(segment, pseudo_header_sum(src, dst, IPPROTO_TCP, len(segment)))


def _ip_header(m: Mapping, proto: int, length: int, ttl: int = 64, tos: int = 0) -> bytes:
    """The peer's IP header to the stack: IPv4 (RFC 791), or IPv6 (RFC 8200 section 3,
    the TTL as the Hop Limit and the TOS byte as the Traffic Class, ECN in its low two
    bits as in IPv4: RFC 3168 section 5)."""
    if m.ipv6:
        return build_ipv6_header(m.remote_addr, m.local_addr, proto, length, hop_limit=ttl, traffic_class=tos)
    return build_ipv4_header(m.remote_addr, m.local_addr, proto, length, 0, ttl=ttl, tos=tos)


def build_tcp_packet(pkt: TcpPacket, m: Mapping) -> bytes:
    """The IPv4 or IPv6 packet for an inbound script segment (the TCP checksum covers
    the family's pseudo-header: RFC 9293 3.1, RFC 8200 8.1); with `/udp(S > D)`, the
    segment in a UDP datagram (RFC 768, its checksum over the UDP pseudo-header)."""
    if pkt.seq is None:
        raise Unsupported("`...` sequence number on an inbound packet")
    opts = _encode_options(pkt.options or [], m)
    flags = flags_value(pkt.flags)
    ack = 0
    if pkt.ack is not None:
        ack = (pkt.ack + m.local_iss) & MASK32
    win = pkt.win if pkt.win is not None else 65535
    header = struct.pack(
        "!HHIIBBHHH", m.remote_port, m.local_port, pkt.seq & MASK32, ack,
        (20 + len(opts)) // 4 << 4, flags, win & 0xFFFF, 0, 0,
    )  # fmt: skip
    segment = header + opts + bytes(pkt.length)
    csum = _tcp_checksum(m.remote_addr, m.local_addr, segment)
    segment = segment[:16] + struct.pack("!H", csum) + segment[18:]
    proto = IPPROTO_TCP
    if pkt.udp is not None:
        segment = build_udp(m.remote_addr, m.local_addr, pkt.udp[0], pkt.udp[1], segment)
        proto = IPPROTO_UDP
    ip = _ip_header(m, proto, len(segment), ttl=pkt.ttl if pkt.ttl is not None else 64,
                    tos=(pkt.tos if pkt.tos is not None else 0) | ECN_CODEPOINTS.get(pkt.ecn or "noecn", 0))
    return ip + segment


def build_icmp_packet(pkt: IcmpPacket, m: Mapping) -> bytes:
    """An ICMP error from the peer quoting the stack's segment `seq` (RFC 792; for IPv6
    ICMPv6, RFC 4443). As packetdrill, the quote is the stack's IP header and the first
    8 octets of its TCP header (ports and sequence number); for a TCP-over-UDP segment
    (`[.../udp(S > D)]`) the UDP header (S > D) comes between them."""
    entry = (ICMPV6_TYPES if m.ipv6 else ICMP_TYPES).get(pkt.type_name)
    if entry is None:
        raise Unsupported(f"ICMP type {pkt.type_name}")
    type_, codes = entry
    if pkt.code_name is None:
        code = 0
    elif pkt.code_name in codes:
        code = codes[pkt.code_name]
    elif pkt.code_name.startswith("code_") and pkt.code_name[5:].isdigit():
        code = int(pkt.code_name[5:])
    else:
        raise Unsupported(f"ICMP code {pkt.code_name}")
    seq = (pkt.seq + m.local_iss) & MASK32
    inner_tcp = struct.pack("!HHIIBBHHH", m.local_port, m.remote_port, seq, 0, 5 << 4, 0x02, 0, 0, 0)
    quoted, proto, length = inner_tcp[:8], IPPROTO_TCP, len(inner_tcp) + pkt.length
    if pkt.udp is not None:
        length += 8
        quoted = struct.pack("!HHHH", pkt.udp[0], pkt.udp[1], length, 0) + quoted
        proto = IPPROTO_UDP
    if m.ipv6:
        return _icmpv6_packet(type_, code, pkt, m, proto, length, quoted)
    inner_ip = build_ipv4_header(m.local_addr, m.remote_addr, proto, length, 0)
    rest = bytes(4)
    if type_ == 3 and code == 4 and pkt.mtu is not None:
        rest = struct.pack("!HH", 0, pkt.mtu)
    body = build_icmp(type_, code, rest, inner_ip + quoted)
    return build_ipv4_header(m.remote_addr, m.local_addr, IPPROTO_ICMP, len(body), 0) + body


def _icmpv6_packet(type_: int, code: int, pkt: IcmpPacket, m: Mapping, proto: int, length: int,
                   quoted: bytes) -> bytes:
    inner_ip = build_ipv6_header(m.local_addr, m.remote_addr, proto, length)
    rest = bytes(4)
    if pkt.mtu is not None:
        if type_ != 2:
            raise Unsupported("an MTU on an ICMPv6 message other than packet_too_big")
        rest = mtu_rest(pkt.mtu)  # RFC 4443 section 3.2: the 32-bit MTU
    body = build_icmpv6(type_, code, rest, inner_ip + quoted, m.remote_addr, m.local_addr)
    return _ip_header(m, IPPROTO_ICMPV6, len(body)) + body


# ------------------------------------------------------------------ decoding


def _decode_options(data: bytes, m: Mapping) -> list[TcpOpt]:
    opts: list[TcpOpt] = []
    i = 0
    while i < len(data):
        kind = data[i]
        if kind == 0:
            opts.append(TcpOpt("eol"))
            i += 1
            continue
        if kind == 1:
            opts.append(TcpOpt("nop"))
            i += 1
            continue
        if i + 1 >= len(data) or data[i + 1] < 2 or i + data[i + 1] > len(data):
            opts.append(TcpOpt("unknown", f"malformed kind {kind}"))
            break
        length = data[i + 1]
        body = data[i + 2 : i + length]
        if kind == 2 and length == 4:
            opts.append(TcpOpt("mss", struct.unpack("!H", body)[0]))
        elif kind == 3 and length == 3:
            opts.append(TcpOpt("wscale", body[0]))
        elif kind == 4 and length == 2:
            opts.append(TcpOpt("sackOK"))
        elif kind == 5 and (length - 2) % 8 == 0:
            blocks = [struct.unpack("!II", body[j : j + 8]) for j in range(0, length - 2, 8)]
            opts.append(TcpOpt("sack", [(a, b) for a, b in blocks]))
        elif kind == 8 and length == 10:
            val, ecr = struct.unpack("!II", body)
            if m.ts_offset is not None:
                val = (val - m.ts_offset) & MASK32
            opts.append(TcpOpt("TS", (val, ecr)))
        elif kind == 34:
            opts.append(TcpOpt("FO", bytes(body)))
        else:
            opts.append(TcpOpt("unknown", f"kind {kind} len {length}"))
        i += length
    return opts


def decode(raw: bytes, time: float, m: Mapping) -> Decoded:
    """One packet the stack sent (IPv4 or IPv6), in the script's numbering."""
    if raw[0] >> 4 == 6:
        # RFC 8200 section 3 (the fixed header, stack.wire's parser); the upper-layer
        # header after any extension headers (section 4).
        header, _ = parse_ipv6(raw)
        tos, ttl = header.traffic_class, header.hop_limit
        where = skip_headers(raw)
        proto, start = where if where is not None else (-1, len(raw))
        body = raw[start : IPV6_HEADER_LEN + header.payload_length]
        if proto == IPPROTO_ICMPV6:
            return Decoded(time, 0, 0, 0, 0, 0, ttl=ttl, tos=tos, icmp=(body[0], body[1]))
    else:
        ihl = (raw[0] & 0x0F) * 4
        tos, ttl, proto = raw[1], raw[8], raw[9]
        body = raw[ihl:]
    if proto == IPPROTO_ICMP:
        return Decoded(time, 0, 0, 0, 0, 0, ttl=ttl, tos=tos, icmp=(body[0], body[1]))
    udp = None
    if proto == IPPROTO_UDP and len(body) >= 8 + 20:
        # TCP over UDP: the segment after the UDP header (its length bounds it).
        usport, udport, ulen = struct.unpack("!HHH", body[:6])
        udp = (usport, udport)
        body = body[8:ulen]
        proto = IPPROTO_TCP
    if proto != IPPROTO_TCP:
        return Decoded(time, 0, 0, 0, 0, 0, ttl=ttl, tos=tos, icmp=(-1, proto))
    sport, dport, seq, ack, off, flags, win = struct.unpack("!HHIIBBH", body[:16])
    hlen = (off >> 4) * 4
    raw_opts = bytes(body[20:hlen])
    ts_raw = None
    if 8 in raw_opts:
        for o in _decode_options(raw_opts, Mapping("", "", 0, 0)):
            if o.kind == "TS":
                ts_raw = o.value[0]
    return Decoded(
        time=time, flags=flags, seq=(seq - m.local_iss) & MASK32, ack=ack, win=win,
        length=len(body) - hlen, options=_decode_options(raw_opts, m), raw_seq=seq,
        raw_ts_val=ts_raw, ttl=ttl, tos=tos, sport=sport, dport=dport, udp=udp,
    )  # fmt: skip
