"""``RDD.inc_reduce_by_key``: reduceByKey with the map-side aggregation done in the switch.

How one call runs (the streaming and the drain are EAGER: they run when the call is made,
not when the result is first used):

1. The driver opens a job on the switch (epoch 1) and starts a drainer for swapped-out copies.
2. Stage 1 (a Spark job): every input partition streams its pairs on its own flow, recorded as
   (partition, attempt) by the switch, and outputs what the switch did not absorb (residuals and
   host-path pairs; for an RDD one compact ``StreamResult`` per partition). The driver drains
   the switch (both copies). The output is then kept where nothing that feeds the final merge is
   ever recomputed by streaming again: for an RDD, on the driver when the merge runs there,
   else in a reliable checkpoint; for a DataFrame, in Parquet files.
3. The driver checks the epoch record: exactly one closed flow per partition. A failed, retried
   or speculative attempt that streamed anything, up to and including the reads of step 2,
   makes the epoch dirty; the call is then redone in a fresh epoch (the switch clears the
   region and rejects stale packets), at most ``spark.inc.maxEpochs`` times, then runs as
   vanilla reduceByKey with a clear message.
4. The driver closes the job.
5. The final merge of residuals + drained pairs: up to ``spark.inc.driverMergeTuples`` entries
   on the driver (encoded keys combined in one compiled pass, then placed in their output
   partitions: by the driver where it hashes keys as the workers do, as under spark-submit,
   with one pickled batch per partition shuffled; else by the workers, ``partitionBy`` of the
   merged pairs), above that a plain (lazy) ``reduceByKey(func,
   numPartitions, partitionFunc)``. Either way the result has exactly the partitioning,
   partitioner and values of ``rdd.reduceByKey(func, numPartitions, partitionFunc)``.

>>> from operator import add
>>> rdd = sc.parallelize([("a", 1), ("b", 1), ("a", 1)], 2)
>>> sorted(rdd.inc_reduce_by_key(add).collect())
[('a', 2), ('b', 1)]
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import logging
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from pyspark import AccumulatorParam, StorageLevel, TaskContext
from pyspark.core.broadcast import Broadcast
from pyspark.core.rdd import RDD, Partitioner, portable_hash
from pyspark.serializers import BatchedSerializer, pack_long

from inc_spark import host
from inc_spark.host.merge_order import may_merge_out_of_order
from inc_spark.spark import driver_log
from inc_spark.spark.config import IncConf, memory_options
from inc_spark.spark.context_stop import on_stop
from inc_spark.spark.embedded_switch import embedded_switch
from inc_spark.spark.reduce_functions import switch_op_of, why_not
from inc_spark.spark.vanilla import REDUCE_BY_KEY
from switch_dataplane.control.control_client import (
    ControlRequestFailed,
    SwitchUnreachable,
    parse_address,
)

log = logging.getLogger("inc_spark")

PLACED_BATCH_PAIRS = 1 << 16  # pairs per pickled batch when the driver places the merged pairs

_announced: set[int] = set()
_last_metrics: host.Metrics | None = None


def last_metrics() -> host.Metrics | None:
    """The traffic ledger of the last INC call on this driver (``host.Metrics``: from the
    switch's per-epoch counters; ``distinct_keys`` where the final merge ran on the driver)."""
    return _last_metrics


def record_distinct_keys(count: int) -> None:
    """The final merge of the last call learned its distinct keys: add them to its ledger."""
    if _last_metrics is not None:
        _last_metrics.distinct_keys = count


class KeptCounts(AccumulatorParam):
    """An accumulator of (entries a stage's tasks kept for the final merge, of which host-path
    entries: keys or values that never travelled), summed over tasks."""

    def zero(self, value: tuple[int, int]) -> tuple[int, int]:
        return (0, 0)

    def addInPlace(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:  # noqa: N802
        return (a[0] + b[0], a[1] + b[1])


def fails_by_test_hook(hook: str, partition: int, epoch: int, attempt: int) -> bool:
    """Whether ``spark.inc.test.failPartitionEpoch`` makes this task attempt fail mid-stream."""
    return hook == f"{partition}:{epoch}" and attempt == 0


class _FailingPairs:
    """Yields the pairs, then raises after the first batch (test hook for attempt 0)."""

    def __init__(self, pairs: Iterable[Any], after: int) -> None:
        self.pairs = iter(pairs)
        self.after = after

    def __iter__(self) -> Iterator[Any]:
        for i, pair in enumerate(self.pairs):
            if i == self.after:
                raise RuntimeError("inc-spark test hook: task fails mid-stream")
            yield pair


def _stream_partition(
    ticket: host.JobTicket, conf: IncConf, kept: Any, unordered: Any
) -> Callable[[int, Iterable[Any]], Iterator[host.StreamResult]]:
    """The streaming function of a partition: its residuals as one record, counted in the
    ``KeptCounts`` accumulator ``kept``; the host-path entries among them that may merge out of
    vanilla's order (``merge_order``) are counted in the accumulator ``unordered``."""

    def stream(partition: int, pairs: Iterable[Any]) -> Iterator[host.StreamResult]:
        context = TaskContext.get()
        attempt = context.attemptNumber() if context is not None else 0
        if fails_by_test_hook(conf["test.failPartitionEpoch"], partition, ticket.epoch, attempt):
            pairs = _FailingPairs(pairs, after=conf["batchTuples"])
        result = host.stream_pairs(
            ticket,
            pairs,
            partition=partition,
            attempt=attempt,
            pre_combine=conf["preCombine"],
            batch_tuples=conf["batchTuples"],
            combine_keys=conf["combineKeys"],
        )
        residuals = result.combined()
        kept.add((residuals.kept_tuples, len(residuals.host)))
        op = ticket.op
        unordered.add(sum(may_merge_out_of_order(op, k, v) for k, v in residuals.host.items()))
        yield residuals

    return stream


def _epoch_is_clean(record: dict[str, Any], partitions: int | None) -> tuple[bool, str]:
    """Exactly one closed flow per partition and nothing else, or why not.

    ``partitions`` None: as many as streamed (0 up to the highest partition seen). A
    DataFrame's partitions are only fixed when the stage runs: a file scan is split by the
    default parallelism of that moment, which grows as executors register. Every task streams
    one flow, even over an empty partition, so a gap still shows.
    """
    by_partition: dict[int, list[dict[str, Any]]] = {}
    for flow in record["flows"]:
        by_partition.setdefault(flow["partition"], []).append(flow)
    if partitions is None:
        partitions = max(by_partition, default=-1) + 1
    problems = []
    for p in range(partitions):
        flows = by_partition.pop(p, [])
        if len(flows) != 1 or not flows[0]["closed"]:
            attempts = [(f["attempt"], "closed" if f["closed"] else "open") for f in flows]
            problems.append(f"partition {p} streamed by attempts {attempts}")
    problems += [f"unexpected partition {p}" for p in by_partition]
    return not problems, "; ".join(problems)


def _checkpoint_dir(sc: Any, conf: IncConf) -> None:
    if conf["checkpointDir"]:
        sc.setCheckpointDir(conf["checkpointDir"])
    elif sc.getCheckpointDir() is None:
        if not (sc.master or "").startswith("local"):
            raise RuntimeError(
                "inc-spark keeps streamed residuals in a reliable checkpoint: set "
                "spark.inc.checkpointDir (or sc.setCheckpointDir) to shared storage, e.g. HDFS"
            )
        path = tempfile.mkdtemp(prefix="inc-spark-checkpoint-")
        sc.setCheckpointDir(path)
        remove = functools.partial(shutil.rmtree, path, ignore_errors=True)
        on_stop(sc, remove)
        atexit.register(remove)  # also if the context is never stopped


def _switch_address(sc: Any, conf: IncConf) -> tuple[str, int]:
    if conf["switch.address"]:
        return parse_address(conf["switch.address"])
    return embedded_switch(sc, conf)


def inc_reduce_by_key(
    rdd: RDD,
    func: Callable[[Any, Any], Any],
    numPartitions: int | None = None,  # noqa: N803 - the reduceByKey signature
    partitionFunc: Callable[[Any], int] = portable_hash,  # noqa: N803
) -> RDD:
    """Merge the values of each key with ``func``, through the switch where it can run.

    Same contract as ``rdd.reduceByKey(func, numPartitions, partitionFunc)``: the same keys,
    values and Python types (float sums up to the rounding vanilla's own merge order leaves
    open), ``numPartitions`` output partitions (default from the input RDD, as reduceByKey),
    key k in partition ``partitionFunc(k) % numPartitions``, ``partitioner`` set. Only Python
    ints within int32 under keys ``key_codec`` encodes travel; other pairs take the host path
    with Python semantics. Functions the switch does not run (see ``reduce_functions``), and
    data whose result only vanilla's merge order decides (see ``host.merge_order``), go to
    vanilla reduceByKey, reason logged.
    """
    sc = rdd.context
    conf = IncConf.from_spark(sc.getConf())
    driver_log.configure(conf["logLevel"])
    if numPartitions is None:
        numPartitions = rdd._defaultReducePartitions()

    def vanilla(reason: str) -> RDD:
        log.warning("inc-spark: running vanilla reduceByKey: %s", reason)
        return REDUCE_BY_KEY(rdd, func, numPartitions, partitionFunc)

    if not conf["enabled"]:
        return REDUCE_BY_KEY(rdd, func, numPartitions, partitionFunc)
    op = switch_op_of(func)
    if op is None:
        return vanilla(why_not(func))
    unordered: list[Any] = []  # per epoch, the accumulator of host entries that may merge
    # out of vanilla's order; the last one is the clean epoch's

    def build(ticket: host.JobTicket, kept: Any) -> RDD:
        unordered.append(sc.accumulator(0))
        return rdd.mapPartitionsWithIndex(_stream_partition(ticket, conf, kept, unordered[-1]))

    try:
        residuals, drained, small = run_stage(sc, rdd.getNumPartitions(), op, build, conf)
    except (SwitchUnreachable, ControlRequestFailed, OSError) as exc:
        if conf["fallbackOnError"]:
            return vanilla(f"switch error ({exc}); spark.inc.fallbackOnError=true")
        raise
    if residuals is None:
        return vanilla(drained)
    if small:
        try:
            merged = host.merge_results([*residuals, drained], drained.op, in_vanilla_order=True)
        except host.MergeOrderError as exc:
            return vanilla(str(exc))
        record_distinct_keys(len(merged))
        return _placed(sc, merged, numPartitions, partitionFunc)
    if unordered[-1].value:
        return vanilla(
            f"{unordered[-1].value} host-path entries (keys of other types than str, bytes, int, "
            "None and tuples of them, or values whose merge with ints depends on the order) may "
            "meet travelled ints of their key, where only vanilla's merge order decides the "
            "result"
        )
    drained_rdd = _parallelized(sc, list(drained.pairs()), numPartitions)
    residual_pairs = residuals.flatMap(host.StreamResult.pairs)
    return REDUCE_BY_KEY(residual_pairs.union(drained_rdd), func, numPartitions, partitionFunc)


def _placed(
    sc: Any, merged: dict[Any, Any], partitions: int, partition_func: Callable[[Any], int]
) -> RDD:
    """The driver-merged pairs as reduceByKey's output: (k, v) in partition
    ``partition_func(k) % partitions``, partitioner set in Python and in the JVM (so a join or
    union with an RDD partitioned alike needs no shuffle).

    Where this driver hashes as the workers do (see ``_hashes_as_workers``) it places the pairs
    itself: each output partition's pairs are pickled here in batches of up to
    ``PLACED_BATCH_PAIRS``, broadcast, and shuffled to their partition as ``partitionBy``
    would, with one record per batch and no Python after the shuffle. Otherwise the workers
    place every pair with ``partitionBy``.
    """
    if not _hashes_as_workers(sc):
        pairs = list(merged.items())
        return _parallelized(sc, pairs, partitions).partitionBy(partitions, partition_func)
    groups: list[list[tuple[Any, Any]]] = [[] for _ in range(partitions)]
    targets = _targets(list(merged), partitions, partition_func).tolist()
    for pair, target in zip(merged.items(), targets, strict=True):
        groups[target].append(pair)
    pickled = sc._unbatched_serializer.dumps
    batches = [
        (target, pickled(group[i : i + PLACED_BATCH_PAIRS]))
        for target, group in enumerate(groups)
        for i in range(0, len(group), PLACED_BATCH_PAIRS)
    ]
    # PySpark's own partitionBy from its shuffle on: (partition, pickled batch) records keyed
    # for its PythonPartitioner, read back through a BatchedSerializer.
    shipped = sc.broadcast(batches)  # not inside the tasks: Spark warns of tasks over 1 MB
    slices = max(1, min(len(batches), partitions))
    keyed = sc.parallelize(range(slices), slices).mapPartitionsWithIndex(
        functools.partial(_shuffle_records, shipped, slices)
    )
    keyed._bypass_serializer = True
    pair_rdd = sc._jvm.PairwiseRDD(keyed._jrdd.rdd()).asJavaPairRDD()
    partitioner = sc._jvm.PythonPartitioner(partitions, id(partition_func))
    placed = RDD(
        sc._jvm.PythonRDD.valueOfPair(pair_rdd.partitionBy(partitioner)),
        sc,
        BatchedSerializer(sc._unbatched_serializer),
    )
    placed.partitioner = Partitioner(partitions, partition_func)
    return placed


def _shuffle_records(
    shipped: Broadcast, slices: int, index: int, _: Iterable[int]
) -> Iterator[bytes]:
    """Slice ``index`` of the broadcast (partition, pickled batch) list, as partitionBy's
    map side yields its records."""
    for target, batch in shipped.value[index::slices]:
        yield pack_long(target)
        yield batch


def _hashes_as_workers(sc: Any) -> bool:
    """Whether ``hash()`` of a str gives here what it gives in the workers.

    Spark starts its Python workers with PYTHONHASHSEED set to the driver's, or "0" where the
    driver has none; ``spark-submit`` starts the driver itself with "0". Only a driver that ran
    with "0" from its start (``sys.flags``: setting the variable later changes nothing) is sure
    to agree.
    """
    return not sys.flags.hash_randomization and sc.environment.get("PYTHONHASHSEED") == "0"


def _targets(keys: list[Any], partitions: int, partition_func: Callable[[Any], int]) -> np.ndarray:
    """``partition_func(k) % partitions`` of every key; PySpark's ``portable_hash`` is
    ``hash`` itself except for None and tuples, so it runs as one C-level map where it can."""
    types = set(map(type, keys))
    if partition_func is portable_hash and not any(
        t is type(None) or issubclass(t, tuple) for t in types
    ):
        return np.fromiter(map(hash, keys), np.int64, len(keys)) % partitions
    return np.fromiter((partition_func(k) % partitions for k in keys), np.int64, len(keys))


def _parallelized(sc: Any, pairs: list[tuple[Any, Any]], partitions: int) -> RDD:
    """Driver-side pairs as an RDD: one slice per 64 K pairs, at most ``partitions``."""
    return sc.parallelize(pairs, max(1, min(partitions, len(pairs) // 65536 + 1)))


#: Builds, for a job's ticket, the (lazy) streaming dataset: an RDD or a DataFrame whose
#: partitions each stream on their own flow and yield what the switch did not absorb, adding how
#: many entries that is, and how many of them took the host path, to the ``KeptCounts``
#: accumulator given with the ticket (it decides where the final merge runs, and feeds the
#: ledger).
StageBuilder = Callable[[host.JobTicket, Any], Any]


def _materialize(streamed: Any, collect: bool) -> Any:
    """Run the streaming stage once; -> its output on the driver (``collect``), a cached RDD, or
    a DataFrame over Parquet files.

    A DataFrame is written as Parquet under the checkpoint directory in one job (Spark's commit
    protocol keeps one attempt's files per partition) and read back: no cached copy, no second
    pass, and a columnar read for the final aggregation. An RDD is cached; ``_kept`` then takes
    what the final merge needs from the cache.
    """
    if collect:
        return streamed.collect()
    if isinstance(streamed, RDD):
        streamed.persist(StorageLevel.MEMORY_AND_DISK)
        streamed.count()  # eager: streams every partition once
        return streamed
    spark = streamed.sparkSession
    path = f"{spark.sparkContext.getCheckpointDir()}/inc-residuals-{uuid.uuid4().hex}"
    streamed.write.parquet(path)
    return spark.read.schema(streamed.schema).parquet(path)


def _kept(streamed: RDD, on_driver: bool) -> list[Any] | RDD:
    """A cached streaming RDD's records for the final merge, read from the cache: collected when
    the merge runs on the driver, else copied into a reliable checkpoint (a copy, because an
    RDD that has run a job can no longer be checkpointed). A lost cache block is recomputed by
    streaming again, which the epoch record then shows."""
    if on_driver:
        records = streamed.collect()
        streamed.unpersist()
        return records
    kept = streamed.mapPartitions(iter, preservesPartitioning=True)
    kept.checkpoint()
    kept.count()  # the checkpoint is written by the job after this one, from the cache
    streamed.unpersist()
    return kept


def run_stage(
    sc: Any,
    partitions: int | None,
    op: str,
    build: StageBuilder,
    conf: IncConf,
    collect: bool = False,
) -> tuple[Any | None, Any, bool]:
    """Stream every partition through the switch, exactly once; drain.

    ``partitions`` is the stage's partition count where it is fixed before the stage runs (an
    RDD's), None where only the run fixes it (a DataFrame's; see ``_epoch_is_clean``).
    Dirty epochs are redone (see module doc). -> (the residuals; the drained aggregators as a
    ``host.StreamResult``; whether residuals and drained entries are few enough to merge on the
    driver, ``spark.inc.driverMergeTuples``) or (None, why INC gave up, False). The residuals
    are the list of residual records on the driver with ``collect``, or for an RDD stage that
    merges on the driver; a checkpointed RDD for one that does not; a DataFrame over Parquet
    files for a DataFrame stage.
    """
    global _last_metrics
    started = time.monotonic()
    driver_log.configure(conf["logLevel"])
    if not collect:
        _checkpoint_dir(sc, conf)
    if conf["noSwitch"]:
        return _run_without_switch(sc, op, build, conf, collect, started)
    address = _switch_address(sc, conf)
    timeout_s = conf["timeoutMs"] / 1000
    ticket = host.open_job(
        address,
        op=op,
        name=sc.appName,
        deadline_s=timeout_s,
        window=conf["window"],
        evict=conf["evict"],
        swap_stale_share=conf["swapStaleShare"],
        lease_s=conf["leaseMs"] / 1000,
        **memory_options(conf),
    )
    with host.LeaseKeeper(ticket, conf["leaseMs"] / 1000):
        return _run_epochs(sc, ticket, partitions, build, conf, collect, started, address)


def _run_epochs(
    sc: Any,
    ticket: host.JobTicket,
    partitions: int | None,
    build: StageBuilder,
    conf: IncConf,
    collect: bool,
    started: float,
    address: tuple[str, int],
) -> tuple[Any | None, Any, bool]:
    """``run_stage``'s epochs on an open job, which it closes."""
    global _last_metrics
    if id(sc) not in _announced:
        _announced.add(id(sc))
        log.warning(
            "inc-spark: in-network aggregation is ON (switch %s:%d%s); "
            "set spark.inc.enabled=false to turn it off",
            *address,
            "" if conf["switch.address"] else ", embedded in the driver",
        )
    control = ticket.control()
    try:
        for epoch_round in range(conf["maxEpochs"]):
            cpu_before = control.request("job_status", job_id=ticket.job_id, token=ticket.token)[
                "switch_cpu_s"
            ]
            drainer = host.CopyDrainer(ticket).start()
            kept = sc.accumulator((0, 0), KeptCounts())  # per epoch: a dirty one's go with it
            streamed = build(ticket, kept)
            try:
                streamed = _materialize(streamed, collect)
            finally:
                drainer.finish()
            drained = host.StreamResult(ticket.op, keys=drainer.keys, values=drainer.values)
            small = kept.value[0] + drained.kept_tuples <= conf["driverMergeTuples"]
            if isinstance(streamed, RDD):
                streamed = _kept(streamed, small)
            record = control.request(
                "epoch_record", job_id=ticket.job_id, token=ticket.token, epoch=ticket.epoch
            )
            clean, why = _epoch_is_clean(record, partitions)
            if clean:
                status = control.request("job_status", job_id=ticket.job_id, token=ticket.token)
                _last_metrics = host.Metrics.from_switch(
                    status,
                    cpu_before,
                    drained_entries=drained.kept_tuples,
                    epochs=epoch_round + 1,
                    seconds=time.monotonic() - started,
                    host_path=kept.value[1],
                )
                if conf["explain"]:
                    log.warning("inc-spark: %s", _last_metrics.summary())
                return streamed, drained, small
            epoch = control.request("new_epoch", job_id=ticket.job_id, token=ticket.token)
            log.warning(
                "inc-spark: epoch %d is dirty (%s); redoing the call in epoch %d",
                ticket.epoch,
                why,
                epoch["epoch"],
            )
            ticket = dataclasses.replace(ticket, epoch=epoch["epoch"], columns=epoch["columns"])
        return None, f"{conf['maxEpochs']} epochs were dirty (spark.inc.maxEpochs)", False
    finally:
        try:
            control.request("close_job", job_id=ticket.job_id, token=ticket.token)
        finally:
            control.close()


def _run_without_switch(
    sc: Any, op: str, build: StageBuilder, conf: IncConf, collect: bool, started: float
) -> tuple[Any, host.StreamResult, bool]:
    """``run_stage`` for the no-switch baseline: the same stage on a ``host.local_ticket``,
    every task's combined tuples kept for the final merge (no external state, so no epochs)."""
    global _last_metrics
    ticket = host.local_ticket(op)
    kept = sc.accumulator((0, 0), KeptCounts())
    streamed = _materialize(build(ticket, kept), collect)
    drained = host.StreamResult(op)
    small = kept.value[0] <= conf["driverMergeTuples"]
    if isinstance(streamed, RDD):
        streamed = _kept(streamed, small)
    _last_metrics = host.Metrics.without_switch(time.monotonic() - started, host_path=kept.value[0])
    return streamed, drained, small
