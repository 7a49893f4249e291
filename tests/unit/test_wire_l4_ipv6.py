"""TCP, UDP and the pseudo-header over IPv6 (RFC 8200 section 8.1), against scapy."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, in6_chksum

from stack.wire.checksum import pseudo_header_sum
from stack.wire.errors import WireError
from stack.wire.ipv4 import IPPROTO_TCP, IPPROTO_UDP
from stack.wire.ipv6 import IPPROTO_DSTOPTS, build_ipv6_header, build_options_header, walk_headers
from stack.wire.tcp import ACK, PSH, SYN, TCPOptions, TCPSegment, build_tcp, parse_tcp
from stack.wire.udp import build_udp, parse_udp

SRC = "fd00:0:0:1::1"
DST = "fd00:0:0:1::2"
v6 = st.ip_addresses(v=6).map(str)


def naive_sum(data: bytes) -> int:
    """RFC 1071 section 4.1, one 16-bit word at a time with end-around carry."""
    data += b"\0" * (len(data) % 2)
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def pseudo6(src: str, dst: str, proto: int, length: int) -> bytes:
    """RFC 8200 section 8.1: source, destination, 32-bit length, 3 zero octets, next header."""
    return (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
            + struct.pack("!I3xB", length, proto))


@settings(max_examples=200, deadline=None)
@given(v6, v6, st.integers(0, 255), st.integers(0, 0xFFFFFFFF))
def test_pseudo_header_sum_ipv6(src: str, dst: str, proto: int, length: int) -> None:
    assert pseudo_header_sum(src, dst, proto, length) == naive_sum(pseudo6(src, dst, proto, length))


def test_pseudo_header_sum_edges() -> None:
    for src, dst in [("::", "::"), ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::"),
                     ("::ffff:10.0.0.1", "::1")]:
        for length in (0, 0xFFFF, 0x10000, 0xFFFFFFFF):
            assert pseudo_header_sum(src, dst, 58, length) == naive_sum(pseudo6(src, dst, 58, length))


@pytest.mark.parametrize(("src", "dst"), [("10.0.0.1", "fd00::1"), ("fd00::1", "10.0.0.1"),
                                          ("fd00::zz", "fd00::1")])
def test_pseudo_header_rejects_mixed_or_bad_addresses(src: str, dst: str) -> None:
    with pytest.raises(ValueError):
        pseudo_header_sum(src, dst, 6, 20)


@settings(max_examples=100, deadline=None)
@given(src=v6, dst=v6, sport=st.integers(0, 0xFFFF), dport=st.integers(0, 0xFFFF),
       payload=st.binary(max_size=300), flags=st.sampled_from([SYN, ACK, ACK | PSH]))
def test_tcp_over_ipv6_checksum_matches_scapy(src: str, dst: str, sport: int, dport: int,
                                              payload: bytes, flags: int) -> None:
    seg = TCPSegment(sport, dport, 1, 2, flags, 1000, 0,
                     TCPOptions(mss=1440 if flags == SYN else None, timestamp=(5, 6)), payload)
    tcp = build_tcp(seg, src, dst)
    assert in6_chksum(socket.IPPROTO_TCP, IPv6(src=src, dst=dst), tcp) == 0
    raw = build_ipv6_header(src, dst, IPPROTO_TCP, len(tcp)) + tcp
    pkt = IPv6(raw)
    ours = pkt[TCP].chksum
    del pkt[TCP].chksum
    assert IPv6(bytes(pkt))[TCP].chksum == ours
    parsed = parse_tcp(tcp, src, dst)
    assert bytes(parsed.payload) == payload and parsed.flags == flags


def test_parse_scapy_tcp_over_ipv6_with_extension_header() -> None:
    """The pseudo-header holds the upper-layer length and protocol, not the
    extension headers' (RFC 8200 section 8.1)."""
    raw = bytes(IPv6(src=SRC, dst=DST) / IPv6ExtHdrDestOpt() / TCP(sport=1, dport=80, flags="S") / b"x")
    chain = walk_headers(raw)
    seg = parse_tcp(raw[chain.at:], SRC, DST)
    assert seg.syn and seg.dst_port == 80 and bytes(seg.payload) == b"x"
    with pytest.raises(WireError):
        parse_tcp(raw[chain.at:], SRC, "fd00:0:0:1::3")


@settings(max_examples=100, deadline=None)
@given(src=v6, dst=v6, payload=st.binary(max_size=300))
def test_udp_over_ipv6_matches_scapy(src: str, dst: str, payload: bytes) -> None:
    ours = build_udp(src, dst, 5353, 53, payload)
    theirs = bytes(IPv6(src=src, dst=dst) / UDP(sport=5353, dport=53) / payload)[40:]
    assert ours == theirs
    assert bytes(parse_udp(theirs, src, dst).payload) == payload


def test_udp_zero_checksum_is_refused_over_ipv6_only() -> None:
    """RFC 8200 section 8.1: IPv6 receivers must discard UDP with a zero checksum
    (over IPv4 zero means "none", RFC 768)."""
    dgram = bytearray(build_udp(SRC, DST, 1, 2, b"data"))
    dgram[6:8] = b"\0\0"
    with pytest.raises(WireError) as info:
        parse_udp(bytes(dgram), SRC, DST)
    assert info.value.reason == "zero_udp_checksum"
    assert parse_udp(bytes(dgram), "10.0.0.1", "10.0.0.2").payload == b"data"
    # The kernel checked it (offloads): not judged again.
    assert parse_udp(bytes(dgram), SRC, DST, verify_checksum=False).payload == b"data"


def test_udp_computed_zero_is_sent_as_ffff_over_ipv6() -> None:
    """RFC 8200 section 8.1: a computed zero checksum is sent as 0xFFFF."""
    base = build_udp(SRC, DST, 1, 2, b"\0\0")
    # Choose the payload word that makes the one's-complement sum 0xFFFF.
    need = (~int.from_bytes(base[6:8], "big")) & 0xFFFF
    payload = (0xFFFF - need).to_bytes(2, "big") if need else b"\0\0"
    dgram = build_udp(SRC, DST, 1, 2, payload)
    if dgram[6:8] != b"\xff\xff":  # the arithmetic above picks the word; check it did
        pytest.skip("could not construct a zero-sum datagram")
    assert parse_udp(dgram, SRC, DST).payload == payload


def test_options_header_before_udp_decoded_by_scapy() -> None:
    udp = build_udp(SRC, DST, 9, 10, b"abc")
    ext = build_options_header(IPPROTO_UDP)
    raw = build_ipv6_header(SRC, DST, IPPROTO_DSTOPTS, len(ext) + len(udp)) + ext + udp
    pkt = IPv6(raw)
    assert pkt[UDP].dport == 10
    chk = pkt[UDP].chksum
    del pkt[UDP].chksum
    assert IPv6(bytes(pkt))[UDP].chksum == chk
