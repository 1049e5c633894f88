"""Python keys <-> the 16-byte slot key (``wire.KEY_BYTES``): part of the wire contract.

Key equality is Python's ``==`` as ``reduceByKey`` sees it, and the encoding is consistent with
it: for two supported keys ``a`` and ``b``, ``encode_key(a) == encode_key(b)`` iff ``a == b``.
So ``1``, ``"1"`` and ``b"1"`` are three keys. Supported keys are objects of exactly these
types: ``str`` (UTF-8), ``bytes``, ``int``, ``None`` and ``tuple`` (possibly nested) of them,
whenever the encoding fits 16 bytes; a key decodes to an equal object of the same types. Anything
else returns ``None`` and takes the host path: bools and floats (``True == 1 == 1.0``: which of
them ``reduceByKey`` returns depends on the order it sees them, which the host-path final merge
keeps), subclasses (namedtuple, IntEnum, ``np.str_``), numpy scalars, too-long values, and strings
with lone surrogates.

Layout. Every value has a self-delimiting *compact* encoding: one tag byte, whose high nibble is
the type and low nibble ``L`` a length or count, followed by a payload. A slot key is the compact
encoding of the key, zero-padded to 16 bytes. Canonical: one key, one byte string (no other
padding, no non-minimal ints), so hashes of equal keys agree across hosts.

=========  =================  ==============================================================
type       tag byte           payload (``L`` = low nibble of the tag)
=========  =================  ==============================================================
``None``   ``0x10``           none
``int``    ``0x20 | L``       ``L`` in 1..15 bytes: the minimal two's-complement big-endian
                              form (``0`` is ``0x21 0x00``; ``-1`` is ``0x21 0xff``; ``128`` is
                              ``0x22 0x00 0x80``), so ints in ``[-2**119, 2**119)`` fit
``str``    ``0x40 | L``       ``L`` in 0..15 bytes of UTF-8
``bytes``  ``0x60 | L``       ``L`` in 0..15 raw bytes
``tuple``  ``0x80 | L``       ``L`` elements (0..15), each in its compact encoding, in order
=========  =================  ==============================================================

Tags ``0x00``, ``0x30``, ``0x50``, ``0x70`` and ``0x90``-``0xff`` are reserved. Byte 0 is never
zero, so an all-zero key (an empty aggregator) is never produced; the batch APIs leave the rows
of keys that do not fit all-zero, with ``fits`` False.

Batches of str (via pyarrow buffers), bytes and int64 keys are encoded without per-key Python:
one compiled (numba, cached like ``key_hash``) pass builds the rows. Other batches go key by key.

>>> encode_key("ab").hex()
'42616200000000000000000000000000'
>>> encode_key(1) != encode_key("1") != encode_key(b"1") and encode_key(True) is None
True
>>> encode_key((1, "a", None)).hex()
'83210141611000000000000000000000'
>>> decode_key(encode_key((-1, (b"x",))))
(-1, (b'x',))
>>> encode_key(1.0) is None and encode_key("x" * 16) is None and encode_key(2**119) is None
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import pyarrow as pa

from switch_dataplane.wire import KEY_BYTES

__all__ = [
    "MAX_PAYLOAD",
    "TAG_BYTES",
    "TAG_INT",
    "TAG_NONE",
    "TAG_STR",
    "TAG_TUPLE",
    "decode_key",
    "decode_keys",
    "encode_arrow_strings",
    "encode_key",
    "encode_keys",
]

TAG_NONE = 0x10
TAG_INT = 0x20
TAG_STR = 0x40
TAG_BYTES = 0x60
TAG_TUPLE = 0x80
MAX_PAYLOAD = KEY_BYTES - 1  # 15: the longest str/bytes/int payload of a top-level key

_ZERO_KEY = bytes(KEY_BYTES)
_NONE_KEY = bytes((TAG_NONE,)) + bytes(KEY_BYTES - 1)
_NoneType = type(None)


# ---------------------------------------------------------------------------------------------
# one key


def _compact(obj: object, out: bytearray) -> bool:
    """Append the compact encoding of ``obj`` to ``out``; False if unsupported or too long."""
    t = type(obj)
    if t is str:
        if len(obj) > MAX_PAYLOAD:  # type: ignore[arg-type]
            return False  # UTF-8 has at least one byte per character
        try:
            b = obj.encode()  # type: ignore[attr-defined]
        except UnicodeEncodeError:  # lone surrogates
            return False
        if len(b) > MAX_PAYLOAD:
            return False
        out.append(TAG_STR | len(b))
        out += b
    elif t is int:
        x = obj
        n = ((x if x >= 0 else ~x).bit_length() + 8) // 8  # minimal two's complement (sign bit)
        if n > MAX_PAYLOAD:
            return False
        out.append(TAG_INT | n)
        out += x.to_bytes(n, "big", signed=True)
    elif obj is None:
        out.append(TAG_NONE)
    elif t is bytes:
        if len(obj) > MAX_PAYLOAD:  # type: ignore[arg-type]
            return False
        out.append(TAG_BYTES | len(obj))  # type: ignore[arg-type]
        out += obj  # type: ignore[operator]
    elif t is tuple:
        if len(obj) > MAX_PAYLOAD:  # type: ignore[arg-type]
            return False
        out.append(TAG_TUPLE | len(obj))  # type: ignore[arg-type]
        if len(out) > KEY_BYTES:  # bounds the recursion on deeply nested tuples
            return False
        for item in obj:  # type: ignore[attr-defined]
            if not _compact(item, out) or len(out) > KEY_BYTES:
                return False
    else:
        return False
    return len(out) <= KEY_BYTES


def encode_key(obj: object) -> bytes | None:
    """The 16-byte slot key of ``obj``, or None if it takes the host path.

    >>> encode_key(-129).hex()
    '22ff7f00000000000000000000000000'
    >>> encode_key(None).hex()
    '10000000000000000000000000000000'
    >>> encode_key(((1,),)).hex()
    '81812101000000000000000000000000'
    >>> [encode_key(k) for k in (object(), "\\ud800", (1.5,), b"x" * 16)]
    [None, None, None, None]
    """
    t = type(obj)
    if t is str:  # the common case, without the general machinery
        if len(obj) > MAX_PAYLOAD:  # type: ignore[arg-type]
            return None
        try:
            b = obj.encode()  # type: ignore[attr-defined]
        except UnicodeEncodeError:
            return None
        n = len(b)
        if n > MAX_PAYLOAD:
            return None
        return bytes((TAG_STR | n,)) + b + bytes(MAX_PAYLOAD - n)
    out = bytearray()
    if not _compact(obj, out):
        return None
    return bytes(out) + bytes(KEY_BYTES - len(out))


def _parse(key: bytes, pos: int) -> tuple[object, int]:
    """Decode the compact value at ``key[pos:]``; returns (value, end position)."""
    if pos >= len(key):
        raise ValueError(f"key {key.hex()} ends inside a tuple")
    tag = key[pos]
    kind, n = tag & 0xF0, tag & 0x0F
    pos += 1
    if kind == TAG_TUPLE:
        items = []
        for _ in range(n):
            item, pos = _parse(key, pos)
            items.append(item)
        return tuple(items), pos
    if kind == TAG_NONE and n == 0:
        return None, pos
    if kind not in (TAG_INT, TAG_STR, TAG_BYTES):
        raise ValueError(f"key {key.hex()}: reserved tag 0x{tag:02x} at byte {pos - 1}")
    if pos + n > len(key):
        raise ValueError(f"key {key.hex()}: payload of tag 0x{tag:02x} runs past the end")
    payload = key[pos : pos + n]
    if kind == TAG_BYTES:
        return payload, pos + n
    if kind == TAG_STR:
        try:
            return payload.decode(), pos + n
        except UnicodeDecodeError as exc:
            raise ValueError(f"key {key.hex()}: str payload is not UTF-8") from exc
    x = int.from_bytes(payload, "big", signed=True)
    if n == 0 or n != ((x if x >= 0 else ~x).bit_length() + 8) // 8:
        raise ValueError(f"key {key.hex()}: int payload is not minimal two's complement")
    return x, pos + n


def decode_key(key: bytes | bytearray | memoryview | np.ndarray) -> object:
    """The Python key of a 16-byte slot key: equal to (not always identical to) the original.

    Tuples decode to tuples. Raises ValueError on a key this module cannot
    have produced (reserved tag, non-zero padding, non-minimal int, invalid UTF-8, all zeros).

    >>> decode_key(encode_key(("a", 1)))
    ('a', 1)
    >>> decode_key(bytes(16))
    Traceback (most recent call last):
    ...
    ValueError: key 00000000000000000000000000000000: reserved tag 0x00 at byte 0
    """
    raw = np.asarray(key, np.uint8).tobytes() if isinstance(key, np.ndarray) else bytes(key)
    if len(raw) != KEY_BYTES:
        raise ValueError(f"slot keys are {KEY_BYTES} bytes, got {len(raw)}")
    value, end = _parse(raw, 0)
    if any(raw[end:]):
        raise ValueError(f"key {raw.hex()}: non-zero bytes after the value")
    return value


# ---------------------------------------------------------------------------------------------
# vectorised builders


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, KEY_BYTES), np.uint8), np.zeros(0, bool)


@numba.njit(cache=True, nogil=True, inline="always")
def _put_span(keys, row, tag, data, start, n):  # pragma: no cover - compiled
    """Row ``tag | n`` and the n payload bytes; the row's padding is left as it is (zero)."""
    keys[row, 0] = tag | n
    for j in range(n):
        keys[row, 1 + j] = data[start + j]


@numba.njit(cache=True, nogil=True)
def _pack_spans_kernel(starts, ends, data, tag, valid, keys, fits):  # pragma: no cover - compiled
    for i in range(len(starts)):
        n = ends[i] - starts[i]
        if n <= MAX_PAYLOAD and valid[i]:
            _put_span(keys, i, tag, data, starts[i], n)
            fits[i] = True


def _pack_varlen(
    offsets: np.ndarray, data: np.ndarray, tag: int, valid: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``tag | len`` + payload for the variable-length values ``data[offsets[i]:...]``.

    ``offsets`` has n + 1 entries (int32 or int64, not necessarily starting at 0); ``valid``
    masks nulls (None = no nulls). Values longer than 15 bytes and nulls get ``fits`` False and
    an all-zero row. One compiled pass over the arrow buffers, no per-key Python.
    """
    n = len(offsets) - 1
    keys = np.zeros((n, KEY_BYTES), np.uint8)
    fits = np.zeros(n, bool)
    if valid is None:
        valid = np.ones(n, bool)
    offsets = offsets.astype(np.int64, copy=False)
    _pack_spans_kernel(offsets[:-1], offsets[1:], data, tag, valid, keys, fits)
    return keys, fits


@numba.njit(cache=True, nogil=True)
def _pack_fitting_spans_kernel(starts, ends, data, keys, too_long):  # pragma: no cover - compiled
    fitting = longs = 0
    for i in range(len(starts)):
        start = starts[i]
        n = ends[i] - start
        if n > MAX_PAYLOAD:
            too_long[longs] = i
            longs += 1
            continue
        _put_span(keys, fitting, TAG_STR, data, start, n)
        fitting += 1
    return fitting, longs


def encode_utf8_spans(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Keys of the str values ``data[starts[i]:ends[i]]`` of a valid UTF-8 buffer that fit a
    key, in order, and the indices of those that do not; one compiled pass, no masked copy.

    >>> data = np.frombuffer(("ab é " + "x" * 16).encode(), np.uint8)
    >>> rows, too_long = encode_utf8_spans(data, np.array([0, 3, 6]), np.array([2, 5, 22]))
    >>> rows[1].tobytes() == encode_key("é"), len(rows), too_long.tolist()
    (True, 2, [2])
    """
    n = len(starts)
    keys = np.zeros((n, KEY_BYTES), np.uint8)
    too_long = np.empty(n, np.int64)
    fitting, longs = _pack_fitting_spans_kernel(
        np.asarray(starts, np.int64), np.asarray(ends, np.int64), data, keys, too_long
    )
    return keys[:fitting], too_long[:longs]


def _pack_int64(values: np.ndarray) -> np.ndarray:
    """Rows for int64 values (all fit: at most 8 payload bytes)."""
    v = np.asarray(values, np.int64)
    mag = np.where(v < 0, ~v, v)  # >= 0; its bit length + 1 sign bit sets the byte count
    nbytes = np.ones(len(v), np.int64)
    for k in range(1, 8):
        nbytes += mag >= (1 << (8 * k - 1))
    shift = (8 * (8 - nbytes)).astype(np.uint64)
    payload = (v.view(np.uint64) << shift).astype(">u8").view(np.uint8).reshape(-1, 8)
    keys = np.zeros((len(v), KEY_BYTES), np.uint8)
    keys[:, 0] = TAG_INT | nbytes
    keys[:, 1:9] = payload
    return keys


def _encode_each(keys: Sequence) -> tuple[np.ndarray, np.ndarray]:
    encoded = [encode_key(k) for k in keys]
    fits = np.fromiter((e is not None for e in encoded), bool, len(encoded))
    buf = b"".join(_ZERO_KEY if e is None else e for e in encoded)
    rows = np.frombuffer(buf, np.uint8).reshape(-1, KEY_BYTES).copy()
    return rows, fits


@numba.njit(cache=True, nogil=True)
def _char_to_byte_offsets(utf8, offsets):  # pragma: no cover - compiled
    """Ascending character offsets into the UTF-8 text -> its byte offsets, in place."""
    k = 0
    chars = 0
    for i in range(len(utf8)):
        if (utf8[i] & 0xC0) != 0x80:  # a character starts here (not a continuation byte)
            while k < len(offsets) and offsets[k] == chars:
                offsets[k] = i
                k += 1
            chars += 1
    while k < len(offsets):
        offsets[k] = len(utf8)
        k += 1


def _encode_varlen(
    keys: Sequence, tag: int, with_none: bool
) -> tuple[np.ndarray, np.ndarray] | None:
    """All keys are str (``tag`` TAG_STR) or all bytes (TAG_BYTES), or None: their bytes and
    offsets in bulk, then one compiled pass; None if a str has a lone surrogate.

    Not through ``pa.array``: its first call imports pandas, 0.45 s in every fresh Spark worker.
    """
    empty = "" if tag == TAG_STR else b""
    valid = None
    if with_none:
        valid = np.array([k is not None for k in keys], bool)
        keys = [empty if k is None else k for k in keys]
    joined = empty.join(keys)
    try:
        data = joined.encode() if tag == TAG_STR else joined
    except UnicodeEncodeError:  # lone surrogates: per key
        return None
    offsets = np.zeros(len(keys) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, keys), np.int64, len(keys)), out=offsets[1:])
    payload = np.frombuffer(data, np.uint8)
    if len(data) != len(joined):  # str, not all ASCII: character offsets -> byte offsets
        _char_to_byte_offsets(payload, offsets)
    rows, fits = _pack_varlen(offsets, payload, tag, valid)
    return _none_rows(rows, fits, valid)


def encode_keys(keys: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Encode a batch: ``(keys (n, 16) uint8, fits (n,) bool)``; rows that do not fit are zero.

    Row ``i`` equals ``encode_key(keys[i])`` whenever that is not None. Vectorised (no
    per-key Python) when the keys are all ``str``, all ``bytes`` or all ``int`` within int64;
    ``None`` among str or bytes keys costs one list pass; other batches are encoded key by key.
    A pyarrow string/binary array is accepted too, its nulls being ``None`` keys.

    >>> rows, fits = encode_keys(["a", "é", "x" * 16])
    >>> fits.tolist(), rows[1].tobytes() == encode_key("é")
    ([True, True, False], True)
    >>> rows, fits = encode_keys([0, 1, -2**63])
    >>> [bytes(r[:4]).hex() for r in rows]
    ['21000000', '21010000', '28800000']
    """
    if isinstance(keys, (pa.Array, pa.ChunkedArray)):
        return encode_arrow_strings(keys, null_as_none=True)
    n = len(keys)
    if n == 0:
        return _empty()
    types = set(map(type, keys))
    result = None
    if types <= {str, _NoneType}:
        result = _encode_varlen(keys, TAG_STR, _NoneType in types)
    elif types <= {bytes, _NoneType}:
        result = _encode_varlen(keys, TAG_BYTES, _NoneType in types)
    elif types == {int}:
        try:
            values = np.fromiter(keys, np.int64, n)
        except OverflowError:  # beyond int64: per key
            pass
        else:
            result = _pack_int64(values), np.ones(n, bool)
    return result if result is not None else _encode_each(keys)


def _encode_arrow(array: pa.Array, tag: int, null_as_none: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows for a (large_)string or (large_)binary array, slice offset honoured."""
    offset_type = np.int64 if array.type in (pa.large_string(), pa.large_binary()) else np.int32
    _, offsets_buf, data_buf = array.buffers()
    n = len(array)
    if n == 0:
        return _empty()
    offsets = np.frombuffer(offsets_buf, offset_type)[array.offset : array.offset + n + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    valid = array.is_valid().to_numpy(zero_copy_only=False) if array.null_count else None
    keys, fits = _pack_varlen(offsets, data, tag, valid)
    return _none_rows(keys, fits, valid) if null_as_none else (keys, fits)


def _none_rows(
    keys: np.ndarray, fits: np.ndarray, valid: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The rows masked by ``valid`` become the ``None`` key (which fits)."""
    if valid is not None:
        keys[~valid] = np.frombuffer(_NONE_KEY, np.uint8)
        fits[~valid] = True
    return keys, fits


def encode_arrow_strings(
    array: pa.Array | pa.ChunkedArray, *, null_as_none: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Encode a pyarrow string column: ``(keys (n, 16) uint8, fits (n,) bool)``, vectorised.

    Accepts string, large_string, string_view and dictionary-of-string arrays (binary types
    too, encoded as ``bytes`` keys), sliced or chunked. Values over 15 UTF-8 bytes get ``fits``
    False. Nulls get ``fits`` False (host path) unless ``null_as_none``, which encodes them as
    the ``None`` key, as ``encode_keys`` does for Python lists.

    >>> keys, fits = encode_arrow_strings(pa.array(["q", None, "a" * 20, "b"]).slice(1))
    >>> fits.tolist(), keys[2].tobytes() == encode_key("b")
    ([False, False, True], True)
    """
    if isinstance(array, pa.ChunkedArray):
        parts = [encode_arrow_strings(c, null_as_none=null_as_none) for c in array.chunks]
        if not parts:
            return _empty()
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    t = array.type
    if pa.types.is_dictionary(t):
        values, value_fits = encode_arrow_strings(array.dictionary, null_as_none=null_as_none)
        indices = array.indices
        valid = indices.is_valid().to_numpy(zero_copy_only=False)
        idx = indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.intp)
        if len(values) == 0:  # every index is null
            values, value_fits = np.zeros((1, KEY_BYTES), np.uint8), np.zeros(1, bool)
        keys, fits = values[idx], value_fits[idx] & valid
        if null_as_none:
            return _none_rows(keys, fits, valid)
        keys[~valid] = 0
        return keys, fits
    if hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t):
        return _encode_arrow(array.cast(pa.large_string()), TAG_STR, null_as_none)
    if hasattr(pa.types, "is_binary_view") and pa.types.is_binary_view(t):
        return _encode_arrow(array.cast(pa.large_binary()), TAG_BYTES, null_as_none)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _encode_arrow(array, TAG_STR, null_as_none)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return _encode_arrow(array, TAG_BYTES, null_as_none)
    raise TypeError(f"encode_arrow_strings needs a string or binary array, got {t}")


# ---------------------------------------------------------------------------------------------
# decoding a batch


@numba.njit(cache=True, nogil=True)
def _unpack_varlen_kernel(rows, offsets, data):  # pragma: no cover - compiled
    """Concatenate the payloads of ``tag | len`` rows; False if any padding byte is non-zero."""
    pos = 0
    for i in range(rows.shape[0]):
        n = rows[i, 0] & 0x0F
        for j in range(n):
            data[pos + j] = rows[i, 1 + j]
        for j in range(n + 1, rows.shape[1]):
            if rows[i, j] != 0:
                return False
        pos += n
        offsets[i + 1] = pos
    return True


def _str_array(rows: np.ndarray) -> pa.LargeStringArray | None:
    """The str keys in ``rows`` (all tagged 0x4_) as Arrow strings, or None if any is malformed."""
    offsets = np.zeros(len(rows) + 1, np.int64)
    data = np.empty(len(rows) * MAX_PAYLOAD, np.uint8)
    if not _unpack_varlen_kernel(rows, offsets, data):
        return None
    array = pa.LargeStringArray.from_buffers(len(rows), pa.py_buffer(offsets), pa.py_buffer(data))
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        return None
    return array


def _decode_strs(rows: np.ndarray) -> list | None:
    array = _str_array(rows)
    return None if array is None else array.to_pylist()


def decode_str_keys(keys: np.ndarray) -> pa.LargeStringArray:
    """``(n, 16)`` uint8 keys that all hold a str, as an Arrow column: no Python object per key.

    >>> decode_str_keys(encode_keys(["a", "é"])[0]).to_pylist()
    ['a', 'é']
    """
    rows = np.ascontiguousarray(keys, np.uint8).reshape(-1, KEY_BYTES)
    array = _str_array(rows) if np.all((rows[:, 0] & 0xF0) == TAG_STR) else None
    if array is None:
        raise ValueError("decode_str_keys: a key is not a well-formed str key")
    return array


def _decode_small_ints(rows: np.ndarray) -> list | None:
    """The ints in ``rows`` (all tagged 0x21..0x28), or None if malformed."""
    nbytes = (rows[:, 0] & 0x0F).astype(np.int64)
    word = np.ascontiguousarray(rows[:, 1:9]).view(">i8").reshape(-1).astype(np.int64)
    values = word >> (8 * (8 - nbytes))
    if not np.array_equal(_pack_int64(values), rows):  # padding and minimality
        return None
    return values.tolist()


def decode_keys(keys: np.ndarray) -> list:
    """``[decode_key(k) for k in keys]`` for ``(n, 16)`` uint8 keys; str and small int keys
    are decoded vectorised. Raises ValueError on a malformed key.

    >>> rows, _ = encode_keys(["a", "bc", ""])
    >>> decode_keys(rows)
    ['a', 'bc', '']
    >>> decode_keys(np.concatenate([rows, encode_keys([7, (1, None)])[0]]))
    ['a', 'bc', '', 7, (1, None)]
    """
    rows = np.ascontiguousarray(keys, np.uint8).reshape(-1, KEY_BYTES)
    n = len(rows)
    out = np.empty(n, object)
    tags = rows[:, 0]
    done = np.zeros(n, bool)
    groups = (
        ((tags & 0xF0) == TAG_STR, _decode_strs),
        ((tags > TAG_INT) & (tags <= TAG_INT + 8), _decode_small_ints),
    )
    for select, decode in groups:
        idx = np.flatnonzero(select)
        if len(idx):
            values = decode(rows if len(idx) == n else rows[idx])
            if values is not None:  # else: left to decode_key, which names the problem
                if len(idx) == n:
                    return values
                out[idx] = np.fromiter(values, object, len(values))
                done[idx] = True
    for i in np.flatnonzero(~done).tolist():
        out[i] = decode_key(rows[i].tobytes())
    return out.tolist()


def encode_arrow_column(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Encode a DataFrame key column as Spark's groupBy sees it: nulls are one ``None`` key.

    String, binary and integer columns are vectorised; other types raise TypeError (callers
    run those through Spark's own aggregation).

    >>> rows, fits = encode_arrow_column(pa.array([3, None, -1]))
    >>> fits.tolist(), rows[1].tobytes() == encode_key(None), rows[2].tobytes() == encode_key(-1)
    ([True, True, True], True, True)
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = array.type
    if (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or (pa.types.is_large_binary(kind))
    ):
        return encode_arrow_strings(array, null_as_none=True)
    if pa.types.is_integer(kind) and kind != pa.uint64():
        values = array.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        valid = array.is_valid().to_numpy(zero_copy_only=False) if array.null_count else None
        return _none_rows(_pack_int64(values), np.ones(len(array), bool), valid)
    raise TypeError(f"key column type {kind} is not encoded for the switch")
