"""The timers of one TCP connection, as one object.

Owns: the deadline of each of a connection's timers (absolute times on the driver's
clock, None when not running), and the operations on them: `arm`, `cancel`,
`cancel_all`, `earliest` (when the driver must wake the connection) and `due` (has
this one expired). Nothing here reads a clock or calls back: the connection asks
`due` for each kind in `on_timer` and acts.

The kinds, and the rule each one serves:

==============  ===============================================================
``rtx``         retransmission timeout (RFC 6298; SYN retries RFC 9293 3.8.1)
``pto``         tail loss probe (RFC 8985 section 7)
``rack``        RACK reordering timer (RFC 8985 section 6.3)
``delack``      delayed ACK (RFC 1122 4.2.3.2, RFC 5681 4.2)
``persist``     zero-window probe / SWS override (RFC 9293 3.8.6.1, 3.8.6.2.1)
``keepalive``   keepalive probes (RFC 1122 4.2.3.6)
``timewait``    2 MSL in TIME-WAIT (RFC 9293 3.6, 3.10.8)
``finwait2``    FIN-WAIT-2 of a connection the user closed (as Linux)
``connect``     the handshake's time limit (RFC 1122 4.2.3.5; TCP_KEEPINIT)
==============  ===============================================================

Each kind is a plain attribute, so the data path can test one (``timers.delack is
None``) as cheaply as a field of the connection. Terminating a connection or entering
TIME-WAIT calls `cancel_all`, so no timer can be left running by a forgotten line.
"""

from __future__ import annotations

KINDS: tuple[str, ...] = (
    "rtx", "pto", "rack", "delack", "persist", "keepalive", "timewait", "finwait2", "connect",
)


class Timers:
    """The deadlines of one connection's timers; see the module comment."""

    __slots__ = KINDS
    rtx: float | None
    pto: float | None
    rack: float | None
    delack: float | None
    persist: float | None
    keepalive: float | None
    timewait: float | None
    finwait2: float | None
    connect: float | None

    def __init__(self) -> None:
        self.cancel_all()

    def arm(self, kind: str, at: float) -> None:
        """(Re)start timer `kind` to expire at time `at`."""
        setattr(self, kind, at)

    def cancel(self, kind: str) -> None:
        setattr(self, kind, None)

    def cancel_all(self) -> None:
        self.rtx = self.pto = self.rack = self.delack = self.persist = None
        self.keepalive = self.timewait = self.finwait2 = self.connect = None

    def due(self, kind: str, now: float) -> bool:
        """Timer `kind` runs and has expired at `now`; it is stopped (it fires once)."""
        at = getattr(self, kind)
        if at is not None and now >= at:
            setattr(self, kind, None)
            return True
        return False

    def earliest(self) -> float | None:
        """The earliest deadline of all running timers, None if none runs."""
        best = self.rtx
        for at in (self.pto, self.rack, self.delack, self.persist, self.keepalive, self.timewait,
                   self.finwait2, self.connect):  # fmt: skip
            if at is not None and (best is None or at < best):
                best = at
        return best

    def running(self) -> dict[str, float]:
        """The running timers and their deadlines (for tests and introspection)."""
        return {k: at for k in KINDS if (at := getattr(self, k)) is not None}
