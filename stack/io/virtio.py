"""The ``virtio_net_hdr`` that prefixes every TUN read and write with ``IFF_VNET_HDR``.

Layout (``struct virtio_net_hdr`` in ``linux/virtio_net.h``, 10 bytes)::

    u8  flags        VIRTIO_NET_HDR_F_*
    u8  gso_type     VIRTIO_NET_HDR_GSO_*
    u16 hdr_len      length of the headers to copy into every segment (IP + TCP here)
    u16 gso_size     payload bytes per segment (the MSS) when gso_type != GSO_NONE
    u16 csum_start   offset of the first byte to checksum (the L4 header)
    u16 csum_offset  where, counted from csum_start, the checksum goes (TCP 16, UDP 6)

The 16-bit fields are ``__virtio16``. For a legacy (pre-virtio-1.0) header, which is
what TUN/TAP speaks unless told otherwise, that means the *host's native* byte order:
``tun_is_little_endian()`` follows ``TUNSETVNETLE``/``TUNSETVNETBE`` when set and
``virtio_legacy_is_little_endian()`` (the CPU's endianness) otherwise. We never set
either, so the header is packed with ``=`` (native order, standard sizes).

On a TUN (layer 3) device all offsets count from the start of the IP header; there is
no Ethernet header in front.

Direction semantics:

* kernel -> us (read): ``F_NEEDS_CSUM`` means the L4 checksum field holds only the
  pseudo-header sum (locally generated traffic, never checksummed); ``F_DATA_VALID``
  means the kernel already verified it. ``gso_type`` ``TCPV4`` means the packet is a
  large TCP segment (up to 64 KiB) that would have been ``gso_size``-byte segments on
  a real wire; ``TCPV6`` the same for TCP over IPv6 (``TUN_F_TSO6``).
* us -> kernel (write): ``F_NEEDS_CSUM`` asks the kernel to finish the checksum (we store
  the pseudo-header sum); ``gso_type`` ``TCPV4`` hands over a large segment that the
  kernel splits into ``gso_size`` pieces (and ``GSO_ECN`` if it carries CWR).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VNET_HDR_LEN = 10

VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2

VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_TCPV6 = 4
VIRTIO_NET_HDR_GSO_ECN = 0x80

#: Where the checksum lives inside the L4 header (``csum_offset``).
TCP_CSUM_OFFSET = 16
UDP_CSUM_OFFSET = 6

# "=" is native byte order with standard sizes and no padding (see module docstring).
_HDR = struct.Struct("=BBHHHH")
assert _HDR.size == VNET_HDR_LEN

#: The header of a packet that needs nothing from the kernel: checksums complete, no GSO.
PLAIN = bytes(VNET_HDR_LEN)


@dataclass(slots=True)
class VirtioNetHdr:
    flags: int = 0
    gso_type: int = VIRTIO_NET_HDR_GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0

    @property
    def needs_csum(self) -> bool:
        return bool(self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)

    @property
    def data_valid(self) -> bool:
        return bool(self.flags & VIRTIO_NET_HDR_F_DATA_VALID)

    @property
    def is_gso(self) -> bool:
        return (self.gso_type & ~VIRTIO_NET_HDR_GSO_ECN) != VIRTIO_NET_HDR_GSO_NONE

    def to_bytes(self) -> bytes:
        return build_vnet_hdr(
            self.flags,
            self.gso_type,
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
        )


def parse_vnet_hdr(buf: bytes | bytearray | memoryview) -> VirtioNetHdr:
    """Decode the first 10 bytes of ``buf``; raises ``ValueError`` if it is shorter."""
    if len(buf) < VNET_HDR_LEN:
        raise ValueError(f"virtio_net_hdr needs {VNET_HDR_LEN} bytes, got {len(buf)}")
    return VirtioNetHdr(*_HDR.unpack_from(buf, 0))


def build_vnet_hdr(
    flags: int = 0,
    gso_type: int = VIRTIO_NET_HDR_GSO_NONE,
    hdr_len: int = 0,
    gso_size: int = 0,
    csum_start: int = 0,
    csum_offset: int = 0,
) -> bytes:
    """Encode a 10-byte header (``struct.error`` if a field is out of range)."""
    if not flags and not gso_type and not (hdr_len or gso_size or csum_start or csum_offset):
        return PLAIN
    return _HDR.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def tcp_tx_hdr(ip_header_len: int, tcp_header_len: int, payload_len: int, mss: int,
               ecn: bool = False, ipv6: bool = False) -> bytes:
    """Header for an outgoing TCP packet (over IPv4, or IPv6 with ``ipv6``) whose
    checksum field holds the pseudo-header sum (``build_tcp_header(..., checksum=
    "partial")``). For IPv6, ``ip_header_len`` counts the extension headers too.

    The kernel finishes the checksum; if the payload is longer than ``mss`` it also
    splits the packet into ``mss``-sized segments (TSO), copying the headers and fixing
    sequence numbers, IP ids, lengths and the PSH/FIN flags (only the last segment keeps
    them). ``ecn`` must be set when the packet carries CWR.
    """
    hdr_len = ip_header_len + tcp_header_len
    if payload_len > mss:
        gso_type = ((VIRTIO_NET_HDR_GSO_TCPV6 if ipv6 else VIRTIO_NET_HDR_GSO_TCPV4)
                    | (VIRTIO_NET_HDR_GSO_ECN if ecn else 0))
        gso_size = mss
    else:
        gso_type = VIRTIO_NET_HDR_GSO_NONE
        gso_size = 0
    return _HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type, hdr_len, gso_size,
                     ip_header_len, TCP_CSUM_OFFSET)
