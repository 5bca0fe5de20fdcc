"""indicators.model: model locations on any pyarrow file system and the manifest publish."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from indicators.errors import StorageError
from indicators.model import (
    data_of,
    discard,
    iso,
    location,
    model_data,
    new_version,
    publish,
    read_manifest_at,
)


def write_version(model, tag: str) -> dict:
    """A version with one part file holding `tag`; its manifest (not yet published)."""
    model_id, data = new_version(model)
    (data / "indicators").mkdir()
    (data / "indicators" / "part-0.txt").write_text(tag)
    return {"format": "cooccur-model/1", "model_id": model_id, "data": f"versions/{model_id}", "tag": tag}


@pytest.mark.parametrize("where", ["local", "mock"])
def test_publish_switches_by_the_manifest_and_keeps_the_previous_version(tmp_path, where):
    model = location(tmp_path / "m" if where == "local" else "mock:///bucket/m")
    manifests = []
    for tag in ("one", "two", "three"):
        m = write_version(model, tag)
        # Until the manifest is written, readers see the previous model (or none).
        if manifests:
            assert read_manifest_at(model)["tag"] == manifests[-1]["tag"]
        publish(model, m)
        manifests.append(m)
        assert read_manifest_at(model) == m
        assert (model_data(model) / "indicators" / "part-0.txt").read_text() == tag
    # The current and the previous version stay; nothing else is left beside the manifest.
    assert (model / "versions").children() == sorted(m["model_id"] for m in manifests[1:])
    assert model.children() == ["manifest.json", "versions"]


def test_publish_into_a_first_layout_model_removes_its_parts(tmp_path):
    root = tmp_path / "m"
    (root / "indicators").mkdir(parents=True)
    (root / "state").mkdir()
    (root / "manifest.json").write_text(json.dumps({"format": "cooccur-model/1"}))
    model = location(root)
    assert data_of(model, read_manifest_at(model)).path == str(root)  # parts beside the manifest
    publish(model, write_version(model, "new"))
    assert sorted(p.name for p in root.iterdir()) == ["manifest.json", "versions"]


@pytest.mark.parametrize("data", ["/etc", "../other", "versions/../../x", 3])
def test_a_manifest_cannot_point_outside_its_model(tmp_path, data):
    with pytest.raises(ValueError, match="inside the model directory"):
        data_of(location(tmp_path), {"data": data})


def test_locations_of_paths_and_uris(tmp_path):
    local = location(tmp_path / "a")
    assert local.local and local.uri == local.path == str(tmp_path / "a")
    uri = location(f"file://{tmp_path}/a/")
    assert uri.local and uri.path == str(tmp_path / "a") and uri.uri == f"file://{tmp_path}/a"
    assert (uri / "b").uri == f"file://{tmp_path}/a/b"
    # One file system per scheme and authority: an in-memory store keeps what it was given.
    location("mock:///x").mkdir()
    location("mock:///x/f").write_text("kept")
    assert location("mock:///x/f").read_text() == "kept"


def test_uris_for_pyarrow_and_for_spark(tmp_path):
    # A local path: Spark gets file:// (never the cluster's default file system).
    assert (location(tmp_path / "a b") / "c.csv").spark_uri == f"file://{tmp_path}/a b/c.csv"
    # A URI: names are encoded into its path, before pyarrow's query options; Spark gets
    # them decoded, without the query, and s3a:// for s3:// (pyarrow opens s3a:// as s3://).
    s3 = location("s3a://bucket/m?region=us-east-1")
    assert (s3.fs.type_name, s3.path) == ("s3", "bucket/m")
    child = location("s3://bucket/m?region=us-east-1") / "d e%.csv"
    assert child.path == "bucket/m/d e%.csv"
    assert child.uri == "s3://bucket/m/d%20e%25.csv?region=us-east-1"
    assert child.spark_uri == "s3a://bucket/m/d e%.csv"
    assert (location("mock:///x") / "y").spark_uri == "mock:///x/y"


def test_a_file_system_pyarrow_cannot_open_is_a_clear_error():
    with pytest.raises(StorageError, match="^cannot open nosuch://host/m: Unrecognized filesystem") as e:
        location("nosuch://host/m")
    assert "hdfs://" in e.value.hint


def test_discarding_an_unpublished_version_leaves_the_model(tmp_path):
    model = location(tmp_path / "m")
    publish(model, write_version(model, "one"))
    _, data = new_version(model)
    discard(data)
    assert len((model / "versions").children()) == 1
    assert read_manifest_at(model)["tag"] == "one"


def test_iso_is_utc_with_a_z():
    t = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert iso(t) == "2026-03-01T10:00:00Z"
    assert iso(datetime(2026, 3, 1)) == "2026-03-01T00:00:00Z"
    assert iso(None) is None
