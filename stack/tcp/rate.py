"""Delivery rate estimation for one TCP sender, sans-IO.

How fast is the path delivering our data? Not the rate we send at, but the rate at
which the receiver's ACKs (cumulative or SACK) say data arrived. The method is the one
of draft-cheng-iccrg-delivery-rate-estimation-02 (the estimator BBR is built on, and
Linux's tcp_rate.c): every transmission records a snapshot of the connection's
delivery counters (`TxRecord`); when that segment is delivered, the bytes delivered
since the snapshot, divided by the time they took, is one *rate sample*.

The time is the longer of two intervals (section 3.3 of the draft), so that neither
ACK compression (the ACKs arrive in a burst) nor a send burst inflates the rate:

* ``send_elapsed``: from the first transmission of the sampled flight to the
  transmission of the segment just delivered;
* ``ack_elapsed``: from the delivery that preceded the snapshot to now.

A sample taken while the application had nothing to send (*application-limited*,
section 3.4) shows the application's rate, not the path's: it is marked so that a
model of the path (BBR's maximum filter) uses it only when it raises the estimate.

This module keeps counters and no segments: the per-segment `TxRecord` travels with
the segment's record in RACK's scoreboard (stack/tcp/rack.py), and the sender's
recovery (stack/tcp/recovery.py) calls `on_send` and `on_delivered` around RACK's own
processing. Times are seconds on the caller's clock; sizes are bytes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TxRecord:
    """What a transmission remembers (the draft's per-packet state, section 3.2):
    the connection's counters when the segment was sent."""

    delivered: int  # P.delivered: C.delivered at send time
    delivered_time: float  # P.delivered_time
    first_sent_time: float  # P.first_sent_time
    app_limited: bool  # P.is_app_limited


@dataclass(slots=True)
class RateSample:
    """One rate sample (the draft's ``rs``, section 3.3), with the ACK's news that a
    model-based congestion controller needs beside it."""

    delivery_rate: float  # bytes per second (0.0 when the ACK gave no valid sample)
    delivered: int  # rs.delivered: bytes delivered over the interval
    interval: float  # rs.interval, seconds
    prior_delivered: int  # rs.prior_delivered: C.delivered when that flight left
    app_limited: bool  # rs.is_app_limited
    rtt: float | None  # RTT of the newest never-retransmitted segment delivered
    newly_delivered: int  # bytes this ACK delivered (cumulatively or by SACK)
    newly_lost: int  # bytes this ACK made RACK mark lost
    in_flight: int  # bytes in flight after the ACK (sent, neither delivered nor lost)
    total_delivered: int  # C.delivered after the ACK
    in_recovery: bool  # the sender is in fast or RTO recovery after the ACK


class DeliveryRate:
    """The connection's delivery counters (the draft's section 3.1 ``C.*``)."""

    def __init__(self) -> None:
        self.delivered = 0  # C.delivered: bytes delivered so far
        self.delivered_time = 0.0  # C.delivered_time: when C.delivered last grew
        self.first_sent_time = 0.0  # C.first_sent_time: send time of the flight's start
        # C.app_limited: 0, or C.delivered + in-flight when the application left the
        # pipe unfilled; samples until that much is delivered are app-limited.
        self.app_limited_until = 0
        # The sample being built from one ACK (section 3.3 UpdateRateSample).
        self._prior: TxRecord | None = None
        self._sent_time = 0.0
        self._rtt: float | None = None

    def on_send(self, now: float, in_flight: int) -> TxRecord:
        """Section 3.2 ``SendPacket``: a segment leaves with ``in_flight`` bytes already
        in the network. Restarting from an empty pipe restarts both intervals."""
        if in_flight == 0:
            self.first_sent_time = self.delivered_time = now
        return TxRecord(self.delivered, self.delivered_time, self.first_sent_time,
                        self.app_limited_until != 0)

    def mark_app_limited(self, in_flight: int) -> None:
        """Section 3.4: the sender has no more data to send and the window is not
        full. Samples are app-limited until what is in flight now is delivered."""
        self.app_limited_until = max(self.delivered + in_flight, 1)

    def on_delivered(self, tx: TxRecord | None, length: int, sent_time: float, now: float,
                     retransmitted: bool) -> None:
        """Section 3.3 ``UpdateRateSample`` for one segment this ACK delivered: count
        it, and sample the flight of the most recently sent segment delivered (the
        largest ``P.delivered``)."""
        if tx is None:
            return
        self.delivered += length
        self.delivered_time = now
        prior = self._prior
        if prior is None or tx.delivered > prior.delivered or (
                tx.delivered == prior.delivered and sent_time > self._sent_time):
            self._prior = tx
            self._sent_time = sent_time
            self.first_sent_time = sent_time  # the next flight starts here
            self._rtt = None if retransmitted else now - sent_time

    def take_sample(self, now: float, min_rtt: float | None, *, newly_delivered: int,
                    newly_lost: int, in_flight: int, in_recovery: bool) -> RateSample:
        """Section 3.3 ``GenerateRateSample`` once the ACK's segments are counted. The
        rate is 0.0 when the ACK delivered nothing that was sampled, or when the
        interval is implausibly short (below the minimum RTT: the draft discards such
        samples, which ACK compression or a stretched ACK would otherwise make)."""
        if self.app_limited_until and self.delivered > self.app_limited_until:
            self.app_limited_until = 0
        prior = self._prior
        self._prior = None
        rate, delivered, interval = 0.0, 0, 0.0
        prior_delivered, app_limited, rtt = self.delivered, False, None
        if prior is not None:
            rtt = self._rtt
            interval = max(self._sent_time - prior.first_sent_time,  # send_elapsed
                           self.delivered_time - prior.delivered_time)  # ack_elapsed
            delivered = self.delivered - prior.delivered
            prior_delivered, app_limited = prior.delivered, prior.app_limited
            if interval > 0 and (min_rtt is None or interval >= min_rtt):
                rate = delivered / interval
        return RateSample(rate, delivered, interval, prior_delivered, app_limited, rtt,
                          newly_delivered, newly_lost, in_flight, self.delivered, in_recovery)
