"""TCP Fast Open (RFC 7413): the option on the wire, the server's cookies and its
decision, and the client and server halves of the connection (stack/tcp/fastopen.py
and its hooks in connection.py)."""

from __future__ import annotations

import pytest
from tcpscript import Script, pattern

from stack.tcp.fastopen import (
    FASTOPEN_CLIENT,
    FASTOPEN_SERVER,
    FASTOPEN_SERVER_ALL_LISTENERS,
    FASTOPEN_SERVER_NO_COOKIE,
    CookieCache,
    FastOpenAttempt,
    FastOpenKeys,
    check_mode,
    decide,
)
from stack.wire.tcp import TCPOptions, encode_options, parse_options

CLIENT_IP = "10.1.0.2"
SERVER_IP = "10.0.0.2"
SERVER = FASTOPEN_SERVER


# --- the option ---------------------------------------------------------------------
@pytest.mark.parametrize("exp", [False, True])
@pytest.mark.parametrize("cookie", [b"", b"\x01\x02\x03\x04", bytes(range(8)), bytes(16)])
def test_fastopen_option_round_trips(cookie: bytes, exp: bool) -> None:
    """RFC 7413 4.1.1: kind 34, length 2 + cookie (none = a request); the experimental
    form is kind 254 with ExID 0xF989 (RFC 6994 3)."""
    wire = encode_options(TCPOptions(mss=1460, fastopen=cookie, fastopen_exp=exp))
    assert len(wire) % 4 == 0
    assert (b"\xfe" + bytes((4 + len(cookie),)) + b"\xf9\x89" if exp
            else b"\x22" + bytes((2 + len(cookie),))) + cookie in wire
    back = parse_options(wire)
    assert back.fastopen == cookie and back.fastopen_exp == exp and back.mss == 1460


@pytest.mark.parametrize("raw", [b"\x22\x03\x01\x00", b"\x22\x04\x01\x02",
                                 b"\xfe\x06\xf9\x89\x01\x02"])
def test_fastopen_option_with_a_bad_cookie_length_is_ignored(raw: bytes) -> None:
    """RFC 7413 4.1.1: a cookie is 4..16 bytes, even; any other is no cookie (the
    segment is kept, as Linux keeps it)."""
    assert parse_options(raw).fastopen is None


def test_encoding_rejects_a_bad_cookie() -> None:
    with pytest.raises(ValueError, match="cookie length"):
        encode_options(TCPOptions(fastopen=b"abc"))


# --- the server's cookies and decision ----------------------------------------------
def test_cookie_is_bound_to_the_client_address_and_survives_one_rotation() -> None:
    """RFC 7413 4.1.2: the cookie is a MAC of the client IP under a server secret; a
    rotated key keeps the previous one valid until the next rotation."""
    keys = FastOpenKeys(b"k" * 16)
    cookie = keys.cookie_for(CLIENT_IP)
    assert len(cookie) == 8 and keys.valid(CLIENT_IP, cookie)
    assert not keys.valid("10.1.0.3", cookie)
    keys.rotate(b"j" * 16)
    assert keys.valid(CLIENT_IP, cookie) and keys.cookie_for(CLIENT_IP) != cookie
    keys.rotate(b"i" * 16)
    assert not keys.valid(CLIENT_IP, cookie)


def test_server_decision() -> None:
    """RFC 7413 4.2.1: with TFO on the listener, a request gets a cookie; data with a
    valid cookie is accepted; an invalid cookie falls back (new cookie, data not
    taken); 5.1: a full queue of pending TFO connections falls back; TFO is off for a
    listener without TCP_FASTOPEN unless the all-listeners bit is set."""
    keys = FastOpenKeys()
    good = keys.cookie_for(CLIENT_IP)
    d = decide(SERVER, 5, 0, keys, CLIENT_IP, b"", False, False)
    assert not d.accept_data and d.cookie == good
    d = decide(SERVER, 5, 0, keys, CLIENT_IP, good, False, True)
    assert d.accept_data and d.cookie is None
    d = decide(SERVER, 5, 0, keys, CLIENT_IP, b"\0" * 8, False, True)
    assert not d.accept_data and d.cookie == good
    d = decide(SERVER, 5, 5, keys, CLIENT_IP, good, False, True)
    assert not d.accept_data and d.reason == "queue_full"
    assert not decide(SERVER, 0, 0, keys, CLIENT_IP, good, False, True).accept_data
    assert not decide(FASTOPEN_CLIENT, 5, 0, keys, CLIENT_IP, good, False, True).accept_data
    assert decide(FASTOPEN_SERVER_ALL_LISTENERS, 0, 0, keys, CLIENT_IP, good, False,
                  True).accept_data
    assert decide(SERVER | FASTOPEN_SERVER_NO_COOKIE, 5, 0, keys, CLIENT_IP, None, False,
                  True).accept_data


def test_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="out of range"):
        check_mode(0x1000)


# --- the server half ----------------------------------------------------------------
def test_server_takes_the_data_of_a_syn_with_a_valid_cookie() -> None:
    """RFC 7413 4.2.1: the SYN-ACK acknowledges the SYN's data, which is readable
    before the handshake completes."""
    keys = FastOpenKeys()
    cookie = keys.cookie_for(CLIENT_IP)
    decision = decide(SERVER, 5, 0, keys, CLIENT_IP, cookie, False, True)
    s = Script()
    s.passive(data=pattern(300), cookie=cookie, fastopen=decision)
    synack = s.tx("SA", seq=0, ack=301)
    assert synack.options.fastopen is None
    assert s.recv() == pattern(300)
    s.rx("A", seq=301, ack=1)
    s.expect_state("ESTABLISHED")


def test_server_falls_back_for_an_invalid_cookie_and_offers_a_fresh_one() -> None:
    """RFC 7413 4.2.1: data with an invalid cookie is not taken: the SYN-ACK
    acknowledges only the SYN and carries a valid cookie; the client sends again."""
    keys = FastOpenKeys()
    decision = decide(SERVER, 5, 0, keys, CLIENT_IP, b"\0" * 8, False, True)
    s = Script()
    s.passive(data=pattern(300), cookie=b"\0" * 8, fastopen=decision)
    synack = s.tx("SA", seq=0, ack=1)
    assert synack.options.fastopen == keys.cookie_for(CLIENT_IP)
    assert s.conn.readable_bytes == 0
    s.rx("PA", seq=1, ack=1, data=300)
    assert s.recv() == pattern(300)


def test_without_fastopen_a_syn_with_data_is_acked_only_for_the_syn() -> None:
    """RFC 7413 4.2.1 / RFC 9293 3.10.7.2: a listener without Fast Open does not take
    SYN data (it may queue it; like Linux, we do not): the SYN-ACK acks the SYN only."""
    s = Script()
    s.passive(data=pattern(100))
    synack = s.tx("SA", seq=0, ack=1)
    assert synack.options.fastopen is None


# --- the client half ----------------------------------------------------------------
def test_client_without_a_cookie_asks_for_one_and_caches_it() -> None:
    """RFC 7413 4.1.3, 4.2.2: the first SYN carries an empty option (a request) and no
    data; the cookie from the SYN-ACK is cached with the server's MSS; the data goes
    after the handshake."""
    cache = CookieCache()
    s = Script()
    s.connect(FastOpenAttempt(SERVER_IP, cache, FASTOPEN_CLIENT), data=pattern(500))
    syn = s.tx("S", seq=0, length=0)
    assert syn.options.fastopen == b""
    synack = s.make_segment("SA", seq=0, ack=1, mss=1400)
    synack.options.fastopen = b"C00K1E!!"
    s.rx_segment(synack)
    s.tx("PA", seq=1, ack=1, length=500)  # the data goes with the handshake's ACK
    s.drain()
    entry = cache.get(SERVER_IP)
    assert entry is not None and entry.cookie == b"C00K1E!!" and entry.mss == 1400


def test_client_with_a_cookie_sends_data_on_the_syn() -> None:
    """RFC 7413 4.2.2: with a cached cookie the SYN carries it and up to one segment of
    data (the MSS cached with the cookie); the SYN-ACK that acks it releases it."""
    cache = CookieCache()
    cache.put(SERVER_IP, b"C00K1E!!", 1000)
    s = Script()
    s.connect(FastOpenAttempt(SERVER_IP, cache, FASTOPEN_CLIENT), data=pattern(1500))
    syn = s.tx("S", seq=0, length=1000, data=pattern(1000))
    assert syn.options.fastopen == b"C00K1E!!"
    s.rx("SA", seq=0, ack=1001, mss=1460)
    s.tx("PA", seq=1001, ack=1, length=500)  # the rest; nothing sent again
    s.drain()
    assert s.conn.snd.retransmits == 0 and s.conn.snd.una == s.iss + 1001


def test_client_sends_syn_data_again_when_the_syn_ack_does_not_ack_it() -> None:
    """RFC 7413 4.2.2: a SYN-ACK acknowledging only the SYN (the server did not take
    the data: cookie invalid or TFO off) -- the client sends that data again at once."""
    cache = CookieCache()
    cache.put(SERVER_IP, b"OLDC00K!", 1000)
    s = Script()
    s.connect(FastOpenAttempt(SERVER_IP, cache, FASTOPEN_CLIENT), data=pattern(800))
    s.tx("S", seq=0, length=800)
    synack = s.make_segment("SA", seq=0, ack=1, mss=1460)
    synack.options.fastopen = b"NEWC00K!"
    s.rx_segment(synack)
    seg = s.tx(seq=1, ack=1, length=800, data=pattern(800))
    assert seg.flags & 0x10
    s.expect_event("fastopen", event="syn_data_not_acked")
    entry = cache.get(SERVER_IP)
    assert entry is not None and entry.cookie == b"NEWC00K!"


def test_retransmitted_syn_carries_no_data() -> None:
    """RFC 7413 4.2.2 (as Linux): a SYN that timed out goes again without its data
    (and without the option); the data follows the handshake."""
    cache = CookieCache()
    cache.put(SERVER_IP, b"C00K1E!!", 1000)
    s = Script()
    s.connect(FastOpenAttempt(SERVER_IP, cache, FASTOPEN_CLIENT), data=pattern(300))
    s.tx("S", seq=0, length=300)
    s.fire()
    syn = s.tx("S", seq=0, length=0)
    assert syn.options.fastopen is None
    s.rx("SA", seq=0, ack=1, mss=1460)
    s.tx(seq=1, ack=1, length=300)
