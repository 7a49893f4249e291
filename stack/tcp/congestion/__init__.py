"""Pluggable congestion control algorithms.

``make_congestion_control("cubic", mss)`` returns a fresh algorithm object
for one connection.  Every algorithm starts with the RFC 6928 initial window
``min(10*MSS, max(2*MSS, 14600))`` bytes (an update of RFC 5681 section 3.1)
and an "infinite" ssthresh (RFC 5681 section 3.1).

To add an algorithm: write a class that fits
:class:`~stack.tcp.congestion.base.CongestionControl`, add it to
``FACTORIES`` and its name to ``ALGORITHMS``. A connection takes its algorithms
from its config (``TcpConfig.cc_factories``, stack/tcp/config.py), whose default
is ``FACTORIES``; the lab kit puts a learner's class there instead. The loss
recovery events that adjust the window beyond the four calls are in events.py. An
algorithm that also has ``on_rate_sample`` (``RateDriven``, base.py; BBR) gets a
delivery-rate sample on every ACK (stack/tcp/rate.py) and sets its own window in
recovery: PRR does not write it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from .base import INFINITE_SSTHRESH, CongestionControl, RateDriven, initial_window
from .bbr import Bbr
from .cubic import Cubic
from .newreno import NewReno

ALGORITHMS: tuple[str, ...] = ("newreno", "cubic", "bbr")

FACTORIES: Mapping[str, Callable[[int], CongestionControl]] = MappingProxyType({
    "newreno": NewReno,
    "cubic": Cubic,
    "bbr": Bbr,
})


def make_congestion_control(name: str, mss: int) -> CongestionControl:
    """Create the algorithm called ``name`` for a sender with this MSS.

    Raises ``ValueError`` for an unknown name (see ``ALGORITHMS``).
    """
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown congestion control {name!r}; choose one of {', '.join(ALGORITHMS)}"
        ) from None
    return factory(mss)


__all__ = [
    "ALGORITHMS",
    "Bbr",
    "FACTORIES",
    "INFINITE_SSTHRESH",
    "CongestionControl",
    "Cubic",
    "NewReno",
    "RateDriven",
    "initial_window",
    "make_congestion_control",
]
