"""Input splits of text files, read directly by Python workers (no JVM-to-Arrow hop).

The driver expands INPUT (a file, a directory or a glob) and cuts each file into byte ranges
that end just after a newline, so no line, and therefore no word, is cut in two. Workers read
their range with one ``read`` and decode it as every mode does (invalid UTF-8 -> U+FFFD).

Files are read through ``pyarrow.fs``, so INPUT may be what Spark would be given: a local path
(relative to the working directory) or a URI of any filesystem pyarrow can open here
(``file://``, ``s3://`` or Spark's ``s3a://``, ``gs://``, ``abfs://``, ``hdfs://`` where
libhdfs is installed).
Splits carry that path or URI, and each worker opens it again itself. Where pyarrow cannot
open an input, :class:`InputNotReadable` says so and names ``--mode inc-df``, which reads
through Spark's own file sources.

>>> import tempfile, os
>>> d = tempfile.mkdtemp(); p = os.path.join(d, "t.txt")
>>> _ = open(p, "wb").write(b"one two\\nthree\\nfour five six\\n")
>>> splits = plan_splits([p], split_bytes=6)
>>> [read_split(s) for s in splits]
[b'one two\\n', b'three\\n', b'four five six\\n']
>>> [read_split(s) for s in plan_splits(input_files("file://" + d), split_bytes=6)] == [
...     read_split(s) for s in splits]
True
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

import pyarrow as pa
from pyarrow.fs import FileInfo, FileSelector, FileSystem, FileType, LocalFileSystem

MAX_SPLIT_BYTES = 128 << 20  # Spark's spark.sql.files.maxPartitionBytes default
OPEN_COST_BYTES = 4 << 20  # Spark's spark.sql.files.openCostInBytes default
UTF8_BOM = b"\xef\xbb\xbf"
_SCAN = 1 << 16
_LOCAL = LocalFileSystem()
# scheme ":" with an optional "//authority"; two letters at least, so "C:/x" stays a path
_URI_ROOT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:(//[^/?#]*)?(?=/|$)")
_HADOOP_SCHEMES = {"s3a": "s3", "s3n": "s3"}
_ALTERNATIVES = re.compile(r"\{[^}]*,[^}]*\}")  # Hadoop's {a,b}, which fnmatch lacks


class InputNotReadable(OSError):
    """pyarrow cannot read this input here (no such filesystem, no libhdfs, refused...);
    Spark's own file sources may still read it."""


@dataclass(frozen=True)
class Split:
    path: str  # a local path or a URI, as listed by input_files: each worker resolves it
    start: int
    end: int


class InputFile(str):
    """A file of the input: its path or URI, as Spark would be given it, and what the driver's
    listing learnt of it (filesystem, path there, size), so planning does not ask again."""

    filesystem: FileSystem
    fs_path: str
    size: int

    def __new__(cls, name: str, filesystem: FileSystem, info: FileInfo) -> InputFile:
        file = super().__new__(cls, name)
        file.filesystem, file.fs_path, file.size = filesystem, info.path, info.size
        return file

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        """Pickled as the plain path or URI: what the listing learnt stays on the driver."""
        return str, (str(self),)


def _unreadable(spec: str, cause: BaseException | str) -> InputNotReadable:
    reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    return InputNotReadable(
        f"cannot read input {spec!r} with pyarrow: {reason}; "
        "--mode inc-df reads it through Spark's own file sources"
    )


def pyarrow_uri(uri: str) -> str:
    """The URI pyarrow opens for one Spark is given: Hadoop's S3 connectors (``s3a://``,
    ``s3n://``) name the same objects as pyarrow's ``s3://``.

    >>> pyarrow_uri("s3a://bucket/logs/day=1/part-0.txt")
    's3://bucket/logs/day=1/part-0.txt'
    """
    scheme, sep, rest = uri.partition("://")
    return f"{_HADOOP_SCHEMES.get(scheme.lower(), scheme)}{sep}{rest}"


@functools.lru_cache(maxsize=64)
def _from_uri(uri: str) -> tuple[FileSystem, str]:
    """pyarrow's filesystem for a URI, once per process: every split of a file reuses it (an
    S3 filesystem looks its bucket's region up, an HDFS one connects)."""
    try:
        return FileSystem.from_uri(pyarrow_uri(uri))
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(uri, exc) from exc


def _resolve(path: str, filesystem: FileSystem | None) -> tuple[FileSystem, str]:
    """The filesystem and path there of a local path, a URI or a path in ``filesystem``."""
    if filesystem is not None:
        return filesystem, path
    if _URI_ROOT.match(path):
        return _from_uri(path)
    return _LOCAL, os.path.abspath(path)


def _visible(name: str) -> bool:
    """Spark's file index skips names starting with "." or "_" (_SUCCESS, .crc files...)."""
    return not name.startswith((".", "_"))


def input_files(spec: str, filesystem: FileSystem | None = None) -> list[InputFile]:
    """The files named by ``spec``, sorted: a file; a directory (its visible files, not its
    subdirectories); or a glob, with ``*``, ``?`` and ``[...]`` in any path component (its
    visible matches; a matching directory gives its visible files, as Spark reads it). In a
    URI, ``?`` starts pyarrow's options (``?region=...``), so is no wildcard. ``spec`` is a
    local path or a URI, or a path in ``filesystem`` when given.

    Raises FileNotFoundError (no such file, no match), PermissionError (a local file that is
    not readable) and InputNotReadable (pyarrow cannot read it here; names ``--mode inc-df``).
    """
    try:
        files = _expand(spec, filesystem)
    except (FileNotFoundError, PermissionError, InputNotReadable):
        raise
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(spec, exc) from exc
    if not files:
        raise FileNotFoundError(f"input {spec!r} matches no files")
    for file in files:
        if isinstance(file.filesystem, LocalFileSystem) and not os.access(file.fs_path, os.R_OK):
            raise PermissionError(f"input file {file!r} is not readable")
    return sorted(files)


def _expand(spec: str, filesystem: FileSystem | None) -> list[InputFile]:
    base, patterns, uri = _pattern(spec, filesystem)
    fs, fs_path = _resolve(base, filesystem)
    found = [(base, fs.get_file_info(fs_path))]
    if found[0][1].type == FileType.NotFound and not patterns:
        raise FileNotFoundError(f"input file {spec!r} does not exist")
    for pattern in patterns:
        found = [
            (name, info)
            for parent in found
            if parent[1].type == FileType.Directory
            for name, info in _children(fs, *parent, uri)
            if fnmatch.fnmatchcase(info.base_name, pattern)
        ]
    files = []
    for name, info in found:
        listed = (
            _children(fs, name, info, uri) if info.type == FileType.Directory else [(name, info)]
        )
        files.extend(InputFile(n, fs, i) for n, i in listed if i.is_file)
    return files


def _pattern(spec: str, filesystem: FileSystem | None) -> tuple[str, list[str], bool]:
    """``spec``'s leading components without wildcards (a path or URI to look up), the glob
    patterns of the components after them, and whether ``spec`` is a URI. Only a URI's path
    can hold wildcards: not its authority, nor pyarrow's options after ``?``."""
    uri = _URI_ROOT.match(spec) if filesystem is None else None
    if uri:
        head = uri.group()
        path, mark, options = spec[uri.end() :].partition("?")
    else:
        head, mark, options = "", "", ""
        path = spec if filesystem is not None else os.path.abspath(spec)
    if _ALTERNATIVES.search(path):
        raise _unreadable(spec, "glob alternatives {a,b} are not supported here")
    magic = "*[" if uri else "*?["
    parts = path.split("/")
    literal = next((i for i, p in enumerate(parts) if any(c in p for c in magic)), len(parts))
    base = "/".join(parts[:literal]) or ("/" if filesystem is None else "")
    patterns = [unquote(p) if uri else p for p in parts[literal:]]
    return head + base + mark + options, patterns, bool(uri)


def _children(fs: FileSystem, name: str, info: FileInfo, uri: bool) -> list[tuple[str, FileInfo]]:
    """The visible entries of a directory, each named as the directory is: a child of a URI
    is a URI (its name percent-encoded, the options kept), else its path."""
    base, mark, options = name.partition("?")
    base += "" if base.endswith("/") else "/"
    return [
        (base + quote(child.base_name) + mark + options if uri else child.path, child)
        for child in fs.get_file_info(FileSelector(info.path))
        if _visible(child.base_name)
    ]


def _located(path: str, filesystem: FileSystem | None) -> tuple[FileSystem, str, int]:
    """Filesystem, path there and size of an input file: as listed, else asked for."""
    if isinstance(path, InputFile):
        return path.filesystem, path.fs_path, path.size
    fs, fs_path = _resolve(path, filesystem)
    info = fs.get_file_info(fs_path)
    if not info.is_file:
        problem = "does not exist" if info.type == FileType.NotFound else "is not a file"
        raise FileNotFoundError(f"input file {path!r} {problem}")
    return fs, fs_path, info.size


def file_size(path: str) -> int:
    """Size of an input file: as listed by :func:`input_files`, else asked for."""
    return _located(path, None)[2]


def _next_line_start(f: pa.NativeFile, position: int, size: int) -> int:
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
    total = sum(file_size(f) + open_cost for f in files)
    return min(max_bytes, max(open_cost, total // max(1, parallelism)))


def plan_splits(
    files: list[str], split_bytes: int, filesystem: FileSystem | None = None
) -> list[Split]:
    """Byte ranges of the files (from :func:`input_files`), each ending at a line end (or EOF).
    A file that fits in one split is not opened (many small files on S3 cost no requests)."""
    splits = []
    for path in files:
        fs, fs_path, size = _located(path, filesystem)
        if size <= split_bytes:
            splits.extend([Split(str(path), 0, size)] if size else [])
            continue
        with fs.open_input_file(fs_path) as f:
            start = 0
            while start < size:
                end = _next_line_start(f, min(size, start + split_bytes), size)
                splits.append(Split(str(path), start, end))
                start = end
    return splits


def read_split(split: Split, filesystem: FileSystem | None = None) -> bytes:
    """The bytes of a split; like Hadoop's line reader (textFile, read.text), a UTF-8 byte
    order mark at the very start of a file is dropped, so every mode sees the same text. A BOM
    anywhere else is an ordinary character."""
    fs, fs_path = _resolve(split.path, filesystem)
    with fs.open_input_file(fs_path) as f:
        f.seek(split.start)
        data = f.read(split.end - split.start)
    if split.start == 0 and data.startswith(UTF8_BOM):
        return data[len(UTF8_BOM) :]
    return data
