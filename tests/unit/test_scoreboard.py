"""The SACK scoreboard (stack/tcp/scoreboard.py) as a value type, without a connection.

Sequence numbers are unwrapped ints; SND.UNA is 1000 and SND.MAX 20000 unless said."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stack.tcp.scoreboard import Scoreboard

UNA, TOP = 1000, 20000


def board(*blocks: tuple[int, int]) -> Scoreboard:
    sb = Scoreboard()
    for s, e in blocks:
        sb.add(s, e, UNA, TOP)
    return sb


def test_blocks_merge_sorted_and_disjoint() -> None:
    sb = Scoreboard()
    assert not sb
    assert sb.add(5000, 6000, UNA, TOP)
    assert sb.add(2000, 3000, UNA, TOP)
    assert sb.blocks == [[2000, 3000], [5000, 6000]]
    assert sb.add(2500, 5000, UNA, TOP)  # bridges both (RFC 2018 section 4)
    assert sb.blocks == [[2000, 6000]]
    assert sb.add(6000, 7000, UNA, TOP)  # adjacent: merged
    assert sb.blocks == [[2000, 7000]]


def test_old_news_and_bad_blocks_change_nothing() -> None:
    sb = board((2000, 3000))
    assert not sb.add(2200, 2800, UNA, TOP)  # already SACKed
    assert not sb.add(500, 1000, UNA, TOP)  # at or below SND.UNA: a D-SACK (RFC 2883)
    assert not sb.add(19000, 21000, UNA, TOP)  # beyond what was sent
    assert not sb.add(3000, 3000, UNA, TOP)  # empty
    assert sb.blocks == [[2000, 3000]]
    assert sb.add(800, 1500, UNA, TOP)  # straddles SND.UNA: cut there
    assert sb.blocks == [[1000, 1500], [2000, 3000]]


def test_advance_drops_what_the_cumulative_ack_covers() -> None:
    sb = board((2000, 3000), (5000, 6000))
    sb.advance(2500)
    assert sb.blocks == [[2500, 3000], [5000, 6000]]
    sb.advance(6000)
    assert sb.blocks == []


def test_sacked_between() -> None:
    sb = board((2000, 3000), (5000, 6000))
    assert sb.sacked_between(UNA, TOP) == 2000
    assert sb.sacked_between(2500, 5500) == 1000
    assert sb.sacked_between(3000, 5000) == 0


def test_next_hole() -> None:
    sb = board((2000, 3000), (5000, 6000))
    assert sb.next_hole(UNA, TOP) == (1000, 2000)
    assert sb.next_hole(2000, TOP) == (3000, 5000)  # a start inside a block skips it
    assert sb.next_hole(5500, TOP) == (6000, TOP)
    assert sb.next_hole(5500, 6000) is None  # nothing un-SACKed below the limit


def test_lost_boundary_is_rfc6675_islost() -> None:
    # RFC 6675 IsLost: lost when more than (DupThresh - 1) * SMSS bytes above are SACKed;
    # with SMSS 1000 and DupThresh 3, the need is 2001 bytes.
    need = 2 * 1000 + 1
    sb = board((2000, 4000))
    assert sb.lost_boundary(need, UNA) == UNA  # 2000 SACKed: not enough
    sb.add(5000, 6000, UNA, TOP)
    assert sb.lost_boundary(need, UNA) == 2999  # bytes below 2999 have 2001 above them
    assert sb.highest_start(UNA) == 5000
    assert Scoreboard().highest_start(UNA) == UNA


@given(st.lists(st.tuples(st.integers(0, 30000), st.integers(1, 3000)), max_size=30))
def test_invariants_hold_for_any_blocks(raw: list[tuple[int, int]]) -> None:
    sb = Scoreboard()
    covered: set[int] = set()
    for start, size in raw:
        end = start + size
        sb.add(start, end, UNA, TOP)
        if UNA < end <= TOP:
            covered |= set(range(max(start, UNA), end))
    blocks = sb.blocks
    assert all(s < e for s, e in blocks)
    assert all(blocks[i][1] < blocks[i + 1][0] for i in range(len(blocks) - 1))  # disjoint
    assert sb.sacked_between(UNA, TOP) == len(covered)
    hole = sb.next_hole(UNA, TOP)
    if hole is not None:
        assert hole[0] not in covered and (hole[0] == UNA or hole[0] - 1 in covered)
