"""Pack a relocatable environment for executors: the standard way to ship inc-spark to a cluster.

    inc-spark-pack-env dist/inc-spark-env.tar.gz
    spark-submit --master spark://... --archives dist/inc-spark-env.tar.gz#env \\
        --conf spark.pyspark.python=./env/bin/python jobs/wordcount.py ...

A plain venv does not relocate, so the environment is made with venv-pack from a fresh,
non-editable install of this project. pyspark itself is left out (executors take pyspark from
the Spark installation that runs them), which halves the archive. Numba's cache then lives in
``__pycache__`` inside the unpacked archive, which executors can write; set
``spark.executorEnv.NUMBA_CACHE_DIR`` to share one across executors of a host.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[2])  # the project: inc_spark/spark/ -> its root
EXCLUDE = ["lib/python*/site-packages/pyspark/*", "lib/python*/site-packages/pyspark-*"]


def pack(output: str, python: str = sys.executable, progress: bool = True) -> str:
    """Build the archive at ``output`` and return its path."""
    output = os.path.abspath(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    build = tempfile.mkdtemp(prefix="inc-spark-pack-")
    venv = os.path.join(build, "env")

    def run(*cmd: str) -> None:
        if progress:
            print(f"[pack-env] {' '.join(cmd)}", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if not progress else None)

    try:
        run(python, "-m", "venv", venv)
        pip = os.path.join(venv, "bin", "pip")
        run(pip, "install", "--quiet", REPO, "venv-pack")
        if os.path.exists(output):
            os.remove(output)
        excludes = [arg for pattern in EXCLUDE for arg in ("--exclude", pattern)]
        run(os.path.join(venv, "bin", "venv-pack"), "-p", venv, "-o", output, "-q", *excludes)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "output", nargs="?", default=os.path.join(REPO, "dist", "inc-spark-env.tar.gz")
    )
    args = parser.parse_args(argv)
    print(pack(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
