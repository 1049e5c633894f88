"""The switch memory manager: which job holds which columns of the aggregator array, who waits.

Northbound, a job asks for memory with a ``MemoryRequest`` (columns wanted and the least it can
use, a priority, an optional deadline, how long it may wait). Southbound, the control plane
installs each ``Grant`` (offset, columns) in the dataplane and hands it to the job's hosts, which
address aggregators inside it. Four policies:

* ``exclusive``: one job at a time holds the whole array; the others wait their turn.
* ``isolated``: disjoint regions (``RegionAllocator``: aligned powers of two), so a job's
  performance does not depend on its neighbours. A job that names no size gets a fair share:
  the array divided among the jobs running and waiting, rounded down to a power of two.
* ``edf``: isolated regions handed out Earliest Deadline First: a job with a deadline gets the
  size it asks for before any job without one, the waiting queue is ordered by deadline, and
  best-effort jobs share what deadline jobs leave (the seed's 调度策略). While deadline jobs
  come (one asked within ``RESERVE_HOLD_S``), best-effort grants leave ``reserve`` columns free,
  so a deadline job that arrives while the array is busy starts at once instead of waiting for
  a long job to finish (regions are not taken back mid-epoch); with no deadline job about, a
  best-effort job may take the whole array.
* ``shared``: every job addresses the whole array; an owner tag on each aggregator makes
  another job's key a collision, answered as a residual (the seed's shared pool, ATP's design).

Waiting is bounded and in order: a request that cannot be granted now is queued for at most its
``max_wait_s`` and ``admit`` says its place; waiters are granted strictly in queue order (no job
overtakes one ahead of it, so none starves), each when it asks again. Nothing here touches the
dataplane.

>>> manager = MemoryManager(16, "isolated", clock=lambda: 0.0)
>>> manager.admit(1, MemoryRequest(columns=8))
Grant(offset=0, columns=8, shared=False)
>>> manager.admit(2, MemoryRequest(columns=16, min_columns=16, max_wait_s=5))
Queued(position=1)
>>> manager.admit(3, MemoryRequest(max_wait_s=5))  # behind job 2: waiters are served in order
Queued(position=2)
>>> manager.release(1)  # job 2 fits now, and is granted when it asks again
[2]
>>> manager.admit(2, MemoryRequest(columns=16, min_columns=16, max_wait_s=5))
Grant(offset=0, columns=16, shared=False)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from switch_dataplane.control.region_allocator import RegionAllocator

POLICIES = ("exclusive", "isolated", "edf", "shared")
RESERVE_HOLD_S = 60.0  # edf keeps its deadline reserve this long after the last deadline job


class MemoryRefused(Exception):
    """A request the manager cannot grant and may not queue; ``code`` is machine readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class MemoryRequest:
    """What a job asks for. ``columns`` None: the policy's fair share."""

    columns: int | None = None
    min_columns: int = 1
    priority: int = 0  # higher goes first among jobs without a deadline
    deadline: float | None = None  # on the manager's clock; None: best effort
    max_wait_s: float = 0.0  # 0: granted now or refused


@dataclass(frozen=True)
class Grant:
    offset: int
    columns: int
    shared: bool


@dataclass(frozen=True)
class Queued:
    position: int  # 1: next in line


@dataclass
class _Waiter:
    owner: int
    request: MemoryRequest
    arrived: float
    gives_up_at: float
    order: int  # arrival order, for ties


@dataclass
class MemoryManager:
    """Admission of jobs to ``columns`` aggregator-array columns under one policy."""

    columns: int
    policy: str
    clock: Callable[[], float]
    regions: RegionAllocator = field(init=False)
    grants: dict[int, Grant] = field(default_factory=dict)
    waiting: list[_Waiter] = field(default_factory=list)
    reserve_share: float = 0.0  # edf: share of the array best-effort grants leave free
    reserve: int = field(init=False)  # those columns
    _arrivals: int = 0
    _deadline_asked_at: float = -math.inf  # when a job last asked with a deadline

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"memory policy must be one of {', '.join(POLICIES)}")
        if not 0 <= self.reserve_share <= 0.5:
            raise ValueError(
                f"the deadline reserve is a share of the array in 0..0.5, got {self.reserve_share}"
            )
        self.reserve = int(self.columns * self.reserve_share)
        self.regions = RegionAllocator(self.columns)

    # ------------------------------------------------------------------ northbound

    def admit(self, owner: int, request: MemoryRequest) -> Grant | Queued:
        """Grant memory to ``owner`` now, or queue it (again) and say where it stands."""
        if owner in self.grants:
            return self.grants[owner]
        self._check(request)
        now = self.clock()
        if request.deadline is not None:
            self._deadline_asked_at = now
        self.expire()
        waiter = next((w for w in self.waiting if w.owner == owner), None)
        if waiter is None:
            self._arrivals += 1
            waiter = _Waiter(owner, request, now, now + request.max_wait_s, self._arrivals)
            self.waiting.append(waiter)
        if self._queue()[0] is waiter:
            grant = self._try_grant(waiter)
            if grant is not None:
                return grant
        if request.max_wait_s <= 0:
            self.waiting.remove(waiter)
            raise MemoryRefused("AA_FULL", self._full_message(request))
        return Queued(self._queue().index(waiter) + 1)

    def resize(self, owner: int, request: MemoryRequest) -> Grant:
        """Re-decide ``owner``'s region between two of its epochs (its copies are empty then):
        the size the policy gives it now, shrunk but never grown while others wait, grown only
        into free memory. The shared pool and ``exclusive`` keep what they hold."""
        grant = self.grants[owner]
        if grant.shared or self.policy == "exclusive":
            return grant
        now = self.clock()
        holder = _Waiter(owner, request, now, now, 0)
        wanted = self._size_for(holder)
        if self.waiting:
            wanted = min(wanted, grant.columns)
        if wanted == grant.columns:
            return grant
        self.regions.free(grant.offset)
        keep = self._keep(holder) if wanted > grant.columns else 0  # growing: not the reserve
        placed = self._place(wanted, wanted, keep) or self._place(grant.columns, grant.columns, 0)
        assert placed is not None  # the region just freed holds at least its own size
        self.grants[owner] = Grant(*placed, shared=False)
        return self.grants[owner]

    def release(self, owner: int) -> list[int]:
        """Free ``owner``'s memory (job closed or lease expired) or drop it from the queue; the
        waiting owners that can now be granted, in queue order (each is granted when it asks)."""
        grant = self.grants.pop(owner, None)
        if grant is not None and not grant.shared:
            self.regions.free(grant.offset)
        self.waiting = [w for w in self.waiting if w.owner != owner]
        return self._grantable()

    def expire(self) -> list[int]:
        """Drop waiters whose wait ran out; the owners dropped."""
        now = self.clock()
        gone = [w.owner for w in self.waiting if w.gives_up_at <= now]
        self.waiting = [w for w in self.waiting if w.gives_up_at > now]
        return gone

    def position(self, owner: int) -> int | None:
        queue = self._queue()
        return next((i + 1 for i, w in enumerate(queue) if w.owner == owner), None)

    def utilisation(self) -> float:
        """Share of the array's columns granted (a shared grant counts the whole array once)."""
        if any(g.shared for g in self.grants.values()):
            return 1.0
        return sum(g.columns for g in self.grants.values()) / self.columns

    # ------------------------------------------------------------------ policy

    def _check(self, request: MemoryRequest) -> None:
        for name, value in (("columns", request.columns), ("min_columns", request.min_columns)):
            if value is not None and (value < 1 or value & (value - 1) or value > self.columns):
                raise MemoryRefused(
                    "BAD_ARGUMENT",
                    f"{name} must be a power of two in 1..{self.columns}, got {value}",
                )
        if request.columns is not None and request.min_columns > request.columns:
            raise MemoryRefused("BAD_ARGUMENT", "min_columns must not exceed columns")
        for name, value in (("deadline", request.deadline), ("max_wait_s", request.max_wait_s)):
            if value is not None and not math.isfinite(value):
                raise MemoryRefused("BAD_ARGUMENT", f"{name} must be a finite number")
        if request.max_wait_s < 0:
            raise MemoryRefused("BAD_ARGUMENT", "max_wait_s must be >= 0")

    def _queue(self) -> list[_Waiter]:
        """Waiters in the order they are served."""
        if self.policy != "edf":
            return sorted(self.waiting, key=lambda w: w.order)

        def rank(w: _Waiter) -> tuple:
            if self._has_deadline(w):
                return (0, w.request.deadline, w.order)
            return (1, -w.request.priority, w.order)

        return sorted(self.waiting, key=rank)

    def _has_deadline(self, waiter: _Waiter) -> bool:
        """A deadline that can still be met (a missed one waits as best effort)."""
        return waiter.request.deadline is not None and waiter.request.deadline > self.clock()

    def _size_for(self, waiter: _Waiter) -> int:
        """Columns to grant ``waiter`` under the policy, before looking at what is free."""
        request = waiter.request
        if self.policy == "exclusive":
            return self.columns
        if request.columns is not None and (
            self.policy == "isolated" or request.deadline is not None
        ):
            return request.columns
        share = self.columns // (len(self.grants) + len(self.waiting))
        size = 1 << max(0, share.bit_length() - 1)  # a power of two, at least 1
        return max(request.min_columns, min(size, request.columns or self.columns))

    def _try_grant(self, waiter: _Waiter) -> Grant | None:
        if self.policy == "shared":
            grant = Grant(0, self.columns, shared=True)
        else:
            placed = self._place_waiter(waiter)
            if placed is None:
                return None
            grant = Grant(*placed, shared=False)
        self.waiting.remove(waiter)
        self.grants[waiter.owner] = grant
        return grant

    def _keep(self, waiter: _Waiter) -> int:
        """Columns ``waiter``'s grant must leave free: under ``edf``, while deadline jobs come,
        the reserve for a job without a live deadline (as much of it as the job fits beside)."""
        recent = self.clock() - self._deadline_asked_at < RESERVE_HOLD_S
        if self.policy != "edf" or not recent or self._has_deadline(waiter):
            return 0
        return min(self.reserve, self.columns - waiter.request.min_columns)

    def _place_waiter(self, waiter: _Waiter) -> tuple[int, int] | None:
        size = min(self._size_for(waiter), self.regions.largest_free())
        return self._place(size, waiter.request.min_columns, self._keep(waiter))

    def _place(self, size: int, min_columns: int, keep: int) -> tuple[int, int] | None:
        """Allocate (offset, columns): ``size`` columns, or the largest smaller power of two
        down to ``min_columns``, that leaves a free region of ``keep`` columns."""
        while size >= min_columns:
            offset = self.regions.allocate(size)
            if offset is not None and self.regions.largest_free() >= keep:
                return offset, size
            if offset is not None:
                self.regions.free(offset)
            size //= 2
        return None

    def _fits(self, waiter: _Waiter) -> bool:
        if self.policy == "shared":
            return True
        placed = self._place_waiter(waiter)
        if placed is not None:
            self.regions.free(placed[0])
        return placed is not None

    def _grantable(self) -> list[int]:
        """The owner at the head of the queue if it fits now (it is granted when it asks)."""
        head = self._queue()[:1]
        return [w.owner for w in head if self._fits(w)]

    def _full_message(self, request: MemoryRequest) -> str:
        return (
            f"switch memory full under the {self.policy} policy: {len(self.grants)} job(s) hold "
            f"{self.utilisation():.0%} of {self.columns} columns (largest free: "
            f"{self.regions.largest_free()}), {len(self.waiting)} waiting; retry when a job "
            f"closes, wait in the queue (a maximum wait > 0) or ask for fewer than "
            f"{request.min_columns} columns"
        )
