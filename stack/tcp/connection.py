"""The TCP connection: RFC 9293's state machine and the glue between its parts, sans-IO.

A `Connection` never reads a clock or touches a socket. The driver (stack/host.py)
feeds it

* segments that arrived:        ``on_segment(seg, now)``
* timer expiries:               ``on_timer(now)`` once ``now >= next_deadline()``
* user calls:                   ``send``, ``recv``, ``shutdown_write``, ``close``, ``abort``

and after each call takes the segments to transmit with ``take_output()`` and asks
``next_deadline()`` for the time it must be woken up next.

Owns: the state (every change checked against stack/tcp/states.py), segment arrival
processing in the order of RFC 9293 3.10.7.4 (with RFC 5961's challenge ACKs, PAWS of
RFC 7323 5.3), the building of every segment (ACK field, window, options), closing and
TIME-WAIT (RFC 9293 3.6), the timer dispatch. It composes the parts, each the owner of
its RFC rules:

=======================  ============================================================
``snd`` (sender.py)      send sequence space and buffer; windows, Nagle, SWS, probes
``rcv`` (receiver.py)    receive sequence space, reassembly, the ACK owed, the window
``opts`` (options.py)    MSS, window scale, timestamps, SACK-permitted; option fields
``recovery``             RTT, RTO, RACK-TLP, PRR, D-SACK, NewReno/SACK, undo (recovery.py)
``timers`` (timers.py)   every deadline of this connection
``cc``                   congestion control (stack/tcp/congestion/), told events only
``ecn`` (ecn.py)         RFC 3168: negotiation, ECE echo, CWR, the reduction per RTT
``handshake``            opening, SYN-SENT, simultaneous open, Fast Open (handshake.py)
``keepalive``            RFC 1122 4.2.3.6 idle timer and probes (keepalive.py)
fastpath.py              header prediction, tried first in ESTABLISHED (`predicted`)
=======================  ============================================================

Sequence numbers are *unwrapped*: plain Python ints that keep growing past 2**32.
They are wrapped (``& 0xFFFFFFFF``) only on the way out and unwrapped relative to
SND.UNA / RCV.NXT on the way in (see ``unwrap``). That keeps the comparisons readable
(``a < b`` instead of modular helpers); the modular arithmetic lives in
stack/tcp/seq.py and is used exactly at that boundary.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable
from typing import Any

from stack.tcp.config import TcpConfig
from stack.tcp.congestion import events as cc_events
from stack.tcp.ecn import Ecn
from stack.tcp.fastopen import FastOpenAttempt, SynDecision
from stack.tcp.fastpath import predicted
from stack.tcp.handshake import Handshake
from stack.tcp.keepalive import Keepalive
from stack.tcp.options import Options, pick_rcv_wscale
from stack.tcp.receiver import Receiver
from stack.tcp.recovery import Recovery
from stack.tcp.sender import Sender
from stack.tcp.seq import seq_diff
from stack.tcp.states import (
    CAN_RECEIVE,
    CAN_SEND,
    RESET_ON_ABORT,
    SYNCHRONIZED,
    State,
    check_transition,
)
from stack.tcp.timers import Timers
from stack.wire.tcp import ACK, FIN, PSH, RST, SYN, TCPOptions, TCPSegment

__all__ = ["Connection", "State", "TcpConfig"]

MASK32 = 0xFFFFFFFF

EventSink = Callable[[str, dict[str, object]], None]


class Connection:
    """One TCP connection (a TCB, RFC 9293 section 3.3.1) and its state machine."""

    def __init__(
        self,
        local: tuple[str, int],
        remote: tuple[str, int],
        iss: int,
        config: TcpConfig,
        now: float,
        *,
        ts_offset: int = 0,
        path_mss: int | None = None,
        on_event: EventSink | None = None,
        defer_acks: bool = False,
    ) -> None:
        self.local = local
        self.remote = remote
        self.ipv6 = ":" in remote[0]
        self.config = config
        self.state = State.CLOSED
        self.on_event = on_event
        self.passive = False
        self.error = 0  # errno to report to the user, 0 if none
        self.soft_error = 0  # from ICMP (RFC 1122 4.2.3.9): reported only if we time out
        self.iss = iss
        self.user_closed = False  # the user will not read or write any more

        # The parts, built from the config (the swap-in slots are its factories).
        self.timers = Timers()
        self.rto = config.rto_estimator(
            min_rto=config.min_rto, max_rto=config.max_rto, initial_rto=config.initial_rto
        )
        self.snd = Sender(self, iss, config.send_buffer_factory(config.send_buffer),
                          self.timers, self.rto)  # fmt: skip
        wscale = pick_rcv_wscale(config.recv_buffer) if config.window_scaling else 0
        self.rcv = Receiver(config, config.reassembler(config.recv_buffer), wscale)
        self.opts = Options(config, self.snd, self.rcv, ts_offset=ts_offset, path_mss=path_mss)
        self.cc = config.make_congestion_control(self.snd.mss)
        self.recovery = Recovery(self, self.snd, self.opts, self.timers, self.rto, self.cc)
        self.snd.recovery = self.recovery
        self.snd.opts = self.opts
        self.ecn = Ecn(config.ecn, self.emit)
        self.handshake = Handshake(self)
        self.keepalive = Keepalive(self, config, self.timers, now)

        self.defer_acks = defer_acks  # the driver flushes "every second segment" ACKs per batch
        self.challenge_acks: deque[float] = deque()
        self.segments_in = 0
        self.segments_out = 0
        self.outbox: list[TCPSegment] = []
        # The driver's own record of this connection (stack/host.py `ConnRecord`: its
        # owner, timer and memory charge); the connection never reads it.
        self.record: Any = None

    # ------------------------------------------------------------------ helpers

    @property
    def snd_mss(self) -> int:
        """The effective send MSS (RFC 9293 3.7.1)."""
        return self.snd.mss

    def emit(self, kind: str, **fields: object) -> None:
        """Report an event to the sink (stack/observe/events.py), if any."""
        if self.on_event is not None:
            self.on_event(kind, fields)

    def emit_cwnd(self, reason: str) -> None:
        if self.on_event is not None:
            self.emit("cwnd", cwnd=self.cc.cwnd, ssthresh=self.cc.ssthresh, reason=reason)

    def set_state(self, new: State) -> None:
        old = self.state
        if new != old:
            check_transition(old, new)  # RFC 9293 3.3.2: raises on a pair not in the diagram
            self.emit("state", **{"from": str(old), "to": str(new)})
            self.state = new

    def unwrap(self, value: int, reference: int) -> int:
        """The unwrapped sequence number nearest to `reference` (RFC 9293 3.4)."""
        return reference + seq_diff(value, reference & MASK32)

    # ------------------------------------------------------------- user calls

    def connect(self, now: float, fastopen: FastOpenAttempt | None = None,
                data: bytes = b"") -> None:
        """Active OPEN (RFC 9293 3.10.1) with `data` queued and, with `fastopen`, an
        RFC 7413 attempt: `Handshake.connect` (stack/tcp/handshake.py)."""
        self.handshake.connect(now, fastopen, data)

    @classmethod
    def from_syn(
        cls,
        local: tuple[str, int],
        remote: tuple[str, int],
        syn: TCPSegment,
        iss: int,
        config: TcpConfig,
        now: float,
        *,
        ts_offset: int = 0,
        path_mss: int | None = None,
        on_event: EventSink | None = None,
        defer_acks: bool = False,
        fastopen: SynDecision | None = None,
    ) -> Connection:
        """Passive OPEN: a listener got `syn` (RFC 9293 3.10.7.2); reply SYN-ACK
        (`Handshake.answer_syn`, with the listener's Fast Open answer `fastopen`)."""
        conn = cls(
            local, remote, iss, config, now,
            ts_offset=ts_offset, path_mss=path_mss, on_event=on_event, defer_acks=defer_acks,
        )  # fmt: skip
        conn.passive = True
        conn.state = State.LISTEN
        conn.handshake.answer_syn(syn, now, fastopen)
        return conn

    def send(self, data: bytes | memoryview, now: float) -> int:
        """Queue data; returns how many bytes were accepted (RFC 9293 3.10.2)."""
        if self.error:
            raise OSError(self.error, errno.errorcode.get(self.error, "error"))
        if self.snd.fin_queued or self.state not in CAN_SEND | {State.SYN_SENT, State.SYN_RECEIVED}:
            raise OSError(errno.EPIPE, "connection closing")
        accepted = self.snd.sendbuf.write(data)
        if accepted and self.state in CAN_SEND:
            self.snd.output(now)
        return accepted

    def output(self, now: float) -> None:
        """Send what the windows allow now (after TCP_NODELAY is set, for one)."""
        self.snd.output(now)

    @property
    def send_free(self) -> int:
        return self.snd.sendbuf.free

    @property
    def readable_bytes(self) -> int:
        return self.rcv.rx_len

    @property
    def fin_received(self) -> bool:
        return self.rcv.fin_received

    @property
    def fin_queued(self) -> bool:
        """The user has shut down writing: no more data is taken."""
        return self.snd.fin_queued

    @property
    def at_eof(self) -> bool:
        """The peer's FIN has been received and all data before it read."""
        return self.rcv.fin_received and self.rcv.rx_len == 0

    def buffered_bytes(self) -> int:
        """Bytes this connection holds (for the host's memory bound, stack/tcp/memory.py)."""
        rcv = self.rcv
        return rcv.rx_len + rcv.reassembler.pending_bytes + len(self.snd.sendbuf)

    def recv(self, limit: int, now: float) -> bytes:
        """Take up to `limit` bytes of in-order data (RFC 9293 3.10.3)."""
        rcv = self.rcv
        if not rcv.rx or limit <= 0:
            return b""
        data = rcv.read(limit)
        # After the user reads: tell the peer when the window has opened enough.
        if self.state in CAN_RECEIVE and rcv.window_update_due(self.snd.mss):
            self.send_ack(now)
        return data

    def shutdown_write(self, now: float) -> None:
        """CLOSE for the sending direction (RFC 9293 3.10.4): FIN after queued data."""
        if self.state in (State.SYN_SENT, State.LISTEN, State.CLOSED):
            # RFC 9293 3.10.4: CLOSE in SYN-SENT deletes the TCB -- timers included.
            self.terminate(0)
            return
        if self.snd.fin_queued:
            return
        self.snd.fin_queued = True
        if self.state == State.ESTABLISHED:
            self.set_state(State.FIN_WAIT_1)
        elif self.state == State.CLOSE_WAIT:
            self.set_state(State.LAST_ACK)
        self.snd.output(now)

    def close(self, now: float) -> None:
        """The user is done with the connection (RFC 9293 3.10.4).

        Unread data or SO_LINGER 0 turns the close into a reset (RFC 1122 4.2.2.13,
        RFC 2525 2.17), as Linux does.
        """
        self.user_closed = True
        if self.rcv.rx_len or self.config.linger_zero:
            self.abort(now)
            return
        self.shutdown_write(now)
        if self.state == State.FIN_WAIT_2:
            self.timers.finwait2 = now + self.config.fin_wait_2_timeout

    def abort(self, now: float) -> None:
        """ABORT (RFC 9293 3.10.5): drop everything; a reset tells the peer in
        SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1/2 and CLOSE-WAIT. In CLOSING, LAST-ACK and
        TIME-WAIT both sides have closed already: the TCB just goes (as in Linux)."""
        if self.state in RESET_ON_ABORT:
            self.send_rst(self.snd.nxt, with_ack=True)
        self.terminate(0)

    def terminate(self, err: int) -> None:
        """Delete the TCB (RFC 9293 3.10.7, "enter CLOSED"). `err` goes to the user.
        Every timer stops with it."""
        if err and not self.error:
            self.error = err
        self.set_state(State.CLOSED)
        self.timers.cancel_all()

    def _enter_time_wait(self, now: float) -> None:
        """RFC 9293 3.6: wait 2 MSL, no other timer running."""
        self.set_state(State.TIME_WAIT)
        self.timers.cancel_all()
        self.timers.timewait = now + 2 * self.config.msl

    # ------------------------------------------------------------ the driver

    def in_flight(self, raw_seq: int) -> bool:
        """Is wrapped sequence number `raw_seq` one we have sent and not had acked?
        (RFC 5927 section 4.1: an ICMP error must quote such a segment,
        SND.UNA <= SEG.SEQ < SND.NXT; issue 17 defect 5 was SND.NXT included.)"""
        snd = self.snd
        return snd.una <= self.unwrap(raw_seq, snd.una) < snd.max

    def reopens_time_wait(self, syn: TCPSegment) -> bool:
        """RFC 9293 3.6.1 / RFC 6191: may this new SYN reopen our TIME-WAIT pair? Only
        when its sequence number is beyond what the old connection used."""
        nxt = self.rcv.nxt
        return self.state == State.TIME_WAIT and self.unwrap(syn.seq, nxt) > nxt

    def on_icmp_unreachable(self, err: int, now: float) -> None:
        """Destination unreachable (RFC 1122 4.2.3.9).

        In SYN-SENT a hard error (port or protocol unreachable) aborts the attempt, as
        Linux does; otherwise it is a soft error reported only if we later time out.
        """
        if self.state == State.SYN_SENT and err in (errno.ECONNREFUSED, errno.ENOPROTOOPT):
            self.terminate(err)
        else:
            self.soft_error = err

    def on_path_mtu(self, mtu: int, now: float, header_len: int = 40) -> None:
        """ICMP fragmentation needed (RFC 1191 section 6.3) or ICMPv6 Packet Too Big
        (RFC 8201 section 5.2): lower the path MSS to the MTU less the IP and TCP
        headers (``header_len``: 40 over IPv4, 60 over IPv6)."""
        new_mss = max(mtu - header_len, 68 - 40 + 8)
        if new_mss < self.opts.path_mss:
            self.opts.lower_path_mss(new_mss)
            self.cc.mss = self.snd.mss
            # The segment that caused it was dropped: send again at once. Not a SYN
            # (SYN-SENT/SYN-RECEIVED): going back to SND.UNA = ISS there made the
            # SYN-ACK's ACK look bogus, or later sends peek before the buffer start.
            if self.snd.flight_size and self.state in SYNCHRONIZED:
                self.recovery.go_back_n(now, reason="pmtu")

    def next_deadline(self) -> float | None:
        """The earliest time `on_timer` must be called, None if no timer runs."""
        return self.timers.earliest()

    def on_timer(self, now: float) -> None:
        """Handle every timer whose deadline has passed."""
        timers = self.timers
        if timers.due("timewait", now):
            self.terminate(0)  # RFC 9293 3.10.8: TIME-WAIT timeout deletes the TCB
            return
        if timers.due("finwait2", now) and self.state == State.FIN_WAIT_2:
            self.terminate(0)
            return
        if timers.due("connect", now) and self.state in (State.SYN_SENT, State.SYN_RECEIVED):
            self.terminate(errno.ETIMEDOUT)  # the handshake's time limit (TCP_KEEPINIT)
            return
        # RFC 8985 7.2: the PTO is clamped to the RTO's expiry; when both are due the
        # probe goes first and re-arms the RTO (7.3), as one timer would in Linux.
        if timers.due("pto", now):
            self.recovery.send_loss_probe(now)
        if timers.due("rtx", now):
            self.recovery.on_rto(now)
        if self.state == State.CLOSED:
            return
        if timers.due("rack", now):
            self.recovery.on_rack_timer(now)  # RFC 8985 6.3
        if timers.due("persist", now):
            self.snd.send_window_probe(now)
        if timers.due("delack", now) and self.rcv.ack_pending:
            self.send_ack(now)
        if timers.due("keepalive", now):
            self.keepalive.on_timer(now)

    def set_congestion_control(self, name: str) -> None:
        """TCP_CONGESTION on an open connection, as Linux (tcp_reinit_congestion_control):
        the named algorithm takes over with the window the old one had (cwnd and
        ssthresh are the connection's, not the algorithm's)."""
        old = self.cc
        self.config.cc = name
        new = self.config.make_congestion_control(self.snd.mss)
        if self.state not in (State.CLOSED, State.LISTEN, State.SYN_SENT, State.SYN_RECEIVED):
            new.cwnd = old.cwnd
            new.ssthresh = old.ssthresh
        self.cc = new
        self.recovery.use_congestion_control(new)
        self.emit_cwnd("cc_changed")

    def set_keepalive(self, on: bool, now: float) -> None:
        """SO_KEEPALIVE (stack/tcp/keepalive.py)."""
        self.keepalive.set(on, now)

    # ---------------------------------------------------------------- output

    def take_output(self) -> list[TCPSegment]:
        """Segments to transmit, in order; the caller sends them now."""
        out = self.outbox
        self.outbox = []
        return out

    def send_segment(
        self, seq: int, flags: int, payload: bytes | memoryview, now: float, *,
        syn: bool = False, ecn: int = 0,
    ) -> TCPSegment:
        """Build one segment; ACK-bearing segments carry RCV.NXT and the window (and
        ECE while echoing a CE mark, RFC 3168 6.1.3). `ecn` is the IP ECN codepoint
        to send it with (stack/tcp/ecn.py decides it for data)."""
        rcv = self.rcv
        if not syn:
            flags |= self.ecn.ack_flags(flags)
        window = rcv.advertised_window(self.snd.mss) if not syn else min(self.config.recv_buffer, 0xFFFF)
        seg = TCPSegment(
            src_port=self.local[1],
            dst_port=self.remote[1],
            seq=seq & MASK32,
            ack=rcv.nxt & MASK32 if flags & ACK else 0,
            flags=flags,
            window=window,
            urgent=0,
            options=self.opts.for_segment(now) if not syn else self.handshake.syn_options(now),
            payload=payload,
            ecn=ecn,
        )
        self.ip_fields(seg)
        if flags & ACK:
            # This segment acknowledges everything received: no ACK is owed any more.
            rcv.dsack = None  # RFC 2883 section 4 (2): each duplicate reported once
            rcv.ack_pending = False
            rcv.unacked_bytes = 0
            self.timers.delack = None
            self.opts.last_ack_sent = rcv.nxt
        self.segments_out += 1
        self.outbox.append(seg)
        return seg

    def ip_fields(self, seg: TCPSegment) -> None:
        """The IP header fields the socket asked for (IP_TOS/IP_TTL, IPV6_TCLASS/
        IPV6_UNICAST_HOPS, stack/sockets.py), read per segment: a change applies at
        once, as in Linux."""
        config = self.config
        if self.ipv6:
            seg.dscp, seg.ttl = config.tclass, config.hop_limit
        else:
            seg.dscp, seg.ttl = config.tos, config.ttl

    def send_syn(self, now: float, ack: bool) -> int:
        """Send our SYN (or SYN-ACK): `Handshake.send_syn`."""
        return self.handshake.send_syn(now, ack)

    def send_ack(self, now: float) -> None:
        self.send_segment(self.snd.nxt, ACK, b"", now)

    def send_rst(self, seq: int, *, with_ack: bool) -> None:
        """A reset: <SEQ=seq><ACK=RCV.NXT><CTL=RST,ACK> when aborting a connection, or
        <SEQ=SEG.ACK><CTL=RST> in answer to an unacceptable ACK (RFC 9293 3.10.7)."""
        seg = TCPSegment(
            src_port=self.local[1], dst_port=self.remote[1], seq=seq & MASK32,
            ack=self.rcv.nxt & MASK32 if with_ack else 0, flags=RST | ACK if with_ack else RST,
            window=0, urgent=0, options=TCPOptions(None, None, False, [], None), payload=b"",
        )  # fmt: skip
        self.ip_fields(seg)
        self.outbox.append(seg)

    def _send_challenge_ack(self, now: float) -> None:
        """RFC 5961 section 3.2/4.2/5.2 challenge ACK, rate-limited (section 7)."""
        while self.challenge_acks and now - self.challenge_acks[0] > 1.0:
            self.challenge_acks.popleft()
        if len(self.challenge_acks) >= 10:
            self.emit("drop", reason="challenge_ack_rate_limited")
            return
        self.challenge_acks.append(now)
        self.emit("challenge_ack")
        self.send_ack(now)

    @property
    def ack_deferred(self) -> bool:
        """An ACK is put off to the end of the driver's batch (`flush_deferred_ack`)."""
        return self.rcv.ack_deferred

    def flush_deferred_ack(self, now: float) -> None:
        """Send the ACK put off by `defer_acks`, if nothing has carried it since."""
        self.rcv.ack_deferred = False
        if self.rcv.ack_pending and self.state != State.CLOSED:
            self.send_ack(now)

    # --------------------------------------------------------- segment arrival

    def on_segment(self, seg: TCPSegment, now: float) -> None:
        """SEGMENT ARRIVES (RFC 9293 section 3.10.7)."""
        self.segments_in += 1
        ts = seg.options.timestamp
        self.recovery.seg_tsecr = ts[1] if ts is not None and self.opts.ts_ok else None
        state = self.state
        if state == State.ESTABLISHED and predicted(self, seg, now):
            pass
        elif state == State.CLOSED:
            return
        elif state == State.SYN_SENT:
            self.handshake.on_segment_syn_sent(seg, now)
        else:
            self._on_segment_synchronized(seg, now)
        if self.state == State.CLOSED:
            return
        if self.rcv.ack_pending and self.timers.delack is None:
            self.timers.delack = now + self.config.delayed_ack

    def _ecn_on_segment(self, seg: TCPSegment, now: float) -> None:
        """RFC 3168 6.1.3 (the receiver: CE and CWR) and 6.1.2 (the sender: ECE)."""
        ecn = self.ecn
        ecn.on_segment(seg.flags, seg.ecn)
        snd = self.snd
        ack = self.unwrap(seg.ack, snd.una)
        if ecn.wants_reduction(seg.flags, ack) and snd.una <= ack <= snd.max:
            if self.recovery.in_recovery:
                return  # the loss response has reduced this window already (6.1.2)
            cc_events.on_ecn_echo(self.cc, snd.flight_size, now)
            ecn.reduced(snd.max, ack, self.cc.cwnd, self.cc.ssthresh)
            self.emit_cwnd("ecn")

    def on_segment_refusing_data(self, seg: TCPSegment, now: float) -> bool:
        """`on_segment` while the host is out of TCP memory (stack/tcp/memory.py): the text
        is dropped and the peer told what we still expect. True if any was dropped."""
        rcv = self.rcv
        dropped = rcv.memory_drops
        rcv.rx_pressure = True
        try:
            self.on_segment(seg, now)
        finally:
            rcv.rx_pressure = False
        return rcv.memory_drops != dropped

    def _on_segment_synchronized(self, seg: TCPSegment, now: float) -> None:
        """RFC 9293 3.10.7.4: SYN-RECEIVED and the synchronized states."""
        rcv = self.rcv
        flags = seg.flags
        seq = self.unwrap(seg.seq, rcv.nxt)
        payload = seg.payload
        syn = bool(flags & SYN)
        fin = bool(flags & FIN)

        # Simultaneous open: our peer's SYN-ACK repeats its SYN at IRS. Trim the SYN
        # as a duplicate (RFC 9293 3.10.7.4, "straddle" rule) and process the ACK.
        if syn and self.state == State.SYN_RECEIVED and seq == rcv.irs and flags & ACK:
            syn = False
            seq += 1

        # PAWS (RFC 7323 section 5.3): drop segments with an older timestamp.
        ts = seg.options.timestamp
        if self.opts.ts_ok and ts is not None and not flags & RST:
            # Like Linux (tcp_disordered_ack), a pure ACK reordered behind a later one is
            # still accepted: PAWS protects data, and dropping ACKs would starve recovery.
            pure_ack = not payload and not flags & (SYN | FIN) and seq == rcv.nxt
            if seq_diff(ts[0], self.opts.ts_recent) < 0 and self.state in SYNCHRONIZED and not pure_ack:
                self.emit("drop", reason="paws")
                self.send_ack(now)
                return

        seg_len = len(payload) + (1 if syn else 0) + (1 if fin else 0)
        if not rcv.acceptable(seq, seg_len):
            # "If an incoming segment is not acceptable, an acknowledgment should be
            # sent in reply (unless the RST bit is set)".
            if not flags & RST:
                self.emit("drop", reason="out_of_window")
                if payload and self.opts.sack_ok and seq + len(payload) <= rcv.nxt:
                    rcv.note_duplicate(seq, seq + len(payload))  # RFC 2883: a D-SACK
                if self.state == State.SYN_RECEIVED and syn and not flags & ACK and seq == rcv.irs:
                    self.handshake.on_repeated_syn(now)
                    return
                self.send_ack(now)
                if self.state == State.TIME_WAIT and fin:
                    # RFC 9293 3.10.7.4: a retransmitted FIN (an old duplicate, so
                    # never "acceptable") is acknowledged and restarts the 2 MSL timeout.
                    self.timers.timewait = now + 2 * self.config.msl
            else:
                self.emit("drop", reason="rst_out_of_window")
            return
        self.keepalive.heard(now)  # RFC 1122 4.2.3.6

        # Second: the RST bit (RFC 5961 section 3.2: reset only at RCV.NXT; elsewhere in
        # the window, a challenge ACK). Without RFC 5961 (config.rfc5961_rst off, for
        # teaching), RFC 793's rule: any RST in the window resets (RFC 9293 3.10.7.4).
        if flags & RST:
            if seq != rcv.nxt and self.config.rfc5961_rst:
                self._send_challenge_ack(now)
                return
            if self.state == State.SYN_RECEIVED:
                self.terminate(errno.ECONNREFUSED if not self.passive else errno.ECONNRESET)
            elif self.state in (State.CLOSING, State.LAST_ACK, State.TIME_WAIT):
                self.terminate(0)
            else:
                self.terminate(errno.ECONNRESET)
            return

        # Fourth: the SYN bit (RFC 5961 section 4.2: challenge ACK, whatever SEG.SEQ).
        if syn:
            if self.state == State.SYN_RECEIVED and self.passive:
                # RFC 9293 3.10.7.4: a passive SYN-RECEIVED connection "returns to LISTEN";
                # ours was made for this one SYN, so it simply goes away.
                self.terminate(errno.ECONNRESET)
                return
            if (not self.config.rfc5961_syn and self.state != State.SYN_RECEIVED
                    and rcv.acceptable(seq, 0)):
                # RFC 793 (p. 71; RFC 9293 3.10.7.4 for stacks without RFC 5961): "If
                # the SYN is in the window it is an error, send a reset", the user
                # gets "connection reset". The SYN's own number must be in the window:
                # one before RCV.NXT is old even when the segment overlaps the window.
                self.send_rst(self.snd.nxt, with_ack=True)
                self.terminate(errno.ECONNRESET)
                return
            self._send_challenge_ack(now)
            return

        # RFC 3168 6.1.2/6.1.3 on an acceptable segment (a forged one, out of the
        # window, neither starts an echo nor halves the window).
        if self.ecn.ok and self.state in SYNCHRONIZED:
            self._ecn_on_segment(seg, now)

        # Fifth: the ACK field.
        if not flags & ACK:
            self.emit("drop", reason="no_ack")
            return
        if not self._process_ack(seg, seq, now):
            return

        # Seventh: the segment text.
        if payload and self.state in CAN_RECEIVE:
            if not rcv.receive(seq, payload, user_closed=self.user_closed, push=bool(flags & PSH)):
                self.abort(now)  # RFC 1122 4.2.2.13: data after CLOSE is answered with RST
        elif payload:
            self.emit("drop", reason=f"data_in_{self.state}")

        # Eighth: the FIN bit.
        if fin:
            rcv.peer_fin_seq = seq + len(payload)
        if rcv.peer_fin_seq is not None and rcv.peer_fin_seq == rcv.nxt:
            self.receive_fin(now)
        elif fin and rcv.peer_fin_seq is not None and rcv.peer_fin_seq > rcv.nxt:
            # A FIN beyond a hole is an out-of-order segment: RFC 5681 4.2, an
            # immediate duplicate ACK.
            rcv.ack_pending = True
            rcv.ack_now = True

        self.snd.output(now)
        if rcv.ack_now and rcv.ack_pending:
            self.send_ack(now)
        elif rcv.second_segment_ack_due():
            # RFC 1122 4.2.3.2 / RFC 5681 4.2: ACK at least every second full-sized
            # segment, full-sized as the peer sends them (stack/tcp/rcvmss.py).
            # A driver that reads packets in batches may ask to send that ACK once,
            # after the batch (`defer_acks`), as Linux does with GRO.
            if self.defer_acks:
                rcv.ack_deferred = True
            else:
                self.send_ack(now)
        rcv.ack_now = False

    def _take_ts_recent(self, seg: TCPSegment, seq: int) -> None:
        """RFC 7323 4.3: remember the timestamp to echo, once the segment is found
        acceptable, its ACK included: a segment acknowledging data never sent is
        dropped (RFC 5961 5.2) and its TSval with it, or one forged segment would
        make PAWS drop the real peer's (issue 17, defect 1). Done before the ACK
        is processed, so that what it sends echoes this segment."""
        ts = seg.options.timestamp
        if self.opts.ts_ok and ts is not None and seq <= self.opts.last_ack_sent:
            if seq_diff(ts[0], self.opts.ts_recent) >= 0:
                self.opts.ts_recent = ts[0]

    def _process_ack(self, seg: TCPSegment, seq: int, now: float) -> bool:
        """RFC 9293 3.10.7.4 "fifth, check the ACK field"; False = drop the segment."""
        snd = self.snd
        ack = self.unwrap(seg.ack, snd.una)
        snd.probes_out = 0  # the peer is alive (RFC 1122 4.2.2.17)
        if self.state == State.SYN_RECEIVED:
            if snd.una < ack <= snd.max:
                self._take_ts_recent(seg, seq)
                return self.handshake.on_ack_in_syn_received(seg, seq, ack, now)
            self.send_rst(seg.ack, with_ack=False)  # "<SEQ=SEG.ACK><CTL=RST>"
            self.emit("drop", reason="bad_ack_in_syn_received")
            return False

        # RFC 5961 section 5.2: acceptable if SND.UNA - MAX.SND.WND =< SEG.ACK =< SND.NXT.
        if ack > snd.max:
            self.emit("drop", reason="ack_of_unsent_data")
            self.send_ack(now)
            return False
        if ack < snd.una - max(snd.max_wnd, 1):
            self.emit("drop", reason="ack_too_old")
            self._send_challenge_ack(now)
            return False

        self._take_ts_recent(seg, seq)
        window = seg.window << self.opts.snd_wscale
        self.recovery.on_ack(seg, ack, window, now)
        snd.update_window(window, seq, ack)  # RFC 9293 3.10.7.4: SND.WND from the newest

        fin_acked = snd.fin_queued and snd.una == snd.data_end + 1
        if self.state == State.FIN_WAIT_1 and fin_acked:
            self.set_state(State.FIN_WAIT_2)
            if self.user_closed:
                self.timers.finwait2 = now + self.config.fin_wait_2_timeout
        elif self.state == State.CLOSING and fin_acked:
            self._enter_time_wait(now)
        elif self.state == State.LAST_ACK and fin_acked:
            self.terminate(0)
            return False
        elif self.state == State.TIME_WAIT:
            if seg.flags & FIN:
                self.send_ack(now)  # retransmitted FIN: ACK it, restart 2 MSL
                self.timers.timewait = now + 2 * self.config.msl
            return False
        return True

    def receive_fin(self, now: float) -> None:
        """RFC 9293 3.10.7.4 "eighth, check the FIN bit"."""
        if not self.rcv.receive_fin():
            return  # a retransmitted FIN: only the ACK is owed
        if self.state in (State.SYN_RECEIVED, State.ESTABLISHED):
            self.set_state(State.CLOSE_WAIT)
        elif self.state == State.FIN_WAIT_1:
            snd = self.snd
            if snd.una == snd.data_end + 1 and snd.fin_queued:
                self.send_ack(now)
                self._enter_time_wait(now)
            else:
                self.set_state(State.CLOSING)
        elif self.state == State.FIN_WAIT_2:
            self.send_ack(now)
            self._enter_time_wait(now)

    # ------------------------------------------------------------ introspection

    def info(self) -> dict[str, object]:
        """Numbers for `tcplab ss` (like `ss -tni`)."""
        snd, rcv = self.snd, self.rcv
        return {
            "state": str(self.state),
            "cwnd": self.cc.cwnd,
            "ssthresh": self.cc.ssthresh,
            "srtt": self.rto.srtt,
            "rto": self.rto.rto,
            "inflight": snd.flight_size,
            "retrans": snd.retransmits,
            "snd_wnd": snd.wnd,
            "rcv_wnd": rcv.window,
            "mss": snd.mss,
            "cc": self.cc.name,
            "bytes_sent": snd.bytes_sent,
            "bytes_received": rcv.bytes_received,
            # What the handshake agreed, as `ss -ti` shows it ("ts sack wscale:S,R").
            "ts": self.opts.ts_ok,
            "sack": self.opts.sack_ok,
            "wscale": self.opts.snd_wscale_offered and self.opts.offered_ws,
            "snd_wscale": self.opts.snd_wscale,
            "rcv_wscale": rcv.wscale,
            **self.ecn.info(),
        }
