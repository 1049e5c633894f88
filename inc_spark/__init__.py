"""inc-spark: in-network aggregation for Apache Spark (end host and Spark glue)."""
