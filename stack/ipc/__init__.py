"""The daemon side of the LD_PRELOAD shim: protocol, server, `tcplab run`, the client
used by `tcplab ss`. The wire format is docs/shim-protocol.md."""

from __future__ import annotations

import os

DEFAULT_SOCKET_PATH = "/run/tcplab/stack.sock"


def default_socket_path() -> str:
    """$TCPLAB_SOCKET, or /run/tcplab/stack.sock."""
    return os.environ.get("TCPLAB_SOCKET") or DEFAULT_SOCKET_PATH
