"""The OpenSearch and Elasticsearch backends against a real node (tests/search_nodes.py: the
OpenSearch 2.19 and Elasticsearch 8.17 nodes of `make search-nodes`, or COOCCUR_OPENSEARCH_URL /
COOCCUR_ES_URL). Every test runs once per product, each case under its product's marker
(`-m opensearch`, `-m elasticsearch`); the checks are tests/live_search.py's.

The Elasticsearch node built from Maven Central lacks the modules Elastic does not publish
there (docs/elasticsearch.md): mapper-extras (rank_features: the parity check then runs the
builder's bodies without correlator weights) and reindex (`--changed-only`: skipped with the
reason); a full distribution at COOCCUR_ES_URL runs everything. The OpenSearch node has both.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from live_search import (
    backend_on,
    check_changed_only,
    check_failed_documents,
    check_get_upsert_delete,
    check_live_set,
    check_parity,
    check_switch_under_queries,
    check_versions,
    has_rank_features,
    has_reindex,
)
from test_index_changed import models  # noqa: F401 - the fixture of check_changed_only

from cli import main
from indexer.backend import IndexSchema
from indexer.elasticsearch import ElasticsearchBackend
from indexer.opensearch import OpenSearchBackend

PRODUCTS = {
    # product: (backend class, node fixture, its URL variable, the name doctor prints)
    "opensearch": (OpenSearchBackend, "opensearch_url", "COOCCUR_OPENSEARCH_URL", "OpenSearch"),
    "elasticsearch": (ElasticsearchBackend, "es_url", "COOCCUR_ES_URL", "Elasticsearch"),
}


@pytest.fixture(scope="module", params=[pytest.param(p, marks=getattr(pytest.mark, p)) for p in PRODUCTS])
def product(request) -> str:
    """opensearch or elasticsearch (module scope: one product's tests run together)."""
    return request.param


@pytest.fixture
def url(product, request) -> str:
    """The live node of `product` (its first URL where the variable lists several)."""
    return request.getfixturevalue(PRODUCTS[product][1]).split(",")[0].strip()


@pytest.fixture
def backend(product, url):
    with backend_on(PRODUCTS[product][0], url) as b:
        yield b


def test_versions_switch_prune_rollback(backend):
    check_versions(backend)


def test_failed_documents_leave_the_alias(backend):
    check_failed_documents(backend)


def test_get_upsert_delete(backend):
    check_get_upsert_delete(backend)


def test_searches_during_switches_see_one_whole_version(backend):
    check_switch_under_queries(backend)


def test_live_item_changes(backend, tmp_path):
    check_live_set(backend, tmp_path)


def test_changed_only_equals_a_full_index(product, backend, models):  # noqa: F811
    if product == "elasticsearch" and not has_reindex(backend):
        pytest.skip("this Elasticsearch has no _reindex (the reindex module is not on Maven Central)")
    check_changed_only(product, backend.settings.urls[0], models)


def test_builder_bodies_score_like_the_embedded_backend(product, backend, tmp_path):
    # The OpenSearch node has mapper-extras: there the weights are always checked.
    check_parity(backend, tmp_path, features=product == "opensearch" or has_rank_features(backend))


def test_doctor_names_product_and_version(product, backend, tmp_path, monkeypatch):
    backend.create_version(IndexSchema(keyword_fields=("purchase",)), [{"id": "a", "purchase": ["b"]}])
    _, _, variable, name = PRODUCTS[product]
    monkeypatch.setenv(variable, backend.settings.urls[0])
    result = CliRunner().invoke(main, ["doctor", "--backend", product, "--name", backend.alias,
                                       "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    version = backend._info()["version"]["number"]
    assert version[0].isdigit()
    assert f"ok    {product}: {backend.settings.urls[0]}: {name} {version} (cluster " in result.output
    assert f"ok    {product} alias: alias {backend.alias} -> " in result.output


@pytest.mark.opensearch
def test_elasticsearch_backend_refuses_opensearch(opensearch_url):
    """The elasticsearch client's product check: why OpenSearch has its own backend."""
    with backend_on(OpenSearchBackend, opensearch_url) as backend:
        es = ElasticsearchBackend(backend.alias, backend.settings, 2)
        checks = list(es.checks())
    assert [c.ok for c in checks] == [False]
    assert "is not Elasticsearch" in checks[0].detail and "backend = \"opensearch\"" in checks[0].hint
