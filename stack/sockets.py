"""The socket layer: non-blocking, Berkeley-like sockets over the host.

Used by stack/api.py (asyncio, for the built-in services) and stack/ipc/ (the shim's
daemon side). Nothing here blocks; waiting is the caller's business: every socket
calls its `on_change` whenever readability, writability, state or error may have
changed. Errors are `OSError` with Linux errno values.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from stack.host import Host, Listener
from stack.tcp.config import TcpConfig
from stack.tcp.connection import Connection, State
from stack.tcp.fastopen import FASTOPEN_CLIENT
from stack.tcp_over_udp import PLAIN, remote_port_settable
from stack.wire.ipv4 import DEFAULT_TTL
from stack.wire.ipv6 import V4_MAPPED_PREFIX

_LINGER = struct.Struct("ii")
# FreeBSD's TCP_KEEPINIT (seconds to complete the handshake, TcpConfig.connect_timeout).
# Linux has no such option; the number is FreeBSD's and collides with none of Linux's.
TCP_KEEPINIT = 128
TCP_FASTOPEN_CONNECT = 30  # linux/tcp.h (Python's socket module lacks it)
# FreeBSD's TCP_REMOTE_UDP_ENCAPS_PORT (netinet/tcp.h): TCP over UDP to this remote port
# (stack/tcp_over_udp.py). Linux has no such option; 71 collides with none of Linux's.
TCP_REMOTE_UDP_ENCAPS_PORT = 71
MSG_FASTOPEN = 0x20000000
UDP_MAX_PAYLOAD = 65535 - 20 - 8
IPV4, IPV6 = 4, 6  # the families a socket is bound in


def _oserror(code: int) -> OSError:
    return OSError(code, errno.errorcode.get(code, "error"))


def endpoint_text(addr: tuple[str, int] | None, unbound: str = "0.0.0.0:*") -> str:
    """``10.0.0.2:80``, ``[fd00::2]:80`` (RFC 3986 section 3.2.2), for `tcplab ss`."""
    if addr is None:
        return unbound
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_families(host: Host, family: int, v6only: bool, addr: str) -> tuple[frozenset[int], str]:
    """Which families a bind to ``addr`` takes, and the address it is bound to.

    AF_INET: ``0.0.0.0`` or the stack's IPv4 address. AF_INET6 (RFC 3493 section 3.7,
    Linux with bindv6only=0): ``::`` is both families unless IPV6_V6ONLY, the stack's
    IPv6 address is IPv6 only, and a v4-mapped address is IPv4 (refused with V6ONLY).
    Raises EADDRNOTAVAIL for an address that is not ours, EAFNOSUPPORT across families.
    """
    if family == socket.AF_INET:
        if ":" in addr:
            raise _oserror(errno.EAFNOSUPPORT)
        if addr not in ("0.0.0.0", "", host.address):
            raise _oserror(errno.EADDRNOTAVAIL)
        return frozenset((IPV4,)), "0.0.0.0" if addr in ("0.0.0.0", "") else addr
    try:
        packed = socket.inet_pton(socket.AF_INET6, addr or "::")
    except OSError:
        raise _oserror(errno.EINVAL) from None
    if packed[:12] == V4_MAPPED_PREFIX:
        mapped = socket.inet_ntoa(packed[12:])
        if v6only or mapped not in ("0.0.0.0", host.address):
            raise _oserror(errno.EADDRNOTAVAIL)
        return frozenset((IPV4,)), mapped
    text = socket.inet_ntop(socket.AF_INET6, packed)
    if host.address6 is None:
        if text == "::" and not v6only:
            return frozenset((IPV4,)), "::"  # IPv6 off: a dual-stack socket is IPv4 only
        raise _oserror(errno.EADDRNOTAVAIL)
    if text == "::":
        return (frozenset((IPV6,)) if v6only else frozenset((IPV4, IPV6))), "::"
    if text != host.address6:
        raise _oserror(errno.EADDRNOTAVAIL)
    return frozenset((IPV6,)), text


def peer_address(host: Host, family: int, v6only: bool, families: frozenset[int], addr: str) -> str:
    """The peer address as the host takes it: IPv4 text, or IPv6 in inet_ntop form.

    On an AF_INET6 socket a v4-mapped address is the IPv4 peer it stands for (RFC 4291
    section 2.5.5.2), and so is IPv4 text (the host reports IPv4 sources that way);
    both fail with ENETUNREACH under IPV6_V6ONLY, as does IPv6 with IPv6 off. An
    AF_INET socket given an IPv6 address fails with EAFNOSUPPORT.
    """
    if family == socket.AF_INET:
        if ":" in addr:
            raise _oserror(errno.EAFNOSUPPORT)
        return addr
    if ":" not in addr:
        if v6only:
            raise _oserror(errno.ENETUNREACH)
        return addr
    try:
        packed = socket.inet_pton(socket.AF_INET6, addr)
    except OSError:
        raise _oserror(errno.EINVAL) from None
    if packed[:12] == V4_MAPPED_PREFIX:
        if v6only:
            raise _oserror(errno.ENETUNREACH)
        return socket.inet_ntoa(packed[12:])
    if host.address6 is None:
        raise _oserror(errno.ENETUNREACH)
    if families and IPV6 not in families:
        raise _oserror(errno.EINVAL)  # bound to the IPv4 address (v4-mapped)
    return socket.inet_ntop(socket.AF_INET6, packed)


def _ipv6_option(sock: TcpSocket | UdpSocket, name: int, value: int) -> None:
    """IPPROTO_IPV6 options: IPV6_V6ONLY before bind (RFC 3493 section 5.3; Linux
    refuses it on a bound socket with EINVAL); the others are accepted and ignored,
    like IPPROTO_IP's."""
    if name == socket.IPV6_V6ONLY:
        if sock.families:
            raise _oserror(errno.EINVAL)
        sock.v6only = bool(value)


# The IP header fields a TCP socket sets for its segments (Linux ip(7), ipv6(7)): option
# -> (TcpConfig field, lowest value, highest value, the value that means "default").
_IP_HEADER_OPTIONS: dict[tuple[int, int], tuple[str, int, int, int | None]] = {
    (socket.IPPROTO_IP, socket.IP_TOS): ("tos", -(2**31), 2**31 - 1, None),
    (socket.IPPROTO_IP, socket.IP_TTL): ("ttl", 1, 255, -1),
    (socket.IPPROTO_IPV6, socket.IPV6_TCLASS): ("tclass", 0, 255, -1),
    (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS): ("hop_limit", 0, 255, -1),
}


def _set_ip_header_option(configs: list[TcpConfig], key: tuple[int, int], value: int) -> None:
    """IP_TOS, IP_TTL, IPV6_TCLASS, IPV6_UNICAST_HOPS on a TCP socket, as Linux: the TOS
    keeps only its DSCP bits (the ECN field is TCP's, RFC 3168 section 5); a TTL of 1-255
    or -1 for the default, EINVAL otherwise (a hop limit of 0, which Linux takes, is the
    default here); a traffic class of 0-255 or -1 (none). Applies to the socket, its
    listener's future connections, or its open connection at once."""
    field, low, high, default = _IP_HEADER_OPTIONS[key]
    if value == default:
        value = 0
    elif not low <= value <= high:
        raise _oserror(errno.EINVAL)
    if field in ("tos", "tclass"):
        value &= 0xFC
    for config in configs:
        setattr(config, field, value)


def _get_ip_header_option(config: TcpConfig, key: tuple[int, int]) -> int:
    field = _IP_HEADER_OPTIONS[key][0]
    value = int(getattr(config, field))
    if field in ("ttl", "hop_limit") and value == 0:
        return DEFAULT_TTL  # the default in use (Linux: ip_default_ttl, hop_limit 64)
    return value


class TcpSocket:
    """A TCP socket: unbound, bound, listening, or connected; AF_INET or AF_INET6
    (dual-stack unless IPV6_V6ONLY, docs/ipv6.md)."""

    kind = "tcp"

    def __init__(self, layer: SocketLayer, family: int = socket.AF_INET) -> None:
        self.layer = layer
        self.host = layer.host
        self.family = family
        self.v6only = False  # IPV6_V6ONLY (RFC 3493 section 5.3)
        self.families: frozenset[int] = frozenset()  # where the socket is bound
        self.config = layer.host.new_config()
        self.on_change: Callable[[], None] | None = None
        self.local: tuple[str, int] | None = None
        self.remote: tuple[str, int] | None = None
        self.conn: Connection | None = None
        self.listener: Listener | None = None
        self.error = 0
        self.reuse_addr = False
        self.closed = False
        self._bound_port = 0
        self._shut_rd = False
        # TCP Fast Open (RFC 7413, stack/tcp/fastopen.py), as Linux's options:
        self.fastopen_qlen = 0  # TCP_FASTOPEN on a listener
        self.fastopen_connect = False  # TCP_FASTOPEN_CONNECT on a client
        self.udp_encaps_port = PLAIN  # TCP_REMOTE_UDP_ENCAPS_PORT, for connect()

    # ---------------------------------------------------------------- state

    @property
    def state(self) -> str:
        if self.listener is not None:
            return str(State.LISTEN)
        if self.conn is not None:
            return str(self.conn.state)
        return str(State.CLOSED)

    def connection_changed(self, conn: Connection) -> None:
        if conn.error and not self.error:
            self.error = conn.error
        self._notify()

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def take_error(self) -> int:
        err = self.error
        self.error = 0
        if self.conn is not None and self.conn.error == err:
            self.conn.error = 0
        return err

    @property
    def readable(self) -> bool:
        if self.listener is not None:
            return bool(self.listener.accept_queue)
        conn = self.conn
        if conn is None:
            return bool(self.error)
        return bool(conn.readable_bytes or conn.fin_received or conn.error or conn.state == State.CLOSED)

    @property
    def writable(self) -> bool:
        conn = self.conn
        if conn is None:
            return bool(self.error)
        if conn.error or conn.state == State.CLOSED:
            return True
        return (conn.state in (State.ESTABLISHED, State.CLOSE_WAIT) and conn.send_free > 0
                and not self.host.refuses_memory(conn))

    @property
    def send_free(self) -> int:
        return self.conn.send_free if self.conn is not None else 0

    # ------------------------------------------------------------- set-up

    def bind(self, addr: str, port: int) -> None:
        if self._bound_port or self.conn is not None:
            raise _oserror(errno.EINVAL)
        families, bound = bind_families(self.host, self.family, self.v6only, addr)
        if port == 0:
            port = self.host.allocate_port()
        elif any(self._ports(f)[port] for f in families) and not self._may_share(port, families):
            raise _oserror(errno.EADDRINUSE)
        for f in families:
            self._ports(f)[port] += 1
        self.families = families
        self._bound_port = port
        self.local = (self.host.address if bound == "0.0.0.0" else bound, port)

    def _ports(self, family: int) -> Counter[int]:
        return self.host.tcp_ports if family == IPV4 else self.host.tcp_ports6

    def _listeners(self, family: int) -> dict[int, Listener]:
        return self.host.listeners if family == IPV4 else self.host.listeners6

    def _may_share(self, port: int, families: frozenset[int] | None = None) -> bool:
        # SO_REUSEADDR lets a new socket bind while older connections on the port
        # linger (TIME-WAIT etc.), but never beside a listener.
        return self.reuse_addr and not any(
            port in self._listeners(f) for f in (families or self.families))

    def listen(self, backlog: int) -> None:
        if self.conn is not None:
            raise _oserror(errno.EINVAL)
        if self.listener is not None:
            self.listener.backlog = max(min(backlog, 4096), 1)  # the same bound as below
            return
        if not self._bound_port:
            self.bind("0.0.0.0", 0)
        port = self._bound_port
        if any(port in self._listeners(f) for f in self.families):
            raise _oserror(errno.EADDRINUSE)
        self.listener = Listener(port=port, backlog=max(min(backlog, 4096), 1), config=replace(self.config),
                                 fastopen_qlen=self.fastopen_qlen)
        self.listener.owner = self
        for f in self.families:  # a dual-stack listener hears both families
            self._listeners(f)[port] = self.listener

    def accept(self) -> TcpSocket | None:
        if self.listener is None:
            raise _oserror(errno.EINVAL)
        queue = self.listener.accept_queue
        while queue:
            conn = queue.popleft()
            child = TcpSocket(self.layer, self.family)
            child.families = frozenset((IPV6 if ":" in conn.remote[0] else IPV4,))
            child.conn = conn
            child.config = conn.config
            child.local = conn.local
            child.remote = conn.remote
            child._bound_port = conn.local[1]
            for f in child.families:
                child._ports(f)[conn.local[1]] += 1
            self.host.set_owner(conn, child)
            self.layer.register(child)
            if conn.error:
                child.error = conn.error
            return child
        return None

    def connect(self, addr: str, port: int, fastopen_data: bytes | None = None) -> None:
        """Active open. With `fastopen_data` (sendto with MSG_FASTOPEN, or a connect
        with TCP_FASTOPEN_CONNECT: b"") the SYN asks for or carries a Fast Open cookie
        and, with one, carries the data (RFC 7413 4.2.2)."""
        if self.listener is not None:
            raise _oserror(errno.EINVAL)
        if self.conn is not None:
            if self.conn.state == State.SYN_SENT:
                raise _oserror(errno.EALREADY)
            raise _oserror(errno.EISCONN)
        if port == 0:
            raise _oserror(errno.ECONNREFUSED)
        addr = peer_address(self.host, self.family, self.v6only, self.families, addr)
        chose_port = not self._bound_port
        if chose_port:
            self._bind_any()
        now = self.host.clock()
        for _ in range(16):
            try:
                if fastopen_data is None and self.fastopen_connect:
                    fastopen_data = b""  # TCP_FASTOPEN_CONNECT: the cookie (see docs)
                self.conn = self.host.connect(self._bound_port, (addr, port), self.config, self,
                                              now, fastopen_data=fastopen_data,
                                              udp_port=self.udp_encaps_port)
                break
            except OSError as exc:
                # An ephemeral port whose old connection to this same peer still waits
                # in TIME-WAIT: pick another, as Linux's connect() does.
                if exc.errno != errno.EADDRINUSE or not chose_port:
                    raise
                self._release_port()
                self._bind_any()
        else:
            raise _oserror(errno.EADDRNOTAVAIL)
        self.remote = (addr, port)

    def _bind_any(self) -> None:
        self.bind("::" if self.family == socket.AF_INET6 else "0.0.0.0", 0)

    def sendto_fastopen(self, data: bytes, addr: str, port: int) -> int:
        """sendto(..., MSG_FASTOPEN, addr) as Linux: connect and queue `data` for the
        SYN (RFC 7413 4.2.2); EOPNOTSUPP when the client bit of the Fast Open mode is
        off, EISCONN/EALREADY on a socket already connecting. Returns the bytes taken."""
        if not self.host.fastopen_mode & FASTOPEN_CLIENT:
            raise _oserror(errno.EOPNOTSUPP)
        self.connect(addr, port, fastopen_data=bytes(data[: self.config.send_buffer]))
        return min(len(data), self.config.send_buffer)

    # ------------------------------------------------------------ data

    def _require_conn(self) -> Connection:
        if self.conn is None:
            raise _oserror(errno.ENOTCONN)
        return self.conn

    def send(self, data: bytes | memoryview) -> int:
        conn = self._require_conn()
        if conn.error:
            err = conn.error
            conn.error = 0
            self.error = 0
            raise _oserror(err)
        if conn.state == State.SYN_SENT or conn.state == State.SYN_RECEIVED:
            return 0
        if conn.state == State.CLOSED:
            raise _oserror(errno.EPIPE)
        if conn.fin_queued or conn.state not in (State.ESTABLISHED, State.CLOSE_WAIT):
            raise _oserror(errno.EPIPE)
        if self.host.refuses_memory(conn):
            return 0  # the host is out of TCP memory; we are told when it is not
        now = self.host.clock()
        n = conn.send(data, now)
        self.host.after(conn, now)
        return n

    def recv(self, n: int) -> bytes:
        conn = self._require_conn()
        if conn.readable_bytes:
            now = self.host.clock()
            data = conn.recv(n, now)
            self.host.after(conn, now)
            return data
        if conn.error:
            err = conn.error
            conn.error = 0
            self.error = 0
            raise _oserror(err)
        if conn.fin_received or conn.state == State.CLOSED or self._shut_rd:
            return b""
        raise BlockingIOError(errno.EAGAIN, "no data")

    def shutdown(self, how: int) -> None:
        conn = self._require_conn()
        if how in (socket.SHUT_RD, socket.SHUT_RDWR):
            self._shut_rd = True
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            now = self.host.clock()
            conn.shutdown_write(now)
            self.host.after(conn, now)
        self._notify()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.on_change = None
        now = self.host.clock()
        if self.listener is not None:
            listener = self.listener
            for f in self.families:
                if self._listeners(f).get(listener.port) is listener:
                    del self._listeners(f)[listener.port]
            # Connections nobody accepted are reset (RFC 9293 3.10.4 via ABORT).
            for conn in [*listener.syn_queue.values(), *listener.accept_queue]:
                self.host.set_owner(conn, None)
                conn.abort(now)
                self.host.after(conn, now)
            listener.syn_queue.clear()
            listener.accept_queue.clear()
            self.listener = None
        elif self.conn is not None:
            conn = self.conn
            self.host.set_owner(conn, None)
            conn.close(now)
            self.host.after(conn, now)
        self._release_port()
        self.layer.unregister(self)

    def abort(self) -> None:
        if self.conn is not None:
            now = self.host.clock()
            self.conn.abort(now)
            self.host.after(self.conn, now)
        self.close()

    def _release_port(self) -> None:
        if self._bound_port:
            for f in self.families:
                ports = self._ports(f)
                ports[self._bound_port] -= 1
                if ports[self._bound_port] <= 0:
                    del ports[self._bound_port]
            self._bound_port = 0
            self.families = frozenset()

    # ------------------------------------------------------------ options

    def setsockopt(self, level: int, name: int, value: int | bytes) -> None:
        ival = value if isinstance(value, int) else int.from_bytes(bytes(value)[:4], "little", signed=True)
        cfg = self.conn.config if self.conn is not None else self.config
        if level == socket.SOL_SOCKET:
            if name == socket.SO_REUSEADDR:
                self.reuse_addr = bool(ival)
            elif name == socket.SO_KEEPALIVE:
                cfg.keepalive = bool(ival)
                if self.conn is not None:
                    self.conn.set_keepalive(bool(ival), self.host.clock())
                    self.host.after(self.conn, self.host.clock())
            elif name == socket.SO_LINGER:
                raw = bytes(value) if not isinstance(value, int) else _LINGER.pack(1, 0)
                onoff, seconds = _LINGER.unpack(raw[:8].ljust(8, b"\0"))
                cfg.linger_zero = bool(onoff) and seconds == 0
            elif name == socket.SO_RCVBUF:
                if self.conn is None:
                    cfg.recv_buffer = max(min(ival * 2, 16 << 20), 4096)  # Linux doubles it
            elif name == socket.SO_SNDBUF:
                if self.conn is None:  # fixed once connected, as the buffer exists then
                    cfg.send_buffer = max(min(ival * 2, 16 << 20), 4096)
            elif name in (socket.SO_REUSEPORT, socket.SO_BROADCAST, socket.SO_OOBINLINE, socket.SO_PRIORITY):
                pass  # accepted and ignored, as harmless
            else:
                raise _oserror(errno.ENOPROTOOPT)
        elif level == socket.IPPROTO_TCP:
            if name == socket.TCP_NODELAY:
                cfg.nodelay = bool(ival)
                if self.conn is not None and ival:
                    now = self.host.clock()
                    self.conn.output(now)
                    self.host.after(self.conn, now)
            elif name == socket.TCP_MAXSEG:
                if self.conn is None and 88 <= ival <= cfg.mss:
                    cfg.mss = ival
                    if self.listener is not None:
                        # The listener's own copy (made by listen()): for the
                        # connections it makes from now on, as Linux.
                        self.listener.config.mss = ival
            elif name in (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT):
                if name == socket.TCP_KEEPIDLE:
                    cfg.keepalive_idle = float(max(ival, 1))
                elif name == socket.TCP_KEEPINTVL:
                    cfg.keepalive_interval = float(max(ival, 1))
                else:
                    cfg.keepalive_count = max(ival, 1)
            elif name == TCP_KEEPINIT:
                if ival < 0:
                    raise _oserror(errno.EINVAL)
                cfg.connect_timeout = float(ival)  # 0: no limit
                if self.listener is not None:
                    self.listener.config.connect_timeout = float(ival)
            elif name == socket.TCP_CONGESTION:
                # Linux: the algorithm by name (a string, NUL-terminated or not); ENOENT
                # for one the stack does not have. Before the connection exists it is
                # the one the connection starts with (and a listener's connections);
                # on an open connection the new one takes over the current window.
                raw = value.to_bytes(4, "little") if isinstance(value, int) else bytes(value)
                algo = raw.split(b"\0", 1)[0].decode("ascii", "replace")
                if algo not in cfg.cc_factories:
                    raise _oserror(errno.ENOENT)
                if self.conn is not None:
                    self.conn.set_congestion_control(algo)
                else:
                    cfg.cc = algo
                    if self.listener is not None:
                        self.listener.config.cc = algo
            elif name == socket.TCP_FASTOPEN:
                # Linux: the listener's queue of pending Fast Open connections (qlen);
                # taken before or after listen().
                self.fastopen_qlen = max(ival, 0)
                if self.listener is not None:
                    self.listener.fastopen_qlen = self.fastopen_qlen
            elif name == TCP_FASTOPEN_CONNECT:
                if self.conn is not None:
                    raise _oserror(errno.EISCONN)
                self.fastopen_connect = bool(ival)
            elif name == TCP_REMOTE_UDP_ENCAPS_PORT:
                # FreeBSD: only on a closed socket, and a non-zero port only with the
                # host's tunneling port on (stack/tcp_over_udp.py).
                closed = self.conn is None and self.listener is None
                if not remote_port_settable(ival, self.host.tcp_over_udp.port, closed):
                    raise _oserror(errno.EINVAL)
                self.udp_encaps_port = ival
            else:
                raise _oserror(errno.ENOPROTOOPT)
        elif (level, name) in _IP_HEADER_OPTIONS and (
                level == socket.IPPROTO_IP or self.family == socket.AF_INET6):
            configs = [cfg] + ([self.listener.config] if self.listener is not None else [])
            _set_ip_header_option(configs, (level, name), ival)
        elif level == socket.IPPROTO_IP:
            pass  # the other IP options: accepted and ignored
        elif level == socket.IPPROTO_IPV6 and self.family == socket.AF_INET6:
            _ipv6_option(self, name, ival)
        else:
            raise _oserror(errno.ENOPROTOOPT)

    def getsockopt(self, level: int, name: int) -> int | bytes:
        if level == socket.IPPROTO_IPV6 and self.family == socket.AF_INET6 and name == socket.IPV6_V6ONLY:
            return int(self.v6only)
        cfg = self.conn.config if self.conn is not None else self.config
        if (level, name) in _IP_HEADER_OPTIONS and (
                level == socket.IPPROTO_IP or self.family == socket.AF_INET6):
            return _get_ip_header_option(cfg, (level, name))
        if level == socket.SOL_SOCKET:
            values: dict[int, int | bytes] = {
                socket.SO_ERROR: self.take_error(),
                socket.SO_REUSEADDR: int(self.reuse_addr),
                socket.SO_KEEPALIVE: int(cfg.keepalive),
                socket.SO_LINGER: _LINGER.pack(int(cfg.linger_zero), 0),
                socket.SO_RCVBUF: cfg.recv_buffer,
                socket.SO_SNDBUF: cfg.send_buffer,
                socket.SO_TYPE: socket.SOCK_STREAM,
                socket.SO_ACCEPTCONN: int(self.listener is not None),
            }
            if name in values:
                return values[name]
        elif level == socket.IPPROTO_TCP:
            if name == socket.TCP_NODELAY:
                return int(cfg.nodelay)
            if name == socket.TCP_MAXSEG:
                return self.conn.snd_mss if self.conn is not None else cfg.mss
            if name == socket.TCP_FASTOPEN:
                return self.fastopen_qlen
            if name == TCP_FASTOPEN_CONNECT:
                return int(self.fastopen_connect)
            if name == TCP_REMOTE_UDP_ENCAPS_PORT:
                if self.conn is not None:
                    return self.host.encapsulation_port(self.conn)
                return self.udp_encaps_port
            # What setsockopt set, in its units (Linux tcp(7): seconds, a count).
            if name == socket.TCP_KEEPIDLE:
                return int(cfg.keepalive_idle)
            if name == socket.TCP_KEEPINTVL:
                return int(cfg.keepalive_interval)
            if name == socket.TCP_KEEPCNT:
                return cfg.keepalive_count
            if name == TCP_KEEPINIT:
                return int(cfg.connect_timeout)
            if name == socket.TCP_CONGESTION:  # the name, NUL-padded as Linux (16 bytes)
                algo = self.conn.cc.name if self.conn is not None else cfg.cc
                return algo.encode().ljust(16, b"\0")
        raise _oserror(errno.ENOPROTOOPT)

    def info(self) -> dict[str, object]:
        out: dict[str, object] = {
            "proto": "tcp",
            "state": self.state,
            "local": endpoint_text(self.local),
            "remote": endpoint_text(self.remote, "*:*"),
        }
        if self.conn is not None:
            out.update(self.conn.info())
        if self.listener is not None:
            out["backlog"] = self.listener.backlog
            out["accept_queue"] = len(self.listener.accept_queue)
            out["syn_queue"] = len(self.listener.syn_queue)
        return out


class UdpSocket:
    """A UDP socket (RFC 768): datagrams queued up to the receive buffer's size."""

    kind = "udp"

    def __init__(self, layer: SocketLayer, family: int = socket.AF_INET) -> None:
        self.layer = layer
        self.host = layer.host
        self.family = family
        self.v6only = False
        self.families: frozenset[int] = frozenset()
        self.on_change: Callable[[], None] | None = None
        self.local: tuple[str, int] | None = None
        self.remote: tuple[str, int] | None = None
        self.queue: deque[tuple[bytes, tuple[str, int]]] = deque()
        self.queued_bytes = 0
        self.recv_buffer = 212992  # Linux's default rmem
        self.send_buffer = 212992
        self.error = 0
        self.dropped = 0
        self.reuse_addr = False
        self.closed = False

    state = "UNCONN"
    readable_default = False

    @property
    def readable(self) -> bool:
        return bool(self.queue) or bool(self.error)

    @property
    def writable(self) -> bool:
        return True

    def deliver(self, data: bytes, source: tuple[str, int]) -> None:
        if self.remote is not None and source != self.remote:
            return  # a connected UDP socket only hears from its peer
        if self.queued_bytes + len(data) > self.recv_buffer:
            self.dropped += 1
            self.host.count_drop("udp_rcvbuf_full")  # counted, and an event in the log
            return
        self.queue.append((data, source))
        self.queued_bytes += len(data)
        if self.on_change is not None:
            self.on_change()

    def _ports(self, family: int) -> dict[int, Any]:
        return self.host.udp_ports if family == IPV4 else self.host.udp_ports6

    def bind(self, addr: str, port: int) -> None:
        if self.local is not None:
            raise _oserror(errno.EINVAL)
        families, bound = bind_families(self.host, self.family, self.v6only, addr)
        if port == 0:
            port = self.host.allocate_port(udp=True)
        elif any(port in self._ports(f) for f in families) or self.host.tcp_over_udp.carries_tcp(port):
            raise _oserror(errno.EADDRINUSE)  # (the TCP-over-UDP tunneling port is the host's)
        for f in families:
            self._ports(f)[port] = self
        self.families = families
        self.local = (self.host.address if bound == "0.0.0.0" else bound, port)

    def _bind_any(self) -> None:
        self.bind("::" if self.family == socket.AF_INET6 else "0.0.0.0", 0)

    def connect(self, addr: str, port: int) -> None:
        if addr in ("0.0.0.0", "::") and port == 0:
            self.remote = None  # AF_UNSPEC-style disconnect
            return
        addr = peer_address(self.host, self.family, self.v6only, self.families, addr)
        if self.local is None:
            self._bind_any()
        self.remote = (addr, port)

    def sendto(self, data: bytes, addr: tuple[str, int] | None) -> int:
        dest = addr or self.remote
        if dest is None:
            raise _oserror(errno.EDESTADDRREQ)
        if len(data) > UDP_MAX_PAYLOAD:
            raise _oserror(errno.EMSGSIZE)
        if addr is not None:
            dest = (peer_address(self.host, self.family, self.v6only, self.families, addr[0]),
                    addr[1])
        if self.local is None:
            self._bind_any()
        assert self.local is not None
        self.host.send_udp(self.local[1], dest, bytes(data))
        return len(data)

    def recvfrom(self) -> tuple[bytes, tuple[str, int]]:
        if not self.queue:
            raise BlockingIOError(errno.EAGAIN, "no datagram")
        data, source = self.queue.popleft()
        self.queued_bytes -= len(data)
        return data, source

    def take_error(self) -> int:
        err, self.error = self.error, 0
        return err

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.on_change = None
        if self.local is not None:
            for f in self.families:
                if self._ports(f).get(self.local[1]) is self:
                    del self._ports(f)[self.local[1]]
        self.layer.unregister(self)

    def setsockopt(self, level: int, name: int, value: int | bytes) -> None:
        ival = value if isinstance(value, int) else int.from_bytes(bytes(value)[:4], "little", signed=True)
        if level == socket.SOL_SOCKET:
            if name == socket.SO_RCVBUF:
                self.recv_buffer = max(min(ival * 2, 16 << 20), 4096)
            elif name == socket.SO_SNDBUF:
                self.send_buffer = max(min(ival * 2, 16 << 20), 4096)
            elif name == socket.SO_REUSEADDR:
                self.reuse_addr = bool(ival)
            elif name in (socket.SO_REUSEPORT, socket.SO_BROADCAST, socket.SO_PRIORITY):
                pass
            else:
                raise _oserror(errno.ENOPROTOOPT)
        elif level == socket.IPPROTO_IP:
            pass
        elif level == socket.IPPROTO_IPV6 and self.family == socket.AF_INET6:
            _ipv6_option(self, name, ival)
        else:
            raise _oserror(errno.ENOPROTOOPT)

    def getsockopt(self, level: int, name: int) -> int | bytes:
        if level == socket.IPPROTO_IPV6 and self.family == socket.AF_INET6 and name == socket.IPV6_V6ONLY:
            return int(self.v6only)
        if level == socket.SOL_SOCKET:
            values: dict[int, int | bytes] = {
                socket.SO_ERROR: self.take_error(),
                socket.SO_REUSEADDR: int(self.reuse_addr),
                socket.SO_RCVBUF: self.recv_buffer,
                socket.SO_SNDBUF: self.send_buffer,
                socket.SO_TYPE: socket.SOCK_DGRAM,
            }
            if name in values:
                return values[name]
        raise _oserror(errno.ENOPROTOOPT)

    def info(self) -> dict[str, object]:
        return {
            "proto": "udp",
            "state": "UNCONN" if self.remote is None else "ESTAB",
            "local": endpoint_text(self.local),
            "remote": endpoint_text(self.remote, "*:*"),
            "queued": self.queued_bytes,
            "dropped": self.dropped,
        }


class SocketLayer:
    """Creates sockets on a host; one per daemon."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.address = host.address  # the stack's own IPv4 address
        self._sockets: dict[int, TcpSocket | UdpSocket] = {}

    @property
    def address6(self) -> str | None:
        """The stack's own IPv6 address (None: IPv6 off)."""
        return self.host.address6

    def tcp_socket(self, family: int = socket.AF_INET) -> TcpSocket:
        sock = TcpSocket(self, family)
        self.register(sock)
        return sock

    def tcp_listener(self, port: int, backlog: int = 128) -> TcpSocket:
        """A socket listening on `port` of every address, both families when the host
        has IPv6 (closed again on failure)."""
        sock = self.tcp_socket(socket.AF_INET6 if self.host.address6 else socket.AF_INET)
        try:
            sock.bind("::" if self.host.address6 else "0.0.0.0", port)
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
        return sock

    def udp_socket(self, family: int = socket.AF_INET) -> UdpSocket:
        sock = UdpSocket(self, family)
        self.register(sock)
        return sock

    def register(self, sock: TcpSocket | UdpSocket) -> None:
        self._sockets[id(sock)] = sock

    def unregister(self, sock: TcpSocket | UdpSocket) -> None:
        self._sockets.pop(id(sock), None)

    def all_sockets(self) -> list[TcpSocket | UdpSocket | OrphanConnection]:
        """Every socket, and the connections that outlived theirs (FIN-WAIT, TIME-WAIT)."""
        listed: list[TcpSocket | UdpSocket | OrphanConnection] = list(self._sockets.values())
        listed.extend(OrphanConnection(c) for c in self.host.conns.values()
                      if self.host.owner_of(c) is None)
        return listed


class OrphanConnection:
    """A connection whose socket was closed: it still finishes its close (or waits in
    TIME-WAIT), so `tcplab ss` shows it like `ss` shows them."""

    kind = "tcp"

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def info(self) -> dict[str, object]:
        conn = self.conn
        return {
            "proto": "tcp",
            "local": endpoint_text(conn.local),
            "remote": endpoint_text(conn.remote),
            "orphan": True,
            **conn.info(),
        }
