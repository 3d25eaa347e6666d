"""The active-learning cycle. It reads like the algorithm and never looks at a strategy's name::

    ledger = initial labelled set drawn from the seed (the same for every strategy)
    for cycle t = 0, 1, ...:
        pseudo   (optional, t > 0) model t-1's confident detections on the unlabelled images
                                                             -> cycles/t/pseudo_labels.json
        train    on the labelled (+ pseudo-labelled) images  -> cycles/t/model.pt
        evaluate on the test split                           -> cycles/t/metrics.json
        stop when the cycle count or labelled fraction is reached
        score    the unlabelled pool (or a random subset)    -> cycles/t/scores.npz
                 (a chained strategy: each next stage scores the previous stage's shortlist
                                                             -> cycles/t/scores.stage{k}.npz)
        select   the budget (images, or boxes revealed)      -> cycles/t/selection.json
        label    the oracle is asked for the batch's labels  -> imports/NNNN.json, then ledger.npz
                 (:mod:`activedet.al.oracle`: the simulation exports the batch to cycles/t/query/ and answers
                 from the ground truth, cycles/t/oracle_labels.json; people's oracle exports it and the run waits,
                 persisted, until ``activedet import`` has labelled every image of the batch)

Every path is named by :class:`~activedet.al.rundir.RunDir`. Every stage writes its output atomically, and a stage
whose output exists is loaded instead of recomputed, so a run killed at any moment resumes
(``activedet resume RUN_DIR``) at the first missing output and ends with the same labelled sets and metrics as an
uninterrupted run. Each stage draws its randomness from
``(seed, cycle, stage)`` only, and wall-clock times are kept apart (``cycles/t/timing.json``, ``timing.jsonl``),
so two runs of the same config write byte-identical ledgers, selections, scores, metrics and model files.
Under torchrun every process runs the loop: training and scoring are sharded,
selection is computed identically on every rank from the gathered scores, and rank 0 writes the files.

Scoring the pool, stage by stage and shard by shard, is :mod:`activedet.al.scoring`; the files no result depends
on (timing, the run's logs, the index files, training leftovers) are :mod:`activedet.al.bookkeeping`.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._faults import kill_point
from ..atomic import atomic_write_json
from ..data.records import DetectionDataset, check_disjoint
from ..data.torch_dataset import load_image
from ..engine import distributed as dist_utils
from ..engine.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from ..engine.environment import training_environment
from ..engine.inference import iter_predictions, predict_dataset
from ..engine.pseudo import (
    PseudoLabelOptions,
    PseudoLabelRecord,
    load_pseudo_labels,
    pseudo_label_records,
    pseudo_label_stats,
    save_pseudo_labels,
    with_pseudo_labels,
)
from ..engine.train import TrainOptions, TrainResult, train_detector
from ..evaluation import evaluate
from ..strategies.base import Strategy
from ..strategies.near_duplicates import NearDuplicateFilter, thumbnail
from ..tensorboard import log_cycle
from .annotation import pending_images
from .bookkeeping import (
    cycle_summary,
    keep_training_logs,
    prune_checkpoints,
    record_environment,
    record_seconds,
    write_index_files,
    write_metrics_log,
)
from .coldstart import cold_start_indices
from .cost import CostModel, scores_rank
from .cost_stage import (
    PickCosts,
    actual_costs,
    budget_picks,
    check_cost_setup,
    labelled_cost,
    pick_costs,
    spend_scale,
)
from .ledger import Ledger
from .oracle import Labels, Oracle, Pending, QueryBatch, SimulatedOracle, commit_labels
from .plan import LoopOptions, derive_seed, initial_indices, initial_size
from .rundir import RunDir
from .scores import load_scores
from .scoring import PoolScoring

__all__ = ["ActiveLearningRun"]


@dataclass
class ActiveLearningRun(PoolScoring):
    """One run: a pool, a test split, a detector recipe, a strategy and a run directory.

    Args:
        run_dir: where the ledger and every artefact go (a path or a :class:`~activedet.al.rundir.RunDir`).
        pool: the images that can be labelled (labels are revealed by ``oracle``).
        test: the evaluation split (never used for training or selection).
        build_model: returns a freshly initialised detector; called with torch seeded by the run seed so the
            initial weights are the same in every cycle and for every strategy.
        strategy: the query strategy.
        options: the loop settings (:class:`~activedet.al.plan.LoopOptions`).
        train_options: how each cycle trains.
        trainer: the per-cycle training procedure (:mod:`activedet.engine.trainers`); it is given the labelled
            images and the unlabelled pool (semi-supervised procedures such as MI-AOD train on both).
        val: optional validation split for best-epoch selection / early stopping.
        pseudo_labels: optional :class:`~activedet.engine.pseudo.PseudoLabelOptions`: from cycle 1 on, train on the
            previous cycle's model's confident detections on the unlabelled images as well (methods.md §9). They
            are regenerated every cycle, the images stay unlabelled (queryable) and never count as annotation.
        oracle: labels the query batches (:class:`~activedet.al.oracle.Oracle`, built on this ``pool``); default:
            :class:`~activedet.al.oracle.SimulatedOracle` (the ground truth of ``pool``). With
            :class:`~activedet.al.oracle.HumanOracle` the run stops, awaiting labels, after each export.
        initial: the initial labelled set (pool indices); default: drawn from the seed (``options``).
        metrics: evaluation metrics (names of :func:`activedet.evaluation.evaluate`); metric_options: their
            keyword options (``evaluate``'s ``options``).
        device, batch_size: the device (``"auto"``: CUDA when available, the local rank's GPU under torchrun, else
            CPU; resolved when the run is made) and the batch size of evaluation and scoring.
        cost: the labelling cost model (:mod:`activedet.al.cost`): each pick records its predicted and actual cost,
            each cycle the labelled set's (``labelled_cost``); a ``budget_unit`` of ``boxes`` or ``cost`` spends the
            predicted figure when the oracle cannot preview labels. ``None``: no costs (``budget_unit: cost`` is
            refused, ``boxes`` needs an oracle that previews labels).
    """

    run_dir: Path | RunDir
    pool: DetectionDataset
    test: DetectionDataset
    build_model: Callable[[], torch.nn.Module]
    strategy: Strategy
    options: LoopOptions
    train_options: TrainOptions
    trainer: Callable[..., TrainResult] = train_detector
    val: DetectionDataset | None = None
    pseudo_labels: PseudoLabelOptions | None = None
    oracle: Oracle | None = None
    metrics: tuple[str, ...] = ("voc",)
    metric_options: dict[str, dict[str, Any]] | None = None
    device: torch.device | str = "auto"
    batch_size: int = 8
    progress: bool = False
    initial: np.ndarray | None = None
    cost: CostModel | None = None

    def __post_init__(self) -> None:
        self.rundir = RunDir(self.run_dir)
        self.run_dir = self.rundir.root
        self.device = dist_utils.resolve_device(self.device)
        self.oracle = self.oracle or SimulatedOracle(self.pool)
        if self.oracle.pool is not self.pool:  # labels revealed into another dataset would never be trained on
            raise ValueError(
                f"The 'oracle' parameter of ActiveLearningRun must label the run's pool: build it on the "
                f"same dataset passed as pool= (e.g. {type(self.oracle).__name__}(pool)). Got an oracle "
                "of another dataset instead."
            )
        self.pool_ids = self.pool.image_ids()

    # ----------------------------------------------------------------------------------------------- the cycle
    def run(self) -> Ledger:
        """Run (or resume) the cycles until the stopping rule holds; returns the final ledger."""
        self.options.check(len(self.pool))
        if self.pseudo_labels is not None:
            self.pseudo_labels.thresholds(self.pool.class_names)  # per-class thresholds name known classes
        if len(self.test) == 0:
            raise ValueError("the test split has no images; an active-learning run needs one to evaluate each cycle")
        self._check_stage_needs()
        check_cost_setup(self.options.budget_unit, self.oracle, self.cost, self.strategy)
        check_disjoint(self.pool, self.test, self.val)
        ledger = self._load_or_start()
        kill_point("start", ledger.cycle)
        self.oracle.reveal(self.rundir)
        while True:
            t = ledger.cycle
            write_index_files(self.rundir, ledger, self.pool_ids)
            pseudo = self._pseudo_labels(ledger, t)
            kill_point("pseudo", t)
            model, checkpoint = self._train(ledger, t, pseudo)
            kill_point("train", t)
            self._evaluate(model, ledger, t, pseudo)
            kill_point("evaluate", t)
            if self.options.finished(ledger):
                break
            scored = self._score(model, ledger, t)
            kill_point("score", t)
            picks = self._select(model, scored, ledger, t, checkpoint)
            kill_point("select", t)
            labelled = self._label(model, ledger, picks, t)
            if labelled is None:  # the oracle's labels are pending (people labelling): the run waits, persisted
                return ledger
            ledger = labelled
            kill_point("label", t)
        write_metrics_log(self.rundir)
        return ledger

    # ----------------------------------------------------------------------------------------------- stages
    def _load_or_start(self) -> Ledger:
        path = self.rundir.ledger
        if dist_utils.main_sees_file(path):
            return Ledger.load(path, pool_ids=self.pool_ids)
        ledger = Ledger.initial(self.pool_ids, self._initial())
        if dist_utils.is_main_process():
            ledger.save(path)
        dist_utils.barrier()
        return ledger

    def _initial(self) -> np.ndarray:
        """The initial labelled set: given, drawn from the seed, or chosen from the pool's embeddings by the
        untrained model (:mod:`activedet.al.coldstart`)."""
        if self.initial is not None:
            return self.initial
        if self.options.initial_selection == "random":
            return initial_indices(len(self.pool), self.options)
        self.options.check(len(self.pool))
        model = self._model().to(self.device)
        stream = iter_predictions(
            model,
            self.pool,
            np.arange(len(self.pool)),
            device=self.device,
            batch_size=self.batch_size,
            fields={"embedding"},
            progress=self.progress,
        )
        local = [(i, det.embedding.float().numpy()) for i, det in stream]
        gathered = sorted((pair for part in dist_utils.all_gather_object(local) for pair in part), key=lambda p: p[0])
        return cold_start_indices(
            np.stack([embedding for _, embedding in gathered]),
            initial_size(len(self.pool), self.options),
            method=self.options.initial_selection,
            seed=derive_seed(self.options.seed, 0, "initial"),
        )

    def _pseudo_labels(self, ledger: Ledger, t: int) -> list[PseudoLabelRecord]:
        """Cycle ``t``'s pseudo labels, made by cycle ``t - 1``'s model on (a subset of) the unlabelled pool, or read
        from the file they were saved to (made again, the same, where it is missing)."""
        if self.pseudo_labels is None or t == 0:
            return []
        path = self.rundir.cycle(t).pseudo_labels
        if not dist_utils.main_sees_file(path):
            model = self._model(weights_of=t - 1)
            candidates = self.options.pseudo_subset(ledger.unlabelled(), t)
            if self.pseudo_labels.exclude == "shortlist":
                candidates = np.setdiff1d(candidates, self._shortlisted(t - 1))
            local = list(
                iter_predictions(
                    model.to(self.device),
                    self.pool,
                    candidates,
                    device=self.device,
                    batch_size=self.batch_size,
                    progress=self.progress,
                )
            )
            gathered = sorted((p for part in dist_utils.all_gather_object(local) for p in part), key=lambda p: p[0])
            records = pseudo_label_records(gathered, self.pool, self.pseudo_labels)
            if dist_utils.is_main_process():
                save_pseudo_labels(path, records)
            dist_utils.barrier()
            return records
        return load_pseudo_labels(path, self.pool)

    def _model(self, weights_of: int | None = None) -> torch.nn.Module:
        """A freshly built model (torch seeded by the run seed, so the initial weights never change), with cycle
        ``weights_of``'s trained weights when given."""
        torch.manual_seed(self.options.seed)
        model = self.build_model()
        if weights_of is not None:
            model.load_state_dict(load_checkpoint(self.rundir.cycle(weights_of).model)["model"])
        return model

    def _train(self, ledger: Ledger, t: int, pseudo: list[PseudoLabelRecord]) -> tuple[torch.nn.Module, str]:
        path, train_dir = self.rundir.cycle(t).model, self.rundir.cycle(t).train_dir
        if dist_utils.main_sees_file(path):
            if dist_utils.is_main_process():
                shutil.rmtree(train_dir, ignore_errors=True)  # left over when killed right after model.pt
            return self._model(weights_of=t).to(self.device), file_sha256(path)
        model = self._model(weights_of=t - 1 if self.options.warm_start and t > 0 else None)
        options = replace(self.train_options, seed=derive_seed(self.options.seed, t, "train"))
        result = self.trainer(
            model,
            with_pseudo_labels(self.pool.subset(ledger.labelled()), pseudo),
            unlabelled=self.pool.subset(ledger.unlabelled()),
            val_set=self.val,
            options=options,
            out_dir=train_dir,
            device=self.device,
            resume=True,
            progress=self.progress,
        )
        if dist_utils.is_main_process():
            keep_training_logs(self.rundir, train_dir, t)  # before model.pt: a resume deletes train/
            record_seconds(self.rundir, t, "train", result.wall_time_s)
            record_environment(self.rundir, t, training_environment(self.device))
            # history through JSON: entries restored on a resume must pickle as those made in one go (pickle
            # shares repeated strings by identity), so a resumed run writes the same bytes as an uninterrupted one
            save_checkpoint(
                path,
                {
                    "model": model.state_dict(),
                    "cycle": t,
                    "epochs": result.epochs_completed,
                    "best_epoch": result.best_epoch,
                    "history": json.loads(json.dumps(result.history)),
                },
            )
            shutil.rmtree(train_dir, ignore_errors=True)
            prune_checkpoints(self.rundir, t, self.options.keep_checkpoints)
        dist_utils.barrier()
        return model, file_sha256(path)

    def _evaluate(self, model: torch.nn.Module, ledger: Ledger, t: int, pseudo: list[PseudoLabelRecord]) -> None:
        path = self.rundir.cycle(t).metrics
        if dist_utils.main_sees_file(path):
            return
        started = time.perf_counter()
        predictions = predict_dataset(model, self.test, device=self.device, batch_size=self.batch_size)
        metrics = evaluate(self.test, predictions, metrics=self.metrics, options=self.metric_options)
        labelled = ledger.labelled()
        train_state = load_checkpoint(self.rundir.cycle(t).model)
        record = {
            "cycle": t,
            "strategy": self.strategy.name,
            "seed": self.options.seed,
            "labelled_images": int(len(labelled)),
            "labelled_boxes": self.oracle.count_boxes(labelled),
            **({} if self.cost is None else {"labelled_cost": labelled_cost(self.cost, ledger, self.oracle)}),
            "metrics": metrics,
            "train": {k: train_state[k] for k in ("epochs", "best_epoch", "history")},
            "pseudo_labels": pseudo_label_stats(pseudo) if self.pseudo_labels is not None and t > 0 else None,
        }
        if dist_utils.is_main_process():
            record_seconds(self.rundir, t, "evaluate", time.perf_counter() - started)
            atomic_write_json(path, record)
            write_metrics_log(self.rundir)
            if self.progress:  # on a terminal between the bars; in a log file one line per cycle
                print(cycle_summary(record), file=sys.stderr, flush=True)
            if self.train_options.tensorboard:
                log_cycle(self.run_dir, t, metrics, {}, record["pseudo_labels"])
        dist_utils.barrier()

    def _thumbnail(self, index: int) -> np.ndarray:
        record = self.pool.records[index]
        return thumbnail(load_image(record.file_name, record.image_index))

    def _skipped(self, distinct: NearDuplicateFilter) -> list[dict]:
        """The picks the near-duplicate filter passed over, each with the image it nearly duplicates."""
        return [
            {"image_id": self.pool_ids[i], "duplicate_of": self.pool_ids[j], "correlation": c}
            for i, j, c in distinct.skipped
        ]

    def _select(self, model, scored, ledger: Ledger, t: int, checkpoint: str) -> list[dict]:
        path = self.rundir.cycle(t).selection
        if dist_utils.main_sees_file(path):
            return json.loads(path.read_text())["picks"]
        started = time.perf_counter()
        rng = np.random.default_rng(derive_seed(self.options.seed, t, "select"))
        inputs = self._selection_input(scored, ledger, rng)
        stage = self.strategy.stages[-1]
        costs = (
            None
            if self.cost is None
            else PickCosts(self.cost, model, self.pool, device=self.device, batch_size=self.batch_size)
        )
        scale = spend_scale(self.options.budget_unit, self.oracle, costs, ledger.picks)
        distinct = None
        if self.options.near_duplicates is not None:
            distinct = NearDuplicateFilter(self._thumbnail, ledger.labelled(), self.options.near_duplicates)
        picks = budget_picks(
            stage, inputs, self.options, self.oracle, costs, len(self.pool), scale, near_duplicates=distinct
        )
        wanted = min(inputs.budget_hint, len(ledger.unlabelled()))
        if not picks and wanted:  # nothing labelled: the cycle could not advance
            raise ValueError(
                f"cycle {t}: strategy '{self.strategy.name}' selected no image from the "
                f"{len(inputs.pool)} candidates (with empty_policy 'skip', every candidate had nothing "
                "to score); set strategy_options empty_policy to 'lowest' (or lower score_threshold) and "
                "start again in a new out_dir"
            )
        if self.options.budget_unit == "images" and len(picks) < wanted and dist_utils.is_main_process():
            warnings.warn(
                f"cycle {t}: strategy '{self.strategy.name}' selected {len(picks)} of the {wanted} images "
                "the budget allows (an empty_policy of 'skip', or a chained stage's shortlist shorter than "
                "the budget"
                + (
                    f"; {len(distinct.skipped)} picks skipped as near-duplicates of labelled images or earlier "
                    "picks (near_duplicates)"
                    if distinct and distinct.skipped
                    else ""
                )
                + "); the cycle continues with fewer",
                stacklevel=2,
            )
        pool = inputs.pool
        score_of = self._shown_scores(pool, t)
        predicted = pick_costs(costs, picks) if costs is not None else [{} for _ in picks]
        records = [
            {
                "index": int(i),
                "rank": rank,
                "cycle": t,
                "strategy": self.strategy.name,
                "score": None if np.isnan(score_of.get(i, np.nan)) else score_of[i],
                "image_id": self.pool_ids[i],
                "boxes": self.oracle.preview_boxes(i),
                "checkpoint": checkpoint,
                **predicted[rank],
            }
            for rank, i in enumerate(picks)
        ]
        if dist_utils.is_main_process():
            record_seconds(self.rundir, t, "select", time.perf_counter() - started)
            atomic_write_json(
                path,
                {
                    "cycle": t,
                    "strategy": self.strategy.name,
                    "budget": self.options.budget,
                    "budget_unit": self.options.budget_unit,
                    **({} if scale is None else {"calibration": round(scale, 6)}),
                    "picks": records,
                    **({} if distinct is None else {"near_duplicates_skipped": self._skipped(distinct)}),
                },
            )
            if self.train_options.tensorboard:
                scores = [r["score"] for r in records if r["score"] is not None]
                log_cycle(
                    self.run_dir,
                    t,
                    {},
                    {
                        "images": len(records),
                        "boxes": sum(r["boxes"] or 0 for r in records),
                        "candidates": len(pool),
                        "mean_score": float(np.mean(scores)) if scores else float("nan"),
                    },
                )
        dist_utils.barrier()
        return records

    def _shown_scores(self, pool, t: int) -> dict[int, float]:
        """Per candidate, the score its selection record shows: the last stage's, or for a selection-only last stage
        the previous stage's it picks from; for a last stage without scores that scores its own candidates (a
        chain ending in ``class_balance``), the last stage before it that scores (its shortlist criterion)."""
        if scores_rank(self.strategy):
            return dict(zip(pool.indices.tolist(), pool.scores.tolist()))
        scoring = [k for k, stage in enumerate(self.strategy.stages) if stage.score is not None]
        if not scoring:
            return {}
        scored, _ = load_scores(self.rundir.cycle(t).scores_stage(scoring[-1]))
        return dict(zip(scored.indices.tolist(), scored.scores.tolist()))

    def _label(self, model: torch.nn.Module, ledger: Ledger, picks: list[dict], t: int) -> Ledger | None:
        """The ledger with the batch labelled once every image of it has imported labels, else ``None``. The oracle
        is asked only while images are pending (a resumed run whose batch is complete goes on)."""
        batch = QueryBatch(
            t,
            picks,
            self.rundir,
            self.pool,
            predict=lambda: predict_dataset(
                model, self.pool, [p["index"] for p in picks], device=self.device, batch_size=self.batch_size
            ),
        )
        asked = bool(pending_images(self.rundir, batch.image_ids))
        dist_utils.barrier()  # every process has looked before the answer is committed
        if asked:
            answer = self.oracle.request(batch)
            if not isinstance(answer, (Labels, Pending)):
                raise TypeError(
                    f"{type(self.oracle).__name__}.request must return Labels or Pending "
                    f"(activedet.al.oracle). Got {type(answer).__name__} instead."
                )
            if isinstance(answer, Labels):
                commit_labels(batch, answer)
        if pending_images(self.rundir, batch.image_ids):
            return None
        self.oracle.reveal(self.rundir)
        # an image's boxes, unknown at selection unless the oracle previewed them, are known once it is labelled
        picks = [
            {**p, "boxes": self.oracle.num_boxes(p["index"]) if p.get("boxes") is None else p["boxes"]} for p in picks
        ]
        if self.cost is not None:  # the actual cost, against the pre-annotations the batch was shown
            actual = actual_costs(self.cost, self.pool, batch.indices, batch.predictions())
            picks = [{**pick, **cost} for pick, cost in zip(picks, actual)]
        ledger = ledger.label(picks)
        if dist_utils.is_main_process():
            ledger.save(self.rundir.ledger)
        dist_utils.barrier()
        return ledger
