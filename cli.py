"""The `cooccur` command line: a thin layer that parses, calls one library function, prints.

Data goes to stdout, messages to stderr. Errors a user can cause end with `Error: ...`,
a hint, and exit code 1 (click.ClickException), never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import tomllib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import click

from indexer.errors import IndexerError

log = logging.getLogger("cooccur")


# --------------------------------------------------------------------------- errors
def _user_errors() -> tuple[type[Exception], ...]:
    """Every package's base error for causes a user can fix (imported lazily: the
    indicator job pulls in pyspark, which serving commands must not pay for)."""
    errors: list[type[Exception]] = [IndexerError, ConfigError]
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

    return wrapper


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
        raise ConfigError(f"[{where}]: unknown setting(s) {', '.join(unknown)}")
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
    level = logging.WARNING - 10 * verbose if verbose else logging.INFO
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")


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


def config_of(ctx: click.Context) -> dict[str, Any]:
    """The config file of this invocation, loaded once."""
    obj = ctx.find_root().obj
    if "config" not in obj:
        try:
            obj["config"] = load_config(obj["config_path"])
        except ConfigError as e:
            raise click.ClickException(f"{e}\nHint: {e.hint}") from None
    return obj["config"]


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


# --------------------------------------------------------------------------- train
# (indicator job commands)

# --------------------------------------------------------------------------- index
# (indexer commands: index, indexes, rollback, doctor)
def _index_options(fn):
    """--backend / --data-dir / --name: override the config's [index] section."""
    fn = click.option("--name", help="Index name (embedded subdirectory / Elasticsearch alias).")(fn)
    fn = click.option("--data-dir", type=click.Path(file_okay=False),
                      help="Embedded backend: directory holding the index versions.")(fn)
    fn = click.option("--backend", type=click.Choice(["embedded", "elasticsearch"]),
                      help="Search backend (default: [index] backend, else embedded).")(fn)
    return fn


def _index_settings(ctx: click.Context, **overrides):
    from indexer.settings import IndexSettings

    return build_settings(IndexSettings, config_of(ctx).get("index"), "index", **overrides)


@main.command("index")
@click.argument("model_dir", type=click.Path())
@_index_options
@click.option("--keep", "keep_versions", type=int, help="Versions to keep after the switch.")
@click.pass_context
@fail_cleanly
def index_cmd(ctx, model_dir, backend, data_dir, name, keep_versions):
    """Index a model directory into a new version of the search backend, then switch to it."""
    from indexer.run import index_model

    settings = _index_settings(ctx, backend=backend, data_dir=data_dir, name=name,
                               keep_versions=keep_versions)
    done = 0
    live = sys.stderr.isatty()

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if live:
            click.echo(f"\rindexed {done} documents", err=True, nl=False)

    report = index_model(model_dir, settings, progress=progress)
    if live:
        click.echo("", err=True)
    rate = report.documents / report.seconds if report.seconds > 0 else float("inf")
    click.echo(f"indexed {report.documents} documents in {report.seconds:.2f} s "
               f"({rate:,.0f} documents/s) into {settings.backend} version {report.version}")
    for old in report.removed_versions:
        click.echo(f"removed old version {old}")


@main.command("indexes")
@_index_options
@click.pass_context
@fail_cleanly
def indexes_cmd(ctx, backend, data_dir, name):
    """List the kept index versions; `*` marks the current one."""
    from indexer.backends import open_backend

    versions = open_backend(_index_settings(ctx, backend=backend, data_dir=data_dir, name=name)).versions()
    if not versions:
        click.echo("no index versions yet: run `cooccur index MODEL_DIR`", err=True)
    for v in versions:
        click.echo(f"{'*' if v.current else ' '} {v.name}  {v.created}  {v.documents} documents")


@main.command("rollback")
@_index_options
@click.pass_context
@fail_cleanly
def rollback_cmd(ctx, backend, data_dir, name):
    """Switch back to the version before the current one."""
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
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".cooccur-doctor-probe"
        probe.write_text("ok")
        probe.unlink()
        yield Check("data dir", True, f"{data_dir.resolve()} is writable")
    except OSError as e:
        yield Check("data dir", False, f"{data_dir}: {e.strerror or e}",
                    "choose a writable --data-dir ([index] data_dir) or fix its permissions")
    if spark:
        try:
            from indicators.job import build_spark_session
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
    """Check Java, the data directory, (Spark) and the search backend; exit 1 if any fails."""
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

# --------------------------------------------------------------------------- serve
# (HTTP service)

# --------------------------------------------------------------------------- demo
# (train + index + recommend on the bundled sample)


if __name__ == "__main__":  # pragma: no cover
    main()
