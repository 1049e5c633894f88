"""The fixed hashes that place a key: subspace (row) and column, and the key's fingerprint.

The row hash is MurmurHash3_x86_32 of the 16 encoded key bytes, read as four little-endian u32
words: hosts use it to pick the slot (subspace), and every process must agree on it. Never
Python's salted ``hash()``.

The column hash is the switch's own business (hosts never compute it): a 64-bit multiply-xorshift
mix of the key's two little-endian halves, masked by the switch to the job's power-of-two
region. It costs about a tenth of the instructions of Murmur3, which is most of the kernel's
per-tuple work; a P4 port would use a CRC-32 hash unit instead (docs/hardware-model.md). The
upper half of the same 64-bit mix is the key's *fingerprint*, which the switch keeps beside each
aggregator to tell a hit from another key in one 32-bit compare (a second CRC on a Tofino).

Each hash has a plain-Python reference (``murmur3_key``, ``column_hash_key``,
``fingerprint_key``) and a compiled twin over key words (``murmur3_words``, ``key_mix_words``:
column hash and fingerprint); ``murmur3_keys`` is the vectorised row hash for the host packer.
Tests check that they agree.

>>> murmur3_key(bytes(16), ROW_SEED) == int(murmur3_keys(np.zeros((1, 16), np.uint8), ROW_SEED)[0])
True
>>> column_hash_key(bytes(16), COLUMN_SEED) == column_hash_words(0, 0, 0, 0, COLUMN_SEED)
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
_M64 = 0xFFFFFFFFFFFFFFFF
_MIX_LO = 0x9E3779B97F4A7C15
_MIX_HI = 0xC2B2AE3D27D4EB4F
_MIX_OUT = 0xBF58476D1CE4E5B9


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


def column_hash_key(key: bytes, seed: int) -> int:
    """The switch's column hash of a 16-byte key (plain Python reference)."""
    return _mix_key(key, seed) & _M32


def fingerprint_key(key: bytes, seed: int) -> int:
    """The switch's 32-bit fingerprint of a 16-byte key (plain Python reference)."""
    return _mix_key(key, seed) >> 32


def _mix_key(key: bytes, seed: int) -> int:
    if len(key) != 16:
        raise ValueError("keys are exactly 16 bytes")
    lo = int.from_bytes(key[:8], "little")
    hi = int.from_bytes(key[8:], "little")
    x = ((lo ^ seed) * _MIX_LO) & _M64
    y = (hi * _MIX_HI) & _M64
    x ^= ((y << 31) | (y >> 33)) & _M64
    x ^= x >> 29
    x = (x * _MIX_OUT) & _M64
    x ^= x >> 32
    return x


@numba.njit(inline="always", cache=True)
def column_hash_words(w0: np.uint32, w1: np.uint32, w2: np.uint32, w3: np.uint32, seed: int) -> int:
    """The switch's column hash of four little-endian key words (compiled)."""
    return int(key_mix_words(w0, w1, w2, w3, seed) & np.uint64(_M32))


@numba.njit(inline="always", cache=True)
def key_mix_words(
    w0: np.uint32, w1: np.uint32, w2: np.uint32, w3: np.uint32, seed: int
) -> np.uint64:
    """The 64-bit mix of four little-endian key words: the column hash in its lower half, the
    fingerprint in its upper half (compiled, for the kernel)."""
    lo = np.uint64(w0) | (np.uint64(w1) << np.uint64(32))
    hi = np.uint64(w2) | (np.uint64(w3) << np.uint64(32))
    x = (lo ^ np.uint64(seed)) * np.uint64(_MIX_LO)
    y = hi * np.uint64(_MIX_HI)
    x ^= (y << np.uint64(31)) | (y >> np.uint64(33))
    x ^= x >> np.uint64(29)
    x *= np.uint64(_MIX_OUT)
    x ^= x >> np.uint64(32)
    return x
