"""D-SACK: reporting duplicate segments (RFC 2883) and using the reports to detect
spurious retransmissions (RFC 3708), sans-IO.

A receiver that gets data it already has says so in the first SACK block of its
ACK (the "D-SACK block", RFC 2883 section 4). The sender learns from it that a
retransmission was unnecessary: the original had arrived, it was only delayed or
reordered. RACK uses that to widen its reordering window (RFC 8985 section 6.2
step 4); RFC 3708 uses it to undo the congestion response when *every*
retransmission of a recovery episode turns out to have been unnecessary.

Receiver side: ``duplicate_range`` and ``sack_option_blocks``.
Sender side: ``split_dsack`` and ``SpuriousRetransmissions``.
Sequence numbers are unwrapped ints, ranges half-open ``[start, end)``.
"""

from __future__ import annotations

Range = tuple[int, int]


# ------------------------------------------------------------------ receiver

def duplicate_range(start: int, end: int, rcv_nxt: int, held: list[Range]) -> Range | None:
    """RFC 2883 section 4, rules (1) and (3): the duplicate contiguous sequence in an
    arriving segment [start, end), to report in a D-SACK block, or None.

    Data below RCV.NXT was delivered already: the part of the segment below it is a
    duplicate. Else the part that overlaps out-of-order data already held (``held``,
    the receiver's queue above RCV.NXT) is. "The left edge of the D-SACK block
    specifies the first sequence number of the duplicate contiguous sequence, and the
    right edge ... the sequence number immediately following the last sequence in the
    duplicate contiguous sequence." (If the segment overlaps several held blocks, the
    first overlap is reported: a D-SACK block is one contiguous sequence.)
    """
    if end <= start:
        return None
    if start < rcv_nxt:
        return start, min(end, rcv_nxt)
    for s, e in sorted(held):
        lo, hi = max(start, s), min(end, e)
        if lo < hi:
            return lo, hi
    return None


def sack_option_blocks(dsack: Range | None, blocks: list[Range], limit: int) -> list[Range]:
    """The SACK blocks of one ACK: the D-SACK block first, then RFC 2018's.

    RFC 2883 section 4: (1) the D-SACK block reports the duplicate in the most recent
    packet only (the caller passes it for one ACK, then forgets it: rule (2), each
    duplicate is reported once); it is the *first* block. (4) "If the D-SACK block
    reports a duplicate contiguous sequence from a (possibly larger) block of data in
    the receiver's data queue above the cumulative acknowledgement, then the second
    SACK block in that SACK option should specify that (possibly larger) block of
    data." (5) The other blocks follow as RFC 2018 orders them (``blocks``, most
    recent first), within ``limit`` blocks in all.
    """
    if dsack is None:
        return blocks[:limit]
    out = [dsack]
    rest = list(blocks)
    for i, (s, e) in enumerate(rest):
        if s <= dsack[0] and dsack[1] <= e:
            out.append(rest.pop(i))  # rule (4): the block holding the duplicate, second
            break
    out.extend(rest)
    return out[:limit]


# ------------------------------------------------------------------ sender

def split_dsack(blocks: list[Range], ack: int) -> tuple[Range | None, list[Range]]:
    """RFC 2883 section 4 (as the sender reads it): is the first block a D-SACK?

    It is if it lies at or below the cumulative ACK ("the first SACK block ...
    reports data ... below the cumulative acknowledgement"), or if it is contained in
    the second block (section 4.1.3: a duplicate of data already SACKed). Returns the
    D-SACK block (or None) and the ordinary SACK blocks. Only the first block can be
    one, and an ACK carries at most one.
    """
    if not blocks:
        return None, []
    s, e = blocks[0]
    if e <= ack or (len(blocks) > 1 and blocks[1][0] <= s and e <= blocks[1][1]):
        return (s, e), list(blocks[1:])
    return None, list(blocks)


class SpuriousRetransmissions:
    """RFC 3708 section 3: DSACK-based detection of spurious retransmissions.

    For one loss recovery episode (fast recovery or an RTO), the sender counts its
    retransmissions; each D-SACK for retransmitted data of the episode means one of
    them was unnecessary (the receiver got that data twice). When every
    retransmission has been reported as a duplicate, the original transmissions all
    arrived: the episode was spurious, and the congestion response may be undone
    (RFC 3708 section 5; Linux "DSACK undo"). A lost ACK can hide a D-SACK: then
    the episode simply stays "not spurious", which is the safe side.
    """

    def __init__(self) -> None:
        self.active = False
        self.start = 0  # lowest sequence number retransmitted in the episode
        self.end = 0  # the episode's recovery point (SND.MAX at its start)
        self.retransmitted: list[Range] = []  # ranges sent again, not yet D-SACKed
        self.count = 0  # retransmissions not yet reported as duplicates
        self.total = 0

    def start_episode(self, snd_una: int, snd_max: int) -> None:
        """RFC 3708 section 3: a recovery episode begins (fast retransmit or RTO)."""
        self.active = True
        self.start = snd_una
        self.end = snd_max
        self.retransmitted = []
        self.count = 0
        self.total = 0

    def on_retransmit(self, start: int, end: int) -> None:
        """Count one retransmission of [start, end) during the episode."""
        if not self.active or end <= start:
            return
        self.retransmitted.append((start, end))
        self.count += 1
        self.total += 1

    def on_dsack(self, block: Range) -> bool:
        """RFC 3708 section 3: a D-SACK block arrived. True once every retransmission
        of the episode has been reported as a duplicate: the episode was spurious
        (and it ends)."""
        if not self.active or not self.count:
            return False
        s, e = block
        # One D-SACK reports one duplicate arrival: it accounts for one retransmission
        # of that data (a range sent three times needs two D-SACKs to be spurious).
        for r in self.retransmitted:
            if s < r[1] and r[0] < e:
                self.retransmitted.remove(r)
                break
        else:
            return False
        self.count -= 1
        if self.count == 0:
            self.active = False
            return True
        return False

    def end_episode(self) -> None:
        """The episode ended without proof that it was spurious (or the caller
        decided it): forget it."""
        self.active = False
        self.retransmitted = []
        self.count = 0
