"""IPv6 fragment reassembly (RFC 8200 section 4.5, RFC 5722, RFC 6946, RFC 7112).

Fragments are kept per (source, destination, identification) (section 4.5) in the
bounded table of ``stack/ipfrag.py`` until their data covers the whole fragmentable
part. What differs from IPv4:

* overlapping fragments are forbidden (RFC 5722 section 4): when one overlaps
  another, the whole datagram is silently discarded, and so are its fragments
  still to come (the key is remembered until the datagram would have timed out).
  An exact duplicate (same offset, same bytes) is only dropped itself, as
  RFC 8200 section 4.5 allows;
* atomic fragments (offset 0, M clear) never get here: the extension header walk
  passes them on as whole packets (RFC 6946 section 4);
* the errors are ICMPv6 ones: a non-final fragment whose length is not a multiple of
  8 (Parameter Problem code 0 at Payload Length), one that would make the packet
  exceed 65535 octets (code 0 at the Fragment Offset), a first fragment without the
  whole header chain (code 3, RFC 7112 section 5), and a timeout after 60 s
  (section 4.5) with Time Exceeded code 1 when the first fragment had arrived,
  which :meth:`Ipv6Reassembler.expire` returns for the caller to send;
* the reassembled packet is the first fragment's unfragmentable part (its Payload
  Length recomputed and the Next Header that named the Fragment header replaced by
  the Fragment header's) followed by the fragment data (section 4.5).

Memory: every fragment is charged its bytes plus :data:`FRAGMENT_OVERHEAD` (the
bookkeeping), so a flood of tiny fragments meets the bound as soon as big ones do.
Sans-IO: every call takes ``now``.
"""

from __future__ import annotations

import bisect
import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from stack.ipfrag import DEFAULT_MAX_DATAGRAMS, FragmentTable, PendingDatagram
from stack.wire.errors import WireError
from stack.wire.icmpv6 import MAX_ERROR_QUOTE
from stack.wire.ipv4 import IPPROTO_TCP, IPPROTO_UDP
from stack.wire.ipv6 import (
    IPPROTO_ICMPV6,
    IPV6_HEADER_LEN,
    PP_BAD_HEADER_FIELD,
    PP_FIRST_FRAGMENT_INCOMPLETE,
    FragmentHeader,
    ParameterProblem,
    walk_headers,
)

__all__ = ["FRAGMENT_OVERHEAD", "REASSEMBLY_TIMEOUT", "Expired", "Ipv6Reassembler",
           "Reassembled"]

#: RFC 8200 section 4.5: reassembly is abandoned 60 s after the first-arriving fragment.
REASSEMBLY_TIMEOUT = 60.0
#: Bytes charged per fragment on top of its data (list entry, bytes object).
FRAGMENT_OVERHEAD = 96
_MAX_PAYLOAD = 0xFFFF
# The smallest upper-layer header the first fragment must hold (RFC 7112 section 5
# asks for the whole header chain, through the upper-layer header).
_MIN_UPPER_HEADER = {IPPROTO_TCP: 20, IPPROTO_UDP: 8, IPPROTO_ICMPV6: 4}

Key = tuple[str, str, int]


@dataclass
class _Datagram(PendingDatagram):
    starts: list[int] = field(default_factory=list)  # sorted fragment offsets
    pieces: list[tuple[int, bytes]] = field(default_factory=list)  # (end, data) by start
    received: int = 0  # fragment data bytes held
    total: int | None = None  # length of the fragmentable part (from the last fragment)
    unfragmentable: bytes | None = None  # from the first fragment, Next Header fixed
    next_header: int = 0  # the first fragment's Fragment header's Next Header
    next_header_at: int = 6  # where the Next Header that named the Fragment header is
    first_quote: bytes | None = None  # the first fragment as an ICMPv6 error quotes it


@dataclass(slots=True)
class Reassembled:
    """A whole packet again: walk on from ``at`` with ``next_header``; the Next Header
    field holding it is at ``next_header_at``."""

    packet: bytes
    next_header: int
    at: int
    next_header_at: int


@dataclass(slots=True)
class Expired:
    """A datagram abandoned after the timeout. ``first_quote`` is the first fragment
    (as much as an error quotes) when it had arrived: then a Time Exceeded code 1
    goes to ``src`` (RFC 8200 section 4.5)."""

    src: str
    dst: str
    first_quote: bytes | None


class Ipv6Reassembler:
    """Collects IPv6 fragments; :meth:`add` returns the packet when it is whole."""

    def __init__(self, memory_limit: int = 4 << 20, timeout: float = REASSEMBLY_TIMEOUT,
                 max_datagrams: int = DEFAULT_MAX_DATAGRAMS) -> None:
        self.table: FragmentTable[Key, _Datagram] = FragmentTable(
            memory_limit, timeout, max_datagrams)
        # RFC 5722 section 4: datagrams discarded for an overlap, until they would
        # have timed out; their later fragments are discarded too.
        self._discarded: OrderedDict[Key, float] = OrderedDict()
        self.max_discarded = max_datagrams
        self.duplicates = 0

    @property
    def pending(self) -> OrderedDict[Key, _Datagram]:
        return self.table.pending

    @property
    def memory(self) -> int:
        return self.table.memory

    def add(self, src: str, dst: str, packet: memoryview, frag: FragmentHeader,
            now: float) -> Reassembled | None:
        """One fragment: ``packet`` is the whole IPv6 packet (trimmed to its Payload
        Length), ``frag`` its Fragment header as the walk found it.

        Returns the reassembled packet once complete, else None. Raises
        :class:`ParameterProblem` for a fragment to answer with an error and
        :class:`WireError` for one to discard silently (its datagram is then
        discarded too when the RFC says so).
        """
        table = self.table
        key = (src, dst, frag.ident)
        data = packet[frag.data_at :]
        size = len(data)
        start = frag.offset
        end = start + size
        # RFC 8200 section 4.5: a fragment that is not the last must carry a multiple
        # of 8 octets; else discard it, Parameter Problem code 0 at Payload Length.
        if frag.more and size % 8:
            raise ParameterProblem("ipv6_fragment_length", PP_BAD_HEADER_FIELD, 4)
        # RFC 8200 section 4.5: a fragment that would make the reassembled Payload
        # Length exceed 65535: discard it, code 0 pointing at the Fragment Offset.
        if frag.header_at - IPV6_HEADER_LEN + end > _MAX_PAYLOAD:
            raise ParameterProblem("ipv6_fragment_too_long", PP_BAD_HEADER_FIELD,
                                   frag.header_at + 2)
        if start == 0:
            _check_header_chain(packet, frag)
        if size == 0:
            raise WireError("ipv6_fragment_empty", f"offset {start}")
        self._forget_discarded(now)
        if key in self._discarded:
            raise WireError("ipv6_fragment_of_discarded", f"id {frag.ident:#x}")
        dgram = table.get_or_create(key, lambda: _Datagram(first_seen=now))
        i = bisect.bisect_left(dgram.starts, start)
        # An exact duplicate: the same offset, the same bytes (section 4.5 note).
        if i < len(dgram.starts) and dgram.starts[i] == start:
            old_end, old_data = dgram.pieces[i]
            if old_end == end and old_data == data:
                self.duplicates += 1
                raise WireError("ipv6_fragment_duplicate", f"offset {start}")
            self._overlap(key, now)
        # RFC 5722 section 4: any overlap with a neighbour discards the datagram.
        if i > 0 and dgram.pieces[i - 1][0] > start:
            self._overlap(key, now)
        if i < len(dgram.starts) and dgram.starts[i] < end:
            self._overlap(key, now)
        if not frag.more:
            if dgram.total is not None and dgram.total != end:
                table.drop(key)
                raise WireError("ipv6_fragment_inconsistent", "two different last fragments")
            if dgram.starts and dgram.pieces[-1][0] > end:
                table.drop(key)
                raise WireError("ipv6_fragment_inconsistent", "data beyond the last fragment")
            dgram.total = end
        elif dgram.total is not None and end > dgram.total:
            table.drop(key)
            raise WireError("ipv6_fragment_inconsistent", "data beyond the last fragment")
        piece = bytes(data)
        dgram.starts.insert(i, start)
        dgram.pieces.insert(i, (end, piece))
        dgram.received += size
        charge = size + FRAGMENT_OVERHEAD
        if start == 0:
            # RFC 8200 section 4.5: the unfragmentable part comes from the first
            # fragment, with the Next Header field that named the Fragment header
            # set to the Fragment header's Next Header.
            unfrag = bytearray(packet[: frag.header_at])
            unfrag[frag.next_header_at] = frag.next_header
            dgram.unfragmentable = bytes(unfrag)
            dgram.next_header = frag.next_header
            dgram.next_header_at = frag.next_header_at
            dgram.first_quote = bytes(packet[:MAX_ERROR_QUOTE])
            charge += len(unfrag) + len(dgram.first_quote)
        table.charge(dgram, charge)
        if dgram.total is not None and dgram.received == dgram.total and dgram.unfragmentable:
            # No overlaps, nothing beyond the end: the bytes cover [0, total).
            table.complete(key)
            return _rebuild(dgram)
        table.enforce_memory()
        return None

    def expire(self, now: float) -> list[Expired]:
        """Abandon the datagrams older than the timeout (call it from the timer tick)."""
        self._forget_discarded(now)
        return [Expired(key[0], key[1], dgram.first_quote)
                for key, dgram in self.table.expire(now)]

    def _overlap(self, key: Key, now: float) -> None:
        dgram = self.table.drop(key)
        first_seen = dgram.first_seen if dgram is not None else now
        self._discarded[key] = first_seen + self.table.timeout
        if len(self._discarded) > self.max_discarded:
            self._discarded.popitem(last=False)
        raise WireError("ipv6_fragment_overlap", f"id {key[2]:#x}")

    def _forget_discarded(self, now: float) -> None:
        discarded = self._discarded
        while discarded:
            key, until = next(iter(discarded.items()))
            if until > now:
                break
            del discarded[key]


def _check_header_chain(packet: memoryview, frag: FragmentHeader) -> None:
    """RFC 7112 section 5: the first fragment must hold the whole header chain, else
    it is discarded with Parameter Problem code 3, pointer 0 (its Next Header values
    and options are judged after reassembly, not here)."""
    try:
        chain = walk_headers(packet, next_header=frag.next_header, at=frag.data_at,
                             next_header_at=frag.header_at)
    except ParameterProblem as exc:
        if exc.reason == "truncated_ipv6_extension_header":
            raise ParameterProblem("ipv6_first_fragment_incomplete",
                                   PP_FIRST_FRAGMENT_INCOMPLETE, 0) from None
        return
    except WireError:
        return
    need = _MIN_UPPER_HEADER.get(chain.next_header, 0)
    if chain.fragment is None and len(packet) - chain.at < need:
        raise ParameterProblem("ipv6_first_fragment_incomplete", PP_FIRST_FRAGMENT_INCOMPLETE, 0)


def _rebuild(dgram: _Datagram) -> Reassembled:
    unfrag = dgram.unfragmentable
    assert unfrag is not None and dgram.total is not None
    out = bytearray(unfrag)
    struct.pack_into("!H", out, 4, len(unfrag) - IPV6_HEADER_LEN + dgram.total)
    for _end, data in dgram.pieces:
        out += data
    # The walk continues where the Fragment header was.
    return Reassembled(bytes(out), dgram.next_header, len(unfrag), dgram.next_header_at)
