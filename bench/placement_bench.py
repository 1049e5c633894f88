"""Where the switch's aggregators go: host-bound tuples per distinct key, against the limits.

    .venv/bin/python bench/placement_bench.py --input corpus.txt [--input other.txt ...] \
        [--tasks 2,8,32,64,128] [--json out.json] [--plot out.png]

The word count's traffic through the real dataplane (compiled kernel and control plane, in
this process, no sockets), with the real host code: each of P map tasks takes a contiguous
share of the corpus's words, combines them (``packer.Combiner``: the whole partition, hottest
key first; or, for comparison, batches of 64 K words in first-seen order), packs them
(``packer.pack``) and streams them on its own flow. ``--slots`` tasks run at once, their packets
interleaved one by one, as Spark's task slots would send them; a finished task closes its flow.
At the end both copies are drained. Every run is checked exactly against the corpus's counts.

For each (corpus, P, variant) it reports what reaches hosts: residual + flushed + evicted +
drained tuples, over the distinct keys (the limit is 1.0), next to two references computed
from the tuples the tasks sent:

- ``oracle``: the C hottest keys (C = aggregators of a copy) resident from the start, every
  tuple of the other keys back to a host;
- ``slot bound``: the hottest key of each aggregator resident from the start, every tuple of
  the other keys that hash there back: the best any placement with one place per key can do.

Variants: ``first-come`` (an aggregator is held by the first key to claim it), ``evict`` (a
key hit once, in an earlier phase, may be evicted), ``default`` (evict, and the control plane
swaps copies when stale keys hold most of the active copy's hits; the swapped-out copy is
drained; the switch's defaults), and ``batch`` (the defaults, with tasks that combine 64 K-word
batches instead of their whole partition: the behaviour before the partition combine).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numba
import numpy as np

from inc_spark.host.packer import Combiner, PacketBatch, combine, pack, subspaces
from inc_spark.text.tokenizer import utf8_text, word_keys, word_spans
from switch_dataplane import wire
from switch_dataplane.daemon.switch import DEFAULT_COLUMNS, DEFAULT_ROWS, Switch
from switch_dataplane.key_hash import COLUMN_SEED, column_hash_words

BATCH_WORDS = 65536
VARIANTS = ("first-come", "evict", "default", "batch")
RUN_PACKETS = 256  # packets handed to the switch per call


def progress(message: str) -> None:
    print(f"[placement {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def corpus_keys(path: str) -> np.ndarray:
    """The slot keys of every word of the text that fits a key, in order."""
    data = utf8_text(Path(path).read_bytes())
    keys, _long_words = word_keys(data, *word_spans(data))
    return keys


@numba.njit(cache=True)
def _returned(out: np.ndarray, lengths: np.ndarray, keys: np.ndarray, values: np.ndarray) -> int:
    """Copy every slot of the answers ``out[p, :lengths[p]]`` into keys/values; -> count."""
    n = 0
    for p in range(lengths.shape[0]):
        pos = wire.HEADER_BYTES
        while pos < lengths[p]:
            keys[n] = out[p, pos : pos + 16]
            v = 0
            for b in range(4):
                v = (v << 8) | int(out[p, pos + 16 + b])
            values[n] = v - (1 << 32) if v >= (1 << 31) else v
            n += 1
            pos += wire.SLOT_BYTES
    return n


@numba.njit(cache=True)
def _columns(words: np.ndarray, columns: int) -> np.ndarray:
    out = np.empty(words.shape[0], np.int64)
    for i in range(words.shape[0]):
        h = column_hash_words(words[i, 0], words[i, 1], words[i, 2], words[i, 3], COLUMN_SEED)
        out[i] = h & (columns - 1)
    return out


class LocalSwitch:
    """A switch in this process: control requests and packet runs, answers collected."""

    def __init__(self, rows: int, columns: int) -> None:
        self.switch = Switch(rows=rows, columns=columns)
        self.requests = itertools.count(1)
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        packet = wire.encode_control(
            wire.PacketType.CONTROL_REQUEST, 1, next(self.requests), {"op": op, **fields}
        )
        answer = wire.decode_control(self.switch.handle_control(packet))[1]
        if not answer["ok"]:
            raise RuntimeError(f"{op}: {answer['error']}")
        return answer

    def exchange(self, packets: list[bytes]) -> None:
        """Send packets (one run), keep every returned slot."""
        sizes = np.array([len(p) for p in packets], np.int64)
        offsets = np.zeros(len(packets), np.int64)
        offsets[1:] = np.cumsum(sizes)[:-1]
        buf = np.frombuffer(b"".join(packets), np.uint8)
        out = np.zeros((len(packets), self.switch.max_response), np.uint8)
        out_lengths = np.zeros(len(packets), np.int64)
        self.switch.handle_buffer(buf, offsets, sizes, out, out_lengths)
        slots = int((out_lengths - wire.HEADER_BYTES).clip(0).sum()) // wire.SLOT_BYTES
        keys = np.zeros((slots, wire.KEY_BYTES), np.uint8)
        values = np.zeros(slots, np.int64)
        _returned(out, out_lengths, keys, values)
        self.keys.append(keys)
        self.values.append(values)

    def drain(self, job: dict[str, Any], copy: int) -> int:
        header = wire.new_header(
            wire.PacketType.DRAIN_REQUEST,
            job_id=job["job_id"],
            token=job["token"],
            epoch=job["epoch"],
            copy=copy,
        )
        before = sum(len(v) for v in self.values)
        for start in range(0, job["columns"], RUN_PACKETS):
            packets = []
            for column in range(start, min(job["columns"], start + RUN_PACKETS)):
                header["seq"] = column
                packets.append(wire.encode_header(header))
            self.exchange(packets)
        return sum(len(v) for v in self.values) - before


def task_packets(
    keys: np.ndarray, variant: str, header: np.ndarray, slots: int
) -> tuple[list[bytes], np.ndarray]:
    """The packets one map task sends for its words, and the keys of the tuples they carry."""
    if variant == "batch":
        parts = [
            combine(keys[i : i + BATCH_WORDS], np.ones(len(keys[i : i + BATCH_WORDS]), np.int64),
                    "sum")
            for i in range(0, len(keys), BATCH_WORDS)
        ]  # fmt: skip
    else:
        combiner = Combiner("sum")
        parts = combiner.add(keys, np.ones(len(keys), np.int64))
        parts.append(combiner.take())
    packets: list[bytes] = []
    for part_keys, part_values in parts:
        for i in range(0, len(part_values), BATCH_WORDS):
            batch: PacketBatch = pack(
                part_keys[i : i + BATCH_WORDS], part_values[i : i + BATCH_WORDS], slots, header,
                len(packets),
            )  # fmt: skip
            packets += [batch.packet(p) for p in range(len(batch))]
    return packets, np.concatenate([k for k, _ in parts])


def run(
    keys: np.ndarray, tasks: int, variant: str, args: argparse.Namespace
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """One word count through the switch; -> (ledger, sent keys, sent tuples per key)."""
    switch = LocalSwitch(args.rows, args.columns)
    options = {
        "first-come": {"evict": False, "swap_stale_share": 0.0},
        "evict": {"swap_stale_share": 0.0},
    }.get(variant, {})
    job = switch.call("open_job", agg="sum", lease_s=1e9, **options)
    ident = {"job_id": job["job_id"], "token": job["token"]}
    bounds = np.linspace(0, len(keys), tasks + 1).astype(np.int64)
    pending = list(range(tasks))
    running: list[tuple[int, list[bytes]]] = []  # (flow id, packets left)
    sent: list[np.ndarray] = []
    tuples_sent = 0
    drained_swapped = 0
    while pending or running:
        while pending and len(running) < args.slots:
            task = pending.pop(0)
            flow = switch.call("open_flow", **ident, epoch=job["epoch"], partition=task,
                               attempt=0)["flow_id"]  # fmt: skip
            header = wire.new_header(
                wire.PacketType.DATA, flow_id=flow, epoch=job["epoch"], **ident
            )
            task_keys = keys[bounds[task] : bounds[task + 1]]
            packets, sent_keys = task_packets(task_keys, variant, header, args.rows)
            tuples_sent += len(sent_keys)
            sent.append(sent_keys)
            running.append((flow, packets[::-1]))
        run_packets: list[bytes] = []
        while len(run_packets) < RUN_PACKETS and running:
            for flow, left in list(running):
                if left:
                    run_packets.append(left.pop())
                    continue
                switch.exchange(run_packets)  # the flow's last answers, then it closes
                run_packets = []
                switch.call("close_flow", **ident, flow_id=flow)
                running = [r for r in running if r[0] != flow]
                # The driver's drainer: a copy the control plane swapped out is read and freed.
                for copy, state in enumerate(switch.call("job_status", **ident)["copies"]):
                    if state == "drainable":
                        drained_swapped += switch.drain(job, copy)
                        switch.call("clear_copy", **ident, copy=copy)
        switch.exchange(run_packets)
    status = switch.call("job_status", **ident)
    drained = sum(switch.drain(job, copy) for copy in (0, 1))
    got_keys, got_values = combine(
        np.concatenate(switch.keys), np.concatenate(switch.values), "sum"
    )
    want_keys, want_values = combine(keys, np.ones(len(keys), np.int64), "sum")
    if not _same_counts(got_keys, got_values, want_keys, want_values):
        raise AssertionError(f"P={tasks} {variant}: the counts differ from the corpus")
    c = status["counters"]
    ledger = {
        "tasks": tasks,
        "variant": variant,
        "words": len(keys),
        "distinct": len(want_values),
        "tuples_sent": tuples_sent,
        "residual": c["residual"],
        "flushed": c["flushed"],
        "evicted": c["evicted"],
        "drained": drained + drained_swapped,
        "swaps": status["swaps"],
    }
    ledger["host_bound"] = sum(ledger[k] for k in ("residual", "flushed", "evicted", "drained"))
    sent_keys, sent_counts = combine(
        np.concatenate(sent), np.ones(sum(len(s) for s in sent), np.int64), "sum"
    )
    return ledger, sent_keys, sent_counts


def _same_counts(a_keys: np.ndarray, a_values: np.ndarray, b_keys: np.ndarray,
                 b_values: np.ndarray) -> bool:  # fmt: skip
    if len(a_values) != len(b_values):
        return False
    a = np.lexsort(a_keys.T[::-1])
    b = np.lexsort(b_keys.T[::-1])
    return bool((a_keys[a] == b_keys[b]).all() and (a_values[a] == b_values[b]).all())


def references(
    sent_keys: np.ndarray, sent_counts: np.ndarray, rows: int, columns: int
) -> dict[str, int]:
    """The oracle and the one-place-per-key bound for the tuples the tasks sent."""
    capacity = rows * columns
    by_heat = np.sort(sent_counts)[::-1]
    oracle = min(capacity, len(by_heat)) + int(by_heat[capacity:].sum())
    slot = subspaces(sent_keys, rows) * columns + _columns(sent_keys.view("<u4"), columns)
    order = np.lexsort((-sent_counts, slot))
    first = np.ones(len(order), bool)
    first[1:] = slot[order][1:] != slot[order][:-1]
    bound = int(first.sum() + sent_counts[order][~first].sum())
    return {"oracle": oracle, "slot_bound": bound}


def markdown_table(results: list[dict[str, Any]]) -> str:
    """Host-bound tuples per distinct key for each corpus and P: every variant, the references."""
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in results)]
    head = ["corpus", "P", "distinct", "sent", *variants, "slot bound", "oracle"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = sorted({(r["corpus"], r["tasks"]) for r in results})
    for corpus, tasks in keys:
        rows = {r["variant"]: r for r in results if (r["corpus"], r["tasks"]) == (corpus, tasks)}
        ref = rows.get("default") or next(iter(rows.values()))
        d = ref["distinct"]
        cells = [corpus, str(tasks), f"{d:,}", f"{ref['tuples_sent'] / d:.2f}"]
        cells += [f"{rows[v]['host_bound'] / d:.2f}" if v in rows else "" for v in variants]
        cells += [f"{ref['slot_bound'] / d:.2f}", f"{ref['oracle'] / d:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = sorted({r["corpus"] for r in results})
    fig, axes = plt.subplots(1, len(corpora), figsize=(6 * len(corpora), 4.5), squeeze=False)
    for ax, corpus in zip(axes[0], corpora, strict=True):
        rows = [r for r in results if r["corpus"] == corpus]
        for variant in VARIANTS:
            points = sorted((r["tasks"], r["host_bound"] / r["distinct"]) for r in rows
                            if r["variant"] == variant)  # fmt: skip
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=variant)
        references = (
            ("tuples_sent", "-.", "sent = Spark's shuffle records"),
            ("slot_bound", "--", "slot bound"),
            ("oracle", ":", "oracle"),
        )
        for ref, style, label in references:
            points = sorted({(r["tasks"], r[ref] / r["distinct"]) for r in rows
                             if r["variant"] == "default"})  # fmt: skip
            if points:
                ax.plot(*zip(*points, strict=True), "k" + style, label=label)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_yticks([1, 1.25, 1.5, 2, 3, 4, 6], ["1", "1.25", "1.5", "2", "3", "4", "6"])
        ax.minorticks_off()
        ax.set_xlabel("map tasks P")
        ax.set_ylabel("host-bound tuples / distinct keys")
        ax.set_title(corpus, fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", action="append", help="text corpus (repeat)")
    parser.add_argument(
        "--report",
        metavar="JSON",
        help="print the Markdown table (and draw --plot) of a results file",
    )
    parser.add_argument("--tasks", default="2,8,32,64,128", help="map task counts P")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--slots", type=int, default=2, help="tasks running at once")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--columns", type=int, default=DEFAULT_COLUMNS)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a PNG plot here")
    args = parser.parse_args(argv)
    if args.report:
        results = json.loads(Path(args.report).read_text())["results"]
        print(markdown_table(results))
        if args.plot:
            plot(results, args.plot)
        return 0
    if not args.input:
        parser.error("--input is required (or --replot)")
    tasks = [int(t) for t in args.tasks.split(",")]
    variants = args.variants.split(",")
    results = []
    for path in args.input:
        progress(f"tokenising {path}")
        keys = corpus_keys(path)
        for p in tasks:
            for variant in variants:
                started = time.perf_counter()
                ledger, sent_keys, sent_counts = run(keys, p, variant, args)
                ledger.update(references(sent_keys, sent_counts, args.rows, args.columns))
                ledger["corpus"] = Path(path).name
                results.append(ledger)
                d = ledger["distinct"]
                progress(
                    f"{Path(path).name} P={p:<3} {variant:<10} host-bound "
                    f"{ledger['host_bound'] / d:.3f}x distinct (oracle {ledger['oracle'] / d:.3f},"
                    f" slot bound {ledger['slot_bound'] / d:.3f}), sent "
                    f"{ledger['tuples_sent'] / d:.2f}x, exact, "
                    f"{time.perf_counter() - started:.1f} s"
                )
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "rows": args.rows,
        "columns": args.columns,
        "slots": args.slots,
        "results": results,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
