"""Tests for the RFC 6298 RTO estimator (stack/tcp/rto.py).

The samples are chosen so every intermediate value is a short binary
fraction, which makes the hand computations below exact in floating point.
"""

from __future__ import annotations

import pytest

from stack.tcp.rto import RTOEstimator


def test_initial_state() -> None:
    est = RTOEstimator()
    assert est.rto == 1.0  # RFC 6298 section 2.1
    assert est.srtt is None
    assert est.rttvar is None


def test_sequence_of_samples_computed_by_hand() -> None:
    est = RTOEstimator(min_rto=0.2, granularity=0.001)

    # First sample R = 1.0: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4*RTTVAR.
    est.sample(1.0)
    assert (est.srtt, est.rttvar, est.rto) == (1.0, 0.5, 3.0)

    # R = 0.5: RTTVAR = 3/4*0.5 + 1/4*|1.0 - 0.5| = 0.5
    #          SRTT   = 7/8*1.0 + 1/8*0.5       = 0.9375
    #          RTO    = 0.9375 + 4*0.5          = 2.9375
    est.sample(0.5)
    assert (est.srtt, est.rttvar, est.rto) == (0.9375, 0.5, 2.9375)

    # R = 2.0: RTTVAR = 3/4*0.5 + 1/4*|0.9375 - 2.0| = 0.375 + 0.265625 = 0.640625
    #          SRTT   = 7/8*0.9375 + 1/8*2.0         = 0.8203125 + 0.25 = 1.0703125
    #          RTO    = 1.0703125 + 4*0.640625       = 3.6328125
    est.sample(2.0)
    assert (est.srtt, est.rttvar, est.rto) == (1.0703125, 0.640625, 3.6328125)


def test_granularity_term_when_variance_vanishes() -> None:
    # Identical samples shrink RTTVAR geometrically; K*RTTVAR eventually
    # drops below G and the G term of max(G, K*RTTVAR) takes over.
    est = RTOEstimator(min_rto=0.001, granularity=0.5)
    for _ in range(40):
        est.sample(1.0)
    assert est.srtt == 1.0
    assert est.rttvar is not None and 4 * est.rttvar < 0.5
    assert est.rto == 1.5


def test_min_rto_clamp() -> None:
    est = RTOEstimator(min_rto=0.2)
    est.sample(0.01)  # 0.01 + 4*0.005 = 0.03 -> clamped up to 0.2
    assert est.rto == 0.2
    rfc = RTOEstimator(min_rto=1.0)  # RFC 6298 section 2.4's conservative floor
    rfc.sample(0.01)
    assert rfc.rto == 1.0


def test_max_rto_clamp() -> None:
    est = RTOEstimator(max_rto=60.0)
    est.sample(100.0)  # 100 + 4*50 = 300 -> clamped down to 60
    assert est.rto == 60.0


def test_initial_rto_is_clamped() -> None:
    assert RTOEstimator(min_rto=2.0, initial_rto=1.0).rto == 2.0


def test_backoff_doubles_and_caps() -> None:
    est = RTOEstimator(max_rto=10.0)
    est.sample(0.5)  # 0.5 + 4*0.25 = 1.5
    assert est.rto == 1.5
    est.backoff()
    assert est.rto == 3.0
    est.backoff()
    assert est.rto == 6.0
    est.backoff()
    assert est.rto == 10.0  # capped at max_rto
    est.backoff()
    assert est.rto == 10.0


def test_backoff_before_any_sample() -> None:
    est = RTOEstimator()
    est.backoff()
    est.backoff()
    assert est.rto == 4.0  # 1 s initial RTO doubled twice (RFC 6298 section 5.5)


def test_new_sample_after_backoff_recomputes_from_srtt() -> None:
    est = RTOEstimator()
    est.sample(1.0)
    est.backoff()
    est.backoff()
    assert est.rto == 12.0
    # R = 1.0: RTTVAR = 3/4*0.5 + 0 = 0.375, SRTT = 1.0, RTO = 1 + 1.5 = 2.5
    est.sample(1.0)
    assert (est.srtt, est.rttvar, est.rto) == (1.0, 0.375, 2.5)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        RTOEstimator(min_rto=0.0)
    with pytest.raises(ValueError):
        RTOEstimator(min_rto=5.0, max_rto=1.0)
    with pytest.raises(ValueError):
        RTOEstimator().sample(-0.1)


def test_clear_backoff_returns_to_the_computed_rto() -> None:
    """RFC 6298 section 5 (note after 5.7): a backoff lasts until the next valid
    sample; `clear_backoff` ends it without one (an ACK of new data, as Linux), back to
    SRTT + max(G, 4 * RTTVAR)."""
    est = RTOEstimator()
    est.sample(1.0)  # RTO 3 s
    est.backoff()
    est.backoff()
    assert est.rto == 12.0 and est.backed_off
    est.clear_backoff()
    assert est.rto == 3.0 and not est.backed_off


def test_clear_backoff_before_any_sample_keeps_the_initial_rto() -> None:
    """RFC 6298 section 2.1 / 5.7: without a sample there is nothing to compute RTO
    from: the (backed-off) value stays."""
    est = RTOEstimator()
    est.backoff()
    est.clear_backoff()
    assert est.rto == 2.0 and not est.backed_off
