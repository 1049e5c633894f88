"""bench/wordcount_bench.py: the sweep's medians, ratios, targets and reports, from synthetic runs
(no Spark)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from bench.wordcount_bench import (
    BASELINE,
    LEDGER,
    PYARROW,
    _tasks,
    describe,
    format_tables,
    ledger_figures,
    placement_refs,
    plot,
    sweep_summary,
)

DISTINCT = 100


def _ledger(tuples_sent: int, host_bound: int, host_path: int = 0) -> dict[str, Any]:
    ledger: dict[str, Any] = dict.fromkeys(LEDGER, 0)
    ledger.update(
        tuples_sent=tuples_sent,
        host_bound=host_bound,
        drained_entries=host_bound,
        host_path=host_path,
        absorbed_share=0.5 if tuples_sent else 0.0,
        bytes_to_switch=tuples_sent * 20,
        bytes_to_hosts=host_bound * 20,
        switch_cpu_s=0.1,
    )
    return ledger


def _shuffle(records: int) -> dict[str, Any]:
    return {
        "shuffle_write_records": records,
        "shuffle_write_bytes": records * 30,
        "shuffle_read_records": records,
        "shuffle_read_bytes": records * 30,
    }


def _run(
    mode: str,
    tasks: int | None,
    whole_s: float,
    inc: dict[str, Any] | None = None,
    spark: dict[str, Any] | None = None,
) -> dict[str, Any]:
    cpu = 2 * whole_s
    run = {
        "mode": mode,
        "tasks": tasks,
        "rep": 1,
        "whole_s": whole_s,
        "spark_cpu_s": cpu,
        "spark_cpu_sampled": {
            "total": cpu,
            "driver": 1.0,
            "jvm": cpu - 2,
            "daemon": 0.5,
            "workers": 0.5,
        },
        "switch_cpu_s": 0.2 if inc and inc["tuples_sent"] else None,
    }
    if mode == BASELINE:
        return run
    metrics = {"distinct_words": DISTINCT, "inc": inc, "spark": spark}
    return {**run, "inproc_s": whole_s - 9, "distinct_words": DISTINCT, **ledger_figures(metrics)}


def _runs() -> list[dict[str, Any]]:
    """The trivial job takes 10 s; at P=2 and P=64: rdd's job 20 s, sql's 10 s; at P=64 sql's
    Spark figures are missing."""
    runs = []
    for p, inc_rdd_s in ((2, 26.0), (64, 27.0)):
        runs += [
            _run(BASELINE, p, 10.0),
            _run("inc", p, 14.0, _ledger(800, 150), _shuffle(0)),
            _run("inc-rdd", p, inc_rdd_s, _ledger(800, 120, host_path=20), _shuffle(100)),
            _run("inc-df", p, 17.0, _ledger(1200, 110), _shuffle(0)),
            _run("rdd", p, 30.0, None, _shuffle(1000)),
            _run("sql", p, 20.0, None, _shuffle(900) if p == 2 else None),
            _run("local", p, 16.0, _ledger(0, 0, host_path=1000), _shuffle(0)),
        ]
    return [*runs, _run(PYARROW, None, 3.0)]


LABELS = ["inc", "inc-rdd", "inc-df", "rdd", "sql", "local"]


def _summary() -> dict[str, Any]:
    return sweep_summary(_runs(), LABELS, [2, 64])


def _row(summary: dict[str, Any], mode: str, tasks: int) -> dict[str, Any]:
    return next(r for r in summary["medians"] if r["mode"] == mode and r["tasks"] == tasks)


def test_ledger_figures_per_mode():
    vanilla = ledger_figures({"distinct_words": DISTINCT, "inc": None, "spark": _shuffle(300)})
    assert vanilla["tuples_sent"] is None and vanilla["host_bound_x_distinct"] is None
    assert vanilla["shuffle_read_x_distinct"] == 3.0
    switch = ledger_figures({"distinct_words": DISTINCT, "inc": _ledger(800, 150), "spark": None})
    assert switch["host_bound_x_distinct"] == 1.5 and switch["switch_thread_cpu_s"] == 0.1
    assert switch["shuffle_write_records"] is None


def test_medians_and_ratios_against_vanilla_and_local():
    summary = _summary()
    assert summary["start"]["whole_s"] == 10.0
    assert [(r["tasks"], r["mode"]) for r in summary["medians"]][:2] == [(2, "inc"), (2, "inc-rdd")]
    inc = _row(summary, "inc", 2)
    assert inc["job_s"] == 4.0 and inc["vanilla"] == "rdd"
    assert inc["job_s_x_vanilla"] == pytest.approx(0.2)
    assert inc["job_s_x_local"] == pytest.approx(4 / 6)
    assert inc["tuples_sent_x_shuffle_write"] == pytest.approx(800 / 900)  # sql's rows
    inc_df = _row(summary, "inc-df", 2)
    assert inc_df["vanilla"] == "sql" and inc_df["job_s_x_vanilla"] == pytest.approx(0.7)
    local = _row(summary, "local", 2)
    assert local["job_s_x_vanilla"] == pytest.approx(0.3) and "job_s_x_local" not in local
    assert local["host_path_x_distinct"] == 10.0
    assert "job_s" not in summary["pyarrow"] and summary["pyarrow"]["whole_s"] == 3.0


def test_targets_per_p():
    met = {(t["target"], t["tasks"]): t["met"] for t in _summary()["targets"]}
    assert met["inc <= 0.3x rdd job time", 2]
    assert met["inc-rdd <= 1.0x rdd job time", 2] and met["inc-rdd <= 1.0x rdd job time", 64]
    assert ("inc-rdd <= 0.75x rdd job time at P >= 64", 2) not in met
    assert not met["inc-rdd <= 0.75x rdd job time at P >= 64", 64]  # 17 / 20
    assert met["inc-df <= 0.8x sql job time", 2]
    assert met["inc tuples sent <= sql shuffle-write rows", 2]
    assert not met["inc-df tuples sent <= sql shuffle-write rows", 2]  # 1200 / 900
    assert met["inc tuples sent <= sql shuffle-write rows", 64] is None  # not measured
    merged = "tuples to the final merge (host-bound + host path) <= 1.25x distinct"
    assert met[f"inc-df {merged}", 2]
    assert not met[f"inc {merged}", 2]
    assert not met[f"inc-rdd {merged}", 2]  # 1.2x host-bound, but 20 more entries never travelled
    assert (f"local {merged}", 2) not in met


def test_a_negative_job_time_meets_no_target():
    runs = [r for r in _runs() if r["tasks"] == 2]
    for run in runs:
        if run["mode"] in ("inc-df", "sql"):
            run["whole_s"] -= 11.0  # jobs of -4 s and -1 s: shorter than the trivial job
    met = {t["target"]: t["met"] for t in sweep_summary(runs, LABELS, [2])["targets"]}
    assert met["inc-df <= 0.8x sql job time"] is False


def test_tasks_argument():
    assert _tasks("64,2, 8,2") == [2, 8, 64]
    for bad in ("0,2", "two", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            _tasks(bad)


def test_placement_refs_of_one_corpus(tmp_path: Path):
    def result(corpus: str, tasks: int, variant: str = "default") -> dict[str, Any]:
        return {
            "corpus": corpus,
            "tasks": tasks,
            "variant": variant,
            "distinct": 100,
            "oracle": 110,
            "slot_bound": 130 if corpus == "c.txt" else 200,
        }

    path = tmp_path / "placement.json"
    results = [
        result("c.txt", 64),
        result("c.txt", 2),
        result("c.txt", 8),
        result("other.txt", 2),
        result("c.txt", 2, "evict"),
    ]
    path.write_text(json.dumps({"results": results}))
    refs = placement_refs(str(path), "c.txt", [2, 64])
    assert [r["tasks"] for r in refs] == [2, 64]
    assert refs[0] == {
        "tasks": 2,
        "corpus": "c.txt",
        "oracle_x_distinct": 1.1,
        "slot_bound_x_distinct": 1.3,
    }
    with pytest.raises(ValueError, match="other.txt"):  # never another corpus's figures
        placement_refs(str(path), "unknown.txt", [2])


def test_reports(tmp_path: Path):
    pytest.importorskip("matplotlib")
    runs = _runs()
    result = {
        "input": "/tmp/c.txt",
        "input_bytes": 3_000_000,
        "words": 1000,
        "distinct_words": DISTINCT,
        "master": "local[2]",
        "repeat": 1,
        "tasks": [2, 64],
        "outputs_identical": True,
        **sweep_summary(runs, LABELS, [2, 64]),
        "placement": [{"tasks": 2, "oracle_x_distinct": 1.1, "slot_bound_x_distinct": 1.3}],
    }
    tables = format_tables(result)
    assert "| inc | 2 | 4.00 | 0.20 | 0.67 |" in tables
    assert "| inc <= 0.3x rdd job time | 2 | 0.20 | 0.30 | yes |" in tables
    assert "| inc tuples sent <= sql shuffle-write rows | 64 | - | 1.00 | n/a" in tables
    assert "P=2: oracle 1.10, slot bound 1.30" in tables
    plot(result, str(tmp_path / "wc.png"))
    assert (tmp_path / "wc.png").read_bytes()[:4] == b"\x89PNG"
    inc = next(r for r in runs if r["mode"] == "inc")
    assert describe(inc, 10.0).startswith("rep 1 inc P=2: job 4.0 s, 14.0 s whole")
    assert "host-bound 1.50x distinct" in describe(inc, 10.0)
