"""The receiving half (stack/tcp/receiver.py) on its own: no connection, no segments,
only sequence numbers and payloads. The peer's ISS is 1000, so data starts at 1001."""

from __future__ import annotations

from stack.tcp.config import TcpConfig
from stack.tcp.reassembler import Reassembler
from stack.tcp.receiver import Receiver

IRS = 1000


def receiver(buffer: int = 10000, wscale: int = 0) -> Receiver:
    rcv = Receiver(TcpConfig(recv_buffer=buffer), Reassembler(buffer), wscale)
    rcv.start(IRS)
    rcv.advertised_window(1000)  # the window offered so far: the whole buffer
    return rcv


def test_in_order_data_is_delivered_and_owes_an_ack() -> None:
    rcv = receiver()
    assert rcv.receive(IRS + 1, b"a" * 500, user_closed=False)
    assert (rcv.nxt, rcv.rx_len, rcv.unacked_bytes, rcv.ack_pending) == (IRS + 501, 500, 500, True)
    assert not rcv.ack_now  # in order, no hole: a delayed ACK will do (RFC 5681 4.2)
    assert rcv.read(200) == b"a" * 200 and rcv.rx_len == 300


def test_out_of_order_data_waits_and_is_acked_at_once() -> None:
    rcv = receiver()
    rcv.receive(IRS + 501, b"b" * 500, user_closed=False)
    assert rcv.nxt == IRS + 1 and rcv.ack_now  # RFC 5681 4.2: ACK out-of-order at once
    assert rcv.sack_blocks(4) == [(IRS + 501, IRS + 1001)]
    rcv.ack_now = False
    rcv.receive(IRS + 1, b"a" * 500, user_closed=False)  # fills the hole
    assert rcv.nxt == IRS + 1001 and rcv.ack_now and rcv.read(2000) == b"a" * 500 + b"b" * 500


def test_data_is_trimmed_to_the_window() -> None:
    rcv = receiver(buffer=1000)
    rcv.receive(IRS - 99, b"x" * 100 + b"y" * 2000, user_closed=False)  # old part and beyond
    assert rcv.rx_len == 1000 and rcv.read(5000) == b"y" * 1000


def test_data_after_the_user_closed_is_refused() -> None:
    rcv = receiver()
    assert not rcv.receive(IRS + 1, b"a", user_closed=True)  # RFC 1122 4.2.2.13
    assert rcv.rx_len == 0


def test_memory_pressure_drops_the_text_and_asks_again() -> None:
    rcv = receiver()
    rcv.rx_pressure = True
    assert rcv.receive(IRS + 1, b"a" * 100, user_closed=False)
    assert (rcv.rx_len, rcv.memory_drops, rcv.ack_now) == (0, 1, True)


def test_acceptability_rfc9293_four_cases() -> None:
    rcv = receiver(buffer=1000)
    nxt = rcv.nxt
    assert rcv.acceptable(nxt, 0) and rcv.acceptable(nxt + 999, 0)
    assert not rcv.acceptable(nxt + 1000, 0)
    assert rcv.acceptable(nxt - 10, 20)  # ends inside the window
    assert not rcv.acceptable(nxt - 10, 10)  # all old
    rcv.receive(nxt, b"z" * 1000, user_closed=False)
    rcv.advertised_window(1000)
    assert rcv.window == 0
    assert rcv.acceptable(rcv.nxt, 0) and not rcv.acceptable(rcv.nxt, 1)  # zero window


def test_advertised_window_avoids_sws_and_never_shrinks() -> None:
    rcv = receiver(buffer=10000)
    rcv.receive(IRS + 1, b"a" * 9500, user_closed=False)
    assert rcv.advertised_window(1000) == 500  # the right edge stays where it was
    rcv.read(600)  # 1100 free, but the edge moves only by >= min(buffer/2, MSS) ...
    assert rcv.advertised_window(1000) == 500
    rcv.read(400)  # ... as it does now (by 1000 bytes)
    assert rcv.advertised_window(1000) == 1500
    assert not rcv.window_update_due(1000)
    rcv.read(5000)
    assert rcv.window_update_due(1000)  # half the buffer free: tell the peer


def test_window_scale_shifts_the_field() -> None:
    rcv = receiver(buffer=1 << 20, wscale=5)
    assert rcv.advertised_window(1000) == (1 << 20) >> 5


def test_fin_once() -> None:
    rcv = receiver()
    assert rcv.receive_fin() and rcv.fin_received and rcv.nxt == IRS + 2
    assert not rcv.receive_fin() and rcv.nxt == IRS + 2  # retransmitted: only ACK it
