"""The fold of `cooccur update`: new events added to a model's saved counting state, in
numpy/scipy/pyarrow (no pyspark: `update --from-store` and the serving refresher run it
in a small process). The method is in indicators/update.py's docstring; the same scoring
function as the job's (`cooccurrence.score_rows`) keeps results identical.

`fold` runs the steps in order: admit (min_events_per_user), downsample, count (pair
deltas), rescore (indicators), then writes a new model version (state, rankings and
properties, changed items) and publishes its manifest (indicators.model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from scipy import sparse

from .columns import run_ranks, sorted_codes
from .cooccurrence import IndicatorSpec, pair_table, score_rows, write_pairs
from .llr import LlrTable
from .model import Location, data_of, discard, iso, new_version, package_version, publish
from .parts import write_properties, write_rankings, write_table
from .properties import CHANGES_SCHEMA
from .rankings import from_micros, micros
from .settings import TrainSettings
from .stages import Stages
from .state import StateError, model_settings, read_state

# Pairs scored per chunk: bounds the LLR temporaries (about 40 bytes a pair).
SCORE_CHUNK = 4_000_000


@dataclass
class Delta:
    """New events, read and validated: what `fold` adds to a model."""

    interactions: pa.Table
    """action, user, item, h: interactions of the indicator actions (repeats allowed)."""
    ranked: pa.Table
    """item, time_us: events of the ranked actions."""
    property_changes: pa.Table
    """properties.CHANGES_SCHEMA rows of the new item events."""
    events: dict[str, int]
    """New events per action (all user events, as the manifest counts them)."""
    newest_us: int | None
    input: dict = field(default_factory=dict)


@dataclass
class UpdateReport:
    """What an update did."""

    model_dir: str
    model_id: str
    base_model_id: str | None  # None: a base manifest without model_id
    input: dict
    users: int = 0
    new_users: int = 0
    """Users counted now and not before: new ones, and admitted ones."""
    admitted_users: int = 0
    """Users left out before (fewer primary events than min_events_per_user) who reached it:
    their earlier interactions count from now on, as in a retrain."""
    users_left_out: int = 0
    new_interactions: dict = field(default_factory=dict)
    changed_users: int = 0
    rescored: dict = field(default_factory=dict)
    """Rows (primary items) re-scored per indicator; all of them when N changed."""
    indicators: dict = field(default_factory=dict)
    changed_items: int = 0
    """Items whose document differs from the base model's (what `index --changed-only` rewrites)."""
    rejects_file: str | None = None
    quarantined: int = 0
    """Stored events left out because they cannot be folded (`update --from-store`; kept in the store)."""
    newest_event: str | None = None
    timings: dict = field(default_factory=dict)
    seconds: float = 0.0


INTERACTION_SCHEMA = pa.schema([("action", pa.string()), ("user", pa.string()),
                                ("item", pa.string()), ("h", pa.int64())])
HELD_USERS_SCHEMA = pa.schema([("user", pa.string()), ("primary_events", pa.int64())])


@dataclass
class _Held:
    """min_events_per_user's side of an update: the new interactions that count, and what
    stays left out (state/held_interactions, state/held_users)."""

    counted: pa.Table
    """action, user, item, h: new interactions of counted users, and all interactions of the
    users admitted now (they enter the counting as new users would)."""
    rows: pa.Table
    users: pa.Table
    admitted: int


def _admit(model: Location, new: pa.Table, settings: TrainSettings) -> _Held:
    """Split new interactions by min_events_per_user. A user counts once their primary
    events (raw, repeats included, as training counts them) reach the minimum; counts only
    grow, so a counted user stays counted. A user reaching it now is admitted with every
    interaction held so far: the counting sees them as a new user, which is what a
    retrain on all events would see."""
    state = model / "state"
    new = new.select(INTERACTION_SCHEMA.names).cast(INTERACTION_SCHEMA)
    held = read_state(state / "held_interactions").select(INTERACTION_SCHEMA.names).cast(INTERACTION_SCHEMA)
    held_users = read_state(state / "held_users").select(HELD_USERS_SCHEMA.names).cast(HELD_USERS_SCHEMA)
    counted_before, _ = _dictionary_parts(read_state(
        state / "interactions", columns=["user"], read_dictionary=["user"]).unify_dictionaries()["user"])

    primary = new.filter(pc.equal(new["action"], settings.primary))
    per_user = primary.group_by("user").aggregate([("user", "count")])
    # Candidates: every user not counted yet who has a held or a new interaction.
    users = pc.unique(pa.chunked_array([held_users["user"], new["user"]], type=pa.string()).combine_chunks())
    users = users.filter(pc.invert(pc.is_in(users, value_set=counted_before)))

    def lookup(table: pa.Table, column: str) -> np.ndarray:
        at = pc.index_in(users, value_set=table["user"])
        return pc.fill_null(pc.take(table[column], at), 0).to_numpy(zero_copy_only=False).astype(np.int64) \
            if table.num_rows else np.zeros(len(users), np.int64)

    events = lookup(held_users, "primary_events") + lookup(per_user, "user_count")
    reached = events >= settings.min_events_per_user
    admitted, still = users.filter(pa.array(reached)), users.filter(pa.array(~reached))
    keep_held = pc.is_in(held["user"], value_set=still)
    new_held = pc.is_in(new["user"], value_set=still)
    rows = pa.concat_tables([held.filter(keep_held), new.filter(new_held)])
    # One row per (action, user, item): h is a function of (user, item), repeats agree on it.
    rows = rows.group_by(["action", "user", "item"]).aggregate([("h", "min")]).rename_columns(
        ["action", "user", "item", "h"]).select(INTERACTION_SCHEMA.names)
    counted = pa.concat_tables([held.filter(pc.is_in(held["user"], value_set=admitted)),
                                new.filter(pc.invert(new_held))])
    return _Held(counted=counted, rows=rows,
                 users=pa.table({"user": still, "primary_events": pa.array(events[~reached], pa.int64())}),
                 admitted=len(admitted))


@dataclass
class _Interactions:
    """All distinct interactions, old rows first, with codes: users sorted by id (code
    order is id order), items as the pair files code them."""

    action: np.ndarray
    user: np.ndarray
    item: np.ndarray
    h: np.ndarray
    user_kept: np.ndarray
    kept: np.ndarray
    users: pa.Array
    items: pa.Array
    """The model's items: state/items.parquet, new ones appended (codes never change)."""
    item_rank: np.ndarray
    """Each item code's position in id order: ties break by id, as in the job."""
    n_old: int


def _dictionary_parts(column: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """(ids, row indices into them) of a dictionary-encoded column whose chunks share one
    dictionary (a table read with read_dictionary, then unify_dictionaries)."""
    if not column.num_chunks:
        return pa.array([], pa.string()), np.zeros(0, np.int64)
    indices = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in column.chunks])
    return column.chunk(0).dictionary, indices


def _codes(old: pa.ChunkedArray, new: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Codes (old rows, then new) in one sorted dictionary of the ids. The old column is
    dictionary-encoded (read so): only its few distinct ids are sorted and looked up, never
    the millions of rows."""
    dictionary, indices = _dictionary_parts(old)
    values = pa.concat_arrays([dictionary, pc.unique(new.combine_chunks())])
    value_codes, ids = sorted_codes(values)
    new_codes = pc.index_in(new, value_set=ids).to_numpy(zero_copy_only=False)
    return np.concatenate([value_codes[:len(dictionary)][indices], new_codes]).astype(np.int64), ids


def _item_codes(model: Location, old: pa.ChunkedArray, new: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """Codes of the old rows' and the new rows' items in the model's item list with new
    items appended (sorted among themselves); the list; each code's rank in id order."""
    known = read_state(model / "state" / "items.parquet")["item"].combine_chunks()
    fresh = pc.unique(new.combine_chunks())
    fresh = fresh.filter(pc.invert(pc.is_in(fresh, value_set=known)))
    items = pa.concat_arrays([known, fresh.take(pc.array_sort_indices(fresh))])
    dictionary, indices = _dictionary_parts(old)
    mapped = pc.index_in(dictionary, value_set=items)
    if mapped.null_count:
        raise StateError(str(model / "state"), "interactions name items that items.parquet does not have")
    codes = np.concatenate([mapped.to_numpy(zero_copy_only=False).astype(np.int64)[indices],
                            pc.index_in(new, value_set=items).to_numpy(zero_copy_only=False)])
    rank = np.empty(len(items), dtype=np.int64)
    rank[pc.array_sort_indices(items).to_numpy()] = np.arange(len(items))
    return codes.astype(np.int64), items, rank


def _load_interactions(model: Location, delta: pa.Table, actions: list[str]) -> _Interactions:
    old = read_state(model / "state" / "interactions",
                     read_dictionary=["action", "user", "item"]).unify_dictionaries()
    user, users = _codes(old["user"], delta["user"])
    item, items, item_rank = _item_codes(model, old["item"], delta["item"])
    names = pa.array(actions, pa.string())
    action = np.concatenate([
        pc.index_in(old["action"].cast(pa.string()), value_set=names).to_numpy(zero_copy_only=False),
        pc.index_in(delta["action"], value_set=names).to_numpy(zero_copy_only=False),
    ]).astype(np.int64)
    h = np.concatenate([old["h"].to_numpy(), delta["h"].to_numpy()]).astype(np.int64)
    n_old = old.num_rows
    # Drop repeats among the new rows and new rows already known (kept or not).
    key = (action * len(users) + user) * len(items) + item
    _, first = np.unique(key[n_old:], return_index=True)
    fresh = n_old + np.sort(first)
    fresh = fresh[~pc.is_in(pa.array(key[fresh]), value_set=pa.array(key[:n_old])).to_numpy(zero_copy_only=False)]
    rows = np.r_[np.arange(n_old), fresh]
    pad = np.zeros(len(fresh), dtype=bool)
    return _Interactions(
        action=action[rows], user=user[rows], item=item[rows], h=h[rows],
        user_kept=np.r_[old["user_kept"].to_numpy(), pad],
        kept=np.r_[old["kept"].to_numpy(), pad],
        users=users, items=items, item_rank=item_rank, n_old=n_old,
    )


def _member(values: np.ndarray, wanted: np.ndarray, size: int) -> np.ndarray:
    """values in wanted, for codes below `size`: a table lookup, O(n) (np.isin sorts)."""
    table = np.zeros(size, dtype=bool)
    table[wanted] = True
    return table[values]


def _rank_within(
    groups: np.ndarray, rows: np.ndarray, cap: int, *tie_keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Of `rows`, those in groups larger than `cap` sorted by (group, *tie_keys), and each
    one's rank inside its group; rows of groups within the cap are all kept, unsorted
    (rank 0), since no order can drop them."""
    sizes = np.bincount(groups[rows])
    big = sizes[groups[rows]] > cap
    small, rows = rows[~big], rows[big]
    order = np.lexsort(tuple(k[rows] for k in reversed(tie_keys)) + (groups[rows],))
    rows = rows[order]
    return np.r_[small, rows], np.r_[np.zeros(len(small), np.int64), run_ranks(groups[rows])[0]]


def _downsample(x: _Interactions, cap_user: int, cap_item: int, n_actions: int) -> None:
    """Recompute the caps where new rows can change them (the job's order: user cap by
    (hash, item), then item cap by (hash, user) among what the user cap kept). A user's
    old rows that lost before lose again: new rows only raise the bar."""
    old_user_kept = x.user_kept.copy()
    by_user = x.action * len(x.users) + x.user
    if cap_user == 0:
        x.user_kept[:] = True
    else:
        touched = _member(by_user, by_user[x.n_old:], len(x.users) * n_actions)
        rows, rank = _rank_within(by_user, np.flatnonzero(touched), cap_user, x.h, x.item_rank[x.item])
        x.user_kept[rows] = rank < cap_user
    by_item = x.action * len(x.items) + x.item
    touched = _member(by_item, by_item[x.user_kept != old_user_kept], len(x.items) * n_actions)
    x.kept[touched] = False
    if cap_item == 0:
        x.kept[touched & x.user_kept] = True
    else:
        rows, rank = _rank_within(by_item, np.flatnonzero(touched & x.user_kept), cap_item, x.h, x.user)
        x.kept[rows] = rank < cap_item


def _pair_deltas(x: _Interactions, old_kept: np.ndarray, n_actions: int) -> tuple[list, np.ndarray]:
    """dC = A_new'B_new - A_old'B_old per indicator action, over the users whose kept
    interactions changed (no one else's rows of A or B moved); and those users.

    With dA = A_new - A_old (entries +-1, few): dC = A_old'dB + dA'B_new, which touches
    each changed user's interactions once per change instead of all their pairs twice."""
    flipped = x.kept != old_kept
    changed = np.unique(x.user[flipped])
    mine = _member(x.user, changed, len(x.users))
    compact = np.searchsorted(changed, x.user)
    n = len(changed)

    def m(mask: np.ndarray, action: int, sign: np.ndarray | None = None) -> sparse.csr_matrix:
        rows = np.flatnonzero(mine & mask & (x.action == action))
        data = np.ones(len(rows), dtype=np.int64) if sign is None else sign[rows]
        return sparse.csr_matrix((data, (compact[rows], x.item[rows])), shape=(n, len(x.items)))

    sign = np.where(x.kept, 1, -1).astype(np.int64)  # +1 entered the kept set, -1 left it
    a_old_t = m(old_kept, 0).T.tocsr()
    d_a_t = m(flipped, 0, sign).T.tocsr()
    deltas = []
    for act in range(n_actions):
        d = (a_old_t @ m(flipped, act, sign) + d_a_t @ m(x.kept, act)).tocoo()
        keep = d.data != 0
        if act == 0:
            keep &= d.row != d.col  # an item is not its own correlator
        deltas.append(sparse.csr_matrix((d.data[keep], (d.row[keep], d.col[keep])), shape=d.shape))
    return deltas, changed


@dataclass
class _Pairs:
    """The saved pair counts: one matrix per indicator (global codes), and which file
    holds each primary item's rows (-1: none yet)."""

    matrices: list[sparse.csr_matrix]
    file_of: np.ndarray
    files: list[Location]


def _csr_from_runs(rows: np.ndarray, cols: np.ndarray, data: np.ndarray, n: int) -> sparse.csr_matrix:
    """An n x n CSR matrix from entries where each row's entries are one contiguous run with
    sorted columns, rows in any order (as the pair files hold them): an O(nnz) scatter
    instead of the sort scipy's COO conversion does."""
    indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=n))]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else np.zeros(0, np.int64)
    dest = np.repeat(indptr[rows[starts]] - starts, np.diff(np.r_[starts, len(rows)])) + np.arange(len(rows))
    indices, values = np.empty(len(rows), np.int32), np.empty(len(rows), np.int64)
    indices[dest], values[dest] = cols, data
    m = sparse.csr_matrix((values, indices, indptr), shape=(n, n))
    m.has_sorted_indices = True
    return m


def _load_pairs(model: Location, n_actions: int, n_items: int) -> _Pairs:
    pairs = model / "state" / "pairs"
    files = [pairs / p.rsplit("/", 1)[-1] for p in pairs.files()]
    parts: list[list[tuple]] = [[] for _ in range(n_actions)]
    file_of = np.full(n_items, -1, dtype=np.int64)
    for f_id, f in enumerate(files):
        t = read_state(f)
        if t.num_rows == 0:
            continue
        ind, a, b, k11 = (t[c].to_numpy() for c in ("indicator", "a", "b", "k11"))
        if max(int(a.max()), int(b.max())) >= n_items or int(ind.max()) >= n_actions:
            raise StateError(str(f), "pair counts name items or indicators the model does not have")
        file_of[a] = f_id
        # A file holds its indicators one after another, each sorted by (a, b).
        bounds = np.flatnonzero(np.r_[True, ind[1:] != ind[:-1], True])
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            parts[ind[lo]].append((a[lo:hi], b[lo:hi], k11[lo:hi]))
    matrices = []
    for p in parts:
        a, b, k = (np.concatenate(c) for c in zip(*p, strict=True)) if p else (np.zeros(0, np.int64),) * 3
        matrices.append(_csr_from_runs(a, b, k, n_items))
    return _Pairs(matrices, file_of, files)


def _write_pairs(pairs: _Pairs, changed_rows: np.ndarray, out: Location, generation: int) -> None:
    """Rewrite the pair files that hold a changed row (rows new to the model go to a new
    file); link the others unchanged."""
    out.mkdir()
    dirty = np.unique(pairs.file_of[changed_rows])
    for f_id, f in enumerate(pairs.files):
        if f_id not in dirty:
            _link(f, out / f.name)
    groups = [(pairs.files[f].name, np.flatnonzero(pairs.file_of == f)) for f in dirty if f >= 0]
    fresh = changed_rows[pairs.file_of[changed_rows] == -1]
    if len(fresh):
        groups.append((f"part-g{generation:05d}.parquet", fresh))
    identity = np.arange(pairs.matrices[0].shape[1])
    for name, rows in groups:
        tables = [pair_table(i, rows, identity, c[rows]) for i, c in enumerate(pairs.matrices)]
        write_pairs(pa.concat_tables(tables), out / name)


def _link(src: Location, dst: Location) -> None:
    """Hard link where local (an unchanged file costs nothing), else a copy."""
    if src.fs is dst.fs:
        dst.copy_file(src.path, dst.path)
    else:
        pafs.copy_files(src.path, dst.path, source_filesystem=src.fs, destination_filesystem=dst.fs)


def _score(c: sparse.csr_matrix, rows: np.ndarray, a_counts, b_counts, table: LlrTable,
           spec: IndicatorSpec, col_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """score_rows over the given rows, in chunks of about SCORE_CHUNK pairs."""
    out_r, out_c, out_s = [], [], []
    lengths = np.diff(c.indptr)[rows]
    bounds = np.searchsorted(np.cumsum(lengths), np.arange(SCORE_CHUNK, lengths.sum() + SCORE_CHUNK, SCORE_CHUNK))
    start = 0
    for end in np.unique(np.r_[np.minimum(bounds + 1, len(rows)), len(rows)]):
        if end <= start:
            continue
        chunk = rows[start:end]
        sub = c[chunk]
        sub.sort_indices()
        r, col, s = score_rows(sub, a_counts[chunk], b_counts, table, spec, col_rank)
        out_r.append(chunk[r])
        out_c.append(col)
        out_s.append(s)
        start = end
    if not out_r:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(out_r), np.concatenate(out_c), np.concatenate(out_s)


def _indicator_rows(name: str, rows, cols, scores, items: pa.Array) -> pa.Table:
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else np.zeros(0, np.int64)
    offsets = pa.array(np.r_[starts, len(rows)].astype(np.int32))
    return pa.table({
        "indicator": pa.array([name] * len(starts), pa.string()),
        "item": items.take(pa.array(rows[starts])),
        "correlators": pa.ListArray.from_arrays(offsets, items.take(pa.array(cols))),
        "scores": pa.ListArray.from_arrays(offsets, pa.array(scores, pa.float64())),
    })


def _read_dataset(path: Location) -> pa.Table | None:
    """A directory's Parquet files as one table; None when it has none."""
    if not path.files():
        return None
    return read_state(path)


def _rescore(model: Location, settings: TrainSettings, pairs: _Pairs, counts: np.ndarray,
             old_counts: np.ndarray, changed_rows: np.ndarray, items: pa.Array, item_rank: np.ndarray,
             n_users: int, n_before: int) -> tuple[pa.Table, dict]:
    """The updated indicators and the rows re-scored per indicator: every row when N
    changed (it is in every LLR); else the rows whose k11, own count or any correlator's
    count changed, the others kept from the base model."""
    n = len(items)
    table = LlrTable(n_users)
    a_counts = counts[:n]
    # Rows not re-scored keep the base model's; with a new N every row is re-scored.
    old_tables = _read_dataset(model / "indicators") if n_users == n_before else None
    new_tables, rescored = [], {}
    for i, ind in enumerate(settings.indicators):
        c = pairs.matrices[i]
        b_counts, old_b = counts[i * n:(i + 1) * n], old_counts[i * n:(i + 1) * n]
        if n_users != n_before:
            rescore = np.ones(n, dtype=bool)
        else:
            rescore = changed_rows | (a_counts != old_counts[:n])
            moved = np.flatnonzero(b_counts != old_b)
            if len(moved):
                entry_rows = np.repeat(np.arange(n), np.diff(c.indptr))
                rescore[entry_rows[_member(c.indices, moved, n)]] = True
            if old_tables is not None:
                kept = old_tables.filter(pc.equal(old_tables["indicator"], ind.name))
                gone = items.take(pa.array(np.flatnonzero(rescore)))
                new_tables.append(kept.filter(pc.invert(pc.is_in(kept["item"], value_set=gone))))
        rows = np.flatnonzero(rescore & (np.diff(c.indptr) > 0))
        r, col, s = _score(c, rows, a_counts, b_counts, table,
                           IndicatorSpec(ind.name, ind.max_correlators, ind.min_llr), item_rank)
        rescored[ind.name] = len(rows)
        new_tables.append(_indicator_rows(ind.name, r, col, s, items))
    schema = new_tables[-1].schema
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in new_tables]), rescored


@dataclass
class _Counts:
    """The count step's result: pair counts with the deltas added, item counts per
    (indicator, item) after and before, and the primary items whose pair counts changed."""

    pairs: _Pairs
    counts: np.ndarray
    old_counts: np.ndarray
    changed_rows: np.ndarray


def fold(model: Location, manifest: dict, delta: Delta, out: Location, stages: Stages,
         event_store: dict | None = None) -> UpdateReport:
    """Add read events to a model's state and write the updated model to `out`: a new
    version there, published by its manifest."""
    settings = model_settings(manifest)
    base = data_of(model, manifest)
    held = _admit(base, delta.interactions, settings) if settings.min_events_per_user else None
    x, old_kept, report = _downsample_step(base, manifest, delta, settings, held, stages)
    counted = _count_step(base, x, old_kept, len(settings.actions), report, stages)
    indicators = _rescore_step(base, settings, counted, x, manifest["state"]["users"], report, stages)
    report.model_id, version = new_version(out)
    report.model_dir = out.uri
    try:
        generation = manifest["state"]["generation"] + 1
        _write_state(version, indicators, counted, x, settings.actions, held, generation)
        stages.done("write", "indicators, pair counts and interactions")
        ranked, props = _write_rankings_properties(base, manifest, delta, settings, version)
        stages.done("rankings", f"{ranked['items']:,} items ranked; {props['items']:,} items with "
                    f"properties {props['names']}")
        changed = _changed_items(base, version)
        report.changed_items = len(changed)
        write_table(pa.table({"item": changed}), version / "changed" / "part-00000.parquet")
        stages.done("changes", f"{len(changed):,} item documents changed")
        report.newest_event = iso(from_micros(ranked["newest_us"]))
        report.timings = dict(stages.timings)
        publish(out, _manifest(manifest, report, x, settings, delta, generation, ranked, props, event_store))
    except BaseException:
        discard(version)
        raise
    return report


def _downsample_step(base: Location, manifest: dict, delta: Delta, settings: TrainSettings,
                     held: _Held | None, stages: Stages) -> tuple[_Interactions, np.ndarray, UpdateReport]:
    """Load the interactions with the new ones and re-apply the caps; (interactions, kept
    flags before, the report so far)."""
    actions = settings.actions
    n_before = manifest["state"]["users"]
    x = _load_interactions(base, held.counted if held else delta.interactions, actions)
    old_kept = x.kept.copy()
    _downsample(x, settings.max_interactions_per_user, settings.max_users_per_item, len(actions))
    n_users = len(x.users)  # every user in the dictionary has an interaction
    new_rows = x.action[x.n_old:]
    report = UpdateReport(
        model_dir="", model_id="", base_model_id=manifest.get("model_id"),
        input=delta.input, users=n_users, new_users=n_users - n_before,
        new_interactions={a: int((new_rows == i).sum()) for i, a in enumerate(actions)},
    )
    left_out = ""
    if held is not None:
        report.admitted_users, report.users_left_out = held.admitted, held.users.num_rows
        left_out = (f" ({report.admitted_users:,} reached min_events_per_user; "
                    f"{report.users_left_out:,} users left out)")
    stages.done("downsample", f"{len(new_rows):,} new interactions, {report.new_users:,} new users{left_out}; "
                f"{int((x.kept != old_kept).sum()):,} kept flags changed")
    return x, old_kept, report


def _count_step(base: Location, x: _Interactions, old_kept: np.ndarray, n_actions: int,
                report: UpdateReport, stages: Stages) -> _Counts:
    """Add the pair deltas of the users whose kept interactions changed to the saved pair
    counts; item counts after and before."""
    deltas, changed_users = _pair_deltas(x, old_kept, n_actions)
    report.changed_users = len(changed_users)
    n = len(x.items)
    pairs = _load_pairs(base, n_actions, n)
    counts = np.bincount(x.action[x.kept] * n + x.item[x.kept], minlength=n_actions * n)
    old_counts = np.bincount(x.action[old_kept] * n + x.item[old_kept], minlength=n_actions * n)
    changed_rows = np.zeros(n, dtype=bool)
    for i, d in enumerate(deltas):
        pairs.matrices[i] = (pairs.matrices[i] + d).tocsr()
        pairs.matrices[i].eliminate_zeros()
        if pairs.matrices[i].nnz and pairs.matrices[i].data.min() < 0:
            raise StateError(str(base / "state"),
                             "pair counts went negative: the state does not match the interactions")
        changed_rows[np.diff(d.indptr) > 0] = True
    stages.done("count", f"{len(changed_users):,} users' pairs recounted; "
                f"{int(changed_rows.sum()):,} primary items' counts changed")
    return _Counts(pairs, counts, old_counts, changed_rows)


def _rescore_step(base: Location, settings: TrainSettings, c: _Counts, x: _Interactions, n_before: int,
                  report: UpdateReport, stages: Stages) -> pa.Table:
    """The updated indicators; their counts into the report."""
    indicators, report.rescored = _rescore(
        base, settings, c.pairs, c.counts, c.old_counts, c.changed_rows, x.items, x.item_rank,
        len(x.users), n_before)
    for ind in settings.actions:
        sel = indicators.filter(pc.equal(indicators["indicator"], ind))
        report.indicators[ind] = {
            "items": sel.num_rows,
            "correlators": int(pc.sum(pc.list_value_length(sel["correlators"])).as_py() or 0),
        }
    stages.done("indicators", "; ".join(
        f"{a}: {report.rescored[a]:,} rows re-scored, {v['items']:,} items, {v['correlators']:,} correlators"
        for a, v in report.indicators.items()))
    return indicators


def _write_state(version: Location, indicators: pa.Table, c: _Counts, x: _Interactions,
                 actions: list[str], held: _Held | None, generation: int) -> None:
    """The new version's indicators and counting state."""
    state = version / "state"
    write_table(indicators, version / "indicators" / "part-00000.parquet")
    _write_pairs(c.pairs, np.flatnonzero(c.changed_rows), state / "pairs", generation)
    write_table(pa.table({"item": x.items}), state / "items.parquet")
    _write_interactions(x, actions, state / "interactions")
    if held is not None:
        for name, table in (("held_interactions", held.rows), ("held_users", held.users)):
            write_table(table, state / name / "part-00000.parquet", compression="zstd")


def _write_rankings_properties(base: Location, manifest: dict, delta: Delta, settings: TrainSettings,
                               version: Location) -> tuple[dict, dict]:
    """Rankings and properties from the saved inputs and the new events (they are small);
    ({items, newest_us}, {names, items})."""
    newest_us = max(filter(None, [_us(manifest.get("newest_event")), delta.newest_us]), default=None)
    ranked = pa.concat_tables([
        read_state(base / "state" / "ranking_events.parquet"),
        delta.ranked.select(["item", "time_us"]).cast(pa.schema([("item", pa.string()), ("time_us", pa.int64())])),
    ])
    first_us = pc.min(ranked["time_us"]).as_py()
    n_ranked = write_rankings(ranked, settings, from_micros(newest_us), from_micros(first_us), version)
    changes = pa.concat_tables([
        read_state(base / "state" / "property_changes.parquet"),
        delta.property_changes.select(CHANGES_SCHEMA.names),
    ], promote_options="permissive")
    names, n_props = write_properties(changes, version)
    return {"items": n_ranked, "newest_us": newest_us}, {"names": names, "items": n_props}


def _manifest(manifest: dict, report: UpdateReport, x: _Interactions, settings: TrainSettings, delta: Delta,
              generation: int, ranked: dict, props: dict, event_store: dict | None) -> dict:
    """The updated model's manifest: the base's, with the new version, state and counts."""
    counts_before = manifest.get("counts", {})
    events_before = {a: s.get("events", 0) for a, s in counts_before.get("actions", {}).items()}
    m = {
        **manifest,
        "model_id": report.model_id,
        "data": f"versions/{report.model_id}",
        "base_model_id": report.base_model_id,
        "created": iso(datetime.now(UTC)),
        "cooccur_version": package_version(),
        "properties": props["names"],
        "newest_event": report.newest_event,
        "state": {"pairs": True, "users": report.users, "generation": generation},
        "counts": {
            # Every row read, by the training and every update since.
            "input": {k: (counts_before.get("input") or {}).get(k, 0) + v for k, v in delta.input.items()},
            "users": report.users,
            "users_left_out": report.users_left_out,
            "actions": _action_stats(x, settings, events_before, delta.events),
            "indicators": report.indicators,
            "rankings": ranked["items"],
            "items_with_properties": props["items"],
        },
        "update": {k: v for k, v in asdict(report).items() if k not in ("timings", "model_dir")},
        "timings": report.timings,
    }
    if event_store is not None:
        m["event_store"] = event_store
    return m


def _us(iso: str | None) -> int | None:
    return None if not iso else micros(datetime.fromisoformat(iso.replace("Z", "+00:00")))


def _write_interactions(x: _Interactions, actions: list[str], path: Location) -> None:
    """Dictionary-encoded ids: the ids are written once, the rows as codes."""

    def encoded(codes: np.ndarray, ids: pa.Array) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), ids)

    write_table(pa.table({
        "action": encoded(x.action, pa.array(actions, pa.string())),
        "user": encoded(x.user, x.users),
        "item": encoded(x.item, x.items),
        "h": x.h, "user_kept": x.user_kept, "kept": x.kept,
    }), path / "part-00000.parquet", compression="zstd", write_statistics=False)


def _action_stats(x: _Interactions, settings: TrainSettings, before: dict, new: dict) -> dict:
    """The manifest's per-action counts, as the job computes them, from all interactions."""
    stats = {}
    n_u, n_i = len(x.users), len(x.items)
    for a, name in enumerate(settings.actions):
        sel = x.action == a
        per_user = np.bincount(x.user[sel], minlength=n_u)
        survivors = np.bincount(x.item[sel & x.user_kept], minlength=n_i)
        cap_u, cap_i = settings.max_interactions_per_user, settings.max_users_per_item
        stats[name] = {
            "events": int(before.get(name, 0) + new.get(name, 0)),
            "users": int((per_user > 0).sum()),
            "items": int((np.bincount(x.item[sel], minlength=n_i) > 0).sum()),
            "interactions": int(sel.sum()),
            "kept": int((sel & x.kept).sum()),
            "users_capped": int((per_user > cap_u).sum()) if cap_u else 0,
            "items_capped": int((survivors > cap_i).sum()) if cap_i else 0,
        }
    return stats


def _keyed(t: pa.Table | None, key: list[str], value: pa.Array | None = None) -> pa.Table:
    if t is None:
        return pa.table({"key": pa.array([], pa.string()), "item": pa.array([], pa.string()),
                         "value": pa.array([], pa.string())})
    k = t[key[0]] if len(key) == 1 else pc.binary_join_element_wise(*[t[c] for c in key], "\x00")
    return pa.table({"key": k, "item": t["item"], "value": value})


def _changed_items(old: Location, new: Location) -> pa.Array:
    """Items whose document differs between two models (indicator lists and their scores,
    properties, rankings), including items in one of them only."""
    changed = []
    for part, key, value in (
        # scores too: they are the documents' correlator weights
        ("indicators", ["indicator", "item"], lambda t: pc.binary_join_element_wise(
            pc.binary_join(t["correlators"], "\x1f"),
            pc.binary_join(pc.cast(t["scores"], pa.list_(pa.string())), "\x1f"), "\x1e")),
        ("properties", ["item", "name"], lambda t: pc.binary_join(t["values"], "\x1f")),
        ("rankings", ["item"], lambda t: pc.binary_join_element_wise(
            *[pc.cast(t[c], pa.string()) for c in ("popular", "trending", "hot")], "\x1f")),
    ):
        a, b = (_read_dataset(m / part) for m in (old, new))
        a = _keyed(a, key, value(a) if a is not None else None)
        b = _keyed(b, key, value(b) if b is not None else None)
        j = a.join(b, "key", join_type="full outer", left_suffix="_a", right_suffix="_b",
                   coalesce_keys=True)
        differ = pc.fill_null(pc.not_equal(j["value_a"], j["value_b"]), True)
        changed.append(pc.coalesce(j["item_a"], j["item_b"]).filter(differ))
    return pc.unique(pa.chunked_array([c for ch in changed for c in ch.chunks], type=pa.string()))
