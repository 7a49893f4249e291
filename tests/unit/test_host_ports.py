"""Ephemeral port choice (stack/host.py Host.allocate_port)."""

from __future__ import annotations

import pytest

from stack.host import EPHEMERAL_PORTS, Host
from stack.tcp.connection import Connection

PEER, STACK = "10.1.0.2", "10.0.0.2"


class Owner:
    def connection_changed(self, conn: Connection) -> None:
        pass


def test_bind_to_port_zero_skips_ports_a_connection_still_holds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection whose socket is gone (TIME-WAIT) still holds its local port for
    its peer: bind(port 0) picks another port, as Linux's inet_csk_find_open_port
    prefers ports nothing holds. Otherwise a program that binds to port 0 before
    connect (dig, BIND's netmgr) to a server it just talked to gets EADDRINUSE."""
    host = Host(STACK, lambda parts: None, clock=lambda: 0.0)
    held = EPHEMERAL_PORTS[100]
    host.connect(held, (PEER, 53), host.tcp_defaults, Owner(), 0.0)
    monkeypatch.setattr("stack.host.random.randrange", lambda span: 100)  # start at `held`
    port = host.allocate_port()
    assert port != held and port in EPHEMERAL_PORTS
    # with every other port taken, the held one is still better than none
    for p in EPHEMERAL_PORTS:
        if p != held:
            host.tcp_ports[p] += 1
    assert host.allocate_port() == held
