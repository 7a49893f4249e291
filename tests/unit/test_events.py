"""stack.observe.events: the JSON-lines event log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from stack.observe.events import EventLog, read_events


def test_lines_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(str(path))
    assert log.enabled
    log.emit("state", "c1", old="SYN-RECEIVED", new="ESTABLISHED")
    log.emit("rtt", None, sample=0.0123, srtt=0.01)
    log.emit("blob", "c2", data=b"\x01\x02", pair=(1, 2))
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert list(first)[:3] == ["t", "type", "conn"]
    assert first["type"] == "state" and first["conn"] == "c1"
    assert first["old"] == "SYN-RECEIVED" and first["new"] == "ESTABLISHED"
    second = json.loads(lines[1])
    assert second["conn"] is None and second["sample"] == 0.0123
    third = json.loads(lines[2])
    assert third["data"] == "0102" and third["pair"] == [1, 2]
    assert read_events(path) == [first, second, third]


def test_time_is_relative_monotonic_six_decimals(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    with EventLog(path) as log:
        log.emit("a", None)
        log.emit_at(log.t0 + 1.23456789, "b", "x")
        log.emit_at(log.t0 + 0.5, "c", "x")
    events = read_events(path)
    assert 0 <= events[0]["t"] < 5
    assert events[1]["t"] == 1.234568
    assert events[2]["t"] == 0.5


def test_disabled_is_noop() -> None:
    log = EventLog(None)
    assert not log.enabled
    log.emit("x", None, a=1)
    log.emit_at(0.0, "x", None)
    log.flush()
    log.close()
    log.close()


def test_reserved_field_names(tmp_path: Path) -> None:
    with EventLog(tmp_path / "e.jsonl") as log, pytest.raises(ValueError):
        log.emit("x", None, t=1)


def test_buffered_then_flushed(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    log = EventLog(path, flush_interval=3600)
    log.emit("a", None)
    assert path.read_text() == ""  # buffered
    log.flush()
    assert len(read_events(path)) == 1
    log.emit("b", None)
    log.close()
    assert [e["type"] for e in read_events(path)] == ["a", "b"]
    assert not log.enabled
    log.emit("after-close", None)  # ignored


def test_periodic_flush(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    log = EventLog(path, flush_interval=0.05)
    log.emit("a", None)
    time.sleep(0.06)
    log.emit("b", None)  # more than flush_interval since open: flushed with this one
    assert [e["type"] for e in read_events(path)] == ["a", "b"]
    log.close()


def test_read_events_skips_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text('{"t":0.1,"type":"a","conn":null}\n{"t":0.2,"ty')
    assert read_events(path) == [{"t": 0.1, "type": "a", "conn": None}]
