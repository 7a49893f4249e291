"""NewReno congestion control: RFC 5681 with the RFC 6582 recovery exit.

The classic AIMD ("additive increase, multiplicative decrease") algorithm:

* **Slow start** (cwnd < ssthresh): cwnd grows by about one segment per
  segment acknowledged, so it doubles every round trip.
* **Congestion avoidance** (cwnd >= ssthresh): cwnd grows by one segment per
  round trip.
* **Loss** halves the window (``ssthresh = FlightSize / 2``); a timeout also
  restarts slow start from one segment.

Counting bytes, not ACKs (RFC 3465, "Appropriate Byte Counting")
-----------------------------------------------------------------
A receiver that delays ACKs (RFC 5681 section 4.2) sends one ACK per two
segments.  If cwnd grew per ACK, such a receiver would halve our growth.
We therefore grow by the number of bytes acknowledged:

* slow start: ``cwnd += min(acked, L)`` with ``L = 2*SMSS`` (RFC 3465
  section 2.3 allows L up to 2*SMSS, which keeps doubling per RTT with a
  delayed-ACK receiver; RFC 5681 section 3.1 itself uses L = 1*SMSS).  In
  the slow start that follows a timeout we use ``L = 1*SMSS`` as RFC 3465
  section 2.3 asks, since ACKs then may cover many segments at once.
* congestion avoidance: RFC 5681 section 3.1 gives the per-ACK rule
  ``cwnd += SMSS*SMSS/cwnd``.  We use the equivalent byte counter of
  RFC 3465 section 2.1: add acknowledged bytes to ``bytes_acked``; whenever
  it reaches cwnd, subtract cwnd and add one SMSS.  That is exactly one SMSS
  per window of data acknowledged (~1 SMSS per RTT) without the rounding
  loss of the integer division.
"""

from __future__ import annotations

from .base import INFINITE_SSTHRESH, ByteWindowMss, initial_window, recovery_exit_window


class NewReno(ByteWindowMss):
    """RFC 5681 / RFC 6582 congestion control, all sizes in bytes.

    >>> cc = NewReno(mss=1000)
    >>> cc.cwnd                     # RFC 6928 IW10
    10000
    >>> cc.on_congestion(flight_size=20000, now=0.0)
    >>> cc.ssthresh, cc.cwnd
    (10000, 10000)
    """

    name: str = "newreno"

    def __init__(self, mss: int) -> None:
        if mss <= 0:
            raise ValueError("mss must be positive")
        self._mss = mss
        self._fresh = True  # no ACK or loss seen yet
        self.cwnd = initial_window(mss)  # RFC 6928 section 2
        self.ssthresh = INFINITE_SSTHRESH  # RFC 5681 section 3.1
        self.bytes_acked = 0  # RFC 3465 section 2.1 counter for congestion avoidance
        self._after_timeout = False  # in the slow start that follows an RTO?
        self._rto_unacked = False  # an RTO fired and nothing was acked since

    def on_ack(self, acked: int, now: float, rtt: float | None) -> None:
        """Grow cwnd for ``acked`` newly acknowledged bytes (time is unused)."""
        if acked <= 0:
            return
        self._fresh = False
        self._rto_unacked = False
        if self.cwnd < self.ssthresh:
            # RFC 5681 section 3.1 slow start, byte counted with the RFC 3465
            # section 2.3 limit L.  We stop exactly at ssthresh so the next
            # ACK is handled by congestion avoidance.
            limit = self.mss if self._after_timeout else 2 * self.mss
            self.cwnd = min(self.cwnd + min(acked, limit), self.ssthresh)
            return
        # RFC 5681 section 3.1 congestion avoidance, counted as in RFC 3465
        # section 2.1: one SMSS for every cwnd bytes acknowledged.
        self._after_timeout = False
        self.bytes_acked += acked
        if self.bytes_acked >= self.cwnd:
            self.bytes_acked -= self.cwnd
            self.cwnd += self.mss

    def _reduce_ssthresh(self, flight_size: int) -> None:
        self._fresh = False
        # RFC 5681 section 3.1, equation (4): ssthresh = max(FlightSize / 2, 2*SMSS).
        self.ssthresh = max(flight_size // 2, 2 * self.mss)
        self.bytes_acked = 0

    def on_congestion(self, flight_size: int, now: float) -> None:
        """Fast retransmit (RFC 5681 section 3.2 step 2; RFC 6582 section 3.2 step 2).

        The RFCs then set ``cwnd = ssthresh + 3*SMSS`` to account for the
        three segments that left the network; per the tcplab contract that
        inflation, and the +1 SMSS per further duplicate ACK, is done by the
        connection, so here ``cwnd = ssthresh``.
        """
        self._reduce_ssthresh(flight_size)
        self.cwnd = self.ssthresh
        self._after_timeout = False
        self._rto_unacked = False

    def on_timeout(self, flight_size: int, now: float) -> None:
        """Retransmission timeout: RFC 5681 section 3.1, equation (4) and the loss window.

        RFC 5681 section 3.1 reduces ssthresh only the first time a segment
        times out: if the timer fires again before anything new is
        acknowledged (the same segment timed out again), only cwnd is reset.
        """
        if not self._rto_unacked:
            self._reduce_ssthresh(flight_size)
        self.cwnd = self.mss  # RFC 5681 section 3.1: loss window LW = 1 SMSS
        self._after_timeout = True
        self._rto_unacked = True

    def on_recovery_exit(self, flight_size: int, now: float) -> None:
        """Full ACK: deflate the window (RFC 6582 section 3.2 step 3, option 1)."""
        self._fresh = False
        self.cwnd = recovery_exit_window(self.ssthresh, flight_size, self.mss)
        self.bytes_acked = 0

    def snapshot(self) -> dict[str, float]:
        """``cwnd`` and ``ssthresh`` in bytes, for event logs."""
        return {"cwnd": float(self.cwnd), "ssthresh": float(self.ssthresh)}
