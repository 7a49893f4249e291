"""The IPv6 input stage (stack/ip6input.py) and the ICMP error rate limit
(stack/ratelimit.py): packets built with scapy, outcomes checked field by field."""

from __future__ import annotations

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    HBHOptUnknown,
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.packet import Raw

from stack.ip6input import Datagram6, Drop, Ipv6Input, solicited_node
from stack.ratelimit import ErrorRateLimiter, TokenBucket
from stack.wire import icmpv6
from stack.wire.ipv4 import IPPROTO_TCP, IPPROTO_UDP
from stack.wire.ipv6 import IPPROTO_ICMPV6, build_ipv6_header

PEER = "fd00:0:0:1::1"
STACK = "fd00:0:0:1::2"


def rx(pkt: IPv6 | bytes, now: float = 0.0, inp: Ipv6Input | None = None) -> Datagram6 | Drop | None:
    inp = inp or Ipv6Input([STACK])
    return inp.receive(memoryview(bytes(pkt)), now)


def error_message(drop: Drop | Datagram6 | None) -> IPv6:
    """The ICMPv6 error a Drop asks for, as it would leave the host, decoded by scapy."""
    assert isinstance(drop, Drop) and drop.error is not None
    err = drop.error
    msg = icmpv6.build_icmpv6(err.type, err.code, err.rest, err.quote, STACK, err.dst)
    return IPv6(build_ipv6_header(STACK, err.dst, IPPROTO_ICMPV6, len(msg)) + msg)


@pytest.mark.parametrize(("layer", "proto"), [(TCP(dport=80), IPPROTO_TCP), (UDP(dport=7), IPPROTO_UDP),
                                               (ICMPv6EchoRequest(), IPPROTO_ICMPV6)])
def test_delivers_upper_layer(layer: object, proto: int) -> None:
    pkt = IPv6(src=PEER, dst=STACK) / IPv6ExtHdrHopByHop() / layer / b"data"  # type: ignore[operator]
    out = rx(pkt)
    assert isinstance(out, Datagram6)
    assert out.next_header == proto and out.header.src == PEER
    assert bytes(out.payload) == bytes(pkt[IPv6ExtHdrHopByHop].payload)
    assert bytes(out.packet) == bytes(pkt)


def test_address_filter() -> None:
    assert isinstance(rx(IPv6(src=PEER, dst="fd00:0:0:1::3") / UDP()), Drop)
    assert rx(IPv6(src=PEER, dst="fd00:0:0:1::3") / UDP()).reason == "not_for_us"  # type: ignore[union-attr]
    for group in ("ff02::1", "ff01::1", solicited_node(STACK)):
        assert isinstance(rx(IPv6(src=PEER, dst=group) / ICMPv6EchoRequest()), Datagram6)
    assert solicited_node(STACK) == "ff02::1:ff00:2"
    # Written another way, the stack's address is still its address.
    assert isinstance(Ipv6Input(["fd00:0000:0:1:0::2"]).receive(
        memoryview(bytes(IPv6(src=PEER, dst=STACK) / UDP())), 0.0), Datagram6)


@pytest.mark.parametrize("src", ["ff02::1", "::", "::1", "::ffff:10.0.0.1"])
def test_bad_sources(src: str) -> None:
    out = rx(IPv6(src=src, dst=STACK) / UDP())
    assert isinstance(out, Drop) and out.reason == "bad_ipv6_source" and out.error is None


def test_unknown_next_header_parameter_problem_code_1() -> None:
    """RFC 8200 section 4: pointer at the Next Header field naming the unknown value."""
    out = rx(IPv6(src=PEER, dst=STACK, nh=253) / Raw(bytes(8)))
    assert isinstance(out, Drop) and out.reason == "unknown_next_header"
    err = error_message(out)
    pp = err[ICMPv6ParamProblem]
    assert (pp.code, pp.ptr) == (1, 6) and err.dst == PEER
    assert bytes(pp.payload)[:40] == bytes(IPv6(src=PEER, dst=STACK, nh=253, plen=8))
    out = rx(IPv6(src=PEER, dst=STACK) / IPv6ExtHdrDestOpt(nh=253) / Raw(bytes(8)))
    assert error_message(out)[ICMPv6ParamProblem].ptr == 40


def test_no_error_to_multicast_destination_or_for_an_error() -> None:
    """RFC 4443 2.4 (e.1) and (e.2)."""
    out = rx(IPv6(src=PEER, dst="ff02::1", nh=253) / Raw(bytes(8)))
    assert isinstance(out, Drop) and out.reason == "unknown_next_header" and out.error is None
    # An ICMPv6 error with an unknown option of type 10xxxxxx: no error about an error.
    pkt = (IPv6(src=PEER, dst=STACK) / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x9E, optdata=b"")])
           / ICMPv6DestUnreach() / Raw(bytes(8)))
    out = rx(pkt)
    assert isinstance(out, Drop) and out.reason == "ipv6_unknown_option" and out.error is None


def test_option_errors_to_multicast() -> None:
    """RFC 8200 4.2 with RFC 4443 2.4 (e.2): type 10xxxxxx is reported even to a
    multicast destination, 11xxxxxx is not."""
    for otype, reported in ((0x9E, True), (0xDE, False)):
        pkt = (IPv6(src=PEER, dst="ff02::1") / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=otype, optdata=b"")])
               / ICMPv6EchoRequest())
        out = rx(pkt)
        assert isinstance(out, Drop)
        assert (out.error is not None) == reported
        if reported:
            pp = error_message(out)[ICMPv6ParamProblem]
            assert (pp.code, pp.ptr) == (2, 42)


def test_routing_header_type_0() -> None:
    """RFC 5095: with Segments Left, Parameter Problem code 0 at the Routing Type."""
    out = rx(IPv6(src=PEER, dst=STACK) / IPv6ExtHdrRouting(type=0, segleft=1, addresses=["fd00::9"]) / UDP())
    pp = error_message(out)[ICMPv6ParamProblem]
    assert (pp.code, pp.ptr) == (0, 42)
    assert isinstance(rx(IPv6(src=PEER, dst=STACK) / IPv6ExtHdrRouting(type=0, segleft=0) / UDP()), Datagram6)


def test_no_next_header() -> None:
    out = rx(IPv6(src=PEER, dst=STACK, nh=59) / Raw(b"ignored"))
    assert isinstance(out, Drop) and out.reason == "ipv6_no_next_header" and out.error is None


def test_fragments_reassembled_then_delivered() -> None:
    pkt = IPv6(src=PEER, dst=STACK) / IPv6ExtHdrFragment(id=77) / UDP(sport=1, dport=7) / bytes(4000)
    inp = Ipv6Input([STACK])
    pieces = [bytes(f) for f in fragment6(pkt, 1500)]
    outs = [inp.receive(memoryview(p), 1.0) for p in reversed(pieces)]
    assert outs[:-1] == [None] * (len(pieces) - 1)
    done = outs[-1]
    assert isinstance(done, Datagram6) and done.next_header == IPPROTO_UDP
    assert bytes(done.payload) == bytes(pkt[UDP])
    assert done.header.payload_length == len(bytes(pkt[UDP]))


def test_atomic_fragment_delivered_in_isolation() -> None:
    """RFC 6946: an atomic fragment is a whole packet, even with a pending id."""
    inp = Ipv6Input([STACK])
    first = bytes(fragment6(IPv6(src=PEER, dst=STACK) / IPv6ExtHdrFragment(id=5) / UDP() / bytes(3000), 1280)[0])
    assert inp.receive(memoryview(first), 0.0) is None
    atomic = IPv6(src=PEER, dst=STACK) / IPv6ExtHdrFragment(id=5, offset=0, m=0) / UDP(dport=9) / b"x"
    out = inp.receive(memoryview(bytes(atomic)), 0.0)
    assert isinstance(out, Datagram6) and bytes(out.payload) == bytes(atomic[UDP])
    assert len(inp.fragments.pending) == 1  # the other datagram is untouched


def test_reassembly_timeout_sends_time_exceeded() -> None:
    inp = Ipv6Input([STACK])
    pieces = [bytes(f) for f in fragment6(IPv6(src=PEER, dst=STACK) / IPv6ExtHdrFragment(id=8) / UDP() / bytes(3000), 1280)]
    inp.receive(memoryview(pieces[0]), 5.0)
    inp.receive(memoryview(pieces[1]), 6.0)
    assert inp.expire(64.9) == []
    errors = inp.expire(65.0)
    assert len(errors) == 1
    err = errors[0]
    msg = icmpv6.build_icmpv6(err.type, err.code, err.rest, err.quote, STACK, err.dst)
    te = IPv6(build_ipv6_header(STACK, err.dst, IPPROTO_ICMPV6, len(msg)) + msg)[ICMPv6TimeExceeded]
    assert te.code == 1 and err.dst == PEER
    assert bytes(te.payload)[:48] == pieces[0][:48]
    assert len(err.quote) <= icmpv6.MAX_ERROR_QUOTE


def test_fragment_errors_are_answered() -> None:
    body = bytes(IPv6ExtHdrFragment(nh=IPPROTO_UDP, offset=0, m=1, id=1)) + bytes(UDP()) + bytes(5)
    out = rx(build_ipv6_header(PEER, STACK, 44, len(body)) + body)
    pp = error_message(out)[ICMPv6ParamProblem]
    assert (pp.code, pp.ptr) == (0, 4)


def test_malformed_header() -> None:
    out = rx(b"\x60" + bytes(20))
    assert isinstance(out, Drop) and out.reason == "truncated_ipv6_header"


# ------------------------------------------------------------------------ rate limit
def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.allow(0.05)
    assert bucket.allow(0.1)
    assert [bucket.allow(100.0) for _ in range(4)] == [True, True, True, False]  # capped at burst
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


def test_error_rate_limiter_per_peer_and_in_total() -> None:
    """RFC 4443 2.4 (f): per sender of erroneous packets, and bounded overall."""
    lim = ErrorRateLimiter(per_peer_rate=10, per_peer_burst=10, total_rate=20, total_burst=20, max_peers=4)
    assert sum(lim.allow("fd00::1", 0.0) for _ in range(50)) == 10
    assert sum(lim.allow("fd00::2", 0.0) for _ in range(50)) == 10  # a second peer is not starved
    assert sum(lim.allow("fd00::3", 0.0) for _ in range(50)) == 0  # but the total is spent
    assert lim.limited == 40 + 40 + 50
    for i in range(10):
        lim.allow(f"fd00::{i + 10}", 1.0)
    assert lim.peers == 4
