"""``inc_spark.aggregate`` against Spark's own ``groupBy().agg()`` on the same data."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import inc_spark
from inc_spark import aggregate
from switch_dataplane.daemon.launcher import SwitchProcess
from tests.test_spark_rdd import inc_conf, switch_stats

STR_KEYS = ["a", "b", "", "é", "日本語", "x" * 15, "y" * 16, "z" * 40, None]
INT32 = 2**31 - 1


def _frame(spark_context: Any, key_type: str, seed: int, rows: int = 3000) -> Any:
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    rng = random.Random(seed)
    if key_type == "string":
        keys = [rng.choice(STR_KEYS) for _ in range(rows)]
    elif key_type == "binary":
        keys = [None if k is None else bytearray(k.encode()) for k in rng.choices(STR_KEYS, k=rows)]
    else:  # int / bigint, negatives and nulls included
        keys = [rng.choice([None, 0, 1, -1, 7, -(2**31), INT32]) for _ in range(rows)]
        if key_type == "bigint":
            keys = [k if k is None else k * 3 for k in keys]
    values = [rng.choice([None, 1, -1, 5, INT32, -INT32 - 1, 2**40, -(2**45)]) for _ in range(rows)]
    return spark.createDataFrame(
        list(zip(keys, values, strict=True)), f"k {key_type}, v bigint"
    ).repartition(3)


def _vanilla(df: Any, op: str, value: str | None) -> Any:
    from pyspark.sql import functions as F

    grouped = df.groupBy("k")
    if value is None:
        return grouped.count()
    return grouped.agg({"count": F.count, "sum": F.sum, "min": F.min, "max": F.max}[op](value))


def _types(df: Any) -> list[tuple[str, Any, bool]]:
    return [(f.name, f.dataType, f.nullable) for f in df.schema.fields]


def _sorted_rows(df: Any) -> list[tuple]:
    return sorted(map(tuple, df.collect()), key=repr)


def assert_typed_and_valued_as(got: Any, expected: Any) -> None:
    """The same column names, types, nullability and rows."""
    assert _types(got) == _types(expected)
    assert _sorted_rows(got) == _sorted_rows(expected)


def _aggregated_by_spark(df: Any) -> bool:
    """Whether the final merge is a Spark aggregation (else it ran on the driver)."""
    return "Aggregate" in df._jdf.queryExecution().optimizedPlan().toString()


@pytest.mark.parametrize(
    ("key_type", "op", "value"),
    [
        ("string", "count", None),
        ("string", "sum", "v"),
        ("string", "count", "v"),
        ("int", "min", "v"),
        ("bigint", "max", "v"),
        ("binary", "sum", "v"),
    ],
)
def test_matches_group_by_with_nulls_long_keys_and_wide_values(
    spark_context: Any, final_merge: str, key_type: str, op: str, value: str | None
) -> None:
    df = _frame(spark_context, key_type, seed=len(key_type) * 10 + len(op))
    got = aggregate(df, "k", value, op)
    expected = _vanilla(df, op, value)
    assert _aggregated_by_spark(got) == (final_merge == "spark")
    assert_typed_and_valued_as(got, expected)


@pytest.mark.parametrize(
    ("key_type", "value_type", "op"),
    [
        ("tinyint", "smallint", "min"),
        ("smallint", "int", "max"),
        ("int", "tinyint", "max"),
        ("tinyint", "int", "sum"),
        ("smallint", "tinyint", "count"),
    ],
)
def test_narrow_integer_columns_keep_group_bys_types(
    spark_context: Any, final_merge: str, key_type: str, value_type: str, op: str
) -> None:
    """A min or max keeps the value column's type (the switch carries longs); sums and counts
    are longs, as in Spark."""
    from pyspark.sql import SparkSession

    rng = random.Random(len(key_type) + len(value_type))
    rows = [
        (rng.choice([None, 0, -1, 7, -128, 127]), rng.choice([None, 1, -3, -128, 127]))
        for _ in range(2000)
    ]
    spark = SparkSession.builder.getOrCreate()
    df = spark.createDataFrame(rows, f"k {key_type}, v {value_type}").repartition(3)
    got, expected = aggregate(df, "k", "v", op), _vanilla(df, op, "v")
    assert_typed_and_valued_as(got, expected)


def test_driver_merge_without_pyarrow_access_to_the_files(
    spark_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Residuals collected and the result created through Spark when pyarrow cannot reach the
    checkpoint's file system."""
    from inc_spark.spark import dataframe

    monkeypatch.setattr(dataframe._DriverFiles, "of", classmethod(lambda cls, residuals: None))
    df = _frame(spark_context, "string", seed=13)
    for op, value in (("count", None), ("sum", "v")):
        got, expected = aggregate(df, "k", value, op), _vanilla(df, op, value)
        assert not _aggregated_by_spark(got)
        assert_typed_and_valued_as(got, expected)


def test_a_sum_beyond_a_long_raises_as_spark_does(spark_context: Any, final_merge: str) -> None:
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    df = spark.createDataFrame([("a", 2**62)] * 4, "k string, v bigint")
    with pytest.raises(Exception, match="(?i)overflow") as vanilla_error:
        _vanilla(df, "sum", "v").collect()
    with pytest.raises(type(vanilla_error.value), match="(?i)overflow"):
        aggregate(df, "k", "v", "sum").collect()


@pytest.mark.parametrize(
    "shape", ["no rows", "filtered out", "filtered out, shuffled", "non-nullable keys"]
)
def test_empty_inputs_and_non_nullable_keys_are_typed_as_group_by(
    spark_context: Any, final_merge: str, shape: str
) -> None:
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    df = spark.createDataFrame([], "k string, v bigint")
    if shape != "no rows":  # keys cast from a never-null id are never null
        df = spark.range(500).selectExpr("substr(cast(id as string), 1, 1) k", "id v")
    if shape.startswith("filtered out"):
        df = df.where("v > 1000")
    if shape.endswith("shuffled"):
        df = df.repartition(4)
    for op, value in (("count", None), ("sum", "v"), ("max", "v")):
        got, expected = aggregate(df, "k", value, op), _vanilla(df, op, value)
        assert_typed_and_valued_as(got, expected)
    assert inc_spark.last_metrics().epochs == 1


def test_the_input_is_evaluated_once(spark_context: Any) -> None:
    """The streaming stage is planned once, when it runs: nothing upstream (here a Python UDF
    before a shuffle) is evaluated again, e.g. to learn a partition count beforehand."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = SparkSession.builder.getOrCreate()
    evaluated = spark_context.accumulator(0)

    @F.udf("string")
    def key_of(i):  # no type hints: PySpark would take them for a pandas UDF's
        evaluated.add(1)
        return f"k{i % 7}"

    df = spark.range(0, 500, numPartitions=2).select(key_of("id").alias("k")).repartition(3)
    got = _sorted_rows(aggregate(df, "k"))
    assert evaluated.value == 500
    assert got == _sorted_rows(_vanilla(df, "count", None))


@contextmanager
def small_arrow_batches(rows: int) -> Iterator[None]:
    """Many Arrow batches per partition, so a task can fail between two of them."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    spark.conf.set(key, str(rows))
    try:
        yield
    finally:
        spark.conf.set(key, before)


def test_task_failing_mid_stream_redoes_the_epoch(spark_context: Any) -> None:
    df = _frame(spark_context, "string", seed=11, rows=6000)
    with small_arrow_batches(500), inc_conf(spark_context, test__failPartitionEpoch="1:1"):
        got = aggregate(df, "k", "v", "sum")
    assert inc_spark.last_metrics().epochs == 2
    assert _sorted_rows(got) == _sorted_rows(_vanilla(df, "sum", "v"))


def test_the_streamed_residuals_are_never_streamed_again(spark_context: Any) -> None:
    df = _frame(spark_context, "int", seed=12)
    with SwitchProcess() as switch, inc_conf(spark_context, switch__address=switch.address):
        got = aggregate(df, "k", "v", "max")
        first = _sorted_rows(got)
        # Recompute the result in several ways; the streaming stage must not run again.
        assert _sorted_rows(got) == first
        assert got.where("k is not null").count() == len(first) - 1
        assert switch_stats(switch.address)["switch"]["flows_opened"] == df.rdd.getNumPartitions()
    assert first == _sorted_rows(_vanilla(df, "max", "v"))


def test_a_word_count_is_typed_and_valued_as_the_sql_one(spark_context: Any, tmp_path: Any) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from inc_spark.text.tokenizer import SPLIT_PATTERN

    spark = SparkSession.builder.getOrCreate()
    path = tmp_path / "lines.txt"
    path.write_text("a b  é\nb a-very-long-word-beyond-a-key\n\n c\u00a0a\n" * 40)
    lines = spark.read.text(str(path))
    words = lines.select(F.explode(F.split("value", SPLIT_PATTERN)).alias("word"))
    expected = words.where(F.length("word") > 0).groupBy("word").count()
    got = aggregate(lines, "value", words=True)
    assert_typed_and_valued_as(got, expected)
