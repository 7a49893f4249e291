"""chargen keeps TSO frames whole: it writes whole segments, so the sender never
holds a sub-MSS tail that leaves later as a frame of its own.

Regression (issue 16): chargen wrote 65,536-byte pieces (45 x 1448 + 376). The 376-
byte tails added up and every fourth write left a 1,504-byte frame: one frame in
five of an offloads-on download carried 2 % of its bytes, at the full per-frame cost.
"""

from __future__ import annotations

from stack.host import Host
from stack.services import CHARGEN_PERIOD, inline
from stack.sockets import SocketLayer
from stack.wire.ipv4 import IPPROTO_TCP, build_ipv4_header
from stack.wire.tcp import ACK, SYN, TCPOptions, TCPSegment, build_tcp, parse_tcp

PEER, STACK = "10.0.0.1", "10.0.0.2"
VNET = bytes(10)  # an empty virtio-net header: offloads on, nothing asked of us


def packet(seg: TCPSegment) -> bytes:
    tcp = build_tcp(seg, PEER, STACK)
    return VNET + build_ipv4_header(PEER, STACK, IPPROTO_TCP, len(tcp), 1) + tcp


def parse(raw: bytes) -> TCPSegment:
    return parse_tcp(raw[len(VNET) + 20:], STACK, PEER, verify_checksum=False)


def test_chargen_frames_are_whole_segments() -> None:
    sent: list[bytes] = []
    now = [1.0]
    host = Host(STACK, lambda parts: sent.append(b"".join(parts)), clock=lambda: now[0],
                offload=True)
    inline.serve(SocketLayer(host), 19, lambda s: inline.Chargen(s, CHARGEN_PERIOD))
    opts = TCPOptions(mss=1460, wscale=7, sack_permitted=True, timestamp=(1, 0))
    host.receive_packet(packet(TCPSegment(40000, 19, 1000, 0, SYN, 65535, options=opts)), now[0])
    synack = parse(sent[-1])
    assert synack.options.timestamp is not None
    echo = synack.options.timestamp[0]
    host.receive_packet(packet(TCPSegment(40000, 19, 1001, synack.seq + 1, ACK, 65535,
                                          options=TCPOptions(timestamp=(2, echo)))), now[0])
    sizes: list[int] = []
    for _ in range(60):  # slow start, then limited by the send buffer (1 MiB)
        data = [seg for seg in map(parse, sent) if seg.payload]
        sent.clear()
        assert data, "chargen stopped sending"
        sizes += [len(seg.payload) for seg in data]
        now[0] += 0.001
        for seg in data:  # the peer ACKs each frame as it arrives
            end = (seg.seq + len(seg.payload)) & 0xFFFFFFFF
            host.receive_packet(packet(TCPSegment(40000, 19, 1001, end, ACK, 65535,
                                                  options=TCPOptions(timestamp=(3, echo)))),
                                now[0])
        host.end_batch(now[0])
    mss = 1448  # 1460 less the timestamp option
    odd = [n for n in sizes if n % mss]
    assert not odd, f"{len(odd)} of {len(sizes)} frames not whole segments: {sorted(set(odd))[:8]}"
