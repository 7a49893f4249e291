"""Lab 12's check: the learner's packetdrill scripts, run by `tcplab drill`.

Unlike the other labs' checks this one reads no capture: it runs the learner's `.pkt`
scripts on the sans-IO stack (stack/drill/) and looks at what they say. Three scripts,
each judged in two ways -- it passes, and it shows what the exercise asks for:

* ``hello.pkt``: a handshake (either side's SYN), data each way, a FIN each way;
* ``blind-rst.pkt``: an RST the stack answers with an ACK -- RFC 5961 3.2's challenge
  ACK -- with the mitigation on (no `insecure_rst=1`);
* ``blind-rst-insecure.pkt``: with `sysctl -w net.inet.tcp.insecure_rst=1` an RST
  resets, and the same script without that line fails (the knob is what differs).

`judge(check, scripts)` takes the paths, so tests can feed it the lab's shipped
examples (labs/12-packetdrill/examples/) rather than a learner's working files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stack.drill.model import PacketEvent, Script, ScriptError, ShellCommand, TcpPacket
from stack.drill.parser import parse_file, parse_script
from stack.drill.runner import Result, Runner, run_file
from stack.labkit.checks import Check

HELLO, BLIND, INSECURE = "hello.pkt", "blind-rst.pkt", "blind-rst-insecure.pkt"
SCRIPTS = (HELLO, BLIND, INSECURE)
INSECURE_SYSCTL = re.compile(r"^\s*[+\d.]*\s*`sysctl -w net\.inet\.tcp\.insecure_rst=1`\s*$", re.M)


@dataclass
class Shape:
    """What a script's packets say it does."""

    syn_in: bool = False  # the script's SYN (a passive open by the stack)
    syn_out: bool = False  # the stack's SYN (an active open)
    synack: bool = False  # a SYN-ACK, either way
    data_in: bool = False
    data_out: bool = False
    fin_in: bool = False
    fin_out: bool = False
    rst_in: bool = False
    challenged: bool = False  # an inbound RST whose next packet is the stack's pure ACK
    insecure_rst: bool = False  # sysctl net.inet.tcp.insecure_rst=1


def shape(script: Script) -> Shape:
    s = Shape()
    packets: list[tuple[str, TcpPacket]] = []
    for ev in script.events:
        body = ev.body
        if isinstance(body, ShellCommand) and body.command.replace(" ", "") == (
                "sysctl-wnet.inet.tcp.insecure_rst=1"):
            s.insecure_rst = True
        if isinstance(body, PacketEvent) and isinstance(body.packet, TcpPacket):
            packets.append((body.direction, body.packet))
    for i, (direction, pkt) in enumerate(packets):
        inbound = direction == "<"
        flags = pkt.flags
        if "S" in flags:
            s.syn_in |= inbound and "." not in flags
            s.syn_out |= not inbound and "." not in flags
            s.synack |= "." in flags
        if pkt.length:
            s.data_in |= inbound
            s.data_out |= not inbound
        if "F" in flags:
            s.fin_in |= inbound
            s.fin_out |= not inbound
        if inbound and "R" in flags:
            s.rst_in = True
            nxt = packets[i + 1] if i + 1 < len(packets) else None
            if nxt is not None and nxt[0] == ">" and nxt[1].flags == "." and not nxt[1].length:
                s.challenged = True
    return s


def _run(c: Check, path: Path) -> tuple[Result | None, Script | None]:
    """Run one script, one line of the report; the parsed script for the shape checks."""
    if not path.is_file():
        c.require(False, f"{path.name} exists", str(path),
                  hint="write it: the README's steps say what goes in it")
        return None, None
    result = run_file(path)
    detail = "" if result.status == "passed" else result.reason
    c.require(result.status == "passed", f"{path.name} passes tcplab drill", detail,
              hint=f"tcplab drill {path}  (the report shows the line, expected and actual)")
    if result.status == "failed" and result.report:
        for line in result.report.splitlines():
            c.info(line)
    try:
        return result, parse_file(path)
    except ScriptError:
        return result, None


def judge(c: Check, scripts: dict[str, Path]) -> None:
    """The report on the three scripts (`scripts` maps SCRIPTS' names to paths)."""
    _, hello = _run(c, scripts[HELLO])
    if hello is not None:
        h = shape(hello)
        kind = ("an active open: the stack's SYN" if h.syn_out else
                "a passive open: the script's SYN" if h.syn_in else "no SYN")
        c.require((h.syn_in or h.syn_out) and h.synack, f"{HELLO}: a three-way handshake",
                  kind + ("" if h.synack else ", no SYN-ACK"),
                  hint="start with connect() and `> S ...`, or listen() and `< S ...`")
        c.require(h.data_in and h.data_out, f"{HELLO}: data both ways",
                  f"to the stack: {'yes' if h.data_in else 'no'}, from it: {'yes' if h.data_out else 'no'}",
                  hint="a write() and its `> P. 1:N(N)`, and a `< P. ...` the stack read()s")
        c.require(h.fin_in and h.fin_out, f"{HELLO}: a FIN each way",
                  f"to the stack: {'yes' if h.fin_in else 'no'}, from it: {'yes' if h.fin_out else 'no'}",
                  hint="close() and `> F. ...`, and the peer's `< F. ...`")

    _, blind = _run(c, scripts[BLIND])
    if blind is not None:
        b = shape(blind)
        c.require(not b.insecure_rst, f"{BLIND}: RFC 5961 on (no insecure_rst=1)")
        c.require(b.challenged, f"{BLIND}: an RST the stack answers with a challenge ACK",
                  "" if b.challenged else ("an RST, but no `> .` right after it" if b.rst_in
                                           else "no `< R` line"),
                  hint="an RST in the window but not at RCV.NXT, then `> . 1:1(0) ack ...`")

    result, insecure = _run(c, scripts[INSECURE])
    if insecure is not None:
        i = shape(insecure)
        c.require(i.insecure_rst and i.rst_in,
                  f"{INSECURE}: an RST with `sysctl -w net.inet.tcp.insecure_rst=1`",
                  hint="the sysctl line before socket(), then the same `< R` as in " + BLIND)
        if result is not None and result.status == "passed" and i.insecure_rst:
            text = scripts[INSECURE].read_text(errors="replace")
            without = Runner(parse_script(INSECURE_SYSCTL.sub("", text), str(scripts[INSECURE]))).run()
            c.require(without.status == "failed",
                      f"{INSECURE}: without the sysctl line the same script fails",
                      without.reason if without.status == "failed" else "it passes either way",
                      hint="the RST must reset the connection only because of the knob: "
                           "check SO_ERROR for ECONNRESET after it")


def learner_scripts(folder: Path) -> dict[str, Path]:
    return {name: folder / name for name in SCRIPTS}
