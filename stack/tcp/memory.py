"""Host-wide TCP buffer memory: a global bound with memory pressure, as Linux's tcp_mem.

Each connection's buffers are bounded (`TcpConfig.send_buffer`, `recv_buffer`: 1 MiB
each), but 65,536 connections times 2 MiB is far more than a daemon should hold. So
the host keeps a running total of the bytes its connections hold -- data received in
order and not yet read, out-of-order segments, and data queued to send or not yet
acknowledged -- and when the total reaches `limit` the host is *under pressure*:

* data arriving for a connection that already holds `min_per_conn` bytes or more is
  dropped (and answered with an ACK, so the peer retransmits it later and slows down);
* such a connection's socket is not writable and `send()` accepts nothing;
* once the total falls below `low` (7/8 of the limit: some hysteresis, as Linux's
  tcp_mem has a lower threshold, so that the state does not flip with every packet
  near the limit), the pressure ends and the sockets that were refused are told.

A connection holding less than `min_per_conn` is never refused, so every connection can
always make some progress (Linux's tcp_rmem[0] / tcp_wmem[0] guarantee). The total
can therefore exceed `limit` by at most one segment plus `min_per_conn` per connection.

The host charges a connection after every event on it (`Host.after`), from numbers the
connection keeps anyway, so the accounting costs a few attribute reads per packet and
never a scan over connections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:  # this module stays light: the CLI reads DEFAULT_LIMIT from it
    from stack.tcp.connection import Connection

DEFAULT_LIMIT = 512 << 20
MIN_PER_CONN = 4096


def held_by(conn: Connection) -> int:
    """The bytes a connection holds in its buffers now."""
    return conn.buffered_bytes()


class Charged(Protocol):
    """What the bound keeps per connection (the host's `ConnRecord`)."""

    mem_charged: int


C = TypeVar("C", bound=Charged)


class TcpMemory(Generic[C]):
    def __init__(self, limit: int = DEFAULT_LIMIT, min_per_conn: int = MIN_PER_CONN) -> None:
        self.limit = limit
        self.low = limit - limit // 8
        self.min_per_conn = min_per_conn
        self.used = 0
        self.peak = 0  # the most ever held
        self.pressure = False
        self.episodes = 0
        self._waiting: set[C] = set()

    def charge(self, conn: C, held: int) -> bool:
        """Record that `conn` now holds `held` bytes; True when the pressure state flips."""
        self.used += held - conn.mem_charged
        conn.mem_charged = held
        if self.used > self.peak:
            self.peak = self.used
        if self.pressure:
            return self.used < self.low
        return self.used >= self.limit

    def release(self, conn: C) -> bool:
        """`conn` is gone: nothing it held counts any more. True when the state flips."""
        self._waiting.discard(conn)
        return self.charge(conn, 0)

    def refuses(self, conn: C) -> bool:
        """Whether `conn` may take no more memory now. A refused connection is
        remembered, and its owner told when the pressure ends."""
        if not self.pressure or conn.mem_charged < self.min_per_conn:
            return False
        self._waiting.add(conn)
        return True

    def flip(self) -> list[C]:
        """Enter or leave pressure; on leaving, the connections refused meanwhile."""
        self.pressure = not self.pressure
        if self.pressure:
            self.episodes += 1
            return []
        waiting = list(self._waiting)
        self._waiting.clear()
        return waiting
