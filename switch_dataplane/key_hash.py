"""The fixed hashes that place a key: subspace (row) and column.

Both are MurmurHash3_x86_32 of the 16 encoded key bytes, read as four little-endian u32
words, with two different seeds. Hosts use the row hash to pick the slot (subspace); the switch
computes the column hash itself, as a Tofino hash unit would, and masks it to the job's
power-of-two region. Never Python's salted ``hash()``: every process must agree.

Three implementations of one function: ``murmur3_key`` (plain Python, the reference),
``murmur3_words`` (numba, inside the switch kernel) and ``murmur3_keys`` (numpy, vectorised for
the host packer). Tests check that they agree.

>>> murmur3_key(bytes(16), ROW_SEED) == int(murmur3_keys(np.zeros((1, 16), np.uint8), ROW_SEED)[0])
True
"""

from __future__ import annotations

import numba
import numpy as np

ROW_SEED = 0x5EED0001
COLUMN_SEED = 0x5EED0002

_C1 = 0xCC9E2D51
_C2 = 0x1B873593
_M32 = 0xFFFFFFFF


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def murmur3_key(key: bytes, seed: int) -> int:
    """MurmurHash3_x86_32 of a 16-byte key (plain Python reference)."""
    if len(key) != 16:
        raise ValueError("keys are exactly 16 bytes")
    h = seed & _M32
    for i in range(0, 16, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = _rotl32((k * _C1) & _M32, 15)
        k = (k * _C2) & _M32
        h = _rotl32(h ^ k, 13)
        h = (h * 5 + 0xE6546B64) & _M32
    h ^= 16
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    h ^= h >> 16
    return h


@numba.njit(inline="always", cache=True)
def _mix_block(h: np.uint64, k: np.uint64) -> np.uint64:
    k = (k * np.uint64(_C1)) & np.uint64(_M32)
    k = ((k << np.uint64(15)) | (k >> np.uint64(17))) & np.uint64(_M32)
    k = (k * np.uint64(_C2)) & np.uint64(_M32)
    h ^= k
    h = ((h << np.uint64(13)) | (h >> np.uint64(19))) & np.uint64(_M32)
    return (h * np.uint64(5) + np.uint64(0xE6546B64)) & np.uint64(_M32)


@numba.njit(inline="always", cache=True)
def murmur3_words(w0: np.uint32, w1: np.uint32, w2: np.uint32, w3: np.uint32, seed: int) -> int:
    """MurmurHash3_x86_32 of four little-endian key words (compiled, for the switch kernel)."""
    h = np.uint64(seed) & np.uint64(_M32)
    h = _mix_block(h, np.uint64(w0))
    h = _mix_block(h, np.uint64(w1))
    h = _mix_block(h, np.uint64(w2))
    h = _mix_block(h, np.uint64(w3))
    h ^= np.uint64(16)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & np.uint64(_M32)
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & np.uint64(_M32)
    h ^= h >> np.uint64(16)
    return int(h)


@numba.njit(cache=True, nogil=True)
def _murmur3_rows(words: np.ndarray, seed: int) -> np.ndarray:
    out = np.empty(words.shape[0], np.uint32)
    for i in range(words.shape[0]):
        out[i] = murmur3_words(words[i, 0], words[i, 1], words[i, 2], words[i, 3], seed)
    return out


def murmur3_keys(keys: np.ndarray, seed: int) -> np.ndarray:
    """Hashes of ``(n, 16)`` uint8 keys as a uint32 array (vectorised, for the host packer)."""
    keys = np.ascontiguousarray(keys, dtype=np.uint8).reshape(-1, 16)
    return _murmur3_rows(keys.view("<u4"), seed)
