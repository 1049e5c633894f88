"""Run Spark's shipped example programs as ``spark-submit`` runs them, without and with
``spark.inc.replaceReduceByKey=true``, and print one line per example: its name, ``same`` (byte for
byte), ``same lines, in another order`` or what differs, and whether the hooked run went through
the switch. Used by tests/test_unchanged_programs.py, in a process of its own.

    python tests/run_examples.py EXAMPLES_DIR WORK_DIR [NAME ...]

One JVM serves every run (each example starts and stops its own SparkSession); the hook is
switched through the JVM's system properties, which every new ``SparkConf`` reads, as it reads
``spark-submit --conf``. As under ``spark-submit``, the program's Python standard error is part
of its standard output (spark-submit merges the two streams of its Python process).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import re
import runpy
import sys
import time

import inc_spark

HOOK = "spark.inc.replaceReduceByKey"
#: lines the status API demo prints as its job progresses: they depend on timing, hook or not
PROGRESS = re.compile(r"^(Job \d+ status: .*|Stage \d+: \d+ tasks total .*)$")


def inputs(examples: str, work: str) -> dict[str, list[str]]:
    """Each example's arguments (small inputs: its own sample data where Spark ships some)."""
    pyspark_dir = os.path.abspath(os.path.join(examples, "..", "..", "..", ".."))
    data = os.path.join(pyspark_dir, "data")
    rng = random.Random(16)
    words = ["spark", "switch", "key", "value", "reduce", "the", "a", "é", "日本"]
    text = os.path.join(work, "words.txt")
    with open(text, "w") as f:
        for _ in range(400):
            f.write(" ".join(rng.choice(words) for _ in range(rng.randrange(1, 12))) + "\n")
    numbers = os.path.join(work, "numbers.txt")
    with open(numbers, "w") as f:
        for _ in range(50):
            f.write(" ".join(str(rng.randrange(-99, 99)) for _ in range(8)) + "\n")
    mllib = os.path.join(data, "mllib")
    return {
        "wordcount": [text],
        "pagerank": [os.path.join(mllib, "pagerank_data.txt"), "5"],
        "kmeans": [os.path.join(mllib, "kmeans_data.txt"), "2", "0.01"],
        "sort": [numbers],
        "transitive_closure": ["2"],
        "status_api_demo": [],
    }


def run(path: str, args: list[str]) -> str:
    """The example's output, standard error merged in, as spark-submit gives it."""
    out = io.StringIO()
    argv = sys.argv
    sys.argv = [path, *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_path(path, run_name="__main__")
    finally:
        sys.argv = argv
    return out.getvalue()


def main(examples: str, work: str, *names: str) -> int:
    from pyspark import SparkContext

    os.environ["PYSPARK_SUBMIT_ARGS"] = (
        "--master local[2] --conf spark.ui.enabled=false pyspark-shell"
    )
    SparkContext._ensure_initialized()
    system = SparkContext._jvm.java.lang.System
    for name, args in inputs(examples, work).items():
        if names and name not in names:
            continue
        path = os.path.join(examples, f"{name}.py")
        started = time.monotonic()
        system.clearProperty(HOOK)
        vanilla = run(path, args)
        system.setProperty(HOOK, "true")
        before = inc_spark.last_metrics()
        hooked = run(path, args)
        system.clearProperty(HOOK)
        if name == "status_api_demo":
            vanilla, hooked = (
                "".join(line for line in text.splitlines(True) if not PROGRESS.match(line))
                for text in (vanilla, hooked)
            )
        if hooked == vanilla:
            verdict = "same"
        elif sorted(hooked.splitlines()) == sorted(vanilla.splitlines()):
            verdict = "same lines, in another order"
        else:
            verdict = f"differs: vanilla {vanilla[:600]!r} hooked {hooked[:600]!r}"
        through_switch = inc_spark.last_metrics() is not before
        how = "switch" if through_switch else "vanilla"
        print(f"{name}|{verdict}|{how}|{time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
