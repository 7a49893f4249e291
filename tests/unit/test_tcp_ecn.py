"""ECN (RFC 3168) in the sans-IO connection: negotiation, ECT marking, the echo of CE
and the sender's response (stack/tcp/ecn.py and its hooks in connection.py/sender.py)."""

from __future__ import annotations

import pytest
from tcpscript import Script

from stack.tcp.config import TcpConfig
from stack.tcp.ecn import CE, ECT0, NOT_ECT, Ecn
from stack.wire.tcp import CWR, ECE


def ecn_passive(mode: int = 2) -> Script:
    """A passive open by an ECN-setup SYN, handshake completed."""
    s = Script(TcpConfig(ecn=mode))
    s.passive(flags="SEC")
    return s


def established_with_ecn() -> Script:
    s = ecn_passive()
    s.tx("SAE", seq=0, ack=1)
    s.rx("A", seq=1, ack=1)
    s.no_tx()
    return s


def test_passive_open_accepts_an_ecn_setup_syn() -> None:
    """RFC 3168 6.1.1: an ECN-setup SYN (ECE+CWR) is answered by an ECN-setup SYN-ACK
    (ECE set, CWR clear) when ECN is on (Linux's default mode 2 included); the SYN-ACK
    itself is not ECN-capable."""
    s = ecn_passive(2)
    synack = s.tx("SAE", seq=0, ack=1)
    assert synack.ecn == NOT_ECT
    s.expect_event("ecn", event="negotiated", side="passive")
    assert s.conn.ecn.ok


def test_ecn_off_answers_with_a_plain_syn_ack() -> None:
    """RFC 3168 6.1.1: a host not using ECN replies without ECE (mode 0)."""
    s = ecn_passive(0)
    s.tx("SA", seq=0, ack=1)
    assert not s.conn.ecn.ok


def test_a_syn_with_only_ece_is_not_ecn_setup() -> None:
    """RFC 3168 6.1.1: only a SYN with both ECE and CWR asks for ECN."""
    s = Script(TcpConfig(ecn=1))
    s.passive(flags="SE")
    s.tx("SA", seq=0, ack=1)
    assert not s.conn.ecn.ok


@pytest.mark.parametrize(("mode", "flags"), [(1, "SEC"), (2, "S"), (0, "S")])
def test_active_open_requests_ecn_only_in_mode_1(mode: int, flags: str) -> None:
    """RFC 3168 6.1.1 and net.ipv4.tcp_ecn: mode 1 sends an ECN-setup SYN; mode 2 (the
    default) and 0 do not ask."""
    s = Script(TcpConfig(ecn=mode))
    s.connect()
    s.tx(flags, seq=0)


def test_active_open_agrees_on_an_ecn_setup_syn_ack() -> None:
    """RFC 3168 6.1.1: a SYN-ACK with ECE and without CWR completes the negotiation."""
    s = Script(TcpConfig(ecn=1))
    s.connect()
    s.tx("SEC", seq=0)
    s.rx("SAE", seq=0, ack=1, mss=1460)
    s.tx("A", seq=1, ack=1)
    assert s.conn.ecn.ok
    s.expect_event("ecn", event="negotiated", side="active")


def test_a_syn_ack_with_ece_and_cwr_is_not_ecn_setup() -> None:
    """RFC 3168 6.1.1: a SYN-ACK with both ECE and CWR set is not an ECN-setup SYN-ACK
    (a reflector of the SYN's bits, not an ECN-capable host)."""
    s = Script(TcpConfig(ecn=1))
    s.connect()
    s.tx("SEC", seq=0)
    s.rx("SAEC", seq=0, ack=1, mss=1460)
    s.tx("A", seq=1, ack=1)
    assert not s.conn.ecn.ok


def test_retransmitted_syn_drops_the_ecn_request() -> None:
    """RFC 3168 6.1.1.1: the SYN may have been dropped for its ECN bits; the
    retransmission goes without them, and ECN is then not used (as Linux)."""
    s = Script(TcpConfig(ecn=1))
    s.connect()
    s.tx("SEC", seq=0)
    s.fire()
    s.tx("S", seq=0)
    s.rx("SAE", seq=0, ack=1, mss=1460)
    s.tx("A", seq=1, ack=1)
    assert not s.conn.ecn.ok


def test_new_data_is_ect0_pure_acks_and_retransmissions_are_not() -> None:
    """RFC 3168 6.1.1: data segments go ECT(0); 6.1.4: pure ACKs are not ECN-capable;
    6.1.5: retransmitted data is not ECN-capable either."""
    s = established_with_ecn()
    s.send(1000)
    assert s.tx("PA", seq=1, length=1000).ecn == ECT0
    s.rx("PA", seq=1, data=100, ack=1)
    s.wait(0.05)
    assert s.tx("A", ack=101).ecn == NOT_ECT
    s.fire()  # the RTO: the data again
    assert s.tx("PA", seq=1, length=1000).ecn == NOT_ECT


def test_ce_is_echoed_with_ece_until_cwr() -> None:
    """RFC 3168 6.1.3: after a CE-marked data segment every ACK carries ECE, until a
    segment with CWR arrives; a CE on that very segment starts the echo again."""
    s = established_with_ecn()
    seg = s.make_segment("PA", seq=1, data=500, ack=1)
    seg.ecn = CE
    s.rx_segment(seg)
    s.expect_event("ecn", event="ce_received")
    s.wait(0.05)
    s.tx("AE", ack=501)
    s.expect_event("ecn", event="ece_sent")
    s.rx("PA", seq=501, data=500, ack=1)  # not marked: the echo goes on
    s.wait(0.05)
    s.tx("AE", ack=1001)
    s.rx("PAC", seq=1001, data=500, ack=1)  # CWR ends it
    s.wait(0.05)
    s.tx("A", ack=1501)
    seg = s.make_segment("PAC", seq=1501, data=500, ack=1)
    seg.ecn = CE
    s.rx_segment(seg)
    s.wait(0.05)
    s.tx("AE", ack=2001)


def test_ece_without_ecn_negotiated_is_ignored() -> None:
    """RFC 3168 6.1.1: without an agreement ECE means nothing; the window stays."""
    s = Script.established()
    s.send(2000)
    s.drain()
    cwnd = s.conn.cc.cwnd
    s.rx("AE", ack=1001)
    assert s.conn.cc.cwnd >= cwnd
    s.expect_no_event("ecn")


def test_ece_reduces_once_per_window_and_cwr_goes_on_new_data() -> None:
    """RFC 3168 6.1.2: on ECE the sender halves cwnd (a congestion event in
    stack/tcp/congestion/events.py, no retransmission), at most once per window of
    data; the first new data segment after the reduction carries CWR."""
    s = established_with_ecn()
    s.conn.config.nodelay = True
    s.send(60 * 1000)
    s.drain()
    flight = s.conn.snd.flight_size
    high = s.conn.snd.max - s.iss  # relative: the window in flight now
    s.rx("AE", ack=10001)
    s.expect_event("ecn", event="reduction")
    assert s.conn.cc.ssthresh == max(flight // 2, 2 * s.conn.snd_mss)
    assert s.conn.snd.retransmits == 0
    sent = s.drain()
    assert sent, "the reduced window lets new data out"
    assert sent[0].flags & CWR and sent[0].ecn == ECT0
    assert not any(seg.flags & CWR for seg in sent[1:]), "CWR only once"

    def reductions() -> int:
        return len([e for e in s.events_of("ecn") if e.get("event") == "reduction"])

    # ECEs on ACKs for data sent before the reduction: the same congestion, no new one.
    s.rx("AE", ack=12001)
    s.rx("AE", ack=high)
    assert reductions() == 1
    s.drain()
    # An ECE on an ACK beyond that window is a new congestion signal.
    s.rx("AE", ack=high + 1000)
    assert reductions() == 2


def test_ecn_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="ECN mode"):
        Ecn(3, lambda *a, **k: None)
    assert ECE != CWR


def test_an_unacceptable_segment_neither_echoes_nor_reduces() -> None:
    """RFC 3168 6.1.2/6.1.3 act on acceptable segments only (RFC 9293 3.10.7.4 "first"):
    a CE-marked or ECE-carrying segment outside the receive window -- a blind forgery,
    RFC 5961 -- is answered with a plain ACK and changes neither the echo nor cwnd."""
    s = established_with_ecn()
    s.send(5000)
    s.drain()
    cwnd = s.conn.cc.cwnd
    seg = s.make_segment("AE", seq=5_000_000, ack=1001)
    seg.ecn = CE
    s.rx_segment(seg)
    s.tx("A", ack=1)  # the "not acceptable" ACK (3.10.7.4), without ECE
    assert s.conn.cc.cwnd == cwnd and not s.conn.ecn.echoing
    s.expect_no_event("ecn", event="reduction")
