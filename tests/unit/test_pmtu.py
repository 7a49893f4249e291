"""The path MTU cache (stack/pmtu.py, RFC 8201 section 4)."""

from __future__ import annotations

import pytest

from stack.pmtu import PMTU_AGING, PathMtuCache

DST = "fd00:0:0:2::1"


def test_starts_at_link_mtu_and_is_lowered() -> None:
    cache = PathMtuCache(1500)
    assert cache.get(DST, 0.0) == 1500
    assert cache.packet_too_big(DST, 1400, 1.0) == 1400
    assert cache.get(DST, 2.0) == 1400
    assert cache.get("fd00:0:0:2::2", 2.0) == 1500  # per destination


def test_never_raised_by_packet_too_big() -> None:
    cache = PathMtuCache(1500)
    cache.packet_too_big(DST, 1300, 0.0)
    assert cache.packet_too_big(DST, 1400, 1.0) is None
    assert cache.packet_too_big(DST, 1300, 1.0) is None
    assert cache.packet_too_big(DST, 9000, 1.0) is None
    assert cache.get(DST, 1.0) == 1300


def test_never_below_1280() -> None:
    """RFC 8201 section 4: a report below the minimum link MTU lowers to 1280 only."""
    cache = PathMtuCache(1500)
    assert cache.packet_too_big(DST, 576, 0.0) == 1280
    assert cache.packet_too_big(DST, 0, 0.0) is None
    assert cache.get(DST, 0.0) == 1280


def test_ages_out_to_try_a_larger_mtu() -> None:
    """RFC 8201 section 4: at least 5 minutes (10 recommended) before trying again."""
    cache = PathMtuCache(1500)
    cache.packet_too_big(DST, 1400, 100.0)
    assert cache.get(DST, 100.0 + 300) == 1400
    assert cache.get(DST, 100.0 + PMTU_AGING) == 1500
    assert len(cache) == 0


def test_bounded() -> None:
    cache = PathMtuCache(1500, max_entries=8)
    for i in range(100):
        cache.packet_too_big(f"fd00::{i + 1:x}", 1400, 0.0)
    assert len(cache) == 8
    with pytest.raises(ValueError):
        PathMtuCache(1000)
