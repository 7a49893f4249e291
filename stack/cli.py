"""`tcplab`: the command line.

    tcplab stack ...        run the stack daemon on a TUN device
    tcplab ss ...           list the daemon's sockets
    tcplab run -- CMD ...   run a program with its sockets on the stack (LD_PRELOAD shim)
    tcplab lab ...          the containerized lab (docker compose)
    tcplab plot ...         pictures from an event log
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from typing import NoReturn

from stack.observe.pcap import DEFAULT_MAX_BYTES as DEFAULT_PCAP_LIMIT
from stack.tcp.congestion import ALGORITHMS
from stack.tcp.memory import DEFAULT_LIMIT as DEFAULT_TCP_MEMORY

DEFAULT_SOCKET = "/run/tcplab/stack.sock"


class _Parser(argparse.ArgumentParser):
    """Bad arguments give one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _address(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {text!r}") from None


def _kernel_address(text: str) -> str | None:
    if text == "none":
        return None
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 address/length: {text!r}") from None
    if "/" not in text:
        raise argparse.ArgumentTypeError(f"give the prefix length too, e.g. {text}/24")
    return str(iface)


def _ipv6_unicast(text: str) -> ipaddress.IPv6Address:
    """A global or unique-local unicast IPv6 address, as a stack or its link may own."""
    try:
        ip = ipaddress.IPv6Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv6 address: {text!r}") from None
    kind = ("multicast" if ip.is_multicast else "unspecified" if ip.is_unspecified
            else "loopback" if ip.is_loopback else "link-local" if ip.is_link_local
            else "v4-mapped" if ip.ipv4_mapped is not None else None)
    if kind is not None:
        raise argparse.ArgumentTypeError(f"{text!r} is a {kind} address, not one to own")
    return ip


def _canonical6(ip: ipaddress.IPv6Address) -> str:
    """The spelling the stack uses everywhere: what inet_ntop gives (docs/ipv6.md)."""
    return socket.inet_ntop(socket.AF_INET6, ip.packed)


def _address6(text: str) -> str | None:
    if text == "none":
        return None
    return _canonical6(_ipv6_unicast(text))


def _kernel_address6(text: str) -> str | None:
    if text == "none":
        return None
    address, slash, length = text.partition("/")
    if not slash:
        raise argparse.ArgumentTypeError(f"give the prefix length too, e.g. {text}/64")
    ip = _ipv6_unicast(address)
    if not length.isdigit() or not 1 <= int(length) <= 128:
        raise argparse.ArgumentTypeError(f"not an IPv6 prefix length: {length!r}")
    return f"{_canonical6(ip)}/{int(length)}"


def _mtu(text: str) -> int:
    if not text.isdigit() or not 576 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"MTU must be a number from 576 to 65535, not {text!r}")
    return int(text)


def _mebibytes(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of MiB, 1 or more, not {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _fastopen_mode(text: str) -> int:
    from stack.tcp.fastopen import check_mode

    try:
        return check_mode(int(text, 0))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc) if "range" in str(exc) else
                                         f"not a number: {text!r}") from None


# TcpConfig fields `tcplab stack --tcp-default NAME=VALUE` may set (the sysctl-like
# host defaults; the others have flags of their own: --min-rto, --time-wait, --ecn...).
TCP_DEFAULTS = ("recv_buffer", "send_buffer", "sack", "window_scaling", "timestamps",
                "delayed_ack", "initial_rto", "keepalive_idle", "keepalive_interval",
                "keepalive_count", "connect_timeout", "drop_synfin")


def _tcp_default(text: str) -> tuple[str, int | float | bool]:
    from stack.tcp.config import TcpConfig

    name, eq, value = text.partition("=")
    if not eq or name not in TCP_DEFAULTS:
        raise argparse.ArgumentTypeError(
            f"give NAME=VALUE with NAME one of {', '.join(TCP_DEFAULTS)}, not {text!r}")
    kind = type(getattr(TcpConfig(), name))
    try:
        if kind is bool:
            if value not in ("0", "1"):
                raise ValueError(value)
            return name, value == "1"
        number = kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: not a valid {kind.__name__}: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{name}: must not be negative: {value!r}")
    return name, number


def _impair(text: str) -> object:
    from stack.io.impair import ImpairSpec

    try:
        return ImpairSpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tcplab", description="A TCP/IP stack in Python on a TUN device.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    st = sub.add_parser("stack", help="run the stack daemon (root or CAP_NET_ADMIN)")
    st.add_argument("--tun", default="mytun", metavar="NAME", help="TUN device (default mytun)")
    st.add_argument("--address", default="10.0.0.2", type=_address, metavar="A",
                    help="the stack's IPv4 address (default 10.0.0.2)")
    st.add_argument("--kernel-address", default="10.0.0.1/24", type=_kernel_address,
                    metavar="A/LEN|none", help="kernel side of the TUN (default 10.0.0.1/24)")
    st.add_argument("--address6", default="fd00:0:0:1::2", type=_address6, metavar="A|none",
                    help="the stack's IPv6 address (default fd00:0:0:1::2; 'none': IPv4 only)")
    st.add_argument("--kernel-address6", default="fd00:0:0:1::1/64", type=_kernel_address6,
                    metavar="A/LEN|none",
                    help="kernel side of the TUN, IPv6 (default fd00:0:0:1::1/64)")
    st.add_argument("--mtu", default=1500, type=_mtu, metavar="N")
    st.add_argument("--cc", default="newreno", choices=list(ALGORITHMS),
                    help="congestion control (default newreno)")
    st.add_argument("--socket", default=os.environ.get("TCPLAB_SOCKET", DEFAULT_SOCKET),
                    metavar="PATH", help=f"control/shim socket (default {DEFAULT_SOCKET})")
    st.add_argument("--socket-group", default=None, metavar="GROUP",
                    help="only this group may use the stack (socket file mode 0660; "
                         "default 0666: any user, privileged ports need root)")
    st.add_argument("--service", action="append", metavar="NAME[:PORT]",
                    help="built-in service; default echo:7 discard:9 chargen:19 http:80; 'none' for none")
    st.add_argument("--pcap", metavar="FILE", help="write every packet to FILE (pcap)")
    st.add_argument("--pcap-limit", default=DEFAULT_PCAP_LIMIT >> 20, type=_mebibytes, metavar="MIB",
                    help="stop recording once the pcap file holds this much "
                         f"(default {DEFAULT_PCAP_LIMIT >> 20})")
    st.add_argument("--tcp-memory", default=DEFAULT_TCP_MEMORY >> 20, type=_mebibytes, metavar="MIB",
                    help="host-wide bound on TCP buffer memory; past it, memory pressure "
                         f"(default {DEFAULT_TCP_MEMORY >> 20})")
    st.add_argument("--events", metavar="FILE", help="write JSON-lines events to FILE")
    st.add_argument("--offload", dest="offload", action="store_true", default=True,
                    help="TUN offloads: vnet header, checksum and TSO (default)")
    st.add_argument("--no-offload", dest="offload", action="store_false",
                    help="plain 1500-byte packets, checksums computed here")
    st.add_argument("--min-rto", default=0.2, type=_positive_float, metavar="SECONDS",
                    help="minimum retransmission timeout (default 0.2; RFC 6298 says 1)")
    st.add_argument("--impair", default=None, type=_impair, metavar="SPEC",
                    help="fault injection on the link, both ways, like netem: "
                         "loss=5%%,delay=20ms,jitter=5ms,reorder=10%%,duplicate=2%%,corrupt=1%%,seed=N")
    st.add_argument("--time-wait", default=60.0, type=_positive_float, metavar="SECONDS",
                    help="TIME-WAIT duration, 2*MSL (default 60)")
    st.add_argument("--insecure-rst", action="store_true",
                    help="teaching aid (lab 10): RFC 793 RST handling, any RST in the window "
                         "resets, instead of RFC 5961 3.2's challenge ACK. Never in production")
    st.add_argument("--insecure-syn", action="store_true",
                    help="teaching aid: RFC 793 SYN handling, a SYN in the window resets, "
                         "instead of RFC 5961 4.2's challenge ACK. Never in production")
    st.add_argument("--ecn", default=2, type=int, choices=[0, 1, 2], metavar="0|1|2",
                    help="ECN (RFC 3168) like net.ipv4.tcp_ecn: 0 off, 1 request and accept, "
                         "2 accept when asked (default)")
    st.add_argument("--fastopen", default=1, type=_fastopen_mode, metavar="BITS",
                    help="TCP Fast Open (RFC 7413) like net.ipv4.tcp_fastopen: 0x1 client, "
                         "0x2 server (listeners with TCP_FASTOPEN), 0x4 client without "
                         "cookie, 0x200 server without cookie, 0x400 every listener "
                         "(default 1)")
    st.add_argument("--tcp-udp-port", default=0, type=int, metavar="PORT",
                    help="TCP over UDP, FreeBSD's way (net.inet.tcp.udp_tunneling_port): TCP "
                         "segments in UDP datagrams to this port are taken, and such "
                         "connections answered the same way (default 0: off; "
                         "stack/tcp_over_udp.py)")
    st.add_argument("--tcp-default", action="append", default=[], type=_tcp_default,
                    metavar="NAME=VALUE",
                    help="a TCP default for new connections, one of "
                         f"{', '.join(TCP_DEFAULTS)} (repeatable; `tcplab drill --daemon` "
                         "sets FreeBSD's defaults this way)")
    st.add_argument("--isn-near-wrap", action="store_true",
                    help="teaching aid (lab 03): ISNs just below 2**32, so sequence numbers "
                         "wrap within the first MiB; guessable, never outside a lab")

    ss = sub.add_parser("ss", help="list the daemon's sockets, like ss -tni")
    ss.add_argument("--socket", default=os.environ.get("TCPLAB_SOCKET", DEFAULT_SOCKET), metavar="PATH")
    ss.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sub.add_parser("run", help="run a program on the stack: tcplab run [--socket PATH] -- CMD",
                   add_help=False)
    sub.add_parser("lab", help="the containerized lab: up [--for NN], down, status, exec, shell, check",
                   add_help=False)
    sub.add_parser("plot", help="plots from an event log", add_help=False)
    sub.add_parser("bench", help="benchmark against the kernel", add_help=False)
    sub.add_parser("drill", help="run packetdrill scripts (.pkt) against the stack", add_help=False)
    return parser


def _services(specs: list[str] | None) -> list[tuple[str, int]]:
    from stack.services import DEFAULT_SERVICES, parse_service

    if not specs:
        return list(DEFAULT_SERVICES.items())
    if specs == ["none"]:
        return []
    out = []
    for spec in specs:
        name, port = parse_service(spec)
        out.append((name, port))
    ports = [p for _, p in out]
    if len(set(ports)) != len(ports):
        raise ValueError("two services on one port")
    return out


def cmd_stack(args: argparse.Namespace) -> int:
    from stack.daemon import DaemonOptions, run_daemon

    try:
        services = _services(args.service)
    except ValueError as exc:
        print(f"tcplab stack: error: {exc}", file=sys.stderr)
        return 2
    if args.kernel_address is not None:
        net = ipaddress.IPv4Interface(args.kernel_address)
        if ipaddress.IPv4Address(args.address) == net.ip:
            print("tcplab stack: error: --address equals the kernel's address", file=sys.stderr)
            return 2
    if args.address6 is not None and args.kernel_address6 is not None:
        net6 = ipaddress.IPv6Interface(args.kernel_address6)
        if ipaddress.IPv6Address(args.address6) == net6.ip:
            print("tcplab stack: error: --address6 equals the kernel's address", file=sys.stderr)
            return 2
    if os.geteuid() != 0 and not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        print("tcplab stack: error: needs root or CAP_NET_ADMIN (cannot use /dev/net/tun)",
              file=sys.stderr)
        return 1
    if args.isn_near_wrap:
        from stack.tcp import isn

        isn.set_near_wrap(True)
    tcp_defaults = None
    if args.tcp_default:
        from stack.tcp.config import TcpConfig

        tcp_defaults = TcpConfig()
        for name, value in args.tcp_default:
            setattr(tcp_defaults, name, value)
    options = DaemonOptions(
        tun=args.tun, address=args.address, kernel_address=args.kernel_address, mtu=args.mtu,
        address6=args.address6, kernel_address6=args.kernel_address6,
        cc=args.cc, socket_path=args.socket, socket_group=args.socket_group, services=services,
        pcap=args.pcap, events=args.events, offload=args.offload, min_rto=args.min_rto,
        time_wait=args.time_wait, impair=args.impair, pcap_limit=args.pcap_limit << 20,
        tcp_memory=args.tcp_memory << 20, ecn=args.ecn, fastopen=args.fastopen,
        insecure_rst=args.insecure_rst, insecure_syn=args.insecure_syn,
        tcp_udp_port=args.tcp_udp_port,
        tcp_defaults=tcp_defaults,
    )  # fmt: skip
    return run_daemon(options)


def format_sockets(rows: list[dict[str, object]]) -> str:
    """One line per socket: proto, state, local, remote, then TCP's numbers."""
    lines = [f"{'Proto':<6}{'State':<13}{'Local':<22}{'Remote':<22}Details"]
    for row in rows:
        details = ""
        if row.get("proto") == "tcp" and "cwnd" in row:
            srtt = row.get("srtt")
            srtt_text = f"{float(srtt) * 1000:.3f}ms" if isinstance(srtt, (int, float)) else "-"
            rto = row.get("rto")
            rto_text = f"{float(rto) * 1000:.0f}ms" if isinstance(rto, (int, float)) else "-"
            details = (
                f"cc={row.get('cc')} cwnd={row.get('cwnd')} ssthresh={row.get('ssthresh')} "
                f"srtt={srtt_text} rto={rto_text} inflight={row.get('inflight')} "
                f"retrans={row.get('retrans')} mss={row.get('mss')}"
            )
        elif row.get("proto") == "tcp" and "backlog" in row:
            details = (f"backlog={row.get('backlog')} accept_queue={row.get('accept_queue')} "
                       f"syn_queue={row.get('syn_queue')}")
        lines.append(
            f"{row.get('proto', '?')!s:<6}{row.get('state', '?')!s:<13}"
            f"{row.get('local', '?')!s:<22}{row.get('remote', '?')!s:<22}{details}".rstrip()
        )
    return "\n".join(lines)


def cmd_ss(args: argparse.Namespace) -> int:
    import json

    from stack.ipc.client import query_sockets

    try:
        rows = query_sockets(args.socket)
    except OSError as exc:
        print(f"tcplab ss: cannot reach the stack daemon at {args.socket}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(format_sockets(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # These take the rest of the command line themselves.
    if argv and argv[0] == "run":
        from stack.ipc.run import main as run_main

        return run_main(argv[1:])
    if argv and argv[0] == "lab":
        from stack.tools.lab import main as lab_main

        return lab_main(argv[1:])
    if argv and argv[0] == "plot":
        from stack.observe.plot import main as plot_main

        return plot_main(argv[1:])
    if argv and argv[0] == "bench" and any(a.split("=")[0] == "--loss" for a in argv[1:]):
        from stack.tools.benchloss import main as benchloss_main  # loss recovery against the kernel

        return benchloss_main(argv[1:])
    if argv and argv[0] == "bench":
        from stack.tools.bench import main as bench_main

        return bench_main(argv[1:])
    if argv and argv[0] == "drill":
        from stack.drill.cli import main as drill_main

        return drill_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "stack":
        return cmd_stack(args)
    if args.command == "ss":
        return cmd_ss(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
