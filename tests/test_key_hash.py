"""The key hashes: the row hash is MurmurHash3_x86_32 in all three implementations; the column
hash's reference and compiled forms agree and spread real keys evenly over the columns."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch_dataplane import key_hash
from switch_dataplane.key_hash import (
    COLUMN_SEED,
    ROW_SEED,
    column_hash_key,
    column_hash_words,
    fingerprint_key,
    key_mix_words,
    murmur3_key,
    murmur3_keys,
    murmur3_words,
)

keys16 = st.binary(min_size=16, max_size=16)
seeds = st.sampled_from([ROW_SEED, COLUMN_SEED, 0]) | st.integers(0, 2**32 - 1)

# (key, seed, MurmurHash3_x86_32 unsigned), computed with the mmh3 library (mmh3.hash(key, seed,
# signed=False)), an independent C implementation of the reference algorithm.
KNOWN_VECTORS = [
    (b"abcdefghijklmnop", 0, 3881996781),
    (bytes(16), 0, 2167721464),
    (bytes(16), ROW_SEED, 630094693),
    (bytes(range(16)), COLUMN_SEED, 277096736),
    (b"\xff" * 16, 0xFFFFFFFF, 4076247548),
    (b"hello, world!!!!", 42, 2732510939),
]


def _words(key: bytes) -> list[int]:
    return [int.from_bytes(key[i : i + 4], "little") for i in range(0, 16, 4)]


@pytest.mark.parametrize(("key", "seed", "expected"), KNOWN_VECTORS)
def test_known_murmur3_vectors(key: bytes, seed: int, expected: int) -> None:
    assert murmur3_key(key, seed) == expected
    arr = np.frombuffer(key, np.uint8).reshape(1, 16)
    assert int(murmur3_keys(arr, seed)[0]) == expected
    assert murmur3_words(*[np.uint32(w) for w in _words(key)], seed) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(keys16, min_size=1, max_size=40), seeds)
def test_three_implementations_agree(keys: list[bytes], seed: int) -> None:
    expected = [murmur3_key(key, seed) for key in keys]
    arr = np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), 16)
    vectorised = murmur3_keys(arr, seed)
    assert vectorised.dtype == np.uint32
    assert vectorised.tolist() == expected
    for key, h in zip(keys, expected, strict=True):
        assert murmur3_words(*[np.uint32(w) for w in _words(key)], seed) == h
        assert 0 <= h < 2**32


@settings(max_examples=50, deadline=None)
@given(st.lists(keys16, min_size=2, max_size=10))
def test_vectorised_accepts_non_contiguous_input(keys: list[bytes]) -> None:
    """A column slice of a wider array (the packer's slot records) hashes like the keys alone."""
    wide = np.zeros((len(keys), 20), np.uint8)
    wide[:, 2:18] = np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), 16)
    view = wide[:, 2:18]
    assert not view.flags["C_CONTIGUOUS"]
    assert murmur3_keys(view, ROW_SEED).tolist() == [murmur3_key(k, ROW_SEED) for k in keys]


@settings(max_examples=300, deadline=None)
@given(st.lists(keys16, min_size=1, max_size=40), seeds)
def test_column_hash_reference_and_compiled_agree(keys: list[bytes], seed: int) -> None:
    for key in keys:
        h = column_hash_key(key, seed)
        words = [np.uint32(w) for w in _words(key)]
        assert column_hash_words(*words, seed) == h
        assert 0 <= h < 2**32
        assert int(key_mix_words(*words, seed)) == fingerprint_key(key, seed) << 32 | h


@pytest.mark.parametrize("columns", [64, 4096])
def test_column_hash_spreads_similar_keys_evenly(columns: int) -> None:
    """Encoded words that differ in one byte, or only in their second half, fill the columns as
    a random assignment would: count spread within 0.75-1.3x the binomial one, no column empty."""
    from inc_spark.host.key_codec import encode_key

    words = [f"w{i}" for i in range(40 * columns)] + [f"{'x' * 9}{i:06d}" for i in range(columns)]
    counts = np.bincount(
        [column_hash_key(encode_key(w), COLUMN_SEED) & (columns - 1) for w in words],
        minlength=columns,
    )
    share = len(words) / columns
    assert 0.75 < counts.std() / np.sqrt(share) < 1.3
    assert counts.min() > 0


def test_seeds_differ_and_matter() -> None:
    assert ROW_SEED != COLUMN_SEED
    key = b"row and column!!"
    assert murmur3_key(key, ROW_SEED) != murmur3_key(key, COLUMN_SEED)
    assert column_hash_key(key, ROW_SEED) != column_hash_key(key, COLUMN_SEED)


def test_empty_batch() -> None:
    assert murmur3_keys(np.zeros((0, 16), np.uint8), ROW_SEED).shape == (0,)


@pytest.mark.parametrize("length", [0, 15, 17, 32])
def test_reference_rejects_other_lengths(length: int) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        murmur3_key(bytes(length), 0)
    with pytest.raises(ValueError, match="16 bytes"):
        column_hash_key(bytes(length), 0)


def test_module_doctest() -> None:
    result = doctest.testmod(key_hash)
    assert result.attempted > 0
    assert result.failed == 0
