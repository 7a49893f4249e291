"""BBR v1 (draft-cardwell-iccrg-bbr-congestion-control-00), stack/tcp/congestion/bbr.py:
the model (BtlBw, RTprop), the modes, and the window in and out of loss recovery. The
samples are made by hand here; test_rate.py tests where they come from, and the last
tests run BBR inside a connection (tcpscript, fake clock)."""

from __future__ import annotations

from test_tcp_rack import rack

from stack.tcp.congestion import RateDriven, make_congestion_control
from stack.tcp.congestion.bbr import (
    BTLBW_ROUNDS,
    HIGH_GAIN,
    MIN_PIPE_SEGMENTS,
    QUANTA,
    QUANTUM_MAX_BYTES,
    QUANTUM_MIN_SEGMENTS,
    Bbr,
    WindowedMax,
)
from stack.tcp.rate import RateSample

MSS = 1000
# The window's burst allowance at the tests' 1 MB/s: 3 quanta of the 2-segment minimum.
BURST = QUANTA * QUANTUM_MIN_SEGMENTS * MSS


def rs(rate: float, *, delivered: int = MSS, prior: int = 0, total: int = 0,
       in_flight: int = 0, rtt: float | None = 0.01, lost: int = 0,
       in_recovery: bool = False, app_limited: bool = False) -> RateSample:
    return RateSample(delivery_rate=rate, delivered=delivered, interval=0.01,
                      prior_delivered=prior, app_limited=app_limited, rtt=rtt,
                      newly_delivered=delivered, newly_lost=lost, in_flight=in_flight,
                      total_delivered=total, in_recovery=in_recovery)


def rounds(cc: Bbr, rate: float, n: int, *, per_round: int = 10 * MSS, now: float = 0.0) -> float:
    """Feed n round trips, each one ACK delivering `per_round` at `rate`."""
    for _ in range(n):
        total = cc.next_round_delivered + per_round
        cc.on_rate_sample(rs(rate, delivered=per_round, prior=cc.next_round_delivered,
                             total=total, in_flight=per_round), now)
        now += 0.01
    return now


def test_windowed_max_forgets_after_its_window() -> None:
    """Section 4.1.1.3: BtlBw is the maximum of the last BtlBwFilterLen rounds."""
    f = WindowedMax(3)
    f.update(0, 10.0)
    f.update(1, 5.0)
    assert f.best == 10.0
    f.update(3, 4.0)  # round 0 left the window
    assert f.best == 5.0
    f.update(4, 7.0)
    assert f.best == 7.0


def test_bbr_is_registered_and_rate_driven() -> None:
    cc = make_congestion_control("bbr", MSS)
    assert isinstance(cc, RateDriven)
    assert not isinstance(make_congestion_control("cubic", MSS), RateDriven)


def test_startup_doubles_until_bandwidth_stops_growing_then_two_bdp() -> None:
    """Sections 4.3.2.1-4.3.3: Startup grows cwnd by what is delivered; three rounds
    without 25% more bandwidth fill the pipe; Drain hands over to ProbeBW, whose
    window is cwnd_gain (2) * BtlBw * RTprop, plus the burst allowance."""
    cc = Bbr(MSS)
    assert cc.mode == "startup"
    now = rounds(cc, 1e6, 1)
    rounds(cc, 1e6, 3, now=now)  # no growth: 3 rounds
    assert cc.filled_pipe
    assert cc.mode == "probe_bw"  # Drain ended at once: 10 segments in flight <= BDP 10000
    assert cc.bdp == 10000  # 1e6 B/s * 0.01 s
    for _ in range(20):
        rounds(cc, 1e6, 1)
    assert cc.cwnd == 2 * 10000 + BURST


def test_startup_window_gain_is_high_gain() -> None:
    cc = Bbr(MSS)
    rounds(cc, 1e6, 1)
    assert cc.target_cwnd() == int(HIGH_GAIN * 10000) + BURST


def test_send_quantum_is_a_millisecond_of_btlbw_within_bounds() -> None:
    """The burst allowance follows the rate, as Linux's bbr_quantization_budget
    (rate / 1024 per quantum): 2 segments at low rates, 64 KB at most."""
    cc = Bbr(MSS)
    rounds(cc, 1e6, 1)
    assert cc.send_quantum() == QUANTUM_MIN_SEGMENTS * MSS
    rounds(cc, 20.48e6, 1)
    assert cc.send_quantum() == 20000
    rounds(cc, 1e9, 1)
    assert cc.send_quantum() == QUANTUM_MAX_BYTES


def test_random_loss_does_not_shrink_the_model_window() -> None:
    """Sections 4.2.3.4-5: on loss only the first round of recovery conserves packets
    (cwnd = in flight + delivered); when recovery ends the prior window returns. A
    loss-based algorithm would have halved it."""
    cc = Bbr(MSS)
    for _ in range(10):
        rounds(cc, 1e6, 1)
    before = cc.cwnd
    assert before == 20000 + BURST
    total = cc.next_round_delivered
    cc.on_congestion(before, 0.0)  # the connection's call when recovery starts
    cc.on_rate_sample(rs(1e6, delivered=MSS, prior=total - MSS, total=total + MSS,
                         in_flight=12 * MSS, lost=MSS, in_recovery=True), 0.1)
    assert cc.conservation
    assert cc.cwnd == 13 * MSS  # in flight + delivered
    cc.on_rate_sample(rs(1e6, delivered=MSS, prior=total, total=total + 2 * MSS,
                         in_flight=12 * MSS, in_recovery=False), 0.11)
    assert cc.cwnd == before  # restored
    assert not cc.in_recovery


def test_timeout_cuts_to_one_segment_and_recovery_end_restores() -> None:
    """RFC 5681 section 3.1's loss window after an RTO; draft section 4.2.3.4: the
    window grows back from the ACKs, and the end of RTO recovery restores it."""
    cc = Bbr(MSS)
    for _ in range(10):
        rounds(cc, 1e6, 1)
    before = cc.cwnd
    cc.on_timeout(before, 1.0)
    assert cc.cwnd == MSS
    total = cc.next_round_delivered
    cc.on_rate_sample(rs(1e6, delivered=MSS, prior=total, total=total + MSS,
                         in_flight=0, in_recovery=True), 1.1)
    assert cc.cwnd == MIN_PIPE_SEGMENTS * MSS  # grown, at least the minimum pipe
    cc.on_rate_sample(rs(1e6, delivered=MSS, prior=total + MSS, total=total + 2 * MSS,
                         in_flight=0, in_recovery=False), 1.2)
    assert cc.cwnd == before


def test_probe_rtt_after_ten_seconds_without_a_new_minimum() -> None:
    """Section 4.3.4: an RTprop older than 10 s sends BBR to ProbeRTT: 4 segments for
    200 ms and a round trip, then back with the window it had."""
    cc = Bbr(MSS)
    for _ in range(10):
        rounds(cc, 1e6, 1)
    before = cc.cwnd
    total = cc.next_round_delivered
    cc.on_rate_sample(rs(1e6, prior=total, total=total + MSS, in_flight=10 * MSS,
                         rtt=0.02), 10.5)
    assert cc.mode == "probe_rtt"
    assert cc.cwnd == MIN_PIPE_SEGMENTS * MSS
    total = cc.next_round_delivered
    cc.on_rate_sample(rs(1e6, prior=total, total=total + MSS, in_flight=3 * MSS,
                         rtt=0.02), 10.51)
    assert cc.probe_rtt_done is not None
    now = 10.52
    while cc.mode == "probe_rtt" and now < 11.0:
        total = cc.next_round_delivered
        cc.on_rate_sample(rs(1e6, prior=total, total=total + MSS, in_flight=3 * MSS,
                             rtt=0.02), now)
        now += 0.05
    assert cc.mode == "probe_bw"
    assert now >= 10.71  # held for PROBE_RTT_TIME
    assert cc.cwnd >= before


def test_app_limited_samples_only_raise_btlbw() -> None:
    """Section 4.1.1.3: an app-limited sample below BtlBw says nothing of the path."""
    cc = Bbr(MSS)
    rounds(cc, 2e6, 1)
    cc.on_rate_sample(rs(1e5, prior=cc.next_round_delivered,
                         total=cc.next_round_delivered + MSS, app_limited=True), 0.5)
    assert cc.btlbw.best == 2e6
    for _ in range(BTLBW_ROUNDS + 1):
        rounds(cc, 1e6, 1)
    assert cc.btlbw.best == 1e6  # the old maximum left the window


def test_bbr_connection_recovers_a_loss_without_halving_the_window() -> None:
    """RFC 8985 marks the hole lost (6.2) and fast recovery retransmits it; with BBR
    PRR does not set the window (a rate-driven algorithm sets its own, as a Linux
    cong_control module), and when the retransmission is acknowledged the window is
    back where it was: no multiplicative decrease for a random loss."""
    s = rack(cc="bbr")  # test_tcp_rack's set-up: SACK, MSS 1000, SRTT 0.1 s
    s.send(5000)
    s.drain()
    cwnd = s.var("cwnd")
    s.wait(0.1)
    s.rx("A", ack=1001, sack=[(2001, 6001)])
    s.tx(seq=1001, length=1000)
    s.expect_event("recovery", reason="rack")
    s.expect_no_event("prr")
    s.wait(0.1)
    s.rx("A", ack=6001)
    s.expect_vars(in_recovery=False)
    s.expect(s.var("cwnd") >= cwnd, f"cwnd {s.var('cwnd')} back to at least {cwnd}")
