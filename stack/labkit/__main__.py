"""``python -m stack.labkit``: test your component, or run the stack with it.

    python -m stack.labkit slots
    python -m stack.labkit test NN [--impl PATH] [--reference] [--first] [-v]
    python -m stack.labkit stack --swap SLOT=PATH [--swap ...] [--beside-lab] [tcplab stack options]

``test`` runs the step-by-step tests of lab NN's slot against your file (by default the
skeleton in ``labs/NN-*/``), or against the stack's reference with ``--reference``.

``stack`` is ``tcplab stack`` with your component(s) plugged in. ``--beside-lab`` picks
options for a second stack next to the compose lab's own one, in the stack container:
TUN ``swap0``, address 10.0.9.2 (kernel side 10.0.9.1/24) and fd00:0:0:9::2
(fd00:0:0:9::1/64), socket
/run/tcplab/swap.sock, capture /out/swap.pcap and events /out/swap-events.jsonl. The
peer reaches it after ``ip route add 10.0.9.0/24 via 10.0.1.1`` (IPv6:
``ip -6 route add fd00:0:0:9::/64 via fd00:0:0:2::1``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from stack.components import ENV_VAR
from stack.labkit.steps import Report, Suite, run_suite
from stack.labkit.swap import (
    SLOTS,
    Slot,
    SwapError,
    check,
    find_slot,
    load_learner,
    reference_module,
)

BESIDE_LAB = ["--tun", "swap0", "--address", "10.0.9.2", "--kernel-address", "10.0.9.1/24",
              "--address6", "fd00:0:0:9::2", "--kernel-address6", "fd00:0:0:9::1/64",
              "--socket", "/run/tcplab/swap.sock", "--pcap", "/out/swap.pcap",
              "--events", "/out/swap-events.jsonl"]  # fmt: skip


def suite_for(slot: Slot) -> Suite:
    if slot.name in ("tun", "echo"):
        from stack.labkit.suites_sys import ECHO, TUN

        return TUN if slot.name == "tun" else ECHO
    from stack.labkit.suites import SUITES

    return SUITES[slot.name]


def find_root() -> Path:
    env = os.environ.get("TCPLAB_ROOT")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "labs").is_dir() and (folder / "stack").is_dir():
            return folder
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "labs").is_dir():
        return checkout
    for guess in (Path("/opt/tcplab"),):
        if (guess / "labs").is_dir():
            return guess
    raise SwapError("cannot find the labs/ folder: run this in your tcplab checkout "
                    "(or set TCPLAB_ROOT)")


def default_impl(slot: Slot) -> Path:
    root = find_root()
    folders = sorted((root / "labs").glob(f"{slot.lab}-*"))
    if not folders:
        raise SwapError(f"no labs/{slot.lab}-* folder under {root}")
    if slot.name == "echo":
        return folders[0]
    return folders[0] / slot.files[0]


def _component(slot: Slot, module: Any) -> Any:
    if slot.name == "reassembler":
        return module.Reassembler
    if slot.name == "rto":
        return module.RTOEstimator
    if slot.name == "congestion":
        return module.ALGORITHM
    return module


def targets(slot: Slot, impl: Path | None, reference: bool) -> list[tuple[str, Any]]:
    """What to test: [(label, thing under test)]."""
    if reference:
        if slot.name == "echo":
            from stack.labkit.reference.echo_c import write_sources

            folder = write_sources(Path(tempfile.mkdtemp(prefix="tcplab-ref09-")))
            return [("the reference (stack/labkit/reference/echo_c.py)", folder)]
        if slot.name == "congestion":
            from stack.tcp.congestion import Cubic, NewReno

            return [("the reference NewReno (stack/tcp/congestion/newreno.py)", NewReno),
                    ("the reference CUBIC (stack/tcp/congestion/cubic.py)", Cubic)]
        module = reference_module(slot)
        return [(f"the reference ({slot.reference})", _component(slot, module))]
    path = impl if impl is not None else default_impl(slot)
    if slot.name == "echo":
        folder = path if path.is_dir() else path.parent
        return [(str(folder), folder)]
    module = load_learner(slot, path)
    return [(str(path), _component(slot, module))]


def run_tests(name: str, impl: Path | None = None, reference: bool = False,
              out: TextIO | None = sys.stdout, first: bool = False,
              verbose: bool = False) -> list[Report]:
    slot = find_slot(name)
    suite = suite_for(slot)
    reports = []
    for label, target in targets(slot, impl, reference):
        if out is not None:
            print(f"lab {slot.lab} ({slot.name}: {slot.summary}): testing {label}", file=out)
        reports.append(run_suite(suite, target, out, first_failure_only=first, verbose=verbose))
    return reports


def cmd_slots() -> int:
    for slot in SLOTS.values():
        plug_text = "plugs into the daemon" if slot.pluggable else "stands alone"
        print(f"{slot.lab}  {slot.name:<12} {', '.join(slot.files):<30} {plug_text}: {slot.summary}")
    return 0


def cmd_test(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m stack.labkit test",
                                description="Step-by-step tests of a lab's swap-in component.")
    p.add_argument("lab", help="lab number (02) or slot name (reassembler)")
    p.add_argument("--impl", type=Path, help="your file (default: the one in labs/NN-*/)")
    p.add_argument("--reference", action="store_true", help="test the stack's own reference")
    p.add_argument("--first", action="store_true", help="stop at the first failing scenario")
    p.add_argument("-v", "--verbose", action="store_true", help="show the steps of passing scenarios")
    args = p.parse_args(argv)
    try:
        reports = run_tests(args.lab, args.impl, args.reference, out=sys.stdout, first=args.first,
                            verbose=args.verbose)
    except SwapError as exc:
        print(f"labkit: {exc}", file=sys.stderr)
        return 1
    return 0 if all(r.ok for r in reports) else 1


def cmd_stack(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m stack.labkit stack",
        description="tcplab stack with your component(s) plugged in. Every option not "
                    "listed here goes to tcplab stack (see tcplab stack --help).")
    p.add_argument("--swap", action="append", default=[], metavar="SLOT=PATH",
                   help="e.g. reassembler=labs/04-reassembly/reassembler.py (repeatable); "
                        "$TCPLAB_SWAP is read too")
    p.add_argument("--beside-lab", action="store_true",
                   help="options for a second stack in the compose lab's stack container: "
                        + " ".join(BESIDE_LAB))
    args, rest = p.parse_known_args(argv)
    specs = list(args.swap)
    if os.environ.get("TCPLAB_SWAP"):
        specs.append(os.environ["TCPLAB_SWAP"])
    if not specs and not args.beside_lab:
        print("labkit: give --swap SLOT=PATH (slots: "
              + ", ".join(s.name for s in SLOTS.values() if s.pluggable) + "), or "
              "--beside-lab for a second stack with the reference components", file=sys.stderr)
        return 2
    try:
        for spec in specs:
            check(spec)  # every file loads and defines what its slot needs
    except SwapError as exc:
        print(f"labkit: {exc}", file=sys.stderr)
        return 1
    # The daemon puts them in place itself, into its connections' config.
    os.environ[ENV_VAR] = ",".join(specs)
    options = (BESIDE_LAB if args.beside_lab else []) + rest
    if args.beside_lab:
        what = "your component(s)" if specs else "the reference components (no --swap)"
        print(f"tcplab: a second stack at 10.0.9.2 with {what}; on the peer: "
              "ip route replace 10.0.9.0/24 via 10.0.1.1", file=sys.stderr, flush=True)
    from stack.cli import main as cli_main

    return cli_main(["stack", *options])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb == "slots":
        return cmd_slots()
    if verb == "test":
        return cmd_test(rest)
    if verb == "stack":
        return cmd_stack(rest)
    print(f"labkit: unknown command {verb!r} (slots, test, stack)", file=sys.stderr)
    return 2


__all__ = ["main", "run_tests", "targets"]

if __name__ == "__main__":
    sys.exit(main())
