"""Continue a recorded `random` run by one cycle without a model: write the labelled set its next selection makes.

`random` ignores the detector: at cycle ``t`` the loop gives its selection (``random_select``) the unlabelled images
in index order and a generator seeded ``derive_seed(seed, t, "select")``, and labels the first ``budget`` images it
yields. So the set a run would reach one cycle past its record is known without training the model the record
does not keep, and ``activedet retrain CONFIG DIR --cycle T+1`` can train it under any recipe.
tests/test_results.py checks that this gives every cycle of the recorded `random` runs.

Usage (writes files; not a test):

    python benchmarks/random_next.py benchmarks/results/bench3-people/random/seed0 runs/random900/seed0

writes the run's ``config.json`` and its next cycle's set ``X_L_<t+1>.npy`` (``t`` the last cycle there) to the
destination, which can be given as the source in turn (or be the source: the next set is added beside its own).
"""

from __future__ import annotations

import argparse
import json
import shutil
from itertools import islice

import numpy as np

from activedet.al.plan import derive_seed
from activedet.al.rundir import RunDir
from activedet.strategies.base import ScoredPool, SelectionInput
from activedet.strategies.random import random_select


def random_next(labelled: np.ndarray, *, pool_size: int, seed: int, cycle: int, budget: int) -> np.ndarray:
    """The labelled set (sorted pool indices) after `random`'s selection at ``cycle`` from ``labelled``."""
    unlabelled = np.setdiff1d(np.arange(pool_size), labelled)
    zeros = np.zeros(len(unlabelled))
    inputs = SelectionInput(
        ScoredPool.from_lists(unlabelled, zeros, zeros),
        None,
        budget,
        np.random.default_rng(derive_seed(seed, cycle, "select")),
    )
    picks = np.fromiter(islice(random_select(inputs), budget), np.int64)
    return np.sort(np.concatenate([labelled, picks]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a recorded `random` run (config.json and X_L_<t>.npy)")
    parser.add_argument("dest", help="where to write its config.json and the next cycle's set")
    parser.add_argument("--pool-size", type=int, default=4000, help="images in the pool (the bench data: 4000)")
    args = parser.parse_args(argv)
    source, target = RunDir(args.run_dir), RunDir(args.dest)
    cycles = [int(path.stem.removeprefix("X_L_")) for path in source.root.glob("X_L_*.npy")]
    if not cycles:
        raise SystemExit(f"{source.root}: no labelled set X_L_<t>.npy; expected a recorded `random` run")
    config = json.loads(source.config.read_text())
    if config["strategy"] != "random" or config["budget_unit"] != "images":
        raise SystemExit(
            f"{source.config}: strategy {config['strategy']!r}, unit {config['budget_unit']!r}; "
            "expected a `random` run with an image budget"
        )
    cycle = max(cycles)
    target.root.mkdir(parents=True, exist_ok=True)
    if target.config.resolve() != source.config.resolve():  # the destination may be the source: the set is added
        shutil.copyfile(source.config, target.config)
    labelled = np.load(source.labelled_indices(cycle))
    after = random_next(labelled, pool_size=args.pool_size, seed=config["seed"], cycle=cycle, budget=config["budget"])
    np.save(target.labelled_indices(cycle + 1), after)
    print(f"{target.labelled_indices(cycle + 1)}: {len(after)} images (cycle {cycle + 1})")


if __name__ == "__main__":
    main()
