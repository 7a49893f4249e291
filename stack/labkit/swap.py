"""Swap-in slots: put a learner's file in place of a stack component.

A slot names a component with a contract in docs/architecture.md, the lab that teaches
it and the file name of the skeleton in that lab's folder::

    slot         lab  file              replaces
    tun          01   tunread.py        (stands alone: not part of the daemon)
    checksum     02   checksum.py       stack.wire.checksum: ones_complement_sum, internet_checksum
    seq          03   seq.py            stack.tcp.seq: seq_add, seq_diff, seq_lt ... seq_in_window
    reassembler  04   reassembler.py    TcpConfig.reassembler (stack.tcp.reassembler.Reassembler)
    rto          06   rto.py            TcpConfig.rto_estimator (stack.tcp.rto.RTOEstimator)
    congestion   08   congestion.py     every --cc algorithm (the file's ALGORITHM class)
    echo         09   echo_server.c, echo_client.c   (C programs: run them under the shim)
    options      11   options.py        stack.wire.ipv6.process_options (RFC 8200 section 4.2)

Plugging into a running daemon (only the slots the daemon uses):

    python -m stack.labkit stack --swap reassembler=labs/04-reassembly/reassembler.py [tcplab stack options]
    TCPLAB_SWAP=reassembler=PATH,rto=PATH tcplab stack ...

The mechanism is the stack's own (stack/components.py): a class component goes into
the connections' config (`TcpConfig`), so every connection built from it uses the
learner's class and nothing global changes; :func:`plug` returns that config. The
daemon reads ``$TCPLAB_SWAP`` itself and does not import this package.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

from stack import components
from stack.components import Binding, ComponentError
from stack.tcp.config import TcpConfig

SwapError = ComponentError  # a swap-in that cannot be done, explained for the learner


@dataclass(frozen=True)
class Slot:
    name: str
    lab: str  # "04"
    files: tuple[str, ...]  # skeleton file(s) in the lab folder
    reference: str  # module holding the reference
    names: tuple[str, ...]  # what the learner's module must define
    pluggable: bool  # can run inside the daemon
    summary: str


SLOTS: dict[str, Slot] = {
    s.name: s
    for s in (
        Slot("tun", "01", ("tunread.py",), "stack.labkit.reference.tunread",
             ("open_tun", "describe"), False, "a TUN reader that prints packets"),
        Slot("checksum", "02", ("checksum.py",), "stack.wire.checksum",
             ("ones_complement_sum", "internet_checksum"), True,
             "the Internet checksum (RFC 1071)"),
        Slot("seq", "03", ("seq.py",), "stack.tcp.seq",
             ("seq_add", "seq_diff", "seq_lt", "seq_le", "seq_gt", "seq_ge", "seq_in_window"),
             True, "32-bit sequence-number arithmetic (RFC 9293 section 3.4)"),
        Slot("reassembler", "04", ("reassembler.py",), "stack.tcp.reassembler",
             ("Reassembler",), True, "the receive-side reassembler"),
        Slot("rto", "06", ("rto.py",), "stack.tcp.rto", ("RTOEstimator",), True,
             "the retransmission timeout estimator (RFC 6298)"),
        Slot("congestion", "08", ("congestion.py",), "stack.tcp.congestion.newreno",
             ("ALGORITHM",), True, "a congestion control algorithm of your own"),
        Slot("echo", "09", ("echo_server.c", "echo_client.c"), "stack.labkit.reference.echo_c",
             (), False, "a TCP echo server and client in C"),
        Slot("options", "11", ("options.py",), "stack.wire.ipv6", ("process_options",), True,
             "IPv6 Hop-by-Hop and Destination Options (RFC 8200 section 4.2)"),
    )
}
BY_LAB = {s.lab: s for s in SLOTS.values()}


def find_slot(name_or_lab: str) -> Slot:
    key = name_or_lab.strip().lower()
    if key in SLOTS:
        return SLOTS[key]
    if key.isdigit() and key.zfill(2) in BY_LAB:
        return BY_LAB[key.zfill(2)]
    choices = ", ".join(f"{s.lab} ({s.name})" for s in SLOTS.values())
    raise SwapError(f"no swap-in slot {name_or_lab!r}; the slots are {choices}")


def load_file(path: str | os.PathLike[str], module_name: str) -> ModuleType:
    """Import a Python file as a fresh module (its errors are the learner's to see)."""
    return components.load_module(path, module_name)


def load_learner(slot: Slot, path: str | os.PathLike[str]) -> ModuleType:
    """Load the learner's file for any slot, checking it defines what the slot needs."""
    return components.load_defining(path, slot.name, slot.names)


def reference_module(slot: Slot) -> ModuleType:
    return importlib.import_module(slot.reference)


def _component(slot: Slot) -> components.Component:
    if not slot.pluggable:
        raise SwapError(f"the {slot.name} slot (lab {slot.lab}) does not run inside the "
                        f"daemon; see the lab's README for how to try it")
    return components.COMPONENTS[slot.name]


@dataclass
class Plugged:
    """What :func:`plug` did: the config now holding a class component, and the module
    globals a function slot rebound (undone by :func:`unplug`)."""

    config: TcpConfig
    where: list[str]
    bindings: list[Binding] = field(default_factory=list)


def plug(slot: Slot, module: ModuleType, config: TcpConfig | None = None) -> Plugged:
    """Make the stack use ``module``'s objects for ``slot``: in ``config`` (a fresh
    `TcpConfig` by default) for a class slot, by rebinding for a function slot."""
    component = _component(slot)
    config = config if config is not None else TcpConfig()
    if component.field is not None:
        return Plugged(config, [components.configure(config, component, module)])
    bindings = components.rebind(component, module)
    return Plugged(config, [b.where for b in bindings], bindings)


def unplug(plugged: Plugged) -> None:
    """Undo :func:`plug`'s rebinding (for tests that plug into the running interpreter)."""
    components.unbind(plugged.bindings)


def parse_spec(text: str) -> list[tuple[Slot, str]]:
    """``"reassembler=/x/r.py,rto=/y/rto.py"`` -> [(slot, path), ...]."""
    return [(find_slot(name), path) for name, path in components.parse_spec(text)]


def check(spec: str) -> None:
    """Load every ``SLOT=PATH`` of ``spec`` and check it defines what its slot needs,
    putting nothing in place (the daemon does that from ``$TCPLAB_SWAP``)."""
    for slot, path in parse_spec(spec):
        _component(slot)
        load_learner(slot, path)


def install(spec: str, log: Callable[[str], None] | None = None,
            config: TcpConfig | None = None) -> list[str]:
    """Load and plug every ``SLOT=PATH`` of ``spec`` (into ``config`` for the class
    slots); returns one line per slot."""
    config = config if config is not None else TcpConfig()
    lines = []
    for slot, path in parse_spec(spec):
        line = components.install(config, _component(slot), path)
        lines.append(line)
        if log is not None:
            log(line)
    return lines
