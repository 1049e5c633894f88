"""The columnar path: ``aggregate(df, key, value, op)``, typed like ``groupBy().agg()``.

Arrow batches go from ``mapInArrow`` straight to packets: key columns are encoded in bulk
(``key_codec.encode_arrow_column``), values are numpy arrays, and nothing is done per row in
Python. Like ``inc_reduce_by_key`` the streaming runs eagerly, exactly once per partition
(``rdd_reduce.run_stage``). Up to ``spark.inc.driverMergeTuples`` residual and drained rows
are merged on the driver with pyarrow into a local DataFrame; larger results (and sums that
could overflow a long) are Spark's own lazy ``groupBy(key).agg(...)`` over them. Either way the
types, null handling and overflow behaviour (ANSI: an overflowing sum raises) are Spark's.

>>> df = sc.parallelize([("a", 1), ("b", 2), ("a", 5), (None, 7)]).toDF(["k", "v"])
>>> sorted(aggregate(df, "k", "v", "sum").collect(), key=str)
[Row(k='a', sum(v)=6), Row(k='b', sum(v)=2), Row(k=None, sum(v)=7)]
>>> sorted(aggregate(df, "k").collect(), key=str)
[Row(k='a', count=2), Row(k='b', count=1), Row(k=None, count=1)]
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from inc_spark import host
from inc_spark.host import key_codec
from inc_spark.spark.config import IncConf
from inc_spark.spark.rdd_reduce import fails_by_test_hook, record_distinct_keys, run_stage
from inc_spark.text.tokenizer import decode_utf8, line_word_spans, word_keys
from switch_dataplane import wire

log = logging.getLogger("inc_spark")

SWITCH_OPS = {"count": "sum", "sum": "sum", "min": "min", "max": "max"}


def _spark_agg(op: str, column: str) -> Any:
    """Spark's aggregate over the partial results (counts are summed)."""
    from pyspark.sql import functions as F

    return {"count": F.sum, "sum": F.sum, "min": F.min, "max": F.max}[op](column)


def _vanilla(df: Any, key: str, value: str | None, op: str) -> Any:
    from pyspark.sql import functions as F

    grouped = df.groupBy(key)
    if value is None:
        return grouped.count()
    return grouped.agg({"count": F.count, "sum": F.sum, "min": F.min, "max": F.max}[op](value))


def _words_of_lines(lines: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.RecordBatch | None]:
    """Encoded words of a batch of text lines (counts of 1) and the long words, counted.

    The words are found in the column's own data buffer (``tokenizer.line_word_spans``): no
    string objects. Lines that are not valid UTF-8 are decoded the JVM's way first.
    """
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:
        raw = lines.cast(pa.large_binary()).to_pylist()
        lines = pa.array([None if b is None else decode_utf8(b) for b in raw], pa.large_string())
    if lines.null_count:
        lines = lines.fill_null("")
    offset_type = np.int64 if pa.types.is_large_string(lines.type) else np.int32
    _, offsets_buf, data_buf = lines.buffers()
    offsets = np.frombuffer(offsets_buf, offset_type)[lines.offset : lines.offset + len(lines) + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    encoded, counted = word_keys(data, *line_word_spans(data, offsets))
    long_words = None
    if counted is not None:
        long_words = pa.record_batch(
            [counted.field("values").cast(pa.string()), counted.field("counts").cast(pa.int64())],
            names=["key", "value"],
        )
    return encoded, np.ones(len(encoded), np.int64), long_words


def _stream_batches(
    ticket: host.JobTicket,
    key: str,
    value: str | None,
    op: str,
    conf: IncConf,
    rows_out: Any,
    words: bool = False,
) -> Any:
    """The mapInArrow function: stream each batch, yield residual (key, value) batches, counted
    (rows, of which host-path rows) in the ``KeptCounts`` accumulator ``rows_out``."""
    from pyspark import TaskContext

    def stream(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        attempt = context.attemptNumber() if context is not None else 0
        hook = conf["test.failPartitionEpoch"]
        fails = fails_by_test_hook(hook, partition, ticket.epoch, attempt)
        key_type = None
        passthrough: list[pa.RecordBatch] = []
        with host.FlowStream(
            ticket, partition, attempt, conf["preCombine"], conf["combineKeys"]
        ) as flow:
            for batch in batches:
                if fails and key_type is not None:
                    raise RuntimeError("inc-spark test hook: task fails mid-stream")
                if words:
                    key_type = pa.string()
                    encoded, ones, long_words = _words_of_lines(batch.column(0))
                    if long_words is not None:
                        passthrough.append(long_words)
                    flow.send(encoded, ones)
                    continue
                keys = batch.column(0)
                key_type = keys.type
                if value is None:
                    values = pa.array(np.ones(len(batch), np.int64))
                else:
                    values = batch.column(1).cast(pa.int64())
                    if op == "count":
                        values = pc.cast(pc.is_valid(values), pa.int64())
                # Long keys, null values and values beyond int32 are left to Spark's own
                # aggregation: they pass through to the final groupBy untouched.
                encoded, fits = key_codec.encode_arrow_column(keys)
                in_range = pc.and_(
                    pc.greater_equal(values, wire.INT32_MIN),
                    pc.less_equal(values, wire.INT32_MAX),
                ).fill_null(False)
                to_switch = in_range.to_numpy(zero_copy_only=False) & fits
                if not to_switch.all():
                    keep = pa.array(~to_switch)
                    passthrough.append(
                        pa.record_batch(
                            [pc.filter(keys, keep), pc.filter(values, keep)],
                            names=["key", "value"],
                        )
                    )
                ints = values.fill_null(0).to_numpy(zero_copy_only=False)
                flow.send(encoded[to_switch], ints[to_switch])
        host_rows = sum(batch.num_rows for batch in passthrough)
        if key_type is not None:
            residual_keys, residual_values = host.combine_encoded(
                flow.result.keys, flow.result.values, ticket.op
            )
            passthrough.append(
                pa.record_batch(
                    [
                        pa.array(key_codec.decode_keys(residual_keys), key_type),
                        pa.array(residual_values, pa.int64()),
                    ],
                    names=["key", "value"],
                )
            )
        rows_out.add((sum(batch.num_rows for batch in passthrough), host_rows))
        yield from passthrough

    return stream


def aggregate(
    df: Any, key: str, value: str | None = None, op: str = "count", words: bool = False
) -> Any:
    """``df.groupBy(key)`` with count / sum / min / max of an integer column, via the switch.

    ``value=None`` with ``op="count"`` counts rows (``groupBy(key).count()``); otherwise the
    result column is named as Spark names it (``sum(v)``, ``count(v)``...). Names, types and
    nullability are groupBy's: counts and sums are longs, a min or max has the value column's
    type, a non-nullable key stays non-nullable. Key columns of
    other than string, binary or integer types, and non-integer values, run as vanilla
    ``groupBy().agg()`` with the reason logged.

    ``words=True`` counts the words of the text column ``key`` instead (words as Python's
    ``str.split()`` makes them): the result is ``(word, count)``, as
    ``df.select(explode(split(key, tokenizer.SPLIT_PATTERN)).alias("word"))`` filtered of empty
    strings and grouped would give, but the lines cross to Python once and are split there.
    """
    from pyspark.sql import types as T

    if words:
        if op != "count" or value is not None:
            raise ValueError("words=True counts words: no value column, op 'count'")
        return _aggregate_words(df, key)
    if op not in SWITCH_OPS:
        raise ValueError(f"op must be one of {sorted(SWITCH_OPS)}, got {op!r}")
    if value is None and op != "count":
        raise ValueError(f"op {op!r} needs a value column")
    sc = df.sparkSession.sparkContext
    conf = IncConf.from_spark(sc.getConf())
    source = df.select(key) if value is None else df.select(key, value)
    key_type = source.schema[key].dataType
    integral = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
    if not conf["enabled"]:
        return _vanilla(df, key, value, op)
    if not isinstance(key_type, (T.StringType, T.BinaryType, *integral)):
        log.warning("inc-spark: vanilla groupBy: key column %s is %s", key, key_type)
        return _vanilla(df, key, value, op)
    if value is not None and not isinstance(source.schema[value].dataType, integral):
        log.warning("inc-spark: vanilla groupBy: value column %s is not an integer", value)
        return _vanilla(df, key, value, op)

    name = "count" if value is None else f"{op}({value})"
    result, why_not = _through_switch(
        source,
        _partial_schema(key_type),
        lambda ticket, rows: _stream_batches(ticket, key, value, op, conf, rows),
        (key, op, name),
        conf,
    )
    if result is None:
        log.warning("inc-spark: vanilla groupBy: %s", why_not)
        return _vanilla(df, key, value, op)
    value_type = source.schema[value].dataType if value is not None else None
    return _typed_as_group_by(result, op, source.schema[key].nullable, value_type)


def _through_switch(
    source: Any,
    schema: Any,
    stream_function: Callable[[host.JobTicket, Any], Any],
    result: tuple[str, str, str],
    conf: IncConf,
) -> tuple[Any | None, str]:
    """Stream ``source`` with ``stream_function(ticket, rows_accumulator)`` as its mapInArrow
    function and merge into ``result`` = (key, op, name); -> (DataFrame, "") or (None, why INC
    gave up)."""
    sc = source.sparkSession.sparkContext

    def build(ticket: host.JobTicket, rows: Any) -> Any:
        return source.mapInArrow(stream_function(ticket, rows), schema)

    switch_op = SWITCH_OPS[result[1]]
    residuals, drained, small = run_stage(sc, None, switch_op, build, conf)
    if residuals is None:
        return None, drained
    return _merged(residuals, drained, schema, result, small), ""


def _typed_as_group_by(frame: Any, op: str, key_nullable: bool, value_type: Any | None) -> Any:
    """``frame`` (key, op's result) with the types ``groupBy`` gives, which the way through the
    switch widens: a count is never null and a non-nullable key stays non-nullable (the
    partials travel through files, and a file source reads every column as nullable); a min or
    max keeps the type ``value_type`` of the value column (the switch and the partials carry
    longs)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    key, name = frame.columns
    key_column, value_column = frame[key], frame[name]
    if not key_nullable and frame.schema[key].nullable:
        key_type = frame.schema[key].dataType
        never_null = F.lit("" if isinstance(key_type, (T.StringType, T.BinaryType)) else 0)
        key_column = F.coalesce(key_column, never_null.cast(key_type)).alias(key)
    if op == "count" and frame.schema[name].nullable:
        value_column = F.coalesce(value_column, F.lit(0)).alias(name)
    if op in ("min", "max"):
        value_column = value_column.cast(value_type).alias(name)
    return frame.select(key_column, value_column)


def _partial_schema(key_type: Any) -> Any:
    """The (key, value) rows that feed Spark's final aggregation."""
    from pyspark.sql import types as T

    return T.StructType(
        [T.StructField("key", key_type, True), T.StructField("value", T.LongType(), True)]
    )


def _merged(
    residuals: Any,
    drained: host.StreamResult,
    schema: Any,
    result: tuple[str, str, str],
    on_driver: bool,
) -> Any:
    """The residuals and the drained aggregators merged into the result ``(key, op, name)``.

    Small merges run on the driver in pyarrow (no shuffle); large ones, and sums that could
    overflow a long, run as Spark's own groupBy, so that Spark's types, null handling and
    (ANSI) overflow behaviour hold either way.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema

    key, op, name = result
    spark = residuals.sparkSession
    drained_table = _drained_table(drained, to_arrow_schema(schema))
    if on_driver:
        files = _DriverFiles.of(residuals)
        residual_table = files.read() if files else residuals.toArrow()
        table = pa.concat_tables([residual_table.cast(drained_table.schema), drained_table])
        if op in ("min", "max") or _abs_sum(table.column("value")) < 2.0**62:
            return _aggregated_on_driver(spark, table, schema, result, files)
    drained_df = spark.createDataFrame(drained_table, schema)
    return (
        residuals.unionByName(drained_df)
        .groupBy(F.col("key").alias(key))
        .agg(_spark_agg(op, "value").alias(name))
    )


@dataclasses.dataclass(frozen=True)
class _DriverFiles:
    """The residual Parquet files where pyarrow on the driver reaches them: read and written
    there without a Spark job."""

    filesystem: pafs.FileSystem
    uris: list[str]

    @classmethod
    def of(cls, residuals: Any) -> _DriverFiles | None:
        """None if there are no files or pyarrow cannot reach them (the caller uses Spark)."""
        uris = residuals.inputFiles()
        if not uris:
            return None
        try:
            filesystem, path = pafs.FileSystem.from_uri(uris[0])
            reachable = filesystem.get_file_info(path).type == pafs.FileType.File
        except (pa.ArrowException, OSError, ValueError) as exc:
            log.info("inc-spark: residuals not reachable by pyarrow (%s)", exc)
            return None
        return cls(filesystem, uris) if reachable else None

    def read(self) -> pa.Table:
        return pq.read_table([_path_of(u) for u in self.uris], filesystem=self.filesystem)

    def write_beside(self, table: pa.Table) -> str:
        """``table`` as one Parquet file in a new directory beside the residuals'; -> its URI."""
        directory = self.uris[0].rsplit("/", 1)[0] + "-merged"
        self.filesystem.create_dir(_path_of(directory))
        pq.write_table(
            table, _path_of(directory) + "/part-00000.parquet", filesystem=self.filesystem
        )
        return directory


def _path_of(uri: str) -> str:
    return pafs.FileSystem.from_uri(uri)[1]


def _abs_sum(values: pa.ChunkedArray) -> float:
    """An upper bound of any group's absolute sum (float: it cannot overflow itself)."""
    return pc.sum(pc.abs(values.cast(pa.float64(), safe=False))).as_py() or 0.0


def _aggregated_on_driver(
    spark: Any,
    table: pa.Table,
    schema: Any,
    result: tuple[str, str, str],
    files: _DriverFiles | None,
) -> Any:
    """Group by key in pyarrow: nulls form one group and an all-null group's sum, min or max is
    null, as in Spark; a count's partials are never null.

    The result goes back to Spark as a Parquet file beside the residuals where pyarrow reaches
    them (Spark then reads it as columns), else through ``createDataFrame``.
    """
    from pyspark.sql import types as T

    key, op, name = result
    function = "sum" if op == "count" else op
    grouped = table.group_by("key").aggregate([("value", function)])
    result_schema = T.StructType(
        [
            T.StructField(key, schema["key"].dataType, True),
            T.StructField(name, T.LongType(), True),  # aggregate() gives groupBy's types
        ]
    )
    columns = [grouped.column("key"), grouped.column(f"value_{function}")]
    merged = pa.table(columns, names=[key, name])
    record_distinct_keys(merged.num_rows)
    if files is None:
        return spark.createDataFrame(merged, result_schema)
    return spark.read.schema(result_schema).parquet(files.write_beside(merged))


def _drained_table(drained: host.StreamResult, arrow_schema: pa.Schema) -> pa.Table:
    """The drained aggregators as Arrow columns (no Row per key)."""
    keys, values = host.combine_encoded(drained.keys, drained.values, drained.op)
    return pa.Table.from_arrays(
        [
            pa.array(key_codec.decode_keys(keys), arrow_schema.field("key").type),
            pa.array(values, pa.int64()),
        ],
        schema=arrow_schema,
    )


def _aggregate_words(df: Any, column: str) -> Any:
    from pyspark.sql import types as T

    sc = df.sparkSession.sparkContext
    conf = IncConf.from_spark(sc.getConf())
    source = df.select(column)
    if not isinstance(source.schema[column].dataType, T.StringType):
        raise TypeError(
            f"words=True needs a string column; {column} is {source.schema[column].dataType}"
        )
    result, why_not = _through_switch(
        source,
        _partial_schema(T.StringType()),
        lambda ticket, rows: _stream_batches(ticket, column, None, "count", conf, rows, words=True),
        ("word", "count", "count"),
        conf,
    )
    if result is None:
        raise RuntimeError(f"inc-spark word count gave up: {why_not}")
    return _typed_as_group_by(result, "count", key_nullable=False, value_type=None)
