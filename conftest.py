"""Shared pytest fixtures: one local SparkContext for the session, offered to doctests as ``sc``."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from _pytest.doctest import DoctestItem

REPO = os.path.dirname(os.path.abspath(__file__))
# Executors run PYSPARK_PYTHON: point them at this environment, which has inc-spark installed.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(REPO, ".numba_cache"))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Load (or first compile) every kernel before any test runs: no test's deadline then
    includes a compile after a kernel changed (``make env`` warms the cache only when it
    installs)."""
    from inc_spark import compile_cache

    compile_cache.warm()


@pytest.fixture(scope="session")
def spark_context() -> Iterator[Any]:
    """local[2, 4]: two task slots, a failed task is retried up to 3 times; with a session."""
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    conf = (
        SparkConf()
        .setMaster("local[2,4]")
        .setAppName("inc-spark-tests")
        .set("spark.ui.enabled", "false")
        .set("spark.ui.showConsoleProgress", "false")
        .set("spark.sql.shuffle.partitions", "4")
    )
    spark = SparkSession.builder.config(conf=conf).getOrCreate()
    sc = spark.sparkContext
    sc.setLogLevel("ERROR")
    yield sc
    spark.stop()


@pytest.fixture(params=["driver", "spark"])
def final_merge(request: pytest.FixtureRequest, spark_context: Any) -> Iterator[str]:
    """Both final merges of an INC call: on the driver (small results), and Spark's own."""
    from tests.test_spark_rdd import inc_conf

    limit = "0" if request.param == "spark" else str(10**9)
    with inc_conf(spark_context, driverMergeTuples=limit):
        yield request.param


@pytest.fixture(autouse=True)
def _spark_for_doctests(request: pytest.FixtureRequest, doctest_namespace: dict) -> None:
    """Doctests that use ``sc`` get the session's SparkContext (others never start Spark)."""
    item = request.node
    if isinstance(item, DoctestItem) and re.search(r"\bsc\b", item.dtest.docstring or ""):
        doctest_namespace["sc"] = request.getfixturevalue("spark_context")
