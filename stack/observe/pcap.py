"""A classic libpcap file writer for the packets the stack sends and receives.

Format (https://www.tcpdump.org/manpages/pcap-savefile.5.html), in the host's byte
order, which readers detect from the magic number:

* global header: magic 0xa1b2c3d4 (microsecond timestamps), version 2.4, thiszone 0,
  sigfigs 0, snaplen, link type LINKTYPE_RAW (101: the record is a bare IP packet,
  version taken from its first nibble);
* per packet: ts_sec, ts_usec, captured length, original length, then the bytes.

The caller passes the IP packet without any virtio header. Timestamps are wall-clock
(``time.time()``) so a capture lines up with tcpdump/Wireshark captures of the peer.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Sequence
from typing import BinaryIO

PCAP_MAGIC_USEC = 0xA1B2C3D4
PCAP_VERSION = (2, 4)
DEFAULT_SNAPLEN = 262144
DEFAULT_MAX_BYTES = 1 << 30  # `tcplab stack --pcap-limit` (MiB) defaults to this
LINKTYPE_RAW = 101

_GLOBAL = struct.Struct("=IHHiIII")
_RECORD = struct.Struct("=IIII")


class PcapWriter:
    """Append packets to ``path`` (truncated on open). Buffered; see :meth:`flush`."""

    def __init__(self, path: str | os.PathLike[str], snaplen: int = DEFAULT_SNAPLEN,
                 linktype: int = LINKTYPE_RAW, buffer_size: int = 1 << 20,
                 max_bytes: int | None = None,
                 on_full: Callable[[PcapWriter], None] | None = None) -> None:
        """`max_bytes` bounds the file: once the next record would pass it, records are
        counted in `skipped` instead of written, and `on_full` is called once."""
        self.path = os.fspath(path)
        self.snaplen = snaplen
        self.packets = 0
        self.max_bytes = max_bytes
        self.on_full = on_full
        self.size = _GLOBAL.size
        self.skipped = 0
        self._f: BinaryIO | None = open(self.path, "wb", buffering=buffer_size)  # noqa: SIM115
        self._f.write(_GLOBAL.pack(PCAP_MAGIC_USEC, PCAP_VERSION[0], PCAP_VERSION[1],
                                   0, 0, snaplen, linktype))

    @property
    def closed(self) -> bool:
        return self._f is None

    def write(self, ts: float | None, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """Record one packet, the concatenation of ``parts``, seen at ``ts``
        (seconds since the epoch; None means now)."""
        f = self._f
        if f is None:
            raise ValueError("write to a closed PcapWriter")
        if ts is None:
            ts = time.time()
        sec = int(ts)
        usec = int(round((ts - sec) * 1_000_000))
        if usec >= 1_000_000:
            sec += 1
            usec -= 1_000_000
        length = 0
        for p in parts:
            length += len(p)
        caplen = min(length, self.snaplen)
        if self.skipped or (self.max_bytes is not None
                            and self.size + _RECORD.size + caplen > self.max_bytes):
            # Full: nothing more is recorded, not even a smaller packet that would still
            # fit (a capture with holes in it would mislead).
            self.skipped += 1
            if self.skipped == 1 and self.on_full is not None:
                self.on_full(self)
            return
        self.size += _RECORD.size + caplen
        f.write(_RECORD.pack(sec, usec, caplen, length))
        if caplen == length:
            for p in parts:
                f.write(p)
        else:
            remaining = caplen
            for p in parts:
                if remaining <= 0:
                    break
                chunk = memoryview(p)[:remaining]
                f.write(chunk)
                remaining -= len(chunk)
        self.packets += 1

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            f.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
