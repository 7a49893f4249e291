"""IP_TOS and IP_TTL on a TCP socket (Linux ip(7)) through stack/sockets.py: the IPv4
header of every segment the connection sends carries them (RFC 791 3.1), the TOS's
ECN bits stay TCP's (RFC 3168 section 5); a listener passes them to its connections;
a change on an open connection applies at once; bad values are EINVAL."""

from __future__ import annotations

import errno
import socket

import pytest
from test_host_ecn_fastopen import ME, PEER, PORT, Wire

from stack.wire.ipv4 import parse_ipv4
from stack.wire.tcp import ACK, SYN, parse_tcp


def headers(w: Wire) -> list[tuple[int, int]]:
    """(TOS, TTL) of each packet the host sent."""
    out = [(h.tos, h.ttl) for h, _ in (parse_ipv4(raw) for raw in w.out)]
    w.out.clear()
    return out


def test_listener_tos_and_ttl_reach_its_connections_and_change_at_once() -> None:
    w = Wire()
    listener = w.layer.tcp_socket()
    listener.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x20 | 3)  # CS1, ECN bits given
    listener.bind("0.0.0.0", PORT)
    listener.listen(8)
    listener.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 4)  # after listen(): still taken
    w.send(SYN, 100)
    header, payload = parse_ipv4(w.out[-1])
    synack = parse_tcp(payload, ME, PEER)
    assert (header.tos, header.ttl) == (0x20, 4)  # the ECN bits were not the socket's
    w.out.clear()
    w.send(ACK, 101, synack.seq + 1)
    child = listener.accept()
    assert child is not None
    assert child.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == 0x20
    assert child.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 4
    child.send(b"x" * 100)
    assert headers(w) == [(0x20, 4)]
    child.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xE0)  # CS7
    child.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, -1)  # back to the default
    w.send(ACK, 101, synack.seq + 101)
    child.send(b"y" * 100)
    assert headers(w) == [(0xE0, 64)]
    assert child.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 64


@pytest.mark.parametrize("ttl", [0, 256, -2])
def test_a_ttl_out_of_range_is_einval(ttl: int) -> None:
    sock = Wire().layer.tcp_socket()
    with pytest.raises(OSError) as err:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    assert err.value.errno == errno.EINVAL
    assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 64


ACTIVE6 = """
--ip_version=ipv6
--tolerance_usecs=10000
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 setsockopt(3, IPPROTO_IPV6, IPV6_UNICAST_HOPS, [4], 4) = 0
+0.00 setsockopt(3, IPPROTO_IPV6, IPV6_TCLASS, [IPTOS_DSCP_CS1], 4) = 0
+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0.00 > (hlim 4) (class 0x20) S 0:0(0) win 65535 <mss 1440,nop,wscale 6,sackOK,TS val 100 ecr 0>
+0.05 < (hlim 3) S. 0:0(0) ack 1 win 65535 <mss 1440,sackOK,eol,eol>
+0.00 > (hlim 4) (class 0x20) . 1:1(0) ack 1 win 65535
+0.00 setsockopt(3, IPPROTO_IPV6, IPV6_UNICAST_HOPS, [-1], 4) = 0
+0.00 setsockopt(3, IPPROTO_IPV6, IPV6_TCLASS, [IPTOS_DSCP_CS7], 4) = 0
+0.00 send(3, ..., 100, 0) = 100
+0.00 > (hlim 64) (class 0xe0) P. 1:101(100) ack 1 win 65535
"""


def test_ipv6_hop_limit_and_traffic_class_on_every_segment() -> None:
    """ipv6(7) IPV6_UNICAST_HOPS and IPV6_TCLASS (RFC 8200 section 3: Hop Limit,
    Traffic Class) on the SYN and after, a change applying to the next segment; -1 is
    the default hop limit (64). The drill matcher checks (hlim N) and (class 0xNN)."""
    from stack.drill.parser import parse_script
    from stack.drill.runner import Runner

    result = Runner(parse_script(ACTIVE6, "<test>")).run()
    assert result.status == "passed", result.reason + "\n" + result.report
