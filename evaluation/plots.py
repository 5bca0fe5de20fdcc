"""Metric-versus-k charts (precision@k and MAP@k per method), as evaluation users of
Microsoft Recommenders expect: `cooccur evaluate --plot` and bench/quality.py draw them.

matplotlib is an optional dependency (`pip install 'cooccur[plot]'`), imported only here and
only when a chart is drawn, with the non-interactive Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .errors import PlotError

if TYPE_CHECKING:
    from matplotlib.colors import ListedColormap

    from .run import EvaluationReport

Curves = Mapping[str, Mapping[int, Mapping[str, float]]]
"""{method: {k: {"precision": ..., "map": ..., ...}}}"""
PLOTTED = (("precision", "precision@k"), ("map", "MAP@k"))


def plot_curves(curves: Curves, path: str | Path, title: str = "") -> Path:
    """Draw precision@k and MAP@k (side by side) for every method over its k values."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("matplotlib is not installed: cannot draw charts",
                        hint="pip install 'cooccur[plot]' (or matplotlib)") from None
    if not curves or not any(len(points) for points in curves.values()):
        raise PlotError("nothing to plot: no metrics at any k")
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(6 * len(PLOTTED) + 3, 4.4))
    # tab20 and two line styles: a dozen methods stay distinguishable in print
    colors: Any = cast("ListedColormap", plt.get_cmap("tab20")).colors  # tab20 is a ListedColormap
    for ax, (metric, label) in zip(axes, PLOTTED, strict=True):
        for i, (method, points) in enumerate(curves.items()):
            ks = sorted(points)
            ax.plot(ks, [points[k][metric] for k in ks], marker="o", markersize=2.5, label=method,
                    color=colors[(2 * i) % 20 + (i // 10) % 2], linestyle="-" if i % 2 == 0 else "--")
        ax.set_xlabel("k")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    except (OSError, ValueError) as e:
        raise PlotError(f"{out}: cannot write the chart ({e})",
                        hint="use a writable path ending in .png, .svg or .pdf") from None
    finally:
        plt.close(fig)
    return out


def plot_report(report: EvaluationReport, path: str | Path) -> Path:
    """An evaluation report's variants as metric-versus-k charts."""
    curves = {v.name: {k: m.as_dict() for k, m in v.metrics.items()} for v in report.variants}
    return plot_curves(curves, path, f"split {report.split['split']}; primary {report.primary}")
