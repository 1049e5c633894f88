"""The scheduler benchmark's small workload: every policy serves concurrent jobs exactly."""

from __future__ import annotations

from bench import scheduler_bench


def test_every_policy_serves_concurrent_jobs_exactly() -> None:
    report = scheduler_bench.run(scheduler_bench.QUICK)
    (load,) = report["workloads"]
    assert [r["policy"] for r in load["runs"]] == list(scheduler_bench.POLICIES)
    for r in load["runs"]:
        assert [j["outcome"] for j in r["jobs"]] == ["exact"] * 6, r["policy"]
        assert all(j["host_bound"] >= j["distinct"] for j in r["jobs"])  # the limit holds
    table = scheduler_bench.format_tables(report)
    assert all(f"| {policy} | 6/6 |" in table for policy in scheduler_bench.POLICIES)
