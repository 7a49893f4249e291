"""Run packetdrill scripts against the sans-IO host on a virtual clock.

The script is the remote peer. Its inbound packets (`<`) are handed to the host as
IPv4 or IPv6 packets (--ip_version); the host's outbound packets are queued with the
virtual time they left; an outbound expectation (`>`) takes the oldest one, firing
the host's timers in order until one leaves or the expectation's time (plus the
tolerance) has passed. System calls run on the stack's socket layer at their time.
Nothing waits on a real clock, so a run is fast and the same every time (the host's
random draws are seeded).

Timing, as packetdrill: `0.1` is 0.1 s after the start, `+0.1` 0.1 s after the previous
event (for an outbound packet, after it actually left), `*` any time, `a...b` a
blocking call that returns between a and b; an outbound packet must leave within
--tolerance_usecs of its time. Packets the stack sends that no `>` line asks for
are only caught when the next `>` line sees them (as in packetdrill).

Sysctls (`sysctl -w name=value`) map onto the host's TCP settings where tcplab has
the same knob (SYSCTLS); one that asks for a behaviour tcplab does not have makes the
script "skipped: not supported".
"""

from __future__ import annotations

import errno
import re
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from stack.drill.adapter import StackAdapter, StackSettings, seeded
from stack.drill.matcher import compare
from stack.drill.model import (
    CodeBlock,
    Event,
    IcmpPacket,
    PacketEvent,
    Script,
    ScriptError,
    ShellCommand,
    Syscall,
    TcpPacket,
    Unsupported,
)
from stack.drill.packets import (
    FLAG_BITS,
    MASK32,
    Decoded,
    Mapping,
    build_icmp_packet,
    build_tcp_packet,
    decode,
    packet_text,
)
from stack.drill.parser import DEFAULT_DEFINES, parse_file
from stack.drill.syscalls import (
    LOCAL_PORT,
    REMOTE_PORT,
    FileTable,
    ValueMismatch,
    WouldBlock,
    evaluate,
    show,
    sockopt_supported,
)

MAX_WAIT = 3600.0  # virtual seconds a blocking call may wait at the end of a script
LOOK_AHEAD = 10.0  # how far past a missed expectation the report looks for the packet

# ------------------------------------------------------------------ sysctls


def _flag(attr: str) -> Callable[[StackSettings, int], None]:
    def apply(s: StackSettings, v: int) -> None:
        setattr(s, attr, bool(v))

    return apply


def _negated(attr: str) -> Callable[[StackSettings, int], None]:
    def apply(s: StackSettings, v: int) -> None:
        setattr(s, attr, not v)

    return apply


def _set(attr: str, scale: float = 1.0) -> Callable[[StackSettings, int], None]:
    def apply(s: StackSettings, v: int) -> None:
        setattr(s, attr, type(getattr(s, attr))(v * scale))

    return apply


def _only(allowed: Iterable[int], why: str) -> Callable[[StackSettings, int], None]:
    values = set(allowed)

    def apply(s: StackSettings, v: int) -> None:
        if v not in values:
            raise Unsupported(why.format(v=v))

    return apply


def _rfc1323(s: StackSettings, v: int) -> None:
    # FreeBSD: 0 neither, 1 both, 2 window scaling only, 3 timestamps only.
    s.window_scaling = v in (1, 2)
    s.timestamps = v in (1, 3)


def _ecn(s: StackSettings, v: int) -> None:
    # FreeBSD's 0/1/2 are Linux's net.ipv4.tcp_ecn values (stack/tcp/ecn.py).
    if v not in (0, 1, 2):
        raise Unsupported(f"sysctl net.inet.tcp.ecn.enable={v}")
    s.ecn = v


def _ranged(attr: str, allowed: range) -> Callable[[StackSettings, int], None]:
    """A setting with FreeBSD's range (outside it FreeBSD's sysctl fails: EINVAL)."""

    def apply(s: StackSettings, v: int) -> None:
        if v not in allowed:
            raise Unsupported(f"sysctl {attr}={v} (FreeBSD refuses it: EINVAL)")
        setattr(s, attr, v)

    return apply


def _ignore(s: StackSettings, v: int) -> None:
    return None


SYSCTLS: dict[str, Callable[[StackSettings, int], None]] = {
    "net.inet.tcp.sack.enable": _flag("sack"),
    "net.inet.tcp.ecn.enable": _ecn,
    "net.inet.tcp.rfc1323": _rfc1323,
    "net.inet.tcp.recvspace": _set("recv_buffer"),
    "net.inet.tcp.sendspace": _set("send_buffer"),
    "net.inet.tcp.delacktime": _set("delayed_ack", 0.001),
    "net.inet.tcp.rexmit_initial": _set("initial_rto", 0.001),
    "net.inet.tcp.keepidle": _set("keepalive_idle", 0.001),
    "net.inet.tcp.keepintvl": _set("keepalive_interval", 0.001),
    "net.inet.tcp.keepcnt": _set("keepalive_count"),
    # No tcplab equivalent, and no effect on what the scripts check:
    "net.inet.tcp.hostcache.purgenow": _ignore,  # tcplab keeps no host cache
    "kern.ipc.maxsockbuf": _ignore,  # bounds FreeBSD's buffers (and so its wscale)
    "net.inet.tcp.rexmit_slop": _ignore,  # FreeBSD's RTO slop; tcplab's floor is min_rto
    "net.inet.tcp.ecn.maxretries": _ignore,
    # FreeBSD's SYN cookies when the SYN cache overflows (syncookies=1, its default): no
    # script overflows it; tcplab recycles its oldest half-open connection instead
    # (RFC 4987 3.4, stack/host.py Listener). Cookies only (syncookies_only=1) is not
    # tcplab's: a SYN-RECEIVED connection is always kept.
    "net.inet.tcp.syncookies": _only([0, 1], "sysctl net.inet.tcp.syncookies={v}"),
    "net.inet.tcp.syncookies_only": _only([0], "sysctl net.inet.tcp.syncookies_only={v} (SYN cookies only)"),
    # Behaviours tcplab has one way only: the default value is fine, others are not.
    "net.inet.tcp.blackhole": _only([0], "sysctl net.inet.tcp.blackhole={v} (tcplab always answers with RST)"),
    "net.inet.tcp.insecure_rst": _negated("rfc5961_rst"),  # 1: RFC 793 RSTs, not RFC 5961 3.2
    "net.inet.tcp.insecure_syn": _negated("rfc5961_syn"),  # 1: RFC 793 SYNs, not RFC 5961 4.2
    "net.inet.tcp.drop_synfin": _flag("drop_synfin"),  # 1: drop a SYN+FIN that would open
    "net.inet.tcp.rexmit_drop_options": _only(
        [0], "sysctl net.inet.tcp.rexmit_drop_options={v} (SYN retransmissions without options)"),
    "net.inet.tcp.icmp_may_rst": _only([1], "sysctl net.inet.tcp.icmp_may_rst={v} (ICMP hard errors ignored)"),
    # TCP Fast Open (RFC 7413): FreeBSD's switches are bits of tcplab's (Linux's) mode.
    "net.inet.tcp.fastopen.client_enable": _flag("fastopen_client"),
    "net.inet.tcp.fastopen.server_enable": _flag("fastopen_server"),
    # TCP over UDP (stack/tcp_over_udp.py): the tunneling port (0 off), the MSS overhead.
    "net.inet.tcp.udp_tunneling_port": _ranged("udp_tunneling_port", range(0, 0x10000)),
    "net.inet.tcp.udp_tunneling_overhead": _ranged("udp_tunneling_overhead", range(8, 1025)),
    "net.inet.tcp.keepinit": _set("connect_timeout", 0.001),  # TCP_KEEPINIT's default
}  # fmt: skip

_SYSCTL_RE = re.compile(r"^sysctl\s+-w\s+([a-z0-9_.]+)=(\d+)$")
_SOCKSTAT_RE = re.compile(r"^sockstat\s+-([46])\s+-P\s+tcp\b[^|]*\|(?:\s*grep\s+packetdril\s*\|)?\s*"
                          r"grep\s+-c\s+([A-Z_0-9]+)\s*\|\s*grep\s+(\d+)$")
_TCPDROP_RE = re.compile(r"^tcpdrop\s+-s\s+([A-Z_0-9]+)$")
_ASSERT_RE = re.compile(r"^assert\s+(tcpi_state|tcpi_options)\s*==\s*([A-Z_0-9|()\s]+)$")

_FREEBSD_STATES = {
    "CLOSED": "CLOSED", "LISTEN": "LISTEN", "SYN_SENT": "SYN-SENT", "SYN_RCVD": "SYN-RECEIVED",
    "SYN_RECEIVED": "SYN-RECEIVED", "ESTABLISHED": "ESTABLISHED", "CLOSE_WAIT": "CLOSE-WAIT",
    "FIN_WAIT_1": "FIN-WAIT-1", "CLOSING": "CLOSING", "LAST_ACK": "LAST-ACK",
    "FIN_WAIT_2": "FIN-WAIT-2", "TIME_WAIT": "TIME-WAIT",
}  # fmt: skip
_TCPI = {"TCPI_OPT_TIMESTAMPS": 1, "TCPI_OPT_SACK": 2, "TCPI_OPT_WSCALE": 4, "TCPI_OPT_ECN": 8}


def apply_sysctl(settings: StackSettings, command: str) -> None:
    m = _SYSCTL_RE.match(command)
    if m is None:
        raise Unsupported(f"shell command `{command.split()[0]}`")
    handler = SYSCTLS.get(m.group(1))
    if handler is None:
        raise Unsupported(f"sysctl {m.group(1)}")
    handler(settings, int(m.group(2)))


# ------------------------------------------------------------------ results


@dataclass
class Result:
    path: str
    status: str  # "passed", "failed", "skipped"
    reason: str = ""  # one line: why it failed or was skipped
    report: str = ""  # the decoded failure report
    relaxations: set[str] = field(default_factory=set)
    seconds: float = 0.0  # wall clock


class Failure(Exception):
    """The stack did not do what the script says (reason: one line; report: decoded)."""

    def __init__(self, reason: str, report: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.report = report


@dataclass
class _Pending:
    """A system call on a blocking socket that waits (retried as the clock moves)."""

    event: Event
    retry: Callable[[], int]
    deadline: float | None  # the end of its `a...b` range, if any


class Runner:
    """Runs one parsed script once (`run()`), on the sans-IO stack (a virtual clock).

    stack/drill/live.py's DaemonRunner runs it against the daemon instead; what the two
    do differently is in `_start` (the stack and the system calls), `syscall_table`,
    `max_wait`, `look_ahead` and `call_grace`."""

    syscall_table: type = FileTable  # the class whose sys_NAME methods run the calls

    def __init__(self, script: Script, *, strict: bool = False) -> None:
        self.script = script
        self.strict = strict
        self.tol = script.tolerance
        self.max_wait = MAX_WAIT  # how long a `*` expectation or a blocking call may wait
        self.look_ahead = LOOK_AHEAD
        self.call_grace = 0.0  # how long after its time a call waits for a pending one
        self.settings = StackSettings()
        if "mtu" in script.options:
            self.settings.mtu = int(script.options["mtu"])
        self.relaxed: set[str] = set()
        self.files: FileTable | None = None
        self.pending: _Pending | None = None

    @property
    def table(self) -> FileTable:
        """The script's file descriptors (while it runs)."""
        assert self.files is not None
        return self.files

    # ---------------------------------------------------------- checks first

    def preflight(self) -> None:
        """Raise Unsupported for any construct the run could not honour."""
        opts = self.script.options
        if self.script.ip_version not in ("ipv4", "ipv6"):
            raise Unsupported(f"--ip_version={self.script.ip_version}")
        if opts.get("udp_encapsulation", "tcp") != "tcp":
            # packetdrill's other encapsulations (sctp) carry no TCP.
            raise Unsupported(f"--udp_encapsulation={opts['udp_encapsulation']}")
        for name in ("tcp_md5_secret", "wire_client", "wire_server"):
            if name in opts:
                raise Unsupported(f"--{name}")
        # --udp_encapsulation=tcp: TCP over UDP (`/udp(S > D)` packets, stack/tcp_over_udp.py).
        known = {"ip_version", "tolerance_usecs", "mtu", "non_fatal", "udp_encapsulation"}
        for name in opts:
            if name not in known:
                raise Unsupported(f"--{name}")
        settings = replace(self.settings)
        for ev in self.script.events:
            body = ev.body
            if isinstance(body, ShellCommand):
                self._check_shell(body.command, settings)
            elif isinstance(body, CodeBlock):
                if _ASSERT_RE.match(body.code) is None:
                    raise Unsupported("%{ }% code other than `assert tcpi_state/tcpi_options == ...`")
            elif isinstance(body, PacketEvent) and isinstance(body.packet, TcpPacket):
                pkt = body.packet
                if pkt.ecn == "ect01":
                    raise Unsupported("the [ect01] ECN codepoint set")
                if "U" in pkt.flags:
                    raise Unsupported("urgent data (URG)")
                for o in pkt.options or []:
                    if o.kind == "md5":
                        raise Unsupported("TCP MD5 signature option (RFC 2385)")
            elif isinstance(body, PacketEvent) and isinstance(body.packet, IcmpPacket):
                if body.direction == ">":
                    raise Unsupported("outbound ICMP expectations")
            elif isinstance(body, Syscall):
                if not hasattr(self.syscall_table, "sys_" + body.name):
                    raise Unsupported(f"system call {body.name}()")
                if body.name in ("setsockopt", "getsockopt") and len(body.args) >= 3:
                    level, name = body.args[1], body.args[2]
                    # With --non_fatal=syscall an option the stack lacks is a call that
                    # fails (ENOPROTOOPT) and the script goes on, as packetdrill's
                    # does on a kernel without it; otherwise the script is skipped.
                    if not sockopt_supported(level, name) and "syscall" not in self.script.options.get(
                            "non_fatal", ""):
                        raise Unsupported(f"socket option {show(name)}")
                if body.name == "socket" and len(body.args) == 3 and body.args[1] != "SOCK_STREAM":
                    raise Unsupported(f"socket type {body.args[1]}")

    def _check_shell(self, command: str, settings: StackSettings) -> None:
        if command.startswith("sysctl"):
            apply_sysctl(settings, command)
        elif _SOCKSTAT_RE.match(command) is None and _TCPDROP_RE.match(command) is None:
            raise Unsupported(f"shell command `{command.split()[0]}`")

    # ---------------------------------------------------------- the run

    def run(self) -> Result:
        started = time.perf_counter()
        result = Result(self.script.path, "passed")
        try:
            self.preflight()
            with seeded(0x7C91AB):
                self._run()
        except Unsupported as exc:
            result.status, result.reason = "skipped", f"not supported: {exc}"
        except Failure as exc:
            result.status, result.reason, result.report = "failed", exc.reason, exc.report
        except Exception as exc:  # the stack raised: that is a failure, with its traceback
            result.status, result.reason = "failed", f"the stack raised {exc!r}"
            result.report = traceback.format_exc()
        result.relaxations = set(self.relaxed)
        if self.files is not None:
            result.relaxations |= self.files.relaxed
        result.seconds = time.perf_counter() - started
        return result

    def _start(self) -> None:
        """The stack and the script's file table."""
        self.stack = StackAdapter(self.settings, ipv6=self.script.ip_version == "ipv6")
        self.files = FileTable(self.stack, strict=self.strict)

    def _run(self) -> None:
        self._start()
        self.map = Mapping(self.stack.local_addr, self.stack.remote_addr, LOCAL_PORT, REMOTE_PORT)
        self.non_fatal_syscalls = "syscall" in self.script.options.get("non_fatal", "")
        prev = 0.0
        for ev in self.script.events:
            prev = self._event(ev, prev)
        if self.pending is not None:
            pend = self.pending
            limit = pend.deadline + self.tol if pend.deadline is not None else self.stack.now + self.max_wait
            self._drive(limit, lambda: self.pending is None)
            if self.pending is not None:
                self._fail(pend.event, "the blocking call never returned")

    def _times(self, ev: Event, prev: float) -> tuple[float | None, float | None]:
        t = ev.timing
        if t.kind == "any":
            return None, None
        start = prev + t.start if t.kind == "rel" else t.start
        if t.end is None:
            return start, start
        end = start + t.end if t.end_kind == "rel" else t.end
        return start, end

    def _event(self, ev: Event, prev: float) -> float:
        start, end = self._times(ev, prev)
        body = ev.body
        if isinstance(body, PacketEvent) and body.direction == ">":
            assert isinstance(body.packet, TcpPacket)
            return self._expect_outbound(ev, body.packet, start, end)
        if self.pending is not None and isinstance(body, Syscall):
            until = start + self.call_grace if start is not None else self.stack.now + self.call_grace
            self._drive(until, lambda: self.pending is None)
            if self.pending is not None:
                self._fail(self.pending.event, "the blocking call has not returned by the next call")
        if start is not None:
            self._drive(start, lambda: False)
            self.stack.advance(start)
        now = self.stack.now
        if isinstance(body, PacketEvent):
            self._inbound(ev, body)
        elif isinstance(body, Syscall):
            self._syscall(ev, body, end if ev.timing.end is not None else None)
        elif isinstance(body, ShellCommand):
            self._shell(ev, body.command)
        elif isinstance(body, CodeBlock):
            self._code(ev, body.code)
        self._poll_pending()
        return now

    def _drive(self, until: float, done: Callable[[], bool]) -> None:
        """Fire the timers due by `until`, one at a time, checking the pending call."""
        while not done() and self.stack.step(until):
            self._poll_pending()

    # ---------------------------------------------------------- packets

    def _inbound(self, ev: Event, body: PacketEvent) -> None:
        pkt = body.packet
        if isinstance(pkt, TcpPacket):
            raw = build_tcp_packet(pkt, self.map)
        else:
            raw = build_icmp_packet(pkt, self.map)
        self.stack.inject(raw)

    def _expect_outbound(self, ev: Event, exp: TcpPacket, start: float | None, end: float | None) -> float:
        limit = (end if end is not None else self.stack.now) + self.tol
        if start is None:
            limit = self.stack.now + self.max_wait
        while not self.stack.outbox:
            if not self.stack.step(limit):
                break
            self._poll_pending()
        if not self.stack.outbox:
            # Nothing in time. Look on (the run fails either way) to report what came late.
            while not self.stack.outbox and self.stack.step(limit + self.look_ahead):
                pass
            if not self.stack.outbox:
                when = f"by {limit:.3f} s" if start is not None else "at all"
                self._fail(ev, f"timed out waiting for a packet ({when})",
                           f"  expected: {packet_text(exp)}\n  actual:   nothing sent")
        sent_at, raw = self.stack.outbox.popleft()
        self._learn(exp, raw)
        act = decode(raw, sent_at, self.map)
        diffs = compare(exp, act, strict=self.strict, used=self.relaxed)
        if start is not None and end is not None:
            # A late packet is reported as late first: it may be another packet
            # altogether (a retransmission, where the expected ACK never left).
            if sent_at < start - self.tol - 1e-9:
                diffs.append(f"time: expected {start:.3f} s, actual {sent_at:.3f} s (too early)")
            elif sent_at > end + self.tol + 1e-9:
                diffs.insert(0, f"time: expected {end:.3f} s, actual {sent_at:.3f} s (too late)")
        if diffs:
            self._fail(ev, diffs[0], self._packet_report(exp, act, start, diffs))
        return sent_at

    def _learn(self, exp: TcpPacket, raw: bytes) -> None:
        """Our ISS from our SYN or SYN-ACK, our TSval offset from the first TS option."""
        probe = decode(raw, 0.0, Mapping("", "", 0, 0))
        if probe.icmp is not None:
            return
        if probe.flags & FLAG_BITS["S"]:
            if exp.seq is not None and not exp.absolute_seq:
                self.map.local_iss = (probe.raw_seq - exp.seq) & MASK32
            self.map.local_port = probe.sport
            self.map.ts_offset = None
        if probe.raw_ts_val is not None and self.map.ts_offset is None:
            want = next((o.value[0] for o in exp.options or [] if o.kind == "TS"), None)
            if want is not None:
                self.map.ts_offset = (probe.raw_ts_val - want) & MASK32

    def _packet_report(self, exp: TcpPacket, act: Decoded, start: float | None, diffs: list[str]) -> str:
        when = f"{start:.3f}" if start is not None else "*"
        lines = [
            f"  expected: {when:>8} {packet_text(exp)}",
            f"  actual:   {act.time:8.3f} {act.text()}",
        ]
        lines += [f"  - {d}" for d in diffs]
        return "\n".join(lines)

    # ---------------------------------------------------------- calls

    def _syscall(self, ev: Event, sc: Syscall, deadline: float | None) -> None:
        try:
            got = self.table.call(sc)
        except WouldBlock as wb:
            self.pending = _Pending(ev, wb.retry, deadline)
            return
        except ValueMismatch as exc:
            self._syscall_fail(ev, str(exc))
            return
        except OSError as exc:
            self._check_result(ev, sc, -1, exc.errno or 0)
            return
        self._check_result(ev, sc, got, 0)

    def _poll_pending(self) -> None:
        pend = self.pending
        if pend is None:
            return
        assert isinstance(pend.event.body, Syscall)
        try:
            got = pend.retry()
        except WouldBlock as wb:
            pend.retry = wb.retry
            return
        except OSError as exc:
            self.pending = None
            self._check_result(pend.event, pend.event.body, -1, exc.errno or 0)
        else:
            self.pending = None
            self._check_result(pend.event, pend.event.body, got, 0)
        if pend.deadline is not None:
            now = self.stack.now
            if abs(now - pend.deadline) > self.tol + 1e-9:
                self._syscall_fail(pend.event, f"returned at {now:.3f} s, expected {pend.deadline:.3f} s")

    def _check_result(self, ev: Event, sc: Syscall, got: int, err: int) -> None:
        want = evaluate(sc.result)
        want_errno = evaluate(sc.errno_name) if sc.errno_name else 0
        if got == -1 and err:
            shown = f"-1 {errno.errorcode.get(err, err)}"
        else:
            shown = str(got)
        if sc.name == "socket" or (sc.name == "accept" and got >= 0 and want >= 0):
            ok = got >= 0
        else:
            ok = got == want and (want != -1 or want_errno == err)
        if not ok:
            expected = f"{want}" + (f" {sc.errno_name}" if sc.errno_name else "")
            self._syscall_fail(ev, f"{sc.name}() returned {shown}, expected {expected}")

    def _syscall_fail(self, ev: Event, message: str) -> None:
        if self.non_fatal_syscalls:
            return
        self._fail(ev, message)

    def _shell(self, ev: Event, command: str) -> None:
        if command.startswith("sysctl"):
            apply_sysctl(self.settings, command)
            self.stack.apply(self.settings)
            return
        m = _SOCKSTAT_RE.match(command)
        if m is not None:
            state = _FREEBSD_STATES.get(m.group(2))
            if state is None:
                raise Unsupported(f"sockstat state {m.group(2)}")
            port = re.search(r"-p\s+(\d+)", command)
            count = self.stack.count_state(state, int(port.group(1)) if port else None, ipv6=m.group(1) == "6")
            if count != int(m.group(3)):
                self._fail(ev, f"{count} connection(s) in {state}, expected {m.group(3)}")
            return
        m = _TCPDROP_RE.match(command)
        if m is not None:
            self.stack.drop_state(_FREEBSD_STATES.get(m.group(1), m.group(1)))
            return
        raise Unsupported(f"shell command `{command.split()[0]}`")

    def _code(self, ev: Event, code: str) -> None:
        m = _ASSERT_RE.match(code)
        if m is None:
            raise Unsupported("%{ }% code")
        fd = self.table.current
        if fd is None or fd not in self.table.socks:
            self._fail(ev, "no socket for TCP_INFO")
        assert fd is not None
        info = self.table.socks[fd].tcp_info()
        expr = m.group(2).strip()
        if m.group(1) == "tcpi_state":
            name = expr.removeprefix("TCPI_")
            want_state = _FREEBSD_STATES.get(name)
            if want_state is None:
                raise Unsupported(f"TCP_INFO state {expr}")
            if info["state"] != want_state:
                self._fail(ev, f"tcpi_state: expected {want_state}, actual {info['state']}")
            return
        value = 0
        for word in re.findall(r"[A-Z_0-9]+", expr):
            if word.isdigit():
                value |= int(word)
            elif word in _TCPI:
                value |= _TCPI[word]
            else:
                raise Unsupported(f"TCP_INFO constant {word}")
        got = ((1 if info["ts"] else 0) | (2 if info["sack"] else 0) | (4 if info["ws"] else 0)
               | (8 if info.get("ecn") else 0))
        if got != value:
            self._fail(ev, f"tcpi_options: expected {value}, actual {got}")

    def _fail(self, ev: Event, reason: str, report: str = "") -> None:
        header = f"  line {ev.line}: {ev.text}"
        raise Failure(f"line {ev.line}: {reason}", header + ("\n" + report if report else ""))


# ------------------------------------------------------------------ files


def run_file(path: str | Path, *, strict: bool = False, defines: frozenset[str] = DEFAULT_DEFINES) -> Result:
    started = time.perf_counter()
    try:
        script = parse_file(path, defines)
    except ScriptError as exc:
        return Result(str(path), "skipped", f"not supported: the script does not parse ({exc})",
                      seconds=time.perf_counter() - started)
    except OSError as exc:
        return Result(str(path), "failed", f"cannot read: {exc.strerror}")
    return Runner(script, strict=strict).run()


def find_scripts(paths: Iterable[str | Path]) -> list[Path]:
    """The .pkt files named, and those under the folders named, sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*.pkt") if q.is_file()))
        else:
            found.append(p)
    return found
