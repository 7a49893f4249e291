"""Data transfer rules: delivery, ACK policy, windows, Nagle, persist, keepalive."""

from __future__ import annotations

import errno
from typing import Any

from tcpscript import Script, pattern

from stack.tcp.connection import State, TcpConfig


def plain(**kwargs: Any) -> TcpConfig:
    """No timestamps: one MSS is exactly the peer's MSS, easier numbers."""
    return TcpConfig(timestamps=False, **kwargs)


# ---------------------------------------------------------------- receiving


def test_in_order_delivery_and_delayed_ack() -> None:
    """RFC 9293 3.10.7.4 seventh; RFC 1122 4.2.3.2: the ACK of in-order data is delayed
    while no more than one of the peer's full-sized segments (here 100 bytes, the
    largest it sent: stack/tcp/rcvmss.py) is unacknowledged."""
    s = Script.established()
    s.rx("PA", data=100)
    s.no_tx()
    s.expect_deadline(0.04)  # config.delayed_ack
    s.expect(s.recv() == pattern(100), "the 100 bytes are delivered in order")
    s.wait(0.039)
    s.no_tx()
    s.wait(0.001)
    s.tx("A", seq=1, ack=101)
    s.expect_deadline(None)
    s.rx("PA", data=50)
    s.no_tx()
    s.expect_deadline(0.08)
    s.wait(0.01)
    s.rx("PA", data=40)  # 90 bytes wait: less than one of the peer's 100-byte segments
    s.no_tx()
    s.expect_deadline(0.08)  # not pushed back by the second segment
    s.wait(0.029)
    s.no_tx()
    s.wait(0.001)
    s.tx("A", seq=1, ack=191)
    s.expect_deadline(None)
    s.expect(s.recv() == pattern(90, 100), "the next 90 bytes")


def test_every_second_full_segment_acked_at_once() -> None:
    """RFC 5681 4.2 / RFC 1122 4.2.3.2: an ACK for at least every second full segment."""
    s = Script.established()
    mss = s.conn.snd_mss
    s.expect(mss == 1448, "MSS 1460 less 12 bytes of timestamps")
    s.rx("PA", data=mss)
    s.no_tx()
    s.rx("PA", data=mss)
    s.tx("A", ack=1 + 2 * mss)
    s.expect_deadline(None)
    s.rx("PA", data=mss)
    s.no_tx()
    s.expect_deadline(0.04)


def test_delayed_ack_piggybacks_on_data() -> None:
    s = Script.established()
    s.rx("PA", data=10)
    s.no_tx()
    s.send(20)
    s.tx("PA", seq=1, ack=11, length=20)
    s.expect_vars(ack_pending=False, delack_deadline=None)
    # Only the retransmission timer is left: RTO 0.3 s after the handshake's 0.1 s sample.
    s.expect_deadline(0.3)


def test_out_of_order_sack_and_hole_fill() -> None:
    """RFC 5681 4.2: out-of-order data -> immediate duplicate ACK (RFC 2018: with SACK
    blocks, the most recent first); data filling a hole -> immediate ACK."""
    s = Script.established()
    s.rx("PA", seq=101, data=100)
    s.tx("A", seq=1, ack=1, sack=[(101, 201)])
    s.rx("PA", seq=301, data=100)
    s.tx("A", ack=1, sack=[(301, 401), (101, 201)])
    s.expect(s.recv() == b"", "nothing deliverable yet")
    s.rx("PA", seq=1, data=100)
    s.tx("A", ack=201, sack=[(301, 401)])
    s.rx("PA", seq=201, data=100)
    s.tx("A", ack=401, sack=[])
    s.expect(s.recv() == pattern(400), "all 400 bytes in order")
    s.expect_deadline(None)


def test_fin_beyond_a_hole_waits() -> None:
    """RFC 9293 3.10.7.4 eighth: the FIN counts only once all data before it arrived."""
    s = Script.established()
    s.rx("FA", seq=101, data=100)
    s.tx("A", ack=1, sack=[(101, 201)])
    s.expect_state(State.ESTABLISHED)
    s.rx("PA", seq=1, data=100)
    s.tx("A", ack=202)
    s.expect_state(State.CLOSE_WAIT)
    s.expect(s.recv() == pattern(200), "data before the FIN")


def test_duplicate_segment_gets_ack() -> None:
    """RFC 9293 3.10.7.4 first: a segment that is not acceptable (old duplicate) is
    answered with an ACK and dropped."""
    s = Script.established()
    s.rx("PA", seq=1, data=100)
    s.no_tx()
    s.rx("PA", seq=1, data=100)
    s.tx("A", ack=101)
    s.expect_vars(rx_len=100, rcv=101)


def test_segment_beyond_window_gets_ack() -> None:
    s = Script.established(plain(recv_buffer=4000), mss=1000, ts=False)
    s.rx("PA", seq=1 + 4000, data=100)
    s.tx("A", ack=1, win=4000)
    s.expect_vars(rcv=1, rx_len=0)
    s.expect_event("drop", reason="out_of_window")


def test_data_beyond_window_trimmed() -> None:
    """RFC 9293 3.10.7.4 seventh: only the part inside the window is kept (the FIN
    beyond it is not processed)."""
    s = Script.established(plain(recv_buffer=4000), mss=1000, ts=False)
    s.rx("FA", seq=1, data=5000)
    s.tx("A", ack=4001, win=0)
    s.expect_state(State.ESTABLISHED)
    s.expect(s.recv() == pattern(4000), "4000 bytes kept")


def test_zero_window_segment_not_acceptable() -> None:
    """RFC 9293 3.10.7.4: with RCV.WND = 0 no data is acceptable, only ACKs."""
    s = Script.established(plain(recv_buffer=2000), mss=1000, ts=False)
    s.rx("PA", data=1000)
    s.rx("PA", data=1000)
    s.tx("A", ack=2001, win=0)
    s.rx("PA", seq=2001, data=1)  # a window probe
    s.tx("A", ack=2001, win=0)
    s.expect_vars(rx_len=2000)


def test_receiver_sws_avoidance_and_window_update() -> None:
    """RFC 9293 3.8.6.2.2: the window opens only in steps of min(buffer/2, MSS); a
    window update is sent when the user's reads open it that far."""
    s = Script.established(plain(recv_buffer=4000), mss=1000, ts=False)
    for _ in range(2):
        s.rx("PA", data=1000)
        s.rx("PA", data=1000)
    s.drain()
    s.expect_vars(rx_len=4000)
    s.recv(500)  # 500 bytes free: less than one MSS
    s.no_tx()
    s.rx("PA", seq=4001, data=1)  # zero-window probe
    s.tx("A", ack=4001, win=0)  # the right edge does not move by 500 bytes
    s.recv(600)  # 1100 free >= MSS: a window update
    s.tx("A", ack=4001, win=1100)
    s.no_tx()
    s.rx("PA", seq=4001, data=1100)
    s.expect(s.recv() == pattern(2900, 1100) + pattern(1100, 4000), "the rest, in order")


def test_window_update_after_read_from_full_buffer() -> None:
    """A fully read buffer is announced at once (the window crossed half the buffer)."""
    s = Script.established(plain(recv_buffer=4000), mss=1000, ts=False)
    for _ in range(2):
        s.rx("PA", data=1000)
        s.rx("PA", data=1000)
    s.tx("A", ack=2001, win=2000)
    s.tx("A", ack=4001, win=0)
    s.recv()
    s.tx("A", ack=4001, win=4000)


def test_sequence_numbers_wrap() -> None:
    """RFC 9293 3.4: sequence space arithmetic is modulo 2**32 in both directions."""
    s = Script.established(plain(), mss=1000, ts=False, iss=2**32 - 1500, peer_iss=2**32 - 700)
    s.send(3000)
    s.tx("A", seq=1, length=1000)
    s.tx("A", seq=1001, length=1000)
    s.tx("PA", seq=2001, length=1000)
    s.rx("A", ack=3001)
    s.expect_vars(una=3001, nxt=3001)
    s.expect(s.conn.snd.una - s.conn.iss == 3001, "SND.UNA past the wrap")
    for _ in range(3):
        s.rx("PA", data=1000)
    s.drain()
    s.expect(s.recv() == pattern(3000), "3000 bytes across the wrap")
    s.wait(0.04)
    s.drain()
    s.rx("FA", seq=3001, ack=3001)
    s.tx("A", ack=3002, raw_ack=(2**32 - 700 + 3002) & 0xFFFFFFFF)
    s.expect_state(State.CLOSE_WAIT)


# ---------------------------------------------------------------- sending


def test_nagle_holds_small_segment() -> None:
    """RFC 1122 4.2.3.4 (RFC 896): a small segment waits while data is unacknowledged."""
    s = Script.established(plain(), mss=1000, ts=False)
    s.send(100)
    s.tx("PA", seq=1, length=100)
    s.send(100)
    s.send(100)
    s.no_tx()
    s.rx("A", ack=101)
    s.tx("PA", seq=101, length=200)
    s.send(2500)  # full segments still go; the 700-byte tail waits
    s.tx("A", seq=301, length=1000)
    s.tx("A", seq=1301, length=1000)
    s.no_tx()
    s.rx("A", ack=2301)
    s.tx("PA", seq=2301, length=500)


def test_nodelay_sends_small_segments() -> None:
    """TCP_NODELAY (config.nodelay) turns Nagle off."""
    s = Script.established(plain(nodelay=True), mss=1000, ts=False)
    s.send(100)
    s.tx("PA", seq=1, length=100)
    s.send(100)
    s.tx("PA", seq=101, length=100)


def test_sender_sws_avoidance() -> None:
    """RFC 9293 3.8.6.2.1: do not send a small window-limited segment unless it is at
    least half of the largest window the peer offered."""
    s = Script.established(plain(), mss=1000, ws=None, ts=False, win=4000)
    s.send(6000)
    for i in range(4):
        s.tx("A", seq=1 + 1000 * i, length=1000)
    s.no_tx()
    s.rx("A", ack=4001, win=300)  # 300 < min(MSS, 4000/2): wait
    s.no_tx()
    s.rx("A", ack=4001, win=2500)  # window update: now room for 2000 bytes
    s.tx("A", seq=4001, length=1000)
    s.tx("PA", seq=5001, length=1000)


def test_sender_sws_half_window_sent() -> None:
    """A window-limited segment of at least MAX(SND.WND)/2 is sent even below one MSS."""
    s = Script.established(plain(), mss=1000, ws=None, ts=False, win=1200)
    s.send(3000)
    s.tx("A", seq=1, length=1000)
    s.no_tx()  # 200 bytes of window left: < 1200/2, held
    s.rx("A", ack=1001, win=700)  # 700 >= 600: sent
    s.tx("A", seq=1001, length=700)
    s.no_tx()


def test_sender_sws_override_timeout() -> None:
    """RFC 9293 3.8.6.2.1 (4) / RFC 1122 4.2.3.4: if a small window never grows, an
    override timeout sends what fits; the sender must not stall with no timer running."""
    s = Script.established(plain(), mss=1000, ws=None, ts=False, win=4000)
    s.send(6000)
    s.drain()
    s.rx("A", ack=4001, win=300)
    s.no_tx()
    deadline = s.conn.next_deadline()
    s.expect(deadline is not None, "a timer runs while data waits for the window")
    s.fire()
    s.tx("A", seq=4001, length=300)
    s.rx("A", ack=4301, win=300)
    s.fire()
    s.tx("A", seq=4301, length=300)


def test_zero_window_persist_probe_backoff_and_resume() -> None:
    """RFC 9293 3.8.6.1: a zero window is probed after RTO with one byte, the interval
    doubling; when the window opens the transfer resumes."""
    s = Script.established(plain(), mss=1000, ts=False)
    s.send(1000)
    s.tx("PA", seq=1, length=1000)
    s.wait(0.1)
    # RTT 0.1 s, as the handshake's: SRTT 0.1, RTTVAR 3/4 * 0.05 -> RTO 0.25 s
    s.rx("A", ack=1001, win=0)
    s.expect_vars(rto=0.25, snd_wnd=0)
    s.send(500)
    s.no_tx()
    s.expect_deadline(0.1 + 0.25)
    times = []
    for _ in range(4):
        times.append(round(s.fire(), 6))
        s.tx("A", seq=1001, length=1, data=pattern(1, 1000))
        s.rx("A", ack=1001, win=0)  # still closed, the probe byte not taken
        s.no_tx()
    s.expect(times == [0.35, 0.85, 1.85, 3.85], f"probes at {times}")
    s.expect_no_event("retransmit", reason="fast")
    s.expect_state(State.ESTABLISHED)
    s.rx("A", ack=1001, win=65535)  # the window opens; the probe byte was dropped
    s.tx("PA", seq=1001, length=500)  # so the transfer resumes at SND.UNA
    s.rx("A", ack=1501)
    s.expect_vars(una=1501, snd_wnd=65535 << 7, persist_deadline=None)
    s.expect_deadline(None)


def test_zero_window_probe_byte_accepted() -> None:
    """The receiver may take the probe byte when its window opens: continue after it."""
    s = Script.established(plain(), mss=1000, ts=False)
    s.send(1000)
    s.drain()
    s.rx("A", ack=1001, win=0)
    s.send(500)
    s.fire()
    s.tx("A", seq=1001, length=1)
    s.rx("A", ack=1002, win=65535)
    s.tx("PA", seq=1002, length=499)


def test_zero_window_update_without_ack_of_probe_byte() -> None:
    """A window update that does not acknowledge the probe byte must not leave the
    byte unsent with no timer running."""
    s = Script.established(plain(), mss=1000, ts=False)
    s.send(1000)
    s.drain()
    s.rx("A", ack=1001, win=0)
    s.send(1)  # the last byte of the stream
    s.fire()
    s.tx("PA", seq=1001, length=1)
    s.rx("A", ack=1001, win=4000)  # reader caught up; the probe had been dropped
    s.tx("PA", seq=1001, length=1)
    s.rx("A", ack=1002)
    s.expect_vars(una=1002, nxt=1002)


def test_zero_window_kept_open_indefinitely() -> None:
    """RFC 1122 4.2.2.17: as long as the receiver answers the probes, the connection
    stays open however long the window stays closed."""
    s = Script.established(plain(max_retries=3), mss=1000, ts=False)
    s.send(1000)
    s.drain()
    s.rx("A", ack=1001, win=0)
    s.send(100)
    for _ in range(25):
        s.fire()
        s.drain()
        s.rx("A", ack=1001, win=0)
    s.expect_state(State.ESTABLISHED)
    s.expect_error(0)
    s.expect(s.conn.cc.ssthresh == 2**31, "no congestion response to probe ACKs")
    s.rx("A", ack=1002, win=65535)
    s.tx("PA", seq=1002, length=99)


def test_keepalive_probes_and_timeout() -> None:
    """RFC 1122 4.2.3.6: after keepalive_idle an idle connection is probed with
    SEG.SEQ = SND.NXT - 1; an answer resets the idle timer; keepalive_count unanswered
    probes end it with ETIMEDOUT."""
    cfg = TcpConfig(keepalive=True, keepalive_idle=10.0, keepalive_interval=2.0,
                    keepalive_count=3)  # fmt: skip
    s = Script.established(cfg)
    s.expect_deadline(10.0)
    s.fire()
    s.tx("A", seq=0, ack=1, length=0)
    s.expect_deadline(12.0)
    s.wait(0.5)
    s.rx("A", seq=1, ack=1)  # the peer answers
    s.no_tx()
    s.expect_deadline(10.5 + 10.0)
    for t in (20.5, 22.5, 24.5):
        s.fire()
        s.expect(abs(s.now - t) < 1e-9, f"probe at {t}")
        s.tx("A", seq=0, ack=1)
    s.fire()
    s.no_tx()
    s.expect(abs(s.now - 26.5) < 1e-9, "gives up after 3 unanswered probes")
    s.expect_state(State.CLOSED)
    s.expect_error(errno.ETIMEDOUT)


def test_send_buffer_limit() -> None:
    s = Script.established(plain(send_buffer=3000), mss=1000, ts=False)
    s.expect(s.send(5000) == 3000, "only the buffer's capacity is accepted")
    s.drain()
    s.expect(s.send(10) == 0, "full")
    s.rx("A", ack=1001)
    s.expect(s.send(5000) == 1000, "acknowledged bytes free space")


def test_segments_carrying_sack_blocks_still_fit_the_mss() -> None:
    """RFC 9293 3.7.1: options count against the MSS. While we hold out-of-order data,
    every segment carries SACK blocks (12 bytes for one block) besides the timestamps
    that `snd_mss` already allows for; a full-size segment would exceed the path MTU and
    be dropped on every retransmission (found by tests/integration/test_limits_e2e.py)."""
    s = Script.established()
    mss = s.conn.snd_mss  # 1460 - 12 bytes of timestamps
    s.rx("PA", seq=101, ack=1, data=100)  # a hole at 1..100: we now SACK 101..201
    s.tx("A", ack=1, sack=[(101, 201)])
    s.send(3 * mss)
    for i in range(3):
        s.tx("A", seq=1 + i * (mss - 12), length=mss - 12, sack=[(101, 201)])
    s.no_tx()  # the last 36 bytes wait for an ACK (Nagle)
    # The peer fills the hole and ACKs: no more SACK blocks, full-size segments again.
    s.rx("PA", seq=1, ack=1 + 3 * (mss - 12), data=100)
    s.tx("PA", length=36, sack=[])
    s.rx("A", seq=201, ack=1 + 3 * mss)
    s.send(2 * mss)
    s.tx("A", length=mss, sack=[])
