"""RDD.inc_reduce_by_key against vanilla reduceByKey, partition by partition, on local[2,4]."""

from __future__ import annotations

import json
import operator
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import inc_spark
from switch_dataplane.daemon.launcher import CLI_MODULE, SwitchProcess
from tests.test_host import REPO

pyspark = pytest.importorskip("pyspark")


@contextmanager
def inc_conf(sc: Any, **keys: str) -> Iterator[None]:
    """Set spark.inc.* keys on the running context for the duration of a block."""
    names = {f"spark.inc.{k.replace('__', '.')}": v for k, v in keys.items()}
    for name, value in names.items():
        sc._conf.set(name, value)
    try:
        yield
    finally:
        for name in names:
            sc._jsc.sc().conf().remove(name)


def switch_stats(address: str) -> dict[str, Any]:
    """What ``inc-switch stats`` prints."""
    return json.loads(
        subprocess.run(
            [sys.executable, "-m", CLI_MODULE, "stats", "--switch", address],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        ).stdout
    )


@pytest.fixture(params=["driver", "driver-merge-workers-place", "spark"])
def rdd_final_merge(
    request: pytest.FixtureRequest, spark_context: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The three final merges of ``inc_reduce_by_key``: on the driver, which also places the
    pairs (needs this process to hash as the workers do: ``make test`` runs pytest with
    PYTHONHASHSEED=0); on the driver, placed by the workers' ``partitionBy``; Spark's own."""
    from inc_spark.spark import rdd_reduce

    if request.param == "driver" and sys.flags.hash_randomization:
        pytest.skip("the driver places pairs only with PYTHONHASHSEED=0 (make test sets it)")
    placed_here = []
    targets = rdd_reduce._targets
    monkeypatch.setattr(
        rdd_reduce, "_targets", lambda *args: placed_here.append(1) or targets(*args)
    )
    if request.param == "driver-merge-workers-place":
        monkeypatch.setattr(rdd_reduce, "_hashes_as_workers", lambda sc: False)
    limit = "0" if request.param == "spark" else str(10**9)
    with inc_conf(spark_context, driverMergeTuples=limit):
        yield request.param
    if request.param != "spark":  # which merges Spark gets is the tests' own business
        assert bool(placed_here) == (request.param == "driver")


def by_partition(rdd: Any) -> list[dict]:
    """Each output partition as a dict: the same keys must land in the same partition."""
    return [dict(part) for part in rdd.glom().collect()]


def merged_by_spark(rdd: Any) -> bool:
    """Whether reduceByKey merged the checkpointed residuals (else the driver merged them)."""
    return b"ReliableCheckpointRDD" in rdd.toDebugString()


def assert_same_as_vanilla(rdd: Any, func: Any, **kwargs: Any) -> Any:
    expected = rdd.reduceByKey(func, **kwargs)
    got = rdd.inc_reduce_by_key(func, **kwargs)
    assert got.getNumPartitions() == expected.getNumPartitions()
    assert got.partitioner == expected.partitioner
    assert by_partition(got) == by_partition(expected)
    return got


# True and 1 together: which vanilla keeps depends on its merge order, so such calls run vanilla
# (tests/test_unchanged_programs.py); 2.5 is a key that never travels.
KEYS = ["a", "b", "日本", "é" * 10, "long key " * 5, b"raw", 1, 2**70, -3, (1, "x"), None, 2.5]


def pairs(n: int, seed: int) -> list[tuple]:
    rng = random.Random(seed)
    values = [1, -1, 5, 2**31 - 1, -(2**31), 2**40, 2**70, -(2**65)]
    return [(rng.choice(KEYS + [f"w{rng.randrange(500)}"]), rng.choice(values)) for _ in range(n)]


@pytest.mark.parametrize("func", [operator.add, min, max])
def test_every_key_type_and_value_range(
    spark_context: Any, rdd_final_merge: str, func: Any
) -> None:
    rdd = spark_context.parallelize(pairs(20_000, seed=1), 4)
    got = assert_same_as_vanilla(rdd, func)
    assert merged_by_spark(got) == (rdd_final_merge == "spark")
    metrics = inc_spark.last_metrics()
    assert metrics is not None and metrics.absorbed > 0  # it really went through the switch


@pytest.mark.parametrize("num_partitions", [1, 3, 9])
def test_partition_count_and_placement(
    spark_context: Any, rdd_final_merge: str, num_partitions: int
) -> None:
    rdd = spark_context.parallelize(pairs(5000, seed=num_partitions), 3)
    got = assert_same_as_vanilla(rdd, operator.add, numPartitions=num_partitions)
    joined = got.join(rdd.reduceByKey(operator.add, numPartitions=num_partitions))
    assert joined.getNumPartitions() == num_partitions  # co-partitioned: no extra shuffle


def test_keys_placed_by_their_plain_hash(
    spark_context: Any, rdd_final_merge: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No None or tuple among the keys: portable_hash is then hash() itself. The driver's
    batches are made small, so each output partition gets several."""
    from inc_spark.spark import rdd_reduce

    monkeypatch.setattr(rdd_reduce, "PLACED_BATCH_PAIRS", 10)
    keys = [f"w{i}" for i in range(300)] + ["日本", b"raw", 7, -(2**70), 2.5, True]
    rdd = spark_context.parallelize([(keys[i % len(keys)], i) for i in range(9000)], 3)
    assert_same_as_vanilla(rdd, operator.add, numPartitions=7)


def test_only_a_merge_in_spark_writes_a_checkpoint(
    spark_context: Any, rdd_final_merge: str, tmp_path: Any
) -> None:
    """A merge on the driver takes the residual records from the cache, and writes nothing."""
    previous = spark_context.getCheckpointDir()
    try:
        with inc_conf(spark_context, checkpointDir=str(tmp_path)):
            rdd = spark_context.parallelize(pairs(3000, seed=9), 3)
            assert_same_as_vanilla(rdd, operator.add)
    finally:
        spark_context.setCheckpointDir(previous)
    assert bool(list(tmp_path.rglob("part-*"))) == (rdd_final_merge == "spark")


def test_default_partitions_come_from_the_input(spark_context: Any) -> None:
    rdd = spark_context.parallelize(pairs(1000, seed=3), 5)
    assert rdd.inc_reduce_by_key(operator.add).getNumPartitions() == 5


def test_custom_partition_function(spark_context: Any, rdd_final_merge: str) -> None:
    rdd = spark_context.parallelize([(f"k{i % 37}", i) for i in range(3000)], 4)
    assert_same_as_vanilla(rdd, operator.add, numPartitions=4, partitionFunc=lambda k: len(k))


def test_empty_rdd_and_empty_partitions(spark_context: Any, rdd_final_merge: str) -> None:
    assert_same_as_vanilla(spark_context.parallelize([], 3), operator.add)
    assert_same_as_vanilla(spark_context.parallelize([("a", 1)], 4), operator.add)


def test_unsupported_function_runs_vanilla_and_says_why(
    spark_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rdd = spark_context.parallelize(pairs(500, seed=4), 2)
    assert_same_as_vanilla(rdd, lambda a, b: a - b)
    assert "is not one the switch runs" in caplog.text


def test_float_values_take_the_host_path_exactly(spark_context: Any) -> None:
    rdd = spark_context.parallelize([(f"k{i % 10}", 0.5) for i in range(1000)], 2)
    assert_same_as_vanilla(rdd, operator.add)


def test_faults_in_the_switch(spark_context: Any) -> None:
    faults = ("--drop", "0.05", "--duplicate", "0.05", "--reorder", "0.05", "--seed", "11")
    with SwitchProcess(*faults) as switch, inc_conf(spark_context, switch__address=switch.address):
        rdd = spark_context.parallelize(pairs(30_000, seed=5), 4)
        assert_same_as_vanilla(rdd, operator.add)
        assert inc_spark.last_metrics().duplicates > 0


def test_task_failing_mid_stream_redoes_the_epoch(spark_context: Any) -> None:
    rdd = spark_context.parallelize(pairs(40_000, seed=6), 4)
    with inc_conf(spark_context, test__failPartitionEpoch="1:1", batchTuples="1000"):
        assert_same_as_vanilla(rdd, operator.add)
    assert inc_spark.last_metrics().epochs == 2


def epoch_record(*flows: tuple[int, int, bool]) -> dict[str, Any]:
    """A switch epoch record with flows given as (partition, attempt, closed)."""
    return {"flows": [{"partition": p, "attempt": a, "closed": c} for p, a, c in flows]}


@pytest.mark.parametrize(
    ("flows", "partitions", "problem"),
    [
        ([(0, 0, True), (1, 0, True), (2, 0, True)], 3, ""),
        ([(0, 0, True), (1, 0, True), (2, 0, True)], None, ""),
        ([], None, ""),
        ([(0, 0, True), (1, 0, True), (2, 0, True)], 2, "unexpected partition 2"),
        ([(0, 0, True), (1, 0, True)], 3, "partition 2 streamed by attempts []"),
        ([(0, 0, True), (2, 0, True)], None, "partition 1 streamed by attempts []"),
        ([(0, 0, True), (1, 0, False), (1, 1, True)], None, "partition 1 streamed by attempts"),
        ([(0, 0, False)], None, "partition 0 streamed by attempts [(0, 'open')]"),
    ],
)
def test_an_epoch_is_clean_with_one_closed_flow_per_partition(
    flows: list[tuple[int, int, bool]], partitions: int | None, problem: str
) -> None:
    """None (a DataFrame's stage, partitioned only when it runs) counts what streamed."""
    from inc_spark.spark.rdd_reduce import _epoch_is_clean

    clean, why = _epoch_is_clean(epoch_record(*flows), partitions)
    assert clean == (problem == "")
    assert problem in why


def test_the_driver_places_pairs_only_where_it_hashes_as_the_workers() -> None:
    from inc_spark.spark.rdd_reduce import _hashes_as_workers

    class Context:
        def __init__(self, seed: str) -> None:
            self.environment = {"PYTHONHASHSEED": seed}

    assert _hashes_as_workers(Context("0")) == (sys.flags.hash_randomization == 0)
    assert not _hashes_as_workers(Context("7"))


def test_hook_routes_plain_reduce_by_key(
    spark_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rdd = spark_context.parallelize(pairs(3000, seed=7), 3)
    expected = by_partition(rdd.reduceByKey(operator.add))
    before = inc_spark.last_metrics()
    with inc_conf(spark_context, replaceReduceByKey="true"):
        got = rdd.reduceByKey(operator.add)
    assert by_partition(got) == expected
    assert inc_spark.last_metrics() is not before


def test_streamed_output_is_never_streamed_again(spark_context: Any, rdd_final_merge: str) -> None:
    with SwitchProcess() as switch:
        address = switch.address
        with inc_conf(spark_context, switch__address=address):
            rdd = spark_context.parallelize(pairs(10_000, seed=8), 4)
            result = rdd.inc_reduce_by_key(operator.add)
            first = by_partition(result)
            # Recompute the result in several ways; the streaming stage must not run again.
            assert by_partition(result) == first
            assert result.mapValues(lambda v: v).count() == sum(len(p) for p in first)
        assert switch_stats(address)["switch"]["flows_opened"] == 4


def test_unreachable_switch_is_a_clear_error_or_a_fallback(spark_context: Any) -> None:
    rdd = spark_context.parallelize([("a", 1)], 1)
    with inc_conf(spark_context, switch__address="127.0.0.1:9", timeoutMs="1000"):
        with pytest.raises(Exception, match="no answer from the switch"):
            rdd.inc_reduce_by_key(operator.add)
        with inc_conf(spark_context, fallbackOnError="true"):
            assert rdd.inc_reduce_by_key(operator.add).collect() == [("a", 1)]


SPECULATION_PROGRAM = """
import operator, os, time
from pyspark import SparkConf, SparkContext, TaskContext
import inc_spark

conf = (SparkConf().setMaster("local[4]").setAppName("speculation")
        .set("spark.ui.enabled", "false")
        .set("spark.speculation", "true").set("spark.speculation.interval", "50ms")
        .set("spark.speculation.multiplier", "1.5").set("spark.speculation.quantile", "0.5")
        .set("spark.speculation.minTaskRuntime", "100ms"))
sc = SparkContext(conf=conf)
sc.setLogLevel("ERROR")

def slow_first_attempt(index, it):
    ctx = TaskContext.get()
    items = list(it)
    if index == 0 and ctx.attemptNumber() == 0:
        time.sleep(3)  # a straggler: the speculative copy of this task overtakes it
    return iter(items)

data = [(f"k{i % 100}", 1) for i in range(20000)]
rdd = sc.parallelize(data, 4).mapPartitionsWithIndex(slow_first_attempt)
got = sorted(rdd.inc_reduce_by_key(operator.add).collect())
expected = sorted(sc.parallelize(data, 4).reduceByKey(operator.add).collect())
print("EXACT" if got == expected else "WRONG", inc_spark.last_metrics().epochs)
sc.stop()
"""


def test_speculative_attempts_do_not_double_count() -> None:
    run = subprocess.run(
        [sys.executable, "-c", SPECULATION_PROGRAM],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[0] == "EXACT", run.stdout + run.stderr[-3000:]


def test_config_reference_is_current() -> None:
    from inc_spark.spark.config import markdown_table

    with open(os.path.join(REPO, "docs", "config.md")) as f:
        assert markdown_table() in f.read(), "regenerate the table in docs/config.md"


def test_a_temporary_checkpoint_directory_goes_with_its_context() -> None:
    """Local masters without a checkpoint directory get a temporary one, removed at stop()."""
    from inc_spark.spark.config import IncConf
    from inc_spark.spark.rdd_reduce import _checkpoint_dir

    class Context:
        master = "local[2]"
        checkpoint_dir: str | None = None

        def getCheckpointDir(self) -> str | None:  # noqa: N802 - SparkContext's name
            return self.checkpoint_dir

        def setCheckpointDir(self, path: str) -> None:  # noqa: N802
            os.makedirs(os.path.join(path, "some-rdd"))
            self.checkpoint_dir = path

        def stop(self) -> None:
            pass

    sc = Context()
    _checkpoint_dir(sc, IncConf.from_spark({}))
    assert sc.checkpoint_dir is not None and os.path.isdir(sc.checkpoint_dir)
    sc.stop()
    assert not os.path.exists(sc.checkpoint_dir)
