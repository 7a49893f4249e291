"""The stack's in-process socket API, for programs that run inside the daemon.

Built on stack/sockets.py and asyncio (the daemon's event loop). The built-in
services (stack/services/) are written with it::

    listener = await api.listen(layer, 7)
    while True:
        conn = await listener.accept()
        data = await conn.recv()
        await conn.sendall(data)
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable

from stack.sockets import SocketLayer, TcpSocket, UdpSocket


class _Waiter:
    """Turns a socket's on_change callbacks into something a coroutine can await."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def changed(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event.clear()

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds. Checked, then cleared, then awaited: on one
        event loop no notification can slip in between."""
        while not predicate():
            self._event.clear()
            await self._event.wait()


class StreamConnection:
    """A connected TCP socket with awaitable recv/sendall."""

    def __init__(self, sock: TcpSocket) -> None:
        self.sock = sock
        self._waiter = _Waiter()
        sock.on_change = self._waiter.changed

    @property
    def local(self) -> tuple[str, int] | None:
        return self.sock.local

    @property
    def remote(self) -> tuple[str, int] | None:
        return self.sock.remote

    async def wait_connected(self) -> None:
        await self._waiter.until(
            lambda: self.sock.state not in ("SYN-SENT", "SYN-RECEIVED") or bool(self.sock.error)
        )
        if self.sock.state in ("ESTABLISHED", "CLOSE-WAIT"):
            return
        err = self.sock.take_error()
        if err:
            raise OSError(err, errno.errorcode.get(err, "error"))
        raise OSError(errno.ECONNREFUSED, "connection failed")

    async def recv(self, n: int = 65536) -> bytes:
        """Up to n bytes; b"" at end of stream. Raises OSError on reset."""
        await self._waiter.until(lambda: self.sock.readable)
        try:
            return self.sock.recv(n)
        except BlockingIOError:  # pragma: no cover - readable said otherwise
            return await self.recv(n)

    async def sendall(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            await self._waiter.until(lambda: self.sock.writable)
            sent = self.sock.send(view)
            view = view[sent:]

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        self.sock.abort()


class StreamListener:
    def __init__(self, sock: TcpSocket) -> None:
        self.sock = sock
        self._waiter = _Waiter()
        sock.on_change = self._waiter.changed

    async def accept(self) -> StreamConnection:
        while True:
            await self._waiter.until(lambda: self.sock.readable)
            child = self.sock.accept()
            if child is not None:
                return StreamConnection(child)

    def close(self) -> None:
        self.sock.close()


class DatagramSocket:
    def __init__(self, sock: UdpSocket) -> None:
        self.sock = sock
        self._waiter = _Waiter()
        sock.on_change = self._waiter.changed

    async def recvfrom(self) -> tuple[bytes, tuple[str, int]]:
        await self._waiter.until(lambda: self.sock.readable)
        return self.sock.recvfrom()

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sock.sendto(data, addr)

    def close(self) -> None:
        self.sock.close()


async def listen(layer: SocketLayer, port: int, backlog: int = 128) -> StreamListener:
    return StreamListener(layer.tcp_listener(port, backlog))


async def connect(layer: SocketLayer, host: str, port: int) -> StreamConnection:
    sock = layer.tcp_socket()
    conn = StreamConnection(sock)
    try:
        sock.connect(host, port)
        await conn.wait_connected()
    except OSError:
        sock.close()
        raise
    return conn


async def udp_bind(layer: SocketLayer, port: int) -> DatagramSocket:
    # Dual-stack when the host has IPv6: the services answer on both families.
    sock = layer.udp_socket(socket.AF_INET6 if layer.host.address6 else socket.AF_INET)
    try:
        sock.bind("::" if layer.host.address6 else "0.0.0.0", port)
    except OSError:
        sock.close()
        raise
    return DatagramSocket(sock)
