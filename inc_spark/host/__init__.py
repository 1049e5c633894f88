"""The end host: stream (key, value) pairs through the switch and get exact aggregates back.

Usable without Spark. A *job* is opened once (by a driver); any number of processes stream
into it with a ``JobTicket`` (plain data, picklable), each on its own flow; the driver then
drains the switch's aggregators and merges them with every sender's residuals.

>>> from switch_dataplane.daemon import SwitchDaemon
>>> from switch_dataplane.daemon.switch import Switch
>>> daemon = SwitchDaemon(Switch(rows=8, columns=64), port=0).start()
>>> switch = "{}:{}".format(*daemon.address)
>>> counts = aggregate([("a", 1), ("b", 2), ("a", 3), (None, 4), ("a" * 40, 5)], switch=switch)
>>> counts == {"a": 4, "b": 2, None: 4, "a" * 40: 5}
True
>>> daemon.stop()

Where a pair goes: keys that ``key_codec`` encodes into 16 bytes and integer values within
int32 travel to the switch; everything else (long keys, floats, values beyond int32, sums of a
batch beyond int32) is combined on the host with Python semantics. Results are Python ints of
any size, exactly as ``reduceByKey`` would give.
"""

from __future__ import annotations

import itertools
import logging
import operator
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from inc_spark.host import key_codec
from inc_spark.host.packer import Combiner, PacketBatch, combine, pack
from inc_spark.host.reliable_exchange import ExchangeStats, Expect, ReliableExchange
from switch_dataplane import wire
from switch_dataplane.control.control_client import ControlClient, parse_address
from switch_dataplane.control.control_plane import traffic_ledger

log = logging.getLogger("inc_spark")

BATCH_TUPLES = 65536
COMBINE_KEYS = 1 << 21  # distinct keys a flow combines in memory before it sends them
# Pairs turned into arrays at a time when streaming without pre-combine: the batch's tuples and
# strings then never pile up beyond the CPU caches (64 K pairs at once cost ~2.5x the CPU time
# of 4 K-pair chunks, most of it cache misses and garbage-collector passes).
CHUNK_PAIRS = 4096
_first = operator.itemgetter(0)
_second = operator.itemgetter(1)
RESIDUAL_COMBINE_AT = 1 << 20  # combine collected residual arrays when they grow past this
DRAIN_POLL_S = 0.02

#: op -> (switch aggregation, Python combine of two values)
OPS: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "sum": ("sum", operator.add),
    "count": ("sum", operator.add),
    "min": ("min", min),
    "max": ("max", max),
}


@dataclass(frozen=True)
class JobTicket:
    """Everything a sender in any process needs to stream into an open job; ``switch`` None
    is a job without a switch (``local_ticket``)."""

    switch: tuple[str, int] | None
    job_id: int
    token: int
    epoch: int
    slots: int
    window: int
    columns: int
    op: str
    deadline_s: float = 10.0  # how long a silent switch is waited for

    def control(self) -> ControlClient:
        assert self.switch is not None, "a job without a switch has no control plane"
        return ControlClient(self.switch, deadline_s=self.deadline_s)


def local_ticket(op: str) -> JobTicket:
    """A job without a switch: its flows combine and keep every tuple on the host, so the
    same code runs as the no-switch baseline of each INC path."""
    if op not in OPS:
        raise ValueError(f"op must be one of {sorted(OPS)}, got {op!r}")
    return JobTicket(None, job_id=0, token=0, epoch=0, slots=0, window=0, columns=0, op=op)


@dataclass
class StreamResult:
    """What one sender keeps: host-path aggregates and switch-encoded residuals."""

    op: str
    host: dict[Any, Any] = field(default_factory=dict)
    keys: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    tuples_in: int = 0
    tuples_sent: int = 0
    exchange: ExchangeStats = field(default_factory=ExchangeStats)

    def add_encoded(self, keys: np.ndarray, values: np.ndarray) -> None:
        self.keys.append(keys)
        self.values.append(values)
        if sum(len(v) for v in self.values) > RESIDUAL_COMBINE_AT:
            keys, values = combine_encoded(self.keys, self.values, self.op)
            self.keys, self.values = [keys], [values]

    def add_host(self, key: Any, value: Any) -> None:
        combine_values = OPS[self.op][1]
        self.host[key] = combine_values(self.host[key], value) if key in self.host else value

    def pairs(self) -> Iterator[tuple[Any, Any]]:
        """All (key, value) pairs kept, switch-encoded keys decoded (keys may repeat)."""
        yield from self.host.items()
        keys, values = combine_encoded(self.keys, self.values, self.op)
        yield from zip(key_codec.decode_keys(keys), values.tolist(), strict=True)

    @property
    def kept_tuples(self) -> int:
        """Host-path keys plus encoded residual entries held."""
        return len(self.host) + sum(len(v) for v in self.values)

    def combined(self) -> StreamResult:
        """The residuals alone, encoded ones combined into one pair of arrays: compact to ship."""
        keys, values = combine_encoded(self.keys, self.values, self.op)
        return StreamResult(self.op, host=self.host, keys=[keys], values=[values])


def merge_results(results: Iterable[StreamResult], op: str) -> dict[Any, Any]:
    """Exact ``{key: op over values}`` of several senders' residuals and drained aggregators.

    The encoded entries of all results are combined in one compiled pass and decoded once
    (keys equal in Python encode equally, ``True`` as ``1``, so the decoded keys are distinct);
    host-path pairs then merge into them with Python semantics.
    """
    results = list(results)
    keys, values = combine_encoded(
        [k for r in results for k in r.keys], [v for r in results for v in r.values], op
    )
    combine_values = OPS[op][1]
    merged = dict(zip(key_codec.decode_keys(keys), values.tolist(), strict=True))
    for result in results:
        for key, value in result.host.items():
            merged[key] = combine_values(merged[key], value) if key in merged else value
    return merged


def combine_encoded(keys: list[np.ndarray], values: list[np.ndarray], op: str) -> tuple:
    """One (keys, values) pair of arrays with every encoded key once, values combined."""
    if not values:
        return np.zeros((0, wire.KEY_BYTES), np.uint8), np.zeros(0, np.int64)
    return combine(np.concatenate(keys), np.concatenate(values), OPS[op][0])


def open_job(
    switch: str | tuple[str, int],
    op: str = "sum",
    name: str = "",
    deadline_s: float = 10.0,
    **options: Any,
) -> JobTicket:
    """Open a job on the switch (options: columns, window, lease_s, evict, swap_stale_share;
    docs/protocol.md)."""
    if op not in OPS:
        raise ValueError(f"op must be one of {sorted(OPS)}, got {op!r}")
    address = parse_address(switch) if isinstance(switch, str) else switch
    control = ControlClient(address, deadline_s=deadline_s)
    try:
        answer = control.request("open_job", name=name, agg=OPS[op][0], **options)
    finally:
        control.close()
    return JobTicket(
        switch=address,
        job_id=answer["job_id"],
        token=answer["token"],
        epoch=answer["epoch"],
        slots=answer["slots"],
        window=answer["window"],
        columns=answer["columns"],
        op=op,
        deadline_s=deadline_s,
    )


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
    """int64 copies of the values and which of them are ints (or bools) within int32."""
    try:
        array = np.array(values)
    except (OverflowError, ValueError):
        array = np.array(values, dtype=object)
    if array.dtype.kind in "iub":
        array = array.astype(np.int64)
        return array, (array >= wire.INT32_MIN) & (array <= wire.INT32_MAX)
    ok = np.array(
        [type(v) in (int, bool) and wire.INT32_MIN <= v <= wire.INT32_MAX for v in values], bool
    )
    ints = np.zeros(len(values), np.int64)
    ints[ok] = [int(v) for v, good in zip(values, ok.tolist(), strict=True) if good]
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
        flow = self.control.request(
            "open_flow",
            job_id=ticket.job_id,
            token=ticket.token,
            epoch=ticket.epoch,
            partition=partition,
            attempt=attempt,
        )
        self.flow_id = flow["flow_id"]
        self.header = wire.new_header(
            wire.PacketType.DATA,
            job_id=ticket.job_id,
            token=ticket.token,
            epoch=ticket.epoch,
            flow_id=self.flow_id,
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


def drain_copy(ticket: JobTicket, copy: int) -> tuple[np.ndarray, np.ndarray, ExchangeStats]:
    """Read every aggregator of one copy of the job's region (idempotent, loss-proof)."""
    columns = ticket.columns
    headers = np.repeat(
        wire.new_header(
            wire.PacketType.DRAIN_REQUEST,
            job_id=ticket.job_id,
            token=ticket.token,
            epoch=ticket.epoch,
            copy=copy,
        )[None],
        columns,
    )
    headers["seq"] = np.arange(columns)
    batch = PacketBatch(
        headers.view(np.uint8).reshape(-1).copy(),
        np.arange(columns, dtype=np.int64) * wire.HEADER_BYTES,
        np.full(columns, wire.HEADER_BYTES, np.int64),
        0,
    )
    exchange = ReliableExchange(ticket.switch, window=512, deadline_s=ticket.deadline_s)
    try:
        keys, values = exchange.run(
            batch,
            Expect(int(wire.PacketType.DRAIN_RESPONSE), ticket.job_id, copy=copy),
            ticket.slots,
        )
    finally:
        exchange.close()
    return keys, values, exchange.stats


class CopyDrainer:
    """Driver-side thread: drains copies the control plane swapped out, then frees them."""

    def __init__(self, ticket: JobTicket) -> None:
        self.ticket = ticket
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.stats = ExchangeStats()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inc-drainer", daemon=True)

    def start(self) -> CopyDrainer:
        self._thread.start()
        return self

    def _run(self) -> None:
        control = self.ticket.control()
        try:
            while not self._stop.wait(DRAIN_POLL_S):
                self.drain_swapped(control)
        except BaseException as exc:  # reported to the caller by finish()
            self.error = exc
        finally:
            control.close()

    def drain_swapped(self, control: ControlClient) -> None:
        """Drain and clear every copy the control plane marked drainable."""
        status = control.request("job_status", job_id=self.ticket.job_id, token=self.ticket.token)
        for copy, state in enumerate(status["copies"]):
            if state == "drainable":
                self.take(copy)
                control.request(
                    "clear_copy", job_id=self.ticket.job_id, token=self.ticket.token, copy=copy
                )

    def take(self, copy: int) -> None:
        keys, values, stats = drain_copy(self.ticket, copy)
        self.keys.append(keys)
        self.values.append(values)
        self.stats.add(stats)

    def finish(self) -> None:
        """Stop the thread, then drain what is left: any swapped-out copy and the active one."""
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise self.error
        control = self.ticket.control()
        try:
            self.drain_swapped(control)
            status = control.request(
                "job_status", job_id=self.ticket.job_id, token=self.ticket.token
            )
            self.take(status["active_copy"])
            after = control.request(
                "job_status", job_id=self.ticket.job_id, token=self.ticket.token
            )
        finally:
            control.close()
        if after["swaps"] != status["swaps"] or "drainable" in after["copies"]:
            raise RuntimeError(
                "the switch swapped copies during the final drain (a flow of this job is still "
                "open?); the drained totals cannot be trusted, redo the call in a new epoch"
            )


@dataclass
class Metrics:
    """The traffic ledger of one call: what crossed the network each way and what reached the
    hosts, from the switch's per-epoch counters (not accumulators, which count retried tasks
    twice), plus what only the hosts know (None where not known).

    ``host_bound`` (residual + flushed + evicted + drained) is what the switch hands back for
    the final merge; its limit is one tuple per distinct key of the result. A call without a
    switch (the baseline) sends nothing: all its combined tuples are ``host_path``.
    """

    tuples_sent: int  # host -> switch, fresh tuples (a retransmission is not counted again)
    absorbed: int
    residual: int  # tuples the switch returned: their aggregator held another key
    flushed: int  # stored values returned because a sum would overflow int32
    evicted: int  # resident entries returned to make room for a tuple's key
    drained_entries: int  # aggregators read back at the end (and from swapped-out copies)
    duplicates: int  # retransmitted or duplicated packets the switch answered from seen state
    packets: int  # data packets the switch processed
    bytes_to_switch: int  # data packets and drain requests
    bytes_to_hosts: int  # data answers and drain answers
    ack_bytes: int  # the headers of those answers: acknowledgement overhead
    swaps: int
    epochs: int
    seconds: float
    switch_cpu_s: float | None = None  # the switch thread's CPU time during the call
    tuples_in: int | None = None  # pairs the senders read
    host_path: int | None = None  # entries that never travelled (keys or values the switch
    # cannot hold; with no switch, every combined tuple)
    distinct_keys: int | None = None  # of the result
    retransmissions: int | None = None

    @classmethod
    def from_switch(
        cls, status: dict[str, Any], cpu_before: float | None = None, **fields: Any
    ) -> Metrics:
        """The ledger of an epoch from ``job_status`` (bytes as the switch counted them, re-read
        drain answers included); ``drained_entries`` (what the hosts took, each entry once) and
        the other host-side fields are given."""
        c = status["counters"]
        ledger = traffic_ledger(c)
        return cls(
            tuples_sent=c["tuples"],
            absorbed=c["absorbed"],
            residual=c["residual"],
            flushed=c["flushed"],
            evicted=c["evicted"],
            duplicates=c["duplicates"],
            packets=c["packets"] - c["drain_requests"],
            bytes_to_switch=ledger["bytes_to_switch"],
            bytes_to_hosts=ledger["bytes_to_hosts"],
            ack_bytes=ledger["ack_bytes"],
            swaps=status["swaps"],
            switch_cpu_s=None if cpu_before is None else status["switch_cpu_s"] - cpu_before,
            **fields,
        )

    @classmethod
    def without_switch(cls, seconds: float, **fields: Any) -> Metrics:
        """The ledger of a call that ran with no switch: nothing crossed to a switch."""
        zero = dict.fromkeys(
            ("tuples_sent", "absorbed", "residual", "flushed", "evicted", "drained_entries",
             "duplicates", "packets", "bytes_to_switch", "bytes_to_hosts", "ack_bytes",
             "swaps"),
            0,
        )  # fmt: skip
        return cls(**zero, epochs=1, seconds=seconds, **fields)

    @property
    def host_bound(self) -> int:
        return self.residual + self.flushed + self.evicted + self.drained_entries

    @property
    def absorbed_share(self) -> float:
        return self.absorbed / self.tuples_sent if self.tuples_sent else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "host_bound": self.host_bound,
            "absorbed_share": self.absorbed_share,
        }

    def summary(self) -> str:
        """One line for logs and job output."""
        per_key = (
            f" ({self.host_bound / self.distinct_keys:.2f} per distinct key)"
            if self.distinct_keys
            else ""
        )
        return (
            f"{self.tuples_sent:,} tuples to the switch ({self.bytes_to_switch / 1e6:.1f} MB), "
            f"{self.absorbed_share:.1%} absorbed; back to hosts {self.host_bound:,}{per_key}: "
            f"{self.residual:,} residual, {self.flushed:,} flushed, {self.evicted:,} evicted, "
            f"{self.drained_entries:,} drained ({self.bytes_to_hosts / 1e6:.1f} MB); "
            f"{self.swaps} swaps, {self.epochs} epoch(s)"
        )


LAST_METRICS: Metrics | None = None


def aggregate(
    pairs: Iterable[tuple[Any, Any]],
    op: str = "sum",
    switch: str = f"127.0.0.1:{wire.DEFAULT_PORT}",
    pre_combine: bool = True,
    batch_tuples: int = BATCH_TUPLES,
    **job_options: Any,
) -> dict[Any, Any]:
    """Exact ``{key: op over values}`` of the pairs, aggregated through the switch.

    Opens a job, streams the pairs on one flow, drains the switch (also any copy the control
    plane swaps out meanwhile), closes the job. ``op``: sum, count (values ignored), min, max.
    """
    global LAST_METRICS
    started = time.monotonic()
    ticket = open_job(switch, op=op, name="aggregate", **job_options)
    control = ticket.control()
    try:
        cpu_before = control.request("job_status", job_id=ticket.job_id, token=ticket.token)[
            "switch_cpu_s"
        ]
        drainer = CopyDrainer(ticket).start()
        try:
            streamed = stream_pairs(
                ticket, pairs, pre_combine=pre_combine, batch_tuples=batch_tuples
            )
        finally:
            drainer.finish()
        record = control.request(
            "epoch_record", job_id=ticket.job_id, token=ticket.token, epoch=ticket.epoch
        )
        if [(f["partition"], f["closed"]) for f in record["flows"]] != [(0, True)]:
            raise RuntimeError(f"epoch {ticket.epoch} has unexpected flows: {record['flows']}")
        status = control.request("job_status", job_id=ticket.job_id, token=ticket.token)
    finally:
        try:
            control.request("close_job", job_id=ticket.job_id, token=ticket.token)
        finally:
            control.close()
    counts = merge_results(
        [streamed, StreamResult(op, keys=drainer.keys, values=drainer.values)], op
    )
    LAST_METRICS = Metrics.from_switch(
        status,
        cpu_before,
        drained_entries=sum(len(v) for v in drainer.values),
        epochs=1,
        seconds=time.monotonic() - started,
        tuples_in=streamed.tuples_in,
        host_path=len(streamed.host),
        distinct_keys=len(counts),
        retransmissions=streamed.exchange.retransmissions,
    )
    return counts
