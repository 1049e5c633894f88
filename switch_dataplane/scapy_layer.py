"""Scapy dissector for the inc-spark wire protocol (v3), derived from :mod:`switch_dataplane.wire`.

The header fields (names, widths, big-endian) are read from ``wire.HEADER_DTYPE`` and the slot
fields from ``wire.SLOT_DTYPE`` when this module is imported, so ``wire.py`` stays the only
definition of the layout. ``INC`` is the header; its ``slots`` list holds ``popcount(bitmap)``
``INCSlot`` layers in increasing slot index (use :func:`slot_items` to pair them with their
indices). The ``copy`` field shares its name with ``Packet.copy()``: read it with
``pkt.getfieldval("copy")`` or ``%INC.copy%`` (``INC(copy=1)`` and ``pkt.copy = 1`` do set it).
Control packets carry UTF-8 JSON after the header, left as ``Raw``
(:func:`control_message` parses it). A ``checksum`` left unset is computed when the packet is
built, as scapy does for UDP's. Importing the module binds UDP port ``wire.DEFAULT_PORT``;
:func:`bind_port` adds another one.

>>> import numpy as np
>>> from switch_dataplane import wire
>>> hdr = wire.new_header(wire.PacketType.DATA, job_id=3, token=7, epoch=1, flow_id=9, seq=42)
>>> keys = np.frombuffer(b"apple".ljust(16, b"\\0") + b"pear".ljust(16, b"\\0"), np.uint8)
>>> data = wire.encode_packet(hdr, np.array([5, 0]), keys.reshape(2, 16), np.array([1, -2]))
>>> pkt = INC(data)
>>> pkt.sprintf("%INC.type% job=%INC.job_id% seq=%INC.seq% bitmap=%INC.bitmap%")
'DATA job=3 seq=42 bitmap=0x21'
>>> [(i, key.rstrip(b"\\0"), value) for i, key, value in slot_items(pkt)]
[(0, b'pear', -2), (5, b'apple', 1)]
>>> bytes(pkt) == data
True
>>> bytes(INC(job_id=3, type="DRAIN_REQUEST")) == wire.encode_header(
...     wire.new_header(wire.PacketType.DRAIN_REQUEST, job_id=3))
True
>>> ctl = wire.encode_control(wire.PacketType.CONTROL_REQUEST, 77, 1, {"op": "stats"})
>>> control_message(INC(ctl))
{'op': 'stats'}
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from scapy.fields import (
    EnumField,
    Field,
    PacketListField,
    XStrFixedLenField,
)
from scapy.layers.inet import UDP
from scapy.packet import Packet, Raw, bind_bottom_up, bind_layers, bind_top_down
from scapy.utils import lhex

from switch_dataplane import wire

__all__ = ["INC", "INCSlot", "bind_port", "control_message", "slot_items"]

_CONTROL_TYPES = (int(wire.PacketType.CONTROL_REQUEST), int(wire.PacketType.CONTROL_RESPONSE))
_ENUMS: dict[str, dict[int, str]] = {
    "type": {int(t): t.name for t in wire.PacketType},
    "status": {int(s): s.name for s in wire.Status},
}
_HEX = frozenset({"magic", "bitmap", "checksum"})
_DEFAULTS = {
    "magic": wire.MAGIC,
    "version": wire.VERSION,
    "type": int(wire.PacketType.DATA),
    "checksum": None,  # computed by post_build
}


class _XField(Field[int, int]):
    """An integer field of any struct width shown in hex."""

    def i2repr(self, pkt: Packet | None, x: int) -> str:
        return lhex(self.i2h(pkt, x))


def _struct_format(dt: np.dtype) -> str:
    """Network-order struct format of a scalar integer dtype ('>u4' -> '!I')."""
    if dt.kind not in "iu" or dt.itemsize not in (1, 2, 4, 8):
        raise ImportError(f"wire dtype {dt} has no scapy field mapping")
    if dt.itemsize > 1 and dt.byteorder != ">":
        raise ImportError(f"wire dtype {dt} is not big-endian")
    code = {1: "b", 2: "h", 4: "i", 8: "q"}[dt.itemsize]
    return "!" + (code.upper() if dt.kind == "u" else code)


def _fields_of(record: np.dtype, size: int) -> list[Field[Any, Any]]:
    """Scapy fields for a packed numpy record dtype, checked to be gap-free and ``size`` long."""
    fields: list[Field[Any, Any]] = []
    offset = 0
    for name in record.names:
        dt, field_offset = record.fields[name][:2]
        if field_offset != offset:
            raise ImportError(f"wire field {name} at offset {field_offset}, expected {offset}")
        if dt.subdtype is not None:  # fixed byte array (the key)
            base, shape = dt.subdtype
            if base != np.uint8:
                raise ImportError(f"wire array field {name} is not bytes")
            length = int(np.prod(shape))
            fields.append(XStrFixedLenField(name, b"\0" * length, length=length))
        else:
            fmt = _struct_format(dt)
            default = _DEFAULTS.get(name, 0)
            if name in _ENUMS:
                fields.append(EnumField(name, default, _ENUMS[name], fmt))
            elif name in _HEX:
                fields.append(_XField(name, default, fmt))
            else:
                fields.append(Field(name, default, fmt))
        offset += dt.itemsize
    if offset != size:
        raise ImportError(f"wire record is {offset} bytes, expected {size}")
    return fields


class INCSlot(Packet):
    """One slot: a 16-byte key and a signed 32-bit value (``wire.SLOT_DTYPE``)."""

    name = "INC slot"
    fields_desc = _fields_of(wire.SLOT_DTYPE, wire.SLOT_BYTES)

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s  # the rest of the packet belongs to the next slot

    def mysummary(self) -> str:
        return self.sprintf("key=%INCSlot.key% value=%INCSlot.value%")


def _slot_count(pkt: Packet) -> int:
    """Slots present: popcount(bitmap); control packets carry JSON instead of slots."""
    if pkt.type in _CONTROL_TYPES:
        return 0
    return int(pkt.bitmap or 0).bit_count()


class INC(Packet):
    """The 44-byte header (``wire.HEADER_DTYPE``) followed by its slots."""

    name = "INC"
    fields_desc = [
        *_fields_of(wire.HEADER_DTYPE, wire.HEADER_BYTES),
        PacketListField("slots", [], INCSlot, count_from=_slot_count),
    ]

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        datagram = pkt + pay
        return wire.seal(datagram) if self.checksum is None else datagram

    def mysummary(self) -> str:
        return (
            self.sprintf(
                "INC %INC.type% %INC.status% job=%INC.job_id% epoch=%INC.epoch% "
                "flow=%INC.flow_id% seq=%INC.seq% "
            )
            + f"slots={len(self.slots)}"
        )


def slot_items(pkt: Packet) -> list[tuple[int, bytes, int]]:
    """``(slot index, key, value)`` of every slot of the INC layer in ``pkt``, in wire order."""
    inc = pkt[INC]
    indices = wire.slot_indices(int(inc.bitmap))
    return [(i, bytes(s.key), int(s.value)) for i, s in zip(indices, inc.slots, strict=False)]


def control_message(pkt: Packet) -> dict[str, Any]:
    """The JSON object of a control request/response (``pkt`` may be INC or contain it)."""
    inc = pkt[INC]
    if inc.type not in _CONTROL_TYPES:
        raise ValueError(f"packet type {inc.type} is not a control packet")
    payload = inc.payload
    load = payload.load if type(payload) is Raw else b""  # not Padding from the frame
    message = json.loads(load.decode())
    if not isinstance(message, dict):
        raise ValueError("control payload must be a JSON object")
    return message


_bound_ports: set[int] = set()


def bind_port(port: int) -> None:
    """Dissect UDP packets from or to ``port`` as INC (the daemon may run on any port).

    Dissection only: building ``UDP()/INC()`` keeps defaulting both ports to
    ``wire.DEFAULT_PORT``. Binding the same port twice is a no-op.
    """
    if port in _bound_ports:
        return
    _bound_ports.add(port)
    bind_bottom_up(UDP, INC, sport=port)
    bind_bottom_up(UDP, INC, dport=port)


_bound_ports.add(wire.DEFAULT_PORT)
bind_layers(UDP, INC, sport=wire.DEFAULT_PORT)
bind_layers(UDP, INC, dport=wire.DEFAULT_PORT)
bind_top_down(UDP, INC, sport=wire.DEFAULT_PORT, dport=wire.DEFAULT_PORT)
