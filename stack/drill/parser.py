"""Parse packetdrill scripts (.pkt) into the model (stack/drill/model.py).

The grammar is packetdrill's, as the FreeBSD tcp-testsuite uses it (written from the
scripts and packetdrill's documentation, not from its code):

    --name=value                       an option line (--ip_version, --tolerance_usecs, --mtu)
    #ifdef NAME / #else / #endif        conditional lines (NAME defined with `defines`)
    // comment, /* comment */
    TIME EVENT                          TIME: 0.1 (absolute), +0.1 (relative), * (any),
                                        A...B (a range: the event ends between A and B)
    EVENT:
      < FLAGS seq:end(len)[!] [ack N] [win N] [<opt,...>] [/udp(a > b)]   inbound segment
                                        (/udp: TCP over UDP, from UDP port a to b)
      > ...                                                               outbound segment
        prefixed by (ttl N) (tos 0xNN) [noecn] [ect0] [ect1] [ce] as written
        (IPv6: (hlim N) for the Hop Limit, (class 0xNN) for the Traffic Class)
      < icmp TYPE [CODE] [mtu N] [seq:end(len)[/udp(a > b)]]              inbound ICMP error
      name(arg, ...) = RESULT [ERRNO (text)]                              system call
      `shell command`                                                     shell command
      %{ python }%                                                        code block

Options in <...>: mss N, wscale N, sackOK, sack L:R ..., TS val N ecr N, nop, eol,
FO [hex], md5 valid; `<...>` matches any options.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from stack.drill.model import (
    CodeBlock,
    Event,
    IcmpPacket,
    PacketEvent,
    Script,
    ScriptError,
    ShellCommand,
    Syscall,
    TcpOpt,
    TcpPacket,
    Timing,
)

DEFAULT_DEFINES = frozenset({"STANDARD"})  # the implementation-neutral #ifdef branches

_NUM = r"\d+(?:\.\d*)?|\.\d+"
_TIME_RE = re.compile(
    rf"^\s*(?:(?P<any>\*)|(?P<plus>\+)?\s*(?P<start>{_NUM})"
    rf"(?:\s*\.\.\.\s*(?P<plus2>\+)?\s*(?P<end>{_NUM}))?)\s+(?P<rest>.*)$",
    re.S,
)
_SEQ_RE = re.compile(r"^(?:(\d+):(\d+)|\.\.\.)\((\d+)\)(!?)$")
_FLAGS_RE = re.compile(r"^[SFRPEWU.]+$")


class Lexer:
    """Tokens of a system call line: numbers, names, strings and punctuation."""

    _TOKEN = re.compile(
        r"\s*(?:(?P<num>-?0[xX][0-9a-fA-F]+|-?\d+)|(?P<name>[A-Za-z_][A-Za-z_0-9.]*)"
        r'|(?P<str>"(?:[^"\\]|\\.)*")|(?P<ell>\.\.\.)|(?P<punct>[()\[\]{},=|&]))'
    )

    def __init__(self, text: str, line: int) -> None:
        self.text = text
        self.pos = 0
        self.line = line

    def peek(self) -> tuple[str, str] | None:
        m = self._TOKEN.match(self.text, self.pos)
        if m is None or m.end() == self.pos and not m.lastgroup:
            return None
        kind = m.lastgroup or ""
        return kind, m.group(kind)

    def next(self) -> tuple[str, str]:
        m = self._TOKEN.match(self.text, self.pos)
        if m is None or m.lastgroup is None:
            raise ScriptError(self.line, f"cannot read {self.text[self.pos:].strip()!r}")
        self.pos = m.end()
        return m.lastgroup, m.group(m.lastgroup)

    def expect(self, value: str) -> None:
        kind, text = self.next()
        if text != value:
            raise ScriptError(self.line, f"expected {value!r}, found {text!r}")

    def rest(self) -> str:
        return self.text[self.pos :].strip()


def parse_expr(lex: Lexer) -> Any:
    """expr := term ('|' term)*; a term is a number, a NAME, `...`, [list], {struct}."""
    value = _parse_term(lex)
    while (tok := lex.peek()) is not None and tok[1] == "|":
        lex.next()
        value = ("|", value, _parse_term(lex))
    return value


def _parse_term(lex: Lexer) -> Any:
    kind, text = lex.next()
    if kind == "num":
        return int(text, 0)
    if kind == "name":
        return text
    if kind == "str":
        return ("str", text[1:-1])
    if kind == "ell":
        return ...
    if text == "[":
        items = []
        while (tok := lex.peek()) is not None and tok[1] != "]":
            items.append(parse_expr(lex))
            if (tok := lex.peek()) is not None and tok[1] == ",":
                lex.next()
        lex.expect("]")
        return ("list", items)
    if text == "{":
        fields: dict[str, Any] = {}
        while (tok := lex.peek()) is not None and tok[1] != "}":
            _, name = lex.next()
            lex.expect("=")
            fields[name] = parse_expr(lex)
            if (tok := lex.peek()) is not None and tok[1] == ",":
                lex.next()
        lex.expect("}")
        return ("struct", fields)
    raise ScriptError(lex.line, f"unexpected {text!r}")


def parse_syscall(text: str, line: int) -> Syscall:
    m = re.match(r"^([a-z_][a-z_0-9]*)\s*\((.*)$", text, re.S)
    if m is None:
        raise ScriptError(line, f"not an event: {text!r}")
    name = m.group(1)
    lex = Lexer(m.group(2), line)
    args: list[Any] = []
    while (tok := lex.peek()) is not None and tok[1] != ")":
        args.append(parse_expr(lex))
        if (tok := lex.peek()) is not None and tok[1] == ",":
            lex.next()
    lex.expect(")")
    lex.expect("=")
    result = parse_expr(lex)
    errno_name = None
    note = None
    rest = lex.rest()
    em = re.match(r"^([A-Z][A-Z0-9_]*)\s*(?:\((.*)\))?\s*$", rest)
    if em is not None:
        errno_name, note = em.group(1), em.group(2)
    elif rest.startswith("(") and rest.endswith(")"):
        note = rest[1:-1]
    elif rest:
        raise ScriptError(line, f"cannot read after the result: {rest!r}")
    return Syscall(name, args, result, errno_name, note)


# ------------------------------------------------------------------ packets


def parse_options(text: str, line: int) -> list[TcpOpt]:
    opts: list[TcpOpt] = []
    for part in (p.strip() for p in text.split(",")):
        words = part.split()
        if not words:
            raise ScriptError(line, f"empty TCP option in <{text}>")
        kind = words[0]
        try:
            if kind in ("nop", "eol", "sackOK") and len(words) == 1:
                opts.append(TcpOpt(kind))
            elif kind in ("mss", "wscale") and len(words) == 2:
                opts.append(TcpOpt(kind, int(words[1], 0)))
            elif kind == "sack":
                blocks = []
                for w in words[1:]:
                    left, right = w.split(":")
                    blocks.append((int(left), int(right)))
                opts.append(TcpOpt("sack", blocks))
            elif kind == "TS" and len(words) == 5 and words[1] == "val" and words[3] == "ecr":
                opts.append(TcpOpt("TS", (int(words[2]), int(words[4]))))
            elif kind == "FO" and len(words) <= 2:
                opts.append(TcpOpt("FO", bytes.fromhex(words[1]) if len(words) == 2 else b""))
            elif kind == "md5":
                opts.append(TcpOpt("md5", None))
            else:
                raise ValueError(part)
        except ValueError:
            raise ScriptError(line, f"cannot read TCP option {part!r}") from None
    return opts


def _split_udp(text: str) -> tuple[str, tuple[int, int] | None]:
    m = re.search(r"/udp\(\s*(\d+)\s*>\s*(\d+)\s*\)\s*$", text)
    if m is None:
        return text, None
    return text[: m.start()].rstrip(), (int(m.group(1)), int(m.group(2)))


def parse_packet(direction: str, text: str, line: int) -> PacketEvent:
    text = text.strip()
    ttl = tos = None
    ecn = None
    # ip attributes, in any order: (ttl N) (tos 0xNN) [noecn]; for IPv6 (hlim N), the
    # Hop Limit, and (class 0xNN), the Traffic Class (RFC 8200 section 3)
    while True:
        m = re.match(r"^\((ttl|tos|hlim|class)\s+(0[xX][0-9a-fA-F]+|\d+)\)\s*", text)
        if m is not None:
            if m.group(1) in ("ttl", "hlim"):
                ttl = int(m.group(2), 0)
            else:
                tos = int(m.group(2), 0)
            text = text[m.end() :]
            continue
        m = re.match(r"^\[(noecn|ect0|ect1|ce|ect01)\]\s*", text)
        if m is not None:
            ecn = m.group(1)
            text = text[m.end() :]
            continue
        break
    if text.startswith("icmp"):
        return PacketEvent(direction, _parse_icmp(text, line))
    text, udp = _split_udp(text)
    options: list[TcpOpt] | None = None
    any_options = False
    m = re.search(r"<([^<>]*)>\s*$", text)
    if m is not None:
        if m.group(1).strip() == "...":
            any_options = True
        else:
            options = parse_options(m.group(1), line)
        text = text[: m.start()].strip()
    words = text.split()
    if len(words) < 2 or not _FLAGS_RE.match(words[0]):
        raise ScriptError(line, f"cannot read the packet {text!r}")
    flags = words[0]
    sm = _SEQ_RE.match(words[1])
    if sm is None:
        raise ScriptError(line, f"cannot read the sequence numbers {words[1]!r}")
    seq = int(sm.group(1)) if sm.group(1) is not None else None
    end = int(sm.group(2)) if sm.group(2) is not None else None
    length = int(sm.group(3))
    if seq is not None and end is not None and (end - seq) & 0xFFFFFFFF != length:
        raise ScriptError(line, f"{words[1]}: end - start is not the length")
    pkt = TcpPacket(flags, seq, end, length, absolute_seq=bool(sm.group(4)),
                    options=options, any_options=any_options, udp=udp, ttl=ttl, tos=tos, ecn=ecn)
    i = 2
    while i < len(words):
        key = words[i]
        if key in ("ack", "win", "urg") and i + 1 < len(words):
            try:
                value = int(words[i + 1])
            except ValueError:
                raise ScriptError(line, f"{key} {words[i + 1]!r} is not a number") from None
            if key == "ack":
                pkt.ack = value
            elif key == "win":
                pkt.win = value
            i += 2
        else:
            raise ScriptError(line, f"cannot read {key!r} in the packet")
    return PacketEvent(direction, pkt)


def _parse_icmp(text: str, line: int) -> IcmpPacket:
    m = re.match(
        r"^icmp\s+([a-z_]+)(?:\s+([a-z_0-9]+))?(?:\s+mtu\s+(\d+))?\s*"
        r"(?:\[\s*(\d+):(\d+)\((\d+)\)\s*(?:/udp\(\s*(\d+)\s*>\s*(\d+)\s*\))?\s*\])?\s*$",
        text,
    )
    if m is None:
        raise ScriptError(line, f"cannot read the ICMP packet {text!r}")
    seq = int(m.group(4) or 0)
    end = int(m.group(5) or 0)
    udp = (int(m.group(7)), int(m.group(8))) if m.group(7) is not None else None
    return IcmpPacket(m.group(1), m.group(2), seq, end, int(m.group(6) or 0),
                      udp=udp, mtu=int(m.group(3)) if m.group(3) else None)


# ------------------------------------------------------------------ lines


def _strip_comments(text: str) -> str:
    """Drop /* */ and // comments (not inside backticks, %{ }% or quotes)."""
    out = []
    i = 0
    in_tick = in_code = in_str = False
    while i < len(text):
        c = text[i]
        two = text[i : i + 2]
        if in_tick:
            in_tick = c != "`"
        elif in_code:
            if two == "}%":
                in_code = False
                out.append(two)
                i += 2
                continue
        elif in_str:
            in_str = c != '"'
        elif c == "`":
            in_tick = True
        elif two == "%{":
            in_code = True
        elif c == '"':
            in_str = True
        elif two == "//":
            j = text.find("\n", i)
            i = len(text) if j < 0 else j
            continue
        elif two == "/*":
            j = text.find("*/", i + 2)
            # keep the newlines so line numbers stay right
            skipped = text[i : len(text) if j < 0 else j + 2]
            out.append("\n" * skipped.count("\n"))
            i = len(text) if j < 0 else j + 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) of each statement; backtick commands and %{ }% may span lines."""
    lines = text.split("\n")
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        start = i
        cur = lines[i]
        while (cur.count("`") % 2 == 1 or cur.count("%{") > cur.count("}%")) and i + 1 < len(lines):
            i += 1
            cur += "\n" + lines[i]
        out.append((start + 1, cur))
        i += 1
    return out


def _timing(m: re.Match[str]) -> Timing:
    if m.group("any"):
        return Timing("any")
    start = float(m.group("start"))
    kind = "rel" if m.group("plus") else "abs"
    if m.group("end") is None:
        return Timing(kind, start)
    end_kind = "rel" if m.group("plus2") else "abs"
    return Timing(kind, start, float(m.group("end")), end_kind)


def parse_event(text: str, line: int) -> Event:
    if text.lstrip().startswith("`"):
        text = "+0 " + text.lstrip()  # a command with no time runs at once (set-up lines)
    m = _TIME_RE.match(text)
    if m is None:
        raise ScriptError(line, f"an event must start with its time: {text.strip()!r}")
    timing = _timing(m)
    rest = m.group("rest").strip()
    body: PacketEvent | Syscall | ShellCommand | CodeBlock
    if rest[:1] in "<>" and rest:
        body = parse_packet(rest[0], rest[1:], line)
    elif rest.startswith("`"):
        if not rest.endswith("`"):
            raise ScriptError(line, "unterminated shell command")
        body = ShellCommand(rest[1:-1].strip())
    elif rest.startswith("%{"):
        if not rest.endswith("}%"):
            raise ScriptError(line, "unterminated %{ }% block")
        body = CodeBlock(rest[2:-2].strip())
    else:
        body = parse_syscall(rest, line)
    return Event(line, text.strip(), timing, body)


def parse_script(text: str, path: str = "<script>", defines: frozenset[str] = DEFAULT_DEFINES) -> Script:
    script = Script(path)
    stack: list[bool] = []  # for each open #ifdef: is this branch taken
    for line, raw in _logical_lines(_strip_comments(text)):
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            words = stripped.split()
            if words[0] in ("#ifdef", "#ifndef") and len(words) == 2:
                taken = (words[1] in defines) == (words[0] == "#ifdef")
                stack.append(taken)
            elif words[0] == "#else" and stack:
                stack[-1] = not stack[-1]
            elif words[0] == "#endif" and stack:
                stack.pop()
            else:
                raise ScriptError(line, f"unknown directive {stripped!r}")
            continue
        if not all(stack):
            continue
        if stripped.startswith("--"):
            m = re.match(r"^--([a-z_0-9]+)(?:=(.*))?$", stripped)
            if m is None:
                raise ScriptError(line, f"cannot read the option {stripped!r}")
            script.options[m.group(1)] = (m.group(2) or "").strip()
            continue
        script.events.append(parse_event(raw, line))
    if stack:
        raise ScriptError(len(text.split("\n")), "#ifdef without #endif")
    return script


def parse_file(path: str | Path, defines: frozenset[str] = DEFAULT_DEFINES) -> Script:
    p = Path(path)
    return parse_script(p.read_text(encoding="utf-8", errors="replace"), str(p), defines)
