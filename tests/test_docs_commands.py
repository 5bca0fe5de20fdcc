"""Every command and subcommand has help text, an `Example:` block in it, and a mention in
the README or docs/ (a user finds each one where they look first)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def commands(group: click.Group = main, path: tuple[str, ...] = ()):
    """(command path, command) of every command under `group`, groups included."""
    for name, cmd in sorted(group.commands.items()):
        yield (*path, name), cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*path, name))


ALL = list(commands())


def test_the_walk_finds_the_commands():
    names = {" ".join(p) for p, _ in ALL}
    assert {"train", "recommend", "events import", "events export", "config from-engine-json"} <= names


@pytest.mark.parametrize("path, cmd", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_help_example_and_mention(path, cmd):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert (cmd.help or "").strip(), f"cooccur {' '.join(path)} has no help text"
    if not isinstance(cmd, click.Group):
        assert "Example:" in result.output, f"cooccur {' '.join(path)} --help shows no Example: block"
        example = result.output.split("Example:", 1)[1]
        assert f"cooccur {' '.join(path)}" in example, "the example runs another command"
    assert f"cooccur {' '.join(path)}" in DOCS or f"cooccur -c sample/cooccur.toml {' '.join(path)}" in DOCS, \
        f"cooccur {' '.join(path)} is mentioned neither in README.md nor in docs/"
