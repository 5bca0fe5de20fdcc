"""`train`, `update` (from files and from the event store) and `evaluate` on a real Spark
standalone cluster (tests/spark_cluster.py) give the same model and figures as local Spark.

The cluster runs are the CLI in a child process, as a user runs them: a config file with
`spark_master = "spark://..."`, the input and the model as file:// URIs (a shared mount's
form), PYSPARK_PYTHON naming this interpreter (docs/cluster.md). The local runs use the
suite's shared local session and plain paths.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner
from test_update import SETTINGS, generate, settings, write

from indicators.job import train
from indicators.model import location, model_data, read_manifest_at
from indicators.parts import read_table
from indicators.update import update

pytestmark = [pytest.mark.cluster, pytest.mark.spark]

REPO = Path(__file__).resolve().parents[1]


def config_text(master: str) -> str:
    """test_update's settings as a config file, on the given master."""
    lines = ["[train]", f'primary = "{SETTINGS["primary"]}"', f'spark_master = "{master}"']
    lines += [f"{k} = {SETTINGS[k]}" for k in ("max_interactions_per_user", "max_users_per_item", "seed")]
    # Executors of 512 MB: two of them fit the two 1 GB workers with room to spare. For tiny
    # jobs: a shuffle partition per executor core; no locality wait (a task on a persisted
    # partition would wait up to 3 s, spark.locality.wait, for the one core that holds it);
    # no driver UI (local sessions have none either). None of them changes a result.
    lines += ['spark_options = {"spark.executor.memory" = "512m", "spark.sql.shuffle.partitions" = "2", '
              '"spark.locality.wait" = "0s", "spark.ui.enabled" = "false"}']
    for ind in SETTINGS["indicators"]:
        lines += ["[[train.indicators]]", f'name = "{ind.name}"', f"max_correlators = {ind.max_correlators}"]
        if ind.min_llr is not None:
            lines.append(f"min_llr = {ind.min_llr}")
    lines += ["[train.rankings]", f'window = "{SETTINGS["rankings"]["window"]}"']
    return "\n".join(lines) + "\n"


def cooccur(config: Path, *args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    """The CLI in a child process (its own Spark driver); executors run `python`."""
    env = {**os.environ, "PYSPARK_PYTHON": python}
    return subprocess.run([sys.executable, "-m", "cli", "-c", str(config), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def comparable(model: str | Path) -> dict:
    """A model's content, sorted (blocks and part files differ between masters; what they
    hold may not): indicators, rankings, properties, and the counting state."""
    data = model_data(model)

    def rows(part: str, keys: list[str]) -> list[dict]:
        t = read_table(data / part)
        return t.sort_by([(k, "ascending") for k in keys]).to_pylist()

    interactions = read_table(data / "state" / "interactions").cast(pa.schema([
        ("action", pa.string()), ("user", pa.string()), ("item", pa.string()), ("h", pa.int64()),
        ("user_kept", pa.bool_()), ("kept", pa.bool_())]))
    items = read_table(data / "state" / "items.parquet")["item"]
    pairs = read_table(data / "state" / "pairs")
    # Pair files code items by position in items.parquet: compare by id.
    pairs = pa.table({"indicator": pairs["indicator"], "a": pc.take(items, pairs["a"]),
                      "b": pc.take(items, pairs["b"]), "k11": pairs["k11"]})
    manifest = read_manifest_at(location(model))
    return {
        "indicators": rows("indicators", ["indicator", "item"]),
        "rankings": rows("rankings", ["item"]),
        "properties": rows("properties", ["item", "name"]),
        "interactions": interactions.sort_by([(c, "ascending") for c in ("action", "user", "item")]).to_pylist(),
        "pairs": pairs.sort_by([(c, "ascending") for c in ("indicator", "a", "b")]).to_pylist(),
        "counts": {k: v for k, v in manifest["counts"].items() if k != "input"},
        "state": manifest["state"],
    }


@pytest.fixture(scope="module")
def runs(spark, spark_cluster, tmp_path_factory) -> dict:
    """Events split in three (base, new, stored later), the config, and the base model
    trained on the cluster (a file:// URI) and locally."""
    d = tmp_path_factory.mktemp("cluster")
    events = generate(seed=3, n=900)
    a, b = len(events) * 6 // 10, len(events) * 8 // 10
    config = d / "cooccur.toml"
    config.write_text(config_text(spark_cluster) + f'[events]\npath = "{d / "events.db"}"\n')
    (d / "base").mkdir()
    r = {"dir": d, "config": config, "base": write(d / "base" / "part-0.jsonl", events[:a]),
         "new": write(d / "new.jsonl", events[a:b]), "stored": write(d / "stored.jsonl", events[b:])}
    r["cluster"] = f"file://{d / 'cluster'}"
    # The cluster reads a directory URI; the local run the plain file in it.
    ok(cooccur(config, "train", f"file://{d / 'base'}", "-o", r["cluster"]))
    train(spark, [r["base"]], settings(), d / "local")
    return r


def test_train_on_the_cluster_equals_local(runs):
    d = runs["dir"]
    assert json.loads((d / "cluster" / "manifest.json").read_text())["settings"]["spark_master"].startswith(
        "spark://")
    assert comparable(runs["cluster"]) == comparable(d / "local")


def test_update_from_files_and_from_the_store_on_the_cluster_equals_local(spark, runs):
    d, config = runs["dir"], runs["config"]
    # From files: the model's master (the cluster) reads the new events.
    ok(cooccur(config, "update", runs["cluster"], f"file://{runs['new']}", "-o", f"file://{d / 'cluster-1'}"))
    update(spark, d / "local", [runs["new"]], d / "local-1")
    assert comparable(f"file://{d / 'cluster-1'}") == comparable(d / "local-1")
    # From the store: the events imported, then folded into the cluster's model in place.
    # Storing events runs no Spark: in this process.
    imported = CliRunner().invoke(__import__("cli").main, ["-c", str(config), "events", "import", runs["stored"]])
    assert imported.exit_code == 0, imported.output
    ok(cooccur(config, "update", f"file://{d / 'cluster-1'}", "--from-store"))
    update(spark, d / "local-1", [runs["stored"]], d / "local-2")
    got, want = comparable(f"file://{d / 'cluster-1'}"), comparable(d / "local-2")
    assert got["state"]["generation"] == 2
    assert got == want


def test_evaluate_on_the_cluster_equals_local(runs):
    args = ["evaluate", runs["base"], "--split", "leave-last:2", "-k", "5", "--json"]
    on_cluster = json.loads(ok(cooccur(runs["config"], *args)).stdout)
    local = CliRunner().invoke(__import__("cli").main, ["-c", str(runs["config"]), *args, "--master", "local[2]"])
    assert local.exit_code == 0, local.output
    def untimed(report: dict) -> list[dict]:
        return [{k: v for k, v in variant.items() if k != "seconds"} for variant in report["variants"]]

    assert untimed(on_cluster) == untimed(json.loads(local.stdout))
    assert on_cluster["variants"]


def test_executors_without_the_dependencies_fail_in_one_line(runs, tmp_path):
    """The issue's failure: executors running a Python without pyarrow. The job stops
    before any heavy work with an error and a one-line fix, no traceback."""
    bare = next((p for p in ("/usr/bin/python3", shutil.which("python3")) if p and subprocess.run(
        [p, "-c", "import pyarrow"], capture_output=True).returncode != 0), None)
    if bare is None:
        pytest.skip("no Python without pyarrow on this machine to run the executors with")
    done = cooccur(runs["config"], "train", runs["base"], "-o", str(tmp_path / "m"), python=bare)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert error and "cannot import" in error[0] and "pyarrow" in error[0] and bare in error[0], done.stderr
    assert any(line.startswith("Hint:") and "PYSPARK_PYTHON" in line for line in done.stderr.splitlines())
    assert not (tmp_path / "m").exists()
