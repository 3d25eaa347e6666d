"""Labels saved by the same selections under several training draws, and their mean over the draws.

Usage (prints measured numbers; not a test):

    python benchmarks/draws.py --draw benchmarks/results/bench3-people --draw benchmarks/results/bench3-again \
        --cycles 3

Each ``--draw`` is one draw of the same runs, given as one or more folders (as ``activedet report`` takes them): a
bench's runs (or their record) and the run directories that ``benchmarks/retrain_selection.py --out`` wrote from
them under another ``--salt``. Each is summarised as
``activedet report`` does (``--cycles``, the ``random`` runs of the same draw as the baseline); then, per seed, the
saving is averaged over the draws and the interval is taken over the seeds. The labelled sets are the same in every
draw, so the average takes part of one training's noise out of the figure without counting a seed twice.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from activedet.report.runs import load_runs
from activedet.report.summary import summarize
from activedet.savings import Interval, mean_interval

AXES = ("images", "boxes")


def draw_savings(draws: list[Path | list[Path]], *, cycles: int, metric: str = "voc/mAP_area") -> dict[str, dict]:
    """Per arm (but the baseline): ``seeds`` and, per axis, ``saved`` ``[draws, seeds, cycles]`` and ``bound``.

    Each draw is a folder or a list of folders holding its runs, its ``random`` runs among them."""
    summaries = [summarize(load_runs(draw), metric=metric, cycles=cycles) for draw in draws]
    arms = {}
    for label, first in summaries[0].strategies.items():
        if label == summaries[0].baseline:
            continue
        arm, runs = {"seeds": list(first.seeds)}, []
        for summary, draw in zip(summaries, draws, strict=True):
            runs.append(summary.strategies.get(label))
            if runs[-1] is None or list(runs[-1].seeds) != arm["seeds"]:
                raise SystemExit(
                    f"{_named(draw)}: expected the arm {label!r} with seeds {arm['seeds']}; run the same runs"
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


def _named(draw: Path | list[Path]) -> str:
    return " + ".join(map(str, draw)) if isinstance(draw, list) else str(draw)


def _cell(interval: Interval) -> str:
    mark = ">= " if interval.bound else ""
    return f"{mark}{interval.mean:.1f}% [{interval.low:.1f}, {interval.high:.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--draw",
        dest="draws",
        nargs="+",
        type=Path,
        action="append",
        required=True,
        help="the folders holding one draw's runs (a bench's runs or records); once per draw",
    )
    parser.add_argument("--cycles", type=int, required=True, help="compare cycles 0 to N, as activedet report")
    parser.add_argument("--metric", default="voc/mAP_area")
    args = parser.parse_args()
    for d, draw in enumerate(args.draws, 1):
        print(f"draw {d}: {_named(draw)}")
    for label, arm in draw_savings(args.draws, cycles=args.cycles, metric=args.metric).items():
        print(f"{label} (seeds {', '.join(map(str, arm['seeds']))})")
        for cycle in range(1, args.cycles + 1):
            for axis in AXES:
                per_draw = "; ".join(
                    f"draw {d + 1} {_cell(mean_interval(arm[axis][d, :, cycle], arm[f'{axis}_bound'][d, :, cycle]))}"
                    for d in range(len(args.draws))
                )
                per_seed = ", ".join(f"{v:.1f}" for v in arm[axis][:, :, cycle].mean(axis=0))
                print(
                    f"  cycle {cycle} {axis} saved: {per_draw}; mean of the draws {_cell(over_draws(arm, axis, cycle))}"
                    f" (per seed {per_seed})"
                )


if __name__ == "__main__":
    main()
