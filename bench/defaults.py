"""Choose cooccur's shipped defaults: one setting for both of bench/quality.py's protocols,
chosen on their validation splits only (carved from each protocol's training part, as
`cooccur tune` does; the test parts are never read).

    python bench/defaults.py     # writes bench/results/defaults.json

The goal of the defaults is to beat the recommenders a user could pick instead on both
protocols, so the objective is the smaller, over the two protocols, of validation MAP@10
relative to the best peer's validation MAP@10 on the same split (popularity, Microsoft's
SAR and implicit's item-item cosine, as bench/quality.py runs them): a default that helps a
taste-like (random) hold-out but loses a next-item (temporal) one, or the reverse, loses to
one that does well on both. The search is evaluation.tuning.search (coordinate descent over
evaluation.tuning.GRID plus one boost for every secondary indicator) from each of STARTS; the
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
from bench.quality import (  # noqa: E402
    DATA,
    PROTOCOLS,
    fill,
    implicit_model,
    interactions_of,
    primary_rows,
    sar_model,
)
from evaluation.measures import score_rankings  # noqa: E402
from evaluation.splits import parse_split, read_checked  # noqa: E402
from evaluation.tuning import GRID, Candidate, Searcher, prepare_validation, search  # noqa: E402
from evaluation.variants import Variant, run_variants  # noqa: E402
from indexer.settings import IndexSettings  # noqa: E402
from query.settings import QuerySettings  # noqa: E402

RESULTS = REPO / "bench" / "results" / "defaults.json"
PREVIOUS_DEFAULTS = Candidate("weights:log", 0.5, 0.95, 50, 0.0, 100, (("secondary", 0.5),))
"""The defaults chosen with the former validation carve (a random split's validation split held
out as much of the training part as the test split held out of the whole): the baseline of the
`geometric` column. A shipped default cannot name a data set's actions: the `secondary` boost
applies to every indicator but the primary."""
STARTS = (PREVIOUS_DEFAULTS, Candidate("weights:log", 0.5, 1.0, 100, 0.0, 100, (("secondary", 1.0),)))
"""Where the searches start: the defaults chosen with the former validation carve, and the same
without recency (history_decay 1, 100 events, boost 1 each). (The former defaults of 0.1.0,
BM25 terms without a prior, were a start of the earlier search and ended at a worse point.)"""


def peer_maps(searcher: Searcher, k: int) -> dict[str, float]:
    """Validation MAP@k of popularity, SAR and implicit cosine on the searcher's split (its
    training part's primary interactions; topped up with popular items, as in quality.py)."""
    from pyspark.sql import functions as F

    v = searcher.prepared
    popularity = run_variants(searcher.backend(PREVIOUS_DEFAULTS), v, [Variant("popularity", ())], [k])[0]
    out = {"popularity": popularity.metrics[k].map}
    data = interactions_of(primary_rows(v.events.where(~F.col("test")), v.primary))
    uidx, order = data.user_index, data.popularity_order()
    users = [uidx[u] for u in sorted(v.relevant) if u in uidx]
    popular = [data.items[i] for i in order[:k]]
    for name, ranker in (("SAR", sar_model()), ("implicit cosine", implicit_model("cosine"))):
        ranked = ranker(data, {}, users, k)
        rankings = {data.users[u]: [data.items[i] for i in fill(ranked.get(u, []),
                                                                 set(data.matrix[u].indices.tolist()), order, k)]
                    for u in users}
        rankings.update({u: popular for u in v.relevant if u not in rankings})
        out[name] = score_rankings(rankings, v.relevant, [k], v.catalogue)[k].map
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, default=RESULTS)
    p.add_argument("--hold", default="", help="Comma-separated settings kept at each start's value "
                   "(e.g. min_llr,max_correlators: no retraining, when time is short).")
    a = p.parse_args(argv)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if not (DATA / "events.csv").exists():
        convert(a.source, DATA)
    from indicators.settings import TrainSettings
    from indicators.spark import build_spark_session

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

        base = {name: value(PREVIOUS_DEFAULTS, name) for name in searchers}
        peers = {name: peer_maps(s, k) for name, (s, k) in searchers.items()}
        log(f"validation MAP of the peers: {peers}")
        best_peer = {name: max(p.values()) for name, p in peers.items()}

        def objective(c: Candidate) -> float:
            return min(value(c, n) / best_peer[n] for n in searchers)

        def geometric(c: Candidate) -> float:
            return math.exp(sum(math.log(max(value(c, n), 1e-9) / base[n]) for n in searchers) / len(searchers))

        hold = [h for h in a.hold.split(",") if h]
        ends = [search(objective, start, log, a.rounds, "min MAP ratio to the best peer", hold) for start in STARTS]
        chosen = max(ends, key=objective)
        tried = sorted({replace(c, boosts=(("secondary", c.boosts[0][1]),)) for s, _ in searchers.values()
                        for c in s.cache}, key=lambda c: -objective(c))
        result = {
            "command": "python bench/defaults.py" + (" " + " ".join(argv or sys.argv[1:]) if (argv or sys.argv[1:])
                                                     else ""),
            "created": datetime.now(UTC).strftime("%Y-%m-%d"),
            "grid": {k: list(v) for k, v in GRID.items()}, "held": hold,
            "starts": [c.as_dict() for c in STARTS], "ends": [c.as_dict() for c in ends],
            "chosen": chosen.as_dict(),
            "validation_map": {n: {"previous_defaults": round(base[n], 6), "chosen": round(value(chosen, n), 6),
                                   **{peer: round(m, 6) for peer, m in peers[n].items()}} for n in searchers},
            "tried": [{**c.as_dict(), "objective": round(objective(c), 6), "geometric": round(geometric(c), 6),
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
