"""Compare the segment a script expects with the one the stack sent.

packetdrill compares every field. Some of the FreeBSD suite's expectations are values
that FreeBSD chose where the RFCs leave the choice to the implementation; checking them
would fail any other stack for no protocol reason. Each such check is relaxed by one
rule below, named, with the RFC clause that leaves the value open. `strict=True` turns
every relaxation off (`tcplab drill --strict`).

A relaxation never hides a protocol difference: the flags, sequence and acknowledgment
numbers, payload length, the presence of each option, MSS, SACK blocks (in order) and
TSecr are always compared exactly; so is the encapsulation (plain TCP, or TCP over UDP
with its two UDP ports).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stack.drill.model import TcpOpt, TcpPacket
from stack.drill.packets import (
    ECN_CODEPOINTS,
    FLAG_BITS,
    MASK32,
    Decoded,
    flags_text,
    flags_value,
    udp_text,
)


@dataclass(frozen=True)
class Relaxation:
    name: str
    what: str
    rfc: str


RELAXATIONS: dict[str, Relaxation] = {r.name: r for r in (
    Relaxation(
        "option-layout",
        "TCP options are compared as a set: their order and the NOP/EOL padding "
        "between them are not compared (SACK blocks keep their order)",
        "RFC 9293 3.1 (Options: an option may begin on any octet boundary; no order "
        "is prescribed); RFC 7323 Appendix A (the NOP layout is a recommendation)",
    ),
    Relaxation(
        "wscale-value",
        "the window scale shift the stack offers in its SYN or SYN-ACK is any valid "
        "value (0-14), not FreeBSD's 6 (it depends on the receive buffer)",
        "RFC 7323 2.3 (the shift count is chosen by the data receiver from its "
        "buffer size; at most 14)",
    ),
    Relaxation(
        "window-value",
        "the advertised window is not compared, except that an expected zero window "
        "must be zero and a non-zero one non-zero (the value is the receiver's "
        "buffer policy)",
        "RFC 9293 3.8.6 and 3.8.6.2.2 (the receive window is the receiver's choice, "
        "limited only by 'do not shrink' and SWS avoidance); 3.10.7 (RST windows "
        "are not examined)",
    ),
    Relaxation(
        "psh-flag",
        "PSH on a data segment is not compared",
        "RFC 9293 3.9.1 and RFC 1122 4.2.2.2 (a sender MAY set PSH; a receiver must "
        "not depend on it)",
    ),
    Relaxation(
        "ts-value",
        "the stack's TSval is not compared (packetdrill's default as well); TSecr is",
        "RFC 7323 5.4 (the timestamp clock rate is the sender's choice, 1 ms to 1 s "
        "per tick)",
    ),
    Relaxation(
        "buffer-size",
        "getsockopt SO_RCVBUF/SO_SNDBUF values are not compared",
        "no RFC prescribes socket buffer sizes; RFC 9293 3.8.6 leaves the receive "
        "buffer (and so the window) to the implementation",
    ),
)}  # fmt: skip

_PADDING = ("nop", "eol")


def _opt_key(o: TcpOpt) -> tuple[str, object]:
    return (o.kind, tuple(o.value) if isinstance(o.value, list) else o.value)


def compare(
    exp: TcpPacket, act: Decoded, *, strict: bool = False, used: set[str] | None = None
) -> list[str]:
    """The differences, each `field: expected X, actual Y`; empty if they match.

    `used` collects the names of the relaxations that made a difference here.
    """
    diffs: list[str] = []
    used = used if used is not None else set()

    def relax(name: str) -> bool:
        if strict:
            return False
        used.add(name)
        return True

    if act.icmp is not None:
        return [f"expected a TCP segment, got {act.text()}"]
    if exp.udp != act.udp:
        # TCP over UDP (stack/tcp_over_udp.py): the way the segment travels, and its ports.
        diffs.append(f"udp: expected {udp_text(exp.udp) or 'plain TCP'}, actual {udp_text(act.udp) or 'plain TCP'}")
    want_flags = flags_value(exp.flags)
    got_flags = act.flags
    if want_flags != got_flags:
        psh = FLAG_BITS["P"]
        if (want_flags ^ got_flags) == psh and act.length > 0 and relax("psh-flag"):
            pass
        else:
            diffs.append(f"flags: expected {flags_text(want_flags)}, actual {flags_text(got_flags)}")
    if exp.seq is not None:
        got_seq = act.raw_seq if exp.absolute_seq else act.seq
        if exp.seq & MASK32 != got_seq:
            diffs.append(f"seq: expected {exp.seq}, actual {got_seq}")
    if exp.length != act.length:
        diffs.append(f"length: expected {exp.length}, actual {act.length}")
    if exp.ack is not None and exp.ack & MASK32 != act.ack and got_flags & FLAG_BITS["."]:
        diffs.append(f"ack: expected {exp.ack}, actual {act.ack}")
    if exp.win is not None and exp.win != act.win:
        if (exp.win == 0) == (act.win == 0) and relax("window-value"):
            pass
        else:
            diffs.append(f"win: expected {exp.win}, actual {act.win}")
    if exp.ecn is not None and ECN_CODEPOINTS[exp.ecn] != act.tos & 3:
        diffs.append(f"ecn: expected [{exp.ecn}], actual codepoint {act.tos & 3}")
    if exp.tos is not None:
        # (tos 0xNN) / (class 0xNN): the whole byte, or its DSCP bits when the line
        # states the ECN codepoint on its own ([ect0], ...).
        mask = 0xFC if exp.ecn is not None else 0xFF
        if exp.tos & mask != act.tos & mask:
            diffs.append(f"tos: expected {exp.tos:#04x}, actual {act.tos:#04x}")
    if exp.ttl is not None and exp.ttl != act.ttl:
        diffs.append(f"ttl: expected {exp.ttl}, actual {act.ttl}")
    if not exp.any_options:
        diffs.extend(_compare_options(exp.options or [], act.options, relax))
    return diffs


def _compare_options(
    exp: list[TcpOpt], act: list[TcpOpt], relax: Callable[[str], bool]
) -> list[str]:
    want = [o for o in exp if o.kind not in _PADDING]
    got = [o for o in act if o.kind not in _PADDING]
    diffs: list[str] = []
    # Pair the options by kind.
    remaining = list(got)
    for w in want:
        match = next((g for g in remaining if g.kind == w.kind), None)
        if match is None:
            diffs.append(f"option {w}: expected, but missing")
            continue
        remaining.remove(match)
        if w.kind == "wscale" and w.value != match.value:
            if not (0 <= match.value <= 14 and relax("wscale-value")):
                diffs.append(f"option wscale: expected {w.value}, actual {match.value}")
        elif w.kind == "TS":
            if w.value[1] != match.value[1]:
                diffs.append(f"option TS ecr: expected {w.value[1]}, actual {match.value[1]}")
            if w.value[0] != match.value[0] and not relax("ts-value"):
                diffs.append(f"option TS val: expected {w.value[0]}, actual {match.value[0]}")
        elif _opt_key(w) != _opt_key(match):
            diffs.append(f"option {w.kind}: expected {w}, actual {match}")
    for g in remaining:
        diffs.append(f"option {g}: not expected")
    if not diffs and [o.kind for o in exp] != [o.kind for o in act]:
        # The same options (values compared above), in another order or padding.
        if not relax("option-layout"):
            diffs.append(
                "options layout: expected <" + ",".join(map(str, exp)) + ">, actual <"
                + ",".join(map(str, act)) + ">"
            )
    return diffs
