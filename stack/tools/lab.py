"""`tcplab lab`: the containerized lab, a thin layer over Docker Compose.

    tcplab lab up [--for NN] [--no-build] [--out DIR] [--stack-args=ARGS]
                                              build the image and start the lab (for lab NN)
    tcplab lab down                           stop it and remove its containers, network, volume
    tcplab lab status                         containers, health, output files
    tcplab lab exec SERVICE CMD ...           run CMD in stack, peer or client (docker exec)
    tcplab lab shell SERVICE [CMD ...]        a shell (or CMD) in a service
    tcplab lab logs [SERVICE]                 the containers' output
    tcplab lab check [NN|all]                 is the lab sound; run labs/NN-*/check

What it adds to `docker compose up`:

* the compose project is always named ``tcplab`` (``--project`` or ``TCPLAB_PROJECT`` to
  change it), whatever the folder is called, so ``down`` finds what ``up`` made;
* where no registry can be reached, the base image ``debian:bookworm-slim`` is created
  locally first (scripts/base-image.sh: debootstrap + docker import), after which plain
  ``docker compose up`` works too;
* leftovers of an earlier lab (containers, the network, the socket volume) are removed
  before starting, and a docker network that holds the lab's subnet is named in the error;
* ``--for NN`` starts every container afresh with lab NN's stack options (the file
  ``labs/NN-*/stack-args``) and an empty capture, so each lab starts from a known state
  whatever the lab before it left behind (loss rules, routes, a TIME-WAIT setting);
* the build shows its progress, and ``up`` waits until the stack answers ping, printing
  how long it has waited, then says what to type next;
* ``exec`` finds the service's container by its compose labels and runs ``docker exec``
  on it: one spelling for both compose versions, and about 0.2 s per call where
  ``docker-compose exec`` takes seconds (which spoils the timing of some lab steps).

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
STACK_ADDRESS6 = "fd00:0:0:1::2"  # the stack behind mytun (docker-compose.yml); 10.0.0.2 in IPv4
CHECK_TIMEOUT = 600.0
# What a fresh start for a lab clears in the output folder besides the stack's own
# capture and event log (which the stack container recreates empty when it starts).
CLEARED_FOR_A_LAB = ("swap.pcap", "swap-events.jsonl", "tunread.txt")


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


def net6_prefix(prefix: str) -> str:
    """The docker network's IPv6 /64 (its first four groups) for an IPv4 prefix ``a.b.c``:
    ``fd00:a:b:c``, the decimal octets read as hex groups (a ULA, RFC 4193's fd00::/8; never
    ``fd00:0:0:1``, the TUN's prefix, since no IPv4 network starts with 0.0)."""
    a, b, c = prefix.split(".")
    return f"fd00:{int(a)}:{int(b)}:{int(c)}"


def lab_folder(root: Path, number: str) -> Path:
    """labs/NN-*/ for a lab number ("6", "06") or a folder name ("06-retransmission")."""
    key = number.strip().rstrip("/").split("/")[-1]
    nn = key.split("-", 1)[0]
    if not nn.isdigit():
        raise LabError(f"not a lab number: {number!r} (01 .. 12)")
    found = sorted((root / "labs").glob(f"{nn.zfill(2)}-*"))
    if not found or not found[0].is_dir():
        have = ", ".join(p.name[:2] for p in sorted((root / "labs").glob("[0-9][0-9]-*")))
        raise LabError(f"no lab {nn.zfill(2)} (have: {have or 'none'})")
    return found[0]


def lab_stack_args(folder: Path) -> str:
    """The stack options lab ``folder`` runs with: its ``stack-args`` file without the
    comment lines ('' when the lab needs none)."""
    path = folder / "stack-args"
    if not path.is_file():
        return ""
    words = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            words.append(line)
    return " ".join(words)


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
        env = {**os.environ, **self.env}
        if not env.get("TCPLAB_NET6_PREFIX"):
            # the compose file's IPv6 subnet follows the IPv4 one (parallel labs, tests)
            env["TCPLAB_NET6_PREFIX"] = net6_prefix(env.get("TCPLAB_NET_PREFIX")
                                                    or DEFAULT_NET_PREFIX)
        return env

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

    def exec_argv(self, service: str, command: Sequence[str], *, stdin_tty: bool,
                  stdout_tty: bool) -> list[str]:
        """The ``docker exec`` command line for a learner's ``tcplab lab exec``.

        stdin is passed on (``-i``) so that ``tcplab lab exec client sh -c 'cat > f' < f``
        works; a terminal on both ends also gets a TTY (``-t``), so that Ctrl-C, colours
        and full-screen programs behave as in a shell there."""
        if service not in SERVICES:
            raise LabError(f"no service {service!r} (stack, peer, client)")
        if not command:
            raise LabError(f"give the command to run in {service}, e.g. "
                           f"tcplab lab exec {service} ip addr")
        cid = self.container_id(service)
        if cid is None:
            raise LabError(f"{service} is not running in project {self.project}; "
                           "start the lab first: tcplab lab up")
        flags = ["-i", "-t"] if stdin_tty and stdout_tty else ["-i"]
        return ["docker", "exec", *flags, cid, *command]

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

    def up(self, *, build: bool = True, timeout: float = 180.0, fresh: bool = False) -> None:
        """Start the lab; every container is new (leftovers are removed first).

        ``fresh``: also clear what an earlier lab left in the output folder
        (CLEARED_FOR_A_LAB); the stack's capture and event log start empty anyway."""
        ok, why = docker_available()
        if not ok:
            raise LabError(f"no Docker engine: {why}")
        self.remove_leftovers()
        self.check_subnet()
        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)  # yours, not root's, when docker makes it
        if fresh:
            for name in CLEARED_FOR_A_LAB:
                (out / name).unlink(missing_ok=True)
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

    def next_steps(self, lab: str = "") -> str:
        ex = ("tcplab lab exec" if self.project == DEFAULT_PROJECT
              else f"tcplab lab --project {self.project} exec")
        first = f"The lab is up for lab {lab}. Try:" if lab else "The lab is up. Try:"
        return "\n".join(
            [
                first,
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
        # Several pings, one answer is enough: a lab may run the stack with loss (lab 06:
        # 10 % each way, so 2 pings both fail 1 time in 28); ping exits 0 on any reply.
        for address in ("10.0.0.2", STACK_ADDRESS6):
            ping = self.exec("peer", ["ping", "-c8", "-i0.2", "-W2", "-q", address], timeout=30)
            results.append((f"peer pings {address}", ping.returncode == 0, _last_line(ping)))
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
    up.add_argument("--for", dest="for_lab", metavar="NN",
                    help="start afresh for lab NN: its stack options (labs/NN-*/stack-args), "
                         "an empty capture, new containers")
    up.add_argument("--no-build", action="store_true", help="use the image as it is")
    up.add_argument("--out", type=Path, help="folder for stack.pcap and events.jsonl (./out)")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the stack")
    up.add_argument(
        "--stack-args",
        default=None,
        metavar="ARGS",
        help='more `tcplab stack` options, e.g. --stack-args "--cc cubic --no-offload" '
        "(after the lab's own with --for)",
    )
    sub.add_parser("down", help="stop the lab and remove its containers, network and volume")
    sub.add_parser("status", help="containers, health and output files")
    ex = sub.add_parser("exec", help="run a command in a service (docker exec; fast)")
    ex.add_argument("service", choices=SERVICES)
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="the command and its arguments")
    sh = sub.add_parser("shell", help="a shell (or a command) in a service")
    sh.add_argument("service", choices=SERVICES)
    sh.add_argument("cmd", nargs=argparse.REMAINDER, help="command instead of bash")
    lg = sub.add_parser("logs", help="the containers' output")
    lg.add_argument("service", nargs="?", choices=SERVICES)
    lg.add_argument("-f", "--follow", action="store_true")
    ck = sub.add_parser("check", help="check the lab, then run labs/NN-*/check hooks")
    ck.add_argument("which", nargs="?", default="all", help="a lab number NN, or all")
    return p


def join_option_values(argv: Sequence[str], options: Sequence[str] = ("--stack-args",)) -> list[str]:
    """``--stack-args "--no-offload"`` as ``--stack-args=--no-offload``: argparse takes a
    value that starts with '-' for an option of its own otherwise ("expected one
    argument"). Only before the verb's positional command (``exec peer CMD`` is left as
    it is)."""
    out: list[str] = []
    i = 0
    items = list(argv)
    while i < len(items):
        word = items[i]
        if word in ("exec", "shell"):
            out.extend(items[i:])
            break
        if word in options and i + 1 < len(items):
            out.append(f"{word}={items[i + 1]}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


def _env_for(args: argparse.Namespace, root: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    out = getattr(args, "out", None)
    if out is not None:
        env["TCPLAB_OUT"] = str(Path(out).resolve())
    parts = []
    for_lab = getattr(args, "for_lab", None)
    if for_lab:
        parts.append(lab_stack_args(lab_folder(root, for_lab)))
    stack_args = getattr(args, "stack_args", None)
    if stack_args is not None:
        parts.append(stack_args)
    if for_lab or stack_args is not None:
        env["TCPLAB_STACK_ARGS"] = " ".join(p for p in parts if p)
    return env


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(join_option_values(argv))
    try:
        root = args.root.resolve() if args.root else find_root()
        lab = Lab(root=root, project=args.project, env=_env_for(args, root))
        return _dispatch(lab, args)
    except LabError as exc:
        _say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


def _dispatch(lab: Lab, args: argparse.Namespace) -> int:
    if args.verb == "up":
        if args.for_lab:
            folder = lab_folder(lab.root, args.for_lab)
            options = lab.env.get("TCPLAB_STACK_ARGS", "")
            _say(f"a fresh lab for {folder.name}: tcplab stack {options or '(no extra options)'}")
        lab.up(build=not args.no_build, timeout=args.timeout, fresh=bool(args.for_lab))
        print(lab.next_steps(lab_folder(lab.root, args.for_lab).name if args.for_lab else ""))
        return 0
    if args.verb == "down":
        lab.down()
        return 0
    if args.verb == "status":
        print(lab.status_text())
        return 0 if lab.state("stack")[1] == "healthy" else 3
    if args.verb in ("exec", "shell"):
        cmd = list(args.cmd)
        if cmd and cmd[0] == "--":
            cmd = cmd[1:]
        if args.verb == "shell" and not cmd:
            cmd = ["bash"]
        argv = lab.exec_argv(args.service, cmd, stdin_tty=sys.stdin.isatty(),
                             stdout_tty=sys.stdout.isatty())
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execvp(argv[0], argv)  # the command's exit status is ours
        except OSError as exc:
            raise LabError(f"cannot run docker: {exc}") from None
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
