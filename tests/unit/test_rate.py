"""Delivery rate estimation (draft-cheng-iccrg-delivery-rate-estimation-02), the
samples BBR's model is built from: stack/tcp/rate.py, with a fake clock."""

from __future__ import annotations

import pytest

from stack.tcp.rate import DeliveryRate, RateSample


def sample(rate: DeliveryRate, now: float, min_rtt: float | None = None) -> RateSample:
    return rate.take_sample(now, min_rtt, newly_delivered=0, newly_lost=0, in_flight=0,
                            in_recovery=False)


def test_a_flight_delivered_after_one_rtt_gives_its_size_per_rtt() -> None:
    """Section 3.2/3.3: two segments sent at once from an empty pipe, both delivered
    0.1 s later: 2000 bytes over max(send_elapsed 0, ack_elapsed 0.1)."""
    r = DeliveryRate()
    a = r.on_send(0.0, in_flight=0)
    b = r.on_send(0.0, in_flight=1000)
    r.on_delivered(a, 1000, 0.0, 0.1, retransmitted=False)
    r.on_delivered(b, 1000, 0.0, 0.1, retransmitted=False)
    rs = sample(r, 0.1)
    assert rs.delivered == 2000
    assert rs.interval == pytest.approx(0.1)
    assert rs.delivery_rate == pytest.approx(20000.0)
    assert rs.rtt == pytest.approx(0.1)
    assert rs.total_delivered == 2000


def test_the_longer_of_send_and_ack_intervals_bounds_the_rate() -> None:
    """Section 3.3: rs.interval = max(send_elapsed, ack_elapsed): a flight sent over
    0.2 s whose ACKs arrive compressed must not read as a faster path."""
    r = DeliveryRate()
    first = r.on_send(0.0, in_flight=0)
    r.on_delivered(first, 1000, 0.0, 0.1, retransmitted=False)
    sample(r, 0.1)
    txs = [(r.on_send(0.1 + i * 0.05, in_flight=i * 1000), 0.1 + i * 0.05) for i in range(5)]
    for tx, sent in txs:
        r.on_delivered(tx, 1000, sent, 0.31, retransmitted=False)  # one stretched ACK
    rs = sample(r, 0.31)
    assert rs.delivered == 5000
    assert rs.interval == pytest.approx(0.21)  # ack_elapsed 0.31 - 0.1 > send_elapsed 0.2
    assert rs.delivery_rate == pytest.approx(5000 / 0.21)


def test_an_interval_shorter_than_min_rtt_is_no_rate() -> None:
    """Section 3.3: "discard" a sample whose interval is below the minimum RTT."""
    r = DeliveryRate()
    tx = r.on_send(0.0, in_flight=0)
    r.on_delivered(tx, 1000, 0.0, 0.01, retransmitted=False)
    rs = sample(r, 0.01, min_rtt=0.1)
    assert rs.delivery_rate == 0.0
    assert rs.delivered == 1000


def test_app_limited_until_what_was_in_flight_is_delivered() -> None:
    """Section 3.4: once the application leaves the window unfilled, samples of data
    sent before C.delivered passes the mark are app-limited; later ones are not."""
    r = DeliveryRate()
    r.mark_app_limited(in_flight=1000)
    a = r.on_send(0.0, in_flight=0)
    r.on_delivered(a, 1000, 0.0, 0.1, retransmitted=False)
    assert sample(r, 0.1).app_limited is True
    b = r.on_send(0.1, in_flight=0)  # sent when C.delivered (1000) had not passed the mark
    c = r.on_send(0.1, in_flight=1000)
    r.on_delivered(b, 1000, 0.1, 0.2, retransmitted=False)
    r.on_delivered(c, 1000, 0.1, 0.2, retransmitted=False)
    assert sample(r, 0.2).app_limited is True
    d = r.on_send(0.2, in_flight=0)  # C.delivered 3000 > 1000: the mark is gone
    r.on_delivered(d, 1000, 0.2, 0.3, retransmitted=False)
    assert sample(r, 0.3).app_limited is False


def test_a_retransmission_gives_a_rate_but_no_rtt() -> None:
    """Section 3.3 samples retransmitted data too (its snapshot is the retransmission's);
    the RTT of an ambiguous copy is not one (RFC 6298 section 3, Karn)."""
    r = DeliveryRate()
    tx = r.on_send(0.5, in_flight=0)
    r.on_delivered(tx, 1000, 0.5, 0.6, retransmitted=True)
    rs = sample(r, 0.6)
    assert rs.delivery_rate == pytest.approx(10000.0)
    assert rs.rtt is None


def test_an_ack_that_delivered_nothing_sampled_has_no_rate() -> None:
    r = DeliveryRate()
    rs = sample(r, 1.0)
    assert (rs.delivery_rate, rs.delivered, rs.rtt) == (0.0, 0, None)
