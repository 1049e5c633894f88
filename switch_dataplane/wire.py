"""Wire protocol v3: the one definition of every byte that crosses the network.

The switch, the hosts and the scapy layer all read their layouts from here. Every multi-byte
field is in network byte order (big-endian). A packet is a 44-byte header followed by
``popcount(bitmap)`` 20-byte slots, in increasing slot index, exactly as a P4 deparser emits the
slot headers that are valid (absorbed slots are invalidated and vanish from the response).

Every datagram carries a CRC-32C of all its other bytes (``checksum``): switch and hosts drop
one that does not match, so a corrupted packet is a lost one, which the protocol recovers from.

Control messages (job admission, flows, epochs, swaps, stats) share the socket with data so
their order relative to data packets is the order the switch sees them; their payload is UTF-8
JSON after the header, at most ``MAX_CONTROL_BYTES`` long, a flat object of bounded scalars.

Every answer carries the switch's *incarnation*, a random number drawn at each boot: a host that
sees it change knows the switch restarted and lost every job.

>>> hdr = new_header(PacketType.DATA, job_id=3, token=7, epoch=1, flow_id=9, seq=0)
>>> keys = np.zeros((2, KEY_BYTES), np.uint8)
>>> packet = encode_packet(hdr, np.array([0, 5]), keys, np.array([1, 2]))
>>> len(packet) == HEADER_BYTES + 2 * SLOT_BYTES
True
>>> int(decode_packet(packet)[0]["bitmap"]) == (1 << 0) | (1 << 5)
True
>>> decode_packet(packet[:-1] + bytes([packet[-1] ^ 1]))  # doctest: +ELLIPSIS
Traceback (most recent call last):
switch_dataplane.wire.CorruptPacket: checksum 0x... does not match the packet's 0x...
"""

from __future__ import annotations

import enum
import json
import math
import sys
from typing import Any

import numpy as np

MAGIC = 0x4943  # "IC": in-network compute
VERSION = 3
DEFAULT_PORT = 9900

KEY_BYTES = 16
HEADER_BYTES = 44
SLOT_BYTES = KEY_BYTES + 4
MAX_SLOTS = 64  # the bitmap is 64 bits wide
MTU = 1500
MAX_UDP_PAYLOAD = MTU - 20 - 8  # IPv4 header + UDP header
MAX_SLOTS_PER_MTU = (MAX_UDP_PAYLOAD - HEADER_BYTES) // SLOT_BYTES  # 71 >= MAX_SLOTS
MAX_CONTROL_BYTES = MAX_UDP_PAYLOAD  # a control request or answer is one datagram
TOKEN_BITS = 64
#: An ``open_job`` needs no credential, so its request must be at least this large (padded):
#: its answer is never larger than what was asked.
MIN_OPEN_JOB_REQUEST = 512
INCARNATION_BITS = 32

SEQ_BITS = 32
SEQ_LIMIT = 1 << SEQ_BITS

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

if sys.byteorder != "little":  # the column/row hashes read keys as little-endian u32 words
    raise ImportError("inc-spark's switch emulator assumes a little-endian host")


class PacketType(enum.IntEnum):
    DATA = 1  # host -> switch: key-value slots of one flow
    DATA_RESPONSE = 2  # switch -> host: ACK plus residual / flushed slots
    DRAIN_REQUEST = 3  # host -> switch: read one column of one copy (seq = column in region)
    DRAIN_RESPONSE = 4  # switch -> host: the valid aggregators of that column, slot i = row i
    CONTROL_REQUEST = 5  # host -> control plane, JSON payload
    CONTROL_RESPONSE = 6  # control plane -> host, JSON payload


class Status(enum.IntEnum):
    OK = 0
    BELOW_WINDOW = 1  # seq is older than the flow's window: never aggregated
    STALE_EPOCH = 2  # packet's epoch is not the job's current epoch: never aggregated
    BAD_JOB = 3  # unknown job id or wrong token
    BAD_FLOW = 4  # flow id not open for this job and epoch
    BAD_REQUEST = 5  # e.g. drain column outside the region, slot beyond the job's slot count


_PACKET_TYPES = frozenset(int(t) for t in PacketType)


HEADER_DTYPE = np.dtype(
    [
        ("magic", ">u2"),
        ("version", "u1"),
        ("type", "u1"),
        ("status", "u1"),
        ("copy", "u1"),  # data response: copy that was active; drain: copy to read
        ("job_id", ">u2"),
        ("token", ">u8"),  # the job's secret; 0 in control packets (the JSON carries it)
        ("epoch", ">u4"),
        ("flow_id", ">u4"),  # control: client nonce used with seq to deduplicate requests
        ("seq", ">u4"),  # data: sequence number; drain: column index within the region
        ("incarnation", ">u4"),  # answers: the switch's per-boot random number
        ("bitmap", ">u8"),  # bit i set = slot i present
        ("checksum", ">u4"),  # CRC-32C of the datagram's other bytes (``checksum``)
    ]
)
SLOT_DTYPE = np.dtype([("key", "u1", (KEY_BYTES,)), ("value", ">i4")])

assert HEADER_DTYPE.itemsize == HEADER_BYTES
assert SLOT_DTYPE.itemsize == SLOT_BYTES

#: Header field byte offsets, for compiled code that parses raw buffers.
FIELD_OFFSET = {name: HEADER_DTYPE.fields[name][1] for name in HEADER_DTYPE.names}


class MalformedPacket(ValueError):
    """The bytes are not a well-formed v3 packet (wrong magic, version, length or bitmap)."""


class CorruptPacket(MalformedPacket):
    """The packet's checksum does not match its bytes: it was damaged on the way."""


_CHECKSUM_AT = HEADER_DTYPE.fields["checksum"][1]


def checksum(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C of a whole datagram except its 4 checksum bytes (``frame_check`` computes it).

    A CRC-32 detects every error burst of up to 32 bits and misses a random corruption with
    probability 2^-32 (a 16-bit sum would miss one in 65,536).
    """
    from switch_dataplane import frame_check  # it reads this module's layout

    if len(data) < HEADER_BYTES:
        raise MalformedPacket(f"{len(data)} bytes is shorter than the {HEADER_BYTES}-byte header")
    return frame_check.checksum(np.frombuffer(data, np.uint8), 0, len(data))


def seal(data: bytes | bytearray | memoryview) -> bytes:
    """The datagram with its checksum field set; every sender seals what it sends."""
    value = checksum(data).to_bytes(4, "big")
    return bytes(data[:_CHECKSUM_AT]) + value + bytes(data[_CHECKSUM_AT + 4 :])


def new_header(ptype: PacketType, **fields: int) -> np.ndarray:
    """A header record with magic and version filled in and the given fields set."""
    hdr = np.zeros((), HEADER_DTYPE)
    hdr["magic"] = MAGIC
    hdr["version"] = VERSION
    hdr["type"] = int(ptype)
    for name, value in fields.items():
        hdr[name] = value
    return hdr


def bitmap_of(slot_indices: np.ndarray) -> int:
    """The 64-bit bitmap with the given slot indices set."""
    bitmap = 0
    for i in np.asarray(slot_indices, dtype=np.int64).tolist():
        if not 0 <= i < MAX_SLOTS:
            raise ValueError(f"slot index {i} outside 0..{MAX_SLOTS - 1}")
        bitmap |= 1 << i
    return bitmap


def slot_indices(bitmap: int) -> list[int]:
    """Slot indices present in a bitmap, in wire order."""
    return [i for i in range(MAX_SLOTS) if bitmap >> i & 1]


def encode_packet(
    header: np.ndarray, slots: np.ndarray, keys: np.ndarray, values: np.ndarray
) -> bytes:
    """Header plus the given slots (indices ascending, keys ``(n, 16)`` u8, values int32)."""
    order = np.argsort(slots, kind="stable")
    slots = np.asarray(slots)[order]
    if len(slots) and (np.any(np.diff(slots) == 0)):
        raise ValueError("a slot index appears twice")
    values = np.asarray(values, np.int64)
    if len(values) and (values.min() < INT32_MIN or values.max() > INT32_MAX):
        raise ValueError("slot values must fit int32; larger values take the host path")
    keys = np.asarray(keys, np.uint8)
    if keys.size != KEY_BYTES * len(slots):
        raise ValueError(f"need {len(slots)} keys of {KEY_BYTES} bytes, got {keys.size} bytes")
    hdr = header.copy()
    hdr["bitmap"] = bitmap_of(slots)
    body = np.zeros(len(slots), SLOT_DTYPE)
    body["key"] = keys.reshape(-1, KEY_BYTES)[order]
    body["value"] = values[order]
    return seal(hdr.tobytes() + body.tobytes())


def encode_header(header: np.ndarray) -> bytes:
    """A packet that is only a header (a drain request, an answer without slots), sealed."""
    return seal(header.tobytes())


def decode_header(data: bytes | memoryview) -> np.ndarray:
    """Parse and validate the header's own fields; raises MalformedPacket with what was wrong
    (checked on the raw bytes first: a flood of garbage costs no record parsing).
    ``decode_packet`` and ``decode_control`` then check the length and the checksum."""
    if len(data) < HEADER_BYTES:
        raise MalformedPacket(f"{len(data)} bytes is shorter than the {HEADER_BYTES}-byte header")
    magic = data[0] << 8 | data[1]
    if magic != MAGIC:
        raise MalformedPacket(f"magic 0x{magic:04x} is not 0x{MAGIC:04x}")
    if data[2] != VERSION:
        raise MalformedPacket(f"protocol version {data[2]} is not {VERSION}")
    if data[3] not in _PACKET_TYPES:
        raise MalformedPacket(f"unknown packet type {data[3]}")
    return np.frombuffer(data, HEADER_DTYPE, count=1)[0]


def _check_intact(data: bytes | memoryview, hdr: np.ndarray) -> None:
    stored, computed = int(hdr["checksum"]), checksum(data)
    if stored != computed:
        raise CorruptPacket(f"checksum 0x{computed:08x} does not match the packet's 0x{stored:08x}")


def decode_packet(data: bytes | memoryview) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(header, slot indices, slot records) of a data/drain packet."""
    hdr = decode_header(data)
    indices = np.array(slot_indices(int(hdr["bitmap"])), dtype=np.int64)
    expected = HEADER_BYTES + SLOT_BYTES * len(indices)
    if len(data) != expected:
        raise MalformedPacket(
            f"{len(data)} bytes, but a bitmap with {len(indices)} slots needs {expected}"
        )
    _check_intact(data, hdr)
    body = np.frombuffer(data, SLOT_DTYPE, count=len(indices), offset=HEADER_BYTES)
    return hdr, indices, body


#: Bounds of a control request's JSON: a flat object of scalars.
MAX_CONTROL_FIELDS = 16
MAX_NUMBER_CHARS = 24  # enough for any 64-bit integer or float in JSON
MAX_STRING_CHARS = 1024  # names are shorter (the control plane's rule); padding is not


def encode_control(
    ptype: PacketType,
    client: int,
    request_id: int,
    message: dict[str, Any],
    incarnation: int = 0,
) -> bytes:
    """A control request or response: header (flow_id = client nonce, seq = request id) + JSON."""
    hdr = new_header(ptype, flow_id=client, seq=request_id, incarnation=incarnation)
    return seal(hdr.tobytes() + json.dumps(message, separators=(",", ":")).encode())


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise MalformedPacket(f"integer of {len(text)} digits; at most {MAX_NUMBER_CHARS}")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise MalformedPacket(f"number of {len(text)} characters; at most {MAX_NUMBER_CHARS}")
    value = float(text)
    if not math.isfinite(value):
        raise MalformedPacket(f"number {text} is not finite")
    return value


def _no_constant(name: str) -> float:
    raise MalformedPacket(f"{name} is not a number JSON allows here")


def _flat_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Only the top-level object may be one; its values are scalars (no nesting, so no depth)."""
    if len(pairs) > MAX_CONTROL_FIELDS:
        raise MalformedPacket(f"{len(pairs)} fields; at most {MAX_CONTROL_FIELDS}")
    for name, value in pairs:
        if isinstance(value, (dict, list)):
            raise MalformedPacket(f"field {name[:32]!r} is nested; control fields are scalars")
        if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
            raise MalformedPacket(f"field {name[:32]!r} is longer than {MAX_STRING_CHARS}")
    return dict(pairs)


def decode_control(data: bytes | memoryview) -> tuple[np.ndarray, dict[str, Any]]:
    """(header, message) of a control packet; raises MalformedPacket saying what was wrong.

    A request must be at most ``MAX_CONTROL_BYTES``, one flat JSON object of scalars, integers
    and floats bounded and finite; nesting is refused before the parser could recurse (any
    ``[`` or a second ``{``, inside strings too: no field of the protocol needs them). Answers
    come from the switch (hosts check source, nonce and request id) and may hold lists.
    """
    hdr = decode_header(data)
    _check_intact(data, hdr)
    payload = bytes(data[HEADER_BYTES:])
    if data[3] == PacketType.CONTROL_RESPONSE:
        return hdr, _json_object(payload, {})
    if len(data) > MAX_CONTROL_BYTES:
        raise MalformedPacket(f"control packet of {len(data)} bytes; at most {MAX_CONTROL_BYTES}")
    if payload.count(b"[") or payload.count(b"{") > 1:
        raise MalformedPacket("control payload must be one flat JSON object (no [ or nested {)")
    bounded = {
        "parse_int": _bounded_int,
        "parse_float": _bounded_float,
        "parse_constant": _no_constant,
        "object_pairs_hook": _flat_object,
    }
    return hdr, _json_object(payload, bounded)


def _json_object(payload: bytes, options: dict[str, Any]) -> dict[str, Any]:
    try:
        message = json.loads(payload.decode(), **options)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError: ValueError
        raise MalformedPacket(f"control payload is not UTF-8 JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise MalformedPacket("control payload must be a JSON object")
    return message
