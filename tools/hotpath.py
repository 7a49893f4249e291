"""Per-packet cost of the receive path, without any I/O: a Host fed prebuilt packets.

    python tools/hotpath.py [--packets N] [--profile] [--send | --rr] [--ipv6]

Builds a connection to a listener (port 9), then feeds N in-order 1448-byte data
segments (plain mode: checksums verified) in batches of 32 (so each fits the window the previous ACK opened), and prints microseconds per packet. Used to measure the changes described
in docs/performance.md. `--send` measures the send path (the stack sends, like
chargen); `--rr` 1-byte request/response round trips with the built-in echo service.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import socket
import time

from stack.host import Host
from stack.sockets import SocketLayer
from stack.wire.ipv4 import IPPROTO_TCP, build_ipv4_header
from stack.wire.ipv6 import build_ipv6_header
from stack.wire.tcp import ACK, PSH, SYN, TCPOptions, TCPSegment, build_tcp, parse_tcp

PEER, STACK = "10.1.0.2", "10.0.0.2"
STACK6 = "fd00:0:0:1::2"
IP_HEADER = 20  # where TCP starts in what the host sends (40 with --ipv6)


def packet(seg: TCPSegment) -> bytes:
    tcp = build_tcp(seg, PEER, STACK)
    if ":" in PEER:
        return build_ipv6_header(PEER, STACK, IPPROTO_TCP, len(tcp)) + tcp
    return build_ipv4_header(PEER, STACK, IPPROTO_TCP, len(tcp), 1) + tcp


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=50000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--send", action="store_true", help="measure the send path instead")
    ap.add_argument("--rr", action="store_true", help="measure 1-byte echo round trips instead")
    ap.add_argument("--ipv6", action="store_true", help="the same over IPv6 (fd00:0:0:1::2)")
    args = ap.parse_args()
    global PEER, STACK, IP_HEADER
    if args.ipv6:
        PEER, STACK, IP_HEADER = "fd00:0:0:2::2", STACK6, 40
    if args.rr:
        rr_main(args.packets)
        return
    sent: list[bytes] = []
    clock = [0.0]
    host = Host("10.0.0.2", lambda parts: sent.append(b"".join(parts)), clock=lambda: clock[0],
                address6=STACK6 if args.ipv6 else None)
    host.defer_acks = True
    layer = SocketLayer(host)
    lsock = layer.tcp_socket(socket.AF_INET6 if args.ipv6 else socket.AF_INET)
    lsock.bind("::" if args.ipv6 else "0.0.0.0", 9)
    lsock.listen(16)
    iss = 1000
    opts = TCPOptions(mss=1460, wscale=7, sack_permitted=True, timestamp=(1, 0))
    host.receive_packet(packet(TCPSegment(40000, 9, iss, 0, SYN, 65535, options=opts)), 0.0)
    synack = parse_tcp(sent[-1][IP_HEADER:], STACK, PEER)
    seq, ack = iss + 1, synack.seq + 1
    host.receive_packet(packet(TCPSegment(40000, 9, seq, ack, ACK, 1024,
                                          options=TCPOptions(timestamp=(2, synack.options.timestamp[0])))), 0.0)  # type: ignore[index]
    child = lsock.accept()
    assert child is not None
    payload = bytes(range(256)) * 5 + bytes(168)
    pkts = []
    for i in range(args.packets):
        seg = TCPSegment(40000, 9, (seq + i * 1448) & 0xFFFFFFFF, ack, ACK, 1024, options=TCPOptions(timestamp=(3 + i, 1)), payload=payload)
        pkts.append(packet(seg))

    def run() -> None:
        now = 0.001
        for start in range(0, len(pkts), 32):
            for p in pkts[start:start + 32]:
                host.receive_packet(p, now)
            host.end_batch(now)
            while True:  # the application reads everything
                try:
                    if not child.recv(1 << 20):
                        break
                except BlockingIOError:
                    break
            now += 0.0001

    if args.send:
        run = lambda: send_run(host, child, sent, ack, seq, args.packets)  # noqa: E731

    t0 = time.process_time()  # CPU time: steadier than wall time on a busy machine
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(run)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    else:
        run()
    elapsed = time.process_time() - t0
    print(f"{args.packets} packets: {elapsed * 1e6 / args.packets:.1f} us/packet, "
          f"{args.packets * 1448 * 8 / elapsed / 1e6:.0f} Mbit/s of payload, {len(sent)} packets out")


def send_run(host: Host, child: object, sent: list[bytes], stack_seq: int, peer_seq: int,
             packets: int) -> None:
    """The stack sends (like chargen); the peer ACKs every second segment at once."""
    from stack.sockets import TcpSocket

    assert isinstance(child, TcpSocket)
    chunk = bytes(65536)
    now = 0.001
    acked = stack_seq
    out = 0
    while out < packets:
        while child.send_free > 0 and child.send(chunk):
            pass
        fresh = sent[:]
        sent.clear()
        data = [parse_tcp(p[IP_HEADER:], STACK, PEER, verify_checksum=False) for p in fresh]
        out += len(data)
        for i, seg in enumerate(data):
            if i % 2 == 1 or i == len(data) - 1:
                acked = (seg.seq + len(seg.payload)) & 0xFFFFFFFF
                ack = TCPSegment(40000, 9, peer_seq, acked, ACK, 8192,
                                 options=TCPOptions(timestamp=(5, 1)))
                host.receive_packet(packet(ack), now)
        host.end_batch(now)
        now += 0.0001


def rr_main(rounds: int) -> None:
    """`rounds` 1-byte requests to the echo service, each acknowledging the previous
    reply, as a request/response client sends them; one read batch per request."""
    from stack.services import inline

    sent: list[bytes] = []
    host = Host(STACK, lambda parts: sent.append(b"".join(parts)), clock=lambda: 0.0)
    host.defer_acks = True
    inline.serve(SocketLayer(host), 7, inline.Echo)
    opts = TCPOptions(mss=1460, wscale=7, sack_permitted=True, timestamp=(1, 0))
    host.receive_packet(packet(TCPSegment(40000, 7, 1000, 0, SYN, 65535, options=opts)), 0.0)
    synack = parse_tcp(sent[-1][20:], STACK, PEER)
    seq, ack = 1001, synack.seq + 1
    echo = synack.options.timestamp[0]  # type: ignore[index]
    host.receive_packet(packet(TCPSegment(40000, 7, seq, ack, ACK, 1024,
                                          options=TCPOptions(timestamp=(2, echo)))), 0.0)
    requests = [packet(TCPSegment(40000, 7, seq + i, ack + i, ACK | PSH, 1024,
                                  options=TCPOptions(timestamp=(3 + i, echo)), payload=b"x"))
                for i in range(rounds)]
    sent.clear()
    now = 0.001
    t0 = time.process_time()
    for request in requests:
        host.receive_packet(request, now)
        host.end_batch(now)
        host.run_timers(now)
        now += 0.0001
    elapsed = time.process_time() - t0
    replies = sum(1 for p in sent if len(parse_tcp(p[20:], STACK, PEER).payload) == 1)
    assert replies == rounds, f"{replies} replies to {rounds} requests"
    print(f"{rounds} round trips: {elapsed * 1e6 / rounds:.1f} us each (stack only, no I/O)")


if __name__ == "__main__":
    main()
