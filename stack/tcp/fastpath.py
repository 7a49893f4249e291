"""Header prediction: the fast path of segment arrival on an ESTABLISHED connection.

Owns: the test of whether an arriving segment is one of the two common cases, and
their processing in few steps. Van Jacobson's observation (TCP/IP Illustrated vol. 2,
28.4; RFC 7323 appendix keeps it working with timestamps): on an ESTABLISHED
connection most segments are either the next in-order data, or a pure ACK of new
data, with no flags but ACK/PSH and an unchanged window. (Here in-order data may also
carry a new ACK, processed first, as RFC 9293 3.10.7.4 orders it: request/response
traffic is all such segments.) For those the full processing of 3.10.7.4 reduces to
`predicted` below; anything else -- out of order, SACK blocks, a window change, a
FIN, loss recovery, PAWS doubts, memory pressure -- returns False and takes the full
path (`Connection.on_segment`). Both paths are covered by the same unit scenarios.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stack.tcp.seq import seq_diff
from stack.wire.tcp import ACK, PSH, TCPSegment

if TYPE_CHECKING:
    from stack.tcp.connection import Connection

MASK32 = 0xFFFFFFFF


def predicted(conn: Connection, seg: TCPSegment, now: float) -> bool:
    """Process `seg` on ESTABLISHED `conn` if it is a predicted case; True if done."""
    recovery = conn.recovery
    rcv = conn.rcv
    if seg.flags & ~PSH != ACK or recovery.in_recovery or rcv.peer_fin_seq is not None:
        return False
    snd = conn.snd
    opts = conn.opts
    seq = rcv.nxt
    if seg.seq != seq & MASK32 or seg.window << opts.snd_wscale != snd.wnd:
        return False
    options = seg.options
    ts = options.timestamp
    if opts.ts_ok and (ts is None or seq_diff(ts[0], opts.ts_recent) < 0):
        return False  # PAWS or a missing timestamp: the full path decides
    if options.sack_blocks:
        return False
    una = snd.una
    ack = una + seq_diff(seg.ack, una & MASK32)
    new_ack = ack != una
    if new_ack and not una < ack <= snd.max:
        return False
    payload = seg.payload
    n = len(payload)
    if n:
        # In-order data that fits the window (and may acknowledge new data too,
        # as every request after the first does in a request/response exchange).
        if (rcv.reassembler.pending_bytes or conn.user_closed or rcv.rx_pressure
                or seq + n > rcv.right):
            return False
    elif not new_ack:
        return False  # a duplicate ACK or a window probe: the full path counts it
    if seg.ecn and conn.ecn.ok:
        conn.ecn.on_segment(seg.flags, seg.ecn)  # RFC 3168 6.1.3 (a CE mark)
    if ts is not None and seq <= opts.last_ack_sent:
        opts.ts_recent = ts[0]  # RFC 7323 4.3
    if new_ack:  # RFC 9293 3.10.7.4 "fifth": the ACK before the text
        if recovery.tlp_end_seq is not None:
            recovery.tlp_on_ack(ack, seg, now)
        if recovery.undo_ts is not None:
            recovery.check_undo(ts, now)
        recovery.on_new_ack(ack, now)
        snd.wl1 = seq
        snd.wl2 = ack
    if n:
        rcv.take_in_order(seq, payload, push=bool(seg.flags & PSH))
        if new_ack or snd.data_end > snd.nxt:
            snd.output(now)  # data of ours to send carries the ACK
        if rcv.second_segment_ack_due():
            # RFC 1122 4.2.3.2 / RFC 5681 4.2: ACK at least every second full-sized
            # segment, as the peer sizes them (stack/tcp/rcvmss.py), or, with
            # `defer_acks`, once after the driver's batch.
            if conn.defer_acks:
                rcv.ack_deferred = True
            else:
                conn.send_ack(now)
    else:
        snd.output(now)
    snd.probes_out = 0  # the peer is alive (RFC 1122 4.2.2.17)
    conn.keepalive.heard(now)  # RFC 1122 4.2.3.6
    return True
