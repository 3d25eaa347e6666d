"""Localization tightness and localization stability (Kao et al., ACCV 2018; methods.md §5), as pure functions of
one image's :class:`~activedet.models.outputs.Detections`, and the two strategies. Larger = more informative;
``None`` = nothing to score.

``P_max(j)``, the confidence of detection ``j`` (:func:`max_foreground_prob`), is the largest entry of its class
vector without the background: columns ``1..C`` of the ``C + 1`` softmax row (Faster R-CNN, SSD), or the largest of
the ``C`` independent sigmoids (RetinaNet, FCOS), which can exceed the detection's own score when another class
of the same anchor is stronger.

* **LT/C** (§5.1, two-stage detectors: each detection's RPN proposal ``r_j``): ``J_j = |IoU(b_j, r_j) +
  P_max(j) - 1|``, small when tightness and confidence disagree; image value ``J = min_j J_j``; informativeness
  ``1 - J`` in [0, 1]. No detection: ``None`` (the released code initialises ``J`` at 1.0, informativeness 0, so
  such images rank last: the strategy's ``empty_policy="lowest"`` does the same explicitly).
* **LS+C / LS** (§5.2, any detector): the references are the ``max_references`` detections with the largest
  ``P_max`` (30, as the released code), taken from the detector's output as is (no score threshold beyond the
  detector's own, as the released code); each view ``n`` (noisy copy) gives ``C_n(j) = max_b IoU(b_j, b)`` over the
  view's detections (0 when it has none), ``S_B(j) = mean_n C_n(j)``, ``S_I = Σ_j P_max(j) S_B(j) / Σ_j P_max(j)``.
  LS+C: ``max_j (1 - P_max(j)) - S_I``; pure LS: ``-S_I``. No reference detection: ``None`` (the released code
  scores 0, i.e. mid-ranking; the strategy's ``empty_policy`` places them explicitly).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from ..methods.stochastic.model import predicting_detector
from ..models._common import broadcast_iou
from ..models.outputs import Detections
from .base import Strategy
from .checks import choice, flag, number, summary
from .predictors import view_predictor
from .registry import register
from .uncertainty import EMPTY_POLICIES, rank_select

__all__ = [
    "max_foreground_prob",
    "paired_iou",
    "pairwise_iou",
    "top_references",
    "localization_tightness",
    "localization_stability",
    "localization_tightness_strategy",
    "localization_stability_strategy",
]


def max_foreground_prob(det: Detections, method: str = "localization") -> Tensor:
    """``float64[N]`` ``P_max`` of each detection (module docstring). Raises ``ValueError`` when ``class_probs`` is
    missing, misshapen or non-finite, or ``prob_kind`` is unknown."""
    probs = det.class_probs
    if probs is None:
        raise ValueError(
            f"{method} needs Detections.class_probs; the scoring pass did not fill it "
            "(strategy.needs must include 'class_probs')"
        )
    if det.prob_kind not in ("softmax", "sigmoid"):
        raise ValueError(f"{method}: unknown Detections.prob_kind {det.prob_kind!r}; expected 'sigmoid' or 'softmax'")
    first = 1 if det.prob_kind == "softmax" else 0
    if probs.dim() != 2 or probs.shape[0] != len(det) or probs.shape[1] <= first:
        raise ValueError(
            f"{method}: class_probs must be [N={len(det)}, K>{first}] for a {det.prob_kind} head; "
            f"got {list(probs.shape)}"
        )
    probs = probs.detach().to(torch.float64)
    if not torch.isfinite(probs).all():
        raise ValueError(f"{method}: non-finite class_probs")
    if len(det) == 0:
        return probs.new_zeros(0)
    return probs[:, first:].max(dim=1).values


def paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """``float64[N]`` IoU of ``a[i]`` with ``b[i]`` (xyxy); 0 where the union is empty."""
    return broadcast_iou(a.to(torch.float64), b)


def pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """``float64[N, M]`` IoU of every ``a[i]`` with every ``b[k]`` (xyxy); 0 where the union is empty."""
    return broadcast_iou(a.to(torch.float64)[:, None, :], b[None, :, :])


def localization_tightness(det: Detections, *, with_classification: bool = True) -> float | None:
    """LT/C informativeness ``1 - min_j |IoU(b_j, r_j) + P_max(j) - 1|`` (module docstring), or with
    ``with_classification=False`` pure LT ``1 - min_j IoU(b_j, r_j)`` (the loosest box); ``None`` without
    detections. Raises ``ValueError`` when ``proposals`` is missing (a single-stage detector)."""
    if det.proposals is None:
        raise ValueError(
            "localization_tightness needs Detections.proposals (the RPN proposal of each detection), "
            "which only two-stage detectors give: use detector faster_rcnn"
        )
    if len(det) == 0:
        return None
    if det.proposals.shape != det.boxes.shape:
        raise ValueError(
            f"localization_tightness: proposals must be [N={len(det)}, 4]; got {list(det.proposals.shape)}"
        )
    tightness = paired_iou(det.boxes, det.proposals)
    if not with_classification:
        return 1.0 - float(tightness.min())
    disagreement = (tightness + max_foreground_prob(det, "localization_tightness") - 1).abs()
    return 1.0 - min(1.0, float(disagreement.min()))


def top_references(det: Detections, max_references: int = 30) -> Tensor:
    """``int64`` indices of the ``max_references`` detections with the largest ``P_max`` (all when fewer), in
    descending ``P_max`` order, ties by detection order."""
    pmax = max_foreground_prob(det, "localization_stability")
    order = torch.sort(-pmax, stable=True).indices
    return order[:max_references]


def localization_stability(
    det: Detections, *, with_classification: bool = True, max_references: int = 30
) -> float | None:
    """LS+C (``with_classification``) or pure LS informativeness of one image (module docstring).

    ``det.extras["views"]`` are the noisy copies, each with ``extras["reference_boxes"]`` = ``det.boxes`` in its
    frame (:mod:`activedet.models.views`). ``None`` when
    ``det`` has no detection. Raises ``ValueError`` when the views are missing or do not match ``det``.
    """
    if len(det) == 0:
        return None
    views = _checked_views(det, "localization_stability")
    keep = top_references(det, max_references)
    pmax = max_foreground_prob(det, "localization_stability")[keep]
    stability = torch.zeros(len(keep), dtype=torch.float64)
    for view in views:
        if len(view):
            ious = pairwise_iou(view.extras["reference_boxes"][keep], view.boxes)
            stability += ious.max(dim=1).values
    stability /= len(views)
    image_stability = float((pmax * stability).sum() / pmax.sum().clamp_min(1e-12))
    if not with_classification:
        return -image_stability
    return float((1 - pmax).max()) - image_stability


def _checked_views(det: Detections, method: str) -> list[Detections]:
    views = det.extras.get("views")
    if views is None:
        raise ValueError(
            f"{method} needs Detections.extras['views']; the scoring pass did not fill them (use the strategy's "
            "predictor, a ViewPredictor, and request 'views')"
        )
    if len(views) == 0:
        raise ValueError(f"{method}: an image with {len(det)} detections has no views")
    for v, view in enumerate(views):
        mapped = view.extras.get("reference_boxes")
        if mapped is None or mapped.shape[0] != len(det):
            got = None if mapped is None else list(mapped.shape)
            raise ValueError(
                f"{method}: view {v} must carry reference_boxes [{len(det)}, 4] (one per detection of "
                f"the image); got {got}"
            )
    return list(views)


# ------------------------------------------------------------------------------------------------ strategies


def _two_stage(model: Any, context: Any = None, *, strategy: str) -> Any:
    detector = predicting_detector(model)
    if "proposals" not in getattr(detector, "PROVIDES", frozenset()):
        raise ValueError(
            f"strategy '{strategy}' needs the RPN proposal of each detection, which only a two-stage "
            f"detector gives; {type(detector).__name__} is single-stage: use a two-stage detector "
            "such as faster_rcnn (detector: faster_rcnn)"
        )
    return model


@register("localization_tightness", needs={"proposals", "class_probs"}, requires={"two_stage"})
def localization_tightness_strategy(*, with_classification: bool = True, empty_policy: str = "lowest") -> Strategy:
    """Localization tightness (LT/C or LT): proposal-to-box IoU, against confidence with +C (two-stage, §5.1).

    Informativeness ``1 - min_j |IoU(box_j, proposal_j) + P_max(j) - 1|`` (formulas above);
    needs a two-stage detector (faster_rcnn), checked before any work.

    Options:
        with_classification: ``True`` (default, LT/C) as above; ``False`` (pure LT): ``1 - min_j IoU(box_j,
            proposal_j)``, the image with the loosest box first.
        empty_policy: where images with no detection go: ``"lowest"`` (default; the released code's J = 1.0 ranks
            them last), ``"highest"``, ``"skip"``, ``"random_fill"`` (see ``least_confidence``).
    """
    flag("localization_tightness", "with_classification", with_classification)
    choice("localization_tightness", "empty_policy", empty_policy, EMPTY_POLICIES)
    return Strategy(
        "localization_tightness",
        summary(localization_tightness_strategy),
        score=functools.partial(localization_tightness, with_classification=with_classification),
        select=functools.partial(rank_select, empty_policy=empty_policy, strategy="localization_tightness"),
        needs=frozenset({"proposals", "class_probs"}),
        predictor=functools.partial(_two_stage, strategy="localization_tightness"),
    )


@register("localization_stability", needs={"views", "class_probs"}, requires={"passes"})
def localization_stability_strategy(
    *,
    with_classification: bool = True,
    noise_levels: int = 6,
    noise_step: float = 8.0,
    max_references: int = 30,
    empty_policy: str = "lowest",
) -> Strategy:
    """Localization stability (LS+C or LS): IoU of the top detections with those of noisy copies (any detector, §5.2).

    Formulas above; the copies come from a :class:`~activedet.models.views.ViewPredictor`
    (1 + ``noise_levels`` passes per image).

    Options:
        with_classification: ``True`` (default, LS+C): ``max_j (1 - P_max(j)) - S_I``; ``False`` (pure LS):
            ``-S_I``.
        noise_levels, noise_step: the copies have Gaussian noise of std ``noise_step x n`` (0-255 scale) for
            ``n = 1..noise_levels`` (6 and 8, the paper's and the released code's).
        max_references: the detections with the largest ``P_max`` that are tracked (30, the released code).
        empty_policy: where images with no detection go: ``"lowest"`` (default; the released code scores them 0,
            mid-ranking), ``"highest"``, ``"skip"``, ``"random_fill"`` (see ``least_confidence``).
    """
    name = "localization_stability"
    flag(name, "with_classification", with_classification)
    number(name, "noise_levels", noise_levels, int, 1, 20)
    number(name, "noise_step", noise_step, float, 0, 255)
    number(name, "max_references", max_references, int, 1)
    choice(name, "empty_policy", empty_policy, EMPTY_POLICIES)
    references = functools.partial(top_references, max_references=int(max_references))
    return Strategy(
        name,
        summary(localization_stability_strategy),
        score=functools.partial(
            localization_stability, with_classification=with_classification, max_references=int(max_references)
        ),
        select=functools.partial(rank_select, empty_policy=empty_policy, strategy=name),
        needs=frozenset({"views", "class_probs"}),
        predictor=functools.partial(
            view_predictor, views=(int(noise_levels), float(noise_step)), references=references
        ),
    )
