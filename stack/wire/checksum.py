"""The Internet checksum (RFC 1071) and the TCP/UDP/ICMPv6 pseudo-header sum.

The 16-bit one's-complement sum is computed without a Python loop over words:
a run of bytes read as one big-endian integer ``N`` satisfies
``N = sum(w_i * 65536**k_i)`` and since ``65536 = 1 (mod 0xFFFF)`` we get
``N = sum(w_i) (mod 0xFFFF)``.  One's-complement addition is addition modulo
``0xFFFF`` where the zero class is represented by ``0xFFFF`` ("negative zero")
unless every word is zero ("positive zero", 0x0000), which is exactly what the
end-around-carry loop of RFC 1071 section 4.1 produces.

Large buffers are converted in fixed-size chunks (``int.from_bytes`` on a few
KiB stays in cache and is faster than one conversion of the whole buffer), the
chunk values are added, and the sum is folded with shifts and masks before the
final reduction.
"""

from __future__ import annotations

import socket
from typing import TypeAlias

__all__ = [
    "BytesLike",
    "byte_view",
    "fold",
    "internet_checksum",
    "ones_complement_sum",
    "pseudo_header_sum",
]

#: What the parsers and checksum functions accept.
BytesLike: TypeAlias = bytes | bytearray | memoryview

# Buffers longer than this are converted chunk by chunk.  It must be even so that
# every chunk starts on a 16-bit word boundary (then each chunk's integer value is
# congruent to the sum of its words).  8 KiB chunks stay in cache and measured
# fastest for 64 KiB buffers.
_CHUNK = 8192
# Fold steps applied to large sums before the final ``% 0xFFFF``: splitting an
# integer at a multiple of 16 bits and adding the halves keeps it congruent
# modulo 0xFFFF, and shifts/adds are much cheaper than long division.
_FOLD_STEPS = tuple((bits, (1 << bits) - 1) for bits in (65536, 32768, 16384, 8192, 4096, 2048))
_FOLD_MIN_BITS = 4096
_from_bytes = int.from_bytes


def fold(total: int) -> int:
    """Reduce a non-negative sum of 16-bit words to its 16-bit one's-complement form.

    Returns 0 only for a zero sum; a non-zero multiple of 0xFFFF gives 0xFFFF,
    matching the end-around-carry algorithm of RFC 1071.
    """
    if total == 0:
        return 0
    return total % 0xFFFF or 0xFFFF


def ones_complement_sum(data: BytesLike, initial: int = 0) -> int:
    """Return the folded (not inverted) 16-bit one's-complement sum of ``data``.

    ``data`` is read as big-endian 16-bit words; an odd length is padded with a
    zero byte (RFC 1071 section 1).  ``initial`` is a non-negative partial sum to
    continue from (e.g. :func:`pseudo_header_sum`, or the sum of a preceding
    even-length chunk).  The result is in ``0..0xFFFF``; it is 0 only if every
    word and ``initial`` are zero.
    """
    if isinstance(data, memoryview) and (data.ndim != 1 or data.format != "B"):
        data = data.cast("B")  # sum the raw bytes of e.g. an "H" or "c" view
    n = len(data)
    if n <= _CHUNK:
        total = _from_bytes(data, "big")
        if n & 1:
            total <<= 8  # pad the odd trailing byte with a zero byte
    else:
        even = n & ~1
        words = memoryview(data)[:even]
        total = sum(map(_from_bytes, [words[i : i + _CHUNK] for i in range(0, even, _CHUNK)]))
        if n & 1:
            total += data[even] << 8  # the trailing byte forms the word (byte, 0)
    if total.bit_length() > _FOLD_MIN_BITS:
        for bits, mask in _FOLD_STEPS:
            if total.bit_length() > bits:
                total = (total >> bits) + (total & mask)
    return fold(total + initial)


def internet_checksum(data: BytesLike, initial: int = 0) -> int:
    """Return the RFC 1071 Internet checksum: ``~ones_complement_sum(data, initial)``.

    When ``data`` already contains a correct checksum field the result is 0.
    """
    return ~ones_complement_sum(data, initial) & 0xFFFF


def pseudo_header_sum(src: str, dst: str, proto: int, length: int) -> int:
    """Folded sum of the TCP/UDP/ICMPv6 pseudo-header, IPv4 or IPv6.

    IPv4 (RFC 9293 section 3.1 "Checksum", RFC 768 "Fields"): source address,
    destination address, a zero byte, the protocol number and the 16-bit TCP/UDP
    length (header plus data).

    IPv6 (RFC 8200 section 8.1): source address, destination address, the 32-bit
    upper-layer packet length, three zero bytes and the Next Header value of the
    upper-layer protocol (not that of an extension header in between).

    Addresses are strings, dotted-quad or IPv6 text; both must be of one family
    (:class:`ValueError` otherwise).  The same sum serves both families: the IPv6
    length word pair ``(length >> 16, length & 0xFFFF)`` is congruent to ``length``
    modulo 0xFFFF, just as the one IPv4 length word is, and the zero bytes add
    nothing.  So only the cached address sum depends on the family, and IPv4 pays
    nothing for IPv6 on the per-packet path.
    """
    addrs = _ADDRESS_SUMS.get((src, dst))
    if addrs is None:
        addrs = _address_sum(src, dst)
    # zero byte + protocol form one word; the length is another word (IPv6: two).
    return fold(addrs + proto + length)


def _address_sum(src: str, dst: str) -> int:
    """The folded sum of the two addresses of a pseudo-header, cached per pair."""
    if len(_ADDRESS_SUMS) > 4096:
        _ADDRESS_SUMS.clear()
    v6 = ":" in src
    if v6 != (":" in dst):
        raise ValueError(f"pseudo-header addresses of two families: {src!r}, {dst!r}")
    if v6:
        try:
            raw = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
        except OSError as exc:
            raise ValueError(f"not an IPv6 address pair: {src!r}, {dst!r}") from exc
    else:
        raw = socket.inet_aton(src) + socket.inet_aton(dst)
    # fold(), not "% 0xFFFF": a non-zero sum that is a multiple of 0xFFFF must stay
    # 0xFFFF (one's complement "negative zero"), or 0.0.0.0 -> 255.255.255.255 sums to 0.
    addrs = fold(_from_bytes(raw, "big"))
    _ADDRESS_SUMS[(src, dst)] = addrs
    return addrs


# The address part of the pseudo-header sum, per (src, dst): the same few pairs recur.
_ADDRESS_SUMS: dict[tuple[str, str], int] = {}


def byte_view(buf: BytesLike) -> memoryview:
    """Return a flat unsigned-byte memoryview of ``buf`` without copying."""
    view = memoryview(buf)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view
