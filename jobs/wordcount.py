"""Word count through the switch, or through vanilla Spark for comparison.

    spark-submit jobs/wordcount.py INPUT [--mode inc|inc-df|inc-rdd|rdd|sql|local]
                                         [--tasks P] [--output FILE] [--top N] [--pure-streaming]
    python jobs/wordcount.py INPUT ...          (same, with a local master)

Modes: ``inc`` (default) workers read their input splits with pyarrow, tokenise with Arrow and
stream to the switch; ``inc-df`` ``inc_spark.aggregate(lines, "value", words=True)`` over
``spark.read.text`` (the lines cross to Python once, as Arrow, and are split there);
``inc-rdd`` ``inc_reduce_by_key`` on the same Python pipeline as ``rdd``; ``rdd`` vanilla
``reduceByKey``; ``sql`` vanilla ``groupBy().count()``; ``local`` the ``inc`` code with no
switch (each task combines its words, the driver merges them: the baseline that shows what the
switch itself contributes). ``--tasks P`` reads the input as P map tasks in every mode (default:
as Spark would split it). Every mode gives the same counts: words
are maximal runs of non-whitespace, whitespace being exactly what Python's ``str.split()``
splits on; invalid UTF-8 reads as U+FFFD exactly as the JVM decodes it; a byte order mark is an
ordinary character, except that one at the very start of a file is dropped, as Spark's text
readers (Hadoop's line reader) drop it.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import sys
import time
from typing import Any

import pyarrow as pa

from inc_spark.text.word_counts import counts_table, top_words, total_words, write_sorted

MODES = ("inc", "inc-df", "inc-rdd", "rdd", "sql", "local")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", help="a text file, a directory or a glob")
    parser.add_argument("--mode", choices=MODES, default="inc")
    parser.add_argument("--output", help="write word<TAB>count lines, sorted by word, UTF-8")
    parser.add_argument("--top", type=int, default=20, help="print the N most frequent words")
    parser.add_argument("--tasks", type=int, help="map tasks P (default: Spark's split sizes)")
    parser.add_argument("--pure-streaming", action="store_true", help="no pre-combine")
    parser.add_argument("--master", help="Spark master (default: spark-submit's, or local[*])")
    parser.add_argument("--metrics-json", help="write timing and INC metrics as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark configuration setting (repeatable), e.g. spark.inc.switch.address=H:P",
    )
    return parser


def _progress(enabled: bool, message: str) -> None:
    if enabled:
        print(f"[wordcount] {message}", file=sys.stderr, flush=True)


def input_bytes(files: list[str]) -> int:
    """Bytes of the input files, from the listing where it knows them."""
    from inc_spark.text.text_source import file_size

    return sum(map(file_size, files))


def count_words(spark: Any, mode: str, files: list[str], tasks: int | None = None) -> Any:
    """An RDD, DataFrame or Arrow table of (word, count) for the mode, over ``tasks`` map
    tasks (None: as Spark splits the input)."""
    sc = spark.sparkContext
    total = input_bytes(files) if tasks else None
    if mode in ("inc", "local"):
        from inc_spark.spark.config import IncConf
        from inc_spark.text.text_wordcount import word_count

        split_bytes = -(-total // tasks) if total else None
        conf = IncConf.from_spark(sc.getConf()).replaced(noSwitch=mode == "local")
        return word_count(sc, files, split_bytes, conf)
    if mode in ("inc-df", "sql"):
        from pyspark.sql import functions as F

        from inc_spark.text.tokenizer import SPLIT_PATTERN

        if total:  # Spark's file sources cut splits of this size (maxSplitBytes)
            spark.conf.set("spark.sql.files.maxPartitionBytes", str(-(-total // tasks)))
        lines = spark.read.text(files)
        if mode == "inc-df":
            from inc_spark import aggregate

            return aggregate(lines, "value", words=True)
        words = lines.select(F.explode(F.split("value", SPLIT_PATTERN)).alias("word"))
        return words.where(F.length("word") > 0).groupBy("word").count()
    lines = sc.textFile(",".join(files), tasks) if tasks else sc.textFile(",".join(files))
    if tasks and lines.getNumPartitions() > tasks:
        lines = lines.coalesce(tasks)  # Hadoop splits at block size: at least, not exactly, P
    pairs = lines.flatMap(str.split).map(lambda w: (w, 1))
    if mode == "rdd":
        from inc_spark.spark.vanilla import REDUCE_BY_KEY

        return REDUCE_BY_KEY(pairs, operator.add)
    import inc_spark  # noqa: F401 - adds RDD.inc_reduce_by_key

    return pairs.inc_reduce_by_key(operator.add)


def counts_of(result: Any) -> pa.Table:
    """The (word, count) table of a mode's result: a table already, a DataFrame or an RDD."""
    if isinstance(result, pa.Table):
        return result
    if hasattr(result, "toArrow"):  # a DataFrame: columns through Arrow, not one Row per word
        table = result.toArrow()
        return counts_table(table.column(0), table.column(1))
    pairs = result.collect()
    return counts_table(
        list(map(operator.itemgetter(0), pairs)), list(map(operator.itemgetter(1), pairs))
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    progress = not args.quiet
    from inc_spark.text.text_source import InputNotReadable, input_files

    try:
        files = input_files(args.input)
    except InputNotReadable as exc:
        if args.mode in ("inc", "local") or args.tasks:  # they need pyarrow's listing
            print(f"wordcount: {exc}", file=sys.stderr)
            return 2
        files = [args.input]  # Spark's own file sources list it
        _progress(progress, f"input {args.input} (listed by Spark)")
    except (FileNotFoundError, PermissionError) as exc:
        print(f"wordcount: {exc}", file=sys.stderr)
        return 2
    else:
        _progress(progress, f"{len(files)} input file(s), {input_bytes(files)} bytes")

    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(f"wordcount-{args.mode}")
    master = args.master
    if not master and "PYSPARK_GATEWAY_PORT" not in os.environ:  # not launched by spark-submit
        master = "local[*]"
    if master:
        builder = builder.master(master)
    if (master or "").startswith("local"):
        # Local workers run on this machine: give them this interpreter, which has inc-spark,
        # rather than whatever `python3` is on the PATH (PySpark reads the variable).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if args.pure_streaming:
        builder = builder.config("spark.inc.preCombine", "false")
    for setting in args.conf:
        key, sep, value = setting.partition("=")
        if not sep or not key.strip():
            print(f"wordcount: --conf expects KEY=VALUE, got {setting!r}", file=sys.stderr)
            return 2
        builder = builder.config(key.strip(), value)
    started_process = time.monotonic()
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    ready = time.monotonic()
    _progress(progress, f"SparkContext ready in {ready - started_process:.1f} s; mode {args.mode}")
    counts = counts_of(count_words(spark, args.mode, files, args.tasks))
    counted = time.monotonic()
    _progress(progress, f"{counts.num_rows} distinct words counted in {counted - ready:.1f} s")
    if args.output:
        write_sorted(counts, args.output)
        _progress(progress, f"wrote {args.output}")
    finished = time.monotonic()
    top = top_words(counts, args.top)
    width = max((len(w) for w, _ in top), default=4)
    for word, count in top:
        print(f"{word:<{width}}  {count}")
    metrics = None
    if args.mode.startswith("inc") or args.mode == "local":
        import inc_spark

        m = inc_spark.last_metrics()
        if m is not None:
            m.distinct_keys = m.distinct_keys or counts.num_rows
            metrics = m.as_dict()
            print(f"INC: {m.summary()}" if args.mode != "local" else
                  f"no switch: {m.host_path:,} combined tuples merged on the driver")  # fmt: skip
    if args.metrics_json:
        from inc_spark.spark.metrics import stage_metrics

        spark_metrics = stage_metrics(spark.sparkContext)
        with open(args.metrics_json, "w") as f:
            json.dump(
                {
                    "mode": args.mode,
                    "context_start_s": ready - started_process,
                    "job_s": finished - ready,
                    "distinct_words": counts.num_rows,
                    "words": total_words(counts),
                    "inc": metrics,
                    "spark": spark_metrics,
                },
                f,
            )
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
