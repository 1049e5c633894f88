"""Every word-count mode gives exactly the counts of Python's str.split() on the decoded text."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inc_spark.text.text_source import input_files
from jobs.wordcount import MODES, count_words, counts_of
from tests.test_host import REPO

TRICKY = (
    "plain words here\n"
    "\ufeffbom-start and\u00a0nbsp\u2003em\u3000ideographic\n"
    "file\x1cgroup\x1drecord\x1eunit\x1fsep next\x85line\n"
    "tabs\tand\x0bvertical\x0cform\r\ncrlf\n"
    "日本語 тест ελληνικά café naïve ß\n"
    "a-very-long-word-that-cannot-fit-in-a-switch-key and-another-one-just-as-long\n"
    "   leading and trailing   \n\n\n"
)
TRICKY_BYTES = (
    TRICKY.encode() + b"bad\xff\xfe bytes \xe2\x82 trunc \xc0\x80 overlong \xed\xa0\x80 sur\n"
)


def expected_counts(data: bytes) -> dict[str, int]:
    """Python's str.split() over the text of one file as Spark's readers see it: decoded as the
    JVM decodes (checked by test_decoding_matches_the_jvm), a BOM at the file start dropped."""
    from inc_spark.text.tokenizer import decode_utf8

    data = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    return dict(Counter(decode_utf8(data).split()))


def run_mode(spark_context: Any, mode: str, path: str, tasks: int | None = None) -> dict[str, int]:
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    table = counts_of(count_words(spark, mode, input_files(path), tasks))
    words = table.column("word").to_pylist()
    assert len(words) == len(set(words)), "a word appears twice in the output"
    return dict(zip(words, table.column("count").to_pylist(), strict=True))


@pytest.mark.parametrize("mode", MODES)
def test_modes_agree_on_tricky_text(spark_context: Any, tmp_path: Any, mode: str) -> None:
    path = tmp_path / "tricky.txt"
    data = b"\xef\xbb\xbf" + TRICKY_BYTES * 50  # a BOM at the file start, and inside lines
    path.write_bytes(data)
    assert run_mode(spark_context, mode, str(path)) == expected_counts(data)


text_pieces = st.lists(
    st.one_of(
        st.sampled_from(["a", "b", "é", "日本", "x" * 20, "\ufeff", "\u00a0", " ", "\n", "\x1c"]),
        st.binary(max_size=3),
        st.text(max_size=5).map(lambda s: s.encode("utf-8", "surrogatepass")),
    ),
    max_size=60,
).map(lambda parts: b"".join(p if isinstance(p, bytes) else p.encode() for p in parts))


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=text_pieces)
def test_inc_mode_matches_python_on_random_bytes(
    spark_context: Any, tmp_path: Any, data: bytes
) -> None:
    path = tmp_path / "random.txt"
    path.write_bytes(data)
    assert run_mode(spark_context, "inc", str(path)) == expected_counts(data)
    assert run_mode(spark_context, "inc-rdd", str(path)) == expected_counts(data)


@pytest.mark.parametrize("tasks", [1, 5])
def test_every_mode_over_p_tasks_and_the_ledger_adds_up(
    spark_context: Any, tmp_path: Any, tasks: int
) -> None:
    """Each task sends each of its words once (its whole split combined), the switch's ledger
    adds up, and the no-switch baseline keeps exactly what the tasks combined."""
    import inc_spark
    from inc_spark.text.text_source import plan_splits, read_split
    from switch_dataplane import wire

    rng = np.random.default_rng(tasks)
    words = [f"w{r}" for r in rng.zipf(1.3, 20_000) % 3000] + ["y" * 20] * 3  # one long word
    path = tmp_path / "zipf.txt"
    path.write_text("\n".join(" ".join(words[i : i + 9]) for i in range(0, len(words), 9)))
    expected = dict(Counter(words))
    for mode in MODES:
        assert run_mode(spark_context, mode, str(path), tasks) == expected, mode
    splits = plan_splits([str(path)], -(-path.stat().st_size // tasks))
    per_task = [set(read_split(s).split()) for s in splits]
    fitting = sum(len([w for w in ws if len(w) < 16]) for ws in per_task)
    m = inc_spark.last_metrics()  # the last mode: local, no switch
    assert (m.tuples_sent, m.bytes_to_switch, m.host_bound) == (0, 0, 0)
    assert m.host_path == sum(map(len, per_task)) and m.distinct_keys == len(expected)
    run_mode(spark_context, "inc", str(path), tasks)
    m = inc_spark.last_metrics()
    assert m.tuples_sent == fitting  # Spark's map-side combine writes as many (and the long one)
    assert m.host_path == sum(len(ws) for ws in per_task) - fitting
    assert m.host_bound == m.residual + m.flushed + m.evicted + m.drained_entries
    assert len(expected) - 1 <= m.host_bound <= m.tuples_sent  # at least one a key, the limit
    assert m.absorbed + m.residual == m.tuples_sent and m.distinct_keys == len(expected)
    assert m.bytes_to_switch >= m.packets * wire.HEADER_BYTES + m.tuples_sent * wire.SLOT_BYTES
    assert m.bytes_to_hosts >= m.ack_bytes + m.host_bound * wire.SLOT_BYTES


def test_directory_input_and_empty_files(spark_context: Any, tmp_path: Any) -> None:
    (tmp_path / "one.txt").write_text("x y x\n")
    (tmp_path / "two.txt").write_text("y z\n")
    (tmp_path / "empty.txt").write_text("")
    for mode in ("inc", "rdd"):
        assert run_mode(spark_context, mode, str(tmp_path)) == {"x": 2, "y": 2, "z": 1}


def test_cli_output_file_top_and_errors(tmp_path: Any) -> None:
    path = tmp_path / "in.txt"
    path.write_text("b a b c b a\n")
    out = tmp_path / "out.tsv"
    run = subprocess.run(
        [
            sys.executable,
            "jobs/wordcount.py",
            str(path),
            "--output",
            str(out),
            "--top",
            "2",
            "--master",
            "local[2]",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        # As a user runs it: local workers must get this interpreter without being told.
        env={k: v for k, v in os.environ.items() if k != "PYSPARK_PYTHON"},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert out.read_text(encoding="utf-8") == "a\t2\nb\t3\nc\t1\n"
    assert [line.split()[0] for line in run.stdout.splitlines()[:2]] == ["b", "a"]
    assert "INC: 3 tuples to the switch" in run.stdout and "per distinct key" in run.stdout
    missing = subprocess.run(
        [sys.executable, "jobs/wordcount.py", str(tmp_path / "nope.txt")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert missing.returncode == 2 and "matches no files" not in missing.stderr
    assert "does not exist" in missing.stderr


def test_spark_submit_as_the_readme_shows(tmp_path: Any) -> None:
    """``source .venv/bin/activate; spark-submit jobs/wordcount.py ...``: the driver then
    hashes as the workers do, so inc-rdd's driver places the merged pairs itself."""
    rng = random.Random(5)
    words = [f"w{rng.randrange(3000)}" for _ in range(60_000)] + ["日本", "x" * 40]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(" ".join(words[i : i + 12]) for i in range(0, len(words), 12)))
    out = tmp_path / "out.tsv"
    activated = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_HOME", "PYTHONHASHSEED")
    }
    activated["PATH"] = os.path.dirname(sys.executable) + os.pathsep + activated["PATH"]
    run = subprocess.run(
        ["spark-submit", "jobs/wordcount.py", str(path), "--mode", "inc-rdd", "--quiet"]
        + ["--output", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env=activated,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    expected = "".join(f"{w}\t{n}\n" for w, n in sorted(Counter(words).items()))
    assert out.read_text(encoding="utf-8") == expected


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.lists(
        st.one_of(
            st.binary(max_size=6),
            st.sampled_from(
                [b"\xed\xa0\x80", b"\xe0\x80", b"\xf0\x90", b"\xf4\x90\x80\x80", b"\xc2"]
            ),
            st.text(max_size=3).map(str.encode),
        ),
        max_size=8,
    ).map(b"".join)
)
def test_decoding_matches_the_jvm(spark_context: Any, data: bytes) -> None:
    from inc_spark.text.tokenizer import decode_utf8

    jvm = spark_context._jvm
    assert decode_utf8(data) == jvm.java.lang.String(bytearray(data), "UTF-8")


def test_whitespace_is_exactly_what_python_and_arrow_split_on() -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from inc_spark.text.tokenizer import WHITESPACE

    assert "".join(c for c in map(chr, range(0x110000)) if c.isspace()) == WHITESPACE
    every_char = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    pieces = pc.utf8_split_whitespace(pa.array(["x" + c + "x" for c in every_char]))
    split = np.flatnonzero(pc.list_value_length(pieces).to_numpy() == 2)
    assert "".join(every_char[i] for i in split) == WHITESPACE


unicode_text = st.text(
    alphabet=st.one_of(
        st.sampled_from([c for c in map(chr, range(0x3001)) if c.isspace()]),
        st.sampled_from(list("ab\u200b\u180e\ufeff\u2060é日\U0001f600")),
        st.characters(exclude_categories=("Cs",)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(text=unicode_text)
def test_word_spans_split_like_python(text: str) -> None:
    from inc_spark.host import key_codec
    from inc_spark.text.tokenizer import span_strings, utf8_text, word_spans

    data = utf8_text(text.encode())
    starts, ends = word_spans(data)
    assert span_strings(data, starts, ends).to_pylist() == text.split()
    keys, too_long = key_codec.encode_utf8_spans(data, starts, ends)
    expected = [key_codec.encode_key(word) for word in text.split()]
    assert [k.tobytes() for k in keys] == [k for k in expected if k is not None]
    assert too_long.tolist() == [i for i, k in enumerate(expected) if k is None]


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(unicode_text, max_size=6))
def test_line_word_spans_never_cross_a_line_end(lines: list[str]) -> None:
    import numpy as np

    from inc_spark.text.tokenizer import line_word_spans, span_strings

    encoded = [line.encode() for line in lines]
    data = np.frombuffer(b"".join(encoded), np.uint8)
    offsets = np.cumsum([0] + [len(e) for e in encoded])
    starts, ends = line_word_spans(data, offsets)
    assert span_strings(data, starts, ends).to_pylist() == [w for ln in lines for w in ln.split()]


@settings(max_examples=200, deadline=None)
@given(text=unicode_text, cap=st.integers(1, 5))
def test_next_words_in_small_chunks_finds_every_word(text: str, cap: int) -> None:
    import numpy as np

    from inc_spark.text.tokenizer import next_words, span_strings, utf8_text

    data = utf8_text(text.encode())
    starts, ends = np.empty(cap + 1, np.int64), np.empty(cap + 1, np.int64)
    found, pos = [], 0
    while (step := next_words(data, pos, starts, ends))[0]:
        count, pos = step
        assert count <= cap
        found += span_strings(data, starts[:count], ends[:count]).to_pylist()
    assert found == text.split()


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=40))
def test_invalid_utf8_is_replaced_before_splitting(data: bytes) -> None:
    from inc_spark.text.tokenizer import decode_utf8, span_strings, utf8_text, word_spans

    text = utf8_text(data)
    assert span_strings(text, *word_spans(text)).to_pylist() == decode_utf8(data).split()


def test_splits_are_sized_as_spark_file_sources_size_them(tmp_path: Any) -> None:
    from inc_spark.text.text_source import (
        OPEN_COST_BYTES,
        plan_splits,
        read_split,
        split_bytes_for,
    )

    path = tmp_path / "ten.txt"
    path.write_bytes(b"word " * (2 << 20))  # 10 MiB, one line
    files = [str(path)]
    assert split_bytes_for(files, parallelism=2) == (10 << 20) // 2 + OPEN_COST_BYTES // 2
    assert split_bytes_for(files, parallelism=100) == OPEN_COST_BYTES
    assert split_bytes_for(files, parallelism=1, max_bytes=1 << 20) == 1 << 20
    path.write_bytes(b"word word\n" * (1 << 20))  # 10 MiB of short lines
    splits = plan_splits(files, split_bytes_for(files, parallelism=2))
    assert len(splits) == 2
    assert b"".join(read_split(s) for s in splits) == path.read_bytes()


word_counts = st.dictionaries(
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=6),
    st.integers(1, 2**63 - 1),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(counts=word_counts, rows=st.integers(1, 7), n=st.integers(0, 70))
def test_output_file_and_top_words_match_python(
    counts: dict[str, int], rows: int, n: int, tmp_path_factory: Any
) -> None:
    """Arrow's sort and formatting give exactly ``sorted()`` and an f-string per line, whatever
    the slice of rows formatted at a time; the top words are by count, ties by word."""
    from unittest import mock

    from inc_spark.text import word_counts
    from inc_spark.text.word_counts import counts_table, top_words, total_words, write_sorted

    table = counts_table(list(counts), list(counts.values()))
    path = tmp_path_factory.mktemp("out") / "counts.tsv"
    with mock.patch.object(word_counts, "WRITE_ROWS", rows):
        write_sorted(table, str(path))
    expected = "".join(f"{w}\t{c}\n" for w, c in sorted(counts.items()))
    assert path.read_bytes() == expected.encode()
    by_count = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))
    assert top_words(table, n) == by_count[:n]
    assert total_words(table) == sum(counts.values())


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(
        st.tuples(
            st.dictionaries(st.sampled_from(["a", "é", "x" * 16, "y" * 40]), st.integers(1, 9)),
            st.lists(st.sampled_from(["a", "bb", "é", "日本"]), max_size=8),
        ),
        max_size=4,
    )
)
def test_merge_word_counts_equals_a_counter(parts: list[tuple[dict[str, int], list[str]]]) -> None:
    """Host-path words, long or not, and encoded residual words merge into one row per word."""
    import numpy as np

    from inc_spark.host import StreamResult, key_codec
    from inc_spark.text.text_wordcount import merge_word_counts

    results, expected = [], Counter()
    for host_words, encoded_words in parts:
        result = StreamResult("sum", host=dict(host_words))
        if encoded_words:
            result.add_encoded(
                key_codec.encode_keys(encoded_words)[0], np.ones(len(encoded_words), np.int64)
            )
        results.append(result)
        expected.update(host_words)
        expected.update(encoded_words)
    table = merge_word_counts(results)
    words = table.column("word").to_pylist()
    assert sorted(words) == sorted(set(words))
    assert dict(zip(words, table.column("count").to_pylist(), strict=True)) == expected
