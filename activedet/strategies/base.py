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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..models.outputs import Detections

__all__ = ["Strategy", "ScoredPool", "SelectionInput"]


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
    """

    indices: np.ndarray
    scores: np.ndarray
    empty: np.ndarray
    embeddings: np.ndarray | None = None
    num_detections: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    vectors: np.ndarray | None = None

    def __len__(self) -> int:
        return int(len(self.indices))

    @classmethod
    def collect(cls, items: Iterable[tuple[int, Detections]], strategy: "Strategy") -> "ScoredPool":
        """Reduce ``(pool_index, Detections)`` pairs one at a time with ``strategy.score`` (and keep embeddings).

        For a strategy with a pool-level ``combine`` step, ``score`` returns a vector per image; they are kept in
        ``vectors`` and ``scores`` stay ``NaN`` until :meth:`finalize`.
        """
        indices, scores, counts, embeddings, vectors = [], [], [], [], []
        for index, det in items:
            try:
                value = strategy.score(det) if strategy.score is not None else 0.0
            except ValueError as exc:
                raise ValueError(f"pool index {index}: {exc}") from None
            if strategy.combine is not None:
                vectors.append(np.asarray(value, np.float64))
                value = None
            elif value is not None and not np.isfinite(value):
                raise ValueError(f"pool index {index}: strategy '{strategy.name}' scored {value}; scores must be "
                                 "finite (None marks an image with nothing to score)")
            indices.append(index)
            scores.append(np.nan if value is None else float(value))
            counts.append(len(det))
            if "embedding" in strategy.needs:
                embeddings.append(det.embedding.float().numpy())
        pool = cls.from_lists(indices, scores, counts, embeddings if "embedding" in strategy.needs else None)
        if strategy.combine is not None:
            pool.vectors = np.stack(vectors) if vectors else np.zeros((0, 0))
        return pool

    def finalize(self, strategy: "Strategy") -> "ScoredPool":
        """The pool with ``strategy.combine`` applied to the gathered vectors (unchanged for per-image scores)."""
        if strategy.combine is None:
            return self
        scores = np.asarray(strategy.combine(self), np.float64)
        if scores.shape != (len(self),) or np.isinf(scores).any():
            raise ValueError(f"strategy '{strategy.name}': the pool-level step returned {scores.shape} scores with "
                             f"{int(np.isinf(scores).sum())} infinite; expected {len(self)} finite or NaN values")
        return ScoredPool(self.indices, scores, np.isnan(scores), self.embeddings, self.num_detections)

    @classmethod
    def from_lists(cls, indices, scores, counts, embeddings=None) -> "ScoredPool":
        scores = np.asarray(scores, np.float64)
        emb = None
        if embeddings is not None:
            emb = np.stack(embeddings).astype(np.float32) if len(embeddings) else np.zeros((0, 0), np.float32)
        return cls(np.asarray(indices, np.int64), scores, np.isnan(scores), emb, np.asarray(counts, np.int64))

    @classmethod
    def concatenate(cls, parts: list["ScoredPool"]) -> "ScoredPool":
        """Join shards (e.g. gathered from torchrun processes), sorted by pool index for a rank-independent order."""
        indices = np.concatenate([p.indices for p in parts]) if parts else np.zeros(0, np.int64)
        order = np.argsort(indices, kind="stable")

        def joined(name: str) -> np.ndarray | None:
            if not parts or getattr(parts[0], name) is None:
                return None
            return np.concatenate([getattr(p, name) for p in parts if len(p)] or [getattr(parts[0], name)])[order]

        cat = (lambda name: np.concatenate([getattr(p, name) for p in parts])[order])
        return cls(indices[order], cat("scores"), cat("empty"), joined("embeddings"), cat("num_detections"),
                   joined("vectors"))


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
    """

    pool: ScoredPool
    labelled: ScoredPool | None
    budget_hint: int
    rng: np.random.Generator


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
        predictor: ``model -> object with predict(images, fields)`` used for the scoring pass instead of the model
            (several stochastic passes, an ensemble's members); ``None`` = the model itself. It raises
            ``ValueError`` saying what to change when the model cannot serve the strategy.
        combine: ``ScoredPool -> float64[M]`` for strategies whose ``score`` returns a vector per image
            (``float64[F]``): the pool-level step that turns the ``[M, F]`` vectors into one score per image
            (AL-MDN normalises over all detections of the pool); ``NaN`` marks an image with nothing to score.
    """

    name: str
    description: str
    score: Callable[[Detections], float | None] | None
    select: Callable[[SelectionInput], Iterator[int]]
    needs: frozenset[str] = frozenset()
    needs_labelled: bool = False
    needs_inference: bool = True
    predictor: Callable[[Any], Any] | None = None
    combine: Callable[["ScoredPool"], np.ndarray] | None = None
