"""Train another recipe on the labelled set a run reached, and evaluate it: separates what a method selected from
how it trained (e.g. MI-AOD's selections trained as a plain RetinaNet).

Usage (prints measured numbers; not a test):

    python benchmarks/retrain_selection.py configs/bench_retinanet.yaml runs/bench-miaod/runs/miaod/seed0 --cycle 1

The config gives the data, detector and training recipe; the run directory gives ``X_L_{cycle}.npy`` (pool indices
of the same pool). Training is seeded as the loop seeds that cycle (``derive_seed(seed, cycle, "train")`` with the
run's seed), so retraining a run's set with its own config reproduces its model; ``--salt other`` draws another
initialisation and batch order (``derive_seed(seed, cycle, "other")``), to tell what a labelled set is worth from
what one training draw made of it:

    python benchmarks/retrain_selection.py configs/bench.yaml runs/a/seed0 runs/b/seed0 --cycle 3 --salt again

With ``--out DIR`` every cycle of each run is retrained and written as a run directory that ``activedet report``
reads (``DIR/<arm folder>/<seed folder>/``: the run's ``config.json`` and a ``metrics.jsonl`` whose records keep
the labelled counts and cost and carry the retrained metrics, with ``retrained: {config, salt, seconds}``), so the
paired savings under another training draw come from the report as for the runs themselves:

    python benchmarks/retrain_selection.py configs/bench.yaml runs/bench3/runs/*/seed* --salt again --out runs/again
    activedet report runs/again --out runs/again/report

``--last-cycle N`` stops each run at cycle N (random's curve needs only reach the other arms' last metric).

A cycle already in ``DIR`` is kept (a stopped retrain continues; run two processes on different runs to use two
cores); a labelled set met twice (the same images in the same order, seed and cycle: the cycle 0 that a bench's
arms share) is trained once, also when one of them was kept: pass a kept run before the ones that share its sets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from activedet.al.plan import derive_seed
from activedet.al.rundir import RunDir
from activedet.atomic import atomic_write_text
from activedet.config import load_config
from activedet.engine.distributed import resolve_device
from activedet.engine.inference import predict_dataset
from activedet.evaluation import evaluate
from activedet.workflows import build_model, load_split


class Retrainer:
    """Trains and evaluates labelled sets of one pool with one config's recipe; remembers what it trained."""

    def __init__(self, config: str, salt: str):
        self.config, self.salt = config, salt
        self.cfg = load_config(config)
        self.pool, self.test = load_split(self.cfg, "train"), load_split(self.cfg, "test")
        self.device = resolve_device(self.cfg.device)
        self._done: dict[tuple[int, int, str], tuple[dict, float]] = {}

    def __call__(self, labelled: np.ndarray, seed: int, cycle: int) -> tuple[dict, float]:
        """The test metrics of a model trained on ``labelled`` (pool indices), and the training seconds."""
        key = self._key(labelled, seed, cycle)
        if key not in self._done:
            self._done[key] = self._train(labelled, seed, cycle)
        return self._done[key]

    def remember(self, labelled: np.ndarray, seed: int, cycle: int, metrics: dict, seconds: float) -> None:
        """Take a set trained earlier (a cycle kept in ``--out``) as trained: another run's same set reuses it."""
        self._done.setdefault(self._key(labelled, seed, cycle), (metrics, seconds))

    @staticmethod
    def _key(labelled: np.ndarray, seed: int, cycle: int) -> tuple[int, int, str]:
        return seed, cycle, hashlib.sha256(np.asarray(labelled, np.int64).tobytes()).hexdigest()

    def _train(self, labelled: np.ndarray, seed: int, cycle: int) -> tuple[dict, float]:
        cfg, pool = self.cfg, self.pool
        torch.manual_seed(seed if self.salt == "train" else derive_seed(seed, cycle, f"{self.salt}/init"))
        model = build_model(cfg, pool.num_classes)
        options = replace(cfg.train_options(), seed=derive_seed(seed, cycle, self.salt))
        started = time.perf_counter()
        cfg.trainer()(
            model,
            pool.subset(labelled),
            unlabelled=pool.subset(np.setdiff1d(np.arange(len(pool)), labelled)),
            options=options,
            device=self.device,
            progress=False,
        )
        seconds = time.perf_counter() - started
        predictions = predict_dataset(model, self.test, device=self.device, batch_size=cfg.eval_batch_size)
        return evaluate(self.test, predictions, metrics=tuple(cfg.metrics)), seconds


def _seed(run_dir: Path) -> int:
    return json.loads(RunDir(run_dir).config.read_text())["seed"]


def print_cycle(retrain: Retrainer, run_dir: Path, cycle: int, metric: str) -> None:
    labelled = np.load(RunDir(run_dir).labelled_indices(cycle))
    metrics, seconds = retrain(labelled, _seed(run_dir), cycle)
    boxes = sum(retrain.pool.records[i].num_boxes for i in labelled)
    print(
        f"{run_dir} cycle {cycle}: {len(labelled)} images, {boxes} boxes, trained by {retrain.config} in "
        f"{seconds:.0f} s: {metric} {metrics[metric]:.4f}",
        flush=True,
    )


def write_run(retrain: Retrainer, run_dir: Path, out: Path, metric: str, last_cycle: int | None = None) -> Path:
    """Retrain every cycle of ``run_dir`` (up to ``last_cycle``) into ``out/<arm folder>/<seed folder>`` (module
    docstring)."""
    source, target = RunDir(run_dir), RunDir(out / run_dir.parent.name / run_dir.name)
    records = [r for r in source.metric_records() if last_cycle is None or int(r["cycle"]) <= last_cycle]
    if not records:
        raise SystemExit(f"{source.metrics_log}: no cycle recorded; pass a run directory that finished a cycle")
    target.root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source.config, target.config)
    done, seed = target.metric_records(), _seed(run_dir)
    for kept in done:
        drawn = kept.get("retrained", {})
        if drawn.get("salt") == retrain.salt and drawn.get("config") == retrain.config:
            cycle = int(kept["cycle"])
            labelled = np.load(source.labelled_indices(cycle))
            retrain.remember(labelled, seed, cycle, kept["metrics"], drawn["seconds"])
    for record in records[len(done) :]:
        cycle = int(record["cycle"])
        metrics, seconds = retrain(np.load(source.labelled_indices(cycle)), seed, cycle)
        retrained = {"config": retrain.config, "salt": retrain.salt, "seconds": round(seconds, 1)}
        done.append({**record, "metrics": metrics, "retrained": retrained})
        atomic_write_text(target.metrics_log, "".join(json.dumps(r) + "\n" for r in done))
        print(
            f"{run_dir} cycle {cycle}: {record['labelled_images']} images, {metric} "
            f"{record['metrics'].get(metric, float('nan')):.4f} in the run, {metrics[metric]:.4f} retrained "
            f"({seconds:.0f} s)",
            flush=True,
        )
    return target.root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--cycle", type=int, help="print this cycle's retrained metric (without --out)")
    parser.add_argument("--out", type=Path, help="retrain every cycle into run directories the report reads")
    parser.add_argument("--last-cycle", type=int, help="with --out: retrain cycles 0 to N only (default: all)")
    parser.add_argument("--metric", default="voc/mAP_area")
    parser.add_argument("--salt", default="train", help="training seed: derive_seed(seed, cycle, SALT)")
    args = parser.parse_args()
    if (args.cycle is None) == (args.out is None):
        parser.error("pass --cycle N (print one cycle) or --out DIR (every cycle, as run directories)")
    retrain = Retrainer(args.config, args.salt)
    for run_dir in args.run_dirs:
        if args.out is None:
            print_cycle(retrain, run_dir, args.cycle, args.metric)
        else:
            write_run(retrain, run_dir, args.out, args.metric, args.last_cycle)


if __name__ == "__main__":
    main()
