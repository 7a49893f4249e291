"""Token buckets for ICMP errors (RFC 4443 section 2.4 (f), RFC 1812 section 4.3.2.8).

RFC 4443 section 2.4 (f): an IPv6 node MUST limit the rate of ICMPv6 error messages
it sends to each sender of erroneous packets; a token bucket with a burst of B and
a rate of N per second is the suggested mechanism (B = 10, N = 10/s for a small
device), with configurable parameters. :class:`ErrorRateLimiter` keeps one bucket
per destination of the errors (bounded: the least recently used are forgotten)
behind one bucket for all of them, so neither one noisy peer nor many spoofed
sources can make the host send errors at line rate.

Sans-IO: every call takes ``now`` (seconds, any monotonic origin).
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["ErrorRateLimiter", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; each message takes one."""

    __slots__ = ("burst", "rate", "_last", "_tokens")

    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"token bucket needs rate > 0 and burst >= 1, not {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def allow(self, now: float) -> bool:
        """Take a token if there is one (refilled for the time since the last call)."""
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    @property
    def tokens(self) -> float:
        return self._tokens


class ErrorRateLimiter:
    """Per-destination token buckets behind a host-wide one (RFC 4443 2.4 (f))."""

    def __init__(self, per_peer_rate: float = 10.0, per_peer_burst: float = 10.0,
                 total_rate: float = 100.0, total_burst: float = 100.0,
                 max_peers: int = 1024) -> None:
        self.per_peer_rate = per_peer_rate
        self.per_peer_burst = per_peer_burst
        self.max_peers = max_peers
        self.total = TokenBucket(total_rate, total_burst)
        self._peers: OrderedDict[str, TokenBucket] = OrderedDict()
        self.limited = 0  # errors not sent

    def allow(self, peer: str, now: float) -> bool:
        """May an error go to ``peer`` now? (Counts the refusals in :attr:`limited`.)"""
        bucket = self._peers.get(peer)
        if bucket is None:
            bucket = TokenBucket(self.per_peer_rate, self.per_peer_burst, now)
            self._peers[peer] = bucket
            if len(self._peers) > self.max_peers:
                self._peers.popitem(last=False)
        else:
            self._peers.move_to_end(peer)
        # The peer's bucket first: a peer over its own limit does not drain the
        # host-wide bucket that the others share.
        if bucket.allow(now) and self.total.allow(now):
            return True
        self.limited += 1
        return False

    @property
    def peers(self) -> int:
        return len(self._peers)
