"""The JSON-lines event log (``tcplab stack --events FILE``).

One object per line::

    {"t": 1.234567, "type": "retransmit", "conn": "10.0.0.2:7-10.1.0.2:40000", ...}

``t`` is seconds since the log was opened (monotonic clock, 6 decimals), ``type`` names
the event, ``conn`` identifies the connection (or null) and the remaining keys are the
event's fields. When the log is disabled (``path=None``) :meth:`EventLog.emit` returns
at once; hot paths test :attr:`EventLog.enabled` first so they do not even build the
fields.

Writes are buffered and flushed when an event arrives at least 0.2 s after the last
flush, on :meth:`flush` and on :meth:`close`. A driver that wants the file current
during idle periods calls :meth:`flush` from a timer.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, TextIO

FLUSH_INTERVAL = 0.2
_RESERVED = ("t", "type", "conn")


def _default(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj).hex()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    return str(obj)


_encode = json.JSONEncoder(separators=(",", ":"), default=_default).encode


class EventLog:
    def __init__(self, path: str | os.PathLike[str] | None,
                 flush_interval: float = FLUSH_INTERVAL) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.enabled = path is not None
        #: ``time.monotonic()`` at open; event times are relative to it.
        self.t0 = time.monotonic()
        self.flush_interval = flush_interval
        self.count = 0
        self._last_flush = self.t0
        self._f: TextIO | None = None
        if self.path is not None:
            self._f = open(self.path, "w", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115

    def emit(self, type: str, conn: str | None, **fields: Any) -> None:
        """Log an event now."""
        if self._f is None:
            return
        self._write(time.monotonic(), type, conn, fields)

    def emit_at(self, now: float, type: str, conn: str | None, **fields: Any) -> None:
        """Log an event at ``now`` (a ``time.monotonic()`` value the caller already has)."""
        if self._f is None:
            return
        self._write(now, type, conn, fields)

    def _write(self, now: float, type_: str, conn: str | None, fields: dict[str, Any]) -> None:
        f = self._f
        assert f is not None
        record: dict[str, Any] = {"t": round(now - self.t0, 6), "type": type_, "conn": conn}
        if fields:
            for key in _RESERVED:
                if key in fields:
                    raise ValueError(f"event field name {key!r} is reserved")
            record.update(fields)
        f.write(_encode(record))
        f.write("\n")
        self.count += 1
        if now - self._last_flush >= self.flush_interval:
            f.flush()
            self._last_flush = now

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()
            self._last_flush = time.monotonic()

    def close(self) -> None:
        f, self._f = self._f, None
        self.enabled = False
        if f is not None:
            f.close()

    @property
    def closed(self) -> bool:
        return self._f is None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBudget:
    """At most `per_second` events per key (after a burst of `burst`) into an event log.

    For events a flood could cause (a packet dropped, a client refused): past the
    budget, events of that key are skipped, and the next one logged carries
    `suppressed`, how many were. Counters kept beside it stay exact.
    """

    def __init__(self, events: EventLog, per_second: float, burst: float) -> None:
        self.events = events
        self.per_second = per_second
        self.burst = burst
        self._state: dict[str, tuple[float, float, int]] = {}  # key: (tokens, time, skipped)

    def emit(self, key: str, now: float, type_: str, conn: str | None, **fields: Any) -> None:
        tokens, last, skipped = self._state.get(key, (self.burst, now, 0))
        tokens = min(self.burst, tokens + (now - last) * self.per_second)
        if tokens < 1:
            self._state[key] = (tokens, now, skipped + 1)
            return
        self._state[key] = (tokens - 1, now, 0)
        if skipped:
            fields["suppressed"] = skipped
        self.events.emit(type_, conn, **fields)


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Parse an event log; a torn last line (the writer is still running) is skipped."""
    events: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            line = line.strip()
            if line:
                events.append(json.loads(line))
    return events
