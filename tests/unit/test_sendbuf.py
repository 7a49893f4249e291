"""Tests for the send buffer (stack/tcp/sendbuf.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.tcp.sendbuf import SendBuffer


def test_write_accepts_at_most_free() -> None:
    buf = SendBuffer(10)
    assert (buf.start, buf.end, buf.free, len(buf)) == (0, 0, 10, 0)
    assert buf.write(b"abcdef") == 6
    assert buf.write(b"ghijkl") == 4  # only 4 bytes were free
    assert buf.free == 0
    assert buf.write(b"more") == 0
    assert buf.peek(0, 100) == b"abcdefghij"
    assert (buf.start, buf.end, len(buf)) == (0, 10, 10)


def test_release_frees_space_and_moves_start() -> None:
    buf = SendBuffer(10)
    buf.write(b"abcdefghij")
    buf.release(4)
    assert (buf.start, buf.end, buf.free, len(buf)) == (4, 10, 4, 6)
    assert buf.peek(4, 3) == b"efg"
    assert buf.write(memoryview(b"KLMNOP")) == 4
    assert buf.peek(8, 100) == b"ijKLMN"
    assert buf.end == 14


def test_peek_returns_bytes_and_keeps_data() -> None:
    buf = SendBuffer(100)
    buf.write(b"hello")
    first = buf.peek(0, 5)
    assert type(first) is bytes
    assert buf.peek(0, 5) == first  # peeking does not consume
    assert buf.peek(5, 10) == b""  # at end
    assert buf.peek(50, 10) == b""  # beyond end
    assert buf.peek(1, 0) == b""


def test_peek_of_released_bytes_is_an_error() -> None:
    buf = SendBuffer(100)
    buf.write(b"hello")
    buf.release(2)
    with pytest.raises(ValueError):
        buf.peek(1, 1)


def test_release_is_clamped_and_ignores_old_acks() -> None:
    buf = SendBuffer(100)
    buf.write(b"hello")
    buf.release(3)
    buf.release(1)  # an old ACK: nothing happens
    assert buf.start == 3
    buf.release(6)  # e.g. an ACK that also covers the FIN
    assert (buf.start, buf.end, len(buf), buf.free) == (5, 5, 0, 100)
    assert buf.write(b"xy") == 2
    assert buf.peek(5, 2) == b"xy"


def test_many_cycles_keep_indices_absolute() -> None:
    buf = SendBuffer(64 * 1024)
    block = bytes(range(256)) * 256  # 64 KiB
    index = 0
    for _ in range(20):
        assert buf.write(block) == len(block)
        assert buf.peek(index, 65536) == block
        index += len(block)
        buf.release(index)
    assert (buf.start, buf.end, len(buf)) == (index, index, 0)


def test_negative_capacity_is_rejected() -> None:
    with pytest.raises(ValueError):
        SendBuffer(-1)


# -- property test against a plain bytes model -------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.binary(max_size=40), st.booleans()),
        st.tuples(st.just("peek"), st.integers(0, 80), st.integers(0, 50)),
        st.tuples(st.just("release"), st.integers(0, 60), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 100), ops)
def test_matches_bytes_model(capacity: int, operations: list[tuple[str, object, object]]) -> None:
    buf = SendBuffer(capacity)
    stream = b""  # every byte ever accepted, index = position
    start = 0
    for op, a, b in operations:
        if op == "write":
            assert isinstance(a, bytes)
            data = memoryview(a) if b else a
            took = buf.write(data)
            expect = min(len(a), capacity - (len(stream) - start))
            assert took == expect
            stream += a[:took]
        elif op == "peek":
            assert isinstance(a, int) and isinstance(b, int)
            index = start + a
            assert buf.peek(index, b) == stream[index : index + b]
        else:
            assert isinstance(a, int)
            upto = start + a
            buf.release(upto)
            start = min(upto, len(stream))
        assert buf.start == start
        assert buf.end == len(stream)
        assert len(buf) == len(stream) - start
        assert buf.free == capacity - len(buf)
        assert 0 <= buf.free <= capacity
