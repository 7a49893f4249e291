"""Host-wide limits, end to end: TCP buffer memory, the pcap size, IPC refusals as events.

* ``--tcp-memory 4``: four kernel connections from the peer namespace each push 3 MB
  into echo (7) without reading, so each could hold ~2 MiB in the stack (1 MiB unread,
  1 MiB unacknowledged echo): 8 MiB against a 4 MiB bound. The stack must go under
  pressure (a ``memory`` event), drop data for the full connections (``drop`` events
  ``tcp_memory``), still serve a fresh connection (one holding < MIN_PER_CONN is never
  refused), lose nothing (every connection gets exactly its 3 MB back once it reads),
  leave pressure afterwards, and never hold more than limit + MIN_PER_CONN per
  connection + one 64 KiB segment (stack/tcp/memory.py).
* ``--pcap-limit 1``: 5 MB through discard; the capture stops at 1 MiB, stays a valid
  pcap with whole records, and one ``pcap_full`` event says so; the daemon keeps serving.
* IPC: an oversized record and a garbage record on the daemon's Unix socket each drop
  the client and log an ``ipc`` event naming why; the daemon still serves a LIST.

Figures (peak memory, drops, times, pcap size) are printed at the end of the run and
written to ``<pytest basetemp>/tcplab-limits.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest
from netns import (
    STACK_ADDR,
    Figures,
    StackDaemon,
    Topology,
    event_is,
    figures_fixture,
    popen_in,
    python_env,
    run_peer_client,
    wait_until,
)

from stack.ipc import protocol as p
from stack.tcp.memory import MIN_PER_CONN

pytestmark = pytest.mark.root

ECHO, DISCARD = 7, 9
MB = 1_000_000
MIB = 1 << 20
TCP_MEMORY_MIB = 4
CONNECTIONS = 4
PER_CONNECTION = 3 * MB
SEGMENT_OVERSHOOT = 65536
TOTAL_TIMEOUT = 120.0
PROBES = 20
PCAP_LIMIT_MIB = 1
PCAP_TRANSFER = 5 * MB


figures = figures_fixture("tcplab-limits.json", "tcplab limits")

# --- helpers --------------------------------------------------------------------------
def events_of(stack: StackDaemon, type_: str, **match: Any) -> list[dict[str, Any]]:
    return stack.events_matching(event_is(type_, **match))


def await_events(stack: StackDaemon, type_: str, timeout: float,
                 **match: Any) -> list[dict[str, Any]]:
    """Poll the event log until an event of ``type_`` with the ``match`` fields is in it."""
    return stack.wait_events(event_is(type_, **match), timeout)


def drops_logged(events: list[dict[str, Any]], reason: str) -> int:
    """Drops of ``reason`` the log accounts for (events, plus the ones they say were
    suppressed before them): a lower bound on the daemon's exact counter."""
    return sum(1 + int(e.get("suppressed", 0)) for e in events
               if e.get("type") == "drop" and e.get("reason") == reason)


# --- a: memory pressure ---------------------------------------------------------------
# Runs in the peer namespace (kernel TCP). argv: HOST PORT CONNECTIONS NBYTES. It opens
# the connections and starts one writer thread per connection at once; nothing is read
# until the test says so on stdin. Commands (one per line):
#   probe  -- a fresh connection echoes 100 bytes; prints {"probe": ...}
#   read   -- start reading every connection to EOF; prints {"results": [...]}, exits
# Every line printed is one JSON object; the first is {"connected": [local ports]}.
PRESSURE_CLIENT = textwrap.dedent('''
    import hashlib, json, os, socket, sys, threading, time

    host, port, nconn, nbytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    IDLE = 90.0

    def out(**kw):
        sys.stdout.write(json.dumps(kw) + "\\n")
        sys.stdout.flush()

    conns = []
    for _ in range(nconn):
        s = socket.create_connection((host, port), timeout=15)
        s.settimeout(IDLE)
        conns.append(s)
    payloads = [os.urandom(nbytes) for _ in range(nconn)]
    state = [{"sent": 0, "received": 0, "error": None,
              "sent_sha256": hashlib.sha256(payloads[i]).hexdigest()} for i in range(nconn)]
    go_read = threading.Event()

    def writer(i):
        s, view = conns[i], memoryview(payloads[i])
        try:
            while state[i]["sent"] < nbytes:
                state[i]["sent"] += s.send(view[state[i]["sent"]:state[i]["sent"] + 65536])
            s.shutdown(socket.SHUT_WR)
        except OSError as exc:
            state[i]["error"] = "write: " + repr(exc)

    def reader(i):
        go_read.wait()
        s, h = conns[i], hashlib.sha256()
        try:
            while True:
                data = s.recv(262144)
                if not data:
                    break
                h.update(data)
                state[i]["received"] += len(data)
        except OSError as exc:
            state[i]["error"] = state[i]["error"] or "read: " + repr(exc)
        state[i]["recv_sha256"] = h.hexdigest()

    threads = [threading.Thread(target=f, args=(i,), daemon=True)
               for i in range(nconn) for f in (writer, reader)]
    for t in threads:
        t.start()
    out(connected=[s.getsockname()[1] for s in conns])

    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "probe":
            start = time.monotonic()
            msg = os.urandom(100)
            got = b""
            error = None
            try:
                with socket.create_connection((host, port), timeout=15) as s:
                    s.settimeout(15)
                    lport = s.getsockname()[1]
                    s.sendall(msg)
                    while len(got) < len(msg):
                        data = s.recv(4096)
                        if not data:
                            break
                        got += data
            except OSError as exc:
                error = repr(exc)
                lport = None
            out(probe={"ok": got == msg, "bytes": len(got), "error": error, "port": lport,
                       "seconds": round(time.monotonic() - start, 3)})
        elif cmd == "read":
            start = time.monotonic()
            go_read.set()
            for t in threads:
                t.join(IDLE * 2)
            out(results=state, seconds=round(time.monotonic() - start, 3),
                alive=sum(t.is_alive() for t in threads))
            break
''')


def lived_under_pressure(stack: StackDaemon, conn: str, timeout: float) -> bool:
    """Whether ``conn`` went from SYN-RECEIVED to CLOSE-WAIT with the host under memory
    pressure all along (no ``memory`` event in between, a "pressure" one before)."""
    def span() -> tuple[int, int, list[dict[str, Any]]] | None:
        events = stack.events()
        marks = {e.get("to"): i for i, e in enumerate(events)
                 if e.get("type") == "state" and e.get("conn") == conn}
        if "SYN-RECEIVED" in marks and "CLOSE-WAIT" in marks:
            return marks["SYN-RECEIVED"], marks["CLOSE-WAIT"], events
        return None

    opened, closing, events = wait_until(span, timeout, interval=0.1,
                                         what=f"{conn} in the event log")
    before = [e for e in events[:opened] if e.get("type") == "memory"]
    during = [e for e in events[opened:closing] if e.get("type") == "memory"]
    return bool(before) and before[-1]["state"] == "pressure" and not during


class PeerProgram:
    """A Python program in the peer namespace driven over stdin/stdout (JSON lines)."""

    def __init__(self, topology: Topology, source: str, *args: object) -> None:
        self.proc = popen_in(topology.peer_ns, [sys.executable, "-c", source, *map(str, args)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=python_env())
        self.lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._pump, args=(self.proc.stdout,),
                                        daemon=True)
        self._reader.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self.lines.put(raw.decode(errors="replace"))
        self.lines.put(None)

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=max(timeout, 0.1))
        except queue.Empty:
            raise AssertionError(f"the peer program said nothing for {timeout:.0f} s") from None
        if line is None:
            self.proc.wait(5)
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise AssertionError(f"the peer program exited ({self.proc.returncode}):\n{err}")
        value: dict[str, Any] = json.loads(line)
        return value

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@pytest.mark.stack_args("--tcp-memory", str(TCP_MEMORY_MIB))
def test_memory_pressure_bounds_buffers_and_loses_nothing(
        topology: Topology, stack: StackDaemon, figures: Figures) -> None:
    deadline = time.monotonic() + TOTAL_TIMEOUT

    def left() -> float:
        return max(deadline - time.monotonic(), 0.5)

    limit = TCP_MEMORY_MIB * MIB
    peer = PeerProgram(topology, PRESSURE_CLIENT, STACK_ADDR, ECHO, CONNECTIONS, PER_CONNECTION)
    try:
        first = peer.result(left())
        assert len(first["connected"]) == CONNECTIONS, first
        fill_start = time.monotonic()
        # Nobody reads: the buffers fill until the host is under pressure and drops.
        pressure = await_events(stack, "memory", min(left(), 60), state="pressure")[0]
        await_events(stack, "drop", min(left(), 30), reason="tcp_memory")
        fill_seconds = time.monotonic() - fill_start
        assert pressure["limit"] == limit, pressure
        assert pressure["used"] >= limit, pressure

        # Under pressure (nobody has read yet) a fresh connection holds nothing, so it
        # is not refused. The host hovers at the limit (a retransmission accepted, an
        # echo leaving), so probe until one connection lived, from its SYN to the
        # client's FIN (sent after it read the echo), entirely under pressure.
        probes: list[dict[str, Any]] = []
        while not any(x["under_pressure"] for x in probes):
            assert len(probes) < PROBES, probes
            peer.command("probe")
            probe = peer.result(min(left(), 40))["probe"]
            assert probe["ok"], probe
            probe["under_pressure"] = lived_under_pressure(
                stack, f"{STACK_ADDR}:{ECHO}-{topology.peer_addr}:{probe['port']}",
                min(left(), 10))
            probes.append(probe)

        peer.command("read")
        done = peer.result(left())
        results = done["results"]
        assert done["alive"] == 0, done
        for i, r in enumerate(results):
            assert r["error"] is None, (i, r)
            assert r["sent"] == PER_CONNECTION, (i, r)
            assert r["received"] == PER_CONNECTION, (i, r)
            assert r["recv_sha256"] == r["sent_sha256"], (i, r)

        # Every connection is gone (or going): the host leaves pressure.
        def normal_last() -> dict[str, Any] | None:
            mem = events_of(stack, "memory")
            return mem[-1] if mem and mem[-1]["state"] == "normal" else None

        normal = wait_until(normal_last, min(left(), 30), interval=0.1,
                            what="a memory event with state 'normal' after the transfers")
    finally:
        peer.close()

    events = stack.events()
    memory = [e for e in events if e.get("type") == "memory"]
    connections = CONNECTIONS + len(probes)
    bound = limit + connections * MIN_PER_CONN + SEGMENT_OVERSHOOT
    peak = max(e["peak"] for e in memory)
    assert normal["peak"] == peak, memory
    drops = drops_logged(events, "tcp_memory")
    figures.add("tcp_memory", {
        "limit": limit, "peak": peak, "bound": bound, "peak_over_limit": peak - limit,
        "episodes": sum(e["state"] == "pressure" for e in memory),
        "tcp_memory_drops_logged": drops, "fill_seconds": round(fill_seconds, 2),
        "probes": len(probes), "probe_seconds": probes[-1]["seconds"],
        "read_seconds": done["seconds"],
        "connections": CONNECTIONS, "bytes_each": PER_CONNECTION,
    })
    assert drops >= 1
    assert peak <= bound, (peak, bound, memory)


# --- b: the pcap limit ----------------------------------------------------------------
_PCAP_GLOBAL = struct.Struct("=IHHiIII")
_PCAP_RECORD = struct.Struct("=IIII")


def pcap_records(path: Path) -> list[bytes]:
    """Every record of a classic pcap file; fails on a torn or truncated record."""
    raw = path.read_bytes()
    magic = struct.unpack_from("=I", raw)[0]
    assert magic == 0xA1B2C3D4, hex(magic)
    off = _PCAP_GLOBAL.size
    out: list[bytes] = []
    while off < len(raw):
        assert off + _PCAP_RECORD.size <= len(raw), f"torn record header at {off}"
        _sec, _usec, caplen, length = _PCAP_RECORD.unpack_from(raw, off)
        off += _PCAP_RECORD.size
        assert caplen == length, (off, caplen, length)
        assert off + caplen <= len(raw), f"truncated record at {off}"
        out.append(raw[off:off + caplen])
        off += caplen
    return out


def ip_header_ok(packet: bytes) -> bool:
    """A whole IPv4 packet with a valid header checksum, or a whole IPv6 packet (the
    kernel's own neighbour discovery on the TUN is recorded too)."""
    if len(packet) >= 40 and packet[0] >> 4 == 6:
        return struct.unpack_from("!H", packet, 4)[0] == len(packet) - 40
    ihl = (packet[0] & 0x0F) * 4
    if packet[0] >> 4 != 4 or ihl < 20 or len(packet) < ihl:
        return False
    total = sum(struct.unpack(f"!{ihl // 2}H", packet[:ihl]))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF and struct.unpack_from("!H", packet, 2)[0] == len(packet)


@pytest.mark.stack_args("--pcap-limit", str(PCAP_LIMIT_MIB))
def test_pcap_limit(topology: Topology, stack: StackDaemon, figures: Figures) -> None:
    scapy_utils = pytest.importorskip("scapy.utils")
    scapy_inet = pytest.importorskip("scapy.layers.inet")
    limit = PCAP_LIMIT_MIB * MIB
    start = time.monotonic()
    result = run_peer_client(topology, "send", STACK_ADDR, DISCARD, PCAP_TRANSFER, timeout=120)
    seconds = time.monotonic() - start
    assert result["unexpected_bytes"] == 0, result
    service = await_events(stack, "service", 20, service="discard", bytes=PCAP_TRANSFER)
    assert service[0]["sha256"] == result["sha256"], service
    full = await_events(stack, "pcap_full", 20)
    # Still serving after the capture stopped.
    echo = run_peer_client(topology, "echo", STACK_ADDR, ECHO, 1000, timeout=60)
    assert echo["recv_bytes"] == 1000 and echo["recv_sha256"] == echo["sent_sha256"], echo
    stack.stop()  # flushes and closes the pcap and the event log

    size = stack.pcap_path.stat().st_size
    records = pcap_records(stack.pcap_path)
    packets = scapy_utils.rdpcap(str(stack.pcap_path))
    full = events_of(stack, "pcap_full")
    figures.add("pcap_limit", {"limit": limit, "file_bytes": size, "records": len(records),
                               "transfer_bytes": PCAP_TRANSFER,
                               "transfer_seconds": round(seconds, 2), "pcap_full": full})
    assert size <= limit, size
    assert size > limit - 70_000, size  # it did fill up (a record is at most ~64 KiB)
    assert len(full) == 1, full
    assert full[0]["limit"] == limit, full
    assert len(packets) == len(records) > 0
    for i, (pkt, rec) in enumerate(zip(packets, records, strict=True)):
        assert bytes(pkt) == rec, i
        assert ip_header_ok(rec), (i, rec[:40].hex())
    # Stopped means stopped: nothing was recorded after the record that did not fit
    # (a capture with later packets but a hole in the middle would mislead).
    assert len(records) == full[0]["packets"], (len(records), full)
    discard_packets = [pkt for pkt in packets
                       if pkt.haslayer(scapy_inet.TCP) and pkt[scapy_inet.TCP].dport == DISCARD]
    assert discard_packets, "no packet of the transfer was recorded"


# --- c: IPC refusals are events -------------------------------------------------------
def ipc_connect(stack: StackDaemon) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    s.connect(str(stack.socket_path))
    s.settimeout(5)
    return s


def dropped_by_daemon(s: socket.socket, timeout: float = 5.0) -> bool:
    s.settimeout(timeout)
    try:
        while s.recv(p.MAX_MESSAGE + 1):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def ipc_list(stack: StackDaemon) -> p.Reply:
    with ipc_connect(stack) as s:
        s.sendmsg([p.encode_request(p.Request(p.Op.LIST, 7))])
        data = s.recv(p.MAX_MESSAGE + 1)
    return p.decode_reply(data, 0)


@pytest.mark.parametrize("what, record", [
    ("client_dropped_oversized",
     p.HEADER.pack(p.MAGIC, p.VERSION, p.Op.SENDTO, 0, 1, 0, 70000) + bytes(70000)),
    ("client_dropped_bad_magic",
     p.HEADER.pack(0xDEADBEEF, p.VERSION, p.Op.LIST, 0, 1, 0, 0)),
], ids=["oversized", "garbage"])
def test_ipc_refusals_are_events(stack: StackDaemon, figures: Figures, what: str,
                                 record: bytes) -> None:
    assert ipc_list(stack).status == 0
    assert not events_of(stack, "ipc")
    with ipc_connect(stack) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.sendmsg([record])
        assert dropped_by_daemon(s), f"the daemon kept a client that sent {what}"
        me = os.getpid()
    event = await_events(stack, "ipc", 10, what=what)[0]
    assert event["pid"] == me and event["uid"] == os.getuid(), event
    rep = ipc_list(stack)
    assert rep.status == 0, rep
    assert stack.running
    others = [e for e in events_of(stack, "ipc") if e["what"] != what]
    assert not others, others
    figures.add(f"ipc_{what}", event)

