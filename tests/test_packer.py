"""The host packer against plain Python: pre-combine and the per-subspace packet layout."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inc_spark.host.packer import Combiner, combine, pack
from switch_dataplane import wire
from switch_dataplane.key_hash import ROW_SEED, murmur3_key

#: Few distinct keys, so batches repeat keys and subspaces fill unevenly.
key_ids = st.lists(st.integers(0, 40), max_size=300)


def _keys(ids: list[int]) -> np.ndarray:
    keys = np.zeros((len(ids), wire.KEY_BYTES), np.uint8)
    keys[:, :4] = np.array(ids, "<u4").view(np.uint8).reshape(-1, 4)
    keys[:, 4] = 0x77
    return keys


@settings(max_examples=200, deadline=None)
@given(ids=key_ids, data=st.data(), agg=st.sampled_from(["sum", "min", "max"]))
def test_combine_merges_equal_keys_like_python(ids: list[int], data, agg: str) -> None:
    values = data.draw(
        st.lists(st.integers(-(2**31), 2**31 - 1), min_size=len(ids), max_size=len(ids))
    )
    expected: dict[int, int] = {}
    merge = {"sum": lambda a, b: a + b, "min": min, "max": max}[agg]
    for k, v in zip(ids, values, strict=True):
        expected[k] = merge(expected[k], v) if k in expected else v
    keys, combined = combine(_keys(ids), np.array(values, np.int64), agg)
    got = dict(zip(keys[:, :4].copy().view("<u4").ravel().tolist(), combined.tolist(), strict=True))
    assert got == expected
    assert len(combined) == len(expected)


@settings(max_examples=200, deadline=None)
@given(
    batches=st.lists(key_ids, max_size=5),
    max_keys=st.integers(1, 50),
    agg=st.sampled_from(["sum", "min", "max"]),
)
def test_combiner_merges_a_partition_within_its_bound_hottest_first(
    batches: list[list[int]], max_keys: int, agg: str
) -> None:
    merge = {"sum": lambda a, b: a + b, "min": min, "max": max}[agg]
    combiner = Combiner(agg, max_keys=max_keys, capacity=1)
    handed: list[tuple[np.ndarray, np.ndarray]] = []
    value_of = {}  # a value per tuple, deterministic: its key and position
    for b, ids in enumerate(batches):
        values = [(k * 7919 + i * 31 + b) % 2001 - 1000 for i, k in enumerate(ids)]
        value_of[b] = values
        handed += combiner.add(_keys(ids), np.array(values, np.int64))
    handed.append(combiner.take())
    assert len(combiner) == 0
    got: dict[int, int] = {}
    for keys, values in handed:
        ids = keys[:, :4].copy().view("<u4").ravel().tolist()
        assert len(ids) == len(set(ids)) <= max_keys
        for k, v in zip(ids, values.tolist(), strict=True):
            got[k] = merge(got[k], v) if k in got else v
    expected: dict[int, int] = {}
    occurrences: dict[int, int] = defaultdict(int)
    for b, ids in enumerate(batches):
        for k, v in zip(ids, value_of[b], strict=True):
            expected[k] = merge(expected[k], v) if k in expected else v
            occurrences[k] += 1
    assert got == expected
    if len(expected) <= max_keys:  # one window: hottest first, ties in first-seen order
        ((keys, _values),) = handed
        ids = keys[:, :4].copy().view("<u4").ravel().tolist()
        first_seen = list(dict.fromkeys(k for ids_ in batches for k in ids_))
        assert ids == sorted(first_seen, key=lambda k: -occurrences[k])


@settings(max_examples=200, deadline=None)
@given(
    ids=key_ids,
    slots=st.sampled_from([1, 3, 8, 32, 64]),
    first_seq=st.integers(0, 2**32 - 2**12),
)
def test_packets_carry_each_tuple_once_in_its_subspace_in_order(
    ids: list[int], slots: int, first_seq: int
) -> None:
    keys = _keys(ids)
    values = np.arange(len(ids), dtype=np.int64) - 5  # tuple i carries value i - 5
    header = wire.new_header(wire.PacketType.DATA, job_id=3, token=9, epoch=2, flow_id=4)
    batch = pack(keys, values, slots, header, first_seq)
    queues: dict[int, list[int]] = defaultdict(list)  # subspace -> tuple indices, in batch order
    for i in range(len(ids)):
        queues[murmur3_key(keys[i].tobytes(), ROW_SEED) % slots].append(i)
    assert len(batch) == max((len(q) for q in queues.values()), default=0)
    assert batch.tuples == len(ids)
    for p in range(len(batch)):
        packet = batch.packet(p)
        assert len(packet) <= wire.MAX_UDP_PAYLOAD
        hdr, rows, body = wire.decode_packet(packet)
        assert (int(hdr["job_id"]), int(hdr["token"]), int(hdr["epoch"])) == (3, 9, 2)
        assert (int(hdr["flow_id"]), int(hdr["seq"])) == (4, first_seq + p)
        expected_rows = sorted(r for r, q in queues.items() if len(q) > p)
        assert rows.tolist() == expected_rows
        for row, slot in zip(rows.tolist(), body, strict=True):
            i = queues[row][p]
            assert slot["key"].tobytes() == keys[i].tobytes()
            assert int(slot["value"]) == i - 5
