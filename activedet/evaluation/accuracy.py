"""Classification accuracy, for the whole-image convention of :mod:`activedet.models.classifier`.

Conventions
-----------
* **Ground truth**: each record holds exactly one label (its whole-image box); ``difficult`` and ``iscrowd`` flags
  are not read. A record with another number of labels is an error naming its ``image_id``.
* **Prediction**: an image's predicted class is the label of its top-scoring detection (the first one on a tie);
  an image with no detection counts as wrong. Boxes are checked (finite, xyxy) as by the other metrics but not
  compared with the ground truth.
* **top1**: correct images / all images.
* **Per class**: the accuracy of class ``c`` is the recall of ``c``, correct images of class ``c`` / images of class
  ``c``, ``NaN`` when the set has no image of ``c``. **mean_per_class** is their mean over the classes with at
  least one image (balanced accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from activedet.data.records import DetectionDataset, ImageRecord

from .voc import _as_dataset, _flatten_ground_truth, _flatten_predictions

__all__ = ["accuracy"]


def accuracy(
    dataset: DetectionDataset | Sequence[ImageRecord],
    predictions: Sequence[Any],
    *,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Top-1 accuracy, per-class accuracy and their mean (see the module docstring).

    Args:
        dataset: ground truth, a :class:`DetectionDataset` or a list of :class:`ImageRecord` (then give
            ``class_names``); one label in ``1..C`` per record.
        predictions: one entry per record, in the same order: a :class:`~activedet.models.outputs.Detections` or
            a mapping with ``"boxes"``, ``"scores"`` and ``"labels"`` (torch tensors or numpy arrays), as
            :func:`~activedet.evaluation.voc_map` takes them.
        class_names: the ``C`` class names, only when ``dataset`` is a list of records.

    Returns:
        ``{"top1": float, "mean_per_class": float, "num_images": int,
        "per_class": {name: {"accuracy": float (NaN without images), "num_images": int}}}``.
    """
    dataset = _as_dataset(dataset, class_names)
    truth = _true_classes(dataset)
    predicted = _predicted_classes(dataset, predictions)
    correct = predicted == truth
    num_classes = dataset.num_classes
    num_images = np.bincount(truth - 1, minlength=num_classes)
    num_correct = np.bincount(truth[correct] - 1, minlength=num_classes)
    per_class = {}
    for c, name in enumerate(dataset.class_names):
        recall = float(num_correct[c] / num_images[c]) if num_images[c] else float("nan")
        per_class[name] = {"accuracy": recall, "num_images": int(num_images[c])}
    present = [row["accuracy"] for row in per_class.values() if row["num_images"] > 0]
    return {
        "top1": float(correct.mean()),
        "mean_per_class": float(np.mean(present)),
        "num_images": len(truth),
        "per_class": per_class,
    }


def _true_classes(dataset: DetectionDataset) -> np.ndarray:
    """``int64[M]``: the single label of each record (labels checked to lie in ``1..C``)."""
    for i, record in enumerate(dataset.records):
        if len(record.labels) != 1:
            raise ValueError(
                f"dataset[{i}] (image_id {record.image_id!r}) has {len(record.labels)} labels; "
                f"accuracy needs exactly one per image (a classification record is one box covering "
                f"the whole image, [0, 0, w, h], with labels=[c]). Evaluate detection data with "
                f"'voc' or 'coco'."
            )
    _, _, labels, _, _ = _flatten_ground_truth(dataset)
    return labels


def _predicted_classes(dataset: DetectionDataset, predictions: Sequence[Any]) -> np.ndarray:
    """``int64[M]``: the label of each image's top-scoring detection, 0 for an image without detections."""
    image, _, scores, labels = _flatten_predictions(predictions, dataset)
    predicted = np.zeros(len(dataset), np.int64)
    # by image, then descending score; lexsort is stable, so the first detection wins a tie
    order = np.lexsort((-scores, image))
    firsts = order[np.r_[True, image[order][1:] != image[order][:-1]]] if len(order) else order
    predicted[image[firsts]] = labels[firsts]
    return predicted
