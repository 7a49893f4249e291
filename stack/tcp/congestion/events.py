"""Loss-recovery events that adjust the congestion window beyond the algorithm's own
four calls (base.py): the one place outside an algorithm that writes ``cwnd`` and
``ssthresh``.

Owns: the window arithmetic that RFC 5681, RFC 6582 and RFC 4015 assign to the
*sender* during recovery rather than to the algorithm -- NewReno's inflation by one
SMSS per duplicate ACK, its deflation on a partial ACK, the loss window after a
repeated timeout, the restoration after a spurious retransmission. The connection
(stack/tcp/recovery.py) reports these events here and otherwise only reads
``cc.cwnd``; an algorithm (a built-in one or a learner's, lab 08) keeps the
``CongestionControl`` contract unchanged: these functions need nothing of it but the
``cwnd``/``ssthresh`` attributes and the four calls.
"""

from __future__ import annotations

from .base import CongestionControl


def on_timeout(cc: CongestionControl, flight_size: int, now: float, *, first: bool,
               mss: int) -> None:
    """The retransmission timer expired (RFC 5681 section 3.1, eq. 4).

    The first timeout of a series lowers ssthresh (`cc.on_timeout`); a repeated one
    (the same data timed out again, nothing acked since) only collapses the window to
    the loss window, 1 SMSS.
    """
    if first:
        cc.on_timeout(flight_size, now)
    else:
        cc.cwnd = mss


def on_fast_retransmit(cc: CongestionControl, flight_size: int, now: float) -> None:
    """Loss detected by duplicate ACKs or SACK (RFC 5681 3.2 step 2, RFC 6675 5 (4.2)):
    `cc.on_congestion` sets ssthresh and cwnd = ssthresh."""
    cc.on_congestion(flight_size, now)


def inflate_for_departed(cc: CongestionControl, departed: int) -> None:
    """NewReno without SACK, after the fast retransmit: cwnd = ssthresh + the bytes
    the duplicate ACKs say have left the network (RFC 5681 3.2 step 3, "+ 3*SMSS")."""
    cc.cwnd = cc.ssthresh + departed


def on_duplicate_ack_in_recovery(cc: CongestionControl, mss: int) -> None:
    """RFC 6582 section 3.2 step 4 (RFC 5681 3.2 step 4): inflate cwnd by one SMSS for
    each further duplicate ACK of a NewReno (non-SACK) fast recovery."""
    cc.cwnd += mss


def on_partial_ack(cc: CongestionControl, acked: int, mss: int) -> None:
    """RFC 6582 section 3.2 step 5: a partial ACK deflates cwnd by the amount acked and
    adds back one SMSS if that was at least one SMSS (never below 1 SMSS)."""
    cc.cwnd = max(cc.cwnd - acked + (mss if acked >= mss else 0), mss)


def on_tlp_loss(cc: CongestionControl, now: float) -> None:
    """RFC 8985 section 7.4.2: a tail loss probe repaired a loss; respond as to a loss
    (like Linux, cwnd and ssthresh go to half the window)."""
    cc.on_congestion(cc.cwnd, now)


def undo(cc: CongestionControl, prior_cwnd: int, prior_ssthresh: int) -> None:
    """RFC 4015 section 3 (the Eifel response): the retransmission was spurious; give
    back the window that the loss response took, never shrinking it."""
    cc.cwnd = max(cc.cwnd, prior_cwnd)
    cc.ssthresh = max(cc.ssthresh, prior_ssthresh)


def on_prr(cc: CongestionControl, pipe: int, sndcnt: int) -> None:
    """Proportional Rate Reduction (RFC 6937 section 3) sets how much recovery sends:
    sndcnt bytes now, i.e. cwnd = pipe + sndcnt (as Linux's tcp_cwnd_reduction). The
    algorithm chose ssthresh when recovery began; PRR brings cwnd there gradually.
    (Not for a rate-driven algorithm, BBR, which sets its own window in recovery:
    Recovery.prr_ack does not call this for one.)"""
    cc.cwnd = pipe + sndcnt


def on_prr_exit(cc: CongestionControl, flight_size: int, now: float) -> None:
    """Recovery paced by PRR is over (RFC 6937 section 3): the algorithm hears of it
    (`on_recovery_exit`), and cwnd is the ssthresh PRR was steering toward, whatever
    is in flight now (as Linux's tcp_end_cwnd_reduction). After heavy losses pipe is
    far below ssthresh; RFC 6582's min(ssthresh, FlightSize + SMSS) would then keep
    the window at a few segments although the path just delivered a window's worth.
    (A rate-driven algorithm, BBR, keeps the window it set itself: Recovery makes only
    the `on_recovery_exit` call for one.)"""
    cc.on_recovery_exit(flight_size, now)
    cc.cwnd = cc.ssthresh


def on_ecn_echo(cc: CongestionControl, flight_size: int, now: float) -> None:
    """An ACK echoed a Congestion Experienced mark (RFC 3168 section 6.1.2): respond
    as to a loss (ssthresh and cwnd to half the flight), without retransmitting. The
    caller (stack/tcp/ecn.py's rule) does it at most once per window."""
    cc.on_congestion(flight_size, now)
