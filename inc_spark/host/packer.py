"""Turn batches of encoded (key, value) tuples into multi-tuple packets.

Two compiled steps, both O(n):

- ``combine``: merge tuples with equal keys inside one batch (sum, min or max), so a skewed
  batch does not leave most slots of most packets empty. The switch still does all cross-batch
  and cross-task aggregation.
- ``pack``: the host-side reorder. A key's subspace (MurmurHash3 of its 16 bytes, ROW_SEED,
  modulo the slot count) fixes its slot; each subspace is a queue and packet j carries the j-th
  tuple of every queue that has one. Empty slots are left out and marked absent in the bitmap.

>>> import numpy as np
>>> keys = np.zeros((3, 16), np.uint8); keys[:, 0] = [0x41, 0x41, 0x42]
>>> k, v = combine(keys, np.array([1, 2, 5]), "sum")
>>> sorted(v.tolist())
[3, 5]
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from switch_dataplane import wire
from switch_dataplane.key_hash import COLUMN_SEED, ROW_SEED, murmur3_keys, murmur3_words

COMBINE_CODES = {"sum": 0, "min": 1, "max": 2}
_HDR = wire.HEADER_BYTES
_SLOT = wire.SLOT_BYTES
_SEQ_AT = wire.FIELD_OFFSET["seq"]
_BITMAP_AT = wire.FIELD_OFFSET["bitmap"]


@numba.njit(cache=True, nogil=True)
def _combine(words: np.ndarray, values: np.ndarray, code: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the first occurrence of each key and the combined value per such key."""
    n = words.shape[0]
    size = 1
    while size < 2 * n + 2:
        size *= 2
    table = np.full(size, -1, np.int32)  # slot -> output index; int32 halves its cache misses
    first = np.empty(n, np.int64)
    combined = np.empty(n, np.int64)
    count = 0
    for i in range(n):
        h = murmur3_words(words[i, 0], words[i, 1], words[i, 2], words[i, 3], COLUMN_SEED)
        slot = h & (size - 1)
        while True:
            j = table[slot]
            if j < 0:
                table[slot] = count
                first[count] = i
                combined[count] = values[i]
                count += 1
                break
            f = first[j]
            if (
                words[f, 0] == words[i, 0]
                and words[f, 1] == words[i, 1]
                and words[f, 2] == words[i, 2]
                and words[f, 3] == words[i, 3]
            ):
                if code == 0:
                    combined[j] += values[i]
                elif code == 1:
                    combined[j] = min(combined[j], values[i])
                else:
                    combined[j] = max(combined[j], values[i])
                break
            slot = (slot + 1) & (size - 1)
    return first[:count], combined[:count]


def combine(keys: np.ndarray, values: np.ndarray, agg: str) -> tuple[np.ndarray, np.ndarray]:
    """Merge equal keys of a batch; ``values`` are int64 and sums of a batch stay in int64.

    Callers keep each value within int32 and batches below 2**31 tuples, so no sum overflows.
    """
    if len(values) >= 2**31:
        raise ValueError(f"combine takes fewer than 2**31 tuples at a time, got {len(values)}")
    keys = np.ascontiguousarray(keys, np.uint8).reshape(-1, wire.KEY_BYTES)
    first, combined = _combine(keys.view("<u4"), np.asarray(values, np.int64), COMBINE_CODES[agg])
    return keys[first], combined


@dataclass
class PacketBatch:
    """Data packets in one flat buffer; packet i is ``buf[offsets[i]:offsets[i]+lengths[i]]``."""

    buf: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    tuples: int

    def __len__(self) -> int:
        return len(self.offsets)

    def packet(self, i: int) -> bytes:
        return self.buf[self.offsets[i] : self.offsets[i] + self.lengths[i]].tobytes()


@numba.njit(cache=True, nogil=True)
def _assemble(
    keys: np.ndarray,
    values: np.ndarray,
    rows: np.ndarray,
    slots: int,
    header: np.ndarray,
    first_seq: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Write packets: packet p carries the p-th tuple (in batch order) of every subspace.

    A counting sort by subspace, then one pass writing each packet's slots in row order.
    """
    n = rows.shape[0]
    row_count = np.zeros(slots, np.int64)
    for i in range(n):
        row_count[rows[i]] += 1
    row_start = np.zeros(slots, np.int64)
    for r in range(1, slots):
        row_start[r] = row_start[r - 1] + row_count[r - 1]
    by_row = np.empty(n, np.int64)
    filled = row_start.copy()
    for i in range(n):
        by_row[filled[rows[i]]] = i
        filled[rows[i]] += 1
    n_packets = row_count.max() if n else 0
    counts = np.zeros(n_packets, np.int64)
    for r in range(slots):
        counts[: row_count[r]] += 1
    lengths = _HDR + _SLOT * counts
    offsets = np.zeros(n_packets, np.int64)
    for p in range(1, n_packets):
        offsets[p] = offsets[p - 1] + lengths[p - 1]
    total = offsets[-1] + lengths[-1] if n_packets else 0
    buf = np.empty(total, np.uint8)
    for p in range(n_packets):
        off = offsets[p]
        buf[off : off + _HDR] = header
        seq = first_seq + p
        for b in range(4):
            buf[off + _SEQ_AT + b] = (seq >> (8 * (3 - b))) & 0xFF
        bitmap = np.uint64(0)
        pos = off + _HDR
        for r in range(slots):
            if row_count[r] <= p:
                continue
            i = by_row[row_start[r] + p]
            bitmap |= np.uint64(1) << np.uint64(r)
            buf[pos : pos + 16] = keys[i]
            v = values[i] & 0xFFFFFFFF
            for b in range(4):
                buf[pos + 16 + b] = (v >> (8 * (3 - b))) & 0xFF
            pos += _SLOT
        for b in range(8):
            shift = np.uint64(8 * (7 - b))
            buf[off + _BITMAP_AT + b] = np.uint8((bitmap >> shift) & np.uint64(0xFF))
    return buf, offsets, lengths


def subspaces(keys: np.ndarray, slots: int) -> np.ndarray:
    """The slot (subspace) of each encoded key: fixed, the same in every process."""
    return (murmur3_keys(keys, ROW_SEED) % np.uint32(slots)).astype(np.int64)


def pack(
    keys: np.ndarray, values: np.ndarray, slots: int, header: np.ndarray, first_seq: int
) -> PacketBatch:
    """Packets for the given tuples (values within int32), sequence numbers from ``first_seq``.

    ``header`` is a ``wire.HEADER_DTYPE`` record with the job, token, epoch and flow filled in.
    """
    n = len(values)
    if n == 0:
        return PacketBatch(np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64), 0)
    head = np.frombuffer(header.tobytes(), np.uint8)
    buf, offsets, lengths = _assemble(
        np.ascontiguousarray(keys, np.uint8),
        np.asarray(values, np.int64),
        subspaces(keys, slots),
        slots,
        head,
        first_seq,
    )
    return PacketBatch(buf, offsets, lengths, n)
