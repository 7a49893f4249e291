"""The parsed form of a packetdrill script."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Unsupported(Exception):  # noqa: N818 - it is a verdict, not an error
    """The script uses something the runner (or the stack) does not offer."""


class ScriptError(Exception):
    """The script text itself is malformed."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass
class Timing:
    """When an event happens.

    kind: "abs" (seconds from the start), "rel" (after the previous event), "any"
    (`*`: any time). `end` is set for a range `a...b` (same kind as the start).
    """

    kind: str
    start: float = 0.0
    end: float | None = None
    end_kind: str = "abs"


@dataclass
class TcpOpt:
    """One TCP option as written in a script: `mss 1460`, `nop`, `sack 1:100 200:300`..."""

    kind: str  # mss, wscale, sackOK, sack, TS, nop, eol, FO, md5, unknown
    value: Any = None  # int, list of (left, right), (val, ecr), bytes, None

    def __str__(self) -> str:
        if self.kind in ("nop", "eol", "sackOK"):
            return self.kind
        if self.kind == "sack":
            return "sack " + " ".join(f"{a}:{b}" for a, b in self.value)
        if self.kind == "TS":
            return f"TS val {self.value[0]} ecr {self.value[1]}"
        if self.kind == "FO":
            return "FO" + (f" {self.value.hex()}" if self.value else "")
        if self.kind == "md5":
            return "md5 valid"
        return f"{self.kind} {self.value}"


@dataclass
class TcpPacket:
    """`[ip attrs] FLAGS start:end(len)[!] [ack N] [win N] [<options>]` (and /udp(...))."""

    flags: str  # letters among S F R P . E W U, as written
    seq: int | None  # None for `...`
    end: int | None
    length: int
    absolute_seq: bool = False  # `!`: the sequence number is not relative to our ISS
    ack: int | None = None
    win: int | None = None
    options: list[TcpOpt] | None = None  # None: no option list given (so no options)
    any_options: bool = False  # `<...>`
    udp: tuple[int, int] | None = None  # /udp(sport > dport): TCP over UDP
    ttl: int | None = None
    tos: int | None = None
    ecn: str | None = None  # [noecn] [ect0] [ect1] [ce]


@dataclass
class IcmpPacket:
    """`icmp TYPE [CODE] [start:end(len)]`: an ICMP error quoting one of our segments."""

    type_name: str
    code_name: str | None
    seq: int
    end: int
    length: int
    udp: tuple[int, int] | None = None  # [.../udp(sport > dport)]: quoting a TCP-over-UDP segment
    mtu: int | None = None


@dataclass
class PacketEvent:
    direction: str  # "<" inbound (to the stack), ">" outbound (from the stack)
    packet: TcpPacket | IcmpPacket


@dataclass
class Syscall:
    """`name(args) = result [ERRNO (text)]`; args are parsed expressions (see parser)."""

    name: str
    args: list[Any]
    result: Any  # an int, or a parsed expression
    errno_name: str | None = None
    note: str | None = None


@dataclass
class ShellCommand:
    command: str


@dataclass
class CodeBlock:
    """`%{ ... }%`: packetdrill runs Python with TCP_INFO fields in scope."""

    code: str


@dataclass
class Event:
    line: int
    text: str
    timing: Timing
    body: PacketEvent | Syscall | ShellCommand | CodeBlock


@dataclass
class Script:
    path: str
    options: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    @property
    def ip_version(self) -> str:
        return self.options.get("ip_version", "ipv4")

    @property
    def tolerance(self) -> float:
        """--tolerance_usecs (packetdrill's default is 4 ms)."""
        return int(self.options.get("tolerance_usecs", "4000")) / 1e6
