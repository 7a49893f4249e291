"""Link impairment inside the daemon: netem's loss, delay, reorder, duplicate, corrupt.

`tc netem` is the usual tool, but not every kernel has it (CONFIG_NET_SCH_NETEM), and
a lab should work everywhere. `tcplab stack --impair loss=5%,delay=20ms,...` applies
the same kinds of faults to every packet crossing the TUN, in both directions:

    loss=P%        drop with probability P
    delay=T[ms]    hold each packet T (plus jitter, uniform in [-J, +J])
    jitter=J[ms]
    reorder=P%     send this packet at once while others wait the delay (needs delay)
    duplicate=P%   send a second copy
    corrupt=P%     flip one random bit (checksums must catch it)
    seed=N         a fixed random seed for repeatable runs
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

Schedule = Callable[[float, Callable[[], None]], object]


@dataclass
class ImpairSpec:
    loss: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0
    corrupt: float = 0.0
    seed: int | None = None

    @classmethod
    def parse(cls, text: str) -> ImpairSpec:
        """'loss=5%,delay=20ms' -> ImpairSpec; ValueError with a clear message."""
        spec = cls()
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"impairment {item!r} is not KEY=VALUE")
            if key in ("loss", "reorder", "duplicate", "corrupt"):
                number = value.removesuffix("%")
                try:
                    prob = float(number) / 100
                except ValueError:
                    raise ValueError(f"bad percentage in {item!r}") from None
                if not 0 <= prob <= 1:
                    raise ValueError(f"percentage out of range in {item!r}")
                setattr(spec, key, prob)
            elif key in ("delay", "jitter"):
                scale = 1.0
                number = value
                if value.endswith("ms"):
                    number, scale = value[:-2], 0.001
                elif value.endswith("s"):
                    number = value[:-1]
                try:
                    seconds = float(number) * scale
                except ValueError:
                    raise ValueError(f"bad time in {item!r} (e.g. 20ms)") from None
                if seconds < 0 or seconds > 10:
                    raise ValueError(f"time out of range in {item!r}")
                setattr(spec, key, seconds)
            elif key == "seed":
                if not value.isdigit():
                    raise ValueError(f"bad seed in {item!r}")
                spec.seed = int(value)
            else:
                raise ValueError(
                    f"unknown impairment {key!r} (loss, delay, jitter, reorder, duplicate, corrupt, seed)"
                )
        return spec


class Impairment:
    """Passes packets to `deliver`, after the faults in `spec`; counts what it did."""

    def __init__(
        self, spec: ImpairSpec, schedule: Schedule, clock: Callable[[], float], direction: int = 0
    ) -> None:
        self.spec = spec
        self.schedule = schedule
        self.clock = clock
        # Each direction draws from its own stream, so that with a fixed seed the
        # losses one way are not a copy of the losses the other way.
        self.rng = random.Random(None if spec.seed is None else spec.seed * 2 + direction)
        self.counts = {"passed": 0, "lost": 0, "duplicated": 0, "corrupted": 0, "reordered": 0}

    def __call__(self, packet: bytes, deliver: Callable[[bytes], None]) -> None:
        spec = self.spec
        rng = self.rng
        if spec.loss and rng.random() < spec.loss:
            self.counts["lost"] += 1
            return
        copies = 2 if spec.duplicate and rng.random() < spec.duplicate else 1
        if copies == 2:
            self.counts["duplicated"] += 1
        for _ in range(copies):
            data = packet
            if spec.corrupt and rng.random() < spec.corrupt:
                self.counts["corrupted"] += 1
                buf = bytearray(data)
                bit = rng.randrange(len(buf) * 8)
                buf[bit // 8] ^= 1 << (bit % 8)
                data = bytes(buf)
            self.counts["passed"] += 1
            if not spec.delay or (spec.reorder and rng.random() < spec.reorder):
                if spec.delay:
                    self.counts["reordered"] += 1
                deliver(data)
                continue
            wait = spec.delay
            if spec.jitter:
                wait = max(0.0, wait + rng.uniform(-spec.jitter, spec.jitter))
            self.schedule(wait, _bind(deliver, data))


def _bind(deliver: Callable[[bytes], None], data: bytes) -> Callable[[], None]:
    return lambda: deliver(data)
