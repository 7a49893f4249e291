"""Loss detection and recovery of one TCP sender, with RTT sampling.

Owns:

* RTT sampling (RFC 6298 sections 2-3 with Karn's rule, the first sample from the
  handshake when the SYN was not retransmitted; RFC 7323 4.1 TSecr samples after
  retransmissions) feeding the RTO estimator (stack/tcp/rto.py); an ACK of new
  data ends an exponential backoff;
* the retransmission timeout (RFC 6298 5.4-5.7; SYN retries, RFC 9293 3.8.1);
* with SACK (the default): RACK-TLP loss detection (RFC 8985, state in
  stack/tcp/rack.py), fast recovery paced by PRR (RFC 6937, stack/tcp/prr.py), RTO
  recovery that resends only what RACK marks lost (RFC 8985 6.3), D-SACK: spurious
  retransmission detection and undo (RFC 3708, stack/tcp/dsack.py) and the reordering
  window it widens;
* without SACK, or with ``TcpConfig(rack=False)``: duplicate-ACK counting, fast
  retransmit and NewReno fast recovery (RFC 5681 3.2, RFC 6582), Limited Transmit (RFC
  3042), Early Retransmit (RFC 5827), SACK-based loss recovery (RFC 6675) over a
  `Scoreboard` (stack/tcp/scoreboard.py, kept up to date in both cases);
* the Tail Loss Probe (RFC 8985 section 7) in both;
* Eifel (RFC 3522 / RFC 4015) spurious retransmission detection and undo;
* the loss-recovery events reported to congestion control
  (stack/tcp/congestion/events.py): nothing here writes ``cwnd`` itself.

It sends through the `Sender` (stack/tcp/sender.py), which reports every
(re)transmission back (`on_sent`), reads what the handshake settled from `Options`
(stack/tcp/options.py: SACK-permitted, timestamps, our TSval clock) and asks the
`Connection` only for its state, events and termination.

Retransmissions are reported with the rule that caused them: ``rack`` (RACK marked
the segment lost, RFC 8985 6.2/6.3), ``tlp`` (the probe, 7.3), ``rto`` (the timer),
``fast``/``sack``/``partial_ack`` (the DupThresh rules), ``probe`` (zero window),
``pmtu``.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import TYPE_CHECKING

from stack.tcp.congestion import CongestionControl, RateDriven
from stack.tcp.congestion import events as cc_events
from stack.tcp.dsack import SpuriousRetransmissions, split_dsack
from stack.tcp.prr import PRR
from stack.tcp.rack import Rack, Segment, TailLossProbe
from stack.tcp.rate import DeliveryRate
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
# The TLP constants (RFC 8985 7.2: the PTO without an RTT sample, TLP.max_ack_delay)
# are in stack/tcp/rack.py with the rest of RACK-TLP.


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
        self.tlp = TailLossProbe()
        # RACK (RFC 8985 section 6), PRR (RFC 6937), D-SACK undo (RFC 3708).
        self.rack = Rack()
        self.prr = PRR(max(snd.mss, 1))
        self.spurious = SpuriousRetransmissions()
        self.in_loss = False  # RTO recovery (RFC 8985 "RTO recovery", Linux CA_Loss)
        # The recovery point of the fast recovery an RTO interrupted, while that RTO
        # recovery lasts: an undo of the timeout returns to that episode.
        self.interrupted_recover: int | None = None
        self.dsack_undos = 0
        # Delivery-rate samples (stack/tcp/rate.py), for a rate-driven algorithm only
        # (BBR, congestion/bbr.py): the default path pays nothing for them.
        self.rate_driven: RateDriven | None = cc if isinstance(cc, RateDriven) else None
        self.rate = DeliveryRate() if self.rate_driven is not None else None

    def use_congestion_control(self, cc: CongestionControl) -> None:
        """Another algorithm takes over (TCP_CONGESTION, Connection.set_congestion_control);
        a rate-driven one gets samples of what is sent from now on."""
        self.cc = cc
        self.rate_driven = cc if isinstance(cc, RateDriven) else None
        if self.rate_driven is None:
            self.rate = None
        elif self.rate is None:
            self.rate = DeliveryRate()

    @property
    def tlp_end_seq(self) -> int | None:
        """TLP.end_seq (RFC 8985 section 7.1)."""
        return self.tlp.end_seq

    @property
    def tlp_is_retrans(self) -> bool:
        """TLP.is_retrans (RFC 8985 section 7.1)."""
        return self.tlp.is_retrans

    @property
    def use_rack(self) -> bool:
        """RACK-TLP and PRR recover losses (RFC 8985, RFC 6937): SACK was agreed and
        the config does not ask for RFC 6675's DupThresh rules instead."""
        return self.opts.sack_ok and self.conn.config.rack

    def on_sent(self, seq: int, end: int, now: float, retransmit: bool) -> None:
        """The sender (re)transmitted [seq, end): RACK's per-segment times (RFC 8985
        6.1), PRR's prr_out (RFC 6937 section 3), RFC 3708's retransmission count."""
        if end <= seq:
            return
        if self.use_rack:
            opts = self.opts
            rack = self.rack
            rate = self.rate
            tx = None
            if rate is not None:
                in_flight = rack.in_flight
                tx = rate.on_send(now, in_flight)
                snd = self.snd
                if end >= snd.data_end and in_flight + (end - seq) < self.cc.cwnd:
                    # Nothing more to send and room left in the window: what is
                    # sampled until this is delivered is the application's rate.
                    rate.mark_app_limited(in_flight + (end - seq))
            rack.on_transmit(seq, end, now, opts.ts_now(now) if opts.ts_ok else None, tx)
        if self.prr.active:
            self.prr.on_sent(end - seq)
        if retransmit:
            self.spurious.on_retransmit(seq, end)

    # ------------------------------------------------------------ RTT sampling

    def note_retransmit(self, seq: int, length: int, reason: str) -> None:
        """Data (or a SYN) at `seq` is being sent again."""
        self.snd.retransmits += 1
        self.rtt_seq = None  # Karn's rule (RFC 6298 section 3)
        self.rtt_after_retransmit = self.opts.ts_ok or self.opts.offered_ts  # (SYN: not agreed)
        self.conn.emit("retransmit", seq=seq & MASK32, len=length, reason=reason)

    def time_syn(self, now: float, *, again: bool) -> None:
        """Our SYN (or SYN-ACK) goes out: time it, so that the ACK of the SYN gives the
        first RTT sample (RFC 6298 section 2: "the first RTT measurement" may come
        from the handshake; 2.2 then sets SRTT, RTTVAR and RTO, 2.1's 1 s no longer
        applies). Linux does the same: the active side's SYN is timed like data
        (tcp_clean_rtx_queue -> tcp_ack_update_rtt on the SYN-ACK), the passive side
        times its SYN-ACK to the ACK that completes the handshake (tcp_synack_rtt_meas).

        `again`: our SYN's sequence number was sent before (a retransmitted SYN or
        SYN-ACK, or the SYN-ACK of a simultaneous open, which repeats our SYN):
        Karn's rule (RFC 6298 section 3), no sample from the ACK of an ambiguous copy;
        with timestamps (offered or agreed) the echo still says which copy it answers
        (RFC 7323 4.1), as for retransmitted data (`note_retransmit`)."""
        if again:
            self.rtt_seq = None
            self.rtt_after_retransmit = self.opts.ts_ok or self.opts.offered_ts
        else:
            self.rtt_seq = self.snd.iss + 1
            self.rtt_time = now

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
            if self.rtt_after_retransmit:
                # As for data (Sender.transmit): only an echo of this copy's TSval or a
                # later one is an RTT sample (RFC 6298 3, RFC 7323 4.1). A peer whose
                # ACK of an earlier copy was lost answers this one, out of its window,
                # with a duplicate ACK still echoing the earlier TSval: that would be
                # a "sample" of the whole wait (2 s after two SYN-ACK timeouts).
                self.rtx_tsval = self.opts.ts_now(now)
            conn.send_syn(now, ack=passive)
            self.arm_rtx(now)
            return
        if self.snd.flight_size == 0:
            return
        if self.retries > config.max_retries:
            conn.terminate(conn.soft_error or errno.ETIMEDOUT)
            return
        if self.use_rack:
            self.rack_rto(now)
        else:
            self.go_back_n(now, reason="rto")

    def rack_rto(self, now: float) -> None:
        """The RTO fired, with RACK: RTO recovery (RFC 8985 section 6.3).

        Congestion control answers the timeout (RFC 5681 3.1: cwnd = 1 SMSS, ssthresh
        on the first of a series), RTO backs off (RFC 6298 5.5), TLP starts over (RFC
        8985 7.4.1). `RACK_mark_losses_on_RTO` marks the first segment and those sent
        more than RACK.rtt + reo_wnd ago lost; only those are resent, lowest first, as
        cwnd allows (no go-back-N: SACKed data is not sent again). During RTO recovery
        RACK goes on marking lost retransmissions from the ACKs.
        """
        snd = self.snd
        first = self.retries <= 1
        if first:
            self.arm_undo(now)
            self.spurious.start_episode(snd.una, snd.max)
            # A timeout in fast recovery: remember that episode, whose loss was real,
            # for the case that this timeout proves spurious (`end_undone_episode`).
            self.interrupted_recover = (
                self.recover if self.in_recovery and snd.una < self.recover else None)
        cc_events.on_timeout(self.cc, snd.flight_size, now, first=first, mss=snd.mss)
        self.rto.backoff()  # RFC 6298 5.5
        self.conn.emit_cwnd("rto")
        self.in_recovery = False
        self.prr.end()
        self.in_loss = True
        self.recover = snd.max
        self.dupacks = 0
        self.tlp.reset()
        self.timers.pto = self.timers.rack = None
        self.rtt_seq = None  # Karn's rule: no sample from retransmitted data
        self.rack.mark_lost_on_rto(now)
        snd.nxt = snd.max
        self.rack_output(now, force=True)
        self.arm_rtx(now)

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
        # RFC 8985 7.4.1: TLP starts over after RTO recovery; no probe during it (7.2).
        self.tlp.reset()
        self.timers.pto = None
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

        Not in fast or RTO recovery, not while a probe is out (7.3), not with nothing
        in flight, and only with SACK (section 4: the probe elicits SACK information).
        While segments are SACKed the timer is not restarted (RACK.segs_sacked != 0):
        RACK's reordering timer and the RTO cover that case (Linux: the probe timer
        gives way to them).
        PTO = 2 * SRTT (+ TLP.max_ack_delay with one segment in flight), 1 s before
        any RTT sample, and never later than the RTO would fire (`TLP_calc_PTO`'s
        clamp): at worst the probe goes at the RTO's time, and the RTO is re-armed.
        """
        snd = self.snd
        timers = self.timers
        flight = snd.max - snd.una
        sacked = self.rack.segs_sacked if self.use_rack else len(self.scoreboard.blocks)
        if not self.tlp.may_schedule(sack_ok=self.opts.sack_ok,
                                     in_recovery=self.in_recovery or self.in_loss or snd.una < self.recover,
                                     segs_sacked=sacked, flight_size=flight):  # fmt: skip
            timers.pto = None
            return
        timers.pto = self.tlp.pto_deadline(now, self.rto.srtt, flight <= snd.mss, timers.rtx)

    def send_loss_probe(self, now: float) -> None:
        """RFC 8985 7.3 ``TLP_send_probe``: the PTO expired. Send one new MSS-sized
        segment if there is unsent data and the receive window allows it (cwnd is not
        consulted), else retransmit the highest segment sent; remember TLP.end_seq and
        TLP.is_retrans; re-arm the RTO, not the PTO ("This ensures RTO recovery
        remains the last resort if TLP fails"). The ACK the probe elicits, with SACK
        blocks, lets RACK find the loss of the tail instead of the RTO."""
        snd = self.snd
        if (
            self.conn.state not in CAN_OUTPUT
            or snd.flight_size == 0
            or self.tlp.end_seq is not None
            or self.in_recovery
            or self.in_loss
            or snd.una < self.recover
        ):
            if snd.flight_size:
                self.arm_rtx(now)
            return
        mss = snd.mss
        data_end = snd.data_end
        n = min(data_end - snd.max, mss)
        if n > 0 and snd.nxt == snd.max and snd.max + n <= snd.una + snd.wnd:
            start = snd.max
            fin = snd.fin_queued and start + n == data_end
            payload = snd.peek(start, n)
            is_retrans = False
        else:
            # The last segment: its end aligned with SND.MAX (and the FIN if sent),
            # sized so that the SACK blocks riding along do not shorten it.
            fin = snd.fin_queued and snd.max == data_end + 1
            stop = snd.max - (1 if fin else 0)
            start = max(snd.una, stop - (mss - self.opts.sack_len()))
            payload = snd.peek(start, stop - start) if stop > start else b""
            is_retrans = True
        self.spurious.end_episode()  # the probe's own outcome is judged by 7.4
        sent = snd.transmit(start, payload, now, fin=fin, reason="tlp")
        self.tlp.on_probe_sent(snd.max, is_retrans)
        self.conn.emit("tlp", seq=start & MASK32, len=sent, new_data=not is_retrans)
        self.arm_rtx(now)

    def dsack_of(self, seg: TCPSegment, ack: int) -> tuple[int, int] | None:
        """The D-SACK block this ACK carries, unwrapped, if any (RFC 2883 section 4)."""
        blocks = seg.options.sack_blocks
        if not blocks or not self.opts.sack_ok:
            return None
        unwrap = self.conn.unwrap
        una = self.snd.una
        return split_dsack([(unwrap(s, una), unwrap(e, una)) for s, e in blocks], ack)[0]

    def tlp_on_ack(self, ack: int, seg: TCPSegment, now: float,
                   dsack: tuple[int, int] | None = None) -> None:
        """RFC 8985 7.4.2 ``TLP_process_ack``: did the probe repair a loss? Then
        congestion control responds to that one loss (like Linux: cwnd and ssthresh
        to half the window, RFC 8985 7.4.2 leaves the response to the algorithm)."""
        snd = self.snd
        if dsack is None:
            dsack = self.dsack_of(seg, ack)
        is_dupack = ack == snd.una and not seg.payload and not seg.flags & (SYN | FIN)
        has_sack = bool(seg.options.sack_blocks) and self.opts.sack_ok
        if self.tlp.on_ack(ack, dsack=dsack, has_sack=has_sack, is_dupack=is_dupack):
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
        updated from it: SACK and D-SACK blocks, the probe check, then new or
        duplicate ACK."""
        snd = self.snd
        conn = self.conn
        blocks: list[tuple[int, int]] = []
        dsack: tuple[int, int] | None = None
        raw = seg.options.sack_blocks
        if raw and self.opts.sack_ok:
            unwrap = conn.unwrap
            una = snd.una
            dsack, blocks = split_dsack([(unwrap(s, una), unwrap(e, una)) for s, e in raw], ack)
        sack_news = False
        add = self.scoreboard.add
        for start, end in blocks:
            if add(start, end, snd.una, snd.max):
                sack_news = True
        if self.tlp.end_seq is not None:
            self.tlp_on_ack(ack, seg, now, dsack)
        if dsack is not None:
            self.on_dsack(dsack, now)
        if sack_news and self.timers.pto is not None:
            # RFC 8985 7.2: no probe timer while segments are SACKed: RACK (its
            # reordering timer) and the RTO take over, as in Linux.
            self.timers.pto = None
        if ack > snd.una:
            if self.undo_ts is not None:
                self.check_undo(seg.options.timestamp, now)
            self.on_new_ack(ack, now, blocks, dsack is not None)
        elif self.use_rack:
            if blocks or dsack is not None:
                self.rack_on_ack(blocks, dsack is not None, now, 0)
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

    def on_new_ack(self, ack: int, now: float, blocks: list[tuple[int, int]] | None = None,
                   dsack: bool = False) -> None:
        """SND.UNA advances to `ack`: RTT sample, release, recovery progress, cc."""
        snd = self.snd
        acked = ack - snd.una
        self.rtt_on_ack(ack, now)
        snd.advance(ack)
        self.retries = 0
        # The peer is answering: no exponential backoff while ACKs of new data arrive
        # (RFC 6298 5: the backoff ends with the next valid sample; Karn's rule may
        # leave none, Linux resets icsk_backoff on any such ACK).
        if self.rto.backed_off:
            self.rto.clear_backoff()
        self.scoreboard.advance(ack)
        if self.high_rxt < ack:
            self.high_rxt = ack

        if self.use_rack:
            self.rack_on_ack(blocks or [], dsack, now, acked)
        elif self.in_recovery:
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
            self.timers.rtx = self.timers.pto = self.timers.rack = None
        else:
            self.arm_rtx(now)
            self.arm_pto(now)  # RFC 8985 7.2

    # ----------------------------------------------------- RACK-TLP with PRR

    def rack_on_ack(self, blocks: list[tuple[int, int]], dsack: bool, now: float,
                    acked: int) -> None:
        """RFC 8985 section 6.2 for one ACK, and what follows from it.

        RACK updates its state and marks segments lost by time (lost retransmissions
        included). The first loss starts fast recovery (RFC 8985 section 3.2: RACK
        "starts fast recovery"; RFC 6675 5 / RFC 5681 3.2 for the congestion
        response), whose sending PRR then paces (RFC 6937); RTO recovery and fast
        recovery end when SND.UNA passes the recovery point. Outside recovery, new
        data grows cwnd as usual. The reordering timer follows RACK's deadline.
        """
        snd = self.snd
        rack = self.rack
        result = rack.on_ack(snd.una, blocks, now, snd_nxt=snd.max, srtt=self.rto.srtt,
                             in_recovery=self.in_recovery or self.in_loss,
                             tsecr=self.seg_tsecr, dsack=dsack)  # fmt: skip
        conn = self.conn
        if result.reo_wnd_grew:
            conn.emit("reo_wnd", mult=rack.reo_wnd_mult, reo_wnd=round(rack.reo_wnd, 6))
        if result.lost_retransmissions:
            conn.emit("lost_retransmit", count=result.lost_retransmissions)
        if self.in_recovery and snd.una >= self.recover:
            # RFC 6582 3.2 step 3 / RFC 6675 5 (RecoveryPoint reached): recovery is over.
            self.in_recovery = False
            self.prr.end()
            rack.on_recovery_exit()  # RFC 8985 6.2 step 4: reo_wnd_persist
            if self.rate_driven is None:
                cc_events.on_prr_exit(self.cc, snd.flight_size, now)
            else:  # BBR keeps the window it set itself (`give_rate_sample`)
                self.cc.on_recovery_exit(snd.flight_size, now)
            conn.emit_cwnd("recovery_exit")
        elif self.in_loss and snd.una >= self.recover:
            self.in_loss = False
            self.interrupted_recover = None
            rack.on_recovery_exit()
        if result.lost and not self.in_recovery and not self.in_loss:
            self.enter_recovery(now, "rack", result.delivered)
        elif self.in_recovery:
            self.prr_ack(result.delivered)
        elif acked:
            self.dupacks = 0
            self.cc.on_ack(acked, now, self.rto.srtt)  # (in RTO recovery: slow start)
            if conn.on_event is not None:
                conn.emit_cwnd("ack")
        if self.rate is not None:
            self.give_rate_sample(result.newly, result.delivered, result.lost, now)
        self.timers.rack = rack.deadline

    def give_rate_sample(self, newly: Sequence[Segment], delivered: int,
                         lost: list[tuple[int, int]], now: float) -> None:
        """draft-cheng-iccrg-delivery-rate-estimation 3.3: count what this ACK
        delivered, and hand the rate sample to the algorithm (BBR), which sets its
        window from it (RateDriven, congestion/base.py)."""
        rate, cc = self.rate, self.rate_driven
        if rate is None or cc is None or not (delivered or lost):
            return
        for seg in newly:
            rate.on_delivered(seg.tx, seg.length, seg.xmit_ts, now, seg.retransmitted)
        rack = self.rack
        sample = rate.take_sample(
            now, rack.min_rtt, newly_delivered=delivered,
            newly_lost=sum(end - start for start, end in lost), in_flight=rack.in_flight,
            in_recovery=self.in_recovery or self.in_loss)  # fmt: skip
        cc.on_rate_sample(sample, now)
        if self.conn.on_event is not None:
            self.conn.emit("cwnd", reason="rate", rate=round(sample.delivery_rate),
                           **self.cc.snapshot())

    def prr_ack(self, delivered: int) -> None:
        """RFC 6937 section 3 on an ACK in recovery: sndcnt from DeliveredData and
        pipe, which the window then allows (cwnd = pipe + sndcnt). A rate-driven
        algorithm (BBR) sets the window itself (`give_rate_sample`)."""
        if self.rate_driven is not None:
            return
        pipe = self.rack.in_flight
        sndcnt = self.prr.on_ack(delivered, pipe)
        cc_events.on_prr(self.cc, pipe, sndcnt)
        conn = self.conn
        if conn.on_event is not None:
            prr = self.prr
            conn.emit("prr", sndcnt=sndcnt, pipe=pipe, prr_delivered=prr.prr_delivered,
                      prr_out=prr.prr_out, recover_fs=prr.recover_fs, ssthresh=prr.ssthresh)
            conn.emit_cwnd("prr")

    def enter_recovery(self, now: float, reason: str, delivered: int = 0) -> None:
        """Fast recovery begins: RACK marked a loss (RFC 8985 3.2 and 6.2), or the
        reordering timer did (6.3). Congestion control sets ssthresh (RFC 5681 3.2
        step 2: from FlightSize), PRR starts (RFC 6937 section 3, RecoverFS =
        FlightSize), no TLP during recovery (RFC 8985 7.2), and D-SACKs of this
        episode's retransmissions may prove it spurious (RFC 3708)."""
        snd = self.snd
        self.in_recovery = True
        self.recover = snd.max
        self.tlp.reset()
        self.timers.pto = None
        self.arm_undo(now)
        self.spurious.start_episode(snd.una, snd.max)
        flight = snd.flight_size
        cc_events.on_fast_retransmit(self.cc, min(flight, self.cc.cwnd), now)
        self.prr.mss = snd.mss
        self.prr.start(self.cc.ssthresh, flight)
        self.conn.emit("recovery", reason=reason, lost=self.rack.lost_bytes,
                       ssthresh=self.cc.ssthresh, recover_fs=flight)
        self.conn.emit_cwnd("fast_retransmit")
        self.prr_ack(delivered)  # the ACK that revealed the loss counts (RFC 6937 3)

    def rack_output(self, now: float, force: bool = False) -> None:
        """Send during recovery: lost segments first (lowest first), then new data,
        as much as the quota allows: PRR's sndcnt in fast recovery (RFC 6937), cwnd -
        pipe in RTO recovery (RFC 5681 slow start). The first retransmission of an
        episode always goes (RFC 6675 5 step 4.3, RFC 6937 section 3 leaves it to
        fast retransmit), and `force` sends one segment whatever the quota (the RTO)."""
        snd = self.snd
        conn = self.conn
        if conn.state not in CAN_OUTPUT:
            return
        mss = snd.mss
        rack = self.rack
        if self.in_recovery:
            # PRR's sndcnt (RFC 6937), or a rate-driven algorithm's own window.
            quota = self.prr.sndcnt if self.rate_driven is None else self.cc.cwnd - rack.in_flight
            if self.prr.prr_out == 0:
                force = True
        else:
            quota = self.cc.cwnd - rack.in_flight
        for _ in range(1024):
            if quota < mss and not force:
                break
            lost = rack.first_lost_segment()
            if lost is not None:
                start, end = lost.start, lost.end
                fin = snd.fin_queued and end == snd.data_end + 1
                stop = min(end - (1 if fin else 0), start + mss)
                if stop < end - (1 if fin else 0):
                    fin = False
                payload = snd.peek(start, stop - start) if stop > start else b""
                sent = snd.transmit(start, payload, now, fin=fin, reason=lost.cause or "rack")
                if start == snd.una:
                    self.arm_rtx(now)  # the head went again: its RTO counts from now (Linux)
                if sent == 0 and not fin:
                    break
            else:
                data_end = snd.data_end
                avail = data_end - snd.max
                window_room = snd.una + snd.wnd - snd.max
                n = max(min(avail, window_room, mss), 0)
                fin = snd.fin_queued and snd.max <= data_end and snd.max + n == data_end
                if n == 0 and not fin:
                    break
                if n < mss and n < avail and not fin:
                    break  # sender SWS avoidance (RFC 9293 3.8.6.2.1)
                snd.nxt = snd.max
                sent = snd.transmit(snd.max, snd.peek(snd.max, n) if n else b"", now, fin=fin,
                                    reason=None)
                if fin:
                    sent += 1
            quota -= max(sent, 1)
            force = False
        snd.check_persist(now)

    def on_rack_timer(self, now: float) -> None:
        """RFC 8985 section 6.3: the reordering timer expired. RACK_detect_loss runs
        again; a loss it finds starts recovery (or is resent within it)."""
        if self.conn.state not in CAN_OUTPUT or not self.use_rack:
            return
        result = self.rack.on_timer(now)
        self.timers.rack = self.rack.deadline
        if result.lost:
            if result.lost_retransmissions:
                self.conn.emit("lost_retransmit", count=result.lost_retransmissions)
            if not self.in_recovery and not self.in_loss:
                self.enter_recovery(now, "rack_timer")
            self.snd.output(now)

    def on_dsack(self, block: tuple[int, int], now: float) -> None:
        """A D-SACK block arrived (RFC 2883): if it proves that every retransmission
        of the episode was unnecessary (RFC 3708 section 3), undo the congestion
        response as RFC 3708 section 5 / RFC 4015 allow (Linux's "DSACK undo")."""
        self.conn.emit("dsack", start=block[0] & MASK32, end=block[1] & MASK32)
        if not self.spurious.on_dsack(block):
            return
        self.dsack_undos += 1
        self.spurious_retransmits += 1
        cc_events.undo(self.cc, self.prior_cwnd, self.prior_ssthresh)
        self.end_undone_episode()
        self.conn.emit_cwnd("dsack_undo")

    def end_undone_episode(self) -> None:
        """The episode whose response was just undone (RFC 3708 section 5, RFC 4015
        section 3) is void: leave fast or RTO recovery; RACK re-marks what is really
        lost from the ACKs to come.

        Normally a real loss right behind the episode may then start fast recovery at
        once, without waiting for the old RecoveryPoint (RFC 6582 "recover"). But if the
        undone episode was an RTO that interrupted a fast recovery, only the timeout
        was spurious: the undo restores the window of that fast recovery (`arm_undo`
        ran at the RTO), and the sender goes back into it, with its recovery point, as
        the RTO found it. Its remaining losses are then repaired in that episode, under
        its one reduction (RFC 5681 3.2 step 2 / RFC 6582 3.2: one reduction per
        window of data; RFC 8985 2.2: lost retransmissions are repaired in the episode),
        instead of starting a second one that would cut ssthresh again."""
        snd = self.snd
        resume, self.interrupted_recover = self.interrupted_recover, None
        self.in_recovery = False
        self.in_loss = False
        self.prr.end()
        self.rack.unmark_lost()
        if resume is not None and self.use_rack and snd.una < resume:
            self.in_recovery = True
            self.recover = resume
            self.prr.mss = snd.mss
            self.prr.start(self.cc.ssthresh, snd.flight_size)  # RFC 6937 3: RecoverFS now
            self.conn.emit("recovery", reason="resumed", lost=0, ssthresh=self.cc.ssthresh,
                           recover_fs=snd.flight_size)
        else:
            self.recover = snd.una

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
        self.tlp.reset()  # RFC 8985 7.2: no TLP in recovery
        self.timers.pto = None
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
        self.prior_cwnd = self.cc.cwnd
        self.prior_ssthresh = self.cc.ssthresh
        if self.opts.ts_ok:
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
        self.end_undone_episode()
        self.dupacks = 0
        if snd.nxt < snd.max:
            snd.nxt = snd.max  # RFC 4015 section 3: no go-back-N after a spurious RTO
        self.conn.emit_cwnd("undo")
