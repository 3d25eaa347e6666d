"""What a query strategy is: a per-image scoring function plus a selection step, and what it needs.

The active-learning loop drives every strategy the same way, never by name::

    pool = ScoredPool.collect((i, det) for i, det in predictions_of_unlabelled_images, strategy)
    labelled = ScoredPool.collect(..., strategy) if strategy.needs_labelled else None
    for pick in strategy.select(SelectionInput(pool, labelled, budget_hint, rng)):
        ... take picks until the budget (images, or boxes revealed) is spent

* ``score(det) -> float | None`` is a pure function of one image's :class:`~activedet.models.outputs.Detections`:
  larger = more informative = pick first. It returns ``None`` when the image has no detection to score
  (the strategy's explicit empty-image policy decides what happens to those). Scores are reduced as the
  detections are produced, so memory does not grow with anchors x pool size.
* ``select(inputs) -> Iterator[int]`` yields **pool indices** in pick order, lazily, so a budget counted in boxes
  can stop as soon as enough boxes have been revealed. It draws randomness only from ``inputs.rng``.
* ``needs`` names the optional :class:`Detections` fields the scoring pass must fill (``"class_probs"``,
  ``"embedding"``, ...); the loop requests exactly those.
* ``describe(det) -> {name: array}`` (optional) keeps per-image arrays beyond the score (a class-score vector,
  per-detection features) in ``ScoredPool.extras`` for ``select``.
* A strategy may be the first stage of a **chain**: ``then`` is the next stage and ``shortlist`` its candidate
  factor. The loop takes the first ``ceil(shortlist x budget_hint)`` picks of this stage's ``select`` as the
  candidates, scores only those with ``then`` (its own predictor, fields and ``describe``), and so on; the last
  stage's ``select`` gives the picks. A later stage with ``needs_inference=False`` runs no pass: it selects from
  the previous stage's reductions of its candidates (e.g. a stage comparing class distributions reads the
  class-score vectors the previous stage's pass kept). Uncertainty criteria narrow the pool, a diversity criterion
  picks the batch (methods.md §7.5), and each stage pays inference only on its candidates::

      pool -> [stage 1 scores all] -> top 2B -> [stage 2 scores 2B] -> B picks
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from ..models.outputs import Detections

__all__ = ["Strategy", "ScoredPool", "SelectionInput", "ScoringContext", "shortlist", "first_picks"]


@dataclass
class ScoredPool:
    """Per-image reductions of a scoring pass over some pool images.

    Attributes:
        indices: ``int64[M]`` pool indices, in the order they were scored.
        scores: ``float64[M]`` informativeness (larger = pick first); ``NaN`` exactly where ``empty`` is True.
        empty: ``bool[M]`` the score function returned ``None`` (no detection to score).
        embeddings: ``float32[M, D]`` image embeddings, or ``None`` when the strategy does not need them.
        num_detections: ``int64[M]`` detections per image (for reports).
        vectors: ``float64[M, F]`` per-image score vectors of a strategy with a pool-level ``combine`` step.
        extras: ``{name: [array per image]}`` from the strategy's ``describe`` (aligned with ``indices``; arrays
            have at least one dimension, those of one name share their dtype and trailing shape, the first axis
            may vary per image).
    """

    indices: np.ndarray
    scores: np.ndarray
    empty: np.ndarray
    embeddings: np.ndarray | None = None
    num_detections: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    vectors: np.ndarray | None = None
    extras: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.indices))

    @classmethod
    def collect(cls, items: Iterable[tuple[int, Detections]], strategy: Strategy) -> ScoredPool:
        """Reduce ``(pool_index, Detections)`` pairs one at a time with ``strategy.score`` (and keep embeddings).

        For a strategy with a pool-level ``combine`` step, ``score`` returns a vector per image; they are kept in
        ``vectors`` and ``scores`` stay ``NaN`` until :meth:`finalize`.
        """
        indices, scores, counts, embeddings, vectors = [], [], [], [], []
        extras: dict[str, list[np.ndarray]] = {}
        for index, det in items:
            try:
                value = strategy.score(det) if strategy.score is not None else 0.0
            except ValueError as exc:
                raise ValueError(f"pool index {index}: {exc}") from None
            if strategy.combine is not None:
                vectors.append(np.asarray(value, np.float64))
                value = None
            elif value is not None and not np.isfinite(value):
                raise ValueError(
                    f"pool index {index}: strategy '{strategy.name}' scored {value}; scores must be "
                    "finite (None marks an image with nothing to score)"
                )
            indices.append(index)
            scores.append(np.nan if value is None else float(value))
            counts.append(len(det))
            if "embedding" in strategy.needs:
                embeddings.append(det.embedding.float().numpy())
            if strategy.describe is not None:
                for name, array in strategy.describe(det).items():
                    extras.setdefault(name, []).append(np.atleast_1d(np.asarray(array)))
        pool = cls.from_lists(indices, scores, counts, embeddings if "embedding" in strategy.needs else None)
        if strategy.combine is not None:
            pool.vectors = np.stack(vectors) if vectors else np.zeros((0, 0))
        pool.extras = extras
        return pool

    def finalize(self, strategy: Strategy) -> ScoredPool:
        """The pool with ``strategy.combine`` applied to the gathered vectors (unchanged for per-image scores)."""
        if strategy.combine is None:
            return self
        scores = np.asarray(strategy.combine(self), np.float64)
        if scores.shape != (len(self),) or np.isinf(scores).any():
            raise ValueError(
                f"strategy '{strategy.name}': the pool-level step returned {scores.shape} scores with "
                f"{int(np.isinf(scores).sum())} infinite; expected {len(self)} finite or NaN values"
            )
        return ScoredPool(
            self.indices, scores, np.isnan(scores), self.embeddings, self.num_detections, extras=self.extras
        )

    def subset(self, positions: np.ndarray) -> ScoredPool:
        """The images at ``positions`` (positions in this pool, not pool indices), every per-image field kept."""
        positions = np.asarray(positions, np.int64)
        take = lambda a: None if a is None else a[positions]
        counts = self.num_detections[positions] if len(self.num_detections) == len(self) else self.num_detections
        return ScoredPool(
            self.indices[positions],
            self.scores[positions],
            self.empty[positions],
            take(self.embeddings),
            counts,
            take(self.vectors),
            {k: [v[p] for p in positions] for k, v in self.extras.items()},
        )

    def positions_of(self, indices: np.ndarray) -> np.ndarray:
        """Positions in this pool of the given pool ``indices`` (each must be present)."""
        order = np.argsort(self.indices, kind="stable")
        return order[np.searchsorted(self.indices[order], np.asarray(indices, np.int64))]

    @classmethod
    def from_lists(cls, indices, scores, counts, embeddings=None) -> ScoredPool:
        scores = np.asarray(scores, np.float64)
        emb = None
        if embeddings is not None:
            emb = np.stack(embeddings).astype(np.float32) if len(embeddings) else np.zeros((0, 0), np.float32)
        return cls(np.asarray(indices, np.int64), scores, np.isnan(scores), emb, np.asarray(counts, np.int64))

    @classmethod
    def concatenate(cls, parts: list[ScoredPool]) -> ScoredPool:
        """Join shards (e.g. gathered from torchrun processes), sorted by pool index for a rank-independent order."""
        indices = np.concatenate([p.indices for p in parts]) if parts else np.zeros(0, np.int64)
        order = np.argsort(indices, kind="stable")

        def joined(name: str) -> np.ndarray | None:
            if not parts or getattr(parts[0], name) is None:
                return None
            return np.concatenate([getattr(p, name) for p in parts if len(p)] or [getattr(parts[0], name)])[order]

        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])[order]
        names = sorted({k for p in parts if len(p) for k in p.extras})
        for p in parts:
            if len(p) and any(len(p.extras.get(k, ())) != len(p) for k in names):
                raise ValueError(
                    f"ScoredPool.concatenate: a shard's extras {sorted(p.extras)} do not cover its "
                    f"{len(p)} images for every name of {names}"
                )
        flat = {k: [a for p in parts for a in p.extras.get(k, [])] for k in names}
        extras = {k: [v[i] for i in order] for k, v in flat.items()}
        return cls(
            indices[order],
            cat("scores"),
            cat("empty"),
            joined("embeddings"),
            cat("num_detections"),
            joined("vectors"),
            extras,
        )


@dataclass
class SelectionInput:
    """Everything a selection step may use.

    Attributes:
        pool: the scored unlabelled images (candidates).
        labelled: the labelled images' reductions (embeddings for diversity methods), or ``None`` when the
            strategy does not set ``needs_labelled``.
        budget_hint: the number of images the loop expects to take (exact for image budgets, an estimate from
            boxes per labelled image for box budgets); hybrids size their candidate set from it.
        rng: the only source of randomness.
        labelled_class_counts: ``float64[C]`` ground-truth boxes per class (index ``l - 1`` for label ``l``)
            summed over the labelled images (for a stage that compares class distributions), or ``None`` when not
            known.
        num_labelled: number of labelled images.
        previewed_class_counts: ``pool indices -> float64[M, C]``, the ground-truth boxes per class of unlabelled
            images before they are bought; only an oracle that previews labels (a simulation) gives it, for a
            stage with ``needs_preview``; ``None`` otherwise.
    """

    pool: ScoredPool
    labelled: ScoredPool | None
    budget_hint: int
    rng: np.random.Generator
    labelled_class_counts: np.ndarray | None = None
    num_labelled: int = 0
    previewed_class_counts: Callable[[np.ndarray], np.ndarray] | None = None


@dataclass
class ScoringContext:
    """What a strategy's predictor may use beyond the model (``Strategy.predictor(model, context)``).

    Attributes:
        labelled: the labelled images (with their labels), for a predictor that needs them (e.g. a recursion over
            the labelled set).
        val: the validation split, or ``None`` when the run has none (a strategy with ``needs_val`` is refused
            before any work then).
        device: where to compute.
        batch_size: inference batch size.
        seed: this cycle's scoring seed (``(run seed, cycle, stage)``).
        stats_file: where a predictor may leave a small JSON of its own statistics (rank 0): ``stats_file(name)``
            is the path the run directory gives it for this cycle and scoring stage
            (:meth:`~activedet.al.rundir.CycleDir.stats`); ``None``: nowhere (scoring outside a run).
    """

    labelled: Any
    val: Any
    device: Any = "cpu"
    batch_size: int = 8
    seed: int = 0
    stats_file: Callable[[str], Path] | None = None


@dataclass(frozen=True)
class Strategy:
    """A query strategy.

    Attributes:
        name: registry name.
        description: one line for ``activedet strategies``.
        score: per-image informativeness, or ``None`` for strategies that do not score images (random, pure
            diversity).
        select: the selection step (see the module docstring).
        needs: optional :class:`Detections` fields the scoring pass must produce.
        needs_labelled: the labelled images must be passed through the model too (e.g. core-set distances).
        needs_inference: False only for strategies that never look at the model (random): the loop then skips
            the scoring pass entirely.
        predictor: ``(model, context=None) -> object with predict(images, fields)`` used for the scoring pass
            instead of the model (several stochastic passes, several trained models, gradients); ``None`` = the model
            itself. The loop passes a :class:`ScoringContext`; a capability check passes none (the predictor must
            then do no work). It raises ``ValueError`` saying what to change when the model cannot serve.
        combine: ``ScoredPool -> float64[M]`` for strategies whose ``score`` returns a vector per image
            (``float64[F]``): the pool-level step that turns the ``[M, F]`` vectors into one score per image
            (e.g. a normalisation over all detections of the pool); ``NaN`` marks an image with nothing to score.
        describe: ``Detections -> {name: array}``, per-image arrays kept for ``select`` in ``ScoredPool.extras``.
        needs_val: the predictor uses the validation split (the loop refuses to start without one).
        needs_preview: ``select`` reads the candidates' labels before they are bought
            (``SelectionInput.previewed_class_counts``): a simulation-only diagnostic, refused before any work with
            an oracle that cannot preview labels (people, or ``simulated_preview: false``).
        then, shortlist: the next stage of a chain and this stage's candidate factor: ``then`` scores only the
            first ``ceil(shortlist x budget_hint)`` picks of this stage (module docstring).
    """

    name: str
    description: str
    score: Callable[[Detections], float | None] | None
    select: Callable[[SelectionInput], Iterator[int]]
    needs: frozenset[str] = frozenset()
    needs_labelled: bool = False
    needs_inference: bool = True
    predictor: Callable[[Any], Any] | None = None
    combine: Callable[[ScoredPool], np.ndarray] | None = None
    describe: Callable[[Detections], dict[str, np.ndarray]] | None = None
    then: Strategy | None = None
    shortlist: float | None = None
    needs_val: bool = False
    needs_preview: bool = False

    def __post_init__(self) -> None:
        if (self.then is None) != (self.shortlist is None):
            raise ValueError(
                f"strategy '{self.name}': 'then' and 'shortlist' go together (a chained stage needs "
                f"its candidate factor); got then={self.then and self.then.name!r}, "
                f"shortlist={self.shortlist!r}"
            )

    @property
    def stages(self) -> list[Strategy]:
        """This strategy and the stages chained after it, in order."""
        out, stage = [], self
        while stage is not None:
            out.append(stage)
            stage = stage.then
        return out


def shortlist(stage: Strategy, inputs: SelectionInput) -> np.ndarray:
    """``int64`` pool indices: the first ``ceil(stage.shortlist x budget_hint)`` picks of ``stage``, the candidates
    its next stage scores."""
    if stage.shortlist is None:
        raise ValueError(f"strategy '{stage.name}' is not followed by another stage; it has no shortlist")
    return first_picks(stage, inputs, stage.shortlist)


def first_picks(strategy: Strategy, inputs: SelectionInput, factor: float) -> np.ndarray:
    """``int64`` pool indices: the first ``ceil(factor x budget_hint)`` picks of ``strategy`` (fewer when its
    candidates run out)."""
    n = math.ceil(factor * inputs.budget_hint)
    return np.fromiter(islice(strategy.select(inputs), n), np.int64)
