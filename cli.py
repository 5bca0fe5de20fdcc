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

# --------------------------------------------------------------------------- query
# (recommend, events ...)

# --------------------------------------------------------------------------- serve
# (HTTP service)

# --------------------------------------------------------------------------- demo
# (train + index + recommend on the bundled sample)


if __name__ == "__main__":  # pragma: no cover
    main()
