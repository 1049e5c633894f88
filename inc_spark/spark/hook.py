"""The shuffle hook: plain ``rdd.reduceByKey(...)`` through INC, for unchanged programs.

``install()`` routes every ``reduceByKey`` of this process through ``inc_reduce_by_key`` (which
itself runs vanilla for functions or data the switch does not take, saying why). Without
``install()``, the same happens per SparkContext when ``spark.inc.replaceReduceByKey=true``:
the wrapper is put in place when pyspark is imported, by ``inc_spark.spark.autohook``.

>>> from operator import add
>>> install()
>>> sorted(sc.parallelize([("a", 1), ("a", 2)]).reduceByKey(add).collect())
[('a', 3)]
>>> uninstall()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyspark.core.rdd import RDD, portable_hash

from inc_spark.spark.vanilla import REDUCE_BY_KEY

_installed_everywhere = False


def _inc_reduce_by_key(
    self: RDD,
    func: Callable[[Any, Any], Any],
    numPartitions: int | None = None,  # noqa: N803 - the reduceByKey signature
    partitionFunc: Callable[[Any], int] = portable_hash,  # noqa: N803
) -> RDD:
    from inc_spark.spark.rdd_reduce import inc_reduce_by_key

    return inc_reduce_by_key(self, func, numPartitions, partitionFunc)


def _reduce_by_key(
    self: RDD,
    func: Callable[[Any, Any], Any],
    numPartitions: int | None = None,  # noqa: N803
    partitionFunc: Callable[[Any], int] = portable_hash,  # noqa: N803
) -> RDD:
    conf = self.context.getConf()
    if _installed_everywhere or conf.get("spark.inc.replaceReduceByKey", "false") == "true":
        return _inc_reduce_by_key(self, func, numPartitions, partitionFunc)
    return REDUCE_BY_KEY(self, func, numPartitions, partitionFunc)


_reduce_by_key.__doc__ = REDUCE_BY_KEY.__doc__


def patch_rdd() -> None:
    """Add RDD.inc_reduce_by_key; put the conf-checking wrapper on reduceByKey (idempotent)."""
    RDD.inc_reduce_by_key = _inc_reduce_by_key
    RDD.reduceByKey = _reduce_by_key


def install() -> None:
    """Route every reduceByKey of this process through INC, whatever the conf says."""
    global _installed_everywhere
    _installed_everywhere = True
    patch_rdd()


def uninstall() -> None:
    """Back to vanilla reduceByKey (the conf key still applies through the wrapper)."""
    global _installed_everywhere
    _installed_everywhere = False


patch_rdd()
