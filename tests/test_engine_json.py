"""engine.json -> cooccur config: real Universal Recommender configs, what carries over, what
is listed as not carried over (and why), errors. No Spark.

The fixtures are the UR's own example files (trimmed to their parameters where long):
- actionml/universal-recommender examples/handmade-engine.json, engine.json (v0.7),
  examples/pop-engine.json (backfills, duration in seconds)
- the "Full Parameters" engine.json of actionml/docs.actionml.com ur_config.md (made valid
  JSON: it is written with // comments and placeholders there)
- actionml/harness rest-server/examples/ur/test_ur_event_aliases.json and the complete
  specification of docs/ur_configuration.md (values filled in)
"""

from __future__ import annotations

import json
import tomllib

import pytest

from cli import build_settings, check_config
from indexer.settings import IndexSettings
from indicators.settings import TrainSettings
from query.engine_json import EngineJsonError, convert, convert_file, dump_toml
from query.settings import EventSettings, QuerySettings

HANDMADE = {  # actionml/universal-recommender examples/handmade-engine.json
    "comment": " This config file uses default settings for all but the required values see README.md for docs",
    "id": "default",
    "description": "Default settings",
    "engineFactory": "com.actionml.RecommendationEngine",
    "datasource": {"params": {"name": "sample-handmade-data.txt", "appName": "handmade",
                              "eventNames": ["purchase", "view", "category-pref"], "minEventsPerUser": 3}},
    "sparkConf": {
        "spark.serializer": "org.apache.spark.serializer.KryoSerializer",
        "spark.kryo.registrator": "org.apache.mahout.sparkbindings.io.MahoutKryoRegistrator",
        "spark.kryo.referenceTracking": "false",
        "spark.kryoserializer.buffer": "300m",
        "es.index.auto.create": "true",
    },
    "algorithms": [{
        "comment": "simplest setup where all values are default, popularity based backfill, must add eventsNames",
        "name": "ur",
        "params": {
            "appName": "handmade", "indexName": "urindex", "typeName": "items",
            "comment": "must have data for the first event or the model will not build, other events are optional",
            "indicators": [{"name": "purchase"}, {"name": "view", "maxCorrelatorsPerItem": 50},
                           {"name": "category-pref", "maxCorrelatorsPerItem": 50}],
            "availableDateName": "available", "expireDateName": "expires", "dateName": "date", "num": 4,
        },
    }],
}

FULL_PIO = {  # docs.actionml.com ur_config.md, "Full Parameters"
    "id": "default",
    "description": "Default settings",
    "engineFactory": "org.template.RecommendationEngine",
    "datasource": {"params": {"name": "some-data", "appName": "URApp1", "eventNames": ["buy", "view"],
                              "eventWindow": {"duration": "3650 days", "removeDuplicates": False,
                                              "compressProperties": False}}},
    "sparkConf": {
        "spark.serializer": "org.apache.spark.serializer.KryoSerializer",
        "spark.kryo.registrator": "org.apache.mahout.sparkbindings.io.MahoutKryoRegistrator",
        "spark.kryo.referenceTracking": "false",
        "spark.kryoserializer.buffer.mb": "200",
        "spark.executor.memory": "4g",
        "es.index.auto.create": "true",
    },
    "algorithms": [{
        "name": "ur",
        "params": {
            "appName": "app1", "indexName": "urindex", "typeName": "items",
            "eventNames": ["buy", "view"],
            "indicators": [{"name": "buy"}, {"name": "view", "maxCorrelatorsPerItem": 50, "minLLR": 5}],
            "blacklistEvents": ["buy", "view"],
            "maxEventsPerEventType": 500,
            "maxCorrelatorsPerEventType": 50,
            "maxQueryEvents": 100,
            "num": 20,
            "seed": 3,
            "recsModel": "all",
            "rankings": [
                {"name": "popRank", "type": "popular", "eventNames": ["buy", "view"], "duration": "3 days",
                 "endDate": "2017-05-01T00:00:00Z"},
                {"name": "uniqueRank", "type": "random"},
                {"name": "weightRank", "type": "userDefined"},
            ],
            "expireDateName": "expireDateFieldName",
            "availableDateName": "availableDateFieldName",
            "dateName": "dateFieldName",
            "userBias": 2.0,
            "itemBias": -1,
            "returnSelf": True,
            "fields": [{"name": "categories", "values": ["Tablets"], "bias": 0},
                       {"name": "categories", "values": ["Phones"], "bias": -1},
                       {"name": "brand", "values": ["Apple", "Samsung"], "bias": 1.5}],
        },
    }],
}

HARNESS = {  # actionml/harness docs/ur_configuration.md, complete specification, values filled in
    "engineId": "ecom_ur",
    "engineFactory": "com.actionml.engines.ur.UREngine",
    "modelContainer": "/srv/models",
    "mirrorType": "localfs",
    "mirrorLocation": "/srv/mirror",
    "dataset": {"ttl": "356 days"},
    "sparkConf": {
        "master": "spark://spark-master:7077",
        "spark.serializer": "org.apache.spark.serializer.KryoSerializer",
        "spark.kryo.registrator": "org.apache.mahout.sparkbindings.io.MahoutKryoRegistrator",
        "spark.kryo.referenceTracking": "false",
        "spark.kryoserializer.buffer": "300m",
        "spark.executor.memory": "20g",
        "spark.driver.memory": "10g",
        "spark.es.index.auto.create": "true",
        "spark.es.nodes": "es-1,es-2:9201",
        "spark.es.nodes.wan.only": "true",
    },
    "algorithm": {
        "indicators": [
            {"name": "buy", "maxCorrelatorsPerItem": 40, "maxIndicatorsPerQuery": 60},
            {"name": "view", "minLLR": 2.5, "maxIndicatorsPerQuery": 80, "aliases": ["view", "detail"]},
        ],
        "blacklistIndicators": ["buy"],
        "maxEventsPerEventType": 300,
        "maxCorrelatorsPerEventType": 30,
        "maxQueryEvents": 50,
        "num": 12,
        "seed": 42,
        "recsModel": "collabFiltering",
        "expireDateName": "expires",
        "availableDateName": "available",
        "dateName": "published",
        "userBias": 1.5,
        "itemBias": 0,
        "itemSetBias": 2,
        "returnSelf": False,
        "rules": [{"name": "instock", "values": ["true"], "bias": -1}],
        "rankings": [{"name": "trendRank", "type": "trending", "indicatorNames": ["buy", "view"],
                      "duration": "7 days"}],
        "numESWriteConnections": 100,
    },
}


def load_every_section(sections: dict) -> dict:
    """The config as `cooccur -c` loads it: the CLI's own check, then each section's settings."""
    check_config(sections)
    return {name: build_settings(cls, sections.get(name), name)
            for name, cls in (("train", TrainSettings), ("index", IndexSettings),
                              ("query", QuerySettings), ("events", EventSettings))}


def params(notes) -> set[str]:
    return {n.param for n in notes}


def roundtrip(c) -> dict:
    """The TOML the command writes, read back; it must be the sections themselves."""
    loaded = tomllib.loads(c.toml())
    assert loaded == c.sections()
    return loaded


def test_pio_handmade_example(tmp_path):
    c = convert(HANDMADE, "handmade-engine.json")
    assert c.shape == "PredictionIO"
    s = load_every_section(roundtrip(c))
    train, index, query = s["train"], s["index"], s["query"]
    assert train.primary == "purchase"
    assert [(i.name, i.max_correlators, i.min_llr) for i in train.indicators] == [
        ("purchase", 50, None), ("view", 50, None), ("category-pref", 50, None)]
    assert train.min_events_per_user == 3
    assert (index.name, index.backend) == ("urindex", "embedded")
    assert {"available", "expires", "date"} <= set(index.date_fields)
    assert (query.num, query.available_date_field, query.expire_date_field) == (4, "available", "expires")
    # Not carried over, each with its reason; comments are not parameters.
    assert params(c.dropped) == {
        "id", "engineFactory", "datasource.params.name", "datasource.params.appName",
        "algorithms[0].params.appName", "algorithms[0].params.typeName",
        'sparkConf["spark.serializer"]', 'sparkConf["spark.kryo.registrator"]',
        'sparkConf["spark.kryo.referenceTracking"]', 'sparkConf["spark.kryoserializer.buffer"]',
        'sparkConf["es.index.auto.create"]'}
    assert all(n.text for n in c.dropped)
    assert "Mahout" in next(n.text for n in c.dropped if n.param == 'sparkConf["spark.kryo.registrator"]')
    assert "datasource.params.minEventsPerUser" in params(c.carried)


def test_pio_full_parameters_example():
    c = convert(FULL_PIO)
    s = load_every_section(roundtrip(c))
    train, index, query, events = s["train"], s["index"], s["query"], s["events"]
    assert train.actions == ["buy", "view"]
    assert train.indicator("view").min_llr == 5.0
    assert (train.max_interactions_per_user, train.max_users_per_item, train.seed) == (500, 500, 3)
    # The UR's N: only users with a primary event count.
    assert train.min_events_per_user == 1
    assert (train.rankings.events, train.rankings.window, train.rankings.end) == (
        ["buy", "view"], "3 days", "2017-05-01T00:00:00Z")
    assert train.spark_options == {"spark.executor.memory": "4g"}
    assert query.backfill == "popular"
    assert query.blacklist_actions == ["buy", "view"]
    assert (query.num, query.max_query_events, query.return_self) == (20, 100, True)
    assert (query.user_bias, query.item_bias) == (2.0, -1.0)
    assert query.rules == [{"name": "categories", "values": ["Tablets"], "bias": 0.0},
                           {"name": "categories", "values": ["Phones"], "bias": -1.0},
                           {"name": "brand", "values": ["Apple", "Samsung"], "bias": 1.5}]
    assert {"availableDateFieldName", "expireDateFieldName", "dateFieldName"} <= set(index.date_fields)
    assert events.retention == {"buy": 3650.0, "view": 3650.0}
    at = "algorithms[0].params"
    dropped = {n.param: n.text for n in c.dropped}
    assert "random" in dropped[f"{at}.rankings[1]"] and "userDefined" in dropped[f"{at}.rankings[2]"]
    assert f"{at}.rankings[0].name" in dropped
    assert {"datasource.params.eventWindow.removeDuplicates",
            "datasource.params.eventWindow.compressProperties"} <= set(dropped)
    different = {n.param: n.text for n in c.different}
    # Carried over, but the meaning differs: each says how.
    for p in (f"{at}.maxQueryEvents", f"{at}.maxEventsPerEventType", f"{at}.seed", f"{at}.rankings[0].duration",
              f"{at}.rankings[0].endDate", "datasource.params.eventWindow.duration", f"{at}.fields",
              f"{at}.indexName", "(users counted)"):
        assert p in different, p
    assert "per action" in different[f"{at}.maxQueryEvents"]
    # eventNames and indicators name the same actions here: both carried.
    assert {f"{at}.indicators", "datasource.params.eventNames"} <= params(c.carried)
    assert f"{at}.eventNames" in params(c.carried)


def test_harness_example():
    c = convert(HARNESS, "ur.json")
    assert c.shape == "Harness"
    s = load_every_section(roundtrip(c))
    train, index, query, events = s["train"], s["index"], s["query"], s["events"]
    assert [(i.name, i.max_correlators, i.min_llr) for i in train.indicators] == [
        ("buy", 40, None), ("view", 30, 2.5)]
    assert (train.max_interactions_per_user, train.seed, train.spark_master) == (300, 42, "spark://spark-master:7077")
    assert train.spark_options == {"spark.executor.memory": "20g", "spark.driver.memory": "10g"}
    assert (train.rankings.events, train.rankings.window) == (["buy", "view"], "7 days")
    assert index.name == "ecom_ur"
    assert index.backend == "elasticsearch"
    assert index.elasticsearch.urls == ["http://es-1:9200", "http://es-2:9201"]
    assert {"expires", "available", "published"} <= set(index.date_fields)
    assert (query.backfill, query.num, query.blacklist_actions) == ("none", 12, ["buy"])
    # maxIndicatorsPerQuery per indicator wins over maxQueryEvents; one length for all: the largest.
    assert query.max_query_events == 80
    # The UR treats an itemBias of 0 as 1 (no boost); cooccur's 0 would drop the item's part.
    assert (query.user_bias, query.item_bias, query.item_set_bias) == (1.5, 1.0, 2.0)
    assert query.rules == [{"name": "instock", "values": ["true"], "bias": -1.0}]
    assert events.retention == {"buy": 356.0, "view": 356.0}
    dropped = {n.param: n.text for n in c.dropped}
    assert "aliases" in next(p for p in dropped if p.endswith("indicators[1].aliases"))
    assert {"modelContainer", "mirrorType", "mirrorLocation", "algorithm.numESWriteConnections",
            "algorithm.maxQueryEvents", 'sparkConf["spark.es.nodes.wan.only"]'} <= set(dropped)
    different = {n.param for n in c.different}
    assert {"engineId", 'sparkConf["spark.es.nodes"]', "algorithm.indicators[1].maxIndicatorsPerQuery",
            "dataset.ttl", "algorithm.itemBias"} <= different


def test_harness_test_config_with_aliases():
    """actionml/harness rest-server/examples/ur/test_ur_event_aliases.json (Harness's own test)."""
    c = convert({
        "engineId": "test_ur",
        "engineFactory": "com.actionml.engines.ur.UREngine",
        "sparkConf": {"master": "local", "spark.driver-memory": "4g", "es.nodes": "172.31.49.150",
                      "spark.es.nodes": "172.31.49.150", "es.index.auto.create": "true"},
        "algorithm": {"indicators": [{"name": "purchase", "aliases": ["p1", "p2", "p3"]},
                                     {"name": "view", "aliases": ["v1", "v2"]}, {"name": "category-pref"}],
                      "num": 4},
    })
    s = load_every_section(roundtrip(c))
    assert s["train"].actions == ["purchase", "view", "category-pref"]
    assert s["train"].spark_master == "local"
    assert s["index"].elasticsearch.urls == ["http://172.31.49.150:9200"]
    assert {"algorithm.indicators[0].aliases", "algorithm.indicators[1].aliases"} <= params(c.dropped)


def test_old_backfill_field_with_seconds():
    """UR v0.2-0.4: backfillField / backfills with a duration in seconds (examples/pop-engine.json)."""
    c = convert({
        "id": "popularity-only",
        "engineFactory": "org.template.RecommendationEngine",
        "datasource": {"params": {"name": "sample-handmade-data.txt", "appName": "handmade",
                                  "eventNames": ["purchase", "view"]}},
        "algorithms": [{"name": "ur", "params": {
            "appName": "handmade", "indexName": "urindex", "typeName": "items",
            "eventNames": ["purchase", "view"], "recsModel": "backfill",
            "backfills": [{"name": "popRank", "backfillType": "hot", "eventNames": ["purchase", "view"],
                           "duration": 259200}]}}],
    })
    s = load_every_section(roundtrip(c))
    assert (s["query"].backfill, s["train"].rankings.window) == ("hot", "3 days")
    assert "algorithms[0].params.recsModel" in params(c.dropped)
    assert "algorithms[0].params.backfills[0].backfillType" in params(c.carried)


def test_eventnames_only_and_global_caps():
    c = convert({"algorithms": [{"name": "ur", "params": {
        "eventNames": ["buy", "view", "like"], "maxCorrelatorsPerEventType": 20, "maxEventsPerEventType": 100,
        "blacklistEvents": []}}]})
    s = load_every_section(roundtrip(c))
    assert [(i.name, i.max_correlators) for i in s["train"].indicators] == [("buy", 20), ("view", 20), ("like", 20)]
    assert (s["train"].max_interactions_per_user, s["train"].max_users_per_item) == (100, 100)
    assert s["query"].blacklist_actions == []
    assert "algorithms[0].params.maxCorrelatorsPerEventType" in params(c.carried)


def test_unknown_and_bad_parameters_are_listed_and_the_rest_converts():
    engine = json.loads(json.dumps(FULL_PIO))
    p = engine["algorithms"][0]["params"]
    p.update({"userbias": 3, "maxQueryEvent": 5, "num": "ten", "returnSelf": "yes", "shiny": True})
    p["fields"].append({"name": "color", "values": [], "bias": 1})
    p["rankings"][0]["duration"] = "soon"
    p["rankings"][0]["endDate"] = "ISO8601-date"
    engine["sparkConf"]["foo.bar"] = "1"
    engine["sparkConf"]["spark.ui.port"] = 4050
    c = convert(engine)
    s = load_every_section(roundtrip(c))
    at = "algorithms[0].params"
    dropped = {n.param: n.text for n in c.dropped}
    assert "did you mean userBias" in dropped[f"{at}.userbias"]
    assert "did you mean maxQueryEvents" in dropped[f"{at}.maxQueryEvent"]
    assert dropped[f"{at}.shiny"] == "not a Universal Recommender parameter"
    assert '"ten"' in dropped[f"{at}.num"] and '"yes"' in dropped[f"{at}.returnSelf"]
    assert f"{at}.fields[3].values" in dropped
    assert f"{at}.rankings[0].duration" in dropped and f"{at}.rankings[0].endDate" in dropped
    assert dropped['sparkConf["foo.bar"]'] == "not a Spark setting"
    # The good parts still carried over.
    assert s["query"].num == 20 and s["query"].return_self is False
    assert len(s["query"].rules) == 3
    assert s["train"].spark_options["spark.ui.port"] == "4050"
    # The report lists every one of them.
    report = "\n".join(c.report())
    assert all(n.param in report for n in c.dropped + c.different)


def test_toml_head_lists_what_was_not_carried_over():
    c = convert(HANDMADE, "engine.json")
    text = c.toml()
    head = [line for line in text.splitlines() if line.startswith("#")]
    assert any("not carried over:" in line for line in head)
    assert any('sparkConf["spark.kryo.registrator"]' in line for line in head)
    assert text.index("[train]") > text.index("not carried over:")


def test_toml_writer_round_trips_awkward_values():
    sections = {"train": {"primary": 'q"uo\\te\tx\x7f\u00e9', "indicators": [{"name": "a b"}],
                          "spark_options": {"spark.x.y": "1"}},
                "query": {"rules": [{"name": "n", "values": ["v"], "bias": -1.5}], "user_bias": 1e-9}}
    assert tomllib.loads(dump_toml(sections)) == sections


def test_the_ur_templates_own_engine_json_with_a_trailing_comma(tmp_path):
    """actionml/universal-recommender engine.json (v0.7) has a trailing comma; PredictionIO
    read it, and so does the conversion, with a remark."""
    path = tmp_path / "engine.json"
    path.write_text("""{
  "comment":" This config file uses default settings for all but the required values see README.md for docs",
  "id": "default",
  "description": "Default settings",
  "engineFactory": "org.template.RecommendationEngine",
  "datasource": {
    "params" : {
      "name": "sample-handmade-data.txt",
      "appName": "handmade",
      "eventNames": ["purchase", "view"],
    }
  },
  "algorithms": [
    {
      "name": "ur",
      "params": {
        "appName": "handmade",
        "indexName": "urindex",
        "typeName": "items",
        // must have data for the first event
        "indicators": [
          {"name": "purchase"},
          {"name": "view", "maxCorrelatorsPerItem": 50}
        ],
        "num": 4,
        "num": 5
      }
    }
  ]
}
""")
    c = convert_file(path)
    assert load_every_section(roundtrip(c))["train"].actions == ["purchase", "view"]
    remarks = "\n".join(map(str, c.remarks))
    assert "trailing commas" in remarks and "// comments" in remarks and "line 11, column 5" in remarks
    assert "num: given more than once" in remarks
    assert c.query["num"] == 5


@pytest.mark.parametrize("text, problem", [
    ('{\n  "algorithms": [\n    {"name": "ur" "params": {}}\n  ]\n}', "invalid JSON at line 3, column 19"),
    ("[1, 2]", "the top level is a JSON array"),
    ('{"foo": 1}', "no `algorithms` (PredictionIO template) or `algorithm` (Harness) section"),
    ('{"algorithms": [{"name": "ur", "params": {"appName": "x"}}]}', "no `eventNames` or `indicators`"),
    ('{"engineId": "x", "engineFactory": "com.actionml.templates.cb.CBEngine", "algorithm": {}}',
     "is not the Universal Recommender"),
    ('{"algorithm": {"indicators": [{"maxCorrelatorsPerItem": 3}]}}', "the primary indicator needs a name"),
    ('{"algorithm": {"indicators": []}}', "must be a non-empty list"),
])
def test_not_a_ur_engine_json_is_an_error_with_file_and_path(tmp_path, text, problem):
    path = tmp_path / "engine.json"
    path.write_text(text)
    with pytest.raises(EngineJsonError) as e:
        convert_file(path)
    assert problem in str(e.value)
    assert e.value.file == str(path) and str(e.value).startswith(str(path))
    assert e.value.hint


def test_error_path_names_the_offending_value(tmp_path):
    path = tmp_path / "engine.json"
    path.write_text(json.dumps({"algorithm": {"indicators": [{"maxCorrelatorsPerItem": 3}]}}))
    with pytest.raises(EngineJsonError) as e:
        convert_file(path)
    assert e.value.path == "algorithm.indicators[0]"


def test_missing_file(tmp_path):
    with pytest.raises(EngineJsonError, match="no such file") as e:
        convert_file(tmp_path / "nope.json")
    assert e.value.file == str(tmp_path / "nope.json")
