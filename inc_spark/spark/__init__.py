"""The Spark glue: ``inc_reduce_by_key``, the ``reduceByKey`` hook, the columnar ``aggregate``,
``spark.inc.*`` configuration, the driver's embedded switch and the packed executor environment.
"""
