"""Tests for stack.wire.udp, cross-checked against scapy."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from stack.wire.errors import WireError
from stack.wire.ipv4 import IPPROTO_UDP, build_ipv4_header
from stack.wire.udp import UDPDatagram, build_udp, parse_udp

SRC = "192.0.2.1"
DST = "198.51.100.7"


def ip_wrap(udp_bytes: bytes, src: str = SRC, dst: str = DST) -> bytes:
    return build_ipv4_header(src, dst, IPPROTO_UDP, len(udp_bytes), ident=1) + udp_bytes


def scapy_udp_bytes(udp: UDP, payload: bytes = b"", src: str = SRC, dst: str = DST) -> bytes:
    return bytes(IP(src=src, dst=dst) / udp / Raw(payload))[20:]


def scapy_recomputed_checksum(raw_ip: bytes) -> int:
    pkt = IP(raw_ip)
    del pkt[UDP].chksum
    return int(IP(bytes(pkt))[UDP].chksum)


@pytest.mark.parametrize("payload", [b"", b"x", b"hello", bytes(range(256)) * 4 + b"odd"])
def test_build_decoded_by_scapy(payload: bytes) -> None:
    raw = build_udp(SRC, DST, 5353, 53, payload)
    udp = IP(ip_wrap(raw))[UDP]
    assert udp.sport == 5353
    assert udp.dport == 53
    assert udp.len == 8 + len(payload)
    assert bytes(udp.payload) == payload
    assert udp.chksum != 0
    assert udp.chksum == scapy_recomputed_checksum(ip_wrap(raw))


@pytest.mark.parametrize("payload", [b"", b"x", b"query", bytes(1472)])
def test_parse_scapy_datagram(payload: bytes) -> None:
    raw = scapy_udp_bytes(UDP(sport=40000, dport=7), payload)
    decoded = IP(ip_wrap(raw))[UDP]
    dgram = parse_udp(raw, SRC, DST)
    assert dgram.src_port == 40000
    assert dgram.dst_port == 7
    assert dgram.length == decoded.len == 8 + len(payload)
    assert dgram.checksum == decoded.chksum
    assert dgram.payload == payload
    assert isinstance(dgram.payload, memoryview)
    assert dgram.payload.obj is raw


def test_computed_zero_checksum_is_sent_as_ffff() -> None:
    # Pick a 2-byte payload that makes the computed checksum 0 (RFC 768: send 0xFFFF).
    first = build_udp(SRC, DST, 1000, 2000, b"\x00\x00")
    payload = first[6:8]  # the checksum with a zero payload word
    raw = build_udp(SRC, DST, 1000, 2000, payload)
    assert raw[6:8] == b"\xff\xff"
    # scapy applies the same rule.
    assert scapy_udp_bytes(UDP(sport=1000, dport=2000), payload) == raw
    assert parse_udp(raw, SRC, DST).payload == payload


def test_zero_checksum_means_none() -> None:
    raw = scapy_udp_bytes(UDP(sport=1, dport=2, chksum=0), b"unchecked")
    dgram = parse_udp(raw, SRC, DST)
    assert dgram.checksum == 0
    assert dgram.payload == b"unchecked"
    # Even the wrong addresses do not matter without a checksum.
    assert parse_udp(raw, "1.1.1.1", "2.2.2.2").payload == b"unchecked"


def test_bad_checksum() -> None:
    raw = scapy_udp_bytes(UDP(sport=1, dport=2), b"payload")
    with pytest.raises(WireError) as err:
        parse_udp(raw, SRC, "198.51.100.8")
    assert err.value.reason == "bad_udp_checksum"
    corrupted = bytearray(raw)
    corrupted[9] ^= 0x10
    with pytest.raises(WireError) as err:
        parse_udp(bytes(corrupted), SRC, DST)
    assert err.value.reason == "bad_udp_checksum"
    assert parse_udp(bytes(corrupted), SRC, DST, verify_checksum=False).payload == bytes(
        corrupted[8:]
    )


@pytest.mark.parametrize("length", [0, 1, 7])
def test_truncated_header(length: int) -> None:
    raw = build_udp(SRC, DST, 1, 2, b"abc")
    with pytest.raises(WireError) as err:
        parse_udp(raw[:length], SRC, DST)
    assert err.value.reason == "truncated_udp_header"


@pytest.mark.parametrize("length_field", [0, 7])
def test_length_below_header(length_field: int) -> None:
    raw = scapy_udp_bytes(UDP(sport=1, dport=2, len=length_field, chksum=0), b"abc")
    with pytest.raises(WireError) as err:
        parse_udp(raw, SRC, DST)
    assert err.value.reason == "bad_udp_length"


def test_length_beyond_buffer() -> None:
    raw = build_udp(SRC, DST, 1, 2, b"abcdef")
    with pytest.raises(WireError) as err:
        parse_udp(raw[:-1], SRC, DST)
    assert err.value.reason == "truncated_udp_datagram"


def test_trailing_bytes_beyond_length_are_ignored() -> None:
    raw = build_udp(SRC, DST, 1, 2, b"abcdef")
    dgram = parse_udp(raw + b"junk", SRC, DST)
    assert dgram.length == 14
    assert dgram.payload == b"abcdef"


def test_build_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        build_udp(SRC, DST, 0x10000, 1, b"")
    with pytest.raises(ValueError):
        build_udp(SRC, DST, 1, -1, b"")
    with pytest.raises(ValueError):
        build_udp(SRC, DST, 1, 2, bytes(65528))
    assert len(build_udp(SRC, DST, 1, 2, bytes(65527))) == 65535


def test_build_accepts_memoryview_payload() -> None:
    data = b"0123456789"
    assert build_udp(SRC, DST, 1, 2, memoryview(data)[3:6]) == build_udp(SRC, DST, 1, 2, b"345")


@given(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=4).map(str),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.binary(max_size=600),
)
@settings(max_examples=200)
def test_round_trip(src: str, dst: str, sport: int, dport: int, payload: bytes) -> None:
    raw = build_udp(src, dst, sport, dport, payload)
    dgram = parse_udp(raw, src, dst)
    checksum = struct.unpack("!H", raw[6:8])[0]
    assert checksum != 0
    assert dgram == UDPDatagram(sport, dport, 8 + len(payload), checksum, payload)


@given(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=4).map(str),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.binary(max_size=600),
)
@settings(max_examples=50, deadline=None)
def test_matches_scapy(src: str, dst: str, sport: int, dport: int, payload: bytes) -> None:
    ours = build_udp(src, dst, sport, dport, payload)
    assert ours == scapy_udp_bytes(UDP(sport=sport, dport=dport), payload, src, dst)
