"""CUBIC congestion control, RFC 9438.

Reno grows its window by one segment per round trip, which takes minutes to
fill a fast long-distance path.  CUBIC instead makes the window a *cubic
function of the time since the last loss* (RFC 9438 section 4.2)::

    W_cubic(t) = C * (t - K)**3 + W_max

``W_max`` is the window just before the last reduction and ``K`` is the
time at which the curve climbs back to it.  After a loss the window first
grows fast, flattens out as it nears ``W_max`` (the *concave* region, where
the last loss happened), then, if no loss occurs there, grows faster and
faster again to probe for more bandwidth (the *convex* region).  Because the
curve depends on time rather than on ACKs, flows with different RTTs grow
at the same rate.

On paths with small RTTs Reno would actually be faster; there CUBIC uses
its *Reno-friendly* estimate ``W_est`` instead (section 4.3), so it is never
worse than Reno.

Units: like the RFC, this module computes in *segments* as floats
(``_cwnd``, ``w_max``, ``w_est``); the public ``cwnd`` and ``ssthresh`` are
in bytes as for every algorithm in this package.  Time is in seconds and
comes from the ``now`` arguments.

Simplifications (documented, not hidden):

* RFC 9438 section 4.2 says ``t`` must not include application-limited
  periods; this module has no way to know about them.
* Slow start (section 4.10) is the standard RFC 5681 one (no HyStart++),
  byte counted like ``newreno.py``.
* Fast recovery itself is done by the connection (RFC 6582/6675), as the
  RFC says in section 4.2; recovery exit uses the same deflation as NewReno.
"""

from __future__ import annotations

import math

from .base import INFINITE_SSTHRESH, initial_window, recovery_exit_window

C: float = 0.4
"""RFC 9438 section 4.1.1: the scaling constant of the cubic function, segments/s**3."""

BETA_CUBIC: float = 0.7
"""RFC 9438 section 4.1.1: multiplicative decrease factor (Reno's is 0.5)."""

ALPHA_CUBIC: float = 3 * (1 - BETA_CUBIC) / (1 + BETA_CUBIC)
"""RFC 9438 section 4.3: additive increase (segments per RTT) of W_est, ~0.53.

With this alpha, AIMD(alpha, 0.7) has the same average window as Reno's
AIMD(1, 0.5) under the same loss rate."""


class Cubic:
    """RFC 9438 CUBIC.  Public sizes in bytes, internal state in segments.

    >>> cc = Cubic(mss=1000)
    >>> cc.cwnd = 100_000                     # pretend we grew to 100 segments
    >>> cc.on_congestion(flight_size=100_000, now=10.0)
    >>> cc.cwnd, cc.ssthresh                  # multiplied by beta_cubic = 0.7
    (70000, 70000)
    >>> cc.on_ack(1000, now=10.0, rtt=0.1)    # first ACK starts the epoch
    >>> round(cc.k, 3)                        # K = cbrt((100 - 70) / 0.4)
    4.217
    """

    name: str = "cubic"

    def __init__(self, mss: int, fast_convergence: bool = True) -> None:
        if mss <= 0:
            raise ValueError("mss must be positive")
        self._mss = mss
        self._fresh = True  # no ACK or loss seen yet
        self.fast_convergence = fast_convergence
        """RFC 9438 section 4.7; the RFC says to disable it for a lone flow."""
        self._cwnd: float = initial_window(mss) / mss  # segments; RFC 6928 IW
        self.ssthresh: int = INFINITE_SSTHRESH  # bytes; RFC 5681 section 3.1
        # RFC 9438 section 4.1.2 "Variables of Interest" (sizes in segments):
        self.w_max: float = 0.0  # cwnd just before the last reduction
        self.k: float = 0.0  # seconds from epoch start until W_cubic reaches w_max
        self.w_est: float = 0.0  # Reno-friendly window estimate
        self.cwnd_prior: float = 0.0  # cwnd when ssthresh was last set
        self.cwnd_epoch: float = 0.0  # cwnd at the start of congestion avoidance
        self.epoch_start: float | None = None  # t_epoch; None = not in an epoch yet
        self._alpha: float = ALPHA_CUBIC
        self._rtt: float = 0.0  # latest smoothed RTT we were given
        self._after_timeout = False  # section 4.8 applies to the next epoch
        self._rto_unacked = False  # an RTO fired and nothing was acked since

    # -- the byte-based view required by the CongestionControl protocol --

    @property
    def mss(self) -> int:
        """Sender maximum segment size (SMSS) in bytes.

        The connection may change it: the handshake settles it (RFC 9293
        section 3.7.1) and path MTU discovery may lower it later.  Until the
        first ACK or loss the initial window is recomputed for the new SMSS
        (RFC 6928); after that every window keeps its size in *bytes*, so
        the segment counts are rescaled.
        """
        return self._mss

    @mss.setter
    def mss(self, value: int) -> None:
        if value <= 0:
            raise ValueError("mss must be positive")
        if self._fresh:
            self._cwnd = initial_window(value) / value
        else:
            scale = self._mss / value
            self._cwnd *= scale
            self.w_max *= scale
            self.w_est *= scale
            self.cwnd_prior *= scale
            self.cwnd_epoch *= scale
        self._mss = value

    @property
    def cwnd(self) -> int:
        """Congestion window in bytes (rounded to the nearest byte)."""
        return round(self._cwnd * self.mss)

    @cwnd.setter
    def cwnd(self, value: int) -> None:
        # The connection may inflate cwnd during fast recovery.
        self._cwnd = value / self.mss

    def w_cubic(self, t: float) -> float:
        """RFC 9438 section 4.2: the cubic window (segments) at epoch time t."""
        return C * (t - self.k) ** 3 + self.w_max

    # -- events --

    def on_ack(self, acked: int, now: float, rtt: float | None) -> None:
        """Grow cwnd for ``acked`` new bytes; ``rtt`` should be the smoothed RTT."""
        if acked <= 0:
            return
        self._fresh = False
        self._rto_unacked = False
        if rtt is not None:
            self._rtt = rtt
        segments_acked = acked / self.mss  # RFC 9438 section 4.1.2, may be fractional

        if self._cwnd < self.ssthresh / self.mss:  # compared in segments, like the cap below
            # RFC 9438 section 4.10: standard slow start (RFC 5681 section 3.1),
            # byte counted with RFC 3465 section 2.3's limit L (1 SMSS after an RTO).
            limit = 1.0 if self._after_timeout else 2.0
            self._cwnd = min(self._cwnd + min(segments_acked, limit), self.ssthresh / self.mss)
            return

        if self.epoch_start is None:
            self._start_epoch(now)
        assert self.epoch_start is not None
        t = now - self.epoch_start

        # RFC 9438 section 4.3: the Reno-friendly estimate grows by
        # alpha segments per RTT (per cwnd of acknowledged segments).
        self.w_est += self._alpha * segments_acked / self._cwnd
        if self.w_est >= self.cwnd_prior:
            # Section 4.3: once W_est reaches cwnd_prior, grow exactly like Reno.
            self._alpha = 1.0

        if self.w_cubic(t) < self.w_est:
            # Section 4.3: Reno-friendly region, cwnd follows W_est (never shrinking).
            self._cwnd = max(self._cwnd, self.w_est)
        else:
            # Sections 4.4 (concave, cwnd < W_max) and 4.5 (convex, cwnd >= W_max):
            # aim for where the curve will be one RTT from now (section 4.2),
            # bounded to [cwnd, 1.5*cwnd] so growth never beats slow start.
            target = min(max(self.w_cubic(t + self._rtt), self._cwnd), 1.5 * self._cwnd)
            # (target - cwnd) / cwnd per ACK of one segment; scaling by
            # segments_acked keeps delayed ACKs from slowing growth (RFC 3465).
            self._cwnd += (target - self._cwnd) / self._cwnd * segments_acked

    def _start_epoch(self, now: float) -> None:
        """Begin a congestion avoidance stage ("epoch", RFC 9438 section 4.2)."""
        self.epoch_start = now
        self.cwnd_epoch = self._cwnd
        self.w_est = self._cwnd  # section 4.3 (and 4.8 after a timeout)
        if self._after_timeout or self.w_max < self.cwnd_epoch:
            # Section 4.8: after a timeout, K = 0 and W_max = cwnd_epoch, so the
            # curve starts flat at the current window.  We do the same when no
            # loss has set W_max above the current window yet.
            self.w_max = self.cwnd_epoch
            self.k = 0.0
        else:
            # Section 4.2: K = cbrt((W_max - cwnd_epoch) / C).
            self.k = math.cbrt((self.w_max - self.cwnd_epoch) / C)
        self._after_timeout = False

    def _reduce(self, flight_size: int) -> None:
        """Multiplicative decrease of ssthresh (RFC 9438 sections 4.6 and 4.7)."""
        self._fresh = False
        # Section 4.7 fast convergence: a loss below the previous W_max means
        # our share shrank (a new flow arrived?), so release extra bandwidth.
        if self.fast_convergence and self._cwnd < self.w_max:
            self.w_max = self._cwnd * (1 + BETA_CUBIC) / 2
        else:
            self.w_max = self._cwnd
        # Section 4.6: ssthresh = flight_size * beta_cubic, at least 2 segments.
        self.cwnd_prior = self._cwnd
        self.ssthresh = max(int(flight_size * BETA_CUBIC), 2 * self.mss)
        self._alpha = ALPHA_CUBIC
        self.epoch_start = None  # the next congestion avoidance stage is a new epoch

    def on_congestion(self, flight_size: int, now: float) -> None:
        """Loss by duplicate ACKs/SACK: RFC 9438 section 4.6, cwnd = max(ssthresh, 2 MSS)."""
        self._reduce(flight_size)
        self._cwnd = self.ssthresh / self.mss  # ssthresh is already >= 2 MSS
        self._after_timeout = False
        self._rto_unacked = False

    def on_timeout(self, flight_size: int, now: float) -> None:
        """RTO: RFC 9438 section 4.8 — ssthresh as in 4.6, cwnd = 1 MSS as in RFC 5681.

        RFC 5681 section 3.1 reduces ssthresh only the first time a segment
        times out: if the timer fires again before anything new is
        acknowledged, only cwnd is reset.
        """
        if not self._rto_unacked:
            self._reduce(flight_size)
        self._cwnd = 1.0  # RFC 5681 section 3.1: loss window
        self._after_timeout = True
        self._rto_unacked = True
        self.epoch_start = None

    def on_recovery_exit(self, flight_size: int, now: float) -> None:
        """Full ACK: deflate as NewReno does (RFC 6582 section 3.2 step 3, option 1)."""
        self._fresh = False
        self._cwnd = recovery_exit_window(self.ssthresh, flight_size, self.mss) / self.mss

    def snapshot(self) -> dict[str, float]:
        """cwnd, ssthresh, w_max, w_est (bytes) and k (seconds) for event logs."""
        return {
            "cwnd": float(self.cwnd),
            "ssthresh": float(self.ssthresh),
            "w_max": self.w_max * self.mss,
            "w_est": self.w_est * self.mss,
            "k": self.k,
        }
