"""The TCP connection: RFC 9293's state machine and the glue between its parts, sans-IO.

A `Connection` never reads a clock or touches a socket. The driver (stack/host.py)
feeds it

* segments that arrived:        ``on_segment(seg, now)``
* timer expiries:               ``on_timer(now)`` once ``now >= next_deadline()``
* user calls:                   ``send``, ``recv``, ``shutdown_write``, ``close``, ``abort``

and after each call takes the segments to transmit with ``take_output()`` and asks
``next_deadline()`` for the time it must be woken up next.

Owns: the state (every change checked against stack/tcp/states.py), segment arrival
processing in the order of RFC 9293 3.10.7 (with RFC 5961's challenge ACKs, PAWS of
RFC 7323 5.3, header prediction), the building of every segment (ACK field, window,
options), keepalive (RFC 1122 4.2.3.6), closing and TIME-WAIT (RFC 9293 3.6). It
composes the parts, each the owner of its RFC rules:

=======================  ============================================================
``snd`` (sender.py)      send sequence space and buffer; windows, Nagle, SWS, probes
``rcv`` (receiver.py)    receive sequence space, reassembly, the ACK owed, the window
``opts`` (options.py)    MSS, window scale, timestamps, SACK-permitted; option fields
``recovery``             RTT, RTO, NewReno/SACK recovery, ER, TLP, undo (recovery.py)
``timers`` (timers.py)   every deadline of this connection
``cc``                   congestion control (stack/tcp/congestion/), told events only
``ecn`` (ecn.py)         RFC 3168: negotiation, ECE echo, CWR, the reduction per RTT
``fastopen``             RFC 7413 client attempt (fastopen.py): SYN cookie and data
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
HANDSHAKE_TIMEOUT_FALLBACK = 3.0  # RFC 6298 5.7 (Linux: TCP_TIMEOUT_FALLBACK)

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
        self.config = config
        self.state = State.CLOSED
        self.on_event = on_event
        self.passive = False
        self.error = 0  # errno to report to the user, 0 if none
        self.soft_error = 0  # from ICMP (RFC 1122 4.2.3.9): reported only if we time out
        self.iss = iss
        self.user_closed = False  # the user will not read or write any more
        # The text and FIN of the peer's SYN in a simultaneous open, for ESTABLISHED.
        self.syn_text: tuple[bytes, bool] | None = None

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
        self.fastopen: FastOpenAttempt | None = None  # an active open's TFO (RFC 7413)
        self.synack_cookie: tuple[bytes, bool] | None = None  # TFO cookie for our SYN-ACK

        self.defer_acks = defer_acks  # the driver flushes "every second segment" ACKs per batch
        self.keepalive_probes = 0
        self.last_recv_time = now
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

    def _set_state(self, new: State) -> None:
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
        """Active OPEN (RFC 9293 3.10.1): send SYN, enter SYN-SENT. `data` is queued
        first (RFC 9293 3.10.1 allows data with the OPEN); with `fastopen` (RFC 7413
        4.2.2) the SYN carries a cookie (or a cookie request) and, with a cookie, the
        start of that data."""
        if data:
            self.snd.sendbuf.write(data)
        self._set_state(State.SYN_SENT)
        self.fastopen = fastopen
        sent = self.send_syn(now, ack=False)
        self.snd.nxt = self.snd.max = self.iss + 1 + sent
        self.snd.bytes_sent += sent
        self.recovery.arm_rtx(now)
        self._arm_connect_timeout(now)

    def _arm_connect_timeout(self, now: float) -> None:
        """RFC 1122 4.2.3.5: the user may give up on the open attempt sooner than R2."""
        if self.config.connect_timeout > 0:
            self.timers.connect = now + self.config.connect_timeout

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
        """Passive OPEN: a listener got `syn` (RFC 9293 3.10.7.2); reply SYN-ACK.

        `fastopen` is the listener's Fast Open answer (stack/tcp/fastopen.py `decide`):
        accept the SYN's data (RFC 7413 4.2.1, the SYN-ACK then acknowledges it) and/or
        put a cookie in the SYN-ACK. Without it, data in a SYN is not taken and the
        SYN-ACK acknowledges only the SYN (the peer sends the data again)."""
        conn = cls(
            local, remote, iss, config, now,
            ts_offset=ts_offset, path_mss=path_mss, on_event=on_event, defer_acks=defer_acks,
        )  # fmt: skip
        conn.passive = True
        conn.state = State.LISTEN
        conn._take_syn_options(syn)
        conn.rcv.start(syn.seq)
        conn.ecn.on_syn(syn.flags)  # RFC 3168 6.1.1
        if fastopen is not None:
            if fastopen.cookie is not None:
                conn.synack_cookie = (fastopen.cookie, fastopen.exp)
            if fastopen.accept_data and syn.payload:
                # RFC 7413 4.2.1: the data of a SYN with a valid cookie is accepted,
                # within the window the SYN-ACK offers (unscaled, RFC 7323 2.2).
                rcv = conn.rcv
                rcv.right = max(rcv.right, rcv.nxt + min(config.recv_buffer, 0xFFFF))
                rcv.receive(rcv.nxt, syn.payload, user_closed=False)
                conn.emit("fastopen", event="syn_data_accepted", bytes=len(syn.payload))
        snd = conn.snd
        snd.wnd = syn.window  # RFC 7323 2.2: the window in a SYN is never scaled
        snd.max_wnd = snd.wnd
        conn._set_state(State.SYN_RECEIVED)
        conn.send_syn(now, ack=True)
        snd.nxt = snd.max = conn.iss + 1
        conn.recovery.arm_rtx(now)
        conn._arm_connect_timeout(now)
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
            self._send_ack(now)
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
            self._set_state(State.FIN_WAIT_1)
        elif self.state == State.CLOSE_WAIT:
            self._set_state(State.LAST_ACK)
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
            self._send_rst(self.snd.nxt, with_ack=True)
        self.terminate(0)

    def terminate(self, err: int) -> None:
        """Delete the TCB (RFC 9293 3.10.7, "enter CLOSED"). `err` goes to the user.
        Every timer stops with it."""
        if err and not self.error:
            self.error = err
        self._set_state(State.CLOSED)
        self.timers.cancel_all()

    def _enter_time_wait(self, now: float) -> None:
        """RFC 9293 3.6: wait 2 MSL, no other timer running."""
        self._set_state(State.TIME_WAIT)
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
            self._send_ack(now)
        if timers.due("keepalive", now):
            self._on_keepalive_timer(now)

    def _on_keepalive_timer(self, now: float) -> None:
        """RFC 1122 4.2.3.6: probe an idle connection with SEG.SEQ = SND.NXT - 1."""
        if not self.config.keepalive or self.state not in SYNCHRONIZED:
            return
        due = self.last_recv_time + self.config.keepalive_idle
        if now < due:  # (compared as the deadline was computed: no float round-off loop)
            self.timers.keepalive = due
            return
        if self.keepalive_probes >= self.config.keepalive_count:
            self.terminate(errno.ETIMEDOUT)
            return
        self.keepalive_probes += 1
        self.send_segment(self.snd.nxt - 1, ACK, b"", now)
        self.timers.keepalive = now + self.config.keepalive_interval

    def set_keepalive(self, on: bool, now: float) -> None:
        self.config.keepalive = on
        if on and self.state in SYNCHRONIZED:
            self.timers.keepalive = self.last_recv_time + self.config.keepalive_idle
        elif not on:
            self.timers.keepalive = None

    # ---------------------------------------------------------------- output

    def take_output(self) -> list[TCPSegment]:
        """Segments to transmit, in order; the caller sends them now."""
        out = self.outbox
        self.outbox = []
        return out

    def send_segment(
        self, seq: int, flags: int, payload: bytes | memoryview, now: float, *,
        syn: bool = False, ecn: int = 0,
    ) -> None:
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
            options=self.opts.for_segment(now) if not syn else self._syn_options(now),
            payload=payload,
            ecn=ecn,
        )
        if flags & ACK:
            # This segment acknowledges everything received: no ACK is owed any more.
            rcv.dsack = None  # RFC 2883 section 4 (2): each duplicate reported once
            rcv.ack_pending = False
            rcv.unacked_bytes = 0
            self.timers.delack = None
            self.opts.last_ack_sent = rcv.nxt
        self.segments_out += 1
        self.outbox.append(seg)

    def _syn_options(self, now: float) -> TCPOptions:
        # RFC 7323 3.2: a segment with ACK set MUST echo TS.Recent; that includes the
        # SYN-ACK of a simultaneous open (not only passive ones).
        echo = self.opts.ts_recent if self.state == State.SYN_RECEIVED else 0
        # Our SYN (SYN-SENT, also when retransmitted) offers everything; a SYN-ACK
        # answers the peer's SYN.
        return self.opts.for_syn(now, answer=self.state != State.SYN_SENT, echo=echo)

    def send_syn(self, now: float, ack: bool) -> int:
        """Send our SYN (or SYN-ACK); returns how many data bytes it carries (RFC 7413
        Fast Open: only on the first SYN of an active open with a cookie)."""
        retransmission = self.snd.max > self.iss
        flags = SYN | (ACK if ack else 0)
        # RFC 3168 6.1.1: ECN-setup SYN (ECE|CWR) / SYN-ACK (ECE).
        flags |= self.ecn.synack_flags() if ack else self.ecn.syn_flags(retransmission=retransmission)
        payload = b""
        attempt = self.fastopen
        if attempt is not None and not ack and not retransmission:
            n = min(len(self.snd.sendbuf), attempt.syn_data_limit(self.snd.mss))
            payload = self.snd.peek(self.iss + 1, n) if n > 0 else b""
            attempt.syn_data = len(payload)
        self.send_segment(self.iss, flags, payload, now, syn=True)
        options = self.outbox[-1].options
        if attempt is not None and not ack and not retransmission:
            # RFC 7413 4.1.1 / 4.2.2: the cookie, or an empty option asking for one.
            options.fastopen = attempt.syn_option()
            options.fastopen_exp = attempt.exp
        elif ack and self.synack_cookie is not None:
            options.fastopen, options.fastopen_exp = self.synack_cookie
        if ack:
            # The window in our SYN-ACK is unscaled (RFC 7323 2.2); that is our offer.
            rcv = self.rcv
            rcv.right = max(rcv.right, rcv.nxt + min(self.config.recv_buffer, 0xFFFF))
        return len(payload)

    def _send_ack(self, now: float) -> None:
        self.send_segment(self.snd.nxt, ACK, b"", now)

    def _send_rst(self, seq: int, *, with_ack: bool) -> None:
        """A reset: <SEQ=seq><ACK=RCV.NXT><CTL=RST,ACK> when aborting a connection, or
        <SEQ=SEG.ACK><CTL=RST> in answer to an unacceptable ACK (RFC 9293 3.10.7)."""
        seg = TCPSegment(
            src_port=self.local[1], dst_port=self.remote[1], seq=seq & MASK32,
            ack=self.rcv.nxt & MASK32 if with_ack else 0, flags=RST | ACK if with_ack else RST,
            window=0, urgent=0, options=TCPOptions(None, None, False, [], None), payload=b"",
        )  # fmt: skip
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
        self._send_ack(now)

    @property
    def ack_deferred(self) -> bool:
        """An ACK is put off to the end of the driver's batch (`flush_deferred_ack`)."""
        return self.rcv.ack_deferred

    def flush_deferred_ack(self, now: float) -> None:
        """Send the ACK put off by `defer_acks`, if nothing has carried it since."""
        self.rcv.ack_deferred = False
        if self.rcv.ack_pending and self.state != State.CLOSED:
            self._send_ack(now)

    # --------------------------------------------------------- segment arrival

    def on_segment(self, seg: TCPSegment, now: float) -> None:
        """SEGMENT ARRIVES (RFC 9293 section 3.10.7)."""
        self.segments_in += 1
        ts = seg.options.timestamp
        self.recovery.seg_tsecr = ts[1] if ts is not None and self.opts.ts_ok else None
        state = self.state
        if state == State.ESTABLISHED and self._predicted(seg, now):
            pass
        elif state == State.CLOSED:
            return
        elif state == State.SYN_SENT:
            self._on_segment_syn_sent(seg, now)
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

    def _predicted(self, seg: TCPSegment, now: float) -> bool:
        """Header prediction: the two common cases, done in few steps.

        Van Jacobson's observation (TCP/IP Illustrated vol. 2, 28.4; RFC 7323 appendix
        keeps it working with timestamps): on an ESTABLISHED connection most segments
        are either the next in-order data, or a pure ACK of new data, with no flags but
        ACK/PSH and an unchanged window. (Here in-order data may also carry a new ACK,
        processed first, as 3.10.7.4 orders it: request/response traffic is all such
        segments.) For those the full processing of RFC 9293 3.10.7.4 reduces to what
        is below; anything else returns False and takes the full path.
        """
        recovery = self.recovery
        rcv = self.rcv
        if seg.flags & ~PSH != ACK or recovery.in_recovery or rcv.peer_fin_seq is not None:
            return False
        snd = self.snd
        opts = self.opts
        seq = rcv.nxt
        if seg.seq != seq & MASK32 or seg.window << opts.snd_wscale != snd.wnd:
            return False
        options = seg.options
        ts = options.timestamp
        if opts.ts_ok and (ts is None or seq_diff(ts[0], opts.ts_recent) < 0):
            return False  # PAWS or a missing timestamp: the full path decides
        if options.sack_blocks:
            return False
        una = snd.una
        ack = una + seq_diff(seg.ack, una & MASK32)
        new_ack = ack != una
        if new_ack and not una < ack <= snd.max:
            return False
        payload = seg.payload
        n = len(payload)
        if n:
            # In-order data that fits the window (and may acknowledge new data too,
            # as every request after the first does in a request/response exchange).
            if (rcv.reassembler.pending_bytes or self.user_closed or rcv.rx_pressure
                    or seq + n > rcv.right):
                return False
        elif not new_ack:
            return False  # a duplicate ACK or a window probe: the full path counts it
        if seg.ecn and self.ecn.ok:
            self.ecn.on_segment(seg.flags, seg.ecn)  # RFC 3168 6.1.3 (a CE mark)
        if ts is not None and seq <= opts.last_ack_sent:
            opts.ts_recent = ts[0]  # RFC 7323 4.3
        if new_ack:  # RFC 9293 3.10.7.4 "fifth": the ACK before the text
            if recovery.tlp_end_seq is not None:
                recovery.tlp_on_ack(ack, seg, now)
            if recovery.undo_ts is not None:
                recovery.check_undo(ts, now)
            recovery.on_new_ack(ack, now)
            snd.wl1 = seq
            snd.wl2 = ack
        if n:
            rcv.take_in_order(seq, payload)
            if new_ack or snd.data_end > snd.nxt:
                snd.output(now)  # data of ours to send carries the ACK
            if rcv.ack_pending and rcv.unacked_bytes >= 2 * snd.mss:
                if self.defer_acks:  # see _on_segment_synchronized
                    rcv.ack_deferred = True
                else:
                    self._send_ack(now)
        else:
            snd.output(now)
        self.last_recv_time = now
        self.keepalive_probes = 0
        snd.probes_out = 0
        if self.config.keepalive:
            self.timers.keepalive = now + self.config.keepalive_idle
        return True

    def _take_syn_options(self, seg: TCPSegment) -> None:
        self.opts.take_syn(seg)
        self.cc.mss = self.snd.mss

    def _handshake_acked(self, ack: int, window: int, seq: int, now: float) -> None:
        """Our SYN is acknowledged (RFC 9293 3.10.7.3 / 3.10.7.4): ESTABLISHED."""
        snd = self.snd
        snd.advance(ack)  # (releases the data a Fast Open SYN carried, if acked)
        if snd.nxt > ack:
            # RFC 7413 4.2.2: the SYN's data was not acknowledged: send it again now.
            snd.nxt = ack
            self.emit("fastopen", event="syn_data_not_acked", acked=ack - self.iss - 1)
        snd.wnd = window
        snd.wl1 = seq
        snd.wl2 = ack
        snd.max_wnd = max(snd.max_wnd, window)
        self.recovery.rtt_on_ack(ack, now)
        self.recovery.retries = 0
        self.timers.rtx = None
        self.timers.connect = None
        self._set_state(State.ESTABLISHED)
        if snd.retransmits and self.rto.srtt is None:
            # RFC 6298 5.7: the SYN (or SYN-ACK) timed out and no RTT was measured
            # (Karn's rule, no timestamps): data starts with an RTO of 3 s.
            self.rto.restart(HANDSHAKE_TIMEOUT_FALLBACK)
        if self.config.keepalive:
            self.timers.keepalive = now + self.config.keepalive_idle
        self.emit_cwnd("init")
        snd.output(now)

    def _syn_text(self, text: bytes, fin: bool, now: float) -> None:
        """The text and FIN that came with the peer's SYN, now that we are ESTABLISHED
        (RFC 9293 3.10.7.3), taken within the window our SYN offered."""
        rcv = self.rcv
        start = rcv.irs + 1
        if text:
            rcv.right = max(rcv.right, start + min(self.config.recv_buffer, 0xFFFF))
            if not rcv.receive(start, text, user_closed=self.user_closed):
                self.abort(now)
                return
        if fin and rcv.nxt == start + len(text):
            rcv.peer_fin_seq = rcv.nxt
            self._receive_fin(now)

    def _on_segment_syn_sent(self, seg: TCPSegment, now: float) -> None:
        """RFC 9293 3.10.7.3: SEGMENT ARRIVES in SYN-SENT."""
        flags = seg.flags
        ack = self.unwrap(seg.ack, self.snd.una)
        if flags & ACK:
            # "If SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset (unless RST)".
            if ack <= self.iss or ack > self.snd.nxt:
                if not flags & RST:
                    self._send_rst(seg.ack, with_ack=False)
                self.emit("drop", reason="bad_ack_in_syn_sent")
                return
        if flags & RST:
            if flags & ACK:
                self.terminate(errno.ECONNREFUSED)  # "connection reset" -> refused
            return
        if not flags & SYN:
            return
        if flags & ACK:
            self.ecn.on_synack(flags)  # RFC 3168 6.1.1
            if self.fastopen is not None:  # RFC 7413 4.2.2
                options = seg.options
                self.fastopen.on_synack(options.fastopen, options.fastopen_exp,
                                        options.mss if options.mss is not None else 536,
                                        data_acked=max(ack - self.iss - 1, 0), now=now)
        self._take_syn_options(seg)
        if self.opts.ts_ok and seg.options.timestamp is not None:
            # Timestamps were just agreed: the SYN-ACK's echo times the SYN it answers,
            # also after a retransmitted SYN (RFC 7323 4.1; on_segment could not know).
            self.recovery.seg_tsecr = seg.options.timestamp[1]
        if not self.opts.snd_wscale_offered:
            self.rcv.wscale = 0
        self.rcv.start(seg.seq)
        self.last_recv_time = now
        if flags & ACK:
            # RFC 7323 2.2: the window in a SYN is never scaled.
            sent = self.segments_out
            self._handshake_acked(ack, seg.window, seg.seq, now)
            # RFC 9293 3.10.7.3: "continue processing at the sixth step": the text and
            # the FIN a SYN-ACK may carry (issue 17, defect 4), within the window our
            # SYN offered (unscaled, RFC 7323 2.2); our ACK then covers them.
            self._syn_text(bytes(seg.payload), bool(flags & FIN), now)
            # "Form an ACK segment ... and send it. Data or controls that were queued
            # for transmission MAY be included": data already sent carried that ACK;
            # only what came on the SYN-ACK may still be owed one.
            if self.state != State.CLOSED and (self.segments_out == sent or self.rcv.ack_pending):
                self._send_ack(now)
        else:
            # Simultaneous open (RFC 9293 3.10.7.3 and figure 8): SYN-RECEIVED, SYN-ACK.
            # "If there are other controls or text in the segment, queue them for
            # processing after the ESTABLISHED state has been reached."
            if seg.payload or flags & FIN:
                self.syn_text = (bytes(seg.payload), bool(flags & FIN))
            self._set_state(State.SYN_RECEIVED)
            self.snd.wnd = seg.window
            # RFC 3168 6.1.1 says nothing of simultaneous opens; like FreeBSD, an
            # ECN-setup SYN crossing ours is answered as a listener answers it.
            self.ecn.on_syn(flags)
            self.send_syn(now, ack=True)

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
                self._send_ack(now)
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
                    # The peer sent its SYN again: our SYN-ACK was lost. In SYN-RECEIVED
                    # our SYN is unacknowledged, so the acknowledgment owed is the SYN-ACK
                    # itself (a bare ACK at ISS+1 is dropped by a SYN-SENT peer, RFC 9293
                    # 3.10.7.3 "fifth"); Linux (tcp_check_req) and FreeBSD (the syncache)
                    # resend it at once. The SYN-ACK timer keeps running.
                    self.recovery.note_retransmit(self.iss, 0, "syn_again")
                    self.send_syn(now, ack=True)
                    return
                self._send_ack(now)
                if self.state == State.TIME_WAIT and fin:
                    # RFC 9293 3.10.7.4: a retransmitted FIN (an old duplicate, so
                    # never "acceptable") is acknowledged and restarts the 2 MSL timeout.
                    self.timers.timewait = now + 2 * self.config.msl
            else:
                self.emit("drop", reason="rst_out_of_window")
            return
        self.last_recv_time = now
        self.keepalive_probes = 0
        if self.config.keepalive and self.state in SYNCHRONIZED:
            self.timers.keepalive = now + self.config.keepalive_idle

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
                self._send_rst(self.snd.nxt, with_ack=True)
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
            if not rcv.receive(seq, payload, user_closed=self.user_closed):
                self.abort(now)  # RFC 1122 4.2.2.13: data after CLOSE is answered with RST
        elif payload:
            self.emit("drop", reason=f"data_in_{self.state}")

        # Eighth: the FIN bit.
        if fin:
            rcv.peer_fin_seq = seq + len(payload)
        if rcv.peer_fin_seq is not None and rcv.peer_fin_seq == rcv.nxt:
            self._receive_fin(now)
        elif fin and rcv.peer_fin_seq is not None and rcv.peer_fin_seq > rcv.nxt:
            # A FIN beyond a hole is an out-of-order segment: RFC 5681 4.2, an
            # immediate duplicate ACK.
            rcv.ack_pending = True
            rcv.ack_now = True

        self.snd.output(now)
        if rcv.ack_now and rcv.ack_pending:
            self._send_ack(now)
        elif rcv.ack_pending and rcv.unacked_bytes >= 2 * self.snd.mss:
            # RFC 1122 4.2.3.2 / RFC 5681 4.2: ACK at least every second full segment.
            # A driver that reads packets in batches may ask to send that ACK once,
            # after the batch (`defer_acks`), as Linux does with GRO.
            if self.defer_acks:
                rcv.ack_deferred = True
            else:
                self._send_ack(now)
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
                # RFC 7323 2.2: the window of a segment with SYN set (the peer's
                # SYN-ACK in a simultaneous open) is never scaled.
                window = seg.window if seg.flags & SYN else seg.window << self.opts.snd_wscale
                self._handshake_acked(ack, window, seq, now)
                if snd.fin_queued:
                    # The user closed in SYN-RECEIVED: "queue [the FIN] for processing
                    # after entering ESTABLISHED" (RFC 9293 3.10.4) -- before the SYN's
                    # own text is taken, so that text meets the closed state.
                    self._set_state(State.FIN_WAIT_1)
                    snd.output(now)
                if self.syn_text is not None:
                    text, fin = self.syn_text
                    self.syn_text = None
                    self._syn_text(text, fin, now)
                    if self.state == State.CLOSED:
                        return False  # the text arrived after close: reset (3.10.7.4)
                return True
            self._send_rst(seg.ack, with_ack=False)  # "<SEQ=SEG.ACK><CTL=RST>"
            self.emit("drop", reason="bad_ack_in_syn_received")
            return False

        # RFC 5961 section 5.2: acceptable if SND.UNA - MAX.SND.WND =< SEG.ACK =< SND.NXT.
        if ack > snd.max:
            self.emit("drop", reason="ack_of_unsent_data")
            self._send_ack(now)
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
            self._set_state(State.FIN_WAIT_2)
            if self.user_closed:
                self.timers.finwait2 = now + self.config.fin_wait_2_timeout
        elif self.state == State.CLOSING and fin_acked:
            self._enter_time_wait(now)
        elif self.state == State.LAST_ACK and fin_acked:
            self.terminate(0)
            return False
        elif self.state == State.TIME_WAIT:
            if seg.flags & FIN:
                self._send_ack(now)  # retransmitted FIN: ACK it, restart 2 MSL
                self.timers.timewait = now + 2 * self.config.msl
            return False
        return True

    def _receive_fin(self, now: float) -> None:
        """RFC 9293 3.10.7.4 "eighth, check the FIN bit"."""
        if not self.rcv.receive_fin():
            return  # a retransmitted FIN: only the ACK is owed
        if self.state in (State.SYN_RECEIVED, State.ESTABLISHED):
            self._set_state(State.CLOSE_WAIT)
        elif self.state == State.FIN_WAIT_1:
            snd = self.snd
            if snd.una == snd.data_end + 1 and snd.fin_queued:
                self._send_ack(now)
                self._enter_time_wait(now)
            else:
                self._set_state(State.CLOSING)
        elif self.state == State.FIN_WAIT_2:
            self._send_ack(now)
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
