"""Tests for stack.wire.tcp, cross-checked against scapy."""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, in4_pseudoheader
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum

from stack.wire.errors import WireError
from stack.wire.ipv4 import IPPROTO_TCP, build_ipv4_header
from stack.wire.tcp import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    TCPOptions,
    TCPSegment,
    build_tcp,
    build_tcp_header,
    encode_options,
    parse_options,
    parse_tcp,
)

SRC = "10.0.0.1"
DST = "10.0.0.2"

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
options_strategy = st.builds(
    TCPOptions,
    mss=st.none() | u16,
    wscale=st.none() | st.integers(0, 14),
    sack_permitted=st.booleans(),
    sack_blocks=st.lists(st.tuples(u32, u32), max_size=5),
    timestamp=st.none() | st.tuples(u32, u32),
)
segment_strategy = st.builds(
    TCPSegment,
    src_port=u16,
    dst_port=u16,
    seq=u32,
    ack=u32,
    flags=st.integers(0, 0xFF),
    window=u16,
    urgent=u16,
    options=options_strategy,
    payload=st.binary(max_size=300),
)
address_strategy = st.ip_addresses(v=4).map(str)


# --------------------------------------------------------------------------- helpers


def ip_wrap(tcp_bytes: bytes, src: str = SRC, dst: str = DST) -> bytes:
    return build_ipv4_header(src, dst, IPPROTO_TCP, len(tcp_bytes), ident=1) + tcp_bytes


def scapy_tcp_bytes(tcp: TCP, payload: bytes = b"", src: str = SRC, dst: str = DST) -> bytes:
    """Build IP/TCP with scapy (which computes the checksum) and return the TCP part."""
    pkt = IP(src=src, dst=dst) / tcp
    if payload:
        pkt = pkt / Raw(payload)
    return bytes(pkt)[20:]


def scapy_options_as_ours(options: list[tuple[Any, Any]]) -> TCPOptions:
    """Translate scapy's decoded option list into a TCPOptions (last one wins)."""
    out = TCPOptions()
    for name, value in options:
        if name == "MSS":
            out.mss = value
        elif name == "WScale":
            out.wscale = min(value, 14)
        elif name == "SAckOK":
            out.sack_permitted = True
        elif name == "SAck":
            out.sack_blocks = list(zip(value[0::2], value[1::2], strict=True))
        elif name == "Timestamp":
            out.timestamp = (value[0], value[1])
        elif name == "TFO":  # RFC 7413 4.1.1, kind 34
            # scapy gives a bytes value as given, two 32-bit words when decoded
            out.fastopen = bytes(value) if isinstance(value, bytes) else b"".join(
                w.to_bytes(4, "big") for w in value)
    return out


def scapy_recomputed_checksum(raw_ip: bytes) -> int:
    pkt = IP(raw_ip)
    del pkt[TCP].chksum
    return int(IP(bytes(pkt))[TCP].chksum)


def expected_sack_blocks_kept(options: TCPOptions) -> int:
    """How many SACK blocks fit next to the other options in 40 bytes.

    Independent restatement: every option group is 4-byte aligned in the Linux
    layout; a SACK option with k blocks takes 4 + 8k bytes (2 NOPs included).
    """
    other = 0
    if options.mss is not None:
        other += 4
    if options.timestamp is not None:
        other += 12
    elif options.sack_permitted:
        other += 4
    if options.wscale is not None:
        other += 4
    kept = 0
    for k in range(1, min(4, len(options.sack_blocks)) + 1):
        if other + 4 + 8 * k <= 40:
            kept = k
    return kept


def assert_scapy_matches(seg: TCPSegment, raw_ip: bytes) -> None:
    """Decode our bytes with scapy and compare every field."""
    pkt = IP(raw_ip)
    tcp = pkt[TCP]
    opts = encode_options(seg.options)
    assert tcp.sport == seg.src_port
    assert tcp.dport == seg.dst_port
    assert tcp.seq == seg.seq
    assert tcp.ack == seg.ack
    assert tcp.dataofs == 5 + len(opts) // 4
    assert tcp.reserved == 0
    assert int(tcp.flags) == seg.flags
    assert tcp.window == seg.window
    assert tcp.urgptr == seg.urgent
    assert bytes(tcp.payload) == bytes(seg.payload)
    expected = dataclasses.replace(
        seg.options, sack_blocks=seg.options.sack_blocks[: expected_sack_blocks_kept(seg.options)]
    )
    assert scapy_options_as_ours(tcp.options) == expected
    assert tcp.chksum == scapy_recomputed_checksum(raw_ip)


# --------------------------------------------------------------------------- flags


def test_flag_constants() -> None:
    assert (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR) == (1, 2, 4, 8, 16, 32, 64, 128)


@pytest.mark.parametrize(
    ("flags", "text"),
    [
        (SYN, "S"),
        (SYN | ACK, "SA"),
        (FIN | ACK, "FA"),
        (RST, "R"),
        (RST | ACK, "RA"),
        (PSH | ACK, "PA"),
        (ACK, "A"),
        (0, ""),
        (SYN | ECE | CWR, "SEC"),
        (0xFF, "FSRPAUEC"),
    ],
)
def test_flags_str(flags: int, text: str) -> None:
    assert TCPSegment(1, 2, 0, 0, flags, 0).flags_str() == text


def test_flags_str_agrees_with_scapy() -> None:
    for flags in range(256):
        ours = TCPSegment(1, 2, 0, 0, flags, 0).flags_str()
        assert sorted(ours) == sorted(str(TCP(flags=flags).flags))


def test_flag_properties_and_seg_len() -> None:
    seg = TCPSegment(1, 2, 100, 0, SYN | FIN | PSH, 0, payload=b"abc")
    assert seg.syn and seg.fin and seg.psh
    assert not seg.rst and not seg.ack_flag
    assert seg.seg_len == 5
    plain = TCPSegment(1, 2, 100, 7, ACK | RST, 0)
    assert plain.rst and plain.ack_flag and not plain.syn and not plain.fin
    assert plain.seg_len == 0
    assert TCPSegment(1, 2, 0, 0, ACK, 0, payload=memoryview(b"xyz")).seg_len == 3


def test_defaults() -> None:
    seg = TCPSegment(1, 2, 3, 4, ACK, 5)
    assert seg.urgent == 0
    assert seg.options == TCPOptions()
    assert seg.payload == b""
    assert TCPOptions() == TCPOptions(None, None, False, [], None)
    # default_factory: every instance owns its list
    assert TCPOptions().sack_blocks is not TCPOptions().sack_blocks


# --------------------------------------------------------------------------- encode_options


def test_encode_syn_layout_like_linux() -> None:
    opts = TCPOptions(mss=1460, wscale=7, sack_permitted=True, timestamp=(0x01020304, 0))
    assert encode_options(opts) == bytes.fromhex("020405b40402080a010203040000000001030307")


def test_encode_data_segment_layout() -> None:
    opts = TCPOptions(timestamp=(5, 6), sack_blocks=[(100, 200), (300, 400)])
    assert encode_options(opts) == bytes.fromhex(
        "0101080a00000005000000060101051200000064000000c80000012c00000190"
    )


def test_encode_sack_permitted_without_timestamps() -> None:
    assert encode_options(TCPOptions(mss=536, sack_permitted=True)) == bytes.fromhex(
        "0204021801010402"
    )


def test_encode_window_scale_alone_and_empty() -> None:
    assert encode_options(TCPOptions(wscale=14)) == bytes.fromhex("0103030e")
    assert encode_options(TCPOptions()) == b""
    assert encode_options(TCPOptions(sack_blocks=[])) == b""


@pytest.mark.parametrize(
    ("options", "kept"),
    [
        (TCPOptions(sack_blocks=[(i, i + 1) for i in range(5)]), 4),
        (TCPOptions(sack_blocks=[(i, i + 1) for i in range(4)]), 4),
        (TCPOptions(timestamp=(1, 2), sack_blocks=[(i, i + 1) for i in range(4)]), 3),
        (TCPOptions(mss=1460, wscale=2, timestamp=(1, 2), sack_blocks=[(1, 2)] * 4), 2),
        (
            TCPOptions(
                mss=1460, wscale=2, sack_permitted=True, timestamp=(1, 2), sack_blocks=[(1, 2)] * 3
            ),
            2,
        ),
        (TCPOptions(mss=1460, wscale=2, sack_permitted=True, sack_blocks=[(1, 2)] * 4), 3),
    ],
)
def test_encode_drops_sack_blocks_that_do_not_fit(options: TCPOptions, kept: int) -> None:
    encoded = encode_options(options)
    assert len(encoded) <= 40
    assert len(encoded) % 4 == 0
    assert parse_options(encoded).sack_blocks == options.sack_blocks[:kept]
    assert expected_sack_blocks_kept(options) == kept


@pytest.mark.parametrize(
    "options",
    [
        TCPOptions(mss=-1),
        TCPOptions(mss=0x10000),
        TCPOptions(wscale=15),
        TCPOptions(wscale=-1),
        TCPOptions(timestamp=(2**32, 0)),
        TCPOptions(timestamp=(0, -1)),
        TCPOptions(sack_blocks=[(0, 2**32)]),
        TCPOptions(sack_blocks=[(-5, 2)]),
    ],
)
def test_encode_rejects_out_of_range(options: TCPOptions) -> None:
    with pytest.raises(ValueError):
        encode_options(options)


@given(options_strategy)
def test_encode_is_aligned_and_bounded(options: TCPOptions) -> None:
    encoded = encode_options(options)
    assert len(encoded) % 4 == 0
    assert len(encoded) <= 40


# --------------------------------------------------------------------------- build -> scapy


def test_build_syn_decoded_by_scapy() -> None:
    seg = TCPSegment(
        src_port=40000,
        dst_port=80,
        seq=0xDEADBEEF,
        ack=0,
        flags=SYN,
        window=64240,
        options=TCPOptions(mss=1460, wscale=7, sack_permitted=True, timestamp=(12345, 0)),
    )
    raw = ip_wrap(build_tcp(seg, SRC, DST))
    tcp = IP(raw)[TCP]
    assert tcp.options == [
        ("MSS", 1460),
        ("SAckOK", b""),
        ("Timestamp", (12345, 0)),
        ("NOP", None),
        ("WScale", 7),
    ]
    assert tcp.dataofs == 10
    assert str(tcp.flags) == "S"
    assert_scapy_matches(seg, raw)


def test_build_data_segment_with_sack_decoded_by_scapy() -> None:
    seg = TCPSegment(
        src_port=80,
        dst_port=40000,
        seq=1000,
        ack=2**32 - 5,
        flags=ACK | PSH,
        window=501,
        urgent=0,
        options=TCPOptions(
            timestamp=(111, 222), sack_blocks=[(5000, 6000), (7000, 8000), (9000, 9500)]
        ),
        payload=b"GET / HTTP/1.0\r\n\r\n",
    )
    raw = ip_wrap(build_tcp(seg, SRC, DST))
    tcp = IP(raw)[TCP]
    assert tcp.options == [
        ("NOP", None),
        ("NOP", None),
        ("Timestamp", (111, 222)),
        ("NOP", None),
        ("NOP", None),
        ("SAck", (5000, 6000, 7000, 8000, 9000, 9500)),
    ]
    assert tcp.dataofs == 15
    assert str(tcp.flags) == "PA"
    assert_scapy_matches(seg, raw)


def test_build_plain_segments_decoded_by_scapy() -> None:
    for seg in (
        TCPSegment(1, 2, 3, 4, RST | ACK, 0),
        TCPSegment(65535, 1, 2**32 - 1, 2**32 - 1, FIN | ACK | URG, 65535, urgent=9, payload=b"x"),
        TCPSegment(5, 6, 7, 8, ACK, 100, payload=bytes(range(256)) * 3 + b"odd"),
    ):
        assert_scapy_matches(seg, ip_wrap(build_tcp(seg, SRC, DST)))


def test_build_with_memoryview_payload() -> None:
    data = bytearray(b"0123456789")
    seg = TCPSegment(1, 2, 3, 4, ACK, 5, payload=memoryview(data)[2:7])
    raw = build_tcp(seg, SRC, DST)
    assert raw.endswith(b"23456")
    assert_scapy_matches(seg, ip_wrap(raw))


@given(segment_strategy, address_strategy, address_strategy)
@settings(max_examples=60, deadline=None)
def test_random_segments_decoded_by_scapy(seg: TCPSegment, src: str, dst: str) -> None:
    assert_scapy_matches(seg, ip_wrap(build_tcp(seg, src, dst), src, dst))


def test_checksum_modes() -> None:
    seg = TCPSegment(
        1234, 80, 1, 2, ACK | PSH, 1000, options=TCPOptions(timestamp=(1, 2)), payload=b"hello"
    )
    full = build_tcp_header(seg, SRC, DST)
    partial = build_tcp_header(seg, SRC, DST, checksum="partial")
    none = build_tcp_header(seg, SRC, DST, checksum="none")
    assert full[:16] == partial[:16] == none[:16]
    assert full[18:] == partial[18:] == none[18:]
    assert none[16:18] == b"\x00\x00"
    # "partial" holds the folded, non-inverted pseudo-header sum.
    tcp_len = len(full) + len(seg.payload)
    pseudo = bytes(in4_pseudoheader(IPPROTO_TCP, IP(src=SRC, dst=DST), tcp_len))
    assert struct.unpack("!H", partial[16:18])[0] == ~scapy_checksum(pseudo) & 0xFFFF
    # Finishing it like the kernel (checksum from the TCP header on, with the
    # field as the initial value) gives the full checksum.
    finished = scapy_checksum(partial + b"hello")
    assert struct.unpack("!H", full[16:18])[0] == finished
    assert build_tcp(seg, SRC, DST) == full + b"hello"
    assert build_tcp(seg, SRC, DST, checksum="none") == none + b"hello"
    with pytest.raises(ValueError):
        build_tcp_header(seg, SRC, DST, checksum="bogus")


@pytest.mark.parametrize(
    "seg",
    [
        TCPSegment(0x10000, 1, 0, 0, ACK, 0),
        TCPSegment(1, 2, 2**32, 0, ACK, 0),
        TCPSegment(1, 2, 0, -1, ACK, 0),
        TCPSegment(1, 2, 0, 0, 0x100, 0),
        TCPSegment(1, 2, 0, 0, ACK, 0x10000),
        TCPSegment(1, 2, 0, 0, ACK, 0, urgent=-1),
    ],
)
def test_build_rejects_out_of_range_fields(seg: TCPSegment) -> None:
    with pytest.raises(ValueError):
        build_tcp(seg, SRC, DST)


# --------------------------------------------------------------------------- scapy -> parse

SCAPY_OPTION_CASES: list[list[tuple[Any, Any]]] = [
    [],
    [("MSS", 1460)],
    [("MSS", 536), ("NOP", None), ("WScale", 0), ("NOP", None), ("NOP", None), ("SAckOK", b"")],
    [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (4294967295, 0)), ("NOP", None), ("WScale", 14)],
    [("NOP", None), ("NOP", None), ("Timestamp", (1, 2))],
    [("SAck", (1, 2))],
    [("NOP", None), ("NOP", None), ("SAck", (10, 20, 30, 40))],
    [("NOP", None), ("NOP", None), ("SAck", (1, 2, 3, 4, 5, 6))],
    [("NOP", None), ("NOP", None), ("SAck", (1, 2, 3, 4, 5, 6, 7, 8))],
    [
        ("NOP", None),
        ("NOP", None),
        ("Timestamp", (7, 8)),
        ("NOP", None),
        ("NOP", None),
        ("SAck", (0, 2**32 - 1, 5, 6, 9, 10)),
    ],
    # unknown options are skipped by their length
    [("UTO", 300), ("MSS", 1400)],
    [(254, b"\xf9\x89ab"), ("TFO", b"12345678"), ("WScale", 3)],
    [(6, b"\x00\x00\x00\x01"), ("NOP", None), ("SAckOK", b"")],
    # End of option list: anything after it is padding
    [("MSS", 1200), ("EOL", None)],
    [("WScale", 4), ("EOL", None), ("NOP", None), ("NOP", None), ("NOP", None), ("NOP", None)],
]


@pytest.mark.parametrize("options", SCAPY_OPTION_CASES)
def test_parse_scapy_segment(options: list[tuple[Any, Any]]) -> None:
    payload = b"some payload bytes"
    tcp = TCP(
        sport=12345,
        dport=443,
        seq=0x80000000,
        ack=77,
        flags="PA",
        window=29200,
        urgptr=3,
        options=options,
    )
    raw = scapy_tcp_bytes(tcp, payload)
    decoded = IP(ip_wrap(raw))[TCP]
    seg = parse_tcp(raw, SRC, DST)
    assert seg.src_port == 12345
    assert seg.dst_port == 443
    assert seg.seq == 0x80000000
    assert seg.ack == 77
    assert seg.flags == PSH | ACK == int(decoded.flags)
    assert seg.window == 29200
    assert seg.urgent == 3
    assert seg.payload == payload
    assert isinstance(seg.payload, memoryview)
    assert seg.options == scapy_options_as_ours(decoded.options)
    options_before_eol = []
    for option in options:
        if option[0] == "EOL":
            break
        options_before_eol.append(option)
    assert seg.options == scapy_options_as_ours(options_before_eol)


def test_parse_scapy_syn_ack() -> None:
    tcp = TCP(
        sport=80,
        dport=50000,
        seq=1,
        ack=2,
        flags="SA",
        window=65160,
        options=[
            ("MSS", 1460),
            ("SAckOK", b""),
            ("Timestamp", (3, 4)),
            ("NOP", None),
            ("WScale", 7),
        ],
    )
    seg = parse_tcp(scapy_tcp_bytes(tcp), SRC, DST)
    assert seg.flags_str() == "SA"
    assert seg.syn and seg.ack_flag
    assert seg.seg_len == 1
    assert seg.options == TCPOptions(mss=1460, wscale=7, sack_permitted=True, timestamp=(3, 4))


def test_parse_window_scale_above_14_is_treated_as_14() -> None:
    # RFC 7323 section 2.3
    raw = scapy_tcp_bytes(TCP(flags="S", options=[("WScale", 15)]))
    assert parse_tcp(raw, SRC, DST).options.wscale == 14
    raw = scapy_tcp_bytes(TCP(flags="S", options=[("WScale", 255)]))
    assert parse_tcp(raw, SRC, DST).options.wscale == 14


def test_parse_reserved_bits_ignored() -> None:
    raw = scapy_tcp_bytes(TCP(flags="A", reserved=7))
    assert parse_tcp(raw, SRC, DST).flags == ACK


def test_parse_payload_is_a_view() -> None:
    raw = scapy_tcp_bytes(TCP(flags="A"), b"payload!")
    seg = parse_tcp(raw, SRC, DST)
    assert isinstance(seg.payload, memoryview)
    assert seg.payload.obj is raw
    seg2 = parse_tcp(memoryview(bytearray(raw)), SRC, DST)
    assert seg2 == seg


def test_parse_checksum_verification() -> None:
    raw = scapy_tcp_bytes(TCP(flags="A"), b"payload")
    assert parse_tcp(raw, SRC, DST).payload == b"payload"
    # Wrong addresses make the pseudo-header differ.
    with pytest.raises(WireError) as err:
        parse_tcp(raw, SRC, "10.0.0.3")
    assert err.value.reason == "bad_tcp_checksum"
    corrupted = bytearray(raw)
    corrupted[-1] ^= 0xFF
    with pytest.raises(WireError) as err:
        parse_tcp(bytes(corrupted), SRC, DST)
    assert err.value.reason == "bad_tcp_checksum"
    bad = scapy_tcp_bytes(TCP(flags="A", chksum=0x1234), b"payload")
    with pytest.raises(WireError) as err:
        parse_tcp(bad, SRC, DST)
    assert err.value.reason == "bad_tcp_checksum"
    assert parse_tcp(bad, SRC, DST, verify_checksum=False).payload == b"payload"


def test_parse_accepts_ffff_as_zero_checksum() -> None:
    # Choose a 2-byte payload that makes the computed checksum 0; then 0x0000 and
    # its one's-complement twin 0xFFFF both verify.
    seg = TCPSegment(1, 2, 3, 4, ACK, 5, payload=b"\x00\x00")
    first = build_tcp(seg, SRC, DST)
    seg.payload = first[16:18]  # the checksum with a zero payload word
    raw = bytearray(build_tcp(seg, SRC, DST))
    assert raw[16:18] == b"\x00\x00"
    assert (
        IP(ip_wrap(bytes(raw)))[TCP].chksum == scapy_recomputed_checksum(ip_wrap(bytes(raw))) == 0
    )
    assert parse_tcp(bytes(raw), SRC, DST).payload == first[16:18]
    raw[16:18] = b"\xff\xff"
    assert parse_tcp(bytes(raw), SRC, DST).payload == first[16:18]


# --------------------------------------------------------------------------- malformed


@pytest.mark.parametrize("length", [0, 1, 19])
def test_truncated_header(length: int) -> None:
    raw = scapy_tcp_bytes(TCP(flags="A"))
    with pytest.raises(WireError) as err:
        parse_tcp(raw[:length], SRC, DST)
    assert err.value.reason == "truncated_tcp_header"


@pytest.mark.parametrize("data_offset", [0, 4])
def test_data_offset_below_five(data_offset: int) -> None:
    raw = scapy_tcp_bytes(TCP(flags="A", dataofs=data_offset), b"x" * 30)
    with pytest.raises(WireError) as err:
        parse_tcp(raw, SRC, DST)
    assert err.value.reason == "bad_tcp_data_offset"


def test_data_offset_beyond_buffer() -> None:
    raw = scapy_tcp_bytes(TCP(flags="A", dataofs=15), b"x" * 20)  # 40 bytes < 60
    with pytest.raises(WireError) as err:
        parse_tcp(raw, SRC, DST)
    assert err.value.reason == "truncated_tcp_header"


BAD_OPTIONS = [
    pytest.param(bytes.fromhex("02000000"), id="length-0"),
    pytest.param(bytes.fromhex("02010000"), id="length-1"),
    pytest.param(bytes.fromhex("fe000000"), id="unknown-length-0"),
    pytest.param(bytes.fromhex("fe01fe01"), id="unknown-length-1"),
    pytest.param(bytes.fromhex("fe080000"), id="unknown-past-header"),
    pytest.param(bytes.fromhex("01010102"), id="no-length-octet"),
    pytest.param(bytes.fromhex("02030500"), id="mss-length-3"),
    pytest.param(bytes.fromhex("020505b400000000"), id="mss-length-5"),
    pytest.param(bytes.fromhex("02080000"), id="mss-past-header"),
    pytest.param(bytes.fromhex("03020000"), id="wscale-length-2"),
    pytest.param(bytes.fromhex("03040700"), id="wscale-length-4"),
    pytest.param(bytes.fromhex("04030000"), id="sackok-length-3"),
    pytest.param(bytes.fromhex("05020000"), id="sack-no-blocks"),
    pytest.param(bytes.fromhex("050c") + bytes(10), id="sack-length-12"),
    pytest.param(bytes.fromhex("0503000000000000"), id="sack-length-3"),
    pytest.param(bytes.fromhex("0101052a") + bytes(36), id="sack-past-header"),
    pytest.param(bytes.fromhex("0808") + bytes(6), id="ts-length-8"),
    pytest.param(bytes.fromhex("080a") + bytes(6), id="ts-past-header"),
    pytest.param(bytes.fromhex("080b") + bytes(10), id="ts-length-11"),
    pytest.param(
        bytes.fromhex("0204") + bytes(2) + bytes.fromhex("0801") + bytes(2), id="second-option-bad"
    ),
]


@pytest.mark.parametrize("options", BAD_OPTIONS)
def test_bad_options(options: bytes) -> None:
    assert len(options) % 4 == 0 and len(options) <= 40
    raw = scapy_tcp_bytes(TCP(flags="A", dataofs=5 + len(options) // 4) / Raw(options + b"data"))
    # scapy's own decoder tolerates these; ours must not.
    with pytest.raises(WireError) as err:
        parse_tcp(raw, SRC, DST)
    assert err.value.reason == "bad_tcp_option"
    with pytest.raises(WireError) as err:
        parse_options(options)
    assert err.value.reason == "bad_tcp_option"


def test_parse_options_directly() -> None:
    assert parse_options(b"") == TCPOptions()
    assert parse_options(b"\x01\x01\x01\x01") == TCPOptions()
    assert parse_options(b"\x00\x02") == TCPOptions()  # garbage after EOL is ignored
    assert parse_options(bytes.fromhex("020405b4000300")) == TCPOptions(mss=1460)
    # Unknown kinds, including the obsolete echo option (6), are skipped.
    assert parse_options(bytes.fromhex("0606aabbccdd0303054c0400ff")) == TCPOptions(wscale=5)
    # A repeated option: the last one wins.
    assert parse_options(bytes.fromhex("0204010002040200")) == TCPOptions(mss=512)
    # Options need not be aligned.
    assert parse_options(bytes.fromhex("0402080a0000000100000002")) == TCPOptions(
        sack_permitted=True, timestamp=(1, 2)
    )


# --------------------------------------------------------------------------- properties


@given(segment_strategy, address_strategy, address_strategy)
@settings(max_examples=300)
def test_round_trip(seg: TCPSegment, src: str, dst: str) -> None:
    raw = build_tcp(seg, src, dst)
    parsed = parse_tcp(raw, src, dst)
    kept = expected_sack_blocks_kept(seg.options)
    expected = dataclasses.replace(
        seg, options=dataclasses.replace(seg.options, sack_blocks=seg.options.sack_blocks[:kept])
    )
    assert parsed == expected
    assert parsed.flags_str() == seg.flags_str()
    assert parsed.seg_len == seg.seg_len
    assert build_tcp(parsed, src, dst) == raw


@st.composite
def raw_option_lists(draw: st.DrawFn) -> tuple[bytes, TCPOptions]:
    """Random well-formed option bytes (known and unknown kinds) and what they mean."""
    expected = TCPOptions()
    out = b""
    for _ in range(draw(st.integers(0, 8))):
        choice = draw(st.sampled_from(["nop", "mss", "ws", "sackok", "sack", "ts", "unknown"]))
        if choice == "nop":
            out += b"\x01"
        elif choice == "mss":
            value = draw(u16)
            out += struct.pack("!BBH", 2, 4, value)
            expected.mss = value
        elif choice == "ws":
            value = draw(st.integers(0, 255))
            out += bytes((3, 3, value))
            expected.wscale = min(value, 14)
        elif choice == "sackok":
            out += b"\x04\x02"
            expected.sack_permitted = True
        elif choice == "sack":
            blocks = draw(st.lists(st.tuples(u32, u32), min_size=1, max_size=4))
            out += bytes((5, 2 + 8 * len(blocks)))
            for left, right in blocks:
                out += struct.pack("!II", left, right)
            expected.sack_blocks = blocks
        elif choice == "ts":
            stamps = (draw(u32), draw(u32))
            out += struct.pack("!BBII", 8, 10, *stamps)
            expected.timestamp = stamps
        else:
            kind = draw(st.integers(6, 255).filter(lambda k: k != 8))
            data = draw(st.binary(max_size=8))
            out += bytes((kind, 2 + len(data))) + data
    if draw(st.booleans()):
        out += b"\x00" + draw(st.binary(max_size=6))  # EOL, then anything
    return out, expected


@given(raw_option_lists())
def test_parse_random_option_lists(case: tuple[bytes, TCPOptions]) -> None:
    raw, expected = case
    assert parse_options(raw) == expected
    assert parse_options(memoryview(raw)) == expected


@given(raw_option_lists().filter(lambda case: len(case[0]) <= 40))
@settings(max_examples=40, deadline=None)
def test_parse_random_option_lists_in_scapy_segments(case: tuple[bytes, TCPOptions]) -> None:
    options, expected = case
    options += bytes(-len(options) % 4)
    raw = scapy_tcp_bytes(TCP(flags="A", dataofs=5 + len(options) // 4) / Raw(options + b"data"))
    seg = parse_tcp(raw, SRC, DST)
    assert seg.options == expected
    assert seg.payload == b"data"


@given(segment_strategy)
def test_truncating_a_segment_never_crashes(seg: TCPSegment) -> None:
    raw = build_tcp(seg, SRC, DST)
    for cut in range(0, len(raw) - len(seg.payload)):
        with pytest.raises(WireError) as err:
            parse_tcp(raw[:cut], SRC, DST)
        assert err.value.reason == "truncated_tcp_header"
