"""Word count at P map tasks: every INC mode against vanilla Spark and against no switch.

Does the switch pay for itself? Every mode of ``jobs/wordcount.py`` runs on the same input, in
the same run, at every P of a sweep.

    .venv/bin/python bench/wordcount_bench.py --input /tmp/corp/c200.txt --repeat 3 \\
        --tasks 2,8,32,64,128 --placement-json docs/placement.json \\
        --json docs/wordcount-fanin-c200.json --plot docs/wordcount-fanin-c200.png
    .venv/bin/python bench/wordcount_bench.py --generate mb=3 --repeat 1 --tasks 2,4  # quick

Modes (``--modes``): ``inc``, ``inc-df`` and ``inc-rdd`` go through the switch, and so does
``inc-stream`` (``--mode inc --pure-streaming``: no pre-combine on the hosts); ``rdd`` and
``sql`` are vanilla Spark; ``local`` is the ``inc`` code with no switch (each task combines its
words, the driver merges them): the baseline that shows what the switch itself contributes.

Every run is one fresh process ``python jobs/wordcount.py INPUT --mode M [--tasks P] --master
local[2] --quiet --output OUT --metrics-json M.json`` with ``PYTHONHASHSEED=0``, as
``spark-submit`` gives its driver. With ``--tasks 2,8,...`` every mode runs at every P (the
input read as P map tasks); without it, once, split as Spark splits it. The switch modes talk
to ONE separate switch process for the whole benchmark (``python -m
switch_dataplane.daemon.cli serve --port 0``), passed as ``--conf
spark.inc.switch.address=H:P``. Runs are interleaved (rep 1: for each P the trivial job below,
then every mode; rep 2: ...) so a noisy neighbour hits all modes and all P alike; medians per
(mode, P) are reported.

Per run it measures:

* ``whole_s``: wall time of the job process, from start to exit (JVM start included);
* ``job_s``: ``whole_s`` minus the median ``whole_s`` of a trivial Spark job (SparkSession start,
  ``sc.parallelize([1]).count()``, stop) run the same way in the same run ("JVM+context start");
* ``inproc_s``: the job's own figure (metrics JSON ``job_s``: SparkContext ready -> output
  written);
* Spark CPU seconds of the job's process tree (driver Python, JVM, Python workers):
  ``getrusage(RUSAGE_CHILDREN)`` (this process is made a child subreaper, so the orphaned JVM
  and Python processes are reparented to it and reaped before the next run starts) plus the
  sampled CPU of the Python workers that ``pyspark.daemon`` forks: it ignores SIGCHLD, so they
  are reaped without their CPU reaching anyone's rusage. Also the tree sampled with psutil
  every ~0.2 s (max cumulative user+system per process, plus the driver's ``children_*``),
  split into driver / JVM / daemon / workers;
* switch CPU seconds (psutil ``cpu_times`` of the switch process before/after the run), and the
  switch thread's own figure from the ledger;
* the traffic ledger (metrics JSON ``inc``, ``inc_spark.host.Metrics``): tuples sent to the
  switch, absorbed share, what the switch hands back to the hosts (host-bound = residual +
  flushed + evicted + drained entries: its limit is one tuple per distinct word), bytes to the
  switch and to the hosts, acknowledgement bytes, host-path entries (for ``local``: every
  combined tuple the tasks ship to the driver);
* Spark's shuffle records and bytes, written and read, in every mode (metrics JSON ``spark``,
  from the UI's REST API).

Per P, each mode is set against its vanilla reference (``inc-df`` against ``sql``, the others
against ``rdd``) and each switch mode against ``local``, for job time and Spark CPU; tuples sent
are set against ``sql``'s shuffle-write rows, host-bound tuples against distinct words. A target
whose figures are missing (Spark's UI did not answer) is reported as not measured.
Targets, each met or not at every P:

* ``inc-rdd`` <= 1.0x ``rdd`` job time, and <= 0.75x at P >= 64;
* ``inc-df`` <= 0.8x ``sql`` job time;
* ``inc`` <= 0.3x ``rdd`` job time;
* tuples sent to the switch (``inc``, ``inc-rdd``, ``inc-df``) <= the tuples vanilla Spark
  shuffles: ``sql``'s shuffle-write rows (``rdd``'s shuffle records are pickled batches of
  pairs, not tuples; ``sql``'s partial aggregation combines each task's words as ``rdd``'s
  combiner does);
* host-bound tuples <= 1.25x distinct words (every switch mode).

``--placement-json`` takes ``bench/placement_bench.py``'s results (variant ``default``, the
corpus of the input's file name or ``--placement-corpus``, matched by P) and puts their oracle
and slot bound over distinct keys beside the host-bound tuples. The
plot shows, against P: host-bound tuples / distinct words, the absorbed share, bytes each way,
and job time.

A single-process pyarrow count (read 32 MB line-aligned chunks, ``decode_utf8``,
``tokenizer.words``, ``pyarrow.compute.value_counts``, merge; once per repetition) is the
near-limit reference. All outputs (every mode, every P, every repetition, and pyarrow) must be
byte-identical: if not, the script says which differ and exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from bench import REPO, machine_load, saved_results
from switch_dataplane.daemon.launcher import SwitchProcess

#: label -> jobs/wordcount.py arguments
MODES: dict[str, list[str]] = {
    "inc": ["--mode", "inc"],
    "inc-df": ["--mode", "inc-df"],
    "inc-rdd": ["--mode", "inc-rdd"],
    "rdd": ["--mode", "rdd"],
    "sql": ["--mode", "sql"],
    "local": ["--mode", "local"],
    "inc-stream": ["--mode", "inc", "--pure-streaming"],
}
DEFAULT_MODES = ("inc", "inc-df", "inc-rdd", "rdd", "sql", "local", "inc-stream")
SWITCH_MODES = ("inc", "inc-df", "inc-rdd", "inc-stream")  # the modes that talk to the switch
LOCAL = "local"  # no switch: what the switch's modes are worth without it
#: mode -> the vanilla Spark mode it stands in for
VANILLA = {"inc": "rdd", "inc-rdd": "rdd", "inc-stream": "rdd", "local": "rdd", "inc-df": "sql"}
#: whose shuffle records count the combined tuples a vanilla map side writes. Not rdd's: PySpark
#: hands the JVM one record per pickled batch of pairs (3 MB at P=4: 208 records for rdd, 54,419
#: rows for sql, whose partial aggregation combines each task's words as rdd's combiner does).
TUPLE_REFERENCE = "sql"
BASELINE = "start"  # the trivial Spark job
PYARROW = "pyarrow"
SAMPLE_S = 0.2
CHUNK_BYTES = 32 << 20  # pyarrow reference: bytes decoded and tokenised at a time
WARMUP_BYTES = 2_000_000

#: fields of the traffic ledger (``inc_spark.host.Metrics.as_dict()``) kept per run
LEDGER = (
    "tuples_sent",
    "host_bound",
    "absorbed_share",
    "residual",
    "flushed",
    "evicted",
    "drained_entries",
    "bytes_to_switch",
    "bytes_to_hosts",
    "ack_bytes",
    "host_path",
)
#: Spark's shuffle totals (``inc_spark.spark.metrics.stage_metrics``) kept per run
SHUFFLE = (
    "shuffle_write_records",
    "shuffle_write_bytes",
    "shuffle_read_records",
    "shuffle_read_bytes",
)
#: per-run figures whose medians the summary reports
MEDIAN_KEYS = (
    "whole_s",
    "inproc_s",
    "spark_cpu_s",
    "switch_cpu_s",
    "context_start_s",
    "distinct_words",
    *LEDGER,
    "switch_thread_cpu_s",
    *SHUFFLE,
    "host_bound_x_distinct",
    "host_path_x_distinct",
    "merged",
    "merged_x_distinct",
    "shuffle_read_x_distinct",
)
#: figures set against the vanilla reference and against ``local`` at the same P
RATIO_METRICS = ("job_s", "inproc_s", "spark_cpu_s", "job_cpu_s")


class Target(NamedTuple):
    """median(``mode``'s ``metric``) / median(``ref``'s ``ref_metric``) <= ``bound`` at every P
    (only P >= ``min_tasks`` if set)."""

    name: str
    mode: str
    metric: str
    ref: str
    ref_metric: str
    bound: float
    min_tasks: int = 0


TARGETS = (
    Target("inc-rdd <= 1.0x rdd job time", "inc-rdd", "job_s", "rdd", "job_s", 1.0),
    Target(
        "inc-rdd <= 0.75x rdd job time at P >= 64", "inc-rdd", "job_s", "rdd", "job_s", 0.75, 64
    ),
    Target("inc-df <= 0.8x sql job time", "inc-df", "job_s", "sql", "job_s", 0.8),
    Target("inc <= 0.3x rdd job time", "inc", "job_s", "rdd", "job_s", 0.3),
    *(
        Target(
            f"{m} tuples sent <= {TUPLE_REFERENCE} shuffle-write rows",
            m,
            "tuples_sent",
            TUPLE_REFERENCE,
            "shuffle_write_records",
            1.0,
        )
        for m in ("inc", "inc-rdd", "inc-df")
    ),
    *(
        Target(
            f"{m} tuples to the final merge (host-bound + host path) <= 1.25x distinct",
            m,
            "merged",
            m,
            "distinct_words",
            1.25,
        )
        for m in SWITCH_MODES
    ),
)


def progress(message: str) -> None:
    print(f"[wc-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- child entry points


def trivial_job(master: str) -> int:
    """What every wordcount.py process pays besides its job: imports, JVM and SparkSession start,
    a first job, the metrics query to the Spark UI (its first request takes ~1 s: the UI's REST
    servlets start lazily), and the stop."""
    from pyspark.sql import SparkSession

    from inc_spark.spark.metrics import stage_metrics
    from inc_spark.text.text_source import input_files  # noqa: F401 - wordcount.py imports it first

    spark = SparkSession.builder.appName("wordcount-start").master(master).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    assert spark.sparkContext.parallelize([1]).count() == 1
    stage_metrics(spark.sparkContext)
    spark.stop()
    return 0


def pyarrow_count(path: str, output: str, metrics_json: str) -> int:
    """Single-process reference count, output in wordcount.py's format."""
    start = time.monotonic()
    import pyarrow as pa
    import pyarrow.compute as pc

    from inc_spark.text.tokenizer import decode_utf8, words
    from inc_spark.text.word_counts import counts_table, total_words, write_sorted

    counts = []
    with open(path, "rb") as f:
        rest = b""
        while True:
            block = f.read(CHUNK_BYTES)
            if not block:
                data, rest = rest, b""
            else:
                block = rest + block
                cut = block.rfind(b"\n") + 1
                if cut == 0:  # no line end yet: read on
                    rest = block
                    continue
                data, rest = block[:cut], block[cut:]
            if data:
                text = pa.array([decode_utf8(data)], pa.large_string())
                counts.append(pc.value_counts(words(text)))
            if not block:
                break
    if counts:
        per_block = pa.Table.from_struct_array(pa.concat_arrays(counts))
        merged = per_block.group_by("values").aggregate([("counts", "sum")])
        table = counts_table(merged.column("values"), merged.column("counts_sum"))
    else:
        table = counts_table([], [])
    counted = time.monotonic()
    write_sorted(table, output)
    with open(metrics_json, "w") as f:
        json.dump(
            {
                "mode": PYARROW,
                "job_s": time.monotonic() - start,
                "count_s": counted - start,
                "distinct_words": table.num_rows,
                "words": total_words(table),
            },
            f,
        )
    return 0


# --------------------------------------------------------------------------- process trees


def become_subreaper() -> bool:
    """Orphaned descendants (the JVM after the driver exits, Python workers) come back to us."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _cpu(times: Any) -> float:
    return times.user + times.system


def _rusage_children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class TreeSampler(threading.Thread):
    """Samples the CPU times of every descendant of this process except ``exclude`` pids."""

    def __init__(self, driver_pid: int, exclude: set[int]) -> None:
        super().__init__(daemon=True)
        self.driver_pid = driver_pid
        self.exclude = exclude
        self.stop_event = threading.Event()
        self.own: dict[tuple[int, float], float] = {}  # (pid, create_time) -> max user+system
        self.kind: dict[tuple[int, float], str] = {}
        self.driver_children = 0.0  # max children_user + children_system of the driver
        self.me = psutil.Process()

    def _classify(self, proc: psutil.Process) -> str | None:
        """driver, jvm, daemon (``pyspark.daemon``), workers (forked by the daemon), other.

        Recomputed at every sample: the JVM's pid starts as the ``spark-submit`` shell script.
        """
        if proc.pid == self.driver_pid:
            return "driver"
        try:
            if "java" in proc.name():
                return "jvm"
            if "pyspark.daemon" in " ".join(proc.cmdline()):
                parent = proc.parent()
                forked = parent is not None and "pyspark.daemon" in " ".join(parent.cmdline())
                return "workers" if forked else "daemon"
        except psutil.Error:
            return None
        return "other"

    def sample(self) -> None:
        try:
            procs = self.me.children(recursive=True)
        except psutil.Error:
            return
        for proc in procs:
            if proc.pid in self.exclude:
                continue
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    times = proc.cpu_times()
            except psutil.Error:
                continue
            if self.kind.get(key, "other") == "other":  # sticky once known (zombies lose
                kind = self._classify(proc)  # their cmdline; orphans their parent)
                if kind is not None:
                    self.kind[key] = kind
            self.own[key] = max(self.own.get(key, 0.0), _cpu(times))
            if proc.pid == self.driver_pid:
                self.driver_children = max(
                    self.driver_children, times.children_user + times.children_system
                )

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(SAMPLE_S)

    def finish(self, reaped: set[int]) -> dict[str, float]:
        """CPU seconds by kind; ``unreaped_workers``: workers that ``pyspark.daemon`` reaped
        itself (it ignores SIGCHLD, so their CPU reaches nobody's rusage), i.e. not in
        ``reaped`` (the orphans this process reaped, whose CPU its rusage has)."""
        self.stop_event.set()
        self.join()
        by_kind: dict[str, float] = {"unreaped_workers": 0.0}
        for key, cpu in self.own.items():
            kind = self.kind.get(key, "other")
            by_kind[kind] = by_kind.get(kind, 0.0) + cpu
            if kind == "workers" and key[0] not in reaped:
                by_kind["unreaped_workers"] += cpu
        by_kind["driver_children"] = self.driver_children
        by_kind["total"] = sum(self.own.values()) + self.driver_children
        return {k: round(v, 3) for k, v in by_kind.items()}


def reap_tree(exclude: set[int], timeout: float = 60.0) -> set[int]:
    """Wait until every descendant (except ``exclude``) has exited, reaping reparented orphans;
    the pids reaped."""
    me = psutil.Process()
    deadline = time.monotonic() + timeout
    reaped: set[int] = set()
    while True:
        left = [c for c in me.children() if c.pid not in exclude]
        if not left:
            return reaped
        for child in left:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(child.pid, os.WNOHANG)[0] == child.pid:
                    reaped.add(child.pid)
        if time.monotonic() > deadline:
            for child in left:  # our own descendants that outlived their job: end them by pid
                progress(f"killing leftover process {child.pid} ({child.name()})")
                try:
                    child.kill()
                    os.waitpid(child.pid, 0)
                    reaped.add(child.pid)
                except (psutil.Error, ChildProcessError):
                    pass
            deadline = time.monotonic() + timeout
        time.sleep(0.05)


def run_tree(
    cmd: list[str],
    env: dict[str, str],
    log_prefix: Path,
    switch: psutil.Process | None,
    exclude: set[int],
) -> dict[str, Any]:
    """Run ``cmd`` to completion (and its whole process tree); wall time and CPU figures.

    ``exclude``: our other children (the switch), neither measured nor waited for.
    """
    cpu0 = _rusage_children_cpu()
    sw0 = _cpu(switch.cpu_times()) if switch is not None else None
    with open(f"{log_prefix}.stdout", "w") as out, open(f"{log_prefix}.stderr", "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=err)
        sampler = TreeSampler(proc.pid, exclude)
        sampler.start()
        returncode = proc.wait()
        wall = time.perf_counter() - start
    sampler.sample()
    reaped = reap_tree(exclude)
    tree_s = time.perf_counter() - start
    sampled = sampler.finish(reaped)
    rusage = _rusage_children_cpu() - cpu0
    result = {
        "whole_s": wall,
        "tree_exit_s": tree_s,  # until the last process of the tree (JVM, workers) exited
        "returncode": returncode,
        # rusage of the reaped tree + Python workers that pyspark.daemon reaped unaccounted
        "spark_cpu_s": rusage + sampled["unreaped_workers"],
        "rusage_cpu_s": rusage,
        "spark_cpu_sampled": sampled,
        "switch_cpu_s": _cpu(switch.cpu_times()) - sw0 if switch is not None else None,
    }
    if returncode != 0:
        tail = Path(f"{log_prefix}.stderr").read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{' '.join(cmd)} exited with {returncode}:\n{tail}")
    return result


# --------------------------------------------------------------------------- helpers


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def first_difference(a: Path, b: Path) -> str:
    with open(a, encoding="utf-8") as fa, open(b, encoding="utf-8") as fb:
        for n, (la, lb) in enumerate(zip(fa, fb, strict=False), 1):
            if la != lb:
                return f"line {n}: {la.rstrip()!r} vs {lb.rstrip()!r}"
    return "one file is a prefix of the other"


def corpus_input(spec_text: str) -> Path:
    """The corpus of ``spec_text``, generated once and cached under data/ (keyed by the spec)."""
    from bench.corpus import generate, parse_spec

    spec = parse_spec(spec_text)
    canonical = spec.to_spec()
    key = hashlib.sha1(canonical.encode()).hexdigest()[:12]
    path = REPO / "data" / f"corpus-{key}.txt"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and json.loads(meta.read_text()).get("spec") == canonical:
        progress(f"corpus {canonical} cached at {path}")
        return path
    progress(f"generating corpus {canonical} -> {path}")
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    stats = generate(spec, tmp)
    tmp.replace(path)
    meta.write_text(json.dumps(stats, ensure_ascii=False, indent=1))
    return path


SOURCE_DIRS = ("inc_spark", "switch_dataplane", "jobs")


def source_hashes() -> dict[str, str]:
    """sha256 of the code the jobs run (others may edit it while a benchmark runs)."""
    return {
        str(path.relative_to(REPO)): file_hash(path)
        for d in SOURCE_DIRS
        for path in sorted((REPO / d).rglob("*.py"))
    }


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# --------------------------------------------------------------------------- figures of the sweep


def ledger_figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """A run's traffic from its metrics JSON: the ledger's fields (None in vanilla modes, which
    have no ledger), Spark's shuffle totals (None if its UI was unreachable), and both set
    against the distinct words, whose count is the limit of what must reach the driver."""
    inc = metrics.get("inc") or {}
    spark = metrics.get("spark") or {}
    distinct = metrics.get("distinct_words")
    # what the final merge takes: the switch's returns and the entries that never travelled
    merged = (inc.get("host_bound") or 0) + (inc.get("host_path") or 0) if inc else None
    return {
        **{key: inc.get(key) for key in LEDGER},
        "switch_thread_cpu_s": inc.get("switch_cpu_s"),
        **{key: spark.get(key) for key in SHUFFLE},
        "host_bound_x_distinct": ratio(inc.get("host_bound"), distinct),
        "host_path_x_distinct": ratio(inc.get("host_path"), distinct),
        "merged": merged,
        "merged_x_distinct": ratio(merged, distinct),
        "shuffle_read_x_distinct": ratio(spark.get("shuffle_read_records"), distinct),
    }


def median_row(runs: list[dict[str, Any]], start: tuple[float, float] | None) -> dict[str, Any]:
    """Medians of one (mode, P)'s runs; with ``start`` (the trivial job's median wall and CPU
    seconds) also the job's own time and CPU, net of what every Spark process pays."""
    row: dict[str, Any] = {"mode": runs[0]["mode"], "tasks": runs[0]["tasks"], "runs": len(runs)}
    row.update({key: median([r.get(key) for r in runs]) for key in MEDIAN_KEYS})
    row["spark_cpu_sampled_s"] = median([r["spark_cpu_sampled"]["total"] for r in runs])
    if start is not None:
        row["job_s"] = median([r["whole_s"] - start[0] for r in runs])
        row["job_cpu_s"] = median([r["spark_cpu_s"] - start[1] for r in runs])
        for kind in ("driver", "jvm", "daemon", "workers"):
            row[f"cpu_{kind}_s"] = median([r["spark_cpu_sampled"].get(kind, 0.0) for r in runs])
    return row


def add_ratios(rows: dict[tuple[str, int | None], dict[str, Any]]) -> None:
    """Set each mode against its vanilla reference and each switch mode against ``local`` at the
    same P: the first says whether INC beats Spark, the second what the switch itself adds."""
    for (mode, tasks), row in rows.items():
        vanilla = rows.get((VANILLA.get(mode, ""), tasks))
        if vanilla is not None:
            row["vanilla"] = vanilla["mode"]
            for metric in RATIO_METRICS:
                row[f"{metric}_x_vanilla"] = ratio(row[metric], vanilla[metric])
        if mode not in SWITCH_MODES:
            continue
        shuffled = rows.get((TUPLE_REFERENCE, tasks))
        if shuffled is not None:
            row["tuples_sent_x_shuffle_write"] = ratio(
                row["tuples_sent"], shuffled["shuffle_write_records"]
            )
        local = rows.get((LOCAL, tasks))
        if local is not None:
            for metric in RATIO_METRICS:
                row[f"{metric}_x_local"] = ratio(row[metric], local[metric])


def evaluate_targets(
    rows: dict[tuple[str, int | None], dict[str, Any]], tasks: list[int | None]
) -> list[dict[str, Any]]:
    """Every target at every P of the sweep where both its modes ran."""
    results = []
    for p in tasks:
        for t in TARGETS:
            if t.min_tasks and (p is None or p < t.min_tasks):
                continue
            if (t.mode, p) not in rows or (t.ref, p) not in rows:
                continue
            mine, ref = rows[t.mode, p][t.metric], rows[t.ref, p][t.ref_metric]
            value = ratio(mine, ref)
            results.append(
                {
                    "target": t.name,
                    "tasks": p,
                    "ratio": value,
                    "bound": t.bound,
                    # None: a figure is missing (Spark's UI did not answer). A job time <= 0
                    # (less than the start it is measured against) is noise, not a result.
                    "met": None if value is None else mine > 0 and ref > 0 and value <= t.bound,
                }
            )
    return results


def sweep_summary(
    runs: list[dict[str, Any]], labels: list[str], tasks: list[int | None]
) -> dict[str, Any]:
    """The trivial job's medians, the medians and ratios of every (mode, P), the pyarrow
    reference, and the targets."""
    start_runs = [r for r in runs if r["mode"] == BASELINE]
    start = (
        median([r["whole_s"] for r in start_runs]),
        median([r["spark_cpu_s"] for r in start_runs]),
    )
    rows = {}
    for p in tasks:
        for label in labels:
            same = [r for r in runs if r["mode"] == label and r["tasks"] == p]
            if same:
                rows[label, p] = median_row(same, start)
    add_ratios(rows)
    pyarrow = [r for r in runs if r["mode"] == PYARROW]
    return {
        "start": {
            "whole_s": start[0],
            "spark_cpu_s": start[1],
            "runs": [r["whole_s"] for r in start_runs],
        },
        "medians": list(rows.values()),
        "pyarrow": median_row(pyarrow, None) if pyarrow else None,
        "targets": evaluate_targets(rows, tasks),
    }


def placement_refs(path: str, corpus: str, tasks: list[int | None]) -> list[dict[str, Any]]:
    """The oracle and the slot bound over distinct keys at the sweep's P, from
    ``bench/placement_bench.py``'s JSON: variant ``default``, corpus ``corpus`` (the file name
    it recorded; a JSON may hold several corpora, and another's figures would mislead)."""
    results = json.loads(Path(path).read_text())["results"]
    corpora = sorted({r["corpus"] for r in results})
    if corpus not in corpora:
        raise ValueError(f"no results for corpus {corpus!r} in {path}; it has {corpora}")
    results = [
        r
        for r in results
        if r["corpus"] == corpus and r["variant"] == "default" and r["tasks"] in tasks
    ]
    by_tasks = {
        r["tasks"]: {
            "tasks": r["tasks"],
            "corpus": r["corpus"],
            "oracle_x_distinct": r["oracle"] / r["distinct"],
            "slot_bound_x_distinct": r["slot_bound"] / r["distinct"],
        }
        for r in results
    }
    return [by_tasks[p] for p in sorted(by_tasks)]


def describe(run: dict[str, Any], start_whole: float | None) -> str:
    """A run in one progress line; its job time is net of the trivial jobs run so far."""
    mode = run["mode"]
    parts = [f"{run['whole_s']:.1f} s whole"]
    if mode not in (BASELINE, PYARROW) and start_whole is not None:
        parts = [f"job {run['whole_s'] - start_whole:.1f} s", *parts]
    if "inproc_s" in run:
        parts.append(f"in-process {run['inproc_s']:.1f} s")
    parts.append(f"Spark CPU {run['spark_cpu_s']:.1f} s")
    if run["switch_cpu_s"] is not None:
        parts.append(f"switch CPU {run['switch_cpu_s']:.1f} s")
    if mode in SWITCH_MODES and run.get("host_bound_x_distinct") is not None:
        parts.append(
            f"host-bound {run['host_bound_x_distinct']:.2f}x distinct, "
            f"absorbed {run['absorbed_share']:.1%}"
        )
    if mode == LOCAL and run.get("host_path_x_distinct") is not None:
        parts.append(f"to the driver {run['host_path_x_distinct']:.2f}x distinct")
    if mode not in (BASELINE, PYARROW) and run.get("spark") is None:
        parts.append("NO Spark figures (its UI did not answer)")
    where = f"rep {run['rep']} {mode}" + (f" P={run['tasks']}" if run["tasks"] else "")
    return f"{where}: {', '.join(parts)}"


# --------------------------------------------------------------------------- the benchmark


class Bench:
    def __init__(self, args: argparse.Namespace, input_path: Path, workdir: Path) -> None:
        self.args = args
        self.input = input_path
        self.workdir = workdir
        self.env = os.environ.copy()
        self.env["PYSPARK_PYTHON"] = sys.executable
        self.env["NUMBA_CACHE_DIR"] = str(REPO / ".numba_cache")
        self.env["PYTHONHASHSEED"] = "0"  # as spark-submit starts every driver
        self.runs: list[dict[str, Any]] = []
        self.hashes: dict[str, tuple[str, Path]] = {}  # hash -> (first run's tag, its output)
        self.reference_hash: str | None = None
        self.switch: SwitchProcess | None = None
        self.sources_at_start = source_hashes()

    def job_cmd(
        self, label: str, source: Path, out: Path, metrics: Path, tasks: int | None
    ) -> list[str]:
        if label == BASELINE:
            return [sys.executable, __file__, "--trivial-job", "--master", self.args.master]
        if label == PYARROW:
            return [
                sys.executable,
                __file__,
                "--pyarrow-count",
                str(source),
                str(out),
                str(metrics),
            ]
        cmd = [
            sys.executable,
            str(REPO / "jobs" / "wordcount.py"),
            str(source),
            *MODES[label],
            "--master",
            self.args.master,
            "--quiet",
            "--output",
            str(out),
            "--metrics-json",
            str(metrics),
        ]
        if tasks:
            cmd += ["--tasks", str(tasks)]
        if label in SWITCH_MODES:
            cmd += ["--conf", f"spark.inc.switch.address={self.switch.address}"]
        return cmd

    def run_one(
        self,
        label: str,
        rep: int,
        tasks: int | None = None,
        source: Path | None = None,
        check: bool = True,
    ) -> dict[str, Any]:
        source = source or self.input
        tag = f"{label}.{rep}" if tasks is None else f"{label}.P{tasks}.{rep}"
        out = self.workdir / f"out_{tag}.tsv"
        metrics_path = self.workdir / f"{tag}.json"
        busy = machine_load.wait_idle(self.args.wait_idle, self.args.idle_threshold, progress)
        switch = (
            psutil.Process(self.switch.proc.pid)
            if self.switch is not None and label in SWITCH_MODES
            else None
        )
        exclude = {self.switch.proc.pid} if self.switch is not None else set()
        cmd = self.job_cmd(label, source, out, metrics_path, tasks)
        run = {"mode": label, "tasks": tasks, "rep": rep}
        run.update(run_tree(cmd, self.env, self.workdir / tag, switch, exclude))
        run["busy_before"] = busy
        run["load_avg"] = os.getloadavg()[0]
        if label == BASELINE:
            return run
        metrics = json.loads(metrics_path.read_text())
        run["inproc_s"] = metrics["job_s"]
        run["context_start_s"] = metrics.get("context_start_s")
        run["words"] = metrics.get("words")
        run["distinct_words"] = metrics.get("distinct_words")
        run["inc"] = metrics.get("inc")
        run["spark"] = metrics.get("spark")
        run.update(ledger_figures(metrics))
        run["output_sha256"] = file_hash(out)
        if check:
            self.check_output(tag, run["output_sha256"], out)
            if label != PYARROW:
                out.unlink()  # every run of every mode is checked; keep the disk use small
        return run

    def check_output(self, tag: str, digest: str, out: Path) -> None:
        if digest not in self.hashes:
            kept = self.workdir / f"distinct_{len(self.hashes)}_{tag}.tsv"
            shutil.copyfile(out, kept)
            self.hashes[digest] = (tag, kept)
        if self.reference_hash is None:
            self.reference_hash = digest
        if digest != self.reference_hash:
            ref_tag, ref_path = self.hashes[self.reference_hash]
            raise OutputMismatch(
                f"output of {tag} differs from {ref_tag}: "
                f"{first_difference(ref_path, self.hashes[digest][1])} "
                f"(files kept: {ref_path}, {self.hashes[digest][1]})"
            )

    def warmup(self, labels: list[str]) -> None:
        """Page cache, Numba caches and a small end-to-end check of every mode (unmeasured)."""
        with open(self.input, "rb") as f:
            while f.read(64 << 20):
                pass
            f.seek(0)
            head = f.read(WARMUP_BYTES)
        head = head[: head.rfind(b"\n") + 1] or head
        small = self.workdir / "warmup.txt"
        small.write_bytes(head)
        digests = {}
        for label in [BASELINE, *labels]:
            start = time.perf_counter()
            run = self.run_one(label, 0, source=small, check=False)
            digests[label] = run.get("output_sha256")
            progress(f"warm-up {label}: {time.perf_counter() - start:.1f} s")
        got = {d for d in digests.values() if d is not None}
        if len(got) > 1:
            raise OutputMismatch(f"warm-up outputs differ between modes: {digests}")

    def run(self) -> dict[str, Any]:
        labels = list(self.args.modes)
        # One repetition: at each P the trivial job, then every mode; pyarrow once (no P).
        planned = [(label, p) for p in self.args.tasks for label in (BASELINE, *labels)]
        if self.args.pyarrow:
            planned.append((PYARROW, None))
        if any(label in SWITCH_MODES for label in labels):
            self.switch = SwitchProcess(env=self.env, log=self.workdir / "switch.log")
            progress(f"switch {self.switch.address} (pid {self.switch.proc.pid})")
        try:
            if self.args.warmup:
                self.warmup(labels)
            total = len(planned) * self.args.repeat
            started = time.perf_counter()
            for rep in range(1, self.args.repeat + 1):
                for label, p in planned:
                    run = self.run_one(label, rep, p)
                    self.runs.append(run)
                    start = median([r["whole_s"] for r in self.runs if r["mode"] == BASELINE])
                    progress(
                        f"[{len(self.runs)}/{total}] {describe(run, start)} "
                        f"(elapsed {time.perf_counter() - started:.0f} s)"
                    )
        finally:
            if self.switch is not None:
                self.switch.stop()
        return self.summary(labels)

    def summary(self, labels: list[str]) -> dict[str, Any]:
        first = next(r for r in self.runs if r["mode"] == labels[0])
        now = source_hashes()
        changed = sorted(
            f
            for f in set(now) | set(self.sources_at_start)
            if now.get(f) != self.sources_at_start.get(f)
        )
        if changed:
            progress(f"WARNING: code changed during the run: {', '.join(changed)}")
        return {
            "code_changed_during_run": changed,
            "sources_sha256": now,
            "input": str(self.input),
            "input_bytes": self.input.stat().st_size,
            "words": first.get("words"),
            "distinct_words": first.get("distinct_words"),
            "master": self.args.master,
            "repeat": self.args.repeat,
            "modes": labels,
            "tasks": self.args.tasks,
            "machine": machine_load.machine(),
            "outputs_identical": len(self.hashes) == 1,
            "output_sha256": self.reference_hash,
            **sweep_summary(self.runs, labels, self.args.tasks),
            "runs": self.runs,
        }


class OutputMismatch(RuntimeError):
    pass


# --------------------------------------------------------------------------- reporting


def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _count(value: float | None) -> str:
    return _f(value, "{:,.0f}")


def _mb(value: float | None) -> str:
    return _f(None if value is None else value / 1e6, "{:.1f}")


def _p(tasks: int | None) -> str:
    return str(tasks) if tasks else "auto"


MET = {True: "yes", False: "NO", None: "n/a: not measured"}


def format_tables(result: dict[str, Any]) -> str:
    rows = result["medians"]
    start = result["start"]
    pyarrow = result["pyarrow"]
    lines = [
        f"Input {result['input']}: {result['input_bytes'] / 1e6:.1f} MB, "
        f"{result['words']} words, {result['distinct_words']} distinct; master "
        f"{result['master']}; map tasks P: {', '.join(map(_p, result['tasks']))} (auto: as "
        f"Spark splits the input); medians of {result['repeat']} run(s); outputs identical: "
        f"{'yes' if result['outputs_identical'] else 'NO'}",
        "",
        *(
            [
                "WARNING: code changed during the run: "
                + ", ".join(result["code_changed_during_run"]),
                "",
            ]
            if result.get("code_changed_during_run")
            else []
        ),
        f"JVM+context start (trivial Spark job, whole process): {start['whole_s']:.2f} s, "
        f"{start['spark_cpu_s']:.2f} CPU s"
        + (
            f"; single-process pyarrow count: {pyarrow['whole_s']:.2f} s whole process, "
            f"{pyarrow['spark_cpu_s']:.2f} CPU s"
            if pyarrow
            else ""
        ),
        "",
        "Time and CPU. x vanilla: inc-df against sql, the other modes against rdd; x local: "
        "against the same code with no switch; job = whole process - JVM+context start.",
        "",
        "| mode | P | job s | x vanilla | x local | in-proc s | Spark CPU s | x vanilla "
        "| x local | sampled CPU s (driver/JVM/Python) | switch CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        split = (
            f"{_f(r['spark_cpu_sampled_s'], '{:.1f}')} "
            f"({_f(r['cpu_driver_s'], '{:.1f}')}/{_f(r['cpu_jvm_s'], '{:.1f}')}/"
            f"{_f(r['cpu_workers_s'] + r['cpu_daemon_s'], '{:.1f}')})"
        )
        lines.append(
            f"| {r['mode']} | {_p(r['tasks'])} | {_f(r['job_s'])} "
            f"| {_f(r.get('job_s_x_vanilla'))} | {_f(r.get('job_s_x_local'))} "
            f"| {_f(r['inproc_s'])} | {_f(r['spark_cpu_s'], '{:.1f}')} "
            f"| {_f(r.get('spark_cpu_s_x_vanilla'))} | {_f(r.get('spark_cpu_s_x_local'))} "
            f"| {split} | {_f(r['switch_cpu_s'], '{:.1f}')} |"
        )
    lines += [
        "",
        f"Traffic. sent x shuffle-write: tuples sent to the switch / {TUPLE_REFERENCE}'s "
        "shuffle-write rows (rdd's and inc-rdd's shuffle records are pickled batches of pairs, "
        "not tuples); host-bound: what the switch hands back (residual + flushed + "
        "evicted + drained), limit 1.0x distinct; host path: tuples that never went to a switch "
        "(local: every combined tuple the tasks ship to the driver).",
        "",
        "| mode | P | tuples sent | sent x shuffle-write | absorbed | host-bound / distinct "
        "| host path / distinct | MB to switch / to hosts | shuffle-write records "
        "| shuffle MB written / read |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {_p(r['tasks'])} | {_count(r['tuples_sent'])} "
            f"| {_f(r.get('tuples_sent_x_shuffle_write'))} "
            f"| {_f(r['absorbed_share'], '{:.3f}')} | {_f(r['host_bound_x_distinct'])} "
            f"| {_f(r['host_path_x_distinct'])} "
            f"| {_mb(r['bytes_to_switch'])} / {_mb(r['bytes_to_hosts'])} "
            f"| {_count(r['shuffle_write_records'])} "
            f"| {_mb(r['shuffle_write_bytes'])} / {_mb(r['shuffle_read_bytes'])} |"
        )
    switched = [r for r in rows if r["mode"] in SWITCH_MODES]
    if switched:
        lines += [
            "",
            "Host-bound tuples by cause; ack MB: the headers of the switch's answers; switch "
            "thread CPU: the switch's own figure for the call.",
            "",
            "| mode | P | residual | flushed | evicted | drained | ack MB | switch thread CPU s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in switched:
            lines.append(
                f"| {r['mode']} | {_p(r['tasks'])} | {_count(r['residual'])} "
                f"| {_count(r['flushed'])} | {_count(r['evicted'])} "
                f"| {_count(r['drained_entries'])} | {_mb(r['ack_bytes'])} "
                f"| {_f(r['switch_thread_cpu_s'])} |"
            )
    if result.get("placement"):
        lines += [
            "",
            "bench/placement_bench.py (variant default), host-bound / distinct keys: "
            + "; ".join(
                f"P={ref['tasks']}: oracle {ref['oracle_x_distinct']:.2f}, "
                f"slot bound {ref['slot_bound_x_distinct']:.2f}"
                for ref in result["placement"]
            ),
        ]
    lines += ["", "| target | P | ratio | bound | met |", "|---|---:|---:|---:|---|"]
    for t in result["targets"]:
        lines.append(
            f"| {t['target']} | {_p(t['tasks'])} | {_f(t['ratio'])} | {t['bound']:.2f} "
            f"| {MET[t['met']]} |"
        )
    return "\n".join(lines)


#: one colour per mode in every panel
COLORS = {
    "inc": "tab:blue",
    "inc-df": "tab:purple",
    "inc-rdd": "tab:cyan",
    "inc-stream": "tab:olive",
    "local": "tab:green",
    "rdd": "tab:gray",
    "sql": "black",
}


def _line(
    ax: Any,
    rows: list[dict[str, Any]],
    mode: str,
    key: str,
    label: str,
    scale: float = 1.0,
    **style: Any,
) -> None:
    """``key`` of ``mode`` against P (``auto`` drawn at 1), if the mode has it."""
    points = [
        (r["tasks"] or 1, r[key] * scale)
        for r in rows
        if r["mode"] == mode and r.get(key) is not None
    ]
    if points:
        ax.plot(*zip(*points, strict=True), marker="o", color=COLORS[mode], label=label, **style)


def plot(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    rows = result["medians"]
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    switched = [m for m in modes if m in SWITCH_MODES]
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    (host, absorbed), (traffic, job) = axes
    for mode in switched:
        _line(host, rows, mode, "merged_x_distinct", f"{mode}: host-bound + host path")
        _line(absorbed, rows, mode, "absorbed_share", mode)
        _line(traffic, rows, mode, "bytes_to_switch", f"{mode}: to the switch", 1e-6)
        _line(traffic, rows, mode, "bytes_to_hosts", f"{mode}: to hosts", 1e-6, ls="--")
    if TUPLE_REFERENCE in modes:
        _line(
            host,
            rows,
            TUPLE_REFERENCE,
            "shuffle_read_x_distinct",
            f"{TUPLE_REFERENCE}: shuffle-read rows",
        )
    if LOCAL in modes:
        _line(
            host,
            rows,
            LOCAL,
            "host_path_x_distinct",
            "local: combined tuples to the driver",
            ls="--",
        )
    for ref, style in (("oracle", ":"), ("slot_bound", "--")):
        points = [(p["tasks"], p[f"{ref}_x_distinct"]) for p in result.get("placement") or []]
        if points:
            host.plot(*zip(*points, strict=True), "k" + style, label=ref.replace("_", " "))
    host.axhline(1.0, color="tab:red", lw=0.8, label="limit: one tuple per distinct word")
    host.set_ylim(bottom=0)
    host.set_ylabel("tuples / distinct words")
    host.set_title("(a) what reaches the driver's merge, per distinct word")
    absorbed.set_ylim(0, 1.02)
    absorbed.set_ylabel("absorbed / sent")
    absorbed.set_title("(b) tuples the switch absorbed")
    for vanilla in ("rdd", "sql"):
        if vanilla in modes:
            _line(
                traffic, rows, vanilla, "shuffle_write_bytes", f"{vanilla}: shuffle written", 1e-6
            )
    traffic.set_yscale("log")
    traffic.set_ylabel("MB (median)")
    traffic.set_title("(c) bytes each way: INC to the switch and back, Spark's shuffle")
    for mode in modes:
        _line(job, rows, mode, "job_s", mode)
    if result["pyarrow"]:
        job.axhline(
            result["pyarrow"]["whole_s"],
            color="tab:red",
            ls=":",
            lw=1,
            label="pyarrow single process, whole process",
        )
    job.set_ylabel("s (median)")
    job.set_title(
        f"(d) job time = whole process - JVM+context start ({result['start']['whole_s']:.1f} s)"
    )
    ticks = [p or 1 for p in result["tasks"]]
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [_p(p) for p in result["tasks"]])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("map tasks P")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # e.g. no switch mode: nothing absorbed
            ax.legend(fontsize=7, ncol=2 if ax is traffic else 1)
    fig.suptitle(
        f"Word count, {result['input_bytes'] / 1e6:.0f} MB ({Path(result['input']).name}), "
        f"{result['master']}, median of {result['repeat']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- CLI


def _modes(text: str) -> list[str]:
    labels = [m for m in text.replace(",", " ").split() if m]
    unknown = [m for m in labels if m not in MODES]
    if unknown or not labels:
        raise argparse.ArgumentTypeError(f"unknown mode(s) {unknown}; known: {list(MODES)}")
    return labels


def _tasks(text: str) -> list[int]:
    try:
        tasks = sorted({int(t) for t in text.replace(",", " ").split()})
    except ValueError:
        tasks = []
    if not tasks or tasks[0] < 1:
        raise argparse.ArgumentTypeError(f"expected map task counts >= 1 like 2,8,32: {text!r}")
    return tasks


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--trivial-job"]:
        return trivial_job(argv[argv.index("--master") + 1])
    if argv[:1] == ["--pyarrow-count"]:
        return pyarrow_count(*argv[1:4])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="a text file")
    source.add_argument("--generate", metavar="SPEC", help="bench/corpus.py spec, e.g. mb=5")
    source.add_argument(
        "--report", metavar="JSON", help="print the tables (and draw --plot) of a results file"
    )
    parser.add_argument(
        "--modes",
        type=_modes,
        default=list(DEFAULT_MODES),
        help=f"comma-separated, of {', '.join(MODES)} [all]",
    )
    parser.add_argument(
        "--tasks",
        type=_tasks,
        default=[None],
        metavar="P,P,...",
        help="map task counts to sweep, e.g. 2,8,32,64,128 [one run, as Spark splits the input]",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each mode at each P [3]")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument(
        "--placement-json",
        metavar="FILE",
        help="bench/placement_bench.py results: its oracle and slot bound go into the plot",
    )
    parser.add_argument(
        "--placement-corpus",
        metavar="NAME",
        help="the corpus of --placement-json to use [the input's file name]",
    )
    parser.add_argument("--json", help="write every figure and run as JSON")
    parser.add_argument("--plot", help="write a PNG plot")
    parser.add_argument(
        "--no-pyarrow",
        dest="pyarrow",
        action="store_false",
        help="skip the single-process pyarrow reference",
    )
    parser.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="skip the unmeasured warm-up of every mode on a 2 MB prefix",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="before each run, wait up to S s for a quiet machine [0: no]",
    )
    parser.add_argument(
        "--idle-threshold",
        type=float,
        default=0.3,
        help="busy CPUs below which the machine counts as quiet [0.3]",
    )
    parser.add_argument("--workdir", help="outputs and logs (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.report:
        return saved_results.replay(args.report, format_tables, plot, args.plot)
    input_path = Path(args.input) if args.input else corpus_input(args.generate)
    if not input_path.is_file():
        parser.error(f"input {input_path} is not a file")
    placement = None
    if args.placement_json:
        corpus = args.placement_corpus or input_path.name
        try:
            placement = placement_refs(args.placement_json, corpus, args.tasks)
        except (OSError, KeyError, ValueError) as exc:
            parser.error(f"--placement-json: {exc}")
    if not become_subreaper():
        progress("could not become a child subreaper: exact tree CPU may miss orphans")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="wc-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    progress(
        f"input {input_path} ({input_path.stat().st_size / 1e6:.1f} MB); "
        f"modes {', '.join(args.modes)}; P {', '.join(map(_p, args.tasks))}; "
        f"{args.repeat} rep(s); work dir {workdir}"
    )
    bench = Bench(args, input_path.resolve(), workdir)
    try:
        result = {
            "command": shlex.join(["bench/wordcount_bench.py", *argv]),
            **bench.run(),
            "placement": placement,
        }
    except OutputMismatch as exc:
        print(f"wordcount-bench: OUTPUTS DIFFER: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"wordcount-bench: a run failed: {exc}", file=sys.stderr)
        return 1
    print(format_tables(result))
    saved_results.save(result, args.json, plot, args.plot, progress)
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
