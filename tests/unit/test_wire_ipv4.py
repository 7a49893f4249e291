"""Tests for stack.wire.ipv4, cross-checked against scapy."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, IPOption_NOP, IPOption_RR
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum

from stack.wire.errors import WireError
from stack.wire.ipv4 import (
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPv4Header,
    build_ipv4_header,
    parse_ipv4,
)


def with_fixed_checksum(header: bytes) -> bytes:
    """Recompute the IPv4 header checksum with scapy's independent implementation."""
    zeroed = header[:10] + b"\x00\x00" + header[12:]
    return zeroed[:10] + struct.pack("!H", scapy_checksum(zeroed)) + zeroed[12:]


def scapy_recomputed_checksum(raw: bytes) -> int:
    pkt = IP(raw)
    del pkt.chksum
    return int(IP(bytes(pkt)).chksum)


def test_protocol_numbers() -> None:
    assert (IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP) == (1, 6, 17)


@pytest.mark.parametrize(
    ("df", "mf", "frag_offset"),
    [
        (True, False, 0),
        (False, False, 0),
        (False, True, 0),
        (False, True, 1480),
        (False, False, 65528),
    ],
)
def test_build_decoded_by_scapy(df: bool, mf: bool, frag_offset: int) -> None:
    payload = b"hello, world"
    header = build_ipv4_header(
        "10.0.0.1",
        "192.168.7.9",
        IPPROTO_UDP,
        len(payload),
        ident=0xBEEF,
        ttl=33,
        df=df,
        tos=0xB8,
        mf=mf,
        frag_offset=frag_offset,
    )
    assert len(header) == 20
    pkt = IP(header + payload)
    assert pkt.version == 4
    assert pkt.ihl == 5
    assert pkt.tos == 0xB8
    assert pkt.len == 20 + len(payload)
    assert pkt.id == 0xBEEF
    assert bool(pkt.flags.DF) is df
    assert bool(pkt.flags.MF) is mf
    assert not pkt.flags.evil
    assert pkt.frag * 8 == frag_offset
    assert pkt.ttl == 33
    assert pkt.proto == IPPROTO_UDP
    assert pkt.src == "10.0.0.1"
    assert pkt.dst == "192.168.7.9"
    assert pkt.options == []
    assert bytes(pkt.payload) == payload
    assert pkt.chksum == scapy_recomputed_checksum(header + payload)


def test_build_defaults() -> None:
    header = build_ipv4_header("1.2.3.4", "5.6.7.8", IPPROTO_TCP, 0, ident=1)
    pkt = IP(header)
    assert pkt.ttl == 64
    assert pkt.flags.DF and not pkt.flags.MF
    assert pkt.frag == 0 and pkt.tos == 0 and pkt.len == 20
    assert pkt.chksum == scapy_recomputed_checksum(header)


@pytest.mark.parametrize(
    "options",
    [
        [],
        [IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP()],
        [IPOption_RR(routers=["1.1.1.1", "2.2.2.2"])],
    ],
)
@pytest.mark.parametrize("flags", ["", "DF", "MF", "evil"])
def test_parse_scapy_packet(options: list[object], flags: str) -> None:
    payload = bytes(range(40))
    pkt = IP(
        src="172.16.0.5",
        dst="10.9.8.7",
        tos=0x10,
        id=4242,
        flags=flags,
        frag=37 if flags == "MF" else 0,
        ttl=7,
        proto=IPPROTO_TCP,
        options=options,
    ) / Raw(payload)
    raw = bytes(pkt)
    decoded = IP(raw)
    header, body = parse_ipv4(raw)
    assert header.version == 4
    assert header.ihl == decoded.ihl
    assert header.header_length == decoded.ihl * 4
    assert header.tos == 0x10
    assert header.total_length == decoded.len == len(raw)
    assert header.ident == 4242
    assert header.dont_fragment is (flags == "DF")
    assert header.more_fragments is (flags == "MF")
    assert header.frag_offset == decoded.frag * 8
    assert header.is_fragment is (flags == "MF")
    assert header.ttl == 7
    assert header.proto == IPPROTO_TCP
    assert header.checksum == decoded.chksum
    assert header.src == "172.16.0.5"
    assert header.dst == "10.9.8.7"
    assert header.options == raw[20 : decoded.ihl * 4]
    assert isinstance(body, memoryview)
    assert body == payload


def test_payload_is_a_view_and_trailing_bytes_are_ignored() -> None:
    raw = bytes(IP(src="1.1.1.1", dst="2.2.2.2", proto=17) / Raw(b"abcdef"))
    padded = raw + b"\x00" * 20  # e.g. Ethernet minimum-frame padding
    header, body = parse_ipv4(padded)
    assert header.total_length == len(raw)
    assert body == b"abcdef"
    assert body.obj is padded  # a slice of the caller's buffer, not a copy
    header2, body2 = parse_ipv4(memoryview(bytearray(padded))[0:])
    assert header2 == header
    assert body2 == b"abcdef"


@given(
    src=st.ip_addresses(v=4).map(str),
    dst=st.ip_addresses(v=4).map(str),
    proto=st.integers(0, 255),
    payload=st.binary(max_size=300),
    ident=st.integers(0, 0xFFFF),
    ttl=st.integers(0, 255),
    df=st.booleans(),
    tos=st.integers(0, 255),
    mf=st.booleans(),
    frag_units=st.integers(0, 0x1FFF),
)
@settings(max_examples=150)
def test_round_trip(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    ident: int,
    ttl: int,
    df: bool,
    tos: int,
    mf: bool,
    frag_units: int,
) -> None:
    raw = (
        build_ipv4_header(
            src,
            dst,
            proto,
            len(payload),
            ident,
            ttl=ttl,
            df=df,
            tos=tos,
            mf=mf,
            frag_offset=frag_units * 8,
        )
        + payload
    )
    header, body = parse_ipv4(raw)
    assert header == IPv4Header(
        version=4,
        ihl=5,
        tos=tos,
        total_length=20 + len(payload),
        ident=ident,
        dont_fragment=df,
        more_fragments=mf,
        frag_offset=frag_units * 8,
        ttl=ttl,
        proto=proto,
        checksum=header.checksum,
        src=src,
        dst=dst,
        options=b"",
    )
    assert body == payload
    assert header.checksum == IP(raw[:20]).chksum  # the header alone: no dissection of random payloads
    assert scapy_checksum(raw[:20]) == 0


def good_header(payload_len: int = 4) -> bytes:
    return build_ipv4_header("10.0.0.1", "10.0.0.2", IPPROTO_UDP, payload_len, ident=7)


@pytest.mark.parametrize("length", [0, 1, 19])
def test_truncated_header(length: int) -> None:
    with pytest.raises(WireError) as err:
        parse_ipv4((good_header() + b"data")[:length])
    assert err.value.reason == "truncated_ip_header"


def test_bad_version() -> None:
    raw = good_header()
    raw = with_fixed_checksum(bytes([0x65]) + raw[1:]) + b"data"
    with pytest.raises(WireError) as err:
        parse_ipv4(raw)
    assert err.value.reason == "bad_ip_version"


@pytest.mark.parametrize("ihl", [0, 1, 4])
def test_ihl_below_five(ihl: int) -> None:
    raw = good_header()
    raw = with_fixed_checksum(bytes([0x40 | ihl]) + raw[1:]) + b"data"
    with pytest.raises(WireError) as err:
        parse_ipv4(raw)
    assert err.value.reason == "bad_ip_ihl"


def test_ihl_beyond_buffer() -> None:
    raw = good_header()
    raw = with_fixed_checksum(bytes([0x4F]) + raw[1:]) + b"data"  # 60-byte header, 24 bytes
    with pytest.raises(WireError) as err:
        parse_ipv4(raw)
    assert err.value.reason == "truncated_ip_header"


def test_bad_checksum() -> None:
    raw = bytearray(good_header() + b"data")
    raw[10] ^= 0x01
    with pytest.raises(WireError) as err:
        parse_ipv4(bytes(raw))
    assert err.value.reason == "bad_ip_checksum"
    # A corrupted field (not the checksum itself) is caught as well.
    raw2 = bytearray(good_header() + b"data")
    raw2[8] ^= 0x40  # TTL
    with pytest.raises(WireError) as err:
        parse_ipv4(bytes(raw2))
    assert err.value.reason == "bad_ip_checksum"


def test_total_length_below_header() -> None:
    raw = good_header()
    raw = with_fixed_checksum(raw[:2] + struct.pack("!H", 19) + raw[4:]) + b"data"
    with pytest.raises(WireError) as err:
        parse_ipv4(raw)
    assert err.value.reason == "bad_ip_total_length"


def test_total_length_beyond_buffer() -> None:
    raw = good_header(payload_len=100) + b"only 20 bytes here.."
    with pytest.raises(WireError) as err:
        parse_ipv4(raw)
    assert err.value.reason == "truncated_ip_packet"


def test_reserved_flag_is_ignored() -> None:
    raw = bytes(IP(src="1.1.1.1", dst="2.2.2.2", flags="evil+DF") / Raw(b"x"))
    header, body = parse_ipv4(raw)
    assert header.dont_fragment and not header.more_fragments
    assert body == b"x"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frag_offset": 12},
        {"frag_offset": 65536},
        {"frag_offset": -8},
        {"payload_len": 65516},
        {"payload_len": -1},
        {"ttl": 256},
        {"ident": 0x10000},
        {"tos": -1},
    ],
)
def test_build_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"payload_len": 0, "ident": 0}
    args.update(kwargs)
    with pytest.raises(ValueError):
        build_ipv4_header("1.2.3.4", "5.6.7.8", IPPROTO_TCP, **args)


def test_build_max_length() -> None:
    header = build_ipv4_header("1.2.3.4", "5.6.7.8", IPPROTO_TCP, 65515, ident=0)
    assert struct.unpack("!H", header[2:4])[0] == 65535
