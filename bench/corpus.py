"""Synthetic text corpora for the word-count benchmarks.

    .venv/bin/python bench/corpus.py OUT.txt                       # the reference corpus (200 MB)
    .venv/bin/python bench/corpus.py OUT.txt --size-mb 20 --zipf 1.1 --drift 3 --seed 7
    .venv/bin/python bench/corpus.py OUT.txt --spec zipf=1.2,vocab=540000,mb=200,seed=1

A corpus is lines of ``line_words`` words separated by single spaces (``b" "``, one ``b"\\n"`` per
line), UTF-8.  Words are drawn independently from a Zipf law over a *finite* vocabulary of
``vocabulary`` words: rank ``r`` (1..V) has probability ``r**-zipf / H`` (inverse CDF with
``np.searchsorted``; no unbounded ``np.random.zipf`` folding, which distorts the tail).

Vocabulary (deterministic from the seed): word lengths in characters are drawn as
``1 + Poisson(mean_length - 1)`` (there are only 26 one-letter and 676 two-letter ASCII words, so
the realised mean is a little higher: 6.5 for 6); a ``long_share`` fraction of the entries are
long words of 16-40 UTF-8 bytes (they do not fit the switch's 16-byte key and take the host path;
every other word has at most 15 bytes); a ``non_ascii_share`` fraction (drawn independently, so
some long words are non-ASCII too) contain non-ASCII letters: Latin with accents (é, ß, ø, ...),
Cyrillic, Greek, CJK (3 bytes a character) or 4-byte CJK Extension B characters.  Words are
letters only: never whitespace (no character for which ``str.isspace()`` is true), no line or
paragraph separators, no NUL.  All entries are distinct.

Ranks: rank -> word is a random permutation, so popular words are not all short or all ASCII;
except that the ``plain_top`` (default 10) most popular ranks of each phase are short ASCII
words.  The top ten ranks carry ~45 % of the tokens at s = 1.2 (rank 1 alone ~19 %), so without
this the share of tokens taking the host path would be decided by a coin toss on a few ranks
(seed 1 draws a 31-byte rank-1 word: ~20 % of all tokens long).  With it, the token shares of
long and non-ASCII words are on average about 0.55 times ``long_share`` and
``non_ascii_share`` (seed 1: 1.8 % and 3.0 %); ``plain_top=0`` gives the fully random mapping.

Drift: ``drift=k`` changes the rank -> word permutation ``k`` times along the file, i.e. the file
is cut into ``k + 1`` phases of equal size in bytes (each phase ends at the first line end after
its share of bytes) and each phase has its own random permutation: the hot words change.  ``0`` =
one permutation throughout.

Size: ``size_mb`` is the target in MB of 10**6 bytes; writing stops at the first line end at or
after the target, so the file is at most one line longer.  For ``drift=0`` a smaller corpus with
the same parameters and seed is a prefix of a bigger one.

Defaults reproduce the BRIEF's reference corpus (200 MB Zipf(1.2) text, 24.3 M words, 540 K
distinct): over a finite vocabulary, 24.3 M Zipf(1.2) draws show ~59 % of a 910 K vocabulary
(expected 540 K distinct), hence ``vocabulary=910_000`` rather than 540 000 (which would show
~409 K distinct words).  Seed 1 gives 24.7 M words, 544 K distinct.  Word counts vary by a few
% with the seed, because the lengths of the few top words are random.

Generation is vectorised (numpy): the vocabulary is built once as a fixed-width bytes array, the
ranks are drawn in chunks of ~128 K words, mapped to words by fancy indexing and joined.
Progress lines go to stderr every ~10 %.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MB = 1_000_000
SHORT_MAX_BYTES = 15  # longest word that fits the switch key (16 bytes with a length/terminator)
LONG_MIN_BYTES = 16
LONG_MAX_BYTES = 40
CHUNK_WORDS = 1 << 17  # words drawn per chunk (rounded down to whole lines)


@dataclass(frozen=True)
class CorpusSpec:
    """Parameters of a synthetic corpus (defaults: the BRIEF's 200 MB Zipf(1.2) reference)."""

    size_mb: float = 200.0
    zipf: float = 1.2
    vocabulary: int = 910_000
    mean_length: float = 6.0
    long_share: float = 0.02
    non_ascii_share: float = 0.05
    drift: int = 0
    seed: int = 1
    line_words: int = 12
    plain_top: int = 10

    def __post_init__(self) -> None:
        if not self.size_mb > 0:
            raise ValueError(f"size_mb must be > 0, got {self.size_mb}")
        if not self.zipf >= 0:
            raise ValueError(f"zipf exponent must be >= 0, got {self.zipf}")
        if self.vocabulary < 1:
            raise ValueError(f"vocabulary must be >= 1, got {self.vocabulary}")
        if not self.mean_length >= 1:
            raise ValueError(f"mean_length must be >= 1, got {self.mean_length}")
        for name in ("long_share", "non_ascii_share"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.drift < 0:
            raise ValueError(f"drift must be >= 0, got {self.drift}")
        if self.line_words < 1:
            raise ValueError(f"line_words must be >= 1, got {self.line_words}")
        if self.plain_top < 0:
            raise ValueError(f"plain_top must be >= 0, got {self.plain_top}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    @property
    def target_bytes(self) -> int:
        return int(round(self.size_mb * MB))

    def to_spec(self) -> str:
        """Canonical ``key=value,...`` form; ``parse_spec(s.to_spec()) == s``."""
        return ",".join(
            f"{_SHORT_NAMES[f.name]}={getattr(self, f.name)}" for f in dataclasses.fields(self)
        )


_SHORT_NAMES = {
    "size_mb": "mb",
    "zipf": "zipf",
    "vocabulary": "vocab",
    "mean_length": "mean_length",
    "long_share": "long",
    "non_ascii_share": "non_ascii",
    "drift": "drift",
    "seed": "seed",
    "line_words": "line_words",
    "plain_top": "plain_top",
}

_ALIASES = {
    "mb": "size_mb",
    "size": "size_mb",
    "size_mb": "size_mb",
    "zipf": "zipf",
    "s": "zipf",
    "exponent": "zipf",
    "vocab": "vocabulary",
    "vocabulary": "vocabulary",
    "v": "vocabulary",
    "mean_length": "mean_length",
    "length": "mean_length",
    "len": "mean_length",
    "long": "long_share",
    "long_share": "long_share",
    "non_ascii": "non_ascii_share",
    "nonascii": "non_ascii_share",
    "non_ascii_share": "non_ascii_share",
    "drift": "drift",
    "seed": "seed",
    "line_words": "line_words",
    "line": "line_words",
    "words_per_line": "line_words",
    "plain_top": "plain_top",
    "plain": "plain_top",
}


def parse_spec(text: str, base: CorpusSpec | None = None) -> CorpusSpec:
    """Parse ``"zipf=1.2,vocab=540000,mb=200,seed=1"`` into a :class:`CorpusSpec`.

    Keys are case-insensitive, ``-`` and ``_`` are interchangeable; missing keys keep the values
    of ``base`` (default: the reference corpus).  Unknown keys and bad values raise ValueError.

    >>> parse_spec("zipf=1.1,vocab=1000,mb=0.5,drift=2").vocabulary
    1000
    >>> parse_spec("") == CorpusSpec()
    True
    """
    base = base or CorpusSpec()
    types = {f.name: f.type for f in dataclasses.fields(CorpusSpec)}
    changes: dict[str, object] = {}
    for item in text.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"corpus spec item {item!r} is not key=value")
        key = key.strip().lower().replace("-", "_")
        if key not in _ALIASES:
            raise ValueError(f"unknown corpus spec key {key!r} (known: {sorted(_ALIASES)})")
        name = _ALIASES[key]
        value = value.strip()
        try:
            if types[name] in (int, "int"):
                number = float(value.replace("_", ""))
                if number != int(number):
                    raise ValueError
                changes[name] = int(number)
            else:
                changes[name] = float(value.replace("_", ""))
        except ValueError:
            raise ValueError(f"bad value for {key!r} in corpus spec: {value!r}") from None
    return dataclasses.replace(base, **changes)


# --------------------------------------------------------------------------- vocabulary

_ASCII = np.arange(ord("a"), ord("z") + 1, dtype=np.uint32)
_LATIN_ACCENTED = np.array([ord(c) for c in "éèêëàâäáåãçñöôóòøõüûúùïîíìÿýßæœðþł"], np.uint32)
_CYRILLIC = np.arange(0x0430, 0x0450, dtype=np.uint32)  # а..я
_GREEK = np.array([c for c in range(0x03B1, 0x03CA) if c != 0x03C2], np.uint32)  # α..ω
_CJK = np.arange(0x4E00, 0x4E00 + 2000, dtype=np.uint32)  # common CJK unified ideographs
_CJK_EXT_B = np.arange(0x20000, 0x20000 + 200, dtype=np.uint32)  # 4-byte UTF-8
# Non-ASCII word scripts and their probabilities: Latin with accents, Cyrillic, Greek, CJK, 4-byte.
_SCRIPTS = (_LATIN_ACCENTED, _CYRILLIC, _GREEK, _CJK, _CJK_EXT_B)
_SCRIPT_P = np.array([0.45, 0.25, 0.1, 0.15, 0.05])
_LATIN_ACCENT_P = 0.25  # share of accented letters in a Latin non-ASCII word


def _utf8_len(cp: np.ndarray) -> np.ndarray:
    """UTF-8 byte length of each code point (0 for the padding code point 0)."""
    return (cp > 0).astype(np.int64) + (cp >= 0x80) + (cp >= 0x800) + (cp >= 0x10000)


def _candidates(
    rng: np.random.Generator,
    n: int,
    mean_length: float,
    long: bool,
    non_ascii: bool,
    min_chars: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` candidate words (possibly repeated) as a UTF-8 ``S`` array, and their byte lengths.

    ``min_chars`` raises the length of short words (used when short lengths are exhausted).
    """
    width = LONG_MAX_BYTES if long else SHORT_MAX_BYTES
    max_bytes = width
    if long:
        chars = rng.integers(LONG_MIN_BYTES, LONG_MAX_BYTES + 1, size=n)  # bytes, made chars below
    else:
        chars = np.minimum(1 + rng.poisson(max(mean_length - 1.0, 0.0), size=n), width)
    cp = _ASCII[rng.integers(0, len(_ASCII), size=(n, width))]
    if non_ascii:
        script = rng.choice(len(_SCRIPTS), size=n, p=_SCRIPT_P)
        for k, alphabet in enumerate(_SCRIPTS):
            rows = np.flatnonzero(script == k)
            if rows.size == 0:
                continue
            letters = alphabet[rng.integers(0, len(alphabet), size=(rows.size, width))]
            if k == 0:  # Latin: ASCII letters with some accented ones, at least one
                accented = rng.random((rows.size, width)) < _LATIN_ACCENT_P
                forced = rng.integers(0, np.minimum(chars[rows], 7))  # 7 * 2 bytes < 15: kept
                accented[np.arange(rows.size), forced] = True
                cp[rows] = np.where(accented, letters, cp[rows])
            else:
                cp[rows] = letters
                per_char = int(_utf8_len(alphabet[:1])[0])
                if long:  # aim at the drawn byte length with multi-byte characters
                    chars[rows] = -(-chars[rows] // per_char)
                elif per_char >= 3:  # CJK words are short: about half the characters
                    chars[rows] = -(-chars[rows] // 2)
    if not long:
        chars = np.clip(chars, min_chars, width)
    cp[np.arange(width)[None, :] >= chars[:, None]] = 0
    nbytes = np.cumsum(_utf8_len(cp), axis=1)
    cp[nbytes > max_bytes] = 0  # cut at a character boundary so the word fits
    lengths = _utf8_len(cp).sum(axis=1)
    text = np.ascontiguousarray(cp).view(f"<U{width}").ravel()
    encoded = np.char.encode(text, "utf-8") if non_ascii else text.astype(f"S{width}")
    return encoded, lengths


def _distinct(rng, n, mean_length, long, non_ascii):
    """``n`` distinct words of one category (deterministic for the rng state)."""
    words = np.empty(0, dtype=f"S{LONG_MAX_BYTES}")
    lengths = np.empty(0, dtype=np.int64)
    min_chars = 1
    while len(words) < n:
        missing = n - len(words)
        more, more_len = _candidates(
            rng, missing + missing // 20 + 16, mean_length, long, non_ascii, min_chars
        )
        words = np.concatenate([words, more.astype(words.dtype)])
        lengths = np.concatenate([lengths, more_len])
        _, first = np.unique(words, return_index=True)
        first.sort()  # keep first occurrences, in drawing order
        if len(first) - (n - missing) < missing // 2:  # short lengths exhausted: go longer
            min_chars += 1
        words, lengths = words[first][:n], lengths[first][:n]
    return words, lengths


def build_vocabulary(spec: CorpusSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The vocabulary: ``(words, byte_lengths, is_long, is_non_ascii)``, ``words`` an ``S`` array.

    Entries are distinct and in a seeded random order; the order is not the rank order (ranks go
    through a separate permutation per phase).
    """
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0xC0]))
    v = spec.vocabulary
    n_long = int(round(v * spec.long_share))
    n_non_ascii = int(round(v * spec.non_ascii_share))
    is_long = np.zeros(v, bool)
    is_long[rng.choice(v, n_long, replace=False)] = True
    is_non_ascii = np.zeros(v, bool)
    is_non_ascii[rng.choice(v, n_non_ascii, replace=False)] = True
    words = np.empty(v, dtype=f"S{LONG_MAX_BYTES}")
    lengths = np.empty(v, dtype=np.int64)
    for long in (False, True):
        for non_ascii in (False, True):
            rows = np.flatnonzero((is_long == long) & (is_non_ascii == non_ascii))
            if rows.size:
                w, n = _distinct(rng, rows.size, spec.mean_length, long, non_ascii)
                words[rows] = w
                lengths[rows] = n
    return words, lengths, is_long, is_non_ascii


def rank_permutation(rng: np.random.Generator, plain: np.ndarray, plain_top: int) -> np.ndarray:
    """Random rank -> vocabulary index map whose first ``plain_top`` entries are plain words.

    ``plain`` marks the short ASCII entries.  The first ``plain_top`` plain entries of a random
    permutation move to the front (in order), everything else keeps its relative order.
    """
    perm = rng.permutation(len(plain))
    if plain_top:
        front = np.flatnonzero(plain[perm])[:plain_top]
        perm = np.concatenate([perm[front], np.delete(perm, front)])
    return perm


def zipf_cdf(vocabulary: int, exponent: float) -> np.ndarray:
    """Cumulative (unnormalised) Zipf weights ``sum_{i<=r} i**-s`` for r = 1..V."""
    return np.cumsum(np.arange(1, vocabulary + 1, dtype=np.float64) ** -float(exponent))


def sample_ranks(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    """``n`` 0-based Zipf ranks in ``[0, V)``: inverse CDF of the finite law (``cdf`` from
    :func:`zipf_cdf`)."""
    u = rng.random(n) * cdf[-1]
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


# --------------------------------------------------------------------------- generation


def _log(progress: bool, message: str) -> None:
    if progress:
        print(f"corpus: {message}", file=sys.stderr, flush=True)


def generate(spec: CorpusSpec, path: str | Path, progress: bool = True) -> dict:
    """Write the corpus of ``spec`` to ``path``; return its statistics.

    Stats: ``bytes``, ``words``, ``distinct`` (distinct words written), ``lines``, ``phases``,
    ``vocabulary``, ``long_distinct`` / ``non_ascii_distinct`` (distinct long / non-ASCII words
    written), ``long_words`` / ``non_ascii_words`` (occurrences), ``top_word`` (the rank-1 word
    of the first phase, as str), ``seconds``, ``spec``.
    """
    start = time.perf_counter()
    path = Path(path)
    target = spec.target_bytes
    words, lengths, is_long, is_non_ascii = build_vocabulary(spec)
    v = spec.vocabulary
    _log(progress, f"vocabulary of {v} words built in {time.perf_counter() - start:.1f} s")
    with_space = np.char.add(words, b" ")
    with_newline = np.char.add(words, b"\n")
    token_bytes = lengths + 1
    cdf = zipf_cdf(v, spec.zipf)
    perm_rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0xD1]))
    rank_rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0xA2]))
    phases = spec.drift + 1
    bounds = [target * (k + 1) // phases for k in range(phases)]  # phase k ends at bounds[k]
    phase = 0
    plain = ~is_long & ~is_non_ascii
    perm = rank_permutation(perm_rng, plain, spec.plain_top)  # rank r (0-based) -> perm[r]
    top_word = words[perm[0]].decode("utf-8")
    lw = spec.line_words
    chunk = max(lw, CHUNK_WORDS // lw * lw)  # words drawn at a time (fixed: prefix-stable)
    # Words written at a time: at most a chunk, and ~1/20 of the expected total (progress).
    probability = np.diff(cdf, prepend=0.0) / cdf[-1]
    expected_words = target / float(probability @ token_bytes[perm])
    step = int(min(chunk, max(lw, expected_words / 20 // lw * lw)))
    counts = np.zeros(v, dtype=np.int64)
    written = n_words = n_lines = 0
    next_report = 0.1
    done = False
    with open(path, "wb") as out:
        while not done:
            ranks = sample_ranks(rank_rng, cdf, chunk)
            pos = 0  # word offset in this chunk (a line start)
            while pos < chunk and not done:
                idx = perm[ranks[pos : pos + step]].reshape(-1, lw)
                line_ends = written + np.cumsum(token_bytes[idx].sum(axis=1))
                # First line end at or after this phase's boundary (target for the last phase).
                cut = int(np.searchsorted(line_ends, bounds[phase], side="left"))
                if cut < len(idx):
                    idx = idx[: cut + 1]
                    if phase + 1 < phases:
                        phase += 1
                        perm = rank_permutation(perm_rng, plain, spec.plain_top)
                        _log(progress, f"phase {phase + 1}/{phases} from byte {line_ends[cut]}")
                    else:
                        done = True
                pieces = with_space[idx]
                pieces[:, -1] = with_newline[idx[:, -1]]
                data = b"".join(pieces.ravel().tolist())
                out.write(data)
                flat = idx.ravel()
                counts += np.bincount(flat, minlength=v)
                written += len(data)
                n_words += flat.size
                n_lines += len(idx)
                pos += flat.size
                if written >= next_report * target and not done:
                    elapsed = time.perf_counter() - start
                    _log(
                        progress,
                        f"{written / MB:.1f} / {target / MB:.1f} MB, {n_words} words, "
                        f"{elapsed:.1f} s",
                    )
                    next_report = (int(written * 10 // target) + 1) / 10
    elapsed = time.perf_counter() - start
    seen = counts > 0
    stats = {
        "path": str(path),
        "bytes": written,
        "words": n_words,
        "distinct": int(seen.sum()),
        "lines": n_lines,
        "phases": phases,
        "vocabulary": v,
        "long_distinct": int((seen & is_long).sum()),
        "non_ascii_distinct": int((seen & is_non_ascii).sum()),
        "long_words": int(counts[is_long].sum()),
        "non_ascii_words": int(counts[is_non_ascii].sum()),
        "top_word": top_word,
        "seconds": round(elapsed, 3),
        "spec": spec.to_spec(),
    }
    _log(
        progress,
        f"done: {written} bytes, {n_words} words, {stats['distinct']} distinct, "
        f"{n_lines} lines in {elapsed:.1f} s -> {path}",
    )
    return stats


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate a synthetic Zipf text corpus (see the module docstring)."
    )
    parser.add_argument("out", help="output text file")
    parser.add_argument(
        "--spec",
        default="",
        help="key=value,... (e.g. zipf=1.2,vocab=540000,"
        "mb=200,seed=1); explicit options below override it",
    )
    parser.add_argument("--size-mb", type=float, help="target size in MB of 10**6 bytes [200]")
    parser.add_argument("--zipf", type=float, help="Zipf exponent s [1.2]")
    parser.add_argument("--vocabulary", type=int, help="vocabulary size V [910000]")
    parser.add_argument("--mean-length", type=float, help="mean word length in characters [6]")
    parser.add_argument(
        "--long-share", type=float, help="share of vocabulary words of 16-40 UTF-8 bytes [0.02]"
    )
    parser.add_argument(
        "--non-ascii-share",
        type=float,
        help="share of vocabulary words with non-ASCII letters [0.05]",
    )
    parser.add_argument(
        "--drift", type=int, help="times the popularity permutation changes (0 = never) [0]"
    )
    parser.add_argument("--seed", type=int, help="random seed [1]")
    parser.add_argument("--line-words", type=int, help="words per line [12]")
    parser.add_argument(
        "--plain-top",
        type=int,
        help="the N most popular words of each phase are short ASCII words, so "
        "the long/non-ASCII token shares do not hinge on a few ranks (0 = fully "
        "random) [10]",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    try:
        spec = parse_spec(args.spec)
        overrides = {
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(CorpusSpec)
            if getattr(args, f.name) is not None
        }
        spec = dataclasses.replace(spec, **overrides)
    except ValueError as exc:
        parser.error(str(exc))
    stats = generate(spec, args.out, progress=not args.quiet)
    print(json.dumps(stats, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
