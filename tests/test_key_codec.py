"""The slot-key codec: round trip, consistency with ==, host-path cases, batch == per key."""

from __future__ import annotations

import doctest
import enum
from collections import namedtuple

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inc_spark.host import key_codec
from inc_spark.host.key_codec import (
    decode_key,
    decode_keys,
    encode_arrow_strings,
    encode_key,
    encode_keys,
)
from switch_dataplane.wire import KEY_BYTES

INT_LIMIT = 2**119  # ints in [-INT_LIMIT, INT_LIMIT) take at most 15 bytes

atoms = (
    st.none()
    | st.integers(-(2**70), 2**70)
    | st.integers(-300, 300)
    | st.text(max_size=6)
    | st.binary(max_size=6)
)
supported = st.recursive(atoms, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=6)
# Anything at all, supported or not, for the batch tests.
anything = st.recursive(
    atoms | st.floats(allow_nan=False) | st.text(min_size=14, max_size=20) | st.integers(),
    lambda inner: st.lists(inner, max_size=4).map(tuple),
    max_leaves=6,
)

# Keys around the equality edge cases the brief names.
EDGE = [
    0,
    1,
    -1,
    "1",
    b"1",
    "",
    b"",
    None,
    (),
    (1,),
    ((1,),),
    ((),),
    (None,),
    ("1",),
    (b"1",),
    (1, 2),
    ((1, 2),),
    (1, (2,)),
    "\x00",
    b"\x00",
    (0,),
    ("",),
    255,
    256,
    -128,
    -129,
    128,
]


def _size(key: object) -> float:
    """Bytes of the documented compact encoding (inf when a part cannot be encoded)."""
    if key is None:
        return 1
    if type(key) is int:
        return 1 + max(1, ((key if key >= 0 else ~key).bit_length() + 8) // 8)
    if type(key) is str:
        n = len(key.encode())
        return 1 + n if n <= 15 else float("inf")
    if type(key) is bytes:
        return 1 + len(key) if len(key) <= 15 else float("inf")
    assert type(key) is tuple
    return 1 + sum(_size(k) for k in key) if len(key) <= 15 else float("inf")


def _batch_matches(keys: list, rows: np.ndarray, fits: np.ndarray) -> None:
    assert rows.shape == (len(keys), KEY_BYTES) and rows.dtype == np.uint8
    assert fits.shape == (len(keys),) and fits.dtype == bool
    for key, row, fit in zip(keys, rows, fits, strict=True):
        expected = encode_key(key)
        assert fit == (expected is not None), key
        assert row.tobytes() == (expected if fit else bytes(KEY_BYTES)), key


def test_doctests() -> None:
    assert doctest.testmod(key_codec).failed == 0


# Golden vectors: the layout is a contract with hardware hosts, so pin it byte for byte.
GOLDEN = [
    (None, "10"),
    (0, "2100"),
    (1, "2101"),
    (-1, "21ff"),
    (127, "217f"),
    (128, "220080"),
    (-128, "2180"),
    (-129, "22ff7f"),
    (2**119 - 1, "2f7f" + "ff" * 14),
    (-(2**119), "2f80" + "00" * 14),
    ("", "40"),
    ("ab", "426162"),
    ("é", "42c3a9"),
    ("x" * 15, "4f" + "78" * 15),
    (b"", "60"),
    (b"\x00\x01", "620001"),
    ((), "80"),
    ((1, "a", None), "8321014161" + "10"),
    (((1,),), "81812101"),
    ((b"", ()), "826080"),
]


@pytest.mark.parametrize(("key", "hexed"), GOLDEN)
def test_golden_layout(key: object, hexed: str) -> None:
    encoded = encode_key(key)
    assert encoded == bytes.fromhex(hexed).ljust(KEY_BYTES, b"\0")
    assert decode_key(encoded) == key


@given(supported)
@settings(max_examples=500)
def test_round_trip(key: object) -> None:
    encoded = encode_key(key)
    assert (encoded is not None) == (_size(key) <= KEY_BYTES)
    if encoded is not None:
        assert len(encoded) == KEY_BYTES and encoded[0] != 0
        decoded = decode_key(encoded)
        assert decoded == key and type(decoded) is type(key)
        assert decode_key(np.frombuffer(encoded, np.uint8)) == key


def _consistent(a: object, b: object) -> None:
    ea, eb = encode_key(a), encode_key(b)
    if ea is not None and eb is not None:
        assert (ea == eb) == (a == b), (a, b)


@given(supported, supported)
@settings(max_examples=500)
def test_injective_and_consistent_with_eq(a: object, b: object) -> None:
    _consistent(a, b)


@given(st.sampled_from(EDGE), st.sampled_from(EDGE) | supported)
def test_edge_pairs(a: object, b: object) -> None:
    _consistent(a, b)


def test_edge_cases_all_encode_and_the_equal_ones_share_a_key() -> None:
    encoded = {}
    for key in EDGE:
        assert encode_key(key) is not None, key
        encoded.setdefault(encode_key(key), []).append(key)
    groups = sorted(sorted(map(repr, g)) for g in encoded.values() if len(g) > 1)
    assert groups == []


def test_bools_take_the_host_path() -> None:
    """``True == 1``, but which of them reduceByKey keeps depends on the order it sees them:
    a bool never travels, so the host-path merge keeps vanilla's order."""
    assert [encode_key(k) for k in (True, False, (1, True), ("a", (False,)))] == [None] * 4
    rows, fits = encode_keys([1, True, 0, False])
    assert fits.tolist() == [True, False, True, False]
    assert rows[0].tobytes() == encode_key(1) and not rows[1].any()


def _nested(depth: int) -> object:
    key: object = None
    for _ in range(depth):
        key = (key,)
    return key


class Color(enum.IntEnum):
    RED = 1


Point = namedtuple("Point", "x y")


@pytest.mark.parametrize(
    "key",
    [
        1.0,
        0.5,
        float("nan"),
        object(),
        "x" * 16,
        "é" * 8,  # 16 UTF-8 bytes
        "\ud800",
        "a\udfffb",
        b"x" * 16,
        2**119,
        -(2**119) - 1,
        2**1000,
        (1.0,),
        ("x" * 15,),  # 17 bytes with the tuple and str tags
        (1,) * 8,  # 1 + 8 * 2 = 17 bytes
        tuple([None] * 16),
        _nested(16),  # 16 tuple tags + None: 17 bytes
        frozenset(),
        Color.RED,
        Point(1, 2),
        np.int64(1),
        np.str_("a"),
        complex(1, 0),
    ],
)
def test_unsupported_keys_take_the_host_path(key: object) -> None:
    assert encode_key(key) is None
    rows, fits = encode_keys([key])
    assert not fits[0] and not rows.any()


def test_deep_nesting_is_rejected_without_recursing() -> None:
    assert encode_key(_nested(15)) is not None
    assert encode_key(_nested(100_000)) is None


@pytest.mark.parametrize(
    "raw",
    [
        bytes(16),
        b"\x30" + bytes(15),  # reserved tag
        b"\x11" + bytes(15),  # None with a length
        b"\x20" + bytes(15),  # int of 0 bytes
        b"\x22\x00\x01" + bytes(13),  # non-minimal int
        b"\x22\xff\xff" + bytes(13),  # non-minimal negative int
        b"\x41a\x01" + bytes(13),  # non-zero padding
        b"\x42\xc3\x28" + bytes(13),  # invalid UTF-8
        b"\x82\x21\x01" + bytes(13),  # tuple runs out of elements
        b"\x4f" + b"a" * 14,  # 15 bytes only
    ],
)
def test_malformed_keys_are_rejected(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_key(raw)
    if len(raw) == KEY_BYTES:
        with pytest.raises(ValueError):
            decode_keys(np.frombuffer(raw, np.uint8).reshape(1, KEY_BYTES))


# ---------------------------------------------------------------------------------------------
# batches

utf8_text = st.text(
    st.sampled_from(["a", "Z", "0", "\x00", "é", "ß", "€", "中", "😀", " "]), max_size=17
)


@given(st.lists(anything, max_size=30))
@settings(max_examples=300)
def test_mixed_batches_match_per_key(keys: list) -> None:
    rows, fits = encode_keys(keys)
    _batch_matches(keys, rows, fits)
    assert np.all(rows[fits, 0] != 0)
    assert decode_keys(rows[fits]) == [k for k, f in zip(keys, fits, strict=True) if f]


@given(st.lists(utf8_text | st.text(max_size=16), max_size=40))
@settings(max_examples=300)
def test_str_batches_match_per_key(keys: list[str]) -> None:
    rows, fits = encode_keys(keys)
    _batch_matches(keys, rows, fits)
    assert decode_keys(rows[fits]) == [k for k, f in zip(keys, fits, strict=True) if f]


@given(st.lists(utf8_text | st.none(), max_size=40))
def test_str_or_none_batches_match_per_key(keys: list) -> None:
    _batch_matches(keys, *encode_keys(keys))


@given(st.lists(st.binary(max_size=17) | st.none(), max_size=40))
def test_bytes_batches_match_per_key(keys: list) -> None:
    _batch_matches(keys, *encode_keys(keys))


def test_str_batch_length_limits() -> None:
    keys = [
        "",
        "a" * 15,
        "a" * 16,
        "é" * 7 + "a",  # 15 bytes
        "é" * 8,  # 16 bytes
        "a" * 13 + "é",  # 15 bytes
        "a" * 14 + "é",  # 16 bytes: the two-byte char crosses the limit
        "a" * 12 + "€",  # 15 bytes
        "a" * 13 + "€",  # 16 bytes
        "a" * 11 + "😀",  # 15 bytes
        "a" * 12 + "😀",  # 16 bytes
        "\x00" * 15,
        "x" * 1000,
    ]
    rows, fits = encode_keys(keys)
    assert fits.tolist() == [len(k.encode()) <= 15 for k in keys]
    _batch_matches(keys, rows, fits)


def test_str_batch_with_lone_surrogate_falls_back_per_key() -> None:
    keys = ["a", "\ud800", "b\udc00c", "é"]
    rows, fits = encode_keys(keys)
    assert fits.tolist() == [True, False, False, True]
    _batch_matches(keys, rows, fits)


INT_EDGES = [
    0,
    1,
    -1,
    127,
    128,
    -128,
    -129,
    255,
    256,
    2**31,
    -(2**31),
    2**55 - 1,
    2**55,
    -(2**55),
    -(2**55) - 1,
    2**63 - 1,
    -(2**63),
]


@given(st.lists(st.integers(-(2**63), 2**63 - 1) | st.sampled_from(INT_EDGES), max_size=40))
@settings(max_examples=300)
def test_int64_batches_match_per_key(keys: list[int]) -> None:
    rows, fits = encode_keys(keys)
    assert fits.all()
    _batch_matches(keys, rows, fits)
    assert decode_keys(rows) == keys


@given(st.lists(st.integers() | st.sampled_from([2**63, -(2**63) - 1, 2**119, -(2**119)])))
def test_big_int_batches_match_per_key(keys: list[int]) -> None:
    _batch_matches(keys, *encode_keys(keys))


def test_empty_batches() -> None:
    for empty in ([], (), pa.array([], pa.string()), pa.chunked_array([], pa.string())):
        rows, fits = encode_keys(empty)
        assert rows.shape == (0, KEY_BYTES) and fits.shape == (0,)
    assert decode_keys(np.zeros((0, KEY_BYTES), np.uint8)) == []


# ---------------------------------------------------------------------------------------------
# arrow columns


def _arrow_matches(values: list, rows: np.ndarray, fits: np.ndarray, null_as_none: bool) -> None:
    expected = [v if v is not None or null_as_none else 1.5 for v in values]  # 1.5: host path
    _batch_matches(expected, rows, fits)


@given(
    st.lists(utf8_text | st.none(), max_size=30),
    st.integers(0, 30),
    st.integers(0, 30),
    st.sampled_from([pa.string(), pa.large_string()]),
    st.booleans(),
)
def test_arrow_sliced(values: list, start: int, length: int, typ: pa.DataType, nn: bool) -> None:
    array = pa.array(values, typ).slice(start, length)
    sliced = values[start : start + length]
    _arrow_matches(sliced, *encode_arrow_strings(array, null_as_none=nn), null_as_none=nn)


@given(st.lists(st.lists(utf8_text | st.none(), max_size=10), max_size=5), st.booleans())
def test_arrow_chunked(chunks: list[list], null_as_none: bool) -> None:
    array = pa.chunked_array([pa.array(c, pa.string()) for c in chunks], pa.string())
    flat = [v for c in chunks for v in c]
    rows, fits = encode_arrow_strings(array, null_as_none=null_as_none)
    _arrow_matches(flat, rows, fits, null_as_none)
    rows, fits = encode_keys(array)  # Python-list semantics: a null is the None key
    _batch_matches(flat, rows, fits)


def test_arrow_nulls_take_the_host_path_by_default() -> None:
    rows, fits = encode_arrow_strings(pa.array(["a", None, "b"]))
    assert fits.tolist() == [True, False, True] and not rows[1].any()
    rows, fits = encode_arrow_strings(pa.array(["a", None, "b"]), null_as_none=True)
    assert fits.all() and rows[1].tobytes() == encode_key(None)


@pytest.mark.parametrize("null_as_none", [False, True])
def test_arrow_other_layouts(null_as_none: bool) -> None:
    values = ["a", None, "é" * 8, "", "b" * 15, "a"]
    variants = [
        pa.array(values, pa.string()).dictionary_encode(),
        pa.array(values, pa.large_string()).dictionary_encode().slice(1),
        pa.array(values, pa.string_view()),
        pa.array([None, None], pa.string()).dictionary_encode(),
    ]
    for array in variants:
        rows, fits = encode_arrow_strings(array, null_as_none=null_as_none)
        _arrow_matches(array.to_pylist(), rows, fits, null_as_none)
    blobs = [b"a", None, b"x" * 16, b""]
    for typ in (pa.binary(), pa.large_binary()):
        rows, fits = encode_arrow_strings(pa.array(blobs, typ), null_as_none=null_as_none)
        _arrow_matches(blobs, rows, fits, null_as_none)


def test_arrow_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        encode_arrow_strings(pa.array([1, 2]))
