"""The labs: every swap-in slot's step tests pass with the reference plugged into the slot
and fail with the untouched skeleton; the runner tells which step failed; the swap-in
loader plugs a learner's file into the stack; every lab folder is complete."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stack.labkit.__main__ import main as labkit_main
from stack.labkit.__main__ import run_tests, suite_for
from stack.labkit.steps import run_suite
from stack.labkit.swap import SLOTS, SwapError, find_slot, install, load_learner, plug, unplug

ROOT = Path(__file__).resolve().parents[2]
LABS = ROOT / "labs"
LAB_NAMES = ["01-tun", "02-ipv4-checksum", "03-handshake", "04-reassembly", "05-closing",
             "06-retransmission", "07-flow-control", "08-congestion", "09-shim", "10-attacks"]
SLOT_NAMES = sorted(SLOTS)


def needs(slot: str) -> None:
    if slot == "echo" and shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")


def skeleton(slot: str) -> Path:
    s = SLOTS[slot]
    folder = next(LABS.glob(f"{s.lab}-*"))
    return folder if slot == "echo" else folder / s.files[0]


@pytest.mark.parametrize("slot", SLOT_NAMES)
def test_the_reference_passes_every_step(slot: str) -> None:
    needs(slot)
    out = io.StringIO()
    reports = run_tests(slot, reference=True, out=out)
    assert reports and all(r.ok for r in reports), out.getvalue()
    assert all(r.passed == len(suite_for(SLOTS[slot]).scenarios) for r in reports)


@pytest.mark.parametrize("slot", SLOT_NAMES)
def test_the_untouched_skeleton_fails_every_scenario(slot: str) -> None:
    needs(slot)
    out = io.StringIO()
    [report] = run_tests(slot, impl=skeleton(slot), out=out)
    text = out.getvalue()
    total = len(suite_for(SLOTS[slot]).scenarios)
    # Without root the TUN device scenario of lab 01 is skipped (and counts as passed).
    skipped = 1 if slot == "tun" and "skipped:" in text else 0
    assert report.failed == total - skipped, text
    assert "steps that ran:" in text and "FAIL" in text


def test_the_skeleton_is_plugged_into_the_slot_by_the_labkit_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert labkit_main(["test", "04", "--first"]) == 1
    out = capsys.readouterr().out
    assert "labs/04-reassembly/reassembler.py" in out
    assert "not implemented yet (NotImplementedError)" in out
    assert "stopped at the first failure" in out
    assert labkit_main(["test", "reassembler", "--reference"]) == 0


BUGGY_REASSEMBLER = '''
class Reassembler:
    """Forgets to hold early data: hands it out at once."""
    def __init__(self, capacity):
        self.capacity = capacity
        self.next_index = 0
        self.pending_bytes = 0
    def insert(self, index, data):
        data = bytes(data)
        start = max(index, self.next_index)
        out = data[start - index:]
        self.next_index = max(self.next_index, index + len(data))
        return out
    def sack_blocks(self, limit=4):
        return []
'''


def test_a_failure_shows_the_steps_that_ran_and_the_failing_step(tmp_path: Path) -> None:
    learner = tmp_path / "reassembler.py"
    learner.write_text(BUGGY_REASSEMBLER)
    out = io.StringIO()
    [report] = run_tests("04", impl=learner, out=out)
    text = out.getvalue()
    assert not report.ok and report.passed >= 3  # the in-order scenarios pass
    story = text[text.index("FAIL  early data waits"):]
    lines = [line.strip() for line in story.splitlines()[:6]]
    assert lines[1] == "steps that ran:"
    assert lines[2] == "ok    r = Reassembler(capacity=100)"
    assert lines[3] == "FAIL  r.insert(3, b'def') -> b''"
    assert lines[4] == "got b'def'"


def test_a_learner_exception_points_at_the_learner_line(tmp_path: Path) -> None:
    learner = tmp_path / "seq.py"
    learner.write_text("def seq_add(a, n):\n    return a + n + undefined_name\n"
                       + "".join(f"def {n}(*a):\n    return 0\n" for n in
                                 ("seq_diff", "seq_lt", "seq_le", "seq_gt", "seq_ge",
                                  "seq_in_window")))
    out = io.StringIO()
    run_tests("seq", impl=learner, out=out)
    text = out.getvalue()
    assert "raised NameError: name 'undefined_name' is not defined" in text
    assert f"at {learner}:2 in seq_add" in text


def test_plugging_a_learner_class_into_the_stack(tmp_path: Path) -> None:
    from stack.tcp import reassembler
    from stack.tcp.connection import Connection, TcpConfig
    from stack.tcp.reassembler import Reassembler

    learner = tmp_path / "reassembler.py"
    learner.write_text("from stack.tcp.reassembler import Reassembler as _R\n"
                       "class Reassembler(_R):\n    learner = True\n")
    slot = find_slot("04")
    plugged = plug(slot, load_learner(slot, learner))
    try:
        # By construction: the config carries the learner's class, nothing global changes.
        assert getattr(plugged.config.reassembler, "learner", False)
        conn = Connection(("10.0.0.2", 7), ("10.1.0.2", 4000), 1000, plugged.config, 0.0)
        assert getattr(conn.rcv.reassembler, "learner", False)
        assert plugged.where == ["TcpConfig.reassembler"]
        plain = Connection(("10.0.0.2", 7), ("10.1.0.2", 4000), 1000, TcpConfig(), 0.0)
        assert type(plain.rcv.reassembler) is Reassembler
    finally:
        unplug(plugged)
    assert reassembler.Reassembler is Reassembler


def test_plugging_a_congestion_controller(tmp_path: Path) -> None:
    from stack.tcp.congestion import NewReno, make_congestion_control

    learner = tmp_path / "congestion.py"
    learner.write_text("from stack.tcp.congestion.newreno import NewReno\n"
                       "class Mine(NewReno):\n    name = 'mine'\nALGORITHM = Mine\n")
    slot = find_slot("congestion")
    plugged = plug(slot, load_learner(slot, learner))
    config = plugged.config
    try:
        config.cc = "newreno"
        assert config.make_congestion_control(1000).name == "mine"
        config.cc = "cubic"
        assert config.make_congestion_control(1000).name == "mine"
    finally:
        unplug(plugged)
    assert type(make_congestion_control("newreno", 1000)) is NewReno


def test_swap_specs_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SwapError, match="not SLOT=PATH"):
        install("reassembler")
    with pytest.raises(SwapError, match="no swap-in slot 'teleport'"):
        install("teleport=x.py")
    with pytest.raises(SwapError, match="no such file"):
        install(f"rto={tmp_path / 'missing.py'}")
    empty = tmp_path / "rto.py"
    empty.write_text("x = 1\n")
    with pytest.raises(SwapError, match="does not define RTOEstimator"):
        install(f"rto={empty}")
    broken = tmp_path / "broken.py"
    broken.write_text("def (:\n")
    with pytest.raises(SwapError, match="importing it failed: SyntaxError"):
        install(f"seq={broken}")
    with pytest.raises(SwapError, match="does not run inside the daemon"):
        install(f"tun={ROOT / 'stack/labkit/reference/tunread.py'}")


def test_the_swap_wrapper_needs_a_swap(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TCPLAB_SWAP", raising=False)
    assert labkit_main(["stack"]) == 2
    assert "give --swap SLOT=PATH" in capsys.readouterr().err


def test_run_suite_without_output_and_first_failure_only() -> None:
    from stack.labkit.suites import SEQ

    class Broken:
        def __getattr__(self, name: str) -> object:
            raise NotImplementedError

    report = run_suite(SEQ, Broken(), out=None, first_failure_only=True)
    assert len(report.outcomes) == 1 and report.failed == 1


# --- the lab folders -----------------------------------------------------------------------
SECTIONS = ("## Goal", "## Background", "## Do it", "## What to look for", "## Questions",
            "## Going further")


@pytest.mark.parametrize("name", LAB_NAMES)
def test_every_lab_folder_is_complete(name: str) -> None:
    folder = LABS / name
    readme = (folder / "README.md").read_text()
    for section in SECTIONS:
        assert section in readme, f"{name}/README.md has no '{section}'"
    assert "RFC" in readme
    assert "docker compose exec" in readme and "tcplab lab shell" in readme
    assert f"tcplab lab check {name[:2]}" in readme
    check = folder / "check"
    assert check.is_file() and os.access(check, os.X_OK)
    assert check.read_text().startswith("#!/usr/bin/env python3")
    slot = next((s for s in SLOTS.values() if s.lab == name[:2]), None)
    if slot is not None:
        for file in slot.files:
            assert (folder / file).is_file(), f"{name} has no skeleton {file}"
        assert f"python3 -m stack.labkit test {name[:2]}" in readme


@pytest.mark.parametrize("name", LAB_NAMES)
def test_every_check_explains_missing_files(name: str, tmp_path: Path) -> None:
    cp = subprocess.run([sys.executable, str(LABS / name / "check"), "--out", str(tmp_path)],
                        capture_output=True, text=True, timeout=60,
                        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "Traceback" not in cp.stderr, cp.stderr
    assert "FAIL" in cp.stdout and "does not exist" in cp.stdout + cp.stderr or \
        "no such file" in cp.stdout, cp.stdout


def test_the_tun_device_scenario_is_skipped_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    out = io.StringIO()
    [report] = run_tests("tun", reference=True, out=out, verbose=True)
    assert report.ok
    assert "skipped: needs root" in out.getvalue()
