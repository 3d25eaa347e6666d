"""Label Studio: pre-annotation tasks out (:func:`write_labelstudio_tasks`); its JSON export
(:func:`read_labelstudio_export`) and its other exports back in.

The tasks of an export are read by :mod:`activedet.interop.labelstudio_tasks`, which also maps Label Studio's
image names back to image ids (:func:`labelstudio_image_id`); the readers of the other exports (JSON-MIN, COCO,
Pascal VOC, YOLO) and how Label Studio writes those are in :mod:`activedet.interop.labelstudio_exports`. All
of them are importable from here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_json
from .common import (
    LS_HINT,
    Collector,
    ExportItem,
    LabelImport,
    check_items,
    class_index_of,
    load_json,
)
from .labelstudio_exports import (
    read_labelstudio_coco,
    read_labelstudio_min,
    read_labelstudio_voc,
    read_labelstudio_yolo,
)
from .labelstudio_tasks import labelstudio_image_id, read_ls_tasks

__all__ = [
    "write_labelstudio_tasks",
    "read_labelstudio_export",
    "labelstudio_image_id",
    "read_labelstudio_coco",
    "read_labelstudio_min",
    "read_labelstudio_voc",
    "read_labelstudio_yolo",
]


def write_labelstudio_tasks(
    items: Iterable[ExportItem],
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    from_name: str = "label",
    to_name: str = "image",
    model_version: str = "activedet",
    image_key: str = "image",
) -> Path:
    """Write Label Studio tasks (Import -> JSON), one per item, with its detections as pre-annotations.

    Each task is ``{"id": 1.., "data": {image_key: image_ref, "activedet_image_id": image_id}, "predictions":
    [{"model_version", "score": image_score or null, "result": [...]}]}``; each box is a ``rectanglelabels``
    result whose ``value`` holds ``x, y`` (top-left corner), ``width, height`` in **percent** of the image size
    (``original_width``/``original_height``), ``rotation: 0`` and the class name, plus the box ``score``.
    ``from_name``/``to_name``/``image_key`` must match the project's labeling config, e.g. ``<RectangleLabels
    name="label" toName="image">`` and ``<Image name="image" value="$image"/>``. Written atomically; returns
    ``path``.
    """
    names = list(class_index_of(class_names))
    items = check_items(items, len(names), "write_labelstudio_tasks")
    tasks = []
    for i, item in enumerate(items, start=1):
        size = np.array([item.width, item.height] * 2, np.float64)
        result = []
        for k, (box, label) in enumerate(zip(item.boxes.astype(np.float64) / size * 100, item.labels), start=1):
            x1, y1, x2, y2 = box.tolist()
            value = {
                "x": x1,
                "y": y1,
                "width": x2 - x1,
                "height": y2 - y1,
                "rotation": 0,
                "rectanglelabels": [names[label - 1]],
            }
            result.append(
                {
                    "id": f"activedet-{i}-{k}",
                    "type": "rectanglelabels",
                    "from_name": from_name,
                    "to_name": to_name,
                    "original_width": item.width,
                    "original_height": item.height,
                    "image_rotation": 0,
                    "value": value,
                }
            )
            if item.scores is not None:
                result[-1]["score"] = float(item.scores[k - 1])
        prediction = {"model_version": model_version, "score": item.image_score, "result": result}
        tasks.append(
            {
                "id": i,
                "data": {image_key: item.image_ref, "activedet_image_id": item.image_id},
                "predictions": [prediction],
            }
        )
    return atomic_write_json(path, tasks, allow_nan=False)


def read_labelstudio_export(
    path: str | os.PathLike,
    class_names: Sequence[str],
    *,
    images: dict[str, tuple[int, int]] | None = None,
    image_key: str = "image",
) -> LabelImport:
    """Read Label Studio's JSON export (a list of tasks with ``annotations``) of ``rectanglelabels`` boxes.

    * The image id is ``data.activedet_image_id`` (written by :func:`write_labelstudio_tasks`), else the file
      stem of ``data[image_key]`` without Label Studio's upload prefix, mapped to the ids of ``images`` as
      :func:`labelstudio_image_id` does.
    * Of a task's annotations, the **last non-cancelled one in the file's order** is used (Label Studio lists
      them in creation order); the others are noted in ``skipped``. A task whose annotations are all cancelled,
      or that has none, is not labelled (``unlabelled``); a non-cancelled annotation with an empty ``result``
      is an empty label.
    * Percentages become pixels with the result's ``original_width``/``original_height``, else
      ``images[image_id] = (width, height)``. Results of other types (``choices``, ``polygonlabels`` ...) are
      noted in ``skipped``; rotated rectangles and labels not in ``class_names`` are errors.
    * ``predictions`` are ignored: only people's annotations are labels.

    Raises:
        DatasetError: listing every problem, each naming the task id and the annotation/result index.
    """
    path = Path(path)
    out = Collector(path, class_names, "Label Studio export")
    tasks = load_json(path, list, "a JSON list of tasks", LS_HINT, out.problems)
    return read_ls_tasks(tasks or [], path, out, images, image_key)
