"""Fixtures for the namespace + TUN integration tests (root only).

* ``topology`` (module scope): a fresh pair of namespaces, see ``netns.py``.
* ``rates`` (session scope): ``rates.record(name, result)`` prints a transfer rate, keeps
  it for the end-of-run summary and rewrites ``<pytest basetemp>/tcplab-rates.json``.
* ``stack`` (function scope): a ``tcplab stack`` daemon in the stack namespace. Extra
  command-line arguments come from ``@pytest.mark.stack_args("--no-offload", ...)`` or
  from an indirect parameter (``@pytest.mark.parametrize("stack", [[...]],
  indirect=True)``).

Without root or /dev/net/tun every test here is skipped, unless TCPLAB_REQUIRE_ROOT=1
(CI), in which case they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns import StackDaemon, Topology  # noqa: E402

HERE = Path(__file__).resolve().parent


def environment_problem() -> str | None:
    if sys.platform != "linux":
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, TUN)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    for tool in ("ip", "tc", "sysctl", "ping"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed"
    return None


def _require_root() -> bool:
    return os.environ.get("TCPLAB_REQUIRE_ROOT") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: needs root, network namespaces and /dev/net/tun")
    config.addinivalue_line(
        "markers", "stack_args(*args): extra `tcplab stack` arguments for the stack fixture")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problem = environment_problem()
    for item in items:
        if HERE not in Path(str(item.path)).resolve().parents:
            continue
        item.add_marker(pytest.mark.root)
        if problem and not _require_root():
            item.add_marker(pytest.mark.skip(reason=f"integration test: {problem}"))


@pytest.fixture(scope="session", autouse=True)
def _root_environment() -> None:
    problem = environment_problem()
    if problem:  # only reached with TCPLAB_REQUIRE_ROOT=1 (skipped otherwise)
        pytest.fail(f"TCPLAB_REQUIRE_ROOT=1 but {problem}")


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    topo = Topology.create()
    try:
        yield topo
    finally:
        topo.destroy()


@pytest.fixture
def stack(request: pytest.FixtureRequest, topology: Topology,
          tmp_path: Path) -> Iterator[StackDaemon]:
    extra: list[str] = []
    marker = request.node.get_closest_marker("stack_args")
    if marker is not None:
        extra.extend(str(a) for a in marker.args)
    param = getattr(request, "param", None)
    if param is not None:
        extra.extend([param] if isinstance(param, str) else [str(a) for a in param])
    daemon = StackDaemon.start(topology, extra, tmp_path)
    try:
        yield daemon
    finally:
        if daemon.running:
            daemon.stop()
        elif daemon.returncode is None:
            daemon.kill()
            raise AssertionError(
                f"tcplab stack died during the test (status {daemon.returncode})\n"
                f"stderr:\n{daemon.stderr}")


class RateLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[dict[str, Any]] = []

    def record(self, name: str, result: dict[str, Any]) -> None:
        entry = {"test": name, "bytes": result.get("bytes"), "seconds": result.get("seconds"),
                 "mbit_s": result.get("mbit_s")}
        self.entries.append(entry)
        print(f"\n[rate] {name}: {entry['bytes']} bytes in {entry['seconds']} s = "
              f"{entry['mbit_s']} Mbit/s")
        self.path.write_text(json.dumps(self.entries, indent=2) + "\n")


_RATE_LOGS: list[RateLog] = []


@pytest.fixture(scope="session")
def rates(tmp_path_factory: pytest.TempPathFactory) -> RateLog:
    log = RateLog(tmp_path_factory.getbasetemp() / "tcplab-rates.json")
    _RATE_LOGS.append(log)
    return log


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for log in _RATE_LOGS:
        if not log.entries:
            continue
        terminalreporter.section("tcplab transfer rates")
        for e in log.entries:
            terminalreporter.write_line(
                f"{e['test']:<40} {e['bytes']!s:>10} B {e['seconds']!s:>9} s "
                f"{e['mbit_s']!s:>10} Mbit/s")
        terminalreporter.write_line(f"(also in {log.path})")
