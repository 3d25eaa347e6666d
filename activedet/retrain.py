"""Train a labelled set a run reached again, under another training draw or another recipe, and evaluate it.

What a run's labelled set is worth is one thing; what one training of it made is another: the same images trained
with another initialisation and batch order can score several points of mAP apart, and a label saving read off one
training per cycle carries that noise. ``activedet retrain CONFIG RUN_DIR... --salt again --out DIR`` trains every
cycle's set of each run again, seeded ``derive_seed(seed, cycle, salt)`` (the run's own salt, ``train``, reproduces
its models), and writes run directories that ``activedet report`` reads as it reads the runs; ``activedet draws``
then averages each seed's saving over the draws (:mod:`activedet.report.draws`). The config gives the data and the
recipe (``--set`` changes it: e.g. MI-AOD's selections trained as a plain RetinaNet). Each cycle's set is trained
from scratch by the config's trainer (teacher-student semi-supervision included); the loop's warm start and pseudo
labels act between cycles and are not replayed, so a config that sets them is refused.

A cycle already in the output is kept, so a stopped retrain continues; a labelled set met twice (the same images in
the same order, seed and cycle: the cycle 0 that a bench's arms share) is trained once, also when it was kept from
an earlier call (give the kept run before the runs that share its sets).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .al.plan import derive_seed
from .al.rundir import RunDir
from .atomic import atomic_write_text
from .config import load_config
from .engine.distributed import resolve_device
from .engine.inference import predict_dataset
from .evaluation import evaluate
from .workflows import build_model, load_split

__all__ = ["Retrainer", "retrain_run"]


class Retrainer:
    """Trains and evaluates labelled sets of one pool with one config's recipe under one salt; remembers what it
    trained."""

    def __init__(self, config: str | Path, *, salt: str = "train", overrides: list[str] | None = None):
        self.salt, self.overrides = salt, list(overrides or [])
        self.config = str(config)
        self.cfg = load_config(config, self.overrides)
        replayed = {"warm_start": self.cfg.warm_start, "pseudo_labels": self.cfg.pseudo_labels is not None}
        if any(replayed.values()):
            keys = " and ".join(key for key, on in replayed.items() if on)
            raise ValueError(
                f"{config}: sets {keys}, which the loop applies between cycles and retrain does not replay (it "
                "trains each cycle's set from scratch with the config's trainer); pass a config without them, "
                "or --set warm_start=false --set pseudo_labels=null to retrain the plain recipe"
            )
        self.pool, self.test = load_split(self.cfg, "train"), load_split(self.cfg, "test")
        self.device = resolve_device(self.cfg.device)
        self._done: dict[tuple[int, int, str], tuple[dict, float]] = {}

    @property
    def recipe(self) -> dict:
        """What a retrained record carries (``retrained``) besides its seconds: config, overrides and salt."""
        return {"config": self.config, "set": self.overrides, "salt": self.salt}

    def __call__(self, labelled: np.ndarray, seed: int, cycle: int) -> tuple[dict, float]:
        """The test metrics of a model trained on ``labelled`` (pool indices), and the training seconds."""
        key = self._key(labelled, seed, cycle)
        if key not in self._done:
            self._done[key] = self._train(labelled, seed, cycle)
        return self._done[key]

    def knows(self, labelled: np.ndarray, seed: int, cycle: int) -> bool:
        """Whether ``labelled`` was trained already (here, or kept and remembered): a call returns it untrained."""
        return self._key(labelled, seed, cycle) in self._done

    def remember(self, labelled: np.ndarray, seed: int, cycle: int, metrics: dict, seconds: float) -> None:
        """Take a set trained earlier (a kept cycle) as trained: another run's same set reuses it."""
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


def run_seed(run_dir: str | Path) -> int:
    """The seed a run was made with (its ``config.json``)."""
    return json.loads(RunDir(run_dir).config.read_text())["seed"]


def _same_recipe(kept: dict, recipe: dict) -> bool:
    drawn = {"set": [], **kept.get("retrained", {})}
    return all(drawn.get(key) == value for key, value in recipe.items())


def retrain_run(
    retrain: Retrainer,
    run_dir: str | Path,
    out: str | Path,
    *,
    last_cycle: int | None = None,
    metric: str = "voc/mAP_area",
    log=print,
) -> Path:
    """Retrain every cycle of ``run_dir`` (up to ``last_cycle``) into ``out/<arm folder>/<seed folder>``: the
    run's ``config.json`` and a ``metrics.jsonl`` whose records keep the labelled counts and cost and carry the
    retrained metrics with ``retrained: {config, set, salt, seconds}``. Returns that run directory."""
    run_dir = Path(run_dir)
    source, target = RunDir(run_dir), RunDir(Path(out) / run_dir.parent.name / run_dir.name)
    records = [r for r in source.metric_records() if last_cycle is None or int(r["cycle"]) <= last_cycle]
    if not records:
        raise ValueError(f"{source.metrics_log}: no cycle recorded; pass a run directory that finished a cycle")
    target.root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source.config, target.config)
    done, seed = target.metric_records(), run_seed(run_dir)
    for kept in done:
        if _same_recipe(kept, retrain.recipe):
            cycle = int(kept["cycle"])
            labelled = np.load(source.labelled_indices(cycle))
            retrain.remember(labelled, seed, cycle, kept["metrics"], kept["retrained"]["seconds"])
    for record in records[len(done) :]:
        cycle = int(record["cycle"])
        labelled = np.load(source.labelled_indices(cycle))
        shared = retrain.knows(labelled, seed, cycle)
        metrics, seconds = retrain(labelled, seed, cycle)
        done.append({**record, "metrics": metrics, "retrained": {**retrain.recipe, "seconds": round(seconds, 1)}})
        atomic_write_text(target.metrics_log, "".join(json.dumps(r) + "\n" for r in done))
        log(
            f"{run_dir} cycle {cycle}: {record['labelled_images']} images, {metric} "
            f"{record['metrics'].get(metric, float('nan')):.4f} in the run, {metrics.get(metric, float('nan')):.4f} "
            + ("retrained before: the same set as an earlier run's" if shared else f"retrained ({seconds:.0f} s)")
        )
    return target.root
