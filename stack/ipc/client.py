"""A small client of the daemon's control socket (for `tcplab ss`)."""

from __future__ import annotations

import errno
import json
import socket
import time

from stack.ipc import protocol as p


def query_sockets(path: str, timeout: float = 5.0) -> list[dict[str, object]]:
    """Ask the daemon at `path` for its sockets: `[s.info() for s in all_sockets()]`.

    Raises OSError when the daemon cannot be reached or answers nonsense (the message
    says which), TimeoutError when it does not answer within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        seq = 1
        sock.sendall(p.encode_request(p.Request(p.Op.LIST, seq)))
        chunks: list[bytes] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(errno.ETIMEDOUT, "the stack daemon did not answer")
            sock.settimeout(left)
            data, anc, flags, _ = sock.recvmsg(p.MAX_MESSAGE + 1, socket.CMSG_SPACE(16))
            for level, kind, payload in anc:  # none expected; never leak one
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    for i in range(0, len(payload) - len(payload) % 4, 4):
                        fd = int.from_bytes(payload[i : i + 4], "little", signed=True)
                        socket.close(fd)
            if not data:
                raise OSError(errno.ECONNRESET, "the stack daemon closed the connection")
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                raise OSError(errno.EPROTO, "oversized reply from the stack daemon")
            try:
                rep = p.decode_reply(data, 0)
            except p.ProtocolError as exc:
                raise OSError(errno.EPROTO, f"bad reply from the stack daemon: {exc}") from None
            if rep.op is not p.Op.LIST or rep.seq != seq:
                raise OSError(errno.EPROTO, "unexpected reply from the stack daemon")
            if rep.status:
                raise OSError(rep.status, errno.errorcode.get(rep.status, "error"))
            chunks.append(rep.data)
            if not rep.flags & p.FLAG_MORE:
                break
    try:
        rows = json.loads(b"".join(chunks) or b"[]")
    except ValueError:
        raise OSError(errno.EPROTO, "the stack daemon sent invalid JSON") from None
    if not isinstance(rows, list):
        raise OSError(errno.EPROTO, "the stack daemon sent something other than a list")
    return [row for row in rows if isinstance(row, dict)]
