"""Shared fixtures: one local Spark session for the whole run; live-service markers."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def spark():
    """One real local Spark session shared by every Spark test (starting one costs seconds)."""
    from indicators.job import build_spark_session

    session = build_spark_session(
        "local[2]",
        {"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4"},
        app_name="cooccur-tests",
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def es_url() -> str:
    """The live Elasticsearch cluster of the `elasticsearch` tests (COOCCUR_ES_URL)."""
    url = os.environ.get("COOCCUR_ES_URL")
    if not url:
        pytest.skip("COOCCUR_ES_URL is not set: no live Elasticsearch cluster to test against")
    return url
