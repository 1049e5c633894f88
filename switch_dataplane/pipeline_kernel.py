"""The compiled per-packet pipeline: data and drain packets through the aggregator array.

One numba function processes a run of received packets strictly one after another, so a batch
gives exactly the result of feeding the packets one by one in arrival order (the reference
model in ``reference_model.py`` is the per-packet specification; tests compare the two). Per
packet each row of the aggregator array is touched at most once, with one read-modify-write,
as on a Tofino pipeline where row i lives in its own stages.

State lives in plain numpy arrays owned by ``dataplane.FastDataplane``; the layout constants
below name their columns. Packets are parsed from one flat receive buffer; every valid packet
starts at a 4-byte aligned offset (all valid lengths are multiples of 4 and the receiver aligns
each datagram), so key words are read through a uint32 view.
"""

from __future__ import annotations

import numba
import numpy as np

from switch_dataplane import wire
from switch_dataplane.key_hash import COLUMN_SEED, murmur3_words

# Aggregator entry words: aa[copy, row, column, word].
K0, K1, K2, K3, VALUE, VALID = 0, 1, 2, 3, 4, 5
ENTRY_WORDS = 8  # padded to 32 bytes so an entry never straddles a cache line

# Job table columns: jobs[job_id, field].
J_ACTIVE, J_TOKEN, J_EPOCH, J_OFFSET, J_SIZE, J_AGG, J_WINDOW, J_COPY = range(8)
JOB_FIELDS = 8

AGG_SUM, AGG_MIN, AGG_MAX = 0, 1, 2
AGG_CODES = {"sum": AGG_SUM, "min": AGG_MIN, "max": AGG_MAX}

# Flow table columns: flows[flow_slot, field]; flow_id on the wire = generation << 16 | slot.
F_JOB, F_GEN, F_EPOCH, F_HIGH = range(4)
FLOW_FIELDS = 4
FLOW_SLOT_BITS = 16

# Per-job counters of the current epoch: counters[job_id, counter].
COUNTER_NAMES = (
    "packets",
    "tuples",
    "absorbed",
    "residual",
    "flushed",
    "duplicates",
    "below_window",
    "stale_epoch",
    "bad_flow",
    "bad_request",
    "drain_requests",
    "drained_entries",
    "copy0_tuples",
    "copy1_tuples",
    "copy0_collisions",
    "copy1_collisions",
)
(
    C_PACKETS,
    C_TUPLES,
    C_ABSORBED,
    C_RESIDUAL,
    C_FLUSHED,
    C_DUPLICATES,
    C_BELOW_WINDOW,
    C_STALE_EPOCH,
    C_BAD_FLOW,
    C_BAD_REQUEST,
    C_DRAIN_REQUESTS,
    C_DRAINED_ENTRIES,
    C_COPY0_TUPLES,
    C_COPY1_TUPLES,
    C_COPY0_COLLISIONS,
    C_COPY1_COLLISIONS,
) = range(len(COUNTER_NAMES))

# Switch-wide counters.
SWITCH_COUNTER_NAMES = ("packets", "malformed", "bad_job")
S_PACKETS, S_MALFORMED, S_BAD_JOB = range(len(SWITCH_COUNTER_NAMES))

_O_COPY = wire.FIELD_OFFSET["copy"]
_O_JOB = wire.FIELD_OFFSET["job_id"]
_O_TOKEN = wire.FIELD_OFFSET["token"]
_O_EPOCH = wire.FIELD_OFFSET["epoch"]
_O_FLOW = wire.FIELD_OFFSET["flow_id"]
_O_SEQ = wire.FIELD_OFFSET["seq"]
_O_BITMAP = wire.FIELD_OFFSET["bitmap"]
_MAGIC = wire.MAGIC
_VERSION = wire.VERSION
_HDR = wire.HEADER_BYTES
_SLOT = wire.SLOT_BYTES
_DATA = int(wire.PacketType.DATA)
_DATA_RESPONSE = int(wire.PacketType.DATA_RESPONSE)
_DRAIN_REQUEST = int(wire.PacketType.DRAIN_REQUEST)
_DRAIN_RESPONSE = int(wire.PacketType.DRAIN_RESPONSE)
_OK = int(wire.Status.OK)
_BELOW_WINDOW = int(wire.Status.BELOW_WINDOW)
_STALE_EPOCH = int(wire.Status.STALE_EPOCH)
_BAD_JOB = int(wire.Status.BAD_JOB)
_BAD_FLOW = int(wire.Status.BAD_FLOW)
_BAD_REQUEST = int(wire.Status.BAD_REQUEST)
_INT32_MIN = wire.INT32_MIN
_INT32_MAX = wire.INT32_MAX


@numba.njit(inline="always", cache=True)
def _read_be(buf: np.ndarray, off: int, nbytes: int) -> int:
    value = 0
    for i in range(nbytes):
        value = (value << 8) | int(buf[off + i])
    return value


@numba.njit(inline="always", cache=True)
def _read_be64(buf: np.ndarray, off: int) -> np.uint64:
    value = np.uint64(0)
    for i in range(8):
        value = (value << np.uint64(8)) | np.uint64(buf[off + i])
    return value


@numba.njit(inline="always", cache=True)
def _write_be(out: np.ndarray, off: int, nbytes: int, value: int) -> None:
    for i in range(nbytes - 1, -1, -1):
        out[off + i] = value & 0xFF
        value >>= 8


@numba.njit(inline="always", cache=True)
def _write_be64(out: np.ndarray, off: int, value: np.uint64) -> None:
    for i in range(7, -1, -1):
        out[off + i] = np.uint8(value & np.uint64(0xFF))
        value >>= np.uint64(8)


@numba.njit(inline="always", cache=True)
def _bswap_signed(word: np.uint32) -> int:
    """A big-endian int32 read as a native little-endian u32 word -> Python-like int."""
    w = int(word)
    v = ((w & 0xFF) << 24) | ((w >> 8 & 0xFF) << 16) | ((w >> 16 & 0xFF) << 8) | (w >> 24 & 0xFF)
    return v - (1 << 32) if v >= (1 << 31) else v


@numba.njit(inline="always", cache=True)
def _bswap_unsigned(value: int) -> np.uint32:
    v = value & 0xFFFFFFFF
    return np.uint32(
        ((v & 0xFF) << 24) | ((v >> 8 & 0xFF) << 16) | ((v >> 16 & 0xFF) << 8) | (v >> 24 & 0xFF)
    )


@numba.njit(inline="always", cache=True)
def _stored_value(word: np.uint32) -> int:
    v = int(word)
    return v - (1 << 32) if v >= (1 << 31) else v


@numba.njit(inline="always", cache=True)
def _respond(out: np.ndarray, p: int, ptype: int, status: int, copy: int, bitmap: np.uint64) -> None:
    out[p, 3] = ptype
    out[p, 4] = status
    out[p, 5] = copy
    _write_be64(out[p], _O_BITMAP, bitmap)


@numba.njit(cache=True)
def process_run(
    buf: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    start: int,
    end: int,
    out: np.ndarray,
    out_lengths: np.ndarray,
    aa: np.ndarray,
    jobs: np.ndarray,
    counters: np.ndarray,
    switch_counters: np.ndarray,
    flows: np.ndarray,
    seen_seq: np.ndarray,
    seen_absorbed: np.ndarray,
    seen_flushed: np.ndarray,
    seen_copy: np.ndarray,
    flush_log: np.ndarray,
) -> None:
    """Process packets ``start..end-1`` of ``buf`` in order, writing responses into ``out[p]``.

    ``out_lengths[p]`` is the response length, 0 when the packet is dropped (malformed or
    foreign). Control packets must not be in the run; the caller dispatches them in order.
    """
    buf32 = buf.view(np.uint32)
    rows = aa.shape[1]
    max_jobs = jobs.shape[0]
    max_flows = flows.shape[0]
    for p in range(start, end):
        off = offsets[p]
        n = lengths[p]
        out_lengths[p] = 0
        switch_counters[S_PACKETS] += 1
        if n < _HDR or off % 4 != 0:
            switch_counters[S_MALFORMED] += 1
            continue
        if _read_be(buf, off, 2) != _MAGIC or buf[off + 2] != _VERSION:
            switch_counters[S_MALFORMED] += 1
            continue
        ptype = int(buf[off + 3])
        bitmap = _read_be64(buf, off + _O_BITMAP)
        nslots = 0
        for i in range(64):
            if bitmap >> np.uint64(i) & np.uint64(1):
                nslots += 1
        if ptype == _DATA:
            if n != _HDR + _SLOT * nslots:
                switch_counters[S_MALFORMED] += 1
                continue
        elif ptype == _DRAIN_REQUEST:
            if n != _HDR or bitmap != 0:
                switch_counters[S_MALFORMED] += 1
                continue
        else:
            switch_counters[S_MALFORMED] += 1
            continue

        response_type = _DATA_RESPONSE if ptype == _DATA else _DRAIN_RESPONSE
        out[p, :_HDR] = buf[off : off + _HDR]
        out_lengths[p] = _HDR
        job = _read_be(buf, off + _O_JOB, 2)
        token = _read_be(buf, off + _O_TOKEN, 4)
        if job >= max_jobs or jobs[job, J_ACTIVE] == 0 or jobs[job, J_TOKEN] != token:
            switch_counters[S_BAD_JOB] += 1
            _respond(out, p, response_type, _BAD_JOB, 0, np.uint64(0))
            continue
        counters[job, C_PACKETS] += 1
        active = int(jobs[job, J_COPY])
        if _read_be(buf, off + _O_EPOCH, 4) != jobs[job, J_EPOCH]:
            counters[job, C_STALE_EPOCH] += 1
            _respond(out, p, response_type, _STALE_EPOCH, active, np.uint64(0))
            continue
        offset = jobs[job, J_OFFSET]
        size = jobs[job, J_SIZE]
        seq = _read_be(buf, off + _O_SEQ, 4)

        if ptype == _DRAIN_REQUEST:
            copy = int(buf[off + _O_COPY])
            counters[job, C_DRAIN_REQUESTS] += 1
            if seq >= size or copy > 1:
                counters[job, C_BAD_REQUEST] += 1
                _respond(out, p, response_type, _BAD_REQUEST, copy, np.uint64(0))
                continue
            column = offset + seq
            found = np.uint64(0)
            pos = _HDR
            for row in range(rows):
                entry = aa[copy, row, column]
                if entry[VALID]:
                    found |= np.uint64(1) << np.uint64(row)
                    for j in range(4):
                        word = int(entry[K0 + j])
                        for b in range(4):
                            out[p, pos + 4 * j + b] = (word >> (8 * b)) & 0xFF
                    _write_be(out[p], pos + 16, 4, int(entry[VALUE]))
                    pos += _SLOT
                    counters[job, C_DRAINED_ENTRIES] += 1
            _respond(out, p, response_type, _OK, copy, found)
            out_lengths[p] = pos
            continue

        flow_id = _read_be(buf, off + _O_FLOW, 4)
        slot = flow_id & ((1 << FLOW_SLOT_BITS) - 1)
        gen = flow_id >> FLOW_SLOT_BITS
        if (
            slot >= max_flows
            or flows[slot, F_JOB] != job
            or flows[slot, F_GEN] != gen
            or flows[slot, F_EPOCH] != jobs[job, J_EPOCH]
        ):
            counters[job, C_BAD_FLOW] += 1
            _respond(out, p, response_type, _BAD_FLOW, active, np.uint64(0))
            continue
        if rows < 64 and bitmap >> np.uint64(rows) != 0:
            counters[job, C_BAD_REQUEST] += 1
            _respond(out, p, response_type, _BAD_REQUEST, active, np.uint64(0))
            continue
        window = jobs[job, J_WINDOW]
        high = flows[slot, F_HIGH]
        if seq + window < high:
            counters[job, C_BELOW_WINDOW] += 1
            _respond(out, p, response_type, _BELOW_WINDOW, active, np.uint64(0))
            continue
        idx = seq % window
        duplicate = seen_seq[slot, idx] == seq + 1
        agg = jobs[job, J_AGG]
        tuples = 0
        collisions = 0
        if duplicate:
            counters[job, C_DUPLICATES] += 1
            absorbed = seen_absorbed[slot, idx]
            flushed = seen_flushed[slot, idx]
            copy = int(seen_copy[slot, idx])
        else:
            absorbed = np.uint64(0)
            flushed = np.uint64(0)
            copy = active
        returned = np.uint64(0)
        pos = _HDR
        src = off + _HDR
        for row in range(rows):
            bit = np.uint64(1) << np.uint64(row)
            if not bitmap & bit:
                continue
            w = src // 4
            w0 = buf32[w]
            w1 = buf32[w + 1]
            w2 = buf32[w + 2]
            w3 = buf32[w + 3]
            value = _bswap_signed(buf32[w + 4])
            src += _SLOT
            if not duplicate:
                tuples += 1
                h = murmur3_words(w0, w1, w2, w3, COLUMN_SEED)
                column = offset + (h & (size - 1))
                entry = aa[copy, row, column]
                if entry[VALID] == 0:
                    entry[K0] = w0
                    entry[K1] = w1
                    entry[K2] = w2
                    entry[K3] = w3
                    entry[VALUE] = np.uint32(value & 0xFFFFFFFF)
                    entry[VALID] = 1
                    absorbed |= bit
                elif entry[K0] == w0 and entry[K1] == w1 and entry[K2] == w2 and entry[K3] == w3:
                    stored = _stored_value(entry[VALUE])
                    if agg == AGG_SUM:
                        total = stored + value
                        if total < _INT32_MIN or total > _INT32_MAX:
                            flush_log[slot, idx, row] = stored
                            entry[VALUE] = np.uint32(value & 0xFFFFFFFF)
                            flushed |= bit
                        else:
                            entry[VALUE] = np.uint32(total & 0xFFFFFFFF)
                    elif agg == AGG_MIN:
                        if value < stored:
                            entry[VALUE] = np.uint32(value & 0xFFFFFFFF)
                    elif value > stored:
                        entry[VALUE] = np.uint32(value & 0xFFFFFFFF)
                    absorbed |= bit
                else:
                    collisions += 1
            if absorbed & bit and not flushed & bit:
                continue
            returned |= bit
            out[p, pos : pos + 16] = buf[src - _SLOT : src - 4]
            if flushed & bit:
                _write_be(out[p], pos + 16, 4, int(flush_log[slot, idx, row]) & 0xFFFFFFFF)
            else:
                out[p, pos + 16 : pos + 20] = buf[src - 4 : src]
            pos += _SLOT
        if not duplicate:
            seen_seq[slot, idx] = seq + 1
            seen_absorbed[slot, idx] = absorbed
            seen_flushed[slot, idx] = flushed
            seen_copy[slot, idx] = copy
            if seq + 1 > high:
                flows[slot, F_HIGH] = seq + 1
            n_flushed = 0
            for row in range(rows):
                if flushed >> np.uint64(row) & np.uint64(1):
                    n_flushed += 1
            counters[job, C_TUPLES] += tuples
            counters[job, C_ABSORBED] += tuples - collisions
            counters[job, C_RESIDUAL] += collisions
            counters[job, C_FLUSHED] += n_flushed
            counters[job, C_COPY0_TUPLES + copy] += tuples
            counters[job, C_COPY0_COLLISIONS + copy] += collisions
        _respond(out, p, response_type, _OK, copy, returned)
        out_lengths[p] = pos
