"""Header prediction (stack/tcp/fastpath.py): which segments take the fast path, and
that the fast path does what the full RFC 9293 3.10.7.4 processing does.

A spy around `fastpath.predicted` (as `Connection.on_segment` calls it) records, per
ESTABLISHED arrival, whether the segment was predicted (True) or went on to the full
path (False)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tcpscript import Script, describe

from stack.tcp import connection, fastpath
from stack.tcp.connection import Connection, State, TcpConfig
from stack.wire.tcp import TCPSegment


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    results: list[bool] = []

    def spy(conn: Connection, seg: TCPSegment, now: float) -> bool:
        done = fastpath.predicted(conn, seg, now)
        results.append(done)
        return done

    monkeypatch.setattr(connection, "predicted", spy)
    yield results


def ready(config: TcpConfig | None = None) -> Script:
    """ESTABLISHED, with SND.WND already taken from a scaled window (the SYN-ACK's is
    unscaled, so the first segment after it changes the window: full path)."""
    s = Script.established(config)
    s.rx("A", ack=1)
    return s


def test_in_order_data_is_predicted_and_every_second_segment_acked(taken: list[bool]) -> None:
    """RFC 1122 4.2.3.2 / RFC 5681 4.2 on the fast path: an ACK at least every second
    full-sized segment, the first one left to the delayed-ACK timer."""
    s = ready()
    taken.clear()
    s.rx("PA", data=1448)  # one full segment (MSS 1460 less 12 bytes of timestamps)
    s.no_tx()
    s.rx("PA", data=1448)
    s.tx("A", seq=1, ack=2897)
    s.expect(taken == [True, True], f"both predicted: {taken}")
    s.expect(len(s.recv()) == 2896, "the bytes are readable")


def test_pure_ack_of_new_data_is_predicted_and_releases_more_data(taken: list[bool]) -> None:
    s = ready()
    s.send(20 * 1448)
    sent = s.drain()
    taken.clear()
    s.rx("A", ack=1 + 2 * 1448)
    s.expect(taken == [True], f"predicted: {taken}")
    s.expect_vars(una=1 + 2 * 1448)
    s.expect(len(s.drain()) > 0, "the window opened by the ACK is used")
    s.expect(len(sent) == 10, "RFC 6928 initial window of 10 segments before the ACK")


@pytest.mark.parametrize(
    "case",
    ["duplicate_ack", "window_change", "sack_blocks", "out_of_order", "fin", "syn",
     "old_timestamp", "ack_of_unsent"],
)  # fmt: skip
def test_anything_else_takes_the_full_path(case: str, taken: list[bool]) -> None:
    s = ready()
    s.send(3 * 1448)
    s.drain()
    segs = {
        "duplicate_ack": lambda: s.make_segment("A", ack=1),
        "window_change": lambda: s.make_segment("A", ack=1449, win=1000),
        "sack_blocks": lambda: s.make_segment("A", ack=1, sack=[(1449, 2897)]),
        "out_of_order": lambda: s.make_segment("PA", seq=1 + 1000, data=100),
        "fin": lambda: s.make_segment("FA", ack=1449),
        "syn": lambda: s.make_segment("SA", ack=1449),
        "old_timestamp": lambda: s.make_segment("PA", data=100, ts=(1, s.last_tsval)),
        "ack_of_unsent": lambda: s.make_segment("A", ack=100000),
    }
    taken.clear()
    s.rx_segment(segs[case]())
    s.expect(taken == [False], f"{case}: not predicted ({taken})")


def test_not_predicted_in_loss_recovery_or_after_close(taken: list[bool]) -> None:
    s = ready(TcpConfig(timestamps=False))
    s.send(6 * 1460)
    s.drain()
    for _ in range(3):  # RFC 5681 3.2 with SACK: the third duplicate ACK
        s.rx("A", ack=1, sack=[(1461, 1461 + 2920)])
    s.expect(s.conn.recovery.in_recovery, "in fast recovery")
    taken.clear()
    s.rx("PA", data=100)
    s.expect(taken == [False], "in recovery the full path decides")

    s2 = ready()
    s2.conn.user_closed = True  # as after close() with nothing unread: RFC 1122 4.2.2.13
    taken.clear()
    s2.rx("PA", data=100)
    s2.expect(taken == [False], "data after close goes to the full path (it resets)")


def scenario(s: Script) -> None:
    """Request/response and bulk data both ways: the segments header prediction takes."""
    s.rx("A", ack=1)
    for _ in range(4):
        s.rx("PA", data=1448)
    s.send(3000)
    s.rx("PA", data=200)
    s.rx("A")
    s.wait(0.3)
    s.send(10 * 1448)
    for _ in range(5):
        s.rx("A", ack=s.var("una") + 1448)
    s.wait(1.0)


def test_the_fast_path_gives_what_the_full_path_gives(
    monkeypatch: pytest.MonkeyPatch, taken: list[bool]
) -> None:
    """Header prediction is only a shortcut: the same scenario with it switched off
    sends the same segments (flags, numbers, windows, timestamps) and ends in the same
    state."""
    config = TcpConfig(keepalive=True, keepalive_idle=0.5, keepalive_interval=0.25)
    fast = Script.established(config)
    scenario(fast)
    assert taken.count(True) >= 10, taken
    monkeypatch.setattr(connection, "predicted", lambda conn, seg, now: False)
    full = Script.established(TcpConfig(keepalive=True, keepalive_idle=0.5,
                                        keepalive_interval=0.25))  # fmt: skip
    scenario(full)
    assert [describe(x) for x in fast.sent] == [describe(x) for x in full.sent]
    for name in ("una", "nxt", "rcv", "cwnd", "snd_wnd", "srtt", "rto"):
        assert fast.var(name) == full.var(name), name
    assert fast.conn.next_deadline() == full.conn.next_deadline()
    assert fast.conn.timers.running() == full.conn.timers.running()
    assert fast.conn.keepalive.last_recv == full.conn.keepalive.last_recv
    assert fast.conn.state == full.conn.state == State.ESTABLISHED
