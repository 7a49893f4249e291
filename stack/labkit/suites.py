"""The step-by-step tests of the Python swap-in slots (02, 03, 04, 06, 08, 11).

Each scenario gets a :class:`~stack.labkit.steps.Steps` recorder and the thing under
test: the learner's module (checksum, seq), class (reassembler, rto) or congestion
control class. The expected values are worked out by hand from the RFCs, or come from
the small obviously-correct oracles below -- never from the stack's own code, which is
held to the same tests.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from stack.labkit.steps import StepFailed, Steps, Suite
from stack.tcp.congestion import events as cc_events

# ------------------------------------------------------------------- 02: the checksum
CHECKSUM = Suite("checksum")


def naive_sum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 section 4.1, word by word with the end-around carry."""
    if len(data) % 2:
        data += b"\x00"
    total = initial
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _h(data: bytes) -> str:
    return "bytes.fromhex('" + data.hex(" ") + "')" if len(data) <= 24 else f"<{len(data)} bytes>"


# An IPv4 header as ping sends it in the lab: 10.0.1.20 > 10.0.0.2, ICMP, TTL 63,
# checksum 0x5262 in bytes 10-11.
IPV4_HEADER = bytes.fromhex("45000054d43140003f0152620a0001140a000002")


@CHECKSUM.scenario("the sum of nothing is zero; its checksum is 0xFFFF")
def _(s: Steps, m: Any) -> None:
    s.expect("ones_complement_sum(b'')", lambda: m.ones_complement_sum(b""), 0)
    s.expect("internet_checksum(b'')", lambda: m.internet_checksum(b""), 0xFFFF)


@CHECKSUM.scenario("one and two 16-bit words, big-endian")
def _(s: Steps, m: Any) -> None:
    s.expect("ones_complement_sum(b'\\x12\\x34')", lambda: m.ones_complement_sum(b"\x12\x34"), 0x1234)
    s.expect("internet_checksum(b'\\x12\\x34')", lambda: m.internet_checksum(b"\x12\x34"), 0xEDCB)
    s.expect("ones_complement_sum(b'\\x00\\x01\\x00\\x02')",
             lambda: m.ones_complement_sum(b"\x00\x01\x00\x02"), 3)


@CHECKSUM.scenario("a carry out of bit 15 is added back in (end-around carry)")
def _(s: Steps, m: Any) -> None:
    s.expect("ones_complement_sum(b'\\xff\\xff\\x00\\x01')",
             lambda: m.ones_complement_sum(b"\xff\xff\x00\x01"), 0x0001)
    s.expect("ones_complement_sum(b'\\x80\\x00\\x80\\x00')",
             lambda: m.ones_complement_sum(b"\x80\x00\x80\x00"), 0x0001)
    s.expect("ones_complement_sum(b'\\xff\\xfe\\x00\\x05')",
             lambda: m.ones_complement_sum(b"\xff\xfe\x00\x05"), 0x0004)


@CHECKSUM.scenario("RFC 1071 section 3's example")
def _(s: Steps, m: Any) -> None:
    data = bytes.fromhex("0001f203f4f5f6f7")
    s.expect(f"ones_complement_sum({_h(data)})", lambda: m.ones_complement_sum(data), 0xDDF2)
    s.expect(f"internet_checksum({_h(data)})", lambda: m.internet_checksum(data), 0x220D)


@CHECKSUM.scenario("an odd length is padded with one zero byte")
def _(s: Steps, m: Any) -> None:
    s.expect("ones_complement_sum(b'\\x01')", lambda: m.ones_complement_sum(b"\x01"), 0x0100)
    s.expect("ones_complement_sum(b'\\x00\\x01\\xf2')",
             lambda: m.ones_complement_sum(b"\x00\x01\xf2"), 0xF201)
    s.expect("internet_checksum(b'\\xff')", lambda: m.internet_checksum(b"\xff"), 0x00FF)


@CHECKSUM.scenario("zero words sum to 0, all-ones words to 0xFFFF ('negative zero')")
def _(s: Steps, m: Any) -> None:
    s.expect("ones_complement_sum(bytes(6))", lambda: m.ones_complement_sum(bytes(6)), 0)
    s.expect("ones_complement_sum(b'\\xff\\xff')", lambda: m.ones_complement_sum(b"\xff\xff"), 0xFFFF)
    s.expect("ones_complement_sum(b'\\xff' * 8)", lambda: m.ones_complement_sum(b"\xff" * 8), 0xFFFF)
    s.expect("internet_checksum(b'\\xff' * 8)", lambda: m.internet_checksum(b"\xff" * 8), 0)


@CHECKSUM.scenario("initial: continue a sum (the pseudo-header, or an earlier chunk)")
def _(s: Steps, m: Any) -> None:
    s.expect("ones_complement_sum(b'\\x00\\x01', initial=2)",
             lambda: m.ones_complement_sum(b"\x00\x01", initial=2), 3)
    s.expect("ones_complement_sum(b'\\xff\\xff', initial=1)",
             lambda: m.ones_complement_sum(b"\xff\xff", initial=1), 1)
    head, tail = bytes.fromhex("0001f203"), bytes.fromhex("f4f5f6f7")
    first = s.do(f"first = ones_complement_sum({_h(head)})", lambda: m.ones_complement_sum(head))
    s.expect(f"ones_complement_sum({_h(tail)}, initial=first)",
             lambda: m.ones_complement_sum(tail, initial=first), 0xDDF2)
    s.expect(f"internet_checksum({_h(tail)}, initial=first)",
             lambda: m.internet_checksum(tail, initial=first), 0x220D)


@CHECKSUM.scenario("a real IPv4 header verifies to 0, and its checksum can be recomputed")
def _(s: Steps, m: Any) -> None:
    s.expect(f"internet_checksum({_h(IPV4_HEADER)})", lambda: m.internet_checksum(IPV4_HEADER), 0)
    blank = IPV4_HEADER[:10] + b"\x00\x00" + IPV4_HEADER[12:]
    s.note("blank = the same header with bytes 10-11 (the checksum field) set to zero")
    s.expect("internet_checksum(blank)", lambda: m.internet_checksum(blank), 0x5262)


@CHECKSUM.scenario("an ICMP echo request, like ping's, verifies to 0")
def _(s: Steps, m: Any) -> None:
    body = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + bytes(range(56))
    want = ~naive_sum(body) & 0xFFFF
    s.expect("internet_checksum(echo request with a zero checksum field)",
             lambda: m.internet_checksum(body), want)
    packet = body[:2] + struct.pack("!H", want) + body[4:]
    s.expect("internet_checksum(the same with the checksum filled in)",
             lambda: m.internet_checksum(packet), 0)


@CHECKSUM.scenario("bytearray and memoryview slices are read like bytes")
def _(s: Steps, m: Any) -> None:
    data = bytes.fromhex("aa0001f203f4f5f6f7bb")
    s.expect("ones_complement_sum(memoryview(data)[1:9])",
             lambda: m.ones_complement_sum(memoryview(data)[1:9]), 0xDDF2)
    s.expect("ones_complement_sum(bytearray(data[1:9]))",
             lambda: m.ones_complement_sum(bytearray(data[1:9])), 0xDDF2)


@CHECKSUM.scenario("300 random buffers (0..3000 bytes, random initial) match RFC 1071")
def _(s: Steps, m: Any) -> None:
    rng = random.Random(1071)
    for i in range(300):
        data = rng.randbytes(rng.choice([0, 1, 2, 3, 20, 21, rng.randrange(3000)]))
        initial = rng.choice([0, 0, rng.randrange(0x10000)])
        want = naive_sum(data, initial)
        s.expect(f"#{i}: ones_complement_sum(<{len(data)} random bytes>, initial={initial:#x})",
                 partial(m.ones_complement_sum, data, initial), want)
        s.done.pop()  # keep the story short: only a failing buffer is shown
    s.note("300 buffers matched")


@CHECKSUM.scenario("64 KiB (a TSO segment) is summed in well under a second")
def _(s: Steps, m: Any) -> None:
    data = random.Random(64).randbytes(65536)
    start = time.perf_counter()
    s.expect("ones_complement_sum(<65536 random bytes>)", lambda: m.ones_complement_sum(data),
             naive_sum(data))
    took = time.perf_counter() - start
    s.check("time taken", lambda: took, lambda t: t < 0.5, "less than 0.5 s")


# ---------------------------------------------------------- 03: sequence-number arithmetic
SEQ = Suite("seq")


@SEQ.scenario("seq_add: adding within the 32-bit range")
def _(s: Steps, m: Any) -> None:
    s.expect("seq_add(100, 5)", lambda: m.seq_add(100, 5), 105)
    s.expect("seq_add(0, 0)", lambda: m.seq_add(0, 0), 0)
    s.expect("seq_add(1000, -1000)", lambda: m.seq_add(1000, -1000), 0)


@SEQ.scenario("seq_add wraps around at 2**32")
def _(s: Steps, m: Any) -> None:
    s.expect("seq_add(0xFFFFFFFF, 1)", lambda: m.seq_add(0xFFFFFFFF, 1), 0)
    s.expect("seq_add(0xFFFFFFF0, 0x20)", lambda: m.seq_add(0xFFFFFFF0, 0x20), 0x10)
    s.expect("seq_add(5, -10)", lambda: m.seq_add(5, -10), 0xFFFFFFFB)


@SEQ.scenario("seq_diff: a signed distance, without a wrap")
def _(s: Steps, m: Any) -> None:
    s.expect("seq_diff(105, 100)", lambda: m.seq_diff(105, 100), 5)
    s.expect("seq_diff(100, 105)", lambda: m.seq_diff(100, 105), -5)
    s.expect("seq_diff(7, 7)", lambda: m.seq_diff(7, 7), 0)


@SEQ.scenario("seq_diff across the wrap: 5 comes 7 after 0xFFFFFFFE")
def _(s: Steps, m: Any) -> None:
    s.expect("seq_diff(5, 0xFFFFFFFE)", lambda: m.seq_diff(5, 0xFFFFFFFE), 7)
    s.expect("seq_diff(0xFFFFFFFE, 5)", lambda: m.seq_diff(0xFFFFFFFE, 5), -7)
    s.expect("seq_diff(0, 0xFFFFFFFF)", lambda: m.seq_diff(0, 0xFFFFFFFF), 1)


@SEQ.scenario("seq_diff stays in -2**31 .. 2**31-1")
def _(s: Steps, m: Any) -> None:
    s.expect("seq_diff(0x7FFFFFFF, 0)", lambda: m.seq_diff(0x7FFFFFFF, 0), 2**31 - 1)
    s.expect("seq_diff(0x80000000, 0)", lambda: m.seq_diff(0x80000000, 0), -(2**31))
    s.expect("seq_diff(0, 0x80000000)", lambda: m.seq_diff(0, 0x80000000), -(2**31))
    s.expect("seq_diff(0, 0x80000001)", lambda: m.seq_diff(0, 0x80000001), 2**31 - 1)


@SEQ.scenario("comparisons near the wrap (where a < b between ints is wrong)")
def _(s: Steps, m: Any) -> None:
    a, b = 0xFFFFFFF0, 0x10
    s.note("a = 0xFFFFFFF0 is 32 bytes before b = 0x10")
    s.expect("seq_lt(a, b)", lambda: m.seq_lt(a, b), True)
    s.expect("seq_le(a, b)", lambda: m.seq_le(a, b), True)
    s.expect("seq_gt(a, b)", lambda: m.seq_gt(a, b), False)
    s.expect("seq_ge(a, b)", lambda: m.seq_ge(a, b), False)
    s.expect("seq_gt(b, a)", lambda: m.seq_gt(b, a), True)
    s.expect("seq_lt(a, a)", lambda: m.seq_lt(a, a), False)
    s.expect("seq_le(a, a)", lambda: m.seq_le(a, a), True)
    s.expect("seq_ge(b, b)", lambda: m.seq_ge(b, b), True)


@SEQ.scenario("seq_in_window: RCV.NXT =< SEG.SEQ < RCV.NXT + RCV.WND (RFC 9293 3.4)")
def _(s: Steps, m: Any) -> None:
    s.expect("seq_in_window(100, 100, 10)", lambda: m.seq_in_window(100, 100, 10), True)
    s.expect("seq_in_window(109, 100, 10)", lambda: m.seq_in_window(109, 100, 10), True)
    s.expect("seq_in_window(110, 100, 10)", lambda: m.seq_in_window(110, 100, 10), False)
    s.expect("seq_in_window(99, 100, 10)", lambda: m.seq_in_window(99, 100, 10), False)
    s.expect("seq_in_window(100, 100, 0)", lambda: m.seq_in_window(100, 100, 0), False)


@SEQ.scenario("seq_in_window with a window that spans the wrap")
def _(s: Steps, m: Any) -> None:
    s.expect("seq_in_window(3, 0xFFFFFFF0, 100)", lambda: m.seq_in_window(3, 0xFFFFFFF0, 100), True)
    s.expect("seq_in_window(0xFFFFFFF0, 0xFFFFFFF0, 100)",
             lambda: m.seq_in_window(0xFFFFFFF0, 0xFFFFFFF0, 100), True)
    s.expect("seq_in_window(84, 0xFFFFFFF0, 100)", lambda: m.seq_in_window(84, 0xFFFFFFF0, 100), False)
    s.expect("seq_in_window(0xFFFFFFEF, 0xFFFFFFF0, 100)",
             lambda: m.seq_in_window(0xFFFFFFEF, 0xFFFFFFF0, 100), False)
    s.expect("seq_in_window(5, 10, 2**32 - 1)", lambda: m.seq_in_window(5, 10, 2**32 - 1), True)


@SEQ.scenario("1000 random pairs: seq_diff undoes seq_add, and the comparisons agree")
def _(s: Steps, m: Any) -> None:
    rng = random.Random(9293)
    for i in range(1000):
        a = rng.randrange(2**32)
        n = rng.randrange(-(2**31) + 1, 2**31)
        b = (a + n) % 2**32
        s.expect(f"#{i}: seq_add({a:#x}, {n})", partial(m.seq_add, a, n), b)
        s.expect(f"#{i}: seq_diff({b:#x}, {a:#x})", partial(m.seq_diff, b, a), n)
        s.expect(f"#{i}: seq_lt({a:#x}, {b:#x})", partial(m.seq_lt, a, b), n > 0)
        s.expect(f"#{i}: seq_ge({a:#x}, {b:#x})", partial(m.seq_ge, a, b), n <= 0)
        s.expect(f"#{i}: seq_gt({b:#x}, {a:#x})", partial(m.seq_gt, b, a), n > 0)
        s.expect(f"#{i}: seq_le({b:#x}, {a:#x})", partial(m.seq_le, b, a), n <= 0)
        del s.done[-6:]
    s.note("1000 pairs agreed")


# ------------------------------------------------------------------- 04: the reassembler
REASSEMBLER = Suite("reassembler")


def _new(s: Steps, cls: Any, capacity: int) -> Any:
    return s.do(f"r = Reassembler(capacity={capacity})", lambda: cls(capacity))


def _insert(s: Steps, r: Any, index: int, data: bytes, want: bytes) -> None:
    s.expect(f"r.insert({index}, {data!r})", lambda: r.insert(index, data), want, convert=bytes)


def _state(s: Steps, r: Any, next_index: int, pending: int,
           sacks: list[tuple[int, int]] | None = None) -> None:
    s.expect("r.next_index", lambda: r.next_index, next_index)
    s.expect("r.pending_bytes", lambda: r.pending_bytes, pending)
    if sacks is not None:
        s.expect("r.sack_blocks()", lambda: [tuple(b) for b in r.sack_blocks()], sacks)


@REASSEMBLER.scenario("a new reassembler holds nothing")
def _(s: Steps, cls: Any) -> None:
    r = _new(s, cls, 100)
    _state(s, r, 0, 0, [])


@REASSEMBLER.scenario("in-order data comes straight out")
def _(s: Steps, cls: Any) -> None:
    r = _new(s, cls, 100)
    _insert(s, r, 0, b"abc", b"abc")
    _state(s, r, 3, 0)
    _insert(s, r, 3, b"de", b"de")
    _state(s, r, 5, 0, [])


@REASSEMBLER.scenario("early data waits until the hole before it is filled")
def _(s: Steps, cls: Any) -> None:
    r = _new(s, cls, 100)
    _insert(s, r, 3, b"def", b"")
    _state(s, r, 0, 3, [(3, 6)])
    _insert(s, r, 0, b"abc", b"abcdef")
    _state(s, r, 6, 0, [])


@REASSEMBLER.scenario("a filled hole releases only what is contiguous")
def _(s: Steps, cls: Any) -> None:
    r = _new(s, cls, 100)
    _insert(s, r, 2, b"c", b"")
    _insert(s, r, 5, b"f", b"")
    _state(s, r, 0, 2)
    _insert(s, r, 0, b"ab", b"abc")
    _state(s, r, 3, 1, [(5, 6)])
    _insert(s, r, 3, b"de", b"def")
    _state(s, r, 6, 0, [])


@REASSEMBLER.scenario("bytes already delivered are ignored (retransmissions, duplicates)")
def _(s: Steps, cls: Any) -> None:
    r = _new(s, cls, 100)
    _insert(s, r, 0, b"abc", b"abc")
    _insert(s, r, 0, b"abc", b"")
    _insert(s, r, 1, b"bcd", b"d")
    _state(s, r, 4, 0)


@REASSEMBLER.scenario("overlapping early segments are held once")
def _(s: Steps, cls: Any) -> None:
    r = _new(s, cls, 100)
    _insert(s, r, 6, b"gh", b"")
    _insert(s, r, 5, b"fgh", b"")
    _state(s, r, 0, 3, [(5, 8)])
    _insert(s, r, 7, b"hij", b"")
    _state(s, r, 0, 5, [(5, 10)])
    _insert(s, r, 0, b"abcde", b"abcdefghij")
    _state(s, r, 10, 0, [])


@REASSEMBLER.scenario("one segment bridges two held pieces")
def _(s: Steps, cls: Any) -> None:
    r = _new(s, cls, 100)
    _insert(s, r, 2, b"c", b"")
    _insert(s, r, 6, b"g", b"")
    _state(s, r, 0, 2)
    _insert(s, r, 1, b"bcdefgh", b"")
    _state(s, r, 0, 7, [(1, 8)])
    _insert(s, r, 0, b"a", b"abcdefgh")
    _state(s, r, 8, 0, [])


@REASSEMBLER.scenario("empty segments change nothing")
def _(s: Steps, cls: Any) -> None:
    r = _new(s, cls, 100)
    _insert(s, r, 0, b"", b"")
    _insert(s, r, 5, b"", b"")
    _state(s, r, 0, 0, [])


@REASSEMBLER.scenario("capacity: bytes at or beyond next_index + capacity are dropped")
def _(s: Steps, cls: Any) -> None:
    r = _new(s, cls, 4)
    _insert(s, r, 2, b"cdefgh", b"")
    _state(s, r, 0, 2, [(2, 4)])
    _insert(s, r, 10, b"zz", b"")
    _state(s, r, 0, 2)
    _insert(s, r, 0, b"abcdefgh", b"abcd")
    _state(s, r, 4, 0)
    _insert(s, r, 4, b"efgh", b"efgh")
    _state(s, r, 8, 0, [])


@REASSEMBLER.scenario("SACK blocks: the most recently changed first (RFC 2018 section 4)")
def _(s: Steps, cls: Any) -> None:
    r = _new(s, cls, 100)
    _insert(s, r, 10, b"x", b"")
    _insert(s, r, 20, b"y", b"")
    _insert(s, r, 30, b"z", b"")
    _state(s, r, 0, 3, [(30, 31), (20, 21), (10, 11)])
    _insert(s, r, 11, b"x", b"")
    _state(s, r, 0, 4, [(10, 12), (30, 31), (20, 21)])
    s.expect("r.sack_blocks(2)", lambda: [tuple(b) for b in r.sack_blocks(2)], [(10, 12), (30, 31)])
    _insert(s, r, 0, b"0123456789", b"0123456789x" + b"x")
    _state(s, r, 12, 2, [(30, 31), (20, 21)])


@REASSEMBLER.scenario("memoryview segments (slices of a packet buffer) work too")
def _(s: Steps, cls: Any) -> None:
    r = _new(s, cls, 100)
    packet = b"HEADERhello world"
    s.expect("r.insert(0, memoryview(packet)[6:11])",
             lambda: r.insert(0, memoryview(packet)[6:11]), b"hello", convert=bytes)
    s.expect("r.insert(7, memoryview(packet)[13:])", lambda: r.insert(7, memoryview(packet)[13:]),
             b"", convert=bytes)
    s.expect("r.insert(5, memoryview(packet)[11:13])",
             lambda: r.insert(5, memoryview(packet)[11:13]), b" world", convert=bytes)


@REASSEMBLER.scenario("200 kB in shuffled, duplicated, overlapping pieces comes out exactly")
def _(s: Steps, cls: Any) -> None:
    rng = random.Random(793)
    stream = rng.randbytes(200_000)
    pieces = []
    pos = 0
    while pos < len(stream):
        n = rng.randrange(1, 3000)
        pieces.append((pos, n))
        pos += n
    pieces += [(rng.randrange(len(stream)), rng.randrange(1, 3000)) for _ in range(len(pieces) // 3)]
    # Shuffle within a sliding window, as a network reorders: nothing arrives too early.
    order = sorted(range(len(pieces)), key=lambda i: pieces[i][0] + rng.randrange(40_000))
    r = _new(s, cls, 65536)
    out = bytearray()
    for k, i in enumerate(order):
        start, n = pieces[i]
        chunk = stream[start : start + n]
        got = s.do(f"#{k}: r.insert({start}, <{len(chunk)} bytes>)",
                   partial(r.insert, start, chunk))
        out += bytes(got)
        s.done.pop()
        if bytes(out) != stream[: len(out)]:
            bad = next(j for j in range(len(out)) if out[j] != stream[j])
            raise StepFailed(f"#{k}: r.insert({start}, <{len(chunk)} bytes>)",
                             f"the bytes returned so far differ from the stream at index {bad}")
    rest = len(stream) - len(out)
    if rest:  # pieces past the capacity were dropped: the sender retransmits them
        _insert(s, r, len(out), stream[len(out):], stream[len(out):])
        out += stream[len(out):]
    s.note(f"{len(order)} pieces inserted")
    s.expect("the whole stream came out, in order", lambda: bytes(out) == stream, True)
    _state(s, r, len(stream), 0, [])


@REASSEMBLER.scenario("speed: 20 MB in 1448-byte segments, every 10th one late")
def _(s: Steps, cls: Any) -> None:
    mss = 1448
    segment = bytes(mss)
    r = _new(s, cls, 1 << 20)
    count = 20_000_000 // mss
    start = time.perf_counter()

    def run() -> int:
        total = 0
        held: list[int] = []
        for i in range(count):
            if i % 10 == 3:
                held.append(i)
                continue
            total += len(r.insert(i * mss, segment))
            if held and i % 10 == 9:
                total += len(r.insert(held.pop() * mss, segment))
        return total

    delivered = s.do(f"insert {count} segments, late ones 6 segments late", run)
    took = time.perf_counter() - start
    s.expect("bytes delivered", lambda: delivered, count * mss)
    s.check("time taken", lambda: round(took, 2), lambda t: t < 10.0,
            "under 10 s (the reference needs well under 1 s)")


# -------------------------------------------------------------------- 06: the RTO estimator
RTO = Suite("rto")


def _rto(s: Steps, e: Any, want: float) -> None:
    s.expect("e.rto", lambda: e.rto, want, rel=1e-9, abs_tol=1e-9)


@RTO.scenario("before any sample: RTO is 1 s, SRTT and RTTVAR unknown (RFC 6298 2.1)")
def _(s: Steps, cls: Any) -> None:
    e = s.do("e = RTOEstimator()", cls)
    _rto(s, e, 1.0)
    s.expect("e.srtt", lambda: e.srtt, None)
    s.expect("e.rttvar", lambda: e.rttvar, None)


@RTO.scenario("the first sample R: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4*RTTVAR (2.2)")
def _(s: Steps, cls: Any) -> None:
    e = s.do("e = RTOEstimator()", cls)
    s.do("e.sample(0.1)", lambda: e.sample(0.1))
    s.expect("e.srtt", lambda: e.srtt, 0.1, rel=1e-9)
    s.expect("e.rttvar", lambda: e.rttvar, 0.05, rel=1e-9)
    _rto(s, e, 0.3)


@RTO.scenario("the next samples: RTTVAR first, with the old SRTT (2.3)")
def _(s: Steps, cls: Any) -> None:
    e = s.do("e = RTOEstimator()", cls)
    s.do("e.sample(0.1)", lambda: e.sample(0.1))
    s.do("e.sample(0.2)", lambda: e.sample(0.2))
    s.note("RTTVAR = 3/4 * 0.05 + 1/4 * |0.1 - 0.2| = 0.0625; SRTT = 7/8 * 0.1 + 1/8 * 0.2")
    s.expect("e.rttvar", lambda: e.rttvar, 0.0625, rel=1e-9)
    s.expect("e.srtt", lambda: e.srtt, 0.1125, rel=1e-9)
    _rto(s, e, 0.3625)
    s.do("e.sample(0.05)", lambda: e.sample(0.05))
    s.expect("e.rttvar", lambda: e.rttvar, 0.75 * 0.0625 + 0.25 * 0.0625, rel=1e-9)
    s.expect("e.srtt", lambda: e.srtt, 0.875 * 0.1125 + 0.125 * 0.05, rel=1e-9)
    _rto(s, e, 0.875 * 0.1125 + 0.125 * 0.05 + 4 * 0.0625)


@RTO.scenario("RTO is never below min_rto (2.4)")
def _(s: Steps, cls: Any) -> None:
    e = s.do("e = RTOEstimator(min_rto=0.2)", lambda: cls(min_rto=0.2))
    s.do("e.sample(0.001)", lambda: e.sample(0.001))
    _rto(s, e, 0.2)
    e = s.do("e = RTOEstimator(min_rto=1.0)", lambda: cls(min_rto=1.0))
    s.do("e.sample(0.1)", lambda: e.sample(0.1))
    _rto(s, e, 1.0)


@RTO.scenario("RTO is never above max_rto (2.5)")
def _(s: Steps, cls: Any) -> None:
    e = s.do("e = RTOEstimator(max_rto=60.0)", lambda: cls(max_rto=60.0))
    s.do("e.sample(30.0)", lambda: e.sample(30.0))
    _rto(s, e, 60.0)


@RTO.scenario("the clock granularity G: RTO = SRTT + max(G, 4*RTTVAR)")
def _(s: Steps, cls: Any) -> None:
    e = s.do("e = RTOEstimator(min_rto=0.001, granularity=0.01)",
             lambda: cls(min_rto=0.001, granularity=0.01))
    s.do("e.sample(0.05) 60 times", lambda: [e.sample(0.05) for _ in range(60)])
    s.note("RTTVAR has shrunk to almost 0, so G decides")
    _rto(s, e, 0.06)


@RTO.scenario("a timeout doubles RTO (5.5)")
def _(s: Steps, cls: Any) -> None:
    e = s.do("e = RTOEstimator()", cls)
    s.do("e.backoff()", e.backoff)
    _rto(s, e, 2.0)
    s.do("e.backoff()", e.backoff)
    _rto(s, e, 4.0)
    s.do("e.sample(0.1)", lambda: e.sample(0.1))
    _rto(s, e, 0.3)
    s.do("e.backoff()", e.backoff)
    _rto(s, e, 0.6)


@RTO.scenario("backoff stops at max_rto")
def _(s: Steps, cls: Any) -> None:
    e = s.do("e = RTOEstimator(max_rto=5.0)", lambda: cls(max_rto=5.0))
    for want in (2.0, 4.0, 5.0, 5.0):
        s.do("e.backoff()", e.backoff)
        _rto(s, e, want)


@RTO.scenario("a new sample ends the backoff: RTO is computed from SRTT and RTTVAR again")
def _(s: Steps, cls: Any) -> None:
    e = s.do("e = RTOEstimator()", cls)
    s.do("e.sample(0.1)", lambda: e.sample(0.1))
    s.do("e.backoff(); e.backoff()", lambda: (e.backoff(), e.backoff()))
    _rto(s, e, 1.2)
    s.do("e.sample(0.1)", lambda: e.sample(0.1))
    s.note("RTTVAR = 3/4 * 0.05 = 0.0375, SRTT = 0.1")
    _rto(s, e, 0.25)


@RTO.scenario("initial_rto is configurable, and clamped like any RTO")
def _(s: Steps, cls: Any) -> None:
    e = s.do("e = RTOEstimator(initial_rto=3.0)", lambda: cls(initial_rto=3.0))
    _rto(s, e, 3.0)
    e = s.do("e = RTOEstimator(min_rto=0.5, initial_rto=0.1)",
             lambda: cls(min_rto=0.5, initial_rto=0.1))
    _rto(s, e, 0.5)


@RTO.scenario("a realistic run: 1000 samples around 20 ms, with one spike")
def _(s: Steps, cls: Any) -> None:
    e = s.do("e = RTOEstimator(min_rto=0.001)", lambda: cls(min_rto=0.001))
    rng = random.Random(6298)
    srtt = rttvar = None
    for i in range(1000):
        r = 0.5 if i == 500 else rng.uniform(0.015, 0.025)
        s.do(f"e.sample({r:.4f})  # sample #{i}", partial(e.sample, r))
        s.done.pop()
        if srtt is None or rttvar is None:
            srtt, rttvar = r, r / 2
        else:
            rttvar = 0.75 * rttvar + 0.25 * abs(srtt - r)
            srtt = 0.875 * srtt + 0.125 * r
        if i in (0, 499, 500, 501, 999):
            s.note(f"after sample #{i} ({r:.4f})")
            s.expect("e.srtt", lambda: e.srtt, srtt, rel=1e-6)
            s.expect("e.rttvar", lambda: e.rttvar, rttvar, rel=1e-6)
            _rto_close = srtt + max(0.001, 4 * rttvar)
            s.expect("e.rto", lambda: e.rto, _rto_close, rel=1e-6)


# ------------------------------------------------------------- 08: congestion control
CONGESTION = Suite("congestion")
MSS = 1000


def _cc(s: Steps, cls: Any, mss: int = MSS) -> Any:
    return s.do(f"cc = ALGORITHM(mss={mss})", lambda: cls(mss))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _above(last: int) -> Callable[[Any], bool]:
    return lambda v: _whole(v) and v > last


def _grew_at_most_half(before: int) -> Callable[[Any], bool]:
    return lambda v: _whole(v) and before <= v <= 1.5 * before + MSS


def _ack_window(cc: Any, now: float, rtt: float) -> float:
    """Acknowledge one cwnd of data in MSS pieces spread over one RTT; returns the new now."""
    window = cc.cwnd
    pieces = max(1, window // MSS)
    for _ in range(pieces):
        now += rtt / pieces
        cc.on_ack(MSS, now, rtt)
    return now


@CONGESTION.scenario("a new controller: name, mss, whole-byte cwnd within the initial window")
def _(s: Steps, cls: Any) -> None:
    cc = _cc(s, cls)
    s.check("cc.name", lambda: cc.name, lambda v: isinstance(v, str) and v != "", "a non-empty str")
    s.expect("cc.mss", lambda: cc.mss, MSS)
    s.check("cc.cwnd", lambda: cc.cwnd, lambda v: _whole(v) and MSS <= v <= 10 * MSS,
            "an int from 1 to 10 MSS (RFC 5681 3.1, RFC 6928)")
    s.check("cc.ssthresh", lambda: cc.ssthresh, lambda v: _whole(v) and v >= 65535,
            "an int, 'arbitrarily high' at first (RFC 5681 3.1): at least 65535")


@CONGESTION.scenario("slow start: cwnd grows with every ACK, and about doubles per round trip")
def _(s: Steps, cls: Any) -> None:
    cc = _cc(s, cls)
    before = s.do("w = cc.cwnd", lambda: cc.cwnd)
    last = before
    now = 0.0
    for i in range(before // MSS):
        now += 0.01
        s.do(f"cc.on_ack({MSS}, now={now:.2f}, rtt=0.1)  # ACK {i + 1}",
             partial(cc.on_ack, MSS, now, 0.1))
        s.check("cc.cwnd", lambda: cc.cwnd, _above(last),
                f"more than {last}")
        last = cc.cwnd
    s.check("cc.cwnd after one window of ACKs", lambda: cc.cwnd,
            lambda v: 1.5 * before <= v <= 2 * before + 2 * MSS, f"about 2 * {before}")


@CONGESTION.scenario("on_congestion (3 duplicate ACKs): ssthresh drops below the flight, cwnd = ssthresh")
def _(s: Steps, cls: Any) -> None:
    cc = _cc(s, cls)
    now = 0.0
    for _ in range(3):
        now = _ack_window(cc, now, 0.1)
    s.do("grow cwnd by three windows of ACKs", lambda: None)
    flight = s.do("flight = cc.cwnd", lambda: cc.cwnd)
    s.do(f"cc.on_congestion({flight}, now={now + 0.01:.2f})",
         lambda: cc.on_congestion(flight, now + 0.01))
    s.check("cc.ssthresh", lambda: cc.ssthresh,
            lambda v: _whole(v) and 2 * MSS <= v <= 0.85 * flight,
            f"an int from 2 MSS to 0.85 * {flight} (a multiplicative decrease)")
    s.expect("cc.cwnd", lambda: cc.cwnd, cc.ssthresh)
    s.do(f"cc.on_congestion({MSS}, now={now + 0.02:.2f})  # a tiny flight",
         lambda: cc.on_congestion(MSS, now + 0.02))
    s.check("cc.ssthresh", lambda: cc.ssthresh, lambda v: v >= 2 * MSS,
            "at least 2 MSS (RFC 5681 equation 4)")


@CONGESTION.scenario("after a loss: growth is gentler than slow start, but it never stops")
def _(s: Steps, cls: Any) -> None:
    cc = _cc(s, cls)
    now = 0.0
    for _ in range(4):
        now = _ack_window(cc, now, 0.1)
    flight = cc.cwnd
    s.do(f"grow to cwnd {flight}, then cc.on_congestion({flight}, ...)",
         lambda: cc.on_congestion(flight, now))
    start = cc.cwnd
    for rtt_no in range(20):
        before = cc.cwnd
        now = s.do(f"acknowledge one window ({before} bytes) over 0.1 s  # round trip {rtt_no + 1}",
                   partial(_ack_window, cc, now, 0.1))
        s.check("cc.cwnd", lambda: cc.cwnd,
                _grew_at_most_half(before),
                f"from {before} to 1.5 * {before} (RFC 9438 4.2 caps growth at 50% per RTT)")
    s.check("cc.cwnd after 20 round trips", lambda: cc.cwnd, lambda v: v >= start + MSS,
            f"at least one MSS above {start}")


@CONGESTION.scenario("on_timeout: cwnd collapses to one segment (RFC 5681 3.1 loss window)")
def _(s: Steps, cls: Any) -> None:
    cc = _cc(s, cls)
    now = _ack_window(cc, 0.0, 0.1)
    flight = cc.cwnd
    s.do(f"one window of ACKs; cc.on_timeout({flight}, now={now:.2f})",
         lambda: cc.on_timeout(flight, now))
    s.expect("cc.cwnd", lambda: cc.cwnd, MSS)
    s.check("cc.ssthresh", lambda: cc.ssthresh,
            lambda v: _whole(v) and 2 * MSS <= v <= 0.85 * flight, f"from 2 MSS to 0.85 * {flight}")
    threshold = cc.ssthresh
    last = cc.cwnd
    for i in range(3):
        s.do(f"cc.on_ack({MSS}, ...)  # ACK {i + 1} after the timeout",
             partial(cc.on_ack, MSS, now + 0.1 * (i + 1), 0.1))
        s.check("cc.cwnd", lambda: cc.cwnd, _above(last),
                f"more than {last} (slow start again, up to ssthresh {threshold})")
        last = cc.cwnd


@CONGESTION.scenario("on_recovery_exit: the inflated window is deflated to at most ssthresh")
def _(s: Steps, cls: Any) -> None:
    cc = _cc(s, cls)
    now = 0.0
    for _ in range(3):
        now = _ack_window(cc, now, 0.1)
    flight = cc.cwnd
    s.do(f"grow; cc.on_congestion({flight}, ...)", lambda: cc.on_congestion(flight, now))
    ssthresh = cc.ssthresh
    for _ in range(3):  # what the connection does (stack/tcp/congestion/events.py)
        s.do("on_duplicate_ack_in_recovery(cc, mss)  # cwnd += 1 MSS per duplicate ACK",
             lambda: cc_events.on_duplicate_ack_in_recovery(cc, MSS))
    s.do(f"cc.on_recovery_exit(flight_size={ssthresh}, ...)",
         lambda: cc.on_recovery_exit(ssthresh, now + 0.1))
    s.check("cc.cwnd", lambda: cc.cwnd, lambda v: _whole(v) and MSS <= v <= ssthresh,
            f"from 1 MSS to ssthresh ({ssthresh})")


@CONGESTION.scenario("the connection may set mss (after the handshake, or path MTU discovery)")
def _(s: Steps, cls: Any) -> None:
    cc = _cc(s, cls, 536)
    s.do("cc.mss = 1400", lambda: setattr(cc, "mss", 1400))
    s.expect("cc.mss", lambda: cc.mss, 1400)
    s.do("cc.on_timeout(20000, now=1.0)", lambda: cc.on_timeout(20000, 1.0))
    s.expect("cc.cwnd", lambda: cc.cwnd, 1400)


@CONGESTION.scenario("5000 random events: cwnd and ssthresh stay whole and sane")
def _(s: Steps, cls: Any) -> None:
    cc = _cc(s, cls)
    rng = random.Random(5681)
    now = 0.0
    for i in range(5000):
        now += rng.uniform(0.0, 0.02)
        roll = rng.random()
        if roll < 0.9:
            n = rng.choice([1, MSS, 2 * MSS, rng.randrange(1, 20 * MSS)])
            text = f"#{i}: cc.on_ack({n}, now={now:.3f}, rtt=0.05)"
            s.do(text, partial(cc.on_ack, n, now, 0.05))
        elif roll < 0.96:
            flight = max(cc.cwnd, MSS)
            s.do(f"#{i}: cc.on_congestion({flight}, now={now:.3f})",
                 partial(cc.on_congestion, flight, now))
            s.do(f"#{i}: cc.on_recovery_exit({cc.ssthresh}, now={now:.3f})",
                 partial(cc.on_recovery_exit, cc.ssthresh, now))
        else:
            flight = max(cc.cwnd, MSS)
            s.do(f"#{i}: cc.on_timeout({flight}, now={now:.3f})",
                 partial(cc.on_timeout, flight, now))
        s.check("cc.cwnd", lambda: cc.cwnd, lambda v: _whole(v) and MSS <= v < 2**31,
                "an int from 1 MSS to 2**31")
        s.check("cc.ssthresh", lambda: cc.ssthresh, lambda v: _whole(v) and v >= 2 * MSS,
                "an int of at least 2 MSS")
        del s.done[:-12]  # the story of the last few events is enough
    s.note("5000 events handled")


# ----------------------------------------------- 11: IPv6 options (RFC 8200 section 4.2)
OPTIONS = Suite("options")

# The fixed header of the packets below: fd00:0:0:2::20 > fd00:0:0:1::2, Next Header 60
# (Destination Options), hop limit 64; the Payload Length is filled in by _packet.
_IP6 = bytes.fromhex("6000000000003c40" "fd000000000000020000000000000020"
                     "fd000000000000010000000000000002")


def _packet(body: bytes) -> bytes:
    """The fixed header, then an options header holding ``body`` (its Next Header 59:
    nothing follows; Hdr Ext Len from the length, which must make a multiple of 8)."""
    assert (2 + len(body)) % 8 == 0, "test data: an options header is a multiple of 8 octets"
    ext = bytes([59, (2 + len(body)) // 8 - 1]) + body
    return _IP6[:4] + struct.pack("!H", len(ext)) + _IP6[6:] + ext


def _verdict(m: Any, packet: bytes, to_multicast: bool = False) -> str:
    """What process_options made of the options header of ``packet``, in words."""
    from stack.wire.errors import WireError
    from stack.wire.ipv6 import ParameterProblem

    view = memoryview(packet)
    try:
        result = m.process_options(view, 42, len(packet), to_multicast)
    except ParameterProblem as exc:
        return (f"ParameterProblem code {exc.code} pointer {exc.pointer}"
                + (" (to_multicast=True)" if exc.to_multicast else ""))
    except WireError:
        return "WireError: discard silently"
    return f"returns {result!r}"


def _opts(s: Steps, m: Any, body: bytes, want: str, to_multicast: bool = False,
          what: str = "") -> None:
    call = f"process_options(view, 42, {40 + 2 + len(body)}, to_multicast={to_multicast})"
    shown = body.hex(" ") if len(body) <= 24 else f"<{len(body)} octets>"
    s.expect(f"{call}  # options {shown}" + (f": {what}" if what else ""),
             lambda: _verdict(m, _packet(body), to_multicast), want)


_OK = "returns None"
_SILENT = "WireError: discard silently"


def _pp(code: int, pointer: int, to_multicast: bool = False) -> str:
    return (f"ParameterProblem code {code} pointer {pointer}"
            + (" (to_multicast=True)" if to_multicast else ""))


def _opt(kind: int, data: bytes = bytes(4)) -> bytes:
    return bytes([kind, len(data)]) + data


@OPTIONS.scenario("padding only: PadN, then Pad1s (RFC 8200 section 4.2)")
def _(s: Steps, m: Any) -> None:
    s.note("view = the whole packet (IPv6 header at 0); the options start at 42, after the "
           "Next Header and Hdr Ext Len octets of the header at 40")
    _opts(s, m, bytes([1, 4, 0, 0, 0, 0]), _OK, what="PadN of 6 octets")
    _opts(s, m, bytes([1, 0]) + bytes(4), _OK, what="PadN of 2, then 4 Pad1")
    _opts(s, m, bytes(6), _OK, what="six Pad1")


@OPTIONS.scenario("an unknown option whose type starts with 00 is skipped")
def _(s: Steps, m: Any) -> None:
    _opts(s, m, _opt(0x1E), _OK, what="type 0x1e = 00 0 11110")
    _opts(s, m, _opt(0x1E) + _opt(0x03, bytes(6)), _OK, what="two of them")


@OPTIONS.scenario("01: the packet is discarded, silently")
def _(s: Steps, m: Any) -> None:
    _opts(s, m, _opt(0x5E), _SILENT, what="type 0x5e = 01 0 11110")
    _opts(s, m, _opt(0x5E), _SILENT, to_multicast=True)


@OPTIONS.scenario("10: discard and Parameter Problem code 2 at the type, even to multicast")
def _(s: Steps, m: Any) -> None:
    _opts(s, m, _opt(0x9E), _pp(2, 42, True), what="type 0x9e = 10 0 11110")
    _opts(s, m, _opt(0x9E), _pp(2, 42, True), to_multicast=True)


@OPTIONS.scenario("11: Parameter Problem code 2, but not to a multicast destination")
def _(s: Steps, m: Any) -> None:
    _opts(s, m, _opt(0xDE), _pp(2, 42), what="type 0xde = 11 0 11110")
    _opts(s, m, _opt(0xDE), _SILENT, to_multicast=True)


@OPTIONS.scenario("only the two high-order bits choose the action; the third (may change) does not")
def _(s: Steps, m: Any) -> None:
    _opts(s, m, _opt(0x3F), _OK, what="0x3f = 00 1 11111")
    _opts(s, m, _opt(0x7F), _SILENT, what="0x7f = 01 1 11111")
    _opts(s, m, _opt(0xBF), _pp(2, 42, True), what="0xbf = 10 1 11111")
    _opts(s, m, _opt(0xFF), _pp(2, 42), what="0xff = 11 1 11111")


@OPTIONS.scenario("the pointer is the offset of the option type from the IPv6 header")
def _(s: Steps, m: Any) -> None:
    _opts(s, m, _opt(0x1E) + _opt(0x9E, bytes(6)), _pp(2, 48, True),
          what="a skipped option (6 octets) first")
    _opts(s, m, bytes(3) + _opt(0xDE, bytes(1)), _pp(2, 45), what="after three Pad1")


@OPTIONS.scenario("the first option that says discard decides; later ones are not looked at")
def _(s: Steps, m: Any) -> None:
    _opts(s, m, _opt(0x5E) + _opt(0x9E, bytes(6)), _SILENT)
    _opts(s, m, _opt(0x9E) + _opt(0x5E, bytes(6)), _pp(2, 42, True))


@OPTIONS.scenario("an option that runs past its header: Parameter Problem code 0")
def _(s: Steps, m: Any) -> None:
    _opts(s, m, bytes([0x1E, 5]) + bytes(4), _pp(0, 43),
          what="length 5, only 4 octets left: point at the length octet")
    _opts(s, m, bytes(5) + bytes([0x1E]), _pp(0, 47),
          what="a type in the last octet, no room for its length: point at the type")
    _opts(s, m, bytes([1, 5]) + bytes(4), _pp(0, 43), what="PadN runs past too")


@OPTIONS.scenario("only view[i:end] is read: the options of a later header")
def _(s: Steps, m: Any) -> None:
    from stack.wire.errors import WireError
    from stack.wire.ipv6 import ParameterProblem

    packet = _packet(_opt(0x1E)) + bytes([59, 0]) + _opt(0x9E)  # a second header at 48
    s.note("packet = IPv6 header, a Destination Options header at 40 (option 0x1e), "
           "another at 48 (option 0x9e); its options are 50..56")

    def second() -> str:
        try:
            m.process_options(memoryview(packet), 50, 56, False)
        except ParameterProblem as exc:
            return f"ParameterProblem code {exc.code} pointer {exc.pointer}"
        except WireError:
            return _SILENT
        return _OK

    s.expect("process_options(view, 50, 56, to_multicast=False)", second,
             "ParameterProblem code 2 pointer 50")
    s.expect("process_options(view, 42, 48, to_multicast=False)",
             lambda: m.process_options(memoryview(packet), 42, 48, False), None)


@OPTIONS.scenario("bounds (RFC 8504 section 5.3): at most 8 options, 7 octets of padding in a row")
def _(s: Steps, m: Any) -> None:
    eight = _opt(0x1E, b"") * 8 + bytes(6)
    _opts(s, m, eight, _OK, what="8 empty options of type 0x1e")
    _opts(s, m, _opt(0x1E, b"") * 9 + bytes(4), _SILENT, what="9: too many")
    _opts(s, m, bytes([1, 5]) + bytes(5) + bytes(1) + _opt(0x1E, b"") + bytes(4),
          _SILENT, what="PadN of 7 then a Pad1: 8 octets of padding in a row")
    _opts(s, m, bytes([1, 5]) + bytes(5) + _opt(0x1E, b"") + bytes(1) + _opt(0x1E, b"")
          + bytes(2), _OK, what="7 and 3 octets of padding, an option between them")


@OPTIONS.scenario("a header of 2048 octets of options is judged in well under a second")
def _(s: Steps, m: Any) -> None:
    body = (_opt(0x1E, bytes(250)) * 8)[: 8 * 252] + bytes([1, 4]) + bytes(4)
    start = time.perf_counter()
    _opts(s, m, body, _OK, what="8 options of 252 octets and a PadN")
    took = time.perf_counter() - start
    s.check("time taken", lambda: took, lambda t: t < 0.5, "less than 0.5 s")


SUITES: dict[str, Suite] = {
    "checksum": CHECKSUM,
    "seq": SEQ,
    "reassembler": REASSEMBLER,
    "rto": RTO,
    "congestion": CONGESTION,
    "options": OPTIONS,
}
