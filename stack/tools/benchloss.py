"""`tcplab bench --loss 1,5,20`: loss recovery, the stack against the kernel, over
the same lossy path in the same run.

Topology (its own namespaces, nothing in the root namespace)::

    tlbl-peer-XXXX                       tlbl-stack-XXXX
    +----------------------+             +--------------------------------------+
    | client (kernel TCP)  |             | kernel servers on 10.1.0.1           |
    | veth-p 10.1.0.2/24   |--- veth ----| veth-s 10.1.0.1/24  ip_forward=1     |
    | nft: drop N% of TCP  |             | nft: drop N% of TCP coming in on     |
    |   coming in on veth-p|             |   veth-s   mytun 10.0.0.1 --> stack  |
    +----------------------+             +--------------------------------------+

Loss is made by nftables (`numgen random mod 10000 lt N*100 drop`) in the
prerouting hook of the *receiving* namespace of each direction, so that no
sender ever learns of a drop locally: the drops are silent, as on a real path.
Offloads are off everywhere (TSO, GSO, GRO on both veth ends by the ethtool ioctl,
and the stack runs with ``--no-offload``), so every 1500-byte packet takes its
chance. The kernel forgets what it learned about the path between transfers
(``net.ipv4.tcp_no_metrics_save=1``).

Each row is one transfer size and direction at one loss rate, run ``--runs`` times
through the stack (10.0.0.2, behind mytun) and through the kernel (10.1.0.1, the
stack namespace's own TCP), interleaved, with the same client in the peer namespace:

* stack sends:    HTTP GET /bytes/N (the stack's http service; a kernel HTTP
  server with the same body), SHA-256 checked by the client;
* stack receives: N bytes to discard (the stack's discard service reports the
  SHA-256 in its event log; the kernel's discard server reports it on stdout).

``time`` is from the end of the handshake to the end of the transfer (the last
byte read, or the receiver's FIN for an upload), so the SYN's 1 s RTO does not
swamp small transfers. ``retrans`` are the sender's retransmitted segments
(tcp_info of the kernel socket, or the stack's ``retransmit`` events). ``stall``
is the longest time without forward progress: without new bytes read (download)
or without new bytes acknowledged (upload, tcp_info ``bytes_acked`` polled every
10 ms). Every transfer is bounded by ``--timeout``; one that fails or times out is
reported and counted at the timeout.
"""

from __future__ import annotations

import argparse
import array
import fcntl
import hashlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stack.tcp.congestion import ALGORITHMS

STACK_ADDR = "10.0.0.2"
KERNEL_ADDR = "10.1.0.1"
PEER_ADDR = "10.1.0.2"
KERNEL_DISCARD = 9109
KERNEL_HTTP = 9180
STACK_DISCARD = 9
STACK_HTTP = 80
NFT_TABLE = "tcplab_loss"
MAX_RUNS = 50
MAX_BYTES = 100 << 20
POLL = 0.01  # tcp_info poll interval of the upload client
KERNEL_CC_ENV = "TCPLAB_BENCH_KERNEL_CC"

# linux/sockios.h, linux/ethtool.h: the legacy per-feature commands.
SIOCETHTOOL = 0x8946
ETHTOOL_FEATURES = {"tso": (0x1E, 0x1F), "gso": (0x23, 0x24), "gro": (0x2B, 0x2C)}  # (get, set)
# struct tcp_info (linux/tcp.h): tcpi_total_retrans and tcpi_bytes_acked.
TCPI_TOTAL_RETRANS = 100
TCPI_BYTES_ACKED = 120
TCP_INFO_LEN = 232


def body(n: int) -> bytes:
    """The stack's /bytes/N body (stack/services: random.Random(N).randbytes(N), made
    64 KiB at a time), so both servers send the same bytes."""
    from stack.services import bytes_body

    return b"".join(bytes_body(n))


# ------------------------------------------------------------------ in the namespaces

def offloads_off(devices: list[str]) -> None:
    """TSO, GSO and GRO off on each device (ETHTOOL_S*), then read back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for dev in devices:
            for name, (get, set_) in ETHTOOL_FEATURES.items():
                for cmd in (set_, get):
                    value = array.array("I", [cmd, 0])
                    addr, _ = value.buffer_info()
                    ifr = struct.pack("16sP", dev.encode(), addr).ljust(40, b"\0")
                    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifr)
                    if cmd == get and value[1] != 0:
                        raise OSError(f"{dev}: {name} is still on")


def _kernel_cc(sock: socket.socket) -> None:
    """`--kernel-cc`: the kernel socket's congestion control (TCP_CONGESTION; as root
    any loaded one, not only net.ipv4.tcp_allowed_congestion_control's, which a
    namespace cannot change)."""
    if name := os.environ.get(KERNEL_CC_ENV):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())


def _tcp_info(sock: socket.socket) -> tuple[int, int]:
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LEN)
    (retrans,) = struct.unpack_from("I", raw, TCPI_TOTAL_RETRANS)
    (acked,) = struct.unpack_from("Q", raw, TCPI_BYTES_ACKED)
    return retrans, acked


def serve() -> None:
    """Kernel discard (KERNEL_DISCARD) and HTTP /bytes/N (KERNEL_HTTP) on KERNEL_ADDR.
    One JSON line on stdout per finished connection: its peer port, bytes, SHA-256 and
    the kernel's count of retransmitted segments."""
    lock = threading.Lock()

    def report(**fields: Any) -> None:
        with lock:
            print(json.dumps(fields), flush=True)

    def discard(conn: socket.socket, port: int) -> None:
        digest = hashlib.sha256()
        total = 0
        buf = bytearray(1 << 20)
        try:
            while n := conn.recv_into(buf):
                digest.update(memoryview(buf)[:n])
                total += n
        except OSError:
            pass
        conn.close()
        report(port=port, kind="discard", bytes=total, sha256=digest.hexdigest(), retrans=0)

    def http(conn: socket.socket, port: int) -> None:
        request = b""
        retrans = 0
        cc = ""
        try:
            while b"\r\n\r\n" not in request and len(request) < 4096:
                data = conn.recv(4096)
                if not data:
                    break
                request += data
            parts = request.split(b"\r\n", 1)[0].split()
            if len(parts) == 3 and parts[1].startswith(b"/bytes/") and parts[1][7:].isdigit():
                n = min(int(parts[1][7:]), MAX_BYTES)
                head = (f"HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n"
                        "Connection: close\r\n\r\n").encode()
                conn.sendall(head + body(n))
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):  # until the client's FIN: all was delivered
                    pass
                retrans = _tcp_info(conn)[0]
                cc = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
        except OSError:
            pass
        conn.close()
        report(port=port, kind="http", retrans=retrans, cc=cc)

    def listen(port: int, handler: Any) -> None:
        lsock = socket.socket()
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _kernel_cc(lsock)  # accepted sockets inherit it
        lsock.bind((KERNEL_ADDR, port))
        lsock.listen(64)
        while True:
            conn, (_, peer_port) = lsock.accept()
            conn.settimeout(300)
            threading.Thread(target=handler, args=(conn, peer_port), daemon=True).start()

    for port, handler in ((KERNEL_DISCARD, discard), (KERNEL_HTTP, http)):
        threading.Thread(target=listen, args=(port, handler), daemon=True).start()
    print(json.dumps({"serving": True}), flush=True)
    sys.stdin.read()


def client_upload(host: str, port: int, n: int, timeout: float) -> dict[str, Any]:
    """Send n bytes, then FIN; done at the receiver's FIN (it has read everything)."""
    data = body(n)
    sock = socket.socket()
    _kernel_cc(sock)
    sock.settimeout(timeout)
    sock.connect((host, port))
    sock.settimeout(timeout)
    start = time.monotonic()
    done = threading.Event()
    stall = [0.0]

    def monitor() -> None:
        last_acked, last_change = 0, start
        while not done.wait(POLL):
            now = time.monotonic()
            _, acked = _tcp_info(sock)
            if acked != last_acked:
                last_acked, last_change = acked, now
            stall[0] = max(stall[0], now - last_change)

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    finally:
        done.set()
        watcher.join()
    seconds = time.monotonic() - start
    retrans, _ = _tcp_info(sock)
    local_port = sock.getsockname()[1]
    sock.close()
    return {"seconds": seconds, "stall": stall[0], "retrans": retrans, "port": local_port,
            "sha256": hashlib.sha256(data).hexdigest()}


def client_download(host: str, port: int, n: int, timeout: float) -> dict[str, Any]:
    """HTTP GET /bytes/n; done at the server's FIN; the body is checked byte for byte."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    start = last = time.monotonic()
    stall = 0.0
    sock.sendall(f"GET /bytes/{n} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    chunks = []
    buf = bytearray(1 << 20)
    while got := sock.recv_into(buf):
        now = time.monotonic()
        stall = max(stall, now - last)
        last = now
        chunks.append(bytes(buf[:got]))
    seconds = time.monotonic() - start
    local_port = sock.getsockname()[1]
    sock.close()
    reply = b"".join(chunks)
    _head, _, content = reply.partition(b"\r\n\r\n")
    ok = content == body(n)
    return {"seconds": seconds, "stall": stall, "port": local_port, "ok": ok, "bytes": len(content)}


# ------------------------------------------------------------------ the benchmark

def parse_losses(text: str) -> list[float]:
    out = []
    for tok in text.split(","):
        try:
            value = float(tok)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a loss percentage: {tok!r}") from None
        if not 0 <= value < 100:
            raise argparse.ArgumentTypeError(f"loss must be from 0 to below 100 percent: {tok!r}")
        out.append(value)
    return out


def parse_directions(text: str) -> list[str]:
    out = [d.strip() for d in text.split(",") if d.strip()]
    if not out or any(d not in ("sends", "receives") for d in out):
        raise argparse.ArgumentTypeError("directions are 'sends' and/or 'receives'")
    return out


def parse_sizes(text: str) -> list[int]:
    out = []
    for tok in text.split(","):
        scale = {"K": 1000, "M": 1000_000}.get(tok[-1:].upper(), 1)
        digits = tok[:-1] if scale > 1 else tok
        if not digits.isdigit() or not 1 <= int(digits) * scale <= MAX_BYTES:
            raise argparse.ArgumentTypeError(f"size must be 1..100M bytes (e.g. 1M, 500K): {tok!r}")
        out.append(int(digits) * scale)
    return out


def size_label(n: int) -> str:
    if n % 1000_000 == 0:
        return f"{n // 1000_000} MB"
    if n % 1000 == 0:
        return f"{n // 1000} KB"
    return f"{n} B"


@dataclass
class Sample:
    seconds: float | None  # None: failed or timed out
    retrans: int | None
    stall: float | None
    port: int = 0
    error: str = ""


@dataclass
class Row:
    loss: float
    size: int
    direction: str  # "stack sends" / "stack receives"
    stack: list[Sample] = field(default_factory=list)
    kernel: list[Sample] = field(default_factory=list)


def median_time(samples: list[Sample], timeout: float) -> float | None:
    """Median transfer time; a failed transfer counts as the timeout."""
    if not samples:
        return None
    return statistics.median(s.seconds if s.seconds is not None else timeout for s in samples)


def median_retrans(samples: list[Sample]) -> float | None:
    values = [s.retrans for s in samples if s.retrans is not None]
    return statistics.median(values) if values else None


def max_stall(samples: list[Sample], timeout: float) -> float | None:
    values = [s.stall if s.stall is not None else timeout for s in samples]
    return max(values) if values else None


def summarize(row: Row, timeout: float) -> dict[str, Any]:
    st, kt = median_time(row.stack, timeout), median_time(row.kernel, timeout)
    return {
        "loss": row.loss, "size": row.size, "direction": row.direction,
        "stack_s": st, "kernel_s": kt, "ratio": st / kt if st is not None and kt else None,
        "stack_retrans": median_retrans(row.stack), "kernel_retrans": median_retrans(row.kernel),
        "stack_max_stall": max_stall(row.stack, timeout),
        "kernel_max_stall": max_stall(row.kernel, timeout),
        "stack_failed": sum(s.seconds is None for s in row.stack),
        "kernel_failed": sum(s.seconds is None for s in row.kernel),
        "runs": len(row.stack),
        "stack_samples": [s.__dict__ for s in row.stack],
        "kernel_samples": [s.__dict__ for s in row.kernel],
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    def secs(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    def count(v: float | None) -> str:
        return "-" if v is None else f"{v:g}"

    head = (f"{'loss':>5} {'size':>6} {'direction':<15}{'stack s':>9}{'kernel s':>9}{'ratio':>7}"
            f"{'rtx stack':>10}{'rtx kern':>9}{'stall stack':>12}{'stall kern':>11}  failed")
    lines = [head]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        failed = f"{r['stack_failed']}/{r['kernel_failed']}" if r["stack_failed"] or r["kernel_failed"] else ""
        lines.append(
            f"{r['loss']:>4g}% {size_label(r['size']):>6} {r['direction']:<15}"
            f"{secs(r['stack_s']):>9}{secs(r['kernel_s']):>9}{ratio:>7}"
            f"{count(r['stack_retrans']):>10}{count(r['kernel_retrans']):>9}"
            f"{secs(r['stack_max_stall']):>12}{secs(r['kernel_max_stall']):>11}  {failed}")
    return "\n".join(lines)


class LossBench:
    def __init__(self, args: argparse.Namespace) -> None:
        suffix = secrets.token_hex(3)
        self.stack_ns = f"tlbl-stack-{suffix}"
        self.peer_ns = f"tlbl-peer-{suffix}"
        self.args = args
        self.timeout: float = args.timeout
        self.tmp = Path(tempfile.mkdtemp(prefix="tcplab-benchloss-"))
        self.events_path = self.tmp / "events.jsonl"
        self.py = sys.executable
        self.env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        if args.kernel_cc:
            self.env[KERNEL_CC_ENV] = args.kernel_cc
        self.daemon: subprocess.Popen[str] | None = None
        self.server: subprocess.Popen[str] | None = None
        self.server_lines: list[dict[str, Any]] = []
        self._created: list[str] = []
        self.drops: dict[str, tuple[int, int]] = {}
        self.loss = 0.0
        self.kernel_cc = ""
        self.stack_cc = "newreno"

    # ------------------------------------------------------------- topology
    def _run(self, argv: list[str], input: str | None = None) -> str:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, input=input, env=self.env)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {out.stderr.strip()[-300:]}")
        return out.stdout

    def _in(self, ns: str, argv: list[str], input: str | None = None) -> str:
        return self._run(["ip", "netns", "exec", ns, *argv], input=input)

    def setup(self) -> None:
        for ns in (self.stack_ns, self.peer_ns):
            self._run(["ip", "netns", "add", ns])
            self._created.append(ns)
        self._run(["ip", "-n", self.stack_ns, "link", "add", "veth-s", "type", "veth", "peer", "name",
                   "veth-p", "netns", self.peer_ns])
        self._run(["ip", "-n", self.stack_ns, "addr", "add", f"{KERNEL_ADDR}/24", "dev", "veth-s"])
        self._run(["ip", "-n", self.peer_ns, "addr", "add", f"{PEER_ADDR}/24", "dev", "veth-p"])
        for ns, dev in ((self.stack_ns, "veth-s"), (self.peer_ns, "veth-p")):
            self._run(["ip", "-n", ns, "link", "set", dev, "up"])
            self._run(["ip", "-n", ns, "link", "set", "lo", "up"])
            self._in(ns, [self.py, "-m", "stack.tools.benchloss", "offloads-off", dev])
            self._in(ns, ["sysctl", "-qw", "net.ipv4.tcp_no_metrics_save=1"])
            self._in(ns, ["nft", "-f", "-"], input=(
                f"add table inet {NFT_TABLE}\n"
                f"add chain inet {NFT_TABLE} c {{ type filter hook prerouting priority -300; }}\n"))
        self._run(["ip", "-n", self.peer_ns, "route", "add", "10.0.0.0/24", "via", KERNEL_ADDR])
        self.kernel_cc = args_cc if (args_cc := self.args.kernel_cc) else self._in(
            self.stack_ns, ["sysctl", "-n", "net.ipv4.tcp_congestion_control"]).strip()
        self.stack_cc = stack_cc_for(self.args.cc, self.kernel_cc)
        self._in(self.stack_ns, ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                                 "net.ipv4.conf.default.rp_filter=0"])

    def set_loss(self, pct: float) -> None:
        """Drop pct% of the TCP packets arriving at each namespace (silent drops)."""
        self.count_drops()
        self.loss = pct
        for ns, dev in ((self.stack_ns, "veth-s"), (self.peer_ns, "veth-p")):
            rules = f"flush chain inet {NFT_TABLE} c\n"
            if pct > 0:
                rules += (f"add rule inet {NFT_TABLE} c iifname \"{dev}\" meta l4proto tcp counter\n"
                          f"add rule inet {NFT_TABLE} c iifname \"{dev}\" meta l4proto tcp "
                          f"numgen random mod 10000 lt {round(pct * 100)} counter drop\n")
            self._in(ns, ["nft", "-f", "-"], input=rules)

    def count_drops(self) -> None:
        """Add what the nftables counters saw at the current loss rate to `self.drops`
        (packets, dropped) per direction: the loss that was really applied."""
        if not self.loss:
            return
        for ns, direction in ((self.stack_ns, "to stack"), (self.peer_ns, "to peer")):
            way = f"{self.loss:g}% {direction}"
            out = self._in(ns, ["nft", "list", "chain", "inet", NFT_TABLE, "c"])
            counts = [int(x) for x in re.findall(r"counter packets (\d+)", out)]
            if len(counts) == 2:
                seen, dropped = self.drops.get(way, (0, 0))
                self.drops[way] = (seen + counts[0], dropped + counts[1])

    def teardown(self) -> None:
        for proc in (self.server, self.daemon):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for ns in self._created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------- programs
    def start(self) -> None:
        argv = [self.py, "-m", "stack.cli", "stack", "--no-offload", "--socket", str(self.tmp / "stack.sock"),
                "--events", str(self.events_path), "--time-wait", "1", "--service", "discard",
                "--service", "http", "--cc", self.stack_cc]
        if self.args.min_rto is not None:
            argv += ["--min-rto", str(self.args.min_rto)]
        if self.args.pcap:
            argv += ["--pcap", str(Path(self.args.pcap).resolve())]
        self.daemon = subprocess.Popen(["ip", "netns", "exec", self.stack_ns, *argv], env=self.env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                       start_new_session=True)
        self._wait_line(self.daemon, "ready", self.daemon.stderr)
        # After "ready" nothing reads the daemon's stderr: keep its pipe from filling.
        threading.Thread(target=self._drain, args=(self.daemon.stderr,), daemon=True).start()
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.stack_ns, self.py, "-m", "stack.tools.benchloss", "serve"],
            env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        self._wait_line(self.server, "serving", self.server.stdout)

    @staticmethod
    def _drain(pipe: Any) -> None:
        for _ in pipe:
            pass

    def _wait_line(self, proc: subprocess.Popen[str], word: str, pipe: Any) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ready, _, _ = select.select([pipe], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                break
            line = pipe.readline()
            if word in line:
                return
            if not line and proc.poll() is not None:
                break
        raise RuntimeError(f"{word!r} never came from {proc.args!r}")

    def stop_daemon(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait(timeout=10)

    def _server_report(self, port: int, wait: float) -> dict[str, Any] | None:
        """The kernel server's line for the connection from `port`."""
        assert self.server is not None and self.server.stdout is not None
        deadline = time.monotonic() + wait
        while True:
            for line in self.server_lines:
                if line.get("port") == port:
                    self.server_lines.remove(line)
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.server.stdout], [], [], left)
            if ready:
                text = self.server.stdout.readline()
                if not text:
                    return None
                self.server_lines.append(json.loads(text))

    # ------------------------------------------------------------- transfers
    def transfer(self, kernel: bool, sends: bool, size: int) -> Sample:
        """One transfer; `sends`: the server side (stack or kernel) sends."""
        host = KERNEL_ADDR if kernel else STACK_ADDR
        if sends:
            port = KERNEL_HTTP if kernel else STACK_HTTP
            mode = "download"
        else:
            port = KERNEL_DISCARD if kernel else STACK_DISCARD
            mode = "upload"
        argv = ["ip", "netns", "exec", self.peer_ns, self.py, "-m", "stack.tools.benchloss", "client", mode,
                host, str(port), str(size), str(self.timeout)]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout + 30, env=self.env)
        except subprocess.TimeoutExpired:
            return Sample(None, None, None, error="timeout")
        if out.returncode != 0:
            return Sample(None, None, None, error=out.stderr.strip().splitlines()[-1][-200:]
                          if out.stderr.strip() else f"exit {out.returncode}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        sample = Sample(result["seconds"], result.get("retrans"), result["stall"], port=result["port"])
        if sends and not result["ok"]:
            return Sample(None, None, sample.stall, sample.port, error="body differs")
        if kernel:
            report = self._server_report(result["port"], 30)
            if report is None:
                sample.error = "no report from the kernel server"
            elif sends:
                sample.retrans = report["retrans"]
                if report.get("cc") and report["cc"] != self.kernel_cc:
                    sample.error = f"kernel sent with {report['cc']}, not {self.kernel_cc}"
            elif report["sha256"] != result["sha256"]:
                return Sample(None, None, sample.stall, sample.port, error="discard sha256 differs")
        return sample

    def stack_retransmissions(self, rows: list[Row]) -> None:
        """After the daemon has stopped (its event log is complete): the stack's own
        retransmissions for the rows where it sent, the discard SHA-256 where it
        received."""
        counts: dict[int, int] = {}
        digests: dict[int, tuple[int, str]] = {}
        with open(self.events_path, encoding="utf-8") as f:
            for line in f:
                if '"retransmit"' not in line and '"service"' not in line:
                    continue
                event = json.loads(line)
                conn = event.get("conn") or ""
                port = int(conn.rsplit(":", 1)[1]) if ":" in conn else 0
                if event["type"] == "retransmit":
                    counts[port] = counts.get(port, 0) + 1
                elif event["type"] == "service" and event.get("service") == "discard":
                    digests[port] = (event["bytes"], event["sha256"])
        expected = {size: hashlib.sha256(body(size)).hexdigest()
                    for size in {r.size for r in rows if r.direction == "stack receives"}}
        for row in rows:
            for s in row.stack:
                if s.seconds is None:
                    continue
                if row.direction == "stack sends":
                    s.retrans = counts.get(s.port, 0)
                elif (got := digests.get(s.port)) is None or got[1] != expected[row.size]:
                    s.seconds = None
                    s.error = (f"discard got {got[0]} bytes, sha256 differs" if got
                               else "no discard event")

    def run(self) -> list[Row]:
        rows: list[Row] = []
        self.start()
        try:
            for loss in self.args.loss:
                self.set_loss(loss)
                for size in self.args.sizes:
                    for sends in (d == "sends" for d in self.args.directions):
                        row = Row(loss, size, "stack sends" if sends else "stack receives")
                        rows.append(row)
                        for i in range(self.args.runs):
                            for kernel in (True, False):
                                sample = self.transfer(kernel, sends, size)
                                (row.kernel if kernel else row.stack).append(sample)
                                who = "kernel" if kernel else "stack"
                                took = f"{sample.seconds:.2f} s" if sample.seconds is not None else "FAILED"
                                stall = f"{sample.stall:.2f}" if sample.stall is not None else "-"
                                print(f"  .. {loss:g}% {size_label(size)} {row.direction} run {i + 1} {who}: "
                                      f"{took} stall {stall} s {sample.error}", file=sys.stderr, flush=True)
            self.set_loss(0)
        finally:
            self.stop_daemon()
            if self.args.events and self.events_path.exists():
                shutil.copyfile(self.events_path, self.args.events)
        self.stack_retransmissions(rows)
        return rows


def stack_cc_for(choice: str, kernel_cc: str) -> str:
    """The stack's algorithm for `--cc choice`: "same" is the kernel's, so that the
    yardstick runs the same kind of controller (reno is the stack's newreno); one the
    stack lacks gives newreno, the daemon's default."""
    if choice != "same":
        return choice
    name = "newreno" if kernel_cc == "reno" else kernel_cc
    return name if name in ALGORITHMS else "newreno"


def build_parser() -> argparse.ArgumentParser:
    from stack.cli import _Parser

    parser = _Parser(prog="tcplab bench", description=__doc__.split("\n")[0])
    parser.add_argument("--loss", required=True, type=parse_losses, metavar="P[,P...]",
                        help="random loss each way, in percent, e.g. 1,5,20")
    parser.add_argument("--sizes", default=parse_sizes("1M,10M"), type=parse_sizes, metavar="N[,N...]",
                        help="bytes per transfer (default 1M,10M; K and M are powers of 1000)")
    parser.add_argument("--runs", default=3, type=int, metavar="N",
                        help=f"transfers per row, each through stack and kernel (default 3, at most {MAX_RUNS})")
    parser.add_argument("--timeout", default=120.0, type=float, metavar="SECONDS",
                        help="bound on each transfer (default 120)")
    parser.add_argument("--cc", default="same", choices=["same", *ALGORITHMS],
                        help="the stack's congestion control (default 'same': the kernel's, when the "
                        "stack has it -- reno is newreno -- else newreno)")
    parser.add_argument("--directions", default=["sends", "receives"], type=parse_directions,
                        metavar="D[,D]", help="which rows: sends (the stack sends), receives, or both "
                        "(default sends,receives)")
    parser.add_argument("--min-rto", type=float, metavar="SECONDS",
                        help="the stack's minimum RTO (default: the daemon's, 0.2 s as Linux; "
                        "the kernel's stays 0.2 s)")
    parser.add_argument("--kernel-cc", metavar="NAME",
                        help="the kernel's congestion control in both namespaces (default: the "
                        "namespace's, which new namespaces inherit from the host: check it, a host "
                        "on bbr makes loss cost the kernel almost nothing)")
    parser.add_argument("--json", metavar="FILE", help="write the rows and every sample as JSON")
    parser.add_argument("--events", metavar="FILE",
                        help="keep the stack's event log (for `tcplab plot`; connections by port)")
    parser.add_argument("--pcap", metavar="FILE", help="keep a pcap of every packet of the stack")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.runs <= MAX_RUNS:
        print(f"tcplab bench: error: --runs must be 1..{MAX_RUNS}", file=sys.stderr)
        return 2
    if not 1 <= args.timeout <= 600:
        print("tcplab bench: error: --timeout must be 1..600 seconds", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("tcplab bench: error: needs root (it creates network namespaces)", file=sys.stderr)
        return 1
    if shutil.which("nft") is None:
        print("tcplab bench: error: --loss needs nftables (the nft command)", file=sys.stderr)
        return 1
    bench = LossBench(args)
    print(f"tcplab bench --loss: namespaces {bench.stack_ns} / {bench.peer_ns}, {args.runs} run(s) per row, "
          f"each bounded by {args.timeout:g} s", file=sys.stderr)
    try:
        bench.setup()
        print(f"tcplab bench --loss: stack cc {bench.stack_cc}, kernel cc {bench.kernel_cc}", file=sys.stderr)
        rows = bench.run()
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"tcplab bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        bench.teardown()
    summary = [summarize(r, args.timeout) for r in rows]
    print(format_table(summary))
    for way, (seen, dropped) in sorted(bench.drops.items()):
        print(f"nftables {way}: {dropped} of {seen} TCP packets dropped "
              f"({100 * dropped / max(seen, 1):.1f}%)")
    if args.json:
        Path(args.json).write_text(json.dumps({"timeout": args.timeout, "cc": bench.stack_cc, "kernel_cc": bench.kernel_cc,
                                               "rows": summary,
                                               "drops": bench.drops}, indent=1))
    return 0


def _helper(argv: list[str]) -> int:
    """The programs the benchmark runs inside its namespaces."""
    cmd, *rest = argv
    if cmd == "offloads-off":
        offloads_off(rest)
    elif cmd == "serve":
        serve()
    elif cmd == "client":
        mode, host, port, n, timeout = rest
        fn = client_upload if mode == "upload" else client_download
        print(json.dumps(fn(host, int(port), int(n), float(timeout))))
    else:
        print(f"unknown helper {cmd}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_helper(sys.argv[1:]))
