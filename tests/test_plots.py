"""evaluation.plots: metric-versus-k charts are real images; errors name the cause."""

from __future__ import annotations

import pytest

from evaluation.plots import PlotError, plot_curves

CURVES = {
    "cooccur": {k: {"precision": 0.3 / k ** 0.3, "map": 0.2 / k ** 0.2} for k in range(1, 21)},
    "popularity": {k: {"precision": 0.2 / k ** 0.3, "map": 0.1 / k ** 0.2} for k in range(1, 21)},
}


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'cooccur[plot]')")
    out = plot_curves(CURVES, tmp_path / "sub" / "q.png", "a title")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_plot_errors(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'cooccur[plot]')")
    with pytest.raises(PlotError, match="nothing to plot"):
        plot_curves({}, tmp_path / "q.png")
    with pytest.raises(PlotError, match="cannot write the chart"):
        plot_curves(CURVES, tmp_path / "q.unknown-format")
