"""TCP Fast Open (RFC 7413), sans-IO: cookies and the data carried by a SYN.

Owns:

* ``FastOpenKeys`` -- the server's cookies: a keyed MAC of the client's IP address
  (RFC 7413 4.1.2), under a secret key that rotates; a cookie made with the previous
  key still validates, so a rotation does not throw every client back to the normal
  handshake at once (4.1.2, "the server can rotate the secret key").
* ``CookieCache`` -- the client's cookies per server IP (4.1.3), with the MSS that
  server offered last (4.1.3: "the client also caches the MSS"), bounded.
* ``FastOpenAttempt`` -- one client connection's use of it: the cookie (or cookie
  request) its SYN carries, how much data rides on the SYN, and what the SYN-ACK says
  (4.2.2: a cookie to remember; data acknowledged or to be sent again).
* ``SynDecision`` / ``decide`` -- the server's answer to a SYN (4.2.1): accept its data
  (cookie valid, Fast Open enabled on the listener, pending-TFO queue not full), or
  fall back to the normal handshake, acknowledging only the SYN; and whether the
  SYN-ACK carries a fresh cookie.

The switches follow Linux's ``net.ipv4.tcp_fastopen`` bitmask (`FASTOPEN_*` below).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections import OrderedDict
from dataclasses import dataclass

__all__ = [
    "FASTOPEN_CLIENT",
    "FASTOPEN_CLIENT_NO_COOKIE",
    "FASTOPEN_DEFAULT",
    "FASTOPEN_SERVER",
    "FASTOPEN_SERVER_ALL_LISTENERS",
    "FASTOPEN_SERVER_NO_COOKIE",
    "CookieCache",
    "FastOpenAttempt",
    "FastOpenKeys",
    "SynDecision",
    "decide",
]

# net.ipv4.tcp_fastopen (Documentation/networking/ip-sysctl.rst).
FASTOPEN_CLIENT = 0x1  # clients may send data in the SYN
FASTOPEN_SERVER = 0x2  # listeners with TCP_FASTOPEN accept data in the SYN
FASTOPEN_CLIENT_NO_COOKIE = 0x4  # clients send SYN data without any cookie
FASTOPEN_SERVER_NO_COOKIE = 0x200  # listeners accept SYN data without a cookie
FASTOPEN_SERVER_ALL_LISTENERS = 0x400  # every listener, TCP_FASTOPEN or not
FASTOPEN_DEFAULT = FASTOPEN_CLIENT  # as Linux: client on, server off
FASTOPEN_MASK = 0xFFF

NEGATIVE_CACHE_SECONDS = 600.0  # RFC 7413 4.1.3.1 "a period of time": 10 minutes
COOKIE_LEN = 8  # RFC 7413 4.1.1 allows 4..16; Linux sends 8
DEFAULT_LISTENER_QLEN = 16  # for FASTOPEN_SERVER_ALL_LISTENERS (Linux: tcp_fastopen_...)


def check_mode(mode: int) -> int:
    if not 0 <= mode <= FASTOPEN_MASK:
        raise ValueError(f"Fast Open mode {mode:#x} out of range 0..{FASTOPEN_MASK:#x}")
    return mode


class FastOpenKeys:
    """The server's cookie secret (RFC 7413 4.1.2): cookie = MAC(key, client IP)."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key if key is not None else os.urandom(16)
        self.previous: bytes | None = None

    def rotate(self, key: bytes | None = None) -> None:
        """A new key; cookies of the old one stay valid until the next rotation."""
        self.previous = self.key
        self.key = key if key is not None else os.urandom(16)

    @staticmethod
    def _mac(key: bytes, client_ip: str) -> bytes:
        packed = ipaddress.ip_address(client_ip).packed
        return hmac.new(key, packed, hashlib.sha256).digest()[:COOKIE_LEN]

    def cookie_for(self, client_ip: str) -> bytes:
        return self._mac(self.key, client_ip)

    def valid(self, client_ip: str, cookie: bytes) -> bool:
        """RFC 7413 4.1.2: does `cookie` authenticate `client_ip` (current or old key)?"""
        if len(cookie) != COOKIE_LEN:
            return False
        if hmac.compare_digest(cookie, self._mac(self.key, client_ip)):
            return True
        return self.previous is not None and hmac.compare_digest(
            cookie, self._mac(self.previous, client_ip))


@dataclass
class CachedCookie:
    cookie: bytes
    mss: int
    exp: bool = False  # the server answered in the experimental option form


class CookieCache:
    """The client's cookies, one per server IP (RFC 7413 4.1.3), least recent out; and
    the servers Fast Open is off toward, for a while (4.1.3.1, negative responses)."""

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self.entries: OrderedDict[str, CachedCookie] = OrderedDict()
        self.negatives: OrderedDict[str, float] = OrderedDict()  # server IP -> until

    def put_negative(self, server_ip: str, now: float) -> None:
        """RFC 7413 4.1.3.1: "The client MUST cache negative responses from the server"
        and "SHOULD disable TFO toward such servers for a period of time"."""
        self.entries.pop(server_ip, None)
        self.negatives[server_ip] = now + NEGATIVE_CACHE_SECONDS
        self.negatives.move_to_end(server_ip)
        while len(self.negatives) > self.limit:
            self.negatives.popitem(last=False)

    def negative(self, server_ip: str, now: float) -> bool:
        """Is Fast Open off toward this server (a negative response not long ago)?"""
        until = self.negatives.get(server_ip)
        if until is None:
            return False
        if now >= until:
            del self.negatives[server_ip]
            return False
        return True

    def get(self, server_ip: str) -> CachedCookie | None:
        entry = self.entries.get(server_ip)
        if entry is not None:
            self.entries.move_to_end(server_ip)
        return entry

    def put(self, server_ip: str, cookie: bytes, mss: int, exp: bool = False) -> None:
        self.entries[server_ip] = CachedCookie(cookie, mss, exp)
        self.entries.move_to_end(server_ip)
        while len(self.entries) > self.limit:
            self.entries.popitem(last=False)


class FastOpenAttempt:
    """One active open's use of Fast Open (RFC 7413 4.2.2)."""

    def __init__(self, server_ip: str, cache: CookieCache, mode: int) -> None:
        self.server_ip = server_ip
        self.cache = cache
        self.mode = mode
        entry = cache.get(server_ip)
        self.cookie = entry.cookie if entry is not None else None
        self.exp = entry.exp if entry is not None else False
        self.mss = entry.mss if entry is not None else 0
        self.syn_data = 0  # bytes the SYN carried
        self.learned: bytes | None = None  # the cookie the SYN-ACK brought

    def syn_option(self) -> bytes:
        """The Fast Open option's content for our SYN: the cached cookie, or an empty
        one = a cookie request (RFC 7413 4.1.1, 4.2.1)."""
        return self.cookie if self.cookie is not None else b""

    def syn_data_limit(self, default_mss: int) -> int:
        """How many bytes may ride on the SYN: none without a cookie (4.2.1: the first
        connection only asks for one) unless FASTOPEN_CLIENT_NO_COOKIE; at most one
        segment of the MSS this server offered last (4.1.3)."""
        if self.cookie is None and not self.mode & FASTOPEN_CLIENT_NO_COOKIE:
            return 0
        return self.mss or default_mss

    def on_synack(self, cookie: bytes | None, exp: bool, peer_mss: int, *,
                  data_acked: int | None = None, now: float = 0.0,
                  malformed: bool = False) -> None:
        """RFC 7413 4.2.2: remember the cookie a SYN-ACK brings, with the server's MSS.
        `data_acked`: how many of the SYN's data bytes it acknowledges (None: unknown).
        Data not acknowledged, and no new cookie, is a negative response (4.1.3.1):
        Fast Open is off toward that server for a while.

        `malformed`: the SYN-ACK answered our cookie *request* with a Fast Open option
        whose cookie length 4.1.1 forbids. The option itself is ignored (4.1.1); the
        answer is a negative response too: a server or middlebox that mangles the
        option is one 4.1.3.1's cache protects connections from, so no cookie is asked
        of it for a while (as FreeBSD; Linux asks again on the next connection). A
        malformed update of a cookie that worked is only ignored: the cookie stays."""
        if malformed and cookie is None and self.cookie is None:
            self.cache.put_negative(self.server_ip, now)
            return
        if self.syn_data and data_acked is not None and data_acked < self.syn_data and not cookie:
            self.cache.put_negative(self.server_ip, now)
            return
        if cookie:
            self.learned = cookie
            self.cache.put(self.server_ip, cookie, peer_mss, exp)
        elif self.cookie is not None:
            # The same cookie still works: refresh the MSS kept with it.
            self.cache.put(self.server_ip, self.cookie, peer_mss, self.exp)


@dataclass(frozen=True)
class SynDecision:
    """The server's answer to a SYN: take its data? put a cookie in the SYN-ACK?"""

    accept_data: bool
    cookie: bytes | None  # for the SYN-ACK's Fast Open option; None = no option
    exp: bool = False
    reason: str = ""


def decide(
    mode: int, listener_qlen: int, pending: int, keys: FastOpenKeys, client_ip: str,
    cookie: bytes | None, exp: bool, has_data: bool,
) -> SynDecision:
    """RFC 7413 4.2.1 (server): what to do with a SYN that may carry a cookie and data.

    Fast Open is on for a listener with TCP_FASTOPEN (a qlen > 0) when the server bit
    is set, or for every listener with FASTOPEN_SERVER_ALL_LISTENERS. With it on:
    a valid cookie (or none needed, FASTOPEN_SERVER_NO_COOKIE) and room in the queue
    of pending Fast Open connections (`qlen`, RFC 7413 5.1) accept the data; a cookie
    request or an invalid cookie is answered with a fresh cookie, and the SYN-ACK
    then acknowledges only the SYN (the client sends the data again).
    """
    qlen = listener_qlen
    if mode & FASTOPEN_SERVER_ALL_LISTENERS and not qlen:
        qlen = DEFAULT_LISTENER_QLEN
    enabled = bool(mode & (FASTOPEN_SERVER | FASTOPEN_SERVER_ALL_LISTENERS)) and qlen > 0
    if not enabled or (cookie is None and not mode & FASTOPEN_SERVER_NO_COOKIE):
        return SynDecision(False, None, reason="off" if not enabled else "no_option")
    if not has_data:
        # A bare SYN with the option: a cookie request (or a client that has one
        # but nothing to send); it gets the current cookie.
        return SynDecision(False, keys.cookie_for(client_ip), exp, "cookie_request")
    if pending >= qlen:
        return SynDecision(False, None, exp, "queue_full")  # RFC 7413 5.1: fall back
    if mode & FASTOPEN_SERVER_NO_COOKIE:
        return SynDecision(True, None, exp, "no_cookie_needed")
    assert cookie is not None
    if keys.valid(client_ip, cookie):
        return SynDecision(True, None, exp, "cookie_valid")
    return SynDecision(False, keys.cookie_for(client_ip), exp, "cookie_invalid")
