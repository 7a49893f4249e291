"""The receiver's estimate of the peer's full-sized segment, and the ACK it makes due.

Owns: how large the peer's full-sized segments are, learnt from the segments it sends
(Linux calls it rcv_mss), and the "every second full-sized segment" test of RFC 5681
4.2 built on it. The rest of the receiver's ACK policy is stack/tcp/receiver.py and
stack/tcp/connection.py: out-of-order data, data that fills a hole, a FIN and a
D-SACK are ACKed at once (RFC 5681 4.2, RFC 9293 3.8.6.3, RFC 2883), and everything
else by the delayed-ACK timer (RFC 1122 4.2.3.2: within 500 ms).

RFC 5681 4.2: "an ACK SHOULD be generated for at least every second full-sized
segment". Our MSS is the most the peer may send (RFC 9293 3.7.1), not what it does
send: with small writes and Nagle off, or a smaller MSS on its side of the path, its
segments are all shorter, and an ACK every 2*MSS bytes would leave them to the timer
-- as it did the FreeBSD tcp-testsuite's rcv-data-segments/reordering-* scripts,
whose 1- to 16-byte segments FreeBSD ACKs every second one. So the full size is the
peer's own, and the ACK is due once more than one full-sized segment is unacknowledged
(for full-sized segments: at every second one, as before).

The rules (sans-IO, one call per data segment, before the ACK test):

* raise: a segment at least as large as the estimate is the new estimate, up to the
  MSS we advertised (a larger one -- segments coalesced on the way -- is more than one
  full-sized segment, and is ACKed at once). The first segment sets it.
* lower: a smaller segment lowers it only when it is no tail of a write (no PSH: a
  sender sets PSH in the last segment of what it has queued, RFC 1122 4.2.2.2), has
  the size of the segment before it (one short segment is a remainder, two of a size
  are the peer's segment size, e.g. after its path MSS fell, RFC 1191 / RFC 8201),
  and is at least LOWER_FLOOR bytes.

The floor (Linux has one, its minimal MSS of 88 bytes; ours is tcplab's own smallest
MSS, 64, options.py) is on lowering only, not on the ACK test. A floor under the ACK
test (ACK only when more than max(estimate, floor) bytes wait) would leave segments
under it to the timer even when they are all the peer sends: the suite's scripts ask
for an ACK at the second segment, 3 bytes in, and RFC 5681 4.2 sets the least ACK
rate, not the most. It is not needed against ACKing every segment either: the estimate
is raised before the test, so one segment alone is never more than the estimate;
back-to-back small segments get one ACK per two. And from a sender that keeps Nagle's
algorithm on (RFC 1122 4.2.3.4) at most one small segment is unacknowledged at a time,
so interactive traffic (a keystroke, its echo) keeps its delayed ACK and the echo
still carries it. What the floor prevents is the other way: once full-sized data has
set the estimate, tiny segments (keystrokes after a bulk transfer, a byte at a time)
never count as the peer's segment size, and are ACKed by the timer as before.
"""

from __future__ import annotations

# Segments shorter than this never lower the estimate: tcplab's smallest MSS (options.py
# clamps the peer's MSS option and the send MSS to 64), so no path tcplab uses has
# full-sized segments this small.
LOWER_FLOOR = 64


class RcvMss:
    """The peer's full-sized segment as we see it, and whether an ACK is due for it."""

    __slots__ = ("limit", "value", "_previous")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # the MSS we advertised: the most the peer may send
        self.value = 0  # bytes of the peer's full-sized segment; 0 before any data
        self._previous = 0  # the last data segment's length, if it could lower the value

    def advertise(self, mss: int) -> None:
        """The MSS option of our SYN (or SYN-ACK): the estimate stays within it."""
        self.limit = mss
        self.value = min(self.value, mss)

    def on_data(self, length: int, *, push: bool) -> None:
        """A segment with `length` bytes of text arrived (before trimming to the window)."""
        if length >= self.value:
            self.value = min(length, self.limit)
        elif length == self._previous:
            self.value = length
        self._previous = length if length >= LOWER_FLOOR and not push else 0

    def ack_due(self, unacked: int) -> bool:
        """RFC 5681 4.2: more than one full-sized segment is unacknowledged."""
        return unacked > self.value
