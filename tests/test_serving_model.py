"""Serving knows its model: the primary action, the indicators and the blacklist come from
the served index version (a config holding only [index] serves right); a config naming an
indicator the index lacks is an error at `recommend` and `serve`."""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli import main
from indexer.backend import IndexSchema
from indexer.embedded import EmbeddedBackend
from indexer.run import index_model
from indexer.settings import IndexSettings
from query.errors import ModelMismatch
from query.eventstore import EventStore, parse_events
from query.recommender import Recommender, ServedModel, served_model_of
from query.settings import QuerySettings


def write_model(root):
    """A model trained with primary `like` (not the default `purchase`) and `view`."""
    for part in ("indicators", "rankings", "properties"):
        (root / part).mkdir(parents=True)
    pq.write_table(pa.table({
        "indicator": ["like", "like", "like", "view", "view"],
        "item": ["m2", "m3", "m4", "m5", "m3"],
        "correlators": [["m1"], ["m2"], ["m2", "m1"], ["m2"], ["m9"]],
        "scores": [[5.0], [3.0], [2.0, 1.0], [4.0], [1.0]],
    }), root / "indicators" / "part-0.parquet")
    pq.write_table(pa.table({
        "item": ["m1", "m2", "m3", "m4", "m5", "m6"],
        "popular": [50.0, 4.0, 3.0, 2.0, 1.0, 10.0],
        "trending": [0.0] * 6, "hot": [0.0] * 6,
    }), root / "rankings" / "part-0.parquet")
    pq.write_table(pa.table({
        "item": ["m1", "m2", "m6"], "name": ["genre"] * 3, "values": [["drama"], ["drama"], ["comedy"]],
    }), root / "properties" / "part-0.parquet")
    (root / "manifest.json").write_text(json.dumps({
        "format": "cooccur-model/1", "model_id": "model-1", "primary": "like", "indicators": ["like", "view"],
        "properties": ["genre"], "settings": {}, "counts": {},
    }))
    return root


@pytest.fixture
def served(tmp_path):
    """The model indexed as `cooccur index` does (correlator weights and the prior on), and a
    user who liked m1 and viewed m2."""
    data = tmp_path / "data"
    index_model(write_model(tmp_path / "model"), IndexSettings(data_dir=str(data)))
    store = EventStore(data / "events.db")
    store.insert(parse_events([
        {"event": "like", "entityType": "user", "entityId": "u", "targetEntityId": "m1",
         "eventTime": "2026-01-01T00:00:00Z"},
        {"event": "view", "entityType": "user", "entityId": "u", "targetEntityId": "m2",
         "eventTime": "2026-01-02T00:00:00Z"},
    ]))
    store.close()
    return tmp_path, data


def config(tmp_path, text):
    path = tmp_path / "cooccur.toml"
    path.write_text(text)
    return str(path)


def recommend(cfg, *args):
    return CliRunner().invoke(main, ["-c", cfg, "recommend", *args])


def test_a_config_with_only_index_serves_the_models_indicators_and_blacklist(served):
    tmp_path, data = served
    cfg = config(tmp_path, f'[index]\ndata_dir = "{data}"\n')
    result = recommend(cfg, "--user", "u", "--num", "10", "--json", "--explain")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    got = [s["item"] for s in body["itemScores"]]
    # like:m1 -> m2 and m4; view:m2 -> m5; m1 (liked: the primary action) never comes back,
    # not even from backfill where its popularity (50) would put it first.
    assert "m1" not in got
    personal = {s["item"]: s["source"]["personal"] for s in body["itemScores"] if "personal" in s["source"]}
    assert personal == {"m2": ["like"], "m4": ["like"], "m5": ["view"]}
    assert body["explain"]["model"]["indicators"] == ["like", "view"]
    assert body["explain"]["model"]["source"] in ("index", "index fields")
    assert body["explain"]["primary"] == "like" and body["explain"]["blacklistActions"] == ["like"]
    # the primary 1, the other indicators [query] secondary_boost (0.5)
    assert body["explain"]["indicators"] == {"like": 1.0, "view": 0.5}


def test_ur_fields_keep_the_prior_and_correlator_weights(served):
    """The personal part stays wrapped in function_score (the prior) and scored by
    rank_feature clauses under pagination, repeated rules, eventNames and negative biases."""
    _, data = served
    from indexer.backends import open_backend

    rec = Recommender(open_backend(IndexSettings(data_dir=str(data))), EventStore(data / "events.db"))
    full = rec.recommend({"user": "u", "num": 6, "explain": True})
    personal = full.explain["queries"][0]["query"]["bool"]["must"][0]
    assert "function_score" in personal
    clauses = personal["function_score"]["query"]["bool"]["should"]
    assert {next(iter(c)) for c in clauses} == {"rank_feature"}
    page = rec.recommend({"user": "u", "num": 2, "from": 2, "withRanks": True})
    assert [s.item for s in page.item_scores] == [s.item for s in full.item_scores][2:4]
    assert page.item_scores[0].ranks is not None
    ruled = rec.recommend({"user": "u", "rules": [{"name": "genre", "values": ["comedy"], "bias": 0},
                                                  {"name": "genre", "values": ["drama"], "bias": 0}]})
    assert not {"m2", "m6"} & {s.item for s in ruled.item_scores}
    only_views = rec.recommend({"user": "u", "eventNames": ["view"], "num": 1})
    assert [s.item for s in only_views.item_scores] == ["m5"]
    filtered = rec.recommend({"user": "u", "userBias": -1, "item": "m4", "explain": True})
    # m4's like correlators (m2, m1) point to m2, m3 (and m4, itself); u's history to m2, m4, m5:
    # m2 scored by the item, then the history's other items (less m4, the query item) by popularity
    assert [s.item for s in filtered.item_scores] == ["m2", "m5"]
    assert [s.source for s in filtered.item_scores] == [{"personal": ["like"]}, {"backfill": "popular"}]


def test_served_model_of_prefers_what_the_version_records():
    schema = IndexSchema(keyword_fields=("like", "view", "genre"), feature_fields=("like_w", "view_w"))
    inferred = served_model_of({"model_id": "x"}, schema, "v1", "x")
    assert (inferred.primary, inferred.indicators, inferred.source) == ("like", ("like", "view"), "index fields")
    recorded = served_model_of({"primary": "buy", "indicators": ["buy", "view"]}, schema, "v1")
    assert (recorded.primary, recorded.indicators, recorded.source) == ("buy", ("buy", "view"), "index")
    bare = served_model_of({}, IndexSchema(keyword_fields=("like", "genre")), "v1")
    assert bare.source == "none" and bare.keyword_fields == frozenset({"like", "genre"})


def test_a_manifest_recorded_in_the_version_meta_is_used(served):
    """When the indexer records the manifest's primary and indicators with the version."""
    _, data = served
    version = next((data / "items").glob("v*"))
    meta = json.loads((version / "meta.json").read_text())
    meta.update(primary="view", indicators=["view", "like"])
    (version / "meta.json").write_text(json.dumps(meta))
    rec = Recommender(EmbeddedBackend(data), EventStore(data / "events.db"))
    model = rec.served_model()
    assert (model.source, model.primary, model.indicators, model.model_id) == (
        "index", "view", ("view", "like"), "model-1")
    assert rec.blacklist_actions == ["view"]


@pytest.mark.parametrize("text, message", [
    ('[query]\nindicators = {like = 1.0, cart = 0.5}\n',
     "Error: [query] indicators: 'cart' is not an indicator of the served index version"),
    ('[query]\nindicators = ["rate", "cart"]\n', "'rate', 'cart' are not indicators"),
])
def test_configured_indicators_the_index_lacks_are_an_error(served, text, message):
    tmp_path, data = served
    cfg = config(tmp_path, f'[index]\ndata_dir = "{data}"\n' + text)
    for command in (["recommend", "--user", "u"], ["serve", "--port", "0"]):
        result = CliRunner().invoke(main, ["-c", cfg, *command])
        assert result.exit_code == 1, result.output
        assert message in result.output and "(its model's indicators: like, view)" in result.output
        assert "Hint: remove" in result.output and "Traceback" not in result.output


def test_train_section_serves_an_index_that_records_no_model(tmp_path, caplog):
    """A version indexed before versions recorded their model, and without correlator
    weights, tells nothing of its model: [train] says what it was trained with (checked
    against the index's fields)."""
    data = tmp_path / "data"
    index_model(write_model(tmp_path / "model"), IndexSettings(data_dir=str(data), correlator_weights=False))
    for meta_path in (data / "items").glob("v*/meta.json"):  # as an older cooccur wrote it
        meta = json.loads(meta_path.read_text())
        meta.pop("primary"), meta.pop("indicators")
        meta_path.write_text(json.dumps(meta))
    store = EventStore(data / "events.db")
    store.insert(parse_events({"event": "like", "entityType": "user", "entityId": "u", "targetEntityId": "m1",
                               "eventTime": "2026-01-01T00:00:00Z"}))
    store.close()
    cfg = config(tmp_path, f'[index]\ndata_dir = "{data}"\n[train]\nprimary = "like"\n'
                           '[[train.indicators]]\nname = "view"\n')
    result = recommend(cfg, "--user", "u", "--num", "10", "--json", "--explain")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["explain"]["model"]["source"] == "[train]" and body["explain"]["primary"] == "like"
    assert "m1" not in [s["item"] for s in body["itemScores"]]
    bad = config(tmp_path, f'[index]\ndata_dir = "{data}"\n[train]\nprimary = "like"\n'
                           '[[train.indicators]]\nname = "cart"\n')
    result = recommend(bad, "--user", "u")
    assert result.exit_code == 1 and "Error: [train] indicators: 'cart' is not an indicator" in result.output
    assert "(its fields: genre, like, view)" in result.output
    # nothing known at all: serving says what it falls back to
    rec = Recommender(EmbeddedBackend(data), None)
    with caplog.at_level(logging.WARNING, logger="query.recommender"):
        assert rec.check_model().source == "none"
    assert "records no model" in caplog.text


def test_recommender_api_without_config(served):
    """The Python API: a Recommender with default settings serves the index's model too."""
    _, data = served
    rec = Recommender(EmbeddedBackend(data), EventStore(data / "events.db"))
    assert rec.primary == "like" and rec.blacklist_actions == ["like"]
    assert rec.check_model().indicators == ("like", "view")
    configured = Recommender(EmbeddedBackend(data), None, QuerySettings(indicators=["like", "cart"]))
    with pytest.raises(ModelMismatch, match="'cart'"):
        configured.check_model()
    # at request time, after a switch to a version lacking one: served with the others
    assert [s.item for s in configured.recommend({"history": {"like": ["m1"]}, "num": 2}).item_scores] == [
        "m2", "m4"]
    assert isinstance(configured.served_model(), ServedModel)
