"""The namespace topology and the TUN driver, with the test playing the stack.

The peer pings 10.0.0.2; the packet crosses the stack namespace's forwarding into a
TUN opened with ``stack.io.tun.TunDevice``; the test reads the echo request from the
fd and writes a hand-built echo reply that the peer's ``ping`` must accept, with and
without the virtio header. A second test hand-rolls just enough TCP to receive a bulk
transfer and checks that with offloads the kernel hands over TSO super-segments.
"""

from __future__ import annotations

import hashlib
import json
import re
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from netns import (
    PEER_CLIENT,
    STACK_ADDR,
    ImpairSpec,
    Topology,
    call_in_netns,
    list_netns,
    popen_in,
    run,
    run_in,
    wait_until,
)

from stack.io.tun import TUN_F_TSO6, TunDevice, TunError
from stack.io.virtio import (
    PLAIN,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VNET_HDR_LEN,
    parse_vnet_hdr,
)
from stack.wire import icmpv6
from stack.wire.ipv6 import IPPROTO_ICMPV6, build_ipv6_header, parse_ipv6, walk_headers

pytestmark = pytest.mark.root

TUN = "mytun"


# --- hand-made packets ----------------------------------------------------------------
def csum(data: bytes, initial: int = 0) -> int:
    if len(data) % 2:
        data += b"\0"
    total = initial + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_header(src: bytes, dst: bytes, proto: int, payload_len: int, ident: int = 0) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, ident, 0x4000, 64, proto,
                      0, src, dst)
    return hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]


def parse_ip(pkt: bytes) -> tuple[int, bytes, bytes, bytes]:
    """(proto, src, dst, payload) of an IPv4 packet; proto -1 for anything else."""
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return -1, b"", b"", b""
    ihl = (pkt[0] & 0x0F) * 4
    total = struct.unpack_from("!H", pkt, 2)[0]
    return pkt[9], pkt[12:16], pkt[16:20], pkt[ihl:total]


def tcp_segment(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int,
                flags: int, options: bytes = b"", window: int = 65535) -> bytes:
    offset = (20 + len(options)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, offset << 4, flags, window, 0, 0)
    hdr += options
    pseudo = struct.pack("!4s4sBBH", src, dst, 0, 6, len(hdr))
    c = csum(pseudo + hdr)
    hdr = hdr[:16] + struct.pack("!H", c) + hdr[18:]
    return ip_header(src, dst, 6, len(hdr)) + hdr


FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


# --- helpers --------------------------------------------------------------------------
@pytest.fixture
def tun_factory(topology: Topology) -> Iterator[Any]:
    opened: list[TunDevice] = []

    def open_tun(**kw: Any) -> TunDevice:
        dev = call_in_netns(topology.stack_ns, TunDevice.open, TUN, **kw)
        opened.append(dev)
        return dev

    yield open_tun
    for dev in opened:
        call_in_netns(topology.stack_ns, dev.close)


def read_until(tun: TunDevice, want: Any, timeout: float = 10.0) -> tuple[bytes, bytes]:
    """Read packets until ``want(ip_packet)``; return (vnet header or b"", ip packet)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("expected packet did not arrive on the TUN")
        ready, _, _ = select.select([tun.fd], [], [], left)
        if not ready:
            continue
        for raw in tun.read_batch():
            hdr, pkt = (raw[:VNET_HDR_LEN], raw[VNET_HDR_LEN:]) if tun.vnet_hdr else (b"", raw)
            if want(pkt):
                return hdr, pkt


def link_info(ns: str) -> str:
    return str(run_in(ns, ["ip", "-o", "addr", "show", "dev", TUN], timeout=10).stdout) + str(
        run_in(ns, ["ip", "-o", "link", "show", "dev", TUN], timeout=10).stdout)


def tun_exists(ns: str) -> bool:
    return run_in(ns, ["ip", "link", "show", "dev", TUN], timeout=10, check=False).returncode == 0


# --- topology -------------------------------------------------------------------------
def test_peer_reaches_stack_namespace(topology: Topology) -> None:
    cp = run_in(topology.peer_ns, ["ping", "-c", "2", "-i", "0.2", "-W", "2",
                                   topology.stack_ns_addr], timeout=20, check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    route = run_in(topology.peer_ns, ["ip", "route", "get", STACK_ADDR], timeout=10).stdout
    assert f"via {topology.stack_ns_addr}" in route
    fwd = run_in(topology.stack_ns, ["sysctl", "-n", "net.ipv4.ip_forward"], timeout=10).stdout
    assert fwd.strip() == "1"


def test_topology_destroy_is_idempotent_and_tolerant() -> None:
    topo = Topology.create()
    try:
        assert {topo.stack_ns, topo.peer_ns} <= set(list_netns())
        # simulate a half-torn-down topology: one namespace already gone
        run(["ip", "netns", "del", topo.peer_ns], timeout=10)
    finally:
        topo.destroy()
    topo.destroy()
    names = set(list_netns())
    assert topo.stack_ns not in names and topo.peer_ns not in names


def test_root_namespace_untouched(topology: Topology) -> None:
    assert run(["ip", "link", "show", "dev", TUN], timeout=10, check=False).returncode != 0
    for dev in (topology.stack_dev, topology.peer_dev):
        assert run(["ip", "link", "show", "dev", dev], timeout=10, check=False).returncode != 0


# --- TUN ------------------------------------------------------------------------------
@pytest.mark.parametrize("offload", [False, True], ids=["plain", "vnet_hdr"])
def test_tun_answers_ping(topology: Topology, tun_factory: Any, offload: bool) -> None:
    ns = topology.stack_ns
    tun = tun_factory(offload=offload, mtu=1500)
    assert tun.offload_error is None, tun.offload_error
    assert tun.vnet_hdr is offload
    assert tun.created and tun.name == TUN
    info = link_info(ns)
    assert "10.0.0.1/24" in info and "mtu 1500" in info and ",UP" in info, info

    ping = popen_in(topology.peer_ns, ["ping", "-c", "1", "-W", "5", STACK_ADDR],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def is_echo_request(pkt: bytes) -> bool:
            proto, src, dst, payload = parse_ip(pkt)
            return proto == 1 and dst == bytes([10, 0, 0, 2]) and payload[:1] == b"\x08"

        hdr, pkt = read_until(tun, is_echo_request)
        if offload:
            vh = parse_vnet_hdr(hdr)
            assert not vh.is_gso
        _, src, dst, icmp = parse_ip(pkt)
        assert src == bytes([10, 1, 0, 2])
        assert csum(icmp) == 0  # the peer computed a full ICMP checksum
        reply = b"\x00\x00\x00\x00" + icmp[4:]
        reply = reply[:2] + struct.pack("!H", csum(reply)) + reply[4:]
        packet = ip_header(dst, src, 1, len(reply), ident=1) + reply
        tun.write([PLAIN, packet] if offload else [packet])
        assert tun.tx_packets == 1 and tun.tx_dropped == 0
        out, err = ping.communicate(timeout=15)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait(5)
    assert ping.returncode == 0, out + err
    assert "1 received" in out, out

    call_in_netns(ns, tun.close)
    assert tun.closed
    assert not tun_exists(ns)


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "vnet_hdr"])
def test_tun_answers_ping6(topology: Topology, tun_factory: Any, offload: bool) -> None:
    """The kernel side gets its IPv6 address without DAD (a TUN has no neighbours),
    the peer's ping -6 crosses the forwarding namespace into the TUN, and an echo
    reply built by stack.wire (ICMPv6 checksum over the RFC 8200 8.1 pseudo-header)
    is accepted by the kernel's ping."""
    if not topology.ipv6:
        pytest.skip("no IPv6 in these namespaces")
    ns = topology.stack_ns
    tun = tun_factory(offload=offload, mtu=1500, kernel_address6="fd00:0:0:1::1/64")
    assert tun.ipv6_error is None, tun.ipv6_error
    if offload:
        assert tun.offloads & TUN_F_TSO6, hex(tun.offloads)
    info = run_in(ns, ["ip", "-o", "-6", "addr", "show", "dev", TUN], timeout=10).stdout
    ours = [line for line in info.splitlines() if "fd00:0:0:1::1/64" in line]
    # (The kernel's own link-local address may still be tentative: not ours.)
    assert ours and "nodad" in ours[0] and "tentative" not in ours[0], info

    ping = popen_in(topology.peer_ns, ["ping", "-6", "-c", "1", "-W", "5", topology.stack_addr6],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def is_echo_request(pkt: bytes) -> bool:
            if len(pkt) < 48 or pkt[0] >> 4 != 6:
                return False  # also router solicitations and MLD reports arrive here
            header, _ = parse_ipv6(pkt)
            chain = walk_headers(pkt[: 40 + header.payload_length])
            return (header.dst == topology.stack_addr6 and chain.next_header == IPPROTO_ICMPV6
                    and pkt[chain.at] == icmpv6.ECHO_REQUEST)

        _, pkt = read_until(tun, is_echo_request)
        header, _ = parse_ipv6(pkt)
        assert header.src == topology.peer_addr6
        assert header.hop_limit == 63  # one router: the stack namespace
        chain = walk_headers(pkt[: 40 + header.payload_length])
        msg = icmpv6.parse_icmpv6(pkt[chain.at : 40 + header.payload_length], header.src, header.dst)
        reply = icmpv6.build_icmpv6(icmpv6.ECHO_REPLY, 0, bytes(msg.rest), msg.payload,
                                    header.dst, header.src)
        packet = build_ipv6_header(header.dst, header.src, IPPROTO_ICMPV6, len(reply)) + reply
        tun.write([PLAIN, packet] if offload else [packet])
        out, err = ping.communicate(timeout=15)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait(5)
    assert ping.returncode == 0, out + err
    assert "1 received" in out, out


def test_tun_without_ipv6_is_not_an_error(topology: Topology, tun_factory: Any) -> None:
    """IPv6 disabled (as in many containers): the TUN opens, IPv4 works, and
    ipv6_error says why the kernel side has no IPv6 address."""
    run_in(topology.stack_ns, ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                               "net.ipv6.conf.default.disable_ipv6=1"], timeout=10)
    tun = tun_factory(offload=True, kernel_address6="fd00:0:0:1::1/64")
    assert tun.ipv6_error is not None and "IPv6" in tun.ipv6_error
    assert "10.0.0.1/24" in link_info(topology.stack_ns)


def test_tun_receives_tso_segments(topology: Topology, tun_factory: Any) -> None:
    """With IFF_VNET_HDR + TUN_F_TSO4 the peer's bulk TCP arrives in >MTU segments."""
    tun = tun_factory(offload=True)
    assert tun.vnet_hdr, tun.offload_error
    nbytes = 2_000_000
    client = popen_in(topology.peer_ns,
                      [sys.executable, str(PEER_CLIENT), "send", STACK_ADDR, "9", str(nbytes)],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    me = bytes([10, 0, 0, 2])
    iss = 1000
    data_hash = hashlib.sha256()
    received = 0
    gso_sizes: set[int] = set()
    biggest = 0
    rcv_nxt: int | None = None
    peer: tuple[bytes, int] | None = None
    fin_done = False
    try:
        deadline = time.monotonic() + 60
        while client.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([tun.fd], [], [], 0.2)
            if not ready:
                continue
            for raw in tun.read_batch():
                vh = parse_vnet_hdr(raw)
                proto, src, dst, seg = parse_ip(raw[VNET_HDR_LEN:])
                if proto != 6 or dst != me:
                    continue
                sport, dport, seq, _ack = struct.unpack_from("!HHII", seg)
                flags = seg[13]
                payload = seg[(seg[12] >> 4) * 4:]
                if flags & SYN:
                    peer = (src, sport)
                    rcv_nxt = (seq + 1) & 0xFFFFFFFF
                    mss_opt = struct.pack("!BBH", 2, 4, 1460)
                    tun.write([PLAIN, tcp_segment(me, src, dport, sport, iss, rcv_nxt,
                                                  SYN | ACK, mss_opt)])
                    continue
                if peer != (src, sport) or rcv_nxt is None:
                    continue
                if payload and seq == rcv_nxt:
                    data_hash.update(payload)
                    received += len(payload)
                    rcv_nxt = (rcv_nxt + len(payload)) & 0xFFFFFFFF
                    biggest = max(biggest, len(raw) - VNET_HDR_LEN)
                    if vh.gso_type & VIRTIO_NET_HDR_GSO_TCPV4:
                        gso_sizes.add(vh.gso_size)
                our_seq = (iss + 1 + (1 if fin_done else 0)) & 0xFFFFFFFF
                if flags & FIN and (seq + len(payload)) & 0xFFFFFFFF == rcv_nxt and not fin_done:
                    rcv_nxt = (rcv_nxt + 1) & 0xFFFFFFFF
                    tun.write([PLAIN, tcp_segment(me, src, dport, sport, our_seq, rcv_nxt,
                                                  FIN | ACK)])
                    fin_done = True
                elif payload or flags & FIN:
                    tun.write([PLAIN, tcp_segment(me, src, dport, sport, our_seq, rcv_nxt,
                                                  ACK)])
        out, err = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(5)
    assert client.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert received == nbytes
    assert result["sha256"] == data_hash.hexdigest()
    assert fin_done
    # the point of the offload: super-segments bigger than the 1500-byte MTU
    assert biggest > 1500, f"largest packet {biggest} bytes: no TSO"
    assert gso_sizes and max(gso_sizes) <= 1460, gso_sizes


def test_second_open_of_busy_tun_fails(topology: Topology, tun_factory: Any) -> None:
    tun = tun_factory(offload=False)
    with pytest.raises(TunError, match="in use"):
        call_in_netns(topology.stack_ns, TunDevice.open, TUN, offload=False)
    assert tun_exists(topology.stack_ns) and not tun.closed


def test_attach_to_existing_link_is_not_created(topology: Topology, tun_factory: Any) -> None:
    """A pre-existing (persistent) TUN is attached to, configured, and left in place."""
    ns = topology.stack_ns
    run_in(ns, ["ip", "tuntap", "add", "dev", TUN, "mode", "tun"], timeout=10)
    try:
        tun = tun_factory(offload=True, kernel_address=None, mtu=1400)
        assert not tun.created
        info = link_info(ns)
        assert "mtu 1400" in info and "10.0.0.1" not in info, info
        call_in_netns(ns, tun.close)
        assert tun_exists(ns)  # persistent and not ours: still there
    finally:
        run_in(ns, ["ip", "link", "del", "dev", TUN], timeout=10, check=False)


def test_bad_arguments_are_tun_errors(topology: Topology) -> None:
    ns = topology.stack_ns
    with pytest.raises(TunError, match="invalid interface name"):
        call_in_netns(ns, TunDevice.open, "x" * 16, offload=False)
    with pytest.raises(TunError, match="invalid kernel address"):
        call_in_netns(ns, TunDevice.open, TUN, offload=False, kernel_address="10.0.0.300/24")
    with pytest.raises(TunError, match="MTU"):
        call_in_netns(ns, TunDevice.open, TUN, offload=False, mtu=10)
    assert not tun_exists(ns)


def test_closing_removes_device_and_link_waits(topology: Topology, tun_factory: Any) -> None:
    tun = tun_factory(offload=False)
    assert tun_exists(topology.stack_ns)
    call_in_netns(topology.stack_ns, tun.close)
    wait_until(lambda: not tun_exists(topology.stack_ns), 5, what="mytun to disappear")


# --- the impairment used by the lossy end-to-end tests ------------------------------------
def icmp_responder(tun: TunDevice, stop: threading.Event) -> None:
    """Answer every echo request for 10.0.0.2 that arrives on ``tun`` until ``stop``."""
    while not stop.is_set():
        ready, _, _ = select.select([tun.fd], [], [], 0.05)
        if not ready:
            continue
        for raw in tun.read_batch():
            pkt = raw[VNET_HDR_LEN:] if tun.vnet_hdr else raw
            proto, src, dst, icmp = parse_ip(pkt)
            if proto != 1 or dst != bytes([10, 0, 0, 2]) or icmp[:1] != b"\x08":
                continue
            reply = b"\x00\x00\x00\x00" + icmp[4:]
            reply = reply[:2] + struct.pack("!H", csum(reply)) + reply[4:]
            out = ip_header(dst, src, 1, len(reply)) + reply
            tun.write([PLAIN, out] if tun.vnet_hdr else [out])


def test_impair_spec_parse() -> None:
    spec = ImpairSpec.parse("loss 5% delay 20ms 5ms reorder 10% duplicate 2%")
    assert spec == ImpairSpec(loss=0.05, delay=0.02, jitter=0.005, reorder=0.1, duplicate=0.02)
    spec = ImpairSpec.parse("delay 1s loss random 1% 25% duplicate 3%")
    assert spec == ImpairSpec(loss=0.01, delay=1.0, duplicate=0.03)
    with pytest.raises(ValueError):
        ImpairSpec.parse("rate 1mbit")


def test_impairment(topology: Topology, tun_factory: Any) -> None:
    """``Topology.impair`` (netem, or its NFQUEUE emulation) delays, drops, duplicates."""
    tun = tun_factory(offload=False)
    stop = threading.Event()
    responder = threading.Thread(target=icmp_responder, args=(tun, stop), daemon=True)
    responder.start()
    try:
        how = topology.impair("delay 100ms")
        cp = run_in(topology.peer_ns, ["ping", "-c", "3", "-i", "0.2", "-W", "3", STACK_ADDR],
                    timeout=30, check=False)
        m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", cp.stdout)
        assert m, (how, cp.stdout, cp.stderr)
        assert 195 <= float(m.group(1)) < 400, (how, cp.stdout)  # 100 ms each way

        how = topology.impair("loss 30% duplicate 30%")
        cp = run_in(topology.peer_ns, ["ping", "-c", "40", "-i", "0.02", "-W", "1", STACK_ADDR],
                    timeout=60, check=False)
        m = re.search(r"(\d+) received", cp.stdout)
        assert m, (how, cp.stdout, cp.stderr)
        assert 0 < int(m.group(1)) < 40, (how, cp.stdout)  # some lost, not all
        assert "DUP!" in cp.stdout, (how, cp.stdout)

        topology.clear_impairment()  # back to a clean path
        assert topology.emulator is None
        cp = run_in(topology.peer_ns, ["ping", "-c", "5", "-i", "0.05", "-W", "2", STACK_ADDR],
                    timeout=30, check=False)
        assert "5 received" in cp.stdout and "DUP!" not in cp.stdout, cp.stdout
    finally:
        topology.clear_impairment()
        stop.set()
        responder.join(5)
