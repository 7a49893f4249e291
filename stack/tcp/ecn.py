"""Explicit Congestion Notification for one TCP connection (RFC 3168), sans-IO.

Owns: the ECN state of one connection -- whether ECN was negotiated in the handshake
(RFC 3168 6.1.1), the receiver's echo of a Congestion Experienced mark (ECE on every
ACK until a CWR arrives, 6.1.3), the sender's response to an echo (one window
reduction per round trip, 6.1.2, through stack/tcp/congestion/events.py) and its CWR
on the next new data segment (6.1.2), and which outgoing segments are ECN-capable
(ECT(0) on new data only: not on SYNs, pure ACKs, retransmissions or window probes,
6.1.1, 6.1.5, 6.1.6).

The IP layer's two ECN bits travel beside the segment as ``TCPSegment.ecn`` (the
codepoint the packet arrived with, or the one to send it with); the host copies them
from/to the IPv4 TOS byte (or the IPv6 traffic class), so this module never sees a
header of IP.

The mode follows Linux's ``net.ipv4.tcp_ecn``: 0 = off, 1 = request ECN on outgoing
connections and accept it on incoming ones, 2 = accept it when the peer asks, never
request it (Linux's default, and ours).
"""

from __future__ import annotations

from collections.abc import Callable

from stack.wire.tcp import ACK, CWR, ECE, SYN

__all__ = ["CE", "ECT0", "ECT1", "NOT_ECT", "Ecn"]

# RFC 3168 section 5: the ECN field of the IP header.
NOT_ECT = 0b00
ECT1 = 0b01
ECT0 = 0b10
CE = 0b11

ECN_MODES = (0, 1, 2)

Emit = Callable[..., None]


class Ecn:
    """The RFC 3168 state machine of one connection."""

    def __init__(self, mode: int, emit: Emit) -> None:
        if mode not in ECN_MODES:
            raise ValueError(f"ECN mode {mode!r}: choose 0, 1 or 2")
        self.mode = mode
        self.emit = emit
        self.ok = False  # negotiated: both ends ECN-capable (RFC 3168 6.1.1)
        self.requested = False  # our SYN asked for it (ECE|CWR)
        self.echoing = False  # receiver: CE seen, ECE on every ACK until CWR (6.1.3)
        self.ece_logged = False  # the `ece_sent` event of this echo episode went out
        self.cwr_pending = False  # sender: reduced, CWR on the next new data (6.1.2)
        self.high_seq: int | None = None  # no new reduction until an ACK passes this
        # Counters (for `tcplab ss` and the tests).
        self.ce_received = 0
        self.reductions = 0

    # --------------------------------------------------------------- handshake

    def syn_flags(self, *, retransmission: bool) -> int:
        """The flags our own SYN carries (active open).

        RFC 3168 6.1.1: an "ECN-setup SYN" has ECE and CWR set. 6.1.1.1: a SYN that
        went unanswered may have been dropped for its ECN bits, so a retransmitted SYN
        is sent without them (as Linux does), and ECN is not used then.
        """
        if self.mode != 1 or retransmission:
            self.requested = False
            return 0
        self.requested = True
        return ECE | CWR

    def on_syn(self, flags: int) -> None:
        """A peer's SYN arrived at a listener (passive open): accept an ECN-setup SYN
        (ECE and CWR both set, RFC 3168 6.1.1) unless ECN is off."""
        if self.mode and flags & (ECE | CWR) == ECE | CWR:
            self.ok = True
            self.emit("ecn", event="negotiated", side="passive")

    def synack_flags(self) -> int:
        """RFC 3168 6.1.1: an "ECN-setup SYN-ACK" has ECE set and CWR clear."""
        return ECE if self.ok else 0

    def on_synack(self, flags: int) -> None:
        """Our SYN was answered (active open). RFC 3168 6.1.1: only a SYN-ACK with ECE
        set and CWR clear agrees; one with both set is not an ECN-setup SYN-ACK."""
        if self.requested and flags & (ECE | CWR) == ECE:
            self.ok = True
            self.emit("ecn", event="negotiated", side="active")
        self.requested = False

    # ------------------------------------------------------------- the receiver

    def on_segment(self, flags: int, codepoint: int) -> None:
        """A segment of the synchronized states arrived (before it is processed).

        RFC 3168 6.1.3: a CWR ends the echo; a CE mark (re)starts it. CWR is looked at
        first, so a CE on the very packet that carries CWR is echoed again.
        """
        if not self.ok or flags & SYN:
            return
        if flags & CWR and self.echoing:
            self.echoing = False
        if codepoint == CE:
            self.ce_received += 1
            if not self.echoing:
                self.echoing = True
                self.ece_logged = False
                self.emit("ecn", event="ce_received", count=self.ce_received)

    def ack_flags(self, flags: int) -> int:
        """ECE for an ACK-bearing, non-SYN segment we send while echoing (6.1.3)."""
        if self.echoing and flags & ACK and not flags & SYN:
            if not self.ece_logged:  # the log hears of the first ECE of each episode
                self.ece_logged = True
                self.emit("ecn", event="ece_sent")
            return ECE
        return 0

    # --------------------------------------------------------------- the sender

    def wants_reduction(self, flags: int, ack: int) -> bool:
        """Does this acceptable ACK's ECE call for a window reduction now?

        RFC 3168 6.1.2: the sender reacts to ECE "at most once per window of data";
        the window is the data in flight at the last reduction (`high_seq`, like
        Linux's CWR state): ECEs on ACKs up to it echo a mark we already answered.
        """
        if not self.ok or not flags & ECE or flags & SYN or not flags & ACK:
            return False
        return self.high_seq is None or ack > self.high_seq

    def reduced(self, high_seq: int, ack: int, cwnd: int, ssthresh: int) -> None:
        """The congestion window was reduced for an ECE (the caller did it through
        stack/tcp/congestion/events.py); CWR is owed on the next new data."""
        self.high_seq = high_seq
        self.cwr_pending = True
        self.reductions += 1
        self.emit("ecn", event="reduction", ack=ack, high_seq=high_seq, cwnd=cwnd,
                  ssthresh=ssthresh, count=self.reductions)

    def data_marks(self, *, new_data: bool) -> tuple[int, int]:
        """(extra flags, IP ECN codepoint) for a segment that carries data.

        RFC 3168 6.1.5: retransmissions are not ECN-capable, and 6.1.2: CWR is set on
        the first new data segment after a reduction. 6.1.6: window probes are not
        ECN-capable (the caller passes `new_data=False` for them).
        """
        if not self.ok or not new_data:
            return 0, NOT_ECT
        if self.cwr_pending:
            self.cwr_pending = False
            self.emit("ecn", event="cwr_sent")
            return CWR, ECT0
        return 0, ECT0

    def info(self) -> dict[str, object]:
        return {"ecn": self.ok, "ecn_ce": self.ce_received, "ecn_reductions": self.reductions}
