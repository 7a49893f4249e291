"""IP fragments both ways against the kernel: datagrams larger than the MTU arrive in
fragments the stack reassembles (RFC 815) and leave in fragments it makes (RFC 791 3.2)."""

from __future__ import annotations

import hashlib
import os

import pytest
from netns import STACK_ADDR, StackDaemon, Topology, run_in

pytestmark = pytest.mark.root


def test_large_ping_is_reassembled_and_answered_in_fragments(topology: Topology, stack: StackDaemon) -> None:
    out = run_in(topology.peer_ns, ["ping", "-c", "3", "-W", "2", "-s", "3000", STACK_ADDR],
                 timeout=30, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 received" in out.stdout
    assert "3008 bytes from 10.0.0.2" in out.stdout  # the whole reply came back


def test_udp_echo_of_a_datagram_larger_than_the_mtu(topology: Topology, stack: StackDaemon) -> None:
    data = os.urandom(5000)
    out = run_in(topology.peer_ns, ["nc", "-u", "-W", "1", "-w", "3", STACK_ADDR, "7"],
                 input=data, timeout=20, check=False)
    reply = out.stdout if isinstance(out.stdout, bytes) else out.stdout.encode("latin-1")
    assert hashlib.sha256(reply).hexdigest() == hashlib.sha256(data).hexdigest()
