"""IP fragment reassembly: the bounded table both families share, and IPv4's rules.

:class:`FragmentTable` holds datagrams under reassembly by key, oldest first, and
owns what is common to IPv4 and IPv6: the memory bound (when the bytes held exceed
``memory_limit`` the oldest datagram is dropped), the bound on how many datagrams
are under reassembly at once, and the timeout after the first fragment arrived.

:class:`FragmentReassembler` is IPv4 (RFC 791 section 3.2 with RFC 815's hole
descriptors): fragments are kept per (src, dst, protocol, identification) until
every hole is filled; an overlap is allowed, the later fragment's bytes win. Each
datagram is dropped ``timeout`` seconds after its first fragment arrived (RFC 791
section 3.2 suggests a 15 s lower bound; Linux uses 30 s). IPv6, which forbids
overlaps (RFC 5722), is in ``stack/ip6frag.py``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

MAX_DATAGRAM = 65535
#: Datagrams under reassembly at once, per family (the oldest goes first).
DEFAULT_MAX_DATAGRAMS = 4096


@dataclass
class PendingDatagram:
    """What the table needs of a datagram under reassembly."""

    first_seen: float
    held: int = 0  # bytes charged to the table's memory


K = TypeVar("K", bound=Hashable)
D = TypeVar("D", bound=PendingDatagram)


class FragmentTable(Generic[K, D]):
    """Datagrams under reassembly, oldest first, bounded in bytes, count and time.

    ``dropped`` counts datagrams given up (timed out, evicted, malformed).
    ``max_datagrams`` None leaves the count unbounded (the caller bounds it).
    """

    def __init__(self, memory_limit: int, timeout: float, max_datagrams: int | None) -> None:
        self.memory_limit = memory_limit
        self.timeout = timeout
        self.max_datagrams = max_datagrams
        self.pending: OrderedDict[K, D] = OrderedDict()
        self.memory = 0
        self.dropped = 0
        self.evicted = 0  # of `dropped`: pushed out by the memory or count bound

    def get_or_create(self, key: K, factory: Callable[[], D]) -> D:
        dgram = self.pending.get(key)
        if dgram is None:
            if self.max_datagrams is not None:
                while len(self.pending) >= self.max_datagrams:
                    self._evict_oldest()
            dgram = factory()
            self.pending[key] = dgram
        return dgram

    def charge(self, dgram: D, nbytes: int) -> None:
        dgram.held += nbytes
        self.memory += nbytes

    def complete(self, key: K) -> D | None:
        """Take a finished datagram out (its memory is released, nothing counted)."""
        dgram = self.pending.pop(key, None)
        if dgram is not None:
            self.memory -= dgram.held
        return dgram

    def drop(self, key: K) -> D | None:
        """Give up a datagram (counted in ``dropped``)."""
        dgram = self.complete(key)
        self.dropped += 1
        return dgram

    def enforce_memory(self) -> None:
        """Drop the oldest datagrams until the memory bound holds."""
        while self.memory > self.memory_limit and self.pending:
            self._evict_oldest()

    def expire(self, now: float) -> list[tuple[K, D]]:
        """Drop the datagrams whose first fragment came ``timeout`` seconds ago."""
        expired: list[tuple[K, D]] = []
        while self.pending:
            key, dgram = next(iter(self.pending.items()))
            if now - dgram.first_seen < self.timeout:
                break
            self.drop(key)
            expired.append((key, dgram))
        return expired

    def _evict_oldest(self) -> None:
        self.drop(next(iter(self.pending)))
        self.evicted += 1


@dataclass
class _Datagram(PendingDatagram):
    # RFC 815: a list of holes, initially one from 0 to "infinity".
    holes: list[tuple[int, int]] = field(default_factory=lambda: [(0, MAX_DATAGRAM)])
    data: bytearray = field(default_factory=bytearray)
    total_length: int | None = None


FragmentKey = tuple[str, str, int, int]


class FragmentReassembler:
    """IPv4: collects fragments; `add` returns the whole payload when the last hole fills."""

    def __init__(self, memory_limit: int = 4 << 20, timeout: float = 30.0,
                 max_datagrams: int | None = None) -> None:
        self.table: FragmentTable[FragmentKey, _Datagram] = FragmentTable(
            memory_limit, timeout, max_datagrams)

    # The table's state, as the host and the tests read it.
    @property
    def pending(self) -> OrderedDict[FragmentKey, _Datagram]:
        return self.table.pending

    @property
    def memory(self) -> int:
        return self.table.memory

    @property
    def memory_limit(self) -> int:
        return self.table.memory_limit

    @property
    def timeout(self) -> float:
        return self.table.timeout

    @property
    def dropped(self) -> int:
        return self.table.dropped

    def add(
        self, key: FragmentKey, offset: int, more: bool, payload: bytes | memoryview, now: float
    ) -> bytes | None:
        table = self.table
        table.expire(now)
        first = offset
        last = offset + len(payload)  # one past the fragment's last byte
        if last > MAX_DATAGRAM or (more and len(payload) % 8):
            # RFC 791 section 3.2: all but the last fragment carry multiples of 8 bytes.
            table.drop(key)
            return None
        dgram = table.get_or_create(key, lambda: _Datagram(first_seen=now))
        if not more:
            if dgram.total_length is not None and dgram.total_length != last:
                table.drop(key)
                return None
            dgram.total_length = last
        # RFC 815 section 3: for each hole the fragment overlaps, replace it by what
        # the fragment leaves uncovered on either side.
        new_holes: list[tuple[int, int]] = []
        for hole_first, hole_last in dgram.holes:
            if first >= hole_last or last <= hole_first:
                new_holes.append((hole_first, hole_last))
                continue
            if first > hole_first:
                new_holes.append((hole_first, first))
            if last < hole_last and more:
                new_holes.append((last, hole_last))
        if not more:
            new_holes = [(a, min(b, last)) for a, b in new_holes if a < last]
        dgram.holes = new_holes
        if len(dgram.data) < last:
            grow = last - len(dgram.data)
            dgram.data.extend(bytes(grow))
            table.charge(dgram, grow)
        dgram.data[first:last] = payload
        if not dgram.holes and dgram.total_length is not None:
            table.complete(key)
            return bytes(dgram.data[: dgram.total_length])
        table.enforce_memory()
        return None

    def expire(self, now: float) -> None:
        self.table.expire(now)

    def discard(self, key: FragmentKey) -> None:
        """Give up on one datagram under reassembly (counted in `dropped`)."""
        self.table.drop(key)
