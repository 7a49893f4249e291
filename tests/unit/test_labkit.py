"""The labs: every swap-in slot's step tests pass with the reference plugged into the slot
and fail with the untouched skeleton; the runner tells which step failed; the swap-in
loader plugs a learner's file into the stack; every lab folder is complete.

The skeletons tested here are the committed ones (``git show HEAD:labs/...``), never the
files in the working copy: a learner who has done the labs has filled those in, and the
project's tests must pass for them too."""

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
             "06-retransmission", "07-flow-control", "08-congestion", "09-shim", "10-attacks",
             "11-ipv6"]
SLOT_NAMES = sorted(SLOTS)


def needs(slot: str) -> None:
    if slot == "echo" and shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")


def pristine_labs(dest: Path) -> Path:
    """A copy of the committed labs/ (git HEAD) under ``dest``: the skeletons as shipped,
    whatever a learner has written into the working copy."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot read the committed skeletons")
    probe = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "-q", "HEAD"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("not a git checkout: cannot read the committed skeletons")
    files = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", "HEAD",
                            "labs/"], capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        blob = subprocess.run(["git", "-C", str(ROOT), "show", f"HEAD:{name}"],
                              capture_output=True, check=True).stdout
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
    (dest / "stack").mkdir(exist_ok=True)  # what labkit's find_root looks for
    return dest


def skeleton(slot: str, root: Path) -> Path:
    s = SLOTS[slot]
    folder = next((root / "labs").glob(f"{s.lab}-*"))
    return folder if slot == "echo" else folder / s.files[0]


@pytest.mark.parametrize("slot", SLOT_NAMES)
def test_the_reference_passes_every_step(slot: str) -> None:
    needs(slot)
    out = io.StringIO()
    reports = run_tests(slot, reference=True, out=out)
    assert reports and all(r.ok for r in reports), out.getvalue()
    assert all(r.passed == len(suite_for(SLOTS[slot]).scenarios) for r in reports)


@pytest.mark.parametrize("slot", SLOT_NAMES)
def test_the_untouched_skeleton_fails_every_scenario(slot: str, tmp_path: Path) -> None:
    needs(slot)
    out = io.StringIO()
    [report] = run_tests(slot, impl=skeleton(slot, pristine_labs(tmp_path)), out=out)
    text = out.getvalue()
    total = len(suite_for(SLOTS[slot]).scenarios)
    # Without root the TUN device scenario of lab 01 is skipped (and counts as passed).
    skipped = 1 if slot == "tun" and "skipped:" in text else 0
    assert report.failed == total - skipped, text
    assert "steps that ran:" in text and "FAIL" in text


def test_the_skeleton_is_plugged_into_the_slot_by_the_labkit_command(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.setenv("TCPLAB_ROOT", str(pristine_labs(tmp_path)))
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
    # one spelling for commands in the lab, fast with either Compose (issue 15, item 4)
    assert "tcplab lab exec" in readme and "docker compose" not in readme
    assert "docker-compose" not in readme
    assert f"tcplab lab up --for {name[:2]}" in readme  # a known state for every lab
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


# --- tcplab lab: the learner's command line ------------------------------------------------
def test_stack_args_take_a_value_that_starts_with_a_dash() -> None:
    """`tcplab lab up --stack-args "--no-offload"` (lab 02) parsed as an option of its own
    ("expected one argument") before; any value after --stack-args is its value now."""
    from stack.tools.lab import build_parser, join_option_values

    for argv in (["up", "--stack-args", "--no-offload"], ["up", "--stack-args=--no-offload"],
                 ["up", "--for", "02", "--stack-args", "--impair corrupt=20%"]):
        args = build_parser().parse_args(join_option_values(argv))
        assert args.stack_args in ("--no-offload", "--impair corrupt=20%"), argv
    # a command in the lab is left alone, whatever it contains
    argv = ["exec", "peer", "sh", "-c", "x --stack-args --y"]
    assert join_option_values(argv) == argv
    args = build_parser().parse_args(argv)
    assert args.service == "peer" and args.cmd == ["sh", "-c", "x --stack-args --y"]


def test_up_for_a_lab_uses_its_stack_args(tmp_path: Path) -> None:
    from stack.tools.lab import LabError, _env_for, build_parser, join_option_values, lab_folder

    labs = pristine_labs(tmp_path)
    args = build_parser().parse_args(join_option_values(
        ["up", "--for", "8", "--stack-args", "--cc cubic"]))
    env = _env_for(args, labs)
    assert env["TCPLAB_STACK_ARGS"] == "--cc newreno --impair loss=1%,delay=20ms,seed=8 --cc cubic"
    assert _env_for(build_parser().parse_args(["up", "--for", "07"]), labs) == \
        {"TCPLAB_STACK_ARGS": ""}  # a lab without settings still clears the previous ones
    assert lab_folder(labs, "06-retransmission").name == "06-retransmission"
    with pytest.raises(LabError, match="no lab 42"):
        lab_folder(labs, "42")
    with pytest.raises(LabError, match="not a lab number"):
        lab_folder(labs, "x")


def test_every_lab_settings_file_is_a_valid_stack_command_line() -> None:
    import shlex

    from stack.cli import build_parser as stack_parser
    from stack.tools.lab import lab_stack_args

    for name in LAB_NAMES:
        words = shlex.split(lab_stack_args(LABS / name))
        stack_parser().parse_args(["stack", *words])  # exits on a bad option


def test_lab_exec_is_docker_exec_on_the_services_container(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from stack.tools.lab import Lab, LabError

    lab = Lab(root=ROOT, project="p", compose=["docker-compose"])
    monkeypatch.setattr(lab, "container_id", lambda service: f"cid-{service}")
    assert lab.exec_argv("peer", ["ping", "-c1", "10.0.0.2"], stdin_tty=False,
                         stdout_tty=False) == ["docker", "exec", "-i", "cid-peer", "ping",
                                               "-c1", "10.0.0.2"]
    assert lab.exec_argv("stack", ["bash"], stdin_tty=True, stdout_tty=True)[:4] == \
        ["docker", "exec", "-i", "-t"]
    with pytest.raises(LabError, match="give the command"):
        lab.exec_argv("peer", [], stdin_tty=False, stdout_tty=False)
    monkeypatch.setattr(lab, "container_id", lambda service: None)
    with pytest.raises(LabError, match="start the lab first"):
        lab.exec_argv("peer", ["true"], stdin_tty=False, stdout_tty=False)


def test_isn_near_wrap_is_a_teaching_aid_off_by_default() -> None:
    from stack.tcp import isn

    secret = isn.new_secret()
    local, remote = ("10.0.0.2", 80), ("10.0.1.20", 40000)
    assert not isn.near_wrap()
    try:
        isn.set_near_wrap(True)
        values = [isn.initial_sequence_number(secret, t / 7, local, (remote[0], remote[1] + t))
                  for t in range(200)]
        # all within 1 MiB below 2**32: a transfer of a megabyte wraps
        assert all(2**32 - isn.NEAR_WRAP_SPAN <= v < 2**32 - isn.NEAR_WRAP_SPAN // 2
                   for v in values)
        assert len(set(values)) > 150  # still different per connection and time
    finally:
        isn.set_near_wrap(False)
    spread = {isn.initial_sequence_number(secret, 1.0, local, (remote[0], p)) >> 28
              for p in range(40000, 40200)}
    assert len(spread) > 8  # off again: anywhere in the 32-bit space


def test_the_beside_lab_stack_runs_without_a_swap(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`labkit stack --beside-lab` with no --swap runs the reference (to compare), instead
    of refusing; it reaches tcplab stack with the beside-lab options."""
    import stack.cli

    seen: list[list[str]] = []
    monkeypatch.delenv("TCPLAB_SWAP", raising=False)
    monkeypatch.setattr(stack.cli, "main", lambda argv: seen.append(argv) or 0)
    assert labkit_main(["stack", "--beside-lab", "--no-offload"]) == 0
    assert seen and seen[0][:3] == ["stack", "--tun", "swap0"] and "--no-offload" in seen[0]
    assert "the reference components" in capsys.readouterr().err


def test_the_reference_solutions_fill_every_learner_file(tmp_path: Path) -> None:
    from stack.labkit.reference.solutions import write_solutions

    dest = write_solutions(tmp_path, LABS)
    for slot in SLOTS.values():
        folder = next((dest / "labs").glob(f"{slot.lab}-*"))
        for name in slot.files:
            text = (folder / name).read_text()
            assert "NotImplementedError" not in text and len(text) > 100, name


def test_plugging_the_ipv6_options_function_into_the_stack(tmp_path: Path) -> None:
    """Lab 11's slot is a function: plugging rebinds the name walk_headers calls, and
    unplugging restores the reference (RFC 8200 section 4.2: 0x9e draws a Parameter
    Problem; the learner's function below lets everything pass)."""
    from stack.wire import ipv6

    lax = tmp_path / "options.py"
    lax.write_text("def process_options(view, i, end, to_multicast):\n    return None\n")
    packet = (bytes.fromhex("6000000000083c40") + bytes(15) + b"\x01" + bytes(15) + b"\x02"
              + bytes([59, 0, 0x9E, 4]) + bytes(4))
    with pytest.raises(ipv6.ParameterProblem):
        ipv6.walk_headers(packet)
    slot = find_slot("11")
    plugged = plug(slot, load_learner(slot, lax))
    try:
        assert "stack.wire.ipv6.process_options" in plugged.where
        assert ipv6.walk_headers(packet).next_header == 59
    finally:
        unplug(plugged)
    with pytest.raises(ipv6.ParameterProblem) as caught:
        ipv6.walk_headers(packet)
    assert (caught.value.code, caught.value.pointer) == (2, 42)


def test_the_compose_networks_ipv6_prefix_follows_the_ipv4_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from stack.tools.lab import DEFAULT_NET_PREFIX, Lab, net6_prefix

    monkeypatch.delenv("TCPLAB_NET6_PREFIX", raising=False)

    assert net6_prefix("172.28.0") == "fd00:172:28:0"
    assert net6_prefix("172.28.211") == "fd00:172:28:211"
    compose = (ROOT / "docker-compose.yml").read_text()
    assert f"${{TCPLAB_NET6_PREFIX:-{net6_prefix(DEFAULT_NET_PREFIX)}}}::/64" in compose
    lab = Lab(root=ROOT, compose=["true"], env={"TCPLAB_NET_PREFIX": "10.99.7"})
    assert lab.environ["TCPLAB_NET6_PREFIX"] == "fd00:10:99:7"
    lab = Lab(root=ROOT, compose=["true"], env={"TCPLAB_NET6_PREFIX": "fd00:1:2:3"})
    assert lab.environ["TCPLAB_NET6_PREFIX"] == "fd00:1:2:3"
