"""The TCP options of one connection: what the handshake settles, and what each
segment carries.

Owns: the inputs of the send MSS (the peer's MSS option, the path MTU, the
timestamp option's cost; RFC 9293 3.7.1, RFC 1191) and the sender's segment size
they give; window scaling (RFC 7323 section 2); timestamps (RFC 7323 section 3):
our TSval clock, TS.Recent and Last.ACK.sent for the echo and PAWS (section 4.3,
5); SACK-permitted (RFC 2018 section 2); and the building of the options field of
every segment we send, SYNs included, with the receiver's SACK blocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stack.wire.tcp import TCPOptions, TCPSegment

if TYPE_CHECKING:
    from stack.tcp.config import TcpConfig
    from stack.tcp.receiver import Receiver
    from stack.tcp.sender import Sender

MASK32 = 0xFFFFFFFF
TS_OPTION_LEN = 12  # NOP NOP TS(10): what the timestamp option costs every segment


def pick_rcv_wscale(recv_buffer: int) -> int:
    """RFC 7323 2.3: the smallest shift that lets the window cover the buffer."""
    shift = 0
    while (recv_buffer >> shift) > 0xFFFF and shift < 14:
        shift += 1
    return shift


class Options:
    """Negotiated options and the options field of our segments."""

    def __init__(self, config: TcpConfig, snd: Sender, rcv: Receiver, *, ts_offset: int,
                 path_mss: int | None) -> None:  # fmt: skip
        self.config = config
        self.snd = snd
        self.rcv = rcv
        self.offered_ws = config.window_scaling
        self.offered_ts = config.timestamps
        self.offered_sack = config.sack
        # The three inputs of the send MSS: whoever changes one calls `recompute_mss`,
        # which sets the sender's `mss` and `max_segment` (read by the data path).
        self.path_mss = path_mss if path_mss is not None else config.mss
        self.peer_mss = config.default_peer_mss
        self.ts_ok = False  # timestamps agreed: every segment carries them
        self.recompute_mss()
        self.snd_wscale = 0  # shift applied to windows the peer sends us
        self.snd_wscale_offered = False  # the peer's SYN carried a window scale option
        self.sack_ok = False
        self.ts_recent = 0  # RFC 7323 4.3
        self.ts_offset = ts_offset
        self.last_ack_sent = 0

    def recompute_mss(self) -> None:
        """RFC 9293 3.7.1 effective send MSS, less the options every segment carries;
        and the largest segment we build: one MSS, or many with segmentation offload."""
        mss = min(self.peer_mss, self.path_mss)
        if self.ts_ok:
            mss -= TS_OPTION_LEN
        self.snd.mss = mss = max(mss, 64)
        tso = self.config.tso_max
        self.snd.max_segment = mss * (tso // mss) if tso > mss else mss

    def ts_now(self, now: float) -> int:
        """Our TSval at time `now` (RFC 7323 section 5.4: a millisecond clock)."""
        return (int(now * 1000) + self.ts_offset) & MASK32

    def take_syn(self, seg: TCPSegment) -> None:
        """Settle the options the SYN offers (RFC 9293 3.7.1, RFC 7323 2/3, RFC 2018 2)."""
        opts = seg.options
        if opts.mss is not None:
            self.peer_mss = max(opts.mss, 64)
        if opts.wscale is not None and self.offered_ws:
            self.snd_wscale = min(opts.wscale, 14)  # RFC 7323 2.3: larger than 14 means 14
            self.snd_wscale_offered = True
        else:
            self.snd_wscale = 0
            self.rcv.wscale = 0
        self.sack_ok = bool(opts.sack_permitted and self.offered_sack)
        if opts.timestamp is not None and self.offered_ts:
            self.ts_ok = True
            self.ts_recent = opts.timestamp[0]
        self.recompute_mss()

    def lower_path_mss(self, mss: int) -> None:
        """Path MTU discovery found a smaller path MSS (RFC 1191 section 6.3)."""
        self.path_mss = mss
        self.recompute_mss()

    def for_syn(self, now: float, *, answer: bool, echo: int) -> TCPOptions:
        """The options of our SYN, or of a SYN-ACK (`answer`: to a passive open's SYN
        or, in a simultaneous open, to the peer's SYN): an answer offers only what the
        peer's SYN offered (RFC 7323 2.2 and 3.2, RFC 2018 2; issue 17 defect 3).
        `echo` is the TSecr (RFC 7323 3.2: TS.Recent on a SYN-ACK)."""
        opts = TCPOptions(mss=None, wscale=None, sack_permitted=False, sack_blocks=[], timestamp=None)
        mss = self.config.mss
        opts.mss = mss if self.path_mss >= mss else self.path_mss
        self.rcv.advertise_mss(opts.mss)  # the peer's segments are at most this
        if self.offered_ws and (not answer or self.snd_wscale_offered):
            opts.wscale = self.rcv.wscale
        if self.offered_sack and (not answer or self.sack_ok):
            opts.sack_permitted = True
        if self.offered_ts and (not answer or self.ts_ok):
            opts.timestamp = (self.ts_now(now), echo)
        return opts

    def for_segment(self, now: float) -> TCPOptions:
        """The options of any other segment: timestamps, SACK blocks (RFC 2018 3)."""
        opts = TCPOptions(mss=None, wscale=None, sack_permitted=False, sack_blocks=[], timestamp=None)
        if self.ts_ok:
            opts.timestamp = (self.ts_now(now), self.ts_recent)
        rcv = self.rcv
        if self.sack_ok and (rcv.reassembler.pending_bytes or rcv.dsack is not None):
            # RFC 2018 blocks, a D-SACK block first when a duplicate arrived (RFC 2883)
            opts.sack_blocks = rcv.sack_blocks(3 if self.ts_ok else 4)
        return opts

    def sack_len(self) -> int:
        """Bytes the SACK blocks add to the segments `for_segment` builds now."""
        rcv = self.rcv
        if not (self.sack_ok and (rcv.reassembler.pending_bytes or rcv.dsack is not None)):
            return 0
        n = len(rcv.sack_blocks(3 if self.ts_ok else 4))
        return 4 + 8 * n if n else 0  # NOP NOP SACK(2 + 8n)
