"""End to end: ECN (RFC 3168) and TCP Fast Open (RFC 7413) against the Linux kernel.

The kernel in the peer namespace is switched per namespace (``net.ipv4.tcp_ecn``,
``net.ipv4.tcp_fastopen``); Congestion Experienced marks are made by nftables in the
stack namespace's forward chain (``ip ecn set ce`` on ECT(0) packets), so the kernel
router between the veth and ``mytun`` acts as an ECN-marking router for both
directions. What happened is read back from the stack's pcap with tshark and from its
event log; transfers are checked with SHA-256.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from netns import (
    REPO_ROOT,
    STACK_ADDR,
    StackDaemon,
    Topology,
    popen_in,
    python_env,
    run_in,
    run_peer_client,
    wait_until,
)

sys.path.insert(0, str(REPO_ROOT))

from stack.ipc.client import query_sockets  # noqa: E402

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nft not installed"),
]

ECHO = 7
NFT_TABLE = "tl_ecn"


def tshark(pcap: Path, fields: list[str], display: str = "") -> list[list[str]]:
    argv = ["tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=|",
            "-o", "tcp.relative_sequence_numbers:FALSE"]
    if display:
        argv += ["-Y", display]
    for f in fields:
        argv += ["-e", f]
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    return [line.split("|") for line in cp.stdout.splitlines() if line.strip()]


def flag(value: str) -> bool:
    return value in ("1", "True")


def sysctl(ns: str, setting: str) -> None:
    run_in(ns, ["sysctl", "-q", "-w", setting], timeout=10)


def mark_ce(topology: Topology, every: int) -> None:
    """Every `every`-th ECT(0) packet forwarded through the stack namespace (either
    direction) leaves Congestion Experienced: an ECN-marking router (RFC 3168 5)."""
    rules = textwrap.dedent(f"""\
        table ip {NFT_TABLE} {{
            chain ce_marker {{
                type filter hook forward priority 0; policy accept;
                ip ecn ect0 numgen inc mod {every} == 0 counter ip ecn set ce
            }}
        }}
        """)
    run_in(topology.stack_ns, ["nft", "-f", "-"], input=rules, timeout=10)


def ce_marked(topology: Topology) -> int:
    out = run_in(topology.stack_ns, ["nft", "-j", "list", "table", "ip", NFT_TABLE],
                 timeout=10).stdout
    for item in json.loads(out)["nftables"]:
        rule = item.get("rule")
        if rule:
            for expr in rule["expr"]:
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
    return 0


def unmark(topology: Topology) -> None:
    run_in(topology.stack_ns, ["nft", "delete", "table", "ip", NFT_TABLE], timeout=10,
           check=False)


def ecn_events(stack: StackDaemon, name: str) -> list[dict[str, Any]]:
    return stack.events_matching(lambda e: e.get("type") == "ecn" and e.get("event") == name)


# --- ECN ------------------------------------------------------------------------------
def test_ecn_with_kernel_client_marks_echo_and_one_reduction_per_window(
        topology: Topology, stack: StackDaemon) -> None:
    """RFC 3168 6.1.1-6.1.5 with the kernel (tcp_ecn=1) as client of the echo service
    and the stack in its default mode (2: accept when asked): the handshake agrees on
    ECN; data both ways is ECT(0), pure ACKs are not; the router's CE marks are echoed
    (ECE) until CWR, by the stack and by the kernel; the stack halves cwnd at most once
    per window of data, and says CWR on the next new data after each reduction."""
    sysctl(topology.peer_ns, "net.ipv4.tcp_ecn=1")
    mark_ce(topology, every=5)
    try:
        nbytes = 4_000_000
        result = run_peer_client(topology, "echo", STACK_ADDR, ECHO, nbytes, timeout=180)
        marked = ce_marked(topology)
    finally:
        unmark(topology)
        sysctl(topology.peer_ns, "net.ipv4.tcp_ecn=2")
    assert "error" not in result, result
    assert result["recv_bytes"] == nbytes, result
    assert result["recv_sha256"] == result["sent_sha256"], result
    assert marked > 5, marked
    stack.stop()

    rows = tshark(stack.pcap_path, ["ip.src", "ip.dsfield.ecn", "tcp.flags.syn", "tcp.flags.ack",
                                    "tcp.flags.ece", "tcp.flags.cwr", "tcp.len",
                                    "tcp.analysis.retransmission"], "tcp.port == 7")
    peer = topology.peer_addr
    syn = [r for r in rows if r[0] == peer and flag(r[2]) and not flag(r[3])]
    synack = [r for r in rows if r[0] == STACK_ADDR and flag(r[2]) and flag(r[3])]
    assert syn and flag(syn[0][4]) and flag(syn[0][5]), syn  # ECN-setup SYN: ECE + CWR
    assert synack and flag(synack[0][4]) and not flag(synack[0][5]), synack  # ECE only
    assert all(r[1] == "0" for r in syn + synack), "SYNs are never ECN-capable (6.1.1)"

    ours = [r for r in rows if r[0] == STACK_ADDR and not flag(r[2])]
    data = [r for r in ours if int(r[6]) > 0 and not r[7]]
    pure_acks = [r for r in ours if int(r[6]) == 0]
    assert data and all(r[1] == "2" for r in data), "new data goes out ECT(0)"
    assert pure_acks and all(r[1] == "0" for r in pure_acks), "pure ACKs are not ECT (6.1.4)"
    assert all(r[1] == "0" for r in ours if int(r[6]) > 0 and r[7]), \
        "retransmissions are not ECT (6.1.5)"

    theirs = [r for r in rows if r[0] == peer and not flag(r[2])]
    # The stack's receiver: CE arrives (marked by the router on the kernel's data), ECE
    # goes out, the kernel answers with CWR.
    assert any(r[1] == "3" for r in theirs), "no CE mark reached the stack"
    assert any(flag(r[4]) for r in ours), "the stack never echoed ECE"
    assert any(flag(r[5]) for r in theirs), "the kernel never sent CWR"
    # The stack's sender: the kernel echoes the router's marks on our data (ECE); we
    # reduce and send CWR.
    assert any(flag(r[4]) for r in theirs), "the kernel never echoed ECE"
    cwr_out = sum(1 for r in ours if flag(r[5]))

    reductions = ecn_events(stack, "reduction")
    assert reductions, "no ECN reduction event"
    assert ecn_events(stack, "negotiated") and ecn_events(stack, "ce_received")
    assert ecn_events(stack, "ece_sent") and ecn_events(stack, "cwr_sent")
    # At most once per window (6.1.2): each reduction answers an ACK beyond the data
    # that was in flight at the previous one.
    for before, after in zip(reductions, reductions[1:], strict=False):
        if before["conn"] == after["conn"]:
            assert after["ack"] > before["high_seq"], (before, after)
    # Each reduction is followed by one CWR (the last may find no new data to carry it).
    assert len(reductions) - 1 <= cwr_out <= len(reductions), (cwr_out, len(reductions))
    cwnd_ecn = stack.events_matching(lambda e: e.get("type") == "cwnd" and e.get("reason") == "ecn")
    assert len(cwnd_ecn) == len(reductions)


@pytest.mark.stack_args("--ecn", "0")
def test_ecn_off_answers_an_ecn_setup_syn_without_ece(
        topology: Topology, stack: StackDaemon) -> None:
    """RFC 3168 6.1.1: a host that does not do ECN answers an ECN-setup SYN with a plain
    SYN-ACK, and then nothing is ECT (``--ecn 0``, like net.ipv4.tcp_ecn=0)."""
    sysctl(topology.peer_ns, "net.ipv4.tcp_ecn=1")
    try:
        result = run_peer_client(topology, "echo", STACK_ADDR, ECHO, 200_000, timeout=60)
    finally:
        sysctl(topology.peer_ns, "net.ipv4.tcp_ecn=2")
    assert result["recv_sha256"] == result["sent_sha256"], result
    stack.stop()
    rows = tshark(stack.pcap_path, ["ip.src", "ip.dsfield.ecn", "tcp.flags.syn", "tcp.flags.ece",
                                    "tcp.flags.cwr"], "tcp.port == 7")
    peer = topology.peer_addr
    assert any(r[0] == peer and flag(r[2]) and flag(r[3]) and flag(r[4]) for r in rows)
    assert not any(r[0] == STACK_ADDR and flag(r[3]) for r in rows), "ECE from an ECN-off stack"
    assert all(r[1] == "0" for r in rows), "ECT without ECN agreed"


# --- TCP Fast Open --------------------------------------------------------------------
SERVER = textwrap.dedent("""\
    import hashlib, socket, sys
    s = socket.socket(socket.AF_INET6)  # dual-stack: IPv4 peers arrive v4-mapped
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 5)
    s.bind(("::", int(sys.argv[1])))
    s.listen(8)
    print("listening", flush=True)
    for _ in range(int(sys.argv[2])):
        c, _addr = s.accept()
        h = hashlib.sha256()
        while True:
            b = c.recv(65536)
            if not b:
                break
            h.update(b)
        c.sendall(h.hexdigest().encode())
        c.close()
    """)

CLIENT = textwrap.dedent("""\
    import hashlib, json, random, signal, socket, sys
    signal.alarm(30)  # bounded: blocking sockets (a non-blocking one has no SYN data
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])  # without a cookie)
    out = []
    for i in range(2):
        data = random.Random(i).randbytes(n)
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sent = s.sendto(data, socket.MSG_FASTOPEN, (host, port))
        s.sendall(data[sent:])
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            b = s.recv(100)
            if not b:
                break
            reply += b
        s.close()
        out.append({"sent_in_sendto": sent, "sha256": hashlib.sha256(data).hexdigest(),
                    "reply": reply.decode()})
    print(json.dumps(out))
    """)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _shimmed(stack: StackDaemon, argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "stack.cli", "run", "--socket", str(stack.socket_path),
            "--", *argv]


def _wait_stack_listener(stack: StackDaemon, port: int) -> None:
    def listening() -> bool | None:
        try:
            rows = query_sockets(str(stack.socket_path), timeout=2)
        except OSError:
            return None
        return any(r.get("state") == "LISTEN" and str(r.get("local", "")).endswith(f":{port}")
                   for r in rows) or None

    wait_until(listening, 15, what=f"a shimmed listener on port {port}")


def _syn_rows(stack: StackDaemon, port: int, ip: str = "ip") -> list[dict[str, str]]:
    fields = [f"{ip}.src", "tcp.flags.ack", "tcp.seq_raw", "tcp.ack_raw", "tcp.len",
              "tcp.options.tfo.request", "tcp.options.tfo.cookie", "tcp.srcport"]
    rows = tshark(stack.pcap_path, fields, f"tcp.flags.syn == 1 && tcp.port == {port}")
    return [dict(zip(["src", "ack_flag", "seq", "ack", "len", "request", "cookie", "sport"], r,
                     strict=False)) for r in rows]


def _check_fastopen_pair(rows: list[dict[str, str]], client: str, server: str) -> None:
    """Two connections: the first SYN asks for a cookie and carries no data; the SYN-ACK
    brings a cookie; the second SYN carries that cookie and data, and its SYN-ACK
    acknowledges the data (RFC 7413 4.2.1, 4.2.2)."""
    syns = [r for r in rows if r["src"] == client and not flag(r["ack_flag"])]
    synacks = [r for r in rows if r["src"] == server and flag(r["ack_flag"])]
    assert len(syns) >= 2 and len(synacks) >= 2, rows
    first, second = syns[0], syns[-1]
    assert first["request"] and int(first["len"]) == 0, first
    answer = next(r for r in synacks if int(r["ack"]) == (int(first["seq"]) + 1) % 2**32)
    assert answer["cookie"], ("no cookie in the first SYN-ACK", answer)
    assert second["cookie"] == answer["cookie"], (second, answer)
    n = int(second["len"])
    assert n > 0, ("the second SYN carries no data", second)
    acked = [r for r in synacks if int(r["ack"]) == (int(second["seq"]) + 1 + n) % 2**32]
    assert acked, ("the second SYN-ACK does not acknowledge the SYN's data", second, synacks)


@pytest.mark.stack_args("--fastopen", "3")
def test_fastopen_kernel_client_to_stack_listener(
        topology: Topology, stack: StackDaemon, tmp_path: Path) -> None:
    """RFC 7413 server side: a kernel client (tcp_fastopen=1, sendto MSG_FASTOPEN) gets a
    cookie from a shimmed listener with TCP_FASTOPEN on the stack (``--fastopen 3``);
    its second connection's SYN carries data and that cookie, and the stack takes the
    data at once (its SYN-ACK acknowledges it). Both transfers are byte-exact."""
    port = 8017
    server = popen_in(topology.stack_ns, _shimmed(stack, [sys.executable, "-c", SERVER,
                                                         str(port), "2"]),
                      cwd=str(REPO_ROOT), env=python_env(), stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
    try:
        _wait_stack_listener(stack, port)
        sysctl(topology.peer_ns, "net.ipv4.tcp_fastopen=1")
        client = _write(tmp_path, "client.py", CLIENT)
        cp = run_in(topology.peer_ns, [sys.executable, str(client), STACK_ADDR, str(port),
                                       "1000"], timeout=60)
        server.wait(30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)
    results = json.loads(cp.stdout.splitlines()[-1])
    for r in results:
        assert r["reply"] == r["sha256"], results
    stack.stop()
    _check_fastopen_pair(_syn_rows(stack, port), topology.peer_addr, STACK_ADDR)
    accepted = stack.events_matching(lambda e: e.get("type") == "fastopen"
                                     and e.get("event") == "syn_data_accepted")
    assert len(accepted) == 1, accepted


@pytest.mark.stack_args("--fastopen", "1", "--ecn", "1")
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_fastopen_and_ecn_stack_client_to_kernel_server(
        topology: Topology, stack: StackDaemon, tmp_path: Path, family: str) -> None:
    """RFC 7413 client side and RFC 3168 6.1.1 requested by us: a shimmed client on
    the stack (sendto MSG_FASTOPEN, ``--fastopen 1 --ecn 1``) against a kernel server
    with TCP_FASTOPEN (tcp_fastopen=3): the first SYN asks for a cookie, the second
    carries it and the data, the kernel acknowledges the data in its SYN-ACK; every
    SYN asks for ECN and the kernel (tcp_ecn=2) agrees. Over IPv6 too: the shim once
    took sendto(MSG_FASTOPEN) only on AF_INET sockets."""
    v6 = family == "ipv6"
    peer, ours, ip = ((topology.peer_addr6, topology.stack_addr6, "ipv6") if v6
                      else (topology.peer_addr, STACK_ADDR, "ip"))
    port = 8018
    sysctl(topology.peer_ns, "net.ipv4.tcp_fastopen=3")
    server_py = _write(tmp_path, "server.py", SERVER)
    server = popen_in(topology.peer_ns, [sys.executable, str(server_py), str(port), "2"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            out = run_in(topology.peer_ns, ["ss", "-ltnH", f"sport = :{port}"], timeout=10).stdout
            if out.strip():
                break
            time.sleep(0.05)
        client = _write(tmp_path, "client.py", CLIENT)
        cp = run_in(topology.stack_ns, _shimmed(stack, [sys.executable, str(client), peer,
                                                        str(port), "1000"]),
                    timeout=60, cwd=str(REPO_ROOT), env=python_env())
        server.wait(30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)
        sysctl(topology.peer_ns, "net.ipv4.tcp_fastopen=1")
    results = json.loads(cp.stdout.splitlines()[-1])
    for r in results:
        assert r["reply"] == r["sha256"], results
    assert results[1]["sent_in_sendto"] == 1000, results
    stack.stop()
    _check_fastopen_pair(_syn_rows(stack, port, ip), ours, peer)
    rows = tshark(stack.pcap_path, [f"{ip}.src", "tcp.flags.ack", "tcp.flags.ece", "tcp.flags.cwr"],
                  f"tcp.flags.syn == 1 && tcp.port == {port}")
    syns = [r for r in rows if r[0] == ours and not flag(r[1])]
    synacks = [r for r in rows if r[0] == peer and flag(r[1])]
    assert syns and all(flag(r[2]) and flag(r[3]) for r in syns), syns
    assert synacks and all(flag(r[2]) and not flag(r[3]) for r in synacks), synacks
