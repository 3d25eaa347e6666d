"""Reports over active-learning runs: mean ± std learning curves, area under the curve, labels saved.

A run directory is what the active-learning loop writes::

    RUN/config.json    the resolved config: "strategy" (str; a list of criteria is shown "a+b"), "seed" (int),
                       optional "strategy_options" (dict)
    RUN/metrics.jsonl  one JSON object per completed cycle, cycles 0, 1, 2, ... in order:
        {"cycle": 0, "labelled_images": 40, "labelled_boxes": 131,
         "metrics": {"voc/mAP_area": 0.41, ...}, "seconds": {...}, "strategy": ..., "seed": ...}
        and, for runs with a labelling cost model, "labelled_cost": 612.0 (:mod:`activedet.al.cost`)

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
* **Paired labels saved, with 95% intervals** (:mod:`activedet.report.savings`): the same quantity per seed against the
  baseline run of the same seed, on every cycle that run completed (even where other seeds' baseline runs
  stopped earlier), with a flagged lower bound instead of NaN above that run's curve, then the
  mean over seeds with a Student-t interval; ``write_report`` also writes them to ``savings.csv``. Runs that
  record ``labelled_cost`` get the same in labelling cost ("cost saved"), and a labelled-cost column per cycle.

The package: :mod:`~activedet.report.runs` reads run directories into :class:`Run` objects,
:mod:`~activedet.report.summary` computes the :class:`Summary`, :mod:`~activedet.report.tables` formats it as
Markdown, and :func:`write_report` (here) writes the report's files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic import atomic_write
from .plots import plot
from .runs import Run, label_extras, load_runs, strategy_label
from .savings import labels_needed, normalised_auc, savings_csv
from .summary import StrategySummary, Summary, summarize
from .tables import format_table

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


def write_report(
    run_dirs,
    out_dir: str | os.PathLike,
    *,
    metric: str = "voc/mAP_area",
    baseline: str | None = "random",
    cycles: int | None = None,
) -> Summary:
    """Load, summarise (:func:`summarize`, ``cycles`` included) and write ``summary.json``, ``savings.csv``,
    ``report.md`` and the plots into ``out_dir``.

    ``summary.json`` is strict JSON (NaN written as null). Every file is written atomically.
    """
    summary = summarize(load_runs(run_dirs), metric=metric, baseline=baseline, cycles=cycles)
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
