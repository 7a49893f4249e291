"""Reading the event log: small questions the lab checks and ``tcplab plot`` ask.

Events are the dicts of ``stack.observe.events.read_events``: ``t``, ``type``, ``conn``
and the event's fields.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]


def of_conn(events: list[Event], conn: str) -> list[Event]:
    return [e for e in events if e.get("conn") == conn]


def connections(events: list[Event]) -> list[str]:
    """Connection ids in order of first appearance."""
    seen: dict[str, None] = {}
    for e in events:
        c = e.get("conn")
        if isinstance(c, str) and "-" in c:
            seen.setdefault(c, None)
    return list(seen)


def busiest(events: list[Event], types: tuple[str, ...] = ()) -> str | None:
    counts = Counter(e["conn"] for e in events
                     if isinstance(e.get("conn"), str) and (not types or e.get("type") in types))
    return counts.most_common(1)[0][0] if counts else None


def stack_address(events: list[Event], default: str = "10.0.0.2") -> str:
    """The stack's own address: the local side of the connection ids."""
    for c in connections(events):
        return c.split(":", 1)[0]
    return default


def states(events: list[Event], conn: str) -> list[str]:
    """The states a connection went through, starting with the first ``from``."""
    out: list[str] = []
    for e in of_conn(events, conn):
        if e.get("type") == "state":
            if not out:
                out.append(str(e.get("from")))
            out.append(str(e.get("to")))
    return out


@dataclass
class Backoff:
    """Consecutive retransmission timeouts of one segment (RFC 6298 section 5.5)."""

    conn: str
    seq: int
    times: list[float]  # event times of the RTO retransmissions of `seq`
    rto_before: float | None  # the RTO of the last rtt event before the first timeout

    @property
    def intervals(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]

    def ratios(self) -> list[float]:
        """How much each wait grew over the one before: 2.0 is RFC 6298's doubling.

        With a single interval, the wait before the first timeout is taken to be the
        RTO of the last RTT sample -- right unless an earlier timeout (of another
        segment) had already doubled it, so longer chains use their own waits only."""
        waits = list(self.intervals)
        if len(waits) < 2 and self.rto_before:
            waits.insert(0, self.rto_before)
        return [b / a for a, b in zip(waits, waits[1:], strict=False) if a > 0]

    def doubles(self, low: float = 1.6, high: float = 2.6) -> bool:
        ratios = self.ratios()
        return bool(ratios) and all(low <= r <= high for r in ratios)


def backoffs(events: list[Event], conn: str | None = None, data_only: bool = False) -> list[Backoff]:
    """Segments retransmitted by timeout more than once in a row (with ``data_only``,
    only segments carrying data: no SYN or FIN alone)."""
    out: list[Backoff] = []
    conns = [conn] if conn is not None else connections(events)
    for c in conns:
        last_rto: float | None = None
        chain: dict[int, list[float]] = {}
        rto_at_start: dict[int, float | None] = {}
        for e in of_conn(events, c):
            kind = e.get("type")
            if kind == "rtt":
                last_rto = float(e["rto"])
                # a new RTT sample ends any backoff (RFC 6298 section 5, after 5.7)
                for seq, times in chain.items():
                    if len(times) >= 2:
                        out.append(Backoff(c, seq, times, rto_at_start.get(seq)))
                chain.clear()
            elif kind == "retransmit" and e.get("reason") == "rto":
                if data_only and not e.get("len"):
                    continue
                seq = int(e["seq"])
                if seq not in chain:
                    chain[seq] = []
                    rto_at_start[seq] = last_rto
                chain[seq].append(float(e["t"]))
        for seq, times in chain.items():
            if len(times) >= 2:
                out.append(Backoff(c, seq, times, rto_at_start.get(seq)))
    return out


def rto_backoff_points(events: list[Event], conn: str) -> list[tuple[float, float]]:
    """(time, wait since the previous timeout of the same segment) for every repeated
    timeout: the backed-off RTO actually used."""
    points = []
    for b in backoffs(events, conn):
        for t, wait in zip(b.times[1:], b.intervals, strict=False):
            points.append((t, wait))
    return sorted(points)
