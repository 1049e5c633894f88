"""Exact results through each network fault on its own, with proof the fault really happened.

Each case runs a switch process whose injector applies one fault to both directions; the
switch's ``stats`` answer carries the injector's counters, and the test asserts they moved.
"""

from __future__ import annotations

import operator
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from inc_spark import host
from switch_dataplane.control.control_client import ControlClient, parse_address
from switch_dataplane.daemon.launcher import SwitchProcess

# fault -> (inc-switch serve flags, the injector counter that must move in both directions)
FAULTS: dict[str, tuple[tuple[str, ...], str]] = {
    "drop": (("--drop", "0.05"), "dropped"),
    "duplicate": (("--duplicate", "0.05"), "duplicated"),
    "reorder-packets": (("--reorder", "0.05", "--reorder-by", "3"), "reordered"),
    "reorder-ms": (("--reorder", "0.05", "--reorder-by", "5ms"), "reordered"),
    "blackhole": (("--blackhole", "0.4", "--blackhole-after", "150"), "blackholed"),
    "corrupt": (("--corrupt", "0.05", "--corrupt-bytes", "2"), "corrupted"),
}
CASES = list(FAULTS)


@pytest.fixture(params=CASES)
def faulty(request: pytest.FixtureRequest) -> Iterator[tuple[SwitchProcess, str]]:
    """(the switch, the counter its fault moves)."""
    flags, counter = FAULTS[request.param]
    with SwitchProcess("--rows", "16", "--cols", "1024", *flags, "--seed", "5") as switch:
        yield switch, counter


def assert_fault_happened(switch: SwitchProcess, counter: str) -> None:
    """The injector's counter moved in both directions (from the switch's ``stats`` answer)."""
    client = ControlClient(parse_address(switch.address), deadline_s=20)
    try:
        stats = client.request("stats", operator=switch.operator_secret)
    finally:
        client.close()
    faults = stats["faults"]
    assert faults["requests"][counter] > 0, faults
    assert faults["responses"][counter] > 0, faults
    if counter == "corrupted":  # the switch caught the damaged requests by their checksum
        assert stats["switch"]["corrupt"] > 0, stats["switch"]


def test_aggregate_is_exact(faulty: tuple[SwitchProcess, str]) -> None:
    switch, counter = faulty
    rng = random.Random(7)
    pairs = [(f"k{rng.randrange(3000)}", rng.randrange(-50, 50)) for _ in range(30_000)]
    got = host.aggregate(pairs, switch=switch.address, pre_combine=False)
    expected: Counter = Counter()
    for key, value in pairs:
        expected[key] += value
    assert got == dict(expected)
    assert_fault_happened(switch, counter)


def test_spark_inc_reduce_by_key_is_exact(
    faulty: tuple[SwitchProcess, str], spark_context: Any
) -> None:
    from tests.test_spark_rdd import assert_same_as_vanilla, inc_conf, pairs

    switch, counter = faulty
    with inc_conf(spark_context, switch__address=switch.address):
        rdd = spark_context.parallelize(pairs(20_000, seed=3), 4)
        assert_same_as_vanilla(rdd, operator.add)
    assert_fault_happened(switch, counter)
