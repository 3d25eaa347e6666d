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

A cycle already in the output is kept, so a stopped retrain continues. A labelled set met twice under one training
(the same images in the same order, seed, cycle, salt and recipe: the cycle 0 that a bench's arms share) is trained
once: each record carries the digest of what it trained (``retrained.digest``), and a set another run in the same
output already trained, in this process or another, is taken from that run's record.
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
from .config.schema import key_fields
from .engine.distributed import resolve_device
from .engine.environment import training_environment
from .engine.inference import predict_dataset
from .evaluation import evaluate
from .workflows import build_model, load_split

__all__ = ["Retrainer", "retrain_run"]

#: the config groups whose keys the training and evaluation of a set depend on (docs/config.md's sections), less
#: :data:`_NOT_RECIPE`; with :data:`_ALSO_RECIPE`
_RECIPE_GROUPS = ("Data", "Model", "Training", "Evaluation and run")
_NOT_RECIPE = ("seed", "out_dir")  # the seed is a key of its own; where runs are written changes nothing
_ALSO_RECIPE = ("semi_supervised",)


def _recipe_digest(cfg) -> str:
    """A digest of every config value the training and evaluation of a set read: two configs with the same digest
    (a bench's arms, which differ in the strategy and the budget) train a set alike."""
    keys = [k for k, (group, _, _) in key_fields().items() if group in _RECIPE_GROUPS and k not in _NOT_RECIPE]
    values = {key: getattr(cfg, key) for key in [*keys, *_ALSO_RECIPE]}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


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
        self._recipe = _recipe_digest(self.cfg)
        self._done: dict[tuple[int, int, str], tuple[dict, float]] = {}

    @property
    def recipe(self) -> dict:
        """What a retrained record carries (``retrained``) besides its seconds and digest: config, overrides and
        salt."""
        return {"config": self.config, "set": self.overrides, "salt": self.salt}

    def digest(self, labelled: np.ndarray) -> str:
        """What training ``labelled`` here means: the set in order, this salt and the config's training recipe."""
        set_digest = hashlib.sha256(np.asarray(labelled, np.int64).tobytes()).hexdigest()
        return hashlib.sha256(f"{set_digest}/{self.salt}/{self._recipe}".encode()).hexdigest()

    def __call__(self, labelled: np.ndarray, seed: int, cycle: int) -> tuple[dict, float]:
        """The test metrics of a model trained on ``labelled`` (pool indices), and the training seconds."""
        key = (seed, cycle, self.digest(labelled))
        if key not in self._done:
            self._done[key] = self._train(labelled, seed, cycle)
        return self._done[key]

    def knows(self, seed: int, cycle: int, digest: str) -> bool:
        """Whether the set of ``digest`` was trained already (here, or remembered): a call returns it untrained."""
        return (seed, cycle, digest) in self._done

    def remember(self, seed: int, cycle: int, digest: str, metrics: dict, seconds: float) -> None:
        """Take the set of ``digest`` as trained (a kept cycle): another run's same set reuses it."""
        self._done.setdefault((seed, cycle, digest), (metrics, seconds))

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
    retrained metrics with ``retrained: {config, set, salt, seconds, digest, environment}`` (``environment``: where
    the model was trained, :mod:`activedet.engine.environment`; absent for a set an earlier run's record trained).
    Returns that run directory."""
    run_dir = Path(run_dir)
    source, target = RunDir(run_dir), RunDir(Path(out) / run_dir.parent.name / run_dir.name)
    records = [r for r in source.metric_records() if last_cycle is None or int(r["cycle"]) <= last_cycle]
    if not records:
        raise ValueError(f"{source.metrics_log}: no cycle recorded; pass a run directory that finished a cycle")
    target.root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source.config, target.config)
    done, seed = target.metric_records(), run_seed(run_dir)
    for kept in done:  # records written before they carried a digest: the source's set under this recipe
        if "digest" not in kept.get("retrained", {}) and _same_recipe(kept, retrain.recipe):
            cycle = int(kept["cycle"])
            digest = retrain.digest(np.load(source.labelled_indices(cycle)))
            retrain.remember(seed, cycle, digest, kept["metrics"], kept["retrained"]["seconds"])
    for record in records[len(done) :]:
        cycle = int(record["cycle"])
        labelled = np.load(source.labelled_indices(cycle))
        digest = retrain.digest(labelled)
        if not retrain.knows(seed, cycle, digest):
            _remember_trained(retrain, Path(out), seed)  # another run's, maybe from another process since
        shared = retrain.knows(seed, cycle, digest)
        metrics, seconds = retrain(labelled, seed, cycle)
        retrained = {**retrain.recipe, "seconds": round(seconds, 1), "digest": digest}
        if not shared:  # where this model was trained (a set trained before keeps its record's)
            retrained["environment"] = training_environment(retrain.device)
        done.append({**record, "metrics": metrics, "retrained": retrained})
        atomic_write_text(target.metrics_log, "".join(json.dumps(r) + "\n" for r in done))
        log(
            f"{run_dir} cycle {cycle}: {record['labelled_images']} images, {metric} "
            f"{record['metrics'].get(metric, float('nan')):.4f} in the run, {metrics.get(metric, float('nan')):.4f} "
            + ("retrained before: the same set as an earlier run's" if shared else f"retrained ({seconds:.0f} s)")
        )
    return target.root


def _remember_trained(retrain: Retrainer, out: Path, seed: int) -> None:
    """Remember every set the runs under ``out`` (``ARM/SEED`` folders) with ``seed`` trained, by their records'
    digests."""
    for log in out.glob("*/*/metrics.jsonl"):
        run = RunDir(log.parent)
        try:
            if json.loads(run.config.read_text()).get("seed") != seed:
                continue
            records = run.metric_records()
        except (OSError, ValueError):  # a run being written by another process: its sets are not known yet
            continue
        for record in records:
            drawn = record.get("retrained", {})
            if "digest" in drawn:
                retrain.remember(seed, int(record["cycle"]), drawn["digest"], record["metrics"], drawn["seconds"])
