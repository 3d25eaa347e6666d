"""Paired per-seed statistics for :mod:`activedet.report`: labels saved against the baseline, with 95% intervals.

One seed = one initial labelled set shared by every strategy, so a strategy's run and the baseline's run with
the same seed form a pair. Everything here is computed per pair, then summarised over seeds:

* **Saved, per seed and cycle.** ``needed`` = the first labelled count at which the baseline run *of the same
  seed* reaches this run's metric (:func:`labels_needed`, piecewise linear in that seed's own
  counts); ``saved = 100 * (1 - used / needed)`` percent.
* **Bounds.** When the metric is above every point of the baseline's curve, ``needed`` is unknown but larger
  than the baseline's last labelled count (the baseline had not got there yet), so
  ``saved >= 100 * (1 - used / last_count)``: that number is kept and flagged as a **lower bound**, never
  extrapolated. A metric below the baseline's first point leaves the value undefined (NaN).
* **Mean and 95% interval** over the seeds where the value is defined: the Student-t interval
  ``mean ± t(0.975, n - 1) * sd / sqrt(n)`` with the sample sd (ddof=1); no interval for one seed. A mean that
  includes at least one bound is itself a lower bound and is flagged so.
* **Per strategy**, each seed's savings are first averaged over the cycles >= 1 where defined (cycle 0 is the
  shared initial set), then the mean and interval are taken over seeds.
* **Metric difference**: this run's metric minus the baseline run's of the same seed at the same cycle.
* **Axes**: labelled images, labelled boxes and, for runs that record it, the labelled set's labelling cost
  (:mod:`activedet.al.cost`); the cost columns are shown when some run has costs (``savings.csv`` always has them,
  empty when none is recorded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AXES",
    "Interval",
    "labels_needed",
    "markdown_table",
    "mean_interval",
    "normalised_auc",
    "pair_with_baseline",
    "paired_difference",
    "paired_saved",
    "t_quantile",
]

#: Confidence level of every interval in the report.
LEVEL = 0.95
#: what "saved" is counted in: labelled images, boxes, and labelling cost (NaN for runs that do not record it)
AXES = ("images", "boxes", "cost")


def normalised_auc(x, y) -> float:
    """Trapezoid area under ``y(x)`` divided by ``x[-1] - x[0]``: the mean of the curve over its x range.

    ``x`` must be non-decreasing. NaN with fewer than two points or a zero x range; NaN values propagate.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or not x[-1] > x[0]:
        return math.nan
    area = np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0)
    return float(area / (x[-1] - x[0]))


def labels_needed(x, y, target: float, *, tol: float = 1e-12) -> float:
    """The first ``x`` at which the piecewise-linear curve through ``(x, y)`` reaches ``target``.

    NaN when ``target`` is below ``y[0]`` or above ``max(y)`` (outside the curve: never extrapolated), or when
    the curve or target has NaN. ``tol`` absorbs float round-off in means of equal values.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(y) == 0 or not np.isfinite(target) or not np.all(np.isfinite(y)) or not np.all(np.isfinite(x)):
        return math.nan
    if target < y[0] - tol or target > y.max() + tol:
        return math.nan
    j = int(np.argmax(y >= target - tol))
    if j == 0:
        return float(x[0])
    fraction = (target - y[j - 1]) / (y[j] - y[j - 1])  # y[j-1] < target <= y[j] (within tol)
    return float(x[j - 1] + min(max(fraction, 0.0), 1.0) * (x[j] - x[j - 1]))


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (``t_quantile(0.975, 4) = 2.776...``)."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0. Got p={p!r}, df={df!r} instead.")
    from scipy.stats import t  # scipy comes with scikit-learn; imported on use, as import has no side effects

    return float(t.ppf(p, df))


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its 95% Student-t interval.

    Attributes:
        mean: mean of the defined values (NaN when none). low, high: the interval (NaN for fewer than two).
        n: number of seeds with a defined value. bound: True when at least one value is a lower bound, so the
            mean (and the interval) bound the true figure from below.
    """

    mean: float
    low: float
    high: float
    n: int
    bound: bool = False

    def to_dict(self) -> dict:
        """JSON-ready (NaN -> None): ``mean, ci_low, ci_high, n_seeds, bound``."""
        finite = lambda v: float(v) if math.isfinite(v) else None
        return {
            "mean": finite(self.mean),
            "ci_low": finite(self.low),
            "ci_high": finite(self.high),
            "n_seeds": self.n,
            "bound": self.bound,
        }


def mean_interval(values, bound=None, *, level: float = LEVEL) -> Interval:
    """Mean and Student-t interval of the finite ``values``; ``bound`` (same shape, bool) flags lower bounds."""
    values = np.asarray(values, np.float64).ravel()
    defined = np.isfinite(values)
    finite = values[defined]
    n = int(len(finite))
    is_bound = bool(np.any(np.asarray(bound, bool).ravel()[defined])) if bound is not None else False
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, False)
    mean = float(finite.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, 1, is_bound)
    half = t_quantile(0.5 + level / 2.0, n - 1) * float(finite.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, is_bound)


def paired_saved(used, metric, base_x, base_metric) -> tuple[np.ndarray, np.ndarray]:
    """Per cycle of one run: percent saved against the same seed's baseline run, and whether it is a bound.

    ``used``, ``metric``: this run's labelled counts and metric per cycle; ``base_x``, ``base_metric``: the
    baseline run's. Returns ``(saved float64[C], is_bound bool[C])``; see the module docstring.
    """
    used, metric = np.asarray(used, np.float64), np.asarray(metric, np.float64)
    base_x, base_metric = np.asarray(base_x, np.float64), np.asarray(base_metric, np.float64)
    saved, is_bound = np.full(len(metric), np.nan), np.zeros(len(metric), bool)
    curve_ok = len(base_metric) > 0 and np.all(np.isfinite(base_metric)) and np.all(np.isfinite(base_x))
    for t, (u, m) in enumerate(zip(used, metric)):
        needed = labels_needed(base_x, base_metric, m)
        if needed > 0:
            saved[t] = 100.0 * (1.0 - u / needed)
        elif curve_ok and math.isfinite(m) and math.isnan(needed) and m > base_metric.max() and base_x[-1] > 0:
            # above the whole baseline curve: needed > the baseline's last count, so this is a lower bound
            saved[t], is_bound[t] = 100.0 * (1.0 - u / base_x[-1]), True
    return saved, is_bound


def pair_with_baseline(s, base, warnings: list[str], *, curves: dict) -> None:
    """Set ``s``'s paired per-seed fields (a :class:`activedet.report.StrategySummary`) against ``base``'s runs.

    Per seed, against the baseline run with the same seed: percent saved (or a bound) and the metric difference.
    ``curves``: per seed, that baseline run's whole curve (a mapping of ``"metric"`` and each axis in
    :data:`AXES` to its values per cycle), on which the savings are measured; ``base``'s rows, which stop at
    the cycles every seed shares, give the metric difference. Seeds without a baseline run stay NaN, with a
    warning appended to ``warnings``.
    """
    shape = s.metric_per_seed.shape
    for axis in AXES:
        saved, bound = np.full(shape, np.nan), np.zeros(shape, bool)
        for i, seed in enumerate(s.seeds):
            if seed in curves:
                used, own = getattr(s, f"{axis}_per_seed")[i], curves[seed]
                saved[i], bound[i] = paired_saved(used, s.metric_per_seed[i], own[axis], own["metric"])
        setattr(s, f"{axis}_saved_per_seed", saved)
        setattr(s, f"{axis}_saved_bound", bound)
    s.metric_difference_per_seed = paired_difference(s.metric_per_seed, s.seeds, base.metric_per_seed, base.seeds)
    unpaired = [seed for seed in s.seeds if seed not in curves]
    if unpaired and s is not base:
        warnings.append(
            f"{s.strategy}: seed(s) {unpaired} have no {base.strategy!r} run with the same seed; "
            "left out of the paired savings and differences"
        )


def per_seed_overall(saved: np.ndarray, is_bound: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per seed (rows of ``[S, C]``): the mean over cycles >= 1 where defined, and whether any was a bound."""
    later, flags = saved[:, 1:], is_bound[:, 1:]
    means, bounds = np.full(len(saved), np.nan), np.zeros(len(saved), bool)
    for i, (row, flag) in enumerate(zip(later, flags)):
        defined = np.isfinite(row)
        if defined.any():
            means[i], bounds[i] = float(row[defined].mean()), bool(flag[defined].any())
    return means, bounds


def paired_difference(metric_per_seed: np.ndarray, seeds, base_metric_per_seed: np.ndarray, base_seeds) -> np.ndarray:
    """``float64[S, C]``: metric minus the baseline's of the same seed at the same cycle (NaN: no such run/cycle)."""
    out = np.full(metric_per_seed.shape, np.nan)
    rows = dict(zip(base_seeds, base_metric_per_seed))
    for i, seed in enumerate(seeds):
        if seed in rows:
            c = min(metric_per_seed.shape[1], len(rows[seed]))
            out[i, :c] = metric_per_seed[i, :c] - rows[seed][:c]
    return out


def interval_cell(i: Interval, paired: int, fmt=None) -> str:
    """``mean [low, high]`` (``fmt``: a percentage by default); ``≥`` before a lower bound; the seed count when it
    differs from ``paired`` or there is no CI."""
    fmt = fmt or _pct
    if i.n == 0:
        return "n/a"
    text = ("≥ " if i.bound else "") + fmt(i.mean)
    if i.n < 2:
        return f"{text} (1 seed, no CI)"
    text += f" [{fmt(i.low)}, {fmt(i.high)}]"
    return text + (f" (n={i.n})" if i.n != paired else "")


def _pct(v: float) -> str:
    return f"{v:.1f}%"


def _diff(v: float) -> str:
    return f"{v:+.4f}"


def paired_tables(summary) -> list[str]:
    """Markdown lines: per strategy, then per (strategy, cycle >= 1), the paired savings and differences."""
    base, m = summary.baseline, summary.metric
    if base is None or base not in summary.strategies:
        return []
    others = {label: s for label, s in summary.strategies.items() if label != base}
    paired = {label: sum(seed in summary.strategies[base].seeds for seed in s.seeds) for label, s in others.items()}
    axes = shown_axes(summary)
    header = [
        "strategy",
        "paired seeds",
        *(f"{axis} saved vs {base} (cycles >= 1)" for axis in axes),
        f"final {m} - {base}",
    ]
    rows = [
        [
            label,
            str(paired[label]),
            *(interval_cell(s.paired_saved_overall(axis), paired[label], _pct) for axis in axes),
            interval_cell(s.paired_difference_interval, paired[label], _diff),
        ]
        for label, s in others.items()
    ]
    cycle_header = ["strategy", "cycle", *(f"{axis} saved vs {base}" for axis in axes), f"{m} - {base}"]
    cycle_rows = []
    for label, s in others.items():
        saved, diffs = [s.paired_saved(axis) for axis in axes], s.difference_intervals()
        for t in range(1, len(s.cycles)):
            cells = (interval_cell(per_cycle[t], paired[label], _pct) for per_cycle in saved)
            cycle_rows.append([label, str(t), *cells, interval_cell(diffs[t], paired[label], _diff)])
    note = (
        f"Paired by seed: each run against the `{base}` run with the same seed (same initial set); mean over "
        f"seeds [95% Student-t interval]. Saved = 100 * (1 - used / needed by `{base}` to reach that run's "
        f"metric). ≥: a lower bound, some seed ends above its whole `{base}` curve, where `{base}`'s need is only "
        "known to exceed its last labelled count."
    )
    return [note, "", *markdown_table(header, rows), "", *markdown_table(cycle_header, cycle_rows)]


def has_cost(summary) -> bool:
    """Whether some run of ``summary`` recorded its labelling cost (the report then shows the cost columns)."""
    return any(np.isfinite(getattr(s, "cost_per_seed", np.zeros(0))).any() for s in summary.strategies.values())


def shown_axes(summary) -> tuple[str, ...]:
    """The axes the report's tables show: images and boxes, and cost when some run recorded it."""
    return AXES if has_cost(summary) else AXES[:2]


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a Markdown (pipe) table; a "|" inside a cell is escaped."""
    cell = lambda text: str(text).replace("|", "\\|")
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


#: Columns of ``savings.csv`` written by :func:`savings_csv`.
CSV_COLUMNS = (
    "strategy",
    "cycle",
    *(f"{axis}_saved_{k}" for axis in AXES for k in ("mean", "ci_low", "ci_high", "n_seeds", "bound")),
    *(f"metric_difference_{k}" for k in ("mean", "ci_low", "ci_high", "n_seeds")),
)


def savings_csv(summary) -> str:
    """CSV text: one row per strategy and cycle, the paired savings (percent, in images, boxes and labelling cost)
    and metric difference.

    Every strategy except the baseline; empty cells for undefined values (the cost ones of runs without recorded
    costs); ``bound`` is 1 for a lower bound.
    Empty (the header only) when there is no baseline among the strategies.
    """
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    num = lambda v: "" if not math.isfinite(v) else repr(float(v))
    base = summary.baseline
    for label, s in summary.strategies.items():
        if base is None or base not in summary.strategies or label == base:
            continue
        saved, diffs = [s.paired_saved(axis) for axis in AXES], s.difference_intervals()
        for t in range(len(s.cycles)):
            row = [label, t]
            for i in (per_cycle[t] for per_cycle in saved):
                row += [num(i.mean), num(i.low), num(i.high), i.n, int(i.bound)]
            row += [num(diffs[t].mean), num(diffs[t].low), num(diffs[t].high), diffs[t].n]
            writer.writerow(row)
    return buffer.getvalue()
