"""TCP_CONGESTION through stack/sockets.py as a program would use it (Linux tcp(7)): the
algorithm by name, before the connection (it starts with it, a listener's connections
too) and on an open connection (the new one takes over the window); ENOENT for a name
the stack does not have."""

from __future__ import annotations

import errno
import socket

import pytest
from test_host_ecn_fastopen import PORT, Wire

from stack.wire.tcp import ACK, SYN


def name_of(value: int | bytes) -> str:
    assert isinstance(value, bytes)
    return value.split(b"\0", 1)[0].decode()


def handshake(w: Wire) -> int:
    w.send(SYN, 100)
    [(_, synack)] = w.take()
    w.send(ACK, 101, synack.seq + 1)
    return synack.seq


def test_a_listener_algorithm_goes_to_its_connections() -> None:
    w = Wire()
    listener = w.layer.tcp_socket()
    assert name_of(listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION)) == "newreno"
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"bbr")  # no NUL: 3 bytes
    listener.bind("0.0.0.0", PORT)
    listener.listen(8)
    handshake(w)
    child = listener.accept()
    assert child is not None
    assert name_of(child.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION)) == "bbr"
    assert child.info()["cc"] == "bbr"


def test_an_open_connection_switches_and_keeps_its_window() -> None:
    """Linux's tcp_reinit_congestion_control: cwnd and ssthresh stay; the new
    algorithm's own state starts fresh."""
    w = Wire()
    listener = w.layer.tcp_listener(PORT)
    handshake(w)
    child = listener.accept()
    assert child is not None
    before = child.info()["cwnd"]
    child.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic\0")
    assert name_of(child.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION)) == "cubic"
    info = child.info()
    assert info["cc"] == "cubic" and info["cwnd"] == before
    child.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"bbr\0")
    child.send(b"z" * 2920)  # a rate-driven algorithm now: data still flows
    assert sum(len(seg.payload) for _, seg in w.take()) == 2920
    assert child.info()["cc"] == "bbr"


def test_an_unknown_algorithm_is_enoent() -> None:
    w = Wire()
    sock = w.layer.tcp_socket()
    with pytest.raises(OSError) as err:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"vegas\0")
    assert err.value.errno == errno.ENOENT
    assert name_of(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION)) == "newreno"
