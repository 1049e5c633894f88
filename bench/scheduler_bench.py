"""Scheduler benchmark: a mixed workload of aggregation jobs sharing one switch, per policy.

    .venv/bin/python bench/scheduler_bench.py --json docs/scheduler.json --plot docs/scheduler.png
    .venv/bin/python bench/scheduler_bench.py --quick    # the test's subset (< 1 min)

One ``inc-switch serve`` per policy (``--memory-policy``: ``exclusive``, one job at a time, the
switch's behaviour before the memory manager; ``isolated``; ``edf`` with the switch's default
deadline reserve and ``edf:0.5`` with half the array reserved; ``shared``), with an aggregator
array small enough that the jobs contend for it. The same seeded workload runs against each:
``--jobs`` aggregation jobs with staggered (exponential) arrivals, at each load of ``--gaps``
(mean seconds between arrivals; the report gives the offered load, the jobs' solo run times
over the arrival span), each a process that streams its pairs as ``PARTITIONS`` map tasks (one
flow each, pre-combined as Spark's map side does), drains and merges, as a ``reduceByKey``
through the switch does (key counts from 1 K to 100 K, uniform or Zipf keys); one job in three
has a deadline. Each job asks for the columns its keys could use (distinct keys / rows, as a
power of two, at most half the array; ``size_hint``) and accepts half of that rather than wait:
what it gains per aggregator, the seed's sizing rule. Every process builds its pairs and the
``collections.Counter`` reference before the clock starts and checks its result exactly.

Figures per policy: mean and p95 job completion time (finish minus arrival, waiting included),
the share of deadlines met, the switch's memory utilisation over time (columns held by jobs,
sampled every 50 ms from its ``stats``), and the tuples each job got back from the switch
(residual + flushed + evicted + drained: the host-side cost of a smaller region), and how
long each job waited for memory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bench import machine_load, saved_results
from inc_spark import host
from switch_dataplane.control.control_client import ControlClient, parse_address
from switch_dataplane.control.control_plane import DEFAULT_DEADLINE_RESERVE
from switch_dataplane.daemon.launcher import SwitchProcess

POLICIES = ("exclusive", "isolated", "edf", "edf:0.5", "shared")  # edf:R: deadline reserve R
ROWS = 32
COLUMNS = 1024  # 32 K aggregators a copy: fewer than the jobs' keys together
DEADLINE_SLACK = 3.0  # a deadline job must finish within this many times its solo run time
MAX_WAIT_MS = 600_000
PARTITIONS = 4  # map tasks per job: what the switch aggregates across


def progress(message: str) -> None:
    print(f"[scheduler-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Job:
    name: str
    arrival_s: float  # after the common start
    pairs: int
    distinct: int
    zipf: float  # 0: uniform keys
    seed: int
    deadline: bool


def workload(jobs: int, scale: float, gap_s: float, seed: int) -> list[Job]:
    """Seeded jobs: sizes log-uniform over a decade and a half, every third with a deadline."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(np.r_[0.0, rng.exponential(gap_s, jobs - 1)])
    out = []
    for i in range(jobs):
        pairs = int(scale * 10 ** rng.uniform(4.3, 5.6))  # 20 K .. 400 K at scale 1
        distinct = max(100, pairs // int(rng.choice([4, 10, 40])))
        zipf = float(rng.choice([0.0, 1.1, 1.3]))
        out.append(
            Job(f"job{i:02d}", float(arrivals[i]), pairs, distinct, zipf, seed + i, i % 3 == 1)
        )
    return out


def job_pairs(job: Job) -> list[tuple[str, int]]:
    rng = np.random.default_rng(job.seed)
    if job.zipf:
        ranks = rng.zipf(job.zipf, job.pairs) % job.distinct
    else:
        ranks = rng.integers(0, job.distinct, job.pairs)
    values = rng.integers(1, 5, job.pairs)
    return [
        (f"{job.name}-k{r}", int(v)) for r, v in zip(ranks.tolist(), values.tolist(), strict=True)
    ]


def size_hint(distinct: int) -> int:
    """Columns worth asking for: enough for every distinct key to have an aggregator, as a
    power of two between 16 and half the array."""
    wanted = max(16, -(-distinct // ROWS))
    return min(COLUMNS // 2, 1 << (wanted - 1).bit_length())


def reduce_through_switch(
    pairs: list[tuple[str, int]], address: str, **options: Any
) -> tuple[dict[str, int], dict[str, int]]:
    """(exact sums, ledger) of ``pairs`` streamed as ``PARTITIONS`` map tasks into one job:
    open (waiting for memory as the policy says), stream each partition on its flow, drain,
    merge, close. The ledger counts the tuples the switch sent back to hosts."""
    asked = time.monotonic()
    ticket = host.open_job(address, op="sum", name="scheduler-bench", **options)
    waited = time.monotonic() - asked
    control = ticket.control()
    try:
        drainer = host.CopyDrainer(ticket).start()
        try:
            bounds = np.linspace(0, len(pairs), PARTITIONS + 1).astype(int)
            results = [
                host.stream_pairs(ticket, pairs[bounds[i] : bounds[i + 1]], partition=i)
                for i in range(PARTITIONS)
            ]
        finally:
            drainer.finish()
        counters = control.request("job_status", job_id=ticket.job_id, token=ticket.token)[
            "counters"
        ]
    finally:
        try:
            control.request("close_job", job_id=ticket.job_id, token=ticket.token)
        finally:
            control.close()
    drained = [host.StreamResult("sum", keys=drainer.keys, values=drainer.values)]
    counts = host.merge_results([*results, *drained], "sum")
    ledger = {
        "columns": ticket.columns,
        "wait_s": waited,
        "tuples_sent": counters["tuples"],
        "host_bound": counters["residual"] + counters["flushed"] + counters["evicted"]
        + sum(len(v) for v in drainer.values),
    }  # fmt: skip
    return counts, ledger


def run_job(
    job: Job,
    address: str,
    deadline_s: float | None,
    ready: Any,
    go: Any,
    start: Any,
    results: Any,
) -> None:
    """One job's process: build its pairs and reference, wait for the common start, arrive,
    aggregate, report (seconds since the start, outcome, tuples back from the switch)."""
    pairs = job_pairs(job)
    expected: Counter = Counter()
    for key, value in pairs:
        expected[key] += value
    ready.wait()  # every job has built its pairs; the driver then sets the start
    go.wait()
    start_at = start.value
    time.sleep(max(0.0, start_at + job.arrival_s - time.monotonic()))
    arrived = time.monotonic()
    hint = size_hint(len(expected))
    options: dict[str, Any] = {
        "max_wait_ms": MAX_WAIT_MS,
        "columns": hint,
        "min_columns": max(1, hint // 2),
    }
    if deadline_s is not None:
        options["deadline_ms"] = int(deadline_s * 1000)
    record: dict[str, Any] = {
        "job": job.name,
        "arrival_s": arrived - start_at,
        "distinct": len(expected),  # the limit: one tuple per distinct key back to the hosts
    }
    try:
        counts, ledger = reduce_through_switch(pairs, address, **options)
        record.update(outcome="exact" if counts == dict(expected) else "wrong", **ledger)
    except Exception as exc:  # a figure, not a crash: the table shows it
        record.update(outcome="error", error=f"{type(exc).__name__}: {exc}"[:300])
    finished = time.monotonic()
    record.update(finish_s=finished - start_at, jct_s=finished - arrived)
    if deadline_s is not None:
        record.update(deadline_s=deadline_s, met=finished - arrived <= deadline_s)
    results.put(record)


def sample_utilisation(
    address: str, secret: str, stop: threading.Event, start: float, out: list
) -> None:
    """(seconds since the start, share of the array granted to jobs, share of its aggregators
    that hold a key) every 50 ms."""
    client = ControlClient(parse_address(address), deadline_s=5)
    try:
        while not stop.wait(0.05):
            switch = client.request("stats", operator=secret)["switch"]
            in_use = switch["aggregators_in_use"] / (2 * switch["rows"] * switch["columns"])
            out.append((time.monotonic() - start, switch["memory_granted"], in_use))
    finally:
        client.close()


def switch_flags(policy: str) -> tuple[str, ...]:
    """``inc-switch serve`` flags for a policy of ``POLICIES`` (``edf:R``: edf, reserve R)."""
    name, _, reserve = policy.partition(":")
    flags = ("--memory-policy", name, "--rows", str(ROWS), "--cols", str(COLUMNS))
    return flags + (("--deadline-reserve", reserve) if reserve else ())


def run_policy(policy: str, jobs: list[Job], deadlines: dict[str, float]) -> dict[str, Any]:
    """The workload against one switch with ``policy``."""
    flags = switch_flags(policy)
    with SwitchProcess(*flags) as switch:
        ctx = multiprocessing.get_context("fork")
        ready, go = ctx.Barrier(len(jobs) + 1), ctx.Barrier(len(jobs) + 1)
        start = ctx.Value("d", 0.0)
        results = ctx.Queue()
        procs = [
            ctx.Process(
                target=run_job,
                args=(job, switch.address, deadlines.get(job.name), ready, go, start, results),
            )
            for job in jobs
        ]
        for proc in procs:
            proc.start()
        ready.wait()
        start.value = time.monotonic() + 0.2
        go.wait()
        stop = threading.Event()
        samples: list[tuple[float, float]] = []
        sampler = threading.Thread(
            target=sample_utilisation,
            args=(switch.address, switch.operator_secret, stop, start.value, samples),
        )
        sampler.start()
        records = []
        for _ in jobs:
            records.append(results.get())
            progress(f"{policy}: {records[-1]['job']} {records[-1]['outcome']} "
                     f"in {records[-1]['jct_s']:.2f} s")  # fmt: skip
        stop.set()
        sampler.join()
        for proc in procs:
            proc.join()
    return summarise(policy, sorted(records, key=lambda r: r["job"]), samples)


def summarise(policy: str, records: list[dict], samples: list) -> dict[str, Any]:
    """One run's figures (``format_tables`` pools the jobs of every workload)."""
    jcts = [r["jct_s"] for r in records]
    with_deadline = [r for r in records if "deadline_s" in r]
    granted = [g for _, g, _ in samples]
    in_use = [u for _, _, u in samples]
    return {
        "policy": policy,
        "jobs": records,
        "exact": sum(r["outcome"] == "exact" for r in records),
        "mean_jct_s": statistics.fmean(jcts),
        "p95_jct_s": float(np.percentile(jcts, 95)),
        "makespan_s": max(r["finish_s"] for r in records),
        "deadlines": len(with_deadline),
        "deadlines_met": sum(bool(r.get("met")) for r in with_deadline),
        "granted_mean": statistics.fmean(granted) if granted else None,
        "in_use_mean": statistics.fmean(in_use) if in_use else None,
        "utilisation": samples,
        "host_bound": sum(r.get("host_bound") or 0 for r in records),
        "distinct": sum(r["distinct"] for r in records),
    }


def solo_times(jobs: list[Job]) -> dict[str, float]:
    """Each job alone on an idle switch with the whole array (for its deadline)."""
    times = {}
    with SwitchProcess("--rows", str(ROWS), "--cols", str(COLUMNS)) as switch:
        reduce_through_switch(job_pairs(jobs[0])[:1000], switch.address)  # load the kernels
        for job in jobs:
            pairs = job_pairs(job)
            t0 = time.monotonic()
            reduce_through_switch(pairs, switch.address)
            times[job.name] = time.monotonic() - t0
    progress(f"solo times: {sum(times.values()):.1f} s in all")
    return times


@dataclass(frozen=True)
class Settings:
    """One benchmark run: each load (mean gap between arrivals) runs ``workloads`` seeds."""

    jobs: int = 16
    scale: float = 4.0  # multiplies every job's pairs
    gaps_s: tuple[float, ...] = (0.5, 0.2)
    policies: tuple[str, ...] = POLICIES
    workloads: int = 3
    seed: int = 1


QUICK = Settings(jobs=6, scale=0.2, gaps_s=(0.1,), workloads=1)  # the test's subset


def run_workload(settings: Settings, gap_s: float, seed: int) -> dict:
    """One seeded workload: each job's solo time (for its deadline), then every policy."""
    jobs = workload(settings.jobs, settings.scale, gap_s, seed)
    solo = solo_times(jobs)
    deadlines = {j.name: DEADLINE_SLACK * solo[j.name] for j in jobs if j.deadline}
    return {
        "gap_s": gap_s,
        "seed": seed,
        "offered_load": sum(solo.values()) / (jobs[-1].arrival_s + gap_s),
        "jobs": [asdict(j) for j in jobs],
        "solo_s": solo,
        "runs": [run_policy(p, jobs, deadlines) for p in settings.policies],
    }


def run(settings: Settings) -> dict:
    busy_before = machine_load.busy_cpu_seconds()
    started = time.monotonic()
    seeds = [settings.seed + 1000 * i for i in range(settings.workloads)]
    workloads = [run_workload(settings, gap, seed) for gap in settings.gaps_s for seed in seeds]
    elapsed = time.monotonic() - started
    return {
        "machine": machine_load.machine(),
        "machine_load": {
            "busy_cpus_mean": (machine_load.busy_cpu_seconds() - busy_before) / elapsed
        },
        "seconds": elapsed,
        "geometry": {"rows": ROWS, "columns": COLUMNS},
        "settings": {**asdict(settings), "partitions": PARTITIONS},
        "deadline_slack": DEADLINE_SLACK,
        "default_reserve": DEFAULT_DEADLINE_RESERVE,
        "workloads": workloads,
    }


def by_load(report: dict[str, Any]) -> dict[float, dict[str, dict[str, Any]]]:
    """Per load (mean gap between arrivals), each policy's runs of every workload pooled: all
    their jobs, the runs' summaries, and the workloads' offered load."""
    pooled: dict[float, dict[str, dict[str, Any]]] = {}
    for load in report["workloads"]:
        for r in load["runs"]:
            entry = pooled.setdefault(load["gap_s"], {})
            entry = entry.setdefault(r["policy"], {"jobs": [], "runs": [], "offered": []})
            entry["jobs"] += r["jobs"]
            entry["runs"].append(r)
            entry["offered"].append(load["offered_load"])
    return pooled


def format_tables(report: dict[str, Any]) -> str:
    """The policy tables of docs/scheduler.md (``bench/report.py``), one per load."""
    settings = report["settings"]
    loads = by_load(report)
    lines = [
        f"{len(report['workloads']) // len(loads)} workloads a load, {settings['jobs']} jobs "
        f"each ({settings['partitions']} map tasks a job), on a {report['geometry']['rows']} x "
        f"{report['geometry']['columns']} array; {report['seconds']:.0f} s on "
        f"{report['machine']['nproc']} CPUs ({report['machine_load']['busy_cpus_mean']:.2f} busy "
        f"on average). `edf` keeps the switch's default deadline reserve "
        f"({report['default_reserve']:.0%} of the array), `edf:0.5` half of it."
    ]
    for gap, pooled in loads.items():
        mean = {p: statistics.fmean(j["jct_s"] for j in e["jobs"]) for p, e in pooled.items()}
        offered = statistics.fmean(next(iter(pooled.values()))["offered"])
        lines += [
            "",
            f"**Arrivals every {gap} s on average**: offered load {offered:.1f} (the jobs' solo "
            "run times over the arrival span).",
            "",
            "| policy | exact | mean JCT s | p95 JCT s | vs exclusive | deadlines met | "
            "memory granted | aggregators in use | tuples back to hosts (limit) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for policy, e in pooled.items():
            runs, jobs = e["runs"], e["jobs"]
            ratio = mean[policy] / mean["exclusive"] if "exclusive" in mean else float("nan")
            deadline_jobs = [j for j in jobs if "deadline_s" in j]
            lines.append(
                f"| {policy} | {sum(j['outcome'] == 'exact' for j in jobs)}/{len(jobs)} | "
                f"{mean[policy]:.2f} | {np.percentile([j['jct_s'] for j in jobs], 95):.2f} | "
                f"{ratio:.2f}x | {sum(bool(j['met']) for j in deadline_jobs)}/"
                f"{len(deadline_jobs)} | "
                f"{statistics.fmean(r['granted_mean'] for r in runs):.0%} | "
                f"{statistics.fmean(r['in_use_mean'] for r in runs):.0%} | "
                f"{sum(r['host_bound'] for r in runs):,} ({sum(r['distinct'] for r in runs):,}) |"
            )
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str) -> None:
    """Per load: the JCT CDF, the memory granted over the first workload, and each job's tuples
    back to hosts over its limit (one per distinct key)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loads = by_load(report)
    fig, axes = plt.subplots(len(loads), 3, figsize=(16, 4 * len(loads)), squeeze=False)
    for (left, middle, right), (gap, pooled) in zip(axes, loads.items(), strict=True):
        for policy, e in pooled.items():
            jct = sorted(j["jct_s"] for j in e["jobs"])
            left.step(jct, np.arange(1, len(jct) + 1) / len(jct), where="post", label=policy)
            first = e["runs"][0]["utilisation"]
            if first:
                t, granted, _ = zip(*first, strict=True)
                middle.plot(t, granted, label=policy)
        right.boxplot(
            [[j["host_bound"] / j["distinct"] for j in e["jobs"]] for e in pooled.values()],
            tick_labels=list(pooled),
        )
        left.set(xlabel="job completion time (s)", ylabel="share of jobs",
                 title=f"JCT CDF, arrivals every {gap} s")  # fmt: skip
        middle.set(xlabel="time since the start (s)", ylabel="share of the array granted",
                   title="switch memory, first workload", ylim=(0, 1.05))  # fmt: skip
        right.set(ylabel="tuples back to hosts / distinct keys (limit 1)",
                  title="host-bound tuples per job")  # fmt: skip
        right.axhline(1.0, color="grey", linestyle=":")
        left.legend()
        middle.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 small jobs (the test's subset)")
    parser.add_argument("--jobs", type=int, default=Settings.jobs)
    parser.add_argument("--scale", type=float, default=Settings.scale, help="multiplies pairs")
    parser.add_argument(
        "--gaps",
        default=",".join(map(str, Settings.gaps_s)),
        help="loads to run: mean seconds between arrivals, comma separated",
    )
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--workloads", type=int, default=Settings.workloads, help="seeds a load")
    parser.add_argument("--seed", type=int, default=Settings.seed, help="the first seed")
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--plot", metavar="PNG")
    parser.add_argument("--report", metavar="JSON", help="print and plot saved results, no run")
    args = parser.parse_args(argv)
    if args.report:
        return saved_results.replay(args.report, format_tables, plot, args.plot)
    settings = (
        QUICK
        if args.quick
        else Settings(
            args.jobs,
            args.scale,
            tuple(float(g) for g in args.gaps.split(",")),
            tuple(args.policies.split(",")),
            args.workloads,
            args.seed,
        )
    )
    report = run(settings)
    saved_results.save(report, args.json, plot, args.plot, progress)
    print(format_tables(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
