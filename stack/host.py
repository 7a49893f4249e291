"""The IP host: validation, fragments, ICMP, UDP, and TCP demultiplexing.

`Host` is driven by the daemon's event loop (stack/daemon.py) with `receive_packet(raw, now)`
and `run_timers(now)`; it transmits through the `transmit` callable it was given.
It owns the port tables, the listeners and a timer heap holding each connection's
next deadline, so the cost of a packet or a timer tick never depends on how many
connections exist.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import random
import socket
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from stack.io.virtio import (
    TCP_CSUM_OFFSET,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VNET_HDR_LEN,
    VirtioNetHdr,
    parse_vnet_hdr,
)
from stack.ip6input import Datagram6, Drop, Icmp6Error, Ipv6Input, error_for
from stack.ip6output import IPV6_TCP_HEADERS, Ipv6Output, tcp_mss_for_mtu
from stack.ipfrag import FragmentReassembler
from stack.observe.events import EventBudget, EventLog
from stack.observe.pcap import PcapWriter
from stack.pmtu import IPV6_MIN_MTU
from stack.tcp import fastopen
from stack.tcp.connection import Connection, State, TcpConfig
from stack.tcp.isn import initial_sequence_number, new_secret
from stack.tcp.memory import DEFAULT_LIMIT as DEFAULT_TCP_MEMORY
from stack.tcp.memory import TcpMemory, held_by
from stack.tcp_over_udp import PLAIN, TcpOverUdp, same_path
from stack.wire import icmp, icmpv6
from stack.wire.errors import WireError
from stack.wire.ipv4 import (
    DEFAULT_TTL,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    build_ipv4_header,
    parse_ipv4,
)
from stack.wire.ipv6 import build_ipv6_header
from stack.wire.tcp import (
    ACK,
    CWR,
    FIN,
    RST,
    SYN,
    TCPOptions,
    TCPSegment,
    build_tcp_header,
    parse_tcp,
)
from stack.wire.udp import build_udp, parse_udp

EPHEMERAL_PORTS = range(32768, 61000)  # Linux's default ip_local_port_range
MAX_TCP_SEGMENT = 65535 - 20 - 60  # the largest TCP segment one IPv4 datagram carries
DROP_EVENTS_PER_SECOND = 100  # `drop` events per reason, after a burst of DROP_EVENT_BURST
DROP_EVENT_BURST = 200
MAX_FRAGMENT_DATAGRAMS = 4096  # datagrams under reassembly at once (oldest dropped)

ConnKey = tuple[int, str, int]  # (local port, remote address, remote port)


# RFC 4443 section 3 errors as errno values (as Linux's icmpv6_err_convert reports them).
_ICMP6_ERRNO = {
    (icmpv6.DEST_UNREACH, icmpv6.UNREACH_NO_ROUTE): errno.ENETUNREACH,
    (icmpv6.DEST_UNREACH, icmpv6.UNREACH_ADMIN): errno.EACCES,
    (icmpv6.DEST_UNREACH, icmpv6.UNREACH_BEYOND_SCOPE): errno.EHOSTUNREACH,
    (icmpv6.DEST_UNREACH, icmpv6.UNREACH_ADDRESS): errno.EHOSTUNREACH,
    (icmpv6.DEST_UNREACH, icmpv6.UNREACH_PORT): errno.ECONNREFUSED,
    (icmpv6.DEST_UNREACH, icmpv6.UNREACH_POLICY): errno.EACCES,
    (icmpv6.DEST_UNREACH, icmpv6.UNREACH_REJECT_ROUTE): errno.EACCES,
    (icmpv6.PARAMETER_PROBLEM, 1): errno.ENOPROTOOPT,
}


class UdpEndpoint(Protocol):
    """What the host needs of a UDP socket (stack/sockets.py implements it)."""

    def deliver(self, data: bytes, source: tuple[str, int]) -> None: ...


class ConnOwner(Protocol):
    """Who hears about a connection's changes (a TcpSocket or a Listener)."""

    def connection_changed(self, conn: Connection) -> None: ...


@dataclass(eq=False, slots=True)
class ConnRecord:
    """What the host keeps per connection. It hangs on ``Connection.record``, which
    the connection itself never reads."""

    conn: Connection
    owner: Any = None  # who to tell of changes: a ConnOwner, a Listener, or None
    timer_at: float | None = None  # the deadline queued in the timer heap
    mem_charged: int = 0  # what the host-wide memory bound counts for it (memory.py)
    udp_port: int = PLAIN  # TCP over UDP: the remote encapsulation port (stack/tcp_over_udp.py)


@dataclass
class Listener:
    """A passive OPEN (RFC 9293 3.10.1) with a bounded backlog.

    Half-open connections (SYN-RECEIVED) wait in `syn_queue`, bounded by
    `syn_queue_limit`: when it is full the oldest half-open connection is dropped
    (RFC 4987 section 3.4, "recycling the oldest half-open TCB"), so a SYN flood
    cannot lock out legitimate clients. Established connections wait in
    `accept_queue` until accepted, at most `backlog` of them.
    """

    port: int
    backlog: int
    config: TcpConfig
    owner: Any = None
    syn_queue: OrderedDict[ConnKey, Connection] = field(default_factory=OrderedDict)
    accept_queue: deque[Connection] = field(default_factory=deque)
    syn_queue_limit: int = 1024
    fastopen_qlen: int = 0  # TCP_FASTOPEN: pending Fast Open connections allowed (RFC 7413 5.1)

    def connection_changed(self, conn: Connection) -> None:
        if self.owner is not None:
            self.owner.connection_changed(conn)


class Host:
    """One IPv4 address, and optionally one IPv6 address, on one link (dual-stack).

    IPv6 (docs/ipv6.md) runs through the sans-IO stages of stack/ip6input.py and
    stack/ip6output.py; TCP and UDP are the same code for both families, the family
    of a connection being that of its addresses.
    """

    def __init__(
        self,
        address: str,
        transmit: Callable[[list[bytes | memoryview]], None],
        *,
        mtu: int = 1500,
        offload: bool = False,
        cc: str = "newreno",
        events: EventLog | None = None,
        pcap: PcapWriter | None = None,
        tcp_defaults: TcpConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        tcp_memory: int = DEFAULT_TCP_MEMORY,
        address6: str | None = None,
    ) -> None:
        self.address = address
        self.address6 = (socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, address6))
                         if address6 else None)
        self._transmit = transmit
        self.mtu = mtu
        self.offload = offload
        self.events = events if events is not None and events.enabled else None
        self.pcap = pcap
        self.clock = clock
        self.tcp_defaults = tcp_defaults or TcpConfig()
        self.tcp_defaults.mss = mtu - 40
        self.tcp_defaults.cc = cc
        if offload:
            self.tcp_defaults.tso_max = MAX_TCP_SEGMENT
        self.stats: Counter[str] = Counter()
        self.fragments = FragmentReassembler()
        self.isn_secret = new_secret()
        self._ip_ident = random.randrange(0x10000)
        # TCP tables.
        self.conns: dict[ConnKey, Connection] = {}
        self.listeners: dict[int, Listener] = {}
        self.tcp_ports: Counter[int] = Counter()  # local ports in use (bound sockets)
        self.conn_ports: Counter[int] = Counter()  # local ports of connections (TIME-WAIT too)
        self.udp_ports: dict[int, UdpEndpoint] = {}
        # IPv6's tables: a dual-stack socket is in both families' (docs/ipv6.md).
        self.listeners6: dict[int, Listener] = {}
        self.tcp_ports6: Counter[int] = Counter()
        self.udp_ports6: dict[int, UdpEndpoint] = {}
        self.ip6_in: Ipv6Input | None = None
        self.ip6_out: Ipv6Output | None = None
        if self.address6 is not None:
            self.ip6_in = Ipv6Input([self.address6])
            self.ip6_out = Ipv6Output(self.address6, mtu)
        self.max_connections = 65536
        self.memory: TcpMemory[ConnRecord] = TcpMemory(tcp_memory)  # bound on buffered bytes
        self.defer_acks = False  # the driver batches reads and calls end_batch()
        # Timers: (deadline, tie-breaker, record); stale entries are skipped.
        self._timers: list[tuple[float, int, ConnRecord]] = []
        self._timer_seq = itertools.count()
        self.on_deadline_change: Callable[[float], None] | None = None
        self._deferred_acks: set[Connection] = set()
        self._drop_events = (
            EventBudget(self.events, DROP_EVENTS_PER_SECOND, DROP_EVENT_BURST)
            if self.events is not None else None
        )  # fmt: skip
        self._icmp_budget = 100.0
        self._icmp_budget_time = 0.0
        # TCP Fast Open (RFC 7413, stack/tcp/fastopen.py): net.ipv4.tcp_fastopen's bits,
        # the server's cookie key, the client's cookies per server.
        self.fastopen_mode = fastopen.FASTOPEN_DEFAULT
        self.fastopen_keys = fastopen.FastOpenKeys()
        self.fastopen_cookies = fastopen.CookieCache()
        # TCP over UDP (stack/tcp_over_udp.py, FreeBSD's udp_tunneling_port): off (0).
        self.tcp_over_udp = TcpOverUdp()

    def set_tcp_udp_port(self, port: int) -> None:
        """Turn TCP over UDP on at UDP ``port`` (0: off), in both families. As FreeBSD's
        sysctl, which binds a UDP socket to it: EADDRINUSE if a UDP socket has it."""
        if not 0 <= port <= 0xFFFF:
            raise OSError(errno.EINVAL, "not a UDP port")
        if port and (port in self.udp_ports or port in self.udp_ports6):
            raise OSError(errno.EADDRINUSE, f"UDP port {port} is in use")
        self.tcp_over_udp.port = port

    # ------------------------------------------------------------- utilities

    def count_drop(self, reason: str, conn: str | None = None) -> None:
        """Count a dropped packet; log it, at most DROP_EVENTS_PER_SECOND per reason.

        The counter is always exact. A flood of bad packets would otherwise grow the
        event log at line rate: past the budget, events of that reason are skipped and
        the next one logged says how many were (`suppressed`).
        """
        self.stats[f"drop_{reason}"] += 1
        if self._drop_events is not None:
            self._drop_events.emit(reason, self.clock(), "drop", conn, reason=reason)

    def _next_ident(self) -> int:
        # RFC 6864 section 4: IDs only matter for fragmentable datagrams; keep them unique.
        self._ip_ident = (self._ip_ident + 1) & 0xFFFF
        return self._ip_ident

    def send_ip(self, dst: str, proto: int, payload: bytes | memoryview) -> None:
        """Send one datagram (ICMP, UDP, TCP resets), in fragments if it exceeds the MTU.

        RFC 791 section 3.2 / RFC 1122 3.2.2.6: an echo reply is as large as the request,
        and a UDP datagram may be up to 64 KiB; both leave in MTU-sized fragments (DF
        clear), every fragment's data a multiple of 8 bytes but the last. An IPv6
        destination goes through the IPv6 output stage (fragments at the path MTU).
        """
        if ":" in dst:
            self._send_ip6(dst, proto, payload)
            return
        if len(payload) + 20 <= self.mtu:
            header = build_ipv4_header(self.address, dst, proto, len(payload), self._next_ident())
            self._emit_packet([header, payload], None)
            return
        ident = self._next_ident()
        step = (self.mtu - 20) // 8 * 8
        view = memoryview(payload)
        for offset in range(0, len(view), step):
            chunk = view[offset : offset + step]
            more = offset + step < len(view)
            header = build_ipv4_header(
                self.address, dst, proto, len(chunk), ident, df=False, mf=more, frag_offset=offset
            )
            self._emit_packet([header, chunk], None)
            self.stats["fragments_out"] += 1

    def _send_ip6(self, dst: str, proto: int, payload: bytes | memoryview) -> None:
        if self.ip6_out is None:
            raise OSError(errno.ENETUNREACH, "IPv6 is off (tcplab stack --address6 none)")
        packets = self.ip6_out.datagram(dst, proto, payload, self.clock())
        if len(packets) > 1:
            self.stats["fragments_out"] += len(packets)
        for packet in packets:
            self._emit_packet(packet, None)

    def _send_icmp6_error(self, err: Icmp6Error | None, now: float) -> None:
        if err is None or self.ip6_out is None:
            return
        packets = self.ip6_out.error(err, now)
        if not packets:
            self.count_drop("icmp_rate_limited")
            return
        self.stats[f"icmp6_out_type_{err.type}"] += 1
        for packet in packets:
            self._emit_packet(packet, None)

    def _emit_packet(self, parts: list[bytes | memoryview], vnet: VirtioNetHdr | None) -> None:
        self.stats["ip_out"] += 1
        if self.pcap is not None:
            self.pcap.write(None, parts)
        if self.offload:
            parts = [vnet.to_bytes() if vnet is not None else bytes(VNET_HDR_LEN), *parts]
        self._transmit(parts)

    # --------------------------------------------------------------- receive

    def receive_packet(self, raw: bytes | memoryview, now: float) -> None:
        """One packet as read from the TUN (with its vnet header when offloading)."""
        checksum_done = False
        view = memoryview(raw)
        if self.offload:
            if len(view) < VNET_HDR_LEN:
                self.count_drop("truncated_vnet_header")
                return
            vnet = parse_vnet_hdr(view[:VNET_HDR_LEN])
            # Locally made traffic carries only a partial checksum (NEEDS_CSUM), or one
            # the kernel already checked (DATA_VALID): nothing to verify.
            checksum_done = vnet.needs_csum or vnet.data_valid
            view = view[VNET_HDR_LEN:]
        if self.pcap is not None:
            self.pcap.write(None, [view])
        self.stats["ip_in"] += 1
        if view and view[0] >> 4 == 6 and self.ip6_in is not None:
            # IPv6, by its version nibble (a test IPv4 pays some 50 ns for).
            self._receive_ipv6(view, now, not checksum_done)
            return
        try:
            header, payload = parse_ipv4(view)
        except WireError as exc:
            self.count_drop(exc.reason)
            return
        # RFC 1122 3.2.1.3: silently discard datagrams not addressed to us.
        if header.dst != self.address:
            self.count_drop("not_for_us")
            return
        if header.ttl == 0:
            self.count_drop("ttl_zero")  # RFC 791 3.2: a datagram with TTL 0 must be destroyed
            return
        if header.is_fragment:
            key = (header.src, header.dst, header.proto, header.ident)
            frags = self.fragments
            if key not in frags.pending and len(frags.pending) >= MAX_FRAGMENT_DATAGRAMS:
                # The memory limit counts payload bytes only; each datagram under
                # reassembly also costs ~600 bytes of bookkeeping, so cap their number
                # too (8-byte fragments would otherwise hold ~300 MB within the limit).
                frags.discard(next(iter(frags.pending)))
                self.count_drop("fragment_datagrams_full")
            given_up = frags.dropped
            whole = frags.add(key, header.frag_offset, header.more_fragments, payload, now)
            self.stats["fragments_in"] += 1
            if frags.dropped > given_up:
                self.count_drop("fragments_given_up")  # malformed, timed out or over memory
            if whole is None:
                return
            self.stats["reassembled"] += 1
            payload = memoryview(whole)
        if header.proto == IPPROTO_TCP:
            # RFC 3168 section 5: the ECN field (TOS bits 0-1) travels beside the segment.
            self._receive_tcp(header.src, payload, now, not checksum_done, header.tos & 3)
        elif header.proto == IPPROTO_UDP:
            self._receive_udp(header.src, payload, now, not checksum_done, view, ecn=header.tos & 3)
        elif header.proto == IPPROTO_ICMP:
            self._receive_icmp(header.src, payload, now)
        else:
            # RFC 1122 3.2.2.1: protocol unreachable.
            self._send_unreachable(header.src, icmp.UNREACH_PROTO, view)
            self.count_drop("unknown_protocol")

    # ------------------------------------------------------------------ IPv6

    def _receive_ipv6(self, view: memoryview, now: float, verify: bool) -> None:
        """RFC 8200 input (stack/ip6input.py), then TCP, UDP or ICMPv6."""
        assert self.ip6_in is not None and self.address6 is not None
        self.stats["ip6_in"] += 1
        result = self.ip6_in.receive(view, now)
        if result is None:
            self.stats["fragments_in"] += 1  # kept for reassembly
            return
        if isinstance(result, Drop):
            self.count_drop(result.reason)
            self._send_icmp6_error(result.error, now)
            return
        src = result.header.src
        nh = result.next_header
        if nh == IPPROTO_TCP:
            self._receive_tcp(src, result.payload, now, verify, result.header.ecn,
                              local=self.address6)
        elif nh == IPPROTO_UDP:
            self._receive_udp(src, result.payload, now, verify, result.packet, self.address6,
                              result, ecn=result.header.ecn)
        else:
            self._receive_icmpv6(result, now, verify)

    def _receive_icmpv6(self, dgram: Datagram6, now: float, verify: bool) -> None:
        assert self.ip6_out is not None
        header = dgram.header
        try:
            msg = icmpv6.parse_icmpv6(dgram.payload, header.src, header.dst, verify_checksum=verify)
        except WireError as exc:
            self.count_drop(exc.reason)
            return
        self.stats[f"icmp6_in_type_{msg.type}"] += 1
        if msg.type == icmpv6.ECHO_REQUEST:
            # RFC 4443 section 4.2: the reply carries the request's identifier, sequence
            # number and data, from our unicast address (also to a multicast request).
            for packet in self.ip6_out.echo_reply(header.src, msg, now):
                self._emit_packet(packet, None)
        elif icmpv6.is_error(msg.type):
            # RFC 4443 section 2.4 (a), (d): errors go to the upper layer they are about.
            self._icmp6_error(msg, now)
        # section 2.4 (b): other informational messages (Neighbor Discovery, MLD,
        # router messages: nothing on a TUN needs them) are silently discarded.

    def _icmp6_error(self, msg: icmpv6.ICMPv6Message, now: float) -> None:
        """Hand an ICMPv6 error to the connection it is about (RFC 4443 2.4 (d))."""
        assert self.ip6_out is not None
        quoted = icmpv6.parse_quote(msg.payload)
        if quoted is None or quoted.src != self.address6:
            self.count_drop("icmp_bad_quote")
            return
        if msg.type == icmpv6.PACKET_TOO_BIG:
            # RFC 8201 section 4: lower the estimate for the destination, never below
            # 1280 and never up. What it says about a TCP connection is checked first
            # (below): a forged message could only lower it to 1280 anyway.
            reported = icmpv6.packet_too_big_mtu(msg)
        transport = quoted.transport
        udp_port = PLAIN
        if quoted.next_header == IPPROTO_UDP:
            # One of our TCP-over-UDP segments (stack/tcp_over_udp.py), or plain UDP.
            inner = self.tcp_over_udp.quoted(transport)
            if inner is not None:
                udp_port, transport = inner
        if (quoted.next_header != IPPROTO_TCP and udp_port == PLAIN) or len(transport) < 8:
            if msg.type == icmpv6.PACKET_TOO_BIG:
                self.ip6_out.pmtu.packet_too_big(quoted.dst, reported, now)
            return
        # RFC 8201 section 5.1 (as RFC 5927 for IPv4): only for data we have in flight.
        conn = self._quoted_connection(quoted.dst, transport, udp_port)
        if conn is None:
            return
        if msg.type == icmpv6.PACKET_TOO_BIG:
            mtu = self.ip6_out.pmtu.packet_too_big(quoted.dst, reported, now)
            if mtu is not None:
                if self.events is not None:
                    self.events.emit("pmtu", self._conn_id(conn.local[1], conn.remote, self.address6),
                                     mtu=mtu, reported=reported)
                # The MSS the path allows is MTU - 60 over IPv6 (RFC 8200 8.3), less the
                # UDP header of an encapsulated connection.
                conn.on_path_mtu(mtu, now, header_len=IPV6_TCP_HEADERS
                                 + self.tcp_over_udp.header_overhead(udp_port))
        else:
            err = _ICMP6_ERRNO.get((msg.type, msg.code), errno.EHOSTUNREACH)
            conn.on_icmp_unreachable(err, now)
        self.after(conn, now)

    # ------------------------------------------------------------------ ICMP

    def end_batch(self, now: float) -> None:
        """The packets of one read are in: send the ACKs they put off (`defer_acks`)."""
        if self._deferred_acks:
            pending, self._deferred_acks = self._deferred_acks, set()
            for conn in pending:
                conn.flush_deferred_ack(now)
                self.after(conn, now)

    def _icmp_allowed(self, now: float) -> bool:
        """Token bucket for ICMP errors (RFC 1812 4.3.2.8 asks for a rate limit)."""
        self._icmp_budget = min(100.0, self._icmp_budget + (now - self._icmp_budget_time) * 100)
        self._icmp_budget_time = now
        if self._icmp_budget < 1:
            return False
        self._icmp_budget -= 1
        return True

    def _send_unreachable(self, dst: str, code: int, original: memoryview) -> None:
        if not self._icmp_allowed(self.clock()):
            self.count_drop("icmp_rate_limited")
            return
        # RFC 792: the internet header plus the first 64 bits of the datagram's data
        # (RFC 1812 4.3.2.3 allows more; we send up to 548 bytes like Linux).
        quote = bytes(original[:548])
        self.send_ip(dst, IPPROTO_ICMP, icmp.build_icmp(icmp.DEST_UNREACH, code, bytes(4), quote))
        self.stats["icmp_unreachable_out"] += 1

    def _receive_icmp(self, src: str, payload: memoryview, now: float) -> None:
        try:
            msg = icmp.parse_icmp(payload)
        except WireError as exc:
            self.count_drop(exc.reason)
            return
        self.stats[f"icmp_in_type_{msg.type}"] += 1
        if msg.type == icmp.ECHO_REQUEST:
            # RFC 792: reverse the addresses, type 0, same identifier, sequence and data.
            reply = icmp.build_icmp(icmp.ECHO_REPLY, 0, bytes(msg.rest), msg.payload)
            self.send_ip(src, IPPROTO_ICMP, reply)
        elif msg.type == icmp.DEST_UNREACH:
            self._icmp_error(msg, now)

    def _icmp_error(self, msg: icmp.ICMPMessage, now: float) -> None:
        """Hand a destination-unreachable to the connection it is about (RFC 1122 4.2.3.9)."""
        quote = msg.payload
        # The quoted datagram is truncated, so read the few fields we need by hand.
        if len(quote) < 20 or quote[0] >> 4 != 4:
            self.count_drop("icmp_bad_quote")
            return
        ihl = (quote[0] & 0x0F) * 4
        inner_src = socket.inet_ntoa(bytes(quote[12:16]))
        inner_dst = socket.inet_ntoa(bytes(quote[16:20]))
        inner_proto = quote[9]
        inner_payload = quote[ihl:]
        if inner_src != self.address or len(inner_payload) < 8:
            return
        udp_port = PLAIN
        if inner_proto == IPPROTO_UDP:
            # One of our TCP-over-UDP segments (stack/tcp_over_udp.py), or plain UDP.
            inner = self.tcp_over_udp.quoted(inner_payload)
            if inner is None:
                return
            udp_port, inner_payload = inner
        elif inner_proto != IPPROTO_TCP:
            return
        conn = self._quoted_connection(inner_dst, inner_payload, udp_port)
        if conn is None:
            return
        if msg.code == icmp.UNREACH_FRAG_NEEDED:
            conn.on_path_mtu(icmp.next_hop_mtu(msg) or 576, now,
                             header_len=40 + self.tcp_over_udp.header_overhead(udp_port))
        else:
            err = {
                icmp.UNREACH_NET: errno.ENETUNREACH,
                icmp.UNREACH_HOST: errno.EHOSTUNREACH,
                icmp.UNREACH_PROTO: errno.ENOPROTOOPT,
                icmp.UNREACH_PORT: errno.ECONNREFUSED,
            }.get(msg.code, errno.EHOSTUNREACH)
            conn.on_icmp_unreachable(err, now)
        self.after(conn, now)

    def _quoted_connection(self, remote: str, tcp: bytes | memoryview,
                           udp_port: int = PLAIN) -> Connection | None:
        """The connection a quoted TCP header (8 octets at least) belongs to, if it
        quotes data we have in flight: RFC 5927 section 4.1, believe an ICMP error only
        then (a blind attacker would have to guess the sequence number). The quote's
        encapsulation (``udp_port``, PLAIN for a TCP quote) must be the connection's
        (FreeBSD's tcp_ctlinput_with_port, stack/tcp_over_udp.py)."""
        sport = int.from_bytes(tcp[0:2], "big")
        dport = int.from_bytes(tcp[2:4], "big")
        seq = int.from_bytes(tcp[4:8], "big")
        conn = self.conns.get((sport, remote, dport))
        if conn is None:
            return None
        if not same_path(conn.record.udp_port, udp_port):
            self.count_drop("icmp_udp_port_mismatch")
            return None
        if not conn.in_flight(seq):
            self.count_drop("icmp_out_of_window")
            return None
        return conn

    # ------------------------------------------------------------------- UDP

    def _receive_udp(
        self, src: str, payload: memoryview, now: float, verify: bool, packet: memoryview,
        local: str | None = None, dgram6: Datagram6 | None = None, ecn: int = 0,
    ) -> None:
        try:
            dgram = parse_udp(payload, src, local or self.address, verify_checksum=verify)
        except WireError as exc:
            self.count_drop(exc.reason)
            return
        if self.tcp_over_udp.carries_tcp(dgram.dst_port):
            # TCP over UDP (stack/tcp_over_udp.py): the datagram is a TCP segment from
            # the peer's remote encapsulation port; the UDP checksum was checked above.
            try:
                udp_port, verify_tcp = self.tcp_over_udp.decapsulate(dgram)
            except WireError as exc:
                self.count_drop(exc.reason)
                return
            self.stats["tcp_udp_in"] += 1
            self._receive_tcp(src, memoryview(dgram.payload), now, verify and verify_tcp, ecn, local,
                              udp_port=udp_port)
            return
        ports = self.udp_ports if dgram6 is None else self.udp_ports6
        endpoint = ports.get(dgram.dst_port)
        if endpoint is None:
            # RFC 1122 4.1.3.1 (RFC 4443 3.1 code 4 for IPv6): port unreachable when
            # no one listens.
            if dgram6 is None:
                self._send_unreachable(src, icmp.UNREACH_PORT, packet)
            else:
                self._send_icmp6_error(error_for(packet, dgram6.header, icmpv6.DEST_UNREACH,
                                                 icmpv6.UNREACH_PORT, bytes(4)), now)
            self.stats["udp_no_port"] += 1
            return
        self.stats["udp_in"] += 1
        endpoint.deliver(bytes(dgram.payload), (src, dgram.src_port))

    def send_udp(self, sport: int, dst: tuple[str, int], data: bytes) -> None:
        self.stats["udp_out"] += 1
        local = self.local_address(dst[0])
        self.send_ip(dst[0], IPPROTO_UDP, build_udp(local, dst[0], sport, dst[1], data))

    def local_address(self, remote: str) -> str:
        """Our address of ``remote``'s family (ENETUNREACH for IPv6 with IPv6 off)."""
        if ":" not in remote:
            return self.address
        if self.address6 is None:
            raise OSError(errno.ENETUNREACH, "IPv6 is off (tcplab stack --address6 none)")
        return self.address6

    # ------------------------------------------------------------------- TCP

    def _conn_id(self, local_port: int, remote: tuple[str, int], local: str | None = None) -> str:
        """``10.0.0.2:80-10.1.0.2:40000``; IPv6 addresses in brackets (RFC 3986 3.2.2)."""
        if ":" in remote[0]:
            return f"[{local or self.address6}]:{local_port}-[{remote[0]}]:{remote[1]}"
        return f"{local or self.address}:{local_port}-{remote[0]}:{remote[1]}"

    def _event_sink(self, local_port: int, remote: tuple[str, int]) -> Any:
        events = self.events
        if events is None:
            return None
        conn_id = self._conn_id(local_port, remote)

        def sink(kind: str, fields: dict[str, object]) -> None:
            events.emit(kind, conn_id, **fields)

        return sink

    def new_config(self) -> TcpConfig:
        return replace(self.tcp_defaults)

    def _receive_tcp(self, src: str, payload: memoryview, now: float, verify: bool,
                     ecn: int = 0, local: str | None = None, udp_port: int = PLAIN) -> None:
        """A TCP segment (``udp_port``: PLAIN, or the remote encapsulation port of one
        that came in UDP, stack/tcp_over_udp.py)."""
        try:
            seg = parse_tcp(payload, src, local or self.address, verify_checksum=verify)
        except WireError as exc:
            self.count_drop(exc.reason)
            return
        seg.ecn = ecn
        self.stats["tcp_in"] += 1
        key = (seg.dst_port, src, seg.src_port)
        conn = self.conns.get(key)
        if seg.flags & SYN and seg.flags & FIN and self.tcp_defaults.drop_synfin:
            # FreeBSD's drop_synfin (TcpConfig.drop_synfin, off by default): a SYN+FIN
            # that would open a connection (to a listener, in SYN-SENT, or reopening a
            # TIME-WAIT pair) is a scanner's probe, dropped silently. Otherwise, in a
            # synchronized state, it is a SYN like any other (RFC 5961 4.2).
            listening = seg.dst_port in self.listeners
            if (conn is None and listening) or (conn is not None and (
                    conn.state == State.SYN_SENT
                    or (listening and not seg.flags & ACK and conn.reopens_time_wait(seg)))):
                self.count_drop("syn_fin")
                return
        if conn is not None:
            if conn.state == State.TIME_WAIT and seg.flags & SYN and not seg.flags & ACK:
                # RFC 9293 3.6.1 / RFC 6191: a new SYN may reopen a TIME-WAIT pair when
                # its sequence number is beyond what the old connection used.
                if conn.reopens_time_wait(seg) and seg.dst_port in self.listeners:
                    conn.terminate(0)
                    self._forget(conn)
                    conn = None
            if conn is not None and not same_path(conn.record.udp_port, udp_port):
                # FreeBSD's tcp_input: a segment for the connection that came another
                # way (plain, encapsulated, another UDP port) is answered as one for no
                # connection, the reset going back its way (stack/tcp_over_udp.py).
                self.count_drop("tcp_udp_port_mismatch")
                self._reset_for(src, seg, udp_port, like=conn)
                return
            if conn is not None:
                if self.memory.pressure:
                    self._receive_under_pressure(conn, seg, now)
                else:
                    conn.on_segment(seg, now)
                if conn.ack_deferred:
                    self._deferred_acks.add(conn)
                self.after(conn, now)
                return
        listener = (self.listeners if local is None else self.listeners6).get(seg.dst_port)
        if listener is not None and seg.flags & (SYN | ACK | RST) == SYN:
            self._passive_open(listener, src, seg, now, udp_port)
            return
        if listener is not None and not seg.flags & ACK:
            # RFC 9293 3.10.7.2 (LISTEN): an RST is ignored ("first"); only a segment
            # with ACK draws a reset ("second"); one with neither SYN nor ACK (a FIN,
            # data) is dropped ("fourth"; issue 17 defect 6: it drew a reset).
            if not seg.flags & RST:
                self.count_drop("listen_no_syn_no_ack")
            return
        self.stats["tcp_no_connection"] += 1
        self._reset_for(src, seg, udp_port)

    def _receive_under_pressure(self, conn: Connection, seg: TCPSegment, now: float) -> None:
        """The host holds its limit of TCP memory (stack/tcp/memory.py): a connection that
        holds its minimum already takes no data now; what it drops is counted."""
        if conn.record.mem_charged < self.memory.min_per_conn:
            conn.on_segment(seg, now)
        elif conn.on_segment_refusing_data(seg, now):
            self.count_drop("tcp_memory", self._conn_id(conn.local[1], conn.remote))

    def _memory_flipped(self) -> None:
        """Pressure began or ended: log it; at the end, wake the refused writers."""
        memory = self.memory
        waiting = memory.flip()
        if self.events is not None:
            self.events.emit("memory", None, state="pressure" if memory.pressure else "normal",
                             used=memory.used, limit=memory.limit, peak=memory.peak)
        for rec in waiting:
            if rec.owner is not None:
                rec.owner.connection_changed(rec.conn)

    def _reset_for(self, src: str, seg: TCPSegment, udp_port: int = PLAIN,
                   like: Connection | None = None) -> None:
        """RFC 9293 3.10.7.1: a segment for no connection gets a reset (unless RST),
        sent back the way the segment came (``udp_port``: stack/tcp_over_udp.py); one
        answering a segment that came the wrong way for connection ``like`` has its
        IP_TOS/IP_TTL (as FreeBSD, whose reset comes from the socket it found)."""
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            seq, ack, flags = seg.ack, 0, RST
        else:
            seq, ack, flags = 0, (seg.seq + seg.seg_len) & 0xFFFFFFFF, RST | ACK
        rst = TCPSegment(
            src_port=seg.dst_port, dst_port=seg.src_port, seq=seq, ack=ack, flags=flags,
            window=0, urgent=0, options=TCPOptions(), payload=b"",
        )  # fmt: skip
        if like is not None:
            like.ip_fields(rst)
        self._send_segment(src, rst, 0, udp_port)
        self.stats["tcp_rst_out"] += 1

    def _passive_open(self, listener: Listener, src: str, syn: TCPSegment, now: float,
                      udp_port: int = PLAIN) -> None:
        if len(listener.accept_queue) >= listener.backlog:
            self.count_drop("accept_queue_full")  # like Linux: drop the SYN, the peer retries
            return
        if len(self.conns) >= self.max_connections:
            self.count_drop("connection_limit")
            return
        if len(listener.syn_queue) >= listener.syn_queue_limit:
            old_key, old = listener.syn_queue.popitem(last=False)
            old.terminate(0)
            self._forget(old)
            self.count_drop("syn_queue_full_dropped_oldest")
        local = (self.local_address(src), syn.dst_port)
        remote = (src, syn.src_port)
        iss = initial_sequence_number(self.isn_secret, now, local, remote)
        decision = self._fastopen_decision(listener, src, syn)
        conn = Connection.from_syn(
            local, remote, syn, iss, self._family_config(listener.config, src, udp_port), now,
            ts_offset=random.getrandbits(32), on_event=self._event_sink(syn.dst_port, remote),
            defer_acks=self.defer_acks, fastopen=decision,
        )  # fmt: skip
        conn.record = ConnRecord(conn, listener, udp_port=udp_port)
        key = (syn.dst_port, src, syn.src_port)
        self.conns[key] = conn
        self.conn_ports[syn.dst_port] += 1
        listener.syn_queue[key] = conn
        self.after(conn, now)

    def _fastopen_decision(self, listener: Listener, src: str,
                           syn: TCPSegment) -> fastopen.SynDecision | None:
        """RFC 7413 4.2.1: the listener's answer to a SYN's cookie and data."""
        cookie = syn.options.fastopen
        if cookie is None and not syn.payload:
            return None
        pending = 0
        if syn.payload:  # RFC 7413 5.1: bound the Fast Open connections not yet done
            pending = sum(1 for c in listener.syn_queue.values() if c.rcv.bytes_received)
        decision = fastopen.decide(
            self.fastopen_mode, listener.fastopen_qlen, pending, self.fastopen_keys, src,
            cookie, syn.options.fastopen_exp, bool(syn.payload))
        if self.events is not None:
            self.events.emit("fastopen", self._conn_id(syn.dst_port, (src, syn.src_port)),
                             event="syn", reason=decision.reason, data=len(syn.payload),
                             accepted=decision.accept_data)
        return decision

    def connect(
        self, local_port: int, remote: tuple[str, int], config: TcpConfig, owner: ConnOwner,
        now: float, *, fastopen_data: bytes | None = None, udp_port: int = PLAIN,
    ) -> Connection:
        """Active open. `fastopen_data` (MSG_FASTOPEN, TCP_FASTOPEN_CONNECT) asks for Fast
        Open (RFC 7413): the SYN carries the cached cookie and the data, or a cookie
        request, when the Fast Open mode's client bit is set. `udp_port`
        (TCP_REMOTE_UDP_ENCAPS_PORT): the connection is TCP over UDP to that port."""
        key = (local_port, remote[0], remote[1])
        if key in self.conns:
            raise OSError(errno.EADDRINUSE, "address already in use")
        if len(self.conns) >= self.max_connections:
            self.count_drop("connection_limit")  # active opens count against the same bound
            raise OSError(errno.EAGAIN, "too many connections")
        local = (self.local_address(remote[0]), local_port)
        iss = initial_sequence_number(self.isn_secret, now, local, remote)
        conn = Connection(
            local, remote, iss, self._family_config(config, remote[0], udp_port), now,
            ts_offset=random.getrandbits(32), on_event=self._event_sink(local_port, remote),
            defer_acks=self.defer_acks,
        )  # fmt: skip
        conn.record = ConnRecord(conn, owner, udp_port=udp_port)
        self.conns[key] = conn
        self.conn_ports[local_port] += 1
        attempt = None
        if (fastopen_data is not None and self.fastopen_mode & fastopen.FASTOPEN_CLIENT
                and not self.fastopen_cookies.negative(remote[0], now)):  # RFC 7413 4.1.3.1
            # RFC 7413 4.2.2: MSG_FASTOPEN / TCP_FASTOPEN_CONNECT with the client bit set.
            attempt = fastopen.FastOpenAttempt(remote[0], self.fastopen_cookies, self.fastopen_mode)
        conn.connect(now, attempt, fastopen_data or b"")
        self.after(conn, now)
        return conn

    def _family_config(self, config: TcpConfig, remote: str, udp_port: int = PLAIN) -> TcpConfig:
        """A connection's own config; over IPv6 the MSS we offer is the link MTU less
        60 octets, IPv6's 40-octet header and TCP's 20 (RFC 8200 section 8.3), and the
        one we assume of a peer that offers none is 1220. TCP over UDP (``udp_port``)
        takes the UDP header off the link's MSS too, and segments are never longer than
        the MSS (no segmentation offload for UDP-encapsulated TCP)."""
        config = replace(config)
        link_mss = self.mtu - 40
        if ":" in remote:
            link_mss = tcp_mss_for_mtu(self.mtu)
            config.mss = min(config.mss, link_mss)
            # RFC 9293 3.7.1: without an MSS option, 1220 over IPv6 (1280 - 60).
            config.default_peer_mss = tcp_mss_for_mtu(IPV6_MIN_MTU)
        if udp_port != PLAIN:
            config.mss = min(config.mss, self.tcp_over_udp.mss(link_mss, udp_port))
            config.tso_max = 0
        return config

    def _send_segment(self, dst: str, seg: TCPSegment, mss: int, udp_port: int = PLAIN) -> None:
        if udp_port != PLAIN:
            self._send_encapsulated(dst, seg, udp_port)
            return
        if ":" in dst:
            assert self.ip6_out is not None
            flow = self.ip6_out.flow(dst, IPPROTO_TCP, seg.src_port, seg.dst_port)
            parts, vnet6 = self.ip6_out.tcp_segment(dst, seg, mss, offload=self.offload, flow=flow)
            self.stats["tcp_out"] += 1
            self._emit_packet(parts, vnet6)
            return
        payload = seg.payload
        if self.offload:
            tcp_header = build_tcp_header(seg, self.address, dst, checksum="partial")
            vnet = VirtioNetHdr(
                flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start=20, csum_offset=TCP_CSUM_OFFSET
            )
            if mss and len(payload) > mss:
                # Segmentation offload: the kernel cuts this into `mss`-byte segments
                # (a CWR only on the first: GSO_ECN, RFC 3168 6.1.2).
                vnet.gso_type = VIRTIO_NET_HDR_GSO_TCPV4 | (
                    VIRTIO_NET_HDR_GSO_ECN if seg.flags & CWR else 0)
                vnet.gso_size = mss
                vnet.hdr_len = 20 + len(tcp_header)
        else:
            tcp_header = build_tcp_header(seg, self.address, dst, checksum="full")
            vnet = None
        ip_header = build_ipv4_header(
            self.address, dst, IPPROTO_TCP, len(tcp_header) + len(payload), self._next_ident(),
            # RFC 3168 section 5: ECT(0) on the data stack/tcp/ecn.py marks, beside the
            # DSCP of IP_TOS; IP_TTL's TTL (RFC 791 3.1), 0 for the default.
            ttl=seg.ttl or DEFAULT_TTL, tos=seg.dscp | seg.ecn,
        )
        self.stats["tcp_out"] += 1
        if payload:
            self._emit_packet([ip_header, tcp_header, payload], vnet)
        else:
            self._emit_packet([ip_header, tcp_header], vnet)

    def _send_encapsulated(self, dst: str, seg: TCPSegment, udp_port: int) -> None:
        """A segment of a TCP-over-UDP connection (stack/tcp_over_udp.py): in a UDP
        datagram from the tunneling port to ``udp_port``, the TCP checksum zero and the
        UDP one over it all (as FreeBSD); ECN in the outer IP header (RFC 3168 5)."""
        tunnel = self.tcp_over_udp
        if not tunnel.enabled:
            self.count_drop("tcp_udp_tunnel_off")  # the tunnel was turned off meanwhile
            return
        local = self.local_address(dst)
        tcp_header = build_tcp_header(seg, local, dst, checksum="none")
        udp = tunnel.encapsulate(local, dst, udp_port, [tcp_header, seg.payload] if seg.payload else [tcp_header])
        if ":" in dst:
            assert self.ip6_out is not None
            flow = self.ip6_out.flow(dst, IPPROTO_UDP, tunnel.port, udp_port)
            ip = build_ipv6_header(local, dst, IPPROTO_UDP, len(udp), seg.ttl or self.ip6_out.hop_limit,
                                   traffic_class=seg.dscp | seg.ecn, flow_label=flow)
        else:
            ip = build_ipv4_header(local, dst, IPPROTO_UDP, len(udp), self._next_ident(),
                                   ttl=seg.ttl or DEFAULT_TTL, tos=seg.dscp | seg.ecn)
        self.stats["tcp_out"] += 1
        self.stats["tcp_udp_out"] += 1
        self._emit_packet([ip, udp], None)

    def encapsulation_port(self, conn: Connection) -> int:
        """The remote UDP port of a TCP-over-UDP connection, 0 for plain TCP
        (TCP_REMOTE_UDP_ENCAPS_PORT's value on a connected socket)."""
        return int(conn.record.udp_port)

    def after(self, conn: Connection, now: float) -> None:
        """Flush a connection's output, reschedule its timer, tell its owner."""
        output = conn.take_output()
        rec: ConnRecord = conn.record
        if output:
            mss = conn.snd_mss
            dst = conn.remote[0]
            for seg in output:
                self._send_segment(dst, seg, mss, rec.udp_port)
        deadline = conn.timers.earliest()
        if deadline is not None and (rec.timer_at is None or deadline < rec.timer_at):
            rec.timer_at = deadline
            heapq.heappush(self._timers, (deadline, next(self._timer_seq), rec))
            if self.on_deadline_change is not None and self._timers[0][0] == deadline:
                self.on_deadline_change(deadline)
        held = held_by(conn)
        if held != rec.mem_charged and self.memory.charge(rec, held):
            self._memory_flipped()
        owner = rec.owner
        if isinstance(owner, Listener):
            self._listener_update(owner, conn)
        if conn.state == State.CLOSED:
            self._forget(conn)
        if owner is not None:
            owner.connection_changed(conn)

    def _listener_update(self, listener: Listener, conn: Connection) -> None:
        key = (conn.local[1], conn.remote[0], conn.remote[1])
        if conn.state == State.SYN_RECEIVED:
            return
        if listener.syn_queue.pop(key, None) is not None and conn.state != State.CLOSED:
            if len(listener.accept_queue) >= listener.backlog:
                conn.abort(self.clock())
                self.count_drop("accept_queue_full")
                output = conn.take_output()
                for seg in output:
                    self._send_segment(conn.remote[0], seg, conn.snd_mss, conn.record.udp_port)
                self._forget(conn)
                return
            listener.accept_queue.append(conn)
            conn.record.owner = None  # until accepted; the listener owner is told below

    def _forget(self, conn: Connection) -> None:
        key = (conn.local[1], conn.remote[0], conn.remote[1])
        if self.conns.get(key) is conn:
            del self.conns[key]
            self.conn_ports[key[0]] -= 1
            if self.conn_ports[key[0]] <= 0:
                del self.conn_ports[key[0]]
        rec: ConnRecord = conn.record
        if rec.mem_charged and self.memory.release(rec):
            self._memory_flipped()
        owner = rec.owner
        if isinstance(owner, Listener):
            owner.syn_queue.pop(key, None)
            try:
                owner.accept_queue.remove(conn)
            except ValueError:
                pass

    # ------------------------------------------------- what the host keeps

    def owner_of(self, conn: Connection) -> Any:
        """Who is told of `conn`'s changes: its socket, its listener, or None (orphan)."""
        return conn.record.owner

    def set_owner(self, conn: Connection, owner: ConnOwner | None) -> None:
        conn.record.owner = owner

    def memory_charged(self, conn: Connection) -> int:
        """The bytes the host-wide memory bound counts for `conn`."""
        return int(conn.record.mem_charged)

    def refuses_memory(self, conn: Connection) -> bool:
        """Whether `conn` may buffer no more data now (stack/tcp/memory.py `refuses`)."""
        return self.memory.refuses(conn.record)

    # ---------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def run_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, _, rec = heapq.heappop(timers)
            if rec.timer_at != deadline:
                continue  # superseded by an earlier deadline
            rec.timer_at = None
            conn = rec.conn
            if conn.state == State.CLOSED:
                continue
            conn.on_timer(now)
            self.after(conn, now)
        self.fragments.expire(now)
        if self.ip6_in is not None and self.ip6_in.fragments.pending:
            for err in self.ip6_in.expire(now):
                self._send_icmp6_error(err, now)

    # ------------------------------------------------------------ port tables

    def allocate_port(self, udp: bool = False) -> int:
        """A free ephemeral port from a random start, free in both families' tables.
        For TCP, first one that no connection holds either (one in TIME-WAIT outlives
        its socket), as Linux's inet_csk_find_open_port prefers: a program that binds
        to port 0 and then connects to a peer it just talked to would otherwise meet its
        own TIME-WAIT (EADDRINUSE). A port only such a connection holds is the fallback."""
        used: Any = self.udp_ports if udp else self.tcp_ports
        used6: Any = self.udp_ports6 if udp else self.tcp_ports6
        span = len(EPHEMERAL_PORTS)
        start = random.randrange(span)
        fallback = None
        for i in range(span):
            port = EPHEMERAL_PORTS[(start + i) % span]
            if ((port not in used or (not udp and used[port] == 0))
                    and (port not in used6 or (not udp and used6[port] == 0))):
                if udp and port == self.tcp_over_udp.port:
                    continue  # the TCP-over-UDP tunneling port is the host's own
                if udp or port not in self.conn_ports:
                    return port
                if fallback is None:
                    fallback = port
        if fallback is not None:
            return fallback
        raise OSError(errno.EADDRNOTAVAIL, "no free ephemeral port")

    def abort_all(self) -> None:
        """On shutdown: reset every open connection (RFC 9293 3.10.5 ABORT)."""
        now = self.clock()
        for conn in list(self.conns.values()):
            conn.abort(now)
            self.after(conn, now)
