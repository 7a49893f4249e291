"""32-bit sequence number arithmetic.

TCP numbers every byte (and the SYN and FIN flags) with a 32-bit sequence
number that wraps around: after ``2**32 - 1`` comes ``0``.  Ordinary integer
comparison therefore breaks near the wrap point, e.g. ``0xFFFFFFF0`` is
*before* ``0x00000010`` even though it is a larger integer.

RFC 9293 section 3.4 ("Sequence Numbers") says the comparisons must be done
modulo 2**32.  The usual trick, also used by RFC 1982 ("Serial Number
Arithmetic"), is to look at the *signed* 32-bit difference: ``a`` is before
``b`` when ``a - b`` (taken modulo 2**32 and read as a signed number) is
negative.  This is only meaningful when the two numbers are less than 2**31
apart, which TCP guarantees because windows are far smaller than that
(RFC 7323 section 2.3 limits the window to 2**30 bytes for this reason).

Exactly 2**31 apart the order is undefined (RFC 1982 section 3.2); with the
functions below both ``seq_lt(a, b)`` and ``seq_lt(b, a)`` are then true.

All functions take and return plain ``int`` values in ``0 .. 2**32 - 1``
(``seq_diff`` returns a signed int).  They are pure: no state, no I/O.
"""

from __future__ import annotations

SEQ_MOD: int = 1 << 32
"""Sequence numbers live in the ring of integers modulo 2**32."""

SEQ_MASK: int = SEQ_MOD - 1
"""``x & SEQ_MASK`` reduces any int to a sequence number."""

_HALF: int = 1 << 31


def seq_add(a: int, n: int) -> int:
    """Return the sequence number ``n`` bytes after ``a`` (``n`` may be negative).

    RFC 9293 section 3.4: "all arithmetic dealing with sequence numbers must
    be performed modulo 2**32".

    >>> seq_add(0xFFFFFFFF, 1)
    0
    """
    return (a + n) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """Return ``a - b`` as a signed distance in ``-2**31 .. 2**31 - 1``.

    This is the signed 32-bit reading of the modular difference (RFC 1982
    section 3.2).  It is the inverse of :func:`seq_add`:
    ``seq_diff(seq_add(b, n), b) == n`` for ``-2**31 <= n < 2**31``.

    >>> seq_diff(5, 0xFFFFFFFE)
    7
    """
    return ((a - b + _HALF) & SEQ_MASK) - _HALF


def seq_lt(a: int, b: int) -> bool:
    """``a < b`` in sequence space (RFC 9293 section 3.4)."""
    return seq_diff(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    """``a <= b`` in sequence space (RFC 9293 section 3.4)."""
    return seq_diff(a, b) <= 0


def seq_gt(a: int, b: int) -> bool:
    """``a > b`` in sequence space (RFC 9293 section 3.4)."""
    return seq_diff(a, b) > 0


def seq_ge(a: int, b: int) -> bool:
    """``a >= b`` in sequence space (RFC 9293 section 3.4)."""
    return seq_diff(a, b) >= 0


def seq_in_window(x: int, start: int, size: int) -> bool:
    """Return True when ``start <= x < start + size`` in sequence space.

    This is the acceptability test of RFC 9293 section 3.4 (e.g.
    ``RCV.NXT =< SEG.SEQ < RCV.NXT + RCV.WND``).  It measures the unsigned
    distance from ``start`` to ``x``, so it works for any window size up to
    2**32 and a window of size 0 contains nothing.

    >>> seq_in_window(3, 0xFFFFFFF0, 100)
    True
    """
    return ((x - start) & SEQ_MASK) < size
