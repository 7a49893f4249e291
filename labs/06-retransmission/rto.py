"""Lab 06: the retransmission timeout (RTO) estimator of RFC 6298.

    python3 -m stack.labkit test 06 --impl rto.py          # step-by-step tests
    python3 -m stack.labkit stack --swap rto=rto.py        # the stack, with yours

The connection creates one estimator per connection and
* calls ``sample(rtt)`` with a measured round-trip time (seconds) -- never for a
  retransmitted segment (Karn's rule, RFC 6298 section 3: the connection's job);
* calls ``backoff()`` when the retransmission timer expired (section 5.5);
* reads ``rto`` whenever it (re)starts the timer, and ``srtt``/``rttvar`` for
  `tcplab ss` and the event log.
Nothing here reads a clock.

RFC 6298, sections 2 and 5, in the names used here:
    first sample R:   SRTT = R;  RTTVAR = R/2
    later samples R:  RTTVAR = (1 - 1/4) * RTTVAR + 1/4 * |SRTT - R|   (with the old SRTT)
                      SRTT   = (1 - 1/8) * SRTT   + 1/8 * R
    then:             RTO = SRTT + max(G, 4 * RTTVAR), clamped to [min_rto, max_rto]
    before any sample RTO = initial_rto (1 s), clamped the same way
    backoff():        RTO = min(2 * RTO, max_rto); a new sample computes RTO afresh
"""

from __future__ import annotations


class RTOEstimator:
    def __init__(self, min_rto: float = 0.2, max_rto: float = 60.0, initial_rto: float = 1.0,
                 granularity: float = 0.001) -> None:
        """``min_rto``: RFC 6298 2.4 says 1 s; the stack (like Linux) uses 0.2 s.
        ``granularity`` is the clock granularity G."""
        self.srtt: float | None = None  # smoothed RTT, None until the first sample
        self.rttvar: float | None = None  # RTT variation, None until the first sample
        raise NotImplementedError  # keep what you need from the arguments, then remove

    @property
    def rto(self) -> float:
        """The timeout for the next (re)transmission, in seconds."""
        raise NotImplementedError

    def sample(self, rtt: float) -> None:
        """One round-trip measurement, in seconds."""
        raise NotImplementedError

    def backoff(self) -> None:
        """The timer expired: double RTO (capped at max_rto)."""
        raise NotImplementedError
