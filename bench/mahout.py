"""Apache Mahout's own cooccurrence job side by side with `cooccur train`, on MovieLens.

Mahout 14.1 (SimilarityAnalysis.cooccurrencesIDSs, what spark-itemsimilarity runs; Spark
2.4.5, Scala 2.11) is resolved from Maven Central by bench/mahout/pom.xml and called by a
small Java launcher (bench/mahout/src/MahoutCooccurrence.java) in its own JVM; `cooccur
train` runs in this process's Spark session. Both with downsampling off and the same
top-k, on the same events (like = rating >= 4 is the primary action; rate = every rating;
tag = every tag), one after the other in one run:

1. cooccur: `indicators.job.train()` with max_interactions_per_user = max_users_per_item =
   0 (no caps), max_correlators = --k, min_llr unset, min_events_per_user = 1 (N = users
   with a primary event, and only their events count: what Mahout's IndexedDatasetSpark
   does when the secondary datasets are read with the primary's row dictionary); one
   warm-up, then --repeat timed runs.
2. Mahout: maxNumInteractions = 10^9 (its downsampling keeps everything),
   maxInterestingItemsPerThing = --k; --repeat + 1 runs in one SparkContext (the first is
   the warm-up), each from the text file to Mahout's text output.
3. Compare per (indicator, item): identical top-k sets, LLR differences, and the reason
   for every difference (tie order at the k-th place; a zero LLR, which Mahout's sparse
   matrix cannot hold).

    python bench/mahout.py [--k 50] [--repeat 2] [--master local[2]]

Needs Java 17 and Maven (first run resolves ~170 jars into bench/mahout/target/lib).
Writes bench/results/mahout.json. The machine is shared: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MAHOUT = REPO / "bench" / "mahout"
DATA = REPO / "bench" / "data"
RESULTS = REPO / "bench" / "results" / "mahout.json"
ACTIONS = ("like", "rate", "tag")
NO_DOWNSAMPLING = 1_000_000_000  # Mahout's maxNumInteractions: every sample rate becomes 1
SHIM = MAHOUT / "asm-shim" / "target" / "asm9-as-xbean-asm6-1.jar"
TIE_TOL = 1e-9  # relative: two LLRs this close are one tie (they differ only by round-off)


class MahoutUnavailable(RuntimeError):
    """Mahout's jars could not be resolved or its launcher not built; carries the tool output."""


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise MahoutUnavailable(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def build() -> list[str]:
    """Resolve the jars (Maven), build the ASM stand-in, compile the launcher (javac);
    the classpath. Each step is skipped when its output exists."""
    lib = MAHOUT / "target" / "lib"
    if not any(lib.glob("mahout-spark-*.jar")):
        print("resolving Mahout 14.1 + Spark 2.4.5 from Maven Central ...", file=sys.stderr)
        _run(["mvn", "-B", "-q", "dependency:copy-dependencies", f"-DoutputDirectory={lib}",
              "-DincludeScope=runtime"], MAHOUT, "resolving Mahout's jars")
    if not SHIM.exists():
        _run(["mvn", "-B", "-q", "package"], MAHOUT / "asm-shim", "building the ASM 9 stand-in")
    classes = MAHOUT / "target" / "classes"
    source = MAHOUT / "src" / "MahoutCooccurrence.java"
    compiled = classes / "MahoutCooccurrence.class"
    if not compiled.exists() or compiled.stat().st_mtime < source.stat().st_mtime:
        classes.mkdir(parents=True, exist_ok=True)
        # Class files for Java 8: Spark 2.4's closure cleaner reads the launcher's lambdas.
        _run(["javac", "--release", "8", "-Xlint:-options", "-cp", f"{lib}/*", "-d", str(classes),
              str(source)], MAHOUT, "compiling the launcher")
    # The stand-in replaces xbean-asm6-shaded (ASM 6 cannot read Java 17's class files).
    jars = sorted(str(p) for p in lib.glob("*.jar") if not p.name.startswith("xbean-asm6-shaded"))
    return [str(classes), str(SHIM), *jars]


def write_input(events: Path, out: Path, actions: tuple[str, ...]) -> dict[str, int]:
    """Mahout's spark-itemsimilarity input: `user,action,item` lines, no header."""
    counts = dict.fromkeys(actions, 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(events, newline="") as f, open(out, "w", newline="") as w:
        writer = csv.writer(w, lineterminator="\n")
        for row in csv.DictReader(f):
            if row["event"] in counts:
                writer.writerow([row["user"], row["event"], row["item"]])
                counts[row["event"]] += 1
    return counts


def run_mahout(classpath: list[str], source: Path, out: Path, actions: tuple[str, ...], k: int,
               repeat: int, master: str, heap: str, sampler) -> dict:
    """Mahout's job `repeat + 1` times in one JVM; median of the runs after the first."""
    cmd = ["java", f"@{MAHOUT / 'jvm.options'}", f"-Xmx{heap}", "-cp", ":".join(classpath),
           "MahoutCooccurrence", str(source), str(out), ",".join(actions), master, str(k),
           str(NO_DOWNSAMPLING), "0", str(repeat + 1)]
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    log = out.parent / "mahout-jvm.log"
    with sampler.section() as sec, open(log, "w") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        sec.focus = proc.pid
        stdout, _ = proc.communicate()
        wall = time.perf_counter() - t
    if proc.returncode != 0:
        tail = "\n".join(line for line in log.read_text().splitlines() if not line.startswith("\tat "))
        raise RuntimeError(f"Mahout's job failed (exit {proc.returncode}); {log}:\n{tail[-3000:]}")
    report = json.loads(stdout.strip().splitlines()[-1])
    runs = report["runs"]
    timed = runs[1:] or runs
    for i, r in enumerate(runs):
        print(f"  mahout {'warm-up' if i == 0 else f'run {i}'}: {r['seconds']:.1f} s "
              f"(read {r['read_seconds']:.1f}, cooccurrences + write {r['compute_seconds']:.1f})",
              file=sys.stderr)
    return {
        "seconds": round(statistics.median(r["seconds"] for r in timed), 3),
        "warmup_seconds": runs[0]["seconds"],
        "stages": {s: round(statistics.median(r[f"{s}_seconds"] for r in timed), 3)
                   for s in ("read", "compute")},
        "runs": runs,
        "context_seconds": report["context_seconds"],
        "jvm_wall_seconds": round(wall, 3),
        "users": runs[-1]["users"],
        "items": runs[-1]["items"],
        "spark": report["spark"],
        "memory": {**sec.as_dict(), "jvm_peak_rss_mb": report["peak_rss_mb"]},
    }


def run_cooccur(spark, events: Path, actions: tuple[str, ...], k: int, out: Path, repeat: int,
                sampler) -> dict:
    """`cooccur train` with Mahout's semantics and no downsampling: warm-up + timed runs."""
    from bench.train import timed_runs
    from indicators.job import train
    from indicators.settings import TrainSettings

    settings = TrainSettings(
        primary=actions[0],
        indicators=[{"name": a, "max_correlators": k} for a in actions],
        max_interactions_per_user=0,
        max_users_per_item=0,
        min_events_per_user=1,
        save_state=False,  # Mahout keeps no counting state either
        spark_master=spark.sparkContext.master,
    )
    figures, report = timed_runs(
        "  cooccur", lambda: train(spark, [str(events)], settings, out, on_stage=lambda _line: None),
        repeat, sampler)
    return {**figures, "users": report.users, "indicators": report.indicators}


# --------------------------------------------------------------------------- the comparison

Lists = dict[tuple[str, str], dict[str, float]]


def read_mahout(out: Path, actions: tuple[str, ...]) -> Lists:
    """Mahout's text output (DefaultIndexedDatasetWriteSchema): `item<TAB>other:llr other:llr`."""
    lists: Lists = {}
    for action in actions:
        for part in sorted((out / action).glob("part-*")):
            for line in part.read_text().splitlines():
                item, _, rest = line.partition("\t")
                pairs = dict((c, float(s)) for c, _, s in (p.rpartition(":") for p in rest.split()))
                if pairs:
                    lists[(action, item)] = pairs
    return lists


def read_cooccur(model: Path) -> Lists:
    """The model's indicators/ (indicator, item, correlators, scores)."""
    import pyarrow.parquet as pq

    from indicators.model import model_data

    table = pq.read_table(Path(model_data(model).path) / "indicators").to_pylist()
    return {(r["indicator"], r["item"]): dict(zip(r["correlators"], r["scores"], strict=True))
            for r in table if r["correlators"]}


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TIE_TOL * max(abs(a), abs(b), 1e-12)


def classify(c: dict[str, float], m: dict[str, float], k: int) -> str:
    """Why two top-k lists of one item differ: `zero_llr` (cooccur keeps correlators with
    LLR 0, Mahout writes its scores into a sparse matrix, where a 0 is no entry),
    `tie_at_cutoff` (the lists differ only in items whose LLR equals the k-th score: Mahout
    keeps whichever its priority queue met first, cooccur the smallest ids), or
    `unexplained`."""
    positive = {b: s for b, s in c.items() if s > 0}
    if set(positive) == set(m):
        return "zero_llr"
    if len(c) == len(m) == k:
        cut_c, cut_m = min(c.values()), min(m.values())
        only_c = [c[b] for b in set(c) - set(m)]
        only_m = [m[b] for b in set(m) - set(c)]
        if _close(cut_c, cut_m) and all(_close(s, cut_c) for s in only_c + only_m):
            return "tie_at_cutoff"
    return "unexplained"


def compare(c_lists: Lists, m_lists: Lists, k: int, examples: int = 5) -> dict:
    """Agreement figures over every (indicator, item) either side has."""
    keys = sorted(set(c_lists) | set(m_lists))
    identical, ordered, same_scores, reasons = 0, 0, 0, {}
    pairs = exact = 0
    max_rel = max_abs = 0.0
    worst: tuple | None = None
    shown: dict[str, list] = {}
    per_indicator: dict[str, dict] = {}
    for key in keys:
        c, m = c_lists.get(key, {}), m_lists.get(key, {})
        ind = per_indicator.setdefault(key[0], {"items": 0, "identical": 0, "same_scores": 0})
        ind["items"] += 1
        # The lists as ranked scores: equal when the sets differ only among tied items.
        tied_equal = len(c) == len(m) and all(
            _close(x, y) for x, y in zip(sorted(c.values()), sorted(m.values()), strict=True))
        same_scores += tied_equal
        ind["same_scores"] += tied_equal
        for b in set(c) & set(m):
            pairs += 1
            diff = abs(c[b] - m[b])
            exact += diff == 0
            max_abs = max(max_abs, diff)
            # Relative differences of LLRs near 0 measure cancellation round-off, not the
            # method: they count from 1e-6 up.
            if c[b] >= 1e-6 and diff / c[b] > max_rel:
                max_rel, worst = diff / c[b], (*key, b, c[b], m[b])
        if set(c) == set(m):
            identical += 1
            ind["identical"] += 1
            # cooccur's order (LLR desc, id asc) must also be Mahout's score order.
            ms = [m[b] for b in c]
            ordered += all(x >= y or _close(x, y) for x, y in zip(ms, ms[1:], strict=False))
            continue
        why = classify(c, m, k)
        reasons[why] = reasons.get(why, 0) + 1
        if len(shown.setdefault(why, [])) < examples:
            shown[why].append({
                "indicator": key[0], "item": key[1], "cooccur_n": len(c), "mahout_n": len(m),
                "only_cooccur": {b: c[b] for b in sorted(set(c) - set(m))[:5]},
                "only_mahout": {b: m[b] for b in sorted(set(m) - set(c))[:5]},
                "kth_cooccur": min(c.values()) if c else None,
                "kth_mahout": min(m.values()) if m else None,
            })
    n = len(keys)
    return {
        "items": n,
        "identical_sets": identical,
        "identical_fraction": round(identical / n, 6) if n else None,
        "identical_sets_in_score_order": ordered,
        "same_score_lists": same_scores,
        "same_score_lists_fraction": round(same_scores / n, 6) if n else None,
        "differences": reasons,
        "explained_fraction": round((n - reasons.get("unexplained", 0)) / n, 6) if n else None,
        "per_indicator": {i: {**v, "identical_fraction": round(v["identical"] / v["items"], 6),
                              "same_scores_fraction": round(v["same_scores"] / v["items"], 6)}
                          for i, v in per_indicator.items()},
        "common_pairs": pairs,
        "pairs_bit_identical": exact,
        "max_rel_llr_diff": max_rel,
        "max_rel_llr_diff_at": worst and dict(zip(("indicator", "item", "correlator", "cooccur", "mahout"),
                                                  worst, strict=True)),
        "max_abs_llr_diff": max_abs,
        "examples": shown,
    }


def markdown(doc: dict) -> str:
    """docs/mahout.md's two tables (agreement per indicator; seconds and memory) from --out."""
    g, c, m = doc["agreement"], doc["cooccur"], doc["mahout_run"]
    lines = ["| indicator | items | identical top-k sets | same ranked LLR lists | differences explained |",
             "|---|--:|--:|--:|--:|"]
    for name, v in g["per_indicator"].items():
        lines.append(f"| {name} | {v['items']:,} | {v['identical']:,} ({v['identical_fraction']:.1%}) | "
                     f"{v['same_scores']:,} ({v['same_scores_fraction']:.1%}) | |")
    lines.append(f"| all | {g['items']:,} | {g['identical_sets']:,} ({g['identical_fraction']:.1%}) | "
                 f"{g['same_score_lists']:,} ({g['same_score_lists_fraction']:.1%}) | "
                 f"{g['explained_fraction']:.1%} ({', '.join(f'{k}: {v:,}' for k, v in g['differences'].items())}) |")
    mem = m["memory"].get("jvm_peak_rss_mb", m["memory"].get("peak_mb_process"))
    lines += ["", "| method | seconds (median) | warm-up s | stages (median s) | x cooccur | peak MB |",
              "|---|--:|--:|---|--:|--:|",
              f"| cooccur train (like, rate, tag) | {c['seconds']:.1f} | {c['warmup_seconds']:.1f} | "
              + ", ".join(f"{k} {v:.1f}" for k, v in c["stages"].items())
              + f" | 1.00 | {c['memory']['peak_mb']:,.0f} (driver + Spark JVM + workers) |",
              f"| Mahout 14.1 cooccurrencesIDSs | {m['seconds']:.1f} | {m['warmup_seconds']:.1f} | "
              f"read {m['stages']['read']:.1f}, cooccurrences + write {m['stages']['compute']:.1f} | "
              f"{doc['ratio_mahout_to_cooccur']:.2f} | {mem:,.0f} (its JVM) |"]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=50, help="correlators per item (Mahout's maxSimilaritiesPerItem)")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per method after one warm-up")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="4g", help="both JVMs' heap")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--markdown", action="store_true", help="print --out's figures as Markdown tables")
    a = p.parse_args()
    if a.markdown:
        print(markdown(json.loads(a.out.read_text())))
        return

    from bench.train import DATASETS, RssSampler, ensure_data, machine_info
    from indicators.spark import build_spark_session

    classpath = build()
    ds = DATASETS["movielens"]
    ensure_data(ds)
    work = DATA / ".bench-mahout"
    shutil.rmtree(work, ignore_errors=True)
    source = work / "input.csv"
    counts = write_input(ds.dir / "events.csv", source, ACTIONS)
    print(f"movielens: {counts}", file=sys.stderr)

    conf = {"spark.driver.memory": a.driver_memory, "spark.ui.showConsoleProgress": "false"}
    sampler = RssSampler()
    spark = build_spark_session(a.master, conf, app_name="cooccur-bench-mahout")
    info = machine_info(spark, a.master, conf)
    try:
        cooccur = run_cooccur(spark, ds.dir / "events.csv", ACTIONS, a.k, work / "cooccur-model",
                              a.repeat, sampler)
    finally:
        spark.stop()
    # cooccur's JVM is gone before Mahout's starts: neither competes with the other.
    mahout = run_mahout(classpath, source, work / "mahout", ACTIONS, a.k, a.repeat, a.master,
                        a.driver_memory, sampler)
    sampler.stop()
    agreement = compare(read_cooccur(work / "cooccur-model"), read_mahout(work / "mahout", ACTIONS), a.k)
    info["load_average_after"] = round(os.getloadavg()[0], 2)
    doc = {
        "machine": info,
        "mahout": {"version": "14.1", "spark": mahout["spark"], "scala": "2.11",
                   "entry": "org.apache.mahout.math.cf.SimilarityAnalysis.cooccurrencesIDSs"},
        "settings": {"k": a.k, "actions": list(ACTIONS), "primary": ACTIONS[0],
                     "mahout_max_num_interactions": NO_DOWNSAMPLING,
                     "cooccur": {"max_interactions_per_user": 0, "max_users_per_item": 0,
                                 "min_events_per_user": 1, "min_llr": None, "save_state": False},
                     "repeat": a.repeat, "master": a.master, "heap": a.driver_memory},
        "events": counts,
        "cooccur": cooccur,
        "mahout_run": mahout,
        "ratio_mahout_to_cooccur": round(mahout["seconds"] / cooccur["seconds"], 2),
        "agreement": agreement,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=2) + "\n")
    g = agreement
    print(f"users (N): cooccur {cooccur['users']:,}, Mahout {mahout['users']:,}")
    print(f"seconds (median of {a.repeat} after a warm-up): cooccur {cooccur['seconds']:.1f}, "
          f"Mahout {mahout['seconds']:.1f} (x{doc['ratio_mahout_to_cooccur']} of cooccur); peak MB: "
          f"cooccur {cooccur['memory']['peak_mb']:,} (driver + Spark JVM + workers), "
          f"Mahout {mahout['memory']['jvm_peak_rss_mb']:,} (its JVM's VmHWM)")
    print(f"(indicator, item) lists: {g['items']:,}; identical top-{a.k} sets: {g['identical_sets']:,} "
          f"({g['identical_fraction']:.2%}); differences: {g['differences'] or 'none'}")
    print(f"same ranked LLR lists (sets equal up to ties at the k-th score): {g['same_score_lists']:,} "
          f"({g['same_score_lists_fraction']:.2%})")
    print(f"LLR on {g['common_pairs']:,} common pairs: max relative difference {g['max_rel_llr_diff']:.2e}, "
          f"max absolute {g['max_abs_llr_diff']:.2e}, bit-identical {g['pairs_bit_identical']:,}")
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
