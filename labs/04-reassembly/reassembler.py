"""Lab 04: the reassembler -- turn segments that arrive in any order into the byte stream.

    python3 -m stack.labkit test 04 --impl reassembler.py                # step-by-step tests
    python3 -m stack.labkit stack --swap reassembler=reassembler.py      # the stack, with yours

The connection (stack/tcp/connection.py) gives you every data segment it accepted, as
``insert(index, data)`` where ``index`` is the absolute stream index of data[0]: 0 is
the first byte after the SYN (the connection has already turned the 32-bit sequence
number into this index, so no wraparound here). Whatever you return is handed to the
application, in order, exactly once; RCV.NXT advances by its length.

Segments can come late, twice, overlapping each other, or before a hole is filled
(RFC 9293 section 3.10.7.4: segments beyond RCV.NXT "should be held"). Your job is the
bookkeeping. Start simple and correct; make it fast afterwards (the stack calls insert
for every segment: a million bytes is about 700 calls).
"""

from __future__ import annotations


class Reassembler:
    def __init__(self, capacity: int) -> None:
        """``capacity``: you never hold or deliver a byte at or beyond
        ``next_index + capacity`` (such bytes are dropped; the peer will send them again).
        The connection passes its receive buffer size, which bounds the window it offers.
        """
        self.capacity = capacity
        self.next_index = 0  # the index of the next byte the application expects (RCV.NXT)
        self.pending_bytes = 0  # bytes held out of order, never more than capacity
        raise NotImplementedError  # remove this line when you have set up your state

    def insert(self, index: int, data: bytes | memoryview) -> bytes:
        """Take ``data`` at stream index ``index``; return the bytes that just became
        contiguous with the stream (often ``data`` itself, sometimes b"", sometimes more
        than ``data`` when it filled a hole).

        * bytes before ``next_index`` were delivered already: ignore them;
        * bytes at or beyond ``next_index + capacity``: drop them;
        * overlapping bytes are held once (pending_bytes counts each index once);
        * ``data`` may be a memoryview of a packet buffer: copy what you keep
          (bytes(view)), never keep the view itself.
        """
        raise NotImplementedError

    def sack_blocks(self, limit: int = 4) -> list[tuple[int, int]]:
        """Up to ``limit`` ranges ``(start, end)`` (end exclusive) of bytes you hold out of
        order, for the SACK option (RFC 2018 section 4): the block holding the most
        recently received segment first, then the others by how recently they changed.
        Ranges never overlap or touch each other (merge them) and all lie after
        next_index."""
        raise NotImplementedError
