"""The TCP connection: RFC 9293's state machine, sans-IO.

A `Connection` never reads a clock or touches a socket. The driver (stack/host.py)
feeds it

* segments that arrived:        ``on_segment(seg, now)``
* timer expiries:               ``on_timer(now)`` once ``now >= next_deadline()``
* user calls:                   ``send``, ``recv``, ``shutdown_write``, ``close``, ``abort``

and after each call takes the segments to transmit with ``take_output()`` and asks
``next_deadline()`` for the time it must be woken up next.

Sequence numbers inside this class are *unwrapped*: plain Python ints that keep
growing past 2**32. They are wrapped (``& 0xFFFFFFFF``) only on the way out and
unwrapped relative to SND.UNA / RCV.NXT on the way in (see ``_unwrap``). That keeps
the comparisons below readable (``a < b`` instead of modular helpers); the modular
arithmetic lives in stack/tcp/seq.py and is used exactly at that boundary.

Stream indices: the first data byte we send has sequence number ISS + 1 and send
buffer index 0; likewise IRS + 1 is receive (reassembler) index 0.

What is implemented, with the section of the RFC each rule comes from:

* the eleven states of RFC 9293 section 3.3.2, simultaneous open and close;
* segment arrival processing of RFC 9293 section 3.10.7, with RFC 5961 challenge
  ACKs for RSTs (section 3), SYNs (section 4) and out-of-window ACKs (section 5);
* options MSS (RFC 9293 3.7.1), window scale and timestamps with PAWS (RFC 7323),
  SACK (RFC 2018);
* retransmission timer (RFC 6298) with Karn's rule and exponential backoff;
* fast retransmit / fast recovery NewReno (RFC 5681, RFC 6582), and SACK-based
  loss recovery (RFC 6675) when SACK is negotiated;
* Early Retransmit (RFC 5827): a lower DupThresh when little data is outstanding,
  and the Tail Loss Probe of RFC 8985 section 7 (SACK connections), so that losses
  in a small window are repaired by the two above rather than by the RTO;
* delayed ACKs (RFC 1122 4.2.3.2, RFC 5681 4.2), Nagle (RFC 896, RFC 1122 4.2.3.4),
  sender and receiver silly-window avoidance (RFC 9293 3.8.6.2), zero-window probing
  (RFC 9293 3.8.6.1), keepalive (RFC 1122 4.2.3.6), TIME-WAIT (RFC 9293 3.6).
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stack.tcp.congestion import make_congestion_control
from stack.tcp.reassembler import Reassembler
from stack.tcp.rto import RTOEstimator
from stack.tcp.sendbuf import SendBuffer
from stack.tcp.seq import seq_diff
from stack.wire.tcp import ACK, FIN, PSH, RST, SYN, TCPOptions, TCPSegment

MASK32 = 0xFFFFFFFF
DUP_THRESH = 3  # RFC 5681 section 3.2 / RFC 6675 section 2 "DupThresh"
# RFC 5827 section 3.2 (3.a): Early Retransmit while less than 4 * SMSS is outstanding.
ER_SEGMENTS = 4
# RFC 8985 section 7.2: PTO without an RTT sample, and the allowance for a delayed ACK
# (TLP.max_ack_delay, "WCDelAckT": Linux delays an ACK by at most 200 ms) when only
# one segment is in flight.
TLP_DEFAULT_PTO = 1.0
TLP_MAX_ACK_DELAY = 0.2
DEFAULT_PEER_MSS = 536  # RFC 9293 section 3.7.1: assume 536 when no MSS option
TS_OPTION_LEN = 12  # NOP NOP TS(10): what the timestamp option costs every segment

EventSink = Callable[[str, dict[str, object]], None]


class State(StrEnum):
    """RFC 9293 section 3.3.2 connection states."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


# States in which the connection is synchronized (RFC 9293 section 3.5.2).
SYNCHRONIZED = frozenset(
    {
        State.ESTABLISHED,
        State.FIN_WAIT_1,
        State.FIN_WAIT_2,
        State.CLOSE_WAIT,
        State.CLOSING,
        State.LAST_ACK,
        State.TIME_WAIT,
    }
)
# States in which we may still send data (RFC 9293 section 3.10.2).
CAN_SEND = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})
# States in which `_output` sends data or a FIN (and a loss probe may be sent).
CAN_OUTPUT = CAN_SEND | {State.FIN_WAIT_1, State.LAST_ACK, State.CLOSING}
# States in which arriving data is delivered (RFC 9293 3.10.7.4, "seventh").
CAN_RECEIVE = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})
HANDSHAKE_TIMEOUT_FALLBACK = 3.0  # RFC 6298 5.7 (Linux: TCP_TIMEOUT_FALLBACK)
# RFC 9293 3.10.5: the states in which ABORT sends a reset.
RESET_ON_ABORT = frozenset(
    {State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT}
)


@dataclass
class TcpConfig:
    """Tunables of one connection. Defaults follow Linux where the RFCs leave a choice."""

    mss: int = 1460  # what we advertise: MTU - 40 (RFC 9293 3.7.1)
    send_buffer: int = 1 << 20
    recv_buffer: int = 1 << 20
    window_scaling: bool = True  # RFC 7323 section 2
    timestamps: bool = True  # RFC 7323 section 3
    sack: bool = True  # RFC 2018
    nodelay: bool = False  # TCP_NODELAY turns Nagle off (RFC 1122 4.2.3.4)
    cc: str = "newreno"
    min_rto: float = 0.2  # RFC 6298 2.4 says 1 s; Linux uses 200 ms
    max_rto: float = 60.0
    initial_rto: float = 1.0  # RFC 6298 section 2.1
    delayed_ack: float = 0.04  # RFC 1122 4.2.3.2: < 0.5 s; Linux uses 40 ms
    msl: float = 30.0  # TIME-WAIT lasts 2*MSL (RFC 9293 3.4.2); Linux waits 60 s
    fin_wait_2_timeout: float = 60.0  # for connections the user has closed (like Linux)
    syn_retries: int = 6
    synack_retries: int = 5
    max_retries: int = 15  # RFC 1122 4.2.3.5 "R2": at least 100 s
    keepalive: bool = False
    keepalive_idle: float = 7200.0  # RFC 1122 4.2.3.6: no less than two hours by default
    keepalive_interval: float = 75.0
    keepalive_count: int = 9
    tso_max: int = 0  # > MSS: may emit segments up to this size (the host segments them)
    linger_zero: bool = False  # SO_LINGER with l_linger 0: close() resets


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
    ) -> None:
        self.local = local
        self.remote = remote
        self.config = config
        self.state = State.CLOSED
        self.on_event = on_event
        self.passive = False
        self.error = 0  # errno to report to the user, 0 if none
        self.soft_error = 0  # from ICMP (RFC 1122 4.2.3.9): reported only if we time out

        # Send sequence variables (RFC 9293 3.3.1), unwrapped.
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss  # highest sequence number sent + 1
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0  # largest window the peer offered (RFC 5961 5.2, RFC 9293 3.8.6.2.1)
        # Receive sequence variables.
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_right = 0  # right edge of the window we advertised (never moved left)

        # Options, settled by the handshake.
        self._path_mss = path_mss if path_mss is not None else config.mss
        self._peer_mss = DEFAULT_PEER_MSS
        self._ts_ok = False
        self.snd_mss = self.max_segment = 0
        self._recompute_mss()
        self.snd_wscale = 0  # shift applied to windows the peer sends us
        self.rcv_wscale = self._pick_rcv_wscale() if config.window_scaling else 0
        self.ts_recent = 0  # RFC 7323 4.3
        self.ts_offset = ts_offset
        self.last_ack_sent = 0
        self.sack_ok = False
        self._offered_ws = config.window_scaling
        self._offered_ts = config.timestamps
        self._offered_sack = config.sack
        self.snd_wscale_offered = False  # the peer's SYN carried a window scale option

        # Buffers.
        self.sendbuf = SendBuffer(config.send_buffer)
        self.reassembler = Reassembler(config.recv_buffer)
        self.rx: deque[bytes | memoryview] = deque()
        self.rx_len = 0
        self.fin_queued = False  # user called shutdown_write/close: FIN after the data
        self.fin_received = False
        self.peer_fin_seq: int | None = None  # a FIN seen beyond a hole
        self.user_closed = False  # the user will not read or write any more

        # Retransmission (RFC 6298).
        self.rto = RTOEstimator(
            min_rto=config.min_rto, max_rto=config.max_rto, initial_rto=config.initial_rto
        )
        self.rtx_deadline: float | None = None
        self.retries = 0
        self.rtt_seq: int | None = None  # the segment being timed (Karn's rule)
        self.rtt_after_retransmit = False  # take the next sample from TSecr instead
        self.rtx_tsval: int | None = None  # our TSval when data was last retransmitted
        self._seg_tsecr: int | None = None  # TSecr of the segment being processed
        self.probes_out = 0  # zero-window probes sent without any ACK since
        self.rtt_time = 0.0

        # Congestion control and loss recovery (RFC 5681, 6582, 6675).
        self.cc = make_congestion_control(config.cc, self.snd_mss)
        self.dupacks = 0
        self.in_recovery = False
        self.recover = iss  # RFC 6582 section 3.2 "recover"
        self.high_rxt = iss  # RFC 6675 "HighRxt"
        self.sacked: list[list[int]] = []  # SACK scoreboard: sorted disjoint [start, end)
        # Spurious retransmission detection (RFC 3522 Eifel) and response (RFC 4015).
        self.undo_ts: int | None = None  # TSval of the first retransmission, if armed
        self.prior_cwnd = 0
        self.prior_ssthresh = 0
        self.spurious_retransmits = 0
        # Tail Loss Probe (RFC 8985 section 7; its variables in section 7.1).
        self.pto_deadline: float | None = None
        self.tlp_end_seq: int | None = None  # TLP.end_seq: SND.NXT after the probe, if one is out
        self.tlp_is_retrans = False  # TLP.is_retrans: the probe resent old data

        # Other timers.
        self.delack_deadline: float | None = None
        self.ack_pending = False
        self._ack_now = False  # this segment's processing owes an immediate ACK
        self.defer_acks = False  # the driver flushes "every second segment" ACKs per batch
        # Host-wide memory (stack/tcpmem.py): what the host counts for us, whether it
        # refuses us data for the segment at hand, and how often it did.
        self.mem_charged = 0
        self.rx_pressure = False
        self.memory_drops = 0
        self.ack_deferred = False
        self.unacked_bytes = 0  # bytes received since our last ACK
        self.persist_deadline: float | None = None
        self.persist_backoff = 0
        self.keepalive_deadline: float | None = None
        self.keepalive_probes = 0
        self.timewait_deadline: float | None = None
        self.finwait2_deadline: float | None = None
        self.last_recv_time = now
        self.challenge_acks: deque[float] = deque()

        # Statistics.
        self.retransmits = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.segments_in = 0
        self.segments_out = 0

        self.output: list[TCPSegment] = []
        # Slots for the driver (stack/host.py): who to notify, when it is scheduled.
        self.owner: Any = None
        self.timer_at: float | None = None

    # ------------------------------------------------------------------ helpers

    # The three inputs of the send MSS; setting one recomputes `snd_mss` and
    # `max_segment`, which the data path reads as plain attributes.
    @property
    def peer_mss(self) -> int:
        return self._peer_mss

    @peer_mss.setter
    def peer_mss(self, value: int) -> None:
        self._peer_mss = value
        self._recompute_mss()

    @property
    def path_mss(self) -> int:
        return self._path_mss

    @path_mss.setter
    def path_mss(self, value: int) -> None:
        self._path_mss = value
        self._recompute_mss()

    @property
    def ts_ok(self) -> bool:
        return self._ts_ok

    @ts_ok.setter
    def ts_ok(self, value: bool) -> None:
        self._ts_ok = value
        self._recompute_mss()

    def _recompute_mss(self) -> None:
        """RFC 9293 3.7.1 effective send MSS, less the options every segment carries;
        and the largest segment we build: one MSS, or many with segmentation offload."""
        mss = min(self._peer_mss, self._path_mss)
        if self._ts_ok:
            mss -= TS_OPTION_LEN
        self.snd_mss = mss = max(mss, 64)
        tso = self.config.tso_max
        self.max_segment = mss * (tso // mss) if tso > mss else mss

    @property
    def flight_size(self) -> int:
        """RFC 5681 section 2 FlightSize: data sent but not yet cumulatively acked."""
        return self.snd_max - self.snd_una

    @property
    def data_end(self) -> int:
        """Sequence number just after the last byte the user has queued."""
        return self.iss + 1 + self.sendbuf.end

    def _pick_rcv_wscale(self) -> int:
        """RFC 7323 2.3: the smallest shift that lets the window cover the buffer."""
        shift = 0
        while (self.config.recv_buffer >> shift) > 0xFFFF and shift < 14:
            shift += 1
        return shift

    def _emit(self, kind: str, **fields: object) -> None:
        if self.on_event is not None:
            self.on_event(kind, fields)

    def _set_state(self, new: State) -> None:
        if new != self.state:
            self._emit("state", **{"from": str(self.state), "to": str(new)})
            self.state = new

    def _ts_now(self, now: float) -> int:
        return (int(now * 1000) + self.ts_offset) & MASK32

    def _unwrap(self, value: int, reference: int) -> int:
        """The unwrapped sequence number nearest to `reference` (RFC 9293 3.4)."""
        return reference + seq_diff(value, reference & MASK32)

    # ------------------------------------------------------------- user calls

    def connect(self, now: float) -> None:
        """Active OPEN (RFC 9293 3.10.1): send SYN, enter SYN-SENT."""
        self._set_state(State.SYN_SENT)
        self._send_syn(now, ack=False)
        self.snd_nxt = self.snd_max = self.iss + 1
        self._arm_rtx(now)

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
    ) -> Connection:
        """Passive OPEN: a listener got `syn` (RFC 9293 3.10.7.2); reply SYN-ACK."""
        conn = cls(
            local, remote, iss, config, now,
            ts_offset=ts_offset, path_mss=path_mss, on_event=on_event,
        )  # fmt: skip
        conn.passive = True
        conn.state = State.LISTEN
        conn._take_syn_options(syn)
        conn.irs = syn.seq
        conn.rcv_nxt = syn.seq + 1
        conn.rcv_right = conn.rcv_nxt
        conn.snd_wnd = syn.window  # RFC 7323 2.2: the window in a SYN is never scaled
        conn.max_snd_wnd = conn.snd_wnd
        conn._set_state(State.SYN_RECEIVED)
        conn._send_syn(now, ack=True)
        conn.snd_nxt = conn.snd_max = conn.iss + 1
        conn._arm_rtx(now)
        return conn

    def send(self, data: bytes | memoryview, now: float) -> int:
        """Queue data; returns how many bytes were accepted (RFC 9293 3.10.2)."""
        if self.error:
            raise OSError(self.error, errno.errorcode.get(self.error, "error"))
        if self.fin_queued or self.state not in CAN_SEND | {State.SYN_SENT, State.SYN_RECEIVED}:
            raise OSError(errno.EPIPE, "connection closing")
        accepted = self.sendbuf.write(data)
        if accepted and self.state in CAN_SEND:
            self._output(now)
        return accepted

    @property
    def send_free(self) -> int:
        return self.sendbuf.free

    @property
    def readable_bytes(self) -> int:
        return self.rx_len

    @property
    def at_eof(self) -> bool:
        """The peer's FIN has been received and all data before it read."""
        return self.fin_received and self.rx_len == 0

    def recv(self, limit: int, now: float) -> bytes:
        """Take up to `limit` bytes of in-order data (RFC 9293 3.10.3)."""
        if not self.rx or limit <= 0:
            return b""
        parts: list[bytes | memoryview] = []
        taken = 0
        while self.rx and taken < limit:
            chunk = self.rx[0]
            room = limit - taken
            if len(chunk) <= room:
                parts.append(self.rx.popleft())
                taken += len(chunk)
            else:
                parts.append(chunk[:room])
                self.rx[0] = chunk[room:]
                taken += room
        self.rx_len -= taken
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._maybe_window_update(now)
        return bytes(data)

    def shutdown_write(self, now: float) -> None:
        """CLOSE for the sending direction (RFC 9293 3.10.4): FIN after queued data."""
        if self.state in (State.SYN_SENT, State.LISTEN, State.CLOSED):
            # RFC 9293 3.10.4: CLOSE in SYN-SENT deletes the TCB -- timers included
            # (a bare state change left the SYN retransmission timer running).
            self._terminate(0)
            return
        if self.fin_queued:
            return
        self.fin_queued = True
        if self.state == State.ESTABLISHED:
            self._set_state(State.FIN_WAIT_1)
        elif self.state == State.CLOSE_WAIT:
            self._set_state(State.LAST_ACK)
        self._output(now)

    def close(self, now: float) -> None:
        """The user is done with the connection (RFC 9293 3.10.4).

        Unread data or SO_LINGER 0 turns the close into a reset (RFC 1122 4.2.2.13,
        RFC 2525 2.17), as Linux does.
        """
        self.user_closed = True
        if self.rx_len or self.config.linger_zero:
            self.abort(now)
            return
        self.shutdown_write(now)
        if self.state == State.FIN_WAIT_2:
            self.finwait2_deadline = now + self.config.fin_wait_2_timeout

    def abort(self, now: float) -> None:
        """ABORT (RFC 9293 3.10.5): drop everything; a reset tells the peer in
        SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1/2 and CLOSE-WAIT. In CLOSING, LAST-ACK and
        TIME-WAIT both sides have closed already: the TCB just goes (as in Linux)."""
        if self.state in RESET_ON_ABORT:
            self._send_rst(self.snd_nxt, with_ack=True)
        self._terminate(0)

    # ------------------------------------------------------------ ICMP errors

    def on_icmp_unreachable(self, err: int, now: float) -> None:
        """Destination unreachable (RFC 1122 4.2.3.9).

        In SYN-SENT a hard error (port or protocol unreachable) aborts the attempt, as
        Linux does; otherwise it is a soft error reported only if we later time out.
        """
        if self.state == State.SYN_SENT and err in (errno.ECONNREFUSED, errno.ENOPROTOOPT):
            self._terminate(err)
        else:
            self.soft_error = err

    def on_path_mtu(self, mtu: int, now: float) -> None:
        """ICMP fragmentation needed (RFC 1191 section 6.3): lower the path MSS."""
        new_mss = max(mtu - 40, 68 - 40 + 8)
        if new_mss < self.path_mss:
            self.path_mss = new_mss
            self.cc.mss = self.snd_mss
            # The segment that caused it was dropped: send again at once. Not a SYN
            # (SYN-SENT/SYN-RECEIVED): going back to SND.UNA = ISS there made the
            # SYN-ACK's ACK look bogus, or later sends peek before the buffer start.
            if self.flight_size and self.state in SYNCHRONIZED:
                self._retransmit_timeout_like(now, reason="pmtu")

    # ----------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        """The earliest time `on_timer` must be called, None if no timer runs."""
        best: float | None = None
        for deadline in (
            self.rtx_deadline,
            self.pto_deadline,
            self.delack_deadline,
            self.persist_deadline,
            self.keepalive_deadline,
            self.timewait_deadline,
            self.finwait2_deadline,
        ):
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        return best

    def on_timer(self, now: float) -> None:
        """Handle every timer whose deadline has passed."""
        if self.timewait_deadline is not None and now >= self.timewait_deadline:
            self.timewait_deadline = None
            self._terminate(0)  # RFC 9293 3.10.8: TIME-WAIT timeout deletes the TCB
            return
        if self.finwait2_deadline is not None and now >= self.finwait2_deadline:
            self.finwait2_deadline = None
            if self.state == State.FIN_WAIT_2:
                self._terminate(0)
                return
        if self.rtx_deadline is not None and now >= self.rtx_deadline:
            self.rtx_deadline = None
            self._on_retransmit_timeout(now)
        if self.state == State.CLOSED:
            return
        if self.pto_deadline is not None and now >= self.pto_deadline:
            self.pto_deadline = None
            self._send_loss_probe(now)
        if self.persist_deadline is not None and now >= self.persist_deadline:
            self.persist_deadline = None
            self._send_window_probe(now)
        if self.delack_deadline is not None and now >= self.delack_deadline:
            self.delack_deadline = None
            if self.ack_pending:
                self._send_ack(now)
        if self.keepalive_deadline is not None and now >= self.keepalive_deadline:
            self.keepalive_deadline = None
            self._on_keepalive_timer(now)

    def _arm_rtx(self, now: float) -> None:
        self.rtx_deadline = now + self.rto.rto

    def _on_retransmit_timeout(self, now: float) -> None:
        """RFC 6298 section 5.4-5.7 (and 3.8.1 of RFC 9293 for SYNs)."""
        self.retries += 1
        if self.state == State.SYN_SENT:
            if self.retries > self.config.syn_retries:
                self._terminate(self.soft_error or errno.ETIMEDOUT)
                return
            self.rto.backoff()
            self._note_retransmit(self.iss, 0, "rto")
            self._send_syn(now, ack=False)
            self._arm_rtx(now)
            return
        if self.state == State.SYN_RECEIVED:
            if self.retries > self.config.synack_retries:
                self._terminate(errno.ETIMEDOUT)
                return
            self.rto.backoff()
            self._note_retransmit(self.iss, 0, "rto")
            self._send_syn(now, ack=True)
            self._arm_rtx(now)
            return
        if self.flight_size == 0:
            return
        if self.retries > self.config.max_retries:
            self._terminate(self.soft_error or errno.ETIMEDOUT)
            return
        self._retransmit_timeout_like(now, reason="rto")

    def _retransmit_timeout_like(self, now: float, reason: str) -> None:
        # RFC 5681 section 3.1 eq. 4: ssthresh only on the first timeout of a series.
        if reason == "rto":
            if self.retries <= 1:
                self._arm_undo(now)
                self.cc.on_timeout(self.flight_size, now)
            else:
                self.cc.cwnd = self.snd_mss
            self.rto.backoff()  # RFC 6298 5.5
            self._emit_cwnd("rto")
        # RFC 6582 section 3.2 step 4 / RFC 6675 section 5.1: leave recovery, remember
        # how far we had sent so that later duplicate ACKs do not restart it.
        self.in_recovery = False
        self.recover = self.snd_max
        self.dupacks = 0
        # RFC 8985 7.1: TLP starts over after RTO recovery; no probe during it (7.2).
        self.tlp_end_seq = self.pto_deadline = None
        # RFC 2018 section 8: after a timeout, SACK information may be stale; resend all.
        self.sacked.clear()
        self.high_rxt = self.snd_una
        self.rtt_seq = None  # Karn's rule: no sample from retransmitted data
        self.snd_nxt = self.snd_una  # go back N
        self._output(now, reason=reason, force_one=True)
        self._arm_rtx(now)

    # ------------------------------------------------- tail loss probe (RFC 8985)

    def _arm_pto(self, now: float) -> None:
        """RFC 8985 7.2: (re)start the probe timeout after sending new data or on an
        ACK of new data.

        Only with SACK (RFC 8985 section 2 and 7: the probe is there to elicit SACK
        information), outside fast recovery and RTO recovery (SND.UNA < "recover"),
        and with no probe outstanding (at most one, 7.3). While segments are SACKed
        the timer is not restarted (7.2); one already running is left to fire.

        PTO = 2 * SRTT, plus TLP.max_ack_delay when one segment is in flight (the
        receiver may delay its ACK); 1 s before any RTT sample. RFC 8985 then clamps
        the PTO to the RTO's expiry; here a PTO that would not come before the RTO is
        not armed at all: the RTO (already running) handles that loss.
        """
        if (
            not self.sack_ok
            or self.in_recovery
            or self.snd_una < self.recover
            or self.tlp_end_seq is not None
            or self.rtx_deadline is None
            or self.flight_size == 0
        ):
            self.pto_deadline = None
            return
        if self.sacked:
            return
        srtt = self.rto.srtt
        if srtt is None:
            pto = TLP_DEFAULT_PTO
        else:
            pto = 2 * srtt
            if self.flight_size <= self.snd_mss:
                pto += TLP_MAX_ACK_DELAY
        deadline = now + pto
        self.pto_deadline = deadline if deadline < self.rtx_deadline else None

    def _send_loss_probe(self, now: float) -> None:
        """RFC 8985 7.3: the PTO expired. Send one new MSS-sized segment if there is
        unsent data and the receive window allows it (cwnd is not consulted), else
        retransmit the highest segment sent; remember TLP.end_seq; re-arm the RTO,
        not the PTO. The ACK the probe elicits (with SACK blocks) lets SACK recovery
        or Early Retransmit repair a tail loss without waiting for the RTO."""
        if (
            self.state not in CAN_OUTPUT
            or self.flight_size == 0
            or self.tlp_end_seq is not None
            or self.in_recovery
            or self.snd_una < self.recover
        ):
            return
        mss = self.snd_mss
        n = min(self.data_end - self.snd_max, mss)
        if n > 0 and self.snd_nxt == self.snd_max and self.snd_max + n <= self.snd_una + self.snd_wnd:
            start = self.snd_max
            fin = self.fin_queued and start + n == self.data_end
            payload = self.sendbuf.peek(start - self.iss - 1, n)
            self.tlp_is_retrans = False
        else:
            # The last segment: its end aligned with SND.MAX (and the FIN if sent),
            # sized so that the SACK blocks riding along do not shorten it.
            fin = self.fin_queued and self.snd_max == self.data_end + 1
            stop = self.snd_max - (1 if fin else 0)
            start = max(self.snd_una, stop - (mss - self._sack_option_len()))
            payload = self.sendbuf.peek(start - self.iss - 1, stop - start) if stop > start else b""
            self.tlp_is_retrans = True
        sent = self._transmit_data(start, payload, now, fin=fin, reason="tlp")
        self.tlp_end_seq = self.snd_max
        self._emit("tlp", seq=start & MASK32, len=sent, new_data=not self.tlp_is_retrans)
        self._arm_rtx(now)

    def _tlp_on_ack(self, ack: int, seg: TCPSegment, now: float) -> None:
        """RFC 8985 7.4: did the probe repair a loss? Then reduce the window.

        A probe of new data, or one whose ACK carries a D-SACK for it (RFC 2883: the
        original had arrived too), says nothing about loss. An ACK beyond TLP.end_seq
        with no D-SACK seen means the probe was the only copy that got through: one
        loss, repaired by the probe, to which congestion control must still respond
        (RFC 8985 7.4.2; like Linux, cwnd and ssthresh go to half the window).
        """
        end = self.tlp_end_seq
        if end is None or ack < end:
            return
        if not self.tlp_is_retrans:
            self.tlp_end_seq = None
            return
        blocks = seg.options.sack_blocks
        if blocks and self.sack_ok:
            s = self._unwrap(blocks[0][0], ack)
            e = self._unwrap(blocks[0][1], ack)
            if e <= ack and s < end <= e + 1:  # D-SACK of the probe (+1: its FIN)
                self.tlp_end_seq = None
                return
        if ack > end:
            self.tlp_end_seq = None
            self.cc.on_congestion(self.cc.cwnd, now)
            self._emit_cwnd("tlp_loss")

    def _send_window_probe(self, now: float) -> None:
        """RFC 9293 3.8.6.1: probe a zero window with one byte beyond it."""
        if self.state not in CAN_OUTPUT:
            return
        if self.snd_wnd > 0:
            # RFC 9293 3.8.6.2.1 (4) / RFC 1122 4.2.3.4: the SWS "override timeout".
            # Nothing is in flight and the window is open but too small for sender SWS
            # avoidance; send what fits rather than wait for an update that may never come.
            n = min(self.snd_una + self.snd_wnd - self.snd_nxt, self.data_end - self.snd_nxt,
                    self.snd_mss)  # fmt: skip
            if n > 0 and self.snd_nxt == self.snd_una:
                payload = self.sendbuf.peek(self.snd_nxt - self.iss - 1, n)
                self._transmit_data(self.snd_nxt, payload, now, fin=False, reason=None)
            return
        if self.data_end <= self.snd_una:
            return
        # RFC 1122 4.2.2.17: keep probing as long as the receiver answers (an ACK
        # resets `probes_out`); one that stays silent is given up on like a
        # retransmission (R2), sooner when no application holds the connection.
        self.probes_out += 1
        limit = min(self.config.max_retries, 8) if self.user_closed else self.config.max_retries
        if self.probes_out > limit:
            self._terminate(errno.ETIMEDOUT)
            return
        self.snd_nxt = self.snd_una
        payload = self.sendbuf.peek(self.snd_una - self.iss - 1, 1)
        self._transmit_data(self.snd_una, payload, now, fin=False, reason="probe")
        # The probe byte lies beyond the window: the receiver most likely dropped it.
        # Send from SND.UNA again next time, or a window update that does not ack the
        # byte would leave it unsent with no timer running (a stall).
        self.snd_nxt = self.snd_una
        self.persist_backoff = min(self.persist_backoff + 1, 10)
        delay = min(self.rto.rto * (1 << self.persist_backoff), self.config.max_rto)
        self.persist_deadline = now + delay

    def _on_keepalive_timer(self, now: float) -> None:
        """RFC 1122 4.2.3.6: probe an idle connection with SEG.SEQ = SND.NXT - 1."""
        if not self.config.keepalive or self.state not in SYNCHRONIZED:
            return
        due = self.last_recv_time + self.config.keepalive_idle
        if now < due:  # (compared as the deadline was computed: no float round-off loop)
            self.keepalive_deadline = due
            return
        if self.keepalive_probes >= self.config.keepalive_count:
            self._terminate(errno.ETIMEDOUT)
            return
        self.keepalive_probes += 1
        self._send_segment(self.snd_nxt - 1, ACK, b"", now)
        self.keepalive_deadline = now + self.config.keepalive_interval

    def set_keepalive(self, on: bool, now: float) -> None:
        self.config.keepalive = on
        if on and self.state in SYNCHRONIZED:
            self.keepalive_deadline = self.last_recv_time + self.config.keepalive_idle
        elif not on:
            self.keepalive_deadline = None

    def _terminate(self, err: int) -> None:
        """Delete the TCB (RFC 9293 3.10.7, "enter CLOSED"). `err` goes to the user."""
        if err and not self.error:
            self.error = err
        self._set_state(State.CLOSED)
        self.rtx_deadline = self.delack_deadline = self.persist_deadline = None
        self.keepalive_deadline = self.timewait_deadline = self.finwait2_deadline = None
        self.pto_deadline = None

    def _enter_time_wait(self, now: float) -> None:
        self._set_state(State.TIME_WAIT)
        self.rtx_deadline = self.persist_deadline = self.keepalive_deadline = None
        self.finwait2_deadline = self.pto_deadline = None
        self.timewait_deadline = now + 2 * self.config.msl

    # ---------------------------------------------------------------- output

    def take_output(self) -> list[TCPSegment]:
        """Segments to transmit, in order; the caller sends them now."""
        out = self.output
        self.output = []
        return out

    def _advertised_window(self) -> int:
        """The window field to send (RFC 9293 3.8.6.2.2 receiver SWS avoidance).

        The right edge moves only by at least min(buffer / 2, MSS) and never left
        (RFC 9293 3.8.6: "the window should not shrink").
        """
        free = max(self.config.recv_buffer - self.rx_len, 0)
        right = self.rcv_nxt + free
        step = min(self.config.recv_buffer // 2, self.snd_mss)
        if right - self.rcv_right >= step or self.rcv_right < self.rcv_nxt:
            self.rcv_right = right
        window = max(self.rcv_right - self.rcv_nxt, 0)
        return min(window >> self.rcv_wscale, 0xFFFF)

    def _options(self, now: float, syn: bool) -> TCPOptions:
        opts = TCPOptions(mss=None, wscale=None, sack_permitted=False, sack_blocks=[], timestamp=None)
        if syn:
            opts.mss = self.config.mss if self.path_mss >= self.config.mss else self.path_mss
            if self._offered_ws and (not self.passive or self.snd_wscale_offered):
                opts.wscale = self.rcv_wscale
            if self._offered_sack and (not self.passive or self.sack_ok):
                opts.sack_permitted = True
            if self._offered_ts and (not self.passive or self.ts_ok):
                # RFC 7323 3.2: a segment with ACK set MUST echo TS.Recent; that
                # includes the SYN-ACK of a simultaneous open (not only passive ones).
                echo = self.ts_recent if self.state == State.SYN_RECEIVED else 0
                opts.timestamp = (self._ts_now(now), echo)
            return opts
        if self.ts_ok:
            opts.timestamp = (self._ts_now(now), self.ts_recent)
        if self.sack_ok and self.reassembler.pending_bytes:
            base = self.irs + 1
            opts.sack_blocks = [
                ((base + s) & MASK32, (base + e) & MASK32)
                for s, e in self.reassembler.sack_blocks(3 if self.ts_ok else 4)
            ]
        return opts

    def _send_segment(
        self, seq: int, flags: int, payload: bytes | memoryview, now: float, *, syn: bool = False
    ) -> None:
        """Build one segment; ACK-bearing segments carry RCV.NXT and the window."""
        window = self._advertised_window() if not syn else min(self.config.recv_buffer, 0xFFFF)
        ack = self.rcv_nxt & MASK32 if flags & ACK else 0
        seg = TCPSegment(
            src_port=self.local[1],
            dst_port=self.remote[1],
            seq=seq & MASK32,
            ack=ack,
            flags=flags,
            window=window,
            urgent=0,
            options=self._options(now, syn),
            payload=payload,
        )
        if flags & ACK:
            # This segment acknowledges everything received: no ACK is owed any more.
            self.ack_pending = False
            self.unacked_bytes = 0
            self.delack_deadline = None
            self.last_ack_sent = self.rcv_nxt
        self.segments_out += 1
        self.output.append(seg)

    def _send_syn(self, now: float, ack: bool) -> None:
        self._send_segment(self.iss, SYN | (ACK if ack else 0), b"", now, syn=True)
        if ack:
            # The window in our SYN-ACK is unscaled (RFC 7323 2.2); that is our offer.
            self.rcv_right = max(self.rcv_right, self.rcv_nxt + min(self.config.recv_buffer, 0xFFFF))

    def _send_ack(self, now: float) -> None:
        self._send_segment(self.snd_nxt, ACK, b"", now)

    def _send_rst(self, seq: int, *, with_ack: bool) -> None:
        """A reset: <SEQ=seq><ACK=RCV.NXT><CTL=RST,ACK> when aborting a connection, or
        <SEQ=SEG.ACK><CTL=RST> in answer to an unacceptable ACK (RFC 9293 3.10.7)."""
        seg = TCPSegment(
            src_port=self.local[1], dst_port=self.remote[1], seq=seq & MASK32,
            ack=self.rcv_nxt & MASK32 if with_ack else 0, flags=RST | ACK if with_ack else RST,
            window=0, urgent=0, options=TCPOptions(None, None, False, [], None), payload=b"",
        )  # fmt: skip
        self.output.append(seg)

    def _send_challenge_ack(self, now: float) -> None:
        """RFC 5961 section 3.2/4.2/5.2 challenge ACK, rate-limited (section 7)."""
        while self.challenge_acks and now - self.challenge_acks[0] > 1.0:
            self.challenge_acks.popleft()
        if len(self.challenge_acks) >= 10:
            self._emit("drop", reason="challenge_ack_rate_limited")
            return
        self.challenge_acks.append(now)
        self._emit("challenge_ack")
        self._send_ack(now)

    def _note_retransmit(self, seq: int, length: int, reason: str) -> None:
        self.retransmits += 1
        self.rtt_seq = None  # Karn's rule (RFC 6298 section 3)
        self.rtt_after_retransmit = self.ts_ok or self._offered_ts  # (SYN: not agreed yet)
        self._emit("retransmit", seq=seq & MASK32, len=length, reason=reason)

    def _emit_cwnd(self, reason: str) -> None:
        if self.on_event is not None:
            self._emit("cwnd", cwnd=self.cc.cwnd, ssthresh=self.cc.ssthresh, reason=reason)

    def _sack_option_len(self) -> int:
        """Bytes the SACK blocks add to the segments `_options` builds now."""
        if not (self.sack_ok and self.reassembler.pending_bytes):
            return 0
        n = len(self.reassembler.sack_blocks(3 if self.ts_ok else 4))
        return 4 + 8 * n if n else 0  # NOP NOP SACK(2 + 8n)

    def _transmit_data(
        self, seq: int, payload: bytes, now: float, *, fin: bool, reason: str | None
    ) -> int:
        """Send [seq, seq+len(payload)) (+FIN) and do the bookkeeping around it;
        return how many payload bytes went (fewer when SACK blocks must fit)."""
        if payload:
            sack = self._sack_option_len()
            if sack and len(payload) > self.snd_mss - sack:
                # RFC 9293 3.7.1: options count against the MSS, and `snd_mss` leaves
                # room for timestamps only. While SACK blocks ride along, send one
                # segment that fits (a full one would exceed the path MTU and be
                # dropped, again on every retransmission).
                payload = payload[: self.snd_mss - sack]
                fin = False
        flags = ACK | (FIN if fin else 0)
        if payload:
            flags |= PSH if seq + len(payload) == self.data_end else 0
        end = seq + len(payload) + (1 if fin else 0)
        if seq < self.snd_max:
            self._note_retransmit(seq, len(payload), reason or "rto")
            if self.ts_ok:
                self.rtx_tsval = self._ts_now(now)
        elif self.rtt_seq is None and end > seq:
            self.rtt_seq = end  # time this segment (RFC 6298 section 3)
            self.rtt_time = now
        self._send_segment(seq, flags, payload, now)
        self.bytes_sent += len(payload)
        if end > self.snd_nxt:
            self.snd_nxt = end
        if end > self.snd_max:
            self.snd_max = end
        if self.rtx_deadline is None and reason != "probe":
            self._arm_rtx(now)  # RFC 6298 5.1
        return len(payload)

    def _output(self, now: float, reason: str | None = None, force_one: bool = False) -> None:
        """Send what the windows allow (RFC 9293 3.8.6.2.1, RFC 5681, RFC 6675 5)."""
        if self.state not in CAN_OUTPUT:
            return
        if self.in_recovery and self.sack_ok:
            self._sack_recovery_output(now)
            return
        mss = self.snd_mss
        sent_new = False
        while True:
            data_end = self.data_end
            avail = data_end - self.snd_nxt
            fin_pending = self.fin_queued and self.snd_nxt <= data_end
            if avail <= 0 and not fin_pending:
                break
            window_room = self.snd_una + self.snd_wnd - self.snd_nxt
            # RFC 3042 Limited Transmit: each of the first two duplicate ACKs lets one
            # more new segment out, so that a small window can still get 3 dupacks.
            # Only previously unsent data (RFC 3042 section 2): after an RTO's go-back-N
            # the bonus would let retransmissions beyond the 1-SMSS loss window out.
            bonus = (
                min(self.dupacks, 2) * mss
                if not self.in_recovery and self.snd_nxt == self.snd_max
                else 0
            )
            cwnd_room = self.cc.cwnd + bonus - (self.snd_nxt - self.snd_una)
            room = min(window_room, cwnd_room)
            if force_one:
                room = max(room, min(mss, avail))
            n = max(min(avail, room, self.max_segment), 0)
            fin = fin_pending and self.snd_nxt + n == data_end
            if n == 0 and not fin:
                break
            if n < mss and not fin and not force_one:
                if n < avail:
                    # Sender SWS avoidance (RFC 9293 3.8.6.2.1): wait for a bigger window
                    # unless it is at least half the largest window the peer offered.
                    if n < self.max_snd_wnd // 2:
                        break
                elif self.snd_nxt > self.snd_una and not self.config.nodelay:
                    break  # Nagle (RFC 1122 4.2.3.4): one small segment in flight at most
            payload = self.sendbuf.peek(self.snd_nxt - self.iss - 1, n) if n else b""
            if self.snd_nxt == self.snd_max:
                sent_new = True
            self._transmit_data(self.snd_nxt, payload, now, fin=fin, reason=reason)
            force_one = False
            if fin:
                break
        if sent_new:
            self._arm_pto(now)  # RFC 8985 7.2: after sending new data
        self._check_persist(now)

    def _check_persist(self, now: float) -> None:
        """RFC 9293 3.8.6.1: start probing when a zero window blocks queued data.

        With nothing in flight, queued data can also be blocked by an open window too
        small for sender SWS avoidance: the same timer then is the "override timeout"
        of RFC 9293 3.8.6.2.1 (4) (see `_send_window_probe`).
        """
        blocked = self.data_end > self.snd_nxt and self.snd_nxt == self.snd_una
        if (
            self.snd_wnd == 0
            and blocked
            and self.persist_deadline is None
        ):
            self.persist_deadline = now + self.rto.rto
        elif self.snd_wnd > 0:
            if blocked:
                if self.persist_deadline is None:
                    self.persist_deadline = now + self.rto.rto
            else:
                self.persist_deadline = None
                self.persist_backoff = 0

    # ------------------------------------------------------------ SACK recovery

    def _sacked_between(self, start: int, end: int) -> int:
        total = 0
        for s, e in self.sacked:
            if e <= start:
                continue
            if s >= end:
                break
            total += min(e, end) - max(s, start)
        return total

    def _lost_boundary(self, dup_thresh: int = DUP_THRESH) -> int:
        """RFC 6675 IsLost: un-SACKed bytes below this point are deemed lost.

        A byte is lost when more than (DupThresh - 1) * SMSS bytes above it have been
        SACKed (RFC 6675 section 4, IsLost, second condition). Early Retransmit passes
        its lower threshold (RFC 5827 section 3.2).
        """
        need = (dup_thresh - 1) * self.snd_mss + 1
        acc = 0
        for s, e in reversed(self.sacked):
            size = e - s
            if acc + size >= need:
                return e - (need - acc)
            acc += size
        return self.snd_una

    def _pipe(self) -> int:
        """RFC 6675 section 4 SetPipe, in bytes, computed from ranges not segments."""
        lost = max(self._lost_boundary(), self.snd_una)

        def unsacked(a: int, b: int) -> int:
            return max(b - a, 0) - self._sacked_between(a, b) if b > a else 0

        return (
            unsacked(self.snd_una, self.snd_max)
            - unsacked(self.snd_una, min(lost, self.snd_max))
            + unsacked(self.snd_una, min(self.high_rxt, self.snd_max))
        )

    def _next_hole(self, start: int, limit: int) -> tuple[int, int] | None:
        """First un-SACKed range at or after `start` and below `limit`."""
        pos = start
        for s, e in self.sacked:
            if e <= pos:
                continue
            if s > pos:
                break
            pos = e
        if pos >= limit:
            return None
        end = limit
        for s, _e in self.sacked:
            if s > pos:
                end = min(end, s)
                break
        return pos, end

    def _sack_recovery_output(self, now: float) -> None:
        """RFC 6675 section 5 steps (C): send while cwnd - pipe >= 1 SMSS."""
        mss = self.snd_mss
        for _ in range(1024):
            if self.cc.cwnd - self._pipe() < mss:
                break
            lost = self._lost_boundary()
            # NextSeg rule 1: the first lost, un-SACKed, not yet retransmitted data.
            hole = self._next_hole(max(self.high_rxt, self.snd_una), min(lost, self.snd_max))
            if hole is not None:
                start, end = hole
                n = min(end - start, mss)
                fin = self.fin_queued and start + n == self.data_end and start + n < self.snd_max
                payload = self.sendbuf.peek(start - self.iss - 1, n) if n else b""
                sent = self._transmit_data(start, payload, now, fin=fin, reason="sack")
                self.high_rxt = start + max(sent, 1)
                continue
            # Rule 2: new data, if the receiver's window allows.
            avail = self.data_end - self.snd_max
            window_room = self.snd_una + self.snd_wnd - self.snd_max
            n = min(avail, window_room, mss)
            fin = self.fin_queued and self.snd_max <= self.data_end and self.snd_max + n == self.data_end
            if n > 0 or fin:
                self.snd_nxt = self.snd_max
                payload = self.sendbuf.peek(self.snd_max - self.iss - 1, n) if n else b""
                self._transmit_data(self.snd_max, payload, now, fin=fin, reason=None)
                continue
            # Rule 3: un-SACKed data below the highest SACKed byte, not lost yet.
            top = self.sacked[-1][0] if self.sacked else self.snd_una
            hole = self._next_hole(max(self.high_rxt, self.snd_una), top)
            if hole is not None:
                start, end = hole
                n = min(end - start, mss)
                payload = self.sendbuf.peek(start - self.iss - 1, n)
                sent = self._transmit_data(start, payload, now, fin=False, reason="sack")
                self.high_rxt = start + sent
                continue
            break

    def _update_scoreboard(self, blocks: list[tuple[int, int]]) -> bool:
        """Merge SACK blocks (RFC 2018 section 4) into the scoreboard; True if any is new."""
        changed = False
        for raw_start, raw_end in blocks:
            start = self._unwrap(raw_start, self.snd_una)
            end = self._unwrap(raw_end, self.snd_una)
            # Ignore blocks at or below SND.UNA (D-SACK, RFC 2883) and beyond what we sent.
            if not (self.snd_una < end <= self.snd_max and start < end):
                continue
            start = max(start, self.snd_una)
            if any(s <= start and end <= e for s, e in self.sacked):
                continue
            changed = True
            kept: list[list[int]] = []
            for s, e in self.sacked:
                if e < start or s > end:
                    kept.append([s, e])
                else:
                    start, end = min(s, start), max(e, end)
            kept.append([start, end])
            kept.sort()
            self.sacked = kept
        return changed

    # --------------------------------------------------------- segment arrival

    def on_segment(self, seg: TCPSegment, now: float) -> None:
        """SEGMENT ARRIVES (RFC 9293 section 3.10.7)."""
        self.segments_in += 1
        ts = seg.options.timestamp
        self._seg_tsecr = ts[1] if ts is not None and self.ts_ok else None
        if self.state == State.ESTABLISHED and self._predicted(seg, now):
            pass
        elif self.state == State.CLOSED:
            return
        elif self.state == State.SYN_SENT:
            self._on_segment_syn_sent(seg, now)
        else:
            self._on_segment_synchronized(seg, now)
        if self.state == State.CLOSED:
            return
        if self.ack_pending and self.delack_deadline is None:
            self.delack_deadline = now + self.config.delayed_ack

    def _predicted(self, seg: TCPSegment, now: float) -> bool:
        """Header prediction: the two common cases, done in few steps.

        Van Jacobson's observation (TCP/IP Illustrated vol. 2, 28.4; RFC 7323 appendix
        keeps it working with timestamps): on an ESTABLISHED connection most segments
        are either the next in-order data, or a pure ACK of new data, with no flags but
        ACK/PSH and an unchanged window. (Van Jacobson's data case also asks that
        nothing new be acknowledged; here in-order data may carry a new ACK, which is
        processed first, as 3.10.7.4 orders it: request/response traffic is all such
        segments.) For those the
        full processing of RFC 9293 3.10.7.4 reduces to what is below; anything else
        returns False and takes the full path.
        """
        if seg.flags & ~PSH != ACK or self.in_recovery or self.peer_fin_seq is not None:
            return False
        seq = self.rcv_nxt
        if seg.seq != seq & MASK32 or seg.window << self.snd_wscale != self.snd_wnd:
            return False
        options = seg.options
        ts = options.timestamp
        if self.ts_ok and (ts is None or seq_diff(ts[0], self.ts_recent) < 0):
            return False  # PAWS or a missing timestamp: the full path decides
        if options.sack_blocks:
            return False
        ack = self.snd_una + seq_diff(seg.ack, self.snd_una & MASK32)
        new_ack = ack != self.snd_una
        if new_ack and not self.snd_una < ack <= self.snd_max:
            return False
        payload = seg.payload
        n = len(payload)
        if n:
            # In-order data that fits the window (and may acknowledge new data too,
            # as every request after the first does in a request/response exchange).
            if (self.reassembler.pending_bytes or self.user_closed or self.rx_pressure
                    or seq + n > self.rcv_right):
                return False
        elif not new_ack:
            return False  # a duplicate ACK or a window probe: the full path counts it
        if ts is not None and seq <= self.last_ack_sent:
            self.ts_recent = ts[0]  # RFC 7323 4.3
        if new_ack:  # RFC 9293 3.10.7.4 "fifth": the ACK before the text
            if self.tlp_end_seq is not None:
                self._tlp_on_ack(ack, seg, now)
            if self.undo_ts is not None:
                self._check_undo(ts, now)
            self._on_new_ack(ack, now)
            self.snd_wl1 = seq
            self.snd_wl2 = ack
        if n:
            ready = self.reassembler.insert(seq - self.irs - 1, payload)
            self.rx.append(ready)
            self.rx_len += n
            self.rcv_nxt = seq + n
            self.bytes_received += n
            self.unacked_bytes += n
            self.ack_pending = True
            if new_ack or self.data_end > self.snd_nxt:
                self._output(now)  # data of ours to send carries the ACK
            if self.ack_pending and self.unacked_bytes >= 2 * self.snd_mss:
                if self.defer_acks:  # see _on_segment_synchronized
                    self.ack_deferred = True
                else:
                    self._send_ack(now)
        else:
            self._output(now)
        self.last_recv_time = now
        self.keepalive_probes = 0
        self.probes_out = 0
        if self.config.keepalive:
            self.keepalive_deadline = now + self.config.keepalive_idle
        return True

    def _take_syn_options(self, seg: TCPSegment) -> None:
        """Settle the options the SYN offers (RFC 9293 3.7.1, RFC 7323 2/3, RFC 2018 2)."""
        opts = seg.options
        if opts.mss is not None:
            self.peer_mss = max(opts.mss, 64)
        if opts.wscale is not None and self._offered_ws:
            self.snd_wscale = min(opts.wscale, 14)  # RFC 7323 2.3: larger than 14 means 14
            self.snd_wscale_offered = True
        else:
            self.snd_wscale = 0
            self.rcv_wscale = 0
        self.sack_ok = bool(opts.sack_permitted and self._offered_sack)
        if opts.timestamp is not None and self._offered_ts:
            self.ts_ok = True
            self.ts_recent = opts.timestamp[0]
        self.cc.mss = self.snd_mss

    def _on_segment_syn_sent(self, seg: TCPSegment, now: float) -> None:
        """RFC 9293 3.10.7.3: SEGMENT ARRIVES in SYN-SENT."""
        flags = seg.flags
        ack = self._unwrap(seg.ack, self.snd_una)
        if flags & ACK:
            # "If SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset (unless RST)".
            if ack <= self.iss or ack > self.snd_nxt:
                if not flags & RST:
                    self._send_rst(seg.ack, with_ack=False)
                self._emit("drop", reason="bad_ack_in_syn_sent")
                return
        if flags & RST:
            if flags & ACK:
                self._terminate(errno.ECONNREFUSED)  # "connection reset" -> refused
            return
        if not flags & SYN:
            return
        self._take_syn_options(seg)
        if self.ts_ok and seg.options.timestamp is not None:
            # Timestamps were just agreed: the SYN-ACK's echo times the SYN it answers,
            # also after a retransmitted SYN (RFC 7323 4.1; on_segment could not know).
            self._seg_tsecr = seg.options.timestamp[1]
        if not self.snd_wscale_offered:
            self.rcv_wscale = 0
        self.irs = seg.seq
        self.rcv_nxt = seg.seq + 1
        self.rcv_right = self.rcv_nxt
        self.last_recv_time = now
        if flags & ACK:
            self.snd_una = ack
            self.snd_wnd = seg.window  # RFC 7323 2.2: never scaled in a SYN
            self.snd_wl1 = seg.seq
            self.snd_wl2 = ack
            self.max_snd_wnd = self.snd_wnd
            self._rtt_on_ack(ack, now)
            self.retries = 0
            self.rtx_deadline = None
            self._set_state(State.ESTABLISHED)
            self._on_established(now)
            self._send_ack(now)
        else:
            # Simultaneous open (RFC 9293 3.10.7.3 and figure 8): SYN-RECEIVED, SYN-ACK.
            self._set_state(State.SYN_RECEIVED)
            self.snd_wnd = seg.window
            self._send_syn(now, ack=True)

    def _on_established(self, now: float) -> None:
        if self.retransmits and self.rto.srtt is None:
            # RFC 6298 5.7: the SYN (or SYN-ACK) timed out and no RTT was measured
            # (Karn's rule, no timestamps): data starts with an RTO of 3 s.
            self.rto.restart(HANDSHAKE_TIMEOUT_FALLBACK)
        if self.config.keepalive:
            self.keepalive_deadline = now + self.config.keepalive_idle
        self._emit_cwnd("init")
        self._output(now)

    def _acceptable(self, seq: int, seg_len: int) -> bool:
        """RFC 9293 3.10.7.4 first check: the four cases of segment acceptability."""
        rcv_wnd = max(self.rcv_right - self.rcv_nxt, 0)
        if seg_len == 0:
            if rcv_wnd == 0:
                return seq == self.rcv_nxt
            return self.rcv_nxt <= seq < self.rcv_nxt + rcv_wnd
        if rcv_wnd == 0:
            return False
        last = seq + seg_len - 1
        return (self.rcv_nxt <= seq < self.rcv_nxt + rcv_wnd) or (
            self.rcv_nxt <= last < self.rcv_nxt + rcv_wnd
        )

    def _on_segment_synchronized(self, seg: TCPSegment, now: float) -> None:
        """RFC 9293 3.10.7.4: SYN-RECEIVED and the synchronized states."""
        flags = seg.flags
        seq = self._unwrap(seg.seq, self.rcv_nxt)
        payload = seg.payload
        syn = bool(flags & SYN)
        fin = bool(flags & FIN)

        # Simultaneous open: our peer's SYN-ACK repeats its SYN at IRS. Trim the SYN
        # as a duplicate (RFC 9293 3.10.7.4, "straddle" rule) and process the ACK.
        if syn and self.state == State.SYN_RECEIVED and seq == self.irs and flags & ACK:
            syn = False
            seq += 1

        # PAWS (RFC 7323 section 5.3): drop segments with an older timestamp.
        ts = seg.options.timestamp
        if self.ts_ok and ts is not None and not flags & RST:
            # Like Linux (tcp_disordered_ack), a pure ACK reordered behind a later one is
            # still accepted: PAWS protects data, and dropping ACKs would starve recovery.
            pure_ack = not payload and not flags & (SYN | FIN) and seq == self.rcv_nxt
            if (
                seq_diff(ts[0], self.ts_recent) < 0
                and self.state in SYNCHRONIZED
                and not pure_ack
            ):
                self._emit("drop", reason="paws")
                self._send_ack(now)
                return

        seg_len = len(payload) + (1 if syn else 0) + (1 if fin else 0)
        if not self._acceptable(seq, seg_len):
            # "If an incoming segment is not acceptable, an acknowledgment should be
            # sent in reply (unless the RST bit is set)".
            if not flags & RST:
                self._emit("drop", reason="out_of_window")
                self._send_ack(now)
                if self.state == State.TIME_WAIT and fin:
                    # RFC 9293 3.10.7.4: a retransmitted FIN (an old duplicate, so
                    # never "acceptable") is acknowledged and restarts the 2 MSL timeout.
                    self.timewait_deadline = now + 2 * self.config.msl
            else:
                self._emit("drop", reason="rst_out_of_window")
            return
        self.last_recv_time = now
        self.keepalive_probes = 0
        if self.config.keepalive and self.state in SYNCHRONIZED:
            self.keepalive_deadline = now + self.config.keepalive_idle

        # RFC 7323 section 4.3: remember the timestamp to echo.
        if self.ts_ok and ts is not None and seq <= self.last_ack_sent:
            if seq_diff(ts[0], self.ts_recent) >= 0:
                self.ts_recent = ts[0]

        # Second: the RST bit (RFC 5961 section 3.2).
        if flags & RST:
            if seq != self.rcv_nxt:
                self._send_challenge_ack(now)
                return
            if self.state == State.SYN_RECEIVED:
                self._terminate(errno.ECONNREFUSED if not self.passive else errno.ECONNRESET)
            elif self.state in (State.CLOSING, State.LAST_ACK, State.TIME_WAIT):
                self._terminate(0)
            else:
                self._terminate(errno.ECONNRESET)
            return

        # Fourth: the SYN bit (RFC 5961 section 4.2: challenge ACK, whatever SEG.SEQ).
        if syn:
            if self.state == State.SYN_RECEIVED and self.passive:
                # RFC 9293 3.10.7.4: a passive SYN-RECEIVED connection "returns to LISTEN";
                # ours was made for this one SYN, so it simply goes away.
                self._terminate(errno.ECONNRESET)
                return
            self._send_challenge_ack(now)
            return

        # Fifth: the ACK field.
        if not flags & ACK:
            self._emit("drop", reason="no_ack")
            return
        if not self._process_ack(seg, seq, now):
            return

        # Seventh: the segment text.
        if payload and self.state in CAN_RECEIVE:
            self._receive_data(seq, payload, now)
        elif payload:
            self._emit("drop", reason=f"data_in_{self.state}")

        # Eighth: the FIN bit.
        if fin:
            self.peer_fin_seq = seq + len(payload)
        if self.peer_fin_seq is not None and self.peer_fin_seq == self.rcv_nxt:
            self._receive_fin(now)

        self._output(now)
        if self._ack_now and self.ack_pending:
            self._send_ack(now)
        elif self.ack_pending and self.unacked_bytes >= 2 * self.snd_mss:
            # RFC 1122 4.2.3.2 / RFC 5681 4.2: ACK at least every second full segment.
            # A driver that reads packets in batches may ask to send that ACK once,
            # after the batch (`defer_acks`), as Linux does with GRO.
            if self.defer_acks:
                self.ack_deferred = True
            else:
                self._send_ack(now)
        self._ack_now = False

    def flush_deferred_ack(self, now: float) -> None:
        """Send the ACK put off by `defer_acks`, if nothing has carried it since."""
        self.ack_deferred = False
        if self.ack_pending and self.state != State.CLOSED:
            self._send_ack(now)

    def _process_ack(self, seg: TCPSegment, seq: int, now: float) -> bool:
        """RFC 9293 3.10.7.4 "fifth, check the ACK field"; False = drop the segment."""
        ack = self._unwrap(seg.ack, self.snd_una)
        self.probes_out = 0  # the peer is alive (RFC 1122 4.2.2.17)
        if self.state == State.SYN_RECEIVED:
            if self.snd_una < ack <= self.snd_max:
                self.snd_una = ack
                # RFC 7323 2.2: the window of a segment with SYN set (the peer's
                # SYN-ACK in a simultaneous open) is never scaled.
                self.snd_wnd = seg.window if seg.flags & SYN else seg.window << self.snd_wscale
                self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
                self.snd_wl1 = seq
                self.snd_wl2 = ack
                self._rtt_on_ack(ack, now)
                self.retries = 0
                self.rtx_deadline = None
                self._set_state(State.ESTABLISHED)
                self._on_established(now)
                if self.fin_queued:
                    self._set_state(State.FIN_WAIT_1)
                    self._output(now)
                return True
            self._send_rst(seg.ack, with_ack=False)  # "<SEQ=SEG.ACK><CTL=RST>"
            self._emit("drop", reason="bad_ack_in_syn_received")
            return False

        # RFC 5961 section 5.2: acceptable if SND.UNA - MAX.SND.WND =< SEG.ACK =< SND.NXT.
        if ack > self.snd_max:
            self._emit("drop", reason="ack_of_unsent_data")
            self._send_ack(now)
            return False
        if ack < self.snd_una - max(self.max_snd_wnd, 1):
            self._emit("drop", reason="ack_too_old")
            self._send_challenge_ack(now)
            return False

        window = seg.window << self.snd_wscale
        sack_news = False
        if self.sack_ok and seg.options.sack_blocks:
            sack_news = self._update_scoreboard(seg.options.sack_blocks)

        if self.tlp_end_seq is not None:
            self._tlp_on_ack(ack, seg, now)
        if ack > self.snd_una:
            if self.undo_ts is not None:
                self._check_undo(seg.options.timestamp, now)
            self._on_new_ack(ack, now)
        elif (
            ack == self.snd_una
            and self.flight_size > 0
            and self.snd_wnd > 0  # answers to zero-window probes (RFC 9293 3.8.6.1) are
            # not loss signals: counting them triggered fast retransmit and cut ssthresh
            and not seg.payload
            and not seg.flags & (SYN | FIN)
            and (window == self.snd_wnd or sack_news)
        ):
            self._on_duplicate_ack(now, sack_news)

        # RFC 9293 3.10.7.4: update the send window from the newest segment.
        if self.snd_una <= ack and (
            self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack)
        ):
            opened = window > self.snd_wnd
            self.snd_wnd = window
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            if window > self.max_snd_wnd:
                self.max_snd_wnd = window
            if opened:
                self._emit("window", snd_wnd=window)

        fin_acked = self.fin_queued and self.snd_una == self.data_end + 1
        if self.state == State.FIN_WAIT_1 and fin_acked:
            self._set_state(State.FIN_WAIT_2)
            if self.user_closed:
                self.finwait2_deadline = now + self.config.fin_wait_2_timeout
        elif self.state == State.CLOSING and fin_acked:
            self._enter_time_wait(now)
        elif self.state == State.LAST_ACK and fin_acked:
            self._terminate(0)
            return False
        elif self.state == State.TIME_WAIT:
            if seg.flags & FIN:
                self._send_ack(now)  # retransmitted FIN: ACK it, restart 2 MSL
                self.timewait_deadline = now + 2 * self.config.msl
            return False
        return True

    def _arm_undo(self, now: float) -> None:
        """Remember the window before a loss response, and the timestamp the first
        retransmission will carry (RFC 3522 section 3.1)."""
        if self.ts_ok:
            self.prior_cwnd = self.cc.cwnd
            self.prior_ssthresh = self.cc.ssthresh
            self.undo_ts = self._ts_now(now)

    def _check_undo(self, timestamp: tuple[int, int] | None, now: float) -> None:
        """RFC 3522 section 3.2: the first ACK for new data after a retransmission tells
        which copy arrived. If it echoes a timestamp older than the retransmission's,
        the original got through and the "loss" was reordering or delay: restore the
        congestion state (RFC 4015 section 3, the Eifel response)."""
        undo_ts, self.undo_ts = self.undo_ts, None
        if timestamp is None or undo_ts is None or seq_diff(timestamp[1], undo_ts) >= 0:
            return
        self.spurious_retransmits += 1
        self.cc.cwnd = max(self.cc.cwnd, self.prior_cwnd)
        self.cc.ssthresh = max(self.cc.ssthresh, self.prior_ssthresh)
        self.in_recovery = False
        self.dupacks = 0
        # The episode is void: a real loss right behind it may start fast recovery at
        # once, without waiting for the old RecoveryPoint (RFC 6582 "recover").
        self.recover = self.snd_una
        if self.snd_nxt < self.snd_max:
            self.snd_nxt = self.snd_max  # RFC 4015 section 3: no go-back-N after a spurious RTO
        self._emit_cwnd("undo")

    def _rtt_on_ack(self, ack: int, now: float) -> None:
        """RFC 6298 section 2 and 3: one timed segment at a time, never a retransmit.

        After retransmissions Karn's rule leaves no timed segment, and an RTO backed
        off by timeouts would stay backed off until new data is timed. With timestamps
        the ACK's TSecr says which copy it answers, so it gives the sample instead
        (RFC 7323 section 4.1, RFC 6298 section 5 note on Karn and timestamps).
        """
        if self.rtt_seq is not None and ack >= self.rtt_seq:
            sample = now - self.rtt_time
            self.rtt_seq = None
        elif (
            self.rtt_after_retransmit
            and self._seg_tsecr is not None
            and (self.rtx_tsval is None or seq_diff(self._seg_tsecr, self.rtx_tsval) >= 0)
        ):
            # Only an echo of a segment sent since the last retransmission: after a
            # loss the receiver's TS.Recent can be far older (RFC 7323 4.3 updates it
            # only in order), and that "sample" would add the whole outage to the RTT,
            # pushing the RTO to many seconds.
            sample = max(seq_diff(self._ts_now(now), self._seg_tsecr), 0) / 1000
            self.rtt_after_retransmit = False
        else:
            return
        self.rto.sample(sample)
        if self.on_event is not None:
            self._emit(
                "rtt", sample=round(sample, 6), srtt=round(self.rto.srtt or 0.0, 6),
                rttvar=round(self.rto.rttvar or 0.0, 6), rto=round(self.rto.rto, 6),
            )  # fmt: skip

    def _on_new_ack(self, ack: int, now: float) -> None:
        acked = ack - self.snd_una
        self._rtt_on_ack(ack, now)
        self.snd_una = ack
        if self.snd_nxt < ack:
            self.snd_nxt = ack  # after go-back-N, older copies were still arriving
        self.retries = 0
        data_acked_to = min(ack, self.data_end) - self.iss - 1
        if data_acked_to > self.sendbuf.start:
            self.sendbuf.release(data_acked_to)
        if self.sacked:
            self.sacked = [[max(s, ack), e] for s, e in self.sacked if e > ack]
        if self.high_rxt < ack:
            self.high_rxt = ack

        if self.in_recovery:
            if ack >= self.recover:
                # Full acknowledgment: leave fast recovery (RFC 6582 3.2 step 3).
                self.in_recovery = False
                self.dupacks = 0
                self.cc.on_recovery_exit(self.flight_size, now)
                self._emit_cwnd("recovery_exit")
            elif not self.sack_ok:
                # Partial acknowledgment (RFC 6582 3.2 step 5): retransmit the next hole,
                # deflate the window by the amount acked, add back one SMSS.
                payload = self.sendbuf.peek(self.snd_una - self.iss - 1, self.snd_mss)
                self._transmit_data(self.snd_una, payload, now, fin=False, reason="partial_ack")
                self.cc.cwnd = max(self.cc.cwnd - acked + (self.snd_mss if acked >= self.snd_mss else 0), self.snd_mss)
                self._emit_cwnd("partial_ack")
        else:
            self.dupacks = 0
            self.cc.on_ack(acked, now, self.rto.srtt)
            if self.on_event is not None:
                self._emit_cwnd("ack")

        # RFC 6298 5.2/5.3: stop the timer when all is acked, else restart it.
        if self.flight_size == 0:
            self.rtx_deadline = self.pto_deadline = None
        else:
            self._arm_rtx(now)
            self._arm_pto(now)  # RFC 8985 7.2

    def _can_send_new_segment(self) -> bool:
        """Could `_output` send previously unsent data now, cwnd aside (Limited
        Transmit may exceed it)? Queued data, the receive window, sender SWS avoidance
        and Nagle decide, as in `_output`."""
        avail = self.data_end - self.snd_max
        n = min(avail, self.snd_una + self.snd_wnd - self.snd_max, self.snd_mss)
        if n <= 0:
            return False
        if n < self.snd_mss:
            if n < avail:
                return n >= self.max_snd_wnd // 2  # RFC 9293 3.8.6.2.1
            return self.config.nodelay or self.snd_max == self.snd_una  # Nagle
        return True

    def _dup_thresh(self) -> int:
        """DupThresh (RFC 5681 3.2, RFC 6675 section 2), lowered by Early Retransmit.

        RFC 5827 section 3.2: when (3.a) less than 4 * SMSS is outstanding and (3.b)
        no previously unsent data can be sent (none queued, or the windows forbid it:
        so Limited Transmit cannot bring more duplicate ACKs), DupThresh becomes
        ER_thresh = ceiling(ownd / SMSS) - 1: with 2 segments out, 1 duplicate ACK
        (or 1 SACKed segment) starts loss recovery, with 3 segments out, 2 do. (Not
        below 1: a lone segment cannot cause a duplicate ACK.)
        """
        ownd = self.flight_size
        mss = self.snd_mss
        if ownd < ER_SEGMENTS * mss and not self._can_send_new_segment():
            return max(-(-ownd // mss) - 1, 1)
        return DUP_THRESH

    def _on_duplicate_ack(self, now: float, sack_news: bool) -> None:
        """RFC 5681 3.2 / RFC 6582 3.2 / RFC 6675 5 / RFC 5827: duplicate ACKs."""
        self.dupacks += 1
        if self.in_recovery:
            if not self.sack_ok:
                self.cc.cwnd += self.snd_mss  # RFC 6582 3.2 step 4: inflate
            return
        thresh = self._dup_thresh()
        lost = self.sack_ok and self._lost_boundary(thresh) > self.snd_una
        if self.dupacks < thresh and not lost:
            self._output(now)  # RFC 3042 Limited Transmit
            return
        # RFC 6582 section 3.2 step 2: only if the ACK covers more than "recover"
        # (our `recover` is one past the RFC's "highest sequence number transmitted").
        if self.snd_una < self.recover:
            return
        self.in_recovery = True
        self.recover = self.snd_max
        self.tlp_end_seq = self.pto_deadline = None  # RFC 8985 7.1 / 7.2: no TLP in recovery
        if thresh < DUP_THRESH:
            self._emit("early_retransmit", dupacks=self.dupacks, thresh=thresh)
        # RFC 5681 3.2 step 2 with RFC 3042: data sent by Limited Transmit (at most
        # 2 SMSS beyond cwnd) MUST NOT be counted in the FlightSize used for ssthresh.
        self._arm_undo(now)
        self.cc.on_congestion(min(self.flight_size, self.cc.cwnd), now)
        self._emit_cwnd("fast_retransmit")
        if self.sack_ok:
            # RFC 6675 section 5 step (4.3): retransmit the first lost segment at once,
            # then send what cwnd - pipe allows.
            hole = self._next_hole(self.snd_una, self.snd_max)
            if hole is not None:
                n = min(hole[1] - hole[0], self.snd_mss)
                payload = self.sendbuf.peek(hole[0] - self.iss - 1, n)
                fin = self.fin_queued and hole[0] + n == self.data_end
                sent = self._transmit_data(hole[0], payload, now, fin=fin, reason="fast")
                self.high_rxt = hole[0] + max(sent, 1)
            self._sack_recovery_output(now)
        else:
            payload = self.sendbuf.peek(self.snd_una - self.iss - 1, self.snd_mss)
            fin = self.fin_queued and self.snd_una + len(payload) == self.data_end
            self._transmit_data(self.snd_una, payload, now, fin=fin, reason="fast")
            # "+ 3 * SMSS" for the segments that left the network: DupThresh of them.
            self.cc.cwnd = self.cc.ssthresh + thresh * self.snd_mss
        self._arm_rtx(now)

    def _receive_data(self, seq: int, payload: bytes | memoryview, now: float) -> None:
        """RFC 9293 3.10.7.4 "seventh": trim to the window, reassemble, deliver."""
        start = seq
        if start < self.rcv_nxt:
            payload = payload[self.rcv_nxt - start :]
            start = self.rcv_nxt
        window_end = self.rcv_nxt + max(self.rcv_right - self.rcv_nxt, 0)
        if start + len(payload) > window_end:
            payload = payload[: max(window_end - start, 0)]
        if not payload:
            self._ack_now = True
            return
        if self.user_closed:
            # RFC 1122 4.2.2.13: data arriving after CLOSE is answered with a reset.
            self.abort(now)
            return
        if self.rx_pressure:
            # The host is out of TCP memory (stack/tcpmem.py): drop the text, tell the
            # peer what we still expect; it retransmits, and backs off.
            self.memory_drops += 1
            self.ack_pending = True
            self._ack_now = True
            return
        index = start - self.irs - 1
        in_order = start == self.rcv_nxt
        had_holes = self.reassembler.pending_bytes > 0
        ready = self.reassembler.insert(index, payload)
        if ready:
            self.rx.append(ready)
            self.rx_len += len(ready)
            self.rcv_nxt += len(ready)
            self.bytes_received += len(ready)
            self.unacked_bytes += len(ready)
        self.ack_pending = True
        # RFC 5681 4.2: ACK out-of-order data at once, and data that fills a hole.
        if not in_order or had_holes:
            self._ack_now = True

    def _receive_fin(self, now: float) -> None:
        """RFC 9293 3.10.7.4 "eighth, check the FIN bit"."""
        self.peer_fin_seq = None
        if self.fin_received:
            self._ack_now = True
            self.ack_pending = True
            return
        self.fin_received = True
        self.rcv_nxt += 1
        self.ack_pending = True
        self._ack_now = True
        if self.state in (State.SYN_RECEIVED, State.ESTABLISHED):
            self._set_state(State.CLOSE_WAIT)
        elif self.state == State.FIN_WAIT_1:
            if self.snd_una == self.data_end + 1 and self.fin_queued:
                self._send_ack(now)
                self._enter_time_wait(now)
            else:
                self._set_state(State.CLOSING)
        elif self.state == State.FIN_WAIT_2:
            self._send_ack(now)
            self._enter_time_wait(now)

    def _maybe_window_update(self, now: float) -> None:
        """After the user reads: tell the peer when the window has opened enough."""
        if self.state not in CAN_RECEIVE:
            return
        current = max(self.rcv_right - self.rcv_nxt, 0)
        free = self.config.recv_buffer - self.rx_len
        half = self.config.recv_buffer // 2
        if (current < half <= free) or (current < self.snd_mss <= free):
            self._send_ack(now)

    # ------------------------------------------------------------ introspection

    def info(self) -> dict[str, object]:
        """Numbers for `tcplab ss` (like `ss -tni`)."""
        return {
            "state": str(self.state),
            "cwnd": self.cc.cwnd,
            "ssthresh": self.cc.ssthresh,
            "srtt": self.rto.srtt,
            "rto": self.rto.rto,
            "inflight": self.flight_size,
            "retrans": self.retransmits,
            "snd_wnd": self.snd_wnd,
            "rcv_wnd": max(self.rcv_right - self.rcv_nxt, 0),
            "mss": self.snd_mss,
            "cc": self.cc.name,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
        }
