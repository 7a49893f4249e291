"""`tcplab stack`: the daemon that wires the TUN, the host, services and the IPC.

One asyncio event loop (epoll underneath) watches the TUN fd and the IPC sockets;
a single loop timer is kept at the host's earliest connection deadline.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from stack.components import ComponentError, configure_from_env
from stack.host import Host
from stack.io.impair import Impairment, ImpairSpec
from stack.io.tun import TunDevice, TunError
from stack.observe.events import EventLog
from stack.observe.pcap import DEFAULT_MAX_BYTES as DEFAULT_PCAP_LIMIT
from stack.observe.pcap import PcapWriter
from stack.services import Services
from stack.sockets import SocketLayer
from stack.tcp.config import TcpConfig
from stack.tcp.memory import DEFAULT_LIMIT as DEFAULT_TCP_MEMORY

log = logging.getLogger("tcplab")

READ_BATCH = 64
# Timers fire on a 2 ms grid, never early: the connection timers (40 ms delayed ACK,
# RTO >= 200 ms) tolerate that, and one wake-up then serves every deadline in the
# slot, where a ping-pong exchange would otherwise re-arm the loop's timer per packet.
TIMER_SLACK = 0.002
# Reading a batch ends with a read that fails with EAGAIN: one system call in four of
# a request/response round trip (epoll_wait, read, read, writev). After a batch of
# one packet, when the loop then slept before the TUN was readable again (a
# ping-pong, not a stream), one read is enough: level-triggered epoll brings us
# straight back if more was queued, and the next batch drains it in full.
SLEPT = 20e-6


class BatchClock:
    """The host's clock: `source()` (the loop's time), except while a read batch is
    handled, when it stays at the time the batch was read.

    Everything a batch causes then carries one `now`: the segments the ACKs release
    and those the inline services' `send` calls release in between. With a fresh
    clock for the services' calls, a batch that took longer than a millisecond sent
    a later TSval (from the service's send) and then an earlier one (from the next
    ACK of the batch), and the peer's PAWS check (RFC 7323 section 5) dropped that
    whole segment: a spurious loss and a halved window (docs/performance.md).
    """

    __slots__ = ("source", "frozen")

    def __init__(self, source: Callable[[], float]) -> None:
        self.source = source
        self.frozen: float | None = None

    def __call__(self) -> float:
        frozen = self.frozen
        return self.source() if frozen is None else frozen

    def freeze(self) -> float:
        """Start a batch: read the source once and keep returning that."""
        self.frozen = now = self.source()
        return now

    def thaw(self) -> None:
        self.frozen = None


@dataclass
class DaemonOptions:
    tun: str = "mytun"
    address: str = "10.0.0.2"
    kernel_address: str | None = "10.0.0.1/24"
    # Dual-stack by default; None turns IPv6 off (the kernel side gets no address).
    address6: str | None = "fd00:0:0:1::2"
    kernel_address6: str | None = "fd00:0:0:1::1/64"
    mtu: int = 1500
    cc: str = "newreno"
    socket_path: str = "/run/tcplab/stack.sock"
    socket_group: str | None = None
    services: list[tuple[str, int]] = field(default_factory=list)
    pcap: str | None = None
    pcap_limit: int = DEFAULT_PCAP_LIMIT  # bytes; past it packets are no longer recorded
    tcp_memory: int = DEFAULT_TCP_MEMORY
    events: str | None = None
    offload: bool = True
    min_rto: float = 0.2
    time_wait: float = 60.0
    impair: ImpairSpec | None = None
    # Teaching aids, off by default: RFC 793 RST / SYN processing instead of RFC 5961's
    # challenge ACKs (TcpConfig.rfc5961_rst / rfc5961_syn; lab 10's blind RST attack).
    insecure_rst: bool = False
    insecure_syn: bool = False
    ecn: int = 2  # net.ipv4.tcp_ecn (stack/tcp/ecn.py)
    fastopen: int = 1  # net.ipv4.tcp_fastopen (stack/tcp/fastopen.py)
    tcp_udp_port: int = 0  # TCP over UDP's tunneling port, 0 off (stack/tcp_over_udp.py)
    # The connections' defaults, with any swapped-in components (stack/components.py).
    tcp_defaults: TcpConfig | None = None


class Daemon:
    def __init__(self, options: DaemonOptions) -> None:
        self.options = options
        self.loop = asyncio.get_event_loop()
        # time.monotonic is what the default loop's time() returns, one call less.
        same = type(self.loop).time is asyncio.BaseEventLoop.time
        self.clock = BatchClock(time.monotonic if same else self.loop.time)
        self.tun: TunDevice | None = None
        self.host: Host | None = None
        self.layer: SocketLayer | None = None
        self.services: Services | None = None
        self.ipc: object | None = None
        self.events: EventLog | None = None
        self.pcap: PcapWriter | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopping = asyncio.Event()
        self._last_batch = 0  # packets in the previous read batch
        self._last_batch_end = 0.0
        self.impair_in: Impairment | None = None
        self.impair_out: Impairment | None = None

    def open_tun(self) -> None:
        opts = self.options
        if opts.impair is not None and opts.offload:
            # A lost 64 KiB TSO segment would be 45 lost packets: impair real-size ones.
            log.info("--impair: using plain packets (offloads off)")
            opts.offload = False
        self.tun = TunDevice.open(
            opts.tun, offload=opts.offload, kernel_address=opts.kernel_address,
            kernel_address6=opts.kernel_address6 if opts.address6 is not None else None,
            mtu=opts.mtu,
        )
        if self.tun.ipv6_error is not None:
            log.warning("%s; IPv6 on the kernel side is off", self.tun.ipv6_error)

    async def run(self) -> int:
        opts = self.options
        assert self.tun is not None, "open_tun() first: pyroute2 cannot run inside the loop"
        if opts.offload and not self.tun.vnet_hdr:
            log.warning("offloads unavailable (%s); using plain packets", self.tun.offload_error)
        self.events = EventLog(opts.events)
        self.pcap = (
            PcapWriter(opts.pcap, max_bytes=opts.pcap_limit, on_full=self._pcap_full)
            if opts.pcap else None
        )  # fmt: skip
        transmit: Callable[[list[bytes | memoryview]], None] = self.tun.write
        if opts.impair is not None:
            self.impair_in = Impairment(opts.impair, self.loop.call_later, self.loop.time)
            self.impair_out = Impairment(opts.impair, self.loop.call_later, self.loop.time,
                                         direction=1)
            transmit = self._impaired_transmit
            log.info("impairing the link both ways: %s", opts.impair)
        host = Host(
            opts.address, transmit, mtu=opts.mtu, offload=self.tun.vnet_hdr,
            cc=opts.cc, events=self.events, pcap=self.pcap, clock=self.clock,
            tcp_memory=opts.tcp_memory, tcp_defaults=opts.tcp_defaults,
            address6=opts.address6 if self.tun.ipv6_error is None else None,
        )  # fmt: skip
        host.tcp_defaults.min_rto = opts.min_rto
        host.tcp_defaults.msl = opts.time_wait / 2
        host.tcp_defaults.rfc5961_rst = not opts.insecure_rst
        host.tcp_defaults.rfc5961_syn = not opts.insecure_syn
        if opts.insecure_rst or opts.insecure_syn:
            log.warning("RFC 5961 mitigations off (%s): a blind attacker who guesses a "
                        "sequence number in the window can reset connections",
                        ", ".join(n for n, on in (("--insecure-rst", opts.insecure_rst),
                                                  ("--insecure-syn", opts.insecure_syn)) if on))
        host.tcp_defaults.ecn = opts.ecn
        host.fastopen_mode = opts.fastopen
        if opts.tcp_udp_port:
            host.set_tcp_udp_port(opts.tcp_udp_port)  # EINVAL / EADDRINUSE stop the start
            log.info("TCP over UDP on UDP port %d", opts.tcp_udp_port)
        host.on_deadline_change = self._schedule
        host.defer_acks = opts.impair is None  # one ACK per connection per batch read
        self.host = host
        self.layer = SocketLayer(host)
        self.loop.add_reader(self.tun.fd, self.on_tun_readable)
        self.services = Services(self.layer, self.events)
        for name, port in opts.services:
            await self.services.start(name, port)
        try:
            from stack.ipc.server import IpcServer
        except ImportError:  # pragma: no cover - while the IPC is being written
            log.warning("no IPC server available")
        else:
            try:  # IP_PKTINFO's interface: the stack's, the TUN device
                ifindex = socket.if_nametoindex(self.tun.name)
            except OSError:
                ifindex = 0
            ipc = IpcServer(self.layer, opts.socket_path, group=opts.socket_group,
                            events=self.events, ifindex=ifindex)
            await ipc.start()
            self.ipc = ipc
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(sig, self._stopping.set)
        mode = "offloads on (vnet header, TSO)" if self.tun.vnet_hdr else "plain packets"
        services = " ".join(f"{n}:{p}" for n, p in opts.services) or "none"
        addresses = opts.address if host.address6 is None else f"{opts.address} {host.address6}"
        log.info(
            "ready: %s on %s (%s, mtu %d, cc %s), services %s, socket %s",
            addresses, self.tun.name, mode, opts.mtu, opts.cc, services, opts.socket_path,
        )  # fmt: skip
        self._flush_periodically()
        await self._stopping.wait()
        log.info("stopping: resetting %d connection(s)", len(host.conns))
        if self.impair_in is not None and self.impair_out is not None:
            log.info("impairment inbound %s outbound %s", self.impair_in.counts, self.impair_out.counts)
        return 0

    def _pcap_full(self, pcap: PcapWriter) -> None:
        log.warning("%s reached its limit of %d bytes: packets are no longer recorded",
                    pcap.path, pcap.max_bytes)
        if self.events is not None:
            self.events.emit("pcap_full", None, path=pcap.path, limit=pcap.max_bytes,
                             packets=pcap.packets)

    def _flush_periodically(self) -> None:
        """Put buffered pcap records and events on disk twice a second."""
        if self.pcap is not None:
            self.pcap.flush()
        if self.events is not None:
            self.events.flush()
        self.loop.call_later(0.5, self._flush_periodically)

    def on_tun_readable(self) -> None:
        """Handle one read batch from the TUN, all of it at one `now` (BatchClock)."""
        assert self.tun is not None and self.host is not None
        now = self.clock.freeze()
        single = self._last_batch == 1 and now - self._last_batch_end > SLEPT
        try:
            packets = self.tun.read_batch(1 if single else READ_BATCH)
        except TunError as exc:
            self.clock.thaw()
            log.error("%s", exc)
            self._stopping.set()
            return
        self._last_batch = len(packets)
        if self.impair_in is not None:
            self.clock.thaw()
            for packet in packets:
                self.impair_in(packet, self._receive_one)
            self._run_due_timers()
            return
        host = self.host
        receive = host.receive_packet
        try:
            for packet in packets:
                try:
                    receive(packet, now)
                except Exception:  # never let one packet take the daemon down
                    host.stats["drop_internal_error"] += 1
                    log.exception("internal error while handling a packet (dropped)")
            host.end_batch(now)
        finally:
            self.clock.thaw()
        self._run_due_timers()
        self._last_batch_end = self.clock()

    def _receive_one(self, packet: bytes) -> None:
        assert self.host is not None
        now = self.clock.freeze()
        try:
            self.host.receive_packet(packet, now)
        except Exception:
            self.host.stats["drop_internal_error"] += 1
            log.exception("internal error while handling a packet (dropped)")
        finally:
            self.clock.thaw()
        self._run_due_timers()

    def _impaired_transmit(self, parts: list[bytes | memoryview]) -> None:
        assert self.impair_out is not None and self.tun is not None
        tun = self.tun
        self.impair_out(b"".join(parts), lambda packet: tun.write([packet]))

    def _schedule(self, deadline: float) -> None:
        deadline = math.ceil(deadline / TIMER_SLACK) * TIMER_SLACK
        if self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._run_due_timers()

    def _run_due_timers(self) -> None:
        assert self.host is not None
        try:
            self.host.run_timers(self.clock())
        except Exception:
            self.host.stats["drop_internal_error"] += 1
            log.exception("internal error in a timer")
        deadline = self.host.next_deadline()
        if deadline is not None:
            self._schedule(deadline)

    def close(self) -> None:
        if self.services is not None:
            self.services.close()
        if self.host is not None:
            self.host.abort_all()
        if self.ipc is not None:
            close = getattr(self.ipc, "close", None)
            if close is not None:
                close()
        if self.tun is not None:
            self.loop.remove_reader(self.tun.fd)
            self.tun.close()
        if self.pcap is not None:
            if self.pcap.skipped:
                log.info("%s: %d packets recorded, %d past the limit not recorded",
                         self.pcap.path, self.pcap.packets, self.pcap.skipped)
            self.pcap.close()
        if self.events is not None:
            self.events.close()


def run_daemon(options: DaemonOptions) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="tcplab: %(message)s"
    )
    # The labs' swap-in slots: TCPLAB_SWAP=reassembler=PATH,... puts a learner's
    # component into the connections' config before anything is built from it.
    tcp_defaults = options.tcp_defaults or TcpConfig()
    try:
        configure_from_env(tcp_defaults, lambda line: log.info("%s", line))
    except ComponentError as exc:
        print(f"tcplab stack: error: {exc}", file=sys.stderr)
        return 2
    options = replace(options, tcp_defaults=tcp_defaults)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    daemon = Daemon(options)
    started = time.monotonic()
    try:
        daemon.open_tun()
        return loop.run_until_complete(daemon.run())
    except TunError as exc:
        print(f"tcplab: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"tcplab: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": "),
              file=sys.stderr)
        return 1
    finally:
        daemon.close()
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        log.debug("ran %.1f s", time.monotonic() - started)
