"""What every ``labs/NN-*/check`` shares.

A check looks at what the stack recorded while you did the lab -- the pcap and the
event log in the lab's output folder -- and says, line by line, what it found::

    PASS  a SYN from the peer with MSS and window scale (10.0.1.20:45678, MSS 1410, wscale 7)
    FAIL  two handshakes whose ISNs differ
          hint: connect a second time (the commands are in the README, step 3)

It exits 0 when every line passed. Where the files are:

* ``--pcap FILE`` / ``--events FILE`` if given;
* else ``--out DIR``, else the folder of ``--events FILE``, else ``$TCPLAB_OUT`` (``tcplab lab check`` sets it), else the
  ``out/`` folder of the checkout; there ``stack.pcap`` and ``events.jsonl``, or with
  ``--swapped`` the files of the stack that runs your component (``swap.pcap``,
  ``swap-events.jsonl``, see ``python -m stack.labkit stack --help``).

The stack buffers both files and writes them out twice a second; wait a second after
the last packet (or stop the stack) before you run a check.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from stack.labkit.capture import Packet, PcapError, read_pcap
from stack.observe.events import read_events

Event = dict[str, Any]


class CheckAbort(Exception):
    """The check cannot go on (a file is missing); the message says what to do."""


def find_out_dir(script: Path | None = None) -> Path:
    env = os.environ.get("TCPLAB_OUT")
    if env:
        return Path(env)
    root = os.environ.get("TCPLAB_ROOT")
    if root:
        return Path(root) / "out"
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "docker-compose.yml").is_file() and (folder / "labs").is_dir():
            return folder / "out"
    if script is not None:
        return script.resolve().parents[2] / "out"
    return here / "out"


class Check:
    """Collects the PASS/FAIL lines of one lab's check."""

    def __init__(self, lab: str, title: str, argv: list[str] | None = None,
                 script: str | None = None,
                 add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
        self.lab = lab
        self.title = title
        parser = argparse.ArgumentParser(
            prog=f"labs/{lab}/check",
            description=f"Lab {lab}: {title}. Checks the pcap and event log of the lab.")
        parser.add_argument("--pcap", metavar="FILE", help="the capture (default OUT/stack.pcap)")
        parser.add_argument("--events", metavar="FILE",
                            help="the event log (default OUT/events.jsonl)")
        parser.add_argument("--out", metavar="DIR",
                            help="the lab's output folder (default $TCPLAB_OUT or ./out)")
        parser.add_argument("--swapped", action="store_true",
                            help="check the stack that runs your component "
                                 "(OUT/swap.pcap, OUT/swap-events.jsonl)")
        parser.add_argument("-v", "--verbose", action="store_true", help="say more")
        if add_arguments is not None:
            add_arguments(parser)
        self.args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        if self.args.out:
            out = Path(self.args.out)
        elif self.args.events:  # the other files of the lab are beside the event log
            out = Path(self.args.events).resolve().parent
        else:
            out = find_out_dir(Path(script) if script else None)
        self.out_dir = out
        prefix = "swap" if self.args.swapped else None
        self.pcap_path = Path(self.args.pcap) if self.args.pcap else out / (
            f"{prefix}.pcap" if prefix else "stack.pcap")
        self.events_path = Path(self.args.events) if self.args.events else out / (
            f"{prefix}-events.jsonl" if prefix else "events.jsonl")
        self.results: list[tuple[bool, str, str]] = []
        self.conns: list[str] = []  # the connections judged (judged())
        self._packets: list[Packet] | None = None
        self._events: list[Event] | None = None

    # -- inputs ------------------------------------------------------------------------
    def packets(self) -> list[Packet]:
        if self._packets is None:
            try:
                self._packets = read_pcap(self.pcap_path)
            except PcapError as exc:
                raise CheckAbort(f"cannot read the capture: {exc}") from None
        return self._packets

    def events(self) -> list[Event]:
        if self._events is None:
            self._events = load_events(self.events_path)
        return self._events

    # -- results -----------------------------------------------------------------------
    def require(self, ok: bool, what: str, detail: str = "", hint: str = "") -> bool:
        """One line of the report."""
        text = what + (f" ({detail})" if detail else "")
        self.results.append((bool(ok), text, "" if ok else hint))
        print(f"{'PASS' if ok else 'FAIL'}  {text}", flush=True)
        if not ok and hint:
            print(f"      hint: {hint}", flush=True)
        return bool(ok)

    def info(self, text: str) -> None:
        print(f"      {text}", flush=True)

    def shown(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)

    def judged(self, conn: str, what: str = "", zoom: tuple[float, float] | None = None,
               ladder: bool = False) -> str:
        """Name the connection this check judged, and print the command that draws it
        (``zoom``: seconds since the connection's first event, as ``tcplab plot`` counts)."""
        self.conns.append(conn)
        command = (f"tcplab plot {self.shown(self.events_path)} --pcap "
                   f"{self.shown(self.pcap_path)} --conn {conn}")
        if zoom is not None:
            # to the millisecond, outwards: the stretch's first and last packets stay in
            lo = math.floor(max(0.0, zoom[0]) * 1000) / 1000
            hi = math.ceil(max(zoom[1], zoom[0] + 0.01) * 1000) / 1000
            command += f" --zoom {lo:g}:{hi:g}"
        if ladder:
            command += " --ladder"
        print(f"      judged: {conn}" + (f" ({what})" if what else ""), flush=True)
        print(f"      draw it: {command}", flush=True)
        return command

    def verbose(self, text: str) -> None:
        if self.args.verbose:
            print(f"      {text}", flush=True)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(ok for ok, _, _ in self.results)

    def run(self, body: Callable[[Check], None], show_files: bool = True) -> int:
        print(f"lab {self.lab}: {self.title}")
        if show_files:
            print(f"      capture {self.pcap_path}, events {self.events_path}")
        try:
            body(self)
        except CheckAbort as exc:
            print(f"FAIL  {exc}")
            return 1
        failed = sum(1 for ok, _, _ in self.results if not ok)
        total = len(self.results)
        if failed:
            print(f"lab {self.lab}: {failed} of {total} checks failed")
            return 1
        print(f"lab {self.lab}: all {total} checks passed")
        return 0


def since_first_event(events: list[Event], conn: str, t: float) -> float:
    """Event time ``t`` as ``tcplab plot`` shows it: seconds since ``conn``'s first event."""
    first = next((float(e["t"]) for e in events if e.get("conn") == conn), t)
    return t - first


def since_syn(pkts: list[Packet], ts: float) -> float:
    """Capture time ``ts`` as ``tcplab plot`` shows it (it lines the capture up on the SYN,
    which is the connection's first event): seconds since the connection's first SYN."""
    syn = next((p.ts for p in pkts if p.tcp is not None and p.tcp.syn), pkts[0].ts if pkts else ts)
    return ts - syn


def load_events(path: Path) -> list[Event]:
    if not path.exists():
        raise CheckAbort(f"{path} does not exist: is the lab up (tcplab lab up), or give "
                         f"--events FILE")
    try:
        events = read_events(path)
    except ValueError as exc:
        raise CheckAbort(f"{path} is not an event log: {exc}") from None
    if not events:
        raise CheckAbort(f"{path} is empty: do the lab's steps first (the stack writes it "
                         f"twice a second)")
    return events


def main(lab: str, title: str, body: Callable[[Check], None], script: str | None = None,
         add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
         show_files: bool = True) -> NoReturn:
    check = Check(lab, title, script=script, add_arguments=add_arguments)
    sys.exit(check.run(body, show_files))
