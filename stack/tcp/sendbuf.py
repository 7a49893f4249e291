"""The send buffer: bytes written by the application and not yet acknowledged.

TCP must keep every byte it has sent until the peer acknowledges it, because
it may have to retransmit it (RFC 9293 section 3.8.1).  The buffer therefore
holds the stream from ``start`` (the first unacknowledged byte, SND.UNA as an
index) to ``end`` (one past the last byte the application wrote).  Some of
those bytes have been sent (up to SND.NXT) and some not yet; that split is
the connection's business, the buffer only stores bytes.

::

      start (SND.UNA)            SND.NXT                   end
        |  sent, unacknowledged   |   written, not sent yet  |   free space
        +-------------------------+--------------------------+--------------+
        |<------------------------ len(buf) ---------------->|<--- free --->|
        |<-------------------------------- capacity ----------------------->|

Indices are *absolute stream indices* (0 = first byte after the SYN), so the
connection converts sequence numbers with ``index = seq_diff(seq, ISS + 1)``
style arithmetic and no wraparound appears here.

Implementation: one ``bytearray`` plus a *head offset*.  Releasing
acknowledged bytes only moves the offset (O(1)); the dead prefix is cut off
("compaction") once it is at least half of the array, so each byte is moved
at most about once on average.  ``peek`` slices through a ``memoryview`` so a
64 KiB peek costs a single copy into the returned ``bytes``.
"""

from __future__ import annotations


class SendBuffer:
    """Bytes from ``start`` to ``end`` waiting to be sent or acknowledged.

    >>> buf = SendBuffer(capacity=8)
    >>> buf.write(b"hello world")   # only 8 bytes fit
    8
    >>> buf.peek(6, 100)
    b'wo'
    >>> buf.release(6)              # the peer acknowledged "hello "
    >>> buf.start, buf.end, buf.free
    (6, 8, 6)
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self._capacity = capacity
        self._buf = bytearray()
        self._head = 0  # offset in _buf of the byte at index `start`
        self._start = 0  # absolute index of the first unacknowledged byte

    @property
    def capacity(self) -> int:
        """Maximum number of bytes held (acknowledged bytes do not count)."""
        return self._capacity

    @property
    def start(self) -> int:
        """Absolute index of the first unacknowledged byte."""
        return self._start

    @property
    def end(self) -> int:
        """Absolute index one past the last byte written."""
        return self._start + len(self._buf) - self._head

    @property
    def free(self) -> int:
        """How many more bytes :meth:`write` would accept now."""
        return self._capacity - len(self)

    def __len__(self) -> int:
        return len(self._buf) - self._head

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append as much of ``data`` as fits; return the number of bytes taken.

        A short count means the buffer is full: the application must wait
        until acknowledgments free space (this is how TCP applies
        backpressure to a fast writer).
        """
        n = min(len(data), self.free)
        if n <= 0:
            return 0
        if n == len(data):
            self._buf += data
        else:
            self._buf += memoryview(data)[:n]
        return n

    def peek(self, index: int, n: int) -> bytes:
        """Return up to ``n`` bytes starting at absolute index ``index``.

        The bytes stay in the buffer (they may be needed again for a
        retransmission).  Fewer than ``n`` bytes come back near ``end``, and
        ``b""`` at or beyond ``end``.  Asking for released bytes
        (``index < start``) is a bug in the caller and raises ``ValueError``.
        """
        if index < self._start:
            raise ValueError(f"index {index} was already released (start={self._start})")
        lo = self._head + (index - self._start)
        hi = min(lo + max(n, 0), len(self._buf))
        if lo >= hi:
            return b""
        with memoryview(self._buf) as view:
            return bytes(view[lo:hi])

    def release(self, upto: int) -> None:
        """Forget every byte before absolute index ``upto`` (they were acknowledged).

        Indices at or before ``start`` change nothing (an old, duplicate
        ACK).  Indices beyond ``end`` are treated as ``end``: an ACK may also
        cover the FIN, which takes a sequence number but no buffer byte.
        """
        upto = min(upto, self.end)
        if upto <= self._start:
            return
        self._head += upto - self._start
        self._start = upto
        if self._head == len(self._buf):
            # Everything acknowledged: reuse the array from the beginning.
            self._buf.clear()
            self._head = 0
        elif self._head >= len(self._buf) // 2:
            # Compaction: the dead prefix is at least half the array, so
            # cutting it off costs no more than the bytes released so far.
            del self._buf[: self._head]
            self._head = 0
