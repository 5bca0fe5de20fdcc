"""Shared fixtures: one local Spark session for the whole run; live-service markers."""

from __future__ import annotations

import pytest

# The live search nodes of the `opensearch` and `elasticsearch` tests.
from search_nodes import es_url, opensearch_url  # noqa: F401
from spark_cluster import spark_cluster  # noqa: F401 - the `cluster` tests' fixture


@pytest.fixture(scope="session")
def spark():
    """One real local Spark session shared by every Spark test (starting one costs seconds)."""
    from indicators.spark import build_spark_session

    session = build_spark_session(
        "local[2]",
        {"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4"},
        app_name="cooccur-tests",
    )
    yield session
    session.stop()


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """time.sleep calls of the test's thread, recorded instead of slept (backoff and polling
    of the Elasticsearch helpers, which call the time module's sleep). Other threads (Spark's,
    servers') still sleep: patched to a no-op they would spin into the record."""
    import threading
    import time

    calls: list[float] = []
    real_sleep, test_thread = time.sleep, threading.current_thread()

    def sleep(seconds: float) -> None:
        if threading.current_thread() is test_thread:
            calls.append(seconds)
        else:
            real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    return calls
