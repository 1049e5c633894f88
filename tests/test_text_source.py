"""The inc word count's input: listed and read through pyarrow.fs, split at line ends (no Spark)."""

from __future__ import annotations

import os
import pathlib
import pickle
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyarrow.fs import _MockFileSystem

from inc_spark.text.text_source import (
    UTF8_BOM,
    InputNotReadable,
    Split,
    input_files,
    plan_splits,
    read_split,
    split_bytes_for,
)


def write(path: pathlib.Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def contents(files: list[str], split_bytes: int) -> list[bytes]:
    return [read_split(s) for s in plan_splits(files, split_bytes)]


def test_a_file_uri_reads_as_its_local_path(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path / "a b%.txt", b"one two\nthree\n\nfour five six\nseven")
    uri = "file://" + str(tmp_path).replace(" ", "%20") + "/a%20b%25.txt"
    assert input_files(path) == [path]
    assert input_files(uri) == [uri]
    for split_bytes in (1, 4, 9, 100):
        assert contents(input_files(uri), split_bytes) == contents([path], split_bytes)
        assert [(s.start, s.end) for s in plan_splits([uri], split_bytes)] == [
            (s.start, s.end) for s in plan_splits([path], split_bytes)
        ]


def test_a_relative_path_is_resolved_against_the_working_directory(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "d" / "x.txt", b"x\n")
    monkeypatch.chdir(tmp_path)
    assert input_files("d") == [str(tmp_path / "d" / "x.txt")]
    assert input_files("d/x.txt") == [str(tmp_path / "d" / "x.txt")]


def test_a_directory_gives_its_visible_files_and_a_glob_its_visible_matches(
    tmp_path: pathlib.Path,
) -> None:
    d = tmp_path / "d"
    for name in ("b.txt", "a.txt", "c.log", ".hidden.txt", "_SUCCESS", "sub/inner.txt"):
        write(d / name, name.encode() + b"\n")
    write(tmp_path / "e" / "z.txt", b"z\n")
    assert input_files(str(d)) == [str(d / n) for n in ("a.txt", "b.txt", "c.log")]
    assert input_files(f"{d}/*.txt") == [str(d / "a.txt"), str(d / "b.txt")]
    assert input_files(f"{d}/[ab].t?t") == [str(d / "a.txt"), str(d / "b.txt")]
    assert input_files(f"{tmp_path}/*/*.txt") == [
        str(d / "a.txt"),
        str(d / "b.txt"),
        str(tmp_path / "e" / "z.txt"),
    ]
    assert input_files(f"{tmp_path}/[de]") == [  # matched directories: their files
        *input_files(str(d)),
        str(tmp_path / "e" / "z.txt"),
    ]
    assert input_files(str(d / "_SUCCESS")) == [str(d / "_SUCCESS")]  # named: read
    uri = f"file://{tmp_path}"
    assert input_files(f"{uri}/d/*.txt") == [f"{uri}/d/a.txt", f"{uri}/d/b.txt"]
    assert input_files(f"{uri}/d") == [f"{uri}/d/{n}" for n in ("a.txt", "b.txt", "c.log")]


def test_listed_sizes_are_used_and_splits_carry_plain_paths(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path / "t.txt", b"word\n" * 1000)
    files = input_files(f"file://{tmp_path}/*")
    assert [f.size for f in files] == [5000]
    assert split_bytes_for(files, 2, open_cost=100) == split_bytes_for([path], 2, open_cost=100)
    splits = plan_splits(files, 1024)
    assert all(type(s.path) is str and s.path == files[0] for s in splits)
    assert pickle.loads(pickle.dumps(splits)) == splits
    assert [type(f) for f in pickle.loads(pickle.dumps(files))] == [str]


lines = st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b" ")), max_size=8)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    files=st.lists(st.tuples(lines, st.booleans()), min_size=1, max_size=3),
    split_bytes=st.integers(1, 40),
)
def test_splits_end_at_line_ends_and_concatenate_to_the_files(
    tmp_path_factory: pytest.TempPathFactory,
    files: list[tuple[list[bytes], bool]],
    split_bytes: int,
) -> None:
    d = tmp_path_factory.mktemp("input")
    data = [b"\n".join(ls) + (b"\n" if ends and ls else b"") for ls, ends in files]
    for i, content in enumerate(data):
        write(d / f"part-{i}", content)
    for spec in (str(d), f"file://{d}"):
        splits = plan_splits(input_files(spec), split_bytes)
        for i, content in enumerate(data):
            own = [s for s in splits if s.path.endswith(f"/part-{i}")]
            ends = [s.end for s in own]
            assert [s.start for s in own] == [0, *ends][: len(own)]
            assert ends[-1:] == ([len(content)] if content else [])
            pieces = [read_split(s) for s in own]
            assert b"".join(pieces) == content.removeprefix(UTF8_BOM)
            assert all(p.endswith(b"\n") for p in pieces[:-1])  # no line cut in two


def test_a_byte_order_mark_is_dropped_only_at_the_start_of_a_file(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path / "bom.txt", UTF8_BOM + b"first\n" + UTF8_BOM + b"second\n")
    assert contents([path], 100) == [b"first\n" + UTF8_BOM + b"second\n"]
    assert contents([path], 4) == [b"first\n", UTF8_BOM + b"second\n"]
    assert read_split(Split(path, 3, 9)) == b"first\n"


def test_a_missing_input_or_no_match_is_file_not_found(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "d" / "a.txt", b"a\n")
    write(tmp_path / "hidden" / "_b.txt", b"b\n")
    for spec, message in [
        (str(tmp_path / "nope.txt"), "does not exist"),
        (f"file://{tmp_path}/nope.txt", "does not exist"),
        (f"{tmp_path}/d/*.csv", "matches no files"),
        (f"{tmp_path}/nope/*", "matches no files"),
        (str(tmp_path / "hidden"), "matches no files"),
    ]:
        with pytest.raises(FileNotFoundError, match=message) as raised:
            input_files(spec)
        assert repr(spec) in str(raised.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plan_splits([str(tmp_path / "gone.txt")], 10)


def test_an_unreadable_file_is_a_permission_error(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "secret.txt"
    write(path, b"x\n")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads every file: let it believe it cannot
        monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match="not readable"):
        input_files(str(tmp_path))


@pytest.mark.parametrize(
    ("spec", "cause"),
    [
        ("nosuchfs://x/y", "Unrecognized filesystem type"),
        ("nosuchfs://x/*.txt", "Unrecognized filesystem type"),
        ("hdfs://localhost:1/x", "hdfs://localhost:1/x"),  # no libhdfs (nor a JVM) here
        ("data/{a,b}.txt", "glob alternatives"),
    ],
)
def test_what_pyarrow_cannot_read_names_inc_df(spec: str, cause: str) -> None:
    with pytest.raises(InputNotReadable, match=re.escape(cause)) as raised:
        input_files(spec)
    message = str(raised.value)
    assert "--mode inc-df reads it through Spark's own file sources" in message
    assert "\n" not in message  # pyarrow's libhdfs error lists every path it tried
    assert isinstance(raised.value, OSError)


def test_a_split_of_an_unreadable_uri_names_inc_df() -> None:
    with pytest.raises(InputNotReadable, match="inc-df"):
        read_split(Split("nosuchfs://x/y", 0, 10))


def test_any_pyarrow_filesystem_can_be_given() -> None:
    """A filesystem that is not local (here pyarrow's in-memory mock), with its own paths."""
    mock = _MockFileSystem()
    mock.create_dir("d")
    data = {"d/a.txt": b"one\ntwo three\nfour\n", "d/_x": b"no\n", "top.txt": UTF8_BOM + b"t\n"}
    for name, content in data.items():
        with mock.open_output_stream(name) as f:
            f.write(content)
    assert input_files("d", filesystem=mock) == ["d/a.txt"]
    assert input_files("*", filesystem=mock) == ["d/a.txt", "top.txt"]
    assert input_files("*.txt", filesystem=mock) == ["top.txt"]
    files = input_files("*", filesystem=mock)
    for plan in (plan_splits(files, 5), plan_splits(list(map(str, files)), 5, filesystem=mock)):
        assert [read_split(s, filesystem=mock) for s in plan] == [
            b"one\ntwo three\n",
            b"four\n",
            b"t\n",
        ]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        input_files("nope", filesystem=mock)


def test_the_word_count_names_inc_df_for_an_input_pyarrow_cannot_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from jobs.wordcount import main

    for argv in (["--mode", "inc"], ["--mode", "local"], ["--mode", "sql", "--tasks", "4"]):
        assert main(["nosuchfs://bucket/words.txt", *argv]) == 2
        assert "--mode inc-df" in capsys.readouterr().err
