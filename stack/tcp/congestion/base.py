"""The interface every congestion control algorithm implements.

Congestion control decides how much unacknowledged data the sender may have
in the network: the congestion window ``cwnd`` (RFC 5681 section 2).  The
connection sends at most ``min(cwnd, peer's receive window)`` bytes beyond
SND.UNA, and tells the algorithm what happened through four events:

==================  =========================================================
``on_ack``          new data was acknowledged outside loss recovery: grow
``on_congestion``   loss detected by 3 duplicate ACKs or SACK: shrink, enter
                    fast recovery (the connection does the recovery itself)
``on_timeout``      the retransmission timer expired: collapse to 1 segment
``on_recovery_exit`` the ACK that ends fast recovery arrived: deflate cwnd
==================  =========================================================

All sizes are in bytes; ``mss`` is the sender maximum segment size (SMSS).
Algorithms do no I/O and read no clock: time arrives in ``now`` arguments.

To write your own algorithm, make a class with these attributes and methods
(no need to inherit from anything: this is a ``typing.Protocol``, checked
structurally) and register it in ``congestion/__init__.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from stack.tcp.rate import RateSample

INFINITE_SSTHRESH: int = 2**31
"""RFC 5681 section 3.1: the initial ssthresh "MAY be arbitrarily high"."""


def initial_window(mss: int) -> int:
    """Initial congestion window in bytes.

    RFC 6928 section 2 (which updates RFC 5681 section 3.1):
    ``IW = min(10*MSS, max(2*MSS, 14600))``, i.e. ten full segments for an
    Ethernet-sized MSS of 1460.  We use this rather than RFC 5681's smaller
    2-4 segment window, as Linux does.
    """
    return min(10 * mss, max(2 * mss, 14600))


def recovery_exit_window(ssthresh: int, flight_size: int, mss: int) -> int:
    """cwnd after a full ACK ends fast recovery.

    RFC 6582 section 3.2 step 3 offers two choices: (2) ``cwnd = ssthresh``
    or (1) ``min(ssthresh, max(FlightSize, SMSS) + SMSS)``.  We use option (1):
    if little data is in flight when recovery ends, option (2) would let the
    sender burst a whole ssthresh worth of segments at once.
    """
    return min(ssthresh, max(flight_size, mss) + mss)


class ByteWindowMss:
    """The ``mss`` attribute of an algorithm that keeps its window in bytes (NewReno,
    BBR): the connection may change the SMSS (the handshake settles it, RFC 9293
    section 3.7.1; path MTU discovery may lower it). Until the first ACK or loss
    (``_fresh``) the initial window follows it, RFC 6928 defining it in segments;
    after that cwnd keeps its size in bytes."""

    _mss: int
    _fresh: bool
    cwnd: int

    @property
    def mss(self) -> int:
        """Sender maximum segment size (SMSS) in bytes."""
        return self._mss

    @mss.setter
    def mss(self, value: int) -> None:
        if value <= 0:
            raise ValueError("mss must be positive")
        if self._fresh:
            self.cwnd = initial_window(value)
        self._mss = value


class CongestionControl(Protocol):
    """Structural type of a congestion control algorithm.

    ``cwnd`` and ``ssthresh`` are in bytes and may be read at any time.
    The connection may also *write* ``cwnd`` during fast recovery (e.g. to
    inflate it by one SMSS per duplicate ACK, RFC 6582 section 3.2 step 4);
    ``on_recovery_exit`` deflates it again.  It may assign ``mss`` too, once
    the handshake has settled the SMSS or when path MTU discovery lowers it;
    before the first ACK that recomputes the initial window.
    """

    name: str
    cwnd: int
    ssthresh: int
    mss: int

    def on_ack(self, acked: int, now: float, rtt: float | None) -> None:
        """``acked`` bytes of new data were acknowledged (outside recovery).

        ``now`` is the current time in seconds; ``rtt`` the smoothed RTT in
        seconds if known (CUBIC uses it, Reno ignores it).
        """
        ...

    def on_congestion(self, flight_size: int, now: float) -> None:
        """Loss detected by duplicate ACKs or SACK (entering fast recovery).

        Sets ssthresh and sets cwnd to ssthresh; ``flight_size`` is the
        number of bytes outstanding (SND.NXT - SND.UNA) at that moment.
        """
        ...

    def on_timeout(self, flight_size: int, now: float) -> None:
        """The retransmission timer expired: ssthresh as above, cwnd = 1 MSS."""
        ...

    def on_recovery_exit(self, flight_size: int, now: float) -> None:
        """A full ACK ended fast recovery; ``flight_size`` is measured after it."""
        ...

    def snapshot(self) -> dict[str, float]:
        """Current state for event logs and plots, e.g. ``{"cwnd": ..., "ssthresh": ...}``."""
        ...


@runtime_checkable
class RateDriven(Protocol):
    """An algorithm that models the path from delivery-rate samples (BBR): besides
    the four calls above it gets one sample per ACK that delivered data or marked a
    loss, with SACK (stack/tcp/rate.py, draft-cheng-iccrg-delivery-rate-estimation).
    It sets its own window during recovery too (as a Linux ``cong_control`` module
    does), so Proportional Rate Reduction (RFC 6937) does not write ``cwnd`` for it."""

    def on_rate_sample(self, rs: RateSample, now: float) -> None:
        ...
