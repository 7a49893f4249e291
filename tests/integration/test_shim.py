"""Unmodified programs on the stack through the LD_PRELOAD shim (`tcplab run`).

The daemon runs in the stack namespace; programs under `tcplab run` run there too and
talk to kernel programs in the peer namespace (10.1.0.2) through the stack (10.0.0.2).
Every transfer is checked byte for byte (SHA-256); every subprocess has a timeout.
Needs curl, wget, netcat-openbsd, socat, iperf3 (apt-get install them).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from netns import STACK_ADDR, popen_in
from shim_fixtures import (
    EXAMPLES,
    MB,
    Shim,
    data_dir,
    peer_http,
    sh,
    sha256_file,
    shim,
    shim_built,
)

pytestmark = pytest.mark.root

PEER = "10.1.0.2"
FIXTURES = (data_dir, peer_http, sh, shim, shim_built)  # used by name as test arguments


def py(code: str) -> list[str]:
    return ["python3", "-c", textwrap.dedent(code)]


# --- clients under the shim, kernel servers in the peer ------------------------------


def test_curl_downloads_20mb(sh: Shim, peer_http: str, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "curl.bin"
    cp = sh.run(["curl", "-sS", "--max-time", "100", "-o", str(out),
                 "-w", "%{local_ip} %{http_code}", f"{peer_http}/big.bin"], timeout=120)
    assert cp.stdout.split() == [STACK_ADDR, "200"], cp.stdout + cp.stderr
    assert sha256_file(out) == sha256_file(data_dir / "big.bin")


def test_wget_downloads_20mb(sh: Shim, peer_http: str, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "wget.bin"
    sh.run(["wget", "-q", "--tries=1", "--timeout=60", "-O", str(out), f"{peer_http}/big.bin"],
           timeout=120)
    assert sha256_file(out) == sha256_file(data_dir / "big.bin")


def test_python_urllib(sh: Shim, peer_http: str, data_dir: Path) -> None:
    cp = sh.run(py(f"""
        import hashlib, urllib.request
        body = urllib.request.urlopen("{peer_http}/big.bin", timeout=60).read()
        print(len(body), hashlib.sha256(body).hexdigest())
    """), timeout=120)
    assert cp.stdout.split() == [str(20 * MB), sha256_file(data_dir / "big.bin")]


def test_nc_client_both_directions(sh: Shim, data_dir: Path, tmp_path: Path) -> None:
    src = data_dir / "mid.bin"
    # upload: shimmed nc -> kernel nc -l
    got = tmp_path / "nc-up.bin"
    with open(got, "wb") as sink:
        server = sh.peer_popen(["nc", "-l", "-p", "6001"], stdout=sink)
        sh.wait_peer_listener(6001)
        with open(src, "rb") as f:
            sh.run(["nc", "-N", "-w", "30", PEER, "6001"], stdin=f, timeout=60)
        assert server.wait(30) == 0
    assert sha256_file(got) == sha256_file(src)
    # download: kernel nc -l sends, shimmed nc receives
    with open(src, "rb") as f:
        server = sh.peer_popen(["nc", "-N", "-l", "-p", "6002"], stdin=f)
        sh.wait_peer_listener(6002)
        cp = sh.run(["sh", "-c", f"nc -d -w 30 {PEER} 6002 | sha256sum"], timeout=60)
        assert server.wait(30) == 0
    assert cp.stdout.split()[0] == sha256_file(src)


def test_socat_client_both_directions(sh: Shim, data_dir: Path, tmp_path: Path) -> None:
    src = data_dir / "mid.bin"
    got = tmp_path / "socat-up.bin"
    server = sh.peer_popen(["socat", "-u", "TCP-LISTEN:6003,reuseaddr",
                            f"CREATE:{got}"])
    sh.wait_peer_listener(6003)
    sh.run(["socat", "-u", f"OPEN:{src}", f"TCP:{PEER}:6003"], timeout=60)
    assert server.wait(30) == 0
    assert sha256_file(got) == sha256_file(src)
    server = sh.peer_popen(["socat", "-u", f"OPEN:{src}", "TCP-LISTEN:6004,reuseaddr"])
    sh.wait_peer_listener(6004)
    got2 = tmp_path / "socat-down.bin"
    sh.run(["socat", "-u", f"TCP:{PEER}:6004", f"CREATE:{got2}"], timeout=60)
    assert server.wait(30) == 0
    assert sha256_file(got2) == sha256_file(src)


def _iperf_bytes(report: dict[str, object]) -> tuple[int, int]:
    end = report["end"]
    assert isinstance(end, dict)
    return int(end["sum_sent"]["bytes"]), int(end["sum_received"]["bytes"])


@pytest.mark.parametrize("reverse", [False, True], ids=["upload", "download"])
def test_iperf3_client(sh: Shim, reverse: bool) -> None:
    server = sh.peer_popen(["iperf3", "-s", "-1", "-p", "5201"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    sh.wait_peer_listener(5201)
    cp = sh.run(["iperf3", "-c", PEER, "-p", "5201", "-t", "3", "-J",
                 *(["-R"] if reverse else [])], timeout=60)
    report = json.loads(cp.stdout)
    assert "error" not in report, report.get("error")
    sent, received = _iperf_bytes(report)
    # (what is still in flight when the test time ends is not counted as received)
    assert received > 10 * MB and 0.9 * sent <= received <= sent, (sent, received)
    assert server.wait(20) == 0
    print(f"\n[rate] iperf3 -c {'-R ' if reverse else ''}under the shim: "
          f"{report['end']['sum_received']['bits_per_second'] / 1e6:.0f} Mbit/s")


def test_iperf3_client_chooses_its_congestion_control(sh: Shim) -> None:
    """`iperf3 -C bbr`: TCP_CONGESTION through the shim picks the stack's algorithm for
    that connection (the daemon's default is newreno); iperf3 reads the name back, and
    the stack's events show BBR's rate samples for the test's data connections."""
    server = sh.peer_popen(["iperf3", "-s", "-1", "-p", "5207"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    sh.wait_peer_listener(5207)
    cp = sh.run(["iperf3", "-c", PEER, "-p", "5207", "-t", "1", "-J", "-C", "bbr"], timeout=60)
    report = json.loads(cp.stdout)
    assert "error" not in report, report.get("error")
    assert report["end"]["sender_tcp_congestion"] == "bbr", report["end"]
    assert server.wait(20) == 0
    assert sh.daemon is not None
    samples = sh.daemon.events_matching(lambda e: e.get("type") == "cwnd"
                                        and e.get("reason") == "rate"
                                        and str(e.get("conn", "")).endswith(":5207"))
    assert samples, "no BBR rate samples on the iperf3 connections"
    assert all(s.get("btlbw", 0) >= 0 for s in samples)


LAST_ACK_CLIENT = """
import socket, struct, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
while s.recv(100):
    pass                                   # the server's FIN: CLOSE-WAIT
s.shutdown(socket.SHUT_WR)                 # our FIN: LAST-ACK, both ways shut
info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
print("tcp_info", len(info), info[0], flush=True)
print("so_error", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), flush=True)
sys.stdin.readline()                       # hold the socket until told
s.close()
"""


def test_a_socket_shut_both_ways_answers_until_its_connection_ends(sh: Shim) -> None:
    """The program shut its socket down both ways (the peer's FIN, then its own) and still
    holds it: as in Linux, TCP_INFO and SO_ERROR answer from the connection (LAST-ACK
    or already CLOSED), not 4 bytes of nothing; once the connection is closed the daemon
    lets the socket go (found by `tcplab drill --daemon`, snippets/last-ack)."""
    server = sh.peer_popen(["python3", "-c", (
        "import socket\n"
        "l = socket.create_server(('0.0.0.0', 6090))\n"
        "c, _ = l.accept(); c.close(); l.close()\n")])
    sh.wait_peer_listener(6090)
    client = sh.popen(["python3", "-c", LAST_ACK_CLIENT, PEER, "6090"], stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None and client.stdin is not None
        info = client.stdout.readline().split()
        assert info[:2] == ["tcp_info", "104"], info
        # TCP_CLOSE_WAIT (our FIN still on its way through the daemon), TCP_LAST_ACK or
        # TCP_CLOSE (linux/tcp.h)
        assert int(info[2]) in (7, 8, 9), info
        assert client.stdout.readline().split() == ["so_error", "0"]
        from stack.ipc.client import query_sockets

        deadline = time.monotonic() + 20
        while any(str(r.get("remote", "")).endswith(":6090") for r in query_sockets(sh.socket)):
            assert time.monotonic() < deadline, "the daemon kept the closed connection"
            time.sleep(0.05)
        client.stdin.write("\n")
        client.stdin.flush()
        assert client.wait(20) == 0
    finally:
        for p in (client, server):
            if p.poll() is None:
                p.kill()
    assert server.wait(20) == 0


# --- servers under the shim, kernel clients in the peer ------------------------------


def test_python_http_server(sh: Shim, data_dir: Path) -> None:
    server = sh.popen(["python3", "-m", "http.server", "8081", "--directory", str(data_dir)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sh.wait_shim_listener(8081)
    cp = sh.peer(["sh", "-c", f"curl -sS --max-time 100 http://{STACK_ADDR}:8081/big.bin "
                  "| sha256sum"], timeout=120)
    assert cp.stdout.split()[0] == sha256_file(data_dir / "big.bin")
    server.kill()


def test_nc_listen_both_directions(sh: Shim, data_dir: Path, tmp_path: Path) -> None:
    src = data_dir / "mid.bin"
    got = tmp_path / "ncl.bin"
    with open(got, "wb") as sink:
        server = sh.popen(["nc", "-l", "-p", "6011"], stdout=sink)
        sh.wait_shim_listener(6011)
        with open(src, "rb") as f:
            sh.peer(["nc", "-N", STACK_ADDR, "6011"], stdin=f, timeout=60)
        assert server.wait(30) == 0
    assert sha256_file(got) == sha256_file(src)
    with open(src, "rb") as f:
        server = sh.popen(["nc", "-N", "-l", "-p", "6012"], stdin=f)
        sh.wait_shim_listener(6012)
        cp = sh.peer(["sh", "-c", f"nc -d {STACK_ADDR} 6012 | sha256sum"], timeout=60)
        assert server.wait(30) == 0
    assert cp.stdout.split()[0] == sha256_file(src)


def test_socat_fork_server(sh: Shim, data_dir: Path) -> None:
    """A process per connection: socat forks, the child serves the accepted socket."""
    server = sh.popen(["socat", "TCP-LISTEN:6020,reuseaddr,fork", "EXEC:cat"],
                      stderr=subprocess.PIPE)
    sh.wait_shim_listener(6020)
    src = data_dir / "mid.bin"
    want = sha256_file(src)
    clients = [
        sh.peer_popen(["sh", "-c", f"socat - TCP:{STACK_ADDR}:6020,shut-down < {src} | sha256sum"],
                      stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for client in clients:
        out, _ = client.communicate(timeout=60)
        assert out.split()[0] == want
    server.kill()


@pytest.mark.parametrize("reverse", [False, True], ids=["upload", "download"])
def test_iperf3_server(sh: Shim, reverse: bool) -> None:
    # iperf3 listens on IPv6 "::" by default: -4 keeps it on IPv4, which the shim moves.
    server = sh.popen(["iperf3", "-s", "-4", "-1", "-p", "5301"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
    sh.wait_shim_listener(5301)
    cp = sh.peer(["iperf3", "-c", STACK_ADDR, "-p", "5301", "-t", "3", "-J",
                  *(["-R"] if reverse else [])], timeout=60)
    report = json.loads(cp.stdout)
    assert "error" not in report, report.get("error")
    sent, received = _iperf_bytes(report)
    # (what is still in flight when the test time ends is not counted as received)
    assert received > 10 * MB and 0.9 * sent <= received <= sent, (sent, received)
    assert server.wait(20) == 0


ECHO_CLIENT = """
import hashlib, os, socket, sys, threading
data = os.urandom(int(sys.argv[3]))
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
got = bytearray()
while True:
    block = s.recv(65536)
    if not block:
        break
    got += block
t.join()
print("ok" if bytes(got) == data else f"mismatch {len(got)}")
"""


def test_c_epoll_server(sh: Shim) -> None:
    server = sh.popen([str(EXAMPLES / "epoll_server"), "6030", "3"], stdout=subprocess.PIPE,
                      text=True)
    sh.wait_shim_listener(6030)
    clients = [sh.peer_popen(["python3", "-c", ECHO_CLIENT, STACK_ADDR, "6030", str(n)],
                             stdout=subprocess.PIPE, text=True)
               for n in (4 * MB, 1, 300000)]
    for client in clients:
        out, _ = client.communicate(timeout=60)
        assert out.strip() == "ok"
    out, _ = server.communicate(timeout=30)
    assert out.splitlines() == ["listening 6030", "served 3"]


def test_python_asyncio_server(sh: Shim, data_dir: Path) -> None:
    server = sh.popen(py("""
        import asyncio, hashlib
        async def handle(reader, writer):
            data = await reader.read()
            writer.write(hashlib.sha256(data).hexdigest().encode() + b"\\n")
            await writer.drain()
            writer.close()
        async def main():
            srv = await asyncio.start_server(handle, "0.0.0.0", 6060)
            async with srv:
                await asyncio.sleep(60)
        asyncio.run(main())
    """))
    sh.wait_shim_listener(6060)
    src = data_dir / "mid.bin"
    for _ in range(3):
        cp = sh.peer(["sh", "-c", f"nc -N {STACK_ADDR} 6060 < {src}"], timeout=60)
        assert cp.stdout.strip() == sha256_file(src)
    server.kill()


# --- UDP ------------------------------------------------------------------------------


def _readline(proc: subprocess.Popen[str], timeout: float = 10) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else "<timeout>"


def test_udp_nc_both_ways(sh: Shim, tmp_path: Path) -> None:
    # shimmed client -> kernel server
    got = tmp_path / "udp1"
    with open(got, "wb") as sink:
        server = sh.peer_popen(["nc", "-u", "-l", "-p", "7001"], stdout=sink)
        sh.wait_peer_listener(7001, udp=True)
        sh.run(["sh", "-c", f"echo hello over the stack | nc -u -w1 -q1 {PEER} 7001"],
               timeout=30)
        time.sleep(0.3)
        server.kill()
    assert got.read_text() == "hello over the stack\n"
    # kernel client -> shimmed server; nc -u -l learns the sender with recvfrom and
    # answers it, so the reply proves the source address came through
    server = sh.popen(["nc", "-u", "-l", "-p", "7002"], stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, text=True, bufsize=1)
    sh.wait_shim_udp(7002)
    client = sh.peer_popen(["nc", "-u", STACK_ADDR, "7002"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True, bufsize=1)
    assert client.stdin is not None and server.stdin is not None
    client.stdin.write("ping\n")
    client.stdin.flush()
    assert _readline(server) == "ping\n"
    server.stdin.write("pong\n")
    server.stdin.flush()
    assert _readline(client) == "pong\n"


def test_udp_python_addresses(sh: Shim) -> None:
    """recvfrom reports the real source; sendto answers it (DNS-style exchange)."""
    server = sh.popen(py("""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 7005))
        for _ in range(3):
            data, src = s.recvfrom(2048)
            s.sendto(data.upper() + f" {src[0]}:{src[1]}".encode(), src)
    """), stdout=subprocess.PIPE, text=True)
    sh.wait_shim_udp(7005)
    cp = sh.peer(py(f"""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(10)
        s.bind(("0.0.0.0", 7006))
        for word in ("one", "two", "x" * 1400):
            s.sendto(word.encode(), ("{STACK_ADDR}", 7005))
            data, src = s.recvfrom(4096)
            print(data.decode(), src[0], src[1])
    """), timeout=30)
    lines = cp.stdout.splitlines()
    assert lines[0] == f"ONE {PEER}:7006 {STACK_ADDR} 7005"
    assert lines[1] == f"TWO {PEER}:7006 {STACK_ADDR} 7005"
    assert lines[2] == f"{'X' * 1400} {PEER}:7006 {STACK_ADDR} 7005"
    server.wait(10)


# --- a C non-blocking client and the errno cases -------------------------------------


def test_c_nonblocking_connect_client(sh: Shim) -> None:
    server = sh.peer_popen(["socat", "TCP-LISTEN:6040,reuseaddr,fork", "EXEC:cat"])
    sh.wait_peer_listener(6040)
    for args in (["10.1.0.2", "6040", str(2 * MB)], ["-b", "10.1.0.2", "6040", "100000"]):
        cp = sh.run([str(EXAMPLES / "nbconnect"), *args], timeout=60)
        lines = cp.stdout.splitlines()
        assert lines[0].startswith(f"connected {STACK_ADDR}:") and lines[0].endswith(" 10.1.0.2:6040")
        assert lines[-1] == f"echo ok {args[-1]}"
    server.kill()


@pytest.mark.parametrize("blocking", [False, True], ids=["nonblocking", "blocking"])
def test_refused_closed_port(sh: Shim, blocking: bool) -> None:
    cp = sh.run([str(EXAMPLES / "nbconnect"), *(["-b"] if blocking else []), PEER, "6999"],
                timeout=30, check=False)
    assert cp.returncode == 3 and cp.stdout.startswith("error ECONNREFUSED"), cp.stdout
    cp = sh.run(py(f"""
        import socket
        try:
            socket.create_connection(("{PEER}", 6999), timeout=10)
        except ConnectionRefusedError:
            print("refused")
    """), timeout=30)
    assert cp.stdout.strip() == "refused"
    cp = sh.run(["curl", "-sS", "--max-time", "10", f"http://{PEER}:6999/"], timeout=30,
                check=False)
    assert cp.returncode == 7, cp.stderr  # "Failed to connect ... Couldn't connect to server"


def test_peer_reset_gives_econnreset_and_epipe(sh: Shim) -> None:
    server = sh.peer_popen(py("""
        import socket, struct
        l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        l.bind(("0.0.0.0", 6090)); l.listen(1)
        c, _ = l.accept()
        c.recv(100)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()   # RST
    """))
    sh.wait_peer_listener(6090)
    cp = sh.run(py(f"""
        import errno, select, socket, time
        s = socket.create_connection(("{PEER}", 6090), timeout=10)
        s.sendall(b"hello")
        select.select([s], [], [], 10)
        try:
            s.recv(100)
            print("no reset")
        except ConnectionResetError:
            print("ECONNRESET")
        try:
            for _ in range(50):
                s.send(b"x" * 1000, socket.MSG_NOSIGNAL)
                time.sleep(0.01)
            print("no error")
        except OSError as e:
            print(errno.errorcode[e.errno])
    """), timeout=30)
    assert cp.stdout.split() == ["ECONNRESET", "EPIPE"], cp.stdout + cp.stderr
    server.wait(10)


TCP_INFO_READER = """
import socket, struct
def tcp_info(s):
    raw = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
    state, options, wscale = raw[0], raw[5], raw[6]
    snd_mss, = struct.unpack_from("=I", raw, 16)
    return f"state={state} options={options} snd_wscale={wscale & 15} rcv_wscale={wscale >> 4} snd_mss={snd_mss}"
"""


def test_tcp_info_reports_what_the_handshake_agreed(sh: Shim) -> None:
    """getsockopt(TCP_INFO) through the shim (issue 17 item 7): tcpi_state, tcpi_options
    (TCPI_OPT_TIMESTAMPS|SACK|WSCALE) and the two window scales, checked against the
    kernel's own TCP_INFO of the other end: our send shift is its receive shift."""
    def fields(line: str) -> dict[str, int]:
        return {k: int(v) for k, v in (kv.split("=") for kv in line.split())}

    server = sh.peer_popen(py(TCP_INFO_READER + """
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 6071)); l.listen(1)
c, _ = l.accept()
print(tcp_info(c), flush=True)
while c.recv(65536):
    pass
"""), stdout=subprocess.PIPE, text=True)
    sh.wait_peer_listener(6071)
    cp = sh.run(py(TCP_INFO_READER + f"""
s = socket.create_connection(("{PEER}", 6071), timeout=10)
print(tcp_info(s))
s.sendall(bytes(100_000))
s.close()
"""), timeout=30)
    out, _ = server.communicate(timeout=20)
    ours, kernel = fields(cp.stdout), fields(out)
    assert ours["state"] == 1 and kernel["state"] == 1, (cp.stdout, out)  # TCP_ESTABLISHED
    assert ours["options"] & 7 == 7 and kernel["options"] & 7 == 7, (cp.stdout, out)
    assert (ours["snd_wscale"], ours["rcv_wscale"]) == (
        kernel["rcv_wscale"], kernel["snd_wscale"]), (cp.stdout, out)
    assert 536 <= ours["snd_mss"] <= 1460, cp.stdout


def test_errno_semantics(sh: Shim) -> None:
    cp = sh.run(py(f"""
        import errno, socket
        def code(fn):
            try:
                fn()
            except OSError as e:
                return errno.errorcode[e.errno]
            return "ok"
        l = socket.socket(); l.bind(("0.0.0.0", 6070)); l.listen(1)
        print(code(lambda: socket.socket().bind(("0.0.0.0", 6070))))       # EADDRINUSE
        print(code(lambda: socket.socket().getpeername()))                # ENOTCONN
        n = socket.socket(); n.setblocking(False)
        print(code(lambda: n.connect(("{PEER}", 6999))))                  # EINPROGRESS
        l.setblocking(False)
        print(code(lambda: l.accept()))                                   # EAGAIN
        print(code(lambda: socket.socket().bind(("192.0.2.1", 0))))       # EADDRNOTAVAIL
    """), timeout=30)
    assert cp.stdout.split() == ["EADDRINUSE", "ENOTCONN", "EINPROGRESS", "EAGAIN",
                                 "EADDRNOTAVAIL"], cp.stdout + cp.stderr


def test_daemon_absent(sh: Shim, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-daemon.sock")
    t0 = time.monotonic()
    cp = sh.run(["curl", "-sS", "--max-time", "10", f"http://{PEER}:8080/"], timeout=30,
                check=False, socket_path=missing)
    assert time.monotonic() - t0 < 8
    assert cp.returncode != 0
    assert f"tcplab: cannot reach the stack daemon at {missing}: No such file or directory" \
        in cp.stderr.splitlines()
    cp = sh.run([str(EXAMPLES / "nbconnect"), PEER, "80"], timeout=30, check=False,
                socket_path=missing)
    assert cp.returncode == 3 and cp.stdout.startswith("error ENETDOWN"), cp.stdout
    assert cp.stderr.count("cannot reach the stack daemon") == 1


def test_loopback_stays_with_the_kernel(sh: Shim) -> None:
    cp = sh.run(py("""
        import socket, threading
        l = socket.socket()
        l.bind(("127.0.0.1", 0))
        l.listen(1)
        port = l.getsockname()[1]
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        s, addr = l.accept()
        c.sendall(b"loopback")
        print(s.recv(100).decode(), addr[0])
    """), timeout=30)
    assert cp.stdout.split() == ["loopback", "127.0.0.1"]


def test_tcplab_ss_shows_shim_sockets(sh: Shim) -> None:
    server = sh.popen(["nc", "-l", "-p", "6080"], stdout=subprocess.DEVNULL)
    sh.wait_shim_listener(6080)
    assert sh.daemon is not None
    out = sh.daemon.ss()
    assert any("LISTEN" in line and ":6080" in line for line in out.splitlines()), out
    from stack.ipc.client import query_sockets
    rows = [r for r in query_sockets(sh.socket) if str(r.get("local", "")).endswith(":6080")]
    assert rows and rows[0].get("process") == "nc"
    server.kill()


def test_daemon_killed_mid_transfer(sh: Shim, peer_http: str) -> None:
    """The daemon going away under a running program: its sockets fail at once."""
    client = sh.popen(py(f"""
        import socket, time
        s = socket.create_connection(("{PEER}", 8080), timeout=30)
        s.sendall(b"GET /big.bin HTTP/1.0\\r\\n\\r\\n")
        s.recv(1000)
        print("connected", flush=True)
        t0 = time.monotonic()
        try:
            while s.recv(65536):
                time.sleep(0.01)   # slow reader: the transfer is still going
            print("eof", flush=True)
        except ConnectionResetError:
            print("reset", round(time.monotonic() - t0, 2), flush=True)
    """), stdout=subprocess.PIPE, text=True)
    assert client.stdout is not None
    assert client.stdout.readline().strip() == "connected"
    assert sh.daemon is not None
    time.sleep(0.5)
    os.kill(sh.daemon.proc.pid, signal.SIGKILL)
    out, _ = client.communicate(timeout=30)
    assert out.startswith("reset"), out
    sh.daemon.kill()
    # a stale socket file is left; a new daemon takes over (and the fixture restarts it)
    sh.start()


def test_plain_ld_preload_and_environment(sh: Shim) -> None:
    """A plain LD_PRELOAD with TCPLAB_SOCKET works as well as `tcplab run`."""
    cp = subprocess.run(
        ["ip", "netns", "exec", sh.topology.stack_ns, "env",
         f"LD_PRELOAD={EXAMPLES.parent / 'libsocketoverride.so'}", f"TCPLAB_SOCKET={sh.socket}",
         str(EXAMPLES / "nbconnect"), PEER, "6999"],
        capture_output=True, text=True, timeout=30)
    assert cp.stdout.startswith("error ECONNREFUSED"), cp.stdout + cp.stderr


# --- issue 11: the patterns real servers use (C regressions in shim/tests/) ----------

TESTS_DIR = EXAMPLES.parent / "tests"


def _fetch_sha(sh: Shim, port: int, timeout: float = 90) -> str:
    """Fetch everything a server on the stack sends (kernel python client in the peer)."""
    cp = sh.peer(py(f"""
        import hashlib, socket
        s = socket.create_connection(("{STACK_ADDR}", {port}), timeout=30)
        h = hashlib.sha256()
        n = 0
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
        print(h.hexdigest(), n)
    """), timeout=timeout)
    return " ".join(cp.stdout.split()[:1]) + f" ({cp.stdout.split()[1]} bytes)"


SEND_CASES = [("sendfile", "et"), ("sendfile", "lt"), ("sendfile", "poll"),
              ("sendfile", "select"), ("write", "et"), ("writev", "et"), ("writev", "poll"),
              ("splice", "et"), ("splice", "select"), ("msgmore", "et"), ("msgmore", "lt"),
              ("cork", "et"), ("cork", "poll")]


@pytest.mark.parametrize(("method", "wait"), SEND_CASES,
                         ids=[f"{m}-{w}" for m, w in SEND_CASES])
def test_send_paths_nonblocking(sh: Shim, data_dir: Path, method: str, wait: str) -> None:
    """sendfile/splice/writev/MSG_MORE/TCP_CORK on a non-blocking socket under epoll
    (edge- and level-triggered), poll and select: the client gets every byte."""
    src = data_dir / "big.bin"
    port = 6400 + SEND_CASES.index((method, wait))
    server = sh.popen([str(TESTS_DIR / "send_server"), str(port), str(src), "1", method, wait],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    assert server.stdout.readline().split() == ["listening", str(port)]
    got = _fetch_sha(sh, port)
    out, err = server.communicate(timeout=30)
    assert got == f"{sha256_file(src)} ({src.stat().st_size} bytes)", (out, err)
    assert server.returncode == 0, err
    assert out.split() == ["sent", str(src.stat().st_size)]


def _ask_line(sh: Shim, port: int, count: int) -> list[str]:
    """`count` connections, one after the other, each sending a line and reading the
    answer (kernel python client in the peer namespace)."""
    cp = sh.peer(py(f"""
        import socket
        for _ in range({count}):
            s = socket.create_connection(("{STACK_ADDR}", {port}), timeout=20)
            s.sendall(b"hello\\n")
            got = b""
            while not got.endswith(b"\\n"):
                b = s.recv(1000)
                if not b:
                    break
                got += b
            print(got.decode().strip() or "empty", flush=True)
            s.close()
    """), timeout=90)
    return cp.stdout.splitlines()


@pytest.mark.parametrize("mode", ["setuid", "chroot", "closefrom"])
def test_prefork_workers_drop_privileges(sh: Shim, mode: str) -> None:
    """A root master binds and listens, forks 3 workers that drop to nobody (after a
    chroot, or after closing every other fd) before accept(): all of them serve."""
    port = {"setuid": 6501, "chroot": 6502, "closefrom": 6503}[mode]
    server = sh.popen([str(TESTS_DIR / "prefork_server"), str(port), "3", mode],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    lines = [server.stdout.readline().strip() for _ in range(4)]
    assert f"listening {port}" in lines, lines
    assert sum(1 for x in lines if x.endswith("uid 65534 ready")) == 3, lines
    answers = _ask_line(sh, port, 12)
    assert len(answers) == 12, answers
    for answer in answers:
        words = answer.split()
        assert words[0] == "served" and words[2:4] == ["uid", "65534"], answer
        assert words[5].startswith("10.1.0.2:"), answer
        # the worker's control calls work too: a connection of its own since fork
        # (ADOPT), or, after closefrom, one it handed in through the listener
        assert words[7] == f"{STACK_ADDR}:{port}" and words[9] == "ok", answer
    server.send_signal(signal.SIGTERM)
    server.communicate(timeout=20)


def test_dead_daemon_wakes_blocked_workers(sh: Shim) -> None:
    """The daemon dying under pre-forked workers blocked in accept(): each gets an
    errno at once (no hang), and their control calls fail with an errno too."""
    port = 6504
    server = sh.popen([str(TESTS_DIR / "prefork_server"), str(port), "2", "setuid"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    lines = [server.stdout.readline().strip() for _ in range(3)]
    assert f"listening {port}" in lines, lines
    assert _ask_line(sh, port, 1)[0].startswith("served")
    assert sh.daemon is not None
    t0 = time.monotonic()
    os.kill(sh.daemon.proc.pid, signal.SIGKILL)
    out, err = server.communicate(timeout=20)
    assert time.monotonic() - t0 < 10
    errors = [x for x in out.splitlines() if " accept " in x]
    assert len(errors) == 2 and all(x.endswith("accept ENETDOWN") for x in errors), (out, err)
    assert err.count("went away") <= 2, err
    sh.daemon.kill()
    sh.start()


ECHO_ONCE = """
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
l = socket.socket(fam)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2])))
l.listen(1)
print("ready", flush=True)
c, _ = l.accept()
c.sendall(c.recv(100))
c.close()
"""


def _fields(out: str, what: str) -> dict[str, str]:
    """The key/value words of the line starting with `what` in dualstack's output."""
    for line in out.splitlines():
        words = line.split()
        if words and words[0] == what:
            return dict(zip(words[1::2], words[2::2], strict=False))
    raise AssertionError(f"no {what!r} line in {out!r}")


def test_v6_dual_stack_listener_takes_ipv4_peers(sh: Shim) -> None:
    """An AF_INET6 [::] listener (IPV6_V6ONLY=0) is on the stack: a kernel IPv4 client
    reaches it at 10.0.0.2, and every address comes back as Linux gives it:
    sockaddr_in6, ::ffff:a.b.c.d, flowinfo 0, scope_id 0, length 28."""
    port = 6601
    server = sh.popen([str(TESTS_DIR / "dualstack"), "listen", str(port), "0"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    assert server.stdout.readline().split() == ["v6only", "0", "domain", "10"]
    assert _fields(server.stdout.readline(), "sockname") == {
        "family": "10", "len": "28", "addr": "::", "port": str(port), "flowinfo": "0",
        "scope": "0"}
    assert server.stdout.readline().split() == ["listening", str(port)]
    cp = sh.peer(py(f"""
        import socket
        s = socket.create_connection(("{STACK_ADDR}", {port}), timeout=10)
        s.sendall(b"hi6")
        print(s.getsockname()[1], s.recv(100).decode())
    """), timeout=30)
    client_port, echoed = cp.stdout.split()
    assert echoed == "hi6"
    out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    peer = {"family": "10", "len": "28", "addr": "::ffff:10.1.0.2", "port": client_port,
            "flowinfo": "0", "scope": "0"}
    assert _fields(out, "accepted") == peer
    assert _fields(out, "peername") == peer
    assert _fields(out, "sockname") == {**peer, "addr": "::ffff:10.0.0.2", "port": str(port)}
    assert "domain 10" in out.splitlines()


def test_v6only_listener_takes_no_ipv4(sh: Shim) -> None:
    """IPV6_V6ONLY=1: the option reads back 1, the [::] listener is not on the IPv4
    stack (a v4 client is refused), and binding a v4-mapped address fails (EINVAL)."""
    port = 6602
    server = sh.popen([str(TESTS_DIR / "dualstack"), "listen", str(port), "1"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    assert server.stdout.readline().split()[:2] == ["v6only", "1"]
    server.stdout.readline()
    assert server.stdout.readline().split() == ["listening", str(port)]
    cp = sh.peer(py(f"""
        import socket
        try:
            socket.create_connection(("{STACK_ADDR}", {port}), timeout=10)
            print("connected")
        except ConnectionRefusedError:
            print("refused")
    """), timeout=30)
    assert cp.stdout.strip() == "refused"
    server.kill()
    cp = sh.run([str(TESTS_DIR / "dualstack"), "bindmapped", "1"], timeout=20)
    assert cp.stdout.splitlines()[-1] == "bind EINVAL"
    cp = sh.run([str(TESTS_DIR / "dualstack"), "bindmapped", "0"], timeout=20)
    assert cp.stdout.splitlines()[-1] == "bind ok"


@pytest.mark.parametrize("how", ["connect", "gai"])
def test_v4_mapped_client_rides_the_stack(sh: Shim, how: str) -> None:
    """An AF_INET6 client connecting to ::ffff:10.1.0.2 (given as such, or from
    getaddrinfo(AF_INET6, AI_V4MAPPED)) goes through the stack, not the kernel."""
    port = 6610 if how == "connect" else 6611
    server = sh.peer_popen(["python3", "-c", ECHO_ONCE, "0.0.0.0", str(port)],
                           stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    target = "::ffff:10.1.0.2" if how == "connect" else PEER
    cp = sh.run([str(TESTS_DIR / "dualstack"), how, target, str(port)], timeout=30)
    assert "connected domain 10" in cp.stdout, cp.stdout + cp.stderr
    assert _fields(cp.stdout, "peername") == {
        "family": "10", "len": "28", "addr": "::ffff:10.1.0.2", "port": str(port),
        "flowinfo": "0", "scope": "0"}
    local = _fields(cp.stdout, "sockname")
    assert local["addr"] == f"::ffff:{STACK_ADDR}" and local["len"] == "28"
    assert cp.stdout.splitlines()[-1] == "reply ping"
    # it went through the stack: the daemon saw the connection
    assert server.wait(10) == 0


def test_v6_loopback_goes_to_the_kernel(sh: Shim) -> None:
    """::1 is the kernel's, as 127/8 is: the socket becomes a kernel AF_INET6 socket."""
    port = 6612
    server = popen_in(sh.topology.stack_ns, ["python3", "-c", ECHO_ONCE, "::1", str(port)],
                      stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        cp = sh.run([str(TESTS_DIR / "dualstack"), "connect", "::1", str(port)], timeout=30)
        assert _fields(cp.stdout, "peername")["addr"] == "::1", cp.stdout + cp.stderr
        assert cp.stdout.splitlines()[-1] == "reply ping"
        assert server.wait(10) == 0
    finally:
        if server.poll() is None:
            server.kill()


def test_v6_udp_recvfrom_gives_mapped_source(sh: Shim) -> None:
    port = 6613
    server = sh.popen([str(TESTS_DIR / "dualstack"), "udp", str(port)],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    head = [server.stdout.readline().strip() for _ in range(4)]
    assert head[2:] == ["recvpktinfo ok", f"listening {port}"], head
    cp = sh.peer(py(f"""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(10)
        s.bind(("0.0.0.0", 40613))
        s.sendto(b"dgram6", ("{STACK_ADDR}", {port}))
        data, src = s.recvfrom(100)
        print(data.decode(), src[0], src[1])
    """), timeout=30)
    assert cp.stdout.split() == ["dgram6", STACK_ADDR, str(port)]
    out, _ = server.communicate(timeout=10)
    assert server.returncode == 0
    assert _fields(out, "from") == {"family": "10", "len": "28", "addr": "::ffff:10.1.0.2",
                                    "port": "40613", "flowinfo": "0", "scope": "0"}


@pytest.mark.parametrize("reverse", [False, True], ids=["upload", "download"])
def test_iperf3_server_default_flags(sh: Shim, reverse: bool) -> None:
    """`iperf3 -s` as users run it (no -4: it listens on [::], dual-stack)."""
    server = sh.popen(["iperf3", "-s", "-1", "-p", "5302"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
    sh.wait_shim_listener(5302)
    cp = sh.peer(["iperf3", "-c", STACK_ADDR, "-p", "5302", "-t", "3", "-J",
                  *(["-R"] if reverse else [])], timeout=60)
    report = json.loads(cp.stdout)
    assert "error" not in report, report.get("error")
    sent, received = _iperf_bytes(report)
    assert received > 10 * MB and 0.9 * sent <= received <= sent, (sent, received)
    assert server.wait(20) == 0


def test_so_reuseport_several_listening_processes(sh: Shim) -> None:
    """3 processes, each with its own SO_REUSEPORT socket on one port: all bind and
    listen, and over 40 connections (from as many source ports) each gets some. (Which
    one gets a connection is a hash of the peer's address and port, as in Linux; the
    chance that one of 3 gets none of 40 is below 1e-6.)"""
    port = 6701
    server = sh.popen([str(TESTS_DIR / "reuseport_server"), str(port), "3"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    ready = [server.stdout.readline().split() for _ in range(3)]
    assert all(r[:1] == ["ready"] for r in ready), ready
    pids = {r[1] for r in ready}
    cp = sh.peer(py(f"""
        import socket
        for _ in range(40):
            s = socket.create_connection(("{STACK_ADDR}", {port}), timeout=20)
            got = b""
            while not got.endswith(b"\\n"):
                b = s.recv(100)
                if not b:
                    break
                got += b
            print(got.decode().strip(), flush=True)
            s.close()
    """), timeout=90)
    answers = [line.split() for line in cp.stdout.splitlines()]
    assert len(answers) == 40 and all(a[0] == "pid" for a in answers), answers
    counts = {pid: sum(1 for a in answers if a[1] == pid) for pid in pids}
    assert all(n >= 1 for n in counts.values()), counts
    server.send_signal(signal.SIGTERM)
    server.communicate(timeout=20)
