"""IPv6 output (stack/ip6output.py): packets checked with scapy."""

from __future__ import annotations

import socket

from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    IPv6,
    IPv6ExtHdrFragment,
    defragment6,
    in6_chksum,
)

from stack.io.virtio import VIRTIO_NET_HDR_GSO_TCPV6
from stack.ip6input import Datagram6, Icmp6Error, Ipv6Input
from stack.ip6output import Ipv6Output, tcp_mss_for_mtu
from stack.ratelimit import ErrorRateLimiter
from stack.wire import icmpv6
from stack.wire.ipv4 import IPPROTO_UDP
from stack.wire.ipv6 import IPPROTO_ICMPV6
from stack.wire.tcp import ACK, PSH, TCPOptions, TCPSegment
from stack.wire.udp import build_udp

STACK = "fd00:0:0:1::2"
PEER = "fd00:0:0:2::2"


def joined(packet: list[bytes | memoryview]) -> bytes:
    return b"".join(bytes(p) for p in packet)


def test_mss() -> None:
    assert tcp_mss_for_mtu(1500) == 1440 and tcp_mss_for_mtu(1280) == 1220


def test_flow_labels_are_remembered_per_flow() -> None:
    out = Ipv6Output(STACK, 1500)
    a = out.flow(PEER, 6, 80, 40000)
    assert a == out.flow(PEER, 6, 80, 40000) == out.flow_label(PEER, 6, 80, 40000)
    assert a != out.flow(PEER, 6, 80, 40001)


def test_small_datagram_is_one_packet_with_the_flow_label() -> None:
    out = Ipv6Output(STACK, 1500)
    flow = out.flow_label(PEER, IPPROTO_UDP, 7, 5000)
    udp = build_udp(STACK, PEER, 7, 5000, b"hi")
    (packet,) = out.datagram(PEER, IPPROTO_UDP, udp, 0.0, flow=flow)
    pkt = IPv6(joined(packet))
    assert (pkt.src, pkt.dst, pkt.hlim, pkt.fl, pkt.nh) == (STACK, PEER, 64, flow, IPPROTO_UDP)
    assert pkt[UDP].dport == 5000 and pkt.plen == len(udp)


def test_large_datagram_is_fragmented_at_the_path_mtu() -> None:
    """RFC 8200 4.5: the source fragments; every fragment fits the path MTU, carries a
    multiple of 8 octets but the last, and scapy's defragment6 rebuilds the datagram."""
    out = Ipv6Output(STACK, 1500)
    out.pmtu.packet_too_big(PEER, 1280, 0.0)
    udp = build_udp(STACK, PEER, 7, 5000, bytes(range(256)) * 20)
    packets = out.datagram(PEER, IPPROTO_UDP, udp, 1.0)
    raws = [joined(p) for p in packets]
    assert len(raws) == 5 and all(len(r) <= 1280 for r in raws)
    frags = [IPv6(r) for r in raws]
    ids = {f[IPv6ExtHdrFragment].id for f in frags}
    assert len(ids) == 1
    assert [f[IPv6ExtHdrFragment].m for f in frags] == [1, 1, 1, 1, 0]
    assert all(len(bytes(f[IPv6ExtHdrFragment].payload)) % 8 == 0 for f in frags[:-1])
    whole = defragment6(frags)
    assert bytes(whole[UDP]) == udp
    # And our own input stage puts them back together too.
    inp = Ipv6Input([PEER])
    results = [inp.receive(memoryview(r), 1.0) for r in raws]
    assert isinstance(results[-1], Datagram6) and bytes(results[-1].payload) == udp
    assert out.fragments_out == 5


def test_tcp_segment_plain_and_offloaded() -> None:
    out = Ipv6Output(STACK, 1500)
    seg = TCPSegment(80, 40000, 1, 2, ACK | PSH, 1000, 0, TCPOptions(timestamp=(1, 2)), bytes(5000))
    packet, vnet = out.tcp_segment(PEER, seg, 1428, offload=False)
    assert vnet is None
    raw = joined(packet)
    assert in6_chksum(socket.IPPROTO_TCP, IPv6(raw), raw[40:]) == 0
    assert IPv6(raw)[TCP].sport == 80
    packet, vnet = out.tcp_segment(PEER, seg, 1428, offload=True)
    assert vnet is not None and vnet.needs_csum
    assert (vnet.csum_start, vnet.csum_offset, vnet.gso_type, vnet.gso_size, vnet.hdr_len) == (
        40, 16, VIRTIO_NET_HDR_GSO_TCPV6, 1428, 40 + 32)
    small = TCPSegment(80, 40000, 1, 2, ACK, 1000, 0, TCPOptions(), b"")
    packet, vnet = out.tcp_segment(PEER, small, 1428, offload=True)
    assert vnet is not None and not vnet.is_gso and len(packet) == 2


def test_errors_are_rate_limited_and_well_formed() -> None:
    out = Ipv6Output(STACK, 1500, limiter=ErrorRateLimiter(per_peer_rate=1, per_peer_burst=2))
    quote = bytes(IPv6(src=PEER, dst=STACK) / UDP(dport=9))
    err = Icmp6Error(PEER, icmpv6.DEST_UNREACH, icmpv6.UNREACH_PORT, bytes(4), quote)
    sent = [out.error(err, 0.0) for _ in range(5)]
    assert [len(s) for s in sent] == [1, 1, 0, 0, 0]
    assert out.limiter.limited == 3
    pkt = IPv6(joined(sent[0][0]))
    assert pkt.nh == IPPROTO_ICMPV6 and pkt.payload.type == 1 and pkt.payload.code == 4
    assert len(out.error(err, 1.0)) == 1  # a token again a second later


def test_echo_reply() -> None:
    out = Ipv6Output(STACK, 1500)
    req = icmpv6.parse_icmpv6(icmpv6.build_icmpv6(icmpv6.ECHO_REQUEST, 0, icmpv6.echo_rest(7, 9),
                                                  b"x" * 3000, PEER, STACK), PEER, STACK)
    packets = out.echo_reply(PEER, req, 0.0)
    assert len(packets) == 3  # 3000 octets of data do not fit 1500
    reply = defragment6([IPv6(joined(p)) for p in packets])
    msg = reply[ICMPv6EchoReply]
    assert (msg.id, msg.seq, msg.data) == (7, 9, b"x" * 3000)


def test_ecn_codepoint_in_the_traffic_class_and_gso_ecn() -> None:
    """RFC 3168 section 5: over IPv6 the ECN field is the Traffic Class's low two bits;
    a TSO segment carrying CWR asks the kernel for GSO_ECN (RFC 3168 6.1.2)."""
    from stack.io.virtio import VIRTIO_NET_HDR_GSO_ECN
    from stack.wire.tcp import CWR

    out = Ipv6Output(STACK, 1500)
    seg = TCPSegment(80, 40000, 1, 2, ACK | CWR, 1000, 0, TCPOptions(), bytes(4000))
    seg.ecn = 2  # ECT(0)
    packet, vnet = out.tcp_segment(PEER, seg, 1428, offload=True)
    assert IPv6(joined(packet)).tc & 3 == 2
    assert vnet is not None and vnet.gso_type == VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN
