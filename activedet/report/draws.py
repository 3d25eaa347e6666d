"""Labels saved by the same selections under several training draws, and each seed's mean over the draws.

One training per cycle moves a run's mAP, and so its labels saved, by about as much as the interval over seeds
(:mod:`activedet.retrain` trains the same labelled sets again under another draw). A draw is a set of runs as
``activedet report`` reads them: a bench's runs (or their record), or the run directories ``activedet retrain``
wrote from them; each holds its own ``random`` runs, and each arm is paired with the baseline of its own draw.
Then, per seed, the saving is averaged over the draws and the interval is taken over the seeds: the labelled sets
are the same in every draw, so a seed counts once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from .runs import load_runs
from .savings import Interval, interval_cell, mean_interval
from .summary import summarize

__all__ = ["AXES", "draw_savings", "over_draws", "format_draws"]

AXES = ("images", "boxes")

Draw = str | os.PathLike | Iterable[str | os.PathLike]


def _named(draw: Draw) -> str:
    return str(draw) if isinstance(draw, (str, os.PathLike)) else " + ".join(map(str, draw))


def draw_savings(
    draws: list[Draw], *, cycles: int, metric: str = "voc/mAP_area", baseline: str = "random"
) -> dict[str, dict]:
    """Per arm of the first draw (but the baseline): ``seeds`` and, per axis, ``<axis>`` and ``<axis>_bound``
    (``[draws, seeds, cycles]``: each draw's saving per seed and cycle, and whether it is a lower bound).

    Each draw is a folder or a list of folders holding its runs, its baseline runs among them. Raises
    ``ValueError`` naming the draw that lacks an arm of the first or holds other seeds of it."""
    if len(draws) < 2:
        raise ValueError(f"draws: expected two or more draws of the same runs, got {len(draws)}")
    summaries = [summarize(load_runs(draw), metric=metric, baseline=baseline, cycles=cycles) for draw in draws]
    arms = {}
    for label, first in summaries[0].strategies.items():
        if label == summaries[0].baseline:
            continue
        arm, runs = {"seeds": list(first.seeds)}, []
        for summary, draw in zip(summaries, draws, strict=True):
            runs.append(summary.strategies.get(label))
            if runs[-1] is None or list(runs[-1].seeds) != arm["seeds"]:
                raise ValueError(
                    f"{_named(draw)}: expected the arm {label!r} with seeds {arm['seeds']}, as in the first draw; "
                    "give each draw the same runs trained again (activedet retrain)"
                )
        for axis in AXES:
            arm[axis] = np.stack([getattr(s, f"{axis}_saved_per_seed") for s in runs])
            arm[f"{axis}_bound"] = np.stack([getattr(s, f"{axis}_saved_bound") for s in runs])
        arms[label] = arm
    return arms


def over_draws(arm: dict, axis: str, cycle: int) -> Interval:
    """The mean over the seeds of each seed's saving averaged over the draws, with its Student-t interval."""
    saved, bound = arm[axis][:, :, cycle], arm[f"{axis}_bound"][:, :, cycle]
    return mean_interval(saved.mean(axis=0), bound.any(axis=0))


def format_draws(draws: list[Draw], arms: dict[str, dict], *, cycles: int) -> str:
    """The text ``activedet draws`` prints: per arm, cycle and axis, each draw's saving and the mean of the
    draws, as the report writes an interval (``≥``: a lower bound; ``n=``: fewer seeds with a defined value)."""
    lines = [f"draw {d}: {_named(draw)}" for d, draw in enumerate(draws, 1)]
    for label, arm in arms.items():
        seeds = len(arm["seeds"])
        lines.append(f"{label} (seeds {', '.join(map(str, arm['seeds']))})")
        for cycle in range(1, cycles + 1):
            for axis in AXES:
                per_draw = "; ".join(
                    f"draw {d + 1} "
                    + interval_cell(mean_interval(arm[axis][d, :, cycle], arm[f"{axis}_bound"][d, :, cycle]), seeds)
                    for d in range(len(draws))
                )
                per_seed = ", ".join(f"{v:.1f}" for v in arm[axis][:, :, cycle].mean(axis=0))
                lines.append(
                    f"  cycle {cycle} {axis} saved: {per_draw}; mean of the draws "
                    f"{interval_cell(over_draws(arm, axis, cycle), seeds)}"
                    f" (per seed {per_seed})"
                )
    return "\n".join(lines)
