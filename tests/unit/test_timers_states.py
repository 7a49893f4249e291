"""The timer object (stack/tcp/timers.py) and the state table (stack/tcp/states.py),
each on its own, and the connection's use of them: CLOSED and TIME-WAIT leave no other
timer running, and an edge outside RFC 9293's diagram raises."""

from __future__ import annotations

import pytest
from tcpscript import Script

from stack.tcp.config import TcpConfig
from stack.tcp.states import TRANSITIONS, IllegalTransition, State, check_transition
from stack.tcp.timers import KINDS, Timers


def test_timers_arm_cancel_due_earliest() -> None:
    t = Timers()
    assert t.earliest() is None and t.running() == {}
    t.arm("rtx", 5.0)
    t.arm("delack", 1.0)
    t.arm("keepalive", 9.0)
    assert t.earliest() == 1.0
    assert not t.due("delack", 0.5)  # not yet
    assert t.due("delack", 1.0)  # expired: reported once, then stopped
    assert not t.due("delack", 2.0)
    assert t.earliest() == 5.0
    t.cancel("rtx")
    assert t.running() == {"keepalive": 9.0}
    for kind in KINDS:
        t.arm(kind, 3.0)
    t.cancel_all()
    assert t.earliest() is None


def test_the_table_has_rfc9293_figure5_and_the_simultaneous_edges() -> None:
    for pair in [
        (State.CLOSED, State.SYN_SENT), (State.SYN_SENT, State.ESTABLISHED),
        (State.SYN_SENT, State.SYN_RECEIVED), (State.FIN_WAIT_1, State.CLOSING),
        (State.CLOSING, State.TIME_WAIT), (State.CLOSE_WAIT, State.LAST_ACK),
        (State.TIME_WAIT, State.CLOSED), (State.ESTABLISHED, State.CLOSED),
    ]:  # fmt: skip
        check_transition(*pair)
    for bad in [(State.ESTABLISHED, State.SYN_SENT), (State.TIME_WAIT, State.ESTABLISHED),
                (State.CLOSED, State.ESTABLISHED), (State.FIN_WAIT_2, State.CLOSING)]:
        assert bad not in TRANSITIONS
        with pytest.raises(IllegalTransition, match="not in RFC 9293"):
            check_transition(*bad)
    # Nothing leaves CLOSED but an OPEN.
    assert {b for a, b in TRANSITIONS if a == State.CLOSED} == {State.LISTEN, State.SYN_SENT}


def test_set_state_refuses_an_edge_outside_the_table() -> None:
    s = Script.established()
    with pytest.raises(IllegalTransition):
        s.conn.set_state(State.SYN_SENT)
    assert s.conn.state == State.ESTABLISHED


def test_time_wait_runs_only_its_own_timer_and_closed_none() -> None:
    s = Script.established(TcpConfig(keepalive=True))
    s.send(100)
    s.tx("PA", seq=1, ack=1)
    s.close()
    s.tx("FA", seq=101, ack=1)
    s.rx("FA", seq=1, ack=102)
    s.tx("A", seq=102, ack=2)
    s.expect_state(State.TIME_WAIT)
    running = s.conn.timers.running()
    s.expect(list(running) == ["timewait"], f"TIME-WAIT timers: {running}")
    s.conn.abort(s.now)
    s.expect(s.conn.timers.running() == {}, "CLOSED runs no timer")
