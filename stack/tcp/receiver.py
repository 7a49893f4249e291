"""The receiving half of a TCP connection.

Owns: the receive sequence variables of RFC 9293 section 3.3.1 (IRS, RCV.NXT and the
right edge of the window we advertised), the reassembler of out-of-order data, the
queue of in-order bytes waiting for the user, the peer's FIN, the ACK we owe (delayed
ACKs, RFC 1122 4.2.3.2 and RFC 5681 4.2; the size of the peer's full-sized segments
that "every second full-sized segment" counts is stack/tcp/rcvmss.py's), and the
window we offer: receiver
silly-window avoidance (RFC 9293 3.8.6.2.2), a window that never shrinks (3.8.6),
segment acceptability (3.10.7.4 "first") and window updates after the user reads.

Sequence numbers are unwrapped ints (see stack/tcp/connection.py); IRS + 1 is
reassembler index 0. The state changes a FIN causes are the connection's.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from stack.tcp.dsack import duplicate_range, sack_option_blocks
from stack.tcp.rcvmss import RcvMss
from stack.tcp.reassembler import Reassembler

if TYPE_CHECKING:
    from stack.tcp.connection import TcpConfig

MASK32 = 0xFFFFFFFF


class Receiver:
    """Receive sequence space, reassembly and the ACKs and window we send."""

    def __init__(self, config: TcpConfig, reassembler: Reassembler, wscale: int) -> None:
        self.config = config
        self.reassembler = reassembler
        self.wscale = wscale  # shift applied to the windows we advertise (RFC 7323)
        # Receive sequence variables, unwrapped.
        self.irs = 0
        self.nxt = 0
        self.right = 0  # right edge of the window we advertised (never moved left)
        # In-order data for the user.
        self.rx: deque[bytes | memoryview] = deque()
        self.rx_len = 0
        self.fin_received = False
        self.peer_fin_seq: int | None = None  # a FIN seen beyond a hole
        # The ACK we owe.
        self.ack_pending = False
        self.ack_now = False  # this segment's processing owes an immediate ACK
        self.ack_deferred = False  # an "every second segment" ACK put off to the batch end
        self.unacked_bytes = 0  # bytes received since our last ACK
        self.peer_mss = RcvMss(config.mss)  # the peer's full-sized segment, as it sends them
        # Host-wide memory (stack/tcp/memory.py): whether the host refuses us data for the
        # segment at hand, and how often it did.
        self.rx_pressure = False
        self.memory_drops = 0
        self.bytes_received = 0
        # RFC 2883: the duplicate the next ACK reports in its first SACK block.
        self.dsack: tuple[int, int] | None = None
        self.duplicates = 0

    def start(self, irs: int) -> None:
        """The peer's SYN arrived with sequence number `irs`."""
        self.irs = irs
        self.nxt = irs + 1
        self.right = self.nxt

    @property
    def window(self) -> int:
        """RCV.WND as last advertised."""
        return max(self.right - self.nxt, 0)

    # --------------------------------------------------------------- the user

    def read(self, limit: int) -> bytes:
        """Take up to `limit` bytes of in-order data (RFC 9293 3.10.3)."""
        rx = self.rx
        parts: list[bytes | memoryview] = []
        taken = 0
        while rx and taken < limit:
            chunk = rx[0]
            room = limit - taken
            if len(chunk) <= room:
                parts.append(rx.popleft())
                taken += len(chunk)
            else:
                parts.append(chunk[:room])
                rx[0] = chunk[room:]
                taken += room
        self.rx_len -= taken
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        return bytes(data)

    def window_update_due(self, mss: int) -> bool:
        """After the user reads: has the window opened enough to tell the peer?"""
        current = max(self.right - self.nxt, 0)
        buffer = self.config.recv_buffer
        free = buffer - self.rx_len
        half = buffer // 2
        return (current < half <= free) or (current < mss <= free)

    # ---------------------------------------------------------------- the peer

    def advertised_window(self, mss: int) -> int:
        """The window field to send (RFC 9293 3.8.6.2.2 receiver SWS avoidance).

        The right edge moves only by at least min(buffer / 2, MSS) and never left
        (RFC 9293 3.8.6: "the window should not shrink"); segments are accepted up
        to it.
        """
        buffer = self.config.recv_buffer
        free = max(buffer - self.rx_len, 0)
        # Only an edge the window field can say (at most 0xFFFF << scale, in whole
        # units): `right` is also the edge we accept up to (RFC 9293 3.10.7.4 RCV.WND),
        # which must be the one we advertised (issue 17, defect 2: without window
        # scaling a 1 MiB buffer advertised 65535 but accepted 1 MiB).
        free = min(free, 0xFFFF << self.wscale) >> self.wscale << self.wscale
        right = self.nxt + free
        step = min(buffer // 2, mss)
        if right - self.right >= step or self.right < self.nxt:
            self.right = right
        window = max(self.right - self.nxt, 0)
        return min(window >> self.wscale, 0xFFFF)

    def sack_blocks(self, count: int) -> list[tuple[int, int]]:
        """Up to `count` SACK blocks for the next ACK, as wrapped sequence numbers:
        a D-SACK block first if a duplicate arrived (RFC 2883 section 4), then what
        waits in the reassembler (RFC 2018)."""
        base = self.irs + 1
        held = [(base + s, base + e) for s, e in self.reassembler.sack_blocks(count)]
        blocks = sack_option_blocks(self.dsack, held, count) if self.dsack else held
        return [(s & MASK32, e & MASK32) for s, e in blocks]

    def note_duplicate(self, start: int, end: int) -> None:
        """Data [start, end) arrived a second time: report it in the next ACK's
        first SACK block (RFC 2883 section 4, rules 1 and 3)."""
        if self.config.dsack:
            self.dsack = (start, end)
            self.duplicates += 1

    def _held(self) -> list[tuple[int, int]]:
        """Every range waiting in the reassembler, as sequence numbers."""
        base = self.irs + 1
        return [(base + s, base + e) for s, e in self.reassembler.sack_blocks(1 << 16)]

    def acceptable(self, seq: int, seg_len: int) -> bool:
        """RFC 9293 3.10.7.4 first check: the four cases of segment acceptability."""
        nxt = self.nxt
        rcv_wnd = max(self.right - nxt, 0)
        if seg_len == 0:
            if rcv_wnd == 0:
                return seq == nxt
            return nxt <= seq < nxt + rcv_wnd
        if rcv_wnd == 0:
            return False
        last = seq + seg_len - 1
        return (nxt <= seq < nxt + rcv_wnd) or (nxt <= last < nxt + rcv_wnd)

    def advertise_mss(self, mss: int) -> None:
        """Our SYN (or SYN-ACK) offers `mss`: the most the peer may send (RFC 9293 3.7.1)."""
        self.peer_mss.advertise(mss)

    def second_segment_ack_due(self) -> bool:
        """RFC 5681 4.2 / RFC 1122 4.2.3.2: an ACK for at least every second full-sized
        segment, full-sized being what the peer sends (stack/tcp/rcvmss.py): due once
        more than one such segment of in-order data is unacknowledged."""
        return self.ack_pending and self.peer_mss.ack_due(self.unacked_bytes)

    def take_in_order(self, seq: int, payload: bytes | memoryview, *, push: bool) -> None:
        """Header prediction's data case: `payload` is the next in-order data, fits the
        window and no hole waits (the connection checked). `push`: the segment's PSH."""
        n = len(payload)
        self.peer_mss.on_data(n, push=push)
        self.rx.append(self.reassembler.insert(seq - self.irs - 1, payload))
        self.rx_len += n
        self.nxt = seq + n
        self.bytes_received += n
        self.unacked_bytes += n
        self.ack_pending = True

    def receive(
        self, seq: int, payload: bytes | memoryview, *, user_closed: bool, push: bool = False,
    ) -> bool:
        """RFC 9293 3.10.7.4 "seventh": trim to the window, reassemble, deliver.
        `push` is the segment's PSH bit (for the segment-size estimate only).

        Returns False when data within the window arrives after the user closed: it
        must be refused (RFC 1122 4.2.2.13: the connection then resets)."""
        start = seq
        # The segment as the peer sized it, before trimming: out of order, duplicate or
        # not, it shows how large the peer's segments are (stack/tcp/rcvmss.py).
        self.peer_mss.on_data(len(payload), push=push)
        if (start < self.nxt or self.reassembler.pending_bytes) and self.config.dsack:
            dup = duplicate_range(seq, seq + len(payload), self.nxt, self._held())
            if dup is not None:
                self.note_duplicate(*dup)
                # A D-SACK is reported in the next ACK (RFC 2883 section 4); that ACK goes
                # at once, also when the rest of the segment is new in-order data, so the
                # sender learns of its spurious retransmission before it sends more
                # (RFC 3708). FreeBSD does so; Linux for wholly duplicate segments.
                self.ack_now = True
        if start < self.nxt:
            payload = payload[self.nxt - start :]
            start = self.nxt
        window_end = self.nxt + max(self.right - self.nxt, 0)
        if start + len(payload) > window_end:
            payload = payload[: max(window_end - start, 0)]
        if not payload:
            self.ack_now = True
            return True
        if user_closed:
            return False
        if self.rx_pressure:
            # The host is out of TCP memory (stack/tcp/memory.py): drop the text, tell the
            # peer what we still expect; it retransmits, and backs off.
            self.memory_drops += 1
            self.ack_pending = True
            self.ack_now = True
            return True
        index = start - self.irs - 1
        in_order = start == self.nxt
        had_holes = self.reassembler.pending_bytes > 0
        ready = self.reassembler.insert(index, payload)
        if ready:
            n = len(ready)
            self.rx.append(ready)
            self.rx_len += n
            self.nxt += n
            self.bytes_received += n
            self.unacked_bytes += n
        self.ack_pending = True
        # RFC 5681 4.2: ACK out-of-order data at once, and data that fills a hole.
        if not in_order or had_holes:
            self.ack_now = True
        return True

    def receive_fin(self) -> bool:
        """RFC 9293 3.10.7.4 "eighth": the FIN at RCV.NXT. True the first time (the
        connection changes state), False for a retransmitted one; an ACK is owed."""
        self.peer_fin_seq = None
        self.ack_pending = True
        self.ack_now = True
        if self.fin_received:
            return False
        self.fin_received = True
        self.nxt += 1
        return True

    def acked(self) -> None:
        """A segment carrying our ACK of everything received is being sent."""
        self.ack_pending = False
        self.unacked_bytes = 0
