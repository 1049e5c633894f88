"""The packet checksum: CRC-32C of a datagram's bytes except its own checksum field.

CRC-32C (the Castagnoli polynomial of iSCSI, SCTP and ext4) because CPUs compute it in
hardware: on x86 with SSE4.2 one ``crc32`` instruction folds 8 bytes, about 0.1 µs for a full
32-slot packet, where a table-driven CRC costs 0.8 µs, more than the pipeline spends on the
packet's 32 tuples. ``checksum`` uses the instruction where the CPU has it and a slicing-by-8
table otherwise; the two give the same value (tests hold both to a plain bitwise reference).
Every sender seals what it sends, every receiver checks before it reads a field
(docs/protocol.md §2a). The switch pipeline, the packer, the drain and the host's answer reader
call these kernels on their flat buffers; ``wire.checksum`` calls them on one datagram.

>>> import numpy as np
>>> datagram = np.frombuffer(bytes(range(100)), np.uint8)
>>> checksum(datagram, 0, 100) == checksum_table(datagram, 0, 100)
True
"""

from __future__ import annotations

from typing import Any

import llvmlite.binding
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core.extending import intrinsic

from switch_dataplane import wire

AT = wire.FIELD_OFFSET["checksum"]  # the 4 bytes a checksum leaves out
_POLY = 0x82F63B78  # CRC-32C, reflected
HARDWARE = "+sse4.2" in llvmlite.binding.get_host_cpu_features().flatten()


def _tables() -> np.ndarray:
    """``t[k, b]``: the CRC of byte ``b`` followed by ``k`` zero bytes (slicing-by-8)."""
    t = np.zeros((8, 256), np.uint32)
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        t[0, b] = c
    for k in range(1, 8):
        t[k] = (t[k - 1] >> 8) ^ t[0, t[k - 1] & 0xFF]
    return t


_T = _tables()


@intrinsic
def _load_u64(typingctx: Any, buf: types.Array, index: types.Integer) -> tuple:
    """The 8 bytes at ``buf[index:]`` as a little-endian u64 (an unaligned load)."""
    sig = types.uint64(buf, types.intp)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: tuple) -> ir.Value:
        array = context.make_array(signature.args[0])(context, builder, args[0])
        at = builder.gep(array.data, [args[1]])
        return builder.load(builder.bitcast(at, ir.IntType(64).as_pointer()), align=1)

    return sig, codegen


@intrinsic
def _crc32c_u64(typingctx: Any, crc: types.Integer, word: types.Integer) -> tuple:
    """SSE4.2 ``crc32`` over 8 bytes."""
    sig = types.uint64(types.uint64, types.uint64)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: tuple) -> ir.Value:
        i64 = ir.IntType(64)
        fn = builder.module.declare_intrinsic(
            "llvm.x86.sse42.crc32.64.64", fnty=ir.FunctionType(i64, [i64, i64])
        )
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def _crc32c_u8(typingctx: Any, crc: types.Integer, byte: types.Integer) -> tuple:
    """SSE4.2 ``crc32`` over one byte."""
    sig = types.uint32(types.uint32, types.uint8)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: tuple) -> ir.Value:
        i32, i8 = ir.IntType(32), ir.IntType(8)
        fn = builder.module.declare_intrinsic(
            "llvm.x86.sse42.crc32.32.8", fnty=ir.FunctionType(i32, [i32, i8])
        )
        return builder.call(fn, args)

    return sig, codegen


@numba.njit(inline="always", cache=True)
def _update_hardware(crc: np.uint32, buf: np.ndarray, start: int, end: int) -> np.uint32:
    wide = np.uint64(crc)
    i = start
    while i + 8 <= end:
        wide = _crc32c_u64(wide, _load_u64(buf, i))
        i += 8
    crc = np.uint32(wide)
    while i < end:
        crc = _crc32c_u8(crc, buf[i])
        i += 1
    return crc


@numba.njit(inline="always", cache=True)
def _update_table(crc: np.uint32, buf: np.ndarray, start: int, end: int) -> np.uint32:
    i = start
    while i + 8 <= end:
        word = _load_u64(buf, i) ^ np.uint64(crc)
        crc = np.uint32(0)
        for k in range(8):  # byte k of the word, looked up in table 7 - k
            crc ^= _T[7 - k, (word >> np.uint64(8 * k)) & np.uint64(0xFF)]
        i += 8
    while i < end:
        crc = _T[0, (crc ^ buf[i]) & 0xFF] ^ (crc >> np.uint32(8))
        i += 1
    return crc


@numba.njit(cache=True, nogil=True)
def checksum_table(buf: np.ndarray, off: int, length: int) -> int:
    """``checksum`` by the slicing-by-8 table (CPUs without a CRC-32C instruction)."""
    crc = _update_table(np.uint32(0xFFFFFFFF), buf, off, off + AT)
    crc = _update_table(crc, buf, off + AT + 4, off + length)
    return int(crc ^ np.uint32(0xFFFFFFFF))


if HARDWARE:

    @numba.njit(cache=True, nogil=True)
    def checksum(buf: np.ndarray, off: int, length: int) -> int:
        """CRC-32C of the datagram ``buf[off:off+length]`` without its checksum field."""
        crc = _update_hardware(np.uint32(0xFFFFFFFF), buf, off, off + AT)
        crc = _update_hardware(crc, buf, off + AT + 4, off + length)
        return int(crc ^ np.uint32(0xFFFFFFFF))

else:
    checksum = checksum_table


@numba.njit(cache=True, nogil=True)
def seal(buf: np.ndarray, off: int, length: int) -> None:
    """Write the checksum of the datagram at ``off`` into its header (big-endian)."""
    c = checksum(buf, off, length)
    for b in range(4):
        buf[off + AT + b] = (c >> (8 * (3 - b))) & 0xFF


@numba.njit(cache=True, nogil=True)
def intact(buf: np.ndarray, off: int, length: int) -> bool:
    """Whether the datagram at ``off`` carries its own checksum (length >= the header)."""
    stored = 0
    for b in range(4):
        stored = stored << 8 | int(buf[off + AT + b])
    return stored == checksum(buf, off, length)


@numba.njit(cache=True, nogil=True)
def seal_all(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> None:
    """Seal every datagram of a flat send buffer (``buf[offsets[i]:offsets[i]+lengths[i]]``)."""
    for i in range(offsets.shape[0]):
        seal(buf, offsets[i], lengths[i])
