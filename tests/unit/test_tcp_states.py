"""Connection state machine, rule by rule: opening, closing, resets (RFC 9293 3.5-3.6)."""

from __future__ import annotations

import errno

import pytest
from tcpscript import Script, pattern

from stack.tcp.connection import State, TcpConfig

# ------------------------------------------------------------------ opening


def test_active_open() -> None:
    """RFC 9293 3.5 figure 6: SYN, SYN-ACK, ACK; our SYN carries all our options."""
    s = Script()
    s.connect()
    s.tx("S", seq=0, win=65535, mss=1460, ws=5, sackok=True, ts=(0, 0))
    s.expect_state(State.SYN_SENT)
    s.expect_deadline(1.0)  # RFC 6298 2.1: initial RTO 1 s
    s.expect_event("state", frm="CLOSED", to="SYN-SENT")
    s.wait(0.05)
    s.rx("SA", seq=0, ack=1, win=30000, mss=1400, ws=3, sackok=True, ts=(500, 0))
    s.tx("A", seq=1, ack=1, tsecr=500)
    s.no_tx()
    s.expect_state(State.ESTABLISHED)
    s.expect_event("state", frm="SYN-SENT", to="ESTABLISHED")
    # The SYN-ACK's window is not scaled (RFC 7323 2.2); the options are settled.
    s.expect_vars(snd_wnd=30000, snd_wscale=3, rcv_wscale=5, ts_ok=True, sack_ok=True,
                  peer_mss=1400, snd_mss=1388, una=1, nxt=1, rcv=1)  # fmt: skip
    s.expect_deadline(None)  # nothing in flight, no timers


def test_passive_open() -> None:
    """RFC 9293 3.10.7.2: LISTEN gets SYN -> SYN-RECEIVED, SYN-ACK; ACK -> ESTABLISHED."""
    s = Script()
    s.passive(mss=1400, ws=2, sackok=True, ts=True, win=20000)
    s.expect_state(State.SYN_RECEIVED)
    s.expect_event("state", frm="LISTEN", to="SYN-RECEIVED")
    s.tx("SA", seq=0, ack=1, win=65535, mss=1460, ws=5, sackok=True, tsecr=100)
    s.expect_deadline(1.0)
    s.rx("A", seq=1, ack=1, win=5000)
    s.no_tx()
    s.expect_state(State.ESTABLISHED)
    s.expect_vars(snd_wnd=5000 << 2, una=1, rcv=1)
    s.expect_deadline(None)


def test_passive_open_syn_ack_retransmitted_then_timeout() -> None:
    """The SYN-ACK is retransmitted with backoff; after synack_retries the attempt dies."""
    s = Script(TcpConfig(synack_retries=2))
    s.passive()
    s.tx("SA", seq=0)
    s.fire()
    s.expect(s.now == 1.0, "first retransmission at RTO 1 s")
    s.tx("SA", seq=0, ack=1)
    s.fire()
    s.expect(s.now == 3.0, "second after 2 s more")
    s.tx("SA", seq=0, ack=1)
    s.fire()
    s.expect(s.now == 7.0, "gives up after 4 s more")
    s.no_tx()
    s.expect_state(State.CLOSED)
    s.expect_error(errno.ETIMEDOUT)


def test_simultaneous_open() -> None:
    """RFC 9293 figure 8: SYN-SENT gets a SYN -> SYN-RECEIVED (SYN-ACK), then the
    peer's SYN-ACK -> ESTABLISHED."""
    s = Script(ts_offset=7000)
    s.connect()
    s.tx("S", seq=0)
    s.wait(0.01)
    s.rx("S", seq=0, win=40000, mss=1460, ws=4, sackok=True, ts=(300, 0))
    s.expect_state(State.SYN_RECEIVED)
    # RFC 7323 3.2: an <ACK>-bearing segment MUST echo the peer's TSval.
    s.tx("SA", seq=0, ack=1, tsecr=300)
    s.rx("SA", seq=0, ack=1, win=40000, ts=(310, s.last_tsval))
    s.expect_state(State.ESTABLISHED)
    s.expect_event("state", frm="SYN-RECEIVED", to="ESTABLISHED")
    # RFC 7323 2.2: the window of a segment with SYN set is never scaled.
    s.expect_vars(snd_wnd=40000, una=1, rcv=1)
    s.no_tx()
    s.send(100)
    s.tx("PA", seq=1, ack=1, length=100)


def test_syn_sent_rst_ack_refused() -> None:
    """RFC 9293 3.10.7.3: an acceptable RST+ACK in SYN-SENT -> CLOSED, "connection refused"."""
    s = Script()
    s.connect()
    s.tx("S")
    s.rx("RA", seq=0, ack=1, ts=None)
    s.no_tx()
    s.expect_state(State.CLOSED)
    s.expect_error(errno.ECONNREFUSED)
    s.expect_deadline(None)


def test_syn_sent_rst_without_ack_or_with_bad_ack_ignored() -> None:
    """RFC 9293 3.10.7.3: a RST without ACK, or with an unacceptable ACK, is dropped."""
    s = Script()
    s.connect()
    s.tx("S")
    s.rx("R", seq=0)
    s.rx("RA", seq=0, ack=77)
    s.no_tx()
    s.expect_state(State.SYN_SENT)
    s.expect_error(0)


@pytest.mark.parametrize("ack", [0, 2, 1000, -5])
def test_syn_sent_bad_ack_gets_rst(ack: int) -> None:
    """RFC 9293 3.10.7.3: SEG.ACK =< ISS or > SND.NXT -> <SEQ=SEG.ACK><CTL=RST>."""
    s = Script()
    s.connect()
    s.tx("S")
    s.rx("SA", seq=0, ack=ack)
    s.tx("R", raw_seq=(s.iss + ack) & 0xFFFFFFFF)
    s.no_tx()
    s.expect_state(State.SYN_SENT)


def test_syn_retransmission_backoff_then_etimedout() -> None:
    """RFC 6298 5.5 / RFC 9293 3.8.1: the SYN is resent with doubling RTO; after
    syn_retries retransmissions the connection fails with ETIMEDOUT (like Linux: 127 s)."""
    s = Script(TcpConfig(syn_retries=6))
    s.connect()
    s.tx("S", seq=0)
    times = []
    for _ in range(6):
        times.append(s.fire())
        s.tx("S", seq=0, mss=1460)
        s.expect_event("retransmit", seq=s.iss, len=0, reason="rto")
    s.expect(times == [1.0, 3.0, 7.0, 15.0, 31.0, 63.0], f"retransmitted at {times}")
    s.expect_deadline(63.0 + 60.0)  # the backed-off RTO is capped at max_rto (RFC 6298 2.5)
    s.fire()
    s.no_tx()
    s.expect_state(State.CLOSED)
    s.expect_error(errno.ETIMEDOUT)
    s.expect_deadline(None)


def test_rto_is_3s_after_a_syn_timeout_without_rtt_sample() -> None:
    """RFC 6298 5.7: the SYN timed out and the SYN-ACK gives no sample (Karn's rule, no
    timestamps): data starts with an RTO of 3 s, not the 1 s initial one."""
    s = Script()
    s.connect()
    s.tx("S", seq=0)
    s.fire()  # at 1.0: the SYN again, RTO backed off to 2 s
    s.tx("S", seq=0)
    s.wait(0.1)
    s.rx("SA", seq=0, ack=1, win=30000, mss=1400)  # no timestamps
    s.tx("A", seq=1, ack=1)
    s.expect_state(State.ESTABLISHED)
    s.send(100)
    s.tx("PA", seq=1, length=100)
    s.expect_deadline(s.now + 3.0)
    # With a timestamp echo the SYN-ACK does give a sample, and that rules.
    s = Script()
    s.connect()
    s.tx("S", seq=0)
    s.fire()
    s.tx("S", seq=0)
    s.wait(0.1)
    s.rx("SA", seq=0, ack=1, win=30000, mss=1400, ts=(500, 1000))
    s.tx("A", seq=1, ack=1)
    s.expect(s.conn.rto.srtt is not None and s.conn.rto.rto < 3.0, "the sample sets the RTO")


def test_send_before_established_is_queued() -> None:
    """RFC 9293 3.10.2: SEND in SYN-SENT queues the data until ESTABLISHED."""
    s = Script()
    s.connect()
    s.tx("S")
    s.expect(s.send(300) == 300, "accepted")
    s.no_tx()
    s.rx("SA", seq=0, ack=1, mss=1460)
    s.tx("PA", seq=1, ack=1, length=300)  # the handshake's ACK (RFC 9293 3.10.7.3)
    s.no_tx()  # and no redundant bare ACK after it (test_tcp_conformance.py)


def test_close_in_syn_sent() -> None:
    """RFC 9293 3.10.4: CLOSE in SYN-SENT deletes the TCB; no timer keeps running."""
    s = Script()
    s.connect()
    s.tx("S")
    s.close()
    s.no_tx()
    s.expect_state(State.CLOSED)
    s.expect_deadline(None)


def test_duplicate_syn_in_syn_received_is_answered_with_the_syn_ack() -> None:
    """The peer retransmits its SYN: it is an old duplicate (SEQ < RCV.NXT), not
    acceptable, so RFC 9293 3.10.7.4 "first" owes an acknowledgment. Our SYN is not yet
    acknowledged, so that is the SYN-ACK again (a bare ACK at ISS+1 would be dropped by
    the peer in SYN-SENT, 3.10.7.3 "fifth"), as Linux and FreeBSD send; it counts as a
    retransmission and the attempt goes on."""
    s = Script()
    s.passive()
    s.tx("SA", seq=0, ack=1)
    s.wait(0.3)
    s.rx("S", seq=0, mss=1460, ws=7, sackok=True)
    s.tx("SA", seq=0, ack=1)
    s.expect_event("retransmit", reason="syn_again")
    s.no_tx()
    s.expect_state(State.SYN_RECEIVED)
    s.rx("A", seq=1, ack=1)
    s.expect_state(State.ESTABLISHED)


def test_close_in_syn_received_sends_fin_once_established() -> None:
    """RFC 9293 3.10.4, SYN-RECEIVED: CLOSE queues the FIN until ESTABLISHED, then the
    connection goes to FIN-WAIT-1 with the FIN sent after any queued data."""
    s = Script()
    s.passive()
    s.tx("SA")
    s.send(100)
    s.shutdown()
    s.no_tx()
    s.expect_state(State.SYN_RECEIVED)
    s.rx("A", seq=1, ack=1)
    s.tx("FPA", seq=1, length=100)  # the FIN rides on the last data segment
    s.no_tx()
    s.expect_state(State.FIN_WAIT_1)
    s.rx("A", ack=102)
    s.expect_state(State.FIN_WAIT_2)


def test_syn_received_bad_ack_gets_rst() -> None:
    """RFC 9293 3.10.7.4 fifth, SYN-RECEIVED: an unacceptable ACK -> <SEQ=SEG.ACK><CTL=RST>."""
    s = Script()
    s.passive()
    s.tx("SA")
    s.rx("A", seq=1, ack=500)
    s.tx("R", raw_seq=s.iss + 500)
    s.expect_state(State.SYN_RECEIVED)


def test_syn_received_rst_passive() -> None:
    """RFC 9293 3.10.7.4 second: RST in a passive SYN-RECEIVED ends the attempt."""
    s = Script()
    s.passive()
    s.tx("SA")
    s.rx("R", seq=1)
    s.no_tx()
    s.expect_state(State.CLOSED)


# ------------------------------------------------------------------ closing


def test_active_close_to_time_wait() -> None:
    """RFC 9293 3.6 figure 12: FIN-WAIT-1 -> FIN-WAIT-2 -> TIME-WAIT -> CLOSED after 2 MSL."""
    s = Script.established()
    s.close()
    s.tx("FA", seq=1, ack=1)
    s.expect_state(State.FIN_WAIT_1)
    s.expect_deadline(0.3)  # the FIN is retransmitted like data (RTO after the handshake)
    s.wait(0.1)
    s.rx("A", seq=1, ack=2)
    s.no_tx()
    s.expect_state(State.FIN_WAIT_2)
    s.expect_deadline(0.1 + 60.0)  # fin_wait_2_timeout, the user has closed
    s.wait(1.0)
    s.rx("FA", seq=1, ack=2)
    s.tx("A", seq=2, ack=2)
    s.expect_state(State.TIME_WAIT)
    s.expect_deadline(1.1 + 2 * 30.0)
    s.wait(59.9)
    s.expect_state(State.TIME_WAIT)
    s.wait(0.2)
    s.expect_state(State.CLOSED)
    s.expect_error(0)
    s.expect_deadline(None)
    s.no_tx()


def test_active_close_fin_retransmitted() -> None:
    """RFC 9293 3.8.1: an unacknowledged FIN is retransmitted: first as the tail loss
    probe (RFC 8985 7.2: without an RTT sample the PTO is 1 s, clamped to the RTO's
    expiry; 7.3 re-arms the RTO), then on RTO."""
    s = Script.established()
    s.close()
    s.tx("FA", seq=1)
    s.fire()
    s.tx("FA", seq=1, ack=1)
    s.expect_event("retransmit", seq=s.iss + 1, len=0, reason="tlp")
    s.fire()
    s.tx("FA", seq=1, ack=1)
    s.expect_event("retransmit", seq=s.iss + 1, len=0, reason="rto")
    s.expect_state(State.FIN_WAIT_1)


def test_fin_wait_2_timeout() -> None:
    """Linux tcp_fin_timeout: an orphaned FIN-WAIT-2 connection goes away."""
    s = Script.established(TcpConfig(fin_wait_2_timeout=5.0))
    s.close()
    s.tx("FA")
    s.rx("A", ack=2)
    s.expect_state(State.FIN_WAIT_2)
    s.wait(5.0)
    s.expect_state(State.CLOSED)
    s.no_tx()


def test_passive_close() -> None:
    """RFC 9293 3.6: FIN -> CLOSE-WAIT (FIN acked at once), CLOSE -> LAST-ACK -> CLOSED."""
    s = Script.established()
    s.rx("FA", seq=1, ack=1)
    s.tx("A", seq=1, ack=2)
    s.expect_state(State.CLOSE_WAIT)
    s.expect_event("state", frm="ESTABLISHED", to="CLOSE-WAIT")
    s.expect(s.conn.at_eof, "the user sees EOF")
    s.expect(s.recv() == b"", "recv returns b'' at EOF")
    s.send(50)  # CLOSE-WAIT may still send
    s.tx("PA", seq=1, ack=2, length=50)
    s.close()
    s.tx("FA", seq=51, ack=2)
    s.expect_state(State.LAST_ACK)
    s.rx("A", seq=2, ack=52)
    s.no_tx()
    s.expect_state(State.CLOSED)
    s.expect_error(0)
    s.expect_deadline(None)


def test_simultaneous_close() -> None:
    """RFC 9293 figure 13: FIN-WAIT-1 gets FIN -> CLOSING; ACK of our FIN -> TIME-WAIT."""
    s = Script.established()
    s.close()
    s.tx("FA", seq=1, ack=1)
    s.rx("FA", seq=1, ack=1)  # crossed: does not acknowledge our FIN
    s.tx("A", seq=2, ack=2)
    s.expect_state(State.CLOSING)
    s.rx("A", seq=2, ack=2)
    s.expect_state(State.TIME_WAIT)
    s.expect_deadline(60.0)


def test_fin_and_ack_of_fin_together() -> None:
    """FIN-WAIT-1 gets FIN+ACK of our FIN in one segment -> straight to TIME-WAIT."""
    s = Script.established()
    s.close()
    s.tx("FA", seq=1)
    s.rx("FA", seq=1, ack=2)
    s.tx("A", seq=2, ack=2)
    s.expect_state(State.TIME_WAIT)


def test_half_close_still_receives() -> None:
    """RFC 9293 3.10.4: after our FIN (shutdown_write) data still flows to us."""
    s = Script.established()
    s.shutdown()
    s.tx("FA", seq=1, ack=1)
    s.rx("A", ack=2)
    s.expect_state(State.FIN_WAIT_2)
    s.expect_deadline(None)  # not orphaned: no FIN-WAIT-2 timer
    with pytest.raises(OSError) as info:
        s.conn.send(b"x", s.now)
    s.expect(info.value.errno == errno.EPIPE, "send after shutdown -> EPIPE")
    s.rx("PA", data=300)
    s.rx("PA", data=200)
    s.tx("A", seq=2, ack=501)  # RFC 5681 4.2: the second of the peer's segments
    s.expect(s.recv() == pattern(500), "500 bytes delivered after our FIN")
    s.rx("FA")
    s.tx("A", seq=2, ack=502)
    s.expect_state(State.TIME_WAIT)


def test_time_wait_reacks_retransmitted_fin() -> None:
    """RFC 9293 3.10.7.4, TIME-WAIT: a retransmitted FIN is acknowledged and the 2 MSL
    timeout restarted."""
    s = Script.established()
    s.close()
    s.tx("FA")
    s.rx("FA", seq=1, ack=2)
    s.tx("A", seq=2, ack=2)
    s.expect_state(State.TIME_WAIT)
    s.wait(10.0)
    s.rx("FA", seq=1, ack=2)  # our ACK was lost: the FIN again
    s.tx("A", seq=2, ack=2)
    s.expect_state(State.TIME_WAIT)
    s.expect_deadline(10.0 + 60.0)


def test_close_with_unread_data_sends_rst() -> None:
    """RFC 1122 4.2.2.13 / RFC 2525 2.17: CLOSE with unread data resets."""
    s = Script.established()
    s.rx("PA", data=100)
    s.close()
    s.tx("RA", seq=1, ack=101)
    s.no_tx()
    s.expect_state(State.CLOSED)
    s.expect_deadline(None)


def test_data_after_close_gets_rst() -> None:
    """RFC 1122 4.2.2.13: data arriving after CLOSE is answered with RST."""
    s = Script.established()
    s.close()
    s.tx("FA", seq=1)
    s.rx("A", ack=2)
    s.rx("PA", data=10)
    s.tx("RA", seq=2)
    s.expect_state(State.CLOSED)


def test_abort_sends_rst() -> None:
    """RFC 9293 3.10.5: ABORT in a synchronized state sends <SEQ=SND.NXT><CTL=RST>."""
    s = Script.established()
    s.send(100)
    s.tx("PA", length=100)
    s.abort()
    s.tx("RA", seq=101, ack=1)
    s.no_tx()
    s.expect_state(State.CLOSED)
    s.expect_deadline(None)


def in_last_ack() -> Script:
    """The peer closed first (its FIN acknowledged), then we closed: LAST-ACK."""
    s = Script.established()
    s.rx("FA")
    s.tx("A", ack=2)
    s.close()
    s.tx("FA")
    s.expect_state(State.LAST_ACK)
    return s


def test_abort_after_both_fins_sends_nothing() -> None:
    """RFC 9293 3.10.5: ABORT in CLOSING or LAST-ACK deletes the TCB without a reset
    (both sides have closed; Linux's tcp_need_reset() agrees)."""
    s = in_last_ack()
    s.abort()
    s.no_tx()
    s.expect_state(State.CLOSED)
    s.expect_deadline(None)
    s = Script.established()
    s.close()
    s.tx("FA", seq=1, ack=1)
    s.rx("FA", seq=1, ack=1)  # crossed FINs: CLOSING
    s.tx("A", seq=2, ack=2)
    s.expect_state(State.CLOSING)
    s.abort()
    s.no_tx()
    s.expect_state(State.CLOSED)


def test_abort_in_syn_sent_sends_nothing() -> None:
    s = Script()
    s.connect()
    s.tx("S")
    s.abort()
    s.no_tx()
    s.expect_state(State.CLOSED)


def test_linger_zero_close_sends_rst() -> None:
    """SO_LINGER with l_linger 0: close() resets at once."""
    s = Script.established(TcpConfig(linger_zero=True))
    s.close()
    s.tx("RA", seq=1, ack=1)
    s.no_tx()
    s.expect_state(State.CLOSED)


def test_rst_in_close_wait_and_last_ack() -> None:
    """RFC 9293 3.10.7.4 second: RST in LAST-ACK just closes (no error)."""
    s = in_last_ack()
    s.rx("R", seq=2)
    s.no_tx()
    s.expect_state(State.CLOSED)
    s.expect_error(0)
