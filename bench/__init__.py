"""Benchmarks versus vanilla Spark, and of the switch, the host stack and the scheduler alone.

Importing ``bench`` points numba's compile cache at the repository's ``.numba_cache``, as
``make`` does, so a benchmark shares the kernels ``make env`` compiled and never times a compile.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
