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
