"""inc-spark: in-network aggregation for Apache Spark.

``import inc_spark`` gives ``RDD.inc_reduce_by_key`` (same contract as ``reduceByKey``) as soon as
pyspark is loaded; see ``inc_spark.spark.rdd_reduce`` for how a call runs, ``inc_spark.host`` for
the Spark-free host API, ``inc_spark.aggregate`` for DataFrames, and ``inc_spark.install()`` for
routing plain ``reduceByKey`` through the switch. Importing this package stays cheap: nothing of
pyspark is imported until it is used.
"""

from __future__ import annotations

from typing import Any

from inc_spark.spark import autohook

autohook.activate()

_LAZY = {
    "aggregate": "inc_spark.spark.dataframe",
    "inc_reduce_by_key": "inc_spark.spark.rdd_reduce",
    "last_metrics": "inc_spark.spark.rdd_reduce",
    "install": "inc_spark.spark.hook",
    "uninstall": "inc_spark.spark.hook",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'inc_spark' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
