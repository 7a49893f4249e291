"""D-SACK (RFC 2883) and DSACK-based spurious retransmission detection (RFC 3708),
stack/tcp/dsack.py: scripted segments, the RFC section in each docstring."""

from __future__ import annotations

from stack.tcp.dsack import (
    SpuriousRetransmissions,
    duplicate_range,
    sack_option_blocks,
    split_dsack,
)

# ------------------------------------------------------------------ receiver

def test_duplicate_below_rcv_nxt_is_reported() -> None:
    """RFC 2883 section 4 rules (1), (3) and example 4.1.1: a segment that was
    already received and acknowledged is reported, left edge its first sequence number,
    right edge the one after its last."""
    assert duplicate_range(3000, 3500, rcv_nxt=4000, held=[]) == (3000, 3500)


def test_partly_new_segment_reports_only_the_duplicate_part() -> None:
    """RFC 2883 section 4 rule (3): the block covers the duplicate contiguous sequence
    only, not the new data in the same segment."""
    assert duplicate_range(3000, 5000, rcv_nxt=4000, held=[]) == (3000, 4000)


def test_duplicate_of_out_of_order_data_is_reported() -> None:
    """RFC 2883 section 4.1.3: a duplicate of data held above the cumulative ACK
    (already SACKed) is reported too: the overlapping part."""
    held = [(5000, 6000), (7000, 8000)]
    assert duplicate_range(7000, 7500, rcv_nxt=4000, held=held) == (7000, 7500)
    assert duplicate_range(5500, 6500, rcv_nxt=4000, held=held) == (5500, 6000)
    assert duplicate_range(6000, 7000, rcv_nxt=4000, held=held) is None  # new: a hole filled


def test_dsack_block_first_then_its_containing_block() -> None:
    """RFC 2883 section 4 rules (1), (4), (5): the D-SACK block is the first block; if
    the duplicate is part of a block held above the cumulative ACK, that block is the
    second; the others follow in RFC 2018 order, within the option's room."""
    blocks = [(9000, 10000), (5000, 7000), (11000, 12000)]  # most recent first
    assert sack_option_blocks((5500, 6000), blocks, limit=3) == [
        (5500, 6000), (5000, 7000), (9000, 10000)]
    assert sack_option_blocks((3000, 3500), blocks, limit=3) == [
        (3000, 3500), (9000, 10000), (5000, 7000)]
    assert sack_option_blocks(None, blocks, limit=2) == [(9000, 10000), (5000, 7000)]


# ------------------------------------------------------------------ sender

def test_sender_recognizes_dsack_below_the_ack() -> None:
    """RFC 2883 section 4 (sender's reading): a first block at or below the
    cumulative ACK is a D-SACK block; the rest are ordinary SACK blocks."""
    assert split_dsack([(3000, 3500), (6000, 7000)], ack=4000) == ((3000, 3500), [(6000, 7000)])


def test_sender_recognizes_dsack_inside_the_second_block() -> None:
    """RFC 2883 section 4.1.3: a first block contained in the second block reports a
    duplicate of SACKed data."""
    assert split_dsack([(6000, 6500), (5000, 7000)], ack=4000) == ((6000, 6500), [(5000, 7000)])


def test_ordinary_sack_blocks_are_not_dsack() -> None:
    """RFC 2018 section 4 / RFC 2883 section 4: a first block above the ACK and not
    inside the second one is an ordinary SACK block."""
    assert split_dsack([(6000, 7000), (8000, 9000)], ack=4000) == (None, [(6000, 7000), (8000, 9000)])
    assert split_dsack([], ack=4000) == (None, [])


def test_all_retransmissions_dsacked_means_spurious() -> None:
    """RFC 3708 section 3: when every retransmission of the episode has been
    reported as a duplicate by a D-SACK, the retransmissions were spurious (the
    originals arrived): the congestion response may be undone (section 5)."""
    det = SpuriousRetransmissions()
    det.start_episode(snd_una=1000, snd_max=9000)
    det.on_retransmit(1000, 2000)
    det.on_retransmit(3000, 4000)
    assert not det.on_dsack((1000, 2000))
    assert det.on_dsack((3000, 4000))
    assert not det.active


def test_one_retransmission_not_dsacked_is_not_spurious() -> None:
    """RFC 3708 section 3: a retransmission that is never reported as a duplicate
    may have repaired a real loss: no undo."""
    det = SpuriousRetransmissions()
    det.start_episode(snd_una=1000, snd_max=9000)
    det.on_retransmit(1000, 2000)
    det.on_retransmit(3000, 4000)
    assert not det.on_dsack((1000, 2000))
    assert not det.on_dsack((1000, 2000))  # the same duplicate twice counts once
    assert det.count == 1 and det.active


def test_dsack_of_data_never_retransmitted_is_ignored() -> None:
    """RFC 3708 section 3: only D-SACKs for data retransmitted in the episode count
    (a duplicate made by the network says nothing about our retransmissions)."""
    det = SpuriousRetransmissions()
    det.start_episode(snd_una=1000, snd_max=9000)
    det.on_retransmit(1000, 2000)
    assert not det.on_dsack((5000, 6000))
    assert det.count == 1
    idle = SpuriousRetransmissions()
    assert not idle.on_dsack((1000, 2000))  # no episode


def test_one_dsack_accounts_for_one_retransmission() -> None:
    """RFC 3708 section 3: each D-SACK reports one duplicate arrival. Data sent three
    times (the original and two retransmissions) is spurious only when both
    retransmissions come back as duplicates."""
    det = SpuriousRetransmissions()
    det.start_episode(snd_una=1000, snd_max=9000)
    det.on_retransmit(1000, 2000)
    det.on_retransmit(1000, 2000)  # resent again (e.g. by the RTO)
    assert not det.on_dsack((1000, 2000))
    assert det.on_dsack((1000, 2000))
