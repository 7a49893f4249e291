"""The opening handshake of one TCP connection, sans-IO.

Owns: active OPEN (RFC 9293 3.10.1) and the passive side's answer to a listener's SYN
(3.10.7.2); building our SYN and SYN-ACK (their flags and options: RFC 7323 2.2/3.2,
RFC 3168 6.1.1); SEGMENT ARRIVES in SYN-SENT (3.10.7.3) and simultaneous open (3.10.7.3,
figure 8); the ACK that completes the handshake in SYN-RECEIVED (3.10.7.4) and entering
ESTABLISHED (with the handshake's RTT sample, RFC 6298 2, or 5.7's fallback RTO); the
text and FIN a SYN carries; the handshake's time limit (RFC 1122 4.2.3.5, TCP_KEEPINIT);
and the Fast Open glue on the SYN (RFC 7413: the client's cookie and SYN data, the
server's cookie and accepted SYN data; the cookie rules themselves are
stack/tcp/fastopen.py's).

`Handshake` is a part of a `Connection` (stack/tcp/connection.py), like its sender and
receiver: it works on the connection's parts and changes state through the
connection's public methods (`set_state`, `send_segment`, `send_ack`, `send_rst`,
`terminate`, ...). Everything after ESTABLISHED is the connection's.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from stack.tcp.states import State
from stack.wire.tcp import ACK, FIN, RST, SYN, TCPOptions, TCPSegment

if TYPE_CHECKING:
    from stack.tcp.connection import Connection
    from stack.tcp.fastopen import FastOpenAttempt, SynDecision

HANDSHAKE_TIMEOUT_FALLBACK = 3.0  # RFC 6298 5.7 (Linux: TCP_TIMEOUT_FALLBACK)


class Handshake:
    """The opening handshake of one connection; see the module comment."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.fastopen: FastOpenAttempt | None = None  # an active open's TFO (RFC 7413)
        self.synack_cookie: tuple[bytes, bool] | None = None  # TFO cookie for our SYN-ACK
        # The text and FIN of the peer's SYN in a simultaneous open, for ESTABLISHED.
        self.syn_text: tuple[bytes, bool] | None = None

    # ------------------------------------------------------------------ opening

    def connect(self, now: float, fastopen: FastOpenAttempt | None, data: bytes) -> None:
        """Active OPEN (RFC 9293 3.10.1): send SYN, enter SYN-SENT. `data` is queued
        first (RFC 9293 3.10.1 allows data with the OPEN); with `fastopen` (RFC 7413
        4.2.2) the SYN carries a cookie (or a cookie request) and, with a cookie, the
        start of that data."""
        conn = self.conn
        snd = conn.snd
        if data:
            snd.sendbuf.write(data)
        conn.set_state(State.SYN_SENT)
        self.fastopen = fastopen
        sent = self.send_syn(now, ack=False)
        snd.nxt = snd.max = conn.iss + 1 + sent
        snd.bytes_sent += sent
        conn.recovery.arm_rtx(now)
        self.arm_connect_timeout(now)

    def answer_syn(self, syn: TCPSegment, now: float, fastopen: SynDecision | None) -> None:
        """Passive OPEN, from LISTEN: a listener got `syn` (RFC 9293 3.10.7.2); reply
        SYN-ACK, enter SYN-RECEIVED.

        `fastopen` is the listener's Fast Open answer (stack/tcp/fastopen.py `decide`):
        accept the SYN's data (RFC 7413 4.2.1, the SYN-ACK then acknowledges it) and/or
        put a cookie in the SYN-ACK. Without it, data in a SYN is not taken and the
        SYN-ACK acknowledges only the SYN (the peer sends the data again)."""
        conn = self.conn
        self.take_syn_options(syn)
        rcv = conn.rcv
        rcv.start(syn.seq)
        conn.ecn.on_syn(syn.flags)  # RFC 3168 6.1.1
        if fastopen is not None:
            if fastopen.cookie is not None:
                self.synack_cookie = (fastopen.cookie, fastopen.exp)
            if fastopen.accept_data and syn.payload:
                # RFC 7413 4.2.1: the data of a SYN with a valid cookie is accepted,
                # within the window the SYN-ACK offers (unscaled, RFC 7323 2.2).
                rcv.right = max(rcv.right, rcv.nxt + min(conn.config.recv_buffer, 0xFFFF))
                rcv.receive(rcv.nxt, syn.payload, user_closed=False)
                conn.emit("fastopen", event="syn_data_accepted", bytes=len(syn.payload))
        snd = conn.snd
        snd.wnd = syn.window  # RFC 7323 2.2: the window in a SYN is never scaled
        snd.max_wnd = snd.wnd
        conn.set_state(State.SYN_RECEIVED)
        self.send_syn(now, ack=True)
        snd.nxt = snd.max = conn.iss + 1
        conn.recovery.arm_rtx(now)
        self.arm_connect_timeout(now)

    def arm_connect_timeout(self, now: float) -> None:
        """RFC 1122 4.2.3.5: the user may give up on the open attempt sooner than R2."""
        conn = self.conn
        if conn.config.connect_timeout > 0:
            conn.timers.connect = now + conn.config.connect_timeout

    # ------------------------------------------------------------ our SYN

    def syn_options(self, now: float) -> TCPOptions:
        """The options of our SYN or SYN-ACK (`Connection.send_segment` with syn=True)."""
        conn = self.conn
        # RFC 7323 3.2: a segment with ACK set MUST echo TS.Recent; that includes the
        # SYN-ACK of a simultaneous open (not only passive ones).
        echo = conn.opts.ts_recent if conn.state == State.SYN_RECEIVED else 0
        # Our SYN (SYN-SENT, also when retransmitted) offers everything; a SYN-ACK
        # answers the peer's SYN.
        return conn.opts.for_syn(now, answer=conn.state != State.SYN_SENT, echo=echo)

    def send_syn(self, now: float, ack: bool) -> int:
        """Send our SYN (or SYN-ACK); returns how many data bytes it carries (RFC 7413
        Fast Open: only on the first SYN of an active open with a cookie)."""
        conn = self.conn
        snd = conn.snd
        retransmission = snd.max > conn.iss
        flags = SYN | (ACK if ack else 0)
        # RFC 3168 6.1.1: ECN-setup SYN (ECE|CWR) / SYN-ACK (ECE).
        flags |= conn.ecn.synack_flags() if ack else conn.ecn.syn_flags(retransmission=retransmission)
        payload = b""
        attempt = self.fastopen
        if attempt is not None and not ack and not retransmission:
            n = min(len(snd.sendbuf), attempt.syn_data_limit(snd.mss))
            payload = snd.peek(conn.iss + 1, n) if n > 0 else b""
            attempt.syn_data = len(payload)
        # RFC 6298 section 2: the ACK of our SYN (SYN-ACK) gives the first RTT sample,
        # unless the SYN's sequence number went out before (Karn's rule, section 3).
        conn.recovery.time_syn(now, again=retransmission)
        options = conn.send_segment(conn.iss, flags, payload, now, syn=True).options
        if attempt is not None and not ack and not retransmission:
            # RFC 7413 4.1.1 / 4.2.2: the cookie, or an empty option asking for one.
            options.fastopen = attempt.syn_option()
            options.fastopen_exp = attempt.exp
        elif ack and self.synack_cookie is not None:
            options.fastopen, options.fastopen_exp = self.synack_cookie
        if ack:
            # The window in our SYN-ACK is unscaled (RFC 7323 2.2); that is our offer.
            rcv = conn.rcv
            rcv.right = max(rcv.right, rcv.nxt + min(conn.config.recv_buffer, 0xFFFF))
        return len(payload)

    def take_syn_options(self, seg: TCPSegment) -> None:
        """The peer's SYN options settle MSS, window scale, timestamps and SACK."""
        conn = self.conn
        conn.opts.take_syn(seg)
        conn.cc.mss = conn.snd.mss

    # ------------------------------------------------------ the peer's answer

    def on_segment_syn_sent(self, seg: TCPSegment, now: float) -> None:
        """RFC 9293 3.10.7.3: SEGMENT ARRIVES in SYN-SENT."""
        conn = self.conn
        flags = seg.flags
        ack = conn.unwrap(seg.ack, conn.snd.una)
        if flags & ACK:
            # "If SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset (unless RST)".
            if ack <= conn.iss or ack > conn.snd.nxt:
                if not flags & RST:
                    conn.send_rst(seg.ack, with_ack=False)
                conn.emit("drop", reason="bad_ack_in_syn_sent")
                return
        if flags & RST:
            if flags & ACK:
                conn.terminate(errno.ECONNREFUSED)  # "connection reset" -> refused
            return
        if not flags & SYN:
            return
        if flags & ACK:
            conn.ecn.on_synack(flags)  # RFC 3168 6.1.1
            if self.fastopen is not None:  # RFC 7413 4.2.2
                options = seg.options
                self.fastopen.on_synack(options.fastopen, options.fastopen_exp,
                                        options.mss if options.mss is not None else 536,
                                        data_acked=max(ack - conn.iss - 1, 0), now=now,
                                        malformed=options.fastopen_malformed)
        self.take_syn_options(seg)
        if conn.opts.ts_ok and seg.options.timestamp is not None:
            # Timestamps were just agreed: the SYN-ACK's echo times the SYN it answers,
            # also after a retransmitted SYN (RFC 7323 4.1; on_segment could not know).
            conn.recovery.seg_tsecr = seg.options.timestamp[1]
        if not conn.opts.snd_wscale_offered:
            conn.rcv.wscale = 0
        conn.rcv.start(seg.seq)
        conn.keepalive.heard(now)
        if flags & ACK:
            # RFC 7323 2.2: the window in a SYN is never scaled.
            sent = conn.segments_out
            self.acked(ack, seg.window, seg.seq, now)
            # RFC 9293 3.10.7.3: "continue processing at the sixth step": the text and
            # the FIN a SYN-ACK may carry (issue 17, defect 4), within the window our
            # SYN offered (unscaled, RFC 7323 2.2); our ACK then covers them.
            self.take_syn_text(bytes(seg.payload), bool(flags & FIN), now)
            # "Form an ACK segment ... and send it. Data or controls that were queued
            # for transmission MAY be included": data already sent carried that ACK;
            # only what came on the SYN-ACK may still be owed one.
            if conn.state != State.CLOSED and (conn.segments_out == sent or conn.rcv.ack_pending):
                conn.send_ack(now)
        else:
            # Simultaneous open (RFC 9293 3.10.7.3 and figure 8): SYN-RECEIVED, SYN-ACK.
            # "If there are other controls or text in the segment, queue them for
            # processing after the ESTABLISHED state has been reached."
            if seg.payload or flags & FIN:
                self.syn_text = (bytes(seg.payload), bool(flags & FIN))
            conn.set_state(State.SYN_RECEIVED)
            conn.snd.wnd = seg.window
            # RFC 3168 6.1.1 says nothing of simultaneous opens; like FreeBSD, an
            # ECN-setup SYN crossing ours is answered as a listener answers it.
            conn.ecn.on_syn(flags)
            self.send_syn(now, ack=True)

    def on_repeated_syn(self, now: float) -> None:
        """SYN-RECEIVED, and the peer sent its SYN again: our SYN-ACK was lost. The
        segment is not acceptable (RFC 9293 3.10.7.4 "first": an acknowledgment is owed),
        and with our SYN unacknowledged that acknowledgment is the SYN-ACK itself: a bare
        ACK at ISS+1 is dropped by a peer in SYN-SENT (3.10.7.3 "fifth"). Linux
        (tcp_check_req) and FreeBSD (the syncache) resend it at once too. The SYN-ACK
        timer keeps running."""
        conn = self.conn
        conn.recovery.note_retransmit(conn.iss, 0, "syn_again")
        self.send_syn(now, ack=True)

    def on_ack_in_syn_received(self, seg: TCPSegment, seq: int, ack: int, now: float) -> bool:
        """RFC 9293 3.10.7.4 "fifth, check the ACK field" in SYN-RECEIVED, for an ACK
        with SND.UNA < SEG.ACK =< SND.NXT (TS.Recent already taken): ESTABLISHED, then
        the FIN the user queued and the text of the peer's SYN. False = drop the rest."""
        conn = self.conn
        # RFC 7323 2.2: the window of a segment with SYN set (the peer's
        # SYN-ACK in a simultaneous open) is never scaled.
        window = seg.window if seg.flags & SYN else seg.window << conn.opts.snd_wscale
        self.acked(ack, window, seq, now)
        if conn.snd.fin_queued:
            # The user closed in SYN-RECEIVED: "queue [the FIN] for processing
            # after entering ESTABLISHED" (RFC 9293 3.10.4) -- before the SYN's
            # own text is taken, so that text meets the closed state.
            conn.set_state(State.FIN_WAIT_1)
            conn.snd.output(now)
        if self.syn_text is not None:
            text, fin = self.syn_text
            self.syn_text = None
            self.take_syn_text(text, fin, now)
            if conn.state == State.CLOSED:
                return False  # the text arrived after close: reset (3.10.7.4)
        return True

    def acked(self, ack: int, window: int, seq: int, now: float) -> None:
        """Our SYN is acknowledged (RFC 9293 3.10.7.3 / 3.10.7.4): ESTABLISHED, with the
        first RTT sample if the SYN (SYN-ACK) was timed (`Recovery.time_syn`, RFC 6298
        2; after a retransmission only from the timestamp echo, RFC 7323 4.1)."""
        conn = self.conn
        snd = conn.snd
        snd.advance(ack)  # (releases the data a Fast Open SYN carried, if acked)
        if snd.nxt > ack:
            # RFC 7413 4.2.2: the SYN's data was not acknowledged: send it again now.
            snd.nxt = ack
            conn.emit("fastopen", event="syn_data_not_acked", acked=ack - conn.iss - 1)
        snd.wnd = window
        snd.wl1 = seq
        snd.wl2 = ack
        snd.max_wnd = max(snd.max_wnd, window)
        conn.recovery.rtt_on_ack(ack, now)
        conn.recovery.retries = 0
        conn.timers.rtx = None
        conn.timers.connect = None
        conn.set_state(State.ESTABLISHED)
        if snd.retransmits and conn.rto.srtt is None:
            # RFC 6298 5.7: the SYN (or SYN-ACK) timed out and no RTT was measured
            # (Karn's rule, no timestamps): data starts with an RTO of 3 s.
            conn.rto.restart(HANDSHAKE_TIMEOUT_FALLBACK)
        conn.keepalive.heard(now)  # RFC 1122 4.2.3.6: the idle time starts
        conn.emit_cwnd("init")
        snd.output(now)

    def take_syn_text(self, text: bytes, fin: bool, now: float) -> None:
        """The text and FIN that came with the peer's SYN, now that we are ESTABLISHED
        (RFC 9293 3.10.7.3), taken within the window our SYN offered."""
        conn = self.conn
        rcv = conn.rcv
        start = rcv.irs + 1
        if text:
            rcv.right = max(rcv.right, start + min(conn.config.recv_buffer, 0xFFFF))
            if not rcv.receive(start, text, user_closed=conn.user_closed):
                conn.abort(now)
                return
        if fin and rcv.nxt == start + len(text):
            rcv.peer_fin_seq = rcv.nxt
            conn.receive_fin(now)
