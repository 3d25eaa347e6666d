"""The numbers of a report: :func:`summarize` groups :class:`~activedet.report.runs.Run` objects by strategy
label into a :class:`Summary` of :class:`StrategySummary` objects (mean ± std curves, AUCs, labels saved against
the baseline, paired per-seed differences); ``to_dict`` gives them as written to ``summary.json``
(conventions: :mod:`activedet.report`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .runs import Run
from .savings import AXES, Interval, labels_needed, mean_interval, normalised_auc, pair_with_baseline, per_seed_overall

__all__ = ["StrategySummary", "Summary", "summarize"]


def _mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std (ddof=1) over axis 0 of ``[seeds, ...]``; std is NaN for one seed."""
    mean = values.mean(axis=0)
    std = values.std(axis=0, ddof=1) if len(values) > 1 else np.full_like(mean, np.nan)
    return mean, std


def _mean_where_defined(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


@dataclass(eq=False)
class StrategySummary:
    """One strategy label over its seeds; per-cycle arrays have length C (the cycles every seed completed).

    Attributes:
        strategy: the label; seeds: sorted seeds; paths: run directories in seed order; cycles: ``0 .. C-1``.
        metric_mean, metric_std, images_mean, images_std, boxes_mean, boxes_std: ``float64[C]`` over seeds.
        auc_images, auc_boxes: ``float64[S]`` normalised AUC per seed (seed order).
        images_needed, boxes_needed: ``float64[C]`` labels the baseline needs for this metric (NaN: outside).
        images_saved_pct, boxes_saved_pct: ``float64[C]`` ``100 * (1 - used / needed)``.
        images_saved_at_least, boxes_saved_at_least: ``float64[C]`` where the mean metric is above the baseline's
            whole mean curve (``needed`` undefined, more than its last count), the lower bound
            ``100 * (1 - used / last count)``; NaN elsewhere.
        metric_per_seed: ``float64[S, C]`` the metric of each seed's run per cycle.
        paired_difference: ``float64[S]`` per seed, the metric at the last common cycle minus the baseline's run
            of the same seed at the same cycle (the paired comparison that shared initial sets allow; NaN where
            the baseline has no run of that seed).
        images_per_seed, boxes_per_seed: ``float64[S, C]`` each seed's labelled counts per cycle.
        images_saved_per_seed, boxes_saved_per_seed: ``float64[S, C]`` percent saved against the baseline run
            of the same seed (:mod:`activedet.report.savings`); images_saved_bound, boxes_saved_bound: ``bool[S, C]``
            True where that value is a lower bound (the metric is above the seed's whole baseline curve).
        metric_difference_per_seed: ``float64[S, C]`` metric minus the same seed's baseline run, per cycle.
        cost_mean, cost_std: ``float64[C]`` the labelled set's labelling cost over seeds (NaN where some seed's run
            did not record it); cost_per_seed, cost_saved_per_seed, cost_saved_bound: as the images' and boxes'.
    """

    strategy: str
    seeds: list[int]
    paths: list[Path]
    cycles: np.ndarray
    metric_mean: np.ndarray
    metric_std: np.ndarray
    images_mean: np.ndarray
    images_std: np.ndarray
    boxes_mean: np.ndarray
    boxes_std: np.ndarray
    auc_images: np.ndarray
    auc_boxes: np.ndarray
    images_needed: np.ndarray
    boxes_needed: np.ndarray
    images_saved_pct: np.ndarray
    boxes_saved_pct: np.ndarray
    images_saved_at_least: np.ndarray = field(default_factory=lambda: np.zeros(0))
    boxes_saved_at_least: np.ndarray = field(default_factory=lambda: np.zeros(0))
    metric_per_seed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    paired_difference: np.ndarray = field(default_factory=lambda: np.zeros(0))
    images_per_seed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    boxes_per_seed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    images_saved_per_seed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    boxes_saved_per_seed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    images_saved_bound: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    boxes_saved_bound: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    metric_difference_per_seed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    cost_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cost_std: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cost_per_seed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    cost_saved_per_seed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    cost_saved_bound: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))

    def paired_saved(self, axis: str) -> list[Interval]:
        """Per cycle: mean over seeds of the paired percent saved (``axis`` "images", "boxes" or "cost"), 95% CI."""
        saved, bound = getattr(self, f"{axis}_saved_per_seed"), getattr(self, f"{axis}_saved_bound")
        return [mean_interval(saved[:, t], bound[:, t]) for t in range(saved.shape[1])]

    def paired_saved_overall(self, axis: str) -> Interval:
        """Each seed's paired percent saved averaged over cycles >= 1 where defined, then mean and 95% CI."""
        saved, bound = getattr(self, f"{axis}_saved_per_seed"), getattr(self, f"{axis}_saved_bound")
        return mean_interval(*per_seed_overall(saved, bound)) if saved.size else mean_interval([])

    def difference_intervals(self) -> list[Interval]:
        """Per cycle: mean over seeds of the metric minus the same seed's baseline run, 95% CI."""
        d = self.metric_difference_per_seed
        return [mean_interval(d[:, t]) for t in range(d.shape[1])]

    @property
    def paired_difference_interval(self) -> Interval:
        """Mean and 95% CI over seeds of :attr:`paired_difference` (the last common cycle)."""
        return mean_interval(self.paired_difference)

    @property
    def auc_images_mean_std(self) -> tuple[float, float]:
        """Mean and sample std over seeds of ``auc_images``."""
        return tuple(float(v) for v in _mean_std(self.auc_images))

    @property
    def auc_boxes_mean_std(self) -> tuple[float, float]:
        """Mean and sample std over seeds of ``auc_boxes``."""
        return tuple(float(v) for v in _mean_std(self.auc_boxes))

    @property
    def final_mean_std(self) -> tuple[float, float]:
        """The metric at the last common cycle."""
        return float(self.metric_mean[-1]), float(self.metric_std[-1])

    @property
    def mean_images_saved_pct(self) -> float:
        """Mean of ``images_saved_pct`` over cycles >= 1 where defined (NaN if none)."""
        return _mean_where_defined(self.images_saved_pct[1:])

    @property
    def mean_boxes_saved_pct(self) -> float:
        """Mean of ``boxes_saved_pct`` over cycles >= 1 where defined (NaN if none)."""
        return _mean_where_defined(self.boxes_saved_pct[1:])

    def to_dict(self) -> dict:
        """JSON-ready numbers (NaN -> None)."""
        auc = lambda per_seed, ms: {"mean": ms[0], "std": ms[1], "per_seed": per_seed}
        saved = lambda axis: {
            "needed_by_baseline": getattr(self, f"{axis}_needed"),
            "saved_pct": getattr(self, f"{axis}_saved_pct"),
            "saved_pct_at_least": getattr(self, f"{axis}_saved_at_least"),
            "mean_saved_pct": getattr(self, f"mean_{axis}_saved_pct"),
        }
        return _jsonable(
            {
                "seeds": self.seeds,
                "runs": [str(p) for p in self.paths],
                "cycles": self.cycles,
                "metric": {"mean": self.metric_mean, "std": self.metric_std},
                "labelled_images": {"mean": self.images_mean, "std": self.images_std},
                "labelled_boxes": {"mean": self.boxes_mean, "std": self.boxes_std},
                "labelled_cost": (
                    {"mean": self.cost_mean, "std": self.cost_std} if np.isfinite(self.cost_mean).any() else None
                ),
                "auc_images": auc(self.auc_images, self.auc_images_mean_std),
                "auc_boxes": auc(self.auc_boxes, self.auc_boxes_mean_std),
                "final_metric": {
                    **dict(zip(("mean", "std"), self.final_mean_std)),
                    "per_seed": self.metric_per_seed[:, -1],
                    "paired_difference": self.paired_difference,
                    "paired_difference_ci": self.paired_difference_interval.to_dict(),
                },
                "paired_savings": {axis: self._paired_dict(axis) for axis in AXES},
                "labels_saved": {
                    "images": saved("images"),
                    "boxes": saved("boxes"),
                },
            }
        )

    def _paired_dict(self, axis: str) -> dict:
        return {
            "per_cycle": [{"cycle": t, **i.to_dict()} for t, i in enumerate(self.paired_saved(axis))],
            "overall": self.paired_saved_overall(axis).to_dict(),
            "per_seed_pct": getattr(self, f"{axis}_saved_per_seed"),
            "per_seed_is_bound": getattr(self, f"{axis}_saved_bound").tolist(),
        }


@dataclass(eq=False)
class Summary:
    """The result of :func:`summarize`.

    Attributes:
        metric: the metric summarised; baseline: the baseline label (None: labels saved not computed).
        strategies: label -> :class:`StrategySummary`, sorted by label.
        warnings: what the reader must know (unpaired seeds, truncated runs, missing baseline, ...).
        baseline_extended: with :func:`summarize`'s ``cycles``, the baseline's whole curve when its runs went on
            beyond them (``activedet bench --baseline-cycles``), else None. Labels saved are measured on it, so a
            strategy that ends above the baseline's compared cycles gets a measured figure, not a bound;
            ``strategies[baseline]`` holds the compared cycles only, so its AUC and final metric span the others'
            budget.
        baseline_last_cycle: seed -> the last cycle of that seed's baseline run with a finite metric (each seed's
            paired savings are measured on its whole run, which may go beyond ``baseline_extended``'s shared
            cycles); empty without a baseline.
    """

    metric: str
    baseline: str | None
    strategies: dict[str, StrategySummary]
    warnings: list[str]
    baseline_extended: StrategySummary | None = None
    baseline_last_cycle: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready (NaN -> None), as written to ``summary.json``."""
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "warnings": list(self.warnings),
            "conventions": {
                "std": "sample standard deviation over seeds (ddof=1); null for one seed",
                "auc": "trapezoid area under metric vs labelled count / x range, per seed",
                "labels_saved": "100 * (1 - used / baseline needed at equal mean metric); "
                "null outside the baseline's curve (saved_pct_at_least: above it, the lower bound against the "
                "baseline's last count); mean over cycles >= 1 where measured",
                "paired_savings": "per seed against the baseline run of the same seed, "
                "100 * (1 - used / needed); mean over seeds with a 95% Student-t interval (null for one seed); "
                "bound: true when some seed's metric is above its whole baseline curve, where needed > the "
                "baseline's last count, so the value is a lower bound; overall: per-seed mean over cycles >= 1",
                "baseline_extended": "the baseline's whole curve when it ran more cycles than the other "
                "strategies (savings are measured on it); the baseline's entry under strategies covers the "
                "others' cycles only",
            },
            "strategies": {label: s.to_dict() for label, s in self.strategies.items()},
            "baseline_extended": None if self.baseline_extended is None else self.baseline_extended.to_dict(),
            "baseline_last_cycle": {str(seed): cycle for seed, cycle in sorted(self.baseline_last_cycle.items())},
        }


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, int)) and not isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def summarize(
    runs: Iterable[Run], *, metric: str = "voc/mAP_area", baseline: str | None = "random", cycles: int | None = None
) -> Summary:
    """Group runs by strategy label and compute curves, AUCs and labels saved (see the module docstring).

    ``baseline`` is the label whose curve defines "labels needed"; ``None`` skips labels saved. A baseline
    that is not among the runs gives a warning and NaN savings. ``cycles`` compares cycles ``0..cycles`` only:
    every strategy is cut there, but a baseline that went on keeps its whole curve (up to its first undefined
    mean) as :attr:`Summary.baseline_extended`, and labels saved are measured on it
    (``activedet bench --baseline-cycles``). Raises ``ValueError`` for no runs or a ``metric`` that the runs do
    not report (the message lists the available keys).
    """
    if cycles is not None and (isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 0):
        raise ValueError(f"The 'cycles' parameter of summarize must be an int >= 0 or None. Got {cycles!r} instead.")
    runs, warnings = list(runs), []
    for run in runs:
        if len(run.cycles) == 0:
            warnings.append(f"run {run.path} has no completed cycle; left out")
    runs = [run for run in runs if len(run.cycles)]
    if not runs:
        raise ValueError("summarize needs at least one run with a completed cycle (a line in metrics.jsonl)")
    _check_metric(runs, metric)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.strategy, []).append(run)
    points = None if cycles is None else cycles + 1
    strategies = {
        label: _summarize_strategy(label, groups[label], metric, warnings, points=points, baseline=label == baseline)
        for label in sorted(groups)
    }
    extended = None
    if points is not None and baseline in groups:
        defined = _defined_points(groups[baseline], metric)
        if defined > points:  # went on: the others' last points are on its curve
            extended = _summarize_strategy(baseline, groups[baseline], metric, [], points=defined)
    _warn_unpaired(strategies, warnings)
    _warn_environments(runs, warnings)
    if baseline is not None and baseline not in strategies:
        warnings.append(
            f"baseline {baseline!r} is not among the strategies ({', '.join(strategies)}); "
            "labels saved are not computed"
        )
    last_cycle = {}
    if baseline is not None and baseline in strategies:
        curve = extended or strategies[baseline]
        whole = {run.seed: _whole_curve(run, metric) for run in groups[baseline]}
        last_cycle = {seed: len(c["metric"]) - 1 for seed, c in whole.items()}
        for s in [*strategies.values(), *([extended] if extended else [])]:
            _labels_saved(s, curve)
            _paired_difference(s, curve)
            pair_with_baseline(s, curve, warnings, curves=whole)
    return Summary(metric, baseline, strategies, warnings, baseline_extended=extended, baseline_last_cycle=last_cycle)


def _defined_points(runs: list[Run], metric: str) -> int:
    """How many leading cycles every run completed with a finite ``metric`` (where the mean curve is defined)."""
    return min(_leading_finite(run.metrics[metric]) for run in runs)


def _leading_finite(values: np.ndarray) -> int:
    """How many leading entries of ``values`` are finite."""
    return int(np.argmin(np.append(np.isfinite(values), False)))


def _whole_curve(run: Run, metric: str) -> dict[str, np.ndarray]:
    """One baseline run's curve over its leading cycles with a finite ``metric``, for that seed's paired savings
    (however far the other seeds' runs went)."""
    values = run.metrics[metric]
    n = _leading_finite(values)
    cost = np.full(len(values), np.nan) if run.labelled_cost is None else run.labelled_cost
    return {
        "metric": values[:n],
        "images": run.labelled_images[:n],
        "boxes": run.labelled_boxes[:n],
        "cost": cost[:n],
    }


def _paired_difference(s: StrategySummary, base: StrategySummary) -> None:
    """Per seed: this strategy's metric at its last common cycle minus the baseline's at that cycle, same seed."""
    t = len(s.cycles) - 1
    if len(base.cycles) <= t:
        return
    at_t = dict(zip(base.seeds, base.metric_per_seed[:, t]))
    s.paired_difference = np.array([s.metric_per_seed[i, t] - at_t.get(seed, np.nan) for i, seed in enumerate(s.seeds)])


def _check_metric(runs: list[Run], metric: str) -> None:
    available = sorted(set().union(*(run.metrics for run in runs)))
    if metric not in available:
        raise ValueError(
            f"The 'metric' parameter must be one of the metrics the runs report: "
            f"{', '.join(available) or '(none)'}. Got {metric!r} instead."
        )
    lacking = [str(run.path) for run in runs if metric not in run.metrics]
    if lacking:
        raise ValueError(
            f"metric {metric!r} is missing from {len(lacking)} run(s): {', '.join(lacking)}; "
            "choose a metric every run reports or leave those runs out"
        )


def _summarize_strategy(
    label: str, runs: list[Run], metric: str, warnings: list[str], *, points: int | None = None, baseline: bool = False
) -> StrategySummary:
    """The summary of one label's runs over the cycles every seed completed (at most the first ``points``).
    ``baseline``: the label is the baseline, whose runs' whole curves still serve the paired savings."""
    runs = sorted(runs, key=lambda run: run.seed)
    lengths = [len(run.cycles) for run in runs]
    wanted = max(lengths) if points is None else min(points, max(lengths))
    n = min(*lengths, wanted)
    if n < wanted:
        lengths = ", ".join(f"{len(run.cycles)} (seed {run.seed})" for run in runs)
        whole = "; the paired savings use each seed's whole run" if baseline else ""
        warnings.append(f"{label}: runs have {lengths} cycles; truncated to the {n} common cycles 0-{n - 1}{whole}")
    values = np.stack([run.metrics[metric][:n] for run in runs])  # [S, C]
    images = np.stack([run.labelled_images[:n] for run in runs])
    boxes = np.stack([run.labelled_boxes[:n] for run in runs])
    cost = np.stack([np.full(n, np.nan) if run.labelled_cost is None else run.labelled_cost[:n] for run in runs])
    undefined = lambda: np.full(n, np.nan)
    return StrategySummary(
        label,
        [run.seed for run in runs],
        [run.path for run in runs],
        np.arange(n, dtype=np.int64),
        *_mean_std(values),
        *_mean_std(images),
        *_mean_std(boxes),
        auc_images=np.array([normalised_auc(x, y) for x, y in zip(images, values)]),
        auc_boxes=np.array([normalised_auc(x, y) for x, y in zip(boxes, values)]),
        images_needed=undefined(),
        boxes_needed=undefined(),
        images_saved_pct=undefined(),
        boxes_saved_pct=undefined(),
        images_saved_at_least=undefined(),
        boxes_saved_at_least=undefined(),
        metric_per_seed=values.astype(np.float64),
        paired_difference=np.full(len(runs), np.nan),
        images_per_seed=images,
        boxes_per_seed=boxes,
        images_saved_per_seed=np.full((len(runs), n), np.nan),
        boxes_saved_per_seed=np.full((len(runs), n), np.nan),
        images_saved_bound=np.zeros((len(runs), n), bool),
        boxes_saved_bound=np.zeros((len(runs), n), bool),
        metric_difference_per_seed=np.full((len(runs), n), np.nan),
        cost_mean=_mean_std(cost)[0],
        cost_std=_mean_std(cost)[1],
        cost_per_seed=cost,
        cost_saved_per_seed=np.full((len(runs), n), np.nan),
        cost_saved_bound=np.zeros((len(runs), n), bool),
    )


def _warn_unpaired(strategies: dict[str, StrategySummary], warnings: list[str]) -> None:
    if len({tuple(s.seeds) for s in strategies.values()}) > 1:
        seeds = "; ".join(f"{label}: {s.seeds}" for label, s in strategies.items())
        warnings.append(f"strategies were run with different seeds, so the comparison is not paired ({seeds})")
    if len({len(s.cycles) for s in strategies.values()}) > 1:
        cycles = ", ".join(f"{label}: {len(s.cycles)}" for label, s in strategies.items())
        warnings.append(
            f"strategies cover different numbers of cycles ({cycles}); their AUCs and final metrics "
            "span different budgets and are not directly comparable"
        )


def _warn_environments(runs: list[Run], warnings: list[str]) -> None:
    """Runs whose models were trained in different environments (torch version, device, CPU instruction set,
    threads; :mod:`activedet.engine.environment`) are different training draws: say which, with how many runs."""
    counts: dict[str, int] = {}
    for run in runs:
        for key in run.environments:
            counts[key] = counts.get(key, 0) + 1
    if len(counts) > 1:
        found = "; ".join(f"{key}: {n} run(s)" for key, n in sorted(counts.items()))
        warnings.append(
            f"the runs' models were trained in {len(counts)} environments ({found}); another torch version, "
            "device, CPU instruction set or thread count trains another draw, so per-seed figures differ "
            "between them: compare arms trained in one environment"
        )


def _labels_saved(s: StrategySummary, base: StrategySummary) -> None:
    for axis in ("images", "boxes"):
        used, base_x = getattr(s, f"{axis}_mean"), getattr(base, f"{axis}_mean")
        needed = np.array([labels_needed(base_x, base.metric_mean, m) for m in s.metric_mean])
        known = np.isfinite(base.metric_mean).any() and len(base_x) and base_x[-1] > 0
        top = np.nanmax(base.metric_mean) if known else np.inf  # above it: only a bound against its last count
        beyond = np.isnan(needed) & (s.metric_mean > top)
        with np.errstate(divide="ignore", invalid="ignore"):
            saved = np.where(needed > 0, 100.0 * (1.0 - used / needed), np.nan)
            at_least = np.where(beyond, 100.0 * (1.0 - used / (base_x[-1] if known else 1.0)), np.nan)
        setattr(s, f"{axis}_needed", needed)
        setattr(s, f"{axis}_saved_pct", saved)
        setattr(s, f"{axis}_saved_at_least", at_least)
