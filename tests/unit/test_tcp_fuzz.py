"""Hypothesis state-machine fuzzing of the TCP connection.

Random peer segments (random flags, sequence and acknowledgment numbers near the
windows or anywhere, random payloads, windows and options) interleaved with random
user calls, timer expiries and ICMP errors. The peer's bytes are always those of one
fixed stream (`pattern` at the stream offset), so whatever the connection delivers
must be a prefix of that stream, and whatever it sends must be the bytes the user
wrote at that offset. After every step the invariants below must hold; an exception
from the connection fails the test with the transcript of the run.
"""

from __future__ import annotations

import errno
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from tcpscript import MASK32, Script, pattern

from stack.tcp.connection import State, TcpConfig
from stack.tcp.seq import seq_diff
from stack.tcp.states import TRANSITIONS
from stack.wire.tcp import ACK, FIN, PSH, RST, SYN, TCPOptions, TCPSegment, build_tcp

FLAG_CHOICES = [
    ACK, ACK, ACK, ACK | PSH, ACK | PSH, ACK | FIN, ACK | FIN | PSH, RST, RST | ACK,
    SYN, SYN | ACK, FIN, 0, SYN | FIN, SYN | RST | ACK, ACK | PSH | FIN | RST,
    ACK, ACK | PSH, ACK | PSH, ACK | FIN,
]  # fmt: skip


class TcpFuzz(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.s: Script | None = None
        self.peer_ts = 1000
        self.peer_window = 65535
        self.checked = 0  # bytes of s.received already compared
        self.right_edge = 0  # highest right edge of the window we offered (stream index)

    @property
    def script(self) -> Script:
        assert self.s is not None
        return self.s

    @initialize(
        start=st.sampled_from(["active", "passive", "syn-sent", "syn-received"]),
        iss=st.integers(0, MASK32),
        peer_iss=st.integers(0, MASK32),
        recv_buffer=st.sampled_from([1500, 3000, 20000, 1 << 20]),
        send_buffer=st.sampled_from([2000, 20000, 1 << 16]),
        peer_mss=st.sampled_from([None, 100, 536, 1000, 1460]),
        ws=st.sampled_from([None, 0, 3, 7, 14]),
        ts=st.booleans(),
        sack=st.booleans(),
        nodelay=st.booleans(),
        cc=st.sampled_from(["newreno", "cubic"]),
        keepalive=st.booleans(),
        win=st.sampled_from([0, 1, 500, 4000, 65535]),
    )
    def setup(
        self, start: str, iss: int, peer_iss: int, recv_buffer: int, send_buffer: int,
        peer_mss: int | None, ws: int | None, ts: bool, sack: bool, nodelay: bool, cc: str,
        keepalive: bool, win: int,
    ) -> None:  # fmt: skip
        config = TcpConfig(
            recv_buffer=recv_buffer, send_buffer=send_buffer, nodelay=nodelay, cc=cc,
            keepalive=keepalive, keepalive_idle=30.0, keepalive_interval=5.0,
            keepalive_count=3, max_retries=6, syn_retries=3, synack_retries=3,
            msl=5.0, fin_wait_2_timeout=10.0,
        )  # fmt: skip
        opts = {"mss": peer_mss, "ws": ws, "sackok": sack, "ts": ts, "win": win}
        if start == "active":
            self.s = Script.established(config, iss=iss, peer_iss=peer_iss, **opts)
        elif start == "passive":
            self.s = Script.established(config, active=False, iss=iss, peer_iss=peer_iss, **opts)
        elif start == "syn-sent":
            self.s = Script(config, iss=iss, peer_iss=peer_iss)
            self.s.connect()
        else:
            self.s = Script(config, iss=iss, peer_iss=peer_iss)
            self.s.passive(mss=peer_mss, ws=ws, sackok=sack, ts=ts, win=win)
        self.s.drain()
        self.peer_window = win

    # ------------------------------------------------------------ peer input

    @rule(
        flags=st.sampled_from(FLAG_CHOICES),
        seq_mode=st.sampled_from(["rcv", "rcv", "rcv", "near", "random"]),
        seq_delta=st.integers(-3000, 70000),
        ack_mode=st.sampled_from(["una", "una", "flight", "near", "random"]),
        ack_delta=st.integers(-3000, 3000),
        length=st.sampled_from([0, 0, 1, 10, 100, 536, 1000, 1460, 3000]),
        window=st.sampled_from([0, 1, 100, 1000, 4000, 65535]),
        with_ts=st.booleans(),
        ts_jump=st.integers(-5, 1000),
        sack_blocks=st.lists(
            st.tuples(st.integers(-2000, 20000), st.integers(1, 5000)), max_size=4
        ),
        syn_opts=st.booleans(),
        random_word=st.integers(0, MASK32),
    )
    def peer_random(
        self, flags: int, seq_mode: str, seq_delta: int, ack_mode: str, ack_delta: int,
        length: int, window: int, with_ts: bool, ts_jump: int,
        sack_blocks: list[tuple[int, int]], syn_opts: bool, random_word: int,
    ) -> None:  # fmt: skip
        s = self.script
        conn = s.conn
        if seq_mode == "rcv":
            seq = conn.rcv.nxt & MASK32
        elif seq_mode == "near":
            seq = (conn.rcv.nxt + seq_delta) & MASK32
        else:
            seq = random_word
        if ack_mode == "una":
            ack = conn.snd.una & MASK32
        elif ack_mode == "flight":
            ack = (conn.snd.una + max(ack_delta, 0) % (conn.snd.max - conn.snd.una + 1)) & MASK32
        elif ack_mode == "near":
            ack = (conn.snd.una + ack_delta) & MASK32
        else:
            ack = random_word ^ 0x5A5A5A5A
        # The peer's stream: byte i after its SYN is pattern[i], wherever it is sent.
        # A SYN's own data follows it; in SYN-SENT the SYN is what sets IRS.
        if flags & SYN and conn.state == State.SYN_SENT:
            index = 0
        else:
            first = (seq + 1) & MASK32 if flags & SYN else seq
            index = seq_diff(first, (conn.rcv.irs + 1) & MASK32)
        payload = pattern(length, index) if length else b""
        self.peer_ts = (self.peer_ts + ts_jump) & MASK32
        blocks = [((conn.snd.una + a) & MASK32, (conn.snd.una + a + n) & MASK32)
                  for a, n in sack_blocks]  # fmt: skip
        options = TCPOptions(
            mss=1000 if syn_opts and flags & SYN else None,
            wscale=5 if syn_opts and flags & SYN else None,
            sack_permitted=syn_opts and bool(flags & SYN),
            sack_blocks=blocks,
            timestamp=(self.peer_ts, s.last_tsval) if with_ts else None,
        )
        seg = TCPSegment(
            src_port=40000, dst_port=80, seq=seq, ack=ack if flags & ACK else 0, flags=flags,
            window=window, urgent=0, options=options, payload=payload,
        )  # fmt: skip
        s.rx_segment(seg)

    def _ts(self, with_ts: bool) -> tuple[int, int] | None:
        self.peer_ts = (self.peer_ts + 1) & MASK32
        return (self.peer_ts, self.script.last_tsval) if with_ts else None

    @rule(
        frac=st.sampled_from([0.0, 0.0, 0.25, 0.5, 1.0, 1.0, 1.0]),
        new_window=st.sampled_from([None, None, None, 0, 300, 5000, 65535]),
        sack=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), max_size=3),
        with_ts=st.booleans(),
    )
    def peer_ack(self, frac: float, new_window: int | None,
                 sack: list[tuple[float, float]], with_ts: bool) -> None:  # fmt: skip
        """A plausible pure ACK: part of our flight, SACK blocks inside it."""
        s = self.script
        c = s.conn
        if new_window is not None:
            self.peer_window = new_window
        flight = c.snd.max - c.snd.una
        ack = c.snd.una + int(flight * frac)
        blocks = []
        for a, b in sack:
            lo, hi = sorted((ack + int((c.snd.max - ack) * a), ack + int((c.snd.max - ack) * b)))
            if hi > lo:
                blocks.append((lo & MASK32, hi & MASK32))
        options = TCPOptions(sack_blocks=blocks, timestamp=self._ts(with_ts))
        s.rx_segment(TCPSegment(
            src_port=40000, dst_port=80, seq=c.rcv.nxt & MASK32, ack=ack & MASK32, flags=ACK,
            window=self.peer_window, options=options,
        ))  # fmt: skip

    @rule(count=st.integers(1, 5), sack=st.booleans())
    def peer_dupacks(self, count: int, sack: bool) -> None:
        """A run of duplicate ACKs (same ACK and window), as after a lost segment; with
        SACK blocks that grow over the data above the first segment."""
        s = self.script
        c = s.conn
        mss = c.snd_mss
        for i in range(count):
            top = min(c.snd.una + mss + (i + 1) * mss, c.snd.max)
            blocks = ([((c.snd.una + mss) & MASK32, top & MASK32)]
                      if sack and top > c.snd.una + mss else [])  # fmt: skip
            s.rx_segment(TCPSegment(
                src_port=40000, dst_port=80, seq=c.rcv.nxt & MASK32, ack=c.snd.una & MASK32,
                flags=ACK, window=self.peer_window, options=TCPOptions(sack_blocks=blocks),
            ))  # fmt: skip

    @rule(
        offset=st.sampled_from([0, 0, 0, 0, -50, 100, 1000, 3000]),
        length=st.sampled_from([1, 10, 100, 536, 1000, 1448]),
        fin=st.sampled_from([False, False, False, True]),
        ack_all=st.booleans(),
        with_ts=st.booleans(),
    )
    def peer_data(self, offset: int, length: int, fin: bool, ack_all: bool, with_ts: bool) -> None:
        """Plausible data from the peer: in order, overlapping, or ahead of a hole."""
        s = self.script
        c = s.conn
        seq = c.rcv.nxt + offset
        index = seq - c.rcv.irs - 1
        if index < 0:
            return
        ack = c.snd.max if ack_all else c.snd.una
        s.rx_segment(TCPSegment(
            src_port=40000, dst_port=80, seq=seq & MASK32, ack=ack & MASK32,
            flags=ACK | PSH | (FIN if fin else 0), window=self.peer_window,
            options=TCPOptions(timestamp=self._ts(with_ts)), payload=pattern(length, index),
        ))  # fmt: skip

    # ------------------------------------------------------------ user calls

    @rule(n=st.sampled_from([1, 10, 100, 999, 1000, 1460, 5000, 30000]))
    def user_send(self, n: int) -> None:
        s = self.script

        def send(conn: object) -> None:
            try:
                s.conn.send(pattern(n, s.conn.snd.sendbuf.end), s.now)
            except OSError as exc:
                assert exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ECONNREFUSED,
                                     errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH,
                                     errno.ENOPROTOOPT), exc  # fmt: skip

        s.call(f"user send({n})", send)

    @rule(n=st.sampled_from([1, 100, 1000, 1 << 30]))
    def user_recv(self, n: int) -> None:
        self.script.recv(n)

    @rule()
    def user_shutdown(self) -> None:
        self.script.shutdown()

    @precondition(lambda self: self.s is not None and self.s.conn.state != State.CLOSED)
    @rule(abort=st.sampled_from([False, False, False, False, False, True]))
    def user_close(self, abort: bool) -> None:
        if abort:
            self.script.abort()
        else:
            self.script.close()

    @rule(err=st.sampled_from([errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENOPROTOOPT]))
    def icmp_unreachable(self, err: int) -> None:
        self.script.icmp_unreachable(err)

    @rule(mtu=st.integers(60, 1600))
    def icmp_frag_needed(self, mtu: int) -> None:
        self.script.path_mtu(mtu)

    # ------------------------------------------------------------------ time

    @rule(dt=st.sampled_from([0.0, 0.001, 0.04, 0.2, 1.0, 5.0, 30.0]))
    def wait(self, dt: float) -> None:
        self.script.wait(dt)

    @precondition(lambda self: self.s is not None and self.s.conn.next_deadline() is not None)
    @rule()
    def fire(self) -> None:
        self.script.fire()

    # ------------------------------------------------------------ invariants

    @invariant()
    def sequence_variables_ordered(self) -> None:
        if self.s is None:
            return
        c = self.s.conn
        self.s.expect(c.iss <= c.snd.una <= c.snd.nxt <= c.snd.max,
                      f"ISS <= SND.UNA <= SND.NXT <= SND.MAX: {c.iss} {c.snd.una} "
                      f"{c.snd.nxt} {c.snd.max}")  # fmt: skip
        # Nothing beyond the SYN, the user's data and the FIN is ever sent.
        self.s.expect(c.snd.max <= c.snd.data_end + 1, "SND.MAX <= end of data + FIN")

    @invariant()
    def delivered_prefix_of_peer_stream(self) -> None:
        if self.s is None:
            return
        s = self.s
        got = bytes(s.received)
        queued = b"".join(bytes(chunk) for chunk in s.conn.rcv.rx)
        if got[self.checked :] != pattern(len(got) - self.checked, self.checked):
            s.fail("data delivered is not a prefix of the peer's stream")
        self.checked = len(got)
        if queued != pattern(len(queued), len(got)):
            s.fail("data queued for the user does not continue the peer's stream")

    @invariant()
    def buffers_within_bounds(self) -> None:
        if self.s is None:
            return
        c = self.s.conn
        cfg = c.config
        self.s.expect(c.rcv.rx_len == sum(len(x) for x in c.rcv.rx), "rx_len counts the queue")
        self.s.expect(0 <= c.rcv.rx_len + c.rcv.reassembler.pending_bytes <= cfg.recv_buffer,
                      f"receive side within recv_buffer: {c.rcv.rx_len} + "
                      f"{c.rcv.reassembler.pending_bytes}")  # fmt: skip
        self.s.expect(len(c.snd.sendbuf) <= cfg.send_buffer, "send buffer within send_buffer")
        self.s.expect(c.snd.sendbuf.start <= max(c.snd.una - c.iss - 1, 0) or c.state == State.CLOSED,
                      "no unacknowledged byte was released")  # fmt: skip

    @invariant()
    def emitted_segments_are_sane(self) -> None:
        if self.s is None:
            return
        s = self.s
        c = s.conn
        for seg in s.drain():
            build_tcp(seg, "10.0.0.1", "10.0.0.2")  # every field encodable
            if len(seg.payload):
                index = seq_diff(seg.seq, (c.iss + 1) & MASK32)
                s.expect(index >= 0 and bytes(seg.payload) == pattern(len(seg.payload), index),
                         f"sent bytes are the user's bytes at stream offset {index}")  # fmt: skip
            s.expect(not (seg.flags & SYN and len(seg.payload)), "no data on our SYNs")
            if seg.flags & ACK and not seg.flags & (SYN | RST):
                # RFC 9293 3.8.6: the right edge of the offered window does not move left
                # (allowing for the rounding of a scaled window field).
                right = seq_diff(seg.ack, (c.rcv.irs + 1) & MASK32) + (seg.window << c.rcv.wscale)
                slack = (1 << c.rcv.wscale) - 1
                s.expect(
                    right + slack >= self.right_edge,
                    f"window right edge {right} moved left of {self.right_edge}",
                )
                self.right_edge = max(self.right_edge, right)

    @invariant()
    def state_changes_are_in_the_table(self) -> None:
        """Every state change seen is an edge of RFC 9293's diagram (stack/tcp/states.py)."""
        if self.s is None:
            return
        for ev in self.s.events:
            if ev.kind == "state":
                pair = (State(str(ev.fields["from"])), State(str(ev.fields["to"])))
                self.s.expect(pair in TRANSITIONS, f"state change {pair} not in the table")

    @invariant()
    def closed_means_no_timers(self) -> None:
        if self.s is None:
            return
        c = self.s.conn
        if c.state == State.CLOSED:
            self.s.expect(c.next_deadline() is None, "CLOSED runs no timer")


# TCP_FUZZ_EXAMPLES=5000 for a longer hunt; the default keeps the run short.
TcpFuzz.TestCase.settings = settings(
    max_examples=int(os.environ.get("TCP_FUZZ_EXAMPLES", "150")),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_tcp_fuzz = TcpFuzz.TestCase
