"""Re-print a benchmark's tables (and redraw its plot) from its saved JSON, without a re-run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


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
