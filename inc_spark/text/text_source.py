"""Input splits of text files, read directly by Python workers (no JVM-to-Arrow hop).

The driver expands INPUT (a file, a directory or a glob) and cuts each file into byte ranges
that end just after a newline, so no line, and therefore no word, is cut in two. Workers read
their range with one ``read`` and decode it as every mode does (invalid UTF-8 -> U+FFFD).

>>> import tempfile, os
>>> d = tempfile.mkdtemp(); p = os.path.join(d, "t.txt")
>>> _ = open(p, "wb").write(b"one two\\nthree\\nfour five six\\n")
>>> splits = plan_splits([p], split_bytes=6)
>>> [read_split(s) for s in splits]
[b'one two\\n', b'three\\n', b'four five six\\n']
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

MAX_SPLIT_BYTES = 128 << 20  # Spark's spark.sql.files.maxPartitionBytes default
OPEN_COST_BYTES = 4 << 20  # Spark's spark.sql.files.openCostInBytes default
UTF8_BOM = b"\xef\xbb\xbf"
_SCAN = 1 << 16


@dataclass(frozen=True)
class Split:
    path: str
    start: int
    end: int


def input_files(spec: str) -> list[str]:
    """Files named by a path, a directory (its non-hidden files) or a glob; clear errors."""
    if os.path.isdir(spec):
        files = sorted(
            os.path.join(spec, f)
            for f in os.listdir(spec)
            if not f.startswith((".", "_")) and os.path.isfile(os.path.join(spec, f))
        )
    elif any(ch in spec for ch in "*?["):
        files = sorted(f for f in glob.glob(spec) if os.path.isfile(f))
    else:
        files = [spec]
    if not files:
        raise FileNotFoundError(f"input {spec!r} matches no files")
    for f in files:
        if not os.path.isfile(f):
            raise FileNotFoundError(f"input file {f!r} does not exist")
        if not os.access(f, os.R_OK):
            raise PermissionError(f"input file {f!r} is not readable")
    return files


def _next_line_start(f: object, position: int, size: int) -> int:
    """The offset just after the first newline at or after ``position - 1`` (or EOF)."""
    f.seek(position - 1)
    offset = position - 1
    while offset < size:
        chunk = f.read(_SCAN)
        if not chunk:
            break
        newline = chunk.find(b"\n")
        if newline >= 0:
            return offset + newline + 1
        offset += len(chunk)
    return size


def split_bytes_for(
    files: list[str],
    parallelism: int,
    max_bytes: int = MAX_SPLIT_BYTES,
    open_cost: int = OPEN_COST_BYTES,
) -> int:
    """The split size Spark's file sources pick (``FilePartition.maxSplitBytes``): the input
    spread over every task slot, each file counted with an opening cost, capped at
    ``max_bytes``. So this path gets the same number of tasks as ``spark.read.text``.

    >>> split_bytes_for([__file__], parallelism=2, max_bytes=1 << 27, open_cost=1 << 22) > 1 << 21
    True
    """
    total = sum(os.path.getsize(f) + open_cost for f in files)
    return min(max_bytes, max(open_cost, total // max(1, parallelism)))


def plan_splits(files: list[str], split_bytes: int) -> list[Split]:
    """Byte ranges of the files (from :func:`input_files`), each ending at a line end (or EOF)."""
    splits = []
    for path in files:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            start = 0
            while start < size:
                end = _next_line_start(f, min(size, start + split_bytes), size)
                splits.append(Split(path, start, end))
                start = end
    return splits


def read_split(split: Split) -> bytes:
    """The bytes of a split; like Hadoop's line reader (textFile, read.text), a UTF-8 byte
    order mark at the very start of a file is dropped, so every mode sees the same text. A BOM
    anywhere else is an ordinary character."""
    with open(split.path, "rb") as f:
        f.seek(split.start)
        data = f.read(split.end - split.start)
    if split.start == 0 and data.startswith(UTF8_BOM):
        return data[len(UTF8_BOM) :]
    return data
