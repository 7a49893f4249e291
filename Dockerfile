# The tcplab image: one image for all lab containers (stack, peer, client).
#
#   docker compose up                     (builds it through docker-compose.yml)
#   docker build -t tcplab .              (by hand)
#   docker build --build-arg BASE=... .   (another Debian-like base)
#   docker build --build-arg WITH_TSHARK=yes .   (adds tshark and its libraries: a much bigger image)
#
# Where no registry can be reached, scripts/base-image.sh creates debian:bookworm-slim
# locally first (debootstrap + docker import); `tcplab lab up` runs it for you.
# Python dependencies come from Debian packages (python3-pyroute2), never from PyPI,
# so the build needs no certificate beyond what Debian's apt brings.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

ARG WITH_TSHARK=no
ARG DEBIAN_FRONTEND=noninteractive

# Tools of the lab. python3-pip and python3-setuptools only install the project below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        python3 python3-pyroute2 python3-pip python3-setuptools \
        iproute2 iputils-ping ethtool tcpdump netcat-openbsd curl wget socat iperf3 \
        gcc make libc6-dev procps strace less nano nftables \
 && if [ "$WITH_TSHARK" = yes ]; then apt-get install -y --no-install-recommends tshark; fi \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/tcplab
ENV TCPLAB_SHIM=/usr/local/lib/tcplab/libsocketoverride.so
CMD ["bash"]

# The project: everything .dockerignore lets through (pyproject.toml, README.md, stack/,
# shim/, docker/). Not labs/: docker-compose.yml mounts ./labs at /opt/tcplab/labs in every
# container, so a learner's edit there needs no rebuild. Only the step below reruns when
# the sources change (seconds), never apt.
COPY . ./

# 1. The Python package. --no-deps: its one dependency (pyroute2) is Debian's.
#    --break-system-packages: PEP 668 guard of bookworm; this image is the system.
# 2. The LD_PRELOAD shim (to $TCPLAB_SHIM), built here and again (only if the sources
#    changed) when the stack container starts; see docker/build-shim.sh.
# 3. The lab's small C clients (tcpcat) and helpers (lab-loss).
# `make clean` first: binaries built on the host (another libc, perhaps) may have come
# along in the build context and would look up to date.
# One RUN: every step costs seconds of layer commit on some storage drivers.
RUN test -f README.md || echo "# tcplab" > README.md \
 && python3 -m pip install --no-deps --no-build-isolation --no-cache-dir \
        --break-system-packages --root-user-action=ignore . \
 && rm -rf build ./*.egg-info \
 && { [ ! -f shim/Makefile ] || make -s -C shim clean; } \
 && docker/build-shim.sh \
 && make -C docker/clients clean install \
 && install -m 0755 docker/lab-loss /usr/local/bin/lab-loss
