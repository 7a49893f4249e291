"""TCP over UDP encapsulation (FreeBSD's net.inet.tcp.udp_tunneling_port, tcp(4);
stack/tcp_over_udp.py): the rules, the host's use of them, and the drill runner's
`--udp_encapsulation=tcp` / `/udp(S > D)` support.

FreeBSD's behaviour is the reference (the suite's tcp-over-udp/ scripts check it):
- a TCP segment in a UDP datagram to the host's tunneling port is TCP input, and the
  datagram's source port is the remote encapsulation port;
- a connection keeps the encapsulation it was made with (TCP_REMOTE_UDP_ENCAPS_PORT
  before connect(), the SYN's for a passive open): its segments go out in UDP from the
  tunneling port to that port; a segment for it that arrives another way (plain, or
  from another UDP port) is answered with a reset sent back the way it came;
- the MSS is 8 octets smaller (the UDP header, udp_tunneling_overhead);
- an ICMP error is believed only if it quotes the connection's own encapsulation.
"""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from stack.drill.parser import parse_script
from stack.drill.runner import Runner
from stack.host import Host
from stack.tcp_over_udp import TcpOverUdp, remote_port_settable
from stack.wire.checksum import internet_checksum, pseudo_header_sum
from stack.wire.errors import WireError
from stack.wire.ipv4 import IPPROTO_TCP, IPPROTO_UDP, build_ipv4_header
from stack.wire.udp import build_udp, parse_udp

LOCAL, REMOTE = "192.168.0.1", "192.0.2.1"


def drill(text: str) -> None:
    result = Runner(parse_script(text, "<test>")).run()
    assert result.status == "passed", result.reason + "\n" + result.report


def preamble(family: str) -> str:
    return f"""--ip_version={family}
--udp_encapsulation=tcp
 0.00 `sysctl -w net.inet.tcp.udp_tunneling_port=9811`
+0.00 `sysctl -w net.inet.tcp.udp_tunneling_overhead=8`
"""


# The MSS an encapsulated connection offers: the link's less the UDP header.
MSS = {"ipv4": 1460 - 8, "ipv6": 1440 - 8}
FAMILIES = ("ipv4", "ipv6")


# ------------------------------------------------------------------ the module


def test_decapsulate_gives_the_remote_port_and_the_segment() -> None:
    tunnel = TcpOverUdp(port=9811)
    tcp = _tcp_segment(REMOTE, LOCAL, 8080, 80)
    dgram = parse_udp(build_udp(REMOTE, LOCAL, 4000, 9811, tcp), REMOTE, LOCAL)
    assert tunnel.carries_tcp(dgram.dst_port)
    port, verify = tunnel.decapsulate(dgram)
    assert port == 4000
    assert verify  # the inner TCP checksum is not zero: checked as usual
    assert bytes(dgram.payload) == tcp


def test_a_zero_tcp_checksum_is_taken_when_the_udp_checksum_covers_it() -> None:
    """FreeBSD sends encapsulated segments with a zero TCP checksum and the UDP checksum
    over the whole datagram; the TCP checksum is then not checked (the UDP one was)."""
    tunnel = TcpOverUdp(port=9811)
    tcp = _tcp_segment(REMOTE, LOCAL, 8080, 80, checksum=False)
    dgram = parse_udp(build_udp(REMOTE, LOCAL, 4000, 9811, tcp), REMOTE, LOCAL)
    assert tunnel.decapsulate(dgram) == (4000, False)


def test_no_checksum_at_all_is_malformed() -> None:
    """IPv4 allows a UDP datagram without checksum (RFC 768); a segment whose TCP
    checksum is zero too would have none: dropped as malformed."""
    tunnel = TcpOverUdp(port=9811)
    tcp = _tcp_segment(REMOTE, LOCAL, 8080, 80, checksum=False)
    raw = struct.pack("!HHHH", 4000, 9811, 8 + len(tcp), 0) + tcp
    with pytest.raises(WireError) as exc:
        tunnel.decapsulate(parse_udp(raw, REMOTE, LOCAL))
    assert exc.value.reason == "tcp_udp_no_checksum"


def test_source_port_zero_is_malformed() -> None:
    """A UDP source port of zero (RFC 768: "not used") leaves nowhere to answer."""
    tunnel = TcpOverUdp(port=9811)
    dgram = parse_udp(build_udp(REMOTE, LOCAL, 0, 9811, _tcp_segment(REMOTE, LOCAL, 8080, 80)),
                      REMOTE, LOCAL)
    with pytest.raises(WireError) as exc:
        tunnel.decapsulate(dgram)
    assert exc.value.reason == "tcp_udp_zero_port"


def test_off_by_default_and_the_mss_overhead() -> None:
    tunnel = TcpOverUdp()
    assert not tunnel.enabled and not tunnel.carries_tcp(9811)
    tunnel.port = 9811
    assert tunnel.carries_tcp(9811) and not tunnel.carries_tcp(9812)
    assert tunnel.mss(1460, 4000) == 1452 and tunnel.mss(1460, 0) == 1460


def test_encapsulate_from_the_tunneling_port_with_the_udp_checksum() -> None:
    tunnel = TcpOverUdp(port=9811)
    tcp = _tcp_segment(LOCAL, REMOTE, 80, 8080, checksum=False)
    raw = tunnel.encapsulate(LOCAL, REMOTE, 4000, [tcp])
    dgram = parse_udp(raw, LOCAL, REMOTE)  # checks the checksum
    assert (dgram.src_port, dgram.dst_port, dgram.checksum != 0) == (9811, 4000, True)
    assert bytes(dgram.payload) == tcp


@pytest.mark.parametrize(("value", "tunnel_port", "closed", "ok"), [
    (1, 9811, True, True), (65535, 9811, True, True), (0, 9811, True, True),
    (-1, 9811, True, False), (65536, 9811, True, False), (-2147483648, 9811, True, False),
    (0, 0, True, True), (1, 0, True, False),  # the tunnel must be on for a non-zero port
    (0, 9811, False, False), (1, 9811, False, False),  # listening or connected: never
])  # fmt: skip
def test_remote_port_option_rules(value: int, tunnel_port: int, closed: bool, ok: bool) -> None:
    assert remote_port_settable(value, tunnel_port, closed) is ok


# ------------------------------------------------------------------ the host


def _tcp_segment(src: str, dst: str, sport: int, dport: int, flags: int = 0x02,
                 checksum: bool = True) -> bytes:
    seg = bytearray(struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, flags, 65535, 0, 0))
    if checksum:
        csum = internet_checksum(bytes(seg), pseudo_header_sum(src, dst, IPPROTO_TCP, len(seg)))
        struct.pack_into("!H", seg, 16, csum)
    return bytes(seg)


def _host() -> tuple[Host, list[bytes]]:
    sent: list[bytes] = []
    host = Host(LOCAL, lambda parts: sent.append(b"".join(bytes(p) for p in parts)), clock=lambda: 0.0)
    host.tcp_over_udp.port = 9811
    return host, sent


def _udp_packet(payload: bytes, sport: int = 4000, dport: int = 9811, udp_checksum: bool = True) -> bytes:
    udp = build_udp(REMOTE, LOCAL, sport, dport, payload)
    if not udp_checksum:
        udp = udp[:6] + b"\0\0" + udp[8:]
    return build_ipv4_header(REMOTE, LOCAL, IPPROTO_UDP, len(udp), 1) + udp


def test_a_syn_in_udp_to_a_closed_port_draws_an_encapsulated_reset() -> None:
    host, sent = _host()
    host.receive_packet(_udp_packet(_tcp_segment(REMOTE, LOCAL, 8080, 80)), 0.0)
    assert len(sent) == 1
    ip = sent[0]
    assert ip[9] == IPPROTO_UDP
    dgram = parse_udp(ip[20:], LOCAL, REMOTE)
    assert (dgram.src_port, dgram.dst_port) == (9811, 4000)
    sport, dport, _seq, ack, _off, flags = struct.unpack("!HHIIBB", bytes(dgram.payload[:14]))
    assert (sport, dport, flags, ack) == (80, 8080, 0x14, 1001)  # RST+ACK, RFC 9293 3.10.7.1


def test_malformed_encapsulated_packets_are_counted_and_dropped() -> None:
    host, sent = _host()
    good = _tcp_segment(REMOTE, LOCAL, 8080, 80)
    bad_udp = bytearray(_udp_packet(good))
    bad_udp[-1] ^= 0xFF  # breaks the UDP checksum
    host.receive_packet(bytes(bad_udp), 0.0)
    assert host.stats["drop_bad_udp_checksum"] == 1
    host.receive_packet(_udp_packet(good[:12]), 0.0)  # a truncated TCP header inside
    assert host.stats["drop_truncated_tcp_header"] == 1
    bad_tcp = bytearray(good)
    bad_tcp[16] ^= 0xFF  # a wrong, non-zero TCP checksum: checked
    host.receive_packet(_udp_packet(bytes(bad_tcp)), 0.0)
    assert host.stats["drop_bad_tcp_checksum"] == 1
    host.receive_packet(_udp_packet(_tcp_segment(REMOTE, LOCAL, 8080, 80, checksum=False),
                                    udp_checksum=False), 0.0)
    assert host.stats["drop_tcp_udp_no_checksum"] == 1
    host.receive_packet(_udp_packet(good, sport=0), 0.0)
    assert host.stats["drop_tcp_udp_zero_port"] == 1
    assert sent == []  # nothing answered


def test_with_the_tunnel_off_udp_to_the_port_is_plain_udp() -> None:
    """Off by default: a datagram to 9811 is UDP to a closed port (ICMP port
    unreachable, RFC 1122 4.1.3.1), never TCP input."""
    host, sent = _host()
    host.tcp_over_udp.port = 0
    host.receive_packet(_udp_packet(_tcp_segment(REMOTE, LOCAL, 8080, 80)), 0.0)
    assert host.stats["udp_no_port"] == 1 and host.stats["tcp_in"] == 0
    assert len(sent) == 1 and sent[0][9] == 1  # ICMP


def test_a_udp_socket_cannot_take_the_tunneling_port() -> None:
    from stack.sockets import SocketLayer

    host, _ = _host()
    sock = SocketLayer(host).udp_socket()
    with pytest.raises(OSError) as exc:
        sock.bind("0.0.0.0", 9811)
    assert exc.value.errno == errno.EADDRINUSE


def test_remote_port_socket_option() -> None:
    from stack.sockets import TCP_REMOTE_UDP_ENCAPS_PORT, SocketLayer

    host, _ = _host()
    layer = SocketLayer(host)
    sock = layer.tcp_socket()
    sock.setsockopt(socket.IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT, 4000)
    assert sock.getsockopt(socket.IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT) == 4000
    with pytest.raises(OSError) as exc:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT, 65536)
    assert exc.value.errno == errno.EINVAL


# ------------------------------------------------------------------ drill scripts


@pytest.mark.parametrize("family", FAMILIES)
def test_active_open_is_encapsulated_end_to_end(family: str) -> None:
    mss = MSS[family]
    drill(preamble(family) + f"""
+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 setsockopt(3, IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT, [1], 4) = 0
+0.00 getsockopt(3, IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT, [1], [4]) = 0
+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0.00 > S 0:0(0) win 65535 <mss {mss},nop,wscale 6,sackOK,TS val 100 ecr 0>/udp(9811 > 1)
+0.10 < S. 0:0(0) ack 1 win 32767 <mss {mss},sackOK,eol,eol>/udp(1 > 9811)
+0.00 > . 1:1(0) ack 1 win 65535/udp(9811 > 1)
+0.00 setsockopt(3, IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT, [2], 4) = -1 EINVAL (Invalid argument)
+0.00 getsockopt(3, IPPROTO_TCP, TCP_MAXSEG, [{mss}], [4]) = 0
+0.00 send(3, ..., {mss}, 0) = {mss}
+0.00 > P. 1:{mss + 1}({mss}) ack 1 win 65535/udp(9811 > 1)
+0.10 < . 1:1(0) ack {mss + 1} win 32767/udp(1 > 9811)
+0.00 close(3) = 0
+0.00 > F. {mss + 1}:{mss + 1}(0) ack 1 win 65535/udp(9811 > 1)
+0.10 < F. 1:1(0) ack {mss + 2} win 32767/udp(1 > 9811)
+0.00 > . {mss + 2}:{mss + 2}(0) ack 2 win 65535/udp(9811 > 1)
""")


@pytest.mark.parametrize("family", FAMILIES)
def test_passive_open_learns_the_port_from_the_syn(family: str) -> None:
    """The SYN-RECEIVED connection keeps the SYN's UDP port: an ACK that comes plain, or
    from another UDP port, draws a reset sent back the way it came (FreeBSD's syncache
    checks the port); the right one completes the handshake."""
    mss = MSS[family]
    drill(preamble(family) + f"""
+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0.00 bind(3, ..., ...) = 0
+0.00 listen(3, 1) = 0
+0.00 setsockopt(3, IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT, [1], 4) = -1 EINVAL (Invalid argument)
+0.10 < S 0:0(0) win 65535 <mss {mss},sackOK,eol,eol>/udp(1 > 9811)
+0.00 > S. 0:0(0) ack 1 <mss {mss},sackOK,eol,eol>/udp(9811 > 1)
+0.10 < . 1:1(0) ack 1 win 65535/udp(2 > 9811)
+0.00 > R 1:1(0) win 0/udp(9811 > 2)
+0.10 < . 1:1(0) ack 1 win 65535
+0.00 > R 1:1(0) win 0
+0.00 accept(3, ..., ...) = -1 EWOULDBLOCK (Operation would block)
+0.10 < . 1:1(0) ack 1 win 65535/udp(1 > 9811)
+0.00 accept(3, ..., ...) = 4
+0.00 getsockopt(4, IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT, [1], [4]) = 0
+0.00 getsockopt(4, IPPROTO_TCP, TCP_MAXSEG, [{mss}], [4]) = 0
+0.00 close(4) = 0
+0.00 > F. 1:1(0) ack 1 win 65535/udp(9811 > 1)
+0.10 < F. 1:1(0) ack 2 win 32767/udp(1 > 9811)
+0.00 > . 2:2(0) ack 2 win 65535/udp(9811 > 1)
""")


@pytest.mark.parametrize("family", FAMILIES)
def test_established_segments_another_way_draw_resets(family: str) -> None:
    """An encapsulated connection answers a plain segment with a plain reset, one from
    another UDP port with a reset to that port, and ignores an RST that comes either
    way; then the connection goes on. A datagram to another UDP port than the
    tunneling port is not TCP at all (the stack's ICMP port unreachable is no segment
    of the connection: the runner passes over it, as packetdrill does)."""
    mss = MSS[family]
    drill(preamble(family) + f"""
+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 setsockopt(3, IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT, [1], 4) = 0
+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0.00 > S 0:0(0) win 65535 <mss {mss},nop,wscale 6,sackOK,TS val 100 ecr 0>/udp(9811 > 1)
+0.10 < S. 0:0(0) ack 1 win 32767 <mss 1460>/udp(1 > 9811)
+0.00 > . 1:1(0) ack 1 win 65535/udp(9811 > 1)
+0.10 < F. 1:1(0) ack 1 win 32767
+0.00 > R 1:1(0) win 0
+0.10 < F. 1:1(0) ack 1 win 32767/udp(2 > 9811)
+0.00 > R 1:1(0) win 0/udp(9811 > 2)
+0.10 < R. 1:1(0) ack 1 win 0
+0.10 < R. 1:1(0) ack 1 win 0/udp(2 > 9811)
+0.10 < F. 1:1(0) ack 1 win 32767/udp(1 > 9812)
+0.10 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0
+0.00 < F. 1:1(0) ack 1 win 32767/udp(1 > 9811)
+0.00 > . 1:1(0) ack 2 win 65535/udp(9811 > 1)
""")


@pytest.mark.parametrize("family", FAMILIES)
def test_a_plain_connection_resets_encapsulated_segments(family: str) -> None:
    drill(preamble(family) + f"""
+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0.00 > S 0:0(0) win 65535 <mss {MSS[family] + 8},nop,wscale 6,sackOK,TS val 100 ecr 0>
+0.10 < S. 0:0(0) ack 1 win 32767 <mss 1460>/udp(1 > 9811)
+0.00 > R 1:1(0) win 0/udp(9811 > 1)
+0.10 < S. 0:0(0) ack 1 win 32767 <mss 1460>
+0.00 > . 1:1(0) ack 1 win 65535
+0.10 < S 1:1(0) win 32767/udp(1 > 9811)
+0.00 > R. 0:0(0)! ack 2 win 0/udp(9811 > 1)
+0.00 close(3) = 0
+0.00 > F. 1:1(0) ack 1 win 65535
""")


def test_icmp_errors_must_quote_the_connections_encapsulation() -> None:
    """tcp_ctlinput_viaudp: the quoted UDP header must be from the tunneling port to
    the connection's remote port; then frag-needed lowers the MSS to the MTU less the
    IP, UDP and TCP headers (1300 - 20 - 8 - 20 = 1252)."""
    drill(preamble("ipv4") + """
+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 setsockopt(3, IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT, [1], 4) = 0
+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0.00 > S 0:0(0) win 65535 <mss 1452,nop,wscale 6,sackOK,TS val 100 ecr 0>/udp(9811 > 1)
+0.10 < S. 0:0(0) ack 1 win 32767 <mss 1452,sackOK,eol,eol>/udp(1 > 9811)
+0.00 > . 1:1(0) ack 1 win 65535/udp(9811 > 1)
+0.00 send(3, ..., 1452, 0) = 1452
+0.00 > P. 1:1453(1452) ack 1 win 65535/udp(9811 > 1)
+0.00 < icmp unreachable frag_needed mtu 1300 [1:1453(1452)/udp(9812 > 1)]
+0.00 < icmp unreachable frag_needed mtu 1300 [1:1453(1452)/udp(9811 > 2)]
+0.00 < icmp unreachable frag_needed mtu 1300 [1:1453(1452)]
+0.00 < icmp unreachable frag_needed mtu 1300 [1:1453(1452)/udp(9811 > 1)]
+0.00 > . 1:1253(1252) ack 1 win 65535/udp(9811 > 1)
+0.00 > P. 1253:1453(200) ack 1 win 65535/udp(9811 > 1)
""")


def test_icmp_port_unreachable_in_syn_sent_ipv6() -> None:
    drill(preamble("ipv6") + """
+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 setsockopt(3, IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT, [1], 4) = 0
+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0.00 > S 0:0(0) win 65535 <mss 1432,nop,wscale 6,sackOK,TS val 100 ecr 0>/udp(9811 > 1)
+0.00 < icmp unreachable port_unreachable [0:0(0)/udp(9811 > 2)]
+0.10 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0
+0.00 < icmp unreachable port_unreachable [0:0(0)/udp(9811 > 1)]
+0.10 getsockopt(3, SOL_SOCKET, SO_ERROR, [ECONNREFUSED], [4]) = 0
""")


def test_the_runner_compares_the_encapsulation() -> None:
    """An expectation with /udp fails on a plain segment, and the other way round."""
    script = preamble("ipv4") + """
+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0.00 > S 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>/udp(9811 > 1)
"""
    result = Runner(parse_script(script, "<test>")).run()
    assert result.status == "failed"
    assert "udp" in result.reason
