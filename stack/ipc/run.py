"""`tcplab run [--socket PATH] -- CMD [ARGS...]`: run CMD with its IPv4 sockets on the stack.

Finds libsocketoverride.so (next to the package, or in the repository's shim/, built
with make when missing or out of date), then execs CMD with LD_PRELOAD set to it and
TCPLAB_SOCKET pointing at the daemon's socket.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from stack.ipc import default_socket_path

SHIM_NAME = "libsocketoverride.so"
USAGE = """usage: tcplab run [--socket PATH] [--debug] -- CMD [ARGS...]

Run CMD with its TCP and UDP sockets (IPv4, and dual-stack IPv6) on the tcplab stack
(LD_PRELOAD shim).

options:
  --socket PATH  the daemon's socket (default $TCPLAB_SOCKET or /run/tcplab/stack.sock)
  --debug        trace the shim's calls on stderr (TCPLAB_DEBUG=1)
  -h, --help     show this help
"""


class RunError(Exception):
    pass


def _package_dir() -> Path:
    return Path(__file__).resolve().parent.parent  # .../stack


def _make(shim_dir: Path, target: Path) -> None:
    make = shutil.which("make")
    if make is None:
        raise RunError("cannot build the shim: 'make' is not installed")
    try:
        cp = subprocess.run([make, "-s", "-C", str(shim_dir), SHIM_NAME], capture_output=True,
                            text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunError(f"cannot build the shim: {exc}") from None
    if cp.returncode != 0 or not target.exists():
        detail = (cp.stderr or cp.stdout).strip().splitlines()[-5:]
        raise RunError("building the shim failed:\n" + "\n".join(detail))


def _outdated(shim_dir: Path, target: Path) -> bool:
    if not target.exists():
        return True
    built = target.stat().st_mtime
    return any(src.stat().st_mtime > built for src in shim_dir.glob("*.[ch]"))


def find_shim() -> Path:
    """$TCPLAB_SHIM, the library next to the package, or the repository's shim/ (built
    with make when missing or older than its sources)."""
    override = os.environ.get("TCPLAB_SHIM")
    if override:
        path = Path(override)
        if not path.is_file():
            raise RunError(f"TCPLAB_SHIM={override}: no such file")
        return path.resolve()
    pkg = _package_dir()
    beside = pkg / SHIM_NAME
    shim_dir = pkg.parent / "shim"
    target = shim_dir / SHIM_NAME
    if (shim_dir / "Makefile").is_file():
        if _outdated(shim_dir, target):
            if not os.access(shim_dir, os.W_OK) and target.exists():
                return target  # cannot rebuild here; use what there is
            _make(shim_dir, target)
        return target
    if beside.is_file():
        return beside
    if target.is_file():
        return target
    raise RunError(f"cannot find {SHIM_NAME} (looked in {pkg} and {shim_dir})")


def _parse(argv: list[str]) -> tuple[str | None, bool, list[str]] | None:
    socket_path: str | None = None
    debug = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return socket_path, debug, argv[i + 1 :]
        if arg in ("-h", "--help"):
            return None
        if arg == "--socket":
            if i + 1 >= len(argv):
                raise RunError("--socket needs a PATH")
            socket_path = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--socket="):
            socket_path = arg.split("=", 1)[1]
        elif arg == "--debug":
            debug = True
        elif arg.startswith("-"):
            raise RunError(f"unknown option {arg}")
        else:  # the command starts here (the "--" is optional)
            return socket_path, debug, argv[i:]
        i += 1
    return socket_path, debug, []


def build_env(shim: Path, socket_path: str, debug: bool = False,
              base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    preload = [entry for entry in env.get("LD_PRELOAD", "").replace(":", " ").split()
               if entry and Path(entry).name != SHIM_NAME]
    env["LD_PRELOAD"] = " ".join([str(shim), *preload])
    env["TCPLAB_SOCKET"] = socket_path
    if debug:
        env["TCPLAB_DEBUG"] = "1"
    return env


def main(argv: list[str]) -> int:
    try:
        parsed = _parse(list(argv))
        if parsed is None:
            sys.stdout.write(USAGE)
            return 0
        socket_path, debug, command = parsed
        if not command:
            sys.stderr.write("tcplab run: no command given (tcplab run -- CMD [ARGS...])\n")
            return 2
        shim = find_shim()
    except RunError as exc:
        sys.stderr.write(f"tcplab run: {exc}\n")
        return 2
    env = build_env(shim, os.path.abspath(socket_path or default_socket_path()), debug)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        sys.stderr.write(f"tcplab run: {command[0]}: command not found\n")
        return 127
    except PermissionError:
        sys.stderr.write(f"tcplab run: {command[0]}: permission denied\n")
        return 126
    except OSError as exc:
        sys.stderr.write(f"tcplab run: {command[0]}: {exc.strerror}\n")
        return 126
    return 0  # not reached
