"""Out-of-order reassembly of the received byte stream.

Segments can arrive late, twice, overlapping each other, or out of order.
The receiver must nevertheless hand the application the stream exactly once,
in order (RFC 9293 section 3.10.7.4: segments beyond ``RCV.NXT`` "should be
held for later processing").  This module does that bookkeeping, without I/O.

Indices are *absolute stream indices*: 0 is the first byte after the SYN.
The connection converts 32-bit sequence numbers into these indices, so no
wraparound arithmetic appears here.

Data structure
--------------
Bytes that arrived beyond the next expected index (``next_index``) are kept
as a sorted list of *chunks*, each a start index plus a ``bytearray``.
Chunks never overlap and never touch: whenever new data overlaps or is
adjacent to held chunks they are merged into one.  Chunks are located with
``bisect`` (binary search), and merging copies whole slices, never single
bytes, so the work per segment is proportional to its size plus the number
of chunks it touches.  A segment that extends a chunk at its end (the usual
case while a hole waits for a retransmission) grows the ``bytearray`` in
place.

Each chunk also remembers when a segment last landed in it; that ordering
gives the SACK blocks of RFC 2018 section 4.

Capacity
--------
The reassembler never stores a byte at or beyond ``next_index + capacity``
(such bytes are dropped; the peer will retransmit them), so ``pending_bytes``
is always ``<= capacity``.  Pick ``capacity`` at least as large as the
receive window you advertise.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from dataclasses import dataclass


@dataclass(slots=True)
class _Chunk:
    """A run of held bytes ``[start, start + len(data))``."""

    start: int
    data: bytearray
    stamp: int
    """Value of the insert counter when a segment last landed here."""

    @property
    def end(self) -> int:
        return self.start + len(self.data)


def _chunk_start(chunk: _Chunk) -> int:
    return chunk.start


def _chunk_end(chunk: _Chunk) -> int:
    return chunk.end


def _as_bytes(data: bytes | memoryview, lo: int, hi: int) -> bytes:
    """Return ``data[lo:hi]`` as ``bytes``; ``data`` itself when nothing is cut."""
    if isinstance(data, bytes) and lo == 0 and hi == len(data):
        return data
    return bytes(memoryview(data)[lo:hi])


class Reassembler:
    """Reorders received bytes into the in-order stream.

    >>> r = Reassembler(capacity=100)
    >>> r.insert(3, b"def")       # arrives early: held
    b''
    >>> r.sack_blocks()
    [(3, 6)]
    >>> r.insert(0, b"abc")       # fills the hole: both pieces come out
    b'abcdef'
    >>> r.next_index, r.pending_bytes
    (6, 0)
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self._capacity = capacity
        self.next_index: int = 0
        """Index of the next byte the application expects (RCV.NXT as an index)."""
        self.pending_bytes: int = 0
        """Number of bytes held out of order (always <= capacity)."""
        self._chunks: list[_Chunk] = []
        self._clock = 0  # counts stored segments; orders SACK blocks by recency

    @property
    def capacity(self) -> int:
        """Bytes at or beyond ``next_index + capacity`` are dropped."""
        return self._capacity

    def insert(self, index: int, data: bytes | memoryview) -> bytes:
        """Accept ``data`` starting at stream index ``index``.

        Returns the bytes that just became contiguous with the stream, i.e.
        the bytes the application may now read, possibly ``b""``.

        * Bytes before ``next_index`` were delivered already and are ignored
          (a retransmission or a duplicate).
        * Bytes at or beyond ``next_index + capacity`` are dropped.
        * Overlapping data is fine: the bytes held first are kept.
        * Fast path: an in-order segment that does not reach any held chunk
          is returned directly; if it is a ``bytes`` object that needed no
          trimming it is returned *itself*, without copying.  A
          ``memoryview`` is always copied into a new ``bytes`` object, so the
          result never pins the caller's packet buffer.
        """
        size = len(data)
        # Keep only the part inside [next_index, next_index + capacity).
        start = max(index, self.next_index)
        end = min(index + size, self.next_index + self._capacity)
        if start >= end:
            return b""  # entirely old (duplicate) or entirely out of room

        if start == self.next_index and (not self._chunks or end < self._chunks[0].start):
            # In order and not touching anything held: hand it straight over.
            self.next_index = end
            return _as_bytes(data, start - index, end - index)

        self._store(start, end, memoryview(data)[start - index : end - index])

        # Only the chunk at next_index can have become deliverable, and only
        # when the new data started there (otherwise it was delivered before).
        first = self._chunks[0]
        if first.start != self.next_index:
            return b""
        del self._chunks[0]
        self.pending_bytes -= len(first.data)
        self.next_index = first.end
        return bytes(first.data)

    def _store(self, start: int, end: int, view: memoryview) -> None:
        """Merge the bytes ``view`` covering ``[start, end)`` into the chunk list."""
        chunks = self._chunks
        self._clock += 1
        # The chunks that overlap or touch [start, end) form one run lo..hi-1:
        # from the first chunk ending at or after `start` to the last chunk
        # beginning at or before `end`.  Both keys are sorted because chunks
        # are disjoint, so binary search finds the run.
        lo = bisect_left(chunks, start, key=_chunk_end)
        hi = bisect_right(chunks, end, key=_chunk_start)

        if lo == hi:  # touches nothing: a new chunk of its own
            chunks.insert(lo, _Chunk(start, bytearray(view), self._clock))
            self.pending_bytes += end - start
            return

        touched = chunks[lo:hi]
        before = sum(len(c.data) for c in touched)
        if touched[0].start <= start:
            # The first chunk begins before the new data: grow it in place.
            merged = touched[0]
            rest = touched[1:]
        else:
            merged = _Chunk(start, bytearray(), 0)
            rest = touched
        # Walk left to right: fill each gap from the new data, then append
        # the held chunk that follows the gap.  Held bytes win on overlap.
        pos = merged.end
        for chunk in rest:
            merged.data += view[pos - start : chunk.start - start]
            merged.data += chunk.data
            pos = chunk.end
        if pos < end:
            merged.data += view[pos - start :]
        merged.stamp = self._clock
        chunks[lo:hi] = [merged]
        self.pending_bytes += len(merged.data) - before

    def sack_blocks(self, limit: int = 4) -> list[tuple[int, int]]:
        """Return up to ``limit`` held ranges ``[start, end)``, most recent first.

        RFC 2018 section 4: the first block must be the one containing the
        most recently received segment, the others follow in the order they
        were most recently changed ("most recently reported" in the RFC).
        The blocks are disjoint, never adjacent, and all lie beyond
        ``next_index``.  Indices are absolute; the connection converts them
        to sequence numbers.  (With timestamps only 3 blocks fit in the
        40 bytes of TCP options; choosing ``limit`` is the caller's job.)
        """
        if limit <= 0:
            return []
        recent = heapq.nlargest(limit, self._chunks, key=lambda c: c.stamp)
        return [(c.start, c.end) for c in recent]
