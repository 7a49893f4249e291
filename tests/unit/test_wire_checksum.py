"""Tests for stack.wire.checksum and stack.wire.errors."""

from __future__ import annotations

import array
import os
import pickle
import random
import socket
import struct
import timeit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.wire.checksum import (
    byte_view,
    fold,
    internet_checksum,
    ones_complement_sum,
    pseudo_header_sum,
)
from stack.wire.errors import WireError


def naive_sum(data: bytes, initial: int = 0) -> int:
    """Reference: RFC 1071 section 4.1, one word at a time with end-around carry."""
    if len(data) % 2:
        data = data + b"\x00"
    total = initial
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        while total > 0xFFFF:
            total = (total & 0xFFFF) + (total >> 16)
    return total


def test_naive_reference_matches_rfc1071_example() -> None:
    assert naive_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2


def test_rfc1071_example() -> None:
    # RFC 1071 section 3: words 0x0001 0xf203 0xf4f5 0xf6f7 sum to 0xddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_complement_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D
    # Appending the checksum makes the whole thing verify.
    assert internet_checksum(data + struct.pack("!H", 0x220D)) == 0
    assert ones_complement_sum(data + struct.pack("!H", 0x220D)) == 0xFFFF


def test_rfc1071_example_byte_swapped() -> None:
    # RFC 1071 section 2(B): the sum is byte-order independent up to a swap.
    assert ones_complement_sum(bytes.fromhex("0100 03f2 f5f4 f7f6")) == 0xF2DD


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x01", 0x0100),
        (b"\xab", 0xAB00),
        (b"\x00\x01\xf2", 0x0001 + 0xF200),
        (bytes.fromhex("0001f203f4f5f6f7ab"), naive_sum(bytes.fromhex("0001f203f4f5f6f7ab00"))),
    ],
)
def test_odd_length_is_padded_with_zero(data: bytes, expected: int) -> None:
    assert ones_complement_sum(data) == expected
    assert ones_complement_sum(data) == naive_sum(data)


@pytest.mark.parametrize("length", [0, 1, 2, 3, 20, 1500, 8191, 8192, 8193, 65535, 65536])
def test_all_zero_sums_to_zero(length: int) -> None:
    data = bytes(length)
    assert ones_complement_sum(data) == 0
    assert internet_checksum(data) == 0xFFFF


@pytest.mark.parametrize("length", [2, 4, 20, 1500, 8192, 8194, 65534, 65536])
def test_all_ff_sums_to_negative_zero(length: int) -> None:
    data = b"\xff" * length
    assert ones_complement_sum(data) == 0xFFFF
    assert internet_checksum(data) == 0


def test_all_ff_odd_length() -> None:
    # 0xffff + 0xff00 = 0x1feff -> 0xff00
    assert ones_complement_sum(b"\xff\xff\xff") == 0xFF00


def test_nonzero_multiple_of_ffff_gives_ffff() -> None:
    assert ones_complement_sum(bytes.fromhex("80007fff")) == 0xFFFF
    assert ones_complement_sum(bytes.fromhex("ffffffff")) == 0xFFFF
    assert ones_complement_sum(bytes.fromhex("ffff0001")) == 0x0001
    assert fold(0) == 0
    assert fold(0xFFFF) == 0xFFFF
    assert fold(0xFFFF * 7) == 0xFFFF
    assert fold(0x10000) == 1


def test_initial_value() -> None:
    assert ones_complement_sum(b"", 0x1234) == 0x1234
    assert ones_complement_sum(b"\x00\x00", 0xFFFF) == 0xFFFF
    assert ones_complement_sum(b"\x00\x01", 0xFFFF) == 0x0001
    assert ones_complement_sum(bytes(10000), 0xFFFF) == 0xFFFF
    assert internet_checksum(b"\x00\x01", 0x0002) == ~0x0003 & 0xFFFF


@pytest.mark.parametrize("length", [8191, 8192, 8193, 16385, 24576, 65535, 65536])
def test_large_buffers_match_reference(length: int) -> None:
    data = os.urandom(length)
    assert ones_complement_sum(data) == naive_sum(data)
    assert ones_complement_sum(memoryview(data)) == naive_sum(data)
    assert ones_complement_sum(bytearray(data), 0x1234) == naive_sum(data, 0x1234)


def test_memoryview_slices_and_non_byte_formats() -> None:
    data = os.urandom(101)
    view = memoryview(data)
    assert ones_complement_sum(view[1:50]) == naive_sum(data[1:50])
    words = array.array("H", [0x0102, 0x0304, 0xFFFF])
    raw = words.tobytes()
    # A memoryview of 16-bit items is still summed over its raw bytes.
    assert ones_complement_sum(memoryview(words)) == naive_sum(raw)
    assert byte_view(memoryview(words)).nbytes == len(raw)
    assert byte_view(memoryview(words)).format == "B"
    big = os.urandom(9001)
    for fmt in ("c", "b"):
        assert ones_complement_sum(memoryview(big).cast(fmt)) == naive_sum(big)
        assert ones_complement_sum(memoryview(big[:99]).cast(fmt)) == naive_sum(big[:99])


@given(st.binary(max_size=20000), st.integers(min_value=0, max_value=0xFFFF))
def test_matches_naive_reference(data: bytes, initial: int) -> None:
    assert ones_complement_sum(data, initial) == naive_sum(data, initial)
    assert internet_checksum(data, initial) == ~naive_sum(data, initial) & 0xFFFF


@given(st.integers(min_value=8180, max_value=70000), st.integers(min_value=0, max_value=2**32))
@settings(max_examples=40, deadline=None)
def test_chunked_path_matches_reference(length: int, seed: int) -> None:
    data = random.Random(seed).randbytes(length)
    assert ones_complement_sum(data) == naive_sum(data)


@given(st.binary(max_size=3000).map(lambda b: b[: len(b) & ~1]), st.binary(max_size=3000))
def test_sums_chain_over_even_prefixes(head: bytes, tail: bytes) -> None:
    assert ones_complement_sum(tail, ones_complement_sum(head)) == ones_complement_sum(head + tail)


@given(st.binary(min_size=2, max_size=2000).map(lambda b: b[: len(b) & ~1]))
def test_inserted_checksum_verifies(data: bytes) -> None:
    # Put the checksum in the first word (zeroed before computing), like a header.
    zeroed = b"\x00\x00" + data[2:]
    csum = internet_checksum(zeroed)
    assert internet_checksum(struct.pack("!H", csum) + data[2:]) == 0


@pytest.mark.parametrize(
    ("src", "dst", "proto", "length"),
    [
        ("10.0.0.1", "10.0.0.2", 6, 20),
        ("192.168.1.1", "8.8.8.8", 17, 8),
        ("0.0.0.0", "0.0.0.0", 0, 0),
        ("255.255.255.255", "255.255.255.255", 255, 0xFFFF),
        # words summing to 0xFFFF: must give 0xFFFF, not 0 (found by hypothesis)
        ("0.0.0.0", "255.255.255.255", 0, 0),
    ],
)
def test_pseudo_header_sum(src: str, dst: str, proto: int, length: int) -> None:
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, length)
    assert pseudo_header_sum(src, dst, proto, length) == naive_sum(pseudo)


@given(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=4).map(str),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
)
def test_pseudo_header_sum_property(src: str, dst: str, proto: int, length: int) -> None:
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, length)
    assert pseudo_header_sum(src, dst, proto, length) == naive_sum(pseudo)


def test_64k_checksum_is_fast() -> None:
    """No per-word Python loop: 64 KiB must take far less than a millisecond.

    A per-word loop takes several milliseconds; the bound is loose because the
    test machine may be shared.  (Measured about 75-80 us on a 2-core VM.)
    """
    data = os.urandom(65536)
    best = min(timeit.repeat(lambda: ones_complement_sum(data), number=20, repeat=5)) / 20
    assert best < 1e-3


def test_wire_error() -> None:
    err = WireError("bad_ip_checksum", "0x1234")
    assert isinstance(err, ValueError)
    assert err.reason == "bad_ip_checksum"
    assert err.detail == "0x1234"
    assert str(err) == "bad_ip_checksum: 0x1234"
    assert str(WireError("truncated_tcp_header")) == "truncated_tcp_header"
    copy = pickle.loads(pickle.dumps(err))
    assert isinstance(copy, WireError)
    assert (copy.reason, copy.detail) == ("bad_ip_checksum", "0x1234")
