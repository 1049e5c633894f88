"""Benchmarks versus vanilla Spark."""
