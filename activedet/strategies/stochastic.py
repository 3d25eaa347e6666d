"""Scores from several predictions of an image: MC-dropout passes or ensemble members (methods.md §2).

The predictions come from :class:`~activedet.models.StochasticPredictor`; two formulations read them.

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

import math

import torch
from torchvision.ops import box_iou

from ..models.outputs import Detections
from ..models.stochastic import prediction_entropy

__all__ = ["DENSE_MEASURES", "dense_stochastic_score", "cluster_predictions", "cluster_certainties",
           "detection_certainties", "matched_stochastic_score"]

DENSE_MEASURES = ("mutual_information", "entropy", "box_variance")


def dense_stochastic_score(det: Detections, *, measure: str = "mutual_information", score_threshold: float = 0.05,
                           aggregation: str = "max", topk: int = 10) -> float | None:
    """Dense formulation (module docstring). Needs ``dense_probs`` (the mean), ``dense_expected_entropy`` and
    ``dense_box_var``."""
    if det.dense_probs is None or det.dense_expected_entropy is None or det.dense_box_var is None:
        raise ValueError("the dense MC-dropout/ensemble score needs dense_probs, dense_expected_entropy and "
                         "dense_box_var from a StochasticPredictor over a single-stage detector; for Faster R-CNN "
                         "use strategy_options: {formulation: matched}")
    mean = det.dense_probs.float()
    foreground = mean[:, 1:] if det.prob_kind == "softmax" else mean
    if foreground.numel() == 0:
        return None
    keep = foreground.amax(dim=-1) >= score_threshold
    if not bool(keep.any()):
        return None
    if measure == "box_variance":
        values = det.dense_box_var[keep].float()
    else:
        values = prediction_entropy(mean[keep], det.prob_kind)
        if measure == "mutual_information":
            values = (values - det.dense_expected_entropy[keep].float()).clamp_min(0)
    if aggregation == "max":
        return float(values.max())
    return float(values.topk(min(topk, values.numel())).values.mean())


def cluster_predictions(passes: list[Detections], *, detection_threshold: float = 0.5, iou_threshold: float = 0.5,
                        same_label: bool = False) -> list[list[tuple[int, int]]]:
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
    ``det.passes``: its members are, per prediction, the detection of best IoU above ``iou_threshold``. A detection
    no prediction reproduces has certainty 0."""
    rows = []
    for j in range(len(det)):
        members = []
        for t, other in enumerate(det.passes or []):
            if len(other):
                overlap = box_iou(det.boxes[j:j + 1].float(), other.boxes.float())[0]
                best = int(overlap.argmax())
                if float(overlap[best]) > iou_threshold:
                    members.append((t, best))
        rows.append(cluster_certainties(det.passes, [members])[0] if members else torch.zeros(3, dtype=torch.float64))
    return torch.stack(rows) if rows else torch.zeros(0, 3, dtype=torch.float64)


def matched_stochastic_score(det: Detections, *, detection_threshold: float = 0.5, iou_threshold: float = 0.5,
                             same_label: bool = False, cluster_aggregation: str = "min") -> float | None:
    """Matched formulation (module docstring). Needs ``passes``."""
    if det.passes is None:
        raise ValueError("the matched MC-dropout/ensemble score needs the per-prediction detections ('passes') "
                         "from a StochasticPredictor")
    clusters = cluster_predictions(det.passes, detection_threshold=detection_threshold, iou_threshold=iou_threshold,
                                   same_label=same_label)
    if not clusters:
        return None
    certainty = cluster_certainties(det.passes, clusters).prod(dim=1)
    reduced = certainty.min() if cluster_aggregation == "min" else certainty.mean()
    return float(1 - reduced)
