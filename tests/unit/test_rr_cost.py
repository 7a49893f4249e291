"""What one 1-byte request/response exchange costs the stack (issue 16, speed).

Sans-IO: a `Host` with the built-in echo service (stack/services/inline.py), as the
daemon runs it, fed 1-byte requests by a scripted peer that echoes our TSval and
acknowledges each reply with its next request, 200 us apart (a sub-millisecond path
like `tcplab bench`'s). Wall time is too noisy to guard; what each exchange *does* is
not: the segments it sends, the timer work it causes, the RACK records it walks and
the Python calls it makes. The request/response rate fell from about 5,150 to 3,800
per s when RACK (RFC 8985) landed: every ACK of a lone segment split, walked and
sorted records that had nothing to find (docs/performance.md, issue 16). These tests
fail if such work comes back.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from stack.host import Host
from stack.services import inline
from stack.sockets import SocketLayer
from stack.wire.ipv4 import IPPROTO_TCP, build_ipv4_header
from stack.wire.tcp import ACK, PSH, SYN, TCPOptions, TCPSegment, build_tcp, parse_tcp

PEER, STACK = "10.1.0.2", "10.0.0.2"
MASK = 0xFFFFFFFF
RTT = 0.0002
STACK_DIR = str(Path(__file__).resolve().parents[2] / "stack")
# Python function calls into stack/ per exchange (builtins not counted): 138 before
# RACK-TLP (f92d5bc), 175 with it (5449880), 179 on f983e09 (receiver MSS estimate,
# TCP-over-UDP path check), 168 there with Rack's fast path for an ACK of everything
# outstanding (issue 16). Without the fast path this fails.
CALL_BUDGET = 172


class Exchange:
    """A connection to echo (port 7) and a peer that sends 1-byte requests."""

    def __init__(self) -> None:
        self.now = 0.0
        self.out: list[bytes] = []
        self.deadline_changes = 0
        self.profiler: Callable[[FrameType, str, object], None] | None = None
        self.host = Host(STACK, lambda parts: self.out.append(b"".join(parts)), clock=lambda: self.now)
        self.host.defer_acks = True  # as the daemon: ACKs owed are sent after each read batch
        self.host.on_deadline_change = self._deadline_changed
        inline.serve(SocketLayer(self.host), 7, inline.Echo)
        opts = TCPOptions(mss=1460, wscale=7, sack_permitted=True, timestamp=(1, 0))
        self._feed(TCPSegment(40000, 7, 1000, 0, SYN, 65535, options=opts))
        synack = self.replies()[0]
        self.seq, self.ack = 1001, (synack.seq + 1) & MASK
        self.ts = 2
        self.echo = self._tsval(synack)
        self.now += RTT
        self._feed(TCPSegment(40000, 7, self.seq, self.ack, ACK, 1024,
                              options=TCPOptions(timestamp=(self.ts, self.echo))))
        assert not self.replies()
        (self.conn,) = self.host.conns.values()

    def _deadline_changed(self, at: float) -> None:
        self.deadline_changes += 1

    @staticmethod
    def _tsval(seg: TCPSegment) -> int:
        assert seg.options.timestamp is not None
        return seg.options.timestamp[0]

    def _feed(self, seg: TCPSegment) -> None:
        tcp = build_tcp(seg, PEER, STACK)
        packet = build_ipv4_header(PEER, STACK, IPPROTO_TCP, len(tcp), 1) + tcp
        if self.profiler is not None:
            sys.setprofile(self.profiler)  # the stack's work only, not the peer's
        try:
            self.host.receive_packet(packet, self.now)
            self.host.end_batch(self.now)  # one read batch per request, as the daemon's loop
            self.host.run_timers(self.now)
        finally:
            sys.setprofile(None)

    def replies(self) -> list[TCPSegment]:
        got = [parse_tcp(raw[20:], STACK, PEER) for raw in self.out]
        self.out.clear()
        return got

    def round_trip(self) -> list[TCPSegment]:
        """One request (acknowledging the previous reply); what the stack sent back."""
        self.now += RTT
        self.ts += 1
        self._feed(TCPSegment(40000, 7, self.seq, self.ack, ACK | PSH, 1024,
                              options=TCPOptions(timestamp=(self.ts, self.echo)), payload=b"x"))
        self.seq += 1
        got = self.replies()
        for seg in got:
            self.ack = (seg.seq + len(seg.payload)) & MASK
            self.echo = self._tsval(seg)
        return got


def warmed_up(n: int = 50) -> Exchange:
    ex = Exchange()
    for _ in range(n):
        ex.round_trip()
    return ex


def test_each_request_gets_one_segment_back_and_no_pure_ack() -> None:
    """The echo and the ACK of the request leave in one segment (RFC 1122 4.2.3.2: the
    ACK rides on the reply sent in the same batch); no window update, no loss probe,
    nothing else per exchange."""
    ex = warmed_up()
    for _ in range(200):
        got = ex.round_trip()
        assert [(len(s.payload), s.flags & ~PSH) for s in got] == [(1, ACK)]


def test_an_exchange_arms_no_host_timer() -> None:
    """The request arms the delayed ACK and the reply cancels it (RFC 1122 4.2.3.2);
    the reply arms the RTO and the PTO (RFC 6298 5.1, RFC 8985 7.2), its ACK stops
    them (RFC 6298 5.2); no reordering timer (RFC 8985 6.3: nothing to wait for).
    The host's heap keeps a stale deadline until it comes due, so the driver's
    wake-up moves about once per delayed-ACK period (40 ms), not per exchange."""
    ex = warmed_up()
    before = ex.deadline_changes
    n = 1000
    for _ in range(n):
        ex.round_trip()
        assert ex.conn.timers.rack is None
    assert ex.deadline_changes - before <= 1 + n * RTT / 0.04


def test_an_ack_of_everything_walks_no_rack_record() -> None:
    """RFC 8985 6.2 step 5 with nothing outstanding has no segment that could be lost:
    the ACK of the whole flight (each request acknowledges the last reply) drops the
    flight's records without walking them, and keeps none."""
    ex = warmed_up()
    rack = ex.conn.recovery.rack
    walked = rack.walked
    for _ in range(200):
        ex.round_trip()
        assert rack.in_flight == 1  # the reply just sent
    assert rack.walked == walked
    assert len(rack.segs) == 1 and rack.outstanding == 1


def test_python_calls_per_exchange_stay_within_budget() -> None:
    """A deterministic stand-in for the CPU an exchange costs: the Python function
    calls into stack/ per round trip (the daemon's instructions follow them: 370k per
    round trip before RACK, 434k with it, docs/performance.md). A new step on this
    path may raise CALL_BUDGET, knowingly."""
    ex = warmed_up()
    calls = 0

    def count(frame: FrameType, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call" and frame.f_code.co_filename.startswith(STACK_DIR):
            calls += 1

    n = 100
    ex.profiler = count
    for _ in range(n):
        ex.round_trip()
    assert calls / n <= CALL_BUDGET, f"{calls / n:.1f} calls into stack/ per exchange"
