"""The programs `tcplab bench` runs on the kernel's side: load clients and, for the
ceiling, kernel servers. The same client measures the kernel and the stack.

    python -m stack.tools.benchpeer serve PORT_BASE            discard, chargen, echo on kernel sockets
    python -m stack.tools.benchpeer upload HOST PORT SECONDS [FLOWS [CC]]   CC: TCP_CONGESTION
    python -m stack.tools.benchpeer download HOST PORT SECONDS
    python -m stack.tools.benchpeer rr HOST PORT SECONDS       1-byte request/response
    python -m stack.tools.benchpeer cps HOST PORT SECONDS      connect, 1 request, close
    python -m stack.tools.benchpeer hold HOST PORT N           hold N connections until stdin closes

Each client prints one JSON object.
"""

from __future__ import annotations

import json
import resource
import socket
import sys
import threading
import time

BUF = bytes(256 * 1024)


def _connect(host: str, port: int, cc: str | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    if cc:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
    sock.settimeout(10)
    sock.connect((host, port))
    sock.settimeout(30)
    return sock


def upload(host: str, port: int, seconds: float, flows: int = 1, cc: str | None = None) -> dict[str, float]:
    totals = [0] * flows
    start = time.monotonic()
    deadline = start + seconds

    def one(i: int) -> None:
        sock = _connect(host, port, cc)
        view = memoryview(BUF)
        sent = 0
        while time.monotonic() < deadline:
            sent += sock.send(view)
        totals[i] = sent
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
        sock.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(flows)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    total = sum(totals)
    return {"bytes": total, "seconds": elapsed, "mbit_s": total * 8 / elapsed / 1e6}


def download(host: str, port: int, seconds: float) -> dict[str, float]:
    sock = _connect(host, port)
    buf = bytearray(1 << 20)
    got = 0
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        n = sock.recv_into(buf)
        if not n:
            break
        got += n
    elapsed = time.monotonic() - start
    sock.close()
    return {"bytes": got, "seconds": elapsed, "mbit_s": got * 8 / elapsed / 1e6}


def rr(host: str, port: int, seconds: float) -> dict[str, float]:
    sock = _connect(host, port)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    count = 0
    start = time.monotonic()
    deadline = start + seconds
    while True:
        if count % 64 == 0 and time.monotonic() >= deadline:
            break
        sock.sendall(b"x")
        if not sock.recv(1):
            break
        count += 1
    elapsed = time.monotonic() - start
    sock.close()
    return {"count": count, "seconds": elapsed, "per_s": count / elapsed}


def cps(host: str, port: int, seconds: float) -> dict[str, float]:
    count = 0
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(b"x")
        sock.recv(1)
        # Reset instead of FIN so that the client side leaves no TIME-WAIT behind
        # (the stack's side then has none either), as load generators do.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        sock.close()
        count += 1
    elapsed = time.monotonic() - start
    return {"count": count, "seconds": elapsed, "per_s": count / elapsed}


def hold(host: str, port: int, n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n + 100), max(hard, n + 100)))
    socks = []
    start = time.monotonic()
    for _ in range(n):
        socks.append(socket.create_connection((host, port), timeout=10))
    print(json.dumps({"held": len(socks), "seconds": time.monotonic() - start}), flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()


def serve(port_base: int) -> None:
    """Kernel discard (base), chargen (base+1) and echo (base+2) for the ceiling."""

    def discard(conn: socket.socket) -> None:
        buf = bytearray(1 << 20)
        while conn.recv_into(buf):
            pass
        conn.close()

    def chargen(conn: socket.socket) -> None:
        try:
            while True:
                conn.sendall(BUF)
        except OSError:
            pass
        conn.close()

    def echo(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass
        conn.close()

    def listen(port: int, handler: object) -> None:
        # Dual-stack ([::] without V6ONLY) where the kernel has IPv6, else IPv4 only.
        try:
            lsock = socket.socket(socket.AF_INET6)
            lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind(("::", port))
        except OSError:
            lsock = socket.socket()
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind(("0.0.0.0", port))
        lsock.listen(1024)
        while True:
            conn, _ = lsock.accept()
            threading.Thread(target=handler, args=(conn,), daemon=True).start()  # type: ignore[arg-type]

    for offset, handler in enumerate((discard, chargen, echo)):
        threading.Thread(target=listen, args=(port_base + offset, handler), daemon=True).start()
    print("serving", flush=True)
    sys.stdin.read()


def main(argv: list[str]) -> int:
    cmd, *rest = argv
    if cmd == "serve":
        serve(int(rest[0]))
        return 0
    if cmd == "hold":
        hold(rest[0], int(rest[1]), int(rest[2]))
        return 0
    host, port, seconds = rest[0], int(rest[1]), float(rest[2])
    if cmd == "upload":
        result = upload(host, port, seconds, int(rest[3]) if len(rest) > 3 else 1,
                        rest[4] if len(rest) > 4 else None)
    elif cmd == "download":
        result = download(host, port, seconds)
    elif cmd == "rr":
        result = rr(host, port, seconds)
    elif cmd == "cps":
        result = cps(host, port, seconds)
    else:
        print(f"unknown command {cmd}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
