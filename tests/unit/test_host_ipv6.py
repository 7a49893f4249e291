"""The host over IPv6, sans-IO: a dual-stack Host fed packets built with stack.wire and
checked with scapy (ICMPv6, UDP, TCP, Packet Too Big, dual-stack sockets, V6ONLY,
RFC 5961 and a SYN flood over IPv6)."""

from __future__ import annotations

import errno
import json
import random
import socket
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    IPv6,
    IPv6ExtHdrFragment,
    fragment6,
)

from stack.host import Host
from stack.sockets import SocketLayer, TcpSocket
from stack.tcp.connection import State
from stack.wire import icmpv6
from stack.wire.ipv4 import IPPROTO_TCP, IPPROTO_UDP, build_ipv4_header
from stack.wire.ipv6 import IPPROTO_ICMPV6, build_ipv6_header
from stack.wire.tcp import ACK, RST, SYN, TCPOptions, TCPSegment, build_tcp, parse_tcp

STACK4, STACK6 = "10.0.0.2", "fd00:0:0:1::2"
PEER4, PEER6 = "10.1.0.2", "fd00:0:0:2::2"
CORPUS6 = Path(__file__).resolve().parents[1] / "corpus" / "ipv6.json"


class Harness:
    def __init__(self, offload: bool = False) -> None:
        self.now = 100.0
        self.sent: list[bytes] = []
        self.offload = offload
        self.host = Host(STACK4, self._transmit, address6=STACK6, offload=offload,
                         clock=lambda: self.now)
        self.layer = SocketLayer(self.host)

    def _transmit(self, parts: list[bytes | memoryview]) -> None:
        raw = b"".join(bytes(p) for p in parts)
        self.sent.append(raw[10:] if self.offload else raw)

    def feed(self, packet: bytes) -> None:
        self.host.receive_packet(bytes(10) + packet if self.offload else packet, self.now)
        self.host.run_timers(self.now)

    def take(self) -> list[IPv6]:
        out = [IPv6(p) for p in self.sent if p[0] >> 4 == 6]
        self.sent.clear()
        return out

    def listener(self, family: int = socket.AF_INET6, port: int = 7, v6only: bool = False) -> TcpSocket:
        sock = self.layer.tcp_socket(family)
        if v6only:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind("::" if family == socket.AF_INET6 else "0.0.0.0", port)
        sock.listen(8)
        return sock


def tcp6(sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"",
         options: TCPOptions | None = None, src: str = PEER6) -> bytes:
    seg = TCPSegment(sport, dport, seq, ack, flags, 65535, 0, options or TCPOptions(), payload)
    tcp = build_tcp(seg, src, STACK6)
    return build_ipv6_header(src, STACK6, IPPROTO_TCP, len(tcp)) + tcp


def tcp4(sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    seg = TCPSegment(sport, dport, seq, ack, flags, 65535, 0, TCPOptions(), b"")
    tcp = build_tcp(seg, PEER4, STACK4)
    return build_ipv4_header(PEER4, STACK4, IPPROTO_TCP, len(tcp), 1) + tcp


def handshake6(h: Harness, sport: int = 40000, mss: int = 1440) -> tuple[int, IPv6]:
    h.feed(tcp6(sport, 7, 1000, 0, SYN, options=TCPOptions(mss=mss, timestamp=(1, 0))))
    (synack,) = h.take()
    assert synack[TCP].flags == "SA"
    h.feed(tcp6(sport, 7, 1001, synack[TCP].seq + 1, ACK,
                options=TCPOptions(timestamp=(2, synack[TCP].options[-1][1][0]))))
    return synack[TCP].seq + 1, synack


def test_echo_request_answered() -> None:
    h = Harness()
    h.feed(bytes(IPv6(src=PEER6, dst=STACK6) / ICMPv6EchoRequest(id=7, seq=3, data=b"ping")))
    (reply,) = h.take()
    assert (reply.src, reply.dst, reply.hlim) == (STACK6, PEER6, 64)
    msg = reply[ICMPv6EchoReply]
    assert (msg.id, msg.seq, msg.data) == (7, 3, b"ping")
    chk = msg.cksum
    del msg.cksum
    assert IPv6(bytes(reply))[ICMPv6EchoReply].cksum == chk
    assert h.host.stats["icmp6_in_type_128"] == 1


def test_unknown_next_header_and_rate_limit() -> None:
    """RFC 8200 4 (code 1) under the RFC 4443 2.4 (f) rate limit: a burst of 10 per
    peer, then refused, counted."""
    h = Harness()
    for _ in range(15):
        h.feed(build_ipv6_header(PEER6, STACK6, 253, 8) + bytes(8))
    errors = h.take()
    assert len(errors) == 10
    assert all(e[ICMPv6ParamProblem].code == 1 and e[ICMPv6ParamProblem].ptr == 6 for e in errors)
    assert h.host.stats["drop_unknown_next_header"] == 15
    assert h.host.stats["drop_icmp_rate_limited"] == 5


def test_tcp_handshake_mss_flow_label_and_data() -> None:
    h = Harness()
    h.listener()
    rel, synack = handshake6(h)
    mss = dict((k, v) for k, v in synack[TCP].options if isinstance(k, str)).get("MSS")
    assert mss == 1440  # RFC 8200 8.3: 1500 - 40 - 20
    assert synack.fl != 0
    conn = h.host.conns[(7, PEER6, 40000)]
    assert conn.state == State.ESTABLISHED and conn.local == (STACK6, 7)
    h.feed(tcp6(40000, 7, 1001, rel, ACK, b"hello"))
    h.host.end_batch(h.now)
    h.now += 1
    h.host.run_timers(h.now)
    acks = h.take()
    assert acks and all(p.fl == synack.fl for p in acks)  # one label for the whole flow


def test_peer_without_mss_option_gets_1220_over_ipv6() -> None:
    """RFC 9293 3.7.1: with no MSS option assume 536 over IPv4, 1220 over IPv6."""
    h = Harness()
    h.listener()
    h.feed(tcp6(40000, 7, 1000, 0, SYN))
    assert h.host.conns[(7, PEER6, 40000)].snd_mss == 1220
    h.feed(tcp4(40001, 7, 1, 0, SYN))
    assert h.host.conns[(7, PEER4, 40001)].snd_mss == 536


def test_closed_port_gets_reset_and_udp_port_unreachable() -> None:
    h = Harness()
    h.feed(tcp6(40000, 4242, 5, 0, SYN))
    (rst,) = h.take()
    assert rst[TCP].flags == "RA" and rst[TCP].ack == 6
    h.feed(bytes(IPv6(src=PEER6, dst=STACK6) / UDP(sport=5, dport=4243) / b"x"))
    (unreach,) = h.take()
    assert unreach[ICMPv6DestUnreach].code == 4
    assert bytes(unreach[ICMPv6DestUnreach].payload)[:40] == bytes(
        IPv6(src=PEER6, dst=STACK6) / UDP(sport=5, dport=4243) / b"x")[:40]


def test_udp_both_families_on_a_dual_stack_socket() -> None:
    h = Harness()
    sock = h.layer.udp_socket(socket.AF_INET6)
    sock.bind("::", 7)
    h.feed(bytes(IPv6(src=PEER6, dst=STACK6) / UDP(sport=5000, dport=7) / b"six"))
    data, source = sock.recvfrom()
    assert (data, source) == (b"six", (PEER6, 5000))
    sock.sendto(b"back", source)
    (reply,) = h.take()
    assert reply[UDP].dport == 5000 and bytes(reply[UDP].payload) == b"back"
    h.feed(build_ipv4_header(PEER4, STACK4, IPPROTO_UDP, 9, 1) + bytes(UDP(sport=6000, dport=7, chksum=0) / b"4"))
    assert sock.recvfrom() == (b"4", (PEER4, 6000))


def test_v6only_and_family_tables() -> None:
    """RFC 3493 5.3: a V6ONLY listener hears IPv6 only, and an IPv4 listener may
    share its port; a dual-stack one takes the port in both families."""
    h = Harness()
    six = h.listener(v6only=True)
    four = h.listener(socket.AF_INET)
    h.feed(tcp4(40001, 7, 1, 0, SYN))
    assert (7, PEER4, 40001) in h.host.conns and h.host.owner_of(h.host.conns[(7, PEER4, 40001)]) is h.host.listeners[7]
    assert h.host.listeners[7].owner is four and h.host.listeners6[7].owner is six
    with pytest.raises(OSError) as info:
        h.listener(port=7)  # dual-stack: both taken
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as info:
        six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # bound already
    assert info.value.errno == errno.EINVAL
    assert six.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1


def test_dual_stack_listener_accepts_both() -> None:
    h = Harness()
    lsock = h.listener()
    handshake6(h)
    h.feed(tcp4(40002, 7, 1, 0, SYN))
    synack4 = [p for p in h.sent if p[0] >> 4 == 4][-1]
    seg = parse_tcp(synack4[20:], STACK4, PEER4)
    h.feed(build_ipv4_header(PEER4, STACK4, IPPROTO_TCP, 20, 2) + build_tcp(
        TCPSegment(40002, 7, 2, seg.seq + 1, ACK, 65535), PEER4, STACK4))
    children = [lsock.accept(), lsock.accept()]
    assert {c.remote for c in children if c is not None} == {(PEER6, 40000), (PEER4, 40002)}
    assert {c.info()["remote"] for c in children if c is not None} == {f"[{PEER6}]:40000", f"{PEER4}:40002"}


def test_connect_over_ipv6_and_v4_mapped() -> None:
    h = Harness()
    sock = h.layer.tcp_socket(socket.AF_INET6)
    sock.connect("fd00:0:0:2:0::2", 80)  # any spelling: the host keeps inet_ntop's
    (syn,) = h.take()
    assert syn.dst == PEER6 and syn[TCP].flags == "S"
    assert dict(o for o in syn[TCP].options if o[0] == "MSS")["MSS"] == 1440
    mapped = h.layer.tcp_socket(socket.AF_INET6)
    mapped.connect("::ffff:10.1.0.2", 80)  # RFC 4291 2.5.5.2: the IPv4 peer
    assert mapped.remote == (PEER4, 80) and h.sent[-1][0] >> 4 == 4
    only6 = h.layer.tcp_socket(socket.AF_INET6)
    only6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    with pytest.raises(OSError) as info:
        only6.connect("::ffff:10.1.0.2", 80)
    assert info.value.errno == errno.ENETUNREACH
    four = h.layer.tcp_socket()
    with pytest.raises(OSError) as info:
        four.connect(PEER6, 80)
    assert info.value.errno == errno.EAFNOSUPPORT


def test_packet_too_big_lowers_the_mss_and_resends() -> None:
    """RFC 8201 5.2: a Packet Too Big quoting data in flight lowers the path MTU; the
    MSS becomes 1280 - 60 (less 12 for timestamps) and the data goes again at once."""
    h = Harness()
    lsock = h.listener()
    rel, _ = handshake6(h)
    child = lsock.accept()
    assert child is not None
    h.take()
    child.send(bytes(1428 * 2))
    first = h.take()
    big = [p for p in first if len(bytes(p)) > 1280]
    assert big
    quote = icmpv6.error_quote(bytes(big[0]))
    ptb = bytes(IPv6(src="fd00:0:0:2::1", dst=STACK6) / ICMPv6PacketTooBig(mtu=1280) / quote)
    h.feed(ptb)
    conn = h.host.conns[(7, PEER6, 40000)]
    assert conn.snd_mss == 1220 - 12
    again = h.take()
    assert again and all(len(bytes(p)) <= 1280 for p in again)
    # Not below 1280, never up, and not for data we do not have in flight.
    h.feed(bytes(IPv6(src="fd00:0:0:2::1", dst=STACK6) / ICMPv6PacketTooBig(mtu=600) / quote))
    assert conn.snd_mss == 1220 - 12
    forged = bytearray(quote)
    forged[40 + 4 : 40 + 8] = (conn.snd.una + 10**9 & 0xFFFFFFFF).to_bytes(4, "big")
    h.feed(bytes(IPv6(src="fd00:0:0:2::1", dst=STACK6) / ICMPv6PacketTooBig(mtu=1280) / bytes(forged)))
    assert h.host.stats["drop_icmp_out_of_window"] == 1


def test_fragmented_udp_reassembled_and_reply_fragmented() -> None:
    h = Harness()
    sock = h.layer.udp_socket(socket.AF_INET6)
    sock.bind("::", 7)
    payload = bytes(range(256)) * 12
    pkt = IPv6(src=PEER6, dst=STACK6) / IPv6ExtHdrFragment(id=3) / UDP(sport=9, dport=7) / payload
    for f in fragment6(pkt, 1500):
        h.feed(bytes(f))
    data, source = sock.recvfrom()
    assert data == payload
    sock.sendto(data, source)
    out = h.take()
    assert len(out) == 3 and all(IPv6ExtHdrFragment in p for p in out)


def test_rfc5961_over_ipv6() -> None:
    """RFC 5961 3.2: an in-window RST that is not exact gets a challenge ACK; the
    exact one resets. Over IPv6 the same rules, the same code."""
    h = Harness()
    h.listener()
    rel, _ = handshake6(h)
    h.take()
    h.feed(tcp6(40000, 7, 1001 + 5000, 0, RST))
    (challenge,) = h.take()
    assert challenge[TCP].flags == "A" and challenge[TCP].seq == rel
    conn = h.host.conns[(7, PEER6, 40000)]
    assert conn.state == State.ESTABLISHED
    h.feed(tcp6(40000, 7, 1001, 0, RST))
    assert conn.state == State.CLOSED


def test_syn_flood_over_ipv6_is_bounded() -> None:
    h = Harness()
    h.listener()
    listener = h.host.listeners6[7]
    listener.syn_queue_limit = 64
    rng = random.Random(6)
    for _ in range(500):
        src = f"fd00:0:0:9::{rng.randrange(1, 0xFFFF):x}"
        h.feed(tcp6(rng.randrange(1024, 65535), 7, rng.getrandbits(32), 0, SYN, src=src))
        assert len(listener.syn_queue) <= 64
    h.take()
    handshake6(h, sport=50000)
    assert h.host.conns[(7, PEER6, 50000)].state == State.ESTABLISHED


def test_ipv6_off() -> None:
    h = Harness()
    host = Host(STACK4, lambda parts: None, clock=lambda: h.now)
    layer = SocketLayer(host)
    sock = layer.tcp_socket(socket.AF_INET6)
    with pytest.raises(OSError) as info:
        sock.connect(PEER6, 80)
    assert info.value.errno == errno.ENETUNREACH
    host.receive_packet(tcp6(1, 7, 1, 0, SYN), h.now)
    assert host.stats["drop_bad_ip_version"] == 1


def _corpus6() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(CORPUS6.read_text())
    return entries


@pytest.mark.parametrize("entry", _corpus6(), ids=lambda e: e["name"])
def test_corpus6_through_the_host(entry: dict[str, Any]) -> None:
    """The IPv6 corpus (tests/corpus/ipv6.json) through a whole Host: the drops it
    names are counted under the same reasons and the errors it names are sent."""
    h = Harness()
    udp = h.layer.udp_socket(socket.AF_INET6)
    udp.bind("::", 7)
    h.listener()
    for text in entry["packets"]:
        h.feed(bytes.fromhex(text))
    if entry.get("advance"):
        h.now += float(entry["advance"])
        h.host.run_timers(h.now)
    for reason, n in entry.get("expect_drops", {}).items():
        assert h.host.stats[f"drop_{reason}"] == n, (reason, dict(h.host.stats))
    if "expect_errors" in entry:
        errors = [[p.payload.type, p.payload.code, int.from_bytes(bytes(p.payload)[4:8], "big")]
                  for p in h.take() if p.nh == IPPROTO_ICMPV6 and p.payload.type < 128]
        assert errors == entry["expect_errors"]
