"""Tests for stack.wire.icmp, cross-checked against scapy."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP
from scapy.packet import Raw

from stack.wire.errors import WireError
from stack.wire.icmp import (
    DEST_UNREACH,
    ECHO_REPLY,
    ECHO_REQUEST,
    TIME_EXCEEDED,
    TIME_EXCEEDED_REASSEMBLY,
    TIME_EXCEEDED_TTL,
    UNREACH_FRAG_NEEDED,
    UNREACH_HOST,
    UNREACH_NET,
    UNREACH_PORT,
    UNREACH_PROTO,
    ICMPMessage,
    build_icmp,
    echo_id_seq,
    echo_rest,
    frag_needed_rest,
    next_hop_mtu,
    parse_icmp,
)
from stack.wire.ipv4 import IPPROTO_ICMP, parse_ipv4


def scapy_recomputed_checksum(raw: bytes) -> int:
    msg = ICMP(raw)
    del msg.chksum
    return int(ICMP(bytes(msg)).chksum)


def test_constants() -> None:
    assert (ECHO_REPLY, DEST_UNREACH, ECHO_REQUEST, TIME_EXCEEDED) == (0, 3, 8, 11)
    assert (UNREACH_NET, UNREACH_HOST, UNREACH_PROTO, UNREACH_PORT, UNREACH_FRAG_NEEDED) == (
        0,
        1,
        2,
        3,
        4,
    )
    assert (TIME_EXCEEDED_TTL, TIME_EXCEEDED_REASSEMBLY) == (0, 1)


@pytest.mark.parametrize("payload", [b"", b"a", b"abcdefgh" * 7, bytes(range(256)) + b"odd"])
@pytest.mark.parametrize("icmp_type", [ECHO_REQUEST, ECHO_REPLY])
def test_build_echo_decoded_by_scapy(icmp_type: int, payload: bytes) -> None:
    raw = build_icmp(icmp_type, 0, echo_rest(0x1234, 0xFFFE), payload)
    msg = ICMP(raw)
    assert msg.type == icmp_type
    assert msg.code == 0
    assert msg.id == 0x1234
    assert msg.seq == 0xFFFE
    assert bytes(msg.payload) == payload
    assert msg.chksum == scapy_recomputed_checksum(raw)


def test_build_frag_needed_decoded_by_scapy() -> None:
    original = bytes(
        IP(src="10.0.0.2", dst="10.0.0.1", flags="DF") / UDP(sport=1, dport=2) / Raw(b"x" * 20)
    )
    quoted = original[:28]  # RFC 792: original IP header plus 64 bits of data
    raw = build_icmp(DEST_UNREACH, UNREACH_FRAG_NEEDED, frag_needed_rest(1400), quoted)
    msg = ICMP(raw)
    assert msg.type == DEST_UNREACH
    assert msg.code == UNREACH_FRAG_NEEDED
    assert msg.nexthopmtu == 1400
    assert msg.reserved == 0 and msg.length == 0  # the unused high 16 bits (RFC 1191 section 4)
    assert bytes(msg.payload)[:28] == quoted
    assert msg.chksum == scapy_recomputed_checksum(raw)


def test_build_port_unreachable_decoded_by_scapy() -> None:
    quoted = bytes(IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=5, dport=9))
    raw = build_icmp(DEST_UNREACH, UNREACH_PORT, bytes(4), quoted)
    msg = ICMP(raw)
    assert (msg.type, msg.code) == (3, 3)
    assert msg.chksum == scapy_recomputed_checksum(raw)


@pytest.mark.parametrize("icmp_type", [ECHO_REQUEST, ECHO_REPLY])
def test_parse_scapy_echo(icmp_type: int) -> None:
    raw_ip = bytes(
        IP(src="10.0.0.9", dst="10.0.0.1") / ICMP(type=icmp_type, id=77, seq=3) / Raw(b"ping data")
    )
    header, body = parse_ipv4(raw_ip)
    assert header.proto == IPPROTO_ICMP
    msg = parse_icmp(body)
    decoded = IP(raw_ip)[ICMP]
    assert msg.type == icmp_type
    assert msg.code == 0
    assert msg.checksum == decoded.chksum
    assert msg.rest == struct.pack("!HH", 77, 3)
    assert echo_id_seq(msg) == (77, 3)
    assert msg.payload == b"ping data"
    assert isinstance(msg.payload, memoryview)
    assert msg.payload.obj is raw_ip


def test_parse_scapy_frag_needed() -> None:
    quoted = bytes(IP(src="10.0.0.1", dst="10.0.0.9", flags="DF") / Raw(b"12345678"))
    raw = bytes(ICMP(type=3, code=4, nexthopmtu=1280) / Raw(quoted))
    msg = parse_icmp(raw)
    assert (msg.type, msg.code) == (DEST_UNREACH, UNREACH_FRAG_NEEDED)
    assert next_hop_mtu(msg) == 1280
    assert msg.payload == quoted
    # The quoted datagram can be parsed to find the connection it belongs to.
    inner, data = parse_ipv4(msg.payload)
    assert inner.dst == "10.0.0.9"
    assert data == b"12345678"


def test_next_hop_mtu_zero_from_old_router() -> None:
    # RFC 1191 section 5: a router that predates RFC 1191 leaves the field zero.
    raw = bytes(ICMP(type=3, code=4) / Raw(b"x" * 28))
    assert next_hop_mtu(parse_icmp(raw)) == 0


def test_parse_scapy_time_exceeded() -> None:
    raw = bytes(ICMP(type=11, code=0) / Raw(b"q" * 28))
    msg = parse_icmp(raw)
    assert (msg.type, msg.code) == (TIME_EXCEEDED, TIME_EXCEEDED_TTL)
    assert msg.rest == bytes(4)
    assert msg.payload == b"q" * 28


def test_helpers_reject_other_types() -> None:
    unreach = ICMPMessage(DEST_UNREACH, UNREACH_PORT, 0, bytes(4), b"")
    with pytest.raises(ValueError):
        echo_id_seq(unreach)
    with pytest.raises(ValueError):
        next_hop_mtu(unreach)
    with pytest.raises(ValueError):
        next_hop_mtu(ICMPMessage(ECHO_REQUEST, 0, 0, bytes(4), b""))


@pytest.mark.parametrize("length", [0, 1, 4, 7])
def test_truncated(length: int) -> None:
    raw = build_icmp(ECHO_REQUEST, 0, echo_rest(1, 1), b"")
    with pytest.raises(WireError) as err:
        parse_icmp(raw[:length])
    assert err.value.reason == "truncated_icmp"


def test_bad_checksum() -> None:
    raw = bytes(ICMP(type=8, id=1, seq=1, chksum=0xDEAD) / Raw(b"abc"))
    with pytest.raises(WireError) as err:
        parse_icmp(raw)
    assert err.value.reason == "bad_icmp_checksum"
    good = bytearray(build_icmp(ECHO_REQUEST, 0, echo_rest(1, 1), b"abc"))
    good[-1] ^= 1
    with pytest.raises(WireError) as err:
        parse_icmp(bytes(good))
    assert err.value.reason == "bad_icmp_checksum"


def test_build_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        build_icmp(ECHO_REQUEST, 0, b"\x00\x00\x00", b"")
    with pytest.raises(ValueError):
        build_icmp(ECHO_REQUEST, 0, bytes(5), b"")
    with pytest.raises(ValueError):
        build_icmp(256, 0, bytes(4), b"")


@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(min_size=4, max_size=4),
    st.binary(max_size=600),
)
@settings(max_examples=200)
def test_round_trip(icmp_type: int, code: int, rest: bytes, payload: bytes) -> None:
    raw = build_icmp(icmp_type, code, rest, payload)
    msg = parse_icmp(raw)
    assert msg == ICMPMessage(icmp_type, code, struct.unpack("!H", raw[2:4])[0], rest, payload)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=200))
@settings(max_examples=50, deadline=None)
def test_echo_matches_scapy(ident: int, seq: int, payload: bytes) -> None:
    ours = build_icmp(ECHO_REQUEST, 0, echo_rest(ident, seq), payload)
    assert ours == bytes(ICMP(type=8, id=ident, seq=seq) / Raw(payload))
    assert echo_id_seq(parse_icmp(ours)) == (ident, seq)
