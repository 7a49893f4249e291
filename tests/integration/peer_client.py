#!/usr/bin/env python3
"""Test client run in the peer namespace against tcplab's services (stdlib only).

Every subcommand prints one JSON object on the last line of stdout (``hold`` prints the
local port first). Exit status 0 means the transfer itself completed; the caller checks
the numbers.

    echo HOST PORT NBYTES       send NBYTES random bytes to echo while reading the echo
    send HOST PORT NBYTES       send NBYTES random bytes to discard
    recv HOST PORT NBYTES       read NBYTES from chargen and check the RFC 864 pattern
    concurrent HOST PORT N      N simultaneous echo connections, 1 KiB each
    hold HOST PORT SECONDS      connect, print the local port, wait for stdin EOF
    connect HOST PORT TIMEOUT   try to connect: connected / refused / timeout
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import random
import select
import selectors
import socket
import sys
import threading
import time

CHUNK = 256 * 1024
IDLE_TIMEOUT = 60.0  # no progress for this long: give up instead of hanging
CONNECT_TIMEOUT = 15.0


def chargen_period() -> bytes:
    """One full period (95 lines of 74 bytes) of the RFC 864 chargen stream."""
    lines = []
    for i in range(95):
        lines.append(bytes(32 + (i + j) % 95 for j in range(72)) + b"\r\n")
    return b"".join(lines)


def emit(result: dict[str, object]) -> None:
    print(json.dumps(result), flush=True)


def rate(nbytes: int, seconds: float) -> float:
    return round(nbytes * 8 / seconds / 1e6, 3) if seconds > 0 else 0.0


def connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    sock.settimeout(IDLE_TIMEOUT)
    return sock


def random_chunks(nbytes: int):  # type: ignore[no-untyped-def]
    left = nbytes
    while left > 0:
        n = min(CHUNK, left)
        yield os.urandom(n)
        left -= n


def cmd_echo(host: str, port: int, nbytes: int) -> int:
    sock = connect(host, port)
    recv_hash = hashlib.sha256()
    received = 0
    reader_error: list[BaseException] = []

    def reader() -> None:
        nonlocal received
        try:
            while True:
                data = sock.recv(CHUNK)
                if not data:
                    return
                recv_hash.update(data)
                received += len(data)
        except BaseException as exc:  # reported by the main thread
            reader_error.append(exc)

    start = time.monotonic()
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    sent_hash = hashlib.sha256()
    for chunk in random_chunks(nbytes):
        sent_hash.update(chunk)
        sock.sendall(chunk)
    sock.shutdown(socket.SHUT_WR)
    thread.join(IDLE_TIMEOUT * 2)
    seconds = time.monotonic() - start
    sock.close()
    result = {"sent_sha256": sent_hash.hexdigest(), "recv_sha256": recv_hash.hexdigest(),
              "bytes": nbytes, "recv_bytes": received, "seconds": round(seconds, 4),
              "mbit_s": rate(nbytes, seconds)}
    if thread.is_alive():
        result["error"] = "echo did not end"
    elif reader_error:
        result["error"] = repr(reader_error[0])
    emit(result)
    return 0 if "error" not in result else 1


def cmd_send(host: str, port: int, nbytes: int) -> int:
    sock = connect(host, port)
    start = time.monotonic()
    h = hashlib.sha256()
    for chunk in random_chunks(nbytes):
        h.update(chunk)
        sock.sendall(chunk)
    sock.shutdown(socket.SHUT_WR)
    sent_done = time.monotonic() - start
    extra = 0
    while True:  # wait for the server's FIN: everything was received by then
        data = sock.recv(CHUNK)
        if not data:
            break
        extra += len(data)
    seconds = time.monotonic() - start
    sock.close()
    emit({"sha256": h.hexdigest(), "bytes": nbytes, "seconds": round(seconds, 4),
          "send_seconds": round(sent_done, 4), "mbit_s": rate(nbytes, seconds),
          "unexpected_bytes": extra})
    return 0


def cmd_recv(host: str, port: int, nbytes: int) -> int:
    period = chargen_period()
    plen = len(period)
    # enough repetitions that any recv() (<= CHUNK) starting anywhere in a period fits
    tiled = period * (CHUNK // plen + 2)
    sock = connect(host, port)
    start = time.monotonic()
    h = hashlib.sha256()
    got = 0
    matches = True
    first_mismatch: int | None = None
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while got < nbytes:
        n = sock.recv_into(view, min(CHUNK, nbytes - got))
        if n == 0:
            break
        data = view[:n]
        h.update(data)
        off = got % plen
        if matches and data != tiled[off:off + n]:
            matches = False
            want = tiled[off:off + n]
            first_mismatch = got + next(i for i in range(n) if data[i] != want[i])
        got += n
    seconds = time.monotonic() - start
    sock.close()
    emit({"sha256": h.hexdigest(), "bytes": got, "requested": nbytes,
          "matches_pattern": matches and got == nbytes, "first_mismatch": first_mismatch,
          "seconds": round(seconds, 4), "mbit_s": rate(got, seconds)})
    return 0


def message_for(i: int) -> bytes:
    head = f"connection {i:05d} ".encode()
    return head + random.Random(i).randbytes(1024 - len(head))


class _Conn:
    __slots__ = ("sock", "phase", "got")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.phase = "connecting"
        self.got = bytearray()


def cmd_concurrent(host: str, port: int, n: int) -> int:
    sel = selectors.DefaultSelector()
    conns: dict[int, _Conn] = {}
    failures: dict[int, str] = {}
    start = time.monotonic()
    for i in range(n):  # all connects in flight at once
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex((host, port))
        if rc not in (0, errno.EINPROGRESS):
            failures[i] = f"connect: {os.strerror(rc)}"
            s.close()
            continue
        conns[i] = _Conn(s)
        sel.register(s, selectors.EVENT_WRITE, i)

    def finish(i: int, failure: str | None) -> None:
        if failure is not None:
            failures[i] = failure
        c = conns.pop(i)
        sel.unregister(c.sock)
        c.sock.close()

    ok = 0
    deadline = time.monotonic() + 60
    while conns and time.monotonic() < deadline:
        for key, _events in sel.select(timeout=1.0):
            i = key.data
            c = conns[i]
            if c.phase == "connecting":
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(i, f"connect: {os.strerror(err)}")
                    continue
                try:
                    c.sock.send(message_for(i))  # 1 KiB always fits an empty send buffer
                except OSError as exc:
                    finish(i, f"send: {exc}")
                    continue
                c.phase = "reading"
                sel.modify(c.sock, selectors.EVENT_READ, i)
                continue
            try:
                data = c.sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                finish(i, f"recv: {exc}")
                continue
            c.got += data
            if not data or len(c.got) >= 1024:
                if bytes(c.got) == message_for(i):
                    ok += 1
                    finish(i, None)
                else:
                    finish(i, f"echo mismatch ({len(c.got)} bytes)")
    for i in list(conns):
        finish(i, f"timeout in phase {conns[i].phase}")
    seconds = time.monotonic() - start
    emit({"ok": ok, "n": n, "seconds": round(seconds, 4),
          "failures": {str(k): v for k, v in sorted(failures.items())[:20]}})
    return 0


def cmd_hold(host: str, port: int, seconds: float) -> int:
    sock = connect(host, port)
    print(sock.getsockname()[1], flush=True)
    deadline = time.monotonic() + seconds
    reason = "timeout"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([sys.stdin], [], [], left)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            reason = "stdin closed"
            break
    sock.close()
    emit({"held": True, "reason": reason})
    return 0


def cmd_connect(host: str, port: int, timeout: float) -> int:
    start = time.monotonic()
    try:
        s = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        result = "refused"
    except TimeoutError:
        result = "timeout"
    except OSError as exc:
        result = f"error: {exc}"
    else:
        s.close()
        result = "connected"
    emit({"result": result, "seconds": round(time.monotonic() - start, 4)})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, third, kind in (
        ("echo", "nbytes", int), ("send", "nbytes", int), ("recv", "nbytes", int),
        ("concurrent", "n", int), ("hold", "seconds", float), ("connect", "timeout", float),
    ):
        p = sub.add_parser(name)
        p.add_argument("host")
        p.add_argument("port", type=int)
        p.add_argument(third, type=kind)
    args = parser.parse_args(argv)
    if args.cmd == "echo":
        return cmd_echo(args.host, args.port, args.nbytes)
    if args.cmd == "send":
        return cmd_send(args.host, args.port, args.nbytes)
    if args.cmd == "recv":
        return cmd_recv(args.host, args.port, args.nbytes)
    if args.cmd == "concurrent":
        return cmd_concurrent(args.host, args.port, args.n)
    if args.cmd == "hold":
        return cmd_hold(args.host, args.port, args.seconds)
    return cmd_connect(args.host, args.port, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
