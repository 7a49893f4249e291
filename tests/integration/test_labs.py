"""Every lab's check passes against the reference stack (root: netns + TUN).

For each lab: start the daemon in the stack namespace (for the labs with a swap-in slot,
through ``python -m stack.labkit stack --swap SLOT=<the reference file>`` so the swap
machinery itself is exercised), do what the lab's README tells the learner to do from
the peer namespace (the compose lab's ``docker compose exec peer ...`` commands, with
10.1.0.2 as the peer), stop the daemon (which flushes the pcap and the event log) and
run ``labs/NN-*/check --pcap ... --events ...`` on what it wrote.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import (
    REPO_ROOT,
    STACK_ADDR,
    StackDaemon,
    Topology,
    popen_in,
    python_env,
    run_in,
)

pytestmark = pytest.mark.root

LABS = REPO_ROOT / "labs"


def lab_dir(nn: str) -> Path:
    found = sorted(LABS.glob(f"{nn}-*"))
    assert found, f"no labs/{nn}-*"
    return found[0]


class LabRun:
    """One daemon run of a lab, its output folder and the peer's commands."""

    def __init__(self, topology: Topology, folder: Path) -> None:
        self.topology = topology
        self.folder = folder
        self.daemon: StackDaemon | None = None

    def start(self, *args: str, swap: dict[str, Path] | None = None) -> StackDaemon:
        self.folder.mkdir(parents=True, exist_ok=True)
        socket_path = Path(tempfile.mkdtemp(prefix="tl-lab-")) / "stack.sock"
        if swap:
            prefix = [sys.executable, "-m", "stack.labkit", "stack"]
            for slot, path in swap.items():
                prefix += ["--swap", f"{slot}={path}"]
        else:
            prefix = [sys.executable, "-m", "stack.cli", "stack"]
        argv = [*prefix, "--socket", str(socket_path), "--pcap", str(self.pcap),
                "--events", str(self.events), *args]
        proc = popen_in(self.topology.stack_ns, argv, cwd=str(REPO_ROOT), env=python_env(),
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)
        daemon = StackDaemon(self.topology, proc, self.folder, socket_path, argv)
        daemon._reader.start()
        deadline = time.monotonic() + StackDaemon.READY_TIMEOUT
        while not daemon._ready.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                daemon.kill()
                raise AssertionError(f"the daemon did not start: {argv}\n{daemon.stderr}")
        self.daemon = daemon
        if swap:
            for slot in swap:
                assert f"swap-in: {slot} from" in daemon.stderr, daemon.stderr
        return daemon

    @property
    def pcap(self) -> Path:
        return self.folder / "stack.pcap"

    @property
    def events(self) -> Path:
        return self.folder / "events.jsonl"

    def peer(self, command: str, timeout: float = 60, check: bool = True) -> str:
        cp = run_in(self.topology.peer_ns, ["sh", "-c", command], timeout=timeout, check=check,
                    cwd=str(REPO_ROOT), env=python_env())
        return str(cp.stdout)

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.running:
            self.daemon.stop()

    def check(self, nn: str, *extra: str) -> str:
        self.stop()
        argv = [sys.executable, str(lab_dir(nn) / "check"), *extra]
        if not any(a.startswith("--newreno") for a in extra):
            argv += ["--pcap", str(self.pcap), "--events", str(self.events)]
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                            env=python_env(), cwd=str(REPO_ROOT))
        print(cp.stdout)
        assert cp.returncode == 0, f"labs/{nn} check failed:\n{cp.stdout}\n{cp.stderr}"
        return cp.stdout


@pytest.fixture
def lab(topology: Topology, tmp_path: Path) -> Iterator[LabRun]:
    run = LabRun(topology, tmp_path / "out")
    try:
        yield run
    finally:
        if run.daemon is not None and run.daemon.running:
            run.daemon.stop(check=False)


def test_lab01_ping_and_the_reference_reader(lab: LabRun) -> None:
    lab.start()
    out = lab.peer(f"ping -c 3 -i 0.2 -W 2 {STACK_ADDR}")
    assert "3 received" in out
    # step 4: the reader on tun1 (here in the stack's namespace), its output kept as
    # `tee /out/tunread.txt` keeps it in the lab
    ns = lab.topology.stack_ns
    reader_log = lab.folder / "tunread.txt"
    with open(reader_log, "w") as log:
        reader = popen_in(ns, [sys.executable, "-u", str(REPO_ROOT / "stack/labkit/reference/tunread.py"),
                               "tun1"], cwd=str(REPO_ROOT), env=python_env(), stdout=log,
                          stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while run_in(ns, ["ip", "link", "show", "tun1"], check=False).returncode != 0:
            assert reader.poll() is None and time.monotonic() < deadline, "no tun1"
            time.sleep(0.05)
        run_in(ns, ["sh", "-c", "ip addr add 10.0.7.1/24 dev tun1 && ip link set tun1 up"])
        run_in(ns, ["ping", "-c", "3", "-i", "0.2", "-W", "1", "10.0.7.2"], check=False)
        run_in(ns, ["sh", "-c", "printf hi | nc -u -w1 10.0.7.2 9"], check=False)
        while "UDP len 30" not in reader_log.read_text():
            assert time.monotonic() < deadline, reader_log.read_text()
            time.sleep(0.05)
    finally:
        reader.terminate()
        reader.wait(10)
    lab.check("01")


def test_lab02_checksums_with_the_swapped_reference(lab: LabRun) -> None:
    lab.start("--no-offload", swap={"checksum": REPO_ROOT / "stack/wire/checksum.py"})
    lab.peer(f"ping -c 2 -i 0.2 -W 2 {STACK_ADDR}")
    assert lab.peer(f"printf 'hello udp\\n' | nc -u -w 2 -W 1 {STACK_ADDR} 7") == "hello udp\n"
    assert "tcplab" in lab.peer(f"curl -s -m 10 http://{STACK_ADDR}/")
    out = lab.check("02")
    assert "TCP" in out  # without offloads the stack's TCP checksums are complete


def test_lab03_handshakes_with_the_swapped_reference(lab: LabRun) -> None:
    lab.start(swap={"seq": REPO_ROOT / "stack/tcp/seq.py"})
    for _ in range(2):
        assert "tcplab" in lab.peer(f"curl -s -m 10 http://{STACK_ADDR}/")
    lab.check("03")


def test_lab04_reordered_upload_with_the_swapped_reference(lab: LabRun) -> None:
    lab.start("--impair", "delay=10ms,jitter=5ms,reorder=25%,seed=4",
              swap={"reassembler": REPO_ROOT / "stack/tcp/reassembler.py"})
    data = lab.folder / "upload.bin"
    data.write_bytes(bytes(range(256)) * 4000)
    lab.peer(f"nc -N -w 20 {STACK_ADDR} 9 < {data}", timeout=60)
    time.sleep(0.5)  # the discard service logs its SHA-256 once the connection closes
    lab.check("04")


def test_lab05_closing(lab: LabRun) -> None:
    lab.start("--time-wait", "2")
    assert "tcplab" in lab.peer(f"curl -s -m 10 --http1.0 http://{STACK_ADDR}/")
    size = lab.peer(f"printf 'GET /bytes/100000 HTTP/1.1\\r\\nHost: lab\\r\\n\\r\\n' "
                    f"| nc -N -w 10 {STACK_ADDR} 80 | wc -c")
    assert int(size) > 100_000
    refused = lab.peer(f"nc -z -w 2 {STACK_ADDR} 5555; echo status $?", check=False)
    assert "status 1" in refused
    time.sleep(2.5)  # let TIME-WAIT end
    lab.check("05")


def test_lab06_loss_and_backoff_with_the_swapped_reference(lab: LabRun) -> None:
    if shutil.which("nft") is None:
        pytest.skip("nft (nftables) is needed for the blackout")
    lab.start("--impair", "loss=5%,seed=6", swap={"rto": REPO_ROOT / "stack/tcp/rto.py"})
    ns = lab.topology.peer_ns
    body = lab.folder / "body.bin"
    download = popen_in(ns, ["curl", "-s", "-m", "100", "--limit-rate", "400K", "-o", str(body),
                             f"http://{STACK_ADDR}/bytes/2000000"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        out = lab.peer(f"{lab_dir('06') / 'blackout.sh'} {lab.topology.peer_dev} 3.5", timeout=30)
        assert "works again" in out, out
        _, err = download.communicate(timeout=120)
    finally:
        if download.poll() is None:
            download.kill()
            download.wait(5)
    assert download.returncode == 0, f"curl exit {download.returncode}: {err}"
    assert body.read_bytes() == random.Random(2_000_000).randbytes(2_000_000)
    lab.check("06")


def test_lab07_zero_window(lab: LabRun) -> None:
    lab.start()
    out = lab.peer(f"{sys.executable} {lab_dir('07') / 'slowreader.py'} {STACK_ADDR} "
                   f"--path /bytes/500000 --pause 3", timeout=60)
    assert "byte-exact" in out, out
    lab.check("07")


def test_lab08_newreno_cubic_and_a_swapped_algorithm(lab: LabRun, tmp_path: Path) -> None:
    impair = "loss=1%,delay=5ms,seed=8"
    mine = tmp_path / "mine.py"
    mine.write_text("from stack.tcp.congestion.newreno import NewReno as ALGORITHM\n")
    runs = {"newreno": (["--cc", "newreno"], None), "cubic": (["--cc", "cubic"], None),
            "mine": ([], {"congestion": mine})}
    for name, (args, swap) in runs.items():
        lab.start("--impair", impair, *args, swap=swap)
        lab.peer(f"curl -s -m 60 -o /dev/null http://{STACK_ADDR}/bytes/1500000", timeout=90)
        lab.stop()
        shutil.copy(lab.events, lab.folder / f"{name}.jsonl")
    lab.check("08", "--out", str(lab.folder))


def _echo_server_in_peer(topology: Topology, port: int) -> subprocess.Popen[bytes]:
    code = ("import socket\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
            "socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('0.0.0.0', {port})); s.listen(1); print('ready', flush=True)\n"
            "c, _ = s.accept()\nwhile True:\n    d = c.recv(65536)\n    if not d: break\n"
            "    c.sendall(d)\nc.close()\n")
    proc = popen_in(topology.peer_ns, [sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc


def test_lab09_reference_c_programs_under_the_shim(lab: LabRun, tmp_path: Path) -> None:
    if shutil.which("gcc") is None or shutil.which("make") is None:
        pytest.skip("gcc and make are needed for the shim and the C programs")
    from stack.labkit.reference.echo_c import write_sources

    src = write_sources(tmp_path / "c")
    for name in ("echo_server", "echo_client"):
        subprocess.run(["gcc", "-Wall", "-O1", "-o", str(src / name), str(src / f"{name}.c")],
                       check=True, timeout=120)
    daemon = lab.start()
    shim = [sys.executable, "-m", "stack.cli", "run", "--socket", str(daemon.socket_path), "--"]
    server = popen_in(lab.topology.stack_ns, [*shim, str(src / "echo_server"), "7007"],
                      cwd=str(REPO_ROOT), env=python_env(), stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
    try:
        assert server.stdout is not None
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(server.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(30)
        assert line and b"listening" in line[0], (line, server.poll())
        echoed = lab.peer(f"printf 'hello shim\\n' | nc -N -w 10 {STACK_ADDR} 7007")
        assert echoed == "hello shim\n"
        peer_echo = _echo_server_in_peer(lab.topology, 7008)
        data = tmp_path / "data.bin"
        data.write_bytes(bytes(range(256)) * 400)
        with open(data, "rb") as stdin:
            cp = subprocess.run(["ip", "netns", "exec", lab.topology.stack_ns, *shim,
                                 str(src / "echo_client"), lab.topology.peer_addr, "7008"],
                                stdin=stdin, capture_output=True, timeout=60,
                                cwd=str(REPO_ROOT), env=python_env())
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout == data.read_bytes()
        peer_echo.wait(10)
    finally:
        server.kill()
        server.wait(10)
    lab.check("09")


VICTIM = """
import socket, sys
s = socket.create_connection((sys.argv[1], 7), timeout=10)
s.sendall(b"hello\\n")
assert s.recv(100) == b"hello\\n"
print(s.getsockname()[1], flush=True)
sys.stdin.read()
s.sendall(b"still alive\\n")
print(s.recv(100).decode().strip(), flush=True)
s.close()
"""


def test_lab10_blind_rst_and_syn_flood(lab: LabRun) -> None:
    lab.start()
    tools = lab_dir("10")
    ns = lab.topology.peer_ns
    victim = popen_in(ns, [sys.executable, "-c", VICTIM, STACK_ADDR], stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, text=True)
    try:
        assert victim.stdout is not None and victim.stdin is not None
        port = victim.stdout.readline().strip()
        assert port.isdigit(), port
        out = lab.peer(f"{sys.executable} {tools / 'rst_inject.py'} --dst {STACK_ADDR} "
                       f"--dport 7 --sport {port}", timeout=60)
        assert "done" in out, out
        time.sleep(0.5)
        victim.stdin.close()
        assert victim.stdout.readline().strip() == "still alive"
        assert victim.wait(15) == 0
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(5)
    flood = popen_in(ns, [sys.executable, str(tools / "synflood.py"), "--dst", STACK_ADDR,
                          "--dport", "80", "--count", "3000", "--rate", "1000", "--seed", "10"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)
        assert "tcplab" in lab.peer(f"curl -s -m 15 http://{STACK_ADDR}/", timeout=30)
        flood.wait(30)
        assert flood.returncode == 0
        # after the flood too
        assert "tcplab" in lab.peer(f"curl -s -m 15 http://{STACK_ADDR}/", timeout=30)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait(5)
    lab.check("10")
