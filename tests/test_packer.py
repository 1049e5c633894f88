"""The host packer against plain Python: pre-combine and the per-subspace packet layout."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inc_spark.host.packer import combine, pack
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
