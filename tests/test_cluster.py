"""inc-spark on a real Spark standalone cluster, the switch on its own network address.

A master and three one-core workers run as separate processes; the switch runs in its own
network namespace behind a veth pair (or, where namespaces are unavailable, on a loopback
address); executors get the project through a venv-pack archive. Every process started here
is stopped at the end, also when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil
import pytest

from inc_spark.text.tokenizer import decode_utf8
from switch_dataplane.control.control_client import ControlClient
from switch_dataplane.daemon.cli import default_secret_file
from switch_dataplane.daemon.launcher import SwitchProcess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
SWITCH_NET = ("198.51.100.1", "198.51.100.2")  # host end, switch end of the veth pair


@dataclass
class Processes:
    """Processes started by a fixture, each in its own session so its whole tree can be killed."""

    started: list[subprocess.Popen] = field(default_factory=list)

    def start(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            kill_tree(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.started:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def kill_tree(pid: int, sig: int) -> None:
    try:
        parent = psutil.Process(pid)
        victims = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for p in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def switch_address() -> Iterator[str]:
    """inc-switch in its own network namespace, reached over a veth pair (else loopback)."""
    ns, host_if, ns_if = f"incsw{os.getpid()}", f"vh{os.getpid()}", f"vs{os.getpid()}"
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{SWITCH_NET[0]}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", ns, "ip", "addr", "add", f"{SWITCH_NET[1]}/30", "dev", ns_if)
        _ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        prefix, host = ["ip", "netns", "exec", ns], SWITCH_NET[1]
    except (subprocess.CalledProcessError, FileNotFoundError):
        prefix, host = [], "127.0.0.1"  # no namespaces here: same tests, loopback address
    try:
        with SwitchProcess("--host", host, prefix=prefix) as switch:
            yield switch.address
    finally:
        if prefix:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            subprocess.run(["ip", "link", "del", host_if], capture_output=True)


@dataclass
class Cluster:
    master: str
    workers: list[subprocess.Popen]
    workdir: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A standalone master and three one-core workers, separate processes."""
    workdir = str(tmp_path_factory.mktemp("cluster"))
    procs = Processes()
    port, ui = free_port(), free_port()
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_WORKER_DIR": workdir}
    spark_class = os.path.join(BIN, "spark-class")
    log = open(os.path.join(workdir, "cluster.log"), "w")  # noqa: SIM115 - lives as long as the cluster
    try:
        procs.start(
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webui-port",
                str(ui),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        master = f"spark://127.0.0.1:{port}"
        workers = [
            procs.start(
                [
                    spark_class,
                    "org.apache.spark.deploy.worker.Worker",
                    master,
                    "--cores",
                    "1",
                    "--memory",
                    "1g",
                    "--host",
                    "127.0.0.1",
                    "--webui-port",
                    str(free_port()),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for _ in range(3)
        ]
        deadline = time.monotonic() + 120
        alive = 0
        while alive < 3:
            assert time.monotonic() < deadline, "workers did not register with the master"
            time.sleep(0.5)  # polling the master's state until it reports the workers
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as r:
                    state = json.load(r)
                alive = sum(w["state"] == "ALIVE" for w in state["workers"])
            except OSError:
                alive = 0
        yield Cluster(master, workers, workdir)
    finally:
        procs.stop_all()
        log.close()


@pytest.fixture(scope="module")
def packed_env(tmp_path_factory: pytest.TempPathFactory) -> str:
    from inc_spark.spark.packed_env import pack

    return pack(str(tmp_path_factory.mktemp("env") / "env.tar.gz"), progress=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, int]]:
    from bench.corpus import generate, parse_spec

    path = str(tmp_path_factory.mktemp("corpus") / "corpus.txt")
    generate(parse_spec("mb=24,vocab=200000,seed=3"), path, progress=False)
    with open(path, "rb") as f:
        return path, dict(Counter(decode_utf8(f.read()).split()))


def wordcount_command(
    mode: str, cluster: Cluster, switch: str, env_archive: str, corpus: str, out: str
) -> list[str]:
    confs = {
        "spark.inc.switch.address": switch,
        "spark.inc.checkpointDir": os.path.join(cluster.workdir, "checkpoints"),
        "spark.archives": f"{env_archive}#env",
        "spark.pyspark.python": "./env/bin/python",
        "spark.executor.memory": "768m",
        "spark.task.maxFailures": "8",
    }
    command = [
        sys.executable,
        "jobs/wordcount.py",
        corpus,
        "--mode",
        mode,
        "--master",
        cluster.master,
        "--output",
        out,
        "--quiet",
        "--metrics-json",
        out + ".json",
    ]
    for key, value in confs.items():
        command += ["--conf", f"{key}={value}"]
    return command


def read_counts(path: str) -> dict[str, int]:
    with open(path, encoding="utf-8") as f:
        return {w: int(c) for w, c in (line.rstrip("\n").split("\t") for line in f)}


@pytest.mark.parametrize("mode", ["inc", "inc-df"])  # inc-rdd: the worker-kill test below
def test_wordcount_on_the_cluster_is_exact(
    mode: str, cluster: Cluster, switch_address: str, packed_env: str, corpus: tuple, tmp_path: Any
) -> None:
    path, expected = corpus
    out = str(tmp_path / f"{mode}.tsv")
    run = subprocess.run(
        wordcount_command(mode, cluster, switch_address, packed_env, path, out),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert read_counts(out) == expected
    with open(out + ".json") as f:
        metrics = json.load(f)["inc"]
    assert metrics["absorbed"] > 0  # the switch in its namespace really aggregated


def test_killing_a_worker_mid_job_keeps_counts_exact(
    cluster: Cluster, switch_address: str, packed_env: str, corpus: tuple, tmp_path: Any
) -> None:
    path, expected = corpus
    out = str(tmp_path / "killed.tsv")
    host, port = switch_address.rsplit(":", 1)
    control = ControlClient((host, int(port)))
    operator = default_secret_file(int(port)).read_text().strip()
    flows_before = control.request("stats", operator=operator)["switch"]["flows_opened"]
    job = subprocess.Popen(
        wordcount_command("inc-rdd", cluster, switch_address, packed_env, path, out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while control.request("stats", operator=operator)["switch"]["flows_opened"] == flows_before:
            assert job.poll() is None, job.stderr.read()[-4000:]
            assert time.monotonic() < deadline, "the job never started streaming"
            time.sleep(0.05)  # polling the switch until the first flow opens
        kill_tree(cluster.workers[0].pid, signal.SIGKILL)  # the worker and its executor
        stdout, stderr = job.communicate(timeout=600)
    finally:
        kill_tree(job.pid, signal.SIGKILL)
        control.close()
    assert job.returncode == 0, stderr[-4000:]
    assert read_counts(out) == expected
    with open(out + ".json") as f:
        metrics = json.load(f)["inc"]
    assert metrics["absorbed"] > 0  # the surviving workers' tasks went through the switch
    # Either the lost tasks had not streamed yet, or the epoch was redone, and it says so.
    assert metrics["epochs"] == 1 or "is dirty" in stderr
