"""The runner's only contact with the stack: a Host and its sockets layer on a virtual clock.

Everything the runner needs of the stack goes through `StackAdapter` and `Sock`, so when
the stack's public API changes only this module follows. It uses public methods and attributes only:
Host(receive_packet, run_timers, next_deadline, after, tcp_defaults, listeners,
listeners6, conns; `address6` for IPv6 scripts), SocketLayer (tcp_socket with the
script's family, all_sockets) and TcpSocket (bind, listen, accept, connect, send, recv,
shutdown, close, setsockopt, getsockopt, take_error, readable, writable, state, conn,
family).

What the socket layer does not offer, and this module works around:
- MSG_PEEK: `Sock.peek` reads the connection's `readable_bytes` (the script's buffer
  contents are never compared, only the count);
- TCP_INFO: `Sock.tcp_info` reads the state and the negotiated options from the
  connection (`conn.opts`: `ts_ok`, `sack_ok`, `snd_wscale_offered`);
- dropping TIME-WAIT connections (FreeBSD's `tcpdrop`): `drop_state` aborts the
  orphaned connections through `Connection.abort` + `Host.after`.

TCP over UDP (FreeBSD's udp_tunneling_port/overhead sysctls) is `Host.set_tcp_udp_port`
and `Host.tcp_over_udp.overhead` (stack/tcp_over_udp.py).
"""

from __future__ import annotations

import errno
import random
import socket
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from stack.host import Host
from stack.sockets import SocketLayer, TcpSocket
from stack.tcp.fastopen import FASTOPEN_CLIENT, FASTOPEN_SERVER, CookieCache
from stack.wire.ipv4 import IPPROTO_TCP, IPPROTO_UDP
from stack.wire.ipv6 import skip_headers

LOCAL_ADDR = "192.168.0.1"  # packetdrill's defaults
REMOTE_ADDR = "192.0.2.1"
LOCAL_ADDR6 = "fd3d:fa7b:d17d::1"  # packetdrill's IPv6 defaults (RFC 4193 ULA, RFC 3849)
REMOTE_ADDR6 = "2001:db8::1"


@dataclass
class StackSettings:
    """The host-wide TCP settings a script may change (its sysctls), FreeBSD's defaults."""

    mtu: int = 1500
    recv_buffer: int = 65536  # net.inet.tcp.recvspace
    send_buffer: int = 32768  # net.inet.tcp.sendspace
    sack: bool = True  # net.inet.tcp.sack.enable
    window_scaling: bool = True  # net.inet.tcp.rfc1323 bit 0
    timestamps: bool = True  # net.inet.tcp.rfc1323 bit 1
    delayed_ack: float = 0.1  # net.inet.tcp.delacktime (ms), FreeBSD's 100 ms
    initial_rto: float = 1.0  # net.inet.tcp.rexmit_initial
    keepalive_idle: float = 7200.0  # net.inet.tcp.keepidle
    keepalive_interval: float = 75.0  # net.inet.tcp.keepintvl
    keepalive_count: int = 8  # net.inet.tcp.keepcnt
    connect_timeout: float = 75.0  # net.inet.tcp.keepinit (TCP_KEEPINIT), FreeBSD's 75 s
    rfc5961_rst: bool = True  # net.inet.tcp.insecure_rst=0
    rfc5961_syn: bool = True  # net.inet.tcp.insecure_syn=0
    drop_synfin: bool = False  # net.inet.tcp.drop_synfin
    fastopen_client: bool = True  # net.inet.tcp.fastopen.client_enable (FreeBSD's 1)
    fastopen_server: bool = False  # net.inet.tcp.fastopen.server_enable (FreeBSD's 0)
    ecn: int = 2  # net.inet.tcp.ecn.enable (0 off, 1 request and accept, 2 accept only)
    udp_tunneling_port: int = 0  # net.inet.tcp.udp_tunneling_port (TCP over UDP; 0 off)
    udp_tunneling_overhead: int = 8  # net.inet.tcp.udp_tunneling_overhead (MSS less this)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Deterministic ISS, TS offsets and ports: the host draws them from `random`."""
    saved = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved)


class StackAdapter:
    """One host at LOCAL_ADDR; the script is the peer at REMOTE_ADDR.

    For an IPv6 script (`ipv6=True`) the host also owns LOCAL_ADDR6, the peer is
    REMOTE_ADDR6 and the script's sockets are the stack's AF_INET6 sockets."""

    def __init__(self, settings: StackSettings, *, ipv6: bool = False) -> None:
        self.now = 0.0
        self.outbox: deque[tuple[float, bytes]] = deque()
        self.passed_over = 0  # packets that are no TCP segment (the host's ICMP errors)
        self.ipv6 = ipv6
        self.family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self.local_addr = LOCAL_ADDR6 if ipv6 else LOCAL_ADDR
        self.remote_addr = REMOTE_ADDR6 if ipv6 else REMOTE_ADDR
        self.host = Host(LOCAL_ADDR, self._transmit, mtu=settings.mtu, clock=lambda: self.now,
                         address6=LOCAL_ADDR6 if ipv6 else None)
        self.layer = SocketLayer(self.host)
        self.apply(settings)

    def apply(self, s: StackSettings) -> None:
        """Settings for sockets made from now on (like a sysctl)."""
        cfg = self.host.tcp_defaults
        cfg.recv_buffer = s.recv_buffer
        cfg.send_buffer = s.send_buffer
        cfg.sack = s.sack
        cfg.window_scaling = s.window_scaling
        cfg.timestamps = s.timestamps
        cfg.delayed_ack = s.delayed_ack
        cfg.initial_rto = s.initial_rto
        cfg.keepalive_idle = s.keepalive_idle
        cfg.keepalive_interval = s.keepalive_interval
        cfg.keepalive_count = s.keepalive_count
        cfg.connect_timeout = s.connect_timeout
        cfg.rfc5961_rst = s.rfc5961_rst
        cfg.rfc5961_syn = s.rfc5961_syn
        cfg.drop_synfin = s.drop_synfin
        cfg.ecn = s.ecn
        host = self.host
        if not s.fastopen_client:
            # FreeBSD flushes its cookie cache when client_enable goes to 0 (the suite's
            # scripts do that first, to start without cookies).
            host.fastopen_cookies = CookieCache()
        host.fastopen_mode = ((FASTOPEN_CLIENT if s.fastopen_client else 0)
                              | (FASTOPEN_SERVER if s.fastopen_server else 0))
        # TCP over UDP (stack/tcp_over_udp.py): FreeBSD's two sysctls.
        host.set_tcp_udp_port(s.udp_tunneling_port)
        host.tcp_over_udp.overhead = s.udp_tunneling_overhead

    def _transmit(self, parts: list[bytes | memoryview]) -> None:
        packet = b"".join(bytes(p) for p in parts)
        if self._is_segment(packet):
            self.outbox.append((self.now, packet))
        else:
            # packetdrill's sniffer takes only packets of the socket under test: an ICMP
            # error the host sends (a port unreachable for a UDP datagram to a port other
            # than the tunneling one) is passed over, never matched against a `>` line.
            self.passed_over += 1

    def _is_segment(self, packet: bytes) -> bool:
        """A TCP segment, plain or in UDP from the tunneling port."""
        if packet[0] >> 4 == 6:
            where = skip_headers(packet)
            if where is None:
                return False
            proto, start = where
        else:
            proto, start = packet[9], (packet[0] & 0x0F) * 4
        if proto == IPPROTO_TCP:
            return True
        tunnel = self.host.tcp_over_udp
        return (proto == IPPROTO_UDP and len(packet) >= start + 2
                and tunnel.enabled and int.from_bytes(packet[start : start + 2], "big") == tunnel.port)

    # ---------------------------------------------------------- the clock

    def next_deadline(self) -> float | None:
        return self.host.next_deadline()

    def advance(self, until: float) -> None:
        """Move the clock to `until`, firing every timer due on the way, in order."""
        while True:
            deadline = self.host.next_deadline()
            if deadline is None or deadline > until:
                break
            self.now = max(self.now, deadline)
            self.host.run_timers(self.now)
        self.now = max(self.now, until)

    def step(self, limit: float) -> bool:
        """Fire the next timer if it is due by `limit`; False if there is none."""
        deadline = self.host.next_deadline()
        if deadline is None or deadline > limit:
            return False
        self.now = max(self.now, deadline)
        self.host.run_timers(self.now)
        return True

    def inject(self, packet: bytes) -> None:
        self.host.receive_packet(packet, self.now)

    # ---------------------------------------------------------- sockets

    def tcp_socket(self) -> Sock:
        """socket(..., SOCK_STREAM, IPPROTO_TCP) in the script's family."""
        return Sock(self, self.layer.tcp_socket(self.family))

    def count_state(self, state: str, port: int | None = None, ipv6: bool | None = None) -> int:
        """Sockets and connections in `state` (FreeBSD's `sockstat -s`), on local `port`,
        of one family (`sockstat -4`, `-6`) if `ipv6` is given.

        The open sockets and the orphaned connections (all_sockets), and the half-open
        connections waiting in the listeners' SYN queues."""
        states: list[tuple[str, int, bool]] = []
        for sock in self.layer.all_sockets():
            info = sock.info()
            if info.get("proto") == "tcp":
                local, remote = str(info.get("local", "")), str(info.get("remote", ""))
                lport = int(local.rsplit(":", 1)[1]) if local[-1:].isdigit() else 0
                # IPv6 endpoints are bracketed; an AF_INET6 socket not bound yet is IPv6.
                v6 = (local.startswith("[") or remote.startswith("[")
                      or (isinstance(sock, TcpSocket) and sock.family == socket.AF_INET6
                          and not local[:1].isdigit() and not remote[:1].isdigit()))
                states.append((str(info.get("state")), lport, v6))
        seen: set[int] = set()
        for listener in [*self.host.listeners.values(), *self.host.listeners6.values()]:
            if id(listener) in seen:  # a dual-stack listener is in both tables
                continue
            seen.add(id(listener))
            states.extend((str(c.state), listener.port, ":" in c.remote[0]) for c in listener.syn_queue.values())
        return sum(1 for s, p, v6 in states
                   if s == state and (port is None or p == port) and (ipv6 is None or v6 == ipv6))

    def drop_state(self, state: str) -> None:
        """Abort every connection in `state` (FreeBSD's `tcpdrop -s STATE`)."""
        for conn in list(self.host.conns.values()):
            if str(conn.state) == state:
                conn.abort(self.now)
                self.host.after(conn, self.now)


class Sock:
    """A TCP socket of the stack, as the script's system calls see it."""

    def __init__(self, adapter: StackAdapter, sock: TcpSocket) -> None:
        self.adapter = adapter
        self.sock = sock
        self.fastopen_client = False  # FreeBSD's TCP_FASTOPEN set before connecting

    # Every call below raises OSError with a Linux errno, or BlockingIOError.

    def bind(self, port: int) -> None:
        self.sock.bind("::" if self.adapter.ipv6 else "0.0.0.0", port)

    def listen(self, backlog: int) -> None:
        self.sock.listen(backlog)

    def accept(self) -> Sock | None:
        child = self.sock.accept()
        return Sock(self.adapter, child) if child is not None else None

    def connect(self, port: int) -> None:
        self.sock.connect(self.adapter.remote_addr, port)

    def sendto_fastopen(self, data: bytes, port: int) -> int:
        """An implied connect whose SYN carries (or asks for) a Fast Open cookie and the
        data (FreeBSD: sendto() on a socket with TCP_FASTOPEN set; Linux: MSG_FASTOPEN)."""
        return self.sock.sendto_fastopen(data, self.adapter.remote_addr, port)

    @property
    def listening(self) -> bool:
        return self.sock.state == "LISTEN"

    @property
    def connected(self) -> bool:
        """connect() (or an implied one) has been called."""
        return self.sock.conn is not None

    def send(self, data: bytes) -> int:
        return self.sock.send(data)

    def recv(self, n: int) -> bytes:
        return self.sock.recv(n)

    def peek(self, n: int) -> int:
        """How many bytes recv(n, MSG_PEEK) would return; raises like recv otherwise."""
        conn = self.sock.conn
        if conn is None:
            raise OSError(errno.ENOTCONN, "not connected")
        if conn.readable_bytes:
            return min(n, conn.readable_bytes)
        return len(self.sock.recv(n))  # no data: recv raises or returns b"" as it must

    def shutdown(self, how: int) -> None:
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()

    def setsockopt(self, level: int, name: int, value: int | bytes) -> None:
        self.sock.setsockopt(level, name, value)

    def getsockopt(self, level: int, name: int) -> int | bytes:
        return self.sock.getsockopt(level, name)

    @property
    def state(self) -> str:
        return self.sock.state

    @property
    def readable(self) -> bool:
        return self.sock.readable

    @property
    def writable(self) -> bool:
        return self.sock.writable

    def take_error(self) -> int:
        """SO_ERROR: the pending error, cleared."""
        return self.sock.take_error()

    @property
    def connecting(self) -> bool:
        return self.sock.state in ("SYN-SENT", "SYN-RECEIVED") and not self.sock.error

    def tcp_info(self) -> dict[str, Any]:
        conn = self.sock.conn
        info: dict[str, Any] = {"state": self.sock.state, "ts": False, "sack": False, "ws": False,
                                "ecn": False}
        if conn is not None:
            opts = conn.opts  # the negotiated options (stack/tcp/options.py)
            info["ts"] = bool(opts.ts_ok)
            info["sack"] = bool(opts.sack_ok)
            info["ws"] = bool(opts.snd_wscale_offered and conn.config.window_scaling)
            info["ecn"] = bool(conn.ecn.ok)  # RFC 3168 negotiated (stack/tcp/ecn.py)
        return info
