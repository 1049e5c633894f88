"""Unchanged programs: whatever runs on vanilla ``reduceByKey`` runs identically with the hook.

Same keys, values, Python types and partitioning, partition by partition (float sums up to the
rounding vanilla's own merge order leaves open), or vanilla itself, reason logged; Spark's
shipped example programs print byte for byte what they print without the hook.
"""

from __future__ import annotations

import operator
import os
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inc_spark
from tests.test_host import REPO
from tests.test_spark_rdd import inc_conf

pyspark = pytest.importorskip("pyspark")


def _defs() -> list[Callable[[Any, Any], Any]]:
    """The ``def`` twins of the lambdas (nested, so Spark ships them by value)."""

    def add(a: Any, b: Any) -> Any:
        return a + b

    def smaller(x: Any, y: Any) -> Any:
        """A docstring does not stop recognition."""
        return min(x, y)

    def larger(a: Any, b: Any) -> Any:
        return max(a, b)

    return [add, smaller, larger]


#: the recognised spellings: run through the switch
SWITCH_FUNCTIONS: list[Callable[[Any, Any], Any]] = [
    operator.add,
    min,
    max,
    lambda a, b: a + b,
    lambda x, y: x + y,
    lambda a, b: min(a, b),
    lambda a, b: max(a, b),
    *_defs(),
]
NON_COMMUTATIVE = lambda a, b: a  # noqa: E731 - the spelling under test


def same(a: Any, b: Any) -> bool:
    """Equal values of identical types, recursively; floats to within rounding."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (float, np.floating, complex)):
        return (a != a and b != b) or bool(np.isclose(a, b, rtol=1e-12, atol=1e-12))
    return bool(a == b)


def partitions_of(rdd: Any) -> list[dict[Any, tuple[Any, Any]]]:
    """Each output partition as {key: (the key object kept, its value)}."""
    return [{k: (k, v) for k, v in part} for part in rdd.glom().collect()]


def assert_same_partitions(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for index, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
        assert mine.keys() == theirs.keys(), f"partition {index}: keys differ"
        for key, (their_key, their_value) in theirs.items():
            my_key, my_value = mine[key]
            assert type(my_key) is type(their_key), f"partition {index}: key {their_key!r}"
            assert same(my_value, their_value), (
                f"partition {index}, key {their_key!r}: {my_value!r} "
                f"({type(my_value).__name__}), vanilla {their_value!r} "
                f"({type(their_value).__name__})"
            )


def outcome(run: Callable[[], Any]) -> tuple[Any, Any, list[dict]] | BaseException:
    """(partition count, partitioner, partitions) of a reduceByKey, or the error it raised."""
    try:
        rdd = run()
        return rdd.getNumPartitions(), rdd.partitioner, partitions_of(rdd)
    except Exception as exc:
        return exc


def assert_same_as_vanilla(
    sc: Any, pairs: list[tuple[Any, Any]], func: Any, slices: int, **kwargs: Any
) -> Any:
    """The hooked reduceByKey against vanilla's; -> the hooked outcome."""
    rdd = sc.parallelize(pairs, slices)
    expected = outcome(lambda: rdd.reduceByKey(func, **kwargs))
    with inc_conf(sc, replaceReduceByKey="true"):
        got = outcome(lambda: rdd.reduceByKey(func, **kwargs))
    if isinstance(expected, BaseException):
        assert isinstance(got, BaseException), f"vanilla raised {expected!r}, the hook did not"
        return got
    assert not isinstance(got, BaseException), f"the hook raised {got!r}, vanilla did not"
    assert got[:2] == expected[:2]
    assert_same_partitions(got[2], expected[2])
    return got


# ------------------------------------------------------------------------------ regressions


def test_numpy_array_values_sum_as_vectors(spark_context: Any) -> None:
    pairs = [(f"k{i % 97}", np.array([i, 1])) for i in range(2000)] + [("k1", 3)]
    assert_same_as_vanilla(spark_context, pairs, operator.add, 4)


def test_unsigned_and_numpy_values_keep_their_type_and_value(spark_context: Any) -> None:
    for pairs in (
        [("u", np.uint64(2**64 - 1)), ("v", np.uint64(3)), ("v", np.uint64(4))],
        [("i", np.int64(5)), ("i", np.int64(7)), ("j", np.int64(-1))],
        [("x", 1), ("x", np.int64(2)), ("f", np.float32(1.5)), ("n", np.int8(3))],
    ):
        for func in (operator.add, min, max):
            assert_same_as_vanilla(spark_context, pairs, func, 2)


def test_bools_keep_their_type(spark_context: Any) -> None:
    """A lone True value stays True; of True and 1 as keys, vanilla keeps the first it sees."""
    for pairs in (
        [(True, 1), ("a", True), ("b", 2)],
        [(True, 5), (1, 2), ("a", 1)] * 3,
        [(1, 2), (True, 5), ("a", 1)] * 3,
        [("t", True), ("t", 1), ("u", 1), ("u", True)],
        [((1, True), 1), ((1, 1), 2), (1.0, 3), (1, 4)],
    ):
        for func in (operator.add, min):
            assert_same_as_vanilla(spark_context, pairs, func, 3)


@pytest.mark.parametrize("func", SWITCH_FUNCTIONS, ids=lambda f: getattr(f, "__name__", str(f)))
def test_equivalent_functions_run_through_the_switch(spark_context: Any, func: Any) -> None:
    pairs = [(f"w{i % 50}", i % 7 - 3) for i in range(3000)]
    before = inc_spark.last_metrics()
    assert_same_as_vanilla(spark_context, pairs, func, 3)
    metrics = inc_spark.last_metrics()
    assert metrics is not before and metrics is not None and metrics.absorbed > 0


def test_other_functions_run_vanilla_and_say_why(
    spark_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    offset = 1

    def closing(a: Any, b: Any) -> Any:
        return a + b + offset

    pairs = [("a", 1), ("a", 2), ("b", 3)]
    for func in (NON_COMMUTATIVE, lambda a, b: b + a, lambda a, b=0: a + b, closing, operator.iadd):
        before = inc_spark.last_metrics()
        caplog.clear()
        assert_same_as_vanilla(spark_context, pairs, func, 2)
        assert inc_spark.last_metrics() is before
        assert caplog.text.count("running vanilla reduceByKey") == 1, caplog.text


def test_a_shadowed_builtin_is_not_recognised() -> None:
    from inc_spark.spark.reduce_functions import switch_op_of

    namespace: dict[str, Any] = {"min": lambda a, b: a}
    exec("def smallest(a, b):\n    return min(a, b)\n", namespace)  # noqa: S102
    assert switch_op_of(namespace["smallest"]) is None


def test_log_level_setting() -> None:
    import logging

    from inc_spark.spark import driver_log

    logger = logging.getLogger("inc_spark")
    try:
        driver_log.configure("OFF")
        assert not logger.isEnabledFor(logging.CRITICAL)
        driver_log.configure("warn")
        assert logger.isEnabledFor(logging.WARNING) and not logger.isEnabledFor(logging.INFO)
        with pytest.raises(ValueError, match="spark.inc.logLevel"):
            driver_log.configure("loud")
        assert sum(isinstance(h, driver_log.Log4jHandler) for h in logger.handlers) == 1
    finally:
        logger.setLevel(logging.NOTSET)


# ------------------------------------------------------------------------------ property

KEYS = st.one_of(
    st.integers(-2, 3),
    st.booleans(),
    st.sampled_from(["a", "b", "é", "a long key of many bytes", b"raw", None, 2**70, 2**130]),
    st.sampled_from([1.0, 2.5, -0.0, Decimal(1), Fraction(3, 1), np.int64(2), np.uint64(1)]),
    st.tuples(st.integers(0, 1), st.sampled_from(["x", True, 1.0])),
)
INT_VALUES = st.one_of(
    st.integers(-5, 5), st.booleans(), st.sampled_from([2**31 - 1, -(2**31), 2**40, 2**70])
)
#: value families whose members vanilla can combine with each other (a family per draw)
VALUE_FAMILIES = [
    INT_VALUES,
    st.one_of(
        INT_VALUES, st.sampled_from([0.5, 1.0, -2.25, 1e6, -0.0, Fraction(1, 3), np.float64(2)])
    ),
    st.one_of(st.integers(-5, 5), st.booleans(), st.sampled_from([Decimal("1.5"), Decimal(2)])),
    st.one_of(st.integers(-5, 5), st.sampled_from([np.int64(3), np.int64(-(2**62))])),
    st.one_of(st.integers(0, 5), st.sampled_from([np.uint64(2**64 - 1), np.uint64(1)])),
    st.one_of(st.integers(0, 3).map(lambda i: np.array([i, 1])), st.integers(-2, 2)),
    st.lists(st.integers(0, 3), max_size=2),
    st.tuples(st.integers(0, 3)),
    st.text("ab", max_size=2),
]
FUNCTIONS = [*SWITCH_FUNCTIONS, NON_COMMUTATIVE]


@st.composite
def reductions(draw: st.DrawFn) -> tuple[list[tuple[Any, Any]], Any, int, int, str]:
    values = draw(st.sampled_from(VALUE_FAMILIES))
    pairs = draw(st.lists(st.tuples(KEYS, values), max_size=40))
    func = draw(st.sampled_from(FUNCTIONS))
    merge = draw(st.sampled_from(["driver", "spark"]))
    return pairs, func, draw(st.integers(1, 4)), draw(st.integers(1, 3)), merge


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(reductions())
def test_hooked_equals_vanilla_on_mixed_types(spark_context: Any, case: tuple) -> None:
    pairs, func, slices, partitions, merge = case
    with inc_conf(spark_context, driverMergeTuples="0" if merge == "spark" else str(10**9)):
        assert_same_as_vanilla(spark_context, pairs, func, slices, numPartitions=partitions)


# ------------------------------------------------------------------------------ leases


def test_the_driver_renews_its_lease_through_a_long_final_merge(
    spark_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A final merge three leases long: the heartbeat keeps the job (without it the switch
    closes it and the epoch check fails); the lease is the one spark.inc.leaseMs sets."""
    import threading
    import time

    from inc_spark import host
    from inc_spark.spark import rdd_reduce

    lease_s = 0.3
    opened: list[dict[str, Any]] = []
    open_job, kept = host.open_job, rdd_reduce._kept

    def recording_open_job(*args: Any, **options: Any) -> Any:
        opened.append(options)
        return open_job(*args, **options)

    def slow_kept(streamed: Any, on_driver: bool) -> Any:
        records = kept(streamed, on_driver)
        ends = time.monotonic() + 3 * lease_s
        while time.monotonic() < ends:  # a merge that keeps the driver busy, no requests
            threading.Event().wait(0.01)
        return records

    monkeypatch.setattr(host, "open_job", recording_open_job)
    monkeypatch.setattr(rdd_reduce, "_kept", slow_kept)
    with inc_conf(spark_context, leaseMs=str(int(lease_s * 1000))):
        assert_same_as_vanilla(spark_context, [(f"k{i % 9}", i) for i in range(500)], min, 2)
    assert [o.get("lease_s") for o in opened] == [lease_s]


# ------------------------------------------------------------------------------ examples

EXAMPLES = os.path.join(os.path.dirname(pyspark.__file__), "examples", "src", "main", "python")
RUN_EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_examples.py")


#: example -> whether its hooked run goes through the switch. transitive_closure is left out:
#: its union/distinct loop doubles its partitions every round (1022 tasks by round 8), minutes of
#: vanilla Spark on 2 cores; it calls reduceByKey only through distinct(), which runs vanilla.
EXAMPLE_RUNS = {
    "wordcount": True,
    "pagerank": True,
    "kmeans": False,
    "sort": False,
    "status_api_demo": True,
}
#: examples that print a reduceByKey's collected pairs: the order within an output partition is
#: not part of the contract (Spark's own follows the order shuffle blocks arrive in)
PRINT_COLLECTED_PAIRS = {"wordcount", "status_api_demo"}


def test_shipped_examples_print_the_same_with_the_hook(tmp_path: Any) -> None:
    """Spark's example programs, each run as spark-submit runs it (Python's standard error
    merged into standard output), with and without spark.inc.replaceReduceByKey=true."""
    if not os.path.isdir(EXAMPLES):
        pytest.skip(f"this pyspark ships no examples ({EXAMPLES})")
    run = subprocess.run(
        [sys.executable, RUN_EXAMPLES, EXAMPLES, str(tmp_path), *EXAMPLE_RUNS],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    verdicts = {}
    for line in run.stdout.splitlines():
        name, verdict, how, _seconds = line.split("|")
        verdicts[name] = verdict
        assert (how == "switch") == EXAMPLE_RUNS[name], f"{name} ran {how}"
    assert verdicts.keys() == EXAMPLE_RUNS.keys(), run.stdout
    for name, verdict in verdicts.items():
        allowed = (
            {"same", "same lines, in another order"} if name in PRINT_COLLECTED_PAIRS else {"same"}
        )
        assert verdict in allowed, f"{name}: {verdict}"
