"""The model directory on any file system, and how a new model is published.

A model lives at a local path or at any URI a pyarrow file system opens (file://, hdfs://,
s3://, gs://, abfs://; Spark writes there too: docs/cluster.md). Its parts are written
into a fresh version directory, then the manifest is written last; readers read the
manifest first and the parts it names (docs/model-format.md):

    MODEL/manifest.json                 {"format": ..., "data": "versions/<model_id>", ...}
    MODEL/versions/<model_id>/indicators/, rankings/, properties/, state/, changed/

So a reader sees the old model or the new one, whole, on a file system without an atomic
directory rename (an object store): the one write that switches is the manifest, a single
small object. The previous version stays for readers that opened it before the switch;
older ones are removed. No pyspark here: the indexer, serving and `update --from-store`
read and write models with pyarrow alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from urllib.parse import quote, unquote, urlsplit

import pyarrow.fs as pafs

from .errors import StorageError

log = logging.getLogger(__name__)

MODEL_FORMAT = "cooccur-model/1"
RANKINGS = ("popular", "trending", "hot")
"""The popularity rankings of rankings/ (and number fields of every item document)."""
MANIFEST = "manifest.json"
VERSIONS = "versions"
PARTS = ("indicators", "rankings", "properties", "state", "changed")
"""A version's parts; also what a model of the first layout (parts beside the manifest) holds."""

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Stores with an atomic file rename: the manifest is written aside and moved in. On the
# others (object stores) one PUT of the whole object is what readers see, old or new.
_RENAMES = ("local", "hdfs")
# Spark's Hadoop connector for S3 is s3a:// (s3:// is EMR's own); pyarrow knows only s3://.
_PYARROW_SCHEMES = {"s3a": "s3", "s3n": "s3"}
_SPARK_SCHEMES = {"s3": "s3a", "s3n": "s3a"}
# Characters a URI path segment keeps as they are (RFC 3986 pchar); the rest are
# percent-encoded when a name is appended to a URI, so it stays one pyarrow can parse.
_PCHAR = "!$&'()*+,;=:@~"


def iso(t: datetime | None) -> str | None:
    """ISO-8601 in UTC with a Z (naive times are taken as UTC); None stays None."""
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def package_version() -> str:
    """cooccur's installed version (recorded in every manifest)."""
    try:
        return metadata.version("cooccur")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class Location:
    """A path on a file system: `uri` is what Spark and messages get, `path` what pyarrow's
    file system `fs` takes."""

    fs: pafs.FileSystem
    path: str
    uri: str

    def __truediv__(self, name: str) -> Location:
        path = f"{self.path.rstrip('/')}/{name}"
        if not _SCHEME.match(self.uri):
            return Location(self.fs, path, f"{self.uri.rstrip('/')}/{name}")
        # A URI: the name goes into its path, encoded, before any query (pyarrow's options).
        base, query = (self.uri.split("?", 1) + [""])[:2]
        uri = f"{base.rstrip('/')}/{quote(name, safe='/' + _PCHAR)}" + (f"?{query}" if query else "")
        return Location(self.fs, path, uri)

    def __str__(self) -> str:
        return self.uri

    @property
    def local(self) -> bool:
        return self.fs.type_name == "local"

    @property
    def spark_uri(self) -> str:
        """The URI Spark's Hadoop file systems open for this location: file:// for a local
        path (never the cluster's default file system), s3a:// for s3://, without pyarrow's
        query options and percent-encoding (Hadoop's Path takes characters as they are)."""
        if self.local:
            return f"file://{self.path}"
        parts = urlsplit(self.uri)
        scheme = _SPARK_SCHEMES.get(parts.scheme.lower(), parts.scheme)
        return f"{scheme}://{parts.netloc}{unquote(parts.path)}"

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def _type(self) -> pafs.FileType:
        return self.fs.get_file_info(self.path).type

    def exists(self) -> bool:
        return self._type() != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self._type() == pafs.FileType.Directory

    def is_file(self) -> bool:
        return self._type() == pafs.FileType.File

    def files(self, suffix: str = ".parquet") -> list[str]:
        """The file system paths of the files directly inside, sorted; [] for none."""
        if not self.is_dir():
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(suffix))

    def children(self) -> list[str]:
        """The names directly inside (files and directories); [] for none."""
        if not self.is_dir():
            return []
        return sorted(i.base_name for i in self.fs.get_file_info(pafs.FileSelector(self.path)))

    def read_text(self) -> str:
        with self.fs.open_input_stream(self.path) as f:
            return f.read().decode("utf-8")

    def write_text(self, text: str) -> None:
        with self.fs.open_output_stream(self.path) as f:
            f.write(text.encode("utf-8"))

    def mkdir(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def remove(self) -> None:
        """Delete the file or directory tree; nothing to delete is fine."""
        kind = self._type()
        if kind == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif kind == pafs.FileType.File:
            self.fs.delete_file(self.path)

    def copy_file(self, src: str, dst: str) -> None:
        """Copy a file of this file system: a hard link where it is local (free), else a copy."""
        if self.local:
            try:
                os.link(src, dst)
                return
            except OSError:
                pass
        self.fs.copy_file(src, dst)


_FILESYSTEMS: dict[str, pafs.FileSystem] = {}


def location(target: str | os.PathLike | Location) -> Location:
    """The Location of a local path or a URI (scheme://...; s3a:// is opened as s3://).
    One file system object per scheme and authority is kept for the process (clients are
    costly to make; an in-memory mock:// store keeps its files only in its one object).
    StorageError when pyarrow cannot open the URI's file system here."""
    if isinstance(target, Location):
        return target
    text = os.fspath(target)
    if not _SCHEME.match(text):
        path = os.path.abspath(text)
        return Location(pafs.LocalFileSystem(), path, path)
    scheme, rest = text.split("://", 1)
    scheme = _PYARROW_SCHEMES.get(scheme.lower(), scheme.lower())
    key = f"{scheme}://{rest.split('/', 1)[0]}"
    try:
        fs, path = pafs.FileSystem.from_uri(f"{scheme}://{rest}")
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise StorageError(text, str(e)) from None
    fs = _FILESYSTEMS.setdefault(key, fs)
    return Location(fs, path, text.rstrip("/") or text)


def read_manifest_at(model: Location) -> dict:
    """The raw manifest of a model (no checks of its content); FileNotFoundError when there
    is none, ValueError (json.JSONDecodeError) when it is not JSON."""
    return json.loads((model / MANIFEST).read_text())


def data_of(model: Location, manifest: dict) -> Location:
    """Where a model's parts are: the version directory its manifest names, or the model
    directory itself (models written before versions existed)."""
    data = manifest.get("data")
    if not data:
        return model
    if not isinstance(data, str) or data.startswith("/") or ".." in data.split("/"):
        raise ValueError(f"`data` must be a path inside the model directory, not {data!r}")
    return model / data


def model_data(target: str | os.PathLike | Location) -> Location:
    """The parts directory of the model at `target` (its manifest read first)."""
    model = location(target)
    return data_of(model, read_manifest_at(model))


def new_version(model: Location) -> tuple[str, Location]:
    """A fresh model id and the version directory (created) to write its parts into."""
    model_id = uuid.uuid4().hex
    data = model / VERSIONS / model_id
    data.mkdir()
    return model_id, data


def publish(model: Location, manifest: dict) -> None:
    """Make the version the manifest names (its `data`) the model: write the manifest last,
    in one step readers see whole. Then remove what no reader can need any more: versions
    older than the one replaced, and a first-layout model's parts."""
    previous = None
    with contextlib.suppress(OSError, ValueError):  # no model there yet, or a broken one
        previous = read_manifest_at(model).get("data")
    text = json.dumps(manifest, indent=2, default=str) + "\n"
    target = model / MANIFEST
    if model.fs.type_name in _RENAMES:
        aside = model / f".{MANIFEST}.{uuid.uuid4().hex}"
        aside.write_text(text)
        model.fs.move(aside.path, target.path)
    else:
        target.write_text(text)
    keep = {manifest["data"], previous}
    for name in (model / VERSIONS).children():
        if f"{VERSIONS}/{name}" not in keep:
            (model / VERSIONS / name).remove()
    for part in PARTS:
        (model / part).remove()


def discard(data: Location) -> None:
    """Remove an unpublished version (a failed run's); never raises."""
    try:
        data.remove()
    except OSError as e:
        log.warning("could not remove the unfinished model version %s: %s", data, e)
