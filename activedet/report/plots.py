"""Learning-curve plots for :mod:`activedet.report`: the metric vs labelled images and vs labelled boxes.

matplotlib is imported when :func:`plot` is called, and only its object-oriented API is used (``Figure`` with
an Agg canvas): no ``pyplot``, no global backend switch, no state left behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..atomic import atomic_write

if TYPE_CHECKING:  # only for annotations: activedet.report imports this module
    from . import StrategySummary, Summary

__all__ = ["plot", "PLOT_FILES", "SAVINGS_PLOT"]

#: File names written by :func:`plot`, by x axis.
PLOT_FILES = {"images": "metric_vs_images.png", "boxes": "metric_vs_boxes.png"}
#: File written by :func:`plot` when there is a baseline and another strategy: the paired savings per cycle.
SAVINGS_PLOT = "savings_vs_cycle.png"

# matplotlib's tab10, fixed here so a strategy's colour depends only on its rank among the sorted labels.
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_LINESTYLES = ("-", "--", "-.", ":")


def plot(summary: Summary, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``metric_vs_images.png`` and ``metric_vs_boxes.png`` into ``out_dir``; return their paths.

    One line per strategy (label and number of seeds in the legend) through the per-cycle means, with a shaded
    band of ± one standard deviation of the metric over seeds. x is the mean labelled count per cycle; on the
    boxes plot, horizontal error bars show the standard deviation of the box count over seeds. Colours follow
    the sorted strategy labels (tab10, then line styles change), so the same runs always look the same.
    With a baseline and at least one other strategy, also ``savings_vs_cycle.png``: per cycle >= 1, the paired
    percent of images (left) and boxes (right) saved against the baseline, mean over seeds with its 95%
    interval as error bars; a lower bound (some seed above its whole baseline curve) is drawn as an upward
    triangle. Files are written atomically (temporary file in ``out_dir``, then ``os.replace``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [_plot_axis(summary, axis, out_dir / name) for axis, name in PLOT_FILES.items()]
    others = [label for label in sorted(summary.strategies) if label != summary.baseline]
    if summary.baseline in summary.strategies and others:
        paths.append(_plot_savings(summary, others, out_dir / SAVINGS_PLOT))
    return paths


def _plot_savings(summary: Summary, others: list[str], path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9.6, 4.0), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    ranks = {label: rank for rank, label in enumerate(sorted(summary.strategies))}
    for ax, axis in zip(axes, ("images", "boxes")):
        for k, label in enumerate(others):
            s, rank = summary.strategies[label], ranks[label]
            color = _COLORS[rank % len(_COLORS)]
            cycles = np.arange(1, len(s.cycles)) + (k - (len(others) - 1) / 2) * 0.06  # side by side, not on top
            intervals = s.paired_saved(axis)[1:]
            mean = np.array([i.mean for i in intervals])
            low, high = np.array([i.low for i in intervals]), np.array([i.high for i in intervals])
            has_ci = np.isfinite(low)
            err = np.vstack([np.where(has_ci, mean - low, 0.0), np.where(has_ci, high - mean, 0.0)])
            ax.errorbar(cycles, mean, yerr=err, color=color, marker="o", markersize=3, capsize=3, label=label)
            bound = np.array([i.bound for i in intervals], bool)
            if bound.any():
                ax.plot(cycles[bound], mean[bound], linestyle="none", marker="^", markersize=8, color=color)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xlabel("cycle")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{axis} saved vs {summary.baseline} (paired by seed)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("% saved, mean and 95% CI (▲: lower bound)")
    axes[0].legend(loc="best", fontsize="small")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    return path


def _plot_axis(summary: Summary, axis: str, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for rank, label in enumerate(sorted(summary.strategies)):
        style = {
            "color": _COLORS[rank % len(_COLORS)],
            "linestyle": _LINESTYLES[(rank // len(_COLORS)) % len(_LINESTYLES)],
        }
        extended = summary.baseline_extended if label == summary.baseline else None
        _draw_strategy(ax, extended or summary.strategies[label], axis, style)
    ax.set_xlabel(f"labelled {axis} (mean over seeds)")
    ax.set_ylabel(f"{summary.metric} (mean ± std over seeds)")
    ax.set_title(f"{summary.metric} vs labelled {axis}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    return path


def _draw_strategy(ax, s: StrategySummary, axis: str, style: dict) -> None:
    x = s.images_mean if axis == "images" else s.boxes_mean
    y, y_std = s.metric_mean, s.metric_std
    # Horizontal bars only where the box count varies between seeds (image budgets are usually exact).
    x_err = s.boxes_std if axis == "boxes" and np.all(np.isfinite(s.boxes_std)) and np.any(s.boxes_std > 0) else None
    ax.errorbar(
        x,
        y,
        xerr=x_err,
        marker="o",
        markersize=3,
        capsize=2,
        linewidth=1.5,
        label=f"{s.strategy} (n={len(s.seeds)})",
        **style,
    )
    band = np.isfinite(y_std)
    if band.any():  # a single seed has no spread to draw
        ax.fill_between(x, y - y_std, y + y_std, where=band, color=style["color"], alpha=0.18, linewidth=0)
