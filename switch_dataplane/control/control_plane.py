"""The switch control plane: admission, regions, flows, epochs, copies, leases, statistics.

It runs beside the dataplane as a switch CPU would and changes the dataplane only through the
``Dataplane`` interface (table and register writes). Requests arrive as JSON control messages
on the data socket (see docs/protocol.md); every answer is ``{"ok": true, ...}`` or
``{"ok": false, "error": <what was wrong and what to do>, "code": <CODE>}``.

Only the control plane swaps a job's aggregator copies: on request of the job's owner, or on
its own, decided by what the active copy holds: each time a flow closes (the job's *phase*
moves on), it reads the copy's hit counts and last-hit phases, and swaps when keys that no
flow has hit for ``STALE_PHASES`` phases hold more than the job's ``swap_stale_share`` of the
copy's hits (the popular keys changed: the copy is full of yesterday's keys, which the
one-eviction-a-packet rule of the dataplane would take long to replace). Only while the job has
open flows (once every flow is closed the owner drains, and the copies hold still). A copy is
made active again only after its owner drained it and called ``clear_copy``.

Memory goes through the ``MemoryManager`` under the switch's policy: ``open_job`` asks it for a
region, and a job it cannot grant now waits in its queue for at most the request's
``max_wait_ms``. A waiter is known across its re-asks by ``requester`` (over the wire: the
sender and the control client's nonce); it must ask again within ``WAITER_SILENCE_S`` or its
place is given up. Closing a job and a lease running out both release its region through the
manager, so the head of the queue is granted when it next asks.
"""

from __future__ import annotations

import hmac
import itertools
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from switch_dataplane import wire
from switch_dataplane.control.memory_manager import (
    Grant,
    MemoryManager,
    MemoryRefused,
    MemoryRequest,
)
from switch_dataplane.dataplane import Dataplane
from switch_dataplane.dataplane import pipeline_kernel as k

ACTIVE, DRAINABLE, CLEAN = "active", "drainable", "clean"
EPOCH_HISTORY = 16  # epochs of records and counters kept per job
STALE_PHASES = 4  # phases (closed flows) without a hit after which a resident key is stale
SWAP_MIN_HITS = 4096  # hits the active copy holds before a swap is decided on
DEFAULT_SWAP_STALE_SHARE = 0.7
DEFAULT_LEASE_S = 30.0
MAX_LEASE_S = 3600.0  # longer asks are granted this: a dead client's job is reclaimed in time
MAX_NAME_CHARS = 64
EPOCH_RECORD_PAGE = 12  # flow records per answer: one datagram even with 32-bit fields
U32 = (1 << 32) - 1
DEFAULT_MEMORY_POLICY = "edf"  # the scheduler benchmark's pick (docs/scheduler.md)
DEFAULT_DEADLINE_RESERVE = 0.25  # edf: share of the array best-effort jobs leave free
MAX_PRIORITY = 255
MAX_DEADLINE_MS = 24 * 3600 * 1000
MAX_WAIT_MS = 3600 * 1000
MIN_FLOWS_PER_JOB = 4  # a job's share of the flow slots never falls below this
WAIT_RETRY_MS = 50  # how soon a waiter asks again: a released region is granted this late
WAITER_SILENCE_S = 5.0  # a waiter silent this long is gone (its host died): the queue moves on
TOKEN_LIMIT = (1 << wire.TOKEN_BITS) - 1

#: A source of random bits (``secrets.randbits``); tests give twins one deterministic source.
RandomBits = Callable[[int], int]


def traffic_ledger(counters: dict[str, int]) -> dict[str, int]:
    """What crossed the network each way for one epoch of a job, from its counters: tuples and
    bytes to the switch (data packets and drain requests), tuples and bytes back to hosts
    (residual, flushed, evicted and drained entries, and the answers' headers, which are the
    acknowledgement overhead)."""
    drains = counters["drain_requests"]
    headers = counters["packets"] * wire.HEADER_BYTES  # every data packet and drain request
    to_hosts = sum(counters[c] for c in ("residual", "flushed", "evicted", "drained_entries"))
    return {
        "tuples_to_switch": counters["tuples"],
        "bytes_to_switch": headers + counters["tuples"] * wire.SLOT_BYTES,
        "tuples_to_hosts": to_hosts,
        "bytes_to_hosts": headers + to_hosts * wire.SLOT_BYTES,
        "ack_bytes": headers,
        "drain_requests": drains,
    }


class ControlError(Exception):
    """A request the control plane refuses; ``code`` is machine readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple:
        return type(self), (self.code, str(self))


def int_field(msg: dict[str, Any], name: str, lo: int, hi: int, default: int | None = None) -> int:
    """An integer field within ``lo..hi`` (absent: ``default``), else a clear BAD_ARGUMENT."""
    value = msg.get(name, default)
    if value is None:
        raise ControlError("BAD_ARGUMENT", f"field {name!r} is missing")
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ControlError("BAD_ARGUMENT", f"{name} must be an integer in {lo}..{hi}")
    return value


def float_field(msg: dict[str, Any], name: str, lo: float, hi: float, default: float) -> float:
    """A finite number field within ``[lo, hi]`` (absent: ``default``)."""
    value = msg.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ControlError("BAD_ARGUMENT", f"{name} must be a number in [{lo}, {hi}]")
    value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ControlError("BAD_ARGUMENT", f"{name} must be a finite number in [{lo}, {hi}]")
    return value


@dataclass
class FlowRecord:
    flow_id: int
    partition: int
    attempt: int
    closed: bool = False
    packets: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow_id": self.flow_id,
            "partition": self.partition,
            "attempt": self.attempt,
            "closed": self.closed,
            "packets": self.packets,
        }


@dataclass
class Waiter:
    """A job waiting for memory: the manager's owner id for it, who asks, and its times."""

    owner: int
    source: str | None
    arrived: float
    gives_up_at: float
    last_asked: float


@dataclass
class JobRecord:
    job_id: int
    name: str
    token: int
    agg: str
    offset: int
    columns: int
    window: int
    lease_s: float
    swap_stale_share: float
    evict: bool
    expires_at: float
    source: str | None  # the address that opened it (None: an in-process caller)
    memory_owner: int  # who holds its region in the memory manager
    memory_request: MemoryRequest  # what it asked for: its region is re-decided per epoch
    shared: bool = False  # its region is the shared pool: other jobs' aggregators live in it
    epoch: int = 1
    phase: int = 0  # flows closed this epoch: an aggregator's age for eviction
    active_copy: int = 0
    copies: list[str] = field(default_factory=lambda: [ACTIVE, CLEAN])
    swaps: int = 0
    open_flow_slots: set[int] = field(default_factory=set)
    records: dict[int, list[FlowRecord]] = field(default_factory=dict)  # epoch -> flows
    epoch_counters: dict[int, dict[str, int]] = field(default_factory=dict)  # closed epochs
    epoch_swaps: int = 0
    seen_packets: int = 0  # dataplane packet counter at the last lease check


class ControlPlane:
    """Programs a dataplane on behalf of jobs; answers control messages."""

    def __init__(
        self,
        dataplane: Dataplane,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.thread_time,
        random_bits: RandomBits = secrets.randbits,
        operator_secret: str | None = None,
        jobs_per_source: int | None = None,
        flows_per_job: int | None = None,
        memory_policy: str = DEFAULT_MEMORY_POLICY,
        deadline_reserve: float = DEFAULT_DEADLINE_RESERVE,
    ) -> None:
        self.dataplane = dataplane
        self.clock = clock
        self.cpu_clock = cpu_clock  # CPU time of the thread that runs the switch
        self.random_bits = random_bits  # job tokens: never from a seed a user can know
        self.operator_secret = operator_secret  # None: stats only in process, not on the wire
        self.jobs_per_source = jobs_per_source or max(1, dataplane.max_jobs // 4)
        self.flows_per_job = flows_per_job or dataplane.max_flows - dataplane.max_flows // 4
        self.flows_per_source = self.flows_per_job
        self.open_flows_of: Counter[str] = Counter()  # source -> flows it has open
        self._source: str | None = None  # the source of the request being handled
        self._requester: Hashable = None  # who asks, the same across its re-asks
        self.request_time = clock()  # one time per request: the manager sees no time pass
        self.memory = MemoryManager(
            dataplane.columns,
            memory_policy,
            clock=lambda: self.request_time,
            reserve_share=deadline_reserve,
        )
        self.waiters: dict[Hashable, Waiter] = {}  # requester -> its wait for memory
        self._owners = itertools.count(1)
        self.jobs: dict[int, JobRecord] = {}
        self.free_flow_slots = list(range(dataplane.max_flows - 1, -1, -1))
        self.flow_generation = [0] * dataplane.max_flows
        self.flow_owner: dict[int, int] = {}  # flow slot -> job id
        self.flow_source: dict[int, str | None] = {}  # flow slot -> who opened it
        self.control_counters = {
            "requests": 0,
            "errors": 0,
            "malformed": 0,
            "corrupt": 0,
            "shed": 0,  # control requests beyond their sender's share of a busy batch
            "expired_jobs": 0,
            "jobs_opened": 0,
            "flows_opened": 0,
            "internal_errors": 0,
            "rate_limited": 0,  # packets of sources that failed credentials too often
            "unanswered": 0,  # answers withheld: larger than an unauthenticated request
        }

    # ------------------------------------------------------------------ requests

    def handle(
        self, message: dict[str, Any], source: str | None = None, requester: Hashable = None
    ) -> dict[str, Any]:
        """Answer one control request from ``source`` (an address; None: in process) made by
        ``requester`` (who asks, the same across its retries and re-asks); never raises for bad
        input."""
        self.control_counters["requests"] += 1
        self.request_time = self.clock()
        op = message.get("op")
        handler = self._handlers().get(op) if isinstance(op, str) else None
        try:
            if handler is None:
                raise ControlError("BAD_ARGUMENT", f"unknown op; known: {sorted(self._handlers())}")
            self._source, self._requester = source, requester
            return {"ok": True, **handler(message)}
        except ControlError as exc:
            self.control_counters["errors"] += 1
            return {"ok": False, "code": exc.code, "error": str(exc)}

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "open_job": self.open_job,
            "open_flow": self.open_flow,
            "close_flow": self.close_flow,
            "epoch_record": self.epoch_record,
            "new_epoch": self.new_epoch,
            "swap": self.swap,
            "clear_copy": self.clear_copy,
            "job_status": self.job_status,
            "renew": self.renew,
            "close_job": self.close_job,
            "stats": self.operator_stats,
        }

    def open_job(self, msg: dict[str, Any]) -> dict[str, Any]:
        agg = msg.get("agg", "sum")
        if not isinstance(agg, str) or agg not in k.AGG_CODES:
            raise ControlError("BAD_ARGUMENT", f"agg must be one of {sorted(k.AGG_CODES)}")
        name = msg.get("name", "")
        if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
            raise ControlError("BAD_ARGUMENT", f"name must be a string of <= {MAX_NAME_CHARS}")
        window = int_field(msg, "window", 0, U32, 0) or self.dataplane.window_capacity
        window = min(window, self.dataplane.window_capacity)
        window = 1 << (window.bit_length() - 1)  # a power of two: index = seq & (window - 1)
        lease_s = float_field(msg, "lease_s", 0.0, math.inf, DEFAULT_LEASE_S)
        if lease_s <= 0:
            raise ControlError("BAD_ARGUMENT", f"lease_s must be > 0 (at most {MAX_LEASE_S:.0f})")
        lease_s = min(lease_s, MAX_LEASE_S)
        share = float_field(msg, "swap_stale_share", 0.0, 1.0, DEFAULT_SWAP_STALE_SHARE)
        evict = msg.get("evict", True)
        if not isinstance(evict, bool):
            raise ControlError("BAD_ARGUMENT", "evict must be true or false")
        request = self._memory_request(msg)
        self.expire_leases()
        waiter = self._waiter_still_in_time()
        if len(self.jobs) >= self.dataplane.max_jobs:
            raise ControlError(
                "TOO_MANY_JOBS",
                f"all {self.dataplane.max_jobs} job slots are in use; retry when a job closes",
            )
        source = self._source
        if source is not None and (
            sum(j.source == source for j in self.jobs.values())
            + sum(w.source == source and w is not waiter for w in self.waiters.values())
            >= self.jobs_per_source
        ):
            raise ControlError(
                "TOO_MANY_JOBS",
                f"{source} has {self.jobs_per_source} jobs open or waiting, the most one source "
                "may; close one first",
            )
        owner = waiter.owner if waiter is not None else next(self._owners)
        try:
            granted = self.memory.admit(owner, request)
        except MemoryRefused as exc:
            raise ControlError(exc.code, exc.message) from exc
        if not isinstance(granted, Grant):
            return self._queued(owner, request, waiter, granted.position)
        self.waiters.pop(self._requester, None)
        offset, columns = granted.offset, granted.columns
        job_id = next(j for j in range(self.dataplane.max_jobs) if j not in self.jobs)
        token = self.random_bits(wire.TOKEN_BITS) or 1  # 0 is never a token
        job = JobRecord(
            job_id=job_id,
            name=name,
            token=token,
            agg=agg,
            offset=offset,
            columns=columns,
            window=window,
            lease_s=lease_s,
            swap_stale_share=share,
            evict=evict,
            expires_at=self.clock() + lease_s,
            source=source,
            memory_owner=owner,
            memory_request=request,
            shared=granted.shared,
        )
        self._install(job)
        job.records[job.epoch] = []
        self.jobs[job_id] = job
        self.control_counters["jobs_opened"] += 1
        return {
            "job_id": job_id,
            "token": token,
            "epoch": job.epoch,
            "offset": offset,
            "columns": columns,
            "slots": self.dataplane.rows,
            "window": window,
            "lease_s": lease_s,
            "evict": evict,
            "swap_stale_share": share,
            "active_copy": 0,
            "flows": self.flow_share(),
        }

    def _memory_request(self, msg: dict[str, Any]) -> MemoryRequest:
        """The memory fields of an ``open_job`` request (docs/protocol.md §7). A job that names
        its ``columns`` gets exactly that many unless it says it can do with ``min_columns``."""
        size = self.dataplane.columns
        columns = None if msg.get("columns") is None else int_field(msg, "columns", 1, size)
        deadline_ms = int_field(msg, "deadline_ms", 0, MAX_DEADLINE_MS, 0)
        return MemoryRequest(
            columns=columns,
            min_columns=int_field(msg, "min_columns", 1, size, columns or 1),
            priority=int_field(msg, "priority", 0, MAX_PRIORITY, 0),
            deadline=self.request_time + deadline_ms / 1000 if deadline_ms else None,
            max_wait_s=int_field(msg, "max_wait_ms", 0, MAX_WAIT_MS, 0) / 1000,
        )

    def _waiter_still_in_time(self) -> Waiter | None:
        """The requester's wait for memory, if it has one; ``AA_WAIT_EXPIRED`` if its wait ran
        out (the manager dropped it from the queue)."""
        waiter = self.waiters.get(self._requester)
        if waiter is None or self.request_time < waiter.gives_up_at:
            return waiter
        del self.waiters[self._requester]
        self.memory.release(waiter.owner)
        raise ControlError(
            "AA_WAIT_EXPIRED",
            f"waited {round((self.request_time - waiter.arrived) * 1000)} ms for switch "
            f"memory, the most its max_wait_ms allowed; {len(self.jobs)} job(s) hold "
            f"{self.memory.utilisation():.0%} of {self.dataplane.columns} columns under the "
            f"{self.memory.policy} policy. Raise spark.inc.memory.maxWaitMs, ask for fewer "
            "columns, or use another switch",
        )

    def _queued(
        self, owner: int, request: MemoryRequest, waiter: Waiter | None, position: int
    ) -> dict[str, Any]:
        """The answer to a job that waits for memory, noting that it asked."""
        now = self.request_time
        if waiter is None and len(self.waiters) >= self.dataplane.max_jobs:
            self.memory.release(owner)
            raise ControlError(
                "QUEUE_FULL",
                f"{len(self.waiters)} jobs wait for switch memory, the most this switch queues; "
                "retry later or use another switch",
            )
        if waiter is None:
            waiter = Waiter(owner, self._source, now, now + request.max_wait_s, now)
            self.waiters[self._requester] = waiter
        waiter.last_asked = now
        left_ms = max(1, round((waiter.gives_up_at - now) * 1000))
        return {"queued": True, "position": position, "retry_ms": min(WAIT_RETRY_MS, left_ms)}

    def _job(self, msg: dict[str, Any]) -> JobRecord:
        """The job the request names, if its token is right. A wrong token and an unknown job
        get the same answer, so guesses learn nothing about which jobs exist."""
        job_id = msg.get("job_id")
        token = msg.get("token")
        job = self.jobs.get(job_id) if isinstance(job_id, int) else None
        if (
            job is None
            or type(token) is not int
            or not 0 <= token <= TOKEN_LIMIT
            or not hmac.compare_digest(job.token.to_bytes(8, "big"), token.to_bytes(8, "big"))
        ):
            raise ControlError("BAD_JOB", "no open job with that id and token (closed, expired?)")
        job.expires_at = self.clock() + job.lease_s
        return job

    def flow_share(self) -> int:
        """The open flows a job may hold now: the flow slots divided among the open jobs (at
        least ``MIN_FLOWS_PER_JOB``), at most ``flows_per_job``. A job above its share when
        others open keeps its flows and opens no more until it is below it."""
        fair = self.dataplane.max_flows // max(1, len(self.jobs))
        return min(self.flows_per_job, max(MIN_FLOWS_PER_JOB, fair))

    def open_flow(self, msg: dict[str, Any]) -> dict[str, Any]:
        job = self._job(msg)
        epoch = int_field(msg, "epoch", 0, U32)
        if epoch != job.epoch:
            raise ControlError(
                "STALE_EPOCH", f"epoch {epoch} is not the job's current epoch {job.epoch}"
            )
        partition = int_field(msg, "partition", 0, U32)  # checked before any change
        attempt = int_field(msg, "attempt", 0, U32)
        if not self.free_flow_slots:
            raise ControlError(
                "TOO_MANY_FLOWS",
                f"all {self.dataplane.max_flows} flows are open; close finished flows or retry",
            )
        share = self.flow_share()
        if len(job.open_flow_slots) >= share:
            raise ControlError(
                "TOO_MANY_FLOWS",
                f"the job has {len(job.open_flow_slots)} flows open, its share of the "
                f"{self.dataplane.max_flows} flow slots while {len(self.jobs)} job(s) are open; "
                "close finished ones or retry when one closes",
            )
        source = self._source
        if source is not None and self.open_flows_of[source] >= self.flows_per_source:
            raise ControlError(
                "TOO_MANY_FLOWS",
                f"{source} has {self.flows_per_source} flows open, the most one source may",
            )
        slot = self.free_flow_slots.pop()
        self.flow_generation[slot] = (self.flow_generation[slot] + 1) & 0xFFFF
        flow_id = self.flow_generation[slot] << k.FLOW_SLOT_BITS | slot
        self.dataplane.install_flow(slot, self.flow_generation[slot], job.job_id, job.epoch)
        self.flow_owner[slot] = job.job_id
        self.flow_source[slot] = source
        if source is not None:
            self.open_flows_of[source] += 1
        job.open_flow_slots.add(slot)
        self.control_counters["flows_opened"] += 1
        job.records[job.epoch].append(FlowRecord(flow_id, partition, attempt))
        return {"flow_id": flow_id, "window": job.window}

    def _release_flow(self, job: JobRecord, slot: int) -> None:
        self.dataplane.remove_flow(slot)
        job.open_flow_slots.discard(slot)
        self.flow_owner.pop(slot, None)
        source = self.flow_source.pop(slot, None)
        if source is not None:
            self.open_flows_of[source] -= 1
            if not self.open_flows_of[source]:
                del self.open_flows_of[source]
        self.free_flow_slots.append(slot)

    def close_flow(self, msg: dict[str, Any]) -> dict[str, Any]:
        job = self._job(msg)
        flow_id = int_field(msg, "flow_id", 0, U32)
        record = next((f for f in job.records[job.epoch] if f.flow_id == flow_id), None)
        if record is None:
            raise ControlError("BAD_FLOW", f"flow {flow_id} is not in the current epoch")
        if not record.closed:
            record.packets = int_field(msg, "packets", 0, U32, 0)
            record.closed = True
            self._release_flow(job, flow_id & ((1 << k.FLOW_SLOT_BITS) - 1))
            job.phase += 1
            self.dataplane.set_phase(job.job_id, job.phase)
            self._maybe_swap(job)
        return {}

    def epoch_record(self, msg: dict[str, Any]) -> dict[str, Any]:
        """One page of an epoch's flow records (``start``: the first one), with ``next`` while
        more follow: every answer fits one datagram, however many partitions the job has."""
        job = self._job(msg)
        epoch = int_field(msg, "epoch", 0, U32, job.epoch)
        if epoch not in job.records:
            raise ControlError("STALE_EPOCH", f"no record of epoch {epoch} is kept any more")
        flows = job.records[epoch]
        start = int_field(msg, "start", 0, len(flows), 0)
        page = flows[start : start + EPOCH_RECORD_PAGE]
        answer: dict[str, Any] = {
            "epoch": epoch,
            "flows": [f.as_dict() for f in page],
            "total": len(flows),
            "paged": "flows",
        }
        if start + len(page) < len(flows):
            answer["next"] = start + len(page)
        return answer

    def new_epoch(self, msg: dict[str, Any]) -> dict[str, Any]:
        job = self._job(msg)
        self._close_epoch(job)
        job.epoch += 1
        job.records[job.epoch] = []
        for old in sorted(job.records)[:-EPOCH_HISTORY]:
            job.records.pop(old)
            job.epoch_counters.pop(old, None)
        self.dataplane.set_epoch(job.job_id, job.epoch)
        self._resize(job)
        return {"epoch": job.epoch, "offset": job.offset, "columns": job.columns}

    def _resize(self, job: JobRecord) -> None:
        """Between epochs the memory manager may move the job's region (to its fair share, or
        into memory that came free); both copies are empty, so nothing moves with it."""
        grant = self.memory.resize(job.memory_owner, job.memory_request)
        if (grant.offset, grant.columns) == (job.offset, job.columns):
            return
        job.offset, job.columns = grant.offset, grant.columns
        self._install(job)

    def _install(self, job: JobRecord) -> None:
        """Program the job's region into the dataplane: clear what an earlier holder left in it
        (in the shared pool: of this job id only), then its job-table entry."""
        for copy in (0, 1):
            self.dataplane.clear(copy, job.offset, job.columns, job.job_id if job.shared else None)
        self.dataplane.install_job(
            job.job_id, job.token, job.epoch, job.offset, job.columns, k.AGG_CODES[job.agg],
            job.window, job.evict, job.shared,
        )  # fmt: skip
        self.dataplane.set_active_copy(job.job_id, job.active_copy)

    def _close_epoch(self, job: JobRecord) -> None:
        """Release flows, clear both copies and keep the epoch's counters."""
        for slot in list(job.open_flow_slots):
            self._release_flow(job, slot)
        for copy in (0, 1):
            self.dataplane.clear(copy, job.offset, job.columns, job.job_id)
            job.copies[copy] = CLEAN
        job.copies[job.active_copy] = ACTIVE
        job.epoch_counters[job.epoch] = self._counters(job)
        self.dataplane.reset_job_counters(job.job_id)
        job.epoch_swaps = 0
        job.phase = 0
        self.dataplane.set_phase(job.job_id, 0)
        job.seen_packets = 0

    def swap(self, msg: dict[str, Any]) -> dict[str, Any]:
        job = self._job(msg)
        self._swap(job)
        return {"active_copy": job.active_copy}

    def _swap(self, job: JobRecord) -> None:
        other = 1 - job.active_copy
        if job.copies[other] != CLEAN:
            raise ControlError(
                "COPY_NOT_CLEAN",
                f"copy {other} is {job.copies[other]}: drain it and call clear_copy first",
            )
        job.copies[job.active_copy] = DRAINABLE
        job.copies[other] = ACTIVE
        job.active_copy = other
        job.swaps += 1
        job.epoch_swaps += 1
        self.dataplane.set_active_copy(job.job_id, other)

    def clear_copy(self, msg: dict[str, Any]) -> dict[str, Any]:
        job = self._job(msg)
        copy = int_field(msg, "copy", 0, 1)
        if job.copies[copy] == ACTIVE:
            raise ControlError("COPY_ACTIVE", f"copy {copy} is active; only inactive copies clear")
        self.dataplane.clear(copy, job.offset, job.columns, job.job_id)
        job.copies[copy] = CLEAN
        return {}

    def _counters(self, job: JobRecord) -> dict[str, int]:
        return {**self.dataplane.job_counters(job.job_id), "swaps": job.epoch_swaps}

    def job_status(self, msg: dict[str, Any]) -> dict[str, Any]:
        job = self._job(msg)
        return {
            "epoch": job.epoch,
            "active_copy": job.active_copy,
            "copies": list(job.copies),
            "swaps": job.swaps,
            "counters": self._counters(job),
            "lease_left_s": job.expires_at - self.clock(),
            "switch_cpu_s": self.cpu_clock(),
        }

    def renew(self, msg: dict[str, Any]) -> dict[str, Any]:
        job = self._job(msg)
        return {"lease_left_s": job.expires_at - self.clock()}

    def close_job(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._remove_job(self._job(msg))
        return {}

    def _remove_job(self, job: JobRecord) -> None:
        self._close_epoch(job)
        self.dataplane.remove_job(job.job_id)
        self.memory.release(job.memory_owner)
        del self.jobs[job.job_id]

    # ------------------------------------------------------------------ periodic work

    def tick(self) -> None:
        """Periodic control-plane work: lease renewal by traffic, expiry."""
        self.request_time = self.clock()
        self.expire_leases()

    def _maybe_swap(self, job: JobRecord) -> None:
        """Swap when stale keys hold most of the active copy's hits (see the module doc)."""
        if not job.swap_stale_share or not job.open_flow_slots:
            return  # no sender left: the owner drains, the copies must hold still
        if job.copies[1 - job.active_copy] != CLEAN:
            return
        hits, phases = self.dataplane.copy_meta(
            job.active_copy, job.offset, job.columns, job.job_id
        )
        total = int(hits.sum())
        if total < SWAP_MIN_HITS:
            return
        stale = int(hits[(job.phase - phases) & k.PHASE_MASK >= STALE_PHASES].sum())
        if stale > job.swap_stale_share * total:
            self._swap(job)

    def expire_leases(self) -> None:
        """Renew leases of jobs whose packets arrived, then reclaim the regions of dead jobs
        and the places in the queue of waiters that stopped asking."""
        now = self.clock()
        for requester, waiter in list(self.waiters.items()):
            if now - waiter.last_asked > WAITER_SILENCE_S:
                del self.waiters[requester]
                self.memory.release(waiter.owner)
        for job in self.jobs.values():
            packets = self.dataplane.job_counters(job.job_id)["packets"]
            if packets != job.seen_packets:
                job.seen_packets = packets
                job.expires_at = now + job.lease_s
        for job in [j for j in self.jobs.values() if j.expires_at < now]:
            self.control_counters["expired_jobs"] += 1
            self._remove_job(job)

    # ------------------------------------------------------------------ statistics

    def operator_stats(self, msg: dict[str, Any]) -> dict[str, Any]:
        """``stats`` on the wire, for the operator only, in pieces of one datagram each: the
        switch counters and job ids; with ``job``, that job; with ``job`` and ``epoch``, that
        epoch's counters and ledger. ``control_client.fetch_stats`` puts them together."""
        given = msg.get("operator")
        if (
            self.operator_secret is None
            or not isinstance(given, str)
            or not hmac.compare_digest(given.encode(), self.operator_secret.encode())
        ):
            raise ControlError(
                "NOT_OPERATOR",
                "stats needs the operator secret (inc-switch stats reads it from the file "
                "inc-switch serve wrote)",
            )
        if "job" not in msg:
            return {"switch": self.switch_stats(), "jobs": sorted(self.jobs)}
        job = self.jobs.get(int_field(msg, "job", 0, self.dataplane.max_jobs))
        if job is None:
            raise ControlError("BAD_JOB", "no such job (closed or expired?)")
        epochs = self._epoch_counters(job)
        if "epoch" not in msg:
            summary = self._job_summary(job)
            summary["epochs"] = sorted(int(e) for e in epochs)
            return {"job": summary}
        epoch = str(int_field(msg, "epoch", 0, U32))
        if epoch not in epochs:
            raise ControlError("STALE_EPOCH", f"no counters of epoch {epoch} are kept")
        return {"counters": epochs[epoch], "ledger": traffic_ledger(epochs[epoch])}

    def _epoch_counters(self, job: JobRecord) -> dict[str, dict[str, int]]:
        epochs = {str(e): c for e, c in job.epoch_counters.items()}
        epochs[str(job.epoch)] = self._counters(job)
        return epochs

    def _job_summary(self, job: JobRecord) -> dict[str, Any]:
        return {
            "name": job.name,
            "agg": job.agg,
            "region": {"offset": job.offset, "columns": job.columns},
            "window": job.window,
            "evict": job.evict,
            "epoch": job.epoch,
            "active_copy": job.active_copy,
            "copies": list(job.copies),
            "open_flows": len(job.open_flow_slots),
        }

    def stats(self) -> dict[str, Any]:
        """Switch-wide and per job / per epoch counters, JSON-ready (in process: the wire
        serves it in pieces, see ``operator_stats``)."""
        jobs = {}
        for job in self.jobs.values():
            epochs = self._epoch_counters(job)
            jobs[str(job.job_id)] = {
                **self._job_summary(job),
                "epochs": epochs,
                "ledger": {e: traffic_ledger(c) for e, c in epochs.items()},
            }
        return {"switch": self.switch_stats(), "jobs": jobs}

    def switch_stats(self) -> dict[str, Any]:
        """The switch-wide counters."""
        switch = self.dataplane.switch_counters()
        switch["malformed"] += self.control_counters["malformed"]
        switch["corrupt"] += self.control_counters["corrupt"]
        return {
            **switch,
            "control_requests": self.control_counters["requests"],
            "control_errors": self.control_counters["errors"],
            "expired_jobs": self.control_counters["expired_jobs"],
            "jobs_opened": self.control_counters["jobs_opened"],
            "flows_opened": self.control_counters["flows_opened"],
            "internal_errors": self.control_counters["internal_errors"],
            "rate_limited": self.control_counters["rate_limited"],
            "unanswered": self.control_counters["unanswered"],
            "shed": self.control_counters["shed"],
            "rows": self.dataplane.rows,
            "columns": self.dataplane.columns,
            "cpu_s": self.cpu_clock(),
            "free_columns": self.dataplane.columns - self.memory.regions.allocated_columns,
            "memory_policy": self.memory.policy,
            "deadline_reserve": self.memory.reserve,
            "waiting_jobs": len(self.waiters),
            "memory_granted": self.memory.utilisation(),  # share of the array jobs hold
            "aggregators_in_use": self.dataplane.aggregators_in_use(),  # both copies
        }
