"""The ceiling of any Python stack on TUN: a process that only relays packets.

    python -m stack.tools.tunrelay NEAR FAR (--offload | --no-offload)

Opens two TUN devices, NEAR (with the kernel address 10.0.0.1/24 on it, like the
stack's mytun) and FAR (no address: `tcplab bench` moves it into a namespace of its
own and gives it 10.0.0.2), prints ``ready`` and then copies every packet read from
one to the other: one epoll, ``os.read`` until the fd is drained, one ``os.write``
per packet, as DESIGN.md describes. With ``--offload`` both devices carry the
virtio-net header and TSO, and the header is relayed unchanged, so 64 KiB segments
cross as one read and one write. Nothing is parsed and nothing is copied in Python.
It stops when stdin closes or on SIGTERM/SIGINT.

Whatever the stack does per packet comes on top of this cost, so `tcplab bench`
prints the stack's figures as a ratio of the relay's beside the ratio of the kernel's.
"""

from __future__ import annotations

import os
import select
import signal
import sys

from stack.io.tun import READ_SIZE, TunDevice, TunError

BATCH = 64


def relay(near: int, far: int, stop_fd: int) -> dict[str, int]:
    """Copy packets both ways until ``stop_fd`` becomes readable (EOF on stdin)."""
    ep = select.epoll()
    for fd in (near, far, stop_fd):
        ep.register(fd, select.EPOLLIN)
    other = {near: far, far: near}
    counts = {"packets": 0, "dropped": 0}
    read, write = os.read, os.write
    try:
        while True:
            for fd, _ in ep.poll():
                if fd == stop_fd:
                    return counts
                out = other[fd]
                for _ in range(BATCH):
                    try:
                        packet = read(fd, READ_SIZE)
                    except BlockingIOError:
                        break
                    try:
                        write(out, packet)
                    except OSError:  # full queue (EAGAIN/ENOBUFS): dropped like a NIC would
                        counts["dropped"] += 1
                    counts["packets"] += 1
    finally:
        ep.close()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[2] not in ("--offload", "--no-offload"):
        print("usage: python -m stack.tools.tunrelay NEAR FAR (--offload | --no-offload)",
              file=sys.stderr)
        return 2
    offload = argv[2] == "--offload"
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        near = TunDevice.open(argv[0], offload=offload, kernel_address="10.0.0.1/24")
        far = TunDevice.open(argv[1], offload=offload, kernel_address=None)
    except TunError as exc:
        print(f"tunrelay: {exc}", file=sys.stderr)
        return 1
    if offload and not (near.vnet_hdr and far.vnet_hdr):
        print("tunrelay: offloads refused by the kernel", file=sys.stderr)
        return 1
    print("ready", flush=True)
    try:
        counts = relay(near.fd, far.fd, sys.stdin.fileno())
    except KeyboardInterrupt:
        counts = {}
    finally:
        near.close()
        far.close()
    print(f"relayed {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
