"""`tcplab drill PATH...`: run packetdrill scripts against the sans-IO stack."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from stack.drill.matcher import RELAXATIONS
from stack.drill.parser import DEFAULT_DEFINES
from stack.drill.runner import Result, find_scripts, run_file


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `tcplab drill ... | head`: the reader went away
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="tcplab drill",
        description="Run packetdrill scripts (.pkt) against tcplab's TCP on a virtual clock.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help=".pkt files or folders of them")
    parser.add_argument("--strict", action="store_true",
                        help="compare every field: no relaxation rules (see --rules)")
    parser.add_argument("-D", "--define", action="append", default=[], metavar="NAME",
                        help="define NAME for #ifdef, instead of the default STANDARD (repeatable)")
    parser.add_argument("--rules", action="store_true", help="list the relaxation rules and exit")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="the decoded report of every failure, and the rules each pass used")
    parser.add_argument("-q", "--quiet", action="store_true", help="print failures and the summary only")
    live = parser.add_argument_group(
        "against the daemon", "run the scripts against a real `tcplab stack` in a network namespace "
        "of its own, the system calls through the LD_PRELOAD shim, in real time (root)")
    live.add_argument("--daemon", action="store_true",
                      help="this mode (instead of the sans-IO stack on a virtual clock)")
    live.add_argument("--tolerance-factor", type=float, default=1.0, metavar="F",
                      help="multiply each script's --tolerance_usecs by F (default 1)")
    live.add_argument("--tolerance-floor", type=float, default=20.0, metavar="MS",
                      help="and add MS milliseconds, the daemon's latency (default 20)")
    live.add_argument("--max-seconds", type=float, default=30.0, metavar="S",
                      help="skip scripts whose times add up to more than S seconds (default 30)")
    live.add_argument("--netns-prefix", default="drill-", metavar="P",
                      help="name the namespace P<pid> (default drill-)")
    args = parser.parse_args(argv)
    if args.rules:
        for rule in RELAXATIONS.values():
            print(f"{rule.name}: {rule.what}\n    allowed by {rule.rfc}")
        return 0
    if not args.paths:
        print("tcplab drill: name at least one .pkt file or folder", file=sys.stderr)
        return 2
    scripts = find_scripts(args.paths)
    missing = [p for p in scripts if not p.is_file()]
    if missing:
        print(f"tcplab drill: no such file: {missing[0]}", file=sys.stderr)
        return 2
    if not scripts:
        print("tcplab drill: no .pkt scripts found", file=sys.stderr)
        return 2
    defines = frozenset(args.define) if args.define else DEFAULT_DEFINES
    if args.daemon:
        from stack.drill.live import LiveNamespace, LiveOptions, environment_problem, run_file_live

        problem = environment_problem()
        if problem:
            print(f"tcplab drill --daemon: {problem}", file=sys.stderr)
            return 2
        options = LiveOptions(tolerance_factor=args.tolerance_factor,
                              tolerance_floor=args.tolerance_floor / 1000, max_seconds=args.max_seconds)
        with LiveNamespace(args.netns_prefix) as ns:
            return _report(scripts, args, lambda p: run_file_live(p, ns, options, strict=args.strict,
                                                                   defines=defines))
    return _report(scripts, args, lambda p: run_file(p, strict=args.strict, defines=defines))


def _report(scripts: list[Path], args: argparse.Namespace, run: Callable[[Path], Result]) -> int:
    counts: Counter[str] = Counter()
    for path in scripts:
        result = run(path)
        counts[result.status] += 1
        if result.status == "passed":
            if not args.quiet:
                used = f" (relaxed: {', '.join(sorted(result.relaxations))})" if args.verbose and result.relaxations else ""
                print(f"passed   {path}{used}")
        elif result.status == "skipped":
            if not args.quiet:
                print(f"skipped  {path}: {result.reason}")
        else:
            print(f"FAILED   {path}: {result.reason}")
            if args.verbose or len(scripts) == 1:
                print(result.report)
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
