"""`tcplab drill` end to end on small scripts: the runner against the sans-IO host."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.cli import main
from stack.drill.parser import parse_script
from stack.drill.runner import Result, Runner

SERVER = """
--tolerance_usecs=10000
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0.00 bind(3, ..., ...) = 0
+0.00 listen(3, 1) = 0
+0.00 < S   0:0(0) win 65535 <mss 1460,sackOK,eol,eol>
+0.00 > S.  0:0(0) ack 1 win 65535 <mss 1460,sackOK,eol,eol>
+0.01 <  .  1:1(0) ack 1 win 65535
+0.00 accept(3, ..., ...) = 4
"""


def run(text: str, strict: bool = False) -> Result:
    return Runner(parse_script(text, "t.pkt"), strict=strict).run()


def test_passive_open_and_data_pass() -> None:
    r = run(SERVER + """
+0.00 < P. 1:101(100) ack 1 win 65535
+0.00 recv(4, ..., 1024, MSG_PEEK) = 100
+0.00 read(4, ..., 1000) = 100
+0.05 write(4, ..., 10) = 10
+0.00 > P. 1:11(10) ack 101 win 65535
+0.01 < . 101:101(0) ack 11 win 65535
+0.00 close(4) = 0
+0.00 > F. 11:11(0) ack 101 win 65535
""")
    assert (r.status, r.reason) == ("passed", "")
    assert "option-layout" in r.relaxations  # tcplab pads with NOPs, FreeBSD with EOLs


SERVER6 = "--ip_version=ipv6\n" + SERVER.replace("mss 1460", "mss 1440")


def test_ipv6_passive_open_data_and_close_pass() -> None:
    """An AF_INET6 socket on the stack's fd3d:fa7b:d17d::1; its SYN-ACK offers the IPv6
    MSS, 20 octets less than IPv4's for the same MTU (RFC 8200 8.3)."""
    r = run(SERVER6 + """
+0.00 < P. 1:101(100) ack 1 win 65535
+0.00 read(4, ..., 1000) = 100
+0.00 write(4, ..., 10) = 10
+0.00 > P. 1:11(10) ack 101 win 65535
+0.01 < . 101:101(0) ack 11 win 65535
+0.00 close(4) = 0
+0.00 > F. 11:11(0) ack 101 win 65535
+0.01 < F. 101:101(0) ack 12 win 65535
+0.00 > . 12:12(0) ack 102 win 65534
+0.00 `sockstat -6 -P tcp -s | grep packetdril | grep -c TIME_WAIT | grep 1`
+0.00 `sockstat -4 -P tcp -s | grep packetdril | grep -c TIME_WAIT | grep 0`
""")
    assert (r.status, r.reason) == ("passed", "")


def test_ipv6_mss_is_checked() -> None:
    r = run("--ip_version=ipv6\n" + SERVER)  # an IPv6 script expecting IPv4's 1460
    assert r.status == "failed" and "mss" in r.reason and "1440" in r.reason


def test_ipv6_active_open_and_icmpv6_port_unreachable() -> None:
    """connect() to 2001:db8::1; an ICMPv6 port unreachable quoting the SYN (ISS) is
    a hard error in SYN-SENT (RFC 4443 3.1 code 4), one quoting ISS+1 is not believed
    (RFC 5927 4.1)."""
    r = run("""--ip_version=ipv6
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0.00 > S 0:0(0) win 65535 <mss 1440,nop,wscale 6,sackOK,TS val 100 ecr 0>
+0.10 < icmp unreachable port_unreachable [1:1(0)]
+0.00 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0
+0.10 < icmp unreachable port_unreachable [0:0(0)]
+0.00 getsockopt(3, SOL_SOCKET, SO_ERROR, [ECONNREFUSED], [4]) = 0
""")
    assert (r.status, r.reason) == ("passed", "")


def test_strict_mode_fails_on_option_layout() -> None:
    r = run(SERVER, strict=True)
    assert r.status == "failed" and "options layout" in r.reason


def test_failure_report_is_decoded() -> None:
    r = run(SERVER + """
+0.00 < F. 1:1(0) ack 1 win 65535
+0.00 > . 1:1(0) ack 5 win 65535
""")
    assert r.status == "failed"
    assert r.reason == "line 13: ack: expected 5, actual 2"
    assert "line 13: +0.00 > . 1:1(0) ack 5 win 65535" in r.report
    assert "expected:    0.010 . 1:1(0) ack 5 win 65535" in r.report
    assert "actual:      0.010 . 1:1(0) ack 2 win 65534" in r.report


def test_timing_tolerance() -> None:
    # The delayed ACK leaves after net.inet.tcp.delacktime (40 ms here), not at once.
    base = SERVER.replace("--tolerance_usecs=10000\n", "--tolerance_usecs=10000\n0 `sysctl -w net.inet.tcp.delacktime=40`\n")
    late = run(base + "+0.00 < . 1:11(10) ack 1 win 65535\n+0.00 > . 1:1(0) ack 11 win 65535\n")
    assert late.status == "failed" and "too late" in late.reason
    ok = run(base + "+0.00 < . 1:11(10) ack 1 win 65535\n+0.04 > . 1:1(0) ack 11 win 65535\n")
    assert ok.status == "passed", ok.report


def test_active_open_retransmits_on_the_virtual_clock() -> None:
    r = run("""
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 fcntl(3, F_GETFL) = 0x02 (flags O_RDWR)
+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0.00 > S 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>
+1.00 > S 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 1100 ecr 0>
+0.10 < S. 0:0(0) ack 1 win 32767 <mss 1460,nop,wscale 2,sackOK,TS val 7 ecr 1100>
+0.00 > . 1:1(0) ack 1 win 1024 <nop,nop,TS val 1200 ecr 7>
+0.00 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0
+0.00 %{ assert tcpi_state == TCPI_ESTABLISHED }%
""")
    assert r.status == "passed", r.report


def test_blocking_accept_waits_for_the_handshake() -> None:
    r = run("""
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 bind(3, ..., ...) = 0
+0.00 listen(3, 1) = 0
 0.00...0.20 accept(3, ..., ...) = 4
+0.10 < S 0:0(0) win 65535 <mss 1460>
+0.00 > S. 0:0(0) ack 1 win 65535 <mss 1460>
+0.10 < . 1:1(0) ack 1 win 65535
+0.00 close(4) = 0
""")
    assert r.status == "passed", r.report


def test_errno_results() -> None:
    r = run("""
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0.00 bind(3, ..., ...) = 0
+0.00 listen(3, 1) = 0
+0.00 accept(3, ..., ...) = -1 EWOULDBLOCK (Operation would block)
+0.00 read(3, ..., 10) = -1 ENOTCONN
""")
    assert r.status == "passed", r.report
    r = run(" 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 listen(3, 1) = -1 EINVAL\n")
    assert r.status == "failed" and r.reason == "line 2: listen() returned 0, expected -1 EINVAL"


@pytest.mark.parametrize(
    ("text", "reason"),
    [("--ip_version=ipv4-mapped-ipv6\n", "not supported: --ip_version=ipv4-mapped-ipv6"),
     ("0 `sysctl -w net.inet.tcp.syncookies_only=1`\n", "not supported: sysctl net.inet.tcp.syncookies_only"),
     ("0 `ls`\n", "not supported: shell command `ls`"),
     ("0 poll(3, 1, 0) = 0\n", "not supported: system call poll()"),
     ("0 setsockopt(3, IPPROTO_TCP, TCP_NOOPT, [1], 4) = 0\n", "not supported: socket option TCP_NOOPT"),
     ("0 <[ect01] S 0:0(0) win 1\n", "not supported: the [ect01] ECN codepoint set"),
     ("0 < S 0:0(0) win 1 <md5 valid>\n", "not supported: TCP MD5 signature option")],
)  # fmt: skip
def test_unsupported_constructs_skip(text: str, reason: str) -> None:
    r = run(text)
    assert r.status == "skipped"
    assert r.reason.startswith(reason)


def test_cli_summary_and_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "good.pkt").write_text(SERVER)
    (tmp_path / "bad.pkt").write_text(SERVER + "+0 > R 1:1(0) win 0\n")
    (tmp_path / "md5.pkt").write_text("--tcp_md5_secret=secret\n")
    assert main(["drill", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "1 passed, 1 failed, 1 skipped"
    assert len(out) == 4
    assert main(["drill", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 passed, 0 failed, 0 skipped"
    assert main(["drill", str(tmp_path / "missing.pkt")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_learners_example_in_the_docs_passes_strictly(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "drill.md").read_text()
    section = doc.split("## Writing your own script", 1)[1]
    script = section.split("```\n", 2)[1]
    r = Runner(parse_script(script, "hello.pkt"), strict=True).run()
    assert r.status == "passed", f"{r.reason}\n{r.report}"


def test_a_stack_exception_is_a_failure_with_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from stack.drill import adapter

    def boom(self: object, packet: bytes) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(adapter.StackAdapter, "inject", boom)
    r = run(SERVER)
    assert r.status == "failed" and r.reason == "the stack raised RuntimeError('boom')"
    assert "Traceback" in r.report


def test_fast_open_client_the_freebsd_way() -> None:
    """FreeBSD's client API for TCP Fast Open (RFC 7413): TCP_FASTOPEN on a socket not
    listening, then sendto() to the peer as an implied connect. The first SYN asks for a
    cookie (an empty FO option, kind 34); the next one carries the cookie and the data."""
    r = run("""
--tolerance_usecs=10000
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 setsockopt(3, IPPROTO_TCP, TCP_FASTOPEN, [1], 4) = 0
+0.00 sendto(3, ..., 100, 0, ..., ...) = 100
+0.00 > S 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 0 ecr 0,FO,eol,eol>
+0.05 < S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,FO 0102030405060708>
+0.00 > P. 1:101(100) ack 1 win 65535
+0.05 < . 1:1(0) ack 101 win 65535
+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 4
+0.00 setsockopt(4, IPPROTO_TCP, TCP_FASTOPEN, [1], 4) = 0
+0.00 sendto(4, ..., 100, 0, ..., ...) = 100
+0.00 > S 0:100(100) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 0 ecr 0,FO 0102030405060708,eol,eol>
+0.05 < S. 0:0(0) ack 101 win 65535 <mss 1460,sackOK>
+0.00 > . 101:101(0) ack 1 win 65535
""")
    assert r.status == "passed", r.reason + "\n" + r.report
