"""Tests for out-of-order reassembly (stack/tcp/reassembler.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.tcp.reassembler import Reassembler

# -- step-by-step examples ---------------------------------------------------


def test_in_order_fast_path_returns_the_same_object() -> None:
    r = Reassembler(100)
    data = b"hello"
    assert r.insert(0, data) is data
    assert r.next_index == 5
    assert r.pending_bytes == 0
    assert r.sack_blocks() == []


def test_memoryview_input_comes_back_as_bytes() -> None:
    r = Reassembler(100)
    out = r.insert(0, memoryview(b"hello world")[:5])
    assert type(out) is bytes and out == b"hello"
    assert r.insert(7, memoryview(b"orld")) == b""
    assert r.insert(5, memoryview(b" w")) == b" world"


def test_out_of_order_then_fill() -> None:
    r = Reassembler(100)
    assert r.insert(3, b"def") == b""
    assert r.pending_bytes == 3
    assert r.sack_blocks() == [(3, 6)]
    assert r.insert(0, b"abc") == b"abcdef"
    assert (r.next_index, r.pending_bytes, r.sack_blocks()) == (6, 0, [])


def test_in_order_segment_not_touching_held_data_is_passed_through() -> None:
    r = Reassembler(100)
    assert r.insert(10, b"k") == b""
    data = b"abc"
    assert r.insert(0, data) is data  # 0..3 does not reach the chunk at 10
    assert r.sack_blocks() == [(10, 11)]
    assert r.insert(3, b"defghij") == b"defghijk"


def test_duplicates_and_overlaps_are_trimmed() -> None:
    r = Reassembler(100)
    assert r.insert(0, b"abc") == b"abc"
    assert r.insert(0, b"abc") == b""  # pure duplicate
    assert r.insert(1, b"bcd") == b"d"  # delivered prefix trimmed
    assert r.insert(6, b"gh") == b""
    assert r.insert(5, b"fgh") == b""  # overlaps the held chunk
    assert r.sack_blocks() == [(5, 8)]
    assert r.pending_bytes == 3
    assert r.insert(4, b"e") == b"efgh"


def test_empty_segment_changes_nothing() -> None:
    r = Reassembler(100)
    assert r.insert(0, b"") == b""
    assert r.insert(5, b"") == b""
    assert (r.next_index, r.pending_bytes, r.sack_blocks()) == (0, 0, [])


def test_capacity_drops_bytes_beyond_the_window() -> None:
    r = Reassembler(4)
    assert r.insert(2, b"cdefgh") == b""  # only indices 2 and 3 fit
    assert r.pending_bytes == 2
    assert r.sack_blocks() == [(2, 4)]
    assert r.insert(10, b"zz") == b""  # entirely beyond: dropped
    assert r.pending_bytes == 2
    assert r.insert(0, b"abcdefgh") == b"abcd"  # in-order data is bounded too
    assert r.next_index == 4
    assert r.insert(4, b"efgh") == b"efgh"


def test_zero_capacity_accepts_nothing() -> None:
    r = Reassembler(0)
    assert r.insert(0, b"abc") == b""
    assert r.next_index == 0


def test_negative_capacity_is_rejected() -> None:
    with pytest.raises(ValueError):
        Reassembler(-1)


def test_bridging_segment_merges_several_chunks_keeping_held_bytes() -> None:
    r = Reassembler(100)
    r.insert(2, b"CD")
    r.insert(5, b"FG")
    r.insert(8, b"IJ")
    assert r.sack_blocks() == [(8, 10), (5, 7), (2, 4)]
    assert r.insert(1, b"bcdefghijkl") == b""  # covers 1..12, fills every gap
    assert r.sack_blocks() == [(1, 12)]
    assert r.pending_bytes == 11
    # Bytes held first win on overlap (TCP data is identical anyway).
    assert r.insert(0, b"a") == b"abCDeFGhIJkl"


def test_sack_blocks_most_recent_first() -> None:
    r = Reassembler(100)
    r.insert(10, b"x" * 5)
    assert r.sack_blocks() == [(10, 15)]
    r.insert(30, b"x" * 5)
    assert r.sack_blocks() == [(30, 35), (10, 15)]
    r.insert(20, b"x" * 5)
    assert r.sack_blocks() == [(20, 25), (30, 35), (10, 15)]
    r.insert(15, b"x" * 5)  # joins 10..15 and 20..25
    assert r.sack_blocks() == [(10, 25), (30, 35)]
    r.insert(31, b"x")  # a duplicate still makes its block the most recent
    assert r.sack_blocks() == [(30, 35), (10, 25)]
    assert r.sack_blocks(limit=1) == [(30, 35)]
    assert r.sack_blocks(limit=0) == []


def test_sack_blocks_limit_keeps_the_most_recent() -> None:
    r = Reassembler(1000)
    for i in range(6):
        r.insert(10 + 10 * i, b"y")
    assert r.sack_blocks() == [(60, 61), (50, 51), (40, 41), (30, 31)]
    assert len(r.sack_blocks(limit=3)) == 3


# -- property test -----------------------------------------------------------

Segment = tuple[int, int, bool]  # start, end, pass as memoryview?


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[bytes, list[Segment], int]:
    """A payload, a shuffled list of segments covering it, and a capacity."""
    payload = draw(st.binary(min_size=1, max_size=300))
    n = len(payload)
    # A partition of the payload guarantees every byte is sent at least once...
    cuts = sorted(draw(st.sets(st.integers(1, max(1, n - 1)), max_size=15))) if n > 1 else []
    bounds = [0, *cuts, n]
    pieces = list(zip(bounds, bounds[1:], strict=False))
    # ...plus random overlapping segments and exact duplicates.
    extra = draw(
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(1, n)).map(
                lambda t: (t[0], min(n, t[0] + t[1]))
            ),
            max_size=10,
        )
    )
    dups = draw(st.lists(st.sampled_from(pieces), max_size=5))
    order = draw(st.permutations(pieces + extra + dups))
    as_view = draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)))
    segments = [(a, b, v) for (a, b), v in zip(order, as_view, strict=True)]
    capacity = draw(st.integers(1, 2 * n))
    return payload, segments, capacity


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_reassembly_property(scenario: tuple[bytes, list[Segment], int]) -> None:
    payload, segments, capacity = scenario
    n = len(payload)
    r = Reassembler(capacity)
    out = bytearray()
    # Byte-by-byte model of what the reassembler should hold.
    have = [False] * n
    model_next = 0
    last_ooo: tuple[int, int] | None = None

    def feed(start: int, end: int, as_view: bool) -> None:
        nonlocal model_next, last_ooo
        chunk = payload[start:end]
        lo, hi = max(start, model_next), min(end, model_next + capacity)
        got = r.insert(start, memoryview(chunk) if as_view else chunk)
        assert isinstance(got, bytes)
        out.extend(got)
        for i in range(lo, hi):
            have[i] = True
        if lo < hi and lo > model_next:
            last_ooo = (lo, hi)
        while model_next < n and have[model_next]:
            model_next += 1
        check_invariants()

    def check_invariants() -> None:
        assert r.next_index == model_next
        assert bytes(out) == payload[:model_next]
        assert r.pending_bytes <= capacity
        blocks = r.sack_blocks(limit=10_000)
        held = {i for i in range(model_next, n) if have[i]}
        covered = {i for a, b in blocks for i in range(a, b)}
        assert covered == held
        assert r.pending_bytes == len(held)
        ordered = sorted(blocks)
        for a, b in ordered:
            assert model_next < a < b <= model_next + capacity  # beyond next_index
        for (_, b1), (a2, _) in zip(ordered, ordered[1:], strict=False):
            assert b1 < a2  # disjoint and not even adjacent
        if last_ooo is not None and last_ooo[0] >= model_next and blocks:
            a, b = blocks[0]
            assert a <= last_ooo[0] and last_ooo[1] <= b  # RFC 2018 section 4

    for start, end, as_view in segments:
        feed(start, end, as_view)
    # Retransmission pass: pieces no larger than the capacity, in order, so
    # whatever the capacity dropped arrives now.
    for start in range(0, n, capacity):
        feed(start, min(n, start + capacity), False)

    assert bytes(out) == payload
    assert r.next_index == n
    assert r.pending_bytes == 0
    assert r.sack_blocks() == []
