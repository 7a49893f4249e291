"""The script's system calls, on the adapter's sockets.

Each call returns its result (an int) or raises OSError with the errno the script
compares; `WouldBlock` means a blocking call has to wait (the runner retries it as the
clock moves). Names in arguments (SOL_SOCKET, O_NONBLOCK, ...) are Linux's values,
which is what the stack's socket layer takes. Unsupported calls, options or flags
raise `Unsupported`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from stack.drill.adapter import Sock, StackAdapter
from stack.drill.model import Syscall, Unsupported
from stack.sockets import TCP_KEEPINIT, TCP_REMOTE_UDP_ENCAPS_PORT

LOCAL_PORT = 8080  # packetdrill binds its sockets to 8080 and connects to the peer's 8080
REMOTE_PORT = 8080

CONSTANTS: dict[str, int] = {
    "AF_INET": socket.AF_INET, "AF_INET6": socket.AF_INET6, "PF_INET": socket.AF_INET,
    "SOCK_STREAM": socket.SOCK_STREAM, "SOCK_DGRAM": socket.SOCK_DGRAM,
    "IPPROTO_TCP": socket.IPPROTO_TCP, "IPPROTO_IP": socket.IPPROTO_IP,
    "IPPROTO_UDP": socket.IPPROTO_UDP, "SOL_SOCKET": socket.SOL_SOCKET,
    "SO_REUSEADDR": socket.SO_REUSEADDR, "SO_KEEPALIVE": socket.SO_KEEPALIVE,
    "SO_RCVBUF": socket.SO_RCVBUF, "SO_SNDBUF": socket.SO_SNDBUF,
    "SO_ERROR": socket.SO_ERROR, "SO_LINGER": socket.SO_LINGER,
    "SO_REUSEPORT": socket.SO_REUSEPORT,
    "TCP_NODELAY": socket.TCP_NODELAY, "TCP_MAXSEG": socket.TCP_MAXSEG,
    "TCP_KEEPIDLE": socket.TCP_KEEPIDLE, "TCP_KEEPINTVL": socket.TCP_KEEPINTVL,
    "TCP_KEEPCNT": socket.TCP_KEEPCNT, "TCP_KEEPINIT": TCP_KEEPINIT,
    "TCP_FASTOPEN": socket.TCP_FASTOPEN, "TCP_REMOTE_UDP_ENCAPS_PORT": TCP_REMOTE_UDP_ENCAPS_PORT,
    "F_GETFL": fcntl.F_GETFL, "F_SETFL": fcntl.F_SETFL,
    "O_RDWR": os.O_RDWR, "O_NONBLOCK": os.O_NONBLOCK,
    "SHUT_RD": socket.SHUT_RD, "SHUT_WR": socket.SHUT_WR, "SHUT_RDWR": socket.SHUT_RDWR,
    "MSG_PEEK": socket.MSG_PEEK,
    "IPPROTO_IPV6": socket.IPPROTO_IPV6, "IP_TOS": socket.IP_TOS, "IP_TTL": socket.IP_TTL,
    "IPV6_TCLASS": socket.IPV6_TCLASS, "IPV6_UNICAST_HOPS": socket.IPV6_UNICAST_HOPS,
    # RFC 2474 class selectors (netinet/ip.h IPTOS_DSCP_CSn): DSCP n << 3, in the TOS byte
    **{f"IPTOS_DSCP_CS{n}": n << 5 for n in range(8)},
}  # fmt: skip

# Options the stack keeps: (level, name) the stack's setsockopt/getsockopt take.
_STACK_SOCKOPTS = {
    (socket.SOL_SOCKET, socket.SO_REUSEADDR), (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    (socket.SOL_SOCKET, socket.SO_RCVBUF), (socket.SOL_SOCKET, socket.SO_SNDBUF),
    (socket.SOL_SOCKET, socket.SO_LINGER), (socket.SOL_SOCKET, socket.SO_ERROR),
    (socket.IPPROTO_TCP, socket.TCP_NODELAY), (socket.IPPROTO_TCP, socket.TCP_MAXSEG),
    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    (socket.IPPROTO_TCP, socket.TCP_KEEPCNT), (socket.IPPROTO_TCP, TCP_KEEPINIT),
    (socket.IPPROTO_TCP, socket.TCP_FASTOPEN), (socket.IPPROTO_TCP, TCP_REMOTE_UDP_ENCAPS_PORT),
    (socket.IPPROTO_IP, socket.IP_TOS), (socket.IPPROTO_IP, socket.IP_TTL),
    (socket.IPPROTO_IPV6, socket.IPV6_TCLASS), (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS),
}  # fmt: skip


def sockopt_supported(level: Any, name: Any) -> bool:
    """Whether the stack's socket layer keeps this option (names as in the script)."""
    if not (isinstance(level, str) and isinstance(name, str)):
        return False
    if level not in CONSTANTS or name not in CONSTANTS:
        return False
    return (CONSTANTS[level], CONSTANTS[name]) in _STACK_SOCKOPTS


class WouldBlock(Exception):  # noqa: N818 - a control-flow signal
    """A blocking call has to wait; `retry()` tries again (raising WouldBlock again)."""

    def __init__(self, retry: Callable[[], int]) -> None:
        super().__init__("would block")
        self.retry = retry


def evaluate(expr: Any, names: dict[str, int] | None = None) -> Any:
    """The value of a parsed expression (a number, NAME, [list] or a|b)."""
    if isinstance(expr, int):
        return expr
    if isinstance(expr, str):
        table = names or {}
        if expr in table:
            return table[expr]
        if expr in CONSTANTS:
            return CONSTANTS[expr]
        if expr == "EWOULDBLOCK":
            return errno.EAGAIN
        if expr.startswith("E") and hasattr(errno, expr):
            return getattr(errno, expr)
        raise Unsupported(f"the constant {expr}")
    if isinstance(expr, tuple) and expr and expr[0] == "|":
        return evaluate(expr[1], names) | evaluate(expr[2], names)
    if isinstance(expr, tuple) and expr and expr[0] == "list":
        return [evaluate(e, names) for e in expr[1]]
    if expr is ...:
        return ...
    raise Unsupported(f"the argument {expr!r}")


def show(expr: Any) -> str:
    """A parsed expression written back the way the script wrote it."""
    if isinstance(expr, str):
        return expr
    if expr is ...:
        return "..."
    if isinstance(expr, tuple) and expr:
        if expr[0] == "|":
            return f"{show(expr[1])} | {show(expr[2])}"
        if expr[0] == "list":
            return "[" + ", ".join(show(e) for e in expr[1]) + "]"
        if expr[0] == "str":
            return f'"{expr[1]}"'
        if expr[0] == "struct":
            return "{" + ", ".join(f"{k}={show(v)}" for k, v in expr[1].items()) + "}"
    return str(expr)


_name = show


S = TypeVar("S")


class SyscallDispatch(Generic[S]):
    """What both modes' file tables share (FileTable here, AgentFiles in live.py): the
    script's fd to its socket, and a call to its ``sys_NAME`` method."""

    socks: dict[int, S]
    current: int | None  # the socket %{ }% blocks ask TCP_INFO of

    def implied_connect(self, sc: Syscall, connected: bool) -> bool:
        """Whether this sendto() is FreeBSD's implied connect: to the peer (the script's
        `...`), on a socket not yet connected (`connected`), flags 0; it becomes the
        socket TCP_INFO blocks ask. Any other destination or flags: Unsupported."""
        if len(sc.args) > 4 and (sc.args[4] is not ... or sc.args[5] is not ...):
            raise Unsupported("sendto() with a destination other than the peer's (...)")
        if len(sc.args) <= 4 or connected:
            return False
        if evaluate(sc.args[3]) != 0:
            raise Unsupported(f"sendto() flags {show(sc.args[3])}")
        self.current = evaluate(sc.args[0])
        return True

    def sock(self, fd: Any) -> S:
        value = evaluate(fd)
        if value not in self.socks:
            raise OSError(errno.EBADF, "bad file descriptor")
        return self.socks[value]

    def call(self, sc: Syscall) -> int:
        handler = getattr(self, "sys_" + sc.name, None)
        if handler is None:
            raise Unsupported(f"system call {sc.name}()")
        result: int = handler(sc)
        return result


@dataclass
class FileTable(SyscallDispatch[Sock]):
    """The script's file descriptors (as the script numbers them) and their sockets."""

    adapter: StackAdapter
    socks: dict[int, Sock] = field(default_factory=dict)
    nonblocking: dict[int, bool] = field(default_factory=dict)
    current: int | None = None  # the socket %{ }% blocks ask TCP_INFO of
    relaxed: set[str] = field(default_factory=set)  # relaxations used
    strict: bool = False

    def _blocking(self, fd: int, attempt: Callable[[], int]) -> int:
        """Run `attempt`; on a blocking socket, EAGAIN means wait and retry."""
        try:
            return attempt()
        except BlockingIOError:
            if self.nonblocking.get(fd, False):
                raise

            def retry() -> int:
                try:
                    return attempt()
                except BlockingIOError:
                    raise WouldBlock(retry) from None

            raise WouldBlock(retry) from None

    # ---------------------------------------------------------- calls

    def sys_socket(self, sc: Syscall) -> int:
        if len(sc.args) != 3:
            raise Unsupported("socket() with other than 3 arguments")
        if evaluate(sc.args[1]) != socket.SOCK_STREAM:
            raise Unsupported(f"socket type {_name(sc.args[1])}")
        fd = evaluate(sc.result)
        if not isinstance(fd, int) or fd < 0:
            raise Unsupported("socket() expected to fail")
        self.socks[fd] = self.adapter.tcp_socket()
        self.nonblocking[fd] = False
        self.current = fd
        return fd

    def sys_fcntl(self, sc: Syscall) -> int:
        fd = evaluate(sc.args[0])
        self.sock(fd)
        cmd = evaluate(sc.args[1])
        if cmd == fcntl.F_GETFL:
            return os.O_RDWR | (os.O_NONBLOCK if self.nonblocking.get(fd) else 0)
        if cmd == fcntl.F_SETFL:
            self.nonblocking[fd] = bool(evaluate(sc.args[2]) & os.O_NONBLOCK)
            return 0
        raise Unsupported(f"fcntl command {_name(sc.args[1])}")

    def sys_bind(self, sc: Syscall) -> int:
        self.sock(sc.args[0]).bind(LOCAL_PORT)
        return 0

    def sys_listen(self, sc: Syscall) -> int:
        self.sock(sc.args[0]).listen(evaluate(sc.args[1]))
        return 0

    def sys_accept(self, sc: Syscall) -> int:
        fd = evaluate(sc.args[0])
        listener = self.sock(fd)

        def attempt() -> int:
            child = listener.accept()
            if child is None:
                raise BlockingIOError(errno.EAGAIN, "no connection")
            new_fd = evaluate(sc.result)
            if not isinstance(new_fd, int) or new_fd < 0 or new_fd in self.socks:
                new_fd = max([2, *self.socks]) + 1
            self.socks[new_fd] = child
            # Blocking, whatever the listener is (Linux; FreeBSD would inherit O_NONBLOCK:
            # no script of the suite depends on it).
            self.nonblocking[new_fd] = False
            self.current = new_fd
            return new_fd

        return self._blocking(fd, attempt)

    def sys_connect(self, sc: Syscall) -> int:
        fd = evaluate(sc.args[0])
        sock = self.sock(fd)
        self.current = fd
        sock.connect(REMOTE_PORT)
        if self.nonblocking.get(fd):
            raise OSError(errno.EINPROGRESS, "operation now in progress")

        def attempt() -> int:
            if sock.connecting:
                raise BlockingIOError(errno.EAGAIN, "connecting")
            err = sock.take_error()
            if err:
                raise OSError(err, os.strerror(err))
            return 0

        return self._blocking(fd, attempt)

    def _send(self, sc: Syscall, length_arg: int, flags_arg: int | None) -> int:
        fd = evaluate(sc.args[0])
        sock = self.sock(fd)
        n = evaluate(sc.args[length_arg])
        if flags_arg is not None and evaluate(sc.args[flags_arg]) != 0:
            raise Unsupported(f"{sc.name}() flags {_name(sc.args[flags_arg])}")
        data = bytes(n)

        def attempt() -> int:
            sent = sock.send(data)
            if sent == 0 and n:
                raise BlockingIOError(errno.EAGAIN, "send buffer full")
            return sent

        return self._blocking(fd, attempt)

    def sys_write(self, sc: Syscall) -> int:
        return self._send(sc, 2, None)

    def sys_send(self, sc: Syscall) -> int:
        return self._send(sc, 2, 3)

    def sys_sendto(self, sc: Syscall) -> int:
        sock = self.sock(sc.args[0])
        if self.implied_connect(sc, sock.connected):
            # With TCP_FASTOPEN set it is a Fast Open (RFC 7413 4.2.2): Linux's
            # sendto(MSG_FASTOPEN) in tcplab's socket layer; returns what was taken.
            data = bytes(evaluate(sc.args[2]))
            if sock.fastopen_client:
                return sock.sendto_fastopen(data, REMOTE_PORT)
            sock.connect(REMOTE_PORT)
        return self._send(sc, 2, 3)

    def _recv(self, sc: Syscall, flags_arg: int | None) -> int:
        fd = evaluate(sc.args[0])
        sock = self.sock(fd)
        n = evaluate(sc.args[2])
        flags = evaluate(sc.args[flags_arg]) if flags_arg is not None else 0
        if flags & ~socket.MSG_PEEK:
            raise Unsupported(f"{sc.name}() flags {_name(sc.args[flags_arg or 0])}")
        if flags & socket.MSG_PEEK:
            return self._blocking(fd, lambda: sock.peek(n))
        return self._blocking(fd, lambda: len(sock.recv(n)))

    def sys_read(self, sc: Syscall) -> int:
        return self._recv(sc, None)

    def sys_recv(self, sc: Syscall) -> int:
        return self._recv(sc, 3)

    def sys_shutdown(self, sc: Syscall) -> int:
        self.sock(sc.args[0]).shutdown(evaluate(sc.args[1]))
        return 0

    def sys_close(self, sc: Syscall) -> int:
        fd = evaluate(sc.args[0])
        self.sock(fd).close()
        del self.socks[fd]
        return 0

    def _sockopt(self, sc: Syscall) -> tuple[Sock, int, int, str]:
        if len(sc.args) != 5:
            raise Unsupported(f"{sc.name}() with {len(sc.args)} arguments")
        sock = self.sock(sc.args[0])
        level_name, opt_name = _name(sc.args[1]), _name(sc.args[2])
        if not sockopt_supported(sc.args[1], sc.args[2]):
            # (only reached under --non_fatal=syscall, runner.py: the call fails)
            raise OSError(errno.ENOPROTOOPT, f"socket option {opt_name}")
        return sock, CONSTANTS[level_name], CONSTANTS[opt_name], opt_name

    def sys_setsockopt(self, sc: Syscall) -> int:
        sock, level, name, _ = self._sockopt(sc)
        value = evaluate(sc.args[3])
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], int):
            if (level, name) == (socket.IPPROTO_TCP, socket.TCP_FASTOPEN) and not sock.listening:
                # FreeBSD: TCP_FASTOPEN on a socket not listening asks for Fast Open as a
                # client (Linux's TCP_FASTOPEN is the server's queue length, kept too).
                sock.fastopen_client = bool(value[0])
            sock.setsockopt(level, name, value[0])
            return 0
        raise Unsupported(f"setsockopt() value {sc.args[3]!r}")

    def sys_getsockopt(self, sc: Syscall) -> int:
        sock, level, name, opt_name = self._sockopt(sc)
        want = evaluate(sc.args[3])
        if not (isinstance(want, list) and len(want) == 1 and isinstance(want[0], int)):
            raise Unsupported(f"getsockopt() value {sc.args[3]!r}")
        if (level, name) == (socket.SOL_SOCKET, socket.SO_ERROR):
            got: int | bytes = sock.take_error()
        else:
            got = sock.getsockopt(level, name)
        if isinstance(got, bytes):
            got = int.from_bytes(got[:4], "little", signed=True)
        if got != want[0]:
            if name in (socket.SO_RCVBUF, socket.SO_SNDBUF) and level == socket.SOL_SOCKET and not self.strict:
                self.relaxed.add("buffer-size")
            else:
                shown = errno.errorcode.get(got, str(got)) if name == socket.SO_ERROR else got
                raise ValueMismatch(f"getsockopt {opt_name}: expected {show(sc.args[3])}, actual [{shown}]")
        return 0


class ValueMismatch(Exception):  # noqa: N818
    """A value the call returned through a pointer differs from the script's."""
