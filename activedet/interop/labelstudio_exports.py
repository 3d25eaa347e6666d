"""Label Studio's other exports (JSON-MIN, COCO, Pascal VOC, YOLO), read the way Label Studio writes them.

Label Studio's JSON export (:func:`activedet.interop.read_labelstudio_export`) keeps every annotation of
a task and is the one to prefer. Its converters (checked against Label Studio 1.23.2) write the others from one
row per annotation, newest first, and name images after their URL:

* image names: a local-files or URL path (``/data/local-files/?d=.../images/setB__x.png``), or an uploaded file
  renamed ``<8 hex digits>-<name>``; both are mapped back to the batch's image ids (``images``), sub-folder images
  included (activedet exports ``setB/x`` as ``setB__x.png``);
* JSON-MIN and COCO hold one entry per annotation, newest first: the first one of an image is read (newest wins),
  the others are noted in ``skipped``; a task whose only annotation was skipped (cancelled) is left out, one with
  an empty annotation is an image with no box (COCO gives it ``null`` width and height);
* VOC and YOLO write one file per image name, so a task with several annotations keeps only one of them there
  (the **oldest**, as Label Studio writes them newest first): use the JSON export when tasks have several;
* VOC writes no file for an image without boxes (it stays pending) and truncates pixels to integers,
  ``xmin = int(x)``, ``xmax = int(x) + int(width)``: 0-based coordinates, read as ``x1 = xmin``, ``x2 = xmax``
  (up to 2 px off the drawn box);
* YOLO's ``classes.txt`` lists the classes alphabetically; they are matched to the run's classes by name.

Only annotated tasks are in an export made with the export API's defaults; one of *all* tasks would list
unannotated tasks as images without boxes in COCO and YOLO, indistinguishable from empty ones: do not import one.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from ..data.records import DatasetError, Problem
from .common import LS_HINT, Collector, LabelImport, load_json
from .folders import read_coco_file, read_voc_labels, read_yolo_labels
from .labelstudio_tasks import labelstudio_image_id, read_ls_tasks

__all__ = [
    "read_labelstudio_coco",
    "read_labelstudio_min",
    "read_labelstudio_voc",
    "read_labelstudio_yolo",
]


def read_labelstudio_coco(
    path: str | os.PathLike, class_names: Sequence[str], *, images: Collection[str] | None = None
) -> LabelImport:
    """Read Label Studio's COCO export (``result.json``, or the folder holding it): module docstring.

    ``images``: the batch's image ids (a mapping's keys will do), to map exported names back to them.
    """
    path = Path(path)
    path = path / "result.json" if path.is_dir() else path
    return read_coco_file(
        path,
        class_names,
        image_id_of=lambda name: labelstudio_image_id(name, images),
        empty_means_labelled=True,
        newest_first=True,
    )


def read_labelstudio_min(
    path: str | os.PathLike,
    class_names: Sequence[str],
    *,
    images: dict[str, tuple[int, int]] | None = None,
    image_key: str = "image",
) -> LabelImport:
    """Read Label Studio's JSON-MIN export: one row per annotation, newest first; a control's regions are a
    list of objects under its name (``"label": [{"x": ..., "rectanglelabels": [...]}, ...]``).

    Each task's first (newest) row is read as a task with one annotation, as
    :func:`~activedet.interop.read_labelstudio_export` reads them; older rows are noted in ``skipped``.
    A row without regions is an empty label. ``annotator`` is recorded where it is not a bare user id.
    """
    path = Path(path)
    out = Collector(path, class_names, "Label Studio JSON-MIN export")
    rows = load_json(path, list, "a JSON list of annotation rows", LS_HINT, out.problems)
    tasks, seen = [], set()
    for k, row in enumerate(rows or []):
        if not isinstance(row, dict):
            tasks.append(row)  # reported by the task reader
            continue
        task_id = row.get("id", f"row {k}")
        if task_id in seen:
            out.skipped.append(
                f"task {task_id}: an older annotation ({row.get('annotation_id')}) left out (the "
                "newest one comes first)"
            )
            continue
        seen.add(task_id)
        regions = {key: value for key, value in row.items() if _is_regions(value)}
        data = {
            key: value for key, value in row.items() if key not in regions and key not in ("annotator", "annotation_id")
        }
        if "activedet_image_id" not in data and isinstance(data.get(image_key), str):
            data["activedet_image_id"] = labelstudio_image_id(data[image_key], images)
        result = [_min_region(region) for value in regions.values() for region in value]
        tasks.append(
            {
                "id": task_id,
                "data": data,
                "annotations": [{"completed_by": row.get("annotator"), "was_cancelled": False, "result": result}],
            }
        )
    return read_ls_tasks(tasks, path, out, images, image_key)


def _is_regions(value: object) -> bool:
    """Whether a JSON-MIN field holds a control's regions (objects with a position, e.g. ``x``/``y``)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) and ("x" in v or "points" in v) for v in value)
    )


def _min_region(region: dict) -> dict:
    """A JSON-MIN region (``x, y, width, height, rotation, rectanglelabels, original_width/height``) as a JSON
    export result; regions without ``rectanglelabels`` (polygons, keypoints ...) keep their first ``*labels`` key
    as their type, to be noted in ``skipped``."""
    value = {k: v for k, v in region.items() if k not in ("original_width", "original_height")}
    size = {k: region[k] for k in ("original_width", "original_height") if k in region}
    kind = next((k for k in region if k.endswith("labels")), "unknown")
    return {"type": kind, "value": value, **size}


def read_labelstudio_voc(
    path: str | os.PathLike, class_names: Sequence[str], *, images: Collection[str] | None = None
) -> LabelImport:
    """Read Label Studio's Pascal VOC export (the folder, its ``Annotations/``, or one file): module docstring."""
    devkit = read_voc_labels(
        path, class_names, one_based=False, empty_means_labelled=True
    )  # Label Studio writes 0-based coordinates
    ids = {name: labelstudio_image_id(name, images) for name in devkit.labels}
    out = Collector(Path(path), class_names, "Label Studio VOC export")
    return _collect(out, devkit, ids, ".xml", "object[{k}]")


def _collect(out: Collector, tool, image_ids: dict[str, str], suffix: str, item: str) -> LabelImport:
    """Every labelled file of ``tool`` (a reader's result: ``labels`` ``{name: (boxes, labels)}`` and ``skipped``)
    into ``out`` as image ``image_ids[name]``, each box named ``{name}{suffix}: {item}`` (``item`` formats ``k``)."""
    for name, (boxes, labels) in tool.labels.items():
        out.begin()
        out.add(
            image_ids[name],
            f"{name}{suffix}",
            [
                (f"{name}{suffix}: {item.format(k=k)}", box.tolist(), int(label))
                for k, (box, label) in enumerate(zip(np.asarray(boxes, np.float64), labels), start=1)
            ],
        )
    result = out.result()
    result.skipped = tool.skipped + result.skipped
    return result


def read_labelstudio_yolo(
    path: str | os.PathLike, class_names: Sequence[str], *, images: dict[str, tuple[int, int]]
) -> LabelImport:
    """Read Label Studio's YOLO export (the folder with ``classes.txt`` and ``labels/``): module docstring.

    ``images``: ``{image_id: (width, height)}`` of the batch (YOLO coordinates are normalised).
    """
    path = Path(path)
    folder = path / "labels" if (path / "labels").is_dir() else path
    names = {
        f.relative_to(folder).with_suffix("").as_posix(): labelstudio_image_id(f.name, images)
        for f in folder.rglob("*.txt")
        if f.name != "classes.txt"
    }
    missing = sorted(name for name, image_id in names.items() if image_id not in images)
    if missing:
        raise DatasetError(
            [
                Problem(
                    f"{name}.txt",
                    f"image {names[name]!r} is not one of the run's images, so its "
                    "normalised boxes cannot be converted",
                    "import only the exported batch's labels",
                )
                for name in missing
            ],
            f"Label Studio YOLO export {path}",
        )
    sizes = {name: images[image_id] for name, image_id in names.items()}
    tool = read_yolo_labels(path, class_names, images=sizes, empty_means_labelled=True)  # annotated tasks only
    return _collect(Collector(path, class_names, "Label Studio YOLO export"), tool, names, ".txt", "line {k}")
