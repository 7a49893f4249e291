"""The runner's wire side for IPv6 scripts (--ip_version=ipv6), against scapy's decoder.

Inbound: a 40-byte IPv6 header (RFC 8200 section 3), the TCP checksum over the IPv6
pseudo-header (section 8.1), ICMPv6 errors (RFC 4443) quoting the stack's IPv6 header
and the first 8 octets of its TCP header, as packetdrill builds them. Outbound: the
stack's IPv6 packets decode into the script's numbering.
"""

from __future__ import annotations

import hashlib
import socket

import pytest
from scapy.layers.inet import TCP, TCPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
    IPv6ExtHdrDestOpt,
    in6_chksum,
)

from stack.drill.adapter import LOCAL_ADDR6, REMOTE_ADDR6
from stack.drill.model import IcmpPacket, PacketEvent, TcpPacket, Unsupported
from stack.drill.packets import Mapping, build_icmp_packet, build_tcp_packet, decode
from stack.drill.parser import parse_event

LOCAL, REMOTE = LOCAL_ADDR6, REMOTE_ADDR6


def tcp(text: str) -> TcpPacket:
    body = parse_event("+0 < " + text, 1).body
    assert isinstance(body, PacketEvent) and isinstance(body.packet, TcpPacket)
    return body.packet


def icmp(text: str) -> IcmpPacket:
    body = parse_event("+0 < " + text, 1).body
    assert isinstance(body, PacketEvent) and isinstance(body.packet, IcmpPacket)
    return body.packet


def mapping() -> Mapping:
    return Mapping(LOCAL, REMOTE, 8080, 40000, local_iss=1_000_000, ts_offset=5000)


def test_packetdrills_ipv6_addresses() -> None:
    # packetdrill's defaults: a ULA for the local side (RFC 4193), the documentation
    # prefix for the remote one (RFC 3849).
    assert (LOCAL, REMOTE) == ("fd3d:fa7b:d17d::1", "2001:db8::1")
    assert mapping().ipv6 and not Mapping("192.168.0.1", "192.0.2.1", 1, 2).ipv6


def test_inbound_segment_decoded_by_scapy() -> None:
    raw = build_tcp_packet(tcp("P. 1:11(10) ack 101 win 32767 <nop,nop,TS val 7 ecr 100,nop,nop,sack 200:300>"),
                           mapping())
    pkt = IPv6(raw)
    assert (pkt.version, pkt.src, pkt.dst, pkt.nh, pkt.hlim, pkt.tc, pkt.fl) == (6, REMOTE, LOCAL, 6, 64, 0, 0)
    assert pkt.plen == len(raw) - 40 == 20 + 12 + 12 + 10
    seg = pkt[TCP]
    assert (seg.sport, seg.dport, seg.seq, seg.window, len(bytes(seg.payload))) == (40000, 8080, 1, 32767, 10)
    assert seg.ack == 1_000_101  # relative to the stack's ISS
    opts = dict((k, v) for k, v in seg.options if k != "NOP")
    assert opts["Timestamp"] == (7, 5100)  # TSecr mapped to the stack's clock
    assert opts["SAck"] == (1_000_200, 1_000_300)
    # RFC 8200 8.1: the checksum covers the IPv6 pseudo-header; scapy agrees with it.
    assert in6_chksum(socket.IPPROTO_TCP, pkt, bytes(pkt[TCP])) == 0
    ours = seg.chksum
    del pkt[TCP].chksum
    assert IPv6(bytes(pkt))[TCP].chksum == ours


def test_inbound_syn_is_byte_exact_with_scapys() -> None:
    raw = build_tcp_packet(tcp("S 0:0(0) win 65535 <mss 1440,sackOK,nop,nop,TS val 10 ecr 0>"), mapping())
    theirs = bytes(IPv6(src=REMOTE, dst=LOCAL, hlim=64)
                   / TCP(sport=40000, dport=8080, seq=0, ack=0, flags="S", window=65535,
                         options=[("MSS", 1440), ("SAckOK", b""), ("NOP", None), ("NOP", None),
                                  ("Timestamp", (10, 0))]))
    assert hashlib.sha256(raw).hexdigest() == hashlib.sha256(theirs).hexdigest()


def test_hop_limit_traffic_class_and_ecn() -> None:
    """(hlim N) is the Hop Limit, (class N) the Traffic Class, whose low two bits are the
    ECN field as in IPv4 (RFC 3168 section 5)."""
    pkt = IPv6(build_tcp_packet(tcp("(hlim 3) (class 0x28) . 1:1(0) ack 1 win 1"), mapping()))
    assert (pkt.hlim, pkt.tc) == (3, 0x28)
    pkt = IPv6(build_tcp_packet(tcp("[ce] . 1:1(0) ack 1 win 1"), mapping()))
    assert pkt.tc == 3
    pkt = IPv6(build_tcp_packet(tcp("(class 0x20) [ect0] . 1:1(0) ack 1 win 1"), mapping()))
    assert pkt.tc == 0x22


def _quoted(pkt: IPv6) -> tuple[IPerror6, TCPerror]:
    inner = pkt[IPerror6]
    return inner, inner[TCPerror]


@pytest.mark.parametrize(("text", "layer", "type_", "code"), [
    ("icmp unreachable port_unreachable [0:0(0)]", ICMPv6DestUnreach, 1, 4),
    ("icmp unreachable admin_prohibited [0:0(0)]", ICMPv6DestUnreach, 1, 1),
    ("icmp unreachable no_route [0:0(0)]", ICMPv6DestUnreach, 1, 0),
    ("icmp unreachable not_neighbour [0:0(0)]", ICMPv6DestUnreach, 1, 2),
    ("icmp unreachable address_unreachable [0:0(0)]", ICMPv6DestUnreach, 1, 3),
    ("icmp unreachable code_6 [0:0(0)]", ICMPv6DestUnreach, 1, 6),
    ("icmp time_exceeded exceeded_hop_limit [0:0(0)]", ICMPv6TimeExceeded, 3, 0),
    ("icmp time_exceeded exceeded_frag_time [0:0(0)]", ICMPv6TimeExceeded, 3, 1),
    ("icmp parameter_problem header_field [0:0(0)]", ICMPv6ParamProblem, 4, 0),
    ("icmp parameter_problem unknown_next_header [0:0(0)]", ICMPv6ParamProblem, 4, 1),
    ("icmp parameter_problem unknown_option [0:0(0)]", ICMPv6ParamProblem, 4, 2),
])  # fmt: skip
def test_icmpv6_errors_decoded_by_scapy(text: str, layer: type, type_: int, code: int) -> None:
    raw = build_icmp_packet(icmp(text), mapping())
    pkt = IPv6(raw)
    assert (pkt.src, pkt.dst, pkt.nh, pkt.plen) == (REMOTE, LOCAL, 58, len(raw) - 40)
    msg = pkt[layer]
    assert (msg.type, msg.code) == (type_, code)
    assert in6_chksum(58, pkt, bytes(pkt.payload)) == 0  # RFC 4443 2.3, over the pseudo-header
    # packetdrill's quote: the stack's IPv6 header and 8 octets of its TCP header.
    inner, seg = _quoted(pkt)
    assert (inner.src, inner.dst, inner.nh, inner.plen) == (LOCAL, REMOTE, 6, 20)
    assert len(raw) == 40 + 8 + 40 + 8
    assert (seg.sport, seg.dport, seg.seq) == (8080, 40000, 1_000_000)  # ISS: relative 0


def test_packet_too_big_carries_the_mtu() -> None:
    pkt = IPv6(build_icmp_packet(icmp("icmp packet_too_big mtu 1300 [1:1441(1440)]"), mapping()))
    ptb = pkt[ICMPv6PacketTooBig]
    assert (ptb.type, ptb.code, ptb.mtu) == (2, 0, 1300)  # RFC 4443 3.2: 32-bit MTU
    inner, seg = _quoted(pkt)
    assert inner.plen == 20 + 1440 and seg.seq == 1_000_001


def test_icmpv6_refusals() -> None:
    with pytest.raises(Unsupported, match="ICMP type"):
        build_icmp_packet(icmp("icmp source_quench [0:0(0)]"), mapping())  # IPv4 only
    with pytest.raises(Unsupported, match="MTU"):
        build_icmp_packet(icmp("icmp unreachable port_unreachable mtu 1300 [0:0(0)]"), mapping())


def test_decode_the_stacks_ipv6_segment() -> None:
    """A SYN-ACK as the stack sends it (flow label set) maps back to the script's numbers."""
    raw = bytes(IPv6(src=LOCAL, dst=REMOTE, fl=0x12345, tc=0xB6, hlim=64)
                / TCP(sport=8080, dport=40000, seq=1_000_000, ack=1, flags="SA", window=65535,
                      options=[("MSS", 1440), ("NOP", None), ("WScale", 7), ("Timestamp", (5100, 7))]))
    d = decode(raw, 0.5, mapping())
    assert (d.seq, d.ack, d.win, d.time, d.ttl, d.tos) == (0, 1, 65535, 0.5, 64, 0xB6)  # ECN: ect0
    assert (d.sport, d.dport, d.raw_seq, d.raw_ts_val) == (8080, 40000, 1_000_000, 5100)
    # (scapy pads the 18 option bytes to 20 with EOLs; decoded as they are)
    assert d.text() == "S. 0:0(0) ack 1 win 65535 <mss 1440,nop,wscale 7,TS val 100 ecr 7,eol,eol>"


def test_decode_skips_extension_headers_and_link_padding() -> None:
    raw = bytes(IPv6(src=LOCAL, dst=REMOTE) / IPv6ExtHdrDestOpt()
                / TCP(sport=8080, dport=40000, seq=1_000_011, ack=5, flags="PA") / (b"x" * 7))
    d = decode(raw + b"\0" * 6, 1.0, mapping())  # trailing padding is not payload
    assert (d.seq, d.length, d.ack) == (11, 7, 5)


def test_decode_the_stacks_icmpv6_message() -> None:
    raw = bytes(IPv6(src=LOCAL, dst=REMOTE) / ICMPv6EchoRequest())
    assert decode(raw, 0.0, mapping()).icmp == (128, 0)
