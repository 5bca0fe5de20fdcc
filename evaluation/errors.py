"""Errors of the offline evaluation; each carries the data a user needs to act."""

from __future__ import annotations


class EvaluationError(Exception):
    """The evaluation was asked for something it cannot do (a bad split, no test users)."""

    hint: str = "see docs/evaluation.md"

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint


class PlotError(EvaluationError):
    """A chart cannot be drawn (matplotlib missing, nothing to draw, unwritable file)."""
