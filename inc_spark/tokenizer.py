"""Words exactly as Python's ``str.split()`` makes them, for Arrow, Spark SQL and Python alike.

A word is a maximal run of characters that are not whitespace, whitespace being exactly what
``str.isspace()`` says (29 code points, among them U+001C..U+001F and U+0085 that Java's and
RE2's ``\\s`` miss). Arrow's ``utf8_split_whitespace`` uses the same set (checked by the tests);
Spark SQL gets the set as an explicit character class, ``SPLIT_PATTERN``.

>>> import pyarrow as pa
>>> words(pa.array(["a b\\u2003c", "  ", "d\\x1ce"])).to_pylist()
['a', 'b', 'c', 'd', 'e']
>>> data = utf8_text("a b\\u2003c d\\x1ce".encode())
>>> span_strings(data, *word_spans(data)).to_pylist()
['a', 'b', 'c', 'd', 'e']
"""

from __future__ import annotations

import codecs

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())

#: One or more whitespace characters; the same text is a valid RE2 (Arrow) and Java (Spark SQL)
#: regex, since both read ``\x{hhhh}`` as a code point.
SPLIT_PATTERN = "[" + "".join(f"\\x{{{ord(c):04x}}}" for c in WHITESPACE) + "]+"


def words(text: pa.Array | pa.ChunkedArray) -> pa.Array:
    """All words of a string array (lines or whole decoded splits), in order."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    pieces = pc.list_flatten(pc.utf8_split_whitespace(text))
    return pc.filter(pieces, pc.not_equal(pc.utf8_length(pieces), 0))


def _cont(b: int) -> bool:
    return b & 0xC0 == 0x80


def _java_malformed_end(data: bytes, s: int) -> int:
    """Where the JVM's UTF-8 decoder resumes after replacing the malformed input at ``s``.

    Java (``new String(bytes, UTF_8)``, Hadoop's ``Text``) and Python both turn exactly the
    ill-formed sequences into U+FFFD, but group the bytes differently: Java replaces an encoded
    surrogate (ED A0 80) with one U+FFFD where Python writes three, and a truncated sequence at
    the very end swallows the rest. This mirrors the JDK's rules; the tests compare it with the
    JVM on random bytes.
    """
    n = len(data)
    b1 = data[s]
    if 0xC2 <= b1 <= 0xDF:
        return s + 1 if s + 1 < n else n
    if 0xE0 <= b1 <= 0xEF:
        if s + 2 < n:
            b2, b3 = data[s + 1], data[s + 2]
            if (b1 == 0xE0 and b2 & 0xE0 == 0x80) or not _cont(b2):
                return s + 1
            return s + 2 if not _cont(b3) else s + 3
        if s + 1 < n and ((b1 == 0xE0 and data[s + 1] & 0xE0 == 0x80) or not _cont(data[s + 1])):
            return s + 1
        return n
    if 0xF0 <= b1 <= 0xF7:
        b2 = data[s + 1] if s + 1 < n else None
        bad_b2 = b2 is not None and (
            (b1 == 0xF0 and not 0x90 <= b2 <= 0xBF)
            or (b1 == 0xF4 and b2 & 0xF0 != 0x80)
            or not _cont(b2)
        )
        if s + 3 < n:
            if b1 > 0xF4 or bad_b2:
                return s + 1
            return s + 2 if not _cont(data[s + 2]) else s + 3
        if b1 > 0xF4 or bad_b2:
            return s + 1
        if s + 2 < n and not _cont(data[s + 2]):
            return s + 2
        return n
    return s + 1


def _java_replace(error: UnicodeDecodeError) -> tuple[str, int]:
    return "\ufffd", _java_malformed_end(error.object, error.start)


codecs.register_error("inc-spark-java-replace", _java_replace)


def decode_utf8(data: bytes) -> str:
    """Bytes to text exactly as Spark's text readers decode them (invalid UTF-8 -> U+FFFD)."""
    return data.decode("utf-8", errors="inc-spark-java-replace")


@numba.njit(inline="always", cache=True)
def _space_bytes(data: np.ndarray, i: int, n: int) -> int:
    """Length of the UTF-8 whitespace character at ``i``, 0 if it is not one (str.isspace())."""
    b = data[i]
    if 0x20 < b < 0x80:  # printable ASCII: the common case first
        return 0
    if b == 0x20 or 0x09 <= b <= 0x0D or 0x1C <= b <= 0x1F:
        return 1
    if b == 0xC2 and i + 1 < n and (data[i + 1] == 0x85 or data[i + 1] == 0xA0):
        return 2
    if b == 0xE1 and i + 2 < n and data[i + 1] == 0x9A and data[i + 2] == 0x80:
        return 3
    if b == 0xE2 and i + 2 < n:
        b1, b2 = data[i + 1], data[i + 2]
        if b1 == 0x80 and (b2 <= 0x8A or b2 == 0xA8 or b2 == 0xA9 or b2 == 0xAF) and b2 >= 0x80:
            return 3
        if b1 == 0x81 and b2 == 0x9F:
            return 3
    if b == 0xE3 and i + 2 < n and data[i + 1] == 0x80 and data[i + 2] == 0x80:
        return 3
    return 0


@numba.njit(cache=True)
def _line_spans(data, offsets, starts, ends):  # pragma: no cover - compiled
    """Write the word spans of each line ``data[offsets[k]:offsets[k+1]]``; -> word count."""
    count = 0
    for line in range(offsets.shape[0] - 1):
        i = offsets[line]
        n = offsets[line + 1]
        start = -1
        while i < n:
            space = _space_bytes(data, i, n)
            if space:
                if start >= 0:
                    starts[count] = start
                    ends[count] = i
                    count += 1
                    start = -1
                i += space
            else:
                if start < 0:
                    start = i
                i += 1
        if start >= 0:
            starts[count] = start
            ends[count] = n
            count += 1
    return count


def line_word_spans(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the words of lines stored back to back (an Arrow string column's data
    and offsets), no word crossing a line end; one compiled pass.

    The outputs are sized for the worst case (a word every other byte, plus one a line); only
    the pages written are ever touched, so the real cost is two int64 per word.
    """
    offsets = np.asarray(offsets, np.int64)
    size = (offsets[-1] - offsets[0]) // 2 + len(offsets) if len(offsets) else 0
    starts = np.empty(size, np.int64)
    ends = np.empty(size, np.int64)
    count = _line_spans(data, offsets, starts, ends)
    return starts[:count], ends[:count]


def word_spans(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) byte offsets of the words of a valid UTF-8 buffer, in one compiled pass."""
    return line_word_spans(data, np.array([0, len(data)], np.int64))


@numba.njit(cache=True)
def _gather(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple:  # pragma: no cover
    offsets = np.zeros(starts.shape[0] + 1, np.int64)
    for i in range(starts.shape[0]):
        offsets[i + 1] = offsets[i] + ends[i] - starts[i]
    out = np.empty(offsets[-1], np.uint8)
    for i in range(starts.shape[0]):
        out[offsets[i] : offsets[i + 1]] = data[starts[i] : ends[i]]
    return out, offsets


def span_strings(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """The spans of a valid UTF-8 buffer as an Arrow string array (for the few long words)."""
    out, offsets = _gather(data, starts, ends)
    return pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(out))


def utf8_text(data: bytes) -> np.ndarray:
    """The bytes as valid UTF-8 for ``word_spans``: as they are when valid (checked by Arrow,
    no copy), else decoded the JVM's way and encoded again (U+FFFD for what was invalid)."""
    offsets = pa.py_buffer(np.array([0, len(data)], np.int64))
    try:
        pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data)).validate(full=True)
    except pa.ArrowInvalid:
        data = decode_utf8(data).encode()
    return np.frombuffer(data, np.uint8)
