"""The Elasticsearch backend against a real node (tests/search_nodes.py: the Elasticsearch 8.17
node of `make search-nodes`, or COOCCUR_ES_URL). The checks are tests/live_search.py's, shared
with the OpenSearch backend's live tests.

The node built from Maven Central lacks the modules Elastic does not publish there
(docs/elasticsearch.md): mapper-extras (rank_features: the parity check then runs the
builder's bodies without correlator weights) and reindex (`--changed-only`: skipped with
the reason); a full distribution at COOCCUR_ES_URL runs everything.
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

pytestmark = pytest.mark.elasticsearch


@pytest.fixture
def backend(es_url):
    with backend_on(ElasticsearchBackend, es_url.split(",")[0].strip()) as b:
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


def test_changed_only_equals_a_full_index(backend, models):  # noqa: F811
    if not has_reindex(backend):
        pytest.skip("this Elasticsearch has no _reindex (the reindex module is not on Maven Central)")
    check_changed_only("elasticsearch", backend.settings.urls[0], models)


def test_builder_bodies_score_like_the_embedded_backend(backend, tmp_path):
    check_parity(backend, tmp_path, features=has_rank_features(backend))


def test_doctor_names_product_and_version(backend, tmp_path, monkeypatch):
    backend.create_version(IndexSchema(keyword_fields=("purchase",)), [{"id": "a", "purchase": ["b"]}])
    monkeypatch.setenv("COOCCUR_ES_URL", backend.settings.urls[0])
    result = CliRunner().invoke(main, ["doctor", "--backend", "elasticsearch", "--name", backend.alias,
                                       "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    version = backend._info()["version"]["number"]
    assert version[0].isdigit()
    assert f"ok    elasticsearch: {backend.settings.urls[0]}: Elasticsearch {version} (cluster " in result.output
    assert f"ok    elasticsearch alias: alias {backend.alias} -> " in result.output
