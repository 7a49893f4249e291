"""TCP options: MSS (RFC 9293 3.7.1), window scale and timestamps (RFC 7323), SACK
(RFC 2018)."""

from __future__ import annotations

import pytest
from tcpscript import Script

from stack.tcp.connection import TcpConfig
from stack.wire.tcp import TCPOptions

# ---------------------------------------------------------------------- MSS


def test_no_mss_option_means_536() -> None:
    """RFC 9293 3.7.1: without an MSS option the send MSS is 536."""
    s = Script.established(mss=None, ws=None, sackok=False, ts=False)
    s.expect_vars(peer_mss=536, snd_mss=536)
    s.send(2000)
    for seq in (1, 537, 1073):
        s.tx(seq=seq, length=536)
    s.no_tx()  # Nagle holds the 392-byte tail
    s.rx("A", ack=1609)
    s.tx(seq=1609, length=392)


def test_passive_no_mss_option() -> None:
    s = Script()
    s.passive(mss=None, ws=None, sackok=False, ts=False)
    s.tx("SA", mss=1460, ws=None, sackok=False, ts=None)
    s.expect_vars(snd_mss=536)


def test_mss_is_the_smaller_of_both_and_path() -> None:
    """SMSS = min(peer's MSS, what our path allows) (RFC 9293 3.7.1, RFC 1191)."""
    s = Script.established(mss=9000, ts=False)
    s.expect_vars(snd_mss=1460)
    s = Script.established(mss=1000, ts=False)
    s.expect_vars(snd_mss=1000)


def test_advertised_mss_follows_path() -> None:
    s = Script(path_mss=1200)
    s.connect()
    s.tx("S", mss=1200)


def test_timestamps_reduce_payload_per_segment() -> None:
    s = Script.established(mss=1460, ts=True)
    s.expect_vars(snd_mss=1448)
    s.send(3000)
    s.tx(length=1448)
    s.tx(length=1448)
    s.rx("A", ack=2897)
    s.tx(length=104)


# ------------------------------------------------------------- window scale


def test_window_scale_applied_both_ways() -> None:
    """RFC 7323 2: the peer's windows are shifted by its scale, ours by our scale; the
    windows of SYN segments are never scaled (2.2)."""
    s = Script()
    s.connect()
    s.tx("S", win=65535, ws=5)  # 1 MiB buffer -> shift 5; SYN window unscaled
    s.rx("SA", seq=0, ack=1, win=1000, ws=2, mss=1460, ts=False)
    s.expect_vars(snd_wscale=2, rcv_wscale=5, snd_wnd=1000)
    s.tx("A", win=(1 << 20) >> 5, wnd=1 << 20)
    s.rx("A", win=1000)
    s.expect_vars(snd_wnd=4000)
    s.rx("PA", win=1000, data=100)
    s.wait(0.04)
    s.tx("A", ack=101, wnd=((1 << 20) - 100) & ~31)


def test_no_window_scale_unless_both_offer() -> None:
    """RFC 7323 2.2: scaling is in effect only when both SYNs carry the option."""
    s = Script()
    s.connect()
    s.tx("S", ws=5)
    s.rx("SA", seq=0, ack=1, win=50000, ws=None, ts=False)
    s.expect_vars(snd_wscale=0, rcv_wscale=0)
    s.tx("A", win=65535)  # 1 MiB buffer but an unscaled 16-bit field
    s.rx("A", win=50000)
    s.expect_vars(snd_wnd=50000)


def test_passive_window_scale_only_if_offered() -> None:
    s = Script()
    s.passive(ws=None)
    s.tx("SA", ws=None, win=65535)
    s = Script()
    s.passive(ws=3)
    s.tx("SA", ws=5, win=65535)


def test_window_scale_above_14_is_14() -> None:
    """RFC 7323 2.3: a shift count above 14 is used as 14."""
    s = Script()
    s.connect()
    s.tx("S")
    syn_ack = s.make_segment("SA", seq=0, ack=1, mss=1460, ts=False)
    syn_ack.options = TCPOptions(mss=1460, wscale=15)
    s.rx_segment(syn_ack)
    s.expect_vars(snd_wscale=14)


@pytest.mark.parametrize(("buffer", "shift"), [(65535, 0), (65536, 1), (1 << 20, 5), (1 << 30, 14)])
def test_our_window_scale_fits_the_buffer(buffer: int, shift: int) -> None:
    s = Script(TcpConfig(recv_buffer=buffer))
    s.connect()
    s.tx("S", ws=shift, win=min(buffer, 65535))


# --------------------------------------------------------------- timestamps


def test_timestamp_value_and_echo() -> None:
    """RFC 7323 3/4.3: TSval is our clock (ms + offset); TSecr echoes TS.Recent."""
    s = Script(ts_offset=5000)
    s.connect()
    s.tx("S", ts=(5000, 0))
    s.wait(0.25)
    s.rx("SA", seq=0, ack=1, mss=1460, ts=(777, 5000))
    s.tx("A", ts=(5250, 777))
    s.wait(0.5)
    s.rx("PA", data=10, ts=(800, 5250))
    s.expect_vars(ts_recent=800)
    s.wait(0.04)
    s.tx("A", ack=11, ts=(5790, 800))


def test_ts_recent_not_updated_by_out_of_order_segment() -> None:
    """RFC 7323 4.3: TS.Recent is taken only from a segment with SEG.SEQ <= Last.ACK.sent."""
    s = Script.established()
    s.rx("PA", data=10, ts=(500, 0))
    s.rx("PA", seq=100, data=10, ts=(600, 0))  # out of order: immediate dup ACK
    s.tx("A", ack=11, tsecr=500)
    s.rx("PA", seq=11, data=89, ts=(700, 0))  # fills the hole
    s.tx("A", ack=110, tsecr=700)


def test_paws_drops_old_timestamp() -> None:
    """RFC 7323 5.3 R1: a segment whose TSval is older than TS.Recent is dropped (and
    acknowledged)."""
    s = Script.established()
    s.rx("PA", data=100, ts=(1000, 0))
    s.rx("PA", data=100, ts=(900, 0))  # an old duplicate from a previous incarnation
    s.tx("A", ack=101, tsecr=1000)
    s.expect_event("drop", reason="paws")
    s.expect_vars(rx_len=100, rcv=101)
    s.rx("PA", seq=101, data=100, ts=(1001, 0))
    s.expect_vars(rx_len=200, rcv=201)


def test_paws_ts_wraps() -> None:
    """PAWS compares timestamps modulo 2**32 (RFC 7323 5.2)."""
    s = Script.established()
    for tsval in (0x7FFFFFF0, 0xFFFFFF00, 0x10):  # each newer than the one before
        s.rx("PA", data=10, ts=(tsval, 0))
        s.wait(0.04)  # ACKed, so the next segment's SEQ <= Last.ACK.sent (RFC 7323 4.3)
        s.tx("A", tsecr=tsval)
    s.expect_vars(rx_len=30, ts_recent=0x10)
    s.rx("PA", data=10, ts=(0xFFFFFFF0, 0))  # older (before the wrap): dropped
    s.expect_vars(rx_len=30)


def test_no_timestamps_unless_both_offer() -> None:
    s = Script.established(ts=False)
    s.expect_vars(ts_ok=False)
    s.send(10)
    s.tx(ts=None)
    s = Script(TcpConfig(timestamps=False))
    s.passive(ts=True)
    s.tx("SA", ts=None)
    s.expect_vars(ts_ok=False)


# --------------------------------------------------------------------- SACK


@pytest.mark.parametrize(("ours", "theirs"), [(True, True), (True, False), (False, True)])
def test_sack_permitted_only_when_both_offer(ours: bool, theirs: bool) -> None:
    """RFC 2018 2: SACK-permitted is sent in a SYN-ACK only if the SYN carried it, and
    SACK is used only if both sides sent it."""
    s = Script(TcpConfig(sack=ours))
    s.passive(sackok=theirs)
    s.tx("SA", sackok=ours and theirs)
    s.rx("A", seq=1, ack=1)
    s.expect_vars(sack_ok=ours and theirs)
    s.rx("PA", seq=101, data=10)  # out of order
    s.tx("A", ack=1, sack=[(101, 111)] if ours and theirs else [])


def test_active_sack_offer() -> None:
    s = Script(TcpConfig(sack=True))
    s.connect()
    s.tx("S", sackok=True)
    s.rx("SA", seq=0, ack=1, sackok=False, ts=False)
    s.expect_vars(sack_ok=False)
    s = Script(TcpConfig(sack=False))
    s.connect()
    s.tx("S", sackok=False)
    s.rx("SA", seq=0, ack=1, sackok=True, ts=False)
    s.expect_vars(sack_ok=False)


def test_sack_blocks_limited_by_option_space() -> None:
    """RFC 2018 3: at most 3 blocks fit next to timestamps, 4 without."""
    s = Script.established(ts=True)
    for i in range(5):
        s.rx("PA", seq=101 + 200 * i, data=100)
    segs = s.drain()
    s.expect(len(segs[-1].options.sack_blocks) == 3, "3 blocks with timestamps")
    s = Script.established(ts=False)
    for i in range(5):
        s.rx("PA", seq=101 + 200 * i, data=100)
    segs = s.drain()
    s.expect(len(segs[-1].options.sack_blocks) == 4, "4 blocks without")
