"""Plain-Python specification of the per-packet pipeline.

Slow and obvious on purpose: one packet at a time, dictionaries instead of register arrays.
The compiled kernel (``pipeline_kernel``) must produce the same responses packet for packet;
the hypothesis tests in ``tests/test_pipeline_equivalence.py`` hold it to that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from switch_dataplane import wire
from switch_dataplane.dataplane import pipeline_kernel as k
from switch_dataplane.key_hash import COLUMN_SEED, column_hash_key, fingerprint_key


def _fingerprint(key: bytes) -> int:
    """The part of the key's fingerprint an aggregator keeps beside its owner's job id."""
    return fingerprint_key(key, COLUMN_SEED) & k.FINGERPRINT_MASK


@dataclass
class _Job:
    job_id: int
    token: int
    epoch: int
    offset: int
    size: int
    agg: int
    window: int
    evict: bool
    salt: int  # XORed into the column hash (the shared pool's per-job salt, else 0)
    copy: int = 0
    phase: int = 0
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(k.COUNTER_NAMES, 0))


@dataclass
class _Aggregator:
    owner: int  # the job that claimed it
    key: bytes
    value: int
    hits: int  # tuples whose key fingerprint matched, saturating at HITS_MAX
    phase: int  # the job's phase at the claim or the last hit


@dataclass
class _SeenEntry:
    seq: int
    absorbed: set[int]
    flushed: dict[int, int]  # row -> value flushed out (at most one row per packet)
    evicted: dict[int, tuple[bytes, int]]  # row -> entry evicted (at most one row per packet)
    copy: int


@dataclass
class _Flow:
    job_id: int
    generation: int
    epoch: int
    high: int = 0
    seen: dict[int, _SeenEntry] = field(default_factory=dict)  # seq % window -> entry


class ReferenceDataplane:
    """The dataplane as a dictionary-backed, one-packet-at-a-time model."""

    def __init__(
        self,
        rows: int,
        columns: int,
        window_capacity: int,
        max_flows: int,
        max_jobs: int,
        incarnation: int = 0,
    ) -> None:
        self.rows = rows
        self.columns = columns
        self.window_capacity = window_capacity
        self.max_flows = max_flows
        self.max_jobs = max_jobs
        self.incarnation = incarnation
        self.aggregators: dict[tuple[int, int, int], _Aggregator] = {}  # (copy, row, col)
        self.jobs: dict[int, _Job] = {}
        self.flows: dict[int, _Flow] = {}
        self.switch = dict.fromkeys(k.SWITCH_COUNTER_NAMES, 0)

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
        self.jobs[job_id] = _Job(
            job_id, token, epoch, offset, size, agg, window, evict, k.column_salt(job_id, shared)
        )

    def remove_job(self, job_id: int) -> None:
        self.jobs.pop(job_id, None)

    def set_epoch(self, job_id: int, epoch: int) -> None:
        self.jobs[job_id].epoch = epoch

    def set_phase(self, job_id: int, phase: int) -> None:
        self.jobs[job_id].phase = phase & k.PHASE_MASK

    def set_active_copy(self, job_id: int, copy: int) -> None:
        self.jobs[job_id].copy = copy

    def _in(self, copy: int, offset: int, size: int, owner: int | None) -> list[tuple]:
        return [
            where for where, a in self.aggregators.items()
            if where[0] == copy and offset <= where[2] < offset + size
            and owner in (None, a.owner)
        ]  # fmt: skip

    def clear(self, copy: int, offset: int, size: int, owner: int | None = None) -> None:
        for where in self._in(copy, offset, size, owner):
            del self.aggregators[where]

    def copy_meta(
        self, copy: int, offset: int, size: int, owner: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        entries = [self.aggregators[where] for where in self._in(copy, offset, size, owner)]
        return (
            np.array([a.hits for a in entries], np.int64),
            np.array([a.phase for a in entries], np.int64),
        )

    def aggregators_in_use(self) -> int:
        return len(self.aggregators)

    def install_flow(self, slot: int, generation: int, job_id: int, epoch: int) -> None:
        self.flows[slot] = _Flow(job_id, generation, epoch)

    def remove_flow(self, slot: int) -> None:
        self.flows.pop(slot, None)

    def job_counters(self, job_id: int) -> dict[str, int]:
        return dict(self.jobs[job_id].counters)

    def reset_job_counters(self, job_id: int) -> None:
        self.jobs[job_id].counters = dict.fromkeys(k.COUNTER_NAMES, 0)

    def switch_counters(self) -> dict[str, int]:
        return dict(self.switch)

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
        for p in range(start, end):
            packet = bytes(buf[offsets[p] : offsets[p] + lengths[p]])
            response = self.process(packet)
            out_lengths[p] = 0 if response is None else len(response)
            if response is not None:
                out[p, : len(response)] = np.frombuffer(response, np.uint8)

    def process(self, packet: bytes) -> bytes | None:
        """The response to one data or drain packet, or None if it is dropped."""
        self.switch["packets"] += 1
        try:  # the parser's order: header fields, type, length, then the checksum
            hdr = wire.decode_header(packet)
            ptype = int(hdr["type"])
            if ptype not in (wire.PacketType.DATA, wire.PacketType.DRAIN_REQUEST):
                raise wire.MalformedPacket(f"packet type {ptype} is not sent to the switch")
            if ptype == wire.PacketType.DRAIN_REQUEST and (
                int(hdr["bitmap"]) or len(packet) != wire.HEADER_BYTES
            ):
                raise wire.MalformedPacket("a drain request carries no slots")
            hdr, indices, body = wire.decode_packet(packet)
        except wire.CorruptPacket:
            self.switch["corrupt"] += 1
            return None
        except wire.MalformedPacket:
            self.switch["malformed"] += 1
            return None
        reply_type = (
            wire.PacketType.DATA_RESPONSE
            if ptype == wire.PacketType.DATA
            else wire.PacketType.DRAIN_RESPONSE
        )

        def reply(status: wire.Status, copy: int, slots: list[tuple[int, bytes, int]]) -> bytes:
            out = hdr.copy()
            out["type"], out["status"], out["copy"] = reply_type, status, copy
            out["incarnation"] = self.incarnation
            return wire.encode_packet(
                out,
                np.array([s[0] for s in slots], np.int64),
                np.frombuffer(b"".join(s[1] for s in slots), np.uint8),
                np.array([s[2] for s in slots], np.int64),
            )

        job = self.jobs.get(int(hdr["job_id"]))
        if job is None or job.token != int(hdr["token"]):
            self.switch["bad_job"] += 1
            return reply(wire.Status.BAD_JOB, 0, [])
        c = job.counters
        c["packets"] += 1
        if int(hdr["epoch"]) != job.epoch:
            c["stale_epoch"] += 1
            return reply(wire.Status.STALE_EPOCH, job.copy, [])
        seq = int(hdr["seq"])

        if ptype == wire.PacketType.DRAIN_REQUEST:
            copy = int(hdr["copy"])
            c["drain_requests"] += 1
            if seq >= job.size or copy > 1:
                c["bad_request"] += 1
                return reply(wire.Status.BAD_REQUEST, copy, [])
            slots = []
            for row in range(self.rows):
                entry = self.aggregators.get((copy, row, job.offset + seq))
                if entry is not None and entry.owner == job.job_id:
                    slots.append((row, entry.key, entry.value))
            c["drained_entries"] += len(slots)
            return reply(wire.Status.OK, copy, slots)

        flow_id = int(hdr["flow_id"])
        flow = self.flows.get(flow_id & 0xFFFF)
        if (
            flow is None
            or flow.job_id != int(hdr["job_id"])
            or flow.generation != flow_id >> 16
            or flow.epoch != job.epoch
        ):
            c["bad_flow"] += 1
            return reply(wire.Status.BAD_FLOW, job.copy, [])
        if any(i >= self.rows for i in indices.tolist()):
            c["bad_request"] += 1
            return reply(wire.Status.BAD_REQUEST, job.copy, [])
        if seq + job.window < flow.high:
            c["below_window"] += 1
            return reply(wire.Status.BELOW_WINDOW, job.copy, [])

        tuples = [
            (row, bytes(slot["key"]), int(slot["value"]))
            for row, slot in zip(indices.tolist(), body, strict=True)
        ]
        seen = flow.seen.get(seq & (job.window - 1))
        if seen is not None and seen.seq == seq:
            c["duplicates"] += 1
        else:
            seen = self._aggregate(job, tuples, seq)
            flow.seen[seq & (job.window - 1)] = seen
            flow.high = max(flow.high, seq + 1)
        returned = [
            (row, *seen.evicted.get(row, (key, seen.flushed.get(row, value))))
            for row, key, value in tuples
            if row not in seen.absorbed or row in seen.flushed or row in seen.evicted
        ]
        return reply(wire.Status.OK, seen.copy, returned)

    def _aggregate(self, job: _Job, tuples: list[tuple[int, bytes, int]], seq: int) -> _SeenEntry:
        """Claim / combine / evict / collide every tuple of a fresh packet in the active copy.

        Like the hardware's first stage, the key's fingerprint alone decides whether a tuple
        hits its aggregator (hit count and phase updated) or may evict it; the full key then
        decides whether a hit is absorbed or collides.
        """
        c = job.counters
        seen = _SeenEntry(seq, set(), {}, {}, job.copy)
        for row, key, value in tuples:
            column = job.offset + ((column_hash_key(key, COLUMN_SEED) ^ job.salt) & (job.size - 1))
            where = (job.copy, row, column)
            entry = self.aggregators.get(where)
            c["tuples"] += 1
            c[f"copy{job.copy}_tuples"] += 1
            if entry is None:
                self.aggregators[where] = _Aggregator(job.job_id, key, value, 1, job.phase)
            elif entry.owner == job.job_id and _fingerprint(entry.key) == _fingerprint(key):
                entry.hits = min(entry.hits + 1, k.HITS_MAX)
                entry.phase = job.phase
                if entry.key != key:
                    c["residual"] += 1
                    c[f"copy{job.copy}_collisions"] += 1
                    continue
                if job.agg == k.AGG_SUM:
                    total = entry.value + value
                    if wire.INT32_MIN <= total <= wire.INT32_MAX:
                        entry.value = total
                    elif not seen.flushed:  # one flush per packet: one logged value
                        seen.flushed[row] = entry.value
                        entry.value = value
                        c["flushed"] += 1
                    else:  # a second overflow in this packet stays a residual
                        c["residual"] += 1
                        continue
                elif job.agg == k.AGG_MIN:
                    entry.value = min(entry.value, value)
                else:
                    entry.value = max(entry.value, value)
            elif (
                job.evict
                and entry.owner == job.job_id
                and not seen.evicted
                and entry.hits <= k.EVICTABLE_HITS
                and entry.phase != job.phase
            ):
                seen.evicted[row] = (entry.key, entry.value)
                self.aggregators[where] = _Aggregator(job.job_id, key, value, 1, job.phase)
                c["evicted"] += 1
            else:
                c["residual"] += 1
                c[f"copy{job.copy}_collisions"] += 1
                continue
            seen.absorbed.add(row)
            c["absorbed"] += 1
        return seen
