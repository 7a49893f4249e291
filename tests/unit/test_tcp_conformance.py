"""Defects the FreeBSD tcp-testsuite found (issue 17, 1-6, and one more), each with
its smallest test, written before its fix (each failed on the code before it).

Defects 1-4 are in the connection (tcpscript style); 5 and 6 are in the host's
demultiplexing, shown with small packetdrill scripts run by `tcplab drill` on the same
virtual clock. Each names the suite scripts that show it. What is not fixed yet is
xfail(strict=True): the fix makes it pass, pytest then reports XPASS as a failure, and
the marker comes off with the fix.
"""

from __future__ import annotations

from tcpscript import Script

from stack.drill.parser import parse_script
from stack.drill.runner import Runner
from stack.tcp.connection import State

MASK32 = 0xFFFFFFFF


def test_ts_recent_not_taken_from_a_segment_acking_unsent_data() -> None:
    """RFC 7323 4.3 (TS.Recent only from an acceptable segment, "after" the ACK checks)
    and RFC 5961 5.2 (an ACK of data not yet sent: drop it, after a challenge ACK).

    A forged in-window segment acknowledging unsent data, with a TSval far ahead, must
    not move TS.Recent: otherwise PAWS drops every later valid segment (a stall)."""
    s = Script.established()
    before = s.var("ts_recent")
    forged = (before + 0x40000000) & MASK32
    s.rx("A", seq=1, ack=1 + 100000, ts=(forged, s.last_tsval))
    s.drain()  # its challenge ACK
    s.expect_vars(ts_recent=before)
    s.wait(0.01)
    s.rx("PA", seq=1, data=100)  # the real peer, with its own (older) clock
    s.expect_vars(rcv=101)


def test_rst_beyond_the_advertised_window_is_dropped() -> None:
    """RFC 9293 3.10.7.4 first check / RFC 5961 3.2: RCV.WND is the window we advertised.
    Without window scaling we advertise 65535; a RST beyond RCV.NXT+65535 is outside the
    window and dropped silently (no challenge ACK). Suite: state-event-engine/rcv-rst-*-
    outside-right-* at tcplab's default 1 MiB buffer."""
    s = Script.established(ws=None)
    s.expect_vars(rcv_wscale=0)
    s.rx("R", seq=1 + 65535 + 100)
    s.no_tx()
    s.expect_state(State.ESTABLISHED)


def test_data_beyond_the_advertised_window_is_not_accepted() -> None:
    """RFC 9293 3.10.7.4: a segment starting beyond RCV.NXT+RCV.WND is not acceptable,
    it is answered with an ACK and its data is not queued."""
    s = Script.established(ws=None)
    s.rx("PA", seq=1 + 65535 + 1000, data=100)
    s.tx("A", seq=1, ack=1)
    s.expect_event("drop", reason="out_of_window")


def test_segment_beyond_the_advertised_window_in_time_wait_is_acked() -> None:
    """RFC 9293 3.10.7.4 first check, in TIME-WAIT as anywhere: a segment beyond
    RCV.NXT+RCV.WND (the 65535 we advertised) is not acceptable and draws an ACK."""
    s = Script.established(ws=None)
    s.close()
    s.tx("FA", seq=1, ack=1)
    s.rx("FA", seq=1, ack=2)
    s.tx("A", seq=2, ack=2)
    s.expect_state(State.TIME_WAIT)
    s.rx("A", seq=2 + 65535 + 100, ack=2)
    s.tx("A", seq=2, ack=2)
    s.expect_event("drop", reason="out_of_window")


def test_simultaneous_open_syn_ack_carries_only_offered_options() -> None:
    """RFC 7323 2.2 (WS only in a SYN-ACK if the SYN had it) and 3.2 (TS only if the SYN
    had it), RFC 2018 2 (SACK-permitted likewise). Suite: snippets/syn-rcvd-via-syn-
    sent-ipv4.pkt and state-event-engine/*via-syn-sent* (44 scripts)."""
    s = Script()
    s.connect()
    s.tx("S", seq=0)
    s.rx("S", seq=0, mss=1460, ts=None)  # the peer's SYN: MSS only
    s.tx("SA", seq=0, ack=1, mss=1460, ws=None, sackok=False, ts=None)
    s.expect_state(State.SYN_RECEIVED)


def test_data_on_a_syn_ack_is_received() -> None:
    """RFC 9293 3.10.7.3 (SYN-SENT, SYN-ACK: "continue processing at the sixth step",
    the segment text). Suite: state-event-engine/rcv-syn-ack-syn-sent/
    rcv-syn-ack-with-data-syn-sent-*."""
    s = Script()
    s.connect()
    s.tx("S", seq=0)
    s.rx("SA", seq=0, ack=1, mss=1460, data=10, ts=None)
    s.tx("A", seq=1, ack=11)
    s.expect_state(State.ESTABLISHED)
    s.expect(len(s.recv()) == 10, "the SYN-ACK's 10 bytes are readable")


def drill(text: str) -> None:
    result = Runner(parse_script(text, "defect.pkt")).run()
    assert result.status == "passed", f"{result.reason}\n{result.report}"


CLIENT = """
--tolerance_usecs=10000
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0.00 > S 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>
"""


def test_icmp_quoting_snd_nxt_is_ignored() -> None:
    """RFC 5927 4.1: act on an ICMP error only if SND.UNA <= SEG.SEQ < SND.NXT. In
    SYN-SENT, SND.UNA = ISS and SND.NXT = ISS+1: a port unreachable quoting ISS+1 is
    not about anything in flight. Suite: rcv-icmp/rcv-icmp-hard-error-port-unreachable-
    ipv4.pkt, -proto-unreachable-ipv4.pkt."""
    drill(CLIENT + """
+0.10 < icmp unreachable port_unreachable [1:1(0)]
+0.10 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0
+0.00 < icmp unreachable port_unreachable [0:0(0)]
+0.10 getsockopt(3, SOL_SOCKET, SO_ERROR, [ECONNREFUSED], [4]) = 0
""")


def test_icmp_quoting_iss_aborts_syn_sent() -> None:
    """The other side of the check above: quoting ISS (= SND.UNA) is a hard error in
    SYN-SENT (RFC 1122 4.2.3.9, RFC 5461 4.1): the connection is refused."""
    drill(CLIENT + """
+0.10 < icmp unreachable port_unreachable [0:0(0)]
+0.10 getsockopt(3, SOL_SOCKET, SO_ERROR, [ECONNREFUSED], [4]) = 0
""")


def test_fin_to_a_listener_is_dropped() -> None:
    """RFC 9293 3.10.7.2 (LISTEN): after the RST, ACK and SYN checks, "any other control
    or text-bearing segment" is dropped: no RST. The listener then still answers a SYN.
    Suite: state-event-engine/rcv-fin-listen/rcv-fin-with{,out}-data-listen-ipv4.pkt."""
    drill("""
--tolerance_usecs=10000
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 bind(3, ..., ...) = 0
+0.00 listen(3, 1) = 0
+0.10 < F 0:0(0) win 32767
+0.10 < S 0:0(0) win 32767 <mss 1460>
+0.00 > S. 0:0(0) ack 1 win 65535 <mss 1460>
""")


# ------------------------------------------------------------------ issue 17, item 8


def test_active_open_takes_an_rtt_sample_from_the_syn() -> None:
    """RFC 6298 2 (the first RTT measurement may be the SYN's; 2.2 then sets SRTT, RTTVAR
    and RTO), Karn's rule (3) permitting: the SYN was not retransmitted."""
    s = Script()
    s.connect()
    s.tx("S", seq=0)
    s.wait(0.08)
    s.rx("SA", seq=0, ack=1, mss=1460, ts=None)
    s.tx("A", seq=1, ack=1)
    s.expect_event("rtt", sample=0.08)
    s.expect_vars(srtt=0.08)


def test_passive_open_takes_an_rtt_sample_from_the_syn_ack() -> None:
    """RFC 6298 2: the listener times its SYN-ACK to the ACK that completes the handshake."""
    s = Script()
    s.passive(ts=False)
    s.tx("SA", seq=0, ack=1)
    s.wait(0.05)
    s.rx("A", seq=1, ack=1)
    s.expect_state(State.ESTABLISHED)
    s.expect_vars(srtt=0.05)


def test_no_rtt_sample_from_a_retransmitted_syn() -> None:
    """RFC 6298 3 (Karn): after the SYN was retransmitted, the SYN-ACK gives no sample
    (without timestamps nothing says which copy it answers)."""
    s = Script()
    s.connect()
    s.tx("S", seq=0)
    s.fire()  # the initial RTO, 1 s
    s.tx("S", seq=0)
    s.wait(0.08)
    s.rx("SA", seq=0, ack=1, mss=1460, ts=None)
    s.tx("A", seq=1, ack=1)
    s.expect_no_event("rtt")
    s.expect_vars(srtt=None)


def test_no_rtt_sample_from_a_simultaneous_open_without_timestamps() -> None:
    """RFC 6298 3 (Karn): in a simultaneous open (RFC 9293 3.10.7.3, figure 8) our
    SYN-ACK sends our SYN's sequence number again, and the ACK of it may answer either
    copy: no sample (the SYN's time would count from the first)."""
    s = Script()
    s.connect()
    s.tx("S", seq=0)
    s.wait(0.03)
    s.rx("S", seq=0, mss=1460, ts=None)
    s.tx("SA", seq=0, ack=1)
    s.wait(0.05)
    s.rx("A", seq=1, ack=1, ts=None)
    s.expect_state(State.ESTABLISHED)
    s.expect_no_event("rtt")
    s.expect_vars(srtt=None)


def test_simultaneous_open_with_timestamps_takes_the_sample_from_the_echo() -> None:
    """RFC 7323 4.1 / RFC 6298 3: with timestamps the echo says which copy the ACK
    answers; here the peer's ACK echoes our SYN's TSval, 0.08 s ago."""
    s = Script()
    s.connect()
    syn = s.tx("S", seq=0)
    assert syn.options.timestamp is not None
    s.wait(0.03)
    s.rx("S", seq=0, mss=1460, ts=(100, 0))
    s.tx("SA", seq=0, ack=1)
    s.wait(0.05)
    s.rx("A", seq=1, ack=1, ts=(180, syn.options.timestamp[0]))
    s.expect_state(State.ESTABLISHED)
    s.expect_event("rtt", sample=0.08)
    s.expect_vars(srtt=0.08)


# ------------------------------------------------------------------ issue 17, item 7


def test_getsockopt_keepalive_values() -> None:
    """What setsockopt set, getsockopt reads back (Linux tcp(7): seconds, and a count);
    the defaults before that: 7200 s, 75 s, 9 (RFC 1122 4.2.3.6: at least two hours).
    Suite: socket-api/getsockopt/socket-api-getsockopt-keep*-inherited-from-sysctl."""
    drill("""
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 getsockopt(3, IPPROTO_TCP, TCP_KEEPIDLE, [7200], [4]) = 0
+0.00 getsockopt(3, IPPROTO_TCP, TCP_KEEPINTVL, [75], [4]) = 0
+0.00 setsockopt(3, IPPROTO_TCP, TCP_KEEPIDLE, [60], 4) = 0
+0.00 setsockopt(3, IPPROTO_TCP, TCP_KEEPINTVL, [5], 4) = 0
+0.00 setsockopt(3, IPPROTO_TCP, TCP_KEEPCNT, [3], 4) = 0
+0.00 getsockopt(3, IPPROTO_TCP, TCP_KEEPIDLE, [60], [4]) = 0
+0.00 getsockopt(3, IPPROTO_TCP, TCP_KEEPINTVL, [5], [4]) = 0
+0.00 getsockopt(3, IPPROTO_TCP, TCP_KEEPCNT, [3], [4]) = 0
""")


LISTENER = """
--tolerance_usecs=10000
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 bind(3, ..., ...) = 0
"""


def test_tcp_maxseg_before_listen_is_the_syn_acks_mss() -> None:
    """RFC 9293 3.7.1 / RFC 6691: the MSS option says what we will receive; TCP_MAXSEG
    lowers it (Linux tcp(7))."""
    drill(LISTENER + """
+0.00 setsockopt(3, IPPROTO_TCP, TCP_MAXSEG, [1000], 4) = 0
+0.00 listen(3, 1) = 0
+0.10 < S 0:0(0) win 32767 <mss 1460>
+0.00 > S. 0:0(0) ack 1 win 65535 <mss 1000>
""")


def test_tcp_maxseg_on_a_listener_is_the_syn_acks_mss() -> None:
    """The same option set after listen(): it applies to the connections the listener
    makes from then on (as Linux)."""
    drill(LISTENER + """
+0.00 listen(3, 1) = 0
+0.00 setsockopt(3, IPPROTO_TCP, TCP_MAXSEG, [1000], 4) = 0
+0.10 < S 0:0(0) win 32767 <mss 1460>
+0.00 > S. 0:0(0) ack 1 win 65535 <mss 1000>
""")


# ------------------------------------------------------------------ found by the runner


def test_text_on_a_simultaneous_open_syn_is_delivered_once_established() -> None:
    """RFC 9293 3.10.7.3 (SYN-SENT, a SYN without ACK): "If there are other controls or
    text in the segment, queue them for processing after the ESTABLISHED state has been
    reached". Suite: state-event-engine/rcv-syn-syn-sent/rcv-syn-with-data-syn-sent-
    ipv4.pkt (behind defect 3)."""
    s = Script()
    s.connect()
    s.tx("S", seq=0)
    s.rx("S", seq=0, mss=1460, data=3, ts=None)
    s.tx("SA", seq=0, ack=1)
    s.expect_state(State.SYN_RECEIVED)
    s.rx("A", seq=4, ack=1, ts=None)
    s.expect_state(State.ESTABLISHED)
    s.expect_vars(rcv=4)
    s.expect(len(s.recv()) == 3, "the SYN's 3 bytes are readable")


def test_close_in_syn_received_then_the_syn_text_resets() -> None:
    """Found by test_tcp_fuzz: the user closes in SYN-RECEIVED (simultaneous open) and
    the SYN carried text. On the handshake ACK the queued FIN goes first (RFC 9293
    3.10.4: FIN-WAIT-1), then the SYN's text meets a closed receiver: reset (3.10.7.4,
    as Linux does), and the connection is gone -- it must not go on to FIN-WAIT-1 from
    CLOSED (that raised IllegalTransition)."""
    s = Script()
    s.connect()
    s.tx("S", seq=0)
    s.rx("S", seq=0, mss=1460, data=3, ts=None)
    s.tx("SA", seq=0, ack=1)
    s.close()
    s.rx("A", seq=4, ack=1, ts=None)
    s.expect_state(State.CLOSED)


def test_fin_on_a_syn_ack_closes_our_receive_side() -> None:
    """RFC 9293 3.10.7.3, sixth step onwards, also for the FIN: a SYN-ACK with FIN takes
    the connection to CLOSE-WAIT, and our ACK acknowledges SYN and FIN."""
    s = Script()
    s.connect()
    s.tx("S", seq=0)
    s.rx("SFA", seq=0, ack=1, mss=1460, data=5, ts=None)
    s.tx("A", seq=1, ack=7)
    s.expect_state(State.CLOSE_WAIT)
    s.expect(len(s.recv()) == 5, "the 5 bytes before the FIN are readable")


def test_out_of_order_fin_is_acked_at_once() -> None:
    """RFC 5681 4.2: "A TCP receiver SHOULD send an immediate duplicate ACK when an
    out-of-order segment arrives". A FIN beyond a hole is such a segment: the duplicate
    ACK (with its SACK block) goes at once, not on the delayed-ACK timer. Suite:
    rcv-data-segments/reordering-5F4321.pkt."""
    s = Script.established()
    s.rx("PA", seq=1 + 100, data=100)
    s.tx("A", seq=1, ack=1, sack=[(101, 201)])
    s.rx("FA", seq=1 + 200)
    s.tx("A", seq=1, ack=1, sack=[(101, 201)])


def test_data_queued_in_syn_sent_carries_the_handshake_ack() -> None:
    """RFC 9293 3.10.7.3 (SYN-SENT, our SYN acknowledged): "form an ACK segment ... and
    send it. Data or controls that were queued for transmission MAY be included." When
    the data goes out it is that ACK: no pure ACK after it (it was sent twice, data
    then a duplicate of its ACK). Suite: fast-open/client/*, where sendto() queues the
    data before the SYN-ACK."""
    s = Script()
    s.connect()
    s.tx("S", seq=0)
    s.send(100)
    s.rx("SA", seq=0, ack=1, mss=1460, ts=None)
    s.tx("PA", seq=1, ack=1, length=100)
    s.no_tx()


def test_data_resent_after_a_path_mtu_drop_is_not_held_by_nagle() -> None:
    """After fragmentation needed (RFC 1191 6.3) the data in flight goes again in
    segments of the new MSS. Its 200-byte tail was sent before, so it is no new user
    data for Nagle (RFC 1122 4.2.3.4) to hold back: it leaves at once, as FreeBSD and
    Linux resend it. tcplab held it until the RTO (and then resent the first part
    again). Suite: tcp-over-udp/rcv-icmp-fragmentation-needed-established-ipv4.pkt,
    rcv-icmp-packet-too-big-established-ipv6.pkt."""
    drill(CLIENT + """
+0.10 < S. 0:0(0) ack 1 win 32767 <mss 1460,sackOK,eol,eol>
+0.00 > . 1:1(0) ack 1 win 65535
+0.00 send(3, ..., 1460, 0) = 1460
+0.00 > P. 1:1461(1460) ack 1 win 65535
+0.10 < . 1:1(0) ack 1461 win 32767
+0.00 send(3, ..., 1460, 0) = 1460
+0.00 > P. 1461:2921(1460) ack 1 win 65535
+0.00 < icmp unreachable frag_needed mtu 1300 [1461:2921(1460)]
+0.00 > . 1461:2721(1260) ack 1 win 65535
+0.00 > P. 2721:2921(200) ack 1 win 65535
""")
