"""Keepalive (stack/tcp/keepalive.py, RFC 1122 4.2.3.6): the idle timer, the probes
and what resets them. (The probe sequence end to end, with ETIMEDOUT after
keepalive_count probes, is test_tcp_data.py's test_keepalive_probes_and_timeout.)"""

from __future__ import annotations

import errno

from tcpscript import Script

from stack.tcp.connection import State, TcpConfig


def config() -> TcpConfig:
    return TcpConfig(keepalive=True, keepalive_idle=10.0, keepalive_interval=2.0,
                     keepalive_count=2)  # fmt: skip


def test_no_timer_before_the_handshake_completes() -> None:
    """The idle timer runs only in a synchronized state; it starts on ESTABLISHED."""
    s = Script(config())
    s.connect()
    s.tx("S", seq=0)
    s.expect(s.conn.timers.keepalive is None, "no keepalive timer in SYN-SENT")
    s.wait(0.5)
    s.rx("SA", seq=0, ack=1, mss=1460, ts=None)
    s.tx("A", seq=1, ack=1)
    s.expect(s.conn.timers.keepalive == 10.5, "idle time from ESTABLISHED")


def test_the_probe_is_snd_nxt_minus_one_without_data() -> None:
    """"SEG.SEQ = SND.NXT-1", zero or one garbage octet: ours carries none, so the peer
    sees an old sequence number and must answer with an ACK."""
    s = Script.established(config())
    s.send(100)
    s.tx("PA", seq=1, length=100)
    s.rx("A", ack=101)
    s.fire()
    s.expect(s.now == 10.0, "after keepalive_idle")
    s.tx("A", seq=100, ack=1, length=0)
    s.expect(s.conn.keepalive.probes == 1, "one probe out")
    s.expect(s.conn.timers.keepalive == 12.0, "next probe after keepalive_interval")


def test_any_acceptable_segment_resets_the_probes() -> None:
    """In-order data (header prediction) and an out-of-order segment (the full path)
    both show the peer is alive: no probe counted, the idle time restarts."""
    s = Script.established(config())
    s.rx("A", ack=1)  # (the first scaled window: full path)
    s.fire()
    s.tx("A", seq=0)
    s.wait(1.0)
    s.rx("PA", data=10)
    s.expect(s.conn.keepalive.probes == 0, "answered")
    s.expect(s.conn.timers.keepalive == 21.0, "idle from the segment")
    s.at(21.0)
    s.tx("A", ack=11)  # the delayed ACK
    s.tx("A", seq=0)
    s.wait(0.5)
    s.rx("PA", seq=1 + 10 + 100, data=10)  # beyond a hole: still acceptable
    s.tx("A", ack=11)
    s.expect(s.conn.keepalive.probes == 0, "answered by the full path")
    s.expect(s.conn.timers.keepalive == 31.5, "idle from that segment")


def test_an_unacceptable_segment_is_not_an_answer() -> None:
    """A segment outside the window is answered with an ACK (RFC 9293 3.10.7.4) but
    does not count as the peer being alive: the probes go on and give up."""
    s = Script.established(config())
    s.fire()
    s.tx("A", seq=0)
    s.rx("PA", seq=1 + 10**8, data=10)  # far beyond the window
    s.tx("A", ack=1)
    s.expect(s.conn.keepalive.probes == 1, "still one probe out")
    s.fire()
    s.tx("A", seq=0)
    s.fire()
    s.expect_state(State.CLOSED)
    s.expect_error(errno.ETIMEDOUT)


def test_so_keepalive_on_counts_from_the_last_segment_and_off_stops_it() -> None:
    s = Script.established(TcpConfig())
    s.expect(s.conn.timers.keepalive is None, "off by default")
    s.wait(3.0)
    s.call("set_keepalive(True)", lambda c: c.set_keepalive(True, s.now))
    s.expect(s.conn.timers.keepalive == s.conn.config.keepalive_idle,
             "idle counted from the last segment (t=0), not from the call")  # fmt: skip
    s.call("set_keepalive(False)", lambda c: c.set_keepalive(False, s.now))
    s.expect(s.conn.timers.keepalive is None, "stopped")
    s.wait(3 * s.conn.config.keepalive_idle)
    s.no_tx()
    s.expect_state(State.ESTABLISHED)
