"""Buddy allocation of aggregator-array columns to jobs, in O(log columns) per call.

Regions are power-of-two sized and aligned to their size, so the dataplane computes a column as
``offset | (hash & (size - 1))``: a hash unit, an AND and an OR, no modulo (Tofino has none).
Free regions are kept per size (a heap of offsets, lowest first, plus a set for the buddy
merge); allocating splits the smallest free region that is large enough, freeing merges a region
with its free buddy, so no call scans the array (a full array must not cost the switch thread).

>>> regions = RegionAllocator(16)
>>> regions.allocate(8), regions.allocate(4), regions.allocate(8)
(0, 8, None)
>>> regions.largest_free()
4
"""

from __future__ import annotations

import heapq


class RegionAllocator:
    """Aligned power-of-two column ranges of a ``columns``-wide array."""

    def __init__(self, columns: int) -> None:
        if columns < 1 or columns & (columns - 1):
            raise ValueError(f"columns must be a power of two, got {columns}")
        self.columns = columns
        self.orders = columns.bit_length()  # sizes 1, 2, 4, ..., columns
        self.allocated: dict[int, int] = {}  # offset -> size
        self.allocated_columns = 0
        self._free: list[set[int]] = [set() for _ in range(self.orders)]  # order -> offsets
        self._heaps: list[list[int]] = [[] for _ in range(self.orders)]  # may hold stale ones
        self._add_free(self.orders - 1, 0)

    def _add_free(self, order: int, offset: int) -> None:
        self._free[order].add(offset)
        heap = self._heaps[order]
        heapq.heappush(heap, offset)
        if len(heap) > 2 * len(self._free[order]) + 8:  # mostly stale: rebuild (amortised)
            self._heaps[order] = sorted(self._free[order])

    def _pop_free(self, order: int) -> int | None:
        heap, free = self._heaps[order], self._free[order]
        while heap:
            offset = heapq.heappop(heap)
            if offset in free:  # else merged away since it was pushed
                free.discard(offset)
                return offset
        return None

    def allocate(self, size: int) -> int | None:
        """Offset of a newly allocated region of ``size`` columns, or None if none is free."""
        if size < 1 or size & (size - 1) or size > self.columns:
            raise ValueError(f"region size must be a power of two in 1..{self.columns}")
        want = size.bit_length() - 1
        for order in range(want, self.orders):
            offset = self._pop_free(order)
            if offset is None:
                continue
            while order > want:  # split: keep the lower half, free the upper one
                order -= 1
                self._add_free(order, offset + (1 << order))
            self.allocated[offset] = size
            self.allocated_columns += size
            return offset
        return None

    def largest_free(self) -> int:
        """Size of the largest region that ``allocate`` would grant now (0 if full)."""
        for order in range(self.orders - 1, -1, -1):
            if self._free[order]:
                return 1 << order
        return 0

    def free(self, offset: int) -> None:
        size = self.allocated.pop(offset)
        self.allocated_columns -= size
        order = size.bit_length() - 1
        while order < self.orders - 1:
            buddy = offset ^ (1 << order)
            if buddy not in self._free[order]:
                break
            self._free[order].discard(buddy)
            offset = min(offset, buddy)
            order += 1
        self._add_free(order, offset)
