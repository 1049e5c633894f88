"""Word counts as one Arrow table: the word count's output file and its top words, columnar.

Sorting 544 K words and formatting their lines in Python took 0.7-0.9 s, a sixth of the
fastest mode's job time; Arrow's sort and string kernels do the same in about 0.2 s. Arrow
compares strings byte by byte, and UTF-8 byte order is code point order, so the file is
sorted exactly as ``sorted()`` sorts Python strs.

>>> table = counts_table(["b", "a", "c"], [2, 5, 2])
>>> top_words(table, 2)
[('a', 5), ('b', 2)]
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

WRITE_ROWS = 1 << 20  # lines formatted at a time: bounds the memory they take
WORD = pa.large_string()  # 64-bit offsets: no 2 GiB limit on a column of words
ArrayLike = Sequence | pa.Array | pa.ChunkedArray


def counts_table(words: ArrayLike, counts: ArrayLike) -> pa.Table:
    """A ``(word: large_string, count: int64)`` table from Python sequences or Arrow arrays."""
    return pa.table({"word": _column(words, WORD), "count": _column(counts, pa.int64())})


def _column(values: ArrayLike, kind: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.cast(kind)
    return pa.array(values, kind)


def write_sorted(table: pa.Table, path: str) -> None:
    """Write one ``word<TAB>count`` line per row, UTF-8, sorted by word."""
    ordered = table.take(pc.sort_indices(table, [("word", "ascending")]))
    with open(path, "wb") as f:
        for start in range(0, ordered.num_rows, WRITE_ROWS):
            rows = ordered.slice(start, WRITE_ROWS)
            counts = pc.cast(rows.column("count"), WORD)
            lines = pc.binary_join_element_wise(rows.column("word"), counts, _text("\t"))
            lines = pc.binary_join_element_wise(lines, _text(""), _text("\n"))
            for chunk in lines.chunks:
                f.write(_string_bytes(chunk))


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, WORD)


def _string_bytes(array: pa.LargeStringArray) -> memoryview:
    """The concatenated UTF-8 of a string array without nulls, straight from its buffers."""
    _validity, offsets, data = array.buffers()
    bounds = memoryview(offsets).cast("q")
    return memoryview(data)[bounds[array.offset] : bounds[array.offset + len(array)]]


def top_words(table: pa.Table, n: int) -> list[tuple[str, int]]:
    """The ``n`` most frequent words, by count, ties by word."""
    if n <= 0 or not table.num_rows:
        return []
    keys = [("count", "descending"), ("word", "ascending")]
    top = table.take(pc.select_k_unstable(table, min(n, table.num_rows), keys))
    return list(zip(top.column("word").to_pylist(), top.column("count").to_pylist(), strict=True))


def total_words(table: pa.Table) -> int:
    """The sum of the counts, exact (an int64 sum would wrap silently)."""
    return int(pc.sum(table.column("count").cast(pa.decimal128(38, 0))).as_py() or 0)
