"""stack.io.virtio: the 10-byte virtio_net_hdr in native byte order."""

from __future__ import annotations

import struct
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.io import virtio
from stack.io.virtio import (
    PLAIN,
    VIRTIO_NET_HDR_GSO_TCPV6,
    VNET_HDR_LEN,
    VirtioNetHdr,
    build_vnet_hdr,
    parse_vnet_hdr,
    tcp_tx_hdr,
)


def test_constants_match_linux_headers() -> None:
    assert VNET_HDR_LEN == 10
    assert virtio.VIRTIO_NET_HDR_F_NEEDS_CSUM == 1
    assert virtio.VIRTIO_NET_HDR_F_DATA_VALID == 2
    assert virtio.VIRTIO_NET_HDR_GSO_NONE == 0
    assert virtio.VIRTIO_NET_HDR_GSO_TCPV4 == 1
    assert virtio.VIRTIO_NET_HDR_GSO_ECN == 0x80
    assert bytes(10) == PLAIN


def test_layout_is_native_endian() -> None:
    raw = build_vnet_hdr(1, 1, 0x0102, 0x0304, 0x0506, 0x0708)
    assert len(raw) == 10
    assert raw[:2] == b"\x01\x01"
    order = sys.byteorder
    assert raw[2:4] == (0x0102).to_bytes(2, order)
    assert raw[4:6] == (0x0304).to_bytes(2, order)
    assert raw[6:8] == (0x0506).to_bytes(2, order)
    assert raw[8:10] == (0x0708).to_bytes(2, order)


def test_parse_known_bytes() -> None:
    raw = bytes([1, 1]) + struct.pack("=HHHH", 52, 1448, 20, 16) + b"payload"
    hdr = parse_vnet_hdr(raw)
    assert hdr == VirtioNetHdr(1, 1, 52, 1448, 20, 16)
    assert hdr.needs_csum and not hdr.data_valid and hdr.is_gso
    assert parse_vnet_hdr(memoryview(raw)) == hdr


def test_plain_header() -> None:
    hdr = parse_vnet_hdr(PLAIN)
    assert hdr == VirtioNetHdr()
    assert not hdr.needs_csum and not hdr.is_gso
    assert build_vnet_hdr() == PLAIN
    assert VirtioNetHdr().to_bytes() == PLAIN


def test_gso_ecn_is_still_gso() -> None:
    assert VirtioNetHdr(gso_type=virtio.VIRTIO_NET_HDR_GSO_TCPV4 | 0x80).is_gso
    assert not VirtioNetHdr(gso_type=0x80).is_gso


def test_short_buffer_rejected() -> None:
    with pytest.raises(ValueError):
        parse_vnet_hdr(b"\x00" * 9)


def test_out_of_range_rejected() -> None:
    with pytest.raises(struct.error):
        build_vnet_hdr(hdr_len=70000)


def test_tcp_tx_hdr() -> None:
    small = parse_vnet_hdr(tcp_tx_hdr(20, 32, 1000, 1448))
    assert small == VirtioNetHdr(1, 0, 52, 0, 20, 16)
    big = parse_vnet_hdr(tcp_tx_hdr(20, 32, 60000, 1448))
    assert big == VirtioNetHdr(1, 1, 52, 1448, 20, 16)
    ecn = parse_vnet_hdr(tcp_tx_hdr(20, 20, 60000, 1460, ecn=True))
    assert ecn.gso_type == 0x81


def test_tcp_tx_hdr_ipv6() -> None:
    """TSO over IPv6 (TUN_F_TSO6): gso_type TCPV6, offsets after the 40-byte header."""
    big = parse_vnet_hdr(tcp_tx_hdr(40, 32, 60000, 1428, ipv6=True))
    assert big == VirtioNetHdr(1, VIRTIO_NET_HDR_GSO_TCPV6, 72, 1428, 40, 16)
    assert big.is_gso
    small = parse_vnet_hdr(tcp_tx_hdr(40, 32, 100, 1428, ipv6=True))
    assert small == VirtioNetHdr(1, 0, 72, 0, 40, 16)
    assert parse_vnet_hdr(tcp_tx_hdr(40, 20, 60000, 1440, ecn=True, ipv6=True)).gso_type == 0x84


u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)


@given(u8, u8, u16, u16, u16, u16)
def test_roundtrip(flags: int, gso: int, hl: int, gs: int, cs: int, co: int) -> None:
    raw = build_vnet_hdr(flags, gso, hl, gs, cs, co)
    assert len(raw) == VNET_HDR_LEN
    hdr = parse_vnet_hdr(raw + b"rest")
    assert hdr == VirtioNetHdr(flags, gso, hl, gs, cs, co)
    assert hdr.to_bytes() == raw
