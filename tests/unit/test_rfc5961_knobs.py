"""The RFC 5961 mitigations as host settings (TcpConfig.rfc5961_rst / rfc5961_syn,
default on) and FreeBSD's drop_synfin (TcpConfig.drop_synfin, default off).

RFC 9293 3.10.7.4 gives both rules for the RST and SYN checks: RFC 5961's, for stacks
that implement it, and RFC 793's. tcplab does RFC 5961; switching it off is a teaching
aid (`tcplab stack --insecure-rst`, lab 10's blind RST attack) and what the FreeBSD
suite's insecure_rst=1 / insecure_syn=1 scripts check (`tcplab drill` maps them).
"""

from __future__ import annotations

import errno

from tcpscript import Script

from stack.drill.parser import parse_script
from stack.drill.runner import Runner
from stack.tcp.config import TcpConfig
from stack.tcp.connection import State


def insecure(**changes: bool) -> TcpConfig:
    cfg = TcpConfig()
    for name, value in changes.items():
        setattr(cfg, name, value)
    return cfg


# ------------------------------------------------------------------ RST


def test_in_window_rst_draws_a_challenge_ack_by_default() -> None:
    """RFC 5961 3.2: an RST in the window but not at RCV.NXT: challenge ACK, no reset."""
    s = Script.established()
    s.rx("R", seq=1 + 1000)
    s.tx("A", seq=1, ack=1)
    s.expect_event("challenge_ack")
    s.expect_state(State.ESTABLISHED)


def test_in_window_rst_resets_without_rfc5961() -> None:
    """RFC 793 (RFC 9293 3.10.7.4 for stacks without RFC 5961): "a reset is valid if
    its sequence number is in the window": the connection resets, ECONNRESET."""
    s = Script.established(insecure(rfc5961_rst=False))
    s.rx("R", seq=1 + 1000)
    s.no_tx()
    s.expect_state(State.CLOSED)
    s.expect_error(errno.ECONNRESET)


def test_rst_outside_the_window_is_dropped_either_way() -> None:
    """RFC 9293 3.10.7.4 first check: an RST outside the window is dropped silently,
    with or without RFC 5961."""
    for cfg in (TcpConfig(), insecure(rfc5961_rst=False)):
        s = Script.established(cfg, ws=None)
        s.rx("R", seq=1 + 65535 + 10)
        s.no_tx()
        s.expect_state(State.ESTABLISHED)


# ------------------------------------------------------------------ SYN


def test_in_window_syn_draws_a_challenge_ack_by_default() -> None:
    """RFC 5961 4.2: any SYN in a synchronized state draws a challenge ACK."""
    s = Script.established()
    s.rx("S", seq=1 + 1000)
    s.tx("A", seq=1, ack=1)
    s.expect_state(State.ESTABLISHED)


def test_in_window_syn_resets_without_rfc5961() -> None:
    """RFC 793 p. 71: "If the SYN is in the window it is an error, send a reset", the
    user gets "connection reset", CLOSED. The reset is <SEQ=SND.NXT><ACK=RCV.NXT>."""
    s = Script.established(insecure(rfc5961_syn=False))
    s.rx("S", seq=1 + 1000)
    s.tx("RA", seq=1, ack=1)
    s.no_tx()
    s.expect_state(State.CLOSED)
    s.expect_error(errno.ECONNRESET)


def test_syn_left_of_the_window_is_acked_without_rfc5961() -> None:
    """RFC 793: a SYN whose sequence number is not in the window (here RCV.NXT - 1,
    an old one, although the segment with a FIN overlaps the window) is not an error:
    it gets an ACK and the connection stays."""
    s = Script.established(insecure(rfc5961_syn=False))
    s.rx("SF", seq=0)
    s.tx("A", seq=1, ack=1)
    s.expect_state(State.ESTABLISHED)


# ------------------------------------------------------------------ drop_synfin


LISTEN = """
--tolerance_usecs=10000
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 bind(3, ..., ...) = 0
+0.00 listen(3, 1) = 0
"""


def drill(text: str) -> None:
    result = Runner(parse_script(text, "<test>")).run()
    assert result.status == "passed", result.reason + "\n" + result.report


def test_syn_fin_to_a_listener_opens_by_default() -> None:
    """RFC 9293 3.10.7.2: a SYN to a listener is processed (the FIN with it is queued
    for ESTABLISHED): SYN-ACK."""
    drill(LISTEN + """
+0.10 < SF 0:0(0) win 32767 <mss 1460>
+0.00 > S. 0:0(0) ack 1 win 65535 <mss 1460>
""")


def test_drop_synfin_drops_syn_fin_to_a_listener() -> None:
    """FreeBSD's drop_synfin (a fingerprinting defence): SYN+FIN to a listener or to a
    connection in SYN-SENT is dropped silently; a plain SYN still opens."""
    drill(LISTEN.replace(" 0.00 socket", " 0.00 `sysctl -w net.inet.tcp.drop_synfin=1`\n+0.00 socket") + """
+0.10 < SF 0:0(0) win 32767 <mss 1460>
+0.10 < S 0:0(0) win 32767 <mss 1460>
+0.00 > S. 0:0(0) ack 1 win 65535 <mss 1460>
""")


def test_drop_synfin_leaves_synchronized_states_alone() -> None:
    """In a synchronized state SYN+FIN is a SYN like any other (RFC 5961 4.2: a
    challenge ACK), drop_synfin or not."""
    drill(LISTEN.replace(" 0.00 socket", " 0.00 `sysctl -w net.inet.tcp.drop_synfin=1`\n+0.00 socket") + """
+0.10 < S 0:0(0) win 32767 <mss 1460>
+0.00 > S. 0:0(0) ack 1 win 65535 <mss 1460>
+0.10 < . 1:1(0) ack 1 win 32767
+0.00 accept(3, ..., ...) = 4
+0.10 < SF 1:1(0) win 32767
+0.00 > . 1:1(0) ack 1 win 65535
""")


def test_daemon_flags_are_off_by_default() -> None:
    """`tcplab stack --insecure-rst/--insecure-syn` (teaching aids) are off unless named."""
    from stack.cli import build_parser

    plain = build_parser().parse_args(["stack"])
    assert (plain.insecure_rst, plain.insecure_syn) == (False, False)
    taught = build_parser().parse_args(["stack", "--insecure-rst", "--insecure-syn"])
    assert (taught.insecure_rst, taught.insecure_syn) == (True, True)
