"""The embedded backend: a local, versioned index directory; no server.

Layout under `<data_dir>/<name>/`:

    CURRENT            the current version's name (replaced atomically with os.replace)
    .lock              held (flock) by a writer while it creates a version or rolls back
    v<UTC timestamp>/  one complete version (see embedded_store for its files)
    .tmp-v<...>/       a version being written; renamed into place only when complete

A version becomes visible only through CURRENT, after every file was written and
fsynced, so readers in any thread or process see either the old or the new version,
never a partial one. Readers check CURRENT on every call and reload when it changed;
live changes (upsert / delete) go to an append-only overlay of the current version that
every process re-reads when it grows. Query semantics: embedded_query / docs/search.md.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np

from .backend import (
    ChangeSet,
    Check,
    Document,
    Hit,
    IndexReport,
    IndexSchema,
    ProgressFn,
    SearchResult,
    VersionInfo,
    check_update_base,
)
from .documents import ModelDocuments
from .embedded_query import Evaluator, parse_body, top_hits
from .embedded_store import (
    FORMAT,
    OVERLAY,
    BaseVersion,
    Segment,
    Snapshot,
    build_segment,
    check_document,
    iter_overlay_lines,
    read_overlay,
    schema_from_json,
    schema_to_json,
    segment_from_columns,
    write_segment,
)
from .errors import BackendUnavailable, DocumentsFailed, IndexerError

logger = logging.getLogger(__name__)

CURRENT = "CURRENT"
PROGRESS_EVERY = 1000
COPY_BATCH = 4096
"""Documents rendered at a time when `update_version` copies the current version's."""


BROKEN_HINT = "`cooccur rollback` to the version before, or `cooccur index MODEL_DIR` again"


class IndexBusy(IndexerError):
    """Another process is creating a version of (or rolling back) the same index."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} is locked by another indexing run or rollback",
            hint="wait for it to finish; the lock is released when that process ends",
        )
        self.path = path


class NoEarlierVersion(IndexerError):
    def __init__(self, current: str | None) -> None:
        super().__init__(
            f"no version before {current or '(none)'} to roll back to",
            hint="`cooccur indexes` lists the kept versions",
        )
        self.current = current


def tune_malloc() -> bool:
    """Make glibc serve large arrays from the heap and keep freed memory for reuse (mallopt
    M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 256 MiB). A search allocates a few arrays the
    size of the index (scores, masks); by default each is a fresh mmap whose pages fault in
    one by one, which costs more than the arithmetic at 100k documents. `cooccur serve` calls
    this in every worker; call it in your own server process. Returns whether it applied
    (False off glibc)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 * 1024 * 1024)) and bool(mallopt(m_trim_threshold, 256 * 1024 * 1024))


def search_threads(setting: int = 0, searches_at_once: int = 1) -> int:
    """Threads a search scores its long posting lists with: `setting` when > 0; 0 (auto): the
    cores this process may use, shared by the searches that run at once (`cooccur serve`'s
    processes x threads: one each with its defaults), at least 1."""
    if setting > 0:
        return setting
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, searches_at_once))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EmbeddedBackend:
    """A versioned index of item documents in a local directory (the Backend protocol)."""

    def __init__(self, data_dir: str | os.PathLike, name: str = "items", keep_versions: int = 3,
                 search_threads: int = 1) -> None:
        if keep_versions < 1:
            raise ValueError("keep_versions must be at least 1")
        if search_threads < 0:
            raise ValueError("search_threads must be 0 (auto) or more")
        self.search_threads = search_threads
        """[index] search_threads: threads per search (0: auto, see `search_threads`)."""
        self.searches_at_once = 1
        """Searches a server runs at once on this machine (`share_cores`)."""
        self.data_dir = Path(data_dir)
        self.name = name
        self.root = self.data_dir / name
        self.keep_versions = keep_versions
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._current: tuple[tuple, str | None] | None = None

    # ------------------------------------------------------------------ writing
    def share_cores(self, searches_at_once: int) -> None:
        """A server runs this many searches at once (its processes x threads): with
        search_threads auto, each search then scores with cores / searches_at_once threads."""
        self.searches_at_once = searches_at_once

    def create_version(
        self,
        schema: IndexSchema,
        documents: Iterable[Document],
        *,
        progress: ProgressFn | None = None,
        model_id: str | None = None,
        model: dict[str, Any] | None = None,
    ) -> IndexReport:
        """Write all documents into a new version, verify it, switch CURRENT to it and
        prune old versions. On any failure the previous version stays current. `model`
        (primary, indicators) goes into the version's meta.json beside `model_id`."""
        started = time.monotonic()
        with self._writer_lock():
            version, count, removed = self._publish(schema, documents, progress,
                                                    {"model_id": model_id, **(model or {})})
        logger.debug("index %s: version %s with %d documents", self.root, version, count)
        return IndexReport(version, count, [], time.monotonic() - started, removed)

    def update_version(
        self,
        schema: IndexSchema,
        changes: ChangeSet,
        *,
        progress: ProgressFn | None = None,
    ) -> IndexReport:
        """Copy-on-write: a new version = the current version's documents (without its
        overlay, as a full index starts without one) with the changed documents replaced,
        added or deleted, written, verified and switched to exactly as create_version does.
        Checked under the writer lock, so no other run can switch versions in between."""
        started = time.monotonic()
        with self._writer_lock():
            current = self._current_name()
            meta = None
            if current is not None:
                try:
                    meta = json.loads((self.root / current / "meta.json").read_text())
                except FileNotFoundError:
                    current = None
            check_update_base(
                current,
                meta.get("model_id") if meta else None,
                schema_from_json(meta["schema"]) if meta else None,
                schema,
                changes,
            )
            replace = {d["id"]: d for d in changes.documents}
            dropped = set(changes.deleted) - set(replace)
            stats = {"copied": 0, "replaced": 0, "deleted": 0}
            assert current is not None  # check_update_base raised otherwise

            def documents() -> Iterator[Document | tuple[Document]]:
                base = BaseVersion(self.root / current)
                try:
                    kept = []
                    for slot, doc_id in enumerate(base.segment.ids.tolist()):
                        if doc_id in replace:
                            stats["replaced"] += 1
                        elif doc_id in dropped:
                            stats["deleted"] += 1
                        else:
                            kept.append(slot)
                    stats["copied"] = len(kept)
                    # only the kept documents are rendered, a few thousand at a time
                    for a in range(0, len(kept), COPY_BATCH):
                        yield from ((doc,) for doc in base.documents_at(np.array(kept[a:a + COPY_BATCH], np.int64)))
                finally:
                    base.close()
                yield from changes.documents

            version, count, removed = self._publish(
                schema, documents(), progress,
                {"model_id": changes.model_id, "base_model_id": changes.base_model_id, "base_version": current,
                 **(changes.model or {})},
            )
        added = len(replace) - stats["replaced"]
        logger.debug(
            "index %s: version %s from %s: %d documents copied, %d replaced, %d added, %d deleted",
            self.root, version, current, stats["copied"], stats["replaced"], added, stats["deleted"],
        )
        return IndexReport(
            version, count, [], time.monotonic() - started, removed,
            copied=stats["copied"], replaced=stats["replaced"], added=added, deleted=stats["deleted"],
        )

    def _publish(
        self, schema: IndexSchema, documents: Iterable[Document | tuple[Document]],
        progress: ProgressFn | None,
        extra_meta: dict[str, Any],
    ) -> tuple[str, int, list[str]]:
        """Write, verify and switch to a new version (the caller holds the writer lock):
        (version name, documents, pruned versions)."""
        self._remove_stale_temp_dirs()
        version = self._new_version_name()
        tmp = self.root / f".tmp-{version}"
        tmp.mkdir()
        try:
            count = self._write_version(tmp, version, schema, documents, progress, extra_meta)
            final = self.root / version
            os.rename(tmp, final)
            _fsync_dir(self.root)
            # verify: the new version opens and holds every document before anyone sees it
            opened = BaseVersion(final)
            if opened.segment.n != count:
                raise IndexerError(f"{final}: wrote {count} documents but {opened.segment.n} load")
            opened.close()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(self.root / version, ignore_errors=True)
            raise
        self._set_current(version)
        return version, count, self._prune()

    def _write_version(
        self, tmp: Path, version: str, schema: IndexSchema,
        documents: Iterable[Document | tuple[Document]],
        progress: ProgressFn | None, extra_meta: dict[str, Any],
    ) -> int:
        """Write a complete version into `tmp`: a 1-tuple (document,) is a document copied from
        a version with the same schema, already checked. A model's documents
        (`indexer.documents.ModelDocuments`) go column by column when they can
        (`ModelDocuments.columns`): no Python object per value."""
        columns = documents.columns() if isinstance(documents, ModelDocuments) else None
        if columns is not None:
            segment = segment_from_columns(columns, schema)
            if progress is not None:
                progress(segment.n)
        else:
            segment = self._documents_segment(schema, documents, progress)
        files = write_segment(tmp, segment, schema)
        meta = {
            "format": FORMAT,
            "version": version,
            "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "documents": segment.n,
            "schema": schema_to_json(schema),
            "files": files,
            **extra_meta,
        }
        with open(tmp / "meta.json", "w") as meta_file:
            json.dump(meta, meta_file, indent=1)
            meta_file.flush()
            os.fsync(meta_file.fileno())
        _fsync_dir(tmp)
        return segment.n

    @staticmethod
    def _documents_segment(schema: IndexSchema, documents: Iterable[Document | tuple[Document]],
                           progress: ProgressFn | None) -> Segment:
        """The segment of documents checked one by one (copied ones, `(document,)`, are not)."""
        docs: list[Document] = []
        failed: list[tuple[str, str]] = []
        seen: set[str] = set()
        pending = 0
        for item in documents:
            if type(item) is tuple:
                doc, problem = item[0], None
            else:
                doc = cast(Document, item)  # (type() is tuple above does not narrow for mypy)
                problem = check_document(doc, schema)
            doc_id = doc.get("id") if isinstance(doc, dict) else None
            if problem is None and doc_id in seen:
                problem = "duplicate id"
            if problem is not None:
                failed.append((str(doc_id), problem))
            else:
                seen.add(cast(str, doc_id))  # checked: a string
                docs.append(doc)
            pending += 1
            if progress is not None and pending >= PROGRESS_EVERY:
                progress(pending)
                pending = 0
        if progress is not None and pending:
            progress(pending)
        if failed:
            raise DocumentsFailed(failed, len(docs) + len(failed))
        # slot = rank of the id: ties in search then break by slot, and ids look up by bisection
        docs.sort(key=lambda d: d["id"])
        return build_segment(docs, schema)

    @contextmanager
    def _writer_lock(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise IndexBusy(str(self.root)) from None
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _remove_stale_temp_dirs(self) -> None:
        # Only a writer holding the lock writes temp dirs: any left now are from a killed run.
        for p in self.root.glob(".tmp-*"):
            logger.warning("removing %s left by an interrupted indexing run", p)
            shutil.rmtree(p, ignore_errors=True)

    def _new_version_name(self) -> str:
        name = "v" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        existing = self._version_names()
        while existing and name <= existing[-1]:
            # same microsecond or a clock step back: stay unique and sortable
            time.sleep(0.000_01)
            name = "v" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            if name <= existing[-1]:
                name = existing[-1][:-6] + f"{int(existing[-1][-6:]) + 1:06d}"
        return name

    def _set_current(self, version: str) -> None:
        tmp = self.root / f".{CURRENT}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(version + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / CURRENT)
        _fsync_dir(self.root)

    def _prune(self) -> list[str]:
        names = self._version_names()
        current = self._current_name()
        keep = set(names[-self.keep_versions:]) | {current}
        removed = [n for n in names if n not in keep]
        for n in removed:
            # readers that still have this version open keep their open files (POSIX)
            shutil.rmtree(self.root / n, ignore_errors=True)
        return removed

    # ------------------------------------------------------------------ versions
    def _version_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.name.startswith("v") and (p / "meta.json").is_file())

    def _current_name(self) -> str | None:
        path = self.root / CURRENT
        try:
            st = os.stat(path)
            # CURRENT is only ever replaced (os.replace: a new file), never rewritten in place:
            # the same inode and times mean the same name, without reading it again
            key = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
            cached = self._current
            if cached is not None and cached[0] == key:
                return cached[1]
            name = path.read_text().strip() or None
        except FileNotFoundError:
            return None
        except (UnicodeDecodeError, OSError) as e:
            raise BackendUnavailable(f"{path} cannot be read ({e})", hint=BROKEN_HINT) from None
        if name is not None and (not name.startswith("v") or "/" in name or not name.isprintable()):
            raise BackendUnavailable(f"{path} names no index version: {name[:40]!r}", hint=BROKEN_HINT)
        self._current = (key, name)
        return name

    def versions(self) -> list[VersionInfo]:
        """All kept versions, oldest first."""
        current = self._current_name()
        out = []
        for n in self._version_names():
            try:
                meta = json.loads((self.root / n / "meta.json").read_text())
            except FileNotFoundError:  # pruned meanwhile
                continue
            indicators = meta.get("indicators")
            out.append(VersionInfo(n, meta["created"], meta["documents"], n == current, meta.get("model_id"),
                                   meta.get("primary"), tuple(indicators) if indicators else None,
                                   schema_from_json(meta["schema"])))
        return out

    def rollback(self) -> VersionInfo:
        """Make the version before the current one current again."""
        with self._writer_lock():
            current = self._current_name()
            earlier = [n for n in self._version_names() if current is None or n < current]
            if not earlier:
                raise NoEarlierVersion(current)
            self._set_current(earlier[-1])
        return next(v for v in self.versions() if v.name == earlier[-1])

    # ------------------------------------------------------------------ reading
    def current_schema(self) -> IndexSchema | None:
        """The current version's fields, from the snapshot in memory."""
        try:
            return self.snapshot().schema
        except BackendUnavailable:
            return None

    def snapshot(self) -> Snapshot:
        """The current version with its overlay, reloaded if another process changed either."""
        for _ in range(5):
            name = self._current_name()
            if name is None:
                raise BackendUnavailable(
                    f"index {self.root} has no current version",
                    hint="run `cooccur index MODEL_DIR` first",
                )
            snap = self._snapshot
            if snap is not None and snap.version == name:
                return self._refresh_overlay(snap)
            with self._lock:
                snap = self._snapshot
                if snap is not None and snap.version == name:
                    continue
                try:
                    base = BaseVersion(self.root / name)
                    state, pos = read_overlay(self.root / name / OVERLAY, {}, 0)
                except FileNotFoundError:
                    continue  # switched and pruned while we looked: read CURRENT again
                except (OSError, ValueError, KeyError, IndexError) as e:  # a truncated or damaged file
                    raise BackendUnavailable(f"index version {name} in {self.root} cannot be loaded: {e}",
                                             hint=BROKEN_HINT) from None
                self._snapshot = Snapshot(base, state, pos)
        if self._snapshot is None or self._snapshot.version != self._current_name():
            raise BackendUnavailable(f"index {self.root}: the current version keeps changing or is missing")
        return self._snapshot

    def _refresh_overlay(self, snap: Snapshot) -> Snapshot:
        path = self.root / snap.version / OVERLAY
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return snap
        if size <= snap.overlay_pos:
            return snap
        with self._lock:
            snap = self._snapshot if self._snapshot is not None and self._snapshot.version == snap.version else snap
            state, pos = read_overlay(path, snap.overlay_state, snap.overlay_pos)
            if pos != snap.overlay_pos:
                snap = Snapshot(snap.base, state, pos)
                self._snapshot = snap
        return snap

    def search(self, body: dict[str, Any]) -> SearchResult:
        """Run an Elasticsearch-style search body (the subset in docs/search.md)."""
        snap = self.snapshot()
        parsed = parse_body(body, snap.schema)
        threads = search_threads(self.search_threads, self.searches_at_once)
        mask, score = Evaluator(snap, threads=threads).run(parsed.query)
        slots, scores = top_hits(snap, parsed, mask, score)
        wanted = parsed.source_filter
        if not parsed.source:
            return SearchResult([Hit(self._id_of(snap, slot), s, None)
                                 for slot, s in zip(slots.tolist(), scores.tolist(), strict=True)], snap.version)
        # only the fields `_source` keeps are rendered (the id always)
        fields = None if wanted is None else {f for f in snap.schema.all_fields() if wanted.keeps(f)}
        docs = snap.documents_at(slots, fields)
        hits = [Hit(doc["id"], s, doc) for doc, s in zip(docs, scores.tolist(), strict=True)]
        return SearchResult(hits, snap.version)

    @staticmethod
    def _id_of(snap: Snapshot, slot: int) -> str:
        if slot < snap.n_base:
            return str(snap.base.segment.ids[slot])
        return snap.extra_docs[slot - snap.n_base]["id"]

    def get(self, ids: Iterable[str]) -> dict[str, Document]:
        """The current version's documents for these ids (missing ids are absent)."""
        snap = self.snapshot()
        return {d["id"]: d for d in snap.documents_at(snap.slots_of_ids(list(ids)))}

    # ------------------------------------------------------------------ live changes
    def upsert(self, documents: Iterable[Document]) -> None:
        """Create or replace documents in the current version (visible to every process)."""
        snap = self.snapshot()
        docs = list(documents)
        failed = [(str(d.get("id") if isinstance(d, dict) else None), p)
                  for d in docs if (p := check_document(d, snap.schema)) is not None]
        if failed:
            raise DocumentsFailed(failed, len(docs))
        self._append(snap.version, [{"op": "upsert", "doc": d} for d in docs])

    def delete(self, ids: Iterable[str]) -> None:
        """Remove documents from the current version (visible to every process)."""
        snap = self.snapshot()
        self._append(snap.version, [{"op": "delete", "id": str(i)} for i in ids])

    def _append(self, version: str, ops: list[dict[str, Any]]) -> None:
        if not ops:
            return
        data = iter_overlay_lines(ops)
        fd = os.open(self.root / version / OVERLAY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # one writer at a time, so lines never interleave
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ health
    def checks(self) -> Iterator[Check]:
        """The current version loads and answers a query (the CLI checks the data dir)."""
        try:
            started = time.monotonic()
            snap = self.snapshot()
            self.search({"query": {"match_all": {}}, "size": 1, "_source": True})
            ms = (time.monotonic() - started) * 1000
            yield Check("embedded index", True,
                        f"{self.root}: version {snap.version}, {snap.documents} documents, loads in {ms:.0f} ms")
        except IndexerError as e:
            yield Check("embedded index", False, str(e), hint=e.hint or "run `cooccur index MODEL_DIR`")
        except (OSError, ValueError, KeyError) as e:
            yield Check("embedded index", False, f"{self.root}: cannot load the current version: {e}",
                        hint="roll back (`cooccur rollback`) or index again")
