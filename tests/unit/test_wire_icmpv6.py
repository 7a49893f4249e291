"""Tests for stack.wire.icmpv6 (RFC 4443), cross-checked against scapy's ICMPv6."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import TCP, UDP, UDPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)

from stack.wire.errors import WireError
from stack.wire.icmpv6 import (
    DEST_UNREACH,
    ECHO_REPLY,
    ECHO_REQUEST,
    MAX_ERROR_QUOTE,
    PACKET_TOO_BIG,
    PARAMETER_PROBLEM,
    TIME_EXCEEDED,
    TIME_EXCEEDED_REASSEMBLY,
    UNREACH_PORT,
    build_icmpv6,
    echo_id_seq,
    echo_rest,
    error_quote,
    is_error,
    is_icmpv6_error_packet,
    may_send_error,
    mtu_rest,
    packet_too_big_mtu,
    parse_icmpv6,
    parse_quote,
    pointer_rest,
    problem_pointer,
)
from stack.wire.ipv4 import IPPROTO_TCP, IPPROTO_UDP
from stack.wire.ipv6 import IPPROTO_ICMPV6, build_ipv6_header, parse_ipv6

SRC = "fd00:0:0:1::1"
DST = "fd00:0:0:1::2"


def wrap(message: bytes, src: str = DST, dst: str = SRC) -> bytes:
    return build_ipv6_header(src, dst, IPPROTO_ICMPV6, len(message)) + message


def scapy_checksum_ok(raw_packet: bytes) -> bool:
    """scapy recomputes the checksum of the decoded message: it must be ours."""
    pkt = IPv6(raw_packet)
    layer = pkt.payload
    ours = layer.cksum
    del layer.cksum
    return int(IPv6(bytes(pkt)).payload.cksum) == ours


@pytest.mark.parametrize("payload", [b"", b"a", b"abcdefgh" * 7, bytes(range(256)) + b"odd"])
@pytest.mark.parametrize(("icmp_type", "cls"), [(ECHO_REQUEST, ICMPv6EchoRequest),
                                                (ECHO_REPLY, ICMPv6EchoReply)])
def test_echo_built_decoded_by_scapy(icmp_type: int, cls: type, payload: bytes) -> None:
    raw = wrap(build_icmpv6(icmp_type, 0, echo_rest(0x1234, 0xFFFE), payload, DST, SRC))
    msg = IPv6(raw)[cls]
    assert (msg.type, msg.code, msg.id, msg.seq, msg.data) == (icmp_type, 0, 0x1234, 0xFFFE, payload)
    assert scapy_checksum_ok(raw)


@settings(max_examples=100, deadline=None)
@given(ident=st.integers(0, 0xFFFF), seq=st.integers(0, 0xFFFF), data=st.binary(max_size=100),
       src=st.ip_addresses(v=6).map(str), dst=st.ip_addresses(v=6).map(str))
def test_parse_scapy_echo(ident: int, seq: int, data: bytes, src: str, dst: str) -> None:
    raw = bytes(IPv6(src=src, dst=dst) / ICMPv6EchoRequest(id=ident, seq=seq, data=data))
    header, payload = parse_ipv6(raw)
    msg = parse_icmpv6(payload, header.src, header.dst)
    assert msg.type == ECHO_REQUEST and echo_id_seq(msg) == (ident, seq)
    assert bytes(msg.payload) == data
    # The pseudo-header is part of the checksum (RFC 4443 2.3): other addresses fail.
    with pytest.raises(WireError) as info:
        parse_icmpv6(payload, header.src, "fd00::99" if header.dst != "fd00::99" else "fd00::98")
    assert info.value.reason == "bad_icmpv6_checksum"
    assert parse_icmpv6(payload, header.src, "fd00::99", verify_checksum=False).type == ECHO_REQUEST


def test_parse_scapy_errors() -> None:
    inner = IPv6(src=DST, dst=SRC) / TCP(sport=80, dport=40000, seq=12345)
    cases = [
        (ICMPv6DestUnreach(code=4), DEST_UNREACH, 4, None),
        (ICMPv6PacketTooBig(mtu=1400), PACKET_TOO_BIG, 0, 1400),
        (ICMPv6TimeExceeded(code=1), TIME_EXCEEDED, 1, None),
        (ICMPv6ParamProblem(code=2, ptr=42), PARAMETER_PROBLEM, 2, 42),
    ]
    for layer, icmp_type, code, value in cases:
        raw = bytes(IPv6(src=SRC, dst=DST) / layer / inner)
        header, payload = parse_ipv6(raw)
        msg = parse_icmpv6(payload, header.src, header.dst)
        assert (msg.type, msg.code) == (icmp_type, code) and is_error(msg.type)
        if icmp_type == PACKET_TOO_BIG:
            assert packet_too_big_mtu(msg) == value
        if icmp_type == PARAMETER_PROBLEM:
            assert problem_pointer(msg) == value
        quoted = parse_quote(msg.payload)
        assert quoted is not None
        assert (quoted.src, quoted.dst, quoted.next_header) == (DST, SRC, IPPROTO_TCP)
        assert int.from_bytes(quoted.transport[4:8], "big") == 12345


def test_errors_built_decoded_by_scapy() -> None:
    inner = bytes(IPv6(src=SRC, dst=DST) / UDP(sport=1, dport=9) / b"hello")
    for icmp_type, code, rest, cls, field, value in [
        (DEST_UNREACH, UNREACH_PORT, bytes(4), ICMPv6DestUnreach, "code", UNREACH_PORT),
        (PACKET_TOO_BIG, 0, mtu_rest(1280), ICMPv6PacketTooBig, "mtu", 1280),
        (TIME_EXCEEDED, TIME_EXCEEDED_REASSEMBLY, bytes(4), ICMPv6TimeExceeded, "code", 1),
        (PARAMETER_PROBLEM, 1, pointer_rest(6), ICMPv6ParamProblem, "ptr", 6),
    ]:
        raw = wrap(build_icmpv6(icmp_type, code, rest, error_quote(inner), DST, SRC))
        pkt = IPv6(raw)
        assert getattr(pkt[cls], field) == value
        assert pkt[cls].payload[UDPerror].dport == 9  # scapy decodes the quoted packet
        assert scapy_checksum_ok(raw)


def test_accessors_reject_other_types() -> None:
    msg = parse_icmpv6(build_icmpv6(ECHO_REQUEST, 0, echo_rest(1, 2), b"", SRC, DST), SRC, DST)
    for fn in (packet_too_big_mtu, problem_pointer):
        with pytest.raises(ValueError):
            fn(msg)
    err = parse_icmpv6(build_icmpv6(DEST_UNREACH, 0, bytes(4), b"", SRC, DST), SRC, DST)
    with pytest.raises(ValueError):
        echo_id_seq(err)


def test_bad_arguments_and_truncation() -> None:
    with pytest.raises(ValueError):
        build_icmpv6(ECHO_REQUEST, 0, b"abc", b"", SRC, DST)
    with pytest.raises(ValueError):
        build_icmpv6(256, 0, bytes(4), b"", SRC, DST)
    with pytest.raises(ValueError):
        build_icmpv6(ECHO_REQUEST, 0, bytes(4), b"", "10.0.0.1", DST)  # two families
    with pytest.raises(WireError) as info:
        parse_icmpv6(b"\x80\x00\x00", SRC, DST)
    assert info.value.reason == "truncated_icmpv6"


def test_error_quote_keeps_the_error_within_the_minimum_mtu() -> None:
    """RFC 4443 section 2.4 (c): as much as fits in 1280 octets."""
    big = bytes(IPv6(src=SRC, dst=DST) / UDP() / bytes(3000))
    quote = error_quote(big)
    assert len(quote) == MAX_ERROR_QUOTE == 1232
    assert len(wrap(build_icmpv6(DEST_UNREACH, 4, bytes(4), quote, DST, SRC))) == 1280
    small = bytes(IPv6(src=SRC, dst=DST) / UDP() / b"x")
    assert error_quote(small) == small


def test_may_send_error_rules() -> None:
    """RFC 4443 section 2.4 (e)."""
    def header(src: str, dst: str):  # type: ignore[no-untyped-def]
        return parse_ipv6(build_ipv6_header(src, dst, IPPROTO_UDP, 0))[0]

    ok = header(SRC, DST)
    assert may_send_error(ok, invoking_is_error=False)
    assert not may_send_error(ok, invoking_is_error=True)  # (e.1)
    to_group = header(SRC, "ff02::1")
    assert not may_send_error(to_group, invoking_is_error=False)  # (e.2)
    assert may_send_error(to_group, invoking_is_error=False, to_multicast_allowed=True)
    assert not may_send_error(header("::", DST), invoking_is_error=False)  # (e.5)
    assert not may_send_error(header("ff02::2", DST), invoking_is_error=False)


def test_is_icmpv6_error_packet() -> None:
    err = bytes(IPv6(src=SRC, dst=DST) / IPv6ExtHdrDestOpt() / ICMPv6DestUnreach() / (b"x" * 8))
    assert is_icmpv6_error_packet(err)
    echo = bytes(IPv6(src=SRC, dst=DST) / IPv6ExtHdrHopByHop() / ICMPv6EchoRequest())
    assert not is_icmpv6_error_packet(echo)
    assert not is_icmpv6_error_packet(bytes(IPv6(src=SRC, dst=DST) / UDP()))


def test_parse_quote_through_extension_headers_and_fragments() -> None:
    first = bytes(IPv6(src=SRC, dst=DST) / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(offset=0, m=1)
                  / UDP(sport=7, dport=8) / bytes(16))
    quoted = parse_quote(first)
    assert quoted is not None and quoted.next_header == IPPROTO_UDP
    assert int.from_bytes(quoted.transport[:2], "big") == 7
    later = bytes(IPv6(src=SRC, dst=DST) / IPv6ExtHdrFragment(offset=2, m=0) / bytes(16))
    assert parse_quote(later) is None  # no upper-layer header in a later fragment
    assert parse_quote(first[:45]) is None  # the chain leaves the quote
    assert parse_quote(b"\x45" + bytes(60)) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_parsers_never_raise_anything_else(data: bytes) -> None:
    try:
        parse_icmpv6(data, SRC, DST)
    except WireError as exc:
        assert exc.reason in ("truncated_icmpv6", "bad_icmpv6_checksum")
    quoted = parse_quote(data)
    assert quoted is None or quoted.next_header >= 0
    is_icmpv6_error_packet(data)
