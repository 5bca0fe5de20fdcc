"""indicators/spark.py: the JVM's incubator warning is dropped from the gateway's stderr, and
nothing else is; a fresh session prints nothing on stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from indicators.spark import INCUBATOR_WARNING, JvmStderrFilter

WARNING_LINE = INCUBATOR_WARNING + b"jdk.incubator.vector\n"
REST = b"25/11/30 ERROR SparkContext: something\n\r[Stage 1:>   (0 + 2) / 4]\r[Stage 1:=>  (1 + 2) / 4]"


def _through(chunks: list[bytes]) -> tuple[bytes, list[bytes]]:
    """Everything written, and what was written after each chunk."""
    flt = JvmStderrFilter()
    each = [flt.feed(c) for c in chunks]
    return b"".join(each) + flt.close(), each


@pytest.mark.parametrize("size", [1, 2, 7, 40, 1000])
def test_the_warning_is_dropped_however_the_stream_is_cut(size):
    stream = b"Picked up JAVA_TOOL_OPTIONS: -Xss4m\n" + WARNING_LINE + REST
    chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
    assert _through(chunks)[0] == b"Picked up JAVA_TOOL_OPTIONS: -Xss4m\n" + REST


def test_other_lines_pass_at_once_and_unchanged():
    # a line that only starts like the warning, the warning text mid-line, a bar without newline
    lines = [b"WARNING: Using something else\n", b"x WARNING: Using incubator modules: y\n", b"\r[Stage 2:>"]
    out, each = _through(lines)
    assert out == b"".join(lines)
    assert each == lines  # nothing held back: a progress bar keeps moving


def test_a_partial_line_is_held_only_while_it_may_be_the_warning():
    flt = JvmStderrFilter()
    assert flt.feed(b"WARNING: Us") == b""
    assert flt.feed(b"ed to be") == b"WARNING: Used to be"
    assert flt.feed(b" fine\n") == b" fine\n"
    assert flt.feed(WARNING_LINE + WARNING_LINE) == WARNING_LINE  # one warning dropped, then all passes
    assert JvmStderrFilter().feed(b"WARN") == b"" and JvmStderrFilter().close() == b""


def test_a_stream_ending_inside_a_maybe_warning_keeps_it():
    assert _through([b"WARNING: Using incub"])[0] == b"WARNING: Using incub"


@pytest.mark.spark
@pytest.mark.slow
def test_a_fresh_session_prints_nothing_on_stderr():
    """A process of its own (the test suite's JVM runs already): the JVM's start-up line is gone."""
    code = ("from indicators.spark import spark_session\n"
            "with spark_session('local[1]') as s:\n"
            "    print(s.range(3).count())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         cwd=Path(__file__).resolve().parents[1], check=True)
    assert out.stdout.strip() == "3"
    assert out.stderr == ""
