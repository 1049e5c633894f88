"""Words exactly as Python's ``str.split()`` makes them, for Arrow, Spark SQL and Python alike.

A word is a maximal run of characters that are not whitespace, whitespace being exactly what
``str.isspace()`` says (29 code points, among them U+001C..U+001F and U+0085 that Java's and
RE2's ``\\s`` miss). Arrow's ``utf8_split_whitespace`` uses the same set (checked by the tests);
Spark SQL gets the set as an explicit character class, ``SPLIT_PATTERN``.

>>> import pyarrow as pa
>>> words(pa.array(["a b\\u2003c", "  ", "d\\x1ce"])).to_pylist()
['a', 'b', 'c', 'd', 'e']
"""

from __future__ import annotations

import codecs

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
