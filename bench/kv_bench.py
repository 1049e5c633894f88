"""Key-value aggregation as ASK (ASPLOS'23) measures it: sum an int column by key, INC vs Spark.

    .venv/bin/python bench/kv_bench.py --repeat 3 --json docs/kv.json --plot docs/kv.png
    .venv/bin/python bench/kv_bench.py --key-type str --json docs/kv-str.json --plot docs/kv-str.png
    .venv/bin/python bench/kv_bench.py --rows 200000 --keys 1000 --zipf 0.99 --repeat 1   # quick

Data: ``--rows`` N (20 M) rows of (k, v), k drawn from K distinct keys (``--keys``, 10 K, 100 K,
1 M) with Zipf exponent s (``--zipf``, 0 = uniform, 0.99, 1.2) over the finite key set (inverse
CDF of the normalised ``r**-s``, rank -> key id through a random permutation, so the hot keys
are not the small ids), v uniform in 1..100 (int32). Keys are the int64 ids, or with ``--key-type
str`` 12-character ASCII strings ``k`` + the id in 11 digits (they fit the switch's 16-byte key).
Each dataset is written once as ``--files`` P (32) Parquet files under ``--data-dir`` and reused;
beside them numpy's exact sum, row count and file count per key id (``np.bincount``) are kept as
the independent reference. Every run's result is collected and compared with it exactly; a
mismatch aborts with the key that differs.

Modes, in ONE SparkSession (``--master`` local[2]; ``PYSPARK_PYTHON`` this interpreter; the
script re-executes itself with ``PYTHONHASHSEED=0``, as ``spark-submit`` starts drivers) talking
to ONE switch process (``SwitchProcess()``: 32 slots a packet, 4096 columns, passed as
``spark.inc.switch.address``):

* ``sql``: ``spark.read.parquet(dir).groupBy("k").agg(F.sum("v"))``;
* ``inc-df``: ``inc_spark.aggregate(df, "k", "v", op="sum")`` on the same DataFrame;
* ``local-df``: the same with ``spark.inc.noSwitch=true``: the INC code path with no switch;
* ``rdd``: ``pairs.reduceByKey(operator.add)``, where ``pairs`` reads one Parquet file per
  partition with pyarrow (``iter_batches``) and yields Python (k, v) tuples: the same cheap
  source for all three RDD modes;
* ``inc-rdd``: ``pairs.inc_reduce_by_key(operator.add)``;
* ``local-rdd``: ``inc-rdd`` with ``spark.inc.noSwitch=true``.

Every file is one task in every mode (``spark.sql.files.maxPartitionBytes`` and
``openCostInBytes`` 1 GB, so Spark does not pack files into fewer splits), and
``spark.sql.shuffle.partitions`` = P. spark.inc.* keys are set on the live conf between runs
(the library reads them at each call). Each run is one action, timed from building the query to
the result on the driver (``toArrow()`` for DataFrames, ``collect()`` for RDDs), with its own
Spark job group. Per dataset every mode runs once untimed (warm-up), then ``--repeat`` (3)
interleaved repetitions (rep 1: every mode, rep 2: every mode...); medians are reported.

Per run: the wall time (the result's check is not timed); the CPUs this process tree used
meanwhile (driver, JVM, Python workers, switch: psutil) and those the rest of the machine used
(busy CPU seconds of the machine minus ours: the machine is shared, so a busy neighbour shows);
the INC traffic ledger (``inc_spark.last_metrics().as_dict()``: tuples sent, host-bound = residual +
flushed + evicted + drained, host-path entries, switch thread CPU); Spark's shuffle write and
read records and bytes of the run's own jobs (UI REST API, stages of its job group). For RDDs
Spark counts pickled batches as shuffle records, not tuples, so the vanilla shuffle figures of
the ratios are the ``sql`` run's (rows). Reaching the hosts (``host_bound``) is the ledger's
host-bound plus host-path entries: with no switch (``local-*``), every combined tuple.

Per dataset, from the reference: distinct keys; ``combined`` = the sum over files of their
distinct keys (what each task sends after combining its partition, = a fully map-side combined
shuffle); and for the switch geometry (C = 32 x 4096 = 131072 aggregators), with tuples sent per
key = the files that hold it, ``oracle`` (the C keys sent most resident, every tuple of the
others back to a host) and ``slot bound`` (the hottest key of each aggregator resident, the
others' tuples back), from ``bench/placement_bench.py``'s ``references()``.

Targets (ASK's setting: K = 100 K, Zipf 0.99, N >= 20 M, 32 files): host-bound <= 0.1x the
vanilla shuffle-read records, and ``aggregate()`` job time <= 1.0x ``groupBy().agg(sum)``; at
K = 10 K, host-bound <= 1.5x distinct keys. A target measured off that scale is reported as
indicative.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import operator
import os
import shutil
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench import machine_load, saved_results

MODES = ("sql", "inc-df", "local-df", "rdd", "inc-rdd", "local-rdd")
VANILLA = {
    "sql": "sql",
    "inc-df": "sql",
    "local-df": "sql",
    "rdd": "rdd",
    "inc-rdd": "rdd",
    "local-rdd": "rdd",
}
RATIOS = (
    ("inc-df", "sql"),
    ("local-df", "sql"),
    ("inc-rdd", "rdd"),
    ("local-rdd", "rdd"),
    ("inc-df", "local-df"),
    ("inc-rdd", "local-rdd"),
)
SWITCH_ROWS = 32
SWITCH_COLUMNS = 4096
STR_DIGITS = 11  # a str key is "k" + the id in 11 digits: 12 ASCII bytes
VALUE_MAX = 100
TARGET_ROWS, TARGET_FILES = 20_000_000, 32  # the scale of ASK's targets


def progress(message: str) -> None:
    print(f"[kv-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Dataset:
    rows: int
    keys: int
    zipf: float
    key_type: str  # "int" or "str"
    files: int
    seed: int

    @property
    def label(self) -> str:
        return f"K={self.keys:,} s={self.zipf:g} {self.key_type}"

    def directory(self, root: Path) -> Path:
        return root / (
            f"kv-n{self.rows}-k{self.keys}-s{self.zipf:g}-{self.key_type}-p{self.files}"
            f"-seed{self.seed}"
        )


@dataclasses.dataclass(frozen=True)
class Reference:
    """numpy's exact figures per key id: the independent check of every run."""

    sums: np.ndarray  # int64
    counts: np.ndarray  # rows holding the key
    files: np.ndarray  # files (tasks) holding the key

    @property
    def present(self) -> np.ndarray:
        return np.flatnonzero(self.counts)


def zipf_cdf(keys: int, s: float) -> np.ndarray:
    """The CDF of rank r (0-based) with weight (r + 1) ** -s over a finite key set."""
    cdf = np.cumsum(np.arange(1, keys + 1, dtype=np.float64) ** -s)
    return cdf / cdf[-1]


def rank_to_id(ds: Dataset) -> np.ndarray:
    """The random permutation that gives rank r the key id ``perm[r]``."""
    return np.random.default_rng([ds.seed, ds.keys]).permutation(ds.keys)


def file_rows(ds: Dataset, index: int) -> int:
    return (ds.rows * (index + 1)) // ds.files - (ds.rows * index) // ds.files


def draw_file(
    ds: Dataset, index: int, cdf: np.ndarray, perm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The key ids and values of file ``index`` (its own random stream: files are
    reproducible one by one)."""
    rng = np.random.default_rng([ds.seed, ds.keys, round(ds.zipf * 1000), index])
    n = file_rows(ds, index)
    ids = perm[np.searchsorted(cdf, rng.random(n), side="right")]
    return ids, rng.integers(1, VALUE_MAX + 1, n, dtype=np.int32)


def str_keys(ids: np.ndarray) -> pa.StringArray:
    """``"k%011d" % id`` for every id, built as one Arrow buffer (no Python per key)."""
    digits = (ids[:, None] // 10 ** np.arange(STR_DIGITS - 1, -1, -1, dtype=np.int64)) % 10
    chars = np.empty((len(ids), STR_DIGITS + 1), np.uint8)
    chars[:, 0] = ord("k")
    chars[:, 1:] = digits + ord("0")
    offsets = np.arange(len(ids) + 1, dtype=np.int32) * (STR_DIGITS + 1)
    return pa.StringArray.from_buffers(len(ids), pa.py_buffer(offsets), pa.py_buffer(chars))


def key_ids(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Key ids of result keys: int64 keys are their ids; str keys are parsed."""
    if pa.types.is_integer(keys.type):
        return keys.to_numpy().astype(np.int64)
    return pc.cast(pc.utf8_slice_codeunits(keys, 1), pa.int64()).to_numpy()


def key_column(ds: Dataset, ids: np.ndarray) -> pa.Array:
    return pa.array(ids, pa.int64()) if ds.key_type == "int" else str_keys(ids)


def generate(ds: Dataset, directory: Path) -> Reference:
    """Write the dataset's Parquet files and its reference (once: an existing copy is reused)."""
    reference_path = directory / "reference.npz"
    if reference_path.exists():
        with np.load(reference_path) as saved:
            return Reference(saved["sums"], saved["counts"], saved["files"])
    progress(f"{ds.label}: writing {ds.rows:,} rows as {ds.files} Parquet files in {directory}")
    shutil.rmtree(directory, ignore_errors=True)
    parquet = directory / "parquet"
    parquet.mkdir(parents=True)
    cdf, perm = zipf_cdf(ds.keys, ds.zipf), rank_to_id(ds)
    sums = np.zeros(ds.keys, np.int64)
    counts = np.zeros(ds.keys, np.int64)
    files = np.zeros(ds.keys, np.int64)
    started = time.perf_counter()
    for index in range(ds.files):
        ids, values = draw_file(ds, index, cdf, perm)
        table = pa.table({"k": key_column(ds, ids), "v": values})
        pq.write_table(table, parquet / f"part-{index:05d}.parquet")
        # float64 weights are exact here: a file's sum stays far below 2**53
        sums += np.bincount(ids, weights=values, minlength=ds.keys).astype(np.int64)
        held = np.bincount(ids, minlength=ds.keys)
        counts += held
        files += held > 0
        if (index + 1) % 8 == 0 or index + 1 == ds.files:
            progress(f"  {index + 1}/{ds.files} files, {time.perf_counter() - started:.1f} s")
    np.savez(reference_path, sums=sums, counts=counts, files=files)
    return Reference(sums, counts, files)


def check(mode: str, ids: np.ndarray, sums: np.ndarray, ref: Reference) -> None:
    """The result must be exactly the reference: every present key once, with its sum."""
    expected = ref.present
    order = np.argsort(ids, kind="stable")
    ids, sums = ids[order], sums[order]
    if len(ids) != len(expected):
        raise Mismatch(f"{mode}: {len(ids):,} keys, expected {len(expected):,}")
    wrong = np.flatnonzero((ids != expected) | (sums != ref.sums[expected]))
    if len(wrong):
        i = wrong[0]
        raise Mismatch(
            f"{mode}: {len(wrong):,} keys differ; first: key id {ids[i]} sum {sums[i]}, "
            f"expected key id {expected[i]} sum {ref.sums[expected[i]]}"
        )


class Mismatch(AssertionError):
    pass


def references(ds: Dataset, ref: Reference) -> dict[str, int]:
    """Distinct keys, combined tuples, and the oracle and slot bound of the switch geometry."""
    from bench.placement_bench import references as placement_references
    from inc_spark.host.key_codec import encode_arrow_column

    present = ref.present
    encoded, fits = encode_arrow_column(key_column(ds, present))
    assert fits.all(), "every benchmark key fits the switch's key"
    return {
        "distinct": len(present),
        "combined": int(ref.files.sum()),
        **placement_references(encoded, ref.files[present], SWITCH_ROWS, SWITCH_COLUMNS),
    }


# --------------------------------------------------------------------------- Spark


def file_pairs(paths: Iterable[str]) -> Iterator[tuple[Any, int]]:
    """A partition's (k, v) tuples: its Parquet file read with pyarrow, columns as lists."""
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
            keys = batch.column(0).to_numpy(zero_copy_only=False).tolist()
            yield from zip(keys, batch.column(1).to_numpy().tolist(), strict=True)


def spark_session(master: str, files: int, conf: list[tuple[str, str]], switch: str) -> Any:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    import inc_spark  # noqa: F401 - adds RDD.inc_reduce_by_key

    builder = (
        SparkSession.builder.appName("kv-bench")
        .master(master)
        .config("spark.sql.shuffle.partitions", str(files))
        .config("spark.sql.files.maxPartitionBytes", "1g")
        .config("spark.sql.files.openCostInBytes", "1g")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.inc.switch.address", switch)
    )
    for key, value in conf:
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if not spark.sparkContext.uiWebUrl:
        spark.stop()
        raise SystemExit("kv-bench reads Spark's shuffle figures from the UI: keep it enabled")
    return spark


def run_action(spark: Any, mode: str, parquet: Path) -> pa.Table | list[tuple[Any, int]]:
    """One mode's aggregation, collected: an Arrow table (DataFrames) or a list of pairs."""
    from pyspark.sql import functions as F

    import inc_spark

    sc = spark.sparkContext
    sc._conf.set("spark.inc.noSwitch", "true" if mode.startswith("local") else "false")
    if mode in ("sql", "inc-df", "local-df"):
        df = spark.read.parquet(str(parquet))
        if mode == "sql":
            result = df.groupBy("k").agg(F.sum("v"))
        else:
            result = inc_spark.aggregate(df, "k", "v", op="sum")
        return result.toArrow()
    paths = sorted(str(p) for p in parquet.glob("part-*.parquet"))
    pairs = sc.parallelize(paths, len(paths)).mapPartitions(file_pairs)
    if mode == "rdd":
        result = pairs.reduceByKey(operator.add)
    else:
        result = pairs.inc_reduce_by_key(operator.add)
    return result.collect()


def result_arrays(result: pa.Table | list[tuple[Any, int]]) -> tuple[np.ndarray, np.ndarray]:
    """A collected result as (key ids, sums)."""
    if isinstance(result, pa.Table):
        return key_ids(result.column(0)), result.column(1).to_numpy().astype(np.int64)
    keys = pa.array([k for k, _ in result])
    return key_ids(keys), np.fromiter((v for _, v in result), np.int64, len(result))


_SHUFFLE = {
    "shuffleWriteRecords": "shuffle_write_records",
    "shuffleWriteBytes": "shuffle_write_bytes",
    "shuffleReadRecords": "shuffle_read_records",
    "shuffleReadBytes": "shuffle_read_bytes",
}


def job_group_shuffle(sc: Any, group: str) -> dict[str, int]:
    """Spark's shuffle totals over the stages of one job group's jobs (UI REST API)."""
    sc._jsc.sc().listenerBus().waitUntilEmpty()  # the UI store has seen every event of the run
    base = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}"
    with urllib.request.urlopen(f"{base}/jobs", timeout=10) as response:
        jobs = [j for j in json.load(response) if j.get("jobGroup") == group]
    stage_ids = {s for j in jobs for s in j["stageIds"]}
    with urllib.request.urlopen(f"{base}/stages", timeout=10) as response:
        stages = [s for s in json.load(response) if s["stageId"] in stage_ids]
    totals = {name: sum(int(s.get(field, 0)) for s in stages) for field, name in _SHUFFLE.items()}
    ran = [s for s in stages if s.get("status") != "SKIPPED"]
    return {"jobs": len(jobs), "stages": len(ran), **totals}


def tree_cpu_seconds() -> float:
    """CPU seconds of this process and its descendants (JVM, Python workers, switch).

    A worker that exits meanwhile takes its CPU with it (pyspark's daemon reaps it without
    rusage), so this can undercount; Spark reuses its workers, which keeps that rare.
    """
    total = 0.0
    me = psutil.Process()
    for proc in (me, *me.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


class Runner:
    """Runs modes on one SparkSession; numbers the job groups."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.runs = 0

    def run(self, mode: str, parquet: Path, ref: Reference) -> dict[str, Any]:
        import inc_spark

        sc = self.spark.sparkContext
        self.runs += 1
        group = f"kv-bench-{self.runs}"
        sc.setJobGroup(group, mode)
        ledger_before = inc_spark.last_metrics()
        busy_before, ours_before = machine_load.busy_cpu_seconds(), tree_cpu_seconds()
        started = time.perf_counter()
        result = run_action(self.spark, mode, parquet)
        seconds = time.perf_counter() - started
        ours = tree_cpu_seconds() - ours_before
        others = machine_load.busy_cpu_seconds() - busy_before - ours
        check(mode, *result_arrays(result), ref)
        record: dict[str, Any] = {
            "mode": mode,
            "time_s": seconds,
            "cpus": ours / seconds,
            "other_cpus": max(0.0, others / seconds),
            "spark": job_group_shuffle(sc, group),
        }
        if mode.startswith(("inc", "local")):
            ledger = inc_spark.last_metrics()
            if ledger is None or ledger is ledger_before:
                raise RuntimeError(f"{mode}: no INC traffic ledger for this run")
            record["inc"] = ledger.as_dict()
            record["host_bound"] = ledger.host_bound + (ledger.host_path or 0)
            record["tuples_sent"] = ledger.tuples_sent
            record["switch_cpu_s"] = ledger.switch_cpu_s
        return record


# --------------------------------------------------------------------------- summary


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(figures: dict[str, Any], runs: list[dict[str, Any]], modes: list[str]) -> None:
    """Medians per mode and the ratios, added to ``figures`` (one dataset)."""
    medians: dict[str, dict[str, Any]] = {}
    for mode in modes:
        mine = [r for r in runs if r["mode"] == mode]
        m = {
            key: median([r.get(key) for r in mine])
            for key in ("time_s", "cpus", "other_cpus", "host_bound", "tuples_sent", "switch_cpu_s")
        }
        for key in _SHUFFLE.values():
            m[key] = median([r["spark"][key] for r in mine])
        medians[mode] = m
    sql = medians.get("sql", {})
    figures["vanilla_write_records"] = sql.get("shuffle_write_records")
    figures["vanilla_read_records"] = sql.get("shuffle_read_records")
    for mode, m in medians.items():
        m["time_x_vanilla"] = ratio(m["time_s"], medians.get(VANILLA[mode], {}).get("time_s"))
        m["host_bound_x_distinct"] = ratio(m["host_bound"], figures["distinct"])
        m["host_bound_x_vanilla_read"] = ratio(m["host_bound"], figures["vanilla_read_records"])
        m["sent_x_vanilla_write"] = ratio(m["tuples_sent"], figures["vanilla_write_records"])
    figures["medians"] = medians
    figures["ratios"] = {
        f"{a}/{b}": ratio(medians[a]["time_s"], medians[b]["time_s"])
        for a, b in RATIOS
        if a in medians and b in medians
    }


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ASK targets, evaluated where their dataset was measured."""
    out = []

    def add(target: str, figures: dict[str, Any], value: float | None, bound: float) -> None:
        at_scale = figures["rows"] >= TARGET_ROWS and figures["files"] == TARGET_FILES
        out.append(
            {
                "target": target,
                "dataset": figures["label"],
                "value": value,
                "bound": bound,
                "met": None if value is None else value <= bound,
                "at_scale": at_scale,
            }
        )

    ask = [f for f in results if f["keys"] == 100_000 and f["zipf"] == 0.99]
    for f in ask:
        for mode in ("inc-df", "inc-rdd"):
            if mode in f["medians"]:
                value = f["medians"][mode]["host_bound_x_vanilla_read"]
                add(f"{mode} host-bound <= 0.1x vanilla shuffle-read records", f, value, 0.1)
        if "inc-df/sql" in f["ratios"]:
            add(
                "aggregate() job time <= 1.0x groupBy().agg(sum)", f, f["ratios"]["inc-df/sql"], 1.0
            )
    for f in (f for f in results if f["keys"] == 10_000):
        for mode in ("inc-df", "inc-rdd"):
            if mode in f["medians"]:
                value = f["medians"][mode]["host_bound_x_distinct"]
                add(f"{mode} host-bound <= 1.5x distinct keys (K = 10 K)", f, value, 1.5)
    if not ask:
        out.append(
            {
                "target": "K = 100 K, Zipf 0.99 targets",
                "dataset": None,
                "value": None,
                "bound": None,
                "met": None,
                "at_scale": False,
            }
        )
    return out


def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def format_tables(report: dict[str, Any]) -> str:
    results = report["datasets"]
    lines = [
        f"{report['rows']:,} rows, {report['files']} files, {report['key_type']} keys, master "
        f"{report['master']}; medians of {report['repeat']} run(s); every run exact",
        "",
        "| dataset | distinct | combined | sql shuffle read | oracle / distinct "
        "| slot bound / distinct | oracle / sql read |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for f in results:
        lines.append(
            f"| {f['label']} | {f['distinct']:,} | {f['combined']:,} "
            f"| {_f(f['vanilla_read_records'], '{:,.0f}')} "
            f"| {f['oracle'] / f['distinct']:.3f} | {f['slot_bound'] / f['distinct']:.3f} "
            f"| {_f(ratio(f['oracle'], f['vanilla_read_records']), '{:.3f}')} |"
        )
    lines += [
        "",
        "| dataset | mode | time s | x vanilla | host-bound | / distinct | / sql read "
        "| sent | sent / sql write | switch CPU s | CPUs ours / others |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in results:
        for mode, m in f["medians"].items():
            lines.append(
                f"| {f['label']} | {mode} | {m['time_s']:.2f} | {_f(m['time_x_vanilla'])} "
                f"| {_f(m['host_bound'], '{:,.0f}')} | {_f(m['host_bound_x_distinct'], '{:.3f}')} "
                f"| {_f(m['host_bound_x_vanilla_read'], '{:.3f}')} "
                f"| {_f(m['tuples_sent'], '{:,.0f}')} | {_f(m['sent_x_vanilla_write'], '{:.3f}')} "
                f"| {_f(m['switch_cpu_s'])} | {_f(m['cpus'])} / {_f(m['other_cpus'])} |"
            )
    names = [f"{a}/{b}" for a, b in RATIOS]
    lines += ["", f"| dataset | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    for f in results:
        cells = " | ".join(_f(f["ratios"].get(n)) for n in names)
        lines.append(f"| {f['label']} | {cells} |")
    lines += ["", "| target | dataset | measured | met |", "|---|---|---:|---|"]
    for t in report["targets"]:
        met = {None: "not measured", True: "yes", False: "NO"}[t["met"]]
        if t["met"] is not None and not t["at_scale"]:
            met += " (below N = 20 M / 32 files: indicative)"
        lines.append(
            f"| {t['target']} | {t['dataset'] or '-'} | {_f(t['value'], '{:.3f}')} | {met} |"
        )
    return "\n".join(lines)


def _nan(values: list[float | None]) -> list[float]:
    return [np.nan if v is None else v for v in values]


def plot(report: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    results = report["datasets"]
    labels = [f"K={f['keys']:,}\ns={f['zipf']:g}" for f in results]
    x = np.arange(len(results))
    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    inc_modes = [m for m in ("inc-df", "inc-rdd") if any(m in f["medians"] for f in results)]
    panels = (
        ("host_bound_x_distinct", "distinct", 1.5, "target at K = 10 K",
         "host-bound tuples / distinct keys"),
        ("host_bound_x_vanilla_read", "vanilla_read_records", 0.1, "target",
         "host-bound tuples / vanilla (sql) shuffle-read records"),
    )  # fmt: skip
    for ax, (key, denominator, bound, bound_label, title) in zip(axes, panels, strict=False):
        for mode, marker in zip(inc_modes, "os", strict=False):
            ys = [f["medians"].get(mode, {}).get(key) for f in results]
            ax.plot(x, _nan(ys), marker=marker, label=mode)
        for ref, style, name in (
            ("oracle", "k:", "oracle"),
            ("slot_bound", "k--", "slot bound"),
            ("combined", "C7:", "no switch (each task combined)"),
        ):
            ax.plot(x, _nan([ratio(f[ref], f[denominator]) for f in results]), style, marker=".",
                    label=name)  # fmt: skip
        ax.axhline(bound, color="tab:red", lw=0.8, ls="-.", label=f"{bound_label}: {bound:g}")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_title(title, fontsize=10)
    for name in ("inc-df/sql", "local-df/sql", "inc-rdd/rdd", "local-rdd/rdd"):
        ys = [f["ratios"].get(name) for f in results]
        if any(y is not None for y in ys):
            axes[2].plot(x, _nan(ys), marker="o", label=name)
    axes[2].axhline(1.0, color="grey", lw=0.8)
    axes[2].set_ylim(bottom=0)
    axes[2].set_title("job time ratio (median)", fontsize=10)
    for ax in axes:
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_xlim(-0.5, len(results) - 0.5)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Key-value sum: {report['rows']:,} rows, {report['files']} files, "
        f"{report['key_type']} keys, {report['master']}, median of {report['repeat']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- CLI


def _list(kind: type) -> Any:
    def parse(text: str) -> list:
        return [kind(item) for item in text.split(",") if item]

    return parse


def _modes(text: str) -> list[str]:
    labels = [m for m in text.split(",") if m]
    unknown = [m for m in labels if m not in MODES]
    if unknown or not labels:
        raise argparse.ArgumentTypeError(f"unknown mode(s) {unknown}; known: {list(MODES)}")
    return labels


def _conf(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000_000, help="rows N [20 M]")
    parser.add_argument(
        "--keys",
        type=_list(int),
        default=[10_000, 100_000, 1_000_000],
        help="distinct keys K, comma-separated [10000,100000,1000000]",
    )
    parser.add_argument(
        "--zipf",
        type=_list(float),
        default=[0.0, 0.99, 1.2],
        help="Zipf exponents s, comma-separated [0,0.99,1.2]",
    )
    parser.add_argument("--key-type", choices=("int", "str"), default="int")
    parser.add_argument("--files", type=int, default=32, help="Parquet files = tasks P [32]")
    parser.add_argument(
        "--modes",
        type=_modes,
        default=list(MODES),
        help=f"comma-separated, of {','.join(MODES)} [all]",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each mode [3]")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument(
        "--conf",
        type=_conf,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark setting (repeat)",
    )
    parser.add_argument("--data-dir", default="/tmp/kv-bench-data", help="dataset cache")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write every run and figure as JSON")
    parser.add_argument("--plot", help="write a PNG plot")
    parser.add_argument(
        "--report", metavar="JSON", help="only print the tables (and draw --plot) of a results file"
    )
    args = parser.parse_args(argv)
    if args.report:
        return saved_results.replay(args.report, format_tables, plot, args.plot)
    if args.repeat < 1 or args.files < 1 or args.rows < 1:
        parser.error("--repeat, --files and --rows must be >= 1")
    if os.environ.get("PYTHONHASHSEED") != "0":  # as spark-submit starts a driver
        os.execve(
            sys.executable, [sys.executable, __file__, *argv], {**os.environ, "PYTHONHASHSEED": "0"}
        )
    from switch_dataplane.daemon.launcher import SwitchProcess

    datasets = [
        Dataset(args.rows, k, s, args.key_type, args.files, args.seed)
        for k in args.keys
        for s in args.zipf
    ]
    results: list[dict[str, Any]] = []
    with SwitchProcess("--rows", str(SWITCH_ROWS), "--cols", str(SWITCH_COLUMNS)) as switch:
        progress(f"switch {switch.address}; modes {','.join(args.modes)}; {args.repeat} rep(s)")
        spark = spark_session(args.master, args.files, args.conf, switch.address)
        runner = Runner(spark)
        try:
            for ds in datasets:
                directory = ds.directory(Path(args.data_dir))
                ref = generate(ds, directory)
                figures = {**dataclasses.asdict(ds), "label": ds.label, **references(ds, ref)}
                progress(
                    f"{ds.label}: {figures['distinct']:,} distinct keys, "
                    f"{figures['combined']:,} combined tuples; warming up"
                )
                for mode in args.modes:
                    runner.run(mode, directory / "parquet", ref)
                runs = []
                for rep in range(args.repeat):
                    for mode in args.modes:
                        r = runner.run(mode, directory / "parquet", ref)
                        r["rep"] = rep
                        runs.append(r)
                        progress(_run_line(ds, rep, args.repeat, r, figures))
                figures["runs"] = runs
                summarize(figures, runs, args.modes)
                results.append(figures)
        except Mismatch as exc:
            print(f"kv-bench: RESULT DIFFERS FROM THE REFERENCE: {exc}", file=sys.stderr)
            return 1
        finally:
            spark.stop()
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *argv]),
        "machine": machine_load.machine(),
        "master": args.master,
        "rows": args.rows,
        "files": args.files,
        "key_type": args.key_type,
        "seed": args.seed,
        "repeat": args.repeat,
        "modes": args.modes,
        "switch": {
            "rows": SWITCH_ROWS,
            "columns": SWITCH_COLUMNS,
            "aggregators": SWITCH_ROWS * SWITCH_COLUMNS,
        },
        "datasets": results,
    }
    report["targets"] = targets(results)
    print(format_tables(report))
    saved_results.save(report, args.json, plot, args.plot, progress)
    return 0


def _run_line(ds: Dataset, rep: int, repeat: int, r: dict[str, Any], f: dict[str, Any]) -> str:
    line = f"{ds.label} rep {rep + 1}/{repeat} {r['mode']:<9} {r['time_s']:6.2f} s, exact"
    if r["mode"].startswith("local"):
        line += f"; no switch: {r['host_bound']:,} combined tuples to the final merge"
    elif "host_bound" in r:
        line += (
            f"; host-bound {r['host_bound'] / f['distinct']:.3f}x distinct "
            f"(oracle {f['oracle'] / f['distinct']:.3f}, slot bound "
            f"{f['slot_bound'] / f['distinct']:.3f}), sent {r['tuples_sent']:,}, switch CPU "
            f"{_f(r['switch_cpu_s'])} s"
        )
    else:
        line += f"; Spark shuffle read {r['spark']['shuffle_read_records']:,} records"
    return line + f"; CPUs: {r['cpus']:.2f} ours, {r['other_cpus']:.2f} others"


if __name__ == "__main__":
    sys.exit(main())
