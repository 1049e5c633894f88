"""spark-submit programs."""
