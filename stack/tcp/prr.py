"""Proportional Rate Reduction (RFC 6937), sans-IO.

During fast recovery the sender must cut its sending rate to the new ssthresh that
congestion control chose (NewReno: half, CUBIC: 0.7 of the window). RFC 5681 does
that by stopping for half a round trip and then sending one segment per ACK; RFC
6675 by sending as long as ``cwnd - pipe >= 1 SMSS``, which bursts when pipe falls
after a big loss. PRR spreads the reduction over the recovery round trip instead:
for every byte the receiver reports delivered, it sends about ssthresh/RecoverFS
bytes, so that the window arrives at ssthresh just when recovery ends (the
"proportional" part). When losses have taken pipe *below* ssthresh, it grows back
toward ssthresh, but no faster than slow start: by the Reduction Bound.

The connection calls ``start`` when it enters recovery (after congestion control
set ssthresh), ``on_ack`` on every ACK during recovery, ``on_sent`` for every byte
it (re)transmits, and sends at most ``sndcnt`` bytes in response to that ACK. Any
congestion control that chooses an ssthresh works (NewReno, CUBIC).

RFC 6937 section 3, the algorithm, in bytes::

    At the start of recovery:   prr_delivered = prr_out = 0; RecoverFS = snd.nxt - snd.una
    On every ACK in recovery:   prr_delivered += DeliveredData
                                if pipe > ssthresh:              # proportional part
                                    sndcnt = CEIL(prr_delivered * ssthresh / RecoverFS) - prr_out
                                else:                            # reduction bound
                                    CRB:  limit = prr_delivered - prr_out
                                    SSRB: limit = MAX(prr_delivered - prr_out, DeliveredData) + MSS
                                    sndcnt = MIN(ssthresh - pipe, limit)
    On any (re)transmission:    prr_out += data sent
"""

from __future__ import annotations


class PRR:
    """RFC 6937 state for one recovery episode (section 3)."""

    def __init__(self, mss: int, conservative: bool = False) -> None:
        self.mss = mss
        # RFC 6937 section 3: PRR-SSRB (slow start reduction bound) is the default
        # it recommends; PRR-CRB (conservative) when asked for.
        self.conservative = conservative
        self.active = False
        self.ssthresh = 0
        self.recover_fs = 0  # RecoverFS: FlightSize at the start of recovery
        self.prr_delivered = 0  # bytes the receiver reported delivered during recovery
        self.prr_out = 0  # bytes sent during recovery
        self.sndcnt = 0  # what the last ACK allows to send (bytes)

    def start(self, ssthresh: int, flight_size: int) -> None:
        """RFC 6937 section 3 "Initialization on entering recovery": ssthresh is
        what congestion control chose; RecoverFS = snd.nxt - snd.una."""
        self.active = True
        self.ssthresh = ssthresh
        self.recover_fs = max(flight_size, 1)
        self.prr_delivered = 0
        self.prr_out = 0
        self.sndcnt = 0

    def on_ack(self, delivered: int, pipe: int) -> int:
        """RFC 6937 section 3 "On every ACK during recovery": `delivered` is
        DeliveredData (the change in snd.una plus the change in SACKed bytes),
        `pipe` the RFC 6675 estimate of bytes in flight, after this ACK. Returns
        sndcnt: how many bytes may be sent now (0 or more)."""
        self.prr_delivered += delivered
        if pipe > self.ssthresh:
            # Proportional Rate Reduction: CEIL(prr_delivered * ssthresh / RecoverFS).
            target = -(-self.prr_delivered * self.ssthresh // self.recover_fs)
            sndcnt = target - self.prr_out
        else:
            if self.conservative:
                limit = self.prr_delivered - self.prr_out  # PRR-CRB
            else:
                limit = max(self.prr_delivered - self.prr_out, delivered) + self.mss  # PRR-SSRB
            sndcnt = min(self.ssthresh - pipe, limit)
        self.sndcnt = max(sndcnt, 0)
        return self.sndcnt

    def cwnd(self, pipe: int) -> int:
        """The congestion window that lets exactly sndcnt more out: pipe + sndcnt
        (RFC 6937 section 3 sends sndcnt; Linux expresses it as this cwnd)."""
        return pipe + self.sndcnt

    def on_sent(self, nbytes: int) -> None:
        """RFC 6937 section 3 "On any data transmission or retransmission":
        prr_out += data sent."""
        if self.active:
            self.prr_out += nbytes
            self.sndcnt = max(self.sndcnt - nbytes, 0)

    def end(self) -> int:
        """Recovery is over: cwnd = ssthresh, the window PRR has been steering toward
        (RFC 6937 section 3; Linux's tcp_end_cwnd_reduction). Returns it."""
        self.active = False
        return self.ssthresh
