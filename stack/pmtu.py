"""Path MTU per destination (RFC 8201 for IPv6; RFC 1191 is the IPv4 original).

Sans-IO: the host tells :class:`PathMtuCache` about each Packet Too Big it believes
(the caller checks that the quoted packet is one of ours, RFC 8201 section 5.1 and
RFC 5927) and asks it for the current estimate before sending.

RFC 8201 section 4: the estimate starts at the first hop's MTU (the link MTU), is
lowered to the MTU a Packet Too Big reports, is never raised by one, and never goes
below the IPv6 minimum link MTU of 1280 octets even when a message reports less.
Section 4 also asks the node to try a larger estimate again only after a while
(at least 5 minutes, 10 recommended): an entry ages out after ``aging`` seconds
and the destination gets the link MTU again. The table is bounded (least recently
lowered entries go first).
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["IPV6_MIN_MTU", "PMTU_AGING", "PathMtuCache"]

IPV6_MIN_MTU = 1280
#: RFC 8201 section 4: no increase is tried in less than 5 minutes; 10 recommended.
PMTU_AGING = 600.0


class PathMtuCache:
    """Path MTU estimates for destinations whose path is narrower than the link."""

    def __init__(self, link_mtu: int, *, minimum: int = IPV6_MIN_MTU,
                 aging: float = PMTU_AGING, max_entries: int = 4096) -> None:
        if link_mtu < minimum:
            raise ValueError(f"link MTU {link_mtu} is below the minimum {minimum}")
        self.link_mtu = link_mtu
        self.minimum = minimum
        self.aging = aging
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[int, float]] = OrderedDict()  # dst: (mtu, since)

    def get(self, dst: str, now: float) -> int:
        """The current estimate for ``dst`` (the link MTU when nothing is known)."""
        entry = self._entries.get(dst)
        if entry is None:
            return self.link_mtu
        mtu, since = entry
        if now - since >= self.aging:
            del self._entries[dst]  # RFC 8201 section 4: time to try the link MTU again
            return self.link_mtu
        return mtu

    def packet_too_big(self, dst: str, reported: int, now: float) -> int | None:
        """A believed Packet Too Big for ``dst`` reporting ``reported``: returns the
        lowered estimate, or None when it changes nothing (RFC 8201 section 4)."""
        current = self.get(dst, now)
        mtu = max(reported, self.minimum)  # never below 1280, whatever was reported
        if mtu >= current:
            return None  # a Packet Too Big never raises the estimate
        self._entries[dst] = (mtu, now)
        self._entries.move_to_end(dst)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return mtu

    def __len__(self) -> int:
        return len(self._entries)
