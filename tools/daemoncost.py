"""What the running daemon costs per round trip: instructions and system calls.

    python tools/daemoncost.py [--round-trips N] [--no-offload] [--mode rr|download]
                               (--callgrind | --strace | --py-spy FILE) [--name PREFIX]

Runs `tcplab stack` inside a network namespace of its own (PREFIX-<hex>, removed on
exit) under `valgrind --tool=callgrind` or `strace -c -f`, runs a client in the same
namespace (the kernel's side of mytun) and stops the daemon with SIGTERM. `rr` does N
1-byte request/response round trips with the echo service; `download` reads N KiB
from chargen. Prints one JSON line: the instructions the daemon executed (callgrind,
user space only) or its system calls by name (strace); `--py-spy FILE` writes a
raw (collapsed-stack) py-spy profile of the daemon instead, for shares.

Startup costs a great deal (imports, pyroute2): run N and 3N and take the difference,
(X(3N) - X(N)) / 2N per round trip. That is what docs/performance.md reports. Needs
root.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ns_run(ns: str, argv: list[str], **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", ns, *argv], text=True, **kw)  # type: ignore[call-overload, no-any-return]


def child_pid(pid: int) -> int:
    """The first child of `pid` (strace/valgrind run the daemon as their child or exec it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids = (task / "children").read_text().split()
        if kids:
            return int(kids[0])
    return pid


def client_script(mode: str, n: int) -> str:
    if mode == "rr":
        return f"""
import socket
s = socket.create_connection(("10.0.0.2", 7), timeout=30)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for _ in range({n}):
    s.sendall(b"x")
    assert s.recv(1) == b"x"
s.close()
"""
    return f"""
import socket
s = socket.create_connection(("10.0.0.2", 19), timeout=30)
left = {n} * 1024
buf = bytearray(1 << 16)
while left > 0:
    got = s.recv_into(buf, min(len(buf), left))
    assert got
    left -= got
s.close()
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--round-trips", type=int, default=2000)
    ap.add_argument("--mode", choices=["rr", "download"], default="rr")
    ap.add_argument("--no-offload", action="store_true")
    tool = ap.add_mutually_exclusive_group(required=True)
    tool.add_argument("--callgrind", action="store_true")
    tool.add_argument("--strace", action="store_true")
    tool.add_argument("--py-spy", metavar="FILE", dest="pyspy")
    ap.add_argument("--name", default="h-cost")
    args = ap.parse_args()
    ns = f"{args.name}-{secrets.token_hex(3)}"
    tmp = Path(tempfile.mkdtemp(prefix="tcplab-cost-"))
    out = tmp / "out"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        daemon = [sys.executable, "-m", "stack.cli", "stack", "--socket", str(tmp / "s.sock"),
                  "--no-offload" if args.no_offload else "--offload"]
        if args.callgrind:
            wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        elif args.strace:
            wrap = ["strace", "-c", "-f", "-o", str(out)]
        else:
            pyspy = str(Path(sys.executable).with_name("py-spy"))
            wrap = [pyspy, "record", "-r", "997", "-f", "raw", "-o", args.pyspy, "--"]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = ns_run(ns, [*wrap, *daemon], stderr=subprocess.PIPE, env=env)
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "ready" in line:
                break
            if not line and proc.poll() is not None:
                raise SystemExit("the daemon did not come up")
        target = proc.pid if args.callgrind else child_pid(proc.pid)
        started = time.monotonic()
        client = ns_run(ns, [sys.executable, "-c", client_script(args.mode, args.round_trips)])
        if client.wait(timeout=600) != 0:
            raise SystemExit("client failed")
        elapsed = time.monotonic() - started
        os.kill(target, signal.SIGTERM)
        proc.communicate(timeout=120)
        text = out.read_text() if out.exists() else ""
        result: dict[str, object] = {"mode": args.mode, "n": args.round_trips,
                                     "offload": not args.no_offload, "client_s": round(elapsed, 3)}
        if args.callgrind:
            m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
            result["Ir"] = int(m.group(1)) if m else None
        elif args.strace:
            calls: dict[str, int] = {}
            for row in text.splitlines():
                parts = row.split()
                if len(parts) >= 5 and parts[-1].isidentifier() and parts[3].isdigit():
                    calls[parts[-1]] = int(parts[3])
            result["syscalls"] = calls
        print(json.dumps(result))
        return 0
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    sys.exit(main())
