"""End to end over IPv6: the tcplab daemon against the Linux kernel in namespaces.

The daemon owns fd00:0:0:1::2 behind ``mytun`` (kernel side fd00:0:0:1::1/64); the peer
(fd00:0:0:2::2) reaches it through the stack namespace's IPv6 forwarding. Byte-exact
checks by SHA-256, header fields from the daemon's pcap (stack.labkit.capture, whose
IPv6 decoding is tested against scapy), and a path MTU test behind a router whose link
to the peer is 1280 octets.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netns import (
    STACK_ADDR6,
    CommandError,
    RoutedTopology,
    StackDaemon,
    Topology,
    popen_in,
    run_in,
    run_peer_client,
    wait_until,
)

from stack.labkit.capture import Packet, read_pcap

pytestmark = pytest.mark.root

ECHO, DISCARD, CHARGEN, HTTP = 7, 9, 19, 80
MB = 1_000_000


@pytest.fixture(autouse=True)
def _needs_ipv6(request: pytest.FixtureRequest) -> None:
    if "topology" in request.fixturenames:
        topo: Topology = request.getfixturevalue("topology")
        if not topo.ipv6:
            pytest.skip("no IPv6 in these namespaces")
    if "stack" in request.fixturenames:
        daemon: StackDaemon = request.getfixturevalue("stack")
        ready = next((line for line in daemon.stderr.splitlines() if "ready" in line), "")
        assert STACK_ADDR6 in ready, f"the daemon does not serve IPv6:\n{daemon.stderr}"


def peer(topology: Topology, stack: StackDaemon, *args: str | int, timeout: float = 120) -> dict[str, Any]:
    """run_peer_client, with the daemon's log in the failure if the client fails."""
    try:
        return run_peer_client(topology, *args, timeout=timeout)
    except CommandError as exc:
        raise AssertionError(f"{exc}\n--- the daemon's log:\n{stack.stderr[-3000:]}") from None


def http_body_sha256(n: int) -> str:
    return hashlib.sha256(random.Random(n).randbytes(n)).hexdigest()


def curl6_sha256(ns: str, n: int, timeout: float = 120) -> str:
    """``curl -6 'http://[fd00:0:0:1::2]/bytes/N' | sha256sum`` in ``ns`` (curl's own
    failure, with its message, fails the command)."""
    cmd = (f"set -o pipefail; curl -6 -sS --max-time {int(timeout) - 5} "
           f"'http://[{STACK_ADDR6}]/bytes/{n}' | sha256sum")
    return str(run_in(ns, ["bash", "-c", cmd], timeout=timeout).stdout).split()[0]


def stack_packets(stack: StackDaemon) -> list[Packet]:
    stack.stop()  # flushes the pcap
    return read_pcap(stack.pcap_path)


def test_ping6(topology: Topology, stack: StackDaemon) -> None:
    cp = run_in(topology.peer_ns, ["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", STACK_ADDR6],
                timeout=20, check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "3 received" in cp.stdout
    replies = [p for p in stack_packets(stack) if p.version == 6 and p.icmp is not None
               and p.icmp.type == 129]
    assert len(replies) == 3
    assert all(p.src == STACK_ADDR6 and p.dst == topology.peer_addr6 and p.ttl == 64 for p in replies)


def test_ping6_large_is_fragmented_both_ways(topology: Topology, stack: StackDaemon) -> None:
    """A 4000-octet echo: the peer's kernel fragments the request (RFC 8200 4.5, only
    sources fragment), the stack reassembles it and fragments its reply to fit the
    1500-octet link."""
    cp = run_in(topology.peer_ns, ["ping", "-6", "-c", "2", "-s", "4000", "-W", "3", STACK_ADDR6],
                timeout=20, check=False)
    assert cp.returncode == 0 and "2 received" in cp.stdout, cp.stdout + cp.stderr
    packets = stack_packets(stack)
    out = [p for p in packets if p.version == 6 and p.src == STACK_ADDR6 and p.is_fragment or
           (p.src == STACK_ADDR6 and p.version == 6 and p.more_fragments)]
    assert out and all(p.total_length <= 1500 for p in out)


def test_http6_byte_exact(topology: Topology, stack: StackDaemon) -> None:
    n = 3 * MB
    assert curl6_sha256(topology.peer_ns, n) == http_body_sha256(n)


def test_echo6_20mb(topology: Topology, stack: StackDaemon, rates: Any) -> None:
    result = peer(topology, stack, "echo", STACK_ADDR6, ECHO, 20 * MB, timeout=180)
    assert "error" not in result, result
    assert result["recv_bytes"] == 20 * MB, result
    assert result["recv_sha256"] == result["sent_sha256"], result
    rates.record("echo6_20mb", result)


def test_bulk6_both_ways_with_tso(topology: Topology, stack: StackDaemon, rates: Any) -> None:
    """20 MB to discard and 20 MB from chargen over IPv6. With offloads on, both
    directions move as TSO super-segments (TUN_F_TSO6 from the kernel, GSO_TCPV6 to
    it): the stack's pcap holds IPv6 TCP packets far above the 1500-octet MTU."""
    sent = peer(topology, stack, "send", STACK_ADDR6, DISCARD, 20 * MB, timeout=180)
    assert "error" not in sent and sent["bytes"] == 20 * MB, sent
    rates.record("discard6_20mb", sent)
    got = peer(topology, stack, "recv", STACK_ADDR6, CHARGEN, 20 * MB, timeout=180)
    assert got["bytes"] == 20 * MB and got["matches_pattern"], got
    rates.record("chargen6_20mb", got)
    if "--no-offload" in stack.argv:
        return
    packets = stack_packets(stack)
    inbound = max((p.total_length for p in packets if p.version == 6 and p.tcp is not None
                   and p.dst == STACK_ADDR6), default=0)
    outbound = max((p.total_length for p in packets if p.version == 6 and p.tcp is not None
                    and p.src == STACK_ADDR6), default=0)
    assert inbound > 1500 and outbound > 1500, (inbound, outbound)


def test_tcp6_handshake_mss_and_flow_label(topology: Topology, stack: StackDaemon) -> None:
    """The SYN-ACK offers MSS 1440 (1500 - 40 - 20, RFC 8200 8.3) and every segment of
    the connection carries one non-zero flow label (RFC 6437)."""
    result = peer(topology, stack, "echo", STACK_ADDR6, ECHO, 10000, timeout=30)
    assert result["recv_bytes"] == 10000
    packets = stack_packets(stack)
    synacks = [p for p in packets if p.version == 6 and p.tcp is not None and p.tcp.syn
               and p.tcp.has_ack and p.src == STACK_ADDR6]
    assert synacks and synacks[0].tcp is not None and synacks[0].tcp.mss == 1440
    labels = {int.from_bytes(p.raw[1:4], "big") & 0xFFFFF for p in packets
              if p.version == 6 and p.tcp is not None and p.src == STACK_ADDR6}
    assert len(labels) == 1 and 0 not in labels


def test_closed_ports6(topology: Topology, stack: StackDaemon) -> None:
    """TCP to a closed port: reset at once; UDP: ICMPv6 port unreachable."""
    result = peer(topology, stack, "connect", STACK_ADDR6, 4242, 5)
    assert result.get("result") == "refused", result
    run_in(topology.peer_ns, ["sh", "-c", f"echo hi | nc -6 -u -w 1 {STACK_ADDR6} 4243"],
           timeout=10, check=False)
    unreachable = [p for p in stack_packets(stack) if p.version == 6 and p.icmp is not None
                   and p.icmp.type == 1 and p.icmp.code == 4]
    assert unreachable


@pytest.mark.skipif(shutil.which("nc") is None, reason="netcat-openbsd not installed")
def test_udp6_echo_with_netcat(topology: Topology, stack: StackDaemon) -> None:
    cp = run_in(topology.peer_ns, ["sh", "-c", f"printf 'hello six' | nc -6 -u -w 2 -W 1 {STACK_ADDR6} {ECHO}"],
                timeout=15, check=False)
    assert cp.stdout == "hello six", (cp.stdout, cp.stderr)


def test_ss_shows_ipv6_connection(topology: Topology, stack: StackDaemon) -> None:
    hold = popen_in(topology.peer_ns, [sys.executable, str(Path(__file__).parent / "peer_client.py"),
                                       "hold", STACK_ADDR6, str(ECHO), "20"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout is not None
        port = int(hold.stdout.readline())
        def row() -> dict[str, Any] | None:
            cp = run_in(topology.stack_ns, [sys.executable, "-m", "stack.cli", "ss", "--socket",
                                            str(stack.socket_path), "--json"], timeout=10)
            rows = json.loads(cp.stdout)
            return next((r for r in rows if r.get("remote") == f"[{topology.peer_addr6}]:{port}"), None)
        found = wait_until(row, 10, what="the IPv6 connection in tcplab ss")
        assert found["local"] == f"[{STACK_ADDR6}]:{ECHO}" and found["state"] == "ESTABLISHED"
    finally:
        if hold.stdin is not None:
            hold.stdin.close()
        hold.wait(10)


# --- path MTU (RFC 8201) ----------------------------------------------------------------
@pytest.fixture
def routed() -> Iterator[RoutedTopology]:
    topo = RoutedTopology.create_routed(1280)
    try:
        yield topo
    finally:
        topo.destroy()


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "tso"])
def test_packet_too_big_lowers_the_mss(routed: RoutedTopology, tmp_path: Path, offload: bool) -> None:
    """Behind a router whose link to the peer is 1280 octets, the stack's first
    full-size segments (1500 octets) draw a Packet Too Big; the stack lowers its path
    MTU to 1280, so its MSS to 1220 (less the 12 octets of timestamps), resends, and the
    transfer completes byte-exact with every later segment within 1280 octets. With
    offloads the kernel cuts the stack's 64 KiB segments at the MSS it is given, so the
    lowered MSS must reach the virtio header's gso_size as well."""
    stack = StackDaemon.start(routed, ["--offload" if offload else "--no-offload"], tmp_path)
    try:
        n = 2 * MB
        assert curl6_sha256(routed.peer_ns, n) == http_body_sha256(n)
    finally:
        stack.stop()
    packets = read_pcap(stack.pcap_path)
    ptb = [p for p in packets if p.version == 6 and p.icmp is not None and p.icmp.type == 2]
    assert ptb, "no Packet Too Big reached the stack"
    first_ptb = ptb[0].index
    data_after = [p for p in packets if p.index > first_ptb + 2 and p.src == STACK_ADDR6
                  and p.tcp is not None and p.tcp.payload_len]
    assert data_after
    if offload:  # the pcap holds the stack's big segments: their MSS is what counts
        assert max(p.tcp.payload_len for p in data_after if p.tcp) > 1280
    else:
        assert max(p.total_length for p in data_after) <= 1280
    events = stack.events()
    assert any(e.get("type") == "pmtu" and e.get("mtu") == 1280 for e in events), \
        [e for e in events if e.get("type") not in ("rtt", "cwnd")][:20]
