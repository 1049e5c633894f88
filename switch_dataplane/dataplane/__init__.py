"""Dataplane state (registers and tables) and the interface the control plane programs.

Two implementations of one interface: ``FastDataplane`` keeps the state in numpy arrays and runs
the compiled kernel of ``pipeline_kernel``; ``reference_model.ReferenceDataplane`` is the plain
Python specification. The control plane only ever talks to this interface, as a switch CPU
talks to its ASIC through table and register writes.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from switch_dataplane import wire
from switch_dataplane.dataplane import pipeline_kernel as k


class Dataplane(Protocol):
    """What the control plane may do to a dataplane, plus the packet path."""

    rows: int
    columns: int
    window_capacity: int
    max_flows: int
    max_jobs: int
    incarnation: int  # the switch's per-boot random number, written into every answer

    def install_job(
        self,
        job_id: int,
        token: int,
        epoch: int,
        offset: int,
        size: int,
        agg: int,
        window: int,
        evict: bool,
        shared: bool = False,
    ) -> None:
        """``shared``: the job addresses the shared pool (its region is the whole array, other
        jobs' aggregators in it are collisions); else its region is its own."""
        ...

    def remove_job(self, job_id: int) -> None: ...

    def set_epoch(self, job_id: int, epoch: int) -> None: ...

    def set_phase(self, job_id: int, phase: int) -> None: ...

    def set_active_copy(self, job_id: int, copy: int) -> None: ...

    def clear(self, copy: int, offset: int, size: int, owner: int | None = None) -> None:
        """Empty a copy's columns ``offset..offset+size-1`` (``owner``: only that job's)."""
        ...

    def copy_meta(
        self, copy: int, offset: int, size: int, owner: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(hit counts, last-hit phases) of the valid aggregators of a copy's columns
        ``offset..offset+size-1`` (``owner``: only that job's): a register read by the switch
        CPU."""
        ...

    def aggregators_in_use(self) -> int:
        """Valid aggregators in both copies (of ``2 * rows * columns``)."""
        ...

    def install_flow(self, slot: int, generation: int, job_id: int, epoch: int) -> None: ...

    def remove_flow(self, slot: int) -> None: ...

    def job_counters(self, job_id: int) -> dict[str, int]: ...

    def reset_job_counters(self, job_id: int) -> None: ...

    def switch_counters(self) -> dict[str, int]: ...

    def process_run(
        self,
        buf: np.ndarray,
        offsets: np.ndarray,
        lengths: np.ndarray,
        start: int,
        end: int,
        out: np.ndarray,
        out_lengths: np.ndarray,
    ) -> None: ...


def max_response_bytes(rows: int) -> int:
    """Largest response the dataplane can produce (a drain of a full column)."""
    return wire.HEADER_BYTES + wire.SLOT_BYTES * rows


class FastDataplane:
    """Registers and tables as numpy arrays, packets through the numba kernel."""

    def __init__(
        self,
        rows: int,
        columns: int,
        window_capacity: int,
        max_flows: int,
        max_jobs: int,
        incarnation: int = 0,
    ) -> None:
        if not 1 <= rows <= wire.MAX_SLOTS:
            raise ValueError(f"rows must be 1..{wire.MAX_SLOTS}, got {rows}")
        if columns < 1 or columns & (columns - 1):
            raise ValueError(f"columns must be a power of two, got {columns}")
        if window_capacity < 1 or window_capacity & (window_capacity - 1):
            raise ValueError(f"window must be a power of two, got {window_capacity}")
        if max_flows > 1 << k.FLOW_SLOT_BITS:
            raise ValueError(f"at most {1 << k.FLOW_SLOT_BITS} flows")
        if max_jobs > k.MAX_JOBS:
            raise ValueError(f"at most {k.MAX_JOBS} jobs (the aggregators' owner tag)")
        self.rows = rows
        self.columns = columns
        self.window_capacity = window_capacity
        self.max_flows = max_flows
        self.max_jobs = max_jobs
        self.incarnation = incarnation
        self.aa = np.zeros((2, rows, columns, k.ENTRY_WORDS), np.uint32)
        self.jobs = np.zeros((max_jobs, k.JOB_FIELDS), np.int64)
        self.counters = np.zeros((max_jobs, len(k.COUNTER_NAMES)), np.int64)
        self.switch_counter_array = np.zeros(len(k.SWITCH_COUNTER_NAMES), np.int64)
        self.flows = np.full((max_flows, k.FLOW_FIELDS), -1, np.int64)
        self.seen_seq = np.zeros((max_flows, window_capacity), np.int64)
        self.seen_absorbed = np.zeros((max_flows, window_capacity), np.uint64)
        self.seen_flushed = np.zeros((max_flows, window_capacity), np.uint64)
        self.seen_evicted = np.zeros((max_flows, window_capacity), np.uint64)
        self.seen_copy = np.zeros((max_flows, window_capacity), np.uint8)
        # for replays: one flushed value and one evicted entry a packet, at most
        self.flush_log = np.zeros((max_flows, window_capacity), np.int32)
        self.evict_log = np.zeros((max_flows, window_capacity, k.EVICT_LOG_WORDS), np.uint32)

    def install_job(
        self,
        job_id: int,
        token: int,
        epoch: int,
        offset: int,
        size: int,
        agg: int,
        window: int,
        evict: bool,
        shared: bool = False,
    ) -> None:
        self.jobs[job_id] = 0
        row = self.jobs[job_id]
        row[k.J_TOKEN_HI], row[k.J_TOKEN_LO] = token >> 32, token & 0xFFFFFFFF
        row[k.J_EPOCH], row[k.J_OFFSET] = epoch, offset
        row[k.J_SIZE], row[k.J_AGG], row[k.J_WINDOW] = size, agg, window
        row[k.J_EVICT] = int(evict)
        row[k.J_SALT] = k.column_salt(job_id, shared)
        row[k.J_ACTIVE] = 1
        self.counters[job_id] = 0

    def remove_job(self, job_id: int) -> None:
        self.jobs[job_id] = 0

    def set_epoch(self, job_id: int, epoch: int) -> None:
        self.jobs[job_id, k.J_EPOCH] = epoch

    def set_phase(self, job_id: int, phase: int) -> None:
        self.jobs[job_id, k.J_PHASE] = phase & k.PHASE_MASK

    def set_active_copy(self, job_id: int, copy: int) -> None:
        self.jobs[job_id, k.J_COPY] = copy

    def _owned(self, region: np.ndarray, owner: int | None) -> np.ndarray:
        valid = region[..., k.VALID] != 0
        if owner is None:
            return valid
        return valid & (region[..., k.FINGERPRINT] >> k.OWNER_SHIFT == owner)

    def clear(self, copy: int, offset: int, size: int, owner: int | None = None) -> None:
        region = self.aa[copy, :, offset : offset + size]
        if owner is None:
            region[:] = 0
        else:
            region[self._owned(region, owner)] = 0

    def copy_meta(
        self, copy: int, offset: int, size: int, owner: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        region = self.aa[copy, :, offset : offset + size]
        meta = region[..., k.META][self._owned(region, owner)].astype(np.int64)
        return meta & k.HITS_MAX, meta >> k.PHASE_SHIFT

    def aggregators_in_use(self) -> int:
        return int(np.count_nonzero(self.aa[..., k.VALID]))

    def install_flow(self, slot: int, generation: int, job_id: int, epoch: int) -> None:
        self.remove_flow(slot)
        self.flows[slot] = (job_id, generation, epoch, 0)

    def remove_flow(self, slot: int) -> None:
        self.flows[slot] = -1
        self.seen_seq[slot] = 0

    def job_counters(self, job_id: int) -> dict[str, int]:
        return dict(zip(k.COUNTER_NAMES, self.counters[job_id].tolist(), strict=True))

    def reset_job_counters(self, job_id: int) -> None:
        self.counters[job_id] = 0

    def switch_counters(self) -> dict[str, int]:
        return dict(zip(k.SWITCH_COUNTER_NAMES, self.switch_counter_array.tolist(), strict=True))

    def process_run(
        self,
        buf: np.ndarray,
        offsets: np.ndarray,
        lengths: np.ndarray,
        start: int,
        end: int,
        out: np.ndarray,
        out_lengths: np.ndarray,
    ) -> None:
        k.process_run(
            buf,
            offsets,
            lengths,
            start,
            end,
            out,
            out_lengths,
            self.aa.reshape(-1, k.ENTRY_WORDS),
            self.rows,
            self.columns,
            self.jobs,
            self.counters,
            self.switch_counter_array,
            self.flows,
            self.seen_seq,
            self.seen_absorbed,
            self.seen_flushed,
            self.seen_evicted,
            self.seen_copy,
            self.flush_log,
            self.evict_log,
            self.incarnation,
        )
