"""The config file is checked whole by every command that reads it: an unknown section or
key, or a bad value, is an error naming it (exit 1, `Error:`, no traceback), whatever
sections the command itself uses. A misspelt [serve] must never drop the write token."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from query_testdata import make_backend

from cli import main


@pytest.fixture
def data(tmp_path):
    make_backend(tmp_path / "data")
    return tmp_path / "data"


def run(tmp_path, data, text, *command):
    cfg = tmp_path / "cooccur.toml"
    cfg.write_text(f'[index]\ndata_dir = "{data}"\n' + text)
    return CliRunner().invoke(main, ["-c", str(cfg), *command])


COMMANDS = [
    ["recommend", "--user", "u"],
    ["serve", "--port", "0"],
    ["events", "export"],
    ["events", "prune"],
    ["indexes"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("text, message", [
    ('[server]\ntoken = "s3cret"\n', "unknown section [server]: did you mean [serve]?"),
    ('[querry]\nnum = 5\n', "unknown section [querry]: did you mean [query]?"),
    ('[serve]\ntokn = "s3cret"\n', "[serve]: unknown setting(s) tokn (did you mean token?)"),
    ('[query]\nnumm = 5\n', "[query]: unknown setting(s) numm (did you mean num?)"),
    ('[events]\nretension = {view = 3}\n', "[events]: unknown setting(s) retension (did you mean retention?)"),
    ('[train]\nprimry = "buy"\n', "[train]: unknown setting(s) primry (did you mean primary?)"),
    ('[[train.indicators]]\nname = "view"\nmin_lr = 3\n', "[train.indicators[0]]: unknown setting(s) min_lr"),
    ('[index.elasticsearch]\nurlz = ["http://x"]\n', "[index.elasticsearch]: unknown setting(s) urlz"),
    ('[query]\nrules = [{name = "c", valuse = ["x"], bias = 1}]\n', "rules[0].valuse: unknown key"),
    ('[serve]\nworkers = 0\n', "[serve] workers: must be at least 1"),
])
def test_every_command_refuses_a_bad_config(tmp_path, data, command, text, message):
    result = run(tmp_path, data, text, *command)
    assert result.exit_code == 1, result.output
    assert "Error:" in result.output and message in result.output, result.output
    assert "Traceback" not in result.output and "cooccur serving" not in result.output


def test_top_level_keys_and_non_table_sections(tmp_path, data):
    result = run(tmp_path, data, "", "indexes")
    assert result.exit_code == 0, result.output
    cfg = tmp_path / "top.toml"
    cfg.write_text('num = 5\n[index]\ndata_dir = "x"\n')
    result = CliRunner().invoke(main, ["-c", str(cfg), "indexes"])
    assert result.exit_code == 1 and "unknown top-level key 'num'" in result.output
    cfg.write_text('query = 5\n')
    result = CliRunner().invoke(main, ["-c", str(cfg), "indexes"])
    assert result.exit_code == 1 and "query = 5: expected a [query] section" in result.output


def test_a_full_valid_config_passes(tmp_path, data):
    result = run(tmp_path, data, """
[train]
primary = "purchase"
[[train.indicators]]
name = "view"
min_llr = 2.0
[train.rankings]
window = "30 days"
[query]
indicators = {purchase = 1.0, view = 0.5}
user_bias = -1.0
rules = [{name = "category", values = ["x"], bias = 1.5}]
[events]
retention = {view = 365}
[serve]
port = 8123
""", "recommend", "--user", "u", "--json")
    assert result.exit_code == 0, result.output
