"""Live search nodes for the `opensearch` and `elasticsearch` tests (fixtures imported by
conftest.py).

A session fixture starts one node per product from the jars and launcher that
`make search-nodes` (searchnode/build.sh) put under searchnode/build/: a JVM with a small
heap, HTTP on 127.0.0.1 at a free port, a temporary home and data directory. It waits for
the cluster to be green and stops the node by its pid at the end of the session.
COOCCUR_OPENSEARCH_URL / COOCCUR_ES_URL name an existing cluster instead.

Without Java or the built jars the tests skip with the reason, except under CI (CI=true),
where .ci/run builds the nodes first and a missing node is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "searchnode" / "build"
START_TIMEOUT = 180.0
"""Seconds a node may take to answer green (about 15-30 s on 2 busy cores)."""
HEAP = ["-Xms256m", "-Xmx512m"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeUnavailable(Exception):
    """No node can be started here (no Java, or `make search-nodes` not run)."""


def _command(product: str, home: Path, port: int) -> list[str]:
    build = ROOT / product
    if product == "opensearch":
        return ["java", *HEAP, "-cp", f"{build / 'lib'}/*:{build / 'classes'}",
                "OpenSearchNode", str(home), str(port)]
    # Elasticsearch checks that its server runs as a named module: jars on the module path.
    return ["java", *HEAP, "-p", str(build / "lib"), "--add-modules", "ALL-MODULE-PATH",
            "-cp", str(build / "classes"), "ElasticsearchNode", str(home), str(port),
            str(build / "modules")]


def _green(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health?wait_for_status=green&timeout=1s", timeout=5) as r:
            return json.load(r).get("status") == "green"
    except OSError:
        return False


@contextmanager
def running_node(product: str) -> Iterator[str]:
    """Start one node of `product` (opensearch, elasticsearch); yield its URL; stop it by pid.
    Raises NodeUnavailable without Java or the built node, RuntimeError if it does not start."""
    launcher = "OpenSearchNode" if product == "opensearch" else "ElasticsearchNode"
    if shutil.which("java") is None:
        raise NodeUnavailable("no java on PATH")
    if not (ROOT / product / "classes" / f"{launcher}.class").exists():
        raise NodeUnavailable(f"the {product} test node is not built ({ROOT / product})")
    home = Path(tempfile.mkdtemp(prefix=f"cooccur-{product}-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = home / "node.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(_command(product, home, port), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _green(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the {product} test node did not turn green (exit {proc.poll()}):\n{tail}")
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(home, ignore_errors=True)


def _node_fixture(product: str, variable: str) -> Iterator[str]:
    if os.environ.get(variable):
        yield os.environ[variable]
        return
    try:
        with running_node(product) as url:
            yield url
    except NodeUnavailable as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{e} (CI builds the nodes with `make search-nodes` first)")
        pytest.skip(f"{e}: run `make search-nodes`")
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def opensearch_url() -> Iterator[str]:
    """A live OpenSearch: COOCCUR_OPENSEARCH_URL, or a node started for this session."""
    yield from _node_fixture("opensearch", "COOCCUR_OPENSEARCH_URL")


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    """A live Elasticsearch: COOCCUR_ES_URL, or a node started for this session."""
    yield from _node_fixture("elasticsearch", "COOCCUR_ES_URL")
