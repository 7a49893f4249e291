"""Proportional Rate Reduction (RFC 6937), stack/tcp/prr.py: scripted ACKs of a
recovery episode, the RFC section in each docstring. Sizes in bytes, MSS 1000."""

from __future__ import annotations

from stack.tcp.congestion import make_congestion_control
from stack.tcp.prr import PRR

MSS = 1000


def test_start_of_recovery() -> None:
    """RFC 6937 section 3, on entering recovery: prr_delivered = prr_out = 0,
    RecoverFS = snd.nxt - snd.una (the FlightSize)."""
    prr = PRR(MSS)
    prr.prr_out = 5
    prr.start(ssthresh=10 * MSS, flight_size=20 * MSS)
    assert (prr.active, prr.prr_delivered, prr.prr_out, prr.recover_fs, prr.ssthresh) == (
        True, 0, 0, 20 * MSS, 10 * MSS)


def test_proportional_part_sends_ssthresh_over_recoverfs_per_delivered() -> None:
    """RFC 6937 section 3: while pipe > ssthresh, sndcnt = CEIL(prr_delivered *
    ssthresh / RecoverFS) - prr_out. With NewReno's ssthresh = RecoverFS / 2, one
    segment goes out for every two delivered (section 4's example)."""
    prr = PRR(MSS)
    prr.start(ssthresh=10 * MSS, flight_size=20 * MSS)
    sent = []
    pipe = 19 * MSS  # one segment lost
    for _ in range(8):
        sndcnt = prr.on_ack(delivered=MSS, pipe=pipe)
        sent.append(sndcnt)
        prr.on_sent(sndcnt)
        pipe += sndcnt - MSS
    assert sent == [500, 500, 500, 500, 500, 500, 500, 500]  # bytes: half an MSS per ACK
    assert prr.prr_out == 4 * MSS and prr.prr_delivered == 8 * MSS


def test_proportional_part_rounds_up() -> None:
    """RFC 6937 section 3: CEIL(prr_delivered * ssthresh / RecoverFS): the first ACK
    of a recovery with ssthresh = 0.7 RecoverFS allows 0.7 MSS, rounded up in bytes."""
    prr = PRR(MSS)
    prr.start(ssthresh=7, flight_size=3)
    assert prr.on_ack(delivered=1, pipe=8) == 3  # ceil(1 * 7 / 3) - 0


def test_slow_start_reduction_bound() -> None:
    """RFC 6937 section 3, PRR-SSRB (the default): once pipe <= ssthresh,
    sndcnt = MIN(ssthresh - pipe, MAX(prr_delivered - prr_out, DeliveredData) + MSS):
    after heavy losses the window grows back toward ssthresh like slow start."""
    prr = PRR(MSS)
    prr.start(ssthresh=10 * MSS, flight_size=20 * MSS)
    # Many losses: pipe fell to 4 segments. An ACK delivering 1 MSS allows 2 MSS.
    assert prr.on_ack(delivered=MSS, pipe=4 * MSS) == 2 * MSS
    prr.on_sent(2 * MSS)
    # prr_delivered - prr_out = 2 - 2 = 0 < DeliveredData: 1 + 1 segments again.
    assert prr.on_ack(delivered=MSS, pipe=5 * MSS) == 2 * MSS
    # ... but never beyond ssthresh - pipe.
    assert prr.on_ack(delivered=4 * MSS, pipe=9 * MSS) == MSS


def test_conservative_reduction_bound() -> None:
    """RFC 6937 section 3, PRR-CRB: limit = prr_delivered - prr_out: never send more
    than was delivered during recovery (packet conservation)."""
    prr = PRR(MSS, conservative=True)
    prr.start(ssthresh=10 * MSS, flight_size=20 * MSS)
    assert prr.on_ack(delivered=MSS, pipe=4 * MSS) == MSS
    prr.on_sent(MSS)
    assert prr.on_ack(delivered=MSS, pipe=4 * MSS) == MSS


def test_prr_out_counts_every_transmission() -> None:
    """RFC 6937 section 3: "On any data transmission or retransmission: prr_out +=
    (data sent)", and sndcnt shrinks by what went."""
    prr = PRR(MSS)
    prr.start(ssthresh=10 * MSS, flight_size=10 * MSS)
    prr.on_ack(delivered=3 * MSS, pipe=5 * MSS)
    before = prr.sndcnt
    prr.on_sent(MSS)
    assert prr.prr_out == MSS and prr.sndcnt == before - MSS
    prr.end()
    prr.on_sent(MSS)  # after recovery: not counted
    assert prr.prr_out == MSS


def _recovery(cc_name: str) -> tuple[int, int, int]:
    """One episode: 20 segments in flight, one lost; the 19 others and then the
    retransmission are acknowledged one by one. Returns (ssthresh, sent, final cwnd)."""
    cc = make_congestion_control(cc_name, MSS)
    cc.cwnd = 20 * MSS
    flight = 20 * MSS
    cc.on_congestion(flight, 0.0)
    prr = PRR(MSS)
    prr.start(cc.ssthresh, flight)
    pipe = flight - MSS  # the lost one is not in the pipe
    sent = 0
    for _ in range(19):
        sndcnt = prr.on_ack(delivered=MSS, pipe=pipe - MSS)
        pipe += sndcnt - MSS
        prr.on_sent(sndcnt)
        sent += sndcnt
    return cc.ssthresh, sent, prr.end()


def test_works_with_newreno_and_cubic() -> None:
    """RFC 6937 section 3: PRR takes whatever ssthresh congestion control chose
    ("ssthresh = CongCtrlAlg()"): NewReno's half (RFC 5681) or CUBIC's 0.7 (RFC 9438);
    over the recovery round it sends about ssthresh / RecoverFS of what is delivered,
    and recovery ends with cwnd = ssthresh."""
    for name, beta in (("newreno", 0.5), ("cubic", 0.7)):
        ssthresh, sent, cwnd = _recovery(name)
        assert ssthresh == int(20 * MSS * beta)
        assert abs(sent - 19 * MSS * beta) <= MSS, (name, sent)
        assert cwnd == ssthresh
