"""Keepalive of one TCP connection (RFC 1122 4.2.3.6), sans-IO.

Owns: when the peer was last heard from (an acceptable segment), the keepalive timer
(the `keepalive` kind of stack/tcp/timers.py), the probes sent since the peer was last
heard, the probe itself (SEG.SEQ = SND.NXT - 1, so that the peer must answer with an
ACK) and giving up (ETIMEDOUT) after `TcpConfig.keepalive_count` unanswered probes.
The tunables are `keepalive` (SO_KEEPALIVE), `keepalive_idle`, `keepalive_interval`
and `keepalive_count` (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT). The other probes
are the sender's (zero-window probes, stack/tcp/sender.py) and recovery's (the tail
loss probe, stack/tcp/recovery.py).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from stack.tcp.states import SYNCHRONIZED
from stack.tcp.timers import Timers
from stack.wire.tcp import ACK

if TYPE_CHECKING:
    from stack.tcp.config import TcpConfig
    from stack.tcp.connection import Connection


class Keepalive:
    """The keepalive timer and probes of one connection; see the module comment."""

    def __init__(self, conn: Connection, config: TcpConfig, timers: Timers, now: float) -> None:
        self.conn = conn
        self.config = config
        self.timers = timers
        self.last_recv = now  # when the peer was last heard from
        self.probes = 0  # probes sent since

    def heard(self, now: float) -> None:
        """An acceptable segment arrived (or the handshake completed): the idle time
        starts again, and in a synchronized state the timer with it."""
        self.last_recv = now
        self.probes = 0
        config = self.config
        if config.keepalive and self.conn.state in SYNCHRONIZED:
            self.timers.keepalive = now + config.keepalive_idle

    def on_timer(self, now: float) -> None:
        """RFC 1122 4.2.3.6: probe an idle connection with SEG.SEQ = SND.NXT - 1."""
        conn = self.conn
        config = self.config
        if not config.keepalive or conn.state not in SYNCHRONIZED:
            return
        due = self.last_recv + config.keepalive_idle
        if now < due:  # (compared as the deadline was computed: no float round-off loop)
            self.timers.keepalive = due
            return
        if self.probes >= config.keepalive_count:
            conn.terminate(errno.ETIMEDOUT)
            return
        self.probes += 1
        conn.send_segment(conn.snd.nxt - 1, ACK, b"", now)
        self.timers.keepalive = now + config.keepalive_interval

    def set(self, on: bool, now: float) -> None:
        """SO_KEEPALIVE: on, the timer runs from the last time the peer was heard."""
        self.config.keepalive = on
        if on and self.conn.state in SYNCHRONIZED:
            self.timers.keepalive = self.last_recv + self.config.keepalive_idle
        elif not on:
            self.timers.keepalive = None
