"""MovieLens (ml-latest-small) as cooccur events: likes, ratings, tags and genres.

likes = ratings >= 4 (the primary action), `rate` = every rating, `tag` = every tag;
genres become `$set` category properties. Used by the benchmarks and the evaluation.

    python bench/movielens.py --out bench/data/movielens
"""

from __future__ import annotations

import argparse
import csv
import json
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "ml-latest-small"


def convert(source: Path = DEFAULT_SOURCE, out: Path = REPO / "bench" / "data" / "movielens") -> dict:
    """Write out/events.csv (user,event,item,time) and out/items.jsonl; returns counts."""
    if not (source / "ratings.csv").exists():
        raise FileNotFoundError(f"{source}/ratings.csv not found (MovieLens ml-latest-small)")
    out.mkdir(parents=True, exist_ok=True)
    counts = {"like": 0, "rate": 0, "tag": 0, "items": 0}
    with open(out / "events.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "event", "item", "time"])
        with open(source / "ratings.csv", newline="") as r:
            for row in csv.DictReader(r):
                w.writerow([f"u{row['userId']}", "rate", f"m{row['movieId']}", row["timestamp"]])
                counts["rate"] += 1
                if float(row["rating"]) >= 4.0:
                    w.writerow([f"u{row['userId']}", "like", f"m{row['movieId']}", row["timestamp"]])
                    counts["like"] += 1
        with open(source / "tags.csv", newline="") as r:
            for row in csv.DictReader(r):
                w.writerow([f"u{row['userId']}", "tag", f"m{row['movieId']}", row["timestamp"]])
                counts["tag"] += 1
    epoch = datetime.fromtimestamp(0, UTC).isoformat().replace("+00:00", "Z")
    with open(out / "items.jsonl", "w") as f, open(source / "movies.csv", newline="") as m:
        for row in csv.DictReader(m):
            genres = [g for g in row["genres"].split("|") if g and g != "(no genres listed)"]
            event = {"event": "$set", "entityType": "item", "entityId": f"m{row['movieId']}",
                     "properties": {"category": genres}, "eventTime": epoch}
            f.write(json.dumps(event) + "\n")
            counts["items"] += 1
    return counts


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "data" / "movielens")
    a = p.parse_args()
    print(json.dumps(convert(a.source, a.out)))
