"""`tcplab bench`: the stack against the Linux kernel, in one run, same client.

It builds its own pair of network namespaces joined by a veth (nothing in the root
namespace), then measures with stack/tools/benchpeer.py as the client in the `peer`
namespace:

* the ceiling: the kernel talking to the kernel over the veth (servers in the
  stack namespace on 10.1.0.1);
* the stack through `mytun` (10.0.0.2): upload to discard, download from chargen,
  1-byte request/response, connections per second, N idle connections held
  (with the daemon's memory per connection), 1/10/100 parallel upload flows, and
  1/100 flows again from a sender that keeps its TSO frames full (FULL_TSO_SEGS) —
  with offloads on and off;
* the relay ceiling: stack/tools/tunrelay.py, a Python process that only copies
  packets between two TUN devices (mytun's place, and one in a third namespace
  where kernel servers own 10.0.0.2), with offloads on and off: the physical limit
  of a Python TUN process, measured in the same run with the same client;
* the same bulk figures over IPv6 (fd00:0:0:1::2, the kernel ceiling on
  fd00:0:0:2::1), with offloads on: IPv6 bulk should run at IPv4's speed;
* iperf3 under the shim (`tcplab run -- iperf3 -c`), both directions, when the shim
  and iperf3 are available.

With two or more CPUs the stack side (the daemon; the relay and the kernel servers
behind it; the kernel servers of the ceiling) runs on one CPU and the client on another (`taskset`, `--no-pin` to
let the scheduler choose), so that figures repeat from run to run.

It prints one table (figure, kernel, relay, stack, ratio/kernel, ratio/relay) and
writes JSON with --json.
`--smoke` makes every step tiny: CI runs that to check the benchmark works.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STACK_ADDR = "10.0.0.2"
KERNEL_ADDR = "10.1.0.1"
PEER_ADDR = "10.1.0.2"
STACK_ADDR6 = "fd00:0:0:1::2"
KERNEL_ADDR6 = "fd00:0:0:2::1"
PEER_ADDR6 = "fd00:0:0:2::2"
KPORT = 9009  # kernel discard; +1 chargen; +2 echo
# The "full-size TSO" sender: Linux sizes a TSO frame to about 1 ms of the flow's
# pacing rate (tcp_tso_autosize), so 100 flows sharing a link send frames a
# hundredth the size of one flow's: the packet rate, not the byte rate, grows with
# the number of flows. Raising tcp_min_tso_segs in the client's namespace (CUBIC,
# as BBR overrides that minimum) keeps frames at 44 x 1448 bytes whatever the flow
# count, which isolates what the receiver does per connection from what the
# sender does per flow. Both rows are reported.
FULL_TSO_SEGS = 44
FULL_TSO_CC = "cubic"


RELAY_NEAR = "rlytun"  # the relay's device in the stack namespace (mytun's place)
RELAY_FAR = "rlyfar"  # its other device, moved into the far namespace (10.0.0.2)


def pin_cpus(pin: bool) -> tuple[int, int] | None:
    """(stack CPU, client CPU), or None when not pinning (one CPU, or --no-pin)."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2 or shutil.which("taskset") is None:
        return None
    return cpus[-1], cpus[0]


class Bench:
    def __init__(self, seconds: float, conns: int, smoke: bool, pin: bool = True,
                 prefix: str = "tlb") -> None:
        suffix = secrets.token_hex(3)
        self.stack_ns = f"{prefix}-stack-{suffix}"
        self.peer_ns = f"{prefix}-peer-{suffix}"
        self.far_ns = f"{prefix}-far-{suffix}"
        self.cpus = pin_cpus(pin)
        self.seconds = seconds
        self.conns = conns
        self.smoke = smoke
        self.tmp = Path(tempfile.mkdtemp(prefix="tcplab-bench-"))
        self.py = sys.executable
        self.env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        self.rows: list[dict[str, Any]] = []
        self.ipv6 = False

    # ------------------------------------------------------------- topology
    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def setup(self) -> None:
        self._ip("netns", "add", self.stack_ns)
        self._ip("netns", "add", self.peer_ns)
        self._ip("netns", "add", self.far_ns)
        self._ip("-n", self.far_ns, "link", "set", "lo", "up")
        self._ip("-n", self.stack_ns, "link", "add", "veth-s", "type", "veth", "peer", "name", "veth-p",
                 "netns", self.peer_ns)
        self._ip("-n", self.stack_ns, "addr", "add", f"{KERNEL_ADDR}/24", "dev", "veth-s")
        self._ip("-n", self.peer_ns, "addr", "add", f"{PEER_ADDR}/24", "dev", "veth-p")
        for ns, dev in ((self.stack_ns, "veth-s"), (self.peer_ns, "veth-p")):
            self._ip("-n", ns, "link", "set", dev, "up")
            self._ip("-n", ns, "link", "set", "lo", "up")
        self._ip("-n", self.peer_ns, "route", "add", "10.0.0.0/24", "via", KERNEL_ADDR)
        self.ipv6 = self._setup_ipv6()
        subprocess.run(["ip", "netns", "exec", self.stack_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                        "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"],
                       check=True, timeout=30)

    def _setup_ipv6(self) -> bool:
        """IPv6 on the veth (no DAD) and the peer's route to fd00:0:0:1::/64; False if
        the kernel has IPv6 off (the IPv6 rows are then left out)."""
        try:
            for ns, dev, addr in ((self.stack_ns, "veth-s", KERNEL_ADDR6), (self.peer_ns, "veth-p", PEER_ADDR6)):
                subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                                f"net.ipv6.conf.{dev}.accept_dad=0"], check=True, timeout=30)
                self._ip("-n", ns, "-6", "addr", "add", f"{addr}/64", "dev", dev, "nodad")
            subprocess.run(["ip", "netns", "exec", self.stack_ns, "sysctl", "-qw",
                            "net.ipv6.conf.all.forwarding=1"], check=True, timeout=30)
            self._ip("-n", self.peer_ns, "-6", "route", "add", "fd00:0:0:1::/64", "via", KERNEL_ADDR6)
        except subprocess.SubprocessError:
            return False
        return True

    def teardown(self) -> None:
        for ns in (self.stack_ns, self.peer_ns, self.far_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------- helpers
    def pinned(self, role: str, argv: list[str]) -> list[str]:
        """`argv` run on the stack's CPU (role "stack") or the client's ("client")."""
        if self.cpus is None:
            return argv
        cpu = self.cpus[0] if role == "stack" else self.cpus[1]
        return ["taskset", "-c", str(cpu), *argv]

    def _in(self, ns: str, argv: list[str], timeout: float, stdin: str | None = None) -> str:
        if ns == self.peer_ns:
            argv = self.pinned("client", argv)
        out = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                             timeout=timeout, input=stdin, env=self.env)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {out.stderr.strip()[-300:]}")
        return out.stdout

    def client(self, *args: str) -> dict[str, Any]:
        text = self._in(self.peer_ns, [self.py, "-m", "stack.tools.benchpeer", *args], timeout=120)
        return dict(json.loads(text.strip().splitlines()[-1]))

    def start_daemon(self, offload: bool) -> subprocess.Popen[str]:
        args = [self.py, "-m", "stack.cli", "stack", "--socket", str(self.tmp / "stack.sock")]
        args.append("--offload" if offload else "--no-offload")
        proc = subprocess.Popen(["ip", "netns", "exec", self.stack_ns, *self.pinned("stack", args)],
                                env=self.env, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "ready" in line:
                return proc
            if not line and proc.poll() is not None:
                break
        proc.kill()
        raise RuntimeError("the stack daemon did not come up")

    def start_servers(self, ns: str, role: str) -> subprocess.Popen[str]:
        """Kernel discard/chargen/echo (benchpeer serve) in namespace `ns`."""
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns,
             *self.pinned(role, [self.py, "-m", "stack.tools.benchpeer", "serve", str(KPORT)])],
            env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        if "serving" not in server.stdout.readline():
            server.kill()
            raise RuntimeError("the kernel servers did not come up")
        return server

    @staticmethod
    def stop_servers(server: subprocess.Popen[str]) -> None:
        assert server.stdin is not None
        server.stdin.close()
        server.terminate()
        server.wait(timeout=10)

    def start_relay(self, offload: bool) -> subprocess.Popen[str]:
        """The pure TUN relay between the stack namespace and the far one, where
        10.0.0.2 is the kernel's (see stack/tools/tunrelay.py)."""
        argv = [self.py, "-m", "stack.tools.tunrelay", RELAY_NEAR, RELAY_FAR,
                "--offload" if offload else "--no-offload"]
        proc = subprocess.Popen(["ip", "netns", "exec", self.stack_ns, *self.pinned("stack", argv)],
                                env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stderr is not None
        if "ready" not in proc.stdout.readline():
            proc.kill()
            raise RuntimeError(f"the TUN relay did not come up: {proc.stderr.read().strip()[-300:]}")
        try:
            self._ip("-n", self.stack_ns, "link", "set", RELAY_FAR, "netns", self.far_ns)
            self._ip("-n", self.far_ns, "addr", "add", f"{STACK_ADDR}/24", "dev", RELAY_FAR)
            self._ip("-n", self.far_ns, "link", "set", RELAY_FAR, "up")
            self._ip("-n", self.far_ns, "route", "add", "default", "dev", RELAY_FAR)
        except subprocess.CalledProcessError:
            self.stop_relay(proc)
            raise
        return proc

    @staticmethod
    def stop_relay(proc: subprocess.Popen[str]) -> None:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)

    def relay_figures(self, offload: bool, t: str) -> dict[str, float]:
        """Upload and download (and with offloads, request/response and connection
        rate) through the relay, against kernel servers in the far namespace."""
        relay = self.start_relay(offload)
        try:
            # On the stack's CPU, like the stack's own servers (inside the daemon).
            server = self.start_servers(self.far_ns, "stack")
            try:
                got = {"up": self.client("upload", STACK_ADDR, str(KPORT), t)["mbit_s"],
                       "down": self.client("download", STACK_ADDR, str(KPORT + 1), t)["mbit_s"]}
                if offload:
                    got["rr"] = self.client("rr", STACK_ADDR, str(KPORT + 2), t)["per_s"]
                    got["cps"] = self.client("cps", STACK_ADDR, str(KPORT + 2), t)["per_s"]
                return got
            finally:
                self.stop_servers(server)
        finally:
            self.stop_relay(relay)

    def stop_daemon(self, proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()

    def daemon_pid(self, proc: subprocess.Popen[str]) -> int:
        # `ip netns exec` execs the program, so the pid is the daemon's.
        return proc.pid

    @staticmethod
    def rss_kib(pid: int) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def progress(self, text: str) -> None:
        print(f"  .. {text}", file=sys.stderr, flush=True)

    def add(self, figure: str, unit: str, kernel: float | None, stack: float | None,
            target: str = "", relay: float | None = None) -> None:
        ratio = stack / kernel if kernel and stack is not None else None
        relay_ratio = stack / relay if relay and stack is not None else None
        self.rows.append({"figure": figure, "unit": unit, "kernel": kernel, "relay": relay,
                          "stack": stack, "ratio": ratio, "relay_ratio": relay_ratio,
                          "target": target})
        self.progress(f"{figure}: kernel {kernel} relay {relay} stack {stack} {unit}")

    # ------------------------------------------------------------- figures
    def run(self, shim: bool) -> None:
        t = str(self.seconds)
        if self.cpus is not None:
            self.progress(f"pinned: stack side on CPU {self.cpus[0]}, client on CPU {self.cpus[1]}")
        server = self.start_servers(self.stack_ns, "stack")
        try:
            self.progress("kernel ceiling")
            k_up = self.client("upload", KERNEL_ADDR, str(KPORT), t)["mbit_s"]
            k_down = self.client("download", KERNEL_ADDR, str(KPORT + 1), t)["mbit_s"]
            k_rr = self.client("rr", KERNEL_ADDR, str(KPORT + 2), t)["per_s"]
            k_cps = self.client("cps", KERNEL_ADDR, str(KPORT + 2), t)["per_s"]
            k_par = {n: self.client("upload", KERNEL_ADDR, str(KPORT), t, str(n))["mbit_s"]
                     for n in (1, 10, 100)}
            k_tso = self.full_tso_flows(KERNEL_ADDR, str(KPORT), t)
            if self.ipv6:
                k_up6 = self.client("upload", KERNEL_ADDR6, str(KPORT), t)["mbit_s"]
                k_down6 = self.client("download", KERNEL_ADDR6, str(KPORT + 1), t)["mbit_s"]
        finally:
            self.stop_servers(server)

        for offload in (True, False):
            label = "offloads on" if offload else "offloads off"
            self.progress(f"relay ceiling, {label}")
            relay = self.relay_figures(offload, t)
            self.progress(f"stack, {label}")
            daemon = self.start_daemon(offload)
            try:
                up = self.client("upload", STACK_ADDR, "9", t)["mbit_s"]
                down = self.client("download", STACK_ADDR, "19", t)["mbit_s"]
                self.add(f"upload ({label})", "Mbit/s", k_up, up, ">= 2000" if offload else ">= 700",
                         relay=relay["up"])
                self.add(f"download ({label})", "Mbit/s", k_down, down,
                         ">= 6500" if offload else ">= 700", relay=relay["down"])
                if offload:
                    rr = self.client("rr", STACK_ADDR, "7", t)["per_s"]
                    self.add("1-byte request/response", "per s", k_rr, rr, ">= 0.8 x kernel",
                             relay=relay["rr"])
                    cps = self.client("cps", STACK_ADDR, "7", t)["per_s"]
                    self.add("new connections", "per s", k_cps, cps, ">= kernel", relay=relay["cps"])
                    for n in (1, 10, 100):
                        par = self.client("upload", STACK_ADDR, "9", t, str(n))["mbit_s"]
                        self.add(f"{n} parallel flows (upload)", "Mbit/s", k_par[n], par,
                                 "total within 80% of 1 flow" if n == 100 else "")
                    tso = self.full_tso_flows(STACK_ADDR, "9", t)
                    for n in (1, 100):
                        self.add(f"{n} flows, full-size TSO sender", "Mbit/s", k_tso[n], tso[n],
                                 "total within 80% of 1 flow" if n == 100 else "")
                    if self.ipv6:
                        up6 = self.client("upload", STACK_ADDR6, "9", t)["mbit_s"]
                        down6 = self.client("download", STACK_ADDR6, "19", t)["mbit_s"]
                        self.add("upload over IPv6 (offloads on)", "Mbit/s", k_up6, up6,
                                 "within 10% of IPv4")
                        self.add("download over IPv6 (offloads on)", "Mbit/s", k_down6, down6,
                                 "within 10% of IPv4")
            finally:
                self.stop_daemon(daemon)
            if offload:
                self.hold_connections()
        if shim:
            self.shim_iperf()

    def run_rr(self) -> None:
        """Only the 1-byte request/response row (kernel, relay, stack with offloads
        on), on a fresh daemon: about 3 x --seconds instead of the whole bench."""
        t = str(self.seconds)
        server = self.start_servers(self.stack_ns, "stack")
        try:
            k_rr = self.client("rr", KERNEL_ADDR, str(KPORT + 2), t)["per_s"]
        finally:
            self.stop_servers(server)
        relay = self.start_relay(True)
        try:
            server = self.start_servers(self.far_ns, "stack")
            try:
                relay_rr = self.client("rr", STACK_ADDR, str(KPORT + 2), t)["per_s"]
            finally:
                self.stop_servers(server)
        finally:
            self.stop_relay(relay)
        daemon = self.start_daemon(True)
        try:
            rr = self.client("rr", STACK_ADDR, "7", t)["per_s"]
        finally:
            self.stop_daemon(daemon)
        self.add("1-byte request/response", "per s", k_rr, rr, ">= 0.8 x kernel", relay=relay_rr)

    def full_tso_flows(self, host: str, port: str, t: str) -> dict[int, float]:
        """1 and 100 upload flows with the sender's TSO frames kept full (see FULL_TSO_SEGS)."""
        sysctl = ["ip", "netns", "exec", self.peer_ns, "sysctl", "-qw"]
        subprocess.run([*sysctl, f"net.ipv4.tcp_min_tso_segs={FULL_TSO_SEGS}"], check=True, timeout=30)
        try:
            return {n: self.client("upload", host, port, t, str(n), FULL_TSO_CC)["mbit_s"] for n in (1, 100)}
        finally:
            subprocess.run([*sysctl, "net.ipv4.tcp_min_tso_segs=2"], check=True, timeout=30)

    def hold_connections(self) -> None:
        """N idle connections to echo, and what they add to a fresh daemon's resident
        memory (a daemon that ran the bulk figures would reuse memory it freed)."""
        daemon = self.start_daemon(True)
        try:
            self._hold(self.daemon_pid(daemon))
        finally:
            self.stop_daemon(daemon)

    def _hold(self, pid: int) -> None:
        before = self.rss_kib(pid)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.peer_ns, self.py, "-m", "stack.tools.benchpeer", "hold",
             STACK_ADDR, "7", str(self.conns)],
            env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        held = json.loads(line)["held"] if line else 0
        time.sleep(0.5)
        after = self.rss_kib(pid)
        proc.stdin.close()
        proc.wait(timeout=60)
        per_conn = (after - before) * 1024 / max(held, 1)
        self.add(f"{self.conns} idle connections held", "connections", None, held)
        self.add("daemon memory per connection", "bytes", None, round(per_conn), "<= 16384")

    def shim_iperf(self) -> None:
        if shutil.which("iperf3") is None:
            self.progress("no iperf3: skipping the shim figures")
            return
        server = subprocess.Popen(["ip", "netns", "exec", self.peer_ns, "iperf3", "-s"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        try:
            t = str(max(int(self.seconds), 1))
            for reverse in (False, True):
                extra = ["-R"] if reverse else []
                name = "iperf3 download (shim)" if reverse else "iperf3 upload (shim)"
                kernel = self._iperf(["iperf3", "-c", PEER_ADDR, "-t", t, "-J", *extra])
                daemon = self.start_daemon(True)
                try:
                    stack = self._iperf([self.py, "-m", "stack.cli", "run", "--socket",
                                         str(self.tmp / "stack.sock"), "--", "iperf3", "-c", PEER_ADDR,
                                         "-t", t, "-J", *extra])
                except RuntimeError as exc:
                    self.progress(f"{name}: {exc}")
                    stack = None
                finally:
                    self.stop_daemon(daemon)
                self.add(name, "Mbit/s", kernel, stack, ">= 1000")
        finally:
            server.terminate()
            server.wait(timeout=10)

    def _iperf(self, argv: list[str]) -> float:
        out = self._in(self.stack_ns, argv, timeout=120)
        data = json.loads(out)
        return float(data["end"]["sum_received"]["bits_per_second"]) / 1e6


def format_table(rows: list[dict[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    def ratio(v: Any) -> str:
        return f"{v:.2f}" if v is not None else "-"

    # ratio: the stack's figure over the kernel's and over the relay's (the ceiling of
    # a Python process on TUN).
    lines = [f"{'figure':<34}{'kernel':>10}{'relay':>10}{'stack':>10}"
             f"{'ratio/kernel':>14}{'ratio/relay':>13}  {'unit':<12}target"]
    for r in rows:
        lines.append(f"{r['figure']:<34}{fmt(r['kernel']):>10}{fmt(r.get('relay')):>10}"
                     f"{fmt(r['stack']):>10}{ratio(r['ratio']):>14}{ratio(r.get('relay_ratio')):>13}"
                     f"  {r['unit']:<12}{r['target']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tcplab bench", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement (default 10)")
    parser.add_argument("--conns", type=int, default=10000, help="idle connections to hold")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--smoke", action="store_true", help="tiny run that checks it works")
    parser.add_argument("--no-shim", action="store_true", help="skip the iperf3-under-shim figures")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the stack side and the client to different CPUs")
    parser.add_argument("--only", choices=["rr"],
                        help="measure one figure only (rr: 1-byte request/response, fresh daemon)")
    parser.add_argument("--ns-prefix", default="tlb", metavar="PREFIX",
                        help="prefix of the network namespaces' names (default tlb)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("tcplab bench: error: needs root (it creates network namespaces)", file=sys.stderr)
        return 1
    seconds, conns = (0.5, 50) if args.smoke else (args.seconds, args.conns)
    bench = Bench(seconds, conns, args.smoke, pin=not args.no_pin, prefix=args.ns_prefix)
    print(f"tcplab bench: {seconds:g} s per figure, namespaces {bench.stack_ns} / {bench.peer_ns}",
          file=sys.stderr)
    try:
        bench.setup()
        if args.only == "rr":
            bench.run_rr()
        else:
            bench.run(shim=not args.no_shim)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"tcplab bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        bench.teardown()
    print(format_table(bench.rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds": seconds, "rows": bench.rows}, indent=1))
    return 0
