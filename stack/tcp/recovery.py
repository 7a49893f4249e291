"""Loss detection and recovery of one TCP sender, with RTT sampling.

Owns:

* RTT sampling (RFC 6298 sections 2-3 with Karn's rule; RFC 7323 4.1 TSecr samples
  after retransmissions) feeding the RTO estimator (stack/tcp/rto.py);
* the retransmission timeout (RFC 6298 5.4-5.7; SYN retries, RFC 9293 3.8.1);
* duplicate-ACK counting, fast retransmit and NewReno fast recovery (RFC 5681 3.2,
  RFC 6582), Limited Transmit (RFC 3042), Early Retransmit (RFC 5827);
* SACK-based loss recovery (RFC 6675) over a `Scoreboard` (stack/tcp/scoreboard.py);
* the Tail Loss Probe (RFC 8985 section 7);
* spurious retransmission detection and undo (Eifel, RFC 3522 / RFC 4015);
* the loss-recovery events reported to congestion control
  (stack/tcp/congestion/events.py): nothing here writes ``cwnd`` itself.

It sends through the `Sender` (stack/tcp/sender.py), reads what the handshake
settled from `Options` (stack/tcp/options.py: SACK-permitted, timestamps, our TSval
clock) and asks the `Connection` only for its state, events and termination.

Seams for the work to come (RACK-TLP, RFC 8985; PRR, RFC 6937; D-SACK, RFC 2883 and
RFC 3708):

* `on_ack` is the one entry for every acceptable ACK; after the scoreboard is updated
  it calls `detect_losses`, the loss-detection step (today RFC 6675 IsLost through
  duplicate ACKs and DupThresh; RACK's time-based marking goes there);
* `send_quota` answers "how many bytes may recovery send now" (today RFC 6675
  cwnd - pipe; PRR's sndcnt goes there);
* `dsack_of` recognizes a D-SACK block (RFC 2883 section 4) for the TLP check; a
  D-SACK based undo (RFC 3708) reads the same answer.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from stack.tcp.congestion import CongestionControl
from stack.tcp.congestion import events as cc_events
from stack.tcp.rto import RTOEstimator
from stack.tcp.scoreboard import Scoreboard
from stack.tcp.seq import seq_diff
from stack.tcp.states import CAN_OUTPUT, State
from stack.tcp.timers import Timers
from stack.wire.tcp import FIN, SYN, TCPSegment

if TYPE_CHECKING:
    from stack.tcp.connection import Connection
    from stack.tcp.options import Options
    from stack.tcp.sender import Sender

MASK32 = 0xFFFFFFFF
DUP_THRESH = 3  # RFC 5681 section 3.2 / RFC 6675 section 2 "DupThresh"
# RFC 5827 section 3.2 (3.a): Early Retransmit while less than 4 * SMSS is outstanding.
ER_SEGMENTS = 4
# RFC 8985 section 7.2: PTO without an RTT sample, and the allowance for a delayed ACK
# (TLP.max_ack_delay, "WCDelAckT": Linux delays an ACK by at most 200 ms) when only
# one segment is in flight.
TLP_DEFAULT_PTO = 1.0
TLP_MAX_ACK_DELAY = 0.2


class Recovery:
    """Loss detection, retransmission and RTT sampling of one connection's sender."""

    def __init__(self, conn: Connection, snd: Sender, opts: Options, timers: Timers,
                 rto: RTOEstimator, cc: CongestionControl) -> None:  # fmt: skip
        self.conn = conn
        self.snd = snd
        self.opts = opts
        self.timers = timers
        self.rto = rto
        self.cc = cc
        iss = snd.iss
        # Retransmission timer (RFC 6298) and RTT sampling.
        self.retries = 0  # timeouts in a row (RFC 1122 4.2.3.5 R2)
        self.rtt_seq: int | None = None  # the segment being timed (Karn's rule)
        self.rtt_time = 0.0
        self.rtt_after_retransmit = False  # take the next sample from TSecr instead
        self.rtx_tsval: int | None = None  # our TSval when data was last retransmitted
        self.seg_tsecr: int | None = None  # TSecr of the segment being processed
        # Fast recovery (RFC 5681, 6582) and SACK recovery (RFC 6675).
        self.dupacks = 0
        self.in_recovery = False
        self.recover = iss  # RFC 6582 section 3.2 "recover"
        self.high_rxt = iss  # RFC 6675 "HighRxt"
        self.scoreboard = Scoreboard()
        # Spurious retransmission detection (RFC 3522 Eifel) and response (RFC 4015).
        self.undo_ts: int | None = None  # TSval of the first retransmission, if armed
        self.prior_cwnd = 0
        self.prior_ssthresh = 0
        self.spurious_retransmits = 0
        # Tail Loss Probe (RFC 8985 section 7; its variables in section 7.1).
        self.tlp_end_seq: int | None = None  # TLP.end_seq: SND.NXT after the probe, if out
        self.tlp_is_retrans = False  # TLP.is_retrans: the probe resent old data

    # ------------------------------------------------------------ RTT sampling

    def note_retransmit(self, seq: int, length: int, reason: str) -> None:
        """Data (or a SYN) at `seq` is being sent again."""
        self.snd.retransmits += 1
        self.rtt_seq = None  # Karn's rule (RFC 6298 section 3)
        self.rtt_after_retransmit = self.opts.ts_ok or self.opts.offered_ts  # (SYN: not agreed)
        self.conn.emit("retransmit", seq=seq & MASK32, len=length, reason=reason)

    def rtt_on_ack(self, ack: int, now: float) -> None:
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
            and self.seg_tsecr is not None
            and (self.rtx_tsval is None or seq_diff(self.seg_tsecr, self.rtx_tsval) >= 0)
        ):
            # Only an echo of a segment sent since the last retransmission: after a
            # loss the receiver's TS.Recent can be far older (RFC 7323 4.3 updates it
            # only in order), and that "sample" would add the whole outage to the RTT,
            # pushing the RTO to many seconds.
            sample = max(seq_diff(self.opts.ts_now(now), self.seg_tsecr), 0) / 1000
            self.rtt_after_retransmit = False
        else:
            return
        rto = self.rto
        rto.sample(sample)
        if self.conn.on_event is not None:
            self.conn.emit(
                "rtt", sample=round(sample, 6), srtt=round(rto.srtt or 0.0, 6),
                rttvar=round(rto.rttvar or 0.0, 6), rto=round(rto.rto, 6),
            )  # fmt: skip

    # -------------------------------------------------- retransmission timeout

    def arm_rtx(self, now: float) -> None:
        self.timers.rtx = now + self.rto.rto

    def on_rto(self, now: float) -> None:
        """The retransmission timer expired: RFC 6298 section 5.4-5.7 (and 3.8.1 of
        RFC 9293 for SYNs)."""
        conn = self.conn
        config = conn.config
        self.retries += 1
        if conn.state == State.SYN_SENT or conn.state == State.SYN_RECEIVED:
            passive = conn.state == State.SYN_RECEIVED
            if self.retries > (config.synack_retries if passive else config.syn_retries):
                conn.terminate(errno.ETIMEDOUT if passive else conn.soft_error or errno.ETIMEDOUT)
                return
            self.rto.backoff()
            self.note_retransmit(self.snd.iss, 0, "rto")
            conn.send_syn(now, ack=passive)
            self.arm_rtx(now)
            return
        if self.snd.flight_size == 0:
            return
        if self.retries > config.max_retries:
            conn.terminate(conn.soft_error or errno.ETIMEDOUT)
            return
        self.go_back_n(now, reason="rto")

    def go_back_n(self, now: float, reason: str) -> None:
        """Resend from SND.UNA: after a timeout ("rto"), or when path MTU discovery
        says the segments in flight were too large ("pmtu")."""
        snd = self.snd
        if reason == "rto":
            # RFC 5681 section 3.1 eq. 4: ssthresh only on the first timeout of a series.
            first = self.retries <= 1
            if first:
                self.arm_undo(now)
            cc_events.on_timeout(self.cc, snd.flight_size, now, first=first, mss=snd.mss)
            self.rto.backoff()  # RFC 6298 5.5
            self.conn.emit_cwnd("rto")
        # RFC 6582 section 3.2 step 4 / RFC 6675 section 5.1: leave recovery, remember
        # how far we had sent so that later duplicate ACKs do not restart it.
        self.in_recovery = False
        self.recover = snd.max
        self.dupacks = 0
        # RFC 8985 7.1: TLP starts over after RTO recovery; no probe during it (7.2).
        self.tlp_end_seq = self.timers.pto = None
        # RFC 2018 section 8: after a timeout, SACK information may be stale; resend all.
        self.scoreboard.clear()
        self.high_rxt = snd.una
        self.rtt_seq = None  # Karn's rule: no sample from retransmitted data
        snd.nxt = snd.una  # go back N
        snd.output(now, reason=reason, force_one=True)
        self.arm_rtx(now)

    # ------------------------------------------------- tail loss probe (RFC 8985)

    def arm_pto(self, now: float) -> None:
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
        snd = self.snd
        timers = self.timers
        rtx = timers.rtx
        flight = snd.max - snd.una
        if (
            not self.opts.sack_ok
            or self.in_recovery
            or snd.una < self.recover
            or self.tlp_end_seq is not None
            or rtx is None
            or flight == 0
        ):
            timers.pto = None
            return
        if self.scoreboard.blocks:
            return
        srtt = self.rto.srtt
        if srtt is None:
            pto = TLP_DEFAULT_PTO
        else:
            pto = 2 * srtt
            if flight <= snd.mss:
                pto += TLP_MAX_ACK_DELAY
        deadline = now + pto
        timers.pto = deadline if deadline < rtx else None

    def send_loss_probe(self, now: float) -> None:
        """RFC 8985 7.3: the PTO expired. Send one new MSS-sized segment if there is
        unsent data and the receive window allows it (cwnd is not consulted), else
        retransmit the highest segment sent; remember TLP.end_seq; re-arm the RTO,
        not the PTO. The ACK the probe elicits (with SACK blocks) lets SACK recovery
        or Early Retransmit repair a tail loss without waiting for the RTO."""
        snd = self.snd
        if (
            self.conn.state not in CAN_OUTPUT
            or snd.flight_size == 0
            or self.tlp_end_seq is not None
            or self.in_recovery
            or snd.una < self.recover
        ):
            return
        mss = snd.mss
        data_end = snd.data_end
        n = min(data_end - snd.max, mss)
        if n > 0 and snd.nxt == snd.max and snd.max + n <= snd.una + snd.wnd:
            start = snd.max
            fin = snd.fin_queued and start + n == data_end
            payload = snd.peek(start, n)
            self.tlp_is_retrans = False
        else:
            # The last segment: its end aligned with SND.MAX (and the FIN if sent),
            # sized so that the SACK blocks riding along do not shorten it.
            fin = snd.fin_queued and snd.max == data_end + 1
            stop = snd.max - (1 if fin else 0)
            start = max(snd.una, stop - (mss - self.opts.sack_len()))
            payload = snd.peek(start, stop - start) if stop > start else b""
            self.tlp_is_retrans = True
        sent = snd.transmit(start, payload, now, fin=fin, reason="tlp")
        self.tlp_end_seq = snd.max
        self.conn.emit("tlp", seq=start & MASK32, len=sent, new_data=not self.tlp_is_retrans)
        self.arm_rtx(now)

    def dsack_of(self, seg: TCPSegment, ack: int) -> tuple[int, int] | None:
        """The D-SACK block this ACK carries, unwrapped, if any (RFC 2883 section 4: the
        first block, at or below the cumulative ACK)."""
        blocks = seg.options.sack_blocks
        if not blocks or not self.opts.sack_ok:
            return None
        unwrap = self.conn.unwrap
        s = unwrap(blocks[0][0], ack)
        e = unwrap(blocks[0][1], ack)
        return (s, e) if e <= ack else None

    def tlp_on_ack(self, ack: int, seg: TCPSegment, now: float) -> None:
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
        dsack = self.dsack_of(seg, ack)
        if dsack is not None and dsack[0] < end <= dsack[1] + 1:  # the probe (+1: its FIN)
            self.tlp_end_seq = None
            return
        if ack > end:
            self.tlp_end_seq = None
            cc_events.on_tlp_loss(self.cc, now)
            self.conn.emit_cwnd("tlp_loss")

    # ------------------------------------------------------------ SACK recovery

    def update_scoreboard(self, blocks: list[tuple[int, int]]) -> bool:
        """Merge an ACK's SACK blocks (RFC 2018 section 4); True if any is new."""
        snd = self.snd
        una, top = snd.una, snd.max
        unwrap = self.conn.unwrap
        changed = False
        add = self.scoreboard.add
        for raw_start, raw_end in blocks:
            if add(unwrap(raw_start, una), unwrap(raw_end, una), una, top):
                changed = True
        return changed

    def lost_boundary(self, dup_thresh: int = DUP_THRESH) -> int:
        """RFC 6675 IsLost: un-SACKed bytes below this point are deemed lost.

        A byte is lost when more than (DupThresh - 1) * SMSS bytes above it have been
        SACKed (RFC 6675 section 4, IsLost, second condition). Early Retransmit passes
        its lower threshold (RFC 5827 section 3.2).
        """
        return self.scoreboard.lost_boundary((dup_thresh - 1) * self.snd.mss + 1, self.snd.una)

    def pipe(self) -> int:
        """RFC 6675 section 4 SetPipe, in bytes, computed from ranges not segments."""
        snd = self.snd
        una, top = snd.una, snd.max
        lost = max(self.lost_boundary(), una)
        sacked_between = self.scoreboard.sacked_between

        def unsacked(a: int, b: int) -> int:
            return max(b - a, 0) - sacked_between(a, b) if b > a else 0

        return (
            unsacked(una, top)
            - unsacked(una, min(lost, top))
            + unsacked(una, min(self.high_rxt, top))
        )

    def send_quota(self) -> int:
        """Bytes loss recovery may send now: RFC 6675 section 5 (C), cwnd - pipe.
        (PRR, RFC 6937, answers this question differently.)"""
        return self.cc.cwnd - self.pipe()

    def sack_recovery_output(self, now: float) -> None:
        """RFC 6675 section 5 steps (C): send while the quota allows 1 SMSS."""
        snd = self.snd
        mss = snd.mss
        scoreboard = self.scoreboard
        for _ in range(1024):
            if self.send_quota() < mss:
                break
            lost = self.lost_boundary()
            # NextSeg rule 1: the first lost, un-SACKed, not yet retransmitted data.
            hole = scoreboard.next_hole(max(self.high_rxt, snd.una), min(lost, snd.max))
            if hole is not None:
                start, end = hole
                n = min(end - start, mss)
                fin = snd.fin_queued and start + n == snd.data_end and start + n < snd.max
                payload = snd.peek(start, n) if n else b""
                sent = snd.transmit(start, payload, now, fin=fin, reason="sack")
                self.high_rxt = start + max(sent, 1)
                continue
            # Rule 2: new data, if the receiver's window allows.
            data_end = snd.data_end
            avail = data_end - snd.max
            window_room = snd.una + snd.wnd - snd.max
            n = min(avail, window_room, mss)
            fin = snd.fin_queued and snd.max <= data_end and snd.max + n == data_end
            if n > 0 or fin:
                snd.nxt = snd.max
                payload = snd.peek(snd.max, n) if n else b""
                snd.transmit(snd.max, payload, now, fin=fin, reason=None)
                continue
            # Rule 3: un-SACKed data below the highest SACKed byte, not lost yet.
            top = scoreboard.highest_start(snd.una)
            hole = scoreboard.next_hole(max(self.high_rxt, snd.una), top)
            if hole is not None:
                start, end = hole
                n = min(end - start, mss)
                payload = snd.peek(start, n)
                sent = snd.transmit(start, payload, now, fin=False, reason="sack")
                self.high_rxt = start + sent
                continue
            break

    # ------------------------------------------------------------- ACK arrival

    def on_ack(self, seg: TCPSegment, ack: int, window: int, now: float) -> None:
        """An acceptable ACK (RFC 9293 3.10.7.4 "fifth"), before the send window is
        updated from it: SACK blocks, the probe check, then new or duplicate ACK."""
        snd = self.snd
        sack_news = False
        if seg.options.sack_blocks and self.opts.sack_ok:
            sack_news = self.update_scoreboard(seg.options.sack_blocks)
        if self.tlp_end_seq is not None:
            self.tlp_on_ack(ack, seg, now)
        if ack > snd.una:
            if self.undo_ts is not None:
                self.check_undo(seg.options.timestamp, now)
            self.on_new_ack(ack, now)
        elif (
            ack == snd.una
            and snd.flight_size > 0
            and snd.wnd > 0  # answers to zero-window probes (RFC 9293 3.8.6.1) are
            # not loss signals: counting them triggered fast retransmit and cut ssthresh
            and not seg.payload
            and not seg.flags & (SYN | FIN)
            and (window == snd.wnd or sack_news)
        ):
            self.on_duplicate_ack(now, sack_news)

    def on_new_ack(self, ack: int, now: float) -> None:
        """SND.UNA advances to `ack`: RTT sample, release, recovery progress, cc."""
        snd = self.snd
        acked = ack - snd.una
        self.rtt_on_ack(ack, now)
        snd.advance(ack)
        self.retries = 0
        self.scoreboard.advance(ack)
        if self.high_rxt < ack:
            self.high_rxt = ack

        if self.in_recovery:
            if ack >= self.recover:
                # Full acknowledgment: leave fast recovery (RFC 6582 3.2 step 3).
                self.in_recovery = False
                self.dupacks = 0
                self.cc.on_recovery_exit(snd.flight_size, now)
                self.conn.emit_cwnd("recovery_exit")
            elif not self.opts.sack_ok:
                # Partial acknowledgment (RFC 6582 3.2 step 5): retransmit the next hole,
                # deflate the window by the amount acked, add back one SMSS.
                payload = snd.peek(snd.una, snd.mss)
                snd.transmit(snd.una, payload, now, fin=False, reason="partial_ack")
                cc_events.on_partial_ack(self.cc, acked, snd.mss)
                self.conn.emit_cwnd("partial_ack")
        else:
            self.dupacks = 0
            self.cc.on_ack(acked, now, self.rto.srtt)
            if self.conn.on_event is not None:
                self.conn.emit_cwnd("ack")

        # RFC 6298 5.2/5.3: stop the timer when all is acked, else restart it.
        if snd.max == snd.una:
            self.timers.rtx = self.timers.pto = None
        else:
            self.arm_rtx(now)
            self.arm_pto(now)  # RFC 8985 7.2

    def dup_thresh(self) -> int:
        """DupThresh (RFC 5681 3.2, RFC 6675 section 2), lowered by Early Retransmit.

        RFC 5827 section 3.2: when (3.a) less than 4 * SMSS is outstanding and (3.b)
        no previously unsent data can be sent (none queued, or the windows forbid it:
        so Limited Transmit cannot bring more duplicate ACKs), DupThresh becomes
        ER_thresh = ceiling(ownd / SMSS) - 1: with 2 segments out, 1 duplicate ACK
        (or 1 SACKed segment) starts loss recovery, with 3 segments out, 2 do. (Not
        below 1: a lone segment cannot cause a duplicate ACK.)
        """
        snd = self.snd
        ownd = snd.flight_size
        mss = snd.mss
        if ownd < ER_SEGMENTS * mss and not snd.can_send_new_segment():
            return max(-(-ownd // mss) - 1, 1)
        return DUP_THRESH

    def detect_losses(self, thresh: int) -> bool:
        """The loss-detection step: is any data deemed lost now? Today RFC 6675 IsLost
        (more than DupThresh - 1 segments SACKed above a hole); RACK (RFC 8985 6.2)
        marks losses by time here."""
        return self.opts.sack_ok and self.lost_boundary(thresh) > self.snd.una

    def on_duplicate_ack(self, now: float, sack_news: bool) -> None:
        """RFC 5681 3.2 / RFC 6582 3.2 / RFC 6675 5 / RFC 5827: duplicate ACKs."""
        snd = self.snd
        conn = self.conn
        self.dupacks += 1
        if self.in_recovery:
            if not self.opts.sack_ok:
                cc_events.on_duplicate_ack_in_recovery(self.cc, snd.mss)  # RFC 6582 3.2 step 4
            return
        thresh = self.dup_thresh()
        if self.dupacks < thresh and not self.detect_losses(thresh):
            snd.output(now)  # RFC 3042 Limited Transmit
            return
        # RFC 6582 section 3.2 step 2: only if the ACK covers more than "recover"
        # (our `recover` is one past the RFC's "highest sequence number transmitted").
        if snd.una < self.recover:
            return
        self.in_recovery = True
        self.recover = snd.max
        self.tlp_end_seq = self.timers.pto = None  # RFC 8985 7.1 / 7.2: no TLP in recovery
        if thresh < DUP_THRESH:
            conn.emit("early_retransmit", dupacks=self.dupacks, thresh=thresh)
        # RFC 5681 3.2 step 2 with RFC 3042: data sent by Limited Transmit (at most
        # 2 SMSS beyond cwnd) MUST NOT be counted in the FlightSize used for ssthresh.
        self.arm_undo(now)
        cc_events.on_fast_retransmit(self.cc, min(snd.flight_size, self.cc.cwnd), now)
        conn.emit_cwnd("fast_retransmit")
        if self.opts.sack_ok:
            # RFC 6675 section 5 step (4.3): retransmit the first lost segment at once,
            # then send what the quota allows.
            hole = self.scoreboard.next_hole(snd.una, snd.max)
            if hole is not None:
                n = min(hole[1] - hole[0], snd.mss)
                payload = snd.peek(hole[0], n)
                fin = snd.fin_queued and hole[0] + n == snd.data_end
                sent = snd.transmit(hole[0], payload, now, fin=fin, reason="fast")
                self.high_rxt = hole[0] + max(sent, 1)
            self.sack_recovery_output(now)
        else:
            payload = snd.peek(snd.una, snd.mss)
            fin = snd.fin_queued and snd.una + len(payload) == snd.data_end
            snd.transmit(snd.una, payload, now, fin=fin, reason="fast")
            # "+ 3 * SMSS" for the segments that left the network: DupThresh of them.
            cc_events.inflate_for_departed(self.cc, thresh * snd.mss)
        self.arm_rtx(now)

    # --------------------------------------------------------- Eifel undo

    def arm_undo(self, now: float) -> None:
        """Remember the window before a loss response, and the timestamp the first
        retransmission will carry (RFC 3522 section 3.1)."""
        if self.opts.ts_ok:
            self.prior_cwnd = self.cc.cwnd
            self.prior_ssthresh = self.cc.ssthresh
            self.undo_ts = self.opts.ts_now(now)

    def check_undo(self, timestamp: tuple[int, int] | None, now: float) -> None:
        """RFC 3522 section 3.2: the first ACK for new data after a retransmission tells
        which copy arrived. If it echoes a timestamp older than the retransmission's,
        the original got through and the "loss" was reordering or delay: restore the
        congestion state (RFC 4015 section 3, the Eifel response)."""
        undo_ts, self.undo_ts = self.undo_ts, None
        if timestamp is None or undo_ts is None or seq_diff(timestamp[1], undo_ts) >= 0:
            return
        snd = self.snd
        self.spurious_retransmits += 1
        cc_events.undo(self.cc, self.prior_cwnd, self.prior_ssthresh)
        self.in_recovery = False
        self.dupacks = 0
        # The episode is void: a real loss right behind it may start fast recovery at
        # once, without waiting for the old RecoveryPoint (RFC 6582 "recover").
        self.recover = snd.una
        if snd.nxt < snd.max:
            snd.nxt = snd.max  # RFC 4015 section 3: no go-back-N after a spurious RTO
        self.conn.emit_cwnd("undo")
