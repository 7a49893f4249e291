"""A tiny scripting harness for the sans-IO TCP connection (stack/tcp/connection.py).

A `Script` owns one `Connection`, a fake clock and a transcript. Every step -- a user
call, a segment arriving from the peer, the clock moving, a timer firing, a segment the
connection emits, an event it reports -- is written to the transcript as one line::

    t=0.000  <- SYN seq=1000 win=65535 [mss=1460,ws=7,sack,ts=100:0]
    t=0.000  listener from_syn()
    t=0.000  ** state from=LISTEN to=SYN-RECEIVED
    t=0.000  -> SA seq=5000 ack=1001 win=65535 [mss=1460,ws=5,sack,ts=0:100]
    t=0.000  ok  flags=SA seq=+0 ack=+1

``<-`` is a segment the connection receives, ``->`` one it sends, ``**`` an event,
``user`` a user call, ``ok`` an expectation that held. When an expectation fails (or
the connection raises) the harness prints the transcript and raises AssertionError with
it, the failing step last, so a failure reads like a packet trace. ``wait`` also fails
on a timer livelock (next_deadline() not moving past the current time).

Typical use::

    s = Script.established()            # handshake done, peer offered MSS 1460, WS 7,
    s.send(100)                          # SACK and timestamps
    s.tx("PA", seq=1, ack=1, length=100)
    s.wait(0.1)
    s.rx("A", ack=101)
    s.expect_event("rtt", sample=0.1)
    s.expect_deadline(None)

Sequence numbers in the helpers are *relative*: our segments count from our ISS
(``seq=0`` is our SYN, ``seq=1`` our first data byte), the peer's from the peer's ISS.
So ``s.rx("A", ack=101)`` acknowledges our first 100 data bytes and
``s.tx("A", ack=1)`` expects an ACK of the peer's SYN. The transcript shows the
absolute numbers that went over the wire.

Segments the connection emits are queued; ``tx(...)`` takes the next one and checks the
fields given (anything left out is not checked), ``no_tx()`` asserts the queue is empty,
``drain()`` discards it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from stack.tcp.connection import Connection, State, TcpConfig
from stack.wire.tcp import ACK, CWR, ECE, FIN, PSH, RST, SYN, TCPOptions, TCPSegment

MASK32 = 0xFFFFFFFF

# The round-trip time of `Script.established`'s handshake, in seconds.
HANDSHAKE_RTT = 0.1

LOCAL = ("10.0.0.1", 80)
REMOTE = ("10.0.0.2", 40000)

_FLAG_BITS = {"F": FIN, "S": SYN, "R": RST, "P": PSH, "A": ACK, "E": ECE, "C": CWR}
_NAMES = {"S": "SYN", "R": "RST", "A": "ACK", "F": "FIN"}


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()
"""Default of every expectation argument: not checked."""


_CYCLE = bytes((i * 7 + 13) % 251 for i in range(251))


def pattern(n: int, offset: int = 0) -> bytes:
    """``n`` recognisable bytes of an endless stream (period 251), starting at stream
    offset ``offset``: byte i of the stream is ``(7 * i + 13) % 251``."""
    start = offset % 251
    return (_CYCLE * ((start + n) // 251 + 1))[start : start + n]


def parse_flags(flags: str) -> int:
    """Flag letters to bits: "SA", "FA", "PA", "R", "RA", ... (also "SYN", "RST", "ACK")."""
    aliases = {"SYN": "S", "RST": "R", "ACK": "A", "FIN": "F"}
    letters = aliases.get(flags.upper(), flags.upper())
    bits = 0
    for letter in letters:
        if letter not in _FLAG_BITS:
            raise ValueError(f"unknown flag {letter!r} in {flags!r}")
        bits |= _FLAG_BITS[letter]
    return bits


def flag_name(seg: TCPSegment) -> str:
    text = seg.flags_str()
    return _NAMES.get(text, text)


def describe(seg: TCPSegment) -> str:
    """One segment as text: ``SA seq=5000 ack=1001 win=65535 len=0 [mss=1460,...]``."""
    parts = [flag_name(seg), f"seq={seg.seq}"]
    if seg.flags & ACK:
        parts.append(f"ack={seg.ack}")
    parts.append(f"win={seg.window}")
    if len(seg.payload):
        parts.append(f"len={len(seg.payload)}")
    opts = seg.options
    shown: list[str] = []
    if opts.mss is not None:
        shown.append(f"mss={opts.mss}")
    if opts.wscale is not None:
        shown.append(f"ws={opts.wscale}")
    if opts.sack_permitted:
        shown.append("sack")
    if opts.timestamp is not None:
        shown.append(f"ts={opts.timestamp[0]}:{opts.timestamp[1]}")
    if opts.sack_blocks:
        shown.append("sack=" + ",".join(f"{a}-{b}" for a, b in opts.sack_blocks))
    if shown:
        parts.append("[" + ",".join(shown) + "]")
    return " ".join(parts)


class FakeClock:
    """Seconds as a float; moves only when told to."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Event:
    t: float
    kind: str
    fields: dict[str, object]
    matched: bool = False


class Script:
    """One connection under test, its fake clock and transcript. See the module docstring."""

    def __init__(
        self,
        config: TcpConfig | None = None,
        *,
        iss: int = 5000,
        peer_iss: int = 1000,
        now: float = 0.0,
        ts_offset: int = 0,
        path_mss: int | None = None,
    ) -> None:
        self.config = config if config is not None else TcpConfig()
        self.iss = iss & MASK32
        self.peer_iss = peer_iss & MASK32
        self.clock = FakeClock(now)
        self.ts_offset = ts_offset
        self.path_mss = path_mss
        self.lines: list[str] = []
        self.events: list[Event] = []
        self.pending: deque[TCPSegment] = deque()
        self.sent: list[TCPSegment] = []  # every segment the connection emitted
        self.received = bytearray()  # everything the user read
        self._conn: Connection | None = None
        # The simulated peer.
        self.peer_nxt = 0  # relative: the peer's next sequence number
        self.peer_win = 65535  # raw window field the peer sends by default
        self.peer_ws: int | None = None  # the peer's window scale offer
        self.peer_ts = False  # the peer sends timestamps (set by its SYN)
        self.peer_ts_offset = 100
        self.last_tsval = 0  # the latest TSval we sent: the peer echoes it

    # ---------------------------------------------------------------- basics

    @property
    def now(self) -> float:
        return self.clock.now

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self.fail("no connection yet (call connect() or passive())")
        assert self._conn is not None
        return self._conn

    def log(self, text: str) -> None:
        self.lines.append(f"t={self.now:.3f}  {text}")

    def transcript(self) -> str:
        return "\n".join(self.lines)

    def fail(self, message: str) -> None:
        __tracebackhide__ = True
        text = self.transcript() + f"\nt={self.now:.3f}  FAILED: {message}"
        print(text)
        raise AssertionError("\n" + text)

    def _on_event(self, kind: str, fields: dict[str, object]) -> None:
        self.events.append(Event(self.now, kind, dict(fields)))
        self.log("** " + kind + "".join(f" {k}={v}" for k, v in fields.items()))

    def _collect(self) -> None:
        if self._conn is None:
            return
        for seg in self._conn.take_output():
            self.log("-> " + describe(seg))
            if seg.options.timestamp is not None:
                self.last_tsval = seg.options.timestamp[0]
            self.pending.append(seg)
            self.sent.append(seg)

    def _run(self, label: str, action: Callable[[], Any]) -> Any:
        """Log a step, run it, collect what the connection emitted."""
        __tracebackhide__ = True
        self.log(label)
        try:
            result = action()
        except AssertionError:
            raise
        except Exception as exc:  # the connection raised: show where
            self._collect()
            text = self.transcript() + f"\nt={self.now:.3f}  RAISED: {exc!r}"
            print(text)
            raise AssertionError("\n" + text) from exc
        self._collect()
        return result

    # ---------------------------------------------------------- opening

    def _new_conn(self) -> Connection:
        return Connection(
            LOCAL, REMOTE, self.iss, self.config, self.now,
            ts_offset=self.ts_offset, path_mss=self.path_mss, on_event=self._on_event,
        )  # fmt: skip

    def connect(self, fastopen: Any = None, data: bytes = b"") -> Script:
        """Active open: a new Connection, ``connect(now)`` (sends SYN); `fastopen` (a
        stack.tcp.fastopen.FastOpenAttempt) and `data` are passed on."""
        self._conn = self._new_conn()
        self._run("user connect()", lambda: self.conn.connect(self.now, fastopen, data))
        return self

    def passive(
        self,
        *,
        mss: int | None = 1460,
        ws: int | None = 7,
        sackok: bool = True,
        ts: bool = True,
        win: int = 65535,
        flags: str = "S",
        data: bytes = b"",
        cookie: bytes | None = None,
        fastopen: Any = None,
    ) -> Script:
        """Passive open: the peer's SYN (with these options) reaches a listener, which
        builds the connection with ``Connection.from_syn`` (replies SYN-ACK). `flags`
        may add ECE/CWR ("SEC"); `data` and a Fast Open `cookie` ride on the SYN, and
        `fastopen` is the listener's decision (stack.tcp.fastopen.SynDecision)."""
        syn = self.make_segment(flags, seq=0, ack=0, win=win, mss=mss, ws=ws, sackok=sackok,
                                ts=(self._peer_tsval(), 0) if ts else None, data=data)  # fmt: skip
        syn.options.fastopen = cookie
        self._note_peer_syn(syn)
        self.log("<- " + describe(syn))

        def build() -> None:
            self._conn = Connection.from_syn(
                LOCAL, REMOTE, syn, self.iss, self.config, self.now,
                ts_offset=self.ts_offset, path_mss=self.path_mss, on_event=self._on_event,
                fastopen=fastopen,
            )  # fmt: skip

        self._run("listener from_syn()", build)
        self.peer_nxt = 1 + len(data)
        return self

    @classmethod
    def established(
        cls,
        config: TcpConfig | None = None,
        *,
        active: bool = True,
        mss: int | None = 1460,
        ws: int | None = 7,
        sackok: bool = True,
        ts: bool = True,
        win: int = 65535,
        rtt: float | None = HANDSHAKE_RTT,
        now: float = 0.0,
        **kwargs: Any,
    ) -> Script:
        """A connection through the three-way handshake, output consumed.

        The peer offers the options given (None/False: not offered); ``win`` is the
        raw window field of its SYN (unscaled) and of its later segments.

        The handshake takes ``rtt`` seconds and ends at ``now``: our SYN (SYN-ACK)
        goes out at ``now - rtt``, so the times a test reads after the handshake do
        not depend on ``rtt``. The ACK of our SYN gives the first RTT sample (RFC 6298
        2.2: SRTT = rtt, RTTVAR = rtt / 2, RTO = SRTT + 4 * RTTVAR = 3 * rtt, at least
        min_rto); the default, 0.1 s, is the RTT the tests' data exchanges use: RTO
        0.3 s. Its "rtt" event is matched here.

        ``rtt=None``: a handshake that gives no sample. Our first SYN (SYN-ACK) is
        lost, the initial RTO (1 s, RFC 6298 2.1) sends it again at ``now``, and the
        peer answers the copy at once: Karn's rule (RFC 6298 3) leaves no sample, and
        data starts with RFC 6298 5.7's 3 s RTO. Only without timestamps (with them
        the echo would time the copy, RFC 7323 4.1).
        """
        first_rto = 1.0  # RFC 6298 2.1
        s = cls(config, now=now - (first_rto if rtt is None else rtt), **kwargs)
        if active:
            s.connect()
            s.tx("S", seq=0)
            if rtt is None:
                s.fire()
                s.tx("S", seq=0)
            else:
                s.wait(rtt)
            s.rx("SA", seq=0, ack=1, win=win, mss=mss, ws=ws, sackok=sackok,
                 ts=(s._peer_tsval(), s.last_tsval) if ts else None)  # fmt: skip
            s.tx("A", seq=1, ack=1)
        else:
            s.passive(mss=mss, ws=ws, sackok=sackok, ts=ts, win=win)
            s.tx("SA", seq=0, ack=1)
            if rtt is None:
                s.fire()
                s.tx("SA", seq=0, ack=1)
            else:
                s.wait(rtt)
            s.rx("A", seq=1, ack=1, win=win)
        if rtt is None:
            s.expect(abs(s.now - now) < 1e-9, f"the SYN sent again at t={now}")
            s.expect_vars(srtt=None, rto=3.0)
        else:
            # (Matched here: a test's expect_event("rtt") is about its own samples.)
            s.expect_event("rtt", sample=rtt)
        s.peer_win = win
        s.expect_state(State.ESTABLISHED)
        s.no_tx()
        s.log("---- established ----")
        return s

    # ------------------------------------------------------------ user calls

    def send(self, data: bytes | int) -> int:
        """User send; an int sends that many pattern bytes (continuing the stream)."""
        if isinstance(data, int):
            data = pattern(data, self.conn.snd.sendbuf.end)
        payload = data
        return int(self._run(f"user send({len(payload)} bytes)",
                             lambda: self.conn.send(payload, self.now)))  # fmt: skip

    def recv(self, n: int = 1 << 30) -> bytes:
        data = self._run(f"user recv({n})", lambda: self.conn.recv(n, self.now))
        self.received += data
        self.lines[-1] += f" -> {len(data)} bytes"
        return bytes(data)

    def shutdown(self) -> None:
        self._run("user shutdown_write()", lambda: self.conn.shutdown_write(self.now))

    def close(self) -> None:
        self._run("user close()", lambda: self.conn.close(self.now))

    def abort(self) -> None:
        self._run("user abort()", lambda: self.conn.abort(self.now))

    def icmp_unreachable(self, err: int) -> None:
        self._run(f"icmp unreachable errno={err}",
                  lambda: self.conn.on_icmp_unreachable(err, self.now))  # fmt: skip

    def path_mtu(self, mtu: int) -> None:
        self._run(f"icmp frag-needed mtu={mtu}", lambda: self.conn.on_path_mtu(mtu, self.now))

    def call(self, label: str, fn: Callable[[Connection], Any]) -> Any:
        """Any other step on the connection, logged under ``label``."""
        return self._run(label, lambda: fn(self.conn))

    # ------------------------------------------------------------------ time

    def wait(self, dt: float) -> None:
        """Let ``dt`` seconds pass, firing each timer at its deadline on the way."""
        target = self.now + dt
        fired_at: list[float] = []
        while self._conn is not None:
            deadline = self._conn.next_deadline()
            if deadline is None or deadline > target + 1e-12:
                break
            self.clock.now = max(self.now, deadline)
            fired_at.append(self.now)
            if len(fired_at) > 50 and fired_at[-50] == self.now:
                self.fail(f"timer livelock: next_deadline() stays at {deadline} after "
                          "50 on_timer calls")  # fmt: skip
            self._run("timer", lambda: self.conn.on_timer(self.now))
        self.clock.now = target

    def fire(self) -> float:
        """Jump to the next deadline and run the timers; returns the new time."""
        deadline = self.conn.next_deadline()
        if deadline is None:
            self.fail("fire(): no timer is running")
        assert deadline is not None
        self.clock.now = max(self.now, deadline)
        self._run("timer", lambda: self.conn.on_timer(self.now))
        return self.now

    def at(self, t: float) -> None:
        """Move the clock to ``t``, firing timers on the way."""
        self.wait(t - self.now)

    # ----------------------------------------------------------- peer input

    def _peer_tsval(self) -> int:
        return (int(self.now * 1000) + self.peer_ts_offset) & MASK32

    def _note_peer_syn(self, seg: TCPSegment) -> None:
        self.peer_ts = seg.options.timestamp is not None
        self.peer_ws = seg.options.wscale

    def make_segment(
        self,
        flags: str,
        *,
        seq: int | None = None,
        ack: int | None = None,
        win: int | None = None,
        data: bytes | int = b"",
        mss: int | None = None,
        ws: int | None = None,
        sackok: bool = False,
        ts: tuple[int, int] | None | bool = True,
        sack: Iterable[tuple[int, int]] = (),
        raw_seq: int | None = None,
        raw_ack: int | None = None,
    ) -> TCPSegment:
        """A peer segment. ``seq`` is relative to the peer's ISS (default: its next
        sequence number), ``ack`` relative to our ISS (default: all we sent, SND.MAX);
        ``raw_seq``/``raw_ack`` give absolute values. ``data`` may be a byte count
        (pattern bytes at that stream offset). ``ts=True`` adds the peer's timestamp
        when the peer negotiated timestamps; ``ts=None``/False sends none; a tuple is
        sent as is. ``sack`` blocks are relative to our ISS."""
        bits = parse_flags(flags)
        rel_seq = self.peer_nxt if seq is None else seq
        if isinstance(data, int):
            # Stream offset of the first byte: a SYN takes seq 0, so its data (RFC 9293
            # 3.10.7.3 lets a SYN carry some) starts at offset rel_seq, other data at
            # rel_seq - 1.
            data = pattern(data, rel_seq - 1 + (1 if bits & SYN else 0))
        if ack is None and raw_ack is None:
            ack = (self._conn.snd.max - self.iss) if self._conn is not None else 0
        abs_seq = raw_seq if raw_seq is not None else self.peer_iss + rel_seq
        abs_ack = raw_ack if raw_ack is not None else self.iss + (ack or 0)
        if ts is True:
            ts_opt: tuple[int, int] | None = (
                (self._peer_tsval(), self.last_tsval) if self.peer_ts else None
            )
        elif ts is False or ts is None:
            ts_opt = None
        else:
            ts_opt = ts
        options = TCPOptions(
            mss=mss, wscale=ws, sack_permitted=sackok,
            sack_blocks=[((self.iss + a) & MASK32, (self.iss + b) & MASK32) for a, b in sack],
            timestamp=ts_opt,
        )  # fmt: skip
        return TCPSegment(
            src_port=REMOTE[1], dst_port=LOCAL[1], seq=abs_seq & MASK32,
            ack=abs_ack & MASK32 if bits & ACK else 0, flags=bits,
            window=self.peer_win if win is None else win, urgent=0, options=options,
            payload=data,
        )  # fmt: skip

    def rx(self, flags: str, **kwargs: Any) -> TCPSegment:
        """The connection receives a peer segment (see `make_segment` for arguments)."""
        seg = self.make_segment(flags, **kwargs)
        return self.rx_segment(seg)

    def rx_segment(self, seg: TCPSegment) -> TCPSegment:
        if seg.flags & SYN:
            self._note_peer_syn(seg)
        rel = (seg.seq - self.peer_iss) & MASK32
        if rel == self.peer_nxt or (seg.flags & SYN and rel == 0):
            self.peer_nxt = rel + seg.seg_len
        self._run("<- " + describe(seg), lambda: self.conn.on_segment(seg, self.now))
        return seg

    # --------------------------------------------------------- expectations

    def rel_seq(self, seg: TCPSegment) -> int:
        return (seg.seq - self.iss) & MASK32

    def rel_ack(self, seg: TCPSegment) -> int:
        return (seg.ack - self.peer_iss) & MASK32

    def tx(
        self,
        flags: str | Any = ANY,
        *,
        seq: int | Any = ANY,
        ack: int | Any = ANY,
        win: int | Any = ANY,
        wnd: int | Any = ANY,
        data: bytes | Any = ANY,
        length: int | Any = ANY,
        mss: int | None | Any = ANY,
        ws: int | None | Any = ANY,
        sackok: bool | Any = ANY,
        ts: tuple[int, int] | None | Any = ANY,
        tsecr: int | Any = ANY,
        sack: list[tuple[int, int]] | Any = ANY,
        raw_seq: int | Any = ANY,
        raw_ack: int | Any = ANY,
    ) -> TCPSegment:
        """Take the next emitted segment and check the given fields.

        ``seq`` is relative to our ISS, ``ack`` to the peer's ISS, ``win`` the raw
        window field, ``wnd`` the window in bytes (field << our scale), ``sack`` the
        blocks relative to the peer's ISS."""
        __tracebackhide__ = True
        want: list[str] = []
        for name, value in (("flags", flags), ("seq", seq), ("ack", ack), ("win", win),
                            ("wnd", wnd), ("len", length), ("mss", mss), ("ws", ws),
                            ("sackok", sackok), ("ts", ts), ("tsecr", tsecr), ("sack", sack),
                            ("raw_seq", raw_seq), ("raw_ack", raw_ack)):  # fmt: skip
            if value is not ANY:
                shown = f"+{value}" if name in ("seq", "ack") else value
                want.append(f"{name}={shown}")
        if data is not ANY:
            want.append(f"data=<{len(data)} bytes>")
        label = "expect -> " + " ".join(want)
        if not self.pending:
            self.fail(f"{label}: nothing was sent")
        seg = self.pending.popleft()
        errors: list[str] = []

        def check(name: str, expected: Any, actual: Any) -> None:
            if expected is not ANY and expected != actual:
                errors.append(f"{name}: expected {expected!r}, got {actual!r}")

        if flags is not ANY:
            if parse_flags(flags) != seg.flags:
                errors.append(f"flags: expected {flags!r}, got {seg.flags_str()!r}")
        check("seq", seq, self.rel_seq(seg))
        check("ack", ack, self.rel_ack(seg))
        check("raw_seq", raw_seq, seg.seq)
        check("raw_ack", raw_ack, seg.ack)
        check("win", win, seg.window)
        if wnd is not ANY:
            shift = self._conn.rcv.wscale if self._conn is not None else 0
            check("wnd", wnd, seg.window << shift)
        check("len", length, len(seg.payload))
        if data is not ANY and bytes(seg.payload) != bytes(data):
            errors.append(
                f"data: expected {bytes(data)[:32]!r}..., got {bytes(seg.payload)[:32]!r}..."
            )
        opts = seg.options
        check("mss", mss, opts.mss)
        check("ws", ws, opts.wscale)
        check("sackok", sackok, opts.sack_permitted)
        check("ts", ts, opts.timestamp)
        if tsecr is not ANY:
            check("tsecr", tsecr, opts.timestamp[1] if opts.timestamp else None)
        if sack is not ANY:
            rel = [((a - self.peer_iss) & MASK32, (b - self.peer_iss) & MASK32)
                   for a, b in opts.sack_blocks]  # fmt: skip
            check("sack", list(sack), rel)
        if errors:
            self.fail(f"{label}\n    got -> {describe(seg)}\n    " + "\n    ".join(errors))
        self.log("ok  " + " ".join(want))
        return seg

    def no_tx(self) -> None:
        """Nothing (more) was sent."""
        __tracebackhide__ = True
        if self.pending:
            self.fail("expected no segment, but sent: "
                      + "; ".join(describe(seg) for seg in self.pending))  # fmt: skip
        self.log("ok  nothing sent")

    def drain(self) -> list[TCPSegment]:
        """Take (without checking) everything emitted so far."""
        segs = list(self.pending)
        self.pending.clear()
        if segs:
            self.log(f"(drained {len(segs)} segment(s))")
        return segs

    def expect(self, condition: bool, description: str) -> None:
        """A free-form check, logged with its description."""
        __tracebackhide__ = True
        if not condition:
            self.fail(description)
        self.log("ok  " + description)

    def expect_state(self, state: State | str) -> None:
        __tracebackhide__ = True
        actual = self.conn.state
        if str(actual) != str(state):
            self.fail(f"expected state {state}, got {actual}")
        self.log(f"ok  state {actual}")

    def expect_error(self, err: int) -> None:
        __tracebackhide__ = True
        if self.conn.error != err:
            self.fail(f"expected error {err}, got {self.conn.error}")
        self.log(f"ok  error={err}")

    def expect_deadline(self, t: float | None, tol: float = 1e-6) -> None:
        """next_deadline() is ``t`` (absolute time) or None."""
        __tracebackhide__ = True
        actual = self.conn.next_deadline()
        if t is None or actual is None:
            good = t is actual
        else:
            good = abs(actual - t) <= tol
        if not good:
            self.fail(f"expected next deadline {t}, got {actual}")
        self.log(f"ok  deadline {t}")

    # The RFC's names of the variables, and where each lives now: the sender
    # (stack/tcp/sender.py), the receiver, loss recovery, the timers.
    _ALIASES = {
        "cwnd": ("cc", "cwnd"), "ssthresh": ("cc", "ssthresh"),
        "srtt": ("rto", "srtt"), "rttvar": ("rto", "rttvar"), "rto": ("rto", "rto"),
        "snd_una": ("snd", "una"), "snd_nxt": ("snd", "nxt"), "snd_max": ("snd", "max"),
        "snd_wnd": ("snd", "wnd"), "max_snd_wnd": ("snd", "max_wnd"), "sendbuf": ("snd", "sendbuf"),
        "rcv_nxt": ("rcv", "nxt"), "rcv_right": ("rcv", "right"), "rcv_wscale": ("rcv", "wscale"),
        "rx_len": ("rcv", "rx_len"), "ack_pending": ("rcv", "ack_pending"),
        "in_recovery": ("recovery", "in_recovery"), "dupacks": ("recovery", "dupacks"),
        "recover": ("recovery", "recover"), "sacked": ("recovery", "scoreboard", "blocks"),
        "tlp_end_seq": ("recovery", "tlp_end_seq"), "tlp_is_retrans": ("recovery", "tlp_is_retrans"),
        "snd_wscale": ("opts", "snd_wscale"), "sack_ok": ("opts", "sack_ok"),
        "ts_ok": ("opts", "ts_ok"), "ts_recent": ("opts", "ts_recent"),
        "peer_mss": ("opts", "peer_mss"), "path_mss": ("opts", "path_mss"),
        "rtx_deadline": ("timers", "rtx"), "pto_deadline": ("timers", "pto"),
        "delack_deadline": ("timers", "delack"), "persist_deadline": ("timers", "persist"),
    }  # fmt: skip

    def var(self, name: str) -> Any:
        """A connection variable: attribute names, dotted paths, the aliases cwnd,
        ssthresh, srtt, rttvar, rto, and relative una/nxt/max (send side, from our ISS)
        and rcv (RCV.NXT from the peer's ISS)."""
        conn = self.conn
        rel = {
            "una": lambda: conn.snd.una - conn.iss, "nxt": lambda: conn.snd.nxt - conn.iss,
            "max": lambda: conn.snd.max - conn.iss, "rcv": lambda: conn.rcv.nxt - conn.rcv.irs,
        }  # fmt: skip
        if name in rel:
            return rel[name]()
        path = self._ALIASES.get(name, tuple(name.split(".")))
        obj: Any = conn
        for part in path:
            obj = getattr(obj, part)
        return obj

    def expect_vars(self, **values: Any) -> None:
        """Connection variables (see `var`); floats compare with a 1e-9 tolerance."""
        __tracebackhide__ = True
        errors = []
        for name, want in values.items():
            got = self.var(name)
            if isinstance(want, float) or isinstance(got, float):
                ok = want is not None and got is not None and math.isclose(got, want, abs_tol=1e-9)
            else:
                ok = got == want
            if not ok:
                errors.append(f"{name}: expected {want!r}, got {got!r}")
        if errors:
            self.fail("; ".join(errors))
        self.log("ok  " + " ".join(f"{k}={v}" for k, v in values.items()))

    def _match(self, ev: Event, kind: str, fields: dict[str, object]) -> bool:
        if ev.kind != kind:
            return False
        for key, want in fields.items():
            got = ev.fields.get(key, ANY)
            if isinstance(want, float) and isinstance(got, (int, float)):
                if not math.isclose(got, want, abs_tol=1e-6):
                    return False
            elif got != want:
                return False
        return True

    def expect_event(self, kind: str, **fields: object) -> dict[str, object]:
        """An event of ``kind`` with these fields was reported (and not matched before).

        ``from``/``to`` of a state event are Python keywords: pass ``frm=``/``to=``."""
        __tracebackhide__ = True
        if "frm" in fields:
            fields["from"] = fields.pop("frm")
        for ev in self.events:
            if not ev.matched and self._match(ev, kind, fields):
                ev.matched = True
                self.log(f"ok  event {kind} " + " ".join(f"{k}={v}" for k, v in fields.items()))
                return ev.fields
        self.fail(f"expected event {kind} {fields}; unmatched events: "
                  + "; ".join(f"{e.kind} {e.fields}" for e in self.events if not e.matched))  # fmt: skip
        return {}

    def expect_no_event(self, kind: str, **fields: object) -> None:
        __tracebackhide__ = True
        if "frm" in fields:
            fields["from"] = fields.pop("frm")
        for ev in self.events:
            if not ev.matched and self._match(ev, kind, fields):
                self.fail(f"unexpected event {kind} {ev.fields}")
        self.log(f"ok  no event {kind} {fields or ''}".rstrip())

    def events_of(self, kind: str) -> list[dict[str, object]]:
        return [ev.fields for ev in self.events if ev.kind == kind]

    def mark_events(self) -> None:
        """Forget the events so far (expect_event looks only at later ones)."""
        for ev in self.events:
            ev.matched = True
