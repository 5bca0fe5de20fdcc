"""examples/movielens/run.sh end to end on the bundled cut of MovieLens (examples/movielens/
sample/): the script's `cooccur` lines, run in order through click's CliRunner (one shared
Spark session instead of a JVM per command), then its model served over HTTP."""

from __future__ import annotations

import csv
import json
import shlex
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "movielens"
SAMPLE = EXAMPLE / "sample"
MOVIELENS = ROOT.parent / "shared" / "data" / "ml-latest-small"


def script_commands(variables: dict[str, str]) -> list[list[str]]:
    """The arguments of each `cooccur ...` line of run.sh, with its shell variables filled in."""
    commands = []
    for line in (EXAMPLE / "run.sh").read_text().splitlines():
        if line.startswith("cooccur "):
            for name, value in variables.items():
                line = line.replace(f'"${name}"', shlex.quote(value)).replace(f"${name}", value)
            commands.append(shlex.split(line)[1:])
    return commands


def cut(data: Path, out: Path, movies: int = 25, users: int = 60) -> None:
    """The ratings of the most rated movies by their most active raters, their tags and those
    movies' rows: how examples/movielens/sample/ was made from ml-latest-small."""
    with open(data / "ratings.csv", newline="") as f:
        ratings = list(csv.DictReader(f))
    top = {m for m, _ in Counter(r["movieId"] for r in ratings).most_common(movies)}
    ratings = [r for r in ratings if r["movieId"] in top]
    raters = {u for u, _ in Counter(r["userId"] for r in ratings).most_common(users)}
    for name, keep in (("ratings.csv", lambda r: r["movieId"] in top and r["userId"] in raters),
                       ("tags.csv", lambda r: r["movieId"] in top),
                       ("movies.csv", lambda r: r["movieId"] in top)):
        with open(data / name, newline="") as f, open(out / name, "w", newline="") as g:
            reader = csv.DictReader(f)
            writer = csv.DictWriter(g, reader.fieldnames or [], lineterminator="\n")
            writer.writeheader()
            writer.writerows(r for r in reader if keep(r))


@pytest.mark.skipif(not MOVIELENS.is_dir(), reason=f"MovieLens is not at {MOVIELENS}")
def test_the_bundled_sample_is_the_cut_of_movielens(tmp_path):
    cut(MOVIELENS, tmp_path)
    for name in ("ratings.csv", "tags.csv", "movies.csv"):
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name


@pytest.mark.spark
@pytest.mark.slow  # a Spark job per evaluate, tune variant and train
def test_movielens_example_end_to_end(spark, tmp_path, monkeypatch):
    from evaluation import tuning

    # `tune` searches a grid of two settings here, one of them retraining (the full grid's
    # search is tests/test_tuning.py's): two trainings instead of six, the same commands.
    monkeypatch.setattr(tuning, "GRID", {"scoring": ("terms", "weights:log"), "min_llr": (0.0, 10.0)})
    monkeypatch.setattr(tuning, "BOOSTS", (0.0, 1.0))
    work = tmp_path / "out"
    work.mkdir()
    monkeypatch.chdir(work)
    runner = CliRunner()
    config = ["-c", str(EXAMPLE / "cooccur.toml")]
    outputs = []
    for args in script_commands({"DATA": str(SAMPLE), "HERE": str(EXAMPLE), "USERS": "60"}):
        result = runner.invoke(main, [*config, *args])
        assert result.exit_code == 0, f"cooccur {shlex.join(args)}:\n{result.output}"
        outputs.append((args, result))
    by_command = {" ".join(a[:2]): r for a, r in outputs}
    assert "rows = " in by_command["events import"].stdout
    assert json.loads((work / "evaluation.json").read_text())
    assert (work / "tuned.toml").read_text().strip()
    assert json.loads((work / "model" / "manifest.json").read_text())["properties"] == ["category", "title"]
    table = next(r for a, r in outputs if a[:3] == ["recommend", "--user", "1"])
    # user 1 has rated most of the cut's 25 movies: fewer than 10 unseen ones are left
    assert 0 < len(table.stdout.splitlines()) <= 10
    assert any("personal: " in line for line in table.stdout.splitlines())
    csv_out = [r for a, r in outputs if "--format" in a][0].stdout.splitlines()
    assert csv_out[0] == "rank,item,score,source,title" and 1 < len(csv_out) <= 6

    # ... and it serves: the same recommendations over HTTP.
    from indexer.backends import open_backend
    from indexer.settings import IndexSettings
    from query.eventstore import EventStore
    from query.recommender import Recommender
    from query.service import App

    app = App(Recommender(open_backend(IndexSettings()), EventStore("cooccur-data/events.db")))
    import io

    body = json.dumps({"user": "1", "num": 10}).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/queries.json", "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "QUERY_STRING": ""}
    status = {}
    answer = json.loads(b"".join(app(environ, lambda s, h: status.update(s=s))))
    assert status["s"] == "200 OK"
    assert [s["item"] for s in answer["itemScores"]] == [line.split()[1] for line in table.stdout.splitlines()]
