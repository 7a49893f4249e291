"""The TUN driver: open ``/dev/net/tun``, negotiate offloads, configure the link.

A TUN device is a network interface whose "wire" is a file descriptor: every IP
packet the kernel routes to the interface can be ``read()`` from the fd, and every
packet ``write()``-n to the fd is received by the kernel as if it came in on the
interface. The stack owns addresses on the far side of that wire (10.0.0.2 and
fd00:0:0:1::2); the kernel's side of the link gets ``kernel_address`` (10.0.0.1/24)
and ``kernel_address6`` (fd00:0:0:1::1/64).

A TUN is a layer-3 link: packets carry no link-layer header and there are no
link-layer addresses, so IPv6 Neighbor Discovery (RFC 4861) has nothing to resolve.
The kernel marks the device NOARP and sends packets for the on-link prefix straight
to the fd; its IPv6 address is added without Duplicate Address Detection, which
has no one to ask. (The kernel may still send Router Solicitations and MLD reports
to the link: the stack discards them, RFC 4443 section 2.4 (b).)

With ``offload=True`` the device is opened with ``IFF_VNET_HDR`` and told
(``TUNSETOFFLOAD``) that we accept partial checksums (``TUN_F_CSUM``) and large TCP
segments over IPv4 and IPv6 (``TUN_F_TSO4``, ``TUN_F_TSO6``). Every read and write
then starts with a 10-byte ``virtio_net_hdr`` (see ``stack/io/virtio.py``) and the
kernel hands over/accepts TCP segments of up to 64 KiB, which is what makes a Python
stack fast enough to be fun. Without it (the learner's path) every packet is a plain
IP packet of at most MTU bytes.

Only ever open this inside a network namespace or container made for it.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import platform
import socket
import struct
from collections.abc import Sequence
from typing import Any

from stack.io.virtio import VNET_HDR_LEN

# --- ioctl numbers ------------------------------------------------------------------
# <asm-generic/ioctl.h>:  _IOC(dir, type, nr, size) =
#     dir << _IOC_DIRSHIFT | size << _IOC_SIZESHIFT | type << _IOC_TYPESHIFT | nr
# with nr in bits 0-7, type in bits 8-15, size in bits 16-29 (14 bits) and dir in bits
# 30-31, _IOC_WRITE = 1, _IOC_READ = 2. _IOW(type, nr, T) = _IOC(_IOC_WRITE, type, nr,
# sizeof(T)). PowerPC, MIPS and SPARC use a 13-bit size and a 3-bit dir at bit 29 with
# _IOC_WRITE = 4, _IOC_READ = 2 (their <asm/ioctl.h>).
if platform.machine().startswith(("ppc", "powerpc", "mips", "sparc")):
    _IOC_SIZEBITS, _IOC_WRITE, _IOC_READ = 13, 4, 2
else:
    _IOC_SIZEBITS, _IOC_WRITE, _IOC_READ = 14, 1, 2
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = 8
_IOC_SIZESHIFT = 16
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS


def _ioc(direction: int, type_: str, nr: int, size: int) -> int:
    return (
        (direction << _IOC_DIRSHIFT)
        | (size << _IOC_SIZESHIFT)
        | (ord(type_) << _IOC_TYPESHIFT)
        | (nr << _IOC_NRSHIFT)
    )


def _iow(type_: str, nr: int, size: int) -> int:
    return _ioc(_IOC_WRITE, type_, nr, size)


def _ior(type_: str, nr: int, size: int) -> int:
    return _ioc(_IOC_READ, type_, nr, size)


_SIZEOF_INT = 4
# <linux/if_tun.h>
TUNSETIFF = _iow("T", 202, _SIZEOF_INT)  # 0x400454ca on x86/arm
TUNGETFEATURES = _ior("T", 207, _SIZEOF_INT)  # 0x800454cf
TUNSETOFFLOAD = _iow("T", 208, _SIZEOF_INT)  # 0x400454d0 (argument by value)
TUNSETVNETHDRSZ = _iow("T", 216, _SIZEOF_INT)  # 0x400454d8 (argument by pointer)

IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000

TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
#: What we ask for, then (if an old kernel refuses) what we settle for.
OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
OFFLOADS_V4_ONLY = TUN_F_CSUM | TUN_F_TSO4
# <linux/if_addr.h>: no Duplicate Address Detection for this address.
IFA_F_NODAD = 0x02

IFNAMSIZ = 16
# struct ifreq: char ifr_name[IFNAMSIZ]; union { short ifr_flags; ...; struct ifmap } —
# 40 bytes on 64-bit Linux (the union is 24 bytes); only name and flags matter here.
_IFREQ = struct.Struct("16sH22x")

#: One read: a 64 KiB (TSO) IP packet plus the vnet header, with room to spare.
READ_SIZE = 65536 + VNET_HDR_LEN + 256

_TUN_PATH = "/dev/net/tun"


TX_QUEUE_LEN = 4000


class TunError(Exception):
    """A TUN problem described in one human line."""


def _describe(err: OSError) -> str:
    return os.strerror(err.errno) if err.errno else str(err)


def _iproute() -> Any:
    try:
        from pyroute2 import IPRoute
    except ImportError as exc:  # pragma: no cover - pyroute2 is a hard dependency
        raise TunError("pyroute2 is not installed (pip install pyroute2)") from exc
    return IPRoute()


def _link_index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


class TunDevice:
    """An open TUN device. Create with :meth:`TunDevice.open`."""

    def __init__(self, fd: int, name: str, *, created: bool, vnet_hdr: bool, mtu: int,
                 offload_error: str | None = None, offloads: int = 0) -> None:
        self.fd = fd
        self.name = name
        self.created = created
        self.vnet_hdr = vnet_hdr
        self.mtu = mtu
        #: Why offloads were requested but are off (None if not requested or on).
        self.offload_error = offload_error
        #: The TUN_F_* flags the kernel accepted (0 without the vnet header).
        self.offloads = offloads
        #: Why the kernel side has no IPv6 address (None if it has or none was asked).
        self.ipv6_error: str | None = None
        self.rx_packets = 0
        self.tx_packets = 0
        #: Packets dropped on write because the kernel queue was full (EAGAIN/ENOBUFS)
        #: or the link was down (EIO).
        self.tx_dropped = 0

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        name: str = "mytun",
        *,
        offload: bool,
        kernel_address: str | None = "10.0.0.1/24",
        kernel_address6: str | None = None,
        mtu: int = 1500,
    ) -> TunDevice:
        """Open (creating if needed) TUN ``name``, configure it and bring it up.

        ``kernel_address`` ("A.B.C.D/LEN") and ``kernel_address6`` ("X:Y::Z/LEN") are
        added to the kernel's side of the link unless None or already there. Raises
        :class:`TunError`; a kernel that refuses IPv6 on the link (IPv6 disabled in
        the namespace or container) is not an error: :attr:`ipv6_error` says why.
        """
        if not name or len(name.encode()) >= IFNAMSIZ or "/" in name or " " in name:
            raise TunError(f"invalid interface name {name!r} (1-{IFNAMSIZ - 1} characters)")
        if not 68 <= mtu <= 65535:
            raise TunError(f"invalid MTU {mtu} (68-65535)")
        addr: ipaddress.IPv4Interface | None = None
        if kernel_address is not None:
            try:
                addr = ipaddress.IPv4Interface(kernel_address)
            except ValueError as exc:
                raise TunError(f"invalid kernel address {kernel_address!r}: {exc}") from exc
        addr6: ipaddress.IPv6Interface | None = None
        if kernel_address6 is not None:
            try:
                addr6 = ipaddress.IPv6Interface(kernel_address6)
            except ValueError as exc:
                raise TunError(f"invalid kernel IPv6 address {kernel_address6!r}: {exc}") from exc

        ipr = _iproute()
        try:
            existed = _link_index(ipr, name) is not None
            offload_error: str | None = None
            try:
                fd, real_name, offloads = cls._open_fd(name, offload)
            except _OffloadRefused as refused:
                offload_error = str(refused)
                fd, real_name, offloads = cls._open_fd(name, False)
            dev = cls(fd, real_name, created=not existed, vnet_hdr=bool(offloads), mtu=mtu,
                      offload_error=offload_error, offloads=offloads)
            try:
                dev._configure(ipr, addr, addr6)
            except BaseException:
                dev._close_with(ipr)
                raise
            return dev
        finally:
            ipr.close()

    @staticmethod
    def _open_fd(name: str, offload: bool) -> tuple[int, str, int]:
        """Open the device; returns the fd, its name and the offloads in force."""
        try:
            fd = os.open(_TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise TunError(f"cannot open {_TUN_PATH}: no such device "
                           "(load the tun module: modprobe tun)") from exc
        except PermissionError as exc:
            raise TunError(f"cannot open {_TUN_PATH}: permission denied "
                           "(run as root or with CAP_NET_ADMIN)") from exc
        except OSError as exc:
            raise TunError(f"cannot open {_TUN_PATH}: {_describe(exc)}") from exc
        try:
            flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
            try:
                res = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), flags))
            except OSError as exc:
                if exc.errno == errno.EPERM:
                    msg = (f"cannot create {name}: permission denied "
                           "(run as root or with CAP_NET_ADMIN)")
                elif exc.errno == errno.EBUSY:
                    msg = f"cannot attach to {name}: it is in use by another process"
                elif exc.errno == errno.EINVAL:
                    msg = (f"cannot attach to {name}: an interface of that name exists "
                           "and is not a TUN device with the same settings")
                else:
                    msg = f"cannot create {name}: {_describe(exc)}"
                raise TunError(msg) from exc
            real_name = _IFREQ.unpack(res)[0].rstrip(b"\0").decode()
            offloads = 0
            if offload:
                try:
                    fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
                    try:
                        fcntl.ioctl(fd, TUNSETOFFLOAD, OFFLOADS)
                        offloads = OFFLOADS
                    except OSError as exc:
                        if exc.errno != errno.EINVAL:
                            raise
                        # A kernel without IPv6 TSO on TUN: IPv4's is still worth having.
                        fcntl.ioctl(fd, TUNSETOFFLOAD, OFFLOADS_V4_ONLY)
                        offloads = OFFLOADS_V4_ONLY
                except OSError as exc:
                    raise _OffloadRefused(
                        f"kernel refused TUN offloads (csum+tso4): {_describe(exc)}"
                    ) from exc
            os.set_blocking(fd, False)
        except BaseException:
            os.close(fd)
            raise
        return fd, real_name, offloads

    def _configure(self, ipr: Any, addr: ipaddress.IPv4Interface | None,
                   addr6: ipaddress.IPv6Interface | None = None) -> None:
        try:
            index = _link_index(ipr, self.name)
            if index is None:
                raise TunError(f"{self.name} vanished right after it was created")
            # A longer queue than the default 500 packets: the kernel side bursts faster
            # than a Python reader drains, and TUN drops what does not fit.
            ipr.link("set", index=index, mtu=self.mtu, txqlen=TX_QUEUE_LEN)
            if addr is not None:
                present = {
                    (m.get_attr("IFA_ADDRESS"), m["prefixlen"])
                    for m in ipr.get_addr(index=index, family=socket.AF_INET)
                }
                wanted = (str(addr.ip), addr.network.prefixlen)
                if wanted not in present:
                    try:
                        ipr.addr("add", index=index, address=wanted[0], prefixlen=wanted[1])
                    except Exception as exc:
                        if getattr(exc, "code", None) != errno.EEXIST:
                            raise
            if addr6 is not None:
                self.ipv6_error = self._add_ipv6(ipr, index, addr6)
            ipr.link("set", index=index, state="up")
        except TunError:
            raise
        except Exception as exc:
            code = getattr(exc, "code", None)
            why = os.strerror(code) if isinstance(code, int) else str(exc)
            raise TunError(f"cannot configure {self.name}: {why}") from exc

    @staticmethod
    def _add_ipv6(ipr: Any, index: int, addr6: ipaddress.IPv6Interface) -> str | None:
        """Add the kernel side's IPv6 address (no DAD: a TUN has no neighbours to ask,
        RFC 4862 section 5.4 is moot on it). Returns why not, or None."""
        present = {
            (m.get_attr("IFA_ADDRESS"), m["prefixlen"])
            for m in ipr.get_addr(index=index, family=socket.AF_INET6)
        }
        wanted = (str(addr6.ip), addr6.network.prefixlen)
        if wanted in present:
            return None
        try:
            ipr.addr("add", index=index, address=wanted[0], prefixlen=wanted[1],
                     family=socket.AF_INET6, flags=IFA_F_NODAD)
        except Exception as exc:
            code = getattr(exc, "code", None)
            if code == errno.EEXIST:
                return None
            why = os.strerror(code) if isinstance(code, int) else str(exc)
            # EACCES/EPERM: net.ipv6.conf.*.disable_ipv6 is set (the usual in containers).
            return f"cannot add {addr6} to the kernel side: {why} (is IPv6 disabled here?)"
        return None

    # ------------------------------------------------------------------ I/O
    def fileno(self) -> int:
        return self.fd

    def read_batch(self, max_packets: int = 64) -> list[bytes]:
        """Read up to ``max_packets`` packets without blocking (possibly none).

        Each item is one raw read: the vnet header followed by the IP packet when
        :attr:`vnet_hdr` is set, else just the IP packet.
        """
        out: list[bytes] = []
        fd = self.fd
        read = os.read
        try:
            while len(out) < max_packets:
                out.append(read(fd, READ_SIZE))
        except BlockingIOError:
            pass
        except OSError as exc:
            if not out:
                raise TunError(f"read from {self.name} failed: {_describe(exc)}") from exc
        self.rx_packets += len(out)
        return out

    def write(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """Write one packet given as pieces (vnet header first when :attr:`vnet_hdr`).

        A full kernel queue (EAGAIN, ENOBUFS) or a down link (EIO) drops the packet,
        counted in :attr:`tx_dropped`, as a real NIC would.
        """
        try:
            os.writev(self.fd, parts)
        except (BlockingIOError, InterruptedError):
            self.tx_dropped += 1
            return
        except OSError as exc:
            if exc.errno in (errno.ENOBUFS, errno.EIO, errno.EAGAIN):
                self.tx_dropped += 1
                return
            raise TunError(f"write to {self.name} failed: {_describe(exc)}") from exc
        self.tx_packets += 1

    # ------------------------------------------------------------------ closing
    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        """Close the fd; delete the link if we created it and it is still there.

        A non-persistent TUN disappears with its last fd, so deleting is only needed
        when someone made it persistent meanwhile. Safe to call twice.
        """
        if self.fd < 0:
            return
        ipr = None
        if self.created:
            try:
                ipr = _iproute()
            except TunError:
                ipr = None
        try:
            self._close_with(ipr)
        finally:
            if ipr is not None:
                ipr.close()

    def _close_with(self, ipr: Any) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
        if self.created and ipr is not None:
            try:
                index = _link_index(ipr, self.name)
                if index is not None:
                    ipr.link("del", index=index)
            except Exception:  # best effort: the link may vanish concurrently
                pass

    def __enter__(self) -> TunDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "vnet_hdr" if self.vnet_hdr else "plain"
        return f"<TunDevice {self.name} fd={self.fd} {mode} mtu={self.mtu}>"


class _OffloadRefused(Exception):
    pass
