"""The shim <-> daemon control protocol: encode and decode, no I/O.

The format is specified once, in docs/shim-protocol.md; docs/shim-vectors.json holds
test vectors that this module and the C shim (shim/protocol.c) are both tested against.

Every message is one SOCK_SEQPACKET record: a 20-byte header (network byte order)
followed by an op-specific body. File descriptors travel beside the bytes as
SCM_RIGHTS; the decoders are told how many arrived and check that the op allows it.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from enum import IntEnum

MAGIC = 0x544C4142  # "TLAB"
VERSION = 4
HEADER = struct.Struct("!IBBHIII")  # magic, version, op, flags, seq, status, length
HEADER_SIZE = HEADER.size  # 20
# family, port, flowinfo, address (IPv6, or IPv4 in its first 4 bytes), scope_id: 28 bytes
ADDR = struct.Struct("!HHI16sI")
ADDR_SIZE = ADDR.size

MAX_OPTVAL = 256  # bytes of a socket option value
MAX_PAYLOAD = 65507  # a UDP datagram's payload over IPv4
MAX_BODY = 2 * ADDR_SIZE + 4 + MAX_PAYLOAD  # the largest body (SENDTO)
MAX_MESSAGE = HEADER_SIZE + MAX_BODY  # 65587
MAX_LIST_CHUNK = 60000  # JSON bytes in one LIST reply
MAX_DETACH_OPTIONS = 32

FLAG_MORE = 0x0001  # reply: another LIST chunk follows

AF_UNSPEC = 0
AF_INET = 2
AF_INET6 = 10
KIND_TCP = 1
KIND_UDP = 2


class Op(IntEnum):
    SOCKET = 1
    BIND = 2
    LISTEN = 3
    ACCEPT = 4
    CONNECT = 5
    SHUTDOWN = 6
    GETSOCKNAME = 7
    GETPEERNAME = 8
    GETSOCKOPT = 9
    SETSOCKOPT = 10
    SENDTO = 11
    DETACH = 12
    LIST = 13
    ADOPT = 14
    PKTINFO = 15


# ACCEPT is not a request (version 2): an ACCEPT reply with seq 0, carrying the new
# connection, is the record the daemon writes on a listening socket's own stream for
# each connection waiting to be accepted (docs/shim-protocol.md 5.2).
# PKTINFO is not a request either (version 3): it is the content of the small sealed
# file that rides (SCM_RIGHTS) with each datagram to a UDP socket that asked for
# IP_PKTINFO / IPV6_RECVPKTINFO: where the datagram was sent (docs 5.5).
NOT_A_REQUEST = frozenset({Op.ACCEPT, Op.PKTINFO})
PKTINFO_WANT_IP = 0x01  # IP_PKTINFO (struct in_pktinfo)
PKTINFO_WANT_IPV6 = 0x02  # IPV6_RECVPKTINFO (struct in6_pktinfo)
_PKTINFO_WANTS = PKTINFO_WANT_IP | PKTINFO_WANT_IPV6


# Ops whose request carries no descriptor; every other request carries exactly one.
REQUEST_WITHOUT_FD = frozenset({Op.SOCKET, Op.LIST})
# Ops whose successful reply carries exactly one descriptor (the new socket).
REPLY_WITH_FD = frozenset({Op.SOCKET, Op.ACCEPT})


class ProtocolError(ValueError):
    """A malformed message. `reason` is one of the names in docs/shim-protocol.md:
    short, magic, version, length, op, flags, body, fds, value."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Addr:
    """A socket address: AF_INET (IPv4 text), AF_INET6 (IPv6 text, as inet_ntop writes
    it, with flowinfo and scope_id), or AF_UNSPEC (0), meaning "none" (0.0.0.0, port 0).

    On the wire (28 bytes): u16 family, u16 port, u32 flowinfo, 16 address bytes, u32
    scope_id. AF_INET and AF_UNSPEC put the IPv4 address in the first 4 of the 16 and
    zero everywhere else (docs/shim-protocol.md 4.2)."""

    family: int = AF_INET
    ip: str = "0.0.0.0"
    port: int = 0
    flowinfo: int = 0
    scope_id: int = 0

    def pack(self) -> bytes:
        if self.family == AF_INET6:
            raw = socket.inet_pton(socket.AF_INET6, self.ip)
            return ADDR.pack(self.family, self.port, self.flowinfo, raw, self.scope_id)
        return ADDR.pack(self.family, self.port, 0, socket.inet_aton(self.ip) + bytes(12), 0)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> Addr:
        family, port, flowinfo, raw, scope_id = ADDR.unpack(data)
        if family == AF_INET6:
            return cls(family, socket.inet_ntop(socket.AF_INET6, raw), port, flowinfo, scope_id)
        if family not in (AF_UNSPEC, AF_INET):
            raise ProtocolError("value", f"address family {family}")
        if flowinfo or scope_id or any(raw[4:]):
            raise ProtocolError("value", "nonzero bytes in an IPv4 address")
        return cls(family, socket.inet_ntoa(raw[:4]), port)

    @classmethod
    def of(cls, ip: str, port: int) -> Addr:
        """The address of a stack endpoint: AF_INET6 for IPv6 text, else AF_INET."""
        return cls(AF_INET6 if ":" in ip else AF_INET, ip, port)

    @property
    def tuple(self) -> tuple[str, int]:
        return (self.ip, self.port)


NO_ADDR = Addr(AF_UNSPEC, "0.0.0.0", 0)


@dataclass(slots=True)
class Request:
    op: Op
    seq: int = 0
    kind: int = 0  # SOCKET
    family: int = AF_INET  # SOCKET: AF_INET or AF_INET6 (the program's socket())
    addr: Addr | None = None  # BIND, CONNECT, SENDTO
    backlog: int = 0  # LISTEN
    how: int = 0  # SHUTDOWN
    level: int = 0  # GETSOCKOPT, SETSOCKOPT
    name: int = 0
    optlen: int = 0  # GETSOCKOPT: the caller's buffer size
    value: bytes = b""  # SETSOCKOPT
    msg_flags: int = 0  # SENDTO
    payload: bytes = b""  # SENDTO
    src: Addr = NO_ADDR  # SENDTO: the source address asked for (IP_PKTINFO); NO_ADDR: none


@dataclass(slots=True)
class Reply:
    op: Op
    seq: int = 0
    status: int = 0  # 0 or a Linux errno (EINPROGRESS for a started CONNECT)
    flags: int = 0  # FLAG_MORE on LIST chunks but the last
    addr: Addr | None = None  # GETSOCKNAME, GETPEERNAME, DETACH (bound address)
    local: Addr | None = None  # ACCEPT
    peer: Addr | None = None  # ACCEPT
    value: bytes = b""  # GETSOCKOPT
    sent: int = 0  # SENDTO
    options: list[tuple[int, int, bytes]] = field(default_factory=list)  # DETACH
    data: bytes = b""  # LIST (a chunk of JSON)
    src: Addr | None = None  # PKTINFO: where it came from (IPv6 sources; else NO_ADDR)
    dst: Addr | None = None  # PKTINFO: where the datagram was sent
    ifindex: int = 0  # PKTINFO: the interface it came in on
    want: int = 0  # PKTINFO: which control messages the socket asked for


_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_OPT_GET = struct.Struct("!iiI")
_OPT_SET = struct.Struct("!ii")
_OPT_ENTRY = struct.Struct("!iiI")
_PKTINFO_TAIL = struct.Struct("!IB3s")  # ifindex, want, 3 zero bytes


def _header(op: int, flags: int, seq: int, status: int, body: bytes) -> bytes:
    return HEADER.pack(MAGIC, VERSION, op, flags, seq & 0xFFFFFFFF, status, len(body)) + body


def _need_addr(addr: Addr | None) -> Addr:
    if addr is None:
        raise ValueError("this op needs an address")
    return addr


def encode_request(req: Request) -> bytes:
    op = Op(req.op)
    if op is Op.SOCKET:
        body = bytes([req.kind, req.family, 0, 0])
    elif op in (Op.BIND, Op.CONNECT):
        body = _need_addr(req.addr).pack()
    elif op is Op.LISTEN:
        body = _I32.pack(req.backlog)
    elif op is Op.SHUTDOWN:
        body = _U32.pack(req.how)
    elif op is Op.GETSOCKOPT:
        body = _OPT_GET.pack(req.level, req.name, req.optlen)
    elif op is Op.SETSOCKOPT:
        if len(req.value) > MAX_OPTVAL:
            raise ValueError("option value too long")
        body = _OPT_SET.pack(req.level, req.name) + bytes(req.value)
    elif op is Op.SENDTO:
        if len(req.payload) > MAX_PAYLOAD:
            raise ValueError("payload too long")
        body = (_need_addr(req.addr).pack() + req.src.pack()
                + _U32.pack(req.msg_flags) + bytes(req.payload))
    elif op in NOT_A_REQUEST:
        raise ValueError(f"{op.name} is not a request")
    else:  # GETSOCKNAME GETPEERNAME DETACH LIST ADOPT
        body = b""
    return _header(op, 0, req.seq, 0, body)


def encode_reply(rep: Reply) -> bytes:
    op = Op(rep.op)
    body = b""
    if rep.status == 0:
        if op is Op.ACCEPT:
            body = (rep.local or NO_ADDR).pack() + (rep.peer or NO_ADDR).pack()
        elif op in (Op.GETSOCKNAME, Op.GETPEERNAME):
            body = (rep.addr or NO_ADDR).pack()
        elif op is Op.GETSOCKOPT:
            if len(rep.value) > MAX_OPTVAL:
                raise ValueError("option value too long")
            body = bytes(rep.value)
        elif op is Op.SENDTO:
            body = _U32.pack(rep.sent)
        elif op is Op.DETACH:
            if len(rep.options) > MAX_DETACH_OPTIONS:
                raise ValueError("too many options")
            parts = [(rep.addr or NO_ADDR).pack(), _U32.pack(len(rep.options))]
            for level, name, value in rep.options:
                if len(value) > MAX_OPTVAL:
                    raise ValueError("option value too long")
                parts.append(_OPT_ENTRY.pack(level, name, len(value)) + bytes(value))
            body = b"".join(parts)
        elif op is Op.LIST:
            if len(rep.data) > MAX_LIST_CHUNK:
                raise ValueError("LIST chunk too long")
            body = bytes(rep.data)
        elif op is Op.PKTINFO:
            if rep.want & ~_PKTINFO_WANTS:
                raise ValueError("unknown PKTINFO want bits")
            body = ((rep.src or NO_ADDR).pack() + (rep.dst or NO_ADDR).pack()
                    + _PKTINFO_TAIL.pack(rep.ifindex, rep.want, b""))
    flags = rep.flags if op is Op.LIST and rep.status == 0 else 0
    return _header(op, flags, rep.seq, rep.status, body)


def _split_header(data: bytes | memoryview) -> tuple[Op, int, int, int, memoryview]:
    view = memoryview(data)
    if len(view) < HEADER_SIZE:
        raise ProtocolError("short", f"{len(view)} bytes")
    magic, version, op, flags, seq, status, length = HEADER.unpack_from(view)
    if magic != MAGIC:
        raise ProtocolError("magic", f"{magic:#010x}")
    if version != VERSION:
        raise ProtocolError("version", str(version))
    if length > MAX_BODY or length != len(view) - HEADER_SIZE:
        raise ProtocolError("length", f"header says {length}, got {len(view) - HEADER_SIZE}")
    try:
        opv = Op(op)
    except ValueError:
        raise ProtocolError("op", str(op)) from None
    return opv, flags, seq, status, view[HEADER_SIZE:]


def _fixed(body: memoryview, size: int) -> None:
    if len(body) != size:
        raise ProtocolError("body", f"{len(body)} bytes, expected {size}")


def decode_request(data: bytes | memoryview, nfds: int = 0) -> Request:
    """Parse one request; `nfds` is how many descriptors came with it."""
    op, flags, seq, status, body = _split_header(data)
    if op in NOT_A_REQUEST:
        raise ProtocolError("op", f"{op.name} is not a request")
    if flags != 0 or status != 0:
        raise ProtocolError("flags", f"flags {flags:#x} status {status}")
    want_fds = 0 if op in REQUEST_WITHOUT_FD else 1
    if nfds != want_fds:
        raise ProtocolError("fds", f"{op.name} carries {want_fds} descriptor(s), got {nfds}")
    req = Request(op, seq)
    if op is Op.SOCKET:
        _fixed(body, 4)
        if body[0] not in (KIND_TCP, KIND_UDP) or body[1] not in (AF_INET, AF_INET6) \
                or bytes(body[2:4]) != b"\0\0":
            raise ProtocolError("value", f"socket kind {body[0]} family {body[1]}")
        req.kind = body[0]
        req.family = body[1]
    elif op in (Op.BIND, Op.CONNECT):
        _fixed(body, ADDR_SIZE)
        req.addr = Addr.unpack(body)
        if op is Op.BIND and req.addr.family not in (AF_INET, AF_INET6):
            raise ProtocolError("value", "bind needs AF_INET or AF_INET6")
    elif op is Op.LISTEN:
        _fixed(body, 4)
        (req.backlog,) = _I32.unpack(body)
    elif op is Op.SHUTDOWN:
        _fixed(body, 4)
        (req.how,) = _U32.unpack(body)
        if req.how > 2:
            raise ProtocolError("value", f"shutdown how {req.how}")
    elif op is Op.GETSOCKOPT:
        _fixed(body, _OPT_GET.size)
        req.level, req.name, req.optlen = _OPT_GET.unpack(body)
    elif op is Op.SETSOCKOPT:
        if not _OPT_SET.size <= len(body) <= _OPT_SET.size + MAX_OPTVAL:
            raise ProtocolError("body", f"{len(body)} bytes")
        req.level, req.name = _OPT_SET.unpack_from(body)
        req.value = bytes(body[_OPT_SET.size :])
    elif op is Op.SENDTO:
        if len(body) < 2 * ADDR_SIZE + 4:
            raise ProtocolError("body", f"{len(body)} bytes")
        req.addr = Addr.unpack(body[:ADDR_SIZE])
        if req.addr.family not in (AF_INET, AF_INET6):
            raise ProtocolError("value", "sendto needs AF_INET or AF_INET6")
        req.src = Addr.unpack(body[ADDR_SIZE : 2 * ADDR_SIZE])
        (req.msg_flags,) = _U32.unpack_from(body, 2 * ADDR_SIZE)
        req.payload = bytes(body[2 * ADDR_SIZE + 4 :])
    else:
        _fixed(body, 0)
    return req


def decode_reply(data: bytes | memoryview, nfds: int = 0) -> Reply:
    """Parse one reply; `nfds` is how many descriptors came with it."""
    op, flags, seq, status, body = _split_header(data)
    if flags & ~FLAG_MORE or (flags and (op is not Op.LIST or status != 0)):
        raise ProtocolError("flags", f"{flags:#x}")
    want_fds = 1 if status == 0 and op in REPLY_WITH_FD else 0
    if nfds != want_fds:
        raise ProtocolError("fds", f"{op.name} reply carries {want_fds} descriptor(s), got {nfds}")
    rep = Reply(op, seq, status, flags)
    if status != 0:
        _fixed(body, 0)
        return rep
    if op is Op.ACCEPT:
        _fixed(body, 2 * ADDR_SIZE)
        rep.local = Addr.unpack(body[:ADDR_SIZE])
        rep.peer = Addr.unpack(body[ADDR_SIZE:])
    elif op in (Op.GETSOCKNAME, Op.GETPEERNAME):
        _fixed(body, ADDR_SIZE)
        rep.addr = Addr.unpack(body)
    elif op is Op.GETSOCKOPT:
        if len(body) > MAX_OPTVAL:
            raise ProtocolError("body", f"{len(body)} bytes")
        rep.value = bytes(body)
    elif op is Op.SENDTO:
        _fixed(body, 4)
        (rep.sent,) = _U32.unpack(body)
    elif op is Op.DETACH:
        if len(body) < ADDR_SIZE + 4:
            raise ProtocolError("body", f"{len(body)} bytes")
        rep.addr = Addr.unpack(body[:ADDR_SIZE])
        (count,) = _U32.unpack_from(body, ADDR_SIZE)
        if count > MAX_DETACH_OPTIONS:
            raise ProtocolError("value", f"{count} options")
        pos = ADDR_SIZE + 4
        for _ in range(count):
            if len(body) - pos < _OPT_ENTRY.size:
                raise ProtocolError("body", "option entry cut short")
            level, name, length = _OPT_ENTRY.unpack_from(body, pos)
            pos += _OPT_ENTRY.size
            if length > MAX_OPTVAL or len(body) - pos < length:
                raise ProtocolError("body", "option value cut short")
            rep.options.append((level, name, bytes(body[pos : pos + length])))
            pos += length
        if pos != len(body):
            raise ProtocolError("body", "bytes after the options")
    elif op is Op.LIST:
        if len(body) > MAX_LIST_CHUNK:
            raise ProtocolError("body", f"{len(body)} bytes")
        rep.data = bytes(body)
    elif op is Op.PKTINFO:
        _fixed(body, 2 * ADDR_SIZE + _PKTINFO_TAIL.size)
        rep.src = Addr.unpack(body[:ADDR_SIZE])
        rep.dst = Addr.unpack(body[ADDR_SIZE : 2 * ADDR_SIZE])
        rep.ifindex, rep.want, pad = _PKTINFO_TAIL.unpack_from(body, 2 * ADDR_SIZE)
        if rep.want & ~_PKTINFO_WANTS or pad != b"\0\0\0":
            raise ProtocolError("value", f"PKTINFO want {rep.want:#x}")
    else:  # SOCKET BIND LISTEN CONNECT SHUTDOWN SETSOCKOPT ADOPT
        _fixed(body, 0)
    return rep


ACCEPT_RECORD_SIZE = HEADER_SIZE + 2 * ADDR_SIZE  # 76


def encode_accept_record(local: Addr, peer: Addr) -> bytes:
    """The record a listener's stream carries for one waiting connection (with the
    connection's descriptor as SCM_RIGHTS on its bytes)."""
    return encode_reply(Reply(Op.ACCEPT, 0, local=local, peer=peer))


PKTINFO_RECORD_SIZE = HEADER_SIZE + 2 * ADDR_SIZE + _PKTINFO_TAIL.size  # 84


def encode_pktinfo_record(dst: Addr, ifindex: int, want: int, src: Addr = NO_ADDR) -> bytes:
    """What a UDP datagram's PKTINFO file holds: where it was sent, and (for an IPv6
    source, which SCM_CREDENTIALS cannot hold) where it came from (docs 5.5)."""
    return encode_reply(Reply(Op.PKTINFO, 0, src=src, dst=dst, ifindex=ifindex, want=want))
