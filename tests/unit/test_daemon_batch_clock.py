"""One read batch, one `now`: the TSvals the daemon sends never go backwards.

Regression (issue 16, the offloads-on download that halved by chance): the daemon
handled a batch of ACKs at the time it read them, while chargen's `send` calls in
between read a fresh clock. When a batch took longer than a millisecond, a segment
with the later TSval left first and the next ACK of the same batch released one
with the earlier TSval, which the peer's PAWS check (RFC 7323 section 5) dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from stack.daemon import BatchClock, Daemon, DaemonOptions
from stack.host import Host
from stack.services import CHARGEN_PERIOD, inline
from stack.sockets import SocketLayer
from stack.wire.ipv4 import IPPROTO_TCP, build_ipv4_header
from stack.wire.tcp import ACK, SYN, TCPOptions, TCPSegment, build_tcp, parse_tcp

PEER, STACK = "10.0.0.1", "10.0.0.2"


def packet(seg: TCPSegment) -> bytes:
    tcp = build_tcp(seg, PEER, STACK)
    return build_ipv4_header(PEER, STACK, IPPROTO_TCP, len(tcp), 1) + tcp


class FakeTun:
    def __init__(self) -> None:
        self.queue: list[bytes] = []

    def read_batch(self, max_packets: int) -> list[bytes]:
        batch, self.queue = self.queue[:max_packets], self.queue[max_packets:]
        return batch


class SteppingClock:
    """A clock that moves 3 ms each time it is read, like a slow busy batch."""

    def __init__(self) -> None:
        self.t = 1.0

    def __call__(self) -> float:
        self.t += 0.003
        return self.t


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


def test_batch_clock_freezes_and_thaws() -> None:
    clock = BatchClock(SteppingClock())
    now = clock.freeze()
    assert clock() == now and clock() == now
    clock.thaw()
    assert clock() > now


def test_tsvals_of_one_batch_never_go_backwards(loop: asyncio.AbstractEventLoop) -> None:
    daemon = Daemon(DaemonOptions())
    daemon.clock.source = SteppingClock()
    sent: list[bytes] = []
    host = Host(STACK, lambda parts: sent.append(b"".join(parts)), clock=daemon.clock)
    host.defer_acks = True
    inline.serve(SocketLayer(host), 19, lambda s: inline.Chargen(s, CHARGEN_PERIOD))
    tun = FakeTun()
    daemon.tun, daemon.host = tun, host  # type: ignore[assignment]

    opts = TCPOptions(mss=1460, wscale=7, sack_permitted=True, timestamp=(1, 0))
    tun.queue.append(packet(TCPSegment(40000, 19, 1000, 0, SYN, 65535, options=opts)))
    daemon.on_tun_readable()
    synack = parse_tcp(sent[-1][20:], STACK, PEER)
    assert synack.options.timestamp is not None
    echo = synack.options.timestamp[0]
    tun.queue.append(packet(TCPSegment(40000, 19, 1001, synack.seq + 1, ACK, 65535,
                                       options=TCPOptions(timestamp=(2, echo)))))
    daemon.on_tun_readable()  # established: chargen fills the initial window
    for _ in range(40):
        data = [parse_tcp(p[20:], STACK, PEER) for p in sent]
        sent.clear()
        ends = sorted({(s.seq + len(s.payload)) & 0xFFFFFFFF for s in data if s.payload})
        assert ends, "chargen sent nothing"
        # One batch: an ACK for every third segment the stack sent (a receiver that
        # coalesces ACKs), each releasing more data, chargen writing more in between.
        acked = ends[2::3] + ([ends[-1]] if len(ends) % 3 else [])
        tun.queue.extend(packet(TCPSegment(40000, 19, 1001, end, ACK, 65535,
                                           options=TCPOptions(timestamp=(3, echo))))
                         for end in acked)
        daemon.on_tun_readable()
        tsvals = [parse_tcp(p[20:], STACK, PEER).options.timestamp[0]  # type: ignore[index]
                  for p in sent]
        assert len(tsvals) > 1
        assert tsvals == sorted(tsvals), f"TSval went backwards within one batch: {tsvals}"
