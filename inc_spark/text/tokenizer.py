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

from inc_spark.host import key_codec

#: Every code point for which ``str.isspace()`` is true (a test rescans all of Unicode; a scan
#: here would cost every Python worker 60 ms at import).
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

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


@numba.njit(inline="always", cache=True, nogil=True)
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


#: Byte classes for ``_line_spans``: 0 part of a word, 1 ASCII whitespace, 2 the lead byte of
#: a multi-byte character that may be whitespace (``_space_bytes`` decides).
_BYTE_CLASS = np.zeros(256, np.uint8)
_BYTE_CLASS[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20]] = 1
_BYTE_CLASS[[0xC2, 0xE1, 0xE2, 0xE3]] = 2


@numba.njit(inline="always", cache=True, nogil=True)
def _scan(data, i, n, starts, ends, count, cap, byte_class):  # pragma: no cover - compiled
    """Record the words of ``data[i:n]`` (``i`` outside any word) as entries ``count..`` of
    ``starts``/``ends``, stopping at ``n`` or once entry ``cap - 1`` is complete;
    -> (next i, count).

    Branch-free on the common path: every byte stores its offset as a candidate start and end,
    and the counters only move where a word starts or ends, so word boundaries (one every few
    bytes) cost no mispredicted branches. ``starts`` needs room for ``cap + 1`` entries.
    """
    n_starts = count
    n_ends = count
    in_word = 0
    while i < n and n_ends < cap:
        cls = byte_class[data[i]]
        space = cls & 1
        width = 1
        if cls == 2:
            width = _space_bytes(data, i, n)
            space = 1 if width else 0
            width = max(width, 1)
        starts[n_starts] = i
        ends[n_ends] = i
        n_starts += (1 - space) & (1 - in_word)
        n_ends += space & in_word
        in_word = 1 - space
        i += width
    if in_word:  # the text ends inside a word
        ends[n_ends] = n
    return i, n_starts


@numba.njit(cache=True, nogil=True)
def _line_spans(data, offsets, starts, ends, byte_class):  # pragma: no cover - compiled
    """Write the word spans of each line ``data[offsets[k]:offsets[k+1]]``; -> word count."""
    count = 0
    cap = starts.shape[0] - 1
    for line in range(offsets.shape[0] - 1):
        _, count = _scan(
            data, offsets[line], offsets[line + 1], starts, ends, count, cap, byte_class
        )
    return count


@numba.njit(cache=True, nogil=True)
def _next_words(data, i, starts, ends, byte_class):  # pragma: no cover - compiled
    return _scan(data, i, data.shape[0], starts, ends, 0, starts.shape[0] - 1, byte_class)


def line_word_spans(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the words of lines stored back to back (an Arrow string column's data
    and offsets), no word crossing a line end; one compiled pass.

    The outputs are sized for the worst case (a word every other byte, plus one a line); only
    the pages written are ever touched, so the real cost is two int64 per word.
    """
    offsets = np.asarray(offsets, np.int64)
    size = (offsets[-1] - offsets[0]) // 2 + len(offsets) + 1 if len(offsets) else 1
    starts = np.empty(size, np.int64)
    ends = np.empty(size, np.int64)
    count = _line_spans(data, offsets, starts, ends, _BYTE_CLASS)
    return starts[:count], ends[:count]


def word_spans(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) byte offsets of the words of a valid UTF-8 buffer, in one compiled pass."""
    return line_word_spans(data, np.array([0, len(data)], np.int64))


def next_words(data: np.ndarray, pos: int, starts: np.ndarray, ends: np.ndarray) -> tuple[int, int]:
    """Fill ``starts``/``ends`` with the next words of ``data`` from byte ``pos`` (a position
    outside any word); -> (words found, where to continue). At most ``len(starts) - 1`` words
    per call: two small reused buffers keep a whole split's spans out of memory (page faults on
    fresh memory cost more than finding the words).

    >>> data = utf8_text(b"ab cd  ef")
    >>> starts, ends = np.empty(3, np.int64), np.empty(3, np.int64)
    >>> next_words(data, 0, starts, ends), starts[:2].tolist(), ends[:2].tolist()
    ((2, 6), [0, 3], [2, 5])
    >>> next_words(data, 6, starts, ends), starts[:1].tolist(), ends[:1].tolist()
    ((1, 9), [7], [9])
    """
    pos, count = _next_words(data, pos, starts, ends, _BYTE_CLASS)
    return count, pos


@numba.njit(cache=True, nogil=True)
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


def word_keys(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, pa.StructArray | None]:
    """Slot keys of the words ``data[starts[i]:ends[i]]`` that fit one, and the words too long
    for a key counted (Arrow ``value_counts``: ``values``, ``counts``), or None if all fit.

    >>> data = utf8_text(("ab " + "x" * 20 + " ab " + "x" * 20).encode())
    >>> keys, long_words = word_keys(data, *word_spans(data))
    >>> len(keys), long_words.field("counts").to_pylist()
    (2, [2])
    """
    keys, too_long = key_codec.encode_utf8_spans(data, starts, ends)
    if not len(too_long):
        return keys, None
    return keys, pc.value_counts(span_strings(data, starts[too_long], ends[too_long]))


def utf8_text(data: bytes) -> np.ndarray:
    """The bytes as valid UTF-8 for ``word_spans``: as they are when valid (checked by Arrow,
    no copy), else decoded the JVM's way and encoded again (U+FFFD for what was invalid)."""
    offsets = pa.py_buffer(np.array([0, len(data)], np.int64))
    try:
        pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data)).validate(full=True)
    except pa.ArrowInvalid:
        data = decode_utf8(data).encode()
    return np.frombuffer(data, np.uint8)
