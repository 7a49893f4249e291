"""Initial sequence numbers per RFC 6528.

RFC 6528 section 3: ISN = M + F(localip, localport, remoteip, remoteport, secretkey),
where M is a timer that ticks every 4 microseconds and F is a keyed pseudo-random
function. We use keyed BLAKE2s as F. The secret is made once per daemon.
"""

from __future__ import annotations

import hashlib
import os


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
    return (m + f) & 0xFFFFFFFF
