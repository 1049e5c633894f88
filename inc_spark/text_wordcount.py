"""The fastest word count: Python workers read their splits, Arrow tokenises, the switch counts.

No JVM-to-Python hop for the input and no per-word Python: each task reads one byte range of
the input (``text_source``), decodes it once, splits it into words with Arrow
(``tokenizer.words``), encodes the words to 16-byte keys in bulk (``key_codec``) and streams
them, pre-combined per batch, on its own flow. Words longer than a slot key are counted on the
host with Arrow. The exactly-once machinery is ``rdd_reduce.run_stage``'s.

>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "t.txt")
>>> _ = open(p, "w").write("b a b\\nc b\\n")
>>> sorted(word_count(sc, p).items())
[('a', 1), ('b', 3), ('c', 1)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from inc_spark import host, key_codec
from inc_spark.config import IncConf
from inc_spark.rdd_reduce import run_stage
from inc_spark.text_source import DEFAULT_SPLIT_BYTES, Split, plan_splits, read_split
from inc_spark.tokenizer import decode_utf8, words


def count_split_words(flow: host.FlowStream, split: Split, batch_tuples: int) -> None:
    """Stream the words of one split: fitting words as keys, long words counted on the host."""
    text = pa.array([decode_utf8(read_split(split))], pa.large_string())
    all_words = words(text)
    flow.result.tuples_in += len(all_words)
    for start in range(0, len(all_words), batch_tuples):
        batch = all_words.slice(start, batch_tuples)
        keys, fits = key_codec.encode_arrow_strings(batch)
        if not fits.all():
            long_words = pc.value_counts(pc.filter(batch, pa.array(~fits)))
            for word, count in zip(
                long_words.field("values").to_pylist(),
                long_words.field("counts").to_pylist(),
                strict=True,
            ):
                flow.result.add_host(word, count)
        flow.send(keys[fits], np.ones(int(fits.sum()), np.int64))


def _split_streamer(
    ticket: host.JobTicket, conf: IncConf
) -> Callable[[int, Iterable[Split]], Iterator[Any]]:
    from pyspark import TaskContext

    def stream(partition: int, splits: Iterable[Split]) -> Iterator[Any]:
        context = TaskContext.get()
        attempt = context.attemptNumber() if context is not None else 0
        with host.FlowStream(ticket, partition, attempt, conf["preCombine"]) as flow:
            for split in splits:
                count_split_words(flow, split, conf["batchTuples"])
        # One record per partition: residual keys still encoded (numpy pickles them as
        # buffers), plus the long words counted on the host.
        keys, values = host.combine_encoded(flow.result.keys, flow.result.values, "sum")
        yield keys, values, flow.result.host

    return stream


def word_count(sc: Any, inputs: str, split_bytes: int = DEFAULT_SPLIT_BYTES) -> dict[str, int]:
    """{word: count} for the text files named by ``inputs`` (file, directory or glob).

    The residuals come straight back to the driver, still encoded, and are merged there with
    the drained aggregators in one compiled pass: no pickled pairs, no shuffle.
    """
    conf = IncConf.from_spark(sc.getConf())
    splits = plan_splits(inputs, split_bytes)
    source = sc.parallelize(splits, max(1, len(splits)))
    records, drained = run_stage(
        sc,
        source.getNumPartitions(),
        "sum",
        lambda ticket: source.mapPartitionsWithIndex(_split_streamer(ticket, conf)),
        conf,
        collect=True,
    )
    if records is None:
        raise RuntimeError(f"inc-spark word count gave up: {drained}")
    keys, values = host.combine_encoded(
        [r[0] for r in records] + drained.keys, [r[1] for r in records] + drained.values, "sum"
    )
    counts = dict(zip(key_codec.decode_keys(keys), values.tolist(), strict=True))
    for _keys, _values, long_words in records:
        for word, count in long_words.items():
            counts[word] = counts.get(word, 0) + count
    return counts
