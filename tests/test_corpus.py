"""bench/corpus.py: the synthetic Zipf corpora of the benchmarks."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench.corpus import (
    CorpusSpec,
    build_vocabulary,
    generate,
    main,
    parse_spec,
    sample_ranks,
    zipf_cdf,
)

# Small vocabularies keep the tests fast; the shares are tested with enough entries to be stable.
SMALL = CorpusSpec(size_mb=0.2, vocabulary=20_000, seed=3)


def _make(tmp_path: Path, spec: CorpusSpec, name: str = "c.txt") -> tuple[bytes, dict]:
    path = tmp_path / name
    stats = generate(spec, path, progress=False)
    return path.read_bytes(), stats


def _words(data: bytes) -> list[str]:
    return data.decode("utf-8").split()


def test_deterministic_for_a_seed_and_different_for_another(tmp_path):
    a, stats_a = _make(tmp_path, SMALL, "a.txt")
    b, stats_b = _make(tmp_path, SMALL, "b.txt")
    c, _ = _make(tmp_path, dataclasses.replace(SMALL, seed=4), "c.txt")
    assert a == b
    assert {k: v for k, v in stats_a.items() if k not in ("seconds", "path")} == {
        k: v for k, v in stats_b.items() if k not in ("seconds", "path")
    }
    assert a != c
    assert Counter(_words(a)).most_common(1) != Counter(_words(c)).most_common(1)


def test_size_and_stats(tmp_path):
    data, stats = _make(tmp_path, SMALL)
    target = SMALL.target_bytes
    assert target <= len(data) <= target * 1.02  # stops at the first line end after the target
    assert data.endswith(b"\n")
    # ... and not one line later than needed
    last_line = data[:-1].rsplit(b"\n", 1)[-1]
    assert len(data) - len(last_line) - 1 < target
    lines = data.decode("utf-8").split("\n")[:-1]
    words = _words(data)
    assert stats["bytes"] == len(data)
    assert stats["lines"] == len(lines)
    assert stats["words"] == len(words)
    assert stats["distinct"] == len(set(words))
    assert all(len(line.split(" ")) == SMALL.line_words for line in lines)


@pytest.mark.parametrize("size_mb", [0.05, 0.5])
def test_size_within_a_few_percent(tmp_path, size_mb):
    data, _ = _make(tmp_path, dataclasses.replace(SMALL, size_mb=size_mb, line_words=5))
    assert size_mb * 1e6 <= len(data) <= size_mb * 1e6 * 1.03


def test_utf8_and_no_whitespace_inside_words(tmp_path):
    spec = dataclasses.replace(SMALL, non_ascii_share=0.5, long_share=0.2)
    data, _ = _make(tmp_path, spec)
    text = data.decode("utf-8")  # strict: raises on invalid UTF-8
    assert not text.isascii()
    for line in text.split("\n")[:-1]:
        by_space = line.split(" ")
        assert by_space == line.split()  # no word holds a char for which str.isspace() is true
        assert all(by_space)
    assert len(text.splitlines()) == text.count("\n")  # no other line breaks (\x85, \u2028...)


def test_vocabulary_properties():
    spec = CorpusSpec(vocabulary=30_000, long_share=0.1, non_ascii_share=0.2, seed=9)
    words, lengths, is_long, is_non_ascii = build_vocabulary(spec)
    assert len(words) == spec.vocabulary
    assert len(set(words.tolist())) == spec.vocabulary
    text = [w.decode("utf-8") for w in words.tolist()]
    nbytes = np.array([len(w.encode("utf-8")) for w in text])
    assert (nbytes == lengths).all()
    assert is_long.sum() == 3_000 and is_non_ascii.sum() == 6_000
    assert ((nbytes > 15) == is_long).all()
    assert nbytes[is_long].min() >= 16 and nbytes[is_long].max() <= 40
    assert nbytes[~is_long].min() >= 1
    assert all((not w.isascii()) == flag for w, flag in zip(text, is_non_ascii, strict=True))
    assert all(w.isalpha() for w in text)
    # Lengths scatter around mean_length (short lengths saturate, so a bit above it).
    plain = ~is_long & ~is_non_ascii
    assert 5.5 < lengths[plain].mean() < 7.5
    assert lengths[plain].min() == 1 and lengths[plain].max() >= 12
    # Several scripts among the non-ASCII words, including 3- and 4-byte characters.
    joined = "".join(w for w, f in zip(text, is_non_ascii, strict=True) if f)
    assert any("\u0430" <= ch <= "\u044f" for ch in joined)  # Cyrillic
    assert any("\u4e00" <= ch <= "\u9fff" for ch in joined)  # CJK
    assert any(ord(ch) >= 0x10000 for ch in joined)  # 4-byte UTF-8
    assert any(ch in "éèüöäßñø" for ch in joined)  # Latin with accents


def test_vocabulary_degenerate_lengths_still_distinct():
    spec = CorpusSpec(vocabulary=3_000, mean_length=1, long_share=0, non_ascii_share=0)
    words, lengths, _, _ = build_vocabulary(spec)
    assert len(set(words.tolist())) == 3_000
    assert lengths.min() == 1


@pytest.mark.parametrize(("long_share", "non_ascii_share"), [(0.02, 0.05), (0.1, 0.25)])
def test_long_and_non_ascii_shares_among_distinct_words(tmp_path, long_share, non_ascii_share):
    spec = dataclasses.replace(
        SMALL, size_mb=0.5, long_share=long_share, non_ascii_share=non_ascii_share
    )
    data, stats = _make(tmp_path, spec)
    distinct = set(_words(data))
    long = sum(len(w.encode("utf-8")) > 15 for w in distinct) / len(distinct)
    non_ascii = sum(not w.isascii() for w in distinct) / len(distinct)
    assert long == pytest.approx(long_share, rel=0.35)
    assert non_ascii == pytest.approx(non_ascii_share, rel=0.35)
    assert stats["long_distinct"] == round(long * len(distinct))
    assert stats["non_ascii_distinct"] == round(non_ascii * len(distinct))


def test_plain_top_words(tmp_path):
    data, stats = _make(tmp_path, dataclasses.replace(SMALL, long_share=0.3, non_ascii_share=0.3))
    top = [w for w, _ in Counter(_words(data)).most_common(5)]
    assert all(w.isascii() and len(w) <= 15 for w in top)
    assert top[0] == stats["top_word"]


@pytest.mark.parametrize("exponent", [0.8, 1.2, 1.5])
def test_rank_frequency_follows_zipf(tmp_path, exponent):
    spec = dataclasses.replace(SMALL, size_mb=0.5, zipf=exponent, seed=11)
    data, _ = _make(tmp_path, spec)
    freq = [n for _, n in Counter(_words(data)).most_common(20)]
    assert freq[0] / freq[9] == pytest.approx(10**exponent, rel=0.3)
    # Least-squares slope of log f against log r over the top 20 ranks is about -s.
    slope = np.polyfit(np.log(np.arange(1, 21)), np.log(freq), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.15)


def test_sampler_is_the_finite_zipf_law():
    """Inverse CDF over ranks 1..V: right probabilities up to the last rank, nothing beyond."""
    v, s, n = 50, 1.0, 400_000
    ranks = sample_ranks(np.random.default_rng(0), zipf_cdf(v, s), n)
    assert ranks.min() == 0 and ranks.max() == v - 1
    counts = np.bincount(ranks, minlength=v)
    expected = n * (np.arange(1, v + 1) ** -s) / np.sum(np.arange(1, v + 1) ** -s)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))  # 5 sigma
    # uniform (s = 0) over a tiny vocabulary: every word appears in the corpus
    uniform = sample_ranks(np.random.default_rng(1), zipf_cdf(7, 0.0), 7_000)
    assert set(np.unique(uniform)) == set(range(7))


def test_corpus_words_come_from_the_vocabulary(tmp_path):
    spec = dataclasses.replace(SMALL, vocabulary=300, zipf=0.5)
    data, stats = _make(tmp_path, spec)
    words = build_vocabulary(spec)[0]
    vocab = {w.decode("utf-8") for w in words.tolist()}
    seen = set(_words(data))
    assert seen <= vocab
    assert len(seen) == stats["distinct"] == 300  # a flat law shows the whole vocabulary


def test_drift_changes_the_top_word(tmp_path):
    def top(part: bytes) -> str:
        return Counter(_words(part)).most_common(1)[0][0]

    third = SMALL.target_bytes // 3
    still, _ = _make(tmp_path, SMALL, "still.txt")
    assert top(still[:third].rsplit(b"\n", 1)[0]) == top(still[-third:].split(b"\n", 1)[1])

    data, stats = _make(tmp_path, dataclasses.replace(SMALL, drift=1), "drift.txt")
    assert stats["phases"] == 2
    first, last = data[:third].rsplit(b"\n", 1)[0], data[-third:].split(b"\n", 1)[1]
    assert top(first) != top(last)
    assert top(first) == stats["top_word"]

    data, stats = _make(tmp_path, dataclasses.replace(SMALL, size_mb=0.4, drift=3), "d3.txt")
    quarter = len(data) // 4
    parts = [data[i * quarter : (i + 1) * quarter] for i in range(4)]
    tops = [top(p.split(b"\n", 1)[1].rsplit(b"\n", 1)[0]) for p in parts]
    assert len(set(tops)) == 4


def test_smaller_corpus_is_a_prefix_without_drift(tmp_path):
    small, _ = _make(tmp_path, dataclasses.replace(SMALL, size_mb=0.1), "s.txt")
    big, _ = _make(tmp_path, dataclasses.replace(SMALL, size_mb=0.3), "b.txt")
    assert big.startswith(small)


def test_parse_spec():
    spec = parse_spec("zipf=1.1, vocab=540_000 ,MB=20,seed=7,long-share=0.1,non_ascii=0.2")
    assert spec == CorpusSpec(
        zipf=1.1, vocabulary=540_000, size_mb=20, seed=7, long_share=0.1, non_ascii_share=0.2
    )
    assert parse_spec("drift=3;line=8;mean_length=5;plain=0") == CorpusSpec(
        drift=3, line_words=8, mean_length=5, plain_top=0
    )
    assert parse_spec("") == CorpusSpec()
    assert parse_spec("seed=2", base=SMALL) == dataclasses.replace(SMALL, seed=2)
    for spec in (CorpusSpec(), SMALL, CorpusSpec(size_mb=0.25, zipf=0.9, drift=2)):
        assert parse_spec(spec.to_spec()) == spec
    for bad in ("zipf", "colour=red", "vocab=1.5", "seed=x", "zipf=-1", "long=2", "mb=0"):
        with pytest.raises(ValueError):
            parse_spec(bad)


def test_reference_defaults():
    spec = CorpusSpec()
    assert (spec.size_mb, spec.zipf, spec.target_bytes) == (200, 1.2, 200_000_000)
    # Expected distinct words among the reference corpus's 24.3 M draws: about 540 K.
    cdf = zipf_cdf(spec.vocabulary, spec.zipf)
    p = np.diff(cdf, prepend=0.0) / cdf[-1]
    assert 520_000 < np.sum(-np.expm1(-24.3e6 * p)) < 560_000


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli.txt"
    assert (
        main(
            [
                str(out),
                "--spec",
                "mb=0.3,vocab=5000,seed=5",
                "--size-mb",
                "0.1",
                "--drift",
                "1",
                "--zipf",
                "1.0",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    stats = json.loads(captured.out)
    assert stats["bytes"] == out.stat().st_size >= 100_000
    assert stats["phases"] == 2 and stats["vocabulary"] == 5000
    assert parse_spec(stats["spec"]) == CorpusSpec(
        size_mb=0.1, vocabulary=5000, seed=5, drift=1, zipf=1.0
    )
    assert "corpus: " in captured.err and "phase 2/2" in captured.err
    assert main([str(out), "--quiet", "--spec", "mb=0.01,vocab=100"]) == 0
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit):
        main([str(out), "--spec", "bogus=1"])


def test_progress_every_tenth(tmp_path, capsys):
    generate(dataclasses.replace(SMALL, size_mb=3), tmp_path / "p.txt", progress=True)
    err = capsys.readouterr().err
    assert 8 <= err.count(" MB, ") <= 10
    assert "done:" in err
