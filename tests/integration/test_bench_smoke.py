"""`tcplab bench --smoke`: the benchmark runs end to end and reports every figure.

A benchmark, not a timed test: this only checks that it works (tiny durations),
never the numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]


def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "stack.cli", "bench", "--smoke", "--no-shim", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["figure"]: r for r in json.loads(out.read_text())["rows"]}
    for figure in ("upload (offloads on)", "download (offloads on)", "upload (offloads off)",
                   "download (offloads off)", "1-byte request/response", "new connections",
                   "100 parallel flows (upload)"):
        assert rows[figure]["stack"] > 0, figure
        assert rows[figure]["kernel"] > 0, figure
    for figure in ("upload (offloads on)", "download (offloads on)", "upload (offloads off)",
                   "download (offloads off)", "1-byte request/response", "new connections"):
        assert rows[figure]["relay"] > 0, figure  # the pure TUN relay's ceiling, same run
        assert rows[figure]["relay_ratio"] > 0, figure
    assert rows["50 idle connections held"]["stack"] == 50
    for figure in ("upload over IPv6 (offloads on)", "download over IPv6 (offloads on)"):
        assert rows[figure]["stack"] > 0 and rows[figure]["kernel"] > 0, figure
    assert "ratio/kernel" in proc.stdout and "ratio/relay" in proc.stdout
    assert "upload (offloads on)" in proc.stdout


def test_bench_loss_smoke(tmp_path: Path) -> None:
    """`tcplab bench --loss`: both directions through the stack and the kernel over the
    same nftables-lossy path, every body checked, the loss really applied counted."""
    out = tmp_path / "loss.json"
    proc = subprocess.run(
        [sys.executable, "-m", "stack.cli", "bench", "--loss", "5", "--sizes", "200K", "--runs", "1",
         "--timeout", "60", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    rows = {r["direction"]: r for r in data["rows"]}
    assert set(rows) == {"stack sends", "stack receives"}
    for row in rows.values():
        assert row["loss"] == 5 and row["size"] == 200_000
        assert row["stack_failed"] == 0 and row["kernel_failed"] == 0, row
        assert row["stack_s"] > 0 and row["kernel_s"] > 0 and row["ratio"] > 0
        assert row["stack_retrans"] is not None and row["kernel_retrans"] is not None
    for way in ("5% to stack", "5% to peer"):
        seen, dropped = data["drops"][way]
        assert seen > 100 and 0 < dropped < seen, (way, seen, dropped)
    assert "nftables 5% to stack" in proc.stdout and "stack sends" in proc.stdout


def test_bench_loss_rejects_bad_arguments() -> None:
    """Bad arguments: one line on stderr, exit status 2."""
    for args in (["--loss", "abc"], ["--loss", "150"], ["--loss", "5", "--sizes", "0"],
                 ["--loss", "5", "--runs", "0"]):
        proc = subprocess.run([sys.executable, "-m", "stack.cli", "bench", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
