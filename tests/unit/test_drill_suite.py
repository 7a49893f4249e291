"""Conformance: every script of the FreeBSD tcp-testsuite through `tcplab drill`, the
IPv4 ones and the IPv6 ones (`--ip_version=ipv6`) in two runs.

The suite lives outside the project (../shared/tcp-testsuite from the project's root,
see its ORIGIN.md) and is used in place. tests/drill/outcomes.txt lists each script
that does not pass, with its reason; this test fails when any script's outcome differs
from the file: a listed pass that regresses, and also a listed failure that now
passes (then delete its line: the file only improves). The whole suite runs on the
virtual clock in a few seconds.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from stack.drill.runner import run_file

ROOT = Path(__file__).resolve().parents[2]
OUTCOMES = ROOT / "tests" / "drill" / "outcomes.txt"
REASON_PREFIXES = ("FreeBSD-specific: ", "not supported: ", "stack bug: ")


def find_suite() -> Path | None:
    env = os.environ.get("TCPLAB_DRILL_SUITE")
    if env:
        return Path(env)
    for parent in ROOT.parents:  # ../shared from the project root (or a worktree below it)
        candidate = parent / "shared" / "tcp-testsuite"
        if (candidate / "ORIGIN.md").is_file():
            return candidate
    return None


def load_outcomes() -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(OUTCOMES.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(" | ", 2)]
        assert len(parts) == 3, f"outcomes.txt:{number}: expected 'PATH | STATUS | REASON'"
        path, status, reason = parts
        assert status in ("failed", "skipped"), f"outcomes.txt:{number}: status {status!r}"
        assert reason.startswith(REASON_PREFIXES), f"outcomes.txt:{number}: reason {reason!r}"
        assert path not in out, f"outcomes.txt:{number}: {path} listed twice"
        out[path] = (status, reason)
    return out


def is_ipv6(script: Path) -> bool:
    return "--ip_version=ipv6" in script.read_text(errors="replace")  # packetdrill's default is IPv4


def ipv4_scripts(suite: Path) -> list[Path]:
    return [p for p in sorted(suite.rglob("*.pkt")) if not is_ipv6(p)]


def ipv6_scripts(suite: Path) -> list[Path]:
    return [p for p in sorted(suite.rglob("*.pkt")) if is_ipv6(p)]


def test_outcomes_file_is_well_formed() -> None:
    outcomes = load_outcomes()
    assert outcomes
    for path, (status, reason) in outcomes.items():
        if status == "skipped":
            assert reason.startswith("not supported: "), f"{path}: a skip is 'not supported'"


def _suite() -> Path:
    suite = find_suite()
    if suite is None:
        if os.environ.get("CI"):
            pytest.fail("the FreeBSD tcp-testsuite is not at ../shared/tcp-testsuite "
                        "(or $TCPLAB_DRILL_SUITE)")
        pytest.skip("the FreeBSD tcp-testsuite is not at ../shared/tcp-testsuite")
    return suite


def _run_family(family: str, suite: Path, scripts: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Run `scripts`, print pass/fail/skip by group, compare with outcomes.txt."""
    outcomes = load_outcomes()
    by_group: dict[str, Counter[str]] = defaultdict(Counter)
    mismatches = []
    started = time.perf_counter()
    for script in scripts:
        rel = script.relative_to(suite).as_posix()
        result = run_file(script)
        by_group[rel.split("/")[0]][result.status] += 1
        want = outcomes.get(rel, ("passed", ""))[0]
        if result.status != want:
            detail = f" ({result.reason})" if result.reason else ""
            mismatches.append(f"{rel}: expected {want}, got {result.status}{detail}")
    total: Counter[str] = Counter()
    lines = [f"FreeBSD tcp-testsuite, {family} ({len(scripts)} scripts, {time.perf_counter() - started:.1f} s):"]
    for group in sorted(by_group):
        c = by_group[group]
        total.update(c)
        lines.append(f"  {group:22} {c['passed']:4} passed {c['failed']:4} failed {c['skipped']:4} skipped")
    lines.append(f"  {'all':22} {total['passed']:4} passed {total['failed']:4} failed {total['skipped']:4} skipped")
    with capsys.disabled():  # in the CI log too, not only with -s
        print("\n" + "\n".join(lines))
    known = {p.relative_to(suite).as_posix() for p in suite.rglob("*.pkt")}
    stale = sorted(set(outcomes) - known)
    assert not stale, f"outcomes.txt lists scripts the suite does not have: {stale[:5]}"
    assert not mismatches, (
        f"{len(mismatches)} script(s) differ from tests/drill/outcomes.txt "
        "(a pass that regressed is a bug; a listed failure that passes: delete its line):\n"
        + "\n".join(mismatches)
    )


def test_freebsd_suite_ipv4(capsys: pytest.CaptureFixture[str]) -> None:
    suite = _suite()
    _run_family("IPv4", suite, ipv4_scripts(suite), capsys)


def test_freebsd_suite_ipv6(capsys: pytest.CaptureFixture[str]) -> None:
    """The IPv6 scripts: 40-byte IPv6 headers, ICMPv6, AF_INET6 sockets, the host at
    packetdrill's fd3d:fa7b:d17d::1 and the peer at 2001:db8::1."""
    suite = _suite()
    _run_family("IPv6", suite, ipv6_scripts(suite), capsys)
