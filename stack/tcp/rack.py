"""RACK-TLP loss detection (RFC 8985), sans-IO.

RACK ("Recent ACKnowledgment", RFC 8985 section 6) decides by *time* that a segment
is lost: when a segment sent later than it has been delivered (cumulatively or by a
SACK block) and more than ``RACK.rtt + RACK.reo_wnd`` has passed since it was
sent. That finds losses that DupThresh (RFC 6675) needs three later segments for,
and it finds *lost retransmissions*: a retransmission is just a segment with a newer
transmission time, so once something sent after it is delivered, the same rule
applies to it again, without waiting for the RTO.

TLP ("Tail Loss Probe", RFC 8985 section 7) covers the case where nothing sent later
is delivered at all (the tail of a flight was lost): after about two round trips
without an ACK it sends one probe segment, whose ACK (with SACK blocks) lets RACK
repair the loss instead of the RTO.

This module keeps the per-segment state RACK needs and no bytes: the connection
tells it what it transmitted (``on_transmit``) and what each ACK said (``on_ack``),
and gets back the segments that are now lost and the deadline of the RACK reordering
timer. Sequence numbers are unwrapped ints (as in stack/tcp/connection.py); times are
seconds on the caller's clock; ``tsval`` / ``tsecr`` are the raw 32-bit RFC 7323
timestamp values (compared modulo 2**32).

What is implemented, with the RFC 8985 section of each rule:

* 5.2 / 6.1   per-segment ``xmit_ts``, ``retransmitted``, ``lost``; SACKed state;
* 6.2 step 1  ``RACK.min_RTT``, a windowed minimum (``MIN_RTT_WINDOW``);
* 6.2 step 2  ``RACK.segment`` (its ``xmit_ts`` and ``end_seq``) and ``RACK.rtt``,
              ignoring ambiguous ACKs of retransmitted segments (TSecr, min_RTT);
* 6.2 step 3  ``RACK.fack`` and ``RACK.reordering_seen``;
* 6.2 step 4  ``RACK.reo_wnd`` with the DSACK-driven ``reo_wnd_mult`` /
              ``reo_wnd_persist`` / ``dsack_round`` adaptation;
* 6.2 step 5  ``RACK_detect_loss`` and the reordering timer (6.3 on expiry);
* 6.3         marking losses when the RTO fires (``mark_lost_on_rto``);
* 7.2         PTO computation, clamped to the RTO's expiry;
* 7.3         probe selection (new data if the receive window allows, else the
              highest segment sent);
* 7.4         TLP episode state and the ACK processing that detects a loss the
              probe repaired (which congestion control must still answer).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from stack.tcp.rate import TxRecord
from stack.tcp.seq import seq_diff

# RFC 8985 section 6.2 step 4 (and 7.2 in RFC 6675 terms): DupThresh.
DUP_THRESH = 3
# RFC 8985 section 6.2 step 4: "Reset the window after 16 DSACK-free recoveries".
REO_WND_PERSIST = 16
# RFC 8985 section 6.2 step 1: a *windowed* min filter of the RTT ("SHOULD track a
# windowed min-filtered estimate"); Linux keeps 300 s (tcp_min_rtt_wlen).
MIN_RTT_WINDOW = 300.0
# RFC 8985 section 7.2: TLP.max_ack_delay, what a receiver may delay its ACK of a
# lone segment ("WCDelAckT"; Linux's TCP_DELACK_MAX is 200 ms), and the PTO
# before any RTT sample.
TLP_MAX_ACK_DELAY = 0.2
TLP_DEFAULT_PTO = 1.0
# Linux adds TCP_TIMEOUT_MIN (2 ms) to 2 * SRTT when more than one segment is in
# flight: on a sub-millisecond path 2 * SRTT alone is shorter than the jitter of the
# timer and of ACK processing, and every probe comes back D-SACKed (spurious).
TLP_MIN_SLACK = 0.002

_start = attrgetter("start")
_end = attrgetter("end")
_sent_order = attrgetter("xmit_ts", "end")  # RACK_sent_after's order


@dataclass(slots=True)
class Segment:
    """RFC 8985 section 5.2 "Per-segment variables", for the range [start, end)."""

    start: int
    end: int  # Segment.end_seq
    xmit_ts: float  # Segment.xmit_ts: time of the most recent transmission
    tsval: int | None = None  # our RFC 7323 TSval on that transmission
    retransmitted: bool = False  # Segment.retransmitted
    lost: bool = False  # Segment.lost
    sacked: bool = False  # delivered by a SACK block (not yet cumulatively)
    cause: str = ""  # what marked it lost: "rack" (section 6.2) or "rto" (section 6.3)
    # The delivery-rate snapshot of its last transmission (stack/tcp/rate.py), kept
    # only for a rate-driven congestion control (BBR).
    tx: TxRecord | None = None

    @property
    def length(self) -> int:
        return self.end - self.start


def sent_after(t1: float, seq1: int, t2: float, seq2: int) -> bool:
    """RFC 8985 section 6.2 ``RACK_sent_after``: was (t1, seq1) sent after (t2, seq2)?
    Equal times (clock granularity) are broken by the end sequence number."""
    return t1 > t2 or (t1 == t2 and seq1 > seq2)


@dataclass(slots=True)
class AckResult:
    """What one ACK did, as far as RACK is concerned."""

    delivered: int = 0  # bytes newly delivered: cumulatively or by SACK (RFC 6937's DeliveredData)
    newly_sacked: int = 0
    lost: list[tuple[int, int]] = field(default_factory=list)  # newly marked lost
    lost_retransmissions: int = 0  # of those, how many were retransmissions (lost again)
    rack_advanced: bool = False  # RACK.segment moved forward
    reo_wnd_grew: bool = False  # a DSACK widened the reordering window
    newly: Sequence[Segment] = ()  # the segments newly delivered


class Rack:
    """RACK's state for one connection (RFC 8985 sections 5.2, 6)."""

    def __init__(self, dup_thresh: int = DUP_THRESH) -> None:
        self.dup_thresh = dup_thresh
        # Outstanding segments in sequence order: [SND.UNA, SND.MAX) once tracked.
        self.segs: list[Segment] = []
        # Transmissions in the order they happened: (xmit_ts, end, start). Entries go
        # stale when their range is delivered, lost or sent again; `_head` skips the
        # stale prefix.
        self._order: list[tuple[float, int, int]] = []
        self._head = 0
        # RFC 8985 section 5.2 "Per-connection variables".
        self.xmit_ts = -math.inf  # RACK.xmit_ts (of RACK.segment)
        self.end_seq = 0  # RACK.end_seq
        self.rtt = 0.0  # RACK.rtt
        self.min_rtt: float | None = None  # RACK.min_RTT
        self._min_rtt_at = 0.0
        self.fack = 0  # RACK.fack: highest end_seq delivered
        self.reordering_seen = False  # RACK.reordering_seen
        self.reo_wnd_mult = 1  # RACK.reo_wnd_mult
        self.reo_wnd_persist = 0  # RACK.reo_wnd_persist
        self.dsack_round: int | None = None  # RACK.dsack_round
        self.reo_wnd = 0.0  # RACK.reo_wnd, as last computed
        self.deadline: float | None = None  # the RACK reordering timer (section 6.3)
        # Accounting (bytes), for pipe / in-flight.
        self.outstanding = 0
        self.sacked_bytes = 0
        self.lost_bytes = 0
        self.segs_sacked = 0  # RACK.segs_sacked
        self.snd_max = 0
        self.walked = 0  # transmission records RACK_detect_loss examined (its cost)

    # ------------------------------------------------------------- bookkeeping

    @property
    def in_flight(self) -> int:
        """Bytes presumed in the network: sent, neither delivered (SACKed) nor lost.
        (A lost segment counts again once it is retransmitted.)"""
        return self.outstanding - self.sacked_bytes - self.lost_bytes

    def _index(self, seq: int) -> int:
        """Index of the segment holding seq (or the last one starting before it)."""
        return bisect_right(self.segs, seq, key=_start) - 1

    def _split(self, seq: int) -> None:
        """Make seq a segment boundary (a retransmission, SACK block or ACK in the
        middle of a segment). Both halves keep the segment's state."""
        i = self._index(seq)
        if i < 0:
            return
        seg = self.segs[i]
        if seg.start < seq < seg.end:
            right = Segment(seq, seg.end, seg.xmit_ts, seg.tsval, seg.retransmitted, seg.lost,
                            seg.sacked, seg.cause, seg.tx)
            seg.end = seq
            self.segs.insert(i + 1, right)
            if seg.sacked:
                self.segs_sacked += 1

    def _set_sacked(self, seg: Segment, value: bool) -> None:
        if seg.sacked == value:
            return
        seg.sacked = value
        self.sacked_bytes += seg.length if value else -seg.length
        self.segs_sacked += 1 if value else -1

    def _set_lost(self, seg: Segment, value: bool) -> None:
        if seg.lost == value:
            return
        seg.lost = value
        self.lost_bytes += seg.length if value else -seg.length

    def _forget(self, seg: Segment) -> None:
        self._set_sacked(seg, False)
        self._set_lost(seg, False)
        self.outstanding -= seg.length

    # ------------------------------------------------------------- transmission

    def on_transmit(self, start: int, end: int, now: float, tsval: int | None = None,
                    tx: TxRecord | None = None) -> None:
        """RFC 8985 section 6.1: a segment [start, end) was (re)transmitted now.

        "Upon transmitting a new segment or retransmitting an old segment, record the
        time in Segment.xmit_ts and set Segment.lost to FALSE. Upon retransmitting a
        segment, set Segment.retransmitted to TRUE." A range reaching beyond
        everything sent so far is new data for that part.
        """
        if end <= start:
            return
        if not self.segs:
            self.snd_max = max(self.snd_max, start)
        if start < self.snd_max:
            stop = min(end, self.snd_max)
            self._split(start)
            self._split(stop)
            i = max(self._index(start), 0)
            while i < len(self.segs) and self.segs[i].start < stop:
                seg = self.segs[i]
                if seg.end > start:
                    seg.xmit_ts = now
                    seg.tsval = tsval
                    seg.tx = tx
                    seg.retransmitted = True
                    self._set_lost(seg, False)
                    self._set_sacked(seg, False)
                i += 1
            self._order.append((now, stop, start))
            start = stop
        if end > start:
            # New data (a gap below `start` cannot happen: the sender sends in order).
            self.segs.append(Segment(start, end, now, tsval, tx=tx))
            self.outstanding += end - start
            self.snd_max = end
            self._order.append((now, end, start))

    # ------------------------------------------------------------- ACK processing

    def on_rtt_sample(self, rtt: float, now: float) -> None:
        """RFC 8985 section 6.2 step 1: "Use the RTT measurements obtained via
        [RFC6298] or [RFC7323] to update the estimated minimum RTT in RACK.min_RTT."
        Windowed: a sample older than MIN_RTT_WINDOW gives way to the new one."""
        if self.min_rtt is None or rtt <= self.min_rtt or now - self._min_rtt_at > MIN_RTT_WINDOW:
            self.min_rtt = rtt
            self._min_rtt_at = now

    def on_ack(
        self,
        snd_una: int,
        sack_blocks: list[tuple[int, int]],
        now: float,
        *,
        snd_nxt: int,
        srtt: float | None,
        in_recovery: bool,
        tsecr: int | None = None,
        dsack: bool = False,
    ) -> AckResult:
        """RFC 8985 section 6.2 "Upon receiving an ACK", steps 1-5.

        ``snd_una`` is the ACK's cumulative acknowledgment (already validated),
        ``sack_blocks`` its SACK blocks without any D-SACK block (unwrapped), ``dsack``
        whether it carried a D-SACK block (RFC 2883), ``tsecr`` its timestamp echo,
        ``snd_nxt`` the highest sequence number sent + 1 (for ``dsack_round``),
        ``srtt`` the RFC 6298 smoothed RTT (it caps reo_wnd), ``in_recovery`` whether
        the sender is in fast or RTO recovery. Returns what was newly delivered and
        lost; ``deadline`` holds the reordering timer afterwards.
        """
        segs = self.segs
        if not sack_blocks and segs and snd_una >= segs[-1].end:
            return self._on_ack_of_all(now, snd_una, snd_nxt, srtt, in_recovery, tsecr, dsack)
        result = AckResult()
        newly: list[Segment] = []
        # Cumulatively acknowledged segments leave the scoreboard.
        if segs and snd_una > segs[0].start:
            self._split(snd_una)
            k = 0
            for seg in self.segs:
                if seg.end > snd_una:
                    break
                if not seg.sacked:
                    newly.append(seg)
                    result.delivered += seg.length
                self._forget(seg)
                k += 1
            del self.segs[:k]
        # "each segment cumulatively ACKed or SACKed is marked as delivered"
        for s, e in sack_blocks:
            s, e = max(s, snd_una), min(e, self.snd_max)
            if s >= e:
                continue
            self._split(s)
            self._split(e)
            i = max(self._index(s), 0)
            while i < len(self.segs) and self.segs[i].start < e:
                seg = self.segs[i]
                if seg.start >= s and not seg.sacked:
                    self._set_sacked(seg, True)
                    self._set_lost(seg, False)
                    newly.append(seg)
                    result.delivered += seg.length
                    result.newly_sacked += seg.length
                i += 1
        if newly:
            result.newly = newly
            result.rack_advanced = self._update(newly, now, tsecr)
            self._detect_reordering(newly)
        result.reo_wnd_grew = self._update_reo_wnd(snd_una, snd_nxt, dsack, in_recovery, srtt)
        self._detect_loss_and_arm_timer(now, result)
        return result

    def _on_ack_of_all(self, now: float, snd_una: int, snd_nxt: int, srtt: float | None,
                       in_recovery: bool, tsecr: int | None, dsack: bool) -> AckResult:
        """`on_ack` when the ACK cumulatively acknowledges every outstanding segment
        and carries no SACK block: a request/response exchange, the end of every
        flight. The same steps 1-5 of RFC 8985 section 6.2, without the bookkeeping
        that has nothing to find: no segment to split, no transmission record left
        to walk (step 5's RACK_detect_loss has no segment that could be lost, so the
        reordering timer stops). Every record of the flight is dropped at once
        instead of record by record, so none is examined (`walked` stays)."""
        result = AckResult()
        # Bytes not SACKed before: what this ACK delivers (RFC 6937's DeliveredData).
        result.delivered = self.outstanding - self.sacked_bytes
        if self.segs_sacked:
            newly = [seg for seg in self.segs if not seg.sacked]
        else:
            newly = self.segs
        if self.lost_bytes:
            for seg in newly:
                seg.lost = False  # delivered after all (as `_forget` leaves it)
        self.segs = []
        self._order.clear()
        self._head = 0
        self.outstanding = self.sacked_bytes = self.lost_bytes = self.segs_sacked = 0
        if newly:
            result.newly = newly
            result.rack_advanced = self._update(newly, now, tsecr)
            self._detect_reordering(newly)
        result.reo_wnd_grew = self._update_reo_wnd(snd_una, snd_nxt, dsack, in_recovery, srtt)
        self.deadline = None
        return result

    def _update(self, newly: list[Segment], now: float, tsecr: int | None) -> bool:
        """RFC 8985 section 6.2 step 2: RACK.segment and RACK.rtt.

        For the segments newly delivered, in the order they were sent: a segment
        that was retransmitted is ignored if the ACK's TSecr shows it does not answer
        the last retransmission, or if that retransmission went out less than
        RACK.min_RTT ago (the ACK must then be for the original). Otherwise RACK.rtt
        is its RTT, and it becomes RACK.segment if it was sent after it.
        """
        advanced = False
        for seg in newly if len(newly) == 1 else sorted(newly, key=_sent_order):
            rtt = now - seg.xmit_ts
            if seg.retransmitted:
                if tsecr is not None and seg.tsval is not None and seq_diff(tsecr, seg.tsval) < 0:
                    continue
                if self.min_rtt is not None and rtt < self.min_rtt:
                    continue
            else:
                self.on_rtt_sample(rtt, now)  # never retransmitted: an unambiguous sample
            self.rtt = rtt
            if sent_after(seg.xmit_ts, seg.end, self.xmit_ts, self.end_seq):
                self.xmit_ts = seg.xmit_ts
                self.end_seq = seg.end
                advanced = True
        return advanced

    def _detect_reordering(self, newly: list[Segment]) -> None:
        """RFC 8985 section 6.2 step 3: a never-retransmitted segment delivered below
        RACK.fack arrived out of order: RACK.reordering_seen."""
        for seg in newly if len(newly) == 1 else sorted(newly, key=_end):
            if seg.end > self.fack:
                self.fack = seg.end
            elif seg.end < self.fack and not seg.retransmitted:
                self.reordering_seen = True

    def _update_reo_wnd(self, snd_una: int, snd_nxt: int, dsack: bool, in_recovery: bool,
                        srtt: float | None) -> bool:
        """RFC 8985 section 6.2 step 4: RACK.reo_wnd.

        DSACK adaptation: at most once per round trip (``dsack_round``), a D-SACK
        grows ``reo_wnd_mult`` by one and sets ``reo_wnd_persist`` to 16; the
        multiplier falls back to 1 after 16 recoveries without one (see
        ``on_recovery_exit``). Without observed reordering, the window is 0 in
        recovery, or once DupThresh segments are SACKed (the DupThresh rule then
        decides at once); otherwise ``min(reo_wnd_mult * min_RTT / 4, SRTT)``.
        """
        grew = False
        if self.dsack_round is not None and snd_una >= self.dsack_round:
            self.dsack_round = None
        if self.dsack_round is None and dsack:
            self.dsack_round = snd_nxt
            self.reo_wnd_mult += 1
            self.reo_wnd_persist = REO_WND_PERSIST
            grew = True
        self.reo_wnd = self.compute_reo_wnd(in_recovery, srtt)
        return grew

    def compute_reo_wnd(self, in_recovery: bool, srtt: float | None) -> float:
        """RFC 8985 section 6.2 step 4, ``RACK_update_reo_wnd``'s return value."""
        if not self.reordering_seen and (in_recovery or self.segs_sacked >= self.dup_thresh):
            return 0.0
        if self.min_rtt is None:
            return 0.0 if srtt is None else srtt / 4
        wnd = self.reo_wnd_mult * self.min_rtt / 4
        return min(wnd, srtt) if srtt is not None else wnd

    def on_recovery_exit(self) -> None:
        """RFC 8985 section 6.2 step 4: "Else if exiting Fast or RTO recovery:
        RACK.reo_wnd_persist -= 1; If RACK.reo_wnd_persist <= 0: RACK.reo_wnd_mult = 1"."""
        self.reo_wnd_persist -= 1
        if self.reo_wnd_persist <= 0:
            self.reo_wnd_persist = 0
            self.reo_wnd_mult = 1

    # ------------------------------------------------------------- loss detection

    def _detect_loss_and_arm_timer(self, now: float, result: AckResult) -> None:
        """RFC 8985 section 6.2 step 5 / 6.3 ``RACK_detect_loss_and_arm_timer``."""
        timeout = self._detect_loss(now, result)
        self.deadline = now + timeout if timeout > 0 else None

    def _detect_loss(self, now: float, result: AckResult) -> float:
        """RFC 8985 section 6.2 step 5 ``RACK_detect_loss``: every segment not yet
        delivered that was sent before RACK.segment is lost once
        ``xmit_ts + RACK.rtt + RACK.reo_wnd <= now``; for the others, the timer must
        fire when the latest of them would be (``timeout = max(remaining, ...)``).

        Walks the transmissions in time order and stops at the first one sent after
        RACK.segment, so an ACK costs about the number of segments in question, not
        the whole flight.
        """
        timeout = 0.0
        order = self._order
        i = self._head
        rack_ts, rack_end = self.xmit_ts, self.end_seq
        limit = self.rtt + self.reo_wnd
        can_advance = True
        while i < len(order):
            self.walked += 1
            ts, end, start = order[i]
            if ts > rack_ts or (ts == rack_ts and end >= rack_end):
                # Sent with or after RACK.segment (a burst shares one timestamp: its later
                # segments are not candidates): nothing further in the list is either.
                break
            live = False
            j = max(self._index(start), 0)
            segs = self.segs
            while j < len(segs) and segs[j].start < end:
                seg = segs[j]
                j += 1
                if seg.end <= start or seg.xmit_ts != ts or seg.sacked or seg.lost:
                    continue
                if not sent_after(rack_ts, rack_end, seg.xmit_ts, seg.end):
                    live = True  # part of a range sent with RACK.segment: not yet
                    continue
                remaining = seg.xmit_ts + limit - now
                if remaining <= 0:
                    self._set_lost(seg, True)
                    seg.cause = "rack"
                    result.lost.append((seg.start, seg.end))
                    if seg.retransmitted:
                        result.lost_retransmissions += 1
                else:
                    timeout = max(timeout, remaining)
                    live = True
            if live:
                can_advance = False
            elif can_advance:
                self._head = i + 1
            i += 1
        if self._head > 4096 and self._head * 2 > len(order):
            del order[: self._head]
            self._head = 0
        return timeout

    def on_timer(self, now: float) -> AckResult:
        """RFC 8985 section 6.3: the reordering timer expired: detect losses again
        (and re-arm the timer for what is still within the window)."""
        result = AckResult()
        self._detect_loss_and_arm_timer(now, result)
        return result

    def mark_lost_on_rto(self, now: float) -> list[tuple[int, int]]:
        """RFC 8985 section 6.3 ``RACK_mark_losses_on_RTO``: the RTO fired. The first
        outstanding segment is lost (it was sent an RTO ago), and so is every segment
        not delivered that was sent at least RACK.rtt + RACK.reo_wnd ago. The others
        may still arrive: they are not resent blindly (no go-back-N).

        If the first segment is SACKed, the receiver has reneged on its SACKs (RFC 2018
        section 8; it did not cumulatively ACK data it had reported): then all SACK
        marks are dropped first, as Linux does.
        """
        self.deadline = None
        if self.segs and self.segs[0].sacked:
            for seg in self.segs:
                self._set_sacked(seg, False)
        lost: list[tuple[int, int]] = []
        limit = self.rtt + self.reo_wnd
        for n, seg in enumerate(self.segs):
            if seg.sacked or seg.lost:
                continue
            if n == 0 or seg.xmit_ts + limit - now <= 0:
                self._set_lost(seg, True)
                seg.cause = "rto"
                lost.append((seg.start, seg.end))
        return lost

    def lost_ranges(self, start: int = 0) -> list[tuple[int, int]]:
        """The segments marked lost and not yet retransmitted, from `start` up, in
        sequence order (adjacent ones merged)."""
        out: list[tuple[int, int]] = []
        if not self.lost_bytes:
            return out
        for seg in self.segs[max(self._index(start), 0):]:
            if seg.lost and seg.end > start:
                s = max(seg.start, start)
                if out and out[-1][1] == s:
                    out[-1] = (out[-1][0], seg.end)
                else:
                    out.append((s, seg.end))
        return out

    def first_lost(self) -> tuple[int, int] | None:
        """The lowest segment marked lost and not yet retransmitted."""
        seg = self.first_lost_segment()
        return (seg.start, seg.end) if seg is not None else None

    def first_lost_segment(self) -> Segment | None:
        """The lowest segment marked lost and not yet retransmitted (its `cause` says
        which rule marked it)."""
        if not self.lost_bytes:
            return None
        for seg in self.segs:
            if seg.lost:
                return seg
        return None

    def unmark_lost(self) -> None:
        """The losses were not real (a spurious retransmission was detected, RFC 3522 /
        RFC 3708): nothing stays marked for retransmission (as Linux's undo)."""
        if self.lost_bytes:
            for seg in self.segs:
                self._set_lost(seg, False)

    def is_sacked(self, seq: int) -> bool:
        i = self._index(seq)
        return i >= 0 and self.segs[i].start <= seq < self.segs[i].end and self.segs[i].sacked

    def clear(self) -> None:
        """Forget every segment (the connection went back to sending nothing)."""
        self.segs.clear()
        self._order.clear()
        self._head = 0
        self.outstanding = self.sacked_bytes = self.lost_bytes = self.segs_sacked = 0
        self.deadline = None


class TailLossProbe:
    """RFC 8985 section 7: the Tail Loss Probe's state (section 7.1) and rules."""

    def __init__(self, max_ack_delay: float = TLP_MAX_ACK_DELAY,
                 default_pto: float = TLP_DEFAULT_PTO, min_slack: float = TLP_MIN_SLACK) -> None:
        self.max_ack_delay = max_ack_delay  # TLP.max_ack_delay
        self.default_pto = default_pto
        self.min_slack = min_slack
        self.end_seq: int | None = None  # TLP.end_seq: SND.NXT after the probe, if one is out
        self.is_retrans = False  # TLP.is_retrans: the probe was a retransmission

    def reset(self) -> None:
        """RFC 8985 section 7.4.1: "initialize TLP.end_seq to None" when the
        connection is established and when an RTO fires (the episode is over)."""
        self.end_seq = None
        self.is_retrans = False

    def may_schedule(self, *, sack_ok: bool, in_recovery: bool, segs_sacked: int, flight_size: int) -> bool:
        """RFC 8985 section 7.2: the PTO is (re)started after sending new data and on
        an ACK of new data, "unless it is already in fast recovery, RTO recovery, or
        the sender has segments delivered out of order (i.e., RACK.segs_sacked is not
        zero)". With a probe outstanding, no new one (7.3: at most one per episode);
        with nothing in flight, nothing to probe. RACK-TLP needs SACK (section 4)."""
        return (sack_ok and not in_recovery and segs_sacked == 0 and flight_size > 0
                and self.end_seq is None)

    def pto_deadline(self, now: float, srtt: float | None, one_segment_in_flight: bool,
                     rto_deadline: float | None) -> float:
        """RFC 8985 section 7.2 ``TLP_calc_PTO``: PTO = 2 * SRTT (+ max_ack_delay
        when only one segment is in flight, its ACK may be delayed), 1 s before any
        RTT sample; and "If Now() + PTO > TCP_RTO_expire(): PTO = TCP_RTO_expire() -
        Now()": never later than the RTO would fire. With more segments in flight a
        small slack (TLP_MIN_SLACK, as Linux) keeps sub-millisecond paths from probing
        spuriously."""
        if srtt is None:
            pto = self.default_pto
        else:
            pto = 2 * srtt
            pto += self.max_ack_delay if one_segment_in_flight else self.min_slack
        deadline = now + pto
        if rto_deadline is not None and deadline > rto_deadline:
            deadline = rto_deadline
        return deadline

    @staticmethod
    def choose_probe(snd_nxt: int, data_end: int, window_end: int, mss: int,
                     highest_sent: tuple[int, int]) -> tuple[int, int, bool]:
        """RFC 8985 section 7.3 ``TLP_send_probe``: what the probe carries.

        "If an unsent segment exists AND the receive window allows new data to be
        sent": the lowest-sequence unsent segment, up to one SMSS (cwnd is not
        consulted). Else the highest-sequence segment sent so far, ``highest_sent``.
        Returns (start, end, is_retrans).
        """
        n = min(data_end - snd_nxt, mss, window_end - snd_nxt)
        if n > 0:
            return snd_nxt, snd_nxt + n, False
        return highest_sent[0], highest_sent[1], True

    def on_probe_sent(self, snd_nxt: int, is_retrans: bool) -> None:
        """RFC 8985 section 7.3: remember the episode: TLP.end_seq = SND.NXT and
        TLP.is_retrans. (The caller re-arms the RTO, not the PTO.)"""
        self.end_seq = snd_nxt
        self.is_retrans = is_retrans

    def on_ack(self, ack: int, *, dsack: tuple[int, int] | None, has_sack: bool, is_dupack: bool) -> bool:
        """RFC 8985 section 7.4.2 ``TLP_process_ack``; True if the probe repaired a
        loss, to which congestion control must respond (a single-loss event).

        Once the ACK reaches TLP.end_seq: a probe of new data says nothing about loss;
        a D-SACK covering the probe says the original had arrived too (the probe was
        spurious); an ACK beyond TLP.end_seq says the probe was the copy that
        arrived, so the original was lost; a duplicate ACK without SACK blocks at
        TLP.end_seq says the same as a D-SACK would (the original had arrived).
        """
        end = self.end_seq
        if end is None or ack < end:
            return False
        if not self.is_retrans:
            self.end_seq = None
            return False
        if dsack is not None and dsack[0] < end <= dsack[1] + 1:  # (+1: a probe carrying FIN)
            self.end_seq = None
            return False
        if ack > end:
            self.end_seq = None
            return True
        if is_dupack and not has_sack:
            self.end_seq = None
        return False
