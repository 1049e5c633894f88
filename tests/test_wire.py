"""Wire protocol v3: round trips, sizes, checksums and clear rejections of malformed bytes."""

from __future__ import annotations

import doctest
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch_dataplane import frame_check, wire
from switch_dataplane.wire import CorruptPacket, MalformedPacket, PacketType

# Header fields the caller chooses (magic, version, bitmap, checksum are the encoder's business).
FREE_FIELDS = [
    n
    for n in wire.HEADER_DTYPE.names
    if n not in ("magic", "version", "type", "bitmap", "checksum")
]
SLOT_PACKET_TYPES = [
    PacketType.DATA,
    PacketType.DATA_RESPONSE,
    PacketType.DRAIN_REQUEST,
    PacketType.DRAIN_RESPONSE,
]


def _field_max(name: str) -> int:
    return (1 << (8 * wire.HEADER_DTYPE.fields[name][0].itemsize)) - 1


@st.composite
def header_fields(draw: st.DrawFn) -> dict[str, int]:
    return {n: draw(st.integers(0, _field_max(n))) for n in FREE_FIELDS}


@st.composite
def slot_sets(draw: st.DrawFn) -> tuple[list[int], list[bytes], list[int]]:
    """A random subset of slot indices 0..63 in random order, with keys and int32 values."""
    indices = draw(st.lists(st.integers(0, wire.MAX_SLOTS - 1), unique=True, max_size=64))
    keys = [draw(st.binary(min_size=wire.KEY_BYTES, max_size=wire.KEY_BYTES)) for _ in indices]
    values = [draw(st.integers(wire.INT32_MIN, wire.INT32_MAX)) for _ in indices]
    return indices, keys, values


def _encode(ptype: PacketType, fields: dict[str, int], slots: Any) -> bytes:
    indices, keys, values = slots
    hdr = wire.new_header(ptype, **fields)
    key_arr = np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), wire.KEY_BYTES)
    return wire.encode_packet(hdr, np.array(indices, np.int64), key_arr, np.array(values))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SLOT_PACKET_TYPES), header_fields(), slot_sets())
def test_packet_round_trip(ptype: PacketType, fields: dict[str, int], slots: Any) -> None:
    data = _encode(ptype, fields, slots)
    indices, keys, values = slots
    assert len(data) == wire.HEADER_BYTES + wire.SLOT_BYTES * len(indices)
    hdr, got_indices, body = wire.decode_packet(data)
    assert int(hdr["magic"]) == wire.MAGIC
    assert int(hdr["version"]) == wire.VERSION
    assert int(hdr["type"]) == ptype
    for name, value in fields.items():
        assert int(hdr[name]) == value, name
    assert int(hdr["bitmap"]) == sum(1 << i for i in indices)
    expected = sorted(zip(indices, keys, values, strict=True))
    assert got_indices.tolist() == [i for i, _, _ in expected]
    assert [bytes(r["key"]) for r in body] == [k for _, k, _ in expected]
    assert [int(r["value"]) for r in body] == [v for _, _, v in expected]
    # The bitmap helpers agree with each other.
    assert wire.slot_indices(wire.bitmap_of(np.array(indices, np.int64))) == sorted(indices)


@settings(max_examples=100, deadline=None)
@given(slot_sets())
def test_values_are_big_endian_int32(slots: Any) -> None:
    """Every slot is key (16 bytes) then a big-endian two's-complement int32, in index order."""
    data = _encode(PacketType.DATA, {}, slots)
    expected = sorted(zip(*slots, strict=True))
    for n, (_, key, value) in enumerate(expected):
        at = wire.HEADER_BYTES + n * wire.SLOT_BYTES
        assert data[at : at + 16] == key
        assert int.from_bytes(data[at + 16 : at + 20], "big", signed=True) == value


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
messages = st.dictionaries(st.text(max_size=12), json_values, max_size=6)
scalar_text = st.text(st.characters(blacklist_characters="[{"), max_size=12)
request_messages = st.dictionaries(
    scalar_text,
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | scalar_text,
    max_size=wire.MAX_CONTROL_FIELDS,
)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    messages,
)
def test_control_answer_round_trip(
    client: int, request_id: int, incarnation: int, message: dict[str, Any]
) -> None:
    data = wire.encode_control(
        PacketType.CONTROL_RESPONSE, client, request_id, message, incarnation
    )
    hdr, decoded = wire.decode_control(data)
    assert decoded == message
    assert (int(hdr["flow_id"]), int(hdr["seq"])) == (client, request_id)
    assert (int(hdr["incarnation"]), int(hdr["bitmap"])) == (incarnation, 0)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), request_messages)
def test_control_request_round_trip(client: int, request_id: int, message: dict) -> None:
    """Every flat object of bounded scalars is a valid request."""
    data = wire.encode_control(PacketType.CONTROL_REQUEST, client, request_id, message)
    hdr, decoded = wire.decode_control(data)
    assert decoded == message
    assert (int(hdr["type"]), int(hdr["flow_id"]), int(hdr["seq"])) == (5, client, request_id)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"[" * 700 + b"]" * 700, "flat JSON object"),
        (b'{"a":' * 200 + b"1" + b"}" * 200, "flat JSON object"),
        (b"[" * 60000 + b"]" * 60000, "at most 1472"),
        (b'{"job_id":' + b"9" * 5000 + b"}", "at most 1472"),
        (b'{"job_id":' + b"9" * 1000 + b"}", "integer of 1000 digits"),
        (b'{"lease_s":1' + b"0" * 400 + b".5}", "number of 403 characters"),
        (b'{"job_id":1e400}', "not finite"),
        (b'{"lease_s":NaN}', "NaN is not a number"),
        (b'{"lease_s":-Infinity}', "-Infinity is not a number"),
        (b'{"name":"' + b"x" * 1300 + b'"}', "longer than 1024"),
        (b"{" + b",".join(b'"f%d":1' % i for i in range(17)) + b"}", "17 fields"),
        (b'{"op":"stats","pad":"' + b" " * 1500 + b'"}', "at most 1472"),
    ],
)
def test_poison_control_requests_are_refused(payload: bytes, match: str) -> None:
    """Deep nesting, huge numbers, non-finite numbers, long strings and oversize requests are
    refused by the decoder with what was wrong, before anything recurses or converts."""
    hdr = wire.new_header(PacketType.CONTROL_REQUEST).tobytes()
    with pytest.raises(MalformedPacket, match=match):
        wire.decode_control(wire.seal(hdr + payload))


def _valid_data_packet(nslots: int = 2) -> bytes:
    keys = np.arange(nslots * wire.KEY_BYTES, dtype=np.uint8).reshape(nslots, wire.KEY_BYTES)
    return wire.encode_packet(
        wire.new_header(PacketType.DATA, job_id=1, token=2, epoch=3, flow_id=4, seq=5),
        np.arange(nslots),
        keys,
        np.arange(nslots),
    )


def _with_byte(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + bytes([value]) + data[at + 1 :]


@pytest.mark.parametrize("length", [0, 1, wire.HEADER_BYTES - 1])
def test_short_packet(length: int) -> None:
    data = _valid_data_packet()[:length]
    for decode in (wire.decode_header, wire.decode_packet, wire.decode_control):
        short = f"{length} bytes is shorter than the {wire.HEADER_BYTES}-byte"
        with pytest.raises(MalformedPacket, match=short):
            decode(data)


def test_bad_magic() -> None:
    data = b"\x12\x34" + _valid_data_packet()[2:]
    with pytest.raises(MalformedPacket, match="magic 0x1234 is not 0x4943"):
        wire.decode_packet(data)


@pytest.mark.parametrize("version", [0, 1, 2, 255])
def test_bad_version(version: int) -> None:
    data = _with_byte(_valid_data_packet(), wire.FIELD_OFFSET["version"], version)
    with pytest.raises(MalformedPacket, match=f"protocol version {version} is not 3"):
        wire.decode_packet(data)


@pytest.mark.parametrize("ptype", [0, 7, 200])
def test_unknown_type(ptype: int) -> None:
    data = _with_byte(_valid_data_packet(), wire.FIELD_OFFSET["type"], ptype)
    with pytest.raises(MalformedPacket, match=f"unknown packet type {ptype}"):
        wire.decode_packet(data)


@pytest.mark.parametrize("delta", [-wire.SLOT_BYTES, -1, 1, 3, wire.SLOT_BYTES])
def test_length_not_matching_bitmap(delta: int) -> None:
    data = _valid_data_packet(3)
    data = data[:delta] if delta < 0 else data + bytes(delta)
    with pytest.raises(MalformedPacket, match=r"bytes, but a bitmap with 3 slots needs 104"):
        wire.decode_packet(data)


def test_bitmap_claims_more_slots_than_sent() -> None:
    hdr = wire.new_header(PacketType.DATA, bitmap=(1 << 63) | 1)
    with pytest.raises(MalformedPacket, match="a bitmap with 2 slots needs 84"):
        wire.decode_packet(hdr.tobytes() + bytes(wire.SLOT_BYTES))


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"{not json", "not UTF-8 JSON"),
        (b"\xff\xfe{}", "not UTF-8 JSON"),
        (b"", "not UTF-8 JSON"),
        (b"[1, 2]", "must be one flat JSON object"),
        (b"42", "must be a JSON object"),
    ],
)
def test_control_payload_not_a_json_object(payload: bytes, match: str) -> None:
    hdr = wire.new_header(PacketType.CONTROL_REQUEST).tobytes()
    with pytest.raises(MalformedPacket, match=match):
        wire.decode_control(wire.seal(hdr + payload))


def test_malformed_is_a_value_error() -> None:
    assert issubclass(MalformedPacket, ValueError)


def test_encoder_rejects_bad_slots() -> None:
    hdr = wire.new_header(PacketType.DATA)
    with pytest.raises(ValueError, match="appears twice"):
        wire.encode_packet(hdr, np.array([3, 3]), np.zeros((2, 16), np.uint8), np.array([1, 2]))
    with pytest.raises(ValueError, match="outside 0..63"):
        wire.encode_packet(hdr, np.array([64]), np.zeros((1, 16), np.uint8), np.array([1]))


def test_mtu_budget() -> None:
    assert wire.MAX_UDP_PAYLOAD == 1472
    assert wire.HEADER_BYTES + wire.MAX_SLOTS_PER_MTU * wire.SLOT_BYTES <= 1472
    assert wire.HEADER_BYTES + (wire.MAX_SLOTS_PER_MTU + 1) * wire.SLOT_BYTES > 1472
    # A packet with all 64 slots (the bitmap's width) fits one MTU.
    full = _valid_data_packet(wire.MAX_SLOTS)
    assert len(full) == 44 + 64 * 20 == 1324
    assert len(full) <= wire.MAX_UDP_PAYLOAD
    assert wire.decode_packet(full)[1].tolist() == list(range(64))


def test_header_layout_is_network_order() -> None:
    hdr = wire.new_header(PacketType.DATA, job_id=0x0102, seq=0x03040506, bitmap=1 << 63)
    raw = hdr.tobytes()
    assert raw[:2] == b"\x49\x43"
    assert raw[2] == wire.VERSION and raw[3] == PacketType.DATA
    at = wire.FIELD_OFFSET
    assert raw[at["job_id"] : at["job_id"] + 2] == b"\x01\x02"
    assert raw[at["seq"] : at["seq"] + 4] == b"\x03\x04\x05\x06"
    assert raw[at["bitmap"]] == 0x80
    control = wire.encode_control(PacketType.CONTROL_REQUEST, 1, 2, {"a": 1})
    assert json.loads(control[wire.HEADER_BYTES :]) == {"a": 1}


def test_header_v3_token_incarnation_and_checksum() -> None:
    """The token is 64 bits at bytes 8..15, the incarnation 32 bits at 28..31, the checksum 32
    bits at 40..43, the header 44 bytes; 64 slots still fit one MTU."""
    token, incarnation = 0x0102030405060708, 0xA1B2C3D4
    header = wire.new_header(PacketType.DATA, token=token, incarnation=incarnation)
    raw = wire.encode_header(header)
    assert len(raw) == wire.HEADER_BYTES == 44
    assert raw[8:16] == token.to_bytes(8, "big")
    assert raw[28:32] == incarnation.to_bytes(4, "big")
    assert raw[40:44] == crc32c(raw[:40]).to_bytes(4, "big")
    assert wire.VERSION == 3 and wire.MAX_SLOTS_PER_MTU >= wire.MAX_SLOTS


def crc32c(data: bytes) -> int:
    """CRC-32C bit by bit, from its definition (reflected polynomial 0x82F63B78)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def _reference_checksum(data: bytes) -> int:
    """CRC-32C of the datagram with its 4 checksum bytes left out."""
    return crc32c(data[:40] + data[44:])


def test_the_reference_is_crc32c() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C (RFC 3720)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=wire.HEADER_BYTES, max_size=wire.MAX_UDP_PAYLOAD), st.integers(0, 7))
def test_checksum_is_crc32c_of_the_other_bytes(data: bytes, shift: int) -> None:
    """The CPU instruction and the table kernels, at any alignment, and sealing agree with the
    bitwise definition on any bytes."""
    buf = np.frombuffer(bytes(shift) + data, np.uint8).copy()
    expected = _reference_checksum(data)
    assert wire.checksum(data) == expected
    assert frame_check.checksum(buf, shift, len(data)) == expected
    assert frame_check.checksum_table(buf, shift, len(data)) == expected
    sealed = wire.seal(data)
    frame_check.seal(buf, shift, len(data))
    assert buf[shift:].tobytes() == sealed and sealed[40:44] == expected.to_bytes(4, "big")
    assert frame_check.intact(buf, shift, len(data))
    assert sealed[:40] + sealed[44:] == data[:40] + data[44:]


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(SLOT_PACKET_TYPES),
    header_fields(),
    slot_sets(),
    st.data(),
)
def test_every_error_burst_of_up_to_32_bits_is_caught(
    ptype: PacketType, fields: dict[str, int], slots: Any, data: st.DataObject
) -> None:
    """CRC-32 catches every burst of <= 32 flipped bits outside its own field, and any change of
    the field itself; the decoder and the compiled check both refuse the packet."""
    packet = bytearray(_encode(ptype, fields, slots))
    bits = len(packet) * 8
    width = data.draw(st.integers(1, 32), label="burst bits")
    in_field = data.draw(st.booleans(), label="in the checksum field")
    if in_field:
        start = data.draw(st.integers(40 * 8, 44 * 8 - width), label="first bit")
    else:
        ranges = [(0, 40 * 8 - width), (44 * 8, bits - width)]
        start = data.draw(
            st.one_of([st.integers(lo, hi) for lo, hi in ranges if lo <= hi]), label="first bit"
        )
    middle = data.draw(st.integers(0, (1 << max(0, width - 2)) - 1), label="middle bits")
    pattern = 1 if width == 1 else (1 << (width - 1)) | middle << 1 | 1
    flipped = int.from_bytes(packet, "big") ^ pattern << (bits - start - width)
    damaged = flipped.to_bytes(len(packet), "big")
    assert not frame_check.intact(np.frombuffer(damaged, np.uint8), 0, len(damaged))
    with pytest.raises(MalformedPacket):
        wire.decode_packet(damaged)


def test_a_damaged_packet_is_corrupt_not_malformed() -> None:
    """Damage the header and slots cannot explain is named as such, so it is counted apart."""
    packet = _valid_data_packet()
    for at in (wire.FIELD_OFFSET["seq"], wire.HEADER_BYTES + 3, len(packet) - 1):
        with pytest.raises(CorruptPacket, match="checksum 0x"):
            wire.decode_packet(_with_byte(packet, at, packet[at] ^ 0x10))
    control = wire.encode_control(PacketType.CONTROL_REQUEST, 1, 2, {"op": "stats"})
    with pytest.raises(CorruptPacket):
        wire.decode_control(_with_byte(control, len(control) - 2, ord("x")))


def test_module_doctest() -> None:
    result = doctest.testmod(wire)
    assert result.attempted > 0
    assert result.failed == 0
