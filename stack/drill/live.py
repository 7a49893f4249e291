"""`tcplab drill --daemon`: packetdrill scripts against the running daemon, through the shim.

The sans-IO mode (runner.py) drives a Host on a virtual clock. This mode runs the same
scripts, with the same parser, matcher and packet codec, against the real thing:

- `LiveNamespace`: a network namespace of our own (`drill-...`, or the prefix given).
  Its kernel never takes part: nftables drops every IP packet that enters from or
  leaves to the TUN (the stack's packets to the script's peer, and anything the kernel
  would send it), and forwarding is off. The peer's address (192.0.2.1, 2001:db8::1)
  is owned by nobody.
- one `tcplab stack` daemon per script (a fresh host: no TIME-WAIT or cookie left by the
  previous script), started in the namespace with the script's sysctls as flags
  (`--tcp-default`, `--insecure-rst`, `--ecn`, `--fastopen`, `--mtu`) and
  `--no-offload` (the segments on the TUN are the segments TCP sent, as on a wire).
- `LiveStack`: the peer's side. The script's packets are written to the TUN through an
  AF_PACKET socket bound to it (so they reach the daemon as if the kernel had routed
  them there); the same socket captures what the daemon writes to the TUN for the
  peer, time-stamped on CLOCK_MONOTONIC as it arrives.
- `AgentFiles`: the script's system calls, run by `python -m stack.drill.agent` under
  LD_PRELOAD=libsocketoverride.so (as `tcplab run` starts programs), so each call really
  passes through the shim to the daemon. Every call runs on a thread of the agent; one
  that has not answered within the tolerance is a blocking call that waits (the
  script goes on and its result is checked when it comes).

Time is real: the script's times are seconds since the daemon became ready, and a
packet or a call's return must come within --tolerance_usecs times `tolerance_factor`
(plus `tolerance_floor`) of its time: the daemon is Python, a segment takes it a
millisecond or more. What the mode cannot do is reported `skipped: not supported: ...`
(see docs/drill.md, "Against the daemon").
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stack.drill.adapter import REMOTE_ADDR, REMOTE_ADDR6, StackSettings
from stack.drill.model import (
    Event,
    PacketEvent,
    Script,
    ScriptError,
    ShellCommand,
    Syscall,
    Unsupported,
)
from stack.drill.parser import DEFAULT_DEFINES, parse_file
from stack.drill.runner import _SOCKSTAT_RE, _TCPDROP_RE, Result, Runner, apply_sysctl
from stack.drill.syscalls import (
    CONSTANTS,
    LOCAL_PORT,
    REMOTE_PORT,
    SyscallDispatch,
    ValueMismatch,
    WouldBlock,
    evaluate,
    show,
    sockopt_supported,
)
from stack.tcp.fastopen import FASTOPEN_CLIENT, FASTOPEN_SERVER

REPO_ROOT = Path(__file__).resolve().parents[2]
TUN = "mytun"
STACK_ADDR = "10.0.0.2"  # the daemon's defaults (tcplab stack --address, --address6)
KERNEL_ADDR = "10.0.0.1/24"
STACK_ADDR6 = "fd00:0:0:1::2"
KERNEL_ADDR6 = "fd00:0:0:1::1/64"
ETH_P_ALL, ETH_P_IP, ETH_P_IPV6 = 0x0003, 0x0800, 0x86DD
PACKET_OUTGOING = 4
TCP_INFO = 11
MSG_FASTOPEN = 0x20000000
DAEMON_READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
QUICK_CALL = 5.0  # a call that cannot block (bind, setsockopt...) must answer in this
MAX_WAIT = 10.0  # real seconds a `*` expectation or a pending call waits at most
LOOK_AHEAD = 0.5  # how long past a missed expectation the report looks for the packet
_LINUX_STATES = {1: "ESTABLISHED", 2: "SYN-SENT", 3: "SYN-RECEIVED", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
                 6: "TIME-WAIT", 7: "CLOSED", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN",
                 11: "CLOSING"}  # fmt: skip

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def environment_problem() -> str | None:
    """Why this machine cannot run the mode, or None."""
    if sys.platform != "linux":
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root (a network namespace, a TUN device, AF_PACKET)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    for tool in ("ip", "nft"):
        if not any(os.access(os.path.join(d, tool), os.X_OK) for d in os.get_exec_path()):
            return f"'{tool}' is not installed"
    return None


def _run(argv: list[str], input_text: str | None = None) -> None:
    cp = subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=20)
    if cp.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {cp.returncode}: {cp.stderr.strip()}")


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group we started, then SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)


# ------------------------------------------------------------------ the namespace


class LiveNamespace:
    """A network namespace whose kernel stays out of the TUN's traffic."""

    def __init__(self, prefix: str = "drill-") -> None:
        self.name = f"{prefix}{os.getpid()}"
        self.created = False

    def __enter__(self) -> LiveNamespace:
        _run(["ip", "netns", "add", self.name])
        self.created = True
        try:
            _run(["ip", "-n", self.name, "link", "set", "lo", "up"])
            # Whatever enters from the TUN or would leave to it at the IP layer is
            # dropped: the kernel neither answers for the script's peer nor talks to
            # the stack. The AF_PACKET socket sees (and writes) the TUN's packets
            # below netfilter.
            _run(["ip", "netns", "exec", self.name, "nft", "-f", "-"], f"""
table inet drill {{
  chain in {{ type filter hook prerouting priority -300; policy accept; iifname "{TUN}" drop; }}
  chain out {{ type filter hook output priority -300; policy accept; oifname "{TUN}" drop; }}
}}
""")
        except Exception:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.created:
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=20)
            self.created = False

    def call(self, fn: Callable[[], Any]) -> Any:
        """`fn()` on a thread that joined the namespace (sockets it makes stay there)."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
                try:
                    if _libc.setns(fd, _CLONE_NEWNET) != 0:
                        e = ctypes.get_errno()
                        raise OSError(e, os.strerror(e))
                finally:
                    os.close(fd)
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box["error"] = exc

        t = threading.Thread(target=target, name="drill-netns")
        t.start()
        t.join()
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], start_new_session=True, **kw)


# ------------------------------------------------------------------ the daemon


def daemon_args(s: StackSettings) -> list[str]:
    """`tcplab stack` flags for a script's settings (its sysctls)."""
    args = [f"--mtu={s.mtu}", f"--ecn={s.ecn}",
            f"--fastopen={(FASTOPEN_CLIENT if s.fastopen_client else 0) | (FASTOPEN_SERVER if s.fastopen_server else 0)}"]
    defaults = {"recv_buffer": s.recv_buffer, "send_buffer": s.send_buffer, "sack": int(s.sack),
                "window_scaling": int(s.window_scaling), "timestamps": int(s.timestamps),
                "delayed_ack": s.delayed_ack, "initial_rto": s.initial_rto,
                "keepalive_idle": s.keepalive_idle, "keepalive_interval": s.keepalive_interval,
                "keepalive_count": s.keepalive_count, "connect_timeout": s.connect_timeout,
                "drop_synfin": int(s.drop_synfin)}  # fmt: skip
    args += [f"--tcp-default={k}={v}" for k, v in defaults.items()]
    if s.udp_tunneling_port:
        args.append(f"--tcp-udp-port={s.udp_tunneling_port}")  # TCP over UDP (RFC 8085 port)
    if not s.rfc5961_rst:
        args.append("--insecure-rst")
    if not s.rfc5961_syn:
        args.append("--insecure-syn")
    return args


class Daemon:
    """`tcplab stack` in the namespace, with its own control socket."""

    def __init__(self, ns: LiveNamespace, settings: StackSettings, tmpdir: Path) -> None:
        self.socket_path = str(tmpdir / "stack.sock")
        argv = [sys.executable, "-m", "stack.cli", "stack", "--socket", self.socket_path,
                "--service", "none", "--no-offload", "--tun", TUN,
                "--address", STACK_ADDR, "--kernel-address", KERNEL_ADDR,
                "--address6", STACK_ADDR6, "--kernel-address6", KERNEL_ADDR6,
                *daemon_args(settings)]  # fmt: skip
        self.lines: list[str] = []
        ready = threading.Event()
        self.proc = ns.popen(argv, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def read() -> None:
            assert self.proc.stderr is not None
            for raw in self.proc.stderr:
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines.append(line)
                if "ready" in line:
                    ready.set()

        threading.Thread(target=read, daemon=True, name="drill-daemon-stderr").start()
        deadline = time.monotonic() + DAEMON_READY_TIMEOUT
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("tcplab stack did not start:\n" + "\n".join(self.lines[-20:]))

    def stop(self) -> None:
        _kill_group(self.proc)


# ------------------------------------------------------------------ packets and replies


class LiveStack:
    """The runner's view of the daemon: real time, and the TUN's packets to the peer.

    The same interface as adapter.StackAdapter where the runner uses it: `now`,
    `outbox`, `step`, `advance`, `inject`, `apply`, `count_state`, `drop_state`."""

    def __init__(self, ns: LiveNamespace, daemon: Daemon, *, ipv6: bool) -> None:
        self.daemon = daemon
        self.ipv6 = ipv6
        self.local_addr = STACK_ADDR6 if ipv6 else STACK_ADDR
        self.remote_addr = REMOTE_ADDR6 if ipv6 else REMOTE_ADDR
        self._peer = socket.inet_pton(socket.AF_INET6 if ipv6 else socket.AF_INET, self.remote_addr)
        self.outbox: deque[tuple[float, bytes]] = deque()
        self.cond = threading.Condition()
        self.events = 0  # packets captured plus replies received
        self._seen = 0
        self._stop = False
        self.sock: socket.socket = ns.call(lambda: self._open())
        self.t0 = time.monotonic()
        self._reader = threading.Thread(target=self._capture, daemon=True, name="drill-capture")
        self._reader.start()

    @staticmethod
    def _open() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        s.bind((TUN, ETH_P_ALL))
        s.settimeout(0.05)  # how soon the capture thread sees close()
        return s

    def _capture(self) -> None:
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            stamp = time.monotonic() - self.t0
            if addr[2] == PACKET_OUTGOING or not self._to_peer(data):
                continue
            with self.cond:
                self.outbox.append((stamp, data))
                self.events += 1
                self.cond.notify_all()

    def _to_peer(self, data: bytes) -> bool:
        if self.ipv6:
            return len(data) >= 40 and data[0] >> 4 == 6 and data[24:40] == self._peer
        return len(data) >= 20 and data[0] >> 4 == 4 and data[16:20] == self._peer

    def notify(self) -> None:
        """Something happened the runner may be waiting for (an agent's reply)."""
        with self.cond:
            self.events += 1
            self.cond.notify_all()

    def close(self) -> None:
        self._stop = True
        self._reader.join(2)
        self.sock.close()

    # ---------------------------------------------------------- the clock

    @property
    def now(self) -> float:
        return time.monotonic() - self.t0

    def step(self, limit: float) -> bool:
        """Wait for the next packet or reply until `limit`; False once `limit` passed."""
        with self.cond:
            while self._seen == self.events:
                left = limit - self.now
                if left <= 0:
                    return False
                self.cond.wait(left)
            self._seen = self.events
            return True

    def advance(self, until: float) -> None:
        """Real time moves by itself; `step` has already waited until `until`."""

    def inject(self, packet: bytes) -> None:
        proto = ETH_P_IPV6 if packet[0] >> 4 == 6 else ETH_P_IP
        try:
            self.sock.sendto(packet, (TUN, proto))
        except OSError as exc:
            if exc.errno != errno.EMSGSIZE:
                raise
            raise Unsupported(f"an inbound packet of {len(packet)} bytes, over the TUN's MTU") from None

    def apply(self, settings: StackSettings) -> None:
        """A sysctl after the daemon started: only at the end of a script (preflight)."""

    def count_state(self, state: str, port: int | None = None, ipv6: bool | None = None) -> int:
        """FreeBSD's `sockstat`: the daemon's sockets in `state` (its control socket's
        list, as `tcplab ss`), and for SYN-RECEIVED its listeners' half-open ones."""
        from stack.ipc.client import query_sockets

        count = 0
        for row in query_sockets(self.daemon.socket_path):
            if row.get("proto") != "tcp":
                continue
            local, remote = str(row.get("local", "")), str(row.get("remote", ""))
            lport = int(local.rsplit(":", 1)[1]) if local[-1:].isdigit() else 0
            v6 = local.startswith("[") or remote.startswith("[")  # IPv6 endpoints are bracketed
            if (port is not None and lport != port) or (ipv6 is not None and v6 != ipv6):
                continue
            if row.get("state") == state:
                count += 1
            if state == "SYN-RECEIVED" and isinstance(row.get("syn_queue"), int):
                count += int(row["syn_queue"])  # type: ignore[call-overload]
        return count

    def drop_state(self, state: str) -> None:
        raise Unsupported("tcpdrop against the daemon")


# ------------------------------------------------------------------ the agent


class Agent:
    """`python -m stack.drill.agent` under the shim; requests out, replies in."""

    def __init__(self, ns: LiveNamespace, daemon: Daemon, on_reply: Callable[[], None]) -> None:
        from stack.ipc.run import build_env, find_shim

        env = build_env(find_shim(), daemon.socket_path)
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = ns.popen([sys.executable, "-m", "stack.drill.agent"], cwd=str(REPO_ROOT), env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, bufsize=1)
        self.replies: dict[int, dict[str, Any]] = {}
        self.lock = threading.Condition()
        self.on_reply = on_reply
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True, name="drill-agent").start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            reply = json.loads(line)
            with self.lock:
                self.replies[int(reply["id"])] = reply
                self.lock.notify_all()
            self.on_reply()
        with self.lock:  # the agent is gone: wake whoever waits
            self.lock.notify_all()

    def send(self, req: dict[str, Any]) -> int:
        self.next_id += 1
        req["id"] = self.next_id
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self.next_id

    def take(self, rid: int) -> dict[str, Any] | None:
        with self.lock:
            return self.replies.pop(rid, None)

    def wait(self, rid: int, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while rid not in self.replies:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the system-call agent exited (status {self.proc.returncode})")
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.lock.wait(left)
            return self.replies.pop(rid)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        _kill_group(self.proc)


@dataclass
class AgentSock:
    """One of the script's sockets: the agent's fd and what the runner knows of it."""

    files: AgentFiles
    fd: int  # the agent's real file descriptor
    nonblocking: bool = False
    listening: bool = False
    connected: bool = False
    fastopen_client: bool = False

    def tcp_info(self) -> dict[str, Any]:
        """getsockopt(TCP_INFO) through the shim (the daemon answers Linux's layout)."""
        reply = self.files.quick({"op": "getsockopt", "fd": self.fd, "level": socket.IPPROTO_TCP,
                                  "name": TCP_INFO, "size": 104})
        if reply["ret"] < 0:
            raise OSError(reply["errno"], os.strerror(reply["errno"]))
        raw = bytes.fromhex(reply["value"])
        if len(raw) < 8:
            # The daemon answers so for a socket it has let go of (both directions
            # closed: a "tombstone"), though its connection lives on (LAST-ACK...).
            raise RuntimeError(f"getsockopt(TCP_INFO) through the shim returned {len(raw)} bytes, "
                               "not a struct tcp_info")
        opts = raw[5]
        return {"state": _LINUX_STATES.get(raw[0], str(raw[0])), "ts": bool(opts & 1),
                "sack": bool(opts & 2), "ws": bool(opts & 4), "ecn": bool(opts & 8)}


@dataclass
class AgentFiles(SyscallDispatch[AgentSock]):
    """The script's system calls, run by the agent through the shim.

    `call` returns the result or raises OSError (the call's errno), ValueMismatch (a
    getsockopt value), Unsupported, or WouldBlock when the call has not returned within
    `block_after` seconds (its `retry` then answers once the agent has)."""

    agent: Agent
    ipv6: bool
    block_after: float
    strict: bool = False
    socks: dict[int, AgentSock] = field(default_factory=dict)
    current: int | None = None
    relaxed: set[str] = field(default_factory=set)

    @property
    def family(self) -> int:
        return socket.AF_INET6 if self.ipv6 else socket.AF_INET

    @property
    def peer(self) -> str:
        return REMOTE_ADDR6 if self.ipv6 else REMOTE_ADDR

    # ---------------------------------------------------------- requests

    def quick(self, req: dict[str, Any]) -> dict[str, Any]:
        """A request that cannot block: its reply."""
        reply = self.agent.wait(self.agent.send(req), QUICK_CALL)
        if reply is None:
            raise RuntimeError(f"the agent did not answer {req['op']}() within {QUICK_CALL} s")
        return reply

    def _request(self, req: dict[str, Any], blocking: bool, finish: Callable[[dict[str, Any]], int]) -> int:
        rid = self.agent.send(req)
        reply = self.agent.wait(rid, self.block_after if blocking else QUICK_CALL)
        if reply is not None:
            return finish(_checked(reply))
        if not blocking:
            raise RuntimeError(f"the agent did not answer {req['op']}() within {QUICK_CALL} s")

        def retry() -> int:
            late = self.agent.take(rid)
            if late is None:
                raise WouldBlock(retry)
            return finish(_checked(late))

        raise WouldBlock(retry)

    def _simple(self, sc: Syscall, req: dict[str, Any], blocking: bool = False) -> int:
        return self._request(req, blocking, lambda r: int(r["ret"]))

    # ---------------------------------------------------------- calls

    def sys_socket(self, sc: Syscall) -> int:
        if len(sc.args) != 3:
            raise Unsupported("socket() with other than 3 arguments")
        if evaluate(sc.args[1]) != socket.SOCK_STREAM:
            raise Unsupported(f"socket type {show(sc.args[1])}")
        want = evaluate(sc.result)
        if not isinstance(want, int) or want < 0:
            raise Unsupported("socket() expected to fail")
        got = int(_checked(self.quick({"op": "socket", "family": self.family}))["ret"])
        self.socks[want] = AgentSock(self, got)
        self.current = want
        return got

    def sys_fcntl(self, sc: Syscall) -> int:
        s = self.sock(sc.args[0])
        cmd = evaluate(sc.args[1])
        req: dict[str, Any] = {"op": "fcntl", "fd": s.fd, "cmd": cmd}
        if cmd == fcntl.F_SETFL:
            req["arg"] = evaluate(sc.args[2])
            s.nonblocking = bool(req["arg"] & os.O_NONBLOCK)
        elif cmd != fcntl.F_GETFL:
            raise Unsupported(f"fcntl command {show(sc.args[1])}")
        return self._simple(sc, req)

    def sys_bind(self, sc: Syscall) -> int:
        s = self.sock(sc.args[0])
        return self._simple(sc, {"op": "bind", "fd": s.fd, "addr": "::" if self.ipv6 else "0.0.0.0",
                                 "port": LOCAL_PORT})

    def sys_listen(self, sc: Syscall) -> int:
        s = self.sock(sc.args[0])
        s.listening = True
        return self._simple(sc, {"op": "listen", "fd": s.fd, "backlog": evaluate(sc.args[1])})

    def sys_accept(self, sc: Syscall) -> int:
        s = self.sock(sc.args[0])

        def finish(reply: dict[str, Any]) -> int:
            want = evaluate(sc.result)
            new_fd = want if isinstance(want, int) and want >= 0 and want not in self.socks \
                else max([2, *self.socks]) + 1
            self.socks[new_fd] = AgentSock(self, int(reply["ret"]), connected=True)
            self.current = new_fd
            return new_fd

        return self._request({"op": "accept", "fd": s.fd}, not s.nonblocking, finish)

    def sys_connect(self, sc: Syscall) -> int:
        s = self.sock(sc.args[0])
        self.current = evaluate(sc.args[0])
        s.connected = True
        return self._simple(sc, {"op": "connect", "fd": s.fd, "addr": self.peer, "port": REMOTE_PORT},
                            not s.nonblocking)

    def _send(self, sc: Syscall, op: str, length_arg: int, flags_arg: int | None) -> int:
        s = self.sock(sc.args[0])
        flags = evaluate(sc.args[flags_arg]) if flags_arg is not None else 0
        if flags != 0:
            raise Unsupported(f"{sc.name}() flags {show(sc.args[flags_arg or 0])}")
        return self._simple(sc, {"op": op, "fd": s.fd, "n": evaluate(sc.args[length_arg]), "flags": 0},
                            not s.nonblocking)

    def sys_write(self, sc: Syscall) -> int:
        return self._send(sc, "write", 2, None)

    def sys_send(self, sc: Syscall) -> int:
        return self._send(sc, "send", 2, 3)

    def sys_sendto(self, sc: Syscall) -> int:
        s = self.sock(sc.args[0])
        if self.implied_connect(sc, s.connected):
            # With TCP_FASTOPEN set, a Fast Open: Linux's sendto(MSG_FASTOPEN), which the
            # shim hands to the daemon.
            s.connected = True
            n = evaluate(sc.args[2])
            if s.fastopen_client:
                return self._simple(sc, {"op": "sendto", "fd": s.fd, "n": n, "flags": MSG_FASTOPEN,
                                         "addr": self.peer, "port": REMOTE_PORT}, not s.nonblocking)
            raise Unsupported("sendto() as an implied connect without TCP_FASTOPEN")
        return self._send(sc, "send", 2, 3)

    def _recv(self, sc: Syscall, flags_arg: int | None) -> int:
        s = self.sock(sc.args[0])
        flags = evaluate(sc.args[flags_arg]) if flags_arg is not None else 0
        if flags & ~socket.MSG_PEEK:
            raise Unsupported(f"{sc.name}() flags {show(sc.args[flags_arg or 0])}")
        req = {"op": "recv" if flags_arg is not None else "read", "fd": s.fd, "n": evaluate(sc.args[2]),
               "flags": flags}
        return self._simple(sc, req, not s.nonblocking)

    def sys_read(self, sc: Syscall) -> int:
        return self._recv(sc, None)

    def sys_recv(self, sc: Syscall) -> int:
        return self._recv(sc, 3)

    def sys_shutdown(self, sc: Syscall) -> int:
        s = self.sock(sc.args[0])
        return self._simple(sc, {"op": "shutdown", "fd": s.fd, "how": evaluate(sc.args[1])})

    def sys_close(self, sc: Syscall) -> int:
        fd = evaluate(sc.args[0])
        s = self.sock(fd)
        del self.socks[fd]
        return self._simple(sc, {"op": "close", "fd": s.fd})

    def _sockopt(self, sc: Syscall) -> tuple[AgentSock, int, int, str]:
        if len(sc.args) != 5:
            raise Unsupported(f"{sc.name}() with {len(sc.args)} arguments")
        s = self.sock(sc.args[0])
        if not sockopt_supported(sc.args[1], sc.args[2]):
            raise Unsupported(f"socket option {show(sc.args[2])}")
        return s, CONSTANTS[show(sc.args[1])], CONSTANTS[show(sc.args[2])], show(sc.args[2])

    def sys_setsockopt(self, sc: Syscall) -> int:
        s, level, name, _ = self._sockopt(sc)
        value = evaluate(sc.args[3])
        if not (isinstance(value, list) and len(value) == 1 and isinstance(value[0], int)):
            raise Unsupported(f"setsockopt() value {sc.args[3]!r}")
        if (level, name) == (socket.IPPROTO_TCP, socket.TCP_FASTOPEN) and not s.listening:
            s.fastopen_client = bool(value[0])  # FreeBSD: Fast Open as a client
        return self._simple(sc, {"op": "setsockopt", "fd": s.fd, "level": level, "name": name,
                                 "value": value[0]})

    def sys_getsockopt(self, sc: Syscall) -> int:
        s, level, name, opt_name = self._sockopt(sc)
        want = evaluate(sc.args[3])
        if not (isinstance(want, list) and len(want) == 1 and isinstance(want[0], int)):
            raise Unsupported(f"getsockopt() value {sc.args[3]!r}")

        def finish(reply: dict[str, Any]) -> int:
            got = int(reply["value"])
            if got != want[0]:
                if level == socket.SOL_SOCKET and name in (socket.SO_RCVBUF, socket.SO_SNDBUF) \
                        and not self.strict:
                    self.relaxed.add("buffer-size")
                else:
                    shown = errno.errorcode.get(got, str(got)) if name == socket.SO_ERROR else got
                    raise ValueMismatch(f"getsockopt {opt_name}: expected {show(sc.args[3])}, actual [{shown}]")
            return int(reply["ret"])

        return self._request({"op": "getsockopt", "fd": s.fd, "level": level, "name": name}, False, finish)


def _checked(reply: dict[str, Any]) -> dict[str, Any]:
    if int(reply["ret"]) == -1:
        err = int(reply["errno"])
        raise OSError(err, os.strerror(err))
    return reply


# ------------------------------------------------------------------ the runner


def nominal_seconds(script: Script) -> float:
    """How long the script runs by its own times (the real time it will take)."""
    t = 0.0
    for ev in script.events:
        tm = ev.timing
        if tm.kind == "abs":
            t = max(t, tm.start)
        elif tm.kind == "rel":
            t += tm.start
        if tm.end is not None:
            t = t + tm.end if tm.end_kind == "rel" else max(t, tm.end)
    return t


@dataclass
class LiveOptions:
    """How `--daemon` runs scripts (documented in docs/drill.md, "Against the daemon")."""

    tolerance_factor: float = 1.0  # the script's --tolerance_usecs times this...
    tolerance_floor: float = 0.02  # ... plus this (seconds): the daemon's own latency
    max_seconds: float = 30.0  # longer scripts are skipped (they run in real time)
    # A system call right after an inbound packet waits this long first (seconds, at
    # most half the tolerance): the kernel takes a packet in synchronously, the daemon
    # in its own time, so `< P. 1:101(100)` then `read(...) = 100` at once would race.
    settle: float = 0.01
    tmpdir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))


class DaemonRunner(Runner):
    """Runner with the daemon as the stack and the agent as the system calls."""

    syscall_table = AgentFiles

    def __init__(self, script: Script, ns: LiveNamespace, options: LiveOptions, *, strict: bool = False) -> None:
        super().__init__(script, strict=strict)
        self.ns = ns
        self.options = options
        self.tol = script.tolerance * options.tolerance_factor + options.tolerance_floor
        self.max_wait = MAX_WAIT
        self.look_ahead = LOOK_AHEAD
        self.call_grace = self.tol
        self.settle = min(options.settle, self.tol / 2)
        self.restart_at: set[int] = set()  # lines of sysctls that restart the daemon
        self.injected_at: float | None = None
        self.tmp: Path | None = None
        self.daemon: Daemon | None = None
        self.agent: Agent | None = None
        self.live: LiveStack | None = None

    def preflight(self) -> None:
        super().preflight()
        probe = replace(self.settings)
        for ev in self.script.events:
            if isinstance(ev.body, ShellCommand) and ev.body.command.startswith("sysctl"):
                apply_sysctl(probe, ev.body.command)
                if probe.udp_tunneling_overhead != StackSettings().udp_tunneling_overhead:
                    raise Unsupported("sysctl net.inet.tcp.udp_tunneling_overhead against the daemon "
                                      "(it has no flag for it)")
        if self.settings.mtu < 576:
            raise Unsupported(f"--mtu={self.settings.mtu} (the daemon's TUN takes 576 to 65535)")
        seconds = nominal_seconds(self.script)
        if seconds > self.options.max_seconds:
            raise Unsupported(f"runs {seconds:.0f} s of real time (over --max-seconds "
                              f"{self.options.max_seconds:g})")
        started = False
        events = self.script.events
        for i, ev in enumerate(events):
            body = ev.body
            if not isinstance(body, ShellCommand):
                started = True
                continue
            cmd = body.command
            if _TCPDROP_RE.match(cmd):
                raise Unsupported("tcpdrop against the daemon")
            if cmd.startswith("sysctl") and started and any(
                    not isinstance(later.body, ShellCommand) for later in events[i + 1:]):
                self.restart_at.add(ev.line)  # a new daemon then (see _shell)
            if _SOCKSTAT_RE.match(cmd) is None and not cmd.startswith("sysctl"):
                raise Unsupported(f"shell command `{cmd.split()[0]}`")

    def _start(self) -> None:
        # The sysctls before the first other event are the daemon's flags.
        for ev in self.script.events:
            if not isinstance(ev.body, ShellCommand):
                break
            if ev.body.command.startswith("sysctl"):
                apply_sysctl(self.settings, ev.body.command)
        tmp = Path(tempfile.mkdtemp(prefix="drill-", dir=self.options.tmpdir))
        tmp.chmod(0o755)
        self.tmp = tmp
        self._launch(None)

    def _launch(self, t0: float | None) -> None:
        """A daemon with the current settings, its capture and its agent; time 0 is
        now (once the agent answers a first request), or `t0` when restarting."""
        assert self.tmp is not None
        self.daemon = Daemon(self.ns, self.settings, self.tmp)
        ipv6 = self.script.ip_version == "ipv6"
        self.live = LiveStack(self.ns, self.daemon, ipv6=ipv6)
        self.agent = Agent(self.ns, self.daemon, self.live.notify)
        files = AgentFiles(self.agent, ipv6, block_after=self.tol, strict=self.strict)
        # The runner's stack and file table, duck-typed: LiveStack and AgentFiles offer
        # what Runner uses of StackAdapter and FileTable.
        self.stack = self.live  # type: ignore[assignment]
        self.files = files  # type: ignore[assignment]
        files.quick({"op": "fcntl", "fd": -1, "cmd": fcntl.F_GETFL})
        self.live.t0 = time.monotonic() if t0 is None else t0

    def _shell(self, ev: Event, command: str) -> None:
        """A sysctl in the middle of a script: the daemon's settings are its flags, so
        it takes a new daemon, which is the same host only if the old one holds nothing
        (no socket, no connection in TIME-WAIT...). Otherwise the script is skipped."""
        if ev.line not in self.restart_at:
            super()._shell(ev, command)
            return
        before = replace(self.settings)
        apply_sysctl(self.settings, command)
        if self.settings == before:
            return
        assert self.daemon is not None and self.live is not None
        from stack.ipc.client import query_sockets

        held = [r for r in query_sockets(self.daemon.socket_path) if r.get("proto") == "tcp"]
        if self.pending is not None or held:
            raise Unsupported("a sysctl while the daemon holds sockets or connections (its "
                              "settings are its flags, fixed when it starts)")
        t0 = self.live.t0
        self._stop_daemon()
        self._launch(t0)

    def _inbound(self, ev: Event, body: PacketEvent) -> None:
        super()._inbound(ev, body)
        self.injected_at = self.stack.now

    def _syscall(self, ev: Event, sc: Syscall, deadline: float | None) -> None:
        if self.injected_at is not None:
            self._drive(self.injected_at + self.settle, lambda: False)
            self.injected_at = None
        super()._syscall(ev, sc, deadline)

    def run(self) -> Result:
        try:
            return super().run()
        finally:
            self._stop()

    def _stop_daemon(self) -> None:
        if self.agent is not None:
            self.agent.stop()
        if self.live is not None:
            self.live.close()
        if self.daemon is not None:
            self.daemon.stop()
        self.agent = self.live = self.daemon = None

    def _stop(self) -> None:
        self._stop_daemon()
        if self.tmp is not None:
            for p in sorted(self.tmp.rglob("*"), reverse=True):
                with contextlib.suppress(OSError):
                    p.unlink()
            with contextlib.suppress(OSError):
                self.tmp.rmdir()


def run_file_live(path: str | Path, ns: LiveNamespace, options: LiveOptions, *, strict: bool = False,
                  defines: frozenset[str] | None = None) -> Result:
    """One script against a fresh daemon in `ns` (see run_file for the sans-IO mode)."""
    started = time.perf_counter()
    try:
        script = parse_file(path, defines or DEFAULT_DEFINES)
    except ScriptError as exc:
        return Result(str(path), "skipped", f"not supported: the script does not parse ({exc})",
                      seconds=time.perf_counter() - started)
    except OSError as exc:
        return Result(str(path), "failed", f"cannot read: {exc.strerror}")
    return DaemonRunner(script, ns, options, strict=strict).run()

