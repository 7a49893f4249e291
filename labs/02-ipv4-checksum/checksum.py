"""Lab 02: the Internet checksum (RFC 1071). Replace both `raise NotImplementedError`.

    python3 -m stack.labkit test 02 --impl checksum.py           # step-by-step tests
    python3 -m stack.labkit stack --swap checksum=checksum.py    # the stack, with yours

The stack uses these two functions for every IPv4 header and ICMP message it builds and
checks, and (without offloads) for TCP and UDP too. The contract is the one of
stack/wire/checksum.py in docs/architecture.md.
"""

from __future__ import annotations


def ones_complement_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The 16-bit one's-complement sum of ``data``, folded but not inverted.

    * Read ``data`` as big-endian 16-bit words: bytes 0x12 0x34 are the word 0x1234.
    * An odd number of bytes: the last byte is the high half of a final word whose low
      half is zero (b"\\x01" is the word 0x0100).
    * One's-complement addition: add, and whenever the sum needs more than 16 bits, add
      the carry back into the low 16 bits ("end-around carry", RFC 1071 section 1).
      0xFFFF + 0x0001 = 0x10000 -> 0x0000 + 0x1 = 0x0001.
    * ``initial`` is a partial sum to continue from (the pseudo-header's, say): start
      with it instead of 0.
    * The result is 0..0xFFFF. It is 0 only when every word (and initial) is 0; sums
      like 0xFFFF + 0xFFFF come out as 0xFFFF ("negative zero").

    bytes, bytearray and memoryview all index to ints: data[i] works for each.
    Hint: adding all words first and folding at the end gives the same result as
    folding after every addition -- and is faster in Python.
    """
    raise NotImplementedError


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The checksum field's value: the one's complement (bit inversion, 16 bits) of
    ``ones_complement_sum(data, initial)``. Over data that already contains a correct
    checksum field, the result is 0 -- that is how a receiver verifies."""
    raise NotImplementedError
