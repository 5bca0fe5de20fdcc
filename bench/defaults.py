"""Choose cooccur's shipped defaults: one setting for both of bench/quality.py's protocols,
chosen on their validation splits only (carved from each protocol's training part, as
`cooccur tune` does; the test parts are never read).

    python bench/defaults.py     # writes bench/results/defaults.json

The objective is the geometric mean over the protocols of validation MAP@10 relative to the
former defaults', so neither protocol's scale dominates: a default that helps a taste-like
(random) hold-out but hurts a next-item (temporal) one, or the reverse, loses to one that
does well on both. The search is query.tuning.search (coordinate descent over
query.tuning.GRID plus one boost for every secondary indicator) from each of STARTS; the
best point found wins (coordinate descent stops in local optima, so more starts, more
chances).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.movielens import DEFAULT_SOURCE, convert  # noqa: E402
from bench.quality import DATA, PROTOCOLS  # noqa: E402
from indexer.settings import IndexSettings  # noqa: E402
from query.evaluation import parse_split, read_checked  # noqa: E402
from query.settings import QuerySettings  # noqa: E402
from query.tuning import GRID, Candidate, Searcher, prepare_validation, search  # noqa: E402

RESULTS = REPO / "bench" / "results" / "defaults.json"
START = Candidate("terms", 0.0, 0.9, 100, 0.0, 50, (("secondary", 1.0),))
"""The former defaults (0.1.0): BM25 terms, no prior, history_decay 0.9, 100 events, no min LLR,
50 correlators, every indicator at boost 1. A shipped default cannot name a data set's actions:
the `secondary` boost applies to every indicator but the primary."""
STARTS = (START, Candidate("weights:log", 0.5, 1.0, 100, 0.0, 50, (("secondary", 1.0),)))
"""Where the searches start: the former defaults, and the best point of an earlier search
with fewer dimensions (no max_correlators, no boost)."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if not (DATA / "events.csv").exists():
        convert(a.source, DATA)
    from indicators.job import build_spark_session
    from indicators.settings import TrainSettings

    spark = build_spark_session("local[*]", {"spark.ui.showConsoleProgress": "false",
                                             "spark.driver.memory": "2g"}, app_name="cooccur-defaults")
    paths = [str(DATA / "events.csv"), str(DATA / "items.jsonl")]
    work = Path(tempfile.mkdtemp(prefix="cooccur-defaults-"))
    t0 = time.perf_counter()
    searchers: dict[str, tuple[Searcher, int]] = {}
    try:
        for proto in PROTOCOLS:
            train = TrainSettings(primary=proto.primary, indicators=[{"name": n} for n in proto.indicators])
            events, items = read_checked(spark, paths, train)
            validation = prepare_validation(spark, events, items, train, parse_split(proto.split, proto.seed),
                                            work / proto.name)
            log(f"[{proto.name}] validation {validation.split}: {len(validation.relevant)} users")
            searchers[proto.name] = (
                Searcher(spark, validation, train, IndexSettings(), QuerySettings(), [proto.ks[0]],
                         lambda line, n=proto.name: log(f"[{n}] {line}")),
                proto.ks[0])

        def value(c: Candidate, name: str) -> float:
            searcher, k = searchers[name]
            secondary = dict(c.boosts)["secondary"]
            everything = tuple((a, secondary) for a in searcher.train.actions[1:])
            return searcher.metrics(replace(c, boosts=everything))[k].map

        base = {name: value(START, name) for name in searchers}

        def objective(c: Candidate) -> float:
            return math.exp(sum(math.log(max(value(c, n), 1e-9) / base[n]) for n in searchers) / len(searchers))

        ends = [search(objective, start, log, a.rounds, "geometric mean of MAP ratios") for start in STARTS]
        chosen = max(ends, key=objective)
        tried = sorted({replace(c, boosts=(("secondary", c.boosts[0][1]),)) for s, _ in searchers.values()
                        for c in s.cache}, key=lambda c: -objective(c))
        result = {
            "command": "python bench/defaults.py" + (" " + " ".join(argv or sys.argv[1:]) if (argv or sys.argv[1:])
                                                     else ""),
            "created": datetime.now(UTC).strftime("%Y-%m-%d"),
            "grid": {k: list(v) for k, v in GRID.items()},
            "starts": [c.as_dict() for c in STARTS], "ends": [c.as_dict() for c in ends],
            "chosen": chosen.as_dict(),
            "validation_map": {n: {"start": round(base[n], 6), "chosen": round(value(chosen, n), 6)}
                               for n in searchers},
            "tried": [{**c.as_dict(), "objective": round(objective(c), 6),
                       **{f"map_{n}": round(value(c, n), 6) for n in searchers}} for c in tried],
            "seconds": round(time.perf_counter() - t0, 1),
        }
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(result, indent=2) + "\n")
    log(f"chosen {chosen.describe()}; wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
