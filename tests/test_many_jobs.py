"""Many aggregations on one switch at once, through the memory manager: host processes, threads
of one Spark driver and separate Spark applications all finish exact, none refused or falling
back; a job that must wait says so, and one whose wait runs out gets a clear error."""

from __future__ import annotations

import logging
import multiprocessing
import operator
import pickle
import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from inc_spark import host
from switch_dataplane.daemon import SwitchDaemon
from switch_dataplane.daemon.launcher import SwitchProcess
from switch_dataplane.daemon.switch import Switch

COLUMNS = 256
WAITING = "waiting for switch memory: position"


def pairs_of(seed: int, n: int = 20_000) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [(f"k{seed}-{rng.randrange(3000)}", rng.randrange(-5, 100)) for _ in range(n)]


def counted(pairs: list[tuple[str, int]]) -> dict[str, int]:
    """The independent answer: a Counter over the pairs."""
    total: Counter[str] = Counter()
    for key, value in pairs:
        total[key] += value
    return dict(total)


@pytest.fixture
def daemon() -> Iterator[SwitchDaemon]:
    daemon = SwitchDaemon(Switch(rows=8, columns=COLUMNS), port=0).start()
    yield daemon
    daemon.stop()


class Announced(logging.Handler):
    """Sets ``event`` when the ``inc_spark`` logger says a job waits for switch memory."""

    def __init__(self) -> None:
        super().__init__()
        self.event = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if WAITING in self.messages[-1]:
            self.event.set()


@pytest.fixture
def announced() -> Iterator[Announced]:
    handler = Announced()
    logger = logging.getLogger("inc_spark")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


# ---------------------------------------------------------------------------- host


def test_open_job_waits_for_memory_and_logs_its_place(
    daemon: SwitchDaemon, announced: Announced
) -> None:
    address = "{}:{}".format(*daemon.address)
    holder = host.open_job(address, name="holder", columns=COLUMNS)
    tickets: list[host.JobTicket] = []
    waiter = threading.Thread(
        target=lambda: tickets.append(host.open_job(address, name="waiter", columns=COLUMNS))
    )
    waiter.start()
    assert announced.event.wait(10)
    assert f"{WAITING} 1 in queue" in announced.messages[-1]
    control = holder.control()
    control.request("close_job", job_id=holder.job_id, token=holder.token)
    control.close()
    waiter.join(10)
    assert tickets and tickets[0].columns == COLUMNS


def test_a_wait_that_runs_out_is_a_clear_picklable_error(daemon: SwitchDaemon) -> None:
    address = "{}:{}".format(*daemon.address)
    host.open_job(address, name="holder", columns=COLUMNS)
    with pytest.raises(host.MemoryWaitExpired) as raised:
        host.open_job(address, name="late", columns=COLUMNS, max_wait_ms=200)
    error = raised.value
    assert error.code == "AA_WAIT_EXPIRED"
    assert re.search(r"waited [2-9]\d\d ms for switch memory", str(error)), str(error)
    assert "spark.inc.memory.maxWaitMs" in str(error) and "another switch" in str(error)
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), str(again)) == (host.MemoryWaitExpired, str(error))


_barrier: Any = None


def _keep_barrier(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def at_once_through_one_switch(work: Callable[[tuple[str, int]], Any], seeds: list[int]) -> list:
    """``work((switch address, seed))`` for each seed, each in its own fresh process, against
    one ``inc-switch``; each waits on a shared barrier (``_barrier``) before it aggregates."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(seeds))
    with (
        SwitchProcess("--rows", "8", "--cols", str(COLUMNS)) as switch,
        context.Pool(len(seeds), initializer=_keep_barrier, initargs=(barrier,)) as pool,
    ):
        return pool.map(work, [(switch.address, seed) for seed in seeds])


def _aggregate_at_once(job: tuple[str, int]) -> dict[str, int]:
    address, seed = job
    pairs = pairs_of(seed)
    _barrier.wait(60)
    return host.aggregate(pairs, switch=address)


def test_four_processes_aggregate_at_once_through_one_switch() -> None:
    """All four are exact: the ones the array cannot hold yet wait instead of AA_FULL."""
    results = at_once_through_one_switch(_aggregate_at_once, [0, 1, 2, 3])
    for seed, result in enumerate(results):
        assert result == counted(pairs_of(seed))


# ---------------------------------------------------------------------------- Spark


def test_two_threads_of_one_driver_reduce_at_once(spark_context: Any, announced: Announced) -> None:
    rdds = [spark_context.parallelize(pairs_of(seed, 5000), 2) for seed in (10, 11)]
    expected = [dict(rdd.reduceByKey(operator.add).collect()) for rdd in rdds]
    barrier = threading.Barrier(2)
    got: dict[int, dict[str, int]] = {}

    def reduce(index: int) -> None:
        barrier.wait(30)
        got[index] = dict(rdds[index].inc_reduce_by_key(operator.add).collect())

    threads = [threading.Thread(target=reduce, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert got == {0: expected[0], 1: expected[1]}
    assert not [m for m in announced.messages if "running vanilla" in m], announced.messages
    assert announced.event.is_set()  # one of them waited for the other's memory


def _spark_app(job: tuple[str, int]) -> tuple[bool, bool]:
    """One Spark application (its own SparkContext and JVM) reducing through the switch once
    all three are ready: (exact against vanilla's answer, went through the switch)."""
    from pyspark import SparkConf, SparkContext

    import inc_spark

    address, seed = job
    conf = (
        SparkConf()
        .setMaster("local[1]")
        .setAppName(f"app-{seed}")
        .set("spark.ui.enabled", "false")
        .set("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .set("spark.inc.switch.address", address)
        .set("spark.inc.memory.columns", str(COLUMNS // 4))  # all three at once
    )
    sc = SparkContext(conf=conf)
    sc.setLogLevel("ERROR")
    try:
        pairs = pairs_of(seed, 5000)
        rdd = sc.parallelize(pairs, 2)
        _barrier.wait(120)
        got = dict(rdd.inc_reduce_by_key(operator.add).collect())
        return got == counted(pairs), inc_spark.last_metrics() is not None
    finally:
        sc.stop()


def test_three_spark_applications_through_one_external_switch() -> None:
    results = at_once_through_one_switch(_spark_app, [20, 21, 22])
    assert results == [(True, True)] * 3
