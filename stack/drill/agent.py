"""The system-call agent of `tcplab drill --daemon`: runs under the LD_PRELOAD shim.

`python -m stack.drill.agent` is started by the runner (stack/drill/live.py) with
libsocketoverride.so preloaded and $TCPLAB_SOCKET naming the daemon, exactly as
`tcplab run` starts a program, so every socket call below goes through the shim to
the stack daemon. It reads one JSON request a line on stdin:

    {"id": 7, "op": "read", "fd": 5, "n": 1000}

and answers, in the order the calls return, one JSON line on stdout:

    {"id": 7, "ret": 100, "errno": 0, "t": 12345.678901}

`ret` is the call's result (-1 with `errno` on failure), `t` the CLOCK_MONOTONIC time
it returned (the runner compares it with the script's times), `value` what a
getsockopt wrote (an int, or hex for TCP_INFO). Each request runs on a thread of its
own, so a blocking call (accept, connect, read, write...) waits while the script
goes on, as packetdrill's blocking calls do. File descriptors are the agent's real
ones; the runner maps the script's numbers onto them.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from typing import Any

_socks: dict[int, socket.socket] = {}
_lock = threading.Lock()
_out = threading.Lock()


def _sock(fd: int) -> socket.socket:
    with _lock:
        s = _socks.get(fd)
    if s is None:
        raise OSError(9, "bad file descriptor")  # EBADF
    return s


def _addr(req: dict[str, Any]) -> tuple[str, int]:
    return str(req["addr"]), int(req["port"])


def _do(req: dict[str, Any]) -> dict[str, Any]:
    op = req["op"]
    out: dict[str, Any] = {}
    if op == "socket":
        s = socket.socket(int(req["family"]), socket.SOCK_STREAM, socket.IPPROTO_TCP)
        with _lock:
            _socks[s.fileno()] = s
        out["ret"] = s.fileno()
    elif op == "bind":
        _sock(req["fd"]).bind(_addr(req))
    elif op == "listen":
        _sock(req["fd"]).listen(int(req["backlog"]))
    elif op == "accept":
        child, _ = _sock(req["fd"]).accept()
        with _lock:
            _socks[child.fileno()] = child
        out["ret"] = child.fileno()
    elif op == "connect":
        _sock(req["fd"]).connect(_addr(req))
    elif op == "write":
        out["ret"] = os.write(_sock(req["fd"]).fileno(), bytes(int(req["n"])))
    elif op == "send":
        out["ret"] = _sock(req["fd"]).send(bytes(int(req["n"])), int(req["flags"]))
    elif op == "sendto":
        out["ret"] = _sock(req["fd"]).sendto(bytes(int(req["n"])), int(req["flags"]), _addr(req))
    elif op == "read":
        out["ret"] = len(os.read(_sock(req["fd"]).fileno(), int(req["n"])))
    elif op == "recv":
        out["ret"] = len(_sock(req["fd"]).recv(int(req["n"]), int(req["flags"])))
    elif op == "shutdown":
        _sock(req["fd"]).shutdown(int(req["how"]))
    elif op == "close":
        s = _sock(req["fd"])
        with _lock:
            _socks.pop(req["fd"], None)
        s.close()
    elif op == "setsockopt":
        _sock(req["fd"]).setsockopt(int(req["level"]), int(req["name"]), int(req["value"]))
    elif op == "getsockopt":
        size = int(req.get("size", 0))
        if size:
            out["value"] = _sock(req["fd"]).getsockopt(int(req["level"]), int(req["name"]), size).hex()
        else:
            out["value"] = _sock(req["fd"]).getsockopt(int(req["level"]), int(req["name"]))
    elif op == "fcntl":
        fd = _sock(req["fd"]).fileno()
        if "arg" in req:
            out["ret"] = fcntl.fcntl(fd, int(req["cmd"]), int(req["arg"]))
        else:
            out["ret"] = fcntl.fcntl(fd, int(req["cmd"]))
    else:
        raise OSError(38, f"unknown op {op}")  # ENOSYS
    out.setdefault("ret", 0)
    return out


def _serve(req: dict[str, Any]) -> None:
    try:
        reply = _do(req)
        reply["errno"] = 0
    except OSError as exc:
        reply = {"ret": -1, "errno": exc.errno or 0}
    reply["t"] = time.monotonic()
    reply["id"] = req["id"]
    line = json.dumps(reply) + "\n"
    with _out:
        sys.stdout.write(line)
        sys.stdout.flush()


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        threading.Thread(target=_serve, args=(req,), daemon=True).start()
    # stdin closed: the script is over. Blocked calls are abandoned (the process exits).
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
