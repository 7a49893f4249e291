"""echo, discard and chargen (stack/services/inline.py) through a Host fed real packets.

Sans-IO: no root, no network, a fake clock. A scripted peer speaks TCP to a real `Host`
with IPv4/TCP packets built by stack.wire, and parses (checksums verified) every packet
the host transmits. The peer decides when to send, when to acknowledge and when to
retransmit, so each test can hold the stack in the situation it wants to look at.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stack.host import Host
from stack.observe.events import EventLog
from stack.services import CHARGEN_PERIOD, Services, chargen_line, inline
from stack.sockets import SocketLayer, TcpSocket
from stack.tcp.connection import Connection, State
from stack.wire.ipv4 import IPPROTO_TCP, build_ipv4_header, parse_ipv4
from stack.wire.tcp import ACK, FIN, RST, SYN, TCPOptions, TCPSegment, build_tcp, parse_tcp

PEER, STACK = "10.1.0.2", "10.0.0.2"
MASK = 0xFFFFFFFF
MSS = 1460  # what the peer offers; the stack's own MSS (MTU 1500) is the same
BUF = 64 * 1024  # send and receive buffers of the stack's connections, to keep tests cheap


class Net:
    """A Host on a fake clock; what it transmits is parsed and handed to the peers."""

    def __init__(self, *, defer_acks: bool = False, **host_args: Any) -> None:
        self.now = 0.0
        self.out: list[bytes] = []
        self.host = Host(STACK, self._transmit, clock=lambda: self.now, **host_args)
        self.host.defer_acks = defer_acks  # as the daemon's driver: ACKs after each read batch
        self.layer = SocketLayer(self.host)
        self.peers: dict[int, Peer] = {}

    def _transmit(self, parts: list[bytes | memoryview]) -> None:
        self.out.append(b"".join(parts))

    def send(self, seg: TCPSegment) -> None:
        tcp = build_tcp(seg, PEER, STACK)
        self.host.receive_packet(build_ipv4_header(PEER, STACK, IPPROTO_TCP, len(tcp), 1) + tcp, self.now)
        self.host.end_batch(self.now)  # a batch of one packet
        self.deliver()

    def deliver(self) -> None:
        while self.out:
            batch, self.out = self.out, []
            for raw in batch:
                header, payload = parse_ipv4(raw)
                assert (header.src, header.dst, header.proto) == (STACK, PEER, IPPROTO_TCP)
                seg = parse_tcp(payload, STACK, PEER)  # verifies the checksum
                self.peers[seg.dst_port].receive(seg)

    def tick(self, dt: float) -> None:
        self.now += dt
        self.host.run_timers(self.now)
        self.deliver()


class Peer:
    """One connection's far end: sends `data` (then a FIN if `closing`) within the
    window the stack offers, and collects the stack's byte stream, deduplicated by
    sequence number."""

    def __init__(self, net: Net, port: int, data: bytes = b"", *, sport: int = 40000,
                 iss: int | None = None, early_fin: bool = False) -> None:
        self.net, self.port, self.sport = net, port, sport
        self.iss = (sport * 100_003) & MASK if iss is None else iss
        self.data = data
        self.closing = early_fin
        self.sent_upto = 0  # offset in `data` of the next byte to send
        self.fin_sent = False
        self.acked = 0  # how much of `data` the stack acknowledged (+1 for our FIN)
        self.right = 0  # the right edge of the stack's window, as an offset in `data`
        self.windows: list[int] = []  # the (scaled) window of every ACK from the stack
        self.stack_iss: int | None = None
        self.wscale = 0
        self.stream = bytearray()  # what the stack sent, in order, each byte once
        self.repeats = 0  # bytes the stack sent again (retransmissions)
        self.fin_at: int | None = None  # offset of the stack's FIN in its stream
        self.fin_seq: int | None = None
        self.reset = False
        self.acking = 0  # how much of `stream` we acknowledge
        self.fin_acked = False
        net.peers[sport] = self
        opts = TCPOptions(mss=MSS, wscale=7, sack_permitted=True)
        self._send(SYN, seq=self.iss, window=65535, options=opts)
        assert self.stack_iss is not None, "no SYN-ACK"
        if early_fin:  # the handshake's last ACK carries all the data and our FIN
            assert len(data) <= MSS
            self.sent_upto, self.fin_sent = len(data), True
            self._send(ACK | FIN, data, seq=self.iss + 1)
        else:
            self._send(ACK)

    # -------------------------------------------------------------- sending

    @property
    def next_seq(self) -> int:
        return self.iss + 1 + self.sent_upto + int(self.fin_sent)

    def _send(self, flags: int, payload: bytes = b"", *, seq: int | None = None,
              window: int = 65535, options: TCPOptions | None = None) -> None:
        seq = self.next_seq if seq is None else seq
        ack = 0
        if flags & ACK:
            assert self.stack_iss is not None
            ack = self.stack_iss + 1 + self.acking + int(self.fin_acked)
        seg = TCPSegment(self.sport, self.port, seq & MASK, ack & MASK, flags, window,
                         options=options or TCPOptions(), payload=payload)
        self.net.send(seg)

    def push(self, upto: int | None = None) -> int:
        """Send new data (not beyond `upto`) while the stack's window allows; the FIN
        after the last byte if `closing`. Returns how many bytes were sent."""
        end = len(self.data) if upto is None else min(upto, len(self.data))
        sent = 0
        while self.sent_upto < min(end, self.right):
            start = self.sent_upto
            n = min(MSS, end - start, self.right - start)
            last = self.closing and start + n == len(self.data)
            self._send(ACK | (FIN if last else 0), self.data[start : start + n],
                       seq=self.iss + 1 + start)
            self.sent_upto += n
            self.fin_sent = self.fin_sent or last
            sent += n
        if (self.closing and not self.fin_sent and self.sent_upto == len(self.data)
                and self.sent_upto < self.right):
            self._send(ACK | FIN, seq=self.iss + 1 + self.sent_upto)
            self.fin_sent = True
        return sent

    def ack(self, upto: int | None = None) -> bool:
        """Acknowledge the stack's stream up to `upto` (default: all of it, and its FIN).
        A pure ACK goes out only when that acknowledges something new."""
        target = len(self.stream) if upto is None else upto
        fin = upto is None and self.fin_at is not None and self.fin_at == len(self.stream)
        if (target, fin) == (self.acking, self.fin_acked):
            return False
        self.acking, self.fin_acked = target, fin
        self._send(ACK)
        return True

    def rewind(self) -> None:
        """Go back to the first byte the stack has not acknowledged (it dropped some)."""
        self.sent_upto = min(self.acked, len(self.data))
        self.fin_sent = self.acked > len(self.data)

    def rst(self) -> None:
        self._send(RST, seq=self.next_seq)

    # ------------------------------------------------------------ receiving

    def receive(self, seg: TCPSegment) -> None:
        if seg.flags & RST:
            self.reset = True
            return
        if seg.flags & SYN:
            assert seg.flags & ACK and seg.ack == (self.iss + 1) & MASK
            self.stack_iss = seg.seq
            self.wscale = seg.options.wscale or 0
            self.right = seg.window  # never scaled in a SYN (RFC 7323 2.2)
            return
        assert self.stack_iss is not None
        if seg.flags & ACK:
            acked = (seg.ack - self.iss - 1) & MASK
            assert acked <= len(self.data) + 1, "the stack acknowledged bytes never sent"
            self.acked = max(self.acked, acked)
            window = seg.window << self.wscale
            self.windows.append(window)
            self.right = acked + window
        offset = (seg.seq - self.stack_iss - 1) & MASK
        payload = bytes(seg.payload)
        if payload:
            assert offset <= len(self.stream), "the stack skipped bytes"
            assert self.fin_at is None or offset + len(payload) <= self.fin_at, "data after FIN"
            overlap = self.stream[offset : offset + len(payload)]
            assert payload[: len(overlap)] == overlap, "a retransmission differs"
            self.repeats += len(overlap)
            self.stream += payload[len(overlap) :]
        if seg.flags & FIN:
            end = offset + len(payload)
            assert self.fin_at in (None, end), "the FIN moved"
            self.fin_at, self.fin_seq = end, (seg.seq + len(payload)) & MASK


def exchange(peer: Peer, done: Callable[[], bool], each: Callable[[], None] | None = None,
             rounds: int = 3000) -> None:
    """Like a well-behaved TCP peer: acknowledge everything, send what the window
    allows; when nothing moves, resend from the stack's ACK, then let time pass."""
    for _ in range(rounds):
        if done():
            return
        progress = peer.ack()
        progress = peer.push() > 0 or progress
        if each is not None:
            each()
        if not progress:
            peer.rewind()
            if not peer.push():
                peer.net.tick(0.05)  # delayed ACKs, retransmissions
    raise AssertionError("no progress")


def sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def echo_net(defer_acks: bool = False) -> tuple[Net, list[inline.Echo]]:
    net = Net(defer_acks=defer_acks)
    # The listener's connections take their buffers from the defaults it was made with.
    net.host.tcp_defaults.send_buffer = BUF
    net.host.tcp_defaults.recv_buffer = BUF
    handlers: list[inline.Echo] = []

    def make(sock: TcpSocket) -> inline.Echo:
        handlers.append(inline.Echo(sock))
        return handlers[-1]

    inline.serve(net.layer, 7, make)
    return net, handlers


def conn_of(sock: TcpSocket) -> Connection:
    assert sock.conn is not None
    return sock.conn


# --------------------------------------------------------------------- echo


@pytest.mark.parametrize("defer_acks", [False, True])
def test_echo_is_flow_controlled_and_returns_every_byte_in_order(defer_acks: bool) -> None:
    net, handlers = echo_net(defer_acks)
    data = random.Random(862).randbytes(4 * BUF + 1234)
    peer = Peer(net, 7, data, iss=MASK - 20_000)  # the peer's sequence numbers wrap
    (echo,) = handlers
    conn = conn_of(echo.sock)
    assert conn.config.send_buffer == BUF and conn.config.recv_buffer == BUF
    # The peer sends all the window allows and acknowledges nothing.
    while peer.push():
        net.tick(0.05)  # a delayed ACK may still open the window
    # The echo filled its send buffer, then stopped reading: the data waits in the
    # receive buffer and the window the stack offers closed.
    assert echo.sock.send_free == 0 and not echo.pending
    assert conn.rcv.rx_len > BUF // 2
    assert peer.sent_upto < len(data)
    assert conn.rcv.bytes_received == peer.sent_upto  # everything sent was taken...
    assert conn.snd.sendbuf.end + conn.rcv.rx_len == peer.sent_upto  # ... and nothing lost
    assert max(peer.windows) >= BUF // 2
    assert peer.windows[-1] == 0
    peak = peer.windows.index(max(peer.windows))
    assert min(peer.windows[peak:]) == 0
    assert peer.stream == data[: len(peer.stream)]
    assert len(peer.stream) < conn.snd.sendbuf.end  # the rest waits for our ACKs
    # Time passes without ACKs: the stack retransmits, the peer keeps each byte once.
    # (The tail loss probe comes first, at the initial RTO's expiry, RFC 8985 7.2, and
    # may carry new data; the RTO follows, re-armed by the probe, 7.3.)
    for _ in range(60):
        net.tick(0.1)
        if peer.repeats:
            break
    assert peer.repeats > 0
    # The peer acknowledges: the rest is echoed.
    exchange(peer, lambda: len(peer.stream) >= len(data))
    assert len(peer.stream) == len(data)
    assert sha(peer.stream) == sha(data)
    assert conn.rcv.rx_len == 0 and not echo.pending
    assert peer.windows[-1] > 0
    assert conn.state == State.ESTABLISHED and peer.fin_at is None


def test_echo_closes_after_the_peers_fin_once_everything_is_echoed() -> None:
    net, handlers = echo_net()
    data = random.Random(7).randbytes(BUF + BUF // 2 + 77)
    peer = Peer(net, 7, data)
    peer.closing = True
    (echo,) = handlers
    conn = conn_of(echo.sock)
    while peer.push():
        pass
    # All the data and our FIN are in while the echo waits for room to send.
    assert peer.fin_sent and peer.acked == len(data) + 1
    assert conn.state == State.CLOSE_WAIT and conn.rcv.rx_len > 0
    assert peer.fin_at is None  # no FIN before the data is echoed
    exchange(peer, lambda: peer.fin_acked)
    assert peer.stream == data
    assert peer.fin_at == len(data)
    assert peer.stack_iss is not None
    assert peer.fin_seq == (peer.stack_iss + 1 + len(data)) & MASK
    assert echo.sock.closed
    assert conn.state == State.CLOSED and not net.host.conns  # our ACK of its FIN ended it


def test_echo_of_data_and_fin_on_the_handshakes_last_ack() -> None:
    net, handlers = echo_net()
    peer = Peer(net, 7, b"hello, echo\r\n", early_fin=True)
    assert len(handlers) == 1
    assert peer.stream == b"hello, echo\r\n"
    assert peer.fin_at == len(peer.stream)
    assert handlers[0].sock.closed
    peer.ack()
    assert not net.host.conns


def test_echo_reset_by_the_peer_while_it_waits_for_room() -> None:
    net, handlers = echo_net()
    peer = Peer(net, 7, random.Random(5).randbytes(BUF + BUF // 2))
    (echo,) = handlers
    conn = conn_of(echo.sock)
    while peer.push():
        pass
    assert echo.sock.send_free == 0 and conn.rcv.rx_len > 0
    net.out.clear()
    peer.rst()  # nothing raises
    assert echo.sock.closed and conn.state == State.CLOSED
    assert not net.host.conns and net.host.memory.used == 0
    assert not net.out  # a reset is not answered


def test_echo_keeps_what_it_read_while_the_host_is_out_of_memory() -> None:
    limit = 64 * 1024
    net = Net(tcp_memory=limit)
    memory = net.host.memory
    net.host.tcp_defaults.send_buffer = 16 * 1024
    net.host.tcp_defaults.recv_buffer = BUF
    plain = net.layer.tcp_listener(10)  # its accepted socket is never read (for a while)
    handlers: list[inline.Echo] = []
    inline.serve(net.layer, 7, lambda s: handlers.append(inline.Echo(s)))
    data = random.Random(3).randbytes(3 * BUF + 555)
    peer = Peer(net, 7, data)
    (echo,) = handlers
    conn = conn_of(echo.sock)
    # The echo fills its send buffer (the peer does not ACK); the rest waits unread.
    peer.push(upto=30_000)
    assert echo.sock.send_free == 0 and conn.rcv.rx_len == 30_000 - 16 * 1024
    # Another connection takes the host's memory, to 1400 bytes beyond the limit.
    hog = Peer(net, 10, random.Random(4).randbytes(BUF), sport=41000)
    hog_sock = plain.accept()
    assert hog_sock is not None
    hog.push(upto=limit - 60 - memory.used)
    assert memory.used == limit - 60 and not memory.pressure
    hog.push(upto=hog.sent_upto + MSS)
    assert memory.pressure and memory.used == limit + 1400
    # The peer acknowledges 500 bytes: the echo reads 500 more, but the host
    # refuses to take them (send() returns 0) while the pressure lasts.
    peer.ack(upto=500)
    assert memory.pressure
    assert len(echo.pending) == 500 and echo.sock.send_free == 500
    assert conn.rcv.rx_len == 30_000 - 16 * 1024 - 500
    assert not echo.sock.writable
    # More data from the peer is dropped, not queued (the peer must send it again).
    peer.push(upto=40_000)
    assert net.host.stats["drop_tcp_memory"] > 0
    assert conn.rcv.bytes_received == 30_000
    # The other connection is read: the pressure ends and the echo goes on at once.
    assert hog_sock.recv(1 << 20) == hog.data[: hog.sent_upto]
    net.deliver()
    assert not memory.pressure
    assert not echo.pending
    # ... and returns every byte, once the peer resends what was dropped.
    peer.closing = True
    exchange(peer, lambda: peer.fin_acked)
    assert len(peer.stream) == len(data)
    assert sha(peer.stream) == sha(data)
    assert echo.sock.closed and peer.fin_at == len(data)
    assert memory.used == sum(net.host.memory_charged(c) for c in net.host.conns.values())


# ------------------------------------------------------- discard and chargen


def start(services: Services, name: str, port: int) -> None:
    asyncio.run(services.start(name, port))


def read_events(log: EventLog, path: Path) -> list[dict[str, Any]]:
    log.flush()
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_discard_logs_length_and_sha256_then_closes(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    net = Net(events=log)
    net.host.tcp_defaults.recv_buffer = BUF
    services = Services(net.layer, log)
    start(services, "discard", 9)
    data = random.Random(863).randbytes(3 * BUF + 99)
    peer = Peer(net, 9, data, sport=40009)
    conn = net.host.conns[(9, PEER, 40009)]
    sock = net.host.owner_of(conn)
    assert isinstance(sock, TcpSocket)

    def consumed() -> None:
        assert conn.rcv.rx_len == 0  # thrown away as it comes: the window stays open

    exchange(peer, lambda: peer.sent_upto == len(data), consumed)
    net.tick(0.05)  # the delayed ACK of the last segment
    assert peer.acked == len(data) and min(peer.windows) >= BUF // 2
    assert not [e for e in read_events(log, path) if e["type"] == "service"]
    peer.closing = True
    peer.push()
    assert peer.fin_at == 0 and peer.stream == b""  # discard sends nothing but its FIN
    assert peer.stack_iss is not None and peer.fin_seq == (peer.stack_iss + 1) & MASK
    assert sock.closed
    peer.ack()
    assert not net.host.conns
    log.close()
    service = [e for e in read_events(log, path) if e["type"] == "service"]
    assert len(service) == 1
    event = service[0]
    assert event["service"] == "discard"
    assert event["bytes"] == len(data)
    assert event["sha256"] == sha(data)
    assert event["conn"] == f"{STACK}:9-{PEER}:40009"


def test_chargen_sends_the_rfc864_pattern_ignores_input_and_survives_a_reset() -> None:
    net = Net()
    services = Services(net.layer, None)
    start(services, "chargen", 19)
    peer = Peer(net, 19, random.Random(864).randbytes(5000), sport=40019)
    conn = net.host.conns[(19, PEER, 40019)]
    sock = net.host.owner_of(conn)
    assert isinstance(sock, TcpSocket)
    pattern = CHARGEN_PERIOD * 20  # 140,600 bytes
    # The first bytes, before any ACK: line 0, line 1, ...
    assert len(peer.stream) >= 3 * 74
    assert peer.stream[:74] == chargen_line(0) and peer.stream[74:148] == chargen_line(1)
    assert peer.stream == pattern[: len(peer.stream)]
    # What the peer sends is read and thrown away; the stream goes on.
    before = len(peer.stream)
    while peer.push():
        pass
    net.tick(0.05)  # the delayed ACK of the last segment
    assert peer.sent_upto == len(peer.data) and peer.acked == len(peer.data)
    assert conn.rcv.rx_len == 0
    exchange(peer, lambda: len(peer.stream) >= 100_000)  # beyond one 64 KiB chunk
    assert len(peer.stream) > before
    assert peer.stream == pattern[: len(peer.stream)]
    assert peer.fin_at is None and conn.state == State.ESTABLISHED
    # The peer resets: the socket is closed, the connection gone, nothing raised.
    net.out.clear()
    peer.rst()
    assert sock.closed
    assert conn.state == State.CLOSED and not net.host.conns
    assert not peer.reset  # the stack does not answer a reset
    services.close()
