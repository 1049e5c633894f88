"""bench/kv_bench.py's data generator, reference and checks (no Spark)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench import kv_bench
from bench.kv_bench import Dataset, Mismatch


def test_zipf_cdf_is_uniform_at_zero_and_skewed_above() -> None:
    assert np.allclose(kv_bench.zipf_cdf(4, 0.0), [0.25, 0.5, 0.75, 1.0])
    skewed = kv_bench.zipf_cdf(1000, 1.2)
    assert skewed[-1] == 1.0 and skewed[0] > 0.1 and (np.diff(skewed) > 0).all()


def test_str_keys_are_12_ascii_bytes_and_parse_back() -> None:
    ids = np.array([0, 42, 999_999, 10**11 - 1], np.int64)
    keys = kv_bench.str_keys(ids)
    assert keys.to_pylist() == ["k00000000000", "k00000000042", "k00000999999", "k99999999999"]
    assert kv_bench.key_ids(keys).tolist() == ids.tolist()
    assert kv_bench.key_ids(pa.array(ids)).tolist() == ids.tolist()


def test_files_are_reproducible_and_in_range() -> None:
    ds = Dataset(rows=10_001, keys=50, zipf=0.99, key_type="int", files=3, seed=7)
    assert sum(kv_bench.file_rows(ds, i) for i in range(ds.files)) == ds.rows
    cdf, perm = kv_bench.zipf_cdf(ds.keys, ds.zipf), kv_bench.rank_to_id(ds)
    ids, values = kv_bench.draw_file(ds, 1, cdf, perm)
    again = kv_bench.draw_file(ds, 1, cdf, perm)
    assert (ids == again[0]).all() and (values == again[1]).all()
    assert ids.min() >= 0 and ids.max() < ds.keys
    assert values.min() >= 1 and values.max() <= kv_bench.VALUE_MAX
    hottest = np.bincount(ids, minlength=ds.keys).argmax()
    assert hottest == perm[0]  # rank 0 is the hottest, under its permuted id


@pytest.mark.parametrize("key_type", ["int", "str"])
def test_reference_matches_the_files(tmp_path: Path, key_type: str) -> None:
    ds = Dataset(rows=5000, keys=300, zipf=1.2, key_type=key_type, files=4, seed=3)
    directory = ds.directory(tmp_path)
    ref = kv_bench.generate(ds, directory)
    sums: dict[int, int] = {}
    files: dict[int, int] = {}
    for path in sorted((directory / "parquet").glob("*.parquet")):
        table = pq.read_table(path)
        ids = kv_bench.key_ids(table.column("k"))
        for k, v in zip(ids.tolist(), table.column("v").to_pylist(), strict=True):
            sums[k] = sums.get(k, 0) + v
        for k in set(ids.tolist()):
            files[k] = files.get(k, 0) + 1
    assert ref.present.tolist() == sorted(sums)
    assert [ref.sums[k] for k in sorted(sums)] == [sums[k] for k in sorted(sums)]
    assert [ref.files[k] for k in sorted(files)] == [files[k] for k in sorted(files)]
    assert int(ref.counts.sum()) == ds.rows
    cached = kv_bench.generate(ds, directory)  # reused, not rewritten
    assert (cached.sums == ref.sums).all()
    figures = kv_bench.references(ds, ref)
    assert figures["distinct"] == len(sums)
    assert figures["combined"] == sum(files.values())
    assert figures["oracle"] == figures["distinct"]  # fewer keys than aggregators
    assert figures["distinct"] <= figures["slot_bound"] <= figures["combined"]


def test_check_accepts_the_reference_and_names_a_difference() -> None:
    ref = kv_bench.Reference(
        sums=np.array([5, 0, 7], np.int64),
        counts=np.array([2, 0, 1], np.int64),
        files=np.array([1, 0, 1], np.int64),
    )
    kv_bench.check("m", np.array([2, 0]), np.array([7, 5]), ref)
    with pytest.raises(Mismatch, match="1 keys differ; first: key id 2 sum 8"):
        kv_bench.check("m", np.array([2, 0]), np.array([8, 5]), ref)
    with pytest.raises(Mismatch, match="1 keys, expected 2"):
        kv_bench.check("m", np.array([0]), np.array([5]), ref)
    with pytest.raises(Mismatch):
        kv_bench.check("m", np.array([1, 0]), np.array([0, 5]), ref)
