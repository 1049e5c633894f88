"""The fastest word count: Python workers read their splits, find the words, the switch counts.

No JVM-to-Python hop for the input and no per-word Python: each task reads one byte range of
the input (``text_source``), finds the words in the raw UTF-8 bytes (``tokenizer.next_words``),
encodes them to 16-byte keys in bulk (``key_codec``) and streams them, pre-combined per batch,
on its own flow. Words longer than a slot key are counted on the host with Arrow. The
exactly-once machinery is ``rdd_reduce.run_stage``'s.

>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "t.txt")
>>> _ = open(p, "w").write("b a b\\nc b\\n")
>>> word_count(sc, p).sort_by("word").to_pylist()
[{'word': 'a', 'count': 1}, {'word': 'b', 'count': 3}, {'word': 'c', 'count': 1}]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from inc_spark import host
from inc_spark.host import key_codec
from inc_spark.spark.config import IncConf
from inc_spark.spark.rdd_reduce import record_distinct_keys, run_stage
from inc_spark.text.text_source import (
    MAX_SPLIT_BYTES,
    OPEN_COST_BYTES,
    Split,
    input_files,
    plan_splits,
    read_split,
    split_bytes_for,
)
from inc_spark.text.tokenizer import next_words, utf8_text, word_keys
from inc_spark.text.word_counts import counts_table


def count_split_words(flow: host.FlowStream, split: Split, batch_tuples: int) -> None:
    """Stream the words of one split: fitting words as keys, long words counted on the host.

    Per batch, one compiled pass finds the next words in the raw bytes and another encodes
    them; no string objects are made except for words too long for a slot key.
    """
    data = utf8_text(read_split(split))
    starts, ends = np.empty(batch_tuples + 1, np.int64), np.empty(batch_tuples + 1, np.int64)
    pos = 0
    while True:
        count, pos = next_words(data, pos, starts, ends)
        if not count:
            break
        flow.result.tuples_in += count
        keys, long_words = word_keys(data, starts[:count], ends[:count])
        if long_words is not None:
            for word, times in zip(
                long_words.field("values").to_pylist(),
                long_words.field("counts").to_pylist(),
                strict=True,
            ):
                flow.result.add_host(word, times)
        flow.send(keys, np.ones(len(keys), np.int64))


def _split_streamer(
    ticket: host.JobTicket, conf: IncConf, kept: Any
) -> Callable[[int, Iterable[Split]], Iterator[Any]]:
    from pyspark import TaskContext

    def stream(partition: int, splits: Iterable[Split]) -> Iterator[Any]:
        context = TaskContext.get()
        attempt = context.attemptNumber() if context is not None else 0
        with host.FlowStream(
            ticket, partition, attempt, conf["preCombine"], conf["combineKeys"]
        ) as flow:
            for split in splits:
                count_split_words(flow, split, conf["batchTuples"])
        # One record per partition: residual keys still encoded (numpy pickles them as
        # buffers), plus the long words counted on the host.
        residuals = flow.result.combined()
        kept.add((residuals.kept_tuples, len(residuals.host)))
        yield residuals

    return stream


def word_count(
    sc: Any,
    inputs: str | Sequence[str],
    split_bytes: int | None = None,
    conf: IncConf | None = None,
) -> pa.Table:
    """The (word, count) table of the text files named by ``inputs``: a file, directory or glob,
    or the files :func:`input_files` already listed (so a caller that sized them lists once).

    The input is cut into splits as Spark's file sources cut it (``spark.sql.files.*`` and
    the default parallelism) unless ``split_bytes`` is given; each split is one task. With
    ``spark.inc.noSwitch`` the same tasks run without a switch (the baseline). The residuals
    come straight back to the driver, still encoded, and are merged there with the drained
    aggregators (``merge_word_counts``): no pickled pairs, no shuffle, no Python object per
    word. ``conf`` overrides the context's ``spark.inc.*`` settings.
    """
    conf = conf or IncConf.from_spark(sc.getConf())
    files = input_files(inputs) if isinstance(inputs, str) else list(inputs)
    if split_bytes is None:
        split_bytes = split_bytes_for(
            files,
            sc.defaultParallelism,
            _size_setting(sc, "spark.sql.files.maxPartitionBytes", MAX_SPLIT_BYTES),
            _size_setting(sc, "spark.sql.files.openCostInBytes", OPEN_COST_BYTES),
        )
    splits = plan_splits(files, split_bytes)
    source = sc.parallelize(splits, max(1, len(splits)))
    records, drained, _small = run_stage(
        sc,
        source.getNumPartitions(),
        "sum",
        lambda ticket, kept: source.mapPartitionsWithIndex(_split_streamer(ticket, conf, kept)),
        conf,
        collect=True,
    )
    if records is None:
        raise RuntimeError(f"inc-spark word count gave up: {drained}")
    counts = merge_word_counts([*records, drained])
    record_distinct_keys(counts.num_rows)
    return counts


def merge_word_counts(results: list[host.StreamResult]) -> pa.Table:
    """(word, count) of residuals and drained aggregators: the encoded words are combined in one
    compiled pass and decoded straight into an Arrow column.

    Host-path words that fit a key (none today: only words too long for one take that path)
    are encoded and combined with the rest, so the words left over, never encodable, are
    distinct from every decoded one.
    """
    host_words: Counter[str] = Counter()
    for result in results:
        host_words.update(result.host)
    encoded, fits = key_codec.encode_keys(list(host_words))
    counts = np.fromiter(host_words.values(), np.int64, len(host_words))
    keys, values = host.combine_encoded(
        [*(k for r in results for k in r.keys), encoded[fits]],
        [*(v for r in results for v in r.values), counts[fits]],
        "sum",
    )
    long_words = [w for w, fit in zip(host_words, fits.tolist(), strict=True) if not fit]
    words = pa.concat_arrays(
        [key_codec.decode_str_keys(keys), pa.array(long_words, pa.large_string())]
    )
    return counts_table(words, np.concatenate([values, counts[~fits]]))


def _size_setting(sc: Any, key: str, default: int) -> int:
    """A Spark size setting ("128m", "4194304") in bytes, parsed by Spark's own parser."""
    setting = sc.getConf().get(key)
    if setting is None:
        return default
    return int(sc._jvm.org.apache.spark.network.util.JavaUtils.byteStringAsBytes(setting))
