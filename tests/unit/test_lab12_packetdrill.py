"""Lab 12 (packetdrill): the shipped example scripts pass through the runner, and the
lab's check (stack/labkit/drillcheck.py) judges scripts as the README says. Only the
shipped examples and scripts written here are read: never a learner's working files
(labs/12-packetdrill/*.pkt)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stack.drill.runner import run_file
from stack.labkit.checks import Check
from stack.labkit.drillcheck import BLIND, HELLO, INSECURE, judge

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "labs" / "12-packetdrill"
EXAMPLES = sorted((LAB / "examples").glob("*.pkt"))
AS_LEARNER = {HELLO: "active-open.pkt", BLIND: "challenge-ack.pkt", INSECURE: "insecure-rst.pkt"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes_strictly(path: Path) -> None:
    """The examples show the stack's own values: they pass with no relaxation rule."""
    result = run_file(path, strict=True)
    assert result.status == "passed", result.reason + "\n" + result.report


def judged(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[bool, str]:
    c = Check("12", "packetdrill", argv=[])
    judge(c, {name: folder / name for name in AS_LEARNER})
    return c.passed, capsys.readouterr().out


def examples_as_learner(tmp_path: Path) -> Path:
    for name, example in AS_LEARNER.items():
        shutil.copy(LAB / "examples" / example, tmp_path / name)
    return tmp_path


def test_the_examples_pass_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok, out = judged(examples_as_learner(tmp_path), capsys)
    assert ok, out
    assert out.count("PASS") == 10 and "FAIL" not in out


def test_a_failing_script_shows_its_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The mistake of the README's step 2: an ACK number that forgets the SYN occupies one."""
    folder = examples_as_learner(tmp_path)
    hello = folder / HELLO
    hello.write_text(hello.read_text().replace("> . 1:1(0) ack 1 win 32768", "> . 1:1(0) ack 0 win 32768", 1))
    ok, out = judged(folder, capsys)
    assert not ok
    assert "FAIL  hello.pkt passes tcplab drill" in out and "ack: expected 0, actual 1" in out


def test_a_hello_without_the_close_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = examples_as_learner(tmp_path)
    hello = folder / HELLO
    text = hello.read_text()
    hello.write_text(text[: text.index("+0.00 close(3)")])
    ok, out = judged(folder, capsys)
    assert not ok
    assert "PASS  hello.pkt passes tcplab drill" in out
    assert "FAIL  hello.pkt: a FIN each way" in out


def test_an_insecure_script_that_does_not_need_the_knob_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An RST at exactly RCV.NXT resets with or without RFC 5961: such a script passes
    without its sysctl line too, so it does not show what the knob does."""
    folder = examples_as_learner(tmp_path)
    insecure = folder / INSECURE
    insecure.write_text(insecure.read_text().replace("< R 1001:1001(0)", "< R 1:1(0)"))
    ok, out = judged(folder, capsys)
    assert not ok
    assert "FAIL  blind-rst-insecure.pkt: without the sysctl line the same script fails" in out


def test_the_check_explains_missing_scripts(tmp_path: Path) -> None:
    cp = subprocess.run([sys.executable, str(LAB / "check"), "--dir", str(tmp_path)],
                        capture_output=True, text=True, timeout=60,
                        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "Traceback" not in cp.stderr, cp.stderr
    assert "FAIL  hello.pkt exists" in cp.stdout and "FAIL  blind-rst.pkt exists" in cp.stdout


def test_the_readme_has_the_sections_of_every_lab() -> None:
    readme = (LAB / "README.md").read_text()
    for section in ("## Goal", "## Background", "## Do it", "## What to look for", "## Questions"):
        assert section in readme
    assert "RFC 5961" in readme and "tcplab drill" in readme and "labs/12-packetdrill/check" in readme
    check = LAB / "check"
    assert check.is_file() and os.access(check, os.X_OK)
