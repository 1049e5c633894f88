"""A benchmark's saved JSON: written with its plot after a run, re-printed without one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def save(
    report: dict[str, Any],
    json_path: str | None,
    plot: Callable[[dict[str, Any], str], None],
    plot_path: str | None,
    progress: Callable[[str], None],
) -> None:
    """Write ``report`` to ``json_path`` and draw ``plot`` to ``plot_path``, each if given."""
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=1) + "\n")
        progress(f"wrote {json_path}")
    if plot_path:
        plot(report, plot_path)
        progress(f"wrote {plot_path}")


def replay(
    path: str,
    tables: Callable[[dict[str, Any]], str],
    plot: Callable[[dict[str, Any], str], None],
    plot_path: str | None,
) -> int:
    """Print ``tables`` of the results in ``path`` and draw ``plot`` to ``plot_path`` if given."""
    result = json.loads(Path(path).read_text())
    print(tables(result))
    if plot_path:
        plot(result, plot_path)
    return 0
