"""Tests for stack.wire.ipv6 (RFC 8200 header and extension headers, RFC 6437 flow
labels), cross-checked against scapy's IPv6 decoder and builder."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    HBHOptUnknown,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    IPv6ExtHdrSegmentRouting,
    PadN,
)
from scapy.packet import Raw

from stack.wire.errors import WireError
from stack.wire.ipv4 import IPPROTO_TCP, IPPROTO_UDP
from stack.wire.ipv6 import (
    IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS,
    IPPROTO_NONE,
    IPPROTO_ROUTING,
    MAX_EXTENSION_HEADERS,
    PP_BAD_HEADER_FIELD,
    PP_UNKNOWN_NEXT_HEADER,
    PP_UNKNOWN_OPTION,
    ParameterProblem,
    build_fragment_header,
    build_ipv6_header,
    build_options_header,
    build_routing_header,
    flow_label,
    is_multicast,
    parse_ipv6,
    skip_headers,
    walk_headers,
)

SRC = "fd00:0:0:1::1"
DST = "fd00:0:0:1::2"


def ip6(text: str) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(text)


def packet(ext: bytes, next_header: int, upper: bytes = b"\x00" * 8,
           src: str = SRC, dst: str = DST) -> bytes:
    payload = ext + upper
    return build_ipv6_header(src, dst, next_header, len(payload)) + payload


# ------------------------------------------------------------------ the fixed header
@settings(max_examples=200, deadline=None)
@given(
    tc=st.integers(0, 255),
    fl=st.integers(0, 0xFFFFF),
    hlim=st.integers(0, 255),
    nh=st.integers(0, 255),
    payload=st.binary(max_size=64),
    src=st.ip_addresses(v=6).map(str),
    dst=st.ip_addresses(v=6).map(str),
)
def test_build_decoded_by_scapy_and_parse_of_scapy(tc: int, fl: int, hlim: int, nh: int,
                                                   payload: bytes, src: str, dst: str) -> None:
    raw = build_ipv6_header(src, dst, nh, len(payload), hop_limit=hlim, traffic_class=tc,
                            flow_label=fl) + payload
    # scapy decodes the fixed header alone: given the payload too, it dissects it by
    # `nh` and can crash on random bytes (IndexError in its routing header, nh=43).
    pkt = IPv6(raw[:40])
    assert (pkt.version, pkt.tc, pkt.fl, pkt.plen, pkt.nh, pkt.hlim) == (6, tc, fl, len(payload), nh, hlim)
    assert (ip6(pkt.src), ip6(pkt.dst)) == (ip6(src), ip6(dst))
    # And the other way: what scapy builds, we parse.
    theirs = bytes(IPv6(src=src, dst=dst, tc=tc, fl=fl, hlim=hlim, nh=nh) / Raw(payload))
    assert theirs == raw
    header, body = parse_ipv6(theirs)
    assert (header.traffic_class, header.flow_label, header.hop_limit, header.next_header) == (
        tc, fl, hlim, nh)
    assert (ip6(header.src), ip6(header.dst)) == (ip6(src), ip6(dst))
    assert header.payload_length == len(payload)
    assert bytes(body) == payload
    assert header.version == 6 and header.dscp == tc >> 2 and header.ecn == tc & 3


def test_parse_ignores_bytes_after_payload_length() -> None:
    raw = packet(b"", IPPROTO_UDP, b"12345678") + b"padding"
    header, body = parse_ipv6(raw)
    assert bytes(body) == b"12345678" and header.payload_length == 8


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "truncated_ipv6_header"),
    (bytes(39), "truncated_ipv6_header"),
    (b"\x45" + bytes(39), "bad_ipv6_version"),
    (build_ipv6_header(SRC, DST, 17, 9) + bytes(8), "truncated_ipv6_packet"),
])
def test_parse_rejects(raw: bytes, reason: str) -> None:
    with pytest.raises(WireError) as info:
        parse_ipv6(raw)
    assert info.value.reason == reason


def test_hop_limit_zero_is_delivered() -> None:
    """RFC 8200 section 3: only a forwarding node discards for the hop limit."""
    header, _ = parse_ipv6(build_ipv6_header(SRC, DST, 59, 0, hop_limit=0))
    assert header.hop_limit == 0


@pytest.mark.parametrize("kwargs", [
    {"payload_len": 65536}, {"payload_len": -1}, {"flow_label": 1 << 20}, {"traffic_class": 256},
    {"src": "10.0.0.1"}, {"hop_limit": 256},
])
def test_build_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"src": SRC, "dst": DST, "next_header": 6, "payload_len": 0}
    args.update(kwargs)
    with pytest.raises(ValueError):
        build_ipv6_header(**args)  # type: ignore[arg-type]


def test_is_multicast() -> None:
    assert is_multicast("ff02::1") and is_multicast("FF05::1:3")
    assert not is_multicast("ff::1")  # 00ff::1
    assert not is_multicast(DST) and not is_multicast("::")


# --------------------------------------------------------------- extension headers
def test_walk_chain_built_by_scapy() -> None:
    pkt = (IPv6(src=SRC, dst=DST) / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=0x1E, optdata=b"ab")])
           / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0\0\0\0")])
           / IPv6ExtHdrRouting(type=0, segleft=0, addresses=["::1"])
           / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2) / b"x")
    raw = bytes(pkt)
    chain = walk_headers(raw)
    assert chain.next_header == IPPROTO_UDP and chain.fragment is None
    assert raw[chain.at:] == bytes(pkt[UDP])
    # The Next Header field naming UDP is the last Destination Options header's first byte.
    assert raw[chain.next_header_at] == IPPROTO_UDP
    assert skip_headers(raw) == (IPPROTO_UDP, chain.at)


def test_walk_without_extension_headers() -> None:
    raw = packet(b"", IPPROTO_TCP)
    chain = walk_headers(raw)
    assert (chain.next_header, chain.at, chain.next_header_at) == (IPPROTO_TCP, 40, 6)


def test_our_builders_decoded_by_scapy() -> None:
    hbh = build_options_header(IPPROTO_DSTOPTS, [(0x1E, b"abc")])
    dst = build_options_header(IPPROTO_ROUTING)
    rh = build_routing_header(IPPROTO_FRAGMENT, 0, 0, bytes(4) + bytes(16))
    frag = build_fragment_header(IPPROTO_UDP, 0, False, 0xDEADBEEF)
    raw = packet(hbh + dst + rh + frag, IPPROTO_HOPOPTS, bytes(UDP(sport=5, dport=6)))
    pkt = IPv6(raw)
    assert pkt[IPv6ExtHdrHopByHop].options[0].otype == 0x1E
    assert pkt[IPv6ExtHdrHopByHop].options[0].optdata == b"abc"
    assert pkt[IPv6ExtHdrRouting].type == 0 and pkt[IPv6ExtHdrRouting].addresses == ["::"]
    f = pkt[IPv6ExtHdrFragment]
    assert (f.offset, f.m, f.id, f.nh) == (0, 0, 0xDEADBEEF, IPPROTO_UDP)
    assert pkt[UDP].dport == 6
    for part in (hbh, dst, rh, frag):
        assert len(part) % 8 == 0


@pytest.mark.parametrize("pad", [1, 2, 3, 7])
def test_options_header_padding(pad: int) -> None:
    data = bytes(6 - pad) if pad <= 6 else bytes(6 + 8 - pad)
    hdr = build_options_header(IPPROTO_NONE, [(0x1E, data)])
    assert len(hdr) % 8 == 0
    walk_headers(packet(hdr, IPPROTO_DSTOPTS, b""))


def test_hop_by_hop_elsewhere_is_unknown_next_header() -> None:
    """RFC 8200 4.1: Hop-by-Hop only right after the IPv6 header."""
    dst = build_options_header(IPPROTO_HOPOPTS)
    raw = packet(dst + build_options_header(IPPROTO_UDP), IPPROTO_DSTOPTS)
    with pytest.raises(ParameterProblem) as info:
        walk_headers(raw)
    assert (info.value.code, info.value.pointer) == (PP_UNKNOWN_NEXT_HEADER, 40)


@pytest.mark.parametrize(("otype", "multicast", "outcome"), [
    (0x1E, False, "skip"), (0x1E, True, "skip"),          # 00: skip
    (0x5E, False, "silent"), (0x5E, True, "silent"),      # 01: discard
    (0x9E, False, "icmp"), (0x9E, True, "icmp"),          # 10: discard + ICMP always
    (0xDE, False, "icmp"), (0xDE, True, "silent"),        # 11: ICMP unless multicast
])
@pytest.mark.parametrize("header", [IPPROTO_HOPOPTS, IPPROTO_DSTOPTS])
def test_unknown_option_actions(otype: int, multicast: bool, outcome: str, header: int) -> None:
    """RFC 8200 section 4.2: the two high-order bits of an unknown option's type."""
    opts = build_options_header(IPPROTO_UDP, [(otype, b"\x01\x02")])
    raw = packet(opts, header)
    if outcome == "skip":
        assert walk_headers(raw, to_multicast=multicast).next_header == IPPROTO_UDP
        return
    with pytest.raises(WireError) as info:
        walk_headers(raw, to_multicast=multicast)
    if outcome == "silent":
        assert not isinstance(info.value, ParameterProblem)
        assert info.value.reason == "ipv6_unknown_option_discard"
    else:
        err = info.value
        assert isinstance(err, ParameterProblem)
        assert (err.code, err.pointer) == (PP_UNKNOWN_OPTION, 42)  # the option's type octet
        assert raw[err.pointer] == otype
        assert err.to_multicast == (otype >> 6 == 2)


def test_routing_header_segments_left_zero_is_ignored() -> None:
    for rtype in (0, 2, 4, 200):
        rh = build_routing_header(IPPROTO_UDP, rtype, 0, bytes(20))
        assert walk_headers(packet(rh, IPPROTO_ROUTING)).next_header == IPPROTO_UDP


@pytest.mark.parametrize("rtype", [0, 2, 3, 4, 200])
def test_routing_header_with_segments_left_is_a_parameter_problem(rtype: int) -> None:
    """RFC 8200 4.4 (unrecognized type, Segments Left > 0) and RFC 5095 3 (type 0):
    Parameter Problem code 0 pointing at the Routing Type."""
    rh = build_routing_header(IPPROTO_UDP, rtype, 1, bytes(20))
    raw = packet(rh, IPPROTO_ROUTING)
    with pytest.raises(ParameterProblem) as info:
        walk_headers(raw)
    assert (info.value.code, info.value.pointer) == (PP_BAD_HEADER_FIELD, 42)


def test_scapy_type_0_and_srh_with_segments_left() -> None:
    for ext in (IPv6ExtHdrRouting(type=0, segleft=1, addresses=["fd00::9"]),
                IPv6ExtHdrSegmentRouting(addresses=["fd00::9", "fd00::8"], segleft=1)):
        raw = bytes(IPv6(src=SRC, dst=DST) / ext / UDP())
        with pytest.raises(ParameterProblem) as info:
            walk_headers(raw)
        assert info.value.pointer == 42


def test_extension_header_past_the_payload() -> None:
    opts = bytearray(build_options_header(IPPROTO_UDP))
    opts[1] = 5  # claims 48 octets
    raw = packet(bytes(opts), IPPROTO_DSTOPTS, b"")
    with pytest.raises(ParameterProblem) as info:
        walk_headers(raw)
    assert (info.value.code, info.value.pointer) == (PP_BAD_HEADER_FIELD, 41)
    # Not even the first two octets of the header: point at the Next Header naming it.
    with pytest.raises(ParameterProblem) as info:
        walk_headers(build_ipv6_header(SRC, DST, IPPROTO_DSTOPTS, 1) + b"\x11")
    assert info.value.pointer == 6


def test_option_overrunning_its_header() -> None:
    opts = bytes((IPPROTO_UDP, 0, 0x1E, 9, 0, 0, 0, 0))
    with pytest.raises(ParameterProblem) as info:
        walk_headers(packet(opts, IPPROTO_DSTOPTS))
    assert (info.value.code, info.value.pointer) == (PP_BAD_HEADER_FIELD, 43)


def test_processing_limits() -> None:
    """RFC 8504 section 5.3: a host may bound padding runs, options and headers."""
    padding = bytes((IPPROTO_UDP, 1)) + bytes((1, 12)) + bytes(12)  # PadN of 14 octets
    with pytest.raises(WireError) as info:
        walk_headers(packet(padding, IPPROTO_DSTOPTS))
    assert info.value.reason == "ipv6_option_limit"
    many = build_options_header(IPPROTO_UDP, [(0x1E, b"")] * 9)
    with pytest.raises(WireError) as info:
        walk_headers(packet(many, IPPROTO_DSTOPTS))
    assert info.value.reason == "ipv6_option_limit"
    chain = b"".join(build_options_header(IPPROTO_DSTOPTS) for _ in range(MAX_EXTENSION_HEADERS))
    chain += build_options_header(IPPROTO_UDP)
    with pytest.raises(WireError) as info:
        walk_headers(packet(chain, IPPROTO_DSTOPTS))
    assert info.value.reason == "ipv6_extension_header_limit"
    ok = chain[8:]
    assert walk_headers(packet(ok, IPPROTO_DSTOPTS)).next_header == IPPROTO_UDP


def test_fragment_header_stops_the_walk() -> None:
    pkt = IPv6(src=SRC, dst=DST) / IPv6ExtHdrDestOpt() / IPv6ExtHdrFragment(offset=3, m=1, id=77) / Raw(bytes(16))
    raw = bytes(pkt)
    chain = walk_headers(raw)
    assert chain.next_header == IPPROTO_FRAGMENT and chain.fragment is not None
    frag = chain.fragment
    assert (frag.offset, frag.more, frag.ident, frag.header_at, frag.data_at, frag.next_header_at) == (
        24, True, 77, 48, 56, 40)
    assert skip_headers(raw) is None  # a later fragment holds no upper-layer header


def test_atomic_fragment_is_passed_over() -> None:
    """RFC 6946 section 4: offset 0 and M clear: the packet is whole."""
    raw = bytes(IPv6(src=SRC, dst=DST) / IPv6ExtHdrFragment(offset=0, m=0, id=5) / UDP())
    chain = walk_headers(raw)
    assert chain.fragment is None and chain.atomic_fragment
    assert (chain.next_header, chain.at, chain.next_header_at) == (IPPROTO_UDP, 48, 40)


def test_truncated_fragment_header() -> None:
    raw = build_ipv6_header(SRC, DST, IPPROTO_FRAGMENT, 4) + bytes(4)
    with pytest.raises(ParameterProblem) as info:
        walk_headers(raw)
    assert info.value.pointer == 6


def test_parameter_problem_pickles() -> None:
    import pickle

    err = ParameterProblem("ipv6_unknown_option", 2, 42, True)
    again = pickle.loads(pickle.dumps(err))
    assert (again.reason, again.code, again.pointer, again.to_multicast) == ("ipv6_unknown_option", 2, 42, True)


# ----------------------------------------------------------------------- flow labels
def test_flow_label_is_a_stable_20_bit_per_flow_value() -> None:
    """RFC 6437 section 3: one label per flow, from a keyed hash of the 5-tuple."""
    secret = b"k" * 16
    a = flow_label(secret, SRC, DST, IPPROTO_TCP, 40000, 80)
    assert 0 < a < 1 << 20
    assert a == flow_label(secret, SRC, DST, IPPROTO_TCP, 40000, 80)
    others = {flow_label(secret, SRC, DST, IPPROTO_TCP, port, 80) for port in range(40001, 40201)}
    assert len(others) > 190  # well spread (a 20-bit hash: collisions are rare)
    assert a != flow_label(b"j" * 16, SRC, DST, IPPROTO_TCP, 40000, 80)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_walk_and_skip_never_raise_anything_else(data: bytes) -> None:
    raw = build_ipv6_header(SRC, DST, data[0] if data else IPPROTO_DSTOPTS, max(0, len(data) - 1)) + data[1:]
    try:
        chain = walk_headers(raw)
    except WireError:
        pass
    else:
        assert 40 <= chain.at <= len(raw)
    found = skip_headers(raw)
    assert found is None or 40 <= found[1] <= len(raw)
