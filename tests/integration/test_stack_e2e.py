"""End to end: the tcplab daemon against the Linux kernel's TCP over a netns topology.

The daemon runs in the stack namespace (``tcplab stack`` with its defaults plus
``--socket/--pcap/--events``) and owns 10.0.0.2 behind ``mytun``; every client runs in
the peer namespace (10.1.0.2), so every packet crosses a kernel router and a veth.
Byte-exactness is checked with SHA-256 on both ends; rates are printed and collected
by the ``rates`` fixture (see conftest.py).
"""

from __future__ import annotations

import hashlib
import random
import select
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from netns import (
    PEER_CLIENT,
    STACK_ADDR,
    StackDaemon,
    Topology,
    popen_in,
    run_in,
    run_peer_client,
    wait_until,
)

pytestmark = pytest.mark.root

ECHO, DISCARD, CHARGEN, HTTP = 7, 9, 19, 80
NETEM = "loss 5% delay 20ms 5ms reorder 10% duplicate 2%"
MB = 1_000_000


def http_body_sha256(n: int) -> str:
    return hashlib.sha256(random.Random(n).randbytes(n)).hexdigest()


def curl_sha256(topology: Topology, n: int, timeout: float = 120) -> str:
    """``curl -s http://10.0.0.2/bytes/N | sha256sum`` in the peer namespace."""
    cmd = (f"curl -s --max-time {int(timeout) - 5} http://{STACK_ADDR}/bytes/{n} "
           f"| sha256sum")
    out = run_in(topology.peer_ns, ["sh", "-c", cmd], timeout=timeout).stdout
    return str(out).split()[0]


def await_event(stack: StackDaemon, predicate: Callable[[dict[str, Any]], bool],
                timeout: float = 10.0) -> dict[str, Any]:
    """Wait for an event in the daemon's log. The log is buffered, so if it has not
    shown up by the deadline the daemon is stopped (which flushes) and read once more."""
    def find() -> dict[str, Any] | None:
        return next((e for e in stack.events() if predicate(e)), None)

    try:
        return wait_until(find, timeout, interval=0.1, what="event")
    except TimeoutError:
        stack.stop()
        event = find()
        assert event is not None, "event not in the log"
        return event


def check_echo(result: dict[str, Any], nbytes: int) -> None:
    assert "error" not in result, result
    assert result["recv_bytes"] == nbytes, result
    assert result["recv_sha256"] == result["sent_sha256"], result


# --- no impairment --------------------------------------------------------------------
def test_ping(topology: Topology, stack: StackDaemon) -> None:
    cp = run_in(topology.peer_ns, ["ping", "-c", "3", "-W", "2", STACK_ADDR],
                timeout=30, check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "3 received" in cp.stdout, cp.stdout


@pytest.mark.parametrize("stack", [[], ["--no-offload"]], ids=["default", "no-offload"],
                         indirect=True)
def test_echo_10mb(topology: Topology, stack: StackDaemon, rates: Any,
                   request: pytest.FixtureRequest) -> None:
    nbytes = 10 * MB
    result = run_peer_client(topology, "echo", STACK_ADDR, ECHO, nbytes, timeout=240)
    check_echo(result, nbytes)
    rates.record(request.node.name, result)


def test_discard_50mb(topology: Topology, stack: StackDaemon, rates: Any) -> None:
    nbytes = 50 * MB
    result = run_peer_client(topology, "send", STACK_ADDR, DISCARD, nbytes, timeout=300)
    assert result["unexpected_bytes"] == 0, result
    rates.record("discard_50mb", result)
    event = await_event(stack, lambda e: e.get("type") == "service"
                        and e.get("service") == "discard" and e.get("bytes") == nbytes)
    assert event["sha256"] == result["sha256"], event


def test_chargen_50mb(topology: Topology, stack: StackDaemon, rates: Any) -> None:
    nbytes = 50 * MB
    result = run_peer_client(topology, "recv", STACK_ADDR, CHARGEN, nbytes, timeout=300)
    assert result["bytes"] == nbytes, result
    assert result["matches_pattern"], result
    rates.record("chargen_50mb", result)


def test_http_bytes(topology: Topology, stack: StackDaemon) -> None:
    n = 1_000_000
    assert curl_sha256(topology, n) == http_body_sha256(n)


def test_100_concurrent_echo(topology: Topology, stack: StackDaemon) -> None:
    result = run_peer_client(topology, "concurrent", STACK_ADDR, ECHO, 100, timeout=120)
    assert result["ok"] == 100, result


def test_closed_port_refused_at_once(topology: Topology, stack: StackDaemon) -> None:
    result = run_peer_client(topology, "connect", STACK_ADDR, 5555, 5, timeout=30)
    assert result["result"] == "refused", result
    assert result["seconds"] < 1.0, result


@pytest.mark.skipif(shutil.which("nc") is None, reason="netcat-openbsd not installed")
def test_udp_echo_with_netcat(topology: Topology, stack: StackDaemon) -> None:
    message = "hello tcplab over udp\n"
    # OpenBSD nc: -W 1 exits after the first datagram back; -w 2 bounds the wait if none.
    cp = run_in(topology.peer_ns, ["nc", "-u", "-w", "2", "-W", "1", STACK_ADDR, str(ECHO)],
                input=message, timeout=20, check=False)
    assert cp.stdout == message, (cp.returncode, cp.stdout, cp.stderr)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_pcap_shows_handshake_options(topology: Topology, stack: StackDaemon) -> None:
    check_echo(run_peer_client(topology, "echo", STACK_ADDR, ECHO, 100_000, timeout=60),
               100_000)
    stack.stop()  # flushes and closes the pcap
    cp = subprocess.run(
        ["tshark", "-n", "-r", str(stack.pcap_path), "-Y", "tcp.flags.syn==1",
         "-T", "fields", "-E", "separator=|",
         "-e", "ip.src", "-e", "tcp.flags.ack",
         "-e", "tcp.options.mss_val", "-e", "tcp.options.wscale.shift",
         "-e", "tcp.options.sack_perm", "-e", "tcp.options.timestamp.tsval"],
        capture_output=True, text=True, timeout=60, check=True)
    rows = [line.split("|") for line in cp.stdout.splitlines() if line.strip()]
    syns = [r for r in rows if r[0] == topology.peer_addr and r[1] in ("0", "False")]
    synacks = [r for r in rows if r[0] == STACK_ADDR and r[1] in ("1", "True")]
    assert syns, cp.stdout
    assert synacks, cp.stdout
    for row in (syns[0], synacks[0]):
        _src, _ack, mss, wscale, sack_perm, tsval = row
        # sack_perm is a presence field: tshark prints the option's bytes when present
        assert mss and wscale and sack_perm and tsval, row
        assert 536 <= int(mss) <= 65495, row
        assert 0 <= int(wscale) <= 14, row


def test_ss_shows_established(topology: Topology, stack: StackDaemon) -> None:
    hold = popen_in(topology.peer_ns,
                    [sys.executable, str(PEER_CLIENT), "hold", STACK_ADDR, str(ECHO), "60"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True)
    try:
        assert hold.stdout is not None and hold.stdin is not None and hold.stderr is not None
        ready, _, _ = select.select([hold.stdout], [], [], 20)
        assert ready, "hold printed no port"
        line = hold.stdout.readline().strip()
        assert line.isdigit(), (line, hold.stderr.read() if hold.poll() is not None else "")
        port = int(line)

        def established() -> str | None:
            for row in stack.ss().splitlines():
                fields = row.split()
                if ("ESTABLISHED" in fields and f"{STACK_ADDR}:{ECHO}" in fields
                        and f"{topology.peer_addr}:{port}" in fields):
                    return row
            return None

        row: str = wait_until(established, 10, interval=0.2, what="ESTABLISHED in tcplab ss")
        assert "cwnd=" in row and "srtt=" in row, row
        hold.stdin.close()
        hold.wait(15)
        assert hold.returncode == 0
    finally:
        if hold.poll() is None:
            hold.kill()
            hold.wait(5)


# --- under loss, delay, reordering and duplication ------------------------------------
# (the lossy fixture is listed before stack: the impairment is in place before the
# daemon starts and removed after it stopped)
@pytest.fixture
def lossy(topology: Topology) -> Iterator[str]:
    """``NETEM`` on both directions: tc netem on both veth ends, or, on a kernel built
    without sch_netem, the NFQUEUE emulation in netns.py."""
    how = topology.impair(NETEM)
    print(f"\n[impairment] {how}")
    try:
        yield how
    finally:
        topology.clear_impairment()


def test_lossy_echo(topology: Topology, lossy: str, stack: StackDaemon, rates: Any) -> None:
    nbytes = 2 * MB
    result = run_peer_client(topology, "echo", STACK_ADDR, ECHO, nbytes, timeout=240)
    check_echo(result, nbytes)
    rates.record("lossy_echo_2mb", result)


def test_lossy_chargen(topology: Topology, lossy: str, stack: StackDaemon, rates: Any) -> None:
    nbytes = 2 * MB
    result = run_peer_client(topology, "recv", STACK_ADDR, CHARGEN, nbytes, timeout=240)
    assert result["bytes"] == nbytes and result["matches_pattern"], result
    rates.record("lossy_chargen_2mb", result)


def test_lossy_http(topology: Topology, lossy: str, stack: StackDaemon) -> None:
    n = 2 * MB
    assert curl_sha256(topology, n, timeout=240) == http_body_sha256(n)


def test_lossy_retransmit_events(topology: Topology, lossy: str, stack: StackDaemon) -> None:
    """Loss makes the stack retransmit, and the event log says so."""
    def retransmitted() -> bool:
        return any(e.get("type") == "retransmit" for e in stack.events())

    for _ in range(5):  # each round loses data with overwhelming probability
        result = run_peer_client(topology, "recv", STACK_ADDR, CHARGEN, 2 * MB, timeout=240)
        assert result["matches_pattern"], result
        if retransmitted():
            break
    else:
        stack.stop()  # flush the log
    assert retransmitted(), "no retransmit events under 5% loss"
    sample = next(e for e in stack.events() if e.get("type") == "retransmit")
    assert sample.get("conn"), sample
