"""Network-namespace test topology for tcplab (root only).

::

    tl-peer-XXXX                      tl-stack-XXXX
    +---------------------+           +----------------------------------------------+
    | veth-p 10.1.0.2/24  |-- veth ---| veth-s 10.1.0.1/24     ip_forward=1          |
    |   fd00:0:0:2::2/64  |           |   fd00:0:0:2::1/64     ipv6 forwarding=1     |
    | 10.0.0.0/24         |           |                 mytun 10.0.0.1/24         --+--> stack
    |   via 10.1.0.1      |           |                       fd00:0:0:1::1/64      |  10.0.0.2
    | fd00:0:0:1::/64     |           |                 (made by the daemon)        |  fd00:0:0:1::2
    |   via fd00:0:0:2::1 |           +----------------------------------------------+
    +---------------------+

The peer reaches the stack's 10.0.0.2 and fd00:0:0:1::2 through the stack namespace's
kernel, which forwards between the veth and the TUN, the same shape as the compose lab.
The IPv6 addresses and routes exist only inside the two namespaces (added without
Duplicate Address Detection, so they are usable at once); where the kernel has IPv6
off, ``Topology.ipv6`` is False and the IPv6 tests skip. Nothing here
touches the root namespace's links or routes: the veth pair is created inside the stack
namespace with its peer end placed directly in the peer namespace.

Impairment: ``Topology.impair("loss 5% delay 20ms 5ms reorder 10% duplicate 2%")`` uses
``tc netem`` on both veth ends when the kernel has ``sch_netem``; kernels built without
it (CONFIG_NET_SCH_NETEM unset, as on some CI VMs) get :class:`NetemEmulator`, an
NFQUEUE-based stand-in on the stack namespace's FORWARD path. ``TCPLAB_IMPAIR=emulate``
forces the emulation.
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import json
import os
import random
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PEER_CLIENT = Path(__file__).resolve().parent / "peer_client.py"

STACK_ADDR = "10.0.0.2"  # owned by the stack, behind mytun
TUN_KERNEL_ADDR = "10.0.0.1"  # kernel side of mytun (stack namespace)
STACK_NS_ADDR = "10.1.0.1"  # stack namespace's veth
PEER_ADDR = "10.1.0.2"  # peer namespace's veth
STACK_ADDR6 = "fd00:0:0:1::2"  # owned by the stack, behind mytun
TUN_KERNEL_ADDR6 = "fd00:0:0:1::1"
STACK_NS_ADDR6 = "fd00:0:0:2::1"
PEER_ADDR6 = "fd00:0:0:2::2"
PREFIX = "tl-"

T = TypeVar("T")


class CommandError(RuntimeError):
    """A command failed; the message carries its exit code and stderr."""


def _fmt_argv(argv: Sequence[str]) -> str:
    return " ".join(argv)


def run(argv: Sequence[str], timeout: float = 30, input: str | bytes | None = None,
        check: bool = True, text: bool = True, **kw: Any) -> subprocess.CompletedProcess[Any]:
    """Run ``argv`` (in the caller's namespace), capturing output."""
    if isinstance(input, bytes):
        text = False
    try:
        cp = subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout,
                            text=text, **kw)
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"timed out after {timeout}s: {_fmt_argv(argv)}") from exc
    if check and cp.returncode != 0:
        err = cp.stderr if isinstance(cp.stderr, str) else cp.stderr.decode(errors="replace")
        raise CommandError(
            f"exit {cp.returncode}: {_fmt_argv(argv)}\n{err.strip()[-4000:]}"
        )
    return cp


def run_in(ns: str, argv: Sequence[str], timeout: float = 30,
           input: str | bytes | None = None, check: bool = True,
           **kw: Any) -> subprocess.CompletedProcess[Any]:
    """Run ``argv`` inside namespace ``ns`` with ``ip netns exec``."""
    return run(["ip", "netns", "exec", ns, *argv], timeout=timeout, input=input,
               check=check, **kw)


def popen_in(ns: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
    """Start ``argv`` inside ``ns``; the caller waits for it (with a timeout)."""
    return subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)


def set_netem(ns: str, dev: str, spec: str) -> None:
    """Impair ``dev``'s egress, e.g. ``"loss 5% delay 20ms 5ms reorder 10%"``."""
    run_in(ns, ["tc", "qdisc", "replace", "dev", dev, "root", "netem", *spec.split()],
           timeout=10)


def clear_netem(ns: str, dev: str) -> None:
    """Remove any root qdisc from ``dev`` (no error if there is none)."""
    run_in(ns, ["tc", "qdisc", "del", "dev", dev, "root"], timeout=10, check=False)


def list_netns() -> list[str]:
    out = run(["ip", "netns", "list"], timeout=10).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def wait_until(predicate: Callable[[], T | None], timeout: float, interval: float = 0.05,
               what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- entering a namespace from this process ------------------------------------------
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def call_in_netns(ns: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` on a fresh thread that has joined network namespace ``ns``.

    ``setns(CLONE_NEWNET)`` changes only the calling thread, so the test process itself
    stays in its namespace. Sockets, netlink sockets and TUN devices opened by ``fn``
    belong to ``ns`` and stay there; their fds are usable from any thread.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{ns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- impairment: netem, or an NFQUEUE emulation where the kernel has no netem ---------
@dataclass
class ImpairSpec:
    """The netem options the tests use: ``loss P% delay D [J] reorder P% duplicate P%``."""

    loss: float = 0.0  # probabilities 0..1
    delay: float = 0.0  # seconds
    jitter: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> ImpairSpec:
        def pct(tok: str) -> float:
            if not tok.endswith("%"):
                raise ValueError(f"expected a percentage, got {tok!r} in {spec!r}")
            return float(tok[:-1]) / 100

        def is_dur(tok: str) -> bool:
            return tok[:1].isdigit() and tok.lstrip("0123456789.") in ("us", "ms", "s", "")

        def dur(tok: str) -> float:
            for unit, scale in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0)):
                if tok.endswith(unit):
                    return float(tok[: -len(unit)]) * scale
            return float(tok) * 1e-6  # tc's default unit is microseconds

        out = cls()
        toks = spec.split()
        i = 0
        while i < len(toks):
            key = toks[i]
            i += 1
            if key == "delay":
                out.delay = dur(toks[i])
                i += 1
                if i < len(toks) and is_dur(toks[i]):
                    out.jitter = dur(toks[i])
                    i += 1
            elif key in ("loss", "reorder", "duplicate"):
                if key == "loss" and toks[i] == "random":
                    i += 1
                setattr(out, key, pct(toks[i]))
                i += 1
            else:
                raise ValueError(f"unsupported netem option {key!r} in {spec!r}")
            if i < len(toks) and toks[i].endswith("%"):
                i += 1  # a correlation: ignored by the emulation
        return out


_netem_supported: bool | None = None


def netem_supported(ns: str) -> bool:
    """Whether this kernel has the netem qdisc (``sch_netem``); probed once."""
    global _netem_supported
    if os.environ.get("TCPLAB_IMPAIR") == "emulate":
        return False
    if _netem_supported is None:
        cp = run_in(ns, ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                    timeout=10, check=False)
        _netem_supported = cp.returncode == 0
        if _netem_supported:
            clear_netem(ns, "lo")
    return _netem_supported


# nfnetlink_queue (linux/netfilter/nfnetlink_queue.h)
_NETLINK_NETFILTER = 12
_NFNL_SUBSYS_QUEUE = 3
_NFQNL_MSG_PACKET, _NFQNL_MSG_VERDICT, _NFQNL_MSG_CONFIG = 0, 1, 2
_NFQA_PACKET_HDR, _NFQA_VERDICT_HDR = 1, 2
_NFQA_CFG_CMD, _NFQA_CFG_PARAMS, _NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
_NFQA_CFG_MASK, _NFQA_CFG_FLAGS = 4, 5
_NFQA_CFG_F_GSO = 1 << 2
_NFQNL_CFG_CMD_BIND, _NFQNL_CFG_CMD_UNBIND = 1, 2
_NFQNL_COPY_META = 1
_NF_DROP, _NF_ACCEPT = 0, 1
_NLM_F_REQUEST, _NLM_F_ACK = 1, 4
_NLMSG_ERROR = 2
_NLMSG_HDR = struct.Struct("=IHHII")
_SO_RCVBUFFORCE = 33


def _nla(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + bytes(-len(raw) % 4)


class NetemEmulator:
    """Userspace stand-in for netem on kernels built without it.

    All traffic forwarded by the stack namespace (both directions between the peer and
    the stack) is sent to an NFQUEUE; a thread of this process, joined to the namespace,
    drops packets with probability ``loss``, releases the rest after ``delay`` +-
    ``jitter`` (uniform, like netem's default) except a ``reorder`` fraction that goes at
    once, and so reorders. ``duplicate`` uses iptables' TEE target to send a clone straight
    on. Large GSO packets stay whole (``NFQA_CFG_F_GSO``), as they do in netem.
    """

    def __init__(self, ns: str, spec: str, duplicate_to: Sequence[str] = (),
                 queue_num: int = 4242, seed: int | None = None) -> None:
        self.ns = ns
        self.spec = ImpairSpec.parse(spec)
        self.queue_num = queue_num
        self.seed = seed if seed is not None else secrets.randbits(32)
        self.rng = random.Random(self.seed)
        self.duplicate_to = list(duplicate_to)
        self.stats = {"packets": 0, "dropped": 0, "delayed": 0, "immediate": 0}
        self._rules: list[list[str]] = []
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"netem-{ns}")

    # control ---------------------------------------------------------------------
    def start(self) -> NetemEmulator:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"NFQUEUE emulation failed: {self._error}") from self._error
        try:
            self._add_rule(["filter", "FORWARD", "-j", "NFQUEUE",
                            "--queue-num", str(self.queue_num)])
            if self.spec.duplicate > 0:
                for addr in self.duplicate_to:
                    self._add_rule(["mangle", "FORWARD", "-d", addr, "-m", "statistic",
                                    "--mode", "random",
                                    "--probability", f"{self.spec.duplicate:.6f}",
                                    "-j", "TEE", "--gateway", addr])
        except BaseException:
            self.stop()
            raise
        return self

    def _add_rule(self, rule: list[str]) -> None:
        table, chain, *match = rule
        run_in(self.ns, ["iptables", "-w", "-t", table, "-A", chain, *match], timeout=15)
        self._rules.append(rule)

    def stop(self) -> None:
        for table, chain, *match in reversed(self._rules):
            run_in(self.ns, ["iptables", "-w", "-t", table, "-D", chain, *match],
                   timeout=15, check=False)
        self._rules.clear()
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(10)

    # the queue thread ----------------------------------------------------------------
    def _msg(self, msg_type: int, attrs: bytes, flags: int = 0) -> bytes:
        body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack("!H", self.queue_num)
        body += attrs
        kind = (_NFNL_SUBSYS_QUEUE << 8) | msg_type
        return _NLMSG_HDR.pack(16 + len(body), kind, _NLM_F_REQUEST | flags, 0, 0) + body

    def _config(self, sock: socket.socket, attrs: bytes) -> None:
        sock.send(self._msg(_NFQNL_MSG_CONFIG, attrs, _NLM_F_ACK))
        reply = sock.recv(65536)
        length, kind, _flags, _seq, _pid = _NLMSG_HDR.unpack_from(reply, 0)
        if kind == _NLMSG_ERROR:
            err = -struct.unpack_from("=i", reply, 16)[0]
            if err:
                raise OSError(err, f"nfqueue config: {os.strerror(err)}")

    def _verdict(self, sock: socket.socket, packet_id: int, verdict: int) -> None:
        sock.send(self._msg(_NFQNL_MSG_VERDICT,
                            _nla(_NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))))

    @staticmethod
    def _packet_ids(data: bytes) -> list[int]:
        ids = []
        off = 0
        while off + 16 <= len(data):
            length, kind, _flags, _seq, _pid = _NLMSG_HDR.unpack_from(data, off)
            if length < 16:
                break
            if kind == (_NFNL_SUBSYS_QUEUE << 8) | _NFQNL_MSG_PACKET:
                a = off + 16 + 4  # skip nfgenmsg
                end = off + length
                while a + 4 <= end:
                    alen, atype = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    if atype & 0x3FFF == _NFQA_PACKET_HDR:
                        ids.append(struct.unpack_from("!I", data, a + 4)[0])
                        break
                    a += (alen + 3) & ~3
            off += (length + 3) & ~3
        return ids

    def _run(self) -> None:
        try:
            fd = os.open(f"/run/netns/{self.ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({self.ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
            sock.bind((0, 0))
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 16 << 20)
            self._config(sock, _nla(_NFQA_CFG_CMD,
                                    struct.pack("!BxH", _NFQNL_CFG_CMD_BIND, socket.AF_INET)))
            self._config(sock, _nla(_NFQA_CFG_PARAMS, struct.pack("!IB", 0, _NFQNL_COPY_META))
                         + _nla(_NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 20000))
                         + _nla(_NFQA_CFG_MASK, struct.pack("!I", _NFQA_CFG_F_GSO))
                         + _nla(_NFQA_CFG_FLAGS, struct.pack("!I", _NFQA_CFG_F_GSO)))
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(sock)
        finally:
            with contextlib.suppress(OSError):
                sock.send(self._msg(_NFQNL_MSG_CONFIG, _nla(
                    _NFQA_CFG_CMD, struct.pack("!BxH", _NFQNL_CFG_CMD_UNBIND, socket.AF_INET))))
            sock.close()

    def _loop(self, sock: socket.socket) -> None:
        spec, rng, stats = self.spec, self.rng, self.stats
        held: list[tuple[float, int, int]] = []  # (release time, order, packet id)
        order = 0
        while True:
            now = time.monotonic()
            while held and held[0][0] <= now:
                self._verdict(sock, heapq.heappop(held)[2], _NF_ACCEPT)
            stopping = self._stopping.is_set()
            timeout = 0.0 if stopping else min(0.05, held[0][0] - now if held else 0.05)
            ready, _, _ = select.select([sock], [], [], max(timeout, 0.0))
            if ready:
                while True:
                    try:
                        data = sock.recv(1 << 16, socket.MSG_DONTWAIT)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # ENOBUFS: the kernel dropped queue messages
                        break
                    for pid in self._packet_ids(data):
                        stats["packets"] += 1
                        if stopping:
                            self._verdict(sock, pid, _NF_ACCEPT)
                        elif rng.random() < spec.loss:
                            stats["dropped"] += 1
                            self._verdict(sock, pid, _NF_DROP)
                        elif spec.delay <= 0 or rng.random() < spec.reorder:
                            stats["immediate"] += 1
                            self._verdict(sock, pid, _NF_ACCEPT)
                        else:
                            stats["delayed"] += 1
                            d = max(0.0, rng.uniform(spec.delay - spec.jitter,
                                                     spec.delay + spec.jitter))
                            order += 1
                            heapq.heappush(held, (time.monotonic() + d, order, pid))
            elif stopping:
                for _, _, pid in held:
                    self._verdict(sock, pid, _NF_ACCEPT)
                return

    def __repr__(self) -> str:
        return f"<NetemEmulator {self.ns} {self.spec} seed={self.seed} {self.stats}>"


# --- the topology ---------------------------------------------------------------------
@dataclass
class Topology:
    suffix: str
    stack_ns: str
    peer_ns: str
    stack_dev: str = "veth-s"
    peer_dev: str = "veth-p"
    stack_addr: str = STACK_ADDR
    stack_ns_addr: str = STACK_NS_ADDR
    peer_addr: str = PEER_ADDR
    stack_addr6: str = STACK_ADDR6
    stack_ns_addr6: str = STACK_NS_ADDR6
    peer_addr6: str = PEER_ADDR6
    ipv6: bool = False  # the namespaces have their IPv6 addresses and route
    destroyed: bool = field(default=False)
    emulator: NetemEmulator | None = field(default=None, repr=False)

    @classmethod
    def create(cls, **fields: Any) -> Topology:
        existing = set(list_netns())
        for _ in range(100):
            suffix = secrets.token_hex(2)
            topo = cls(suffix, f"{PREFIX}stack-{suffix}", f"{PREFIX}peer-{suffix}", **fields)
            if not set(topo.namespaces()) & existing:
                break
        else:  # pragma: no cover
            raise RuntimeError("no free namespace name")
        try:
            topo._build()
        except BaseException:
            topo.destroy()
            raise
        return topo

    def namespaces(self) -> tuple[str, ...]:
        return (self.stack_ns, self.peer_ns)

    def _build(self) -> None:
        s, p = self.stack_ns, self.peer_ns
        run(["ip", "netns", "add", s], timeout=10)
        run(["ip", "netns", "add", p], timeout=10)
        # veth created inside the stack namespace, its peer end placed straight into the
        # peer namespace: neither end ever exists in the root namespace.
        run(["ip", "-n", s, "link", "add", self.stack_dev, "type", "veth",
             "peer", "name", self.peer_dev, "netns", p], timeout=10)
        for cmd in (
            ["link", "set", "lo", "up"],
            ["addr", "add", f"{self.stack_ns_addr}/24", "dev", self.stack_dev],
            ["link", "set", self.stack_dev, "up"],
        ):
            run(["ip", "-n", s, *cmd], timeout=10)
        run_in(s, ["sysctl", "-q", "-w",
                   "net.ipv4.ip_forward=1",
                   "net.ipv4.conf.all.rp_filter=0",
                   "net.ipv4.conf.default.rp_filter=0",
                   f"net.ipv4.conf.{self.stack_dev}.rp_filter=0"], timeout=10)
        for cmd in (
            ["link", "set", "lo", "up"],
            ["addr", "add", f"{self.peer_addr}/24", "dev", self.peer_dev],
            ["link", "set", self.peer_dev, "up"],
            ["route", "add", "10.0.0.0/24", "via", self.stack_ns_addr],
        ):
            run(["ip", "-n", p, *cmd], timeout=10)
        self.ipv6 = self._build_ipv6()

    def _build_ipv6(self) -> bool:
        """The IPv6 half of the topology; False (and nothing fatal) without IPv6."""
        s, p = self.stack_ns, self.peer_ns
        try:
            run_in(s, ["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"], timeout=10)
            for ns, dev in ((s, self.stack_dev), (p, self.peer_dev)):
                run_in(ns, ["sysctl", "-q", "-w", f"net.ipv6.conf.{dev}.accept_dad=0"], timeout=10)
            run(["ip", "-n", s, "-6", "addr", "add", f"{self.stack_ns_addr6}/64",
                 "dev", self.stack_dev, "nodad"], timeout=10)
            run(["ip", "-n", p, "-6", "addr", "add", f"{self.peer_addr6}/64",
                 "dev", self.peer_dev, "nodad"], timeout=10)
            run(["ip", "-n", p, "-6", "route", "add", "fd00:0:0:1::/64",
                 "via", self.stack_ns_addr6], timeout=10)
        except CommandError:
            return False
        return True

    def destroy(self) -> None:
        """Delete both namespaces (and with them the veth pair and any TUN).
        Idempotent and tolerant of a half-built topology."""
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None
        present = set(list_netns())
        for ns in (self.stack_ns, self.peer_ns):
            if ns not in present:
                continue
            # Anything still running in our namespaces was started by these tests.
            pids = run(["ip", "netns", "pids", ns], timeout=10, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)
            run(["ip", "netns", "del", ns], timeout=10, check=False)
        self.destroyed = True

    # conveniences
    def netem(self, spec: str) -> None:
        set_netem(self.stack_ns, self.stack_dev, spec)
        set_netem(self.peer_ns, self.peer_dev, spec)

    def clear_netem(self) -> None:
        clear_netem(self.stack_ns, self.stack_dev)
        clear_netem(self.peer_ns, self.peer_dev)

    def impair(self, spec: str) -> str:
        """Apply netem ``spec`` to both directions between peer and stack: with netem on
        both veth ends if the kernel has it, else with :class:`NetemEmulator`. Returns
        a description of what was done."""
        self.clear_impairment()
        if netem_supported(self.stack_ns):
            self.netem(spec)
            return f"netem on {self.stack_dev} and {self.peer_dev}: {spec}"
        self.emulator = NetemEmulator(self.stack_ns, spec,
                                      duplicate_to=[self.peer_addr, self.stack_addr]).start()
        return f"NFQUEUE emulation (no sch_netem in this kernel): {spec}"

    def clear_impairment(self) -> None:
        emulator, self.emulator = self.emulator, None
        if emulator is not None:
            emulator.stop()
        if netem_supported(self.stack_ns):
            self.clear_netem()

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


@dataclass
class RoutedTopology(Topology):
    """The stack two routers away from the peer, over a link of a smaller MTU (IPv6)::

        tl-stack-XXXX                     tl-rtr-XXXX                tl-peer-XXXX
        mytun  veth-s fd00:0:0:2::1 --(mtu M)-- veth-r1 fd00:0:0:2::2
                                                veth-r2 fd00:0:0:3::1 -- veth-p fd00:0:0:3::2

    The peer's own link has the usual 1500 octets, so it offers an MSS of 1440; the
    narrow link is in the middle. A packet from the stack larger than M reaches the
    stack namespace's kernel, which cannot forward it and answers with ICMPv6 Packet
    Too Big (RFC 8201); the router does the same to the peer's large packets.
    """

    router_ns: str = ""
    router_mtu: int = 1280
    peer_addr6: str = "fd00:0:0:3::2"

    def __post_init__(self) -> None:
        self.router_ns = f"{PREFIX}rtr-{self.suffix}"

    @classmethod
    def create_routed(cls, router_mtu: int = 1280) -> RoutedTopology:
        topo = cls.create(router_mtu=router_mtu)
        assert isinstance(topo, RoutedTopology)
        return topo

    def namespaces(self) -> tuple[str, ...]:
        return (self.stack_ns, self.router_ns, self.peer_ns)

    def _build(self) -> None:
        s, r, p = self.stack_ns, self.router_ns, self.peer_ns
        for ns in (s, r, p):
            run(["ip", "netns", "add", ns], timeout=10)
            run(["ip", "-n", ns, "link", "set", "lo", "up"], timeout=10)
        mtu = str(self.router_mtu)
        run(["ip", "-n", s, "link", "add", self.stack_dev, "mtu", mtu, "type", "veth",
             "peer", "name", "veth-r1", "netns", r, "mtu", mtu], timeout=10)
        run(["ip", "-n", r, "link", "add", "veth-r2", "type", "veth",
             "peer", "name", self.peer_dev, "netns", p], timeout=10)
        for ns in (s, r):
            run_in(ns, ["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"], timeout=10)
        for ns, dev, addr in ((s, self.stack_dev, "fd00:0:0:2::1/64"), (r, "veth-r1", "fd00:0:0:2::2/64"),
                              (r, "veth-r2", "fd00:0:0:3::1/64"), (p, self.peer_dev, f"{self.peer_addr6}/64")):
            # No Duplicate Address Detection, link-local addresses included: usable at once.
            run_in(ns, ["sysctl", "-q", "-w", f"net.ipv6.conf.{dev}.accept_dad=0"], timeout=10)
            run(["ip", "-n", ns, "-6", "addr", "add", addr, "dev", dev, "nodad"], timeout=10)
            run(["ip", "-n", ns, "link", "set", dev, "up"], timeout=10)
        run(["ip", "-n", s, "-6", "route", "add", "fd00:0:0:3::/64", "via", "fd00:0:0:2::2"], timeout=10)
        run(["ip", "-n", r, "-6", "route", "add", "fd00:0:0:1::/64", "via", "fd00:0:0:2::1"], timeout=10)
        for prefix in ("fd00:0:0:1::/64", "fd00:0:0:2::/64"):
            run(["ip", "-n", p, "-6", "route", "add", prefix, "via", "fd00:0:0:3::1"], timeout=10)
        self.stack_ns_addr6 = "fd00:0:0:2::1"
        self.ipv6 = True
        # Ready when the peer reaches the stack namespace across the router (neighbour
        # discovery done on both links); bounded, one probe a second.
        for _ in range(10):
            if run_in(p, ["ping", "-6", "-c", "1", "-W", "1", self.stack_ns_addr6], timeout=5,
                      check=False).returncode == 0:
                break
        else:
            raise RuntimeError("the routed IPv6 topology does not forward")

    def destroy(self) -> None:
        super().destroy()
        if self.router_ns and self.router_ns in set(list_netns()):
            for pid in run(["ip", "netns", "pids", self.router_ns], timeout=10, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)
            run(["ip", "netns", "del", self.router_ns], timeout=10, check=False)


def python_env() -> dict[str, str]:
    """Environment for running the repository's code with this interpreter."""
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + old if old else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_peer_client(topology: Topology, *args: str | int, timeout: float = 120) -> dict[str, Any]:
    """Run ``peer_client.py`` in the peer namespace and return its JSON result."""
    argv = [sys.executable, str(PEER_CLIENT), *map(str, args)]
    cp = run_in(topology.peer_ns, argv, timeout=timeout)
    lines = [line for line in cp.stdout.splitlines() if line.strip()]
    if not lines:
        raise CommandError(f"no output from {_fmt_argv(argv)}\n{cp.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# --- the daemon -----------------------------------------------------------------------
def _traversable(d: Path) -> bool:
    """Can every user reach files in d (search permission on it and its parents)?"""
    return all(os.stat(p).st_mode & 0o001 for p in (d, *d.parents))


class StackDaemon:
    """``tcplab stack`` running in the stack namespace."""

    READY_TIMEOUT = 20.0
    STOP_TIMEOUT = 10.0

    def __init__(self, topology: Topology, proc: subprocess.Popen[bytes], tmpdir: Path,
                 socket_path: Path, argv: list[str]) -> None:
        self.topology = topology
        self.proc = proc
        self.tmpdir = tmpdir
        self.socket_path = socket_path
        self.pcap_path = tmpdir / "stack.pcap"
        self.events_path = tmpdir / "events.jsonl"
        self.argv = argv
        self.own_sockdir: Path | None = None  # made by start() for the socket, removed at exit
        self.returncode: int | None = None
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True,
                                        name="stack-stderr")

    @classmethod
    def start(cls, topology: Topology, extra_args: Sequence[str], tmpdir: Path | str) -> StackDaemon:
        tmpdir = Path(tmpdir)
        tmpdir.mkdir(parents=True, exist_ok=True)
        socket_path = tmpdir / "stack.sock"
        sockdir: Path | None = None
        if len(os.fsencode(socket_path)) > 100 or not _traversable(tmpdir):
            # sun_path is 108 bytes; and programs that drop privileges (memcached -u)
            # must reach the socket, as /run/tcplab (0755) lets them
            sockdir = Path(tempfile.mkdtemp(prefix="tl-sock-"))
            sockdir.chmod(0o755)
            socket_path = sockdir / "stack.sock"
        argv = [sys.executable, "-m", "stack.cli", "stack",
                "--socket", str(socket_path),
                "--pcap", str(tmpdir / "stack.pcap"),
                "--events", str(tmpdir / "events.jsonl"),
                *extra_args]
        # TCPLAB_TEST_OFFLOAD=off runs every daemon on the plain path (1500-byte packets,
        # checksums in Python): scripts/test.sh runs the end-to-end tests both ways.
        if os.environ.get("TCPLAB_TEST_OFFLOAD") == "off" and "--offload" not in extra_args:
            argv.append("--no-offload")
        stdout = open(tmpdir / "stack.stdout", "wb")  # noqa: SIM115
        try:
            proc = popen_in(topology.stack_ns, argv, cwd=str(REPO_ROOT), env=python_env(),
                            stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE)
        finally:
            stdout.close()
        daemon = cls(topology, proc, tmpdir, socket_path, argv)
        daemon.own_sockdir = sockdir
        daemon._reader.start()
        deadline = time.monotonic() + cls.READY_TIMEOUT
        while not daemon._ready.wait(0.05):
            if proc.poll() is not None:
                daemon._reader.join(2)
                daemon.returncode = proc.returncode
                raise RuntimeError(
                    f"tcplab stack exited with {proc.returncode} before it was ready\n"
                    f"argv: {_fmt_argv(argv)}\nstderr:\n{daemon.stderr}")
            if time.monotonic() > deadline:
                daemon.kill()
                raise RuntimeError(
                    f"tcplab stack printed no 'ready' line within {cls.READY_TIMEOUT}s\n"
                    f"argv: {_fmt_argv(argv)}\nstderr:\n{daemon.stderr}")
        return daemon

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._lock:
                self._lines.append(line)
            if "ready" in line:
                self._ready.set()

    @property
    def stderr(self) -> str:
        with self._lock:
            return "\n".join(self._lines)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, check: bool = True) -> str:
        """SIGTERM, wait up to 10 s (then SIGKILL), return stderr; with ``check``
        assert a clean exit (status 0). Calling it again just returns stderr."""
        if self.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(self.STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.kill()
                    if check:
                        raise AssertionError(
                            f"tcplab stack ignored SIGTERM for {self.STOP_TIMEOUT}s; killed\n"
                            f"stderr:\n{self.stderr}") from None
            self._reader.join(5)
            self.returncode = self.proc.returncode
            self._remove_sockdir()
            if check and self.returncode != 0:
                raise AssertionError(
                    f"tcplab stack exited with {self.returncode} on SIGTERM\n"
                    f"stderr:\n{self.stderr}")
        return self.stderr

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        self._reader.join(5)
        self.returncode = self.proc.returncode
        self._remove_sockdir()

    def _remove_sockdir(self) -> None:
        """The socket's own directory, when start() made one, once the daemon is gone."""
        d = self.own_sockdir
        if d is not None and self.proc.poll() is not None:
            with contextlib.suppress(OSError):
                (d / "stack.sock").unlink(missing_ok=True)
                d.rmdir()
            self.own_sockdir = None

    def ss(self, timeout: float = 15) -> str:
        """``tcplab ss`` output."""
        cp = run_in(self.topology.stack_ns,
                    [sys.executable, "-m", "stack.cli", "ss", "--socket", str(self.socket_path)],
                    timeout=timeout, cwd=str(REPO_ROOT), env=python_env())
        return str(cp.stdout)

    def events(self) -> list[dict[str, Any]]:
        """The event log so far (only what the daemon has flushed)."""
        out: list[dict[str, Any]] = []
        try:
            data = self.events_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return out
        for line in data.splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # torn last line
            if line.strip():
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out


    def events_matching(self, pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """The flushed events for which `pred` is true (see `event_is`)."""
        return [e for e in self.events() if pred(e)]

    def wait_events(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0,
                    baseline: int = 0) -> list[dict[str, Any]]:
        """Poll the log (the daemon flushes it every 0.5 s) until more than `baseline`
        events match `pred`; returns the matching events."""
        def more() -> list[dict[str, Any]] | None:
            found = self.events_matching(pred)
            return found if len(found) > baseline else None

        return wait_until(more, timeout, interval=0.1,
                          what=f"an event in {self.events_path} (more than {baseline})")

    def ss_json(self, timeout: float = 15) -> list[dict[str, Any]]:
        """``tcplab ss --json`` run in the stack namespace: one dict per socket."""
        cp = run_in(self.topology.stack_ns,
                    [sys.executable, "-m", "stack.cli", "ss", "--socket", str(self.socket_path),
                     "--json"], timeout=timeout, env=python_env())
        rows: list[dict[str, Any]] = json.loads(cp.stdout)
        return rows


def event_is(type_: str, **match: Any) -> Callable[[dict[str, Any]], bool]:
    """A predicate for `StackDaemon.events_matching`/`wait_events`: an event of `type_`
    whose fields include `match`."""
    return lambda e: e.get("type") == type_ and all(e.get(k) == v for k, v in match.items())


def proc_status(pid: int) -> dict[str, int]:
    """The memory lines of ``/proc/PID/status`` (VmRSS, VmHWM, ...), in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.startswith("Vm") and value.strip().endswith("kB"):
                out[key] = int(value.split()[0]) * 1024
    return out


# --- figures a test module reports ----------------------------------------------------
class Figures:
    """Named figures of a test module: rewritten to a JSON file as they come (next to
    pytest's base temp directory) and printed at the end of the run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, Any] = {}

    def add(self, name: str, row: Any) -> None:
        self.rows[name] = row
        self.path.write_text(json.dumps(self.rows, indent=1) + "\n")


def figures_fixture(filename: str, title: str) -> Any:
    """A module-scoped `figures` fixture writing `filename` and printing under `title`."""

    @pytest.fixture(scope="module")
    def figures(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Figures]:
        figs = Figures(tmp_path_factory.getbasetemp() / filename)
        yield figs
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and figs.rows:
            reporter.write_sep("-", title)
            for name, row in figs.rows.items():
                reporter.write_line(f"{name}: {json.dumps(row)}")
            reporter.write_line(f"(also in {figs.path})")

    return figures
