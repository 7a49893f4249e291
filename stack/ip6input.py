"""IPv6 input: from a packet read off the link to an upper-layer datagram (sans-IO).

:meth:`Ipv6Input.receive` does, in order, what a destination host does with an
IPv6 packet (RFC 8200):

1. validate the fixed header (``stack.wire.ipv6.parse_ipv6``, section 3);
2. accept it only for one of our addresses or a multicast group every node is in
   (RFC 4291 section 2.8), and only from a source that can send (not multicast,
   section 2.7; not ``::``, ``::1``, section 2.5.2-3; not v4-mapped, which never
   travels on a wire, RFC 4291 section 2.5.5.2 and RFC 4942 section 2.2);
3. walk the extension headers (section 4, ``walk_headers``);
4. reassemble fragments (section 4.5, ``stack/ip6frag.py``), then walk on;
5. hand the upper-layer header and data to the caller, or answer an unknown Next
   Header with Parameter Problem code 1 (section 4).

It returns a :class:`Datagram6`, a :class:`Drop` (with the ICMPv6 error to send,
if any: the caller applies the rate limit, RFC 4443 section 2.4 (f)), or None for
a fragment kept for later. Nothing here sends, reads a clock or raises on bad input.
"""

from __future__ import annotations

import socket
from collections.abc import Collection
from dataclasses import dataclass

from stack.ip6frag import Ipv6Reassembler
from stack.wire import icmpv6
from stack.wire.errors import WireError
from stack.wire.ipv4 import IPPROTO_TCP, IPPROTO_UDP
from stack.wire.ipv6 import (
    IPPROTO_FRAGMENT,
    IPPROTO_ICMPV6,
    IPPROTO_NONE,
    PP_UNKNOWN_NEXT_HEADER,
    PP_UNKNOWN_OPTION,
    IPv6Header,
    ParameterProblem,
    is_multicast,
    parse_ipv6,
    walk_headers,
)

__all__ = ["ALL_NODES", "Datagram6", "Drop", "Icmp6Error", "Ipv6Input", "solicited_node"]

#: RFC 4291 section 2.7.1: the all-nodes multicast addresses (interface- and link-local).
ALL_NODES = ("ff01::1", "ff02::1")
_UPPER_LAYERS = frozenset((IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6))
# RFC 4291 2.5.2-3: neither the unspecified nor the loopback address sends from a wire.
_BAD_SOURCES = frozenset(("::", "::1"))
_SOLICITED_PREFIX = bytes.fromhex("ff02" + "0000" * 4 + "0001ff")  # ff02::1:ff00:0/104


@dataclass(slots=True)
class Datagram6:
    """An upper-layer datagram for this host: ``payload`` starts with the upper-layer
    header (protocol ``next_header``); ``packet`` is the whole (reassembled) IPv6
    packet, for the errors that quote it."""

    header: IPv6Header
    next_header: int
    payload: memoryview
    packet: memoryview


@dataclass(slots=True)
class Icmp6Error:
    """An ICMPv6 error to send to ``dst`` (RFC 4443 section 3)."""

    dst: str
    type: int
    code: int
    rest: bytes
    quote: bytes


@dataclass(slots=True)
class Drop:
    """A discarded packet: ``reason`` for the drop counters, ``error`` to send."""

    reason: str
    error: Icmp6Error | None = None


def solicited_node(address: str) -> str:
    """The solicited-node multicast address of ``address`` (RFC 4291 section 2.7.1)."""
    raw = socket.inet_pton(socket.AF_INET6, address)
    return socket.inet_ntop(socket.AF_INET6, _SOLICITED_PREFIX + raw[13:])


def error_for(packet: memoryview, header: IPv6Header, icmp_type: int, code: int,
              rest: bytes, *, to_multicast_allowed: bool = False) -> Icmp6Error | None:
    """The ICMPv6 error answering ``packet``, or None where RFC 4443 section 2.4 (e)
    forbids one."""
    if not icmpv6.may_send_error(header, invoking_is_error=icmpv6.is_icmpv6_error_packet(packet),
                                 to_multicast_allowed=to_multicast_allowed):
        return None
    return Icmp6Error(header.src, icmp_type, code, rest, icmpv6.error_quote(packet))


class Ipv6Input:
    """The receive side of one IPv6 host with the unicast ``addresses``."""

    def __init__(self, addresses: Collection[str], reassembler: Ipv6Reassembler | None = None,
                 upper_layers: Collection[int] = _UPPER_LAYERS) -> None:
        self.addresses = {socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, a))
                          for a in addresses}
        self.groups = set(ALL_NODES) | {solicited_node(a) for a in self.addresses}
        self.fragments = reassembler if reassembler is not None else Ipv6Reassembler()
        self.upper_layers = frozenset(upper_layers)

    def receive(self, packet: memoryview, now: float) -> Datagram6 | Drop | None:
        try:
            header, payload = parse_ipv6(packet)
        except WireError as exc:
            return Drop(exc.reason)
        dst = header.dst
        multicast = False
        if dst not in self.addresses:
            # RFC 8200 section 4 / RFC 1122 3.2.1.3 in spirit: not ours, not a group
            # we are in: silently discarded (a host does not forward).
            if dst not in self.groups:
                return Drop("not_for_us")
            multicast = True
        src = header.src
        if src in _BAD_SOURCES or is_multicast(src) or (src.startswith("::ffff:") and "." in src):
            # (inet_ntop writes a v4-mapped address as ::ffff:a.b.c.d, RFC 5952 5.)
            return Drop("bad_ipv6_source")
        whole = packet[: 40 + header.payload_length]
        if header.next_header in self.upper_layers:
            # The common case: no extension header at all, nothing to walk.
            return Datagram6(header, header.next_header, payload, whole)
        try:
            chain = walk_headers(whole, to_multicast=multicast)
            if chain.fragment is not None:
                done = self.fragments.add(header.src, dst, whole, chain.fragment, now)
                if done is None:
                    return None
                whole = memoryview(done.packet)
                header, payload = parse_ipv6(whole)
                chain = walk_headers(whole, next_header=done.next_header, at=done.at,
                                     next_header_at=done.next_header_at, to_multicast=multicast)
                if chain.fragment is not None:
                    # A Fragment header inside a reassembled packet: fragments of
                    # fragments are nothing a sender makes (section 4.5); discard.
                    return Drop("ipv6_nested_fragment")
        except ParameterProblem as exc:
            return Drop(exc.reason, error_for(
                whole, header, icmpv6.PARAMETER_PROBLEM, exc.code, icmpv6.pointer_rest(exc.pointer),
                to_multicast_allowed=exc.to_multicast and exc.code == PP_UNKNOWN_OPTION))
        except WireError as exc:
            return Drop(exc.reason)
        nh = chain.next_header
        if nh in self.upper_layers:
            return Datagram6(header, nh, whole[chain.at :], whole)
        if nh == IPPROTO_NONE:
            # RFC 8200 section 4.7: nothing follows; octets after it are ignored.
            return Drop("ipv6_no_next_header")
        if nh == IPPROTO_FRAGMENT:  # (walk_headers never stops here without a fragment)
            return Drop("ipv6_nested_fragment")
        # RFC 8200 section 4: an unrecognized Next Header value: discard and send
        # Parameter Problem code 1 pointing at it.
        return Drop("unknown_next_header", error_for(
            whole, header, icmpv6.PARAMETER_PROBLEM, PP_UNKNOWN_NEXT_HEADER,
            icmpv6.pointer_rest(chain.next_header_at)))

    def expire(self, now: float) -> list[Icmp6Error]:
        """Abandon timed-out reassemblies; the Time Exceeded code 1 errors to send for
        those whose first fragment had arrived (RFC 8200 section 4.5)."""
        errors = []
        for gone in self.fragments.expire(now):
            if gone.first_quote is None:
                continue
            quote = memoryview(gone.first_quote)
            try:
                header, _ = parse_ipv6(_with_payload_length_of(quote))
            except WireError:
                continue
            err = error_for(quote, header, icmpv6.TIME_EXCEEDED, icmpv6.TIME_EXCEEDED_REASSEMBLY,
                            bytes(4))
            if err is not None:
                errors.append(err)
        return errors


def _with_payload_length_of(quote: memoryview) -> bytearray:
    """The quote with Payload Length set to what it holds (it may be cut short)."""
    buf = bytearray(quote)
    buf[4:6] = (len(buf) - 40).to_bytes(2, "big")
    return buf
