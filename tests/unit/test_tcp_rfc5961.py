"""RST/SYN/ACK validation of RFC 9293 3.10.7.4 with the RFC 5961 mitigations."""

from __future__ import annotations

import errno

from tcpscript import Script

from stack.tcp.connection import State, TcpConfig


def test_exact_seq_rst_resets() -> None:
    """RFC 5961 3.2 (1): RST with SEG.SEQ == RCV.NXT resets the connection."""
    s = Script.established()
    s.rx("R", seq=1)
    s.no_tx()
    s.expect_state(State.CLOSED)
    s.expect_error(errno.ECONNRESET)
    s.expect_deadline(None)


def test_exact_seq_rst_ack_resets() -> None:
    s = Script.established()
    s.rx("PA", data=100)
    s.rx("RA", seq=101, ack=1)
    s.no_tx()
    s.expect_state(State.CLOSED)
    s.expect_error(errno.ECONNRESET)


def test_in_window_rst_gets_challenge_ack() -> None:
    """RFC 5961 3.2 (2): an in-window RST that is not exactly RCV.NXT -> challenge ACK."""
    s = Script.established()
    s.rx("R", seq=1 + 5000)
    s.tx("A", seq=1, ack=1)
    s.expect_event("challenge_ack")
    s.expect_state(State.ESTABLISHED)
    s.expect_error(0)
    # The real peer answers the challenge with a RST at RCV.NXT.
    s.rx("R", seq=1)
    s.expect_state(State.CLOSED)
    s.expect_error(errno.ECONNRESET)


def test_out_of_window_rst_ignored() -> None:
    """RFC 5961 3.2 / RFC 9293 3.10.7.4: a RST outside the window is silently dropped."""
    s = Script.established()
    s.rx("R", seq=1 + (4 << 20))  # beyond RCV.NXT + RCV.WND (1 MiB buffer)
    s.rx("R", seq=-100)  # before RCV.NXT
    s.no_tx()
    s.expect_state(State.ESTABLISHED)
    s.expect_event("drop", reason="rst_out_of_window")


def test_syn_on_established_gets_challenge_ack() -> None:
    """RFC 5961 4.2: a SYN in a synchronized state -> challenge ACK, whatever its SEQ."""
    s = Script.established()
    s.rx("S", seq=1 + 100, mss=1460)
    s.tx("A", seq=1, ack=1)
    s.expect_event("challenge_ack")
    s.expect_state(State.ESTABLISHED)
    s.rx("S", seq=12345678, mss=1460)  # out of window: the plain "not acceptable" ACK
    s.tx("A", seq=1, ack=1)
    s.expect_state(State.ESTABLISHED)


def test_syn_ack_on_established_gets_challenge_ack() -> None:
    s = Script.established()
    s.rx("SA", seq=1, ack=1)
    s.tx("A", seq=1, ack=1)
    s.expect_state(State.ESTABLISHED)


def test_ack_of_unsent_data_acked_and_dropped() -> None:
    """RFC 9293 3.10.7.4 fifth / RFC 5961 5.2: SEG.ACK > SND.NXT -> send ACK, drop (the
    segment's data is not delivered)."""
    s = Script.established()
    s.send(100)
    s.tx("PA", length=100)
    s.rx("PA", ack=500, data=50)
    s.tx("A", seq=101, ack=1)
    s.expect_event("drop", reason="ack_of_unsent_data")
    s.expect_vars(rcv=1, una=1, rx_len=0)
    s.expect_state(State.ESTABLISHED)


def test_too_old_ack_gets_challenge_ack() -> None:
    """RFC 5961 5.2: SEG.ACK < SND.UNA - MAX.SND.WND -> challenge ACK, drop."""
    s = Script.established(ws=None)  # MAX.SND.WND = 65535
    s.rx("PA", ack=-70000, data=10)
    s.tx("A", seq=1, ack=1)
    s.expect_event("challenge_ack")
    s.expect_vars(rcv=1, rx_len=0)


def test_old_ack_within_max_window_is_accepted() -> None:
    """SND.UNA - MAX.SND.WND <= SEG.ACK < SND.UNA: the ACK is ignored, the data kept."""
    s = Script.established(ws=None)
    s.rx("PA", ack=-1000, data=10)
    s.expect_vars(rcv=11, rx_len=10)
    s.expect_state(State.ESTABLISHED)


def test_challenge_ack_rate_limit() -> None:
    """RFC 5961 7: challenge ACKs are rate limited (10 per second here)."""
    s = Script.established()
    for i in range(12):
        s.rx("R", seq=1 + 1000 + i)
    acks = s.drain()
    s.expect(len(acks) == 10, f"10 challenge ACKs in the first second, got {len(acks)}")
    s.expect_event("drop", reason="challenge_ack_rate_limited")
    s.wait(1.01)
    s.rx("R", seq=1 + 2000)
    s.tx("A", seq=1, ack=1)
    s.expect_state(State.ESTABLISHED)


def test_rst_in_syn_received_exact_seq() -> None:
    """RFC 9293 3.10.7.4 second, SYN-RECEIVED: an exact RST ends the attempt; an
    in-window one gets a challenge ACK."""
    s = Script()
    s.passive()
    s.tx("SA")
    s.rx("R", seq=1 + 10)
    s.tx("A", seq=1, ack=1)
    s.expect_state(State.SYN_RECEIVED)
    s.rx("R", seq=1)
    s.expect_state(State.CLOSED)


def test_rst_in_time_wait() -> None:
    """RFC 9293 3.10.7.4 second: RST in TIME-WAIT closes quietly."""
    s = Script.established(TcpConfig())
    s.close()
    s.tx("FA")
    s.rx("FA", ack=2)
    s.tx("A", ack=2)
    s.expect_state(State.TIME_WAIT)
    s.rx("R", seq=2)
    s.expect_state(State.CLOSED)
    s.expect_error(0)
    s.no_tx()
