"""Fill numba's compile cache (``NUMBA_CACHE_DIR``) with every kernel a job runs.

``make env`` runs ``python -m inc_spark.compile_cache`` so the first ``make wordcount`` (and
the first switch) load compiled code instead of spending seconds compiling it. It runs, in this
process and without Spark, the paths a word count and a ``reduceByKey`` take: a switch daemon,
the tokenizer and key codec over a small text, a flow to the switch, draining and merging.
"""

from __future__ import annotations

import os
import tempfile
import time

from inc_spark import host
from inc_spark.host.packer import FIRST_CAPACITY
from inc_spark.text.text_source import input_files, plan_splits
from inc_spark.text.text_wordcount import count_split_words, merge_word_counts
from switch_dataplane.daemon import SwitchDaemon
from switch_dataplane.daemon.switch import Switch

SAMPLE_TEXT = "b a b\nc b é 日本語 " + "long" * 10 + "\n"


def warm() -> None:
    """Run each compiled path once (compiling it into the cache if it is not there yet)."""
    daemon = SwitchDaemon(Switch(), port=0)
    daemon.wait_until_compiled()
    daemon.start()
    address = "{}:{}".format(*daemon.address)
    try:
        mixed = [(key, 1) for key in ("a", "é", b"raw", 7, 2**70, (1, "x"), "x" * 40)] * 3
        words = [(f"w{i}é", 1) for i in range(2 * FIRST_CAPACITY)]  # non-ASCII; outgrows a
        for pairs in (mixed, words):  # combiner's first table
            for pre_combine in (True, False):
                host.aggregate(pairs, switch=address, pre_combine=pre_combine)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "sample.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write(SAMPLE_TEXT)
            ticket = host.open_job(address, op="sum", name="compile-cache")
            with host.FlowStream(ticket, 0) as flow:
                for split in plan_splits(input_files(path), 1 << 20):
                    count_split_words(flow, split, batch_tuples=64)
            merge_word_counts([flow.result.combined()])
            control = ticket.control()
            try:
                control.request("close_job", job_id=ticket.job_id, token=ticket.token)
            finally:
                control.close()
    finally:
        daemon.stop()


def main() -> None:
    started = time.monotonic()
    warm()
    where = os.environ.get("NUMBA_CACHE_DIR", "numba's default cache directory")
    print(f"compile cache warm in {where} ({time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
