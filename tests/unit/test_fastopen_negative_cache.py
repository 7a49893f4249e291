"""RFC 7413 4.1.3.1: "The client MUST cache negative responses from the server ...
Negative responses include the server not acknowledging the data in the SYN"; it
"SHOULD disable TFO toward such servers for a period of time". Suite:
fast-open/client/client-handle-cookie-reject-of-length-*.pkt (found by `tcplab drill`)."""

from __future__ import annotations

from stack.drill.parser import parse_script
from stack.drill.runner import Runner
from stack.tcp.fastopen import NEGATIVE_CACHE_SECONDS, CookieCache

FIRST = """
--tolerance_usecs=10000
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 setsockopt(3, IPPROTO_TCP, TCP_FASTOPEN, [1], 4) = 0
+0.00 sendto(3, ..., 100, 0, ..., ...) = 100
+0.00 > S 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 0 ecr 0,FO,eol,eol>
+0.05 < S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,FO 0102030405060708>
+0.00 > P. 1:101(100) ack 1 win 65535
+0.05 < . 1:1(0) ack 101 win 65535
// The cookie and the data on the next SYN.
+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 4
+0.00 setsockopt(4, IPPROTO_TCP, TCP_FASTOPEN, [1], 4) = 0
+0.00 sendto(4, ..., 100, 0, ..., ...) = 100
+0.00 > S 0:100(100) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 0 ecr 0,FO 0102030405060708,eol,eol>
"""


def drill(text: str) -> None:
    result = Runner(parse_script(text, "<test>")).run()
    assert result.status == "passed", result.reason + "\n" + result.report


def test_unacknowledged_syn_data_turns_fast_open_off_toward_that_server() -> None:
    """The server acknowledges only the SYN and brings no cookie: the data goes again
    after the handshake, and the next SYN to that server is a plain one (no option,
    no data)."""
    drill(FIRST + """
+0.05 < S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK>
+0.00 > P. 1:101(100) ack 1 win 65535
+0.05 < . 1:1(0) ack 101 win 65535
+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 5
+0.00 setsockopt(5, IPPROTO_TCP, TCP_FASTOPEN, [1], 4) = 0
+0.00 sendto(5, ..., 100, 0, ..., ...) = 100
+0.00 > S 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 0 ecr 0>
""")


def test_a_new_cookie_with_unacknowledged_data_is_no_negative_response() -> None:
    """A cookie update (RFC 7413 4.1.2: the server rotated its key) comes with the data
    unacknowledged too: the new cookie is used next time."""
    drill(FIRST + """
+0.05 < S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,FO 0a0b0c0d0e0f1011>
+0.00 > P. 1:101(100) ack 1 win 65535
+0.05 < . 1:1(0) ack 101 win 65535
+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 5
+0.00 setsockopt(5, IPPROTO_TCP, TCP_FASTOPEN, [1], 4) = 0
+0.00 sendto(5, ..., 100, 0, ..., ...) = 100
+0.00 > S 0:100(100) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 0 ecr 0,FO 0a0b0c0d0e0f1011,eol,eol>
""")


def test_the_negative_entry_expires() -> None:
    cache = CookieCache()
    cache.put_negative("192.0.2.1", now=10.0)
    assert cache.negative("192.0.2.1", 10.0 + NEGATIVE_CACHE_SECONDS - 1)
    assert not cache.negative("192.0.2.1", 10.0 + NEGATIVE_CACHE_SECONDS)
    assert not cache.negative("192.0.2.2", 11.0)


MALFORMED = """
--tolerance_usecs=10000
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 setsockopt(3, IPPROTO_TCP, TCP_FASTOPEN, [1], 4) = 0
+0.00 sendto(3, ..., 100, 0, ..., ...) = 100
+0.00 > S 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 0 ecr 0,FO,eol,eol>
+0.05 < S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,FO {cookie},eol,eol,eol>
+0.00 > P. 1:101(100) ack 1 win 65535
+0.05 < . 1:1(0) ack 101 win 65535
+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 4
+0.00 setsockopt(4, IPPROTO_TCP, TCP_FASTOPEN, [1], 4) = 0
+0.00 sendto(4, ..., 100, 0, ..., ...) = 100
"""


def test_a_malformed_cookie_answer_turns_fast_open_off_toward_that_server() -> None:
    """RFC 7413 4.1.1: a cookie of 5 bytes (odd) or 18 (over 16) is ignored; and the
    server that sent it gets no cookie request on the next connection (4.1.3.1's
    negative cache): the next SYN is a plain one. Suite:
    fast-open/client/client-handle-initial-cookie-of-length-*.pkt."""
    for cookie in ("0102030405", "0102030405060708090a0b0c0d0e0f101112"):
        drill(MALFORMED.format(cookie=cookie) + """
+0.00 > S 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 0 ecr 0>
""")


def test_a_valid_cookie_answer_is_used_on_the_next_syn() -> None:
    """The counterpart: a 4-byte cookie is valid (4.1.1) and rides on the next SYN,
    with the data."""
    drill(MALFORMED.format(cookie="01020304") + """
+0.00 > S 0:100(100) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 0 ecr 0,FO 01020304,nop,nop>
""")
