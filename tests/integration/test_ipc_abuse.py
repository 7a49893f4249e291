"""Abuse of the daemon's Unix socket (the shim's control channel, stack/ipc/server.py).

The socket is SOCK_SEQPACKET; every request is one record (docs/shim-protocol.md). The
tests talk to it directly with stack/ipc/protocol.py -- no shim involved -- and throw at
it garbage, truncated and oversized records, wrong, missing and surplus descriptors,
clients killed in the middle of a call, a client that never reads its replies, and
1,000 clients that connect and vanish. After each, the daemon must

* still serve: a fresh ``tcplab ss --json`` lists the listeners, and a shim-free
  SOCKET / BIND / GETSOCKNAME round trip works;
* have leaked nothing: its descriptor count (``/proc/PID/fd``) returns to where it
  started (+2 at most, for descriptors the runtime may open lazily) and its RSS to
  within 8 MiB of it.

Also: the socket file is created with mode 0660, and ``--socket-group`` sets its group
(a process in that group may connect, others may not).
"""

from __future__ import annotations

import array
import contextlib
import errno
import os
import random
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from netns import (
    REPO_ROOT,
    Figures,
    StackDaemon,
    Topology,
    figures_fixture,
    proc_status,
    wait_until,
)

from stack.ipc import protocol as p

pytestmark = pytest.mark.root

FD_SLACK = 2
RSS_SLACK = 8 << 20
CLIENTS = 1000


figures = figures_fixture("tcplab-ipc-abuse.json", "tcplab IPC abuse")

# --- helpers --------------------------------------------------------------------------
def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss(pid: int) -> int:
    return proc_status(pid)["VmRSS"]


def connect(stack: StackDaemon) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    # A blocking connect, like the shim's: it waits while the listen backlog is full
    # (a non-blocking one would get EAGAIN from an AF_UNIX listener).
    s.connect(str(stack.socket_path))
    s.settimeout(5)
    return s


def send(s: socket.socket, data: bytes, fds: list[int] | None = None) -> None:
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
    s.sendmsg([data], anc)


def recv_reply(s: socket.socket) -> tuple[p.Reply, list[int]]:
    data, anc, _flags, _ = s.recvmsg(p.MAX_MESSAGE + 1, socket.CMSG_SPACE(4 * 4))
    fds: list[int] = []
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(payload[: len(payload) - len(payload) % 4])
            fds.extend(arr)
    if not data:
        for fd in fds:
            os.close(fd)
        raise ConnectionResetError(errno.ECONNRESET, "the daemon closed the connection")
    return p.decode_reply(data, len(fds)), fds


def call(s: socket.socket, req: p.Request, fd: int = -1) -> tuple[p.Reply, list[int]]:
    send(s, p.encode_request(req), [fd] if fd >= 0 else None)
    return recv_reply(s)


def dropped(s: socket.socket, timeout: float = 5.0) -> bool:
    """True when the daemon closed this client (EOF or a reset), after any replies."""
    s.settimeout(timeout)
    try:
        while True:
            data = s.recv(p.MAX_MESSAGE + 1)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def assert_serving(stack: StackDaemon) -> None:
    """A fresh ``tcplab ss`` works, and so does a shim-free SOCKET/BIND/GETSOCKNAME."""
    assert stack.running, stack.stderr[-3000:]
    rows = stack.ss_json()
    assert any(r.get("state") == "LISTEN" and str(r.get("local", "")).endswith(":7")
               for r in rows), rows
    with connect(stack) as s:
        rep, fds = call(s, p.Request(p.Op.SOCKET, 1, kind=p.KIND_TCP))
        assert rep.status == 0 and len(fds) == 1, rep
        a = fds[0]
        try:
            rep, _ = call(s, p.Request(p.Op.BIND, 2, addr=p.Addr(p.AF_INET, "0.0.0.0", 0)), a)
            assert rep.status == 0, rep
            rep, _ = call(s, p.Request(p.Op.GETSOCKNAME, 3), a)
            assert rep.status == 0 and rep.addr is not None and rep.addr.port >= 32768, rep
        finally:
            os.close(a)


class Baseline:
    """The daemon's descriptors and memory before the abuse; ``check`` waits for them
    to come back."""

    def __init__(self, stack: StackDaemon) -> None:
        self.stack = stack
        self.pid = stack.proc.pid
        with open(f"/proc/{self.pid}/cmdline", "rb") as f:
            assert b"stack.cli" in f.read(), "the daemon's pid is not the Python process"
        assert_serving(stack)  # warm up: imports, first socketpair, the LIST path
        assert_serving(stack)
        time.sleep(0.3)
        self.fds = fd_count(self.pid)
        self.rss = rss(self.pid)

    def check(self, figures: Figures, name: str, **extra: Any) -> None:
        try:
            wait_until(lambda: fd_count(self.pid) <= self.fds + FD_SLACK, 10, interval=0.1,
                       what="the daemon's descriptors to return")
        finally:
            fds, mem = fd_count(self.pid), rss(self.pid)
            figures.add(name, {"fds_before": self.fds, "fds_after": fds,
                               "rss_before": self.rss, "rss_after": mem, **extra})
        assert_serving(self.stack)
        assert mem - self.rss < RSS_SLACK, (self.rss, mem)


# --- garbage, truncated, oversized --------------------------------------------------
def header(op: int = p.Op.LIST, length: int = 0, *, magic: int = p.MAGIC,
           version: int = p.VERSION, flags: int = 0, seq: int = 1, status: int = 0) -> bytes:
    return p.HEADER.pack(magic, version, op, flags, seq, status, length)


def bad_records() -> list[tuple[str, bytes]]:
    rng = random.Random(1234)
    out = [(f"random-{n}", rng.randbytes(n)) for n in (1, 7, 19, 20, 21, 100, 4096)]
    out += [
        ("bad-magic", header(magic=0xDEADBEEF)),
        ("bad-version", header(version=p.VERSION + 1)),
        ("old-version", header(version=1)),
        ("accept-is-no-request", header(p.Op.ACCEPT)),
        ("unknown-op", header(op=99)),
        ("op-zero", header(op=0)),
        ("flags-set", header(flags=1)),
        ("status-set", header(status=5)),
        ("length-too-big", header(length=100)),
        ("length-too-small", header(length=0) + b"extra"),
        ("length-max-u32", header(length=0xFFFFFFFF)),
        ("truncated-header", header()[:12]),
        ("truncated-bind-body", header(p.Op.SOCKET, 4) + b"\x01"),
        ("socket-bad-kind", header(p.Op.SOCKET, 4) + b"\x07\0\0\0"),
        ("oversized-70k", header(p.Op.SENDTO, 70000) + bytes(70000)),
        ("oversized-200k", rng.randbytes(200_000)),
    ]
    return out


def test_garbage_truncated_oversized(stack: StackDaemon, figures: Figures) -> None:
    base = Baseline(stack)
    rounds = 10
    for _ in range(rounds):
        for name, record in bad_records():
            with connect(stack) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
                send(s, record)
                assert dropped(s), f"the daemon kept a client that sent {name}"
    # An empty record reads like end-of-file: also a goodbye.
    with connect(stack) as s:
        send(s, b"")
        assert dropped(s)
    base.check(figures, "garbage_truncated_oversized", records=rounds * len(bad_records()))


def test_client_that_never_reads(stack: StackDaemon, figures: Figures) -> None:
    """Requests keep coming, replies are never read: the daemon queues at most
    MAX_CLIENT_BACKLOG (1 MiB, plus one listing) for it, then drops the client. (Found
    here: once LIST replies were sent unbounded, 20,000 unread LISTs held ~12 MB and
    the client was never dropped.)"""
    base = Baseline(stack)
    req = p.encode_request(p.Request(p.Op.LIST, 7))
    with connect(stack) as s:
        s.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                s.send(req)
                sent += 1
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                break  # dropped while we were still writing
            if sent >= 20000:
                break
        # Wait for the hang-up without reading a byte (reading would let it off).
        poll = select.poll()
        poll.register(s, select.POLLHUP | select.POLLRDHUP)
        hung_up = wait_until(lambda: any(ev & (select.POLLHUP | select.POLLRDHUP)
                                         for _, ev in poll.poll(100)), 20, interval=0,
                             what="the daemon to drop a client that never reads")
        assert hung_up
    base.check(figures, "never_reads", requests=sent)


# --- descriptors ------------------------------------------------------------------------
def test_wrong_missing_and_surplus_fds(stack: StackDaemon, figures: Figures,
                                       tmp_path: Path) -> None:
    base = Baseline(stack)
    r, w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    other_a, other_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    kernel_tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        for _ in range(20):
            # Descriptors that are not shim sockets: an answer, and the client stays.
            with connect(stack) as s:
                for fd, want in ((r, errno.ENOTSOCK), (devnull, errno.ENOTSOCK),
                                 (other_a.fileno(), errno.ECONNRESET),
                                 (kernel_tcp.fileno(), errno.ECONNRESET)):
                    rep, fds = call(s, p.Request(p.Op.GETSOCKNAME, 5), fd)
                    assert rep.status == want and not fds, rep
                    rep, fds = call(s, p.Request(p.Op.LISTEN, 6, backlog=5), fd)
                    assert rep.status == want and not fds, rep
            # A missing descriptor, surplus ones, far too many: the client is dropped
            # and every descriptor it sent is closed.
            for nfds, op in ((0, p.Op.BIND), (1, p.Op.LIST), (1, p.Op.SOCKET), (3, p.Op.BIND),
                             (4, p.Op.GETSOCKNAME), (200, p.Op.GETSOCKNAME)):
                req = p.Request(op, 9, kind=p.KIND_TCP,
                                addr=p.Addr(p.AF_INET, "0.0.0.0", 0))
                fds = [os.dup(r) for _ in range(nfds)]
                try:
                    with connect(stack) as s:
                        send(s, p.encode_request(req), fds)
                        assert dropped(s), (op, nfds)
                finally:
                    for fd in fds:
                        os.close(fd)
    finally:
        for fd in (r, w, devnull):
            os.close(fd)
        other_a.close()
        other_b.close()
        kernel_tcp.close()
    base.check(figures, "wrong_missing_surplus_fds")


# --- clients killed mid-call ------------------------------------------------------------
KILLED_CLIENT = textwrap.dedent("""
    import array, os, socket, sys, time
    sys.path.insert(0, sys.argv[2])
    from stack.ipc import protocol as p
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(sys.argv[1])
    mode = sys.argv[3]
    if mode == "socket-unread":      # ask for a socket, die before the reply arrives
        for i in range(50):
            s.send(p.encode_request(p.Request(p.Op.SOCKET, i, kind=p.KIND_TCP)))
    elif mode == "socket-held":      # get sockets, die holding them (bound, listening)
        for i in range(10):
            s.send(p.encode_request(p.Request(p.Op.SOCKET, i, kind=p.KIND_TCP)))
            data, anc, _, _ = s.recvmsg(100, socket.CMSG_SPACE(4))
            fd = array.array("i", anc[0][2])[0]
            if i % 2:
                s.sendmsg([p.encode_request(p.Request(p.Op.LISTEN, 100 + i, backlog=4))],
                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
                s.recv(100)
    elif mode == "list-unread":      # many LIST requests, no reads
        for i in range(200):
            s.send(p.encode_request(p.Request(p.Op.LIST, i)))
    print("ready", flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("mode", ["socket-unread", "socket-held", "list-unread"])
def test_client_killed_mid_call(stack: StackDaemon, figures: Figures, mode: str) -> None:
    base = Baseline(stack)
    rows_before = len(stack.ss_json())
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, str(stack.socket_path),
                                 str(REPO_ROOT), mode], stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
    # The sockets those clients held are gone from the stack too.
    wait_until(lambda: len(stack.ss_json()) <= rows_before, 10, interval=0.2,
               what="the killed clients' sockets to disappear from tcplab ss")
    base.check(figures, f"killed_mid_call_{mode}", clients=10)


# --- 1,000 clients connecting and vanishing ----------------------------------------------
def test_thousand_clients_connect_and_vanish(stack: StackDaemon, figures: Figures) -> None:
    base = Baseline(stack)
    rng = random.Random(99)
    left = CLIENTS
    keeper = connect(stack)  # a client that stays, and must keep being answered
    start = time.monotonic()
    while left:
        rep, _ = call(keeper, p.Request(p.Op.LIST, left))
        assert rep.status == 0 and rep.seq == left
        while rep.flags & p.FLAG_MORE:
            rep, _ = recv_reply(keeper)
        batch = [connect(stack) for _ in range(min(100, left))]
        left -= len(batch)
        for s in batch:
            what = rng.randrange(4)
            with contextlib.suppress(OSError):
                if what == 1:  # half a request
                    send(s, header(p.Op.BIND, 8))
                elif what == 2:  # a whole request, then gone before the answer
                    send(s, p.encode_request(p.Request(p.Op.SOCKET, 1, kind=p.KIND_TCP)))
                elif what == 3:  # a LIST, then gone
                    send(s, p.encode_request(p.Request(p.Op.LIST, 1)))
            if rng.randrange(2):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    seconds = time.monotonic() - start
    keeper.close()
    base.check(figures, "thousand_clients", clients=CLIENTS, seconds=round(seconds, 2))


def test_client_limit_refuses_extra_and_recovers(stack: StackDaemon, figures: Figures) -> None:
    """MAX_CLIENTS (1024) connections held at once: the next ones are refused (closed at
    once), the held ones are still served, and once they leave newcomers get in."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard < 1200:
            pytest.skip(f"this test needs 1,200 descriptors (hard limit {hard})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    base = Baseline(stack)
    held = [connect(stack) for _ in range(1024)]
    try:
        time.sleep(0.5)
        extra = connect(stack)
        refused = dropped(extra, timeout=5)
        extra.close()
        rep, _ = call(held[0], p.Request(p.Op.LIST, 1))
        assert rep.status == 0
        rep, _ = call(held[-1], p.Request(p.Op.LIST, 2))
        held_served = rep.status == 0
    finally:
        for s in held:
            s.close()
    figures.add("client_limit", {"held": 1024, "extra_refused": refused,
                                 "held_still_served": held_served})
    assert refused and held_served
    # The refusal is logged too (stack/ipc/server.py `_count`), not only counted.
    event = wait_until(lambda: next((e for e in stack.events() if e.get("type") == "ipc"
                                     and e.get("what") == "clients_refused"), None),
                       10, interval=0.1, what="an `ipc` event clients_refused")
    assert event["limit"] == 1024, event
    base.check(figures, "client_limit_after")


def test_adopt_abuse(stack: StackDaemon, figures: Figures) -> None:
    """ADOPT (a control connection handed to the daemon) with the wrong kind of
    descriptor is refused; adopted connections count against the client limit (one
    client cannot hand in more than MAX_CLIENTS), and vanish without a trace when their
    other end closes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2400:
        if hard < 2400:
            pytest.skip(f"this test needs 2,400 descriptors (hard limit {hard})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    base = Baseline(stack)
    r, w = os.pipe()
    stream_a, stream_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with connect(stack) as s:
            for fd, want in ((r, errno.ENOTSOCK), (stream_a.fileno(), errno.EINVAL)):
                rep, fds = call(s, p.Request(p.Op.ADOPT, 3), fd)
                assert rep.status == want and not fds, rep
            # an adopted connection is served like one made through the socket file
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            rep, _ = call(s, p.Request(p.Op.ADOPT, 4), theirs.fileno())
            theirs.close()
            assert rep.status == 0
            rep, _ = call(mine, p.Request(p.Op.LIST, 5))
            assert rep.status == 0
            mine.close()
            # a flood: the daemon holds at most MAX_CLIENTS, refuses the rest (EMFILE)
            kept, refused = [], 0
            for i in range(1100):
                a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                rep, _ = call(s, p.Request(p.Op.ADOPT, 10 + i), b.fileno())
                b.close()
                if rep.status == 0:
                    kept.append(a)
                else:
                    assert rep.status == errno.EMFILE, rep
                    refused += 1
                    a.close()
            assert refused >= 1100 - 1024 and len(kept) <= 1024 - 1
            for a in kept:
                a.close()
        figures.add("adopt_flood", {"adopted": len(kept), "refused": refused})
    finally:
        for fd in (r, w):
            os.close(fd)
        stream_a.close()
        stream_b.close()
    time.sleep(0.5)
    base.check(figures, "adopt_after")


# --- out of descriptors -------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_no_busy_loop(stack: StackDaemon, figures: Figures) -> None:
    """With its RLIMIT_NOFILE reached, accept() fails with EMFILE while connections wait
    in the backlog; the daemon must pause accepting, not spin at 100% CPU, and recover
    once descriptors are free again. (Found here: it used to spin and log ~10^4 lines/s.)"""
    base = Baseline(stack)
    pid = base.pid
    limit = base.fds + 20
    original = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, original[1]))
    clients: list[socket.socket] = []
    try:
        for _ in range(60):  # 20 get in, the rest wait in the backlog (or get EAGAIN)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
            s.settimeout(0.2)
            try:
                s.connect(str(stack.socket_path))
            except OSError:
                s.close()
                continue
            clients.append(s)
        time.sleep(0.5)
        cpu0 = cpu_seconds(pid)
        time.sleep(2.0)
        busy = cpu_seconds(pid) - cpu0
    finally:
        for s in clients:
            s.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, original)
    figures.add("out_of_descriptors", {"nofile_limit": limit, "clients": len(clients),
                                       "cpu_seconds_in_2s": round(busy, 3)})
    assert busy < 0.5, f"the daemon burnt {busy:.2f} s of CPU in 2 s while out of descriptors"
    base.check(figures, "out_of_descriptors_after")


# --- permissions --------------------------------------------------------------------------
def try_connect_as(path: str, uid: int, gid: int) -> int:
    """Connect from a child running as uid/gid (no supplementary groups); 0 or errno."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.connect(path)
            s.close()
        except OSError as exc:
            code = exc.errno or 255
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_socket_mode_and_group(topology: Topology, tmp_path: Path, figures: Figures) -> None:
    group = 4242
    sockdir = Path(tempfile.mkdtemp(prefix="tl-ipc-"))
    os.chmod(sockdir, 0o755)  # others may reach the file; its own mode decides
    path = sockdir / "stack.sock"
    daemon = StackDaemon.start(topology, ["--socket", str(path), "--socket-group", str(group),
                                          "--service", "none"], tmp_path)
    try:
        st = os.stat(path)
        mode = st.st_mode & 0o777
        assert mode == 0o660, oct(mode)
        assert st.st_gid == group
        in_group = try_connect_as(str(path), 65534, group)
        outsider = try_connect_as(str(path), 65534, 65534)
        figures.add("socket_permissions", {"mode": oct(mode), "gid": st.st_gid,
                                           "member_connect": in_group,
                                           "outsider_connect": errno.errorcode.get(outsider)})
        assert in_group == 0
        assert outsider == errno.EACCES
    finally:
        daemon.stop()
        with contextlib.suppress(OSError):
            path.unlink()
        with contextlib.suppress(OSError):
            sockdir.rmdir()
