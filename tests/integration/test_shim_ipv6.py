"""Native IPv6 through the shim (issue 13): AF_INET6 sockets of programs under
`tcplab run` are the stack's AF_INET6 sockets (protocol version 4, family-10 addresses).

The stack owns fd00:0:0:1::2 (and 10.0.0.2) behind mytun, the kernel side of the TUN is
fd00:0:0:1::1 in the stack namespace, and the peer namespace is fd00:0:0:2::2 (and
10.1.0.2), routed through the stack namespace. Transfers are checked by SHA-256; every
address a program gets back is printed in full by shim/tests/dualstack and compared
field by field; errno values are compared with what the kernel gives the same program.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from netns import PEER_ADDR6, STACK_ADDR, STACK_ADDR6, TUN_KERNEL_ADDR6, popen_in, run_in
from shim_fixtures import (
    EXAMPLES,
    MB,
    Shim,
    data_dir,
    sh,
    sha256_file,
    shim,
    shim_built,
)

pytestmark = pytest.mark.root

FIXTURES = (data_dir, sh, shim, shim_built)  # used by name as test arguments
TESTS_DIR = EXAMPLES.parent / "tests"
DUALSTACK = str(TESTS_DIR / "dualstack")
PEER = "10.1.0.2"

# A kernel TCP server: accept one connection, say who it came from, echo what it reads.
ECHO_PEER = """
import socket, sys
l = socket.socket(socket.AF_INET6)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2])))
l.listen(1)
print("ready", flush=True)
c, peer = l.accept()
print("peer", peer[0], flush=True)
c.sendall(c.recv(100))
c.close()
"""


@pytest.fixture(autouse=True)
def _needs_ipv6(sh: Shim) -> None:
    if not sh.topology.ipv6:
        pytest.skip("no IPv6 in these namespaces")


def py(code: str) -> list[str]:
    return ["python3", "-c", textwrap.dedent(code)]


def _fields(out: str, what: str) -> dict[str, str]:
    """The key/value words of the line starting with `what` in dualstack's output."""
    for line in out.splitlines():
        words = line.split()
        if words and words[0] == what:
            return dict(zip(words[1::2], words[2::2], strict=False))
    raise AssertionError(f"no {what!r} line in {out!r}")


def _name(addr: str, port: int | str) -> dict[str, str]:
    return {"family": "10", "len": "28", "addr": addr, "port": str(port), "flowinfo": "0",
            "scope": "0"}


# --- clients under the shim ----------------------------------------------------------


def test_curl6_downloads_20mb_through_the_stack(sh: Shim, data_dir: Path,
                                                tmp_path: Path) -> None:
    """`curl -6` under the shim to a kernel HTTP server at [fd00:0:0:2::2]: its local
    address is the stack's (so it went through the stack), the body byte-exact."""
    port = 8086
    server = sh.peer_popen(["python3", "-m", "http.server", str(port), "--bind", "::",
                            "--directory", str(data_dir)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sh.wait_peer_listener(port)
    out = tmp_path / "curl6.bin"
    cp = sh.run(["curl", "-6", "-sS", "--max-time", "100", "-o", str(out), "-w",
                 "%{local_ip} %{http_code}", f"http://[{PEER_ADDR6}]:{port}/big.bin"],
                timeout=120)
    assert cp.stdout.split() == [STACK_ADDR6, "200"], cp.stdout + cp.stderr
    assert sha256_file(out) == sha256_file(data_dir / "big.bin")
    server.kill()


@pytest.mark.parametrize("how", ["connect", "gai"])
def test_c_client_to_the_tun_kernel_side(sh: Shim, how: str) -> None:
    """A C AF_INET6 client connecting to [fd00:0:0:1::1] (the kernel, in the stack's
    namespace), with the address as given or from getaddrinfo(AF_INET6), goes through
    the stack: the kernel sees the stack's address as the peer, and getsockname and
    getpeername give sockaddr_in6 with the native addresses."""
    port = 6620 if how == "connect" else 6626
    server = popen_in(sh.topology.stack_ns, ["python3", "-c", ECHO_PEER, TUN_KERNEL_ADDR6,
                                             str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        cp = sh.run([DUALSTACK, how, TUN_KERNEL_ADDR6, str(port)], timeout=30)
        assert "connected domain 10" in cp.stdout, cp.stdout + cp.stderr
        if how == "gai":
            assert _fields(cp.stdout, "resolved") == _name(TUN_KERNEL_ADDR6, port)
        assert _fields(cp.stdout, "peername") == _name(TUN_KERNEL_ADDR6, port)
        local = _fields(cp.stdout, "sockname")
        assert local == _name(STACK_ADDR6, local["port"]), cp.stdout
        assert cp.stdout.splitlines()[-1] == "reply ping"
        out, _ = server.communicate(timeout=10)
        assert out.split()[-2:] == ["peer", STACK_ADDR6], out  # through the stack
    finally:
        if server.poll() is None:
            server.kill()


def test_native_v6_refused_comes_back_as_econnrefused(sh: Shim) -> None:
    """Nothing listens: the kernel's RST reaches the program as ECONNREFUSED, and the
    shim says nothing on stderr (native IPv6 is no longer refused by the shim)."""
    cp = sh.run([DUALSTACK, "connect", TUN_KERNEL_ADDR6, "6629"], timeout=30, check=False)
    assert cp.returncode == 3 and cp.stdout.strip() == "error ECONNREFUSED", cp.stdout
    assert not [x for x in cp.stderr.splitlines() if x.startswith("tcplab:")], cp.stderr


# --- servers under the shim ----------------------------------------------------------


def test_dual_stack_http_server_over_both_families(sh: Shim, data_dir: Path,
                                                   tmp_path: Path) -> None:
    """`python3 -m http.server --bind ::` under the shim (an AF_INET6 socket with
    IPV6_V6ONLY=0): kernel `curl -6` and `curl -4` from the peer, in the same run, both
    byte-exact."""
    port = 8087
    server = sh.popen(["python3", "-m", "http.server", str(port), "--bind", "::",
                       "--directory", str(data_dir)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sh.wait_shim_listener(port)
    want = sha256_file(data_dir / "mid.bin")
    for flag, url in (("-6", f"http://[{STACK_ADDR6}]:{port}/mid.bin"),
                      ("-4", f"http://{STACK_ADDR}:{port}/mid.bin"),
                      ("-6", f"http://[{STACK_ADDR6}]:{port}/mid.bin")):
        out = tmp_path / f"mid{flag}.bin"
        cp = sh.peer(["curl", flag, "-sS", "--max-time", "60", "-o", str(out), "-w",
                      "%{remote_ip} %{http_code}", url], timeout=90)
        assert cp.stdout.split() == [STACK_ADDR6 if flag == "-6" else STACK_ADDR, "200"], \
            cp.stdout + cp.stderr
        assert sha256_file(out) == want, flag
    server.kill()


def test_v6_listener_names_for_a_native_peer(sh: Shim) -> None:
    """A dual-stack [::] listener accepting a kernel IPv6 client (nc -6 would do the
    same): accept, getpeername and getsockname give the native addresses in full."""
    port = 6621
    server = sh.popen([DUALSTACK, "listen", str(port), "0"], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    assert server.stdout.readline().split() == ["v6only", "0", "domain", "10"]
    assert _fields(server.stdout.readline(), "sockname") == _name("::", port)
    assert server.stdout.readline().split() == ["listening", str(port)]
    cp = sh.peer(["bash", "-c", f"echo hi6 | nc -6 -N -w 10 {STACK_ADDR6} {port}"],
                 timeout=30)
    assert cp.stdout.strip() == "hi6", cp.stdout + cp.stderr
    out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    accepted = _fields(out, "accepted")
    assert accepted == _name(PEER_ADDR6, accepted["port"]), out
    assert _fields(out, "peername") == accepted
    assert _fields(out, "sockname") == _name(STACK_ADDR6, port)


def test_v6only_listener_stays_on_the_stack_for_ipv6_only(sh: Shim) -> None:
    """IPV6_V6ONLY=1 on [::]: the listener is the stack's (tcplab ss lists it), an IPv4
    client is refused (by the stack's RST) and an IPv6 one is served."""
    port = 6622
    server = sh.popen([DUALSTACK, "listen", str(port), "1"], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    assert server.stdout.readline().split()[:2] == ["v6only", "1"]
    server.stdout.readline()
    assert server.stdout.readline().split() == ["listening", str(port)]
    sh.wait_shim_listener(port)  # on the stack, not handed to the kernel
    cp = sh.peer(py(f"""
        import socket
        for addr in ("{STACK_ADDR}", "{STACK_ADDR6}"):
            try:
                s = socket.create_connection((addr, {port}), timeout=10)
                s.sendall(b"v6only")
                print(addr, s.recv(100).decode())
            except ConnectionRefusedError:
                print(addr, "refused")
    """), timeout=30)
    assert cp.stdout.splitlines() == [f"{STACK_ADDR} refused", f"{STACK_ADDR6} v6only"]
    out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    assert _fields(out, "accepted")["addr"] == PEER_ADDR6


def test_v6only_errno_values_as_the_kernel(sh: Shim) -> None:
    """The same program, on the stack and on the kernel: IPV6_V6ONLY refuses v4-mapped
    addresses (connect and sendto ENETUNREACH, bind EINVAL), cannot change once bound
    (EINVAL), and is ENOPROTOOPT on an AF_INET socket."""
    want = ["connect-mapped ENETUNREACH", "sendto-mapped ENETUNREACH", "bind-mapped EINVAL",
            "bind-any ok v6only-after-bind EINVAL", "v6only-reads 0", "inet-v6only ENOPROTOOPT"]
    shimmed = sh.run([DUALSTACK, "v6only-errors", PEER], timeout=30)
    kernel = run_in(sh.topology.stack_ns, [DUALSTACK, "v6only-errors", PEER], timeout=30)
    assert kernel.stdout.splitlines() == want, kernel.stdout
    assert shimmed.stdout.splitlines() == want, shimmed.stdout + shimmed.stderr


# --- UDP -------------------------------------------------------------------------------


def test_udp6_server_recvfrom_gives_the_native_source(sh: Shim) -> None:
    """A [::] UDP server under the shim (IPV6_RECVPKTINFO set, as DNS servers do) hears a
    kernel IPv6 client: recvfrom's address is the client's, in full; the answer goes
    back from the stack's address and port."""
    port = 6623
    server = sh.popen([DUALSTACK, "udp", str(port)], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    head = [server.stdout.readline().strip() for _ in range(4)]
    assert head[2:] == ["recvpktinfo ok", f"listening {port}"], head
    cp = sh.peer(py(f"""
        import socket
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.settimeout(10)
        s.bind(("::", 40623))
        s.sendto(b"dgram6", ("{STACK_ADDR6}", {port}))
        data, src = s.recvfrom(100)
        print(data.decode(), src[0], src[1])
    """), timeout=30)
    assert cp.stdout.split() == ["dgram6", STACK_ADDR6, str(port)]
    out, _ = server.communicate(timeout=10)
    assert server.returncode == 0
    assert _fields(out, "from") == _name(PEER_ADDR6, 40623)


def test_udp6_client_recvfrom_and_socat(sh: Shim) -> None:
    """An AF_INET6 UDP client under the shim: sendto a kernel echo server at
    [fd00:0:0:2::2], recvfrom gives the server's address; then socat UDP6 (recvmsg and
    read paths) round-trips a datagram through the same kind of socket."""
    port = 6624
    echo = sh.peer_popen(py(f"""
        import socket
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::", {port}))
        print("ready", flush=True)
        for _ in range(2):
            data, src = s.recvfrom(100)
            s.sendto(data + b" " + src[0].encode(), src)
    """), stdout=subprocess.PIPE, text=True)
    assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
    cp = sh.run([DUALSTACK, "send6", PEER_ADDR6, str(port)], timeout=30)
    assert _fields(cp.stdout, "from") == _name(PEER_ADDR6, port), cp.stdout + cp.stderr
    assert cp.stdout.splitlines()[-1] == f"reply dgram6 {STACK_ADDR6}"
    assert _fields(cp.stdout, "sockname")["addr"] == "::"  # unconnected, as Linux
    cp = sh.run(["bash", "-c", f"echo -n sock6 | socat -t 5 - UDP6:[{PEER_ADDR6}]:{port}"],
                timeout=30)
    assert cp.stdout == f"sock6 {STACK_ADDR6}", cp.stdout + cp.stderr
    assert echo.wait(10) == 0


def test_iperf3_over_ipv6_both_directions(sh: Shim) -> None:
    """`iperf3 -s` under the shim, kernel `iperf3 -6 -c` (and -R) from the peer."""
    for reverse in (False, True):
        server = sh.popen(["iperf3", "-s", "-1", "-p", "5306"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        sh.wait_shim_listener(5306)
        cp = sh.peer(["iperf3", "-6", "-c", STACK_ADDR6, "-p", "5306", "-t", "3", "-J",
                      *(["-R"] if reverse else [])], timeout=60)
        report = json.loads(cp.stdout)
        assert "error" not in report, report.get("error")
        sent = report["end"]["sum_sent"]["bytes"]
        received = report["end"]["sum_received"]["bytes"]
        assert received > 5 * MB and 0.9 * sent <= received <= sent, (sent, received)
        assert server.wait(20) == 0


def test_ipv6_paths_under_asan(sh: Shim) -> None:
    """The new shim paths (family-10 addresses both ways, IPv6 sources from PKTINFO
    files, V6ONLY forwarded) under AddressSanitizer and UBSan: a native connect to the
    TUN's kernel side, the V6ONLY errno program, and a UDP6 round trip."""
    libasan = subprocess.run(["cc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
    if not Path(libasan).is_absolute() or not Path(libasan).exists():
        pytest.skip("libasan is not installed")
    subprocess.run(["make", "-s", "-C", str(EXAMPLES.parent), "libsocketoverride-asan.so"],
                   check=True, timeout=300)
    env = {**os.environ, "TCPLAB_SOCKET": sh.socket,
           "LD_PRELOAD": f"{libasan} {EXAMPLES.parent / 'libsocketoverride-asan.so'}",
           "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=99"}
    port = 6625
    kernel = popen_in(sh.topology.stack_ns, ["python3", "-c", ECHO_PEER, TUN_KERNEL_ADDR6,
                                             str(port)], stdout=subprocess.PIPE, text=True)
    echo = sh.peer_popen(py(f"""
        import socket
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::", {port}))
        print("ready", flush=True)
        data, src = s.recvfrom(100)
        s.sendto(data, src)
    """), stdout=subprocess.PIPE, text=True)
    try:
        assert kernel.stdout is not None and kernel.stdout.readline().strip() == "ready"
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        for argv, last in (([DUALSTACK, "connect", TUN_KERNEL_ADDR6, str(port)], "reply ping"),
                           ([DUALSTACK, "v6only-errors", PEER], "inet-v6only ENOPROTOOPT"),
                           ([DUALSTACK, "send6", PEER_ADDR6, str(port)], "reply dgram6")):
            cp = run_in(sh.topology.stack_ns, argv, timeout=60, check=False, env=env)
            assert cp.returncode == 0 and "Sanitizer" not in cp.stderr, cp.stdout + cp.stderr
            assert cp.stdout.splitlines()[-1] == last, cp.stdout
    finally:
        for proc in (kernel, echo):
            if proc.poll() is None:
                proc.kill()
