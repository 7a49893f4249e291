"""Built-in services: echo (RFC 862, TCP and UDP), discard (RFC 863), chargen (RFC 864)
and a small HTTP server with `/bytes/N`. `Services.start` runs the ones asked for.

The TCP echo, discard and chargen are callbacks inside the packet path
(stack/services/inline.py); HTTP and UDP echo are coroutines on the stack's asyncio
socket API (stack/api.py), the way a program inside the daemon would be written.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from stack import api
from stack.observe.events import EventLog
from stack.services import inline
from stack.sockets import SocketLayer

DEFAULT_SERVICES = {"echo": 7, "discard": 9, "chargen": 19, "http": 80}
CHUNK = inline.CHUNK


def chargen_line(i: int) -> bytes:
    """RFC 864: line i is 72 printable characters starting one later than line i-1."""
    return bytes(32 + (i + j) % 95 for j in range(72)) + b"\r\n"


CHARGEN_PERIOD = b"".join(chargen_line(i) for i in range(95))  # 7030 bytes, then it repeats


def bytes_body(n: int) -> Any:
    """The body of /bytes/N: `random.Random(N).randbytes(N)`, made 64 KiB at a time."""
    rng = random.Random(n)
    left = n
    while left > 0:
        size = min(CHUNK, left)
        yield rng.randbytes(size)
        left -= size


class Services:
    def __init__(self, layer: SocketLayer, events: EventLog | None) -> None:
        self.layer = layer
        self.events = events
        self.tasks: set[asyncio.Task[None]] = set()
        self.closers: list[Callable[[], None]] = []

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def start(self, name: str, port: int) -> None:
        if name == "echo":
            self.closers.append(inline.serve(self.layer, port, inline.Echo).close)
            udp = await api.udp_bind(self.layer, port)
            self.closers.append(udp.close)
            self.spawn(self._udp_echo(udp))
        elif name == "discard":
            events = self.events
            self.closers.append(inline.serve(self.layer, port, lambda s: inline.Discard(s, events)).close)
        elif name == "chargen":
            self.closers.append(
                inline.serve(self.layer, port, lambda s: inline.Chargen(s, CHARGEN_PERIOD)).close
            )
        elif name == "http":
            listener = await api.listen(self.layer, port)
            self.closers.append(listener.close)
            self.spawn(self._serve(listener, self._http))
        else:
            raise ValueError(f"unknown service {name!r}")

    def close(self) -> None:
        for close in self.closers:
            close()
        for task in list(self.tasks):
            task.cancel()

    async def _serve(
        self,
        listener: api.StreamListener,
        handler: Callable[[api.StreamConnection], Awaitable[None]],
    ) -> None:
        while True:
            conn = await listener.accept()
            self.spawn(self._run(handler, conn))

    async def _run(
        self, handler: Callable[[api.StreamConnection], Awaitable[None]], conn: api.StreamConnection
    ) -> None:
        try:
            await handler(conn)
        except OSError:
            pass  # reset by the peer: nothing to do
        finally:
            conn.close()

    async def _udp_echo(self, sock: api.DatagramSocket) -> None:
        while True:
            data, source = await sock.recvfrom()
            sock.sendto(data, source)

    async def _http(self, conn: api.StreamConnection) -> None:
        """HTTP/1.1 (RFC 9112): GET / (an index) and GET /bytes/N (N bytes)."""
        buffered = b""
        while True:
            while b"\r\n\r\n" not in buffered:
                data = await conn.recv()
                if not data:
                    return
                buffered += data
                if len(buffered) > 65536:
                    await conn.sendall(_response(431, b"request header too large\n", close=True))
                    return
            head, _, buffered = buffered.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split()
            headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                await conn.sendall(_response(400, b"bad request\n", close=True))
                return
            method, target, version = parts
            close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
            if method not in ("GET", "HEAD"):
                await conn.sendall(_response(405, b"method not allowed\n", close=close))
            elif target == "/":
                body = INDEX_PAGE
                await conn.sendall(_response(200, body if method == "GET" else b"", close=close,
                                             length=len(body), ctype="text/html; charset=utf-8"))
            elif target.startswith("/bytes/") and target[7:].isdigit():
                n = int(target[7:])
                await conn.sendall(_response(200, b"", close=close, length=n,
                                             ctype="application/octet-stream"))
                if method == "GET":
                    for chunk in bytes_body(n):
                        await conn.sendall(chunk)
            else:
                await conn.sendall(_response(404, b"not found\n", close=close))
            if close:
                return


INDEX_PAGE = b"""<!doctype html>
<html><head><title>tcplab</title></head>
<body>
<h1>Hello from tcplab</h1>
<p>This page came to you over a TCP/IP stack written in Python.</p>
<ul>
<li><a href="/bytes/1000">/bytes/1000</a>: exactly 1000 bytes (random.Random(N).randbytes(N))</li>
</ul>
</body></html>
"""

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           431: "Request Header Fields Too Large"}


def _response(status: int, body: bytes, *, close: bool, length: int | None = None,
              ctype: str = "text/plain") -> bytes:
    length = len(body) if length is None else length
    head = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\n"
        f"Server: tcplab\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    )
    return head.encode() + body


def parse_service(spec: str) -> tuple[str, int]:
    """'echo' or 'echo:7007' -> (name, port); ValueError with a clear message."""
    name, _, port_text = spec.partition(":")
    if name not in DEFAULT_SERVICES:
        raise ValueError(f"unknown service {name!r} (choose from {', '.join(DEFAULT_SERVICES)}, none)")
    if not port_text:
        return name, DEFAULT_SERVICES[name]
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"bad port in --service {spec!r}")
    return name, int(port_text)
