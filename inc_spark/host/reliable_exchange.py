"""Reliable request/response exchange with the switch over UDP: window, timeouts, retransmits.

Both data streaming and drain reads are "send n numbered packets, take exactly one answer for
each": packet i carries sequence number ``base + i`` (data) or column ``i`` (drain). The switch
answers duplicates identically and never aggregates twice, so retransmitting is always safe;
here the first answer per packet is taken and later copies are ignored, so residual tuples are
never counted twice either.

- At most ``window`` packets past the lowest unanswered one are in flight (the switch's seen
  window: a retransmission is then always inside it).
- A packet is sent again when ``rto`` passes without an answer (doubling per try, capped), or
  sooner when three packets sent after it were answered first and its own answer still has
  not come ``REORDER_WINDOW_S`` later (time-based loss detection, as TCP's RACK: the switch
  answers a batch in runs of equal-size responses, so answers overtake each other within a
  batch without any loss).
- Runs of equal-size packets leave in one ``sendmsg`` (UDP GSO); answers arrive in GRO runs.
- No progress for ``deadline_s`` raises ``SwitchUnreachable`` with the switch address.
- An answer is believed only from the switch's address, echoing the job and token of the
  requests; datagrams from elsewhere, damaged ones (checksum) and unknown status bytes are
  dropped and counted. Answers carry the switch's incarnation: the one in the requests'
  headers (0: the first answer's), and another one raises ``SwitchRestarted``.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass

import numba
import numpy as np

from inc_spark.host.packer import PacketBatch
from switch_dataplane import frame_check, wire
from switch_dataplane.control.control_client import (
    SwitchRestarted,
    SwitchUnreachable,
    resolve,
)
from switch_dataplane.udp_io import RUN_BYTES, BatchSocket, receive_waiting

RECEIVE_BYTES = 1 << 20
FAST_RETRANSMIT_AFTER = 3
REORDER_WINDOW_S = 0.005
MAX_RTO_S = 1.0

_HDR = wire.HEADER_BYTES
_SLOT = wire.SLOT_BYTES
_OK = int(wire.Status.OK)


class ExchangeRejected(RuntimeError):
    """The switch refused a packet (stale epoch, closed job or flow): the call must be redone."""

    def __init__(self, status: wire.Status, detail: str) -> None:
        super().__init__(f"switch answered {status.name}: {detail}")
        self.status = status
        self.detail = detail

    def __reduce__(self) -> tuple:  # so executors and process pools can send it back
        return type(self), (self.status, self.detail)


@dataclass
class ExchangeStats:
    packets: int = 0
    retransmissions: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    answers: int = 0
    duplicate_answers: int = 0
    foreign_datagrams: int = 0  # not from the switch's address: never believed
    unknown_status: int = 0  # from the switch, but a status byte this host does not know
    corrupt_answers: int = 0  # from the switch, but its checksum does not match: as if lost

    def add(self, other: ExchangeStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Expect:
    """Which answers belong to this exchange."""

    ptype: int  # DATA_RESPONSE or DRAIN_RESPONSE
    job_id: int
    flow_id: int = -1  # data: the flow; drain: -1 (not checked)
    copy: int = -1  # drain: the copy read; data: -1
    base: int = 0  # seq of packet 0


@numba.njit(inline="always", cache=True)
def _be(buf: np.ndarray, off: int, nbytes: int) -> int:
    value = 0
    for i in range(nbytes):
        value = (value << 8) | int(buf[off + i])
    return value


_O_TYPE = 3
_O_STATUS = 4
_O_COPY = wire.FIELD_OFFSET["copy"]
_O_JOB = wire.FIELD_OFFSET["job_id"]
_O_TOKEN = wire.FIELD_OFFSET["token"]
_O_FLOW = wire.FIELD_OFFSET["flow_id"]
_O_SEQ = wire.FIELD_OFFSET["seq"]
_O_INCARNATION = wire.FIELD_OFFSET["incarnation"]
_MAGIC = wire.MAGIC
_VERSION = wire.VERSION
_MAX_STATUS = int(max(wire.Status))


@numba.njit(cache=True, nogil=True)
def take_answers(
    buf: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    from_switch: np.ndarray,
    ptype: int,
    job_id: int,
    token: np.ndarray,
    incarnation: int,
    flow_id: int,
    copy: int,
    base: int,
    answered: np.ndarray,
    out_keys: np.ndarray,
    out_values: np.ndarray,
    n_out: int,
) -> tuple[int, int, int, int, int, int, int, int, int]:
    """Mark the answers to packets ``base..base+len(answered)-1`` of one flow (data) or copy
    (drain) among ``offsets``/``lengths``, copy their slots out from ``n_out`` on. Only
    datagrams ``from_switch`` that echo the job's 8 ``token`` bytes count; others are skipped.
    ``incarnation`` -1: take the first answer's. -> (n_out, new answers, duplicates, a bad
    status seen, its seq, unknown statuses, corrupt answers, the incarnation, another
    incarnation seen or -1)."""
    fresh = 0
    duplicates = 0
    bad_status = _OK
    bad_seq = -1
    unknown = 0
    corrupt = 0
    other_incarnation = -1
    n = answered.shape[0]
    for p in range(offsets.shape[0]):
        off = offsets[p]
        length = lengths[p]
        if not from_switch[p] or length < _HDR:
            continue
        if not frame_check.intact(buf, off, length):  # damaged on the way: as if lost
            corrupt += 1
            continue
        if _be(buf, off, 2) != _MAGIC:
            continue
        if buf[off + 2] != _VERSION or buf[off + _O_TYPE] != ptype:
            continue
        if _be(buf, off + _O_JOB, 2) != job_id:
            continue
        forged = False
        for i in range(8):
            if buf[off + _O_TOKEN + i] != token[i]:
                forged = True
        if forged:
            continue
        seen = _be(buf, off + _O_INCARNATION, 4)
        if incarnation < 0:
            incarnation = seen
        elif seen != incarnation:
            other_incarnation = seen
            continue
        if flow_id >= 0 and _be(buf, off + _O_FLOW, 4) != flow_id:
            continue
        if copy >= 0 and buf[off + _O_COPY] != copy:
            continue
        i = _be(buf, off + _O_SEQ, 4) - base
        if i < 0 or i >= n:
            continue
        if answered[i]:
            duplicates += 1
            continue
        status = int(buf[off + _O_STATUS])
        if status > _MAX_STATUS:
            unknown += 1
            continue
        if status != _OK:
            bad_status = status
            bad_seq = i + base
            continue
        count = (length - _HDR) // _SLOT
        if length != _HDR + count * _SLOT or n_out + count > out_values.shape[0]:
            continue
        answered[i] = True
        fresh += 1
        pos = off + _HDR
        for _ in range(count):
            out_keys[n_out, :] = buf[pos : pos + 16]
            v = _be(buf, pos + 16, 4)
            out_values[n_out] = v - (1 << 32) if v >= (1 << 31) else v
            n_out += 1
            pos += _SLOT
    return (
        n_out,
        fresh,
        duplicates,
        bad_status,
        bad_seq,
        unknown,
        corrupt,
        incarnation,
        other_incarnation,
    )


class ReliableExchange:
    """Sends PacketBatches to one switch address and collects the slots of the answers."""

    def __init__(
        self,
        switch: tuple[str, int],
        window: int,
        rto_s: float = 0.05,
        deadline_s: float = 10.0,
    ) -> None:
        family, self.address = resolve(switch)
        self.sock = BatchSocket("::" if family == socket.AF_INET6 else "0.0.0.0", 0)
        self.switch = switch
        self.window = max(1, window)
        self.rto_s = rto_s
        self.deadline_s = deadline_s
        self.stats = ExchangeStats()
        self.incarnation = -1  # the switch's, once known
        self._token = np.zeros(8, np.uint8)  # the job's, as the requests carry it
        self._rx = np.zeros(RECEIVE_BYTES + RUN_BYTES, np.uint8)
        self._rx_view = memoryview(self._rx)

    def close(self) -> None:
        self.sock.close()

    def run(
        self, batch: PacketBatch, expect: Expect, max_slots: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Send every packet of ``batch`` until each is answered; -> (keys, values) returned."""
        n = len(batch)
        if n:
            head = int(batch.offsets[0])
            self._token = batch.buf[head + _O_TOKEN : head + _O_TOKEN + 8].copy()
            stated = int.from_bytes(
                bytes(batch.buf[head + _O_INCARNATION : head + _O_INCARNATION + 4]), "big"
            )
            if stated:
                self.incarnation = stated
        answered = np.zeros(n, bool)
        sent_at = np.zeros(n)
        tries = np.zeros(n, np.int64)
        overtaken_at = np.full(n, np.inf)  # when answers to later packets were first seen
        wait_s = self.rto_s / 2
        keys = np.zeros((max(1, n * max_slots), wire.KEY_BYTES), np.uint8)
        values = np.zeros(max(1, n * max_slots), np.int64)
        n_out = 0
        lowest = 0
        next_new = 0
        last_progress = time.monotonic()
        next_check = 0.0
        while lowest < n:
            limit = min(n, lowest + self.window)
            if next_new < limit:
                self._send_range(batch, next_new, limit)
                sent_at[next_new:limit] = time.monotonic()
                self.stats.packets += limit - next_new
                next_new = limit
            n_out, fresh = self._receive(expect, answered, keys, values, n_out, wait_s)
            now = time.monotonic()
            if fresh:
                last_progress = now
                while lowest < n and answered[lowest]:
                    lowest += 1
            elif now - last_progress > self.deadline_s:
                raise SwitchUnreachable(
                    f"no answer from the switch at {self.switch[0]}:{self.switch[1]} for "
                    f"{self.deadline_s:.0f} s ({lowest} of {n} packets answered); is it running "
                    "and reachable from this host?"
                )
            if not fresh or now >= next_check:  # answers flowing: look for losses now and then
                suspects = self._retransmit(
                    batch, answered, sent_at, tries, overtaken_at, lowest, next_new, now
                )
                wait_s = REORDER_WINDOW_S if suspects else self.rto_s / 2
                next_check = now + REORDER_WINDOW_S
        return keys[:n_out], values[:n_out]

    def _retransmit(
        self,
        batch: PacketBatch,
        answered: np.ndarray,
        sent_at: np.ndarray,
        tries: np.ndarray,
        overtaken_at: np.ndarray,
        lowest: int,
        next_new: int,
        now: float,
    ) -> bool:
        """Resend what is late or lost; -> whether some packet is suspected lost, not yet late."""
        pending = np.flatnonzero(~answered[lowest:next_new]) + lowest
        if not len(pending):
            return False
        rto = np.minimum(self.rto_s * (2.0 ** tries[pending]), MAX_RTO_S)
        late = sent_at[pending] + rto < now
        done = np.flatnonzero(answered[lowest:next_new]) + lowest
        suspects = False
        if len(done) >= FAST_RETRANSMIT_AFTER:
            # Answered packets sent after a pending one: lost, unless its answer is just late.
            third_last_sent = np.sort(sent_at[done])[-FAST_RETRANSMIT_AFTER]
            overtaken = (pending + FAST_RETRANSMIT_AFTER <= done[-1]) & (
                sent_at[pending] < third_last_sent
            )
            first_seen = np.minimum(overtaken_at[pending], np.where(overtaken, now, np.inf))
            overtaken_at[pending] = first_seen
            lost = first_seen + REORDER_WINDOW_S <= now
            suspects = bool((overtaken & ~lost & ~late).any())
            late |= lost
        for i in pending[late].tolist():
            self.sock.send(
                batch.buf[batch.offsets[i] : batch.offsets[i] + batch.lengths[i]], self.address
            )
            sent_at[i] = now
            overtaken_at[i] = np.inf
            tries[i] += 1
            self.stats.retransmissions += 1
            self.stats.bytes_sent += int(batch.lengths[i])
        return suspects

    def _send_range(self, batch: PacketBatch, start: int, end: int) -> None:
        """Send packets start..end-1: each run of equal sizes in one GSO call."""
        lengths = batch.lengths[start:end]
        cuts = np.flatnonzero(np.diff(lengths)) + 1
        for a, b in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(lengths)].tolist(), strict=True):
            first = batch.offsets[start + a]
            last = batch.offsets[start + b - 1] + batch.lengths[start + b - 1]
            self.sock.send_run(memoryview(batch.buf)[first:last], int(lengths[a]), self.address)
        self.stats.bytes_sent += int(lengths.sum())

    def _receive(
        self,
        expect: Expect,
        answered: np.ndarray,
        keys: np.ndarray,
        values: np.ndarray,
        n_out: int,
        wait_s: float,
    ) -> tuple[int, int]:
        """Wait up to ``wait_s`` for answers, then take everything waiting."""
        if not select.select([self.sock], [], [], wait_s)[0]:
            return n_out, 0
        waiting = receive_waiting(self.sock, self._rx_view, RECEIVE_BYTES)
        self.stats.bytes_received += waiting.nbytes
        offsets, lengths = waiting.offsets, waiting.lengths
        if not len(offsets):
            return n_out, 0
        from_switch = np.array(
            [(str(a[0]), int(a[1])) == self.address for a in waiting.senders], bool
        )[waiting.sender_of]
        self.stats.foreign_datagrams += int((~from_switch).sum())
        expected = self.incarnation
        n_out, fresh, duplicates, bad_status, bad_seq, unknown, corrupt, seen, other = take_answers(
            self._rx,
            offsets,
            lengths,
            from_switch,
            expect.ptype,
            expect.job_id,
            self._token,
            expected,
            expect.flow_id,
            expect.copy,
            expect.base,
            answered,
            keys,
            values,
            n_out,
        )
        self.stats.answers += fresh
        self.stats.duplicate_answers += duplicates
        self.stats.unknown_status += unknown
        self.stats.corrupt_answers += corrupt
        self.incarnation = seen
        if other >= 0:
            raise SwitchRestarted(self.switch, seen, other)
        if bad_status != _OK:
            status = wire.Status(bad_status)
            raise ExchangeRejected(
                status,
                f"packet {bad_seq} of job {expect.job_id} (epoch superseded, job closed or "
                "expired, or flow closed); redo the call in a fresh epoch",
            )
        return n_out, fresh
