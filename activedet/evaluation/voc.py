"""PASCAL VOC mean average precision, vectorised over the whole test set, under two rule sets.

Rules
-----
``rules="devkit"`` reproduces the official VOC devkit (``VOCevaldet.m``, and its Python port in py-faster-rcnn's
``voc_eval.py``), the rules behind published VOC numbers:

* Boxes are taken in VOC's 1-based inclusive pixel indices, the inverse of :func:`activedet.data.read_voc`
  (``xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2``; predictions live in the same frame as the records, so
  they are converted the same way), and widths, heights, intersections and areas get the devkit's ``+ 1``. For a
  VOC file this is exactly the devkit's arithmetic on the file's own integers.
* A detection matches its max-IoU GT only when ``IoU > iou_threshold`` (strictly).
* 11-point AP uses the devkit's recall points ``np.arange(0, 1.1, 0.1)`` (``0.30000000000000004``, ... as the
  py-faster-rcnn port has them): a recall of exactly 0.3, 0.6 or 0.7 does not reach "its" point.
  ``mAP_11pt`` is the VOC2007 metric, ``mAP_area`` the VOC2010+ one.

``rules="continuous"`` (the default of this function; what the config uses for data that is not in VOC format):

* Boxes are ``xyxy`` in continuous pixel coordinates (pixel *edges*, as in :mod:`activedet.data.records`), so
  ``width = x2 - x1`` and ``IoU = intersection / union`` with no ``+ 1``. Because :func:`~activedet.data.read_voc`
  already turns ``xmin`` into ``xmin - 1``, this is the same IoU as the devkit's on VOC data (up to float
  rounding): the two rule sets differ only in the two points below.
* A detection matches when ``IoU >= iou_threshold``.
* 11-point AP uses the exact recall points ``i / 10``.

Both rule sets share everything else:

* **Matching** follows the VOC devkit (and mmdetection's ``eval_map``, which matches at ``IoU >= 0.5``). Within one
  image, a detection of class ``c`` is compared with every ground-truth (GT) box of class ``c``, ignored ones
  included, and takes the one with the largest IoU (the first in annotation order on ties). If that IoU does not
  match (see the rules) the detection is a false positive (FP). Otherwise, if the GT is *ignored* the detection is
  ignored too (neither TP nor FP); if the GT was already claimed by a higher-scored detection it is an FP
  (duplicate); else it is a true positive (TP) and claims the GT. A detection whose max-IoU GT is taken is an FP
  even when a second, unclaimed GT also overlaps it enough (devkit behaviour; COCO would try the next GT). Because
  the max-IoU GT does not depend on what was claimed before, the greedy pass reduces to "the first detection in
  score order that points at a GT is its TP", which is what makes the computation vectorisable.
* **Ignored GTs** are the ``difficult`` ones (VOC) and, beyond the VOC devkit, the ``iscrowd`` ones (COCO crowd
  regions are not objects to find; VOC records have none). They do not count in recall.
* **Ranking**: per class, detections are sorted by score (descending) over the whole set; ties keep the input order
  (image index, then position in the image's prediction). The devkit's unstable sort leaves ties arbitrary (with
  tied scores, the only way ``rules="devkit"`` can differ from the devkit beyond float rounding).
* **Recall** is ``TP / num_gt`` with ``num_gt`` the number of GT boxes of the class that are not ignored.
* **11-point AP (VOC2007)**: ``mean over the 11 recall points t of max(precision[recall >= t])`` (0 when no recall
  reaches ``t``); the points depend on the rules (above).
* **Area AP (VOC2010+, "all-point")**: precision made monotonically non-increasing from the right, then
  ``sum (r[i+1] - r[i]) * p_interp(r[i+1])`` over the recall change points.
* **mAP** is the mean over the classes with at least one GT that is not ignored. A class without one has AP ``NaN``
  (``num_gt == 0`` in ``per_class``) and is excluded; if no class has a GT, mAP is ``NaN``.

The helpers that turn inputs into flat arrays (``_as_dataset``, ``_flatten_ground_truth``,
``_flatten_predictions``, ``_pairs_with_equal_key``, ``_paired_iou``) are shared with :mod:`.coco` and
:mod:`.froc`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from activedet.data.records import DetectionDataset, ImageRecord
from activedet.models.outputs import Detections

__all__ = ["voc_map", "VOC_RULES"]

#: The rule sets :func:`voc_map` offers (see the module docstring).
VOC_RULES = ("devkit", "continuous")

_PREDICTION_KEYS = ("boxes", "scores", "labels")
_TO_DEVKIT = np.array([1.0, 1.0, 0.0, 0.0])  # record xyxy -> VOC (xmin, ymin, xmax, ymax), as write_voc converts
# The 11 recall points: exact ones, and the devkit's (np.arange accumulates 0.1, so 0.30000000000000004 etc.).
_RECALL_POINTS = {"continuous": np.arange(11) / 10.0, "devkit": np.arange(0.0, 1.1, 0.1)}


def voc_map(
    dataset: DetectionDataset | Sequence[ImageRecord],
    predictions: Sequence[Any],
    *,
    class_names: Sequence[str] | None = None,
    iou_threshold: float = 0.5,
    rules: str = "continuous",
) -> dict[str, Any]:
    """PASCAL VOC AP per class and mAP, in both the 11-point and the area variant (see the module docstring).

    Args:
        dataset: ground truth, a :class:`DetectionDataset` or a list of :class:`ImageRecord` (then give
            ``class_names``). Boxes ``float32[N, 4]`` xyxy pixels, labels in ``1..C``; ``difficult`` and
            ``iscrowd`` GTs are ignored.
        predictions: one entry per record, in the same order: a :class:`Detections` or a mapping with ``"boxes"``
            (``[N, 4]`` xyxy original-image pixels), ``"scores"`` (``[N]``) and ``"labels"`` (``[N]`` in ``1..C``);
            torch tensors or numpy arrays. An image without detections needs an entry with ``N = 0``.
        class_names: the ``C`` class names, only when ``dataset`` is a list of records.
        iou_threshold: IoU in ``(0, 1]`` a detection needs to match a GT box (``>=``; ``>`` under the devkit rules).
        rules: ``"devkit"`` (the official VOC devkit: ``+ 1`` pixel boxes, ``IoU > 0.5``, its 11 recall points) or
            ``"continuous"`` (continuous pixel boxes, ``IoU >= 0.5``, exact recall points); see the module docstring.

    Returns:
        ``{"mAP_11pt", "mAP_area"}``: floats in ``[0, 1]`` (``NaN`` if no class has a GT);
        ``"iou_threshold"``, ``"rules"``; ``"num_classes_evaluated"``: classes with ``num_gt > 0`` (the ones averaged);
        ``"per_class"``: ``{name: {"ap_11pt", "ap_area", "num_gt", "num_det"}}`` with ``num_gt`` the count of
        GTs that are not ignored (AP ``NaN`` when 0) and ``num_det`` the number of detections predicted with that class.
    """
    dataset = _as_dataset(dataset, class_names)
    _check_iou_threshold(iou_threshold)
    if rules not in VOC_RULES:
        raise ValueError(f"The 'rules' parameter must be one of {list(VOC_RULES)}. Got {rules!r} instead.")
    num_classes = dataset.num_classes
    gt_image, gt_boxes, gt_labels, difficult, iscrowd = _flatten_ground_truth(dataset)
    gt_ignored = difficult | iscrowd
    det_image, det_boxes, det_scores, det_labels = _flatten_predictions(predictions, dataset)
    devkit = rules == "devkit"
    if devkit:  # VOC's 1-based inclusive pixel indices, the inverse of read_voc
        gt_boxes, det_boxes = gt_boxes + _TO_DEVKIT, det_boxes + _TO_DEVKIT

    # Rank by class, then by descending score; lexsort is stable, so ties keep the input order.
    ranking = np.lexsort((-det_scores, det_labels))
    is_tp, is_ignored = _match_voc(
        det_image * num_classes + det_labels - 1,
        det_boxes,
        gt_image * num_classes + gt_labels - 1,
        gt_boxes,
        gt_ignored,
        ranking,
        iou_threshold,
        devkit,
    )
    num_gt = np.bincount(gt_labels[~gt_ignored] - 1, minlength=num_classes)
    num_det = np.bincount(det_labels - 1, minlength=num_classes)

    order = ranking[~is_ignored[ranking]]
    class_starts = np.searchsorted(det_labels[order], np.arange(1, num_classes + 2))
    per_class = {}
    for c, name in enumerate(dataset.class_names):
        tp_ranked = is_tp[order[class_starts[c] : class_starts[c + 1]]]
        ap_11pt, ap_area = _average_precisions(tp_ranked, int(num_gt[c]), _RECALL_POINTS[rules])
        per_class[name] = {"ap_11pt": ap_11pt, "ap_area": ap_area, "num_gt": int(num_gt[c]), "num_det": int(num_det[c])}
    evaluated = [v for v in per_class.values() if v["num_gt"] > 0]
    return {
        "mAP_11pt": float(np.mean([v["ap_11pt"] for v in evaluated])) if evaluated else float("nan"),
        "mAP_area": float(np.mean([v["ap_area"] for v in evaluated])) if evaluated else float("nan"),
        "iou_threshold": float(iou_threshold),
        "rules": rules,
        "num_classes_evaluated": len(evaluated),
        "per_class": per_class,
    }


def _match_voc(
    det_key: np.ndarray,
    det_boxes: np.ndarray,
    gt_key: np.ndarray,
    gt_boxes: np.ndarray,
    gt_ignored: np.ndarray,
    ranking: np.ndarray,
    iou_threshold: float,
    devkit: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """``(is_tp, is_ignored)``, both ``bool[D]``, by the devkit's greedy rule.

    ``*_key`` = image * C + class - 1 (a detection meets the GTs with the same key); ``ranking`` = detection
    indices by class, then descending score; ``devkit``: ``+ 1`` pixel IoU and a strict threshold.
    """
    num_dets = len(det_key)
    det_idx, gt_idx, counts = _pairs_with_equal_key(det_key, gt_key)
    iou = _paired_iou(det_boxes[det_idx], gt_boxes[gt_idx], plus_one=devkit)
    best_iou, best_gt = _best_match(iou, det_idx, gt_idx, counts)
    hit = best_iou > iou_threshold if devkit else best_iou >= iou_threshold
    is_ignored = hit & gt_ignored[np.maximum(best_gt, 0)]
    claims = hit & ~is_ignored

    # The first claim of each GT, in the ranking order, is the TP; later claims of the same GT are duplicates.
    claiming = ranking[claims[ranking]]
    _, first = np.unique(best_gt[claiming], return_index=True)
    is_tp = np.zeros(num_dets, bool)
    is_tp[claiming[first]] = True
    return is_tp, is_ignored


def _best_match(
    iou: np.ndarray, det_idx: np.ndarray, gt_idx: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per detection, the largest IoU over its pairs and the GT index reaching it (first one on ties).

    ``iou``, ``det_idx``, ``gt_idx`` are ``[P]`` pairs grouped by detection (as ``_pairs_with_equal_key`` returns
    them); ``counts`` is ``int64[D]`` pairs per detection. Detections without pairs get IoU 0 and GT index -1.
    """
    best_iou = np.zeros(len(counts))
    best_gt = np.full(len(counts), -1, np.int64)
    if len(iou) == 0:
        return best_iou, best_gt
    has_pairs = counts > 0
    starts = (np.cumsum(counts) - counts)[has_pairs]
    best_iou[has_pairs] = np.maximum.reduceat(iou, starts)
    at_best = np.flatnonzero(iou == best_iou[det_idx])
    first = np.ones(len(at_best), bool)
    first[1:] = det_idx[at_best[1:]] != det_idx[at_best[:-1]]
    best_gt[det_idx[at_best[first]]] = gt_idx[at_best[first]]
    return best_iou, best_gt


def _average_precisions(tp_ranked: np.ndarray, num_gt: int, recall_points: np.ndarray) -> tuple[float, float]:
    """``(ap_11pt, ap_area)`` of one class from its TP flags in ranking order (FP = not TP); NaN if ``num_gt == 0``.
    ``recall_points``: the 11 thresholds of the 11-point AP."""
    if num_gt == 0:
        return float("nan"), float("nan")
    tp = np.cumsum(tp_ranked)
    recall = tp / num_gt
    precision = tp / np.arange(1, len(tp_ranked) + 1)
    # Envelope: the best precision reachable at this recall or beyond.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    first_reaching = np.searchsorted(recall, recall_points, side="left")
    padded = np.append(envelope, 0.0)
    ap_11pt = float(np.mean(padded[first_reaching]))

    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.maximum.accumulate(np.concatenate(([0.0], precision, [0.0]))[::-1])[::-1]
    change = np.flatnonzero(mrec[1:] != mrec[:-1])
    ap_area = float(np.sum((mrec[change + 1] - mrec[change]) * mpre[change + 1]))
    return ap_11pt, ap_area


# ---------------------------------------------------------------------------------------------------------------
# Input handling shared by voc.py, coco.py and froc.py.
# ---------------------------------------------------------------------------------------------------------------


def _as_dataset(
    dataset: DetectionDataset | Sequence[ImageRecord], class_names: Sequence[str] | None
) -> DetectionDataset:
    """The ground truth as a non-empty :class:`DetectionDataset` with unique class names."""
    if isinstance(dataset, DetectionDataset):
        if class_names is not None:
            raise ValueError(
                "The 'class_names' parameter is only for a list of ImageRecord; a DetectionDataset "
                "already has class names. Got both."
            )
    else:
        records = list(dataset)
        bad = [i for i, r in enumerate(records) if not isinstance(r, ImageRecord)]
        if bad:
            raise ValueError(
                f"The 'dataset' parameter must be a DetectionDataset or a list of ImageRecord. "
                f"Got {type(records[bad[0]]).__name__} at index {bad[0]}."
            )
        if class_names is None:
            raise ValueError(
                "The 'class_names' parameter is required when 'dataset' is a list of ImageRecord. Got None."
            )
        dataset = DetectionDataset(records, list(class_names))
    if len(dataset) == 0:
        raise ValueError("The 'dataset' parameter must hold at least one image. Got 0 images.")
    if len(set(dataset.class_names)) != len(dataset.class_names):
        raise ValueError(f"The dataset's class names must be unique. Got {dataset.class_names}.")
    return dataset


def _check_iou_threshold(iou_threshold: float) -> None:
    if not (isinstance(iou_threshold, (int, float)) and 0.0 < iou_threshold <= 1.0):
        raise ValueError(f"The 'iou_threshold' parameter must be a float in (0, 1]. Got {iou_threshold!r} instead.")


def _flatten_ground_truth(dataset: DetectionDataset) -> tuple[np.ndarray, ...]:
    """All GT boxes concatenated: ``(image int64[G], boxes float64[G, 4], labels int64[G], difficult bool[G],
    iscrowd bool[G])``, ``image`` being the record's position. Raises if a label is outside ``1..C``."""
    records = dataset.records
    counts = np.array([r.num_boxes for r in records], np.int64)
    image = np.repeat(np.arange(len(records)), counts)
    boxes = np.concatenate([r.boxes for r in records]).astype(np.float64).reshape(-1, 4)
    labels = np.concatenate([r.labels for r in records]).astype(np.int64)
    difficult = np.concatenate([r.difficult for r in records]).astype(bool)
    iscrowd = np.concatenate([r.iscrowd for r in records]).astype(bool)
    bad = np.flatnonzero((labels < 1) | (labels > dataset.num_classes))
    if len(bad):
        raise ValueError(
            f"dataset[{image[bad[0]]}] (image_id {records[image[bad[0]]].image_id!r}) has label "
            f"{labels[bad[0]]}; ground-truth labels must be in 1..{dataset.num_classes}."
        )
    return image, boxes, labels, difficult, iscrowd


def _flatten_predictions(predictions: Sequence[Any], dataset: DetectionDataset) -> tuple[np.ndarray, ...]:
    """All predictions concatenated: ``(image int64[D], boxes float64[D, 4], scores float64[D], labels int64[D])``.

    Raises ``ValueError`` naming the entry on a length mismatch, a missing key, a bad shape, a non-finite value,
    a box with ``x2 < x1`` or ``y2 < y1``, or a label outside ``1..C``.
    """
    if isinstance(predictions, (Mapping, Detections)) or not isinstance(predictions, Sequence):
        raise ValueError(
            f"The 'predictions' parameter must be a list with one entry per image. Got {type(predictions).__name__}."
        )
    if len(predictions) != len(dataset):
        raise ValueError(
            f"The 'predictions' parameter must have one entry per dataset image ({len(dataset)}), in "
            f"dataset order. Got {len(predictions)} entries."
        )
    per_image = [_prediction_arrays(p, i) for i, p in enumerate(predictions)]
    counts = np.array([len(s) for _, s, _ in per_image], np.int64)
    image = np.repeat(np.arange(len(per_image)), counts)
    boxes = np.concatenate([b for b, _, _ in per_image]).reshape(-1, 4)
    scores = np.concatenate([s for _, s, _ in per_image])
    labels = np.concatenate([lab for _, _, lab in per_image])
    problems = [
        (~np.isfinite(boxes).all(axis=1), "'boxes'", "must be finite"),
        ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]), "'boxes'", "must be xyxy with x1 <= x2, y1 <= y2"),
        (~np.isfinite(scores), "'scores'", "must be finite"),
        ((labels < 1) | (labels > dataset.num_classes), "'labels'", f"must be in 1..{dataset.num_classes}"),
    ]
    for bad, key, expected in problems:
        if bad.any():
            d = int(np.flatnonzero(bad)[0])
            found = boxes[d].tolist() if key == "'boxes'" else (scores[d] if key == "'scores'" else labels[d])
            raise ValueError(
                f"predictions[{image[d]}][{key}] {expected}. Got {found} at position "
                f"{d - int(np.searchsorted(image, image[d]))}."
            )
    return image, boxes, scores, labels.astype(np.int64)


def _prediction_arrays(prediction: Any, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes float64[N, 4], scores float64[N], labels)`` of one entry, shapes checked."""
    if isinstance(prediction, Detections):
        fields = {"boxes": prediction.boxes, "scores": prediction.scores, "labels": prediction.labels}
    elif isinstance(prediction, Mapping):
        missing = [k for k in _PREDICTION_KEYS if k not in prediction]
        if missing:
            raise ValueError(f"predictions[{index}] must have keys {list(_PREDICTION_KEYS)}. Missing {missing}.")
        fields = {k: prediction[k] for k in _PREDICTION_KEYS}
    else:
        raise ValueError(
            f"predictions[{index}] must be a Detections or a mapping with keys "
            f"{list(_PREDICTION_KEYS)}. Got {type(prediction).__name__}."
        )
    boxes, scores, labels = (_to_numpy(fields[k]) for k in _PREDICTION_KEYS)
    if boxes.size == 0 and boxes.ndim <= 2:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"predictions[{index}]['boxes'] must have shape [N, 4]. Got {list(boxes.shape)}.")
    n = len(boxes)
    for key, array in (("scores", scores), ("labels", labels)):
        if array.shape != (n,):
            raise ValueError(
                f"predictions[{index}][{key!r}] must have shape [{n}] (one per box). Got {list(array.shape)}."
            )
    if n and not (np.issubdtype(labels.dtype, np.integer) or np.array_equal(labels, np.round(labels))):
        raise ValueError(f"predictions[{index}]['labels'] must be integers. Got {labels[:5].tolist()}...")
    return boxes.astype(np.float64), scores.astype(np.float64), labels


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
            value = value.float()  # numpy has no bfloat16
        return value.numpy()
    return np.asarray(value)


def _pairs_with_equal_key(det_key: np.ndarray, gt_key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (detection, GT) pair whose keys are equal (same image, or same image and class).

    Returns ``det_idx int64[P]``, ``gt_idx int64[P]`` grouped by detection in increasing ``det_idx`` order, GTs of one
    detection in their original (annotation) order, and ``counts int64[D]``, the number of pairs per detection.
    """
    gt_order = np.argsort(gt_key, kind="stable")
    sorted_keys = gt_key[gt_order]
    start = np.searchsorted(sorted_keys, det_key, side="left")
    counts = np.searchsorted(sorted_keys, det_key, side="right") - start
    det_idx = np.repeat(np.arange(len(det_key)), counts)
    within = np.arange(len(det_idx)) - np.repeat(np.cumsum(counts) - counts, counts)
    gt_idx = gt_order[np.repeat(start, counts) + within]
    return det_idx, gt_idx, counts


def _paired_iou(a: np.ndarray, b: np.ndarray, *, plus_one: bool = False) -> np.ndarray:
    """IoU of ``a[i]`` with ``b[i]`` for ``float64[P, 4]`` xyxy boxes; 0 when the union is empty.

    ``plus_one``: the boxes are inclusive pixel indices, so every width and height is ``x2 - x1 + 1`` (the devkit).
    """
    one = 1.0 if plus_one else 0.0
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + one, 0.0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + one, 0.0, None)
    inter = iw * ih
    union = (
        (a[:, 2] - a[:, 0] + one) * (a[:, 3] - a[:, 1] + one)
        + (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
        - inter
    )
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
