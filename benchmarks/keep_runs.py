"""Copy what a benchmark's runs measured into a small record that can be committed: every figure in the README
that a record holds is recomputed from it by ``activedet report`` (and checked by tests/test_results.py).

Usage (writes files; not a test):

    python benchmarks/keep_runs.py runs/bench3c/runs benchmarks/results/bench3-people

For each run directory below SOURCE (one with ``metrics.jsonl``) it writes ``DEST/<arm folder>/<seed folder>/``:
``config.json`` (paths below ``--root`` made relative to it; default: the current directory), ``metrics.jsonl``,
``timing.jsonl`` (each cycle's seconds and where its model was trained) and the labelled sets ``X_L_<t>.npy``
(what ``activedet retrain`` trains again); with ``--selections``, each cycle's ``cycles/<t>/selection.json`` too
(the picks with their predicted boxes and cost, and the calibration factor spent; written compact). Models, caches,
the ledger and the pool fingerprint stay behind: a record reports and retrains, it does not resume.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from activedet.al.rundir import RunDir


def _relative(value, roots: list[Path]):
    for root in roots:
        if isinstance(value, str) and os.path.isabs(value) and Path(value).is_relative_to(root):
            return Path(value).relative_to(root).as_posix() or "."
    return value


def keep_run(run_dir: Path, dest: Path, roots: list[Path], *, selections: bool = False) -> Path:
    """Copy one run's record to ``dest`` (module docstring); returns ``dest``."""
    source, target = RunDir(run_dir), RunDir(dest)
    target.root.mkdir(parents=True, exist_ok=True)
    config = json.loads(source.config.read_text())
    config = {key: _relative(value, roots) for key, value in config.items()}
    target.config.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(source.metrics_log, target.metrics_log)
    if source.timing_log.is_file():  # each cycle's seconds and where its model was trained
        shutil.copyfile(source.timing_log, target.timing_log)
    for t in range(len(source.metric_records())):
        shutil.copyfile(source.labelled_indices(t), target.labelled_indices(t))
        selection = source.cycle(t).selection
        if selections and selection.is_file():
            target.cycle(t).selection.parent.mkdir(parents=True, exist_ok=True)
            compact = json.dumps(json.loads(selection.read_text()), separators=(",", ":"), sort_keys=True)
            target.cycle(t).selection.write_text(compact + "\n")
    return target.root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a folder of runs (e.g. a bench's OUT/runs)")
    parser.add_argument("dest", type=Path)
    parser.add_argument(
        "--root", type=Path, action="append", help="paths in config.json below it are made relative to it (repeatable)"
    )
    parser.add_argument("--selections", action="store_true", help="keep each cycle's selection.json")
    args = parser.parse_args()
    runs = sorted(log.parent for log in args.source.rglob("metrics.jsonl"))
    if not runs:
        raise SystemExit(f"{args.source}: no run directory (one with metrics.jsonl) below it")
    roots = [root.resolve() for root in args.root or [Path.cwd()]]
    for run in runs:
        kept = keep_run(run, args.dest / run.relative_to(args.source), roots, selections=args.selections)
        print(f"{run} -> {kept}")


if __name__ == "__main__":
    main()
