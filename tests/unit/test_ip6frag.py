"""IPv6 fragment reassembly (stack/ip6frag.py, RFC 8200 4.5, RFC 5722, RFC 7112),
with fragments cut by scapy's fragment6 and by hand."""

from __future__ import annotations

import random

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, fragment6

from stack.ip6frag import FRAGMENT_OVERHEAD, REASSEMBLY_TIMEOUT, Ipv6Reassembler, Reassembled
from stack.wire.errors import WireError
from stack.wire.ipv4 import IPPROTO_UDP
from stack.wire.ipv6 import (
    IPPROTO_DSTOPTS,
    PP_BAD_HEADER_FIELD,
    PP_FIRST_FRAGMENT_INCOMPLETE,
    ParameterProblem,
    build_fragment_header,
    build_ipv6_header,
    walk_headers,
)
from stack.wire.udp import parse_udp

SRC = "fd00:0:0:1::1"
DST = "fd00:0:0:1::2"


def original(size: int = 3000, ident: int = 0x1234) -> IPv6:
    data = bytes(random.Random(size).getrandbits(8) for _ in range(size))
    return IPv6(src=SRC, dst=DST) / IPv6ExtHdrFragment(id=ident) / UDP(sport=5, dport=7) / data


def feed(r: Ipv6Reassembler, raw: bytes, now: float = 0.0) -> Reassembled | None:
    view = memoryview(raw)
    chain = walk_headers(view)
    assert chain.fragment is not None
    return r.add(SRC, DST, view, chain.fragment, now)


def frag(offset: int, more: bool, data: bytes, ident: int = 9, nh: int = IPPROTO_UDP) -> bytes:
    """One fragment by hand: IPv6 header, Fragment header, data."""
    body = build_fragment_header(nh, offset, more, ident) + data
    return build_ipv6_header(SRC, DST, 44, len(body)) + body


def expected_packet(pkt: IPv6) -> bytes:
    """The reassembled packet RFC 8200 4.5 describes: no Fragment header, Next Header
    fixed, Payload Length recomputed."""
    whole = IPv6(src=pkt.src, dst=pkt.dst) / pkt[IPv6ExtHdrFragment].payload
    return bytes(whole)


@pytest.mark.parametrize("order", ["in", "reverse", "shuffled"])
def test_reassembles_scapy_fragments(order: str) -> None:
    pkt = original()
    pieces = [bytes(f) for f in fragment6(pkt, 1280)]
    assert len(pieces) == 3
    if order == "reverse":
        pieces.reverse()
    elif order == "shuffled":
        random.Random(1).shuffle(pieces)
    r = Ipv6Reassembler()
    results = [feed(r, p) for p in pieces]
    assert results[:-1] == [None, None]
    done = results[-1]
    assert done is not None
    assert done.packet == expected_packet(pkt)
    assert (done.next_header, done.at, done.next_header_at) == (IPPROTO_UDP, 40, 6)
    udp = parse_udp(done.packet[done.at:], SRC, DST)
    assert bytes(udp.payload) == bytes(pkt[UDP].payload)
    assert r.memory == 0 and not r.pending


def test_unfragmentable_part_comes_from_the_first_fragment() -> None:
    pkt = IPv6(src=SRC, dst=DST) / IPv6ExtHdrDestOpt() / IPv6ExtHdrFragment(id=3) / UDP() / bytes(2000)
    pieces = [bytes(f) for f in fragment6(pkt, 1280)]
    r = Ipv6Reassembler()
    done = None
    for p in reversed(pieces):
        done = feed(r, p) or done
    assert done is not None
    assert (done.next_header, done.at, done.next_header_at) == (IPPROTO_UDP, 48, 40)
    assert done.packet[6] == IPPROTO_DSTOPTS and done.packet[40] == IPPROTO_UDP
    again = walk_headers(done.packet)
    assert again.next_header == IPPROTO_UDP and again.at == 48
    assert int.from_bytes(done.packet[4:6], "big") == len(done.packet) - 40


def test_overlap_discards_the_whole_datagram_and_its_later_fragments() -> None:
    """RFC 5722 section 4."""
    r = Ipv6Reassembler()
    assert feed(r, frag(0, True, bytes(UDP(sport=1, dport=2, len=8 + 24)) + bytes(16))) is None
    with pytest.raises(WireError) as info:
        feed(r, frag(16, True, bytes(16)), 1.0)  # overlaps [16, 24)
    assert info.value.reason == "ipv6_fragment_overlap"
    assert not r.pending and r.memory == 0
    # The fragments still to come are discarded too (they would complete nothing).
    with pytest.raises(WireError) as info:
        feed(r, frag(24, False, bytes(8)), 2.0)
    assert info.value.reason == "ipv6_fragment_of_discarded"
    # After the datagram's lifetime, the identification is usable again.
    assert feed(r, frag(8, False, bytes(8)), REASSEMBLY_TIMEOUT + 1) is None


@pytest.mark.parametrize(("first", "second"), [((8, 16), (0, 16)), ((0, 16), (8, 8)),
                                               ((0, 16), (0, 8)), ((8, 8), (0, 24))])
def test_every_kind_of_overlap(first: tuple[int, int], second: tuple[int, int]) -> None:
    r = Ipv6Reassembler()
    feed(r, frag(first[0], True, bytes(first[1])))
    with pytest.raises(WireError) as info:
        feed(r, frag(second[0], True, bytes(second[1])))
    assert info.value.reason == "ipv6_fragment_overlap"


def test_exact_duplicate_is_dropped_alone() -> None:
    """RFC 8200 4.5: an exact duplicate may be dropped keeping the others."""
    pkt = original(2000)
    pieces = [bytes(f) for f in fragment6(pkt, 1280)]
    r = Ipv6Reassembler()
    assert feed(r, pieces[0]) is None
    with pytest.raises(WireError) as info:
        feed(r, pieces[0])
    assert info.value.reason == "ipv6_fragment_duplicate"
    done = feed(r, pieces[1])
    assert done is not None and done.packet == expected_packet(pkt)
    # Same offset and length, other bytes: that is an overlap.
    r2 = Ipv6Reassembler()
    feed(r2, frag(8, True, bytes(8)))
    with pytest.raises(WireError) as info:
        feed(r2, frag(8, True, b"x" * 8))
    assert info.value.reason == "ipv6_fragment_overlap"


def test_non_final_fragment_length_not_a_multiple_of_8() -> None:
    """RFC 8200 4.5: Parameter Problem code 0 pointing at the Payload Length."""
    r = Ipv6Reassembler()
    with pytest.raises(ParameterProblem) as info:
        feed(r, frag(0, True, bytes(UDP()) + bytes(5)))
    assert (info.value.code, info.value.pointer) == (PP_BAD_HEADER_FIELD, 4)


def test_fragment_beyond_65535() -> None:
    """RFC 8200 4.5: code 0 pointing at the Fragment Offset field."""
    r = Ipv6Reassembler()
    with pytest.raises(ParameterProblem) as info:
        feed(r, frag(65528, False, bytes(16)))
    assert (info.value.code, info.value.pointer) == (PP_BAD_HEADER_FIELD, 42)
    assert feed(r, frag(65520, False, bytes(7))) is None  # 8 + 65520 + 7 = 65535: fine


def test_first_fragment_without_the_upper_layer_header() -> None:
    """RFC 7112 section 5: Parameter Problem code 3, pointer 0."""
    r = Ipv6Reassembler()
    # A whole Destination Options header, then no room for the UDP header.
    dst = bytes(IPv6ExtHdrDestOpt(nh=IPPROTO_UDP))
    assert len(dst) == 8
    # A Destination Options header that claims 16 octets in a fragment of 8.
    cut = bytes(IPv6ExtHdrDestOpt(nh=IPPROTO_UDP, len=1))[:8]
    for data in (dst, cut):
        with pytest.raises(ParameterProblem) as info:
            feed(r, frag(0, True, data, nh=IPPROTO_DSTOPTS))
        assert (info.value.code, info.value.pointer) == (PP_FIRST_FRAGMENT_INCOMPLETE, 0)
    # With the UDP header in it, the same first fragment is fine.
    assert feed(r, frag(0, True, dst + bytes(UDP()) + bytes(8), nh=IPPROTO_DSTOPTS)) is None


def test_inconsistent_last_fragments() -> None:
    r = Ipv6Reassembler()
    feed(r, frag(8, False, bytes(8)))
    with pytest.raises(WireError) as info:
        feed(r, frag(16, False, bytes(8)))
    assert info.value.reason == "ipv6_fragment_inconsistent"
    r = Ipv6Reassembler()
    feed(r, frag(32, True, bytes(8)))
    with pytest.raises(WireError) as info:
        feed(r, frag(8, False, bytes(8)))
    assert info.value.reason == "ipv6_fragment_inconsistent"


def test_timeout_after_60_seconds_reports_only_with_the_first_fragment() -> None:
    """RFC 8200 4.5: abandoned 60 s after the first-arriving fragment; Time Exceeded
    only if the first fragment arrived."""
    r = Ipv6Reassembler()
    first = frag(0, True, bytes(UDP()) + bytes(8), ident=1)
    feed(r, first, 10.0)
    feed(r, frag(8, True, bytes(8), ident=2), 20.0)
    assert r.expire(69.9) == []
    gone = r.expire(70.0)
    assert len(gone) == 1 and gone[0].src == SRC and gone[0].first_quote == first
    gone = r.expire(80.0)
    assert len(gone) == 1 and gone[0].first_quote is None
    assert not r.pending and r.memory == 0


def test_memory_and_datagram_bounds() -> None:
    r = Ipv6Reassembler(memory_limit=64 * 1024, max_datagrams=100)
    for ident in range(1000):
        feed(r, frag(8, True, bytes(1024), ident=ident))
        assert r.memory <= 64 * 1024
        assert len(r.pending) <= 100
    assert r.table.evicted > 0
    # Tiny fragments are charged their bookkeeping too.
    r = Ipv6Reassembler(memory_limit=10 * FRAGMENT_OVERHEAD)
    for i in range(50):
        feed(r, frag(8 * (i + 1), True, bytes(8), ident=1))
    assert r.memory <= 10 * FRAGMENT_OVERHEAD


def test_empty_fragment() -> None:
    r = Ipv6Reassembler()
    with pytest.raises(WireError) as info:
        feed(r, frag(8, True, b""))
    assert info.value.reason == "ipv6_fragment_empty"
