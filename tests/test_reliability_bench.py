"""The reliability bench's fast subset: every part runs and records what happened."""

from __future__ import annotations

from typing import Any

import pytest

from bench import reliability_bench

OUTCOMES = {"exact", "wrong", "error"}


@pytest.fixture(scope="module")
def quick() -> dict[str, Any]:
    return reliability_bench.run(quick=True)


def test_the_switch_survives_the_fuzzer_and_then_answers_exactly(quick: dict[str, Any]) -> None:
    fuzzed = quick["fuzz"]
    assert fuzzed["datagrams"] == 20_000 and fuzzed["poison_datagrams"] > 0
    assert fuzzed["switch_alive"]
    assert fuzzed["legit_after"]["outcome"] == "exact", fuzzed["legit_after"]


def test_every_attack_is_measured(quick: dict[str, Any]) -> None:
    assert quick["forged"]["forged_datagrams"] > 0
    assert set(quick["forged"]["outcomes"]) <= OUTCOMES
    assert quick["tokens"]["accepted"] + quick["tokens"]["refused"] == quick["tokens"]["guesses"]
    requests = {row["request"] for row in quick["amplification"]["requests"]}
    assert {f"control {op}" for op in reliability_bench.CONTROL_OPS} <= requests
    assert quick["flood"]["switch_alive"]
    assert quick["flood"]["switch_rss_max_mib"] >= quick["flood"]["switch_rss_before_mib"]


def test_the_fault_matrix_is_exact_where_the_protocol_recovers(quick: dict[str, Any]) -> None:
    """Loss, duplication, reordering and a blackhole are recovered exactly; corruption and a
    restart end however the current code ends them, and the bench records which."""
    by_fault = {row["fault"]: row for row in quick["faults"]}
    for fault in ("drop", "duplicate", "reorder", "blackhole"):
        assert by_fault[fault]["outcome"] == "exact", by_fault[fault]
        moved = {"drop": "dropped", "duplicate": "duplicated", "reorder": "reordered",
                 "blackhole": "blackholed"}[fault]  # fmt: skip
        assert by_fault[fault]["injected"]["requests"][moved] > 0
    assert all(row["outcome"] in OUTCOMES for row in quick["faults"])
    assert "switch restart mid-job" in by_fault


def test_the_tables_render(quick: dict[str, Any]) -> None:
    text = reliability_bench.format_tables(quick)
    assert "| reorder | 0.05 | exact |" in text
    assert "mutated datagrams" in text
