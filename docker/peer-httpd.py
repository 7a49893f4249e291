#!/usr/bin/env python3
"""The peer's HTTP server: plain kernel TCP, for the lab to talk to.

Serves the files in --root (index.html, 20M.bin, SHA256SUMS, made by
peer-entrypoint.sh) and ``/bytes/N``: exactly N bytes, ``random.Random(N).randbytes(N)``,
the same rule as the stack's own HTTP service, so a download can be checked byte for
byte anywhere without shipping the data (20M.bin is ``/bytes/20971520``).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import signal
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BYTES = 256 * 1024 * 1024
CHUNK = 1 << 20


def pattern(n: int) -> bytes:
    return random.Random(n).randbytes(n)


class Handler(SimpleHTTPRequestHandler):
    server_version = "tcplab-peer/1"

    def _bytes(self, head: bool) -> None:
        m = re.fullmatch(r"/bytes/(\d+)", self.path.split("?", 1)[0])
        assert m is not None
        n = int(m.group(1))
        if n > MAX_BYTES:
            self.send_error(413, f"at most {MAX_BYTES} bytes")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(n))
        self.end_headers()
        if head:
            return
        body = memoryview(pattern(n))
        for off in range(0, n, CHUNK):
            self.wfile.write(body[off : off + CHUNK])

    def do_GET(self) -> None:
        if self.path.startswith("/bytes/"):
            self._bytes(head=False)
        else:
            super().do_GET()

    def do_HEAD(self) -> None:
        if self.path.startswith("/bytes/"):
            self._bytes(head=True)
        else:
            super().do_HEAD()


def make_files(root: Path, size: int) -> None:
    """index.html, 20M.bin (= /bytes/20971520) and SHA256SUMS in ``root``."""
    import hashlib

    root.mkdir(parents=True, exist_ok=True)
    big = root / "20M.bin"
    data = pattern(size)
    big.write_bytes(data)
    (root / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  20M.bin\n")
    (root / "index.html").write_text(
        "<!doctype html>\n<title>peer</title>\n"
        "<h1>Hello from peer</h1>\n"
        "<p>This page came over the Linux kernel's TCP on the peer container.</p>\n"
        '<ul><li><a href="20M.bin">20M.bin</a> (20 MiB, = /bytes/20971520)</li>\n'
        '<li><a href="SHA256SUMS">SHA256SUMS</a></li>\n'
        "<li>/bytes/N: N bytes of random.Random(N).randbytes(N)</li></ul>\n"
    )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--root", type=Path, default=Path("/srv/www"))
    ap.add_argument("--make-files", action="store_true", help="create the files, then serve")
    ap.add_argument("--big-size", type=int, default=20 * 1024 * 1024)
    args = ap.parse_args(argv)
    if args.make_files:
        make_files(args.root, args.big_size)
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("0.0.0.0", args.port), partial(Handler, directory=str(args.root)))
    print(
        f"peer-httpd: serving {args.root} and /bytes/N on port {args.port}",
        file=sys.stderr,
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `docker stop`: a clean exit 0
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
