"""``spark.inc.*`` configuration keys, their defaults and their parsing (docs/config.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PREFIX = "spark.inc."

#: key (without prefix) -> (default, description); docs/config.md is written from this table.
KEYS: dict[str, tuple[Any, str]] = {
    "enabled": (True, "Run supported reduceByKey calls through the switch."),
    "switch.address": (
        None,
        "HOST:PORT of a running inc-switch. Unset: start an embedded switch on the driver, "
        "bound to spark.driver.host, stopped with the SparkContext.",
    ),
    "switch.rows": (32, "Embedded switch: slots per packet (S)."),
    "switch.columns": (4096, "Embedded switch: aggregator columns per copy (power of two)."),
    "switch.memoryPolicy": (
        "edf",
        "Embedded switch: how jobs share its aggregator array (exclusive, isolated, edf, "
        "shared), as inc-switch serve --memory-policy.",
    ),
    "switch.deadlineReserve": (
        0.25,
        "Embedded switch, edf policy: share of the array (0..0.5) that calls without a "
        "deadline leave free, so a call with one starts at once; as inc-switch serve "
        "--deadline-reserve.",
    ),
    "memory.columns": (
        0,
        "Columns of the aggregator array a call asks for (a power of two); 0: the switch "
        "policy's fair share.",
    ),
    "memory.minColumns": (
        0,
        "Fewest columns a call accepts instead of waiting (a power of two); 0: exactly "
        "memory.columns if set, else 1.",
    ),
    "memory.priority": (
        0,
        "0..255; among waiting calls without a deadline, higher goes first (edf policy).",
    ),
    "memory.deadlineMs": (
        0,
        "The call should finish within this many ms; the edf policy serves the nearest "
        "deadline first. 0: best effort.",
    ),
    "memory.maxWaitMs": (
        60000,
        "How long a call waits in the switch's queue for memory before it fails with "
        "AA_WAIT_EXPIRED (or runs vanilla with fallbackOnError). 0: never wait.",
    ),
    "window": (256, "Packets in flight per flow (rounded down to a power of two by the switch)."),
    "timeoutMs": (10000, "A switch silent this long is unreachable: clear error or fallback."),
    "leaseMs": (
        30000,
        "Lease of a job on the switch: a job neither used nor renewed this long is closed and "
        "its region freed. The driver renews it every third of it while it holds the job.",
    ),
    "preCombine": (
        True,
        "Combine each partition's tuples on the host before sending (as Spark's map-side "
        "combine), hottest keys first; false = pure streaming, every tuple through the switch.",
    ),
    "combineKeys": (
        1 << 21,
        "Distinct keys a task combines in memory before it sends them (bounds its memory; "
        "a partition with more distinct keys sends some keys more than once).",
    ),
    "batchTuples": (65536, "Pairs a task reads and combines in a Python dict at a time (RDDs)."),
    "driverMergeTuples": (
        2_000_000,
        "Residual plus drained entries up to which the final merge runs on the driver (no "
        "shuffle); above it, Spark's own reduceByKey / groupBy merges them. 0: always Spark.",
    ),
    "evict": (
        True,
        "Let a tuple evict an aggregator's key that one finished task alone sent "
        "(docs/hardware-model.md).",
    ),
    "swapStaleShare": (
        0.7,
        "Swap the aggregator copies when keys no task has sent for 4 finished tasks hold "
        "more than this share of the active copy's hits (popularity changed); 0: never.",
    ),
    "noSwitch": (
        False,
        "Benchmarks: run every INC path with no switch, each task combining its own pairs and "
        "the final merge doing the rest (the no-switch baseline).",
    ),
    "replaceReduceByKey": (
        False,
        "Route plain rdd.reduceByKey(...) through INC where supported "
        "(same as inc_spark.install()).",
    ),
    "explain": (False, "Log, per call, what ran where and why."),
    "logLevel": (
        None,
        "Level of the driver's `inc_spark` logger (DEBUG, INFO, WARN, ERROR, OFF). Unset: "
        "logging's own configuration (WARN: the start-up line and every fallback reason). "
        "Messages go to the driver's log4j (standard error), never to standard output.",
    ),
    "fallbackOnError": (
        False,
        "If the switch is unreachable or refuses the job, run vanilla reduceByKey and say so.",
    ),
    "maxEpochs": (3, "Epochs (attempts of one call) before giving up on INC and running vanilla."),
    "test.failPartitionEpoch": (
        "",
        "Test hook: 'P:E' makes attempt 0 of partition P fail mid-stream in epoch E.",
    ),
    "checkpointDir": (
        None,
        "Reliable storage for streamed residuals. Unset: SparkContext's checkpoint directory, "
        "else (local masters only) a temporary directory, removed when the context stops.",
    ),
}


def _parse(default: Any, raw: str) -> Any:
    if isinstance(default, bool):
        if raw.strip().lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {raw!r}")
        return raw.strip().lower() == "true"
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


@dataclass(frozen=True)
class IncConf:
    """Resolved settings of one SparkContext."""

    values: dict[str, Any]

    @classmethod
    def from_spark(cls, spark_conf: Any) -> IncConf:
        """Read every ``spark.inc.*`` key; a bad value is an error naming the key."""
        values = {}
        for key, (default, _doc) in KEYS.items():
            raw = spark_conf.get(PREFIX + key, None)
            if raw is None:
                values[key] = default
                continue
            try:
                values[key] = _parse(default, raw)
            except ValueError as exc:
                raise ValueError(f"bad value for {PREFIX}{key}: {exc}") from exc
        return cls(values)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def replaced(self, **values: Any) -> IncConf:
        """These settings with some keys (named without prefix, dots as in ``KEYS``) changed."""
        unknown = set(values) - set(KEYS)
        if unknown:
            raise KeyError(f"unknown spark.inc keys: {sorted(unknown)}")
        return IncConf({**self.values, **values})


def memory_options(conf: IncConf) -> dict[str, int]:
    """The ``host.open_job`` memory options of ``spark.inc.memory.*`` (0 sizes: not asked)."""
    options = {
        "priority": conf["memory.priority"],
        "deadline_ms": conf["memory.deadlineMs"],
        "max_wait_ms": conf["memory.maxWaitMs"],
    }
    for option, key in (("columns", "memory.columns"), ("min_columns", "memory.minColumns")):
        if conf[key]:
            options[option] = conf[key]
    return options


def markdown_table() -> str:
    """The configuration reference as a Markdown table (docs/config.md)."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key, (default, doc) in KEYS.items():
        shown = "unset" if default is None else str(default).lower()
        lines.append(f"| `{PREFIX}{key}` | `{shown}` | {doc} |")
    return "\n".join(lines)
