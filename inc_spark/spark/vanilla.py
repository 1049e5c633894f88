"""PySpark's own ``RDD.reduceByKey``, kept before the hook replaces it.

Every INC path falls back to it, and the hook calls it when INC is off; it lives apart from
both so neither imports the other for it.
"""

from __future__ import annotations

from pyspark.core.rdd import RDD

REDUCE_BY_KEY = RDD.reduceByKey
