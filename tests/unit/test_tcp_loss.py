"""Retransmission and congestion control: RFC 6298 RTO, Karn, RFC 5681/6582 fast
retransmit and NewReno recovery, RFC 6675 SACK recovery, CUBIC, ICMP, events."""

from __future__ import annotations

import errno
from typing import Any

from tcpscript import HANDSHAKE_RTT, Script, pattern

from stack.tcp.congestion import Cubic
from stack.tcp.connection import State, TcpConfig
from stack.tcp.rack import TLP_MIN_SLACK as SLACK  # Linux TCP_TIMEOUT_MIN, RFC 8985 7.2


def plain(**kwargs: Any) -> TcpConfig:
    return TcpConfig(timestamps=False, **kwargs)


def newreno(rtt: float | None = HANDSHAKE_RTT, **kwargs: Any) -> Script:
    """MSS 1000, no timestamps, no SACK, no window scaling (so every ACK carries the
    same 65535-byte window): IW = 10 segments of 1000 bytes. The handshake takes
    `rtt` (`Script.established`: the first RTT sample; the default 0.1 s gives RTO
    0.3 s)."""
    cfg = plain(sack=False, **kwargs)
    return Script.established(cfg, mss=1000, ws=None, ts=False, sackok=False, rtt=rtt)


def with_sack(rack: bool = False, rtt: float | None = HANDSHAKE_RTT, **kwargs: Any) -> Script:
    """SACK agreed; loss detection by RFC 6675's DupThresh rules unless `rack` (the
    RACK-TLP default is tested in test_tcp_rack.py)."""
    return Script.established(plain(rack=rack, **kwargs), mss=1000, ws=None, ts=False,
                              sackok=True, rtt=rtt)  # fmt: skip


# ---------------------------------------------------------------- RFC 6298


def test_rto_from_rtt_samples() -> None:
    """RFC 6298 2.2/2.3: SRTT, RTTVAR and RTO after the first and second sample. The
    first is the handshake's (RFC 6298 2: the SYN is timed), the second the data's."""
    s = Script(plain(sack=False))
    s.connect()
    s.tx("S", seq=0)
    s.expect_vars(rto=1.0, srtt=None)  # 2.1: 1 s before any measurement
    s.expect_deadline(1.0)
    s.wait(0.1)
    s.rx("SA", seq=0, ack=1, mss=1000, ts=None)
    s.tx("A", seq=1, ack=1)
    s.expect_event("rtt", sample=0.1, srtt=0.1, rttvar=0.05, rto=0.3)
    s.expect_vars(srtt=0.1, rttvar=0.05, rto=0.3)
    s.expect_deadline(None)  # 5.2: all acknowledged, timer off
    s.send(1000)
    s.tx(seq=1)
    s.expect_deadline(0.1 + 0.3)
    s.wait(0.2)
    s.rx("A", ack=1001)
    # RTTVAR = 3/4 * 0.05 + 1/4 * |0.1 - 0.2|; SRTT = 7/8 * 0.1 + 1/8 * 0.2
    s.expect_vars(rttvar=0.0625, srtt=0.1125, rto=0.1125 + 4 * 0.0625)


def test_rto_clamped_to_min_rto() -> None:
    """RFC 6298 2.4 (with Linux's 200 ms floor, config.min_rto)."""
    s = newreno(rtt=0.01, min_rto=0.2)  # the handshake's sample: 3 * 0.01 -> 0.2 already
    s.expect_vars(srtt=0.01, rto=0.2)
    s.send(1000)
    s.wait(0.01)
    s.rx("A", ack=1001)
    s.expect_vars(srtt=0.01, rto=0.2)


def test_rto_timer_restarted_on_partial_ack() -> None:
    """RFC 6298 5.3: an ACK of new data restarts the timer for the rest."""
    s = newreno(rtt=0.5)  # a 0.5 s path: the handshake's sample gives RTO 1.5 s
    s.send(2000)
    s.drain()
    s.wait(0.5)
    s.rx("A", ack=1001)  # sample 0.5 again: SRTT 0.5, RTTVAR 3/4 * 0.25 -> RTO 1.25
    s.expect_vars(srtt=0.5, rttvar=0.1875, rto=1.25)
    s.expect_deadline(0.5 + 1.25)


def test_karn_no_sample_from_retransmission() -> None:
    """RFC 6298 3 (Karn): no RTT sample from a retransmitted segment; the backed-off
    RTO is kept until a valid sample arrives. The handshake gave none either (its SYN
    was retransmitted, Karn's rule too): data starts with RFC 6298 5.7's 3 s RTO."""
    s = newreno(rtt=None)
    s.send(1000)
    s.tx(seq=1)
    s.fire()
    s.expect(s.now == 3.0, "RTO at 3 s")
    s.tx(seq=1, length=1000)
    s.expect_vars(rto=6.0)
    s.wait(0.05)
    s.rx("A", ack=1001)  # ambiguous: for the original or the copy?
    s.expect_no_event("rtt")
    s.expect_vars(srtt=None, rto=6.0)
    s.send(1000)
    s.tx(seq=1001)
    s.wait(0.1)
    s.rx("A", ack=2001)
    s.expect_event("rtt", sample=0.1)
    s.expect_vars(srtt=0.1, rto=0.3)


def test_no_rtt_sample_from_an_echo_of_an_older_syn_ack() -> None:
    """RFC 6298 3 (Karn) with RFC 7323 4.1: after the SYN-ACK is retransmitted, only an
    echo of the *latest* copy's TSval measures the path. Here SYN-ACK #2 arrived, the
    peer's ACK of it was lost, and #3 (out of window for the peer, now ESTABLISHED)
    draws a duplicate ACK that still echoes #2's TSval (the peer updates TS.Recent
    only from acceptable segments): 2 s of waiting, not an RTT. The sample is
    refused, as after data retransmissions, and data starts with RFC 6298 5.7's 3 s.
    (Before: srtt = 2 s, RTO 6 s for the whole transfer, seen at 20% loss.)"""
    s = Script(TcpConfig())
    s.passive()
    s.tx("SA", seq=0, ack=1)
    s.fire()  # RTO 1 s: SYN-ACK #2
    second = s.tx("SA", seq=0, ack=1)
    s.fire()  # 2 s later: SYN-ACK #3
    s.tx("SA", seq=0, ack=1)
    assert second.options.timestamp is not None
    s.wait(0.001)
    s.rx("A", seq=1, ack=1, ts=(1 << 20, second.options.timestamp[0]))
    s.expect_state(State.ESTABLISHED)
    s.expect_no_event("rtt")
    s.expect_vars(srtt=None, rto=3.0)


def test_exponential_backoff_then_etimedout() -> None:
    """RFC 6298 5.5: RTO doubles on every expiry; RFC 1122 4.2.3.5: give up after R2.
    It starts from 0.3 s, the RTO after the handshake's sample (0.1 s, RFC 6298 2.2)."""
    s = newreno(max_retries=4)
    s.expect_vars(rto=0.3)
    s.send(1000)
    s.tx(seq=1)
    times = []
    for _ in range(4):
        times.append(round(s.fire(), 9))
        s.tx(seq=1, length=1000)
        s.expect_event("retransmit", seq=s.iss + 1, len=1000, reason="rto")
    s.expect(times == [0.3, 0.9, 2.1, 4.5], f"retransmissions at {times}")
    s.expect_deadline(9.3)
    s.fire()
    s.no_tx()
    s.expect_state(State.CLOSED)
    s.expect_error(errno.ETIMEDOUT)


def test_go_back_n_and_loss_window_after_rto() -> None:
    """RFC 5681 3.1: after RTO ssthresh = max(FlightSize/2, 2*SMSS), cwnd = 1 SMSS;
    retransmission restarts at SND.UNA (go-back-N) in slow start."""
    s = newreno()
    s.send(5000)
    for i in range(5):
        s.tx(seq=1 + 1000 * i, length=1000)
    s.fire()
    s.expect_event("cwnd", cwnd=1000, ssthresh=2500, reason="rto")
    s.tx(seq=1, length=1000)
    s.no_tx()  # one segment: the loss window
    s.rx("A", ack=1001)
    s.expect_vars(cwnd=2000)  # slow start, 1 SMSS per ACK after a timeout (RFC 3465)
    s.tx(seq=1001, length=1000)
    s.tx(seq=2001, length=1000)
    s.no_tx()
    s.expect_event("retransmit", seq=s.iss + 1001, len=1000)
    s.rx("A", ack=3001)
    s.expect_vars(cwnd=2500)  # capped at ssthresh
    s.tx(seq=3001, length=1000)
    s.tx(seq=4001, length=1000)
    s.rx("A", ack=5001)
    s.expect_vars(una=5001, nxt=5001)
    s.expect_deadline(None)


def test_rto_ssthresh_floor_two_segments() -> None:
    s = newreno()
    s.send(1000)
    s.drain()
    s.fire()
    s.expect_vars(cwnd=1000, ssthresh=2000)  # max(1000/2, 2*SMSS)


def test_second_rto_keeps_ssthresh() -> None:
    """RFC 5681 3.1: ssthresh is reduced only on the first timeout of a segment."""
    s = newreno()
    s.send(8000)
    s.drain()
    s.fire()
    s.expect_vars(ssthresh=4000, cwnd=1000)
    s.fire()
    s.expect_vars(ssthresh=4000, cwnd=1000)


# --------------------------------------------------------- NewReno recovery


def test_newreno_fast_retransmit_and_recovery() -> None:
    """RFC 5681 3.2 and RFC 6582 3.2: three duplicate ACKs -> retransmit, ssthresh =
    FlightSize/2, cwnd = ssthresh + 3 SMSS, +1 SMSS per further dupack; a partial ACK
    retransmits the next hole and deflates; a full ACK ends recovery."""
    s = newreno()
    s.send(10000)
    for i in range(10):
        s.tx(seq=1 + 1000 * i, length=1000)
    s.send(5000)  # more data waits behind cwnd
    s.no_tx()
    # Segments 1 and 5 are lost; segments 2, 3, 4 arrive and produce dupacks.
    s.rx("A", ack=1)
    s.tx(seq=10001, length=1000)  # RFC 3042 limited transmit
    s.rx("A", ack=1)
    s.tx(seq=11001, length=1000)
    s.rx("A", ack=1)
    s.tx(seq=1, length=1000)
    s.expect_event("retransmit", seq=s.iss + 1, len=1000, reason="fast")
    # RFC 5681 3.2 (2): data sent by limited transmit is not in the FlightSize here.
    s.expect_event("cwnd", ssthresh=5000, reason="fast_retransmit")
    s.expect_vars(in_recovery=True, ssthresh=5000, cwnd=5000 + 3000, recover=s.iss + 12001)
    s.no_tx()
    # Segments 6..10 and the two limited-transmit ones arrive: 7 more dupacks.
    for _ in range(4):
        s.rx("A", ack=1)
    s.expect_vars(cwnd=12000)
    s.no_tx()  # flight 12000, cwnd 12000
    s.rx("A", ack=1)
    s.tx(seq=12001, length=1000)  # inflation lets new data out
    s.rx("A", ack=1)
    s.tx(seq=13001, length=1000)
    s.rx("A", ack=1)
    s.tx(seq=14001, length=1000)
    s.expect_vars(cwnd=15000)
    # The retransmission of segment 1 arrives: partial ACK up to the second hole.
    s.rx("A", ack=4001)
    s.tx(seq=4001, length=1000)
    s.expect_event("retransmit", seq=s.iss + 4001, len=1000, reason="partial_ack")
    s.expect_vars(in_recovery=True, cwnd=15000 - 4000 + 1000)
    s.no_tx()
    # Full ACK: everything up to `recover` (and beyond).
    s.rx("A", ack=13001)
    s.expect_event("cwnd", reason="recovery_exit")
    s.expect_vars(in_recovery=False, dupacks=0)
    s.expect(s.conn.cc.cwnd == min(5000, 2000 + 1000), "RFC 6582 3.2 (3) option 1")


def test_fewer_than_three_dupacks_no_fast_retransmit() -> None:
    s = newreno()
    s.send(10000)
    s.drain()
    s.rx("A", ack=1)
    s.rx("A", ack=1)
    s.no_tx()
    s.expect_vars(in_recovery=False)
    s.rx("A", ack=1001)
    s.expect_vars(dupacks=0)


def test_ack_with_window_change_is_not_a_dupack() -> None:
    """RFC 5681 2 (DUPLICATE ACKNOWLEDGMENT, condition e): the window must be unchanged."""
    s = newreno()
    s.send(10000)
    s.drain()
    for win in (60000, 61000, 62000):
        s.rx("A", ack=1, win=win)
    s.no_tx()
    s.expect_vars(dupacks=0, in_recovery=False)


def test_recover_blocks_fast_retransmit_after_rto() -> None:
    """RFC 6582 3.2 step 2 / 4: after an RTO, recover = highest sent; duplicate ACKs
    that do not cover it (stale ones) must not start another fast retransmit."""
    s = newreno()
    s.send(10000)
    s.drain()
    s.fire()
    s.tx(seq=1, length=1000)
    s.expect_vars(recover=s.iss + 10001)
    for _ in range(4):
        s.rx("A", ack=1)
    s.no_tx()
    s.expect_no_event("retransmit", reason="fast")
    s.expect_vars(in_recovery=False)
    s.rx("A", ack=10001)  # everything arrived after all
    s.expect_vars(una=10001)


def test_fast_retransmit_again_after_recover_passed() -> None:
    s = newreno()
    s.send(10000)
    s.drain()
    for _ in range(3):
        s.rx("A", ack=1)
    s.tx(seq=1)
    s.rx("A", ack=10001)
    s.expect_vars(in_recovery=False)
    s.send(10000)
    s.drain()
    for _ in range(3):
        s.rx("A", ack=10001)
    s.drain()
    s.expect_vars(in_recovery=True)


# -------------------------------------------------------------- SACK (6675)


def test_sack_loss_detection_before_three_dupacks() -> None:
    """RFC 6675 5 / IsLost: more than (DupThresh-1)*SMSS SACKed above a hole marks it
    lost, even after a single duplicate ACK."""
    s = with_sack()
    s.send(10000)
    s.drain()
    s.rx("A", ack=1, sack=[(1001, 4001)])
    s.tx(seq=1, length=1000)
    s.expect_event("retransmit", seq=s.iss + 1, len=1000, reason="fast")
    s.expect_vars(in_recovery=True, ssthresh=5000, cwnd=5000)


def test_sack_recovery_pipe_and_new_data() -> None:
    """RFC 6675 5: the first hole is retransmitted; after that segments go out only
    while cwnd - pipe >= 1 SMSS: holes first, then new data."""
    s = with_sack()
    s.send(10000)
    s.drain()
    s.send(5000)
    # Segment 1 lost: three dupacks with growing SACK blocks.
    s.rx("A", ack=1, sack=[(1001, 2001)])
    s.tx(seq=10001, length=1000)  # limited transmit (RFC 3042)
    s.rx("A", ack=1, sack=[(1001, 3001)])
    s.tx(seq=11001, length=1000)
    s.rx("A", ack=1, sack=[(1001, 4001)])
    s.tx(seq=1, length=1000)
    s.expect_vars(cwnd=5000, ssthresh=5000)
    s.no_tx()
    # 12000 sent, 3000 SACKed: pipe = 8000 in flight (4001..12001) + 1000 retransmitted
    s.expect(s.conn.recovery.pipe() == 9000, f"pipe 9000, got {s.conn.recovery.pipe()}")
    for top in (5001, 6001, 7001, 8001):
        s.rx("A", ack=1, sack=[(1001, top)])
        s.no_tx()  # pipe 8000 .. 5000: cwnd - pipe < 1 SMSS
    s.rx("A", ack=1, sack=[(1001, 9001)])  # pipe 4000: one new segment
    s.tx(seq=12001, length=1000)
    s.no_tx()
    s.rx("A", ack=1, sack=[(1001, 10001)])
    s.tx(seq=13001, length=1000)
    s.rx("A", ack=12001)  # full ACK (recover = 12001)
    s.expect_vars(in_recovery=False)
    s.expect_event("cwnd", reason="recovery_exit")


def test_sack_recovery_retransmits_second_hole() -> None:
    """Two holes: once the SACKed data above the second one marks it lost, it is
    retransmitted (NextSeg rule 1) before any new data."""
    s = with_sack()
    s.send(10000)
    s.drain()
    # Segments 1 and 5 are lost.
    s.rx("A", ack=1, sack=[(1001, 4001)])
    s.tx(seq=1, length=1000)
    for top in (6001, 7001, 8001, 9001, 10001):
        s.rx("A", ack=1, sack=[(5001, top), (1001, 4001)])
    segs = s.drain()
    s.expect([s.rel_seq(x) for x in segs][:1] == [4001], "the second hole goes first")
    s.expect_event("retransmit", seq=s.iss + 4001, reason="sack")
    s.rx("A", ack=4001, sack=[(5001, 10001)])
    s.rx("A", ack=10001)
    s.expect_vars(in_recovery=False, una=10001)


def test_sack_scoreboard_cleared_after_rto() -> None:
    """RFC 6675 5.1 / RFC 2018 8: after an RTO the SACK information is not trusted."""
    s = with_sack()
    s.send(5000)
    s.drain()
    s.rx("A", ack=1, sack=[(2001, 3001)])
    s.fire()
    s.expect_vars(sacked=[])
    s.tx(seq=1, length=1000)


# -------------------------------------------------------------------- CUBIC


def _loss_then_grow(cc: str, rounds: int = 14) -> list[int]:
    """One fast retransmit (W_max = 10 segments), then rounds of 0.5 s, each sending a
    whole cwnd and acknowledging it; returns cwnd after every round."""
    # (The path's RTT is the round's 0.5 s from the handshake on: the RTO, 1.5 s, does
    # not fire within a round.)
    s = Script.established(plain(sack=False, cc=cc), mss=1000, ts=False, sackok=False, rtt=0.5)
    s.rx("A", ack=1)  # window update: the scaled window from now on
    s.send(10000)
    s.drain()
    s.wait(0.5)
    for _ in range(3):
        s.rx("A", ack=1)
    s.drain()
    s.rx("A", ack=10001)  # full ACK
    s.drain()
    cwnds = []
    for _ in range(rounds):
        s.send(s.conn.cc.cwnd)
        s.drain()
        s.wait(0.5)
        s.rx("A", ack=s.conn.snd.max - s.conn.iss)
        s.drain()
        cwnds.append(s.conn.cc.cwnd)
    return cwnds


def test_cubic_selectable_and_used() -> None:
    """config.cc = "cubic" selects RFC 9438 CUBIC: beta 0.7 on loss, then the cubic
    curve -- a plateau near W_max, then convex growth -- instead of Reno's one
    segment per RTT."""
    s = Script.established(plain(cc="cubic", sack=False), mss=1000, ws=None, ts=False,
                           sackok=False)  # fmt: skip
    s.expect(isinstance(s.conn.cc, Cubic) and s.conn.cc.name == "cubic", "CUBIC in use")
    s.send(10000)
    s.drain()
    for _ in range(3):
        s.rx("A", ack=1)
    s.expect_vars(ssthresh=7000, cwnd=7000 + 3000)  # beta_cubic = 0.7
    cubic = _loss_then_grow("cubic")
    reno = _loss_then_grow("newreno")
    reno_steps = [b - a for a, b in zip(reno[6:], reno[7:], strict=False)]
    s.expect(set(reno_steps) == {1000}, f"Reno: +1 SMSS per RTT {reno}")
    s.expect(all(9000 <= w <= 11000 for w in cubic[4:9]), f"CUBIC plateau near W_max {cubic}")
    steps = [b - a for a, b in zip(cubic[-4:], cubic[-3:], strict=False)]
    s.expect(steps == sorted(steps) and steps[0] > 1000, f"CUBIC convex growth {cubic}")
    s.expect(cubic[-1] > reno[-1], f"CUBIC {cubic[-1]} ends above Reno {reno[-1]}")


# --------------------------------------------------------------------- ICMP


def test_icmp_port_unreachable_in_syn_sent() -> None:
    """RFC 1122 4.2.3.9 (hard error in SYN-SENT, as Linux): ECONNREFUSED."""
    s = Script()
    s.connect()
    s.tx("S")
    s.icmp_unreachable(errno.ECONNREFUSED)
    s.expect_state(State.CLOSED)
    s.expect_error(errno.ECONNREFUSED)
    s.expect_deadline(None)


def test_icmp_host_unreachable_is_soft() -> None:
    """RFC 1122 4.2.3.9: host unreachable is a soft error, reported only on timeout."""
    s = Script(TcpConfig(syn_retries=1))
    s.connect()
    s.tx("S")
    s.icmp_unreachable(errno.EHOSTUNREACH)
    s.expect_state(State.SYN_SENT)
    s.fire()
    s.tx("S")
    s.fire()
    s.expect_state(State.CLOSED)
    s.expect_error(errno.EHOSTUNREACH)


def test_icmp_port_unreachable_established_is_soft() -> None:
    s = Script.established()
    s.icmp_unreachable(errno.ECONNREFUSED)
    s.expect_state(State.ESTABLISHED)
    s.expect_error(0)


def test_frag_needed_lowers_mss_and_retransmits() -> None:
    """RFC 1191 6.3: ICMP fragmentation needed -> smaller MSS, resend at once."""
    s = Script.established(plain(), mss=1460, ts=False)
    s.send(2920)
    s.tx(seq=1, length=1460)
    s.tx(seq=1461, length=1460)
    s.path_mtu(1000)
    s.expect_vars(snd_mss=960, path_mss=960)
    s.tx(seq=1, length=960, data=pattern(960))
    s.expect_event("retransmit", seq=s.iss + 1, len=960, reason="pmtu")
    s.expect_vars(ssthresh=2**31)  # not a congestion signal
    for seg in s.drain():
        s.expect(len(seg.payload) <= 960, "every resent segment fits the new MTU")
    s.rx("A", ack=2921)
    s.send(2000)
    s.tx(seq=2921, length=960)


def test_frag_needed_in_syn_sent_keeps_handshake() -> None:
    """A frag-needed quoting our SYN lowers the MSS but must not disturb the handshake."""
    s = Script()
    s.connect()
    s.tx("S")
    s.path_mtu(1000)
    s.expect_vars(una=0, nxt=1, max=1)
    s.rx("SA", seq=0, ack=1, mss=1460, ts=False)
    s.tx("A", seq=1, ack=1)
    s.expect_state(State.ESTABLISHED)
    s.send(3000)
    s.tx(seq=1, length=960)


def test_frag_needed_in_syn_received_keeps_handshake() -> None:
    s = Script()
    s.passive(ts=False)
    s.tx("SA")
    s.path_mtu(1000)
    s.rx("A", seq=1, ack=1)
    s.expect_state(State.ESTABLISHED)
    s.send(3000)
    s.tx(seq=1, length=960)


# ------------------------------------------------------------------- events


def test_event_fields() -> None:
    """The on_event sink gets (kind, fields): state, retransmit, rtt and cwnd."""
    s = newreno()
    s.send(3000)
    s.drain()
    s.wait(0.05)
    s.rx("A", ack=1001)
    s.fire()
    s.rx("R", seq=1)
    kinds = {}
    for ev in s.events:
        kinds.setdefault(ev.kind, set(ev.fields))
    s.expect(kinds["state"] == {"from", "to"}, f"state fields {kinds['state']}")
    s.expect(kinds["retransmit"] == {"seq", "len", "reason"}, f"{kinds['retransmit']}")
    s.expect(kinds["rtt"] == {"sample", "srtt", "rttvar", "rto"}, f"{kinds['rtt']}")
    s.expect(kinds["cwnd"] == {"cwnd", "ssthresh", "reason"}, f"{kinds['cwnd']}")
    # RFC 6298 2.3 after the handshake's sample (0.1 s): RTTVAR = 3/4 * 0.05 + 1/4 * 0.05, SRTT = 7/8 * 0.1 + 1/8 * 0.05
    s.expect_event("rtt", sample=0.05, srtt=0.09375, rttvar=0.05, rto=0.29375)
    s.expect_event("retransmit", seq=s.iss + 1001, len=1000, reason="rto")
    s.expect_event("cwnd", cwnd=1000, reason="rto")
    s.expect_event("state", frm="ESTABLISHED", to="CLOSED")
    retransmit = s.events_of("retransmit")[0]
    s.expect(isinstance(retransmit["seq"], int) and 0 <= retransmit["seq"] < 2**32,
             "retransmit seq is the 32-bit wire value")  # fmt: skip


# ------------------------------------------------ Early Retransmit (RFC 5827)


def test_early_retransmit_sack_two_segments_one_dupack() -> None:
    """RFC 5827 3.2: 2 segments outstanding and nothing new to send -> ER_thresh =
    ceiling(2000 / 1000) - 1 = 1: one SACKed segment starts SACK recovery."""
    s = with_sack()
    s.send(2000)
    s.tx(seq=1, length=1000)
    s.tx(seq=1001, length=1000)
    s.rx("A", ack=1, sack=[(1001, 2001)])  # segment 1 lost, segment 2 arrived
    s.tx(seq=1, length=1000)
    s.expect_event("early_retransmit", dupacks=1, thresh=1)
    s.expect_event("retransmit", seq=s.iss + 1, len=1000, reason="fast")
    s.expect_vars(in_recovery=True, ssthresh=2000, cwnd=2000)
    s.no_tx()
    s.rx("A", ack=2001)
    s.expect_vars(in_recovery=False, una=2001)
    s.expect_no_event("retransmit", reason="rto")


def test_early_retransmit_newreno_one_dupack() -> None:
    """RFC 5827 3.1 without SACK: 2 segments out, 1 duplicate ACK; the window is
    inflated by the ER_thresh segments that left the network, not 3."""
    s = newreno()
    s.send(2000)
    s.drain()
    s.rx("A", ack=1)
    s.tx(seq=1, length=1000)
    s.expect_event("retransmit", seq=s.iss + 1, reason="fast")
    s.expect_vars(in_recovery=True, ssthresh=2000, cwnd=2000 + 1000)


def test_early_retransmit_three_segments_needs_two() -> None:
    """3 segments out: ER_thresh = 2. One SACKed segment (1 SMSS) is not enough
    (IsLost wants more than (ER_thresh - 1) * SMSS above the hole); two are."""
    s = with_sack()
    s.send(3000)
    s.drain()
    s.rx("A", ack=1, sack=[(2001, 3001)])
    s.no_tx()
    s.expect_vars(in_recovery=False, dupacks=1)
    s.rx("A", ack=1, sack=[(1001, 3001)])
    s.tx(seq=1, length=1000)
    s.expect_event("early_retransmit", dupacks=2, thresh=2)
    s.expect_vars(in_recovery=True)


def test_early_retransmit_when_receive_window_forbids_new_data() -> None:
    """RFC 5827 (3.b): queued data that the peer's window does not admit does not
    count: ER applies."""
    s = Script.established(plain(rack=False), mss=1000, ws=None, ts=False, sackok=True, win=2000)
    s.send(5000)
    s.tx(seq=1, length=1000)
    s.tx(seq=1001, length=1000)
    s.no_tx()
    s.rx("A", ack=1, sack=[(1001, 2001)])
    s.tx(seq=1, length=1000)
    s.expect_event("retransmit", seq=s.iss + 1, reason="fast")


def test_no_early_retransmit_while_new_data_can_go() -> None:
    """RFC 5827 (3.b): with unsent data the window admits, Limited Transmit (RFC
    3042) sends new segments to produce more duplicate ACKs; DupThresh stays 3."""
    s = with_sack()
    s.call("cwnd = 2000", lambda c: setattr(c.cc, "cwnd", 2000))
    s.send(5000)
    s.tx(seq=1, length=1000)
    s.tx(seq=1001, length=1000)
    s.no_tx()
    s.rx("A", ack=1, sack=[(1001, 2001)])
    s.tx(seq=2001, length=1000)  # limited transmit, not a retransmission
    s.no_tx()
    s.expect_vars(in_recovery=False)
    s.expect_no_event("early_retransmit")


def test_no_early_retransmit_with_four_segments() -> None:
    """RFC 5827 (3.a): 4 * SMSS outstanding is not "less than 4 segments"."""
    s = with_sack()
    s.send(4000)
    s.drain()
    s.rx("A", ack=1, sack=[(1001, 2001)])
    s.rx("A", ack=1, sack=[(1001, 3001)])
    s.no_tx()
    s.expect_vars(in_recovery=False, dupacks=2)
    s.rx("A", ack=1, sack=[(1001, 4001)])
    s.tx(seq=1, length=1000)
    s.expect_no_event("early_retransmit")


# --------------------------------------------------- Tail Loss Probe (RFC 8985)


def sack_with_rtt(**kwargs: Any) -> Script:
    """SACK, MSS 1000, no timestamps; the handshake and one exchange, both 0.1 s, give
    SRTT 0.1 s, RTTVAR 3/4 * 0.05 = 0.0375 s (RFC 6298 2.2, 2.3): RTO 0.25 s unless
    min_rto is higher. The clock is at 0.1."""
    s = with_sack(**kwargs)
    s.send(1000)
    s.tx(seq=1, length=1000)
    s.wait(0.1)
    s.rx("A", ack=1001)
    s.expect_vars(srtt=0.1, pto_deadline=None)
    s.mark_events()
    return s


def test_tlp_pto_armed_at_two_srtt() -> None:
    """RFC 8985 7.2: after sending new data PTO = 2 * SRTT, before the RTO."""
    s = sack_with_rtt()
    s.send(2000)
    s.drain()
    s.expect_vars(rtx_deadline=0.1 + 0.25, pto_deadline=0.1 + 0.2 + SLACK)
    s.expect_deadline(0.1 + 0.2 + SLACK)


def test_tlp_pto_clamped_to_the_rto() -> None:
    """RFC 8985 7.2 ``TLP_calc_PTO``: with one segment in flight the PTO gets the
    delayed-ACK allowance, 2 * 0.1 + 0.2 = 0.4 s, later than the RTO (0.25 s): "If
    Now() + PTO > TCP_RTO_expire(): PTO = TCP_RTO_expire() - Now()". The probe goes
    at the RTO's time, and the RTO is re-armed from there (7.3)."""
    s = sack_with_rtt()
    s.send(1000)
    s.drain()
    s.expect_vars(pto_deadline=0.1 + 0.25, rtx_deadline=0.1 + 0.25)
    s.fire()
    s.tx(seq=1001, length=1000)
    s.expect_event("retransmit", seq=s.iss + 1001, reason="tlp")
    s.expect_vars(rtx_deadline=0.35 + 0.25, pto_deadline=None)
    s.fire()
    s.tx(seq=1001, length=1000)
    s.expect_event("retransmit", seq=s.iss + 1001, reason="rto")


def test_tlp_one_segment_with_delayed_ack_allowance() -> None:
    """With a 1 s RTO floor the single-segment PTO, 2 * SRTT + 200 ms, comes first."""
    s = sack_with_rtt(min_rto=1.0)
    s.send(1000)
    s.drain()
    s.expect_vars(pto_deadline=0.1 + 0.4, rtx_deadline=0.1 + 1.0)


def test_pto_before_rtt_sample_is_one_second() -> None:
    """RFC 8985 7.2: no SRTT -> PTO 1 s. After a handshake whose SYN was retransmitted
    (no sample: Karn's rule) the RTO is RFC 6298 5.7's 3 s: the probe comes first, at
    1 s."""
    s = with_sack(rtt=None)
    s.send(3000)
    s.drain()
    s.expect_vars(pto_deadline=1.0, rtx_deadline=3.0)
    s.fire()
    s.tx(seq=2001, length=1000)
    s.expect_event("tlp", new_data=False)


def test_no_tlp_without_sack() -> None:
    s = newreno(min_rto=1.0)
    s.send(1000)
    s.wait(0.1)
    s.rx("A", ack=1001)
    s.send(3000)
    s.drain()
    s.expect_vars(pto_deadline=None)


def test_tlp_probe_new_data_then_sack_recovery() -> None:
    """RFC 8985 7.3: the probe carries new data when some is queued and the receive
    window allows it (cwnd does not count). Segment 1 is lost and the ACK for
    segment 2 too; the probe's ACK SACKs 2 segments above the hole, which with 3
    outstanding is Early Retransmit's threshold: SACK recovery repairs the loss
    long before the RTO."""
    s = sack_with_rtt()
    s.call("cwnd = 2000", lambda c: setattr(c.cc, "cwnd", 2000))
    s.send(3000)
    s.tx(seq=1001, length=1000)
    s.tx(seq=2001, length=1000)
    s.no_tx()  # cwnd-limited: 1000 bytes wait
    s.expect_deadline(0.1 + 0.2 + SLACK)
    s.fire()
    s.expect(abs(s.now - 0.3 - SLACK) < 1e-9, "the probe goes at 2 * SRTT (+ slack)")
    s.tx(seq=3001, length=1000)  # new data, beyond cwnd
    s.expect_event("tlp", seq=s.iss + 3001, len=1000, new_data=True)
    s.expect_no_event("retransmit")
    s.expect_vars(tlp_end_seq=s.iss + 4001, tlp_is_retrans=False, pto_deadline=None)
    s.expect_deadline(0.3 + SLACK + 0.25)  # RFC 8985 7.3: the RTO is re-armed, not the PTO
    s.wait(0.05)
    s.rx("A", ack=1001, sack=[(2001, 4001)])
    s.tx(seq=1001, length=1000)
    s.expect_event("retransmit", seq=s.iss + 1001, reason="fast")
    s.expect_vars(in_recovery=True, tlp_end_seq=None)
    s.wait(0.05)
    s.rx("A", ack=4001)
    s.expect_vars(in_recovery=False, una=4001)
    s.expect_no_event("retransmit", reason="rto")


def test_tlp_probe_retransmits_last_segment_then_sack_recovery() -> None:
    """RFC 8985 7.3: with nothing new to send the probe resends the highest segment.
    Segments 2 and 3 of 3 are lost (a tail loss); the probe's SACK marks segment 2
    lost (Early Retransmit, 2 segments outstanding): repaired without an RTO."""
    s = sack_with_rtt()
    s.send(3000)
    s.tx(seq=1001, length=1000)
    s.tx(seq=2001, length=1000)
    s.tx(seq=3001, length=1000)
    s.wait(0.1)
    # Segment 1 arrived; RTT 0.1 a third time: RTTVAR 3/4 * 0.0375, RTO 0.2125.
    s.rx("A", ack=2001)
    s.expect_vars(pto_deadline=0.2 + 0.2 + SLACK, rtx_deadline=0.2 + 0.2125)
    s.expect_deadline(0.4 + SLACK)
    s.fire()
    s.tx(seq=3001, length=1000)
    s.expect_event("retransmit", seq=s.iss + 3001, len=1000, reason="tlp")
    s.expect_event("tlp", seq=s.iss + 3001, len=1000, new_data=False)
    s.expect_vars(tlp_end_seq=s.iss + 4001, tlp_is_retrans=True)
    s.expect_deadline(0.4 + SLACK + 0.2125)
    s.wait(0.1)
    s.rx("A", ack=2001, sack=[(3001, 4001)])
    s.tx(seq=2001, length=1000)
    s.expect_event("early_retransmit", dupacks=1, thresh=1)
    s.expect_event("retransmit", seq=s.iss + 2001, reason="fast")
    s.wait(0.1)
    s.rx("A", ack=4001)
    s.expect_vars(una=4001, in_recovery=False)
    s.expect_no_event("retransmit", reason="rto")


def test_tlp_at_most_one_probe_outstanding() -> None:
    """RFC 8985 7.3: one probe, then the RTO; an ACK below TLP.end_seq does not arm
    another PTO. The RTO ends the episode (7.1) and probing may start again later."""
    s = sack_with_rtt()
    s.send(3000)
    s.drain()
    s.fire()
    s.tx(seq=3001, length=1000)
    s.expect(abs(s.now - 0.3 - SLACK) < 1e-9, "probe at 0.1 + 2 * SRTT (+ slack)")
    s.wait(0.1)
    s.rx("A", ack=2001)  # new data acked, below TLP.end_seq: no new PTO
    s.expect_vars(pto_deadline=None, tlp_end_seq=s.iss + 4001)
    s.fire()
    s.expect(abs(s.now - 0.4 - SLACK - 0.25) < 1e-9, "then the RTO")
    s.tx(seq=2001, length=1000)
    s.expect_event("retransmit", seq=s.iss + 2001, reason="rto")
    s.expect_vars(tlp_end_seq=None, pto_deadline=None)
    s.no_tx()
    s.expect(len(s.events_of("tlp")) == 1, "a single probe")


def test_tlp_repairing_a_loss_reduces_cwnd() -> None:
    """RFC 8985 7.4.2: the probe resent the last segment and an ACK beyond
    TLP.end_seq comes with no D-SACK for it: the probe repaired a loss; cwnd and
    ssthresh are reduced."""
    s = sack_with_rtt(min_rto=1.0)
    s.send(3000)
    s.drain()
    s.wait(0.1)
    s.rx("A", ack=3001)  # segment 3 lost
    s.expect_vars(pto_deadline=0.2 + 0.4)  # one segment in flight: 2 * SRTT + 200 ms
    s.fire()
    s.tx(seq=3001, length=1000)
    s.wait(0.1)
    s.rx("A", ack=4001)  # == TLP.end_seq: no verdict yet (a D-SACK may follow)
    s.expect_vars(tlp_end_seq=s.iss + 4001)
    s.send(1000)
    s.tx(seq=4001, length=1000)
    s.wait(0.1)
    cwnd = s.var("cwnd")
    s.rx("A", ack=5001)
    s.expect_event("cwnd", reason="tlp_loss", cwnd=cwnd // 2, ssthresh=cwnd // 2)
    s.expect_vars(tlp_end_seq=None)


def test_tlp_dsack_means_no_loss() -> None:
    """RFC 8985 7.4.2 / RFC 2883: a D-SACK for the probe says the original arrived
    too: no congestion response."""
    s = sack_with_rtt(min_rto=1.0)
    s.send(3000)
    s.drain()
    s.wait(0.1)
    s.rx("A", ack=3001)
    s.fire()
    s.tx(seq=3001, length=1000)
    s.rx("A", ack=4001)  # the original's ACK, delayed
    s.rx("A", ack=4001, sack=[(3001, 4001)])  # the probe: a duplicate, D-SACKed
    s.expect_vars(tlp_end_seq=None)
    s.send(1000)
    s.drain()
    s.rx("A", ack=5001)
    s.expect_no_event("cwnd", reason="tlp_loss")
