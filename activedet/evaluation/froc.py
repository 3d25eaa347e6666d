"""FROC: sensitivity at given false positives per image, and the CPM (competition performance metric).

Conventions
-----------
* Detections of all images are pooled and the score threshold is swept over every distinct score (plus "keep
  nothing"). At a threshold ``s`` only detections with ``score >= s`` exist.
* **Hit**, by ``matching``:

  - ``"iou"`` (the default; the DeepLesion convention): the detection has ``IoU >= iou_threshold`` with the GT box
    (IoU over continuous xyxy pixels, no ``+ 1``; ``iou_threshold`` 0.5 by default);
  - ``"centre"`` (the LUNA16 convention carried to 2-D boxes): the detection's centre lies strictly inside the GT
    box. LUNA16 counts a candidate whose centre is closer to a nodule's centre than the nodule's radius; the GT box
    plays the nodule here.

  A ground-truth (GT) box is **detected** when at least one detection hits it, whatever the label unless
  ``class_aware=True``. Each GT counts once, however many detections hit it. One detection may detect several
  overlapping GTs.
* A detection that hits no GT is a **false positive** (FP). A detection that only hits GTs that other,
  higher-scored detections already hit is *not* an FP by default (as LUNA16's script does: it is ignored, neither
  TP nor FP); with ``duplicates_as_fp=True`` it is an FP (the stricter variant). Ties in score are ranked by input
  order (image index, then position).
* ``difficult`` and ``iscrowd`` GTs are **ignored**: they are not counted in ``#GT``, and a detection that hits one
  of them (and no counted GT) is not an FP.
* ``sensitivity = #detected GT / #GT`` (``NaN`` when the dataset has no counted GT); ``FP/img = #FP / #images`` over
  **all** images, empty ones included.
* **Reading the curve at a rate** ``r``: the largest sensitivity among the operating points with ``FP/img <= r``
  (a step function, no interpolation: every reported value is reached by an actual threshold). LUNA16's script
  interpolates linearly between operating points, which can give slightly higher values. When the detector never
  produces ``r`` FP per image, the value is the sensitivity with every detection kept.
* ``CPM`` (competition performance metric) is the mean of the sensitivities at the requested rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from activedet.data.records import DetectionDataset, ImageRecord

from .voc import (
    _as_dataset,
    _check_iou_threshold,
    _flatten_ground_truth,
    _flatten_predictions,
    _paired_iou,
    _pairs_with_equal_key,
)

__all__ = ["froc", "FROC_MATCHINGS", "LUNA16_FPS_PER_IMAGE", "DEEPLESION_FPS_PER_IMAGE"]

#: How a detection hits a GT: by IoU (DeepLesion) or by its centre inside the GT box (LUNA16).
FROC_MATCHINGS = ("iou", "centre")

#: The 7 rates of LUNA16's CPM.
LUNA16_FPS_PER_IMAGE = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: The rates DeepLesion papers report.
DEEPLESION_FPS_PER_IMAGE = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def froc(
    dataset: DetectionDataset | Sequence[ImageRecord],
    predictions: Sequence[Any],
    *,
    fps_per_image: Sequence[float] = LUNA16_FPS_PER_IMAGE,
    matching: str = "iou",
    iou_threshold: float | None = None,
    class_aware: bool = False,
    duplicates_as_fp: bool = False,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Sensitivity at each rate of ``fps_per_image`` and their mean (CPM); see the module docstring.

    Args:
        dataset: ground truth, a :class:`DetectionDataset` or a list of :class:`ImageRecord` (then give
            ``class_names``). ``difficult`` and ``iscrowd`` boxes are ignored.
        predictions: one entry per record, in order: a ``Detections`` or a mapping with ``"boxes"`` (``[N, 4]`` xyxy
            original-image pixels), ``"scores"`` (``[N]``), ``"labels"`` (``[N]`` in ``1..C``); torch or numpy.
        fps_per_image: the false-positive rates (FP per image, positive) to read the curve at; default LUNA16's 7
            (:data:`DEEPLESION_FPS_PER_IMAGE` for DeepLesion's).
        matching: ``"iou"`` (IoU with the GT box, DeepLesion) or ``"centre"`` (detection centre inside the GT box,
            LUNA16); see the module docstring.
        iou_threshold: minimum IoU in ``(0, 1]`` for a detection to hit a GT, only with ``matching="iou"``
            (default 0.5).
        class_aware: a detection hits only GTs of its own label (default: any GT).
        duplicates_as_fp: count a detection that hits only already-detected GTs as an FP (default: ignore it).
        class_names: the ``C`` class names, only when ``dataset`` is a list of records.

    Returns:
        ``"fps_per_image"``: the rates (list of float); ``"sensitivity"``: the sensitivity at each rate (list of
        float); ``"cpm"``: their mean; ``"num_gt"``, ``"num_images"``, ``"matching"``, ``"iou_threshold"`` (``None``
        with ``matching="centre"``); ``"curve"``: the operating
        points as numpy arrays ``{"thresholds", "num_false_positives", "fps_per_image", "sensitivity"}`` of length
        ``K + 1`` (K distinct scores, descending; the first point, threshold ``inf``, keeps nothing).
    """
    dataset = _as_dataset(dataset, class_names)
    iou_threshold = _check_matching(matching, iou_threshold)
    rates = _check_rates(fps_per_image)
    gt_image, gt_boxes, gt_labels, difficult, iscrowd = _flatten_ground_truth(dataset)
    det_image, det_boxes, det_scores, det_labels = _flatten_predictions(predictions, dataset)

    c = dataset.num_classes
    det_key, gt_key = (
        (det_image * c + det_labels - 1, gt_image * c + gt_labels - 1) if class_aware else (det_image, gt_image)
    )
    det_idx, gt_idx, _ = _pairs_with_equal_key(det_key, gt_key)
    if matching == "iou":
        hit = _paired_iou(det_boxes[det_idx], gt_boxes[gt_idx]) >= iou_threshold
    else:
        hit = _centre_inside(det_boxes[det_idx], gt_boxes[gt_idx])
    det_idx, gt_idx = det_idx[hit], gt_idx[hit]
    counted = ~(difficult | iscrowd)

    is_fp = _false_positives(det_idx, gt_idx, counted, det_scores, duplicates_as_fp)
    # A GT is detected from the threshold of the best-scored detection that hits it on.
    detected_from = np.full(len(gt_labels), -np.inf)
    np.maximum.at(detected_from, gt_idx, det_scores[det_idx])
    curve = _froc_curve(det_scores, det_scores[is_fp], detected_from[counted], len(dataset))

    # Step reading; the tolerance lets 29 FP pass a rate of 0.29 FP/img x 100 images = 28.999999999999996.
    at = np.searchsorted(curve["num_false_positives"], np.asarray(rates) * len(dataset) + 1e-9, side="right") - 1
    sensitivity = curve["sensitivity"][at].tolist()
    return {
        "fps_per_image": list(rates),
        "sensitivity": sensitivity,
        "cpm": float(np.mean(sensitivity)),
        "num_gt": int(counted.sum()),
        "num_images": len(dataset),
        "matching": matching,
        "iou_threshold": iou_threshold,
        "curve": curve,
    }


def _check_matching(matching: str, iou_threshold: float | None) -> float | None:
    """The IoU threshold to use (``None`` for centre matching); raises on a bad or contradictory choice."""
    if matching not in FROC_MATCHINGS:
        raise ValueError(f"The 'matching' parameter must be one of {list(FROC_MATCHINGS)}. Got {matching!r} instead.")
    if matching == "centre":
        if iou_threshold is not None:
            raise ValueError(
                f"The 'iou_threshold' parameter applies to matching 'iou' only. Got {iou_threshold!r} "
                "with matching 'centre'; leave it out."
            )
        return None
    iou_threshold = 0.5 if iou_threshold is None else iou_threshold
    _check_iou_threshold(iou_threshold)
    return float(iou_threshold)


def _centre_inside(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``bool[P]``: the centre of ``det[i]`` lies strictly inside ``gt[i]`` (``float64[P, 4]`` xyxy boxes)."""
    cx, cy = (det[:, 0] + det[:, 2]) / 2, (det[:, 1] + det[:, 3]) / 2
    return (gt[:, 0] < cx) & (cx < gt[:, 2]) & (gt[:, 1] < cy) & (cy < gt[:, 3])


def _check_rates(fps_per_image: Sequence[float]) -> tuple[float, ...]:
    try:
        rates = tuple(float(r) for r in fps_per_image)
    except (TypeError, ValueError):
        rates = ()
    if not rates or not all(np.isfinite(r) and r > 0 for r in rates):
        raise ValueError(
            f"The 'fps_per_image' parameter must be a non-empty sequence of positive, finite floats. "
            f"Got {fps_per_image!r} instead."
        )
    return rates


def _false_positives(
    det_idx: np.ndarray, gt_idx: np.ndarray, counted: np.ndarray, det_scores: np.ndarray, duplicates_as_fp: bool
) -> np.ndarray:
    """``bool[D]``: detections that count as FP, given the hitting pairs ``(det_idx[P], gt_idx[P])``.

    ``counted`` is ``bool[G]`` (False for ignored GTs); ``det_scores`` is ``float64[D]``.
    """
    num_dets = len(det_scores)
    hits_any = np.zeros(num_dets, bool)
    hits_any[det_idx] = True
    is_fp = ~hits_any
    if duplicates_as_fp:
        rank = np.empty(num_dets, np.int64)
        rank[np.argsort(-det_scores, kind="stable")] = np.arange(num_dets)
        real = counted[gt_idx]
        dets, gts = det_idx[real], gt_idx[real]
        first_rank = np.full(len(counted), num_dets, np.int64)
        np.minimum.at(first_rank, gts, rank[dets])
        detects_new = np.zeros(num_dets, bool)
        detects_new[dets[rank[dets] == first_rank[gts]]] = True
        hits_counted = np.zeros(num_dets, bool)
        hits_counted[dets] = True
        is_fp |= hits_counted & ~detects_new
    return is_fp


def _froc_curve(
    det_scores: np.ndarray, fp_scores: np.ndarray, detected_from: np.ndarray, num_images: int
) -> dict[str, np.ndarray]:
    """Operating points at every distinct score, descending, after a first point that keeps nothing.

    ``fp_scores``: scores of the FP detections; ``detected_from``: per counted GT, the best score of a detection
    hitting it (``-inf`` if none).
    """
    thresholds = np.concatenate(([np.inf], np.unique(det_scores)[::-1]))
    fp_sorted, gt_sorted = np.sort(fp_scores), np.sort(detected_from)
    num_fp = len(fp_sorted) - np.searchsorted(fp_sorted, thresholds, side="left")
    num_detected = len(gt_sorted) - np.searchsorted(gt_sorted, thresholds, side="left")
    num_gt = len(detected_from)
    sensitivity = num_detected / num_gt if num_gt else np.full(len(thresholds), np.nan)
    return {
        "thresholds": thresholds,
        "num_false_positives": num_fp,
        "fps_per_image": num_fp / num_images,
        "sensitivity": sensitivity,
    }
