"""`cooccur index / indexes / rollback / doctor` through click's CliRunner, on a small
hand-written model directory (docs/model-format.md)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli import main
from indexer.embedded import EmbeddedBackend


def write_model(root, extra_item: str | None = None):
    """Two indicators, a category and an availableDate property, rankings."""
    for part in ("indicators", "rankings", "properties"):
        (root / part).mkdir(parents=True)
    items = ["a", "b", "c"] + ([extra_item] if extra_item else [])
    pq.write_table(pa.table({
        "indicator": ["purchase", "purchase", "view", "view"],
        "item": ["a", "b", "a", "c"],
        "correlators": [["b", "c"], ["a"], ["c"], ["a", "b"]],
        "scores": [[3.0, 1.0], [2.0], [1.5], [4.0, 0.5]],
    }), root / "indicators" / "part-0.parquet")
    pq.write_table(pa.table({
        "item": items,
        "popular": [5.0, 2.0, 9.0] + ([1.0] if extra_item else []),
        "trending": [1.0, 0.0, -1.0] + ([0.0] if extra_item else []),
        "hot": [0.0, 0.0, 2.0] + ([0.0] if extra_item else []),
    }), root / "rankings" / "part-0.parquet")
    pq.write_table(pa.table({
        "item": ["a", "d", "c"],
        "name": ["category", "category", "availableDate"],
        "values": [["books", "new"], ["film"], ["2026-01-01T00:00:00Z"]],
    }), root / "properties" / "part-0.parquet")
    (root / "manifest.json").write_text(json.dumps({
        "format": "cooccur-model/1", "created": "2026-11-25T13:00:00Z", "cooccur_version": "0.1.0",
        "primary": "purchase", "indicators": ["purchase", "view"],
        "properties": ["category", "availableDate"], "newest_event": "2026-11-20T10:11:12Z",
        "settings": {}, "counts": {}, "timings": {},
    }))
    return root


@pytest.fixture
def runner():
    return CliRunner()


def test_index_then_list_then_rollback(runner, tmp_path):
    data = tmp_path / "data"
    model1 = write_model(tmp_path / "m1")
    model2 = write_model(tmp_path / "m2", extra_item="e")
    r = runner.invoke(main, ["index", str(model1), "--data-dir", str(data)])
    assert r.exit_code == 0, r.output
    assert "indexed 4 documents" in r.stdout and "documents/s" in r.stdout
    first = r.stdout.split("version ")[-1].strip()

    backend = EmbeddedBackend(data, "items")
    # the version records what it was trained for: serving reads its model from there
    (info,) = backend.versions()
    assert (info.primary, info.indicators) == ("purchase", ("purchase", "view"))
    assert info.schema is not None and "purchase_w" in info.schema.feature_fields
    docs = backend.get(["a", "c", "d"])
    assert docs["a"] == {"id": "a", "purchase": ["b", "c"], "view": ["c"], "category": ["books", "new"],
                         "popular": 5.0, "trending": 1.0, "hot": 0.0, "prior": pytest.approx(5 ** 0.5),
                         "purchase_w": {"b": 3.0, "c": 1.0}, "view_w": {"c": 1.5}}
    assert docs["c"]["availableDate"] == "2026-01-01T00:00:00Z"  # a date field, not a keyword array
    # property-only items get a document (prior: the floor, 1)
    assert docs["d"] == {"id": "d", "category": ["film"], "prior": 1.0}
    hits = backend.search({"query": {"range": {"availableDate": {"lte": "2026-06-01"}}}}).hits
    assert [h.id for h in hits] == ["c"]

    r = runner.invoke(main, ["index", str(model2), "--data-dir", str(data), "--keep", "2"])
    assert r.exit_code == 0, r.output
    second = r.stdout.split("version ")[-1].strip()

    r = runner.invoke(main, ["indexes", "--data-dir", str(data)])
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"  {first}") and "4 documents" in lines[0]
    assert lines[1].startswith(f"* {second}") and "5 documents" in lines[1]

    r = runner.invoke(main, ["rollback", "--data-dir", str(data)])
    assert r.exit_code == 0 and first in r.stdout
    assert backend.search({"size": 10}).version == first

    r = runner.invoke(main, ["rollback", "--data-dir", str(data)])
    assert r.exit_code == 1
    assert "Error: no version before" in r.output and "Traceback" not in r.output


def test_config_section_and_flag_override(runner, tmp_path):
    config = tmp_path / "cooccur.toml"
    config.write_text(f'[index]\ndata_dir = "{tmp_path / "from-config"}"\nname = "shop"\nkeep_versions = 1\n')
    model = write_model(tmp_path / "m")
    r = runner.invoke(main, ["-c", str(config), "index", str(model)])
    assert r.exit_code == 0, r.output
    assert EmbeddedBackend(tmp_path / "from-config", "shop").versions()[0].documents == 4
    r = runner.invoke(main, ["-c", str(config), "index", str(model), "--name", "other"])
    assert r.exit_code == 0, r.output
    assert len(EmbeddedBackend(tmp_path / "from-config", "other").versions()) == 1

    config.write_text("[index]\nkeep_version = 2\n")
    r = runner.invoke(main, ["-c", str(config), "indexes"])
    assert r.exit_code == 1 and "keep_version" in r.output and "Traceback" not in r.output


def test_missing_model_dir_is_a_clean_error(runner, tmp_path):
    r = runner.invoke(main, ["index", str(tmp_path / "nope"), "--data-dir", str(tmp_path / "d")])
    assert r.exit_code == 1
    assert "Error:" in r.output and "not a directory" in r.output and "Hint:" in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "d" / "items" / "CURRENT").exists()


def test_incomplete_model_dir_is_a_clean_error(runner, tmp_path):
    model = write_model(tmp_path / "m")
    (model / "manifest.json").unlink()
    r = runner.invoke(main, ["index", str(model), "--data-dir", str(tmp_path / "d")])
    assert r.exit_code == 1 and "no manifest.json" in r.output


def test_doctor(runner, tmp_path):
    data = tmp_path / "data"
    r = runner.invoke(main, ["doctor", "--data-dir", str(data)])
    assert r.exit_code == 1  # no index yet
    lines = dict(line.split(":", 1) for line in r.stdout.splitlines())
    assert lines["ok    java"] and lines["ok    data dir"]
    assert "no current version" in lines["FAIL  embedded index"] and "hint: run `cooccur index" in r.stdout

    runner.invoke(main, ["index", str(write_model(tmp_path / "m")), "--data-dir", str(data)])
    r = runner.invoke(main, ["doctor", "--data-dir", str(data)])
    assert r.exit_code == 0, r.output
    assert "4 documents" in r.stdout and "FAIL" not in r.stdout


def test_doctor_reports_an_unwritable_data_dir(runner, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = runner.invoke(main, ["doctor", "--data-dir", str(blocker / "sub")])
    assert r.exit_code == 1
    assert "FAIL  data dir" in r.stdout and "hint: choose a writable" in r.stdout
