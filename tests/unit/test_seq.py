"""Tests for 32-bit sequence number arithmetic (stack/tcp/seq.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stack.tcp.seq import (
    SEQ_MASK,
    seq_add,
    seq_diff,
    seq_ge,
    seq_gt,
    seq_in_window,
    seq_le,
    seq_lt,
)

seqs = st.integers(min_value=0, max_value=SEQ_MASK)
# Distances for which the order of two sequence numbers is defined.
forward = st.integers(min_value=1, max_value=2**31 - 1)
signed = st.integers(min_value=-(2**31), max_value=2**31 - 1)

SETTINGS = settings(max_examples=300, deadline=None)


def test_wraparound_examples() -> None:
    assert seq_add(0xFFFFFFFF, 1) == 0
    assert seq_add(0, -1) == 0xFFFFFFFF
    assert seq_diff(0, 0xFFFFFFFF) == 1
    assert seq_diff(0xFFFFFFFF, 0) == -1
    assert seq_lt(0xFFFFFFF0, 0x10)
    assert seq_gt(0x10, 0xFFFFFFF0)
    assert seq_le(7, 7) and seq_ge(7, 7)
    assert not seq_lt(7, 7) and not seq_gt(7, 7)


def test_diff_range_edges() -> None:
    assert seq_diff(2**31 - 1, 0) == 2**31 - 1
    # Exactly half the space apart: the signed reading is -2**31 (RFC 1982
    # leaves this order undefined).
    assert seq_diff(2**31, 0) == -(2**31)


def test_in_window_examples() -> None:
    assert seq_in_window(10, 10, 1)
    assert not seq_in_window(11, 10, 1)
    assert not seq_in_window(9, 10, 5)
    assert not seq_in_window(10, 10, 0)  # an empty window contains nothing
    # A window straddling the wrap point.
    assert seq_in_window(0xFFFFFFFF, 0xFFFFFFF0, 0x20)
    assert seq_in_window(0x0F, 0xFFFFFFF0, 0x20)
    assert not seq_in_window(0x10, 0xFFFFFFF0, 0x20)


@SETTINGS
@given(seqs, forward)
def test_adding_moves_forward(a: int, n: int) -> None:
    b = seq_add(a, n)
    assert 0 <= b <= SEQ_MASK
    assert seq_lt(a, b) and seq_le(a, b)
    assert seq_gt(b, a) and seq_ge(b, a)
    assert not seq_lt(b, a) and not seq_ge(a, b)


@SETTINGS
@given(seqs, seqs)
def test_antisymmetry(a: int, b: int) -> None:
    if seq_diff(a, b) == -(2**31):
        return  # exactly 2**31 apart: order undefined (RFC 1982 section 3.2)
    assert seq_lt(a, b) == seq_gt(b, a)
    assert seq_le(a, b) == seq_ge(b, a)
    if a == b:
        assert not seq_lt(a, b) and seq_le(a, b)
    else:
        assert seq_lt(a, b) != seq_lt(b, a)  # exactly one is before the other
    assert seq_diff(a, b) == -seq_diff(b, a)


@SETTINGS
@given(seqs, signed)
def test_diff_inverts_add(a: int, n: int) -> None:
    assert seq_diff(seq_add(a, n), a) == n


@SETTINGS
@given(seqs, seqs)
def test_add_inverts_diff(a: int, b: int) -> None:
    d = seq_diff(a, b)
    assert -(2**31) <= d < 2**31
    assert seq_add(b, d) == a


@SETTINGS
@given(seqs, st.integers(min_value=0, max_value=2**31), st.integers(min_value=0, max_value=2**31))
def test_in_window_matches_offset(start: int, size: int, offset: int) -> None:
    x = seq_add(start, offset)
    assert seq_in_window(x, start, size) == (offset < size)
