"""Retransmission timeout (RTO) estimation, RFC 6298.

A sender that sees no acknowledgment within RTO seconds retransmits.  RTO
must adapt to the path: too short and we resend data that was merely slow,
too long and a loss stalls the connection.  RFC 6298 keeps two smoothed
statistics of the measured round-trip times ``R``:

* SRTT, the smoothed RTT (an exponentially weighted moving average), and
* RTTVAR, the smoothed mean deviation of the samples from SRTT,

and sets ``RTO = SRTT + max(G, K * RTTVAR)``, i.e. "the mean plus about four
deviations", so that a timeout almost always means a real loss.

What this class does *not* do (the connection's job):

* Karn's algorithm (RFC 6298 section 3): never take a sample from a segment
  that was retransmitted, because the ACK is ambiguous.
* Running the timer itself (RFC 6298 section 5); nothing here reads a clock.
* RFC 6298 section 5.7: if the SYN timed out, use an RTO of 3 s once data
  transfer starts (the connection can build a new estimator for that).
"""

from __future__ import annotations

# RFC 6298 section 2.3: the gains of the two moving averages.
ALPHA: float = 1 / 8
BETA: float = 1 / 4
# RFC 6298 section 2: the deviation multiplier.
K: int = 4


class RTOEstimator:
    """Tracks SRTT/RTTVAR and the current (possibly backed-off) RTO, in seconds.

    ``min_rto`` defaults to 0.2 s, as in Linux (``TCP_RTO_MIN``).  RFC 6298
    section 2.4 says RTO "SHOULD be rounded up to 1 second"; that rule dates
    from coarse timers, and a 1 s floor makes losses on a fast local TUN link
    very slow to repair.  Pass ``min_rto=1.0`` for the RFC's conservative
    value.  ``max_rto`` is the upper bound RFC 6298 section 2.5 allows
    ("at least 60 seconds").  ``granularity`` is the clock granularity G.

    >>> est = RTOEstimator()
    >>> est.rto                # RFC 6298 section 2.1: 1 s before any sample
    1.0
    >>> est.sample(0.1)
    >>> est.srtt, est.rttvar, round(est.rto, 3)
    (0.1, 0.05, 0.3)
    """

    def __init__(
        self,
        min_rto: float = 0.2,
        max_rto: float = 60.0,
        initial_rto: float = 1.0,
        granularity: float = 0.001,
    ) -> None:
        if not 0 < min_rto <= max_rto:
            raise ValueError("need 0 < min_rto <= max_rto")
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.granularity = granularity
        self.srtt: float | None = None
        """Smoothed RTT in seconds; None until the first sample."""
        self.rttvar: float | None = None
        """Smoothed RTT deviation in seconds; None until the first sample."""
        # RFC 6298 section 2.1: before any measurement RTO is 1 second.
        self._rto = self._clamp(initial_rto)

    @property
    def rto(self) -> float:
        """The timeout to use for the next (re)transmission, in seconds."""
        return self._rto

    def _clamp(self, rto: float) -> float:
        # RFC 6298 section 2.4 (lower bound, configurable here) and 2.5 (upper).
        return min(max(rto, self.min_rto), self.max_rto)

    def sample(self, rtt: float) -> None:
        """Feed one round-trip measurement ``rtt`` (seconds) and update RTO.

        A new sample also ends any exponential backoff: RTO is recomputed
        from SRTT and RTTVAR (RFC 6298 section 5, note after step 5.7).
        """
        if rtt < 0:
            raise ValueError("an RTT sample cannot be negative")
        if self.srtt is None or self.rttvar is None:
            # RFC 6298 section 2.2: the first measurement R.
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            # RFC 6298 section 2.3: RTTVAR is updated first, with the *old* SRTT.
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - rtt)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * rtt
        # RFC 6298 sections 2.2/2.3: RTO = SRTT + max(G, K*RTTVAR), then 2.4/2.5.
        self._rto = self._computed()

    @property
    def backed_off(self) -> bool:
        """Whether `backoff` has raised RTO above what SRTT and RTTVAR give."""
        return self.srtt is not None and self.rttvar is not None and self._rto > self._computed()

    def _computed(self) -> float:
        assert self.srtt is not None and self.rttvar is not None
        return self._clamp(self.srtt + max(self.granularity, K * self.rttvar))

    def clear_backoff(self) -> None:
        """Undo the exponential backoff: RTO from SRTT and RTTVAR again.

        RFC 6298 section 5 (the note after 5.7) ends a backoff with the next valid RTT
        sample. When the ACKs that arrive give none (Karn's rule, no timestamps), a
        connection whose peer is clearly answering would otherwise keep the doubled
        RTO; Linux resets its backoff on every ACK that acknowledges new data
        (icsk_backoff = 0 in tcp_ack). Without any sample the initial RTO stays.
        """
        if self.srtt is not None and self.rttvar is not None:
            self._rto = self._computed()

    def restart(self, rto: float) -> None:
        """Start over from `rto`, as before any measurement (RFC 6298 5.7)."""
        self._rto = self._clamp(rto)

    def backoff(self) -> None:
        """Double RTO after a retransmission timeout (RFC 6298 section 5.5).

        The result is capped at ``max_rto`` (section 5.5 allows a maximum
        value, which must be at least 60 s per section 2.5).
        """
        self._rto = min(self._rto * 2, self.max_rto)
