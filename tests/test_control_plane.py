"""The control plane through the switch's packet interface: admission, isolation, epochs,
copies, leases, idempotent requests and statistics."""

from __future__ import annotations

from collections import Counter
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch_dataplane import wire
from switch_dataplane.control import control_plane
from switch_dataplane.daemon.switch import Switch
from switch_dataplane.dataplane.pipeline_kernel import VALID
from switch_dataplane.key_hash import ROW_SEED, murmur3_key
from switch_dataplane.wire import PacketType, Status


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class Host:
    """One client of a switch: control calls with fresh request ids, data and drain packets."""

    def __init__(self, switch: Switch, client: int = 1) -> None:
        self.switch = switch
        self.client = client
        self.request_id = 0
        self.last_request = b""
        self.bytes_sent = 0  # data and drain packets, and their answers
        self.bytes_received = 0

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        self.request_id += 1
        self.last_request = wire.encode_control(
            PacketType.CONTROL_REQUEST, self.client, self.request_id, {"op": op, **fields}
        )
        return self.resend()

    def resend(self) -> dict[str, Any]:
        (reply,) = self.switch.handle([self.last_request])
        assert reply is not None
        hdr, message = wire.decode_control(reply)
        assert int(hdr["type"]) == PacketType.CONTROL_RESPONSE
        assert (int(hdr["flow_id"]), int(hdr["seq"])) == (self.client, self.request_id)
        return message

    def open_job(self, **fields: Any) -> dict[str, Any]:
        reply = self.call("open_job", **{"lease_s": 1e6, **fields})
        assert reply["ok"], reply
        return reply

    def open_flow(self, job: dict[str, Any], partition: int = 0, attempt: int = 0) -> int:
        reply = self.call(
            "open_flow", **ident(job), epoch=job["epoch"], partition=partition, attempt=attempt
        )
        assert reply["ok"], reply
        return reply["flow_id"]

    def send(self, job: dict[str, Any], flow_id: int, seq: int, pairs: list[tuple[bytes, int]],
             epoch: int | None = None) -> tuple[Status, list[tuple[int, bytes, int]]]:  # fmt: skip
        """One data packet, each key in its subspace's slot; (status, returned slots)."""
        rows = self.switch.dataplane.rows
        slots = [(murmur3_key(key, ROW_SEED) % rows, key, value) for key, value in pairs]
        assert len({s[0] for s in slots}) == len(slots), "one tuple per slot"
        return self.send_slots(job, flow_id, seq, slots, epoch)

    def send_slots(self, job: dict[str, Any], flow_id: int, seq: int,
                   slots: list[tuple[int, bytes, int]], epoch: int | None = None,
                   ) -> tuple[Status, list[tuple[int, bytes, int]]]:  # fmt: skip
        hdr = wire.new_header(
            PacketType.DATA,
            job_id=job["job_id"],
            token=job["token"],
            epoch=job["epoch"] if epoch is None else epoch,
            flow_id=flow_id,
            seq=seq,
        )
        keys = np.frombuffer(b"".join(s[1] for s in slots), np.uint8).reshape(len(slots), 16)
        packet = wire.encode_packet(
            hdr, np.array([s[0] for s in slots]), keys, np.array([s[2] for s in slots])
        )
        return self.exchange(packet)

    def drain(self, job: dict[str, Any], copy: int, column: int,
              epoch: int | None = None) -> tuple[Status, list[tuple[int, bytes, int]]]:  # fmt: skip
        hdr = wire.new_header(
            PacketType.DRAIN_REQUEST,
            job_id=job["job_id"],
            token=job["token"],
            epoch=job["epoch"] if epoch is None else epoch,
            copy=copy,
            seq=column,
        )
        return self.exchange(wire.encode_header(hdr))

    def exchange(self, packet: bytes) -> tuple[Status, list[tuple[int, bytes, int]]]:
        (answer,) = self.switch.handle([packet])
        self.bytes_sent += len(packet)
        self.bytes_received += len(answer or b"")
        return _status_and_slots(answer)

    def drain_all(self, job: dict[str, Any], copy: int) -> dict[bytes, int]:
        out: dict[bytes, int] = {}
        for column in range(job["columns"]):
            status, slots = self.drain(job, copy, column)
            assert status == Status.OK
            for _, key, value in slots:
                assert key not in out
                out[key] = value
        return out


def _status_and_slots(response: bytes | None) -> tuple[Status, list[tuple[int, bytes, int]]]:
    assert response is not None
    hdr, indices, body = wire.decode_packet(response)
    slots = [(int(i), bytes(r["key"]), int(r["value"])) for i, r in zip(indices, body, strict=True)]
    return Status(int(hdr["status"])), slots


def ident(job: dict[str, Any]) -> dict[str, int]:
    return {"job_id": job["job_id"], "token": job["token"]}


def key(i: int) -> bytes:
    return i.to_bytes(16, "little")


def make(**kwargs: Any) -> tuple[Switch, Host, FakeClock]:
    clock = FakeClock()
    defaults = dict(rows=4, columns=16, window=8, max_flows=8, max_jobs=4, memory_policy="isolated")
    switch = Switch(**{**defaults, **kwargs}, clock=clock, operator_secret=OPERATOR)
    return switch, Host(switch), clock


OPERATOR = "the-operator-secret"


def wire_stats(host: Host) -> dict[str, Any]:
    """The switch's stats over the wire, piece by piece (as ``fetch_stats`` puts them together)."""
    top = host.call("stats", operator=OPERATOR)
    jobs = {}
    for job_id in top["jobs"]:
        job = host.call("stats", operator=OPERATOR, job=job_id)["job"]
        epochs = {
            str(e): host.call("stats", operator=OPERATOR, job=job_id, epoch=e)["counters"]
            for e in job.pop("epochs")
        }
        jobs[str(job_id)] = {**job, "epochs": epochs}
    return {"ok": top["ok"], "switch": top["switch"], "jobs": jobs}


# ---------------------------------------------------------------------------- admission


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([1, 2, 4, 8, 16, 32]),
    st.lists(
        st.tuples(st.booleans(), st.sampled_from([None, 1, 2, 4, 8, 16, 32]), st.integers(0, 9)),
        max_size=25,
    ),
)
def test_regions_are_disjoint_aligned_powers_of_two(
    columns: int, steps: list[tuple[bool, int | None, int]]
) -> None:
    """Random opens and closes under the isolated policy: regions never overlap; a job naming
    no size gets its fair share (the array over the jobs, a power of two) or the largest free
    block if smaller; AA_FULL exactly when no block is free."""
    switch, host, _ = make(rows=2, columns=columns, max_jobs=64, max_flows=2)
    jobs: list[dict[str, Any]] = []
    for is_open, size, which in steps:
        if not is_open and jobs:
            job = jobs.pop(which % len(jobs))
            assert host.call("close_job", **ident(job)) == {"ok": True}
            continue
        request = {} if size is None else {"columns": size}
        reply = host.call("open_job", lease_s=1e6, **request)
        used = set()
        for job in jobs:
            used.update(range(job["offset"], job["offset"] + job["columns"]))
        # Independent oracle: the aligned free blocks of each size.
        free_sizes = [
            s
            for s in (1 << i for i in range(columns.bit_length()))
            if any(used.isdisjoint(range(o, o + s)) for o in range(0, columns, s))
        ]
        if size is not None and size > columns:
            assert reply["code"] == "BAD_ARGUMENT"
            continue
        share = 1 << max(0, (columns // (len(jobs) + 1)).bit_length() - 1)
        wanted = size if size is not None else min(share, max(free_sizes, default=1))
        if wanted not in free_sizes:
            assert reply["ok"] is False
            assert reply["code"] == "AA_FULL", reply
            assert "switch memory full under the isolated policy" in reply["error"]
            assert f"largest free: {max(free_sizes, default=0)}" in reply["error"]
            continue
        assert reply["ok"], reply
        assert reply["columns"] == wanted
        assert reply["offset"] % wanted == 0
        assert used.isdisjoint(range(reply["offset"], reply["offset"] + wanted))
        jobs.append(reply)
        free = columns - sum(j["columns"] for j in jobs)
        assert switch.stats()["switch"]["free_columns"] == free


def test_full_array_is_a_clear_admission_answer() -> None:
    _, host, _ = make(columns=8)
    first = host.open_job()
    assert first["columns"] == 8  # no size asked: the largest free region
    for request in ({}, {"columns": 1}, {"columns": 8}):
        reply = host.call("open_job", **request)
        assert reply["ok"] is False and reply["code"] == "AA_FULL", reply
        assert "retry when a job closes" in reply["error"]
    assert host.call("close_job", **ident(first)) == {"ok": True}
    assert host.open_job(columns=4)["offset"] == 0


def test_too_many_jobs_and_flows() -> None:
    _, host, _ = make(max_jobs=2, max_flows=2)
    jobs = [host.open_job(columns=2) for _ in range(2)]
    assert sorted(j["job_id"] for j in jobs) == [0, 1]
    reply = host.call("open_job", columns=2)
    assert reply["code"] == "TOO_MANY_JOBS" and "2 job slots" in reply["error"]
    host.open_flow(jobs[0])
    host.open_flow(jobs[1])
    reply = host.call("open_flow", **ident(jobs[0]), epoch=1, partition=1, attempt=0)
    assert reply["code"] == "TOO_MANY_FLOWS"
    assert host.call("close_job", **ident(jobs[1]))["ok"]
    assert host.open_flow(jobs[0], partition=1)  # the closed job's flow slot came back
    assert host.open_job(columns=2)["job_id"] == 1


def test_open_jobs_share_the_flow_slots() -> None:
    _, host, _ = make(max_jobs=4, max_flows=16)
    first = host.open_job(columns=4)
    assert first["flows"] == 12  # alone: flows_per_job, three quarters of the slots
    held = [host.open_flow(first, partition=p) for p in range(12)]
    second = host.open_job(columns=4)
    assert second["flows"] == 8  # 16 slots between 2 jobs
    reply = host.call("open_flow", **ident(first), epoch=1, partition=12, attempt=0)
    assert reply["code"] == "TOO_MANY_FLOWS" and "its share of the 16 flow slots" in reply["error"]
    assert [host.open_flow(second, partition=p) for p in range(4)]  # the 4 slots left
    reply = host.call("open_flow", **ident(second), epoch=1, partition=4, attempt=0)
    assert reply["code"] == "TOO_MANY_FLOWS" and "all 16 flows are open" in reply["error"]
    for flow_id in held[:5]:  # the first job falls below its share as its flows finish
        assert host.call("close_flow", **ident(first), flow_id=flow_id)["ok"]
    assert host.open_flow(first, partition=12)  # 8: its share again
    reply = host.call("open_flow", **ident(first), epoch=1, partition=13, attempt=0)
    assert reply["code"] == "TOO_MANY_FLOWS" and "its share" in reply["error"]
    assert [host.open_flow(second, partition=p) for p in range(4, 8)]  # up to its share


@pytest.mark.parametrize("requested", [None, 0, 1, 2, 3, 5, 8, 9, 64, 1000])
def test_window_negotiation(requested: int | None) -> None:
    capacity = 8
    switch, host, _ = make(window=capacity)
    job = host.open_job(**({} if requested is None else {"window": requested}))
    bound = capacity if not requested else min(requested, capacity)
    window = job["window"]
    # min(requested, capacity), rounded down to a power of two (the seen index is seq & (w-1)).
    assert window & (window - 1) == 0
    assert bound // 2 < window <= bound
    if bound & (bound - 1) == 0:
        assert window == bound
    flow_reply = host.call("open_flow", **ident(job), epoch=1, partition=0, attempt=0)
    assert flow_reply["window"] == window
    assert switch.stats()["jobs"][str(job["job_id"])]["window"] == window
    # And the dataplane enforces exactly that window: the last `window` sequence numbers up to
    # the highest seen are accepted, the one before them is refused.
    flow = flow_reply["flow_id"]
    top = 3 * window
    assert host.send(job, flow, top, [(key(1), 1)])[0] == Status.OK
    assert host.send(job, flow, top - window + 1, [(key(2), 1)])[0] == Status.OK
    assert host.send(job, flow, top - window, [(key(3), 1)])[0] == Status.BELOW_WINDOW


# ---------------------------------------------------------------------------- memory manager


def exact_through(host: Host, job: dict[str, Any], pairs: list[tuple[int, int]]) -> None:
    """Stream ``pairs`` into ``job`` one per packet; what the switch absorbed (drained) plus
    what it returned equals the Counter of the pairs."""
    flow = host.open_flow(job)
    got: Counter[bytes] = Counter()
    for seq, (k, v) in enumerate(pairs):
        status, residual = host.send(job, flow, seq, [(key(k), v)])
        assert status == Status.OK
        got.update({rk: rv for _, rk, rv in residual})
    got.update(host.drain_all(job, 0))
    expected: Counter[bytes] = Counter()
    for k, v in pairs:
        expected[key(k)] += v
    assert +got == +expected


def test_isolated_jobs_share_the_array_and_a_third_waits_its_turn() -> None:
    switch, a, clock = make(columns=16, max_jobs=8)
    b, c, d = Host(switch, client=2), Host(switch, client=3), Host(switch, client=4)
    first, second = a.open_job(columns=8), b.open_job(columns=8)
    assert {(first["offset"], first["columns"]), (second["offset"], second["columns"])} == {
        (0, 8),
        (8, 8),
    }
    assert first["flows"] == switch.control_plane.flows_per_job
    wait = {"columns": 8, "max_wait_ms": 2000}
    assert c.call("open_job", **wait) == {"ok": True, "queued": True, "position": 1, "retry_ms": 50}
    assert d.call("open_job", **wait)["position"] == 2
    clock.now += 1.0
    assert c.call("open_job", **wait)["position"] == 1  # the same client keeps its place
    assert switch.stats()["switch"]["waiting_jobs"] == 2
    assert a.call("close_job", **ident(first)) == {"ok": True}
    assert d.call("open_job", **wait)["position"] == 2  # no overtaking the head
    third = c.open_job(**wait)
    assert (third["offset"], third["columns"]) == (first["offset"], 8)
    assert d.call("open_job", **wait)["position"] == 1
    exact_through(b, second, [(i % 5, i) for i in range(40)])
    exact_through(c, third, [(i % 7, 2 * i) for i in range(40)])
    clock.now += 1.0  # d's 2 s are up
    reply = d.call("open_job", **wait)
    assert (reply["ok"], reply["code"]) == (False, "AA_WAIT_EXPIRED"), reply
    assert "waited 2000 ms for switch memory" in reply["error"]
    assert "spark.inc.memory.maxWaitMs" in reply["error"] and "fewer columns" in reply["error"]
    assert switch.stats()["switch"]["waiting_jobs"] == 0
    assert d.call("open_job", **wait)["position"] == 1  # asking again starts a new wait


def test_a_job_is_resized_between_epochs() -> None:
    """A job alone holds the whole array; when another waits, the first's next epoch shrinks it
    to its fair share and the waiter gets the rest; when that one closes, the next epoch grows
    it back. Every epoch is exact through its new region."""
    switch, a, _ = make(columns=16)
    b = Host(switch, client=2)
    job = a.open_job()
    assert (job["offset"], job["columns"]) == (0, 16)
    exact_through(a, job, [(i % 30, i) for i in range(60)])
    wait = {"max_wait_ms": 60_000}
    assert b.call("open_job", **wait)["position"] == 1
    job.update(a.call("new_epoch", **ident(job)))
    assert job["columns"] == 8
    other = b.open_job(**wait)
    assert other["columns"] == 8 and {job["offset"], other["offset"]} == {0, 8}
    exact_through(a, job, [(i % 30, 3 * i) for i in range(60)])
    exact_through(b, other, [(i % 11, i) for i in range(40)])
    assert b.call("close_job", **ident(other))["ok"]
    job.update(a.call("new_epoch", **ident(job)))
    assert (job["offset"], job["columns"]) == (0, 16)
    exact_through(a, job, [(i % 30, 5) for i in range(60)])


def test_lease_expiry_of_a_dead_driver_frees_memory_for_a_waiter() -> None:
    switch, dead, clock = make(columns=16)
    waiter = Host(switch, client=2)
    gone = dead.open_job(columns=16, lease_s=10.0)
    wait = {"columns": 16, "max_wait_ms": 60_000}
    for _ in range(3):  # the waiter keeps asking; the dead driver says nothing
        assert waiter.call("open_job", **wait)["position"] == 1
        clock.now += 4.0
        switch.tick()
    assert switch.stats()["switch"]["expired_jobs"] == 1
    job = waiter.open_job(**wait)
    assert (job["offset"], job["columns"]) == (0, 16)
    assert dead.call("job_status", **ident(gone))["code"] == "BAD_JOB"
    exact_through(waiter, job, [(i % 9, 1) for i in range(50)])


def test_a_waiter_that_stops_asking_gives_up_its_place() -> None:
    switch, owner, clock = make(columns=16)
    silent, patient = Host(switch, client=2), Host(switch, client=3)
    held = owner.open_job(columns=16)
    wait = {"columns": 16, "max_wait_ms": 60_000}
    assert silent.call("open_job", **wait)["position"] == 1
    assert patient.call("open_job", **wait)["position"] == 2
    for _ in range(3):
        clock.now += 2.0
        switch.tick()
        patient.call("open_job", **wait)
    assert owner.call("close_job", **ident(held)) == {"ok": True}
    assert patient.open_job(**wait)["columns"] == 16


def test_edf_serves_the_nearest_deadline_first() -> None:
    switch, owner, _ = make(columns=16, max_jobs=8, memory_policy="edf")
    late, soon, none = (Host(switch, client=c) for c in (2, 3, 4))
    held = owner.open_job(columns=16)
    wait = {"columns": 16, "max_wait_ms": 60_000}
    assert late.call("open_job", **wait, deadline_ms=50_000)["position"] == 1
    assert none.call("open_job", **wait, priority=9)["position"] == 2
    assert soon.call("open_job", **wait, deadline_ms=20_000)["position"] == 1
    assert late.call("open_job", **wait)["position"] == 2
    assert none.call("open_job", **wait)["position"] == 3  # best effort after any deadline
    assert owner.call("close_job", **ident(held)) == {"ok": True}
    assert late.call("open_job", **wait)["queued"]
    first = soon.open_job(**wait)
    assert soon.call("close_job", **ident(first)) == {"ok": True}
    assert none.call("open_job", **wait)["queued"]
    assert late.open_job(**wait)["columns"] == 16


def test_the_queue_is_bounded() -> None:
    switch, owner, _ = make(columns=16, max_jobs=2)
    owner.open_job(columns=16)
    wait = {"columns": 16, "max_wait_ms": 60_000}
    for client in (2, 3):
        assert Host(switch, client=client).call("open_job", **wait)["queued"]
    reply = Host(switch, client=4).call("open_job", **wait)
    assert reply["code"] == "QUEUE_FULL" and "another switch" in reply["error"]
    assert switch.stats()["switch"]["waiting_jobs"] == 2


def test_exclusive_policy_runs_one_job_at_a_time() -> None:
    switch, owner, _ = make(columns=16, memory_policy="exclusive")
    held = owner.open_job(columns=2)
    assert (held["offset"], held["columns"]) == (0, 16)
    reply = Host(switch, client=2).call("open_job", columns=2)
    assert reply["code"] == "AA_FULL" and "exclusive policy" in reply["error"]


@pytest.mark.parametrize("fast", [True, False])
def test_the_shared_pool_keeps_jobs_apart(fast: bool) -> None:
    """Two jobs of the shared pool both get the whole array and send the same keys (more than
    it holds) with different values, b after a finished flow (so a's entries, hit once in a's
    phase 0, look evictable to b's phase 1): each job's residuals plus its own drain are
    exactly its input, before and after the other job closes; the pool is empty at the end."""
    switch, host_a, _ = make(memory_policy="shared", fast=fast, rows=4, columns=16)
    host_b = Host(switch, client=2)
    jobs = {"a": host_a.open_job(), "b": host_b.open_job()}
    assert {(j["offset"], j["columns"]) for j in jobs.values()} == {(0, 16)}
    hosts = {"a": host_a, "b": host_b}
    weight = {"a": 1, "b": 1000}
    keys = [key(i) for i in range(150)]
    by_row: dict[int, list[bytes]] = {}
    for k_ in keys:
        by_row.setdefault(murmur3_key(k_, ROW_SEED) % 4, []).append(k_)
    finished = host_b.open_flow(jobs["b"], partition=9)
    assert host_b.call("close_flow", **ident(jobs["b"]), flow_id=finished)["ok"]
    got: dict[str, Counter] = {name: Counter() for name in jobs}
    times = {"a": 1, "b": 2}
    for name, job in jobs.items():
        flow = hosts[name].open_flow(job)
        packets = [
            [(ks[i], weight[name]) for ks in by_row.values() if i < len(ks)]
            for i in range(max(len(v) for v in by_row.values()))
        ]
        for seq, pairs in enumerate(packets * times[name]):
            status, returned = hosts[name].send(job, flow, seq, pairs)
            assert status == Status.OK
            for _, k_, v in returned:
                got[name][k_] += v
    expected = {name: Counter({k_: times[name] * weight[name] for k_ in keys}) for name in jobs}

    def drained(name: str) -> Counter:
        total = Counter(got[name])
        for copy in (0, 1):
            total.update(hosts[name].drain_all(jobs[name], copy))
        return total

    assert drained("a") == expected["a"] and drained("b") == expected["b"]
    assert hosts["b"].call("close_job", **ident(jobs["b"]))["ok"]
    assert drained("a") == expected["a"]
    assert hosts["a"].call("close_job", **ident(jobs["a"]))["ok"]
    dp = switch.dataplane
    assert not np.any(dp.aa[..., VALID]) if fast else not dp.aggregators


# ---------------------------------------------------------------------------- isolation


def test_another_jobs_token_cannot_touch_a_job() -> None:
    switch, host, _ = make(columns=16)
    a = host.open_job(columns=8)
    b = host.open_job(columns=8)
    assert a["token"] != b["token"]
    flow = host.open_flow(a)
    assert host.send(a, flow, 0, [(key(7), 5)]) == (Status.OK, [])
    forged = {"job_id": a["job_id"], "token": b["token"]}
    for op, extra in [
        ("swap", {}),
        ("close_job", {}),
        ("clear_copy", {"copy": 1}),
        ("new_epoch", {}),
        ("job_status", {}),
        ("epoch_record", {}),
        ("renew", {}),
        ("close_flow", {"flow_id": flow}),
        ("open_flow", {"epoch": 1, "partition": 0, "attempt": 0}),
    ]:
        reply = host.call(op, **forged, **extra)
        assert reply["ok"] is False and reply["code"] == "BAD_JOB", (op, reply)
        assert "with that id and token" in reply["error"]
    a_forged = {**a, "token": b["token"]}
    for copy in (0, 1):
        for column in range(8):
            assert host.drain(a_forged, copy, column) == (Status.BAD_JOB, [])
    assert host.send(a_forged, flow, 1, [(key(8), 1)]) == (Status.BAD_JOB, [])
    assert switch.stats()["switch"]["bad_job"] == 17
    # Job A is untouched: same copy, same contents, its flow still works.
    status = host.call("job_status", **ident(a))
    assert status["active_copy"] == 0 and status["swaps"] == 0 and status["epoch"] == 1
    assert host.drain_all(a, 0) == {key(7): 5}
    assert host.drain_all(b, 0) == {}
    assert host.send(a, flow, 1, [(key(7), 1)]) == (Status.OK, [])
    assert host.drain_all(a, 0) == {key(7): 6}


def test_jobs_only_see_their_own_region() -> None:
    _, host, _ = make(rows=4, columns=4)
    a, b = host.open_job(columns=2), host.open_job(columns=2)
    fa, fb = host.open_flow(a), host.open_flow(b)
    for seq in range(30):
        assert host.send(a, fa, seq, [(key(seq % 3), 1)])[0] == Status.OK
        assert host.send(b, fb, seq, [(key(100 + seq % 5), 2)])[0] == Status.OK
    assert set(host.drain_all(a, 0)) <= {key(i) for i in range(3)}
    assert set(host.drain_all(b, 0)) <= {key(100 + i) for i in range(5)}
    assert host.drain(a, 0, 2) == (Status.BAD_REQUEST, [])  # column beyond A's region


# ---------------------------------------------------------------------------- epochs


def test_epoch_record_lists_partition_attempt_flows() -> None:
    _, host, _ = make()
    job = host.open_job()
    flows = {(p, a): host.open_flow(job, p, a) for p, a in [(0, 0), (1, 0), (1, 1), (2, 0)]}
    assert host.call("close_flow", **ident(job), flow_id=flows[(1, 0)], packets=7)["ok"]
    record = host.call("epoch_record", **ident(job))
    assert record["ok"] and record["epoch"] == 1
    listed = {(f["partition"], f["attempt"]): f for f in record["flows"]}
    assert set(listed) == set(flows)
    for pa, flow_id in flows.items():
        assert listed[pa]["flow_id"] == flow_id
        assert listed[pa]["closed"] == (pa == (1, 0))
    assert listed[(1, 0)]["packets"] == 7
    assert len(set(flows.values())) == 4
    # The record of an epoch survives the next epoch; the new one starts empty.
    assert host.call("new_epoch", **ident(job))["epoch"] == 2
    assert host.call("epoch_record", **ident(job))["flows"] == []
    assert host.call("epoch_record", **ident(job), epoch=1)["flows"] == record["flows"]
    assert host.call("epoch_record", **ident(job), epoch=9)["code"] == "STALE_EPOCH"


def test_new_epoch_clears_the_region_and_rejects_the_old_epoch() -> None:
    switch, host, _ = make(rows=4, columns=4)
    job = host.open_job()
    flow = host.open_flow(job)
    for seq in range(6):
        assert host.send(job, flow, seq, [(key(seq), seq + 1)])[0] == Status.OK
    assert host.call("swap", **ident(job))["ok"]
    assert host.send(job, flow, 6, [(key(1), 1)]) == (Status.OK, [])
    assert key(0) in host.drain_all(job, 0)  # the first key of a copy always finds room
    assert host.drain_all(job, 1) == {key(1): 1}
    epoch = host.call("new_epoch", **ident(job))
    assert epoch == {"ok": True, "epoch": 2, "offset": job["offset"], "columns": job["columns"]}
    new = {**job, "epoch": 2}
    assert host.drain_all(new, 0) == {} and host.drain_all(new, 1) == {}
    # Old-epoch packets are never aggregated, data or drain.
    assert host.send(job, flow, 7, [(key(1), 1)]) == (Status.STALE_EPOCH, [])
    assert host.drain(job, 0, 0) == (Status.STALE_EPOCH, [])
    assert host.call("open_flow", **ident(job), epoch=1, partition=0, attempt=0)["code"] == (
        "STALE_EPOCH"
    )
    # The old flow was released with the epoch; a new flow of the new epoch works.
    assert host.send(new, flow, 7, [(key(1), 1)]) == (Status.BAD_FLOW, [])
    flow2 = host.open_flow(new)
    assert host.send(new, flow2, 0, [(key(1), 3)]) == (Status.OK, [])
    assert host.drain_all(new, 1) == {key(1): 3}  # the active copy survived the epoch
    status = host.call("job_status", **ident(job))
    assert status["copies"] == ["clean", "active"]
    counters = status["counters"]
    assert counters["stale_epoch"] == 2 and counters["tuples"] == 1 and counters["bad_flow"] == 1
    epochs = switch.stats()["jobs"][str(job["job_id"])]["epochs"]
    assert epochs["1"]["tuples"] == 7 and epochs["1"]["swaps"] == 1
    assert epochs["2"]["tuples"] == 1 and epochs["2"]["swaps"] == 0


def test_the_ledger_counts_the_bytes_that_crossed() -> None:
    switch, host, _clock = make(rows=4, columns=2)
    job = host.open_job(columns=2)
    flow = host.open_flow(job)
    for seq in range(6):  # the same keys, and new ones that collide with them
        host.send_slots(job, flow, seq, [(r, key(100 * (seq % 3) + r), seq - 2) for r in range(4)])
    for copy in (0, 1):
        host.drain_all(job, copy)
    stats = switch.stats()["jobs"][str(job["job_id"])]
    counters, ledger = stats["epochs"]["1"], stats["ledger"]["1"]
    assert ledger["bytes_to_switch"] == host.bytes_sent
    assert ledger["bytes_to_hosts"] == host.bytes_received
    assert ledger["tuples_to_switch"] == 24
    returned = sum(counters[c] for c in ("residual", "flushed", "evicted", "drained_entries"))
    assert ledger["tuples_to_hosts"] == returned > 0


# ---------------------------------------------------------------------------- copies


def test_swap_and_clear_copy_rules() -> None:
    _, host, _ = make(rows=4, columns=4)
    job = host.open_job()
    flow = host.open_flow(job)
    assert host.send(job, flow, 0, [(key(1), 10)])[0] == Status.OK

    def copies() -> list[str]:
        return host.call("job_status", **ident(job))["copies"]

    assert copies() == ["active", "clean"]
    reply = host.call("clear_copy", **ident(job), copy=0)
    assert reply["code"] == "COPY_ACTIVE" and "copy 0 is active" in reply["error"]
    assert host.drain_all(job, 0) == {key(1): 10}  # refused clear changed nothing
    assert host.call("clear_copy", **ident(job), copy=2)["code"] == "BAD_ARGUMENT"
    assert host.call("clear_copy", **ident(job), copy=1) == {"ok": True}  # clean: no-op

    assert host.call("swap", **ident(job)) == {"ok": True, "active_copy": 1}
    assert copies() == ["drainable", "active"]
    status, slots = host.send(job, flow, 1, [(key(1), 5)])
    assert status == Status.OK and slots == []
    assert host.drain_all(job, 1) == {key(1): 5}  # new tuples go to the new active copy
    reply = host.call("swap", **ident(job))
    assert reply["code"] == "COPY_NOT_CLEAN" and "drain it and call clear_copy" in reply["error"]
    assert host.call("job_status", **ident(job))["active_copy"] == 1
    # Reading is idempotent; the data stays until cleared.
    assert host.drain_all(job, 0) == host.drain_all(job, 0) == {key(1): 10}
    assert host.call("clear_copy", **ident(job), copy=1)["code"] == "COPY_ACTIVE"
    assert host.call("clear_copy", **ident(job), copy=0) == {"ok": True}
    assert host.drain_all(job, 0) == {}
    assert copies() == ["clean", "active"]
    assert host.call("swap", **ident(job)) == {"ok": True, "active_copy": 0}
    assert host.call("job_status", **ident(job))["swaps"] == 2
    # A retransmission of seq 0 is answered as before and not aggregated again.
    assert host.send(job, flow, 0, [(key(1), 10)]) == (Status.OK, [])
    assert host.drain_all(job, 0) == {}


def _hit(host: Host, job: dict[str, Any], flow: int, seq: int, keys: list[bytes]) -> int:
    """One packet with one tuple per row (keys[row] in row ``row``); -> the next seq."""
    status, returned = host.send_slots(job, flow, seq, [(r, k, 1) for r, k in enumerate(keys)])
    assert status == Status.OK
    return seq + 1


def test_auto_swap_when_stale_keys_hold_the_active_copys_hits() -> None:
    rows = 4
    switch, host, _clock = make(rows=rows, columns=2, window=4)
    drifting = host.open_job(columns=1, swap_stale_share=0.5)
    steady = host.open_job(columns=1, swap_stale_share=0.5)
    old = [key(100 + r) for r in range(rows)]

    def status(job: dict[str, Any]) -> dict[str, Any]:
        return host.call("job_status", **ident(job))

    def phase_passes(job: dict[str, Any], keys: list[bytes] | None) -> None:
        """One more flow of the job streams (``keys``, if any) and closes; one stays open."""
        flow = host.open_flow(job)
        if keys is not None:
            _hit(host, job, flow, 0, keys)
        assert host.call("close_flow", **ident(job), flow_id=flow)["ok"]

    flows = {}
    with mock.patch.object(control_plane, "SWAP_MIN_HITS", 8):
        for job in (drifting, steady):
            flows[job["job_id"]] = host.open_flow(job)  # open throughout
            for seq in range(3):
                _hit(host, job, flows[job["job_id"]], seq, old)  # 3 hits per aggregator
        for n in range(1, control_plane.STALE_PHASES + 1):
            phase_passes(drifting, None)  # nothing hits the old keys any more
            phase_passes(steady, old)  # the old keys stay popular
            if n < control_plane.STALE_PHASES:
                assert status(drifting)["swaps"] == 0  # not stale yet
        s = status(drifting)
        assert (s["active_copy"], s["swaps"], s["copies"]) == (1, 1, ["drainable", "active"])
        assert status(steady)["swaps"] == 0  # as many phases, its keys still hit: no swap

        # The new copy goes stale too, but copy 0 is not drained: no swap back onto it.
        for seq in range(3):
            _hit(host, drifting, flows[drifting["job_id"]], 3 + seq, old)
        for _ in range(control_plane.STALE_PHASES):
            phase_passes(drifting, None)
        assert status(drifting)["active_copy"] == 1
        assert host.drain_all(drifting, 0) == {k: 3 for k in old}
        assert host.call("clear_copy", **ident(drifting), copy=0)["ok"]
        phase_passes(drifting, None)
        assert (status(drifting)["active_copy"], status(drifting)["swaps"]) == (0, 2)

        # With no flow open the owner is draining: the copies hold still.
        new = [key(200 + r) for r in range(rows)]
        for seq in range(3):
            _hit(host, steady, flows[steady["job_id"]], 3 + seq, new)
        assert host.call("close_flow", **ident(steady), flow_id=flows[steady["job_id"]])["ok"]
        for _ in range(control_plane.STALE_PHASES + 1):
            phase_passes(steady, None)
        assert status(steady)["swaps"] == 0
    stats = switch.stats()["jobs"][str(drifting["job_id"])]
    assert stats["epochs"]["1"]["swaps"] == 2 and stats["copies"] == ["active", "drainable"]


def test_lease_expiry_reclaims_a_dead_jobs_region() -> None:
    switch, host, clock = make(columns=16)
    alive = host.open_job(columns=8, lease_s=10.0)
    dead = host.open_job(columns=8, lease_s=10.0)
    flow = host.open_flow(alive)
    dead_flow = host.open_flow(dead)
    assert host.send(dead, dead_flow, 0, [(key(5), 1)])[0] == Status.OK
    absorbed = {}
    for seq in range(1, 5):  # only data traffic keeps the live job's lease: no control calls
        clock.now += 6.0
        status, residual = host.send(alive, flow, seq, [(key(seq), seq)])
        assert status == Status.OK
        if not residual:
            absorbed[key(seq)] = seq
        switch.tick()
    stats = switch.stats()
    assert list(stats["jobs"]) == [str(alive["job_id"])]
    assert stats["switch"]["expired_jobs"] == 1
    assert stats["switch"]["free_columns"] == 8
    # The dead job is gone everywhere; its region and flow slot are free again.
    assert host.send(dead, dead_flow, 1, [(key(5), 1)]) == (Status.BAD_JOB, [])
    reply = host.call("job_status", **ident(dead))
    assert reply["code"] == "BAD_JOB" and "expired" in reply["error"]
    again = host.open_job(columns=8)
    assert again["offset"] == dead["offset"]
    assert host.drain_all(again, 0) == {} and host.drain_all(again, 1) == {}
    assert absorbed and host.drain_all(alive, 0) == absorbed


def test_control_calls_renew_the_lease_and_silence_expires_it() -> None:
    switch, host, clock = make()
    job = host.open_job(lease_s=10.0)
    clock.now += 9.0
    assert host.call("renew", **ident(job))["lease_left_s"] == pytest.approx(10.0)
    clock.now += 9.0
    switch.tick()
    assert host.call("job_status", **ident(job))["lease_left_s"] == pytest.approx(10.0)
    clock.now += 10.5
    switch.tick()
    assert host.call("job_status", **ident(job))["code"] == "BAD_JOB"
    assert switch.stats()["switch"]["expired_jobs"] == 1


# ---------------------------------------------------------------------------- requests


def test_retried_request_gets_the_same_reply_and_runs_once() -> None:
    switch, host, _ = make(columns=16)
    first = host.call("open_job", columns=4, lease_s=1e6)
    assert first["ok"]
    assert host.resend() == first
    assert host.resend() == first
    assert switch.stats()["switch"]["free_columns"] == 12
    assert len(switch.stats()["jobs"]) == 1
    flow_reply = host.call("open_flow", **ident(first), epoch=1, partition=0, attempt=0)
    assert host.resend() == flow_reply
    assert len(host.call("epoch_record", **ident(first))["flows"]) == 1
    swap = host.call("swap", **ident(first))
    assert host.resend() == swap == {"ok": True, "active_copy": 1}  # not swapped back
    assert host.call("job_status", **ident(first))["swaps"] == 1
    epoch = host.call("new_epoch", **ident(first))
    assert host.resend() == epoch and epoch["epoch"] == 2
    # Another client with the same request id is a different request.
    other = Host(switch, client=2)
    other.request_id = host.request_id - 1
    assert other.call("job_status", **ident(first))["epoch"] == 2
    # A stats request is always answered fresh.
    stats = host.call("stats", operator=OPERATOR)
    stats_request, stats_id = host.last_request, host.request_id
    host.call("job_status", **ident(first))
    host.last_request, host.request_id = stats_request, stats_id
    again = host.resend()
    assert again["ok"]
    assert again["switch"]["control_requests"] == stats["switch"]["control_requests"] + 2


@pytest.mark.parametrize(
    "message",
    [
        {"op": "frobnicate"},
        {"op": 5},
        {},
        {"op": "open_job", "agg": "avg"},
        {"op": "open_job", "columns": 3},
        {"op": "open_job", "columns": 0},
        {"op": "open_job", "columns": 32},
        {"op": "open_job", "columns": "many"},
        {"op": "open_job", "window": -1},
        {"op": "open_job", "window": "wide"},
        {"op": "open_job", "lease_s": 0},
        {"op": "open_job", "swap_stale_share": 1.5},
        {"op": "open_job", "min_columns": 3},
        {"op": "open_job", "min_columns": 32},
        {"op": "open_job", "columns": 4, "min_columns": 8},
        {"op": "open_job", "priority": 256},
        {"op": "open_job", "priority": -1},
        {"op": "open_job", "priority": True},
        {"op": "open_job", "deadline_ms": -1},
        {"op": "open_job", "deadline_ms": "soon"},
        {"op": "open_job", "max_wait_ms": 3_600_001},
        {"op": "open_job", "max_wait_ms": 1.5},
    ],
)
def test_bad_requests_answer_bad_argument(message: dict[str, Any]) -> None:
    switch, host, _ = make(columns=16)
    host.request_id += 1
    host.last_request = wire.encode_control(
        PacketType.CONTROL_REQUEST, host.client, host.request_id, message
    )
    reply = host.resend()
    assert reply["ok"] is False
    assert reply["code"] == "BAD_ARGUMENT", reply
    assert reply["error"]
    stats = switch.stats()
    assert stats["jobs"] == {} and stats["switch"]["control_errors"] == 1


@pytest.mark.parametrize(
    "message",
    [
        {"op": "open_flow"},
        {"op": "open_flow", "job_id": "x", "token": 1},
        {"op": "swap", "token": 1},
        {"op": "job_status", "job_id": "zero", "token": 1},
        {"op": "clear_copy", "job_id": None, "token": 1},
        {"op": "renew", "job_id": 0, "token": 2**64},
        {"op": "renew", "job_id": 0, "token": -1},
    ],
)
def test_requests_without_a_job_and_token_answer_bad_job(message: dict[str, Any]) -> None:
    """A missing or malformed job id or token is answered as a wrong one: it says nothing."""
    _, host, _ = make(columns=16)
    host.open_job()
    reply = host.call(**message)
    assert (reply["ok"], reply["code"]) == (False, "BAD_JOB")


def test_bad_argument_for_a_real_job() -> None:
    _, host, _ = make()
    job = host.open_job()
    reply = host.call("swap", job_id=job["job_id"])  # no token: as a wrong one
    assert (reply["code"], host.call("job_status", **ident(job))["swaps"]) == ("BAD_JOB", 0)
    for op, extra in [
        ("open_flow", {"epoch": 1}),  # no partition / attempt
        ("close_flow", {}),
        ("clear_copy", {"copy": 7}),
        ("clear_copy", {}),
    ]:
        reply = host.call(op, **ident(job), **extra)
        assert (reply["ok"], reply["code"]) == (False, "BAD_ARGUMENT"), (op, reply)
    assert host.call("close_flow", **ident(job), flow_id=12345)["code"] == "BAD_FLOW"


def test_a_refused_request_changes_nothing() -> None:
    """A malformed open_flow / close_flow must not leak a flow slot or half-close a flow."""
    switch, host, _ = make(max_flows=1)
    job = host.open_job()
    reply = host.call("open_flow", **ident(job), epoch=1, partition="first", attempt=0)
    assert reply["code"] == "BAD_ARGUMENT"
    assert host.call("epoch_record", **ident(job))["flows"] == []
    assert switch.stats()["jobs"][str(job["job_id"])]["open_flows"] == 0
    flow = host.open_flow(job)  # the only flow slot is still free
    reply = host.call("close_flow", **ident(job), flow_id=flow, packets="many")
    assert reply["code"] == "BAD_ARGUMENT"
    assert host.call("epoch_record", **ident(job))["flows"][0]["closed"] is False
    assert host.call("close_flow", **ident(job), flow_id=flow, packets=3) == {"ok": True}
    (record,) = host.call("epoch_record", **ident(job))["flows"]
    assert (record["closed"], record["packets"]) == (True, 3)
    assert host.send(job, flow, 0, [(key(1), 1)]) == (Status.BAD_FLOW, [])  # really closed
    assert switch.stats()["jobs"][str(job["job_id"])]["open_flows"] == 0
    host.open_flow(job, partition=1)


def test_malformed_control_packets_are_counted_and_dropped() -> None:
    switch, _, _ = make()
    header = wire.new_header(PacketType.CONTROL_REQUEST).tobytes()
    assert switch.handle([wire.seal(header + b"{broken"), wire.seal(header + b"[]")]) == [None] * 2
    assert switch.stats()["switch"]["malformed"] == 2


def test_damaged_packets_are_counted_and_never_aggregated() -> None:
    """A data packet, a drain request and a control request with one byte changed on the way
    get no answer and change nothing; the switch counts them as corrupt. The same data packet
    intact is then absorbed once, and every answer the switch sends verifies."""
    switch, host, _ = make(rows=4, columns=16)
    job = host.open_job(columns=4)
    flow = host.open_flow(job)
    hdr = wire.new_header(PacketType.DATA, **ident(job), epoch=job["epoch"], flow_id=flow)
    row = murmur3_key(key(1), ROW_SEED) % 4
    one_key = np.frombuffer(key(1), np.uint8).reshape(1, 16)
    packet = wire.encode_packet(hdr, np.array([row]), one_key, np.array([7]))
    drain = wire.encode_header(
        wire.new_header(PacketType.DRAIN_REQUEST, **ident(job), epoch=job["epoch"])
    )
    control = wire.encode_control(
        PacketType.CONTROL_REQUEST, 5, 1, {"op": "close_job", **ident(job)}
    )
    damaged = [bytearray(p) for p in (packet, drain, control)]
    for d in damaged:
        d[-2] ^= 0x01
    assert switch.handle([bytes(d) for d in damaged]) == [None, None, None]
    stats = switch.stats()
    assert stats["switch"]["corrupt"] == 3 and stats["switch"]["malformed"] == 0
    assert stats["jobs"][str(job["job_id"])]["epochs"]["1"]["packets"] == 0
    answer = switch.handle([packet])[0]
    assert answer is not None and wire.checksum(answer) == int.from_bytes(answer[40:44], "big")
    assert host.drain_all(job, 0) == {key(1): 7}


def test_stats_has_switch_job_and_epoch_counters() -> None:
    switch, host, _ = make(rows=4, columns=16)
    job = host.open_job(columns=4, name="wordcount")
    flow = host.open_flow(job)
    pairs = [(key(i), i) for i in range(40)]
    tuples = 0
    seq = 0
    for i in range(0, len(pairs), 4):
        chunk = {}
        for k_, v in pairs[i : i + 4]:
            chunk.setdefault(murmur3_key(k_, ROW_SEED) % 4, (k_, v))
        assert host.send(job, flow, seq, list(chunk.values()))[0] == Status.OK
        tuples += len(chunk)
        seq += 1
    assert host.send(job, flow, seq - 1, [])[0] == Status.OK  # a duplicate: not counted
    host.drain(job, 0, 0)
    stats = wire_stats(host)
    assert stats["ok"]
    sw = stats["switch"]
    assert sw["packets"] == seq + 2 and sw["malformed"] == 0 and sw["bad_job"] == 0
    assert (sw["rows"], sw["columns"], sw["free_columns"]) == (4, 16, 12)
    entry = stats["jobs"][str(job["job_id"])]
    assert entry["name"] == "wordcount" and entry["agg"] == "sum"
    assert entry["region"] == {"offset": job["offset"], "columns": 4}
    assert entry["open_flows"] == 1
    c = entry["epochs"]["1"]
    assert c["packets"] == seq + 2 and c["tuples"] == tuples
    assert c["absorbed"] + c["residual"] == tuples
    assert c["copy0_tuples"] == tuples and c["copy1_tuples"] == 0
    assert c["duplicates"] == 1 and c["drain_requests"] == 1 and c["swaps"] == 0
    host.call("new_epoch", **ident(job))
    epochs = wire_stats(host)["jobs"][str(job["job_id"])]["epochs"]
    assert epochs["1"] == c  # the closed epoch's counters are kept as they were
    assert set(epochs) == {"1", "2"} and epochs["2"]["packets"] == 0
