"""Regenerate the result tables in the documents from the committed benchmark JSON.

Figures in prose drift from the data; figures rendered from the JSON do not. A generated block
in a Markdown file is delimited by two comments naming the renderer and the results file::

    <!-- report: wordcount-summary docs/wordcount-fanin-c200.json -->
    | P | inc x rdd | ... |
    <!-- end report -->

``python bench/report.py`` rewrites every block in ``README.md`` and ``docs/*.md``;
``--check`` changes nothing and fails naming the stale blocks (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    REPO,
    host_bench,
    kv_bench,
    placement_bench,
    reliability_bench,
    scheduler_bench,
    switch_bench,
    wordcount_bench,
)

BLOCK = re.compile(
    r"(?P<open><!-- report: (?P<kind>[\w-]+) (?P<path>\S+) -->\n)"
    r"(?P<body>.*?)"
    r"(?P<close><!-- end report -->)",
    re.DOTALL,
)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ratio(a: float | None, b: float | None) -> str:
    return _f(a / b if a is not None and b else None)


def _medians(result: dict[str, Any]) -> dict[tuple[str, int | None], dict[str, Any]]:
    """The sweep's median rows by (mode, P)."""
    return {(r["mode"], r["tasks"]): r for r in result["medians"]}


def wordcount_summary(result: dict[str, Any]) -> str:
    """One row per P: each INC mode's job time against vanilla and against no switch, and the
    tuples that reach the final merge per distinct word against Spark's; the oracle and the
    slot bound (bench/placement_bench.py) count the words that travel to the switch."""
    rows = _medians(result)
    placement = {p["tasks"]: p for p in result.get("placement") or []}
    lines = [
        "| P | inc x rdd | inc x local | inc-df x sql | inc-rdd x rdd | inc merged / distinct "
        "| sql shuffle read / distinct | oracle / switch keys | slot bound / switch keys "
        "| inc bytes to switch / sql shuffle bytes |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tasks in result["tasks"]:
        inc, sql = rows.get(("inc", tasks), {}), rows.get(("sql", tasks), {})
        ref = placement.get(tasks, {})
        cells = [
            str(tasks) if tasks else "auto",
            _f(inc.get("job_s_x_vanilla")),
            _f(inc.get("job_s_x_local")),
            _f(rows.get(("inc-df", tasks), {}).get("job_s_x_vanilla")),
            _f(rows.get(("inc-rdd", tasks), {}).get("job_s_x_vanilla")),
            _f(inc.get("merged_x_distinct")),
            _f(sql.get("shuffle_read_x_distinct")),
            _f(ref.get("oracle_x_distinct")),
            _f(ref.get("slot_bound_x_distinct")),
            _ratio(inc.get("bytes_to_switch"), sql.get("shuffle_write_bytes")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _span(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    low, high = f"{min(known):.2f}", f"{max(known):.2f}"
    return low if low == high else f"{low}-{high}"


def wordcount_headline(result: dict[str, Any]) -> str:
    """The README's paragraph: the sweep's ranges over P, in words."""
    rows = _medians(result)
    distinct = result["distinct_words"]

    def over_p(mode: str, key: str) -> str:
        return _span([rows.get((mode, p), {}).get(key) for p in result["tasks"]])

    tasks = [p for p in result["tasks"] if p]
    return (
        f"Word count of {result['input_bytes'] / 1e6:.0f} MB ({result['words'] / 1e6:.1f} M "
        f"words, {distinct / 1e3:.0f} K distinct) with {min(tasks)} to {max(tasks)} map tasks "
        f"on {result['machine']['nproc']} cores, medians of {result['repeat']}: the driver merges "
        f"{over_p('inc', 'merged_x_distinct')} tuples per distinct word where Spark's shuffle "
        f"has its reducers read {over_p('sql', 'shuffle_read_x_distinct')} (the limit is 1). "
        f"Job time: `inc` "
        f"{over_p('inc', 'job_s_x_vanilla')}x that of vanilla `reduceByKey` "
        f"({over_p('inc', 'job_s_x_local')}x the same reader with no switch), `inc-df` "
        f"{over_p('inc-df', 'job_s_x_vanilla')}x Spark SQL, `inc-rdd` "
        f"{over_p('inc-rdd', 'job_s_x_vanilla')}x `reduceByKey`."
    )


def placement_table(report: dict[str, Any]) -> str:
    return placement_bench.markdown_table(report["results"])


def switch_headline(report: dict[str, Any]) -> str:
    """The README's sentence on the daemon's UDP rates."""
    udp = {(r["workload"], r["slots"]): r for r in report["udp"]["results"]}
    exact = all(r["all_exact"] for r in udp.values())
    return (
        f"On {report['machine']['nproc']} cores over UDP loopback it aggregates about "
        f"{udp['uniform-1/4', 32]['tuples_per_s'] / 1e6:.0f} M tuples/s in 32-slot packets "
        f"({udp['zipf-1.2', 32]['tuples_per_s'] / 1e6:.0f} M on Zipf keys) and "
        f"{udp['uniform-1/4', 1]['packets_per_s'] / 1e6:.1f} M one-slot packets/s"
        f"{', every run exact' if exact else ''} (`bench/switch_bench.py`, `docs/performance.md`)."
    )


def host_table(report: dict[str, Any]) -> str:
    return host_bench.tables(report["throughput"])


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "wordcount": wordcount_bench.format_tables,
    "wordcount-summary": wordcount_summary,
    "wordcount-headline": wordcount_headline,
    "kv": kv_bench.format_tables,
    "placement": placement_table,
    "switch": switch_bench.markdown_tables,
    "switch-headline": switch_headline,
    "host": host_table,
    "reliability": reliability_bench.format_tables,
    "scheduler": scheduler_bench.format_tables,
}


def render(text: str) -> str:
    """The document with every generated block rendered afresh from its JSON."""

    def block(match: re.Match[str]) -> str:
        kind, path = match["kind"], match["path"]
        if kind not in RENDERERS:
            raise SystemExit(f"report: unknown renderer {kind!r}; known: {', '.join(RENDERERS)}")
        if not (REPO / path).is_file():
            raise SystemExit(f"report: {path} does not exist; docs/ names the command")
        data = json.loads((REPO / path).read_text())
        return f"{match['open']}{RENDERERS[kind](data)}\n{match['close']}"

    return BLOCK.sub(block, text)


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; fail if stale")
    args = parser.parse_args(argv)
    stale = []
    for doc in documents():
        text = doc.read_text()
        fresh = render(text)
        if fresh != text:
            stale.append(doc.relative_to(REPO))
            if not args.check:
                doc.write_text(fresh)
    if stale and args.check:
        names = ", ".join(map(str, stale))
        print(f"report: stale tables in {names}; run python bench/report.py", file=sys.stderr)
        return 1
    for name in stale:
        print(f"report: rewrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
