"""Reader benchmark: the job's event reader (indicators/reader.py) before and after the
shared validator, side by side in one run.

Since issue 11 every row goes through the one event validator in Python workers
(`mapInArrow`) instead of Spark's native `from_csv` / `from_json` plus Spark column checks:
the same verdicts as `events import` and the HTTP API, at some cost per row. This measures
that cost on generated CSV and JSON-lines files (valid rows, a few bad ones).

Each code version (this checkout, and `--baseline REV` extracted with `git archive`) runs
in a child process with its own local Spark session: one warm-up read, then `--repeat`
timed reads of each file (`read_events` plus the counts it collects, and a count of the
accepted events, which forces the whole read); the median is reported.

    python bench/reader.py [--rows 300000] [--repeat 3] [--baseline REV | --no-baseline]

Writes bench/results/reader.json and prints a table. Other engineers share the machine:
compare the ratios within one run, not seconds across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.index import extract  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "reader.json"
BASELINE = "main"


def generate(rows: int, into: Path) -> dict[str, Path]:
    """A CSV and a JSON-lines file of `rows` events each (1 in 1,000 rows bad)."""
    rng = random.Random(7)
    csv_path, jsonl_path = into / "events.csv", into / "events.jsonl"
    with open(csv_path, "w") as c, open(jsonl_path, "w") as j:
        c.write("user,event,item,time\n")
        for k in range(rows):
            user, item = f"u{rng.randrange(rows // 20 + 1)}", f"i{rng.randrange(5000)}"
            event = rng.choice(["buy", "view", "view", "cart"])
            t = 1_767_225_600 + k
            bad = k % 1000 == 999
            c.write(f"{user},{event},{'' if bad else item},{t}\n")
            j.write(json.dumps({"event": event, "entityType": "user", "entityId": user,
                                "targetEntityType": "item", "targetEntityId": None if bad else item,
                                "eventTime": datetime.fromtimestamp(t, UTC).isoformat()}) + "\n")
    return {"csv": csv_path, "jsonl": jsonl_path}


CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from indicators.spark import build_spark_session
from indicators.reader import read_events
from indicators.settings import InputSettings
files, repeat = json.loads(sys.argv[2]), int(sys.argv[3])
spark = build_spark_session("local[2]", {"spark.ui.enabled": "false"})
out = {}
for kind, path in files.items():
    times = []
    for run in range(repeat + 1):
        started = time.perf_counter()
        data = read_events(spark, [path], InputSettings())
        accepted = data.events.count()
        if run:
            times.append(time.perf_counter() - started)
        spark.catalog.clearCache()  # the reader persists its rows
    c = data.counts
    out[kind] = {"median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times],
                 "rows": c.rows, "accepted": c.accepted, "rejected": c.rejected, "user_events": accepted}
spark.stop()
print("RESULT " + json.dumps(out))
"""


def measure(code: str, files: dict[str, Path], repeat: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, code, json.dumps({k: str(v) for k, v in files.items()}), str(repeat)],
        capture_output=True, text=True, cwd=code, timeout=3600,
        env={**os.environ, "PYTHONPATH": code},
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"the child for {code} failed:\n{done.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE, help="revision to compare with (default %(default)s)")
    parser.add_argument("--no-baseline", action="store_true", help="time this checkout only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cooccur-reader-") as tmp:
        files = generate(args.rows, Path(tmp))
        codes = [("after", str(ROOT))]
        if not args.no_baseline:
            (Path(tmp) / "baseline").mkdir()
            codes.insert(0, ("before", extract(args.baseline, Path(tmp) / "baseline")))
        results = {}
        for label, code in codes:
            print(f"measuring {label} ({code}) ...", file=sys.stderr)
            results[label] = measure(code, files, args.repeat)
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "rows": args.rows, "repeat": args.repeat,
              "baseline": None if args.no_baseline else args.baseline, "machine": platform.platform(),
              "cpus": os.cpu_count(), "results": results}
    print(f"{'file':8} {'version':8} {'median s':>9} {'rows/s':>10} {'accepted':>9} {'rejected':>9}")
    for label, by_kind in results.items():
        for kind, r in by_kind.items():
            print(f"{kind:8} {label:8} {r['median_s']:9.2f} {r['rows'] / r['median_s']:10,.0f} "
                  f"{r['accepted']:9,} {r['rejected']:9,}")
    if "before" in results:
        for kind in results["after"]:
            ratio = results["after"][kind]["median_s"] / results["before"][kind]["median_s"]
            report.setdefault("after_over_before", {})[kind] = round(ratio, 2)
            print(f"{kind}: after / before = {ratio:.2f}x the time")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"{time.perf_counter() - started:.0f} s in all", file=sys.stderr)
