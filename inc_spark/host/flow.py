"""One sender's flow: pairs or encoded batches in, packed multi-tuple packets out through the
reliable exchange, residuals kept."""

from __future__ import annotations

import itertools
import operator
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from inc_spark.host import key_codec
from inc_spark.host.job import OPS, JobTicket, StreamResult, open_flow
from inc_spark.host.packer import Combiner, PacketBatch, pack
from inc_spark.host.reliable_exchange import Expect, ReliableExchange
from switch_dataplane import wire

BATCH_TUPLES = 65536
COMBINE_KEYS = 1 << 21  # distinct keys a flow combines in memory before it sends them
# Pairs turned into arrays at a time when streaming without pre-combine: the batch's tuples and
# strings then never pile up beyond the CPU caches (64 K pairs at once cost ~2.5x the CPU time
# of 4 K-pair chunks, most of it cache misses and garbage-collector passes).
CHUNK_PAIRS = 4096
_first = operator.itemgetter(0)
_second = operator.itemgetter(1)


def _split_batch(
    keys: list, values: list, op: str, result: StreamResult
) -> tuple[np.ndarray, np.ndarray]:
    """Encoded keys and int64 values of the pairs that may travel; the rest go host path."""
    encoded, fits = key_codec.encode_keys(keys)
    if op == "count":
        ints = np.ones(len(keys), np.int64)
        in_range = np.ones(len(keys), bool)
    else:
        ints, in_range = _int32_values(values)
    travel = fits & in_range
    if not travel.all():
        for i in np.flatnonzero(~travel).tolist():
            result.add_host(keys[i], 1 if op == "count" else values[i])
    return encoded[travel], ints[travel]


def _int32_values(values: list) -> tuple[np.ndarray, np.ndarray]:
    """int64 copies of the values and which of them travel: Python ints (exactly: not bools,
    whose sum with nothing else stays a bool, nor numpy scalars or arrays, whose arithmetic is
    numpy's) within int32. The others take the host path, with Python semantics."""
    n = len(values)
    if set(map(type, values)) == {int}:
        try:
            ints = np.fromiter(values, np.int64, n)
        except OverflowError:  # beyond int64: per value
            pass
        else:
            return ints, (ints >= wire.INT32_MIN) & (ints <= wire.INT32_MAX)
    ok = np.fromiter(
        (type(v) is int and wire.INT32_MIN <= v <= wire.INT32_MAX for v in values), bool, n
    )
    ints = np.zeros(n, np.int64)
    ints[ok] = [v for v, good in zip(values, ok.tolist(), strict=True) if good]
    return ints, ok


class FlowStream:
    """One sender's flow: encoded batches in, residuals kept; use as a context manager.

    The lower-level interface under ``stream_pairs``, for callers that encode keys themselves
    (Arrow columns). With ``pre_combine`` (the default) the batches of the whole flow are
    combined first (``packer.Combiner``: at most ``combine_keys`` distinct keys in memory, as
    Spark's map-side combine), so each key is sent once, hottest first, when the flow ends or
    the bound is reached; without, each batch is sent as it comes (pure streaming). Packed
    batches go to a sender thread, so the caller prepares the next one (compiled, GIL
    released) while the switch answers; at most ``QUEUED_BATCHES`` wait (backpressure).
    Leaving the ``with`` block normally sends what is left, waits for every answer and closes
    the flow (recorded as closed with its packet count); an exception, here or in the sender,
    leaves it open, so the epoch reads as dirty.

    A ``local_ticket`` gives the same flow without a switch: every combined tuple stays with
    the host as a residual (the no-switch baseline of each INC path).
    """

    QUEUED_BATCHES = 2

    def __init__(
        self,
        ticket: JobTicket,
        partition: int = 0,
        attempt: int = 0,
        pre_combine: bool = True,
        combine_keys: int = COMBINE_KEYS,
    ) -> None:
        self.ticket = ticket
        self.local = ticket.switch is None
        self.result = StreamResult(ticket.op)
        self.combiner = Combiner(OPS[ticket.op][0], combine_keys) if pre_combine else None
        self.seq = 0
        self._wide: list[tuple[np.ndarray, np.ndarray]] = []
        self._sender_error: BaseException | None = None
        if self.local:
            return
        self.control = ticket.control()
        flow = open_flow(self.control, ticket, partition, attempt)
        self.flow_id = flow["flow_id"]
        self.header = wire.new_header(
            wire.PacketType.DATA,
            job_id=ticket.job_id,
            token=ticket.token,
            epoch=ticket.epoch,
            flow_id=self.flow_id,
            incarnation=ticket.incarnation,
        )
        self.exchange = ReliableExchange(
            ticket.switch, flow["window"], deadline_s=ticket.deadline_s
        )
        self._packed: queue.Queue[tuple[PacketBatch, Expect] | None] = queue.Queue(
            self.QUEUED_BATCHES
        )
        self._sender = threading.Thread(target=self._send_packed, name="inc-sender", daemon=True)
        self._sender.start()

    def __enter__(self) -> FlowStream:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None and self.combiner is not None:
            self._ship(*self.combiner.take())
        for keys, values in self._wide:
            self.result.add_encoded(keys, values)
        if self.local:
            return
        self._packed.put(None)
        self._sender.join()
        self.result.exchange = self.exchange.stats
        self.exchange.close()
        try:
            if exc_type is None and self._sender_error is not None:
                raise self._sender_error
            if exc_type is None:
                self.control.request(
                    "close_flow",
                    job_id=self.ticket.job_id,
                    token=self.ticket.token,
                    flow_id=self.flow_id,
                    packets=self.seq,
                )
        finally:
            self.control.close()

    def _send_packed(self) -> None:
        """Sender thread: exchange each packed batch in order; after an error, only drain."""
        while (item := self._packed.get()) is not None:
            if self._sender_error is not None:
                continue
            packets, expect = item
            try:
                keys, values = self.exchange.run(packets, expect, self.ticket.slots)
            except BaseException as exc:  # raised in the caller's thread by send() or __exit__
                self._sender_error = exc
                continue
            if len(values):
                self.result.add_encoded(keys, values)

    def send(self, encoded: np.ndarray, ints: np.ndarray) -> None:
        """Stream encoded keys with int64 values, each within int32 (a combined value beyond
        int32 is kept on the host)."""
        if self._sender_error is not None:
            raise self._sender_error
        if self.combiner is None:
            self._ship(encoded, ints)
            return
        for keys, values in self.combiner.add(encoded, ints):
            self._ship(keys, values)

    def _ship(self, encoded: np.ndarray, ints: np.ndarray) -> None:
        """Send tuples in packed batches of at most ``BATCH_TUPLES`` (no switch: keep them)."""
        wide = (ints < wire.INT32_MIN) | (ints > wire.INT32_MAX)
        if wide.any():  # kept aside: the sender thread owns result's residual lists
            self._wide.append((encoded[wide], ints[wide]))
            encoded, ints = encoded[~wide], ints[~wide]
        if not len(ints):
            return
        if self.local:
            self.result.add_encoded(encoded, ints)
            return
        for start in range(0, len(ints), BATCH_TUPLES):
            self._pack(encoded[start : start + BATCH_TUPLES], ints[start : start + BATCH_TUPLES])

    def _pack(self, encoded: np.ndarray, ints: np.ndarray) -> None:
        if self.seq + len(ints) >= wire.SEQ_LIMIT:
            raise OverflowError("a flow carries at most 2**32 packets")
        packets = pack(encoded, ints, self.ticket.slots, self.header, self.seq)
        expect = Expect(
            int(wire.PacketType.DATA_RESPONSE),
            self.ticket.job_id,
            flow_id=self.flow_id,
            base=self.seq,
        )
        self.seq += len(packets)
        self.result.tuples_sent += len(ints)
        self._packed.put((packets, expect))


def stream_pairs(
    ticket: JobTicket,
    pairs: Iterable[tuple[Any, Any]],
    partition: int = 0,
    attempt: int = 0,
    pre_combine: bool = True,
    batch_tuples: int = BATCH_TUPLES,
    combine_keys: int = COMBINE_KEYS,
) -> StreamResult:
    """Stream pairs on a new flow of the ticket's job; -> what the switch did not absorb.

    With ``pre_combine`` every ``batch_tuples`` pairs are combined in a dict, so only their
    distinct keys are encoded, and the flow combines the encoded batches of the whole
    partition (as vanilla reduceByKey's map side does) before it sends them; without, every
    pair travels, encoded in chunks of ``CHUNK_PAIRS``.
    """
    with FlowStream(ticket, partition, attempt, pre_combine, combine_keys) as flow:
        batches = _combined_batches if pre_combine else _chunked_batches
        for encoded, ints in batches(iter(pairs), ticket.op, batch_tuples, flow.result):
            flow.send(encoded, ints)
    return flow.result


def _combined_batches(
    pairs: Iterator[tuple[Any, Any]], op: str, batch_tuples: int, result: StreamResult
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Encoded batches of distinct keys, each combining up to ``batch_tuples`` pairs."""
    if op == "count":
        pairs, op = ((key, 1) for key, _ in pairs), "sum"  # counts are then summed
    combine_values = OPS[op][1]
    while True:
        batch: dict[Any, Any] = {}
        taken = 0
        for key, value in itertools.islice(pairs, batch_tuples):
            batch[key] = combine_values(batch[key], value) if key in batch else value
            taken += 1
        result.tuples_in += taken
        if batch:
            yield _split_batch(list(batch), list(batch.values()), op, result)
        if taken < batch_tuples:
            return


def _chunked_batches(
    pairs: Iterator[tuple[Any, Any]], op: str, batch_tuples: int, result: StreamResult
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Encoded batches of ``batch_tuples`` pairs, encoded ``CHUNK_PAIRS`` at a time."""
    keys_parts: list[np.ndarray] = []
    values_parts: list[np.ndarray] = []
    pending = 0
    while chunk := list(itertools.islice(pairs, min(CHUNK_PAIRS, batch_tuples - pending))):
        keys = list(map(_first, chunk))  # C-speed transposition (zip(*chunk) is not)
        values = list(map(_second, chunk))
        result.tuples_in += len(chunk)
        encoded, ints = _split_batch(keys, values, op, result)
        keys_parts.append(encoded)
        values_parts.append(ints)
        pending += len(chunk)
        if pending == batch_tuples:
            yield np.concatenate(keys_parts), np.concatenate(values_parts)
            keys_parts, values_parts, pending = [], [], 0
    if pending:
        yield np.concatenate(keys_parts), np.concatenate(values_parts)
