"""IPv4 fragment reassembly (RFC 791 section 3.2, RFC 815 hole descriptors).

Fragments are kept per (src, dst, protocol, identification) until every hole is
filled. Memory is bounded: when the total held exceeds `memory_limit` the oldest
datagram under reassembly is dropped, and each is dropped `timeout` seconds after
its first fragment arrived (RFC 791 section 3.2 suggests a 15 s lower bound; Linux
uses 30 s).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

MAX_DATAGRAM = 65535


@dataclass
class _Datagram:
    first_seen: float
    # RFC 815: a list of holes, initially one from 0 to "infinity".
    holes: list[tuple[int, int]] = field(default_factory=lambda: [(0, MAX_DATAGRAM)])
    data: bytearray = field(default_factory=bytearray)
    total_length: int | None = None
    held: int = 0


FragmentKey = tuple[str, str, int, int]


class FragmentReassembler:
    """Collects fragments; `add` returns the whole payload when the last hole fills."""

    def __init__(self, memory_limit: int = 4 << 20, timeout: float = 30.0) -> None:
        self.memory_limit = memory_limit
        self.timeout = timeout
        self.pending: OrderedDict[FragmentKey, _Datagram] = OrderedDict()
        self.memory = 0
        self.dropped = 0  # datagrams given up (timeout, memory, malformed)

    def add(
        self, key: FragmentKey, offset: int, more: bool, payload: bytes | memoryview, now: float
    ) -> bytes | None:
        self.expire(now)
        first = offset
        last = offset + len(payload)  # one past the fragment's last byte
        if last > MAX_DATAGRAM or (more and len(payload) % 8):
            # RFC 791 section 3.2: all but the last fragment carry multiples of 8 bytes.
            self.discard(key)
            return None
        dgram = self.pending.get(key)
        if dgram is None:
            dgram = _Datagram(first_seen=now)
            self.pending[key] = dgram
        if not more:
            if dgram.total_length is not None and dgram.total_length != last:
                self.discard(key)
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
            dgram.held += grow
            self.memory += grow
        dgram.data[first:last] = payload
        if not dgram.holes and dgram.total_length is not None:
            del self.pending[key]
            self.memory -= dgram.held
            return bytes(dgram.data[: dgram.total_length])
        while self.memory > self.memory_limit and self.pending:
            oldest = next(iter(self.pending))
            self.discard(oldest)
        return None

    def expire(self, now: float) -> None:
        while self.pending:
            key, dgram = next(iter(self.pending.items()))
            if now - dgram.first_seen < self.timeout:
                break
            self.discard(key)

    def discard(self, key: FragmentKey) -> None:
        """Give up on one datagram under reassembly (counted in `dropped`)."""
        dgram = self.pending.pop(key, None)
        if dgram is not None:
            self.memory -= dgram.held
        self.dropped += 1
