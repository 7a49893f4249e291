"""`tcplab lab`: the containerized lab, a thin layer over Docker Compose.

    tcplab lab up [--no-build] [--out DIR]   build the image and start the lab
    tcplab lab down                          stop it and remove its containers, network, volume
    tcplab lab status                        containers, health, output files
    tcplab lab shell SERVICE [CMD ...]       a shell (or CMD) in stack, peer or client
    tcplab lab logs [SERVICE]                the containers' output
    tcplab lab check [NN|all]                is the lab sound; run labs/NN-*/check

What it adds to `docker compose up`:

* the compose project is always named ``tcplab`` (``--project`` or ``TCPLAB_PROJECT`` to
  change it), whatever the folder is called, so ``down`` finds what ``up`` made;
* where no registry can be reached, the base image ``debian:bookworm-slim`` is created
  locally first (scripts/base-image.sh: debootstrap + docker import), after which plain
  ``docker compose up`` works too;
* leftovers of an earlier lab (containers, the network, the socket volume) are removed
  before starting, and a docker network that holds the lab's subnet is named in the error;
* the build shows its progress, and ``up`` waits until the stack answers ping, printing
  how long it has waited, then says what to type next.

Both ``docker compose`` (v2) and ``docker-compose`` (1.29) work; ``TCPLAB_COMPOSE`` picks
one explicitly (for example ``TCPLAB_COMPOSE=docker-compose``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

DEFAULT_PROJECT = "tcplab"
DEFAULT_BASE = "debian:bookworm-slim"
DEFAULT_IMAGE = "tcplab:latest"
DEFAULT_NET_PREFIX = "172.28.0"
SERVICES = ("stack", "peer", "client")
CHECK_TIMEOUT = 600.0


class LabError(Exception):
    """A failure with a message meant for the learner (printed as one line)."""


def _say(text: str) -> None:
    print(f"tcplab lab: {text}", file=sys.stderr, flush=True)


def find_root(start: Path | None = None) -> Path:
    """The folder with docker-compose.yml and the sources: TCPLAB_ROOT, else the
    nearest folder at or above ``start`` (the working directory), else this checkout."""
    env = os.environ.get("TCPLAB_ROOT")
    if env:
        root = Path(env).resolve()
        if not (root / "docker-compose.yml").is_file():
            raise LabError(f"TCPLAB_ROOT={env} has no docker-compose.yml")
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "docker-compose.yml").is_file() and (folder / "stack").is_dir():
            return folder
    checkout = Path(__file__).resolve().parents[2]  # stack/tools/lab.py -> the checkout
    if (checkout / "docker-compose.yml").is_file():
        return checkout
    raise LabError(
        "cannot find the tcplab sources (docker-compose.yml); run this inside your "
        "checkout or set TCPLAB_ROOT"
    )


def compose_command() -> list[str]:
    """``docker compose`` where the plugin exists, else ``docker-compose``."""
    env = os.environ.get("TCPLAB_COMPOSE")
    if env:
        return shlex.split(env)
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise LabError("neither `docker compose` nor `docker-compose` is installed")


def docker_available() -> tuple[bool, str]:
    """Whether a Docker engine answers, and why not."""
    if not shutil.which("docker"):
        return False, "the docker command is not installed"
    try:
        proc = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, "`docker info` did not answer in 30 s"
    if proc.returncode != 0 or not proc.stdout.strip():
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return False, (lines[-1] if lines else "`docker info` failed")
    return True, proc.stdout.strip()


def image_exists(name: str) -> bool:
    proc = subprocess.run(
        ["docker", "image", "inspect", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return proc.returncode == 0


def ensure_base_image(root: Path, image: str | None = None) -> None:
    """Make the build's base image exist: present, pulled, or made by debootstrap."""
    image = image or os.environ.get("TCPLAB_BASE") or DEFAULT_BASE
    if image_exists(image):
        return
    script = root / "scripts" / "base-image.sh"
    _say(f"the base image {image} is missing; running {script.relative_to(root)}")
    proc = subprocess.run(["bash", str(script), image], check=False)
    if proc.returncode != 0:
        raise LabError(f"could not get or create the base image {image} (see above)")


def _subnets_in_use() -> dict[str, str]:
    """Docker network name for each IPv4 subnet that a docker network holds."""
    names = subprocess.run(
        ["docker", "network", "ls", "--format", "{{.Name}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if not names:
        return {}
    proc = subprocess.run(
        ["docker", "network", "inspect", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        nets = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        return {}
    out: dict[str, str] = {}
    for net in nets:
        for conf in (net.get("IPAM") or {}).get("Config") or []:
            subnet = conf.get("Subnet")
            if subnet:
                out[subnet] = net.get("Name", "?")
    return out


def free_net_prefix(candidates: Sequence[str] | None = None) -> str:
    """A ``a.b.c`` prefix whose /24 no docker network uses (for parallel labs, tests)."""
    import ipaddress

    used = [ipaddress.ip_network(s, strict=False) for s in _subnets_in_use() if ":" not in s]
    pool = candidates or [f"172.28.{i}" for i in range(16, 250)]
    for prefix in pool:
        net = ipaddress.ip_network(f"{prefix}.0/24")
        if not any(net.overlaps(u) for u in used):
            return prefix
    raise LabError("no free /24 for the lab network among the candidates")


@dataclass
class Lab:
    """One compose project of the lab. Tests make their own with another project name."""

    root: Path
    project: str = DEFAULT_PROJECT
    compose: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.compose:
            self.compose = compose_command()

    # -- plumbing ------------------------------------------------------------------

    @property
    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def base_args(self) -> list[str]:
        return [*self.compose, "-p", self.project, "-f", str(self.root / "docker-compose.yml")]

    def command_line(self, *args: str) -> str:
        """How a learner types the same compose command."""
        return shlex.join([*self.compose, "-p", self.project, *args])

    def compose_run(
        self,
        args: Sequence[str],
        *,
        capture: bool = False,
        check: bool = True,
        input: bytes | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(
            [*self.base_args(), *args],
            cwd=self.root,
            env=self.environ,
            input=input,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            detail = ""
            if capture and proc.stderr:
                detail = ": " + proc.stderr.decode(errors="replace").strip().splitlines()[-1]
            raise LabError(f"`{self.command_line(*args)}` failed ({proc.returncode}){detail}")
        return proc

    def exec(
        self,
        service: str,
        command: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 120,
        check: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``command`` in a running service, output captured (no TTY).

        Uses ``docker exec`` on the service's container rather than ``compose exec``:
        the same thing, but byte-exact for binary output with either compose and
        without compose's start-up cost on every call (tests make many).
        """
        cid = self.container_id(service)
        if cid is None:
            raise LabError(f"{service} is not running in project {self.project}")
        proc = subprocess.run(
            ["docker", "exec", *(["-i"] if input is not None else []), cid, *command],
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise LabError(
                f"{service}: {shlex.join(command)} failed ({proc.returncode}): " + _last_line(proc)
            )
        return proc

    def container_id(self, service: str) -> str | None:
        """The container of ``service`` in this project, found by compose's labels."""
        proc = subprocess.run(
            [
                "docker",
                "ps",
                "-aq",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
                "--filter",
                f"label=com.docker.compose.service={service}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        ids = proc.stdout.split()
        return ids[0] if ids else None

    def inspect(self, service: str) -> dict[str, object] | None:
        cid = self.container_id(service)
        if not cid:
            return None
        proc = subprocess.run(
            ["docker", "inspect", cid], capture_output=True, text=True, check=False
        )
        try:
            data = json.loads(proc.stdout or "[]")
        except json.JSONDecodeError:
            return None
        return data[0] if data else None

    def state(self, service: str) -> tuple[str, str]:
        """(status, health) of a service's container, e.g. ("running", "healthy")."""
        info = self.inspect(service)
        if info is None:
            return "missing", ""
        st = info.get("State")
        if not isinstance(st, dict):
            return "unknown", ""
        health = st.get("Health")
        return str(st.get("Status", "unknown")), (
            str(health.get("Status", "")) if isinstance(health, dict) else ""
        )

    def logs(self, service: str, tail: int = 40) -> str:
        proc = self.compose_run(
            ["logs", "--no-color", "--tail", str(tail), service], capture=True, check=False
        )
        return (proc.stdout + proc.stderr).decode(errors="replace")

    @property
    def out_dir(self) -> Path:
        return Path(self.environ.get("TCPLAB_OUT") or self.root / "out").resolve()

    # -- the verbs -----------------------------------------------------------------

    def remove_leftovers(self) -> None:
        """Containers, network and volume of an earlier run of this project."""
        self.compose_run(
            ["down", "--volumes", "--remove-orphans", "--timeout", "5"], capture=True, check=False
        )
        # `down` cannot see containers whose compose file changed shape; labels can.
        label = f"label=com.docker.compose.project={self.project}"
        for kind, listing in (
            ("container", ["docker", "ps", "-aq", "--filter", label]),
            ("network", ["docker", "network", "ls", "-q", "--filter", label]),
            ("volume", ["docker", "volume", "ls", "-q", "--filter", label]),
        ):
            ids = subprocess.run(
                listing, capture_output=True, text=True, check=False
            ).stdout.split()
            if ids:
                remove = ["docker", kind, "rm", *(["-f"] if kind != "network" else []), *ids]
                subprocess.run(remove, capture_output=True, check=False)

    def check_subnet(self) -> None:
        prefix = self.environ.get("TCPLAB_NET_PREFIX") or DEFAULT_NET_PREFIX
        subnet = f"{prefix}.0/24"
        owner = _subnets_in_use().get(subnet)
        if owner:
            raise LabError(
                f"the docker network {owner!r} already uses {subnet}, the lab's subnet; "
                f"remove it (docker network rm {owner}) or pick another, e.g. "
                f"TCPLAB_NET_PREFIX=172.28.9"
            )

    @property
    def image(self) -> str:
        return self.environ.get("TCPLAB_IMAGE") or DEFAULT_IMAGE

    def _image_id(self) -> str | None:
        proc = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Id}}", self.image],
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.stdout.strip() or None if proc.returncode == 0 else None

    def build(self) -> None:
        ensure_base_image(self.root)
        _say("building the image (the first build takes a few minutes) ...")
        started = time.monotonic()
        before = self._image_id()
        # docker-compose 1.x uses the classic builder, which keeps the container of a
        # failed step unless told otherwise; BuildKit (compose v2) leaves none.
        force_rm = ["--force-rm"] if self.compose[-1].endswith("docker-compose") else []
        self.compose_run(["build", *force_rm, "stack"])
        _say(f"image built in {time.monotonic() - started:.0f} s")
        after = self._image_id()
        if before and after and before != after:
            # The image it replaced, now untagged: remove it unless a container uses it
            # (docker refuses then), so rebuilds do not pile up dangling images.
            subprocess.run(["docker", "image", "rm", before], capture_output=True, check=False)

    def wait_healthy(self, timeout: float = 180.0, service: str = "stack") -> None:
        """Until ``service`` is healthy; prints progress on a terminal, fails with logs."""
        started = time.monotonic()
        last_print = 0.0
        while True:
            status, health = self.state(service)
            elapsed = time.monotonic() - started
            if health == "healthy":
                if last_print and sys.stderr.isatty():
                    print(file=sys.stderr)
                _say(f"{service} is up ({elapsed:.0f} s)")
                return
            if status in ("exited", "dead", "missing") or health == "unhealthy":
                if last_print and sys.stderr.isatty():
                    print(file=sys.stderr)
                raise LabError(
                    f"{service} is {health or status}; its last lines:\n{self.logs(service)}"
                )
            if elapsed > timeout:
                raise LabError(
                    f"{service} not healthy after {timeout:.0f} s; its last lines:\n"
                    f"{self.logs(service)}"
                )
            if elapsed - last_print >= 2 or not last_print:
                text = f"tcplab lab: waiting for {service} to answer ping ... {elapsed:.0f} s"
                if sys.stderr.isatty():
                    print(f"\r{text}", end="", file=sys.stderr, flush=True)
                elif elapsed - last_print >= 10 or not last_print:
                    print(text, file=sys.stderr, flush=True)
                last_print = max(elapsed, 0.001)
            time.sleep(0.5)

    def up(self, *, build: bool = True, timeout: float = 180.0) -> None:
        ok, why = docker_available()
        if not ok:
            raise LabError(f"no Docker engine: {why}")
        self.remove_leftovers()
        self.check_subnet()
        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)  # yours, not root's, when docker makes it
        if build:
            self.build()
        else:
            ensure_base_image(self.root)
        _say("starting stack ...")
        self.compose_run(["up", "-d", "--no-build", "stack"])
        self.wait_healthy(timeout)
        _say("starting peer and client ...")
        self.compose_run(["up", "-d", "--no-build"])
        for service in ("peer", "client"):
            status, _ = self.state(service)
            if status != "running":
                raise LabError(f"{service} is {status}; its last lines:\n{self.logs(service)}")

    def down(self) -> None:
        self.compose_run(["down", "--volumes", "--remove-orphans", "--timeout", "5"])

    def next_steps(self) -> str:
        ex = self.command_line("exec")
        return "\n".join(
            [
                "The lab is up. Try:",
                f"  {ex} peer ping -c3 10.0.0.2",
                f"  {ex} peer curl -s http://10.0.0.2/",
                f"  {ex} client tcplab run -- curl -s http://peer/",
                "  tcplab lab shell peer        (a shell; also stack, client)",
                f"Capture and event log: {self.out_dir}/stack.pcap, events.jsonl",
                "Stop it with: tcplab lab down",
            ]
        )

    def mounted_out_dir(self) -> Path:
        """The host folder mounted at /out in the stack container (else ``out_dir``)."""
        info = self.inspect("stack") or {}
        mounts = info.get("Mounts")
        if isinstance(mounts, list):
            for m in mounts:
                if isinstance(m, dict) and m.get("Destination") == "/out" and m.get("Source"):
                    return Path(str(m["Source"]))
        return self.out_dir

    def status_text(self) -> str:
        lines = [f"project {self.project} ({self.root})"]
        for service in SERVICES:
            status, health = self.state(service)
            lines.append(f"  {service:<7} {status}{f' ({health})' if health else ''}")
        out = self.mounted_out_dir()
        for name in ("stack.pcap", "events.jsonl"):
            path = out / name
            size = f"{path.stat().st_size} bytes" if path.exists() else "absent"
            lines.append(f"  {path}: {size}")
        return "\n".join(lines)

    # -- checks --------------------------------------------------------------------

    def smoke_checks(self) -> list[tuple[str, bool, str]]:
        """The lab itself: every service runs, the wire works, the stack answers."""
        results: list[tuple[str, bool, str]] = []
        for service in SERVICES:
            status, health = self.state(service)
            ok = status == "running" and health in ("", "healthy")
            results.append((f"{service} is running", ok, f"{status} {health}".strip()))
        if not all(ok for _, ok, _ in results):
            return results
        ping = self.exec("peer", ["ping", "-c2", "-W2", "10.0.0.2"], timeout=30)
        results.append(("peer pings 10.0.0.2", ping.returncode == 0, _last_line(ping)))
        echo = self.exec(
            "peer",
            ["sh", "-c", "printf 'hello tcplab\\n' | nc -N -w 5 10.0.0.2 7"],
            timeout=30,
        )
        results.append(
            (
                "peer talks to echo (10.0.0.2:7)",
                echo.stdout == b"hello tcplab\n",
                _last_line(echo),
            )
        )
        return results

    def lab_checks(self, which: str) -> list[Path]:
        labs = self.root / "labs"
        hooks = sorted(p for p in labs.glob("[0-9]*-*/check") if os.access(p, os.X_OK))
        if which in ("", "all"):
            return hooks
        selected = [h for h in hooks if h.parent.name.split("-", 1)[0] == which.zfill(2)]
        if not selected:
            raise LabError(f"no labs/{which.zfill(2)}-*/check (have: {_names(hooks) or 'none'})")
        return selected

    def run_check(self, hook: Path, timeout: float = CHECK_TIMEOUT) -> tuple[bool, str]:
        env = {
            **self.environ,
            "TCPLAB_PROJECT": self.project,
            "TCPLAB_COMPOSE": shlex.join(self.compose),
            "TCPLAB_ROOT": str(self.root),
            "TCPLAB_OUT": str(self.out_dir),
            "COMPOSE_PROJECT_NAME": self.project,
            "COMPOSE_FILE": str(self.root / "docker-compose.yml"),
        }
        try:
            proc = subprocess.run(
                [str(hook)], cwd=hook.parent, env=env, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return False, f"timed out after {timeout:.0f} s"
        except OSError as exc:
            return False, str(exc)
        return proc.returncode == 0, f"exit {proc.returncode}"


def _last_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    text = (proc.stdout + proc.stderr).decode(errors="replace").strip()
    return text.splitlines()[-1] if text else f"exit {proc.returncode}"


def _names(hooks: Sequence[Path]) -> str:
    return ", ".join(h.parent.name for h in hooks)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tcplab lab", description="The containerized lab (Docker Compose).")
    p.add_argument(
        "--project",
        default=os.environ.get("TCPLAB_PROJECT", DEFAULT_PROJECT),
        help=f"compose project name (default {DEFAULT_PROJECT})",
    )
    p.add_argument("--root", type=Path, help="the tcplab checkout (default: found from here)")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    up = sub.add_parser("up", help="build the image and start the lab")
    up.add_argument("--no-build", action="store_true", help="use the image as it is")
    up.add_argument("--out", type=Path, help="folder for stack.pcap and events.jsonl (./out)")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the stack")
    up.add_argument(
        "--stack-args", default=None, help='extra `tcplab stack` options, e.g. "--cc cubic"'
    )
    sub.add_parser("down", help="stop the lab and remove its containers, network and volume")
    sub.add_parser("status", help="containers, health and output files")
    sh = sub.add_parser("shell", help="a shell (or a command) in a service")
    sh.add_argument("service", choices=SERVICES)
    sh.add_argument("cmd", nargs=argparse.REMAINDER, help="command instead of bash")
    lg = sub.add_parser("logs", help="the containers' output")
    lg.add_argument("service", nargs="?", choices=SERVICES)
    lg.add_argument("-f", "--follow", action="store_true")
    ck = sub.add_parser("check", help="check the lab, then run labs/NN-*/check hooks")
    ck.add_argument("which", nargs="?", default="all", help="a lab number NN, or all")
    return p


def _env_for(args: argparse.Namespace) -> dict[str, str]:
    env: dict[str, str] = {}
    out = getattr(args, "out", None)
    if out is not None:
        env["TCPLAB_OUT"] = str(Path(out).resolve())
    stack_args = getattr(args, "stack_args", None)
    if stack_args is not None:
        env["TCPLAB_STACK_ARGS"] = stack_args
    return env


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        root = args.root.resolve() if args.root else find_root()
        lab = Lab(root=root, project=args.project, env=_env_for(args))
        return _dispatch(lab, args)
    except LabError as exc:
        _say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


def _dispatch(lab: Lab, args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if args.verb == "up":
        lab.up(build=not args.no_build, timeout=args.timeout)
        print(lab.next_steps())
        return 0
    if args.verb == "down":
        lab.down()
        return 0
    if args.verb == "status":
        print(lab.status_text())
        return 0 if lab.state("stack")[1] == "healthy" else 3
    if args.verb == "shell":
        cmd = list(args.cmd) or ["bash"]
        if cmd and cmd[0] == "--":
            cmd = cmd[1:]
        flags = [] if interactive else ["-T"]
        return lab.compose_run(["exec", *flags, args.service, *cmd], check=False).returncode
    if args.verb == "logs":
        extra = ["-f"] if args.follow else []
        services = [args.service] if args.service else []
        return lab.compose_run(["logs", "--no-color", *extra, *services], check=False).returncode
    if args.verb == "check":
        return _check(lab, args.which)
    return 2


def _check(lab: Lab, which: str) -> int:
    failed = 0
    hooks = lab.lab_checks(which)
    for name, ok, detail in lab.smoke_checks():
        print(f"{'PASS' if ok else 'FAIL'}  lab: {name}" + ("" if ok else f"  ({detail})"))
        failed += not ok
    if failed:
        print("the lab itself is not sound; is it up? (tcplab lab up)")
        return 1
    if not hooks:
        print("no labs/NN-*/check hooks yet")
    for hook in hooks:
        print(f"---- {hook.parent.name}", flush=True)
        ok, detail = lab.run_check(hook)
        print(f"{'PASS' if ok else 'FAIL'}  {hook.parent.name}" + ("" if ok else f"  ({detail})"))
        failed += not ok
    total = len(hooks)
    if total:
        print(f"{total - failed} of {total} labs pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
