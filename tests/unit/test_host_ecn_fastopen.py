"""The host's hooks for ECN and Fast Open: the IPv4 ECN field to and from the segment
(RFC 3168 section 5), the listener's TCP_FASTOPEN and the Fast Open mode bits
(RFC 7413), through stack/sockets.py as a program would use them."""

from __future__ import annotations

import socket

import pytest

from stack.host import Host
from stack.sockets import SocketLayer
from stack.tcp.ecn import CE, ECT0, NOT_ECT
from stack.wire.ipv4 import IPPROTO_TCP, build_ipv4_header, parse_ipv4
from stack.wire.tcp import ACK, CWR, ECE, PSH, SYN, TCPOptions, TCPSegment, build_tcp, parse_tcp

ME, PEER = "10.0.0.2", "10.1.0.2"
PORT, PEER_PORT = 7000, 40000


class Wire:
    """A host on a captured link, and a peer that builds its packets by hand."""

    def __init__(self, fastopen: int = 1) -> None:
        self.out: list[bytes] = []
        self.now = 0.0
        self.host = Host(ME, lambda parts: self.out.append(b"".join(bytes(p) for p in parts)),
                         clock=lambda: self.now)
        self.host.fastopen_mode = fastopen
        self.layer = SocketLayer(self.host)

    def send(self, flags: int, seq: int, ack: int = 0, data: bytes = b"", tos: int = 0,
             cookie: bytes | None = None) -> None:
        seg = TCPSegment(PEER_PORT, PORT, seq, ack, flags, 65535,
                         options=TCPOptions(mss=1460, fastopen=cookie) if flags & SYN
                         else TCPOptions(), payload=data)  # fmt: skip
        tcp = build_tcp(seg, PEER, ME)
        self.host.receive_packet(build_ipv4_header(PEER, ME, IPPROTO_TCP, len(tcp), 1, tos=tos)
                                 + tcp, self.now)

    def take(self) -> list[tuple[int, TCPSegment]]:
        """(IPv4 ECN field, segment) of everything the host sent."""
        got = []
        for raw in self.out:
            header, payload = parse_ipv4(raw)
            got.append((header.tos & 3, parse_tcp(payload, ME, PEER)))
        self.out.clear()
        return got


def test_ecn_field_goes_to_tcp_and_back() -> None:
    """RFC 3168 section 5/6.1: a CE mark in the IPv4 header reaches TCP (the next ACK
    has ECE); the data the stack sends is ECT(0) in the IPv4 header, its SYN-ACK and
    pure ACKs are not ECN-capable."""
    w = Wire()
    listener = w.layer.tcp_listener(PORT)
    w.send(SYN | ECE | CWR, 100)
    [(codepoint, synack)] = w.take()
    assert synack.flags == SYN | ACK | ECE and codepoint == NOT_ECT
    w.send(ACK, 101, synack.seq + 1)
    child = listener.accept()
    assert child is not None
    w.send(ACK | PSH, 101, synack.seq + 1, b"x" * 100, tos=CE)
    w.now += 0.5
    w.host.run_timers(w.now)
    [(codepoint, ack)] = w.take()
    assert ack.flags & ECE and codepoint == NOT_ECT
    assert child.recv(1000) == b"x" * 100
    child.send(b"y" * 100)
    sent = w.take()
    data = [(c, seg) for c, seg in sent if seg.payload]
    assert [bytes(seg.payload) for _, seg in data] == [b"y" * 100]
    assert data[0][0] == ECT0
    assert all(c == NOT_ECT for c, seg in sent if not seg.payload)


@pytest.mark.parametrize(("mode", "qlen", "accepted"), [(3, 5, True), (3, 0, False),
                                                        (1, 5, False), (0x401, 0, True)])
def test_listener_takes_syn_data_with_tcp_fastopen(mode: int, qlen: int, accepted: bool) -> None:
    """RFC 7413 4.2.1 with Linux's switches: the server bit (0x2) and TCP_FASTOPEN on the
    listener, or 0x400 for every listener; a cookie from the host's key; otherwise the
    SYN-ACK acknowledges only the SYN."""
    w = Wire(mode)
    listener = w.layer.tcp_socket()
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, qlen)
    listener.bind("0.0.0.0", PORT)
    listener.listen(8)
    assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN) == qlen
    cookie = w.host.fastopen_keys.cookie_for(PEER)
    w.send(SYN, 100, data=b"hello", cookie=cookie)
    [(_, synack)] = w.take()
    assert synack.ack == (101 + 5 if accepted else 101)


def test_msg_fastopen_needs_the_client_bit() -> None:
    """Linux: sendto(MSG_FASTOPEN) with net.ipv4.tcp_fastopen's client bit clear is
    EOPNOTSUPP; with it, the first SYN asks for a cookie (RFC 7413 4.1.1)."""
    w = Wire(0)
    with pytest.raises(OSError) as exc:
        w.layer.tcp_socket().sendto_fastopen(b"data", PEER, 80)
    assert exc.value.errno == 95  # EOPNOTSUPP
    w = Wire(1)
    assert w.layer.tcp_socket().sendto_fastopen(b"data", PEER, 80) == 4
    [(_, syn)] = w.take()
    assert syn.flags == SYN and syn.options.fastopen == b"" and not syn.payload
