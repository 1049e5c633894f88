"""The compiled per-packet pipeline: data and drain packets through the aggregator array.

One numba function processes a run of received packets strictly one after another, so a batch
gives exactly the result of feeding the packets one by one in arrival order (the reference
model in ``reference_model.py`` is the per-packet specification; tests compare the two). Per
packet each row of the aggregator array is touched at most once, with one read-modify-write,
as on a Tofino pipeline where row i lives in its own stages.

An aggregator also keeps its key's fingerprint, a hit count and the job's *phase* at its last
hit (the number of the job's flows closed so far this epoch, set by the control plane between
packets). The fingerprint alone decides whether a tuple hits (as the first stage of a row
would on a Tofino; the full key then decides whether the hit is absorbed). A tuple with
another fingerprint may *evict* a resident that was hit once and claimed before the latest
flow closed (a key seen by one finished task only): the resident's entry goes back to the host
in the tuple's answer slot and the tuple takes its place, so cold keys do not squat
aggregators that warmer keys later want (docs/hardware-model.md).

The fingerprint word also names the aggregator's owner: its top ``OWNER_BITS`` are the job id.
Jobs of the shared pool address the whole array (each with its own column salt), so another
job's key in a row is a fingerprint mismatch, i.e. a collision: never absorbed, never evicted,
never drained by anyone but its owner.

State lives in plain numpy arrays owned by ``dataplane.FastDataplane``; the layout constants
below name their columns. Packets are parsed from one flat receive buffer; every valid packet
starts at a 4-byte aligned offset (all valid lengths are multiples of 4 and the receiver aligns
each datagram), so key words are read through a uint32 view.
"""

from __future__ import annotations

import numba
import numpy as np

from switch_dataplane import frame_check, wire
from switch_dataplane.key_hash import COLUMN_SEED, key_mix_words

# Aggregator entry words: aa[copy, row, column, word].
K0, K1, K2, K3, VALUE, VALID, META, FINGERPRINT = 0, 1, 2, 3, 4, 5, 6, 7
ENTRY_WORDS = 8  # padded to 32 bytes so an entry never straddles a cache line
# META = hits | phase << PHASE_SHIFT: hits saturate at HITS_MAX, the phase is 16 bits (on a
# Tofino both share the valid bit's 32-bit register word).
HITS_MAX = 0x7FFF
PHASE_SHIFT = 16
PHASE_MASK = 0xFFFF
EVICTABLE_HITS = 1  # a resident hit at most this often, in an earlier phase, may be evicted
# FINGERPRINT = key fingerprint (low 24 bits) | owner job id << OWNER_SHIFT, one 32-bit word.
OWNER_BITS = 8
OWNER_SHIFT = 32 - OWNER_BITS
FINGERPRINT_MASK = (1 << OWNER_SHIFT) - 1
MAX_JOBS = 1 << OWNER_BITS

# Job table columns: jobs[job_id, field].
# The 64-bit token is matched as two 32-bit words, as a Tofino matches two PHV containers.
(
    J_ACTIVE,
    J_TOKEN_HI,
    J_TOKEN_LO,
    J_EPOCH,
    J_OFFSET,
    J_SIZE,
    J_AGG,
    J_WINDOW,
    J_COPY,
    J_PHASE,
    J_EVICT,
    J_SALT,
) = range(12)
JOB_FIELDS = 12

# Eviction log words: evict_log[flow_slot, window_index, word]: the entry a packet evicted,
# key words as stored, then the value (at most one a packet, as at most one flush value).
EVICT_LOG_WORDS = 5

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
    "evicted",
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
    C_EVICTED,
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
SWITCH_COUNTER_NAMES = ("packets", "malformed", "corrupt", "bad_job")
S_PACKETS, S_MALFORMED, S_CORRUPT, S_BAD_JOB = range(len(SWITCH_COUNTER_NAMES))

_O_COPY = wire.FIELD_OFFSET["copy"]
_O_JOB = wire.FIELD_OFFSET["job_id"]
_O_TOKEN = wire.FIELD_OFFSET["token"]
_O_EPOCH = wire.FIELD_OFFSET["epoch"]
_O_FLOW = wire.FIELD_OFFSET["flow_id"]
_O_SEQ = wire.FIELD_OFFSET["seq"]
_O_INCARNATION = wire.FIELD_OFFSET["incarnation"]
_O_BITMAP = wire.FIELD_OFFSET["bitmap"]
_MAGIC = wire.MAGIC
_VERSION = wire.VERSION
_HDR = wire.HEADER_BYTES
_SLOT = wire.SLOT_BYTES
_DATA = int(wire.PacketType.DATA)
_DATA_RESPONSE = int(wire.PacketType.DATA_RESPONSE)
_DRAIN_REQUEST = int(wire.PacketType.DRAIN_REQUEST)
_DRAIN_RESPONSE = int(wire.PacketType.DRAIN_RESPONSE)
_CONTROL_REQUEST = int(wire.PacketType.CONTROL_REQUEST)
_OK = int(wire.Status.OK)
_BELOW_WINDOW = int(wire.Status.BELOW_WINDOW)
_STALE_EPOCH = int(wire.Status.STALE_EPOCH)
_BAD_JOB = int(wire.Status.BAD_JOB)
_BAD_FLOW = int(wire.Status.BAD_FLOW)
_BAD_REQUEST = int(wire.Status.BAD_REQUEST)
_INT32_MIN = wire.INT32_MIN
_INT32_MAX = wire.INT32_MAX


@numba.njit(inline="always", cache=True)
def _bswap32(word: np.uint32) -> int:
    w = int(word)
    return ((w & 0xFF) << 24) | ((w >> 8 & 0xFF) << 16) | ((w >> 16 & 0xFF) << 8) | (w >> 24 & 0xFF)


@numba.njit(inline="always", cache=True)
def _signed32(v: int) -> int:
    return v - (1 << 32) if v >= (1 << 31) else v


def column_salt(job_id: int, shared: bool) -> int:
    """What a job's column hash is XORed with: 0 in a region of its own; in the shared pool a
    per-job odd multiple, whose low bits differ between any two jobs, so two jobs' copies of a
    hot key land in different columns instead of colliding forever."""
    return (job_id * 0x9E3779B1) & 0xFFFFFFFF if shared else 0


@numba.njit(inline="always", cache=True)
def _popcount(x: np.uint64) -> int:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@numba.njit(inline="always", cache=True)
def _respond(
    out32: np.ndarray,
    out: np.ndarray,
    p: int,
    ptype: int,
    status: int,
    copy: int,
    bitmap: np.uint64,
) -> None:
    """Turn the header copied into out[p] into a response header."""
    out[p, 3] = ptype
    out[p, 4] = status
    out[p, 5] = copy
    hi = int(bitmap >> np.uint64(32))
    lo = int(bitmap & np.uint64(0xFFFFFFFF))
    out32[p, _O_BITMAP // 4] = np.uint32(_bswap32(np.uint32(hi)))
    out32[p, _O_BITMAP // 4 + 1] = np.uint32(_bswap32(np.uint32(lo)))


@numba.njit(cache=True, nogil=True)
def control_packets(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices of the control requests among the packets, in order: the parser's branch to the
    switch CPU, which must see each one between the data around it."""
    found = np.empty(offsets.shape[0], np.int64)
    m = 0
    for p in range(offsets.shape[0]):
        if lengths[p] >= _HDR and buf[offsets[p] + 3] == _CONTROL_REQUEST:
            found[m] = p
            m += 1
    return found[:m]


@numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def process_run(
    buf: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    start: int,
    end: int,
    out: np.ndarray,
    out_lengths: np.ndarray,
    aa: np.ndarray,
    rows: int,
    columns: int,
    jobs: np.ndarray,
    counters: np.ndarray,
    switch_counters: np.ndarray,
    flows: np.ndarray,
    seen_seq: np.ndarray,
    seen_absorbed: np.ndarray,
    seen_flushed: np.ndarray,
    seen_evicted: np.ndarray,
    seen_copy: np.ndarray,
    flush_log: np.ndarray,
    evict_log: np.ndarray,
    incarnation: int,
) -> None:
    """Process packets ``start..end-1`` of ``buf`` in order, writing responses into ``out[p]``.

    ``aa`` is the aggregator array flattened to ``(2 * rows * columns, ENTRY_WORDS)``; every
    response carries the switch's ``incarnation``.
    ``out_lengths[p]`` is the response length, 0 when the packet is dropped (malformed or
    foreign). Control packets must not be in the run; the caller dispatches them in order.
    """
    buf32 = buf[: buf.shape[0] // 4 * 4].view(np.uint32)
    out32 = out.view(np.uint32)
    max_jobs = jobs.shape[0]
    max_flows = flows.shape[0]
    incarnation_word = np.uint32(_bswap32(np.uint32(incarnation & 0xFFFFFFFF)))
    entry_of = np.zeros(64, np.int64)  # per row: aggregator index of this packet's tuple
    fingerprint_of = np.zeros(64, np.uint32)  # per row: the tuple's key fingerprint
    valid_of = np.zeros(64, np.uint32)  # per row: its valid bit, read ahead
    row_mask = (
        np.uint64(0xFFFFFFFFFFFFFFFF)
        if rows == 64
        else (np.uint64(1) << np.uint64(rows)) - np.uint64(1)
    )
    for p in range(start, end):
        off = offsets[p]
        n = lengths[p]
        out_lengths[p] = 0
        switch_counters[S_PACKETS] += 1
        if n < _HDR or off % 4 != 0:
            switch_counters[S_MALFORMED] += 1
            continue
        w = off // 4
        first = _bswap32(buf32[w])
        if first >> 16 != _MAGIC or (first >> 8) & 0xFF != _VERSION:
            switch_counters[S_MALFORMED] += 1
            continue
        ptype = first & 0xFF
        bitmap = (np.uint64(_bswap32(buf32[w + _O_BITMAP // 4])) << np.uint64(32)) | np.uint64(
            _bswap32(buf32[w + _O_BITMAP // 4 + 1])
        )
        nslots = _popcount(bitmap)
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
        if not frame_check.intact(buf, off, n):
            switch_counters[S_CORRUPT] += 1
            continue

        response_type = _DATA_RESPONSE if ptype == _DATA else _DRAIN_RESPONSE
        for i in range(_HDR // 4):
            out32[p, i] = buf32[w + i]
        out32[p, _O_INCARNATION // 4] = incarnation_word
        out_lengths[p] = _HDR
        job = _bswap32(buf32[w + _O_JOB // 4]) & 0xFFFF
        token_hi = _bswap32(buf32[w + _O_TOKEN // 4])
        token_lo = _bswap32(buf32[w + _O_TOKEN // 4 + 1])
        if (
            job >= max_jobs
            or jobs[job, J_ACTIVE] == 0
            or jobs[job, J_TOKEN_HI] != token_hi
            or jobs[job, J_TOKEN_LO] != token_lo
        ):
            switch_counters[S_BAD_JOB] += 1
            _respond(out32, out, p, response_type, _BAD_JOB, 0, np.uint64(0))
            continue
        counters[job, C_PACKETS] += 1
        active = int(jobs[job, J_COPY])
        if _bswap32(buf32[w + _O_EPOCH // 4]) != jobs[job, J_EPOCH]:
            counters[job, C_STALE_EPOCH] += 1
            _respond(out32, out, p, response_type, _STALE_EPOCH, active, np.uint64(0))
            continue
        offset = jobs[job, J_OFFSET]
        size = jobs[job, J_SIZE]
        seq = _bswap32(buf32[w + _O_SEQ // 4])

        if ptype == _DRAIN_REQUEST:
            copy = int(buf[off + _O_COPY])
            counters[job, C_DRAIN_REQUESTS] += 1
            if seq >= size or copy > 1:
                counters[job, C_BAD_REQUEST] += 1
                _respond(out32, out, p, response_type, _BAD_REQUEST, copy, np.uint64(0))
                continue
            found = np.uint64(0)
            pos = _HDR // 4
            for row in range(rows):
                e = (copy * rows + row) * columns + offset + seq
                if aa[e, VALID] and aa[e, FINGERPRINT] >> OWNER_SHIFT == job:
                    found |= np.uint64(1) << np.uint64(row)
                    out32[p, pos] = aa[e, K0]
                    out32[p, pos + 1] = aa[e, K1]
                    out32[p, pos + 2] = aa[e, K2]
                    out32[p, pos + 3] = aa[e, K3]
                    out32[p, pos + 4] = np.uint32(_bswap32(aa[e, VALUE]))
                    pos += _SLOT // 4
                    counters[job, C_DRAINED_ENTRIES] += 1
            _respond(out32, out, p, response_type, _OK, copy, found)
            out_lengths[p] = pos * 4
            continue

        flow_id = _bswap32(buf32[w + _O_FLOW // 4])
        slot = flow_id & ((1 << FLOW_SLOT_BITS) - 1)
        gen = flow_id >> FLOW_SLOT_BITS
        if (
            slot >= max_flows
            or flows[slot, F_JOB] != job
            or flows[slot, F_GEN] != gen
            or flows[slot, F_EPOCH] != jobs[job, J_EPOCH]
        ):
            counters[job, C_BAD_FLOW] += 1
            _respond(out32, out, p, response_type, _BAD_FLOW, active, np.uint64(0))
            continue
        if bitmap & ~row_mask:
            counters[job, C_BAD_REQUEST] += 1
            _respond(out32, out, p, response_type, _BAD_REQUEST, active, np.uint64(0))
            continue
        window = jobs[job, J_WINDOW]
        high = flows[slot, F_HIGH]
        if seq + window < high:
            counters[job, C_BELOW_WINDOW] += 1
            _respond(out32, out, p, response_type, _BELOW_WINDOW, active, np.uint64(0))
            continue
        idx = seq & (window - 1)
        duplicate = seen_seq[slot, idx] == seq + 1
        agg = jobs[job, J_AGG]
        collisions = 0
        overflows = 0
        if duplicate:
            counters[job, C_DUPLICATES] += 1
            absorbed = seen_absorbed[slot, idx]
            flushed = seen_flushed[slot, idx]
            evicting = seen_evicted[slot, idx]
            copy = int(seen_copy[slot, idx])
        else:
            absorbed = np.uint64(0)
            flushed = np.uint64(0)
            evicting = np.uint64(0)
            copy = active
        returned = np.uint64(0)
        if not duplicate:
            salt = np.uint64(jobs[job, J_SALT])
            # Address every row first, then load every row's valid word in a loop of its own:
            # that loop is short enough for all of a packet's loads to be in flight at once
            # (in the hashing loop only a few were), so their cache misses overlap.
            src = w + _HDR // 4
            for row in range(rows):
                if bitmap >> np.uint64(row) & np.uint64(1):
                    h = key_mix_words(
                        buf32[src], buf32[src + 1], buf32[src + 2], buf32[src + 3], COLUMN_SEED
                    )
                    column = int((h ^ salt) & np.uint64(size - 1))
                    entry_of[row] = (copy * rows + row) * columns + offset + column
                    fingerprint_of[row] = (
                        np.uint32(h >> np.uint64(32)) & np.uint32(FINGERPRINT_MASK)
                    ) | np.uint32(job << OWNER_SHIFT)
                    src += _SLOT // 4
            for row in range(rows):
                if bitmap >> np.uint64(row) & np.uint64(1):
                    valid_of[row] = aa[entry_of[row], VALID]
        phase = jobs[job, J_PHASE]
        fresh_meta = np.uint32(1 | phase << PHASE_SHIFT)
        may_evict = jobs[job, J_EVICT] != 0
        log = evict_log[slot, idx]
        pos = _HDR // 4
        src = w + _HDR // 4
        for row in range(rows):
            bit = np.uint64(1) << np.uint64(row)
            if not bitmap & bit:
                continue
            w0 = buf32[src]
            w1 = buf32[src + 1]
            w2 = buf32[src + 2]
            w3 = buf32[src + 3]
            wv = buf32[src + 4]
            src += _SLOT // 4
            if not duplicate:
                value = _signed32(_bswap32(wv))
                e = entry_of[row]
                if valid_of[row] == 0:
                    aa[e, K0] = w0
                    aa[e, K1] = w1
                    aa[e, K2] = w2
                    aa[e, K3] = w3
                    aa[e, VALUE] = np.uint32(value & 0xFFFFFFFF)
                    aa[e, VALID] = 1
                    aa[e, META] = fresh_meta
                    aa[e, FINGERPRINT] = fingerprint_of[row]
                    absorbed |= bit
                elif aa[e, FINGERPRINT] == fingerprint_of[row]:
                    meta = int(aa[e, META])
                    hits = min((meta & HITS_MAX) + 1, HITS_MAX)
                    aa[e, META] = np.uint32(hits | phase << PHASE_SHIFT)
                    if aa[e, K0] == w0 and aa[e, K1] == w1 and aa[e, K2] == w2 and aa[e, K3] == w3:
                        stored = _signed32(int(aa[e, VALUE]))
                        absorbed |= bit
                        if agg == AGG_SUM:
                            total = stored + value
                            if _INT32_MIN <= total <= _INT32_MAX:
                                aa[e, VALUE] = np.uint32(total & 0xFFFFFFFF)
                            elif flushed == 0:  # one flush per packet: one logged value
                                flush_log[slot, idx] = stored
                                aa[e, VALUE] = np.uint32(value & 0xFFFFFFFF)
                                flushed = bit
                            else:  # a second overflow in this packet stays a residual
                                absorbed ^= bit
                                overflows += 1
                        elif agg == AGG_MIN:
                            if value < stored:
                                aa[e, VALUE] = np.uint32(value & 0xFFFFFFFF)
                        elif value > stored:
                            aa[e, VALUE] = np.uint32(value & 0xFFFFFFFF)
                    else:
                        collisions += 1
                else:
                    meta = int(aa[e, META])
                    if (
                        may_evict
                        and evicting == 0
                        and aa[e, FINGERPRINT] >> OWNER_SHIFT == job
                        and (meta & HITS_MAX) <= EVICTABLE_HITS
                        and meta >> PHASE_SHIFT != phase
                    ):
                        log[0] = aa[e, K0]
                        log[1] = aa[e, K1]
                        log[2] = aa[e, K2]
                        log[3] = aa[e, K3]
                        log[4] = aa[e, VALUE]
                        aa[e, K0] = w0
                        aa[e, K1] = w1
                        aa[e, K2] = w2
                        aa[e, K3] = w3
                        aa[e, VALUE] = np.uint32(value & 0xFFFFFFFF)
                        aa[e, META] = fresh_meta
                        aa[e, FINGERPRINT] = fingerprint_of[row]
                        evicting = bit
                        absorbed |= bit
                    else:
                        collisions += 1
            if absorbed & bit and not (flushed | evicting) & bit:
                continue
            returned |= bit
            if evicting & bit:
                for i in range(4):
                    out32[p, pos + i] = log[i]
                out32[p, pos + 4] = np.uint32(_bswap32(log[4]))
            elif flushed & bit:
                out32[p, pos] = w0
                out32[p, pos + 1] = w1
                out32[p, pos + 2] = w2
                out32[p, pos + 3] = w3
                out32[p, pos + 4] = np.uint32(
                    _bswap32(np.uint32(flush_log[slot, idx] & 0xFFFFFFFF))
                )
            else:
                out32[p, pos] = w0
                out32[p, pos + 1] = w1
                out32[p, pos + 2] = w2
                out32[p, pos + 3] = w3
                out32[p, pos + 4] = wv
            pos += _SLOT // 4
        if not duplicate:
            seen_seq[slot, idx] = seq + 1
            seen_absorbed[slot, idx] = absorbed
            seen_flushed[slot, idx] = flushed
            seen_evicted[slot, idx] = evicting
            seen_copy[slot, idx] = copy
            if seq + 1 > high:
                flows[slot, F_HIGH] = seq + 1
            counters[job, C_TUPLES] += nslots
            counters[job, C_ABSORBED] += nslots - collisions - overflows
            counters[job, C_RESIDUAL] += collisions + overflows
            counters[job, C_FLUSHED] += _popcount(flushed)
            counters[job, C_EVICTED] += _popcount(evicting)
            counters[job, C_COPY0_TUPLES + copy] += nslots
            counters[job, C_COPY0_COLLISIONS + copy] += collisions
        _respond(out32, out, p, response_type, _OK, copy, returned)
        out_lengths[p] = pos * 4
    flat = out.reshape(-1)
    for p in range(start, end):
        if out_lengths[p]:
            frame_check.seal(flat, p * out.shape[1], out_lengths[p])
