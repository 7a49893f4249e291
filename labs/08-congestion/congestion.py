"""Lab 08: a congestion control algorithm of your own.

    python3 -m stack.labkit test 08 --impl congestion.py              # step-by-step tests
    python3 -m stack.labkit stack --swap congestion=congestion.py     # every --cc is yours

The connection keeps at most min(cwnd, the peer's window) bytes unacknowledged and tells
your object what happened through four calls (stack/tcp/congestion/base.py has the
contract; newreno.py and cubic.py are two answers). All sizes are whole bytes (int);
time comes in ``now`` (seconds); nothing here does I/O.

Ideas, from plain to bold: Reno itself (RFC 5681 section 3.1) to check that you
understand it; AIMD with other constants (add 2 MSS per RTT, multiply by 0.8 on loss)
and compare its sawtooth with NewReno's; "Scalable TCP" (add 1% per ACKed window,
multiply by 0.875); a delay-based idea in the spirit of Vegas using ``rtt``. The tests
only hold you to what keeps the stack and the network sane: whole bytes, slow start
that grows, a real decrease on loss, at most +50 % per round trip afterwards, 1 MSS
after a timeout.
"""

from __future__ import annotations


class MyCongestionControl:
    name = "mine"

    def __init__(self, mss: int) -> None:
        """A new connection's sender with maximum segment size ``mss`` (bytes).

        cwnd starts at the initial window (RFC 5681 3.1: 2 to 4 segments; RFC 6928: up to
        10), ssthresh "arbitrarily high" (RFC 5681 3.1).
        """
        self.mss = mss  # the connection may assign a new value later
        self.cwnd = 0
        self.ssthresh = 0
        raise NotImplementedError

    def on_ack(self, acked: int, now: float, rtt: float | None) -> None:
        """``acked`` bytes of new data were acknowledged (outside loss recovery).
        ``rtt`` is the smoothed RTT in seconds, if known. Grow cwnd: quickly below
        ssthresh (slow start), carefully above it (congestion avoidance)."""
        raise NotImplementedError

    def on_congestion(self, flight_size: int, now: float) -> None:
        """Three duplicate ACKs or SACK say a segment was lost: set ssthresh below
        ``flight_size`` (bytes in flight), at least 2 MSS, and cwnd = ssthresh.
        (The connection inflates cwnd during fast recovery on its own.)"""
        raise NotImplementedError

    def on_timeout(self, flight_size: int, now: float) -> None:
        """The retransmission timer expired: ssthresh as in on_congestion (RFC 5681
        section 3.1 lowers it only the first time in a row), cwnd = 1 MSS."""
        raise NotImplementedError

    def on_recovery_exit(self, flight_size: int, now: float) -> None:
        """The ACK that ends fast recovery: bring cwnd back down to at most ssthresh."""
        raise NotImplementedError

    def snapshot(self) -> dict[str, float]:
        return {"cwnd": float(self.cwnd), "ssthresh": float(self.ssthresh)}


ALGORITHM = MyCongestionControl  # what `--swap congestion=...` and the tests use
