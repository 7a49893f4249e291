#!/usr/bin/env bash
# The one test command (README "Run the tests"): installs what it needs, then runs
# lint, type checks, unit, namespace (root) and container (Docker) tests.
#
#   sudo scripts/test.sh            everything
#   sudo scripts/test.sh unit       lint + types + unit tests only (no root needed)
#   sudo scripts/test.sh integration | docker | shim
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WHAT=${1:-all}
VENV=${TCPLAB_VENV:-$ROOT/.venv}
step() { printf '\n==> %s\n' "$*"; }
SECONDS=0

APT_PACKAGES=(python3-venv iproute2 iputils-ping tcpdump tshark iperf3 socat netcat-openbsd
              curl wget gcc make libc6-dev debootstrap strace nftables
              # the real-program matrix (tests/integration/test_programs.py)
              util-linux nginx lighttpd redis-server redis-tools memcached libmemcached-tools
              openssh-server openssh-client rsync dnsmasq-base bind9-dnsutils knot-dnsutils
              wrk apache2-utils nodejs default-jre-headless postgresql postgresql-client)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        step "apt-get install ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        # The servers among them must not start as services on this machine (the tests
        # run their own copies in namespaces): a policy-rc.d for the install's length.
        policy=/usr/sbin/policy-rc.d
        if [ ! -e $policy ]; then
            printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy
            trap 'rm -f $policy' EXIT
        fi
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
        if [ "$(trap -p EXIT)" ]; then rm -f $policy; trap - EXIT; fi
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV"
    python3 -m venv "$VENV"
fi
step "pip install -e .[test]"
"$VENV/bin/pip" install -q --disable-pip-version-check -e ".[test]"
PY=$VENV/bin/python
export PATH="$VENV/bin:$PATH"

if [ -f shim/Makefile ]; then
    step "building the shim (make -C shim)"
    make -s -C shim
fi

run_pytest() {
    # pytest exits 5 when it collected nothing: that is a failure here.
    local rc=0
    "$PY" -m pytest -p no:cacheprovider "$@" || rc=$?
    if [ $rc -eq 5 ]; then echo "error: no tests collected for: $*" >&2; return 1; fi
    return $rc
}

status=0
if [[ $WHAT == all || $WHAT == unit ]]; then
    step "ruff check"
    "$VENV/bin/ruff" check stack tests || status=1
    step "mypy stack"
    "$VENV/bin/mypy" stack || status=1
    step "unit tests"
    run_pytest -q tests/unit || status=1
    echo "unit part done at ${SECONDS}s"
fi
if [[ $WHAT == all || $WHAT == shim ]] && [ -f shim/Makefile ]; then
    step "shim C tests under AddressSanitizer (make -C shim test)"
    make -s -C shim test || status=1
fi
if [[ $WHAT == all || $WHAT == integration ]]; then
    step "integration tests (network namespaces, TUN, the Linux kernel as peer)"
    TCPLAB_REQUIRE_ROOT=1 run_pytest -q -rs tests/integration || status=1
    step "end-to-end tests again with offloads off (plain packets, checksums in Python)"
    TCPLAB_REQUIRE_ROOT=1 TCPLAB_TEST_OFFLOAD=off run_pytest -q -rs tests/integration/test_stack_e2e.py tests/integration/test_ipv6_e2e.py || status=1
    echo "integration part done at ${SECONDS}s"
fi
if [[ $WHAT == all || $WHAT == docker ]] && [ -d tests/docker ] && ls tests/docker/test_*.py >/dev/null 2>&1; then
    step "container tests (docker compose lab)"
    TCPLAB_REQUIRE_DOCKER=1 run_pytest -q -rs tests/docker || status=1
    echo "docker part done at ${SECONDS}s"
fi
step "finished in ${SECONDS}s: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
