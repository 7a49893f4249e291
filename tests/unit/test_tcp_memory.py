"""The host-wide TCP memory bound (stack/tcp/memory.py) through a Host with real packets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stack.host import Host
from stack.observe.events import EventLog
from stack.sockets import SocketLayer, TcpSocket
from stack.tcp.memory import MIN_PER_CONN, held_by
from stack.wire.ipv4 import IPPROTO_TCP, build_ipv4_header
from stack.wire.tcp import ACK, SYN, TCPOptions, TCPSegment, build_tcp, parse_tcp

PEER, STACK = "10.1.0.2", "10.0.0.2"
LIMIT = 64 * 1024
MSS = 1448


def packet(seg: TCPSegment) -> bytes:
    tcp = build_tcp(seg, PEER, STACK)
    return build_ipv4_header(PEER, STACK, IPPROTO_TCP, len(tcp), 1) + tcp


class Peer:
    """One kernel-like peer connection, sending numbered data segments."""

    def __init__(self, host: Host, sent: list[bytes], port: int) -> None:
        self.host, self.port = host, port
        iss = 1000 * port
        opts = TCPOptions(mss=1460, wscale=7, sack_permitted=True)
        host.receive_packet(packet(TCPSegment(port, 9, iss, 0, SYN, 65535, options=opts)), 0.0)
        synack = parse_tcp(sent[-1][20:], STACK, PEER)
        self.seq, self.ack = iss + 1, synack.seq + 1
        self.isn = self.seq
        self.segment(b"")  # completes the handshake

    def segment(self, payload: bytes, seq: int | None = None) -> None:
        seq = self.seq if seq is None else seq
        seg = TCPSegment(self.port, 9, seq & 0xFFFFFFFF, self.ack, ACK, 8192, options=TCPOptions(),
                         payload=payload)
        self.host.receive_packet(packet(seg), 0.01)
        if seq == self.seq:
            self.seq += len(payload)


def data(i: int) -> bytes:
    return bytes([i % 251]) * MSS


def setup(tmp_path: Path) -> tuple[Host, list[bytes], EventLog, TcpSocket]:
    sent: list[bytes] = []
    log = EventLog(tmp_path / "events.jsonl")
    host = Host(STACK, lambda parts: sent.append(b"".join(parts)), events=log,
                clock=lambda: 0.01, tcp_memory=LIMIT)
    listener = SocketLayer(host).tcp_socket()
    listener.bind("0.0.0.0", 9)
    listener.listen(16)
    return host, sent, log, listener


def events(log: EventLog, path: Path) -> list[dict[str, Any]]:
    log.flush()
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pressure_drops_data_of_full_connections_only_and_recovers(tmp_path: Path) -> None:
    host, sent, log, listener = setup(tmp_path)
    a = Peer(host, sent, 40000)
    child_a = listener.accept()
    assert child_a is not None
    # Connection A's application does not read: A fills the host's budget.
    n = 0
    while host.memory.used < LIMIT:
        a.segment(data(n))
        n += 1
    accepted = n * MSS
    assert host.memory.pressure
    # Beyond the limit, A's data is dropped (and counted), not queued.
    dropped_seq = a.seq
    for i in range(5):
        a.segment(data(n + i), seq=dropped_seq)
    assert host.stats["drop_tcp_memory"] == 5
    assert child_a.conn is not None and child_a.conn.rcv.rx_len == accepted
    # ... and answered with an ACK for what we still expect (the peer retransmits).
    last_ack = parse_tcp(sent[-1][20:], STACK, PEER)
    assert last_ack.ack == dropped_seq & 0xFFFFFFFF
    # A is not writable and its send() takes nothing.
    woken: list[int] = []
    child_a.on_change = lambda: woken.append(1)
    assert not child_a.writable
    assert child_a.send(b"x" * 100) == 0
    # A new connection still gets up to its guaranteed minimum.
    b = Peer(host, sent, 40001)
    child_b = listener.accept()
    assert child_b is not None and child_b.conn is not None
    for i in range(3):
        b.segment(data(i))
    assert child_b.conn.rcv.rx_len == 3 * MSS  # 2 segments reach MIN_PER_CONN, the 3rd is let in
    assert 2 * MSS < MIN_PER_CONN <= 3 * MSS
    b.segment(data(3))
    assert child_b.conn.rcv.rx_len == 3 * MSS
    # The accounting matches what the connections hold, and the bound held.
    assert host.memory.used == sum(held_by(c) for c in host.conns.values())
    assert host.memory.peak <= LIMIT + MSS + MIN_PER_CONN
    # A's application reads: the pressure ends and A's owner is told.
    got = child_a.recv(1 << 20)
    assert len(got) == accepted
    assert not host.memory.pressure and woken
    assert child_a.writable and child_a.send(b"x" * 100) == 100
    # The peer retransmits what was dropped: now it is taken, in order.
    a.segment(data(n), seq=dropped_seq)
    assert child_a.recv(1 << 20) == data(n)
    log.close()
    memory = [e for e in events(log, tmp_path / "events.jsonl") if e["type"] == "memory"]
    assert [e["state"] for e in memory] == ["pressure", "normal"]
    assert memory[0]["limit"] == LIMIT and memory[0]["used"] >= LIMIT
    drops = [e for e in events(log, tmp_path / "events.jsonl")
             if e["type"] == "drop" and e.get("reason") == "tcp_memory"]
    assert len(drops) == 6  # five for A, one for B's fourth segment
    assert all(e["conn"] for e in drops)


def test_closed_connections_give_their_memory_back(tmp_path: Path) -> None:
    host, sent, log, listener = setup(tmp_path)
    a = Peer(host, sent, 40000)
    child = listener.accept()
    assert child is not None
    for i in range(10):
        a.segment(data(i))
    assert host.memory.used == 10 * MSS
    child.close()  # unread data: the close is a reset (RFC 1122 4.2.2.13)
    assert host.memory.used == 0
    assert not host.conns


def test_pressure_ends_only_below_the_low_mark(tmp_path: Path) -> None:
    """Hysteresis (as Linux's tcp_mem): pressure starts at the limit and ends below 7/8
    of it, so that the state does not flip with every packet near the limit."""
    host, sent, log, listener = setup(tmp_path)
    a = Peer(host, sent, 40000)
    child = listener.accept()
    assert child is not None
    n = 0
    while not host.memory.pressure:
        a.segment(data(n))
        n += 1
    assert host.memory.used >= LIMIT > host.memory.low == LIMIT - LIMIT // 8
    child.recv(4 * MSS)  # below the limit, above the low mark: still under pressure
    assert host.memory.low <= host.memory.used < LIMIT and host.memory.pressure
    a.segment(data(n))
    assert host.stats["drop_tcp_memory"] == 1
    child.recv(LIMIT // 8)  # below the low mark: over
    assert host.memory.used < host.memory.low and not host.memory.pressure
    log.close()
    states = [e["state"] for e in events(log, tmp_path / "events.jsonl") if e["type"] == "memory"]
    assert states == ["pressure", "normal"]
