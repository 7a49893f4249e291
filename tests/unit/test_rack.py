"""RACK-TLP (RFC 8985), stack/tcp/rack.py: one test per rule, scripted segments and a
fake clock, the RFC section in each docstring.

A `Flight` is a scripted sender: segment i (from 1) is bytes [1 + (i-1)*MSS, 1 + i*MSS)
sent with `send()`, acknowledged with `ack(una=..., sack=[(first, last), ...])` in
segment numbers, while `wait()` moves the clock.
"""

from __future__ import annotations

import random

import pytest

from stack.tcp.rack import (
    DUP_THRESH,
    MIN_RTT_WINDOW,
    REO_WND_PERSIST,
    AckResult,
    Rack,
    TailLossProbe,
    sent_after,
)

MSS = 1000


def seg(i: int) -> tuple[int, int]:
    """Byte range of segment i (1-based)."""
    return 1 + (i - 1) * MSS, 1 + i * MSS


class Flight:
    def __init__(self) -> None:
        self.rack = Rack()
        self.now = 0.0
        self.sent = 0  # segments sent so far
        self.una = 1
        self.srtt: float | None = 0.1
        self.in_recovery = False

    def tsval(self) -> int:
        return int(self.now * 1000)

    def send(self, n: int = 1) -> None:
        for _ in range(n):
            self.sent += 1
            s, e = seg(self.sent)
            self.rack.on_transmit(s, e, self.now, self.tsval())

    def resend(self, i: int) -> None:
        s, e = seg(i)
        self.rack.on_transmit(s, e, self.now, self.tsval())

    def wait(self, dt: float) -> None:
        self.now = round(self.now + dt, 9)

    def ack(self, una: int | None = None, sack: list[tuple[int, int]] | None = None,
            dsack: bool = False, tsecr: int | None = None) -> AckResult:
        if una is not None:
            self.una = seg(una)[1] if una else 1  # una=k: segments 1..k acknowledged
        blocks = [(seg(a)[0], seg(b)[1]) for a, b in (sack or [])]
        return self.rack.on_ack(self.una, blocks, self.now, snd_nxt=seg(self.sent)[1],
                                srtt=self.srtt, in_recovery=self.in_recovery, tsecr=tsecr, dsack=dsack)


def lost_segments(result: AckResult) -> list[int]:
    return [(s - 1) // MSS + 1 for s, _e in result.lost]


# ------------------------------------------------------------------ section 6.1

def test_transmit_records_time_and_retransmission_clears_lost() -> None:
    """RFC 8985 6.1: "Upon transmitting a new segment or retransmitting an old segment,
    record the time in Segment.xmit_ts and set Segment.lost to FALSE. Upon
    retransmitting a segment, set Segment.retransmitted to TRUE.\""""
    f = Flight()
    f.send(2)
    f.wait(0.5)
    assert f.rack.mark_lost_on_rto(f.now) == [seg(1), seg(2)]
    assert f.rack.segs[0].lost and f.rack.lost_bytes == 2 * MSS
    f.resend(1)
    first = f.rack.segs[0]
    assert (first.xmit_ts, first.retransmitted, first.lost) == (0.5, True, False)
    assert f.rack.segs[1].lost and not f.rack.segs[1].retransmitted
    assert f.rack.first_lost() == seg(2)


def test_in_flight_accounting() -> None:
    """RFC 8985 6.1 / RFC 6675 4 (pipe): bytes in flight are those sent and neither
    delivered nor marked lost; a lost segment counts again once retransmitted."""
    f = Flight()
    f.send(4)
    assert f.rack.in_flight == 4 * MSS
    f.wait(0.1)
    f.ack(sack=[(3, 4)])
    assert (f.rack.sacked_bytes, f.rack.in_flight) == (2 * MSS, 2 * MSS)
    f.wait(1.0)
    f.rack.mark_lost_on_rto(f.now)
    assert f.rack.in_flight == 0
    f.resend(1)
    assert f.rack.in_flight == MSS
    f.ack(una=4)
    assert (f.rack.outstanding, f.rack.in_flight, f.rack.segs) == (0, 0, [])


# ------------------------------------------------------------------ section 6.2

def test_min_rtt_is_a_windowed_minimum() -> None:
    """RFC 8985 6.2 step 1: RACK.min_RTT from the RTT measurements; "SHOULD track a
    windowed min-filtered estimate ... that can adapt when migrating to significantly
    longer paths"."""
    rack = Rack()
    rack.on_rtt_sample(0.05, now=1.0)
    rack.on_rtt_sample(0.08, now=2.0)
    assert rack.min_rtt == 0.05
    rack.on_rtt_sample(0.03, now=3.0)
    assert rack.min_rtt == 0.03
    rack.on_rtt_sample(0.2, now=3.0 + MIN_RTT_WINDOW + 1)  # the path got longer
    assert rack.min_rtt == 0.2


def test_rack_segment_is_the_most_recently_sent_delivered() -> None:
    """RFC 8985 6.2 step 2: among the segments newly delivered, RACK.xmit_ts and
    RACK.end_seq follow the one sent last, and RACK.rtt is its RTT."""
    f = Flight()
    f.send(1)
    f.wait(0.01)
    f.send(1)
    f.wait(0.01)
    f.send(1)
    f.wait(0.1)
    r = f.ack(sack=[(2, 2)])
    assert r.rack_advanced
    assert (f.rack.xmit_ts, f.rack.end_seq, f.rack.rtt) == (0.01, seg(2)[1], pytest.approx(0.11))
    f.wait(0.01)
    f.ack(sack=[(3, 3)])  # sent later: RACK.segment moves on
    assert (f.rack.xmit_ts, f.rack.end_seq) == (0.02, seg(3)[1])
    f.ack(una=1)  # an older one delivered now: RACK.segment stays
    assert (f.rack.xmit_ts, f.rack.end_seq) == (0.02, seg(3)[1])


def test_sent_after_breaks_ties_by_sequence() -> None:
    """RFC 8985 6.2 step 2 ``RACK_sent_after``: equal transmission times (clock
    granularity) are ordered by end sequence number."""
    assert sent_after(2.0, 10, 1.0, 20)
    assert sent_after(1.0, 20, 1.0, 10)
    assert not sent_after(1.0, 10, 1.0, 20)
    assert not sent_after(1.0, 10, 1.0, 10)


def test_ack_of_retransmission_ignored_when_tsecr_is_older() -> None:
    """RFC 8985 6.2 step 2: ignore a retransmitted segment if "The Timestamp Echo
    Reply field (TSecr) of the ACK's timestamp option ... indicates the ACK was not
    acknowledging the last retransmission of the segment"."""
    f = Flight()
    f.send(2)
    f.wait(0.3)
    f.resend(1)  # TSval 300
    f.wait(0.1)
    f.ack(una=1, tsecr=0)  # echoes the original (TSval 0): ambiguous, ignored
    assert f.rack.xmit_ts == -float("inf")
    g = Flight()
    g.send(2)
    g.wait(0.3)
    g.resend(1)
    g.wait(0.1)
    g.ack(una=1, tsecr=300)  # echoes the retransmission: valid
    assert g.rack.xmit_ts == 0.3 and g.rack.rtt == pytest.approx(0.1)


def test_ack_of_retransmission_ignored_when_faster_than_min_rtt() -> None:
    """RFC 8985 6.2 step 2: ignore a retransmitted segment if "The segment was last
    retransmitted less than RACK.min_rtt ago" (the ACK must be for the original)."""
    f = Flight()
    f.rack.on_rtt_sample(0.1, 0.0)
    f.send(2)
    f.wait(0.25)
    f.resend(1)
    f.wait(0.01)  # 10 ms after the retransmission, min_RTT is 100 ms
    f.ack(una=1)
    assert f.rack.xmit_ts == -float("inf")


def test_reordering_seen_for_never_retransmitted_segment_below_fack() -> None:
    """RFC 8985 6.2 step 3: "If a never-retransmitted segment that's below RACK.fack
    is (selectively or cumulatively) acknowledged, it has been delivered out of
    order. The sender sets RACK.reordering_seen to TRUE"; a retransmitted one does not
    count (its delivery after later data is expected)."""
    f = Flight()
    f.send(3)
    f.wait(0.1)
    f.ack(sack=[(3, 3)])
    assert f.rack.fack == seg(3)[1] and not f.rack.reordering_seen
    f.resend(1)
    f.wait(0.1)
    f.ack(una=1, tsecr=100)  # the retransmission of 1, below fack: not reordering
    assert not f.rack.reordering_seen
    f.ack(una=3)  # segment 2, never retransmitted, below fack: reordering
    assert f.rack.reordering_seen


def test_reo_wnd_without_reordering() -> None:
    """RFC 8985 6.2 step 4: with RACK.reordering_seen FALSE the window is 0 in fast
    or RTO recovery, and 0 once RACK.segs_sacked >= DupThresh; otherwise
    min(reo_wnd_mult * min_RTT / 4, SRTT)."""
    f = Flight()
    f.rack.on_rtt_sample(0.08, 0.0)
    f.send(6)
    f.wait(0.1)
    f.ack(sack=[(4, 4)])
    assert f.rack.reo_wnd == pytest.approx(0.02)
    f.in_recovery = True
    f.ack()
    assert f.rack.reo_wnd == 0
    f.in_recovery = False
    f.ack(sack=[(4, 6)])
    assert not f.rack.reordering_seen
    assert f.rack.segs_sacked >= DUP_THRESH and f.rack.reo_wnd == 0


def test_reo_wnd_with_reordering_is_capped_by_srtt() -> None:
    """RFC 8985 6.2 step 4: once reordering was seen the window stays
    min(reo_wnd_mult * min_RTT / 4, SRTT), in recovery too."""
    rack = Rack()
    rack.on_rtt_sample(0.08, 0.0)
    rack.reordering_seen = True
    assert rack.compute_reo_wnd(in_recovery=True, srtt=0.1) == pytest.approx(0.02)
    rack.reo_wnd_mult = 10
    assert rack.compute_reo_wnd(in_recovery=True, srtt=0.1) == pytest.approx(0.1)


def test_dsack_grows_reo_wnd_once_per_round() -> None:
    """RFC 8985 6.2 step 4: "If RACK.dsack_round is None AND any DSACK option is
    present on latest received ACK: RACK.dsack_round = SND.NXT; RACK.reo_wnd_mult += 1;
    RACK.reo_wnd_persist = 16"; and dsack_round is cleared once SND.UNA >= it, so the
    window grows at most once per round trip."""
    f = Flight()
    f.send(4)
    f.wait(0.1)
    r = f.ack(una=1, dsack=True)
    assert r.reo_wnd_grew
    assert (f.rack.reo_wnd_mult, f.rack.reo_wnd_persist, f.rack.dsack_round) == (2, REO_WND_PERSIST, seg(4)[1])
    assert not f.ack(una=2, dsack=True).reo_wnd_grew  # same round
    assert f.rack.reo_wnd_mult == 2
    f.send(2)
    f.ack(una=4)  # SND.UNA reached dsack_round: the round is over
    assert f.rack.dsack_round is None
    assert f.ack(una=5, dsack=True).reo_wnd_grew and f.rack.reo_wnd_mult == 3


def test_reo_wnd_mult_resets_after_16_dsack_free_recoveries() -> None:
    """RFC 8985 6.2 step 4: "Else if exiting Fast or RTO recovery:
    RACK.reo_wnd_persist -= 1; If RACK.reo_wnd_persist <= 0: RACK.reo_wnd_mult = 1"."""
    f = Flight()
    f.send(1)
    f.ack(dsack=True)
    for _ in range(REO_WND_PERSIST - 1):
        f.rack.on_recovery_exit()
    assert f.rack.reo_wnd_mult == 2
    f.rack.on_recovery_exit()
    assert f.rack.reo_wnd_mult == 1


def test_detect_loss_after_rtt_plus_reo_wnd() -> None:
    """RFC 8985 6.2 step 5: a segment sent before RACK.segment and not delivered is
    lost once ``Segment.xmit_ts + RACK.rtt + RACK.reo_wnd - Now() <= 0``."""
    f = Flight()
    f.rack.on_rtt_sample(0.1, 0.0)
    f.send(1)
    f.wait(0.001)
    f.send(1)
    f.wait(0.2)
    r = f.ack(sack=[(2, 2)])  # RACK.rtt 0.2 s, reo_wnd 0.025 s: segment 1 is due at 0.225 s
    assert r.lost == [] and f.rack.deadline == pytest.approx(0.225)
    f.wait(0.03)
    r = f.ack(sack=[(2, 2)])
    assert lost_segments(r) == [1] and f.rack.deadline is None
    assert f.rack.first_lost() == seg(1)
    lost = f.rack.first_lost_segment()
    assert lost is not None and lost.cause == "rack"


def test_reordering_timer_marks_loss_when_it_fires() -> None:
    """RFC 8985 6.3: when the RACK reordering timer expires, RACK_detect_loss runs
    again and marks the segments whose window has passed."""
    f = Flight()
    f.rack.on_rtt_sample(0.1, 0.0)
    f.send(2)
    f.wait(0.1)
    f.ack(sack=[(2, 2)])  # same xmit time, later sequence: segment 1 counts as sent before
    deadline = f.rack.deadline
    assert deadline == pytest.approx(0.125)
    r = f.rack.on_timer(deadline)
    assert lost_segments(r) == [1] and f.rack.deadline is None


def test_timer_waits_for_the_latest_candidate() -> None:
    """RFC 8985 6.2 step 5: ``timeout = max(remaining, timeout)``: the timer is armed
    for the latest of the segments still inside the reordering window."""
    f = Flight()
    f.rack.on_rtt_sample(0.1, 0.0)
    f.send(1)
    f.wait(0.01)
    f.send(1)
    f.wait(0.01)
    f.send(1)
    f.wait(0.1)
    f.ack(sack=[(3, 3)])  # RACK.rtt 0.1, reo_wnd 0.025: due at 0.125 and 0.135
    assert f.rack.deadline == pytest.approx(0.135)


def test_lost_retransmission_is_detected_without_rto() -> None:
    """RFC 8985 6.2 step 5 (and section 2.2 "lost retransmissions"): a retransmission
    is a segment with a newer xmit_ts; once a segment sent after it is delivered and
    RACK.rtt + reo_wnd has passed, it is lost again: no RTO needed."""
    f = Flight()
    f.rack.on_rtt_sample(0.1, 0.0)
    f.in_recovery = True  # reo_wnd 0 without reordering
    f.send(3)
    f.wait(0.1)
    assert lost_segments(f.ack(sack=[(2, 3)])) == [1]
    f.resend(1)  # lost again on the way
    f.wait(0.001)
    f.send(1)  # segment 4, sent after the retransmission
    f.wait(0.1)
    r = f.ack(sack=[(2, 4)])
    assert lost_segments(r) == [1] and r.lost_retransmissions == 1


def test_rto_marks_head_and_old_segments_lost() -> None:
    """RFC 8985 6.3 ``RACK_mark_losses_on_RTO``: "If SEG.SEQ == SND.UNA OR
    Segment.xmit_ts + RACK.rtt + RACK.reo_wnd - Now() <= 0: Segment.lost = TRUE";
    segments sent within the last RACK.rtt + reo_wnd are not resent blindly."""
    f = Flight()
    f.send(2)
    f.wait(0.1)
    f.ack(sack=[(2, 2)])
    f.send(2)  # 3 and 4, just now
    f.wait(0.2)
    f.send(1)  # 5, sent 0 s before the RTO
    lost = f.rack.mark_lost_on_rto(f.now)
    assert lost == [seg(1), seg(3), seg(4)]
    assert not f.rack.segs[-1].lost
    assert {s.cause for s in f.rack.segs if s.lost} == {"rto"}


def test_rto_drops_sack_marks_when_receiver_reneged() -> None:
    """RFC 2018 section 8: the receiver may renege on SACKed data. If the RTO finds
    the first outstanding segment SACKed (yet not cumulatively ACKed), the SACK marks
    are dropped and everything is eligible again (Linux's reneging check)."""
    f = Flight()
    f.send(2)
    f.wait(0.1)
    f.ack(sack=[(1, 2)])
    assert f.rack.sacked_bytes == 2 * MSS
    f.wait(1)
    assert f.rack.mark_lost_on_rto(f.now) == [seg(1), seg(2)]
    assert f.rack.sacked_bytes == 0


def test_sack_and_ack_inside_a_segment_split_it() -> None:
    """RFC 8985 6.2: "each segment cumulatively ACKed or SACKed is marked as
    delivered": a block or ACK that ends inside a segment delivers exactly that part."""
    f = Flight()
    f.send(2)
    f.wait(0.1)
    r = f.rack.on_ack(1, [(1500, 2001)], f.now, snd_nxt=2001, srtt=0.1, in_recovery=False)
    assert r.delivered == 501 and f.rack.sacked_bytes == 501
    r = f.rack.on_ack(501, [(1500, 2001)], f.now, snd_nxt=2001, srtt=0.1, in_recovery=False)
    assert r.delivered == 500 and f.rack.outstanding == 1500
    assert [(s.start, s.end, s.sacked) for s in f.rack.segs] == [
        (501, 1001, False), (1001, 1500, False), (1500, 2001, True)]


def test_delivered_counts_each_byte_once() -> None:
    """RFC 6937 section 3 DeliveredData = change in snd.una + change in SACKed bytes:
    data SACKed earlier is not delivered again by the cumulative ACK covering it."""
    f = Flight()
    f.send(3)
    f.wait(0.1)
    assert f.ack(sack=[(2, 3)]).delivered == 2 * MSS
    assert f.ack(sack=[(2, 3)]).delivered == 0
    assert f.ack(una=3).delivered == MSS


# ------------------------------------------------------------------ section 7

def test_pto_is_two_srtt_plus_ack_delay_for_one_segment() -> None:
    """RFC 8985 7.2 ``TLP_calc_PTO``: PTO = 2 * SRTT; "If FlightSize is one segment,
    PTO += TLP.max_ack_delay"; 1 s without an RTT sample. (With more segments, Linux's
    2 ms TCP_TIMEOUT_MIN slack.)"""
    tlp = TailLossProbe()
    assert tlp.pto_deadline(10.0, 0.05, False, None) == pytest.approx(10.102)
    assert tlp.pto_deadline(10.0, 0.0001, False, None) == pytest.approx(10.0022)
    assert tlp.pto_deadline(10.0, 0.05, True, None) == pytest.approx(10.3)
    assert tlp.pto_deadline(10.0, None, False, None) == pytest.approx(11.0)


def test_pto_is_clamped_to_the_rto() -> None:
    """RFC 8985 7.2: "If Now() + PTO > TCP_RTO_expire(): PTO = TCP_RTO_expire() -
    Now()": the probe goes at the RTO's expiry at the latest (not: no probe)."""
    tlp = TailLossProbe()
    assert tlp.pto_deadline(10.0, 0.2, True, rto_deadline=10.3) == pytest.approx(10.3)


def test_pto_not_scheduled_in_recovery_with_sacked_segments_or_probe_out() -> None:
    """RFC 8985 7.2: schedule the PTO "unless it is already in fast recovery, RTO
    recovery, or the sender has segments delivered out of order (i.e.,
    RACK.segs_sacked is not zero)"; 7.3: one probe outstanding at most; section 4:
    SACK is required."""
    tlp = TailLossProbe()
    ok = {"sack_ok": True, "in_recovery": False, "segs_sacked": 0, "flight_size": 1000}
    assert tlp.may_schedule(**ok)
    assert not tlp.may_schedule(**{**ok, "in_recovery": True})
    assert not tlp.may_schedule(**{**ok, "segs_sacked": 1})
    assert not tlp.may_schedule(**{**ok, "sack_ok": False})
    assert not tlp.may_schedule(**{**ok, "flight_size": 0})
    tlp.on_probe_sent(5001, is_retrans=True)
    assert not tlp.may_schedule(**ok)


def test_probe_sends_new_data_if_window_allows_else_last_segment() -> None:
    """RFC 8985 7.3 ``TLP_send_probe``: "If an unsent segment exists AND the receive
    window allows new data to be sent": up to one SMSS of new data (cwnd is not
    consulted); else retransmit the highest-sequence segment sent so far."""
    last = (4001, 5001)
    assert TailLossProbe.choose_probe(5001, 9001, 20001, 1000, last) == (5001, 6001, False)
    assert TailLossProbe.choose_probe(5001, 5501, 20001, 1000, last) == (5001, 5501, False)
    assert TailLossProbe.choose_probe(5001, 9001, 5001, 1000, last) == (4001, 5001, True)  # window full
    assert TailLossProbe.choose_probe(5001, 5001, 20001, 1000, last) == (4001, 5001, True)  # nothing new


def test_probe_ack_processing() -> None:
    """RFC 8985 7.4.2 ``TLP_process_ack``, once the ACK reaches TLP.end_seq: new-data
    probe -> episode over, no loss; D-SACK of the probe -> spurious, no loss; ACK
    beyond TLP.end_seq -> the probe repaired a loss (congestion control must react);
    a duplicate ACK without SACK at TLP.end_seq -> over, no loss."""
    tlp = TailLossProbe()
    tlp.on_probe_sent(5001, is_retrans=False)
    assert not tlp.on_ack(4001, dsack=None, has_sack=False, is_dupack=False)
    assert tlp.end_seq == 5001  # not reached yet
    assert not tlp.on_ack(5001, dsack=None, has_sack=False, is_dupack=False) and tlp.end_seq is None

    tlp.on_probe_sent(5001, is_retrans=True)
    assert not tlp.on_ack(5001, dsack=(4001, 5001), has_sack=True, is_dupack=True) and tlp.end_seq is None

    tlp.on_probe_sent(5001, is_retrans=True)
    assert not tlp.on_ack(5001, dsack=None, has_sack=True, is_dupack=True)
    assert tlp.end_seq == 5001  # SACK blocks but no D-SACK: undecided
    assert tlp.on_ack(6001, dsack=None, has_sack=False, is_dupack=False) and tlp.end_seq is None

    tlp.on_probe_sent(5001, is_retrans=True)
    assert not tlp.on_ack(5001, dsack=None, has_sack=False, is_dupack=True) and tlp.end_seq is None


def test_tlp_reset_on_rto() -> None:
    """RFC 8985 7.4.1: TLP.end_seq is initialized to None when the connection is
    established and when a retransmission timeout happens."""
    tlp = TailLossProbe()
    tlp.on_probe_sent(5001, is_retrans=True)
    tlp.reset()
    assert (tlp.end_seq, tlp.is_retrans) == (None, False)


def test_a_burst_sharing_one_timestamp_costs_each_ack_little() -> None:
    """RFC 8985 6.2 step 5 walks the segments sent before RACK.segment. A burst sent at
    one clock reading shares one xmit_ts; its segments after RACK.segment are not
    candidates, so the walk stops there and the delivered ones drop out: the records
    walked stay few however long the flight (it used to walk the whole flight on every
    ACK, quadratic in the window)."""
    f = Flight()
    f.send(200)
    f.wait(0.01)
    for i in range(1, 200, 2):
        f.ack(una=i + 1)
    assert f.rack.walked <= 3 * 100, f.rack.walked  # 100 ACKs: a few records each


def _state(r: Rack) -> tuple[object, ...]:
    return (r.xmit_ts, r.end_seq, r.rtt, r.min_rtt, r.fack, r.reordering_seen, r.reo_wnd,
            r.reo_wnd_mult, r.reo_wnd_persist, r.dsack_round, r.deadline, r.outstanding,
            r.sacked_bytes, r.lost_bytes, r.segs_sacked, r.in_flight, len(r.segs))


@pytest.mark.parametrize("seed", range(40))
def test_the_ack_of_everything_outstanding_matches_the_general_path(seed: int) -> None:
    """The shortcut `on_ack` takes for an ACK of all outstanding data without SACK blocks
    (issue 16) leaves RACK in the state RFC 8985 6.2's general path does: random flights
    with SACKs, retransmissions, D-SACKs and losses, then one cumulative ACK of all of it,
    given once plainly (shortcut) and once with a SACK block below SND.UNA (general path,
    the block is clipped away)."""
    rnd = random.Random(seed)
    flights = [Flight(), Flight()]
    for _ in range(rnd.randint(1, 6)):
        acts = []
        for _ in range(rnd.randint(1, 8)):
            acts.append((rnd.choice("swrd"), rnd.randint(1, 6), rnd.random()))
        for f in flights:
            for kind, k, x in acts:
                if kind == "s":
                    f.send(k)
                elif kind == "w":
                    f.wait(0.01 * k)
                elif kind == "r" and f.sent:
                    f.resend(1 + int(x * f.sent))
                elif kind == "d" and f.sent > 1:
                    lo = 1 + int(x * (f.sent - 1))
                    f.ack(sack=[(lo, min(lo + 1, f.sent))], dsack=x < 0.2, tsecr=f.tsval())
    results = []
    for f, blocks in zip(flights, ([], [(0, 1)]), strict=True):
        f.wait(0.05)
        end = seg(f.sent)[1]
        results.append(f.rack.on_ack(end, blocks, f.now, snd_nxt=end, srtt=f.srtt,
                                     in_recovery=False, tsecr=f.tsval()))
    assert results[0] == results[1]
    assert _state(flights[0].rack) == _state(flights[1].rack)
