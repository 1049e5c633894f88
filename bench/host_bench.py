"""Host stack benchmark: ``host.aggregate()`` end to end.

    .venv/bin/python bench/host_bench.py            # full run (a few minutes)
    .venv/bin/python bench/host_bench.py --quick    # short run (< 1 minute)
    .venv/bin/python bench/host_bench.py --json out.json

Every switch is ``inc-switch serve --port 0`` in its own process (``SwitchProcess``), killed at the
end, also on error. Every result is checked exactly against ``collections.Counter``; a mismatch
aborts the run.

Throughput: Zipf(1.2) words ``w<rank>`` (ranks = rng.zipf(1.2, n) % vocab), value 1,
through the default switch geometry. Cases: one sender (``host.aggregate``) with pre-combine on
and off; two sender processes streaming halves into one job (``open_job`` + ``stream_pairs`` in
subprocesses, the driver drains the active copy with ``CopyDrainer.take`` and merges). Wall time
is taken around the ``aggregate()`` call (two senders: from ``open_job`` to the merged result;
sender processes are started, warmed up and have built their pairs before the clock starts).
Median of ``--reps`` runs.

Which keys the switch keeps resident (eviction, swaps, against the oracle) is studied by
``bench/placement_bench.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench import REPO, machine_load
from inc_spark import host
from switch_dataplane.daemon.launcher import SwitchProcess

ZIPF_S = 1.2


def progress(message: str) -> None:
    print(f"[host-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- workloads


def zipf_ranks(n: int, vocab: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.zipf(ZIPF_S, n) % vocab


def words_of(ranks: np.ndarray) -> list[str]:
    return [f"w{r}" for r in ranks.tolist()]


FAILURES: list[str] = []


def check_exact(got: dict, want: Counter, what: str) -> bool:
    """Compare with Counter; a mismatch is recorded (the run goes on, exit status 1 at the end)."""
    if got == want:
        return True
    missing = sum(1 for k in want if k not in got)
    extra = sum(1 for k in got if k not in want)
    wrong = [got[k] - want[k] for k in want if k in got and got[k] != want[k]]
    net = sum(wrong) - sum(want[k] for k in want if k not in got)
    message = (
        f"{what}: RESULT NOT EXACT ({missing} missing, {extra} extra, {len(wrong)} wrong keys "
        f"of {len(want)}; net count error {net:+d})"
    )
    FAILURES.append(message)
    progress("!!! " + message)
    return False


# --------------------------------------------------------------------------- two senders

SENDER = r"""
import os, pickle, sys
import numpy as np
from inc_spark import host
from inc_spark.host import key_codec, packer
from switch_dataplane import wire
# warm up the compiled paths (numba cache) before the clock starts
k, fits = key_codec.encode_keys(["w1", "w2"])
k, v = packer.combine(k, np.array([1, 1], np.int64), "sum")
packer.pack(k, v, 8, wire.new_header(wire.PacketType.DATA), 0)
stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
ranks, partition, pre_combine = pickle.load(stdin)
pairs = [(f"w{r}", 1) for r in ranks.tolist()]
stdout.write(b"R"); stdout.flush()
ticket = pickle.load(stdin)
result = host.stream_pairs(ticket, pairs, partition=partition, pre_combine=pre_combine)
stdout.write(pickle.dumps(result)); stdout.flush()
"""


def two_senders(switch: str, ranks: np.ndarray, pre_combine: bool) -> tuple[dict, dict, float]:
    """Two processes stream halves into one job; -> (result, metrics, seconds)."""
    halves = [ranks[: len(ranks) // 2], ranks[len(ranks) // 2 :]]
    procs = []
    try:
        for partition, half in enumerate(halves):
            proc = subprocess.Popen(
                [sys.executable, "-c", SENDER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=REPO,
                env={**os.environ, "PYTHONHASHSEED": str(11 + partition)},
            )
            proc.stdin.write(pickle.dumps((half, partition, pre_combine)))
            proc.stdin.flush()
            procs.append(proc)
        for proc in procs:
            if proc.stdout.read(1) != b"R":
                raise RuntimeError("sender process failed before streaming")
        started = time.perf_counter()
        ticket = host.open_job(switch, op="sum", name="bench-2-senders")
        for proc in procs:
            proc.stdin.write(pickle.dumps(ticket))
            proc.stdin.close()
        results = [pickle.loads(proc.stdout.read()) for proc in procs]
        if any(proc.wait(timeout=120) != 0 for proc in procs):
            raise RuntimeError("a sender process failed")
        control = ticket.control()
        try:
            status = control.request("job_status", job_id=ticket.job_id, token=ticket.token)
            drainer = host.CopyDrainer(ticket)
            drainer.take(status["active_copy"])
            status = control.request("job_status", job_id=ticket.job_id, token=ticket.token)
            control.request("close_job", job_id=ticket.job_id, token=ticket.token)
        finally:
            control.close()
        drained = host.StreamResult("sum", keys=drainer.keys, values=drainer.values)
        merged = host.merge_results([*results, drained], "sum")
        seconds = time.perf_counter() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    c = status["counters"]
    metrics = {
        "tuples_in": sum(r.tuples_in for r in results),
        "tuples_sent": sum(r.tuples_sent for r in results),
        "absorbed": c["absorbed"],
        "residual": c["residual"],
        "flushed": c["flushed"],
        "drained_entries": sum(len(v) for v in drainer.values),
        "packets": sum(r.exchange.packets for r in results),
        "switch_packets": c["packets"],
        "retransmissions": sum(r.exchange.retransmissions for r in results),
        "absorbed_share": c["absorbed"] / c["tuples"] if c["tuples"] else 0.0,
        "swaps": status["swaps"],
    }
    return merged, metrics, seconds


# --------------------------------------------------------------------------- part 1


def one_sender(switch: str, pairs: list, pre_combine: bool, **options: Any) -> tuple:
    started = time.perf_counter()
    got = host.aggregate(pairs, switch=switch, pre_combine=pre_combine, **options)
    seconds = time.perf_counter() - started
    assert host.LAST_METRICS is not None
    return got, host.LAST_METRICS.as_dict(), seconds


def throughput(args: argparse.Namespace) -> list[dict]:
    n = args.pairs
    progress(f"part 1: generating {n} Zipf({ZIPF_S}) words over vocab {args.vocab}")
    ranks = zipf_ranks(n, args.vocab, seed=1)
    words = words_of(ranks)
    want = Counter(words)
    pairs = [(w, 1) for w in words]
    rows: list[dict] = []
    with SwitchProcess() as sw:
        progress(f"part 1: switch at {sw.address} (default geometry); warming up")
        host.aggregate([(w, 1) for w in words[:20000]], switch=sw.address)
        host.aggregate([(w, 1) for w in words[:20000]], switch=sw.address, pre_combine=False)
        ticket = host.open_job(sw.address, name="probe")
        control = ticket.control()
        control.request("close_job", job_id=ticket.job_id, token=ticket.token)
        control.close()
        geometry = {"slots": ticket.slots, "columns": ticket.columns}
        cases = [(1, True), (1, False), (2, True), (2, False)]
        for senders, pre in cases:
            plural = "s" if senders > 1 else ""
            name = f"{senders} sender{plural}, pre-combine {'on' if pre else 'off'}"
            times, metrics = [], []
            for rep in range(args.reps):
                if senders == 1:
                    got, m, seconds = one_sender(sw.address, pairs, pre)
                else:
                    got, m, seconds = two_senders(sw.address, ranks, pre)
                exact = check_exact(got, want, name)
                times.append(seconds)
                metrics.append({**m, "exact": exact})
                progress(
                    f"part 1: {name} rep {rep + 1}: {seconds:.2f} s, {n / seconds:,.0f} tuples/s, "
                    f"{'exact' if exact else 'NOT EXACT'}"
                )
            median = statistics.median(times)
            m = metrics[times.index(sorted(times)[len(times) // 2])]
            rows.append(
                {
                    "case": name,
                    "senders": senders,
                    "pre_combine": pre,
                    "pairs": n,
                    "distinct_keys": len(want),
                    "seconds": times,
                    "median_s": median,
                    "tuples_per_s": n / median,
                    "tuples_sent": m["tuples_sent"],
                    "absorbed_share": m["absorbed_share"],
                    "packets": m["packets"],
                    "tuples_per_packet": m["tuples_sent"] / m["packets"] if m["packets"] else 0,
                    "residual": m["residual"],
                    "drained_entries": m["drained_entries"],
                    "retransmissions": m["retransmissions"],
                    "exact": all(x["exact"] for x in metrics),
                    **{f"switch_{k}": v for k, v in geometry.items()},
                }
            )
    return rows


# --------------------------------------------------------------------------- report


def tables(part1: list[dict]) -> str:
    lines = []
    if part1:
        r0 = part1[0]
        lines.append(
            f"End-to-end host.aggregate(): {r0['pairs']:,} Zipf(1.2) words, "
            f"{r0['distinct_keys']:,} distinct; switch {r0['switch_slots']} slots x "
            f"{r0['switch_columns']} columns; median of {len(r0['seconds'])}"
        )
        lines.append("")
        lines.append(
            "| case | median s | tuples/s | tuples sent | absorbed share | packets "
            "| tuples/packet | exact |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---|")
        for r in part1:
            lines.append(
                f"| {r['case']} | {r['median_s']:.2f} | {r['tuples_per_s']:,.0f} | "
                f"{r['tuples_sent']:,} | {r['absorbed_share']:.3f} | {r['packets']:,} | "
                f"{r['tuples_per_packet']:.1f} | {'yes' if r['exact'] else 'NO'} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (< 1 minute)")
    parser.add_argument("--json", metavar="OUT", help="write all figures as JSON")
    parser.add_argument("--pairs", type=int, help="pairs for part 1 (default 2M; quick 300K)")
    parser.add_argument("--vocab", type=int, default=540_000, help="Zipf rank modulus, part 1")
    parser.add_argument("--reps", type=int, help="runs per part-1 case (default 3; quick 1)")
    args = parser.parse_args(argv)
    args.pairs = args.pairs or (300_000 if args.quick else 2_000_000)
    args.reps = args.reps or (1 if args.quick else 3)
    started = time.perf_counter()
    info = machine_load.machine()
    progress(f"machine: {info}")
    part1 = throughput(args)
    print(tables(part1))
    elapsed = time.perf_counter() - started
    progress(f"done in {elapsed:.0f} s")
    if args.json:
        report = {
            "command": " ".join(
                [".venv/bin/python", "bench/host_bench.py", *(argv or sys.argv[1:])]
            ),
            "machine": info,
            "args": vars(args),
            "throughput": part1,
            "elapsed_s": elapsed,
            "failures": FAILURES,
        }
        Path(args.json).write_text(json.dumps(report, indent=2))
    if FAILURES:
        print(f"\nhost-bench: {len(FAILURES)} RESULT(S) NOT EXACT:", file=sys.stderr)
        for message in FAILURES:
            print(f"  {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
