"""`tcplab drill --daemon` without root: the daemon's flags, the skips, `--tcp-default`.

The mode itself (namespace, daemon, shim) is tests/integration/test_drill_daemon.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.cli import build_parser
from stack.drill.adapter import StackSettings
from stack.drill.live import DaemonRunner, LiveNamespace, LiveOptions, daemon_args, nominal_seconds
from stack.drill.model import Unsupported
from stack.drill.parser import parse_script
from stack.drill.runner import apply_sysctl

HEAD = " 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0.00 bind(3, ..., ...) = 0\n"


def _preflight(text: str, **options: float) -> DaemonRunner:
    runner = DaemonRunner(parse_script(text, "t.pkt"), LiveNamespace("unused-"), LiveOptions(**options))
    runner.preflight()
    return runner


def test_sysctls_become_daemon_flags() -> None:
    s = StackSettings()
    for cmd in ("sysctl -w net.inet.tcp.insecure_rst=1", "sysctl -w net.inet.tcp.sack.enable=0",
                "sysctl -w net.inet.tcp.delacktime=40", "sysctl -w net.inet.tcp.ecn.enable=1"):
        apply_sysctl(s, cmd)
    args = daemon_args(s)
    assert "--insecure-rst" in args and "--insecure-syn" not in args
    assert "--tcp-default=sack=0" in args
    assert "--tcp-default=delayed_ack=0.04" in args
    assert "--ecn=1" in args
    assert "--tcp-default=recv_buffer=65536" in args  # FreeBSD's default, as the sans-IO mode
    parsed = build_parser().parse_args(["stack", *args])
    assert ("sack", False) in parsed.tcp_default and ("delayed_ack", 0.04) in parsed.tcp_default


@pytest.mark.parametrize("bad", ["mss=1000", "sack=2", "recv_buffer=-1", "delayed_ack"])
def test_tcp_default_rejects_what_it_does_not_know(bad: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["stack", "--tcp-default", bad])


def test_nominal_seconds_adds_the_script_times() -> None:
    text = HEAD + "+0.50 listen(3, 1) = 0\n 2.00 close(3) = 0\n+1.25 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
    script = parse_script(text, "t.pkt")
    assert nominal_seconds(script) == pytest.approx(3.25)


def test_skips_what_the_daemon_mode_cannot_run() -> None:
    with pytest.raises(Unsupported, match="tcpdrop"):
        _preflight(HEAD + "+0.00 `tcpdrop -s TIME_WAIT`\n")
    # A sysctl between other events restarts the daemon (line 3 here), if it holds nothing.
    middle = _preflight(HEAD + "+0.00 `sysctl -w net.inet.tcp.insecure_rst=1`\n+0.00 listen(3, 1) = 0\n")
    assert middle.restart_at == {3}
    with pytest.raises(Unsupported, match="real time"):
        _preflight(HEAD + "+40 close(3) = 0\n")
    # Leading sysctls are the daemon's flags; trailing ones (restoring defaults) are fine.
    ends = _preflight(" 0.00 `sysctl -w net.inet.tcp.insecure_rst=1`\n" + HEAD.replace(" 0.00", "+0.00", 1)
                      + "+0.00 close(3) = 0\n+0.00 `sysctl -w net.inet.tcp.insecure_rst=0`\n")
    assert ends.restart_at == set()
    _preflight(HEAD + "+40 close(3) = 0\n", max_seconds=60)


def test_lab_copies_match_the_lab_examples() -> None:
    """tests/drill/live/ holds copies of lab 12's examples (the lab's files are not read
    by the integration test): they must not drift apart."""
    root = Path(__file__).resolve().parents[2]
    for example in sorted((root / "labs" / "12-packetdrill" / "examples").glob("*.pkt")):
        assert (root / "tests" / "drill" / "live" / example.name).read_text() == example.read_text()
