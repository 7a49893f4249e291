"""The IPC server (stack/ipc/server.py) against a small in-memory socket layer.

Two kinds of tests:

* protocol level: raw SOCK_SEQPACKET clients speak docs/shim-protocol.md to the server
  (garbage, truncation, wrong descriptors, clients dying mid-call, permissions, stale
  socket files, the LIST reply);
* shim level: real programs (shim/examples/*.c, Python) run with the real
  libsocketoverride.so preloaded, their sockets carried by the server over the fake
  layer below (a loopback "network" with flow control, resets and refusals).

No privileges needed. `python tests/unit/test_ipc_server.py serve PATH` runs the server
over the fake layer by hand.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import json
import os
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from stack.ipc import protocol as p  # noqa: E402
from stack.ipc.client import query_sockets  # noqa: E402
from stack.ipc.server import IpcServer  # noqa: E402

SHIM_DIR = REPO / "shim"
SHIM = SHIM_DIR / "libsocketoverride.so"

# ------------------------------------------------------------------ the fake layer


class FakeNet:
    """A loopback network for fake sockets: every address is the stack's own."""

    def __init__(self, loop: asyncio.AbstractEventLoop, address: str = "10.0.0.2") -> None:
        self.loop = loop
        self.address = address
        self.listeners: dict[int, FakeTcp] = {}
        self.tcp_bound: dict[int, int] = {}
        self.udp: dict[int, FakeUdp] = {}
        self.next_port = 40000
        self.capacity = 64 * 1024  # per-direction buffer, so flow control is exercised

    def port(self) -> int:
        while self.next_port in self.tcp_bound or self.next_port in self.udp:
            self.next_port += 1
        self.next_port += 1
        return self.next_port - 1

    def later(self, fn: Callable[[], None]) -> None:
        self.loop.call_soon(fn)


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _v4(addr: str) -> str:
    """What the stack's dual-stack AF_INET6 sockets make of an address (the shim sends
    `::` and v4-mapped ones as they are, protocol version 4): the fake is IPv4 only."""
    if addr == "::":
        return "0.0.0.0"
    return addr.removeprefix("::ffff:")


class FakeTcp:
    kind = "tcp"

    def __init__(self, layer: FakeLayer) -> None:
        self.layer = layer
        self.net = layer.net
        self.state = "CLOSED"
        self.local: tuple[str, int] | None = None
        self.remote: tuple[str, int] | None = None
        self.error = 0
        self.on_change: Callable[[], None] | None = None
        self.peer: FakeTcp | None = None
        self.rx = bytearray()
        self.fin = False
        self.queue: deque[FakeTcp] = deque()
        self.backlog = 0
        self.opts: dict[tuple[int, int], int | bytes] = {}
        self.closed = False

    def notify(self) -> None:
        def fire() -> None:
            if self.on_change is not None:
                self.on_change()
        self.net.later(fire)

    def bind(self, addr: str, port: int) -> None:
        addr = _v4(addr)
        if self.local is not None:
            raise _err(errno.EINVAL)
        if addr not in ("0.0.0.0", self.net.address):
            raise _err(errno.EADDRNOTAVAIL)
        if port == 0:
            port = self.net.port()
        elif port in self.net.tcp_bound and not self.opts.get((socket.SOL_SOCKET,
                                                                socket.SO_REUSEADDR)):
            raise _err(errno.EADDRINUSE)
        self.net.tcp_bound[port] = self.net.tcp_bound.get(port, 0) + 1
        self.local = (self.net.address, port)

    def listen(self, backlog: int) -> None:
        if self.local is None:
            self.bind("0.0.0.0", 0)
        assert self.local is not None
        if self.net.listeners.get(self.local[1]) not in (None, self):
            raise _err(errno.EADDRINUSE)
        self.net.listeners[self.local[1]] = self
        self.state = "LISTEN"
        self.backlog = backlog

    def accept(self) -> FakeTcp | None:
        if self.state != "LISTEN":
            raise _err(errno.EINVAL)
        return self.queue.popleft() if self.queue else None

    def connect(self, addr: str, port: int) -> None:
        addr = _v4(addr)
        if self.state == "SYN-SENT":
            raise _err(errno.EALREADY)
        if self.state != "CLOSED" or self.peer is not None:
            raise _err(errno.EISCONN)
        if addr == "10.9.9.9":
            raise _err(errno.ENETUNREACH)
        if self.local is None:
            self.bind("0.0.0.0", 0)
        self.remote = (addr, port)
        self.state = "SYN-SENT"

        def handshake() -> None:
            lst = self.net.listeners.get(port)
            if addr == "10.0.0.99":  # a black hole: nothing answers, ever
                return
            if addr == "10.0.0.98":  # nothing answers, and the stack gives up quickly
                def give_up() -> None:
                    self.state = "CLOSED"
                    self.error = errno.ETIMEDOUT
                    self.notify()
                self.net.loop.call_later(0.3, give_up)
                return
            if lst is None or lst.state != "LISTEN" or len(lst.queue) >= lst.backlog:
                self.state = "CLOSED"
                self.error = errno.ECONNREFUSED
                self.notify()
                return
            child = FakeTcp(self.layer)
            child.state = "ESTABLISHED"
            assert self.local is not None
            child.local = (self.net.address, port)
            child.remote = (self.net.address, self.local[1])
            child.peer, self.peer = self, child
            self.state = "ESTABLISHED"
            self.layer.register(child)
            lst.queue.append(child)
            lst.notify()
            self.notify()
        self.net.later(handshake)

    @property
    def send_free(self) -> int:
        if self.peer is None or self.state not in ("ESTABLISHED", "CLOSE-WAIT"):
            return 0
        return max(self.net.capacity - len(self.peer.rx), 0)

    def send(self, data: bytes | memoryview) -> int:
        if self.error:
            err, self.error = self.error, 0
            raise _err(err)
        if self.state not in ("ESTABLISHED", "CLOSE-WAIT") or self.peer is None:
            raise _err(errno.EPIPE if self.state != "CLOSED" or self.peer else errno.ENOTCONN)
        n = min(len(data), self.send_free)
        self.peer.rx += bytes(data[:n])
        if n:
            self.peer.notify()
        return n

    def recv(self, n: int) -> bytes:
        if self.rx:
            data = bytes(self.rx[:n])
            del self.rx[:n]
            if self.peer is not None:
                self.peer.notify()  # room again
            return data
        if self.error:
            err, self.error = self.error, 0
            raise _err(err)
        if self.fin or (self.state == "CLOSED" and self.local is not None):
            return b""
        if self.peer is None and self.state != "ESTABLISHED":
            raise _err(errno.ENOTCONN)
        raise BlockingIOError(errno.EAGAIN, "empty")

    def shutdown(self, how: int) -> None:
        if self.peer is None:
            raise _err(errno.ENOTCONN)
        if how in (socket.SHUT_WR, socket.SHUT_RDWR) and not self.peer.fin:
            self.peer.fin = True
            self.peer.notify()

    def _reset_peer(self) -> None:
        if self.peer is not None and self.peer.state != "CLOSED":
            self.peer.error = errno.ECONNRESET
            self.peer.state = "CLOSED"
            self.peer.peer = None
            self.peer.notify()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.on_change = None
        linger = self.opts.get((socket.SOL_SOCKET, socket.SO_LINGER))
        if self.state == "LISTEN":
            if self.local and self.net.listeners.get(self.local[1]) is self:
                del self.net.listeners[self.local[1]]
            for child in self.queue:
                child.abort()
        elif self.rx or (isinstance(linger, bytes) and linger[:8] == struct.pack("ii", 1, 0)):
            self._reset_peer()
        elif self.peer is not None and not self.peer.fin:
            self.peer.fin = True
            self.peer.notify()
        self.state = "CLOSED"
        if self.local is not None and self.local[1] in self.net.tcp_bound:
            self.net.tcp_bound[self.local[1]] -= 1
            if not self.net.tcp_bound[self.local[1]]:
                del self.net.tcp_bound[self.local[1]]
        self.layer.unregister(self)

    def abort(self) -> None:
        self._reset_peer()
        self.rx.clear()
        self.close()

    def setsockopt(self, level: int, name: int, value: int | bytes) -> None:
        if level == socket.IPPROTO_TCP and name == 99:
            raise _err(errno.ENOPROTOOPT)
        self.opts[(level, name)] = value

    def getsockopt(self, level: int, name: int) -> int | bytes:
        if (level, name) == (socket.SOL_SOCKET, socket.SO_ERROR):
            err, self.error = self.error, 0
            return err
        if (level, name) == (socket.SOL_SOCKET, socket.SO_TYPE):
            return socket.SOCK_STREAM
        if (level, name) in self.opts:
            return self.opts[(level, name)]
        if level in (socket.SOL_SOCKET, socket.IPPROTO_TCP):
            return 0
        raise _err(errno.ENOPROTOOPT)

    def info(self) -> dict[str, object]:
        return {"proto": "tcp", "state": self.state,
                "local": f"{self.local[0]}:{self.local[1]}" if self.local else "0.0.0.0:*",
                "remote": f"{self.remote[0]}:{self.remote[1]}" if self.remote else "*:*",
                "cwnd": 14600, "mss": 1460, "srtt": 0.001, "rto": 0.2, "cc": "newreno"}


class FakeUdp:
    kind = "udp"
    state = "UNCONN"

    def __init__(self, layer: FakeLayer) -> None:
        self.layer = layer
        self.net = layer.net
        self.local: tuple[str, int] | None = None
        self.remote: tuple[str, int] | None = None
        self.on_change: Callable[[], None] | None = None
        self.queue: deque[tuple[bytes, tuple[str, int]]] = deque()

    def bind(self, addr: str, port: int) -> None:
        addr = _v4(addr)
        if self.local is not None:
            raise _err(errno.EINVAL)
        if port == 0:
            port = self.net.port()
        elif port in self.net.udp:
            raise _err(errno.EADDRINUSE)
        self.net.udp[port] = self
        self.local = (self.net.address, port)

    def connect(self, addr: str, port: int) -> None:
        addr = _v4(addr)
        if self.local is None:
            self.bind("0.0.0.0", 0)
        self.remote = None if (addr, port) == ("0.0.0.0", 0) else (addr, port)

    def sendto(self, data: bytes, addr: tuple[str, int] | None) -> int:
        addr = (_v4(addr[0]), addr[1]) if addr is not None else None
        dest = addr or self.remote
        if dest is None:
            raise _err(errno.EDESTADDRREQ)
        if self.local is None:
            self.bind("0.0.0.0", 0)
        assert self.local is not None
        target = self.net.udp.get(dest[1])
        if target is not None and (target.remote is None or target.remote[1] == self.local[1]):
            target.queue.append((bytes(data), (self.net.address, self.local[1])))
            cb = target.on_change
            if cb is not None:
                self.net.later(cb)
        return len(data)

    def recvfrom(self) -> tuple[bytes, tuple[str, int]]:
        if not self.queue:
            raise BlockingIOError(errno.EAGAIN, "empty")
        return self.queue.popleft()

    def close(self) -> None:
        if self.local is not None and self.net.udp.get(self.local[1]) is self:
            del self.net.udp[self.local[1]]
        self.on_change = None
        self.layer.unregister(self)

    def setsockopt(self, level: int, name: int, value: int | bytes) -> None:
        pass

    def getsockopt(self, level: int, name: int) -> int | bytes:
        return socket.SOCK_DGRAM if name == socket.SO_TYPE else 0

    def info(self) -> dict[str, object]:
        return {"proto": "udp", "state": "UNCONN",
                "local": f"{self.local[0]}:{self.local[1]}" if self.local else "0.0.0.0:*"}


class FakeLayer:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.net = FakeNet(loop)
        self.address = self.net.address
        self.address6: str | None = None
        self.sockets: dict[int, Any] = {}
        self.extra_rows = 0

    def register(self, sock: Any) -> None:
        self.sockets[id(sock)] = sock

    def unregister(self, sock: Any) -> None:
        self.sockets.pop(id(sock), None)

    def tcp_socket(self, family: int = socket.AF_INET) -> FakeTcp:
        s = FakeTcp(self)
        self.register(s)
        return s

    def udp_socket(self, family: int = socket.AF_INET) -> FakeUdp:
        s = FakeUdp(self)
        self.register(s)
        return s

    def all_sockets(self) -> list[Any]:
        extra = [_Row(i) for i in range(self.extra_rows)]
        return [*self.sockets.values(), *extra]


class _Row:
    def __init__(self, i: int) -> None:
        self.i = i

    def info(self) -> dict[str, object]:
        return {"proto": "tcp", "state": "TIME-WAIT", "local": f"10.0.0.2:{self.i}",
                "remote": "10.1.0.2:80", "padding": "x" * 100}


# ------------------------------------------------------------------ the server thread


class ServerThread:
    """The server and the fake layer on an event loop in a thread."""

    def __init__(self, path: str, group: str | None = None) -> None:
        self.path = path
        self.loop = asyncio.new_event_loop()
        self.layer = FakeLayer(self.loop)
        self.server = IpcServer(self.layer, path, group=group)
        self.error: BaseException | None = None
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self.error = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()
        self.server.close()
        self.loop.close()

    def start(self) -> ServerThread:
        self.thread.start()
        self._started.wait(10)
        if self.error is not None:
            raise self.error
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run fn on the loop and return its result."""
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["v"] = fn()
            except BaseException as exc:
                box["e"] = exc
            done.set()
        self.loop.call_soon_threadsafe(run)
        assert done.wait(10)
        if "e" in box:
            raise box["e"]
        return box.get("v")

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def daemon_fds(self) -> int:
        return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    srv = ServerThread(str(tmp_path / "stack.sock")).start()
    try:
        yield srv
    finally:
        srv.stop()


# ------------------------------------------------------------------ raw clients


class Raw:
    """A raw protocol client."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.seq = 0

    def send(self, data: bytes, fds: list[int] | None = None) -> None:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] \
            if fds else []
        self.sock.sendmsg([data], anc)

    def recv(self) -> tuple[p.Reply, int]:
        data, anc, _flags, _ = self.sock.recvmsg(p.MAX_MESSAGE, socket.CMSG_SPACE(16))
        fds = []
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(array.array("i", payload[: len(payload) // 4 * 4]))
        rep = p.decode_reply(data, len(fds))
        return rep, (fds[0] if fds else -1)

    def call(self, req: p.Request, fd: int = -1) -> tuple[p.Reply, int]:
        self.seq += 1
        req.seq = self.seq
        self.send(p.encode_request(req), [fd] if fd >= 0 else None)
        rep, out = self.recv()
        assert rep.seq == self.seq and rep.op == req.op
        return rep, out

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(100) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self) -> None:
        self.sock.close()


def _poll(fd: int, events: int, timeout: float = 0) -> int:
    pl = select.poll()
    pl.register(fd, events)
    got = pl.poll(timeout * 1000)
    return got[0][1] if got else 0


def _wait_for(pred: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    raise AssertionError("condition not reached")


# ------------------------------------------------------------------ protocol-level tests


def test_socket_file_mode_and_removal(server: ServerThread) -> None:
    st = os.stat(server.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o666  # any user may make sockets, as with the kernel's
    server.stop()
    assert not os.path.exists(server.path)


def test_group_ownership(tmp_path: Path) -> None:
    gid = os.getgid()
    srv = ServerThread(str(tmp_path / "g.sock"), group=str(gid)).start()
    try:
        assert os.stat(srv.path).st_gid == gid
        assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o660  # only that group
    finally:
        srv.stop()
    with pytest.raises(OSError):
        ServerThread(str(tmp_path / "h.sock"), group="no-such-group-tcplab").start()


def test_stale_socket_is_replaced_and_live_one_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dead.bind(path)
    dead.close()  # a file with nobody behind it: what a killed daemon leaves
    srv = ServerThread(path).start()
    try:
        assert Raw(path).call(p.Request(p.Op.LIST))[0].status == 0
        with pytest.raises(OSError) as info:
            ServerThread(path).start()
        assert info.value.errno == errno.EADDRINUSE
    finally:
        srv.stop()
    Path(path).write_text("not a socket")
    with pytest.raises(OSError):
        ServerThread(path).start()
    assert Path(path).read_text() == "not a socket"  # never deletes what is not a socket


def test_socket_op_gives_a_marked_unwritable_socket(server: ServerThread) -> None:
    raw = Raw(server.path)
    rep, fd = raw.call(p.Request(p.Op.SOCKET, kind=p.KIND_TCP))
    assert rep.status == 0 and fd >= 0
    with socket.socket(fileno=fd) as a:
        name = a.getsockname()
        assert name.startswith(b"\0tcplab-T-")
        assert a.type == socket.SOCK_STREAM
        assert not _poll(a.fileno(), select.POLLOUT)  # until connected
        rep, _ = raw.call(p.Request(p.Op.GETSOCKNAME), a.fileno())
        assert rep.addr == p.Addr(p.AF_INET, "0.0.0.0", 0)
        rep, _ = raw.call(p.Request(p.Op.GETPEERNAME), a.fileno())
        assert rep.status == errno.ENOTCONN
    rep, fd = raw.call(p.Request(p.Op.SOCKET, kind=p.KIND_UDP))
    with socket.socket(fileno=fd) as u:
        assert u.getsockname().startswith(b"\0tcplab-U-")
        assert u.type == socket.SOCK_SEQPACKET
        assert _poll(u.fileno(), select.POLLOUT)
    raw.close()


def test_closing_the_program_end_frees_the_stack_socket(server: ServerThread) -> None:
    raw = Raw(server.path)
    _, fd = raw.call(p.Request(p.Op.SOCKET, kind=p.KIND_TCP))
    assert server.call(lambda: len(server.layer.sockets)) == 1
    dup = os.dup(fd)
    os.close(fd)
    time.sleep(0.1)
    assert server.call(lambda: len(server.layer.sockets)) == 1  # a dup still holds it
    os.close(dup)
    _wait_for(lambda: server.call(lambda: len(server.layer.sockets)) == 0)
    raw.close()


@pytest.mark.parametrize("garbage", [
    b"",  # a zero-length record
    b"\0" * 7,
    b"GET / HTTP/1.0\r\n\r\n",
    bytes.fromhex("544c41420101000000000001000000000000000401000001"),  # bad padding
    bytes.fromhex("544c41420163000000000001000000000000000000"),  # unknown op, bad length
    p.encode_request(p.Request(p.Op.SOCKET, kind=p.KIND_TCP))[:-1],  # truncated
])
def test_garbage_closes_only_that_connection(server: ServerThread, garbage: bytes) -> None:
    good = Raw(server.path)
    bad = Raw(server.path)
    bad.send(garbage)
    assert bad.closed_by_server()
    assert good.call(p.Request(p.Op.LIST))[0].status == 0
    assert Raw(server.path).call(p.Request(p.Op.LIST))[0].status == 0


def test_oversized_message_is_refused(server: ServerThread) -> None:
    bad = Raw(server.path)
    bad.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    bad.send(b"\0" * (p.MAX_MESSAGE + 100))
    assert bad.closed_by_server()
    assert Raw(server.path).call(p.Request(p.Op.LIST))[0].status == 0


def test_wrong_descriptors_are_closed_not_leaked(server: ServerThread) -> None:
    raw = Raw(server.path)
    _, fd = raw.call(p.Request(p.Op.SOCKET, kind=p.KIND_TCP))
    before = server.daemon_fds()
    r, w = os.pipe()
    for _ in range(20):
        # SOCKET must carry no fd; BIND exactly one; here two
        bad = Raw(server.path)
        bad.send(p.encode_request(p.Request(p.Op.SOCKET, 1, kind=1)), [r])
        assert bad.closed_by_server()
        bad.close()
        bad = Raw(server.path)
        bad.send(p.encode_request(p.Request(p.Op.BIND, 1, addr=p.Addr())), [fd, w])
        assert bad.closed_by_server()
        bad.close()
        bad = Raw(server.path)
        bad.send(p.encode_request(p.Request(p.Op.BIND, 1, addr=p.Addr())), [fd] * 8)
        assert bad.closed_by_server()
        bad.close()
    time.sleep(0.1)
    assert server.daemon_fds() <= before + 2
    # a pipe is not a socket; an unknown socket is refused: nothing happens to anyone
    rep, _ = raw.call(p.Request(p.Op.GETSOCKNAME), r)
    assert rep.status == errno.ENOTSOCK
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    rep, _ = raw.call(p.Request(p.Op.LISTEN, backlog=5), other.fileno())
    assert rep.status == errno.ECONNRESET
    for x in (r, w, fd):
        os.close(x)
    other.close()


def test_client_dying_mid_call(server: ServerThread) -> None:
    for _ in range(50):
        raw = Raw(server.path)
        raw.send(p.encode_request(p.Request(p.Op.SOCKET, 1, kind=1)))
        raw.close()  # the reply (with an fd in it) has nowhere to go
    time.sleep(0.2)
    _wait_for(lambda: server.call(lambda: len(server.layer.sockets)) == 0)
    assert Raw(server.path).call(p.Request(p.Op.LIST))[0].status == 0


def test_pipelined_requests_without_reading_replies(server: ServerThread) -> None:
    raw = Raw(server.path)
    raw.sock.setblocking(False)
    msg = p.encode_request(p.Request(p.Op.LIST, 1))
    with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
        for _ in range(100000):
            raw.sock.send(msg)
    assert Raw(server.path).call(p.Request(p.Op.LIST))[0].status == 0


def test_list_is_chunked_and_parsed_by_query_sockets(server: ServerThread) -> None:
    server.call(lambda: setattr(server.layer, "extra_rows", 2000))
    rows = query_sockets(server.path)
    assert len(rows) == 2000 and rows[5]["local"] == "10.0.0.2:5"
    raw = Raw(server.path)
    raw.send(p.encode_request(p.Request(p.Op.LIST, 9)))
    chunks = 0
    while True:
        rep, _ = raw.recv()
        chunks += 1
        if not rep.flags & p.FLAG_MORE:
            break
    assert chunks > 3


def test_query_sockets_errors(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        query_sockets(str(tmp_path / "nothing.sock"), timeout=1)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    silent.bind(str(tmp_path / "silent.sock"))
    silent.listen(1)
    with pytest.raises(OSError):  # TimeoutError is an OSError
        query_sockets(str(tmp_path / "silent.sock"), timeout=0.3)
    silent.close()


def test_connect_refused_over_raw_protocol(server: ServerThread) -> None:
    raw = Raw(server.path)
    _, fd = raw.call(p.Request(p.Op.SOCKET, kind=p.KIND_TCP))
    rep, _ = raw.call(p.Request(p.Op.CONNECT, addr=p.Addr(p.AF_INET, "10.0.0.2", 1)), fd)
    assert rep.status == errno.EINPROGRESS
    ev = _poll(fd, select.POLLOUT, 5)
    if ev & (select.POLLERR | select.POLLHUP) and not ev & select.POLLOUT:
        # Linux wakes the program when the daemon's end closes, before it frees the
        # bytes queued there (unix_release_sock); POLLOUT follows with that free, but
        # poll() returns at once on POLLERR/POLLHUP, so look again until it shows.
        ev = _wait_for(lambda: _poll(fd, select.POLLOUT) & select.POLLOUT and _poll(fd, select.POLLOUT))
    assert ev & select.POLLOUT and ev & (select.POLLERR | select.POLLHUP)
    rep, _ = raw.call(p.Request(p.Op.GETSOCKOPT, level=socket.SOL_SOCKET,
                                name=socket.SO_ERROR, optlen=4), fd)
    assert struct.unpack("=i", rep.value)[0] == errno.ECONNREFUSED
    rep, _ = raw.call(p.Request(p.Op.GETSOCKOPT, level=socket.SOL_SOCKET,
                                name=socket.SO_ERROR, optlen=4), fd)
    assert struct.unpack("=i", rep.value)[0] == 0  # read once, like Linux
    os.close(fd)


def test_udp_ipv6_source_rides_in_a_pktinfo_file(server: ServerThread) -> None:
    """A datagram from an IPv6 source (128 bits, which SCM_CREDENTIALS cannot hold)
    carries a sealed PKTINFO file whose src is the source; one from an IPv4 source to a
    socket that asked for no PKTINFO carries none; the payload is the record's bytes
    either way (so read() sees exactly the datagram)."""
    raw = Raw(server.path)
    rep, fd = raw.call(p.Request(p.Op.SOCKET, kind=p.KIND_UDP, family=p.AF_INET6))
    assert rep.status == 0 and fd >= 0
    rep, _ = raw.call(p.Request(p.Op.BIND, addr=p.Addr(p.AF_INET6, "::", 5399)), fd)
    assert rep.status == 0
    fake = server.call(lambda: server.layer.net.udp[5399])
    sources = [("fd00:0:0:2::2", 4242), ("10.1.0.2", 4243)]

    def inject() -> None:
        for i, src in enumerate(sources):
            fake.queue.append((b"d%d" % i, src))
        assert fake.on_change is not None
        fake.on_change()

    server.call(inject)
    with socket.socket(fileno=os.dup(fd)) as a:
        a.settimeout(5)
        got = []
        for _ in sources:
            data, anc, _flags, _ = a.recvmsg(100, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(16))
            rights = [f for level, kind, payload in anc
                      if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
                      for f in array.array("i", payload[: len(payload) // 4 * 4])]
            creds = [struct.unpack("=iII", payload) for level, kind, payload in anc
                     if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS]
            records = []
            for f in rights:
                records.append(p.decode_reply(os.pread(f, p.PKTINFO_RECORD_SIZE + 1, 0)))
                os.close(f)
            got.append((data, records, creds))
    (d0, rec0, cred0), (d1, rec1, cred1) = got
    assert d0 == b"d0" and len(rec0) == 1 and rec0[0].op is p.Op.PKTINFO
    assert rec0[0].src == p.Addr(p.AF_INET6, "fd00:0:0:2::2", 4242)
    assert rec0[0].want == 0
    if cred0:  # a daemon with CAP_SETUID labels datagrams: uid 0 for an IPv6 source
        assert cred0[0][1:] == (0, 0x54430000 | 4242)
    assert d1 == b"d1" and rec1 == []
    if cred1:
        assert cred1[0][1:] == (0x0A010002, 0x54430000 | 4243)
    os.close(fd)


def _take_record(lfd: int) -> tuple[p.Reply, int]:
    """What the shim's accept does: one ACCEPT record with its connection."""
    with socket.socket(fileno=os.dup(lfd)) as lsock:
        data, anc, _flags, _ = lsock.recvmsg(p.ACCEPT_RECORD_SIZE, socket.CMSG_SPACE(16),
                                             socket.MSG_DONTWAIT)
    fds = [fd for level, kind, payload in anc
           if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
           for fd in array.array("i", payload[: len(payload) // 4 * 4])]
    return p.decode_reply(data, len(fds)), fds[0] if fds else -1


def test_listener_readable_when_connection_waits(server: ServerThread) -> None:
    raw = Raw(server.path)
    _, lfd = raw.call(p.Request(p.Op.SOCKET, kind=p.KIND_TCP))
    assert raw.call(p.Request(p.Op.BIND, addr=p.Addr(p.AF_INET, "0.0.0.0", 7000)), lfd)[0].status == 0
    with socket.socket(fileno=os.dup(lfd)) as a:
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY) == 0
        rep, none = raw.call(p.Request(p.Op.LISTEN, backlog=4), lfd)
        assert rep.status == 0 and none == -1
        # marked as listening where the shim looks (shim.c: MARK_LISTEN_V4)
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY) == 1
    assert not _poll(lfd, select.POLLIN)
    assert not _poll(lfd, select.POLLOUT)  # a listener never polls writable
    assert raw.call(p.Request(p.Op.LISTEN, backlog=8), lfd)[0].status == 0  # a new backlog
    # A control connection handed in through the listener's own stream (what a shim
    # that closed its descriptors and dropped privileges does) serves sockets the
    # process holds, and may not make new ones or list everyone's.
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with socket.socket(fileno=os.dup(lfd)) as lsock:
        lsock.sendmsg([b"\1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                 array.array("i", [theirs.fileno()]).tobytes())],
                      socket.MSG_DONTWAIT)
    theirs.close()
    handed = Raw.__new__(Raw)
    handed.sock, handed.seq = mine, 0
    mine.settimeout(5)
    rep, _ = handed.call(p.Request(p.Op.GETSOCKNAME), lfd)
    assert rep.status == 0 and rep.addr is not None and rep.addr.port == 7000
    assert handed.call(p.Request(p.Op.SOCKET, kind=p.KIND_TCP))[0].status == errno.EACCES
    assert handed.call(p.Request(p.Op.LIST))[0].status == errno.EACCES
    handed.close()
    assert not _poll(lfd, select.POLLOUT)  # the offer did not make it writable
    # ACCEPT is no request any more: the connection is dropped
    raw2 = Raw(server.path)
    raw2.send(p.HEADER.pack(p.MAGIC, p.VERSION, p.Op.ACCEPT, 0, 1, 0, 0), [lfd])
    assert raw2.closed_by_server()
    _, cfd = raw.call(p.Request(p.Op.SOCKET, kind=p.KIND_TCP))
    rep, _ = raw.call(p.Request(p.Op.CONNECT, addr=p.Addr(p.AF_INET, "10.0.0.2", 7000)), cfd)
    assert rep.status == errno.EINPROGRESS
    assert _poll(lfd, select.POLLIN, 5)
    assert _poll(cfd, select.POLLOUT, 5)
    rep, afd = _take_record(lfd)
    assert rep.op is p.Op.ACCEPT and rep.seq == 0 and afd >= 0
    assert rep.local is not None and rep.local.port == 7000
    assert not _poll(lfd, select.POLLIN)
    # data both ways, and a FIN that leaves the other direction open
    os.write(cfd, b"hello")
    assert _poll(afd, select.POLLIN, 5) and os.read(afd, 100) == b"hello"
    socket.socket(fileno=cfd).detach()
    with socket.socket(fileno=os.dup(cfd)) as c:
        c.shutdown(socket.SHUT_WR)
    assert _poll(afd, select.POLLIN, 5) and os.read(afd, 100) == b""
    os.write(afd, b"still open")
    assert _poll(cfd, select.POLLIN, 5) and os.read(cfd, 100) == b"still open"
    for fd in (lfd, cfd, afd):
        os.close(fd)
    _wait_for(lambda: server.call(lambda: len(server.layer.sockets)) == 0)


# ------------------------------------------------------------------ shim-level tests

needs_shim = pytest.mark.skipif(shutil.which("make") is None or shutil.which("cc") is None,
                                reason="needs make and a C compiler to build the shim")


@pytest.fixture(scope="module")
def shim() -> Path:
    if shutil.which("make") is None:
        pytest.skip("needs make")
    subprocess.run(["make", "-s", "-C", str(SHIM_DIR), "all"], check=True, timeout=300)
    return SHIM


def shim_env(path: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["LD_PRELOAD"] = str(SHIM)
    env["TCPLAB_SOCKET"] = path
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def run_shimmed(path: str, argv: list[str], timeout: float = 30,
                **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=shim_env(path), capture_output=True, text=True,
                          timeout=timeout, **kw)


def py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


@needs_shim
def test_c_epoll_server_and_nonblocking_client(server: ServerThread, shim: Path) -> None:
    srv = subprocess.Popen([str(SHIM_DIR / "examples/epoll_server"), "7100", "3"],
                           env=shim_env(server.path), stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout is not None
        assert srv.stdout.readline().strip() == "listening 7100"
        for args in (["10.0.0.2", "7100", "1000000"], ["-b", "10.0.0.2", "7100", "300000"],
                     ["10.0.0.2", "7100", "1"]):
            cp = run_shimmed(server.path, [str(SHIM_DIR / "examples/nbconnect"), *args])
            assert cp.returncode == 0, cp.stdout + cp.stderr
            assert cp.stdout.splitlines()[-1] == f"echo ok {args[-1]}"
            assert "connected 10.0.0.2:" in cp.stdout
        assert srv.wait(10) == 0
    finally:
        srv.kill()
        srv.wait()


@needs_shim
@pytest.mark.parametrize("blocking", [False, True])
def test_c_client_refused(server: ServerThread, shim: Path, blocking: bool) -> None:
    argv = [str(SHIM_DIR / "examples/nbconnect"), *(["-b"] if blocking else []), "10.0.0.2", "9"]
    cp = run_shimmed(server.path, argv)
    assert cp.returncode == 3 and cp.stdout.startswith("error ECONNREFUSED"), cp.stdout


@needs_shim
@pytest.mark.parametrize("blocking", [False, True])
def test_c_client_timeout(server: ServerThread, shim: Path, blocking: bool) -> None:
    argv = [str(SHIM_DIR / "examples/nbconnect"), *(["-b"] if blocking else []), "10.0.0.98",
            "80"]
    cp = run_shimmed(server.path, argv)
    assert cp.returncode == 3 and cp.stdout.startswith("error ETIMEDOUT"), cp.stdout


@needs_shim
def test_listen_keeps_the_socket(server: ServerThread, shim: Path) -> None:
    """listen() keeps the program's socket (no new descriptor): a dup made before it,
    and a process that listens on a socket its parent bound, see one listener."""
    cp = run_shimmed(server.path, py("""
        import os, socket
        l = socket.socket()
        l.bind(("0.0.0.0", 7620))
        d = l.dup()
        pid = os.fork()
        if pid == 0:
            l.listen(4)   # the child listens on the socket the parent bound
            os._exit(0)
        os.waitpid(pid, 0)
        c = socket.create_connection(("10.0.0.2", 7620), timeout=5)
        a, addr = d.accept()   # the parent accepts through its dup
        a.sendall(b"x")
        print(c.recv(1).decode(), addr[0], l.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    """))
    assert cp.stdout.split() == ["x", "10.0.0.2", "1"], cp.stdout + cp.stderr


@needs_shim
def test_port_is_free_when_close_returns(server: ServerThread, shim: Path) -> None:
    """close() then at once bind/listen on the same port, as Linux allows: the daemon
    takes the closed socket's hangup before it answers (no EADDRINUSE race)."""
    cp = run_shimmed(server.path, py("""
        import errno, socket
        bad = []
        for port in range(7700, 7740):
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                for attempt in range(2):
                    s = socket.socket(socket.AF_INET, kind)
                    if kind == socket.SOCK_STREAM:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        s.bind(("0.0.0.0", port))
                        if kind == socket.SOCK_STREAM:
                            s.listen(1)
                    except OSError as e:
                        bad.append((port, kind, attempt, errno.errorcode[e.errno]))
                    s.close()
        print(bad or "ok")
    """))
    assert cp.stdout.strip() == "ok", cp.stdout + cp.stderr


@needs_shim
def test_listener_shutdown_wakes_a_blocked_accept(server: ServerThread, shim: Path) -> None:
    """shutdown(SHUT_RD) on a listener: a thread blocked in accept() gets EINVAL (the
    listener's stream reads end of file), as in Linux; so does the next accept."""
    cp = run_shimmed(server.path, py("""
        import errno, socket, threading, time
        l = socket.socket()
        l.bind(("0.0.0.0", 7621))
        l.listen(4)
        got = []
        def blocked():
            try:
                l.accept()
            except OSError as e:
                got.append(e.errno)
        t = threading.Thread(target=blocked)
        t.start()
        time.sleep(0.3)  # most likely blocked by now; either way the answer is EINVAL
        l.shutdown(socket.SHUT_RD)
        t.join(5)
        try:
            l.accept()
        except OSError as e:
            got.append(e.errno)
        print(" ".join(errno.errorcode[e] for e in got), t.is_alive())
    """))
    assert cp.stdout.split() == ["EINVAL", "EINVAL", "False"], cp.stdout + cp.stderr


@needs_shim
def test_python_socket_api(server: ServerThread, shim: Path) -> None:
    cp = run_shimmed(server.path, py("""
        import errno, os, socket, struct
        ls = socket.socket()
        assert ls.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        assert ls.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        ls.bind(("0.0.0.0", 0))
        port = ls.getsockname()[1]
        assert ls.getsockname()[0] == "0.0.0.0" and port > 0
        ls.listen(5)
        try:
            socket.socket().bind(("0.0.0.0", port))
        except OSError as e:
            assert e.errno == errno.EADDRINUSE, e
        else:
            raise AssertionError("bind to a used port worked")
        try:
            socket.socket().bind(("10.7.7.7", 0))
        except OSError as e:
            assert e.errno == errno.EADDRNOTAVAIL, e
        c = socket.create_connection(("10.0.0.2", port), timeout=5)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        s, addr = ls.accept()
        assert addr == c.getsockname(), (addr, c.getsockname())
        assert s.getpeername() == c.getsockname() and c.getpeername() == ("10.0.0.2", port)
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN) == socket.AF_INET
        c.sendall(b"x" * 200000)
        got = b""
        while len(got) < 200000:
            got += s.recv(65536)
        assert got == b"x" * 200000
        # dup and fork: the same socket in two places
        d = os.dup(s.fileno())
        pid = os.fork()
        if pid == 0:
            os.write(d, b"from the child")
            peer = socket.socket(fileno=os.dup(d)).getpeername()
            os._exit(0 if peer == c.getsockname() else 1)
        assert os.waitpid(pid, 0)[1] == 0
        assert c.recv(100) == b"from the child"
        # SO_LINGER 0 resets
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        os.close(d); s.close()
        try:
            data = c.recv(100)
        except ConnectionResetError:
            data = "reset"
        assert data == "reset", data
        try:
            for _ in range(100):
                c.send(b"y" * 1000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        else:
            raise AssertionError("send after reset worked")
        # unknown options are ENOPROTOOPT, like Linux
        try:
            ls.setsockopt(socket.IPPROTO_TCP, 99, 1)
        except OSError as e:
            assert e.errno == errno.ENOPROTOOPT
        # timeouts stay with the kernel fd
        ls.settimeout(0.2)
        try:
            ls.accept()
        except TimeoutError:
            pass
        ls.setblocking(True)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 200000))
        try:
            ls.accept()
        except BlockingIOError:
            pass
        print("ok")
    """))
    assert cp.stdout.strip() == "ok", cp.stdout + cp.stderr


def _can_label_datagrams() -> bool:
    """CAP_SETUID and CAP_SETGID: what the server needs to pass UDP source addresses."""
    with open("/proc/self/status") as f:
        caps = int(next(line for line in f if line.startswith("CapEff:")).split()[1], 16)
    return bool(caps & (1 << 6)) and bool(caps & (1 << 7))


@needs_shim
def test_python_udp(server: ServerThread, shim: Path) -> None:
    cp = run_shimmed(server.path, py(f"""
        import socket
        labelled = {_can_label_datagrams()}
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind(("0.0.0.0", 5353))
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b.sendto(b"one", ("10.0.0.2", 5353))
        data, src = a.recvfrom(100)
        want = ("10.0.0.2", b.getsockname()[1]) if labelled else ("0.0.0.0", 0)
        assert data == b"one" and src == want, (data, src)
        src = ("10.0.0.2", b.getsockname()[1])
        a.sendto(b"two" * 1000, src)
        data, src2 = b.recvfrom(65536)
        want = ("10.0.0.2", 5353) if labelled else ("0.0.0.0", 0)
        assert data == b"two" * 1000 and src2 == want, src2
        b.connect(("10.0.0.2", 5353))
        a.sendto(b"connected", src)
        assert b.recvfrom(100) == (b"connected", ("10.0.0.2", 5353))  # labelled or not
        b.send(b"three")
        data, _, flags, src = a.recvmsg(2)
        assert data == b"th" and flags & socket.MSG_TRUNC, (data, flags)
        assert b.getpeername() == ("10.0.0.2", 5353)
        b.send(b"")
        assert a.recvfrom(10)[0] == b""
        b.shutdown(socket.SHUT_WR)
        try:
            b.send(b"after shutdown")
        except BrokenPipeError:
            pass
        else:
            raise AssertionError("send after SHUT_WR worked")
        a.sendto(b"still heard", b.getsockname())
        assert b.recv(100) == b"still heard"
        print("ok")
    """))
    assert cp.stdout.strip() == "ok", cp.stdout + cp.stderr
    stats = server.call(lambda: dict(server.server.stats))
    assert stats.get("udp_from_program_dropped", 0) < 5, stats  # no spinning on EOF


@needs_shim
def test_python_asyncio_server_and_client(server: ServerThread, shim: Path) -> None:
    cp = run_shimmed(server.path, py("""
        import asyncio, hashlib, os
        payload = os.urandom(3_000_000)
        async def handle(r, w):
            data = await r.read()
            w.write(hashlib.sha256(data).hexdigest().encode())
            await w.drain()
            w.close()
        async def main():
            srv = await asyncio.start_server(handle, "0.0.0.0", 7300)
            results = []
            for _ in range(3):
                r, w = await asyncio.open_connection("10.0.0.2", 7300)
                w.write(payload)
                await w.drain()
                w.write_eof()
                results.append((await r.read()).decode())
                w.close()
            srv.close()
            assert results == [hashlib.sha256(payload).hexdigest()] * 3, results
            print("ok")
        asyncio.run(main())
    """), timeout=60)
    assert cp.stdout.strip() == "ok", cp.stdout + cp.stderr


@needs_shim
def test_loopback_goes_to_the_kernel(server: ServerThread, shim: Path) -> None:
    kernel = socket.socket()
    kernel.bind(("127.0.0.1", 0))
    kernel.listen(1)
    port = kernel.getsockname()[1]
    cp = run_shimmed(server.path, py(f"""
        import socket
        s = socket.socket()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.connect(("127.0.0.1", {port}))
        assert not s.getsockname()[0].startswith("10.")
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        s.sendall(b"via the kernel")
        l = socket.socket()
        l.bind(("127.0.0.1", 0))
        l.listen(1)
        print("ok", l.getsockname()[0])
    """))
    conn, _ = kernel.accept()
    assert conn.recv(100) == b"via the kernel"
    assert cp.stdout.strip() == "ok 127.0.0.1", cp.stdout + cp.stderr
    conn.close()
    kernel.close()


@needs_shim
def test_daemon_absent(tmp_path: Path, shim: Path) -> None:
    missing = str(tmp_path / "nobody.sock")
    cp = run_shimmed(missing, py("""
        import errno, socket
        for _ in range(3):
            try:
                socket.socket()
            except OSError as e:
                assert e.errno == errno.ENETDOWN, e
            else:
                raise AssertionError("socket() worked without a daemon")
        u = socket.socket(socket.AF_UNIX)  # not ours: untouched
        print("ok")
    """), timeout=10)
    assert cp.stdout.strip() == "ok", cp.stdout + cp.stderr
    lines = [line for line in cp.stderr.splitlines() if line.strip()]
    assert lines == [f"tcplab: cannot reach the stack daemon at {missing}: "
                     "No such file or directory"], cp.stderr


@needs_shim
def test_daemon_going_away_resets_sockets(tmp_path: Path, shim: Path) -> None:
    srv = ServerThread(str(tmp_path / "d.sock")).start()
    prog = subprocess.Popen(py("""
        import socket, sys, time
        l = socket.socket(); l.bind(("0.0.0.0", 7400)); l.listen(1)
        c = socket.create_connection(("10.0.0.2", 7400))
        s, _ = l.accept()
        print("ready", flush=True)
        sys.stdin.readline()
        t0 = time.monotonic()
        try:
            got = c.recv(10)
        except ConnectionResetError:
            got = "reset"
        try:
            c.send(b"x")
            sent = "sent"
        except (BrokenPipeError, ConnectionResetError) as e:
            sent = type(e).__name__
        print(got, sent, round(time.monotonic() - t0, 1), flush=True)
    """), env=shim_env(srv.path), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert prog.stdout is not None and prog.stdin is not None
        assert prog.stdout.readline().strip() == "ready"
        srv.stop()
        prog.stdin.write("\n")
        prog.stdin.flush()
        out = prog.stdout.readline().split()
        assert out[:2] == ["reset", "BrokenPipeError"], out
        assert float(out[2]) < 1.0
    finally:
        prog.kill()
        prog.wait()


@needs_shim
def test_tcplab_run_sets_up_the_environment(server: ServerThread, shim: Path) -> None:
    cp = subprocess.run(
        [sys.executable, "-m", "stack.cli", "run", "--socket", server.path, "--",
         sys.executable, "-c",
         "import os, socket; s = socket.socket(); print(os.environ['TCPLAB_SOCKET']);"
         "print(os.environ['LD_PRELOAD']); print(s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE))"],
        capture_output=True, text=True, timeout=60, cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)})
    out = cp.stdout.splitlines()
    assert out[0] == server.path and out[1].endswith("libsocketoverride.so"), cp.stderr
    assert out[2] == str(int(socket.SOCK_STREAM))
    cp = subprocess.run([sys.executable, "-m", "stack.cli", "run", "--", "/nonexistent/prog"],
                        capture_output=True, text=True, timeout=60, cwd=str(REPO),
                        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert cp.returncode == 127 and "command not found" in cp.stderr


@needs_shim
def test_threads_share_the_control_connection(server: ServerThread, shim: Path) -> None:
    cp = run_shimmed(server.path, py("""
        import socket, threading
        errors = []
        def worker(n):
            try:
                l = socket.socket(); l.bind(("0.0.0.0", 7500 + n)); l.listen(4)
                for _ in range(20):
                    c = socket.create_connection(("10.0.0.2", 7500 + n), timeout=5)
                    s, _ = l.accept()
                    assert s.getpeername() == c.getsockname()
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    assert c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
                    c.close(); s.close()
            except Exception as e:
                errors.append(repr(e))
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        print("ok" if not errors else errors[:3])
    """), timeout=60)
    assert cp.stdout.strip() == "ok", cp.stdout + cp.stderr


@needs_shim
def test_c_programs_with_the_asan_shim(server: ServerThread, shim: Path) -> None:
    """The AddressSanitizer build of the shim carries the C examples without a report."""
    libasan = subprocess.run(["cc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
    if not os.path.isabs(libasan) or not os.path.exists(libasan):
        pytest.skip("libasan is not installed")
    subprocess.run(["make", "-s", "-C", str(SHIM_DIR), "libsocketoverride-asan.so"],
                   check=True, timeout=300)
    env = shim_env(server.path, LD_PRELOAD=f"{libasan} {SHIM_DIR / 'libsocketoverride-asan.so'}",
                   ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=99")
    srv = subprocess.Popen([str(SHIM_DIR / "examples/epoll_server"), "7600", "2"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert srv.stdout is not None
        assert srv.stdout.readline().strip() == "listening 7600"
        for args in (["10.0.0.2", "7600", "500000"], ["-b", "10.0.0.2", "7600", "10"]):
            cp = subprocess.run([str(SHIM_DIR / "examples/nbconnect"), *args], env=env,
                                capture_output=True, text=True, timeout=60)
            assert cp.returncode == 0 and "ERROR: AddressSanitizer" not in cp.stderr, cp.stderr
        cp = subprocess.run([str(SHIM_DIR / "examples/nbconnect"), "10.0.0.2", "9"], env=env,
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 3 and "Sanitizer" not in cp.stderr, cp.stderr
        out, err = srv.communicate(timeout=30)
        assert srv.returncode == 0 and "Sanitizer" not in err, err
    finally:
        srv.kill()
        srv.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="the pre-forked workers setuid(nobody)")
def test_issue11_programs_with_the_asan_shim(server: ServerThread, shim: Path) -> None:
    """The new paths under AddressSanitizer: a pre-forked server whose workers drop
    privileges (ADOPT at fork, accept records), AF_INET6 listener and v4-mapped
    client (address translation)."""
    libasan = subprocess.run(["cc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
    if not os.path.isabs(libasan) or not os.path.exists(libasan):
        pytest.skip("libasan is not installed")
    subprocess.run(["make", "-s", "-C", str(SHIM_DIR), "libsocketoverride-asan.so"],
                   check=True, timeout=300)
    # nobody cannot reach the socket file (pytest's directories are 0700)
    assert not all(os.stat(d).st_mode & 0o001 for d in Path(server.path).parents)
    env = shim_env(server.path, LD_PRELOAD=f"{libasan} {SHIM_DIR / 'libsocketoverride-asan.so'}",
                   ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=99")
    tests = SHIM_DIR / "tests"
    pre = subprocess.Popen([str(tests / "prefork_server"), "7610", "2", "setuid"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    v6 = subprocess.Popen([str(tests / "dualstack"), "listen", "7611", "0"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert pre.stdout is not None and v6.stdout is not None
        assert sorted(pre.stdout.readline().split()[0] for _ in range(3)) == \
            ["listening", "worker", "worker"]
        while "listening" not in v6.stdout.readline():
            pass
        for port, want in (("7610", "reply served"), ("7611", "reply ping")):
            cp = subprocess.run([str(tests / "dualstack"), "connect", "::ffff:10.0.0.2", port],
                                env=env, capture_output=True, text=True, timeout=60)
            assert cp.returncode == 0 and "Sanitizer" not in cp.stderr, cp.stdout + cp.stderr
            assert cp.stdout.splitlines()[-1].startswith(want), cp.stdout
            if port == "7610":  # the worker's control calls went through its ADOPT
                assert "uid 65534" in cp.stdout and "nodelay ok" in cp.stdout, cp.stdout
        out, err = v6.communicate(timeout=30)
        assert v6.returncode == 0 and "Sanitizer" not in err, err
        assert "accepted family 10 len 28 addr ::ffff:10.0.0.2" in out, out
        pre.send_signal(signal.SIGTERM)
        out, err = pre.communicate(timeout=30)
        assert "Sanitizer" not in err, err
    finally:
        for proc in (pre, v6):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _asan_env(path: str) -> dict[str, str]:
    libasan = subprocess.run(["cc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
    if not os.path.isabs(libasan) or not os.path.exists(libasan):
        pytest.skip("libasan is not installed")
    subprocess.run(["make", "-s", "-C", str(SHIM_DIR), "libsocketoverride-asan.so"],
                   check=True, timeout=300)
    return shim_env(path, LD_PRELOAD=f"{libasan} {SHIM_DIR / 'libsocketoverride-asan.so'}",
                    ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=99")


@needs_shim
def test_ip_pktinfo_fields_with_the_asan_shim(server: ServerThread, shim: Path) -> None:
    """shim/tests/pktinfo_bind checks every field of IP_PKTINFO and IPV6_PKTINFO
    (ifindex = the server's interface, spec_dst = addr = the destination), MSG_CTRUNC,
    IP_PKTINFO off, and sendmsg's IP_PKTINFO source (ours sent; another EINVAL; no such
    interface ENODEV), under AddressSanitizer."""
    env = _asan_env(server.path)
    cp = subprocess.run([str(SHIM_DIR / "tests/pktinfo_bind"), "pktinfo", "10.0.0.2", "7620",
                         str(server.server.ifindex)], env=env, capture_output=True, text=True,
                        timeout=60)
    assert cp.returncode == 0 and cp.stdout.strip() == "ok", cp.stdout + cp.stderr
    assert "Sanitizer" not in cp.stderr, cp.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_privileged_ports_need_root_with_the_asan_shim(shim: Path) -> None:
    """Root binds TCP 80 and UDP 53; a process that becomes nobody and then makes its
    first socket reaches the daemon (socket file 0666), binds 8081 and port 0, and gets
    EACCES for 81 and 82 (below net.ipv4.ip_unprivileged_port_start), as on Linux."""
    folder = Path(tempfile.mkdtemp(prefix="tl-bind-", dir="/tmp"))
    folder.chmod(0o755)  # (pytest's tmp_path lies below a 0700 folder)
    srv = ServerThread(str(folder / "stack.sock")).start()
    try:
        env = _asan_env(srv.path)
        cp = subprocess.run([str(SHIM_DIR / "tests/pktinfo_bind"), "bind"], env=env,
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0 and cp.stdout.strip() == "ok", cp.stdout + cp.stderr
        assert "Sanitizer" not in cp.stderr, cp.stderr
        # not root, but holding CAP_NET_BIND_SERVICE (setpriv's ambient set, as systemd's
        # AmbientCapabilities= gives a service): allowed, as on Linux
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is not installed")
        prog = [str(SHIM_DIR / "tests/pktinfo_bind"), "bindport", "83"]
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        for extra, want in (([], "uid 65534 bind 83: EACCES"),
                            (["--inh-caps=+net_bind_service",
                              "--ambient-caps=+net_bind_service"], "uid 65534 bind 83: ok")):
            cp = subprocess.run([*nobody, *extra, *prog], env=env, capture_output=True,
                                text=True, timeout=60)
            assert cp.stdout.strip() == want and "Sanitizer" not in cp.stderr, \
                cp.stdout + cp.stderr
    finally:
        srv.stop()
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------ by hand

if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        srv = ServerThread(sys.argv[2]).start()
        print(f"serving the fake layer on {sys.argv[2]}; Ctrl-C stops", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(1)
                print(json.dumps(srv.call(lambda: dict(srv.server.stats))), flush=True)
        srv.stop()
    else:
        print("usage: test_ipc_server.py serve PATH")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
def test_one_user_cannot_take_every_client_slot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-root user holds at most MAX_CLIENTS_PER_UID control connections; the
    next is refused (and counted), while root still gets in."""
    import stack.ipc.server as server_module

    monkeypatch.setattr(server_module, "MAX_CLIENTS_PER_UID", 2)
    # pytest's tmp_path lies below a 0700 folder: use one the other user can reach.
    folder = Path(tempfile.mkdtemp(prefix="tl-uid-", dir="/tmp"))
    folder.chmod(0o755)
    srv = ServerThread(str(folder / "stack.sock")).start()
    children = []
    try:
        os.chmod(srv.path, 0o666)
        script = (
            "import os, socket, sys, time\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
            f"s.connect({srv.path!r})\n"
            "print('connected', flush=True)\n"
            "sys.stdin.read()\n"
        )
        for _ in range(3):
            child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "connected"
            children.append(child)
        _wait_for(lambda: srv.call(lambda: srv.server.stats.get("clients_refused_per_uid")) == 1)
        assert srv.call(lambda: srv.server._per_uid[65534]) == 2
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as root_client:
            root_client.connect(srv.path)  # uid 0 is not limited
            _wait_for(lambda: srv.call(lambda: srv.server._per_uid[0]) == 1)
    finally:
        for child in children:
            if child.stdin is not None:
                child.stdin.close()
            child.wait(10)
        srv.stop()
        shutil.rmtree(folder, ignore_errors=True)
