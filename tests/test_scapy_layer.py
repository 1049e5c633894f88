"""The scapy layer dissects exactly what the independent ``wire`` encoder produces, and back."""

from __future__ import annotations

import doctest
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Padding, Raw

from switch_dataplane import scapy_layer, wire
from switch_dataplane.scapy_layer import INC, INCSlot, bind_port, control_message, slot_items

SLOT_TYPES = [
    wire.PacketType.DATA,
    wire.PacketType.DATA_RESPONSE,
    wire.PacketType.DRAIN_REQUEST,
    wire.PacketType.DRAIN_RESPONSE,
]
# Fields a caller sets (magic and version are constants; bitmap and checksum are computed).
HEADER_FIELDS = [
    n for n in wire.HEADER_DTYPE.names if n not in ("magic", "version", "bitmap", "checksum")
]


def _uint(dt: np.dtype) -> st.SearchStrategy[int]:
    return st.integers(0, (1 << (8 * dt.itemsize)) - 1)


@st.composite
def headers(draw: st.DrawFn, types: list[wire.PacketType]) -> dict[str, int]:
    fields = {n: draw(_uint(wire.HEADER_DTYPE.fields[n][0])) for n in HEADER_FIELDS}
    fields["type"] = int(draw(st.sampled_from(types)))
    fields["status"] = int(draw(st.sampled_from(list(wire.Status))))
    return fields


@st.composite
def slot_sets(draw: st.DrawFn) -> tuple[list[int], list[bytes], list[int]]:
    """Distinct slot indices in random (not wire) order, with random keys and int32 values."""
    indices = draw(st.lists(st.integers(0, wire.MAX_SLOTS - 1), unique=True, max_size=24))
    keys = [draw(st.binary(min_size=wire.KEY_BYTES, max_size=wire.KEY_BYTES)) for _ in indices]
    values = [draw(st.integers(wire.INT32_MIN, wire.INT32_MAX)) for _ in indices]
    return indices, keys, values


def _encode(fields: dict[str, int], slots: tuple[list[int], list[bytes], list[int]]) -> bytes:
    indices, keys, values = slots
    hdr = wire.new_header(wire.PacketType(fields["type"]), **fields)
    key_arr = np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), wire.KEY_BYTES)
    return wire.encode_packet(hdr, np.array(indices, np.int64), key_arr, np.array(values))


def _check_dissection(inc: INC, data: bytes) -> None:
    """Every header field, slot index, key and value equals what wire.decode_packet reads."""
    hdr, indices, body = wire.decode_packet(data)
    for name in wire.HEADER_DTYPE.names:
        assert inc.getfieldval(name) == int(hdr[name]), name
    assert slot_items(inc) == [
        (int(i), bytes(rec["key"]), int(rec["value"])) for i, rec in zip(indices, body, strict=True)
    ]
    assert Raw not in inc


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
messages = st.dictionaries(st.text(max_size=12), json_values, max_size=6)


def test_header_is_derived_from_wire() -> None:
    names = [f.name for f in INC.fields_desc]
    assert names == [*wire.HEADER_DTYPE.names, "slots"]
    assert [f.name for f in INCSlot.fields_desc] == list(wire.SLOT_DTYPE.names)
    assert len(bytes(INC())) == wire.HEADER_BYTES
    assert len(bytes(INCSlot())) == wire.SLOT_BYTES
    assert bytes(INC()) == wire.encode_header(wire.new_header(wire.PacketType.DATA))


@settings(max_examples=300)
@given(headers(SLOT_TYPES), slot_sets())
def test_dissects_like_wire_decoder(fields: dict[str, int], slots: Any) -> None:
    data = _encode(fields, slots)
    inc = INC(data)
    _check_dissection(inc, data)
    for name, value in fields.items():  # and equals what was put in
        assert inc.getfieldval(name) == value
    indices, keys, values = slots
    assert slot_items(inc) == sorted(zip(indices, keys, values, strict=True))
    assert inc.bitmap == wire.bitmap_of(np.array(indices, np.int64))
    assert bytes(inc) == data


@settings(max_examples=200)
@given(headers(SLOT_TYPES), slot_sets())
def test_scapy_built_packet_matches_wire_encoder(fields: dict[str, int], slots: Any) -> None:
    indices, keys, values = slots
    ordered = sorted(zip(indices, keys, values, strict=True))
    built = INC(
        **fields,
        bitmap=wire.bitmap_of(np.array(indices, np.int64)),
        slots=[INCSlot(key=k, value=v) for _, k, v in ordered],
    )
    assert bytes(built) == _encode(fields, slots)


@given(headers(SLOT_TYPES))
def test_enum_and_hex_display(fields: dict[str, int]) -> None:
    inc = INC(_encode(fields, ([], [], [])))
    assert inc.sprintf("%INC.type%") == wire.PacketType(fields["type"]).name
    assert inc.sprintf("%INC.status%") == wire.Status(fields["status"]).name
    assert inc.sprintf("%INC.magic%") == hex(wire.MAGIC)


@given(
    st.just(wire.PacketType.CONTROL_RESPONSE),  # requests must be flat: test_wire.py
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    messages,
)
def test_control_packets(
    ptype: wire.PacketType, client: int, request_id: int, message: dict[str, Any]
) -> None:
    data = wire.encode_control(ptype, client, request_id, message)
    inc = INC(data)
    hdr, decoded = wire.decode_control(data)
    for name in wire.HEADER_DTYPE.names:
        assert inc.getfieldval(name) == int(hdr[name]), name
    assert (inc.type, inc.flow_id, inc.seq) == (ptype, client, request_id)
    assert inc.slots == []
    assert control_message(inc) == decoded == message
    assert bytes(inc) == data


@settings(max_examples=50)
@given(headers(SLOT_TYPES), slot_sets(), st.booleans())
def test_ip_udp_default_port(fields: dict[str, int], slots: Any, to_switch: bool) -> None:
    data = _encode(fields, slots)
    ports = (40000, wire.DEFAULT_PORT) if to_switch else (wire.DEFAULT_PORT, 40000)
    frame = Ether() / IP(dst="10.0.0.2") / UDP(sport=ports[0], dport=ports[1]) / Raw(data)
    pkt = Ether(bytes(frame) + b"\0" * 7)  # trailing frame padding must not leak into INC
    assert INC in pkt
    _check_dissection(pkt[INC], data)
    assert bytes(pkt[INC]) == data + bytes(pkt[Padding])  # scapy keeps padding at the end


def test_control_message_over_ip_with_padding() -> None:
    data = wire.encode_control(wire.PacketType.CONTROL_RESPONSE, 5, 6, {"ok": True})
    frame = Ether() / IP() / UDP(sport=wire.DEFAULT_PORT, dport=33333) / Raw(data)
    pkt = Ether(bytes(frame) + b"\0" * 9)
    assert control_message(pkt) == {"ok": True}


def test_control_message_rejects_data_packet() -> None:
    data = _encode({"type": int(wire.PacketType.DATA)}, ([], [], []))
    try:
        control_message(INC(data))
    except ValueError:
        return
    raise AssertionError("a data packet has no control message")


def test_bind_port() -> None:
    port = 47123
    data = _encode({"type": int(wire.PacketType.DATA_RESPONSE), "seq": 3}, ([2], [b"k" * 16], [9]))
    raw = bytes(IP() / UDP(sport=port, dport=50000) / Raw(data))
    assert INC not in IP(raw)  # not bound yet: plain UDP payload
    bind_port(port)
    bind_port(port)
    for sport, dport in ((port, 50000), (50000, port)):
        pkt = IP(bytes(IP() / UDP(sport=sport, dport=dport) / Raw(data)))
        assert INC in pkt
        _check_dissection(pkt[INC], data)
    # building still defaults to the standard port
    assert (UDP() / INC()).dport == wire.DEFAULT_PORT


def test_module_doctest() -> None:
    result = doctest.testmod(scapy_layer)
    assert result.attempted > 0
    assert result.failed == 0
