"""`tcplab bench --only rr` and `--ns-prefix` (stack/tools/bench.py), without namespaces:
the request/response row from fake clients."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from stack.tools.bench import Bench, format_table


@pytest.fixture
def bench() -> Any:
    b = Bench(1.0, 10, smoke=False, pin=False, prefix="zzT")
    yield b
    shutil.rmtree(b.tmp, ignore_errors=True)


def test_namespace_names_carry_the_prefix(bench: Bench) -> None:
    assert bench.stack_ns.startswith("zzT-stack-")
    assert bench.peer_ns.startswith("zzT-peer-") and bench.far_ns.startswith("zzT-far-")


def test_only_rr_measures_kernel_relay_and_a_fresh_daemon(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    rates = {"10.1.0.1": 20000.0, "10.0.0.2:9011": 10000.0, "10.0.0.2:7": 4000.0}

    def client(*args: str) -> dict[str, Any]:
        calls.append(("client", *args))
        assert args[0] == "rr"
        key = args[1] if args[1] == "10.1.0.1" else f"{args[1]}:{args[2]}"
        return {"per_s": rates[key]}

    def record(name: str) -> Any:
        return lambda *a: calls.append((name, *map(str, a)))

    monkeypatch.setattr(bench, "client", client)
    for name in ("start_servers", "stop_servers", "start_relay", "stop_relay", "start_daemon", "stop_daemon"):
        monkeypatch.setattr(bench, name, record(name))
    bench.run_rr()
    (row,) = bench.rows
    assert (row["figure"], row["kernel"], row["relay"], row["stack"]) == (
        "1-byte request/response", 20000.0, 10000.0, 4000.0)
    assert ("start_daemon", "True") in calls and ("stop_daemon", "None") in calls
    assert "1-byte request/response" in format_table(bench.rows)
