"""`cooccur config from-engine-json` through click: the file it writes loads with `cooccur -c`,
the report goes to stderr, and errors are `Error: ...` + hint, exit 1, no traceback."""

from __future__ import annotations

import json
import tomllib

import pytest
from click.testing import CliRunner
from test_engine_json import FULL_PIO, HANDMADE, HARNESS

from cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("engine", [HANDMADE, FULL_PIO, HARNESS], ids=["handmade", "full", "harness"])
def test_writes_a_config_cooccur_loads(tmp_path, engine):
    src, out = tmp_path / "engine.json", tmp_path / "conf" / "cooccur.toml"
    src.write_text(json.dumps(engine, indent=2))
    r = run("config", "from-engine-json", src, "-o", out)
    assert r.exit_code == 0, r.output
    assert r.stdout == ""
    assert f"converted {src}" in r.stderr and f"wrote {out}" in r.stderr
    assert "not carried over:" in r.stderr and "sparkConf[\"spark.kryo.registrator\"]: Mahout" in r.stderr
    text = out.read_text()
    assert "[train]" in text and "[query]" in text
    # The CLI's own loader (every section and key checked) accepts it (the embedded backend
    # here: the Harness example names an Elasticsearch cluster).
    listed = run("-c", out, "indexes", "--backend", "embedded", "--data-dir", tmp_path / "data")
    assert listed.exit_code == 0, listed.output


def test_prints_the_config_on_stdout_without_out(tmp_path):
    src = tmp_path / "engine.json"
    src.write_text(json.dumps(HANDMADE))
    r = run("config", "from-engine-json", src)
    assert r.exit_code == 0, r.output
    config = tomllib.loads(r.stdout)
    assert config["train"]["primary"] == "purchase"
    assert r.stdout.startswith("# cooccur config converted from")
    assert "carried over with a different meaning:" in r.stderr


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ('{\n  "algorithms": [\n    {"name": "ur",\n     "params": {"eventNames": ["buy"]]}\n  ]\n}',
     "invalid JSON at line 4, column 38"),
    ('{"engineId": "x", "algorithm": {"num": 3}}', "not a UR engine.json: no `eventNames` or `indicators`"),
    ('"just a string"', "the top level is a JSON string"),
])
def test_errors_are_clean(tmp_path, content, message):
    src = tmp_path / "engine.json"
    if content is not None:
        src.write_text(content)
    out = tmp_path / "out.toml"
    r = run("config", "from-engine-json", src, "-o", out)
    assert r.exit_code == 1
    assert r.stderr.startswith(f"Error: {src}")
    assert message in r.stderr and "\nHint: " in r.stderr
    assert "Traceback" not in r.output
    assert not out.exists()
