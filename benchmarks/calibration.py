"""Replay recorded batches with and without calibration: how far each labelled batch's actual boxes and cost were
from the figures predicted at its selection, raw and scaled by the run's earlier batches (``cost_calibration``).

Usage (prints measured numbers; not a test):

    python benchmarks/calibration.py runs/bench3/runs/*predicted*/seed*

Each run directory needs a cost model's records (any run made by the CLI has them): the ledger's picks with
``predicted_boxes``/``predicted_cost`` and, once labelled, ``boxes``/``cost``. A batch is scaled by
:func:`activedet.al.cost.calibration` over the picks labelled before it, as the selection would have spent them;
the batch itself is the one the run bought (a run that spent calibrated figures buys slightly different images).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from activedet.al.cost import calibration
from activedet.al.ledger import Ledger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    args = parser.parse_args()
    ratios: dict[str, tuple[list[float], list[float]]] = {"boxes": ([], []), "cost": ([], [])}
    for run in args.run_dirs:
        picks = Ledger.load(run / "ledger.npz").picks
        for cycle in sorted({int(p["cycle"]) for p in picks}):
            batch = [p for p in picks if p["cycle"] == cycle]
            earlier = [p for p in picks if p["cycle"] < cycle]
            line = f"{run} cycle {cycle} ({len(batch)} images):"
            for unit in ratios:
                factor = calibration(earlier, unit)
                raw = calibration(batch, unit)  # the batch's own actual / predicted
                calibrated = raw / factor
                line += f"  {unit} actual/predicted {raw:.3f}, calibrated (x{factor:.3f}) {calibrated:.3f}"
                if earlier:
                    ratios[unit][0].append(raw)
                    ratios[unit][1].append(calibrated)
            print(line)
    for unit, (raw, calibrated) in ratios.items():
        if not raw:
            continue
        raw_a, cal_a = np.array(raw), np.array(calibrated)
        print(
            f"{unit}, {len(raw)} batches with an earlier one: actual/predicted {raw_a.mean():.3f} "
            f"({raw_a.min():.3f} to {raw_a.max():.3f}, mean |error| {100 * np.abs(raw_a - 1).mean():.1f}%); "
            f"calibrated {cal_a.mean():.3f} ({cal_a.min():.3f} to {cal_a.max():.3f}, "
            f"mean |error| {100 * np.abs(cal_a - 1).mean():.1f}%)"
        )


if __name__ == "__main__":
    main()
