"""Scoring the pool in a cycle: the strategy's stages in turn, each over its candidates, shard by shard.

A chained strategy's stage ``k > 0`` scores the previous stage's shortlist (its first
``ceil(shortlist x budget hint)`` picks); a selection-only stage picks from the previous stage's reductions
without inference. Each stage's reductions are saved (``cycles/t/scores.npz``, ``scores.stage{k}.npz``) and
loaded on a resume, and a stage scored in several shards (``score_shard_size``) saves each finished shard, so a
run killed mid-stage goes on from its last shard with the same scores.

:class:`PoolScoring` holds these steps as methods of :class:`~activedet.al.loop.ActiveLearningRun`, which
inherits it; they read the run's ``rundir``, ``pool``, ``val``, ``strategy``, ``options``, ``oracle``,
``device``, ``batch_size``, ``progress`` and ``cost``.
"""

from __future__ import annotations

import functools
import shutil
import time

import numpy as np
import torch

from .._faults import kill_point
from ..engine import distributed as dist_utils
from ..engine.inference import iter_predictions
from ..strategies.base import ScoredPool, ScoringContext, SelectionInput, Strategy, shortlist
from .bookkeeping import record_seconds
from .cost_stage import cost_per_image
from .ledger import Ledger
from .plan import derive_seed
from .scores import load_scores, load_shard, save_scores, save_shard

__all__ = ["PoolScoring"]


class PoolScoring:
    """The scoring steps of :class:`~activedet.al.loop.ActiveLearningRun` (module docstring)."""

    def _check_stage_needs(self) -> None:
        """Refuse, before any work, a stage whose needs the run cannot meet: a validation split, or an oracle that
        previews labels."""
        needs_val = [stage.name for stage in self.strategy.stages if stage.needs_val]
        if needs_val and (self.val is None or len(self.val) == 0):
            raise ValueError(
                f"strategy '{self.strategy.name}' ({', '.join(needs_val)}) needs a validation split: "
                "set 'val_data' (val= in the library) to labelled images disjoint from the test split"
            )
        needs_preview = [stage.name for stage in self.strategy.stages if stage.needs_preview]
        if needs_preview and not self.oracle.previews_cost:
            raise ValueError(
                f"strategy '{self.strategy.name}' ({', '.join(needs_preview)}) reads the candidates' labels before "
                f"they are bought, which {type(self.oracle).__name__} cannot preview: it is a simulation-only "
                "diagnostic (simulated oracle with simulated_preview: true); use the predicted classes instead"
            )

    def _score(self, model: torch.nn.Module, ledger: Ledger, t: int) -> tuple[ScoredPool, ScoredPool | None]:
        """Score the candidates stage by stage; returns the last stage's ``(pool, labelled)`` reductions."""
        candidates = self.options.scoring_subset(ledger.unlabelled(), t)
        scored = None
        for k, stage in enumerate(self.strategy.stages):
            if k > 0:
                candidates = self._shortlist(self.strategy.stages[k - 1], scored, ledger, t, k)
                if not stage.needs_inference:  # a selection-only stage picks from the previous stage's reductions
                    pool, labelled = scored
                    scored = pool.subset(pool.positions_of(candidates)), labelled
                    continue
            scored = self._score_stage(model, stage, k, candidates, ledger, t)
            kill_point(f"stage{k}", t)
        return scored

    def _score_stage(self, model, stage: Strategy, k: int, candidates: np.ndarray, ledger: Ledger, t: int):
        path = self.rundir.cycle(t).scores_stage(k)
        if dist_utils.main_sees_file(path):
            return load_scores(path)
        started = time.perf_counter()
        # stochastic passes (MC-dropout, augmented views) repeat on resume
        torch.manual_seed(derive_seed(self.options.seed, t, "score" if k == 0 else f"score{k}"))
        context = ScoringContext(
            labelled=self.pool.subset(ledger.labelled()),
            val=self.val,
            device=self.device,
            batch_size=self.batch_size,
            seed=derive_seed(self.options.seed, t, f"context{k}"),
            stats_file=functools.partial(self.rundir.cycle(t).stats, k),
        )
        pool = self._scored(model, stage, candidates, context, t, k, "pool")
        labelled = None
        if stage.needs_labelled:
            labelled = self._scored(model, stage, ledger.labelled(), context, t, k, "labelled")
        if dist_utils.is_main_process():
            record_seconds(self.rundir, t, "score" if k == 0 else f"score{k}", time.perf_counter() - started)
            save_scores(path, pool, labelled)
            for part in ("pool", "labelled"):
                shutil.rmtree(self.rundir.cycle(t).score_shards(k, part), ignore_errors=True)
        dist_utils.barrier()
        return pool, labelled

    def _shortlist(self, stage: Strategy, scored, ledger: Ledger, t: int, k: int) -> np.ndarray:
        """The first ``ceil(shortlist x budget hint)`` picks of ``stage``: the next stage's candidates."""
        rng = np.random.default_rng(derive_seed(self.options.seed, t, f"shortlist{k}"))
        return shortlist(stage, self._selection_input(scored, ledger, rng))

    def _selection_input(self, scored, ledger: Ledger, rng: np.random.Generator) -> SelectionInput:
        pool, labelled = scored
        labelled_indices = ledger.labelled()
        return SelectionInput(
            pool,
            labelled,
            self.options.budget_hint(
                len(self.pool), ledger, self.oracle, cost_per_image(self.cost, ledger, self.oracle)
            ),
            rng,
            labelled_class_counts=self.oracle.class_counts(labelled_indices),
            num_labelled=int(len(labelled_indices)),
            previewed_class_counts=self.oracle.preview_class_counts if self.oracle.previews_cost else None,
        )

    def _scored(
        self,
        model: torch.nn.Module,
        stage: Strategy,
        indices: np.ndarray,
        context: ScoringContext,
        t: int,
        k: int,
        part: str,
    ) -> ScoredPool:
        """Score ``indices`` shard by shard (``score_shard_size`` images each). A finished shard is saved before the
        next starts and loaded on a resume; each shard but the pool's first is seeded by ``(seed, cycle, stage,
        part, shard)``, so stochastic passes give the same scores whether or not the run was stopped in between."""
        if not stage.needs_inference:
            return ScoredPool.from_lists(indices, np.zeros(len(indices)), np.zeros(len(indices)))
        predictor = stage.predictor(model, context) if stage.predictor is not None else model
        size, parts = self.options.score_shard_size, []
        for j, start in enumerate(range(0, len(indices), size)):
            path = self.rundir.cycle(t).score_shard(k, part, j)
            if dist_utils.main_sees_file(path):
                parts.append(load_shard(path))
                continue
            if j > 0 or part != "pool":  # the pool's first shard goes on from the stage's seed
                torch.manual_seed(derive_seed(self.options.seed, t, f"score{k}.{part}.shard{j}"))
            stream = iter_predictions(
                predictor,
                self.pool,
                indices[start : start + size],
                device=self.device,
                batch_size=self.batch_size,
                fields=stage.needs,
                progress=self.progress,
            )
            shard = ScoredPool.concatenate(dist_utils.all_gather_object(ScoredPool.collect(stream, stage)))
            if dist_utils.is_main_process() and len(indices) > size:  # one shard: the stage's file is enough
                path.parent.mkdir(parents=True, exist_ok=True)
                save_shard(path, shard)
            dist_utils.barrier()
            kill_point(f"stage{k}.{part}.shard{j}", t)
            parts.append(shard)
        return ScoredPool.concatenate(parts).finalize(stage)

    def _shortlisted(self, t: int) -> np.ndarray:
        """Pool indices cycle ``t``'s last scoring stage after the first scored (its shortlist; empty for a
        one-stage strategy, whose shortlist is its selection)."""
        files = self.rundir.cycle(t)
        stages = files.scored_stages()
        return load_scores(files.scores_stage(stages[-1]))[0].indices if stages else np.zeros(0, np.int64)
