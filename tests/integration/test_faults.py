"""The fault matrix: data both ways through echo under loss, delay, reordering,
duplication and corruption, then no connection left behind.

The faults come from the daemon's own impairment (``tcplab stack --impair ...``), which
applies them to every packet crossing the TUN in *both* directions, with a fixed seed so
a run can be repeated, and which (unlike this kernel, built without ``sch_netem``) can
corrupt packets. ``--impair`` turns the TUN offloads off, so every segment is a real
1500-byte packet and every checksum is computed and verified in full. (The e2e tests
cover the kernel-side NFQUEUE emulation with offloads on.)

Each case moves ``nbytes`` each way through echo (7) from a kernel socket in the peer
namespace, checks SHA-256 on both directions, and must finish within ``bound`` seconds
(generous: about three times what this 2-core machine needs). Then ``tcplab ss --json``
must show nothing but the listeners once TIME-WAIT (``--time-wait 1``) has passed.

Corruption: every corrupted packet must be caught by a checksum. Inbound (kernel ->
stack) the stack counts them (``drop`` events with a wire reason; each must be one of
the impairment's corrupted packets); outbound (stack -> kernel) the kernels count them
(``Ip InHdrErrors`` in the stack namespace, ``Tcp InErrs`` in the peer namespace; all but
the few drop paths that have no counter). Nothing corrupt reaches the application: both SHA-256 sums match.

Figures of the last run are in docs/reliability.md; this module prints them and writes
``<pytest basetemp>/tcplab-faults.json``.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from netns import (
    PEER_ADDR,
    REPO_ROOT,
    STACK_ADDR,
    CommandError,
    Figures,
    StackDaemon,
    Topology,
    figures_fixture,
    popen_in,
    python_env,
    run_in,
    run_peer_client,
)
from shim_fixtures import shim_built

pytestmark = pytest.mark.root
FIXTURES = (shim_built,)  # used by name as a test argument

ECHO = 7
MB = 1_000_000
SETTLE_TIMEOUT = 20.0  # after the transfer: LAST-ACK retransmissions + TIME-WAIT (1 s)

# Reasons stack/wire gives for a malformed packet (see stack/wire/errors.py).
WIRE_REASONS = {
    "truncated_ip_header", "bad_ip_version", "bad_ip_ihl", "bad_ip_checksum",
    "bad_ip_total_length", "truncated_ip_packet",
    "truncated_tcp_header", "bad_tcp_data_offset", "bad_tcp_checksum", "bad_tcp_option",
    "truncated_udp_header", "bad_udp_length", "truncated_udp_datagram", "bad_udp_checksum",
    "truncated_icmp", "bad_icmp_checksum",
}  # fmt: skip


@dataclass(frozen=True)
class Fault:
    name: str
    impair: str  # tcplab stack --impair SPEC
    nbytes: int  # each way
    bound: float  # seconds for the whole echo
    xfail: str = ""  # a known stack bug makes this case fail: why
    daemon_args: tuple[str, ...] = ()  # more `tcplab stack` options


# Linux <-> Linux over the same emulated 20% loss (NFQUEUE, GSO off) moves 1 MB each
# way in 0.25-2.2 s. tcplab needed 40-120 s for 200 KB until the RTO backoff was
# cleared by timestamp samples (test_rto_backoff_cleared_by_timestamp_sample), and
# 84 s to over 120 s for 1 MB until Tail Loss Probe, Early Retransmit and the RTT
# sample filter (test_no_rtt_sample_from_an_echo_older_than_the_retransmission).


FAULTS = [
    Fault("loss-1pct", "loss=1%,seed=11", 5 * MB, 60),
    Fault("loss-5pct", "loss=5%,seed=12", 5 * MB, 90),
    # 5 MB like the others since RACK-TLP (RFC 8985) repairs lost retransmissions
    # without waiting for the RTO and no ACK of new data leaves RTO backed off.
    Fault("loss-20pct", "loss=20%,seed=13", 5 * MB, 240),
    # The same loss with BBR (stack/tcp/congestion/bbr.py), whose window follows its
    # path model instead of halving on each random loss: the case issue 12 measures
    # against the kernel, here end to end with the echo's SHA-256.
    Fault("loss-20pct-bbr", "loss=20%,seed=13", 5 * MB, 120, daemon_args=("--cc", "bbr")),
    Fault("delay-50ms-jitter-10ms", "delay=50ms,jitter=10ms,seed=14", 5 * MB, 60),
    # netem's reorder: 5% of packets skip the 10 ms delay the others wait.
    Fault("reorder-5pct", "delay=10ms,reorder=5%,seed=15", 5 * MB, 60),
    Fault("duplicate-5pct", "duplicate=5%,seed=16", 5 * MB, 60),
    Fault("corrupt-1pct", "corrupt=1%,seed=17", 5 * MB, 60),
]


figures = figures_fixture("tcplab-faults.json", "tcplab fault matrix")


# --- helpers --------------------------------------------------------------------------
def snmp(ns: str) -> dict[str, int]:
    """``/proc/net/snmp`` of namespace ``ns`` as {"Ip.InHdrErrors": n, ...}."""
    text = str(run_in(ns, ["cat", "/proc/net/snmp"], timeout=10).stdout)
    lines = text.splitlines()
    out: dict[str, int] = {}
    for names, values in zip(lines[0::2], lines[1::2], strict=False):
        proto, _, keys = names.partition(":")
        vals = values.partition(":")[2].split()
        for k, v in zip(keys.split(), vals, strict=False):
            out[f"{proto}.{k}"] = int(v)
    return out


def lingering(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TCP rows other than listeners: connections still open, closing or in TIME-WAIT."""
    return [r for r in rows if r.get("proto") == "tcp" and r.get("state") != "LISTEN"]


def wait_settled(stack: StackDaemon, timeout: float = SETTLE_TIMEOUT) -> float:
    """Poll ``tcplab ss --json`` until no TCP connection is left; return how long it took."""
    start = time.monotonic()
    rows = stack.ss_json()
    while lingering(rows):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"connections stuck {timeout}s after the transfer: "
                                 f"{json.dumps(lingering(rows), indent=1)}")
        time.sleep(0.5)
        rows = stack.ss_json()
    return round(time.monotonic() - start, 2)


def impairment_counts(stderr: str) -> tuple[dict[str, int], dict[str, int]]:
    """The daemon logs ``impairment inbound {...} outbound {...}`` when it stops."""
    m = re.search(r"impairment inbound (\{.*?\}) outbound (\{.*?\})", stderr)
    assert m, f"no impairment counts in the daemon's log:\n{stderr[-2000:]}"
    return ast.literal_eval(m.group(1)), ast.literal_eval(m.group(2))


def drop_reasons(stack: StackDaemon) -> Counter[str]:
    return Counter(str(e.get("reason")) for e in stack.events() if e.get("type") == "drop")


# --- the matrix -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "stack"),
    [pytest.param(f, ["--time-wait", "1", "--impair", f.impair, *f.daemon_args], id=f.name,
                  marks=[pytest.mark.xfail(strict=True, reason=f.xfail)] if f.xfail else [])
     for f in FAULTS],
    indirect=["stack"],
)
def test_fault(topology: Topology, fault: Fault, stack: StackDaemon, rates: Any,
               figures: Figures) -> None:
    peer_before = snmp(topology.peer_ns)
    router_before = snmp(topology.stack_ns)

    # The client is killed at the bound (CommandError): a case never takes longer.
    try:
        result = run_peer_client(topology, "echo", STACK_ADDR, ECHO, fault.nbytes,
                                 timeout=fault.bound + 5)
    except CommandError as exc:
        raise AssertionError(f"{fault.name}: {exc}\n--- the daemon's log:\n"
                             f"{stack.stderr[-3000:]}") from None
    assert "error" not in result, result
    assert result["recv_bytes"] == fault.nbytes, result
    assert result["recv_sha256"] == result["sent_sha256"], "echo came back different"
    assert result["seconds"] <= fault.bound, f"{fault.name}: {result['seconds']} s > {fault.bound}"
    rates.record(f"fault_{fault.name}", result)

    settle = wait_settled(stack)
    stderr = stack.stop()
    inbound, outbound = impairment_counts(stderr)
    drops = drop_reasons(stack)
    wire_drops = sum(n for r, n in drops.items() if r in WIRE_REASONS)
    peer_after = snmp(topology.peer_ns)
    router_after = snmp(topology.stack_ns)

    def delta(before: dict[str, int], after: dict[str, int], key: str) -> int:
        return after.get(key, 0) - before.get(key, 0)

    kernel_caught = (delta(router_before, router_after, "Ip.InHdrErrors")
                     + delta(peer_before, peer_after, "Ip.InHdrErrors")
                     + delta(peer_before, peer_after, "Tcp.InErrs"))
    row = {
        "fault": fault.name, "impair": fault.impair, "bytes_each_way": fault.nbytes,
        "seconds": result["seconds"], "bound": fault.bound, "mbit_s": result["mbit_s"],
        "settled_after_s": settle, "inbound": inbound, "outbound": outbound,
        "stack_wire_drops": dict((r, n) for r, n in drops.items() if r in WIRE_REASONS),
        "kernel_checksum_drops": kernel_caught,
    }
    figures.add(fault.name, row)

    if inbound["corrupted"] or outbound["corrupted"]:
        # Every corrupted packet the stack received was dropped by a checksum (or a
        # header check): at least as many wire drops as corruptions, and they are
        # checksum drops. (A TUN may also see stray IPv6 from the kernel:
        # bad_ip_version, not counted here.)
        caught = wire_drops - drops.get("bad_ip_version", 0)
        assert caught >= inbound["corrupted"] - drops.get("bad_ip_version", 0), row
        assert caught <= inbound["corrupted"], ("drops the impairment did not cause", row)
        assert drops["bad_tcp_checksum"] + drops["bad_ip_checksum"] > 0, row
        # Outbound corruption is the kernels' to catch, and they count nearly all of it
        # (IP header errors in the stack namespace, TCP errors in the peer's). Not
        # quite all: a TUN silently drops a packet whose version nibble is no longer 4,
        # and Linux discards a TCP header whose data offset runs past the packet
        # without a counter. The SHA-256 check above is what proves nothing got through.
        assert kernel_caught >= outbound["corrupted"] - 2, row
    else:
        assert wire_drops - drops.get("bad_ip_version", 0) == 0, row
    if "loss" in fault.impair:
        assert inbound["lost"] + outbound["lost"] > 0, row


# --- one transfer through the shim ---------------------------------------------------
SHIM_FAULT = Fault("shim-loss-5pct", "loss=5%,seed=21", 5 * MB, 90)
PEER_ECHO_PORT = 7777
PEER_ECHO = textwrap.dedent("""
    import socket, sys, threading
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
    print("listening", flush=True)
    def serve(c):
        while True:
            data = c.recv(65536)
            if not data:
                break
            c.sendall(data)
        c.shutdown(socket.SHUT_WR); c.close()
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
""")
SHIM_CLIENT = textwrap.dedent("""
    import hashlib, json, os, socket, sys, threading, time
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    s = socket.create_connection((host, port), timeout=30)
    data = os.urandom(n)
    got = bytearray()
    def reader():
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return
            got.extend(chunk)
    t0 = time.monotonic()
    th = threading.Thread(target=reader); th.start()
    s.sendall(data); s.shutdown(socket.SHUT_WR); th.join(120)
    print(json.dumps({"local": s.getsockname()[0], "bytes": n, "recv_bytes": len(got),
                      "same": bytes(got) == data, "seconds": round(time.monotonic() - t0, 3)}))
""")


@pytest.mark.usefixtures("shim_built")
def test_fault_through_shim(topology: Topology, tmp_path: Path,
                            figures: Figures) -> None:
    """A program under ``tcplab run`` (LD_PRELOAD shim) moves 5 MB each way to a kernel
    echo server in the peer namespace, through the impaired stack."""
    fault = SHIM_FAULT
    server = popen_in(topology.peer_ns, [sys.executable, "-c", PEER_ECHO, str(PEER_ECHO_PORT)],
                      stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    daemon = StackDaemon.start(topology, ["--service", "none", "--time-wait", "1",
                                          "--impair", fault.impair], tmp_path)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"listening"
        cp = run_in(topology.stack_ns,
                    [sys.executable, "-m", "stack.cli", "run", "--socket",
                     str(daemon.socket_path), "--", "python3", "-c", SHIM_CLIENT, PEER_ADDR,
                     str(PEER_ECHO_PORT), str(fault.nbytes)],
                    timeout=fault.bound + 5, cwd=str(REPO_ROOT), env=python_env(), check=False)
        assert cp.returncode == 0, (cp.stdout, cp.stderr[-2000:], daemon.stderr[-2000:])
        result = json.loads(cp.stdout.strip().splitlines()[-1])
        assert result["local"] == STACK_ADDR, result  # it really went through the stack
        assert result["recv_bytes"] == fault.nbytes and result["same"], result
        assert result["seconds"] <= fault.bound, result
        settle = wait_settled(daemon)
        inbound, outbound = impairment_counts(daemon.stop())
        figures.add(f"{fault.name} (shim)", {"fault": fault.name, "impair": fault.impair, "through": "shim",
                     "bytes_each_way": fault.nbytes, "seconds": result["seconds"],
                     "bound": fault.bound, "settled_after_s": settle, "inbound": inbound,
                     "outbound": outbound})
        assert inbound["lost"] + outbound["lost"] > 0
    finally:
        daemon.stop(check=False)
        server.kill()
        server.wait(5)
