"""Detection-level uncertainty, the baselines of methods.md §1: ``least_confidence``, ``margin`` and ``entropy``,
each a per-detection measure reduced to one score per image, then a ranking (random sampling: :mod:`.random`).

Per-detection values ``u`` (larger = more uncertain), for detections with ``score >= score_threshold``:

- ``least_confidence``: scores only ``1 - s``; softmax ``1 - max_{c>=1} p_c``; sigmoid ``1 - max_c σ_c``.
- ``margin``: scores only ``1 - |2s - 1|``; softmax ``1 - (p_(1) - p_(2))``, the two largest entries of the whole
  ``C+1`` row; sigmoid ``1 - (q_(1) - q_(2))`` over ``q = [σ_1, ..., σ_C, 1 - max_c σ_c]``.
- ``entropy``: scores only ``H_b(s)``; softmax ``H(p)`` over the ``C+1`` row; sigmoid ``Σ_c H_b(σ_c)``.

Here ``s`` is the detection score, ``p`` a softmax ``class_probs`` row ``[C+1]`` (column 0 = background) and ``σ`` a
sigmoid ``class_probs`` row ``[C]``; the class vector is used only with ``use_class_probs=True``.

* With scores only, the detection score ``s`` is treated as a two-way distribution ``[1 - s, s]`` (methods.md
  §1.2, §8), so ``prob_kind`` does not matter; ``prob_kind`` selects the column convention of ``class_probs``.
* Sigmoid margin: the competitors of the top class are the second class and "the top class is absent"
  (``1 - max σ``); with one class this is exactly the scores-only ``1 - |2s - 1|``.
* Entropies are in nats (natural log), with ``0 log 0 = 0``. ``H_b(s) = -s log s - (1 - s) log(1 - s)``.

Image score: ``aggregation`` over those values, ``max`` (default), ``mean``, ``sum`` or ``topk_mean`` (mean of the
``topk`` largest; all of them when there are fewer). No detection at or above the threshold: the image score is
``None`` and the selection's ``empty_policy`` decides (:func:`ranked_positions`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..models.outputs import Detections
from .base import ScoredPool, SelectionInput, Strategy
from .checks import choice, flag, number, summary
from .registry import register

__all__ = [
    "MEASURES",
    "AGGREGATIONS",
    "EMPTY_POLICIES",
    "binary_entropy",
    "detection_uncertainty",
    "aggregate",
    "image_uncertainty",
    "ranked_positions",
    "rank_select",
    "least_confidence",
    "margin",
    "entropy",
]

MEASURES = ("least_confidence", "margin", "entropy")
AGGREGATIONS = ("max", "mean", "sum", "topk_mean")
EMPTY_POLICIES = ("lowest", "highest", "skip", "random_fill")


def binary_entropy(p: Tensor) -> Tensor:
    """``H_b(p)`` elementwise, in nats, with ``0 log 0 = 0``."""
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))


def _top2_margin(probs: Tensor) -> Tensor:
    """``1 - (p_(1) - p_(2))`` per row of ``probs [N, K >= 2]``."""
    top = probs.topk(2, dim=1).values
    return 1 - (top[:, 0] - top[:, 1])


def detection_uncertainty(det: Detections, measure: str, use_class_probs: bool = False) -> Tensor:
    """``float64[N]`` uncertainty of every detection of ``det`` under ``measure`` (see the module table).

    Raises ``ValueError`` for non-finite inputs, a missing or misshapen ``class_probs``, or an unknown
    ``prob_kind``.
    """
    if not use_class_probs:
        return torch.from_numpy(
            _score_uncertainty(det.scores.detach().cpu().to(torch.float64).reshape(-1).numpy(), measure)
        )
    probs = _class_probs(det, measure)
    if det.prob_kind == "softmax":
        if measure == "least_confidence":
            return 1 - probs[:, 1:].max(dim=1).values
        if measure == "margin":
            return _top2_margin(probs)
        return -torch.special.xlogy(probs, probs).sum(dim=1)
    if measure == "least_confidence":
        return 1 - probs.max(dim=1).values
    if measure == "margin":
        absent = 1 - probs.max(dim=1, keepdim=True).values
        return _top2_margin(torch.cat([probs, absent], dim=1))
    return binary_entropy(probs).sum(dim=1)


def _class_probs(det: Detections, measure: str) -> Tensor:
    if det.prob_kind not in ("sigmoid", "softmax"):
        raise ValueError(f"{measure}: unknown Detections.prob_kind {det.prob_kind!r}; expected 'sigmoid' or 'softmax'")
    if det.class_probs is None:
        raise ValueError(
            f"{measure} with use_class_probs=True needs Detections.class_probs; the scoring pass "
            f"did not fill it (strategy.needs must include 'class_probs')"
        )
    probs = det.class_probs.detach().to(torch.float64)
    least = 2 if det.prob_kind == "softmax" else 1
    if probs.dim() != 2 or probs.shape[0] != len(det) or probs.shape[1] < least:
        raise ValueError(
            f"{measure}: class_probs must be [N={len(det)}, K>={least}] for a {det.prob_kind} "
            f"head; got {list(probs.shape)}"
        )
    if not torch.isfinite(probs).all():
        raise ValueError(f"{measure}: non-finite class_probs in detection {_first_bad(probs)}")
    return probs


def _first_bad(values: Tensor) -> int:
    bad = ~torch.isfinite(values.reshape(values.shape[0], -1)).all(dim=1)
    return int(bad.nonzero()[0, 0])


def _score_uncertainty(s: np.ndarray, measure: str) -> np.ndarray:
    """The uncertainty of each detection score alone (``use_class_probs=False``), in numpy: on the few values of
    one image its per-call cost is a tenth of torch's."""
    if measure == "least_confidence":
        return 1 - s
    if measure == "margin":
        return 1 - np.abs(2 * s - 1)
    if measure != "entropy":
        raise ValueError(f"unknown uncertainty measure {measure!r}; expected least_confidence, margin or entropy")
    t = 1 - s
    return -(s * np.log(np.where(s > 0, s, 1.0)) + t * np.log(np.where(t > 0, t, 1.0)))  # 0 log 0 = 0


def aggregate(values: np.ndarray, aggregation: str, topk: int = 3) -> float:
    """Reduce ``float64[n >= 1]`` per-detection values to one image score."""
    if aggregation == "max":
        return float(values.max())
    if aggregation == "mean":
        return float(values.mean())
    if aggregation == "sum":
        return float(values.sum())
    return float(np.sort(values)[::-1][: min(topk, len(values))].mean())


def image_uncertainty(
    det: Detections,
    *,
    measure: str,
    score_threshold: float = 0.05,
    aggregation: str = "max",
    topk: int = 3,
    use_class_probs: bool = False,
) -> float | None:
    """One image's uncertainty: ``aggregation`` of :func:`detection_uncertainty` over detections with
    ``score >= score_threshold``; ``None`` when there is none (an empty image).

    Raises ``ValueError`` if any detection score (thresholded or not) or used class vector is non-finite: a NaN
    score would otherwise silently fail the threshold test.
    """
    # numpy, not torch: on the few values of one image its per-call cost is a tenth (pools of millions)
    scores = det.scores.detach().reshape(-1).cpu().numpy().astype(np.float64)
    finite = np.isfinite(scores)
    if not finite.all():
        raise ValueError(f"{measure}: non-finite detection score in detection {int(np.argmin(finite))}")
    keep = scores >= score_threshold
    if not keep.any():
        return None
    if use_class_probs:
        values = detection_uncertainty(det, measure, use_class_probs)[torch.from_numpy(keep)].numpy()
    else:
        values = _score_uncertainty(scores[keep], measure)
    value = aggregate(values, aggregation, topk)
    if not np.isfinite(value):
        raise ValueError(f"{measure}: non-finite image score {value}")
    return value


def _check_scores(pool: ScoredPool, strategy: str) -> None:
    bad = ~pool.empty & ~np.isfinite(pool.scores)
    if bad.any():
        index = int(pool.indices[bad.argmax()])
        raise ValueError(f"{strategy}: non-finite score {pool.scores[bad.argmax()]} for pool index {index}")


def ranked_positions(pool: ScoredPool, empty_policy: str, rng: np.random.Generator) -> np.ndarray:
    """``int64`` positions into ``pool``, most informative first, with the empty images placed by ``empty_policy``.

    Scored images by score, descending; ties by pool index, ascending (deterministic, no randomness). Empty
    images (``pool.empty``): ``"lowest"`` after every scored image, ``"highest"`` before, both by pool index;
    ``"skip"`` never; ``"random_fill"`` after every scored image in a random order from ``rng``.
    """
    scored = np.flatnonzero(~pool.empty)
    scored = scored[np.lexsort((pool.indices[scored], -pool.scores[scored]))]
    empty = np.flatnonzero(pool.empty)
    empty = empty[np.argsort(pool.indices[empty], kind="stable")]
    if empty_policy == "lowest":
        return np.concatenate([scored, empty])
    if empty_policy == "highest":
        return np.concatenate([empty, scored])
    if empty_policy == "skip":
        return scored
    return np.concatenate([scored, empty[rng.permutation(len(empty))]])


def rank_select(
    inputs: SelectionInput, *, empty_policy: str = "lowest", strategy: str = "uncertainty"
) -> Iterator[int]:
    """Yield pool indices by :func:`ranked_positions` (raises ``ValueError`` naming a non-finite score's index)."""
    _check_scores(inputs.pool, strategy)
    for position in ranked_positions(inputs.pool, empty_policy, inputs.rng):
        yield int(inputs.pool.indices[position])


# ------------------------------------------------------------------------------------------------ strategies


def _uncertainty(
    measure: str,
    factory: Callable,
    score_threshold: float,
    aggregation: str,
    topk: int,
    use_class_probs: bool,
    empty_policy: str,
) -> Strategy:
    number(measure, "score_threshold", score_threshold, float, 0, 1)
    choice(measure, "aggregation", aggregation, AGGREGATIONS)
    number(measure, "topk", topk, int, 1)
    flag(measure, "use_class_probs", use_class_probs)
    choice(measure, "empty_policy", empty_policy, EMPTY_POLICIES)
    score = functools.partial(
        image_uncertainty,
        measure=measure,
        score_threshold=float(score_threshold),
        aggregation=aggregation,
        topk=int(topk),
        use_class_probs=use_class_probs,
    )
    select = functools.partial(rank_select, empty_policy=empty_policy, strategy=measure)
    needs = frozenset({"class_probs"}) if use_class_probs else frozenset()
    return Strategy(measure, summary(factory), score=score, select=select, needs=needs)


@register("least_confidence")
def least_confidence(
    *,
    score_threshold: float = 0.05,
    aggregation: str = "max",
    topk: int = 3,
    use_class_probs: bool = False,
    empty_policy: str = "lowest",
) -> Strategy:
    """Least confidence of the detections, 1 - s (or 1 - max class probability), reduced per image.

    Options (shared by ``margin`` and ``entropy``; per-detection formulas in :mod:`.uncertainty`):
        score_threshold: detections with ``score >= score_threshold`` are scored (0.05, the usual test threshold).
        aggregation: ``"max"`` | ``"mean"`` | ``"sum"`` | ``"topk_mean"`` over those detections (methods.md §0.3).
        topk: k of ``topk_mean`` (3: close to the typical number of objects per image, about 2.5 in VOC, so the
            score averages over the objects present instead of being set by one near-threshold duplicate, and it
            does not grow with crowding as ``sum`` does).
        use_class_probs: use the full class vector (``needs={"class_probs"}``) instead of the score alone.
        empty_policy: where images with no detection at or above the threshold go: ``"lowest"`` (after every
            scored image), ``"highest"`` (first), ``"skip"`` (never selected), ``"random_fill"`` (after every
            scored image, in random order). Ties between scored images: by pool index.
    """
    return _uncertainty(
        "least_confidence", least_confidence, score_threshold, aggregation, topk, use_class_probs, empty_policy
    )


@register("margin")
def margin(
    *,
    score_threshold: float = 0.05,
    aggregation: str = "max",
    topk: int = 3,
    use_class_probs: bool = False,
    empty_policy: str = "lowest",
) -> Strategy:
    """Margin (1-vs-2) uncertainty of the detections, 1 - (p(1) - p(2)), reduced per image.

    Options as :func:`least_confidence`.
    """
    return _uncertainty("margin", margin, score_threshold, aggregation, topk, use_class_probs, empty_policy)


@register("entropy")
def entropy(
    *,
    score_threshold: float = 0.05,
    aggregation: str = "max",
    topk: int = 3,
    use_class_probs: bool = False,
    empty_policy: str = "lowest",
) -> Strategy:
    """Entropy of the detections (binary of the score, or of the class vector), reduced per image.

    Options as :func:`least_confidence`.
    """
    return _uncertainty("entropy", entropy, score_threshold, aggregation, topk, use_class_probs, empty_policy)
