"""The report as Markdown: :func:`format_table` writes the per-strategy table, the per-cycle table and the paired
savings tables of a :class:`~activedet.report.summary.Summary`, then its warnings.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .savings import has_cost, markdown_table, paired_tables
from .summary import StrategySummary, Summary

__all__ = ["format_table", "cycle_columns"]


def _fmt(value: float, digits: int = 4) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def _pm(mean: float, std: float, digits: int = 4) -> str:
    """``mean ± std``; the mean alone when std is undefined (one seed)."""
    return _fmt(mean, digits) if not math.isfinite(std) else f"{_fmt(mean, digits)} ± {_fmt(std, digits)}"


def _count(mean: float, std: float) -> str:
    if math.isfinite(mean) and float(mean).is_integer() and not (math.isfinite(std) and std > 0):
        return str(int(mean))
    return _pm(mean, std, 1)


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.1f}%"


def _saved(s: StrategySummary, axis: str, t: int) -> str:
    """The mean-curve saving at cycle ``t``; ``≥`` its lower bound above the baseline's last point."""
    value, at_least = getattr(s, f"{axis}_saved_pct")[t], getattr(s, f"{axis}_saved_at_least")
    if not math.isfinite(value) and t < len(at_least) and math.isfinite(at_least[t]):
        return f"≥ {_pct(at_least[t])}"
    return _pct(value)


def cycle_columns(summary: Summary) -> list[tuple[str, Callable[[StrategySummary, int], str]]]:
    """The per-cycle table's columns after "strategy" and "cycle": ``(header, cell)`` pairs, where
    ``cell(strategy_summary, t)`` formats cycle ``t``. A new per-cycle column is one more pair here."""
    m, base = summary.metric, summary.baseline or "baseline"
    cost = [("labelled cost", lambda s, t: _count(s.cost_mean[t], s.cost_std[t]))] if has_cost(summary) else []
    return [
        ("labelled images", lambda s, t: _count(s.images_mean[t], s.images_std[t])),
        ("labelled boxes", lambda s, t: _count(s.boxes_mean[t], s.boxes_std[t])),
        *cost,
        (m, lambda s, t: _pm(s.metric_mean[t], s.metric_std[t])),
        (f"images saved vs {base}", lambda s, t: _saved(s, "images", t)),
        (f"boxes saved vs {base}", lambda s, t: _saved(s, "boxes", t)),
    ]


def format_table(summary: Summary) -> str:
    """Markdown tables (pipes): one row per strategy, then one row per (strategy, cycle); then the warnings."""
    m, base = summary.metric, summary.baseline or "baseline"
    header = [
        "strategy",
        "AUC (images)",
        "AUC (boxes)",
        f"final {m}",
        f"final - {base}, per seed",
        f"images saved vs {base}",
        f"boxes saved vs {base}",
        "seeds",
    ]
    rows = [
        [
            label,
            _pm(*s.auc_images_mean_std),
            _pm(*s.auc_boxes_mean_std),
            _pm(*s.final_mean_std),
            " / ".join("n/a" if np.isnan(d) else f"{d:+.4f}" for d in s.paired_difference) or "n/a",
            _pct(s.mean_images_saved_pct),
            _pct(s.mean_boxes_saved_pct),
            str(len(s.seeds)),
        ]
        for label, s in summary.strategies.items()
    ]
    columns = cycle_columns(summary)
    cycle_header = ["strategy", "cycle", *(name for name, _ in columns)]
    curves = dict(summary.strategies)
    extended = summary.baseline_extended
    if extended is not None:  # the per-cycle table shows the baseline's whole curve
        curves[summary.baseline] = extended
    cycle_rows = [
        [label, str(t), *(cell(s, t) for _, cell in columns)] for label, s in curves.items() for t in s.cycles
    ]
    saved = (
        f"Labels saved: 100 * (1 - used / needed by `{base}` to reach the same mean metric), mean over "
        f"cycles >= 1 where measured; ≥: a lower bound, the metric above {base}'s last point; n/a: below its "
        "first."
        if summary.baseline
        else "Labels saved: no baseline."
    )
    if extended is not None:
        compared = len(summary.strategies[summary.baseline].cycles)
        shared = len(extended.cycles) - 1
        further = sorted((c, seed) for seed, c in summary.baseline_last_cycle.items() if c > shared)
        beyond = (
            " (" + ", ".join(f"seed {seed} to cycle {c}" for c, seed in further) + "; each seed's labels saved use "
            "its own whole run)"
            if further
            else ""
        )
        saved += (
            f" `{base}` went on to cycle {shared}{beyond} so that the other strategies' last points are on "
            f"its curve; labels saved are measured on its whole curve, its AUC and final metric over cycles "
            f"0-{compared - 1} like the others'."
        )
    lines = [
        f"Metric `{m}`, mean ± std over seeds (sample std). AUC: area under the metric vs labelled images "
        f"(boxes) curve divided by its x range, per seed. {saved}",
        "",
        *markdown_table(header, rows),
        "",
        *markdown_table(cycle_header, cycle_rows),
    ]
    paired = paired_tables(summary)
    lines += ["", *paired] if paired else []
    if summary.warnings:
        lines += ["", "Warnings:", *(f"- {w}" for w in summary.warnings)]
    return "\n".join(lines) + "\n"
