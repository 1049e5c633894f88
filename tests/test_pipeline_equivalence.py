"""The compiled pipeline equals the plain-Python reference model, packet for packet.

Two switches, one with the numba kernel (``fast=True``) and one with the reference model, get the
identical packet sequence: control requests, data, drains, replays, stale and foreign packets,
garbage. Every response, the statistics and the aggregator contents must be identical. The
fast switch often gets a whole batch in one ``handle`` call while the reference gets the
packets one by one, so batching must not change any result.

A second property checks exactness end to end against an independent model: whatever the
switch absorbed, flushed, rejected as residual or drained, the totals per key equal the input.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switch_dataplane import wire
from switch_dataplane.control import control_plane
from switch_dataplane.daemon.switch import Switch
from switch_dataplane.dataplane import pipeline_kernel as k
from switch_dataplane.key_hash import COLUMN_SEED, ROW_SEED, fingerprint_key, murmur3_key
from switch_dataplane.wire import INT32_MAX, INT32_MIN, PacketType, Status

CLIENT = 77
BIG_LEASE = 1e6


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------- packet helpers


def control_packet(request_id: int, message: dict[str, Any], client: int = CLIENT) -> bytes:
    return wire.encode_control(PacketType.CONTROL_REQUEST, client, request_id, message)


def data_packet(
    job_id: int, token: int, epoch: int, flow_id: int, seq: int, slots: list[tuple[int, bytes, int]]
) -> bytes:
    hdr = wire.new_header(
        PacketType.DATA, job_id=job_id, token=token, epoch=epoch, flow_id=flow_id, seq=seq
    )
    keys = np.frombuffer(b"".join(s[1] for s in slots), np.uint8).reshape(len(slots), 16)
    return wire.encode_packet(
        hdr, np.array([s[0] for s in slots], np.int64), keys, np.array([s[2] for s in slots])
    )


def drain_packet(job_id: int, token: int, epoch: int, copy: int, column: int) -> bytes:
    hdr = wire.new_header(
        PacketType.DRAIN_REQUEST, job_id=job_id, token=token, epoch=epoch, copy=copy, seq=column
    )
    return wire.encode_header(hdr)


def response_slots(response: bytes) -> tuple[np.ndarray, list[tuple[int, bytes, int]]]:
    hdr, indices, body = wire.decode_packet(response)
    return hdr, [
        (int(i), bytes(r["key"]), int(r["value"])) for i, r in zip(indices, body, strict=True)
    ]


def aggregator_contents(
    switch: Switch,
) -> dict[tuple[int, int, int], tuple[bytes, int, int, int, int]]:
    """(copy, row, column) -> (key, value, hits, phase, owner) of every valid aggregator, from
    either dataplane."""
    dp = switch.dataplane
    if hasattr(dp, "aggregators"):
        return {
            where: (a.key, a.value, a.hits, a.phase, a.owner) for where, a in dp.aggregators.items()
        }
    out = {}
    for copy, row, col in zip(*np.nonzero(dp.aa[..., k.VALID]), strict=True):
        entry = dp.aa[copy, row, col]
        value = int(entry[k.VALUE])
        meta = int(entry[k.META])
        out[(int(copy), int(row), int(col))] = (
            entry[k.K0 : k.K3 + 1].astype("<u4").tobytes(),
            value - (1 << 32) if value >= 1 << 31 else value,
            meta & k.HITS_MAX,
            meta >> k.PHASE_SHIFT,
            int(entry[k.FINGERPRINT]) >> k.OWNER_SHIFT,
        )
    return out


# ---------------------------------------------------------------------------- strategies

values = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([INT32_MAX, INT32_MAX - 1, INT32_MIN, INT32_MIN + 1, 1 << 30, -(1 << 30)]),
    st.integers(INT32_MIN, INT32_MAX),
)
keys16 = st.binary(min_size=16, max_size=16)
# Two keys with one fingerprint (found by a birthday search): where they meet, the hit is
# counted but the tuple is not absorbed.
FINGERPRINT_TWINS = (
    bytes.fromhex("4f643703570154945e1bdd645209698a"),
    bytes.fromhex("4fe772695e8b1819b9202821e40e5fd4"),
)
pool_keys = st.one_of(keys16, st.sampled_from(FINGERPRINT_TWINS))
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)


@dataclass
class JobModel:
    job_id: int
    token: int
    epoch: int
    columns: int
    flows: dict[int, int] = field(default_factory=dict)  # open flow id -> next fresh seq
    dead_flows: list[int] = field(default_factory=list)
    old_epochs: list[int] = field(default_factory=list)


class Twin:
    """A fast and a reference switch fed the identical packet sequence."""

    def __init__(
        self,
        data: st.DataObject | None,
        rows: int,
        columns: int,
        window: int,
        max_flows: int,
        max_jobs: int,
        seed: int,
        key_pool: list[bytes],
        memory_policy: str = "isolated",
    ) -> None:
        self.data = data  # None: a scripted session that draws nothing
        self.rows, self.columns, self.window = rows, columns, window
        self.max_flows, self.max_jobs = max_flows, max_jobs
        self.clock = FakeClock()
        geometry = dict(
            rows=rows,
            columns=columns,
            window=window,
            max_flows=max_flows,
            max_jobs=max_jobs,
            clock=self.clock,
            cpu_clock=lambda: 0.0,  # CPU time differs between the two; the rest may not
            memory_policy=memory_policy,
        )
        # the twins draw the same tokens and incarnation (a real switch draws from secrets)
        self.fast = Switch(fast=True, random_bits=random.Random(seed).getrandbits, **geometry)
        self.ref = Switch(fast=False, random_bits=random.Random(seed).getrandbits, **geometry)
        self.key_pool = key_pool
        self.request_id = 0
        self.jobs: dict[int, JobModel] = {}
        self.dead_jobs: list[tuple[int, int]] = []
        self.controls: list[tuple[bytes, dict[str, Any], bytes]] = []  # (packet, msg, reply)
        self.history: list[tuple[bytes, bytes]] = []  # data packets answered OK, first answer
        self.statuses: set[Any] = set()

    def draw(self, strategy: st.SearchStrategy[Any], label: str | None = None) -> Any:
        assert self.data is not None
        return self.data.draw(strategy, label=label)

    # ------------------------------------------------------------------ sending

    def send(self, batch: list[tuple[str, bytes, Any]]) -> None:
        """Both switches answer identically; one of them (or both) gets the batch in one call."""
        packets = [p for _, p, _ in batch]
        modes = ["fast-batched", "ref-batched", "both-batched"]
        mode = self.draw(st.sampled_from(modes)) if self.data else "fast-batched"
        fast = (
            self.fast.handle(packets) if mode != "ref-batched" else _one_by_one(self.fast, packets)
        )
        ref = self.ref.handle(packets) if mode != "fast-batched" else _one_by_one(self.ref, packets)
        for i, (f, r) in enumerate(zip(fast, ref, strict=True)):
            assert f == r, f"packet {i} of {batch[i][0]}: fast {_show(f)} != reference {_show(r)}"
        for (kind, packet, meta), response in zip(batch, fast, strict=True):
            self.observe(kind, packet, meta, response)

    def control(self, message: dict[str, Any]) -> tuple[str, bytes, Any]:
        self.request_id += 1
        return ("control", control_packet(self.request_id, message), message)

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        """One control request to both switches, answered identically."""
        kind, packet, meta = self.control(message)
        self.send([(kind, packet, meta)])
        return wire.decode_control(self.controls[-1][2])[1]

    # ------------------------------------------------------------------ what came back

    def observe(self, kind: str, packet: bytes, meta: Any, response: bytes | None) -> None:
        if kind == "garbage":
            assert response is None, "a malformed packet was answered"
            self.statuses.add("dropped")
            return
        if kind == "retry":
            original_message, original_reply = meta
            assert response is not None
            if original_message.get("op") != "stats":
                assert response == original_reply, "a retried control request got a new answer"
            return
        if kind == "control":
            assert response is not None
            hdr, reply = wire.decode_control(response)
            assert int(hdr["type"]) == PacketType.CONTROL_RESPONSE
            self.controls.append((packet, meta, response))
            self.statuses.add(reply.get("code", "ok"))
            if reply["ok"]:
                self.apply(meta, reply)
            return
        assert response is not None, f"{kind} packet dropped"
        hdr, slots = response_slots(response)
        status = Status(int(hdr["status"]))
        self.statuses.add(status)
        if kind == "replay" and status == Status.OK:
            assert response == meta, "a replayed packet got a different answer"
        if kind == "data" and status == Status.OK:
            self.history.append((packet, response))
            sent = {row: (key, value) for row, key, value in response_slots(packet)[1]}
            for row, key, value in slots:
                if key != sent[row][0]:
                    self.statuses.add("evicted")
                elif value != sent[row][1]:
                    self.statuses.add("flushed")

    def apply(self, message: dict[str, Any], reply: dict[str, Any]) -> None:
        op = message["op"]
        if op == "open_job":
            self.jobs[reply["job_id"]] = JobModel(
                reply["job_id"], reply["token"], reply["epoch"], reply["columns"]
            )
            return
        job = self.jobs.get(message.get("job_id"))
        if job is None:
            return
        if op == "open_flow":
            job.flows[reply["flow_id"]] = 0
        elif op == "close_flow":
            job.flows.pop(message["flow_id"], None)
            job.dead_flows.append(message["flow_id"])
        elif op == "new_epoch":
            job.old_epochs.append(job.epoch)
            job.epoch, job.columns = reply["epoch"], reply["columns"]  # the region may move
            job.dead_flows.extend(job.flows)
            job.flows.clear()
        elif op == "close_job":
            del self.jobs[job.job_id]
            self.dead_jobs.append((job.job_id, job.token))

    def tick(self) -> None:
        self.clock.now += self.draw(st.sampled_from([0.0, 1.0, 7.0, 40.0]), "advance")
        self.fast.tick()
        self.ref.tick()
        self.sync_jobs()

    def sync_jobs(self) -> None:
        """Forget jobs whose lease expired."""
        live = self.fast.stats()["jobs"]
        assert live == self.ref.stats()["jobs"]
        for job_id in [j for j in self.jobs if str(j) not in live]:
            job = self.jobs.pop(job_id)
            self.dead_jobs.append((job.job_id, job.token))

    # ------------------------------------------------------------------ packet generators

    def pick_job(self) -> tuple[int, int, JobModel | None]:
        if self.jobs and self.draw(st.integers(0, 9)) > 0:
            job = self.jobs[self.draw(st.sampled_from(sorted(self.jobs)))]
            return job.job_id, job.token, job
        if self.dead_jobs and self.draw(st.booleans()):
            job_id, token = self.draw(st.sampled_from(self.dead_jobs))
            return job_id, token, None
        return self.draw(st.integers(0, self.max_jobs)), self.draw(u64), None

    def gen_open_job(self) -> tuple[str, bytes, Any]:
        message: dict[str, Any] = {"op": "open_job", "lease_s": BIG_LEASE}
        message["agg"] = self.draw(st.sampled_from(["sum", "sum", "min", "max", "avg"]))
        pow2 = [1 << i for i in range(self.columns.bit_length())]
        columns = self.draw(st.sampled_from([None, None, 0, 3, 2 * self.columns, *pow2]))
        if columns is not None:
            message["columns"] = columns
        window = self.draw(st.sampled_from([None, 0, -1, *range(1, self.window + 3)]))
        if window is not None:
            message["window"] = window
        if self.draw(st.integers(0, 3)) == 0:
            message["lease_s"] = self.draw(st.sampled_from([5.0, 30.0, -1.0]))
        if self.draw(st.integers(0, 2)) == 0:
            message["swap_stale_share"] = self.draw(st.sampled_from([0.0, 0.2, 0.5, 1.0, 1.5]))
        if self.draw(st.integers(0, 2)) == 0:
            message["evict"] = self.draw(st.sampled_from([False, True, 1]))
        return self.control(message)

    def gen_job_control(self) -> tuple[str, bytes, Any]:
        job_id, token, job = self.pick_job()
        op = self.draw(
            st.sampled_from(
                [
                    "open_flow",
                    "open_flow",
                    "open_flow",
                    "close_flow",
                    "new_epoch",
                    "swap",
                    "swap",
                    "clear_copy",
                    "clear_copy",
                    "close_job",
                    "job_status",
                    "epoch_record",
                    "renew",
                ]
            )
        )
        message: dict[str, Any] = {"op": op, "job_id": job_id, "token": token}
        epoch = job.epoch if job else 1
        if op == "open_flow":
            if job and job.old_epochs and self.draw(st.integers(0, 4)) == 0:
                epoch = self.draw(st.sampled_from(job.old_epochs))
            message.update(
                epoch=epoch,
                partition=self.draw(st.integers(0, 3)),
                attempt=self.draw(st.integers(0, 1)),
            )
        elif op == "close_flow":
            flows = sorted(job.flows) + job.dead_flows if job else []
            message["flow_id"] = self.draw(st.sampled_from(flows)) if flows else self.draw(u32)
            message["packets"] = self.draw(st.integers(0, 9))
        elif op == "clear_copy":
            message["copy"] = self.draw(st.sampled_from([0, 1, 2]))
        elif op == "epoch_record" and job and self.draw(st.booleans()):
            message["epoch"] = self.draw(st.sampled_from([*job.old_epochs, epoch, epoch + 1]))
        return self.control(message)

    def gen_odd_control(self) -> tuple[str, bytes, Any]:
        choice = self.draw(st.integers(0, 5))
        if choice == 0 and self.controls:
            packet, message, reply = self.draw(st.sampled_from(self.controls))
            return ("retry", packet, (message, reply))
        if choice == 1:
            return self.control({"op": "stats"})
        if choice == 2:
            return self.control({"op": self.draw(st.sampled_from(["frobnicate", 3, None]))})
        job_id, _token, _job = self.pick_job()
        return self.control({"op": "swap", "job_id": job_id})  # no token: bad argument

    def gen_data(self) -> tuple[str, bytes, Any]:
        streaming = sorted(j for j, job in self.jobs.items() if job.flows)
        if streaming and self.draw(st.integers(0, 9)) > 0:
            job = self.jobs[self.draw(st.sampled_from(streaming))]
            job_id, token = job.job_id, job.token
        else:
            job_id, token, job = self.pick_job()
        flows = sorted(job.flows) if job else []
        epoch = job.epoch if job else 1
        if flows:
            flow_id = self.draw(st.sampled_from(flows))
            seq = job.flows[flow_id]
            jump = self.draw(st.sampled_from([0, 0, 0, 0, 1, 3, 2 * self.window + 1, 2**32]))
            seq = min(seq + jump, 2**32 - 1)
            job.flows[flow_id] = min(seq + 1, 2**32 - 1)
        else:
            flow_id, seq = self.draw(u32), self.draw(st.integers(0, 5))
        nrows = self.rows
        if self.draw(st.integers(0, 9)) == 0 and self.rows < wire.MAX_SLOTS:
            nrows = self.draw(st.integers(self.rows + 1, wire.MAX_SLOTS))  # slot beyond rows
        rows = self.draw(st.lists(st.integers(0, nrows - 1), unique=True, max_size=nrows))
        slots = [
            (row, self.draw(st.sampled_from(self.key_pool)), self.draw(values)) for row in rows
        ]
        damage = self.draw(st.integers(0, 14))
        if job and damage == 0:
            token = (token + self.draw(st.integers(1, 2**32 - 1))) % 2**32
        elif job and damage == 1:
            epoch = self.draw(st.sampled_from([*job.old_epochs, epoch + 1]))
        elif job and damage == 2:
            flow_id = self.draw(st.sampled_from(job.dead_flows)) if job.dead_flows else flow_id + 1
            flow_id %= 2**32
        return ("data", data_packet(job_id, token, epoch, flow_id, seq, slots), None)

    def gen_replay(self) -> tuple[str, bytes, Any]:
        if not self.history:
            return self.gen_data()
        packet, response = self.draw(st.sampled_from(self.history))
        return ("replay", packet, response)

    def gen_drain(self) -> tuple[str, bytes, Any]:
        job_id, token, job = self.pick_job()
        columns = job.columns if job else 1
        column = self.draw(st.integers(0, columns + 1))
        copy = self.draw(st.sampled_from([0, 1, 0, 1, 2, 255]))
        epoch = job.epoch if job else 1
        if job and job.old_epochs and self.draw(st.integers(0, 5)) == 0:
            epoch = self.draw(st.sampled_from(job.old_epochs))
        packet = drain_packet(job_id, token, epoch, copy, column)
        if self.draw(st.integers(0, 15)) == 0:  # a drain request must carry no slots: dropped
            packet = data_packet(job_id, token, epoch, 0, column, [(0, bytes(16), 1)])
            packet = packet[:3] + bytes([PacketType.DRAIN_REQUEST]) + packet[4:]
            return ("garbage", packet, None)
        return ("drain", packet, None)

    def gen_garbage(self) -> tuple[str, bytes, Any]:
        choice = self.draw(st.integers(0, 5))
        if choice == 0:
            return ("garbage", self.draw(st.binary(max_size=80)), None)
        _, packet, _ = self.gen_data()
        if choice == 1:
            packet = packet[: self.draw(st.integers(0, len(packet) - 1))]
        elif choice == 2:
            at = self.draw(st.integers(0, 3))
            packet = packet[:at] + bytes([packet[at] ^ 0xFF]) + packet[at + 1 :]
        elif choice == 3:
            ptype = self.draw(st.sampled_from([0, 2, 4, 6, 9]))
            packet = packet[:3] + bytes([ptype]) + packet[4:]
        elif choice == 4:
            packet = packet + self.draw(st.binary(min_size=1, max_size=21))
        else:  # damaged on the way: the checksum no longer matches (or the bitmap the length)
            at = self.draw(st.integers(4, len(packet) - 1))
            packet = (
                packet[:at]
                + bytes([packet[at] ^ self.draw(st.integers(1, 255))])
                + packet[at + 1 :]
            )
        return ("garbage", packet, None)

    def gen_packet(self) -> tuple[str, bytes, Any]:
        kind = self.draw(
            st.sampled_from(
                ["open_job", "job_control", "job_control", "odd_control"]
                + ["data"] * 8
                + ["replay"] * 2
                + ["drain"] * 2
                + ["garbage"]
            )
        )
        if kind == "open_job" or (not self.jobs and self.draw(st.booleans())):
            return self.gen_open_job()
        idle = sorted(j for j, job in self.jobs.items() if not job.flows)
        if kind == "data" and idle and self.draw(st.integers(0, 2)) == 0:
            job = self.jobs[self.draw(st.sampled_from(idle))]
            return self.control(
                {
                    "op": "open_flow",
                    "job_id": job.job_id,
                    "token": job.token,
                    "epoch": job.epoch,
                    "partition": 0,
                    "attempt": 0,
                }  # fmt: skip
            )
        return getattr(self, f"gen_{kind}")()

    # ------------------------------------------------------------------ final comparison

    def final_check(self) -> None:
        self.sync_jobs()
        assert self.fast.stats() == self.ref.stats()
        assert aggregator_contents(self.fast) == aggregator_contents(self.ref)
        for job in list(self.jobs.values()):
            for copy in (0, 1):
                drains = [
                    ("drain", drain_packet(job.job_id, job.token, job.epoch, copy, c), None)
                    for c in range(job.columns)
                ]
                self.send(drains)
            assert self.call({"op": "job_status", "job_id": job.job_id, "token": job.token})["ok"]
        for job in list(self.jobs.values()):
            assert self.call({"op": "close_job", "job_id": job.job_id, "token": job.token})["ok"]
        assert aggregator_contents(self.fast) == aggregator_contents(self.ref) == {}
        assert self.fast.stats() == self.ref.stats()


def _one_by_one(switch: Switch, packets: list[bytes]) -> list[bytes | None]:
    return [switch.handle([p])[0] for p in packets]


def _show(response: bytes | None) -> str:
    if response is None:
        return "dropped"
    if response[3] == PacketType.CONTROL_RESPONSE:
        return repr(wire.decode_control(response)[1])
    hdr, slots = response_slots(response)
    return f"status={Status(int(hdr['status'])).name} copy={int(hdr['copy'])} slots={slots}"


geometry = st.tuples(
    st.integers(1, 8),  # rows
    st.sampled_from([1, 2, 4, 8, 16]),  # columns
    st.sampled_from([1, 2, 4, 8]),  # window capacity (a power of two)
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(geometry, st.data())
def test_fast_equals_reference(shape: tuple[int, int, int], data: st.DataObject) -> None:
    rows, columns, window = shape
    twin = Twin(
        data,
        rows,
        columns,
        window,
        max_flows=data.draw(st.integers(1, 6), label="max_flows"),
        max_jobs=data.draw(st.integers(1, 3), label="max_jobs"),
        seed=data.draw(st.integers(0, 2**16), label="seed"),
        key_pool=data.draw(st.lists(pool_keys, min_size=1, max_size=6, unique=True), label="keys"),
        memory_policy=data.draw(st.sampled_from(["isolated", "shared"]), label="memory policy"),
    )
    # Let the automatic swap decision fire after a handful of hits, not 4096.
    with mock.patch.object(control_plane, "SWAP_MIN_HITS", 4):
        for _ in range(data.draw(st.integers(1, 30), label="steps")):
            if data.draw(st.integers(0, 7)) == 0:
                twin.tick()
                continue
            size = data.draw(st.integers(1, 8), label="batch size")
            twin.send([twin.gen_packet() for _ in range(size)])
        twin.final_check()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_hits_phases_and_evictions_equal_the_reference(data: st.DataObject) -> None:
    """One aggregator, a few keys, many short flows: every hit count, phase and eviction of
    the kernel is the reference model's."""
    pool = [b"\x41" * 16, b"\x42" * 16, *FINGERPRINT_TWINS, b"\x44" * 16]
    twin = Twin(data, rows=2, columns=1, window=4, max_flows=2, max_jobs=1, seed=3, key_pool=[])
    agg = data.draw(st.sampled_from(["sum", "min", "max"]), label="agg")
    job = twin.call({"op": "open_job", "agg": agg, "lease_s": BIG_LEASE})
    ident = {"job_id": job["job_id"], "token": job["token"]}
    flow, seq = None, 0
    for _ in range(data.draw(st.integers(1, 40), label="steps")):
        if flow is None or data.draw(st.integers(0, 3), label="next flow") == 0:
            if flow is not None:
                assert twin.call({"op": "close_flow", **ident, "flow_id": flow})["ok"]
            flow, seq = twin.call({"op": "open_flow", **ident, "epoch": job["epoch"],
                                   "partition": 0, "attempt": 0})["flow_id"], 0  # fmt: skip
        rows = data.draw(st.lists(st.integers(0, 1), min_size=1, max_size=2, unique=True))
        slots = [(r, data.draw(st.sampled_from(pool)), data.draw(st.integers(-9, 9))) for r in rows]
        twin.send([("data", data_packet(ident["job_id"], ident["token"], job["epoch"], flow,
                                        seq, slots), None)])  # fmt: skip
        seq += 1
        assert aggregator_contents(twin.fast) == aggregator_contents(twin.ref)
    twin.final_check()


def test_a_scripted_session_reaches_every_outcome() -> None:
    """A fixed session through the same machinery: every outcome appears, both agree."""
    twin = Twin(None, rows=2, columns=1, window=2, max_flows=4, max_jobs=2, seed=5, key_pool=[])
    job = twin.call({"op": "open_job", "agg": "sum", "lease_s": BIG_LEASE})
    jid, token, epoch = job["job_id"], job["token"], job["epoch"]
    flow = twin.call({"op": "open_flow", "job_id": jid, "token": token, "epoch": epoch,
                      "partition": 0, "attempt": 0})["flow_id"]  # fmt: skip
    (a, a_twin), b = FINGERPRINT_TWINS, b"b" * 16
    assert fingerprint_key(a, COLUMN_SEED) == fingerprint_key(a_twin, COLUMN_SEED)
    p0 = data_packet(jid, token, epoch, flow, 0, [(0, a, INT32_MAX), (1, b, 1)])
    p1 = data_packet(jid, token, epoch, flow, 1, [(0, a, 5), (1, a, 2)])  # overflow; collision
    twin.send([("data", p0, None), ("data", p1, None)])
    twin.send([("replay", p1, twin.history[-1][1])])
    p4 = data_packet(jid, token, epoch, flow, 4, [(0, b, 1)])
    twin.send(
        [
            ("data", p4, None),
            ("data", p0, None),  # now below the window
            ("data", data_packet(jid, token ^ 1, epoch, flow, 5, []), None),
            ("data", data_packet(jid, token, epoch + 1, flow, 5, []), None),
            ("data", data_packet(jid, token, epoch, flow ^ 1 << 20, 5, []), None),
            ("data", data_packet(jid, token, epoch, flow, 5, [(3, a, 1)]), None),
            ("drain", drain_packet(jid, token, epoch, 0, 0), None),
            ("drain", drain_packet(jid, token, epoch, 0, 1), None),
            ("garbage", b"\x00" * 40, None),
        ]
    )
    # Row 1 holds b, hit once in phase 0. Once a flow closes, a key with another fingerprint
    # evicts it; a key with a's fingerprint only counts a hit on a and collides.
    closed = twin.call({"op": "close_flow", "job_id": jid, "token": token, "flow_id": flow})
    assert closed["ok"]
    flow = twin.call({"op": "open_flow", "job_id": jid, "token": token, "epoch": epoch,
                      "partition": 1, "attempt": 0})["flow_id"]  # fmt: skip
    c = b"c" * 16
    p6 = data_packet(jid, token, epoch, flow, 0, [(0, a_twin, 1), (1, c, 3)])
    p7 = data_packet(jid, token, epoch, flow, 1, [(1, b, 4)])  # c is new in this phase: kept
    twin.send([("data", p6, None), ("data", p7, None)])
    twin.send([("replay", p6, twin.history[-2][1])])
    assert [slot[1] for slot in response_slots(twin.history[-2][1])[1]] == [a_twin, b]
    assert twin.call({"op": "clear_copy", "job_id": jid, "token": token, "copy": 0})["code"] == (
        "COPY_ACTIVE"
    )
    assert twin.call({"op": "swap", "job_id": jid, "token": token})["ok"]
    assert twin.call({"op": "swap", "job_id": jid, "token": token})["code"] == "COPY_NOT_CLEAN"
    expected = {"flushed", "evicted", "dropped", "COPY_ACTIVE", "COPY_NOT_CLEAN"}
    assert set(Status) | expected <= twin.statuses
    twin.final_check()


# ---------------------------------------------------------------------------- exactness


AGGREGATES = {"sum": sum, "min": min, "max": max}


def _drain_copy(
    switch: Switch, job: dict[str, Any], copy: int, into: dict[bytes, list[int]]
) -> None:
    for column in range(job["columns"]):
        packet = drain_packet(job["job_id"], job["token"], job["epoch"], copy, column)
        first, again = switch.handle([packet, packet])
        assert first == again, "reading a column is idempotent"
        hdr, slots = response_slots(first)
        assert int(hdr["status"]) == Status.OK and int(hdr["copy"]) == copy
        for row, key, value in slots:
            assert murmur3_key(key, ROW_SEED) % switch.dataplane.rows == row
            into[key].append(value)


def _call(switch: Switch, request_id: int, message: dict[str, Any]) -> dict[str, Any]:
    (reply,) = switch.handle([control_packet(request_id, message)])
    return wire.decode_control(reply)[1]


# Sums near the int32 limits overflow often, so the flush path is exercised, not just reached.
extreme_values = st.one_of(
    values,
    st.integers(INT32_MAX - 3, INT32_MAX),
    st.integers(INT32_MIN, INT32_MIN + 3),
    st.integers(1 << 30, INT32_MAX),
)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "reference"])
@pytest.mark.parametrize("agg", sorted(AGGREGATES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 8),
    st.sampled_from([1, 2, 4, 8]),
    st.sampled_from([1, 2, 4]),
    st.data(),
)
def test_nothing_absorbed_is_lost(
    fast: bool, agg: str, rows: int, columns: int, window: int, data: st.DataObject
) -> None:
    """Residuals + flushed values + both drained copies reduce to exactly the input per key."""
    switch = Switch(rows=rows, columns=columns, window=window, max_flows=2, max_jobs=1,
                    fast=fast, clock=FakeClock())  # fmt: skip
    pool = data.draw(st.lists(pool_keys, min_size=1, max_size=8, unique=True), label="keys")
    tuples = data.draw(
        st.lists(st.tuples(st.sampled_from(pool), extreme_values), min_size=1, max_size=150),
        label="tuples",
    )
    evict = data.draw(st.booleans(), label="evict")
    job = _call(switch, 1, {"op": "open_job", "agg": agg, "lease_s": BIG_LEASE, "evict": evict})
    assert job["ok"] and job["columns"] == columns
    ident = {"job_id": job["job_id"], "token": job["token"]}
    request_ids = itertools.count(2)

    def call(op: str, **fields: Any) -> dict[str, Any]:
        return _call(switch, next(request_ids), {"op": op, **ident, **fields})

    def open_flow(partition: int) -> int:
        return call("open_flow", epoch=job["epoch"], partition=partition, attempt=0)["flow_id"]

    # Pack tuples as a host does: slot = the key's subspace, at most one tuple per slot.
    packets: list[list[tuple[int, bytes, int]]] = [[]]
    for key, value in tuples:
        row = murmur3_key(key, ROW_SEED) % rows
        limit = data.draw(st.integers(1, rows), label="slots per packet")
        if any(r == row for r, _, _ in packets[-1]) or len(packets[-1]) >= limit:
            packets.append([])
        packets[-1].append((row, key, value))

    out: dict[bytes, list[int]] = defaultdict(list)
    first: dict[int, bytes] = {}
    sent: list[bytes] = []
    flows = 1
    flow = open_flow(0)
    seq = 0
    for slots in packets:
        if seq and data.draw(st.integers(0, 5), label="swap here") == 0:
            active = call("job_status")["active_copy"]
            assert call("swap") == {"ok": True, "active_copy": 1 - active}
            _drain_copy(switch, job, active, out)
            assert call("clear_copy", copy=active) == {"ok": True}
        if seq and data.draw(st.integers(0, 4), label="next flow here") == 0:
            # A finished flow moves the job's phase on: residents it left may be evicted.
            assert call("close_flow", flow_id=flow)["ok"]
            flow, seq, first, sent = open_flow(flows), 0, {}, []
            flows += 1
        packet = data_packet(job["job_id"], job["token"], job["epoch"], flow, seq, slots)
        seq += 1
        sent.append(packet)
        batch = [packet]
        for _ in range(data.draw(st.integers(0, 2), label="duplicates")):
            batch.append(sent[data.draw(st.integers(0, len(sent) - 1), label="which")])
        for replayed, response in zip(batch, switch.handle(batch), strict=True):
            hdr, returned = response_slots(response)
            seq_of = int(wire.decode_header(replayed)["seq"])
            if seq_of not in first:
                assert int(hdr["status"]) == Status.OK
                first[seq_of] = response
                sent_keys = {row: key for row, key, _ in slots}
                for row, key, value in returned:
                    assert evict or sent_keys[row] == key  # another key only when evicted
                    out[key].append(value)
            elif int(hdr["status"]) == Status.OK:
                assert response == first[seq_of]  # duplicate: same answer, not aggregated again
            else:
                assert int(hdr["status"]) == Status.BELOW_WINDOW
                assert returned == []
    for copy in (0, 1):
        _drain_copy(switch, job, copy, out)

    expected: dict[bytes, list[int]] = defaultdict(list)
    for key, value in tuples:
        expected[key].append(value)
    reduce = AGGREGATES[agg]
    assert {key: reduce(v) for key, v in out.items()} == {
        key: reduce(v) for key, v in expected.items()
    }
    counters = call("job_status")["counters"]
    assert counters["tuples"] == len(tuples)
    assert counters["absorbed"] + counters["residual"] == len(tuples)
