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
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from switch_dataplane import wire
from switch_dataplane.control.region_allocator import RegionAllocator
from switch_dataplane.dataplane import Dataplane
from switch_dataplane.dataplane import pipeline_kernel as k

ACTIVE, DRAINABLE, CLEAN = "active", "drainable", "clean"
EPOCH_HISTORY = 16  # epochs of records and counters kept per job
STALE_PHASES = 4  # phases (closed flows) without a hit after which a resident key is stale
SWAP_MIN_HITS = 4096  # hits the active copy holds before a swap is decided on
DEFAULT_SWAP_STALE_SHARE = 0.7


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
        seed: int | None = None,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.dataplane = dataplane
        self.clock = clock
        self.cpu_clock = cpu_clock  # CPU time of the thread that runs the switch
        self.rng = random.Random(seed)
        self.regions = RegionAllocator(dataplane.columns)
        self.jobs: dict[int, JobRecord] = {}
        self.free_flow_slots = list(range(dataplane.max_flows - 1, -1, -1))
        self.flow_generation = [0] * dataplane.max_flows
        self.flow_owner: dict[int, int] = {}  # flow slot -> job id
        self.control_counters = {
            "requests": 0,
            "errors": 0,
            "malformed": 0,
            "expired_jobs": 0,
            "jobs_opened": 0,
            "flows_opened": 0,
        }

    # ------------------------------------------------------------------ requests

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request (never raises for bad input)."""
        self.control_counters["requests"] += 1
        op = message.get("op")
        handler = self._handlers().get(op) if isinstance(op, str) else None
        try:
            if handler is None:
                raise ControlError(
                    "BAD_ARGUMENT", f"unknown op {op!r}; known: {sorted(self._handlers())}"
                )
            return {"ok": True, **handler(message)}
        except ControlError as exc:
            self.control_counters["errors"] += 1
            return {"ok": False, "code": exc.code, "error": str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            self.control_counters["errors"] += 1
            return {"ok": False, "code": "BAD_ARGUMENT", "error": f"bad {op} request: {exc!r}"}

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
            "stats": lambda _msg: self.stats(),
        }

    def open_job(self, msg: dict[str, Any]) -> dict[str, Any]:
        agg = msg.get("agg", "sum")
        if agg not in k.AGG_CODES:
            raise ControlError("BAD_ARGUMENT", f"agg must be one of {sorted(k.AGG_CODES)}")
        window = int(msg.get("window") or self.dataplane.window_capacity)
        if window < 1:
            raise ControlError("BAD_ARGUMENT", "window must be >= 1")
        window = min(window, self.dataplane.window_capacity)
        window = 1 << (window.bit_length() - 1)  # a power of two: index = seq & (window - 1)
        lease_s = float(msg.get("lease_s", 30.0))
        swap_stale_share = float(msg.get("swap_stale_share", DEFAULT_SWAP_STALE_SHARE))
        evict = msg.get("evict", True)
        if not isinstance(evict, bool):
            raise ControlError("BAD_ARGUMENT", f"evict must be true or false, got {evict!r}")
        if lease_s <= 0 or not 0.0 <= swap_stale_share <= 1.0:
            raise ControlError(
                "BAD_ARGUMENT", "lease_s must be > 0, swap_stale_share in [0, 1] (0: never)"
            )
        self.expire_leases()
        free_ids = [j for j in range(self.dataplane.max_jobs) if j not in self.jobs]
        if not free_ids:
            raise ControlError(
                "TOO_MANY_JOBS",
                f"all {self.dataplane.max_jobs} job slots are in use; retry when a job closes",
            )
        columns = msg.get("columns")
        if columns is None:
            columns = self.regions.largest_free() or 1  # full: answered AA_FULL below
        columns = int(columns)
        if columns < 1 or columns & (columns - 1) or columns > self.dataplane.columns:
            raise ControlError(
                "BAD_ARGUMENT",
                f"columns must be a power of two in 1..{self.dataplane.columns}, got {columns}",
            )
        offset = self.regions.allocate(columns) if columns else None
        if offset is None:
            raise ControlError(
                "AA_FULL",
                f"aggregator array full: no free region of {columns} columns (largest free: "
                f"{self.regions.largest_free()}); retry when a job closes or ask for fewer",
            )
        job_id = free_ids[0]
        token = self.rng.randrange(1, 1 << 32)
        job = JobRecord(
            job_id=job_id,
            name=str(msg.get("name", "")),
            token=token,
            agg=agg,
            offset=offset,
            columns=columns,
            window=window,
            lease_s=lease_s,
            swap_stale_share=swap_stale_share,
            evict=evict,
            expires_at=self.clock() + lease_s,
        )
        for copy in (0, 1):
            self.dataplane.clear(copy, offset, columns)
        self.dataplane.install_job(
            job_id, token, job.epoch, offset, columns, k.AGG_CODES[agg], window, evict
        )
        self.dataplane.set_active_copy(job_id, 0)
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
            "swap_stale_share": swap_stale_share,
            "active_copy": 0,
        }

    def _job(self, msg: dict[str, Any]) -> JobRecord:
        job = self.jobs.get(int(msg["job_id"]))
        if job is None or job.token != int(msg["token"]):
            raise ControlError(
                "BAD_JOB", f"no open job {msg['job_id']} with that token (closed or expired?)"
            )
        job.expires_at = self.clock() + job.lease_s
        return job

    def open_flow(self, msg: dict[str, Any]) -> dict[str, Any]:
        job = self._job(msg)
        if int(msg["epoch"]) != job.epoch:
            raise ControlError(
                "STALE_EPOCH", f"epoch {msg['epoch']} is not the job's current epoch {job.epoch}"
            )
        partition, attempt = int(msg["partition"]), int(msg["attempt"])  # before any change
        if not self.free_flow_slots:
            raise ControlError(
                "TOO_MANY_FLOWS",
                f"all {self.dataplane.max_flows} flows are open; close finished flows or retry",
            )
        slot = self.free_flow_slots.pop()
        self.flow_generation[slot] = (self.flow_generation[slot] + 1) & 0xFFFF
        flow_id = self.flow_generation[slot] << k.FLOW_SLOT_BITS | slot
        self.dataplane.install_flow(slot, self.flow_generation[slot], job.job_id, job.epoch)
        self.flow_owner[slot] = job.job_id
        job.open_flow_slots.add(slot)
        self.control_counters["flows_opened"] += 1
        job.records[job.epoch].append(FlowRecord(flow_id, partition, attempt))
        return {"flow_id": flow_id, "window": job.window}

    def _release_flow(self, job: JobRecord, slot: int) -> None:
        self.dataplane.remove_flow(slot)
        job.open_flow_slots.discard(slot)
        self.flow_owner.pop(slot, None)
        self.free_flow_slots.append(slot)

    def close_flow(self, msg: dict[str, Any]) -> dict[str, Any]:
        job = self._job(msg)
        flow_id = int(msg["flow_id"])
        record = next((f for f in job.records[job.epoch] if f.flow_id == flow_id), None)
        if record is None:
            raise ControlError("BAD_FLOW", f"flow {flow_id} is not in the current epoch")
        if not record.closed:
            record.packets = int(msg.get("packets", 0))
            record.closed = True
            self._release_flow(job, flow_id & ((1 << k.FLOW_SLOT_BITS) - 1))
            job.phase += 1
            self.dataplane.set_phase(job.job_id, job.phase)
            self._maybe_swap(job)
        return {}

    def epoch_record(self, msg: dict[str, Any]) -> dict[str, Any]:
        job = self._job(msg)
        epoch = int(msg.get("epoch", job.epoch))
        if epoch not in job.records:
            raise ControlError("STALE_EPOCH", f"no record of epoch {epoch} is kept any more")
        return {"epoch": epoch, "flows": [f.as_dict() for f in job.records[epoch]]}

    def new_epoch(self, msg: dict[str, Any]) -> dict[str, Any]:
        job = self._job(msg)
        self._close_epoch(job)
        job.epoch += 1
        job.records[job.epoch] = []
        for old in sorted(job.records)[:-EPOCH_HISTORY]:
            job.records.pop(old)
            job.epoch_counters.pop(old, None)
        self.dataplane.set_epoch(job.job_id, job.epoch)
        return {"epoch": job.epoch}

    def _close_epoch(self, job: JobRecord) -> None:
        """Release flows, clear both copies and keep the epoch's counters."""
        for slot in list(job.open_flow_slots):
            self._release_flow(job, slot)
        for copy in (0, 1):
            self.dataplane.clear(copy, job.offset, job.columns)
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
        copy = int(msg["copy"])
        if copy not in (0, 1):
            raise ControlError("BAD_ARGUMENT", "copy must be 0 or 1")
        if job.copies[copy] == ACTIVE:
            raise ControlError("COPY_ACTIVE", f"copy {copy} is active; only inactive copies clear")
        self.dataplane.clear(copy, job.offset, job.columns)
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
        self.regions.free(job.offset)
        del self.jobs[job.job_id]

    # ------------------------------------------------------------------ periodic work

    def tick(self) -> None:
        """Periodic control-plane work: lease renewal by traffic, expiry."""
        self.expire_leases()

    def _maybe_swap(self, job: JobRecord) -> None:
        """Swap when stale keys hold most of the active copy's hits (see the module doc)."""
        if not job.swap_stale_share or not job.open_flow_slots:
            return  # no sender left: the owner drains, the copies must hold still
        if job.copies[1 - job.active_copy] != CLEAN:
            return
        hits, phases = self.dataplane.copy_meta(job.active_copy, job.offset, job.columns)
        total = int(hits.sum())
        if total < SWAP_MIN_HITS:
            return
        stale = int(hits[(job.phase - phases) & k.PHASE_MASK >= STALE_PHASES].sum())
        if stale > job.swap_stale_share * total:
            self._swap(job)

    def expire_leases(self) -> None:
        """Renew leases of jobs whose packets arrived, then reclaim the regions of dead jobs."""
        now = self.clock()
        for job in self.jobs.values():
            packets = self.dataplane.job_counters(job.job_id)["packets"]
            if packets != job.seen_packets:
                job.seen_packets = packets
                job.expires_at = now + job.lease_s
        for job in [j for j in self.jobs.values() if j.expires_at < now]:
            self.control_counters["expired_jobs"] += 1
            self._remove_job(job)

    # ------------------------------------------------------------------ statistics

    def stats(self) -> dict[str, Any]:
        """Switch-wide and per job / per epoch counters, JSON-ready."""
        jobs = {}
        for job in self.jobs.values():
            epochs = {str(e): c for e, c in job.epoch_counters.items()}
            epochs[str(job.epoch)] = self._counters(job)
            ledgers = {e: traffic_ledger(c) for e, c in epochs.items()}
            jobs[str(job.job_id)] = {
                "name": job.name,
                "agg": job.agg,
                "region": {"offset": job.offset, "columns": job.columns},
                "window": job.window,
                "evict": job.evict,
                "epoch": job.epoch,
                "active_copy": job.active_copy,
                "copies": list(job.copies),
                "open_flows": len(job.open_flow_slots),
                "epochs": epochs,
                "ledger": ledgers,
            }
        switch = self.dataplane.switch_counters()
        switch["malformed"] += self.control_counters["malformed"]
        return {
            "switch": {
                **switch,
                "control_requests": self.control_counters["requests"],
                "control_errors": self.control_counters["errors"],
                "expired_jobs": self.control_counters["expired_jobs"],
                "jobs_opened": self.control_counters["jobs_opened"],
                "flows_opened": self.control_counters["flows_opened"],
                "rows": self.dataplane.rows,
                "columns": self.dataplane.columns,
                "cpu_s": self.cpu_clock(),
                "free_columns": self.dataplane.columns - sum(self.regions.allocated.values()),
            },
            "jobs": jobs,
        }
