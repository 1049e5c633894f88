"""Turn batches of encoded (key, value) tuples into multi-tuple packets.

Two compiled steps, both O(n):

- ``Combiner``: merge tuples with equal keys across the batches of a partition (sum, min or
  max), in bounded memory, as Spark's map-side combine does, so a flow sends each key once and
  no more tuples than Spark's shuffle would write; the keys go out hottest first. The switch
  still does all cross-task aggregation. ``combine`` is the one-batch form.
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

from switch_dataplane import frame_check, wire
from switch_dataplane.key_hash import COLUMN_SEED, ROW_SEED, murmur3_keys, murmur3_words

COMBINE_CODES = {"sum": 0, "min": 1, "max": 2}
_HDR = wire.HEADER_BYTES
_SLOT = wire.SLOT_BYTES
_SEQ_AT = wire.FIELD_OFFSET["seq"]
_BITMAP_AT = wire.FIELD_OFFSET["bitmap"]


@numba.njit(cache=True, nogil=True)
def _combine_into(
    table: np.ndarray,
    words: np.ndarray,
    values: np.ndarray,
    counts: np.ndarray,
    n: int,
    new_words: np.ndarray,
    new_values: np.ndarray,
    start: int,
    code: int,
) -> tuple[int, int]:
    """Merge tuples ``start..`` of (new_words, new_values) into the first ``n`` entries, an
    open-addressing ``table`` (slot -> entry, -1 free) over them; ``counts`` counts the tuples
    merged into each entry. Stops when a new key finds the entries full. -> (n, next tuple)."""
    size = table.shape[0]
    for i in range(start, new_words.shape[0]):
        slot = murmur3_words(
            new_words[i, 0], new_words[i, 1], new_words[i, 2], new_words[i, 3], COLUMN_SEED
        ) & (size - 1)
        while True:
            j = table[slot]
            if j < 0:
                if n == values.shape[0]:
                    return n, i
                table[slot] = n
                words[n] = new_words[i]
                values[n] = new_values[i]
                counts[n] = 1
                n += 1
                break
            if (
                words[j, 0] == new_words[i, 0]
                and words[j, 1] == new_words[i, 1]
                and words[j, 2] == new_words[i, 2]
                and words[j, 3] == new_words[i, 3]
            ):
                if code == 0:
                    values[j] += new_values[i]
                elif code == 1:
                    values[j] = min(values[j], new_values[i])
                else:
                    values[j] = max(values[j], new_values[i])
                counts[j] += 1
                break
            slot = (slot + 1) & (size - 1)
    return n, new_words.shape[0]


@numba.njit(cache=True, nogil=True)
def _index(table: np.ndarray, words: np.ndarray, n: int) -> None:
    """Fill an empty ``table`` with entries ``0..n-1`` (after it grew)."""
    size = table.shape[0]
    for j in range(n):
        slot = murmur3_words(words[j, 0], words[j, 1], words[j, 2], words[j, 3], COLUMN_SEED) & (
            size - 1
        )
        while table[slot] >= 0:
            slot = (slot + 1) & (size - 1)
        table[slot] = j


FIRST_CAPACITY = 1 << 12  # entries a Combiner starts with; it doubles up to its max_keys


class Combiner:
    """Merges encoded tuples with equal keys across any number of batches (a whole partition,
    as Spark's map-side combine does), in at most ``max_keys`` distinct keys of memory.

    ``add`` returns the combined tuples whenever the key bound or the int64 safety bound on
    tuples is reached, and ``take`` what is left; both hand the keys back *hottest first*
    (most tuples merged, then first seen), so the keys that will hit the switch most claim its
    aggregators before cold ones. Values are int64 and callers keep each within int32.
    """

    MAX_TUPLES = 1 << 31  # sums of this many int32 values cannot overflow int64

    def __init__(self, agg: str, max_keys: int = 1 << 21, capacity: int = FIRST_CAPACITY) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys}")
        self.code = COMBINE_CODES[agg]
        self.max_keys = max_keys
        self.n = 0
        self._reset(min(max(1, capacity), max_keys))

    def _reset(self, capacity: int) -> None:
        self.n = 0
        self.tuples = 0
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        size = 1
        while size < 2 * capacity:
            size *= 2
        self.table = np.full(size, -1, np.int32)  # int32 halves its cache misses
        words = np.zeros((capacity, 4), np.uint32)
        values = np.zeros(capacity, np.int64)
        counts = np.zeros(capacity, np.int64)
        if self.n:
            words[: self.n] = self.words[: self.n]
            values[: self.n] = self.values[: self.n]
            counts[: self.n] = self.counts[: self.n]
            _index(self.table, words, self.n)
        self.words, self.values, self.counts = words, values, counts

    def __len__(self) -> int:
        return self.n

    def add(self, keys: np.ndarray, values: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Merge a batch; -> the batches handed back because a bound was reached (usually none)."""
        words = np.ascontiguousarray(keys, np.uint8).reshape(-1, wire.KEY_BYTES).view("<u4")
        values = np.asarray(values, np.int64)
        ready = []
        start = 0
        while start < len(values):
            if self.tuples >= self.MAX_TUPLES:
                ready.append(self.take())
            stop = min(len(values), start + self.MAX_TUPLES - self.tuples)
            self.n, done = _combine_into(
                self.table, self.words, self.values, self.counts, self.n,
                words[:stop], values[:stop], start, self.code,
            )  # fmt: skip
            self.tuples += done - start
            start = done
            if start < stop:  # entries full
                if len(self.values) < self.max_keys:
                    self._allocate(min(2 * len(self.values), self.max_keys))
                else:
                    ready.append(self.take())
        return ready

    def take(self, hot_first: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The combined (keys, values), hottest first unless ``hot_first`` is False (then in
        first-seen order); the combiner starts empty again."""
        n = self.n
        order = np.argsort(-self.counts[:n], kind="stable") if hot_first else slice(None)
        keys = self.words[:n][order].view(np.uint8).reshape(n, wire.KEY_BYTES)
        values = self.values[:n][order]
        self._reset(min(FIRST_CAPACITY, self.max_keys))
        return keys, values


def combine(keys: np.ndarray, values: np.ndarray, agg: str) -> tuple[np.ndarray, np.ndarray]:
    """Merge equal keys of a batch, in first-seen order; ``values`` are int64, each within
    int32, and sums of a batch stay in int64."""
    if len(values) >= Combiner.MAX_TUPLES:
        raise ValueError(f"combine takes fewer than 2**31 tuples at a time, got {len(values)}")
    combiner = Combiner(agg, max_keys=max(1, len(values)), capacity=len(values))
    combiner.add(keys, values)
    return combiner.take(hot_first=False)


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
    frame_check.seal_all(buf, offsets, lengths)
    return PacketBatch(buf, offsets, lengths, n)
