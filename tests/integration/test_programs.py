"""Real programs from Debian's packages, as users run them, on the stack (`tcplab run`).

Each program runs in its packaged default configuration, with no flag added for the
shim: servers from their packaged config files (or, where Debian ships none, with their
built-in defaults), started the way their systemd unit starts them. The kernel's copy
of the same program (or its usual counterpart) is the other side, in the peer
namespace. Where a packaged config only serves loopback (redis, memcached) the one
setting a user changes to serve the network is changed, and said so beside it.

To run a packaged config unchanged against test data, each server gets a private mount
namespace (`unshare --mount`) in which test directories are bind-mounted over the
paths its config names (/var/www/html, /run, /var/log/nginx, /root, /etc/hosts): the
machine's own files are never touched.

Every transfer is checked by SHA-256 or by the program's own verification; every
process has a timeout and its process group is killed after the test.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from netns import (
    REPO_ROOT,
    STACK_ADDR,
    STACK_ADDR6,
    STACK_NS_ADDR,
    figures_fixture,
    popen_in,
    python_env,
)
from shim_fixtures import (
    MB,
    Shim,
    data_dir,
    sh,
    sha256_file,
    shim,
    shim_built,
)

pytestmark = pytest.mark.root

PEER = "10.1.0.2"

# Known not to work (README "Known not to work"): each test still asserts the right
# behaviour; strict xfail turns into a failure the day it starts to work.
DNSMASQ_TCP_LOCAL_ADDRESS = pytest.mark.xfail(strict=True, reason=(
    "dnsmasq listening on the wildcard takes a TCP query only when the connection's "
    "local address (10.0.0.2) is an address of an interface of its network namespace, "
    "which it lists from the kernel (netlink); the stack's address lives in the stack, on "
    "no kernel interface, so dnsmasq closes every TCP connection (UDP is answered)"))
PG_CTLCLUSTER = pytest.mark.xfail(strict=True, reason=(
    "pg_ctlcluster starts the postmaster with the cluster's own environment file, so "
    "LD_PRELOAD does not reach it (it listens on the kernel)"))
FIXTURES = (data_dir, sh, shim, shim_built)  # used by name as test arguments
figures = figures_fixture("tcplab-programs.json", "real programs: load generator figures")

# program -> the Debian package that ships it (scripts/test.sh installs these)
PACKAGES = {
    "nginx": "nginx", "lighttpd": "lighttpd", "redis-server": "redis-server",
    "redis-benchmark": "redis-tools", "redis-cli": "redis-tools", "memcached": "memcached",
    "memcaslap": "libmemcached-tools", "memccp": "libmemcached-tools",
    "memccat": "libmemcached-tools", "sshd": "openssh-server", "ssh": "openssh-client",
    "scp": "openssh-client", "ssh-keygen": "openssh-client", "rsync": "rsync",
    "dnsmasq": "dnsmasq-base", "dig": "bind9-dnsutils", "kdig": "knot-dnsutils",
    "wrk": "wrk", "ab": "apache2-utils", "node": "nodejs",
    "java": "default-jre-headless", "unshare": "util-linux", "pgbench": "postgresql-client",
    "psql": "postgresql-client", "pg_createcluster": "postgresql",
    "pg_ctlcluster": "postgresql",
}
SBIN = ("/usr/sbin", "/sbin")


def which(program: str) -> str | None:
    found = shutil.which(program)
    if found is None:
        for d in SBIN:
            if os.access(f"{d}/{program}", os.X_OK):
                return f"{d}/{program}"
    return found


def need(*programs: str) -> None:
    """Skip (with the package to install) unless every program is installed."""
    missing = [p for p in programs if which(p) is None]
    if missing:
        pkgs = sorted({PACKAGES.get(p, p) for p in missing})
        pytest.skip(f"not installed: {' '.join(missing)} (apt-get install {' '.join(pkgs)})")


def with_mounts(argv: Sequence[str], binds: Mapping[str, Path | str] | None) -> list[str]:
    """argv in a private mount namespace where each bind target shows its source."""
    if not binds:
        return list(argv)
    mounts = "; ".join(f"mount --bind {shlex.quote(str(src))} {shlex.quote(dst)}"
                       for dst, src in binds.items())
    return ["unshare", "--mount", "--propagation", "private", "sh", "-ec",
            f'{mounts}; exec "$@"', "sh", *argv]


class Programs:
    """Starts programs under the shim, on the stack namespace's kernel, or in the peer,
    each in its own process group, and kills every group (and anything else the test
    left in the namespaces, such as daemons that detached) afterwards."""

    def __init__(self, sh: Shim, logdir: Path) -> None:
        self.sh = sh
        self.logdir = logdir
        self.procs: list[subprocess.Popen[Any]] = []
        self.logs: list[Path] = []

    def _argv(self, side: str, argv: Sequence[str], binds: Mapping[str, Path | str] | None,
              ) -> tuple[str, list[str], dict[str, Any]]:
        topo = self.sh.topology
        if side == "shim":  # (the mounts inside: tcplab run's Python may live under /root)
            return topo.stack_ns, self.sh.argv(with_mounts(argv, binds)), {
                "cwd": str(REPO_ROOT), "env": python_env()}
        if side == "kernel":  # the stack namespace's own kernel TCP (10.1.0.1)
            return topo.stack_ns, with_mounts(argv, binds), {}
        assert side == "peer"
        return topo.peer_ns, with_mounts(argv, binds), {}

    def start(self, side: str, argv: Sequence[str], binds: Mapping[str, Path | str] | None = None,
              **kw: Any) -> subprocess.Popen[Any]:
        ns, full, extra = self._argv(side, argv, binds)
        kw.setdefault("stdin", subprocess.DEVNULL)
        if "stdout" not in kw:  # a server's output goes to a log shown when it fails
            log = self.logdir / f"{len(self.logs)}-{side}-{Path(argv[0]).name}.log"
            self.logs.append(log)
            with open(log, "wb") as f:
                kw["stdout"] = kw["stderr"] = f
                return self.start(side, argv, binds, **kw)
        proc = popen_in(ns, full, start_new_session=True, **{**extra, **kw})
        self.procs.append(proc)
        return proc

    def run(self, side: str, argv: Sequence[str], binds: Mapping[str, Path | str] | None = None,
            timeout: float = 60, check: bool = True, **kw: Any,
            ) -> subprocess.CompletedProcess[Any]:
        """Run to completion (its group killed on timeout); raise on failure if check."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("text", True)
        proc = self.start(side, argv, binds, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          **kw)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group(proc)
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"timed out after {timeout}s: {shlex.join(argv)}\n"
                                 f"stdout: {out[-2000:]}\nstderr: {err[-3000:]}") from None
        cp = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}: {shlex.join(argv)}\n"
                                 f"stdout: {out[-2000:]}\nstderr: {err[-3000:]}")
        return cp

    @staticmethod
    def _kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self._kill_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            self._kill_group(proc)  # what is left of the group (forked children)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self.procs.clear()
        # daemons that detached (their own session): anything left in our namespaces
        # but the stack daemon was started by this test
        daemon = self.sh.daemon
        keep = {daemon.proc.pid} if daemon is not None and daemon.running else set()
        topo = self.sh.topology
        for ns in (topo.stack_ns, topo.peer_ns):
            cp = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                                timeout=10, check=False)
            for pid in cp.stdout.split():
                if int(pid) not in keep:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)


    def wait_port(self, side: str, port: int, udp: bool = False, timeout: float = 20,
                  server: subprocess.Popen[Any] | None = None) -> None:
        """Until `port` is served on `side`; fails at once if `server` exits first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                wait_port(self.sh, side, port, udp, timeout=min(1.0, timeout))
                return
            except TimeoutError as exc:
                if server is not None and server.poll() is not None:
                    raise AssertionError(f"the server exited with {server.returncode} before "
                                         f"serving port {port}\n{self.log_text()}") from None
                if time.monotonic() >= deadline:
                    raise AssertionError(f"{exc}\n{self.log_text()}") from None

    def log_text(self) -> str:
        return "\n".join(f"--- {log.name}:\n{log.read_text(errors='replace')[-3000:]}"
                         for log in self.logs)


@pytest.fixture
def progs(sh: Shim, tmp_path: Path) -> Iterator[Programs]:
    p = Programs(sh, tmp_path)
    try:
        yield p
    finally:
        p.cleanup()


def wait_port(sh: Shim, side: str, port: int, udp: bool = False, timeout: float = 20) -> None:
    """Until `port` is served on `side`: a listener (or UDP socket) in the daemon for the
    shim, a kernel socket for the kernel sides."""
    if side == "shim":
        (sh.wait_shim_udp if udp else sh.wait_shim_listener)(port, timeout=timeout)
        return
    ns = sh.topology.stack_ns if side == "kernel" else sh.topology.peer_ns
    flag = "-lunH" if udp else "-ltnH"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "netns", "exec", ns, "ss", flag, f"sport = :{port}"],
                             capture_output=True, text=True, timeout=10).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {side} port {port} after {timeout}s")


def address(side: str) -> str:
    """Where a client reaches a server started on `side`."""
    return {"shim": STACK_ADDR, "kernel": STACK_NS_ADDR, "peer": PEER}[side]


def run_dir(base: Path, *subdirs: str) -> Path:
    """A directory to stand for /run (or /var/log/...) with the given subdirectories."""
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    for sub in subdirs:
        (base / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(base / sub, 0o755)
    return base


@pytest.fixture(scope="module")
def www(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A document root for the web servers: big.bin (20 MB), mid.bin, index.html."""
    root = tmp_path_factory.mktemp("www")
    os.chmod(root, 0o755)
    for name in ("big.bin", "mid.bin"):
        os.link(data_dir / name, root / name)
    (root / "index.html").write_text("<html><body>tcplab</body></html>\n")
    (root / "small.bin").write_bytes(os.urandom(4096))
    return root


# --- web servers in their packaged configuration ---------------------------------------


def nginx_binds(www: Path, tmp: Path) -> dict[str, Path]:
    return {"/var/www/html": www, "/var/log/nginx": run_dir(tmp / "nginx-log"),
            "/run": run_dir(tmp / "nginx-run")}


def start_nginx(progs: Programs, side: str, www: Path, tmp: Path) -> Path:
    """nginx as its systemd unit starts it: `nginx -g 'daemon on; master_process on;'`
    with the packaged /etc/nginx/nginx.conf (user www-data, worker_processes auto,
    sendfile on, tcp_nopush on, listen 80 and [::]:80). Returns its pid file."""
    binds = nginx_binds(www, tmp / side)
    launcher = progs.start(side, ["nginx", "-g", "daemon on; master_process on;"], binds)
    assert launcher.wait(30) == 0, progs.log_text()
    progs.wait_port(side, 80)
    return binds["/run"] / "nginx.pid"


def curl_sha(progs: Programs, side: str, url: str, timeout: float = 60) -> str:
    """SHA-256 of what curl (on `side`) fetched from url; fails on a curl error."""
    cp = progs.run(side, ["curl", "-sSf", "--max-time", str(timeout - 10), url],
                   timeout=timeout, text=False)
    return hashlib.sha256(cp.stdout).hexdigest()


def worker_users(ns: str, name: str) -> list[str]:
    """The users of the processes called `name` in namespace `ns`."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                          timeout=10).stdout.split()
    users = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                uid = os.stat(f"/proc/{pid}").st_uid
                users.append(subprocess.run(["id", "-nu", str(uid)], capture_output=True,
                                            text=True, timeout=5).stdout.strip())
    return users


def test_nginx_server_packaged_config(progs: Programs, www: Path, tmp_path: Path) -> None:
    """Workers that drop to www-data before accept; sendfile on a non-blocking socket
    under edge-triggered epoll; a [::]:80 listener beside 0.0.0.0:80."""
    need("nginx", "curl", "unshare")
    start_nginx(progs, "shim", www, tmp_path)
    assert "www-data" in worker_users(progs.sh.topology.stack_ns, "nginx")
    base = f"http://{STACK_ADDR}"
    assert curl_sha(progs, "peer", f"{base}/big.bin") == sha256_file(www / "big.bin")
    assert curl_sha(progs, "peer", f"{base}/mid.bin") == sha256_file(www / "mid.bin")
    cp = progs.run("peer", ["curl", "-sSf", "--max-time", "20", f"{base}/"], timeout=30)
    assert cp.stdout == (www / "index.html").read_text()
    cp = progs.run("peer", ["curl", "-sS", "--max-time", "20", "-o", "/dev/null", "-w",
                            "%{http_code}", f"{base}/nothing-here"], timeout=30)
    assert cp.stdout == "404"


def test_lighttpd_server_packaged_config(progs: Programs, www: Path, tmp_path: Path) -> None:
    """lighttpd as its unit starts it (`lighttpd -D -f /etc/lighttpd/lighttpd.conf`):
    one process that drops to www-data; listens on 0.0.0.0:80 and [::]:80."""
    need("lighttpd", "curl", "unshare")
    run = run_dir(tmp_path / "run")
    binds = {"/var/www/html": www, "/var/log/lighttpd": run_dir(tmp_path / "log"),
             "/run": run}
    log = run_dir(tmp_path / "log")
    os.chown(log, 33, 33)  # www-data writes its error log after dropping privileges
    progs.start("shim", ["lighttpd", "-D", "-f", "/etc/lighttpd/lighttpd.conf"], binds)
    progs.wait_port("shim", 80)
    base = f"http://{STACK_ADDR}"
    assert curl_sha(progs, "peer", f"{base}/big.bin") == sha256_file(www / "big.bin")
    cp = progs.run("peer", ["curl", "-sSf", "--max-time", "20", f"{base}/index.html"],
                   timeout=30)
    assert cp.stdout == (www / "index.html").read_text()


def test_curl_and_wget_against_kernel_nginx(progs: Programs, www: Path, tmp_path: Path) -> None:
    need("nginx", "curl", "wget", "unshare")
    start_nginx(progs, "peer", www, tmp_path)
    want = sha256_file(www / "big.bin")
    assert curl_sha(progs, "shim", f"http://{PEER}/big.bin") == want
    cp = progs.run("shim", ["sh", "-c", f"wget -q -O - http://{PEER}/big.bin | sha256sum"],
                   timeout=120)
    assert cp.stdout.split()[0] == want


# --- load generators: keep-alive, many connections, against the stack and the kernel ----

WRK_SECONDS = 5
WRK_CONNECTIONS = 50


def parse_wrk(out: str) -> dict[str, float]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    tps = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)s, ([\d.]+)([KMG]?B) read", out)
    assert rps and tps and total, out
    scale = {"B": 1e-6, "KB": 1e-3, "MB": 1.0, "GB": 1e3}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": int(total.group(1)), "requests_s": float(rps.group(1)),
            "mb_s": round(float(tps.group(1)) * scale[tps.group(2)], 2),
            "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def wrk(progs: Programs, side: str, url: str, connections: int = WRK_CONNECTIONS,
        ) -> dict[str, float]:
    """wrk for WRK_SECONDS: every connection kept alive, no socket error, no non-2xx
    answer, and each connection served at least one request."""
    cp = progs.run(side, ["wrk", "-t", "2", "-c", str(connections), "-d",
                          f"{WRK_SECONDS}s", "--timeout", "10s", url],
                   timeout=WRK_SECONDS + 40)
    result = parse_wrk(cp.stdout)
    assert result["socket_errors"] == 0 and result["non_2xx"] == 0, cp.stdout
    assert result["requests"] >= connections, cp.stdout
    return result


def ab(progs: Programs, side: str, url: str, size: int) -> dict[str, float]:
    """ab with keep-alive (-k): it checks each response's length against the first."""
    cp = progs.run(side, ["ab", "-q", "-k", "-n", "5000", "-c", str(WRK_CONNECTIONS),
                          "-s", "20", url], timeout=90)
    out = cp.stdout
    done = int(re.search(r"Complete requests:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    kept = int(re.search(r"Keep-Alive requests:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    length = int(re.search(r"Document Length:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    assert (done, failed, length) == (5000, 0, size), out
    assert kept > 4000, out  # the connections were kept alive
    return {"requests": done, "requests_s": rps, "keepalive": kept}


def test_wrk_and_ab_against_nginx_on_the_stack_and_the_kernel(
        progs: Programs, www: Path, tmp_path: Path, figures: Any) -> None:
    """wrk (2 threads, 50 keep-alive connections, 5 s) and ab -k from the peer against
    nginx under the shim and against the same nginx on the kernel, same path (veth)."""
    need("nginx", "wrk", "ab", "unshare")
    small = (www / "small.bin").stat().st_size
    for side in ("kernel", "shim"):
        pidfile = start_nginx(progs, side, www, tmp_path)
        host = address(side)
        figures.add(f"wrk peer -> nginx on {side} (4 KiB)", wrk(progs, "peer",
                                                               f"http://{host}/small.bin"))
        figures.add(f"wrk peer -> nginx on {side} (3 MB, 4 connections)", wrk(progs, "peer",
                                                              f"http://{host}/mid.bin", 4))
        figures.add(f"ab -k peer -> nginx on {side} (4 KiB)", ab(progs, "peer",
                                                                f"http://{host}/small.bin",
                                                                small))
        os.kill(int(pidfile.read_text()), signal.SIGQUIT)
        deadline = time.monotonic() + 15
        while worker_users(progs.sh.topology.stack_ns, "nginx"):
            assert time.monotonic() < deadline, "nginx did not stop on SIGQUIT"
            time.sleep(0.1)


def test_wrk_and_ab_clients_under_the_shim(progs: Programs, www: Path, tmp_path: Path,
                                           figures: Any) -> None:
    """The load generators themselves on the stack, against kernel nginx in the peer."""
    need("nginx", "wrk", "ab", "unshare")
    start_nginx(progs, "peer", www, tmp_path)
    figures.add("wrk under the shim -> kernel nginx (4 KiB)",
                wrk(progs, "shim", f"http://{PEER}/small.bin"))
    figures.add("wrk under the shim -> kernel nginx (3 MB, 4 connections)",
                wrk(progs, "shim", f"http://{PEER}/mid.bin", 4))
    figures.add("ab -k under the shim -> kernel nginx (4 KiB)",
                ab(progs, "shim", f"http://{PEER}/small.bin",
                   (www / "small.bin").stat().st_size))
    figures.add("wrk kernel -> kernel nginx (4 KiB)",
                wrk(progs, "kernel", f"http://{PEER}/small.bin"))


# --- key-value stores driven by their own tools ------------------------------------------

REDIS_PASSWORD = "tcplab-test"


def start_redis(progs: Programs, side: str, tmp: Path) -> None:
    """redis-server as its unit starts it (`redis-server /etc/redis/redis.conf
    --supervised systemd --daemonize no`). The packaged config serves loopback only, so
    what a user changes to serve the network is changed: bind all addresses (IPv4 and
    IPv6, the config's own example) and set a password (protected mode stays on)."""
    d = tmp / f"redis-{side}"
    binds = {"/var/lib/redis": run_dir(d / "lib"), "/var/log/redis": run_dir(d / "log"),
             "/run": run_dir(d / "run", "redis")}
    progs.start(side, ["redis-server", "/etc/redis/redis.conf", "--supervised", "systemd",
                       "--daemonize", "no", "--bind", "* -::*",
                       "--requirepass", REDIS_PASSWORD], binds)
    progs.wait_port(side, 6379)


def redis_roundtrip(progs: Programs, client: str, host: str, data: Path) -> None:
    cli = ["redis-cli", "-h", host, "--no-auth-warning", "-a", REDIS_PASSWORD]
    with open(data, "rb") as f:
        cp = progs.run(client, [*cli, "-x", "set", "blob"], stdin=f, timeout=60)
    assert cp.stdout.strip() == "OK", cp.stdout + cp.stderr
    cp = progs.run(client, ["sh", "-c", f"{shlex.join(cli)} --raw get blob | head -c "
                            f"{data.stat().st_size} | sha256sum"], timeout=60)
    assert cp.stdout.split()[0] == sha256_file(data)


def redis_benchmark(progs: Programs, client: str, host: str) -> dict[str, float]:
    n = 2000
    cp = progs.run(client, ["redis-benchmark", "-h", host, "-a", REDIS_PASSWORD, "-n", str(n),
                            "-c", "50", "-t", "set,get,incr,lpush", "--csv"],
                   timeout=120)
    rows = [line.split('","') for line in cp.stdout.splitlines()[1:] if line.strip()]
    rps = {r[0].strip('"'): float(r[1].strip('"')) for r in rows}
    assert set(rps) >= {"SET", "GET", "INCR", "LPUSH"}, cp.stdout + cp.stderr
    # redis's own count: the INCR test's n increments all reached the key
    cp = progs.run(client, ["redis-cli", "-h", host, "--no-auth-warning", "-a",
                            REDIS_PASSWORD, "get", "counter:__rand_int__"], timeout=30)
    assert cp.stdout.strip() == str(n), cp.stdout
    return {k: round(v) for k, v in rps.items()}


@pytest.mark.parametrize("server", ["shim", "peer", "kernel"],
                         ids=["server-on-stack", "client-on-stack", "kernel-for-comparison"])
def test_redis(progs: Programs, server: str, data_dir: Path, tmp_path: Path,
               figures: Any) -> None:
    need("redis-server", "redis-cli", "redis-benchmark", "unshare")
    client = "shim" if server == "peer" else "peer"
    start_redis(progs, server, tmp_path)
    redis_roundtrip(progs, client, address(server), data_dir / "mid.bin")
    figures.add(f"redis-benchmark requests/s ({client} -> redis-server on {server})",
                redis_benchmark(progs, client, address(server)))


def start_memcached(progs: Programs, side: str) -> None:
    """memcached with its built-in defaults (all addresses, TCP 11211) as the user the
    packaged config names (-u memcache: memcached refuses to run as root). The packaged
    /etc/memcached.conf listens on 127.0.0.1 only."""
    server = progs.start(side, ["memcached", "-u", "memcache"])
    progs.wait_port(side, 11211, server=server)


@pytest.mark.parametrize("server", ["shim", "peer",
                                    "kernel"],
                         ids=["server-on-stack", "client-on-stack", "kernel-for-comparison"])
def test_memcached(progs: Programs, server: str, tmp_path: Path, figures: Any) -> None:
    need("memcached", "memcaslap", "memccp", "memccat")
    client = "shim" if server == "peer" else "peer"
    start_memcached(progs, server)
    host = address(server)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(500_000))  # under memcached's 1 MB item limit
    progs.run(client, ["memccp", f"--servers={host}", str(blob)], timeout=30,
              cwd=str(tmp_path))
    cp = progs.run(client, ["sh", "-c", f"memccat --servers={host} blob.bin | head -c 500000 | sha256sum"],
                   timeout=30)
    assert cp.stdout.split()[0] == sha256_file(blob)
    # (memccat ends what it prints with a newline of its own)
    # memaslap: 16 connections, sets and gets (4800: a multiple of 16, as it rounds),
    # every value read back verified
    cp = progs.run(client, ["memcaslap", f"--servers={host}:11211", "--threads=2",
                            "--concurrency=16", "--execute_number=4800", "--verify=1.0"],
                   timeout=120)
    out = cp.stdout + cp.stderr
    m = re.search(r"Run time: [\d.]+s Ops: (\d+) TPS: (\d+) Net_rate: ([\d.]+)M/s", out)
    assert m and int(m.group(1)) == 4800, out
    for count in ("verify_failed", "verify_misses", "get_misses"):
        assert re.search(rf"{count}: 0\n", out), out
    figures.add(f"memaslap ({client} -> memcached on {server})",
                {"ops": int(m.group(1)), "ops_s": int(m.group(2)), "mb_s": float(m.group(3))})


PG_VERSION = "15"  # bookworm's
PG_START = f"""
set -e
pg_createcluster {PG_VERSION} main >/dev/null
conf=/etc/postgresql/{PG_VERSION}/main
# what a user changes to serve the network: listen on every address (the packaged
# config says 'localhost'), and let the lab's network in (trust: no passwords here)
sed -i "s/^#listen_addresses = 'localhost'/listen_addresses = '*'/" $conf/postgresql.conf
echo "host all all 10.0.0.0/8 trust" >> $conf/pg_hba.conf
pg_ctlcluster {PG_VERSION} main start
"""


def start_postgresql(progs: Programs, side: str, tmp: Path, timeout: float = 20) -> None:
    """PostgreSQL as Debian sets it up (pg_createcluster) and starts it (pg_ctlcluster),
    in directories of the test's own bind-mounted over /etc/postgresql and the rest."""
    d = tmp / f"pg-{side}"
    binds: dict[str, Path] = {}
    for target, name in (("/etc/postgresql", "etc"), ("/var/lib/postgresql", "lib"),
                         ("/var/log/postgresql", "log"), ("/run/postgresql", "run")):
        binds[target] = run_dir(d / name)
        if name != "etc":
            shutil.chown(binds[target], "postgres", "postgres")
    starter = progs.start(side, ["sh", "-c", PG_START], binds)
    assert starter.wait(60) == 0, progs.log_text()
    progs.wait_port(side, 5432, timeout=timeout)


def test_postgresql_pgbench_client(progs: Programs, tmp_path: Path, figures: Any) -> None:
    """pgbench and psql on the stack against the kernel's PostgreSQL: pgbench's own
    count of failed transactions, and the server's count of the history rows the run
    on the stack wrote (one per transaction), from the stack's address."""
    need("pgbench", "psql", "pg_createcluster", "pg_ctlcluster", "unshare")
    start_postgresql(progs, "peer", tmp_path)
    db = ["-h", PEER, "-U", "postgres", "postgres"]
    progs.run("shim", ["pgbench", "-i", "-s", "1", "-q", *db], timeout=60)
    results = {}
    for side in ("kernel", "shim"):  # (each run empties pgbench_history first)
        cp = progs.run(side, ["pgbench", "-c", "8", "-j", "2", "-T", "4", *db], timeout=60)
        done = re.search(r"number of transactions actually processed: (\d+)", cp.stdout)
        failed = re.search(r"number of failed transactions: (\d+)", cp.stdout)
        tps = re.search(r"tps = ([\d.]+)", cp.stdout)
        assert done and failed and tps and int(failed.group(1)) == 0, cp.stdout + cp.stderr
        results[side] = {"transactions": int(done.group(1)), "tps": round(float(tps.group(1)))}
        figures.add(f"pgbench -c 8 ({'under the shim' if side == 'shim' else 'kernel'} -> "
                    "kernel PostgreSQL)", results[side])
    cp = progs.run("shim", ["psql", "-Atc", "select inet_client_addr(), count(*) from "
                            "pgbench_history", *db], timeout=30)
    assert cp.stdout.split() == [f"{STACK_ADDR}|{results['shim']['transactions']}"], \
        cp.stdout + cp.stderr


@PG_CTLCLUSTER
def test_postgresql_server_on_the_stack(progs: Programs, tmp_path: Path) -> None:
    need("pgbench", "psql", "pg_createcluster", "pg_ctlcluster", "unshare")
    start_postgresql(progs, "shim", tmp_path, timeout=8)
    cp = progs.run("peer", ["psql", "-h", STACK_ADDR, "-U", "postgres", "-Atc",
                            "select inet_client_addr()", "postgres"], timeout=30)
    assert cp.stdout.split() == [PEER]


# --- remote shell and file copy ------------------------------------------------------------


@pytest.fixture(scope="module")
def ssh_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home for root (bind-mounted over /root) with a key pair, the key in
    authorized_keys, and the packaged host keys in known_hosts for both addresses."""
    need("ssh-keygen")
    home = tmp_path_factory.mktemp("root-home")
    os.chmod(home, 0o700)
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(ssh / "id_ed25519")], check=True, timeout=30)
    (ssh / "authorized_keys").write_text((ssh / "id_ed25519.pub").read_text())
    known = []
    for pub in sorted(Path("/etc/ssh").glob("ssh_host_*_key.pub")):
        kind, key = pub.read_text().split()[:2]
        known.append(f"{STACK_ADDR},{PEER} {kind} {key}")
    (ssh / "known_hosts").write_text("\n".join(known) + "\n")
    for f in ssh.iterdir():
        os.chmod(f, 0o600)
    return home


def start_sshd(progs: Programs, side: str, home: Path, tmp: Path) -> None:
    """sshd as its unit starts it (`sshd -D`), packaged /etc/ssh/sshd_config: a process
    per connection, the pre-auth child chrooted to /run/sshd as user sshd."""
    binds = {"/root": home, "/run": run_dir(tmp / f"sshd-run-{side}", "sshd")}
    progs.start(side, [which("sshd") or "sshd", "-D"], binds)
    progs.wait_port(side, 22)


@pytest.mark.parametrize("server", ["shim", "peer"], ids=["server-on-stack",
                                                          "client-on-stack"])
def test_ssh_scp_rsync(progs: Programs, server: str, ssh_home: Path, data_dir: Path,
                       tmp_path: Path) -> None:
    need("sshd", "ssh", "scp", "rsync", "unshare")
    client = "peer" if server == "shim" else "shim"
    start_sshd(progs, server, ssh_home, tmp_path)
    host = address(server)
    binds = {"/root": ssh_home}
    cp = progs.run(client, ["ssh", f"root@{host}", "echo $SSH_CONNECTION"], binds, timeout=60)
    words = cp.stdout.split()  # client address, port, server address, port
    assert words[2:] == [host, "22"] and words[0] == address(client), cp.stdout + cp.stderr
    big = data_dir / "big.bin"
    want = sha256_file(big)
    up = tmp_path / "scp-up.bin"
    progs.run(client, ["scp", "-q", str(big), f"root@{host}:{up}"], binds, timeout=120)
    assert sha256_file(up) == want
    down = tmp_path / "scp-down.bin"
    progs.run(client, ["scp", "-q", f"root@{host}:{big}", str(down)], binds, timeout=120)
    assert sha256_file(down) == want
    with open(data_dir / "mid.bin", "rb") as f:
        cp = progs.run(client, ["ssh", f"root@{host}", "sha256sum"], binds, timeout=120,
                       stdin=f, text=False)
    assert cp.stdout.split()[0].decode() == sha256_file(data_dir / "mid.bin")
    # rsync over ssh: its own checksums verify the transfer, then ours
    dest = tmp_path / "rsync"
    progs.run(client, ["rsync", "-a", f"{data_dir}/", f"root@{host}:{dest}/"], binds,
              timeout=120)
    assert sha256_file(dest / "big.bin") == want


# --- DNS over UDP and TCP -------------------------------------------------------------------


def start_dnsmasq(progs: Programs, side: str, tmp: Path) -> None:
    """dnsmasq with its defaults (Debian's /etc/dnsmasq.conf, where present, is all
    comments): answers from /etc/hosts on every interface, UDP and TCP port 53, drops
    to user dnsmasq; in the foreground (-k) as under a supervisor. /etc/hosts is the
    test's."""
    hosts = tmp / f"hosts-{side}"
    lines = [f"10.9.{i // 250}.{i % 250 + 1} host{i}.tcplab.test" for i in range(200)]
    hosts.write_text("127.0.0.1 localhost\n" + "\n".join(lines) + "\n")
    os.chmod(hosts, 0o644)
    binds = {"/etc/hosts": hosts, "/run": run_dir(tmp / f"dnsmasq-run-{side}", "dnsmasq")}
    server = progs.start(side, ["dnsmasq", "-k"], binds)
    progs.wait_port(side, 53, udp=True, server=server)


@pytest.mark.parametrize("server", ["shim", "peer"],
                         ids=["server-on-stack", "client-on-stack"])
def test_dnsmasq_dig_kdig(progs: Programs, server: str, tmp_path: Path) -> None:
    need("dnsmasq", "dig", "kdig", "unshare")
    client = "peer" if server == "shim" else "shim"
    start_dnsmasq(progs, server, tmp_path)
    host = address(server)
    names = [f"host{i}.tcplab.test" for i in range(200)]
    want = [f"10.9.{i // 250}.{i % 250 + 1}" for i in range(200)]
    cp = progs.run(client, ["dig", f"@{host}", "+short", "+tries=2", "+time=2", names[0]],
                   timeout=20)
    assert cp.stdout.split() == want[:1], cp.stdout + cp.stderr
    # dig: one query per name, over UDP (its default), then over TCP: a connection per
    # query, each bound to port 0 before connect, to the one server (the stack's port
    # choice must steer clear of its own TIME-WAITs)
    tcp = server != "shim"  # (dnsmasq's TCP on the stack: test_dnsmasq_tcp_server_on_the_stack)
    for transport, n in (([], 50), (["+tcp"], 200))[: 2 if tcp else 1]:
        cp = progs.run(client, ["dig", f"@{host}", "+short", "+tries=2", "+time=3", *transport,
                                *names[:n]], timeout=60)
        assert cp.stdout.split() == want[:n], cp.stdout + cp.stderr
    cp = progs.run(client, ["kdig", f"@{host}", "+short", "host199.tcplab.test"], timeout=30)
    assert cp.stdout.split() == [want[199]], cp.stdout + cp.stderr
    if tcp:
        cp = progs.run(client, ["kdig", f"@{host}", "+tcp", "+short", "host7.tcplab.test"],
                       timeout=30)
        assert cp.stdout.split() == [want[7]], cp.stdout + cp.stderr
    # a reverse lookup, answered from the same /etc/hosts
    cp = progs.run(client, ["dig", f"@{host}", "+short", "-x", want[42]], timeout=30)
    assert cp.stdout.split() == [f"{names[42]}."], cp.stdout + cp.stderr


def test_dnsmasq_on_the_stack_answers_dig_6(progs: Programs, tmp_path: Path) -> None:
    """UDP over IPv6 through the shim with a real server: dnsmasq (its AF_INET6 socket,
    IPV6_RECVPKTINFO, the source from the datagram's record) answers `dig -6` from the
    peer at the stack's IPv6 address, as it answers IPv4 (issue 13)."""
    need("dnsmasq", "dig", "unshare")
    if not progs.sh.topology.ipv6:
        pytest.skip("no IPv6 in these namespaces")
    start_dnsmasq(progs, "shim", tmp_path)
    names = [f"host{i}.tcplab.test" for i in range(20)]
    cp = progs.run("peer", ["dig", "-6", f"@{STACK_ADDR6}", "+short", "+tries=2", "+time=3",
                            *names], timeout=60)
    assert cp.stdout.split() == [f"10.9.0.{i + 1}" for i in range(20)], cp.stdout + cp.stderr
    cp = progs.run("peer", ["dig", "-4", f"@{STACK_ADDR}", "+short", names[3]], timeout=30)
    assert cp.stdout.split() == ["10.9.0.4"], cp.stdout + cp.stderr


@DNSMASQ_TCP_LOCAL_ADDRESS
def test_dnsmasq_tcp_server_on_the_stack(progs: Programs, tmp_path: Path) -> None:
    need("dnsmasq", "dig", "unshare")
    start_dnsmasq(progs, "shim", tmp_path)
    cp = progs.run("peer", ["dig", f"@{STACK_ADDR}", "+short", "+tries=1", "+time=3", "+tcp",
                            "host3.tcplab.test"], timeout=30, check=False)
    assert cp.stdout.split() == ["10.9.0.4"], cp.stdout + cp.stderr


PKTINFO_SERVER = """
import socket, struct
IP_PKTINFO = 8  # <linux/in.h>; Python's socket module does not name it
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
s.bind(("0.0.0.0", 7053))
data, anc, flags, src = s.recvmsg(2048, socket.CMSG_SPACE(12))
for level, kind, raw in anc:
    if (level, kind) == (socket.IPPROTO_IP, IP_PKTINFO):
        ifindex, spec_dst, addr = struct.unpack("=i4s4s", raw)
        print(ifindex > 0, socket.inet_ntoa(spec_dst), socket.inet_ntoa(addr))
        s.sendto(data, src)
        break
else:
    print("no IP_PKTINFO", anc)
"""


def test_udp_ip_pktinfo(progs: Programs) -> None:
    """What dnsmasq needs: a wildcard UDP socket with IP_PKTINFO set gets, with each
    datagram, the interface and the address it was sent to (ip(7)). dnsmasq drops every
    query that comes without it (it checks the interface the query arrived on)."""
    server = progs.start("shim", ["python3", "-c", PKTINFO_SERVER], stdout=subprocess.PIPE,
                         text=True)
    progs.wait_port("shim", 7053, udp=True)
    progs.run("peer", ["sh", "-c", f"echo ping | nc -u -w2 {STACK_ADDR} 7053"], timeout=20)
    out, _ = server.communicate(timeout=20)
    assert out.split() == ["True", STACK_ADDR, STACK_ADDR], out


REBIND = """
import errno, socket, sys
family = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
failures = []
for port in range(7100, 7140):
    a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    a.bind(("0.0.0.0", port))
    a.listen(0)
    a.close()
    b = socket.socket(family, socket.SOCK_STREAM)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        b.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        b.listen(0)
    except OSError as e:
        failures.append(f"{port}:{errno.errorcode[e.errno]}")
    b.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", port))
    u.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("0.0.0.0", port))
    except OSError as e:
        failures.append(f"udp {port}:{errno.errorcode[e.errno]}")
    u.close()
print(" ".join(failures) or "ok")
"""


@pytest.mark.parametrize("family", ["4", "6"], ids=["inet", "inet6"])
def test_port_free_once_close_returns(progs: Programs, family: str) -> None:
    """Linux frees a port when close() returns: listen, close, listen again at once
    (pg_createcluster's free-port probe, and every "find a free port" helper)."""
    cp = progs.run("shim", ["python3", "-c", REBIND, family], timeout=60)
    assert cp.stdout.strip() == "ok", cp.stdout + cp.stderr


# --- Node.js and Java: AF_INET6 sockets by default --------------------------------------------

NODE_SERVER = """
const http = require("http"), fs = require("fs");
http.createServer((req, res) => {
  if (req.method === "POST") {
    const h = require("crypto").createHash("sha256");
    req.on("data", (d) => h.update(d));
    req.on("end", () => res.end(h.digest("hex") + " " + req.socket.remoteAddress));
  } else {
    fs.createReadStream(process.argv[1]).pipe(res);
  }
}).listen(8090, () => console.log("listening"));
"""

NODE_CLIENT = """
const http = require("http"), crypto = require("crypto");
http.get(process.argv[1], (res) => {
  const h = crypto.createHash("sha256"), local = res.socket.localAddress;
  let n = 0;
  res.on("data", (d) => { h.update(d); n += d.length; });
  res.on("end", () => console.log(n, h.digest("hex"), local));
}).on("error", (e) => { console.error(e.message); process.exit(1); });
"""


def test_node_http_server(progs: Programs, data_dir: Path) -> None:
    """Node's http.Server listens on [::] (dual-stack) when given no host."""
    need("node", "curl")
    progs.start("shim", ["node", "-e", NODE_SERVER, str(data_dir / "big.bin")])
    progs.wait_port("shim", 8090)
    assert curl_sha(progs, "peer", f"http://{STACK_ADDR}:8090/") == sha256_file(
        data_dir / "big.bin")
    cp = progs.run("peer", ["curl", "-sSf", "--max-time", "60", "--data-binary",
                            f"@{data_dir / 'mid.bin'}", f"http://{STACK_ADDR}:8090/"],
                   timeout=90)
    assert cp.stdout.split() == [sha256_file(data_dir / "mid.bin"), f"::ffff:{PEER}"]


def test_node_http_client(progs: Programs, www: Path, tmp_path: Path) -> None:
    need("node", "nginx", "unshare")
    start_nginx(progs, "peer", www, tmp_path)
    cp = progs.run("shim", ["node", "-e", NODE_CLIENT, f"http://{PEER}/big.bin"], timeout=120)
    assert cp.stdout.split() == [str(20 * MB), sha256_file(www / "big.bin"), STACK_ADDR]


JAVA_SERVER = """
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.nio.file.*;
public class Serve {
    public static void main(String[] a) throws Exception {
        HttpServer s = HttpServer.create(new InetSocketAddress(8091), 50);
        s.createContext("/", x -> {
            byte[] body = Files.readAllBytes(Path.of(a[0]));
            x.sendResponseHeaders(200, body.length);
            x.getResponseBody().write(body);
            x.close();
        });
        s.start();
    }
}
"""

JAVA_CLIENT = """
import java.net.URI;
import java.net.http.*;
import java.security.MessageDigest;
public class Fetch {
    public static void main(String[] a) throws Exception {
        HttpResponse<byte[]> r = HttpClient.newHttpClient().send(
            HttpRequest.newBuilder(URI.create(a[0])).build(),
            HttpResponse.BodyHandlers.ofByteArray());
        byte[] d = MessageDigest.getInstance("SHA-256").digest(r.body());
        StringBuilder h = new StringBuilder();
        for (byte b : d) h.append(String.format("%02x", b));
        System.out.println(r.statusCode() + " " + r.body().length + " " + h);
    }
}
"""


def test_java_http_server_and_client(progs: Programs, data_dir: Path, www: Path,
                                     tmp_path: Path) -> None:
    """The JDK's HttpServer and HttpClient: Java opens AF_INET6 sockets by default and
    connects to IPv4 addresses as v4-mapped ones."""
    need("java", "curl", "nginx", "unshare")
    (tmp_path / "Serve.java").write_text(JAVA_SERVER)
    (tmp_path / "Fetch.java").write_text(JAVA_CLIENT)
    progs.start("shim", ["java", str(tmp_path / "Serve.java"), str(data_dir / "mid.bin")])
    progs.wait_port("shim", 8091, timeout=60)
    assert curl_sha(progs, "peer", f"http://{STACK_ADDR}:8091/") == sha256_file(
        data_dir / "mid.bin")
    start_nginx(progs, "peer", www, tmp_path)
    cp = progs.run("shim", ["java", str(tmp_path / "Fetch.java"), f"http://{PEER}/big.bin"],
                   timeout=120)
    assert cp.stdout.split() == ["200", str(20 * MB), sha256_file(www / "big.bin")]


# --- the Python standard library's server, with no arguments but the port -----------------


def test_python_http_server_default_bind(progs: Programs, data_dir: Path,
                                         tmp_path: Path) -> None:
    """`python3 -m http.server` binds [::] dual-stack when given no --bind."""
    progs.start("shim", ["python3", "-m", "http.server", "8092"], cwd=str(data_dir))
    progs.wait_port("shim", 8092)
    assert curl_sha(progs, "peer", f"http://{STACK_ADDR}:8092/big.bin") == sha256_file(
        data_dir / "big.bin")


def test_socat_and_nc_udp_request_response(progs: Programs) -> None:
    """A UDP echo service in socat (fork per peer) answering kernel nc, each reply to the
    datagram's source."""
    need("socat", "nc")
    progs.start("shim", ["socat", "UDP-RECVFROM:7010,fork", "EXEC:rev"])
    progs.wait_port("shim", 7010, udp=True)
    for word in ("stack", "tcplab"):
        cp = progs.run("peer", ["sh", "-c", f"echo {word} | nc -u -w2 {STACK_ADDR} 7010"],
                       timeout=20)
        assert cp.stdout.strip() == word[::-1], cp.stdout + cp.stderr


def test_python_client_requests_many_connections(progs: Programs, www: Path,
                                                 tmp_path: Path) -> None:
    """A thread pool of urllib clients (connections in parallel) under the shim."""
    need("nginx", "unshare")
    start_nginx(progs, "peer", www, tmp_path)
    code = textwrap.dedent(f"""
        import concurrent.futures, hashlib, urllib.request
        def get(i):
            return hashlib.sha256(urllib.request.urlopen(
                "http://{PEER}/mid.bin", timeout=60).read()).hexdigest()
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            print("\\n".join(sorted(set(ex.map(get, range(32))))))
    """)
    cp = progs.run("shim", ["python3", "-c", code], timeout=120)
    assert cp.stdout.split() == [sha256_file(www / "mid.bin")]
