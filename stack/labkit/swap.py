"""Swap-in slots: put a learner's file in place of a stack component.

A slot names a component with a contract in docs/architecture.md, the lab that teaches
it and the file name of the skeleton in that lab's folder::

    slot         lab  file              replaces
    tun          01   tunread.py        (stands alone: not part of the daemon)
    checksum     02   checksum.py       stack.wire.checksum: ones_complement_sum, internet_checksum
    seq          03   seq.py            stack.tcp.seq: seq_add, seq_diff, seq_lt ... seq_in_window
    reassembler  04   reassembler.py    stack.tcp.reassembler.Reassembler
    rto          06   rto.py            stack.tcp.rto.RTOEstimator
    congestion   08   congestion.py     every --cc algorithm (the file's ALGORITHM class)
    echo         09   echo_server.c, echo_client.c   (C programs: run them under the shim)

Plugging into a running daemon (only the slots the daemon uses):

    python -m stack.labkit stack --swap reassembler=labs/04-reassembly/reassembler.py [tcplab stack options]
    TCPLAB_SWAP=reassembler=PATH,rto=PATH  and a daemon that calls install_from_env()

:func:`install` loads the learner's module from its path and then replaces, in every
already imported ``stack.*`` module, each name bound to the reference object with the
learner's object -- so ``stack.tcp.connection.Reassembler`` (imported by name) is
replaced as well as ``stack.tcp.reassembler.Reassembler``. It imports the daemon's
modules first so that nothing imported later can still hold the reference.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ENV_VAR = "TCPLAB_SWAP"


class SwapError(Exception):
    """A swap-in that cannot be done, explained for the learner."""


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
    )
}
BY_LAB = {s.lab: s for s in SLOTS.values()}

# Imported before patching: every module that binds a swappable name.
_DAEMON_MODULES = ("stack.daemon", "stack.host", "stack.sockets", "stack.services",
                   "stack.tcp.connection", "stack.wire", "stack.api")


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
    p = Path(path)
    if not p.is_file():
        raise SwapError(f"{p}: no such file")
    spec = importlib.util.spec_from_file_location(module_name, p)
    if spec is None or spec.loader is None:
        raise SwapError(f"{p}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in out/
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise SwapError(f"{p}: importing it failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.dont_write_bytecode = saved
    return module


def load_learner(slot: Slot, path: str | os.PathLike[str]) -> ModuleType:
    module = load_file(path, f"tcplab_swap_{slot.name}")
    missing = [n for n in slot.names if not hasattr(module, n)]
    if missing:
        raise SwapError(f"{path} does not define {', '.join(missing)} (the {slot.name} slot "
                        f"needs {', '.join(slot.names)})")
    return module


def reference_module(slot: Slot) -> ModuleType:
    return importlib.import_module(slot.reference)


@dataclass
class Binding:
    """One name that :func:`plug` rebound, with what it held before."""

    where: str
    namespace: dict[str, Any]
    name: str
    old: Any


def _rebind(old: Any, new: Any) -> list[Binding]:
    """Point every ``stack.*`` module global bound to ``old`` at ``new``."""
    changed = []
    for modname, module in list(sys.modules.items()):
        if module is None or not (modname == "stack" or modname.startswith("stack.")):
            continue
        if modname.startswith("stack.labkit"):
            continue
        namespace = vars(module)
        for attr, value in list(namespace.items()):
            if value is old:
                namespace[attr] = new
                changed.append(Binding(f"{modname}.{attr}", namespace, attr, old))
    return changed


def unplug(changes: list[Binding]) -> None:
    """Undo :func:`plug` (for tests that plug into the running interpreter)."""
    for b in reversed(changes):
        b.namespace[b.name] = b.old


def plug(slot: Slot, module: ModuleType) -> list[Binding]:
    """Make the stack use ``module``'s objects for ``slot``; returns what was rebound."""
    if not slot.pluggable:
        raise SwapError(f"the {slot.name} slot (lab {slot.lab}) does not run inside the "
                        f"daemon; see the lab's README for how to try it")
    for name in _DAEMON_MODULES:
        importlib.import_module(name)
    if slot.name == "congestion":
        from stack.tcp import congestion

        algorithm = module.ALGORITHM
        factories: dict[str, Any] = congestion._FACTORIES
        changes = []
        for key, old in list(factories.items()):
            factories[key] = algorithm
            changes.append(Binding(f"stack.tcp.congestion._FACTORIES[{key!r}]", factories, key, old))
        return changes
    ref = reference_module(slot)
    changes = []
    for name in slot.names:
        changes += _rebind(getattr(ref, name), getattr(module, name))
    return changes


def parse_spec(text: str) -> list[tuple[Slot, str]]:
    """``"reassembler=/x/r.py,rto=/y/rto.py"`` -> [(slot, path), ...]."""
    out = []
    for item in filter(None, (part.strip() for part in text.replace(";", ",").split(","))):
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise SwapError(f"swap-in {item!r} is not SLOT=PATH (e.g. reassembler=reassembler.py)")
        out.append((find_slot(name), path))
    return out


def install(spec: str, log: Any = None) -> list[str]:
    """Load and plug every ``SLOT=PATH`` of ``spec``; returns one line per slot."""
    lines = []
    for slot, path in parse_spec(spec):
        module = load_learner(slot, path)
        replaced = plug(slot, module)
        names = ", ".join(b.where for b in replaced[:4]) + (", ..." if len(replaced) > 4 else "")
        line = f"swap-in: {slot.name} from {path} (replaces {len(replaced)} binding(s): {names})"
        lines.append(line)
        if log is not None:
            log(line)
    return lines


def install_from_env(log: Any = None) -> list[str]:
    """For the daemon: apply ``$TCPLAB_SWAP`` if set (before the host is created)."""
    spec = os.environ.get(ENV_VAR, "").strip()
    if not spec:
        return []
    if log is None:
        def log(line: str) -> None:
            print(f"tcplab: {line}", file=sys.stderr, flush=True)
    return install(spec, log)
