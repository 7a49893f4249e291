"""The stack's swappable components: a learner's file in place of a reference part.

Owns: loading a component from a file (``SLOT=PATH``, the lab kit's swap-in slots,
stack/labkit/swap.py), and putting it in place. The TCP components go in *by
construction*: `configure` sets the factory field of a `TcpConfig`
(stack/tcp/config.py) and every connection built from that config uses the
learner's class; nothing global changes. The daemon calls `configure_from_env` on its
defaults before it builds the host (``TCPLAB_SWAP=reassembler=PATH,...``).

================  ===================  =======================================
slot              the file defines      what it fills
================  ===================  =======================================
``reassembler``   ``Reassembler``       ``TcpConfig.reassembler``
``rto``           ``RTOEstimator``      ``TcpConfig.rto_estimator``
``congestion``    ``ALGORITHM``         every name of ``TcpConfig.cc_factories``
``checksum``      two functions         stack.wire.checksum (see `rebind`)
``seq``           seven functions       stack.tcp.seq (see `rebind`)
``options``       ``process_options``   stack.wire.ipv6 (see `rebind`)
================  ===================  =======================================

The three function slots are module functions that the wire codecs and the sequence
arithmetic call directly; for them `rebind` still points the names in the loaded
``stack.*`` modules at the learner's functions (and `unbind` undoes it).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

from stack.tcp.config import TcpConfig

ENV_VAR = "TCPLAB_SWAP"


class ComponentError(Exception):
    """A component that cannot be loaded or put in place, explained for the learner."""


@dataclass(frozen=True)
class Component:
    name: str
    reference: str  # module holding the reference
    names: tuple[str, ...]  # what the learner's module must define
    field: str | None  # the TcpConfig field it fills (None: a function slot)


COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in (
        Component("checksum", "stack.wire.checksum", ("ones_complement_sum", "internet_checksum"),
                  None),
        Component("seq", "stack.tcp.seq",
                  ("seq_add", "seq_diff", "seq_lt", "seq_le", "seq_gt", "seq_ge", "seq_in_window"),
                  None),
        Component("options", "stack.wire.ipv6", ("process_options",), None),
        Component("reassembler", "stack.tcp.reassembler", ("Reassembler",), "reassembler"),
        Component("rto", "stack.tcp.rto", ("RTOEstimator",), "rto_estimator"),
        Component("congestion", "stack.tcp.congestion.newreno", ("ALGORITHM",), "cc_factories"),
    )
}

# Imported before rebinding a function slot: every module that binds such a name.
_STACK_MODULES = ("stack.host", "stack.sockets", "stack.services", "stack.tcp.connection",
                  "stack.tcp.recovery", "stack.wire", "stack.api")


def load_module(path: str | os.PathLike[str], module_name: str) -> ModuleType:
    """Import a Python file as a fresh module (its errors are the learner's to see)."""
    p = Path(path)
    if not p.is_file():
        raise ComponentError(f"{p}: no such file")
    spec = importlib.util.spec_from_file_location(module_name, p)
    if spec is None or spec.loader is None:
        raise ComponentError(f"{p}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in out/
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise ComponentError(f"{p}: importing it failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.dont_write_bytecode = saved
    return module


def load_defining(path: str | os.PathLike[str], slot: str, names: tuple[str, ...]) -> ModuleType:
    """Load the learner's file for `slot`, checking it defines `names`."""
    module = load_module(path, f"tcplab_swap_{slot}")
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        raise ComponentError(f"{path} does not define {', '.join(missing)} (the {slot} slot "
                             f"needs {', '.join(names)})")
    return module


def load(component: Component, path: str | os.PathLike[str]) -> ModuleType:
    """Load the learner's file for `component`, checking it defines what it must."""
    return load_defining(path, component.name, component.names)


def configure(config: TcpConfig, component: Component, module: ModuleType) -> str:
    """Put a class component into `config`; returns what it replaced."""
    if component.field == "cc_factories":
        algorithm = module.ALGORITHM
        config.cc_factories = MappingProxyType({name: algorithm for name in config.cc_factories})
        return f"TcpConfig.cc_factories[{', '.join(config.cc_factories)}]"
    if component.field is None:
        raise ComponentError(f"the {component.name} slot is a set of functions: use rebind")
    setattr(config, component.field, getattr(module, component.names[0]))
    return f"TcpConfig.{component.field}"


@dataclass
class Binding:
    """One module global that `rebind` changed, with what it held before."""

    where: str
    namespace: dict[str, Any]
    name: str
    old: Any


def rebind(component: Component, module: ModuleType) -> list[Binding]:
    """A function slot: point every ``stack.*`` global bound to a reference function
    at the learner's function of that name; returns what was changed."""
    for name in _STACK_MODULES:
        importlib.import_module(name)
    ref = importlib.import_module(component.reference)
    changed = []
    for attr_name in component.names:
        old, new = getattr(ref, attr_name), getattr(module, attr_name)
        for modname, mod in list(sys.modules.items()):
            if mod is None or not (modname == "stack" or modname.startswith("stack.")):
                continue
            if modname.startswith("stack.labkit"):
                continue
            namespace = vars(mod)
            for attr, value in list(namespace.items()):
                if value is old:
                    namespace[attr] = new
                    changed.append(Binding(f"{modname}.{attr}", namespace, attr, old))
    return changed


def unbind(changes: list[Binding]) -> None:
    """Undo `rebind` (for tests that plug into the running interpreter)."""
    for b in reversed(changes):
        b.namespace[b.name] = b.old


def parse_spec(text: str) -> list[tuple[str, str]]:
    """``"reassembler=/x/r.py,rto=/y/rto.py"`` -> [("reassembler", "/x/r.py"), ...]."""
    out = []
    for item in filter(None, (part.strip() for part in text.replace(";", ",").split(","))):
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise ComponentError(f"swap-in {item!r} is not SLOT=PATH (e.g. reassembler=reassembler.py)")
        out.append((name.strip().lower(), path))
    return out


def install(config: TcpConfig, component: Component, path: str | os.PathLike[str]) -> str:
    """Load `component` from `path` and put it in place; returns one line saying so."""
    module = load(component, path)
    if component.field is not None:
        where = configure(config, component, module)
        return f"swap-in: {component.name} from {path} (in {where})"
    replaced = rebind(component, module)
    names = ", ".join(b.where for b in replaced[:4]) + (", ..." if len(replaced) > 4 else "")
    return f"swap-in: {component.name} from {path} (replaces {len(replaced)} binding(s): {names})"


def configure_from_env(config: TcpConfig, log: Callable[[str], None]) -> None:
    """For the daemon: apply ``$TCPLAB_SWAP`` (``SLOT=PATH,...``) to `config`, the
    host's TCP defaults, before the host is built. ComponentError for a bad spec."""
    spec = os.environ.get(ENV_VAR, "").strip()
    for name, path in parse_spec(spec):
        component = COMPONENTS.get(name)
        if component is None:
            raise ComponentError(f"no component slot {name!r}; the slots are "
                                 f"{', '.join(COMPONENTS)}")
        log(install(config, component, path))
