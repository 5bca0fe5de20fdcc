"""The `cooccur` command line: a thin layer that parses, calls one library function, prints.

Data goes to stdout, messages to stderr. Errors a user can cause end with `Error: ...`,
a hint, and exit code 1 (click.ClickException), never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import tomllib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import click

from evaluation.errors import EvaluationError
from indexer.errors import IndexerError

log = logging.getLogger("cooccur")


# --------------------------------------------------------------------------- errors
def _user_errors() -> tuple[type[Exception], ...]:
    """Every package's base error for causes a user can fix (imported lazily: the
    indicator job pulls in pyspark, which serving commands must not pay for)."""
    errors: list[type[Exception]] = [IndexerError, EvaluationError, ConfigError]
    try:
        from query.errors import QueryError
    except ImportError:  # pragma: no cover - during bootstrap only
        pass
    else:
        errors.append(QueryError)
    try:
        from indicators.errors import JobError
    except ImportError:  # pragma: no cover
        pass
    else:
        errors.append(JobError)
    return tuple(errors)


class ConfigError(Exception):
    """The config file or an override is wrong."""

    hint = "see docs/configuration.md"


def fail_cleanly(fn):
    """Turn the project's own errors into `Error: <reason>` + hint and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _user_errors() as e:
            hint = getattr(e, "hint", "")
            raise click.ClickException(f"{e}" + (f"\nHint: {hint}" if hint else "")) from None
        except OSError as e:  # a full disk, a read-only mount, no permission: the user's to fix
            where = f": {e.filename}" if e.filename else ""
            raise click.ClickException(f"{e.strerror or e}{where}\nHint: {_os_hint(e)}") from None
        except Exception as e:
            if not type(e).__module__.startswith(("pyspark", "py4j")):
                raise
            # Spark refused to start or failed (e.g. --conf spark.driver.memory=abc): its
            # first line, not a Java stack.
            first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
            raise click.ClickException(
                f"Spark failed: {first[:300]}\nHint: check the --conf / [train] spark_options values "
                "(https://spark.apache.org/docs/latest/configuration.html) and Java; -vv shows Spark's log"
            ) from None

    return wrapper


def _os_hint(e: OSError) -> str:
    import errno

    return {
        errno.ENOSPC: "free some disk space (or point --data-dir / -o elsewhere) and run it again",
        errno.EROFS: "the file system is read-only: choose a writable --data-dir / -o",
        errno.EACCES: "fix the permissions, or choose a writable --data-dir / -o",
        errno.EPERM: "fix the permissions (or file attributes), or choose a writable --data-dir / -o",
    }.get(e.errno or 0, "check the path, its permissions and free space")


# --------------------------------------------------------------------------- config
def load_config(path: str | None) -> dict[str, Any]:
    """The parsed TOML config file ({} without one)."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None


def build_settings(cls, section: dict[str, Any] | None, where: str, **overrides):
    """A settings dataclass from a config section plus CLI overrides (None = not given).

    Unknown keys are errors that name the file section and key, so typos never pass
    silently. Nested dataclass fields take nested tables."""
    section = dict(section or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(section) - set(known))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(known), n=1)
        raise ConfigError(f"[{where}]: unknown setting(s) {', '.join(unknown)}"
                          + (f" (did you mean {close[0]}?)" if close else ""))
    values: dict[str, Any] = {}
    for name, value in section.items():
        f = known[name]
        ftype = f.type if not isinstance(f.type, str) else None
        nested = getattr(cls, "_nested", {}).get(name)
        if nested is not None and isinstance(value, dict):
            value = build_settings(nested, value, f"{where}.{name}")
        elif nested is not None and isinstance(value, list):
            value = [build_settings(nested, v, f"{where}.{name}[{i}]") for i, v in enumerate(value)]
        elif is_dataclass(ftype) and isinstance(value, dict):
            value = build_settings(ftype, value, f"{where}.{name}")
        values[name] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"[{where}]: {e}") from None


def _setup_logging(verbose: int) -> None:
    """Our packages' messages on stderr; other libraries' (urllib3, elastic_transport ...)
    only as warnings unless -vv, so a retried connection does not print their tracebacks."""
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if verbose > 1 else logging.WARNING,
                        format="%(message)s")
    for name in ("cooccur", "indicators", "indexer", "query"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              envvar="COOCCUR_CONFIG", help="TOML config file (docs/configuration.md).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="cooccur")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """cooccur: a cooccurrence search-engine recommender."""
    _setup_logging(verbose)
    ctx.obj = {"config_path": config_path}


CONFIG_SECTIONS: dict[str, str] = {
    "train": "indicators.settings:TrainSettings",
    "index": "indexer.settings:IndexSettings",
    "query": "query.settings:QuerySettings",
    "events": "query.settings:EventSettings",
    "serve": "query.settings:ServeSettings",
}
"""Every section a config file may have: its settings dataclass ("module:Class", imported
only when checked; none of them pulls in pyspark)."""


def check_config(config: dict[str, Any]) -> None:
    """The whole file, whatever the command reads: an unknown section or key, or a bad value,
    is an error naming it (a misspelt [serve] must never drop the write token silently)."""
    import difflib
    import importlib

    sections = ", ".join(f"[{s}]" for s in CONFIG_SECTIONS)
    for name, value in config.items():
        if name in CONFIG_SECTIONS and not isinstance(value, dict):
            raise ConfigError(f"{name} = {value!r}: expected a [{name}] section (a table)")
        if name not in CONFIG_SECTIONS and not isinstance(value, dict):
            raise ConfigError(f"unknown top-level key {name!r}: settings belong in a section ({sections})")
        if name not in CONFIG_SECTIONS:
            close = difflib.get_close_matches(name, list(CONFIG_SECTIONS), n=1)
            raise ConfigError(f"unknown section [{name}]" + (f": did you mean [{close[0]}]?" if close else "")
                              + f" (sections: {sections})")
    for name, where in CONFIG_SECTIONS.items():
        if name in config:
            module, cls = where.split(":")
            build_settings(getattr(importlib.import_module(module), cls), config[name], name)


def config_of(ctx: click.Context) -> dict[str, Any]:
    """The config file of this invocation, loaded and checked once."""
    obj = ctx.find_root().obj
    if "config" not in obj:
        try:
            config = load_config(obj["config_path"])
            check_config(config)
        except _user_errors() as e:
            hint = getattr(e, "hint", "")
            raise click.ClickException(f"{e}" + (f"\nHint: {hint}" if hint else "")) from None
        obj["config"] = config
    return obj["config"]


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


# --------------------------------------------------------------------------- train
def _train_settings(ctx: click.Context, **flags):
    """[train] from the config file with the command's flags on top."""
    from indicators.settings import IndicatorSettings, TrainSettings

    section = dict(config_of(ctx).get("train") or {})
    if flags.get("indicators"):
        section["indicators"] = [{"name": n} for n in flags.pop("indicators")]
    flags.pop("indicators", None)
    if flags.get("spark_conf"):
        options = dict(section.get("spark_options") or {})
        for item in flags["spark_conf"]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--conf {item!r}: expected KEY=VALUE")
            if not key.strip().startswith("spark."):  # Spark ignores other keys without a word
                raise ConfigError(f"--conf {item!r}: not a Spark setting (Spark's keys start with spark.)")
            options[key.strip()] = value.strip()
        section["spark_options"] = options
    flags.pop("spark_conf", None)
    if flags.get("input_format"):
        section["input"] = {**(section.get("input") or {}), "format": flags["input_format"]}
    flags.pop("input_format", None)
    max_k, min_llr = flags.pop("max_correlators"), flags.pop("min_llr")
    settings = build_settings(TrainSettings, section, "train", **flags)
    for ind in settings.indicators:
        if max_k is not None:
            ind.max_correlators = max_k
        if min_llr is not None:
            ind.min_llr = min_llr
        IndicatorSettings.__post_init__(ind)
    return settings


@main.command("train")
@click.argument("events", nargs=-1)
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False),
              help="Model directory to write (replaced atomically if it exists).")
@click.option("--from-store", is_flag=True,
              help="Train on every event in the event store (instead of EVENTS files).")
@click.option("--rejects", type=click.Path(dir_okay=False),
              help="Write bad rows here (JSON lines) and train on the rest; default: fail.")
@click.option("--primary", help="Primary action (e.g. purchase).")
@click.option("--indicator", "indicators", multiple=True,
              help="Indicator action, repeatable, primary first (default: [train] indicators).")
@click.option("--max-correlators", type=int, help="Correlators kept per item, for every indicator.")
@click.option("--min-llr", type=float, help="Minimum LLR of a correlator, for every indicator.")
@click.option("--max-per-user", "max_interactions_per_user", type=int,
              help="Cap of items per user and action (0 = none).")
@click.option("--max-per-item", "max_users_per_item", type=int,
              help="Cap of users per item and action (0 = none).")
@click.option("--seed", type=int, help="Downsampling seed.")
@click.option("--format", "input_format",
              type=click.Choice(["auto", "csv", "tsv", "jsonl", "parquet"]), help="Input format.")
@click.option("--master", "spark_master", help="Spark master (default local[*]).")
@click.option("--conf", "spark_conf", multiple=True, metavar="KEY=VALUE",
              help="Spark setting, repeatable (e.g. spark.driver.memory=8g).")
@click.option("--events", "events_path", type=click.Path(dir_okay=False),
              help="With --from-store: the event store file (default: [events] path, else DATA_DIR/events.db).")
@click.pass_context
@fail_cleanly
def train_cmd(ctx, events, out, from_store, rejects, events_path, **flags):
    """Compute LLR indicators, rankings and properties from EVENTS (or the event store, with
    --from-store) into a model directory.

    EVENTS are files, directories or globs of CSV/TSV (header user,event,item,time),
    PredictionIO JSON lines or Parquet, as local paths or URIs (file://, hdfs://, s3a://:
    docs/cluster.md). With --from-store the model also records the store's
    watermark, so `cooccur update MODEL --from-store` adds exactly the events stored later.

    \b
    Example:
      cooccur events import events.jsonl && cooccur train --from-store -o model
      cooccur train events.csv -o model --rejects bad-rows.jsonl
    """
    on_stage = lambda line: click.echo(line, err=True)  # noqa: E731
    if bool(events) == from_store:
        raise ConfigError("give EVENTS files or --from-store (one of them)")
    settings = _train_settings(ctx, **flags)
    if from_store:
        from query.fromstore import train_from_store

        if rejects or flags.get("input_format"):
            raise ConfigError("--rejects and --format are for EVENTS files (the store's events are valid already)")
        store = _event_settings(ctx, _index_settings(ctx), events_path).path
        report = train_from_store(store, settings, out, on_stage=on_stage)
    else:
        from indicators.job import run_train

        report = run_train(list(events), settings, out, rejects=rejects, on_stage=on_stage)
    c = report.input
    click.echo(f"input: {c['rows']:,} rows = {c['accepted']:,} accepted + {c['rejected']:,} rejected"
               + (f" (written to {report.rejects_file})" if report.rejects_file else ""))
    click.echo(f"model: {report.model_dir} ({report.seconds:.1f} s)")

# --------------------------------------------------------------------------- index
# (indexer commands: index, indexes, rollback, doctor)
def _index_options(fn):
    """--backend / --data-dir / --name: override the config's [index] section."""
    from indexer.backends import BACKENDS

    fn = click.option("--name", help="Index name (embedded subdirectory / Elasticsearch or OpenSearch alias).")(fn)
    fn = click.option("--data-dir", type=click.Path(file_okay=False),
                      help="Embedded backend: directory holding the index versions.")(fn)
    fn = click.option("--backend", type=click.Choice(BACKENDS),
                      help="Search backend (default: [index] backend, else embedded).")(fn)
    return fn


def _index_settings(ctx: click.Context, **overrides):
    from indexer.settings import IndexSettings

    return build_settings(IndexSettings, config_of(ctx).get("index"), "index", **overrides)


@main.command("index")
@click.argument("model_dir", type=click.Path())
@_index_options
@click.option("--keep", "keep_versions", type=int, help="Versions to keep after the switch.")
@click.option("--changed-only", is_flag=True,
              help="Model from `cooccur update`: copy the current version and rewrite only the "
                   "items in the model's changed/ (the current version must be of its base model).")
@click.pass_context
@fail_cleanly
def index_cmd(ctx, model_dir, backend, data_dir, name, keep_versions, changed_only):
    """Index a model directory into a new version of the search backend, then switch to it.

    \b
    Example:
      cooccur index model
      cooccur index model --changed-only --backend elasticsearch
    """
    from indexer.run import index_model
    from indicators.state import recover

    settings = _index_settings(ctx, backend=backend, data_dir=data_dir, name=name,
                               keep_versions=keep_versions)
    recover(model_dir)  # a model a killed train / update left half-replaced (former layout)
    done = 0
    live = sys.stderr.isatty()

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if live:
            click.echo(f"\rindexed {done} documents", err=True, nl=False)

    report = index_model(model_dir, settings, progress=progress, changed_only=changed_only)
    if live:
        click.echo("", err=True)
    rate = report.documents / report.seconds if report.seconds > 0 else float("inf")
    click.echo(f"indexed {report.documents} documents in {report.seconds:.2f} s "
               f"({rate:,.0f} documents/s) into {settings.backend} version {report.version}")
    if report.copied is not None:
        click.echo(f"changed only: {report.copied} copied, {report.replaced} replaced, "
                   f"{report.added} added, {report.deleted} deleted")
    for old in report.removed_versions:
        click.echo(f"removed old version {old}")


@main.command("indexes")
@_index_options
@click.pass_context
@fail_cleanly
def indexes_cmd(ctx, backend, data_dir, name):
    """List the kept index versions; `*` marks the current one.

    \b
    Example:
      cooccur indexes --data-dir cooccur-data
    """
    from indexer.backends import open_backend

    versions = open_backend(_index_settings(ctx, backend=backend, data_dir=data_dir, name=name)).versions()
    if not versions:
        click.echo("no index versions yet: run `cooccur index MODEL_DIR`", err=True)
    for v in versions:
        model = f"  model {v.model_id}" if v.model_id else ""
        click.echo(f"{'*' if v.current else ' '} {v.name}  {v.created}  {v.documents} documents{model}")


@main.command("rollback")
@_index_options
@click.pass_context
@fail_cleanly
def rollback_cmd(ctx, backend, data_dir, name):
    """Switch back to the version before the current one.

    \b
    Example:
      cooccur rollback && cooccur indexes
    """
    from indexer.backends import open_backend

    v = open_backend(_index_settings(ctx, backend=backend, data_dir=data_dir, name=name)).rollback()
    click.echo(f"current version is now {v.name} ({v.documents} documents, created {v.created})")


def _doctor_checks(settings, spark: bool):
    """Everything a deployment needs, one Check each (never raises for a failed check)."""
    from indexer.backend import Check
    from indicators.errors import JavaMissing
    from indicators.spark import check_java

    try:
        yield Check("java", True, f"Java {check_java()}")
    except JavaMissing as e:
        yield Check("java", False, str(e), e.hint)
    data_dir = Path(settings.data_dir)
    # A check creates nothing: a missing data dir is fine when the command that needs it can create it.
    existing = next(p for p in (data_dir, *data_dir.resolve().parents) if p.exists())
    try:
        if existing != data_dir:
            if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
                raise PermissionError(13, f"cannot create it: {existing} is not a writable directory")
            yield Check("data dir", True, f"{data_dir.resolve()} does not exist yet (`cooccur index` creates it)")
        else:
            probe = data_dir / ".cooccur-doctor-probe"
            probe.write_text("ok")
            probe.unlink()
            yield Check("data dir", True, f"{data_dir.resolve()} is writable")
    except OSError as e:
        yield Check("data dir", False, f"{data_dir}: {e.strerror or e}",
                    "choose a writable --data-dir ([index] data_dir) or fix its permissions")
    if spark:
        try:
            from indicators.spark import build_spark_session
        except ImportError as e:
            yield Check("spark", True, f"skipped: the Spark job is not available ({e})")
        else:
            try:
                session = build_spark_session("local[1]", app_name="cooccur-doctor")
                try:
                    n = session.range(10).count()
                    yield Check("spark", n == 10, f"local Spark {session.version} started and ran a job")
                finally:
                    session.stop()
            except Exception as e:  # noqa: BLE001 - any start failure is the check's answer
                yield Check("spark", False, f"local Spark did not start: {str(e).splitlines()[0][:200]}",
                            "check Java (JAVA_HOME) and pyspark; run with -vv for Spark's log")
    from indexer.backends import open_backend

    try:
        backend = open_backend(settings)
        yield from backend.checks()
    except IndexerError as e:
        yield Check(settings.backend, False, str(e), e.hint)


@main.command("doctor")
@_index_options
@click.option("--spark", is_flag=True, help="Also start a local Spark session (takes seconds).")
@click.pass_context
@fail_cleanly
def doctor_cmd(ctx, backend, data_dir, name, spark):
    """Check Java, the data directory, (Spark) and the search backend; exit 1 if any fails.
    Creates nothing.

    \b
    Example:
      cooccur doctor --spark
    """
    settings = _index_settings(ctx, backend=backend, data_dir=data_dir, name=name)
    failed = 0
    for check in _doctor_checks(settings, spark):
        if check.ok:
            click.echo(f"ok    {check.name}: {check.detail}")
        else:
            failed += 1
            hint = f" (hint: {check.hint})" if check.hint else ""
            click.echo(f"FAIL  {check.name}: {check.detail}{hint}")
    if failed:
        click.echo(f"{failed} check(s) failed", err=True)
        ctx.exit(1)


# --------------------------------------------------------------------------- query
# (recommend, events ...)
def _query_settings(ctx: click.Context):
    """[query] (indicators it leaves unset come from the served index: `_train_model`)."""
    from query.settings import QuerySettings

    return build_settings(QuerySettings, config_of(ctx).get("query"), "query")


def _train_model(ctx: click.Context):
    """[train]'s primary and indicators, for serving from an index version that records no
    model (the index's own, when it has them, win; [query] indicators win over both)."""
    from query.recommender import ServedModel

    train = config_of(ctx).get("train") or {}
    if not train.get("primary") and not train.get("indicators"):
        return None
    settings = _train_settings(ctx, indicators=(), spark_conf=(), input_format=None,
                               max_correlators=None, min_llr=None)
    return ServedModel(settings.primary, tuple(settings.actions), "[train]")


def _event_settings(ctx: click.Context, index_settings, path: str | None = None):
    from query.settings import EventSettings

    settings = build_settings(EventSettings, config_of(ctx).get("events"), "events", path=path)
    if settings.path is None:
        settings.path = str(Path(index_settings.data_dir) / "events.db")
    return settings


def _events_option(fn):
    return click.option("--events", "events_path", type=click.Path(dir_okay=False),
                        help="Event store file (default: [events] path, else DATA_DIR/events.db).")(fn)


def _open_recommender(ctx: click.Context, backend, data_dir, name, events_path, *, check_model: bool = False,
                      read_only: bool = False):
    """The recommender over the configured index and event store. `check_model` (serve,
    recommend): configured indicators the served index lacks are an error now. `read_only`
    (recommend): a missing event store is not created; the recommender then has none."""
    from indexer.backends import open_backend
    from query.eventstore import EventStore
    from query.recommender import Recommender

    index_settings = _index_settings(ctx, backend=backend, data_dir=data_dir, name=name)
    events = _event_settings(ctx, index_settings, events_path)
    store = None if read_only and not Path(events.path).is_file() else EventStore(events.path)
    rec = Recommender(open_backend(index_settings), store, _query_settings(ctx),
                      date_fields=index_settings.date_fields, fallback_model=_train_model(ctx))
    if check_model:
        rec.check_model()
    return rec, events


def _parse_field_option(values: tuple[str, ...]) -> list[dict[str, Any]]:
    """--field name:value:bias (repeatable; values of one name and bias are merged)."""
    from query.errors import BadRequest

    rules: dict[tuple[str, float], list[str]] = {}
    for raw in values:
        parts = raw.rsplit(":", 1)
        head = parts[0].split(":", 1)
        if len(parts) != 2 or len(head) != 2 or not head[0] or not head[1]:
            raise BadRequest("--field", f"{raw!r}: expected name:value:bias, e.g. category:books:2")
        try:
            bias = float(parts[1])
        except ValueError:
            raise BadRequest("--field", f"{raw!r}: bias {parts[1]!r} is not a number") from None
        rules.setdefault((head[0], bias), []).append(head[1])
    return [{"name": n, "values": v, "bias": b} for (n, b), v in rules.items()]


@main.command("recommend")
@click.option("--user", help="User id: history from the event store.")
@click.option("--item", help="Item id: items like this one.")
@click.option("--item-set", help="Comma-separated item ids (e.g. a cart).")
@click.option("--history-json", help='Inline history, e.g. \'{"view": ["a", "b"]}\' (newest first).')
@click.option("--field", "field_rules", multiple=True, metavar="NAME:VALUE:BIAS",
              help="Business rule: bias > 0 boosts, < 0 keeps only, 0 excludes (repeatable).")
@click.option("--blacklist", help="Comma-separated item ids never to return.")
@click.option("--num", type=int, help="Number of results (default: [query] num).")
@click.option("--return-self", is_flag=True, default=None, help="Allow the query item(s) in the results.")
@click.option("--explain", is_flag=True, help="Show which indicators and rules contributed.")
@click.option("--format", "out_format", type=click.Choice(["table", "json", "ndjson", "csv"]),
              default="table", show_default=True,
              help="table; json (the HTTP service's response); ndjson (one item a line); csv (with a header).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--show", "show", multiple=True, metavar="PROPERTY",
              help="Also print this item property from the index (e.g. title, category), repeatable.")
@_index_options
@_events_option
@click.pass_context
@fail_cleanly
def recommend_cmd(ctx, user, item, item_set, history_json, field_rules, blacklist, num, return_self,
                  explain, out_format, as_json, show, backend, data_dir, name, events_path):
    """Recommend items for a user, an item, an item set or an inline history.

    A user with no history in the event store gets popular items (backfill); stderr says so.

    \b
    Example:
      cooccur recommend --user u1 --num 5
      cooccur recommend --item i3 --format csv --show title --show category
    """
    from query.errors import BadRequest

    request: dict[str, Any] = {"user": user, "item": item, "num": num, "returnSelf": return_self}
    if item_set:
        request["itemSet"] = [i.strip() for i in item_set.split(",") if i.strip()]
    if blacklist:
        request["blacklistItems"] = [i.strip() for i in blacklist.split(",") if i.strip()]
    if history_json:
        try:
            request["history"] = json.loads(history_json)
        except json.JSONDecodeError as e:
            raise BadRequest("--history-json", f"invalid JSON: {e.msg}") from None
    if field_rules:
        request["fields"] = _parse_field_option(field_rules)
    if explain:
        request["explain"] = True
    request = {k: v for k, v in request.items() if v is not None}
    rec, events = _open_recommender(ctx, backend, data_dir, name, events_path, check_model=True,
                                    read_only=True)
    response = rec.recommend(request)
    log.debug("index version %s", response.version)
    if user and not (item or item_set or history_json) and not _has_history(rec, user):
        click.echo(f"user {user} has no history in the event store {events.path}: the results are "
                   "backfill (popular items)\nHint: store their events with `cooccur events import` "
                   "or POST /events.json", err=True)
    if not response.item_scores:
        click.echo("no recommendations (no match and nothing to backfill)", err=True)
    docs = rec.backend.get([s.item for s in response.item_scores]) if show else {}
    _print_recommendations(response, "json" if as_json else out_format, show, docs)


def _has_history(rec, user: str) -> bool:
    """Whether the event store holds any event of this user."""
    return rec.events is not None and bool(rec.events.history(user, None, 1))


def _print_recommendations(response, out_format: str, show: tuple[str, ...], docs: dict[str, Any]) -> None:
    """The response on stdout as a table, JSON, NDJSON or CSV, with the `show` properties."""
    import csv

    def source(s) -> str:
        if "personal" in s.source:
            return "personal: " + ",".join(s.source["personal"])
        return f"backfill: {s.source['backfill']}"

    def props(item: str) -> dict[str, Any]:
        return {p: (docs.get(item) or {}).get(p) for p in show}

    def text(value: Any) -> str:
        return "" if value is None else "|".join(map(str, value)) if isinstance(value, list) else str(value)

    if out_format == "json":
        body = response.to_json()
        for entry in body["itemScores"] if show else []:
            entry["properties"] = props(entry["item"])
        echo_json(body)
    elif out_format == "ndjson":
        for rank, s in enumerate(response.item_scores, 1):
            click.echo(json.dumps({"rank": rank, **s.to_json(), **({"properties": props(s.item)} if show else {})}))
    elif out_format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["rank", "item", "score", "source", *show])
        for rank, s in enumerate(response.item_scores, 1):
            writer.writerow([rank, s.item, f"{s.score:.6g}", source(s), *map(text, props(s.item).values())])
    else:
        rows = [[f"{rank:>3}", s.item, f"{s.score:.6g}", f"({source(s)})", *map(text, props(s.item).values())]
                for rank, s in enumerate(response.item_scores, 1)]
        widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
        for row, s in zip(rows, response.item_scores, strict=True):
            # Columns aligned: numbers (rank, score) to the right, text to the left.
            click.echo("  ".join(c.rjust(w) if i in (0, 2) else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
            if s.explain:
                click.echo(f"       {json.dumps(s.explain)}")


@main.group("events")
def events_group() -> None:
    """The live event store: import, export, prune."""


@events_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--rejects", type=click.Path(dir_okay=False),
              help="Write bad rows here and import the rest (default: any bad row rejects the file).")
@click.option("--stdin-format", type=click.Choice(["jsonl", "csv", "tsv"]),
              help="Format of FILE `-` (standard input; default jsonl, csv with --map).")
@click.option("--map", "mapping_path", type=click.Path(dir_okay=False),
              help="Mapping file (TOML): FILE is a CSV/TSV of any layout, mapped to events by its rules "
                   "(docs/input-mapping.md).")
@_index_options
@_events_option
@click.pass_context
@fail_cleanly
def events_import_cmd(ctx, file, rejects, stdin_format, mapping_path, backend, data_dir, name, events_path):
    """Bulk-load a JSON-lines (PredictionIO) or CSV/TSV (user,event,item[,time]) file, or `-`
    for standard input; item $set/$unset/$delete also update the current index. With --map,
    a CSV of any layout (e.g. MovieLens ratings, or item properties) by simple rules.

    \b
    Example:
      cooccur events import events.jsonl
      cooccur events import ratings.csv --map examples/movielens/ratings.toml
      cooccur events export - --events old.db | cooccur events import -
    """
    import tempfile

    from query.eventstore import import_events
    from query.inputmap import import_mapped, load_mapping

    mapping = load_mapping(mapping_path) if mapping_path else None
    rec, events = _open_recommender(ctx, backend, data_dir, name, events_path)
    with tempfile.TemporaryDirectory(prefix="cooccur-stdin-") as tmp:
        if file == "-":  # the readers want a named file (its suffix tells the format)
            path = Path(tmp) / f"stdin.{stdin_format or ('csv' if mapping else 'jsonl')}"
            with open(path, "wb") as f:
                while chunk := sys.stdin.buffer.read(1 << 20):
                    f.write(chunk)
            file = str(path)
        if mapping is not None:
            mapped = import_mapped(rec.events, file, mapping, rejects=rejects, check=rec.check_events)
            click.echo(f"{mapped.rows:,} rows = {mapped.accepted:,} accepted + {mapped.rejected:,} rejected: "
                       f"imported {mapped.user_events:,} user events and {mapped.item_events:,} item events "
                       f"in {mapped.seconds:.2f} s into {events.path}")
            report = mapped
        else:
            report = import_events(rec.events, file, rejects=rejects, check=rec.check_events)
            click.echo(f"imported {report.events:,} events in {report.seconds:.2f} s "
                       f"({report.rate:,.0f} events/s) into {events.path}")
    if report.item_changes and not _has_index(rec):
        click.echo(f"{len(report.item_changes):,} item changes stored (no index yet: `cooccur train "
                   "--from-store` and `cooccur index` use them)")
    elif report.item_changes:
        applied = rec.apply_item_changes(report.item_changes)
        click.echo(f"{len(report.item_changes):,} item changes, {applied:,} documents updated in the current index")
    if report.rejected:
        click.echo(f"{report.rejected:,} bad rows written to {rejects}", err=True)


def _has_index(rec) -> bool:
    """Whether the backend has a current version (an unreachable one counts: applying the
    changes then says why they wait)."""
    try:
        return any(v.current for v in rec.backend.versions())
    except IndexerError:
        return True


def _existing_store(ctx: click.Context, backend, data_dir, name, events_path):
    """The configured event store for a command that only reads it: never created here."""
    from query.fromstore import open_existing

    events = _event_settings(ctx, _index_settings(ctx, backend=backend, data_dir=data_dir, name=name),
                             events_path)
    return open_existing(events.path)


@events_group.command("export")
@click.argument("out", type=click.Path(dir_okay=False, allow_dash=True), required=False)
@_index_options
@_events_option
@click.pass_context
@fail_cleanly
def events_export_cmd(ctx, out, backend, data_dir, name, events_path):
    """Write every stored event as PredictionIO JSON lines (what `cooccur train` reads) to OUT,
    or to stdout without OUT or with `-`.

    \b
    Example:
      cooccur events export events.jsonl
      cooccur events export - | head
    """
    store = _existing_store(ctx, backend, data_dir, name, events_path)
    if out is None or out == "-":
        n = store.export(sys.stdout)
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            n = store.export(f)
    click.echo(f"exported {n} events from {store.path}", err=True)


@events_group.command("prune")
@click.option("--keep", "keep", multiple=True, metavar="ACTION=DAYS",
              help="Retention for an action (repeatable; overrides [events] retention).")
@_index_options
@_events_option
@click.pass_context
@fail_cleanly
def events_prune_cmd(ctx, keep, backend, data_dir, name, events_path):
    """Remove events older than each action's retention window.

    \b
    Example:
      cooccur events prune --keep view=90 --keep purchase=365
    """

    events = _event_settings(ctx, _index_settings(ctx, backend=backend, data_dir=data_dir, name=name),
                             events_path)
    retention = dict(events.retention)
    for raw in keep:
        action, _, days = raw.partition("=")
        try:
            retention[action] = float(days)
        except ValueError:
            raise click.BadParameter(f"{raw!r}: expected ACTION=DAYS, e.g. view=365", param_hint="--keep") from None
    # The same validation as [events] retention: a day count > 0 (never a future cut-off).
    from query.settings import EventSettings

    EventSettings(path=events.path, retention=retention)
    if not retention:
        click.echo("no retention configured ([events] retention or --keep ACTION=DAYS): nothing to prune", err=True)
        return
    removed = _existing_store(ctx, backend, data_dir, name, events_path).prune(retention)
    for action, n in removed.items():
        click.echo(f"{action}: removed {n} events older than {retention[action]:g} days")


# --------------------------------------------------------------------------- update
@main.command("update")
@click.argument("model_dir", type=click.Path())
@click.argument("events", nargs=-1)
@click.option("--from-store", is_flag=True,
              help="Add the event store's events newer than the model (instead of EVENTS files).")
@click.option("-o", "--out", "out", type=click.Path(file_okay=False),
              help="Write the updated model here (default: replace MODEL_DIR atomically).")
@click.option("--rejects", type=click.Path(dir_okay=False),
              help="Write bad rows here (JSON lines) and go on; without it, bad rows fail the run.")
@click.option("--format", "input_format",
              type=click.Choice(["auto", "csv", "tsv", "jsonl", "parquet"]), help="Format of EVENTS.")
@click.option("--json", "as_json", is_flag=True, help="Print the update report as JSON.")
@_index_options
@_events_option
@click.pass_context
@fail_cleanly
def update_cmd(ctx, model_dir, events, from_store, out, rejects, input_format, as_json,
               backend, data_dir, name, events_path):
    """Fold new events into MODEL_DIR: the result equals `cooccur train` on all events, at a
    fraction of its cost (docs/model-format.md, state/). Then `cooccur index MODEL_DIR
    --changed-only` rewrites only the item documents that changed.

    \b
    Example:
      cooccur update model --from-store && cooccur index model --changed-only
      cooccur update model new-events.jsonl -o model-2
    """
    from dataclasses import asdict, replace

    from indicators.state import model_settings, read_manifest
    from indicators.update import run_update

    if bool(events) == from_store:
        raise ConfigError("give new EVENTS files or --from-store (one of them)")
    if from_store and (rejects or input_format):
        raise ConfigError("--rejects and --format are for EVENTS files (the store's events are valid already)")
    input_settings = None
    if input_format:
        input_settings = replace(model_settings(read_manifest(Path(model_dir))).input, format=input_format)
    on_stage = lambda line: click.echo(line, err=True)  # noqa: E731
    if from_store:
        from query.refresh import update_from_store

        settings = _event_settings(ctx, _index_settings(ctx, backend=backend, data_dir=data_dir, name=name),
                                   events_path)
        report = update_from_store(model_dir, settings.path, out, on_stage=on_stage)
        if report is None:
            click.echo(f"no new events in {settings.path} since the model's: model unchanged", err=True)
            if as_json:
                echo_json({"updated": False})
            return
    else:
        report = run_update(model_dir, list(events), out, input_settings=input_settings, rejects=rejects,
                            on_stage=on_stage)
    if as_json:
        echo_json({"updated": True, **asdict(report)})
        return
    c = report.input
    click.echo(f"input: {c['rows']:,} rows = {c['accepted']:,} accepted + {c['rejected']:,} rejected"
               + (f" (written to {report.rejects_file})" if report.rejects_file else ""))
    click.echo(f"users: {report.users:,} ({report.new_users:+,}); changed item documents: "
               f"{report.changed_items:,}")
    click.echo(f"model: {report.model_dir} ({report.seconds:.1f} s)")


# --------------------------------------------------------------------------- serve
# (HTTP service)
@main.command("serve")
@click.option("--host", help="Address to listen on (default: [serve] host, else 127.0.0.1).")
@click.option("--port", type=int, help="TCP port (default: [serve] port, else 8000; 0 = any free port).")
@click.option("--workers", type=int,
              help="Worker processes (default: [serve] workers, else one per core).")
@click.option("--threads", type=int, help="Threads per worker process (default: [serve] threads, else 1).")
@click.option("--token", envvar="COOCCUR_TOKEN",
              help="Token required to write and read events (POST /events.json, GET /events.json ...).")
@click.option("--refresh-every", metavar="DURATION",
              help="Every DURATION (e.g. '5 min'), fold stored events into --model and re-index "
                   "the changed documents, in the background.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False),
              help="The model --refresh-every updates (trained with its state, the default).")
@_index_options
@_events_option
@click.pass_context
@fail_cleanly
def serve_cmd(ctx, host, port, workers, threads, token, refresh_every, model_dir, backend, data_dir, name,
              events_path):
    """Serve POST /queries.json, the PredictionIO event API (POST /events.json,
    POST /batch/events.json, GET /events.json, GET /events/<id>.json), GET /health, GET /stats
    and GET /metrics (Prometheus).

    \b
    Example:
      cooccur serve --port 8000 --token "$TOKEN"
      cooccur serve --refresh-every '5 min' --model model
    """
    from query.refresh import Refresher
    from query.settings import ServeSettings
    from query.workers import run as serve

    settings = build_settings(ServeSettings, config_of(ctx).get("serve"), "serve",
                              host=host, port=port, workers=workers, threads=threads, token=token)
    refresher = None
    if refresh_every or model_dir:
        if not (refresh_every and model_dir):
            raise ConfigError("--refresh-every and --model go together")
        from indicators.settings import parse_duration

        try:
            every = parse_duration(refresh_every).total_seconds()
        except ValueError as e:
            raise ConfigError(f"--refresh-every: {e}") from None
        if every < 1:
            raise ConfigError(f"--refresh-every {refresh_every}: at least 1 second")
        from indicators.state import read_manifest

        read_manifest(Path(model_dir))  # a model with its state, or a clear error now
        root = ctx.find_root().obj
        flags = lambda **kv: [a for k, v in kv.items() if v for a in (f"--{k.replace('_', '-')}", str(v))]  # noqa: E731
        refresher = Refresher(
            str(Path(model_dir).resolve()), every,
            cli_options=["-c", str(Path(root["config_path"]).resolve())] if root.get("config_path") else [],
            index_options=flags(backend=backend, data_dir=data_dir and Path(data_dir).resolve(), name=name),
            events_options=flags(events=events_path and Path(events_path).resolve()),
        )
    rec, events = _open_recommender(ctx, backend, data_dir, name, events_path, check_model=True)

    def ready(h: str, p: int) -> None:
        auth = "token required for writes" if settings.token else "no token: writes are open"
        n, t = settings.processes, settings.threads
        click.echo(f"cooccur serving on http://{h}:{p} with {n * t} threads ({auth}): "
                   f"{n} worker process{'es' if n > 1 else ''} x {t} thread{'s' if t > 1 else ''}", err=True)
        if refresher is not None:
            click.echo(f"refreshing {refresher.model_dir} every {refresh_every} from the event store", err=True)

    try:
        serve(rec, settings, events, on_ready=ready, refresher=refresher)
    except (OSError, ValueError) as e:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {e.strerror if isinstance(e, OSError) else e}"
            "\nHint: choose another --port (or stop what uses it) and a valid --host"
        ) from None


# --------------------------------------------------------------------------- demo
# (train + index + recommend on the bundled sample)


# --------------------------------------------------------------------------- evaluate
# (offline evaluation: split, train, index, query, score; docs/evaluation.md)
def _split_options(fn):
    """The options `evaluate` and `tune` share: the split, k, the actions, users, Spark."""
    for option in reversed([
        click.argument("events", nargs=-1),
        click.option("--from-store", is_flag=True, help="Use every event in the event store (instead of EVENTS)."),
        click.option("--events", "events_path", type=click.Path(dir_okay=False),
                     help="With --from-store: the event store file (default: [events] path, else DATA_DIR/events.db)."),
        click.option("--split", "split_text", default="time-fraction:0.8", show_default=True,
                     help="time:DATE, time-fraction:F, leave-last:N (per user) or random:F (per user)."),
        click.option("-k", "ks", type=int, multiple=True, help="Metrics at k, repeatable (default 10)."),
        click.option("--primary", help="Primary action: the held-out items scored (default: [train] primary)."),
        click.option("--indicator", "indicators", multiple=True,
                     help="Indicator action, repeatable, primary first (default: [train] indicators)."),
        click.option("--users", "max_users", type=int, help="Evaluate at most N users (a seeded sample)."),
        click.option("--split-seed", type=int, default=0, show_default=True,
                     help="Seed of the random split and of the user sample."),
        click.option("--format", "input_format",
                     type=click.Choice(["auto", "csv", "tsv", "jsonl", "parquet"]), help="Input format."),
        click.option("--master", "spark_master", help="Spark master (default local[*])."),
        click.option("--conf", "spark_conf", multiple=True, metavar="KEY=VALUE", help="Spark setting, repeatable."),
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table."),
        click.option("--out", "out", type=click.Path(dir_okay=False), help="Also write the JSON report to this file."),
    ]):
        fn = option(fn)
    return fn


def _split_settings(ctx, split_text, split_seed, max_users, primary, indicators, spark_conf, input_format,
                    spark_master):
    """(split, [train], [index], [query] for evaluation) of `evaluate` / `tune`. Queries use
    the configured scoring, prior and caps, but boost 1 per indicator and no rules, so the
    variants stay comparable."""
    from dataclasses import replace

    from evaluation.splits import parse_split

    split = parse_split(split_text, split_seed)
    if max_users is not None and max_users < 1:
        raise EvaluationError(f"--users {max_users}: must be at least 1")
    settings = _train_settings(ctx, primary=primary, indicators=indicators, spark_conf=spark_conf,
                               input_format=input_format, spark_master=spark_master,
                               max_correlators=None, min_llr=None)
    query_settings = replace(_query_settings(ctx), indicators=None, primary=None, rules=[],
                             blacklist_actions=None, available_date_field=None, expire_date_field=None)
    return split, settings, _index_settings(ctx), query_settings


def _event_files(ctx, stack, events: tuple[str, ...], from_store: bool, events_path: str | None) -> list[str]:
    """EVENTS, or (--from-store) a snapshot of the event store as a file living as long as `stack`."""
    if bool(events) == from_store:
        raise ConfigError("give EVENTS files or --from-store (one of them)")
    if not from_store:
        return list(events)
    from query.fromstore import store_file

    return [stack.enter_context(store_file(_event_settings(ctx, _index_settings(ctx), events_path).path)).path]


def _write_report(data: dict[str, Any], out: str | None) -> None:
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(data, indent=2) + "\n")


@main.command("evaluate")
@_split_options
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Also draw precision@k and MAP@k for k = 1..20 per variant into this image (PNG/SVG).")
@click.pass_context
@fail_cleanly
def evaluate_cmd(ctx, events, from_store, events_path, split_text, ks, primary, indicators, max_users,
                 split_seed, input_format, spark_master, spark_conf, as_json, out, plot_path):
    """Measure recommendation quality on EVENTS: train on the earlier part of a split, query
    each test user with their training history (as the live service would), score the
    held-out primary-action items. Variants: popularity; primary indicator only vs all
    indicators; our scoring vs UR-style scoring.

    \b
    Example:
      cooccur evaluate ratings.csv --split leave-last:5 -k 10 -k 20 --plot eval.png
      cooccur evaluate --from-store --split random:0.8 --users 500
    """
    import contextlib

    from evaluation.run import format_table, run_evaluation

    split, settings, index_settings, query_settings = _split_settings(
        ctx, split_text, split_seed, max_users, primary, indicators, spark_conf, input_format, spark_master)
    wanted = sorted(set(ks or (10,)) | (set(range(1, 21)) if plot_path else set()))
    with contextlib.ExitStack() as stack:
        def progress(total: int):
            bar = stack.enter_context(click.progressbar(length=total, label="querying users", file=sys.stderr))
            return bar.update

        report = run_evaluation(_event_files(ctx, stack, events, from_store, events_path), settings, split, wanted,
                                query_settings=query_settings, index_settings=index_settings, max_users=max_users,
                                progress=progress,
                                on_stage=lambda line: click.echo(line, err=True))
    if plot_path:
        from evaluation.plots import plot_report

        plot_report(report, plot_path)
        click.echo(f"wrote {plot_path}", err=True)
        report = report.only_ks(ks or (10,))
    data = report.to_json()
    _write_report(data, out)
    if as_json:
        echo_json(data)
    else:
        click.echo(format_table(report))


@main.command("tune")
@_split_options
@click.option("--rounds", type=int, default=3, show_default=True,
              help="Rounds of the coordinate search at most (it stops when a round changes nothing).")
@click.option("-o", "--toml", "toml_path", type=click.Path(dir_okay=False),
              help="Write the chosen settings as a config fragment (TOML) to this file.")
@click.pass_context
@fail_cleanly
def tune_cmd(ctx, events, from_store, events_path, split_text, ks, primary, indicators, max_users, split_seed,
             input_format, spark_master, spark_conf, as_json, out, rounds, toml_path):
    """Choose scoring, popularity prior, history decay, query length and min LLR for EVENTS on
    a validation split carved from the training part only (never the test part); print the
    chosen settings' validation and test metrics beside the defaults'.

    \b
    Example:
      cooccur tune ratings.csv --split leave-last:5 -o tuned.toml
      cooccur tune --from-store --split random:0.8 -o tuned.toml
    """
    import contextlib

    from evaluation.tuning import format_tuning, run_tuning

    if rounds < 1:
        raise EvaluationError(f"--rounds {rounds}: must be at least 1")
    split, settings, index_settings, query_settings = _split_settings(
        ctx, split_text, split_seed, max_users, primary, indicators, spark_conf, input_format, spark_master)
    with contextlib.ExitStack() as stack:
        report = run_tuning(_event_files(ctx, stack, events, from_store, events_path), settings, split,
                            ks or (10,), index=index_settings, query=query_settings, max_users=max_users,
                            rounds=rounds, on_stage=lambda line: click.echo(line, err=True))
    _write_report(report.to_json(), out)
    if toml_path:
        Path(toml_path).parent.mkdir(parents=True, exist_ok=True)
        Path(toml_path).write_text(report.toml())
        click.echo(f"wrote {toml_path}", err=True)
    if as_json:
        echo_json(report.to_json())
    else:
        click.echo(format_tuning(report))
        if not toml_path:
            click.echo("\n" + report.toml())


# --------------------------------------------------------------------------- config
# (config files: conversion from a Universal Recommender engine.json; docs/ur-migration.md)
@main.group("config")
def config_group() -> None:
    """Config files: convert a Universal Recommender engine.json."""


@config_group.command("from-engine-json")
@click.argument("engine_json", type=click.Path())
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False),
              help="Write the TOML config to this file (default: stdout).")
@fail_cleanly
def config_from_engine_json_cmd(engine_json, out):
    """Convert ENGINE_JSON, a Universal Recommender engine.json (PredictionIO template or
    Harness), into a cooccur config (TOML) for `cooccur -c`.

    Every parameter not carried over is listed with why, and every one carried over with a
    different meaning with how, on stderr and as comments atop the TOML
    (docs/ur-migration.md has the whole table).

    \b
    Example:
      cooccur config from-engine-json engine.json -o cooccur.toml
    """
    from query.engine_json import convert_file

    conversion = convert_file(engine_json)
    text = conversion.toml()
    check_config(tomllib.loads(text))  # loads as `cooccur -c` will read it
    for line in conversion.report():
        click.echo(line, err=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text, nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()
