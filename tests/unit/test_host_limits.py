"""Host-level bounds: drop events are rate-limited per reason, counters stay exact."""

from __future__ import annotations

import json
from pathlib import Path

from stack.host import DROP_EVENT_BURST, DROP_EVENTS_PER_SECOND, Host
from stack.observe.events import EventLog


def test_a_flood_of_bad_packets_is_counted_exactly_but_logged_at_a_bounded_rate(tmp_path: Path) -> None:
    clock = [100.0]
    log = EventLog(tmp_path / "events.jsonl")
    host = Host("10.0.0.2", lambda parts: None, events=log, clock=lambda: clock[0])
    bad = bytes([0x60]) + bytes(39)  # an IPv6 header: "bad_ip_version"
    for _ in range(1000):
        host.receive_packet(bad, clock[0])
    assert host.stats["drop_bad_ip_version"] == 1000
    clock[0] += 1.0  # a second later the budget has refilled a little
    host.receive_packet(bad, clock[0])
    log.close()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    drops = [e for e in events if e["type"] == "drop" and e["reason"] == "bad_ip_version"]
    assert len(drops) == DROP_EVENT_BURST + 1
    assert drops[-1]["suppressed"] == 1000 - DROP_EVENT_BURST
    assert DROP_EVENTS_PER_SECOND >= 1
