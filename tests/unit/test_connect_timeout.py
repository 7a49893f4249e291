"""A time limit on connection establishment (TcpConfig.connect_timeout; the socket
option TCP_KEEPINIT, FreeBSD's name, in seconds; 0 = none, the SYN retries bound it).

RFC 1122 4.2.3.5: R2 for a SYN must allow at least 3 minutes of retransmissions, but
"the application can close the connection (i.e., give up on the open attempt) sooner".
"""

from __future__ import annotations

import errno

from tcpscript import Script

from stack.drill.parser import parse_script
from stack.drill.runner import Runner
from stack.tcp.config import TcpConfig
from stack.tcp.connection import State


def test_connect_gives_up_after_its_time_limit() -> None:
    s = Script(TcpConfig(connect_timeout=5.0))
    s.connect()
    s.tx("S", seq=0)
    s.at(1.0)
    s.tx("S", seq=0)  # RFC 6298 5.5: 1 s, then doubled
    s.at(3.0)
    s.tx("S", seq=0)
    s.at(5.0)
    s.no_tx()
    s.expect_state(State.CLOSED)
    s.expect_error(errno.ETIMEDOUT)


def test_no_time_limit_by_default() -> None:
    s = Script()
    s.connect()
    s.tx("S", seq=0)
    s.at(5.0)
    s.drain()
    s.expect_state(State.SYN_SENT)


def test_the_limit_ends_with_the_handshake() -> None:
    s = Script.established(TcpConfig(connect_timeout=5.0))
    s.at(10.0)
    s.expect_state(State.ESTABLISHED)


def drill(text: str) -> None:
    result = Runner(parse_script(text, "<test>")).run()
    assert result.status == "passed", result.reason + "\n" + result.report


def test_tcp_keepinit_through_the_socket_layer() -> None:
    """TCP_KEEPINIT (seconds) set and read back; the sysctl keepinit (ms) is the default."""
    drill("""
 0.00 `sysctl -w net.inet.tcp.keepinit=15000`
+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 getsockopt(3, IPPROTO_TCP, TCP_KEEPINIT, [15], [4]) = 0
+0.00 setsockopt(3, IPPROTO_TCP, TCP_KEEPINIT, [2], 4) = 0
+0.00 getsockopt(3, IPPROTO_TCP, TCP_KEEPINIT, [2], [4]) = 0
+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0.00 > S 0:0(0) win 65535 <...>
+1.00 > S 0:0(0) win 65535 <...>
+1.00 getsockopt(3, SOL_SOCKET, SO_ERROR, [ETIMEDOUT], [4]) = 0
""")


def test_an_unanswered_syn_is_retransmitted_for_three_minutes() -> None:
    """RFC 1122 4.2.3.5: "R2 for a SYN segment MUST be set large enough to provide
    retransmission of the segment for at least 3 minutes". With the default config
    the attempt is given up no sooner than 180 s (Linux's 6 retries end at 127 s)."""
    s = Script()
    s.connect()
    s.tx("S", seq=0)
    s.at(179.0)
    s.drain()
    s.expect_state(State.SYN_SENT)
    s.at(200.0)
    s.expect_state(State.CLOSED)
    s.expect_error(errno.ETIMEDOUT)
