"""BBR congestion control (version 1), driven by delivery-rate samples.

Loss-based algorithms (NewReno, CUBIC) read a lost segment as "the network is full"
and halve the window. On a path that drops packets at random, without congestion,
that leaves them with a window of two or three segments, and most losses are then
found only by the retransmission timer. BBR (Cardwell et al., "BBR: Congestion-Based
Congestion Control", ACM Queue 2016; draft-cardwell-iccrg-bbr-congestion-control-00)
instead *models* the path with two numbers it measures:

* **BtlBw**, the bottleneck bandwidth: the maximum delivery rate seen over the last
  ``BTLBW_ROUNDS`` round trips (the samples come from stack/tcp/rate.py);
* **RTprop**, the round-trip propagation time: the minimum RTT over the last
  ``RTPROP_WINDOW`` seconds.

Their product is the bandwidth-delay product (BDP), the data the path holds without a
queue. The window is a multiple of it, ``cwnd_gain * BDP``, whatever the loss rate.

The modes (draft section 4.3):

==============  ===============================================================
``startup``     grow the window by what each ACK delivers (doubling per round
                trip) until BtlBw stops growing by 25% for 3 rounds ("full pipe")
``drain``       a window of 1 BDP until what is in flight fits it
``probe_bw``    the steady state: a window of ``cwnd_gain`` (2) BDP
``probe_rtt``   every ``RTPROP_WINDOW`` without a new minimum: 4 segments for
                ``PROBE_RTT_TIME`` and a round trip, to measure RTprop again
==============  ===============================================================

On loss (draft section 4.2.3.4-5) BBR only conserves packets for the first round
trip of recovery (the window is what is in flight plus what the ACK delivered) and
takes back its prior window when recovery ends; a timeout cuts the window to one
segment (RFC 5681 section 3.1's loss window) and lets it grow back the same way.

What is not here: tcplab has no pacer, so BBR's pacing gains (the 1.25/0.75 probing
cycle of ``probe_bw`` and the draining pace of ``drain``) have nothing to act on; the
window alone bounds the sending, and ``drain`` uses a window of one BDP instead. The
samples need SACK (RACK's per-segment records, stack/tcp/rack.py, carry their
snapshots); without SACK, BBR falls back to slow start and halving on loss.

Sizes are bytes; times are seconds on the caller's clock.
"""

from __future__ import annotations

import math
from collections import deque

from stack.tcp.rate import RateSample

from .base import INFINITE_SSTHRESH, ByteWindowMss, initial_window

# Draft section 4.1.1.3: BtlBw is a windowed maximum over 10 round trips ("BtlBwFilterLen").
BTLBW_ROUNDS = 10
# Draft section 4.1.2.3: RTprop is a windowed minimum over 10 seconds ("RTpropFilterLen").
RTPROP_WINDOW = 10.0
# Draft section 4.3.4: ProbeRTT holds the window at 4 segments for 200 ms ("ProbeRTTDuration").
PROBE_RTT_TIME = 0.2
# Draft section 4.2.3.3 ("BBRMinPipeCwnd"): never less than 4 segments, outside recovery.
MIN_PIPE_SEGMENTS = 4
# The window's allowance for segments sent in bursts, as Linux's
# bbr_quantization_budget: three "send quanta", a quantum being what the sender sends
# at BtlBw in about a millisecond (Linux's sk_pacing_shift of 10: rate / 1024 per
# burst), at least 2 segments and at most 64 KB. Without it, on a sub-millisecond
# path, 2 * BDP is a handful of segments: too few for SACK to reveal a loss (RFC 8985
# needs later segments delivered) before the retransmission timer fires.
QUANTA = 3
QUANTUM_TIME = 1 / 1024  # seconds of BtlBw per quantum
QUANTUM_MIN_SEGMENTS = 2
QUANTUM_MAX_BYTES = 65536
# Draft section 4.3.2.1: Startup's gain 2/ln(2), the smallest that doubles the sending
# rate each round trip.
HIGH_GAIN = 2 / math.log(2)
# Draft section 4.3.3: the steady state keeps twice the BDP in flight ("cwnd_gain").
PROBE_BW_CWND_GAIN = 2.0
# Draft section 4.3.2.2: the pipe is full when BtlBw grew less than 25% in 3 rounds.
FULL_BW_GROWTH = 1.25
FULL_BW_ROUNDS = 3


class WindowedMax:
    """The maximum of the values seen in the last `window` rounds (a monotonic queue:
    each value is kept only while no larger, newer one exists)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._entries: deque[tuple[int, float]] = deque()  # (round, value), values decreasing

    def update(self, round_count: int, value: float) -> None:
        entries = self._entries
        while entries and entries[-1][1] <= value:
            entries.pop()
        entries.append((round_count, value))
        while entries[0][0] <= round_count - self.window:
            entries.popleft()

    @property
    def best(self) -> float:
        return self._entries[0][1] if self._entries else 0.0


class Bbr(ByteWindowMss):
    """BBR v1 for one connection; fits the CongestionControl protocol (base.py) and
    takes delivery-rate samples through `on_rate_sample`.

    >>> cc = Bbr(mss=1000)
    >>> cc.cwnd, cc.mode                       # RFC 6928 IW10, then Startup
    (10000, 'startup')
    """

    name: str = "bbr"

    def __init__(self, mss: int) -> None:
        if mss <= 0:
            raise ValueError("mss must be positive")
        self._mss = mss
        self._fresh = True
        self.cwnd = initial_window(mss)
        self.ssthresh = INFINITE_SSTHRESH  # BBR does not use ssthresh (Linux: infinite)
        self.mode = "startup"
        self.btlbw = WindowedMax(BTLBW_ROUNDS)
        self.rtprop: float | None = None
        self.rtprop_stamp = 0.0
        # Round trips (draft section 4.1.1.1): a round ends when a segment sent after
        # the previous round's end is delivered.
        self.round_count = 0
        self.next_round_delivered = 0
        self.round_start = False
        # Full-pipe detection (section 4.3.2.2).
        self.full_bw = 0.0
        self.full_bw_count = 0
        self.filled_pipe = False
        # Loss recovery (section 4.2.3.4): the window before it, and packet conservation
        # for the first round of an episode.
        self.prior_cwnd = 0
        self.in_recovery = False
        self.conservation = False
        self.conservation_until = 0
        # ProbeRTT (section 4.3.4).
        self.probe_rtt_done: float | None = None
        self.probe_rtt_round_done = False
        self.has_samples = False

    # ------------------------------------------------------------------ model

    @property
    def bdp(self) -> int | None:
        """BtlBw * RTprop in bytes, once both are measured (draft section 4.2.3.2)."""
        bw = self.btlbw.best
        if self.rtprop is None or bw <= 0:
            return None
        return int(bw * self.rtprop)

    @property
    def cwnd_gain(self) -> float:
        if self.mode == "startup":
            return HIGH_GAIN
        if self.mode == "drain":
            return 1.0
        return PROBE_BW_CWND_GAIN

    def target_cwnd(self) -> int:
        """Draft section 4.2.3.2 ``BBRInflight``: cwnd_gain * BDP plus the burst
        allowance (``QUANTA`` send quanta), at least the minimum pipe; the initial
        window while nothing is measured."""
        bdp = self.bdp
        if bdp is None:
            return initial_window(self._mss)
        target = int(self.cwnd_gain * bdp) + QUANTA * self.send_quantum()
        return max(target, MIN_PIPE_SEGMENTS * self._mss)

    def send_quantum(self) -> int:
        """Bytes sent in one burst at BtlBw (see ``QUANTA``)."""
        quantum = min(int(self.btlbw.best * QUANTUM_TIME), QUANTUM_MAX_BYTES)
        return max(quantum, QUANTUM_MIN_SEGMENTS * self._mss)

    # --------------------------------------------------------------- samples

    def on_rate_sample(self, rs: RateSample, now: float) -> None:
        """One ACK's delivery-rate sample (stack/tcp/rate.py): update the model, the
        mode, and the window (draft section 4.2.3.6 ``BBRSetCwnd``)."""
        self._fresh = False
        self.has_samples = True
        self._update_round(rs)
        self._update_btlbw(rs)
        self._update_rtprop(rs, now)
        self._check_full_pipe(rs)
        self._update_mode(rs, now)
        self._set_cwnd(rs)

    def _update_round(self, rs: RateSample) -> None:
        """Section 4.1.1.1: a new round begins when the sampled flight left after the
        last round began."""
        self.round_start = False
        if rs.delivered > 0 and rs.prior_delivered >= self.next_round_delivered:
            self.next_round_delivered = rs.total_delivered
            self.round_count += 1
            self.round_start = True

    def _update_btlbw(self, rs: RateSample) -> None:
        """Section 4.1.1.3: app-limited samples count only if they raise the maximum
        (they show at least that much bandwidth)."""
        rate = rs.delivery_rate
        if rate > 0 and (not rs.app_limited or rate >= self.btlbw.best):
            self.btlbw.update(self.round_count, rate)

    def _update_rtprop(self, rs: RateSample, now: float) -> None:
        """Section 4.1.2.3: a windowed minimum; an expired one starts ProbeRTT."""
        expired = self.rtprop is not None and now > self.rtprop_stamp + RTPROP_WINDOW
        if rs.rtt is not None and rs.rtt > 0 and (
                self.rtprop is None or rs.rtt <= self.rtprop or expired):
            self.rtprop = rs.rtt
            self.rtprop_stamp = now
        if expired and self.mode != "probe_rtt":
            self._enter_probe_rtt()

    def _check_full_pipe(self, rs: RateSample) -> None:
        """Section 4.3.2.2: once per round, outside app-limited phases."""
        if self.filled_pipe or not self.round_start or rs.app_limited:
            return
        bw = self.btlbw.best
        if bw >= self.full_bw * FULL_BW_GROWTH:
            self.full_bw = bw
            self.full_bw_count = 0
            return
        self.full_bw_count += 1
        if self.full_bw_count >= FULL_BW_ROUNDS:
            self.filled_pipe = True

    def _update_mode(self, rs: RateSample, now: float) -> None:
        """Sections 4.3.2-4.3.4: Startup -> Drain -> ProbeBW, and ProbeRTT's exit."""
        if self.mode == "startup" and self.filled_pipe:
            self.mode = "drain"
        if self.mode == "drain":
            bdp = self.bdp
            if bdp is None or rs.in_flight <= bdp:
                self.mode = "probe_bw"
        if self.mode == "probe_rtt":
            if self.probe_rtt_done is None:
                if rs.in_flight <= MIN_PIPE_SEGMENTS * self._mss:
                    self.probe_rtt_done = now + PROBE_RTT_TIME
                    self.probe_rtt_round_done = False
                    self.next_round_delivered = rs.total_delivered
            else:
                if self.round_start:
                    self.probe_rtt_round_done = True
                if self.probe_rtt_round_done and now >= self.probe_rtt_done:
                    self.rtprop_stamp = now
                    self.cwnd = max(self.cwnd, self.prior_cwnd)
                    self.probe_rtt_done = None
                    self.mode = "probe_bw" if self.filled_pipe else "startup"

    def _enter_probe_rtt(self) -> None:
        self.prior_cwnd = max(self.prior_cwnd, self.cwnd) if self.in_recovery else self.cwnd
        self.mode = "probe_rtt"
        self.probe_rtt_done = None

    def _set_cwnd(self, rs: RateSample) -> None:
        """Section 4.2.3.4-4.2.3.6: recovery first (conservation, then restore), else
        grow toward the target by what was delivered."""
        mss = self._mss
        cwnd = self.cwnd
        if rs.newly_lost:
            cwnd = max(cwnd - rs.newly_lost, mss)  # section 4.2.3.4: losses leave the pipe
        if rs.in_recovery and not self.in_recovery:
            # Entering recovery: conserve packets for one round trip.
            self.in_recovery = True
            self.prior_cwnd = max(self.prior_cwnd, self.cwnd)
            self.conservation = True
            self.conservation_until = rs.total_delivered + rs.in_flight
            cwnd = rs.in_flight + max(rs.newly_delivered, mss)
        elif not rs.in_recovery and self.in_recovery:
            # Recovery is over: restore the window it started with.
            self.in_recovery = False
            self.conservation = False
            cwnd = max(cwnd, self.prior_cwnd)
            self.prior_cwnd = 0
        if self.conservation and rs.total_delivered >= self.conservation_until:
            self.conservation = False
        if self.conservation:
            cwnd = max(cwnd, rs.in_flight + rs.newly_delivered)
        elif rs.newly_delivered:
            target = self.target_cwnd()
            if self.filled_pipe:
                cwnd = min(cwnd + rs.newly_delivered, target)
            elif cwnd < target or rs.total_delivered < initial_window(mss):
                cwnd += rs.newly_delivered
            cwnd = max(cwnd, MIN_PIPE_SEGMENTS * mss)
        if self.mode == "probe_rtt":
            cwnd = min(cwnd, MIN_PIPE_SEGMENTS * mss)
        self.cwnd = max(cwnd, mss)

    # ------------------------------------------------- the four protocol calls

    def on_ack(self, acked: int, now: float, rtt: float | None) -> None:
        """New data acknowledged outside recovery. With rate samples the window is set
        there; without them (no SACK), slow start."""
        if acked <= 0 or self.has_samples:
            return
        self._fresh = False
        self.cwnd += acked

    def on_congestion(self, flight_size: int, now: float) -> None:
        """Loss detected. With samples, the next sample (in recovery) starts packet
        conservation; without them, halve as Reno does (RFC 5681 3.2)."""
        self._fresh = False
        if not self.has_samples:
            self.cwnd = max(flight_size // 2, 2 * self._mss)

    def on_timeout(self, flight_size: int, now: float) -> None:
        """Retransmission timeout: remember the window, then the loss window of one
        segment (RFC 5681 section 3.1; draft section 4.2.3.4); it grows back from
        the ACKs and recovery's end restores the prior window."""
        self._fresh = False
        if not self.in_recovery:
            self.prior_cwnd = max(self.prior_cwnd, self.cwnd)
            self.in_recovery = True
            self.conservation = False
        self.cwnd = self._mss

    def on_recovery_exit(self, flight_size: int, now: float) -> None:
        """Fast recovery ended. The samples see it too (``in_recovery``) and restore
        the window there; without samples, the window stays as it is."""
        self._fresh = False

    def snapshot(self) -> dict[str, float]:
        """The window and the model, for event logs and plots."""
        return {
            "cwnd": float(self.cwnd),
            "ssthresh": float(self.ssthresh),
            "btlbw": round(self.btlbw.best, 1),
            "rtprop": round(self.rtprop, 6) if self.rtprop is not None else 0.0,
        }
