"""The SACK scoreboard: which bytes beyond SND.UNA the receiver has selectively
acknowledged (RFC 2018 section 4, RFC 6675 section 3).

Owns: the SACKed ranges of one sender, as sorted, disjoint, half-open ``[start, end)``
intervals of *unwrapped* sequence numbers (plain ints, see stack/tcp/connection.py),
and the questions loss recovery asks of them: how many bytes are SACKed in a range,
where the next un-SACKed hole starts, and below which point un-SACKed data counts as
lost (RFC 6675 IsLost). A value type: no connection, no clock, no I/O; the sender
unwraps the blocks of an ACK and tells the scoreboard the bounds they must lie in.

The loss-detection work to come (RACK, RFC 8985; D-SACK, RFC 2883) reads the same
ranges through these queries.
"""

from __future__ import annotations


class Scoreboard:
    """Sorted, disjoint SACKed ranges ``[start, end)`` above the cumulative ACK."""

    __slots__ = ("blocks",)

    def __init__(self, blocks: list[list[int]] | None = None) -> None:
        self.blocks: list[list[int]] = blocks if blocks is not None else []

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def __repr__(self) -> str:
        return f"Scoreboard({self.blocks!r})"

    def clear(self) -> None:
        """Forget everything (RFC 2018 section 8: after a timeout SACK state may be stale)."""
        self.blocks.clear()

    def add(self, start: int, end: int, una: int, snd_max: int) -> bool:
        """Merge one block (RFC 2018 section 4); True if it SACKs anything new.

        A block at or below `una` (a D-SACK, RFC 2883) or beyond `snd_max` (data never
        sent) is ignored; one that starts below `una` is cut there.
        """
        if not (una < end <= snd_max and start < end):
            return False
        start = max(start, una)
        blocks = self.blocks
        for s, e in blocks:
            if s <= start and end <= e:
                return False
        kept: list[list[int]] = []
        for s, e in blocks:
            if e < start or s > end:
                kept.append([s, e])
            else:
                start, end = min(s, start), max(e, end)
        kept.append([start, end])
        kept.sort()
        self.blocks = kept
        return True

    def advance(self, ack: int) -> None:
        """The cumulative ACK moved to `ack`: drop what it covers."""
        if self.blocks:
            self.blocks = [[max(s, ack), e] for s, e in self.blocks if e > ack]

    def sacked_between(self, start: int, end: int) -> int:
        """Bytes in ``[start, end)`` that are SACKed."""
        total = 0
        for s, e in self.blocks:
            if e <= start:
                continue
            if s >= end:
                break
            total += min(e, end) - max(s, start)
        return total

    def lost_boundary(self, need: int, floor: int) -> int:
        """RFC 6675 section 4 IsLost, second condition: un-SACKed bytes below the point
        returned have at least `need` SACKed bytes above them, and count as lost.
        Returns `floor` (SND.UNA) when fewer than `need` bytes are SACKed at all."""
        acc = 0
        for s, e in reversed(self.blocks):
            size = e - s
            if acc + size >= need:
                return e - (need - acc)
            acc += size
        return floor

    def next_hole(self, start: int, limit: int) -> tuple[int, int] | None:
        """The first un-SACKed range at or after `start` and below `limit`, if any."""
        pos = start
        blocks = self.blocks
        for s, e in blocks:
            if e <= pos:
                continue
            if s > pos:
                break
            pos = e
        if pos >= limit:
            return None
        end = limit
        for s, _e in blocks:
            if s > pos:
                end = min(end, s)
                break
        return pos, end

    def highest_start(self, default: int) -> int:
        """Start of the highest SACKed range (`default` when nothing is SACKed)."""
        return self.blocks[-1][0] if self.blocks else default
