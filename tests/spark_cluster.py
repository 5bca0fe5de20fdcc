"""A real Spark standalone cluster for the `cluster` tests (registered in conftest.py).

Started from pyspark's own distribution, as docs/cluster.md shows: one master and two
workers (1 core, 1 GB each: it fits a 2-core CI machine), bound to loopback on free ports,
logs and work directories under the test run's temporary directory. One cluster per test
session; its processes are stopped by pid at the end. Skipped, with the reason, where Java
is missing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

START_TIMEOUT_S = 120  # a loaded 2-core machine starts three JVMs slowly


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive_workers(ui_port: int) -> int:
    """Workers the master lists as ALIVE (its web UI's JSON), 0 while it is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as r:
            return int(json.load(r).get("aliveworkers", 0))
    except (OSError, ValueError):
        return 0


def _die_with_parent() -> None:
    """In a daemon before it starts: SIGTERM when the process that started it dies, even
    killed (Linux prctl PR_SET_PDEATHSIG, kept across exec), so no daemon outlives a run
    that was stopped before its teardown."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _stop(procs: list[subprocess.Popen]) -> None:
    """Stop each daemon by its pid (its own process group: a worker's executors too)."""
    for p in reversed(procs):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@contextmanager
def standalone_cluster(work: Path, workers: int = 2, cores: int = 1, memory: str = "1g") -> Iterator[str]:
    """Start a master and `workers` workers (each `cores` cores, `memory` for executors)
    from pyspark's distribution, logs under `work`; yield the master URL; stop them."""
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    spark_class = str(spark_home / "bin" / "spark-class")
    env = {
        **os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_DAEMON_MEMORY": "256m",  # the master's and workers' own JVMs
    }
    port, ui_port = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        with open(work / f"{name}.log", "w") as log:  # the daemon keeps its own descriptor
            procs.append(subprocess.Popen([spark_class, *args], env=env, stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True, preexec_fn=_die_with_parent))

    try:
        start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
              "--port", str(port), "--webui-port", str(ui_port))
        for i in range(1, workers + 1):
            start(f"worker-{i}", "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                  "--cores", str(cores), "--memory", memory, "--webui-port", str(_free_port()),
                  "--work-dir", str(work / f"worker-{i}"))
        deadline = time.monotonic() + START_TIMEOUT_S
        while _alive_workers(ui_port) < workers:
            dead = [p.args[1] for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join((work / f).read_text()[-2000:] for f in sorted(os.listdir(work))
                                 if f.endswith(".log"))
                raise RuntimeError(f"the Spark cluster did not start ({dead or 'timeout'}):\n{logs}")
            time.sleep(0.5)
        yield url
    finally:
        _stop(procs)


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory) -> Iterator[str]:
    """The master URL (spark://127.0.0.1:PORT) of a running 1-master, 2-worker cluster."""
    from indicators.errors import JavaMissing
    from indicators.spark import check_java

    try:
        check_java()
    except JavaMissing as e:
        pytest.skip(f"no Spark standalone cluster: {e}")
    with standalone_cluster(tmp_path_factory.mktemp("spark-cluster")) as url:
        yield url
