"""Word count: every mode of ``jobs/wordcount.py`` against vanilla Spark, same input, same run.

    .venv/bin/python bench/wordcount_bench.py --input /tmp/corpus200.txt --repeat 3 \\
        --json docs/wordcount-200mb.json --plot docs/wordcount-200mb.png
    .venv/bin/python bench/wordcount_bench.py --generate mb=5 --repeat 1    # quick, cached corpus

Every run of a mode is one fresh process ``python jobs/wordcount.py INPUT --mode M --master
local[2] --quiet --output OUT --metrics-json M.json`` (``inc-stream`` is ``--mode inc
--pure-streaming``). Each process gets ``PYTHONHASHSEED=0``, as ``spark-submit``
gives its driver. INC modes talk to ONE separate switch process for the whole benchmark
(``python -m switch_dataplane.daemon.cli serve --port 0``), passed as ``--conf
spark.inc.switch.address=H:P``. Runs are interleaved (rep 1: every mode, rep 2: every mode, ...)
so a noisy neighbour hits all modes alike; medians are reported.

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
  are reaped without their CPU reaching anyone's rusage. Also, as the BRIEF asks, the tree
  sampled with psutil every ~0.2 s (max cumulative user+system per process, plus the driver's
  ``children_*``), split into driver / JVM / daemon / workers;
* switch CPU seconds (psutil ``cpu_times`` of the switch process before/after the run);
* bytes: INC ``wire_bytes`` and absorbed share (metrics JSON ``inc``) and Spark shuffle write
  bytes (metrics JSON ``spark``, from the Spark UI REST API).

A single-process pyarrow count (read 32 MB line-aligned chunks, ``decode_utf8``,
``tokenizer.words``, ``pyarrow.compute.value_counts``, merge) is the near-limit reference. All
outputs (every mode, every repetition, and pyarrow) must be byte-identical: if not, the script
says which differ and exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from bench import machine_load  # noqa: E402
from switch_dataplane.daemon.launcher import SwitchProcess  # noqa: E402

#: label -> jobs/wordcount.py arguments
MODES: dict[str, list[str]] = {
    "inc": ["--mode", "inc"],
    "inc-df": ["--mode", "inc-df"],
    "inc-rdd": ["--mode", "inc-rdd"],
    "rdd": ["--mode", "rdd"],
    "sql": ["--mode", "sql"],
    "inc-stream": ["--mode", "inc", "--pure-streaming"],
}
DEFAULT_MODES = ("inc", "inc-df", "inc-rdd", "rdd", "sql", "inc-stream")
BASELINE = "start"  # the trivial Spark job
PYARROW = "pyarrow"
SAMPLE_S = 0.2
CHUNK_BYTES = 32 << 20  # pyarrow reference: bytes decoded and tokenised at a time
WARMUP_BYTES = 2_000_000

#: (label, mode, reference, bound): median(mode) / median(reference) <= bound
TIME_TARGETS = (
    ("inc <= 0.33x rdd", "inc", "rdd", 0.33),
    ("inc <= 0.5x sql", "inc", "sql", 0.5),
    ("inc-rdd <= 0.6x rdd", "inc-rdd", "rdd", 0.6),
    ("inc-df <= 0.8x sql", "inc-df", "sql", 0.8),
)
CPU_TARGETS = (("inc Spark CPU <= 0.3x rdd", "inc", "rdd", 0.3),)


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
        self.runs: dict[str, list[dict[str, Any]]] = {}
        self.hashes: dict[str, tuple[str, Path]] = {}  # hash -> (first label, its output file)
        self.reference_hash: str | None = None
        self.switch: SwitchProcess | None = None
        self.sources_at_start = source_hashes()

    def job_cmd(self, label: str, source: Path, out: Path, metrics: Path) -> list[str]:
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
        if label.startswith("inc"):
            cmd += ["--conf", f"spark.inc.switch.address={self.switch.address}"]
        return cmd

    def run_one(self, label: str, rep: int, source: Path | None = None, check: bool = True) -> dict:
        source = source or self.input
        tag = f"{label}.{rep}"
        out = self.workdir / f"out_{tag}.tsv"
        metrics_path = self.workdir / f"{tag}.json"
        busy = machine_load.wait_idle(self.args.wait_idle, self.args.idle_threshold, progress)
        switch = (
            psutil.Process(self.switch.proc.pid)
            if self.switch is not None and label.startswith("inc")
            else None
        )
        exclude = {self.switch.proc.pid} if self.switch is not None else set()
        cmd = self.job_cmd(label, source, out, metrics_path)
        run = run_tree(cmd, self.env, self.workdir / tag, switch, exclude)
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
        spark = metrics.get("spark")
        run["spark"] = spark
        run["shuffle_bytes"] = spark["shuffle_write_bytes"] if spark else None
        run["wire_bytes"] = run["inc"]["wire_bytes"] if run["inc"] else None
        run["absorbed_share"] = run["inc"]["absorbed_share"] if run["inc"] else None
        digest = file_hash(out)
        run["output_sha256"] = digest
        if check:
            self.check_output(label, digest, out)
        return run

    def check_output(self, label: str, digest: str, out: Path) -> None:
        if digest not in self.hashes:
            kept = self.workdir / f"distinct_{len(self.hashes)}_{label}.tsv"
            shutil.copyfile(out, kept)
            self.hashes[digest] = (label, kept)
        if self.reference_hash is None:
            self.reference_hash = digest
        if digest != self.reference_hash:
            ref_label, ref_path = self.hashes[self.reference_hash]
            raise OutputMismatch(
                f"output of {label} differs from {ref_label}: "
                f"{first_difference(ref_path, self.hashes[digest][1])} "
                f"(files kept: {ref_path}, {self.hashes[digest][1]})"
            )
        if label != PYARROW:
            out.unlink()  # every run of every mode is checked; keep the disk use small

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
            run = self.run_one(label, 0, small, check=False)
            digests[label] = run.get("output_sha256")
            progress(f"warm-up {label}: {time.perf_counter() - start:.1f} s")
        got = {d for d in digests.values() if d is not None}
        if len(got) > 1:
            raise OutputMismatch(f"warm-up outputs differ between modes: {digests}")

    def run(self) -> dict[str, Any]:
        labels = list(self.args.modes)
        order = [BASELINE, *labels] + ([PYARROW] if self.args.pyarrow else [])
        if any(label.startswith("inc") for label in labels):
            self.switch = SwitchProcess(env=self.env, log=self.workdir / "switch.log")
            progress(f"switch {self.switch.address} (pid {self.switch.proc.pid})")
        try:
            if self.args.warmup:
                self.warmup(labels)
            total = len(order) * self.args.repeat
            done = 0
            started = time.perf_counter()
            for rep in range(1, self.args.repeat + 1):
                for label in order:
                    run = self.run_one(label, rep)
                    self.runs.setdefault(label, []).append(run)
                    done += 1
                    extra = f", in-process {run['inproc_s']:.1f} s" if "inproc_s" in run else ""
                    progress(
                        f"[{done}/{total}] rep {rep} {label}: {run['whole_s']:.1f} s whole"
                        f"{extra}, Spark CPU {run['spark_cpu_s']:.1f} s"
                        + (
                            f", switch CPU {run['switch_cpu_s']:.1f} s"
                            if run["switch_cpu_s"] is not None
                            else ""
                        )
                        + f" (elapsed {time.perf_counter() - started:.0f} s)"
                    )
        finally:
            if self.switch is not None:
                self.switch.stop()
        return self.summary(labels)

    def summary(self, labels: list[str]) -> dict[str, Any]:
        start = self.runs[BASELINE]
        start_whole = median([r["whole_s"] for r in start])
        start_cpu = median([r["spark_cpu_s"] for r in start])
        rows: dict[str, dict[str, Any]] = {}
        for label in [*labels, PYARROW]:
            runs = self.runs.get(label)
            if not runs:
                continue
            row = {
                "runs": len(runs),
                "whole_s": median([r["whole_s"] for r in runs]),
                "inproc_s": median([r.get("inproc_s") for r in runs]),
                "spark_cpu_s": median([r["spark_cpu_s"] for r in runs]),
                "spark_cpu_sampled_s": median([r["spark_cpu_sampled"]["total"] for r in runs]),
                "switch_cpu_s": median([r["switch_cpu_s"] for r in runs]),
                "wire_bytes": median([r.get("wire_bytes") for r in runs]),
                "shuffle_bytes": median([r.get("shuffle_bytes") for r in runs]),
                "absorbed_share": median([r.get("absorbed_share") for r in runs]),
                "context_start_s": median([r.get("context_start_s") for r in runs]),
            }
            if label != PYARROW:
                row["job_s"] = median([r["whole_s"] - start_whole for r in runs])
                row["job_cpu_s"] = median([r["spark_cpu_s"] - start_cpu for r in runs])
                for kind in ("driver", "jvm", "daemon", "workers"):
                    row[f"cpu_{kind}_s"] = median(
                        [r["spark_cpu_sampled"].get(kind, 0.0) for r in runs]
                    )
            rows[label] = row
        for row in rows.values():
            for ref in ("rdd", "sql"):
                if ref not in rows:
                    continue
                for metric in ("whole_s", "job_s", "inproc_s", "spark_cpu_s", "job_cpu_s"):
                    row[f"{metric}_x_{ref}"] = ratio(row.get(metric), rows[ref].get(metric))
        targets = []
        for metric in ("job_s", "inproc_s", "whole_s"):
            for name, mode, ref, bound in TIME_TARGETS:
                targets.append(self._target(rows, name, metric, mode, ref, bound))
        for metric in ("spark_cpu_s", "job_cpu_s"):
            for name, mode, ref, bound in CPU_TARGETS:
                targets.append(self._target(rows, name, metric, mode, ref, bound))
        first = next(iter(self.runs[labels[0]]))
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
            "machine": machine_load.machine(),
            "outputs_identical": len(self.hashes) == 1,
            "output_sha256": self.reference_hash,
            "start": {
                "whole_s": start_whole,
                "spark_cpu_s": start_cpu,
                "runs": [r["whole_s"] for r in start],
            },
            "modes": rows,
            "targets": [t for t in targets if t is not None],
            "runs": self.runs,
        }

    @staticmethod
    def _target(rows, name, metric, mode, ref, bound) -> dict[str, Any] | None:
        if mode not in rows or ref not in rows:
            return None
        value = ratio(rows[mode].get(metric), rows[ref].get(metric))
        return {
            "target": name,
            "metric": metric,
            "ratio": value,
            "bound": bound,
            # A ratio <= 0 means the job took less than the start it is measured against:
            # noise on a tiny input, not a result.
            "met": value is not None and 0 < value <= bound,
        }


class OutputMismatch(RuntimeError):
    pass


# --------------------------------------------------------------------------- reporting


def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def format_tables(result: dict[str, Any]) -> str:
    rows = result["modes"]
    start = result["start"]
    lines = [
        f"Input {result['input']}: {result['input_bytes'] / 1e6:.1f} MB, "
        f"{result['words']} words, {result['distinct_words']} distinct; master "
        f"{result['master']}; medians of {result['repeat']} run(s); outputs identical: "
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
        f"{start['spark_cpu_s']:.2f} CPU s",
        "",
        "| mode | whole s | job s | x rdd | x sql | in-proc s | x rdd | x sql "
        "| whole x rdd | whole x sql |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in rows.items():
        lines.append(
            f"| {label} | {_f(r['whole_s'])} | {_f(r.get('job_s'))} "
            f"| {_f(r.get('job_s_x_rdd'))} | {_f(r.get('job_s_x_sql'))} "
            f"| {_f(r.get('inproc_s'))} | {_f(r.get('inproc_s_x_rdd'))} "
            f"| {_f(r.get('inproc_s_x_sql'))} | {_f(r.get('whole_s_x_rdd'))} "
            f"| {_f(r.get('whole_s_x_sql'))} |"
        )
    lines += [
        "",
        "| mode | Spark CPU s | x rdd | job CPU s | x rdd | sampled CPU s (driver/JVM/Python) "
        "| switch CPU s | wire MB | shuffle MB | absorbed |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for label, r in rows.items():
        split = (
            f"{_f(r['spark_cpu_sampled_s'], '{:.1f}')} "
            f"({_f(r.get('cpu_driver_s'), '{:.1f}')}/{_f(r.get('cpu_jvm_s'), '{:.1f}')}/"
            f"{_f((r.get('cpu_workers_s') or 0) + (r.get('cpu_daemon_s') or 0), '{:.1f}')})"
            if label != PYARROW
            else _f(r["spark_cpu_sampled_s"], "{:.1f}")
        )
        lines.append(
            f"| {label} | {_f(r['spark_cpu_s'], '{:.1f}')} | {_f(r.get('spark_cpu_s_x_rdd'))} "
            f"| {_f(r.get('job_cpu_s'), '{:.1f}')} | {_f(r.get('job_cpu_s_x_rdd'))} | {split} "
            f"| {_f(r['switch_cpu_s'], '{:.1f}')} "
            f"| {_f(r['wire_bytes'] and r['wire_bytes'] / 1e6, '{:.1f}')} "
            f"| {_f(r['shuffle_bytes'] and r['shuffle_bytes'] / 1e6, '{:.1f}')} "
            f"| {_f(r['absorbed_share'], '{:.3f}')} |"
        )
    lines += ["", "| target | measured on | ratio | met |", "|---|---|---:|---|"]
    names = {
        "job_s": "job time (whole - start)",
        "inproc_s": "in-process job time",
        "whole_s": "whole process",
        "spark_cpu_s": "Spark CPU, whole tree",
        "job_cpu_s": "Spark CPU - start CPU",
    }
    for t in result["targets"]:
        lines.append(
            f"| {t['target']} | {names[t['metric']]} | {_f(t['ratio'])} "
            f"| {'yes' if t['met'] else 'NO'} |"
        )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {k: v for k, v in result["modes"].items() if k != PYARROW}
    labels = list(rows)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    colors = ["tab:blue" if k.startswith("inc") else "tab:gray" for k in labels]
    job = [rows[k]["job_s"] for k in labels]
    bars = ax1.bar(labels, job, color=colors)
    for bar, k in zip(bars, labels, strict=True):
        r = rows[k]
        note = f"{_f(r.get('job_s_x_rdd'))}x rdd\n{_f(r.get('job_s_x_sql'))}x sql"
        ax1.annotate(
            note,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    if PYARROW in result["modes"]:
        pa_s = result["modes"][PYARROW]["whole_s"]
        ax1.axhline(
            pa_s,
            color="tab:green",
            ls="--",
            lw=1,
            label=f"pyarrow single process, whole process: {pa_s:.1f} s",
        )
        ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.07))
    ax1.set_ylabel("s (median)")
    ax1.set_title(
        f"Job time = whole process - JVM+context start ({result['start']['whole_s']:.1f} s)"
    )
    ax1.margins(y=0.2)
    spark_cpu = [rows[k]["spark_cpu_s"] for k in labels]
    switch_cpu = [rows[k]["switch_cpu_s"] or 0.0 for k in labels]
    ax2.bar(labels, spark_cpu, color=colors, label="Spark process tree (JVM + Python)")
    ax2.bar(labels, switch_cpu, bottom=spark_cpu, color="tab:orange", label="switch process")
    for i, k in enumerate(labels):
        x = rows[k].get("spark_cpu_s_x_rdd")
        ax2.annotate(
            f"{_f(x)}x rdd", (i, spark_cpu[i] + switch_cpu[i]), ha="center", va="bottom", fontsize=8
        )
    ax2.axhline(
        result["start"]["spark_cpu_s"], color="black", ls=":", lw=1, label="JVM+context start"
    )
    ax2.set_ylabel("CPU s (median)")
    ax2.set_title("CPU seconds")
    ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=3)
    ax2.margins(y=0.2)
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
    parser.add_argument(
        "--modes",
        type=_modes,
        default=list(DEFAULT_MODES),
        help=f"comma-separated, of {', '.join(MODES)} [all]",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each mode [3]")
    parser.add_argument("--master", default="local[2]")
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
    input_path = Path(args.input) if args.input else corpus_input(args.generate)
    if not input_path.is_file():
        parser.error(f"input {input_path} is not a file")
    if not become_subreaper():
        progress("could not become a child subreaper: exact tree CPU may miss orphans")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="wc-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    progress(
        f"input {input_path} ({input_path.stat().st_size / 1e6:.1f} MB); "
        f"modes {', '.join(args.modes)}; {args.repeat} rep(s); work dir {workdir}"
    )
    bench = Bench(args, input_path.resolve(), workdir)
    try:
        result = bench.run()
    except OutputMismatch as exc:
        print(f"wordcount-bench: OUTPUTS DIFFER: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"wordcount-bench: a run failed: {exc}", file=sys.stderr)
        return 1
    print(format_tables(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        progress(f"wrote {args.json}")
    if args.plot:
        plot(result, args.plot)
        progress(f"wrote {args.plot}")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
