"""Read pcap files and decode IPv4, IPv6, TCP, UDP, ICMP and ICMPv6: what the labs need.

The stack writes classic pcap with link type RAW (stack/observe/pcap.py); tcpdump
writes the same format with RAW, Ethernet or "Linux cooked" link types. All of these
are read here. pcapng (tshark's and Wireshark's default) is not: convert it with
``editcap -F pcap in.pcapng out.pcap``.

Nothing here verifies or trusts the packets: truncated or odd packets are decoded as
far as they go, and checksum checks are separate functions (lab 02 uses them).
Offloaded packets are normal: the stack's own outgoing TCP segments may be up to 64 KiB
(TSO) and carry only a partial checksum, which the kernel completes.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# Link types (https://www.tcpdump.org/linktypes.html) and how many bytes precede IPv4.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_LINUX_SLL2 = 276

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
_FLAG_LETTERS = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "A"), (URG, "U"),
                 (ECE, "E"), (CWR, "C"))  # fmt: skip

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17
IPPROTO_ICMPV6 = 58
# IPv6 extension headers followed to the upper layer (RFC 8200 section 4).
_IPV6_EXTENSIONS = (0, 43, 60)  # Hop-by-Hop, Routing, Destination Options
_IPV6_FRAGMENT = 44


class PcapError(Exception):
    """The file is not a capture this module can read (message says why)."""


@dataclass(slots=True)
class TcpInfo:
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int  # the raw 16-bit field (not scaled)
    header_len: int
    payload_len: int
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: list[tuple[int, int]] = field(default_factory=list)
    timestamp: tuple[int, int] | None = None
    payload: bytes = b""  # what was captured of the payload

    @property
    def syn(self) -> bool:
        return bool(self.flags & SYN)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FIN)

    @property
    def rst(self) -> bool:
        return bool(self.flags & RST)

    @property
    def has_ack(self) -> bool:
        return bool(self.flags & ACK)

    @property
    def seg_len(self) -> int:
        """Sequence space used: payload plus one for SYN and one for FIN."""
        return self.payload_len + self.syn + self.fin

    def flags_str(self) -> str:
        return "".join(letter for bit, letter in _FLAG_LETTERS if self.flags & bit)


@dataclass(slots=True)
class UdpInfo:
    sport: int
    dport: int
    length: int
    checksum: int
    payload: bytes


@dataclass(slots=True)
class IcmpInfo:
    type: int
    code: int
    checksum: int
    ident: int  # echo request/reply identifier (0 for other types)
    seq: int


@dataclass(slots=True)
class Packet:
    """One IP packet of a capture.

    For IPv6 (``version`` 6): ``proto`` is the upper-layer protocol after the
    extension headers, ``ttl`` the hop limit, ``header_len`` where the upper-layer
    header starts, ``ident``/``more_fragments``/``frag_offset`` come from a Fragment
    header (0/False/0 without one), ``dont_fragment`` is True (routers never fragment
    IPv6) and ``ip_checksum_ok`` is True (IPv6 has no header checksum). An ICMPv6
    message fills ``icmp``.
    """

    index: int  # 0-based position in the file
    ts: float  # seconds since the epoch
    src: str
    dst: str
    proto: int
    ttl: int
    ident: int
    total_length: int
    header_len: int
    dont_fragment: bool
    more_fragments: bool
    frag_offset: int  # bytes
    ip_checksum_ok: bool
    raw: bytes  # the captured IP packet
    tcp: TcpInfo | None = None
    udp: UdpInfo | None = None
    icmp: IcmpInfo | None = None
    version: int = 4

    @property
    def is_fragment(self) -> bool:
        return self.more_fragments or self.frag_offset > 0

    def summary(self) -> str:
        """One line, a little like tcpdump's."""
        if self.tcp is not None:
            t = self.tcp
            text = (f"{self.src}:{t.sport} > {self.dst}:{t.dport} [{t.flags_str()}] "
                    f"seq {t.seq} ack {t.ack} win {t.window} len {t.payload_len}")
            return text
        if self.udp is not None:
            return f"{self.src}:{self.udp.sport} > {self.dst}:{self.udp.dport} UDP len {len(self.udp.payload)}"
        if self.icmp is not None:
            name = "ICMPv6" if self.version == 6 else "ICMP"
            return f"{self.src} > {self.dst} {name} type {self.icmp.type} code {self.icmp.code}"
        return f"{self.src} > {self.dst} proto {self.proto} len {self.total_length}"


# --- checksums (independent of stack.wire, so a learner's swap-in cannot fool a check) -
def ones_sum(data: bytes, initial: int = 0) -> int:
    """16-bit one's-complement sum (folded, not inverted); odd lengths padded with 0."""
    if len(data) & 1:
        data = data + b"\x00"
    total = initial + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ip_header_checksum_ok(raw: bytes) -> bool:
    ihl = (raw[0] & 0x0F) * 4
    return len(raw) >= ihl and ones_sum(bytes(raw[:ihl])) == 0xFFFF


def transport_checksum_ok(packet: Packet) -> bool | None:
    """Whether the TCP/UDP/ICMP checksum verifies; None if it cannot be told (payload
    not fully captured, a fragment, a UDP checksum of 0 = none)."""
    raw = packet.raw
    if packet.is_fragment or len(raw) < packet.total_length:
        return None
    segment = bytes(raw[packet.header_len:packet.total_length])
    if packet.proto == IPPROTO_ICMP and packet.version == 4:
        return ones_sum(segment) == 0xFFFF
    if packet.proto not in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6):
        return None
    if packet.proto == IPPROTO_UDP and packet.udp is not None and packet.udp.checksum == 0:
        # "No checksum" over IPv4 (RFC 768); over IPv6 a zero checksum is invalid
        # (RFC 8200 section 8.1).
        return False if packet.version == 6 else None
    return ones_sum(_pseudo_header(packet, len(segment)) + segment) == 0xFFFF


def _pseudo_header(packet: Packet, length: int) -> bytes:
    """The TCP/UDP/ICMPv6 pseudo-header (RFC 9293 3.1; RFC 8200 section 8.1 for IPv6)."""
    if packet.version == 6:
        return (socket.inet_pton(socket.AF_INET6, packet.src)
                + socket.inet_pton(socket.AF_INET6, packet.dst)
                + struct.pack("!I3xB", length, packet.proto))
    return (socket.inet_aton(packet.src) + socket.inet_aton(packet.dst)
            + struct.pack("!BBH", 0, packet.proto, length))


def checksum_state(packet: Packet) -> str | None:
    """"ok", "bad", "partial" (a TCP/UDP checksum field holding only the pseudo-header
    sum: checksum offload, the kernel fills it in) or None (cannot be told)."""
    ok = transport_checksum_ok(packet)
    if ok is None:
        return None
    if ok:
        return "ok"
    if packet.proto in (IPPROTO_TCP, IPPROTO_UDP):
        offset = packet.header_len + (16 if packet.proto == IPPROTO_TCP else 6)
        field_value = int.from_bytes(packet.raw[offset : offset + 2], "big")
        length = packet.total_length - packet.header_len
        if field_value == ones_sum(_pseudo_header(packet, length)):
            return "partial"
    return "bad"


# --- decoding ----------------------------------------------------------------------------
def _tcp_options(data: bytes, info: TcpInfo) -> None:
    i = 0
    while i < len(data):
        kind = data[i]
        if kind == 0:
            return
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(data):
            return
        length = data[i + 1]
        if length < 2 or i + length > len(data):
            return
        body = data[i + 2 : i + length]
        if kind == 2 and length == 4:
            info.mss = struct.unpack("!H", body)[0]
        elif kind == 3 and length == 3:
            info.wscale = body[0]
        elif kind == 4 and length == 2:
            info.sack_permitted = True
        elif kind == 5 and (length - 2) % 8 == 0:
            info.sack_blocks = [struct.unpack_from("!II", body, j) for j in range(0, len(body), 8)]
        elif kind == 8 and length == 10:
            info.timestamp = struct.unpack("!II", body)
        i += length


def decode_ipv4(raw: bytes, ts: float = 0.0, index: int = 0) -> Packet | None:
    """Decode one IPv4 packet; None if it is not IPv4 or too short for a header."""
    if len(raw) < 20 or raw[0] >> 4 != 4:
        return None
    ihl = (raw[0] & 0x0F) * 4
    if ihl < 20 or len(raw) < ihl:
        return None
    total_length, ident, frag = struct.unpack_from("!HHH", raw, 2)
    ttl, proto = raw[8], raw[9]
    pkt = Packet(
        index=index, ts=ts, src=socket.inet_ntoa(raw[12:16]), dst=socket.inet_ntoa(raw[16:20]),
        proto=proto, ttl=ttl, ident=ident, total_length=total_length, header_len=ihl,
        dont_fragment=bool(frag & 0x4000), more_fragments=bool(frag & 0x2000),
        frag_offset=(frag & 0x1FFF) * 8, ip_checksum_ok=ip_header_checksum_ok(raw), raw=raw,
    )  # fmt: skip
    if pkt.frag_offset:
        return pkt  # a later fragment carries no transport header
    end = min(len(raw), total_length) if total_length >= ihl else len(raw)
    _decode_transport(pkt, raw[ihl:end], max(total_length - ihl, 0))
    return pkt


def decode_ipv6(raw: bytes, ts: float = 0.0, index: int = 0) -> Packet | None:
    """Decode one IPv6 packet, following its extension headers to the upper layer;
    None if it is not IPv6 or too short for the 40-byte header."""
    if len(raw) < 40 or raw[0] >> 4 != 6:
        return None
    payload_length, nh, hop_limit = struct.unpack_from("!HBB", raw, 4)
    total_length = 40 + payload_length
    end = min(len(raw), total_length)
    at, ident, more, offset = 40, 0, False, 0
    for _ in range(16):  # at most 16 extension headers, as the stack walks them
        if nh in _IPV6_EXTENSIONS and at + 2 <= end:
            nh, at = raw[at], at + (raw[at + 1] + 1) * 8
        elif nh == _IPV6_FRAGMENT and at + 8 <= end:
            field_value, ident = struct.unpack_from("!HI", raw, at + 2)
            offset, more = field_value & 0xFFF8, bool(field_value & 1)
            nh, at = raw[at], at + 8
        else:
            break
    pkt = Packet(
        index=index, ts=ts, src=socket.inet_ntop(socket.AF_INET6, raw[8:24]),
        dst=socket.inet_ntop(socket.AF_INET6, raw[24:40]), proto=nh, ttl=hop_limit,
        ident=ident, total_length=total_length, header_len=min(at, total_length),
        dont_fragment=True, more_fragments=more, frag_offset=offset, ip_checksum_ok=True,
        raw=raw, version=6,
    )  # fmt: skip
    if offset or at > end:
        return pkt
    _decode_transport(pkt, raw[at:end], max(total_length - at, 0))
    return pkt


def decode_ip(raw: bytes, ts: float = 0.0, index: int = 0) -> Packet | None:
    """Decode an IPv4 or IPv6 packet (by its version nibble)."""
    if raw and raw[0] >> 4 == 6:
        return decode_ipv6(raw, ts, index)
    return decode_ipv4(raw, ts, index)


def _decode_transport(pkt: Packet, body: bytes, length_on_wire: int) -> None:
    proto = pkt.proto
    if proto == IPPROTO_TCP and len(body) >= 20:
        sport, dport, seq, ack, off, flags, window = struct.unpack_from("!HHIIBBH", body)
        hlen = (off >> 4) * 4
        info = TcpInfo(sport, dport, seq, ack, flags, window, hlen,
                       max(length_on_wire - hlen, 0))
        if hlen > 20:
            _tcp_options(bytes(body[20:hlen]), info)
        info.payload = bytes(body[hlen:])
        pkt.tcp = info
    elif proto == IPPROTO_UDP and len(body) >= 8:
        sport, dport, length, checksum = struct.unpack_from("!HHHH", body)
        pkt.udp = UdpInfo(sport, dport, length, checksum, bytes(body[8:]))
    elif proto in (IPPROTO_ICMP, IPPROTO_ICMPV6) and len(body) >= 8:
        itype, code, checksum, ident, seq = struct.unpack_from("!BBHHH", body)
        echo = (128, 129) if pkt.version == 6 else (0, 8)
        if itype not in echo:
            ident = seq = 0
        pkt.icmp = IcmpInfo(itype, code, checksum, ident, seq)


def _ip_payload(linktype: int, frame: bytes) -> bytes | None:
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4):
        return frame
    if linktype == LINKTYPE_ETHERNET:
        off = 12
        ethertype = int.from_bytes(frame[off : off + 2], "big")
        while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 6:
            off += 4
            ethertype = int.from_bytes(frame[off : off + 2], "big")
        return frame[off + 2 :] if ethertype in (0x0800, 0x86DD) else None
    if linktype == LINKTYPE_LINUX_SLL:
        return frame[16:] if frame[14:16] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype == LINKTYPE_LINUX_SLL2:
        return frame[20:] if frame[0:2] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype == LINKTYPE_NULL:
        family = int.from_bytes(frame[:4], "little")
        # AF_INET 2; AF_INET6 is 10 on Linux, 24/28/30 on the BSDs and macOS.
        if family not in (2, 10, 24, 28, 30) and socket.ntohl(family) not in (2, 10, 24, 28, 30):
            return None
        return frame[4:]
    return None


def iter_pcap(path: str | os.PathLike[str]) -> Iterator[Packet]:
    """The IPv4 and IPv6 packets of a pcap file, in file order. A record cut short at the end
    (the writer is still running) ends the iteration quietly."""
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise PcapError(f"{path}: no such file") from None
    with f:
        header = f.read(24)
        if len(header) == 0:
            raise PcapError(f"{path}: the file is empty (did the stack run with --pcap?)")
        if len(header) < 24:
            raise PcapError(f"{path}: too short for a pcap header")
        magic_le = struct.unpack("<I", header[:4])[0]
        if magic_le == 0x0A0D0D0A:
            raise PcapError(f"{path}: pcapng is not supported; convert it with "
                            f"'editcap -F pcap {path} out.pcap'")
        for endian in ("<", ">"):
            magic = struct.unpack(endian + "I", header[:4])[0]
            if magic in (0xA1B2C3D4, 0xA1B23C4D):
                break
        else:
            raise PcapError(f"{path}: not a pcap file (magic {header[:4].hex()})")
        scale = 1e-9 if magic == 0xA1B23C4D else 1e-6
        linktype = struct.unpack(endian + "I", header[20:24])[0] & 0x0FFFFFFF
        record = struct.Struct(endian + "IIII")
        index = 0
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            sec, frac, caplen, _orig = record.unpack(rec)
            frame = f.read(caplen)
            if len(frame) < caplen:
                return
            payload = _ip_payload(linktype, frame)
            if payload is not None:
                pkt = decode_ip(payload, sec + frac * scale, index)
                if pkt is not None:
                    yield pkt
            index += 1


def read_pcap(path: str | os.PathLike[str]) -> list[Packet]:
    return list(iter_pcap(path))


# --- connections ---------------------------------------------------------------------------
def endpoint(address: str, port: int) -> str:
    """``10.0.0.2:80``, or with the IPv6 address in brackets, ``[fd00::2]:80``
    (RFC 3986 section 3.2.2)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def conn_id(local: str, lport: int, remote: str, rport: int) -> str:
    """The event log's connection name: ``10.0.0.2:80-10.1.0.2:40000``, over IPv6
    ``[fd00:0:0:1::2]:80-[fd00:0:0:2::2]:40000``."""
    return f"{endpoint(local, lport)}-{endpoint(remote, rport)}"


def _parse_endpoint(text: str) -> tuple[str, int]:
    address, port = text.rsplit(":", 1)
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    return address, int(port)


def parse_conn_id(text: str) -> tuple[str, int, str, int]:
    """``"10.0.0.2:80-10.1.0.2:40000"`` -> ("10.0.0.2", 80, "10.1.0.2", 40000); IPv6
    addresses may be bracketed (``[fd00::2]:80``) or bare."""
    try:
        left, right = text.split("-")
        la, lp = _parse_endpoint(left)
        ra, rp = _parse_endpoint(right)
        return la, lp, ra, rp
    except ValueError:
        raise ValueError(f"not a connection id like 10.0.0.2:80-10.1.0.2:40000: {text!r}") from None


def tcp_packets(packets: Iterable[Packet], conn: str) -> list[Packet]:
    """The TCP packets of one connection (both directions)."""
    la, lp, ra, rp = parse_conn_id(conn)
    out = []
    for p in packets:
        t = p.tcp
        if t is None:
            continue
        if ((p.src, t.sport, p.dst, t.dport) == (la, lp, ra, rp)
                or (p.src, t.sport, p.dst, t.dport) == (ra, rp, la, lp)):
            out.append(p)
    return out


def connections(packets: Iterable[Packet], local: str) -> dict[str, list[Packet]]:
    """TCP packets grouped by connection id, named from ``local``'s side."""
    groups: dict[str, list[Packet]] = {}
    for p in packets:
        t = p.tcp
        if t is None:
            continue
        if p.src == local:
            key = conn_id(p.src, t.sport, p.dst, t.dport)
        elif p.dst == local:
            key = conn_id(p.dst, t.dport, p.src, t.sport)
        else:
            continue
        groups.setdefault(key, []).append(p)
    return groups


def stream_bytes(packets: Iterable[Packet], src: str, sport: int) -> tuple[bytes, bool]:
    """Reassemble what ``src:sport`` sent (payload in sequence order, first copy of each
    byte wins) from the captured segments, skipping segments whose checksum is wrong
    (corrupted on the way). Returns (bytes, complete): complete is False when a hole
    remains or payloads were not fully captured."""
    isn: int | None = None
    pieces: dict[int, bytes] = {}
    complete = True
    for p in packets:
        t = p.tcp
        if t is None or p.src != src or t.sport != sport:
            continue
        if t.syn:
            isn = t.seq
            continue
        if not t.payload_len or checksum_state(p) == "bad":
            continue
        if len(t.payload) < t.payload_len:
            complete = False
        if isn is None:
            isn = (t.seq - 1) & 0xFFFFFFFF
        offset = (t.seq - isn - 1) & 0xFFFFFFFF
        if offset >= 1 << 31:
            continue  # before the SYN we saw: not ours
        if len(t.payload) > len(pieces.get(offset, b"")):
            pieces[offset] = t.payload
    out = bytearray()
    for offset in sorted(pieces):
        data = pieces[offset]
        end = offset + len(data)
        if offset > len(out):
            complete = False
            break
        if end > len(out):
            out += data[len(out) - offset :]
    return bytes(out), complete
