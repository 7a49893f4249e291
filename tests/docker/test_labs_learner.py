"""A scripted learner does every lab in the compose lab, as its README says.

For each lab, from a clean ``tcplab lab up --for NN``, the learner types the README's
commands in their order -- every command string below must appear verbatim in that
README, so README and script cannot drift apart -- with the reference solution in place
of each file the lab asks the learner to write (stack/labkit/reference/solutions.py;
``labs/`` itself is never read for a learner's file, never written). Commands a README
runs "in another terminal" run in the background, as a second terminal would. Each lab
ends with ``tcplab lab check NN`` (and ``labs/NN-*/check --swapped`` where the lab runs
the learner's component), which must PASS every line; then the learner runs the plot
commands the check printed, and the pictures must exist.

The learner runs ``tcplab`` from the test's Python environment, in a folder with ``labs``
(this checkout's) and ``out`` (the lab's output folder), with the lab's compose project
in $TCPLAB_PROJECT: the same commands a learner types, in the same place.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.labkit.reference.solutions import write_solutions
from stack.labkit.swap import SLOTS
from stack.tools.lab import Lab

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
LABS = ROOT / "labs"


def sha_of_bytes(n: int) -> str:
    return hashlib.sha256(random.Random(n).randbytes(n)).hexdigest()


class Learner:
    """Types a lab's README commands in a folder like the learner's checkout."""

    def __init__(self, lab: Lab, workspace: Path) -> None:
        self.lab = lab
        self.workspace = workspace
        self.solutions = write_solutions(workspace / "solutions", LABS)
        workspace.joinpath("labs").symlink_to(LABS)
        workspace.joinpath("out").symlink_to(lab.out_dir)
        self.logs = workspace / "logs"
        self.logs.mkdir()
        bindir = str(Path(sys.executable).parent)
        self.env = {**os.environ, **lab.env, "TCPLAB_PROJECT": lab.project,
                    "TCPLAB_ROOT": str(ROOT), "TCPLAB_OUT": str(lab.out_dir),
                    "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
                    "PYTHONPATH": str(ROOT)}
        self.env.pop("TCPLAB_STACK_ARGS", None)  # `up --for NN` says what the stack runs with
        self.nn = ""
        self.readme = ""
        self.background: list[subprocess.Popen[str]] = []
        self.timings: dict[str, float] = {}

    # -- the README ----------------------------------------------------------------------
    def begin(self, nn: str) -> None:
        self.end()
        self.nn = nn
        folder = next(LABS.glob(f"{nn}-*"))
        self.readme = (folder / "README.md").read_text()

    def said(self, line: str) -> None:
        assert line in self.readme, f"labs/{self.nn}-*/README.md no longer says:\n  {line}"

    def adapt(self, line: str) -> str:
        """The command as the scripted learner runs it: the image is built already, and
        the learner's own files are the reference solutions."""
        cmd = line
        if cmd.startswith("tcplab lab up"):
            cmd = cmd.replace("tcplab lab up", "tcplab lab up --no-build", 1)
        for slot in SLOTS.values():
            folder = next(LABS.glob(f"{slot.lab}-*")).name
            solved = self.solutions / "labs" / folder
            for name in slot.files:
                cmd = cmd.replace(f"labs/{folder}/{name}", f"{solved}/{name}")
            if slot.name == "echo":
                cmd = cmd.replace(f"labs/{folder}/$f", f"{solved}/$f")
                cmd = cmd.replace(f"--impl labs/{folder}", f"--impl {solved}")
        return cmd

    # -- typing --------------------------------------------------------------------------
    def run(self, line: str, *, ok: bool = True, timeout: float = 240,
            input: str | None = None, substitute: dict[str, str] | None = None) -> str:
        """Type ``line`` (a README command) and wait for it; its output."""
        self.said(line)
        cmd = self.adapt(line)
        for key, value in (substitute or {}).items():
            cmd = cmd.replace(key, value)
        started = time.monotonic()
        proc = subprocess.run(["bash", "-c", cmd], cwd=self.workspace, env=self.env,
                              capture_output=True, text=True, timeout=timeout, input=input,
                              check=False)
        took = time.monotonic() - started
        print(f"$ {line}   ({took:.1f} s, exit {proc.returncode})\n{proc.stdout}{proc.stderr}")
        if ok:
            assert proc.returncode == 0, (f"lab {self.nn}: `{line}` failed "
                                          f"({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def start(self, line: str, *, ready: str | None = None, timeout: float = 60,
              stdin: bool = False) -> subprocess.Popen[str]:
        """Type ``line`` in another terminal; with ``ready``, wait until it prints that."""
        self.said(line)
        cmd = self.adapt(line)
        log = self.logs / f"{self.nn}-{len(self.background)}.log"
        out = open(log, "w")  # noqa: SIM115  (closed with the process, in end())
        proc = subprocess.Popen(["bash", "-c", cmd], cwd=self.workspace, env=self.env,
                                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE if stdin else out,
                                stderr=out, text=True, start_new_session=True)
        proc.log = log  # type: ignore[attr-defined]
        self.background.append(proc)
        print(f"$ {line}   (in the background; output in {log})")
        if ready is not None:
            self.wait_for(lambda: ready in log.read_text(errors="replace"),
                          f"`{line}` to print {ready!r}", timeout, proc)
        return proc

    def wait_for(self, condition: object, what: str, timeout: float = 30,
                 proc: subprocess.Popen[str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not condition():  # type: ignore[operator]
            if proc is not None and proc.poll() is not None:
                log = getattr(proc, "log", None)
                text = log.read_text(errors="replace") if log else ""
                pytest.fail(f"lab {self.nn}: gave up waiting for {what}: it ended "
                            f"({proc.returncode}):\n{text}")
            if time.monotonic() > deadline:
                pytest.fail(f"lab {self.nn}: gave up waiting for {what} after {timeout:.0f} s")
            time.sleep(0.1)

    def written(self, *names: str) -> None:
        """Until the stack has written what it saw: it writes its capture and event log
        twice a second, so wait until neither has grown for a full second (a learner
        who types the next command needs longer than that anyway)."""
        paths = [self.lab.out_dir / n for n in names or ("stack.pcap", "events.jsonl")]
        deadline = time.monotonic() + 20
        last: list[int] = []
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            sizes = [p.stat().st_size if p.exists() else -1 for p in paths]
            if sizes != last:
                last, stable_since = sizes, time.monotonic()
            elif time.monotonic() - stable_since >= 1.0:
                return
            time.sleep(0.1)

    def check(self, line: str, *, swapped: bool = False) -> str:
        """Run a check from the README; every line must pass. Then draw what it names."""
        self.written("swap.pcap", "swap-events.jsonl") if swapped else self.written()
        out = self.run(line, ok=False, timeout=600)
        assert "FAIL" not in out and re.search(r"(all \d+ checks passed|\d+ of \d+ labs pass)",
                                               out), f"lab {self.nn}: {line}\n{out}"
        for command in re.findall(r"(?:draw it|draw them): (tcplab plot .*)", out):
            self.draw(command)
        return out

    def draw(self, command: str) -> None:
        """A plot command the check printed (the README says: run it)."""
        proc = subprocess.run(shlex.split(command), cwd=self.workspace, env=self.env,
                              capture_output=True, text=True, timeout=300, check=False)
        print(f"$ {command}\n{proc.stdout}{proc.stderr}")
        assert proc.returncode == 0, f"lab {self.nn}: {command}\n{proc.stdout}{proc.stderr}"
        pictures = [Path(x) for x in proc.stdout.split() if x.endswith((".png", ".svg"))]
        assert pictures, proc.stdout
        for p in pictures:
            path = p if p.is_absolute() else self.workspace / p
            assert path.is_file() and path.stat().st_size > 2000, path

    def end(self) -> None:
        """Close the other terminals (the processes in the containers go with the next
        `tcplab lab up --for`, which makes every container anew)."""
        for proc in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
                    proc.wait(10)
        self.background.clear()


@pytest.fixture(scope="module")
def learner(lab: Lab, tmp_path_factory: pytest.TempPathFactory,
            request: pytest.FixtureRequest) -> Iterator[Learner]:
    who = Learner(lab, tmp_path_factory.mktemp("learner"))
    try:
        yield who
    finally:
        who.end()
        if who.timings:
            total = sum(who.timings.values())
            text = ("\nthe scripted learner: " + ", ".join(
                f"{k} {v:.0f} s" for k, v in who.timings.items()) + f"; {total:.0f} s in all")
            capman = request.config.pluginmanager.getplugin("capturemanager")
            if capman is not None:
                with capman.global_and_fixture_disabled():
                    print(text, file=sys.stderr, flush=True)


@pytest.fixture
def timed(learner: Learner, request: pytest.FixtureRequest) -> Iterator[Learner]:
    started = time.monotonic()
    yield learner
    learner.end()
    learner.timings[request.node.name.removeprefix("test_")] = time.monotonic() - started


def up(who: Learner, nn: str, line: str | None = None) -> None:
    who.run(line or f"tcplab lab up --for {nn}", timeout=300)


def beside_lab(who: Learner, line: str) -> None:
    """A second stack (terminal 1) and the route to it (terminal 2)."""
    who.start(line, ready="ready:", timeout=60)
    who.run("tcplab lab exec peer ip route replace 10.0.9.0/24 via 10.0.1.1")


def test_lab01(timed: Learner) -> None:
    who = timed
    who.begin("01")
    up(who, "01")
    assert "3 received" in who.run("tcplab lab exec peer ping -c 3 10.0.0.2")
    who.start("tcplab lab exec stack tcpdump -ni mytun icmp")
    who.run("tcplab lab exec peer ping -c 3 10.0.0.2")
    who.run("tcplab lab exec peer ping -c 1 10.0.0.1")
    who.run("python3 -m stack.labkit test 01 --impl labs/01-tun/tunread.py")
    who.run("cp labs/01-tun/tunread.py out/")
    who.start("tcplab lab exec stack sh -c 'python3 -u /out/tunread.py tun1 | tee /out/tunread.txt'")
    up_tun1 = "tcplab lab exec stack sh -c 'ip addr add 10.0.7.1/24 dev tun1 && ip link set tun1 up'"
    # the learner's second terminal: the reader must have created tun1 first
    who.wait_for(lambda: who.lab.exec("stack", ["ip", "link", "show", "tun1"]).returncode == 0,
                 "the reader to create tun1", 30)
    who.run(up_tun1)
    who.run("tcplab lab exec stack ping -c 3 -W 1 10.0.7.2", ok=False)  # nobody answers
    who.run("tcplab lab exec stack sh -c 'printf hi | nc -u -w1 10.0.7.2 9'")
    log = who.lab.out_dir / "tunread.txt"
    who.wait_for(lambda: log.exists() and "UDP len 30" in log.read_text(), "the UDP line", 10)
    assert "3008 bytes from 10.0.0.2" in who.run("tcplab lab exec peer ping -c 2 -s 3000 10.0.0.2")
    who.run("tcplab lab exec stack tcpdump -r /out/stack.pcap -n -v icmp")
    who.check("tcplab lab check 01")


def test_lab02(timed: Learner) -> None:
    who = timed
    who.begin("02")
    who.run("python3 -m stack.labkit test 02 --impl labs/02-ipv4-checksum/checksum.py")
    up(who, "02")
    who.run("tcplab lab exec peer ping -c 3 10.0.0.2")
    assert who.run("""tcplab lab exec peer sh -c "printf 'hello udp\\n' | nc -u -w1 10.0.0.2 7\"""") \
        == "hello udp\n"
    who.run("tcplab lab exec peer curl -s http://10.0.0.2/")
    who.run("tcplab lab exec stack tcpdump -r /out/stack.pcap -vv -n")
    who.check("tcplab lab check 02")
    up(who, "02", 'tcplab lab up --for 02 --stack-args "--impair corrupt=20%"')
    who.run("tcplab lab exec peer ping -c 20 -i 0.2 10.0.0.2", ok=False)  # some never come
    who.run("grep checksum out/events.jsonl | head", ok=False)
    who.run("tcplab lab exec peer nstat -az IcmpInCsumErrors UdpInCsumErrors TcpInCsumErrors "
            "IpExtInCsumErrors")
    up(who, "02")
    who.run("cp labs/02-ipv4-checksum/checksum.py out/")
    beside_lab(who, "tcplab lab exec stack python3 -m stack.labkit stack --beside-lab "
                    "--no-offload --swap checksum=/out/checksum.py")
    who.run("tcplab lab exec peer ping -c 3 10.0.9.2")
    who.run("""tcplab lab exec peer sh -c "printf 'hello udp\\n' | nc -u -w1 10.0.9.2 7\"""")
    got = who.run("tcplab lab exec peer sh -c 'curl -s http://10.0.9.2/bytes/1000000 | sha256sum'")
    assert got.split()[0] == sha_of_bytes(1_000_000)
    who.check("labs/02-ipv4-checksum/check --swapped", swapped=True)


def test_lab03(timed: Learner) -> None:
    who = timed
    who.begin("03")
    up(who, "03")
    who.start("tcplab lab exec stack tcpdump -ni mytun -S "
              "'tcp[tcpflags] & (tcp-syn|tcp-fin) != 0'")
    for _ in range(2):
        who.run("tcplab lab exec peer curl -s http://10.0.0.2/")
    who.written()
    who.run("tcplab lab exec stack tcpdump -r /out/stack.pcap -nS 'tcp[tcpflags] & tcp-syn != 0'")
    who.run("""grep '"state"' out/events.jsonl | head""")
    who.run("tcplab lab exec client tcplab run -- curl -s http://peer/")
    who.written()
    assert "SYN-SENT" in who.run("grep SYN-SENT out/events.jsonl")
    who.check("tcplab lab check 03")
    who.run("python3 -m stack.labkit test 03 --impl labs/03-handshake/seq.py")
    who.run("cp labs/03-handshake/seq.py out/")
    beside_lab(who, "tcplab lab exec stack python3 -m stack.labkit stack --beside-lab "
                    "--isn-near-wrap --swap seq=/out/seq.py")
    got = who.run("tcplab lab exec peer sh -c 'curl -s http://10.0.9.2/bytes/5000000 | sha256sum'")
    assert got.split()[0] == sha_of_bytes(5_000_000)
    out = who.check("labs/03-handshake/check --swapped", swapped=True)
    assert "the wrap branch ran" in out


def test_lab04(timed: Learner) -> None:
    who = timed
    who.begin("04")
    who.run("python3 -m stack.labkit test 04 --impl labs/04-reassembly/reassembler.py")
    up(who, "04")
    who.run("tcplab lab exec peer sh -c 'head -c 1000000 /dev/urandom > /tmp/up.bin && "
            "sha256sum /tmp/up.bin && nc -N 10.0.0.2 9 < /tmp/up.bin'")
    who.written()
    assert '"discard"' in who.run("""grep '"service"' out/events.jsonl""")
    who.start("tcplab lab exec stack tcpdump -ni mytun 'src 10.0.0.2 and tcp port 9'")
    who.run("tcplab lab exec peer sh -c 'nc -N 10.0.0.2 9 < /tmp/up.bin'")
    who.check("tcplab lab check 04")
    who.run("cp labs/04-reassembly/reassembler.py out/")
    beside_lab(who, "tcplab lab exec stack python3 -m stack.labkit stack --beside-lab --impair "
                    "delay=10ms,jitter=5ms,reorder=25% --swap reassembler=/out/reassembler.py")
    who.run("tcplab lab exec peer sh -c 'head -c 2000000 /dev/urandom > /tmp/up.bin && "
            "sha256sum /tmp/up.bin && nc -N 10.0.9.2 9 < /tmp/up.bin'")
    who.check("labs/04-reassembly/check --swapped", swapped=True)


def test_lab05(timed: Learner) -> None:
    who = timed
    who.begin("05")
    up(who, "05")
    who.start("tcplab lab exec stack tcpdump -ni mytun 'tcp[tcpflags] & (tcp-fin|tcp-rst) != 0'")
    who.run("tcplab lab exec peer curl -s -o /dev/null http://10.0.0.2/")
    who.run("tcplab lab exec peer curl -s -o /dev/null --http1.0 http://10.0.0.2/")
    assert "TIME-WAIT" in who.run("tcplab lab exec client tcplab ss")
    got = who.run("""tcplab lab exec peer sh -c "printf 'GET /bytes/100000 HTTP/1.1\\r\\n"""
                  """Host: lab\\r\\n\\r\\n' | nc -N 10.0.0.2 80 | wc -c\"""")
    assert int(got) > 100_000
    who.run("tcplab lab exec peer nc -zv -w 2 10.0.0.2 5555", ok=False)  # refused: exit 1
    who.written()
    who.run("""grep '"state"' out/events.jsonl""")
    who.check("tcplab lab check 05")


def test_lab06(timed: Learner) -> None:
    who = timed
    who.begin("06")
    who.run("python3 -m stack.labkit test 06 --impl labs/06-retransmission/rto.py")
    up(who, "06")
    got = who.run("tcplab lab exec peer sh -c 'curl -s http://10.0.0.2/bytes/2000000 | sha256sum'")
    assert got.split()[0] == sha_of_bytes(2_000_000)
    who.run('python3 -c "import hashlib,random; print(hashlib.sha256(random.Random(2000000)'
            '.randbytes(2000000)).hexdigest())"')
    blackout(who, "10.0.0.2")
    who.written()
    who.run("""grep '"type":"retransmit"' out/events.jsonl | grep -o '"reason":"[a-z_]*"' """
            "| sort | uniq -c")
    who.run("""grep '"type":"cwnd"' out/events.jsonl | grep -o '"reason":"[a-z_]*"' """
            "| sort | uniq -c")
    out = who.check("tcplab lab check 06")
    assert out.count("draw it:") == 2, out
    who.run("cp labs/06-retransmission/rto.py out/")
    beside_lab(who, "tcplab lab exec stack python3 -m stack.labkit stack --beside-lab "
                    "--impair loss=10% --swap rto=/out/rto.py")
    got = who.run("tcplab lab exec peer sh -c 'curl -s http://10.0.9.2/bytes/2000000 | sha256sum'")
    assert got.split()[0] == sha_of_bytes(2_000_000)
    blackout(who, "10.0.9.2")
    who.check("labs/06-retransmission/check --swapped", swapped=True)


def blackout(who: Learner, stack: str) -> None:
    """Step 3: a slow download (terminal 1), a second later the blackout (terminal 2),
    and `tcplab ss` while the wire is cut (terminal 3)."""
    download = who.start(f"tcplab lab exec peer sh -c 'curl -s --limit-rate 400K "
                         f"http://{stack}/bytes/2000000 | sha256sum'")
    time.sleep(1.0)  # the README: "a second later"
    cut = who.start("tcplab lab exec peer /opt/tcplab/labs/06-retransmission/blackout.sh lab0 4",
                    ready="is cut", timeout=30)
    if stack == "10.0.0.2":
        time.sleep(2.0)  # well inside the 4 s: the timer has fired a few times
        who.run("tcplab lab exec client tcplab ss")
    assert cut.wait(30) == 0
    assert download.wait(240) == 0
    assert download.log.read_text().split()[0] == sha_of_bytes(2_000_000)  # type: ignore[attr-defined]


def test_lab07(timed: Learner) -> None:
    who = timed
    who.begin("07")
    up(who, "07")
    who.start("tcplab lab exec stack tcpdump -ni mytun 'tcp port 80'")
    reader = who.start("tcplab lab exec peer python3 /opt/tcplab/labs/07-flow-control/"
                       "slowreader.py 10.0.0.2 --pause 5", ready="connected")
    time.sleep(1.5)  # "while it pauses": the window has closed by now
    who.run("""tcplab lab exec client tcplab ss --json | grep -E '"(state|snd_wnd|inflight)"'""")
    assert reader.wait(120) == 0
    assert "byte-exact" in reader.log.read_text()  # type: ignore[attr-defined]
    who.written()
    who.run("""grep -E '"(window|retransmit)"' out/events.jsonl | tail""")
    who.check("tcplab lab check 07")
    out = who.run("tcplab lab exec peer python3 /opt/tcplab/labs/07-flow-control/slowreader.py "
                  "10.0.0.2 --pause 0 --rate 100000 --path /bytes/500000", timeout=120)
    assert "byte-exact" in out


def test_lab08(timed: Learner) -> None:
    who = timed
    who.begin("08")
    curl = ("tcplab lab exec peer curl -s -o /dev/null -w '%{speed_download} bytes/s\\n' "
            "http://10.0.0.2/bytes/5000000")
    up(who, "08")
    who.run(curl)
    who.written()
    who.run("cp out/events.jsonl out/newreno.jsonl; cp out/stack.pcap out/newreno.pcap")
    up(who, "08", 'tcplab lab up --for 08 --stack-args "--cc cubic"')
    who.run(curl)
    who.written()
    who.run("cp out/events.jsonl out/cubic.jsonl; cp out/stack.pcap out/cubic.pcap")
    who.run("python3 -m stack.labkit test 08 --impl labs/08-congestion/congestion.py")
    who.run("python3 -m stack.labkit test 08 --reference")
    who.run("cp labs/08-congestion/congestion.py out/")
    beside_lab(who, "tcplab lab exec stack python3 -m stack.labkit stack --beside-lab --impair "
                    "loss=1%,delay=20ms --swap congestion=/out/congestion.py")
    who.run(curl.replace("10.0.0.2", "10.0.9.2"))
    who.written("swap.pcap", "swap-events.jsonl")
    who.run("cp out/swap-events.jsonl out/mine.jsonl; cp out/swap.pcap out/mine.pcap")
    out = who.check("tcplab lab check 08")
    assert "draw them:" in out and "mine: judged" in out


def test_lab09(timed: Learner) -> None:
    who = timed
    who.begin("09")
    up(who, "09")
    assert "exit 7" in who.run('tcplab lab exec client curl -s -m 3 http://peer/; echo "exit $?"')
    assert "Hello from peer" in who.run("tcplab lab exec client tcplab run -- curl -s http://peer/")
    assert who.run("tcplab lab exec client sh -c 'echo hello | tcplab run -- nc -N peer 7'") \
        == "hello\n"
    who.run("tcplab lab exec client sh -c 'strace -f -e trace=socket,connect tcplab run -- "
            "curl -s -o /dev/null http://peer/ 2>&1 | tail'")
    who.written()
    who.run("""grep '"SYN-SENT"' out/events.jsonl | tail -2""")
    who.run("python3 -m stack.labkit test 09 --impl labs/09-shim")
    who.run('for f in echo_server.c echo_client.c; do tcplab lab exec client sh -c "cat > '
            '/tmp/$f" < labs/09-shim/$f; done')
    who.run("tcplab lab exec client sh -c 'cd /tmp && gcc -Wall -O1 -o echo_server echo_server.c "
            "&& gcc -Wall -O1 -o echo_client echo_client.c'")
    who.start("tcplab lab exec client tcplab run -- /tmp/echo_server 7007", ready="listening")
    assert who.run("tcplab lab exec peer sh -c 'echo hello from the peer | nc -N 10.0.0.2 7007'") \
        == "hello from the peer\n"
    assert "10.0.0.2:7007" in who.run("tcplab lab exec client tcplab ss")
    assert who.run("tcplab lab exec client sh -c 'echo hello from the client | tcplab run -- "
                   "/tmp/echo_client peer 7'") == "hello from the client\n"
    sums = who.run("tcplab lab exec client sh -c 'head -c 1000000 /dev/urandom > /tmp/r; "
                   "sha256sum < /tmp/r; tcplab run -- /tmp/echo_client peer 7 < /tmp/r | sha256sum'")
    first, second = sums.splitlines()
    assert first == second
    who.run("tcplab lab exec client sh -c 'echo hi | strace -f -e trace=connect tcplab run -- "
            "/tmp/echo_client peer 7'")
    who.check("tcplab lab check 09")


def test_lab10(timed: Learner) -> None:
    who = timed
    who.begin("10")
    up(who, "10")
    victim = who.start("tcplab lab exec peer nc 10.0.0.2 7", stdin=True)
    assert victim.stdin is not None and victim.stdout is not None

    def type_line(text: str) -> str:
        assert victim.stdin is not None and victim.stdout is not None
        victim.stdin.write(text + "\n")
        victim.stdin.flush()
        return victim.stdout.readline()

    assert type_line("hello") == "hello\n"
    who.run("tcplab lab exec peer ss -tn dst 10.0.0.2")
    assert "done" in who.run("tcplab lab exec peer python3 /opt/tcplab/labs/10-attacks/"
                             "rst_inject.py --dport 7")
    assert type_line("still here") == "still here\n"  # "still echoed?"
    who.written()
    who.run("""tcplab lab exec stack sh -c "tcpdump -r /out/stack.pcap -n 'tcp dst port 7 and """
            """tcp[tcpflags] & tcp-rst != 0' | wc -l\"""")
    who.run("grep -c challenge_ack out/events.jsonl", ok=False)  # the check judges
    who.run("grep rst_out_of_window out/events.jsonl | tail -2")
    who.run("tcplab lab exec stack tcpdump -r /out/stack.pcap -nS 'tcp port 7 and src 10.0.0.2'")
    assert type_line("one more") == "one more\n"  # step 4: "type a line"
    who.written()
    last = who.run("tcplab lab exec stack tcpdump -r /out/stack.pcap -nS "
                   "'tcp port 7 and src 10.0.0.2' | tail -1")
    ack = re.search(r"ack (\d+)", last)
    assert ack, last
    who.run("tcplab lab exec peer python3 /opt/tcplab/labs/10-attacks/rst_inject.py --dport 7 "
            "--seq ACK_NUMBER --count 1", substitute={"ACK_NUMBER": ack.group(1)})
    victim.stdin.write("anyone there?\n")  # "type in terminal 1 again: nc ends"
    victim.stdin.flush()
    assert victim.wait(20) is not None
    flood = who.start("tcplab lab exec peer python3 /opt/tcplab/labs/10-attacks/synflood.py "
                      "--dport 80 --count 4000 --rate 1000")
    time.sleep(1.5)  # the queue is full after about a second
    out = who.run("tcplab lab exec peer curl -s -m 10 -o /dev/null -w 'connected in "
                  "%{time_connect} s, status %{http_code}\\n' http://10.0.0.2/")
    assert "status 200" in out
    who.run("tcplab lab exec client tcplab ss --json | grep syn_queue")
    assert flood.wait(60) == 0
    who.check("tcplab lab check 10")


def test_lab11(timed: Learner) -> None:
    who = timed
    who.begin("11")
    up(who, "11")
    who.run("tcplab lab exec peer ip -6 addr show dev lab0")
    assert "fd00:0:0:1::/64 via fd00:0:0:2::1" in who.run("tcplab lab exec peer ip -6 route")
    assert "3 received" in who.run("tcplab lab exec peer ping -6 -c 3 fd00:0:0:1::2")
    assert "<html>" in who.run("tcplab lab exec peer curl -s 'http://[fd00:0:0:1::2]/'")
    who.written()
    assert "flowlabel" in who.run("tcplab lab exec stack tcpdump -r /out/stack.pcap -n -v ip6")
    who.run("tcplab lab exec stack tcpdump -r /out/stack.pcap -n -x -c 2 'ip6 and tcp'")
    tool = "tcplab lab exec peer python3 /opt/tcplab/labs/11-ipv6/exthdr.py"
    answers = {"": "echo reply", " --option 0x1e": "echo reply",
               " --option 0x5e": "discarded silently",
               " --option 0x9e": "code 2 (unrecognized IPv6 option), pointer 42",
               " --option 0xde": "code 2 (unrecognized IPv6 option), pointer 42"}
    for option, want in answers.items():
        assert want in who.run(f"{tool} --header dst{option}")
    assert "echo reply from fd00:0:0:1::2" in who.run(f"{tool} --header hop --option 0x1e")
    # Hop-by-Hop options are examined by the router on the way: it answers first
    assert "Parameter Problem from fd00:0:0:2::1" in who.run(f"{tool} --header hop --option 0x9e")
    who.written()
    assert "ipv6_unknown_option" in who.run("grep ipv6_unknown_option out/events.jsonl")
    who.run("tcplab lab exec stack tcpdump -r /out/stack.pcap -n -v 'icmp6 and ip6[40] == 4'")
    who.run("python3 -m stack.labkit test 11 --impl labs/11-ipv6/options.py")
    who.run("cp labs/11-ipv6/options.py out/")
    who.start("tcplab lab exec stack python3 -m stack.labkit stack --beside-lab "
              "--swap options=/out/options.py", ready="ready:", timeout=60)
    who.run("tcplab lab exec peer ip -6 route replace fd00:0:0:9::/64 via fd00:0:0:2::1")
    swapped = f"{tool} --dst fd00:0:0:9::2 --header dst"
    assert "echo reply" in who.run(f"{swapped} --option 0x1e")
    assert "discarded silently" in who.run(f"{swapped} --option 0x5e")
    assert "pointer 42" in who.run(f"{swapped} --option 0x9e")
    who.check("labs/11-ipv6/check --swapped", swapped=True)
    download = ("""tcplab lab exec peer sh -c "curl -s 'http://[fd00:0:0:1::2]/bytes/300000' """
                """| sha256sum\"""")
    assert sha_of_bytes(300000) in who.run(download)
    who.run("tcplab lab exec stack ip link set dev lab0 mtu 1280")
    assert sha_of_bytes(300000) in who.run(download)
    who.written()
    assert '"mtu":1280' in who.run("grep pmtu out/events.jsonl")
    who.run("tcplab lab exec stack tcpdump -r /out/stack.pcap -n -v 'icmp6 and ip6[40] == 2'")
    who.run("tcplab lab exec stack ip link set dev lab0 mtu 1450")
    assert "<html>" in who.run("tcplab lab exec peer curl -s http://10.0.0.2/")
    assert "<html>" in who.run("tcplab lab exec peer curl -s 'http://[fd00:0:0:1::2]/'")
    assert who.run("tcplab lab exec peer sh -c 'printf \"hello over IPv6\\n\" | nc -6 -N -w 5 "
                   "fd00:0:0:1::2 7'") == "hello over IPv6\n"
    assert "[::]:80" in who.run("tcplab lab exec client tcplab ss")
    server = who.start("tcplab lab exec client tcplab run -- python3 "
                       "/opt/tcplab/labs/11-ipv6/dualserver.py", ready="listening on [::]:8080")
    assert who.run("tcplab lab exec peer sh -c 'printf \"over IPv4\\n\" | nc -N -w 5 "
                   "10.0.0.2 8080'") == "you are ::ffff:10.0.1.20, you said 'over IPv4'\n"
    assert who.run("tcplab lab exec peer sh -c 'printf \"over IPv6\\n\" | nc -6 -N -w 5 "
                   "fd00:0:0:1::2 8080'") == "you are fd00:0:0:2::20, you said 'over IPv6'\n"
    assert server.wait(timeout=30) == 0
    log = server.log.read_text()  # type: ignore[attr-defined]
    assert "accepted ::ffff:10.0.1.20" in log and "(IPv4, v4-mapped) on ::ffff:10.0.0.2" in log, log
    assert "accepted fd00:0:0:2::20" in log and "(IPv6) on fd00:0:0:1::2" in log, log
    who.check("tcplab lab check 11")
