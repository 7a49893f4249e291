"""Step tests of the two slots that talk to the operating system: the lab 01 TUN reader
(a Python module) and the lab 09 echo server and client (C programs).

The TUN test that opens a real device runs only as root, in a private network
namespace (``unshare --net``) so it never touches the machine's interfaces. The C
programs are built with gcc and run against the kernel's TCP on 127.0.0.1; the lab then
runs them on the stack under the shim.
"""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from stack.labkit.steps import StepFailed, Steps, Suite

# -------------------------------------------------------------------- 01: the TUN reader
TUN = Suite("tun")


def _ipv4(proto: int, payload: bytes, src: str = "10.0.0.1", dst: str = "10.0.0.2",
          options: bytes = b"") -> bytes:
    ihl = (20 + len(options)) // 4
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(options) + len(payload),
                         0x1234, 0x4000, 64, proto, 0, socket.inet_aton(src),
                         socket.inet_aton(dst))
    return header + options + payload


ICMP_ECHO = _ipv4(1, struct.pack("!BBHHH", 8, 0, 0, 7, 1) + bytes(56))
TCP_SYN = _ipv4(6, struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 0xA0, 0x02, 65535, 0, 0) + bytes(20))
UDP_DATAGRAM = _ipv4(17, struct.pack("!HHHH", 5353, 7, 13, 0) + b"hello")
GRE_PACKET = _ipv4(47, bytes(20), src="192.168.1.1", dst="192.168.1.2")
IPV6_PACKET = bytes.fromhex("6000000000083aff") + bytes(16) + bytes(16) + bytes(8)
WITH_OPTIONS = _ipv4(17, struct.pack("!HHHH", 1234, 9, 8, 0), options=b"\x01\x01\x01\x00")


@TUN.scenario("describe an ICMP echo request (ping)")
def _(s: Steps, m: Any) -> None:
    s.expect("describe(ICMP_ECHO)", lambda: m.describe(ICMP_ECHO), "10.0.0.1 > 10.0.0.2 ICMP len 84")


@TUN.scenario("describe a TCP SYN: addresses with ports")
def _(s: Steps, m: Any) -> None:
    s.expect("describe(TCP_SYN)", lambda: m.describe(TCP_SYN),
             "10.0.0.1:40000 > 10.0.0.2:80 TCP len 60")


@TUN.scenario("describe a UDP datagram")
def _(s: Steps, m: Any) -> None:
    s.expect("describe(UDP_DATAGRAM)", lambda: m.describe(UDP_DATAGRAM),
             "10.0.0.1:5353 > 10.0.0.2:7 UDP len 33")


@TUN.scenario("describe another protocol by number")
def _(s: Steps, m: Any) -> None:
    s.expect("describe(GRE_PACKET)", lambda: m.describe(GRE_PACKET),
             "192.168.1.1 > 192.168.1.2 proto 47 len 40")


@TUN.scenario("IP options: the ports come after IHL * 4 bytes, not after 20")
def _(s: Steps, m: Any) -> None:
    s.expect("describe(WITH_OPTIONS)", lambda: m.describe(WITH_OPTIONS),
             "10.0.0.1:1234 > 10.0.0.2:9 UDP len 32")


@TUN.scenario("an IPv6 packet (the kernel sends some) is not IPv4")
def _(s: Steps, m: Any) -> None:
    s.check("describe(IPV6_PACKET)", lambda: m.describe(IPV6_PACKET),
            lambda v: isinstance(v, str) and v.startswith("not IPv4") and "version 6" in v,
            "starts with 'not IPv4' and says 'version 6'")


_TUN_CHILD = r"""
import importlib.util, os, select, socket, subprocess, sys
spec = importlib.util.spec_from_file_location("learner_tun", sys.argv[1])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
fd = m.open_tun("lab01test")
print("STEP open_tun('lab01test') returned", repr(fd), flush=True)
assert isinstance(fd, int), "open_tun must return the file descriptor (an int)"
for cmd in ("ip addr add 10.9.1.1/24 dev lab01test", "ip link set lab01test up"):
    subprocess.run(cmd.split(), check=True)
print("STEP ip addr add 10.9.1.1/24 dev lab01test; ip link set lab01test up", flush=True)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(b"hello tun", ("10.9.1.2", 9))
print("STEP sent a UDP datagram from 10.9.1.1 to 10.9.1.2:9 (routed to lab01test)", flush=True)
for _ in range(50):
    ready, _, _ = select.select([fd], [], [], 3)
    if not ready:
        print("FAIL nothing could be read from the fd within 3 s", flush=True); sys.exit(1)
    packet = os.read(fd, 65536)
    if packet[:1] in (b"\x00",) and packet[2:4] == b"\x08\x00":
        print("FAIL the packet starts with 4 extra bytes (%s): set IFF_NO_PI" % packet[:4].hex(), flush=True)
        sys.exit(1)
    if packet[0] >> 4 == 4 and packet[9] == 17:
        print("PACKET", packet.hex(), flush=True)
        print("DESCRIBE", m.describe(packet), flush=True)
        sys.exit(0)
print("FAIL no IPv4 UDP packet among 50 reads", flush=True); sys.exit(1)
"""


@TUN.scenario("open_tun creates a real TUN device whose fd yields IP packets (root)")
def _(s: Steps, m: Any) -> None:
    path = getattr(m, "__file__", None)
    if os.geteuid() != 0 or shutil.which("unshare") is None or not os.path.exists("/dev/net/tun"):
        s.note("skipped: needs root, unshare and /dev/net/tun (run it in the stack container)")
        return
    if path is None:
        raise StepFailed("locate the module", "the module has no __file__")
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        s.note("skipped: unshare --net is not allowed here (a container without "
               "CAP_SYS_ADMIN); try your reader by hand as the README shows")
        return
    s.note("in a private network namespace (unshare --net):")
    try:
        cp = subprocess.run(["unshare", "--net", sys.executable, "-c", _TUN_CHILD, path],
                            capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise StepFailed("the TUN test", "did not finish within 30 s") from None
    describe = ""
    for line in cp.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "STEP":
            s.done.append(rest)
        elif kind == "FAIL":
            raise StepFailed("read a packet from the fd", rest)
        elif kind == "DESCRIBE":
            describe = rest
    if cp.returncode != 0:
        tail = (cp.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise StepFailed("the TUN test", f"exited with {cp.returncode}: {tail}")
    s.done.append("read the datagram from the fd")
    if not (describe.startswith("10.9.1.1:") and describe.endswith(" > 10.9.1.2:9 UDP len 37")):
        raise StepFailed("describe(the packet read)", f"got {describe!r}, expected "
                         "'10.9.1.1:<port> > 10.9.1.2:9 UDP len 37'")
    s.done.append(f"describe(the packet read) -> {describe!r}")


# --------------------------------------------------------------- 09: the C echo programs
ECHO = Suite("echo")
_BUILDS: dict[tuple[str, float], Path] = {}


def _build(s: Steps, folder: Path, name: str) -> Path:
    source = folder / f"{name}.c"
    if not source.is_file():
        raise StepFailed(f"gcc {source}", "no such file")
    key = (str(source.resolve()), source.stat().st_mtime)
    if key in _BUILDS and _BUILDS[key].exists():
        s.done.append(f"gcc -Wall -O1 -o {name} {source.name}  (built already)")
        return _BUILDS[key]
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise StepFailed(f"gcc {source.name}", "no C compiler (apt install gcc)")
    out = Path(tempfile.mkdtemp(prefix="tcplab-lab09-")) / name
    cp = subprocess.run([gcc, "-Wall", "-O1", "-o", str(out), str(source)],
                        capture_output=True, text=True, timeout=120)
    text = f"gcc -Wall -O1 -o {name} {source.name}"
    if cp.returncode != 0:
        raise StepFailed(text, "compilation failed:\n" + "\n".join(
            "                  " + line for line in cp.stderr.strip().splitlines()[-8:]))
    s.done.append(text)
    _BUILDS[key] = out
    return out


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Server:
    """The learner's server running on a free port."""

    def __init__(self, s: Steps, binary: Path) -> None:
        self.port = _free_port()
        text = f"./echo_server {self.port}"
        self.proc = subprocess.Popen([str(binary), str(self.port)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 5
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                break
            if self.proc.poll() is not None:
                break
        if b"listening" not in line:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(5)
            err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
            self.stop()
            raise StepFailed(text, f"printed {line!r} instead of 'listening on port {self.port}'"
                             + (f"; stderr: {err[-200:]}" if err else ""))
        s.done.append(f"{text}  # printed {line.decode(errors='replace').strip()!r}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def _talk(port: int, data: bytes, timeout: float = 20) -> bytes:
    """Send ``data`` to 127.0.0.1:port while reading; half-close; read to EOF."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(timeout)
    got = bytearray()
    problem: list[BaseException] = []

    def reader() -> None:
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                got.extend(chunk)
        except OSError as exc:
            problem.append(exc)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    thread.join(timeout)
    sock.close()
    if thread.is_alive():
        raise TimeoutError(f"no EOF from the server within {timeout} s "
                           f"({len(got)} of {len(data)} bytes back)")
    if problem:
        raise problem[0]
    return bytes(got)


class _KernelEcho:
    """A Python echo server for the client tests: echoes until EOF, then closes."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = int(self.sock.getsockname()[1])
        self.received = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(30)
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    self.received += len(data)
                    conn.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


def _run_client(binary: Path, port: int, data: bytes, timeout: float = 20) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(binary), "127.0.0.1", str(port)], input=data,
                          capture_output=True, timeout=timeout)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@ECHO.scenario("your server listens on PORT and echoes a line")
def _(s: Steps, folder: Path) -> None:
    server = _Server(s, _build(s, folder, "echo_server"))
    try:
        s.expect("a client sends b'hello tcplab\\n' and half-closes; it reads back",
                 lambda: _talk(server.port, b"hello tcplab\n", 10), b"hello tcplab\n")
    finally:
        server.stop()


@ECHO.scenario("your server echoes 1 MB byte-exact and closes after the client's EOF")
def _(s: Steps, folder: Path) -> None:
    server = _Server(s, _build(s, folder, "echo_server"))
    data = os.urandom(1_000_000)
    try:
        s.expect("a client sends 1 MB (reading at the same time), half-closes, reads to EOF",
                 lambda: _sha(_talk(server.port, data)), _sha(data))
    finally:
        server.stop()


@ECHO.scenario("your server serves a second client after the first")
def _(s: Steps, folder: Path) -> None:
    server = _Server(s, _build(s, folder, "echo_server"))
    try:
        s.expect("client 1 sends b'one'", lambda: _talk(server.port, b"one", 10), b"one")
        s.expect("client 2 sends b'two'", lambda: _talk(server.port, b"two", 10), b"two")
    finally:
        server.stop()


@ECHO.scenario("your client sends stdin and prints the echo")
def _(s: Steps, folder: Path) -> None:
    binary = _build(s, folder, "echo_client")
    peer = _KernelEcho()
    try:
        cp = s.do(f"printf 'hello tcplab\\n' | ./echo_client 127.0.0.1 {peer.port}",
                  lambda: _run_client(binary, peer.port, b"hello tcplab\n", 10))
        s.expect("its stdout", lambda: cp.stdout, b"hello tcplab\n")
        s.expect("its exit status", lambda: cp.returncode, 0)
    finally:
        peer.close()


@ECHO.scenario("your client moves 1 MB byte-exact (it must read while it writes)")
def _(s: Steps, folder: Path) -> None:
    binary = _build(s, folder, "echo_client")
    peer = _KernelEcho()
    data = os.urandom(1_000_000)
    try:
        try:
            cp = s.do(f"./echo_client 127.0.0.1 {peer.port} < <1 MB of random bytes>",
                      lambda: _run_client(binary, peer.port, data, 20))
        except StepFailed as exc:
            if "TimeoutExpired" in exc.problem:
                raise StepFailed(exc.step, "still running after 20 s: a deadlock? Both sides "
                                 "wait to write when nobody reads (see the README)") from None
            raise
        s.expect("sha256 of its stdout", lambda: _sha(cp.stdout), _sha(data))
        s.expect("its exit status", lambda: cp.returncode, 0)
    finally:
        peer.close()


@ECHO.scenario("your client with an empty stdin half-closes at once and exits 0")
def _(s: Steps, folder: Path) -> None:
    binary = _build(s, folder, "echo_client")
    peer = _KernelEcho()
    try:
        cp = s.do(f"./echo_client 127.0.0.1 {peer.port} < /dev/null",
                  lambda: _run_client(binary, peer.port, b"", 10))
        s.expect("its stdout", lambda: cp.stdout, b"")
        s.expect("its exit status", lambda: cp.returncode, 0)
    finally:
        peer.close()


@ECHO.scenario("your client exits 0 after an echo, non-zero with a message when refused")
def _(s: Steps, folder: Path) -> None:
    binary = _build(s, folder, "echo_client")
    peer = _KernelEcho()
    try:
        cp = s.do(f"printf x | ./echo_client 127.0.0.1 {peer.port}",
                  lambda: _run_client(binary, peer.port, b"x", 10))
        s.expect("its exit status", lambda: cp.returncode, 0)
    finally:
        peer.close()
    port = _free_port()
    cp = s.do(f"printf x | ./echo_client 127.0.0.1 {port}  # nobody listens there",
              lambda: _run_client(binary, port, b"x", 10))
    s.check("its exit status", lambda: cp.returncode, lambda v: v != 0, "not 0")
    s.check("its stderr", lambda: cp.stderr.decode(errors="replace").strip(), bool,
            "says what went wrong (perror)")


@ECHO.scenario("your client and your server together: 200 kB")
def _(s: Steps, folder: Path) -> None:
    client = _build(s, folder, "echo_client")
    server = _Server(s, _build(s, folder, "echo_server"))
    data = os.urandom(200_000)
    try:
        cp = s.do(f"./echo_client 127.0.0.1 {server.port} < <200 kB>",
                  lambda: _run_client(client, server.port, data, 20))
        s.expect("sha256 of the client's stdout", lambda: _sha(cp.stdout), _sha(data))
        s.expect("the client's exit status", lambda: cp.returncode, 0)
    finally:
        server.stop()
