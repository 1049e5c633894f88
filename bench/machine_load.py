"""This machine: what it is, and how busy. The benchmarks share it with other work, so they
record it with their figures, measure the load around each run and can wait for a quiet moment
before one."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import psutil


def machine() -> dict:
    """What the figures were measured on."""
    model = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (all processes, all CPUs)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def wait_idle(max_wait: float, threshold: float, say: Callable[[str], None]) -> float | None:
    """Wait up to ``max_wait`` s until fewer than ``threshold`` CPUs were busy over the last
    second; -> that figure (None when ``max_wait`` <= 0: no waiting, nothing measured)."""
    if max_wait <= 0:
        return None
    deadline = time.monotonic() + max_wait
    while True:
        before = busy_cpu_seconds()
        time.sleep(1.0)
        busy = busy_cpu_seconds() - before
        if busy < threshold:
            return busy
        if time.monotonic() >= deadline:
            say(f"machine still busy ({busy:.2f} CPUs) after {max_wait:.0f} s; going on")
            return busy
