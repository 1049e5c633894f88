"""The host stack against a real switch daemon: exact results whatever the network does."""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inc_spark import host
from inc_spark.host import key_codec
from switch_dataplane.control.control_client import SwitchUnreachable
from switch_dataplane.daemon import SwitchDaemon
from switch_dataplane.daemon.launcher import SwitchProcess
from switch_dataplane.daemon.switch import Switch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def switch() -> Iterator[str]:
    """An in-process switch daemon (thread) with a small AA, so collisions happen."""
    daemon = SwitchDaemon(Switch(rows=8, columns=1024), port=0).start()
    yield "{}:{}".format(*daemon.address)
    daemon.stop()


@pytest.fixture(scope="module")
def faulty_switch() -> Iterator[str]:
    """A switch process that drops, duplicates and reorders 5% of packets each way."""
    with SwitchProcess(
        "--rows",
        "16",
        "--cols",
        "1024",
        "--drop",
        "0.05",
        "--duplicate",
        "0.05",
        "--reorder",
        "0.05",
        "--seed",
        "7",
    ) as switch:
        yield switch.address


def reference(pairs: list[tuple], op: str) -> dict:
    """The independent answer: plain Python over the pairs."""
    if op == "count":
        return dict(Counter(k for k, _ in pairs))
    out: dict = {}
    combine = {"sum": lambda a, b: a + b, "min": min, "max": max}[op]
    for k, v in pairs:
        out[k] = combine(out[k], v) if k in out else v
    return out


def zipf_words(n: int, vocabulary: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    ranks = rng.zipf(1.2, n) % vocabulary
    return [f"w{r}" for r in ranks.tolist()]


MIXED_KEYS = [
    "a",
    "",
    "é",
    "日本語",
    "x" * 15,
    "y" * 40,
    b"a",
    b"\x00",
    1,
    True,
    0,
    False,
    -5,
    2**70,
    None,
    (1, "a"),
    ((None,),),
    1.5,
    2.0,
    ("long tuple", "that does not fit", 16),
]


def mixed_pairs(n: int, seed: int) -> list[tuple]:
    rng = random.Random(seed)
    values = [1, -1, 7, 2**31 - 1, -(2**31), 2**40, -(2**80), 0]
    return [(rng.choice(MIXED_KEYS), rng.choice(values)) for _ in range(n)]


@pytest.mark.parametrize("op", ["sum", "count", "min", "max"])
def test_every_key_type_and_value_range_is_exact(switch: str, op: str) -> None:
    pairs = mixed_pairs(5000, seed=len(op))
    assert host.aggregate(pairs, op=op, switch=switch) == reference(pairs, op)


@pytest.mark.parametrize("op", ["sum", "count"])
def test_counting_batches_of_every_key_type_are_exact(switch: str, op: str) -> None:
    """(key, 1) pairs of every key type; a 1.0 among them makes that key's sum a float."""
    rng = random.Random(11)
    pairs = [(rng.choice(MIXED_KEYS), 1) for _ in range(5000)]
    assert host.aggregate(pairs, op=op, switch=switch) == reference(pairs, op)
    with_float = [*pairs[:2000], ("a", 1.0), ("b", True), *pairs[2000:]]
    got = host.aggregate(with_float, op="sum", switch=switch)
    assert got == reference(with_float, "sum")
    assert type(got["a"]) is float


@pytest.mark.parametrize("pre_combine", [True, False])
def test_zipf_stream_with_collisions_is_exact(switch: str, pre_combine: bool) -> None:
    words = zipf_words(60_000, vocabulary=30_000, seed=1)
    pairs = [(w, 1) for w in words]
    got = host.aggregate(pairs, switch=switch, pre_combine=pre_combine)
    assert got == reference(pairs, "sum")
    metrics = host.LAST_METRICS
    assert metrics is not None and metrics.residual > 0  # the small AA really collided


def test_exact_through_loss_duplication_and_reordering(faulty_switch: str) -> None:
    rng = random.Random(5)
    pairs = [(f"k{rng.randrange(3000)}", rng.randrange(-100, 100)) for _ in range(40_000)]
    pairs += mixed_pairs(2000, seed=9)
    got = host.aggregate(pairs, switch=faulty_switch, pre_combine=False)
    assert got == reference(pairs, "sum")
    assert host.LAST_METRICS is not None and host.LAST_METRICS.retransmissions > 0


def _stream_flows_in_turn(
    switch: str, flows: list[list[tuple[str, int]]], pre_combine: bool
) -> tuple[dict, dict[str, Any], list[host.StreamResult]]:
    """Each list of pairs on its own flow, one after another, while one more flow stays open
    (so the control plane may swap), the driver draining swapped-out copies meanwhile;
    -> (merged result, final job status, the flows' results)."""
    ticket = host.open_job(switch, op="sum")
    drainer = host.CopyDrainer(ticket).start()
    results = []
    try:
        with host.FlowStream(ticket, partition=len(flows)) as anchor:
            for p, pairs in enumerate(flows):
                result = host.stream_pairs(ticket, pairs, partition=p, pre_combine=pre_combine)
                results.append(result)
        results.append(anchor.result)
    finally:
        drainer.finish()
    control = ticket.control()
    try:
        status = control.request("job_status", job_id=ticket.job_id, token=ticket.token)
        control.request("close_job", job_id=ticket.job_id, token=ticket.token)
    finally:
        control.close()
    drained = host.StreamResult("sum", keys=drainer.keys, values=drainer.values)
    return host.merge_results([*results, drained], "sum"), status, results


def test_swaps_keep_results_exact_on_drifting_keys(switch: str) -> None:
    """Each flow has its own keys, more than the 8 K aggregators: once the copy holds only keys
    no flow hits any more, the control plane swaps copies, and the driver drains them while
    streaming goes on."""
    flows = [[(f"phase{p}-{j % 12_000}", 1) for j in range(36_000)] for p in range(8)]
    got, status, _ = _stream_flows_in_turn(switch, flows, pre_combine=False)
    assert got == reference([pair for pairs in flows for pair in pairs], "sum")
    assert status["swaps"] >= 1


def test_evictions_are_exact_through_loss_duplication_and_reordering(
    faulty_switch: str,
) -> None:
    """Flows whose keys partly recur: keys one finished flow alone sent are evicted, their
    entries come back in answers the network drops, duplicates and reorders, and replays of
    those answers carry the same evicted entries."""
    rng = random.Random(8)
    flows = [[(f"k{rng.randrange(p * 4000, p * 4000 + 30_000)}", 1) for _ in range(20_000)]
             for p in range(5)]  # fmt: skip
    got, status, results = _stream_flows_in_turn(faulty_switch, flows, pre_combine=True)
    assert got == reference([pair for pairs in flows for pair in pairs], "sum")
    assert status["counters"]["evicted"] > 0
    assert sum(r.exchange.retransmissions for r in results) > 0


SENDER = """
import pickle, sys
from inc_spark import host
ticket, partition, pairs = pickle.load(sys.stdin.buffer)
result = host.stream_pairs(ticket, pairs, partition=partition)
sys.stdout.buffer.write(pickle.dumps(result))
"""


def test_concurrent_senders_with_different_hash_seeds_meet_in_the_switch(switch: str) -> None:
    words = zipf_words(30_000, vocabulary=500, seed=4)
    parts = [words[i::3] for i in range(3)]
    ticket = host.open_job(switch, op="sum")
    procs = []
    for partition, part in enumerate(parts):
        env = {**os.environ, "PYTHONHASHSEED": str(101 + partition)}
        proc = subprocess.Popen(
            [sys.executable, "-c", SENDER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        proc.stdin.write(pickle.dumps((ticket, partition, [(w, 1) for w in part])))
        proc.stdin.close()
        procs.append(proc)
    results = [pickle.loads(p.stdout.read()) for p in procs]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    drainer = host.CopyDrainer(ticket)
    drainer.take(0)
    control = ticket.control()
    status = control.request("job_status", job_id=ticket.job_id, token=ticket.token)
    record = control.request("epoch_record", job_id=ticket.job_id, token=ticket.token, epoch=1)
    control.request("close_job", job_id=ticket.job_id, token=ticket.token)
    control.close()
    drained = host.StreamResult("sum", keys=drainer.keys, values=drainer.values)
    assert host.merge_results([*results, drained], "sum") == dict(Counter(words))
    assert sorted(f["partition"] for f in record["flows"]) == [0, 1, 2]
    counters = status["counters"]
    # Equal keys from all three processes met in the same aggregators: each key holds at most
    # one aggregator, and almost every tuple was absorbed (salted placement would give ~1/3).
    assert counters["drained_entries"] <= len(set(words))
    assert counters["absorbed"] / counters["tuples"] > 0.85


def test_a_flow_waits_for_a_flow_slot_then_streams_exactly() -> None:
    daemon = SwitchDaemon(Switch(rows=8, columns=64, max_flows=4), port=0).start()
    try:
        ticket = host.open_job("{}:{}".format(*daemon.address), op="sum")
        holders = [host.FlowStream(ticket, partition=p) for p in range(3)]  # the job's share
        counters = daemon.switch.control_plane.control_counters
        refused_before = counters["errors"]
        words = zipf_words(5_000, vocabulary=300, seed=9)
        streamed: list[host.StreamResult] = []
        waiter = threading.Thread(
            target=lambda: streamed.append(host.stream_pairs(ticket, [(w, 1) for w in words], 3))
        )
        waiter.start()
        gives_up_at = time.monotonic() + 30
        while counters["errors"] == refused_before:  # refused: no flow slot for it yet
            assert time.monotonic() < gives_up_at, "the fourth flow was never refused"
            time.sleep(0.01)
        assert waiter.is_alive()
        holders[0].__exit__(None, None, None)  # a finished task's flow frees a slot
        waiter.join(timeout=60)
        for holder in holders[1:]:
            holder.__exit__(None, None, None)
        drainer = host.CopyDrainer(ticket)
        drainer.take(0)
        control = ticket.control()
        control.request("close_job", job_id=ticket.job_id, token=ticket.token)
        control.close()
        drained = host.StreamResult("sum", keys=drainer.keys, values=drainer.values)
        assert host.merge_results([*streamed, drained], "sum") == dict(Counter(words))
    finally:
        daemon.stop()


COLD_SWITCH = """
import sys
from collections import Counter
from inc_spark import host
from switch_dataplane.daemon import SwitchDaemon
from switch_dataplane.daemon.switch import Switch
words = [str(i * 7919 % 5000) for i in range(200_000)]
daemon = SwitchDaemon(Switch(), port=0).start()  # its kernel still loading in a side thread
host_port = "%s:%d" % daemon.address
try:
    print(host.aggregate([(w, 1) for w in words], switch=host_port) == Counter(words))
finally:
    daemon.stop()
"""


def test_a_switch_streamed_to_before_its_kernel_has_loaded_is_exact() -> None:
    """A fresh process: control requests are answered while the compiled path loads, and the
    first data batches wait for it (numba's compiler lock) rather than racing it."""
    run = subprocess.run(
        [sys.executable, "-c", COLD_SWITCH], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "True"


def test_unreachable_switch_is_a_clear_error_in_bounded_time() -> None:
    started = time.monotonic()
    with pytest.raises(SwitchUnreachable, match="no answer from the switch"):
        host.aggregate([("a", 1)], switch="127.0.0.1:9", deadline_s=1.0)
    assert time.monotonic() - started < 10


# A small pool makes repeats (and Python-equal keys such as 1 and True) likely.
MERGE_KEYS = st.one_of(
    st.sampled_from([0, 1, True, False, -1, 2**70, "a", "", "é" * 9, b"a", None]),
    st.text(max_size=20),
    st.integers(-(2**70), 2**70),
    st.binary(max_size=20),
)


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(MERGE_KEYS, st.integers(-(2**40), 2**40)), max_size=200),
    senders=st.integers(1, 4),
    op=st.sampled_from(["sum", "min", "max"]),
    data=st.data(),
)
def test_merge_results_equals_a_plain_dict_merge(
    pairs: list, senders: int, op: str, data: st.DataObject
) -> None:
    """Pairs spread over senders, each either encoded or on the host path, merge exactly."""
    results = [host.StreamResult(op) for _ in range(senders)]
    encoded, fits = key_codec.encode_keys([k for k, _ in pairs]) if pairs else (None, None)
    for i, (key, value) in enumerate(pairs):
        result = results[data.draw(st.integers(0, senders - 1))]
        if fits[i] and data.draw(st.booleans()):
            result.add_encoded(encoded[i : i + 1], np.array([value], np.int64))
        else:
            result.add_host(key, value)
    assert host.merge_results([r.combined() for r in results], op) == reference(pairs, op)


@settings(max_examples=40, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(MERGE_KEYS, st.sampled_from([1, -1, 0, 7, 2**31 - 1, -(2**31), 2**40, True])),
        max_size=300,
    ),
    op=st.sampled_from(["sum", "count", "min", "max"]),
    pre_combine=st.booleans(),
    batch_tuples=st.integers(1, 12),
)
def test_any_stream_through_the_switch_is_exact(
    switch: str, pairs: list, op: str, pre_combine: bool, batch_tuples: int
) -> None:
    """Random keys and values, any batch size, with and without pre-combine."""
    got = host.aggregate(
        pairs, op=op, switch=switch, pre_combine=pre_combine, batch_tuples=batch_tuples
    )
    assert got == reference(pairs, op)
