"""Pluggable congestion control algorithms.

``make_congestion_control("cubic", mss)`` returns a fresh algorithm object
for one connection.  Every algorithm starts with the RFC 6928 initial window
``min(10*MSS, max(2*MSS, 14600))`` bytes (an update of RFC 5681 section 3.1)
and an "infinite" ssthresh (RFC 5681 section 3.1).

To add an algorithm: write a class that fits
:class:`~stack.tcp.congestion.base.CongestionControl`, add it to
``_FACTORIES`` and its name to ``ALGORITHMS``.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import INFINITE_SSTHRESH, CongestionControl, initial_window
from .cubic import Cubic
from .newreno import NewReno

ALGORITHMS: tuple[str, ...] = ("newreno", "cubic")

_FACTORIES: dict[str, Callable[[int], CongestionControl]] = {
    "newreno": NewReno,
    "cubic": Cubic,
}


def make_congestion_control(name: str, mss: int) -> CongestionControl:
    """Create the algorithm called ``name`` for a sender with this MSS.

    Raises ``ValueError`` for an unknown name (see ``ALGORITHMS``).
    """
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown congestion control {name!r}; choose one of {', '.join(ALGORITHMS)}"
        ) from None
    return factory(mss)


__all__ = [
    "ALGORITHMS",
    "INFINITE_SSTHRESH",
    "CongestionControl",
    "Cubic",
    "NewReno",
    "initial_window",
    "make_congestion_control",
]
