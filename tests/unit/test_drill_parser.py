"""The packetdrill script parser (stack/drill/parser.py)."""

from __future__ import annotations

import pytest

from stack.drill.model import (
    CodeBlock,
    IcmpPacket,
    PacketEvent,
    ScriptError,
    ShellCommand,
    Syscall,
    TcpPacket,
)
from stack.drill.parser import parse_event, parse_options, parse_script


def packet(text: str) -> TcpPacket:
    body = parse_event(text, 1).body
    assert isinstance(body, PacketEvent)
    assert isinstance(body.packet, TcpPacket)
    return body.packet


def test_options_lines_and_comments() -> None:
    s = parse_script(
        "// header\n--ip_version=ipv4\n--tolerance_usecs=25000\n/* a\nblock */\n"
        "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3 // trailing\n"
    )
    assert s.options == {"ip_version": "ipv4", "tolerance_usecs": "25000"}
    assert s.tolerance == 0.025
    assert len(s.events) == 1 and s.events[0].line == 6


def test_default_tolerance_is_packetdrills() -> None:
    assert parse_script("").tolerance == 0.004


@pytest.mark.parametrize(
    ("text", "kind", "start", "end"),
    [("0.10 close(3) = 0", "abs", 0.1, None), ("+0.5 close(3) = 0", "rel", 0.5, None),
     ("+ 0.00 close(3) = 0", "rel", 0.0, None), ("* close(3) = 0", "any", 0.0, None),
     (" 0.00...0.10 close(3) = 0", "abs", 0.0, 0.1)],
)  # fmt: skip
def test_timing(text: str, kind: str, start: float, end: float | None) -> None:
    t = parse_event(text, 1).timing
    assert (t.kind, t.start, t.end) == (kind, start, end)


def test_segment_with_options() -> None:
    p = packet("+0 > S. 0:0(0) ack 1 win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 7>")
    assert (p.flags, p.seq, p.end, p.length, p.ack, p.win) == ("S.", 0, 0, 0, 1, 65535)
    assert [str(o) for o in p.options or []] == ["mss 1460", "nop", "wscale 6", "sackOK", "TS val 100 ecr 7"]


def test_segment_without_options_and_data() -> None:
    p = packet("+0 < P. 1:101(100) ack 1 win 32767")
    assert (p.seq, p.end, p.length, p.options, p.any_options) == (1, 101, 100, None, False)


def test_sack_blocks_and_any_options() -> None:
    opts = parse_options("nop,nop,sack 600:700 400:500 200:300", 1)
    assert opts[2].value == [(600, 700), (400, 500), (200, 300)]
    assert packet("+0 > S 0:0(0) win 1 <...>").any_options


def test_ip_attributes_udp_and_absolute_sequence() -> None:
    p = packet("+0 > (ttl 4) R. 0:0(0)! ack 2 win 0/udp(9811 > 1)")
    assert (p.ttl, p.absolute_seq, p.udp, p.flags) == (4, True, (9811, 1), "R.")
    assert packet("+0 < (tos 0x28) . 1:1(0) ack 1 win 9").tos == 0x28
    assert packet("+0 <[noecn] . 1:1(0) ack 1 win 9").ecn == "noecn"
    assert packet("+0 > S. ...(0) ack 4 win 65535 <mss 1452>").seq is None


def test_length_must_match_the_range() -> None:
    with pytest.raises(ScriptError, match="not the length"):
        packet("+0 < . 1:100(10) ack 1 win 1")


def test_wrapping_range() -> None:
    p = packet("+0 < R 4294967295:4294967295(0) win 0")
    assert p.seq == 4294967295


def test_icmp() -> None:
    body = parse_event("+0.1 < icmp unreachable port_unreachable [1:1(0)]", 3).body
    assert isinstance(body, PacketEvent) and isinstance(body.packet, IcmpPacket)
    assert (body.packet.type_name, body.packet.code_name, body.packet.seq) == ("unreachable", "port_unreachable", 1)
    body = parse_event("+0 < icmp source_quench [0:0(0)]", 3).body
    assert isinstance(body, PacketEvent) and isinstance(body.packet, IcmpPacket)
    assert body.packet.code_name is None


def test_syscalls() -> None:
    sc = parse_event("+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)", 1).body
    assert isinstance(sc, Syscall)
    assert (sc.name, sc.args, sc.result, sc.errno_name) == ("connect", [3, ..., ...], -1, "EINPROGRESS")
    sc = parse_event("+0 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0", 1).body
    assert isinstance(sc, Syscall) and sc.args[2] == ("|", "O_RDWR", "O_NONBLOCK")
    sc = parse_event("+0 fcntl(3, F_GETFL) = 0x02 (flags O_RDWR)", 1).body
    assert isinstance(sc, Syscall) and (sc.result, sc.note) == (2, "flags O_RDWR")
    sc = parse_event("+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [ECONNRESET], [4]) = 0", 1).body
    assert isinstance(sc, Syscall) and sc.args[3] == ("list", ["ECONNRESET"])
    sc = parse_event("+0 write (4, ..., 10) = 10", 1).body
    assert isinstance(sc, Syscall) and sc.name == "write"


def test_shell_and_code() -> None:
    assert isinstance(parse_event("+0 `sysctl -w a.b=1`", 1).body, ShellCommand)
    body = parse_event("+0 %{ assert tcpi_state == TCPI_LISTEN }%", 1).body
    assert isinstance(body, CodeBlock) and body.code == "assert tcpi_state == TCPI_LISTEN"
    # A set-up command may come without a time, and span lines.
    s = parse_script("`echo a\n b`\n0 close(3) = 0\n")
    assert isinstance(s.events[0].body, ShellCommand) and s.events[1].line == 3


def test_ifdef() -> None:
    text = ("#ifdef STANDARD\n0 close(3) = 0\n#endif\n#ifdef FreeBSD\n0 close(4) = 0\n"
            "#else\n0 close(5) = 0\n#endif\n")
    fds = [e.body.args[0] for e in parse_script(text).events if isinstance(e.body, Syscall)]
    assert fds == [3, 5]
    fds = [e.body.args[0] for e in parse_script(text, defines=frozenset({"FreeBSD"})).events
           if isinstance(e.body, Syscall)]  # fmt: skip
    assert fds == [4]


def test_errors_name_the_line() -> None:
    with pytest.raises(ScriptError, match="line 2"):
        parse_script("0 close(3) = 0\n+0 < X 1:1(0) win 1\n")
    with pytest.raises(ScriptError, match="#endif"):
        parse_script("#ifdef STANDARD\n")
    with pytest.raises(ScriptError, match="time"):
        parse_script("close(3) = 0\n")
