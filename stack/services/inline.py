"""echo, discard and chargen as socket callbacks, run inside the stack's packet path.

The asyncio API (stack/api.py) wakes a task for every change on a socket: an event,
a future, a task step and a turn of the event loop per packet. For the three
byte-stream services, which only react to their own socket, that was most of the
daemon's work per request (docs/performance.md). So they are written here as plain
callbacks on the socket layer, the way lwIP's "raw API" serves from inside its stack:
`on_change` runs in the same call that delivered the data, an echo leaves in the
same read batch and carries the ACK, and a service that consumes at once keeps the
receive window open without window updates.

A handler is never re-entered: the socket calls `on_change` again from inside our own
`recv`/`send` (they flush output through the host), and those nested calls only
report what the running step already knows, so they are ignored; every step loops
until it can make no more progress.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable

from stack.observe.events import EventLog
from stack.sockets import SocketLayer, TcpSocket

CHUNK = 65536
OPEN_FOR_SENDING = ("ESTABLISHED", "CLOSE-WAIT")


class StreamHandler:
    """One accepted connection; subclasses say what to do in `step`."""

    def __init__(self, sock: TcpSocket) -> None:
        self.sock = sock
        self._running = False
        sock.on_change = self.changed

    def changed(self) -> None:
        if self._running or self.sock.closed:
            return
        self._running = True
        try:
            self.step()
        except OSError:
            self.sock.close()  # reset by the peer: nothing more to do
        finally:
            self._running = False

    def step(self) -> None:
        raise NotImplementedError


class Echo(StreamHandler):
    """RFC 862: send back whatever arrives; close after the peer's FIN.

    It reads only as much as the send buffer has room for, so a peer that sends
    without reading fills our receive window and is flow-controlled, not buffered.
    What `send` does not take (the host may refuse memory, stack/tcp/memory.py) waits in
    `pending` until the socket reports a change.
    """

    def __init__(self, sock: TcpSocket) -> None:
        super().__init__(sock)
        self.pending = memoryview(b"")

    def step(self) -> None:
        sock = self.sock
        while True:
            if self.pending:
                self.pending = self.pending[sock.send(self.pending) :]
                if self.pending:
                    return  # told when there is room again
            room = sock.send_free
            if room <= 0 and sock.state in OPEN_FOR_SENDING:
                return  # wait for ACKs to free the send buffer
            try:
                data = sock.recv(min(room, CHUNK) or CHUNK)
            except BlockingIOError:
                return
            if not data:
                sock.close()  # FIN after everything echoed (RFC 9293 3.10.4)
                return
            self.pending = memoryview(data)


class Discard(StreamHandler):
    """RFC 863: throw data away; the event log gets its length and SHA-256."""

    def __init__(self, sock: TcpSocket, events: EventLog | None) -> None:
        super().__init__(sock)
        self.events = events
        self.digest = hashlib.sha256()
        self.total = 0

    def step(self) -> None:
        sock = self.sock
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                return
            if not data:
                break
            self.digest.update(data)
            self.total += len(data)
        if self.events is not None and sock.local and sock.remote:
            self.events.emit(
                "service",
                f"{sock.local[0]}:{sock.local[1]}-{sock.remote[0]}:{sock.remote[1]}",
                service="discard", bytes=self.total, sha256=self.digest.hexdigest(),
            )  # fmt: skip
        sock.close()


class Chargen(StreamHandler):
    """RFC 864: an endless stream of lines until the peer goes away; what the peer
    sends is thrown away.

    It writes whole segments (multiples of the send MSS): a sub-MSS tail left in
    the send buffer leaves later as a frame of its own, and with offloads every
    frame costs the same whatever its size (docs/performance.md). Only a send
    buffer smaller than one MSS gets less, once it is empty.
    """

    def __init__(self, sock: TcpSocket, period: bytes) -> None:
        super().__init__(sock)
        self.period = len(period)
        self.ring = memoryview(period * (CHUNK // len(period) + 2))
        self.offset = 0

    def step(self) -> None:
        sock = self.sock
        try:
            while sock.recv(1 << 20):
                pass
        except BlockingIOError:
            pass
        mss = int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
        chunk = max(CHUNK // mss, 1) * mss
        while sock.state in OPEN_FOR_SENDING:
            free = sock.send_free
            room = min(free, chunk)
            if room >= mss:
                room -= room % mss
            elif free < int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)):
                return  # less than a segment free: ACKs will free more
            if room <= 0:
                return
            sent = sock.send(self.ring[self.offset : self.offset + room])
            if sent <= 0:
                return
            self.offset = (self.offset + sent) % self.period
        sock.close()


def serve(layer: SocketLayer, port: int, handler: Callable[[TcpSocket], object],
          backlog: int = 128) -> TcpSocket:
    """Listen on `port`; every accepted socket is handed to `handler` at once."""
    listener = layer.tcp_listener(port, backlog)

    def accept_all() -> None:
        while (child := listener.accept()) is not None:
            handler(child)
            on_change = child.on_change
            if on_change is not None:
                on_change()  # data may have come with the handshake's last ACK

    listener.on_change = accept_all
    return listener
