"""Training benchmark: `cooccur train` side by side with Spark ALS and a plain scipy computation.

Per dataset, in ONE Spark session (same settings for every method):

1. cooccur `indicators.job.train()` on the events (every indicator): one warm-up run, then
   `--repeat` timed runs; the median, with the job's per-stage timings.
2. Spark MLlib ALS (implicit, rank 10, 10 iterations) on the same primary events,
   binarized; ids mapped to ints with StringIndexer. The fit is timed apart from the prep
   (read, distinct, indexing, cache); one warm-up fit, then `--repeat` timed fits.
3. The same indicators computed by one Python process with pyarrow + scipy (block-wise
   A'B, `indicators.llr.llr_from_counts`, top-k), run as a child process so its memory is
   measured on its own and a timeout can stop it. Its caps use a different (splitmix64)
   hash than the job's Spark xxhash64, so when a cap triggers the kept interactions (and
   the indicators) differ; parity is therefore checked where no cap triggers, and on
   MovieLens with a separate caps-off run (max_interactions_per_user = max_users_per_item = 0).

Peak memory: a thread samples the RSS of the whole process tree (this process, the Spark
JVM, Python workers, the scipy child) from /proc every ~100 ms; each measured section
records its peak, the tree's RSS when it started, and the peak per kind of process.

    python bench/train.py [--sets movielens,synth-1m,synth-5m] [--repeat N] [--master local[2]]
                          [--cluster local|spark://HOST:PORT] [--mahout [--mahout-k 50] [--mahout-users N]]

With --cluster, `cooccur train` also runs on a Spark standalone cluster after the rest, in
the same run: `local` starts one here from pyspark's distribution (a master and
--cluster-workers workers of one core each, loopback only, as tests/spark_cluster.py does),
a spark:// URL uses a running one. Its row sits beside the --master row, with the ratio
and whether its model equals the --master one.

With --mahout (movielens), Apache Mahout's own cooccurrence job (bench/mahout.py: Mahout
14.1's SimilarityAnalysis.cooccurrencesIDSs in its own JVM) gets a row too, beside a
`cooccur train` run with the same semantics (downsampling off, --mahout-k correlators, N =
users with a primary event; docs/mahout.md), both one warm-up then --repeat timed runs;
Mahout runs after the Spark session has stopped, so the two JVMs do not compete. The JSON
holds both rows and the indicator agreement summary (identical top-k sets, same ranked LLR
lists, why the others differ). --mahout-users N runs both on the events of the first N
users only (a quick check; the first Mahout run resolves its jars with Maven).

Writes bench/results/train.json and prints a table. Other engineers share the machine:
compare ratios within one run, not seconds across runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO / "bench" / "data"
RESULTS = REPO / "bench" / "results" / "train.json"
TIMEOUT_S = 15 * 60  # per method run; beyond it the method is recorded as a timeout


@dataclass(frozen=True)
class Dataset:
    """A benchmark input: where it lives, how to make it, its actions (primary first)."""

    name: str
    events: int | None  # synthetic size; None for MovieLens
    primary: str
    actions: tuple[str, ...]

    @property
    def dir(self) -> Path:
        return DATA / self.name

    @property
    def paths(self) -> list[str]:
        return [str(self.dir / "events.csv"), str(self.dir / "items.jsonl")]


DATASETS = {
    "movielens": Dataset("movielens", None, "like", ("like", "rate", "tag")),
    "synth-1m": Dataset("synth-1m", 1_000_000, "purchase", ("purchase", "view", "cart")),
    "synth-5m": Dataset("synth-5m", 5_000_000, "purchase", ("purchase", "view", "cart")),
}


def ensure_data(ds: Dataset) -> None:
    """Convert MovieLens or generate a synthetic set when its files are missing."""
    if all(Path(p).exists() for p in ds.paths):
        return
    print(f"preparing {ds.name} ...", file=sys.stderr)
    if ds.events is None:
        from bench.movielens import convert

        convert(out=ds.dir)
    else:
        subprocess.run(
            [sys.executable, str(REPO / "bench" / "generate.py"), "--events", str(ds.events),
             "--out", str(ds.dir), "--format", "csv"],
            check=True,
        )


# --------------------------------------------------------------------------- memory sampling

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may hold spaces/parens: fields after the last ')' are fixed.
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


@dataclass
class Section:
    """Peak RSS (bytes) of one measured section, of the whole tree and per kind of process."""

    start_total: int = 0
    peak_total: int = 0
    peak_kind: dict[str, int] = field(default_factory=dict)
    focus: int | None = None  # a pid whose own subtree is also tracked (the scipy child)
    peak_focus: int = 0

    def as_dict(self) -> dict:
        mb = lambda b: round(b / 2**20, 1)  # noqa: E731
        out = {
            "peak_mb": mb(self.peak_total),
            "start_mb": mb(self.start_total),
            "peak_mb_by_kind": {k: mb(v) for k, v in sorted(self.peak_kind.items())},
        }
        if self.focus is not None:
            out["peak_mb_process"] = mb(self.peak_focus)
        return out


class RssSampler:
    """Samples the RSS of this process's tree every `interval` s in a daemon thread.

    Kinds: `driver` (this Python process), `jvm` (java), `python-workers` (other
    descendants, e.g. pyspark.daemon and its workers), and the focus pid's subtree."""

    def __init__(self, interval: float = 0.1) -> None:
        self.root = os.getpid()
        self.interval = interval
        self._section: Section | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")
        self._thread.start()

    def sample(self, focus: int | None = None) -> tuple[int, dict[str, int], int]:
        kids = _children_map()
        total, kinds, focus_total = 0, {}, 0
        stack = [(self.root, False)]
        while stack:
            pid, in_focus = stack.pop()
            in_focus = in_focus or pid == focus
            rss = _rss(pid)
            kind = "driver" if pid == self.root else "jvm" if _comm(pid) == "java" else (
                "scipy" if in_focus else "python-workers")
            total += rss
            kinds[kind] = kinds.get(kind, 0) + rss
            if in_focus:
                focus_total += rss
            stack.extend((k, in_focus) for k in kids.get(pid, []))
        return total, kinds, focus_total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                sec = self._section
            if sec is None:
                continue
            self._update(sec)

    def _update(self, sec: Section) -> None:
        total, kinds, focus_total = self.sample(sec.focus)
        sec.peak_total = max(sec.peak_total, total)
        sec.peak_focus = max(sec.peak_focus, focus_total)
        for k, v in kinds.items():
            sec.peak_kind[k] = max(sec.peak_kind.get(k, 0), v)

    @contextmanager
    def section(self):
        sec = Section()
        sec.start_total = self.sample()[0]
        with self._lock:
            self._section = sec
        try:
            yield sec
        finally:
            with self._lock:
                self._section = None
            self._update(sec)  # a section shorter than one interval still gets a sample

    def stop(self) -> None:
        self._stop.set()


def merge_sections(sections: list[Section]) -> dict:
    """Peak over several runs of one method."""
    best = max(sections, key=lambda s: s.peak_total)
    out = best.as_dict()
    out["peak_mb"] = round(max(s.peak_total for s in sections) / 2**20, 1)
    return out


# --------------------------------------------------------------------------- timeouts


class Timeout(Exception):
    """A method ran past the timeout."""


@contextmanager
def spark_deadline(spark, seconds: float):
    """Cancel every Spark job once `seconds` have passed; raise Timeout if that happened."""
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        spark.sparkContext.cancelAllJobs()

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except Exception:
        if fired.is_set():
            raise Timeout(f"cancelled after {seconds:.0f} s") from None
        raise
    finally:
        timer.cancel()


# --------------------------------------------------------------------------- methods


def timed_runs(label: str, run, repeat: int, sampler: RssSampler, *, spark=None,
               prepare=None) -> tuple[dict, object]:
    """One warm-up call of `run`, then `repeat` timed calls (repeat 0: the warm-up is the
    only run); the median seconds and per-stage timings (the reports' `timings`), the peak
    memory; and the last report. `prepare` runs untimed before each call; with `spark`,
    each call gets TIMEOUT_S (Timeout propagates, with the finished runs as `.runs`)."""
    runs, sections, warm, report = [], [], None, None
    for i in range(repeat + 1):
        if prepare is not None:
            prepare()
        deadline = spark_deadline(spark, TIMEOUT_S) if spark is not None else nullcontext()
        try:
            with sampler.section() as sec, deadline:
                t = time.perf_counter()
                report = run()
                seconds = time.perf_counter() - t
        except Timeout as e:
            e.runs = runs  # the runs that finished, for the record
            raise
        print(f"{label} {'warm-up' if i == 0 else f'run {i}'}: {seconds:.1f} s {report.timings}",
              file=sys.stderr)
        if i == 0:
            warm = round(seconds, 3)
        if i or repeat == 0:
            runs.append({"seconds": round(seconds, 3), "stages": report.timings})
            sections.append(sec)
    return {
        "seconds": round(statistics.median(r["seconds"] for r in runs), 3),
        "warmup_seconds": warm,
        "stages": {k: round(statistics.median(r["stages"][k] for r in runs), 3) for k in runs[0]["stages"]},
        "runs": runs,
        "memory": merge_sections(sections),
    }, report


def run_cooccur(spark, ds: Dataset, repeat: int, sampler: RssSampler, out: Path, caps: int = 500) -> dict:
    """Warm-up run, then `repeat` timed runs of train(); median total and per-stage times."""
    from indicators.job import train
    from indicators.settings import TrainSettings

    settings = TrainSettings(
        primary=ds.primary,
        indicators=[{"name": a} for a in ds.actions],
        max_interactions_per_user=caps,
        max_users_per_item=caps,
        spark_master=spark.sparkContext.master,
    )
    try:
        figures, report = timed_runs(
            "  cooccur", lambda: train(spark, ds.paths, settings, out, on_stage=lambda _line: None),
            repeat, sampler, spark=spark)
    except Timeout as e:
        return {"timeout": True, "error": str(e), "timeout_s": TIMEOUT_S, "runs": e.runs}
    return {
        **figures,
        "counts": {"users": report.users, "actions": report.actions, "indicators": report.indicators},
        "caps": caps,
    }


def run_als(spark, ds: Dataset, repeat: int, sampler: RssSampler) -> dict:
    """ALS (implicit, rank 10, 10 iterations) on the binarized primary events."""
    from pyspark.ml.feature import StringIndexer
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F
    from pyspark.storagelevel import StorageLevel

    try:
        with sampler.section() as prep_sec, spark_deadline(spark, TIMEOUT_S):
            t = time.perf_counter()
            raw = spark.read.option("header", True).csv(ds.paths[0])
            pairs = raw.where(F.col("event") == ds.primary).select("user", "item").distinct()
            indexer = StringIndexer(inputCols=["user", "item"], outputCols=["u", "i"]).fit(pairs)
            data = indexer.transform(pairs).select(
                F.col("u").cast("int").alias("u"), F.col("i").cast("int").alias("i"),
                F.lit(1.0).alias("r"),
            ).persist(StorageLevel.MEMORY_AND_DISK)
            n_pairs = data.count()
            prep = time.perf_counter() - t
        print(f"  ALS prep: {prep:.1f} s ({n_pairs:,} pairs)", file=sys.stderr)
        als = ALS(rank=10, maxIter=10, implicitPrefs=True, userCol="u", itemCol="i", ratingCol="r",
                  seed=0)
        runs, sections = [], []
        for i in range(repeat + 1):
            with sampler.section() as sec, spark_deadline(spark, TIMEOUT_S):
                t = time.perf_counter()
                model = als.fit(data)  # materialises the factors (final storage level)
                seconds = time.perf_counter() - t
            print(f"  ALS fit {'warm-up' if i == 0 else f'run {i}'}: {seconds:.1f} s", file=sys.stderr)
            model.userFactors.unpersist()
            model.itemFactors.unpersist()
            if i:
                runs.append(round(seconds, 3))
                sections.append(sec)
            else:
                warm = round(seconds, 3)
    except Timeout as e:
        return {"timeout": True, "error": str(e), "timeout_s": TIMEOUT_S}
    finally:
        # ALS persists its factor and block RDDs; free them before the next method.
        for rdd in spark.sparkContext._jsc.getPersistentRDDs().values():
            rdd.unpersist()
        spark.catalog.clearCache()
    return {
        "seconds": round(statistics.median(runs), 3),
        "warmup_seconds": warm,
        "runs": runs,
        "prep_seconds": round(prep, 3),
        "pairs": n_pairs,
        "memory": merge_sections(sections),
        "prep_memory": prep_sec.as_dict(),
        "rank": 10,
        "max_iter": 10,
    }


def run_scipy(ds: Dataset, sampler: RssSampler, out: Path, caps: int = 500, k: int = 50) -> dict:
    """The scipy computation in a child process (own memory figure, killable on timeout)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--scipy-worker", json.dumps({
        "events": ds.paths[0], "primary": ds.primary, "actions": list(ds.actions),
        "caps": caps, "k": k, "out": str(out),
    })]
    with sampler.section() as sec:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        sec.focus = proc.pid
        try:
            stdout, _ = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return {"timeout": True, "timeout_s": TIMEOUT_S}
        wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"scipy worker failed with exit code {proc.returncode}")
    result = json.loads(stdout.strip().splitlines()[-1])
    print(f"  scipy: {result['seconds']:.1f} s {result['stages']}", file=sys.stderr)
    return {**result, "wall_seconds": round(wall, 3), "memory": sec.as_dict(), "caps": caps,
            "caps_hash": "splitmix64 of (seed, user code, item code), not the job's xxhash64"}


# --------------------------------------------------------------------------- the scipy worker


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _rank_within(group: np.ndarray) -> np.ndarray:
    """0-based position of each entry within its run of equal (sorted) group values."""
    if len(group) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    return np.arange(len(group)) - np.repeat(starts, np.diff(np.r_[starts, len(group)]))


def _cap(first: np.ndarray, second: np.ndarray, h: np.ndarray, cap: int) -> np.ndarray:
    """Mask keeping, per value of `first`, the `cap` entries with the smallest (h, second)."""
    if cap == 0:
        return np.ones(len(first), dtype=bool)
    order = np.lexsort((second, h, first))
    keep = np.zeros(len(first), dtype=bool)
    keep[order] = _rank_within(first[order]) < cap
    return keep


def scipy_indicators(events: str, primary: str, actions: list[str], caps: int, k: int,
                     out: str, seed: int = 0, block_nnz: int = 20_000_000) -> dict:
    """LLR indicators of `actions` against `primary` in one process: pyarrow, numpy, scipy.

    Binarize per action; cap users (then items) by a seeded hash; A'E in blocks of primary
    items (each block's product bounded to about `block_nnz` entries); LLR; top k per item
    (ties by item id). Writes a Parquet file (indicator, item, correlators, scores)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from scipy import sparse

    from indicators.llr import llr_from_counts

    stages: dict[str, float] = {}
    t0 = t = time.perf_counter()

    def done(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        stages[name] = round(stages.get(name, 0.0) + now - t, 3)
        t = now

    table = pacsv.read_csv(events, convert_options=pacsv.ConvertOptions(
        include_columns=["user", "event", "item"],
        column_types={"user": pa.string(), "event": pa.string(), "item": pa.string()},
    ))
    table = table.filter(pc.is_in(table["event"], value_set=pa.array(actions)))
    done("read")
    user_codes = pc.dictionary_encode(table["user"]).combine_chunks()
    users = user_codes.indices.to_numpy().astype(np.int64)
    n_users = len(user_codes.dictionary)
    item_dict = pc.unique(table["item"])
    item_dict = item_dict.take(pc.array_sort_indices(item_dict))  # code order = id order
    items = pc.index_in(table["item"], value_set=item_dict).to_numpy().astype(np.int64)
    n_items = len(item_dict)
    event = pc.index_in(table["event"], value_set=pa.array(actions)).to_numpy()
    del table
    mats, counts, kept_stats = {}, {}, {}
    for a, name in enumerate(actions):
        pairs = np.unique(users[event == a] * n_items + items[event == a])  # binarize
        u, i = pairs // n_items, pairs % n_items
        h = _splitmix64(_splitmix64(pairs) ^ np.uint64(seed))
        keep = _cap(u, i, h, caps)
        keep[keep] = _cap(i[keep], u[keep], h[keep], caps)
        u, i = u[keep], i[keep]
        m = sparse.csr_matrix((np.ones(len(u), dtype=np.int64), (u, i)), shape=(n_users, n_items))
        mats[name] = m
        counts[name] = np.asarray(m.sum(axis=0)).ravel()
        kept_stats[name] = {"interactions": int(len(pairs)), "kept": int(len(u))}
    del users, items, event
    done("binarize+caps")
    a_t = mats[primary].T.tocsr()
    a_count = counts[primary]
    rows_with = np.flatnonzero(np.diff(a_t.indptr))
    names_out, items_out, lists_out, scores_out = [], [], [], []
    for name in actions:
        e = mats[name].tocsc()
        b_count = counts[name]
        # Block rows so a block's product stays near block_nnz: estimate each primary
        # item's row of A'E by the sum of its users' E-row lengths.
        e_rows = np.diff(mats[name].indptr)
        est = np.add.reduceat(e_rows[a_t.indices], a_t.indptr[:-1][rows_with]) if len(rows_with) else []
        bounds = [0]
        acc = 0
        for pos, x in enumerate(est):
            acc += int(x)
            if acc >= block_nnz:
                bounds.append(pos + 1)
                acc = 0
        bounds.append(len(rows_with))
        e = e.tocsr()
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            if lo == hi:
                continue
            block_rows = rows_with[lo:hi]
            c = (a_t[block_rows] @ e).tocsr()
            c.sort_indices()  # columns in id order within each row: ties break by id below
            row = np.repeat(np.arange(c.shape[0], dtype=np.int64), np.diff(c.indptr))
            col, k11 = c.indices.astype(np.int64), c.data
            done("product")
            item_of_row = block_rows[row]
            if name == primary:
                ok = col != item_of_row
                row, col, k11, item_of_row = row[ok], col[ok], k11[ok], item_of_row[ok]
            score = llr_from_counts(k11, a_count[item_of_row], b_count[col], n_users)
            done("llr")
            order = np.lexsort((-score, row))  # stable: per row best first, ties by item id
            row, col, score = row[order], col[order], score[order]
            top = _rank_within(row) < k
            row, col, score = row[top], col[top], score[top]
            starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]]) if len(row) else np.zeros(0, int)
            offsets = pa.array(np.r_[starts, len(row)].astype(np.int32))
            names_out.append(pa.array([name] * len(starts), pa.string()))
            items_out.append(item_dict.take(pa.array(block_rows[row[starts]])))
            lists_out.append(pa.ListArray.from_arrays(offsets, item_dict.take(pa.array(col))))
            scores_out.append(pa.ListArray.from_arrays(offsets, pa.array(score)))
            done("top-k")
    result = pa.table({
        "indicator": pa.chunked_array(names_out, pa.string()),
        "item": pa.chunked_array(items_out, pa.string()),
        "correlators": pa.chunked_array(lists_out, pa.list_(pa.string())),
        "scores": pa.chunked_array(scores_out, pa.list_(pa.float64())),
    })
    pq.write_table(result, out)
    done("write")
    return {
        "seconds": round(time.perf_counter() - t0, 3),
        "stages": stages,
        "users": n_users,
        "items": n_items,
        "actions": kept_stats,
        "rows": result.num_rows,
    }


# --------------------------------------------------------------------------- parity


def compare(model_dir: Path, scipy_file: Path, sample: int, seed: int = 1, tol: float = 1e-9) -> dict:
    """Compare the job's indicators with the scipy ones: item sets in full, lists on a sample.

    Lists must hold the same ids in the same order with scores equal to `tol`; ids may
    differ only among entries tied (to `tol`) with the last kept score (the top-k cut)."""
    import pyarrow.parquet as pq

    def load(path: Path) -> dict:
        t = pq.read_table(path, columns=["indicator", "item", "correlators", "scores"])
        return {(r["indicator"], r["item"]): (r["correlators"], r["scores"]) for r in t.to_pylist()}

    from indicators.model import model_data

    job = load(Path(model_data(model_dir).path) / "indicators")
    ref = load(scipy_file)
    only_job, only_ref = sorted(set(job) - set(ref)), sorted(set(ref) - set(job))
    keys = sorted(set(job) & set(ref))
    rng = np.random.default_rng(seed)
    picked = [keys[i] for i in sorted(rng.choice(len(keys), min(sample, len(keys)), replace=False))]
    exact = tied = 0
    bad = []
    for key in picked:
        (ji, js), (ri, rs) = job[key], ref[key]
        if ji == ri and np.allclose(js, rs, rtol=0, atol=tol):
            exact += 1
            continue
        js, rs = np.array(js), np.array(rs)
        if len(js) == len(rs) and np.allclose(js, rs, rtol=0, atol=tol):
            cut = rs[-1]
            inner = np.abs(rs - cut) > tol
            if [x for x, m in zip(ji, inner, strict=True) if m] == [x for x, m in zip(ri, inner, strict=True) if m]:
                tied += 1
                continue
        bad.append({"indicator": key[0], "item": key[1], "job": ji[:5], "scipy": ri[:5]})
    return {
        "rows_job": len(job),
        "rows_scipy": len(ref),
        "rows_only_job": len(only_job),
        "rows_only_scipy": len(only_ref),
        "compared": len(picked),
        "identical": exact,
        "equal_up_to_ties_at_cut": tied,
        "mismatched": len(bad),
        "mismatch_examples": bad[:5],
        "ok": not only_job and not only_ref and not bad,
    }


def caps_triggered(counts: dict) -> bool:
    return any(a["users_capped"] or a["items_capped"] for a in counts["actions"].values())


# --------------------------------------------------------------------------- main


def machine_info(spark, master: str, conf: dict) -> dict:
    import pyspark

    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "nproc": os.cpu_count(),
        "memory_mb": mem_kb // 1024,
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "spark": spark.version,
        "java": java[0] if java else None,
        "numpy": np.__version__,
        "master": master,
        "spark_conf": conf,
        "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions"),
        "load_average_before": round(os.getloadavg()[0], 2),
    }


def _dataset_rows(name: str, r: dict) -> list[tuple]:
    events = r["events"]
    als = r.get("als", {})
    base = None if als.get("timeout") else als.get("seconds")
    rows: list[tuple] = []

    def ratio(s: float | None) -> str:
        return "" if not base or s is None else f"{s / base:.2f}"

    def add(method: str, m: dict, mem: float | None = None, n: int = events) -> None:
        if m.get("timeout"):
            rows.append((name, n, method, f">{m['timeout_s']} (timeout)", "", ""))
            return
        s = m["seconds"]
        # (a row on a sample of the events has no ratio to the ALS fit on all of them)
        rows.append((name, n, method, f"{s:.1f}", ratio(s) if n == events else "", f"{mem:,.0f}" if mem else ""))

    c = r.get("cooccur", {})
    if c:
        add("cooccur train (all indicators)", c, c.get("memory", {}).get("peak_mb"))
        if not c.get("timeout"):
            rows.append((name, events, "  of which indicators stage", f"{c['stages']['indicators']:.1f}",
                         ratio(c["stages"]["indicators"]), ""))
    cl = r.get("cooccur_cluster", {})
    if cl:
        add(f"cooccur train on a standalone cluster ({cl.get('workers', '?')} workers x 1 core)", cl,
            cl.get("memory", {}).get("peak_mb"))
    if als:
        add("Spark ALS fit (primary only)", als, als.get("memory", {}).get("peak_mb"))
        if not als.get("timeout"):
            rows.append((name, events, "  ALS prep (read, index, cache)", f"{als['prep_seconds']:.1f}",
                         ratio(als["prep_seconds"]), f"{als['prep_memory']['peak_mb']:,.0f}"))
    s = r.get("scipy", {})
    if s:
        add("scipy, one process (all indicators)", s, s.get("memory", {}).get("peak_mb_process"))
    cm, m = r.get("cooccur_mahout_settings", {}), r.get("mahout", {})
    if cm:
        sample = f", first {cm['sample_users']:,} users" if cm.get("sample_users") else ""
        add(f"cooccur train, Mahout's settings (no caps, k={cm['k']}{sample})", cm, cm["memory"]["peak_mb"],
            cm["events"])
    if m.get("seconds"):
        add("Mahout 14.1 cooccurrencesIDSs (same settings, its JVM)", m, m["memory"]["jvm_peak_rss_mb"],
            cm["events"])
    elif m:
        rows.append((name, events, "Mahout 14.1 cooccurrencesIDSs", "(did not run)", "", ""))
    return rows


def mahout_summary(results: dict) -> list[str]:
    """One line per dataset with a Mahout row: the ratio and the indicator agreement."""
    lines = []
    for name, r in results.items():
        m = r.get("mahout", {})
        if "agreement" in m:
            g = m["agreement"]
            lines.append(
                f"{name}: Mahout x{m['x_cooccur']} of cooccur's seconds (Mahout's settings); "
                f"{g['items']:,} (indicator, item) lists: identical top-{r['cooccur_mahout_settings']['k']} sets "
                f"{g['identical_fraction']:.1%}, same ranked LLR lists {g['same_score_lists_fraction']:.1%}, "
                f"differences explained {g['explained_fraction']:.1%} ({g['differences'] or 'none'}); "
                f"LLR max relative difference {g['max_rel_llr_diff']:.1e}")
        elif m:
            lines.append(f"{name}: Mahout did not run: {m['error'].splitlines()[0]}")
    return lines


def write_results(out: Path, info: dict, results: dict, *, merge: bool) -> dict:
    """Write the JSON of a benchmark run; with `merge`, keep what `out` has of other
    datasets (and its other top-level figures), each dataset with its own machine info."""
    doc = {"machine": info, "datasets": results, "machine_runs": {n: info for n in results}}
    if merge and out.exists():
        old = json.loads(out.read_text())
        datasets = old.get("datasets", {})
        doc = {**old, **doc,
               # per dataset too: a run of some methods keeps the figures of the others
               "datasets": {**datasets, **{n: {**datasets.get(n, {}), **r} for n, r in results.items()}},
               "machine_runs": {**old.get("machine_runs", {}), **doc["machine_runs"]}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def table_rows(results: dict) -> list[tuple]:
    """(dataset, events, method, seconds, ratio to the ALS fit, peak MB) rows."""
    return [row for name, r in results.items() for row in _dataset_rows(name, r)]


def print_table(rows: list[tuple]) -> None:
    """The table, aligned, on stdout."""
    head = ("dataset", "events", "method", "seconds", "x ALS fit", "peak MB")
    cells = [head] + [(a, f"{b:,}", c, d, e, f) for a, b, c, d, e, f in rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(head))]
    for row in cells:
        print("  ".join(str(x).rjust(widths[i]) if i in (1, 3, 4, 5) and row is not head
                        else str(x).ljust(widths[i]) for i, x in enumerate(row)))


def markdown(doc: dict) -> str:
    """The docs/sizing.md table: seconds and peak MB, also per million events."""
    lines = [
        "| dataset | events | method | seconds | s per M events | x ALS fit | peak MB |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, events, method, seconds, ratio, mem in table_rows(doc["datasets"]):
        try:
            per_m = f"{float(seconds) / (events / 1e6):.1f}"
        except ValueError:
            per_m = ""
        lines.append(f"| {name} | {events:,} | {method.strip()} | {seconds} | {per_m} | {ratio} | {mem} |")
    notes = mahout_summary(doc["datasets"])
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else []))


def run_dataset(spark, ds: Dataset, a, sampler: RssSampler, work: Path, parity: bool) -> dict:
    """cooccur, ALS and scipy on one dataset in `spark`, with the parity checks."""
    with open(ds.paths[0], "rb") as f:
        n_events = sum(1 for _ in f) - 1
    print(f"{ds.name}: {n_events:,} events", file=sys.stderr)
    r: dict = {"events": n_events, "primary": ds.primary, "indicators": list(ds.actions)}
    model = work / f"{ds.name}-model"
    ref = work / f"{ds.name}-scipy.parquet"
    r["cooccur"] = run_cooccur(spark, ds, a.repeat, sampler, model)
    if a.mahout and ds.name == "movielens":
        r["cooccur_mahout_settings"] = run_cooccur_as_mahout(spark, ds, a, sampler, work)
    if "als" in a.methods:
        r["als"] = run_als(spark, ds, a.repeat, sampler)
    if "scipy" not in a.methods:
        print_table(table_rows({ds.name: r}))
        return r
    r["scipy"] = run_scipy(ds, sampler, ref)
    if not r["cooccur"].get("timeout") and not r["scipy"].get("timeout"):
        if caps_triggered(r["cooccur"]["counts"]):
            r["parity"] = {"skipped": "a cap triggered: the scipy caps hash differently"}
        else:
            r["parity"] = compare(model, ref, a.parity_sample)
    if parity:
        print("  parity run with caps off", file=sys.stderr)
        off = run_cooccur(spark, ds, 0, sampler, work / f"{ds.name}-model-nocaps", caps=0)
        ref_off = work / f"{ds.name}-scipy-nocaps.parquet"
        s_off = run_scipy(ds, sampler, ref_off, caps=0)
        if off.get("timeout") or s_off.get("timeout"):
            r["parity_caps_off"] = {"skipped": "timeout"}
        else:
            r["parity_caps_off"] = {
                **compare(work / f"{ds.name}-model-nocaps", ref_off, a.parity_sample),
                "cooccur_seconds": off["warmup_seconds"], "scipy_seconds": s_off["seconds"],
            }
        print(f"  parity (caps off): {r['parity_caps_off']}", file=sys.stderr)
    print_table(table_rows({ds.name: r}))
    return r


def same_indicators(a: Path, b: Path) -> bool:
    """Whether two models hold the same indicators (rows sorted: part files differ)."""
    from indicators.model import model_data
    from indicators.parts import read_table

    def rows(m: Path):
        t = read_table(model_data(m) / "indicators")
        return t.sort_by([("indicator", "ascending"), ("item", "ascending")]).to_pylist()

    return rows(a) == rows(b)


def run_on_cluster(a, sets: list[Dataset], results: dict, sampler: RssSampler, work: Path) -> dict:
    """cooccur train on a standalone cluster (started here for `local`); its figures go
    beside each dataset's --master ones as `cooccur_cluster`."""
    from contextlib import ExitStack

    from indicators.spark import spark_session

    # The executors run this interpreter (docs/cluster.md: the same path on every node).
    os.environ["PYSPARK_PYTHON"] = sys.executable
    with ExitStack() as stack:
        url = a.cluster
        if a.cluster == "local":
            from tests.spark_cluster import standalone_cluster

            (work / "cluster").mkdir()
            url = stack.enter_context(standalone_cluster(work / "cluster", a.cluster_workers,
                                                         memory=a.cluster_memory))
        conf = {"spark.driver.memory": a.driver_memory, "spark.ui.showConsoleProgress": "false",
                "spark.executor.memory": a.cluster_memory}
        conf.update(dict(kv.split("=", 1) for kv in a.conf))
        spark = stack.enter_context(spark_session(url, conf, "cooccur-bench-cluster"))
        cores = spark.sparkContext.defaultParallelism
        for ds in sets:
            print(f"{ds.name} on the cluster {url} ({cores} cores)", file=sys.stderr)
            model = work / f"{ds.name}-model-cluster"
            r = run_cooccur(spark, ds, a.repeat, sampler, model)
            local = results[ds.name]["cooccur"]
            if not r.get("timeout") and not local.get("timeout"):
                r["x_master"] = round(r["seconds"] / local["seconds"], 2)
                r["same_model_as_master"] = same_indicators(model, work / f"{ds.name}-model")
            r["workers"] = a.cluster_workers if a.cluster == "local" else None
            results[ds.name]["cooccur_cluster"] = r
            print_table(table_rows({ds.name: results[ds.name]}))
    return {"master": "local standalone" if a.cluster == "local" else url, "cores": cores,
            "executor_memory": a.cluster_memory, "spark_conf": conf}


def mahout_events(ds: Dataset, work: Path, users: int | None) -> Path:
    """The events both sides of --mahout read: the dataset's, or those of its first `users`
    users in file order (--mahout-users)."""
    source = ds.dir / "events.csv"
    if not users:
        return source
    out = work / "mahout-sample.csv"
    if out.exists():  # written for the cooccur side of this run
        return out
    kept: set[str] = set()
    with open(source, newline="") as f, open(out, "w", newline="") as w:
        reader = csv.DictReader(f)
        writer = csv.DictWriter(w, reader.fieldnames or [], lineterminator="\n")
        writer.writeheader()
        for row in reader:
            if len(kept) < users:
                kept.add(row["user"])
            if row["user"] in kept:
                writer.writerow(row)
    return out


def run_cooccur_as_mahout(spark, ds: Dataset, a, sampler: RssSampler, work: Path) -> dict:
    """`cooccur train` with Mahout's semantics (bench/mahout.py's run_cooccur), in `spark`."""
    from bench import mahout

    print(f"  cooccur with Mahout's settings (k = {a.mahout_k})", file=sys.stderr)
    events = mahout_events(ds, work, a.mahout_users)
    with open(events, "rb") as f:
        n_events = sum(1 for _ in f) - 1
    figures = mahout.run_cooccur(spark, events, ds.actions, a.mahout_k, work / "mahout-cooccur-model",
                                 a.repeat, sampler)
    return {**figures, "k": a.mahout_k, "sample_users": a.mahout_users, "events": n_events}


def run_mahout_side(a, ds: Dataset, r: dict, sampler: RssSampler, work: Path) -> None:
    """Mahout's job on the events `run_cooccur_as_mahout` read (bench/mahout.py's build,
    write_input, run_mahout), and the agreement of its indicators with cooccur's, into
    r["mahout"]. A Mahout that cannot be built or run leaves its error there instead."""
    from bench import mahout

    k = r["cooccur_mahout_settings"]["k"]
    try:
        classpath = mahout.build()
        source = work / "mahout-input.csv"
        counts = mahout.write_input(mahout_events(ds, work, a.mahout_users), source, ds.actions)
        print(f"  Mahout 14.1 on {counts}", file=sys.stderr)
        m = mahout.run_mahout(classpath, source, work / "mahout-out", ds.actions, k, a.repeat, a.master,
                              a.driver_memory, sampler)
    except (mahout.MahoutUnavailable, RuntimeError) as e:
        print(f"Mahout did not run: {e}", file=sys.stderr)
        r["mahout"] = {"error": str(e)}
        return
    agreement = mahout.compare(mahout.read_cooccur(work / "mahout-cooccur-model"),
                               mahout.read_mahout(work / "mahout-out", ds.actions), k)
    agreement.pop("examples")  # (bench/mahout.py keeps them)
    r["mahout"] = {**m, "version": "14.1", "entry": "org.apache.mahout.math.cf.SimilarityAnalysis.cooccurrencesIDSs",
                   "max_num_interactions": mahout.NO_DOWNSAMPLING, "events": counts,
                   "x_cooccur": round(m["seconds"] / r["cooccur_mahout_settings"]["seconds"], 2),
                   "agreement": agreement}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="movielens,synth-1m", help="comma-separated: " + ",".join(DATASETS))
    p.add_argument("--repeat", type=int, default=3, help="timed runs per method after one warm-up")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="4g", help="spark.driver.memory (local mode: the heap)")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark settings")
    p.add_argument("--parity", default="movielens",
                   help="sets that get an extra caps-off train + scipy run for the parity check")
    p.add_argument("--parity-sample", type=int, default=2000, help="(indicator, item) rows compared")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--merge", action="store_true",
                   help="keep the other datasets already in --out (add or replace the ones run)")
    p.add_argument("--markdown", action="store_true", help="print --out's figures as a Markdown table")
    p.add_argument("--methods", default="cooccur,als,scipy", type=lambda v: set(v.split(",")),
                   help="what runs besides cooccur train (als, scipy); --merge keeps the others' figures")
    p.add_argument("--cluster", metavar="local|URL",
                   help="also train on a standalone cluster: `local` starts one here, or a spark:// URL")
    p.add_argument("--cluster-workers", type=int, default=2, help="workers of a `--cluster local` (1 core each)")
    p.add_argument("--cluster-memory", default="2g", help="memory of each worker's executor")
    p.add_argument("--mahout", action="store_true",
                   help="movielens: also Apache Mahout's cooccurrence job beside cooccur with its settings")
    p.add_argument("--mahout-k", type=int, default=50, help="--mahout: correlators per item (both sides)")
    p.add_argument("--mahout-users", type=int, metavar="N",
                   help="--mahout: only the events of the first N users (a quick check)")
    p.add_argument("--scipy-worker", help=argparse.SUPPRESS)
    a = p.parse_args()

    if a.markdown:
        print(markdown(json.loads(a.out.read_text())))
        return

    if a.scipy_worker:
        print(json.dumps(scipy_indicators(**json.loads(a.scipy_worker))))
        return

    from indicators.spark import spark_session

    sets = [DATASETS[s] for s in a.sets.split(",") if s]
    if a.mahout and DATASETS["movielens"] not in sets:
        p.error("--mahout runs on the movielens set: add it to --sets")
    parity_sets = set(filter(None, a.parity.split(",")))
    for ds in sets:
        ensure_data(ds)
    conf = {"spark.driver.memory": a.driver_memory, "spark.ui.showConsoleProgress": "false"}
    conf.update(dict(kv.split("=", 1) for kv in a.conf))
    sampler = RssSampler()
    results: dict[str, dict] = {}
    work = DATA / ".bench-train"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        with spark_session(a.master, conf, "cooccur-bench") as spark:
            info = machine_info(spark, a.master, conf)
            for ds in sets:
                results[ds.name] = run_dataset(spark, ds, a, sampler, work, ds.name in parity_sets)
        if a.mahout:  # after the session: Mahout's JVM does not compete with cooccur's
            run_mahout_side(a, DATASETS["movielens"], results["movielens"], sampler, work)
        if a.cluster:
            info["cluster"] = run_on_cluster(a, sets, results, sampler, work)
    finally:
        sampler.stop()
    info["load_average_after"] = round(os.getloadavg()[0], 2)
    doc = write_results(a.out, info, results, merge=a.merge)
    print()
    print_table(table_rows(doc["datasets"]))
    for line in mahout_summary(results):
        print(line)
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
