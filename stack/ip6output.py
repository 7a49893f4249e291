"""IPv6 output: packets from this host (sans-IO).

:class:`Ipv6Output` builds what the host sends over IPv6: the 40-byte header with a
flow label, datagrams cut into fragments when they exceed the path MTU (RFC 8200
section 4.5: only the source fragments in IPv6, never a router), TCP segments with
the checksum either complete or left to the kernel (virtio ``NEEDS_CSUM``, with
``GSO_TCPV6`` for a segment larger than the MSS), and ICMPv6 errors under the rate
limit (RFC 4443 section 2.4 (f)).

The path MTU of each destination is kept in a :class:`stack.pmtu.PathMtuCache`.
"""

from __future__ import annotations

import os

from stack.io.virtio import (
    TCP_CSUM_OFFSET,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_TCPV6,
    VirtioNetHdr,
)
from stack.ip6input import Icmp6Error
from stack.pmtu import PathMtuCache
from stack.ratelimit import ErrorRateLimiter
from stack.wire import icmpv6
from stack.wire.ipv4 import IPPROTO_TCP
from stack.wire.ipv6 import (
    FRAGMENT_HEADER_LEN,
    IPPROTO_FRAGMENT,
    IPPROTO_ICMPV6,
    IPV6_HEADER_LEN,
    build_fragment_header,
    build_ipv6_header,
    flow_label,
)
from stack.wire.tcp import CWR, TCPSegment, build_tcp_header

__all__ = ["DEFAULT_HOP_LIMIT", "IPV6_TCP_HEADERS", "Ipv6Output", "tcp_mss_for_mtu"]

#: RFC 8200 section 3 leaves it to the node; 64 is what Linux and most hosts use.
DEFAULT_HOP_LIMIT = 64
_TCP_HEADER = 20
#: What a TCP segment over IPv6 spends on headers (without TCP options): MSS = MTU - 60.
IPV6_TCP_HEADERS = IPV6_HEADER_LEN + _TCP_HEADER
_FLOW_CACHE_MAX = 65536

Packet = list[bytes | memoryview]


def tcp_mss_for_mtu(mtu: int) -> int:
    """The TCP MSS an IPv6 path of ``mtu`` allows: MTU minus the 40-octet IPv6 header
    and the 20-octet TCP header (RFC 9293 section 3.7.1, RFC 8200 section 8.3)."""
    return mtu - IPV6_TCP_HEADERS


class Ipv6Output:
    """The send side of one IPv6 host with the address ``address`` on a link of ``mtu``."""

    def __init__(self, address: str, mtu: int, *, secret: bytes | None = None,
                 limiter: ErrorRateLimiter | None = None) -> None:
        self.address = address
        self.mtu = mtu
        self.pmtu = PathMtuCache(mtu)
        self.secret = secret if secret is not None else os.urandom(16)
        self.limiter = limiter if limiter is not None else ErrorRateLimiter()
        self.hop_limit = DEFAULT_HOP_LIMIT
        self.fragments_out = 0
        self._flows: dict[tuple[str, int, int, int], int] = {}

    def flow_label(self, dst: str, proto: int, sport: int, dport: int) -> int:
        """The flow label of one transport flow from this host (RFC 6437 section 3)."""
        return flow_label(self.secret, self.address, dst, proto, sport, dport)

    def flow(self, dst: str, proto: int, sport: int, dport: int) -> int:
        """:meth:`flow_label`, remembered: a keyed hash per packet would cost more than
        the rest of the IPv6 header (the table is bounded, cleared when full)."""
        key = (dst, proto, sport, dport)
        label = self._flows.get(key)
        if label is None:
            if len(self._flows) >= _FLOW_CACHE_MAX:
                self._flows.clear()
            label = self._flows[key] = self.flow_label(dst, proto, sport, dport)
        return label

    def datagram(self, dst: str, next_header: int, payload: bytes | memoryview, now: float,
                 flow: int = 0) -> list[Packet]:
        """The packets carrying one datagram (UDP, ICMPv6) to ``dst``: one, or
        fragments when it does not fit the path MTU (RFC 8200 section 4.5)."""
        mtu = self.pmtu.get(dst, now)
        if IPV6_HEADER_LEN + len(payload) <= mtu:
            return [[build_ipv6_header(self.address, dst, next_header, len(payload),
                                       self.hop_limit, flow_label=flow), payload]]
        # RFC 8200 section 4.5: every fragment but the last carries a multiple of 8
        # octets; each is the IPv6 header (no extension headers here: the
        # unfragmentable part is just the header), a Fragment header and its share.
        step = (mtu - IPV6_HEADER_LEN - FRAGMENT_HEADER_LEN) // 8 * 8
        # RFC 7739 section 5: identifications must not be predictable.
        ident = int.from_bytes(os.urandom(4), "big")
        view = memoryview(payload)
        packets: list[Packet] = []
        for offset in range(0, len(view), step):
            chunk = view[offset : offset + step]
            more = offset + step < len(view)
            frag = build_fragment_header(next_header, offset, more, ident)
            header = build_ipv6_header(self.address, dst, IPPROTO_FRAGMENT,
                                       FRAGMENT_HEADER_LEN + len(chunk), self.hop_limit,
                                       flow_label=flow)
            packets.append([header, frag, chunk])
        self.fragments_out += len(packets)
        return packets

    def tcp_segment(self, dst: str, seg: TCPSegment, mss: int, *, offload: bool,
                    flow: int = 0) -> tuple[Packet, VirtioNetHdr | None]:
        """One TCP segment to ``dst``: the packet's parts and, with offloads, the vnet
        header asking the kernel to finish the checksum (and to cut a segment longer
        than ``mss`` into ``mss``-sized ones, ``GSO_TCPV6``)."""
        payload = seg.payload
        if offload:
            tcp_header = build_tcp_header(seg, self.address, dst, checksum="partial")
            vnet = VirtioNetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start=IPV6_HEADER_LEN,
                                csum_offset=TCP_CSUM_OFFSET)
            if mss and len(payload) > mss:
                # A CWR only on the first segment the kernel cuts (GSO_ECN, RFC 3168 6.1.2).
                vnet.gso_type = VIRTIO_NET_HDR_GSO_TCPV6 | (
                    VIRTIO_NET_HDR_GSO_ECN if seg.flags & CWR else 0)
                vnet.gso_size = mss
                vnet.hdr_len = IPV6_HEADER_LEN + len(tcp_header)
        else:
            tcp_header = build_tcp_header(seg, self.address, dst, checksum="full")
            vnet = None
        # RFC 3168 section 5: the ECN field is the low two bits of the Traffic Class.
        # IPV6_TCLASS's DSCP beside it, IPV6_UNICAST_HOPS's hop limit (0: the default).
        ip_header = build_ipv6_header(self.address, dst, IPPROTO_TCP,
                                      len(tcp_header) + len(payload), seg.ttl or self.hop_limit,
                                      traffic_class=seg.dscp | seg.ecn, flow_label=flow)
        if payload:
            return [ip_header, tcp_header, payload], vnet
        return [ip_header, tcp_header], vnet

    def error(self, err: Icmp6Error, now: float) -> list[Packet]:
        """The packet of an ICMPv6 error, or nothing when the rate limit says no
        (RFC 4443 section 2.4 (f); counted in ``limiter.limited``)."""
        if not self.limiter.allow(err.dst, now):
            return []
        msg = icmpv6.build_icmpv6(err.type, err.code, err.rest, err.quote, self.address, err.dst)
        return self.datagram(err.dst, IPPROTO_ICMPV6, msg, now)

    def echo_reply(self, dst: str, request: icmpv6.ICMPv6Message, now: float) -> list[Packet]:
        """The reply to an echo request from ``dst`` (RFC 4443 section 4.2: same
        identifier, sequence number and data; from the address it was sent to, ours)."""
        reply = icmpv6.build_icmpv6(icmpv6.ECHO_REPLY, 0, bytes(request.rest), request.payload,
                                    self.address, dst)
        return self.datagram(dst, IPPROTO_ICMPV6, reply, now)
