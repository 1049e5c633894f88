"""Loss, duplication and reordering of packets, for testing hosts against a hostile network.

The daemon passes every received batch and every batch of responses through an injector. A
packet chosen for reordering is held back and released after the next batch (or on the next
idle tick), so it overtakes nothing it should not and is never lost.

>>> faults = FaultInjector(drop=0.0, duplicate=1.0, reorder=0.0, seed=1)
>>> faults.apply([b"a", b"b"])
[b'a', b'a', b'b', b'b']
"""

from __future__ import annotations

import random
from typing import TypeVar

T = TypeVar("T")


class FaultInjector:
    """Drops, duplicates and delays items with the given probabilities (seeded)."""

    def __init__(self, drop: float, duplicate: float, reorder: float, seed: int | None) -> None:
        for name, p in (("drop", drop), ("duplicate", duplicate), ("reorder", reorder)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"--{name} must be a probability in [0, 1], got {p}")
        self.drop = drop
        self.duplicate = duplicate
        self.reorder = reorder
        self.rng = random.Random(seed)
        self.held: list = []
        self.counts = {"dropped": 0, "duplicated": 0, "reordered": 0}

    @property
    def active(self) -> bool:
        return bool(self.drop or self.duplicate or self.reorder)

    def apply(self, items: list[T]) -> list[T]:
        """The items that go on, in the order they go on; held items come after this batch."""
        released, self.held = self.held, []
        passed: list[T] = []
        for item in items:
            if self.rng.random() < self.drop:
                self.counts["dropped"] += 1
                continue
            copies = 2 if self.rng.random() < self.duplicate else 1
            self.counts["duplicated"] += copies - 1
            for _ in range(copies):
                if self.rng.random() < self.reorder:
                    self.counts["reordered"] += 1
                    self.held.append(item)
                else:
                    passed.append(item)
        return passed + released

    def release(self) -> list:
        """Held items, for an idle moment when no new batch comes to overtake them."""
        released, self.held = self.held, []
        return released
