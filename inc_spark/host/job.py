"""A job on the switch, and what its senders keep: the ticket every sender streams with, the
residuals of one sender, the exact merge of all of them with the drained aggregators."""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inc_spark.host import key_codec
from inc_spark.host.merge_order import merges_out_of_order
from inc_spark.host.packer import combine
from inc_spark.host.reliable_exchange import ExchangeStats
from switch_dataplane import wire
from switch_dataplane.control import control_plane
from switch_dataplane.control.control_client import (
    ControlClient,
    ControlRequestFailed,
    SwitchUnreachable,
    parse_address,
)

RESIDUAL_COMBINE_AT = 1 << 20  # combine collected residual arrays when they grow past this
DEFAULT_MAX_WAIT_MS = 60_000  # how long open_job waits in the switch's queue for memory
MAX_RETRY_S = 1.0  # a waiting open_job asks again at least this often, whatever the switch says
FLOW_WAIT_S = 60.0  # how long a flow waits for a flow slot (other tasks' flows close meanwhile)
FLOW_RETRY_S = 0.05

log = logging.getLogger("inc_spark")

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
    incarnation: int = 0  # the switch's when the job opened: another one means it restarted

    def control(self) -> ControlClient:
        """A control client that raises ``SwitchRestarted`` if the switch is not the one the
        job was opened on."""
        assert self.switch is not None, "a job without a switch has no control plane"
        return ControlClient(
            self.switch, deadline_s=self.deadline_s, incarnation=self.incarnation or None
        )


def local_ticket(op: str) -> JobTicket:
    """A job without a switch: its flows combine and keep every tuple on the host, so the
    same code runs as the no-switch baseline of each INC path."""
    if op not in OPS:
        raise ValueError(f"op must be one of {sorted(OPS)}, got {op!r}")
    return JobTicket(None, job_id=0, token=0, epoch=0, slots=0, window=0, columns=0, op=op)


class MemoryWaitExpired(ControlRequestFailed):
    """The switch kept the job waiting for memory longer than its ``max_wait_ms``."""

    def __init__(self, message: str) -> None:
        super().__init__("AA_WAIT_EXPIRED", message)

    def __reduce__(self) -> tuple:
        return type(self), (self.message,)


def open_job(
    switch: str | tuple[str, int],
    op: str = "sum",
    name: str = "",
    deadline_s: float = 10.0,
    *,
    columns: int | None = None,
    min_columns: int | None = None,
    priority: int = 0,
    deadline_ms: int = 0,
    max_wait_ms: int = DEFAULT_MAX_WAIT_MS,
    **options: Any,
) -> JobTicket:
    """Open a job on the switch, waiting in its queue for memory for up to ``max_wait_ms``
    (raises ``MemoryWaitExpired`` after that). ``columns`` None: the switch policy's fair
    share; ``min_columns``: the fewest it accepts instead of waiting; ``priority`` and
    ``deadline_ms`` (0: best effort) order the queue. Other options: window, lease_s, evict,
    swap_stale_share (docs/protocol.md §7)."""
    if op not in OPS:
        raise ValueError(f"op must be one of {sorted(OPS)}, got {op!r}")
    address = parse_address(switch) if isinstance(switch, str) else switch
    fields = {
        "name": name[: control_plane.MAX_NAME_CHARS],
        "agg": OPS[op][0],
        "priority": priority,
        "deadline_ms": deadline_ms,
        "max_wait_ms": max_wait_ms,
        **({} if columns is None else {"columns": columns}),
        **({} if min_columns is None else {"min_columns": min_columns}),
        **options,
    }
    control = ControlClient(address, deadline_s=deadline_s)
    try:
        answer = _admitted(control, fields)
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
        incarnation=control.incarnation or 0,
    )


def open_flow(control: ControlClient, ticket: JobTicket, partition: int, attempt: int) -> dict:
    """The switch's ``open_flow`` answer for ``partition``'s ``attempt``. While the switch's
    flow slots, or the job's share of them, are all held by running flows, asks again every
    ``FLOW_RETRY_S`` for up to ``FLOW_WAIT_S``: they free as other tasks finish."""
    gives_up_at = time.monotonic() + FLOW_WAIT_S
    waiting = False
    while True:
        try:
            return control.request(
                "open_flow",
                job_id=ticket.job_id,
                token=ticket.token,
                epoch=ticket.epoch,
                partition=partition,
                attempt=attempt,
            )
        except ControlRequestFailed as exc:
            if exc.code != "TOO_MANY_FLOWS" or time.monotonic() >= gives_up_at:
                raise
            if not waiting:
                log.warning("inc-spark: partition %d waits for a flow slot: %s", partition, exc)
                waiting = True
        time.sleep(FLOW_RETRY_S)


def _admitted(control: ControlClient, fields: dict[str, Any]) -> dict[str, Any]:
    """The switch's job answer to ``open_job``. While it says the job waits for memory, asks
    again when it says to, from the same client (the switch knows a waiter by its client nonce,
    so the job keeps its place), and logs each new place in the queue."""
    switch = "{}:{}".format(*control.switch)
    gives_up_at = time.monotonic() + fields["max_wait_ms"] / 1000 + control.deadline_s
    position = None
    while True:
        try:
            answer = control.request("open_job", **fields)
        except ControlRequestFailed as exc:
            if exc.code == "AA_WAIT_EXPIRED":
                raise MemoryWaitExpired(exc.message) from exc
            raise
        if not answer.get("queued"):
            return answer
        if answer.get("position") != position:
            position = answer.get("position")
            log.warning(
                "inc-spark: waiting for switch memory: position %s in queue (switch %s, job %r)",
                position,
                switch,
                fields["name"],
            )
        if time.monotonic() >= gives_up_at:
            raise MemoryWaitExpired(
                f"the switch at {switch} still queues the job after max_wait_ms="
                f"{fields['max_wait_ms']}; raise spark.inc.memory.maxWaitMs, ask for fewer "
                "columns, or use another switch"
            )
        retry_ms = answer.get("retry_ms")
        retry_s = retry_ms / 1000 if isinstance(retry_ms, int) and retry_ms > 0 else MAX_RETRY_S
        time.sleep(min(retry_s, MAX_RETRY_S))


class LeaseKeeper:
    """Driver-side heartbeat: renews the job's lease (``renew``) every third of it for as long
    as the ``with`` block holds the job, so stretches without packets or control requests (a
    long final merge or checkpoint) never outlive it. A renewal the switch refuses or does not
    answer ends the heartbeat; the holder's own next request then reports the problem."""

    def __init__(self, ticket: JobTicket, lease_s: float) -> None:
        self.ticket = ticket
        self.interval_s = lease_s / 3
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inc-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        control = self.ticket.control()
        try:
            while not self._stop.wait(self.interval_s):
                control.request("renew", job_id=self.ticket.job_id, token=self.ticket.token)
                self.renewals += 1
        except (ControlRequestFailed, SwitchUnreachable, OSError):
            return
        finally:
            control.close()


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


class MergeOrderError(ValueError):
    """A host-path entry would merge with a travelled one where vanilla's order decides the
    result (``merge_order``): only vanilla's own fold gives it."""


def merge_results(
    results: Iterable[StreamResult], op: str, in_vanilla_order: bool = False
) -> dict[Any, Any]:
    """Exact ``{key: op over values}`` of several senders' residuals and drained aggregators.

    The encoded entries of all results are combined in one compiled pass and decoded once
    (keys equal in Python encode equally, so the decoded keys are distinct); host-path pairs
    then merge into them with Python semantics, sender by sender in the order given. With
    ``in_vanilla_order``, a host-path entry whose merge with a travelled one could differ from
    a fold in the senders' order raises ``MergeOrderError``.
    """
    results = list(results)
    keys, values = combine_encoded(
        [k for r in results for k in r.keys], [v for r in results for v in r.values], op
    )
    combine_values = OPS[op][1]
    merged = dict(zip(key_codec.decode_keys(keys), values.tolist(), strict=True))
    with_host = any(r.host for r in results)
    travelled = dict(merged) if in_vanilla_order and with_host else {}
    for result in results:
        for key, value in result.host.items():
            if key in travelled and merges_out_of_order(op, key, value, travelled[key]):
                raise MergeOrderError(
                    f"key {key!r} ({type(key).__name__}) with value {value!r} "
                    f"({type(value).__name__}) merges with travelled ints where only the order "
                    "of vanilla reduceByKey's merge decides the result's type or value"
                )
            merged[key] = combine_values(merged[key], value) if key in merged else value
    return merged


def combine_encoded(keys: list[np.ndarray], values: list[np.ndarray], op: str) -> tuple:
    """One (keys, values) pair of arrays with every encoded key once, values combined."""
    if not values:
        return np.zeros((0, wire.KEY_BYTES), np.uint8), np.zeros(0, np.int64)
    return combine(np.concatenate(keys), np.concatenate(values), OPS[op][0])
