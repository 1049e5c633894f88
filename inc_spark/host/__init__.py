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

Where a pair goes: keys that ``key_codec`` encodes into 16 bytes (str, bytes, int, None and
tuples of them) with Python ``int`` values within int32 travel to the switch; everything else
(long keys, bools, floats, numpy scalars and arrays, values beyond int32, sums of a batch beyond
int32) is combined on the host with Python semantics. Results are Python ints of any size,
exactly as ``reduceByKey`` would give.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from inc_spark.host.drain import CopyDrainer, drain_copy
from inc_spark.host.flow import BATCH_TUPLES, COMBINE_KEYS, FlowStream, stream_pairs
from inc_spark.host.job import (
    OPS,
    JobTicket,
    LeaseKeeper,
    MemoryWaitExpired,
    MergeOrderError,
    StreamResult,
    combine_encoded,
    local_ticket,
    merge_results,
    open_job,
)
from inc_spark.host.ledger import Metrics
from switch_dataplane import wire

__all__ = [
    "BATCH_TUPLES",
    "COMBINE_KEYS",
    "LAST_METRICS",
    "OPS",
    "CopyDrainer",
    "FlowStream",
    "JobTicket",
    "LeaseKeeper",
    "MemoryWaitExpired",
    "MergeOrderError",
    "Metrics",
    "StreamResult",
    "aggregate",
    "combine_encoded",
    "drain_copy",
    "local_ticket",
    "merge_results",
    "open_job",
    "stream_pairs",
]

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
