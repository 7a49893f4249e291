"""Fixtures for test_shim.py: a daemon for the module, programs under `tcplab run` in the
stack namespace, kernel programs in the peer namespace, and data to move."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from netns import REPO_ROOT, StackDaemon, Topology, popen_in, python_env, run_in

sys.path.insert(0, str(REPO_ROOT))

from stack.ipc.client import query_sockets  # noqa: E402

SHIM_DIR = REPO_ROOT / "shim"
EXAMPLES = SHIM_DIR / "examples"
PROGRAMS = ("curl", "wget", "nc", "socat", "iperf3", "python3")
MB = 1_000_000


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if shutil.which(p) is None]


class Shim:
    """The module's daemon and ways to run programs around it."""

    def __init__(self, topology: Topology, workdir: Path) -> None:
        self.topology = topology
        self.workdir = workdir
        self.daemon: StackDaemon | None = None
        self.generation = 0
        self._procs: list[subprocess.Popen[Any]] = []

    # the daemon -----------------------------------------------------------------
    def start(self) -> StackDaemon:
        self.generation += 1
        self.daemon = StackDaemon.start(self.topology, ["--service", "none"],
                                        self.workdir / f"daemon{self.generation}")
        return self.daemon

    @property
    def socket(self) -> str:
        assert self.daemon is not None
        return str(self.daemon.socket_path)

    def ensure_running(self) -> None:
        if self.daemon is None or not self.daemon.running:
            if self.daemon is not None:
                self.daemon.kill()
            self.start()

    # programs -----------------------------------------------------------------------
    def argv(self, argv: Sequence[str], socket_path: str | None = None) -> list[str]:
        return [sys.executable, "-m", "stack.cli", "run", "--socket",
                socket_path or self.socket, "--", *argv]

    def run(self, argv: Sequence[str], timeout: float = 60, check: bool = True,
            socket_path: str | None = None, **kw: Any) -> subprocess.CompletedProcess[Any]:
        """Run argv under `tcplab run` in the stack namespace."""
        return run_in(self.topology.stack_ns, self.argv(argv, socket_path), timeout=timeout,
                      check=check, cwd=str(REPO_ROOT), env=python_env(), **kw)

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = popen_in(self.topology.stack_ns, self.argv(argv), cwd=str(REPO_ROOT),
                        env=python_env(), **kw)
        self._procs.append(proc)
        return proc

    def peer(self, argv: Sequence[str], timeout: float = 60, check: bool = True,
             **kw: Any) -> subprocess.CompletedProcess[Any]:
        return run_in(self.topology.peer_ns, argv, timeout=timeout, check=check, **kw)

    def peer_popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = popen_in(self.topology.peer_ns, argv, **kw)
        self._procs.append(proc)
        return proc

    def reap(self) -> None:
        """Kill whatever the test started and did not wait for."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self._procs.clear()

    # readiness ----------------------------------------------------------------------
    def wait_shim_listener(self, port: int, timeout: float = 15) -> None:
        """Until the daemon has a listening socket on `port` (a shimmed server is up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                for row in query_sockets(self.socket, timeout=2):
                    if row.get("state") == "LISTEN" and str(row.get("local", "")).endswith(
                            f":{port}"):
                        return
            time.sleep(0.05)
        raise TimeoutError(f"no shimmed listener on port {port} after {timeout}s")

    def wait_shim_udp(self, port: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                for row in query_sockets(self.socket, timeout=2):
                    if row.get("proto") == "udp" and str(row.get("local", "")).endswith(
                            f":{port}"):
                        return
            time.sleep(0.05)
        raise TimeoutError(f"no shimmed UDP socket on port {port} after {timeout}s")

    def wait_peer_listener(self, port: int, udp: bool = False, timeout: float = 15) -> None:
        """Until a kernel socket in the peer namespace listens on `port`."""
        deadline = time.monotonic() + timeout
        flag = "-lunH" if udp else "-ltnH"
        while time.monotonic() < deadline:
            out = self.peer(["ss", flag, f"sport = :{port}"], timeout=10, check=False).stdout
            if out.strip():
                return
            time.sleep(0.05)
        raise TimeoutError(f"nothing listens on peer port {port} after {timeout}s")


@pytest.fixture(scope="session")
def shim_built() -> Path:
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.fail("building the shim needs make and a C compiler")
    subprocess.run(["make", "-s", "-C", str(SHIM_DIR), "all"], check=True, timeout=300)
    return SHIM_DIR / "libsocketoverride.so"


@pytest.fixture(scope="module")
def shim(topology: Topology, shim_built: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shim]:
    missing = missing_programs()
    if missing:
        why = (f"not installed: {' '.join(missing)} (apt-get install curl wget "
               "netcat-openbsd socat iperf3)")
        if os.environ.get("TCPLAB_REQUIRE_ROOT") == "1":  # CI must not skip these quietly
            pytest.fail(why)
        pytest.skip(why)
    holder = Shim(topology, tmp_path_factory.mktemp("shim"))
    holder.start()
    try:
        yield holder
    finally:
        holder.reap()
        if holder.daemon is not None and holder.daemon.running:
            holder.daemon.stop(check=False)


@pytest.fixture
def sh(shim: Shim) -> Iterator[Shim]:
    """The module's Shim, with the daemon (re)started if a test took it down, and every
    process the test started reaped afterwards."""
    shim.ensure_running()
    try:
        yield shim
    finally:
        shim.reap()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with random files: big.bin (20 MB) and mid.bin (3 MB)."""
    d = tmp_path_factory.mktemp("data")
    rnd = os.urandom
    (d / "big.bin").write_bytes(rnd(20 * MB))
    (d / "mid.bin").write_bytes(rnd(3 * MB))
    os.chmod(d, 0o755)
    return d


@pytest.fixture(scope="module")
def peer_http(shim: Shim, data_dir: Path) -> Iterator[str]:
    """`python3 -m http.server` (kernel TCP) in the peer namespace serving data_dir."""
    port = 8080
    proc = popen_in(shim.topology.peer_ns,
                    ["python3", "-m", "http.server", str(port), "--bind", "0.0.0.0",
                     "--directory", str(data_dir)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
    try:
        shim.wait_peer_listener(port)
        yield f"http://{shim.topology.peer_addr}:{port}"
    finally:
        proc.kill()
        proc.wait(5)
