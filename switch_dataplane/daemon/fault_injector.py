"""A hostile network between the hosts and the switch, one independent set of faults per direction.

The daemon passes every batch of received requests through ``FaultInjector.requests`` before the
switch sees it, and every batch of answers through ``FaultInjector.responses`` before it is sent,
so a request is only ever delivered to the switch and an answer only ever to its host. Each
direction draws from its own seeded random stream and applies, per datagram and independently:

- drop (probability ``drop``);
- duplicate (probability ``duplicate``: the datagram goes on twice);
- corrupt (probability ``corrupt``, per copy: ``corrupt_bytes`` random bytes XORed with a random
  non-zero byte, so each of them really changes);
- reorder (probability ``reorder``, per copy: the copy is held back until ``reorder_packets``
  later datagrams of the same direction have gone on, or, with ``reorder_ms``, until that many
  milliseconds have passed; a copy still held when its direction goes idle is released then, after
  everything that came later, so nothing held is ever lost);
- blackhole: after ``blackhole_after`` datagrams of the direction, every datagram is dropped for
  ``blackhole_s`` seconds (once).

>>> faults = DirectionFaults(duplicate=1.0, seed=1)
>>> faults.apply([(b"a", 1), (b"b", 2)])
[(b'a', 1), (b'a', 1), (b'b', 2), (b'b', 2)]
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

INF = float("inf")
A = TypeVar("A")  # where a datagram goes (an address); carried along untouched

COUNTER_NAMES = ("seen", "dropped", "blackholed", "duplicated", "corrupted", "reordered", "passed")


@dataclass
class _Held:
    item: tuple[bytes, object]
    arrival: int  # index of the datagram in its direction's arrival order
    due_at: float  # by time: released once the clock reaches this (inf: by packets)
    overtaken: int = 0  # later arrivals that have gone on since it was held


@dataclass
class DirectionFaults:
    """The faults of one direction; ``apply`` each batch in arrival order, ``flush`` when idle."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    reorder_packets: int = 3
    reorder_ms: float = 0.0
    corrupt_bytes: int = 1
    blackhole_after: int = 0
    blackhole_s: float = 0.0
    seed: int | None = None
    clock: Callable[[], float] = time.monotonic
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder", "corrupt"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"--{name} must be a probability in [0, 1], got {p}")
        for name in ("reorder_packets", "corrupt_bytes", "blackhole_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("reorder_ms", "blackhole_s"):
            value = getattr(self, name)
            if not 0.0 <= value < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.reorder and not (self.reorder_packets or self.reorder_ms):
            raise ValueError("reordering needs a delay: a number of packets or milliseconds > 0")
        self.rng = random.Random(self.seed)
        self.held: list[_Held] = []
        self.blackhole_until: float | None = None  # set when the blackhole starts

    @property
    def active(self) -> bool:
        return bool(self.drop or self.duplicate or self.reorder or self.corrupt or self.blackhole_s)

    def apply(self, items: list[tuple[bytes, A]]) -> list[tuple[bytes, A]]:
        """The datagrams that go on now, in order: this batch's survivors, with held ones that
        fall due slotted in after the datagrams that overtook them."""
        out: list[tuple[bytes, A]] = []
        for payload, address in items:
            self.counts["seen"] += 1
            if self._in_blackhole():
                self.counts["blackholed"] += 1
                continue
            if self.rng.random() < self.drop:
                self.counts["dropped"] += 1
                continue
            copies = 2 if self.rng.random() < self.duplicate else 1
            self.counts["duplicated"] += copies - 1
            arrival = self.counts["seen"]
            for _ in range(copies):
                copy = payload
                if self.rng.random() < self.corrupt:
                    copy = self._corrupted(payload)
                if self.rng.random() < self.reorder:
                    self.counts["reordered"] += 1
                    due_at = self.clock() + self.reorder_ms / 1000 if self.reorder_ms else INF
                    self.held.append(_Held((copy, address), arrival, due_at))
                else:
                    self._emit((copy, address), arrival, out)
        self._release(out, idle=False)
        return out

    def flush(self) -> list[tuple[bytes, A]]:
        """For an idle moment: held datagrams that are due, and those waiting for packets that
        are not coming (everything that came later has already gone on)."""
        out: list[tuple[bytes, A]] = []
        self._release(out, idle=True)
        return out

    def _emit(self, item: tuple[bytes, object], arrival: int, out: list) -> None:
        out.append(item)
        self.counts["passed"] += 1
        for held in self.held:
            held.overtaken += held.arrival < arrival
        self._release(out, idle=False)

    def _release(self, out: list, idle: bool) -> None:
        now = self.clock()
        due = [
            h
            for h in self.held
            if now >= h.due_at
            or (h.due_at == INF and (idle or h.overtaken >= self.reorder_packets))
        ]
        for h in due:
            self.held.remove(h)
        for h in due:
            self._emit(h.item, h.arrival, out)

    def _in_blackhole(self) -> bool:
        if not self.blackhole_s:
            return False
        if self.blackhole_until is None:
            if self.counts["seen"] <= self.blackhole_after:
                return False
            self.blackhole_until = self.clock() + self.blackhole_s
        return self.clock() < self.blackhole_until

    def _corrupted(self, payload: bytes) -> bytes:
        if not payload or not self.corrupt_bytes:
            return payload
        self.counts["corrupted"] += 1
        data = bytearray(payload)
        for position in self.rng.sample(range(len(data)), min(self.corrupt_bytes, len(data))):
            data[position] ^= self.rng.randrange(1, 256)
        return bytes(data)


DIRECTIONS = ("requests", "responses")


def per_direction(text: str, flag: str) -> dict[str, str]:
    """A fault flag's value for each direction: ``V`` (both) or ``requests=V,responses=W``
    (either part may be left out; a direction left out gets no fault)."""
    values: dict[str, str] = {}
    for part in text.split(","):
        direction, sep, value = part.strip().rpartition("=")
        targets = DIRECTIONS if not sep else (direction.strip(),)
        if any(d not in DIRECTIONS for d in targets) or not value.strip():
            raise ValueError(
                f"{flag} {text!r}: give V for both directions or requests=V,responses=W"
            )
        values.update(dict.fromkeys(targets, value.strip()))
    return values


def direction_settings(flags: dict[str, str | None]) -> dict[str, dict[str, float | int]]:
    """``DirectionFaults`` keyword arguments per direction from ``inc-switch serve``'s fault flags
    ({flag name: value or None}); ``reorder_by`` is ``N`` (packets) or ``Nms`` (milliseconds)."""
    settings: dict[str, dict[str, float | int]] = {d: {} for d in DIRECTIONS}
    for name, text in flags.items():
        if text is None:
            continue
        flag = "--" + name.replace("_", "-")
        for direction, value in per_direction(text, flag).items():
            try:
                if name == "reorder_by":
                    ms = value.endswith("ms")
                    key, number = (
                        ("reorder_ms", float(value[:-2])) if ms else ("reorder_packets", int(value))
                    )
                    settings[direction].update(reorder_packets=0, reorder_ms=0.0)
                    settings[direction][key] = number
                elif name in ("corrupt_bytes", "blackhole_after"):
                    settings[direction][name] = int(value)
                elif name == "blackhole":
                    settings[direction]["blackhole_s"] = float(value)
                else:
                    settings[direction][name] = float(value)
            except ValueError:
                raise ValueError(f"{flag}: {value!r} is not a number") from None
    return settings


class FaultInjector:
    """Independent faults for requests (hosts -> switch) and responses (switch -> hosts)."""

    def __init__(self, requests: DirectionFaults, responses: DirectionFaults) -> None:
        self.requests = requests
        self.responses = responses

    @classmethod
    def from_flags(cls, flags: dict[str, str | None], seed: int | None) -> FaultInjector:
        """From ``inc-switch serve``'s fault flags; each direction gets its own random stream."""
        settings = direction_settings(flags)
        streams = random.Random(seed)
        requests, responses = (
            DirectionFaults(**settings[d], seed=None if seed is None else streams.getrandbits(64))
            for d in DIRECTIONS
        )
        return cls(requests, responses)

    @property
    def active(self) -> bool:
        return self.requests.active or self.responses.active

    def counts(self) -> dict[str, dict[str, int]]:
        """Counters per direction, JSON-ready (the switch's ``stats`` answer carries them)."""
        return {"requests": dict(self.requests.counts), "responses": dict(self.responses.counts)}
