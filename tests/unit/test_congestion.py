"""Tests for congestion control (stack/tcp/congestion/).

The helpers simulate a sender that always has data: in every round trip the
whole congestion window is acknowledged, in ACKs of a given size spread
evenly over the RTT.
"""

from __future__ import annotations

import math

import pytest

from stack.tcp.congestion import (
    ALGORITHMS,
    INFINITE_SSTHRESH,
    CongestionControl,
    Cubic,
    NewReno,
    initial_window,
    make_congestion_control,
)
from stack.tcp.congestion.cubic import ALPHA_CUBIC, BETA_CUBIC, C

MSS = 1000


def ack_round(cc: CongestionControl, now: float, rtt: float, ack_size: int | None = None) -> float:
    """Acknowledge one full window (as it was at the start of the round).

    ACKs of ``ack_size`` bytes (default one MSS) are spread over the RTT.
    Returns the time at the end of the round.
    """
    size = ack_size or cc.mss
    window = cc.cwnd
    sizes = [size] * (window // size)
    if window % size:
        sizes.append(window % size)  # a last, shorter segment
    for i, acked in enumerate(sizes):
        cc.on_ack(acked, now + i * rtt / len(sizes), rtt)
    return now + rtt


# -- shared behaviour ----------------------------------------------------------


def test_factory_knows_all_algorithms() -> None:
    assert ALGORITHMS == ("newreno", "cubic", "bbr")
    for name in ALGORITHMS:
        cc = make_congestion_control(name, MSS)
        assert cc.name == name
        assert cc.mss == MSS
    assert isinstance(make_congestion_control("newreno", MSS), NewReno)
    assert isinstance(make_congestion_control("cubic", MSS), Cubic)


def test_factory_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown congestion control"):
        make_congestion_control("vegas", MSS)


@pytest.mark.parametrize(
    ("mss", "iw"),
    [(1460, 14600), (1000, 10000), (536, 5360), (9000, 18000), (8000, 16000)],
)
def test_initial_window_rfc6928(mss: int, iw: int) -> None:
    # min(10*MSS, max(2*MSS, 14600))
    assert initial_window(mss) == iw
    for name in ALGORITHMS:
        cc = make_congestion_control(name, mss)
        assert cc.cwnd == iw
        assert cc.ssthresh == INFINITE_SSTHRESH == 2**31


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("ack_segments", [1, 2])
def test_slow_start_doubles_every_rtt(name: str, ack_segments: int) -> None:
    # Per-segment ACKs and delayed ACKs (one per 2 segments, allowed by L = 2*SMSS).
    cc = make_congestion_control(name, MSS)
    now = 0.0
    windows = [cc.cwnd]
    for _ in range(5):
        now = ack_round(cc, now, 0.1, ack_segments * MSS)
        windows.append(cc.cwnd)
    assert windows == [10_000 * 2**i for i in range(6)]


# The rules of RFC 3465 and RFC 6582 below are those of loss-based algorithms; BBR's
# window follows its path model (test_bbr.py).
LOSS_BASED = [name for name in ALGORITHMS if name != "bbr"]


@pytest.mark.parametrize("name", LOSS_BASED)
def test_stretch_acks_are_limited_to_two_segments(name: str) -> None:
    # RFC 3465 section 2.3: an ACK covering many segments grows cwnd by at most L = 2*SMSS.
    cc = make_congestion_control(name, MSS)
    cc.on_ack(10 * MSS, 0.0, 0.1)
    assert cc.cwnd == 12_000


@pytest.mark.parametrize("name", LOSS_BASED)
def test_recovery_exit_deflation(name: str) -> None:
    cc = make_congestion_control(name, MSS)
    cc.on_congestion(40 * MSS, 1.0)
    ssthresh = cc.ssthresh
    cc.cwnd = ssthresh + 5 * MSS  # the connection inflated cwnd during recovery
    assert cc.cwnd == ssthresh + 5 * MSS
    # RFC 6582 section 3.2 step 3 option 1: min(ssthresh, max(FlightSize, SMSS) + SMSS)
    cc.on_recovery_exit(5 * MSS, 1.5)
    assert cc.cwnd == 6 * MSS
    cc.on_recovery_exit(0, 1.5)
    assert cc.cwnd == 2 * MSS
    cc.on_recovery_exit(100 * MSS, 1.5)
    assert cc.cwnd == ssthresh


@pytest.mark.parametrize("name", ALGORITHMS)
def test_snapshot_has_cwnd_and_ssthresh(name: str) -> None:
    cc = make_congestion_control(name, MSS)
    snap = cc.snapshot()
    assert snap["cwnd"] == 10_000.0
    assert snap["ssthresh"] == float(2**31)
    assert all(isinstance(v, float) for v in snap.values())


@pytest.mark.parametrize("name", ALGORITHMS)
def test_zero_ack_changes_nothing(name: str) -> None:
    cc = make_congestion_control(name, MSS)
    cc.on_ack(0, 0.0, None)
    assert cc.cwnd == 10_000


@pytest.mark.parametrize("name", ALGORITHMS)
def test_mss_change_before_first_ack_recomputes_initial_window(name: str) -> None:
    cc = make_congestion_control(name, 536)  # created before the peer's MSS is known
    assert cc.cwnd == 5360
    cc.mss = 1448  # the handshake settled the SMSS
    assert (cc.mss, cc.cwnd) == (1448, 14480)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_mss_change_later_keeps_cwnd_bytes(name: str) -> None:
    cc = make_congestion_control(name, MSS)
    ack_round(cc, 0.0, 0.1)
    assert cc.cwnd == 20 * MSS
    cc.mss = 500  # e.g. path MTU discovery lowered it
    assert cc.cwnd == 20 * MSS
    cc.on_timeout(20 * MSS, 1.0)
    assert cc.cwnd == 500  # the loss window is one new SMSS


# -- NewReno -----------------------------------------------------------------


def test_newreno_congestion_avoidance_one_mss_per_rtt() -> None:
    cc = NewReno(MSS)
    cc.on_congestion(40 * MSS, 0.0)
    assert (cc.ssthresh, cc.cwnd) == (20 * MSS, 20 * MSS)
    now = 0.0
    for i in range(1, 11):
        now = ack_round(cc, now, 0.1)
        assert cc.cwnd == (20 + i) * MSS


def test_newreno_congestion_avoidance_with_delayed_acks() -> None:
    cc = NewReno(MSS)
    cc.on_congestion(40 * MSS, 0.0)
    now = 0.0
    for _ in range(10):
        now = ack_round(cc, now, 0.1, 2 * MSS)
    assert cc.cwnd == 30 * MSS


def test_newreno_on_congestion_halves_flight() -> None:
    cc = NewReno(MSS)
    cc.on_congestion(33 * MSS, 0.0)  # RFC 5681 equation (4)
    assert cc.ssthresh == 16_500
    assert cc.cwnd == 16_500
    cc.on_congestion(MSS, 0.0)  # floor of 2*SMSS
    assert cc.ssthresh == 2 * MSS


def test_newreno_timeout_then_slow_start_to_ssthresh() -> None:
    cc = NewReno(MSS)
    cc.on_timeout(40 * MSS, 0.0)
    assert (cc.ssthresh, cc.cwnd) == (20 * MSS, MSS)  # RFC 5681: cwnd = loss window
    # After an RTO, L = 1*SMSS: a delayed ACK of 2 segments adds only 1 SMSS.
    cc.on_ack(2 * MSS, 0.1, 0.1)
    assert cc.cwnd == 2 * MSS
    now = 0.2
    while cc.cwnd < cc.ssthresh:
        now = ack_round(cc, now, 0.1)
    assert cc.cwnd == cc.ssthresh == 20 * MSS  # slow start stops exactly at ssthresh
    now = ack_round(cc, now, 0.1)
    assert cc.cwnd == 21 * MSS  # then congestion avoidance


def test_newreno_repeated_timeout_keeps_ssthresh() -> None:
    cc = NewReno(MSS)
    cc.on_timeout(40 * MSS, 0.0)
    cc.on_timeout(MSS, 1.0)  # the same segment timed out again
    assert (cc.ssthresh, cc.cwnd) == (20 * MSS, MSS)
    cc.on_ack(MSS, 1.5, 0.1)  # progress: a later timeout is a new loss event
    cc.on_timeout(10 * MSS, 3.0)
    assert cc.ssthresh == 5 * MSS


# -- CUBIC -------------------------------------------------------------------


def cubic_after_loss(w_segments: float, now: float = 0.0, **kwargs: bool) -> Cubic:
    """A CUBIC instance that lost a packet at a window of ``w_segments``."""
    cc = Cubic(MSS, **kwargs)
    cc.cwnd = round(w_segments * MSS)
    cc.on_congestion(round(w_segments * MSS), now)
    return cc


def test_cubic_multiplicative_decrease_beta_07() -> None:
    assert BETA_CUBIC == 0.7
    cc = cubic_after_loss(100)
    assert cc.ssthresh == 70 * MSS  # RFC 9438 section 4.6: flight_size * 0.7
    assert cc.cwnd == 70 * MSS
    assert cc.snapshot()["w_max"] == 100 * MSS
    small = cubic_after_loss(2)  # ssthresh and cwnd are at least 2 segments
    assert small.ssthresh == small.cwnd == 2 * MSS


def test_cubic_k_formula() -> None:
    cc = cubic_after_loss(100, now=5.0)
    cc.on_ack(MSS, 5.0, 0.1)  # the first ACK in congestion avoidance starts the epoch
    # RFC 9438 section 4.2: K = cbrt((W_max - cwnd_epoch) / C) = cbrt(30 / 0.4)
    expected_k = math.cbrt((100 - 70) / C)
    assert cc.k == pytest.approx(expected_k)
    assert cc.k == pytest.approx(4.2172, abs=1e-4)
    assert cc.snapshot()["k"] == pytest.approx(expected_k)
    assert cc.w_cubic(0.0) == pytest.approx(70.0)  # the curve starts at cwnd_epoch
    assert cc.w_cubic(cc.k) == pytest.approx(100.0)  # and reaches W_max at K


def test_cubic_reaches_w_max_at_about_k() -> None:
    cc = cubic_after_loss(100)
    # With this RTT the Reno-friendly estimate stays below the curve here.
    rtt = 0.2
    k = math.cbrt(30 / C)
    now = 0.0
    history: list[tuple[float, float]] = []
    while now < k + 3.0:
        now = ack_round(cc, now, rtt)
        history.append((now, cc.cwnd / MSS))
    at_k = min(history, key=lambda h: abs(h[0] - k))[1]
    assert at_k == pytest.approx(100, rel=0.02)
    # Concave below W_max: growth slows down as cwnd approaches W_max ...
    early = [w for t, w in history if t < k - 0.5]
    assert all(w < 100 for w in early)
    growth = [b - a for a, b in zip(early, early[1:], strict=False)]
    assert growth[0] > growth[-1]
    # ... then convex beyond it: growth speeds up again while probing.
    late = [w for t, w in history if t > k + 0.5]
    assert late[0] > 100
    assert late[-1] - late[-2] > late[1] - late[0]
    # Aiming one RTT ahead (RFC 9438 section 4.2) keeps the window on the curve.
    t_end, w_end = history[-1]
    assert w_end == pytest.approx(cc.w_cubic(t_end), rel=0.01)
    assert cc.w_est < w_end  # not in the Reno-friendly region


def test_cubic_reno_friendly_region() -> None:
    # Small window and short RTT: Reno would grow faster than the cubic
    # curve, so CUBIC follows W_est (RFC 9438 section 4.3).
    cc = cubic_after_loss(10)
    assert math.isclose(ALPHA_CUBIC, 3 * 0.3 / 1.7)
    rtt = 0.01
    now = 0.0
    windows = [cc.cwnd / MSS]
    for _ in range(4):
        now = ack_round(cc, now, rtt)
        windows.append(cc.cwnd / MSS)
        snap = cc.snapshot()
        assert cc.w_cubic(now) < snap["w_est"] / MSS
        assert snap["cwnd"] == pytest.approx(snap["w_est"], abs=1)
    # Below cwnd_prior (10 segments) W_est grows by ~alpha_cubic = 0.53 segments per RTT.
    steps = [b - a for a, b in zip(windows, windows[1:], strict=False)]
    assert all(0.4 < s < ALPHA_CUBIC + 0.01 for s in steps)
    # Once W_est passes cwnd_prior, alpha becomes 1: Reno's one segment per RTT.
    while cc.cwnd < 11 * MSS:
        now = ack_round(cc, now, rtt)
    start = cc.cwnd / MSS
    for _ in range(10):
        now = ack_round(cc, now, rtt)
    assert cc.cwnd / MSS - start == pytest.approx(10, abs=1.0)
    assert cc.w_cubic(now) < cc.cwnd / MSS


def test_cubic_fast_convergence() -> None:
    cc = cubic_after_loss(100)
    cc.cwnd = 80 * MSS
    cc.on_congestion(80 * MSS, 10.0)  # loss below the previous W_max
    # RFC 9438 section 4.7: W_max = cwnd * (1 + beta_cubic) / 2
    assert cc.snapshot()["w_max"] == pytest.approx(80 * MSS * 0.85)
    plain = cubic_after_loss(100, fast_convergence=False)
    plain.cwnd = 80 * MSS
    plain.on_congestion(80 * MSS, 10.0)
    assert plain.snapshot()["w_max"] == pytest.approx(80 * MSS)


def test_cubic_timeout_restarts_with_k_zero() -> None:
    cc = Cubic(MSS)
    cc.cwnd = 100 * MSS
    cc.on_timeout(100 * MSS, 0.0)
    # RFC 9438 section 4.8: ssthresh as in 4.6, cwnd = 1 MSS as in RFC 5681.
    assert (cc.ssthresh, cc.cwnd) == (70 * MSS, MSS)
    now = 0.0
    while cc.cwnd < cc.ssthresh:  # slow start, one segment per ACK after an RTO
        cc.on_ack(2 * MSS, now, 0.1)
        now += 0.01
    assert cc.cwnd == 70 * MSS
    cc.on_ack(MSS, now, 0.1)  # first congestion avoidance ACK
    # Section 4.8: K = 0 and W_max = cwnd at the start of congestion avoidance.
    assert cc.k == 0.0
    assert cc.snapshot()["w_max"] == pytest.approx(70 * MSS)
    assert cc.snapshot()["w_est"] == pytest.approx(70 * MSS, abs=MSS)
    # From the plateau the window grows convexly: slowly at first.
    start = cc.cwnd
    now = ack_round(cc, now, 0.1)
    assert 0 <= cc.cwnd - start < MSS


def test_cubic_repeated_timeout_keeps_ssthresh() -> None:
    cc = Cubic(MSS)
    cc.cwnd = 100 * MSS
    cc.on_timeout(100 * MSS, 0.0)
    cc.on_timeout(MSS, 1.0)
    assert (cc.ssthresh, cc.cwnd) == (70 * MSS, MSS)


def test_cubic_snapshot_keys() -> None:
    snap = cubic_after_loss(100).snapshot()
    assert {"cwnd", "ssthresh", "w_max", "k"} <= snap.keys()
