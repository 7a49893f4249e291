"""Initial sequence numbers per RFC 6528.

RFC 6528 section 3: ISN = M + F(localip, localport, remoteip, remoteport, secretkey),
where M is a timer that ticks every 4 microseconds and F is a keyed pseudo-random
function. We use keyed BLAKE2s as F. The secret is made once per daemon.

A teaching aid, off by default (``tcplab stack --isn-near-wrap``, lab 03): ISNs within
1 MiB below 2**32, so that every transfer of a megabyte or more wraps its sequence
numbers past zero. Still keyed and time-dependent within that stretch, but guessable:
never use it outside the lab (RFC 6528 section 3 is the point of F).
"""

from __future__ import annotations

import hashlib
import os

MOD = 1 << 32
NEAR_WRAP_SPAN = 1 << 20  # near-wrap ISNs lie in [2**32 - SPAN, 2**32 - SPAN / 2)
_near_wrap = False


def set_near_wrap(on: bool) -> None:
    """Make every ISN from now on start within NEAR_WRAP_SPAN below 2**32 (lab 03)."""
    global _near_wrap
    _near_wrap = on


def near_wrap() -> bool:
    return _near_wrap


def new_secret() -> bytes:
    """A fresh 16-byte key for `initial_sequence_number`."""
    return os.urandom(16)


def initial_sequence_number(
    secret: bytes, now: float, local: tuple[str, int], remote: tuple[str, int]
) -> int:
    """The ISN for a connection between `local` and `remote` at time `now` (seconds)."""
    tuple_bytes = f"{local[0]}:{local[1]}-{remote[0]}:{remote[1]}".encode()
    digest = hashlib.blake2s(tuple_bytes, key=secret, digest_size=4).digest()
    f = int.from_bytes(digest, "big")
    m = int(now * 250_000)  # RFC 6528 section 3: M ticks every 4 microseconds
    if _near_wrap:  # the teaching aid: wraps after 512 KiB to 1 MiB of data
        return MOD - NEAR_WRAP_SPAN + (m + f) % (NEAR_WRAP_SPAN // 2)
    return (m + f) & 0xFFFFFFFF
