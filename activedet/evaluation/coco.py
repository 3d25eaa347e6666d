"""COCO box AP through pycocotools itself (rules: docs/evaluation.md); this module only converts the inputs.

Conventions
-----------
* The ground-truth ``COCO`` object is built in memory from the records: the COCO **image id is the record's
  position** in the dataset (its pool index), so the result does not depend on the ``image_id`` strings; categories
  are ``dataset.label_to_category_id(l)`` for ``l`` in ``1..C`` (the original, possibly non-contiguous ids); boxes
  become ``[x, y, w, h]`` with ``w = x2 - x1`` (continuous pixels, no ``+ 1``); ``iscrowd`` is kept, so crowd
  boxes are ignore regions.
* ``area`` decides the small/medium/large bucket of each GT (``APs/APm/APl``, ``ARs/ARm/ARl``). It is the
  record's ``area`` (the annotation file's ``area``, the segment area in official COCO files) where known, as
  pycocotools reads it from the file, and the box area ``w * h`` where the file gives none (VOC, YOLO, records
  built in code). Detections always use their box area (as ``COCO.loadRes`` does).
* Per-class AP is read from ``eval["precision"]`` at the position of the class's category id in
  ``params.catIds`` (pycocotools sorts the ids), so it is attached to the right class whatever the id order.
* ``difficult`` flags (VOC) have no COCO counterpart: difficult boxes are evaluated as ordinary objects.
  Use :func:`activedet.evaluation.voc_map` for VOC data.
* Predictions are sent as ``[x, y, w, h]`` with the original category id; ``COCOeval(iouType="bbox")`` runs with its
  defaults: IoU 0.50:0.05:0.95, 101 recall points, ``maxDets = [1, 10, 100]`` (the top 100 detections of each
  image by score are used for AP).
* pycocotools reports ``-1`` where an area range has no (non-crowd) GT at all; this module reports ``NaN`` there.
* With **no prediction at all** ``COCO.loadRes`` fails on the empty list, so ``coco_ap`` does not call
  pycocotools: every metric is ``0.0`` where there is at least one non-crowd GT in its area range, ``NaN`` where
  there is none (what pycocotools would give with detections that match nothing).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from activedet.data.records import DetectionDataset, ImageRecord

from .voc import _as_dataset, _flatten_ground_truth, _flatten_predictions

__all__ = ["coco_ap", "COCO_METRICS"]

#: Keys of :func:`coco_ap`'s result, with the index of each in ``COCOeval.stats``.
COCO_METRICS = {
    "AP": 0,
    "AP50": 1,
    "AP75": 2,
    "APs": 3,
    "APm": 4,
    "APl": 5,
    "AR1": 6,
    "AR10": 7,
    "AR100": 8,
    "ARs": 9,
    "ARm": 10,
    "ARl": 11,
}

# COCOeval's area ranges (inclusive bounds, in square pixels) for the metrics above.
_AREA_RANGE = {"all": (0.0, 1e10), "small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}
_METRIC_AREA = {"APs": "small", "APm": "medium", "APl": "large", "ARs": "small", "ARm": "medium", "ARl": "large"}


def coco_ap(
    dataset: DetectionDataset | Sequence[ImageRecord],
    predictions: Sequence[Any],
    *,
    class_names: Sequence[str] | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """COCO box AP/AR of ``predictions`` against ``dataset`` (see the module docstring for the conventions).

    Args:
        dataset: ground truth, a :class:`DetectionDataset` (its ``category_ids`` map labels to COCO category ids)
            or a list of :class:`ImageRecord` (then give ``class_names``; category ids are then ``1..C``).
        predictions: one entry per record, in order: a ``Detections`` or a mapping with ``"boxes"`` (``[N, 4]`` xyxy
            original-image pixels), ``"scores"`` (``[N]``), ``"labels"`` (``[N]`` contiguous, in ``1..C``); torch
            tensors or numpy arrays. Keep at least 100 detections per image and a low score threshold.
        class_names: the ``C`` class names, only when ``dataset`` is a list of records.
        verbose: let pycocotools print its progress and summary table (silenced by default).

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}`` floats in
        ``[0, 1]`` or ``NaN`` (no GT in that area range); ``"per_class"``: ``{name: AP}`` (IoU 0.50:0.95, all areas,
        100 detections; ``NaN`` for a class without non-crowd GT).
    """
    dataset = _as_dataset(dataset, class_names)
    category_ids = np.array([dataset.label_to_category_id(label) for label in range(1, dataset.num_classes + 1)])
    if len(set(category_ids.tolist())) != len(category_ids):
        raise ValueError(f"The dataset's category_ids must be unique to map labels back. Got {category_ids.tolist()}.")
    image, boxes, scores, labels = _flatten_predictions(predictions, dataset)
    if len(scores) == 0:
        return _result_without_predictions(dataset)

    # pycocotools reports through print(); send it to a buffer unless asked to show it.
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_gt = _ground_truth_coco(dataset, category_ids)
        results = [
            {"image_id": i, "category_id": c, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
            for i, c, (x1, y1, x2, y2), s in zip(
                image.tolist(), category_ids[labels - 1].tolist(), boxes.tolist(), scores.tolist()
            )
        ]
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    result: dict[str, Any] = {name: _nan_if_missing(evaluator.stats[i]) for name, i in COCO_METRICS.items()}
    result["per_class"] = _per_class_ap(evaluator, category_ids, dataset.class_names)
    return result


def _ground_truth_coco(dataset: DetectionDataset, category_ids: np.ndarray) -> COCO:
    """An in-memory ``COCO`` with image id = record position and annotation ids ``1..G`` (0 means "unmatched")."""
    image, boxes, labels, _, iscrowd = _flatten_ground_truth(dataset)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    annotations = [
        {"id": k + 1, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": a, "iscrowd": int(crowd)}
        for k, (i, c, x, y, w, h, a, crowd) in enumerate(
            zip(
                image.tolist(),
                category_ids[labels - 1].tolist(),
                boxes[:, 0].tolist(),
                boxes[:, 1].tolist(),
                widths.tolist(),
                heights.tolist(),
                _ground_truth_area(dataset, boxes).tolist(),
                iscrowd.tolist(),
            )
        )
    ]
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "width": r.width, "height": r.height} for i, r in enumerate(dataset.records)],
        "categories": [{"id": int(c), "name": name} for c, name in zip(category_ids, dataset.class_names)],
        "annotations": annotations,
    }
    coco.createIndex()
    return coco


def _ground_truth_area(dataset: DetectionDataset, boxes: np.ndarray) -> np.ndarray:
    """``float64[G]``: each GT's annotated area where known, else its box area (``boxes`` flattened in order)."""
    area = np.concatenate([r.area for r in dataset.records]).astype(np.float64)
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.where(np.isnan(area), box_area, area)


def _per_class_ap(evaluator: COCOeval, category_ids: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """AP per category from ``eval["precision"]`` ``[T, R, K, A, M]``: all areas (A=0), 100 detections (M=-1); the
    K axis follows ``params.catIds``, not the label order."""
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    positions = list(evaluator.params.catIds)
    per_class = {}
    for cat_id, name in zip(category_ids.tolist(), class_names):
        k = positions.index(cat_id)
        valid = precision[:, :, k][precision[:, :, k] > -1]
        per_class[name] = float(np.mean(valid)) if valid.size else float("nan")
    return per_class


def _result_without_predictions(dataset: DetectionDataset) -> dict[str, Any]:
    """The result of an empty prediction set: 0 where the metric's area range has a non-crowd GT, else NaN."""
    _, boxes, labels, _, iscrowd = _flatten_ground_truth(dataset)
    area = _ground_truth_area(dataset, boxes)
    result: dict[str, Any] = {}
    for name in COCO_METRICS:
        low, high = _AREA_RANGE[_METRIC_AREA.get(name, "all")]
        has_gt = bool(np.any(~iscrowd & (area >= low) & (area <= high)))
        result[name] = 0.0 if has_gt else float("nan")
    has_class_gt = np.bincount(labels[~iscrowd] - 1, minlength=dataset.num_classes) > 0
    result["per_class"] = {name: 0.0 if has else float("nan") for name, has in zip(dataset.class_names, has_class_gt)}
    return result


def _nan_if_missing(value: float) -> float:
    return float("nan") if value == -1 else float(value)
