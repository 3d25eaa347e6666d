"""CALD, consistency-based active learning for detection (methods.md §6): the scores as pure functions, then
the strategy.

**Stage 1, consistency** ``C(x)`` (:func:`cald_consistency`) of one image's
:class:`~activedet.models.outputs.Detections` whose ``extras["views"]`` come from a
:class:`~activedet.models.views.ViewPredictor` (each view carrying ``extras["reference_boxes"]``):

1. References = the image's detections; more than ``subsample_above`` (40) of them: the ``max_references`` (50)
   at ranks ``round(linspace(0, n - 1, 50))`` (:func:`cald_references`; for 41-49 detections some ranks repeat,
   as in the released code, which changes neither the minimum nor the class scores).
2. For each view ``v`` and reference ``j``: ``k*`` = the view's detection of largest IoU with the mapped reference
   box (any class; the first on ties, all-zero IoU included), ``c_jv = |IoU_jk* + ½ (1 - JS(p_j, p_k*))
   (P_max(j) + P_max(k*)) - β|`` with ``β = 1.3``; ``JS`` in nats on the class vectors renormalised to sum 1,
   clipped at 0 (:func:`js_divergence`); ``P_max`` as :func:`~.localization.max_foreground_prob`.
3. ``C_v = min(1, min_j c_jv)``; a view without detections gives ``C_v = 0``; ``C(x) = mean_v C_v``.

Lower ``C`` = less consistent = more informative: the informativeness is ``-C(x)`` (in [-1, 0], so it keeps the
released code's order exactly). An image without detections has no consistency to measure: ``None``. The
released code gives it ``C = 0``, the most informative value, so the strategy's default ``empty_policy`` is
``"highest"``: such images come first.

**Stage 2, distribution-based selection** among the stage-1 shortlist:

* :func:`class_score_vector` ``q(x)``: for the original and each view, the per-class maximum detection score (0 for
  an absent class), averaged over the ``1 + V`` predictions. An image without detections has no views and
  ``q = 0``. The original's detections are the references the predictor kept (past 40 detections, the 50
  evenly spaced ones), as in the released code; a view's are all its detections.
* :func:`distribution_order` picks every all-zero ``q`` first, then by ``JS(softmax(n̄), softmax(q))``
  descending, ``n̄`` = mean GT boxes per class over the labelled images (0 without labelled images). The released
  code never updates ``n̄``; ``update=True`` adds each pick's ``q`` to the labelled set (its commented-out line).
  ``objective="uniform"`` is the released ``-u`` variant: after the all-zero rows, the smallest
  ``JS(softmax(n̄ + q), uniform)`` first, i.e. the candidates that bring the class distribution closest to
  balanced.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..models.outputs import Detections
from ..models.views import parse_views
from .base import SelectionInput, Strategy
from .checks import choice, flag, number, summary
from .localization import _checked_views, max_foreground_prob, pairwise_iou
from .predictors import view_predictor
from .registry import register
from .uncertainty import EMPTY_POLICIES, rank_select

__all__ = [
    "cald_references",
    "js_divergence",
    "view_consistency",
    "cald_consistency",
    "cald_informativeness",
    "class_score_vector",
    "distribution_order",
    "DISTRIBUTION_OBJECTIVES",
    "cald_distribution_select",
    "cald",
]

_EPS = 1e-12


def cald_references(num_detections: int, max_references: int = 50, subsample_above: int = 40) -> Tensor:
    """``int64`` indices of the reference detections: all of them, or ``max_references`` evenly spaced ranks
    when there are more than ``subsample_above``."""
    if num_detections <= subsample_above:
        return torch.arange(num_detections)
    return torch.from_numpy(np.round(np.linspace(0, num_detections - 1, max_references)).astype(np.int64))


def js_divergence(p: Tensor, q: Tensor) -> Tensor:
    """``float64[N]`` Jensen-Shannon divergence (nats) of the rows of ``p`` and ``q`` ``[N, K]``, each renormalised
    to sum 1, clipped at 0 (``0 log 0 = 0``)."""
    p = p.to(torch.float64).clamp_min(0)
    q = q.to(torch.float64).clamp_min(0)
    p = p / p.sum(dim=1, keepdim=True).clamp_min(_EPS)
    q = q / q.sum(dim=1, keepdim=True).clamp_min(_EPS)
    m = (p + q) / 2

    def kl(a: Tensor) -> Tensor:
        return (torch.special.xlogy(a, a) - torch.special.xlogy(a, m)).sum(dim=1)

    return (0.5 * kl(p) + 0.5 * kl(q)).clamp_min(0)


def view_consistency(
    ref_probs: Tensor, ref_pmax: Tensor, mapped_boxes: Tensor, view: Detections, beta: float = 1.3
) -> float:
    """``C_v`` of one view (module docstring, step 2-3): ``min(1, min_j c_jv)``, 0 when the view has no detection.

    Args:
        ref_probs, ref_pmax: ``[R, K]`` class vectors and ``[R]`` ``P_max`` of the references.
        mapped_boxes: ``[R, 4]`` the references mapped into the view's frame.
        view: the view's detections (with ``class_probs``).
    """
    if len(view) == 0:
        return 0.0
    ious = pairwise_iou(mapped_boxes, view.boxes)  # [R, K]
    best_iou, best = ious.max(dim=1)
    js = js_divergence(ref_probs, view.class_probs[best])
    pmax = max_foreground_prob(view, "cald")[best]
    values = (best_iou + 0.5 * (1 - js) * (ref_pmax + pmax) - beta).abs()
    return min(1.0, float(values.min()))


def cald_consistency(
    det: Detections, *, beta: float = 1.3, max_references: int = 50, subsample_above: int = 40
) -> float | None:
    """``C(x)`` of one image (module docstring); ``None`` when it has no detection. Raises ``ValueError`` when
    the views or class vectors are missing or do not match."""
    if len(det) == 0:
        return None
    views = _checked_views(det, "cald")
    keep = cald_references(len(det), max_references, subsample_above)
    ref_probs = det.class_probs[keep]
    ref_pmax = max_foreground_prob(det, "cald")[keep]
    per_view = [
        view_consistency(ref_probs, ref_pmax, view.extras["reference_boxes"][keep], view, beta) for view in views
    ]
    return float(np.mean(per_view))


def cald_informativeness(
    det: Detections, *, beta: float = 1.3, max_references: int = 50, subsample_above: int = 40
) -> float | None:
    """``-C(x)``: larger = less consistent = pick first; ``None`` without detections."""
    consistency = cald_consistency(det, beta=beta, max_references=max_references, subsample_above=subsample_above)
    return None if consistency is None else -consistency


def _num_classes(det: Detections) -> int:
    if det.class_probs is None or det.class_probs.dim() != 2:
        raise ValueError(
            "cald needs Detections.class_probs (its width gives the number of classes); the scoring "
            "pass did not fill it (strategy.needs must include 'class_probs')"
        )
    return int(det.class_probs.shape[1]) - (1 if det.prob_kind == "softmax" else 0)


def _class_maxima(det: Detections, num_classes: int) -> np.ndarray:
    maxima = torch.zeros(num_classes, dtype=torch.float64)
    if len(det):
        maxima.scatter_reduce_(0, det.labels.cpu() - 1, det.scores.detach().cpu().to(torch.float64), reduce="amax")
    return maxima.numpy()


def class_score_vector(det: Detections) -> np.ndarray:
    """``float64[C]`` ``q(x)``: per-class maximum detection score, averaged over the original and its views."""
    num_classes = _num_classes(det)
    per_prediction = [_class_maxima(d, num_classes) for d in [det, *(det.extras.get("views") or [])]]
    return np.mean(per_prediction, axis=0)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _js_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return js_divergence(torch.from_numpy(np.broadcast_to(p, q.shape).copy()), torch.from_numpy(q)).numpy()


DISTRIBUTION_OBJECTIVES = ("divergence", "uniform")


def distribution_order(
    class_scores: np.ndarray,
    labelled_class_counts: np.ndarray | None,
    num_labelled: int,
    *,
    update: bool = False,
    objective: str = "divergence",
) -> Iterator[int]:
    """Positions into ``class_scores`` ``[M, C]`` in CALD's stage-2 pick order (module docstring), lazily.

    Args:
        class_scores: ``q(x)`` of each candidate.
        labelled_class_counts: ``[C]`` GT boxes per class summed over the labelled images (``None`` = no labelled
            image).
        num_labelled: the number of labelled images (the mean's denominator).
        update: add each pick's ``q`` to the labelled set before the next pick (default False, as released).
        objective: ``"divergence"`` (default): the largest ``JS(softmax(n̄), softmax(q))`` first; ``"uniform"``
            (the released ``-u``): the smallest ``JS(softmax(n̄ + q), uniform)`` first.

    All-zero rows first, by position; then by the objective, ties by position.
    """
    if objective not in DISTRIBUTION_OBJECTIVES:
        raise ValueError(
            f"The 'objective' parameter of distribution_order must be one of "
            f"{list(DISTRIBUTION_OBJECTIVES)}. Got {objective!r} instead."
        )
    scores = np.asarray(class_scores, np.float64).reshape(len(class_scores), -1)
    num_classes = scores.shape[1]
    totals = (
        np.zeros(num_classes)
        if labelled_class_counts is None
        else np.asarray(labelled_class_counts, np.float64).reshape(num_classes)
    )
    count = float(num_labelled)
    zero = ~scores.any(axis=1)
    yield from (int(i) for i in np.flatnonzero(zero))
    if update:
        count += float(zero.sum())  # their q (zeros) joins the labelled set too
    remaining = np.flatnonzero(~zero)
    while len(remaining):
        mean = totals / count if count > 0 else np.zeros(num_classes)
        if objective == "uniform":
            key = _js_rows(np.full(num_classes, 1.0 / num_classes), _softmax(mean + scores[remaining]))
        else:
            key = -_js_rows(_softmax(mean), _softmax(scores[remaining]))
        order = np.lexsort((remaining, key))
        if not update:
            yield from (int(remaining[i]) for i in order)
            return
        pick = remaining[order[0]]
        yield int(pick)
        totals, count = totals + scores[pick], count + 1
        remaining = remaining[remaining != pick]


# ------------------------------------------------------------------------------------------------ strategies


def _cald_references(det: Any, *, max_references: int, subsample_above: int) -> Any:
    return cald_references(len(det), max_references, subsample_above)


def _class_scores(det: Any) -> dict[str, np.ndarray]:
    return {"class_scores": class_score_vector(det)}


def cald_distribution_select(
    inputs: SelectionInput, *, update: bool = False, objective: str = "divergence"
) -> Iterator[int]:
    """CALD stage 2: pool indices by :func:`~.cald.distribution_order` of the candidates' ``class_scores`` extras
    against ``inputs.labelled_class_counts`` / ``inputs.num_labelled``."""
    pool = inputs.pool
    if len(pool) == 0:
        return
    extras = pool.extras
    if "class_scores" not in extras:
        raise ValueError(
            "cald's distribution stage needs the class-score vector of each candidate "
            "(ScoredPool.extras['class_scores'], from the stage's describe); the pool has "
            f"{sorted(extras)}"
        )
    scores = np.stack([np.asarray(q, np.float64).reshape(-1) for q in extras["class_scores"]])
    counts = inputs.labelled_class_counts
    if counts is not None and np.asarray(counts).reshape(-1).shape[0] != scores.shape[1]:
        raise ValueError(
            f"cald: labelled_class_counts has {np.asarray(counts).size} classes but the detector's "
            f"class scores have {scores.shape[1]}"
        )
    for position in distribution_order(scores, counts, inputs.num_labelled, update=update, objective=objective):
        yield int(pool.indices[position])


@register("cald", needs={"views", "class_probs"}, requires={"passes"})
def cald(
    *,
    views: str = "FCDR",
    beta: float = 1.3,
    max_references: int = 50,
    subsample_above: int = 40,
    shortlist: float = 1.2,
    update_distribution: bool = False,
    empty_policy: str = "highest",
    distribution: str = "divergence",
) -> Strategy:
    """CALD: consistency of detections across augmented views, then class-distribution selection (§6).

    Stage 1 ranks the pool by ``-C(x)`` (least consistent first) and keeps each image's class-score vector from
    the same views; stage 2 (no inference) picks among the first ``shortlist x budget`` by the class-score
    distribution (formulas above). Every image costs ``1 + len(views)`` passes. Any detector.

    Options:
        views: CALD's augmentation letters (``"FCDR"``, the released default: flip, cutout, down-resize x0.8,
            rotation 5°; also ``G`` noise, ``N`` six noise levels, ``S`` salt and pepper; see
            :mod:`activedet.models.views`).
        beta: the base point of the consistency (1.3).
        max_references, subsample_above: more than ``subsample_above`` (40) detections: keep ``max_references``
            (50) at evenly spaced ranks as references (the released code's quirk).
        shortlist: stage-2 candidates = the first ``ceil(shortlist x budget)`` of stage 1 (1.2, the released ``mr``).
        update_distribution: stage 2 adds each pick's class scores to the labelled distribution before the next
            pick (``False``, as released).
        empty_policy: where images with no detection go in stage 1: ``"highest"`` (default; the released code's
            consistency 0 ranks them first), ``"lowest"``, ``"skip"``, ``"random_fill"``.
        distribution: stage 2's objective: ``"divergence"`` (default: the class scores least like the labelled
            distribution first) or ``"uniform"`` (the released ``-u`` option: the candidates that make the labelled
            distribution most balanced first).
    """
    number("cald", "beta", beta, float, 0, 3)
    choice("cald", "distribution", distribution, DISTRIBUTION_OBJECTIVES)
    number("cald", "max_references", max_references, int, 1)
    number("cald", "subsample_above", subsample_above, int, 1)
    number("cald", "shortlist", shortlist, float, 1)
    flag("cald", "update_distribution", update_distribution)
    choice("cald", "empty_policy", empty_policy, EMPTY_POLICIES)
    parse_views(views, owner="cald")
    references = functools.partial(
        _cald_references, max_references=int(max_references), subsample_above=int(subsample_above)
    )
    score = functools.partial(
        cald_informativeness, beta=float(beta), max_references=int(max_references), subsample_above=int(subsample_above)
    )
    stage1 = Strategy(
        "cald",
        summary(cald),
        score=score,
        describe=_class_scores,
        select=functools.partial(rank_select, empty_policy=empty_policy, strategy="cald"),
        needs=frozenset({"views", "class_probs"}),
        predictor=functools.partial(view_predictor, views=views, references=references),
    )
    stage2 = Strategy(
        "cald",
        summary(cald),
        score=None,
        needs_inference=False,
        select=functools.partial(cald_distribution_select, update=update_distribution, objective=distribution),
    )
    return dataclasses.replace(stage1, then=stage2, shortlist=float(shortlist))
