"""Lab 03: 32-bit sequence-number arithmetic (RFC 9293 section 3.4).

    python3 -m stack.labkit test 03 --impl seq.py            # step-by-step tests
    python3 -m stack.labkit stack --swap seq=seq.py          # the stack, with yours

TCP numbers bytes with 32-bit sequence numbers that wrap: after 0xFFFFFFFF comes 0.
Plain `a < b` is wrong near the wrap (0xFFFFFFF0 is *before* 0x10). The trick
(RFC 1982 section 3.2): look at the difference a - b modulo 2**32, read as a *signed*
32-bit number. That is only meaningful when a and b are less than 2**31 apart, which
TCP guarantees (windows are at most 2**30 bytes, RFC 7323 section 2.3).

Every argument and result is a plain int in 0 .. 2**32-1, except seq_diff's (signed)
and n in seq_add (any int). The stack's connection unwraps every incoming sequence and
acknowledgment number with your seq_diff.
"""

from __future__ import annotations


def seq_add(a: int, n: int) -> int:
    """The sequence number ``n`` bytes after ``a`` (n may be negative), modulo 2**32."""
    raise NotImplementedError


def seq_diff(a: int, b: int) -> int:
    """``a - b`` as a signed distance in -2**31 .. 2**31-1.

    seq_diff(5, 0xFFFFFFFE) == 7, seq_diff(0xFFFFFFFE, 5) == -7,
    seq_diff(0x80000000, 0) == -2**31 (exactly half way round: the negative end).
    """
    raise NotImplementedError


def seq_lt(a: int, b: int) -> bool:
    """a < b in sequence space."""
    raise NotImplementedError


def seq_le(a: int, b: int) -> bool:
    """a <= b in sequence space."""
    raise NotImplementedError


def seq_gt(a: int, b: int) -> bool:
    """a > b in sequence space."""
    raise NotImplementedError


def seq_ge(a: int, b: int) -> bool:
    """a >= b in sequence space."""
    raise NotImplementedError


def seq_in_window(x: int, start: int, size: int) -> bool:
    """start <= x < start + size in sequence space; a window of size 0 holds nothing.

    This is the acceptability test RCV.NXT =< SEG.SEQ < RCV.NXT + RCV.WND. Measure how
    far x lies beyond start (modulo 2**32, as an unsigned number) and compare with size:
    that works for any size up to 2**32 - 1.
    """
    raise NotImplementedError
