"""Reports over active-learning runs: mean ± std learning curves, area under the curve, labels saved.

A run directory is what the active-learning loop writes::

    RUN/config.json    the resolved config: "strategy" (str; a list of criteria is shown "a+b"), "seed" (int),
                       optional "strategy_options" (dict)
    RUN/metrics.jsonl  one JSON object per completed cycle, cycles 0, 1, 2, ... in order:
        {"cycle": 0, "labelled_images": 40, "labelled_boxes": 131,
         "metrics": {"voc/mAP_area": 0.41, ...}, "seconds": {...}, "strategy": ..., "seed": ...}

Cycle 0 is the model trained on the initial labelled set; cycle t has the labels acquired in t selections.
An unfinished run simply has fewer lines. Conventions used throughout:

* **Strategy label.** Runs are grouped by ``strategy`` plus its ``strategy_options`` in compact form, keys
  sorted: ``entropy[aggregation=sum,top_k=5]``, so two variants of one strategy are never merged. Every
  option recorded in config.json is shown, so the loop should record only the options the user set; an
  empty or absent ``strategy_options`` gives the bare name.
* **Pairing.** One seed = one initial labelled set shared by all strategies. Each (label, seed) pair must be
  unique. Different seed sets across strategies, or different numbers of cycles, produce warnings in
  :attr:`Summary.warnings` (never printed). Within a strategy only the cycles every seed completed are used.
* **mean ± std** is over seeds, per cycle; std is the sample standard deviation (ddof=1), NaN for one seed.
* **AUC** is the trapezoid area under metric vs labelled images (or boxes), divided by the x range
  ``x[last] - x[0]``: the mean metric over the budget, in the metric's units. It is computed per seed on that
  seed's own counts, then averaged (mean ± std). NaN with fewer than two cycles.
* **Labels saved vs the baseline** at equal metric: for each cycle, ``needed`` = the first labelled count at
  which the baseline's mean curve (piecewise linear in the mean counts) reaches the strategy's mean metric;
  NaN when that metric is below the baseline's first point or above its best point: the curve is never
  extrapolated. ``saved = 100 * (1 - used / needed)`` percent. The per-strategy figure is the mean over the
  cycles t >= 1 where it is defined; cycle 0 is left out because every strategy trains on the same initial
  set there, so it says nothing about the strategy. Computed on mean curves, it is NaN wherever the strategy's
  mean is above the baseline's best point.
* **Paired labels saved, with 95% intervals** (:mod:`activedet.savings`): the same quantity per seed against the
  baseline run of the same seed, with a flagged lower bound instead of NaN above the baseline's curve, then the
  mean over seeds with a Student-t interval; ``write_report`` also writes them to ``savings.csv``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .al.rundir import RunDir
from .atomic import atomic_write
from .plots import plot
from .savings import (
    Interval,
    labels_needed,
    markdown_table,
    mean_interval,
    normalised_auc,
    pair_with_baseline,
    paired_tables,
    per_seed_overall,
    savings_csv,
)

__all__ = [
    "Run",
    "StrategySummary",
    "Summary",
    "load_runs",
    "summarize",
    "format_table",
    "plot",
    "write_report",
    "strategy_label",
    "label_extras",
    "normalised_auc",
    "labels_needed",
]

_REQUIRED_FIELDS = ("cycle", "labelled_images", "labelled_boxes", "metrics")


@dataclass(eq=False)
class Run:
    """One active-learning run: one strategy variant, one seed, C completed cycles.

    Attributes:
        path: the run directory.
        strategy: the strategy label (see :func:`strategy_label`).
        seed: the run's seed.
        cycles: ``int64[C]``, ``0 .. C-1``.
        labelled_images: ``float64[C]`` labelled images the cycle's model was trained on.
        labelled_boxes: ``float64[C]`` boxes in those images.
        metrics: metric name -> ``float64[C]``; NaN where a cycle reported null or lacked the key.
    """

    path: Path
    strategy: str
    seed: int
    cycles: np.ndarray
    labelled_images: np.ndarray
    labelled_boxes: np.ndarray
    metrics: dict[str, np.ndarray]


def strategy_label(strategy: str, options: dict | None = None) -> str:
    """``strategy`` plus ``[key=value,...]`` for the given options, keys sorted; the bare name when none.

    Strings are shown as is, other values as compact JSON: ``strategy_label("entropy", {"top_k": 5,
    "aggregation": "sum"}) == "entropy[aggregation=sum,top_k=5]"``.
    """
    if not options:
        return strategy
    shown = (
        f"{key}={value if isinstance(value, str) else json.dumps(value, separators=(',', ':'), sort_keys=True)}"
        for key, value in sorted(options.items())
    )
    return f"{strategy}[{','.join(shown)}]"


def load_runs(run_dirs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Run]:
    """Load runs from run directories and/or parent directories searched recursively for ``metrics.jsonl``.

    A path holding ``metrics.jsonl`` is a run; any other directory is searched below for run directories.
    Runs are returned in path order, each loaded once. Raises ``FileNotFoundError`` for a missing path, a
    directory with no run below it, or a run without ``config.json``; ``ValueError`` for malformed files and
    for two runs with the same strategy label and seed.
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    found: dict[Path, Path] = {}
    for given in run_dirs:
        for run_dir in _find_run_dirs(Path(given)):
            found.setdefault(run_dir.resolve(), run_dir)
    if not found:
        raise ValueError(
            "load_runs got no paths; pass run directories (each with metrics.jsonl and config.json) "
            "or a directory containing them"
        )
    runs = [_load_run(run_dir) for run_dir in found.values()]
    _check_unique(runs)
    return runs


def _find_run_dirs(path: Path) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"run directory {path} does not exist")
    log = RunDir(path).metrics_log
    if log.is_file():
        return [path]
    found = sorted(p.parent for p in path.rglob(log.name) if p.is_file()) if path.is_dir() else []
    if not found:
        raise FileNotFoundError(
            f"{path} has no metrics.jsonl and no subdirectory with one; pass a run directory written by the "
            "active-learning loop (RUN/metrics.jsonl and RUN/config.json) or a directory containing runs"
        )
    return found


def _load_run(run_dir: Path) -> Run:
    strategy, options, seed, extras = _read_config(run_dir)
    records = _read_records(RunDir(run_dir).metrics_log, strategy, seed)
    keys = sorted({key for record in records for key in record["metrics"]})
    column = lambda name: np.array([float(r[name]) for r in records], np.float64)
    # None (null or absent key) becomes NaN in a float64 array.
    metrics = {key: np.array([r["metrics"].get(key) for r in records], np.float64) for key in keys}
    return Run(
        run_dir,
        strategy_label(strategy, options) + extras,
        seed,
        np.arange(len(records), dtype=np.int64),
        column("labelled_images"),
        column("labelled_boxes"),
        metrics,
    )


def _read_config(run_dir: Path) -> tuple[str, dict, int, str]:
    path = RunDir(run_dir).config
    if not path.is_file():
        raise FileNotFoundError(
            f"run {run_dir} has metrics.jsonl but no config.json; the report needs the run's "
            "'strategy' and 'seed' from the config.json the active-learning loop writes"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object. Got {type(config).__name__} instead.")
    strategy, seed, options = config.get("strategy"), config.get("seed"), config.get("strategy_options")
    if isinstance(strategy, list) and strategy and all(isinstance(s, str) and s for s in strategy):
        strategy = "+".join(strategy)  # a composition of criteria, named as the loop names it
    if not isinstance(strategy, str) or not strategy:
        raise ValueError(f"'strategy' in {path} must be a non-empty string. Got {strategy!r} instead.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"'seed' in {path} must be an int. Got {seed!r} instead.")
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"'strategy_options' in {path} must be an object or absent. Got {options!r} instead.")
    return strategy, options or {}, seed, label_extras(config)


def label_extras(config: dict) -> str:
    """The loop settings of a run's config that change what an arm is, shown after its strategy label:
    ``" +pseudo[...]"`` (pseudo labels), ``" +ssl[...]"`` (teacher-student semi-supervision, its options but
    ``method``), ``" +fine-tune"`` (warm start)."""
    extras = strategy_label(" +pseudo", config["pseudo_labels"]) if config.get("pseudo_labels") is not None else ""
    ssl = config.get("semi_supervised")
    if ssl is not None:
        extras += strategy_label(
            " +ssl", {k: v for k, v in ssl.items() if k != "method"} if isinstance(ssl, dict) else None
        )
    extras += " +fine-tune" if config.get("warm_start") else ""
    return extras


def _read_records(path: Path, strategy: str, seed: int) -> list[dict]:
    records: list[dict] = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}, line {line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); "
                    "fix or delete the line (a run killed mid-write leaves a partial last line)"
                ) from exc
            _check_record(record, where, len(records), strategy, seed)
            records.append(record)
    return records


def _check_record(record, where: str, expected_cycle: int, strategy: str, seed: int) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object. Got {type(record).__name__} instead.")
    missing = [name for name in _REQUIRED_FIELDS if name not in record]
    if missing:
        raise ValueError(
            f"{where}: missing field(s) {', '.join(missing)}; each line needs {', '.join(_REQUIRED_FIELDS)}"
        )
    if record["cycle"] != expected_cycle:
        raise ValueError(
            f"{where}: expected cycle {expected_cycle} (cycles must be 0, 1, 2, ... in order, "
            f"each once). Got {record['cycle']!r} instead."
        )
    for name in ("labelled_images", "labelled_boxes"):
        if isinstance(record[name], bool) or not isinstance(record[name], (int, float)):
            raise ValueError(f"{where}: '{name}' must be a number. Got {record[name]!r} instead.")
    if not isinstance(record["metrics"], dict):
        raise ValueError(f"{where}: 'metrics' must be an object. Got {record['metrics']!r} instead.")
    for key, value in record["metrics"].items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{where}: metric {key!r} must be a number or null. Got {value!r} instead.")
    for name, expected in (("strategy", strategy), ("seed", seed)):
        if name in record and record[name] != expected:
            raise ValueError(
                f"{where}: '{name}' is {record[name]!r} but config.json says {expected!r}; "
                "the run directory mixes two runs"
            )


def _check_unique(runs: list[Run]) -> None:
    seen: dict[tuple[str, int], Path] = {}
    for run in runs:
        other = seen.setdefault((run.strategy, run.seed), run.path)
        if other != run.path:
            raise ValueError(
                f"runs {other} and {run.path} are both strategy {run.strategy!r} with seed {run.seed}; "
                "a paired comparison needs one run per (strategy, seed): pass only one of them"
            )


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
        metric_per_seed: ``float64[S, C]`` the metric of each seed's run per cycle.
        paired_difference: ``float64[S]`` per seed, the metric at the last common cycle minus the baseline's run
            of the same seed at the same cycle (the paired comparison that shared initial sets allow; NaN where
            the baseline has no run of that seed).
        images_per_seed, boxes_per_seed: ``float64[S, C]`` each seed's labelled counts per cycle.
        images_saved_per_seed, boxes_saved_per_seed: ``float64[S, C]`` percent saved against the baseline run
            of the same seed (:mod:`activedet.savings`); images_saved_bound, boxes_saved_bound: ``bool[S, C]``
            True where that value is a lower bound (the metric is above the seed's whole baseline curve).
        metric_difference_per_seed: ``float64[S, C]`` metric minus the same seed's baseline run, per cycle.
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
    metric_per_seed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    paired_difference: np.ndarray = field(default_factory=lambda: np.zeros(0))
    images_per_seed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    boxes_per_seed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    images_saved_per_seed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    boxes_saved_per_seed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    images_saved_bound: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    boxes_saved_bound: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    metric_difference_per_seed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def paired_saved(self, axis: str) -> list[Interval]:
        """Per cycle: mean over seeds of the paired percent saved (``axis`` "images" or "boxes"), 95% CI."""
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
        saved = lambda needed, pct, mean: {"needed_by_baseline": needed, "saved_pct": pct, "mean_saved_pct": mean}
        return _jsonable(
            {
                "seeds": self.seeds,
                "runs": [str(p) for p in self.paths],
                "cycles": self.cycles,
                "metric": {"mean": self.metric_mean, "std": self.metric_std},
                "labelled_images": {"mean": self.images_mean, "std": self.images_std},
                "labelled_boxes": {"mean": self.boxes_mean, "std": self.boxes_std},
                "auc_images": auc(self.auc_images, self.auc_images_mean_std),
                "auc_boxes": auc(self.auc_boxes, self.auc_boxes_mean_std),
                "final_metric": {
                    **dict(zip(("mean", "std"), self.final_mean_std)),
                    "per_seed": self.metric_per_seed[:, -1],
                    "paired_difference": self.paired_difference,
                    "paired_difference_ci": self.paired_difference_interval.to_dict(),
                },
                "paired_savings": {axis: self._paired_dict(axis) for axis in ("images", "boxes")},
                "labels_saved": {
                    "images": saved(self.images_needed, self.images_saved_pct, self.mean_images_saved_pct),
                    "boxes": saved(self.boxes_needed, self.boxes_saved_pct, self.mean_boxes_saved_pct),
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
    """

    metric: str
    baseline: str | None
    strategies: dict[str, StrategySummary]
    warnings: list[str]

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
                "null outside the baseline's curve; mean over cycles >= 1",
                "paired_savings": "per seed against the baseline run of the same seed, "
                "100 * (1 - used / needed); mean over seeds with a 95% Student-t interval (null for one seed); "
                "bound: true when some seed's metric is above its whole baseline curve, where needed > the "
                "baseline's last count, so the value is a lower bound; overall: per-seed mean over cycles >= 1",
            },
            "strategies": {label: s.to_dict() for label, s in self.strategies.items()},
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


def summarize(runs: Iterable[Run], *, metric: str = "voc/mAP_area", baseline: str | None = "random") -> Summary:
    """Group runs by strategy label and compute curves, AUCs and labels saved (see the module docstring).

    ``baseline`` is the label whose curve defines "labels needed"; ``None`` skips labels saved. A baseline
    that is not among the runs gives a warning and NaN savings. Raises ``ValueError`` for no runs or a
    ``metric`` that the runs do not report (the message lists the available keys).
    """
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
    strategies = {label: _summarize_strategy(label, groups[label], metric, warnings) for label in sorted(groups)}
    _warn_unpaired(strategies, warnings)
    if baseline is not None and baseline not in strategies:
        warnings.append(
            f"baseline {baseline!r} is not among the strategies ({', '.join(strategies)}); "
            "labels saved are not computed"
        )
    elif baseline is not None:
        for s in strategies.values():
            _labels_saved(s, strategies[baseline])
            _paired_difference(s, strategies[baseline])
            pair_with_baseline(s, strategies[baseline], warnings)
    return Summary(metric, baseline, strategies, warnings)


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


def _summarize_strategy(label: str, runs: list[Run], metric: str, warnings: list[str]) -> StrategySummary:
    runs = sorted(runs, key=lambda run: run.seed)
    n = min(len(run.cycles) for run in runs)
    if any(len(run.cycles) != n for run in runs):
        lengths = ", ".join(f"{len(run.cycles)} (seed {run.seed})" for run in runs)
        warnings.append(f"{label}: runs have {lengths} cycles; truncated to the {n} common cycles 0-{n - 1}")
    values = np.stack([run.metrics[metric][:n] for run in runs])  # [S, C]
    images = np.stack([run.labelled_images[:n] for run in runs])
    boxes = np.stack([run.labelled_boxes[:n] for run in runs])
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
        metric_per_seed=values.astype(np.float64),
        paired_difference=np.full(len(runs), np.nan),
        images_per_seed=images,
        boxes_per_seed=boxes,
        images_saved_per_seed=np.full((len(runs), n), np.nan),
        boxes_saved_per_seed=np.full((len(runs), n), np.nan),
        images_saved_bound=np.zeros((len(runs), n), bool),
        boxes_saved_bound=np.zeros((len(runs), n), bool),
        metric_difference_per_seed=np.full((len(runs), n), np.nan),
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


def _labels_saved(s: StrategySummary, base: StrategySummary) -> None:
    for axis in ("images", "boxes"):
        used, base_x = getattr(s, f"{axis}_mean"), getattr(base, f"{axis}_mean")
        needed = np.array([labels_needed(base_x, base.metric_mean, m) for m in s.metric_mean])
        with np.errstate(divide="ignore", invalid="ignore"):
            saved = np.where(needed > 0, 100.0 * (1.0 - used / needed), np.nan)
        setattr(s, f"{axis}_needed", needed)
        setattr(s, f"{axis}_saved_pct", saved)


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
    cycle_header = [
        "strategy",
        "cycle",
        "labelled images",
        "labelled boxes",
        m,
        f"images saved vs {base}",
        f"boxes saved vs {base}",
    ]
    cycle_rows = [
        [
            label,
            str(t),
            _count(s.images_mean[t], s.images_std[t]),
            _count(s.boxes_mean[t], s.boxes_std[t]),
            _pm(s.metric_mean[t], s.metric_std[t]),
            _pct(s.images_saved_pct[t]),
            _pct(s.boxes_saved_pct[t]),
        ]
        for label, s in summary.strategies.items()
        for t in s.cycles
    ]
    saved = (
        f"Labels saved: 100 * (1 - used / needed by `{base}` to reach the same mean metric), mean over "
        f"cycles >= 1; n/a outside {base}'s curve."
        if summary.baseline
        else "Labels saved: no baseline."
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


def write_report(
    run_dirs, out_dir: str | os.PathLike, *, metric: str = "voc/mAP_area", baseline: str | None = "random"
) -> Summary:
    """Load, summarise and write ``summary.json``, ``savings.csv``, ``report.md`` and the plots into ``out_dir``.

    ``summary.json`` is strict JSON (NaN written as null). Every file is written atomically.
    """
    summary = summarize(load_runs(run_dirs), metric=metric, baseline=baseline)
    out_dir = Path(out_dir)
    pngs = plot(summary, out_dir)
    text = json.dumps(summary.to_dict(), indent=2, allow_nan=False) + "\n"
    atomic_write(out_dir / "summary.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    csv_text = savings_csv(summary)
    atomic_write(out_dir / "savings.csv", lambda tmp: tmp.write_text(csv_text, encoding="utf-8"))
    images = "".join(f"\n![{png.stem}]({png.name})\n" for png in pngs)
    markdown = f"# Active-learning report: {metric}\n\n{format_table(summary)}{images}"
    atomic_write(out_dir / "report.md", lambda tmp: tmp.write_text(markdown, encoding="utf-8"))
    return summary
