"""Container tests: one lab per test session, built and started the way a learner does.

The ``lab`` fixture runs the same steps as ``tcplab lab up`` (stack/tools/lab.py): make sure
the base image exists (pull, else debootstrap + docker import), build the image from
the repository's Dockerfile with the repository's docker-compose.yml, start ``stack``,
wait until it answers ping (its healthcheck), start ``peer`` and ``client``. It differs
only in what keeps a test run apart from a learner's running lab: its own compose
project (``tcplab-test-<pid>-<random>``), a free /24 for the docker network, and an output
folder under pytest's tmp_path.

Why our own fixture and not pytest-docker:

* pytest-docker's value is finding published host ports and polling them; this lab
  publishes none (all networks are ``internal: true``) and is probed from inside the
  containers, so that part would go unused;
* what the lab needs before ``up`` (the base-image fallback where no registry answers,
  removing leftovers of killed runs by compose label, choosing a subnet no other docker
  network holds) and after a failure (every service's logs in the report) is ours
  anyway, and stack/tools/lab.py already has it: the fixture reuses the code that
  ``tcplab lab up`` runs, so that code is tested too;
* one dependency less for CI, and either compose spelling (v1 ``docker-compose`` here,
  v2 ``docker compose`` elsewhere) without configuration.

Teardown (``down --volumes`` plus removal by label) runs in a finalizer, so also when
a test or the start-up fails. ``TCPLAB_KEEP_LAB=1`` leaves the lab running to debug.

Without a Docker engine these tests skip; with ``TCPLAB_REQUIRE_DOCKER=1`` (CI) they fail.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stack.tools.lab import Lab, LabError, docker_available, free_net_prefix  # noqa: E402

TEST_PROJECT_PREFIX = "tcplab-test-"
SERVICES = ("stack", "peer", "client")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.docker)


def _owner_alive(project: str) -> bool:
    """A test project is named tcplab-test-<pid>-<hex> after the pytest process that owns
    it: one whose owner still runs belongs to a test run going on beside this one (two
    checkouts' CI on one engine) and is not a leftover."""
    pid = project[len(TEST_PROJECT_PREFIX) :].split("-")[0]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_test_leftovers() -> None:
    """Containers, networks and volumes of earlier (killed) test runs, by compose label;
    never those of a run still going on (`_owner_alive`)."""
    label = "com.docker.compose.project"
    fmt = f'{{{{.ID}}}} {{{{.Label "{label}"}}}}'
    vfmt = f'{{{{.Name}}}} {{{{.Label "{label}"}}}}'  # volumes have names, not IDs
    for kind, listing in (
        ("container", ["docker", "ps", "-a", "--filter", f"label={label}", "--format", fmt]),
        ("network", ["docker", "network", "ls", "--filter", f"label={label}", "--format", fmt]),
        ("volume", ["docker", "volume", "ls", "--filter", f"label={label}", "--format", vfmt]),
    ):
        out = subprocess.run(listing, capture_output=True, text=True, check=False).stdout
        ids = []
        for line in out.splitlines():
            parts = line.split()
            if (
                len(parts) == 2
                and parts[1].startswith(TEST_PROJECT_PREFIX)
                and not _owner_alive(parts[1])
            ):
                ids.append(parts[0])
        if ids:
            force = ["-f"] if kind != "network" else []
            subprocess.run(["docker", kind, "rm", *force, *ids], capture_output=True, check=False)


def _report(config: pytest.Config, text: str) -> None:
    """Print past pytest's output capture (for teardown diagnostics)."""
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            print(text, file=sys.stderr, flush=True)
    else:
        print(text, file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def docker_engine() -> str:
    ok, why = docker_available()
    if not ok:
        if os.environ.get("TCPLAB_REQUIRE_DOCKER") == "1":
            pytest.fail(f"TCPLAB_REQUIRE_DOCKER=1 but no Docker engine: {why}")
        pytest.skip(f"no Docker engine: {why}")
    return why


@pytest.fixture(scope="session")
def lab(
    docker_engine: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Lab]:
    remove_test_leftovers()
    out = tmp_path_factory.mktemp("lab-out")
    project = f"{TEST_PROJECT_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
    env = {
        "TCPLAB_NET_PREFIX": free_net_prefix(),
        "TCPLAB_OUT": str(out),
        "TCPLAB_STACK_ARGS": os.environ.get("TCPLAB_TEST_STACK_ARGS", ""),
        # An image of this checkout's own: another checkout's tests (or a learner's lab)
        # on the same Docker engine build tcplab:latest from other sources.
        "TCPLAB_IMAGE": os.environ.get("TCPLAB_IMAGE")
        or f"tcplab-test:{hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]}",
    }
    the_lab = Lab(root=ROOT, project=project, env=env)
    timings: dict[str, float] = {}
    came_up = False
    try:
        started = time.monotonic()
        the_lab.build()
        timings["build"] = time.monotonic() - started
        started = time.monotonic()
        the_lab.up(build=False, timeout=float(os.environ.get("TCPLAB_TEST_UP_TIMEOUT", "180")))
        timings["up"] = time.monotonic() - started
        _report(
            request.config,
            f"\nlab {project} on {env['TCPLAB_NET_PREFIX']}.0/24 "
            f"(build {timings['build']:.1f} s, up {timings['up']:.1f} s), output in {out}",
        )
        came_up = True
        yield the_lab
    except LabError as exc:
        pytest.fail(f"the lab did not come up: {exc}", pytrace=False)
    finally:
        if not came_up or request.session.testsfailed:
            logs = "\n".join(f"==== {s}\n{the_lab.logs(s, tail=80)}" for s in SERVICES)
            (out / "compose.log").write_text(logs)
            _report(request.config, f"\n---- lab logs (also in {out}/compose.log)\n{logs}")
        if os.environ.get("TCPLAB_KEEP_LAB") == "1":
            _report(request.config, f"TCPLAB_KEEP_LAB=1: lab {project} left running")
        else:
            the_lab.remove_leftovers()


@pytest.fixture(scope="session")
def lab_out(lab: Lab) -> Path:
    return lab.out_dir
