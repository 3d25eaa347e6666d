"""Class balance: a selection step that favours the classes the labelled set has fewest boxes of.

On long-tailed data an uncertainty criterion keeps buying the frequent classes: they fill the pool, so they fill
its most uncertain images too. This step re-orders candidates by what they add to the rare classes. Each
candidate ``x`` is described by ``q(x)``, the per-class maximum score of its detections (0 for a class it shows
none of; detections below ``min_score`` are ignored), the detector's soft guess of which classes it holds. With
``n_c`` the ground-truth boxes of class ``c`` in the labelled set, picks are made greedily, each maximising

    gain(x) = sum_c q_c(x) / (n_c + 1) ** power

and each pick's ``q`` is added to ``n`` before the next (diminishing returns: ten images of one rare class are
not all picked before one of another). ``power`` 0 ignores the counts (most confident classes first), 1 (default)
weighs a class by the inverse of its labelled boxes. Ties, including every candidate with no detection
(gain 0), go by pool order. Chained after an uncertainty criterion (``strategy: [entropy, class_balance]``) it
picks among that criterion's shortlist (``factors``, default 2 x budget), so it re-ranks the most uncertain images
by class rather than replacing uncertainty.

With ``per_box`` the gain is divided by the boxes the image is expected to cost, ``1 + sum`` of its detection
scores (the scores are the expected number of true boxes, as in :mod:`activedet.al.cost`; the 1 stands for looking
at the image at all): an image holding one rare object beats one where the same rare object sits among five
frequent ones, which costs six boxes to label. Use it when boxes, not images, are what the annotation costs.

With ``classes: previewed`` (a simulation-only diagnostic) ``q_c(x)`` is 1 for each class the image's
ground-truth boxes hold and 0 otherwise, read from the simulated oracle before the image is bought: the same
selection with the detector's class guesses replaced by the truth, a ceiling on what better guesses could add.
A run with people refuses it before any work.

It is a general selection step rather than a published method: a greedy, inverse-frequency version of the
consistency method's class-distribution stage (methods.md §6) with the uncertainty shortlist of §7.5. Any detector; one
inference pass over its candidates (core fields only).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import torch

from ..models.outputs import Detections
from .base import SelectionInput, Strategy
from .checks import choice, flag, number, summary
from .registry import register

__all__ = ["class_balance", "class_presence", "balance_order"]


def class_presence(labels: np.ndarray, scores: np.ndarray, num_classes: int) -> np.ndarray:
    """``float64[C]``: the highest of ``scores`` for each class of ``labels`` (index ``l - 1`` for label ``l``), 0 for a
    class not among them."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    if len(labels) and (labels.min() < 1 or labels.max() > num_classes):
        raise ValueError(
            f"class_balance: detection labels must lie in 1..{num_classes} (the dataset's classes); "
            f"got {labels.min()}..{labels.max()}"
        )
    presence = np.zeros(num_classes)
    np.maximum.at(presence, labels - 1, np.asarray(scores, np.float64).reshape(-1))
    return presence


def balance_order(
    presence: np.ndarray, labelled_counts: np.ndarray | None, *, power: float = 1.0, cost: np.ndarray | None = None
) -> Iterator[int]:
    """Positions into ``presence`` ``[M, C]`` in greedy class-balance order (module docstring), lazily.

    ``labelled_counts``: ``[C]`` ground-truth boxes per class in the labelled set (``None``: all zero). ``cost``:
    ``[M]`` positive costs each gain is divided by (``None``: every candidate costs 1). Ties go to the earlier
    position.
    """
    presence = np.asarray(presence, np.float64).reshape(len(presence), -1)
    counts = np.zeros(presence.shape[1]) if labelled_counts is None else np.asarray(labelled_counts, np.float64)
    if counts.shape != (presence.shape[1],):
        raise ValueError(
            f"class_balance: the labelled set has counts for {counts.size} classes but the detections "
            f"describe {presence.shape[1]}"
        )
    cost = np.ones(len(presence)) if cost is None else np.asarray(cost, np.float64).reshape(-1)
    if cost.shape != (len(presence),) or not (np.isfinite(cost).all() and (cost > 0).all()):
        raise ValueError(
            f"class_balance: expected one positive, finite cost per candidate ({len(presence)}); "
            f"got {cost.size} values{f' in [{cost.min()}, {cost.max()}]' if cost.size else ''}"
        )
    remaining = np.arange(len(presence))
    while len(remaining):
        gain = presence[remaining] @ (1.0 / (counts + 1.0) ** power) / cost[remaining]
        best = int(np.argmax(gain))  # the first of equal gains
        if gain[best] <= 0:  # nothing left adds to any class: the rest in the order given
            yield from (int(i) for i in remaining)
            return
        pick = remaining[best]
        yield int(pick)
        counts = counts + presence[pick]
        remaining = np.delete(remaining, best)


def _describe(det: Detections, *, min_score: float) -> dict[str, np.ndarray]:
    keep = (det.scores >= min_score).cpu()
    labels, scores = det.labels.cpu()[keep], det.scores.detach().cpu()[keep]
    return {"labelled_scores": torch.stack([labels.double(), scores.double()], dim=1).reshape(-1, 2).numpy()}


def _select(inputs: SelectionInput, *, power: float, per_box: bool, previewed: bool) -> Iterator[int]:
    pool = inputs.pool
    if len(pool) == 0:
        return
    detections = pool.extras["labelled_scores"]
    counts = inputs.labelled_class_counts
    num_classes = (
        len(counts) if counts is not None else int(max((d[:, 0].max() for d in detections if len(d)), default=1))
    )
    if previewed:
        if inputs.previewed_class_counts is None:
            raise ValueError(
                "class_balance: classes 'previewed' reads the candidates' labels before they are bought, which only "
                "a simulated oracle that previews labels gives; use classes: predicted"
            )
        presence = (np.asarray(inputs.previewed_class_counts(pool.indices), np.float64) > 0).astype(np.float64)
    else:
        presence = np.stack([class_presence(d[:, 0], d[:, 1], num_classes) for d in detections])
    cost = np.array([1.0 + d[:, 1].sum() for d in detections]) if per_box else None
    for position in balance_order(presence, counts, power=power, cost=cost):
        yield int(pool.indices[position])


@register("class_balance")
def class_balance(
    *, power: float = 1.0, min_score: float = 0.05, per_box: bool = False, classes: str = "predicted"
) -> Strategy:
    """Class balance: candidates by what their predicted classes add to the classes with fewest labelled boxes.

    Options:
        power: how strongly rare classes are preferred: a class weighs ``1 / (labelled boxes + 1) ** power``
            (1.0; 0 ignores the labelled counts).
        min_score: detections scoring below this are not counted as evidence of their class (0.05).
        per_box: divide each candidate's gain by its expected boxes, ``1 +`` the sum of its detection scores at or
            above ``min_score`` (false): rare classes per box labelled rather than per image.
        classes: ``"predicted"`` (the detector's detections) or ``"previewed"``: the classes of each candidate's
            ground-truth boxes, read before it is bought; a simulation-only diagnostic (the module docstring).
    """
    number("class_balance", "power", power, float, 0, 4)
    number("class_balance", "min_score", min_score, float, 0, 1)
    flag("class_balance", "per_box", per_box)
    choice("class_balance", "classes", classes, ("predicted", "previewed"))
    return Strategy(
        "class_balance",
        summary(class_balance),
        score=None,
        describe=functools.partial(_describe, min_score=float(min_score)),
        select=functools.partial(_select, power=float(power), per_box=per_box, previewed=classes == "previewed"),
        needs_preview=classes == "previewed",
    )
