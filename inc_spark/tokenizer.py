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


def decode_utf8(data: bytes) -> str:
    """Bytes to text the way every mode reads input: invalid UTF-8 becomes U+FFFD."""
    return data.decode("utf-8", errors="replace")
