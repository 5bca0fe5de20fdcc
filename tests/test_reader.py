"""Reading events: every format, every kind of bad row, line numbers, counts in = out."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from indicators.errors import InputNotFound, JobError, StorageError
from indicators.model import Location, location
from indicators.reader import expand_paths, read_events
from indicators.settings import InputSettings

pytestmark = pytest.mark.spark


def events_of(data) -> list[tuple]:
    return sorted(
        (r.user, r.event, r.item, r.time.isoformat() if r.time else None) for r in data.events.collect()
    )


def bad_rows(data) -> list[tuple]:
    return [(r.file.rsplit("/", 1)[-1], r.line, r.field, r.problem) for r in data.first_rejected(100)]


def test_csv_with_bad_rows_names_file_line_field(spark, tmp_path):
    f = tmp_path / "ev.csv"
    f.write_text(
        "user,event,item,time\n"            # 1
        "u1,view,i1,2026-01-01T10:00:00Z\n"  # 2 ok
        "u2,view,,2026-01-01\n"              # 3 item missing
        "\n"                                 # 4 blank: skipped, counted apart
        "u3,buy,i3,1767225600\n"             # 5 ok (epoch seconds)
        '"u,4",view,i4,yesterday\n'          # 6 unparseable time
        ",view,i5,2026-01-02\n"              # 7 user missing
        "u6,,i6,2026-01-02\n"                # 8 event missing
    )
    data = read_events(spark, [str(f)], InputSettings())
    c = data.counts
    assert (c.rows, c.accepted, c.rejected, c.blank_lines) == (6, 2, 4, 1)
    assert c.rows == c.accepted + c.rejected
    assert bad_rows(data) == [
        ("ev.csv", 3, "item", "is required (the item the user acted on)"),
        ("ev.csv", 6, "time", "'yesterday' is not an ISO-8601 date/time"),
        ("ev.csv", 7, "user", "is required"),
        ("ev.csv", 8, "event", "is required"),
    ]
    assert events_of(data) == [
        ("u1", "view", "i1", "2026-01-01T10:00:00"),
        ("u3", "buy", "i3", "2026-01-01T00:00:00"),
    ]


def test_line_numbers_across_files_and_splits(spark, tmp_path):
    # Small splits force several partitions per file: line numbers must still be exact.
    spark.conf.set("spark.sql.files.maxPartitionBytes", "2048")
    try:
        lines = ["user,event,item,time"] + [f"u{k},view,i{k % 50},2026-01-01" for k in range(1, 800)]
        bad_at = {37, 412, 799}
        for n in bad_at:
            lines[n - 1] = f"u{n},view,,2026-01-01"
        (tmp_path / "a.csv").write_text("\n".join(lines) + "\n")
        (tmp_path / "b.csv").write_text("user,event,item,time\nu1,view,i1,nope\n")
        data = read_events(spark, [str(tmp_path)], InputSettings())
        assert data.counts.rows == 799 + 1
        assert [(f, line) for f, line, _, _ in bad_rows(data)] == [
            ("a.csv", 37), ("a.csv", 412), ("a.csv", 799), ("b.csv", 2)
        ]
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")


def test_tsv_and_configured_columns(spark, tmp_path):
    f = tmp_path / "ev.tsv"
    f.write_text("who\twhat\tthing\twhen\nu1\tview\ti1\t2026-01-01\nu2\tbuy\ti2\t2026-01-02T00:00:00+02:00\n")
    settings = InputSettings(user="who", event="what", item="thing", time="when")
    data = read_events(spark, [str(f)], settings)
    assert events_of(data) == [
        ("u1", "view", "i1", "2026-01-01T00:00:00"),
        ("u2", "buy", "i2", "2026-01-01T22:00:00"),
    ]


def test_csv_missing_column_is_an_error_naming_file_and_columns(spark, tmp_path):
    f = tmp_path / "ev.csv"
    f.write_text("user,action,item,time\nu1,view,i1,2026-01-01\n")
    with pytest.raises(JobError, match=r"ev.csv:1: header has no column 'event'"):
        read_events(spark, [str(f)], InputSettings())


def test_pio_json_lines(spark, tmp_path):
    rows = [
        {"event": "view", "entityType": "user", "entityId": "u1", "targetEntityType": "item",
         "targetEntityId": "i1", "eventTime": "2026-01-01T00:00:00.000Z"},
        {"event": "$set", "entityType": "item", "entityId": "i1",
         "properties": {"category": ["c1", "c2"], "expireDate": "2026-03-01"}},
        {"event": "rate", "entityType": "user", "entityId": "u1"},  # no target item
        {"event": "$set", "entityType": "user", "entityId": "u1", "properties": {"age": 3}},  # unused
    ]
    lines = [json.dumps(r) for r in rows] + ["{not json", '{"event": "view", "entityType": "user", '
             '"entityId": "u2", "targetEntityId": "i2", "eventTime": "someday"}']
    f = tmp_path / "ev.jsonl"
    f.write_text("\n".join(lines) + "\n")
    data = read_events(spark, [str(f)], InputSettings())
    c = data.counts
    assert (c.rows, c.user_events, c.item_events, c.ignored, c.rejected) == (6, 1, 1, 1, 3)
    assert bad_rows(data) == [
        ("ev.jsonl", 3, "targetEntityId", "is required (the item the user acted on)"),
        ("ev.jsonl", 5, "(line)", "not JSON: Expecting property name enclosed in double quotes at column 2"),
        ("ev.jsonl", 6, "eventTime", "'someday' is not an ISO-8601 date/time"),
    ]
    assert events_of(data) == [("u1", "view", "i1", "2026-01-01T00:00:00")]
    props = data.item_events.collect()
    assert [(p.item, p.event, json.loads(p.properties)) for p in props] == [
        ("i1", "$set", {"category": ["c1", "c2"], "expireDate": "2026-03-01"})
    ]


def test_parquet_rows_are_numbered_by_row(spark, tmp_path):
    table = pa.table({
        "user": ["u1", "u2", None],
        "event": ["view", "buy", "view"],
        "item": ["i1", "i2", "i3"],
        "time": ["2026-01-01", "2026-01-02", "2026-01-03"],
    })
    pq.write_table(table, tmp_path / "ev.parquet")
    data = read_events(spark, [str(tmp_path / "ev.parquet")], InputSettings())
    assert data.counts.rows == 3 and data.counts.rejected == 1
    assert bad_rows(data) == [("ev.parquet", 3, "user", "is required")]
    assert [e[:3] for e in events_of(data)] == [("u1", "view", "i1"), ("u2", "buy", "i2")]


def test_iter_rejected_streams_all_bad_rows(spark, tmp_path):
    f = tmp_path / "ev.csv"
    f.write_text("user,event,item,time\n" + "".join(f"u{k},view,,2026-01-01\n" for k in range(30)))
    data = read_events(spark, [str(f)], InputSettings())
    rejected = list(data.iter_rejected())
    assert [r.line for r in rejected] == list(range(2, 32))
    assert rejected[0].text == "u0,view,,2026-01-01"


def test_paths_files_dirs_globs(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "_temporary").mkdir()
    (tmp_path / "d" / "a.csv").write_text("x")
    (tmp_path / "d" / "sub" / "b.jsonl").write_text("x")
    (tmp_path / "d" / "_SUCCESS").write_text("")
    (tmp_path / "d" / ".hidden.csv").write_text("x")
    (tmp_path / "d" / "_temporary" / "c.csv").write_text("x")  # an unfinished Spark write
    found = expand_paths([str(tmp_path / "d")], "auto")
    assert {k: [f.uri for f in v] for k, v in found.items()} == {
        "csv": [f"{tmp_path}/d/a.csv"], "jsonl": [f"{tmp_path}/d/sub/b.jsonl"]
    }
    assert found["csv"][0].spark_uri == f"file://{tmp_path}/d/a.csv"
    assert list(expand_paths([str(tmp_path / "d" / "*.csv")], "auto")) == ["csv"]
    assert [f.name for f in expand_paths([str(tmp_path / "*" / "s?b" / "*")], "auto")["jsonl"]] == ["b.jsonl"]
    with pytest.raises(InputNotFound, match="no input at"):
        expand_paths([str(tmp_path / "missing.csv")], "auto")
    with pytest.raises(InputNotFound, match="no input at"):
        expand_paths([str(tmp_path / "d" / "*.parquet")], "auto")
    (tmp_path / "e.txt").write_text("x")
    with pytest.raises(InputNotFound, match="unknown file type"):
        expand_paths([str(tmp_path / "e.txt")], "auto")


def on_store(root: Path):
    """A resolver mapping s3://, s3a:// and hdfs:// URIs into a local directory through
    pyarrow's SubTreeFileSystem: the listing code runs on a non-local file system offline.
    Paths are pyarrow's S3 form (bucket/key); an hdfs authority becomes a directory."""
    fs = pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem())

    def resolve(uri: str) -> Location:
        parts = urlsplit(uri)
        return Location(fs, f"{parts.netloc}{unquote(parts.path)}".rstrip("/"), uri)

    return resolve


def test_uri_inputs_are_listed_through_the_file_system(tmp_path):
    for name in ("2026-01/a.csv", "2026-01/_SUCCESS", "2026-02/b c.csv", "2026-02/d.jsonl", ".x/e.csv"):
        (tmp_path / "bucket" / "ev" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "bucket" / "ev" / name).write_text("x")
    resolve = on_store(tmp_path)

    found = expand_paths(["s3://bucket/ev"], "auto", resolve=resolve)
    # Named as written (s3://, a URI: percent-encoded); Spark gets its connector's scheme, decoded.
    assert [(f.uri, f.spark_uri) for f in found["csv"]] == [
        ("s3://bucket/ev/2026-01/a.csv", "s3a://bucket/ev/2026-01/a.csv"),
        ("s3://bucket/ev/2026-02/b%20c.csv", "s3a://bucket/ev/2026-02/b c.csv"),
    ]
    assert [f.uri for f in found["jsonl"]] == ["s3://bucket/ev/2026-02/d.jsonl"]
    # Globs level by level; s3a:// as Spark users write it; a query (pyarrow's options) kept
    # for pyarrow, left out for Spark.
    glob = expand_paths(["s3a://bucket/ev/*/*.csv", "s3://bucket/ev/2026-0[2]?region=x"], "auto", resolve=resolve)
    assert [(f.uri, f.spark_uri) for f in glob["csv"]] == [
        ("s3://bucket/ev/2026-02/b%20c.csv?region=x", "s3a://bucket/ev/2026-02/b c.csv"),
        ("s3a://bucket/ev/2026-01/a.csv", "s3a://bucket/ev/2026-01/a.csv"),
        ("s3a://bucket/ev/2026-02/b%20c.csv", "s3a://bucket/ev/2026-02/b c.csv"),
    ]
    assert [f.spark_uri for f in expand_paths(["s3://bucket/*/2026-02/d.jsonl"], "auto", resolve=resolve)["jsonl"]
            ] == ["s3a://bucket/ev/2026-02/d.jsonl"]
    (tmp_path / "namenode" / "logs").mkdir(parents=True)
    (tmp_path / "namenode" / "logs" / "e.parquet").write_text("x")
    hdfs = expand_paths(["hdfs://namenode/logs/*.parquet"], "auto", resolve=resolve)
    assert [(f.uri, f.spark_uri) for f in hdfs["parquet"]] == [
        ("hdfs://namenode/logs/e.parquet", "hdfs://namenode/logs/e.parquet")]

    for missing in ("s3://bucket/nothing", "s3://bucket/ev/*.tsv", "hdfs://namenode/logs/2027-*"):
        with pytest.raises(InputNotFound, match=re.escape(f"no input at {missing}")) as e:
            expand_paths([missing], "auto", resolve=resolve)
        assert e.value.hint
    (tmp_path / "bucket" / "done").mkdir()
    (tmp_path / "bucket" / "done" / "_SUCCESS").write_text("")
    with pytest.raises(InputNotFound, match="^s3://bucket/done holds no event files"):
        expand_paths(["s3://bucket/done"], "auto", resolve=resolve)
    with pytest.raises(InputNotFound, match="not in the scheme or host"):
        expand_paths(["s3://buck*/ev"], "auto", resolve=resolve)


def test_uri_inputs_on_pyarrows_own_file_systems(tmp_path):
    # pyarrow's in-memory store through the default resolver (indicators.model.location).
    location("mock:///inputs/ev").mkdir()
    (location("mock:///inputs/ev") / "a.csv").write_text("user,event,item,time\n")
    found = expand_paths(["mock:///inputs/ev/*.csv"], "auto")
    assert [(f.uri, f.read_text()) for f in found["csv"]] == [("mock:///inputs/ev/a.csv", "user,event,item,time\n")]
    # file:// is the local disk, named as written.
    (tmp_path / "a b").mkdir()
    (tmp_path / "a b" / "x.jsonl").write_text("x")
    uri = f"file://{quote(str(tmp_path / 'a b'))}"
    assert [(f.uri, f.spark_uri) for f in expand_paths([uri], "auto")["jsonl"]] == [
        (f"{uri}/x.jsonl", f"file://{tmp_path}/a b/x.jsonl")]
    with pytest.raises(InputNotFound, match=f"no input at {re.escape(uri)}/y.csv"):
        expand_paths([f"{uri}/y.csv"], "auto")


def test_a_scheme_pyarrow_cannot_open_here_says_what_it_needs(monkeypatch):
    with pytest.raises(StorageError, match="^cannot open nosuch://x/ev: ") as e:
        expand_paths(["nosuch://x/ev"], "auto")
    assert "hdfs://" in e.value.hint and "s3://" in e.value.hint
    if pafs_hdfs_loads():
        pytest.skip("libhdfs loads here: hdfs:// is openable")
    with pytest.raises(StorageError, match="^cannot open hdfs://127.0.0.1:9/ev: [^\n]+$") as e:
        expand_paths(["hdfs://127.0.0.1:9/ev"], "auto")
    assert "libhdfs" in e.value.hint and "HADOOP_HOME" in e.value.hint


def pafs_hdfs_loads() -> bool:
    """Whether pyarrow finds libhdfs and a JVM here (then hdfs:// would try to connect)."""
    import os

    return bool(os.environ.get("ARROW_LIBHDFS_DIR") or os.environ.get("HADOOP_HOME"))

def test_file_uris_read_as_the_plain_paths_and_bad_rows_are_named_as_written(spark, tmp_path):
    d = tmp_path / "ev dir"  # a space: URIs percent-encode it, Spark reports it encoded
    (d / "sub").mkdir(parents=True)
    (d / "a.csv").write_text("user,event,item,time\nu1,view,i1,2026-01-01\nu2,view,,2026-01-02\n")
    (d / "sub" / "b.csv").write_text("user,event,item,time\nu3,buy,i1,2026-01-03\n")
    (d / "c.jsonl").write_text(json.dumps({"event": "$set", "entityType": "item", "entityId": "i1",
                                           "properties": {"category": ["x"]}}) + "\n")
    uri = f"file://{quote(str(d))}"
    plain = read_events(spark, [str(d)], InputSettings())
    # A directory, a glob and a single file, as URIs.
    data = read_events(spark, [f"{uri}/sub", f"{uri}/*.csv", f"{uri}/c.jsonl"], InputSettings())
    assert data.counts == plain.counts
    assert events_of(data) == events_of(plain)
    assert [r.item for r in data.item_events.collect()] == ["i1"]
    assert [(r.file, r.line, r.field) for r in data.first_rejected()] == [(f"{uri}/a.csv", 3, "item")]
    assert [(r.file, r.line) for r in plain.first_rejected()] == [(f"{d}/a.csv", 3)]
    with pytest.raises(JobError, match=re.escape(f"{uri}/sub/b.csv:1: header")):
        (d / "sub" / "b.csv").write_text("who,event,item,time\n")
        read_events(spark, [f"{uri}/*.csv", f"{uri}/sub"], InputSettings())
