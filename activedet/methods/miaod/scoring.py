"""MI-AOD (methods.md §3.3): an anchor-level (dense) score, from every anchor of an image before score thresholding
and NMS; the detector with the two adversarial classifiers is :mod:`.model`.

Per anchor ``i`` the disagreement of the two adversarial classifiers,
``u_i = mean_c (p1[i, c] - p2[i, c])^2`` (the released code), or with ``weighted=True`` the paper's re-weighted
``u_i = mean_c |p1[i, c] - p2[i, c]| * w[i, c]``; the image score is the mean of the ``k`` largest ``u_i``.

``k``: the released code takes a fixed ``k = 10000`` whatever the image size (an image with fewer anchors averages
all of them); that is ``topk_fraction=None``. At 1000x600 input an image has about 68,000-117,000 anchors, so
10,000 is roughly the top 10-15 %; a fixed 10,000 averages every anchor of a small image (a 128 px image has about
3,000). ``topk_fraction=0.1`` (the default) keeps the same share on any size: ``k = min(topk, ceil(0.1 * A))``.
"""

from __future__ import annotations

import functools
import math

import torch

from ...models.outputs import Detections
from ...plugins import BoxColumns
from ...strategies.base import Strategy
from ...strategies.checks import flag, number, summary
from ...strategies.registry import register
from ...strategies.uncertainty import rank_select

__all__ = ["anchor_disagreement", "discrepancy_score", "topk_count", "miaod", "BOX_COLUMNS"]


def topk_count(num_anchors: int, topk: int, topk_fraction: float | None) -> int:
    """``k = min(topk, ceil(topk_fraction * num_anchors))``, at least 1 (for a non-empty image); with
    ``topk_fraction=None`` the released fixed ``k = topk`` (``min(topk, num_anchors)`` anchors are averaged)."""
    if topk_fraction is None:
        return max(1, min(topk, num_anchors))
    return max(1, min(topk, math.ceil(topk_fraction * num_anchors)))


def anchor_disagreement(
    probs_1: torch.Tensor, probs_2: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``float[A]``: ``mean_c (p1 - p2)^2``, or ``mean_c |p1 - p2| * w`` when ``weights`` ``[A, C]`` are given."""
    if weights is None:
        return (probs_1.float() - probs_2.float()).pow(2).mean(dim=-1)
    return ((probs_1.float() - probs_2.float()).abs() * weights.float()).mean(dim=-1)


def discrepancy_score(
    det: Detections, *, topk: int = 10000, topk_fraction: float | None = 0.1, weighted: bool = False
) -> float | None:
    """MI-AOD image uncertainty: mean of the ``k`` largest anchor disagreements (module docstring).

    Needs ``dense_probs`` and the extras ``dense_probs_2`` (and ``dense_weights`` when ``weighted``) of
    :mod:`.model`. ``None`` only for an image with no anchor at all.
    """
    probs_2, weights = det.extras.get("dense_probs_2"), det.extras.get("dense_weights")
    if det.dense_probs is None or probs_2 is None or (weighted and weights is None):
        raise ValueError(
            "the MI-AOD score needs dense_probs and dense_probs_2 (and dense_weights when weighted) "
            "from a detector with two adversarial classifiers (detector: miaod)"
        )
    values = anchor_disagreement(det.dense_probs, probs_2, weights if weighted else None)
    if values.numel() == 0:
        return None
    k = topk_count(values.numel(), topk, topk_fraction)
    return float(values.topk(k).values.mean())


@register(
    "miaod",
    needs={"dense_probs", "dense_probs_2"},
    requires={"miaod_detector"},
    defines={"miaod_detector": "the miaod detector (two adversarial classifiers)"},
)
def miaod(*, topk: int = 10000, topk_fraction: float | None = 0.1, weighted: bool = False) -> Strategy:
    """MI-AOD: mean of the top-k anchor disagreements of the two adversarial classifiers (detector: miaod).

    Options (methods.md §3.3; formulas above):
        topk, topk_fraction: ``k = min(topk, ceil(topk_fraction x anchors))``: 10,000 on large images, the top
            10 % of anchors on small ones; ``topk_fraction: null``: the released fixed ``k = topk`` whatever the
            anchor count (an image with fewer anchors averages all of them).
        weighted: ``False`` (default, the released code): squared disagreement; ``True``: the paper's
            |p1 - p2| re-weighted by the MIL instance weights.
    """
    number("miaod", "topk", topk, int, 1)
    if topk_fraction is not None:
        number("miaod", "topk_fraction", topk_fraction, float, 0, 1, extra=" or None (the released fixed k)")
        if topk_fraction == 0:
            raise ValueError(
                "The 'topk_fraction' parameter of miaod must be a float in (0, 1] or None (the released "
                "fixed k). Got 0 instead."
            )
    flag("miaod", "weighted", weighted)
    fraction = None if topk_fraction is None else float(topk_fraction)
    score = functools.partial(discrepancy_score, topk=int(topk), topk_fraction=fraction, weighted=weighted)
    needs = frozenset({"dense_probs", "dense_probs_2"} | ({"dense_weights"} if weighted else set()))
    return Strategy(
        "miaod",
        summary(miaod),
        score=score,
        select=functools.partial(rank_select, empty_policy="lowest", strategy="miaod"),
        needs=needs,
    )


#: ``activedet predict``'s per-box column for a detector with two classifiers (:mod:`activedet.plugins`):
#: ``disagreement``, ``mean_c (p1 - p2)^2`` at the box's source anchor, the instance uncertainty the image score is
#: built from; shown for every prediction.
BOX_COLUMNS = {
    "class_probs_2": BoxColumns(
        fields=frozenset({"class_probs", "class_probs_2"}),
        columns=lambda det: {"disagreement": anchor_disagreement(det.class_probs, det.extras["class_probs_2"])},
        short={"disagreement": "dis"},
        always=True,
    )
}
