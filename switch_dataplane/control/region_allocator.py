"""Buddy-style allocation of aggregator-array columns to jobs.

Regions are power-of-two sized and aligned to their size, so the dataplane computes a column as
``offset | (hash & (size - 1))``: a hash unit, an AND and an OR, no modulo (Tofino has none).

>>> regions = RegionAllocator(16)
>>> regions.allocate(8), regions.allocate(4), regions.allocate(8)
(0, 8, None)
>>> regions.largest_free()
4
"""

from __future__ import annotations


class RegionAllocator:
    """Aligned power-of-two column ranges of a ``columns``-wide array."""

    def __init__(self, columns: int) -> None:
        if columns < 1 or columns & (columns - 1):
            raise ValueError(f"columns must be a power of two, got {columns}")
        self.columns = columns
        self.allocated: dict[int, int] = {}  # offset -> size

    def _is_free(self, offset: int, size: int) -> bool:
        return all(o + s <= offset or offset + size <= o for o, s in self.allocated.items())

    def allocate(self, size: int) -> int | None:
        """Offset of a newly allocated region of ``size`` columns, or None if none is free."""
        if size < 1 or size & (size - 1) or size > self.columns:
            raise ValueError(f"region size must be a power of two in 1..{self.columns}")
        for offset in range(0, self.columns, size):
            if self._is_free(offset, size):
                self.allocated[offset] = size
                return offset
        return None

    def largest_free(self) -> int:
        """Size of the largest region that ``allocate`` would grant now (0 if full)."""
        size = self.columns
        while size >= 1:
            if any(self._is_free(o, size) for o in range(0, self.columns, size)):
                return size
            size //= 2
        return 0

    def free(self, offset: int) -> None:
        del self.allocated[offset]
