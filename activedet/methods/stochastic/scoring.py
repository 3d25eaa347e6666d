"""Scores from several predictions of an image: MC-dropout passes or ensemble members (methods.md §2).

The predictions come from :class:`~.model.StochasticPredictor`; two formulations read them.

**Dense** (single-stage detectors, whose anchors are the same in every prediction; §2.2). Per anchor ``a``, with
``p̄_a`` the mean class probabilities over the ``T`` predictions:

* ``entropy``: predictive entropy ``H[p̄_a]`` (sigmoid heads: summed binary entropies of the classes);
* ``mutual_information`` (BALD, the epistemic part): ``H[p̄_a] - mean_t H[p_a^t]``;
* ``box_variance``: ``mean_t ||δ_a^t - δ̄_a||²`` of the box regression output (encoded deltas).

Only anchors whose most likely foreground class has ``p̄ >= score_threshold`` count (the background anchors would
otherwise decide every score); the image score is their ``max`` or the mean of the ``topk`` largest. An image with
no such anchor has nothing to score.

**Matched** (any detector; the only one for Faster R-CNN; §2.3). Each prediction's detections with
``score >= detection_threshold`` are clustered greedily: predictions in order, detections in score order, each
joins the first cluster whose first member overlaps it with IoU > ``iou_threshold`` (and has its label, with
``same_label``) and that has no member of this prediction yet; otherwise it opens a cluster. Per cluster ``k``:

* semantic certainty ``mean_m (1 - H(p_m) / log K)`` over the members' ``C + 1`` softmax vectors; for sigmoid
  heads and one-class softmax heads ``1 - H_b(s_m) / log 2`` of the member's score;
* spatial certainty ``mean_m IoU(b_m, b̄_k)`` with ``b̄_k`` the coordinate-wise mean box;
* occurrence certainty ``min(1, n_k / T)``: a prediction that misses the object is evidence of uncertainty;

and ``u_k`` is their product. Image score ``1 - min_k u_k`` (``cluster_aggregation="min"``, maskAL's function
default) or ``1 - mean_k u_k`` (``"mean"``). No cluster: nothing to score.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torchvision.ops import box_iou

from ...models._common import has_head_dropout
from ...models.outputs import Detections
from ...plugins import BoxColumns
from ...strategies.base import Strategy
from ...strategies.checks import choice, flag, number, summary
from ...strategies.predictors import model_only
from ...strategies.registry import register
from ...strategies.uncertainty import EMPTY_POLICIES, rank_select
from .model import EnsembleDetector, StochasticPredictor, prediction_entropy

__all__ = [
    "DENSE_MEASURES",
    "dense_stochastic_score",
    "cluster_predictions",
    "cluster_certainties",
    "detection_certainties",
    "matched_stochastic_score",
    "FORMULATIONS",
    "mc_dropout",
    "ensemble",
    "BOX_COLUMNS",
    "PREDICTORS",
]

DENSE_MEASURES = ("mutual_information", "entropy", "box_variance")


def dense_stochastic_score(
    det: Detections,
    *,
    measure: str = "mutual_information",
    score_threshold: float = 0.05,
    aggregation: str = "max",
    topk: int = 10,
) -> float | None:
    """Dense formulation (module docstring). Needs ``dense_probs`` (the mean) and the extras
    ``dense_expected_entropy`` and ``dense_box_var`` (:mod:`.model`)."""
    expected_entropy, box_var = det.extras.get("dense_expected_entropy"), det.extras.get("dense_box_var")
    if det.dense_probs is None or expected_entropy is None or box_var is None:
        raise ValueError(
            "the dense MC-dropout/ensemble score needs dense_probs, dense_expected_entropy and "
            "dense_box_var from a StochasticPredictor over a single-stage detector; for Faster R-CNN "
            "use strategy_options: {formulation: matched}"
        )
    mean = det.dense_probs.float()
    foreground = mean[:, 1:] if det.prob_kind == "softmax" else mean
    if foreground.numel() == 0:
        return None
    keep = foreground.amax(dim=-1) >= score_threshold
    if not bool(keep.any()):
        return None
    if measure == "box_variance":
        values = box_var[keep].float()
    else:
        values = prediction_entropy(mean[keep], det.prob_kind)
        if measure == "mutual_information":
            values = (values - expected_entropy[keep].float()).clamp_min(0)
    if aggregation == "max":
        return float(values.max())
    return float(values.topk(min(topk, values.numel())).values.mean())


def cluster_predictions(
    passes: list[Detections], *, detection_threshold: float = 0.5, iou_threshold: float = 0.5, same_label: bool = False
) -> list[list[tuple[int, int]]]:
    """Greedy sequential clustering of the detections of ``T`` predictions (module docstring).

    Returns the clusters as lists of ``(prediction, detection index)``; at most one member per prediction.
    """
    clusters: list[list[tuple[int, int]]] = []
    representatives: list[tuple[torch.Tensor, int]] = []  # first member's box and label
    for t, det in enumerate(passes):
        taken: set[int] = set()
        for j in torch.nonzero(det.scores >= detection_threshold).flatten().tolist():
            box, label = det.boxes[j], int(det.labels[j])
            joined = None
            for k, (rep_box, rep_label) in enumerate(representatives):
                if k in taken or (same_label and rep_label != label):
                    continue
                if float(box_iou(rep_box[None], box[None])[0, 0]) > iou_threshold:
                    joined = k
                    break
            if joined is None:
                clusters.append([])
                representatives.append((box, label))
                joined = len(clusters) - 1
            clusters[joined].append((t, j))
            taken.add(joined)
    return clusters


def _semantic_certainty(det: Detections, j: int) -> float:
    if det.prob_kind == "softmax" and det.class_probs is not None and det.class_probs.shape[-1] > 2:
        probs = det.class_probs[j].float()
        return float(1 - prediction_entropy(probs, "softmax") / math.log(probs.numel()))
    s = float(det.scores[j])
    return 1 - float(prediction_entropy(torch.tensor([s]), "sigmoid")) / math.log(2)


def cluster_certainties(passes: list[Detections], clusters: list[list[tuple[int, int]]]) -> torch.Tensor:
    """``float64[K, 3]``: semantic, spatial and occurrence certainty of each cluster (module docstring); their
    product is the cluster certainty ``u_k``."""
    values = []
    for members in clusters:
        boxes = torch.stack([passes[t].boxes[j].float() for t, j in members])  # [n, 4]
        spatial = float(box_iou(boxes, boxes.mean(dim=0, keepdim=True)).mean())
        semantic = sum(_semantic_certainty(passes[t], j) for t, j in members) / len(members)
        occurrence = min(1.0, len(members) / len(passes))
        values.append([semantic, spatial, occurrence])
    return torch.tensor(values, dtype=torch.float64).reshape(-1, 3)


def detection_certainties(det: Detections, *, iou_threshold: float = 0.5) -> torch.Tensor:
    """``float64[N, 3]``: the certainty components of each of ``det``'s detections, from the predictions in
    ``det.extras["passes"]``: its members are, per prediction, the detection of best IoU above ``iou_threshold``. A
    detection no prediction reproduces has certainty 0."""
    passes = det.extras.get("passes") or []
    rows = []
    for j in range(len(det)):
        members = []
        for t, other in enumerate(passes):
            if len(other):
                overlap = box_iou(det.boxes[j : j + 1].float(), other.boxes.float())[0]
                best = int(overlap.argmax())
                if float(overlap[best]) > iou_threshold:
                    members.append((t, best))
        rows.append(cluster_certainties(passes, [members])[0] if members else torch.zeros(3, dtype=torch.float64))
    return torch.stack(rows) if rows else torch.zeros(0, 3, dtype=torch.float64)


def matched_stochastic_score(
    det: Detections,
    *,
    detection_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    same_label: bool = False,
    cluster_aggregation: str = "min",
) -> float | None:
    """Matched formulation (module docstring). Needs the extras ``passes`` (:mod:`.model`)."""
    passes = det.extras.get("passes")
    if passes is None:
        raise ValueError(
            "the matched MC-dropout/ensemble score needs the per-prediction detections ('passes') "
            "from a StochasticPredictor"
        )
    clusters = cluster_predictions(
        passes, detection_threshold=detection_threshold, iou_threshold=iou_threshold, same_label=same_label
    )
    if not clusters:
        return None
    certainty = cluster_certainties(passes, clusters).prod(dim=1)
    reduced = certainty.min() if cluster_aggregation == "min" else certainty.mean()
    return float(1 - reduced)


# ------------------------------------------------------------------------------------------------ strategies

FORMULATIONS = ("dense", "matched")


def _stochastic(
    name: str,
    factory: Callable,
    predictor: Callable,
    formulation: str,
    measure: str,
    score_threshold: float,
    aggregation: str,
    topk: int,
    detection_threshold: float,
    iou_threshold: float,
    same_label: bool,
    cluster_aggregation: str,
    empty_policy: str,
) -> Strategy:
    choice(name, "formulation", formulation, FORMULATIONS)
    choice(name, "measure", measure, DENSE_MEASURES)
    number(name, "score_threshold", score_threshold, float, 0, 1)
    choice(name, "aggregation", aggregation, ("max", "topk_mean"))
    number(name, "topk", topk, int, 1)
    number(name, "detection_threshold", detection_threshold, float, 0, 1)
    number(name, "iou_threshold", iou_threshold, float, 0, 1)
    flag(name, "same_label", same_label)
    choice(name, "cluster_aggregation", cluster_aggregation, ("min", "mean"))
    choice(name, "empty_policy", empty_policy, EMPTY_POLICIES)
    if formulation == "dense":
        predictor = functools.partial(_dense_predictor, predictor=predictor, strategy=name)
        score = functools.partial(
            dense_stochastic_score,
            measure=measure,
            score_threshold=float(score_threshold),
            aggregation=aggregation,
            topk=int(topk),
        )
        needs = frozenset({"dense_probs", "dense_expected_entropy", "dense_box_var"})
    else:
        predictor = functools.partial(model_only, build=predictor)
        score = functools.partial(
            matched_stochastic_score,
            detection_threshold=float(detection_threshold),
            iou_threshold=float(iou_threshold),
            same_label=same_label,
            cluster_aggregation=cluster_aggregation,
        )
        needs = frozenset({"passes"})
    return Strategy(
        name,
        summary(factory),
        score=score,
        needs=needs,
        predictor=predictor,
        select=functools.partial(rank_select, empty_policy=empty_policy, strategy=name),
    )


def _dense_predictor(model: Any, context: Any = None, *, predictor: Callable, strategy: str) -> Any:
    built = predictor(model)
    if not built.dense:
        raise ValueError(
            f"strategy '{strategy}' with formulation 'dense' needs a single-stage detector (the same "
            f"anchors in every prediction); {type(built.members[0]).__name__} is two-stage: set "
            "strategy_options: {formulation: matched}"
        )
    return built


@register(
    "mc_dropout",
    needs={"dense_probs", "dense_expected_entropy", "dense_box_var"},
    requires={"passes", "head_dropout"},
    defines={"head_dropout": "a detector trained with head dropout (detector_options: {dropout: ...})"},
)
def mc_dropout(
    *,
    passes: int = 20,
    formulation: str = "dense",
    measure: str = "mutual_information",
    score_threshold: float = 0.05,
    aggregation: str = "max",
    topk: int = 10,
    detection_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    same_label: bool = False,
    cluster_aggregation: str = "min",
    empty_policy: str = "lowest",
) -> Strategy:
    """MC-dropout: T stochastic passes of the head's dropout, dense (anchor) or box-matched uncertainty (§2).

    Needs a detector trained with head dropout (``detector_options: {dropout: 0.25}``). Formulas above.

    Options:
        passes: T, stochastic passes per image (20, maskAL's default); the backbone runs once.
        formulation: ``"dense"`` (single-stage detectors: per-anchor uncertainty) or ``"matched"`` (any detector,
            the only one for Faster R-CNN: detections clustered across passes).
        measure: dense: ``"mutual_information"`` (BALD, default), ``"entropy"`` (predictive) or ``"box_variance"``.
        score_threshold: dense: anchors whose mean top foreground probability is at least this count (0.05).
        aggregation, topk: dense: ``"max"`` over those anchors, or ``"topk_mean"`` of the ``topk`` largest.
        detection_threshold, iou_threshold, same_label: matched: detections with score >= 0.5 are clustered at
            IoU > 0.5 (maskAL's defaults), optionally only with detections of the same label.
        cluster_aggregation: matched: image score 1 - ``"min"`` (default) or 1 - ``"mean"`` cluster certainty.
        empty_policy: where images with nothing to score go (see ``least_confidence``).
    """
    number("mc_dropout", "passes", passes, int, 2)
    predictor = functools.partial(StochasticPredictor.mc_dropout, passes=int(passes))
    return _stochastic(
        "mc_dropout",
        mc_dropout,
        predictor,
        formulation,
        measure,
        score_threshold,
        aggregation,
        topk,
        detection_threshold,
        iou_threshold,
        same_label,
        cluster_aggregation,
        empty_policy,
    )


@register(
    "ensemble",
    needs={"dense_probs", "dense_expected_entropy", "dense_box_var"},
    requires={"passes", "ensemble"},
    defines={"ensemble": "ensemble_size >= 2 (training costs that many detectors)"},
)
def ensemble(
    *,
    formulation: str = "dense",
    measure: str = "mutual_information",
    score_threshold: float = 0.05,
    aggregation: str = "max",
    topk: int = 10,
    detection_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    same_label: bool = False,
    cluster_aggregation: str = "min",
    empty_policy: str = "lowest",
) -> Strategy:
    """Deep ensemble: disagreement of M independently trained detectors, dense or box-matched (§2).

    Needs ``ensemble_size`` >= 2 in the config (training costs M times the detector's); each member predicts once.

    Options (meanings as for ``mc_dropout``): formulation, measure, score_threshold, aggregation, topk,
    detection_threshold, iou_threshold, same_label, cluster_aggregation, empty_policy.
    """
    return _stochastic(
        "ensemble",
        ensemble,
        StochasticPredictor.ensemble,
        formulation,
        measure,
        score_threshold,
        aggregation,
        topk,
        detection_threshold,
        iou_threshold,
        same_label,
        cluster_aggregation,
        empty_policy,
    )


def _certainty_columns(det: Detections) -> dict[str, torch.Tensor]:
    parts = detection_certainties(det)
    return {
        "mc_semantic": parts[:, 0],
        "mc_spatial": parts[:, 1],
        "mc_occurrence": parts[:, 2],
        "mc_uncertainty": 1 - parts.prod(dim=1),
    }


#: ``activedet predict --uncertainty``'s per-box columns from several predictions (:mod:`activedet.plugins`): the
#: boxes are those of the mean prediction (single-stage) or the deterministic one (Faster R-CNN); each is matched to
#: its best-overlapping box of every pass (IoU > 0.5) and gets ``mc_semantic``, ``mc_spatial``, ``mc_occurrence``
#: certainties and ``mc_uncertainty = 1 - their product`` (:func:`detection_certainties`).
BOX_COLUMNS = {
    "passes": BoxColumns(
        fields=frozenset({"passes"}),
        columns=_certainty_columns,
        short={"mc_uncertainty": "mc.u", "mc_semantic": "mc.sem", "mc_spatial": "mc.spl", "mc_occurrence": "mc.occ"},
    )
}


def uncertainty_predictor(model: torch.nn.Module, strategy_options: dict[str, Any]) -> StochasticPredictor | None:
    """For ``activedet predict --uncertainty``: an ensemble of several members predicts one pass per member, a
    detector trained with head dropout ``passes`` (of the strategy options, or 20) passes; other models ``None``."""
    if isinstance(model, EnsembleDetector) and len(model.members) > 1:
        return StochasticPredictor.ensemble(model)
    if has_head_dropout(model):
        return StochasticPredictor.mc_dropout(model, passes=int(strategy_options.get("passes", 20)))
    return None


#: ``activedet predict --uncertainty``'s predictors (:mod:`activedet.plugins`).
PREDICTORS = {"stochastic": uncertainty_predictor}
