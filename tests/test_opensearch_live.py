"""The OpenSearch backend against a real node (tests/search_nodes.py: the OpenSearch 2.19
node of `make search-nodes`, or COOCCUR_OPENSEARCH_URL). The checks are tests/live_search.py's,
shared with the Elasticsearch backend's live tests."""

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
)
from test_index_changed import models  # noqa: F401 - the fixture of check_changed_only

from cli import main
from indexer.opensearch import OpenSearchBackend

pytestmark = pytest.mark.opensearch


@pytest.fixture
def backend(opensearch_url):
    with backend_on(OpenSearchBackend, opensearch_url) as b:
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


def test_changed_only_equals_a_full_index(opensearch_url, models):  # noqa: F811
    check_changed_only("opensearch", opensearch_url, models)


def test_builder_bodies_score_like_the_embedded_backend(backend, tmp_path):
    check_parity(backend, tmp_path, features=True)


def test_doctor_names_product_and_version(backend, tmp_path, monkeypatch):
    backend.create_version(*_one_document())
    monkeypatch.setenv("COOCCUR_OPENSEARCH_URL", backend.settings.urls[0])
    result = CliRunner().invoke(main, ["doctor", "--backend", "opensearch", "--name", backend.alias,
                                       "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    version = backend._info()["version"]["number"]
    assert f"ok    opensearch: {backend.settings.urls[0]}: OpenSearch {version} (cluster " in result.output
    assert f"ok    opensearch alias: alias {backend.alias} -> " in result.output


def test_elasticsearch_backend_refuses_opensearch(backend):
    """The elasticsearch client's product check: why OpenSearch has its own backend."""
    from indexer.elasticsearch import ElasticsearchBackend

    es = ElasticsearchBackend(backend.alias, backend.settings, 2)
    checks = list(es.checks())
    assert [c.ok for c in checks] == [False]
    assert "is not Elasticsearch" in checks[0].detail and "backend = \"opensearch\"" in checks[0].hint


def _one_document():
    from indexer.backend import IndexSchema

    return IndexSchema(keyword_fields=("purchase",)), [{"id": "a", "purchase": ["b"]}]
