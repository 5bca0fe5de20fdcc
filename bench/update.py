"""Incremental update benchmark: `cooccur update` beside a full retrain on the same events.

Per dataset and delta share (0.1 %, 1 %, 10 % by default), in ONE Spark session (the
settings of bench/train.py):

1. The events are split by TIME: the newest share is the delta (what production sees:
   yesterday's events on top of everything before), base and delta written as CSV files;
   the items file goes with the base.
2. train(base) once (untimed: the setup). Then `update(copy of base, [delta])`: one
   warm-up, then `--repeat` timed runs, each on a fresh copy of the base model (the copy
   is not timed); the median, with the update's per-stage timings and its report (new and
   changed users, rows re-scored per indicator, changed items).
3. Right beside it, a full train(base + delta) with the same warm protocol; the ratio
   update / train.
4. At the 1 % share, an exactness check: the updated model's indicators against the
   full train's (same rows, same ids in the same order, scores within 1e-9).
5. Once per dataset: the size of MODEL/state/ (pairs, interactions) of the full model, and
   the cost of saving it: train(every event) with save_state False and True, interleaved.

Peak memory: bench/train.py's process-tree RSS sampler; the update runs in this (the
driver) process after Spark has read the delta, so its `driver` figure is the one to
watch.

    python bench/update.py [--sets movielens,synth-5m] [--shares 0.001,0.01,0.1] [--repeat N]
    python bench/update.py --markdown    # the table of bench/results/update.json as Markdown

Writes bench/results/update.json and prints a table. Other engineers share the machine:
compare the ratios within one run, not seconds across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.train import (  # noqa: E402  (REPO must be on the path first)
    DATA,
    DATASETS,
    TIMEOUT_S,
    Dataset,
    RssSampler,
    Timeout,
    ensure_data,
    machine_info,
    timed_runs,
    write_results,
)

RESULTS = REPO / "bench" / "results" / "update.json"
SHARES = (0.001, 0.01, 0.1)
EXACT_SHARE = 0.01  # the share whose updated model is compared with the full train's
TOLERANCE = 1e-9


# --------------------------------------------------------------------------- the split


@dataclass(frozen=True)
class Split:
    """One time split of a dataset's events into a base and a delta file."""

    share: float
    base: Path
    delta: Path
    base_events: int
    delta_events: int
    delta_first_time: str
    delta_last_time: str


def time_order(table: pa.Table) -> np.ndarray:
    """Row order by event time, stable (ties keep file order). Epoch-second times sort as
    numbers; ISO-8601 times of one format sort as text."""
    t = table["time"]
    digits = pc.all(pc.match_substring_regex(t, r"^\d+$")).as_py()
    key = pc.cast(t, pa.int64()) if digits else t
    return pc.sort_indices(pa.table({"k": key}), sort_keys=[("k", "ascending")]).to_numpy()


def split_by_time(events_csv: Path, shares: tuple[float, ...], out: Path) -> list[Split]:
    """Write, per share, base-<share>.csv (older events) and delta-<share>.csv (the newest
    `share` of the events, at least one), in the input's own format."""
    table = pacsv.read_csv(events_csv, convert_options=pacsv.ConvertOptions(
        column_types={c: pa.string() for c in ("user", "event", "item", "time")}))
    table = table.take(pa.array(time_order(table)))
    out.mkdir(parents=True, exist_ok=True)
    splits = []
    for share in shares:
        n_delta = max(1, round(share * table.num_rows))
        cut = table.num_rows - n_delta
        base, delta = out / f"base-{share:g}.csv", out / f"delta-{share:g}.csv"
        # Ids and times here hold no comma or quote: unquoted, like the original files.
        opts = pacsv.WriteOptions(quoting_style="none")
        pacsv.write_csv(table.slice(0, cut), base, opts)
        pacsv.write_csv(table.slice(cut), delta, opts)
        splits.append(Split(share, base, delta, cut, n_delta,
                            table["time"][cut].as_py(), table["time"][-1].as_py()))
    return splits


# --------------------------------------------------------------------------- runs


def settings_for(ds: Dataset, master: str, save_state: bool = True):
    """bench/train.py's settings: every action an indicator, caps 500."""
    from indicators.settings import TrainSettings

    return TrainSettings(
        primary=ds.primary,
        indicators=[{"name": a} for a in ds.actions],
        max_interactions_per_user=500,
        max_users_per_item=500,
        save_state=save_state,
        spark_master=master,
    )


def _quiet(_line: str) -> None:
    """Stage lines of the job: the figures are in the reports."""


def timed_train(spark, paths: list[str], settings, out: Path, repeat: int, sampler: RssSampler,
                label: str) -> dict:
    """One warm-up train, then `repeat` timed; median seconds and per-stage timings."""
    from indicators.job import train

    try:
        figures, report = timed_runs(f"    {label}", lambda: train(spark, paths, settings, out, on_stage=_quiet),
                                     repeat, sampler, spark=spark)
    except Timeout as e:
        return {"timeout": True, "error": str(e), "timeout_s": TIMEOUT_S, "runs": e.runs}
    return {**figures, "users": report.users}


def timed_update(spark, base_model: Path, delta: Path, work: Path, repeat: int,
                 sampler: RssSampler) -> tuple[dict, Path]:
    """One warm-up update, then `repeat` timed, each in place on a fresh copy of the base
    model (as `cooccur update MODEL` runs); the copy is not timed. Returns the figures and
    the last updated model."""
    from indicators.update import update

    model = work / "updated"

    def fresh_copy() -> None:
        shutil.rmtree(model, ignore_errors=True)
        shutil.copytree(base_model, model)

    figures, report = timed_runs("    update", lambda: update(spark, model, [str(delta)], on_stage=_quiet),
                                 repeat, sampler, prepare=fresh_copy)
    return {
        **figures,
        "report": {
            "users": report.users,
            "new_users": report.new_users,
            "changed_users": report.changed_users,
            "new_interactions": report.new_interactions,
            "rescored_rows": report.rescored,
            "indicator_rows": {a: v["items"] for a, v in report.indicators.items()},
            "changed_items": report.changed_items,
            "input_rows": report.input.get("rows"),
        },
    }, model


# --------------------------------------------------------------------------- checks and sizes


def _version(model: Path) -> Path:
    """The directory of the model's published version (docs/model-format.md)."""
    from indicators.model import model_data

    return Path(model_data(model).path)


def _sorted_indicators(model: Path) -> pa.Table:
    files = sorted((_version(model) / "indicators").glob("*.parquet"))
    t = pq.ParquetDataset(files).read(columns=["indicator", "item", "correlators", "scores"])
    return t.sort_by([("indicator", "ascending"), ("item", "ascending")])


def compare_models(updated: Path, full: Path, tol: float = TOLERANCE) -> dict:
    """Every (indicator, item) row of two models: same rows, same correlator ids in the
    same order, scores within `tol`. Vectorised over the flattened lists."""
    a, b = _sorted_indicators(updated), _sorted_indicators(full)
    out = {"rows_updated": a.num_rows, "rows_full": b.num_rows, "tolerance": tol}
    same_keys = a.num_rows == b.num_rows and all(
        a[c].combine_chunks().equals(b[c].combine_chunks()) for c in ("indicator", "item"))
    if not same_keys:
        keys = lambda t: set(zip(t["indicator"].to_pylist(), t["item"].to_pylist(), strict=True))  # noqa: E731
        ka, kb = keys(a), keys(b)
        return {**out, "rows_compared": 0, "rows_only_updated": len(ka - kb),
                "rows_only_full": len(kb - ka), "ok": False}
    la, lb = a["correlators"].combine_chunks(), b["correlators"].combine_chunks()
    lengths_equal = pc.all(pc.equal(pc.list_value_length(la), pc.list_value_length(lb))).as_py()
    ids_equal = lengths_equal and la.flatten().equals(lb.flatten())
    sa = a["scores"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    sb = b["scores"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    max_diff = float(np.max(np.abs(sa - sb))) if ids_equal and len(sa) else (0.0 if ids_equal else None)
    mismatched_rows = None
    if not ids_equal:
        mismatched_rows = sum(x != y for x, y in zip(la.to_pylist(), lb.to_pylist(), strict=True))
    return {
        **out,
        "rows_compared": a.num_rows,
        "correlators_compared": len(la.flatten()),
        "ids_equal": bool(ids_equal),
        "rows_with_other_ids": mismatched_rows,
        "max_score_diff": max_diff,
        "ok": bool(ids_equal and max_diff is not None and max_diff <= tol),
    }


def du(path: Path) -> int:
    """Bytes of the files under `path`."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def state_size(model: Path) -> dict:
    """Size on disk (MB) of the model's published version and of its state/ parts."""
    mb = lambda b: round(b / 2**20, 1)  # noqa: E731
    state = _version(model) / "state"
    return {
        "model_mb": mb(du(_version(model))),
        "state_mb": mb(du(state)),
        "pairs_mb": mb(du(state / "pairs")),
        "interactions_mb": mb(du(state / "interactions")),
        "other_state_mb": mb(du(state) - du(state / "pairs") - du(state / "interactions")),
        "pair_rows": sum(pq.read_metadata(f).num_rows for f in (state / "pairs").glob("*.parquet")),
        "interaction_rows": sum(pq.read_metadata(f).num_rows
                                for f in (state / "interactions").glob("*.parquet")),
    }


def save_state_cost(spark, ds: Dataset, paths: list[str], work: Path, repeat: int) -> dict:
    """train() with save_state False and True, interleaved (a warm-up pair, then `repeat`
    timed pairs) so both see the same machine load; medians and per-stage timings."""
    from indicators.job import train

    master = spark.sparkContext.master
    runs: dict[bool, list[dict]] = {False: [], True: []}
    for i in range(repeat + 1):
        for save in (False, True):
            t = time.perf_counter()
            report = train(spark, paths, settings_for(ds, master, save_state=save), work / f"state-{save}",
                           on_stage=_quiet)
            seconds = time.perf_counter() - t
            print(f"    train save_state={save} {'warm-up' if i == 0 else f'run {i}'}: {seconds:.1f} s "
                  f"{report.timings}", file=sys.stderr)
            if i:
                runs[save].append({"seconds": round(seconds, 3), "stages": report.timings})
    med = {save: round(statistics.median(r["seconds"] for r in rs), 3) for save, rs in runs.items()}
    stages = {save: {k: round(statistics.median(r["stages"][k] for r in rs), 3) for k in rs[0]["stages"]}
              for save, rs in runs.items()}
    for save in runs:
        shutil.rmtree(work / f"state-{save}", ignore_errors=True)
    return {
        "paths": "base + delta of the last share (every event)",
        "seconds_false": med[False],
        "seconds_true": med[True],
        "stages_false": stages[False],
        "stages_true": stages[True],
        "runs_false": [r["seconds"] for r in runs[False]],
        "runs_true": [r["seconds"] for r in runs[True]],
        "ratio_true_over_false": round(med[True] / med[False], 3),
    }


# --------------------------------------------------------------------------- one dataset


def run_dataset(spark, ds: Dataset, shares: tuple[float, ...], repeat: int, sampler: RssSampler,
                work: Path) -> dict:
    """Every share of one dataset, then the state's size and cost."""
    master = spark.sparkContext.master
    items = str(ds.dir / "items.jsonl")
    splits = split_by_time(ds.dir / "events.csv", shares, work / "splits")
    r: dict = {"events": splits[0].base_events + splits[0].delta_events, "primary": ds.primary,
               "indicators": list(ds.actions), "shares": {}}
    full_model = work / "full"
    for sp in splits:
        print(f"  {ds.name} delta {sp.share:.1%}: {sp.delta_events:,} events "
              f"({sp.delta_first_time} .. {sp.delta_last_time})", file=sys.stderr)
        cell: dict = {"delta_events": sp.delta_events, "base_events": sp.base_events,
                      "delta_time_range": [sp.delta_first_time, sp.delta_last_time]}
        base_model = work / "base"
        t = time.perf_counter()
        from indicators.job import train

        train(spark, [str(sp.base), items], settings_for(ds, master), base_model, on_stage=_quiet)
        cell["base_train_seconds"] = round(time.perf_counter() - t, 3)
        cell["update"], updated = timed_update(spark, base_model, sp.delta, work, repeat, sampler)
        cell["train"] = timed_train(spark, [str(sp.base), str(sp.delta), items], settings_for(ds, master),
                                    full_model, repeat, sampler, "full train")
        if not cell["train"].get("timeout"):
            cell["ratio"] = round(cell["update"]["seconds"] / cell["train"]["seconds"], 3)
            if sp.share == EXACT_SHARE:
                cell["exact"] = compare_models(updated, full_model)
                print(f"    exactness: {cell['exact']}", file=sys.stderr)
        r["shares"][f"{sp.share:g}"] = cell
        print_table(table_rows({ds.name: r}))
    # The full model is base + delta = every event, whichever share trained it last.
    r["state"] = state_size(full_model)
    print(f"  state: {r['state']}", file=sys.stderr)
    last = splits[-1]
    r["save_state_cost"] = save_state_cost(spark, ds, [str(last.base), str(last.delta), items],
                                           work, repeat)
    r["repeat"] = repeat
    for d in ("base", "updated"):
        shutil.rmtree(work / d, ignore_errors=True)
    return r


# --------------------------------------------------------------------------- freshness


def _http(url: str, body: dict | list | None = None, timeout: float = 10.0) -> dict:
    """GET (no body) or POST JSON to the local service; the decoded JSON answer."""
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def _cli(*args: str, config: Path) -> None:
    """`cooccur -c CONFIG ARGS` in a child process (as an operator runs it); fails loudly."""
    done = subprocess.run([sys.executable, "-m", "cli", "-c", str(config), *args], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cooccur {' '.join(args)} failed: {done.stderr[-2000:]}")


def freshness(every: str, rounds: int, work: Path, limit_s: float = 600.0) -> dict:
    """Seconds from posting events to `cooccur serve --refresh-every` until a query sees them.

    MovieLens is trained and indexed (embedded backend); the service starts with
    --refresh-every EVERY --model MODEL. Per round, a new user likes two new items A and B
    through POST /events.json (a co-occurrence no model has), then POST /queries.json with
    the inline history {like: [A]} is polled every 0.5 s until B is a personal result.
    Each post waits a seeded random pause in [0, EVERY) first, so posts land at different
    points of the refresh cycle (the refresher sleeps EVERY between the end of one run and
    the start of the next)."""
    import random

    from indicators.settings import parse_duration

    every_s = parse_duration(every).total_seconds()
    rng = random.Random(0)
    ds = DATASETS["movielens"]
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = work / "cooccur.toml"
    config.write_text(
        '[train]\nprimary = "like"\n'
        + "".join(f'[[train.indicators]]\nname = "{a}"\n' for a in ds.actions)
        + f'[index]\ndata_dir = "{work / "index"}"\n[events]\npath = "{work / "events.db"}"\n'
    )
    model = work / "model"
    t = time.perf_counter()
    _cli("train", *ds.paths, "-o", str(model), config=config)
    _cli("index", str(model), config=config)
    setup_s = round(time.perf_counter() - t, 1)
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "-c", str(config), "serve", "--port", "0",
         "--refresh-every", every, "--model", str(model)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    out: dict = {"dataset": ds.name, "refresh_every": every, "setup_seconds": setup_s, "rounds": []}
    try:
        url = None
        for line in server.stderr:  # the ready line names the port the system chose
            if "serving on http://" in line:
                url = line.split("serving on ", 1)[1].split()[0]
                break
        if url is None:
            raise RuntimeError(f"cooccur serve exited ({server.wait()}) before serving")
        # Drain the rest of stderr so the pipe never fills and blocks the service.
        threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
        for k in range(1, rounds + 1):
            a, b, user = f"fresh{k}-a", f"fresh{k}-b", f"fresh{k}-user"
            pause = rng.uniform(0, every_s)
            time.sleep(pause)
            now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            posted = time.perf_counter()
            _http(f"{url}/events.json", [
                {"event": "like", "entityType": "user", "entityId": user, "targetEntityType": "item",
                 "targetEntityId": item, "eventTime": now} for item in (a, b)])
            seen, polls = None, 0
            while time.perf_counter() - posted < limit_s:
                polls += 1
                res = _http(f"{url}/queries.json", {"history": {"like": [a]}, "num": 5})
                if any(s["item"] == b and "personal" in s.get("source", {}) for s in res["itemScores"]):
                    seen = round(time.perf_counter() - posted, 2)
                    break
                time.sleep(0.5)
            refresh = _http(f"{url}/stats").get("refresh", {})
            rnd = {"round": k, "pause_before_post": round(pause, 2), "seconds_to_visible": seen, "polls": polls,
                   "version": res.get("version"),
                   "refresh": {key: refresh.get(key) for key in ("runs", "failures", "last_seconds", "last_result")}}
            print(f"    freshness round {k}: {rnd}", file=sys.stderr)
            out["rounds"].append(rnd)
            if seen is None:
                break
        seen_s = [r["seconds_to_visible"] for r in out["rounds"] if r["seconds_to_visible"] is not None]
        refresh_s = [r["refresh"]["last_seconds"] for r in out["rounds"] if r["refresh"].get("last_seconds")]
        out["summary"] = {
            "rounds_seen": len(seen_s), "rounds": len(out["rounds"]),
            "seconds_min": min(seen_s, default=None), "seconds_median": statistics.median(seen_s) if seen_s else None,
            "seconds_max": max(seen_s, default=None),
            "refresh_run_seconds_median": statistics.median(refresh_s) if refresh_s else None,
        }
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return out


# --------------------------------------------------------------------------- output


def table_rows(results: dict) -> list[tuple]:
    """(dataset, share, delta events, update s, train s, update/train, new users, changed
    users, rows re-scored (primary), changed items, update driver peak MB) rows."""
    rows = []
    for name, r in results.items():
        for share, c in r["shares"].items():
            u, t = c["update"], c.get("train", {})
            rep = u["report"]
            rows.append((
                name, f"{float(share):.1%}", f"{c['delta_events']:,}", f"{u['seconds']:.1f}",
                "timeout" if t.get("timeout") else f"{t['seconds']:.1f}",
                f"{c['ratio']:.2f}" if "ratio" in c else "",
                f"{rep['new_users']:,}", f"{rep['changed_users']:,}",
                f"{rep['rescored_rows'][r['primary']]:,}/{rep['indicator_rows'][r['primary']]:,}",
                f"{rep['changed_items']:,}",
                f"{u['memory']['peak_mb_by_kind'].get('driver', 0):,.0f}",
            ))
    return rows


HEAD = ("dataset", "delta", "delta events", "update s", "train s", "update/train", "new users",
        "changed users", "rows re-scored (primary)", "changed items", "update driver MB")


def print_table(rows: list[tuple]) -> None:
    """The table, aligned, on stdout."""
    cells = [HEAD, *rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(HEAD))]
    for row in cells:
        print("  ".join(str(x).ljust(widths[i]) if i == 0 or row is HEAD else str(x).rjust(widths[i])
                        for i, x in enumerate(row)))


def markdown(doc: dict) -> str:
    """The docs/update-benchmarks.md tables, from the JSON."""
    lines = ["| " + " | ".join(HEAD) + " |", "|---|" + "---:|" * (len(HEAD) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(doc["datasets"])]
    lines += ["", "| dataset | delta | update stages (s) | full train stages (s) |", "|---|---:|---|---|"]
    for name, r in doc["datasets"].items():
        for share, c in r["shares"].items():
            fmt = lambda st: ", ".join(f"{k} {v:.1f}" for k, v in st.items())  # noqa: E731
            lines.append(f"| {name} | {float(share):.1%} | {fmt(c['update']['stages'])} | "
                         f"{fmt(c['train'].get('stages', {}))} |")
    lines += ["", "| dataset | state MB (pairs + interactions + other) | pair rows | interaction rows "
              "| model MB | train s, save_state=False | train s, True | True/False | exact at 1% |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in doc["datasets"].items():
        s, c = r["state"], r["save_state_cost"]
        ex = r["shares"].get(f"{EXACT_SHARE:g}", {}).get("exact", {})
        exact = (f"{'yes' if ex.get('ok') else 'NO'}: {ex.get('rows_compared', 0):,} rows, "
                 f"{ex.get('correlators_compared', 0):,} ids, max score diff {ex.get('max_score_diff')}") if ex else ""
        lines.append(
            f"| {name} | {s['state_mb']} ({s['pairs_mb']} + {s['interactions_mb']} + {s['other_state_mb']}) "
            f"| {s['pair_rows']:,} | {s['interaction_rows']:,} | {s['model_mb']} | {c['seconds_false']} "
            f"| {c['seconds_true']} | {c['ratio_true_over_false']} | {exact} |")
    lines.append("")
    for name, m in doc.get("machine_runs", {}).items():
        edits = f" + working-tree edits of {', '.join(m['git_modified'])}" if m.get("git_modified") else ""
        code = f"commit {m['git_commit'][:7]}{edits}" if m.get("git_commit") else "commit not recorded"
        lines.append(f"- {name}: {m['date']}, {code}; load average {m['load_average_before']} before, "
                     f"{m.get('load_average_after')} after; "
                     f"{doc['datasets'][name].get('repeat', '?')} timed run(s) per cell.")
    fr = doc.get("freshness")
    if fr:
        code = f", commit {fr['git_commit'][:7]}" if fr.get("git_commit") else ""
        lines += ["", f"Freshness ({fr['dataset']}, `--refresh-every {fr['refresh_every']}`{code}, load average "
                  f"{fr.get('load_average')}):", "",
                  "| round | pause before post s | seconds until visible | refresh run s (as /stats read it) "
                  "| refresh result |", "|---:|---:|---:|---:|---|"]
        lines += [f"| {r['round']} | {r['pause_before_post']} | {r['seconds_to_visible']} "
                  f"| {r['refresh']['last_seconds']} | {r['refresh']['last_result']} |" for r in fr["rounds"]]
    return "\n".join(lines)


def code_version() -> dict:
    """The commit measured and the tracked files that differed from it (others edit the
    same working tree while a benchmark runs)."""
    git = lambda *args: subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,  # noqa: E731
                                       text=True).stdout.strip()
    return {"git_commit": git("rev-parse", "HEAD"),
            "git_modified": git("diff", "--name-only", "HEAD").splitlines()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="movielens,synth-5m", help="comma-separated: " + ",".join(DATASETS))
    p.add_argument("--shares", default=",".join(f"{s:g}" for s in SHARES),
                   help="delta shares of the events (the newest ones)")
    p.add_argument("--repeat", type=int, default=1, help="timed runs per cell after one warm-up")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="4g", help="spark.driver.memory (local mode: the heap)")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark settings")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--merge", action="store_true",
                   help="keep the other datasets already in --out (add or replace the ones run)")
    p.add_argument("--markdown", action="store_true", help="print --out's figures as Markdown tables")
    p.add_argument("--freshness", metavar="DURATION",
                   help="only the freshness measurement: `cooccur serve --refresh-every DURATION` "
                        "on MovieLens; its figures are added to --out")
    p.add_argument("--rounds", type=int, default=2, help="freshness rounds (events posted, then seen)")
    a = p.parse_args()

    if a.markdown:
        print(markdown(json.loads(a.out.read_text())))
        return
    if a.repeat < 1:
        p.error("--repeat must be at least 1")
    if a.freshness:
        ensure_data(DATASETS["movielens"])
        work = DATA / ".bench-update" / "freshness"
        result = {**freshness(a.freshness, a.rounds, work), "load_average": round(os.getloadavg()[0], 2),
                  **code_version()}
        shutil.rmtree(work, ignore_errors=True)
        doc = json.loads(a.out.read_text()) if a.out.exists() else {}
        doc["freshness"] = result
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(doc, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return

    from indicators.spark import build_spark_session

    sets = [DATASETS[s] for s in a.sets.split(",") if s]
    shares = tuple(float(s) for s in a.shares.split(",") if s)
    for ds in sets:
        ensure_data(ds)
    conf = {"spark.driver.memory": a.driver_memory, "spark.ui.showConsoleProgress": "false"}
    conf.update(dict(kv.split("=", 1) for kv in a.conf))
    sampler = RssSampler()
    spark = build_spark_session(a.master, conf, app_name="cooccur-bench-update")
    info = {**machine_info(spark, a.master, conf), **code_version()}
    results: dict[str, dict] = {}
    work_root = DATA / ".bench-update"
    shutil.rmtree(work_root, ignore_errors=True)
    try:
        for ds in sets:
            print(f"{ds.name}", file=sys.stderr)
            results[ds.name] = run_dataset(spark, ds, shares, a.repeat, sampler, work_root / ds.name)
            shutil.rmtree(work_root / ds.name, ignore_errors=True)
    finally:
        spark.stop()
        sampler.stop()
    info["load_average_after"] = round(os.getloadavg()[0], 2)
    # --merge keeps the other datasets and, e.g., the freshness figures of an earlier run.
    doc = write_results(a.out, info, results, merge=a.merge)
    print()
    print_table(table_rows(doc["datasets"]))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
