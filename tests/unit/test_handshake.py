"""The opening handshake (stack/tcp/handshake.py): what the `Handshake` part keeps and
the rules it owns that the state tests do not show. (Active, passive and simultaneous
open, SYN-SENT resets and bad ACKs, SYN retries and the 3 s fallback RTO are in
test_tcp_states.py; the SYN's text in test_tcp_conformance.py; Fast Open in
test_tcp_fastopen.py; the time limit in test_connect_timeout.py.)"""

from __future__ import annotations

from tcpscript import Script, pattern

from stack.tcp.connection import State, TcpConfig


def test_simultaneous_open_keeps_the_syn_text_and_fin_until_established() -> None:
    """RFC 9293 3.10.7.3: a SYN without ACK in SYN-SENT -> SYN-RECEIVED; "If there are
    other controls or text in the segment, queue them for processing after the
    ESTABLISHED state has been reached". Text first, then the FIN: CLOSE-WAIT."""
    s = Script()
    s.connect()
    s.tx("S", seq=0)
    s.rx("SF", seq=0, mss=1460, data=3, ts=None)
    s.tx("SA", seq=0, ack=1)
    s.expect_state(State.SYN_RECEIVED)
    s.expect(s.conn.handshake.syn_text == (pattern(3), True), "text and FIN queued")
    s.expect_vars(rcv=0 + 1, rx_len=0)
    s.rx("A", seq=5, ack=1, ts=None)
    s.expect(s.conn.handshake.syn_text is None, "taken once")
    s.expect_event("state", frm="SYN-RECEIVED", to="ESTABLISHED")
    s.expect_state(State.CLOSE_WAIT)
    s.expect_vars(rcv=5)
    s.expect(s.recv() == pattern(3), "the SYN's text, in order")


def test_answer_to_a_syn_offers_an_unscaled_window() -> None:
    """RFC 7323 2.2: the windows of SYN and SYN-ACK are never scaled: SND.WND is the
    SYN's field as it is, and what our SYN-ACK offers (RCV.NXT + the field) is the
    right edge the peer may fill before it sees a scaled window."""
    cfg = TcpConfig(recv_buffer=1 << 20)
    s = Script(cfg)
    s.passive(win=20000, ws=7)
    synack = s.tx("SA", seq=0, ack=1, win=65535)
    s.expect(synack.options.wscale is not None, "our scale is offered")
    s.expect_vars(snd_wnd=20000, max_snd_wnd=20000)
    s.expect(s.conn.rcv.right == s.conn.rcv.nxt + 65535, "right edge of the unscaled offer")


def test_the_handshake_time_limit_runs_only_until_established() -> None:
    """RFC 1122 4.2.3.5 (TCP_KEEPINIT): armed by either open, cleared by the ACK that
    completes the handshake, so it cannot end an established connection."""
    cfg = TcpConfig(connect_timeout=5.0)
    active = Script(cfg)
    active.connect()
    active.expect(active.conn.timers.connect == 5.0, "armed by connect")
    active.rx("SA", seq=0, ack=1, mss=1460, ts=None)
    active.expect(active.conn.timers.connect is None, "cleared in ESTABLISHED")

    passive = Script(TcpConfig(connect_timeout=5.0), now=1.0)
    passive.passive()
    passive.expect(passive.conn.timers.connect == 6.0, "armed by the answer to the SYN")
    passive.tx("SA")
    passive.rx("A", seq=1, ack=1)
    passive.expect_state(State.ESTABLISHED)
    passive.expect(passive.conn.timers.connect is None, "cleared in ESTABLISHED")
    passive.wait(10.0)
    passive.expect_state(State.ESTABLISHED)


def test_a_retransmitted_syn_ack_echoes_the_peers_timestamp() -> None:
    """RFC 7323 3.2: an <ACK>-bearing segment MUST echo TS.Recent -- the SYN-ACK of a
    passive open also when the RTO sends it again; the SYN of an active open, which
    has no ACK, echoes 0, also when sent again."""
    p = Script()
    p.passive(ts=True)
    first = p.tx("SA", seq=0, ack=1)
    p.fire()
    again = p.tx("SA", seq=0, ack=1)
    assert first.options.timestamp is not None and again.options.timestamp is not None
    p.expect(again.options.timestamp[1] == first.options.timestamp[1] != 0, "echo kept")

    a = Script()
    a.connect()
    a.tx("S", seq=0, tsecr=0)
    a.fire()
    a.tx("S", seq=0, tsecr=0)
