"""The sending half of a TCP connection.

Owns: the send sequence variables of RFC 9293 section 3.3.1 (SND.UNA, SND.NXT, the
highest sequence sent, SND.WND, SND.WL1/WL2, the largest window offered), the send
buffer, the queued FIN, the segment size, and the decisions of *what to send now*:
the windows (RFC 9293 3.8.6.2.1, RFC 5681), Limited Transmit (RFC 3042), sender
silly-window avoidance (RFC 9293 3.8.6.2.1), Nagle (RFC 896, RFC 1122 4.2.3.4),
zero-window probing and the SWS override timeout (RFC 9293 3.8.6.1).

Sequence numbers are unwrapped ints (see stack/tcp/connection.py); the first data
byte is ISS + 1 and send buffer index 0. The segments themselves are built by the
connection (`Connection.send_segment`: it adds the ACK, the window and options);
what happens around a loss is stack/tcp/recovery.py's, which sends through
`transmit` and `output` here.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from stack.tcp.sendbuf import SendBuffer
from stack.tcp.states import CAN_OUTPUT
from stack.tcp.timers import Timers
from stack.wire.tcp import ACK, FIN, PSH

if TYPE_CHECKING:
    from stack.tcp.connection import Connection
    from stack.tcp.options import Options
    from stack.tcp.recovery import Recovery
    from stack.tcp.rto import RTOEstimator


class Sender:
    """Send sequence space, send buffer and the send decisions of one connection."""

    recovery: Recovery  # set by the connection once the parts exist
    opts: Options

    def __init__(self, conn: Connection, iss: int, sendbuf: SendBuffer, timers: Timers,
                 rto: RTOEstimator) -> None:  # fmt: skip
        self.conn = conn
        self.timers = timers
        self.rto = rto
        self.sendbuf = sendbuf
        # Send sequence variables (RFC 9293 3.3.1), unwrapped.
        self.iss = iss
        self.una = iss
        self.nxt = iss
        self.max = iss  # highest sequence number sent + 1
        self.wnd = 0
        self.wl1 = 0
        self.wl2 = 0
        self.max_wnd = 0  # largest window the peer offered (RFC 5961 5.2, RFC 9293 3.8.6.2.1)
        self.mss = 0  # effective send MSS (set by the connection, RFC 9293 3.7.1)
        self.max_segment = 0  # the largest segment built: mss, or more with TSO
        self.fin_queued = False  # user called shutdown_write/close: FIN after the data
        self.persist_backoff = 0
        self.probes_out = 0  # zero-window probes sent without any ACK since
        # Statistics.
        self.bytes_sent = 0
        self.retransmits = 0

    @property
    def flight_size(self) -> int:
        """RFC 5681 section 2 FlightSize: data sent but not yet cumulatively acked."""
        return self.max - self.una

    @property
    def data_end(self) -> int:
        """Sequence number just after the last byte the user has queued."""
        return self.iss + 1 + self.sendbuf.end

    def peek(self, seq: int, n: int) -> bytes:
        """The `n` queued bytes from sequence number `seq`."""
        return self.sendbuf.peek(seq - self.iss - 1, n)

    def advance(self, ack: int) -> None:
        """SND.UNA moves to `ack`: release what the peer now holds."""
        self.una = ack
        if self.nxt < ack:
            self.nxt = ack  # after go-back-N, older copies were still arriving
        data_acked_to = min(ack, self.data_end) - self.iss - 1
        if data_acked_to > self.sendbuf.start:
            self.sendbuf.release(data_acked_to)

    def update_window(self, window: int, seq: int, ack: int) -> None:
        """RFC 9293 3.10.7.4: take the send window from the newest segment."""
        if self.una <= ack and (self.wl1 < seq or (self.wl1 == seq and self.wl2 <= ack)):
            opened = window > self.wnd
            self.wnd = window
            self.wl1 = seq
            self.wl2 = ack
            if window > self.max_wnd:
                self.max_wnd = window
            if opened:
                self.conn.emit("window", snd_wnd=window)

    # ----------------------------------------------------------------- sending

    def transmit(
        self, seq: int, payload: bytes, now: float, *, fin: bool, reason: str | None
    ) -> int:
        """Send [seq, seq+len(payload)) (+FIN) and do the bookkeeping around it;
        return how many payload bytes went (fewer when SACK blocks must fit)."""
        conn = self.conn
        opts = self.opts
        if payload:
            sack = opts.sack_len()
            if sack and len(payload) > self.mss - sack:
                # RFC 9293 3.7.1: options count against the MSS, and `mss` leaves
                # room for timestamps only. While SACK blocks ride along, send one
                # segment that fits (a full one would exceed the path MTU and be
                # dropped, again on every retransmission).
                payload = payload[: self.mss - sack]
                fin = False
        flags = ACK | (FIN if fin else 0)
        if payload:
            flags |= PSH if seq + len(payload) == self.data_end else 0
        end = seq + len(payload) + (1 if fin else 0)
        recovery = self.recovery
        retransmit = seq < self.max
        if retransmit:
            recovery.note_retransmit(seq, len(payload), reason or "rto")
            if opts.ts_ok:
                recovery.rtx_tsval = opts.ts_now(now)
        elif recovery.rtt_seq is None and end > seq:
            recovery.rtt_seq = end  # time this segment (RFC 6298 section 3)
            recovery.rtt_time = now
        recovery.on_sent(seq, end, now, retransmit)
        # RFC 3168 6.1.2/6.1.5/6.1.6: ECT(0) and CWR only on new data, not on
        # retransmissions or window probes (stack/tcp/ecn.py).
        marks, codepoint = conn.ecn.data_marks(
            new_data=bool(payload) and seq >= self.max and reason != "probe")
        conn.send_segment(seq, flags | marks, payload, now, ecn=codepoint)
        self.bytes_sent += len(payload)
        if end > self.nxt:
            self.nxt = end
        if end > self.max:
            self.max = end
        if self.timers.rtx is None and reason != "probe":
            recovery.arm_rtx(now)  # RFC 6298 5.1
        return len(payload)

    def output(self, now: float, reason: str | None = None, force_one: bool = False) -> None:
        """Send what the windows allow (RFC 9293 3.8.6.2.1, RFC 5681, RFC 6675 5)."""
        conn = self.conn
        if conn.state not in CAN_OUTPUT:
            return
        recovery = self.recovery
        rack = recovery.use_rack
        if rack:
            if recovery.in_recovery or recovery.in_loss or recovery.rack.lost_bytes:
                recovery.rack_output(now)  # RFC 8985 / RFC 6937
                return
        elif recovery.in_recovery and self.opts.sack_ok:
            recovery.sack_recovery_output(now)
            return
        mss = self.mss
        cc = recovery.cc
        sent_new = False
        while True:
            data_end = self.data_end
            avail = data_end - self.nxt
            fin_pending = self.fin_queued and self.nxt <= data_end
            if avail <= 0 and not fin_pending:
                break
            window_room = self.una + self.wnd - self.nxt
            # RFC 3042 Limited Transmit: each of the first two duplicate ACKs lets one
            # more new segment out, so that a small window can still get 3 dupacks.
            # Only previously unsent data (RFC 3042 section 2): after an RTO's go-back-N
            # the bonus would let retransmissions beyond the 1-SMSS loss window out.
            bonus = (
                min(recovery.dupacks, 2) * mss
                if not recovery.in_recovery and self.nxt == self.max
                else 0
            )
            if rack:
                # With RACK, what is in flight is what is neither SACKed nor lost (as
                # Linux's tcp_packets_in_flight): SACKed segments make room for new data,
                # which also does Limited Transmit's job (RFC 3042).
                cwnd_room = cc.cwnd - recovery.rack.in_flight - (self.nxt - self.max)
            else:
                cwnd_room = cc.cwnd + bonus - (self.nxt - self.una)
            room = min(window_room, cwnd_room)
            if force_one:
                room = max(room, min(mss, avail))
            n = max(min(avail, room, self.max_segment), 0)
            fin = fin_pending and self.nxt + n == data_end
            if n == 0 and not fin:
                break
            if n < mss and not fin and not force_one:
                if n < avail:
                    # Sender SWS avoidance (RFC 9293 3.8.6.2.1): wait for a bigger window
                    # unless it is at least half the largest window the peer offered.
                    if n < self.max_wnd // 2:
                        break
                elif self.nxt >= self.max and self.nxt > self.una and not conn.config.nodelay:
                    # Nagle (RFC 1122 4.2.3.4): one small segment of new data in flight
                    # at most. Data sent before (a go-back-N after a path MTU drop or a
                    # timeout) is no new user data: resent at once, as Linux and FreeBSD.
                    break
            payload = self.sendbuf.peek(self.nxt - self.iss - 1, n) if n else b""
            if self.nxt == self.max:
                sent_new = True
            self.transmit(self.nxt, payload, now, fin=fin, reason=reason)
            force_one = False
            if fin:
                break
        if sent_new:
            recovery.arm_pto(now)  # RFC 8985 7.2: after sending new data
        self.check_persist(now)

    def can_send_new_segment(self) -> bool:
        """Could `output` send previously unsent data now, cwnd aside (Limited
        Transmit may exceed it)? Queued data, the receive window, sender SWS avoidance
        and Nagle decide, as in `output`."""
        avail = self.data_end - self.max
        n = min(avail, self.una + self.wnd - self.max, self.mss)
        if n <= 0:
            return False
        if n < self.mss:
            if n < avail:
                return n >= self.max_wnd // 2  # RFC 9293 3.8.6.2.1
            return self.conn.config.nodelay or self.max == self.una  # Nagle
        return True

    # ------------------------------------------------------ window probing

    def check_persist(self, now: float) -> None:
        """RFC 9293 3.8.6.1: start probing when a zero window blocks queued data.

        With nothing in flight, queued data can also be blocked by an open window too
        small for sender SWS avoidance: the same timer then is the "override timeout"
        of RFC 9293 3.8.6.2.1 (4) (see `send_window_probe`).
        """
        timers = self.timers
        blocked = self.data_end > self.nxt and self.nxt == self.una
        if self.wnd == 0 and blocked and timers.persist is None:
            timers.persist = now + self.rto.rto
        elif self.wnd > 0:
            if blocked:
                if timers.persist is None:
                    timers.persist = now + self.rto.rto
            else:
                timers.persist = None
                self.persist_backoff = 0

    def send_window_probe(self, now: float) -> None:
        """RFC 9293 3.8.6.1: probe a zero window with one byte beyond it."""
        conn = self.conn
        if conn.state not in CAN_OUTPUT:
            return
        if self.wnd > 0:
            # RFC 9293 3.8.6.2.1 (4) / RFC 1122 4.2.3.4: the SWS "override timeout".
            # Nothing is in flight and the window is open but too small for sender SWS
            # avoidance; send what fits rather than wait for an update that may never come.
            n = min(self.una + self.wnd - self.nxt, self.data_end - self.nxt, self.mss)
            if n > 0 and self.nxt == self.una:
                self.transmit(self.nxt, self.peek(self.nxt, n), now, fin=False, reason=None)
            return
        if self.data_end <= self.una:
            return
        # RFC 1122 4.2.2.17: keep probing as long as the receiver answers (an ACK
        # resets `probes_out`); one that stays silent is given up on like a
        # retransmission (R2), sooner when no application holds the connection.
        self.probes_out += 1
        config = conn.config
        limit = min(config.max_retries, 8) if conn.user_closed else config.max_retries
        if self.probes_out > limit:
            conn.terminate(errno.ETIMEDOUT)
            return
        self.nxt = self.una
        self.transmit(self.una, self.peek(self.una, 1), now, fin=False, reason="probe")
        # The probe byte lies beyond the window: the receiver most likely dropped it.
        # Send from SND.UNA again next time, or a window update that does not ack the
        # byte would leave it unsent with no timer running (a stall).
        self.nxt = self.una
        self.persist_backoff = min(self.persist_backoff + 1, 10)
        delay = min(self.rto.rto * (1 << self.persist_backoff), config.max_rto)
        self.timers.persist = now + delay
