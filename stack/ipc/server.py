"""The daemon side of the shim protocol (docs/shim-protocol.md).

Each socket a shimmed program creates is a socketpair made here: the program gets one end
("A", bound to an abstract name ``\\0tcplab-T-...`` / ``-U-...`` so the shim can recognise
it in any process), this server keeps the other ("B") and pumps bytes between B and the
stack's TcpSocket/UdpSocket. Control requests arrive on SOCK_SEQPACKET connections at
``path``, each with the program's end of the socket attached (SCM_RIGHTS); the socket
is found by that fd's inode, so a process can only act on sockets it holds.

Conventions that make kernel semantics come out right (all explained in the spec):

* An unconnected or listening TCP socket keeps *filler* bytes queued from A to B, enough
  that A polls unwritable: a non-blocking connect becomes writable exactly when the
  handshake ends (the filler is drained) or fails (B is closed).
* A connected TCP socket keeps one *sentinel* byte at the head of B's receive queue and
  reads past it with SO_PEEK_OFF: closing B then makes the kernel report ECONNRESET on
  A (a reset, a failed connect, or this daemon dying). A graceful end drains it first.
* A listening socket's stream carries one ACCEPT record per waiting connection, the
  connection's end attached (SCM_RIGHTS), so accept is the program's own recvmsg (no
  control call: it works after setuid, chroot or closefrom).
* A fork hands the child a control connection of its own (ADOPT), made by the parent.
* The program end of a connected TCP socket gets a 1 MiB send buffer: the sentinel pins
  the last skb, and a sendfile/splice skb holds its whole 64 KiB charged to A.
* UDP datagrams go to A as records whose source address rides in SCM_CREDENTIALS
  (uid = IPv4 address, gid = CRED_MARK | port; needs CAP_SETUID/CAP_SETGID). To a socket
  that asked for IP_PKTINFO / IPV6_RECVPKTINFO each datagram also carries (SCM_RIGHTS) a
  small sealed file holding a PKTINFO record: where it was sent, and the interface; a
  datagram from an IPv6 source (128 bits: no uid holds them) carries one too, its `src`
  the source address and port.
* An AF_INET6 program socket is an AF_INET6 stack socket (SOCKET carries the family):
  native IPv6 and v4-mapped addresses go to the stack as they are; replies name IPv6 ends
  with family 10 and IPv4 ends with family 2 (the shim shows those v4-mapped).
* Any user may make sockets (the socket file is 0666, as the kernel lets anyone make
  sockets); binding a port below net.ipv4.ip_unprivileged_port_start takes root or
  CAP_NET_BIND_SERVICE, checked on each BIND from the caller's credentials at that
  moment (SCM_CREDENTIALS, verified by the kernel).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import fcntl
import grp
import json
import logging
import os
import resource
import secrets
import select
import socket
import stat
import struct
import termios
import time
import zlib
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stack.ipc import protocol as p
from stack.observe.events import EventBudget, EventLog
from stack.wire.ipv6 import unmapped

log = logging.getLogger("tcplab.ipc")

SO_PEEK_OFF = 42  # not in Python's socket module
MSG_FASTOPEN = 0x20000000  # linux/socket.h (not in Python's socket module)
CRED_MARK = 0x54430000
CHUNK = 256 * 1024
MAX_CLIENTS = 1024
# Control connections one (non-root) user may hold: the shim keeps one per process, so
# this is how many processes of one user can use the stack at once. Without it one user
# could take every slot and lock the others out.
MAX_CLIENTS_PER_UID = 256
IPC_EVENTS_PER_SECOND = 10  # `ipc` events per kind, after a burst of IPC_EVENT_BURST
IPC_EVENT_BURST = 20
MAX_MESSAGES_PER_WAKEUP = 64
ACCEPT_PAUSE = 0.2  # seconds without accepting after EMFILE/ENFILE (no busy loop)
MAX_CLIENT_BACKLOG = 1 << 20  # queued reply bytes before a client that does not read is dropped
TOMBSTONES = 4096
LISTENER_SNDBUF = 1 << 20  # room for ~1300 "a connection waits" bytes
# The send buffer of a connected TCP socket's program end (A), asked with SO_SNDBUFFORCE
# (the kernel doubles it: 1 MiB). The sentinel pins the last skb A sent (one of its bytes
# stays queued in B); a sendfile/splice skb holds up to 16 borrowed pages (64 KiB) whose
# whole length stays charged to A until the skb is freed, and AF_UNIX polls writable only
# while that charge is at most a quarter of A's send buffer (53 KiB by default): with the
# default, a non-blocking sendfile stalled for good (docs/shim-protocol.md 5.4).
DATA_SNDBUF = 1 << 19
SO_SNDBUFFORCE = 32
# The shim's marks on a program end's SO_PRIORITY (shim/shim.c): 0 AF_INET, 4 AF_INET6,
# 5 AF_INET6 with IPV6_V6ONLY; LISTEN turns them into 1, 2, 3 ("listening").
LISTEN_MARKS = {0: 1, 4: 2, 5: 3}
NAME_PREFIX = b"\0tcplab-"
# IP_PKTINFO and IPV6_RECVPKTINFO: which PKTINFO want bit each option sets (ip(7), ipv6(7))
IP_PKTINFO = 8
IP_PKTOPTIONS = 9
IPV6_RECVPKTINFO = 49
PKTINFO_OPTIONS = {
    (socket.IPPROTO_IP, IP_PKTINFO): p.PKTINFO_WANT_IP,
    (socket.IPPROTO_IPV6, IPV6_RECVPKTINFO): p.PKTINFO_WANT_IPV6,
}
PKTINFO_FILES = 64  # distinct PKTINFO files kept (one per destination, interface, wants)
CAP_NET_BIND_SERVICE = 10
UNPRIVILEGED_PORT_START = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
# A control record's ancillary room: up to 4 descriptors and the sender's credentials.
CONTROL_ANC = socket.CMSG_SPACE(4 * 4) + socket.CMSG_SPACE(12)

# Socket options that the stack does not implement but that are harmless to accept: they
# are remembered (getsockopt returns them, a loopback hand-off replays them) and ignored.
SOFT_OPTIONS = {
    (socket.IPPROTO_TCP, 3),  # TCP_CORK
    (socket.IPPROTO_TCP, 9),  # TCP_DEFER_ACCEPT
    (socket.IPPROTO_TCP, 12),  # TCP_QUICKACK
    (socket.IPPROTO_TCP, 18),  # TCP_USER_TIMEOUT
    (socket.IPPROTO_TCP, 25),  # TCP_NOTSENT_LOWAT
    (socket.SOL_SOCKET, 47),  # SO_MAX_PACING_RATE
    (socket.SOL_SOCKET, socket.SO_REUSEPORT),
    (socket.SOL_SOCKET, socket.SO_BROADCAST),
    (socket.SOL_SOCKET, socket.SO_PRIORITY),
    (socket.SOL_SOCKET, socket.SO_OOBINLINE),
    # IPv6-level options of an AF_INET6 socket (the shim sends them only for those;
    # the stack carries its IPv4 peers, to which they do not apply)
    (socket.IPPROTO_IPV6, 16),  # IPV6_UNICAST_HOPS
    (socket.IPPROTO_IPV6, 23),  # IPV6_MTU_DISCOVER
    (socket.IPPROTO_IPV6, 25),  # IPV6_RECVERR
    (socket.IPPROTO_IPV6, 49),  # IPV6_RECVPKTINFO
    (socket.IPPROTO_IPV6, 66),  # IPV6_RECVTCLASS
    (socket.IPPROTO_IPV6, 67),  # IPV6_TCLASS
}
TCP_INFO = 11
# struct tcp_info's tcpi_options bits (linux/tcp.h).
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE, TCPI_OPT_ECN, TCPI_OPT_ECN_SEEN = 1, 2, 4, 8, 16
TCP_CONGESTION = 13
# Options whose value is bytes whatever its length (SO_LINGER: struct linger;
# TCP_CONGESTION: the algorithm's name, "bbr" is 3 bytes).
BYTE_OPTIONS = frozenset({(socket.SOL_SOCKET, socket.SO_LINGER), (socket.IPPROTO_TCP, TCP_CONGESTION)})
_TCP_STATES = {
    "ESTABLISHED": 1, "SYN-SENT": 2, "SYN-RECEIVED": 3, "FIN-WAIT-1": 4, "FIN-WAIT-2": 5,
    "TIME-WAIT": 6, "CLOSED": 7, "CLOSE-WAIT": 8, "LAST-ACK": 9, "LISTEN": 10, "CLOSING": 11,
}  # fmt: skip


class SocketLayerLike(Protocol):
    """What the server needs of stack.sockets.SocketLayer."""

    @property
    def address(self) -> str: ...
    @property
    def address6(self) -> str | None: ...

    def tcp_socket(self, family: int = socket.AF_INET) -> Any: ...
    def udp_socket(self, family: int = socket.AF_INET) -> Any: ...
    def all_sockets(self) -> list[Any]: ...


def _oserr(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _raise_fd_limit() -> None:
    """Each shimmed socket costs the daemon one descriptor: allow as many as we may."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _outq(b: socket.socket) -> int:
    """Bytes of memory B's sent skbs still hold (unread by the program's end)."""
    buf = fcntl.ioctl(b.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return int(struct.unpack("=i", buf)[0])


class _Poller:
    """Edge-triggered epoll for the socketpair ends, driven by the asyncio loop (the
    epoll fd is itself readable while it has events). Edge-triggering is what lets a B
    end keep its sentinel or filler queued without looking readable forever."""

    MASK = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ep = select.epoll()
        self.handlers: dict[int, Callable[[int], None]] = {}
        loop.add_reader(self.ep.fileno(), self._dispatch)

    def register(self, fd: int, handler: Callable[[int], None]) -> None:
        self.handlers[fd] = handler
        self.ep.register(fd, self.MASK)

    def unregister(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self.ep.unregister(fd)

    def _dispatch(self) -> None:
        try:
            events = self.ep.poll(0, 256)
        except InterruptedError:
            return
        for fd, ev in events:
            handler = self.handlers.get(fd)
            if handler is not None:
                handler(ev)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.ep.fileno())
        self.ep.close()
        self.handlers.clear()


@dataclass
class _Tombstone:
    """What is left of a socket whose B end is closed while the program may still hold
    its end: enough for SO_ERROR, getsockname and getpeername to answer."""

    kind: str
    local: tuple[str, int] | None
    remote: tuple[str, int] | None
    error: int = 0
    listener: bool = False


@dataclass(eq=False)
class _PortGroup:
    """Sockets of one user that bound the same address and port with SO_REUSEPORT
    (several listening processes on one port). The first one's stack socket holds the
    port and listens for all; each connection goes to one listening member, chosen by a
    hash of the peer's address and port (as Linux does), or the next with room."""

    key: tuple[str, int]
    sock: Any
    uid: int
    members: list[_Entry] = field(default_factory=list)
    pending: deque[Any] = field(default_factory=deque)


@dataclass(eq=False)
class _Entry:
    key: tuple[int, int]
    kind: str  # "tcp" | "udp"
    sock: Any
    b: socket.socket
    pid: int = 0
    phase: str = "fresh"  # tcp: fresh connecting connected listening shut-listener; udp: udp
    filler: int = 0  # filler bytes queued in B (tcp before connected)
    bound_ip: str | None = None  # the address given to bind(), None if never bound
    options: dict[tuple[int, int], bytes] = field(default_factory=dict)
    soft: dict[tuple[int, int], bytes] = field(default_factory=dict)
    # connected tcp
    out: memoryview | None = None
    app_eof: bool = False  # the program shut down writing (EOF read on B)
    app_reset: bool = False  # the program closed with unread data (ECONNRESET on B)
    app_rd_closed: bool = False  # the program cannot read any more (EPIPE writing B)
    tcp_eof: bool = False  # the peer's FIN was passed on (B shut for writing)
    shut_wr: bool = False  # the program called shutdown(SHUT_WR or SHUT_RDWR) on it
    hup: bool = False
    # listening tcp: connections taken from the stack, not yet written to the stream
    pending: deque[Any] = field(default_factory=deque)
    backlog: int = 0
    record_size: int = 0  # what one unread accept record holds of B's send memory
    uid: int = -1  # of the process that made it (SO_REUSEPORT groups are per user)
    group: _PortGroup | None = None
    # udp
    dgram: tuple[bytes, tuple[str, int]] | None = None
    pktinfo: int = 0  # PKTINFO want bits (IP_PKTINFO, IPV6_RECVPKTINFO set on it)
    scheduled: bool = False
    dead: bool = False


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    pid: int
    uid: int = -1
    out: deque[tuple[bytes, int]] = field(default_factory=deque)  # (message, fd or -1)
    out_bytes: int = 0
    writing: bool = False
    closed: bool = False
    # False for a connection handed in through a listener (a process that could not
    # open the socket file): it may act on sockets it holds, not make new ones (SOCKET)
    # or list everyone's (LIST).
    may_create: bool = True
    # (pid, uid, gid) that came with the request being served (SCM_CREDENTIALS: the
    # kernel checks them against the sender's own ids), None if none came
    creds: tuple[int, int, int] | None = None


class IpcServer:
    """Serves the shim's control protocol on a Unix socket and pumps socket data."""

    def __init__(self, sockets: SocketLayerLike, path: str, *, group: str | None = None,
                 events: EventLog | None = None, ifindex: int = 0) -> None:
        self.layer = sockets
        self.path = path
        self.group = group
        # The interface index PKTINFO reports: the stack's interface, the TUN device,
        # by its index in this (the daemon's) namespace; loopback's if none is known.
        self.ifindex = ifindex or self._loopback_index()
        self._pktinfo_files: OrderedDict[tuple[str, int, int, str, int], int] = OrderedDict()
        self._per_uid: Counter[int] = Counter()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._listen: socket.socket | None = None
        self._file_id: tuple[int, int] | None = None
        self._poller: _Poller | None = None
        self._clients: dict[int, _Client] = {}
        self._entries: dict[tuple[int, int], _Entry] = {}
        self._by_sock: dict[int, _Entry] = {}
        self._tombstones: OrderedDict[tuple[int, int], _Tombstone] = OrderedDict()
        self._groups: dict[tuple[str, int], _PortGroup] = {}
        self._token = secrets.token_hex(4)
        self._counter = 0
        self._pid = os.getpid()
        self._creds_ok = True
        self._scratch = bytearray(CHUNK)
        self.stats: dict[str, int] = {}
        # Every refusal, dropped client and error counted in `stats` is also an `ipc`
        # event, rate-limited per kind (a local flood must not grow the log unbounded).
        self._events = (
            EventBudget(events, IPC_EVENTS_PER_SECOND, IPC_EVENT_BURST)
            if events is not None and events.enabled else None
        )  # fmt: skip
        self.closed = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind the Unix socket (mode 0660, optional group). A socket file left by a
        daemon that died is removed; one with a live daemon behind it is an error."""
        self.loop = asyncio.get_running_loop()
        _raise_fd_limit()
        path = self.path
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        if os.path.lexists(path):
            self._remove_stale(path)
        gid = self._group_id(self.group) if self.group is not None else None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            tmp = f"{path}.{os.getpid()}.tmp"
            if len(os.fsencode(tmp)) >= 108:
                tmp = path
            with contextlib.suppress(FileNotFoundError):
                if tmp != path:
                    os.unlink(tmp)
            sock.bind(tmp)
            # Every user may make sockets, as with the kernel's (privileged ports are
            # checked at BIND); --socket-group narrows that to one group.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # inherited at accept
            try:
                os.chmod(tmp, 0o660 if gid is not None else 0o666)
                if gid is not None:
                    os.chown(tmp, -1, gid)
                sock.listen(128)
                if tmp != path:
                    os.rename(tmp, path)  # atomic: never a moment with looser permissions
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            st = os.stat(path)
            self._file_id = (st.st_dev, st.st_ino)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._listen = sock
        self._poller = _Poller(self.loop)
        self.loop.add_reader(sock.fileno(), self._on_accept)

    @staticmethod
    def _loopback_index() -> int:
        try:
            return socket.if_nametoindex("lo")
        except OSError:
            return 1

    @staticmethod
    def _group_id(group: str) -> int:
        if group.isdigit():
            return int(group)
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            raise OSError(errno.EINVAL, f"no such group: {group}") from None

    @staticmethod
    def _remove_stale(path: str) -> None:
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        probe.settimeout(2.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("removing stale socket %s", path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        except OSError as exc:
            if exc.errno != errno.EPROTOTYPE:
                raise
        finally:
            probe.close()
        raise OSError(errno.EADDRINUSE, f"a stack daemon is already listening on {path}")

    def close(self) -> None:
        """Close everything and remove the socket file (if it is still ours)."""
        if self.closed:
            return
        self.closed = True
        if self._listen is not None:
            if self.loop is not None:
                with contextlib.suppress(Exception):
                    self.loop.remove_reader(self._listen.fileno())
            self._listen.close()
            self._listen = None
        for client in list(self._clients.values()):
            self._drop_client(client)
        for entry in list(self._entries.values()):
            self._kill(entry, errno.ECONNRESET)
        while self._pktinfo_files:
            os.close(self._pktinfo_files.popitem()[1])
        if self._poller is not None:
            self._poller.close()
            self._poller = None
        if self._file_id is not None:
            try:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == self._file_id:
                    os.unlink(self.path)
            except OSError:
                pass
            self._file_id = None

    def _count(self, what: str, **fields: object) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1
        if self._events is not None:
            self._events.emit(what, time.monotonic(), "ipc", None, what=what, **fields)

    # -------------------------------------------------------------------- clients

    def _on_accept(self) -> None:
        assert self._listen is not None
        for _ in range(64):
            try:
                conn, _ = self._listen.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends
                # The pending connection keeps the listening socket readable: stop
                # watching it for a while instead of spinning (and logging) at 100% CPU.
                self._count("accept_errors")
                if self.stats["accept_errors"] % 100 == 1:
                    log.warning("accepting a shim connection: %s (pausing %.1f s)", exc,
                                ACCEPT_PAUSE)
                assert self.loop is not None
                self.loop.remove_reader(self._listen.fileno())
                self.loop.call_later(ACCEPT_PAUSE, self._resume_accept)
                return
            pid, uid = 0, -1
            with contextlib.suppress(OSError):
                cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                pid, uid, _gid = struct.unpack("=iII", cred)
            self._admit(conn, pid, uid)

    def _admit(self, conn: socket.socket, pid: int, uid: int, may_create: bool = True) -> bool:
        """Serve a new control connection, within the limits (else close it)."""
        if len(self._clients) >= MAX_CLIENTS:
            self._count("clients_refused", limit=MAX_CLIENTS)
            conn.close()
            return False
        if uid > 0 and self._per_uid[uid] >= MAX_CLIENTS_PER_UID:
            self._count("clients_refused_per_uid", uid=uid, pid=pid, limit=MAX_CLIENTS_PER_UID)
            conn.close()
            return False
        conn.setblocking(False)
        with contextlib.suppress(OSError):  # each request's credentials (bind checks them)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        client = _Client(conn, pid, uid, may_create=may_create)
        self._per_uid[uid] += 1
        self._clients[conn.fileno()] = client
        assert self.loop is not None
        self.loop.add_reader(conn.fileno(), self._on_client_readable, client)
        return True

    def _resume_accept(self) -> None:
        if self._listen is not None and self.loop is not None and not self.closed:
            self.loop.add_reader(self._listen.fileno(), self._on_accept)

    def _drop_client(self, client: _Client, why: str = "") -> None:
        if client.closed:
            return
        client.closed = True
        self._per_uid[client.uid] -= 1
        if self._per_uid[client.uid] <= 0:
            del self._per_uid[client.uid]
        if why:
            self._count(f"client_dropped_{why}", pid=client.pid, uid=client.uid)
            log.debug("dropping shim client pid %d: %s", client.pid, why)
        fd = client.sock.fileno()
        self._clients.pop(fd, None)
        if self.loop is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(fd)
            if client.writing:
                with contextlib.suppress(Exception):
                    self.loop.remove_writer(fd)
        for _, out_fd in client.out:
            if out_fd >= 0:
                os.close(out_fd)
        client.out.clear()
        client.sock.close()

    def _on_client_readable(self, client: _Client) -> None:
        for _ in range(MAX_MESSAGES_PER_WAKEUP):
            if client.closed:
                return
            try:
                data, anc, flags, _ = client.sock.recvmsg(p.MAX_MESSAGE + 1, CONTROL_ANC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop_client(client, "recv_error")
                return
            fds = self._take_fds(anc)
            client.creds = self._take_creds(anc)
            try:
                if not data and not fds:
                    self._drop_client(client)  # end of file: the process closed it
                    return
                if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                    self._drop_client(client, "oversized")
                    return
                try:
                    req = p.decode_request(data, len(fds))
                except p.ProtocolError as exc:
                    log.debug("bad request from pid %d: %s", client.pid, exc)
                    self._drop_client(client, f"bad_{exc.reason}")
                    return
                try:
                    reply, out_fd = self._dispatch(req, fds[0] if fds else -1, client)
                except Exception:
                    log.exception("internal error handling %s", req.op.name)
                    self._count("internal_errors")
                    reply, out_fd = p.Reply(req.op, req.seq, errno.EIO), -1
            finally:
                for fd in fds:
                    os.close(fd)
            if reply is not None:
                self._send(client, reply, out_fd)

    @staticmethod
    def _take_creds(anc: list[tuple[int, int, bytes]]) -> tuple[int, int, int] | None:
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS \
                    and len(payload) >= 12:
                pid, uid, gid = struct.unpack_from("=iII", payload)
                return pid, uid, gid
        return None

    @staticmethod
    def _take_fds(anc: list[tuple[int, int, bytes]]) -> list[int]:
        fds: list[int] = []
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                arr = array.array("i")
                arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
                fds.extend(arr)
        return fds

    def _send(self, client: _Client, reply: p.Reply, fd: int, *, bounded: bool = True) -> None:
        """Send a reply (and close our copy of the fd it carries once it is sent).

        `bounded=False` is for a listing the client asked for, which may be larger
        than the backlog a client that stops reading is allowed."""
        if client.closed:
            if fd >= 0:
                os.close(fd)
            return
        data = p.encode_reply(reply)
        client.out.append((data, fd))
        client.out_bytes += len(data)
        if bounded and client.out_bytes > MAX_CLIENT_BACKLOG:
            self._drop_client(client, "not_reading")
            return
        self._flush(client)

    def _flush(self, client: _Client) -> None:
        while client.out and not client.closed:
            data, fd = client.out[0]
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())] \
                if fd >= 0 else []
            try:
                client.sock.sendmsg([data], anc, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                if not client.writing and self.loop is not None:
                    client.writing = True
                    self.loop.add_writer(client.sock.fileno(), self._flush, client)
                return
            except OSError:
                self._drop_client(client, "send_error")
                return
            client.out.popleft()
            client.out_bytes -= len(data)
            if fd >= 0:
                os.close(fd)
        if client.writing and self.loop is not None and not client.closed:
            client.writing = False
            self.loop.remove_writer(client.sock.fileno())

    # ------------------------------------------------------------------- dispatch

    def _dispatch(self, req: p.Request, fd: int,
                  client: _Client) -> tuple[p.Reply | None, int]:
        rep = p.Reply(req.op, req.seq)
        if req.op in (p.Op.SOCKET, p.Op.LIST) and not client.may_create:
            rep.status = errno.EACCES
            return rep, -1
        if req.op is p.Op.SOCKET:
            return self._op_socket(req, rep, client)
        if req.op is p.Op.LIST:
            self._op_list(rep, client)
            return None, -1  # sent in chunks already
        if req.op is p.Op.ADOPT:
            self._op_adopt(rep, fd, client)
            return rep, -1
        try:
            st = os.fstat(fd)
        except OSError:
            rep.status = errno.EBADF
            return rep, -1
        key = (st.st_dev, st.st_ino)
        entry = self._entries.get(key) if stat.S_ISSOCK(st.st_mode) else None
        if entry is None:
            tomb = self._tombstones.get(key)
            if tomb is None:
                rep.status = errno.ECONNRESET if stat.S_ISSOCK(st.st_mode) else errno.ENOTSOCK
            else:
                self._op_tombstone(req, rep, tomb)
            return rep, -1
        handler = getattr(self, f"_op_{req.op.name.lower()}")
        try:
            out_fd = handler(req, rep, entry, fd, client)
        except OSError as exc:
            rep = p.Reply(req.op, req.seq, exc.errno or errno.EIO)
            out_fd = -1
        return rep, out_fd if out_fd is not None else -1

    # SOCKET -------------------------------------------------------------------

    def _new_pair(self, kind: str) -> tuple[socket.socket, socket.socket, tuple[int, int]]:
        stype = socket.SOCK_SEQPACKET if kind == "udp" else socket.SOCK_STREAM
        a, b = socket.socketpair(socket.AF_UNIX, stype | socket.SOCK_CLOEXEC)
        try:
            self._counter += 1
            letter = b"T" if kind == "tcp" else b"U"
            a.bind(NAME_PREFIX + letter + b"-%d-%s-%x" % (self._pid, self._token.encode(),
                                                          self._counter))
            if kind == "udp":
                # A: datagrams carry their source address as credentials (see _send_dgram).
                # B: every record from the program carries credentials, so a record
                # without any is end of file, not an empty datagram.
                a.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
                b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            b.setblocking(False)
            st = os.fstat(a.fileno())
        except BaseException:
            a.close()
            b.close()
            raise
        return a, b, (st.st_dev, st.st_ino)

    @staticmethod
    def _size_for_data(a: socket.socket) -> None:
        """Give a TCP socket's program end room for one pinned splice skb (DATA_SNDBUF);
        without CAP_NET_ADMIN the plain option (capped by wmem_max, ~416 KiB) still does."""
        try:
            a.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, DATA_SNDBUF)
        except OSError:
            with contextlib.suppress(OSError):
                a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, DATA_SNDBUF)

    @staticmethod
    def _fill(a: socket.socket) -> int:
        """Queue filler from A to B until A polls unwritable; returns how many bytes."""
        poll = select.poll()
        poll.register(a.fileno(), select.POLLOUT)
        chunk = bytes(16384)
        total = 0
        while poll.poll(0):
            try:
                total += a.send(chunk, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
        return total

    def _register(self, entry: _Entry) -> None:
        self._entries[entry.key] = entry
        self._by_sock[id(entry.sock)] = entry
        entry.sock.on_change = lambda: self._schedule(entry)
        assert self._poller is not None
        self._poller.register(entry.b.fileno(), lambda ev: self._on_b_event(entry, ev))

    def _op_socket(self, req: p.Request, rep: p.Reply, client: _Client) -> tuple[p.Reply, int]:
        kind = "tcp" if req.kind == p.KIND_TCP else "udp"
        try:
            a, b, key = self._new_pair(kind)
        except OSError as exc:
            rep.status = exc.errno or errno.ENOMEM
            return rep, -1
        try:
            filler = self._fill(a) if kind == "tcp" else 0
            # The program's family (SOCKET carries it): an AF_INET6 socket is the stack's
            # AF_INET6 socket, dual-stack unless IPV6_V6ONLY (docs 5.9).
            family = socket.AF_INET6 if req.family == p.AF_INET6 else socket.AF_INET
            sock = self.layer.tcp_socket(family) if kind == "tcp" \
                else self.layer.udp_socket(family)
        except BaseException:
            a.close()
            b.close()
            raise
        uid = client.creds[1] if client.creds is not None else client.uid
        entry = _Entry(key, kind, sock, b, pid=client.pid, uid=uid, filler=filler,
                       phase="fresh" if kind == "tcp" else "udp")
        self._register(entry)
        return rep, a.detach()

    # socket-level ops ------------------------------------------------------------

    @staticmethod
    def _reuseport(e: _Entry) -> bool:
        key = (socket.SOL_SOCKET, socket.SO_REUSEPORT)
        return any(e.soft.get(key, b"")) or any(e.options.get(key, b""))

    def _op_bind(self, req: p.Request, rep: p.Reply, e: _Entry, fd: int, c: _Client) -> None:
        assert req.addr is not None
        if req.addr.port and req.addr.port < self._unprivileged_port_start() \
                and not self._may_bind_privileged(c.creds):
            raise _oserr(errno.EACCES)  # as inet_bind(): CAP_NET_BIND_SERVICE, ip(7)
        bound_ip = unmapped(req.addr.ip)
        key = (bound_ip, req.addr.port)
        group = self._groups.get(key) if e.kind == "tcp" and req.addr.port else None
        if group is not None and self._reuseport(e) and group.uid == e.uid \
                and e.sock.local is None and e.group is None:
            group.members.append(e)  # SO_REUSEPORT: share the group's stack socket
            e.group = group
            e.bound_ip = bound_ip
            return
        try:
            e.sock.bind(req.addr.ip, req.addr.port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or not self._reap_closed(e.kind, req.addr.port):
                raise
            e.sock.bind(req.addr.ip, req.addr.port)
        e.bound_ip = bound_ip
        if e.kind == "tcp" and req.addr.port and self._reuseport(e) and group is None:
            e.group = _PortGroup(key, e.sock, e.uid, [e])
            self._groups[key] = e.group

    @staticmethod
    def _unprivileged_port_start() -> int:
        """net.ipv4.ip_unprivileged_port_start of the daemon's namespace (the stack's
        ports are that namespace's, in the sense that it is where the TUN lives)."""
        try:
            with open(UNPRIVILEGED_PORT_START, encoding="ascii") as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return 1024

    @staticmethod
    def _may_bind_privileged(creds: tuple[int, int, int] | None) -> bool:
        """Root, or a process holding CAP_NET_BIND_SERVICE, as the kernel asks. `creds`
        came with this very request, checked by the kernel: the uid is one of the
        sender's real, effective or saved uids (so one it can take at will), the pid its
        own. A non-root sender's capability is read from /proc; its uid must match, so a
        pid reused meanwhile by another user's process grants nothing."""
        if creds is None:
            return False
        pid, uid, _gid = creds
        if uid == 0:
            return True
        if pid <= 0:
            return False
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            uids = {int(x) for x in fields["Uid"].split()}
            cap_eff = int(fields["CapEff"].strip(), 16)
        except (OSError, KeyError, ValueError):
            return False
        return uid in uids and bool(cap_eff & (1 << CAP_NET_BIND_SERVICE))

    def _reap_closed(self, kind: str, port: int) -> bool:
        """Take now the hangups of the sockets holding `port` that their programs have
        already closed; True if one of them let the port go. Linux frees a port when
        close() returns, but the daemon hears of a close as EPOLLHUP on B, which the
        event loop may take after the program's next request (bind right after close:
        pg_createcluster's free-port probe, "find a free port" helpers)."""
        freed = False
        for other in list(self._entries.values()):
            local = other.sock.local if other.group is None else other.group.sock.local
            if other.kind != kind or other.dead or local is None or local[1] != port:
                continue
            poller = select.poll()
            poller.register(other.b, 0)  # POLLHUP and POLLERR are always reported
            if any(ev & (select.POLLHUP | select.POLLERR) for _fd, ev in poller.poll(0)):
                other.hup = True
                self._pump(other)  # what the event loop would do with it
                freed = freed or other.dead
        return freed

    def _op_adopt(self, rep: p.Reply, fd: int, client: _Client) -> None:
        """A new control connection, made by the shim before a fork for the child (so a
        child that drops privileges or chroots keeps a way to the daemon)."""
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                rep.status = errno.ENOTSOCK
                return
            conn = socket.socket(fileno=os.dup(fd))
        except OSError:
            rep.status = errno.EBADF
            return
        if conn.family != socket.AF_UNIX or conn.type != socket.SOCK_SEQPACKET:
            conn.close()
            rep.status = errno.EINVAL
            return
        if not self._admit(conn, client.pid, client.uid, client.may_create):
            rep.status = errno.EMFILE

    def _op_listen(self, req: p.Request, rep: p.Reply, e: _Entry, fd: int, c: _Client) -> None:
        if e.kind != "tcp":
            raise _oserr(errno.EOPNOTSUPP)
        if e.phase not in ("fresh", "listening"):
            raise _oserr(errno.EINVAL)
        backlog = min(max(req.backlog, 1), 4096)
        stack_sock = e.group.sock if e.group is not None else e.sock
        try:
            stack_sock.listen(backlog)
        except OSError as exc:
            local = stack_sock.local
            if exc.errno != errno.EADDRINUSE or local is None \
                    or not self._reap_closed("tcp", local[1]):
                raise
            stack_sock.listen(backlog)
        e.backlog = backlog
        if e.phase == "fresh":
            # From now on the socket's stream (B to A) carries one ACCEPT record per
            # waiting connection. The filler stays queued from A (a listening socket
            # never polls writable, as in Linux: the filler keeps A over the quarter of
            # its send buffer at which AF_UNIX polls writable, and below the whole, so a
            # shim can still hand in a control connection, see _take_offers), and A is
            # marked as listening where the shim looks (its SO_PRIORITY, docs 5.2).
            with socket.socket(fileno=os.dup(fd)) as a:
                family = a.getsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY)
                a.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY,
                             LISTEN_MARKS.get(family, LISTEN_MARKS[0]))
            e.b.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, e.filler)
            with contextlib.suppress(OSError):
                e.b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LISTENER_SNDBUF)
            e.phase = "listening"
        self._schedule(e)

    def _deliver(self, e: _Entry, child: Any) -> bool:
        """Write one ACCEPT record, with a new connected socket for `child`, on the
        listener's stream. False when the stream is full (the child stays pending)."""
        a, b, key = self._new_pair("tcp")
        try:
            self._size_for_data(a)
            a.send(b"\0")  # the sentinel
            b.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 1)
        except OSError:
            a.close()
            b.close()
            child.abort()
            return True
        local = child.local or (self.layer.address, 0)
        remote = child.remote or ("0.0.0.0", 0)
        record = p.encode_accept_record(p.Addr.of(*local), p.Addr.of(*remote))
        fds = array.array("i", [a.fileno()]).tobytes()
        try:
            e.b.sendmsg([record], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)],
                        socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        except (BlockingIOError, InterruptedError):
            a.close()
            b.close()
            return False
        finally:
            a.close()  # the record holds the program's end now
        entry = _Entry(key, "tcp", child, b, pid=e.pid, uid=e.uid, phase="connected")
        child.on_change = None
        self._register(entry)
        self._schedule(entry)
        return True

    def _op_connect(self, req: p.Request, rep: p.Reply, e: _Entry, fd: int, c: _Client) -> None:
        assert req.addr is not None
        if e.kind == "udp":
            if req.addr.family == p.AF_UNSPEC:
                e.sock.connect("0.0.0.0", 0)
            else:
                e.sock.connect(req.addr.ip, req.addr.port)
            return
        if req.addr.family == p.AF_UNSPEC:
            raise _oserr(errno.EAFNOSUPPORT)
        if e.phase == "connecting":
            raise _oserr(errno.EALREADY)
        if e.phase == "connected":
            raise _oserr(errno.EISCONN)
        if e.phase != "fresh":
            raise _oserr(errno.EINVAL)
        self._start_connect(e, fd, req.addr.ip, req.addr.port, None)
        rep.status = errno.EINPROGRESS

    def _start_connect(self, e: _Entry, fd: int, ip: str, port: int,
                       fastopen_data: bytes | None) -> None:
        if fastopen_data is None:
            e.sock.connect(ip, port)
        else:
            e.sock.sendto_fastopen(fastopen_data, ip, port)
        # The connection will carry data: a bigger send buffer for A (DATA_SNDBUF), and
        # filler topped up to match, so A stays unwritable until the handshake ends.
        with socket.socket(fileno=os.dup(fd)) as a:
            self._size_for_data(a)
            e.filler += self._fill(a)
        e.phase = "connecting"
        self._schedule(e)

    def _op_shutdown(self, req: p.Request, rep: p.Reply, e: _Entry, fd: int, c: _Client) -> None:
        how = req.how
        if e.phase == "listening":
            if how in (socket.SHUT_RD, socket.SHUT_RDWR):
                self._close_listener(e)
                e.phase = "shut-listener"
                with contextlib.suppress(OSError):
                    e.b.shutdown(socket.SHUT_WR)  # a blocked accept reads EOF: EINVAL
            return
        if e.kind == "tcp" and e.phase != "connected":
            raise _oserr(errno.ENOTCONN)
        if e.kind == "udp" and e.sock.remote is None:
            raise _oserr(errno.ENOTCONN)
        if e.kind == "tcp" and how in (socket.SHUT_RD, socket.SHUT_RDWR):
            with contextlib.suppress(OSError):
                e.sock.shutdown(socket.SHUT_RD)
        # Shutting the program's own end keeps the order right: B sees EOF after every
        # byte written before, and only then does the FIN go out.
        if e.kind == "tcp" and how in (socket.SHUT_WR, socket.SHUT_RDWR):
            e.shut_wr = True
        with socket.socket(fileno=os.dup(fd)) as a:
            a.shutdown(how)
        self._schedule(e)

    def _op_getsockname(self, req: p.Request, rep: p.Reply, e: _Entry, fd: int,
                        c: _Client) -> None:
        local = (e.group.sock if e.group is not None else e.sock).local
        if local is None:
            rep.addr = p.Addr(p.AF_INET, "0.0.0.0", 0)
            return
        # Like Linux: a socket bound to INADDR_ANY shows 0.0.0.0 until a connection
        # picks the local address.
        unconnected = e.phase in ("fresh", "listening", "shut-listener") or (
            e.kind == "udp" and e.sock.remote is None)
        ip = local[0]
        if unconnected and e.bound_ip != local[0]:
            ip = "0.0.0.0"
        remote = e.sock.remote
        if not unconnected and ip == "::" and remote is not None:
            # an AF_INET6 socket bound to `::` (or by connect) that has a peer: the
            # local address of the peer's family, as Linux shows it after connect
            ip = (self.layer.address6 or "::") if ":" in remote[0] else self.layer.address
        rep.addr = p.Addr.of(ip, local[1])

    def _op_getpeername(self, req: p.Request, rep: p.Reply, e: _Entry, fd: int,
                        c: _Client) -> None:
        remote = e.sock.remote
        if remote is None or (e.kind == "tcp" and e.phase != "connected"):
            raise _oserr(errno.ENOTCONN)
        rep.addr = p.Addr.of(*remote)

    def _op_getsockopt(self, req: p.Request, rep: p.Reply, e: _Entry, fd: int,
                       c: _Client) -> None:
        key = (req.level, req.name)
        if key in e.soft:
            value: int | bytes = e.soft[key]
        elif req.level == socket.IPPROTO_TCP and req.name == TCP_INFO and e.kind == "tcp":
            value = self._tcp_info(e)
        elif key == (socket.IPPROTO_IP, IP_PKTOPTIONS) and e.kind == "tcp":
            value = self._pktoptions(e)
        else:
            try:
                value = e.sock.getsockopt(req.level, req.name)
            except OSError as exc:
                if exc.errno == errno.ENOPROTOOPT and key in SOFT_OPTIONS:
                    value = 0
                else:
                    raise
        raw = struct.pack("=i", value) if isinstance(value, int) else bytes(value)
        rep.value = raw[: min(req.optlen, p.MAX_OPTVAL)]

    def _op_setsockopt(self, req: p.Request, rep: p.Reply, e: _Entry, fd: int,
                       c: _Client) -> None:
        key = (req.level, req.name)
        want = PKTINFO_OPTIONS.get(key) if e.kind == "udp" or key[0] == socket.IPPROTO_IP \
            else None
        if want is not None:  # kept here: each datagram (or IP_PKTOPTIONS) says where
            if not req.value:
                raise _oserr(errno.EINVAL)
            on = int.from_bytes(req.value[:4], "little") != 0
            e.pktinfo = (e.pktinfo | want) if on else (e.pktinfo & ~want)
            e.soft[key] = struct.pack("=i", int(on))
            if len(e.options) < p.MAX_DETACH_OPTIONS or key in e.options:
                e.options[key] = req.value
            return
        value: int | bytes = req.value
        if key in BYTE_OPTIONS:
            pass  # a string or a struct, never an int
        elif len(req.value) == 4:
            value = struct.unpack("=i", req.value)[0]
        elif len(req.value) < 4:
            # Linux takes short int options (a char is enough for booleans)
            value = int.from_bytes(req.value, "little") if req.value else 0
        try:
            e.sock.setsockopt(req.level, req.name, value)
        except OSError as exc:
            if exc.errno == errno.ENOPROTOOPT and key in SOFT_OPTIONS:
                e.soft[key] = req.value.ljust(4, b"\0")[:4] if isinstance(value, int) else req.value
            else:
                raise
        if len(e.options) < p.MAX_DETACH_OPTIONS or key in e.options:
            e.options[key] = req.value

    def _op_sendto(self, req: p.Request, rep: p.Reply, e: _Entry, fd: int, c: _Client) -> None:
        assert req.addr is not None
        if e.kind != "udp":
            # TCP: only sendto(..., MSG_FASTOPEN, addr) comes here: connect with the data
            # for the SYN (RFC 7413; stack/sockets.py `sendto_fastopen`), as Linux.
            if not req.msg_flags & MSG_FASTOPEN or req.addr.family == p.AF_UNSPEC:
                raise _oserr(errno.EOPNOTSUPP)
            if e.phase in ("connecting", "connected"):
                raise _oserr(errno.EISCONN if e.phase == "connected" else errno.EALREADY)
            if e.phase != "fresh":
                raise _oserr(errno.EINVAL)
            self._start_connect(e, fd, req.addr.ip, req.addr.port, bytes(req.payload))
            rep.sent = len(req.payload)
            return
        if req.src.family == p.AF_INET and req.src.ip not in ("0.0.0.0", self.layer.address) \
                or req.src.family == p.AF_INET6 and req.src.ip not in ("::", self.layer.address6):
            # IP_PKTINFO's ipi_spec_dst (IPV6_PKTINFO's ipi6_addr) must be an address of
            # this host: Linux's route lookup refuses any other source with EINVAL (ip(7))
            raise _oserr(errno.EINVAL)
        if req.src.family == p.AF_INET6 and req.src.ip != "::" \
                and ":" not in unmapped(req.addr.ip):
            raise _oserr(errno.EINVAL)  # an IPv6 source for an IPv4 datagram (ipv6(7))
        rep.sent = e.sock.sendto(req.payload, (req.addr.ip, req.addr.port))

    def _op_detach(self, req: p.Request, rep: p.Reply, e: _Entry, fd: int, c: _Client) -> None:
        if e.kind == "tcp" and e.phase != "fresh":
            raise _oserr(errno.EISCONN if e.phase in ("connecting", "connected") else errno.EINVAL)
        if e.kind == "udp" and e.sock.remote is not None:
            raise _oserr(errno.EISCONN)
        if e.bound_ip not in (None, "0.0.0.0", "::"):
            raise _oserr(errno.ENETUNREACH)  # bound to the stack's own address explicitly
        if e.sock.local is not None:
            rep.addr = p.Addr(p.AF_INET, "0.0.0.0", e.sock.local[1])
        else:
            rep.addr = p.NO_ADDR
        rep.options = [(lvl, name, val) for (lvl, name), val in e.options.items()]
        self._finish(e, tombstone=False)

    def _op_tombstone(self, req: p.Request, rep: p.Reply, t: _Tombstone) -> None:
        if req.op is p.Op.GETSOCKOPT:
            if (req.level, req.name) == (socket.SOL_SOCKET, socket.SO_ERROR):
                value, t.error = t.error, 0
            else:
                value = 0
            rep.value = struct.pack("=i", value)[: min(req.optlen, 4)]
        elif req.op is p.Op.SETSOCKOPT:
            pass
        elif req.op is p.Op.GETSOCKNAME:
            rep.addr = p.Addr.of(*(t.local or ("0.0.0.0", 0)))
        elif req.op is p.Op.GETPEERNAME:
            if t.remote is None or t.error:
                rep.status = errno.ENOTCONN
            else:
                rep.addr = p.Addr.of(*t.remote)
        elif req.op is p.Op.SHUTDOWN:
            rep.status = errno.ENOTCONN
        elif req.op is p.Op.SENDTO:
            rep.status = errno.ECONNRESET
        else:
            rep.status = t.error or errno.ECONNRESET

    def _op_list(self, rep: p.Reply, client: _Client) -> None:
        if client.out_bytes > MAX_CLIENT_BACKLOG:
            # One listing may exceed the backlog (it is sent unbounded, below), but a
            # client that asks again before reading it is not reading: without this,
            # LIST after LIST grows the queue without limit (~12 MB per 20,000).
            self._drop_client(client, "not_reading")
            return
        rows = []
        for sock in self.layer.all_sockets():
            try:
                row = dict(sock.info())
            except Exception:  # a socket's info() must not take the listing down
                continue
            entry = self._by_sock.get(id(sock))
            # Like ss(8): every socket is listed, the process only to its own user
            if entry is not None and entry.pid and client.uid in (0, entry.uid):
                row["pid"] = entry.pid
                with contextlib.suppress(OSError), open(
                        f"/proc/{entry.pid}/comm", encoding="utf-8", errors="replace") as f:
                    row["process"] = f.read().strip()
            rows.append(row)
        data = json.dumps(rows, default=str).encode()
        chunks = [data[i : i + p.MAX_LIST_CHUNK] for i in range(0, len(data), p.MAX_LIST_CHUNK)]
        for i, chunk in enumerate(chunks or [b""]):
            more = p.FLAG_MORE if i < len(chunks) - 1 else 0
            self._send(client, p.Reply(p.Op.LIST, rep.seq, 0, more, data=chunk), -1,
                       bounded=False)

    def _pktoptions(self, e: _Entry) -> bytes:
        """IP_PKTOPTIONS of a TCP socket (ip(7)), as Linux builds it: with IP_PKTINFO set,
        one IP_PKTINFO control message (struct cmsghdr, then struct in_pktinfo, host
        layout) with the interface the connection came in on and its local address."""
        if not e.pktinfo & p.PKTINFO_WANT_IP:
            return b""
        local = e.sock.local or ("0.0.0.0", 0)
        if ":" in local[0]:
            return b""  # an IPv6 connection: Linux gives IP_PKTINFO for IPv4 ones only
        addr = socket.inet_aton(local[0])
        data = struct.pack("=i4s4s", self.ifindex, addr, addr)
        head = struct.pack("@Nii", socket.CMSG_LEN(len(data)), socket.IPPROTO_IP, IP_PKTINFO)
        return (head + data).ljust(socket.CMSG_SPACE(len(data)), b"\0")

    def _tcp_info(self, e: _Entry) -> bytes:
        """A struct tcp_info (Linux layout, 232 bytes) from the socket's numbers."""
        info = e.sock.info()

        def num(key: str, default: float = 0) -> float:
            value = info.get(key)
            return float(value) if isinstance(value, (int, float)) else default

        mss = int(num("mss", 1460)) or 1460
        buf = bytearray(232)
        buf[0] = _TCP_STATES.get(str(info.get("state", e.sock.state)), 7)
        # tcpi_options (byte 5): Linux's TCPI_OPT_* bits for what the handshake agreed;
        # byte 6: tcpi_snd_wscale (low nibble) and tcpi_rcv_wscale (high nibble).
        options = (
            (TCPI_OPT_TIMESTAMPS if info.get("ts") else 0)
            | (TCPI_OPT_SACK if info.get("sack") else 0)
            | (TCPI_OPT_WSCALE if info.get("wscale") else 0)
            | (TCPI_OPT_ECN if info.get("ecn") else 0)
            | (TCPI_OPT_ECN_SEEN if info.get("ecn_ce") else 0)
        )
        buf[5] = options
        if info.get("wscale"):
            buf[6] = (int(num("snd_wscale")) & 0xF) | (int(num("rcv_wscale")) & 0xF) << 4
        unacked = -(-int(num("inflight")) // mss)  # segments in flight, rounded up
        srtt = num("srtt")
        struct.pack_into(
            "=24I", buf, 8,
            int(num("rto") * 1e6), 40000, mss, mss, unacked, 0, 0, 0, 0, 0, 0, 0, 0, 1500,
            int(num("rcv_wnd")), int(srtt * 1e6), int(srtt * 5e5), int(num("ssthresh")) // mss,
            max(int(num("cwnd")) // mss, 1), mss, 3, 0, int(num("rcv_wnd")),
            int(num("retrans")),
        )  # fmt: skip
        struct.pack_into("=QQ", buf, 120, int(num("bytes_sent")), int(num("bytes_received")))
        struct.pack_into("=Q", buf, 200, int(num("bytes_sent")))
        struct.pack_into("=I", buf, 228, int(num("snd_wnd")))
        return bytes(buf)

    # --------------------------------------------------------------------- pumping

    def _schedule(self, e: _Entry) -> None:
        if e.scheduled or e.dead or self.loop is None:
            return
        e.scheduled = True
        self.loop.call_soon(self._run, e)

    def _run(self, e: _Entry) -> None:
        e.scheduled = False
        self._pump(e)

    def _on_b_event(self, e: _Entry, ev: int) -> None:
        if ev & select.EPOLLERR or ev & select.EPOLLHUP and not (e.shut_wr and e.tcp_eof):
            # HUP: the program closed its end -- unless both directions were shut down
            # (its shutdown, our EOF for the peer's FIN), which raises HUP on B as well
            # while the program still holds the socket.
            e.hup = True
        self._pump(e)

    def _pump(self, e: _Entry) -> None:
        if e.dead:
            return
        try:
            if e.kind == "udp":
                self._pump_udp(e)
            elif e.phase == "connected":
                self._pump_tcp(e)
            elif e.phase == "connecting":
                self._pump_connecting(e)
            elif e.phase == "listening":
                self._pump_listener(e)
            elif e.hup:  # fresh or shut-listener, and the program closed it
                self._finish(e)
        except Exception:
            log.exception("internal error moving data for a shim socket")
            self._count("internal_errors")
            self._kill(e, errno.ECONNRESET)

    def _pump_connecting(self, e: _Entry) -> None:
        s = e.sock
        state = s.state
        if state in ("SYN-SENT", "SYN-RECEIVED") and not s.error:
            if e.hup:  # the program gave up on it
                self._finish(e)
            return
        if state == "CLOSED" or (s.error and state in ("SYN-SENT", "SYN-RECEIVED")):
            self._kill(e, s.error or errno.ECONNREFUSED)
            return
        # Established (or already past it): drop the filler but one byte, which stays
        # as the sentinel; A becomes writable and the connect is done.
        left = e.filler - 1
        while left > 0:
            n = e.b.recv_into(self._scratch, min(left, len(self._scratch)), socket.MSG_DONTWAIT)
            if n <= 0:
                break
            left -= n
        e.filler = 0
        e.b.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 1)
        e.phase = "connected"
        self._pump_tcp(e)

    def _pump_tcp(self, e: _Entry) -> None:
        s, b = e.sock, e.b
        flags = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL
        # stack -> program
        while not e.tcp_eof:
            if e.out is not None:
                try:
                    n = b.send(e.out, flags)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # the program shut down reading or closed: drop it
                    e.app_rd_closed = True
                    e.out = None
                    continue
                e.out = e.out[n:] if n < len(e.out) else None
                if e.out is not None:
                    break
                continue
            try:
                data = s.recv(CHUNK)
            except BlockingIOError:
                break
            except OSError as exc:
                self._kill(e, exc.errno or errno.ECONNRESET)
                return
            if not data:
                e.tcp_eof = True
                with contextlib.suppress(OSError):
                    b.shutdown(socket.SHUT_WR)
                break
            if not e.app_rd_closed:
                e.out = memoryview(data)
        # program -> stack
        while not e.app_eof:
            free = s.send_free
            if free <= 0:
                break
            try:
                data = b.recv(min(free, CHUNK), socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionResetError:  # closed with data it never read: RST, as Linux
                e.app_reset = e.app_eof = True
                break
            if not data:
                e.app_eof = True
                if not e.hup or e.tcp_eof:
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_WR)
                break
            try:
                n = s.send(data)
            except OSError as exc:
                self._kill(e, exc.errno or errno.EPIPE)
                return
            if n:
                b.recv_into(self._scratch, n, socket.MSG_DONTWAIT)
            if n < len(data):
                b.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 1)
                break
        if e.app_eof and (e.tcp_eof or e.hup):
            if e.hup or e.app_reset or not e.shut_wr or s.state == "CLOSED":
                if s.error and not e.hup and not e.app_reset:
                    self._kill(e, s.error)  # e.g. an RST in LAST-ACK: SO_ERROR says so
                else:
                    self._finish(e, reset=e.app_reset)
            # Otherwise the program shut its socket down both ways and still holds it
            # while the connection lives on (LAST-ACK, CLOSING, TIME-WAIT): as in Linux it
            # still answers TCP_INFO and SO_ERROR, and is listed, until the connection
            # ends (the program's close() raises no new event on B then). Found by
            # `tcplab drill --daemon` (snippets/last-ack).

    def _pump_listener(self, e: _Entry) -> None:
        """Move established connections from the stack's accept queue onto the
        listener's stream, at most `backlog` unread records at a time (the count comes
        from what unread records hold of B's send memory; B reports EPOLLOUT as the
        program takes them, which brings us back here)."""
        if e.hup:
            self._finish(e)
            return
        self._take_offers(e)
        if e.group is not None:
            self._pump_group(e.group)
            return
        s = e.sock
        while self._has_room(e):
            child = e.pending.popleft() if e.pending else s.accept()
            if child is None:
                return
            if not self._deliver_counted(e, child):
                e.pending.appendleft(child)
                return

    def _take_offers(self, e: _Entry) -> None:
        """Control connections handed in through the listener's own stream: a process
        that holds the listener but has no control connection and may not open the
        socket file (it closed every descriptor, then dropped privileges) sends one end
        of a socketpair as SCM_RIGHTS on a one-byte message. Read past the filler with
        MSG_PEEK (the filler must stay): the record stays queued, bounded by A's send
        buffer, until the listener closes."""
        for _ in range(16):
            try:
                data, anc, _flags, _ = e.b.recvmsg(
                    1, socket.CMSG_SPACE(4 * 4), socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
                return
            for fd in self._take_fds(anc):
                try:
                    conn = socket.socket(fileno=fd)
                except OSError:
                    os.close(fd)
                    continue
                if conn.family != socket.AF_UNIX or conn.type != socket.SOCK_SEQPACKET:
                    conn.close()
                    continue
                pid, uid = 0, -1
                with contextlib.suppress(OSError):
                    cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                    pid, uid, _gid = struct.unpack("=iII", cred)
                self._admit(conn, pid, uid, may_create=False)

    @staticmethod
    def _has_room(e: _Entry) -> bool:
        return not e.record_size or _outq(e.b) < e.backlog * e.record_size

    def _deliver_counted(self, e: _Entry, child: Any) -> bool:
        queued = _outq(e.b) if not e.record_size else 1
        if not self._deliver(e, child):
            return False
        if not queued:  # learn what one record holds, from an empty stream
            e.record_size = _outq(e.b)  # (0 if the program took it already: next time)
        return True

    def _pump_group(self, g: _PortGroup) -> None:
        members = [m for m in g.members if m.phase == "listening" and not m.dead]
        if not members:
            return
        while True:
            child = g.pending.popleft() if g.pending else g.sock.accept()
            if child is None:
                return
            ip, port = child.remote or ("0.0.0.0", 0)
            first = zlib.crc32(f"{ip}:{port}".encode()) % len(members)
            for m in members[first:] + members[:first]:
                if self._has_room(m) and self._deliver_counted(m, child):
                    break
            else:
                g.pending.appendleft(child)
                return

    def _leave_group(self, e: _Entry) -> bool:
        """Take e out of its SO_REUSEPORT group. True when e's stack socket is the
        group's and others still use it (it must stay open)."""
        g = e.group
        if g is None:
            return False
        e.group = None
        if e in g.members:
            g.members.remove(e)
        if g.members:
            heir = g.members[0]
            g.sock.on_change = lambda: self._schedule(heir)
            self._schedule(heir)
            return e.sock is g.sock
        self._groups.pop(g.key, None)
        while g.pending:
            with contextlib.suppress(Exception):
                g.pending.popleft().abort()
        if e.sock is not g.sock:
            with contextlib.suppress(Exception):
                g.sock.close()
        return False

    def _close_listener(self, e: _Entry) -> None:
        while e.pending:
            with contextlib.suppress(Exception):
                e.pending.popleft().abort()
        if self._leave_group(e):
            return
        with contextlib.suppress(Exception):
            e.sock.close()

    def _pump_udp(self, e: _Entry) -> None:
        s, b = e.sock, e.b
        # stack -> program: one record per datagram, its source in SCM_CREDENTIALS
        while True:
            if e.dgram is None:
                try:
                    e.dgram = s.recvfrom()
                except BlockingIOError:
                    break
                except OSError:
                    continue
            data, src = e.dgram
            try:
                self._send_dgram(b, data, src, self._pktinfo_file(e, src))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._count("udp_to_program_dropped")
            e.dgram = None
        # program -> stack: records written with write()/send() on a connected socket
        for _ in range(1024):
            if e.app_eof:
                break
            try:
                data, anc, flags, _ = b.recvmsg(p.MAX_PAYLOAD + 1, socket.CMSG_SPACE(12))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if not data and not anc:  # end of file: shut down for writing, or closed
                e.app_eof = True
                break
            if flags & socket.MSG_TRUNC:
                self._count("udp_from_program_too_big")
                continue
            try:
                s.sendto(data, None)
            except OSError:
                self._count("udp_from_program_dropped")
        if e.hup:
            self._finish(e)

    def _pktinfo_file(self, e: _Entry, src: tuple[str, int]) -> int:
        """The sealed file holding the PKTINFO record for a datagram to `e` from `src`:
        sent to the stack's address of src's family (the only one it takes), port e's,
        through our interface, and, for an IPv6 source (which SCM_CREDENTIALS cannot
        hold, docs 5.5), where it came from. One file per distinct record, shared and
        never written again (sealed), so a program cannot change what another reads;
        -1 if it cannot be made, or if the datagram needs none (an IPv4 source to a
        socket that asked for no PKTINFO)."""
        v6 = ":" in src[0]
        if not e.pktinfo and not v6:
            return -1
        local = e.sock.local or (self.layer.address, 0)
        dst_ip = (self.layer.address6 or "::") if v6 else self.layer.address
        key = (dst_ip, local[1], e.pktinfo, src[0] if v6 else "", src[1] if v6 else 0)
        fd = self._pktinfo_files.get(key)
        if fd is not None:
            self._pktinfo_files.move_to_end(key)
            return fd
        record = p.encode_pktinfo_record(p.Addr.of(dst_ip, local[1]), self.ifindex, e.pktinfo,
                                         p.Addr(p.AF_INET6, src[0], src[1]) if v6 else p.NO_ADDR)
        try:
            fd = os.memfd_create("tcplab-pktinfo", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except OSError:
            self._count("pktinfo_file_errors")
            return -1
        try:
            os.write(fd, record)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK
                        | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        except OSError:
            os.close(fd)
            self._count("pktinfo_file_errors")
            return -1
        self._pktinfo_files[key] = fd
        while len(self._pktinfo_files) > PKTINFO_FILES:
            os.close(self._pktinfo_files.popitem(last=False)[1])
        return fd

    def _send_dgram(self, b: socket.socket, data: bytes, src: tuple[str, int],
                    info_fd: int = -1) -> None:
        flags = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL
        extra = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [info_fd]).tobytes())] \
            if info_fd >= 0 else []
        if self._creds_ok:
            # an IPv6 source rides in the PKTINFO record (info_fd); uid 0 then
            ip = 0 if ":" in src[0] else struct.unpack("!I", socket.inet_aton(src[0]))[0]
            cred = struct.pack("=iII", self._pid, ip, CRED_MARK | src[1])
            try:
                b.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, cred), *extra],
                          flags)
                return
            except PermissionError:
                log.warning("no CAP_SETUID/CAP_SETGID: UDP source addresses will read 0.0.0.0")
                self._creds_ok = False
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # e.g. 255.255.255.255 is uid -1: send plain
                    raise
        b.sendmsg([data], extra, flags)

    # ------------------------------------------------------------------ the end

    def _forget(self, e: _Entry) -> None:
        e.dead = True
        self._entries.pop(e.key, None)
        self._by_sock.pop(id(e.sock), None)
        if self._poller is not None:
            self._poller.unregister(e.b.fileno())

    def _bury(self, e: _Entry, error: int) -> None:
        s = e.sock
        self._tombstones[e.key] = _Tombstone(
            e.kind, s.local, s.remote if (e.kind == "udp" or e.phase == "connected") else None,
            error, e.phase in ("listening", "shut-listener"))
        while len(self._tombstones) > TOMBSTONES:
            self._tombstones.popitem(last=False)

    def _finish(self, e: _Entry, *, reset: bool = False, tombstone: bool = True) -> None:
        """A graceful end: B is drained (so the program sees a clean EOF, not
        ECONNRESET) and closed; the stack socket closes (FIN, or RST with `reset`)."""
        if e.dead:
            return
        if tombstone:
            self._bury(e, 0)
        self._forget(e)
        while True:
            try:
                if not e.b.recv_into(self._scratch, len(self._scratch), socket.MSG_DONTWAIT):
                    break
            except OSError:
                break
        e.b.close()
        if e.phase in ("listening", "shut-listener"):
            self._close_listener(e)
        elif self._leave_group(e):
            pass
        else:
            with contextlib.suppress(Exception):
                if reset and hasattr(e.sock, "abort"):
                    e.sock.abort()
                else:
                    e.sock.close()

    def _kill(self, e: _Entry, error: int) -> None:
        """An abortive end (reset, failed connect, daemon exit): B is closed with bytes
        still queued in it, so the program's end reports ECONNRESET and polls
        readable, writable and in error; SO_ERROR then tells `error`."""
        if e.dead:
            return
        self._bury(e, error)
        self._forget(e)
        e.b.close()
        if e.phase in ("listening", "shut-listener"):
            self._close_listener(e)
        elif not self._leave_group(e):
            with contextlib.suppress(Exception):
                e.sock.close()
