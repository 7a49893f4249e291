"""The sending half (stack/tcp/sender.py) and loss recovery (stack/tcp/recovery.py)
without a `Connection`: a stand-in records the segments the sender asks for and the
events; sequence numbers are unwrapped, our ISS is 0 so data byte i has number i + 1.
"""

from __future__ import annotations

from typing import Any

from stack.tcp.config import TcpConfig
from stack.tcp.congestion import NewReno
from stack.tcp.ecn import Ecn
from stack.tcp.options import Options
from stack.tcp.reassembler import Reassembler
from stack.tcp.receiver import Receiver
from stack.tcp.recovery import Recovery
from stack.tcp.rto import RTOEstimator
from stack.tcp.sendbuf import SendBuffer
from stack.tcp.sender import Sender
from stack.tcp.seq import seq_diff
from stack.tcp.states import State
from stack.tcp.timers import Timers
from stack.wire.tcp import FIN, TCPOptions, TCPSegment

MSS = 1000


class StandIn:
    """What the sender and recovery ask of their connection."""

    def __init__(self) -> None:
        self.state = State.ESTABLISHED
        self.config = TcpConfig()
        self.user_closed = False
        self.soft_error = 0
        self.on_event = self.record
        self.sent: list[tuple[int, int, int]] = []  # (seq, flags, length)
        self.events: list[tuple[str, dict[str, object]]] = []
        self.ecn = Ecn(0, self.emit)  # ECN off: stack/tcp/ecn.py marks nothing

    def record(self, kind: str, fields: dict[str, object]) -> None:
        self.events.append((kind, fields))

    def emit(self, kind: str, **fields: object) -> None:
        self.record(kind, fields)

    def emit_cwnd(self, reason: str) -> None:
        self.emit("cwnd", reason=reason)

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]

    def terminate(self, err: int) -> None:
        self.state = State.CLOSED

    def unwrap(self, value: int, reference: int) -> int:
        return reference + seq_diff(value, reference & 0xFFFFFFFF)

    def send_segment(self, seq: int, flags: int, payload: Any, now: float, *,
                     ecn: int = 0) -> None:
        self.sent.append((seq, flags, len(payload)))


def sender(sack: bool = True, queued: int = 20 * MSS, wnd: int = 1 << 20) -> tuple[Sender, StandIn]:
    conn = StandIn()
    timers = Timers()
    rto = RTOEstimator()
    snd = Sender(conn, 0, SendBuffer(1 << 20), timers, rto)  # type: ignore[arg-type]
    snd.nxt = snd.max = 1  # after the handshake
    snd.una = 1
    snd.wnd = snd.max_wnd = wnd
    rcv = Receiver(conn.config, Reassembler(1 << 20), 0)
    snd.opts = Options(conn.config, snd, rcv, ts_offset=0, path_mss=None)
    snd.opts.sack_ok = sack
    snd.mss = snd.max_segment = MSS
    snd.recovery = Recovery(conn, snd, snd.opts, timers, rto, NewReno(MSS))  # type: ignore[arg-type]
    snd.sendbuf.write(bytes(queued))
    return snd, conn


def ack(snd: Sender, upto: int, sack: list[tuple[int, int]] | None = None, now: float = 0.1) -> None:
    seg = TCPSegment(1, 2, 1, upto, 0x10, 0, options=TCPOptions(sack_blocks=sack or []))
    snd.recovery.on_ack(seg, upto, snd.wnd, now)
    snd.update_window(snd.wnd, 1, upto)
    snd.output(now)  # as the connection does after every acceptable ACK


def test_output_sends_the_initial_window_and_arms_the_timer() -> None:
    snd, conn = sender()
    snd.output(0.0)
    assert [s[0] for s in conn.sent] == [1 + i * MSS for i in range(10)]  # RFC 6928 IW10
    assert snd.flight_size == 10 * MSS
    assert snd.timers.rtx == 1.0  # RFC 6298 5.1, initial RTO 1 s
    assert snd.recovery.rtt_seq == 1 + MSS  # the first segment is timed


def test_the_receive_window_limits_and_a_zero_window_arms_persist() -> None:
    snd, conn = sender(wnd=3 * MSS)
    snd.output(0.0)
    assert len(conn.sent) == 3
    snd2, conn2 = sender(wnd=0)
    snd2.output(0.0)
    assert conn2.sent == [] and snd2.timers.persist == 1.0  # RFC 9293 3.8.6.1


def test_nagle_holds_a_small_segment_while_data_is_in_flight() -> None:
    snd, conn = sender(queued=MSS + 10)
    snd.output(0.0)
    assert [s[2] for s in conn.sent] == [MSS]  # the 10-byte tail waits (RFC 1122 4.2.3.4)
    ack(snd, 1 + MSS)
    assert [s[2] for s in conn.sent] == [MSS, 10]


def test_three_duplicate_acks_start_newreno_fast_retransmit() -> None:
    snd, conn = sender(sack=False)
    snd.output(0.0)
    rec = snd.recovery
    for _ in range(3):
        ack(snd, 1)
    assert rec.in_recovery and rec.recover == snd.max
    assert conn.sent[-1][:1] == (1,)  # SND.UNA resent (RFC 5681 3.2 step 2)
    # ssthresh = FlightSize / 2, cwnd = ssthresh + 3 SMSS (RFC 5681 3.2 steps 2-3).
    assert rec.cc.ssthresh == 5 * MSS and rec.cc.cwnd == 8 * MSS
    ack(snd, 1)
    assert rec.cc.cwnd == 9 * MSS  # RFC 6582 3.2 step 4: inflate
    ack(snd, snd.max)
    assert not rec.in_recovery  # full ACK: recovery exit


def test_sack_recovery_resends_the_hole_and_counts_pipe() -> None:
    snd, conn = sender()
    snd.output(0.0)
    rec = snd.recovery
    # Segments 2..4 arrive, segment 1 (bytes 1..1000) is lost.
    ack(snd, 1, sack=[(1 + MSS, 1 + 2 * MSS)])
    ack(snd, 1, sack=[(1 + MSS, 1 + 3 * MSS)])
    ack(snd, 1, sack=[(1 + MSS, 1 + 4 * MSS)])
    assert rec.in_recovery
    assert rec.scoreboard.blocks == [[1 + MSS, 1 + 4 * MSS]]
    assert (1, 0x10, MSS) in conn.sent[10:]  # the hole, resent first (RFC 6675 5 (4.3))
    assert rec.high_rxt == 1 + MSS
    assert rec.pipe() == snd.flight_size - 3 * MSS  # the SACKed ones left the network
    assert rec.send_quota() == rec.cc.cwnd - rec.pipe()


def test_early_retransmit_with_two_segments_out() -> None:
    snd, conn = sender(queued=2 * MSS)
    snd.output(0.0)
    assert snd.recovery.dup_thresh() == 1  # RFC 5827: ceil(2000 / 1000) - 1
    ack(snd, 1, sack=[(1 + MSS, 1 + 2 * MSS)])
    assert snd.recovery.in_recovery and "early_retransmit" in conn.kinds()


def test_rto_goes_back_n_with_one_segment_and_backs_off() -> None:
    snd, conn = sender()
    snd.output(0.0)
    rec = snd.recovery
    rec.retries = 1
    rec.go_back_n(1.0, reason="rto")
    assert conn.sent[-1][0] == 1 and len(conn.sent) == 11  # one segment: cwnd = 1 SMSS
    assert rec.cc.cwnd == MSS and rec.rto.rto == 2.0  # RFC 6298 5.5
    assert rec.timers.rtx == 3.0 and rec.timers.pto is None


def test_tail_loss_probe_sends_new_data_or_the_last_segment() -> None:
    snd, conn = sender(queued=3 * MSS)
    snd.output(0.0)
    rec = snd.recovery
    assert rec.timers.pto == 1.0 or rec.timers.pto is None  # no RTT sample: 1 s (not < RTO)
    rec.send_loss_probe(0.5)
    assert rec.tlp_is_retrans and rec.tlp_end_seq == snd.max
    assert conn.sent[-1][0] == 1 + 2 * MSS  # the highest segment sent (RFC 8985 7.3)


def test_a_fin_rides_on_the_last_segment() -> None:
    snd, conn = sender(queued=500)
    snd.fin_queued = True
    snd.output(0.0)
    assert conn.sent == [(1, 0x10 | 0x08 | FIN, 500)]
    assert snd.max == snd.data_end + 1
