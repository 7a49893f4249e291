"""Loss recovery through the connection with SACK (the default): RACK-TLP (RFC 8985)
detects losses, PRR (RFC 6937) paces recovery, D-SACK (RFC 2883, RFC 3708) is sent
and used. Scripted segments, a fake clock, the RFC section in each docstring.

MSS 1000, no timestamps unless a test says so; the peer SACKs. Sequence numbers are
relative (our first data byte is 1). The rules themselves are unit-tested in
test_rack.py, test_prr.py and test_dsack.py; here they meet the state machine.
"""

from __future__ import annotations

from typing import Any

import pytest
from tcpscript import Script

from stack.tcp.connection import TcpConfig


def rack(ts: bool = False, **kwargs: Any) -> Script:
    """SACK and RACK; one exchange gives SRTT = min_RTT = 0.1 s (RTO 0.3 s).
    The clock is at 0.1. With timestamps the peer's MSS leaves room for the option
    (RFC 7323 / RFC 9293 3.7.1: options count against it), so segments still carry
    1000 bytes and the tests' sequence numbers hold either way."""
    mss = 1000 + (12 if ts else 0)  # 12: NOP, NOP, Timestamps (RFC 7323 Appendix A)
    s = Script.established(TcpConfig(timestamps=ts, **kwargs), mss=mss, ws=None, ts=ts,
                           sackok=True)  # fmt: skip
    s.send(1000)
    s.tx(seq=1, length=1000)
    s.wait(0.1)
    s.rx("A", ack=1001)
    s.mark_events()
    return s


@pytest.mark.parametrize("ts", [False, True], ids=["no-ts", "ts"])
def test_rack_marks_loss_at_once_when_dupthresh_segments_are_sacked(ts: bool) -> None:
    """RFC 8985 6.2 step 4: without reordering seen and RACK.segs_sacked >= DupThresh
    the reordering window is 0, so step 5 marks the hole lost on this ACK; RACK starts
    fast recovery (section 3.2) and the retransmission says why: reason "rack". The
    same with timestamps (RACK also reads TSecr, 6.2 step 2)."""
    s = rack(ts)
    s.send(5000)
    s.drain()
    s.wait(0.1)
    s.rx("A", ack=1001, sack=[(2001, 5001)])
    s.tx(seq=1001, length=1000)
    s.expect_event("recovery", reason="rack")
    s.expect_event("retransmit", seq=s.iss + 1001, len=1000, reason="rack")
    s.expect_vars(in_recovery=True, ssthresh=2500)


def test_reordering_timer_marks_loss_after_rtt_plus_reo_wnd() -> None:
    """RFC 8985 6.2 step 5 and 6.3: one segment SACKed above a hole is not enough for
    DupThresh; RACK waits RACK.rtt + reo_wnd (min_RTT / 4) from the hole's
    transmission, then its reordering timer marks it lost and recovery begins."""
    s = rack()
    s.send(2000)
    s.drain()
    s.wait(0.1)
    s.rx("A", ack=1001, sack=[(2001, 3001)])  # sent at 0.1 like the hole: RACK.rtt 0.1
    s.no_tx()
    s.expect_vars(**{"timers.rack": 0.1 + 0.1 + 0.025})
    s.fire()
    s.expect(abs(s.now - 0.225) < 1e-9, "at xmit_ts + RACK.rtt + reo_wnd")
    s.tx(seq=1001, length=1000)
    s.expect_event("recovery", reason="rack_timer")
    s.expect_event("retransmit", seq=s.iss + 1001, reason="rack")
    s.expect_no_event("retransmit", reason="rto")


def test_lost_retransmission_repaired_without_rto() -> None:
    """RFC 8985 6.2 step 5 (section 2.2, "lost retransmissions"): the retransmission of
    segment 1 is lost too; once data sent after it is SACKed and RACK.rtt has passed,
    RACK marks it lost again and it is resent: no RTO, no second window reduction."""
    s = rack()
    s.send(6000)
    s.drain()  # 1001..7001 at 0.1
    s.wait(0.1)
    s.rx("A", ack=1001, sack=[(2001, 5001)])
    s.tx(seq=1001, length=1000)  # the first retransmission, at 0.2 (lost)
    ssthresh = s.var("ssthresh")
    s.send(2000)  # new data waits for PRR's room
    s.no_tx()
    s.wait(0.1)
    s.rx("A", ack=1001, sack=[(2001, 7001)])  # sent before the retransmission: no verdict
    s.tx(seq=7001, length=1000)  # PRR lets new data out, at 0.3
    s.drain()
    s.wait(0.1)
    s.rx("A", ack=1001, sack=[(2001, 8001)])  # sent after it, and RACK.rtt passed
    s.tx(seq=1001, length=1000)
    s.expect_event("lost_retransmit", count=1)
    s.expect_event("retransmit", seq=s.iss + 1001, reason="rack")
    s.expect_vars(in_recovery=True, ssthresh=ssthresh)
    s.drain()
    s.wait(0.1)
    s.rx("A", ack=s.conn.snd.max - s.iss)
    s.expect_vars(in_recovery=False)
    s.expect_no_event("retransmit", reason="rto")


def test_prr_sends_half_a_segment_per_delivered_segment() -> None:
    """RFC 6937 section 3, proportional part: with NewReno's ssthresh = RecoverFS / 2,
    each ACK delivering one segment allows sndcnt = CEIL(prr_delivered * ssthresh /
    RecoverFS) - prr_out: one new segment for every two delivered."""
    s = rack()
    s.send(20000)
    s.drain()  # 10 segments (IW): 1001..11001, 10000 queued
    s.wait(0.1)
    s.rx("A", ack=1001, sack=[(2001, 5001)])
    s.tx(seq=1001, length=1000)  # the fast retransmit always goes
    s.no_tx()
    sent = []
    for top in range(6001, 11001, 1000):
        s.rx("A", ack=1001, sack=[(2001, top)])
        sent.append(len(s.drain()))
    s.expect(sum(sent) in (2, 3) and max(sent) == 1, f"one segment per two ACKs, got {sent}")
    s.expect_event("prr")


def test_prr_with_cubic_sends_seven_tenths() -> None:
    """RFC 6937 section 3 with CUBIC (RFC 9438, beta 0.7): PRR follows whatever
    ssthresh the algorithm chose: the pipe shrinks toward it (proportional part) and
    never grows beyond it (reduction bound); recovery ends with cwnd = ssthresh."""
    s = rack(cc="cubic")
    s.send(20000)
    s.drain()
    cwnd = s.var("cwnd")
    s.wait(0.1)
    s.rx("A", ack=1001, sack=[(2001, 3001)])
    s.rx("A", ack=1001, sack=[(2001, 4001)])
    s.rx("A", ack=1001, sack=[(2001, 5001)])
    s.drain()
    ssthresh = s.var("ssthresh")
    s.expect(abs(ssthresh - 0.7 * cwnd) <= 1, f"ssthresh 0.7 * {cwnd}, got {ssthresh}")
    rack_state = s.conn.recovery.rack
    for top in range(6001, 11001, 1000):
        before = rack_state.in_flight
        s.rx("A", ack=1001, sack=[(2001, top)])
        sent = len(s.drain())
        after = rack_state.in_flight
        # Above ssthresh PRR only shrinks the pipe toward it; below, it lets the pipe
        # grow back at most to ssthresh (the reduction bound).
        s.expect(after <= max(ssthresh, before), f"pipe {before} -> {after} (sent {sent})")
    s.rx("A", ack=s.conn.snd.max - s.iss)
    s.expect_vars(in_recovery=False)
    s.expect_event("cwnd", reason="recovery_exit", cwnd=ssthresh)


def test_rto_with_rack_resends_lost_segments_not_sacked_ones() -> None:
    """RFC 8985 6.3 ``RACK_mark_losses_on_RTO``: the RTO marks the first segment and
    those sent an RTT ago lost; SACKed data is not sent again (no go-back-N), and the
    retransmissions say "rto"."""
    s = rack()
    s.send(4000)
    s.drain()  # 1001..5001
    s.wait(0.05)
    s.rx("A", ack=1001, sack=[(3001, 4001)])
    s.fire()  # the reordering timer: 1001..3001 lost, recovery
    s.drain()
    s.fire()  # the RTO
    s.expect_event("retransmit", seq=s.iss + 1001, reason="rto")
    segs = s.drain()
    seqs = [s.rel_seq(x) for x in segs]
    s.expect(3001 not in seqs, f"the SACKed segment is not resent: {seqs}")


def test_backoff_cleared_by_an_ack_of_new_data() -> None:
    """RFC 6298 5.5 doubles RTO on each timeout; an ACK of new data ends the backoff
    even without an RTT sample (Karn's rule, no timestamps): a connection still
    getting ACKs never sits in exponential backoff (as Linux)."""
    s = rack()
    s.send(3000)
    s.drain()
    s.fire()  # tail loss probe
    s.drain()
    rto = s.var("rto")
    for _ in range(3):
        s.fire()
        s.drain()
    s.expect(s.var("rto") == 8 * rto, "backed off three times")
    s.rx("A", ack=2001)  # acknowledges retransmitted data: no sample (Karn)
    s.expect(s.var("rto") == rto, f"RTO back to {rto}, got {s.var('rto')}")


def test_receiver_reports_a_duplicate_in_a_dsack_block() -> None:
    """RFC 2883 section 4 rules (1)-(3): a segment that was already received is
    reported in the first SACK block of the ACK it causes, once."""
    s = rack()
    s.rx("A", seq=1, data=1000)
    s.rx("A", seq=1, data=1000)  # the same segment again
    seg = s.drain()[-1]
    rel = [((a - s.peer_iss) & 0xFFFFFFFF, (b - s.peer_iss) & 0xFFFFFFFF)
           for a, b in seg.options.sack_blocks]  # fmt: skip
    s.expect(rel == [(1, 1001)], f"D-SACK block first: {rel}")
    s.rx("A", seq=1001, data=1000)
    s.wait(1)
    for later in s.drain():
        s.expect(not later.options.sack_blocks, "reported once")


def test_receiver_dsack_of_held_data_is_followed_by_its_block() -> None:
    """RFC 2883 section 4 rule (4): a duplicate of out-of-order data is reported first,
    and the block of the receiver's queue holding it second."""
    s = rack()
    s.rx("A", seq=2001, data=2000)  # 1..2001 missing
    s.drain()
    s.rx("A", seq=3001, data=1000)  # a duplicate of held data
    s.tx(sack=[(3001, 4001), (2001, 4001)])


def test_dsack_for_every_retransmission_undoes_the_reduction() -> None:
    """RFC 3708 section 3: the only retransmission of the episode comes back as a
    duplicate (D-SACK): the original had arrived, the loss was not real; the
    congestion response is undone (section 5, as Linux's DSACK undo)."""
    s = rack()
    s.send(5000)
    s.drain()
    cwnd = s.var("cwnd")
    s.wait(0.1)
    s.rx("A", ack=1001, sack=[(2001, 5001)])
    s.drain()
    s.expect(s.var("cwnd") < cwnd, "reduced")
    s.rx("A", ack=6001, sack=[(1001, 2001)])  # the original was only late
    s.expect_event("dsack")
    s.expect_event("cwnd", reason="dsack_undo")
    s.expect(s.var("cwnd") >= cwnd, "restored")


def test_dsack_widens_the_reordering_window() -> None:
    """RFC 8985 6.2 step 4: a D-SACK grows RACK.reo_wnd_mult (once per round trip)."""
    s = rack()
    s.send(5000)
    s.drain()
    s.wait(0.1)
    s.rx("A", ack=1001, sack=[(2001, 5001)])
    s.drain()
    s.rx("A", ack=6001, sack=[(1001, 2001)])
    s.expect_event("reo_wnd", mult=2)


def test_tail_loss_probe_then_rack_recovery() -> None:
    """RFC 8985 7.3 then 6.2: the last two segments are lost; the probe resends the
    last one, its ACK SACKs it, and RACK marks the other lost (sent before the probe,
    RACK.rtt ago): repaired without an RTO."""
    s = rack()
    s.send(3000)
    s.drain()
    s.wait(0.1)
    s.rx("A", ack=2001)  # 2001..4001 lost
    s.fire()
    s.tx(seq=3001, length=1000)
    s.expect_event("retransmit", seq=s.iss + 3001, reason="tlp")
    s.expect_event("tlp", new_data=False)
    s.wait(0.12)  # (at least RACK.min_RTT after the probe: 6.2 step 2)
    s.rx("A", ack=2001, sack=[(3001, 4001)])
    s.tx(seq=2001, length=1000)
    s.expect_event("retransmit", seq=s.iss + 2001, reason="rack")
    s.rx("A", ack=4001)
    s.expect_vars(una=4001, in_recovery=False)
    s.expect_no_event("retransmit", reason="rto")


def test_without_sack_dupthresh_remains() -> None:
    """RFC 8985 needs SACK (section 4): a peer without it gets RFC 5681 / RFC 6582
    fast retransmit after DupThresh = 3 duplicate ACKs."""
    s = Script.established(TcpConfig(timestamps=False, sack=False), mss=1000, ws=None,
                           ts=False, sackok=False)  # fmt: skip
    s.send(5000)
    s.drain()
    for _ in range(3):
        s.rx("A", ack=1)
    s.tx(seq=1, length=1000)
    s.expect_event("retransmit", seq=s.iss + 1, reason="fast")


def test_undone_rto_resumes_the_fast_recovery_it_interrupted() -> None:
    """One window reduction per congestion episode (RFC 5681 3.2 step 2 / RFC 6582
    3.2 "recover", RFC 6675 section 5, RFC 8985 2.2: lost retransmissions are repaired
    within the episode). The RTO fires in fast recovery (the ACK of the fast
    retransmission was lost) and a D-SACK then proves the RTO's retransmission
    needless: RFC 3708 section 5 undoes the *timeout's* response, which puts the
    sender back where the RTO found it, in the fast recovery of a real loss whose
    recovery point is not reached. The other loss of that window, found after the
    undo, is repaired in that episode: no second reduction of ssthresh."""
    s = rack()
    s.send(6000)
    s.drain()  # 1001..7001 at 0.1; 1001 and 5001 are lost
    s.wait(0.1)
    s.rx("A", ack=1001, sack=[(2001, 5001)])
    s.tx(seq=1001, length=1000)  # fast retransmit (it arrives, its ACK is lost)
    s.expect_event("recovery", reason="rack")
    ssthresh = s.var("ssthresh")
    s.drain()
    s.fire()  # the RTO, in fast recovery
    s.expect_event("retransmit", seq=s.iss + 1001, reason="rto")
    s.drain()
    s.mark_events()
    s.wait(0.01)
    # The receiver has 1001..5001 and 6001..7001; the RTO's copy was a duplicate.
    s.rx("A", ack=5001, sack=[(1001, 2001), (6001, 7001)])
    s.expect_event("cwnd", reason="dsack_undo")
    s.expect_event("recovery", reason="resumed")
    s.tx(seq=5001, length=1000)  # RACK: lost (6001, sent after it, is delivered)
    s.expect_event("retransmit", seq=s.iss + 5001, reason="rack")
    s.expect_no_event("cwnd", reason="fast_retransmit")
    s.expect_vars(in_recovery=True, ssthresh=ssthresh, recover=s.iss + 7001)
    s.rx("A", ack=7001)
    s.expect_vars(in_recovery=False, una=7001)
    s.expect_event("cwnd", reason="recovery_exit", cwnd=ssthresh)


def test_eifel_undone_rto_resumes_the_fast_recovery_it_interrupted() -> None:
    """As above with the Eifel detection (RFC 3522 section 3.2, response RFC 4015
    section 3): the first ACK of new data after the RTO echoes the TSval of the fast
    retransmission, older than the RTO's copy, so the timeout was spurious; the sender
    goes back into the fast recovery it interrupted and repairs the window's other
    loss there, under that episode's one reduction (RFC 5681 3.2, RFC 6582 3.2)."""
    # MSS 1012: 1000 bytes of data beside the timestamps option (RFC 7323 / 9293 3.7.1).
    s = Script.established(TcpConfig(), mss=1012, ws=None, ts=True, sackok=True)
    s.send(1000)
    s.tx(seq=1, length=1000)
    s.wait(0.1)
    s.rx("A", ack=1001)
    s.send(6000)
    s.drain()  # 1001..7001 at 0.1; 1001 and 5001 are lost
    s.wait(0.1)
    s.rx("A", ack=1001, sack=[(2001, 5001)])
    fast = s.tx(seq=1001, length=1000)  # fast retransmit (arrives, its ACK is lost)
    ssthresh = s.var("ssthresh")
    s.fire()  # the RTO, in fast recovery
    s.expect_event("retransmit", seq=s.iss + 1001, reason="rto")
    s.drain()
    s.mark_events()
    s.wait(0.01)
    assert fast.options.timestamp is not None
    s.rx("A", ack=5001, sack=[(6001, 7001)], ts=(1 << 20, fast.options.timestamp[0]))
    s.expect_event("cwnd", reason="undo")
    s.expect_event("recovery", reason="resumed")
    s.tx(seq=5001, length=1000)
    s.expect_no_event("cwnd", reason="fast_retransmit")
    s.expect_vars(in_recovery=True, ssthresh=ssthresh, recover=s.iss + 7001)
    s.rx("A", ack=7001)
    s.expect_vars(in_recovery=False, una=7001)
