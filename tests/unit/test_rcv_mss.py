"""The receiver's "every second full-sized segment" ACK, with full-sized judged by the
segments the peer actually sends (stack/tcp/rcvmss.py, used by stack/tcp/receiver.py).

RFC 5681 4.2: "an ACK SHOULD be generated for at least every second full-sized
segment, and MUST be generated within 500 ms of the arrival of the first
unacknowledged packet"; RFC 1122 4.2.3.2 likewise. Full-sized is what the peer sends:
a peer whose segments are all smaller than our MSS (small writes with Nagle off, or a
smaller MSS on its path) still gets an ACK every second segment, as it does from
FreeBSD (rcv-data-segments/reordering-* of the FreeBSD tcp-testsuite) and from
Linux's receive-MSS estimate. The scripts run on tcpscript's fake clock; the
delayed-ACK timer is the default 40 ms.
"""

from __future__ import annotations

from tcpscript import Script

from stack.tcp.rcvmss import LOWER_FLOOR, RcvMss
from stack.wire.tcp import SYN

MSS = 1448  # 1460 less 12 bytes of timestamps: Script.established's full segment


def test_every_second_sub_mss_segment_is_acked_at_once() -> None:
    """RFC 5681 4.2: segments of 1, 2, 4, 8 and 16 bytes (no PSH, back to back) are
    each as large as the peer sends, so the second and the fourth are ACKed at once;
    the fifth waits for the delayed-ACK timer (the suite's reordering-12345.pkt)."""
    s = Script.established()
    s.rx("A", data=1)
    s.no_tx()
    s.rx("A", data=2)
    s.tx("A", seq=1, ack=4)
    s.rx("A", data=4)
    s.no_tx()
    s.rx("A", data=8)
    s.tx("A", ack=16)
    s.rx("A", data=16)
    s.no_tx()
    s.expect_deadline(0.04)  # RFC 1122 4.2.3.2: the delayed ACK, well within 500 ms
    s.wait(0.04)
    s.tx("A", ack=32)
    s.expect(len(s.recv()) == 31, "the 31 bytes are delivered")


def test_equal_small_segments_are_acked_every_second_one_never_every_one() -> None:
    """RFC 5681 4.2 / RFC 1122 4.2.3.2: a stream of 100-byte segments (with PSH, as
    small writes with Nagle off arrive) is ACKed every second segment; the estimate
    follows the segment before the test, so one segment alone never triggers an ACK."""
    s = Script.established()
    for i in range(1, 7):
        s.rx("PA", data=100)
        if i % 2:
            s.no_tx()
        else:
            s.tx("A", ack=1 + 100 * i)
    s.expect_deadline(None)


def test_full_sized_segments_keep_the_old_pace() -> None:
    """RFC 5681 4.2: full-sized segments are ACKed every second one, as before (a
    lone full segment waits for the timer); ten segments, five ACKs."""
    s = Script.established()
    for i in range(1, 11):
        s.rx("A", data=MSS)
        if i % 2:
            s.no_tx()
        else:
            s.tx("A", ack=1 + MSS * i)
    s.expect_deadline(None)
    acks = [seg for seg in s.sent if not seg.payload and not seg.flags & SYN]
    s.expect(len(acks) == 1 + 5, f"the handshake's ACK and five: {len(acks)}")


def test_a_short_push_after_full_segments_is_not_a_new_segment_size() -> None:
    """The tail of a write (PSH) is no full-sized segment: after full-sized data, two
    short pushed segments (150 bytes) do not lower the estimate, and their ACK is
    delayed (RFC 1122 4.2.3.2), not sent at the second segment. The delayed-ACK
    deadline is the first's, not pushed back by the second."""
    s = Script.established()
    s.rx("A", data=MSS)
    s.rx("A", data=MSS)
    s.tx("A", ack=1 + 2 * MSS)
    s.rx("PA", data=100)
    s.no_tx()
    s.expect_deadline(0.04)
    s.wait(0.01)
    s.rx("PA", data=50)
    s.no_tx()
    s.expect_deadline(0.04)
    s.wait(0.03)
    s.tx("A", ack=1 + 2 * MSS + 150)


def test_a_repeated_smaller_size_lowers_the_estimate() -> None:
    """RFC 5681 4.2 when the peer's segments shrink (its path MSS fell, RFC 8201):
    after 1448-byte segments, two 1000-byte segments without PSH make 1000 bytes the
    full size, and the ACK comes every second 1000-byte segment (every 2*MSS bytes, it
    would come only at the third)."""
    s = Script.established()
    s.rx("A", data=MSS)
    s.rx("A", data=MSS)
    s.tx("A", ack=1 + 2 * MSS)
    s.rx("A", data=1000)
    s.no_tx()
    s.rx("A", data=1000)
    s.tx("A", ack=1 + 2 * MSS + 2000)
    s.rx("A", data=1000)
    s.no_tx()
    s.rx("A", data=1000)
    s.tx("A", ack=1 + 2 * MSS + 4000)


def test_tiny_segments_do_not_lower_the_estimate() -> None:
    """The floor: segments under LOWER_FLOOR bytes (keystrokes, a byte at a time) are
    no segment size of any path, so after full-sized data they leave the estimate
    where it is and are ACKed by the delayed-ACK timer (RFC 1122 4.2.3.2), not every
    second one."""
    s = Script.established()
    s.rx("A", data=MSS)
    s.rx("A", data=MSS)
    s.tx("A", ack=1 + 2 * MSS)
    for _ in range(6):
        s.rx("A", data=LOWER_FLOOR - 1)
        s.no_tx()
    s.wait(0.04)
    s.tx("A", ack=1 + 2 * MSS + 6 * (LOWER_FLOOR - 1))


def test_an_oversized_segment_is_acked_at_once() -> None:
    """More than one full-sized segment in one (a peer that coalesced segments beyond
    our MSS): the estimate stays at the MSS we advertised, so it is ACKed at once."""
    s = Script.established()
    s.rx("A", data=3 * MSS)
    s.tx("A", ack=1 + 3 * MSS)


def test_estimate_rules() -> None:
    """The estimator alone: raised by any larger segment (up to the advertised MSS),
    lowered only by a repeated size of at least LOWER_FLOOR without PSH."""
    est = RcvMss(1460)
    assert est.value == 0 and est.ack_due(1)  # nothing measured yet: ACK rather than wait
    est.on_data(1, push=False)
    assert (est.value, est.ack_due(1), est.ack_due(2)) == (1, False, True)
    est.on_data(5000, push=False)
    assert est.value == 1460
    est.on_data(500, push=True)
    est.on_data(500, push=True)
    assert est.value == 1460  # tails of writes
    est.on_data(500, push=False)
    assert est.value == 1460  # once is not yet a size
    est.on_data(500, push=False)
    assert est.value == 500
    est.on_data(LOWER_FLOOR - 1, push=False)
    est.on_data(LOWER_FLOOR - 1, push=False)
    assert est.value == 500  # under the floor
    est.advertise(536)
    est.on_data(1000, push=False)
    assert est.value == 536
