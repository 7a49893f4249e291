"""The runner's wire side: inbound packets are valid IPv4/TCP/ICMP, outbound ones decode."""

from __future__ import annotations

from stack.drill.model import IcmpPacket, PacketEvent, TcpPacket
from stack.drill.packets import Mapping, build_icmp_packet, build_tcp_packet, decode
from stack.drill.parser import parse_event
from stack.wire.icmp import parse_icmp
from stack.wire.ipv4 import parse_ipv4
from stack.wire.tcp import parse_tcp

LOCAL, REMOTE = "192.168.0.1", "192.0.2.1"


def tcp(text: str) -> TcpPacket:
    body = parse_event("+0 < " + text, 1).body
    assert isinstance(body, PacketEvent) and isinstance(body.packet, TcpPacket)
    return body.packet


def mapping() -> Mapping:
    return Mapping(LOCAL, REMOTE, 8080, 40000, local_iss=1_000_000, ts_offset=5000)


def test_inbound_segment_is_valid_and_numbered_like_packetdrill() -> None:
    raw = build_tcp_packet(tcp("P. 1:11(10) ack 101 win 32767 <nop,nop,TS val 7 ecr 100,nop,nop,sack 200:300>"), mapping())
    header, payload = parse_ipv4(raw)
    assert (header.src, header.dst, header.ttl) == (REMOTE, LOCAL, 64)
    seg = parse_tcp(payload, REMOTE, LOCAL, verify_checksum=True)
    assert (seg.src_port, seg.dst_port, seg.seq, seg.window, len(seg.payload)) == (40000, 8080, 1, 32767, 10)
    assert seg.ack == 1_000_101  # relative to the stack's ISS
    assert seg.options.timestamp == (7, 5100)  # TSecr mapped to the stack's clock
    assert seg.options.sack_blocks == [(1_000_200, 1_000_300)]


def test_option_layout_is_kept_as_written() -> None:
    raw = build_tcp_packet(tcp("S 0:0(0) win 65535 <mss 1460,sackOK,eol,eol>"), mapping())
    options = raw[20 + 20 :]
    assert options == bytes([2, 4, 0x05, 0xB4, 4, 2, 0, 0])


def test_ip_attributes() -> None:
    raw = build_tcp_packet(tcp("(ttl 3) (tos 0x28) . 1:1(0) ack 1 win 1"), mapping())
    header, _ = parse_ipv4(raw)
    assert (header.ttl, header.tos) == (3, 0x28)


def test_fast_open_option_is_built() -> None:
    """RFC 7413 4.1.1: kind 34, length 2 + the cookie; an empty one is a cookie request."""
    raw = build_tcp_packet(tcp("S 0:0(0) win 1 <FO 01020304>"), mapping())
    assert raw[40:46] == bytes([34, 6, 1, 2, 3, 4])
    raw = build_tcp_packet(tcp("S 0:0(0) win 1 <FO>"), mapping())
    assert raw[40:42] == bytes([34, 2])


def test_udp_encapsulation_is_built_and_decoded() -> None:
    """TCP over UDP (`/udp(S > D)`): the segment after a UDP header from S to D, both
    checksums right (packetdrill's way); a segment the stack sends that way decodes
    with its UDP ports."""
    from stack.wire.udp import parse_udp

    raw = build_tcp_packet(tcp("S 0:0(0) win 1/udp(1 > 9811)"), mapping())
    header, payload = parse_ipv4(raw)
    assert header.proto == 17
    dgram = parse_udp(payload, REMOTE, LOCAL)  # verifies the UDP checksum
    assert (dgram.src_port, dgram.dst_port) == (1, 9811)
    seg = parse_tcp(dgram.payload, REMOTE, LOCAL)  # and the TCP one
    assert (seg.src_port, seg.dst_port, seg.flags) == (40000, 8080, 0x02)
    swapped = Mapping(REMOTE, LOCAL, 40000, 8080, local_iss=0)
    back = decode(build_tcp_packet(tcp("S. 5:5(0) ack 1 win 1/udp(9811 > 1)"), swapped), 0.0, mapping())
    assert back.udp == (9811, 1) and back.raw_seq == 5 and back.flags == 0x12
    assert decode(build_tcp_packet(tcp("S 0:0(0) win 1"), swapped), 0.0, mapping()).udp is None


def test_icmp_error_quotes_the_stacks_segment() -> None:
    body = parse_event("+0 < icmp unreachable port_unreachable [1:1(0)]", 1).body
    assert isinstance(body, PacketEvent) and isinstance(body.packet, IcmpPacket)
    raw = build_icmp_packet(body.packet, mapping())
    header, payload = parse_ipv4(raw)
    msg = parse_icmp(payload)
    assert (header.src, msg.type, msg.code) == (REMOTE, 3, 3)
    quote = bytes(msg.payload)
    inner_src, inner_dst = quote[12:16], quote[16:20]
    assert (inner_src, inner_dst) == (bytes([192, 168, 0, 1]), bytes([192, 0, 2, 1]))
    assert int.from_bytes(quote[24:28], "big") == 1_000_001  # ISS + 1


def test_decode_maps_back_to_the_scripts_numbers() -> None:
    # A segment "from the stack": build it as the peer would, then swap the roles.
    m = mapping()
    swapped = Mapping(REMOTE, LOCAL, 40000, 8080)
    raw = build_tcp_packet(tcp("S. 1000000:1000000(0) ack 1 win 65535 <mss 1460,nop,wscale 7,TS val 5100 ecr 7>"), swapped)
    d = decode(raw, 0.5, m)
    assert (d.seq, d.ack, d.win, d.time) == (0, 1, 65535, 0.5)
    # (the builder pads the 18 option bytes to 20 with EOLs; decoded as they are)
    assert d.text() == "S. 0:0(0) ack 1 win 65535 <mss 1460,nop,wscale 7,TS val 100 ecr 7,eol,eol>"
